"""Settings of the example project: the proxypool add-on and its ``PROXYPOOL_*`` settings.

``PROXYPOOL_APP_KEY`` and ``PROXYPOOL_API_URL`` are read from the environment variables of the
same names, so the key stays out of the project's files.
"""

BOT_NAME = "proxypool_example"
SPIDER_MODULES = ["proxypool_example.spiders"]
NEWSPIDER_MODULE = "proxypool_example.spiders"

# Installs scrapy_ext.ProxyPoolMiddleware at 560 (before HttpProxyMiddleware): every request
# goes through a proxy from the pool, or not at all.
ADDONS = {"scrapy_ext.ProxyPoolAddon": 0}

PROXYPOOL_GEO = "US"  # the default; the spider narrows it with its proxypool_geo attribute
PROXYPOOL_LIFE = 10  # minutes each extracted IP is kept
PROXYPOOL_BATCH = 20  # IPs per extraction
PROXYPOOL_MIN_SIZE = 5  # refill in the background below this many live proxies per geography
PROXYPOOL_BAN_STATUSES = [403, 429]
PROXYPOOL_MAX_PROXY_RETRIES = 3

ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 8
AUTOTHROTTLE_ENABLED = False  # throttling, when enabled, stays per site, not per proxy
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False
FEED_EXPORT_ENCODING = "utf-8"
