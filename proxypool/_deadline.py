"""One deadline for a whole provider call: a watchdog cuts the connection when time is up.

Why: requests' ``timeout`` bounds each socket read, not the call. A provider that sends a byte
just before each read would time out keeps a call alive for as long as it likes, in the headers
(``http.client`` reads a line until its end) as in the body. A ``Watchdog`` armed for the time
left shuts the connection down at the deadline, so the blocked read returns at once and the call
fails; ``fired`` tells the caller why.

Two ways to reach the connection, both public API:

- from the response (``urllib3.HTTPResponse.shutdown()``, urllib3 >= 2.3), once the headers are
  in. urllib3 refuses it once the connection went back to the pool, so a late watchdog never
  cuts a connection another call is using. Works with any ``requests.Session``.
- before that, from the connection itself, for a ``ProviderSession`` (the client's default, and
  the one the Scrapy middleware hands it): its connections (urllib3's ``ConnectionCls`` hook)
  report to the watchdog of the call running in their thread. With any other session of the
  caller's own, the headers are bounded per read only (each read waits at most the time left).

``ProviderSession`` also has an abort switch that cuts every call in flight (the Scrapy
middleware pulls it when the spider closes).

Thread-safety: a watchdog is used by the thread making the call and by its timer thread; one lock
guards what it would cut, and is held only for a non-blocking ``shutdown`` call.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import weakref
from types import TracebackType
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import ProxyManager

__all__ = ["CallRegistry", "ProviderSession", "Watchdog"]


class Watchdog:
    """Cuts the connection of one call after ``seconds``; a context manager (armed on entry,
    disarmed on exit, after which it never cuts anything)."""

    def __init__(self, seconds: float) -> None:
        self._lock = threading.Lock()
        self._done = False
        self._fired = False
        self._connection: HTTPConnection | None = None
        self._response: Any = None
        self._timer = threading.Timer(max(seconds, 0.0), self._cut)
        self._timer.daemon = True  # a pending timer must not keep the interpreter alive

    @property
    def fired(self) -> bool:
        """Whether the deadline passed and the call was cut."""
        return self._fired

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()

    def connection(self, conn: HTTPConnection) -> None:
        """``conn`` carries the call now (sending, then reading the headers). Called once it is
        connected: a deadline that passed while it connected cuts it at once."""
        with self._lock:
            self._connection = conn
            if self._fired and not self._done:
                _shut(conn)

    def response(self, raw: Any) -> None:
        """The headers are in: from now on, cut through the response (``raw`` is the urllib3
        response), which knows when its connection went back to the pool."""
        with self._lock:
            if callable(getattr(raw, "shutdown", None)):
                self._response = raw
                self._connection = None

    def _cut(self) -> None:
        with self._lock:
            if self._done:
                return
            self._fired = True
            if self._response is not None:
                # RuntimeError: the connection is back in the pool (the call has its answer);
                # ValueError: this response cannot be shut down. Nothing to cut either way.
                with contextlib.suppress(RuntimeError, ValueError, OSError):
                    self._response.shutdown()
            elif self._connection is not None:
                _shut(self._connection)


def _shut(conn: HTTPConnection) -> None:
    sock: socket.socket | None = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class CallRegistry:
    """The watchdog of the call each thread is making (one registry per client)."""

    def __init__(self) -> None:
        self._local = threading.local()

    @contextlib.contextmanager
    def watching(self, watchdog: Watchdog) -> Any:
        self._local.watchdog = watchdog
        try:
            yield watchdog
        finally:
            self._local.watchdog = None

    def report(self, conn: HTTPConnection) -> None:
        watchdog: Watchdog | None = getattr(self._local, "watchdog", None)
        if watchdog is not None:
            watchdog.connection(conn)


class _Cutter:
    """The connections a session has open, and whether it was aborted (``ProviderSession.abort``).
    One lock guards the set; it is never held during socket I/O."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[HTTPConnection] = weakref.WeakSet()
        self._aborted = threading.Event()

    @property
    def aborted(self) -> bool:
        return self._aborted.is_set()

    def opening(self, conn: HTTPConnection) -> None:
        """Called before ``conn`` connects: refuse once aborted, else track it."""
        if self._aborted.is_set():
            raise ConnectionAbortedError("the session was aborted: no new connections")
        with self._lock:
            self._open.add(conn)

    def opened(self, conn: HTTPConnection) -> None:
        """Called once ``conn`` is connected: an abort that came meanwhile cuts it now."""
        if self._aborted.is_set():
            _shut(conn)
            raise ConnectionAbortedError("the session was aborted while connecting")

    def abort(self) -> None:
        self._aborted.set()
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            _shut(conn)

    def sleep(self, seconds: float) -> None:
        self._aborted.wait(seconds)


def _pool_classes(calls: CallRegistry, cutter: _Cutter) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 pool classes whose connections report to ``cutter`` (before and after they
    connect) and to the watchdog of their thread's call (once connected, and each time they
    send a request: a kept-alive one connects once)."""

    class _Connection(HTTPConnection):
        def connect(self) -> None:
            cutter.opening(self)
            # Reported before connecting too: urllib3 sets ``self.sock`` once TCP is up, then
            # reads a proxy's CONNECT answer (line by line, each read bounded alone) and does
            # TLS, so a deadline passing meanwhile can cut that socket.
            calls.report(self)
            super().connect()
            cutter.opened(self)
            calls.report(self)  # a deadline that passed before ``self.sock`` existed cuts now

        def request(self, *args: Any, **kwargs: Any) -> None:
            calls.report(self)
            super().request(*args, **kwargs)

    class _TLSConnection(_Connection, HTTPSConnection):  # (super() reaches HTTPSConnection's)
        pass

    class _Pool(HTTPConnectionPool):
        ConnectionCls = _Connection

    class _TLSPool(HTTPSConnectionPool):
        ConnectionCls = _TLSConnection

    return {"http": _Pool, "https": _TLSPool}


class _Adapter(HTTPAdapter):
    def __init__(self, calls: CallRegistry, cutter: _Cutter) -> None:
        self._classes = _pool_classes(calls, cutter)
        super().__init__()  # calls init_poolmanager, which needs the classes

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = self._classes

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is ProxyManager:  # not SOCKS: its pools have their own classes
            manager.pool_classes_by_scheme = self._classes
        return manager


class ProviderSession(requests.Session):
    """The ``requests.Session`` a ``ProviderClient`` talks to the provider through.

    - Its connections report to ``calls`` (the client's ``CallRegistry``), so a call's watchdog
      can cut one still waiting for its headers: with this session, ``timeout`` bounds the
      whole call. A ``ProviderClient`` given one uses its registry.
    - ``abort()`` cuts every call in flight (a blocked read returns at once with a connection
      error) and refuses every later connection, so a client's retry fails at once too;
      ``sleep(seconds)`` is a ``time.sleep`` that returns early once aborted (the client's pause
      between retries). The Scrapy middleware aborts its session when the spider closes.

    Only plain http and https connections, direct or through an http(s) proxy, are tracked (a
    SOCKS proxy from the environment keeps urllib3's own classes). A connect still under way
    when ``abort()`` is called is cut as soon as it completes. Thread-safe: ``abort()`` and
    ``sleep()`` may be called from any thread while requests run in others.
    """

    def __init__(self, calls: CallRegistry | None = None) -> None:
        super().__init__()
        self.calls = calls if calls is not None else CallRegistry()
        self._cutter = _Cutter()
        adapter = _Adapter(self.calls, self._cutter)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    @property
    def aborted(self) -> bool:
        return self._cutter.aborted

    def abort(self) -> None:
        """Cut every call in flight, refuse new ones, and release the connection pools.
        Idempotent."""
        self._cutter.abort()
        self.close()

    def sleep(self, seconds: float) -> None:
        """``time.sleep(seconds)`` that returns early once the session is aborted."""
        self._cutter.sleep(seconds)
