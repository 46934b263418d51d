"""A Scrapy extension for crawls in tests: counts the Redis commands sent from the reactor's
thread (they must be none: the pool's store I/O runs in its own threads) and from elsewhere,
into the stats ``probe/redis_on_reactor`` and ``probe/redis_elsewhere``. It wraps redis-py's
``Connection.send_packed_command`` (the one method every command goes through)."""

from __future__ import annotations

import threading
from typing import Any

import redis.connection
from scrapy import signals


class RedisThreadProbe:
    def __init__(self, crawler: Any) -> None:
        self.stats = crawler.stats
        self.reactor_thread = threading.current_thread()  # from_crawler runs on it
        self.counts = {"on_reactor": 0, "elsewhere": 0}
        original = redis.connection.Connection.send_packed_command
        probe = self

        def send_packed_command(self: Any, *args: Any, **kwargs: Any) -> Any:
            where = (
                "on_reactor"
                if threading.current_thread() is probe.reactor_thread
                else ("elsewhere")
            )
            probe.counts[where] += 1
            return original(self, *args, **kwargs)

        redis.connection.Connection.send_packed_command = send_packed_command  # type: ignore[method-assign]
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Any) -> RedisThreadProbe:
        return cls(crawler)

    def spider_closed(self) -> None:
        self.stats.set_value("probe/redis_on_reactor", self.counts["on_reactor"])
        self.stats.set_value("probe/redis_elsewhere", self.counts["elsewhere"])
