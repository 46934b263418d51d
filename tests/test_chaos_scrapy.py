"""Chaos for a real Scrapy crawl: 2,000 pages through the add-on, real relays and the provider
simulator, while relays die, the target bans a relay, the extraction API fails, stalls, answers
empty lists and garbage, and leases end. Everything is judged from the target's own records.

The world is a ``SimWorld``: 9 relays in US/California, a lease gateway (every extracted IP is a
port of its own forwarding to one relay, for the lease's life), the ``ProviderSimulator`` and the
recording target site. The crawl is a ``CrawlerProcess`` in a subprocess (``_scrapy_crawls``)
with ``ADDONS = {"scrapy_ext.ProxyPoolAddon": 0}`` and the real ``ProviderClient``; every page is
a start request, and non-2xx answers go to the errback. Relays wait ``RELAY_LATENCY`` before
forwarding, so the crawl lasts long enough for faults to land in it.

Time: leases last ``LIFE`` minute scaled by ``TIME_SCALE`` (``LEASE_SECONDS`` real seconds);
the pool, on real time, believes they live a minute and stops handing one out
``EXPIRY_MARGIN`` s before that, i.e. ``USABLE`` s after it asked for the batch, a few seconds
before the lease really ends. Each batch therefore expires all at once while the crawl runs: a TTL
expiry wave in which every request needs the next extraction at the same moment.

What is injected, while the crawl runs (each fault once a share of the pages is served, so it
lands mid-run whatever the machine's speed):

- 10 %: a third of the relays are killed (SIGKILL; their leases' ports then refuse connections),
  yet the provider keeps handing them out, as a real one would (``hand_out_dead``);
- 20 %: the target bans one more relay (HTTP 403 to everything it carries);
- 30 %, once the first batch's leases have ended by themselves (a TTL wave the pool saw coming:
  it retired them ``LEASE_SECONDS - USABLE`` s before and bought more): the extraction API turns
  slow, every call takes ``SLOW_SECONDS``; and every lease ends at once (``end_leases``: a TTL
  wave the pool cannot foresee; its proxies fail, it must buy more from the slow API). Its first
  answer is an HTTP 500, then it is flaky: HTTP 500 on 30 % of calls, garbage (HTML, truncated
  JSON, wrong shapes, empty bodies, redirects) on 20 % of the rest, empty lists on 20 % of what
  is left;
- 45 % (and once an answer other than a 500 came slowly): the API answers at once again;
- 60 %: the storm: every lease ends again, and the API answers HTML, then truncated JSON, then
  JSON of the wrong shape, then an empty list, one after the other (the seeded random faults
  alone would need dozens of calls to show them all); flaky again once a batch was bought;
- 85 %: the API is healthy.

What must hold:

- accounting: every page reached the callback once (a 200) or the errback once, never both,
  never neither (no page silently dropped); failures are rare (faults are survivable);
- the target's records: no request without a proxy; a dead relay serves nothing after its death;
  a page was served as a success more than once only where a cut caught it in flight: the
  target answered, but the relay was killed (see ``Cut``) or the gateway reset the connection
  that carried the request (its lease ended: see ``caught_on_cut_connections``) before the
  answer got back, so the crawler saw a connection error, not the page, and retried it
  elsewhere (a GET may be replayed). Each cut connection can carry at most one such request; a
  page that failed was served only so, if at all;
- the pool never used a proxy past its life: no connection reached a lease after its natural end;
- the extraction calls stay within a budget computed from the pool's life and backoff (below);
- the log has no ERROR (but Scrapy's own "Gave up retrying" for a page the errback got), no
  traceback, and no app_key.

Also here: the two middleware fixes found by the secret-scan review, with direct-call tests and a
crawl: a proxy whose host the downloader refuses as malformed (``ValueError("invalid hostname")``)
is a proxy failure (reported, retried elsewhere), and Scrapy's own retries do not inherit a spent
proxy-retry budget when the target, not a proxy, failed.
"""

from __future__ import annotations

import bisect
import collections
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _helpers import ListSource
from _scrapy_crawls import CrawlResult, complete, run_crawl
from scrapy import Request, Spider
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.exceptions import DownloadConnectionRefusedError
from scrapy.http import HtmlResponse, Response
from scrapy.utils.test import get_crawler

from proxypool.models import Proxy
from proxypool.sim.provider import GARBAGE_KINDS, ApiCall
from proxypool.sim.relays import RelayFleet
from proxypool.sim.target import Hit, TargetSite
from proxypool.sim.world import Forwarded, SimWorld
from scrapy_ext import ProxyPoolMiddleware
from scrapy_ext.middleware import PROXY_META_KEY

PAGES = 2000
RELAYS = 9
KILLED = ("relay-0", "relay-1", "relay-2")  # a third of them
BANNED = "relay-3"
CONCURRENT = 16  # CONCURRENT_REQUESTS: at most this many requests are on the wire at once
RELAY_LATENCY = 0.2  # seconds each relay waits before forwarding: ~80 pages/s
DOWNLOAD_TIMEOUT = 10.0
LIFE = 1  # minutes, the provider's minimum
EXPIRY_MARGIN = 48.0  # seconds: the pool uses a proxy for USABLE s after asking for it
USABLE = LIFE * 60 - EXPIRY_MARGIN  # 12 s
LEASE_SECONDS = 15.0  # the lease really ends 3 s later: time for a request that took it in time
TIME_SCALE = LEASE_SECONDS / (LIFE * 60)
SLOW_SECONDS = 3.0
FLAKY = (0.3, 0.2, 0.2)  # fail_rate (HTTP 500), garbage_rate, empty_rate while the API is flaky
STORM = ("html", "truncated", "wrong_shape")  # garbage the storm forces, one after the other
CLIENT_CALLS = 3  # HTTP calls per extraction at most: the ProviderClient retries twice on 5xx
# The pool backs off after a failed or empty extraction: 1 s doubling, half jitter, so it waits
# at least this long before the next one.
MIN_API_BACKOFF = 0.5
# Paid extractions allowed beyond the computed need: a healthy relay's transient failure may
# push the live proxies below min_size between waves.
EXTRA_PAID = 2
MAX_FAILED_PAGES = PAGES // 100
_ERROR_LINE = re.compile(r"\] (ERROR|CRITICAL):")
_GAVE_UP = re.compile(
    r"\[scrapy\.downloadermiddlewares\.retry\] ERROR: Gave up retrying <GET (\S+)>"
)


@dataclass
class Cut:
    """A moment connections were cut: ``relays`` (None: every relay) between ``begin`` and
    ``end`` (the machine's monotonic clock, which the target, the relays and the lease gateway
    share)."""

    name: str
    begin: float
    end: float
    relays: tuple[str, ...] | None

    def caught(self, hit: Hit) -> bool:
        """For a kill: whether ``hit`` may be a request in flight when the relay died. It
        reached the relay (``Hit.relayed_at``, stamped by the relay itself) at most a download
        timeout before the kill, and before the relay was dead (a dead relay stamps nothing)."""
        relayed_at = hit.relayed_at
        assert relayed_at is not None, hit  # every page is plain http through a relay
        return (
            self.relays is None or hit.relay in self.relays
        ) and self.begin - DOWNLOAD_TIMEOUT <= relayed_at <= self.end


def caught_on_cut_connections(hits: Sequence[Hit], forwarded: Sequence[Forwarded]) -> set[int]:
    """``id()`` of each hit that was the last request on a connection the lease gateway cut
    (``Forwarded.cut``: its lease ended, by a wave or by its own life, while it was open).

    Exact, whatever the machine's load: the relay names the connection a request came on (its
    client's port, ``Hit.relay_peer_port``) and when it got the request (``Hit.relayed_at``);
    the request came on the connection from that port to that relay opened last before then.
    Requests on one connection go one after the other, so only the last one can have been in
    flight when it was cut (a relay may read it after the cut: the bytes were in its socket)."""
    by_port: dict[tuple[str | None, int], list[Forwarded]] = collections.defaultdict(list)
    for conn in forwarded:
        by_port[(conn.relay, conn.port)].append(conn)
    for conns in by_port.values():
        conns.sort(key=lambda conn: conn.opened_at)
    last: dict[Forwarded, Hit] = {}
    for hit in hits:
        at, port = hit.relayed_at, hit.relay_peer_port
        if at is None or port is None:
            continue
        conns = by_port.get((hit.relay, port), [])
        index = bisect.bisect_right([conn.opened_at for conn in conns], at) - 1
        if index < 0 or not conns[index].cut:
            continue
        conn = conns[index]
        known = last.get(conn)
        if known is None or (known.relayed_at or 0.0) < at:
            last[conn] = hit
    return {id(hit) for hit in last.values()}


@dataclass
class Timeline:
    """When each fault was injected (target clock = ``time.monotonic``, simulator wall clock)."""

    cuts: list[Cut] = field(default_factory=list)
    killed_at: float = math.inf  # once the target was done with what the killed relays sent
    kill_settled: bool | None = None  # whether it was, within the wait (site.wait_done_with)
    ban_from: float = math.inf
    ban_until: float = math.inf
    slow_from: datetime | None = None
    slow_until: datetime | None = None
    ended: set[str] = field(default_factory=set)  # lease addresses ended by end_leases
    storm: list[str] = field(default_factory=list)  # the malformed answers the storm forced
    progress_at: dict[str, int] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)


def run_faults(world: SimWorld, timeline: Timeline, stop: threading.Event) -> None:
    """Inject each fault once the given share of the pages has been served."""
    site, sim = world.target, world.simulator

    def until(done: Callable[[], bool]) -> bool:
        while not done():
            if stop.wait(0.02):
                return False
        return True

    def at(share: float, name: str) -> bool:
        if not until(lambda: len(site.paths_served_ok()) >= share * PAGES):
            return False
        timeline.progress_at[name] = len(site.paths_served_ok())
        return True

    def end_leases(name: str) -> None:
        begin = time.monotonic()
        ended = world.end_leases()
        timeline.cuts.append(Cut(name, begin, time.monotonic(), None))  # (by connection)
        timeline.ended.update(lease.address for lease in ended)

    def answered_after(count: int, kind: Callable[[ApiCall], bool]) -> Callable[[], bool]:
        return lambda: any(kind(call) for call in sim.extraction_calls()[count:])

    def lease_lived_out() -> bool:  # a lease that carried requests ended by itself
        return any(u.lived_out and u.used for u in world.leases())

    def garbage(call: ApiCall) -> bool:  # no JSON envelope, and not an HTTP 500
        return call.code is None and call.http_status != 500

    def slow_answer(call: ApiCall) -> bool:
        assert timeline.slow_from is not None
        slow = timedelta(seconds=SLOW_SECONDS)
        return call.http_status != 500 and call.time >= timeline.slow_from + slow

    try:
        if not at(0.10, "kill"):
            return
        begin = time.monotonic()
        for name in KILLED:
            world.kill_relay(name)
        # A request a relay forwarded just before its death may still wait for the GIL in one of
        # the target's threads, to be stamped later: killed_at comes once the target is done
        # with every connection of the killed relays. A relay still serving keeps them open:
        # the wait gives up, and its later hits fail the test.
        timeline.kill_settled = site.wait_done_with([world.fleet[name] for name in KILLED])
        timeline.killed_at = time.monotonic()
        timeline.cuts.append(Cut("kill", begin, timeline.killed_at, KILLED))
        if not at(0.20, "ban"):
            return
        timeline.ban_from = time.monotonic()
        world.ban_relay(BANNED)
        timeline.ban_until = time.monotonic()
        # The first batch's leases end by themselves before the waves begin: the pool must
        # have retired them in time (checked from the gateway's records), and bought again.
        if not at(0.30, "provider faults") or not until(lease_lived_out):
            return
        # Slow and failing: the first answer is an HTTP 500 for sure (the seeded random faults
        # might not show one in the few calls a crawl makes), then flaky at random.
        sim.fail_rate, sim.garbage_rate, sim.empty_rate = 1.0, 0.0, 0.0
        timeline.slow_from = datetime.now()  # the simulator's clock
        sim.set_delay(SLOW_SECONDS, path="ip/v3")
        if stop.wait(1.0):  # an extraction begun before the delay is answered by now
            return
        count = len(sim.extraction_calls())
        end_leases("slow wave")  # the pool's proxies all fail: it must buy from the slow API
        if not until(answered_after(count, lambda c: c.http_status == 500)):
            return
        sim.fail_rate, sim.garbage_rate, sim.empty_rate = FLAKY
        # Fast again once 10 % more pages are done and an answer other than a 500 came slowly.
        if not at(0.45, "slow done") or not until(answered_after(count, slow_answer)):
            return
        sim.set_delay(0, path="ip/v3")
        timeline.slow_until = datetime.now()
        if not at(0.60, "storm"):
            return
        # The storm. It starts once the pool's last extraction was paid for, so it is not in a
        # backoff streak already. Right after a wave has emptied the pool, every answer is
        # garbage of one kind, then the next, then an empty list: the pool meets them one after
        # the other, backing off longer each time (at most 1 + 2 + 4 + 8 s in all), while
        # requests wait. Then the API is healthy until a batch is bought (ending the streak),
        # and flaky again.
        if not until(lambda: sim.extraction_calls()[-1].ips > 0):
            return
        sim.fail_rate, sim.garbage_rate, sim.empty_rate = 0.0, 1.0, 0.0
        for kind in STORM:
            count = len(sim.extraction_calls())
            sim.garbage_kinds = (kind,)
            if kind == STORM[0]:
                end_leases("storm wave")
            if not until(answered_after(count, garbage)):
                return
            timeline.storm.append(kind)
        count = len(sim.extraction_calls())
        sim.garbage_rate, sim.empty_rate = 0.0, 1.0
        if not until(answered_after(count, lambda c: c.code == 200 and c.ips == 0)):
            return
        timeline.storm.append("empty list")
        count = len(sim.extraction_calls())
        sim.empty_rate = 0.0
        sim.garbage_kinds = GARBAGE_KINDS
        if not until(answered_after(count, lambda c: c.ips > 0)):
            return
        sim.fail_rate, sim.garbage_rate, sim.empty_rate = FLAKY
        if not at(0.85, "provider healthy"):
            return
        sim.fail_rate = sim.garbage_rate = sim.empty_rate = 0.0
    except BaseException as exc:  # surfaced by the test, never lost in this thread
        timeline.errors.append(exc)


def problems_in(log: str, failed_urls: set[str]) -> list[str]:
    """ERROR/CRITICAL lines and tracebacks, except Scrapy's retry giving up on a page that the
    errback then received (the failure is reported, as it must be)."""
    found = []
    for line in log.splitlines():
        gave_up = _GAVE_UP.search(line)
        if gave_up and gave_up.group(1) in failed_urls:
            continue
        if _ERROR_LINE.search(line) or "Traceback" in line or "Unhandled error" in line:
            found.append(line)
    return found


@pytest.mark.timeout(150)
def test_scrapy_crawl_survives_chaos(tmp_path: Path) -> None:
    timeline = Timeline()
    stop = threading.Event()
    with SimWorld(
        {"US/California": RELAYS},
        pages=PAGES,
        time_scale=TIME_SCALE,
        relay_latency=RELAY_LATENCY,
        hand_out_dead=True,
    ) as world:
        site, sim = world.target, world.simulator
        pages = {f"/page/{n}" for n in range(PAGES)}
        start = [{"url": site.url_for(f"/page/{n}")} for n in range(PAGES)]
        faults = threading.Thread(
            target=run_faults, args=(world, timeline, stop), name="chaos-faults"
        )
        faults.start()
        try:
            result = run_crawl(
                tmp_path,
                env=world.env(),
                geo="US/California",
                start=start,
                status_errback=True,
                timeout=120,
                settings={
                    "LOG_LEVEL": "INFO",  # DEBUG for 2,000 pages slows the crawl down
                    "CONCURRENT_REQUESTS": CONCURRENT,
                    "CONCURRENT_REQUESTS_PER_DOMAIN": CONCURRENT,
                    "DOWNLOAD_TIMEOUT": DOWNLOAD_TIMEOUT,
                    "PROXYPOOL_LIFE": LIFE,
                    "PROXYPOOL_EXPIRY_MARGIN": EXPIRY_MARGIN,
                    "PROXYPOOL_BATCH": RELAYS,
                    "PROXYPOOL_MIN_SIZE": 4,  # below the 6 relays that stay healthy elsewhere
                    "PROXYPOOL_MAX_PROXY_RETRIES": 6,
                    "PROXYPOOL_WAIT_TIMEOUT": 40,
                    "PROXYPOOL_API_TIMEOUT": 10,  # longer than a slow answer
                },
            )
        finally:
            stop.set()
            faults.join(30)
        hits = site.hits()
        calls = sim.extraction_calls()
        leases = world.leases()
        forwarded = world.forwarded()
        key = world.app_key

    assert not faults.is_alive()
    assert timeline.errors == []
    assert result.returncode == 0, str(result)
    assert result.finish_reason == "finished", str(result)
    assert key not in result.log and key not in result.output
    # Every fault landed while the crawl still had pages to fetch.
    assert "provider healthy" in timeline.progress_at, (timeline.progress_at, str(result))
    assert all(done < PAGES for done in timeline.progress_at.values()), timeline.progress_at

    # -- the crawler's side: every page accounted for once ------------------------------------
    ok = [r["path"] for r in result.responses]
    failed = [urlsplit_path(e["url"]) for e in result.errors]
    assert all(r["status"] == 200 for r in result.responses)
    assert len(ok) == len(set(ok)) and len(failed) == len(set(failed)), "a callback ran twice"
    assert not set(ok) & set(failed)
    assert set(ok) | set(failed) == pages, "a page was silently dropped"
    kinds = collections.Counter(e["error"] for e in result.errors)
    assert len(failed) <= MAX_FAILED_PAGES, kinds
    failed_urls = {e["url"] for e in result.errors}
    assert problems_in(result.log, failed_urls) == [], str(result)

    # -- the target's records -------------------------------------------------------------------
    assert site.direct_hits() == []
    assert {hit.relay for hit in hits} <= {f"relay-{n}" for n in range(RELAYS)}
    served_dead = [h for h in hits if h.relay in KILLED and h.at > timeline.killed_at]
    assert not served_dead, (served_dead[:5], timeline.kill_settled)
    assert all(h.relay == BANNED and h.at >= timeline.ban_from for h in hits if h.banned)
    assert all(h.banned for h in hits if h.relay == BANNED and h.at > timeline.ban_until)
    assert any(h.banned for h in hits), "the ban never showed"
    cuts = timeline.cuts
    assert [cut.name for cut in cuts] == ["kill", "slow wave", "storm wave"]

    kill = cuts[0]
    on_cut_connections = caught_on_cut_connections(hits, forwarded)

    def cut_in_flight(hit: Hit) -> bool:
        return kill.caught(hit) or id(hit) in on_cut_connections

    served_ok: dict[str, list[Hit]] = collections.defaultdict(list)
    for hit in hits:
        if hit.status == 200 and not hit.banned:
            served_ok[hit.path].append(hit)
    assert set(served_ok) <= pages
    for path in ok:
        assert served_ok[path], f"{path}: the crawler saw a 200 the target never served"
        replays = [h for h in served_ok[path] if not cut_in_flight(h)]
        assert len(replays) <= 1, replay_report(path, served_ok[path], cuts, forwarded, result)
    for path in failed:
        assert all(cut_in_flight(h) for h in served_ok[path]), f"{path}: failed yet served"
    served_twice = [path for path, served in served_ok.items() if len(served) > 1]
    # One replay at most per cut connection, and per request on the wire when relays died.
    cut_connections = sum(conn.cut for conn in forwarded)
    assert len(served_twice) <= cut_connections + CONCURRENT, (served_twice, cut_connections)

    # -- the pool never used a proxy past its life ----------------------------------------------
    # Judged by how each lease ended, not by its state at the end: a lease that lived out its life
    # early in a slow crawl has its port closed (its linger over) by the time the crawl ends.
    natural = [u for u in leases if u.lease.address not in timeline.ended]
    assert [u for u in natural if u.late_connections] == []
    assert any(u.lived_out and u.used for u in natural), "no lease lived out its life"
    stats = result.proxypool_stats()
    assert stats.get("proxypool/expired", 0) >= 1, stats  # batches did expire in the pool

    # -- the provider's records: every fault happened, extraction within budget -----------------
    assert timeline.storm == [*STORM, "empty list"]
    assert any(c.http_status == 500 for c in calls), "no HTTP 500"
    assert timeline.slow_from is not None and timeline.slow_until is not None
    slow = timedelta(seconds=SLOW_SECONDS)
    assert any(
        c.http_status != 500
        and timeline.slow_from + slow <= c.time <= timeline.slow_until + CLIENT_CALLS * slow
        for c in calls
    ), "no extraction was answered slowly"
    # Budget. A batch is bought when the pool's live proxies drop below min_size: at the start,
    # when a batch expires (USABLE s after it was asked for, so at most one such purchase per
    # USABLE s of the crawl), and after each lease wave (the pool's proxies all fail at once; a
    # wave that meets an extraction in flight needs none: its leases start after the wave);
    # killing 3 of a batch's 9 leaves 6 >= min_size, a ban leaves the proxy live for other
    # sites. EXTRA_PAID allows for transients. Failed and empty extractions are bounded by the
    # pool's backoff (at least MIN_API_BACKOFF s after each); each attempt is at most
    # CLIENT_CALLS HTTP calls.
    waves = len(cuts) - 1
    paid = [c for c in calls if c.ips > 0]
    paid_budget = 1 + math.floor(result.seconds / USABLE) + waves + EXTRA_PAID
    assert 2 <= len(paid) <= paid_budget, (len(paid), paid_budget, result.seconds)
    failed_budget = math.floor(result.seconds / MIN_API_BACKOFF) + 1
    budget = (paid_budget + failed_budget) * CLIENT_CALLS
    assert len(calls) <= budget, (len(calls), budget)
    assert stats["proxypool/extracted"] == sim.ips_handed_out == RELAYS * len(paid)
    assert stats["proxypool/rejected"] >= len(KILLED)  # dead relays' leases, dropped on arrival


def replay_report(
    path: str,
    served: Sequence[Hit],
    cuts: Sequence[Cut],
    forwarded: Sequence[Forwarded],
    result: Any,
) -> str:
    """Why a page served twice outside every cut: the hits, the cuts, the connections from each
    hit's port to its relay, and the crawl's lines on the page."""
    lines = [f"{path} served {len(served)} times outside every cut"]
    for hit in served:
        lines.append(
            f"  hit {hit.relay} at {hit.at:.3f}, relayed at {hit.relayed_at} from port "
            f"{hit.relay_peer_port}"
        )
        lines += [
            f"    connection {conn}"
            for conn in forwarded
            if (conn.relay, conn.port) == (hit.relay, hit.relay_peer_port)
        ]
    lines += [f"  cut {c.name}: {c.begin:.3f}..{c.end:.3f} {c.relays}" for c in cuts]
    lines += [f"  log: {line}" for line in result.log.splitlines() if path + ">" in line]
    return "\n".join(lines)


def urlsplit_path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


# ------------------------------------------------------------------------------------------------
# Two middleware fixes: a malformed proxy host, and Scrapy's retries after the proxy budget
# ------------------------------------------------------------------------------------------------

SITE = "http://shop.example/item/1"
MALFORMED = "bad!host"  # Twisted's HostnameEndpoint refuses it: ValueError("invalid hostname")


HTTP11 = "scrapy.core.downloader.handlers.http11.HTTP11DownloadHandler"


def make(proxies: Sequence[Proxy], **settings: Any) -> ProxyPoolMiddleware:
    crawler = get_crawler(
        Spider,
        {
            # Scrapy's default (get_crawler() alone configures Scrapy's reactorless mode, with
            # the aiohttp handler the middleware refuses).
            "DOWNLOAD_HANDLERS": {"http": HTTP11, "https": HTTP11},
            "PROXYPOOL_SOURCE": ListSource(proxies),
            "PROXYPOOL_CHECK_PROXIES": False,
            "PROXYPOOL_MIN_SIZE": 0,
            "PROXYPOOL_BATCH": len(proxies),
            **settings,
        },
    )
    crawler.spider = Spider.from_crawler(crawler, name="chaos")  # RetryMiddleware needs one
    middleware = ProxyPoolMiddleware.from_crawler(crawler)
    assert middleware.pool is not None
    middleware.pool.refill(middleware.config.geo)  # in-memory source: no I/O
    return middleware


def send(middleware: ProxyPoolMiddleware, request: Request) -> Proxy:
    """process_request; returns the proxy the request was given."""
    assert complete(middleware.process_request(request)) is None
    proxy = request.meta[PROXY_META_KEY]
    assert isinstance(proxy, Proxy)
    return proxy


def respond(request: Request, status: int) -> Response:
    return HtmlResponse(request.url, status=status, body=b"<html></html>", request=request)


def counters(middleware: ProxyPoolMiddleware) -> dict[str, Any]:
    stats = middleware.stats.get_stats()
    return {k: v for k, v in stats.items() if k.startswith("proxypool/")}


def test_malformed_proxy_host_is_a_proxy_failure_retried_elsewhere() -> None:
    bad = Proxy(MALFORMED, 8080)
    middleware = make([bad, Proxy("10.0.0.1", 8000), Proxy("10.0.0.2", 8000)])
    request = Request(SITE)
    assert send(middleware, request) == bad  # round robin: the first one
    retry = middleware.process_exception(request, ValueError(f"invalid hostname: {MALFORMED}"))
    assert isinstance(retry, Request)
    assert send(middleware, retry) != bad
    assert middleware.pool is not None
    assert middleware.pool.stats()["failures"] == 1  # reported to the pool
    assert counters(middleware)["proxypool/proxy_errors/invalid_hostname"] == 1
    # Any other ValueError is not the proxy's doing: it goes on to the errback, unreported.
    other = Request(SITE + "?2")
    send(middleware, other)
    assert middleware.process_exception(other, ValueError("a bug in a callback")) is None
    assert middleware.pool.stats()["failures"] == 1


def test_a_crawl_routes_around_a_malformed_proxy_host(
    tmp_path: Path, relay_fleet: RelayFleet, target_site: TargetSite
) -> None:
    good = [relay.address for relay in relay_fleet.relays[:2]]
    pages = [f"/page/{n}" for n in range(8)]
    result: CrawlResult = run_crawl(
        tmp_path,
        start=[{"url": target_site.url_for(path)} for path in pages],
        status_errback=True,
        settings={
            "PROXYPOOL_SOURCE": "_scrapy_crawls.SettingsSource",
            "TEST_PROXIES": [f"{MALFORMED}:8080", *good],
            "PROXYPOOL_CHECK_PROXIES": False,  # the check would drop it before any request
            "PROXYPOOL_BATCH": 3,
        },
    )
    assert result.returncode == 0, str(result)
    assert result.errors == [], str(result)
    assert set(pages) <= result.ok_paths()
    assert result.stat("proxypool/proxy_errors/invalid_hostname") >= 1, str(result)
    assert target_site.direct_hits() == []
    assert {hit.relay for hit in target_site.hits()} <= {"relay-0", "relay-1"}


def test_scrapy_retry_for_the_target_starts_a_fresh_proxy_budget() -> None:
    """Two bans spend the budget (PROXYPOOL_MAX_PROXY_RETRIES=2); the third proxy reaches the
    target, which answers 503; Scrapy's RetryMiddleware retries that. The retried request's
    first ban must be retried on another proxy, not end the request."""
    middleware = make(
        [Proxy("10.0.0.1", 8000 + i) for i in range(8)], PROXYPOOL_MAX_PROXY_RETRIES=2
    )
    retry_middleware = RetryMiddleware.from_crawler(middleware.crawler)
    request = Request(SITE)
    for _ in range(2):
        send(middleware, request)
        result = middleware.process_response(request, respond(request, 403))
        assert isinstance(result, Request)
        request = result
    send(middleware, request)
    served = middleware.process_response(request, respond(request, 503))
    assert isinstance(served, Response) and served.status == 503  # the proxy did its job
    again = retry_middleware.process_response(request, served)
    assert isinstance(again, Request) and again.meta["retry_times"] == 1
    send(middleware, again)
    retried = middleware.process_response(again, respond(again, 403))
    assert isinstance(retried, Request), "the spent budget carried over into Scrapy's retry"
    assert "proxypool/retry_exhausted" not in counters(middleware)
    assert counters(middleware)["proxypool/retries"] == 3


def test_scrapy_retry_after_the_proxy_budget_adds_one_proxy_each() -> None:
    """Proxies keep failing: the middleware tries 1 + PROXYPOOL_MAX_PROXY_RETRIES of them and
    gives up; each of Scrapy's RETRY_TIMES retries then gets one more proxy, not a new budget."""
    middleware = make(
        [Proxy("10.0.0.1", 8000 + i) for i in range(8)],
        PROXYPOOL_MAX_PROXY_RETRIES=1,
        PROXYPOOL_MAX_FAILURES=10,
        RETRY_TIMES=2,
    )
    retry_middleware = RetryMiddleware.from_crawler(middleware.crawler)
    request: Request | None = Request(SITE)
    used = []
    while request is not None:
        used.append(send(middleware, request))
        failure = DownloadConnectionRefusedError("refused")
        retry = middleware.process_exception(request, failure)
        if retry is None:  # the middleware gave up: Scrapy's RetryMiddleware decides
            scrapy_retry = retry_middleware.process_exception(request, failure)
            assert scrapy_retry is None or isinstance(scrapy_retry, Request)
            retry = scrapy_retry
        request = retry
    assert len(used) == (1 + 1) + 2  # the budget, then one per Scrapy retry
    assert len(set(used)) == len(used)  # never the same failed proxy again
    assert counters(middleware)["proxypool/retry_exhausted"] == 3
