"""Tests for proxypool.pool.ProxyPool.

The pool is fed by ``FakeSource``, a ProxySource double (the pool's own seam: it accepts any
object with ``extract(geo, *, num, life)``), and driven by ``FakeClock``: every TTL, cool-down and
backoff case advances the clock instead of sleeping. Sections:

- construction and argument checks;
- the contract suite, run once per rotation strategy (``strategy`` fixture);
- refill: single-flight, min_size, backoff, account errors, the extraction cap, duplicates;
- geography and the location catalog; the non-blocking path (try_get/needs_refill/refill);
- listeners, close(), stats, secrets;
- threads (barriers, 16 threads), a hypothesis state machine over random operation sequences,
  and one run on the real ProviderClient against pytest-httpserver;
- money and bounds (issue 12): dead IPs and over-delivery count against max_extracted, ban
  storms stop the buying for one site, get()/refill() timeouts bound the call.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from _helpers import FakeClock
from _provider import envelope, make_client
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule
from pytest_httpserver import HTTPServer
from test_shutdown import blocked_waiting, wait_for

from proxypool.errors import (
    AccountError,
    ApiConnectionError,
    ApiError,
    BanStorm,
    ConfigError,
    InvalidAppKey,
    InvalidGeo,
    PoolExhausted,
    ProviderError,
    RealNameRequired,
)
from proxypool.geo import Geo, LocationCatalog
from proxypool.models import CountryLocations, LocationItem, Proxy
from proxypool.policy import STRATEGIES, Backoff
from proxypool.pool import ProxyPool

# Deterministic backoffs (no jitter) so tests can step the clock to the exact boundary.
COOLDOWN = Backoff(base=5.0, cap=40.0, jitter=0.0)
API_BACKOFF = Backoff(base=1.0, cap=8.0, jitter=0.0)


def run_inline(job: Callable[[], None]) -> None:
    """A ``refill_runner`` that runs each top-up at once in the calling thread, so tests that
    count extractions need no threads (the default runner is a background thread)."""
    job()


class HeldRunner:
    """A ``refill_runner`` that runs jobs inline (like ``run_inline``) until ``hold()``, then
    queues them in ``jobs`` for the test to run (or not)."""

    def __init__(self) -> None:
        self.jobs: list[Callable[[], None]] = []
        self.held = False

    def hold(self) -> None:
        self.held = True

    def __call__(self, job: Callable[[], None]) -> None:
        if self.held:
            self.jobs.append(job)
        else:
            job()


class FakeSource:
    """A ProxySource double. Each ``extract()`` returns ``num`` new proxies (``10.0.x.y:8000``;
    with ``hosts=n`` it cycles over n addresses, so extractions repeat each other) unless an
    outcome is queued in ``outcomes`` (an exception to raise, or a list to return). Records every
    call and the thread that made it; ``gate`` makes it block until set."""

    def __init__(
        self,
        *,
        hosts: int | None = None,
        password: str | None = None,
        on_extract: Callable[[list[Proxy]], None] | None = None,
    ) -> None:
        self.calls: list[tuple[Geo | None, int, int]] = []
        self.threads: list[threading.Thread] = []
        self.outcomes: list[Exception | list[Proxy]] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.hosts = hosts
        self.password = password
        self.on_extract = on_extract
        self._next = 0
        self._lock = threading.Lock()

    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        with self._lock:
            self.calls.append((geo, num, life))
            self.threads.append(threading.current_thread())
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        if self.outcomes:
            outcome = self.outcomes.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        proxies = []
        for _ in range(num):
            i = self._next if self.hosts is None else self._next % self.hosts
            self._next += 1
            user = "user1" if self.password else None
            host = f"10.0.{i // 256}.{i % 256}"
            proxies.append(Proxy(host, 8000, geo=geo, username=user, password=self.password))
        if self.on_extract is not None:
            self.on_extract(proxies)
        return proxies


class CatalogSource(FakeSource):
    """A FakeSource that also has the provider's location calls (like ProviderClient); the pools
    built on one by ``make_pool`` are given a ``LocationCatalog`` over it (``catalog=``)."""

    def __init__(self) -> None:
        super().__init__()
        self.catalog_calls = 0

    def _countries(self, with_cities: bool) -> list[CountryLocations]:
        self.catalog_calls += 1
        places = {"California": ["LosAngeles", "SanDiego"], "Texas": ["Houston"]}
        items = tuple(
            LocationItem("US", state, city if with_cities else None)
            for state, cities in places.items()
            for city in (cities if with_cities else [None])
        )
        return [CountryLocations("US", "United States", "美国", "NA", items)]

    def list_state_catalog(self) -> list[CountryLocations]:
        return self._countries(False)

    def list_city_catalog(self) -> list[CountryLocations]:
        return self._countries(True)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


@pytest.fixture(params=sorted(STRATEGIES))
def strategy(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


MakePool = Callable[..., ProxyPool]


@pytest.fixture
def make_pool(source: FakeSource, clock: FakeClock, strategy: str) -> Iterator[MakePool]:
    """``make_pool(**overrides)``: a pool on ``source`` and ``clock`` with deterministic
    backoffs, the parametrized strategy and top-ups run inline (``run_inline``); closed at
    teardown."""
    pools: list[ProxyPool] = []

    def make(**kwargs: Any) -> ProxyPool:
        options: dict[str, Any] = {
            "clock": clock,
            "strategy": strategy,
            "cooldown": COOLDOWN,
            "api_backoff": API_BACKOFF,
            "rng": random.Random(1),
            "refill_runner": run_inline,
        }
        options.update(kwargs)
        client = options.pop("client", source)
        if isinstance(client, CatalogSource) and "catalog" not in options:
            options["catalog"] = LocationCatalog(client, timer=clock)
        pool = ProxyPool(client, **options)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def drain(pool: ProxyPool, n: int, **kwargs: Any) -> list[Proxy]:
    return [pool.get(timeout=0, **kwargs) for _ in range(n)]


def collect(pool: ProxyPool, n: int, **kwargs: Any) -> set[Proxy]:
    """The ``n`` distinct proxies the pool serves (whatever the strategy's order)."""
    seen: set[Proxy] = set()
    for _ in range(50 * n):
        seen.add(pool.get(timeout=0, **kwargs))
        if len(seen) == n:
            return seen
    raise AssertionError(f"only {len(seen)} of {n} proxies were ever served")


# -- construction -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"life": 0}, "life"),
        ({"life": True}, "life"),
        ({"life": "10"}, "life"),
        ({"life": 7200 + 1}, "life"),
        ({"batch": 0}, "batch"),
        ({"batch": 501}, "batch"),
        ({"min_size": -1}, "min_size"),
        ({"max_failures": 0}, "max_failures"),
        ({"expiry_margin": -1.0}, "expiry_margin"),
        ({"expiry_margin": float("nan")}, "expiry_margin"),
        ({"life": 1, "expiry_margin": 60.0}, "expiry_margin"),
        ({"strategy": "fastest"}, "strategy"),
        ({"strategy": 3}, "strategy"),
        ({"max_extracted": 0}, "max_extracted"),
        ({"clock": 5}, "clock"),
        ({"catalog": object()}, "catalog"),
        ({"rng": 42}, "rng"),
        ({"cooldown": 5}, "cooldown"),
        ({"refill_runner": "thread"}, "refill_runner"),
        ({"ban_storm_batches": 0}, "ban_storm_batches"),
        ({"ban_storm_batches": 2.5}, "ban_storm_batches"),
        ({"ban_storm_cooldown": 0}, "ban_storm_cooldown"),
        ({"ban_storm_cooldown": float("nan")}, "ban_storm_cooldown"),
        ({"ban_storm_cooldown": "600"}, "ban_storm_cooldown"),
        ({"geo": "USA"}, "country"),
        ({"geo": "US/a/b/c"}, "geo"),
        ({"client": object()}, "client"),
    ],
)
def test_bad_arguments_raise_config_error_naming_the_field(
    source: FakeSource, kwargs: dict[str, Any], field: str
) -> None:
    client = kwargs.pop("client", source)
    with pytest.raises(ConfigError) as info:
        ProxyPool(client, **kwargs)
    assert info.value.field == field
    assert source.calls == []


def test_construction_fetches_nothing(clock: FakeClock) -> None:
    client = CatalogSource()
    pool = ProxyPool(client, geo="us/california", clock=clock)
    assert client.calls == [] and client.catalog_calls == 0
    assert pool.geo == Geo("US", "california")  # as given until validated


# -- contract suite: every strategy -----------------------------------------------------------


def test_first_get_extracts_one_batch_with_the_pools_settings(
    make_pool: MakePool, source: FakeSource
) -> None:
    pool = make_pool(batch=10, life=7)
    proxy = pool.get(timeout=0)
    assert source.calls == [(None, 10, 7)]
    assert proxy.host.startswith("10.0.0.")
    assert proxy.geo == Geo()


def test_every_proxy_gets_served(make_pool: MakePool) -> None:
    pool = make_pool(batch=8, min_size=0)
    served = Counter(drain(pool, 400))
    assert len(served) == 8
    assert min(served.values()) >= 20  # spread, not stuck on a few


def test_no_proxy_is_handed_out_within_the_expiry_margin(
    make_pool: MakePool, source: FakeSource, clock: FakeClock
) -> None:
    pool = make_pool(batch=5, min_size=0, life=1, expiry_margin=15.0)
    left: list[Proxy] = []
    pool.add_listener(left.append)
    first = collect(pool, 5)
    clock.advance(60 - 15 - 0.001)  # just before the margin: still served
    assert set(drain(pool, 60)) == first
    assert len(source.calls) == 1
    clock.advance(0.001)  # at the margin: never again
    later = set(drain(pool, 10))
    assert later.isdisjoint(first)
    assert len(source.calls) == 2
    assert set(left) == first
    assert pool.stats()["expired"] == 5


def test_a_failure_cools_the_proxy_down(make_pool: MakePool, clock: FakeClock) -> None:
    pool = make_pool(batch=3, min_size=0)
    bad = pool.get(timeout=0)
    pool.report_failure(bad)
    assert pool.stats()["cooling"] == {"*": 1}
    assert bad not in drain(pool, 30)
    clock.advance(COOLDOWN.ceiling(0) - 0.01)
    assert bad not in drain(pool, 30)
    clock.advance(0.01)
    assert bad in drain(pool, 30)
    assert pool.stats()["cooling"] == {"*": 0}


def test_cooldown_grows_exponentially(make_pool: MakePool, clock: FakeClock) -> None:
    pool = make_pool(batch=3, min_size=0, max_failures=5)
    bad = pool.get(timeout=0)
    for attempt in range(3):
        pool.report_failure(bad)
        wait = COOLDOWN.ceiling(attempt)  # 5, 10, 20 s
        clock.advance(wait - 0.01)
        assert bad not in drain(pool, 20)
        clock.advance(0.01)
        assert bad in drain(pool, 20)


def test_full_jitter_cooldown_stays_within_its_ceiling(
    make_pool: MakePool, clock: FakeClock
) -> None:
    pool = make_pool(batch=3, min_size=0, cooldown=Backoff(base=10.0, cap=10.0, jitter=1.0))
    bad = pool.get(timeout=0)
    pool.report_failure(bad)
    clock.advance(10.0)
    assert bad in drain(pool, 20)


def test_success_resets_failures_and_ends_the_cooldown(
    make_pool: MakePool, clock: FakeClock
) -> None:
    pool = make_pool(batch=3, min_size=0, max_failures=3)
    proxy = pool.get(timeout=0)
    pool.report_failure(proxy)
    pool.report_failure(proxy)
    pool.report_success(proxy)
    assert proxy in drain(pool, 20)  # back at once, without waiting out the cool-down
    pool.report_failure(proxy)
    pool.report_failure(proxy)  # 2 in a row after the reset: not evicted at max_failures=3
    clock.advance(60)
    assert proxy in drain(pool, 20)
    assert pool.stats()["evictions"] == 0


def test_max_failures_evicts(make_pool: MakePool, clock: FakeClock) -> None:
    pool = make_pool(batch=4, min_size=0, max_failures=3)
    left: list[Proxy] = []
    pool.add_listener(left.append)
    proxy = pool.get(timeout=0)
    for _ in range(3):
        pool.report_failure(proxy)
    assert left == [proxy]
    clock.advance(300)
    assert proxy not in drain(pool, 40)
    stats = pool.stats()
    assert stats["evictions"] == 1 and stats["failures"] == 3
    assert stats["live"] == {"*": 3}
    pool.report_failure(proxy)  # reports about departed proxies are ignored
    assert pool.stats()["failures"] == 3


def test_a_ban_holds_for_its_domain_only(make_pool: MakePool) -> None:
    pool = make_pool(batch=4, min_size=0)
    proxy = pool.get(timeout=0)
    pool.report_failure(proxy, domain="Shop.Example", banned=True)
    pool.report_failure(proxy, domain="shop.example", banned=True)
    assert proxy not in drain(pool, 40, domain="shop.example")
    assert proxy not in drain(pool, 40, domain="SHOP.example")
    assert proxy in drain(pool, 40, domain="other.example")
    assert proxy in drain(pool, 40)
    stats = pool.stats()
    assert stats["bans"] == 1 and stats["failures"] == 0
    assert stats["live"] == {"*": 4}


def test_has_bans_turns_true_with_the_first_ban_only(make_pool: MakePool) -> None:
    pool = make_pool(batch=4, min_size=0)
    proxy = pool.get(timeout=0)
    assert not pool.has_bans
    pool.report_failure(proxy, domain="shop.example")  # a failure, not a ban
    pool.report_success(proxy)
    assert not pool.has_bans
    pool.report_failure(pool.get(timeout=0), domain="shop.example", banned=True)
    assert pool.has_bans


def test_a_ban_needs_a_domain(make_pool: MakePool) -> None:
    pool = make_pool(batch=2)
    proxy = pool.get(timeout=0)
    with pytest.raises(ConfigError) as info:
        pool.report_failure(proxy, banned=True)
    assert info.value.field == "domain"


def test_sessions_stick_until_the_proxy_fails_then_move_and_stick_again(
    make_pool: MakePool,
) -> None:
    pool = make_pool(batch=6, min_size=0)
    first = pool.get(session="s", timeout=0)
    for _ in range(20):
        pool.get(timeout=0)  # other traffic rotates around it
        assert pool.get(session="s", timeout=0) == first
    pool.report_failure(first)
    second = pool.get(session="s", timeout=0)
    assert second != first
    assert drain(pool, 10, session="s") == [second] * 10


def test_sessions_move_off_a_proxy_banned_for_the_domain(make_pool: MakePool) -> None:
    pool = make_pool(batch=6, min_size=0)
    first = pool.get(session="s", domain="a.example", timeout=0)
    pool.report_failure(first, domain="a.example", banned=True)
    second = pool.get(session="s", domain="a.example", timeout=0)
    assert second != first
    assert pool.get(session="s", timeout=0) == second
    assert pool.get(session="s", domain="b.example", timeout=0) == second


def test_sessions_move_when_the_proxy_expires_or_is_evicted(
    make_pool: MakePool, clock: FakeClock
) -> None:
    pool = make_pool(batch=4, min_size=0, life=1, max_failures=1)
    first = pool.get(session="s", timeout=0)
    clock.advance(45)
    second = pool.get(session="s", timeout=0)
    assert second != first
    pool.report_failure(second)  # max_failures=1: evicted
    third = pool.get(session="s", timeout=0)
    assert third not in (first, second)
    assert pool.get(session="s", timeout=0) == third


def test_sessions_are_independent(make_pool: MakePool) -> None:
    pool = make_pool(batch=10, min_size=0, strategy="round_robin")
    a = pool.get(session="a", timeout=0)
    b = pool.get(session="b", timeout=0)
    assert a != b
    assert [pool.get(session=k, timeout=0) for k in "abab"] == [a, b, a, b]


# -- refill -----------------------------------------------------------------------------------


def test_refill_starts_below_min_size_not_only_at_zero(
    make_pool: MakePool, source: FakeSource
) -> None:
    pool = make_pool(batch=10, min_size=5)
    proxies = collect(pool, 10)
    assert len(source.calls) == 1
    for proxy in list(proxies)[:5]:
        pool.report_failure(proxy)
    assert pool.stats()["live"] == {"*": 5}
    pool.get(timeout=0)
    assert len(source.calls) == 1  # 5 live: not below min_size
    pool.report_failure(list(proxies)[5])
    pool.get(timeout=0)  # 4 live < 5: refill though proxies are left
    assert len(source.calls) == 2
    assert pool.stats()["live"] == {"*": 14}


def test_a_top_up_is_handed_to_the_runner_not_run_by_get(
    make_pool: MakePool, source: FakeSource
) -> None:
    runner = HeldRunner()
    jobs = runner.jobs
    pool = make_pool(batch=5, min_size=5, refill_runner=runner)
    proxies = collect(pool, 5)  # nothing usable at first: get() started an extraction (inline)
    assert len(source.calls) == 1 and jobs == []
    runner.hold()
    pool.report_failure(next(iter(proxies)))  # 4 live < min_size
    assert {pool.get(timeout=0) for _ in range(3)} <= proxies
    assert len(jobs) == 1  # one top-up (single flight), handed over...
    assert len(source.calls) == 1  # ...and not run by get()
    assert not pool.needs_refill()  # in flight until the runner runs it
    jobs.pop()()
    assert len(source.calls) == 2
    stats = pool.stats()
    assert stats["live"] == {"*": 9} and stats["refills"] == 2 and stats["served"] == 8


def test_with_nothing_usable_get_waits_for_the_top_up_in_flight(
    make_pool: MakePool, source: FakeSource
) -> None:
    runner = HeldRunner()
    jobs = runner.jobs
    pool = make_pool(batch=3, min_size=3, refill_runner=runner)
    proxies = collect(pool, 3)
    runner.hold()
    first, *others = proxies
    pool.report_failure(first)
    pool.get(timeout=0)  # 2 live < min_size: the top-up is in flight (queued in jobs)
    for proxy in others:
        pool.report_failure(proxy)  # now nothing is usable
    with pytest.raises(PoolExhausted, match="still in flight"):
        pool.get(timeout=0)  # waits for that extraction instead of starting a second one
    assert len(source.calls) == 1
    jobs.pop()()
    assert pool.get(timeout=0) not in proxies
    assert len(source.calls) == 2 and jobs == []


@pytest.mark.timeout(30)
def test_get_with_live_proxies_below_min_size_does_not_wait_for_a_slow_refill(
    make_pool: MakePool, source: FakeSource
) -> None:
    # The default runner (a thread) and a provider that answers only when the test says so.
    pool = make_pool(batch=5, min_size=5, refill_runner=None)
    pool.get(timeout=10)  # nothing usable: get() waits for the extraction it started...
    assert source.threads[0].name == "proxypool-refill"  # ...in the runner's thread
    proxies = collect(pool, 5)
    bad = next(iter(proxies))
    pool.report_failure(bad)  # 4 live < min_size
    source.gate = threading.Event()
    source.entered.clear()

    served = [pool.get(timeout=0) for _ in range(3)]  # while the refill is held
    assert set(served) <= proxies - {bad}
    assert source.entered.wait(5)
    refiller = source.threads[-1]
    assert refiller is not threading.current_thread()
    assert refiller.name == "proxypool-refill" and refiller.daemon
    assert len(source.calls) == 2  # one top-up for the three calls

    # Now nothing is usable: a get() waits for the top-up in flight and is served from it.
    for proxy in proxies - {bad}:
        pool.report_failure(proxy)
    got: list[Proxy] = []
    waiter = threading.Thread(target=lambda: got.append(pool.get(timeout=30)))
    waiter.start()
    wait_for(lambda: blocked_waiting(waiter), "the get() waits for the refill")
    source.gate.set()
    waiter.join(10)
    refiller.join(10)
    assert not waiter.is_alive() and not refiller.is_alive()  # the runner thread ends
    assert len(got) == 1 and got[0] not in proxies
    assert len(source.calls) == 2
    assert pool.stats()["live"] == {"*": 5}


def test_a_failing_runner_is_a_failed_refill_and_get_still_serves(
    make_pool: MakePool, source: FakeSource, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    working = True

    def broken(job: Callable[[], None]) -> None:
        if working:
            return job()
        raise RuntimeError("can't start new thread")

    pool = make_pool(batch=5, min_size=5, refill_runner=broken)
    proxies = collect(pool, 5)
    working = False
    pool.report_failure(next(iter(proxies)))
    with caplog.at_level(logging.WARNING, logger="proxypool.pool"):
        assert pool.get(timeout=0) in proxies
    assert "can't start new thread" in caplog.text
    assert pool.stats()["api_errors"] == 1
    assert not pool.needs_refill()  # backing off, as after a failed extraction
    clock.advance(API_BACKOFF.ceiling(0))
    assert pool.needs_refill()  # not stuck "in flight"
    assert pool.refill() == 5  # refill() runs in its caller, never in the runner
    assert len(source.calls) == 2


def test_a_top_up_that_starts_after_close_buys_nothing(
    make_pool: MakePool, source: FakeSource
) -> None:
    runner = HeldRunner()
    jobs = runner.jobs
    pool = make_pool(batch=5, min_size=5, refill_runner=runner)
    proxies = collect(pool, 5)
    runner.hold()
    pool.report_failure(next(iter(proxies)))
    pool.get(timeout=0)
    pool.close()
    jobs.pop()()
    assert len(source.calls) == 1
    stats = pool.stats()
    assert stats["refills"] == 1 and stats["api_errors"] == 0


def test_provider_errors_back_off_exponentially_and_are_chained(
    make_pool: MakePool, source: FakeSource, clock: FakeClock
) -> None:
    pool = make_pool(batch=5)
    down = ApiConnectionError("provider unreachable")
    source.outcomes += [down, ApiError("busy", code=500)]
    with pytest.raises(PoolExhausted) as info:
        pool.get(timeout=0)
    assert info.value.__cause__ is down
    assert "provider unreachable" in str(info.value)
    with pytest.raises(PoolExhausted):
        pool.get(timeout=0)
    assert len(source.calls) == 1  # backing off: no second call yet
    clock.advance(API_BACKOFF.ceiling(0))
    with pytest.raises(PoolExhausted) as info:
        pool.get(timeout=0)
    assert isinstance(info.value.__cause__, ApiError)
    assert len(source.calls) == 2
    clock.advance(API_BACKOFF.ceiling(1) - 0.01)  # the second wait is twice as long
    with pytest.raises(PoolExhausted):
        pool.get(timeout=0)
    assert len(source.calls) == 2
    clock.advance(0.01)
    assert pool.get(timeout=0) is not None
    assert len(source.calls) == 3
    assert pool.stats()["api_errors"] == 2


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "error", [InvalidAppKey("invalid app_key", code=3), RealNameRequired("verify", code=156)]
)
def test_account_errors_stop_refilling_and_surface_at_once(
    make_pool: MakePool, source: FakeSource, error: AccountError
) -> None:
    pool = make_pool(batch=5)
    source.outcomes.append(error)
    with pytest.raises(AccountError) as info:
        pool.get(timeout=30)  # raised now, not after the timeout
    assert info.value is error
    for call in (pool.get, pool.try_get, pool.refill):
        with pytest.raises(type(error)):
            call()
    assert not pool.needs_refill()
    assert len(source.calls) == 1


def test_an_empty_answer_backs_off_like_an_error(
    make_pool: MakePool, source: FakeSource, clock: FakeClock
) -> None:
    pool = make_pool(batch=5)
    source.outcomes.append([])
    with pytest.raises(PoolExhausted) as info:
        pool.get(timeout=0)
    assert isinstance(info.value.__cause__, ProviderError)
    assert "no new proxies" in str(info.value.__cause__)
    pool.try_get()
    assert not pool.needs_refill()
    clock.advance(API_BACKOFF.ceiling(0))
    assert pool.needs_refill()
    assert pool.get(timeout=0) is not None


@pytest.mark.timeout(10)
def test_max_extracted_caps_what_the_pool_buys(
    make_pool: MakePool, source: FakeSource, clock: FakeClock
) -> None:
    pool = make_pool(batch=10, min_size=0, life=1, max_extracted=25)
    for _ in range(3):
        pool.get(timeout=0)
        clock.advance(45)  # the batch expires
    assert [num for _, num, _ in source.calls] == [10, 10, 5]
    with pytest.raises(PoolExhausted) as info:
        pool.get(timeout=30)  # hopeless: raised at once, not after 30 s
    assert "max_extracted=25 reached" in str(info.value)
    with pytest.raises(PoolExhausted, match="max_extracted=25"):
        pool.refill()
    assert not pool.needs_refill()
    assert pool.stats()["extracted"] == 25


def test_duplicates_extend_the_entry_and_keep_its_health(
    make_pool: MakePool, clock: FakeClock
) -> None:
    src = FakeSource(hosts=4)
    pool = make_pool(client=src, batch=4, min_size=0, life=1)
    proxies = collect(pool, 4)
    banned = next(iter(proxies))
    pool.report_failure(banned, domain="a.example", banned=True)
    clock.advance(30)
    assert pool.refill() == 0  # the same four again: nothing new...
    clock.advance(20)  # ...but their life is extended: 50 s after the first batch
    assert collect(pool, 4) == proxies
    assert banned not in drain(pool, 20, domain="a.example")
    stats = pool.stats()
    assert stats["duplicates"] == 4 and stats["extracted"] == 8
    assert stats["live"] == {"*": 4}
    clock.advance(25)  # 45 s after the second batch: gone
    assert pool.stats()["live"] == {"*": 0}
    assert pool.stats()["expired"] == 4


def test_a_departed_proxy_extracted_again_starts_fresh(
    make_pool: MakePool, clock: FakeClock
) -> None:
    src = FakeSource(hosts=2)
    pool = make_pool(client=src, batch=2, min_size=0, max_failures=1)
    first = pool.get(timeout=0)
    pool.report_failure(first)  # evicted
    other = pool.get(timeout=0)
    pool.report_failure(other)
    assert pool.refill() == 2
    assert collect(pool, 2) == {first, other}


# -- geography --------------------------------------------------------------------------------


def test_each_geography_has_its_own_sub_pool(make_pool: MakePool, source: FakeSource) -> None:
    pool = make_pool(batch=3, min_size=0)
    us = pool.get("US/California", timeout=0)
    assert source.calls == [(Geo("US", "California"), 3, 10)]
    assert us.geo == Geo("US", "California")
    # The same place in other forms: the same sub-pool, no new extraction.
    assert pool.get({"country": "us", "state": "California"}, timeout=0).geo == us.geo
    assert pool.get(Geo("US", "California"), timeout=0).geo == us.geo
    anywhere = pool.get(timeout=0)
    assert anywhere.geo == Geo()
    assert len(source.calls) == 2
    assert pool.stats()["live"] == {"US/California": 3, "*": 3}


def test_geo_objects_used_in_turn_each_get_their_own_sub_pool(make_pool: MakePool) -> None:
    # The pool remembers the last Geo object it looked up; switching between two (and equal
    # copies of them, and the default) must never serve one geography's proxy for another.
    pool = make_pool(batch=2, min_size=0)
    us, texas = Geo("US"), Geo("US", "Texas")
    for geo in [us, texas, us, us, Geo("US"), texas, None, Geo("US", "Texas"), us, None, texas]:
        assert pool.get(geo, timeout=0).geo == (geo or Geo())
        taken = pool.try_get(geo)
        assert taken is not None and taken.geo == (geo or Geo())
    assert pool.stats()["live"] == {"US": 2, "US/Texas": 2, "*": 2}


def test_every_pooled_proxy_is_tagged_with_its_sub_pools_geography(
    make_pool: MakePool, source: FakeSource
) -> None:
    # One batch, tagged every way a source may tag it: no tag, the same place in equal objects,
    # another place. Each comes out of the US sub-pool tagged with the pool's own Geo.
    us, equal, texas = Geo("US"), Geo("US"), Geo("US", "Texas")
    tags = [None, us, equal, texas, equal, None]
    source.outcomes.append([Proxy(f"10.9.0.{n}", 8000, geo=tag) for n, tag in enumerate(tags)])
    pool = make_pool(batch=len(tags), min_size=0)
    served = collect(pool, len(tags), geo="US")
    assert {p.host for p in served} == {f"10.9.0.{n}" for n in range(len(tags))}
    assert all(p.geo == us for p in served)
    assert pool.stats()["live"] == {"US": len(tags)}


def test_geography_is_validated_before_the_first_extraction(
    make_pool: MakePool, clock: FakeClock
) -> None:
    client = CatalogSource()
    pool = make_pool(client=client, geo="us/california", batch=2)
    proxy = pool.get(timeout=0)
    assert client.calls == [(Geo("US", "California"), 2, 10)]
    assert proxy.geo == Geo("US", "California")
    assert pool.geo == Geo("US", "California")
    with pytest.raises(InvalidGeo) as info:
        pool.get("US/Califronia")
    assert info.value.suggestions == ("California",)
    with pytest.raises(InvalidGeo):
        pool.refill("US/Texas/Dallas")
    assert len(client.calls) == 1  # nothing was bought for the bad ones
    assert pool.resolve_geo("us/texas/houston") == Geo("US", "Texas", "Houston")
    assert len(client.calls) == 1
    assert client.catalog_calls == 2  # the state and the city list, once each


def raiser(exc: Exception) -> Callable[[], list[CountryLocations]]:
    def call() -> list[CountryLocations]:
        raise exc

    return call


def test_location_errors_surface_before_any_extraction(
    make_pool: MakePool, clock: FakeClock
) -> None:
    client = CatalogSource()
    pool = make_pool(client=client, batch=2)
    down = ApiConnectionError("provider unreachable")
    client.list_state_catalog = raiser(down)  # type: ignore[method-assign]
    with pytest.raises(PoolExhausted) as info:
        pool.get("US/Texas", timeout=0)
    assert info.value.__cause__ is down
    with pytest.raises(ApiConnectionError):
        pool.refill("US/Texas")
    refused = InvalidAppKey("invalid app_key", code=3)
    client.list_state_catalog = raiser(refused)  # type: ignore[method-assign]
    clock.advance(1.0)  # past the catalog's retry delay: it asks the provider again
    with pytest.raises(InvalidAppKey):
        pool.get("US/Texas", timeout=30)
    with pytest.raises(InvalidAppKey):
        pool.get(timeout=0)  # the account is unusable: the whole pool stops
    assert client.calls == []
    assert pool.stats()["api_errors"] == 3


def test_an_explicit_catalog_wins(make_pool: MakePool, source: FakeSource) -> None:
    class Upper:
        def validate(self, geo: Geo) -> Geo:
            return Geo(geo.country, geo.state.upper() if geo.state else None)

    pool = make_pool(catalog=Upper(), batch=2)
    assert pool.get("US/texas", timeout=0).geo == Geo("US", "TEXAS")
    assert source.calls[0][0] == Geo("US", "TEXAS")


# -- the non-blocking path --------------------------------------------------------------------


def test_try_get_never_extracts(make_pool: MakePool, source: FakeSource) -> None:
    pool = make_pool(batch=4, min_size=2)
    assert pool.try_get() is None
    assert pool.needs_refill()
    assert source.calls == []
    assert pool.refill() == 4
    assert not pool.needs_refill()
    assert pool.try_get() is not None
    assert len(source.calls) == 1


def test_try_get_for_a_new_geography_waits_for_refill_to_validate_it(
    make_pool: MakePool,
) -> None:
    client = CatalogSource()
    pool = make_pool(client=client, batch=2)
    assert pool.try_get("us/texas") is None
    assert client.catalog_calls == 0  # no I/O in try_get
    assert pool.needs_refill("us/texas")
    assert pool.refill("us/texas") == 2
    proxy = pool.try_get("us/texas", domain="a.example", session="k")
    assert proxy is not None and proxy.geo == Geo("US", "Texas")
    with pytest.raises(ConfigError):
        pool.try_get("United States")


def test_refill_reports_errors_and_respects_the_backoff(
    make_pool: MakePool, source: FakeSource, clock: FakeClock
) -> None:
    pool = make_pool(batch=3)
    source.outcomes.append(ApiConnectionError("down"))
    with pytest.raises(ApiConnectionError):
        pool.refill()
    assert not pool.needs_refill()
    assert pool.refill(wait=False) == 0
    assert len(source.calls) == 1
    clock.advance(API_BACKOFF.ceiling(0))
    assert pool.refill(wait=False) == 3


@pytest.mark.timeout(10)
def test_refill_waits_out_the_backoff_when_asked_to() -> None:
    # A real clock: refill() sleeps on the pool's condition until the backoff ends.
    src = FakeSource()
    src.outcomes.append(ApiConnectionError("down"))
    pool = ProxyPool(src, batch=2, api_backoff=Backoff(base=0.05, cap=0.05, jitter=0.0))
    with pytest.raises(ApiConnectionError):
        pool.refill()
    assert pool.refill() == 2
    assert len(src.calls) == 2


@pytest.mark.timeout(10)
def test_refill_is_single_flight(make_pool: MakePool, source: FakeSource) -> None:
    pool = make_pool(batch=5)
    source.gate = threading.Event()
    results: list[int] = []
    first = threading.Thread(target=lambda: results.append(pool.refill()))
    first.start()
    assert source.entered.wait(5)
    second = threading.Thread(target=lambda: results.append(pool.refill()))
    second.start()
    assert not pool.needs_refill()  # one is in flight
    assert pool.refill(wait=False) == 0
    source.gate.set()
    first.join(5)
    second.join(5)
    assert results == [5, 5]
    assert len(source.calls) == 1


# -- listeners, close, stats, secrets ---------------------------------------------------------


@pytest.mark.timeout(10)
def test_listeners_run_outside_the_lock(make_pool: MakePool, clock: FakeClock) -> None:
    pool = make_pool(batch=3, min_size=0, life=1, max_failures=1)
    seen: list[tuple[Proxy, int]] = []
    # A listener that calls back into the pool would deadlock if it ran under the lock.
    pool.add_listener(lambda p: seen.append((p, pool.stats()["evictions"])))
    proxy = pool.get(timeout=0)
    pool.report_failure(proxy)
    assert seen == [(proxy, 1)]
    clock.advance(45)
    pool.try_get()
    assert len(seen) == 3


@pytest.mark.timeout(10)
def test_log_records_are_emitted_outside_the_lock(
    make_pool: MakePool, source: FakeSource, clock: FakeClock
) -> None:
    pool = make_pool(batch=3, min_size=0, life=1, max_failures=1)
    seen: list[tuple[str, int]] = []

    class CallsBack(logging.Handler):
        """A handler that calls back into the pool: it would deadlock under the pool lock."""

        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.getMessage(), pool.stats()["bans"]))

    logger = logging.getLogger("proxypool.pool")
    handler, level = CallsBack(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        first, second = drain(pool, 2)
        pool.report_failure(first, domain="a.example", banned=True)
        pool.report_failure(second)  # max_failures=1: evicted
        source.on_extract = lambda _: clock.advance(60)  # outlives the batch's usable life
        assert pool.refill() == 0
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    messages = [message for message, _ in seen]
    assert f"proxy {first} banned for a.example" in messages
    assert f"proxy {second} evicted after 1 failures" in messages
    assert any("batch dropped" in message for message in messages)


def test_a_failing_listener_is_logged_and_the_others_still_run(
    make_pool: MakePool, caplog: pytest.LogCaptureFixture
) -> None:
    pool = make_pool(batch=2, max_failures=1)
    seen: list[Proxy] = []

    def broken(proxy: Proxy) -> None:
        raise RuntimeError("listener bug")

    pool.add_listener(broken)
    pool.add_listener(seen.append)
    proxy = pool.get(timeout=0)
    with caplog.at_level(logging.WARNING, logger="proxypool.pool"):
        pool.report_failure(proxy)
    assert seen == [proxy]
    assert "listener" in caplog.text and str(proxy) in caplog.text
    pool.remove_listener(seen.append)
    pool.report_failure(pool.get(timeout=0))
    assert seen == [proxy]


@pytest.mark.timeout(10)
def test_close_wakes_waiters_and_empties_the_pool(make_pool: MakePool, source: FakeSource) -> None:
    pool = make_pool(batch=3)
    source.gate = threading.Event()
    errors: list[BaseException] = []

    def get() -> None:
        try:
            pool.get(timeout=30)
        except PoolExhausted as exc:
            errors.append(exc)

    refiller = threading.Thread(target=get)
    refiller.start()
    assert source.entered.wait(5)
    waiter = threading.Thread(target=get)
    waiter.start()
    pool.close()
    waiter.join(5)
    assert not waiter.is_alive()
    source.gate.set()  # the extraction in flight ends after close: its proxies are not kept
    refiller.join(5)
    assert len(errors) == 2 and all("closed" in str(e) for e in errors)
    assert pool.stats()["live"] == {"*": 0}
    with pytest.raises(PoolExhausted):
        pool.try_get()
    pool.close()  # idempotent


def test_close_announces_every_pooled_proxy(make_pool: MakePool) -> None:
    pool = make_pool(batch=4, min_size=0)
    left: list[Proxy] = []
    pool.add_listener(left.append)
    proxies = collect(pool, 4)
    pool.report_failure(next(iter(proxies)))  # a cooling one leaves too
    with pool:
        pass
    assert set(left) == proxies and pool.closed


def test_reports_find_an_equal_proxy_that_is_not_the_same_object(make_pool: MakePool) -> None:
    pool = make_pool(batch=3, min_size=0, max_failures=1)
    proxy = pool.get(timeout=0)
    pool.report_failure(Proxy(proxy.host, proxy.port))  # rebuilt by hand, without geo
    assert pool.stats()["evictions"] == 1
    pool.report_success(Proxy("192.0.2.1", 1))  # unknown: ignored
    assert pool.stats()["successes"] == 0


def test_stats_count_what_happened(make_pool: MakePool, clock: FakeClock) -> None:
    pool = make_pool(batch=5, min_size=0, life=1, max_failures=2)
    proxies = drain(pool, 5)
    pool.report_success(proxies[0])
    pool.report_failure(proxies[1])
    pool.report_failure(proxies[2])
    pool.report_failure(proxies[2])
    pool.report_failure(proxies[3], domain="x.example", banned=True)
    stats = pool.stats()
    assert stats == {
        "served": 5,
        "extracted": 5,
        "minted": 0,
        "duplicates": 0,
        "refills": 1,
        "api_errors": 0,
        "successes": 1,
        "failures": 3,
        "bans": 1,
        "evictions": 1,
        "expired": 0,
        "ban_storms": 0,
        "received": 0,
        "store_errors": 0,
        "live": {"*": 3},
        "cooling": {"*": 1},
    }
    clock.advance(45)
    assert pool.stats()["expired"] == 4
    assert "ProxyPool" in repr(pool) and "0 live" in repr(pool)


def test_no_secret_in_logs_stats_reprs_or_errors(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "pw9SECRETxyz"
    src = FakeSource(password=secret)
    pool = ProxyPool(
        src,
        clock=clock,
        batch=3,
        life=1,
        max_failures=2,
        cooldown=COOLDOWN,
        refill_runner=run_inline,
    )
    with caplog.at_level(logging.DEBUG, logger="proxypool"):
        proxies = drain(pool, 3)
        pool.report_failure(proxies[0], domain="a.example", banned=True)
        pool.report_failure(proxies[1])
        pool.report_failure(proxies[1])
        clock.advance(45)
        src.outcomes.append(ApiConnectionError("down"))
        with pytest.raises(PoolExhausted) as info:
            pool.get(timeout=0)
    assert proxies[0].url.count(secret) == 1  # the proxy itself does carry it
    texts = [caplog.text, repr(pool), str(pool.stats()), str(info.value), repr(proxies)]
    assert all(secret not in text for text in texts)
    assert "10.0.0." in caplog.text  # proxies are logged, as host:port


# -- threads ----------------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_16_threads_on_an_empty_pool_cause_one_extraction(
    make_pool: MakePool, source: FakeSource
) -> None:
    pool = make_pool(batch=20, min_size=5)
    source.gate = threading.Event()
    barrier = threading.Barrier(17)
    got: list[Proxy] = []

    def worker() -> None:
        barrier.wait()
        got.append(pool.get(timeout=30))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    barrier.wait()
    assert source.entered.wait(5)
    # Hold the extraction until the other 15 have queued up behind it.
    wait_for(lambda: sum(map(blocked_waiting, threads)) == 15, "15 threads wait for the refill")
    source.gate.set()
    for thread in threads:
        thread.join(10)
    assert len(got) == 16
    assert len(source.calls) == 1
    stats = pool.stats()
    assert stats["refills"] == 1 and stats["served"] == 16


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", ["round_robin", "least_used"])
def test_concurrent_gets_share_the_proxies_exactly_evenly(
    source: FakeSource, clock: FakeClock, name: str
) -> None:
    pool = ProxyPool(source, clock=clock, batch=40, min_size=0, strategy=name)
    pool.refill()
    barrier = threading.Barrier(16)
    served: Counter[Proxy] = Counter()
    lock = threading.Lock()

    def worker() -> None:
        mine: list[Proxy] = []
        barrier.wait()
        for _ in range(50):
            proxy = pool.get(timeout=0)
            pool.report_success(proxy)
            mine.append(proxy)
        with lock:
            served.update(mine)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert len(served) == 40 and set(served.values()) == {20}
    stats = pool.stats()
    assert stats["served"] == stats["successes"] == 800


@pytest.mark.timeout(20)
def test_concurrent_traffic_keeps_bans_and_the_books_straight(
    make_pool: MakePool, source: FakeSource
) -> None:
    pool = make_pool(batch=30, min_size=10, max_failures=2)
    left: list[Proxy] = []
    pool.add_listener(left.append)
    banned = set(drain(pool, 10))
    for proxy in banned:
        pool.report_failure(proxy, domain="shop.example", banned=True)
    barrier = threading.Barrier(16)
    problems: list[str] = []
    gets = Counter[int]()
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        count = 0
        barrier.wait()
        for _ in range(150):
            proxy = pool.get(domain="shop.example", timeout=5)
            count += 1
            if proxy in banned:
                problems.append(f"{proxy} served for the domain it is banned for")
            if rng.random() < 0.1:
                pool.report_failure(proxy)
            else:
                pool.report_success(proxy)
        with lock:
            gets[seed] = count

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert problems == []
    stats = pool.stats()
    assert stats["served"] == sum(gets.values()) + 10 == 16 * 150 + 10
    total = sum(stats["live"].values()) + sum(stats["cooling"].values())
    assert stats["extracted"] == total + stats["evictions"] + stats["expired"] + stats["duplicates"]
    assert len(left) == stats["evictions"] + stats["expired"]
    assert stats["refills"] == len(source.calls)


# -- property-based: random operation sequences -----------------------------------------------


@dataclass
class ModelProxy:
    """What the pool must know about one proxy, tracked independently of it."""

    usable_until: float
    failures: int = 0
    cool_until: float = -math.inf
    bans: set[str] = field(default_factory=set)


LIFE_MIN, MARGIN, MAX_FAILURES, MIN_SIZE = 1, 15.0, 2, 2
MODEL_COOLDOWN = Backoff(base=5.0, cap=20.0, jitter=0.0)
DOMAINS = st.sampled_from([None, "a.example", "b.example"])
SESSIONS = st.sampled_from([None, "s1", "s2"])


class PoolMachine(RuleBasedStateMachine):
    """Random sequences of get/try_get/refill/report/advance-the-clock/provider trouble. After
    each step: no proxy handed out is expired, cooling, evicted or banned for the domain asked;
    a session keeps its proxy while that proxy stays usable; ``None``/``PoolExhausted`` only
    when nothing usable exists; the counters add up."""

    strategy_name = "round_robin"
    proxies = Bundle("proxies")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.source = FakeSource(hosts=7, on_extract=self._on_extract)
        self.pool = ProxyPool(
            self.source,
            clock=self.clock,
            life=LIFE_MIN,
            batch=3,
            min_size=MIN_SIZE,
            expiry_margin=MARGIN,
            max_failures=MAX_FAILURES,
            cooldown=MODEL_COOLDOWN,
            api_backoff=Backoff(base=1.0, cap=4.0, jitter=0.0),
            strategy=self.strategy_name,
            rng=random.Random(0),
            refill_runner=run_inline,
        )
        self.model: dict[Proxy, ModelProxy] = {}
        self.sessions: dict[str, Proxy] = {}
        self.left: list[Proxy] = []
        self.pool.add_listener(self.left.append)
        self.served = 0

    # The model's view ---------------------------------------------------------------------

    def _retire(self) -> None:
        now = self.clock.now
        for proxy in [p for p, m in self.model.items() if m.usable_until <= now]:
            self._drop(proxy)

    def _drop(self, proxy: Proxy) -> None:
        del self.model[proxy]
        for key in [k for k, p in self.sessions.items() if p == proxy]:
            del self.sessions[key]

    def _on_extract(self, proxies: list[Proxy]) -> None:
        self._retire()
        until = self.clock.now + LIFE_MIN * 60 - MARGIN
        for proxy in proxies:
            known = self.model.get(proxy)
            if known is None:
                self.model[proxy] = ModelProxy(until)
            else:
                known.usable_until = max(known.usable_until, until)

    def _usable(self, proxy: Proxy, domain: str | None) -> bool:
        known = self.model.get(proxy)
        now = self.clock.now
        return (
            known is not None
            and now < known.usable_until
            and now >= known.cool_until
            and domain not in known.bans
        )

    def _any_usable(self, domain: str | None) -> bool:
        return any(self._usable(p, domain) for p in self.model)

    def _served(
        self, proxy: Proxy | None, session: str | None, domain: str | None, sticky: Proxy | None
    ) -> None:
        if proxy is None:
            assert sticky is None, "a session lost its usable proxy"
            assert not self._any_usable(domain), "nothing served though a proxy was usable"
            return
        assert self._usable(proxy, domain), f"served {proxy}, which is not usable for {domain}"
        if sticky is not None:
            assert proxy == sticky, "the session moved although its proxy was usable"
        if session is not None:
            self.sessions[session] = proxy
        self.served += 1

    def _sticky(self, session: str | None, domain: str | None) -> Proxy | None:
        self._retire()
        bound = self.sessions.get(session) if session is not None else None
        return bound if bound is not None and self._usable(bound, domain) else None

    # Rules --------------------------------------------------------------------------------

    @rule(target=proxies, session=SESSIONS, domain=DOMAINS)
    def get(self, session: str | None, domain: str | None) -> Any:
        sticky = self._sticky(session, domain)
        try:
            proxy: Proxy | None = self.pool.get(session=session, domain=domain, timeout=0)
        except PoolExhausted:
            proxy = None
        self._served(proxy, session, domain, sticky)
        return proxy if proxy is not None else multiple()

    @rule(target=proxies, session=SESSIONS, domain=DOMAINS)
    def try_get(self, session: str | None, domain: str | None) -> Any:
        sticky = self._sticky(session, domain)
        proxy = self.pool.try_get(session=session, domain=domain)
        self._served(proxy, session, domain, sticky)
        return proxy if proxy is not None else multiple()

    @rule()
    def refill(self) -> None:
        with contextlib.suppress(ProviderError):
            self.pool.refill(wait=False)

    @rule(proxy=proxies)
    def report_success(self, proxy: Proxy) -> None:
        self._retire()
        self.pool.report_success(proxy)
        known = self.model.get(proxy)
        if known is not None:
            known.failures = 0
            known.cool_until = -math.inf

    @rule(proxy=proxies)
    def report_failure(self, proxy: Proxy) -> None:
        self._retire()
        self.pool.report_failure(proxy)
        known = self.model.get(proxy)
        if known is not None:
            known.failures += 1
            if known.failures >= MAX_FAILURES:
                self._drop(proxy)
            else:
                delay = MODEL_COOLDOWN.ceiling(known.failures - 1)
                known.cool_until = self.clock.now + delay

    @rule(proxy=proxies, domain=st.sampled_from(["a.example", "b.example"]))
    def ban(self, proxy: Proxy, domain: str) -> None:
        self._retire()
        self.pool.report_failure(proxy, domain=domain, banned=True)
        known = self.model.get(proxy)
        if known is not None:
            known.bans.add(domain)

    @rule(seconds=st.sampled_from([0.5, 1.0, 4.0, 5.0, 10.0, 20.0, 44.0, 45.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(outcome=st.sampled_from(["down", "empty"]))
    def provider_trouble(self, outcome: str) -> None:
        self.source.outcomes.append(ApiConnectionError("down") if outcome == "down" else [])

    # Invariants -----------------------------------------------------------------------------

    @invariant()
    def counters_agree_with_the_model(self) -> None:
        self._retire()
        stats = self.pool.stats()
        now = self.clock.now
        live = sum(1 for m in self.model.values() if now >= m.cool_until)
        cooling = len(self.model) - live
        assert stats["live"].get("*", 0) == live
        assert stats["cooling"].get("*", 0) == cooling
        assert stats["served"] == self.served
        assert stats["extracted"] == (
            live + cooling + stats["evictions"] + stats["expired"] + stats["duplicates"]
        )
        assert len(self.left) == stats["evictions"] + stats["expired"]

    def teardown(self) -> None:
        self.pool.close()


def _machine_test(name: str) -> Any:
    machine: type[PoolMachine] = type(
        f"PoolMachine_{name}", (PoolMachine,), {"strategy_name": name}
    )
    case = machine.TestCase
    case.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
    return case


TestPoolMachineRoundRobin = _machine_test("round_robin")
TestPoolMachineRandom = _machine_test("random")
TestPoolMachineLeastUsed = _machine_test("least_used")


# -- on the real client -----------------------------------------------------------------------


def test_pool_on_the_real_client(httpserver_ipv4: HTTPServer) -> None:
    """ProxyPool on ProviderClient against a local stand-in for the provider: the geography is
    validated (and canonicalised) before the one extraction, and a bad one costs nothing."""
    server = httpserver_ipv4
    states = {
        "list": [
            {
                "name_zh_cn": "美国",
                "name_en": "United States",
                "continent_code": "NA",
                "country_code": "US",
                "items": [{"state": "California", "continent_code": "NA", "country_code": "US"}],
            }
        ]
    }
    addresses = [f"203.0.113.{i}:{9000 + i}" for i in range(1, 6)]
    server.expect_request("/openapi/ip/dynamic-states").respond_with_json(envelope(states))
    server.expect_request("/openapi/ip/v3").respond_with_json(envelope({"list": [addresses]}))
    pool = ProxyPool(make_client(server), geo="us/CALIFORNIA", batch=5, life=10)
    with pytest.raises(InvalidGeo):
        pool.get("US/Nevada", timeout=0)
    # The extraction runs in the refill thread: the first get() waits for it (bounded).
    proxies = {pool.get(timeout=10 if n == 0 else 0) for n in range(10)}
    assert {p.address for p in proxies} == set(addresses)
    extraction = [r for r, _ in server.log if r.path.endswith("/ip/v3")]
    assert len(extraction) == 1
    assert extraction[0].args["state"] == "California"
    assert extraction[0].args["num"] == "5" and extraction[0].args["life"] == "10"
    assert sum(r.path.endswith("/dynamic-states") for r, _ in server.log) == 1


# -- money and bounded calls (issue 12) -----------------------------------------------------------


@pytest.mark.timeout(60)
def test_dead_ips_dropped_by_the_check_still_count_against_max_extracted() -> None:
    """The check wrapper outside Scrapy: the provider's IPs all refuse connections (nothing
    listens on the simulator's synthetic ports), so the check drops every one; the provider's
    own records show the cap held and the pool counted exactly what was handed over."""
    from proxypool.api import ProviderClient
    from proxypool.sim.provider import ProviderSimulator
    from proxypool.sources import CheckedSource

    with ProviderSimulator() as sim:
        checked = CheckedSource(
            ProviderClient(sim.app_key, base_url=sim.base_url, timeout=5), timeout=0.5
        )
        pool = ProxyPool(
            checked,
            batch=4,
            max_extracted=10,
            api_backoff=Backoff(base=0.01, cap=0.01, jitter=0.0),
        )
        with pool:
            for _ in range(30):  # the old pool went on buying until this loop ended
                with contextlib.suppress(PoolExhausted):
                    pool.get(timeout=1)
                if "max_extracted" in str(_last_exhausted(pool)):
                    break
            with pytest.raises(PoolExhausted, match="max_extracted=10"):
                pool.get(timeout=1)
            assert sim.ips_handed_out == 10  # 4 + 4 + 2: asks for at most what is left
            assert pool.stats()["extracted"] == sim.ips_handed_out
            assert checked.counters().extracted == sim.ips_handed_out
            assert checked.counters().rejected == 10
            assert len(pool) == 0


def _last_exhausted(pool: ProxyPool) -> str:
    try:
        pool.get(timeout=0)
    except PoolExhausted as exc:
        return str(exc)
    return ""


def test_an_over_delivering_provider_is_cut_to_num_and_counted_whole(
    httpserver_ipv4: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Asked for 5, the provider answers 50: 5 join the pool, all 50 count (the provider may
    bill them), a WARNING says so, and nothing more is bought once the count passed the cap."""
    server = httpserver_ipv4
    addresses = [f"203.0.113.{i}:{9000 + i}" for i in range(1, 51)]
    server.expect_request("/openapi/ip/v3").respond_with_json(envelope({"list": [addresses]}))
    pool = ProxyPool(make_client(server), batch=5, min_size=0, max_extracted=5)
    with pool, caplog.at_level(logging.WARNING, logger="proxypool.pool"):
        first = pool.get(timeout=10)
        # The warning is on record before the batch serves anyone (CI once read it too soon).
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("handed over 50 IPs" in m and "5 were asked for" in m for m in said), said
        served = {first} | {pool.get(timeout=0) for _ in range(20)}
        assert len(served) == 5 and len(pool) == 5
        assert pool.stats()["extracted"] == 50
        for proxy in served:
            pool.report_failure(proxy, domain="shop.example", banned=True)
        with pytest.raises(PoolExhausted, match="max_extracted=5"):
            pool.get(domain="shop.example", timeout=1)
    assert sum(r.path.endswith("/ip/v3") for r, _ in server.log) == 1


def test_the_check_wrapper_probes_at_most_num_and_reports_what_was_handed_over() -> None:
    from proxypool.sources import CheckedSource

    probed: list[int] = []

    def probe(addresses: set[tuple[str, int]], *, timeout: float) -> set[tuple[str, int]]:
        probed.append(len(addresses))
        return set(addresses)

    class Generous(FakeSource):
        def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
            return super().extract(geo, num=num * 10, life=life)

    checked = CheckedSource(Generous(), probe=probe)
    batch = checked.extract(None, num=3, life=10)
    assert len(batch) == 3 and batch.handed_over == 30 and probed == [3]
    assert checked.counters().extracted == 30


def ban_all(pool: ProxyPool, domain: str, *, limit: int = 100) -> BanStorm:
    """Ask for proxies for ``domain`` and report each one banned there, until a ban storm."""
    for _ in range(limit):
        try:
            proxy = pool.get(domain=domain, timeout=0)
        except BanStorm as storm:
            return storm
        pool.report_failure(proxy, domain=domain, banned=True)
    raise AssertionError(f"no ban storm for {domain} after {limit} proxies banned")


def test_a_site_that_bans_every_proxy_costs_three_batches_then_fails_visibly(
    make_pool: MakePool, source: FakeSource, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    pool = make_pool(batch=3, min_size=0)
    with caplog.at_level(logging.WARNING, logger="proxypool.pool"):
        storm = ban_all(pool, "Bad.Example")
        assert len(source.calls) == 3  # three batches bought, all banned there: no fourth
        assert isinstance(storm, PoolExhausted)
        assert storm.domain == "bad.example" and "bad.example" in str(storm)
        assert storm.retry_after == pytest.approx(600.0)
        for _ in range(3):  # fails at once, buys nothing, logs nothing more
            with pytest.raises(BanStorm, match=r"bad\.example"):
                pool.get(domain="bad.example", timeout=5)
        with pytest.raises(BanStorm):
            pool.try_get(domain="bad.example")  # refill() would buy for it: refused here too
        # Other sites are served by the same proxies, and cost nothing more.
        assert len(collect(pool, 9, domain="good.example")) == 9
        assert len(source.calls) == 3
    storms = [r for r in caplog.records if "ban storm" in r.getMessage()]
    assert len(storms) == 1 and storms[0].levelno == logging.WARNING
    assert "bad.example" in storms[0].getMessage()
    assert pool.stats()["ban_storms"] == 1

    # After the cool-down one batch is bought; all banned again, the next storm starts at once.
    clock.advance(599)
    with pytest.raises(BanStorm):
        pool.get(domain="bad.example", timeout=0)
    clock.advance(1)
    ban_all(pool, "bad.example")
    assert len(source.calls) == 4
    assert pool.stats()["ban_storms"] == 2


def test_a_success_on_the_site_resets_its_count_of_banned_batches(
    make_pool: MakePool, source: FakeSource
) -> None:
    pool = make_pool(batch=2, min_size=0)
    for _ in range(4):  # two batches all banned
        proxy = pool.get(domain="x.example", timeout=0)
        pool.report_failure(proxy, domain="x.example", banned=True)
    batch3 = collect(pool, 2, domain="x.example")
    pool.report_success(next(iter(batch3)), domain="X.example")  # the site let one through
    for proxy in batch3:
        pool.report_failure(proxy, domain="x.example", banned=True)  # all banned: count 1
    assert len(source.calls) == 3
    ban_all(pool, "x.example")
    assert len(source.calls) == 5  # batches 4 and 5 complete the new run of three


def test_a_batch_of_proxies_already_banned_there_counts_on_arrival(
    make_pool: MakePool, clock: FakeClock
) -> None:
    """The provider hands the same three IPs out again (duplicates): a batch bought for the site
    that brings nothing it has not banned counts at once, backoff or not."""
    source = FakeSource(hosts=3)
    pool = make_pool(client=source, batch=3, min_size=0)
    for _ in range(50):
        try:
            ban_all(pool, "x.example", limit=10)
            break
        except PoolExhausted:
            clock.advance(API_BACKOFF.cap)  # only duplicates came: the pool backs off
    assert len(source.calls) == 3


def test_ban_storm_detection_can_be_turned_off(make_pool: MakePool, source: FakeSource) -> None:
    pool = make_pool(batch=2, min_size=0, ban_storm_batches=None, max_extracted=12)
    with pytest.raises(PoolExhausted) as info:
        ban_all(pool, "x.example")
    assert not isinstance(info.value, BanStorm) and "max_extracted" in str(info.value)
    assert len(source.calls) == 6


@pytest.mark.timeout(60)
def test_a_request_waiting_for_the_site_fails_as_soon_as_the_storm_starts(
    source: FakeSource,
) -> None:
    """A request for the site waits for an extraction in flight; the ban that completes the
    second all-banned batch starts the storm and the waiter fails then, not when it arrives."""
    cooldown = Backoff(base=60.0, cap=60.0, jitter=0.0)
    pool = ProxyPool(source, batch=2, min_size=0, ban_storm_batches=2, cooldown=cooldown)
    with pool:
        for proxy in collect_waiting(pool, 2, domain="x.example"):
            pool.report_failure(proxy, domain="x.example", banned=True)  # batch 1 all banned
        banned, cooling = collect_waiting(pool, 2, domain="x.example")  # batch 2
        pool.report_failure(banned, domain="x.example", banned=True)
        pool.report_failure(cooling)  # a plain failure: cooling, so nothing is usable for x
        source.gate = threading.Event()
        source.entered.clear()
        outcome: list[BaseException] = []

        def wait() -> None:
            try:
                pool.get(domain="x.example", timeout=30)
            except BaseException as exc:
                outcome.append(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        wait_for(lambda: source.entered.is_set() and blocked_waiting(waiter), "it waits")
        pool.report_failure(cooling, domain="x.example", banned=True)  # batch 2 all banned
        waiter.join(10)
        assert not waiter.is_alive() and not source.gate.is_set()
        source.gate.set()
        assert len(outcome) == 1 and isinstance(outcome[0], BanStorm), outcome


def collect_waiting(pool: ProxyPool, n: int, **kwargs: Any) -> list[Proxy]:
    """``n`` distinct proxies, waiting for extractions (a threaded runner)."""
    seen: list[Proxy] = []
    for _ in range(50 * n):
        proxy = pool.get(timeout=10, **kwargs)
        if proxy not in seen:
            seen.append(proxy)
        if len(seen) == n:
            return seen
    raise AssertionError(f"only {len(seen)} of {n} proxies were ever served")


@pytest.mark.timeout(60)
def test_get_timeout_bounds_the_call_when_the_extraction_hangs(source: FakeSource) -> None:
    """The provider does not answer for 10 s: get(timeout=1) gives up within a few seconds,
    whether its own call started the extraction or another thread's did."""
    source.gate = threading.Event()
    pool = ProxyPool(source, batch=5)
    with pool:
        began = time.monotonic()
        with pytest.raises(PoolExhausted, match="in flight"):
            pool.get(timeout=1)  # this call starts the extraction
        assert time.monotonic() - began < 6
        assert source.entered.is_set()
        assert all(t is not threading.current_thread() for t in source.threads)

        errors: list[BaseException] = []

        def other() -> None:
            try:
                pool.get(timeout=1)  # waits on the extraction already in flight
            except BaseException as exc:
                errors.append(exc)

        began = time.monotonic()
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(10)
        assert time.monotonic() - began < 6
        assert len(errors) == 1 and isinstance(errors[0], PoolExhausted)
        began = time.monotonic()
        with pytest.raises(PoolExhausted, match="did not end within"):
            pool.refill(timeout=1)
        assert time.monotonic() - began < 6

        source.gate.set()  # the provider answers at last: its proxies join the pool
        assert pool.get(timeout=10) in set(pool_proxies(pool))
        assert len(source.calls) == 1


def pool_proxies(pool: ProxyPool) -> list[Proxy]:
    return [pool.get(timeout=0) for _ in range(5)]
