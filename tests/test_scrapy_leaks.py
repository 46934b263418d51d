"""Real Scrapy crawls attacking the middleware's promises (issue 12): a site that links to (or
redirects to) schemes the pool cannot carry, a POST answered with a ban, a download handler
that would put proxy credentials into logs.

Each crawl runs in its own subprocess (``_scrapy_crawls.run_crawl``), through real proxy.py
relays, logging at DEBUG. Pages come from pytest-httpserver (it serves the links these tests
need) or the sim ``TargetSite`` (it records which relay carried each request).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _provider import closed_port
from _scrapy_crawls import run_crawl
from pytest_httpserver import HTTPServer
from werkzeug import Response as WerkzeugResponse

from proxypool.sim.relays import RelayFleet, port_for_source_ip
from proxypool.sim.target import TargetSite

pytestmark = pytest.mark.timeout(120)

AIOHTTP_HANDLER = "scrapy.core.downloader.handlers._aiohttp.AiohttpDownloadHandler"
PROXY_USER = "pxyuser7"
RELAY_PASSWORD = "RELAYs3cr3tPw1"
WRONG_PASSWORD = "WRONGs3cr3tPw2"


class Listener:
    """A plain TCP listener on loopback standing in for an FTP server: records every connection
    it accepts and resets it at once (Scrapy's FTP client would wait forever on a polite
    refusal), so a client that does connect fails fast."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self.connections: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(peer)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def list_source(fleet: RelayFleet, credentials: str = "") -> dict[str, Any]:
    """Settings for a ``PROXYPOOL_SOURCE`` handing out the fleet's relays (``credentials``:
    ``"user:password@"`` put before each address)."""
    return {
        "PROXYPOOL_SOURCE": "_scrapy_crawls.SettingsSource",
        "TEST_PROXIES": [f"{credentials}{relay.address}" for relay in fleet],
    }


def url_for(server: HTTPServer, path: str) -> str:
    """``server``'s URL for ``path`` by IP: relays mark only traffic to 127.x addresses."""
    return f"http://127.0.0.1:{server.port}{path}"


def relayed(server: HTTPServer, path: str) -> list[int | None]:
    """For each request ``server`` got for ``path``: the port of the relay that carried it
    (None: it came directly)."""
    return [port_for_source_ip(req.remote_addr or "") for req, _ in server.log if req.path == path]


# -- item 1: schemes the pool cannot carry --------------------------------------------------------


def test_links_to_other_schemes_are_refused_never_sent(
    tmp_path: Path, relay_fleet: RelayFleet, httpserver: HTTPServer, listener: Listener
) -> None:
    """A page fetched through the pool links to ftp://, s3://, file:// and data: URLs, and
    redirects to ftp://; the spider follows every link. Nothing reaches the FTP-ish listener
    except the one request marked proxypool_disable, the refused ones reach their errbacks and
    are counted per scheme, and data: (no network) passes untouched."""
    ftp = f"ftp://127.0.0.1:{listener.port}"
    local = tmp_path / "local.html"
    local.write_text("<html>a local file a site must not make the spider read</html>")
    links = [
        f"{ftp}/linked.txt",
        "s3://some-bucket/some-key.html",
        local.as_uri(),
        "data:text/html,<p>inline</p>",
        "/to-ftp",
    ]
    body = "".join(f'<a href="{link}">x</a>' for link in links)
    httpserver.expect_request("/").respond_with_data(body, content_type="text/html")
    httpserver.expect_request("/to-ftp").respond_with_response(
        WerkzeugResponse(status=302, headers={"Location": f"{ftp}/redirected.txt"})
    )
    own_relay = relay_fleet["relay-3"]
    result = run_crawl(
        tmp_path,
        settings=list_source(relay_fleet),
        follow=True,
        status_errback=True,  # so RedirectMiddleware sees the 302
        start=[
            {"url": url_for(httpserver, "/")},
            # The user's own proxy is no way around it: Scrapy's FTP handler ignores proxies.
            {"url": f"{ftp}/own-proxy.txt", "meta": {"proxy": own_relay.url}},
            # Marked: sent without the pool, on purpose (proves the listener records).
            {
                "url": f"{ftp}/disabled.txt",
                "meta": {"proxypool_disable": True, "dont_retry": True},
            },
        ],
    )
    assert result.returncode == 0, result
    assert all(port is not None for port in relayed(httpserver, "/")), result
    assert relayed(httpserver, "/to-ftp") and all(relayed(httpserver, "/to-ftp"))
    assert len(listener.connections) == 1, (listener.connections, result)  # the marked one
    refused = {e["url"]: e for e in result.errors if e["error"] == "IgnoreRequest"}
    assert set(refused) == {
        f"{ftp}/linked.txt",
        "s3://some-bucket/some-key.html",
        local.as_uri(),
        f"{ftp}/own-proxy.txt",
    }, result
    assert "proxypool_disable" in refused[f"{ftp}/linked.txt"]["message"]
    stats = result.proxypool_stats()
    assert stats["proxypool/refused_scheme"] == 4, stats
    assert stats["proxypool/refused_scheme/ftp"] == 2
    assert stats["proxypool/refused_scheme/s3"] == 1
    assert stats["proxypool/refused_scheme/file"] == 1
    assert stats["proxypool/requests"] == 2  # "/" and "/to-ftp"; data: is not the pool's
    # data: passed untouched; the redirect to ftp:// is not followed (RedirectMiddleware
    # follows http and https only): the 302 reaches the errback as an HttpError.
    assert any(r["url"].startswith("data:") for r in result.responses), result
    errors = {e["url"]: e["error"] for e in result.errors}
    assert errors[url_for(httpserver, "/to-ftp")] == "HttpError"
    assert not any("redirected.txt" in url for url in errors)
    warnings = [line for line in result.log.splitlines() if "WARNING" in line and "ftp" in line]
    assert len(warnings) == 1, warnings  # once per scheme, then DEBUG


# -- item 14: a POST answered with a ban reached the site -----------------------------------------


def test_a_banned_post_reaches_the_site_once(
    tmp_path: Path, relay_fleet: RelayFleet, target_site: TargetSite
) -> None:
    """A FormRequest answered 403 (a ban): the site got it, so it is not sent again through
    another proxy. The ban is still reported and counted; the 403 reaches the spider."""
    result = run_crawl(
        tmp_path,
        settings=list_source(relay_fleet),
        start=[{"url": target_site.url_for("/status/403"), "formdata": {"q": "order 1"}}],
    )
    assert result.returncode == 0, result
    hits = target_site.hits()
    assert [(hit.method, hit.path) for hit in hits] == [("POST", "/status/403")], hits
    assert hits[0].relay in relay_fleet.names
    assert [r["status"] for r in result.responses] == [403]
    stats = result.proxypool_stats()
    assert (stats["proxypool/bans"], stats["proxypool/bans/403"]) == (1, 1), stats
    assert stats["proxypool/not_replayed"] == 1
    assert "proxypool/retries" not in stats


# -- item 7: download handlers that cannot keep proxy credentials secret --------------------------


def test_the_aiohttp_handler_closes_the_spider_before_any_request(
    tmp_path: Path,
    make_relay_fleet: Callable[..., RelayFleet],
    tls_target_site: TargetSite,
    target_site: TargetSite,
) -> None:
    """Scrapy's aiohttp handler rebuilds user:password@ in the proxy URL it hands aiohttp, which
    puts it into the text of a failed tunnel (407). With it configured for http and https, the
    spider closes before any request, naming the setting, the scheme and the handler."""
    fleet = make_relay_fleet(2, auth=(PROXY_USER, RELAY_PASSWORD))
    tls_target_site.know_relays(fleet)
    result = run_crawl(
        tmp_path,
        settings={
            **list_source(fleet, f"{PROXY_USER}:{WRONG_PASSWORD}@"),
            "DOWNLOAD_HANDLERS": {"http": AIOHTTP_HANDLER, "https": AIOHTTP_HANDLER},
            "PROXYPOOL_MAX_PROXY_RETRIES": 1,
        },
        async_process=True,  # aiohttp's handler is built inside the running loop
        start=[
            {"url": tls_target_site.url_for("/page/1")},
            {"url": target_site.url_for("/page/2")},
        ],
    )
    assert result.returncode == 0, result
    for secret in (WRONG_PASSWORD, RELAY_PASSWORD):
        assert secret not in result.log, result
        assert secret not in result.output
        assert all(secret not in e["message"] for e in result.errors)
    assert result.finish_reason == "proxypool_misconfigured", result
    assert tls_target_site.hits() == [] and target_site.hits() == []
    assert all(relay.tunnels() == [] for relay in fleet)
    error = str(result.stat("proxypool/error"))
    assert "DOWNLOAD_HANDLERS['http']" in error and AIOHTTP_HANDLER in error, error
    assert "PROXYPOOL_TRUSTED_HANDLERS" in error
    assert "proxypool/requests" not in result.stats


def test_a_trusted_handler_carries_proxies_without_credentials(
    tmp_path: Path, relay_fleet: RelayFleet, target_site: TargetSite
) -> None:
    """The escape hatch: aiohttp listed in PROXYPOOL_TRUSTED_HANDLERS, with IP-whitelisted
    proxies (no credentials to leak). Requests still go through the pool's relays."""
    result = run_crawl(
        tmp_path,
        settings={
            **list_source(relay_fleet),
            "DOWNLOAD_HANDLERS": {"http": AIOHTTP_HANDLER, "https": AIOHTTP_HANDLER},
            "PROXYPOOL_TRUSTED_HANDLERS": [AIOHTTP_HANDLER],
        },
        async_process=True,
        start=[{"url": target_site.url_for(f"/page/{n}")} for n in range(3)],
    )
    assert result.returncode == 0, result
    assert result.finish_reason == "finished", result
    assert {f"/page/{n}" for n in range(3)} <= result.ok_paths()
    assert not target_site.direct_hits()
    assert all(hit.relay in relay_fleet.names for hit in target_site.hits())


# -- money: a site linking to hosts no proxy can reach --------------------------------------------


def test_links_to_unreachable_hosts_evict_no_proxy_and_buy_little(
    tmp_path: Path, relay_fleet: RelayFleet, target_site: TargetSite
) -> None:
    """https links to a host where nothing listens: every relay answers the CONNECT with 502.
    The relays did their job, so none is failed or evicted (that would make the pool buy new
    ones for a hostile site's links); the host is skipped per proxy, and once no proxy is left
    for it the ban-storm rule stops the buying for it. The real site, in the same crawl, is
    served in full by the same proxies."""
    unreachable = f"https://127.0.0.3:{closed_port()}"
    pages = [target_site.url_for(f"/page/{n}") for n in range(6)]
    result = run_crawl(
        tmp_path,
        settings={**list_source(relay_fleet), "PROXYPOOL_WAIT_TIMEOUT": 10},
        start=[
            *({"url": f"{unreachable}/u{n}", "meta": {"dont_retry": True}} for n in range(3)),
            *({"url": url} for url in pages),
        ],
    )
    assert result.returncode == 0, result
    assert {r["url"] for r in result.responses if r["status"] == 200} == set(pages), result
    assert target_site.direct_hits() == []
    assert {e["url"] for e in result.errors} == {f"{unreachable}/u{n}" for n in range(3)}, result
    stats = result.proxypool_stats()
    assert stats.get("proxypool/target_unreachable", 0) >= len(relay_fleet.names), stats
    assert "proxypool/proxy_errors" not in stats, stats
    assert stats.get("proxypool/evictions", 0) == 0, stats
    # The first fill, then at most the ban-storm rule's 3 batches for the unreachable host.
    assert stats["proxypool/extractions"] <= 1 + 3, stats
