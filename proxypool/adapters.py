"""The requests transport adapter: every request through a pooled proxy, never directly.

:class:`ProxyPoolAdapter` is an ``HTTPAdapter`` whose ``send()`` takes a proxy from a
:class:`~proxypool.pool.ProxyPool` for each request and hands it to ``HTTPAdapter.send()`` as
``proxies=``, so requests keeps doing what it does well: proxy auth from the URL's credentials,
CONNECT tunnels for https, connection pooling per proxy. Around that it

- reports each outcome to the pool: success, failure (connection refused or reset, proxy errors,
  connect timeouts, a CONNECT tunnel dropped during the TLS handshake, a 407 from the proxy) or a
  ban for the target's host (statuses in ``ban_statuses``, or a pluggable
  :class:`~proxypool.policy.BanPolicy`). A target certificate that fails verification is raised
  as requests' ``SSLError`` at once and blamed on no proxy. A read timeout (no answer in time)
  may be the target's slowness: it counts against the proxy only when another proxy then gets
  the target's answer for the same request (at most once per proxy and request);
- retries a failed or banned request on another proxy, up to ``max_proxy_retries`` times, when
  the request body can be replayed. After a ban (the site answered, so it has the request) or a
  failure that may have struck once the target had the request (a read timeout, a connection
  dropped while waiting for the answer) only idempotent methods are retried (urllib3's
  ``Retry.DEFAULT_ALLOWED_METHODS``: GET, HEAD, PUT, DELETE, OPTIONS, TRACE), so a POST is never
  sent twice. The final failure raises
  :class:`ProxyRequestFailed` or :class:`ProxyBanned`, naming the proxies tried (host:port only);
- raises :class:`NoProxyAvailable` when the pool cannot supply a proxy: the request is never sent
  directly;
- gives a pool proxy its own credentials or none: any ``Proxy-Authorization`` header on the
  request (the application's, ``HTTPProxyAuth``, or the one requests' ``rebuild_proxies()`` adds
  for an environment proxy after a redirect) is dropped before it goes through a pool proxy, so
  neither the pool proxy nor, through a CONNECT tunnel, the site ever sees it;
- lets an explicit proxy win: ``proxies=`` on the call, or the session's ``proxies`` setting,
  skips the pool for that request (proxies from the environment, ``HTTP_PROXY`` and friends, do
  not: with the pool mounted, the pool decides; a proxy equal to one of the environment's counts
  as the environment's, whatever ``NO_PROXY`` says);
- drops urllib3's per-proxy connection managers when a proxy leaves the pool (expired, evicted),
  so memory stays flat over long runs: ``HTTPAdapter.proxy_manager`` otherwise keeps one manager,
  with its open connections, for every proxy URL it ever saw (psf/requests#5726).

:func:`wrap_session` makes the pool the only way out of the session: it refuses a session with an
adapter mounted for any other prefix (``https://api.x/v2/``, ``ftp://``...), refuses such a mount
afterwards, and refuses at send time a request whose adapter is not a :class:`ProxyPoolAdapter`
(one slipped past ``mount``), redirects included. ``file://`` URLs are the exception: they read
local files and never touch the network, so an adapter for them (requests-file's) is kept.

Exceptions (each is a ``ProxyPoolError`` and a ``requests.RequestException``)::

    NoProxyAvailable     PoolExhausted + requests.ConnectionError: the pool had no proxy to give
    ProxyRequestFailed   ProxyPoolError + requests.ConnectionError: every proxy tried failed
    ProxyBanned          ProxyPoolError + requests.HTTPError: every proxy tried was banned
    PoolBypassRefused    ConfigError + requests.InvalidSchema: an adapter that is not the pool's
                         would carry the URL; raised at wrap, mount or send time, nothing sent

Thread-safety: one adapter (one session) may be shared by any number of threads.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import re
import ssl
import threading
import weakref
from collections.abc import Hashable, Iterable, Mapping, MutableMapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.exceptions import ConnectTimeout, InvalidURL, ProxyError, ReadTimeout, SSLError
from requests.models import PreparedRequest, Response
from requests.utils import prepend_scheme_if_needed, rewind_body, select_proxy
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, LocationValueError
from urllib3.util.retry import Retry
from urllib3.util.ssl_match_hostname import CertificateError

from ._causes import causes
from ._redact import install_log_redaction, redact
from ._validate import check_float, check_int, shown
from .errors import ConfigError, PoolExhausted, ProviderError, ProxyPoolError
from .geo import Geo
from .models import Proxy
from .policy import DEFAULT_BAN_STATUSES, BanPolicy, StatusBanPolicy, ban_check
from .pool import GeoLike, ProxyPool
from .sources import CheckedSource, GatewaySource

__all__ = [
    "NoProxyAvailable",
    "PoolBypassRefused",
    "ProxyBanned",
    "ProxyPoolAdapter",
    "ProxyRequestFailed",
    "UnusableURL",
    "wrap_session",
]

logger = logging.getLogger(__name__)

_FRESH_PICKS = 4  # pool.get() calls a retry makes to find a proxy it has not tried yet

# Errors that say "no answer through this proxy" (ConnectionError covers ProxyError, ConnectTimeout
# and SSLError). Retried elsewhere, and counted against the proxy, except: a rejected target
# certificate (re-raised), and a read timeout (maybe the target is slow: see send()).
_PROXY_FAILURES = (ReadTimeout, requests.exceptions.ConnectionError)
# A request that may have reached the target is sent again only with one of these methods.
_IDEMPOTENT_METHODS = Retry.DEFAULT_ALLOWED_METHODS
# urllib3's connect(): the socket, the CONNECT tunnel and the TLS handshake. The request is
# written only after it returns, so an error raised inside it struck before the target saw a byte.
_CONNECTING = frozenset({HTTPConnection.connect.__code__, HTTPSConnection.connect.__code__})
_PROXY_AUTH_REQUIRED = 407
# A proxy answering CONNECT with one of these could not reach the target host (bad gateway,
# unavailable, gateway timeout), and how http.client reports it (stdlib wording).
_TARGET_UNREACHABLE = frozenset({502, 503, 504})
_TUNNEL_FAILED = re.compile(r"Tunnel connection failed: (\d{3})\b")
_MAX_ERROR_TEXT = 300
_MAX_PROXY_RETRIES = 100
_MAX_POOL_TIMEOUT = 24 * 3600.0  # seconds
# The prefixes wrap_session mounts the pool on; any other adapter of the session is refused.
_POOL_PREFIXES = ("https://", "http://")


class NoProxyAvailable(PoolExhausted, requests.exceptions.ConnectionError):
    """The pool could not supply a proxy, so the request was not sent (never directly).

    ``proxies_tried`` lists the proxies (``host:port``) that already failed for this request, if
    any; the pool's own error is chained as ``__cause__``.
    """

    def __init__(
        self,
        message: str,
        *,
        proxies_tried: tuple[str, ...] = (),
        request: PreparedRequest | None = None,
    ) -> None:
        super().__init__(message, request=request)
        self.proxies_tried = proxies_tried


class ProxyRequestFailed(ProxyPoolError, requests.exceptions.ConnectionError):
    """Every proxy tried for a request failed (connection error, timeout, proxy error).

    ``proxies_tried`` lists them (``host:port``) in order; ``last_error`` is the last
    requests exception (also chained as ``__cause__``).
    """

    def __init__(
        self,
        message: str,
        *,
        proxies_tried: tuple[str, ...],
        last_error: BaseException,
        request: PreparedRequest | None = None,
    ) -> None:
        super().__init__(message, request=request)
        self.proxies_tried = proxies_tried
        self.last_error = last_error


class ProxyBanned(ProxyPoolError, requests.exceptions.HTTPError):
    """Every proxy tried for a request was banned by the target.

    ``proxies_tried`` lists them (``host:port``); ``response`` is the last (ban) response, its
    body already read.
    """

    def __init__(
        self,
        message: str,
        *,
        proxies_tried: tuple[str, ...],
        response: Response,
        request: PreparedRequest | None = None,
    ) -> None:
        super().__init__(message, response=response, request=request)
        self.proxies_tried = proxies_tried


class PoolBypassRefused(ConfigError, requests.exceptions.InvalidSchema):
    """An adapter that is not a :class:`ProxyPoolAdapter` would carry a URL of a session wrapped
    by :func:`wrap_session`, so it would leave without the pool: refused when wrapping, when
    mounting, or (for one slipped past ``mount``) when sending; nothing is sent.

    A ``ConfigError`` (``field`` names ``session`` or ``adapter``), and requests'
    ``InvalidSchema``, which requests itself raises when no adapter fits a URL. ``request`` is
    set when raised at send time.
    """

    def __init__(
        self, message: str, *, field: str | None = None, request: PreparedRequest | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.request = request


class UnusableURL(ConfigError, InvalidURL):
    """A request whose URL the pool cannot serve (a host name longer than DNS allows, which the
    pool cannot record bans for): refused before any proxy is taken; nothing is sent.

    requests' ``InvalidURL`` (what requests raises for a URL it cannot use) and a
    ``ConfigError`` (``field`` is ``url``). ``request`` is the refused request."""

    def __init__(self, message: str, *, request: PreparedRequest | None = None) -> None:
        super().__init__(message, field="url")
        self.request = request


class _ProxyDeparted:
    """The pool listener of one adapter. Holds the adapter weakly, so an adapter dropped without
    ``close()`` is not kept alive by the pool; the listener then unregisters itself."""

    def __init__(self, adapter: ProxyPoolAdapter, pool: ProxyPool) -> None:
        self._adapter = weakref.ref(adapter)
        self._pool = pool

    def __call__(self, proxy: Proxy) -> None:
        adapter = self._adapter()
        if adapter is None:
            self._pool.remove_listener(self)
            return
        adapter._forget(proxy)


class ProxyPoolAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` that sends every request through a proxy from ``pool``.

    ``geo``: the geography to ask the pool for (default: the pool's). ``session_key``: a sticky
    key; requests through this adapter keep one proxy while it stays good, then move on together.
    ``ban_statuses``: response statuses that mean "this site banned this proxy" (default 403,
    429); ``ban_policy``: an extra :class:`~proxypool.policy.BanPolicy` consulted with the status
    and the body (the body is read for it, except on ``stream=True`` requests, where it sees
    ``b""``). ``max_proxy_retries``: how many other proxies to try after the first fails or is
    banned (only when the body can be replayed, and after a failure that may have reached the
    target only for idempotent methods: see the module docstring). ``pool_timeout``: seconds to
    wait for the pool to supply a proxy. Other keyword arguments go to ``HTTPAdapter``
    (``pool_maxsize``, ...). With a ``session_key``, a retry after a read timeout goes to
    another proxy and the session keeps its own (the timeout may be the target's).

    Call :meth:`close` (or close the session) when done: it also unregisters from the pool.
    """

    def __init__(
        self,
        pool: ProxyPool,
        *,
        geo: GeoLike = None,
        session_key: Hashable | None = None,
        ban_statuses: Iterable[int] = DEFAULT_BAN_STATUSES,
        ban_policy: BanPolicy | None = None,
        max_proxy_retries: int = 3,
        pool_timeout: float = 30.0,
        **adapter_kwargs: Any,
    ) -> None:
        if not all(callable(getattr(pool, m, None)) for m in ("get", "report_failure")):
            raise ConfigError("pool must be a ProxyPool", field="pool")
        check_int(max_proxy_retries, "max_proxy_retries", min=0, max=_MAX_PROXY_RETRIES)
        pool_timeout = check_float(
            pool_timeout, "pool_timeout", min=0.0, max=_MAX_POOL_TIMEOUT, unit="seconds"
        )
        _check_adapter_kwargs(adapter_kwargs)
        # is_ban(status, body), the BanPolicy the Scrapy middleware takes too, or
        # is_ban(request, response) with requests' objects.
        self._ban_test = None if ban_policy is None else ban_check(ban_policy, field="ban_policy")
        if session_key is not None:
            try:
                hash(session_key)
            except Exception:  # TypeError, or whatever a custom __hash__ raises
                raise ConfigError(
                    f"session_key must be hashable (a str, int or tuple of them), not "
                    f"{type(session_key).__name__}",
                    field="session_key",
                ) from None
        # Validates the statuses (ConfigError naming ban_statuses) and freezes them.
        self.ban_statuses = StatusBanPolicy(ban_statuses).statuses
        # A malformed geo fails here; whether the place exists, the pool checks on first use.
        self.geo: Geo | None = None if geo is None else Geo.coerce(geo)
        self.pool = pool
        self.session_key = session_key
        self.ban_policy = ban_policy
        self._gateway = _gateway_of(pool)
        self.max_proxy_retries = max_proxy_retries
        self.pool_timeout = pool_timeout
        # Guards self.proxy_manager: requests reads it check-then-get, the pool listener pops.
        self._managers_lock = threading.Lock()
        super().__init__(**adapter_kwargs)
        install_log_redaction()
        self._listener: _ProxyDeparted | None = None
        self._listen()

    # -- requests' hooks ------------------------------------------------------------------------

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        """Send ``request`` through a pooled proxy (see the class docstring). Thread-safe."""
        url = request.url or ""
        if proxies and self._explicit_proxy(url, proxies):
            return super().send(request, stream, timeout, verify, cert, dict(proxies))
        _drop_proxy_authorization(request)
        if self._listener is None:
            # Used again after close() (requests allows it, and threads of a request storm may
            # still be sending): listen again, or managers of departed proxies would pile up.
            self._listen()

        split = urlsplit(url)
        domain = split.hostname
        # Over https the proxy only opens the tunnel (its 407 comes as a tunnel error): a 407
        # *response* there is the site's own answer, not the proxy refusing its credentials.
        proxy_answers = split.scheme.lower() != "https"
        replayable = _replayable(request)
        attempts = 1 + (self.max_proxy_retries if replayable else 0)
        method = (request.method or "").upper()
        tried: list[Proxy] = []
        slow: list[Proxy] = []  # read timeouts: blamed only if another proxy gets an answer
        last_error: BaseException | None = None
        last_ban: Response | None = None
        bans = 0
        stop_note = ""
        sticky = True
        for attempt in range(attempts):
            if attempt and request.body is not None and not isinstance(request.body, bytes | str):
                rewind_body(request)
            proxy = self._take(request, domain, tried, sticky=sticky)
            sticky = True
            tried.append(proxy)
            proxy_url = proxy.url
            try:
                response = super().send(
                    request, stream, timeout, verify, cert, {"http": proxy_url, "https": proxy_url}
                )
            except (InvalidURL, LocationValueError) as exc:
                # The request's URL was checked when it was prepared, so this is the proxy's: a
                # host urllib3 cannot parse (a malformed address from the source). The message
                # quotes the proxy URL, password included: keep a masked copy, never the error.
                self.pool.report_failure(proxy)
                last_error = ProxyError(
                    f"proxy {proxy} cannot be used: {type(exc).__name__}: "
                    f"{_error_text(exc, [proxy])}"
                )
                logger.debug("proxy %s has an address that cannot be used", proxy)
                continue
            except _PROXY_FAILURES as exc:
                if isinstance(exc, SSLError) and _certificate_rejected(exc):
                    raise  # the target's certificate: every proxy leads to the same one
                last_error = exc
                # Any other SSLError is the proxy's: one that accepts CONNECT, then drops the
                # tunnel during the handshake, or mid-answer.
                may_have_arrived = not _before_send(exc)
                if may_have_arrived and isinstance(exc, ReadTimeout):
                    # The target may be the slow one: not held against the proxy unless another
                    # proxy then gets an answer. The retry goes elsewhere, even for a sticky
                    # session (which keeps its proxy).
                    slow.append(proxy)
                    sticky = False
                    logger.debug("proxy %s: no answer from %s in time", proxy, domain)
                elif self._gateway is not None and _tunnel_status(exc) == _PROXY_AUTH_REQUIRED:
                    if last_ban is not None:
                        last_ban.close()
                    raise self._gateway_refused(proxy, request) from exc
                elif _tunnel_status(exc) in _TARGET_UNREACHABLE:
                    # The proxy could not reach the target host: held against that host only
                    # (as a ban), so links to unreachable hosts evict no healthy proxy and buy
                    # no new ones; the proxy keeps serving other sites.
                    self.pool.report_failure(proxy, domain=domain, banned=True)
                    logger.debug("proxy %s could not reach %s", proxy, domain)
                else:
                    self.pool.report_failure(proxy)
                    logger.debug("proxy %s failed for %s (%s)", proxy, domain, type(exc).__name__)
                if may_have_arrived and method not in _IDEMPOTENT_METHODS:
                    if attempt + 1 < attempts:
                        stop_note = (
                            f" ({method} is not idempotent and may have reached the target, "
                            "so no retry)"
                        )
                    break
                continue
            status = response.status_code
            if status == _PROXY_AUTH_REQUIRED and proxy_answers:
                _discard(response)
                if self._gateway is not None:
                    if last_ban is not None:
                        last_ban.close()
                    raise self._gateway_refused(proxy, request)
                self.pool.report_failure(proxy)
                last_error = ProxyError(f"proxy {proxy} answered 407 Proxy Authentication Required")
                logger.debug("proxy %s refused its credentials (407)", proxy)
                continue
            if self._is_ban(response, stream):
                if not stream:
                    _ = response.content  # read now: the connection goes back to its pool
                self.pool.report_failure(proxy, domain=domain, banned=True)
                self._blame_slow(slow, proxy, domain)
                bans += 1
                logger.debug("proxy %s banned by %s (HTTP %d)", proxy, domain, status)
                if last_ban is not None:
                    last_ban.close()
                last_ban = response
                last_error = None
                if method not in _IDEMPOTENT_METHODS:
                    # The site answered, so it has the request: a POST is not sent again.
                    if attempt + 1 < attempts:
                        stop_note = (
                            f" ({method} is not idempotent and reached the target, so no retry)"
                        )
                    break
                continue
            if last_ban is not None:
                last_ban.close()
            self.pool.report_success(proxy, domain=domain)  # (ends a ban streak there)
            self._blame_slow(slow, proxy, domain)
            return response

        names = tuple(str(p) for p in tried)
        where = _describe(request)
        retry_note = stop_note or (
            "" if replayable else " (the body could not be replayed, so no retry)"
        )
        if last_ban is not None and last_error is None:
            how = (
                "every proxy tried"
                if bans == len(tried)
                else f"{bans} of the {len(tried)} proxies tried (the others failed)"
            )
            raise ProxyBanned(
                f"{where}: banned (HTTP {last_ban.status_code}) through {how}: "
                f"{', '.join(names)}{retry_note}",
                proxies_tried=names,
                response=last_ban,
                request=request,
            )
        assert last_error is not None
        if last_ban is not None:
            last_ban.close()
        banned_note = f" ({bans} of them banned it)" if bans else ""
        raise ProxyRequestFailed(
            f"{where}: failed through every proxy tried{banned_note}: "
            f"{', '.join(names)}{retry_note}; "
            f"last error: {type(last_error).__name__}: {_error_text(last_error, tried)}",
            proxies_tried=names,
            last_error=last_error,
            request=request,
        ) from last_error

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """requests' method, under a lock shared with the pool listener that evicts managers."""
        with self._managers_lock:
            return super().proxy_manager_for(proxy, **proxy_kwargs)

    def close(self) -> None:
        """Close every connection and stop listening to the pool. Idempotent. Requests sent
        through the adapter afterwards work again (as with requests' own adapter) and make it
        listen to the pool again."""
        with self._managers_lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            self.pool.remove_listener(listener)
        with self._managers_lock:
            super().close()
            self.proxy_manager.clear()  # requests closes them but keeps them in the dict

    # -- internals ------------------------------------------------------------------------------

    def _listen(self) -> None:
        with self._managers_lock:
            if self._listener is not None:
                return
            listener = self._listener = _ProxyDeparted(self, self.pool)
        self.pool.add_listener(listener)

    def _explicit_proxy(self, url: str, proxies: Mapping[str, str]) -> bool:
        """Whether ``proxies`` names a proxy for ``url`` that the caller chose (the call's or the
        session's), rather than one requests merged in from the environment.

        Compared with every proxy of the environment, for any scheme and whatever ``NO_PROXY``
        says: after a redirect, requests keeps the first URL's environment proxy in the mapping,
        and for a host in ``NO_PROXY`` that proxy would otherwise look chosen by the caller."""
        chosen = select_proxy(url, dict(proxies))
        if not chosen:
            return False
        return chosen not in getproxies().values()

    def _take(
        self, request: PreparedRequest, domain: str | None, tried: list[Proxy], *, sticky: bool
    ) -> Proxy:
        """A proxy from the pool; ``sticky=False`` leaves the session key out (the session keeps
        its proxy, this request gets the next in rotation). A retry asks the pool again, a few
        times at most, for a proxy this request has not tried yet: a failed proxy's cool-down
        has full jitter and may already be over. If the pool has no other, the last one it gave
        is used."""
        try:
            for _ in range(_FRESH_PICKS):
                proxy = self.pool.get(
                    self.geo,
                    session=self.session_key if sticky else None,
                    domain=domain,
                    timeout=self.pool_timeout,
                )
                if proxy not in tried:
                    break
            return proxy
        except ConfigError as exc:
            if exc.field != "domain":
                raise
            raise UnusableURL(
                f"{_describe(request)}: not sent, the pool cannot serve the URL's host: {exc}",
                request=request,
            ) from None
        except (PoolExhausted, ProviderError) as exc:
            names = tuple(str(p) for p in tried)
            after = f" after {', '.join(names)} failed" if names else ""
            raise NoProxyAvailable(
                f"{_describe(request)}: not sent, no proxy available{after}: {exc}",
                proxies_tried=names,
                request=request,
            ) from exc

    def _blame_slow(self, slow: list[Proxy], answered: Proxy, domain: str | None) -> None:
        """The target answered this request through ``answered``, so the proxies that timed out
        before it (``slow``, emptied here) were the slow ones: one failure each. This is the only
        way a read timeout counts against a proxy, at most once per proxy and request."""
        for proxy in dict.fromkeys(slow):
            if proxy != answered:
                self.pool.report_failure(proxy)
                logger.debug("proxy %s timed out where %s got %s's answer", proxy, answered, domain)
        slow.clear()

    def _gateway_refused(self, proxy: Proxy, request: PreparedRequest) -> ProxyRequestFailed:
        """A 407 from the provider's rotating gateway refuses the account itself: every session
        would get the same, so no other is tried."""
        gateway = self._gateway
        assert gateway is not None
        message = (
            f"the gateway {gateway.host}:{gateway.port} refused proxy account "
            f"{gateway.username!r} (HTTP 407: a wrong password, a disabled account, or its "
            "traffic limit reached; see `proxypool accounts list`)"
        )
        logger.warning("%s", message)
        return ProxyRequestFailed(
            message,
            proxies_tried=(str(proxy),),
            last_error=ProxyError(message),
            request=request,
        )

    def _is_ban(self, response: Response, stream: bool) -> bool:
        if response.status_code in self.ban_statuses:
            return True
        if self._ban_test is None:
            return False
        test, by_status = self._ban_test
        if by_status:
            body = b"" if stream else response.content
            return bool(test(response.status_code, body))
        return bool(test(response.request, response))

    def _forget(self, proxy: Proxy) -> None:
        """Drop (and close) the connection manager requests keeps for ``proxy``."""
        url = proxy.url
        keys = {url}
        # requests stores managers under the URL as normalised by this (untyped) helper. It
        # fails on an address urllib3 cannot parse, for which requests made no manager; its
        # error would quote the URL, password included.
        with contextlib.suppress(ValueError):
            keys.add(prepend_scheme_if_needed(url, "http"))  # type: ignore[no-untyped-call]
        with self._managers_lock:
            managers = [m for m in (self.proxy_manager.pop(k, None) for k in keys) if m]
        for manager in managers:
            manager.clear()


def wrap_session(
    session: requests.Session, pool: ProxyPool, *, geo: GeoLike = None, **kwargs: Any
) -> requests.Session:
    """Mount a :class:`ProxyPoolAdapter` on ``session`` for ``http://`` and ``https://`` (one
    adapter for both, replacing the session's) and return the session. ``kwargs`` go to the
    adapter (``session_key=``, ``ban_statuses=``, ``max_proxy_retries=``, ...).

    From then on the pool is the session's only way out: ``session.adapters`` refuses an
    adapter that is not a ``ProxyPoolAdapter`` (``session.mount`` raises
    :class:`PoolBypassRefused`), and the session's ``get_adapter`` refuses one slipped in
    another way, so such a request raises before anything is sent. A ``ProxyPoolAdapter`` may be
    mounted for any prefix (other settings for one API, say), and any adapter for ``file://``
    (local files, no network).

    Every argument is checked first: on a ``ConfigError`` the session is left as it was. A
    session that already has another adapter for a prefix other than ``http://`` and
    ``https://`` (``https://api.x/v2/``, ``ftp://``) is refused (:class:`PoolBypassRefused`):
    it would send those URLs directly. Remove it or mount a ``ProxyPoolAdapter`` there first."""
    if not isinstance(session, requests.Session):
        raise ConfigError(
            f"session must be a requests.Session, not {type(session).__name__}", field="session"
        )
    _refuse_unpooled_adapters(session)
    adapter = ProxyPoolAdapter(pool, geo=geo, **kwargs)
    for prefix in _POOL_PREFIXES:
        previous = session.adapters.get(prefix)
        session.mount(prefix, adapter)
        if previous is not None and previous is not adapter:
            previous.close()
    if not isinstance(session.adapters, _PooledAdapters):
        session.adapters = _PooledAdapters(session.adapters)
    if not isinstance(vars(session).get("get_adapter"), _PooledGetAdapter):
        # Session.send() and its redirects look the adapter up through this method: the one place
        # that sees every request, whatever happened to session.adapters since.
        session.get_adapter = _PooledGetAdapter(session)  # type: ignore[method-assign]
    return session


def _carries_through_pool(prefix: str, adapter: BaseAdapter) -> bool:
    """Whether ``adapter``, mounted for ``prefix``, keeps a wrapped session's promise: it is the
    pool's, or it can only serve ``file:`` URLs, which read local files."""
    return isinstance(adapter, ProxyPoolAdapter) or prefix.lower().startswith("file:")


def _refuse_unpooled_adapters(session: requests.Session) -> None:
    """Before wrapping: every adapter wrap_session will not replace must carry through the pool."""
    unpooled = [
        f"{_shown_prefix(prefix)} ({type(adapter).__name__})"
        for prefix, adapter in session.adapters.items()
        if prefix not in _POOL_PREFIXES and not _carries_through_pool(prefix, adapter)
    ]
    if unpooled:
        raise PoolBypassRefused(
            f"session has adapters that would send without the pool: {', '.join(unpooled)}. "
            "Remove them (del session.adapters[prefix]) or mount a ProxyPoolAdapter for those "
            "prefixes, then wrap the session",
            field="session",
        )


class _PooledAdapters(collections.OrderedDict[str, BaseAdapter]):
    """``session.adapters`` of a wrapped session: refuses an adapter that would send without the
    pool (``Session.mount`` stores through ``__setitem__``; ``update`` and ``setdefault`` do
    too), before anything changes."""

    def __setitem__(self, prefix: str, adapter: BaseAdapter) -> None:
        if not _carries_through_pool(prefix, adapter):
            raise PoolBypassRefused(
                f"cannot mount {type(adapter).__name__} for {_shown_prefix(prefix)} on a session "
                "wrapped by wrap_session: it would send those URLs without the pool. Mount a "
                "ProxyPoolAdapter there (ProxyPoolAdapter(pool, ...) takes HTTPAdapter's "
                "arguments too), or use another session for them",
                field="adapter",
            )
        super().__setitem__(prefix, adapter)


class _PooledGetAdapter:
    """``get_adapter`` of a wrapped session: the session class's own lookup, then a refusal of an
    adapter that is not the pool's (slipped in past ``mount``: the mapping replaced, or written
    with ``dict`` methods), for any URL but ``file:``. Holds the session weakly, so the session
    and this attribute of it form no reference cycle. Thread-safe (reads only)."""

    def __init__(self, session: requests.Session) -> None:
        self._session = weakref.ref(session)
        self._lookup = type(session).get_adapter

    def __call__(self, url: str) -> BaseAdapter:
        session = self._session()
        if session is None:  # only reachable through a reference to this object kept elsewhere
            raise RuntimeError("the session this lookup belonged to is gone")
        adapter = self._lookup(session, url)
        if isinstance(adapter, ProxyPoolAdapter) or url.lower().startswith("file:"):
            return adapter
        prefix = next((p for p, a in session.adapters.items() if a is adapter), "")
        raise PoolBypassRefused(
            f"{_describe_url(url)}: not sent: the session's adapter for it, "
            f"{type(adapter).__name__} mounted for {_shown_prefix(prefix)}, would send it "
            "without the pool (it was not mounted with session.mount, which refuses it). Remove it "
            "(del session.adapters[prefix]) or mount a ProxyPoolAdapter for that prefix",
            field="adapter",
        )


def _drop_proxy_authorization(request: PreparedRequest) -> None:
    """Remove every ``Proxy-Authorization`` header from ``request`` before it goes through a pool
    proxy: requests adds that proxy's own from its URL (``proxy_headers``: to the CONNECT for
    https). Anything else there (the application's, ``HTTPProxyAuth``, an environment proxy's
    that ``rebuild_proxies()`` adds after a redirect) is no credential of the pool proxy's, and
    inside a CONNECT tunnel it would even reach the site."""
    headers: MutableMapping[str, str] = request.headers
    for name in [name for name in headers if name.lower() == "proxy-authorization"]:
        del headers[name]
        logger.debug("dropped a Proxy-Authorization header not meant for the pool's proxy")


def _check_adapter_kwargs(kwargs: Mapping[str, Any]) -> None:
    """``HTTPAdapter``'s own arguments, checked here: it would take nonsense silently (a pool
    size of -1) or fail with a ``TypeError`` naming no field."""
    for name, value in kwargs.items():
        if name in ("pool_connections", "pool_maxsize"):
            check_int(value, name, min=1, max=10_000)
        elif name == "pool_block":
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be True or False, not {shown(value)}", field=name)
        elif name == "max_retries":
            if not isinstance(value, Retry):
                try:
                    check_int(value, name, min=0, max=100)
                except ConfigError as exc:
                    raise ConfigError(f"{exc} (or a urllib3 Retry)", field=name) from None
        else:
            known = "pool, geo, session_key, ban_statuses, ban_policy, max_proxy_retries, "
            known += "pool_timeout, pool_connections, pool_maxsize, max_retries, pool_block"
            raise ConfigError(
                f"unknown argument {name!r}: ProxyPoolAdapter takes {known}", field=name
            )


def _replayable(request: PreparedRequest) -> bool:
    """Whether the body can be sent again: none, bytes/str, or a file requests can rewind."""
    body = request.body
    if body is None or isinstance(body, bytes | str):
        return True
    return isinstance(getattr(request, "_body_position", None), int)


def _gateway_of(pool: ProxyPool) -> GatewaySource | None:
    """The rotating gateway behind ``pool``'s proxies, if that is their source."""
    source: object = pool.source
    while isinstance(source, CheckedSource):
        source = source.source
    return source if isinstance(source, GatewaySource) else None


def _tunnel_status(exc: BaseException) -> int | None:
    """The status a proxy refused a CONNECT with: http.client words it "Tunnel connection
    failed: 502 Bad Gateway" (an ``OSError`` urllib3 wraps in ``ProxyError``); None otherwise."""
    for cause in causes(exc):
        match = _TUNNEL_FAILED.match(str(cause))
        if match:
            return int(match.group(1))
    return None


def _certificate_rejected(exc: BaseException) -> bool:
    """Whether ``exc`` is the target's certificate failing verification (untrusted, expired,
    wrong host): any proxy would lead to the same certificate. Other TLS failures through a
    tunnel (a proxy that accepts CONNECT and drops the connection) are the proxy's."""
    return any(
        isinstance(cause, ssl.SSLCertVerificationError | CertificateError) for cause in causes(exc)
    )


def _before_send(exc: BaseException) -> bool:
    """Whether ``exc`` certainly struck before the request left for the target: connecting to the
    proxy, its CONNECT tunnel, the TLS handshake through it. Anything else (no answer in time, a
    connection dropped while waiting for it) may have struck after the target got the request.

    requests' exception types cannot tell: urllib3 reports a connection the proxy closed after
    forwarding the request as ``ProxyError`` ("Unable to connect to proxy"), and a CONNECT
    answer that never came as ``ReadTimeout``. So this looks at where the error was raised.
    Unknown cases count as "may have arrived": a non-idempotent request is then not replayed."""
    if isinstance(exc, ConnectTimeout):
        return True
    for cause in causes(exc):
        # urllib3's NewConnectionError (refused, unreachable, unresolved) is a ConnectTimeoutError.
        if isinstance(cause, ConnectTimeoutError | ConnectionRefusedError):
            return True
        if _raised_while_connecting(cause.__traceback__):
            return True
    return False


def _raised_while_connecting(trace: TracebackType | None) -> bool:
    while trace is not None:
        if trace.tb_frame.f_code in _CONNECTING:
            return True
        trace = trace.tb_next
    return False


def _discard(response: Response) -> None:
    """Read and release a response we will not return, so its connection can be reused."""
    with contextlib.suppress(requests.RequestException):
        _ = response.content
    response.close()


def _describe(request: PreparedRequest) -> str:
    """``METHOD scheme://host[:port]/path``: no credentials, no query string."""
    return f"{request.method} {_describe_url(request.url or '')}"


def _describe_url(url: str) -> str:
    """``scheme://host[:port]/path``: no credentials, no query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port that is no number: shown as no port
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _shown_prefix(prefix: str) -> str:
    """A mounted prefix as it may appear in a message: quoted, without credentials or query."""
    if "@" in prefix or "?" in prefix:
        return repr(_describe_url(prefix))
    return repr(prefix)


def _error_text(exc: BaseException, tried: list[Proxy]) -> str:
    secrets = [p.password for p in tried]
    text = redact(str(exc), secrets)
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 3] + "..."
