"""The Scrapy add-on: ``ADDONS = {"scrapy_ext.ProxyPoolAddon": 0}`` installs the middleware."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .middleware import ProxyPoolMiddleware

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

__all__ = ["MIDDLEWARE_PRIORITY", "ProxyPoolAddon"]

# Below HttpProxyMiddleware (750), so meta["proxy"] and Proxy-Authorization are set before it
# runs (it keeps them); between RetryMiddleware (550) and HttpCompressionMiddleware (590), so ban
# checks see decoded bodies and a ban is retried on another proxy before Scrapy's retry counts it.
MIDDLEWARE_PRIORITY = 560


class ProxyPoolAddon:
    """Enables ``ProxyPoolMiddleware`` at priority 560; nothing else is needed. Configure it with
    the ``PROXYPOOL_*`` settings; ``PROXYPOOL_ENABLED = False`` turns it off again. A priority the
    project already gives the middleware in ``DOWNLOADER_MIDDLEWARES`` (even ``None``) is kept."""

    def update_settings(self, settings: BaseSettings) -> None:
        settings.setdefault_in_component_priority_dict(
            "DOWNLOADER_MIDDLEWARES", ProxyPoolMiddleware, MIDDLEWARE_PRIORITY
        )
