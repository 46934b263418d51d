"""Closing a Scrapy spider while an extraction is in flight on a provider that does not answer.

Each crawl is a real ``CrawlerProcess`` in a subprocess (``_scrapy_crawls``), through real relays
to the recording target site, with the ``ProviderSimulator`` as provider. Its address source
(``HoldingSource``) answers the first extractions at once, then holds the chosen one: it writes a
marker file and waits until the test releases it, after the crawl process has exited. The spider
closes itself once the marker exists, so the order of events is set by the test, not by timing:

- ``top-up``: the pool holds one proxy, below ``min_size``, so the middleware tops it up in the
  background; that extraction hangs; the spider raises ``CloseSpider`` from a callback.
- ``waiters``: requests for a second geography (JP) wait for its first extraction, which hangs;
  the spider closes from a callback or through ``engine.close_spider``, while they wait.

What must hold: the crawl process ends before the held extraction is ever answered (so nothing
waited for the provider: neither Scrapy's close, nor the worker threads at exit), no
``proxypool*`` thread is left in the crawl process after the crawl, the log has no ERROR and no
traceback, and every request that was waiting is reported to its errback, never sent.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from _scrapy_crawls import CloseSpec, run_crawl

from proxypool.sim.provider import ProviderSimulator
from proxypool.sim.relays import RelayFleet
from proxypool.sim.target import TargetSite

pytestmark = pytest.mark.timeout(120)

KEY = "KEYs3cr3tShutdown0987654321"
HOLD = 45.0  # seconds the held extraction waits for the test, at most (crawl timeout: 60 s)
# The client waits longer than that: a crawl that waits for the held call sees it answered.
API_TIMEOUT = HOLD + 5
REASON = "shutdown_test"
_ERROR_LINE = re.compile(r"\] (ERROR|CRITICAL):")


class HoldingSource:
    """A ``ProviderSimulator`` address source: per country code, the addresses in ``quick``,
    answered at once for the first ``hold_after[cc]`` calls; every later call for ``cc`` (the
    client's retries included) writes ``marker`` and hangs until ``release`` is set (at most
    ``HOLD`` s). Thread-safe."""

    def __init__(
        self,
        quick: Mapping[str, Sequence[str]],
        hold_after: Mapping[str, int],
        marker: Path,
    ) -> None:
        self.quick = quick
        self.hold_after = hold_after
        self.marker = marker
        self.entered = threading.Event()  # a held call arrived
        self.answered = threading.Event()  # a held call returned
        self.release = threading.Event()
        self._calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(
        self, cc: str | None, state: str | None, city: str | None, num: int, life: int
    ) -> list[str]:
        key = cc or ""
        with self._lock:
            n = self._calls[key] = self._calls.get(key, 0) + 1
        if key in self.hold_after and n > self.hold_after[key]:
            self.entered.set()
            self.marker.write_text("held")
            self.release.wait(HOLD)
            self.answered.set()
        return list(self.quick.get(key, ()))[:num]


@pytest.fixture
def hold_release() -> Iterator[list[HoldingSource]]:
    """Sources to release at teardown, so no simulator thread is left hanging."""
    sources: list[HoldingSource] = []
    yield sources
    for source in sources:
        source.release.set()


def problems_in(log: str) -> list[str]:
    """ERROR/CRITICAL lines and tracebacks (Twisted's "Unhandled error" included)."""
    return [
        line
        for line in log.splitlines()
        if _ERROR_LINE.search(line) or "Traceback" in line or "Unhandled error" in line
    ]


@pytest.mark.parametrize(
    ("scenario", "how"),
    [("top-up", "callback"), ("waiters", "callback"), ("waiters", "engine")],
)
def test_closing_mid_refill_ends_at_once_and_leaves_no_thread(
    tmp_path: Path,
    relay_fleet: RelayFleet,
    target_site: TargetSite,
    hold_release: list[HoldingSource],
    scenario: str,
    how: str,
) -> None:
    marker = tmp_path / "held.marker"
    relays = [relay.address for relay in relay_fleet]
    if scenario == "top-up":
        # One proxy < min_size 2: the first request starts a background top-up, which hangs.
        source = HoldingSource({"US": relays[:1]}, {"US": 1}, marker)
        min_size = 2
        waiting: list[str] = []
        min_waits = 0
    else:
        source = HoldingSource({"US": relays[:2], "JP": relays[2:]}, {"JP": 0}, marker)
        min_size = 1
        waiting = [target_site.url_for(f"/page/{n}") for n in range(4)]
        min_waits = len(waiting)  # close once every JP request waits in a worker thread
    hold_release.append(source)
    served = [target_site.url_for(f"/page/{n}") for n in range(10, 14)]
    start: list[dict[str, Any]] = [{"url": url} for url in served]
    start += [{"url": url, "meta": {"proxypool_geo": "JP"}} for url in waiting]

    with ProviderSimulator(app_key=KEY, address_source=source) as sim:
        result = run_crawl(
            tmp_path,
            env=sim.env(),
            geo="US",
            start=start,
            settings={"PROXYPOOL_MIN_SIZE": min_size, "PROXYPOOL_API_TIMEOUT": API_TIMEOUT},
            close=CloseSpec(
                marker,
                how=how,
                reason=REASON,
                url=target_site.url_for("/page/19"),
                min_waits=min_waits,
            ),
            timeout=60,
        )
        # Still held: the crawl process exited without waiting for the provider's answer.
        held_at_exit = source.entered.is_set() and not source.answered.is_set()
        source.release.set()

    assert result.returncode == 0, str(result)
    closing = result.extra.get("close_seconds")
    assert held_at_exit, f"the crawl waited for the held extraction ({closing} s)\n{result}"
    assert result.finish_reason == REASON, str(result)
    assert "close_begun" in result.extra, str(result)
    if how == "callback":
        assert result.extra.get("closed_from_callback") == target_site.url_for("/page/19")
    leftover = [name for name in result.threads if name.startswith("proxypool")]
    assert leftover == [], f"threads left after the crawl: {result.threads}\n{result}"
    assert problems_in(result.log) == [], str(result)
    assert KEY not in result.log

    # Nothing was sent without a proxy; what waited was reported, not sent and not lost.
    hits = target_site.hits()
    assert target_site.direct_hits() == []
    assert {urlsplit_path(url) for url in served} <= target_site.paths_served_ok()
    assert sorted(e["url"] for e in result.errors) == sorted(waiting), result.errors
    assert all(e["error"] == "IgnoreRequest" for e in result.errors)
    assert not {urlsplit_path(url) for url in waiting} & {hit.path for hit in hits}
    assert result.stat("proxypool/waits") >= min_waits


def urlsplit_path(url: str) -> str:
    return "/" + url.split("/", 3)[3]
