"""The provider's username:password rotating gateway, simulated on one loopback port.

Real providers of this family sell traffic through one ``host:port``: the client sends its proxy
account's credentials with every request (``Proxy-Authorization: Basic``), and the username
carries the geography, the sticky time and a session id in the white-label grammar
(``USER_area-US_state-California_city-LosAngeles_life-15_session-Ab12Cd34``). The gateway
checks the account, picks an exit for the session and forwards. This one does the same over the
simulated world's relays:

- it authenticates against the ``ProviderSimulator``'s own proxy accounts (``login``), so an
  account made with ``proxypool accounts add`` works, and answers **407** to an unknown
  account, a wrong password, a disabled account or one past its ``limit_flow`` (the reason in the
  body, never the password);
- it parses the grammar (an unknown key or a malformed value is a 407 too: the gateway cannot
  tell what was meant);
- a session keeps one exit relay for its ``life`` (minutes, times ``time_scale``; 10 when the
  username gives none), or until that relay dies (then it gets another); a username without a
  session gets a random exit per request;
- exits are chosen by geography (``relays_for``: the relays placed there, else those standing in
  for anywhere), among the relays alive;
- it routes **each request** by its own credentials, also on a kept-alive connection (plain
  HTTP), and a CONNECT tunnel by the credentials of its CONNECT;
- traffic (request and answer bytes, both ways for a tunnel) is counted per account
  (``record``), which the simulator adds to the day's usage.

``requests()`` lists what it did (account, session, relay, status), for tests. Thread per client
connection (``ThreadingHTTPServer``); stop with :meth:`close` or a ``with`` block.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.client
import logging
import random
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from proxypool.geo import Geo
from proxypool.sim._service import Service
from proxypool.sim.relays import Relay

__all__ = ["AccountGateway", "GatewayRequest", "parse_username"]

logger = logging.getLogger(__name__)

DEFAULT_LIFE = 10  # minutes a session sticks to its exit when the username says nothing
_KEYS = ("area", "state", "city", "life", "session")
_VALUE = re.compile(r"[A-Za-z0-9]{1,64}")
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_BUFFER = 65536
_TUNNEL_POLL = 0.5


@dataclass(frozen=True, slots=True)
class GatewayRequest:
    """One request (or CONNECT) the gateway answered: the account (``user``, None when the
    credentials were unreadable), ``session`` (None: none asked), ``geo`` asked, the exit
    ``relay`` (None when refused), ``method``, ``target`` (URL, or ``host:port`` for CONNECT),
    the ``status`` the client got from the gateway itself (407, 502) or the site's, and ``at``
    (the gateway's clock)."""

    user: str | None
    session: str | None
    geo: Geo | None
    relay: str | None
    method: str
    target: str
    status: int
    at: float


class BadUsername(ValueError):
    """The username does not follow the grammar."""


def parse_username(username: str) -> tuple[str, Geo, int, str | None]:
    """``USER_area-CC_state-ST_city-CI_life-MIN_session-ID`` -> (user, geo, life, session); each
    segment optional, in any order. Raises ``BadUsername`` naming what is wrong."""
    user, *segments = username.split("_")
    if not _VALUE.fullmatch(user):
        raise BadUsername("the account name must be letters and digits")
    found: dict[str, str] = {}
    for segment in segments:
        key, sep, value = segment.partition("-")
        if not sep or key not in _KEYS:
            raise BadUsername(f"unknown segment {key!r}; known: {', '.join(_KEYS)}")
        if key in found:
            raise BadUsername(f"segment {key!r} given twice")
        if not _VALUE.fullmatch(value):
            raise BadUsername(f"segment {key!r} must be letters and digits")
        found[key] = value
    life = DEFAULT_LIFE
    if "life" in found:
        if not found["life"].isdigit() or not 1 <= int(found["life"]) <= 7200:
            raise BadUsername("life must be 1 to 7200 minutes")
        life = int(found["life"])
    try:
        geo = Geo(found.get("area"), found.get("state"), found.get("city"))
    except ValueError as exc:
        raise BadUsername(f"bad geography: {exc}") from None
    return user, geo, life, found.get("session")


Login = Callable[[str, str], "str | None"]


class AccountGateway(Service):
    """The rotating gateway (see the module docstring). ``login(user, password)`` returns None
    for an account that may be used, else why not (shown in the 407's body); ``relays_for(geo)``
    the relays that may exit for ``geo``, alive or not; ``record(user, nbytes)`` counts traffic.
    ``relay_auth``: the credentials the relays demand, if any. ``time_scale``: real seconds per
    simulated second (a session's life); ``clock``: monotonic seconds."""

    def __init__(
        self,
        *,
        login: Login,
        relays_for: Callable[[Geo], Sequence[Relay]],
        record: Callable[[str, int], None],
        relay_auth: tuple[str, str] | None = None,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.login = login
        self.relays_for = relays_for
        self.record = record
        self.time_scale = float(time_scale)
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._relay_auth = (
            None
            if relay_auth is None
            else "Basic " + base64.b64encode(":".join(relay_auth).encode()).decode()
        )
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, str], tuple[Relay, float]] = {}
        self._log: list[GatewayRequest] = []
        self._host = host
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._open: set[socket.socket] = set()
        self._connections = 0

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> AccountGateway:
        if self._server is not None:
            return self
        gateway = self

        class Handler(_Handler):
            owner = gateway

        server = ThreadingHTTPServer((self._host, 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            daemon=True,
            name="sim-account-gateway",
        )
        self._thread.start()
        return self

    def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the gateway is not running: call start() first")
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``: what ``GatewaySource`` and ``PROXYPOOL_GATEWAY`` take."""
        return f"{self._host}:{self.port}"

    # -- records --------------------------------------------------------------------------------

    def requests(self) -> list[GatewayRequest]:
        """What the gateway answered so far, oldest first."""
        with self._lock:
            return list(self._log)

    @property
    def connections(self) -> int:
        """Client connections accepted so far (fewer than requests: connections were reused)."""
        with self._lock:
            return self._connections

    def sessions(self) -> dict[tuple[str, str], str]:
        """``(user, session id)`` -> the relay it exits through now (or last did)."""
        with self._lock:
            return {key: relay.name for key, (relay, _) in self._sessions.items()}

    def _note(self, entry: GatewayRequest) -> None:
        with self._lock:
            self._log.append(entry)

    # -- routing --------------------------------------------------------------------------------

    def authorize(self, header: str | None) -> tuple[str, Geo, int, str | None] | tuple[None, str]:
        """The request's account, geography, life and session, or ``(None, why)``."""
        if not header:
            return None, "proxy authentication required"
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return None, "only Basic proxy authentication is accepted"
        try:
            decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None, "unreadable credentials"
        username, sep, password = decoded.partition(":")
        if not sep:
            return None, "no password given"
        try:
            user, geo, life, session = parse_username(username)
        except BadUsername as exc:
            return None, f"bad username: {exc}"
        problem = self.login(user, password)
        if problem is not None:
            return None, problem
        return user, geo, life, session

    def route(self, user: str, geo: Geo, life: int, session: str | None) -> Relay | None:
        """The exit relay: the session's for its life, else a random alive one for ``geo``."""
        now = self._clock()
        with self._lock:
            if session is not None:
                held = self._sessions.get((user, session))
                # A session whose exit went offline gets a new one, as a real gateway's does.
                if held is not None and held[1] > now and held[0].alive:
                    return held[0]
            candidates = [relay for relay in self.relays_for(geo) if relay.alive]
            if not candidates:
                return None
            relay = self._rng.choice(candidates)
            if session is not None:
                self._sessions[(user, session)] = (relay, now + life * 60 * self.time_scale)
            return relay


class _Handler(BaseHTTPRequestHandler):
    """One client connection: each request is routed by its own credentials."""

    owner: AccountGateway
    protocol_version = "HTTP/1.1"
    server_version = "SimGateway/1.0"

    def setup(self) -> None:
        super().setup()
        self._upstream: dict[str, http.client.HTTPConnection] = {}
        with self.owner._lock:
            self.owner._open.add(self.connection)
            self.owner._connections += 1

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        for conn in self._upstream.values():
            conn.close()
        with self.owner._lock:
            self.owner._open.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("gateway: " + format, *args)

    # -- answers of its own ---------------------------------------------------------------------

    def _answer(self, status: int, text: str, *, close: bool = False) -> None:
        body = (text + "\n").encode()
        self.send_response(status)
        if status == 407:
            self.send_header("Proxy-Authenticate", 'Basic realm="gateway"')
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # -- plain HTTP -----------------------------------------------------------------------------

    def _forward(self) -> None:
        owner = self.owner
        body = self._body()
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._answer(411, "chunked request bodies are not supported here", close=True)
            return
        if not self.path.startswith("http://"):
            self._answer(400, "a proxy request needs an absolute http:// URL", close=True)
            return
        auth = owner.authorize(self.headers.get("Proxy-Authorization"))
        if auth[0] is None:
            owner._note(
                GatewayRequest(None, None, None, None, self.command, self.path, 407, owner._clock())
            )
            self._answer(407, str(auth[1]))
            return
        user, geo, life, session = auth
        relay = owner.route(user, geo, life, session)
        if relay is None:
            owner._note(
                GatewayRequest(
                    user, session, geo, None, self.command, self.path, 502, owner._clock()
                )
            )
            self._answer(502, f"no exit available for {geo}")
            return
        headers = [
            (name, value) for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP
        ]
        if owner._relay_auth is not None:
            headers.append(("Proxy-Authorization", owner._relay_auth))
        try:
            status, reason, out_headers, out_body = self._through(relay, headers, body)
        except (OSError, http.client.HTTPException):
            owner._note(
                GatewayRequest(
                    user, session, geo, relay.name, self.command, self.path, 502, owner._clock()
                )
            )
            self._answer(502, "the exit did not answer")
            return
        self.send_response(status, reason)
        for name, value in out_headers:
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(out_body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out_body)
        sent = len(self.requestline) + sum(len(k) + len(v) + 4 for k, v in headers) + len(body)
        got = sum(len(k) + len(v) + 4 for k, v in out_headers) + len(out_body) + 17
        owner.record(user, sent + got)
        owner._note(
            GatewayRequest(
                user, session, geo, relay.name, self.command, self.path, status, owner._clock()
            )
        )

    def _through(
        self, relay: Relay, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """Send the request to ``relay`` (a connection kept per relay); its answer, read whole.

        A kept connection the relay has closed meanwhile is tried once more on a new one, as
        proxies do: when sending failed, or when the relay closed it without a word of answer
        and the method is idempotent. A POST the relay may have got is never sent twice."""
        for attempt in (1, 2):
            conn = self._upstream.get(relay.name)
            fresh = conn is None
            if conn is None:
                conn = http.client.HTTPConnection(relay.host, relay.port, timeout=30)
                self._upstream[relay.name] = conn
            sent = False
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                conn.endheaders(body or None)
                sent = True
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                del self._upstream[relay.name]
                stale = not sent or (
                    self.command in _IDEMPOTENT
                    and isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError)
                )
                if fresh or attempt == 2 or not stale:
                    raise
                continue
            if response.will_close:
                conn.close()
                del self._upstream[relay.name]
            return response.status, response.reason, response.getheaders(), data
        raise AssertionError("unreachable")

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _forward

    # -- CONNECT --------------------------------------------------------------------------------

    def do_CONNECT(self) -> None:
        owner = self.owner
        auth = owner.authorize(self.headers.get("Proxy-Authorization"))
        if auth[0] is None:
            owner._note(
                GatewayRequest(None, None, None, None, "CONNECT", self.path, 407, owner._clock())
            )
            self._answer(407, str(auth[1]), close=True)
            return
        user, geo, life, session = auth
        relay = owner.route(user, geo, life, session)
        if relay is None:
            owner._note(
                GatewayRequest(user, session, geo, None, "CONNECT", self.path, 502, owner._clock())
            )
            self._answer(502, f"no exit available for {geo}", close=True)
            return
        try:
            upstream = socket.create_connection((relay.host, relay.port), timeout=30)
        except OSError:
            owner._note(
                GatewayRequest(
                    user, session, geo, relay.name, "CONNECT", self.path, 502, owner._clock()
                )
            )
            self._answer(502, "the exit did not answer", close=True)
            return
        self.close_connection = True
        try:
            auth_line = f"Proxy-Authorization: {owner._relay_auth}\r\n" if owner._relay_auth else ""
            upstream.sendall(
                f"CONNECT {self.path} HTTP/1.1\r\nHost: {self.path}\r\n{auth_line}\r\n".encode()
            )
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = upstream.recv(4096)
                if not chunk:
                    break
                head += chunk
            status_line = head.split(b"\r\n", 1)[0].split()
            status = (
                int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 502
            )
            if status != 200:
                owner._note(
                    GatewayRequest(
                        user, session, geo, relay.name, "CONNECT", self.path, 502, owner._clock()
                    )
                )
                self._answer(502, f"the exit refused the tunnel ({status})", close=True)
                return
            rest = head.split(b"\r\n\r\n", 1)[1]
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            owner._note(
                GatewayRequest(
                    user, session, geo, relay.name, "CONNECT", self.path, 200, owner._clock()
                )
            )
            moved = len(head) + self._pipe(upstream, rest)
            owner.record(user, moved)
        finally:
            upstream.close()

    def _pipe(self, upstream: socket.socket, pending: bytes) -> int:
        """Relay bytes both ways until either side closes; returns how many moved."""
        client = self.connection
        moved = 0
        if pending:
            client.sendall(pending)
            moved += len(pending)
        upstream.settimeout(None)
        while True:
            try:
                readable, _, _ = select.select([client, upstream], [], [], _TUNNEL_POLL)
            except (OSError, ValueError):
                return moved
            if self.owner._server is None:
                return moved
            for sock in readable:
                try:
                    data = sock.recv(_BUFFER)
                except OSError:
                    return moved
                if not data:
                    return moved
                other = upstream if sock is client else client
                try:
                    other.sendall(data)
                except OSError:
                    return moved
                moved += len(data)
