"""Settings of the distributed example: one proxy pool and one request queue for every process.

``PROXYPOOL_REDIS_URL`` (read from the environment variable of the same name, like the app_key)
makes every process that names the same Redis and ``PROXYPOOL_REDIS_NAMESPACE`` share one pool:
one extraction in flight per geography, one ``PROXYPOOL_MAX_EXTRACTED`` budget, every IP bought
used by all, bans and sticky sessions known to all. scrapy-redis (0.9.1, checked with Scrapy
2.19: it works, with deprecation warnings of its own) keeps the scheduler's queue and the
duplicate filter in the same Redis, so the processes split the site's pages between them.
"""

import os

BOT_NAME = "distributed_example"
SPIDER_MODULES = ["distributed_example.spiders"]
NEWSPIDER_MODULE = "distributed_example.spiders"

ADDONS = {"scrapy_ext.ProxyPoolAddon": 0}

PROXYPOOL_GEO = "US/California"
PROXYPOOL_BATCH = 10
PROXYPOOL_MIN_SIZE = 2
PROXYPOOL_MAX_EXTRACTED = 200  # one budget for every process, never passed
PROXYPOOL_REDIS_NAMESPACE = "distributed-example"
# PROXYPOOL_REDIS_URL: from the environment (it may hold Redis's password).

# scrapy-redis: the request queue and the duplicate filter in the same Redis, so N processes
# crawl one site without fetching a page twice.
SCHEDULER = "scrapy_redis.scheduler.Scheduler"
DUPEFILTER_CLASS = "scrapy_redis.dupefilter.RFPDupeFilter"
# Kept when a process ends (the others may still be crawling): run.py clears both keys before
# a crawl starts.
SCHEDULER_PERSIST = True
REDIS_URL = os.environ.get("PROXYPOOL_REDIS_URL")
SCHEDULER_QUEUE_KEY = "distributed-example:requests"
SCHEDULER_DUPEFILTER_KEY = "distributed-example:dupefilter"
MAX_IDLE_TIME_BEFORE_CLOSE = 5  # seconds a process waits for work before it closes

ROBOTSTXT_OBEY = False
CONCURRENT_REQUESTS = 8
TELNETCONSOLE_ENABLED = False
FEED_EXPORT_ENCODING = "utf-8"
