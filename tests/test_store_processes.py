"""One pool for many processes, on a real Redis-protocol server: real OS processes (requests
workers and Scrapy crawls) share a ``RedisStore`` namespace, and the provider simulator's and the
target site's own records decide: one extraction for a shared start, one budget, a ban found by
one process never paid for again by another, a process killed while holding the refill lease
blocking the others for the lease's life at most, and nothing ever sent without a proxy.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from _redis import RedisServer
from _scrapy_crawls import CrawlResult, run_crawl

from proxypool import RedisStore
from proxypool.sim.world import SimWorld

pytestmark = pytest.mark.timeout(180)

GEO = "US/California"
_namespaces = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as running:
        yield running


@pytest.fixture
def namespace(server: RedisServer) -> str:
    redis.Redis.from_url(server.url).flushdb()
    return f"p{next(_namespaces)}"


def _worker(
    env: dict[str, str],
    url: str,
    namespace: str,
    pages: list[str],
    options: dict[str, Any],
    start_at: float,
    out: Any,
    session_key: str | None = None,
) -> None:
    """A requests worker in a process of its own: a pool on the shared store, a wrapped
    session, ``pages`` fetched one after the other; puts (pages ok, pool stats, error)."""
    os.environ.update(env)
    import requests

    from proxypool import ProviderClient, ProxyPool, RedisStore, wrap_session

    time.sleep(max(0.0, start_at - time.time()))
    ok = 0
    error = ""
    client = ProviderClient()
    pool = ProxyPool(client, geo=GEO, store=RedisStore(url, namespace=namespace), **options)
    try:
        session = requests.Session()
        session.trust_env = False
        with wrap_session(session, pool, max_proxy_retries=6, session_key=session_key) as wrapped:
            for page in pages:
                answer = wrapped.get(page, timeout=10)
                ok += answer.status_code == 200
        stats = dict(pool.stats())
    except Exception as exc:  # reported to the test, which fails on it
        error = f"{type(exc).__name__}: {exc}"
        stats = dict(pool.stats())
    finally:
        pool.close()
        client.close()
    out.put((ok, stats, error))


def run_workers(
    world: SimWorld,
    server: RedisServer,
    namespace: str,
    batches: list[list[str]],
    options: dict[str, Any],
    *,
    together: bool = True,
    session_key: str | None = None,
) -> list[tuple[int, dict[str, Any], str]]:
    """Run one worker process per batch of pages: all at one moment (``together``), or one
    after the other."""
    context = multiprocessing.get_context("spawn")
    results = []
    env = dict(world.env())
    if together:
        out = context.Queue()
        start_at = time.time() + 3.0  # every worker has started and imported by then
        workers = [
            context.Process(
                target=_worker,
                args=(env, server.url, namespace, pages, options, start_at, out, session_key),
            )
            for pages in batches
        ]
        for worker in workers:
            worker.start()
        results = [out.get(timeout=120) for _ in workers]
        for worker in workers:
            worker.join(20)
        return results
    for pages in batches:
        out = context.Queue()
        worker = context.Process(
            target=_worker,
            args=(env, server.url, namespace, pages, options, 0.0, out, session_key),
        )
        worker.start()
        results.append(out.get(timeout=120))
        worker.join(20)
    return results


def test_processes_started_together_buy_one_batch_and_share_it(
    server: RedisServer, namespace: str
) -> None:
    with SimWorld({GEO: 4}, pages=40) as world:
        pages = [world.target.url_for(f"/page/{n}") for n in range(40)]
        results = run_workers(
            world,
            server,
            namespace,
            [pages[n::4] for n in range(4)],
            {"batch": 8, "min_size": 1, "life": 10},
        )
        calls = world.simulator.extraction_calls()
        direct = world.target.direct_hits()
    assert [error for _, _, error in results] == ["", "", "", ""]
    assert sum(ok for ok, _, _ in results) == 40
    assert len(calls) == 1, calls  # one extraction, for four processes
    assert sum(stats["extracted"] for _, stats, _ in results) == 8
    assert sorted(stats["received"] for _, stats, _ in results) == [0, 8, 8, 8]
    assert direct == []


def test_max_extracted_is_one_budget_over_the_processes(
    server: RedisServer, namespace: str
) -> None:
    """Each process would buy 3 batches of 4 for its pages (a proxy serves 2 and fails), but the
    budget of 10 is one for all: no more than 10 IPs are bought, whoever buys them."""
    with SimWorld({GEO: 6}, pages=60) as world:
        pages = [world.target.url_for(f"/page/{n}") for n in range(60)]
        results = run_workers(
            world,
            server,
            namespace,
            [pages[n::3] for n in range(3)],
            {"batch": 4, "min_size": 4, "life": 10, "max_extracted": 10},
        )
        calls = world.simulator.extraction_calls()
    bought = sum(call.ips for call in calls)
    assert bought <= 10, calls
    assert sum(stats["extracted"] for _, stats, _ in results) == bought
    assert all(error == "" or "max_extracted" in error for _, _, error in results), results


def test_a_ban_found_by_one_process_is_not_found_again_by_the_next(
    server: RedisServer, namespace: str
) -> None:
    with SimWorld({GEO: 3}, pages=30) as world:
        banned = world.relays_in(GEO)[0]
        world.target.ban(banned, 403)
        pages = [world.target.url_for(f"/page/{n}") for n in range(30)]
        first = run_workers(world, server, namespace, [pages[:10]], {"batch": 3, "min_size": 1})
        banned_hits = sum(hit.banned for hit in world.target.hits())
        world.target.clear()
        later = run_workers(
            world,
            server,
            namespace,
            [pages[10:20], pages[20:]],
            {"batch": 3, "min_size": 1},
            together=False,
        )
        later_bans = sum(hit.banned for hit in world.target.hits())
        calls = world.simulator.extraction_calls()
    assert first[0][0] == 10 and [ok for ok, _, _ in later] == [10, 10]
    assert banned_hits >= 1  # the first process met the ban
    assert later_bans == 0  # the next ones knew it from the first
    assert len(calls) == 1  # and used the batch the first one bought


def test_a_session_key_exits_through_one_proxy_in_every_process(
    server: RedisServer, namespace: str
) -> None:
    with SimWorld({GEO: 4}, pages=30) as world:
        pages = [world.target.url_for(f"/page/{n}") for n in range(30)]
        results = run_workers(
            world,
            server,
            namespace,
            [pages[n::3] for n in range(3)],
            {"batch": 4, "min_size": 1, "strategy": "random"},
            session_key="cart",
        )
        used = [u.lease.address for u in world.leases() if u.used]
    assert [error for _, _, error in results] == ["", "", ""]
    assert sum(ok for ok, _, _ in results) == 30
    assert len(used) == 1, used  # one proxy for the key, whichever process sent


def test_redis_killed_mid_crawl_and_restarted_empty_loses_no_page_and_keeps_the_budget(
    server: RedisServer, namespace: str
) -> None:
    """Two processes crawl while leases last 8 s (the pool uses each for 6 s), so each needs
    new proxies every few seconds; Redis is killed for 3 s in the middle and comes back
    without its data. No page is lost, nothing goes direct, and the IPs bought stay within the
    one budget (each process added what it had bought back to the emptied Redis)."""
    budget = 24
    with SimWorld({GEO: 6}, pages=160, time_scale=8.0 / 60, relay_latency=0.1) as world:
        pages = [world.target.url_for(f"/page/{n}") for n in range(160)]
        done: list[list[tuple[int, dict[str, Any], str]]] = []
        crawl = threading.Thread(
            target=lambda: done.append(
                run_workers(
                    world,
                    server,
                    namespace,
                    [pages[:80], pages[80:]],
                    {
                        "batch": 3,
                        "min_size": 2,
                        "life": 1,
                        "expiry_margin": 54,
                        "max_extracted": budget,
                    },
                )
            )
        )
        crawl.start()
        deadline = time.monotonic() + 30
        while world.target.count() < 20:  # a quarter done
            assert time.monotonic() < deadline, "the crawl never got going"
            time.sleep(0.05)
        server.kill()
        killed = world.target.count()
        time.sleep(3.0)
        served_while_down = world.target.count() - killed
        server.restart()
        restarted_at = datetime.now()  # (the simulator's clock)
        crawl.join(150)
        calls = world.simulator.extraction_calls()
        direct = world.target.direct_hits()
        served = world.target.paths_served_ok()
        spent = RedisStore(server.url, namespace=namespace).spent()
    (results,) = done
    assert [error for _, _, error in results] == ["", ""], results
    assert sum(ok for ok, _, _ in results) == 160
    assert set(served) >= {f"/page/{n}" for n in range(160)}
    assert direct == []
    assert served_while_down > 0  # the proxies held kept serving while Redis was away
    assert any(call.time > restarted_at and call.ips for call in calls)  # bought after it
    bought = sum(call.ips for call in calls)
    assert bought <= budget, calls
    # The emptied Redis counts every IP bought again, before the restart too: each process
    # added its own back, so the budget goes on from the right sum.
    assert any(call.time < restarted_at and call.ips for call in calls)
    assert spent == bought
    assert sum(stats["store_errors"] for _, stats, _ in results) > 0  # it was noticed


def _hold_the_lease_and_die(env: dict[str, str], url: str, namespace: str) -> None:
    """A process that begins an extraction (the API is slow) and is killed in the middle."""
    os.environ.update(env)
    from proxypool import ProviderClient, ProxyPool, RedisStore

    pool = ProxyPool(
        ProviderClient(timeout=60),
        geo=GEO,
        store=RedisStore(url, namespace=namespace),
        store_lease=4.0,
    )
    pool.refill()  # killed in here


def test_a_process_killed_holding_the_refill_lease_blocks_the_others_for_its_life_at_most(
    server: RedisServer, namespace: str
) -> None:
    with SimWorld({GEO: 2}, pages=4) as world:
        world.simulator.set_delay(30.0, path="ip/v3")
        context = multiprocessing.get_context("spawn")
        holder = context.Process(
            target=_hold_the_lease_and_die, args=(dict(world.env()), server.url, namespace)
        )
        holder.start()
        lease = f"{{{namespace}}}:lease:refill:{GEO}"
        check = redis.Redis.from_url(server.url)
        deadline = time.monotonic() + 30
        while not check.exists(lease):
            assert time.monotonic() < deadline, "the holder never took the lease"
            time.sleep(0.05)
        assert holder.pid is not None
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        killed_at = time.monotonic()
        world.simulator.set_delay(0, path="ip/v3")
        (result,) = run_workers(
            world,
            server,
            namespace,
            [[world.target.url_for("/page/1")]],
            {"batch": 2, "min_size": 1, "store_lease": 4.0},
            together=False,
        )
        waited = time.monotonic() - killed_at
    assert result[0] == 1 and result[2] == "", result
    assert waited < 4.0 + 15.0  # the lease's life, plus starting a process and its request


def crawl_side_by_side(
    tmp_path: Path,
    world: SimWorld,
    settings: dict[str, Any],
    starts: list[list[dict[str, Any]]],
) -> list[CrawlResult]:
    """One Scrapy crawl process per list of start requests, all at once."""
    results: dict[int, CrawlResult] = {}

    def crawl(n: int) -> None:
        results[n] = run_crawl(
            tmp_path / f"crawl-{n}",
            start=starts[n],
            env=world.env(),
            geo=GEO,
            settings=settings,
            timeout=120,
        )

    threads = [threading.Thread(target=crawl, args=(n,)) for n in range(len(starts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)
    return [results[n] for n in range(len(starts))]


def test_scrapy_crawls_in_two_processes_share_one_pool(
    tmp_path: Path, server: RedisServer, namespace: str
) -> None:
    with SimWorld({GEO: 4}, pages=40) as world:
        settings = {
            "PROXYPOOL_REDIS_URL": server.url,
            "PROXYPOOL_REDIS_NAMESPACE": namespace,
            "PROXYPOOL_BATCH": 8,
            "PROXYPOOL_MIN_SIZE": 1,
            "EXTENSIONS": {"_redis_probe.RedisThreadProbe": 0},
        }
        starts = [
            [{"url": world.target.url_for(f"/page/{p}")} for p in range(n, 40, 2)] for n in range(2)
        ]
        results = crawl_side_by_side(tmp_path, world, settings, starts)
        calls = world.simulator.extraction_calls()
        direct = world.target.direct_hits()
    for result in results:
        assert result.returncode == 0, str(result)
        assert result.finish_reason == "finished", str(result)
    assert results[0].ok_paths() | results[1].ok_paths() == {f"/page/{p}" for p in range(40)}
    assert direct == []
    assert len(calls) == 1, calls  # the two crawls bought one batch between them
    received = [r.stat("proxypool/received") for r in results]
    assert sorted(received) == [0, 8], received
    # The store's I/O never ran on the reactor's thread, though there was plenty of it.
    assert [r.stat("probe/redis_on_reactor", None) for r in results] == [0, 0]
    assert all(r.stat("probe/redis_elsewhere") > 0 for r in results)


def test_a_session_key_means_one_exit_in_two_scrapy_crawls(
    tmp_path: Path, server: RedisServer, namespace: str
) -> None:
    with SimWorld({GEO: 4}, pages=40) as world:
        settings = {
            "PROXYPOOL_REDIS_URL": server.url,
            "PROXYPOOL_REDIS_NAMESPACE": namespace,
            "PROXYPOOL_BATCH": 4,
            "PROXYPOOL_MIN_SIZE": 1,
            "PROXYPOOL_STRATEGY": "random",
        }
        starts = [
            [
                {
                    "url": world.target.url_for(f"/page/{p}"),
                    "meta": {"proxypool_session": "cart" if p % 4 < 2 else f"other-{p}"},
                }
                for p in range(n, 40, 2)
            ]
            for n in range(2)
        ]
        results = crawl_side_by_side(tmp_path, world, settings, starts)
        relay_of = {hit.path: hit.relay for hit in world.target.hits()}
    for result in results:
        assert result.returncode == 0, str(result)
    cart = {relay_of[f"/page/{p}"] for p in range(40) if p % 4 < 2}
    others = {relay_of[f"/page/{p}"] for p in range(40) if p % 4 >= 2}
    assert len(cart) == 1, cart  # one exit for the key, in both crawls
    assert len(others) > 1  # (while keys of their own spread over the relays)


# -- proxypool demo --processes ------------------------------------------------------------------


def _demo(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXYPOOL_")}
    return subprocess.run(
        [sys.executable, "-m", "proxypool", "demo", *argv],
        capture_output=True,
        text=True,
        timeout=170,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )


def test_demo_processes_shows_ips_bought_with_and_without_sharing() -> None:
    proc = _demo("--processes", "2", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    pages = summary["pages"]
    assert summary["alone"]["pages_ok"] == summary["shared"]["pages_ok"] == pages
    assert summary["direct_requests"] == 0
    # Alone, each process buys its own batches; shared, they buy one set between them.
    assert summary["shared"]["ips_bought"] < summary["alone"]["ips_bought"]
    assert summary["shared"]["extractions"] < summary["alone"]["extractions"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--processes", "1"], "--processes must be 2 to 16, got 1"),
        (["--processes", "17"], "--processes must be 2 to 16, got 17"),
        (["--processes", "2", "--serve"], "do not go together"),
    ],
)
def test_demo_processes_bad_input_is_said_at_once(argv: list[str], words: str) -> None:
    proc = _demo(*argv)
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr
