"""proxypool for Scrapy: ``ProxyPoolMiddleware`` (the downloader middleware) and
``ProxyPoolAddon``."""

from .addon import ProxyPoolAddon
from .middleware import ProxyPoolMiddleware

__all__ = ["ProxyPoolAddon", "ProxyPoolMiddleware"]
