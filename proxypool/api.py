"""ProviderClient: the typed client of the provider's HTTP API, the only module that talks to it.

Every method checks its input before sending anything, returns models (never raw dicts) and raises
only ``proxypool.errors`` exceptions. No secret the client sends (the app_key, the passwords given
to ``add_accounts`` and ``change_password``) appears in a message, a ``repr`` or a log record: GET
calls must carry the key in the query string, so the client attaches a redacting filter to
urllib3's loggers; every text taken from an answer is scrubbed of each secret before it is cut
short, and of what is left of one at the cut; lower-level exceptions whose text holds the request
URL are never chained.

Every call is bounded: ``timeout`` is one deadline for the whole method call (connect, send,
headers, the whole body, retries and their pauses; see ``_deadline``), and an answer is read in
chunks and refused past ``max_response_bytes`` decoded bytes (a gzip bomb costs that, not its
decoded size).

A client may be shared between threads: it keeps no per-call state, and ``requests.Session``'s
connection pool is thread-safe for the plain GET/POST calls made here.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import urllib3

from ._causes import causes
from ._deadline import CallRegistry, ProviderSession, Watchdog
from ._env import API_URL_ENV, APP_KEY_ENV
from ._redact import clip, install_log_redaction, redact, redact_excerpt, secret_forms
from ._validate import (
    MAX_EXTRACT_NUM,
    MAX_LIFE_MINUTES,
    TIME_FORMAT,
    check_alnum,
    check_enum,
    check_float,
    check_int,
    check_names,
    check_remark,
    check_text,
    check_time,
    shown,
)
from .errors import (
    AccountError,
    ApiConnectionError,
    ApiError,
    ApiResponseError,
    ConfigError,
    InvalidAppKey,
    ProviderError,
    RealNameRequired,
)
from .geo import Geo
from .models import (
    Account,
    AccountStatus,
    CountryLocations,
    DailyUsage,
    LocationItem,
    Order,
    Product,
    ProductPage,
    ProductType,
    Proxy,
    StaticIp,
    StaticIpPage,
    StaticIpStatus,
)
from .policy import Backoff

__all__ = ["ProviderClient", "ProviderSession"]

logger = logging.getLogger(__name__)
install_log_redaction()

SUCCESS_CODES = frozenset({0, 200})
_MAX_APP_KEY = 256  # keys are 32 hex characters; anything this long is a pasting accident
_MAX_TIMEOUT = 3600.0  # seconds
_MAX_BACKOFF = 60.0  # seconds, doubled per retry
_MAX_URL = 2048
_MAX_PAGE = 1_000_000
_LANGUAGE_RE = re.compile(r"^[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8})*$")
_EXCERPT = 200
_EXCERPT_WINDOW = _EXCERPT * 4 + 1024  # bytes decoded for an excerpt: 200 characters and room
_QUOTE = 60  # characters of an odd value quoted in a parse error
#: The largest answer read, in decoded bytes: a whole location catalog is well under 1 MB.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
_MAX_RESPONSE_LIMIT = 1024 * 1024 * 1024
_CHUNK = 64 * 1024  # bytes read at a time
_MAX_NESTING = 16

E = TypeVar("E", bound=ProductType | AccountStatus | StaticIpStatus)
T = TypeVar("T")
# Whole numbers as the provider may send them in text: ASCII digits only ("²".isdigit() is
# True, yet int("²") fails), at most 30 of them (ids and byte counts, not arbitrary integers).
_INT_TEXT_RE = re.compile(r"^[+-]?[0-9]{1,30}$")
_COUNTRY_RE = re.compile(r"^[A-Za-z]{2}$")
_HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class ProviderClient:
    """Client for the provider's API: proxy accounts, usage, packages, extraction, locations,
    static IPs.

    ``app_key`` falls back to ``$PROXYPOOL_APP_KEY``; ``base_url`` (host plus the brand's path
    prefix, e.g. ``https://api.proxylite.com/end-point``) to ``$PROXYPOOL_API_URL``.
    ``static_base_url`` is where ``ip/get-static-ip`` lives: by default the base URL's origin
    without the prefix, as the provider documents it.

    ``timeout`` (seconds) bounds each method call as a whole: connecting, sending, the headers,
    the whole body, and the retries with their pauses. A provider that drips its answer is cut
    at the deadline (``ApiConnectionError``, "did not answer within ..."). GET calls are retried
    ``retries`` times on connection errors and HTTP 5xx, sleeping ``backoff * 2**n`` seconds
    (``sleep`` is injectable), while the deadline leaves time for the pause; a retry is never
    started that would pass it. ``extract`` costs money: it is retried only when it never
    reached the provider. POST calls change the account and are never retried. With a
    ``session`` of your own (not a ``ProviderSession``, the default kind),
    waiting for the headers is bounded per read (each read waits at most the time left), the
    body as a whole.

    ``max_response_bytes`` caps an answer's size once decoded (default ``MAX_RESPONSE_BYTES``,
    8 MiB); a larger one raises ``ApiResponseError`` after reading at most that much.

    Thread-safe: calls may run in several threads at once; the deadline is per call.
    """

    def __init__(
        self,
        app_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 10.0,
        session: requests.Session | None = None,
        retries: int = 2,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        static_base_url: str | None = None,
        language: str | None = "en",
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        key = app_key if app_key is not None else os.environ.get(APP_KEY_ENV)
        if not key:
            raise ConfigError(
                f"no app_key: pass app_key= or set the environment variable {APP_KEY_ENV}",
                field="app_key",
            )
        if (
            not isinstance(key, str)
            or len(key) > _MAX_APP_KEY
            or any(ch.isspace() or not ch.isprintable() for ch in key)
        ):
            # Never echo the key: it is the account's password.
            raise ConfigError(
                f"app_key must be a string of printable characters without spaces "
                f"(at most {_MAX_APP_KEY}); check the value copied from the account centre",
                field="app_key",
            )
        url = base_url if base_url is not None else os.environ.get(API_URL_ENV)
        if not url:
            raise ConfigError(
                f"no API URL: pass base_url= or set the environment variable {API_URL_ENV} "
                "(host and prefix, e.g. https://api.example.com/openapi)",
                field="base_url",
            )
        self._app_key = key
        self._secrets = secret_forms(key)
        self.base_url = _check_base_url(url, "base_url")
        origin = urlsplit(self.base_url)
        self.static_base_url = (
            _check_base_url(static_base_url, "static_base_url")
            if static_base_url is not None
            else f"{origin.scheme}://{origin.netloc}"
        )
        self.timeout = check_float(timeout, "timeout", min=0.001, max=_MAX_TIMEOUT)
        self.retries = check_int(retries, "retries", min=0, max=10)
        self.backoff = check_float(backoff, "backoff", min=0.0, max=_MAX_BACKOFF)
        # backoff * 2**n before retry n + 1 (0 = no pause); retries <= 10, so never capped.
        self._pauses = Backoff.doubling(self.backoff, self.backoff * 1024.0)
        self.max_response_bytes = check_int(
            max_response_bytes, "max_response_bytes", min=1, max=_MAX_RESPONSE_LIMIT
        )
        if language is not None and not (
            isinstance(language, str) and _LANGUAGE_RE.match(language)
        ):
            raise ConfigError(
                f"language must be None or a language code such as 'en' or 'zh-CN', "
                f"not {shown(language)}",
                field="language",
            )
        self.language = language
        if not callable(sleep):
            raise ConfigError("sleep must be a callable taking seconds", field="sleep")
        if session is not None and not callable(getattr(session, "request", None)):
            raise ConfigError("session must be a requests.Session", field="session")
        self._sleep = sleep
        self._owns_session = session is None
        if session is None:
            session = ProviderSession()
        self._session = session
        # A ProviderSession's connections report to its registry: the headers are bounded too.
        self._calls = session.calls if isinstance(session, ProviderSession) else CallRegistry()

    def __repr__(self) -> str:
        return f"ProviderClient(base_url={self.base_url!r})"

    def close(self) -> None:
        """Close the HTTP session if the client created it."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> ProviderClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- proxy accounts ---------------------------------------------------------------------------

    def list_accounts(self) -> list[Account]:
        """All proxy accounts (``whitelist-account/list``)."""
        return self._get("whitelist-account/list", None, _parse_accounts)

    def add_accounts(
        self,
        credentials: Mapping[str, str],
        *,
        product_type: ProductType | int = ProductType.DYNAMIC_RESIDENTIAL_TRAFFIC,
        remark: str = "",
    ) -> None:
        """Add proxy accounts, ``{username: password}``, in one batch."""
        if not isinstance(credentials, Mapping) or not credentials:
            raise ConfigError(
                "credentials must be a non-empty mapping of username to password",
                field="credentials",
            )
        pairs = [
            f"{check_alnum(user, 'username')}:{check_alnum(password, 'password')}"
            for user, password in credentials.items()
        ]
        body = {
            "accounts": ",".join(pairs),
            "remark": check_remark(remark),
            "product_type": int(check_enum(product_type, ProductType, "product_type")),
        }
        self._post("whitelist-account/add", body, secrets=credentials.values())

    def delete_accounts(self, usernames: str | Iterable[str]) -> None:
        """Delete accounts. Irreversible; takes about 5 minutes, billing may continue meanwhile."""
        self._post("whitelist-account/delete", {"accounts": _joined(usernames)})

    def disable_accounts(self, usernames: str | Iterable[str]) -> None:
        """Disable accounts. Takes about 5 minutes to apply."""
        self._post("whitelist-account/disable", {"accounts": _joined(usernames)})

    def enable_accounts(self, usernames: str | Iterable[str]) -> None:
        """Enable accounts."""
        self._post("whitelist-account/enable", {"accounts": _joined(usernames)})

    def change_password(self, username: str, password: str) -> None:
        """Set a new password; the old one keeps working for about 5 minutes."""
        body = {
            "account": check_alnum(username, "username"),
            "password": check_alnum(password, "password"),
        }
        self._post("whitelist-account/change-password", body, secrets=[password])

    def change_remark(self, username: str, remark: str) -> None:
        """Set an account's remark (at most 64 Latin or 32 CJK characters)."""
        body = {"account": check_alnum(username, "username"), "remark": check_remark(remark)}
        self._post("whitelist-account/change-remark", body)

    def change_limit(self, username: str, limit_gb: int) -> None:
        """Set an account's traffic cap in GB (0 = unlimited, at most 102400). Usage statistics
        lag up to 5 minutes, so real use may pass the cap."""
        body = {
            "account": check_alnum(username, "username"),
            "limit": check_int(limit_gb, "limit_gb", min=0, max=102400),
        }
        self._post("whitelist-account/change-limit", body)

    # -- usage and packages -----------------------------------------------------------------------

    def daily_usage(
        self,
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        username: str | None = None,
        product_type: ProductType | int | None = None,
    ) -> list[DailyUsage]:
        """Traffic per day in KB (``user-usage-flow/total``). The provider defaults to the last
        7 days; its logs lag up to 5 minutes."""
        params: dict[str, Any] = {}
        if start is not None:
            params["start_time"] = check_time(start, "start")
        if end is not None:
            params["end_time"] = check_time(end, "end")
        if (
            "start_time" in params
            and "end_time" in params
            and (params["start_time"] > params["end_time"])
        ):
            raise ConfigError("start must not be after end", field="start")
        if username is not None:
            params["username"] = check_alnum(username, "username")
        if product_type is not None:
            params["product_type"] = int(check_enum(product_type, ProductType, "product_type"))
        return self._get("user-usage-flow/total", params, _parse_usages)

    def list_products(
        self,
        *,
        trade_no: str | None = None,
        page: int = 1,
        size: int = 20,
        product_type: ProductType | int | None = None,
    ) -> ProductPage:
        """One page of purchased packages (``user-product/list``)."""
        params = self._product_params(trade_no, size, product_type)
        params["page"] = _page(page)
        return self._get("user-product/list", params, _parse_product_page)

    def iter_products(
        self,
        *,
        trade_no: str | None = None,
        size: int = 20,
        product_type: ProductType | int | None = None,
    ) -> Iterator[Product]:
        """Every purchased package, walking all pages (one request per page, made lazily as the
        iterator is consumed). Arguments are checked at the call, before any request."""
        params = self._product_params(trade_no, size, product_type)
        return self._walk_products(params)

    def _walk_products(self, params: dict[str, Any]) -> Iterator[Product]:
        page = 1
        previous: tuple[Product, ...] = ()
        while True:
            query = {**params, "page": page}
            result = self._get("user-product/list", query, _parse_product_page)
            if result.items and result.items == previous:
                # A provider that ignores ``page`` would otherwise be walked total_page times.
                raise ApiResponseError(
                    f"GET user-product/list: page {page} repeats page {page - 1}; "
                    "the provider ignores the page parameter"
                )
            yield from result.items
            if (
                not result.items
                or len(result.items) < result.page_size
                or page >= result.total_page
            ):
                return
            previous = result.items
            page += 1

    @staticmethod
    def _product_params(
        trade_no: str | None, size: int, product_type: ProductType | int | None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"size": check_int(size, "size", min=1, max=1000)}
        if trade_no is not None:
            params["trade_no"] = check_text(trade_no, "trade_no", max_len=64)
        if product_type is not None:
            params["product_type"] = int(check_enum(product_type, ProductType, "product_type"))
        return params

    # -- extraction and locations -----------------------------------------------------------------

    def extract(
        self,
        geo: Geo | str | Mapping[str, Any] | None = None,
        *,
        num: int = 10,
        life: int = 10,
        ep: str | None = None,
    ) -> list[Proxy]:
        """Buy ``num`` IPs (1-500) for ``geo``, each kept for ``life`` minutes (``ip/v3``).

        Every extracted IP costs money or quota. The returned proxies carry ``geo`` and
        authenticate by the caller's whitelisted IP (no credentials). Unlike the other GET calls,
        a failed extraction is retried only when it never reached the provider (connection
        refused or not opened in time): after an error answer or a lost one, the provider may
        have billed the IPs, so the caller (the pool, with its backoff) decides.
        """
        where = Geo.coerce(geo)
        params = extract_params(where, num=num, life=life, ep=ep)
        addresses = self._get("ip/v3", params, _parse_addresses, paid=True)
        return [Proxy(host, port, geo=where) for host, port in addresses]

    def list_city_catalog(self) -> list[CountryLocations]:
        """Every country with its cities (``ip/dynamic-citys``)."""
        return self._get("ip/dynamic-citys", None, _parse_countries)

    def list_state_catalog(self) -> list[CountryLocations]:
        """Every country with its states (``ip/dynamic-states``)."""
        return self._get("ip/dynamic-states", None, _parse_countries)

    def search_states(self, country_code: str) -> list[str]:
        """State tokens of one country (``ip/dynamic-states/search``)."""
        params = {"country_code": _country(country_code)}
        return self._get("ip/dynamic-states/search", params, _state_names)

    def search_cities(self, country_code: str, state: str) -> list[str]:
        """City tokens of one state (``ip/dynamic-citys/search``)."""
        geo = Geo(_country(country_code), state)
        if geo.state is None:
            raise ConfigError("state must not be empty", field="state")
        params = {"country_code": geo.country, "state": geo.state}
        return self._get("ip/dynamic-citys/search", params, _city_names)

    # -- static IPs -------------------------------------------------------------------------------

    def list_static_ips(
        self,
        *,
        country_code: str | None = None,
        product_type: ProductType | int | None = None,
        trade_no: str | None = None,
        status: StaticIpStatus | int | None = None,
        page: int = 1,
        size: int = 20,
    ) -> StaticIpPage:
        """Static IPs (``ip/get-static-ip``, served without the path prefix)."""
        params: dict[str, Any] = {
            "page": _page(page),
            "size": check_int(size, "size", min=1, max=1000),
        }
        if country_code is not None:
            params["country_code"] = _country(country_code)
        if product_type is not None:
            kind = check_enum(product_type, ProductType, "product_type")
            if kind not in (ProductType.STATIC_DATACENTER_IP, ProductType.STATIC_RESIDENTIAL_IP):
                raise ConfigError(
                    "product_type for static IPs must be 14 (STATIC_DATACENTER_IP) or "
                    f"25 (STATIC_RESIDENTIAL_IP); got {int(kind)}",
                    field="product_type",
                )
            params["product_type"] = int(kind)
        if trade_no is not None:
            params["trade_no"] = check_text(trade_no, "trade_no", max_len=64)
        if status is not None:
            params["status"] = int(check_enum(status, StaticIpStatus, "status"))
        return self._get("ip/get-static-ip", params, _parse_static_page, base=self.static_base_url)

    # -- transport --------------------------------------------------------------------------------

    def _get(
        self,
        path: str,
        params: Mapping[str, Any] | None,
        parse: Callable[[Any], T],
        *,
        base: str | None = None,
        paid: bool = False,
    ) -> T:
        query: dict[str, Any] = {"app_key": self._app_key, **(params or {})}
        if self.language:
            query["language"] = self.language
        url = f"{base or self.base_url}/{path}"
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            try:
                return self._send("GET", url, path, parse, deadline, self._secrets, params=query)
            except (ApiConnectionError, ApiError, ApiResponseError) as exc:
                delay = self._pauses.delay(attempt) if self._pauses is not None else 0.0
                # A pause that would reach the deadline leaves no time to try again.
                if (
                    attempt >= self.retries
                    or not _retryable(exc, paid=paid)
                    or time.monotonic() + delay >= deadline
                ):
                    raise
                logger.info(
                    "GET %s failed (%s); retry %d/%d in %.2f s",
                    path,
                    type(exc).__name__,
                    attempt + 1,
                    self.retries,
                    delay,
                )
                attempt += 1
                self._sleep(delay)

    def _post(self, path: str, body: Mapping[str, Any], *, secrets: Iterable[str] = ()) -> None:
        """Send a write; ``secrets`` are the values in ``body`` besides the key that must never
        show (passwords), scrubbed from whatever the call raises."""
        payload: dict[str, Any] = {"app_key": self._app_key, **body}
        if self.language:
            payload["language"] = self.language
        known = self._secrets + tuple(f for s in secrets for f in secret_forms(s))
        deadline = time.monotonic() + self.timeout
        url = f"{self.base_url}/{path}"
        self._send("POST", url, path, _ignore, deadline, known, json_body=payload)

    def _send(
        self,
        method: str,
        url: str,
        path: str,
        parse: Callable[[Any], T],
        deadline: float,
        secrets: tuple[str, ...],
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Mapping[str, Any] | None = None,
    ) -> T:
        started = time.monotonic()
        status, headers, body = self._exchange(
            method, url, path, deadline, secrets, params=params, json_body=json_body
        )
        logger.debug(
            "%s %s -> HTTP %d (%d bytes, %.0f ms)",
            method,
            path,
            status,
            len(body),
            (time.monotonic() - started) * 1000,
        )
        failure: ProviderError
        try:
            data = self._unwrap(method, path, status, headers, body, secrets)
            return parse(data)
        except ApiResponseError as exc:
            # The parsers quote the odd value they met, which may echo a secret: scrub it, and
            # raise outside the except block so the unscrubbed original is not chained.
            # _unwrap's own errors name the call already; the parsers' do not.
            text = redact(str(exc), secrets)
            where = f"{method} {path}: "
            failure = ApiResponseError(
                text if text.startswith(where) else where + text, http_status=status
            )
        except MemoryError:
            # Within max_response_bytes, yet too big to parse in the memory left: the answer is
            # unusable, and only ProxyPoolError leaves the client.
            failure = ApiResponseError(
                f"{method} {path}: the answer does not fit in the memory available",
                http_status=status,
            )
        raise failure

    def _exchange(
        self,
        method: str,
        url: str,
        path: str,
        deadline: float,
        secrets: tuple[str, ...],
        *,
        params: Mapping[str, Any] | None,
        json_body: Mapping[str, Any] | None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request and its whole body, within ``deadline``: (status, headers, body)."""
        where = f"{method} {path}"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._timed_out(where)
        failure: ProviderError | None = None
        with Watchdog(remaining) as watchdog, self._calls.watching(watchdog):
            try:
                response = self._session.request(
                    method,
                    url,
                    params=params,
                    json=json_body,
                    timeout=(remaining, remaining),  # each read; the watchdog bounds the call
                    allow_redirects=False,
                    stream=True,
                )
                try:
                    watchdog.response(response.raw)
                    body = self._read_body(response, where)
                finally:
                    response.close()
            except requests.Timeout as exc:
                failure = self._timed_out(where, sent=not _never_sent(exc))
            except requests.ConnectionError as exc:
                sent = not _never_sent(exc)
                failure = ApiConnectionError(f"{where}: {_lost(exc, url, sent)}", sent=sent)
            except requests.exceptions.InvalidURL as exc:
                failure = ApiConnectionError(
                    f"{where}: could not reach the provider: {redact(str(exc), secrets)}",
                    sent=False,
                )
            except (requests.RequestException, urllib3.exceptions.HTTPError, ValueError) as exc:
                # (requests' exceptions are OSErrors too: this clause must come before OSError.)
                failure = ApiResponseError(
                    f"{where}: unreadable answer: {redact(str(exc), secrets)}"
                )
            except OSError as exc:  # a socket error urllib3 did not wrap
                failure = ApiConnectionError(
                    f"{where}: could not reach the provider: {redact(str(exc), secrets)}"
                )
            except ApiResponseError as exc:  # past max_response_bytes
                failure = exc
            except MemoryError:
                failure = ApiResponseError(f"{where}: the answer does not fit in memory")
        if watchdog.fired or (
            isinstance(failure, ApiConnectionError) and time.monotonic() >= deadline
        ):
            # Whatever the cut looked like from inside (end of stream, a broken chunk, a body
            # that ended early), the call ran out of time.
            failure = self._timed_out(where)
        elif isinstance(self._session, ProviderSession) and self._session.aborted:
            # Cut by abort() (the spider is closing): a header block cut short parses as a
            # complete answer with an empty body, which is no answer of the provider's.
            sent = failure.sent if isinstance(failure, ApiConnectionError) else True
            failure = ApiConnectionError(f"{where}: cut short: the session was aborted", sent=sent)
        if failure is not None:
            # Raised outside the except blocks on purpose: the requests exception's text (and its
            # own causes) hold the full URL with the key, so it must not ride along as __context__.
            raise failure
        return response.status_code, response.headers, body

    def _timed_out(self, where: str, *, sent: bool = True) -> ApiConnectionError:
        return ApiConnectionError(
            f"{where}: the provider did not answer within {self.timeout:g} s", sent=sent
        )

    def _read_body(self, response: requests.Response, where: str) -> bytes:
        """The decoded body, read in chunks; ``ApiResponseError`` past ``max_response_bytes``."""
        cap = self.max_response_bytes
        declared = _int_text(response.headers.get("Content-Length") or "")
        if (
            declared is not None
            and declared > cap
            and response.headers.get("Content-Encoding", "identity") == "identity"
        ):
            raise self._too_large(where, response.status_code)
        body = bytearray()
        for chunk in response.iter_content(_CHUNK):
            body += chunk
            if len(body) > cap:
                raise self._too_large(where, response.status_code)
        return bytes(body)

    def _too_large(self, where: str, status: int) -> ApiResponseError:
        return ApiResponseError(
            f"{where}: the answer is larger than the {_size(self.max_response_bytes)} "
            "allowed (max_response_bytes)",
            http_status=status,
        )

    def _unwrap(
        self,
        method: str,
        path: str,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        secrets: tuple[str, ...],
    ) -> Any:
        """The envelope's ``data``, or the right exception for what came back."""
        where = f"{method} {path}"
        if 300 <= status < 400:
            target = redact(clip(headers.get("Location", "?"), _EXCERPT), secrets)
            raise ApiResponseError(
                f"{where}: redirected (HTTP {status}) to {target}; check PROXYPOOL_API_URL",
                http_status=status,
            )
        try:
            envelope = json.loads(body) if body.strip() else None
        except (ValueError, RecursionError):
            envelope = None
        if not isinstance(envelope, dict) or "code" not in envelope:
            excerpt = _excerpt(body, secrets)
            if status >= 400:
                raise ApiError(f"{where}: {excerpt or 'empty body'}", http_status=status)
            what = "an empty body" if not body.strip() else "no JSON envelope"
            raise ApiResponseError(
                f"{where}: {what} (HTTP {status}): {excerpt}".rstrip(": "), http_status=status
            )
        code = _envelope_code(envelope.get("code"))
        text = redact_excerpt(_message(envelope)[:_EXCERPT_WINDOW], secrets, limit=_EXCERPT)
        if code is None:
            raise ApiResponseError(
                f"{where}: the envelope's code is not a number (HTTP {status})", http_status=status
            )
        if code in SUCCESS_CODES and status < 400:
            return envelope.get("data")
        error_type = {3: InvalidAppKey, 156: RealNameRequired}.get(code, ApiError)
        if error_type is InvalidAppKey:
            text = text or "the app_key is invalid or has expired"
            text += f" (set a valid key in {APP_KEY_ENV})"
        elif error_type is RealNameRequired:
            text = text or "the account has not passed real-name verification"
        raise error_type(f"{where}: {text or 'no message'}", code=code, http_status=status)


def _excerpt(body: bytes, secrets: Iterable[str]) -> str:
    """The start of an unusable body for an error message: secrets scrubbed, then cut."""
    text = body[:_EXCERPT_WINDOW].decode("utf-8", "replace")
    return redact_excerpt(text, secrets, limit=_EXCERPT)


def _size(count: int) -> str:
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if count % size == 0:
            return f"{count // size} {unit}"
    return f"{count} bytes"


# -- helpers: request side ------------------------------------------------------------------------


def _check_base_url(url: object, field: str) -> str:
    if not isinstance(url, str):
        raise ConfigError(f"{field} must be a string URL", field=field)
    text = url.strip()
    example = "e.g. https://api.example.com/openapi"
    try:
        parts = urlsplit(text)
        host = parts.hostname
        port = parts.port  # raises ValueError for a port that is not 0-65535
    except ValueError:
        raise ConfigError(
            f"{field} is not a valid URL (check the host and port), {example}", field=field
        ) from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"{field} must be an http(s) URL with a host, {example}", field=field)
    if port == 0 or len(text) > _MAX_URL or not _valid_host(host):
        raise ConfigError(
            f"{field} must have a valid host name and port (1-65535) and be at most "
            f"{_MAX_URL} characters, {example}",
            field=field,
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(f"{field} must not carry credentials, a query or a fragment", field=field)
    return text.rstrip("/")


def _valid_host(host: str) -> bool:
    """An IP address, or a host name of at most 253 characters in labels of 1-63 letters,
    digits and inner hyphens: nothing that could smuggle userinfo, a path or a control
    character into a URL or a log line."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
        return len(host) <= 253 and all(_HOST_LABEL_RE.match(label) for label in labels)
    return True


def _page(page: object) -> int:
    number = check_int(page, "page", min=1)
    if number > _MAX_PAGE:
        raise ConfigError(f"page must be at most {_MAX_PAGE}, got {shown(page)}", field="page")
    return number


def _joined(usernames: str | Iterable[str]) -> str:
    if not isinstance(usernames, str | Iterable):
        raise ConfigError("usernames must be a name or a list of names", field="usernames")
    return ",".join(check_names(usernames, "usernames"))


def extract_params(geo: Geo, *, num: int, life: int, ep: str | None) -> dict[str, Any]:
    """The ``ip/v3`` query for ``geo`` (app_key aside), checking ``num``, ``life`` and ``ep``.

    Pure: callers that do network work before extracting (the CLI checks the place against the
    location lists) call it first, so bad input fails before anything is sent.
    """
    params: dict[str, Any] = {
        "num": check_int(num, "num", min=1, max=MAX_EXTRACT_NUM),
        "life": check_int(life, "life", min=1, max=MAX_LIFE_MINUTES),
        "format": "json",
    }
    if geo.country:
        params["cc"] = geo.country
    if geo.state:
        params["state"] = geo.state
    if geo.city:
        params["city"] = geo.city
    if ep is not None:
        if not isinstance(ep, str) or not ep.isascii() or not ep.isalpha() or len(ep) > 8:
            raise ConfigError(
                "ep must be a short proxy-network code of letters, e.g. 'us', 'hk', 'de'",
                field="ep",
            )
        params["ep"] = ep.lower()
    return params


def _country(value: object) -> str:
    if not isinstance(value, str) or not _COUNTRY_RE.match(value.strip()):
        raise ConfigError(
            "country_code must be an ISO 3166 alpha-2 code such as 'US'", field="country_code"
        )
    return value.strip().upper()


def _never_sent(exc: BaseException) -> bool:
    """Whether a requests error certainly struck before the request left: the connection was
    refused, unreachable or not opened in time (urllib3's NewConnectionError is a
    ConnectTimeoutError)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    return any(
        isinstance(cause, urllib3.exceptions.ConnectTimeoutError | ConnectionRefusedError)
        for cause in causes(exc)
    )


def _lost(exc: BaseException, url: str, sent: bool) -> str:
    """What went wrong with the connection to the provider, said like a person: "could not
    connect to 127.0.0.1:1 (connection refused)", or "lost the connection to host:port
    (connection reset by peer)" once the request may have left. Built from the host, the port
    and the OS's reason only: urllib3's own text holds the request URL."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = None
    host = parts.hostname or "the provider"
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    what = f"could not connect to {where}" if not sent else f"lost the connection to {where}"
    return f"{what} ({_reason(exc)})"


def _reason(exc: BaseException) -> str:
    """The innermost cause of a connection failure, in a few words."""
    chain = list(causes(exc))
    if any(isinstance(cause, urllib3.exceptions.NameResolutionError) for cause in chain):
        return "host not found"
    for cause in chain:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror[:1].lower() + cause.strerror[1:]
    if any(isinstance(cause, urllib3.exceptions.ProtocolError) for cause in chain):
        return "the connection closed without an answer"
    return type(exc).__name__


def _retryable(exc: ProviderError, *, paid: bool = False) -> bool:
    """Whether a failed GET may be sent again. A ``paid`` one (an extraction: the provider may
    bill IPs it answered with an error, or whose answer was lost) only if it never left."""
    if paid:
        return isinstance(exc, ApiConnectionError) and not exc.sent
    if isinstance(exc, ApiConnectionError):
        return True
    if isinstance(exc, AccountError):
        return False  # a bad key or an unverified account stays so, whatever the HTTP status
    status = getattr(exc, "http_status", None)
    return status is not None and status >= 500


def _envelope_code(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return _int_text(value)
    return None


def _int_text(text: str) -> int | None:
    """A whole number written in ASCII digits, or None."""
    text = text.strip()
    return int(text) if _INT_TEXT_RE.match(text) else None


def _message(envelope: Mapping[str, Any]) -> str:
    """The envelope's message: ``msg`` or, on some deployments, ``message``."""
    for key in ("msg", "message"):
        value = envelope.get(key)
        if isinstance(value, str) and value:
            return value
    for key in ("msg", "message"):
        value = envelope.get(key)
        if value not in (None, "", [], {}):
            return json.dumps(value, ensure_ascii=False, default=str)
    return ""


def _ignore(data: Any) -> None:
    """The parser of write calls: their ``data`` is null."""


# -- helpers: parsing -----------------------------------------------------------------------------
# Each raises ApiResponseError on a shape it cannot use, so no KeyError/TypeError leaves the client.


def _bad(what: str, detail: str) -> ApiResponseError:
    return ApiResponseError(f"unexpected {what} from the provider: {detail}")


def _items(data: Any, what: str) -> list[Any]:
    """The ``list`` of a ``{"list": [...]}`` data object (a bare list or null is tolerated)."""
    if data is None:
        return []
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        items = data.get("list")
        if items is None:
            return []
        if isinstance(items, list):
            return items
    raise _bad(what, f"expected a list, got {type(data).__name__}")


def _obj(item: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(item, dict):
        raise _bad(what, f"expected an object, got {type(item).__name__}")
    return item


def _int(value: Any, what: str, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise _bad(what, "expected a number, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        number = _int_text(value)
        if number is not None:
            return number
    raise _bad(what, f"expected a number, got {type(value).__name__}")


def _req_int(value: Any, what: str, default: int = 0) -> int:
    result = _int(value, what, default)
    return default if result is None else result


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _bad(what, f"expected text, got {type(value).__name__}")


def _datetime(value: Any, what: str) -> datetime | None:
    if value is None or value == "" or value == "0000-00-00 00:00:00":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise _bad(what, "timestamp out of range") from None
    if isinstance(value, str):
        text = value.strip()
        for parse in (lambda t: datetime.strptime(t, TIME_FORMAT), datetime.fromisoformat):
            try:
                parsed = parse(text)
            except ValueError:
                continue
            # The one rule (proxypool.models): every datetime is aware; a text time that
            # carries no offset is read as UTC, as the provider documents no zone.
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    raise _bad(what, f"unreadable time {clip(str(value), 40)!r}")


def _enum(value: Any, enum_type: type[E], what: str) -> E | int | None:
    number = _int(value, what)
    if number is None:
        return None
    try:
        return enum_type(number)
    except ValueError:
        return number  # a type the provider added after this release: keep the number


def _parse_accounts(data: Any) -> list[Account]:
    return [_parse_account(item) for item in _items(data, "account list")]


def _parse_account(raw: Any) -> Account:
    item = _obj(raw, "account")
    return Account(
        id=_int(item.get("id"), "account id"),
        username=_text(item.get("username"), "username"),
        password=_text(item.get("password"), "password"),
        created_at=_datetime(item.get("created_at"), "created_at"),
        remark=_text(item.get("remark"), "remark"),
        product_type=_enum(item.get("product_type"), ProductType, "product_type"),
        usage_flow=_req_int(item.get("usage_flow"), "usage_flow"),
        limit_flow=_req_int(item.get("limit_flow"), "limit_flow"),
        status=_enum(item.get("status"), AccountStatus, "status"),
    )


def _parse_usages(data: Any) -> list[DailyUsage]:
    return [_parse_usage(item) for item in _items(data, "usage list")]


def _parse_usage(raw: Any) -> DailyUsage:
    item = _obj(raw, "usage entry")
    day = item.get("day")
    try:
        parsed = date.fromisoformat(str(day).strip()[:10])
    except ValueError:
        raise _bad("usage entry", f"unreadable day {clip(str(day), 40)!r}") from None
    return DailyUsage(day=parsed, flow=_req_int(item.get("flow"), "flow"))


def _parse_product(raw: Any) -> Product:
    item = _obj(raw, "package")
    order_raw = item.get("order")
    order = None
    if order_raw is not None:
        o = _obj(order_raw, "order")
        order = Order(
            created_at=_datetime(o.get("created_at"), "order created_at"),
            pay_at=_datetime(o.get("pay_at"), "order pay_at"),
            title=_text(o.get("title"), "order title"),
        )
    return Product(
        id=_int(item.get("id"), "package id"),
        created_at=_datetime(item.get("created_at"), "created_at"),
        expired_at=_datetime(item.get("expired_at"), "expired_at"),
        product_type=_enum(item.get("product_type"), ProductType, "product_type"),
        trade_no=_text(item.get("trade_no"), "trade_no"),
        order=order,
    )


def _parse_product_page(data: Any) -> ProductPage:
    page = _obj(data if data is not None else {}, "package page")
    items = tuple(_parse_product(p) for p in _items(page, "package list"))
    page_size = _req_int(page.get("page_size"), "page_size", len(items))
    total_count = _req_int(page.get("total_count"), "total_count", len(items))
    # Without total_page, derive it from the count so iter_products still walks every page.
    pages = math.ceil(total_count / page_size) if page_size > 0 else 1
    return ProductPage(
        items=items,
        page=_req_int(page.get("page"), "page", 1),
        page_size=page_size,
        total_count=total_count,
        total_page=_req_int(page.get("total_page"), "total_page", max(pages, 1)),
    )


def _parse_countries(data: Any) -> list[CountryLocations]:
    return [_parse_country(item) for item in _items(data, "location list")]


def _parse_country(raw: Any) -> CountryLocations:
    item = _obj(raw, "location list entry")
    code = _text(item.get("country_code"), "country_code").upper()
    if not code:
        raise _bad("location list entry", "a country without country_code")
    subs = item.get("items")
    if subs is not None and not isinstance(subs, list):
        raise _bad("location list entry", f"items must be a list, got {type(subs).__name__}")
    locations = []
    for sub in subs or []:
        loc = _obj(sub, "location item")
        locations.append(
            LocationItem(
                country_code=_text(loc.get("country_code"), "country_code").upper() or code,
                state=_text(loc.get("state"), "state") or None,
                city=_text(loc.get("city"), "city") or None,
                continent_code=_text(loc.get("continent_code"), "continent_code") or None,
            )
        )
    return CountryLocations(
        country_code=code,
        name_en=_text(item.get("name_en"), "name_en"),
        name_zh_cn=_text(item.get("name_zh_cn"), "name_zh_cn"),
        continent_code=_text(item.get("continent_code"), "continent_code") or None,
        items=tuple(locations),
    )


def _state_names(data: Any) -> list[str]:
    return _names(_items(data, "state search"), "state")


def _city_names(data: Any) -> list[str]:
    return _names(_items(data, "city search"), "city")


def _names(items: list[Any], key: str) -> list[str]:
    names = []
    for item in items:
        value = item.get(key) if isinstance(item, dict) else item
        if not isinstance(value, str):
            raise _bad(f"{key} search", f"expected names, got {type(value).__name__}")
        names.append(value)
    return names


def _flatten(value: Any, what: str, depth: int = 0) -> Iterator[Any]:
    if depth > _MAX_NESTING:
        raise _bad(what, "list nested too deeply")
    if isinstance(value, list):
        for item in value:
            yield from _flatten(item, what, depth + 1)
    else:
        yield value


def _address(item: Any, what: str) -> tuple[str, int]:
    """``"ip:port"`` or ``{"ip": ..., "port": ...}`` -> (host, port)."""
    if isinstance(item, str):
        host, sep, port_text = item.strip().rpartition(":")
        port = _int(port_text, what) if sep else None
    elif isinstance(item, dict):
        host = _text(item.get("ip", item.get("host")), what)
        port = _int(item.get("port"), what)
    else:
        raise _bad(what, f"expected 'ip:port', got {type(item).__name__}")
    host = host.strip().strip("[]")
    if not host or port is None or not 0 < port < 65536 or not _valid_host(host):
        raise _bad(what, f"not an ip:port address: {clip(str(item), _QUOTE)!r}")
    return host, port


def _parse_addresses(data: Any) -> list[tuple[str, int]]:
    what = "extraction"
    return [_address(item, what) for item in _flatten(_items(data, what), what)]


def _parse_static_ip(raw: Any) -> StaticIp:
    if isinstance(raw, str):
        host, port = _address(raw, "static IP")
        return StaticIp(raw={"address": raw}, ip=host, port=port)
    item = _obj(raw, "static IP")
    return StaticIp(
        raw=dict(item),
        ip=_text(item.get("ip", item.get("host")), "static IP ip") or None,
        port=_int(item.get("port"), "static IP port"),
        country_code=_text(item.get("country_code"), "country_code") or None,
        product_type=_enum(item.get("product_type"), ProductType, "product_type"),
        status=_enum(item.get("status"), StaticIpStatus, "status"),
        trade_no=_text(item.get("trade_no"), "trade_no") or None,
        expired_at=_datetime(item.get("expired_at"), "expired_at"),
    )


def _parse_static_page(data: Any) -> StaticIpPage:
    items = tuple(_parse_static_ip(item) for item in _items(data, "static IP list"))
    page = total = None
    if isinstance(data, dict):
        page = _int(data.get("page"), "page")
        total = _int(data.get("total_count", data.get("total")), "total_count")
    return StaticIpPage(items=items, raw=data, page=page, total_count=total)
