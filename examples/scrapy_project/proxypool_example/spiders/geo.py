"""``geo``: crawls one site from US/California IPs, and fetches its start page once more from
a British IP, to show the spider-wide and the per-request geography."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar
from urllib.parse import urlsplit

import scrapy
from scrapy.http import Response


class GeoSpider(scrapy.Spider):
    """``scrapy crawl geo -a url=https://example.com/ [-a max_pages=50]``."""

    name = "geo"
    # Validated against the provider's location list when the spider opens: a typo such as
    # "US/Califrnia" closes the spider at once ("did you mean 'California'?"), before any request.
    proxypool_geo = "US/California"
    # Further geographies the requests use, validated and pre-filled at start as well.
    proxypool_geos: ClassVar[list[str]] = ["GB"]

    def __init__(self, url: str = "https://example.com/", max_pages: str = "50", **kwargs: Any):
        super().__init__(**kwargs)
        self.start_url = url
        self.max_pages = int(max_pages)
        self.allowed_domains = [urlsplit(url).hostname or ""]
        self.seen = 0

    async def start(self) -> AsyncIterator[scrapy.Request]:
        yield scrapy.Request(self.start_url, callback=self.parse)
        # The same page from a British IP: one request, its own geography.
        yield scrapy.Request(
            self.start_url,
            callback=self.parse_from_gb,
            meta={"proxypool_geo": "GB"},
            dont_filter=True,
        )

    def parse(self, response: Response) -> Iterator[Any]:
        self.seen += 1
        yield {"url": response.url, "status": response.status, "from": "US/California"}
        if self.seen < self.max_pages:
            yield from response.follow_all(css="a::attr(href)", callback=self.parse)

    def parse_from_gb(self, response: Response) -> Iterator[Any]:
        yield {"url": response.url, "status": response.status, "from": "GB"}
