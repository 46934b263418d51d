"""A local target site that records which relay (if any) carried each request, with bans.

:class:`TargetSite` is a threaded HTTP/1.1 server (keep-alive) on ``127.0.0.1`` serving a
crawlable site: ``/`` links to ``/page/0``, and every ``/page/<n>`` links to a few other pages, so
a crawler starting at ``/`` reaches all ``pages`` of them. Also ``/echo`` (JSON: method, path,
headers, body length), ``/status/<code>`` and ``/redirect?to=<url>`` (a 302 to ``url``, a path or
an absolute URL, percent-encoded). Methods GET, HEAD and POST.

Every request is recorded as a :class:`Hit`: the relay's name from the ``X-Proxypool-Relay``
header (plain http through a :class:`~proxypool.sim.relays.RelayFleet` relay), the relay's port
decoded from the peer address (http and https alike; ``None`` means the request came WITHOUT a
proxy), the status served and the time. Bans make the site answer a status (403 by default) to
one relay, or a 200 captcha page (``captcha=True``) for body-based ban policies.

``TargetSite(tls=True)`` serves https with a self-signed certificate made at start
(:attr:`TargetSite.cert_path` to pin it). Through a relay, https arrives in a CONNECT tunnel, so
no header names the relay: the site knows it by port once told with :meth:`TargetSite.know_relays`.

Thread-safe: the request log and the ban table are guarded by one lock. A hit's time is read
under that lock together with its ban. :meth:`TargetSite.wait_done_with` waits until the site is
done with the connections of some relays (killed ones, say): every request they carried recorded.
"""

from __future__ import annotations

import collections
import contextlib
import html
import json
import logging
import re
import shutil
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

from proxypool.errors import ConfigError
from proxypool.sim._service import Service
from proxypool.sim.relays import (
    RELAY_HEADER,
    RELAY_PEER_HEADER,
    RELAYED_AT_HEADER,
    port_for_source_ip,
)

__all__ = ["CAPTCHA_MARKER", "Ban", "Hit", "TargetSite"]

logger = logging.getLogger(__name__)

#: Text every captcha page contains; a body-based ban policy can look for it.
CAPTCHA_MARKER = "proxypool-sim-captcha"

_PAGE_RE = re.compile(r"^/page/(\d+)$")
_STATUS_RE = re.compile(r"^/status/(\d{3})$")


class _NamedRelay(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def port(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Hit:
    """One request the site received.

    ``relay`` is the relay's name (from its header, or from its port for https once the site
    knows the fleet), ``relay_port`` the port of the relay that carried the request; both ``None``
    when the request came directly, without a proxy. ``at`` is the site's clock (seconds,
    ``time.monotonic`` by default) when the site decided the answer: read under the lock that
    :meth:`TargetSite.ban` takes, together with the ban table, so a hit stamped after ``ban()``
    returned is banned, and one stamped before ``ban()`` was called is not. ``banned`` says the
    answer was a ban (status or captcha).
    """

    method: str
    path: str
    relay: str | None
    relay_port: int | None
    status: int
    at: float
    tls: bool
    banned: bool
    headers: tuple[tuple[str, str], ...]

    @property
    def direct(self) -> bool:
        """True when no proxy carried the request (it came from the machine's own address)."""
        return self.relay_port is None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    @property
    def relayed_at(self) -> float | None:
        """When the relay got this request (``time.monotonic()``, read by the relay before its
        latency), from its ``X-Proxypool-Relayed-At`` header; ``None`` for a direct request or
        an https one (the tunnel is opaque to the relay). Same clock as ``at`` by default."""
        if self.relay_port is None:
            return None
        value = self.header(RELAYED_AT_HEADER)
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    @property
    def relay_peer_port(self) -> int | None:
        """The port the relay's client connected from (its ``X-Proxypool-Relay-Peer`` header):
        with ``relay``, it names the client connection that carried the request (a lease
        gateway's connection to the relay: see ``proxypool.sim.world.Forwarded``). ``None`` as
        for ``relayed_at``."""
        if self.relay_port is None:
            return None
        value = self.header(RELAY_PEER_HEADER)
        return int(value) if value is not None and value.isdigit() else None


@dataclass(frozen=True, slots=True)
class Ban:
    """How the site answers a banned relay: ``status``, or 200 with a captcha page."""

    status: int = 403
    captcha: bool = False


class TargetSite(Service):
    """A local, crawlable, recording HTTP(S) site. See the module docstring.

    ``pages`` is the number of ``/page/<n>`` pages, ``links_per_page`` how many links each
    carries; ``clock`` stamps hits (seconds). Use as a context manager, or :meth:`start` and
    :meth:`close`.
    """

    def __init__(
        self,
        pages: int = 20,
        *,
        links_per_page: int = 3,
        tls: bool = False,
        host: str = "127.0.0.1",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(pages, int) or isinstance(pages, bool) or pages < 1:
            raise ConfigError(f"pages must be an int >= 1, got {pages!r}", field="pages")
        if not isinstance(links_per_page, int) or links_per_page < 1:
            raise ConfigError(
                f"links_per_page must be an int >= 1, got {links_per_page!r}",
                field="links_per_page",
            )
        self.pages = pages
        self.links_per_page = links_per_page
        self.tls = tls
        self.host = host
        self.clock = clock
        self.cert_path: Path | None = None
        self.key_path: Path | None = None
        self._lock = threading.Lock()
        self._hits: list[Hit] = []
        self._bans: dict[str | None, Ban] = {}
        self._relay_names: dict[int, str] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._certdir: Path | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> TargetSite:
        """Bind a free port and serve in a daemon thread. Idempotent."""
        if self._server is not None:
            return self
        context = None
        if self.tls:
            from proxypool.sim.tls import make_self_signed_cert, server_context

            self._certdir = Path(tempfile.mkdtemp(prefix="proxypool-target-"))
            self.cert_path, self.key_path = make_self_signed_cert(
                self._certdir, hosts=(self.host, "localhost")
            )
            context = server_context(self.cert_path, self.key_path)
        self._server = _Server((self.host, 0), _Handler, site=self, context=context)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"TargetSite:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, close open connections and remove the certificate files. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._certdir is not None:
            shutil.rmtree(self._certdir, ignore_errors=True)
            self._certdir = None

    # -- addresses ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the TargetSite is not running (start it first)")
        return int(self._server.server_address[1])

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:41234``."""
        return f"{self.scheme}://{self.host}:{self.port}"

    def url_for(self, path: str = "/") -> str:
        """Absolute URL of ``path`` on this site."""
        return self.url + (path if path.startswith("/") else "/" + path)

    def page_urls(self) -> list[str]:
        """URLs of ``/`` and every ``/page/<n>``: what a full crawl fetches."""
        return [self.url_for("/")] + [self.url_for(f"/page/{n}") for n in range(self.pages)]

    # -- relays and bans ----------------------------------------------------------------------

    def know_relays(self, relays: Iterable[_NamedRelay]) -> None:
        """Learn relays' names by port, so https hits (no header in a tunnel) carry names too,
        and bans by name apply to them. Pass a ``RelayFleet`` or some of its relays."""
        with self._lock:
            for relay in relays:
                self._relay_names[relay.port] = relay.name

    def ban(self, relay: str | None, status: int = 403, *, captcha: bool = False) -> None:
        """Answer ``status`` to every request from relay ``relay`` (its name; ``None`` bans
        direct requests), or, with ``captcha=True``, a 200 captcha page containing
        :data:`CAPTCHA_MARKER`."""
        if not 100 <= status <= 599:
            raise ConfigError(f"status must be 100..599, got {status!r}", field="status")
        with self._lock:
            self._bans[relay] = Ban(200 if captcha else status, captcha)

    def unban(self, relay: str | None) -> None:
        """Lift the ban on ``relay`` (no error if there was none)."""
        with self._lock:
            self._bans.pop(relay, None)

    def unban_all(self) -> None:
        with self._lock:
            self._bans.clear()

    # -- the request log ----------------------------------------------------------------------

    def hits(self) -> list[Hit]:
        """Every request so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._hits)

    def clear(self) -> None:
        """Forget the recorded requests (bans and known relays stay)."""
        with self._lock:
            self._hits.clear()

    def count(self) -> int:
        with self._lock:
            return len(self._hits)

    def hits_by_relay(self) -> collections.Counter[str | None]:
        """Requests per relay name; key ``None`` counts direct requests (and relayed https ones
        from relays the site was not told about with :meth:`know_relays`)."""
        with self._lock:
            return collections.Counter(hit.relay for hit in self._hits)

    def hits_by_relay_port(self) -> collections.Counter[int | None]:
        """Requests per relay port (http and https); key ``None`` counts direct requests."""
        with self._lock:
            return collections.Counter(hit.relay_port for hit in self._hits)

    def direct_hits(self) -> list[Hit]:
        """Requests that came WITHOUT a proxy (from ``127.0.0.1`` itself)."""
        with self._lock:
            return [hit for hit in self._hits if hit.direct]

    def banned_hits(self) -> list[Hit]:
        """Requests answered with a ban (status or captcha)."""
        with self._lock:
            return [hit for hit in self._hits if hit.banned]

    def connections_accepted(self) -> int:
        """TCP (or TLS) connections accepted so far: shows whether clients keep connections
        alive."""
        server = self._server
        if server is None:
            return 0
        with server._connections_lock:
            return server.accepted

    def wait_done_with(self, relays: Iterable[_NamedRelay], timeout: float = 5.0) -> bool:
        """Wait until the site is done with every connection ``relays`` opened to it so far:
        each accepted and closed again, so every request they carried has been recorded. For
        relays just killed (their connections close once the site has answered what they
        sent): after this, no hit from them can appear. Returns ``False`` if one of their
        connections is still open after ``timeout`` seconds (a relay that still serves).

        A connection the kernel holds but the site has not accepted yet counts too: a probe
        connection opened now is accepted after it (the listen queue is first in, first out),
        so the wait lasts at least until the probe is accepted. The probe sends nothing, so it
        is no request and no hit."""
        server = self._server
        if server is None:
            raise RuntimeError("the TargetSite is not running (start it first)")
        ports = {relay.port for relay in relays}

        def done(probe: tuple[str, int]) -> bool:
            peers = server.open_peers.values()
            return probe in peers and not any(port_for_source_ip(ip) in ports for ip, _ in peers)

        with socket.create_connection((self.host, self.port), timeout=timeout) as probe:
            name = probe.getsockname()
            address = (str(name[0]), int(name[1]))
            with server.peers_changed:
                return server.peers_changed.wait_for(lambda: done(address), timeout)

    def paths_served_ok(self) -> set[str]:
        """Paths answered with a real 2xx page (bans and captchas excluded)."""
        with self._lock:
            return {h.path for h in self._hits if 200 <= h.status < 300 and not h.banned}

    # -- serving (called from handler threads) ------------------------------------------------

    def _identify(self, peer_ip: str, header: str | None) -> tuple[str | None, int | None]:
        port = port_for_source_ip(peer_ip)
        if port is None:
            # A direct request: a relay header sent by the client itself names nothing.
            return None, None
        if header is None:
            with self._lock:
                header = self._relay_names.get(port)
        return header, port

    def _ban_and_time(self, relay: str | None) -> tuple[Ban | None, float]:
        """The ban on ``relay`` and the hit's time stamp, read together under the lock
        :meth:`ban` takes: no ban can come or go between the two."""
        with self._lock:
            return self._bans.get(relay), self.clock()

    def _record(self, hit: Hit) -> None:
        with self._lock:
            self._hits.append(hit)

    def _page(self, path: str) -> tuple[int, str, bytes] | None:
        """``(status, content type, body)`` for a site path, or ``None`` if unknown."""
        if path == "/":
            return 200, "text/html", _html("home", [0])
        match = _PAGE_RE.match(path)
        if match:
            n = int(match.group(1))
            if n >= self.pages:
                return None
            # n + 1 chains every page to the next, so a crawl from "/" reaches all of them.
            k = self.links_per_page
            links = [(n * k + i) % self.pages for i in range(1, k)] + [(n + 1) % self.pages]
            return 200, "text/html", _html(f"page {n}", sorted(set(links)))
        match = _STATUS_RE.match(path)
        if match:
            code = int(match.group(1))
            return code, "text/plain", f"status {code}\n".encode()
        return None

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"TargetSite({where}, pages={self.pages})"


def _html(title: str, links: list[int]) -> bytes:
    anchors = "".join(f'<li><a href="/page/{n}">page {n}</a></li>' for n in links)
    return (
        f"<!doctype html><html><head><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><ul>{anchors}</ul></body></html>"
    ).encode()


_CAPTCHA_PAGE = (
    f"<!doctype html><html><head><title>Are you a robot?</title></head>"
    f'<body><div class="{CAPTCHA_MARKER}">Solve this captcha to continue.</div></body></html>'
).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep no per-thread list: memory stays flat over long runs

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        site: TargetSite,
        context: ssl.SSLContext | None,
    ) -> None:
        self.site = site
        self.context = context
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        # Peer address of every connection from its accept() until it is closed (TLS handshake
        # included), notified on each change: see TargetSite.wait_done_with.
        self.open_peers: dict[socket.socket, tuple[str, int]] = {}
        self.peers_changed = threading.Condition(self._connections_lock)
        self.accepted = 0
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        # Runs in the serving thread, right after accept(): a connection is known from then on.
        request, client_address = super().get_request()
        with self.peers_changed:
            self.open_peers[request] = (str(client_address[0]), int(client_address[1]))
            self.peers_changed.notify_all()
        return request, client_address

    def shutdown_request(self, request: Any) -> None:
        # Every accepted connection ends here, served or not (socketserver guarantees it).
        try:
            super().shutdown_request(request)
        finally:
            with self.peers_changed:
                self.open_peers.pop(request, None)
                self.peers_changed.notify_all()

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the connection's own thread, so a slow TLS handshake blocks nobody else.
        if self.context is not None:
            try:
                request = self.context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as exc:
                logger.debug("TLS handshake with %s failed: %s", client_address, exc)
                return
        with self._connections_lock:
            self._connections.add(request)
            self.accepted += 1
        try:
            super().finish_request(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; a client hanging up is routine here.
        logger.debug("error serving %s", client_address, exc_info=True)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30  # seconds an idle keep-alive connection is kept

    def setup(self) -> None:
        super().setup()
        # One write per response plus no Nagle: no 40 ms delayed-ACK stalls on keep-alive.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        site = self.server.site
        body_in = self._read_body()
        path = self.path.split("?", 1)[0]
        relay, relay_port = site._identify(self.client_address[0], self.headers.get(RELAY_HEADER))
        ban, at = site._ban_and_time(relay)
        content_type = "text/html"
        location = ""
        if ban is not None:
            status = ban.status
            body = _CAPTCHA_PAGE if ban.captcha else f"banned ({status})\n".encode()
        elif path == "/echo":
            status = 200
            content_type = "application/json"
            body = json.dumps(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": [[k, v] for k, v in self.headers.items()],
                    "body_length": len(body_in),
                }
            ).encode()
        elif path == "/redirect":
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            # Control characters dropped: a Location must not split the header block.
            location = "".join(c for c in query.get("to", ["/"])[0] if c.isprintable())
            status, content_type, body = 302, "text/plain", b"redirected\n"
        else:
            page = site._page(path)
            if page is None:
                status, content_type, body = 404, "text/plain", b"not found\n"
            else:
                status, content_type, body = page
        site._record(
            Hit(
                method=self.command,
                path=path,
                relay=relay,
                relay_port=relay_port,
                status=status,
                at=at,
                tls=site.tls,
                banned=ban is not None,
                headers=tuple(self.headers.items()),
            )
        )
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        extra = f"Location: {location}\r\n" if location else ""
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"{extra}\r\n"
        ).encode("latin-1")
        self.wfile.write(head if self.command == "HEAD" else head + body)
