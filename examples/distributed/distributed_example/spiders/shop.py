"""``shop``: follows every link of the site whose start URL ``run.py`` pushed to Redis. Run it in
as many processes as you like: scrapy-redis shares the requests between them (its queue and
duplicate filter), proxypool shares the proxies (one pool). A process closes after
``MAX_IDLE_TIME_BEFORE_CLOSE`` seconds with nothing left to fetch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from scrapy.http import Response
from scrapy_redis.spiders import RedisSpider


class ShopSpider(RedisSpider):
    """``scrapy crawl shop``, once ``{"url": ...}`` is in the ``redis_key`` list (run.py)."""

    name = "shop"
    redis_key = "distributed-example:start_urls"

    def parse(self, response: Response) -> Iterator[Any]:
        yield {"url": response.url, "status": response.status}
        yield from response.follow_all(css="a::attr(href)", callback=self.parse)
