"""A pool's link to its ``PoolStore`` (``ProxyPool(store=...)``): one background thread that
publishes what this pool learns and applies what the others published, and the steps a refill
takes through the store (lease, budget, the batch announced). Private: ``ProxyPool`` is the API.

The thread is the only one that waits on the store for events and publishes: ``report_*`` and
``try_get`` only append to an in-memory outbox, so an event loop never does store I/O. A refill
runs in ``refill_runner`` (a worker thread), so its store steps are off the event loop as well.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import math
import secrets
import threading
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any

from .geo import Geo
from .models import Proxy
from .sources import ExtractedBatch
from .store import PoolStore, StoreUnavailable

if TYPE_CHECKING:
    from .pool import ProxyPool
    from .store import _SubPool

logger = logging.getLogger("proxypool.pool")

#: Seconds the background thread waits for events in one read: a ban reported elsewhere is
#: applied here within about this long (plus one round trip).
POLL = 0.2
#: Seconds a budget reservation outlives a holder that never settles it (died mid-purchase):
#: longer than any extraction with its retries, so a slow one is never overtaken (the cap holds).
RESERVATION_TTL = 600.0
#: Outbox entries kept while the store cannot be reached (the oldest are dropped beyond it).
MAX_OUTBOX = 10_000
#: Proxies remembered by their store identity (for sticky sessions); the oldest are forgotten.
MAX_KNOWN = 200_000


def _order(event_id: str) -> tuple[int, int]:
    """An event id (``"ms-seq"``) as something that compares in the log's order."""
    first, _, second = event_id.partition("-")
    try:
        return int(first), int(second or 0)
    except ValueError:
        return (-1, -1)


def proxy_record(proxy: Proxy) -> dict[str, Any]:
    """``proxy`` as an event field (credentials included: see ``store``'s docstring)."""
    record: dict[str, Any] = {"h": proxy.host, "p": proxy.port}
    if proxy.scheme != "http":
        record["s"] = proxy.scheme
    if proxy.username is not None:
        record["u"] = proxy.username
    if proxy.password is not None:
        record["w"] = proxy.password
    if proxy.session is not None:
        record["i"] = proxy.session
    return record


def proxy_from(record: dict[str, Any], geo: Geo | None) -> Proxy:
    return Proxy(
        str(record["h"]),
        int(record["p"]),
        scheme=str(record.get("s", "http")),
        username=record.get("u"),
        password=record.get("w"),
        geo=geo,
        session=record.get("i"),
    )


def proxy_id(proxy: Proxy) -> str:
    """A proxy's identity in the store (sticky sessions): no password."""
    return f"{proxy.scheme}://{proxy.username or ''}@{proxy.host}:{proxy.port}"


class Sharing:
    """See the module docstring. ``lease_ttl``: how long a refill lease lasts if its holder
    dies (seconds); ``session_ttl``: how long a sticky session's binding is kept unused."""

    def __init__(
        self, pool: ProxyPool, store: PoolStore, *, lease_ttl: float, session_ttl: float
    ) -> None:
        self.pool = pool
        self.store = store
        self.origin = secrets.token_hex(6)  # this pool's name in the events it publishes
        self.lease_ttl = lease_ttl
        self.session_ttl = session_ttl
        self.outbox: collections.deque[tuple[str, dict[str, Any]]] = collections.deque(
            maxlen=MAX_OUTBOX
        )
        self.cursor = "0-0"  # from the oldest event kept: batches bought before this pool began
        self.offset: float | None = None  # store clock minus pool clock, once measured
        self.down = False
        self.errors = 0
        self.epoch: str | None = None  # the store's, as first seen (see check_epoch)
        self._epoch_lock = threading.Lock()
        self.received = 0  # proxies that joined from other pools' batches
        # Sticky sessions: (geo, key) -> the proxy the store said the key means (identity
        # compared, so try_get checks it without I/O); store identity -> proxy, for adopting
        # another pool's binding.
        self.confirmed: dict[tuple[Geo, Hashable], Proxy] = {}
        self.known: dict[str, Proxy] = {}
        self._stop = threading.Event()
        # Held while applying events read (not while waiting for them): by the background
        # thread, and by a refill catching up before it decides to buy.
        self._reading = threading.Lock()
        self._flushing = threading.Lock()
        self._remembering = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="proxypool-store", daemon=True)
        self._thread.start()

    # -- the clock ---------------------------------------------------------------------------

    def _measure(self) -> float:
        """Store clock minus pool clock, measured now (one round trip)."""
        before = self.pool._clock()
        now = self.store.now()
        after = self.pool._clock()
        self.offset = now - (before + after) / 2
        return self.offset

    def local_until(self, store_until: float) -> float:
        """A moment on the store's clock, on the pool's clock (measured once, then kept fresh
        by the background thread)."""
        if store_until == math.inf:
            return math.inf
        offset = self.offset
        return store_until - (offset if offset is not None else self._measure())

    # -- what this pool tells the others ---------------------------------------------------

    def tell(self, kind: str, data: dict[str, Any]) -> None:
        """Queue an event for the background thread (no I/O here)."""
        data["o"] = self.origin
        self.outbox.append((kind, data))

    def _flush(self) -> None:
        outbox = self.outbox
        with self._flushing:  # (the background thread, or close(): one at a time)
            while outbox:
                kind, data = outbox[0]
                self.store.publish(kind, data)  # (raises while the store is down: kept)
                outbox.popleft()

    # -- the background thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            with contextlib.suppress(Exception):
                self._flush()  # what was reported last still reaches the others
            with contextlib.suppress(Exception):
                self.store.close()

    def _loop(self) -> None:
        measured_at = -math.inf
        while not self._stop.is_set():
            try:
                self._flush()
                now = self.pool._clock()
                if now - measured_at >= 1.0:
                    self._measure()
                    self.check_epoch()
                    measured_at = now
                self._read(POLL)
                if self.down:
                    self.down = False
                    logger.warning("proxypool: the store is reachable again (%r)", self.store)
            except StoreUnavailable as exc:
                if self._stop.is_set():
                    return  # closed meanwhile: nothing to say about a store it no longer uses
                self.errors += 1
                if not self.down:
                    self.down = True
                    logger.warning(
                        "proxypool: %s; serving the proxies held, buying none until it is back",
                        exc,
                    )
                self._stop.wait(0.5)
            except Exception:  # never the end of sharing
                logger.warning("proxypool: sharing through the store failed", exc_info=True)
                self._stop.wait(0.5)

    def check_epoch(self) -> None:
        """If the store lost its data since last seen (a Redis restarted without persistence),
        add what this pool bought back to the shared budget, so the cap still counts it."""
        with self._epoch_lock:
            epoch = self.store.epoch(secrets.token_hex(8))
            if self.epoch is None or epoch == self.epoch:
                self.epoch = epoch
                return
            self.epoch = epoch
            bought = self.pool._own_extracted()
            if bought:
                self.store.settle(f"{self.origin}:restored", 0, bought)
            self.confirmed.clear()  # (the sessions' bindings were lost as well)
        logger.warning(
            "proxypool: the store lost its data (restarted?); the %d IPs this pool bought "
            "were added back to the shared budget",
            bought,
        )

    def _read(self, block: float | None) -> None:
        """Read the events after the cursor (waiting up to ``block`` s for one, without holding
        the lock: a refill catching up meanwhile is not held up) and apply the other pools'
        ones, each once whoever read it: under the lock, only those after the cursor."""
        cursor, events = self.store.events_after(self.cursor, block=block)
        with self._reading:
            for event in events:
                event_id = event.get("@", "")
                if _order(event_id) <= _order(self.cursor):
                    continue  # (applied already, by the other reader)
                self.cursor = event_id
                if event.get("o") != self.origin:
                    try:
                        self._apply(event)
                    except Exception:  # a malformed event: logged, never the end of sharing
                        logger.warning(
                            "proxypool: an event from the store was not applied", exc_info=True
                        )
            if _order(cursor) > _order(self.cursor):
                self.cursor = cursor

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        pool = self.pool
        if kind == "batch":
            geo = Geo.coerce(event.get("g") or None)
            tag = None if geo.is_anywhere else geo
            ends = float(event["t"])
            groups: dict[float, list[Proxy]] = {}
            for record in event["x"]:
                end = ends
                if "l" in record:  # an end of its own (a static IP's package)
                    end = min(ends, float(event["s"]) + float(record["l"]))
                groups.setdefault(end, []).append(proxy_from(record, tag))
            pool._spent_elsewhere(int(event.get("b", 0)))
            for end, proxies in groups.items():
                self.remember(proxies)
                self.received += pool._merge_shared(geo, proxies, self.local_until(end))
        elif kind in ("ban", "failure"):
            geo = Geo.coerce(event.get("g") or None)
            proxy = proxy_from(event["x"], None if geo.is_anywhere else geo)
            pool._report_shared(proxy, domain=event.get("d"), banned=kind == "ban")

    def close(self) -> None:
        """Stop sharing; never blocks (the pool may be closed on an event loop): the background
        thread publishes what is left in the outbox, then lets go of the store."""
        self._stop.set()

    def flush(self) -> None:
        """Publish what is still in the outbox now, in this thread (a program about to exit);
        the store being away loses it."""
        with contextlib.suppress(StoreUnavailable):
            self._flush()

    # -- sticky sessions ---------------------------------------------------------------------

    def remember(self, proxies: list[Proxy]) -> None:
        """Note ``proxies`` by their store identity (the refill's thread and the background
        thread both do, hence the lock)."""
        known = self.known
        with self._remembering:
            for proxy in proxies:
                known[proxy_id(proxy)] = proxy
            if len(known) > MAX_KNOWN:
                for old in list(itertools.islice(known, len(known) - MAX_KNOWN)):
                    del known[old]

    def confirm(self, sub: _SubPool, session: Hashable, domain: str | None, proxy: Proxy) -> Proxy:
        """The proxy ``session`` means over every pool of the store: ``proxy`` (this pool's
        pick) when the store agrees or cannot be asked, else the one another pool bound it to
        first, if this pool holds it usable. Blocking I/O (called by ``get()``)."""
        geo = sub.geo
        key = (geo, session)
        previous = self.confirmed.get(key)
        if previous is proxy:
            return proxy
        name = f"{geo}|{session!r}"
        mine = proxy_id(proxy)
        store = self.store
        try:
            if previous is None:
                winner = store.bind_session(name, mine, self.session_ttl)
            else:
                winner = store.rebind_session(name, proxy_id(previous), mine, self.session_ttl)
            if winner != mine:
                theirs = self.known.get(winner)
                pooled = None
                if theirs is not None:
                    pooled = self.pool._adopt_session(sub, session, domain, theirs)
                if pooled is not None:
                    self.confirmed[key] = pooled
                    return pooled
                # Theirs is not usable here (banned for this site, gone, or not arrived yet):
                # the key moves to this pool's pick, for every pool.
                winner = store.rebind_session(name, winner, mine, self.session_ttl)
        except StoreUnavailable:
            return proxy  # served by this pool's own binding until the store is back
        if winner == mine:
            self.confirmed[key] = proxy
        return proxy

    # -- a refill's steps ------------------------------------------------------------------

    def run_refill(
        self,
        geo: Geo,
        num: int,
        cap: int | None,
        extract: Callable[[int], tuple[list[Proxy], int, Any]],
        arrived: Callable[[], bool],
    ) -> tuple[list[Proxy], int, Any] | None:
        """One extraction as the only one in flight for ``geo`` over every pool, within the
        shared budget, announced to the others before the lease is let go. None when another
        pool holds the lease (its batch will arrive as an event) or, once this pool caught up
        with the events, ``arrived()`` says a batch for ``geo`` came meanwhile. ``extract(n)``
        buys and returns ``(proxies kept, IPs paid for, answer)``, returned as they are.
        Raises ``StoreUnavailable`` before buying when the store cannot be reached; the budget
        spent is an empty batch with ``bought = -1``."""
        store = self.store
        name = f"refill:{geo}"
        token = store.take_lease(name, self.lease_ttl)
        if token is None:
            return None
        holder = f"{self.origin}:{token}"
        # Renewed while the extraction runs (a slow provider, retries), so the lease can be
        # short: a holder that dies stops renewing, and the lease lapses ``lease_ttl`` later.
        done = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(name, token, done), name="proxypool-lease", daemon=True
        )
        renewer.start()
        try:
            self.check_epoch()  # the budget is whole before anything is reserved from it
            self._read(None)  # what the last holder bought is here before deciding to buy
            if arrived():
                return None
            granted = num
            if cap is not None:
                granted = store.reserve(holder, num, cap, RESERVATION_TTL)
                if granted <= 0:
                    return [], -1, None
            started = store.now()
            try:
                proxies, bought, answer = extract(granted)
            except BaseException:
                if cap is not None:
                    self._settle(holder, granted, 0)
                raise
            if cap is not None:
                self._settle(holder, granted, bought)
            self.remember(proxies)
            pool = self.pool
            lasts = answer.lasts if isinstance(answer, ExtractedBatch) else None
            ends = started + pool._life * 60 if pool._expires else math.inf
            event = self._batch_event(
                geo, proxies, bought if pool._paid else 0, ends, started, lasts
            )
            try:
                store.publish("batch", event)  # before the lease is let go
            except StoreUnavailable:
                self.outbox.append(("batch", event))  # (sent when the store is back)
            return proxies, bought, answer
        finally:
            done.set()
            renewer.join()
            with contextlib.suppress(StoreUnavailable):  # (else it expires by itself)
                store.release_lease(name, token)

    def _renew(self, name: str, token: str, done: threading.Event) -> None:
        while not done.wait(self.lease_ttl / 3):
            try:
                if not self.store.renew_lease(name, token, self.lease_ttl):
                    return  # lapsed (the store was away): another may hold it now
            except StoreUnavailable:
                continue

    def _settle(self, holder: str, granted: int, bought: int) -> None:
        try:
            self.store.settle(holder, granted, bought)
        except StoreUnavailable:
            logger.warning(
                "proxypool: %d IPs bought could not be added to the shared budget (the store "
                "cannot be reached); its reservation lapses",
                bought,
            )

    def _batch_event(
        self,
        geo: Geo,
        proxies: list[Proxy],
        bought: int,
        ends: float,
        started: float,
        lasts: Mapping[Proxy, float] | None,
    ) -> dict[str, Any]:
        """A batch bought here, for the other pools (they use it too): its end on the store's
        clock (``inf``: none), and per proxy the seconds it lasts from ``started`` when it has
        an end of its own (a static IP's package)."""
        records = []
        for proxy in proxies:
            record = proxy_record(proxy)
            left = lasts.get(proxy) if lasts else None
            if left is not None:
                record["l"] = left
            records.append(record)
        return {
            "g": "" if geo.is_anywhere else str(geo),
            "x": records,
            "b": bought,
            "t": ends,
            "s": started,
            "o": self.origin,
        }

    def tell_report(self, proxy: Proxy, geo: Geo, domain: str | None, banned: bool) -> None:
        """Queue a ban (``banned``) or a failure of ``proxy`` for the other pools."""
        data: dict[str, Any] = {"g": "" if geo.is_anywhere else str(geo), "x": proxy_record(proxy)}
        if domain is not None:
            data["d"] = domain
        self.tell("ban" if banned else "failure", data)
