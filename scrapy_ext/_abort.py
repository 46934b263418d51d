"""AbortableSession: a ``requests.Session`` whose calls in flight can be cut from another thread.

Why: the middleware's provider calls (extractions, location lists) run in worker threads and
block in a socket read until the provider answers or the client's timeout passes. When the spider
closes, nobody needs those answers any more, and a thread stuck in a read keeps the process alive
(``ThreadPoolExecutor`` threads are joined at exit). ``abort()`` shuts down the sockets of every
connection the session has open, so a blocked read returns at once with a connection error, and
refuses every later connection, so a client's retry fails at once too. ``sleep`` is a
``time.sleep`` that returns early once aborted, for the client's pause between retries.

Only plain http and https connections, direct or through an http(s) proxy, are tracked (a SOCKS
proxy from the environment keeps urllib3's own classes). A connect still under way when
``abort()`` is called is cut as soon as it completes.

Thread-safety: ``abort()`` and ``sleep()`` may be called from any thread, while requests run in
others; one lock guards the set of open connections and is never held during socket I/O.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import weakref
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import ProxyManager

__all__ = ["AbortableSession"]


class _Cutter:
    """The connections a session has open, and whether it was aborted."""

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


def _shut(conn: HTTPConnection) -> None:
    """Shut the connection's socket down in both directions: a read blocked on it in another
    thread returns at once (end of stream). The owner thread still closes it."""
    sock: socket.socket | None = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _pool_classes(cutter: _Cutter) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 pool classes whose connections report to ``cutter``."""

    class _Connection(HTTPConnection):
        def connect(self) -> None:
            cutter.opening(self)
            super().connect()
            cutter.opened(self)

    class _TLSConnection(HTTPSConnection):
        def connect(self) -> None:
            cutter.opening(self)
            super().connect()
            cutter.opened(self)

    class _Pool(HTTPConnectionPool):
        ConnectionCls = _Connection

    class _TLSPool(HTTPSConnectionPool):
        ConnectionCls = _TLSConnection

    return {"http": _Pool, "https": _TLSPool}


class _Adapter(HTTPAdapter):
    def __init__(self, cutter: _Cutter) -> None:
        self._cutter = cutter
        self._classes = _pool_classes(cutter)
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


class AbortableSession(requests.Session):
    """A ``requests.Session`` that ``abort()`` cuts: calls in flight fail at once with a
    connection error, later calls too. ``sleep(seconds)`` waits, but no longer than until the
    abort. Thread-safe as described in the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self._cutter = _Cutter()
        adapter = _Adapter(self._cutter)
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
