"""The provider simulator: a loopback HTTP server that speaks the provider's API (all 16 endpoints).

``ProviderSimulator`` follows ``PROVIDER_API.md`` and the provider's own OpenAPI page: the envelope
``{"code", "msg", "data"}``, code 3 for a bad app_key and 156 for an account without real-name
verification, stateful proxy accounts, per-day usage, paginated packages and static IPs, location
lists, and the nested extraction list of ``ip/v3``. It hands out whatever addresses an injected
``address_source`` gives it (the demo plugs in its own forward proxies), records every call with
the secrets redacted, and has knobs to make the API slow, flaky or malformed.

Choices where the provider documents nothing (fixed here so tests can rely on them):

- Bad parameters answer HTTP 200 with code 400 (``CODE_BAD_PARAMETER``) and a message naming the
  field; an unknown proxy account gives code 404, a duplicate one code 409. Messages are Chinese
  unless ``language=en``, as on the real API; "success" is always English.
- ``ip/v3`` for a country/state/city the catalog does not have answers code 404 "no IPs available
  for this location" (``unknown_geo="error"``, the default) or an empty list
  (``unknown_geo="empty"``). ``dynamic-*/search`` for an unknown place returns an empty list.
  ``num`` defaults to 1 (at most 500), ``life`` to 10 minutes (1 to 7200).
- Account changes apply at once (the real API takes about 5 minutes).
- Faults (``fail_rate``, ``garbage_rate``) strike before the call is processed: a faulted call
  changes nothing and hands out no IP.
- Unknown paths answer an HTML 404 page and wrong methods an HTML 405, as a web server would.

Thread-safety: every public method and knob may be used from any thread while the server runs;
one lock guards state, counters and the call log, and is never held while sleeping, writing to a
socket or calling ``address_source``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import math
import random
import re
import secrets
import socket
import threading
import unicodedata
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .._env import API_URL_ENV, APP_KEY_ENV
from ..errors import ConfigError
from ._service import Service
from .locations import DEFAULT_LOCATIONS, SimCountry, find_country, find_state

__all__ = [
    "CODE_BAD_PARAMETER",
    "CODE_CONFLICT",
    "CODE_INTERNAL",
    "CODE_INVALID_KEY",
    "CODE_NOT_FOUND",
    "CODE_OK",
    "CODE_REAL_NAME_REQUIRED",
    "ENDPOINTS",
    "GARBAGE_KINDS",
    "AddressSource",
    "ApiCall",
    "ProviderSimulator",
]

logger = logging.getLogger(__name__)

CODE_OK = 200
CODE_INVALID_KEY = 3
CODE_REAL_NAME_REQUIRED = 156
CODE_BAD_PARAMETER = 400
CODE_NOT_FOUND = 404
CODE_CONFLICT = 409
CODE_INTERNAL = 500

#: (cc, state, city, num, life) -> "host:port" strings. cc/state/city are the catalog's canonical
#: tokens or None (anywhere); ``life`` is in minutes. Called from a server thread, without locks.
AddressSource = Callable[[str | None, str | None, str | None, int, int], Sequence[str]]

#: Endpoint (the path after the prefix) -> HTTP method. ``ip/get-static-ip`` is served at the
#: server root, without the prefix, as in the provider's page.
ENDPOINTS: Mapping[str, str] = MappingProxyType(
    {
        "whitelist-account/list": "GET",
        "whitelist-account/add": "POST",
        "whitelist-account/delete": "POST",
        "whitelist-account/disable": "POST",
        "whitelist-account/enable": "POST",
        "whitelist-account/change-password": "POST",
        "whitelist-account/change-remark": "POST",
        "whitelist-account/change-limit": "POST",
        "user-usage-flow/total": "GET",
        "user-product/list": "GET",
        "ip/v3": "GET",
        "ip/dynamic-citys": "GET",
        "ip/dynamic-citys/search": "GET",
        "ip/dynamic-states": "GET",
        "ip/dynamic-states/search": "GET",
        "ip/get-static-ip": "GET",
    }
)
_STATIC_IP_ENDPOINT = "ip/get-static-ip"
_EXTRACT_ENDPOINT = "ip/v3"

#: What ``garbage_rate`` can send: an HTML page, JSON cut short, JSON of the wrong shape (a
#: top-level array), an empty body, or a redirect to an HTML login page.
GARBAGE_KINDS: tuple[str, ...] = ("html", "truncated", "wrong_shape", "empty", "redirect")

_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_PRODUCT_TYPES = (9, 11, 14, 25)
_STATIC_PRODUCT_TYPES = (14, 25)
_ALNUM_RE = re.compile(r"^[A-Za-z0-9]{1,64}$")
_CC_RE = re.compile(r"^[A-Za-z]{2}$")
_EP_RE = re.compile(r"^[A-Za-z]{2,8}$")
_MAX_NUM = 500
_MAX_LIFE = 7200
_MAX_LIMIT_GB = 102400
_MAX_PAGE_SIZE = 1000
_REDACTED = "***"
_SYNTHETIC_PORTS = (20000, 60000)

# (Chinese, English) message per error kind; the real API answers in Chinese unless language=en.
_MESSAGES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "invalid_key": ("登录已过期，app_key 无效", "session has expired: the app_key is invalid"),
        "real_name": ("账户未完成实名认证", "the account has not passed real-name verification"),
        "bad_parameter": ("参数错误", "invalid parameter"),
        "not_found": ("代理账户不存在", "proxy account does not exist"),
        "conflict": ("代理账户已存在", "proxy account already exists"),
        "no_location": ("该地区暂无可用IP", "no IPs available for this location"),
        "internal": ("服务器内部错误", "internal server error"),
    }
)

_HTML_LOGIN = (
    "<!DOCTYPE html><html><head><title>Login</title></head>"
    '<body><form action="/login" method="post"><input name="user"></form></body></html>'
)


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One request the simulator answered.

    ``path`` is the request path without its query; ``endpoint`` the path after the prefix
    (``"ip/v3"``), or the raw path for unknown ones. ``params`` are the query or JSON body with
    ``app_key`` and passwords replaced by ``"***"``. ``time`` comes from the simulator's clock;
    ``code`` is the envelope code (None for non-JSON answers); ``ips`` counts addresses handed out.
    """

    method: str
    path: str
    endpoint: str
    params: Mapping[str, Any]
    time: datetime
    http_status: int
    code: int | None
    ips: int = 0


@dataclass(slots=True)
class _Account:
    id: int
    username: str
    password: str = field(repr=False)
    created_at: datetime
    remark: str
    product_type: int
    limit_flow: int
    status: int


@dataclass(frozen=True, slots=True)
class _Usage:
    day: date
    username: str
    product_type: int
    flow: int  # KB


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    code: int | None = None
    ips: int = 0
    headers: tuple[tuple[str, str], ...] = ()


class _ApiFailure(Exception):
    """A call the API refuses: turned into an envelope with ``code`` and a localised message."""

    def __init__(self, code: int, kind: str, detail: str = "", http_status: int = 200) -> None:
        super().__init__(kind)
        self.code = code
        self.kind = kind
        self.detail = detail
        self.http_status = http_status


def _bad(detail: str) -> _ApiFailure:
    return _ApiFailure(CODE_BAD_PARAMETER, "bad_parameter", detail)


def _check_rate(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    return float(value)


def _check_seconds(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 3600:
        raise ValueError(f"{name} must be a number of seconds between 0 and 3600, got {value!r}")
    return float(value)


def _fmt(moment: datetime) -> str:
    return moment.strftime(_TIME_FORMAT)


def _remark_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


class ProviderSimulator(Service):
    """The provider's API on ``127.0.0.1``, on a free port, served from a background thread.

    ``with ProviderSimulator() as sim:`` or ``sim.start()`` / ``sim.stop()``; then ``sim.base_url``
    (host + prefix) and ``sim.app_key`` are what a client needs.

    - ``app_key``: the key the API accepts (default: 32 random hex characters).
    - ``prefix``: the path prefix of the brand simulated (``"/openapi"``, ``"/end-point"``, ...).
    - ``address_source``: ``(cc, state, city, num, life) -> ["host:port", ...]``; the default
      hands out synthetic ``127.0.0.1`` addresses on ports nothing listens on.
    - ``rng``: randomness for the fault knobs (default ``random.Random(0)``: deterministic).
    - ``clock``: wall clock for timestamps, usage days and package dates (default
      ``datetime.now``).
    - ``real_name_verified``: False makes every endpoint answer code 156.
    - ``invalid_key_status``: HTTP status that comes with code 3 (200 or 401).
    - ``unknown_geo``: ``"error"`` (code 404) or ``"empty"`` (empty list) for an extraction from a
      place the catalog does not have.
    - ``usage_days``, ``product_count``, ``static_ip_count``: how much synthetic history to make.
    - ``port``: 0 (default) picks a free port.

    Fault knobs, settable at runtime: ``fail_rate`` (fraction answered HTTP 500), ``garbage_rate``
    (fraction answered with something from ``garbage_kinds``), ``empty_rate`` (fraction of
    extractions answered with an empty list), ``delay`` / ``set_delay(seconds, path=...)``
    (seconds to wait before answering), ``flat_lists`` (flat extraction list instead of the nested
    one), ``use_message_key`` (``"message"`` instead of ``"msg"``).
    """

    def __init__(
        self,
        *,
        app_key: str | None = None,
        prefix: str = "/openapi",
        address_source: AddressSource | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = datetime.now,
        real_name_verified: bool = True,
        invalid_key_status: int = 200,
        unknown_geo: str = "error",
        locations: tuple[SimCountry, ...] = DEFAULT_LOCATIONS,
        usage_days: int = 30,
        product_count: int = 45,
        static_ip_count: int = 8,
        port: int = 0,
    ) -> None:
        if app_key is not None and (not isinstance(app_key, str) or not app_key.strip()):
            raise ValueError("app_key must be a non-empty string")
        prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        if invalid_key_status not in (200, 401):
            raise ValueError(f"invalid_key_status must be 200 or 401, got {invalid_key_status!r}")
        for name, count in (
            ("usage_days", usage_days),
            ("product_count", product_count),
            ("static_ip_count", static_ip_count),
        ):
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 10_000:
                raise ValueError(f"{name} must be a whole number between 0 and 10000")
        self._app_key = app_key if app_key is not None else secrets.token_hex(16)
        self._prefix = prefix
        self._source: AddressSource = address_source or self._synthetic_addresses
        self._rng = rng if rng is not None else random.Random(0)
        self._clock = clock
        self._locations = locations
        self._requested_port = port
        self.real_name_verified = real_name_verified
        self._invalid_key_status = invalid_key_status
        self._unknown_geo = "error"
        self.unknown_geo = unknown_geo
        self.flat_lists = False
        self.use_message_key = False

        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

        self._fail_rate = 0.0
        self._garbage_rate = 0.0
        self._empty_rate = 0.0
        self._delay = 0.0
        self._path_delays: dict[str, float] = {}
        self._garbage_kinds: tuple[str, ...] = GARBAGE_KINDS

        self._calls: list[ApiCall] = []
        self._ips_handed_out = 0
        self._next_port = _SYNTHETIC_PORTS[0]

        now = clock()
        self._accounts: list[_Account] = []
        self._usage: list[_Usage] = []
        # Bytes carried by the account gateway: (day, username, product type) -> bytes.
        self._traffic: dict[tuple[date, str, int], int] = {}
        self._next_account_id = 1
        self._seed_accounts(now, usage_days)
        self._products = self._make_products(now, product_count)
        self._static_ips = self._make_static_ips(now, static_ip_count)

        self._routes: Mapping[str, Callable[[Mapping[str, Any]], Any]] = MappingProxyType(
            {
                "whitelist-account/list": self._list_accounts,
                "whitelist-account/add": self._add_accounts,
                "whitelist-account/delete": self._delete_accounts,
                "whitelist-account/disable": self._disable_accounts,
                "whitelist-account/enable": self._enable_accounts,
                "whitelist-account/change-password": self._change_password,
                "whitelist-account/change-remark": self._change_remark,
                "whitelist-account/change-limit": self._change_limit,
                "user-usage-flow/total": self._usage_total,
                "user-product/list": self._list_products,
                "ip/v3": self._extract,
                "ip/dynamic-citys": self._city_catalog,
                "ip/dynamic-citys/search": self._search_cities,
                "ip/dynamic-states": self._state_catalog,
                "ip/dynamic-states/search": self._search_states,
                "ip/get-static-ip": self._list_static_ips,
            }
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ProviderSimulator:
        """Bind ``127.0.0.1`` and serve from a daemon thread. Returns ``self``."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("the simulator is already running")
            self._stopping.clear()
            server = _Server(("127.0.0.1", self._requested_port), self)
            self._server = server
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.01},  # stop() waits up to this long
                name=f"provider-sim-{server.server_address[1]}",
                daemon=True,
            )
            self._thread = thread
        thread.start()
        logger.debug("provider simulator listening on 127.0.0.1:%s", server.server_address[1])
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and free the port. Safe to call twice."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            connections = list(self._connections)
            self._connections.clear()
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping on a delay knob
        server.shutdown()
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                conn.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def close(self) -> None:
        """``stop()``, under the name every simulated part has."""
        self.stop()

    def __repr__(self) -> str:
        # Never the app_key.
        state = f"listening on {self.root_url}" if self._server is not None else "stopped"
        return f"<ProviderSimulator prefix={self._prefix!r} {state}>"

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        """The port served on; RuntimeError before ``start()``."""
        server = self._server
        if server is None:
            raise RuntimeError("the simulator is not running: call start() first")
        return int(server.server_address[1])

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` (where ``/ip/get-static-ip`` lives)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """Host + prefix, e.g. ``http://127.0.0.1:PORT/openapi``: a client's ``base_url``."""
        return self.root_url + self._prefix

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def app_key(self) -> str:
        """The key the API accepts. A secret: do not log it."""
        return self._app_key

    def rotate_app_key(self, new_key: str | None = None) -> str:
        """Replace the accepted key (the old one then gets code 3); returns the new key."""
        if new_key is not None and (not isinstance(new_key, str) or not new_key.strip()):
            raise ValueError("new_key must be a non-empty string")
        with self._lock:
            self._app_key = new_key if new_key is not None else secrets.token_hex(16)
            return self._app_key

    def env(self) -> dict[str, str]:
        """``PROXYPOOL_API_URL`` and ``PROXYPOOL_APP_KEY`` for this simulator."""
        return {API_URL_ENV: self.base_url, APP_KEY_ENV: self._app_key}

    # ------------------------------------------------------------------ knobs

    @property
    def fail_rate(self) -> float:
        """Fraction of calls answered with HTTP 500 (0 to 1)."""
        return self._fail_rate

    @fail_rate.setter
    def fail_rate(self, value: float) -> None:
        self._fail_rate = _check_rate(value, "fail_rate")

    @property
    def garbage_rate(self) -> float:
        """Fraction of calls answered with one of ``garbage_kinds`` (0 to 1)."""
        return self._garbage_rate

    @garbage_rate.setter
    def garbage_rate(self, value: float) -> None:
        self._garbage_rate = _check_rate(value, "garbage_rate")

    @property
    def empty_rate(self) -> float:
        """Fraction of valid extractions answered code 200 with an empty list (0 to 1)."""
        return self._empty_rate

    @empty_rate.setter
    def empty_rate(self, value: float) -> None:
        self._empty_rate = _check_rate(value, "empty_rate")

    @property
    def garbage_kinds(self) -> tuple[str, ...]:
        """Which malformed answers ``garbage_rate`` picks from (a subset of ``GARBAGE_KINDS``)."""
        return self._garbage_kinds

    @garbage_kinds.setter
    def garbage_kinds(self, kinds: Sequence[str]) -> None:
        chosen = tuple(kinds)
        if not chosen or any(k not in GARBAGE_KINDS for k in chosen):
            raise ValueError(f"garbage_kinds must be a non-empty subset of {GARBAGE_KINDS}")
        self._garbage_kinds = chosen

    @property
    def delay(self) -> float:
        """Seconds every call waits before it is answered (a per-path delay takes precedence)."""
        return self._delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        self._delay = _check_seconds(seconds, "delay")

    def set_delay(self, seconds: float, *, path: str | None = None) -> None:
        """Delay answers by ``seconds``: all calls, or only ``path`` (an endpoint such as
        ``"ip/v3"``, or a full path such as ``"/openapi/ip/v3"``). 0 removes a path's delay."""
        seconds = _check_seconds(seconds, "delay")
        if path is None:
            self._delay = seconds
            return
        endpoint = self._endpoint_name(path)
        with self._lock:
            if seconds:
                self._path_delays[endpoint] = seconds
            else:
                self._path_delays.pop(endpoint, None)

    @property
    def unknown_geo(self) -> str:
        """What ``ip/v3`` answers for a place the catalog lacks: ``"error"`` (code 404) or
        ``"empty"`` (code 200, empty list)."""
        return self._unknown_geo

    @unknown_geo.setter
    def unknown_geo(self, value: str) -> None:
        if value not in ("error", "empty"):
            raise ValueError(f"unknown_geo must be 'error' or 'empty', got {value!r}")
        self._unknown_geo = value

    @property
    def invalid_key_status(self) -> int:
        """HTTP status sent with code 3: 200 or 401."""
        return self._invalid_key_status

    @invalid_key_status.setter
    def invalid_key_status(self, status: int) -> None:
        if status not in (200, 401):
            raise ValueError(f"invalid_key_status must be 200 or 401, got {status!r}")
        self._invalid_key_status = status

    # ------------------------------------------------------------------ records

    def calls(self, path: str | None = None) -> list[ApiCall]:
        """Every call answered so far, oldest first; only those of ``path`` (endpoint name or
        full path) if given."""
        with self._lock:
            calls = list(self._calls)
        if path is None:
            return calls
        endpoint = self._endpoint_name(path)
        return [c for c in calls if c.endpoint == endpoint or c.path == path]

    def extraction_calls(self) -> list[ApiCall]:
        """The ``ip/v3`` calls answered so far."""
        return self.calls(_EXTRACT_ENDPOINT)

    @property
    def ips_handed_out(self) -> int:
        """How many addresses ``ip/v3`` has returned in total."""
        with self._lock:
            return self._ips_handed_out

    def set_static_ips(
        self,
        addresses: Sequence[str],
        *,
        country_code: str = "US",
        product_type: int = 25,
        credentials: tuple[str, str] | None = None,
        extra: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Replace the account's static IPs with one valid entry per ``"host:port"`` of
        ``addresses`` (``country_code``, ``product_type``, 30 days left; ``credentials`` as
        ``username``/``password`` fields when given), then the raw entries of ``extra`` as they
        are (odd ones, for tolerance tests)."""
        if product_type not in _STATIC_PRODUCT_TYPES:
            raise ConfigError(
                "product_type must be 25 (static residential) or 14 (datacenter)",
                field="product_type",
            )
        now = self._clock()
        trades = [p["trade_no"] for p in self._products if p["product_type"] == product_type]
        entries: list[dict[str, Any]] = []
        for n, address in enumerate(addresses):
            host, _, port = address.rpartition(":")
            entry: dict[str, Any] = {
                "id": n + 1,
                "ip": host,
                "port": int(port),
                "country_code": country_code,
                "product_type": product_type,
                "status": 1,
                "trade_no": trades[0] if trades else "",
                "created_at": _fmt(now - timedelta(days=1)),
                "expired_at": _fmt(now + timedelta(days=30)),
            }
            if credentials is not None:
                entry["username"], entry["password"] = credentials
            entries.append(entry)
        entries.extend(dict(item) for item in extra)
        with self._lock:
            self._static_ips = entries

    def clear_calls(self) -> None:
        """Forget the call log and the IP counter (state is kept)."""
        with self._lock:
            self._calls.clear()
            self._ips_handed_out = 0

    def _endpoint_name(self, path: str) -> str:
        path = path.split("?", 1)[0]
        if self._prefix and path.startswith(self._prefix + "/"):
            return path[len(self._prefix) + 1 :]
        return path.strip("/")

    # ------------------------------------------------------------------ request handling

    def _route(self, path: str) -> str | None:
        """The endpoint a request path names, or None."""
        if path == "/" + _STATIC_IP_ENDPOINT:
            return _STATIC_IP_ENDPOINT
        if not path.startswith(self._prefix + "/"):
            return None
        endpoint = path[len(self._prefix) + 1 :]
        if endpoint == _STATIC_IP_ENDPOINT or endpoint not in ENDPOINTS:
            return None
        return endpoint

    def _respond(self, method: str, target: str, body: bytes) -> _Reply:
        split = urlsplit(target)
        path = split.path or "/"
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        endpoint = self._route(path)

        if path == "/login":
            reply = _Reply(200, _HTML_LOGIN.encode(), "text/html; charset=utf-8")
            self._record(method, path, "login", query, reply)
            return reply
        if endpoint is None:
            reply = _html_status(404, "Not Found")
            self._record(method, path, path.strip("/"), query, reply)
            return reply
        if method != ENDPOINTS[endpoint]:
            reply = _html_status(405, "Method Not Allowed", allow=ENDPOINTS[endpoint])
            self._record(method, path, endpoint, query, reply)
            return reply

        params: Mapping[str, Any] = query
        body_error = ""
        if method == "POST":
            params, body_error = _parse_body(body)
        english = str(params.get("language") or query.get("language") or "").lower() in (
            "en",
            "en-us",
            "english",
        )

        with self._lock:
            wait = self._path_delays.get(endpoint, self._delay)
        if wait:
            self._stopping.wait(wait)

        faulted = self._faulted(endpoint)
        if faulted is not None:
            reply = faulted
        else:
            try:
                if body_error:
                    raise _bad(body_error)
                self._authorise(params)
                result = self._routes[endpoint](params)
                reply = result if isinstance(result, _Reply) else self._ok(result)
            except _ApiFailure as failure:
                reply = self._failure(failure, english)
        self._record(method, path, endpoint, params, reply)
        # The path only: the query string holds the app_key.
        logger.debug("%s %s -> HTTP %s code %s", method, path, reply.status, reply.code)
        return reply

    def _faulted(self, endpoint: str) -> _Reply | None:
        """A 500 or a malformed answer, if the fault knobs say so this time."""
        with self._lock:
            if self._fail_rate and self._rng.random() < self._fail_rate:
                return _html_status(500, "Internal Server Error")
            if not (self._garbage_rate and self._rng.random() < self._garbage_rate):
                return None
            kind = self._rng.choice(self._garbage_kinds)
        if kind == "html":
            return _html_status(200, "Service Temporarily Unavailable")
        if kind == "truncated":
            whole = self._envelope(CODE_OK, "success", {"list": [["127.0.0.1:20000"]]})
            return _Reply(200, whole[: len(whole) // 2])
        if kind == "wrong_shape":
            return _Reply(200, json.dumps([{"code": CODE_OK, "data": None}]).encode())
        if kind == "empty":
            return _Reply(200, b"")
        location = "/login?next=/" + endpoint
        return _Reply(302, b"", "text/html; charset=utf-8", headers=(("Location", location),))

    def _authorise(self, params: Mapping[str, Any]) -> None:
        key = params.get("app_key")
        with self._lock:
            expected = self._app_key
        if not isinstance(key, str) or not hmac.compare_digest(
            key.encode("utf-8", "replace"), expected.encode()
        ):
            raise _ApiFailure(CODE_INVALID_KEY, "invalid_key", http_status=self._invalid_key_status)
        if not self.real_name_verified:
            raise _ApiFailure(CODE_REAL_NAME_REQUIRED, "real_name")

    def _envelope(self, code: int, message: str, data: Any) -> bytes:
        msg_key = "message" if self.use_message_key else "msg"
        payload = {"code": code, msg_key: message, "data": data}
        return json.dumps(payload, ensure_ascii=False).encode()

    def _ok(self, data: Any) -> _Reply:
        return _Reply(200, self._envelope(CODE_OK, "success", data), code=CODE_OK)

    def _failure(self, failure: _ApiFailure, english: bool) -> _Reply:
        zh, en = _MESSAGES[failure.kind]
        message = en if english else zh
        if failure.detail:
            message = f"{message}: {failure.detail}"
        body = self._envelope(failure.code, message, None)
        return _Reply(failure.http_status, body, code=failure.code)

    def _record(
        self, method: str, path: str, endpoint: str, params: Mapping[str, Any], reply: _Reply
    ) -> None:
        call = ApiCall(
            method=method,
            path=path,
            endpoint=endpoint,
            params=MappingProxyType(_redact(params)),
            time=self._clock(),
            http_status=reply.status,
            code=reply.code,
            ips=reply.ips,
        )
        with self._lock:
            self._calls.append(call)

    # ------------------------------------------------------------------ synthetic data

    def _seed_accounts(self, now: datetime, usage_days: int) -> None:
        seeds = (
            ("alice01", "Alice2024pw", 9, "crawler team", 0, 1),
            ("bob02", "BobSecret7", 11, "", 50, 1),
            ("carol03", "Carol99x", 9, "paused", 10, 0),
        )
        for username, password, ptype, remark, limit, status in seeds:
            self._accounts.append(
                _Account(
                    self._next_account_id,
                    username,
                    password,
                    now - timedelta(days=usage_days + 1),
                    remark,
                    ptype,
                    limit,
                    status,
                )
            )
            self._next_account_id += 1
            for back in range(usage_days):
                day = (now - timedelta(days=back)).date()
                digest = zlib.crc32(f"{username}|{day.isoformat()}".encode())
                if digest % 7:  # some days without traffic
                    self._usage.append(_Usage(day, username, ptype, 1000 + digest % 900_000))

    def _make_products(self, now: datetime, count: int) -> list[dict[str, Any]]:
        titles = ("入门级", "标准版", "企业版", "Starter", "Standard", "Business")
        products = []
        for i in range(1, count + 1):
            ordered = now - timedelta(days=3 * (count - i) + 1, minutes=17 * i)
            activated = ordered + timedelta(seconds=32)
            serial = zlib.crc32(f"trade-{i}".encode()) % 10**14
            products.append(
                {
                    "id": i,
                    "created_at": _fmt(activated),
                    "expired_at": _fmt(activated + timedelta(days=30 * (1 + i % 3))),
                    "product_type": _PRODUCT_TYPES[i % len(_PRODUCT_TYPES)],
                    "trade_no": f"{ordered:%Y%m%d%H%M%S}{serial:014d}",
                    "order": {
                        "created_at": _fmt(ordered),
                        "pay_at": _fmt(ordered + timedelta(seconds=20)),
                        "title": titles[i % len(titles)],
                    },
                }
            )
        products.reverse()  # newest first, as the account centre lists them
        return products

    def _make_static_ips(self, now: datetime, count: int) -> list[dict[str, Any]]:
        countries = ("US", "GB", "DE", "JP", "US", "US", "GB", "BR")
        statuses = (1, 1, 1, 3, 2, 4, 1, 1)
        by_type = {
            t: [p["trade_no"] for p in self._products if p["product_type"] == t]
            for t in _STATIC_PRODUCT_TYPES
        }
        ips = []
        for i in range(count):
            ptype = _STATIC_PRODUCT_TYPES[i % 2]
            trades = by_type[ptype]
            created = now - timedelta(days=20 - i % 20)
            ips.append(
                {
                    "id": i + 1,
                    "ip": f"203.0.113.{10 + i % 240}",  # TEST-NET-3: never routable
                    "port": 6000 + i,
                    "country_code": countries[i % len(countries)],
                    "product_type": ptype,
                    "status": statuses[i % len(statuses)],
                    "trade_no": trades[i % len(trades)] if trades else "",
                    "created_at": _fmt(created),
                    "expired_at": _fmt(created + timedelta(days=30)),
                }
            )
        return ips

    def _synthetic_addresses(
        self, cc: str | None, state: str | None, city: str | None, num: int, life: int
    ) -> list[str]:
        del cc, state, city, life  # every place gets the same kind of address
        lo, hi = _SYNTHETIC_PORTS
        with self._lock:
            ports = []
            for _ in range(num):
                ports.append(self._next_port)
                self._next_port = lo if self._next_port + 1 >= hi else self._next_port + 1
        return [f"127.0.0.1:{port}" for port in ports]

    # ------------------------------------------------------------------ proxy accounts

    def _all_usage(self) -> list[_Usage]:
        """The seeded usage and the gateway's traffic (KB, rounded up). Caller holds the lock."""
        live = [
            _Usage(day, user, ptype, math.ceil(count / 1024))
            for (day, user, ptype), count in self._traffic.items()
        ]
        return [*self._usage, *live]

    # ------------------------------------------------------------------ the account gateway

    def gateway_login(self, username: str, password: str) -> str | None:
        """For the account gateway: None when proxy account ``username`` may carry traffic with
        ``password``, else why not (``unknown proxy account``, ``wrong password``, ``proxy
        account disabled``, ``traffic limit reached``). Never says the password."""
        with self._lock:
            accounts = [a for a in self._accounts if a.username == username]
            if not accounts:
                return "unknown proxy account"
            account = next((a for a in accounts if hmac.compare_digest(a.password, password)), None)
            if account is None:
                return "wrong password"
            if account.status != 1:
                return "proxy account disabled"
            if account.limit_flow > 0:
                used_kb = sum(
                    u.flow
                    for u in self._all_usage()
                    if u.username == username and u.product_type == account.product_type
                )
                if used_kb >= account.limit_flow * 1024 * 1024:
                    return "traffic limit reached"
        return None

    def record_traffic(self, username: str, nbytes: int) -> None:
        """Count ``nbytes`` carried for proxy account ``username`` today: ``accounts list``
        (``usage_flow``) and ``user-usage-flow/total`` show it, and ``limit_flow`` applies."""
        day = self._clock().date()
        with self._lock:
            account = next((a for a in self._accounts if a.username == username), None)
            if account is None:
                return
            key = (day, username, account.product_type)
            self._traffic[key] = self._traffic.get(key, 0) + max(0, int(nbytes))

    def _account_view(self, account: _Account) -> dict[str, Any]:
        used = sum(
            u.flow
            for u in self._all_usage()
            if u.username == account.username and u.product_type == account.product_type
        )
        return {
            "id": account.id,
            "username": account.username,
            "password": account.password,
            "created_at": _fmt(account.created_at),
            "remark": account.remark,
            "product_type": account.product_type,
            "usage_flow": used,
            "limit_flow": account.limit_flow,
            "status": account.status,
        }

    def _list_accounts(self, params: Mapping[str, Any]) -> Any:
        with self._lock:
            return {"list": [self._account_view(a) for a in self._accounts]}

    def _add_accounts(self, params: Mapping[str, Any]) -> Any:
        text = _required_str(params, "accounts")
        remark = _remark(params.get("remark"))
        ptype = _product_type(params.get("product_type"), default=9) or 9
        pairs: list[tuple[str, str]] = []
        for item in text.split(","):
            username, sep, password = item.strip().partition(":")
            if not sep:
                raise _bad("accounts must look like 'user1:pass1,user2:pass2'")
            _check_alnum(username, "username")
            _check_alnum(password, "password")
            if any(u == username for u, _ in pairs):
                raise _ApiFailure(CODE_CONFLICT, "conflict", f"{username} is listed twice")
            pairs.append((username, password))
        now = self._clock()
        with self._lock:
            taken = {(a.username, a.product_type) for a in self._accounts}
            clash = [u for u, _ in pairs if (u, ptype) in taken]
            if clash:
                raise _ApiFailure(CODE_CONFLICT, "conflict", ", ".join(clash))
            for username, password in pairs:
                self._accounts.append(
                    _Account(self._next_account_id, username, password, now, remark, ptype, 0, 1)
                )
                self._next_account_id += 1
        return None

    def _named(self, params: Mapping[str, Any]) -> list[str]:
        names = [n.strip() for n in _required_str(params, "accounts").split(",")]
        for name in names:
            _check_alnum(name, "accounts")
        return names

    def _matching(self, names: Sequence[str]) -> list[_Account]:
        """Every account with one of ``names`` (same-named accounts all match); lock held."""
        missing = [n for n in names if not any(a.username == n for a in self._accounts)]
        if missing:
            raise _ApiFailure(CODE_NOT_FOUND, "not_found", ", ".join(missing))
        return [a for a in self._accounts if a.username in names]

    def _delete_accounts(self, params: Mapping[str, Any]) -> Any:
        names = self._named(params)
        with self._lock:
            doomed = {id(a) for a in self._matching(names)}
            self._accounts = [a for a in self._accounts if id(a) not in doomed]
            # Deleting loses the usage history, as the provider warns.
            self._usage = [u for u in self._usage if u.username not in names]
            self._traffic = {k: v for k, v in self._traffic.items() if k[1] not in names}
        return None

    def _set_status(self, params: Mapping[str, Any], status: int) -> Any:
        names = self._named(params)
        with self._lock:
            for account in self._matching(names):
                account.status = status
        return None

    def _disable_accounts(self, params: Mapping[str, Any]) -> Any:
        return self._set_status(params, 0)

    def _enable_accounts(self, params: Mapping[str, Any]) -> Any:
        return self._set_status(params, 1)

    def _one_account(self, params: Mapping[str, Any]) -> str:
        name = _required_str(params, "account")
        _check_alnum(name, "account")
        return name

    def _change_password(self, params: Mapping[str, Any]) -> Any:
        name = self._one_account(params)
        password = _required_str(params, "password")
        _check_alnum(password, "password")
        with self._lock:
            for account in self._matching([name]):
                account.password = password
        return None

    def _change_remark(self, params: Mapping[str, Any]) -> Any:
        name = self._one_account(params)
        if "remark" not in params:
            raise _bad("remark is required")
        remark = _remark(params.get("remark"))
        with self._lock:
            for account in self._matching([name]):
                account.remark = remark
        return None

    def _change_limit(self, params: Mapping[str, Any]) -> Any:
        name = self._one_account(params)
        limit = _int_param(params, "limit", None, 0, _MAX_LIMIT_GB)
        with self._lock:
            for account in self._matching([name]):
                account.limit_flow = limit
        return None

    # ------------------------------------------------------------------ usage and packages

    def _usage_total(self, params: Mapping[str, Any]) -> Any:
        now = self._clock()
        end = _time_param(params, "end_time") or now
        start = _time_param(params, "start_time") or end - timedelta(days=7)
        if start > end:
            raise _bad("start_time must not be after end_time")
        username = _opt_str(params, "username")
        if username is not None:
            _check_alnum(username, "username")
        ptype = _product_type(params.get("product_type"), default=None)
        totals: dict[date, int] = {}
        with self._lock:
            for u in self._all_usage():
                if not start.date() <= u.day <= end.date():
                    continue
                if username is not None and u.username != username:
                    continue
                if ptype is not None and u.product_type != ptype:
                    continue
                totals[u.day] = totals.get(u.day, 0) + u.flow
        return {"list": [{"day": d.isoformat(), "flow": totals[d]} for d in sorted(totals)]}

    def _list_products(self, params: Mapping[str, Any]) -> Any:
        trade_no = _opt_str(params, "trade_no")
        ptype = _product_type(params.get("product_type"), default=None)
        items = [
            p
            for p in self._products
            if (trade_no is None or p["trade_no"] == trade_no)
            and (ptype is None or p["product_type"] == ptype)
        ]
        return _paginate(items, params)

    def _list_static_ips(self, params: Mapping[str, Any]) -> Any:
        cc = _opt_str(params, "country_code")
        if cc is not None and not _CC_RE.match(cc):
            raise _bad("country_code must be an ISO 3166 alpha-2 code such as US")
        ptype = _product_type(params.get("product_type"), default=None)
        if ptype is not None and ptype not in _STATIC_PRODUCT_TYPES:
            raise _bad("product_type must be 25 (static residential) or 14 (datacenter)")
        status = None
        if _opt_str(params, "status") is not None:
            status = _int_param(params, "status", None, 1, 4)
        trade_no = _opt_str(params, "trade_no")
        items = [
            s
            for s in self._static_ips
            if (cc is None or s["country_code"] == cc.upper())
            and (ptype is None or s["product_type"] == ptype)
            and (status is None or s["status"] == status)
            and (trade_no is None or s["trade_no"] == trade_no)
        ]
        return _paginate(items, params)

    # ------------------------------------------------------------------ locations

    def _city_catalog(self, params: Mapping[str, Any]) -> Any:
        return {
            "list": [
                {
                    "name_zh_cn": c.name_zh_cn,
                    "name_en": c.name_en,
                    "continent_code": c.continent_code,
                    "country_code": c.country_code,
                    "items": [
                        {
                            "city": city,
                            "state": s.name,
                            "continent_code": c.continent_code,
                            "country_code": c.country_code,
                        }
                        for s in c.states
                        for city in s.cities
                    ],
                }
                for c in self._locations
            ]
        }

    def _state_catalog(self, params: Mapping[str, Any]) -> Any:
        return {
            "list": [
                {
                    "name_zh_cn": c.name_zh_cn,
                    "name_en": c.name_en,
                    "continent_code": c.continent_code,
                    "country_code": c.country_code,
                    "items": [
                        {
                            "state": s.name,
                            "continent_code": c.continent_code,
                            "country_code": c.country_code,
                        }
                        for s in c.states
                    ],
                }
                for c in self._locations
            ]
        }

    def _search_states(self, params: Mapping[str, Any]) -> Any:
        country = find_country(self._locations, _required_str(params, "country_code"))
        return {"list": [s.name for s in country.states] if country else []}

    def _search_cities(self, params: Mapping[str, Any]) -> Any:
        cc = _required_str(params, "country_code")
        state_name = _required_str(params, "state")
        country = find_country(self._locations, cc)
        state = find_state(country, state_name) if country else None
        return {"list": list(state.cities) if state else []}

    # ------------------------------------------------------------------ extraction

    def _extract(self, params: Mapping[str, Any]) -> Any:
        fmt = (_opt_str(params, "format") or "json").lower()
        if fmt not in ("json", "txt", "text"):
            raise _bad("format must be json or txt")
        num = _int_param(params, "num", 1, 1, _MAX_NUM)
        life = _int_param(params, "life", 10, 1, _MAX_LIFE)
        ep = _opt_str(params, "ep")
        if ep is not None and not _EP_RE.match(ep):
            raise _bad("ep must be a proxy network code such as us, hk or de")
        place = self._place(params)

        with self._lock:
            empty = bool(self._empty_rate) and self._rng.random() < self._empty_rate
        addresses: list[str] = []
        if place is not None and not empty:
            try:
                addresses = [str(a) for a in self._source(*place, num, life)][:num]
            except Exception:
                logger.exception("address_source failed")
                raise _ApiFailure(CODE_INTERNAL, "internal") from None
        with self._lock:
            self._ips_handed_out += len(addresses)

        if fmt != "json":
            lb = params.get("lb")
            separator = lb if isinstance(lb, str) and lb else "\r\n"
            text = separator.join(addresses).encode()
            return _Reply(200, text, "text/plain; charset=utf-8", CODE_OK, len(addresses))
        listed: list[Any] = list(addresses) if self.flat_lists else [addresses] if addresses else []
        reply = self._ok({"list": listed})
        return _Reply(reply.status, reply.body, reply.content_type, CODE_OK, len(addresses))

    def _place(self, params: Mapping[str, Any]) -> tuple[str | None, str | None, str | None] | None:
        """The canonical (cc, state, city) asked for; None for an unknown place with
        ``unknown_geo="empty"``."""
        cc = _opt_str(params, "cc")
        state_name = _opt_str(params, "state")
        city_name = _opt_str(params, "city")
        if cc is None:
            if state_name or city_name:
                raise _bad("state and city need cc (the country code)")
            return (None, None, None)
        if not _CC_RE.match(cc):
            raise _bad("cc must be an ISO 3166 alpha-2 code such as US")
        country = find_country(self._locations, cc)
        states = country.states if country else ()
        if state_name is not None and country is not None:
            state = find_state(country, state_name)
            states = (state,) if state else ()
        city: str | None = None
        if city_name is not None:
            wanted = city_name.casefold()
            found = [(s, c) for s in states for c in s.cities if c.casefold() == wanted]
            states = (found[0][0],) if found else ()
            city = found[0][1] if found else None
        if country is None or not states:
            if self.unknown_geo == "empty":
                return None
            where = "/".join(p for p in (cc.upper(), state_name, city_name) if p)
            raise _ApiFailure(CODE_NOT_FOUND, "no_location", where)
        canonical_state = states[0].name if (state_name is not None or city_name) else None
        return (country.country_code, canonical_state, city)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler stuck on a keep-alive socket must not block exit

    def __init__(self, address: tuple[str, int], simulator: ProviderSimulator) -> None:
        self.simulator = simulator
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; a client hanging up (its timeout ran out
        # while a slow answer was pending) is routine for a simulator with a delay knob.
        logger.debug("error serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a client session expects
    server_version = "ProviderSimulator"
    sys_version = ""
    timeout = 30  # seconds an idle keep-alive connection is kept
    # Headers and body go out in two writes: without this, Nagle + delayed ACK add ~40 ms a call.
    disable_nagle_algorithm = True

    @property
    def _sim(self) -> ProviderSimulator:
        server = self.server
        assert isinstance(server, _Server)
        return server.simulator

    def setup(self) -> None:
        super().setup()
        with self._sim._lock:
            self._sim._connections.add(self.connection)

    def finish(self) -> None:
        with self._sim._lock:
            self._sim._connections.discard(self.connection)
        super().finish()

    def _serve(self, method: str) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        body = self.rfile.read(length) if length > 0 else b""
        reply = self._sim._respond(method, self.path, body)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        # The stdlib writes request lines, query string (and app_key) included, to stderr.
        # The simulator logs its own redacted line per call instead.
        return


# ---------------------------------------------------------------------- helpers


def _html_status(status: int, reason: str, *, allow: str | None = None) -> _Reply:
    body = f"<html><head><title>{status} {reason}</title></head><body><h1>{status} {reason}</h1>"
    body += "<hr><center>nginx</center></body></html>"
    headers = (("Allow", allow),) if allow else ()
    return _Reply(status, body.encode(), "text/html; charset=utf-8", headers=headers)


def _parse_body(body: bytes) -> tuple[Mapping[str, Any], str]:
    try:
        parsed = json.loads(body.decode("utf-8")) if body.strip() else None
    except (UnicodeDecodeError, ValueError):
        return {}, "the request body must be a JSON object"
    if not isinstance(parsed, dict):
        return {}, "the request body must be a JSON object"
    return parsed, ""


def _redact(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name in ("app_key", "password"):
            out[name] = _REDACTED
        elif name == "accounts" and isinstance(value, str) and ":" in value:
            out[name] = ",".join(
                part.partition(":")[0] + (":" + _REDACTED if ":" in part else "")
                for part in value.split(",")
            )
        else:
            out[name] = value
    return out


def _opt_str(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _bad(f"{name} must be a string")
    text = str(value).strip()
    return text or None


def _required_str(params: Mapping[str, Any], name: str) -> str:
    value = _opt_str(params, name)
    if value is None:
        raise _bad(f"{name} is required")
    return value


def _int_param(params: Mapping[str, Any], name: str, default: int | None, lo: int, hi: int) -> int:
    value = params.get(name)
    if value is None or value == "":
        if default is None:
            raise _bad(f"{name} is required")
        return default
    if isinstance(value, bool):
        raise _bad(f"{name} must be a whole number")
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise _bad(f"{name} must be a whole number")
        value = int(value.strip())
    if not isinstance(value, int):
        raise _bad(f"{name} must be a whole number")
    if not lo <= value <= hi:
        raise _bad(f"{name} must be between {lo} and {hi}")
    return value


def _product_type(value: Any, *, default: int | None) -> int | None:
    if value is None or value == "":
        return default
    allowed = ", ".join(map(str, _PRODUCT_TYPES))
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value not in _PRODUCT_TYPES:
        raise _bad(f"product_type must be one of {allowed}")
    return value


def _check_alnum(value: str, name: str) -> None:
    if not _ALNUM_RE.match(value):
        # Never echo the value: it may be a password.
        raise _bad(f"{name} may contain only letters and digits (1 to 64, no spaces or symbols)")


def _remark(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad("remark must be a string")
    if _remark_width(value) > 64:
        raise _bad("remark must be at most 32 Chinese or 64 Latin characters")
    return value


def _time_param(params: Mapping[str, Any], name: str) -> datetime | None:
    text = _opt_str(params, name)
    if text is None:
        return None
    try:
        return datetime.strptime(text, _TIME_FORMAT)
    except ValueError:
        raise _bad(f"{name} must look like 2024-01-31 23:59:59 (Y-m-d H:i:s)") from None


def _paginate(items: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
    page = _int_param(params, "page", 1, 1, 1_000_000)
    size = _int_param(params, "size", 20, 1, _MAX_PAGE_SIZE)
    total = len(items)
    start = (page - 1) * size
    return {
        "list": [dict(i) for i in items[start : start + size]],
        "page": page,
        "page_size": size,
        "total_count": total,
        "total_page": math.ceil(total / size),
    }
