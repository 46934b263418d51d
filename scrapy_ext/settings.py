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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from proxypool._env import API_URL_ENV, APP_KEY_ENV
from proxypool._validate import MAX_EXTRACT_NUM, MAX_LIFE_MINUTES
from proxypool.errors import ConfigError
from proxypool.geo import Geo
from proxypool.policy import DEFAULT_BAN_STATUSES, STRATEGIES

__all__ = ["DEFAULTS", "ProxyPoolSettings", "SettingsLike", "read_settings"]


#: Every setting the middleware reads, with its default. Units: LIFE in minutes; API_TIMEOUT,
#: WAIT_TIMEOUT, EXPIRY_MARGIN, CHECK_TIMEOUT and BAN_STORM_COOLDOWN in seconds.
DEFAULTS: Mapping[str, Any] = {
    "PROXYPOOL_ENABLED": True,
    "PROXYPOOL_APP_KEY": None,
    "PROXYPOOL_API_URL": None,
    "PROXYPOOL_API_TIMEOUT": 10.0,
    "PROXYPOOL_SOURCE": None,
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
}

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
    ban-storm detection is off (``PROXYPOOL_BAN_STORM_BATCHES = 0``). ``source`` and
    ``ban_policy`` are import paths or objects, loaded by the middleware. ``app_key`` is a secret
    and is left out of ``repr``.
    """

    enabled: bool = True
    app_key: str | None = field(default=None, repr=False)
    api_url: str | None = None
    api_timeout: float = 10.0
    source: Any = None
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
    same names (``environ``, default ``os.environ``); both are required unless
    ``PROXYPOOL_SOURCE`` supplies the proxies. With ``PROXYPOOL_ENABLED`` false nothing else is
    read (a disabled middleware must not fail on the rest). Raises ``ConfigError`` naming the first
    bad setting and what it allows; never does I/O. The app_key is never part of a message.
    """
    env = os.environ if environ is None else environ
    if not _bool(settings, "PROXYPOOL_ENABLED"):
        return ProxyPoolSettings(enabled=False)
    source = _import_path_or_object(settings, "PROXYPOOL_SOURCE")
    app_key = _optional_text(settings, "PROXYPOOL_APP_KEY") or env.get(APP_KEY_ENV) or None
    api_url = _optional_text(settings, "PROXYPOOL_API_URL") or env.get(API_URL_ENV) or None
    if source is None:
        if app_key is None:
            raise ConfigError(
                "PROXYPOOL_APP_KEY is not set: put the provider's app_key in the setting "
                f"PROXYPOOL_APP_KEY or in the environment variable {APP_KEY_ENV}",
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
    )
