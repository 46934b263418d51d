"""Benchmark of ProxyPool.get() + report_success() per operation against pool size, next to the
same pick loop on scrapy-rotating-proxies' ``Proxies`` class, plus bytes per pooled proxy.

Run from the repository root (not part of the test suite, no network)::

    python benchmarks/bench_pool.py            # sizes 100, 10k, 100k
    python benchmarks/bench_pool.py --quick    # fewer repeats, for a smoke run
    python benchmarks/bench_pool.py --instructions [--against OTHER_CHECKOUT]

``--instructions`` counts CPU instructions per get + report_success under valgrind's callgrind
(round robin; 2,000 and 22,000 operations on a built pool, the difference over 20,000), the
stable measure where timings swing; ``--against`` counts the same for another checkout's
``proxypool`` (say, the commit before a change) in the same run.

Targets (issue 3): get + report_success <= 2 us median per operation at 100k proxies; the cost at
100k <= 1.5x the cost at 100; <= 600 bytes per pooled proxy at 100k. Absolute times depend on the
machine, so the report also gives ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxypool.geo import Geo
from proxypool.models import Proxy
from proxypool.pool import ProxyPool

SIZES = (100, 10_000, 100_000)
STRATEGIES = ("round_robin", "random", "least_used")
TARGET_US = 2.0
TARGET_GROWTH = 1.5
TARGET_BYTES = 600
LIFE = 7200  # minutes (the longest the API allows): nothing expires while we measure


class CountingSource:
    """Hands out distinct proxies (IPv4 host, port 10000-59999), like the provider's answers."""

    def __init__(self, seed: int = 7) -> None:
        self._next = 0
        self._rng = random.Random(seed)

    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        start = self._next
        self._next += num
        return [
            Proxy(
                f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
                self._rng.randrange(10_000, 60_000),
                geo=geo,
            )
            for i in range(start, start + num)
        ]


def build_pool(size: int, strategy: str) -> ProxyPool:
    pool = ProxyPool(
        CountingSource(), life=LIFE, batch=min(size, 500), min_size=0, strategy=strategy
    )
    while len(pool) < size:
        pool.refill()
    return pool


def per_op_seconds(op: Callable[[], object], *, repeats: int, budget: float) -> float:
    """Median seconds per call of ``op`` over ``repeats`` timed runs of about ``budget`` s each."""
    started = time.perf_counter()
    op()
    calls = max(1, int(budget / max(time.perf_counter() - started, 1e-7)))
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            op()
        samples.append((time.perf_counter() - started) / calls)
    return statistics.median(samples)


def pool_op(pool: ProxyPool) -> Callable[[], object]:
    get, report = pool.get, pool.report_success

    def op() -> None:
        report(get())

    return op


def rotating_proxies_op(size: int) -> Callable[[], object]:
    from rotating_proxies.expire import Proxies  # benchmark-only comparison; not a dependency

    proxies = Proxies(
        [f"http://10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:8000" for i in range(size)]
    )

    def op() -> None:
        proxies.mark_good(proxies.get_random())

    return op


def bytes_per_proxy(size: int, build: Callable[[int], object]) -> float:
    """Traced memory held by what ``build(size)`` returns, per proxy (proxies and strings
    included)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build(size)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return (after - before) / size


def rotating_proxies_container(size: int) -> object:
    from rotating_proxies.expire import Proxies

    return Proxies(
        [f"http://10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:8000" for i in range(size)]
    )


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:10.2f}"


_LOOP = """
import sys
sys.path.insert(0, {root!r})
import proxypool.pool  # the checkout measured, imported before bench_pool adds its own
sys.path.insert(0, {here!r})
import bench_pool
op = bench_pool.pool_op(bench_pool.build_pool({size}, "round_robin"))
for _ in range({ops}):
    op()
"""


def instructions_per_op(root: Path, size: int) -> float:
    """CPU instructions per get + report_success with ``root``'s proxypool, under callgrind."""
    totals = []
    with tempfile.TemporaryDirectory() as tmp:
        for ops in (2_000, 22_000):
            out = Path(tmp) / f"{ops}.callgrind"
            code = _LOOP.format(root=str(root), here=str(Path(__file__).parent), size=size, ops=ops)
            subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={out}",
                    os.path.realpath(sys.executable),
                    "-c",
                    code,
                ],
                check=True,
                capture_output=True,
            )
            totals.append(
                next(
                    int(line.split()[1])
                    for line in out.read_text().splitlines()
                    if line.startswith("totals:")
                )
            )
    return (totals[1] - totals[0]) / 20_000


def report_instructions(sizes: list[int], against: Path | None) -> int:
    here = Path(__file__).resolve().parent.parent
    print("get + report_success, CPU instructions per operation (callgrind, round robin)")
    extra = f" | {'--against':>10} | ratio" if against is not None else ""
    print(f"{'proxies':>8} | {'this tree':>10}{extra}")
    for size in sizes:
        ours = instructions_per_op(here, size)
        row = f"{size:>8} | {ours:>10.0f}"
        if against is not None:
            theirs = instructions_per_op(against, size)
            row += f" | {theirs:>10.0f} | {ours / theirs:.3f}"
        print(row)
    return 0


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer and shorter repeats")
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions per operation instead"
    )
    parser.add_argument(
        "--against", type=Path, help="with --instructions: another checkout to count beside"
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.instructions:
        if shutil.which("valgrind") is None:
            parser.error("--instructions needs valgrind (callgrind) on the PATH")
        if args.against is not None and not (args.against / "proxypool" / "pool.py").is_file():
            parser.error(f"--against: no proxypool/pool.py under {args.against}")
        return report_instructions(args.sizes or [100, 10_000], args.against)
    if args.against is not None:
        parser.error("--against goes with --instructions")
    repeats, budget = (3, 0.05) if args.quick else (7, 0.2)
    sizes: list[int] = args.sizes or list(SIZES)

    ours: dict[str, dict[int, float]] = {s: {} for s in STRATEGIES}
    theirs: dict[int, float] = {}
    for size in sizes:
        for strategy in STRATEGIES:
            pool = build_pool(size, strategy)
            ours[strategy][size] = per_op_seconds(pool_op(pool), repeats=repeats, budget=budget)
            del pool
        theirs[size] = per_op_seconds(rotating_proxies_op(size), repeats=repeats, budget=budget)

    print(f"get + report_success, median us per operation (Python {sys.version.split()[0]})")
    header = f"{'proxies':>8} |" + "".join(f"{s:>12}" for s in STRATEGIES)
    print(header + f" | {'rotating_proxies':>16} | {'ratio':>8}")
    print("-" * (len(header) + 30))
    for size in sizes:
        row = f"{size:>8} |" + "".join(f"{fmt_us(ours[s][size]):>12}" for s in STRATEGIES)
        ratio = theirs[size] / ours["round_robin"][size]
        print(row + f" | {fmt_us(theirs[size]):>16} | {ratio:7.0f}x")
    print("ratio = rotating_proxies / proxypool round_robin (higher is better for proxypool)")

    failures = []
    big, small = max(sizes), min(sizes)
    default = ours["round_robin"]
    growth = default[big] / default[small]
    print(f"\ncost at {big} / cost at {small} (round_robin): {growth:.2f}x", end="")
    print(f" (target <= {TARGET_GROWTH})")
    print(f"median at {big}: {default[big] * 1e6:.2f} us (target <= {TARGET_US} us)")
    if growth > TARGET_GROWTH:
        failures.append("growth")
    if default[big] * 1e6 > TARGET_US:
        failures.append("latency")

    mem_ours = bytes_per_proxy(big, lambda n: build_pool(n, "round_robin"))
    mem_theirs = bytes_per_proxy(big, rotating_proxies_container)
    print(
        f"bytes per pooled proxy at {big}: proxypool {mem_ours:.0f} (target <= {TARGET_BYTES}), "
        f"rotating_proxies {mem_theirs:.0f}"
    )
    if mem_ours > TARGET_BYTES:
        failures.append("memory")
    print("targets: " + ("all met" if not failures else "MISSED " + ", ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
