"""Real local forward proxies (proxy.py subprocesses) with stable names, for the demo and tests.

A :class:`RelayFleet` starts N relays on ``127.0.0.1``, each a proxy.py subprocess loaded with
:mod:`proxypool.sim._relay_plugin`, which

- tags every forwarded plain-HTTP request with ``X-Proxypool-Relay: <name>``, and with
  ``X-Proxypool-Relayed-At: <time.monotonic()>`` read when the relay got the request (before its
  latency), and ``X-Proxypool-Relay-Peer: <port>``, the port its client connected from, so a
  test can tell which client connection carried a request and when the relay had it;
- appends ``host:port`` of each CONNECT tunnel to a per-relay file (:meth:`Relay.tunnels`);
- connects upstream from a loopback source address derived from the relay's port
  (:func:`source_ip_for_port`), so a target tells relayed from direct traffic, https included.

With ``aliases=N`` each relay process also accepts on the loopback addresses ``127.0.0.2`` ...
``127.0.0.(N+1)``, same port: N+1 proxies as a client sees them (distinct addresses, so distinct
pool entries and connection pools) served by one process, as a provider's gateway serves many IPs.

Knobs: :meth:`RelayFleet.kill` (the process is gone, connections are refused),
:meth:`RelayFleet.revive` (same port again), :meth:`RelayFleet.set_latency` (a slow relay),
optional basic auth (``auth=("user", "password")``) so tests can prove that proxy passwords never
leak. Relays start in parallel; :attr:`RelayFleet.startup_seconds` says how long the last
:meth:`RelayFleet.start` took. Every relay runs in its own process group, killed as a group on
:meth:`RelayFleet.close` (context manager, and an ``atexit`` hook), so no process outlives the
fleet on a test failure or KeyboardInterrupt; and each relay kills itself if its owner process
dies without closing the fleet (SIGKILL, a crash).

Relays run proxy.py with ``--threaded --local-executor 0 --num-acceptors 1``: the default
executor mode adds ~25 ms to every new connection, and threaded mode lets the latency knob delay
one connection without stalling the others.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from proxypool.errors import ConfigError
from proxypool.models import Proxy
from proxypool.sim._service import Service

__all__ = [
    "RELAYED_AT_HEADER",
    "RELAY_HEADER",
    "RELAY_PEER_HEADER",
    "Relay",
    "RelayFleet",
    "RelayStartError",
    "port_for_source_ip",
    "source_ip_for_port",
]

logger = logging.getLogger(__name__)

#: Header the relays set on every plain-HTTP request they forward: the relay's name.
RELAY_HEADER = "X-Proxypool-Relay"
#: Header the relays set beside it: ``time.monotonic()`` (the machine's clock, shared by every
#: process here) when the relay got the request, before its latency. See ``Hit.relayed_at``.
RELAYED_AT_HEADER = "X-Proxypool-Relayed-At"
#: And the port its client connected from (see ``Hit.relay_peer_port``).
RELAY_PEER_HEADER = "X-Proxypool-Relay-Peer"

_PLUGIN_FILE = str(Path(__file__).resolve().with_name("_relay_plugin.py"))
_PLUGIN = "_proxypool_relay_plugin.RelayTagPlugin"
# ``python -c`` program of a relay: load the plugin from its file (without importing the proxypool
# package, which costs ~100 ms per process), then run proxy.py on the remaining arguments.
# A watchdog thread kills the relay's process group if the process that started it dies without
# closing the fleet (SIGKILL, a crash), so no relay outlives its owner.
_BOOTSTRAP = """\
import importlib.util, os, signal, sys, threading, time
owner = int(sys.argv.pop(1))
def watch():
    while os.getppid() == owner:
        time.sleep(0.5)
    os.killpg(0, signal.SIGKILL)
threading.Thread(target=watch, daemon=True).start()
spec = importlib.util.spec_from_file_location("_proxypool_relay_plugin", sys.argv.pop(1))
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
from proxy.proxy import entry_point
entry_point()
"""
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_CREDENTIAL_RE = re.compile(r"^[A-Za-z0-9]{1,64}$")


def source_ip_for_port(port: int) -> str:
    """The loopback address a relay listening on ``port`` connects upstream from:
    ``127.<port // 256>.<port % 256>.1``. Never ``127.0.0.1`` for ports >= 256, so a target site
    can tell relayed requests from direct ones by the peer address alone."""
    if not 0 < port < 65536:
        raise ConfigError(f"port must be 1..65535, got {port!r}", field="port")
    return f"127.{port >> 8}.{port & 255}.1"


def port_for_source_ip(ip: str) -> int | None:
    """Inverse of :func:`source_ip_for_port`: the relay port encoded in a peer address, or
    ``None`` when ``ip`` is not a relay source address (e.g. ``127.0.0.1``: a direct request)."""
    parts = ip.split(".")
    if len(parts) != 4 or parts[0] != "127" or parts[3] != "1":
        return None
    try:
        high, low = int(parts[1]), int(parts[2])
    except ValueError:
        return None
    port = (high << 8) | low
    if port < 256 or not (0 <= high < 256 and 0 <= low < 256):
        return None
    return port


class RelayStartError(RuntimeError):
    """A relay process did not come up (exited early or did not accept connections in time).
    The message holds the tail of the relay's own output."""


class Relay:
    """One local forward proxy of a :class:`RelayFleet`.

    ``name`` is stable for the relay's life (``"relay-0"``, ...), and so are ``host``, ``port``
    and ``address`` (``"host:port"``), across :meth:`RelayFleet.kill`/:meth:`RelayFleet.revive`.
    ``proxy`` is the :class:`~proxypool.models.Proxy` to hand to a client (with the fleet's basic
    auth credentials, if any). The process state is managed by the fleet; read-only here.
    """

    def __init__(
        self,
        name: str,
        host: str,
        workdir: Path,
        *,
        auth: tuple[str, str] | None,
        latency: float,
        aliases: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.host = host
        #: Further hosts (loopback addresses) this relay's process accepts on, same port.
        self.aliases = aliases
        self.port = 0
        self.latency = latency
        self._auth = auth
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None

    # -- identity -----------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    @property
    def proxy(self) -> Proxy:
        """The relay as a :class:`~proxypool.models.Proxy` (credentials included when the fleet
        has ``auth``)."""
        username, password = self._auth if self._auth is not None else (None, None)
        return Proxy(self.host, self.port, username=username, password=password)

    @property
    def url(self) -> str:
        """``http://[user:password@]host:port``. Contains the password: never log it."""
        return self.proxy.url

    @property
    def addresses(self) -> tuple[str, ...]:
        """``host:port`` of every address the relay accepts on: its own, then its aliases."""
        return tuple(f"{host}:{self.port}" for host in (self.host, *self.aliases))

    @property
    def source_ip(self) -> str:
        """The loopback address this relay connects to loopback targets from."""
        return source_ip_for_port(self.port)

    @property
    def alive(self) -> bool:
        """True while the relay process runs."""
        return self._process is not None and self._process.poll() is None

    # -- observations -------------------------------------------------------------------------

    @property
    def tunnel_log(self) -> Path:
        """File the relay appends ``host:port`` of each CONNECT tunnel to."""
        return self._workdir / f"{self.name}.tunnels"

    @property
    def output_log(self) -> Path:
        """The relay process's own stdout/stderr (proxy.py logs at WARNING)."""
        return self._workdir / f"{self.name}.out"

    def tunnels(self) -> list[str]:
        """``host:port`` of every CONNECT tunnel this relay opened so far, oldest first."""
        try:
            text = self.tunnel_log.read_text("utf-8")
        except FileNotFoundError:
            return []
        return text.splitlines()

    def __repr__(self) -> str:
        state = "alive" if self.alive else "stopped"
        return f"Relay({self.name!r}, {self.address!r}, {state})"


class RelayFleet(Service):
    """N real forward proxies on loopback, started in parallel, stopped together.

    ``count`` relays are named ``f"{prefix}{i}"``; ``latency`` is seconds added before each
    forwarded request, for all relays (a float) or per name (a mapping); ``auth`` is
    ``(username, password)`` for proxy basic auth on every relay (alphanumeric, like the
    provider's); ``aliases``: how many further loopback addresses (``127.0.0.2`` on) each relay
    also accepts on, with the same port (see the module docstring). Use as a context manager, or
    call :meth:`start` and :meth:`close`.

    Not meant for concurrent control from several threads, but its methods hold a lock, so a
    stray concurrent :meth:`kill` cannot corrupt it. Clients in any number of threads may of
    course send traffic through the relays.
    """

    def __init__(
        self,
        count: int = 4,
        *,
        host: str = "127.0.0.1",
        prefix: str = "relay-",
        auth: tuple[str, str] | None = None,
        latency: float | Mapping[str, float] = 0.0,
        startup_timeout: float = 15.0,
        aliases: int = 0,
    ) -> None:
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 64:
            raise ConfigError(f"count must be an int in 1..64, got {count!r}", field="count")
        if not isinstance(aliases, int) or isinstance(aliases, bool) or not 0 <= aliases <= 64:
            raise ConfigError(f"aliases must be an int in 0..64, got {aliases!r}", field="aliases")
        alias_hosts = tuple(f"127.0.0.{i}" for i in range(2, aliases + 2))
        if host in alias_hosts:
            raise ConfigError(
                f"host {host!r} is one of the alias addresses 127.0.0.2..127.0.0.{aliases + 1}",
                field="host",
            )
        if auth is not None and not (
            len(auth) == 2 and all(_CREDENTIAL_RE.match(part) for part in auth)
        ):
            raise ConfigError(
                "auth must be (username, password), both alphanumeric (1..64 chars)", field="auth"
            )
        names = [f"{prefix}{i}" for i in range(count)]
        for name in names:
            if not _NAME_RE.match(name):
                raise ConfigError(
                    f"prefix must make names of letters, digits, '.', '_', '-'; got {name!r}",
                    field="prefix",
                )
        latencies = (
            dict.fromkeys(names, float(latency))
            if isinstance(latency, int | float)
            else {name: float(latency.get(name, 0.0)) for name in names}
        )
        if not isinstance(latency, int | float):
            unknown = sorted(set(latency) - set(names))
            if unknown:
                raise ConfigError(f"latency names unknown relays: {unknown}", field="latency")
        if any(value < 0 for value in latencies.values()):
            raise ConfigError("latency must be >= 0 seconds", field="latency")

        self.host = host
        self.startup_timeout = startup_timeout
        #: Seconds the last :meth:`start` took until every relay accepted connections.
        self.startup_seconds: float | None = None
        self._workdir = Path(tempfile.mkdtemp(prefix="proxypool-relays-"))
        self._relays = {
            name: Relay(
                name, host, self._workdir, auth=auth, latency=latencies[name], aliases=alias_hosts
            )
            for name in names
        }
        self._lock = threading.RLock()
        self._closed = False
        self._started = False

    # -- access -------------------------------------------------------------------------------

    @property
    def relays(self) -> tuple[Relay, ...]:
        """All relays, in name order."""
        return tuple(self._relays.values())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._relays)

    def __getitem__(self, name: str) -> Relay:
        try:
            return self._relays[name]
        except KeyError:
            raise KeyError(f"no relay named {name!r}; relays: {', '.join(self._relays)}") from None

    def __iter__(self) -> Iterator[Relay]:
        return iter(self.relays)

    def __len__(self) -> int:
        return len(self._relays)

    def proxies(self, names: Sequence[str] | None = None) -> list[Proxy]:
        """The relays (all, or those named) as :class:`~proxypool.models.Proxy` values."""
        return [self[name].proxy for name in (names if names is not None else self.names)]

    def by_address(self, address: str) -> Relay:
        """The relay listening on ``address`` (``"host:port"``)."""
        for relay in self._relays.values():
            if relay.address == address:
                return relay
        raise KeyError(f"no relay at {address}")

    def by_port(self, port: int) -> Relay | None:
        """The relay listening on ``port``, or ``None``."""
        for relay in self._relays.values():
            if relay.port == port:
                return relay
        return None

    def alive(self) -> list[str]:
        """Names of the relays whose process runs."""
        return [relay.name for relay in self._relays.values() if relay.alive]

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> RelayFleet:
        """Start every relay in parallel and wait until each accepts connections.

        Raises :class:`RelayStartError` (after stopping whatever did start) if one does not come
        up within ``startup_timeout`` seconds.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("this RelayFleet is closed")
            if self._started:
                return self
            self._started = True
            atexit.register(self.close)
            began = time.perf_counter()
            try:
                for relay in self._relays.values():
                    self._spawn(relay)
                deadline = time.monotonic() + self.startup_timeout
                for relay in self._relays.values():
                    self._wait_until_up(relay, deadline)
            except BaseException:
                self.close()
                raise
            self.startup_seconds = time.perf_counter() - began
            logger.debug("started %d relays in %.3f s", len(self._relays), self.startup_seconds)
            return self

    def close(self) -> None:
        """Stop every relay (process groups killed) and remove the fleet's files. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            atexit.unregister(self.close)
            for relay in self._relays.values():
                self._stop(relay)
            shutil.rmtree(self._workdir, ignore_errors=True)

    # -- knobs --------------------------------------------------------------------------------

    def kill(self, name: str) -> None:
        """Stop relay ``name`` abruptly (SIGKILL to its process group); returns once its port
        refuses connections. Open connections through it are reset."""
        with self._lock:
            relay = self[name]
            self._stop(relay)
            self._wait_until_refused(relay, time.monotonic() + self.startup_timeout)

    def revive(self, name: str) -> None:
        """Start relay ``name`` again on the same port; returns once it accepts connections.
        A no-op when it runs."""
        with self._lock:
            relay = self[name]
            self._ensure_open()
            if relay.alive:
                return
            self._spawn(relay)
            self._wait_until_up(relay, time.monotonic() + self.startup_timeout)

    def set_latency(self, name: str, seconds: float) -> None:
        """Make relay ``name`` wait ``seconds`` before forwarding each request. Restarts the relay
        process (same port) when it runs, which drops its open connections."""
        if seconds < 0:
            raise ConfigError("latency must be >= 0 seconds", field="seconds")
        with self._lock:
            relay = self[name]
            relay.latency = float(seconds)
            if relay.alive:
                self.kill(name)
                self.revive(name)

    # -- process management -------------------------------------------------------------------

    def _ensure_open(self) -> None:
        if self._closed or not self._started:
            raise RuntimeError("the RelayFleet is not running (start it first)")

    def _port_file(self, relay: Relay) -> Path:
        return self._workdir / f"{relay.name}.port"

    def _spawn(self, relay: Relay) -> None:
        port_file = self._port_file(relay)
        port_file.unlink(missing_ok=True)
        if relay.aliases and not relay.port:
            # proxy.py would give each address its own free port: pick one free on all of them.
            relay.port = _free_port((relay.host, *relay.aliases))
        command = [
            sys.executable, "-c", _BOOTSTRAP, str(os.getpid()), _PLUGIN_FILE,
            "--hostname", relay.host,
            "--port", str(relay.port),
            "--port-file", str(port_file),
            "--threaded",
            "--local-executor", "0",
            "--num-acceptors", "1",
            "--log-level", "WARNING",
            "--plugins", _PLUGIN,
            "--proxypool-relay-name", relay.name,
            "--proxypool-relay-tunnel-log", str(relay.tunnel_log),
            "--proxypool-relay-latency", repr(relay.latency),
        ]  # fmt: skip
        if relay.aliases:
            command += ["--hostnames", *relay.aliases]
        if relay._auth is not None:
            command += ["--basic-auth", ":".join(relay._auth)]
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        output = relay.output_log.open("ab")
        try:
            # A new session makes the relay and its acceptor child one process group, killed
            # together: no orphan keeps the port open.
            relay._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        finally:
            output.close()

    def _wait_until_up(self, relay: Relay, deadline: float) -> None:
        """Poll until the relay answers HTTP (not merely accepts: the kernel does that before
        proxy.py's acceptor process exists)."""
        process = relay._process
        assert process is not None
        port_file = self._port_file(relay)
        while True:
            if process.poll() is not None:
                raise RelayStartError(
                    f"relay {relay.name} exited with code {process.returncode}: "
                    f"{self._output_tail(relay)}"
                )
            if relay.port == 0:
                with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
                    relay.port = int(port_file.read_text().split()[0])
            if relay.port and _answers(relay.host, relay.port):
                return
            if time.monotonic() > deadline:
                raise RelayStartError(
                    f"relay {relay.name} did not accept connections within "
                    f"{self.startup_timeout} s: {self._output_tail(relay)}"
                )
            time.sleep(0.01)

    def _wait_until_refused(self, relay: Relay, deadline: float) -> None:
        # The acceptor child holds the listening socket too; it may outlive its parent briefly.
        while relay.port and _accepts(relay.host, relay.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"relay {relay.name} still accepts connections after kill")
            time.sleep(0.01)

    @staticmethod
    def _stop(relay: Relay) -> None:
        process = relay._process
        if process is None:
            return
        relay._process = None
        # Kill the group even when the leader has exited: its acceptor child may remain.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        # The acceptor child dies asynchronously: wait until no process of the group runs, so
        # "stopped" means stopped. (Zombies left for init to reap hold no sockets.)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if not _group_running(process.pid):
                return
            time.sleep(0.005)
        logger.warning("relay %s: processes of group %d outlived SIGKILL", relay.name, process.pid)

    @staticmethod
    def _output_tail(relay: Relay, limit: int = 2000) -> str:
        try:
            data = relay.output_log.read_bytes()
        except FileNotFoundError:
            return "(no output)"
        return data[-limit:].decode("utf-8", "replace").strip() or "(no output)"

    def __repr__(self) -> str:
        return f"RelayFleet({', '.join(f'{r.name}={r.address}' for r in self.relays)})"


def _free_port(hosts: Sequence[str], attempts: int = 20) -> int:
    """A TCP port nothing listens on at any of ``hosts`` (checked by binding each)."""
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port: int = probe.getsockname()[1]
        try:
            for host in hosts:
                with socket.socket() as sock:
                    sock.bind((host, port))
        except OSError:
            continue
        return port
    raise RelayStartError(f"found no port free on all of {', '.join(hosts)}")


def _group_running(pgid: int) -> bool:
    """True while a process of group ``pgid`` runs (zombies do not count, on Linux)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state, ppid, pgrp, ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _answers(host: str, port: int) -> bool:
    """True once the relay answers an HTTP request (a 400 for this non-proxy one): its acceptor
    process is up, not just the listening socket."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: probe\r\n\r\n")
            return sock.recv(16).startswith(b"HTTP/")
    except OSError:
        return False


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
