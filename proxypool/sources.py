"""Where the pool's proxies come from.

- ``ProxySource``: the protocol every source follows, ``extract(geo, *, num, life)``.
- ``ExtractionSource(client)``: IPs extracted from the provider (``ip/v3``), paid for one by one.
  ``ProxyPool(client)`` with a ``ProviderClient`` wraps it in one.
- ``CheckedSource(source)``: a wrapper that drops extracted proxies refusing TCP connections
  (``reachable``), counts what was extracted, and logs one INFO line per extraction. Used by the
  Scrapy middleware; usable with the requests adapter as well.

The geography validator is given to the pool (``catalog=``); ``catalog_for`` makes the one a
provider-backed source needs. Nothing probes a source for methods.

Why check reachability at all: an extracted IP that is already offline costs a request slot
until the connection fails (~0.3 s per refused connection inside Twisted's ``HostnameEndpoint``,
up to ``DOWNLOAD_TIMEOUT`` for one that never answers) and then a retry. One non-blocking TCP
connect per distinct ``host:port``, all in parallel, right after the extraction and in the same
worker thread, costs one round trip per batch instead; nothing is sent over the connection.

Money: what the check drops was still paid for. ``extract`` returns an ``ExtractedBatch`` whose
``handed_over`` is the number of IPs the provider returned, and the pool counts that against
``max_extracted``, so the cap holds whether the proxies are reachable or not, inside Scrapy or
out. An answer with more IPs than asked for is cut to ``num`` before the check (the pool logs
the surplus), so a provider that over-delivers costs no extra probing.

``CheckedSource.extract`` blocks: the pool calls it from ``refill``, in a worker thread, never on
an event loop.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

from .api import ProviderClient
from .errors import ConfigError
from .geo import Geo, LocationCatalog
from .models import Proxy

__all__ = [
    "CheckedSource",
    "ExtractedBatch",
    "ExtractionSource",
    "ProxySource",
    "SourceCounters",
    "catalog_for",
    "handed_over",
    "reachable",
]

logger = logging.getLogger(__name__)

Address = tuple[str, int]

# connect() on a non-blocking socket answers one of these while the handshake is under way.
_IN_PROGRESS = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, errno.EAGAIN})


def reachable(
    addresses: Iterable[Address],
    *,
    timeout: float,
    max_open: int = 256,
    clock: Callable[[], float] = time.monotonic,
) -> set[Address]:
    """The ``(host, port)`` pairs that accept a TCP connection within ``timeout`` seconds.

    Connections are opened in parallel (at most ``max_open`` sockets at once) and closed as soon
    as they are established; hosts that are not IP literals are resolved first (blocking DNS, so
    call this from a worker thread). Thread-safe: it shares nothing.
    """
    todo = deque(dict.fromkeys(addresses))
    ok: set[Address] = set()
    selector = selectors.DefaultSelector()
    pending: dict[socket.socket, tuple[float, Address]] = {}  # connecting: deadline, address
    try:
        while todo or pending:
            while todo and len(pending) < max_open:
                address = todo.popleft()
                started = _start_connect(address)
                if isinstance(started, socket.socket):
                    selector.register(started, selectors.EVENT_WRITE)
                    pending[started] = (clock() + timeout, address)
                elif started:
                    ok.add(address)
            if not pending:
                continue
            wait = min(deadline for deadline, _ in pending.values()) - clock()
            for key, _ in selector.select(max(0.0, wait)):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                _, address = pending.pop(sock)
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    ok.add(address)
                selector.unregister(sock)
                sock.close()
            now = clock()
            for sock in [s for s, (deadline, _) in pending.items() if deadline <= now]:
                del pending[sock]  # timed out
                selector.unregister(sock)
                sock.close()
    finally:
        for sock in pending:
            sock.close()
        selector.close()
    return ok


def _start_connect(address: Address) -> socket.socket | bool | None:
    """Start a non-blocking connect: the socket while it is under way, True if it connected at
    once, None if it failed at once (refused, unroutable, unresolvable)."""
    host, port = address
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError):
        return None
    family, kind, proto, _, sockaddr = info
    sock = socket.socket(family, kind, proto)
    sock.setblocking(False)
    try:
        code = sock.connect_ex(sockaddr)
    except OSError:
        sock.close()
        return None
    if code == 0:
        sock.close()
        return True
    if code in _IN_PROGRESS:
        return sock
    sock.close()
    return None


class SourceCounters:
    """Totals over the crawl, updated under a lock by worker threads: ``extractions`` (calls that
    answered), ``extracted`` (IPs the provider handed out), ``rejected`` (of those, IPs that
    refused connections), ``failed`` (calls that raised)."""

    __slots__ = ("extracted", "extractions", "failed", "rejected")

    def __init__(self) -> None:
        self.extractions = 0
        self.extracted = 0
        self.rejected = 0
        self.failed = 0


class CheckedSource:
    """Wraps a ``ProxySource`` (usually a ``ProviderClient``) for the pool.

    ``extract`` calls the wrapped source, then, when ``check`` is true, keeps only the proxies
    whose ``host:port`` accepts a TCP connection within ``timeout`` seconds. Returns an
    ``ExtractedBatch``: the proxies kept, and how many the provider handed over (all of them
    count against the pool's ``max_extracted``). Logs one INFO line per extraction (a WARNING
    when every proxy of a batch was rejected). Thread-safe; blocking, so it belongs in worker
    threads, which is where the pool calls it.
    """

    def __init__(
        self,
        source: ProxySource,
        *,
        check: bool = True,
        timeout: float = 3.0,
        probe: Callable[..., set[Address]] = reachable,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.check = check
        self.timeout = timeout
        self._probe = probe
        self._clock = clock
        self._lock = threading.Lock()
        self._counters = SourceCounters()

    def counters(self) -> SourceCounters:
        """A snapshot of the totals."""
        snapshot = SourceCounters()
        with self._lock:
            for name in SourceCounters.__slots__:
                setattr(snapshot, name, getattr(self._counters, name))
        return snapshot

    def extract(self, geo: Geo | None, *, num: int, life: int) -> ExtractedBatch:
        started = self._clock()
        try:
            answer = self.source.extract(geo, num=num, life=life)
            proxies = list(answer)
        except Exception:
            with self._lock:
                self._counters.failed += 1
            raise
        count = handed_over(answer, len(proxies))
        del proxies[num:]  # the pool keeps at most num: no point probing the surplus
        kept = proxies
        if self.check and proxies:
            alive = self._probe({(p.host, p.port) for p in proxies}, timeout=self.timeout)
            kept = [p for p in proxies if (p.host, p.port) in alive]
        rejected = len(proxies) - len(kept)
        with self._lock:
            self._counters.extractions += 1
            self._counters.extracted += count
            self._counters.rejected += rejected
        where = str(geo) if geo is not None else "anywhere"
        elapsed = self._clock() - started
        if proxies and not kept:
            logger.warning(
                "proxypool: refill for %s: all %d extracted proxies refuse connections (%.2f s)",
                where,
                count,
                elapsed,
            )
        else:
            logger.info(
                "proxypool: refill for %s: %d proxies extracted (asked for %d), %d rejected as "
                "unreachable, %.2f s",
                where,
                count,
                num,
                rejected,
                elapsed,
            )
        return ExtractedBatch(kept, handed_over=count)


class ProxySource(Protocol):
    """Anything that extracts proxies: ``ProviderClient``, or a fake in tests and benchmarks.

    ``geo`` is ``None`` for "anywhere"; ``life`` is in minutes. Expected to raise
    ``ProviderError`` subclasses for provider trouble (``AccountError`` when retrying cannot help).
    """

    def extract(self, geo: Geo | None, *, num: int, life: int) -> Iterable[Proxy]: ...


class ExtractedBatch(list[Proxy]):
    """What a ``ProxySource`` wrapper returns when it keeps fewer proxies than the provider handed
    over (an unreachable-proxy check dropped some): the proxies kept, plus ``handed_over``, how
    many the provider returned. The pool counts ``handed_over`` against ``max_extracted``: every
    IP handed over was paid for, used or not. A plain list counts its length."""

    __slots__ = ("handed_over",)

    def __init__(self, proxies: Iterable[Proxy] = (), *, handed_over: int) -> None:
        super().__init__(proxies)
        self.handed_over = handed_over


def handed_over(result: object, kept: int) -> int:
    """How many IPs the provider handed over for an extraction that returned ``result`` holding
    ``kept`` proxies: ``ExtractedBatch.handed_over`` (never fewer than were kept). For wrappers
    of a ``ProxySource`` (they pass the count of the source they wrap on)."""
    count = getattr(result, "handed_over", None)
    if isinstance(count, int) and not isinstance(count, bool) and count > kept:
        return count
    return kept


class ExtractionSource:
    """IPs extracted from the provider (``ip/v3``) through ``client``: each one is paid for.

    ``ProxyPool(ExtractionSource(client))`` and ``ProxyPool(client)`` behave the same: either
    way the pool validates geographies with the client's location lists (``catalog_for``)."""

    __slots__ = ("client",)

    #: Each proxy costs money. (The pool does not read this yet: it counts every source's
    #: proxies in ``extracted`` and against ``max_extracted``.)
    paid = True

    def __init__(self, client: ProviderClient) -> None:
        if not isinstance(client, ProviderClient):
            raise ConfigError(
                f"ExtractionSource needs a ProviderClient, not {type(client).__name__}",
                field="client",
            )
        self.client = client

    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        return self.client.extract(geo, num=num, life=life)

    def __repr__(self) -> str:
        return f"ExtractionSource({self.client!r})"


def catalog_for(
    source: object, *, timer: Callable[[], float] = time.monotonic
) -> LocationCatalog | None:
    """The location catalog that validates geographies for ``source`` before it is paid for: one
    over the provider's lists for a ``ProviderClient`` or an ``ExtractionSource`` (or a
    ``CheckedSource`` around one), None for any other source (a source of your own: pass the pool
    a ``catalog=`` if it needs one)."""
    while isinstance(source, CheckedSource):
        source = source.source
    if isinstance(source, ExtractionSource):
        source = source.client
    if isinstance(source, ProviderClient):
        return LocationCatalog(source, timer=timer)
    return None
