"""ProxyPool: the TTL-aware rotating pool of extracted proxies, with health tracking and
single-flight refill per geography. All HTTP happens in the client. The pool is orchestration
(geography, scheduling refills, waiting, backoff, listeners, sharing); its proxies and their
health live in a ``proxypool.store.MemoryStore`` of its own, changed only by that store's
steps under its one lock.

A pooled proxy moves through these states::

    extracted ──► LIVE ◄──── cool-down over, or report_success() ────┐
                   │                                                  │
                   └──── report_failure() ──────────────────────► COOLING
    LIVE or COOLING ──── failures reach max_failures ──► EVICTED  (leaves the pool)
    LIVE or COOLING ──── usable_until passes ─────────► EXPIRED  (leaves the pool)

Only LIVE proxies are handed out. ``usable_until`` is the clock reading when the proxy's batch
was requested, plus ``life`` minutes, minus ``expiry_margin`` seconds: a proxy is never handed out
that close to the end of its life. A ban (``report_failure(proxy, domain=..., banned=True)``)
changes no state: the proxy is skipped for that domain only, for the rest of its life. Proxies
that leave (evicted, expired, or all of them on ``close()``) are announced to listeners
(``add_listener``) so integrations can drop per-proxy resources.

Duplicates: two extractions for the same geography can return the same proxy (equal
``host:port``, scheme and credentials). The pool keeps one entry per proxy and geography: a
duplicate extends that entry's life to the new batch's and keeps its health (failures, bans,
sessions); it is counted in ``stats()["duplicates"]`` (and in ``extracted``: it was paid for). A
proxy that has left (evicted or expired) and is extracted again starts over as a new entry.
The same proxy extracted for two different geographies is two entries with separate health.

Sources: what a source declares (``proxypool.sources.source_terms``) decides two rules. A source
whose proxies cost money each (``paid``, the default: extraction) has them counted as
``extracted`` and against ``max_extracted``, its surplus cut and its ban storms stop the buying;
a free one (a gateway's sessions, static IPs, your own list) has them counted as ``minted``, kept
whole, and never stops. A source whose proxies last ``life`` minutes (``expires``, the default)
has them retired as below; the others' stay until they fail.

Money: every IP the provider hands over counts against ``max_extracted`` (``stats()["extracted"]``),
whether or not it joins the pool: a source wrapper that drops some (an unreachable-proxy check)
returns an ``ExtractedBatch`` saying how many it was handed. Each extraction asks for at most the
budget left, reserved under the lock before the provider is called, so concurrent refills of
several geographies never pass it together. An answer with more IPs than asked for is cut to
``num`` (a WARNING says how many came); the surplus still counts, since the provider may bill
it: the pool then buys nothing more once the count reaches the cap.

Ban storms: each refill is a batch. A batch is all banned for a site once every proxy in it has
been reported banned for that domain (a duplicate already banned there counts at once). After
``ban_storm_batches`` such batches in a row for one domain, with no success reported for it in
between (``report_success(proxy, domain=...)``), the pool stops buying for that site for
``ban_storm_cooldown`` seconds: a request for it that finds no proxy it has not banned raises
``BanStorm`` at once instead of starting an extraction (one WARNING per storm). Other sites are
served as before. After the cool-down one more all-banned batch starts the next storm; a success
for the site ends a storm and clears its count.

Cost: ``get()`` and the ``report_*`` calls are O(1) in the pool's size. Expiry is lazy: each
operation first retires what has come due in the sub-pool it touches (batches queue in expiry
order, cooling proxies in a heap), so nothing scans the whole pool periodically; the rotation
drops departed entries when it meets them. The one linear case is a ``get(domain=...)`` that has
to step over many proxies banned for that domain.

Thread-safety: every method may be called from any thread. One lock (its MemoryStore's) guards
the pool's memory and is never held during I/O (extraction, location lookups), logging, or while
listeners run. A top-up that starts while proxies are still usable runs in the pool's
``refill_runner`` (by default a short-lived daemon thread, ``proxypool-refill``, that ends with
its extraction).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from ._validate import MAX_EXTRACT_NUM, MAX_LIFE_MINUTES, check_float, check_int, shown
from .errors import AccountError, ConfigError, PoolExhausted, ProviderError
from .geo import Geo
from .models import Proxy
from .policy import Backoff, RotationStrategy, make_strategy
from .sources import ExtractedBatch, ProxySource, catalog_for, handed_over, source_terms
from .store import HealthRules, MemoryStore, PoolStore, StoreUnavailable, _SubPool

if TYPE_CHECKING:
    from ._sharing import Sharing

__all__ = [
    "ExtractedBatch",
    "GeoLike",
    "GeoValidator",
    "PoolStats",
    "ProxyPool",
    "ProxySource",
    "RefillRunner",
    "handed_over",
]

logger = logging.getLogger(__name__)

GeoLike = Geo | str | Mapping[str, Any] | None
"""What the pool accepts as a geography: a ``Geo``, ``"US/California"``, a dict, or ``None``."""

_MAX_DOMAIN = 253  # the longest DNS name
#: Seconds before a pool looks again when another pool of its store is buying for a geography.
_SHARED_RETRY = 0.5
#: Seconds before a refill tries again while its store cannot be reached.
_STORE_RETRY = 1.0


class GeoValidator(Protocol):
    """Checks that a geography exists; ``LocationCatalog`` is the implementation."""

    def validate(self, geo: Geo) -> Geo: ...


RefillRunner = Callable[[Callable[[], None]], object]
"""Runs a background refill: called with a job that takes no argument, it must run the job once,
soon, in some other thread (or inline, in tests). The job never raises."""


def _run_in_thread(job: Callable[[], None]) -> None:
    """The default ``RefillRunner``: a short-lived daemon thread per top-up. It lives as long as
    one extraction (the client's timeout bounds it) and holds no reference to the pool after."""
    threading.Thread(target=job, name="proxypool-refill", daemon=True).start()


class PoolStats(TypedDict):
    """Counters since the pool was made; ``live``/``cooling`` are per geo (``str(geo)``, ``"*"``
    for anywhere), counted now."""

    served: int
    extracted: int
    minted: int
    duplicates: int
    refills: int
    api_errors: int
    successes: int
    failures: int
    bans: int
    evictions: int
    expired: int
    ban_storms: int
    received: int
    store_errors: int
    live: dict[str, int]
    cooling: dict[str, int]


def _normalize_domain(domain: object) -> str:
    if not isinstance(domain, str) or not domain.strip() or len(domain) > _MAX_DOMAIN:
        raise ConfigError(
            f"domain must be a host name (1 to {_MAX_DOMAIN} characters), not {shown(domain)}",
            field="domain",
        )
    return domain.strip().lower()


def _check_session(session: object) -> None:
    """Sticky-session keys are dict keys: they must be hashable."""
    try:
        hash(session)
    except TypeError:
        raise ConfigError(
            f"session must be a hashable key (a str, an int, a tuple...), "
            f"not {type(session).__name__}",
            field="session",
        ) from None


class ProxyPool:
    """A rotating pool of proxies extracted from ``client``, one sub-pool per geography.

    ``client`` is a ``ProviderClient`` or any ``ProxySource`` (an object with
    ``extract(geo, *, num, life)``). ``geo`` is the default geography (``None``: anywhere).
    ``life`` is how long each extracted IP lives, in minutes (passed to the provider); ``batch``
    how many IPs one extraction asks for; ``min_size`` the number of live proxies per geography
    below which a refill starts. ``strategy`` is ``"round_robin"``, ``"random"``,
    ``"least_used"`` or a factory ``(rng) -> RotationStrategy``. ``expiry_margin`` (seconds): no
    proxy is handed out closer than this to the end of its life. ``max_failures``: consecutive
    failures that evict a proxy. ``catalog`` validates geographies before their first extraction;
    when omitted, a ``LocationCatalog`` is made for a ``ProviderClient`` or an ``ExtractionSource``
    (``proxypool.sources.catalog_for``, by type: no source is probed for methods); another
    source's geographies are validated only with a ``catalog`` given.
    ``clock`` returns monotonic seconds (all timeouts and lifetimes use it). ``max_extracted`` caps
    the IPs extracted over the pool's lifetime (a cost guard: every IP the provider hands over
    counts, see the module docstring). ``ban_storm_batches``: after this many bought batches in a
    row whose proxies were all banned by one site, stop buying for that site for
    ``ban_storm_cooldown`` seconds (``BanStorm``); ``None`` turns the detection off.
    ``cooldown`` is the backoff after a proxy fails (default 5 s doubling up to 120 s, full
    jitter), ``api_backoff`` the backoff after a failed or empty extraction (1 s doubling up to
    60 s, half jitter); ``rng`` feeds jitter and the random strategy. ``refill_runner`` runs
    every extraction ``get()`` starts (a top-up while proxies are still usable, so the ``get()``
    that notices never waits for it, or the refill an empty pool waits for, so a slow provider
    cannot hold ``get()`` past its timeout): by default each runs in a short-lived daemon thread
    named ``proxypool-refill``; pass ``lambda job: job()`` to run them inline (deterministic
    tests; ``get()`` is then bounded by the client's timeout only) or ``executor.submit`` to
    use a pool of your own.

    ``store``: a ``PoolStore`` (``RedisStore``, ``MemoryStore``) shared with other pools, which
    then act as one (see ``proxypool.store``): one extraction in flight per geography (a lease
    renewed while it runs, lapsing ``store_lease`` seconds after its holder stops), one
    ``max_extracted`` budget, every batch used by all, bans, failures and sticky sessions
    honoured everywhere, expiry on the store's clock. The pool talks to the store from its own
    background thread and its refills only; ``try_get`` never does. ``None``: nothing shared.

    Every argument is checked here (``ConfigError`` naming it); nothing is fetched until a proxy is
    needed. See the module docstring for the proxy state machine and thread-safety.

    Threads use ``get()``. Event-loop integrations use the non-blocking calls, running the
    blocking one in a worker thread::

        proxy = pool.try_get(geo, session=key, domain=host)  # never blocks; None if none usable
        if proxy is None:
            await run_in_thread(pool.refill, geo)  # blocking I/O, single-flight; then try again
        if pool.needs_refill(geo):  # top up ahead of time, fire and forget
            run_in_thread(pool.refill, geo)
    """

    def __init__(
        self,
        client: ProxySource,
        *,
        geo: GeoLike = None,
        life: int = 10,
        batch: int = 20,
        min_size: int = 5,
        strategy: str | Callable[[random.Random], RotationStrategy[Any]] = "round_robin",
        expiry_margin: float = 15.0,
        max_failures: int = 3,
        catalog: GeoValidator | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_extracted: int | None = None,
        cooldown: Backoff | None = None,
        api_backoff: Backoff | None = None,
        rng: random.Random | None = None,
        refill_runner: RefillRunner | None = None,
        ban_storm_batches: int | None = 3,
        ban_storm_cooldown: float = 600.0,
        store: PoolStore | None = None,
        store_lease: float = 15.0,
    ) -> None:
        if not callable(getattr(client, "extract", None)):
            raise ConfigError(
                "client must be a ProviderClient or have an extract(geo, *, num, life) method",
                field="client",
            )
        paid, expires = source_terms(client)
        self._paid = paid
        self._expires = expires
        self._default_geo = Geo.coerce(geo)
        self._life = check_int(life, "life", min=1, max=MAX_LIFE_MINUTES, unit="minutes")
        self._batch = check_int(batch, "batch", min=1, max=MAX_EXTRACT_NUM)
        self._min_size = check_int(min_size, "min_size", min=0)
        self._max_failures = check_int(max_failures, "max_failures", min=1)
        self._margin = check_float(expiry_margin, "expiry_margin", min=0.0, unit="seconds")
        if self._margin >= self._life * 60:
            raise ConfigError(
                f"expiry_margin ({self._margin:g} s) must be shorter than life "
                f"({self._life} min = {self._life * 60} s), or no proxy could ever be used",
                field="expiry_margin",
            )
        self._max_extracted = (
            None if max_extracted is None else check_int(max_extracted, "max_extracted", min=1)
        )
        if self._max_extracted is not None and not paid:
            raise ConfigError(
                f"max_extracted caps the IPs bought one by one, and {type(client).__name__}'s "
                "proxies are not (its source declares paid = False): leave it unset",
                field="max_extracted",
            )
        self._storm_batches = (
            None
            if ban_storm_batches is None
            else check_int(ban_storm_batches, "ban_storm_batches", min=1)
        )
        if not paid:
            self._storm_batches = None  # nothing is bought, so a storm stops nothing
        self._storm_cooldown = check_float(
            ban_storm_cooldown, "ban_storm_cooldown", min=0.0, min_exclusive=True, unit="seconds"
        )
        if not callable(clock):
            raise ConfigError("clock must be a callable returning monotonic seconds", field="clock")
        if rng is not None and not isinstance(rng, random.Random):
            raise ConfigError("rng must be a random.Random instance", field="rng")
        self._rng = rng if rng is not None else random.Random()
        if refill_runner is not None and not callable(refill_runner):
            raise ConfigError(
                "refill_runner must be a callable that runs a job in another thread",
                field="refill_runner",
            )
        self._runner: RefillRunner = refill_runner if refill_runner is not None else _run_in_thread
        for name, value in (("cooldown", cooldown), ("api_backoff", api_backoff)):
            if value is not None and not isinstance(value, Backoff):
                raise ConfigError(f"{name} must be a proxypool.policy.Backoff", field=name)
        self._cooldown = cooldown if cooldown is not None else Backoff(base=5.0, cap=120.0)
        self._api_backoff = (
            api_backoff if api_backoff is not None else Backoff(base=1.0, cap=60.0, jitter=0.5)
        )
        if isinstance(strategy, str):
            make_strategy(strategy, self._rng)  # validates the name now, not at first use
            name = strategy
            self._new_rotation: Callable[[], RotationStrategy[Any]] = lambda: make_strategy(
                name, self._rng
            )
        elif callable(strategy):
            factory = strategy
            self._new_rotation = lambda: factory(self._rng)
        else:
            raise ConfigError(
                f"strategy must be a strategy name or a factory, not {shown(strategy)}",
                field="strategy",
            )
        if catalog is None:
            # A provider-backed source (by its type, not by probing it for methods) validates
            # with the provider's location lists; any other source only with a given catalog.
            catalog = catalog_for(client, timer=clock)
        if catalog is not None and not callable(getattr(catalog, "validate", None)):
            raise ConfigError("catalog must have a validate(geo) -> Geo method", field="catalog")

        self._source = client
        self._catalog = catalog
        self._clock = clock
        self._strategy_name = strategy if isinstance(strategy, str) else "custom"

        # The pool's proxies, their health and its counters live in its own MemoryStore; its
        # lock guards them and the refill fields, and get() waits on its condition.
        self._state = state = MemoryStore(
            rules=HealthRules(
                max_failures=self._max_failures,
                cooldown=self._cooldown,
                storm_batches=self._storm_batches,
                storm_cooldown=self._storm_cooldown,
                new_rotation=self._new_rotation,
                rng=self._rng,
            )
        )
        self._lock = state.lock
        self._cond = state.changed
        self._subs = state.subs
        self._pick = state.pick  # (the hot path's steps, bound once)
        self._succeed = state.succeed
        # Raw geo argument (a Geo, a string) -> its sub-pool, once validated. Only grows.
        self._aliases: dict[Hashable, _SubPool] = {}
        self._default_sub: _SubPool | None = None
        # The Geo object last found by _lookup() and its sub-pool (see there).
        self._hot: tuple[object, _SubPool | None] = (object(), None)
        self._listeners: tuple[Callable[[Proxy], object], ...] = ()
        # Proxies that left under the lock (the state's list, emptied in place), announced to
        # listeners once it is released.
        self._pending = state.departed
        self._closed = False
        self._fatal: AccountError | None = None

        if store is not None and not isinstance(store, PoolStore):
            raise ConfigError(
                "store must be a PoolStore (proxypool.MemoryStore, proxypool.RedisStore), not "
                f"{type(store).__name__}",
                field="store",
            )
        lease = check_float(store_lease, "store_lease", min=1.0, unit="seconds")
        self._sharing: Sharing | None = None
        if store is not None:
            from ._sharing import Sharing

            self._sharing = Sharing(
                self, store, lease_ttl=lease, session_ttl=max(self._life * 60.0, lease)
            )

    # -- geography ---------------------------------------------------------------------------

    @property
    def geo(self) -> Geo:
        """The default geography (as given; canonical spelling once validated)."""
        sub = self._default_sub
        return sub.geo if sub is not None else self._default_geo

    def _lookup(self, geo: GeoLike) -> _SubPool | None:
        """The sub-pool for ``geo`` if it is already validated; never does I/O. Lock-free: the
        alias dict only grows, and a miss is settled under the lock by _subpool()."""
        if geo is None:
            return self._default_sub
        try:
            sub = self._aliases.get(geo)
        except TypeError:  # an unhashable dict
            return self._aliases.get(Geo.coerce(geo))
        if sub is not None and geo.__class__ is Geo:
            # Callers pass the same Geo object again and again (a spider's geography): the
            # next lookup of this one is an identity check (hashing a Geo runs Python code).
            self._hot = (geo, sub)
        return sub

    def _subpool(self, geo: GeoLike) -> _SubPool:
        """The sub-pool for ``geo``, validating the geography first if it is new (may do I/O)."""
        sub = self._lookup(geo)
        if sub is not None:
            return sub
        raw = self._default_geo if geo is None else Geo.coerce(geo)
        canonical = raw
        if self._catalog is not None and not raw.is_anywhere:
            try:
                canonical = self._catalog.validate(raw)
            except AccountError as exc:
                self._stop(exc)
                raise
            except ProviderError:
                with self._lock:
                    self._state.count_api_error()
                raise
        with self._lock:
            sub = self._state.geography(canonical)
            self._aliases[raw] = sub
            self._aliases[canonical] = sub
            if isinstance(geo, (str, Geo)):
                self._aliases[geo] = sub
            if raw == self._default_geo:
                self._default_sub = sub
        return sub

    def resolve_geo(self, geo: GeoLike = None) -> Geo:
        """Validate ``geo`` (default: the pool's) and return it in canonical spelling.

        Blocking: may fetch the provider's location lists on first use. Raises ``InvalidGeo``
        with suggestions for an unknown place, ``ConfigError`` for a malformed one, or the
        provider's error. Integrations call it at start-up to fail before any request.
        """
        return self._subpool(geo).geo

    # -- taking proxies ----------------------------------------------------------------------

    def get(
        self,
        geo: GeoLike = None,
        *,
        session: Hashable | None = None,
        domain: str | None = None,
        timeout: float = 30.0,
    ) -> Proxy:
        """A usable proxy for ``geo`` (default: the pool's geography). Blocking; thread-safe.

        ``session``: any hashable key; the same key gets the same proxy while it stays usable
        (not expired, evicted, cooling, or banned for ``domain``), then a new one. ``domain``:
        the target host (compared case-insensitively); proxies banned for it are skipped.
        ``timeout``: seconds (pool clock) to wait when nothing is usable; it bounds the call
        however slow the provider is (the first call for a new geography also waits for its
        validation, bounded by the client's timeout).

        While a proxy is usable, this returns at once: when that leaves the sub-pool below
        ``min_size`` (and no refill is in flight), the top-up starts in ``refill_runner``, never
        in this thread. Only when nothing is usable does the caller wait, for the extraction in
        flight or for one it starts (also in ``refill_runner``). Raises ``PoolExhausted``
        (chaining the last error, if any) when no proxy can be had in time, the
        ``max_extracted`` budget is spent or the pool is closed; ``BanStorm`` at once when
        ``domain`` is in a ban storm and no proxy it has not banned is left;
        ``InvalidAppKey``/``RealNameRequired`` as soon as the provider reports them;
        ``InvalidGeo``/``ConfigError`` for a bad geography.
        """
        # The checks below are written out inline: this is the hot path (see benchmarks/).
        if timeout.__class__ is not float or not 0.0 <= timeout < math.inf:
            timeout = check_float(timeout, "timeout", min=0.0, unit="seconds")
        if domain is not None:
            domain = _normalize_domain(domain)
        if session is not None and session.__class__ is not str:
            _check_session(session)
        if geo is None:
            sub = self._default_sub
        else:
            hot = self._hot  # (Geo, its sub-pool): one attribute read, so always a matching pair
            sub = hot[1] if geo is hot[0] else self._lookup(geo)
        if sub is None:
            try:
                sub = self._subpool(geo)
            except AccountError:
                raise
            except ProviderError as exc:
                raise PoolExhausted(f"could not validate geo {geo!s}: {exc}") from exc
        try:
            with self._lock:
                if self._closed or self._fatal is not None:
                    self._check_open()
                now = self._clock()
                if now >= sub.next_due:
                    self._state.expire(sub, now)
                if sub.usable >= self._min_size or not self._can_refill(sub, now):
                    entry = self._pick(sub, session, domain)
                    if entry is not None:
                        if session is None or self._sharing is None:
                            return entry.proxy
                        proxy = entry.proxy
                    else:
                        proxy = None
                else:
                    proxy = None
            if proxy is None:
                proxy = self._get_slow(sub, session, domain, now + timeout)
            if session is not None and self._sharing is not None:
                # One proxy per session key over every pool of the store (blocking I/O: get()
                # runs in a thread; try_get() leaves an unconfirmed key to it).
                proxy = self._sharing.confirm(sub, session, domain, proxy)
            return proxy
        finally:
            if self._pending:
                self._flush()

    def _get_slow(
        self, sub: _SubPool, session: Hashable | None, domain: str | None, deadline: float
    ) -> Proxy:
        """get() when a refill is due or nothing is usable: take and top up, refill, or wait.

        The extraction always runs in ``refill_runner``, so this thread only waits on the
        condition, never past ``deadline``: a slow provider cannot hold the caller."""
        refilled = False  # one extraction per call: a get() never starts two back to back
        while True:
            with self._lock:
                self._check_open()
                now = self._clock()
                if now >= sub.next_due:
                    self._state.expire(sub, now)
                entry = self._pick(sub, session, domain)
                if entry is not None:
                    if refilled or sub.usable >= self._min_size or not self._can_refill(sub, now):
                        return entry.proxy
                    # Proxies are left, just fewer than min_size: top up elsewhere, serve now.
                    num = self._begin_refill(sub)
                elif (
                    domain is not None and self._state.storms and self._state.storming(domain, now)
                ):
                    raise self._state.storm_error(domain, now)
                elif self._can_refill(sub, now):
                    num = self._begin_refill(sub)  # nothing usable: extract, and wait for it
                    refilled = True
                else:
                    self._cond.wait(self._wait_time(sub, now, deadline, domain))
                    continue
            if self._pending:
                self._flush()
            self._top_up(sub, num)
            if entry is not None:
                return entry.proxy

    def _wait_time(self, sub: _SubPool, now: float, deadline: float, domain: str | None) -> float:
        """How long get() may sleep before something can change; raises if nothing will in time.

        Caller holds the lock; nothing is usable for the request and no refill can start now.
        """
        can_buy = self._budget_left() > 0
        wake = deadline
        if can_buy and not sub.refilling:  # (an extraction in flight wakes us when it ends)
            wake = min(wake, sub.retry_at)
        cooled = sub.next_cooled()
        wake = min(wake, cooled)
        hopeless = not can_buy and not sub.refilling and cooled == math.inf
        if wake > now and not hopeless:
            return wake - now
        # Out of time, or nothing can come back: give up, saying why.
        reason = f"no usable proxy for {sub.label}"
        if domain is not None and sub.usable:
            reason += f" (the {sub.usable} live ones are banned for {domain})"
        if hopeless:
            raise PoolExhausted(
                f"{reason}: max_extracted={self._max_extracted} reached "
                f"({self._state.extracted} IPs extracted over this pool's lifetime)"
            ) from sub.last_error
        if sub.refilling:
            reason += "; an extraction is still in flight"
        elif sub.last_error is not None:
            reason += f"; last extraction failed: {sub.last_error}"
        raise PoolExhausted(f"{reason} within the timeout") from sub.last_error

    def try_get(
        self, geo: GeoLike = None, *, session: Hashable | None = None, domain: str | None = None
    ) -> Proxy | None:
        """A usable proxy for ``geo`` right now, or ``None``. Never blocks on I/O or waits.

        Meant for event loops. ``None`` means nothing is usable for this request yet (empty,
        cooling, banned for ``domain``, or the geography not validated yet): run
        ``refill(geo)`` in a worker thread, then try again. Raises ``BanStorm`` when ``domain``
        is in a ban storm and nothing it has not banned is left, ``PoolExhausted`` once the pool
        is closed, the ``AccountError`` once the provider has refused the account, and
        ``ConfigError`` for a malformed ``geo`` or ``domain``.
        """
        if domain is not None:
            domain = _normalize_domain(domain)
        if session is not None and session.__class__ is not str:
            _check_session(session)
        if geo is None:
            sub = self._default_sub
        else:
            hot = self._hot  # (Geo, its sub-pool): one attribute read, so always a matching pair
            sub = hot[1] if geo is hot[0] else self._lookup(geo)
        try:
            with self._lock:
                if self._closed or self._fatal is not None:
                    self._check_open()
                if sub is None:
                    Geo.coerce(geo)  # a malformed geo fails here, not later in a worker thread
                    return None
                now = self._clock()
                if now >= sub.next_due:
                    self._state.expire(sub, now)
                entry = self._pick(sub, session, domain)
                if entry is not None:
                    sharing = self._sharing
                    if (
                        session is not None
                        and sharing is not None
                        and sharing.confirmed.get((sub.geo, session)) is not entry.proxy
                    ):
                        # The store must say which proxy the key means everywhere: that is
                        # I/O, for get() in a thread.
                        self._state.unserve()
                        return None
                    return entry.proxy
                if domain is not None and self._state.storms and self._state.storming(domain, now):
                    raise self._state.storm_error(domain, now)  # refill() would buy for it
                return None
        finally:
            if self._pending:
                self._flush()

    # -- refilling ---------------------------------------------------------------------------

    def needs_refill(self, geo: GeoLike = None) -> bool:
        """Whether ``refill(geo)`` would extract now: the sub-pool has fewer than ``min_size``
        usable proxies (or its geography is not validated yet), no refill is in flight, the
        provider is not being backed off from, and the budget allows. Never blocks on I/O.

        For topping up ahead of time; after ``try_get()`` returned ``None``, call ``refill()``
        whatever this says (the usable proxies may all be banned for that domain)."""
        sub = self._lookup(geo)
        if sub is None:
            Geo.coerce(geo)  # a malformed geo fails here, not in the refill it would start
        try:
            with self._lock:
                if self._closed or self._fatal is not None:
                    return False
                if sub is None:
                    return self._budget_left() > 0
                now = self._clock()
                if now >= sub.next_due:
                    self._state.expire(sub, now)
                return sub.usable < self._min_size and self._can_refill(sub, now)
        finally:
            if self._pending:
                self._flush()

    def refill(
        self, geo: GeoLike = None, *, wait: bool = True, timeout: float | None = None
    ) -> int:
        """Extract one batch for ``geo`` now; return how many new proxies joined the pool.

        Blocking I/O (validates the geography on first use, then calls the provider); meant for a
        worker thread, and safe in any thread. Single-flight: if an extraction for this
        geography is in flight, waits for it and returns what it added. While the pool backs off
        after a failed or empty extraction it waits for the backoff to end (pool clock).
        ``wait=False`` returns 0 at once instead of waiting for either. Extracts even when the
        sub-pool holds ``min_size`` or more (with a ``store``: unless it does once caught up
        with the other pools, which may just have bought them). ``timeout`` (seconds, pool
        clock; ``None``: no bound but the client's own): the extraction runs in
        ``refill_runner`` and this call waits at most that long for it (or for the one in
        flight, or the backoff), then raises ``PoolExhausted``; the extraction goes on and its
        proxies still join the pool.

        Raises the provider's error when this extraction fails (the pool then backs off),
        ``InvalidAppKey``/``RealNameRequired`` (refilling stops for good), ``InvalidGeo``, or
        ``PoolExhausted`` when the pool is closed, ``max_extracted`` is spent or the timeout
        passed.
        """
        if not isinstance(wait, bool):
            raise ConfigError(f"wait must be True or False, not {shown(wait)}", field="wait")
        if timeout is not None:
            timeout = check_float(timeout, "timeout", min=0.0, unit="seconds")
        sub = self._subpool(geo)
        deadline = None if timeout is None else self._clock() + timeout
        try:
            while True:
                with self._lock:
                    self._check_open()
                    now = self._clock()
                    if now >= sub.next_due:
                        self._state.expire(sub, now)
                    if sub.refilling:
                        if not wait:
                            return 0
                        return self._await_refill(sub, deadline, rethrow=False)
                    if self._budget_left() <= 0:
                        raise PoolExhausted(
                            f"max_extracted={self._max_extracted} reached: "
                            f"{self._state.extracted} IPs extracted over this pool's lifetime; "
                            "no more will be bought"
                        )
                    if now < sub.retry_at:
                        if not wait:
                            return 0
                        if deadline is not None and deadline <= now:
                            raise self._refill_timeout(sub)
                        self._cond.wait(min(sub.retry_at, deadline or math.inf) - now)
                        continue
                    num = self._begin_refill(sub, asked=True)
                    generation = sub.refill_generation
                if self._pending:
                    self._flush()
                if deadline is None:
                    return self._run_refill(sub, num)
                self._top_up(sub, num)
                with self._lock:
                    if sub.refill_generation != generation:  # (an inline runner: done already)
                        return self._refill_result(sub, rethrow=True)
                    return self._await_refill(sub, deadline, rethrow=True)
        finally:
            if self._pending:
                self._flush()

    def _await_refill(self, sub: _SubPool, deadline: float | None, *, rethrow: bool) -> int:
        """Wait (holding the lock's condition) for the refill in flight for ``sub`` to end, until
        ``deadline`` (pool clock; None: no bound); its result as ``refill()`` returns it."""
        generation = sub.refill_generation
        while sub.refill_generation == generation and not self._closed:
            if deadline is None:
                self._cond.wait()
                continue
            left = deadline - self._clock()
            if left <= 0:
                raise self._refill_timeout(sub)
            self._cond.wait(left)
        return self._refill_result(sub, rethrow=rethrow)

    def _refill_result(self, sub: _SubPool, *, rethrow: bool) -> int:
        """After a refill of ``sub`` ended: what it added, or (``rethrow``: it was the caller's
        own) the error it raised. Caller holds the lock."""
        self._check_open()
        failure = sub.last_failure
        if rethrow and isinstance(failure, Exception):
            # The same object may be raised in several threads: drop its old traceback.
            raise failure.with_traceback(None)
        return sub.last_added

    def _refill_timeout(self, sub: _SubPool) -> PoolExhausted:
        what = "an extraction is still in flight" if sub.refilling else "the pool is backing off"
        return PoolExhausted(f"refill for {sub.label} did not end within the timeout ({what})")

    def _budget_left(self) -> float:
        return self._state.budget_left(self._max_extracted)

    def _can_refill(self, sub: _SubPool, now: float) -> bool:
        return not sub.refilling and now >= sub.retry_at and self._budget_left() > 0

    def _begin_refill(self, sub: _SubPool, *, asked: bool = False) -> int:
        """Mark a refill in flight and reserve its IPs; caller holds the lock. ``asked``: by
        ``refill()`` (see ``_run_refill`` for what that changes with a store)."""
        num = int(min(self._batch, self._budget_left()))
        sub.refilling = True
        sub.begun_received = sub.received
        sub.begun_asked = asked
        self._state.begin_buy(num)
        return num

    def _top_up(self, sub: _SubPool, num: int) -> None:
        """Hand the refill begun for ``sub`` (``_begin_refill``) to the runner; call without the
        lock. Never raises. The refill ends exactly once whatever the runner does, so ``sub``
        never stays marked as refilling: the job runs it, or it is called off (the pool closed
        before the job started) or failed (the runner raised before starting the job: the pool
        backs off as after a failed extraction)."""
        once = threading.Lock()  # taken by whichever of the job and the failure path comes first

        def job() -> None:
            if not once.acquire(blocking=False):
                return
            if self._closed:
                self._cancel_refill(sub, num)  # nobody needs it any more: buy nothing
                return
            # A failure is recorded on the sub-pool (backoff, last_error) and logged there.
            with contextlib.suppress(Exception):
                self._run_refill(sub, num)

        try:
            self._runner(job)
        except Exception as exc:
            if once.acquire(blocking=False):
                self._refill_failed(sub, num, exc)  # the job never started: a failed refill
            else:
                logger.warning(
                    "refill_runner failed after starting a refill for %s: %r", sub.label, exc
                )

    def _cancel_refill(self, sub: _SubPool, num: int) -> None:
        """End a refill that never called the provider; no error, no backoff."""
        with self._lock:
            self._state.cancel_buy(num)
            sub.refilling = False
            sub.refill_generation += 1
            sub.last_added = 0
            sub.last_failure = None
            self._wake()

    def _run_refill(self, sub: _SubPool, num: int) -> int:
        """Run one extraction (no lock held) and merge its result. Only the thread that called
        _begin_refill gets here, so this is the single flight for ``sub``."""
        started = self._clock()
        geo = None if sub.geo.is_anywhere else sub.geo

        asked_for = [num]  # (the shared budget may grant fewer)

        def buy(asked: int) -> tuple[list[Proxy], int, object]:
            """Extract ``asked``: (proxies kept, IPs handed over, the answer)."""
            asked_for[0] = asked
            answer = self._source.extract(geo, num=asked, life=self._life)
            proxies = list(answer)
            for proxy in proxies:
                if not isinstance(proxy, Proxy):
                    raise ConfigError(
                        f"client.extract() returned a {type(proxy).__name__}, not a Proxy",
                        field="client",
                    )
            if not self._paid:
                return proxies, len(proxies), answer  # (free: all are kept)
            # Every IP handed over was paid for; only ``asked`` were, so only those are kept.
            bought = handed_over(answer, len(proxies))
            if len(proxies) > asked:
                del proxies[asked:]
            return proxies, bought, answer

        sharing = self._sharing
        try:
            if sharing is None:
                proxies, bought, answer = buy(num)
            else:
                cap = self._max_extracted if self._paid else None
                # Nothing is bought if, once caught up with the other pools, a batch of theirs
                # arrived since this refill began; nor, for refill() (a pre-fill), if the
                # geography already holds min_size (another pool bought them before).
                begun, by_refill = sub.begun_received, sub.begun_asked
                shared = sharing.run_refill(
                    sub.geo,
                    num,
                    cap,
                    buy,
                    lambda: (
                        sub.received > begun or (by_refill and sub.usable >= self._min_size > 0)
                    ),
                )
                if shared is None or shared[1] < 0:
                    # Another pool is buying for this geography or just did (its batch comes
                    # as an event), or the shared budget is spent.
                    self._refill_elsewhere(sub, num, budget_gone=shared is not None)
                    return 0
                proxies, bought, answer = shared
        except BaseException as exc:
            self._refill_failed(sub, num, exc)
            raise
        asked = asked_for[0]
        if bought > asked and self._paid:
            # Said before the batch is merged, so it is on record before any waiter is served.
            logger.warning(
                "the provider handed over %d IPs for %s when %d were asked for: %d kept, all %d "
                "count against max_extracted",
                bought,
                sub.label,
                asked,
                len(proxies),
                bought,
            )
        with self._lock:
            now = self._clock()
            state = self._state
            state.settle_buy(num, bought, paid=self._paid)
            added = 0
            usable_until = started + self._life * 60 - self._margin if self._expires else math.inf
            too_late = usable_until <= now
            if not self._closed:
                if now >= sub.next_due:
                    self._state.expire(sub, now)
                lasts = answer.lasts if isinstance(answer, ExtractedBatch) else None
                if lasts and not too_late:
                    # Proxies with an end of their own (a static IP's package): one group per
                    # end, the others as usual; one that ends within the margin is not added.
                    groups: dict[float, list[Proxy]] = {}
                    for proxy in proxies:
                        left = lasts.get(proxy)
                        until = usable_until
                        if left is not None:
                            until = min(usable_until, started + left - self._margin)
                        groups.setdefault(until, []).append(proxy)
                    for until, group in groups.items():
                        if until > now:
                            added += state.add_batch(sub, group, until, now)
                elif not too_late:
                    added = state.add_batch(sub, proxies, usable_until, now)
                if added:
                    sub.api_failures = 0
                    sub.retry_at = -math.inf
                    sub.last_error = None
                else:
                    # An empty answer (or only duplicates) is backed off like an error, so a
                    # provider with nothing left for this geography is not asked in a loop.
                    sub.last_error = ProviderError(
                        f"extraction for {sub.label} returned no new proxies "
                        f"({len(proxies)} returned, asked for {asked})"
                    )
                    self._back_off(sub, now)
            sub.refilling = False
            sub.refill_generation += 1
            sub.last_added = added
            sub.last_failure = None
            usable = sub.usable
            closed = self._closed
            self._wake()
        if self._state.storm_news:
            self._log_storms()
        if too_late and not closed:
            logger.warning(
                "extraction for %s took longer than life minus expiry_margin; batch dropped",
                sub.label,
            )
        logger.debug(
            "refill %s: %d proxies handed over, %d new, %d usable",
            sub.label,
            bought,
            added,
            usable,
        )
        return added

    def _refill_elsewhere(self, sub: _SubPool, num: int, *, budget_gone: bool) -> None:
        """End a refill that bought nothing because another pool of the store is buying for
        this geography (its batch comes as an event: look again shortly), or because the
        shared budget is spent. Not a failure: no backoff grows."""
        with self._lock:
            self._state.cancel_buy(num)
            if budget_gone:
                self._state.close_budget()
            sub.refilling = False
            sub.refill_generation += 1
            sub.last_added = 0
            sub.last_failure = None
            sub.retry_at = max(sub.retry_at, self._clock() + _SHARED_RETRY)
            self._wake()
        if budget_gone:
            logger.warning(
                "max_extracted=%s reached over every pool of the store: no more IPs are bought",
                self._max_extracted,
            )

    def _adopt_session(
        self, sub: _SubPool, session: Hashable, domain: str | None, proxy: Proxy
    ) -> Proxy | None:
        """Bind ``session`` to ``proxy`` here (another pool of the store bound it so first), if
        this pool holds it usable for ``domain``: the pooled object, or None."""
        with self._lock:
            return self._state.bind(sub, session, proxy, domain)

    def _own_extracted(self) -> int:
        """IPs this pool bought itself (paid sources only)."""
        with self._lock:
            return self._state.extracted

    def _spent_elsewhere(self, bought: int) -> None:
        """Another pool of the store bought ``bought`` IPs (the store's budget decides; this
        keeps the pool from asking it when the sum says there is nothing left)."""
        with self._lock:
            self._state.spent_elsewhere(bought)

    def _merge_shared(self, geo: Geo, proxies: list[Proxy], usable_until: float) -> int:
        """A batch another pool of the store bought (its end on this pool's clock, before the
        margin): it joins this pool too. Returns how many are new here."""
        with self._lock:
            if self._closed:
                return 0
            sub = self._subs.get(geo)
            if sub is None:  # (its pool validated the geography)
                sub = self._state.geography(geo)
                self._aliases.setdefault(geo, sub)
            now = self._clock()
            if now >= sub.next_due:
                self._state.expire(sub, now)
            until = usable_until - self._margin if self._expires else math.inf
            if until <= now or not proxies:
                return 0
            added = self._state.add_batch(sub, proxies, until, now)
            sub.received += added
            if added:
                sub.api_failures = 0
                sub.retry_at = -math.inf
                sub.last_error = None
            self._wake()
            return added

    def _refill_failed(self, sub: _SubPool, num: int, exc: BaseException) -> None:
        with self._lock:
            self._state.cancel_buy(num)
            sub.refilling = False
            sub.refill_generation += 1
            sub.last_added = 0
            sub.last_failure = exc
            unreachable = isinstance(exc, StoreUnavailable)
            if unreachable:
                # The store, not the provider: nothing was bought. Look again soon (the pool's
                # store thread said so once), without growing the provider's backoff, so the
                # pool buys again as soon as the store is back.
                sub.last_error = exc
                sub.retry_at = self._clock() + _STORE_RETRY
            elif isinstance(exc, Exception):
                self._state.count_api_error()
                sub.last_error = exc
                if isinstance(exc, AccountError):
                    self._fatal = self._fatal or exc
                else:
                    self._back_off(sub, self._clock())
            retry_in = max(0.0, sub.retry_at - self._clock())
            closed = self._closed
            self._wake()
        if closed:
            # The pool was closed while this extraction was in flight: nobody waits for it and
            # no retry follows, so it is no warning (shutting down is not an error).
            logger.debug("extraction for %s ended after close: %s", sub.label, exc)
        elif unreachable:
            logger.debug("refill for %s waits for the store: %s", sub.label, exc)
        elif isinstance(exc, AccountError):
            logger.error("extraction for %s refused (%s): refilling stopped", sub.label, exc)
        elif isinstance(exc, Exception):
            logger.warning(
                "extraction for %s failed (%s); next try in %.1f s", sub.label, exc, retry_in
            )

    def _back_off(self, sub: _SubPool, now: float) -> None:
        sub.retry_at = now + self._api_backoff.delay(sub.api_failures, self._rng)
        sub.api_failures += 1

    # -- health ------------------------------------------------------------------------------

    def report_success(self, proxy: Proxy, *, domain: str | None = None) -> None:
        """A request through ``proxy`` worked: reset its failure count and end any cool-down.
        ``domain`` (the target host, optional): that site served a pool proxy, so it is not
        banning everything: its count of all-banned batches restarts and a ban storm on it ends.
        A ``domain`` that is no host name is ignored (no ban can have been counted for it), so
        reporting a success never fails. Unknown or departed proxies are ignored. Thread-safe;
        never blocks on I/O."""
        if domain is not None:
            # (Nothing to clear until some site had an all-banned batch: skip the parsing.)
            try:
                state = self._state
                domain = _normalize_domain(domain) if state.streaks or state.storms else None
            except ConfigError:
                domain = None
        with self._lock:
            self._succeed(proxy, domain)

    def report_failure(
        self, proxy: Proxy, *, domain: str | None = None, banned: bool = False
    ) -> None:
        """A request through ``proxy`` failed.

        ``banned=True`` (needs ``domain``): the target site refused the proxy; it is never handed
        out for that domain again (case-insensitive) but keeps serving others. Otherwise (a
        connection error, a timeout): the proxy cools down for an exponentially growing, jittered
        time (``cooldown``) and is evicted after ``max_failures`` consecutive failures. Unknown or
        departed proxies are ignored. Thread-safe; listeners of an eviction run after the lock is
        released.
        """
        if domain is not None:
            domain = _normalize_domain(domain)
        elif banned:
            raise ConfigError("report_failure(banned=True) needs the domain", field="domain")
        self._report(proxy, domain, banned, share=self._sharing is not None)

    def _report_shared(self, proxy: Proxy, *, domain: str | None, banned: bool) -> None:
        """A failure or ban another pool of the store reported: honoured here too."""
        if banned and domain is None:
            return
        self._report(proxy, domain, banned, share=False)

    def _report(self, proxy: Proxy, domain: str | None, banned: bool, *, share: bool) -> None:
        # What to log, kept for after the lock: a log handler may do I/O.
        news: str | None = None
        failures = 0
        state = self._state
        try:
            with self._lock:
                entry = state.find(proxy)
                if entry is None:
                    return
                if share:
                    assert self._sharing is not None
                    self._sharing.tell_report(entry.proxy, entry.sub.geo, domain, banned)
                if banned:
                    assert domain is not None
                    if state.ban(entry, domain, self._clock()):
                        news = "banned"
                elif state.fail(entry, self._clock()):
                    news, failures = "evicted", entry.failures
        finally:
            if news == "banned":
                logger.debug("proxy %s banned for %s", proxy, domain)
                if state.storm_news:
                    self._log_storms()
            elif news == "evicted":
                logger.debug("proxy %s evicted after %d failures", proxy, failures)
            if self._pending:
                self._flush()

    def _log_storms(self) -> None:
        """Log the storms that started (one WARNING each). Call without the lock held."""
        with self._lock:
            news = self._state.take_storm_news()
        for domain, cooldown in news:
            logger.warning(
                "ban storm on %s: %d batches of proxies in a row were all banned there; no "
                "proxies are bought for it for %g s, and its requests fail with BanStorm",
                domain,
                self._storm_batches,
                cooldown,
            )

    # -- lifecycle helpers (caller holds the lock unless said otherwise) ----------------------

    def _check_open(self) -> None:
        if self._fatal is not None:
            # The same exception for every caller; drop the traceback so re-raising it on every
            # call does not grow it without end.
            raise self._fatal.with_traceback(None)
        if self._closed:
            raise PoolExhausted("the pool is closed")

    def _stop(self, exc: AccountError) -> None:
        with self._lock:
            self._state.count_api_error()
            if self._fatal is None:
                self._fatal = exc
            self._wake()

    def _wake(self) -> None:
        self._cond.notify_all()

    # -- listeners, stats, lifecycle ---------------------------------------------------------

    def add_listener(self, callback: Callable[[Proxy], object]) -> None:
        """Call ``callback(proxy)`` whenever a proxy leaves the pool (expired, evicted, or on
        ``close()``), with the object ``get()`` handed out. Called without the pool lock held,
        from whichever thread next finishes a pool call; it must be quick and thread-safe.
        Exceptions it raises are logged and ignored."""
        if not callable(callback):
            raise ConfigError(
                f"callback must be callable (a listener), not {type(callback).__name__}",
                field="callback",
            )
        with self._lock:
            self._listeners = (*self._listeners, callback)

    def remove_listener(self, callback: Callable[[Proxy], object]) -> None:
        """Stop calling ``callback``; unknown callbacks are ignored."""
        with self._lock:
            self._listeners = tuple(c for c in self._listeners if c != callback)

    def _flush(self) -> None:
        """Announce departed proxies to the listeners. Call without the lock held."""
        with self._lock:
            pending = self._state.take_departed()
            listeners = self._listeners
        for proxy in pending:
            for callback in listeners:
                try:
                    callback(proxy)
                except Exception:
                    logger.warning("pool listener %r failed for %s", callback, proxy, exc_info=True)

    def stats(self) -> PoolStats:
        """A snapshot of the counters (see ``PoolStats``). Thread-safe; retires what expired."""
        try:
            with self._lock:
                now = self._clock()
                for sub in self._subs.values():
                    if now >= sub.next_due:
                        self._state.expire(sub, now)
                state = self._state
                return PoolStats(
                    served=state.served,
                    extracted=state.extracted,
                    minted=state.minted,
                    duplicates=state.duplicates,
                    refills=state.refills,
                    api_errors=state.api_errors,
                    successes=state.successes,
                    failures=state.failures,
                    bans=state.bans,
                    evictions=state.evictions,
                    expired=state.expired,
                    ban_storms=state.ban_storms,
                    received=self._sharing.received if self._sharing is not None else 0,
                    store_errors=self._sharing.errors if self._sharing is not None else 0,
                    live={s.label: s.usable for s in self._subs.values()},
                    cooling={s.label: s.cooling_count for s in self._subs.values()},
                )
        finally:
            if self._pending:
                self._flush()

    def __len__(self) -> int:
        """Live proxies over all geographies, not counting cooling ones (expiry is applied
        lazily: call ``stats()`` for an exact count now)."""
        with self._lock:
            return sum(s.usable for s in self._subs.values())

    @property
    def has_bans(self) -> bool:
        """True once a proxy has been banned for some domain (``report_failure(banned=True)``).
        Until then the ``domain`` of ``get``/``try_get`` changes nothing, so an event-loop caller
        may skip working it out. Lock-free (a stale False only races a ban being recorded)."""
        return self._state.bans > 0

    @property
    def source(self) -> ProxySource:
        """Where the pool's proxies come from (as given)."""
        return self._source

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, *, wait: bool = True) -> None:
        """Stop the pool: waiters in ``get()``/``refill()`` wake with ``PoolExhausted``, later
        calls raise it, every pooled proxy leaves (listeners are told). Idempotent.

        With a ``store``, what this pool reported last is still to be published: ``wait``
        (default) publishes it now, in this thread, so a program about to exit does not lose
        it. ``wait=False`` returns at once and leaves it to the pool's background thread (an
        event loop: call ``close()`` again from a worker thread to publish it there)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._state.empty()
                self._wake()
        self._flush()
        sharing = self._sharing
        if sharing is not None:
            sharing.close()
            if wait:
                sharing.flush()

    def __enter__(self) -> ProxyPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self)} live"
        return f"<ProxyPool geo={str(self.geo)!r} strategy={self._strategy_name} {state}>"
