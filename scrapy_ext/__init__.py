"""proxypool for Scrapy: ``ProxyPoolMiddleware`` (the downloader middleware),
``ProxyPoolAddon``, and ``proxy_of(response)`` (the pool proxy that carried a page)."""

from .addon import ProxyPoolAddon
from .middleware import ProxyPoolMiddleware, proxy_of

__all__ = ["ProxyPoolAddon", "ProxyPoolMiddleware", "proxy_of"]
