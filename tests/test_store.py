"""Pools that share a store act as one pool: one extraction in flight per geography, one budget,
a proxy bought by one used by all, bans and failures honoured everywhere, the store's clock for
expiry, and a store that cannot be reached costing nothing (nothing bought, the proxies held
still served).

Each test runs on both stores: ``MemoryStore`` (pools of one process) and ``RedisStore`` on a
real Redis-protocol server started for the module (``tests/_redis.py``). Pools on one
``RedisStore`` namespace here stand for processes: each has its own ``RedisStore`` (its own
connections), as another process would; the tests with real processes are in
``test_store_processes.py``."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from _redis import RedisServer

from proxypool import (
    BanStorm,
    MemoryStore,
    PoolExhausted,
    ProxyPool,
    RedisStore,
    StoreUnavailable,
)
from proxypool.errors import ConfigError
from proxypool.geo import Geo
from proxypool.models import Proxy

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as running:
        yield running


_namespaces = itertools.count()


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> Callable[[], Any]:
    """A factory of stores that share one state: the same MemoryStore, or a new RedisStore on
    one fresh namespace each time (a process of its own would make its own)."""
    if request.param == "memory":
        shared = MemoryStore()
        return lambda: shared
    server: RedisServer = request.getfixturevalue("server")
    namespace = f"t{next(_namespaces)}"
    return lambda: RedisStore(server.url, namespace=namespace)


class CountingSource:
    """A paid source of fresh proxies (each extraction new ones) that counts its calls and
    holds each for ``delay`` seconds, so extractions started together overlap."""

    def __init__(self, delay: float = 0.3) -> None:
        self.delay = delay
        self.calls: list[tuple[Geo | None, int]] = []
        self._lock = threading.Lock()
        self._ports = itertools.count(20000)

    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        with self._lock:
            self.calls.append((geo, num))
            ports = [next(self._ports) for _ in range(num)]
        time.sleep(self.delay)
        return [Proxy("127.0.0.1", port, geo=geo) for port in ports]


def pool_on(store: Any, source: Any, **kwargs: Any) -> ProxyPool:
    options: dict[str, Any] = {"batch": 5, "min_size": 1, "life": 10}
    options.update(kwargs)
    return ProxyPool(source, store=store, **options)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.02)


def test_one_extraction_for_a_shared_start_and_its_proxies_serve_every_pool(
    make_store: Callable[[], Any],
) -> None:
    source = CountingSource()
    pools = [pool_on(make_store(), source) for _ in range(4)]
    got: dict[int, Proxy] = {}
    try:
        threads = [
            threading.Thread(target=lambda n=n: got.__setitem__(n, pools[n].get(timeout=10)))
            for n in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        assert len(got) == 4
        assert len(source.calls) == 1, source.calls  # one bought for all four
        bought = {p.port for p in (got[n] for n in range(4))}
        assert bought <= set(range(20000, 20005))
        stats = [pool.stats() for pool in pools]
    finally:
        for pool in pools:
            pool.close()
    assert sum(s["extracted"] for s in stats) == 5
    assert sorted(s["received"] for s in stats) == [0, 5, 5, 5]


def test_the_budget_is_one_over_every_pool(make_store: Callable[[], Any]) -> None:
    source = CountingSource(delay=0.0)
    # (min_size 10: a refill() with fewer than that buys, though another pool just bought)
    first = pool_on(make_store(), source, max_extracted=8, min_size=10)
    second = pool_on(make_store(), source, max_extracted=8, min_size=10)
    try:
        first.refill()  # 5 bought
        wait_for(lambda: second.stats()["received"] == 5)
        second.refill(wait=False)  # only 3 are left of the 8
        assert [num for _, num in source.calls] == [5, 3]
        wait_for(lambda: first.stats()["received"] == 3)
        with pytest.raises(PoolExhausted, match="max_extracted"):
            first.refill()
        with pytest.raises(PoolExhausted, match="max_extracted"):
            second.refill()
        assert [num for _, num in source.calls] == [5, 3]  # nothing more was bought
    finally:
        first.close()
        second.close()


def test_a_ban_or_failure_reported_in_one_pool_is_honoured_in_the_others_within_a_second(
    make_store: Callable[[], Any],
) -> None:
    source = CountingSource(delay=0.0)
    one = pool_on(make_store(), source, batch=2, max_failures=2)
    other = pool_on(make_store(), source, batch=2, max_failures=2)
    try:
        one.refill()
        wait_for(lambda: other.stats()["received"] == 2)
        banned, failing = (one.get(), one.get())
        one.report_failure(banned, domain="Shop.Example", banned=True)
        started = time.monotonic()
        wait_for(lambda: other.stats()["bans"] == 1, timeout=1.0)
        assert time.monotonic() - started < 1.0
        for _ in range(4):  # never the banned one for that site, in the other pool either
            assert other.get(domain="shop.example", timeout=1) == failing
        one.report_failure(failing)
        one.report_failure(failing)  # its second failure: evicted here, and there
        wait_for(lambda: other.stats()["evictions"] == 1, timeout=1.0)
        assert other.stats()["live"] == {"*": 1}
    finally:
        one.close()
        other.close()


def test_a_pre_fill_after_another_pool_bought_buys_nothing(
    make_store: Callable[[], Any],
) -> None:
    """A refill() (a Scrapy spider's pre-fill) in a pool that started after another bought
    for the geography: caught up, it holds min_size already, so nothing is bought again."""
    source = CountingSource(delay=0.0)
    early = pool_on(make_store(), source, min_size=3)
    try:
        early.refill()
        late = pool_on(make_store(), source, min_size=3)
        try:
            assert late.refill() == 0
            assert late.stats()["live"] == {"*": 5}
            assert len(source.calls) == 1
        finally:
            late.close()
    finally:
        early.close()


def test_a_pool_that_starts_later_uses_what_was_bought_before(
    make_store: Callable[[], Any],
) -> None:
    source = CountingSource(delay=0.0)
    early = pool_on(make_store(), source)
    try:
        early.refill()
        late = pool_on(make_store(), source)
        try:
            proxy = late.get(timeout=5)
            assert proxy.port in range(20000, 20005)
            assert len(source.calls) == 1
        finally:
            late.close()
    finally:
        early.close()


def test_a_batch_ends_on_the_store_clock_in_every_pool(make_store: Callable[[], Any]) -> None:
    """Expiry is judged on the store's clock: a pool whose own clock runs far ahead of the
    buyer's (another machine) still uses the batch for its life, and not past it."""
    source = CountingSource(delay=0.0)
    buyer = pool_on(make_store(), source, life=1, expiry_margin=10)
    skewed_now = [time.monotonic() + 3600.0]  # an hour ahead, and moved by hand
    skewed = pool_on(make_store(), source, life=1, expiry_margin=10, clock=lambda: skewed_now[0])
    try:
        buyer.refill()
        wait_for(lambda: skewed.stats()["received"] == 5)
        assert skewed.stats()["live"] == {"*": 5}
        skewed_now[0] += 45.0  # 45 s on: within life minus margin (50 s)
        assert skewed.stats()["live"] == {"*": 5}
        skewed_now[0] += 10.0  # 55 s: past it
        assert skewed.stats()["live"] == {"*": 0}
    finally:
        buyer.close()
        skewed.close()


def test_a_pool_whose_holder_of_the_lease_died_buys_after_the_lease_lapses(
    make_store: Callable[[], Any],
) -> None:
    """A lease taken and never released (its process killed mid-extraction) blocks the others
    for ``store_lease`` seconds at most."""
    store = make_store()
    assert store.take_lease("refill:*", 2.0) is not None  # the dead holder's
    source = CountingSource(delay=0.0)
    pool = pool_on(make_store(), source, store_lease=5.0)
    try:
        started = time.monotonic()
        proxy = pool.get(timeout=10)
        waited = time.monotonic() - started
        assert proxy.port == 20000 and len(source.calls) == 1
        assert 1.0 <= waited < 5.0, waited
    finally:
        pool.close()


def test_a_dead_store_buys_nothing_and_serves_what_is_held(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis away: no extraction, the pool serves its proxies while they live, says so once;
    when Redis is back, it buys again."""
    redis.Redis.from_url(server.url).flushdb()
    source = CountingSource(delay=0.0)
    pool = pool_on(RedisStore(server.url, namespace="down", socket_timeout=1.0), source, batch=2)
    try:
        pool.refill()
        held = {pool.get().port for _ in range(4)}
        server.kill()
        caplog.set_level(logging.WARNING, logger="proxypool")
        try:
            wait_for(lambda: pool.stats()["store_errors"] > 0, timeout=10)
            assert {pool.get(timeout=1).port for _ in range(4)} == held  # served as before
            for proxy in [pool.get(), pool.get()]:  # both fail for good: nothing left
                for _ in range(3):
                    pool.report_failure(proxy)
            with pytest.raises(PoolExhausted):
                pool.get(timeout=1.5)
            assert len(source.calls) == 1  # nothing bought while Redis was away
            time.sleep(2.5)  # (refills tried meanwhile: they wait for Redis, quietly)
            warned = [
                r
                for r in caplog.records
                if "cannot be reached" in r.getMessage() and r.levelno >= logging.WARNING
            ]
            assert len(warned) == 1  # said once
            assert pool.stats()["api_errors"] == 0  # the provider did nothing wrong
        finally:
            server.restart()
        back = time.monotonic()
        proxy = pool.get(timeout=15)  # back: it buys again, without a grown backoff
        assert proxy.port not in held and len(source.calls) == 2
        assert time.monotonic() - back < 5.0
    finally:
        pool.close()


def test_store_arguments_are_checked() -> None:
    with pytest.raises(ConfigError) as info:
        ProxyPool(CountingSource(), store="redis://127.0.0.1:1")  # type: ignore[arg-type]
    assert info.value.field == "store"
    with pytest.raises(ConfigError) as info:
        ProxyPool(CountingSource(), store=MemoryStore(), store_lease=0)
    assert info.value.field == "store_lease"
    with pytest.raises(ConfigError) as info:
        RedisStore("http://127.0.0.1:6379")
    assert info.value.field == "url"


def test_the_redis_password_never_shows(server: RedisServer) -> None:
    store = RedisStore("redis://:Redis-S3cret-Pw@127.0.0.1:1/0", socket_timeout=0.5)
    assert "Redis-S3cret-Pw" not in repr(store)
    with pytest.raises(StoreUnavailable) as info:
        store.now()
    assert "Redis-S3cret-Pw" not in str(info.value)
    assert "Redis-S3cret-Pw" not in repr(info.value)
    pool = ProxyPool(CountingSource(), store=store)
    try:
        assert "Redis-S3cret-Pw" not in repr(pool)
    finally:
        pool.close()


def test_proxies_shared_keep_their_credentials(make_store: Callable[[], Any]) -> None:
    class WithCredentials(CountingSource):
        def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
            return [
                dataclasses.replace(p, username="u", password="p/w@x", session="S1")
                for p in super().extract(geo, num=num, life=life)
            ]

    source = WithCredentials(delay=0.0)
    one = pool_on(make_store(), source, geo="US/California")
    other = pool_on(make_store(), source, geo="US/California")
    try:
        one.refill()
        wait_for(lambda: other.stats()["received"] == 5)
        proxy = other.get(timeout=1)
        assert (proxy.username, proxy.password, proxy.session) == ("u", "p/w@x", "S1")
        assert proxy.geo == Geo("US", "California")
        assert other.stats()["live"] == {"US/California": 5}
    finally:
        one.close()
        other.close()


def test_a_session_key_means_one_proxy_in_every_pool_and_moves_once_on_a_ban(
    make_store: Callable[[], Any],
) -> None:
    source = CountingSource(delay=0.0)
    one = pool_on(make_store(), source, strategy="random")
    other = pool_on(make_store(), source, strategy="random")
    try:
        one.refill()
        wait_for(lambda: other.stats()["received"] == 5)
        cart = one.get(session="cart")
        assert other.try_get(session="cart") is None  # not confirmed yet: needs the store
        assert other.get(session="cart") == cart  # the store says: the one the first chose
        assert other.try_get(session="cart") == cart  # confirmed now: no store I/O
        assert {other.get(session="cart") for _ in range(5)} == {cart}
        one.report_failure(cart, domain="shop.example", banned=True)
        moved = one.get(session="cart", domain="shop.example")
        assert moved != cart
        wait_for(lambda: other.stats()["bans"] == 1, timeout=1.0)
        assert other.get(session="cart", domain="shop.example") == moved  # moved once, for all
        assert one.get(session="cart", domain="shop.example") == moved
    finally:
        one.close()
        other.close()


def test_a_redis_that_lost_its_data_gets_the_budget_spent_back(server: RedisServer) -> None:
    """Redis restarted without its data: the budget's spent counter is gone. Each pool adds
    what it bought back, so the cap still counts it."""
    redis.Redis.from_url(server.url).flushdb()
    source = CountingSource(delay=0.0)
    store = RedisStore(server.url, namespace="lost", socket_timeout=1.0)
    buyer = pool_on(store, source, max_extracted=8)
    try:
        buyer.refill()
        assert store.spent() == 5
        server.kill()
        server.restart()
        wait_for(lambda: _spent(store) == 5, timeout=10)
        late = pool_on(RedisStore(server.url, namespace="lost"), source, max_extracted=8)
        try:
            late.refill()
            assert [num for _, num in source.calls] == [5, 3]  # only what was left
        finally:
            late.close()
    finally:
        buyer.close()


def _spent(store: RedisStore) -> int:
    try:
        return store.spent()
    except StoreUnavailable:
        return -1


def test_a_ban_storm_counts_the_bans_of_every_pool(make_store: Callable[[], Any]) -> None:
    """Each pool sees one ban of a batch of two; together the batch is all banned: a storm in
    both, though neither pool saw more than one ban itself."""
    source = CountingSource(delay=0.0)
    one = pool_on(make_store(), source, batch=2, ban_storm_batches=1)
    other = pool_on(make_store(), source, batch=2, ban_storm_batches=1)
    try:
        one.refill()
        wait_for(lambda: other.stats()["received"] == 2)
        first, second = one.get(), one.get()
        one.report_failure(first, domain="shop.example", banned=True)
        other.report_failure(second, domain="shop.example", banned=True)
        wait_for(lambda: one.stats()["ban_storms"] == 1 and other.stats()["ban_storms"] == 1)
        with pytest.raises(BanStorm):
            other.get(domain="shop.example", timeout=1)
        assert len(source.calls) == 1  # nothing more bought for it
    finally:
        one.close()
        other.close()


def test_the_redis_password_stays_out_of_scrapy_settings_and_their_errors() -> None:
    from scrapy_ext.settings import read_settings

    base = {"PROXYPOOL_PROXY_LIST": ["127.0.0.1:8080"]}
    config = read_settings(
        {**base, "PROXYPOOL_REDIS_URL": "redis://:Redis-S3cret-Pw@127.0.0.1:6379/0"}, environ={}
    )
    assert config.redis_url is not None and "Redis-S3cret-Pw" not in repr(config)
    from_env = read_settings(
        base, environ={"PROXYPOOL_REDIS_URL": "redis://:Redis-S3cret-Pw@127.0.0.1:6379/0"}
    )
    assert from_env.redis_url == config.redis_url
    for bad in (
        "http://:Redis-S3cret-Pw@127.0.0.1:6379",
        "redis://:Redis-S3cret-Pw@127.0.0.1:notaport/0",
    ):
        with pytest.raises(ConfigError) as info:
            read_settings({**base, "PROXYPOOL_REDIS_URL": bad}, environ={})
        assert "Redis-S3cret-Pw" not in str(info.value)
        assert info.value.field == "PROXYPOOL_REDIS_URL"


def test_a_store_that_is_down_logs_no_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = RedisStore("redis://:Redis-S3cret-Pw@127.0.0.1:1/0", socket_timeout=0.5)
    pool = pool_on(store, CountingSource(delay=0.0))
    try:
        wait_for(lambda: pool.stats()["store_errors"] > 0)
        with pytest.raises(PoolExhausted):
            pool.get(timeout=1)
    finally:
        pool.close()
    logged = "\n".join(
        r.getMessage() + (str(r.exc_info[1]) if r.exc_info else "") for r in caplog.records
    )
    assert "cannot be reached" in logged
    assert "Redis-S3cret-Pw" not in logged
