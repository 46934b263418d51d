"""One file, no project: ``scrapy runspider examples/runspider_shop.py -a url=URL -O items.jsonl``.

The pool is switched on in the spider's own ``custom_settings`` (what ``scrapy runspider`` reads;
a project would put the same lines in ``settings.py``). The app_key and API URL come from the
environment (``PROXYPOOL_APP_KEY``, ``PROXYPOOL_API_URL``): try it offline with
``eval "$(proxypool demo --serve)"`` in another shell first, and ``-a url=$PROXYPOOL_DEMO_TARGET``.

Each item says which pool proxy carried its page (``proxy_of(response)``): its address and the
geography it was bought for. Never its credentials: a ``Proxy``'s ``str`` and ``repr`` hold none.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import scrapy
from scrapy.http import Response

from scrapy_ext import proxy_of


class ShopSpider(scrapy.Spider):
    name = "shop"
    custom_settings: ClassVar[dict[str, Any]] = {
        "ADDONS": {"scrapy_ext.ProxyPoolAddon": 0},
        "PROXYPOOL_GEO": "US/California",
    }

    def __init__(self, url: str = "https://example.com/", max_pages: str = "10", **kwargs: Any):
        super().__init__(**kwargs)
        self.start_urls = [url]
        self.max_pages = int(max_pages)
        self.seen = 0

    def parse(self, response: Response) -> Iterator[Any]:
        self.seen += 1
        proxy = proxy_of(response)
        yield {
            "url": response.url,
            "status": response.status,
            "proxy": proxy.address if proxy else None,
            "geo": str(proxy.geo) if proxy and proxy.geo else None,
        }
        if self.seen < self.max_pages:
            yield from response.follow_all(css="a::attr(href)", callback=self.parse)
