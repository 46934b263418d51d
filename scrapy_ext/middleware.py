"""ProxyPoolMiddleware: the Scrapy downloader middleware that sends every request through the pool.

The middleware is thin: settings are read once (``settings.read_settings``) and every decision
about proxies is the pool's. What it adds is the Scrapy side:

- It never blocks the event loop. On the loop it only calls the pool's memory-only methods
  (``try_get``, ``needs_refill``, ``report_*``). Location lookups, extractions and waiting for a
  proxy (``pool.get``) run in the middleware's own worker threads; a request whose geography has
  no usable proxy awaits the refill in flight there instead of failing.
- Fail closed: with the middleware enabled no request is downloaded without a pool proxy, except
  those the user marked (``meta["proxypool_disable"]``) or gave their own ``meta["proxy"]``. A bad
  configuration, a rejected app_key or an unknown geography closes the spider with a clear reason
  before any request is sent, and every request that still comes is dropped (``IgnoreRequest``).
  So does a download handler for http or https other than Scrapy's ``HTTP11DownloadHandler``
  (or one listed in ``PROXYPOOL_TRUSTED_HANDLERS``): another one may ignore ``meta["proxy"]``, or
  put proxy credentials into its errors (Scrapy's aiohttp and httpx handlers do). The pool
  carries http and https only: ``data:`` passes untouched, any other scheme is refused
  (``IgnoreRequest``, ``proxypool/refused_scheme``), whose handlers would connect from this
  machine's own IP. Only a proxy URL in ``meta["proxy"]`` is the user's own proxy (None or ""
  is no proxy: the pool serves it); other bad meta values drop the request, counted in
  ``proxypool/bad_meta``, logged once per kind.
- Each request is tied to the pool entry it used by a private meta key (``_proxypool_proxy``),
  never by host:port: gateway proxies share an address.
- Credentials never go into ``meta["proxy"]``: for a proxy with a username the middleware sets
  ``meta["proxy"]`` to its bare address and the ``Proxy-Authorization`` header itself (encoded as
  ``HTTPPROXY_AUTH_ENCODING``, UTF-8 where that cannot carry them), which Scrapy's
  ``HttpProxyMiddleware`` (750) then keeps. A later attempt through a proxy without credentials
  drops that header, so one proxy's credentials are never sent to another. Only while
  ``HttpProxyMiddleware`` is enabled: it also drops the header from requests a spider derives
  from a pooled one and sends without a proxy. Without it, credentials stay in the URL and are not
  sent (a warning says so at start).
- Bans (``PROXYPOOL_BAN_STATUSES``, or a ``PROXYPOOL_BAN_POLICY``) and proxy failures (download
  errors through the proxy, a proxy host the downloader refuses as malformed, or the proxy's own
  HTTP 407) are reported to the pool, a ban for the target's domain only, and the request is
  retried on another proxy, up to ``PROXYPOOL_MAX_PROXY_RETRIES`` times; after that it fails
  visibly (a WARNING naming the proxies tried) and is counted. A non-idempotent request (not
  GET, HEAD, OPTIONS, TRACE, PUT or DELETE) is sent again only when the error proves it never
  left (``_NEVER_SENT``); after a ban or an error that may have struck after the site got it,
  the response or error goes on (``proxypool/not_replayed``).
- Scrapy's own ``RetryMiddleware`` (550, outside this one) retries what reaches it: the target's
  5xx, and a proxy failure once the budget above is spent. A request it retries because the
  target failed (the last proxy did its job) starts a fresh proxy budget; one it retries after
  this middleware gave up keeps the spent budget, so each of Scrapy's retries adds one proxy
  rather than ``PROXYPOOL_MAX_PROXY_RETRIES`` more (at most ``PROXYPOOL_MAX_PROXY_RETRIES + 1 +
  RETRY_TIMES`` proxies for a request whose proxies keep failing).
- Shutdown: Scrapy waits for the requests in progress before ``spider_closed``, and a request
  waiting for a proxy is one; so while requests wait, the middleware watches for the spider to
  start closing, then closes the pool (waiting requests are dropped: ``IgnoreRequest``) and cuts
  the provider calls in flight (``proxypool.ProviderSession.abort``). ``spider_closed`` does the
  same and waits (briefly) for its worker threads to end, so none outlives the crawl.

- Extracted proxies that refuse TCP connections are dropped before they join the pool
  (``PROXYPOOL_CHECK_PROXIES``, see ``proxypool.sources.CheckedSource``), so no request slot is
  spent on them. They still count against ``PROXYPOOL_MAX_EXTRACTED``: they were paid for.
- Ban storms: a site that bans every proxy of ``PROXYPOOL_BAN_STORM_BATCHES`` batches in a row
  makes the pool stop buying for it for ``PROXYPOOL_BAN_STORM_COOLDOWN`` seconds; its requests
  then fail (``IgnoreRequest`` to the errback, naming the site, counted in
  ``proxypool/ban_storm``) while other sites are served. With ``PROXYPOOL_BAN_STORM_CLOSE`` the
  spider is closed instead (finish reason ``proxypool_ban_storm``).

Stats (``proxypool/...``): ``requests``, ``waits``, ``bans``, ``bans/<status>``, ``bans/policy``,
``proxy_errors``, ``proxy_errors/<exception, invalid_hostname or 407>``,
``target_unreachable`` (a CONNECT refused 502/503/504: the host, not the proxy), ``retries``,
``retry_exhausted``, ``not_replayed``, ``exhausted``, ``ban_storm`` (requests failed by a ban
storm), ``bad_geo``, ``bad_meta``, ``bad_meta/<key>``, ``refused_scheme``,
``refused_scheme/<scheme>``, ``refills``, ``extractions``, ``extracted`` (IPs the provider handed
over, for a source that bills per IP) or ``minted`` (proxies a free source handed over: gateway
sessions, static IPs, a list's entries), ``rejected``, ``api_errors``, ``evictions``,
``expired``, ``live``, ``live/<geo>``, and ``error`` (why the spider was closed).
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import logging
import re
import time
import zlib
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast
from urllib.parse import urlsplit

from scrapy import signals
from scrapy.exceptions import CloseSpider, IgnoreRequest, NotConfigured
from scrapy.utils.defer import deferred_from_coro, maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached
from scrapy.utils.misc import build_from_crawler, load_object
from twisted.internet import defer
from twisted.python.failure import Failure

from proxypool.api import ProviderClient, ProviderSession
from proxypool.errors import (
    AccountError,
    BanStorm,
    ConfigError,
    InvalidGeo,
    PoolExhausted,
    ProviderError,
    ProxyPoolError,
)
from proxypool.geo import Geo
from proxypool.models import Proxy
from proxypool.policy import IDEMPOTENT_METHODS, ban_check
from proxypool.pool import ProxyPool
from proxypool.sources import (
    CheckedSource,
    GatewaySource,
    ListSource,
    ProxySource,
    StaticIPSource,
    catalog_for,
)

from . import _scrapy_private as private
from .settings import ProxyPoolSettings, read_settings

if TYPE_CHECKING:
    from scrapy import Request, Spider
    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from twisted.internet.base import ReactorBase
    from twisted.internet.task import LoopingCall

    from proxypool.redis_store import RedisStore

__all__ = [
    "PROXY_META_KEY",
    "BanPolicy",
    "ProxyPoolMiddleware",
    "proxy_of",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Private meta key holding the ``Proxy`` (the pool entry) a request was sent through.
PROXY_META_KEY = "_proxypool_proxy"


def proxy_of(obj: Request | Response) -> Proxy | None:
    """The pool proxy that carried a response (or that a request was sent through): a
    ``proxypool.Proxy`` with ``address``, ``host``, ``port`` and ``geo``, whose ``repr`` and
    ``str`` hold no credentials; None for what the pool did not serve (``proxypool_disable``,
    the request's own ``meta["proxy"]``, ``data:`` URLs)."""
    try:
        meta = obj.meta
    except AttributeError:  # a Response built without a request has no meta
        return None
    proxy = meta.get(PROXY_META_KEY)
    return proxy if isinstance(proxy, Proxy) else None


_RETRIES_KEY = "_proxypool_retries"  # proxy retries spent in this attempt (see _ATTEMPT_KEY)
_TRIED_KEY = "_proxypool_tried"  # the proxies (host:port) those retries left behind
# Scrapy's meta["retry_times"] when the proxy budget above was last started: a different value
# means the request came back through RetryMiddleware.
_ATTEMPT_KEY = "_proxypool_attempt"
_GAVE_UP_KEY = "_proxypool_gave_up"  # set when this middleware spent the budget and gave up
# The URL the keys above were written for: a request made with a pooled response's meta
# (``response.follow(url, meta=response.meta)``) carries them, but is not the one they count.
_BUDGET_URL_KEY = "_proxypool_budget_url"
_BUDGET_KEYS = (_RETRIES_KEY, _TRIED_KEY, _ATTEMPT_KEY, _GAVE_UP_KEY, _BUDGET_URL_KEY)
_AUTH_KEY = "_proxypool_auth"  # set while the request carries a Proxy-Authorization of ours
_PROXY_AUTHORIZATION = b"Proxy-Authorization"

# Why the spider is closed (its finish_reason).
REASON_MISCONFIGURED = "proxypool_misconfigured"
REASON_INVALID_GEO = "proxypool_invalid_geo"
REASON_ACCOUNT = "proxypool_account_error"
REASON_BAN_STORM = "proxypool_ban_storm"

# Download errors that mean the proxy failed (or could not carry the request): refused, timed out,
# unresolvable proxy host, tunnel refused, connection dropped. Scrapy wraps Twisted's refused,
# unresolved, timed-out and failed responses in its own documented exceptions; the Twisted ones it
# leaves as they are are listed by their public names. (Scrapy's TunnelError: _scrapy_private.)
_PROXY_FAILURES = (
    "scrapy.exceptions.DownloadConnectionRefusedError",
    "scrapy.exceptions.DownloadTimeoutError",
    "scrapy.exceptions.DownloadFailedError",
    "scrapy.exceptions.CannotResolveHostError",
    "scrapy.exceptions.ResponseDataLossError",
    "twisted.internet.error.ConnectError",
    "twisted.internet.error.TimeoutError",
    "twisted.internet.error.ConnectionLost",
    "twisted.internet.error.ConnectionDone",
    "twisted.internet.defer.TimeoutError",
    "twisted.web.client.ResponseFailed",  # (and ResponseNeverReceived, a subclass)
)

# Download errors that prove the request never left for the site: connecting to the proxy failed
# (refused, unresolvable, no route, the TLS handshake) or it refused the CONNECT tunnel. Only
# these let a non-idempotent request be sent again through another proxy. Twisted's
# TimeoutError is left out: older Scrapy raises it for a download that took too long.
_NEVER_SENT = (
    "scrapy.exceptions.DownloadConnectionRefusedError",
    "scrapy.exceptions.CannotResolveHostError",
    "twisted.internet.error.ConnectError",
)
_NOT_NEVER_SENT = ("twisted.internet.error.TimeoutError",)

# The schemes the pool carries; request.url is normalised by Scrapy (scheme in lower case).
_POOL_PREFIXES = ("http://", "https://")
_PROXY_SCHEMES = frozenset({"http", "https"})
# Schemes that never touch the network: passed untouched, not the pool's.
_LOCAL_SCHEMES = frozenset({"data"})
# Download handlers verified to send every request through meta["proxy"] with the
# Proxy-Authorization header and to keep credentials out of what they log and raise.
_VERIFIED_HANDLERS = ("scrapy.core.downloader.handlers.http11.HTTP11DownloadHandler",)

_MAX_GEO_CACHE = 1024
_MAX_NOTED = 256  # distinct kinds of bad meta / refused schemes logged at ERROR/WARNING, then DEBUG
_MAX_SCHEME_STATS = 32  # refused schemes counted by name; others under refused_scheme/other
_PROXY_URL_RULE = (
    "must be a proxy URL such as http://host:port or http://user:password@host:port (scheme "
    "http or https, and a host), or None / empty for a pool proxy"
)
_REFILL_CHECK = 0.05  # seconds between two needs_refill() checks of one geography
_CLOSING_CHECK = 0.1  # seconds between two looks at whether the spider is closing (while waiting)
_WORKERS_GRACE = 5.0  # seconds spider_closed waits for the worker threads to end
# A host name Twisted's HostnameEndpoint can connect to (after IDNA encoding): letters, digits,
# dots, hyphens and underscores. It refuses any other host with a ValueError before connecting.
_HOST_NAME = re.compile(rb"[A-Za-z0-9._-]+")
# A proxy answering CONNECT with one of these could not reach the target host (bad gateway,
# unavailable, gateway timeout): the target's failure as seen through that proxy, not the proxy's.
_TARGET_UNREACHABLE = frozenset({502, 503, 504})

# ProviderClient parameter -> the setting it comes from, for error messages.
_CLIENT_SETTINGS = {
    "app_key": "PROXYPOOL_APP_KEY",
    "base_url": "PROXYPOOL_API_URL",
    "timeout": "PROXYPOOL_API_TIMEOUT",
}


class BanPolicy(Protocol):
    """A pluggable ban check (``PROXYPOOL_BAN_POLICY`` = its import path, or the object).

    It sees the decoded response (after ``HttpCompressionMiddleware``) and may read its body;
    returning True means the target site refused the proxy. A class is built with
    ``from_crawler`` when it has one. A plain function ``(request, response) -> bool`` works too.
    """

    def is_ban(self, request: Request, response: Response) -> bool: ...


def _loaded(paths: tuple[str, ...]) -> list[object]:
    """The objects at ``paths`` that can be imported (the others left out)."""
    found: list[object] = []
    for path in paths:
        with contextlib.suppress(ImportError, NameError, AttributeError, ValueError):
            found.append(load_object(path))
    return found


def _load_types(paths: tuple[str, ...]) -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    for path in paths:
        try:
            obj = load_object(path)
        except (ImportError, NameError, AttributeError, ValueError):
            continue
        if isinstance(obj, type) and issubclass(obj, BaseException):
            found.append(obj)
    return tuple(found)


def _proxy_url_problem(value: object) -> str | None:
    """Why ``value`` (a non-empty ``meta["proxy"]``) is not a proxy URL Scrapy can use: a short
    description that never quotes the value (it may hold a password); None when it is one."""
    if not isinstance(value, str):
        return f"got a {type(value).__name__}"
    if value != value.strip():
        return "got text with surrounding whitespace"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return "got a URL with a malformed host or port"
    if parts.scheme not in _PROXY_SCHEMES:
        return f"got scheme {parts.scheme!r}" if parts.scheme else "got no scheme"
    if not parts.hostname:
        return "got no host"
    if port == 0:
        return "got port 0"
    return None


def _handler_problem(settings: Any, trusted: tuple[Any, ...]) -> str | None:
    """Why the download handlers for http and https (``DOWNLOAD_HANDLERS`` over Scrapy's base,
    as Scrapy resolves them) cannot be trusted with the pool's proxies; None when they can.

    A handler that ignores ``meta["proxy"]`` sends from this machine's own IP; one that rebuilds
    ``user:password@`` into a proxy URL (Scrapy's aiohttp and httpx handlers) puts credentials
    into the errors it raises and Scrapy logs. Raises ConfigError for an unloadable entry of
    ``PROXYPOOL_TRUSTED_HANDLERS``."""
    allowed: list[object] = []
    for spec in trusted:
        try:
            allowed.append(load_object(spec) if isinstance(spec, str) else spec)
        except (ImportError, NameError, AttributeError, ValueError) as exc:
            raise ConfigError(
                f"PROXYPOOL_TRUSTED_HANDLERS: {spec!r} cannot be imported: {exc}",
                field="PROXYPOOL_TRUSTED_HANDLERS",
            ) from None
    handlers = settings.getwithbase("DOWNLOAD_HANDLERS")
    for scheme in sorted(_PROXY_SCHEMES):
        spec = handlers.get(scheme)
        if spec is None:
            continue  # no handler: Scrapy downloads nothing for this scheme
        if isinstance(spec, str) and spec in _VERIFIED_HANDLERS:
            # Scrapy's default, named by its path: not imported here (Scrapy imports it at the
            # first download; importing it at start costs the crawl ~0.1 s of start-up).
            continue
        try:
            handler = load_object(spec) if isinstance(spec, str) else spec
        except (ImportError, NameError, AttributeError, ValueError):
            continue  # Scrapy cannot load it either, reports it, and downloads nothing with it
        if any(handler is known for known in (*allowed, *_loaded(_VERIFIED_HANDLERS))):
            continue
        name = spec if isinstance(spec, str) else f"{handler.__module__}.{handler.__qualname__}"
        return (
            f"DOWNLOAD_HANDLERS['{scheme}'] is {name}, which proxypool has not verified to send "
            "every request through meta['proxy'] with the Proxy-Authorization header and to "
            "keep proxy credentials out of its logs and errors (Scrapy's aiohttp and httpx "
            "handlers put user:password@ into the proxy URL they report; HTTP/2 refuses "
            f"proxies). Use {_VERIFIED_HANDLERS[0]} (Scrapy's default) for http and https, or, "
            "if you have checked that handler yourself (e.g. your proxies carry no "
            "credentials), list it in PROXYPOOL_TRUSTED_HANDLERS"
        )
    return None


def _basic_auth(proxy: Proxy, encoding: str) -> bytes:
    """The ``Proxy-Authorization`` value for ``proxy``'s username and password (none: empty), as
    ``HttpProxyMiddleware`` makes it from URL credentials; UTF-8 where ``encoding`` (Scrapy's
    ``HTTPPROXY_AUTH_ENCODING``) cannot carry them."""
    pair = f"{proxy.username}:{proxy.password or ''}"
    try:
        raw = pair.encode(encoding)
    except UnicodeError:  # (UnicodeEncodeError, or a codec such as idna refusing the text)
        raw = pair.encode("utf-8")
    return b"Basic " + base64.b64encode(raw)


def _forget_auth(request: Request) -> None:
    """Drop the ``Proxy-Authorization`` this middleware set on ``request`` for an earlier proxy,
    and HttpProxyMiddleware's note of which proxy it belonged to."""
    meta = request.meta
    if meta.pop(_AUTH_KEY, None):
        meta.pop(private.AUTH_PROXY_KEY, None)
        request.headers.pop(_PROXY_AUTHORIZATION, None)


def _slot_for(proxy: Proxy) -> str:
    """A download slot per pool entry. Gateway entries share host:port and differ by username, so
    a checksum of the username (never the password) tells them apart without logging it."""
    if proxy.username is None:
        return f"proxypool:{proxy.address}"
    return f"proxypool:{proxy.address}#{zlib.crc32(proxy.username.encode()):08x}"


class ProxyPoolMiddleware:
    """Downloader middleware sending each request through a proxy from a ``ProxyPool``.

    Enable with ``ADDONS = {"scrapy_ext.ProxyPoolAddon": 0}`` or
    ``DOWNLOADER_MIDDLEWARES = {"scrapy_ext.ProxyPoolMiddleware": 560}``; configure with the
    ``PROXYPOOL_*`` settings (``scrapy_ext.settings.DEFAULTS``). Geography: setting
    ``PROXYPOOL_GEO``, spider attribute ``proxypool_geo`` (plus ``proxypool_geos``, further
    geographies its requests use, validated and pre-filled at start too), ``meta["proxypool_geo"]``
    per request (``"US/California"``, a dict or a ``Geo``). Sticky sessions:
    ``meta["proxypool_session"]`` (any hashable key). ``meta["proxypool_disable"]`` sends a request
    without the pool, on purpose; a request with the user's own ``meta["proxy"]`` is left alone.

    Every method runs on the reactor thread; blocking work goes to a private thread pool.
    Subclasses may override ``build_source`` and ``build_pool``. ``clock`` (monotonic seconds,
    default ``time.monotonic``) paces how often the request count is written to the stats and the
    pool is asked whether it needs a refill; tests inject a fake one.
    """

    def __init__(
        self,
        crawler: Crawler,
        config: ProxyPoolSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.crawler = crawler
        self.stats = crawler.stats
        self.pool: ProxyPool | None = None
        self.source: CheckedSource | None = None
        # (finish reason, message) once the middleware cannot serve: every request is dropped.
        self._failure: tuple[str, str] | None = None
        self._spider_geo = Geo()
        self._failures = _load_types(_PROXY_FAILURES)
        self._never_sent = _load_types(_NEVER_SENT)
        self._maybe_sent = _load_types(_NOT_NEVER_SENT)
        # meta["proxy"] values already judged: True = the user's own proxy URL, else the problem.
        self._own_proxies: dict[str, bool | str] = {}
        self._noted: set[tuple[str, str]] = set()  # kinds of bad meta / schemes already logged
        self._scheme_stats: set[str] = set()  # refused schemes counted under their own name
        self._ban_policy: Callable[[Request, Response], bool] | None = None
        self._geo_cache: dict[Hashable, Geo] = {}
        self._bad_geos: dict[Geo, str] = {}
        self._refilling: set[Geo] = set()
        # needs_refill() takes the pool lock: asked at most once per _REFILL_CHECK s per geo.
        # The spider's geography is keyed None (a Geo's hash is computed in Python on every
        # lookup, and most requests use that one), the others by their Geo.
        self._refill_checked: dict[Geo | None, float] = {}
        self._clock = clock
        self._unreported = 0  # requests given a proxy, not yet in the stats (_report_requests)
        # Requests that arrive while spider_opened is still preparing wait here (a list only then).
        self._open_waiters: list[defer.Deferred[None]] | None = None
        self._closing = False
        self._failure_told = False  # the failure below was logged when the middleware was built
        self._executor: ThreadPoolExecutor | None = None
        # The provider session built here (None with PROXYPOOL_SOURCE): cut on close.
        self._http: ProviderSession | None = None
        self._jobs = 0  # worker-thread jobs whose result has not reached the reactor yet
        self._idle: list[Callable[[], None]] = []  # called once _jobs drops to 0
        self._own_auth = True  # Proxy-Authorization set here (see below)
        self._url_auth_inert = True  # no HttpProxyMiddleware would act on user:password@
        self._waiting = 0  # requests waiting for a proxy in a worker thread
        self._closing_watch: LoopingCall | None = None
        try:
            self.config = config if config is not None else read_settings(crawler.settings)
        except ConfigError as exc:
            self.config = ProxyPoolSettings()
            self._failure = (REASON_MISCONFIGURED, str(exc))
            return
        if not self.config.enabled:
            return
        self._spider_geo = self.config.geo
        try:
            if self.config.ban_policy is not None:
                self._ban_policy = self._load_ban_policy(self.config.ban_policy)
            self.source = CheckedSource(
                self.build_source(),
                check=self.config.check_proxies,
                timeout=self.config.check_timeout,
            )
            self.pool = self.build_pool(self.source)
            problem = _handler_problem(crawler.settings, self.config.trusted_handlers)
        except ConfigError as exc:
            self._failure = (REASON_MISCONFIGURED, str(exc))
            return
        if problem is not None:  # the spider closes at open: nothing is bought, nothing is sent
            self._failure = (REASON_MISCONFIGURED, problem)
            return
        self._executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="proxypool")
        # Set Proxy-Authorization here only while HttpProxyMiddleware runs: it also removes the
        # header from requests derived from a pooled one that go out without a proxy.
        self._own_auth = private.httpproxy_enabled(crawler.settings)
        if not self._own_auth:
            logger.warning(
                "proxypool: Scrapy's HttpProxyMiddleware is disabled, so proxy credentials are "
                "not sent; proxies that need a username and password will refuse requests"
            )
        elif not private.auth_note_works():
            self._own_auth = False
            self._url_auth_inert = False
            logger.warning(
                "proxypool: this Scrapy's HttpProxyMiddleware does not keep a Proxy-Authorization "
                "set by another middleware as proxypool expects (see scrapy_ext._scrapy_private), "
                "so proxy credentials are not sent; proxies that need a username and password "
                "will refuse requests"
            )

    @property
    def failure(self) -> tuple[str, str] | None:
        """Why the middleware cannot serve, as ``(finish reason, message)``: a bad setting, an
        unknown geography, an account refused, a ban storm that closes the spider. Every request
        is then dropped and the spider is (or will be) closed with that reason. None while
        serving."""
        return self._failure

    def sync_stats(self) -> None:
        """Copy the pool's and the source's counters into Scrapy's stats now (they are copied
        periodically and when the spider closes). Call on the reactor thread."""
        self._sync_stats()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ProxyPoolMiddleware:
        middleware = cls(crawler)
        if not middleware.config.enabled and middleware._failure is None:
            raise NotConfigured("PROXYPOOL_ENABLED is False")
        if middleware._failure is not None:
            # A bad setting is said now, before the spider opens; it closes at spider_opened,
            # before any request or provider call.
            logger.error(
                "proxypool: the spider will be closed before any request is sent: %s",
                middleware._failure[1],
            )
            middleware._failure_told = True
        crawler.signals.connect(middleware.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(middleware.spider_closed, signal=signals.spider_closed)
        return middleware

    # -- building ---------------------------------------------------------------------------------

    def build_source(self) -> ProxySource:
        """Where proxies come from, by ``PROXYPOOL_SOURCE``: ``"extract"`` (default) IPs
        extracted from the provider (``PROXYPOOL_API_URL``, ``PROXYPOOL_APP_KEY``); ``"gateway"``
        sessions of the rotating gateway (``PROXYPOOL_GATEWAY*``); ``"static"`` the account's
        static IPs; ``"list"`` your own (``PROXYPOOL_PROXY_LIST``, or scrapy-rotating-proxies'
        ``ROTATING_PROXY_LIST``/``_PATH``); or an import path (an object with
        ``extract(geo, *, num, life)``, or a class). No network call is made here; a list file is
        read now."""
        config = self.config
        mode = config.mode
        if mode == "custom":
            obj = self._load("PROXYPOOL_SOURCE", config.source)
            if not callable(getattr(obj, "extract", None)):
                raise ConfigError(
                    "PROXYPOOL_SOURCE must be an object with an extract(geo, *, num, life) "
                    f"method, not {type(obj).__name__}",
                    field="PROXYPOOL_SOURCE",
                )
            return obj  # type: ignore[no-any-return]
        if mode == "list":
            setting = config.proxy_list_setting
            entries = config.proxy_list
            assert entries is not None  # read_settings requires it in list mode
            try:
                return ListSource(Path(entries) if isinstance(entries, str) else entries)
            except ConfigError as exc:
                raise ConfigError(f"{setting}: {exc}", field=setting) from None
        # (In gateway mode with a password the API is optional: used for the catalog if set.)
        client = self._provider_client() if config.app_key and config.api_url else None
        if mode == "gateway":
            assert config.gateway is not None  # read_settings requires it
            return GatewaySource(
                config.gateway,
                config.gateway_user,
                config.gateway_password,
                format=config.gateway_format,
                client=client,
            )
        assert client is not None  # read_settings requires the key for these modes
        if mode == "static":
            return StaticIPSource(client)
        return client

    def _provider_client(self) -> ProviderClient:
        """A client of the provider's API, on a session of our own, so closing the spider can
        cut the calls in flight."""
        session = ProviderSession()
        try:
            client = ProviderClient(
                self.config.app_key,
                base_url=self.config.api_url,
                timeout=self.config.api_timeout,
                session=session,
                sleep=session.sleep,
            )
        except ConfigError as exc:  # say which setting, not which parameter
            session.close()
            setting = _CLIENT_SETTINGS.get(exc.field or "", "PROXYPOOL_API_URL")
            raise ConfigError(f"{setting}: {exc}", field=setting) from None
        self._http = session
        return client

    def build_pool(self, source: CheckedSource) -> ProxyPool:
        """The pool, fed by ``source``. Geographies are validated with the provider's location
        lists when the wrapped source is the provider (``catalog_for``)."""
        catalog = catalog_for(source)
        config = self.config
        inner = source.source
        min_size = config.min_size
        if isinstance(inner, ListSource):
            if not config.geo.is_anywhere:
                raise ConfigError(
                    f"PROXYPOOL_GEO: a proxy list has no geography, so {str(config.geo)!r} "
                    "cannot be served from it; leave PROXYPOOL_GEO unset",
                    field="PROXYPOOL_GEO",
                )
            # The whole list is the pool: below it there is nothing more to fetch.
            min_size = min(min_size, len(inner))
        if isinstance(inner, StaticIPSource) and (config.geo.state or config.geo.city):
            raise ConfigError(
                f"PROXYPOOL_GEO: static IPs are listed by country only, not {str(config.geo)!r}",
                field="PROXYPOOL_GEO",
            )
        if config.max_extracted is not None and not source.paid:
            raise ConfigError(
                f"PROXYPOOL_MAX_EXTRACTED caps the IPs bought by extraction; with "
                f"PROXYPOOL_SOURCE = {config.mode!r} nothing is bought per IP: leave it unset",
                field="PROXYPOOL_MAX_EXTRACTED",
            )
        return ProxyPool(
            source,
            geo=config.geo,
            life=config.life,
            batch=config.batch,
            min_size=min_size,
            strategy=config.strategy,
            expiry_margin=config.expiry_margin,
            max_failures=config.max_failures,
            max_extracted=config.max_extracted,
            ban_storm_batches=config.ban_storm_batches,
            ban_storm_cooldown=config.ban_storm_cooldown,
            catalog=catalog,
            store=self._store(config),
        )

    @staticmethod
    def _store(config: ProxyPoolSettings) -> RedisStore | None:
        """A ``RedisStore`` when ``PROXYPOOL_REDIS_URL`` is set: the pool is shared with every
        process on that Redis and namespace. No connection yet: the pool's background thread
        makes it, never the reactor."""
        if config.redis_url is None:
            return None
        from proxypool.redis_store import RedisStore

        return RedisStore(config.redis_url, namespace=config.redis_namespace)

    def _load(self, setting: str, spec: Any) -> Any:
        try:
            obj = load_object(spec) if isinstance(spec, str) else spec
        except (ImportError, NameError, AttributeError, ValueError) as exc:
            raise ConfigError(
                f"{setting} {spec!r} cannot be imported: {exc}", field=setting
            ) from None
        if isinstance(obj, type):
            obj = build_from_crawler(obj, self.crawler)
        return obj

    def _load_ban_policy(self, spec: Any) -> Callable[[Request, Response], bool]:
        """``PROXYPOOL_BAN_POLICY`` as a test of (request, response): a ``BanPolicy``
        (``is_ban(status, body)``, the one the requests adapter takes too: it sees the status
        and the decoded body) or a Scrapy-only ``is_ban(request, response)``; an object, a
        class (built with ``from_crawler`` when it has one) or a function."""
        obj = self._load("PROXYPOOL_BAN_POLICY", spec)
        test, by_status = ban_check(obj, field="PROXYPOOL_BAN_POLICY")
        if by_status:
            return lambda request, response: bool(test(response.status, response.body))
        return test

    # -- spider lifecycle -------------------------------------------------------------------------

    async def spider_opened(self, spider: Spider | None = None) -> None:
        """Validate every geography the spider declares and pre-fill the pool (in worker threads).

        Closes the spider (``CloseSpider``) with a clear reason when the configuration is bad, a
        geography unknown, or the account refused; transient provider errors only warn, since
        requests wait for a later refill anyway.
        """
        spider = spider if spider is not None else self.crawler.spider
        self._open_waiters = []
        try:
            if self._failure is None:
                await self._prepare(spider)
        finally:
            waiters, self._open_waiters = self._open_waiters or [], None
            for waiter in waiters:
                waiter.callback(None)
        if self._failure is None:
            return
        reason, message = self._failure
        if not self._failure_told:
            logger.error("proxypool: closing the spider before any request is sent: %s", message)
        self.stats.set_value("proxypool/error", message)
        raise CloseSpider(reason)  # Scrapy closes the spider before it sends any request

    async def _prepare(self, spider: Spider | None) -> None:
        try:
            declared = self._declared_geos(spider)
        except ConfigError as exc:
            self._failure = (REASON_MISCONFIGURED, str(exc))
            return
        results: list[tuple[bool, Any]] = await maybe_deferred_to_future(
            defer.DeferredList(
                [self._call_in_thread(self._prepare_geo, geo) for _, geo in declared],
                consumeErrors=True,
            )
        )
        ready: list[str] = []
        for (label, geo), (ok, result) in zip(declared, results, strict=True):
            if ok:
                canonical, live = result
                if label != "proxypool_geos":
                    self._spider_geo = canonical
                ready.append(f"{_label(canonical)} ({live} live)")
                continue
            error = result.value
            if isinstance(error, AccountError):
                self._failure = (REASON_ACCOUNT, f"the provider refused the account: {error}")
                break
            if isinstance(error, ConfigError):
                self._failure = (
                    REASON_INVALID_GEO,
                    f"{label} = {str(geo)!r} is not a geography the provider knows: {error}",
                )
                break
            logger.warning(
                "proxypool: could not prepare %s yet (%s); requests will wait", geo, error
            )
        self._sync_stats()
        if self._failure is None:
            logger.info("proxypool: pool ready for %s", ", ".join(ready) or "nothing yet")

    def _declared_geos(self, spider: Spider | None) -> list[tuple[str, Geo]]:
        """(where it was declared, Geo) for the spider's default geography and its extra ones."""
        declared: list[tuple[str, Geo]] = []
        own = getattr(spider, "proxypool_geo", None)
        if own is not None:
            declared.append(("spider attribute proxypool_geo", _coerce(own, "proxypool_geo")))
        else:
            declared.append(("PROXYPOOL_GEO", self.config.geo))
        extra = getattr(spider, "proxypool_geos", None) or ()
        if isinstance(extra, str | Geo | Mapping):
            extra = (extra,)
        for value in extra:
            declared.append(("proxypool_geos", _coerce(value, "proxypool_geos")))
        unique: dict[Geo, str] = {}
        for label, geo in declared:
            unique.setdefault(geo, label)
        return [(label, geo) for geo, label in unique.items()]

    def _prepare_geo(self, geo: Geo) -> tuple[Geo, int]:
        """Worker thread: validate ``geo`` (InvalidGeo names close matches), then pre-fill it."""
        assert self.pool is not None
        canonical = self.pool.resolve_geo(geo)
        try:
            # Bounded like a request's wait: a slow provider does not hold the spider's start.
            self.pool.refill(canonical, timeout=self.config.wait_timeout)
        except AccountError:
            raise
        except (ProviderError, PoolExhausted) as exc:
            logger.warning("proxypool: pre-filling %s failed (%s); requests will wait", geo, exc)
        return canonical, self.pool.stats()["live"].get(str(canonical), 0)

    async def spider_closed(self, spider: Spider | None = None) -> None:
        """Close the pool, cut the provider calls in flight, stop the worker threads; returns
        once they have ended (at most ``_WORKERS_GRACE`` s: a ``PROXYPOOL_SOURCE`` of the user's
        cannot be cut, and ends within its own timeout). A coroutine: Scrapy >= 2.14 deprecates
        signal handlers that return a Deferred."""
        self._sync_stats()
        self._shut_down()
        if self._jobs:
            await maybe_deferred_to_future(self._workers_done(_WORKERS_GRACE))
        if self.pool is not None and self.config.redis_url is not None:
            # What this process reported last reaches Redis before it exits (waited for in a
            # thread: never Redis I/O on the reactor's).
            from twisted.internet.threads import deferToThread

            await maybe_deferred_to_future(deferToThread(self.pool.close))

    def _shut_down(self) -> None:
        """Serve nothing more and let every worker thread end now. Idempotent; reactor thread."""
        self._closing = True
        if self._closing_watch is not None and self._closing_watch.running:
            self._closing_watch.stop()
        if self.pool is not None:
            self.pool.close(wait=False)  # wakes threads waiting in pool.get()
        if self._http is not None:
            # Cuts extractions in flight (their threads end now, not when the provider answers)
            # and makes the client's retries fail at once.
            self._http.abort()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _workers_done(self, timeout: float) -> defer.Deferred[None]:
        """Fires once every worker-thread job has reported back, or after ``timeout`` s."""
        if self._jobs == 0:
            return defer.succeed(None)
        from twisted.internet import reactor

        clock = cast("ReactorBase", reactor)
        done: defer.Deferred[None] = defer.Deferred()

        def fire() -> None:
            if not done.called:
                done.callback(None)

        self._idle.append(fire)
        timer = clock.callLater(timeout, fire)

        def stop_timer(result: object) -> object:
            if timer.active():
                timer.cancel()
            return result

        done.addBoth(stop_timer)
        return done

    def _engine_closing(self) -> bool:
        """Whether the engine has begun closing the spider. Scrapy sends no signal for that (only
        ``spider_closed``, after the requests in progress end): see ``_scrapy_private``. False
        when this Scrapy does not show it (waiting requests then end with their wait)."""
        try:
            engine = self.crawler.engine
        except RuntimeError:
            return False
        return bool(private.engine_closing(engine))

    def _watch_closing(self) -> None:
        """While requests wait for a proxy, look every ``_CLOSING_CHECK`` s whether the spider
        is closing: Scrapy would wait for them, and they for a refill, before closing."""
        watch = self._closing_watch
        if watch is not None and watch.running:
            return
        from twisted.internet.task import LoopingCall

        def check() -> None:
            if self._waiting == 0 or self._closing:
                if self._closing_watch is not None and self._closing_watch.running:
                    self._closing_watch.stop()
            elif self._engine_closing():
                logger.debug(
                    "proxypool: the spider is closing: dropping %d requests waiting for a proxy",
                    self._waiting,
                )
                self._shut_down()

        self._closing_watch = LoopingCall(check)
        self._closing_watch.start(_CLOSING_CHECK, now=False)

    def _close_spider(self, reason: str) -> None:
        try:
            engine = self.crawler.engine
        except RuntimeError:  # Scrapy >= 2.14 before the crawl starts
            return
        if engine is None or self._closing:
            return
        self._closing = True
        d = deferred_from_coro(engine.close_spider_async(reason=reason))
        if isinstance(d, defer.Deferred):
            d.addErrback(lambda f: logger.debug("proxypool: closing the spider: %s", f.value))

    def _fatal(self, exc: AccountError) -> None:
        """The provider refused the account mid-crawl: stop, close, never fall back to direct."""
        if self._failure is not None:
            return
        message = f"the provider refused the account: {exc}"
        self._failure = (REASON_ACCOUNT, message)
        logger.error("proxypool: closing the spider: %s", message)
        self.stats.set_value("proxypool/error", message)
        self._close_spider(REASON_ACCOUNT)

    # -- requests ---------------------------------------------------------------------------------

    async def process_request(self, request: Request, spider: Spider | None = None) -> None:
        meta = request.meta
        disable = meta.get("proxypool_disable")
        if disable is not None and disable is not False and self._disabled(request, disable):
            return None
        if not request.url.startswith(_POOL_PREFIXES) and self._not_for_the_pool(request):
            return None
        if PROXY_META_KEY not in meta:  # (a request derived from a pooled one is the pool's)
            own = meta.get("proxy")
            if own is not None and own != "" and self._own_proxy(request, own):
                return None  # the user's own proxy: left alone
        if self._open_waiters is not None:  # spider_opened still running (another handler sent it)
            waiter: defer.Deferred[None] = defer.Deferred()
            self._open_waiters.append(waiter)
            await maybe_deferred_to_future(waiter)
        pool = self.pool
        if self._failure is not None or pool is None:
            reason = self._failure[1] if self._failure else "the pool is closed"
            raise IgnoreRequest(f"proxypool cannot serve requests: {reason}")
        value = meta.get("proxypool_geo")
        geo = self._spider_geo if value is None else self._geo_for(request, value)
        session = meta.get("proxypool_session")
        if session is not None:
            try:
                hash(session)
            except TypeError:
                kind = type(session).__name__
                raise self._bad_meta(
                    request,
                    "proxypool_session",
                    f"must be hashable (a string, a number or a tuple of them), not a {kind}",
                    kind,
                ) from None
        # The target's host matters only once some proxy is banned for a domain (the hot path
        # of a crawl without bans skips parsing it).
        domain = urlparse_cached(request).hostname if pool.has_bans else None
        try:
            proxy = pool.try_get(geo, session=session, domain=domain)
        except AccountError as exc:
            self._fatal(exc)
            raise IgnoreRequest(f"proxypool stopped: {exc}") from None
        except BanStorm as exc:
            raise self._ban_storm(exc) from None
        except ProxyPoolError as exc:  # closed pool, malformed domain
            raise IgnoreRequest(f"proxypool: {exc}") from None
        if proxy is None:
            if domain is None:
                domain = urlparse_cached(request).hostname
            proxy = await self._wait_for_proxy(geo, session, domain)
            self._unreported += 1
            self._report_requests()
        else:
            self._unreported += 1
            now = self._clock()
            key = None if geo is self._spider_geo else geo
            if now >= self._refill_checked.get(key, 0.0):
                self._refill_checked[key] = now + _REFILL_CHECK
                self._report_requests()
                if geo not in self._refilling and pool.needs_refill(geo):
                    self._refill_in_background(geo)
        budget_url = meta.get(_BUDGET_URL_KEY)
        if budget_url is not None and budget_url != request.url:
            for name in _BUDGET_KEYS:  # another request's spent budget, copied with its meta
                meta.pop(name, None)
        attempt = meta.get("retry_times", 0)
        if meta.get(_ATTEMPT_KEY, 0) != attempt:  # back through Scrapy's RetryMiddleware
            meta[_ATTEMPT_KEY] = attempt
            if not meta.pop(_GAVE_UP_KEY, False):
                # Retried for the target's sake (a 5xx, say): the proxies did their job, so
                # this attempt gets the whole proxy budget again.
                meta.pop(_RETRIES_KEY, None)
                meta.pop(_TRIED_KEY, None)
        meta[PROXY_META_KEY] = proxy
        if not proxy.username or not self._own_auth:
            # (Credentials stay in the URL only while no HttpProxyMiddleware could turn them into
            # a header of its own making: see _scrapy_private, 1.)
            meta["proxy"] = (
                proxy.url if self._url_auth_inert else f"{proxy.scheme}://{proxy.address}"
            )
            if _AUTH_KEY in meta:  # an earlier attempt's proxy had credentials: not for this one
                _forget_auth(request)
        else:
            meta["proxy"] = f"{proxy.scheme}://{proxy.address}"
            request.headers[_PROXY_AUTHORIZATION] = _basic_auth(proxy, self.config.auth_encoding)
            meta[_AUTH_KEY] = True
            meta.pop(private.AUTH_PROXY_KEY, None)  # (it would drop the header of a new proxy)
        if self.config.slot_per_proxy:
            meta["download_slot"] = _slot_for(proxy)
        return None

    def _disabled(self, request: Request, value: object) -> bool:
        """``meta["proxypool_disable"]`` (``value``, neither None nor False): True or 1 sends the
        request without the pool, 0 does not. Anything else is refused: a string such as
        ``"false"`` is truthy, and reading it as a flag would send the request without a proxy."""
        if value is True or (type(value) is int and value == 1):
            return True
        if type(value) is int and value == 0:
            return False
        shown = repr(value) if isinstance(value, str) and len(value) <= 20 else type(value).__name__
        raise self._bad_meta(
            request,
            "proxypool_disable",
            f"must be True or False, not {shown}",
            type(value).__name__,
        )

    def _not_for_the_pool(self, request: Request) -> bool:
        """A request whose URL is not http(s)://: True for a scheme that never touches the network
        (``data:``), passed untouched; False for http/https after all (the caller serves it).
        Any other scheme is refused: Scrapy's handlers for them (ftp, file) ignore meta["proxy"]
        and would connect from this machine's own IP, and s3 URLs would reach whatever host the
        site names through a pool proxy."""
        scheme = urlparse_cached(request).scheme
        if scheme in _PROXY_SCHEMES:
            return False
        if scheme in _LOCAL_SCHEMES:
            return True
        label = scheme if scheme in self._scheme_stats else "other"
        if label == "other" and len(self._scheme_stats) < _MAX_SCHEME_STATS:
            self._scheme_stats.add(scheme)
            label = scheme
        self.stats.inc_value("proxypool/refused_scheme")
        self.stats.inc_value(f"proxypool/refused_scheme/{label}")
        message = (
            f"refused a {scheme}:// URL: the pool carries http and https only, and this request "
            "would leave without a pool proxy (meta['proxypool_disable'] = True sends it "
            "without the pool, on purpose)"
        )
        if self._first("scheme", label):
            logger.warning("proxypool: %s: %s; further ones are logged at DEBUG", message, request)
        else:
            logger.debug("proxypool: %s: %s", message, request)
        raise IgnoreRequest(f"proxypool: {message}")

    def _own_proxy(self, request: Request, value: object) -> bool:
        """Whether ``meta["proxy"]`` (``value``, not None or empty) is the user's own proxy: a
        proxy URL Scrapy can use. Anything else is refused, the value never shown."""
        verdict = self._own_proxies.get(value) if isinstance(value, str) else None
        if verdict is None:
            verdict = _proxy_url_problem(value) or True
            if isinstance(value, str) and len(self._own_proxies) < _MAX_GEO_CACHE:
                self._own_proxies[value] = verdict
        if verdict is True:
            return True
        raise self._bad_meta(request, "proxy", f"{_PROXY_URL_RULE}; {verdict}", str(verdict))

    def _bad_meta(self, request: Request, key: str, problem: str, kind: str) -> IgnoreRequest:
        """Count and log a bad ``meta[key]`` (ERROR once per kind of bad value, then DEBUG) and
        return the IgnoreRequest that drops the request: nothing is sent."""
        self.stats.inc_value("proxypool/bad_meta")
        self.stats.inc_value(f"proxypool/bad_meta/{key}")
        message = f"meta['{key}'] {problem}"
        if self._first(key, kind):
            logger.error("proxypool: dropped %s: %s", request, message)
        else:
            logger.debug("proxypool: dropped %s: %s", request, message)
        return IgnoreRequest(f"proxypool: {message}")

    def _first(self, key: str, kind: str) -> bool:
        """True the first time (``key``, ``kind``) is met (for at most ``_MAX_NOTED`` kinds)."""
        noted = (key, kind)
        if noted in self._noted or len(self._noted) >= _MAX_NOTED:
            return False
        self._noted.add(noted)
        return True

    def _report_requests(self) -> None:
        """Add the requests given a proxy since the last call to the ``proxypool/requests`` stat.

        Scrapy 2.19's ``inc_value`` costs about 2 us (a third of this middleware's time per
        request), so ``process_request`` counts in an int and calls this at most every
        ``_REFILL_CHECK`` s per geography, after every wait, and from ``_sync_stats`` (refills,
        spider close). While requests keep coming the stat lags by at most ``_REFILL_CHECK`` s;
        it is exact once the spider has closed."""
        count, self._unreported = self._unreported, 0
        if count:
            self.stats.inc_value("proxypool/requests", count)

    def _geo_for(self, request: Request, value: Any) -> Geo:
        """The geography ``meta["proxypool_geo"]`` (``value``, not None) asks for."""
        try:
            key: Hashable = value if isinstance(value, str | Geo) else repr(value)
            geo = self._geo_cache.get(key)
            if geo is None:
                geo = _coerce(value, "meta['proxypool_geo']")
                if len(self._geo_cache) < _MAX_GEO_CACHE:
                    self._geo_cache[key] = geo
        except ConfigError as exc:
            self.stats.inc_value("proxypool/bad_geo")
            if self._first("proxypool_geo", str(exc)):
                logger.error("proxypool: dropped %s: %s", request, exc)
            else:
                logger.debug("proxypool: dropped %s: %s", request, exc)
            raise IgnoreRequest(f"proxypool: {exc}") from None
        bad = self._bad_geos.get(geo)
        if bad is not None:
            self.stats.inc_value("proxypool/bad_geo")
            raise IgnoreRequest(f"proxypool: {bad}")
        return geo

    async def _wait_for_proxy(
        self, geo: Geo, session: Hashable | None, domain: str | None
    ) -> Proxy:
        """No usable proxy right now: wait in a worker thread for the refill in flight (or start
        one), for a cooling proxy to come back, or for ``PROXYPOOL_WAIT_TIMEOUT`` to pass."""
        assert self.pool is not None
        self.stats.inc_value("proxypool/waits")
        self._waiting += 1
        self._watch_closing()
        try:
            return await maybe_deferred_to_future(
                self._call_in_thread(self._get_blocking, geo, session, domain)
            )
        except AccountError as exc:
            self._fatal(exc)
            raise IgnoreRequest(f"proxypool stopped: {exc}") from None
        except InvalidGeo as exc:
            message = (
                f"meta['proxypool_geo'] = {str(geo)!r} is not a geography the provider knows: {exc}"
            )
            if geo not in self._bad_geos:
                logger.error("proxypool: %s; requests for it are dropped", message)
                if len(self._bad_geos) < _MAX_GEO_CACHE:
                    self._bad_geos[geo] = message
            self.stats.inc_value("proxypool/bad_geo")
            raise IgnoreRequest(f"proxypool: {message}") from None
        except ConfigError as exc:  # a host name the pool refuses (over 253 characters)
            raise IgnoreRequest(f"proxypool: {exc}") from None
        except BanStorm as exc:
            raise self._ban_storm(exc) from None
        except ProxyPoolError as exc:
            self.stats.inc_value("proxypool/exhausted")
            if not self._closing:
                logger.warning("proxypool: no proxy for a request to %s (%s): %s", domain, geo, exc)
            raise IgnoreRequest(f"proxypool: no proxy: {exc}") from None
        finally:
            self._waiting -= 1
            self._sync_stats()

    def _ban_storm(self, exc: BanStorm) -> IgnoreRequest:
        """A request for a site in a ban storm: counted, and failed (the pool logged the storm
        once); with ``PROXYPOOL_BAN_STORM_CLOSE`` the spider is closed."""
        self.stats.inc_value("proxypool/ban_storm")
        if self.config.ban_storm_close and self._failure is None:
            self._failure = (REASON_BAN_STORM, str(exc))
            logger.error("proxypool: closing the spider: %s", exc)
            self.stats.set_value("proxypool/error", str(exc))
            self._close_spider(REASON_BAN_STORM)
        return IgnoreRequest(f"proxypool: {exc}")

    def _get_blocking(self, geo: Geo, session: Hashable | None, domain: str | None) -> Proxy:
        assert self.pool is not None
        return self.pool.get(geo, session=session, domain=domain, timeout=self.config.wait_timeout)

    def _refill_in_background(self, geo: Geo) -> None:
        """Top ``geo`` up before it runs dry; requests keep being served meanwhile."""
        assert self.pool is not None
        self._refilling.add(geo)
        d = self._call_in_thread(self.pool.refill, geo, wait=False)

        def done(result: object) -> None:
            self._refilling.discard(geo)
            if isinstance(result, Failure) and isinstance(result.value, AccountError):
                self._fatal(result.value)
            # Other provider errors were logged by the pool, which backs off before retrying.
            self._sync_stats()

        d.addBoth(done)

    # -- responses and errors ---------------------------------------------------------------------

    def process_response(
        self, request: Request, response: Response, spider: Spider | None = None
    ) -> Request | Response:
        proxy = request.meta.get(PROXY_META_KEY)
        pool = self.pool
        if proxy is None or pool is None:
            return response
        status = response.status
        if status == 407:  # the proxy itself refused to carry the request: a proxy failure
            parsed = urlparse_cached(request)
            self._report(proxy, parsed.hostname)
            self.stats.inc_value("proxypool/proxy_errors")
            self.stats.inc_value("proxypool/proxy_errors/407")
            if parsed.scheme == "http" and self._gateway_refused():
                raise IgnoreRequest("proxypool: the gateway refused the proxy account (407)")
            # Over https a proxy refuses the CONNECT (a TunnelError, never a response), so a 407
            # response came through the tunnel from the site, which got the request. Over http
            # a forward proxy answers 407 before forwarding anything.
            if parsed.scheme == "https" and request.method not in IDEMPOTENT_METHODS:
                return self._not_replayed(request, response, "the site answered 407")
            retry = self._retry(request, proxy, f"HTTP 407 from {proxy}")
            return retry if retry is not None else response
        if status in self.config.ban_statuses:
            kind = str(status)
        elif self._ban_policy is not None and self._ban_policy(request, response):
            kind = "policy"
        else:
            # The site's host matters once some proxy is banned (it ends a site's ban streak).
            pool.report_success(
                proxy, domain=urlparse_cached(request).hostname if pool.has_bans else None
            )
            return response
        domain = urlparse_cached(request).hostname
        self._report(proxy, domain, banned=True)
        self.stats.inc_value("proxypool/bans")
        self.stats.inc_value(f"proxypool/bans/{kind}")
        logger.debug("proxypool: %s banned by %s (%s)", proxy, domain, kind)
        if request.method not in IDEMPOTENT_METHODS:  # the site answered: it got the request
            return self._not_replayed(request, response, f"the site answered with a ban ({kind})")
        retry = self._retry(request, proxy, f"ban ({kind}) via {proxy}")
        return retry if retry is not None else response

    def process_exception(
        self, request: Request, exception: Exception, spider: Spider | None = None
    ) -> Request | None:
        proxy = request.meta.get(PROXY_META_KEY)
        pool = self.pool
        if proxy is None or pool is None:
            return None
        status = None
        if isinstance(exception, self._failures):
            name = type(exception).__name__
        elif private.is_tunnel_error(exception):  # the proxy refused the CONNECT
            name = "TunnelError"
            status = private.tunnel_status(exception)
        elif type(exception) is ValueError and not _connectable_host(proxy.host):
            # The downloader refused the proxy's host as malformed before connecting (with a
            # proxy set, the proxy is the only host it connects to): this proxy never works.
            name = "invalid_hostname"
        else:
            return None
        if status in _TARGET_UNREACHABLE:
            return self._target_unreachable(request, proxy, status)
        if status == 407 and self._gateway_refused():
            self.stats.inc_value("proxypool/proxy_errors")
            self.stats.inc_value("proxypool/proxy_errors/407")
            return None  # the errback gets the refusal; the spider is closing
        self._report(proxy, urlparse_cached(request).hostname)
        self.stats.inc_value("proxypool/proxy_errors")
        self.stats.inc_value(f"proxypool/proxy_errors/{name}")
        logger.debug("proxypool: %s failed for %s: %s", proxy, request, name)
        if request.method not in IDEMPOTENT_METHODS and not self._never_left(exception, name):
            self._not_replayed(request, None, f"{name}: it may have reached the site")
            return None
        return self._retry(request, proxy, f"{name} via {proxy}")

    def _gateway_refused(self) -> bool:
        """A 407 from the provider's rotating gateway refuses the account itself (a wrong
        password, a disabled account, its traffic limit reached): every session would get the
        same, so the crawl stops here, as when the API refuses the account. False for other
        sources, whose proxies each have their own credentials."""
        source = self.source.source if self.source is not None else None
        if not isinstance(source, GatewaySource):
            return False
        self._fatal(
            AccountError(
                f"the gateway {source.host}:{source.port} refused proxy account "
                f"{source.username!r} (HTTP 407: a wrong password, a disabled account, or its "
                "traffic limit reached; see `proxypool accounts list`)"
            )
        )
        return True

    def _target_unreachable(
        self, request: Request, proxy: Proxy, status: int | None
    ) -> Request | None:
        """The proxy refused the CONNECT because it could not reach the target host (502, 503 or
        504): it did its job. Blaming it would let a site that links to unreachable hosts evict
        healthy proxies and make the pool buy new ones, so the failure is remembered for that
        host only, like a ban (the proxy keeps serving every other site, and a host no proxy
        can reach costs at most the ban-storm rule's batches), and the request tries another
        proxy (the request never left: a POST too). Counted in ``proxypool/target_unreachable``.
        A plain-http 502 *response* is left alone: it may be the site's own answer."""
        host = urlparse_cached(request).hostname
        self._report(proxy, host, banned=True)
        self.stats.inc_value("proxypool/target_unreachable")
        logger.debug("proxypool: %s could not reach %s (CONNECT %s)", proxy, host, status)
        return self._retry(request, proxy, f"{host} unreachable via {proxy} (CONNECT {status})")

    def _never_left(self, exception: Exception, name: str) -> bool:
        """Whether ``exception`` proves the request never left for the site (see _NEVER_SENT)."""
        if name in ("invalid_hostname", "TunnelError"):  # refused before the site got it
            return True
        return isinstance(exception, self._never_sent) and not isinstance(
            exception, self._maybe_sent
        )

    def _not_replayed(self, request: Request, response: T, why: str) -> T:
        """A non-idempotent request the site got (or may have got) is not sent again through
        another proxy: counted, logged at DEBUG; ``response`` (or the error) goes on."""
        self.stats.inc_value("proxypool/not_replayed")
        logger.debug(
            "proxypool: not sending %s again through another proxy (%s is not idempotent; %s)",
            request,
            request.method,
            why,
        )
        return response

    def _report(self, proxy: Proxy, domain: str | None, *, banned: bool = False) -> None:
        """Report a failure (or a ban) of ``proxy`` for the target host ``domain``. A host the
        pool refuses (over 253 characters: only reachable while no ban made the host matter in
        process_request) is reported without it, a ban then as a plain failure."""
        assert self.pool is not None
        try:
            self.pool.report_failure(proxy, domain=domain, banned=banned)
        except ConfigError:
            self.pool.report_failure(proxy)

    def _retry(self, request: Request, proxy: Proxy, reason: str) -> Request | None:
        """The same request (callback, errback, meta, priority) for another proxy, or None once
        ``PROXYPOOL_MAX_PROXY_RETRIES`` is spent."""
        retries = request.meta.get(_RETRIES_KEY, 0)
        tried = (*request.meta.get(_TRIED_KEY, ()), str(proxy))
        if retries >= self.config.max_proxy_retries:
            # Read by process_request if Scrapy's RetryMiddleware sends the request again.
            request.meta[_GAVE_UP_KEY] = True
            request.meta[_BUDGET_URL_KEY] = request.url
            self.stats.inc_value("proxypool/retry_exhausted")
            logger.warning(
                "proxypool: gave up on %s after %d proxies (%s); last: %s",
                request,
                len(tried),
                ", ".join(tried),
                reason,
            )
            return None
        self.stats.inc_value("proxypool/retries")
        logger.debug("proxypool: retrying %s on another proxy (%s)", request, reason)
        retry = request.replace(dont_filter=True)
        meta = retry.meta
        meta[_RETRIES_KEY] = retries + 1
        meta[_TRIED_KEY] = tried
        meta[_BUDGET_URL_KEY] = retry.url
        # Leave no trace of the failed proxy: the next process_request picks a fresh one.
        meta.pop("proxy", None)
        meta.pop(PROXY_META_KEY, None)
        _forget_auth(retry)
        if self.config.slot_per_proxy:
            meta.pop("download_slot", None)
        return retry

    # -- helpers ----------------------------------------------------------------------------------

    def _sync_stats(self) -> None:
        """Copy the pool's and the source's counters into Scrapy's stats (reactor thread)."""
        self._report_requests()
        if self.pool is None or self.source is None:
            return
        pool_stats = self.pool.stats()
        for name in ("refills", "api_errors", "evictions", "expired"):
            self.stats.set_value(f"proxypool/{name}", pool_stats[name])
        counters = self.source.counters()
        self.stats.set_value("proxypool/extractions", counters.extractions)
        if self.source.paid:
            self.stats.set_value("proxypool/extracted", counters.extracted)
        else:  # a gateway's sessions, static IPs, a list: nothing bought per IP
            self.stats.set_value("proxypool/minted", counters.extracted)
        self.stats.set_value("proxypool/rejected", counters.rejected)
        if self.config.redis_url is not None:  # a pool shared through Redis
            self.stats.set_value("proxypool/received", pool_stats["received"])
            self.stats.set_value("proxypool/store_errors", pool_stats["store_errors"])
        live = pool_stats["live"]
        self.stats.set_value("proxypool/live", sum(live.values()))
        for label, count in live.items():
            self.stats.set_value(f"proxypool/live/{label}", count)

    def _call_in_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> defer.Deferred[T]:
        """Run ``fn`` in the worker threads; the Deferred fires on the reactor thread."""
        from twisted.internet import reactor

        d: defer.Deferred[T] = defer.Deferred()
        executor = self._executor
        if executor is None:
            d.errback(PoolExhausted("proxypool is not running"))
            return d

        def report(future: Future[T]) -> None:  # reactor thread
            self._jobs -= 1
            if self._jobs == 0 and self._idle:
                idle, self._idle = self._idle, []
                for callback in idle:
                    callback()
            if future.cancelled():
                d.errback(PoolExhausted("the spider is closing"))
                return
            exc = future.exception()
            if exc is not None:
                d.errback(exc)
            else:
                d.callback(future.result())

        def finished(future: Future[T]) -> None:  # the worker thread (or the one cancelling)
            reactor.callFromThread(report, future)

        try:
            future = executor.submit(fn, *args, **kwargs)
        except RuntimeError:  # shut down: the spider is closing
            d.errback(PoolExhausted("the spider is closing"))
            return d
        self._jobs += 1
        future.add_done_callback(finished)
        return d


def _connectable_host(host: str) -> bool:
    """Whether Twisted can connect to ``host``: an IP address, or a name whose IDNA form has only
    letters, digits, dots, hyphens and underscores (what Scrapy's HTTP11 handler accepts)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return True
    try:
        encoded = host.encode("idna")
    except UnicodeError:
        try:
            encoded = host.encode("ascii")
        except UnicodeError:
            return False
    return _HOST_NAME.fullmatch(encoded) is not None


def _label(geo: Geo) -> str:
    return "anywhere" if geo.is_anywhere else str(geo)


def _coerce(value: Any, where: str) -> Geo:
    try:
        return Geo.coerce(value)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}", field=where) from None
