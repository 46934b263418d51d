"""proxypool: a TTL-aware rotating pool of residential proxies for Scrapy and requests, with a
typed client and CLI for the provider's API."""

from __future__ import annotations

import logging

from ._version import __version__
from .api import ProviderClient
from .errors import (
    AccountError,
    ApiConnectionError,
    ApiError,
    ApiResponseError,
    ConfigError,
    InvalidAppKey,
    InvalidGeo,
    PoolExhausted,
    ProviderError,
    ProxyPoolError,
    RealNameRequired,
)
from .geo import Geo
from .models import (
    Account,
    AccountStatus,
    CountryLocations,
    DailyUsage,
    LocationItem,
    Order,
    Product,
    ProductPage,
    ProductType,
    Proxy,
    StaticIp,
    StaticIpPage,
    StaticIpStatus,
)

__all__ = [
    "Account",
    "AccountError",
    "AccountStatus",
    "ApiConnectionError",
    "ApiError",
    "ApiResponseError",
    "ConfigError",
    "CountryLocations",
    "DailyUsage",
    "Geo",
    "InvalidAppKey",
    "InvalidGeo",
    "LocationItem",
    "Order",
    "PoolExhausted",
    "Product",
    "ProductPage",
    "ProductType",
    "ProviderClient",
    "ProviderError",
    "Proxy",
    "ProxyPoolError",
    "RealNameRequired",
    "StaticIp",
    "StaticIpPage",
    "StaticIpStatus",
    "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
