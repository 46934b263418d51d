"""The middleware's proxy source: a ``ProxySource`` wrapper that drops extracted proxies refusing
TCP connections, counts what was extracted, and logs one INFO line per extraction.

Why check at all: an extracted IP that is already offline costs a request slot until the
connection fails (~0.3 s per refused connection inside Twisted's ``HostnameEndpoint``, up to
``DOWNLOAD_TIMEOUT`` for one that never answers) and then a retry. One non-blocking TCP connect per
distinct ``host:port``, all in parallel, right after the extraction and in the same worker thread,
costs one round trip per batch instead; nothing is sent over the connection.

Money: what the check drops was still paid for. ``extract`` returns an ``ExtractedBatch`` whose
``handed_over`` is the number of IPs the provider returned, and the pool counts that against
``max_extracted``, so the cap holds whether the proxies are reachable or not, inside Scrapy or
out. An answer with more IPs than asked for is cut to ``num`` before the check (the pool logs
the surplus), so a provider that over-delivers costs no extra probing.

Runs only in worker threads (the pool calls ``extract`` from ``refill``), never on the event loop.
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
from typing import TYPE_CHECKING

from proxypool.geo import Geo
from proxypool.pool import ExtractedBatch, handed_over

if TYPE_CHECKING:
    from proxypool.pool import ProxySource

__all__ = ["CheckedSource", "SourceCounters", "reachable"]

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
