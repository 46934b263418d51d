"""Where a pool's state lives, and where pools agree.

Every ``ProxyPool`` keeps its proxies in a ``MemoryStore`` of its own: the entries, their
health (failures, cool-downs, bans), the rotation of each geography, sticky sessions, ban-storm
counts, the budget and the counters, behind one lock. The store's steps are the only code that
changes them: ``geography``, ``add_batch``, ``pick``, ``bind``, ``succeed``, ``fail``, ``ban``,
``expire``, ``empty``, ``take_departed``; for the budget ``begin_buy``, ``settle_buy``,
``cancel_buy``, ``spent_elsewhere``, ``close_budget`` (and ``budget_left`` to read it); for ban
storms ``storming`` and ``take_storm_news``; ``count_api_error`` and ``unserve`` for two
counters. The pool orchestrates around them (geography, scheduling refills, waiting, backoff,
listeners) and changes only the refill fields of a geography's record. A pick stays O(1) and
never waits on the network.

Given a ``store=``, a pool also takes the steps that must be one across every pool of the store
(threads, processes, machines), through it, and applies what the others report to its own
``MemoryStore`` (its local view, fed in the background):

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

import bisect
import dataclasses
import heapq
import itertools
import math
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ._validate import check_float, check_int
from .errors import BanStorm, ConfigError
from .geo import Geo
from .models import Proxy
from .policy import Backoff, RotationStrategy, Verdict, make_strategy

__all__ = ["HealthRules", "MemoryStore", "PoolStore", "StoreUnavailable"]


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


# -- a pool's own state -------------------------------------------------------------------------

# Entry states. Plain ints: compared on every pick.
_LIVE = 0
_COOLING = 1
_GONE = 2

_SERVE = Verdict.SERVE
_SKIP = Verdict.SKIP
_DROP = Verdict.DROP

_ANYWHERE = Geo()

_MAX_STREAKS = 4096  # domains whose all-banned batches are being counted (oldest dropped past it)
_MAX_ENTRY_BATCHES = 8  # batches one entry is counted in (a proxy extracted again and again)


@dataclass(frozen=True)
class HealthRules:
    """How a ``MemoryStore`` judges the proxies it holds (a ``ProxyPool`` passes its own):
    ``max_failures`` consecutive failures evict; a failure cools a proxy for ``cooldown``'s
    delay; ``storm_batches`` all-banned batches in a row for one site start a ban storm of
    ``storm_cooldown`` seconds (``None``: no storms); ``new_rotation`` makes the rotation of
    each geography; ``rng`` feeds the cool-down jitter."""

    max_failures: int = 3
    cooldown: Backoff = dataclasses.field(default_factory=lambda: Backoff(base=5.0, cap=120.0))
    storm_batches: int | None = 3
    storm_cooldown: float = 600.0
    new_rotation: Callable[[], RotationStrategy[Any]] = dataclasses.field(
        default=lambda: make_strategy("round_robin", random.Random())
    )
    rng: random.Random = dataclasses.field(default_factory=random.Random)

    def __post_init__(self) -> None:
        check_int(self.max_failures, "max_failures", min=1)
        if not isinstance(self.cooldown, Backoff):
            raise ConfigError("cooldown must be a proxypool.policy.Backoff", field="cooldown")
        if self.storm_batches is not None:
            check_int(self.storm_batches, "storm_batches", min=1)
        check_float(
            self.storm_cooldown, "storm_cooldown", min=0.0, min_exclusive=True, unit="seconds"
        )
        if not callable(self.new_rotation):
            raise ConfigError(
                "new_rotation must be a callable that makes a RotationStrategy",
                field="new_rotation",
            )
        if not isinstance(self.rng, random.Random):
            raise ConfigError("rng must be a random.Random instance", field="rng")


class _Batch:
    """The entries one extraction brought (new or duplicates), for ban-storm detection: ``size``
    of them, ``banned[domain]`` of which are banned for that domain. Mutated under the lock."""

    __slots__ = ("banned", "size")

    def __init__(self) -> None:
        self.size = 0
        self.banned: dict[str, int] = {}


class _Entry:
    """One held proxy and its health. Mutated only under the store's lock."""

    __slots__ = (
        "bans",
        "batches",
        "cool_until",
        "failures",
        "in_rotation",
        "proxy",
        "sessions",
        "state",
        "sub",
        "usable_until",
    )

    def __init__(self, proxy: Proxy, sub: _SubPool, usable_until: float) -> None:
        self.proxy = proxy
        self.sub = sub
        self.usable_until = usable_until
        self.state = _LIVE
        self.failures = 0
        self.cool_until = 0.0
        self.bans: set[str] | None = None
        self.sessions: set[Hashable] | None = None
        self.batches: list[_Batch] | None = None  # the extractions it came in (ban storms)
        # False once the rotation has dropped it (while cooling); re-added when it is LIVE again.
        self.in_rotation = True


class _SubPool:
    """The proxies of one (canonical) geography, and where its refill stands. Mutated only
    under the store's lock: the proxies by the store's steps, the refill fields (the lease a
    refill holds and how it ended, the backoff) by the pool that schedules refills."""

    __slots__ = (
        "api_failures",
        "begun_asked",
        "begun_received",
        "cooling",
        "cooling_count",
        "expiry",
        "geo",
        "index",
        "label",
        "last_added",
        "last_error",
        "last_failure",
        "next_due",
        "received",
        "refill_generation",
        "refilling",
        "retry_at",
        "rotation",
        "sessions",
        "usable",
    )

    def __init__(self, geo: Geo, rotation: RotationStrategy[_Entry]) -> None:
        self.geo = geo
        self.label = str(geo)
        self.rotation = rotation
        self.index: dict[Proxy, _Entry] = {}
        # (usable_until, entries of one batch), oldest first: batches arrive in clock order.
        self.expiry: deque[tuple[float, list[_Entry]]] = deque()
        # Min-heap of (cool_until, tiebreak, entry); stale items are skipped when popped.
        self.cooling: list[tuple[float, int, _Entry]] = []
        # The earliest time an entry may expire or finish cooling: below it, nothing to retire.
        self.next_due = math.inf
        self.sessions: dict[Hashable, _Entry] = {}
        self.usable = 0  # entries in state LIVE
        self.cooling_count = 0  # entries in state COOLING
        self.refilling = False  # the geography's refill lease: one extraction in flight
        self.refill_generation = 0
        self.last_added = 0
        self.received = 0  # proxies that joined from other pools of the store
        self.begun_received = 0  # (received when the refill in flight began)
        self.begun_asked = False  # (whether refill() began it)
        self.api_failures = 0  # consecutive failed refills, drives the backoff
        self.retry_at = -math.inf
        self.last_error: BaseException | None = None
        self.last_failure: BaseException | None = None  # what the last refill raised, if it did

    def next_cooled(self) -> float:
        """When the first cooling proxy may be usable again (inf: none cooling)."""
        return self.cooling[0][0] if self.cooling else math.inf


def _join(entry: _Entry, bought: _Batch) -> None:
    """Count ``entry`` in the batch ``bought`` (once, even if the answer named it twice), with
    the domains it is already banned for. Caller holds the lock."""
    batches = entry.batches
    if batches is None:
        entry.batches = [bought]
    elif batches[-1] is bought:
        return
    else:
        batches.append(bought)
        if len(batches) > _MAX_ENTRY_BATCHES:
            del batches[0]  # that old batch can no longer become all banned: fewer storms
    bought.size += 1
    if entry.bans:
        banned = bought.banned
        for domain in entry.bans:
            banned[domain] = banned.get(domain, 0) + 1


class MemoryStore:
    """A pool's state in this process's memory, and the shared steps for pools of one process
    (see the module docstring).

    Every ``ProxyPool`` keeps its proxies in a ``MemoryStore`` of its own (made for it, with its
    ``HealthRules``): their entries, health, bans, rotation, sticky sessions, ban-storm counts,
    budget and counters, behind one ``lock``, changed only by the steps below (the caller holds
    ``lock``). ``changed`` is the condition over it: ``add_batch`` and ``succeed`` notify it when
    they make a proxy usable, and a ban storm's start does; ``expire`` does not (its caller is
    about to pick). Each step is O(1) in the number of proxies held but three: a pick that steps
    over proxies banned for its domain, ``empty`` (every proxy), and ``find`` of a proxy that is
    not the object handed out and has no geography (it looks in every geography).

    The shared steps (``take_lease`` ... ``events_after``) take ``lock`` themselves: never call
    them while holding it.

    Given as ``store=`` to several pools, a ``MemoryStore`` is where they agree (lease, budget,
    clock, sessions, events: the ``PoolStore`` steps): they act as one pool. ``max_events``
    bounds the event log (oldest dropped); ``clock`` (epoch seconds) is its clock for those
    steps. ``rules``: how the proxies it holds are judged (a pool passes its own)."""

    def __init__(
        self,
        *,
        max_events: int = 10_000,
        clock: Any = time.time,
        rules: HealthRules | None = None,
    ) -> None:
        self.max_events = check_int(max_events, "max_events", min=100)
        if not callable(clock):
            raise ConfigError("clock must be a callable returning epoch seconds", field="clock")
        if rules is not None and not isinstance(rules, HealthRules):
            raise ConfigError("rules must be a proxypool.store.HealthRules", field="rules")
        self.rules = rules if rules is not None else HealthRules()
        self._clock = clock
        self._lock = threading.Lock()
        self.lock = self._lock
        self.changed = threading.Condition(self._lock)
        # The proxies held, by geography; id(proxy) -> entry for every one (reports usually
        # name the very object a pick returned: an id lookup hashes no dataclass).
        self.subs: dict[Geo, _SubPool] = {}
        self._by_id: dict[int, _Entry] = {}
        self.departed: list[Proxy] = []  # proxies that left, for the pool's listeners
        self._tiebreak = itertools.count()
        # The rotation's verdict for a pick with no domain, and per domain (made once, kept
        # while few): each says what it judges by itself.
        self._any = self._judge
        self._verdicts: dict[str, Callable[[_Entry], Verdict]] = {}
        # Ban storms: domain -> all-banned batches in a row; domain -> when buying resumes.
        # (Read without the lock as a hint that there is anything to look up.)
        self.streaks: dict[str, int] = {}
        self.storms: dict[str, float] = {}
        self.storm_news: list[tuple[str, float]] = []  # storms started, still to be logged
        # Budget: IPs bought (paid) or minted (free), reserved by extractions in flight, bought
        # by the other pools of a shared store, and whether that store said none are left.
        self.extracted = 0
        self.minted = 0
        self.reserved = 0
        self.others_extracted = 0
        self.budget_gone = False
        # Counters.
        self.served = 0
        self.duplicates = 0
        self.refills = 0
        self.api_errors = 0
        self.successes = 0
        self.failures = 0
        self.bans = 0
        self.evictions = 0
        self.expired = 0
        self.ban_storms = 0
        # The shared steps.
        self._leases: dict[str, tuple[str, float]] = {}
        self._spent = 0
        self._reservations: dict[str, tuple[int, float]] = {}  # (the shared budget's)
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
            live = {h: r for h, r in self._reservations.items() if r[1] > now}
            self._reservations = live
            left = cap - self._spent - sum(n for n, _ in live.values())
            granted = max(0, min(wanted, left))
            if granted:
                self._reservations[holder] = (granted, now + ttl)
            return granted

    def settle(self, holder: str, reserved: int, bought: int) -> int:
        with self._lock:
            self._reservations.pop(holder, None)
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
            self.changed.notify_all()
        return f"{event_id}-0"

    def events_after(
        self, cursor: str = "0-0", *, count: int = 1000, block: float | None = None
    ) -> tuple[str, list[dict[str, Any]]]:
        after = int(cursor.split("-", 1)[0])
        with self._lock:
            if block and (not self._events or self._events[-1][0] <= after):
                self.changed.wait(block)
            found = [(i, e) for i, e in self._events if i > after][:count]
        if not found:
            return cursor, []
        return f"{found[-1][0]}-0", [{**e, "@": f"{i}-0"} for i, e in found]

    # -- the proxies a pool holds (each step: caller holds ``lock``) --------------------------

    def geography(self, geo: Geo) -> _SubPool:
        """The record of ``geo``'s proxies (made empty the first time)."""
        sub = self.subs.get(geo)
        if sub is None:
            sub = self.subs[geo] = _SubPool(geo, self.rules.new_rotation())
        return sub

    def begin_buy(self, num: int) -> None:
        """An extraction of ``num`` IPs starts: they are reserved from the budget."""
        self.reserved += num

    def cancel_buy(self, num: int) -> None:
        """The extraction that reserved ``num`` bought nothing (failed, called off, or another
        pool of a shared store bought instead): its reservation ends."""
        self.reserved -= num

    def settle_buy(self, num: int, bought: int, *, paid: bool) -> None:
        """The extraction that reserved ``num`` answered with ``bought`` IPs handed over: its
        reservation ends, they count as ``extracted`` (paid) or ``minted`` (free), and the
        refill is counted."""
        self.reserved -= num
        if paid:
            self.extracted += bought
        else:
            self.minted += bought
        self.refills += 1

    def spent_elsewhere(self, bought: int) -> None:
        """Another pool of a shared store bought ``bought`` IPs."""
        self.others_extracted += bought

    def close_budget(self) -> None:
        """A shared store said no more may be bought."""
        self.budget_gone = True

    def count_api_error(self) -> None:
        """A call to the provider (extraction, location lists) failed."""
        self.api_errors += 1

    def unserve(self) -> None:
        """The pick just counted was not handed out after all."""
        self.served -= 1

    def budget_left(self, cap: int | None) -> float:
        """IPs that may still be bought under ``cap`` (``None``: no cap)."""
        if cap is None:
            return math.inf
        if self.budget_gone:
            return 0
        return cap - self.extracted - self.reserved - self.others_extracted

    @staticmethod
    def _judge(entry: _Entry) -> Verdict:
        """The rotation's question "may this entry serve a pick?", for a pick with no domain."""
        if entry.state != _LIVE:
            entry.in_rotation = False
            return _DROP
        return _SERVE

    def _verdict_for(self, domain: str) -> Callable[[_Entry], Verdict]:
        """The rotation's question for a pick for ``domain``: entries banned there are skipped."""
        verdict = self._verdicts.get(domain)
        if verdict is not None:
            return verdict

        def judge(entry: _Entry) -> Verdict:
            if entry.state != _LIVE:
                entry.in_rotation = False
                return _DROP
            bans = entry.bans
            if bans is not None and domain in bans:
                return _SKIP
            return _SERVE

        verdicts = self._verdicts
        if len(verdicts) >= _MAX_STREAKS:
            verdicts.clear()  # (many sites: made again as they come)
        verdicts[domain] = judge
        return judge

    def pick(self, sub: _SubPool, session: Hashable | None, domain: str | None) -> _Entry | None:
        """A usable entry of ``sub`` for this request (the one ``session`` is bound to while it
        serves ``domain``, else the rotation's next, then bound to ``session``), or None.
        ``expire(sub, now)`` first, so every LIVE entry is within its usable life."""
        bound = None
        if session is not None:
            bound = sub.sessions.get(session)
            if (
                bound is not None
                and bound.state == _LIVE
                and (bound.bans is None or domain not in bound.bans)
            ):
                self.served += 1
                return bound
        if not sub.usable:
            return None
        entry = sub.rotation.pick(self._any if domain is None else self._verdict_for(domain))
        if entry is None:
            return None
        if session is not None:
            self._bind(sub, session, entry, bound)
        self.served += 1
        return entry

    @staticmethod
    def _bind(sub: _SubPool, session: Hashable, entry: _Entry, bound: _Entry | None) -> None:
        if bound is not None and bound is not entry and bound.sessions is not None:
            bound.sessions.discard(session)
        sub.sessions[session] = entry
        if entry.sessions is None:
            entry.sessions = set()
        entry.sessions.add(session)

    def bind(
        self, sub: _SubPool, session: Hashable, proxy: Proxy, domain: str | None
    ) -> Proxy | None:
        """Bind ``session`` to ``proxy`` if ``sub`` holds it usable for ``domain``: the held
        object, or None."""
        entry = sub.index.get(proxy)
        if entry is None or entry.state != _LIVE:
            return None
        if domain is not None and entry.bans is not None and domain in entry.bans:
            return None
        self._bind(sub, session, entry, sub.sessions.get(session))
        return entry.proxy

    def add_batch(
        self, sub: _SubPool, proxies: list[Proxy], usable_until: float, now: float
    ) -> int:
        """Add a batch usable until ``usable_until`` (in the future) to ``sub``; how many entries
        are new. A proxy held already is a duplicate: its life extends, its health stays."""
        geo = sub.geo
        index = sub.index
        by_id = self._by_id
        rotation = sub.rotation
        batch: list[_Entry] = []
        bought = _Batch() if self.rules.storm_batches is not None else None
        added = 0
        # A batch's proxies usually share one Geo object, equal to ``geo``: compared once.
        equal_geo = geo
        for proxy in proxies:
            tag = proxy.geo
            if tag is not equal_geo:
                if tag == geo:
                    equal_geo = tag
                else:
                    proxy = dataclasses.replace(proxy, geo=geo)
            fresh = _Entry(proxy, sub, usable_until)
            entry = index.setdefault(proxy, fresh)  # one hash of the proxy, not two
            if bought is not None:
                _join(entry, bought)
            if entry is not fresh:
                self.duplicates += 1
                if usable_until > entry.usable_until:
                    entry.usable_until = usable_until
                    batch.append(entry)
                continue
            by_id[id(proxy)] = entry
            rotation.add(entry)
            batch.append(entry)
            added += 1
        if bought is not None:
            # Duplicates already banned somewhere: the batch may be all banned on arrival.
            for domain, banned in bought.banned.items():
                if banned == bought.size:
                    self._all_banned(domain, now)
        sub.usable += added
        if batch and usable_until != math.inf:  # (a proxy without an end never expires)
            expiry = sub.expiry
            if expiry and expiry[-1][0] > usable_until:
                # An end earlier than the last queued (a static IP's package): keep the queue in
                # end order, which expire() relies on to stop at the first batch not yet due.
                at = bisect.bisect_right([until for until, _ in expiry], usable_until)
                expiry.insert(at, (usable_until, batch))
            else:
                expiry.append((usable_until, batch))
            sub.next_due = min(sub.next_due, usable_until)
        if added:
            self.changed.notify_all()
        return added

    def find(self, proxy: Proxy) -> _Entry | None:
        """The held (live or cooling) entry for ``proxy``, or None."""
        entry = self._by_id.get(id(proxy))
        if entry is not None and entry.proxy is proxy:
            return entry
        # An equal proxy that is not the object handed out (copied, rebuilt by hand).
        if not isinstance(proxy, Proxy):
            raise ConfigError(
                f"proxy must be a Proxy handed out by this pool, not {type(proxy).__name__}",
                field="proxy",
            )
        geo = proxy.geo
        sub = self.subs.get(geo if geo is not None else _ANYWHERE)
        if sub is not None:
            entry = sub.index.get(proxy)
            if entry is not None:
                return entry
        if geo is None:  # no geography on it: look in every geography
            for sub in self.subs.values():
                entry = sub.index.get(proxy)
                if entry is not None:
                    return entry
        return None

    def succeed(self, proxy: Proxy, domain: str | None) -> None:
        """A request through ``proxy`` worked: its failures reset and a cool-down ends;
        ``domain`` (normalized) is not banning everything: its storm count restarts."""
        if domain is not None:
            self.streaks.pop(domain, None)
            self.storms.pop(domain, None)
        entry = self._by_id.get(id(proxy))
        if entry is None or entry.proxy is not proxy:  # (the fast case inline: hot path)
            entry = self.find(proxy)
            if entry is None:
                return
        self.successes += 1
        entry.failures = 0
        if entry.state == _COOLING:
            self._revive(entry)
            self.changed.notify_all()

    def ban(self, entry: _Entry, domain: str, now: float) -> bool:
        """``domain`` refused ``entry``: skipped for it from now on. Whether it is new."""
        if entry.bans is None:
            entry.bans = set()
        if domain in entry.bans:
            return False
        entry.bans.add(domain)
        self.bans += 1
        if entry.batches is not None:
            for bought in entry.batches:
                banned = bought.banned.get(domain, 0) + 1
                bought.banned[domain] = banned
                if banned == bought.size:
                    self._all_banned(domain, now)
        return True

    def fail(self, entry: _Entry, now: float) -> bool:
        """A request through ``entry`` failed: it cools down, or (``max_failures`` in a row)
        leaves. Whether it was evicted."""
        self.failures += 1
        entry.failures += 1
        if entry.failures >= self.rules.max_failures:
            self.evictions += 1
            self._remove(entry)
            return True
        sub = entry.sub
        if entry.state == _LIVE:
            sub.usable -= 1
            sub.cooling_count += 1
            entry.state = _COOLING
        until = now + self.rules.cooldown.delay(entry.failures - 1, self.rules.rng)
        entry.cool_until = until
        heapq.heappush(sub.cooling, (until, next(self._tiebreak), entry))
        sub.next_due = min(sub.next_due, until)
        return False

    def expire(self, sub: _SubPool, now: float) -> None:
        """Retire what expired in ``sub`` and revive what cooled down, touching only what is
        due (call when ``now >= sub.next_due``)."""
        expiry = sub.expiry
        while expiry and expiry[0][0] <= now:
            for entry in expiry.popleft()[1]:
                # Skip entries a later duplicate extended (they sit in a later batch too).
                if entry.state != _GONE and entry.usable_until <= now:
                    self.expired += 1
                    self._remove(entry)
        cooling = sub.cooling
        while cooling and cooling[0][0] <= now:
            until, _, entry = heapq.heappop(cooling)
            if entry.state == _COOLING and entry.cool_until == until:
                self._revive(entry)
        sub.next_due = min(
            expiry[0][0] if expiry else math.inf, cooling[0][0] if cooling else math.inf
        )

    def empty(self) -> None:
        """Every held proxy leaves (a pool closing)."""
        for sub in self.subs.values():
            for entry in list(sub.index.values()):
                self._remove(entry)
            sub.rotation.clear()
            sub.expiry.clear()
            sub.cooling.clear()
            sub.next_due = math.inf

    def take_departed(self) -> list[Proxy]:
        """The proxies that left since the last call (``departed`` is emptied in place)."""
        departed = self.departed[:]
        self.departed.clear()
        return departed

    # -- ban storms --

    def _all_banned(self, domain: str, now: float) -> None:
        """A bought batch has just become all banned for ``domain``: count it, and start a
        storm once ``storm_batches`` came in a row."""
        limit = self.rules.storm_batches
        if limit is None or self.storming(domain, now):
            return
        streaks = self.streaks
        streak = streaks.pop(domain, 0) + 1  # (re-inserted last: the dict stays oldest-first)
        if streak < limit:
            if len(streaks) >= _MAX_STREAKS:
                del streaks[next(iter(streaks))]  # forget the site counted longest ago
            streaks[domain] = streak
            return
        # After the cool-down, one more all-banned batch starts the next storm.
        streaks[domain] = limit - 1
        self.storms[domain] = now + self.rules.storm_cooldown
        self.ban_storms += 1
        self.storm_news.append((domain, self.rules.storm_cooldown))
        self.changed.notify_all()  # requests waiting for this site give up now

    def storming(self, domain: str, now: float) -> bool:
        """Whether ``domain`` is in a ban storm now (an ended one is forgotten here)."""
        until = self.storms.get(domain)
        if until is None:
            return False
        if now < until:
            return True
        del self.storms[domain]
        return False

    def storm_error(self, domain: str, now: float) -> BanStorm:
        """The error for a request to ``domain`` while it storms."""
        left = self.storms[domain] - now
        return BanStorm(
            f"ban storm on {domain}: the last {self.rules.storm_batches} batches of proxies "
            f"bought were all banned there, so none is bought for it for {left:.0f} s more",
            domain=domain,
            retry_after=left,
        )

    def take_storm_news(self) -> list[tuple[str, float]]:
        """The storms started since the last call: (domain, cool-down seconds)."""
        news = self.storm_news[:]
        self.storm_news.clear()
        return news

    # -- transitions --

    def _revive(self, entry: _Entry) -> None:
        sub = entry.sub
        entry.state = _LIVE
        sub.cooling_count -= 1
        sub.usable += 1
        if not entry.in_rotation:
            entry.in_rotation = True
            sub.rotation.add(entry)

    def _remove(self, entry: _Entry) -> None:
        sub = entry.sub
        if entry.state == _LIVE:
            sub.usable -= 1
        elif entry.state == _COOLING:
            sub.cooling_count -= 1
        entry.state = _GONE
        proxy = entry.proxy
        if sub.index.get(proxy) is entry:
            del sub.index[proxy]
        if self._by_id.get(id(proxy)) is entry:
            del self._by_id[id(proxy)]
        if entry.sessions:
            for key in entry.sessions:
                if sub.sessions.get(key) is entry:
                    del sub.sessions[key]
        entry.sessions = None
        entry.bans = None
        entry.batches = None
        self.departed.append(proxy)

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        # Without the lock (a repr may be asked for anywhere): list() copies the values at once.
        held = sum(len(sub.index) for sub in list(self.subs.values()))
        return f"MemoryStore({held} proxies held)" if held else "MemoryStore()"
