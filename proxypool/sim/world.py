"""The simulated world of the demo and the tests: a provider whose extractions lease real local
relays, one fresh port per leased IP, and a target site that records who came through.

:class:`SimWorld` starts, on ``127.0.0.1`` and free ports:

- a :class:`~proxypool.sim.relays.RelayFleet` of proxy.py relays, each placed in a geography by
  the ``layout`` (``{"US/California": 4, "DE": 3, "*": 1}``; ``"*"`` relays stand in for any
  place no relay is placed in);
- a :class:`LeaseGateway`: every IP the simulator hands out is a new port of the gateway that
  forwards to one relay. A lease stops working when its ``life`` is over (open connections are
  reset, new ones accepted and reset at once, counted as *late*), and when its relay is killed
  (the port closes: connections are refused, as for an IP gone offline);
- a :class:`~proxypool.sim.provider.ProviderSimulator` whose ``address_source`` leases alive
  relays of the geography asked for, round-robin;
- a :class:`~proxypool.sim.target.TargetSite` that knows the relays by name.

Knobs: :meth:`SimWorld.kill_relay` / :meth:`SimWorld.revive_relay`, :meth:`SimWorld.ban_relay`
(the target refuses a relay), :meth:`SimWorld.set_relay_latency` (a slow relay),
:meth:`SimWorld.end_leases` (end leases now), and the simulator's own fault knobs
(``world.simulator.fail_rate`` and friends: a flaky API).

Time: ``life`` is in minutes, as in the API. ``time_scale`` is how many real seconds one
simulated second lasts: 1.0 is real time; 0.2 ends a 1-minute lease after 12 s, so a demo or a
test sees leases end without waiting minutes. The clock is injected (monotonic seconds); with a
fake clock, call :meth:`LeaseGateway.sweep` after moving it to end what is due.

Thread-safety: every method may be called from any thread. The gateway runs one thread that
accepts connections and one thread per forwarded connection; one lock guards its records and is
never held during socket I/O.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
import select
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from proxypool.errors import ConfigError
from proxypool.geo import Geo

from ._service import Service
from .account_gateway import AccountGateway
from .locations import DEFAULT_LOCATIONS, SimCountry, find_country, find_state
from .provider import ProviderSimulator
from .relays import Relay, RelayFleet
from .target import TargetSite

__all__ = [
    "DEFAULT_LAYOUT",
    "Forwarded",
    "Lease",
    "LeaseGateway",
    "LeaseUsage",
    "SimWorld",
    "geo_covers",
]

logger = logging.getLogger(__name__)

#: Relays per geography when none is given: ``"*"`` relays serve places no relay is placed in.
DEFAULT_LAYOUT: Mapping[str, int] = MappingProxyType({"US/California": 3, "DE": 2, "*": 2})

_ANYWHERE = Geo()
_BUFFER = 65536
_PIPE_POLL = 0.5  # seconds a forwarding thread waits in select() before checking for shutdown
_LOOP_POLL = 0.05  # seconds between two sweeps of the gateway's accept loop
_LINGER_OFF = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, like a dead proxy


def geo_covers(outer: Geo, inner: Geo) -> bool:
    """True when every part ``outer`` names is the same in ``inner``: ``US`` covers
    ``US/California`` and ``US/California/LosAngeles``; anywhere covers everything. Case-sensitive:
    compare canonical spellings."""
    return all(
        want is None or want == have
        for want, have in (
            (outer.country, inner.country),
            (outer.state, inner.state),
            (outer.city, inner.city),
        )
    )


def _overlaps(a: Geo, b: Geo) -> bool:
    """A relay placed at ``a`` can serve a request for ``b``: neither names a different part."""
    return all(
        x is None or y is None or x == y
        for x, y in ((a.country, b.country), (a.state, b.state), (a.city, b.city))
    )


@dataclass(frozen=True, slots=True)
class Lease:
    """One IP the simulator handed out: ``address`` (``"host:port"``, a gateway port) forwarding
    to relay ``relay``, for geography ``geo`` (as asked for), ``life`` minutes long.
    ``issued_at`` and ``ends_at`` are readings of the world's clock (seconds)."""

    address: str
    relay: str
    geo: Geo
    life: int
    issued_at: float
    ends_at: float

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])


@dataclass(frozen=True, slots=True)
class LeaseUsage:
    """What happened to a lease so far.

    ``state``: ``"active"``, ``"ended"`` (life over: connections reset), or ``"closed"`` (port
    closed: its relay was killed, the linger after its end passed, or the gateway stopped).
    ``connections``: connections forwarded while active; ``bytes_in``: bytes clients sent through
    it (0 means nobody used it, e.g. only a reachability probe connected); ``late_connections``:
    connections that arrived after the lease ended; ``upstream_failures``: connections that could
    not reach the relay; ``lived_out``: the lease ended by its own life (not by
    :meth:`LeaseGateway.end_leases` or its relay's death), whatever its state now (its port
    closes ``linger`` seconds later).
    """

    lease: Lease
    state: str
    connections: int
    bytes_in: int
    late_connections: int
    upstream_failures: int
    lived_out: bool = False

    @property
    def used(self) -> bool:
        """True when a client sent something through the lease (a request, a tunnel)."""
        return self.bytes_in > 0


@dataclass(frozen=True, slots=True)
class Forwarded:
    """A connection the gateway forwarded to a relay, once it ended: ``relay``, ``port`` (the
    gateway's end of the connection to the relay, as the relay saw it: ``Hit.relay_peer_port``),
    ``lease`` (address), ``opened_at`` (once connected to the relay, before the relay could get
    anything on it) and ``ended_at`` (world clock). ``cut``: the gateway reset it (its lease
    ended or its port closed) while it was open; a request the relay got on it and had not
    answered by then never reached the client, which saw a reset instead."""

    relay: str
    port: int
    lease: str
    opened_at: float
    ended_at: float
    cut: bool


class _Pair:
    """A forwarded connection: the client's socket and the one to the relay."""

    __slots__ = ("client", "opened_at", "reset", "upstream")

    def __init__(self, client: socket.socket, upstream: socket.socket, opened_at: float) -> None:
        self.client = client
        self.upstream = upstream
        self.opened_at = opened_at
        self.reset = False

    def shut(self, *, reset: bool) -> None:
        """Wake the forwarding thread: it closes both sockets (with RST when ``reset``)."""
        self.reset = self.reset or reset
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _LeaseState:
    """A lease and its listener, connections and counters. Mutated under the gateway lock."""

    __slots__ = (
        "bytes_in",
        "closed_at",
        "connections",
        "late",
        "lease",
        "listener",
        "lived_out",
        "pairs",
        "relay",
        "state",
        "upstream_failures",
    )

    def __init__(self, lease: Lease, relay: Relay, listener: socket.socket) -> None:
        self.lease = lease
        self.relay = relay
        self.listener = listener
        self.state = "active"
        self.pairs: set[_Pair] = set()
        self.connections = 0
        self.bytes_in = 0
        self.late = 0
        self.upstream_failures = 0
        self.closed_at = 0.0
        self.lived_out = False

    def usage(self) -> LeaseUsage:
        return LeaseUsage(
            self.lease,
            self.state,
            self.connections,
            self.bytes_in,
            self.late,
            self.upstream_failures,
            self.lived_out,
        )


class LeaseGateway(Service):
    """Ports that forward to relays, one per lease, each working for its lease's life.

    :meth:`issue` opens a port for a relay; after ``life`` minutes (times ``time_scale``) on
    ``clock`` the lease ends: open connections are reset, new ones are accepted and reset at once
    (counted as late) for ``linger`` more seconds, then the port closes. :meth:`close_relay`
    closes every port of a relay at once (connections refused). Use :meth:`start` /
    :meth:`close`, or a ``with`` block. Thread-safe (see the module docstring).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        time_scale: float = 1.0,
        linger: float = 60.0,
        connect_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (("time_scale", time_scale), ("linger", linger)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ConfigError(f"{name} must be a number >= 0, got {value!r}", field=name)
        if time_scale == 0:
            raise ConfigError("time_scale must be > 0", field="time_scale")
        self.host = host
        self.time_scale = float(time_scale)
        self.linger = float(linger)
        self.connect_timeout = connect_timeout
        self._clock = clock
        self._lock = threading.Lock()
        # In issue order, by serial number: a closed lease's port may be handed to a later one.
        self._leases: dict[int, _LeaseState] = {}
        self._serial = itertools.count()
        self._tasks: list[Callable[[], None]] = []  # selector changes, run by the loop thread
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._closed = False
        self._forwarded: list[Forwarded] = []

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> LeaseGateway:
        """Start the accept loop thread. Idempotent."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this LeaseGateway is closed")
            if self._thread is not None:
                return self
            self._selector = selectors.DefaultSelector()
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._selector.register(self._wake_r, selectors.EVENT_READ, None)
            self._thread = threading.Thread(target=self._run, name="lease-gateway", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Close every port and connection and stop the loop thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            states = list(self._leases.values())
            thread = self._thread
        self._stopping.set()
        self._wake()
        if thread is not None:
            thread.join(timeout=5)
        with self._lock:
            pairs = [pair for state in states for pair in state.pairs]
            for state in states:
                if state.state != "closed":
                    state.state = "closed"
                    state.closed_at = self._clock()
        for state in states:
            with contextlib.suppress(OSError):
                state.listener.close()
        for pair in pairs:
            pair.shut(reset=True)
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        if self._selector is not None:
            self._selector.close()

    # -- leases ---------------------------------------------------------------------------------

    def issue(self, relay: Relay, geo: Geo, life: int) -> Lease:
        """Open a new port forwarding to ``relay`` for ``life`` minutes; returns the lease.
        Connections to the port are accepted from the moment this returns, unless the relay is
        down: then the port is closed at once (connections refused), an offline IP."""
        if self._thread is None or self._closed:
            raise RuntimeError("the LeaseGateway is not running (start it first)")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind((self.host, 0))
            listener.listen(128)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        port = int(listener.getsockname()[1])
        now = self._clock()
        lease = Lease(
            address=f"{self.host}:{port}",
            relay=relay.name,
            geo=geo,
            life=life,
            issued_at=now,
            ends_at=now + life * 60.0 * self.time_scale,
        )
        state = _LeaseState(lease, relay, listener)
        if not relay.alive:
            state.state = "closed"
            state.closed_at = now
            listener.close()
        with self._lock:
            self._leases[next(self._serial)] = state
            if state.state != "closed":
                self._tasks.append(lambda: self._register(state))
        self._wake()
        return lease

    def leases(self) -> list[LeaseUsage]:
        """Every lease issued so far, oldest first, with what happened to it."""
        with self._lock:
            return [state.usage() for state in self._leases.values()]

    def usage(self, address: str) -> LeaseUsage:
        """The latest lease handed out as ``address`` (``"host:port"``)."""
        with self._lock:
            for state in reversed(self._leases.values()):
                if state.lease.address == address:
                    return state.usage()
        raise KeyError(f"no lease at {address}")

    def forwarded(self) -> list[Forwarded]:
        """Every forwarded connection that has ended, in the order they ended."""
        with self._lock:
            return list(self._forwarded)

    def sweep(self) -> list[Lease]:
        """End the leases whose time has come (and close ports whose linger is over); returns
        the leases ended by this call. The loop thread calls it every few milliseconds; call it
        yourself after moving a fake clock."""
        now = self._clock()
        ended: list[_LeaseState] = []
        finished: list[_LeaseState] = []
        with self._lock:
            for state in self._leases.values():
                if state.state == "active" and now >= state.lease.ends_at:
                    state.state = "ended"
                    state.lived_out = True
                    ended.append(state)
                elif state.state == "ended" and now >= state.lease.ends_at + self.linger:
                    finished.append(state)
            pairs = [pair for state in ended for pair in state.pairs]
        for pair in pairs:
            pair.shut(reset=True)
        if finished:
            self._close_ports(finished)
        if ended:
            logger.debug("%d leases ended", len(ended))
        return [state.lease for state in ended]

    def end(self, *, relay: str | None = None) -> list[Lease]:
        """End the active leases now (all, or those of ``relay``): as if their life were over."""
        with self._lock:
            chosen = [
                s
                for s in self._leases.values()
                if s.state == "active" and (relay is None or s.lease.relay == relay)
            ]
            for state in chosen:
                state.state = "ended"
                # Linger from now, not from the planned end.
                state.lease = _with_end(state.lease, self._clock())
            pairs = [pair for state in chosen for pair in state.pairs]
        for pair in pairs:
            pair.shut(reset=True)
        return [state.lease for state in chosen]

    def close_relay(self, relay: str) -> int:
        """Close every port of relay ``relay`` now (connections refused, open ones reset);
        returns how many. Returns once the ports refuse connections."""
        with self._lock:
            chosen = [
                s for s in self._leases.values() if s.lease.relay == relay and s.state != "closed"
            ]
        self._close_ports(chosen)
        return len(chosen)

    # -- the loop thread ------------------------------------------------------------------------

    def _wake(self) -> None:
        wake = self._wake_w
        if wake is not None:
            with contextlib.suppress(OSError):
                wake.send(b"\0")

    def _close_ports(self, states: Sequence[_LeaseState]) -> None:
        """Mark ``states`` closed, reset their connections and close their listeners (in the
        loop thread, which owns the selector); waits until done."""
        with self._lock:
            for state in states:
                state.state = "closed"
                state.closed_at = self._clock()
            pairs = [pair for state in states for pair in state.pairs]
        for pair in pairs:
            pair.shut(reset=True)
        if threading.current_thread() is self._thread or self._thread is None:
            for state in states:
                self._unregister(state)
            return
        done = threading.Event()

        def task() -> None:
            for state in states:
                self._unregister(state)
            done.set()

        with self._lock:
            self._tasks.append(task)
        self._wake()
        if not done.wait(timeout=5) and not self._stopping.is_set():
            logger.warning("lease gateway: ports not closed within 5 s")

    def _register(self, state: _LeaseState) -> None:
        assert self._selector is not None
        if state.state == "closed":
            with contextlib.suppress(OSError):
                state.listener.close()
            return
        self._selector.register(state.listener, selectors.EVENT_READ, state)

    def _unregister(self, state: _LeaseState) -> None:
        assert self._selector is not None
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(state.listener)
        with contextlib.suppress(OSError):
            state.listener.close()

    def _run(self) -> None:
        selector = self._selector
        assert selector is not None and self._wake_r is not None
        while not self._stopping.is_set():
            with self._lock:
                tasks, self._tasks = self._tasks, []
            for task in tasks:
                task()
            for key, _ in selector.select(_LOOP_POLL):
                if key.data is None:
                    with contextlib.suppress(OSError):
                        while self._wake_r.recv(4096):
                            pass
                    continue
                self._accept(key.data)
            self.sweep()
        with self._lock:
            tasks, self._tasks = self._tasks, []
        for task in tasks:  # wake whoever waits on a task
            task()

    def _accept(self, state: _LeaseState) -> None:
        while True:
            try:
                conn, _ = state.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # closed meanwhile
                return
            with self._lock:
                live = state.state == "active"
                if state.state == "ended":
                    state.late += 1
            if not live:
                _reset(conn)
                continue
            conn.setblocking(True)
            threading.Thread(
                target=self._forward,
                args=(state, conn),
                name=f"lease-{state.lease.port}",
                daemon=True,
            ).start()

    def _forward(self, state: _LeaseState, client: socket.socket) -> None:
        relay = state.relay
        try:
            upstream = socket.create_connection(
                (relay.host, relay.port), timeout=self.connect_timeout
            )
        except OSError:
            with self._lock:
                state.upstream_failures += 1
            _reset(client)
            return
        pair = _Pair(client, upstream, self._clock())
        with self._lock:
            live = state.state == "active"
            if live:
                state.pairs.add(pair)
                state.connections += 1
            elif state.state == "ended":
                state.late += 1
        if not live:
            _reset(client)
            upstream.close()
            return
        try:
            self._pipe(state, pair)
        finally:
            try:
                port = upstream.getsockname()[1]
            except OSError:
                port = 0
            with self._lock:
                state.pairs.discard(pair)
                self._forwarded.append(
                    Forwarded(
                        relay.name,
                        port,
                        state.lease.address,
                        pair.opened_at,
                        self._clock(),
                        pair.reset,
                    )
                )
            if pair.reset:
                _reset(client)
            else:
                client.close()
            upstream.close()

    def _pipe(self, state: _LeaseState, pair: _Pair) -> None:
        client, upstream = pair.client, pair.upstream
        upstream.settimeout(None)
        while not self._stopping.is_set():
            try:
                readable, _, _ = select.select([client, upstream], [], [], _PIPE_POLL)
            except (OSError, ValueError):  # a socket was closed under us
                return
            for sock in readable:
                try:
                    data = sock.recv(_BUFFER)
                except OSError:
                    return
                if not data:
                    return
                other = upstream if sock is client else client
                try:
                    other.sendall(data)
                except OSError:
                    return
                if sock is client:
                    with self._lock:
                        state.bytes_in += len(data)


def _with_end(lease: Lease, ends_at: float) -> Lease:
    return Lease(lease.address, lease.relay, lease.geo, lease.life, lease.issued_at, ends_at)


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset: what a client sees from a proxy that drops it."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_OFF)
    with contextlib.suppress(OSError):
        sock.close()


def _parse_layout(
    layout: Mapping[str, int], locations: tuple[SimCountry, ...]
) -> list[tuple[Geo, int]]:
    if not layout:
        raise ConfigError("layout must place at least one relay", field="layout")
    placed: list[tuple[Geo, int]] = []
    for text, count in layout.items():
        geo = Geo.parse(text)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 32:
            raise ConfigError(
                f"layout[{text!r}] must be a number of relays from 1 to 32, got {count!r}",
                field="layout",
            )
        placed.append((_canonical(geo, locations, text), count))
    total = sum(count for _, count in placed)
    if total > 64:
        raise ConfigError(f"layout places {total} relays; at most 64", field="layout")
    return placed


def _canonical(geo: Geo, locations: tuple[SimCountry, ...], text: str) -> Geo:
    """``geo`` in the catalog's spelling; ConfigError when the simulator's catalog lacks it."""
    if geo.is_anywhere:
        return geo
    assert geo.country is not None
    country = find_country(locations, geo.country)
    if country is None:
        known = ", ".join(c.country_code for c in locations)
        raise ConfigError(f"layout: {text!r}: no such country here ({known})", field="layout")
    state = find_state(country, geo.state) if geo.state is not None else None
    if geo.state is not None and state is None:
        known = ", ".join(s.name for s in country.states)
        raise ConfigError(f"layout: {text!r}: no such state here ({known})", field="layout")
    city = None
    if geo.city is not None:
        cities = state.cities if state is not None else ()
        city = next((c for c in cities if c.casefold() == geo.city.casefold()), None)
        if city is None:
            raise ConfigError(f"layout: {text!r}: no such city here", field="layout")
    return Geo(country.country_code, state.name if state else None, city)


class SimWorld(Service):
    """Simulator, relays, lease gateway and target site, started and stopped together.

    ``layout``: relays per geography (``"CC"``, ``"CC/State"``, ``"CC/State/City"`` in the
    simulator's catalog, or ``"*"`` for relays standing in for any other place). ``pages``,
    ``links_per_page``: the target site's size. ``time_scale``: real seconds per simulated
    second (see the module docstring). ``app_key``: the key the simulator accepts (default:
    ``"demo-"`` and random hex: obviously not a real account's key). ``relay_latency``: seconds
    each relay waits before forwarding a request. ``hand_out_dead``: also lease relays that were
    killed (their ports refuse connections), as a provider handing out offline IPs would.
    ``relay_auth``: ``(username, password)`` every relay demands (proxy basic auth; letters and
    digits only), as a provider's account gateway would; the extracted ``"ip:port"`` strings
    carry no credentials, so a client adds them itself. A (fake) secret: do not log it.
    ``linger``: seconds an ended lease keeps answering (with resets) before its port closes.
    ``clock``: monotonic seconds, for lease lives.

    Relays are named ``relay-0``, ``relay-1``, ... in layout order. Use as a context manager, or
    :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        layout: Mapping[str, int] = DEFAULT_LAYOUT,
        *,
        pages: int = 20,
        links_per_page: int = 3,
        time_scale: float = 1.0,
        app_key: str | None = None,
        prefix: str = "/openapi",
        relay_latency: float = 0.0,
        hand_out_dead: bool = False,
        relay_auth: tuple[str, str] | None = None,
        linger: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        locations: tuple[SimCountry, ...] = DEFAULT_LOCATIONS,
    ) -> None:
        placed = _parse_layout(layout, locations)
        names = itertools.count()
        self._relay_geos: dict[str, Geo] = {
            f"relay-{next(names)}": geo for geo, count in placed for _ in range(count)
        }
        self.hand_out_dead = hand_out_dead
        self._lock = threading.Lock()
        self._rotation = 0
        self.fleet = RelayFleet(len(self._relay_geos), latency=relay_latency, auth=relay_auth)
        self.gateway = LeaseGateway(time_scale=time_scale, linger=linger, clock=clock)
        self.target = TargetSite(pages, links_per_page=links_per_page)
        self.simulator = ProviderSimulator(
            app_key=app_key if app_key is not None else _demo_key(),
            prefix=prefix,
            address_source=self._addresses,
            locations=locations,
        )
        self.account_gateway = AccountGateway(
            login=self.simulator.gateway_login,
            relays_for=self._exit_relays,
            record=self.simulator.record_traffic,
            relay_auth=relay_auth,
            time_scale=time_scale,
            clock=clock,
        )
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> SimWorld:
        """Start relays, gateway, target and simulator; stops what started if one part fails."""
        if self._started:
            return self
        self._started = True
        try:
            self.fleet.start()
            self.gateway.start()
            self.target.start()
            self.target.know_relays(self.fleet)
            self.simulator.start()
            self.account_gateway.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop everything (relay processes included). Idempotent."""
        for stop in (
            self.account_gateway.close,
            self.simulator.stop,
            self.gateway.close,
            self.target.close,
            self.fleet.close,
        ):
            try:
                stop()
            except Exception:  # keep stopping the rest
                logger.exception("stopping the simulated world")

    # -- addresses ------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """The simulator's base URL (host + prefix): ``PROXYPOOL_API_URL``."""
        return self.simulator.base_url

    @property
    def app_key(self) -> str:
        """The key the simulator accepts: ``PROXYPOOL_APP_KEY``. A (fake) secret: do not log."""
        return self.simulator.app_key

    @property
    def gateway_address(self) -> str:
        """The account gateway's ``host:port`` (``PROXYPOOL_GATEWAY``): proxy accounts of the
        simulator (``proxypool accounts add``) crawl through it, see ``AccountGateway``."""
        return self.account_gateway.address

    @property
    def target_url(self) -> str:
        """The target site's base URL, without a trailing slash."""
        return self.target.url

    def env(self) -> dict[str, str]:
        """``PROXYPOOL_API_URL`` and ``PROXYPOOL_APP_KEY`` for this world."""
        return self.simulator.env()

    # -- relays ---------------------------------------------------------------------------------

    @property
    def relay_geos(self) -> Mapping[str, Geo]:
        """Relay name -> the geography it is placed in (``Geo()`` for ``"*"`` relays)."""
        return MappingProxyType(self._relay_geos)

    def relays_in(self, geo: Geo | str) -> list[str]:
        """Names of the relays placed inside ``geo`` (``"US"`` includes ``"US/California"``)."""
        wanted = Geo.coerce(geo)
        return [
            name
            for name, placed in self._relay_geos.items()
            if not placed.is_anywhere and geo_covers(wanted, placed)
        ]

    def kill_relay(self, name: str) -> None:
        """Kill relay ``name`` and close its leases' ports: every IP it backs goes offline."""
        self.fleet.kill(name)
        self.gateway.close_relay(name)

    def revive_relay(self, name: str) -> None:
        """Start relay ``name`` again; new leases may use it (old ones stay closed)."""
        self.fleet.revive(name)

    def ban_relay(self, name: str, status: int = 403, *, captcha: bool = False) -> None:
        """Make the target refuse relay ``name``: ``status``, or a 200 captcha page."""
        if name not in self._relay_geos:
            raise KeyError(f"no relay named {name!r}; relays: {', '.join(self._relay_geos)}")
        self.target.ban(name, status, captcha=captcha)

    def unban_relay(self, name: str) -> None:
        self.target.unban(name)

    def set_relay_latency(self, name: str, seconds: float) -> None:
        """Make relay ``name`` wait ``seconds`` before forwarding each request (restarts it)."""
        self.fleet.set_latency(name, seconds)

    def end_leases(self, *, relay: str | None = None) -> list[Lease]:
        """End the active leases now (all, or those on ``relay``), as if their life were over."""
        return self.gateway.end(relay=relay)

    # -- the simulator's address source ---------------------------------------------------------

    def _candidates(self, wanted: Geo) -> list[str]:
        def usable(name: str) -> bool:
            return self.hand_out_dead or self.fleet[name].alive

        placed = [
            name
            for name, geo in self._relay_geos.items()
            if not geo.is_anywhere and _overlaps(geo, wanted) and usable(name)
        ]
        if placed:
            return placed
        return [name for name, geo in self._relay_geos.items() if geo.is_anywhere and usable(name)]

    def _exit_relays(self, wanted: Geo) -> list[Relay]:
        """The account gateway's exits for ``wanted``: the relays placed there, else the ones
        standing in for anywhere (alive or not: the gateway picks among the alive)."""
        placed = [
            self.fleet[name]
            for name, geo in self._relay_geos.items()
            if not geo.is_anywhere and _overlaps(geo, wanted)
        ]
        if placed:
            return placed
        return [self.fleet[name] for name, geo in self._relay_geos.items() if geo.is_anywhere]

    def _addresses(
        self, cc: str | None, state: str | None, city: str | None, num: int, life: int
    ) -> list[str]:
        """ProviderSimulator ``address_source``: ``num`` new leases on alive relays of the place
        asked for, round-robin; none when no relay can stand for it."""
        wanted = Geo(cc, state, city)
        names = self._candidates(wanted)
        if not names:
            return []
        with self._lock:
            start = self._rotation
            self._rotation += num
        leases = [
            self.gateway.issue(self.fleet[names[(start + i) % len(names)]], wanted, life)
            for i in range(num)
        ]
        return [lease.address for lease in leases]

    def leases(self) -> list[LeaseUsage]:
        """Every lease handed out so far, with what happened to it."""
        return self.gateway.leases()

    def forwarded(self) -> list[Forwarded]:
        """Every connection the lease gateway forwarded to a relay, once ended (see
        ``Forwarded``)."""
        return self.gateway.forwarded()

    def lease_relays(self) -> dict[str, str]:
        """Leased address (``"host:port"``) -> relay name, for every lease so far."""
        return {usage.lease.address: usage.lease.relay for usage in self.gateway.leases()}

    def __repr__(self) -> str:
        return f"SimWorld({len(self._relay_geos)} relays, target={self.target!r})"


def _demo_key() -> str:
    return "demo-" + secrets.token_hex(8)
