"""proxypool: a TTL-aware rotating pool of residential proxies for Scrapy and requests, with a
typed client and CLI for the provider's API."""

from __future__ import annotations

import logging

from ._version import __version__
from .adapters import (
    NoProxyAvailable,
    PoolBypassRefused,
    ProxyBanned,
    ProxyPoolAdapter,
    ProxyRequestFailed,
    UnusableURL,
    wrap_session,
)
from .api import ProviderClient, ProviderSession
from .errors import (
    AccountError,
    ApiConnectionError,
    ApiError,
    ApiResponseError,
    BanStorm,
    ConfigError,
    InvalidAppKey,
    InvalidGeo,
    PoolExhausted,
    ProviderError,
    ProxyPoolError,
    RealNameRequired,
)
from .geo import Geo, LocationCatalog
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
from .policy import Backoff, StatusBanPolicy
from .pool import PoolStats, ProxyPool, ProxySource
from .redis_store import RedisStore
from .sources import ExtractionSource, GatewaySource, ListSource, StaticIPSource
from .store import MemoryStore, PoolStore, StoreUnavailable

__all__ = [
    "Account",
    "AccountError",
    "AccountStatus",
    "ApiConnectionError",
    "ApiError",
    "ApiResponseError",
    "Backoff",
    "BanStorm",
    "ConfigError",
    "CountryLocations",
    "DailyUsage",
    "ExtractionSource",
    "GatewaySource",
    "Geo",
    "InvalidAppKey",
    "InvalidGeo",
    "ListSource",
    "LocationCatalog",
    "LocationItem",
    "MemoryStore",
    "NoProxyAvailable",
    "Order",
    "PoolBypassRefused",
    "PoolExhausted",
    "PoolStats",
    "PoolStore",
    "Product",
    "ProductPage",
    "ProductType",
    "ProviderClient",
    "ProviderError",
    "ProviderSession",
    "Proxy",
    "ProxyBanned",
    "ProxyPool",
    "ProxyPoolAdapter",
    "ProxyPoolError",
    "ProxyRequestFailed",
    "ProxySource",
    "RealNameRequired",
    "RedisStore",
    "StaticIPSource",
    "StaticIp",
    "StaticIpPage",
    "StaticIpStatus",
    "StatusBanPolicy",
    "StoreUnavailable",
    "UnusableURL",
    "__version__",
    "wrap_session",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
