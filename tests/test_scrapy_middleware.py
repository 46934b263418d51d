"""Direct-call unit tests of ``ProxyPoolMiddleware`` (in the manner of Scrapy's own
tests/test_downloadermiddleware_httpproxy.py): a real crawler from ``get_crawler``, a real
``ProxyPool`` fed by an in-memory ``ProxySource`` (no HTTP), real Scrapy requests and responses.

Nothing here starts a reactor: a request for which the pool has a live proxy is served without
the coroutine ever suspending, which ``complete()`` asserts. The waiting paths (refill in a worker
thread) are covered by the real crawls in test_scrapy_crawl.py.
"""

from __future__ import annotations

import base64
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _helpers import ListSource
from _scrapy_crawls import complete
from scrapy import Request, Spider
from scrapy.downloadermiddlewares.httpproxy import HttpProxyMiddleware
from scrapy.exceptions import CloseSpider, DownloadConnectionRefusedError, IgnoreRequest
from scrapy.exceptions import NotConfigured as ScrapyNotConfigured
from scrapy.http import HtmlResponse, Response
from scrapy.utils.test import get_crawler

from proxypool.errors import InvalidAppKey
from proxypool.geo import Geo
from proxypool.models import Proxy
from proxypool.sources import CheckedSource, reachable
from scrapy_ext import ProxyPoolMiddleware
from scrapy_ext.middleware import PROXY_META_KEY

KEY = "KEYs3cr3tXYZ1234567890"
# Scrapy's default download handler for http and https. get_crawler() without a running reactor
# configures Scrapy's reactorless mode, whose aiohttp handler the middleware refuses.
HTTP11 = "scrapy.core.downloader.handlers.http11.HTTP11DownloadHandler"
HANDLERS = {"DOWNLOAD_HANDLERS": {"http": HTTP11, "https": HTTP11}}
SECRET = "pw5ecretZZ9"
SITE = "http://shop.example/item/1"


class CaptchaPolicy:
    def is_ban(self, request: Request, response: Response) -> bool:
        return b"captcha" in response.body


def proxies(n: int, **kwargs: Any) -> list[Proxy]:
    return [Proxy("10.0.0.1", 8000 + i, **kwargs) for i in range(n)]


def make(
    source: ListSource | None = None,
    *,
    clock: Callable[[], float] | None = None,
    **settings: Any,
) -> ProxyPoolMiddleware:
    crawler = get_crawler(
        Spider,
        {
            **HANDLERS,
            "PROXYPOOL_SOURCE": source if source is not None else ListSource(proxies(4)),
            "PROXYPOOL_CHECK_PROXIES": False,
            "PROXYPOOL_MIN_SIZE": 0,
            **settings,
        },
    )
    if clock is None:
        middleware = ProxyPoolMiddleware.from_crawler(crawler)
    else:  # the public keyword; direct calls to the hooks need no signals
        middleware = ProxyPoolMiddleware(crawler, clock=clock)
    assert middleware.pool is not None
    middleware.pool.refill(middleware.config.geo)  # in-memory source: no I/O
    return middleware


def source_of(middleware: ProxyPoolMiddleware) -> ListSource:
    """The source the middleware really uses (Scrapy deep-copies objects held in settings)."""
    assert middleware.source is not None
    source = middleware.source.source
    assert isinstance(source, ListSource)
    return source


def stats(middleware: ProxyPoolMiddleware) -> dict[str, Any]:
    return {k: v for k, v in middleware.stats.get_stats().items() if k.startswith("proxypool/")}


def send(middleware: ProxyPoolMiddleware, request: Request) -> Request:
    assert complete(middleware.process_request(request)) is None
    return request


def response(request: Request, status: int = 200, body: bytes = b"<html>ok</html>") -> Response:
    return HtmlResponse(request.url, status=status, body=body, request=request)


# -- serving ---------------------------------------------------------------------------------


def test_request_gets_a_pool_proxy_without_waiting() -> None:
    middleware = make()
    request = send(middleware, Request(SITE))
    proxy = request.meta[PROXY_META_KEY]
    assert isinstance(proxy, Proxy)
    assert request.meta["proxy"] == proxy.url
    assert stats(middleware)["proxypool/requests"] == 1


def test_the_requests_stat_is_added_in_batches_and_exact_at_close() -> None:
    now = [100.0]
    middleware = make(clock=lambda: now[0])
    send(middleware, Request(SITE))
    assert stats(middleware)["proxypool/requests"] == 1  # the first request reports at once
    for n in range(5):  # within the same 50 ms: counted, reported later
        send(middleware, Request(f"{SITE}?n={n}"))
    assert stats(middleware)["proxypool/requests"] == 1
    now[0] += 0.06
    send(middleware, Request(f"{SITE}?n=5"))
    assert stats(middleware)["proxypool/requests"] == 7
    send(middleware, Request(f"{SITE}?n=6"))
    complete(middleware.spider_closed())
    assert stats(middleware)["proxypool/requests"] == 8


def test_requests_rotate_over_the_pool() -> None:
    middleware = make()
    used = [send(middleware, Request(f"{SITE}?n={i}")).meta[PROXY_META_KEY] for i in range(8)]
    assert set(used) == set(proxies(4))
    assert used[:4] != used[1:5]  # not the same proxy twice in a row


def test_disabled_and_own_proxy_requests_are_left_alone() -> None:
    middleware = make()
    disabled = send(middleware, Request(SITE, meta={"proxypool_disable": True}))
    own = send(middleware, Request(SITE, meta={"proxy": "http://mine.example:3128"}))
    assert "proxy" not in disabled.meta
    assert PROXY_META_KEY not in disabled.meta
    assert own.meta["proxy"] == "http://mine.example:3128"
    assert PROXY_META_KEY not in own.meta
    assert "proxypool/requests" not in stats(middleware)


def test_meta_proxy_none_is_not_a_way_around_the_pool() -> None:
    request = send(make(), Request(SITE, meta={"proxy": None}))
    assert request.meta[PROXY_META_KEY] in proxies(4)


def test_sticky_session_keeps_its_proxy_and_others_rotate() -> None:
    middleware = make()
    alpha = {
        send(middleware, Request(SITE, meta={"proxypool_session": "a"})).meta["proxy"]
        for _ in range(5)
    }
    plain = {send(middleware, Request(SITE)).meta["proxy"] for _ in range(5)}
    assert len(alpha) == 1
    assert len(plain) > 1


def test_request_geo_uses_its_own_sub_pool() -> None:
    middleware = make(ListSource(proxies(2)))
    source = source_of(middleware)
    assert middleware.pool is not None
    middleware.pool.refill("JP/Tokyo")
    request = send(
        middleware, Request(SITE, meta={"proxypool_geo": {"country": "jp", "state": "Tokyo"}})
    )
    assert request.meta[PROXY_META_KEY].geo == Geo("JP", "Tokyo")
    assert source.calls == [None, Geo("JP", "Tokyo")]


def test_bad_request_geo_or_session_is_dropped_not_sent() -> None:
    middleware = make()
    with pytest.raises(IgnoreRequest, match="proxypool_geo"):
        complete(middleware.process_request(Request(SITE, meta={"proxypool_geo": "USA/Cal"})))
    with pytest.raises(IgnoreRequest, match="hashable"):
        complete(middleware.process_request(Request(SITE, meta={"proxypool_session": ["x"]})))
    assert stats(middleware)["proxypool/bad_geo"] == 1


def test_slot_per_proxy_names_the_entry_not_its_credentials() -> None:
    gateway = [Proxy("gw.example", 7000, username=f"user{i}", password=SECRET) for i in range(2)]
    middleware = make(ListSource(gateway), PROXYPOOL_SLOT_PER_PROXY=True)
    slots = {send(middleware, Request(SITE)).meta["download_slot"] for _ in range(4)}
    assert len(slots) == 2  # one per pool entry, though both share gw.example:7000
    assert all(slot.startswith("proxypool:gw.example:7000#") for slot in slots)
    assert not any("user" in slot or SECRET in slot for slot in slots)


def test_download_slot_untouched_by_default() -> None:
    request = send(make(), Request(SITE))
    assert "download_slot" not in request.meta


def basic(pair: str, encoding: str = "latin-1") -> bytes:
    return b"Basic " + base64.b64encode(pair.encode(encoding))


def through_httpproxy(middleware: ProxyPoolMiddleware, request: Request) -> Request:
    """``request`` after this middleware and then Scrapy's HttpProxyMiddleware (750)."""
    send(middleware, request)
    HttpProxyMiddleware.from_crawler(middleware.crawler).process_request(request)
    return request


def test_credentials_go_into_the_header_never_into_meta_proxy() -> None:
    """The middleware sets Proxy-Authorization itself and meta["proxy"] without credentials;
    HttpProxyMiddleware keeps that header; a retry through a proxy without credentials drops
    it (one proxy's credentials are never sent to another)."""
    with_auth = Proxy("10.0.0.9", 9000, username="u1", password=SECRET)
    middleware = make(ListSource([with_auth, Proxy("10.0.0.8", 9000)]))
    request = send(middleware, Request(SITE))
    if request.meta[PROXY_META_KEY].username is None:  # rotation: the next one has credentials
        request = send(middleware, Request(SITE))
    assert request.meta[PROXY_META_KEY].username == "u1"
    assert request.meta["proxy"] == "http://10.0.0.9:9000"  # before HttpProxyMiddleware too
    assert request.headers[b"Proxy-Authorization"] == basic(f"u1:{SECRET}")
    HttpProxyMiddleware.from_crawler(middleware.crawler).process_request(request)
    assert request.headers[b"Proxy-Authorization"] == basic(f"u1:{SECRET}")
    assert request.meta["proxy"] == "http://10.0.0.9:9000"

    retry = middleware.process_response(request, response(request, 403))
    assert isinstance(retry, Request)
    assert b"Proxy-Authorization" not in retry.headers  # nothing of the banned proxy is left
    through_httpproxy(middleware, retry)
    assert retry.meta[PROXY_META_KEY] == Proxy("10.0.0.8", 9000)
    assert b"Proxy-Authorization" not in retry.headers
    assert retry.meta["proxy"] == "http://10.0.0.8:9000"


def test_scrapys_own_retry_copy_gets_the_new_proxys_credentials() -> None:
    """RetryMiddleware (550) resends a copy carrying the old proxy, its header and
    HttpProxyMiddleware's note of which proxy that header belongs to: the new proxy's header
    must replace it and survive HttpProxyMiddleware, or a credential-less proxy must get none."""
    gateway = [Proxy(f"gw{i}.example", 7000, username=f"user{i}", password=SECRET) for i in (1, 2)]
    middleware = make(ListSource([*gateway, Proxy("10.0.0.8", 9000)]))
    first = through_httpproxy(middleware, Request(SITE))
    sent = [first.meta[PROXY_META_KEY]]
    copy = first.copy()
    copy.meta["retry_times"] = 1
    for _ in range(2):  # the two other proxies, in turn: one with credentials, one without
        copy = through_httpproxy(middleware, copy.copy())
        proxy = copy.meta[PROXY_META_KEY]
        sent.append(proxy)
        if proxy.username is None:
            assert b"Proxy-Authorization" not in copy.headers
            assert copy.meta["proxy"] == "http://10.0.0.8:9000"
        else:
            assert copy.headers[b"Proxy-Authorization"] == basic(f"{proxy.username}:{SECRET}")
            assert copy.meta["proxy"] == f"http://{proxy.host}:7000"
    assert len(set(sent)) == 3


@pytest.mark.parametrize(
    ("username", "password", "encoding", "pair", "pair_encoding"),
    [
        ("u:1@x", "p@ss:w/rd%", None, "u:1@x:p@ss:w/rd%", "latin-1"),  # no URL quoting involved
        ("onlyuser", None, None, "onlyuser:", "latin-1"),  # HttpProxyMiddleware: TypeError
        ("jos\u00e9", "caf\u00e9", None, "jos\u00e9:caf\u00e9", "latin-1"),
        ("jos\u00e9", "caf\u00e9", "utf-8", "jos\u00e9:caf\u00e9", "utf-8"),
        ("\u674e", "\u5bc6\u7801", None, "\u674e:\u5bc6\u7801", "utf-8"),  # not latin-1: UTF-8
        ("a..b", "pw", "idna", "a..b:pw", "utf-8"),  # idna refuses an empty label: UTF-8
    ],
)
def test_proxy_authorization_encodes_credentials_as_scrapy_would(
    username: str, password: str | None, encoding: str | None, pair: str, pair_encoding: str
) -> None:
    settings = {"HTTPPROXY_AUTH_ENCODING": encoding} if encoding else {}
    proxy = Proxy("10.0.0.9", 9000, username=username, password=password)
    middleware = make(ListSource([proxy]), **settings)
    request = through_httpproxy(middleware, Request(SITE))
    assert request.headers[b"Proxy-Authorization"] == basic(pair, pair_encoding)
    assert request.meta["proxy"] == "http://10.0.0.9:9000"


def test_a_proxy_without_credentials_at_the_same_address_gets_no_header() -> None:
    """Gateway style: the same host:port with and without credentials. HttpProxyMiddleware
    keeps a header whose proxy URL has not changed, so only this middleware can drop the
    first entry's credentials when Scrapy's retry copy moves to the second one."""
    with_auth = Proxy("gw.example", 7000, username="u1", password=SECRET)
    middleware = make(ListSource([with_auth, Proxy("gw.example", 7000)]))
    request = through_httpproxy(middleware, Request(SITE))
    if request.meta[PROXY_META_KEY].username is None:  # start on the credentialed one
        request = through_httpproxy(middleware, Request(SITE))
    assert request.headers[b"Proxy-Authorization"] == basic(f"u1:{SECRET}")
    copy = request.copy()
    copy.meta["retry_times"] = 1
    through_httpproxy(middleware, copy)
    assert copy.meta[PROXY_META_KEY] == Proxy("gw.example", 7000)
    assert copy.meta["proxy"] == "http://gw.example:7000"
    assert b"Proxy-Authorization" not in copy.headers


def test_an_empty_username_is_no_credentials() -> None:
    request = through_httpproxy(
        make(ListSource([Proxy("10.0.0.9", 9000, username="", password=SECRET)])), Request(SITE)
    )
    assert b"Proxy-Authorization" not in request.headers


@pytest.mark.parametrize(
    "settings",
    [
        {"HTTPPROXY_ENABLED": False},
        {"DOWNLOADER_MIDDLEWARES": {HttpProxyMiddleware: None}},
        {
            "DOWNLOADER_MIDDLEWARES": {
                "scrapy.downloadermiddlewares.httpproxy.HttpProxyMiddleware": None
            }
        },
    ],
)
def test_without_httpproxymiddleware_no_header_is_made(
    settings: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing would remove the header from a request the spider derives from a pooled one and
    sends without a proxy (straight to the site): so, as Scrapy does then, no credentials go."""
    with_auth = Proxy("10.0.0.9", 9000, username="u1", password=SECRET)
    with caplog.at_level(logging.WARNING, logger="scrapy_ext.middleware"):
        middleware = make(ListSource([with_auth]), **settings)
    assert "HttpProxyMiddleware is disabled" in caplog.text
    request = send(middleware, Request(SITE))
    assert b"Proxy-Authorization" not in request.headers
    assert request.meta["proxy"] == with_auth.url
    derived = send(middleware, request.replace(meta={"proxypool_disable": True}))
    assert b"Proxy-Authorization" not in derived.headers


def test_with_httpproxymiddleware_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="scrapy_ext.middleware"):
        make()
    assert "HttpProxyMiddleware" not in caplog.text


def test_ipv6_proxy_address_is_bracketed_without_credentials() -> None:
    proxy = Proxy("::1", 9000, username="u", password=SECRET)
    request = through_httpproxy(make(ListSource([proxy])), Request(SITE))
    assert request.meta["proxy"] == "http://[::1]:9000"
    assert request.headers[b"Proxy-Authorization"] == basic(f"u:{SECRET}")


# -- bans, failures, retries -----------------------------------------------------------------


def test_success_is_reported_and_the_response_passes() -> None:
    middleware = make()
    request = send(middleware, Request(SITE))
    result = middleware.process_response(request, response(request))
    assert isinstance(result, Response)
    assert middleware.pool is not None
    assert middleware.pool.stats()["successes"] == 1


def test_ban_status_retries_on_another_proxy_with_same_callback_and_meta() -> None:
    middleware = make()

    def parse(response: Response) -> None: ...

    request = send(middleware, Request(SITE, callback=parse, meta={"mine": 1}, priority=3))
    banned = request.meta[PROXY_META_KEY]
    retry = middleware.process_response(request, response(request, 403))
    assert isinstance(retry, Request)
    assert retry.url == request.url
    assert retry.dont_filter
    assert retry.callback is parse
    assert retry.priority == 3
    assert retry.meta["mine"] == 1
    assert "proxy" not in retry.meta  # no trace of the banned proxy
    for _ in range(6):  # the banned proxy is never handed out for this site again...
        send(middleware, retry)
        assert retry.meta[PROXY_META_KEY] != banned
    other = send(middleware, Request("http://other.example/"))
    seen = {other.meta[PROXY_META_KEY]}
    for _ in range(4):
        seen.add(send(middleware, Request("http://other.example/")).meta[PROXY_META_KEY])
    assert banned in seen  # ...but still serves other sites
    counted = stats(middleware)
    assert (counted["proxypool/bans"], counted["proxypool/bans/403"]) == (1, 1)
    assert counted["proxypool/retries"] == 1


def test_a_host_too_long_for_the_pool_is_still_reported_and_retried() -> None:
    middleware = make()
    assert middleware.pool is not None
    # 258 characters: more than a host name may have, so the pool refuses it as a ban's domain.
    request = send(middleware, Request("http://" + "a" * 250 + ".example/"))
    retry = middleware.process_response(request, response(request, 403))
    assert isinstance(retry, Request)  # retried on another proxy, not an exception
    assert middleware.pool.stats()["failures"] == 1  # recorded as a plain failure instead
    assert stats(middleware)["proxypool/bans"] == 1


def test_ban_policy_sees_the_body() -> None:
    middleware = make(PROXYPOOL_BAN_POLICY=CaptchaPolicy)
    request = send(middleware, Request(SITE))
    retry = middleware.process_response(request, response(request, 200, b"<p>captcha</p>"))
    assert isinstance(retry, Request)
    assert stats(middleware)["proxypool/bans/policy"] == 1
    again = send(middleware, retry)
    assert isinstance(middleware.process_response(again, response(again)), Response)


def test_a_function_works_as_ban_policy() -> None:
    def is_ban(request: Request, response: Response) -> bool:
        return response.status == 200 and b"blocked" in response.body

    middleware = make(PROXYPOOL_BAN_POLICY=is_ban)
    request = send(middleware, Request(SITE))
    assert isinstance(
        middleware.process_response(request, response(request, 200, b"blocked")), Request
    )


def test_retries_are_bounded_then_the_ban_is_visible(caplog: pytest.LogCaptureFixture) -> None:
    middleware = make(PROXYPOOL_MAX_PROXY_RETRIES=2)
    request = Request(SITE)
    results = []
    for _ in range(3):
        send(middleware, request)
        result = middleware.process_response(request, response(request, 429))
        results.append(result)
        if isinstance(result, Request):
            request = result
    assert isinstance(results[0], Request)
    assert isinstance(results[1], Request)
    assert isinstance(results[2], Response)
    assert results[2].status == 429
    counted = stats(middleware)
    assert counted["proxypool/retries"] == 2
    assert counted["proxypool/retry_exhausted"] == 1
    assert "gave up on <GET http://shop.example/item/1> after 3 proxies" in caplog.text


def test_proxy_connection_errors_retry_and_cool_the_proxy() -> None:
    middleware = make()
    request = send(middleware, Request(SITE))
    failed = request.meta[PROXY_META_KEY]
    retry = middleware.process_exception(request, DownloadConnectionRefusedError("refused"))
    assert isinstance(retry, Request)
    assert middleware.pool is not None
    assert middleware.pool.stats()["failures"] == 1
    assert stats(middleware)["proxypool/proxy_errors/DownloadConnectionRefusedError"] == 1
    assert all(send(middleware, retry).meta[PROXY_META_KEY] != failed for _ in range(3))


def test_proxy_auth_refusal_is_a_proxy_failure_not_a_ban() -> None:
    middleware = make()
    request = send(middleware, Request(SITE))
    retry = middleware.process_response(request, response(request, 407))
    assert isinstance(retry, Request)
    assert middleware.pool is not None
    assert (middleware.pool.stats()["failures"], middleware.pool.stats()["bans"]) == (1, 0)
    assert stats(middleware)["proxypool/proxy_errors/407"] == 1


def test_other_exceptions_and_foreign_requests_are_not_ours() -> None:
    middleware = make()
    request = send(middleware, Request(SITE))
    assert middleware.process_exception(request, ValueError("a bug in a callback")) is None
    foreign = Request(SITE, meta={"proxy": "http://mine.example:3128"})
    assert middleware.process_exception(foreign, DownloadConnectionRefusedError()) is None
    assert middleware.process_response(foreign, response(foreign, 403)).status == 403


def test_no_secret_in_any_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret_proxies = [Proxy("10.1.1.1", 9000 + i, username="u", password=SECRET) for i in range(2)]
    middleware = make(
        ListSource(secret_proxies), PROXYPOOL_MAX_PROXY_RETRIES=1, PROXYPOOL_APP_KEY=KEY
    )
    request = send(middleware, Request(SITE))
    retry = middleware.process_exception(request, DownloadConnectionRefusedError())
    assert isinstance(retry, Request)
    send(middleware, retry)
    assert isinstance(middleware.process_response(retry, response(retry, 403)), Response)
    assert "10.1.1.1:" in caplog.text  # proxies are logged, as host:port
    assert SECRET not in caplog.text
    assert KEY not in caplog.text


# -- failing closed --------------------------------------------------------------------------


def test_disabled_middleware_is_not_configured() -> None:
    crawler = get_crawler(Spider, {"PROXYPOOL_ENABLED": False})
    with pytest.raises(ScrapyNotConfigured):
        ProxyPoolMiddleware.from_crawler(crawler)


def test_misconfigured_middleware_closes_the_spider_and_drops_everything(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROXYPOOL_APP_KEY", raising=False)
    crawler = get_crawler(Spider, {"PROXYPOOL_API_URL": "http://127.0.0.1:9/x"})
    middleware = ProxyPoolMiddleware.from_crawler(crawler)  # loud at open, not at build
    with pytest.raises(CloseSpider) as closed:
        complete(middleware.spider_opened(Spider("s")))
    assert closed.value.reason == "proxypool_misconfigured"
    assert "PROXYPOOL_APP_KEY is not set" in caplog.text
    with pytest.raises(IgnoreRequest, match="PROXYPOOL_APP_KEY"):
        complete(middleware.process_request(Request(SITE)))
    assert "PROXYPOOL_APP_KEY" in crawler.stats.get_value("proxypool/error")


def test_bad_api_url_names_the_setting() -> None:
    crawler = get_crawler(Spider, {"PROXYPOOL_API_URL": "ftp://nowhere", "PROXYPOOL_APP_KEY": KEY})
    middleware = ProxyPoolMiddleware.from_crawler(crawler)
    with pytest.raises(IgnoreRequest, match="PROXYPOOL_API_URL"):
        complete(middleware.process_request(Request(SITE)))


def test_unloadable_ban_policy_is_a_configuration_error() -> None:
    crawler = get_crawler(
        Spider, {"PROXYPOOL_SOURCE": ListSource(proxies(1)), "PROXYPOOL_BAN_POLICY": "no.such.X"}
    )
    middleware = ProxyPoolMiddleware.from_crawler(crawler)
    with pytest.raises(CloseSpider):
        complete(middleware.spider_opened(Spider("s")))
    with pytest.raises(IgnoreRequest, match="PROXYPOOL_BAN_POLICY"):
        complete(middleware.process_request(Request(SITE)))


def test_account_refused_mid_crawl_stops_serving() -> None:
    middleware = make(ListSource(proxies(1)))
    source = source_of(middleware)
    assert middleware.pool is not None
    source.error = InvalidAppKey("session has expired", code=3)
    with pytest.raises(InvalidAppKey):
        middleware.pool.refill(Geo())
    with pytest.raises(IgnoreRequest, match="stopped"):
        complete(middleware.process_request(Request(SITE)))
    assert "refused the account" in middleware.stats.get_value("proxypool/error")
    with pytest.raises(IgnoreRequest):  # and it stays stopped
        complete(middleware.process_request(Request(SITE)))


def test_closed_spider_serves_nothing() -> None:
    middleware = make()
    complete(middleware.spider_closed(Spider("s")))
    with pytest.raises(IgnoreRequest):
        complete(middleware.process_request(Request(SITE)))
    assert stats(middleware)["proxypool/live"] == 4  # synced before the pool closed


# -- the reachability check on extracted proxies ----------------------------------------------


@pytest.fixture
def listening() -> Iterator[tuple[str, int]]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # released: connections to it are refused


def test_reachable_keeps_what_accepts_connections(listening: tuple[str, int]) -> None:
    dead = ("127.0.0.1", refused_port())
    assert reachable([listening, dead, listening], timeout=2.0) == {listening}
    assert reachable([], timeout=2.0) == set()


def test_checked_source_drops_dead_proxies_and_counts(
    listening: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    alive = Proxy(*listening)
    dead = Proxy("127.0.0.1", refused_port())
    source = CheckedSource(ListSource([alive, dead, alive]), timeout=2.0)
    assert source.extract(Geo("US"), num=3, life=5) == [alive, alive]
    counters = source.counters()
    assert (counters.extractions, counters.extracted, counters.rejected) == (1, 3, 1)
    assert "refill for US: 3 proxies extracted (asked for 3), 1 rejected" in caplog.text


def test_checked_source_can_skip_the_check() -> None:
    dead = Proxy("127.0.0.1", refused_port())
    source = CheckedSource(ListSource([dead]), check=False)
    assert source.extract(None, num=1, life=5) == [dead]
    assert source.counters().rejected == 0


def test_checked_source_counts_failed_extractions() -> None:
    inner = ListSource([])
    inner.error = InvalidAppKey("bad key", code=3)
    source = CheckedSource(inner)
    with pytest.raises(InvalidAppKey):
        source.extract(None, num=1, life=5)
    assert source.counters().failed == 1


# -- issue 12: schemes, meta values, handlers, replays ------------------------------------------


def refused(middleware: ProxyPoolMiddleware, request: Request) -> str:
    """The IgnoreRequest message ``process_request`` drops ``request`` with."""
    with pytest.raises(IgnoreRequest) as dropped:
        complete(middleware.process_request(request))
    return str(dropped.value)


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("ftp://files.example/pub/a.txt", "ftp"),
        ("s3://bucket/key", "s3"),
        ("file:///etc/passwd", "file"),
        ("about:blank", "about"),
        ("gopher://old.example/1", "gopher"),
    ],
)
def test_a_scheme_the_pool_cannot_carry_is_refused(
    url: str, scheme: str, caplog: pytest.LogCaptureFixture
) -> None:
    middleware = make()
    with caplog.at_level(logging.DEBUG, logger="scrapy_ext.middleware"):
        message = refused(middleware, Request(url))
        refused(middleware, Request(url + "2"))
    assert f"{scheme}://" in message or f"{scheme}:" in message
    assert "http and https only" in message and "proxypool_disable" in message
    counted = stats(middleware)
    assert counted["proxypool/refused_scheme"] == 2
    assert counted[f"proxypool/refused_scheme/{scheme}"] == 2
    assert "proxypool/requests" not in counted
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per scheme, then DEBUG
    assert [r.levelno for r in caplog.records].count(logging.DEBUG) >= 1


def test_data_urls_pass_untouched_and_uncounted() -> None:
    middleware = make()
    request = send(middleware, Request("data:text/plain,hello"))
    assert "proxy" not in request.meta and PROXY_META_KEY not in request.meta
    assert stats(middleware) == {}


def test_other_schemes_go_only_with_proxypool_disable() -> None:
    middleware = make()
    disabled = send(middleware, Request("ftp://files.example/a", meta={"proxypool_disable": True}))
    assert "proxy" not in disabled.meta
    # The user's own proxy is no way around it: Scrapy's FTP handler ignores meta["proxy"].
    own = Request("ftp://files.example/a", meta={"proxy": "http://mine.example:3128"})
    assert "ftp" in refused(middleware, own)
    assert stats(middleware)["proxypool/refused_scheme/ftp"] == 1


@pytest.mark.parametrize("value", ["", None])
def test_an_empty_meta_proxy_is_no_proxy_the_pool_serves_it(value: str | None) -> None:
    request = send(make(), Request(SITE, meta={"proxy": value}))
    assert request.meta[PROXY_META_KEY] in proxies(4)
    assert request.meta["proxy"] == request.meta[PROXY_META_KEY].url


@pytest.mark.parametrize(
    "value",
    [
        " ",
        "mine.example:3128",  # no scheme
        "socks5://mine.example:1080",
        "ftp://mine.example:21",
        "http://",
        "http://:3128",
        "http://mine.example:99999",
        " http://mine.example:3128",
        b"http://mine.example:3128",
        3128,
        ["http://mine.example:3128"],
    ],
)
def test_a_meta_proxy_that_is_not_a_proxy_url_is_a_visible_error(
    value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    middleware = make()
    with caplog.at_level(logging.ERROR, logger="scrapy_ext.middleware"):
        message = refused(middleware, Request(SITE, meta={"proxy": value}))
        refused(middleware, Request(SITE, meta={"proxy": value}))
    assert "meta['proxy']" in message and "http://host:port" in message
    counted = stats(middleware)
    assert counted["proxypool/bad_meta"] == 2
    assert counted["proxypool/bad_meta/proxy"] == 2
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "meta['proxy']" in errors[0].getMessage()


@pytest.mark.parametrize(
    "value", ["http://mine.example:3128", "HTTPS://mine.example", "http://u:p@[::1]:3128"]
)
def test_a_real_proxy_url_is_the_users_own(value: str) -> None:
    middleware = make()
    request = send(middleware, Request(SITE, meta={"proxy": value}))
    assert request.meta["proxy"] == value and PROXY_META_KEY not in request.meta
    assert stats(middleware) == {}


@pytest.mark.parametrize("value", [False, 0, None])
def test_proxypool_disable_false_is_served_by_the_pool(value: Any) -> None:
    request = send(make(), Request(SITE, meta={"proxypool_disable": value}))
    assert request.meta[PROXY_META_KEY] in proxies(4)


@pytest.mark.parametrize("value", [True, 1])
def test_proxypool_disable_true_is_left_alone(value: Any) -> None:
    request = send(make(), Request(SITE, meta={"proxypool_disable": value}))
    assert PROXY_META_KEY not in request.meta


@pytest.mark.parametrize("value", ["false", "0", "yes", "", [], 2])
def test_proxypool_disable_must_be_a_bool(value: Any) -> None:
    """A string is never read as a flag: "false" would otherwise disable the pool."""
    middleware = make()
    message = refused(middleware, Request(SITE, meta={"proxypool_disable": value}))
    assert "meta['proxypool_disable']" in message and "True or False" in message
    assert stats(middleware)["proxypool/bad_meta/proxypool_disable"] == 1


def test_an_unhashable_session_is_a_visible_error(caplog: pytest.LogCaptureFixture) -> None:
    middleware = make()
    with caplog.at_level(logging.DEBUG, logger="scrapy_ext.middleware"):
        for value in (["x"], ["y"], {"a": 1}):
            message = refused(middleware, Request(SITE, meta={"proxypool_session": value}))
            assert "meta['proxypool_session']" in message and "hashable" in message
    counted = stats(middleware)
    assert counted["proxypool/bad_meta"] == 3
    assert counted["proxypool/bad_meta/proxypool_session"] == 3
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2, errors  # once per kind of bad value: list, dict
    assert any("list" in e for e in errors) and any("dict" in e for e in errors)


@pytest.mark.parametrize("value", [123, ["US"], 1.5])
def test_a_request_geo_of_a_wrong_type_counts_as_bad_geo(value: Any) -> None:
    middleware = make()
    assert "proxypool_geo" in refused(middleware, Request(SITE, meta={"proxypool_geo": value}))
    assert stats(middleware)["proxypool/bad_geo"] == 1


# -- non-idempotent requests are not replayed once they may have reached the site ---------------


@pytest.mark.parametrize("method", ["POST", "PATCH", "LOCK"])
def test_a_banned_non_idempotent_request_is_not_replayed(method: str) -> None:
    middleware = make()
    request = send(middleware, Request(SITE, method=method, body=b"order=1"))
    banned = request.meta[PROXY_META_KEY]
    result = middleware.process_response(request, response(request, 403))
    assert isinstance(result, Response) and result.status == 403
    assert middleware.pool is not None
    assert middleware.pool.stats()["bans"] == 1  # still reported...
    for _ in range(4):  # ...so the proxy is not handed out for this site again
        assert send(middleware, Request(SITE)).meta[PROXY_META_KEY] != banned
    counted = stats(middleware)
    assert (counted["proxypool/bans"], counted["proxypool/not_replayed"]) == (1, 1)
    assert "proxypool/retries" not in counted


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"])
def test_a_banned_idempotent_request_is_retried(method: str) -> None:
    middleware = make()
    request = send(middleware, Request(SITE, method=method))
    assert isinstance(middleware.process_response(request, response(request, 429)), Request)


def test_a_407_over_http_came_from_the_proxy_a_post_is_retried() -> None:
    middleware = make()
    request = send(middleware, Request(SITE, method="POST"))
    assert isinstance(middleware.process_response(request, response(request, 407)), Request)


def test_a_407_inside_an_https_tunnel_came_from_the_site_a_post_is_not_retried() -> None:
    """Over https a proxy's 407 refuses the CONNECT (a TunnelError, no response): a 407
    response came through the tunnel, from the site, which therefore got the request."""
    middleware = make()
    request = send(middleware, Request("https://shop.example/cart", method="POST"))
    result = middleware.process_response(request, response(request, 407))
    assert isinstance(result, Response)
    assert stats(middleware)["proxypool/not_replayed"] == 1
    get = send(middleware, Request("https://shop.example/cart"))
    assert isinstance(middleware.process_response(get, response(get, 407)), Request)


def _never_sent() -> list[Exception]:
    from scrapy.core.downloader.handlers.http11 import TunnelError
    from scrapy.exceptions import CannotResolveHostError
    from twisted.internet.error import ConnectionRefusedError as TxRefused

    return [
        DownloadConnectionRefusedError("refused"),
        CannotResolveHostError("no such proxy host"),
        TunnelError("Could not open CONNECT tunnel with proxy 10.0.0.1:8000 [403]"),
        TxRefused(),
    ]


def _may_have_arrived() -> list[Exception]:
    from scrapy.exceptions import DownloadFailedError, DownloadTimeoutError, ResponseDataLossError
    from twisted.internet.error import ConnectionLost
    from twisted.web.client import ResponseNeverReceived

    return [
        DownloadTimeoutError("took longer than 180 seconds"),
        DownloadFailedError("connection lost"),
        ResponseDataLossError("lost"),
        ConnectionLost(),
        ResponseNeverReceived([]),
    ]


@pytest.mark.parametrize("error", _never_sent(), ids=lambda e: type(e).__name__)
def test_a_post_whose_request_never_left_is_retried(error: Exception) -> None:
    middleware = make()
    request = send(middleware, Request(SITE, method="POST"))
    assert isinstance(middleware.process_exception(request, error), Request)


def test_a_post_through_a_proxy_host_twisted_refuses_is_retried() -> None:
    """Twisted refuses a malformed host with a ValueError before connecting: the middleware
    knows it from the proxy's host, not from the error's wording (which is not API)."""
    middleware = make(ListSource([Proxy("bad host", 8000), Proxy("10.0.0.2", 8000)]))
    request = send(middleware, Request(SITE, method="POST"))
    assert request.meta[PROXY_META_KEY].host == "bad host"
    retry = middleware.process_exception(request, ValueError("any wording"))
    assert isinstance(retry, Request)
    assert stats(middleware)["proxypool/proxy_errors/invalid_hostname"] == 1


@pytest.mark.parametrize(
    "host", ["10.0.0.9", "::1", "proxy-1.example", "under_score.example", "xn--e1afmkfd.example"]
)
def test_a_valueerror_through_a_well_formed_proxy_host_is_not_the_proxys(host: str) -> None:
    """Even worded like Twisted's refusal, a ValueError through a host Twisted connects to is
    not the proxy's doing: it goes on to the errback, and the proxy is not blamed."""
    middleware = make(ListSource([Proxy(host, 8000)]))
    request = send(middleware, Request(SITE))
    assert middleware.process_exception(request, ValueError(f"invalid hostname: {host}")) is None
    assert middleware.pool is not None
    assert middleware.pool.stats()["failures"] == 0
    assert "proxypool/proxy_errors" not in stats(middleware)


@pytest.mark.parametrize("error", _may_have_arrived(), ids=lambda e: type(e).__name__)
def test_a_post_that_may_have_arrived_is_not_retried(error: Exception) -> None:
    middleware = make()
    request = send(middleware, Request(SITE, method="POST"))
    assert middleware.process_exception(request, error) is None
    assert middleware.pool is not None
    assert middleware.pool.stats()["failures"] == 1  # the proxy is still blamed
    counted = stats(middleware)
    assert counted["proxypool/not_replayed"] == 1 and "proxypool/retries" not in counted
    get = send(middleware, Request(SITE))
    assert isinstance(middleware.process_exception(get, error), Request)


def _tunnel_refused(status: int, proxy: str = "10.0.0.1:8000") -> Exception:
    from scrapy.core.downloader.handlers.http11 import TunnelError

    # Scrapy 2.19's wording (http11.TunnelingTCP4ClientEndpoint.processProxyResponse); the
    # crawl test in test_scrapy_leaks.py gets the real one from a real proxy.
    extra = {"status": status, "reason": "Bad Gateway"}
    return TunnelError(f"Could not open CONNECT tunnel with proxy {proxy} [{extra!r}]")


@pytest.mark.parametrize("status", [502, 503, 504])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_target_the_proxy_cannot_reach_is_blamed_for_that_host_only(
    status: int, method: str
) -> None:
    """A CONNECT refused 502/503/504: the proxy could not reach the target host. The proxy is
    not failed (a site linking to unreachable hosts must not get healthy proxies evicted and
    new ones bought), only skipped for that host; the request, which never left, tries another
    proxy."""
    middleware = make()
    pool = middleware.pool
    assert pool is not None
    for _ in range(4):  # more than max_failures (3) for one proxy, had it been blamed
        request = send(middleware, Request("https://unreachable.example/x", method=method))
        used = request.meta[PROXY_META_KEY]
        retry = middleware.process_exception(request, _tunnel_refused(status))
        assert isinstance(retry, Request)
    counted = stats(middleware)
    assert counted["proxypool/target_unreachable"] == 4
    assert "proxypool/proxy_errors" not in counted
    assert pool.stats()["failures"] == 0 and pool.stats()["evictions"] == 0
    # Skipped for that host, still serving the others.
    other = send(middleware, Request(SITE))
    assert other.meta[PROXY_META_KEY] in proxies(4)
    assert pool.try_get(domain="unreachable.example") is None
    assert used in proxies(4)


@pytest.mark.parametrize(
    "message",
    [
        "Could not open CONNECT tunnel with proxy 10.0.0.1:8000 [{'status': 407, 'reason': 'x'}]",
        "Could not open CONNECT tunnel with proxy 10.0.0.1:8000 [b'garbage']",
        "some other wording [{'status': 502, 'reason': 'Bad Gateway'}]",
    ],
    ids=["407", "no-status", "other-wording"],
)
def test_other_refused_tunnels_stay_the_proxys_failure(message: str) -> None:
    from scrapy.core.downloader.handlers.http11 import TunnelError

    middleware = make()
    request = send(middleware, Request("https://shop.example/x"))
    assert isinstance(middleware.process_exception(request, TunnelError(message)), Request)
    counted = stats(middleware)
    assert counted["proxypool/proxy_errors/TunnelError"] == 1
    assert "proxypool/target_unreachable" not in counted
    assert middleware.pool is not None and middleware.pool.stats()["failures"] == 1


# -- requests other middlewares and spiders derive from a pooled one ---------------------------


def test_a_redirect_to_another_scheme_gets_a_fresh_pool_proxy() -> None:
    """RedirectMiddleware (600) copies meta (proxy, our key) and headers into the redirected
    request, which comes back through process_request: the pool serves it again, and nothing of
    the first proxy (its credentials) stays on it."""
    from scrapy.downloadermiddlewares.redirect import RedirectMiddleware

    with_auth = Proxy("10.0.0.9", 9000, username="u1", password=SECRET)
    middleware = make(ListSource([with_auth, Proxy("10.0.0.8", 9000)]))
    first = through_httpproxy(middleware, Request(SITE))
    if first.meta[PROXY_META_KEY] != with_auth:
        first = through_httpproxy(middleware, Request(SITE))
    assert first.headers[b"Proxy-Authorization"] == basic(f"u1:{SECRET}")
    redirect = RedirectMiddleware.from_crawler(middleware.crawler)
    moved = Response(SITE, status=302, headers={"Location": "https://shop.example/item/1"})
    redirected = redirect.process_response(first, moved)
    assert isinstance(redirected, Request) and redirected.url.startswith("https://")
    assert redirected.meta[PROXY_META_KEY] == with_auth  # copied along...
    through_httpproxy(middleware, redirected)
    assert redirected.meta[PROXY_META_KEY] == Proxy("10.0.0.8", 9000)  # ...and replaced
    assert redirected.meta["proxy"] == "http://10.0.0.8:9000"
    assert b"Proxy-Authorization" not in redirected.headers
    # A redirect to ftp:// is not followed by Scrapy at all (http and https only).
    to_ftp = Response(SITE, status=302, headers={"Location": "ftp://files.example/a"})
    assert redirect.process_response(first, to_ftp) is to_ftp


def test_a_request_made_with_a_pooled_responses_meta_is_served_by_the_pool() -> None:
    """response.follow(url, meta=response.meta) copies meta["proxy"] and the private key: the
    private key wins (the pool serves the new request); copying meta["proxy"] alone makes a
    request with the user's own proxy, which for a scheme the pool cannot carry is refused."""
    middleware = make()
    parent = send(middleware, Request(SITE))
    child = send(middleware, Request("http://shop.example/next", meta=dict(parent.meta)))
    assert child.meta[PROXY_META_KEY] in proxies(4)
    middleware.sync_stats()
    assert stats(middleware)["proxypool/requests"] == 2
    ftp = Request("ftp://shop.example/x", meta={"proxy": parent.meta["proxy"]})
    assert "ftp" in refused(middleware, ftp)
    ftp_copy = Request("ftp://shop.example/x", meta=dict(parent.meta))
    assert "ftp" in refused(middleware, ftp_copy)


def test_a_request_made_with_a_pooled_responses_meta_gets_its_own_proxy_budget() -> None:
    """The parent needed every proxy retry before its answer came; a child made with
    response.follow(url, meta=response.meta) copies the private retry keys, yet it is a new
    request: it gets the whole budget. A retry of the same request keeps counting."""
    middleware = make(ListSource(proxies(8)), PROXYPOOL_MAX_PROXY_RETRIES=2)
    error = DownloadConnectionRefusedError("refused")
    parent = send(middleware, Request(SITE))
    for _ in range(2):
        parent = middleware.process_exception(parent, error)
        assert isinstance(parent, Request)
        send(middleware, parent)
    assert middleware.process_exception(parent, error) is None  # the parent's budget is spent
    answered = send(middleware, parent.replace(dont_filter=True))  # (as Scrapy's retry would)
    child = send(middleware, Request("http://shop.example/next", meta=dict(answered.meta)))
    retries = 0
    while isinstance(child := middleware.process_exception(child, error), Request):
        send(middleware, child)
        retries += 1
    assert retries == 2


# -- download handlers -------------------------------------------------------------------------

AIOHTTP = "scrapy.core.downloader.handlers._aiohttp.AiohttpDownloadHandler"
FILE = "scrapy.core.downloader.handlers.file.FileDownloadHandler"  # ignores meta["proxy"]


def built(**settings: Any) -> ProxyPoolMiddleware:
    crawler = get_crawler(
        Spider,
        {
            **HANDLERS,
            "PROXYPOOL_SOURCE": ListSource(proxies(2)),
            "PROXYPOOL_CHECK_PROXIES": False,
            **settings,
        },
    )
    return ProxyPoolMiddleware.from_crawler(crawler)


@pytest.mark.parametrize(
    ("handlers", "scheme", "handler"),
    [
        ({"http": AIOHTTP}, "http", AIOHTTP),
        ({"https": AIOHTTP}, "https", AIOHTTP),
        ({"https": FILE}, "https", FILE),
        ({"http": "tests_handler_that_is_not_there.X"}, None, None),
    ],
)
def test_a_download_handler_not_known_to_carry_the_proxy_stops_the_spider(
    handlers: dict[str, str], scheme: str | None, handler: str | None
) -> None:
    middleware = built(DOWNLOAD_HANDLERS={"http": HTTP11, "https": HTTP11, **handlers})
    if scheme is None:  # Scrapy cannot load it either: it downloads nothing for that scheme
        assert middleware.failure is None
        return
    with pytest.raises(CloseSpider) as closed:
        complete(middleware.spider_opened(Spider("s")))
    assert closed.value.reason == "proxypool_misconfigured"
    error = str(middleware.stats.get_value("proxypool/error"))
    assert f"DOWNLOAD_HANDLERS['{scheme}']" in error and handler in error
    assert "PROXYPOOL_TRUSTED_HANDLERS" in error
    assert "proxypool/error" in middleware.stats.get_stats()
    with pytest.raises(IgnoreRequest, match="DOWNLOAD_HANDLERS"):
        complete(middleware.process_request(Request(SITE)))
    assert source_of(middleware).calls == []  # nothing was bought


@pytest.mark.parametrize(
    "handlers",
    [
        {"http": HTTP11, "https": HTTP11},
        {"http": None, "https": None},  # no handler: Scrapy downloads nothing, nothing leaks
        {"http": HTTP11, "https": HTTP11, "ftp": None, "s3": AIOHTTP},  # refused schemes
    ],
)
def test_scrapys_http11_handler_is_accepted(handlers: dict[str, Any]) -> None:
    assert built(DOWNLOAD_HANDLERS=handlers).failure is None


def test_a_subclass_of_http11_needs_to_be_trusted() -> None:
    from scrapy.core.downloader.handlers.http11 import HTTP11DownloadHandler

    class Custom(HTTP11DownloadHandler):
        pass

    handlers = {"http": Custom, "https": HTTP11}
    assert built(DOWNLOAD_HANDLERS=handlers).failure is not None
    trusted = built(DOWNLOAD_HANDLERS=handlers, PROXYPOOL_TRUSTED_HANDLERS=[Custom])
    assert trusted.failure is None


@pytest.mark.parametrize("trusted", [[AIOHTTP], AIOHTTP, f" {AIOHTTP} , {FILE}"])
def test_trusted_handlers_are_accepted(trusted: Any) -> None:
    middleware = built(
        DOWNLOAD_HANDLERS={"http": AIOHTTP, "https": AIOHTTP}, PROXYPOOL_TRUSTED_HANDLERS=trusted
    )
    assert middleware.failure is None


def test_an_unloadable_trusted_handler_names_the_setting() -> None:
    middleware = built(PROXYPOOL_TRUSTED_HANDLERS=["no.such.Handler"])
    assert middleware.failure is not None
    assert "PROXYPOOL_TRUSTED_HANDLERS" in middleware.failure[1]


# -- proxy_of -----------------------------------------------------------------------------------


def test_proxy_of_names_the_pool_proxy_and_only_that() -> None:
    from scrapy_ext import proxy_of

    with_auth = Proxy("10.0.0.9", 9000, username="u1", password=SECRET)
    middleware = make(ListSource([with_auth]))
    request = send(middleware, Request(SITE))
    page = response(request)
    assert proxy_of(page) == with_auth == proxy_of(request)
    assert SECRET not in f"{proxy_of(page)} {proxy_of(page)!r}"
    own = send(middleware, Request(SITE, meta={"proxy": "http://10.9.9.9:1"}))
    off = send(middleware, Request(SITE, meta={"proxypool_disable": True}))
    assert proxy_of(own) is None and proxy_of(off) is None
    assert proxy_of(HtmlResponse(SITE, body=b"")) is None  # no request: no meta
