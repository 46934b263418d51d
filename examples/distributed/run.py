"""Start N ``scrapy crawl shop`` processes on this machine, one pool and one queue between them,
and say what each fetched. On several machines, run ``scrapy crawl shop -a url=...`` on each with
the same ``PROXYPOOL_REDIS_URL`` (the start URL is pushed to Redis once, by this script).

    python run.py --processes 4 --url https://example.com/ [--out items]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", default="items", help="directory for each process's items")
    args = parser.parse_args()
    if not os.environ.get("PROXYPOOL_REDIS_URL"):
        parser.error("set PROXYPOOL_REDIS_URL (the Redis every process shares)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # A fresh crawl: the shared queue and duplicate filter of a previous one are cleared once,
    # here, not by each process (a late one would wipe the others' queue).
    import redis

    sys.path.insert(0, str(HERE))
    from distributed_example import settings
    from distributed_example.spiders.shop import ShopSpider

    client = redis.Redis.from_url(os.environ["PROXYPOOL_REDIS_URL"])
    client.delete(
        settings.SCHEDULER_QUEUE_KEY, settings.SCHEDULER_DUPEFILTER_KEY, ShopSpider.redis_key
    )
    client.lpush(ShopSpider.redis_key, json.dumps({"url": args.url}))  # where the crawl starts
    client.close()
    crawls = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scrapy",
                "crawl",
                "shop",
                "-O",
                f"{out / f'process-{n}.jsonl'}:jsonlines",
                "--loglevel",
                "WARNING",
            ],
            cwd=HERE,
        )
        for n in range(args.processes)
    ]
    codes = [crawl.wait() for crawl in crawls]
    for n, code in enumerate(codes):
        items = (out / f"process-{n}.jsonl").read_text(encoding="utf-8").splitlines()
        print(f"process {n}: exit {code}, {len(items)} pages")
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
