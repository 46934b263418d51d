"""Every environment variable proxypool reads, named once.

The library's (read by ``ProviderClient``, the Scrapy settings and the CLI) share their names
with the Scrapy settings of the same meaning; the demo's are read by ``proxypool demo`` only.
"""

from __future__ import annotations

__all__ = [
    "API_URL_ENV",
    "APP_KEY_ENV",
    "DEMO_APP_KEY_ENV",
    "DEMO_LOG_ENV",
    "DEMO_LOG_LEVEL_ENV",
    "DEMO_PROXY_AUTH_ENV",
    "DEMO_RECORD_ENV",
    "DEMO_TARGET_ENV",
    "GATEWAY_ENV",
    "GATEWAY_PASSWORD_ENV",
    "GATEWAY_USER_ENV",
    "REDIS_URL_ENV",
]

#: The provider's app_key (admin rights over the account: never logged or shown).
APP_KEY_ENV = "PROXYPOOL_APP_KEY"
#: The provider API's base URL (scheme, host and prefix).
API_URL_ENV = "PROXYPOOL_API_URL"

#: ``proxypool demo``: the simulator's app_key (default: a fresh ``demo-...`` one).
DEMO_APP_KEY_ENV = "PROXYPOOL_DEMO_APP_KEY"
#: ``proxypool demo``: a ``user:password`` the demo's relays require.
DEMO_PROXY_AUTH_ENV = "PROXYPOOL_DEMO_PROXY_AUTH"
#: ``proxypool demo``: where the crawl's log goes, and at which level.
DEMO_LOG_ENV = "PROXYPOOL_DEMO_LOG"
DEMO_LOG_LEVEL_ENV = "PROXYPOOL_DEMO_LOG_LEVEL"
#: Internal to the demo's child processes (the crawl writes its record and finds its target).
DEMO_RECORD_ENV = "PROXYPOOL_DEMO_RECORD"
DEMO_TARGET_ENV = "PROXYPOOL_DEMO_TARGET"

#: The rotating gateway's ``host:port`` (Scrapy's ``PROXYPOOL_GATEWAY``, ``proxypool gateway url``).
GATEWAY_ENV = "PROXYPOOL_GATEWAY"
#: ``GatewaySource``: the proxy account's username and password, when not given.
GATEWAY_USER_ENV = "PROXYPOOL_GATEWAY_USER"
GATEWAY_PASSWORD_ENV = "PROXYPOOL_GATEWAY_PASSWORD"

#: The Redis that several processes share one pool through (Scrapy's ``PROXYPOOL_REDIS_URL``).
REDIS_URL_ENV = "PROXYPOOL_REDIS_URL"
