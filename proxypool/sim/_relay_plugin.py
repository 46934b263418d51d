"""The proxy.py plugin that gives each local relay an identity a target site can see.

Loaded inside a relay subprocess started by :class:`proxypool.sim.relays.RelayFleet`, never in the
caller's process. Per relay it:

- sets ``X-Proxypool-Relay: <name>`` on every plain-HTTP request it forwards (replacing any value
  the client sent, so it cannot be spoofed through the relay), and drops ``Proxy-Authorization``
  from every one (proxy.py itself does so only for a connection's first request);
- sets ``X-Proxypool-Relayed-At: <time.monotonic()>`` beside it: when the relay got the request,
  before its latency, and ``X-Proxypool-Relay-Peer: <port>``: the port its client connected
  from (so a test can tell which client connection carried the request, and whether that
  connection was cut);
- appends ``host:port`` of every CONNECT tunnel it opens to a per-relay file, so a test can tell
  which relay carried an https request (the tunnel is encrypted: no header can be added);
- binds its upstream connections to a loopback source address derived from its own port
  (:func:`proxypool.sim.relays.source_ip_for_port`), so the target site tells relayed traffic from
  direct traffic (source ``127.0.0.1``) for http and https alike;
- optionally sleeps before forwarding each request (an added latency, for "slow proxy" tests).

Relays run proxy.py with ``--threaded`` (one thread per client connection), so the sleep delays
only the connection it belongs to.

The fleet loads this file by path, under the name ``_proxypool_relay_plugin``, so a relay process
never imports the ``proxypool`` package (that would add ~100 ms to every relay's start). Hence
no proxypool imports here: the header name and the address encoding mirror
:mod:`proxypool.sim.relays`, and the tests check that the two agree.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import proxy.core.connection.server as _server_connection
from proxy.common.flag import flags
from proxy.common.utils import new_socket_connection as _original_new_socket_connection
from proxy.http.parser import HttpParser
from proxy.http.proxy import HttpProxyBasePlugin

__all__ = ["RelayTagPlugin"]

flags.add_argument(
    "--proxypool-relay-name",
    type=str,
    default="relay",
    help="proxypool sim: the relay's name, sent upstream in the X-Proxypool-Relay header.",
)
flags.add_argument(
    "--proxypool-relay-tunnel-log",
    type=str,
    default="",
    help="proxypool sim: file to which host:port of each CONNECT tunnel is appended.",
)
flags.add_argument(
    "--proxypool-relay-latency",
    type=float,
    default=0.0,
    help="proxypool sim: seconds to wait before forwarding each request.",
)

_HEADER = b"X-Proxypool-Relay"  # = proxypool.sim.relays.RELAY_HEADER
_RELAYED_AT = b"X-Proxypool-Relayed-At"  # = proxypool.sim.relays.RELAYED_AT_HEADER
_PEER = b"X-Proxypool-Relay-Peer"  # = proxypool.sim.relays.RELAY_PEER_HEADER


def source_ip_for_port(port: int) -> str:
    """= :func:`proxypool.sim.relays.source_ip_for_port`."""
    return f"127.{port >> 8}.{port & 255}.1"


def _new_socket_connection(
    addr: tuple[str, int],
    timeout: float = 10.0,
    connect_timeout: float = 10.0,
    source_address: tuple[str, int] | None = None,
) -> socket.socket:
    # proxy.py 2.4.10 drops ``source_address`` when the upstream host is an IP literal; this
    # process only runs a relay, so patching its one caller here is contained.
    if source_address is None:
        conn: socket.socket = _original_new_socket_connection(
            addr, timeout=timeout, connect_timeout=connect_timeout
        )
        return conn
    conn = socket.create_connection(addr, timeout=connect_timeout, source_address=source_address)
    conn.settimeout(timeout)
    return conn


_server_connection.new_socket_connection = _new_socket_connection  # type: ignore[attr-defined]


class RelayTagPlugin(HttpProxyBasePlugin):
    """Tags forwarded requests with the relay's name and logs CONNECT tunnels. One instance per
    client connection (proxy.py's model), so no state is shared between threads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._name = str(self.flags.proxypool_relay_name).encode("utf-8")
        self._tunnel_log = str(self.flags.proxypool_relay_tunnel_log)
        self._latency = float(self.flags.proxypool_relay_latency)

    def resolve_dns(self, host: str, port: int) -> tuple[str | None, tuple[str, int] | None]:
        # Only loopback IPv4 targets can be reached from a 127.x.y.1 source address.
        if host.startswith("127."):
            return None, (source_ip_for_port(int(self.flags.port)), 0)
        return None, None

    def handle_client_request(self, request: HttpParser) -> HttpParser | None:
        received = time.monotonic()
        if self._latency > 0:
            time.sleep(self._latency)
        if request.is_https_tunnel:
            if self._tunnel_log:
                host = request.host.decode("utf-8", "replace") if request.host else ""
                line = f"{host}:{request.port}\n".encode()
                # O_APPEND writes of one short line are atomic, so concurrent tunnels never
                # interleave their lines.
                fd = os.open(self._tunnel_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
            return request
        # proxy.py strips Proxy-Authorization from the first request of a connection only; a real
        # proxy never forwards the client's proxy credentials to the site.
        request.del_header(b"Proxy-Authorization")
        request.add_header(_HEADER, self._name)  # replaces any client-sent value
        request.add_header(_RELAYED_AT, repr(received).encode("ascii"))
        peer = self.client.addr
        request.add_header(_PEER, str(peer[1] if peer else 0).encode("ascii"))
        return request
