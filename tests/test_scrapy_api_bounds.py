"""PROXYPOOL_API_TIMEOUT bounds each provider call of a real Scrapy crawl, headers included.

The middleware hands its ``ProviderClient`` a session that closing the spider can cut
(``proxypool._deadline.ProviderSession``). That session must bound a provider that drips the
*headers* of its extraction answer as well as the client's own session does: each call ends
``PROXYPOOL_API_TIMEOUT`` after it started, not when the provider stops or the spider closes.

Each crawl is a real ``CrawlerProcess`` in a subprocess (``_scrapy_crawls``) with the default
asyncio reactor; the provider is a raw loopback server (``HeaderDripServer``) that sends a status
line and then one header byte every 0.2 s, and measures how long each call held on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _provider import KEY, HeaderDripServer, envelope
from _scrapy_crawls import CrawlResult, run_crawl

from proxypool.sim.relays import RelayFleet
from proxypool.sim.target import TargetSite

pytestmark = pytest.mark.timeout(120)

DRIP_FOR = 40.0  # longer than any bound checked here: a held call shows as a long hold
API_TIMEOUT = 1.0
# A call held past this was not cut by its deadline (1 s, plus slack for a loaded machine: the
# server notices the cut on its next byte, 0.2 s later).
HELD_AT_MOST = 3.5


PAGES = [f"/page/{n}" for n in range(3)]


@pytest.fixture
def make_drip() -> Iterator[Callable[..., HeaderDripServer]]:
    servers: list[HeaderDripServer] = []

    def make(**kwargs: Any) -> HeaderDripServer:
        server = HeaderDripServer(drip_for=DRIP_FOR, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def crawl(
    tmp_path: Path, provider: HeaderDripServer, site: TargetSite, *, wait_timeout: float
) -> CrawlResult:
    """Crawl ``PAGES`` of ``site``, extracting from ``provider`` with the API timeout above."""
    return run_crawl(
        tmp_path,
        env={"PROXYPOOL_APP_KEY": KEY, "PROXYPOOL_API_URL": provider.url},
        settings={"PROXYPOOL_API_TIMEOUT": API_TIMEOUT, "PROXYPOOL_WAIT_TIMEOUT": wait_timeout},
        start=[{"url": site.url_for(path)} for path in PAGES],
        timeout=90,
    )


def test_dripped_extraction_headers_are_cut_at_the_api_timeout(
    tmp_path: Path, target_site: TargetSite, make_drip: Callable[..., HeaderDripServer]
) -> None:
    """Every extraction drips its headers: each call is cut after PROXYPOOL_API_TIMEOUT (the
    pool backs off and tries again), the requests fail visibly once PROXYPOOL_WAIT_TIMEOUT
    passes, the crawl ends, and nothing goes out direct."""
    provider = make_drip()
    result = crawl(tmp_path, provider, target_site, wait_timeout=5.0)

    assert result.returncode == 0, result
    assert result.seconds < 30, result  # the provider alone would hold a call 40 s
    assert result.error_paths() == set(PAGES), result
    assert result.stat("proxypool/exhausted") == len(PAGES), result
    assert not target_site.hits(), target_site.hits()
    # Each call was cut by its own deadline, and the reason is in the log.
    assert provider.held, "the provider was never called"
    assert max(provider.held) < HELD_AT_MOST, f"calls held {provider.held} s\n{result}"
    assert "failed (GET ip/v3: the provider did not answer within 1 s)" in result.log, result
    assert KEY not in result.log and KEY not in result.output


def test_a_dripping_first_answer_costs_one_api_timeout(
    tmp_path: Path,
    target_site: TargetSite,
    relay_fleet: RelayFleet,
    make_drip: Callable[..., HeaderDripServer],
) -> None:
    """Only the first extraction drips; the next answers at once. The first call is cut after
    PROXYPOOL_API_TIMEOUT, the pool's retry buys the proxies, and the pages are fetched through
    them well within PROXYPOOL_WAIT_TIMEOUT (a held first call would have failed them all)."""
    addresses = [relay.address for relay in relay_fleet]
    provider = make_drip(drips=1, answer=json.dumps(envelope({"list": addresses})).encode())
    result = crawl(tmp_path, provider, target_site, wait_timeout=15.0)

    assert result.returncode == 0, result
    assert result.ok_paths() == set(PAGES), result
    assert not result.errors, result
    hits = target_site.hits()
    assert hits and all(hit.relay in relay_fleet.names for hit in hits), hits
    assert not target_site.direct_hits()
    assert provider.connections >= 2
    assert provider.held and max(provider.held) < HELD_AT_MOST, provider.held
    assert KEY not in result.log and KEY not in result.output
