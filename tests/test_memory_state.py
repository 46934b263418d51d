"""A pool's state lives in a ``MemoryStore``: its steps, used on their own (no ``ProxyPool``),
keep the entries, their health, the rotation, sticky sessions, ban storms, the budget and the
counters. ``test_pool.py`` covers the same rules through the pool; these pin the seam."""

from __future__ import annotations

import random
from typing import Any

import pytest

from proxypool import MemoryStore
from proxypool.errors import BanStorm, ConfigError
from proxypool.geo import Geo
from proxypool.models import Proxy
from proxypool.policy import Backoff, RandomRotation
from proxypool.store import HealthRules

US = Geo.coerce("US")


def _proxies(n: int, first: int = 1, geo: Geo = US) -> list[Proxy]:
    return [Proxy(f"203.0.113.{i}", 8000 + i, geo=geo) for i in range(first, first + n)]


def _store(**rules: Any) -> MemoryStore:
    # No jitter: a cool-down lasts exactly the backoff's base.
    rules.setdefault("cooldown", Backoff(base=5.0, cap=40.0, jitter=0.0))
    return MemoryStore(rules=HealthRules(**rules))


def test_a_batch_is_held_picked_in_turn_and_counted() -> None:
    store = _store()
    assert repr(store) == "MemoryStore()"
    with store.lock:
        sub = store.geography(US)
        assert store.geography(US) is sub
        assert store.add_batch(sub, _proxies(3), usable_until=100.0, now=0.0) == 3
        picked = [store.pick(sub, None, None) for _ in range(6)]
    assert [e.proxy.host for e in picked if e] == [f"203.0.113.{i}" for i in (1, 2, 3, 1, 2, 3)]
    assert store.served == 6 and sub.usable == 3 and repr(store) == "MemoryStore(3 proxies held)"


def test_a_duplicate_keeps_its_health_and_takes_the_later_end() -> None:
    store = _store()
    with store.lock:
        sub = store.geography(US)
        store.add_batch(sub, _proxies(2), usable_until=100.0, now=0.0)
        first = store.pick(sub, None, None)
        assert first is not None
        store.fail(first, now=1.0)
        assert store.add_batch(sub, _proxies(2), usable_until=200.0, now=2.0) == 0
        assert store.duplicates == 2 and first.failures == 1 and first.usable_until == 200.0
        store.expire(sub, 150.0)  # the first batch's end: both live on, to the second's
        assert len(sub.index) == 2 and store.expired == 0
        store.expire(sub, 200.0)
        assert len(sub.index) == 0 and store.expired == 2
        departed = store.take_departed()
        assert store.departed == []
    assert {p.host for p in departed} == {"203.0.113.1", "203.0.113.2"}


def test_a_failure_cools_a_success_revives_and_max_failures_evict() -> None:
    store = _store(max_failures=3)
    with store.lock:
        sub = store.geography(US)
        store.add_batch(sub, _proxies(1), usable_until=1000.0, now=0.0)
        entry = store.pick(sub, None, None)
        assert entry is not None
        assert store.fail(entry, now=10.0) is False
        assert (sub.usable, sub.cooling_count, sub.next_cooled()) == (0, 1, 15.0)
        assert store.pick(sub, None, None) is None  # cooling: not served
        store.expire(sub, 15.0)  # the cool-down is over
        assert store.pick(sub, None, None) is entry
        store.fail(entry, now=20.0)
        store.succeed(entry.proxy, None)  # ends the cool-down, resets the count
        assert (sub.usable, entry.failures, store.successes) == (1, 0, 1)
        assert store.fail(entry, now=30.0) is False
        assert store.fail(entry, now=31.0) is False
        assert store.fail(entry, now=32.0) is True  # three in a row
        assert store.evictions == 1 and store.find(entry.proxy) is None
        assert store.take_departed() == [entry.proxy]


def test_a_ban_skips_the_proxy_for_that_site_only_and_sessions_stick() -> None:
    store = _store()
    with store.lock:
        sub = store.geography(US)
        store.add_batch(sub, _proxies(2), usable_until=1000.0, now=0.0)
        a = store.pick(sub, "s1", "shop.example")
        assert a is not None
        assert all(store.pick(sub, "s1", "shop.example") is a for _ in range(3))
        assert store.ban(a, "shop.example", now=1.0) is True
        assert store.ban(a, "shop.example", now=1.0) is False  # counted once
        b = store.pick(sub, "s1", "shop.example")
        assert b is not None and b is not a  # the key moved to a proxy the site has not banned
        assert all(store.pick(sub, None, "shop.example") is b for _ in range(3))
        assert store.pick(sub, None, "other.example") is not None
        # Bound elsewhere: another pool said the key means ``a``, which is banned there.
        assert store.bind(sub, "s1", a.proxy, "shop.example") is None
        assert store.bind(sub, "s1", a.proxy, "other.example") is a.proxy
        assert store.pick(sub, "s1", "other.example") is a
    assert store.bans == 1


def test_batches_all_banned_in_a_row_start_a_storm_and_a_success_ends_it() -> None:
    store = _store(storm_batches=2, storm_cooldown=60.0)
    with store.lock:
        sub = store.geography(US)
        for n in range(2):
            store.add_batch(sub, _proxies(2, first=1 + 2 * n), usable_until=1000.0, now=0.0)
            for proxy in _proxies(2, first=1 + 2 * n):
                entry = store.find(proxy)
                assert entry is not None
                store.ban(entry, "shop.example", now=5.0)
        assert store.storming("shop.example", 10.0) and store.ban_storms == 1
        assert not store.storming("other.example", 10.0)
        error = store.storm_error("shop.example", 10.0)
        assert isinstance(error, BanStorm) and error.retry_after == pytest.approx(55.0)
        assert store.take_storm_news() == [("shop.example", 60.0)]
        assert store.take_storm_news() == []
        store.succeed(_proxies(1)[0], "shop.example")
        assert not store.storming("shop.example", 10.0)
        assert not store.streaks and not store.storms


def test_the_budget_counts_bought_reserved_and_others() -> None:
    store = _store()
    with store.lock:
        assert store.budget_left(None) == float("inf")
        store.begin_buy(5)
        store.begin_buy(2)
        assert store.budget_left(10) == 3  # reserved before paying
        store.settle_buy(5, 6, paid=True)  # handed over more than asked: all count
        assert (store.extracted, store.reserved, store.refills) == (6, 2, 1)
        store.cancel_buy(2)
        store.spent_elsewhere(3)
        assert store.budget_left(10) == 1
        store.settle_buy(0, 4, paid=False)  # a free source's proxies are minted, not bought
        assert (store.extracted, store.minted, store.budget_left(10)) == (6, 4, 1)
        store.close_budget()
        assert store.budget_left(10) == 0


def test_the_rotation_of_each_geography_comes_from_the_rules() -> None:
    made: list[RandomRotation[Any]] = []

    def factory() -> RandomRotation[Any]:
        made.append(RandomRotation(random.Random(3)))
        return made[-1]

    store = _store(new_rotation=factory)
    with store.lock:
        sub = store.geography(US)
        store.geography(Geo.coerce("DE"))
        store.add_batch(sub, _proxies(4), usable_until=1000.0, now=0.0)
        assert sub.rotation is made[0] and len(made) == 2 and len(made[0]) == 4


def test_empty_lets_every_proxy_go() -> None:
    store = _store()
    with store.lock:
        for geo in (US, Geo.coerce("DE")):
            store.add_batch(store.geography(geo), _proxies(2, geo=geo), 1000.0, now=0.0)
        store.empty()
    assert all(not sub.index and sub.usable == 0 for sub in store.subs.values())
    assert len(store.take_departed()) == 4


def test_rules_must_be_health_rules() -> None:
    with pytest.raises(ConfigError, match="rules") as caught:
        MemoryStore(rules={"max_failures": 3})  # type: ignore[arg-type]
    assert caught.value.field == "rules"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_failures", 0),
        ("max_failures", "3"),
        ("cooldown", 5.0),
        ("storm_batches", 0),
        ("storm_cooldown", 0.0),
        ("storm_cooldown", -5.0),
        ("new_rotation", "round_robin"),
        ("rng", 7),
    ],
)
def test_health_rules_are_checked(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        HealthRules(**{field: value})
    assert caught.value.field == field
