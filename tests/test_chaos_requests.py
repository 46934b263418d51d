"""Chaos for a threaded ``requests`` workload: 8 threads x 500 requests through ``wrap_session``
over a pool fed by the real ``ProviderClient`` talking to the ``ProviderSimulator``, while relays
die, the target bans a relay, the extraction API fails, stalls, answers empty lists and garbage,
and the pool's proxies all expire at once. Everything is judged from the target's own records.

What is injected, while the requests run (each fault starts once a share of the requests is
done, so it lands mid-run whatever the machine's speed):

- a third of the relays are killed (SIGKILL; their port then refuses connections), yet the
  provider keeps handing them out, as a real one would;
- the target bans one more relay (HTTP 403 to everything it carries);
- the extraction API answers HTTP 500 on 30 % of calls, garbage (HTML, truncated JSON, wrong
  shapes, empty bodies, redirects) on 20 %, empty lists on 20 %, and for a while takes 3 s to
  answer;
- TTL expiry waves: the pool's clock jumps by the proxies' whole life, so every pooled proxy
  expires at once and all 8 threads need the next extraction at the same moment. The first wave
  hits while the API is slow, then one every 2.5 % of the run while it is flaky (so the flaky API
  is asked often enough to show every kind of fault), and a last one once it has recovered.

What must hold (from the target's request log and the simulator's call log):

- every request either returned a 200 once, or raised a ``ProxyPoolError`` the test counts;
  nothing else escapes, nothing is lost;
- no request reached the target without a proxy;
- a page was served more than once only when a relay died after forwarding it (the client then
  saw the connection drop and retried elsewhere: a GET is idempotent, so it may be replayed);
- extraction calls stay within a budget computed from the pool's backoff (below).
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
import requests

from proxypool.adapters import NoProxyAvailable, ProxyBanned, wrap_session
from proxypool.api import ProviderClient
from proxypool.errors import BanStorm, ProxyPoolError
from proxypool.geo import Geo
from proxypool.models import Proxy
from proxypool.policy import Backoff
from proxypool.pool import ProxyPool
from proxypool.sim.provider import ProviderSimulator
from proxypool.sim.relays import RelayFleet
from proxypool.sim.target import Hit, TargetSite

MakeFleet = Callable[..., RelayFleet]
MakeSite = Callable[..., TargetSite]

THREADS = 8
PER_THREAD = 500
TOTAL = THREADS * PER_THREAD
RELAYS = 9
KILLED = ("relay-0", "relay-1", "relay-2")  # a third of them
BANNED = "relay-3"
LIFE_MINUTES = 10
SLOW_SECONDS = 3.0  # how long the extraction API takes while it is slow
CLIENT_RETRIES = 1  # GET retries of the client on HTTP 5xx / connection errors
# Backoff of the pool after a failed or empty extraction (half jitter: at least half of it).
API_BACKOFF = Backoff(base=0.5, cap=4.0, jitter=0.5)
FLAKY_WAVES = 24  # expiry waves while the API is flaky: each makes the pool extract again
# Completions between a wave and the next fault. Once a wave has expired every pooled proxy, a
# thread can finish only the request it already has a proxy for, or fail (at most TOTAL // 100
# failures, asserted); any further completion needs a proxy bought after the wave.
WAVE_GAP = THREADS + TOTAL // 100 + 12
# Paid extractions allowed beyond one per wave: a healthy relay's transient failures may push the
# live proxies below min_size between waves, and a top-up begun just before a wave is wasted.
EXTRA_PAID = 3


class SkewClock:
    """``time.monotonic`` plus an offset the test can bump: a TTL expiry wave on demand."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return time.monotonic() + self._offset

    def jump(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds


@dataclass
class Outcomes:
    """What the workers saw, per request path (thread-safe)."""

    ok: dict[str, int] = field(default_factory=dict)
    failed: dict[str, BaseException] = field(default_factory=dict)
    wrong: list[tuple[str, BaseException | int]] = field(default_factory=list)
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, path: str, result: BaseException | int) -> None:
        with self.lock:
            if isinstance(result, ProxyPoolError):
                self.failed[path] = result
            elif result == 200:
                self.ok[path] = self.ok.get(path, 0) + 1
            else:
                self.wrong.append((path, result))
            self.done += 1

    def progress(self) -> int:
        with self.lock:
            return self.done


@dataclass
class Timeline:
    """When each fault was injected: target-clock seconds and the simulator's wall clock."""

    killed_at: float = math.inf  # once the target was done with what the killed relays sent
    kill_settled: bool | None = None  # whether it was, within the wait (site.wait_done_with)
    ban_from: float = math.inf  # just before the ban was set
    ban_until: float = math.inf  # just after
    slow_from: datetime | None = None
    slow_until: datetime | None = None
    waves: int = 0
    wave_times: list[datetime] = field(default_factory=list)  # simulator clock, before each jump
    done_at_event: dict[str, int] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)


def relay_addresses(fleet: RelayFleet) -> Callable[..., Sequence[str]]:
    """The simulator's address source: every relay of the fleet, dead or alive, in a rotating
    order (a provider does not know which of its IPs died)."""
    turn = itertools.count()
    addresses = [relay.address for relay in fleet]

    def source(
        cc: str | None, state: str | None, city: str | None, num: int, life: int
    ) -> Sequence[str]:
        start = next(turn) % len(addresses)
        rotated = addresses[start:] + addresses[:start]
        return rotated[:num]

    return source


def failed_extraction_bound(backoff: Backoff, seconds: float, clock_jumps: int) -> int:
    """The most failed (or empty) extractions a pool can make in ``seconds``: after each one it
    waits at least ``(1 - jitter) * base`` seconds of its clock before the next (one extraction
    in flight at a time), except that a clock jump cuts one wait short."""
    shortest_wait = (1.0 - backoff.jitter) * backoff.base
    return math.floor(seconds / shortest_wait) + 1 + clock_jumps


def run_faults(
    outcomes: Outcomes,
    timeline: Timeline,
    fleet: RelayFleet,
    site: TargetSite,
    sim: ProviderSimulator,
    clock: SkewClock,
    stop: threading.Event,
) -> None:
    """Inject each fault once the given share of requests is done."""

    # This thread competes for the GIL with the 8 workers, so it may wake late. Events after a
    # wave therefore also wait for WAVE_GAP more completions than there were at the wave: those
    # need a proxy bought after it (see WAVE_GAP), whatever the lag, so each window between two
    # waves is sure to need its own extraction.
    floor = 0

    def at(share: float, name: str) -> bool:
        while outcomes.progress() < max(share * TOTAL, floor):
            if stop.wait(0.005):
                return False
        timeline.done_at_event[name] = outcomes.progress()
        return True

    def wave() -> None:
        nonlocal floor
        timeline.wave_times.append(datetime.now())  # the simulator's clock (datetime.now)
        clock.jump(LIFE_MINUTES * 60)  # the whole life: every pooled proxy expires at once
        timeline.waves += 1
        floor = outcomes.progress() + WAVE_GAP

    try:
        if not at(0.05, "kill"):
            return
        for name in KILLED:
            fleet.kill(name)
        # A request a relay forwarded just before its death may still wait for the GIL in one of
        # the target's threads, to be stamped later: killed_at comes once the target is done
        # with every connection of the killed relays. A relay still serving keeps them open:
        # the wait gives up, and its later hits fail the test.
        timeline.kill_settled = site.wait_done_with([fleet[name] for name in KILLED])
        timeline.killed_at = time.monotonic()
        if not at(0.10, "ban"):
            return
        timeline.ban_from = time.monotonic()
        site.ban(BANNED)
        timeline.ban_until = time.monotonic()
        if not at(0.15, "provider faults"):
            return
        sim.fail_rate = 0.3
        sim.garbage_rate = 0.2
        sim.empty_rate = 0.2
        timeline.slow_from = datetime.now()
        sim.set_delay(SLOW_SECONDS, path="ip/v3")
        wave()  # the first wave hits while the API is slow and flaky
        if not at(0.20, "fast again"):
            return
        sim.set_delay(0, path="ip/v3")  # keeps the run bounded; the API stays flaky
        timeline.slow_until = datetime.now()
        for step in range(FLAKY_WAVES):
            if not at(0.20 + 0.6 * step / FLAKY_WAVES, f"wave {step}"):
                return
            wave()
        if not at(0.85, "provider healthy"):
            return
        sim.fail_rate = sim.garbage_rate = sim.empty_rate = 0.0
        if not at(0.90, "last wave"):
            return
        wave()
    except BaseException as exc:  # surfaced by the test, never lost in this thread
        timeline.errors.append(exc)


def worker(session: requests.Session, site: TargetSite, index: int, outcomes: Outcomes) -> None:
    for n in range(index * PER_THREAD, (index + 1) * PER_THREAD):
        path = f"/page/{n}"
        result: BaseException | int
        try:
            response = session.get(site.url_for(path), timeout=10)
            result = response.status_code
            if result == 200 and f"page {n}" not in response.text:
                result = -1  # a 200 that is not the page asked for
        except Exception as exc:  # judged by the test: only ProxyPoolError is acceptable
            result = exc
        outcomes.record(path, result)


@pytest.mark.timeout(120)
def test_threaded_requests_survive_chaos(
    make_relay_fleet: MakeFleet, make_target_site: MakeSite, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxypool")
    fleet = make_relay_fleet(RELAYS)
    site = make_target_site(TOTAL)
    site.know_relays(fleet)
    clock = SkewClock()
    outcomes, timeline = Outcomes(), Timeline()
    stop = threading.Event()

    with ProviderSimulator(address_source=relay_addresses(fleet)) as sim:
        client = ProviderClient(
            sim.app_key,
            base_url=sim.base_url,
            timeout=10.0,  # longer than the slow answer
            retries=CLIENT_RETRIES,
            backoff=0.05,
        )
        pool = ProxyPool(
            client,
            life=LIFE_MINUTES,
            batch=RELAYS,
            min_size=4,  # below the 6 relays that stay healthy for other sites
            clock=clock,
            api_backoff=API_BACKOFF,
        )
        session = wrap_session(requests.Session(), pool, max_proxy_retries=3, pool_timeout=30.0)
        threads = [
            threading.Thread(target=worker, args=(session, site, i, outcomes), name=f"chaos-{i}")
            for i in range(THREADS)
        ]
        faults = threading.Thread(
            target=run_faults,
            args=(outcomes, timeline, fleet, site, sim, clock, stop),
            name="chaos-faults",
        )
        started = time.monotonic()
        faults.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(100)
        stop.set()
        faults.join(30)
        duration = time.monotonic() - started
        session.close()
        pool.close()
        client.close()
        calls = sim.extraction_calls()
        stats = pool.stats()

    assert not any(t.is_alive() for t in [*threads, faults]), "a thread hangs"
    assert timeline.errors == []
    # Faults are logged as warnings (failed extractions); nothing is an error or a traceback.
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    # Every fault landed while requests were still running.
    assert "last wave" in timeline.done_at_event, timeline.done_at_event
    assert all(done < TOTAL for done in timeline.done_at_event.values()), timeline.done_at_event
    assert timeline.waves == FLAKY_WAVES + 2

    # -- the client side: every request accounted for, failures only as ProxyPoolError --------
    assert outcomes.wrong == [], outcomes.wrong[:5]
    assert outcomes.done == TOTAL
    assert len(outcomes.ok) + len(outcomes.failed) == TOTAL
    assert all(count == 1 for count in outcomes.ok.values())
    assert not set(outcomes.ok) & set(outcomes.failed)
    # Faults are survivable: retries on other proxies and waiting out the refill absorb them.
    failure_kinds = collections.Counter(type(e).__name__ for e in outcomes.failed.values())
    assert len(outcomes.failed) <= TOTAL // 100, failure_kinds

    # -- the target's records ------------------------------------------------------------------
    hits = site.hits()
    assert site.direct_hits() == []
    assert {hit.relay for hit in hits} <= set(fleet.names)

    def died_in_flight(hit: Hit) -> bool:
        # Forwarded by a relay that was killed before the answer got back to the client.
        return hit.relay in KILLED and hit.at <= timeline.killed_at

    assert all(died_in_flight(h) for h in hits if h.relay in KILLED), (
        "a dead relay served",
        timeline.kill_settled,
    )
    assert all(h.relay == BANNED and h.at >= timeline.ban_from for h in hits if h.banned)
    assert all(h.banned for h in hits if h.relay == BANNED and h.at > timeline.ban_until)
    assert any(h.banned for h in hits), "the ban never showed"
    served_ok: dict[str, list[Hit]] = collections.defaultdict(list)
    for hit in hits:
        if hit.status == 200 and not hit.banned:
            served_ok[hit.path].append(hit)
    for path in outcomes.ok:
        assert served_ok[path], f"{path}: the client saw a 200 the target never served"
        replays = [h for h in served_ok[path] if not died_in_flight(h)]
        assert len(replays) <= 1, f"{path} served {len(replays)} times"
    for path in outcomes.failed:
        assert all(died_in_flight(h) for h in served_ok[path]), f"{path}: failed yet served"
    assert set(served_ok) <= set(outcomes.ok) | set(outcomes.failed)

    # -- the provider's records: every kind of fault happened, extraction within budget -------
    assert any(c.http_status == 500 for c in calls)
    assert any(c.code is None and c.http_status != 500 for c in calls), "no garbage answer"
    assert any(c.code == 200 and c.ips == 0 for c in calls), "no empty answer"
    assert timeline.slow_from is not None and timeline.slow_until is not None
    slow = timedelta(seconds=SLOW_SECONDS)
    assert any(
        timeline.slow_from + slow <= c.time <= timeline.slow_until + 2 * slow for c in calls
    ), "no extraction was answered slowly"
    # Budget. Each expiry wave empties the pool, so the pool must buy a batch after each wave
    # before the next one (the next wave waits for WAVE_GAP completions, which need it):
    # exactly one window per wave, and the start, holds a paid extraction, checked strictly.
    # In between, the relays that stay healthy (6) keep it above min_size (4), so it should buy
    # nothing else; EXTRA_PAID allows for a healthy relay's transient failures. Failed and empty
    # extractions are bounded by the pool's backoff (failed_extraction_bound); each attempt is at
    # most 1 + CLIENT_RETRIES HTTP calls.
    paid = [c for c in calls if c.ips > 0]
    needed = 1 + timeline.waves
    edges = [datetime.min, *timeline.wave_times, datetime.max]
    per_window = [
        sum(start < c.time <= end for c in paid) for start, end in itertools.pairwise(edges)
    ]
    assert len(per_window) == needed
    assert all(count >= 1 for count in per_window), (per_window, timeline.done_at_event)
    assert needed <= len(paid) <= needed + EXTRA_PAID, per_window
    failed = failed_extraction_bound(API_BACKOFF, duration, timeline.waves)
    budget = (len(paid) + failed) * (1 + CLIENT_RETRIES)
    assert len(calls) <= budget, (len(calls), budget)
    assert stats["extracted"] == RELAYS * len(paid)
    assert sim.ips_handed_out == RELAYS * len(paid)


class CyclingSource:
    """A ProxySource handing out the fleet's relays in turn, ``num`` per extraction."""

    def __init__(self, fleet: RelayFleet) -> None:
        self.addresses = [(relay.host, relay.port) for relay in fleet]
        self.calls = 0

    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        start = self.calls * num
        self.calls += 1
        return [
            Proxy(*self.addresses[i % len(self.addresses)], geo=geo)
            for i in range(start, start + num)
        ]


@pytest.mark.timeout(60)
def test_a_site_that_bans_every_proxy_fails_requests_naming_it(
    relay_fleet: RelayFleet, make_target_site: MakeSite
) -> None:
    """requests through wrap_session: a site answering 403 through every relay costs three
    one-proxy batches, then its requests raise NoProxyAvailable (a requests ConnectionError)
    caused by BanStorm, naming the site; another site is still served by the same proxies."""
    banning = make_target_site()
    for relay in relay_fleet:
        banning.ban(relay.name, 403)
    good = make_target_site(host="127.0.0.2")
    source = CyclingSource(relay_fleet)
    with ProxyPool(source, batch=1, min_size=0) as pool:
        session = wrap_session(requests.Session(), pool)
        caught: list[BaseException] = []
        for n in range(10):
            try:
                session.get(banning.url_for(f"/page/{n}"), timeout=10)
            except NoProxyAvailable as exc:
                caught.append(exc)
            except ProxyBanned:
                pass  # its proxies ran out before the storm began: banned everywhere it went
        assert source.calls == 3
        assert caught, "no request failed for want of a proxy"
        error = caught[-1]
        assert isinstance(error, requests.ConnectionError)
        assert isinstance(error.__cause__, BanStorm)
        assert error.__cause__.domain == "127.0.0.1"
        assert "ban storm on 127.0.0.1" in str(error)
        other = wrap_session(requests.Session(), pool)  # its own connections to the relays
        assert other.get(good.url_for("/page/1"), timeout=10).status_code == 200
        assert source.calls == 3
    assert not banning.direct_hits() and not good.direct_hits()
