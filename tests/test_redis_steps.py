"""The cross-process steps of a shared pool (``proxypool._redis_steps``), against a real
Redis-protocol server and real OS processes racing for them: one refill lease in flight, one that
a killed holder gives up by expiring, one budget never passed, a dead reserver's IPs returned,
one proxy per session key in every process, and what one process publishes read by the others
in order and within a second."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from _redis import RedisServer

from proxypool._redis_steps import RedisSteps, masked_url
from proxypool.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
RACERS = 8


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as running:
        yield running


@pytest.fixture
def steps(server: RedisServer) -> RedisSteps:
    redis.Redis.from_url(server.url).flushdb()
    return RedisSteps(server.url, namespace="t")


def _race_for_the_lease(url: str, start: float, out: multiprocessing.Queue[str]) -> None:
    steps = RedisSteps(url, namespace="t")
    time.sleep(max(0.0, start - time.time()))  # every racer fires at the same moment
    out.put(steps.take_lease("US/California", 30.0) or "")


def _race_for_the_budget(url: str, start: float, n: int, out: multiprocessing.Queue[int]) -> None:
    steps = RedisSteps(url, namespace="t")
    time.sleep(max(0.0, start - time.time()))
    granted = steps.reserve(f"racer-{n}", 7, 20, 30.0)
    if granted:
        steps.settle(f"racer-{n}", granted, granted)  # bought what it reserved
    out.put(granted)


def _race_to_bind(url: str, start: float, n: int, out: multiprocessing.Queue[str]) -> None:
    steps = RedisSteps(url, namespace="t")
    time.sleep(max(0.0, start - time.time()))
    out.put(steps.bind_session("cart-1", f"proxy-{n}", 60.0))


def _race_to_rebind(url: str, start: float, n: int, out: multiprocessing.Queue[str]) -> None:
    steps = RedisSteps(url, namespace="t")
    time.sleep(max(0.0, start - time.time()))
    out.put(steps.rebind_session("cart-1", "proxy-banned", f"proxy-{n}", 60.0))


def _publish_a_ban(url: str, out: multiprocessing.Queue[float]) -> None:
    steps = RedisSteps(url, namespace="t")
    time.sleep(0.5)
    out.put(steps.server_time())
    steps.publish("ban", {"proxy": "10.0.0.1:8000", "domain": "shop.example"})


def _race(target: Callable[..., None], server: RedisServer, *, numbered: bool) -> list[Any]:
    """Run ``target`` in RACERS spawned processes that all fire at one moment; their answers."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    start = time.time() + 2.0  # all spawned and connected by then
    processes = [
        context.Process(
            target=target,
            args=(server.url, start, n, out) if numbered else (server.url, start, out),
        )
        for n in range(RACERS)
    ]
    for process in processes:
        process.start()
    results = [out.get(timeout=30) for _ in processes]
    for process in processes:
        process.join(10)
    return results


def test_one_process_of_many_gets_the_refill_lease(server: RedisServer, steps: RedisSteps) -> None:
    tokens = _race(_race_for_the_lease, server, numbered=False)
    assert len([t for t in tokens if t]) == 1
    (token,) = [t for t in tokens if t]
    assert steps.take_lease("US/California", 30.0) is None  # still held
    assert steps.take_lease("DE", 30.0) is not None  # one lease per geography
    assert steps.release_lease("US/California", str(token))
    assert steps.take_lease("US/California", 30.0) is not None


def test_a_killed_holder_blocks_the_others_for_the_lease_ttl_at_most(
    server: RedisServer, steps: RedisSteps
) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from proxypool._redis_steps import RedisSteps\n"
            "steps = RedisSteps(sys.argv[1], namespace='t')\n"
            "print(steps.take_lease('US', 1.5), flush=True)\n"
            "time.sleep(60)\n",
            server.url,
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() not in ("", "None")
        holder.send_signal(signal.SIGKILL)  # dies holding it: never releases
        holder.wait(10)
        taken_at = steps.server_time()
        assert steps.take_lease("US", 5.0) is None
        deadline = time.monotonic() + 5
        token = None
        while token is None and time.monotonic() < deadline:
            token = steps.take_lease("US", 5.0)
            time.sleep(0.05)
        waited = steps.server_time() - taken_at
    finally:
        if holder.poll() is None:
            holder.kill()
    assert token is not None
    assert waited <= 1.5 + 0.5  # the lease's ttl, judged by the server's clock


def test_a_lease_is_renewed_and_released_only_by_its_holder(steps: RedisSteps) -> None:
    token = steps.take_lease("GB", 0.5)
    assert token is not None
    assert not steps.release_lease("GB", "not-the-token")
    assert not steps.renew_lease("GB", "not-the-token", 10.0)
    assert steps.renew_lease("GB", token, 10.0)
    time.sleep(0.7)  # past the first ttl: renewed, so still held
    assert steps.take_lease("GB", 1.0) is None
    assert steps.release_lease("GB", token)
    assert not steps.release_lease("GB", token)  # once


def test_many_processes_never_pass_one_budget(server: RedisServer, steps: RedisSteps) -> None:
    granted = [int(g) for g in _race(_race_for_the_budget, server, numbered=True)]
    assert sum(granted) == 20  # 8 x 7 wanted, 20 allowed: all of it, not one more
    assert all(0 <= g <= 7 for g in granted)
    assert steps.spent() == 20
    assert steps.reserve("late", 1, 20, 30.0) == 0


def test_a_dead_reservers_ips_come_back_after_its_ttl(steps: RedisSteps) -> None:
    assert steps.reserve("dies", 15, 20, 0.5) == 15  # then never settles
    assert steps.reserve("lives", 10, 20, 30.0) == 5
    time.sleep(0.7)
    assert steps.reserve("lives-2", 10, 20, 30.0) == 10
    assert steps.settle("lives", 5, 5) == 5
    assert steps.settle("lives-2", 10, 12) == 17  # a surplus counts: the provider billed it
    assert steps.reserve("more", 10, 20, 30.0) == 3


def test_a_failed_extraction_gives_its_reservation_back(steps: RedisSteps) -> None:
    assert steps.reserve("a", 10, 10, 30.0) == 10
    assert steps.reserve("b", 1, 10, 30.0) == 0
    assert steps.settle("a", 10, 0) == 0  # nothing bought
    assert steps.reserve("b", 4, 10, 30.0) == 4


def test_keys_share_one_hash_tag_and_namespaces_do_not_mix(server: RedisServer) -> None:
    client = redis.Redis.from_url(server.url)
    client.flushdb()
    team_a = RedisSteps(server.url, namespace="team-a")
    team_b = RedisSteps(server.url, namespace="team-b")
    assert team_a.take_lease("US", 30.0) and team_b.take_lease("US", 30.0)
    team_a.settle("x", 0, 3)
    assert (team_a.spent(), team_b.spent()) == (3, 0)
    keys = sorted(k.decode() for k in client.keys("*"))
    assert all(k.startswith(("{team-a}:", "{team-b}:")) for k in keys), keys
    assert abs(team_a.server_time() - time.time()) < 5


def test_the_url_password_is_a_secret() -> None:
    url = "redis://crawler:Redis-S3cret-Pw@127.0.0.1:1/0"
    assert masked_url(url) == "redis://crawler:***@127.0.0.1:1/0"
    assert masked_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert masked_url("redis://:Redis-S3cret-Pw@[::1]:6379") == "redis://:***@[::1]:6379"
    assert (
        masked_url("unix:///tmp/r.sock?db=1&password=Redis-S3cret-Pw")
        == "unix:///tmp/r.sock?db=1&password=***"
    )
    for odd in ("Red/is-S3cret", "Red?is-S3cret", "Red#is-S3cret", "Red@is-S3cret"):
        for form in (f"redis://crawler:{odd}@127.0.0.1:1/0", f"redis://:{odd}@127.0.0.1:1"):
            shown = masked_url(form)
            assert "S3cret" not in shown and "Red" not in shown, shown
            assert shown.endswith("***@127.0.0.1:1/0") or shown.endswith("***@127.0.0.1:1")
        shown = masked_url(f"redis://127.0.0.1:1/0?password={odd}&db=2")
        assert "S3cret" not in shown and shown.endswith("password=***&db=2"), shown
    steps = RedisSteps(url, namespace="t")
    assert "Redis-S3cret-Pw" not in repr(steps)
    with pytest.raises(redis.exceptions.ConnectionError) as info:
        steps.take_lease("US", 1.0)  # nothing listens on port 1
    assert "Redis-S3cret-Pw" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "namespace", "field"),
    [
        ("http://127.0.0.1:6379", "t", "url"),
        ("redis://127.0.0.1:6379", "a{b}", "namespace"),
        ("redis://127.0.0.1:6379", "", "namespace"),
        ("redis://127.0.0.1:notaport", "t", "url"),
    ],
)
def test_bad_settings_are_refused_before_any_call(url: str, namespace: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        RedisSteps(url, namespace=namespace)
    assert info.value.field == field


def test_a_session_key_means_one_proxy_in_every_process(
    server: RedisServer, steps: RedisSteps
) -> None:
    bound = _race(_race_to_bind, server, numbered=True)
    assert len(set(bound)) == 1  # whoever came first, every process got its proxy
    assert steps.bind_session("cart-1", "proxy-x", 60.0) == bound[0]  # until it expires


def test_moving_a_session_off_a_banned_proxy_happens_once(
    server: RedisServer, steps: RedisSteps
) -> None:
    assert steps.bind_session("cart-1", "proxy-banned", 60.0) == "proxy-banned"
    moved = _race(_race_to_rebind, server, numbered=True)
    assert len(set(moved)) == 1 and moved[0] != "proxy-banned"  # all follow the same move
    assert steps.rebind_session("cart-1", "proxy-banned", "proxy-late", 60.0) == moved[0]


def test_a_session_binding_expires(steps: RedisSteps) -> None:
    assert steps.bind_session("short", "a", 0.3) == "a"
    time.sleep(0.5)
    assert steps.bind_session("short", "b", 10.0) == "b"


def test_events_reach_another_process_in_order_and_within_a_second(
    server: RedisServer, steps: RedisSteps
) -> None:
    cursor, history = steps.events_after()
    assert history == [] and cursor == "0-0"
    steps.publish("batch", {"geo": "US", "proxies": ["10.0.0.1:8000", "10.0.0.2:8000"]})
    with pytest.raises(ValueError, match="'kind'"):
        steps.publish("batch", {"kind": "ban"})  # would pass for another kind of event
    context = multiprocessing.get_context("spawn")
    sent = context.Queue()
    publisher = context.Process(target=_publish_a_ban, args=(server.url, sent))
    cursor, first = steps.events_after(cursor)
    assert [e["kind"] for e in first] == ["batch"]
    publisher.start()
    try:
        cursor, later = steps.events_after(cursor, block=20.0)  # wakes when it arrives
        read_at = steps.server_time()
        published_at = sent.get(timeout=20)
    finally:
        publisher.join(10)
    assert later == [
        {"kind": "ban", "proxy": "10.0.0.1:8000", "domain": "shop.example", "@": cursor}
    ]  # (each with its id)
    assert read_at - published_at < 1.0
    assert steps.events_after(cursor) == (cursor, [])
    # A process that starts late reads the history it missed, oldest first.
    _, everything = RedisSteps(server.url, namespace="t").events_after()
    assert [e["kind"] for e in everything] == ["batch", "ban"]


def test_the_event_log_is_trimmed(server: RedisServer) -> None:
    redis.Redis.from_url(server.url).flushdb()
    steps = RedisSteps(server.url, namespace="t", max_events=100)
    for n in range(1000):
        steps.publish("failure", {"n": n})
    _, kept = steps.events_after(count=5000)
    assert 100 <= len(kept) < 1000  # approximately max_events (the stream trims by nodes)
    assert {k: v for k, v in kept[-1].items() if k != "@"} == {"kind": "failure", "n": 999}
