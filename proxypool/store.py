"""Where pools agree: the steps several pools (threads, processes, machines) must take together.

A ``ProxyPool`` keeps its own view of its proxies in memory (so a pick stays O(1) and never waits
on the network). Given a ``store=``, it also takes the steps that must be one across every pool
of the store, through it:

- the **refill lease** (``take_lease`` / ``renew_lease`` / ``release_lease``): one extraction
  in flight per geography across every pool; its holder renews it while it extracts, and it
  expires by itself ``ttl`` seconds after the last renewal, so a pool whose process died blocks
  the others for ``ttl`` at most;
- the **budget** (``reserve`` / ``settle`` / ``spent``): ``max_extracted`` as one sum, reserved
  before paying and never passed;
- the **clock** (``now``): when a proxy bought by one pool stops being usable, judged on one
  clock for all (the Redis server's ``TIME`` for ``RedisStore``);
- **sticky sessions** (``bind_session`` / ``rebind_session``): a session key means one proxy in
  every pool; the first to bind it wins;
- the **event log** (``publish`` / ``events_after``): a batch bought, a ban, a failure, in
  order, for every other pool to apply to its own view (within a second).

Two stores:

- ``MemoryStore``: the steps in this process's memory, for pools of one process that should
  act as one (several pools over one account in one program), and to test the sharing without
  a server. A pool without ``store=`` shares nothing and takes none of these steps.
- ``RedisStore(url, *, namespace="proxypool")`` (``proxypool.redis_store``): every process
  and machine that names the same Redis and namespace shares one pool. Each step is one Lua
  script on keys sharing the namespace's hash tag (Redis Cluster works too). Needs redis-py:
  ``pip install 'proxypool[redis]'``. The URL's password is a secret: no repr, log line or
  error shows it. Proxy credentials a pool bought are stored in Redis (in the event log) so the
  other pools can use them: protect that Redis as you would the proxies. The app_key is never
  stored there.

What a store says is trusted as it is: give every pool of one namespace the same source,
``life`` and ``max_extracted``.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from ._validate import check_float, check_int
from .errors import ConfigError

__all__ = ["MemoryStore", "PoolStore", "StoreUnavailable"]


class StoreUnavailable(Exception):
    """The store cannot be reached (Redis down, a timeout): the pool buys nothing and serves the
    proxies it holds until it can be reached again. The message never holds a password."""


@runtime_checkable
class PoolStore(Protocol):
    """The steps pools take together (see the module docstring). Every method is thread-safe
    and may block on I/O; a pool calls them from its background thread and its refills, never
    from ``try_get``. A store that cannot be reached raises ``StoreUnavailable``."""

    def now(self) -> float:
        """The store's clock: seconds since the epoch, the same for every pool."""

    def take_lease(self, name: str, ttl: float) -> str | None:
        """Take the lease ``name`` for ``ttl`` seconds: a token, or None when another holds it."""

    def renew_lease(self, name: str, token: str, ttl: float) -> bool:
        """Extend the lease ``token`` holds to ``ttl`` seconds from now; False if it lapsed."""

    def release_lease(self, name: str, token: str) -> bool:
        """Give the lease back if ``token`` still holds it."""

    def reserve(self, holder: str, wanted: int, cap: int, ttl: float) -> int:
        """Reserve up to ``wanted`` of a budget of ``cap`` (spent and reserved count); how many."""

    def settle(self, holder: str, reserved: int, bought: int) -> int:
        """Turn ``holder``'s reservation into ``bought`` spent; the total spent."""

    def spent(self) -> int:
        """What was bought over every pool of the store."""

    def epoch(self, candidate: str) -> str:
        """The store's epoch: the first caller's ``candidate``, kept while the store keeps its
        data; another than before means the data (the budget spent) was lost."""

    def bind_session(self, key: str, proxy_id: str, ttl: float) -> str:
        """Bind ``key`` to ``proxy_id`` unless bound already; the proxy it is bound to."""

    def rebind_session(self, key: str, old: str, new: str, ttl: float) -> str:
        """Move ``key`` from ``old`` to ``new`` unless another moved it first; where it is."""

    def publish(self, kind: str, data: Mapping[str, Any]) -> str:
        """Append an event for every pool; its id."""

    def events_after(
        self, cursor: str = "0-0", *, count: int = 1000, block: float | None = None
    ) -> tuple[str, list[dict[str, Any]]]:
        """The events after ``cursor``, oldest first, waiting up to ``block`` s for one; each
        has its id (a cursor) under ``"@"``, and ids compare as ``(int, int)`` of ``"a-b"``."""

    def close(self) -> None:
        """Let go of connections. Idempotent."""


class MemoryStore:
    """The store's steps in this process's memory (see the module docstring): pools given the
    same ``MemoryStore`` act as one pool. ``max_events`` bounds the event log (oldest dropped);
    ``clock`` (epoch seconds) is the store's clock."""

    def __init__(self, *, max_events: int = 10_000, clock: Any = time.time) -> None:
        self.max_events = check_int(max_events, "max_events", min=100)
        if not callable(clock):
            raise ConfigError("clock must be a callable returning epoch seconds", field="clock")
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._leases: dict[str, tuple[str, float]] = {}
        self._spent = 0
        self._reserved: dict[str, tuple[int, float]] = {}
        self._sessions: dict[str, tuple[str, float]] = {}
        self._events: list[tuple[int, dict[str, Any]]] = []
        self._next_id = 1
        self._epoch: str | None = None

    def now(self) -> float:
        return float(self._clock())

    def take_lease(self, name: str, ttl: float) -> str | None:
        ttl = check_float(ttl, "ttl", min=0.0, min_exclusive=True, unit="seconds")
        with self._lock:
            now = self.now()
            held = self._leases.get(name)
            if held is not None and held[1] > now:
                return None
            token = secrets.token_hex(8)
            self._leases[name] = (token, now + ttl)
            return token

    def renew_lease(self, name: str, token: str, ttl: float) -> bool:
        with self._lock:
            held = self._leases.get(name)
            now = self.now()
            if held is None or held[0] != token or held[1] <= now:
                return False
            self._leases[name] = (token, now + ttl)
            return True

    def release_lease(self, name: str, token: str) -> bool:
        with self._lock:
            held = self._leases.get(name)
            if held is None or held[0] != token:
                return False
            del self._leases[name]
            return True

    def reserve(self, holder: str, wanted: int, cap: int, ttl: float) -> int:
        with self._lock:
            now = self.now()
            live = {h: r for h, r in self._reserved.items() if r[1] > now}
            self._reserved = live
            left = cap - self._spent - sum(n for n, _ in live.values())
            granted = max(0, min(wanted, left))
            if granted:
                self._reserved[holder] = (granted, now + ttl)
            return granted

    def settle(self, holder: str, reserved: int, bought: int) -> int:
        with self._lock:
            self._reserved.pop(holder, None)
            self._spent += bought
            return self._spent

    def spent(self) -> int:
        with self._lock:
            return self._spent

    def epoch(self, candidate: str) -> str:
        with self._lock:
            if self._epoch is None:
                self._epoch = candidate
            return self._epoch

    def bind_session(self, key: str, proxy_id: str, ttl: float) -> str:
        with self._lock:
            now = self.now()
            bound = self._sessions.get(key)
            if bound is not None and bound[1] > now:
                return bound[0]
            self._sessions[key] = (proxy_id, now + ttl)
            return proxy_id

    def rebind_session(self, key: str, old: str, new: str, ttl: float) -> str:
        with self._lock:
            now = self.now()
            bound = self._sessions.get(key)
            if bound is None or bound[1] <= now or bound[0] == old:
                self._sessions[key] = (new, now + ttl)
                return new
            self._sessions[key] = (bound[0], now + ttl)
            return bound[0]

    def publish(self, kind: str, data: Mapping[str, Any]) -> str:
        if "kind" in data or "@" in data:
            raise ValueError("publish: data must not have a 'kind' or '@' key (kind and id)")
        with self._lock:
            event_id = self._next_id
            self._next_id += 1
            self._events.append((event_id, {"kind": kind, **data}))
            if len(self._events) > self.max_events:
                del self._events[: len(self._events) - self.max_events]
            self._changed.notify_all()
        return f"{event_id}-0"

    def events_after(
        self, cursor: str = "0-0", *, count: int = 1000, block: float | None = None
    ) -> tuple[str, list[dict[str, Any]]]:
        after = int(cursor.split("-", 1)[0])
        with self._lock:
            if block and (not self._events or self._events[-1][0] <= after):
                self._changed.wait(block)
            found = [(i, e) for i, e in self._events if i > after][:count]
        if not found:
            return cursor, []
        return f"{found[-1][0]}-0", [{**e, "@": f"{i}-0"} for i, e in found]

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return "MemoryStore()"
