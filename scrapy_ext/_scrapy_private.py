"""Every part of Scrapy or Twisted the middleware uses that is not documented API, in one place.

Each entry says what it reads, why nothing public does the job, its feature check, and what the
middleware does when the check fails: it fails closed (no request leaves from this machine's own
IP, no credential goes to anyone but its proxy), at worst slower or with fewer details.

Checked on Scrapy 2.19.0 with Twisted 26.10.0, the range the package claims (``Scrapy>=2.19``).
``tests/test_scrapy_private.py`` runs every feature check against the installed Scrapy and fails
when one no longer holds, so an upgrade that breaks an assumption shows up there first.

1. ``HttpProxyMiddleware``'s ``_auth_proxy`` meta key (``AUTH_PROXY_KEY``). Scrapy notes there
   which proxy URL a request's ``Proxy-Authorization`` belongs to, and drops the header when the
   request's proxy changes. The middleware sets the header itself (Scrapy cannot encode
   credentials outside ``HTTPPROXY_AUTH_ENCODING``, fails on a username without a password, and
   keeps the header when a retry moves to another pool entry at the same address), so it must
   clear that note when it moves a request to a new proxy. Letting Scrapy build the header from
   ``user:password@`` in ``meta["proxy"]`` was considered: it needs the same key to drop the
   header for a credential-less entry at the same address (a gateway), and loses the encodings
   above, so it needs no fewer private parts. Check: ``auth_note_works()`` runs Scrapy's own
   ``HttpProxyMiddleware.process_request`` on probe requests and confirms the three behaviours
   relied on. Fallback: the middleware sets no ``Proxy-Authorization`` (as when
   ``HttpProxyMiddleware`` is disabled) and warns; proxies that need credentials refuse.
2. The engine slot's ``closing`` Deferred (``engine._slot.closing``): Scrapy sends no signal when
   a spider starts closing (``spider_closed`` comes after the requests in progress end, and a
   request waiting for a proxy is one). Check: ``engine_closing()`` returns None when the
   engine has no such slot attribute. Fallback: requests waiting for a proxy are not cut short
   at close; they end when their wait does (``PROXYPOOL_WAIT_TIMEOUT``), never direct.
3. ``TunnelError`` (``scrapy.core.downloader.handlers.http11``, not in Scrapy's documented
   exceptions) and the text it carries: a proxy refusing CONNECT. Scrapy >= 2.14 wraps the
   Twisted errors of a download into documented exceptions (``scrapy.exceptions.Download*``),
   but not this one. It is recognised by module and name (``is_tunnel_error``) without importing
   the handler early. Check: the test imports it from ``TUNNEL_ERROR``'s module under its name,
   and ``tunnel_status()`` returns None for text it does not recognise. Fallback: a refused
   tunnel is not recognised as the proxy's failure (the request fails to the errback, it is not
   retried through another proxy); a CONNECT refused 502/503/504 counts against the proxy.
4. ``scrapy.utils.conf.build_component_list``: how Scrapy orders and filters
   ``DOWNLOADER_MIDDLEWARES`` (over its base), to tell whether ``HttpProxyMiddleware`` is
   enabled before the downloader is built. Public name, not in the documentation. Check: the
   import. Fallback: ``httpproxy_enabled()`` answers False (no ``Proxy-Authorization`` is set, so
   none can reach a site), and the middleware warns.

What the middleware does *not* rely on any more: Twisted's ``_newclient`` (Scrapy >= 2.14 wraps
``ResponseFailed`` and ``ResponseNeverReceived`` into ``DownloadFailedError``; the public
``twisted.web.client.ResponseFailed`` is still listed for a handler that does not), the text
"invalid hostname" of Twisted's ``ValueError`` (the middleware judges the proxy's host itself),
and version sniffing (``close_spider_async`` and ``CloseSpider`` from ``spider_opened`` exist on
every Scrapy the package accepts).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from scrapy.utils.misc import load_object

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "AUTH_PROXY_KEY",
    "TUNNEL_ERROR",
    "auth_note_works",
    "engine_closing",
    "httpproxy_enabled",
    "is_tunnel_error",
    "tunnel_status",
]

# -- 1. HttpProxyMiddleware's note of which proxy the Proxy-Authorization belongs to -------------

AUTH_PROXY_KEY = "_auth_proxy"
_AUTHORIZATION = b"Proxy-Authorization"
_auth_checked: bool | None = None


def auth_note_works() -> bool:
    """Whether Scrapy's ``HttpProxyMiddleware`` treats a ``Proxy-Authorization`` set by another
    middleware as the middleware relies on; checked once, on Scrapy's own code:

    - it keeps the header for the proxy in ``meta["proxy"]`` and notes that proxy under
      ``AUTH_PROXY_KEY``;
    - with the note cleared, it keeps a new header for a new proxy;
    - it drops the header of a request whose proxy is then removed (a request derived from a
      pooled one and sent without a proxy), so no credential goes to the site.
    """
    global _auth_checked
    if _auth_checked is None:
        try:
            _auth_checked = _probe_auth_note()
        except Exception:  # any surprise means: do not rely on it
            _auth_checked = False
    return _auth_checked


def _probe_auth_note() -> bool:
    from scrapy import Request
    from scrapy.downloadermiddlewares.httpproxy import HttpProxyMiddleware

    middleware = HttpProxyMiddleware("latin-1")
    middleware.proxies = {}  # (the environment's proxies play no part in the probe)
    first, second = "http://127.0.0.1:1", "http://127.0.0.1:2"
    request = Request("http://probe.invalid/", meta={"proxy": first})
    request.headers[_AUTHORIZATION] = b"Basic Zmlyc3Q="
    middleware.process_request(request)
    if request.headers.get(_AUTHORIZATION) != b"Basic Zmlyc3Q=":
        return False
    if request.meta.get(AUTH_PROXY_KEY) != first:
        return False
    request.meta["proxy"] = second
    request.headers[_AUTHORIZATION] = b"Basic c2Vjb25k"
    request.meta.pop(AUTH_PROXY_KEY, None)
    middleware.process_request(request)
    if request.headers.get(_AUTHORIZATION) != b"Basic c2Vjb25k":
        return False
    request.meta["proxy"] = None
    middleware.process_request(request)
    return _AUTHORIZATION not in request.headers


# -- 2. whether the engine has begun closing the spider -----------------------------------------


def engine_closing(engine: Any) -> bool | None:
    """True once ``engine`` has begun closing the spider, False before; None when this Scrapy's
    engine does not show it (the feature check failed)."""
    slot = getattr(engine, "_slot", None)
    if slot is None:
        return None if not hasattr(engine, "_slot") else False
    if not hasattr(slot, "closing"):
        return None
    return slot.closing is not None


# -- 3. a proxy refusing CONNECT ------------------------------------------------------------------


# Recognised by name, not imported: importing Scrapy's HTTP/1.1 handler while the crawler is
# being built (deep in the stack) makes Scrapy's deprecation helpers inspect that whole stack, and
# cost the crawl ~0.1 s of start-up (benchmarks/README.md); Scrapy imports it at the first download.
TUNNEL_ERROR: tuple[str, str] | None = ("scrapy.core.downloader.handlers.http11", "TunnelError")


def is_tunnel_error(exception: BaseException) -> bool:
    """Whether ``exception`` is Scrapy's ``TunnelError`` (or a subclass of it)."""
    return TUNNEL_ERROR is not None and any(
        (kind.__module__, kind.__qualname__) == TUNNEL_ERROR for kind in type(exception).__mro__
    )


# "Could not open CONNECT tunnel with proxy host:port [{'status': 502, 'reason': b'...'}]"
# (pinned by a real crawl through a refusing proxy in tests/test_scrapy_leaks.py).
_TUNNEL_STATUS = re.compile(r"^Could not open CONNECT tunnel with proxy \S+ \[\{'status': (\d{3}),")


def tunnel_status(exception: BaseException) -> int | None:
    """The status a proxy refused a CONNECT with, read from the text of Scrapy's ``TunnelError``
    (Scrapy gives nothing else); None when the text does not say."""
    match = _TUNNEL_STATUS.match(str(exception))
    return int(match.group(1)) if match else None


# -- 4. whether HttpProxyMiddleware is among the downloader middlewares ----------------------------

_build_component_list: Callable[..., Any] | None
try:
    from scrapy.utils.conf import build_component_list as _build_component_list
except ImportError:  # pragma: no cover - exercised by the fallback test with the name removed
    _build_component_list = None


def httpproxy_enabled(settings: Any) -> bool:
    """Whether Scrapy's ``HttpProxyMiddleware`` (or a subclass) is among the downloader
    middlewares and not switched off by ``HTTPPROXY_ENABLED``; False when this cannot be told."""
    from scrapy.downloadermiddlewares.httpproxy import HttpProxyMiddleware

    if not settings.getbool("HTTPPROXY_ENABLED", True) or _build_component_list is None:
        return False
    middlewares = settings.get_component_priority_dict_with_base("DOWNLOADER_MIDDLEWARES")
    for component in _build_component_list(middlewares):
        try:
            found = load_object(component) if isinstance(component, str) else component
        except (ImportError, AttributeError, NameError, ValueError):
            continue  # Scrapy itself reports what it cannot load
        if isinstance(found, type) and issubclass(found, HttpProxyMiddleware):
            return True
    return False
