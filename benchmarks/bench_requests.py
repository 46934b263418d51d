"""Benchmark of the requests adapter: a plain Session through one real proxy vs the same Session
wrapped by ``wrap_session`` over that proxy, and memory over many distinct proxy URLs.

Run from the repository root (not part of the test suite; loopback only)::

    python benchmarks/bench_requests.py            # 2000 requests per round, 3 rounds, 10k URLs
    python benchmarks/bench_requests.py --quick    # a smoke run

What it measures, in one run:

1. requests/s and client CPU per request (this process's CPU time: the target site runs in a
   child process, the proxy is a proxy.py relay) for the plain and the wrapped session,
   sequentially and with 8 threads sharing one session. Rounds alternate plain/wrapped and the
   median round counts, so background load hits both alike.
2. RSS after 1k and after 10k requests spread over 10k distinct proxy URLs (distinct credentials
   on one local relay that ignores them; each pooled proxy expires after its batch is used, on an
   injected clock), i.e. what urllib3's per-proxy managers would pile up without eviction.

Targets (issue 4): wrapped >= 0.95x the plain session's throughput through the same proxy (both
sequential and threaded); RSS growth from 1k to 10k distinct proxies < 5 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import multiprocessing
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests

from proxypool.adapters import ProxyPoolAdapter, wrap_session
from proxypool.geo import Geo
from proxypool.models import Proxy
from proxypool.pool import ProxyPool
from proxypool.sim.relays import RelayFleet
from proxypool.sim.target import TargetSite

TARGET_RATIO = 0.95
TARGET_RSS_MB = 5.0
THREADS = 8


# -- the target site, in its own process so its CPU is not counted as the client's -------------


def _serve_target(conn: Connection) -> None:
    site = TargetSite(pages=50).start()
    # The benchmark reads no log: keep the child's memory flat over many requests.
    site._record = lambda hit: None  # type: ignore[method-assign]
    conn.send(site.url)
    conn.recv()  # blocks until the parent says stop (or dies)
    site.close()


class TargetProcess:
    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")  # POSIX only, like the relays
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve_target, args=(child,), daemon=True)
        self._process.start()
        self.url: str = self._conn.recv()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()


# -- sources for the pool ---------------------------------------------------------------------


class OneProxy:
    """A ProxySource that always hands out the same proxy."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        return [self.proxy]


class FreshCredentials:
    """A ProxySource whose every extracted proxy is a never-seen URL: one relay, new username."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.counter = itertools.count()

    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        return [
            Proxy(self.host, self.port, username=f"u{next(self.counter)}", password="pw")
            for _ in range(num)
        ]


class SteppingClock:
    """A monotonic clock the benchmark advances by hand (so proxies expire on schedule)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- measurements -----------------------------------------------------------------------------


def run(session: requests.Session, urls: list[str], threads: int) -> tuple[float, float]:
    """Fetch ``urls`` through ``session``; returns (requests per second, CPU seconds/request)."""

    def fetch(chunk: list[str]) -> None:
        for url in chunk:
            response = session.get(url, timeout=30)
            if response.status_code != 200:
                raise RuntimeError(f"unexpected HTTP {response.status_code} for {url}")

    chunks = [urls[i::threads] for i in range(threads)]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if threads == 1:
        fetch(urls)
    else:
        with ThreadPoolExecutor(threads) as executor:
            list(executor.map(fetch, chunks))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return len(urls) / wall, cpu / len(urls)


def compare(
    make_plain: Callable[[], requests.Session],
    make_wrapped: Callable[[], requests.Session],
    urls: list[str],
    threads: int,
    rounds: int,
) -> dict[str, tuple[float, float]]:
    """Median (req/s, CPU s/request) per kind over alternating rounds."""
    results: dict[str, list[tuple[float, float]]] = {"plain": [], "wrapped": []}
    for _ in range(rounds):
        for kind, make in (("plain", make_plain), ("wrapped", make_wrapped)):
            with make() as session:
                run(session, urls[: max(50, len(urls) // 20)], threads)  # warm the connections
                results[kind].append(run(session, urls, threads))
    return {
        kind: (
            statistics.median(r for r, _ in samples),
            statistics.median(c for _, c in samples),
        )
        for kind, samples in results.items()
    }


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; else the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1e6 if sys.platform == "darwin" else peak / 1e3


def distinct_proxies_rss(
    relay_host: str, relay_port: int, url: str, total: int
) -> dict[str, float]:
    """RSS after 1/10 of ``total`` and after ``total`` requests, each through a new proxy URL."""
    batch = 50
    clock = SteppingClock()
    pool = ProxyPool(
        FreshCredentials(relay_host, relay_port),
        life=1,
        batch=batch,
        min_size=1,
        expiry_margin=0.0,
        clock=clock,
    )
    session = wrap_session(requests.Session(), pool)
    adapter = session.get_adapter("http://")
    assert isinstance(adapter, ProxyPoolAdapter)
    step = 60.0 / batch  # each batch lives 60 s: used up (once per proxy) just as it expires
    marks: dict[str, float] = {}
    checkpoint = total // 10
    for n in range(1, total + 1):
        response = session.get(url, timeout=30)
        if response.status_code != 200:
            raise RuntimeError(f"unexpected HTTP {response.status_code}")
        clock.now += step
        if n in (checkpoint, total):
            gc.collect()
            marks[f"rss_{n}"] = rss_mb()
            marks[f"managers_{n}"] = float(len(adapter.proxy_manager))
    stats = pool.stats()
    marks["extracted"] = float(stats["extracted"])
    session.close()
    pool.close()
    return marks


# -- main -------------------------------------------------------------------------------------


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per mode")
    parser.add_argument("--distinct", type=int, default=10_000, help="distinct proxy URLs")
    parser.add_argument("--quick", action="store_true", help="a smoke run (small numbers)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.quick:
        args.requests, args.rounds, args.distinct = 300, 1, 1000
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            del os.environ[name]  # the plain session must use exactly the proxy we give it

    target = TargetProcess()
    failures: list[str] = []
    try:
        with RelayFleet(1) as fleet:
            relay = fleet["relay-0"]
            print(f"relay started in {fleet.startup_seconds:.2f} s; target {target.url}")
            urls = [f"{target.url}/page/{n % 50}" for n in range(args.requests)]

            def make_plain() -> requests.Session:
                session = requests.Session()
                session.proxies = {"http": relay.url, "https": relay.url}
                return session

            def make_wrapped() -> requests.Session:
                pool = ProxyPool(OneProxy(relay.proxy), batch=1, min_size=0)
                return wrap_session(requests.Session(), pool)

            print(
                f"\nthroughput through one proxy.py relay ({args.requests} requests, "
                f"median of {args.rounds} alternating rounds)"
            )
            print(f"{'mode':<12} {'session':<8} {'req/s':>9} {'CPU us/req':>11} {'ratio':>7}")
            for threads in (1, THREADS):
                mode = "sequential" if threads == 1 else f"{threads} threads"
                result = compare(make_plain, make_wrapped, urls, threads, args.rounds)
                (plain_rps, plain_cpu), (wrapped_rps, wrapped_cpu) = (
                    result["plain"],
                    result["wrapped"],
                )
                ratio = wrapped_rps / plain_rps
                print(f"{mode:<12} {'plain':<8} {plain_rps:9.0f} {plain_cpu * 1e6:11.0f}")
                print(
                    f"{mode:<12} {'wrapped':<8} {wrapped_rps:9.0f} "
                    f"{wrapped_cpu * 1e6:11.0f} {ratio:6.2f}x"
                )
                if ratio < TARGET_RATIO:
                    failures.append(f"{mode} throughput {ratio:.2f}x < {TARGET_RATIO}x")

            print(f"\nmemory over {args.distinct} distinct proxy URLs (one request each)")
            marks = distinct_proxies_rss(relay.host, relay.port, urls[0], args.distinct)
            small, big = args.distinct // 10, args.distinct
            growth = marks[f"rss_{big}"] - marks[f"rss_{small}"]
            print(
                f"RSS after {small}: {marks[f'rss_{small}']:.1f} MB "
                f"({marks[f'managers_{small}']:.0f} proxy managers held)"
            )
            print(
                f"RSS after {big}: {marks[f'rss_{big}']:.1f} MB "
                f"({marks[f'managers_{big}']:.0f} proxy managers held; "
                f"{marks['extracted']:.0f} proxies extracted)"
            )
            print(f"growth: {growth:+.2f} MB (target < {TARGET_RSS_MB} MB)")
            if growth >= TARGET_RSS_MB:
                failures.append(f"RSS growth {growth:.2f} MB >= {TARGET_RSS_MB} MB")
    finally:
        target.close()

    print("\ntargets: " + ("all met" if not failures else "MISSED " + ", ".join(failures)))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
