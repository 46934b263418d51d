"""Scrapy settings -> proxypool configuration: the ``ProxyPoolSettings`` value and the pure
function ``read_settings`` that builds it.

Values may come from ``settings.py`` (typed) or from the command line (``-s NAME=text``), so each
is coerced here once and checked; a bad value raises ``ConfigError`` naming the setting and what
is allowed. Nothing here touches the network or imports user code: geography is validated against
the provider when the spider opens, and import paths (``PROXYPOOL_BAN_POLICY``,
``PROXYPOOL_SOURCE``) are loaded by the middleware.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from proxypool._env import (
    API_URL_ENV,
    APP_KEY_ENV,
    GATEWAY_ENV,
    GATEWAY_PASSWORD_ENV,
    GATEWAY_USER_ENV,
    REDIS_URL_ENV,
)
from proxypool._validate import MAX_EXTRACT_NUM, MAX_LIFE_MINUTES
from proxypool.errors import ConfigError
from proxypool.geo import Geo
from proxypool.policy import DEFAULT_BAN_STATUSES, STRATEGIES
from proxypool.sources import GATEWAY_FORMATS, _compile, _gateway_address

__all__ = ["DEFAULTS", "SOURCE_MODES", "ProxyPoolSettings", "SettingsLike", "read_settings"]


#: Every setting the middleware reads, with its default. Units: LIFE in minutes; API_TIMEOUT,
#: WAIT_TIMEOUT, EXPIRY_MARGIN, CHECK_TIMEOUT and BAN_STORM_COOLDOWN in seconds.
DEFAULTS: Mapping[str, Any] = {
    "PROXYPOOL_ENABLED": True,
    "PROXYPOOL_APP_KEY": None,
    "PROXYPOOL_API_URL": None,
    "PROXYPOOL_API_TIMEOUT": 10.0,
    "PROXYPOOL_SOURCE": None,
    "PROXYPOOL_GATEWAY": None,
    "PROXYPOOL_GATEWAY_USER": None,
    "PROXYPOOL_GATEWAY_PASSWORD": None,
    "PROXYPOOL_GATEWAY_FORMAT": "smartproxy",
    "PROXYPOOL_PROXY_LIST": None,
    "PROXYPOOL_GEO": None,
    "PROXYPOOL_LIFE": 10,
    "PROXYPOOL_BATCH": 20,
    "PROXYPOOL_MIN_SIZE": 5,
    "PROXYPOOL_STRATEGY": "round_robin",
    "PROXYPOOL_EXPIRY_MARGIN": 15.0,
    "PROXYPOOL_MAX_FAILURES": 3,
    "PROXYPOOL_MAX_EXTRACTED": None,
    "PROXYPOOL_CHECK_PROXIES": True,
    "PROXYPOOL_CHECK_TIMEOUT": 3.0,
    "PROXYPOOL_BAN_STATUSES": DEFAULT_BAN_STATUSES,
    "PROXYPOOL_BAN_POLICY": None,
    "PROXYPOOL_MAX_PROXY_RETRIES": 3,
    "PROXYPOOL_SLOT_PER_PROXY": False,
    "PROXYPOOL_WAIT_TIMEOUT": 60.0,
    "PROXYPOOL_TRUSTED_HANDLERS": (),
    "PROXYPOOL_BAN_STORM_BATCHES": 3,
    "PROXYPOOL_BAN_STORM_COOLDOWN": 600.0,
    "PROXYPOOL_BAN_STORM_CLOSE": False,
    "PROXYPOOL_REDIS_URL": None,
    "PROXYPOOL_REDIS_NAMESPACE": "proxypool",
}

#: ``PROXYPOOL_SOURCE`` names: where the proxies come from (see ``proxypool.sources``).
SOURCE_MODES = ("extract", "gateway", "static", "list")

#: scrapy-rotating-proxies' settings, read when no proxypool source is set.
ROTATING_LIST = "ROTATING_PROXY_LIST"
ROTATING_LIST_PATH = "ROTATING_PROXY_LIST_PATH"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class SettingsLike(Protocol):
    """What ``read_settings`` needs: Scrapy's ``Settings``, or a plain dict."""

    def get(self, name: str, default: Any = None) -> Any: ...


@dataclass(frozen=True, slots=True)
class ProxyPoolSettings:
    """The middleware's configuration, read once per crawler; immutable, so thread-safe.

    Units: ``life`` in minutes; ``api_timeout``, ``expiry_margin``, ``check_timeout``,
    ``wait_timeout`` and ``ban_storm_cooldown`` in seconds. ``ban_storm_batches`` is None when
    ban-storm detection is off (``PROXYPOOL_BAN_STORM_BATCHES = 0``). ``mode`` is one of
    ``SOURCE_MODES``, or ``"custom"`` when ``source`` (an import path or object, loaded by the
    middleware, as ``ban_policy``) supplies the proxies. ``proxy_list``: the list's entries, or
    a path (``str``) of a file of them; ``proxy_list_setting`` the setting it came from.
    ``redis_url`` (``PROXYPOOL_REDIS_URL``, or the environment variable of that name): share
    one pool with every process naming the same Redis and ``redis_namespace``.
    ``app_key``, ``gateway_password`` and ``redis_url`` (its password) are secrets and are left
    out of ``repr``.
    """

    enabled: bool = True
    app_key: str | None = field(default=None, repr=False)
    api_url: str | None = None
    api_timeout: float = 10.0
    source: Any = None
    mode: str = "extract"
    gateway: str | None = None
    gateway_user: str | None = None
    gateway_password: str | None = field(default=None, repr=False)
    gateway_format: str = "smartproxy"
    proxy_list: tuple[str, ...] | str | None = None
    proxy_list_setting: str = "PROXYPOOL_PROXY_LIST"
    geo: Geo = field(default_factory=Geo)
    life: int = 10
    batch: int = 20
    min_size: int = 5
    strategy: str = "round_robin"
    expiry_margin: float = 15.0
    max_failures: int = 3
    max_extracted: int | None = None
    check_proxies: bool = True
    check_timeout: float = 3.0
    ban_statuses: frozenset[int] = frozenset(DEFAULT_BAN_STATUSES)
    ban_policy: Any = None
    max_proxy_retries: int = 3
    slot_per_proxy: bool = False
    wait_timeout: float = 60.0
    ban_storm_batches: int | None = 3
    ban_storm_cooldown: float = 600.0
    ban_storm_close: bool = False
    # Scrapy's HTTPPROXY_AUTH_ENCODING: how proxy credentials become Proxy-Authorization.
    auth_encoding: str = "latin-1"
    # Download handlers (import paths or classes) the user vouches for, besides Scrapy's HTTP/1.1.
    trusted_handlers: tuple[Any, ...] = ()
    redis_url: str | None = field(default=None, repr=False)
    redis_namespace: str = "proxypool"


def _auth_encoding(settings: SettingsLike) -> str:
    """Scrapy's own ``HTTPPROXY_AUTH_ENCODING`` (default latin-1), checked to name a codec."""
    name = "HTTPPROXY_AUTH_ENCODING"
    value = _text(settings.get(name))
    if value is None or value == "":
        return "latin-1"
    if isinstance(value, str):
        with contextlib.suppress(LookupError):
            "proxy".encode(value)  # (a codec that is not a text encoding raises LookupError too)
            return value
    raise ConfigError(
        f"{name} must name a text encoding (e.g. latin-1 or utf-8), got {_shown(value)}",
        field=name,
    )


def _raw(settings: SettingsLike, name: str) -> Any:
    value = settings.get(name)
    return DEFAULTS[name] if value is None else value


def _text(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _bool(settings: SettingsLike, name: str) -> bool:
    value = _text(_raw(settings, name))
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ConfigError(f"{name} must be True or False, got {_shown(value)}", field=name)


def _int(
    settings: SettingsLike, name: str, *, low: int, high: int | None = None, unit: str = ""
) -> int:
    value = _text(_raw(settings, name))
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number, got {_shown(value)}", field=name)
    if value < low or (high is not None and value > high):
        allowed = f"between {low} and {high}" if high is not None else f"at least {low}"
        unit = f" {unit}" if unit else ""
        raise ConfigError(f"{name} must be {allowed}{unit}, got {value}", field=name)
    return value


def _seconds(settings: SettingsLike, name: str, *, low: float, strict: bool = False) -> float:
    value = _text(_raw(settings, name))
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value != value  # NaN
        or value in (float("inf"), float("-inf"))
        or value < low
        or (strict and value == low)
    ):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        raise ConfigError(
            f"{name} must be a finite number of seconds {bound}, got {_shown(value)}", field=name
        )
    return float(value)


def _statuses(settings: SettingsLike, name: str) -> frozenset[int]:
    value = _raw(settings, name)
    if isinstance(value, str):
        value = [part for part in value.strip().strip("[]()").split(",") if part.strip()]
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    example = "e.g. [403, 429]"
    try:
        items = list(value)
    except TypeError:
        raise ConfigError(
            f"{name} must be a list of HTTP status codes ({example})", field=name
        ) from None
    statuses = set()
    for item in items:
        code = _text(item)
        if isinstance(code, str) and code.isdigit():
            code = int(code)
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            raise ConfigError(
                f"{name} must hold HTTP status codes 100-599 ({example}); got {_shown(item)}",
                field=name,
            )
        statuses.add(code)
    return frozenset(statuses)


def _optional_text(settings: SettingsLike, name: str) -> str | None:
    value = _text(settings.get(name))
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, not {type(value).__name__}", field=name)
    return value


def _import_path_or_object(settings: SettingsLike, name: str) -> Any:
    value = _text(settings.get(name))
    if value is None or value == "":
        return None
    if isinstance(value, str) and ("." not in value or any(c.isspace() for c in value)):
        raise ConfigError(
            f"{name} must be an import path like 'myproject.module.Name' (or the object itself), "
            f"got {_shown(value)}",
            field=name,
        )
    return value


def _import_paths_or_objects(settings: SettingsLike, name: str) -> tuple[Any, ...]:
    """A list of import paths or objects: a list/tuple, or (command line) one comma-separated
    string."""
    value = _text(settings.get(name))
    if value is None or value == "":
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if isinstance(items, Mapping) or not isinstance(items, list | tuple | set | frozenset):
        raise ConfigError(
            f"{name} must be a list of import paths like 'myproject.handlers.Name' (or the "
            f"classes), got {_shown(value)}",
            field=name,
        )
    found: list[Any] = []
    for item in items:
        item = _text(item)
        if item == "":
            continue
        if isinstance(item, str) and ("." not in item or any(c.isspace() for c in item)):
            raise ConfigError(
                f"{name} must hold import paths like 'myproject.handlers.Name', got {_shown(item)}",
                field=name,
            )
        if not isinstance(item, str | type):
            raise ConfigError(
                f"{name} must hold import paths or classes, got {type(item).__name__}", field=name
            )
        found.append(item)
    return tuple(found)


def _source(settings: SettingsLike) -> tuple[str, Any]:
    """``PROXYPOOL_SOURCE`` as ``(mode, import path or object)``; unset: ``"list"`` when a
    proxy list is set (ours or scrapy-rotating-proxies'), else ``"extract"``."""
    name = "PROXYPOOL_SOURCE"
    value = _text(settings.get(name))
    if value is None or value == "":
        listed = any(
            _text(settings.get(key)) not in (None, "", [], ())
            for key in ("PROXYPOOL_PROXY_LIST", ROTATING_LIST, ROTATING_LIST_PATH)
        )
        return ("list" if listed else "extract"), None
    if isinstance(value, str) and value.lower() in SOURCE_MODES:
        return value.lower(), None
    if isinstance(value, str) and ("." not in value or any(c.isspace() for c in value)):
        raise ConfigError(
            f"{name} must be one of {', '.join(map(repr, SOURCE_MODES))} or an import path like "
            f"'myproject.sources.Name' (or the object itself), got {_shown(value)}",
            field=name,
        )
    return "custom", value


_HOST_PORT = re.compile(r"[^\s/\\:]+:\d+")


def _listed_inline(value: str) -> bool:
    """Whether a ``PROXYPOOL_PROXY_LIST`` string holds proxies (a URL, credentials, host:port,
    several separated by commas) rather than a file's path (which may have spaces)."""
    text = value.strip()
    return "://" in text or "@" in text or "," in text or _HOST_PORT.fullmatch(text) is not None


def _proxy_list(settings: SettingsLike) -> tuple[tuple[str, ...] | str | None, str]:
    """The proxy list (entries, or a file path as ``str``) and the setting it came from:
    ``PROXYPOOL_PROXY_LIST`` (a list, a path, or proxies in a string: comma-separated), else
    scrapy-rotating-proxies' ``ROTATING_PROXY_LIST`` (a list, or comma-separated) or
    ``ROTATING_PROXY_LIST_PATH``."""
    for name in ("PROXYPOOL_PROXY_LIST", ROTATING_LIST, ROTATING_LIST_PATH):
        value = _text(settings.get(name))
        if value is None or value == "" or value in ([], ()):
            continue
        if isinstance(value, str):
            if name == ROTATING_LIST or (name != ROTATING_LIST_PATH and _listed_inline(value)):
                # Scrapy's getlist(): comma-separated on the command line (-s NAME=a,b)
                return tuple(v.strip() for v in re.split(r"[,\s]+", value) if v.strip()), name
            return value, name  # a path
        if isinstance(value, os.PathLike):
            return os.fspath(value), name
        if name != ROTATING_LIST_PATH and isinstance(value, list | tuple):
            if not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{name} must hold proxy URLs or host:port strings", field=name)
            return tuple(value), name
        allowed = "a file path" if name == ROTATING_LIST_PATH else "a list of proxy URLs or a path"
        raise ConfigError(f"{name} must be {allowed}, got {type(value).__name__}", field=name)
    return None, "PROXYPOOL_PROXY_LIST"


def _gateway_settings(settings: SettingsLike, env: Mapping[str, str]) -> dict[str, Any]:
    """The gateway settings, checked for form when set (also outside gateway mode)."""
    found: dict[str, Any] = {}
    gateway = _optional_text(settings, "PROXYPOOL_GATEWAY") or env.get(GATEWAY_ENV) or None
    if gateway is not None:
        try:
            _gateway_address(gateway)
        except ConfigError as exc:
            raise ConfigError(f"PROXYPOOL_GATEWAY: {exc}", field="PROXYPOOL_GATEWAY") from None
    found["gateway"] = gateway
    user = _optional_text(settings, "PROXYPOOL_GATEWAY_USER") or env.get(GATEWAY_USER_ENV) or None
    if user is not None and any(c.isspace() or c in ":@" for c in user):
        raise ConfigError(
            "PROXYPOOL_GATEWAY_USER must be the proxy account's name, without spaces, ':' or '@'",
            field="PROXYPOOL_GATEWAY_USER",
        )
    found["gateway_user"] = user
    found["gateway_password"] = (
        _optional_text(settings, "PROXYPOOL_GATEWAY_PASSWORD")
        or env.get(GATEWAY_PASSWORD_ENV)
        or None
    )
    fmt = _text(_raw(settings, "PROXYPOOL_GATEWAY_FORMAT"))
    if not isinstance(fmt, str) or (fmt not in GATEWAY_FORMATS and "{" not in fmt):
        raise ConfigError(
            "PROXYPOOL_GATEWAY_FORMAT must be one of "
            f"{', '.join(map(repr, sorted(GATEWAY_FORMATS)))} or a template with {{user}} and "
            f"{{session}}, got {_shown(fmt)}",
            field="PROXYPOOL_GATEWAY_FORMAT",
        )
    try:
        _compile(GATEWAY_FORMATS.get(fmt, fmt))
    except ConfigError as exc:
        raise ConfigError(
            f"PROXYPOOL_GATEWAY_FORMAT: {exc}", field="PROXYPOOL_GATEWAY_FORMAT"
        ) from None
    found["gateway_format"] = fmt
    return found


def _geo(settings: SettingsLike, name: str) -> Geo:
    value = _text(settings.get(name))
    try:
        return Geo.coerce(value)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}", field=name) from None


def _strategy(settings: SettingsLike, name: str) -> str:
    value = _text(_raw(settings, name))
    if value not in STRATEGIES:
        raise ConfigError(
            f"{name} must be one of {', '.join(map(repr, STRATEGIES))}, got {_shown(value)}",
            field=name,
        )
    return str(value)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_settings(
    settings: SettingsLike, environ: Mapping[str, str] | None = None
) -> ProxyPoolSettings:
    """Read every ``PROXYPOOL_*`` setting from Scrapy ``settings`` (or a dict).

    ``PROXYPOOL_APP_KEY`` and ``PROXYPOOL_API_URL`` fall back to the environment variables of the
    same names (``environ``, default ``os.environ``), as do the gateway's user and password; the
    key and URL are required where the provider's API is used: extraction, static IPs, and a
    gateway whose password is to be looked up. With ``PROXYPOOL_ENABLED`` false nothing else is
    read (a disabled middleware must not fail on the rest). Raises ``ConfigError`` naming the first
    bad setting and what it allows; never does I/O. Secrets are never part of a message.
    """
    env = os.environ if environ is None else environ
    if not _bool(settings, "PROXYPOOL_ENABLED"):
        return ProxyPoolSettings(enabled=False)
    mode, source = _source(settings)
    proxy_list, list_setting = _proxy_list(settings)
    gateway = _gateway_settings(settings, env)
    app_key = _optional_text(settings, "PROXYPOOL_APP_KEY") or env.get(APP_KEY_ENV) or None
    api_url = _optional_text(settings, "PROXYPOOL_API_URL") or env.get(API_URL_ENV) or None
    if mode == "list" and proxy_list is None:
        raise ConfigError(
            "PROXYPOOL_PROXY_LIST is not set: with PROXYPOOL_SOURCE = 'list' give the proxies "
            "(a list of URLs or host:port, or the path of a file of them)",
            field="PROXYPOOL_PROXY_LIST",
        )
    if mode == "gateway":
        if gateway["gateway"] is None:
            raise ConfigError(
                "PROXYPOOL_GATEWAY is not set: with PROXYPOOL_SOURCE = 'gateway' give the "
                "provider's gateway as host:port",
                field="PROXYPOOL_GATEWAY",
            )
        if gateway["gateway_user"] is None:
            raise ConfigError(
                "PROXYPOOL_GATEWAY_USER is not set: the proxy account's name (setting, or the "
                f"environment variable {GATEWAY_USER_ENV})",
                field="PROXYPOOL_GATEWAY_USER",
            )
    needs_api = mode in ("extract", "static") or (
        mode == "gateway" and gateway["gateway_password"] is None
    )
    if needs_api:
        if app_key is None:
            why = (
                "; or set PROXYPOOL_GATEWAY_PASSWORD, so the password need not be looked up"
                if mode == "gateway"
                else ""
            )
            raise ConfigError(
                "PROXYPOOL_APP_KEY is not set: put the provider's app_key in the setting "
                f"PROXYPOOL_APP_KEY or in the environment variable {APP_KEY_ENV}{why}",
                field="PROXYPOOL_APP_KEY",
            )
        if api_url is None:
            raise ConfigError(
                "PROXYPOOL_API_URL is not set: put the provider's base URL (host and prefix, e.g. "
                f"https://api.example.com/openapi) in the setting PROXYPOOL_API_URL or in the "
                f"environment variable {API_URL_ENV}",
                field="PROXYPOOL_API_URL",
            )
    max_extracted = settings.get("PROXYPOOL_MAX_EXTRACTED")
    life = _int(settings, "PROXYPOOL_LIFE", low=1, high=MAX_LIFE_MINUTES, unit="minutes")
    expiry_margin = _seconds(settings, "PROXYPOOL_EXPIRY_MARGIN", low=0.0)
    if expiry_margin >= life * 60:
        raise ConfigError(
            f"PROXYPOOL_EXPIRY_MARGIN ({expiry_margin:g} s) must be shorter than PROXYPOOL_LIFE "
            f"({life} min = {life * 60} s), or no proxy could ever be used",
            field="PROXYPOOL_EXPIRY_MARGIN",
        )
    return ProxyPoolSettings(
        enabled=True,
        app_key=app_key,
        api_url=api_url,
        api_timeout=_seconds(settings, "PROXYPOOL_API_TIMEOUT", low=0.0, strict=True),
        source=source,
        mode=mode,
        proxy_list=proxy_list,
        proxy_list_setting=list_setting,
        **gateway,
        geo=_geo(settings, "PROXYPOOL_GEO"),
        life=life,
        batch=_int(settings, "PROXYPOOL_BATCH", low=1, high=MAX_EXTRACT_NUM),
        min_size=_int(settings, "PROXYPOOL_MIN_SIZE", low=0),
        strategy=_strategy(settings, "PROXYPOOL_STRATEGY"),
        expiry_margin=expiry_margin,
        max_failures=_int(settings, "PROXYPOOL_MAX_FAILURES", low=1),
        max_extracted=None
        if max_extracted is None or max_extracted == ""
        else _int(settings, "PROXYPOOL_MAX_EXTRACTED", low=1),
        check_proxies=_bool(settings, "PROXYPOOL_CHECK_PROXIES"),
        check_timeout=_seconds(settings, "PROXYPOOL_CHECK_TIMEOUT", low=0.0, strict=True),
        ban_statuses=_statuses(settings, "PROXYPOOL_BAN_STATUSES"),
        ban_policy=_import_path_or_object(settings, "PROXYPOOL_BAN_POLICY"),
        max_proxy_retries=_int(settings, "PROXYPOOL_MAX_PROXY_RETRIES", low=0, high=100),
        slot_per_proxy=_bool(settings, "PROXYPOOL_SLOT_PER_PROXY"),
        wait_timeout=_seconds(settings, "PROXYPOOL_WAIT_TIMEOUT", low=0.0, strict=True),
        ban_storm_batches=_int(settings, "PROXYPOOL_BAN_STORM_BATCHES", low=0, high=1000) or None,
        ban_storm_cooldown=_seconds(settings, "PROXYPOOL_BAN_STORM_COOLDOWN", low=0.0, strict=True),
        ban_storm_close=_bool(settings, "PROXYPOOL_BAN_STORM_CLOSE"),
        auth_encoding=_auth_encoding(settings),
        trusted_handlers=_import_paths_or_objects(settings, "PROXYPOOL_TRUSTED_HANDLERS"),
        **_redis(settings, env),
    )


def _redis(settings: SettingsLike, env: Mapping[str, str]) -> dict[str, Any]:
    """``PROXYPOOL_REDIS_URL`` (or its environment variable) and ``PROXYPOOL_REDIS_NAMESPACE``,
    checked as ``RedisStore`` checks them (no connection is made here); errors never quote the
    URL, which may hold a password."""
    url = _optional_text(settings, "PROXYPOOL_REDIS_URL") or env.get(REDIS_URL_ENV) or None
    namespace = _text(settings.get("PROXYPOOL_REDIS_NAMESPACE"))
    if namespace is None or namespace == "":
        namespace = "proxypool"
    from proxypool._redis_steps import check_namespace

    try:
        check_namespace(namespace)
    except ConfigError as exc:
        name = "PROXYPOOL_REDIS_NAMESPACE"
        raise ConfigError(f"{name}: {exc}", field=name) from None
    if url is None:
        return {"redis_url": None, "redis_namespace": namespace}
    from proxypool.redis_store import RedisStore

    try:
        RedisStore(url, namespace=namespace).close()
    except ConfigError as exc:
        name = "PROXYPOOL_REDIS_NAMESPACE" if exc.field == "namespace" else "PROXYPOOL_REDIS_URL"
        raise ConfigError(f"{name}: {exc}", field=name) from None
    return {"redis_url": url, "redis_namespace": namespace}
