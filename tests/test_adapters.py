"""Tests of the requests adapter with real parts: proxy.py relays, a recording target site, a real
ProxyPool, real requests sessions, and the real ProviderClient against pytest-httpserver.

The pool is fed either by ``RelaySource`` (hands out the fleet's relays: real proxies, no HTTP to
a provider) or by ``ProviderClient`` talking to a pytest-httpserver that answers ``ip/v3`` with the
relays' addresses.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import gc
import io
import itertools
import logging
import random
import socket
import socketserver
import threading
import time
import traceback
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from _helpers import FakeClock
from _provider import closed_port
from pytest_httpserver import HTTPServer
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.models import Response
from requests_file import FileAdapter
from urllib3.util.retry import Retry

from proxypool.adapters import (
    NoProxyAvailable,
    PoolBypassRefused,
    ProxyBanned,
    ProxyPoolAdapter,
    ProxyRequestFailed,
    wrap_session,
)
from proxypool.api import ProviderClient
from proxypool.errors import ConfigError, PoolExhausted, ProxyPoolError
from proxypool.geo import Geo
from proxypool.models import Proxy
from proxypool.policy import Backoff
from proxypool.pool import ProxyPool
from proxypool.sim.relays import RELAY_HEADER, RelayFleet, port_for_source_ip, source_ip_for_port
from proxypool.sim.target import CAPTCHA_MARKER, TargetSite

MakeFleet = Callable[..., RelayFleet]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


class RelaySource:
    """A ProxySource handing out a fixed list of (real) proxies on every extraction."""

    def __init__(self, proxies: Iterable[Proxy]) -> None:
        self.proxies = list(proxies)
        self.calls = 0

    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        self.calls += 1
        return self.proxies[:num]


class FreshCredentials:
    """A ProxySource returning ``batch`` never-seen proxy URLs per extraction: one real relay
    (without auth, so it accepts any credentials) under distinct usernames."""

    def __init__(self, relay_host: str, relay_port: int) -> None:
        self.host, self.port = relay_host, relay_port
        self.counter = itertools.count()

    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        return [
            Proxy(self.host, self.port, username=f"user{next(self.counter)}", password="pw")
            for _ in range(num)
        ]


class CaptchaPolicy:
    """A body-based ban policy: the target's captcha page is a ban."""

    def is_ban(self, status: int, body: bytes = b"") -> bool:
        return CAPTCHA_MARKER.encode() in body


def make_pool(proxies: Iterable[Proxy], **kwargs: Any) -> ProxyPool:
    proxies = list(proxies)
    kwargs.setdefault("min_size", 0)
    kwargs.setdefault("batch", max(1, len(proxies)))
    # Failed proxies stay out for the whole test (no cool-down ending mid-test).
    kwargs.setdefault("cooldown", Backoff(base=600.0, cap=600.0, jitter=0.0))
    return ProxyPool(RelaySource(proxies), **kwargs)


@pytest.fixture
def sessions() -> Iterator[Callable[..., requests.Session]]:
    """Factory of wrapped sessions (``wrap_session`` arguments), closed at teardown."""
    made: list[requests.Session] = []

    def make(pool: ProxyPool, **kwargs: Any) -> requests.Session:
        session = wrap_session(requests.Session(), pool, **kwargs)
        made.append(session)
        return session

    yield make
    for session in made:
        session.close()


Sessions = Callable[..., requests.Session]


def wait_until(condition: Callable[[], bool], limit: float = 10.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``limit`` seconds pass (False). A safety
    limit for events that happen in other processes (a relay forwarding a request), not a
    speed assertion."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class BrokenProxy:
    """A misbehaving "proxy": a plain socket server on loopback that reads one request head per
    connection and records its method and target (``"CONNECT host:port"``). ``drop``: answers
    ``200 Connection established`` and closes the connection at once (a dying exit node: the TLS
    handshake through the tunnel meets EOF). ``mute``: never answers; the connection stays open
    until :meth:`close`."""

    def __init__(self, mode: str) -> None:
        assert mode in ("drop", "mute")
        self.mode = mode
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.proxy = Proxy("127.0.0.1", self.port)
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._held: list[socket.socket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=f"broken-proxy-{mode}")
        self._thread.start()

    def request_lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        # Wake the accept() below: closing a listening socket from another thread does not.
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
            pass
        self._thread.join(10)
        self._listener.close()
        with self._lock:
            for conn in self._held:
                conn.close()

    def _serve(self) -> None:
        while True:
            conn, _ = self._listener.accept()
            with self._lock:
                if self._closed:
                    conn.close()
                    return
            conn.settimeout(10)
            head = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    head += chunk
            with self._lock:
                self._lines.append(" ".join(head.decode("latin-1").split(" ")[:2]))
                if self.mode == "mute":
                    self._held.append(conn)
                    continue
            with contextlib.suppress(OSError):
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            conn.close()


@pytest.fixture
def broken_proxy() -> Iterator[Callable[[str], BrokenProxy]]:
    """Factory: ``broken_proxy("drop" | "mute")``, closed at teardown."""
    made: list[BrokenProxy] = []

    def make(mode: str) -> BrokenProxy:
        made.append(BrokenProxy(mode))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


class _SlowHandler(BaseHTTPRequestHandler):
    server: SlowSite

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        path = urlsplit(self.path).path
        self.server.record(self.command, path, self.client_address[0])
        if path == "/hangup":
            self.close_connection = True  # closed without a word: the client sees it dropped
            return
        if path == "/slow":
            self.server.release.wait()  # answers only once the test is over
        with contextlib.suppress(OSError):  # the client gave up long ago
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"ok\n")


class SlowSite(ThreadingHTTPServer):
    """A target on loopback for read-phase failures: ``/slow`` answers only when the site is
    closed (after any read timeout), ``/hangup`` closes the connection without an answer,
    anything else answers 200 at once. Every request is recorded when it arrives, with the
    relay that carried it (from the peer address, see ``source_ip_for_port``)."""

    daemon_threads = False  # server_close() joins the handler threads
    block_on_close = True

    def __init__(self, fleet: RelayFleet) -> None:
        super().__init__(("127.0.0.1", 0), _SlowHandler)
        self.fleet = fleet
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._hits: list[tuple[str, str, str | None]] = []
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="slow-site"
        )
        self._thread.start()

    def url_for(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def record(self, method: str, path: str, peer: str) -> None:
        port = port_for_source_ip(peer)
        relay = None if port is None else self.fleet.by_port(port)
        with self._lock:
            self._hits.append((method, path, None if relay is None else relay.name))

    def hits(self) -> list[tuple[str, str, str | None]]:
        """``(method, path, relay name or None for a direct request)``, in arrival order."""
        with self._lock:
            return list(self._hits)

    def close(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()
        self._thread.join(10)


@pytest.fixture
def slow_site(relay_fleet: RelayFleet) -> Iterator[SlowSite]:
    site = SlowSite(relay_fleet)
    yield site
    site.close()


# Headers a proxy consumes (and the relay header it sets itself) rather than forwarding.
_HOP_HEADERS = frozenset({"proxy-authorization", "proxy-connection", RELAY_HEADER.lower()})


class _RecordingProxyHandler(socketserver.StreamRequestHandler):
    """One client connection of a :class:`RecordingProxy`: requests in turn (keep-alive)."""

    server: RecordingProxy

    def handle(self) -> None:
        self._upstream: tuple[str, int] | None = None
        self._upstream_conn: socket.socket | None = None
        self._upstream_in: Any = None
        try:
            while (head := _read_head(self.rfile)) is not None:
                request_line, headers = head
                method, target = request_line.split(" ")[:2]
                body = self.rfile.read(int(_header(headers, "Content-Length") or 0))
                auth = _header(headers, "Proxy-Authorization")
                self.server.record(f"{method} {target}", auth)
                if self.server.expected is not None and auth != self.server.expected:
                    self.wfile.write(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b'Proxy-Authenticate: Basic realm="test"\r\n'
                        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    return
                if method == "CONNECT":
                    host, port = target.rsplit(":", 1)
                    self._tunnel(host, int(port))
                    return
                self._forward(method, target, headers, body)
        except OSError:
            return
        finally:
            if self._upstream_conn is not None:
                self._upstream_conn.close()

    def _forward(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        """Send a plain-http request on to its site (origin-form) and its answer back."""
        parts = urlsplit(target)
        where = (parts.hostname or "", parts.port or 80)
        if where != self._upstream:
            if self._upstream_conn is not None:
                self._upstream_conn.close()
            self._upstream_conn = self.server.connect(*where)
            self._upstream_in = self._upstream_conn.makefile("rb")
            self._upstream = where
        assert self._upstream_conn is not None
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        kept = [(k, v) for k, v in headers if k.lower() not in _HOP_HEADERS]
        kept.append((RELAY_HEADER, self.server.name))
        lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in kept)]
        self._upstream_conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        answer = _read_head(self._upstream_in)
        assert answer is not None
        status_line, answer_headers = answer
        length = int(_header(answer_headers, "Content-Length") or 0)
        answer_body = self._upstream_in.read(length)
        out = [status_line, *(f"{k}: {v}" for k, v in answer_headers)]
        self.wfile.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + answer_body)

    def _tunnel(self, host: str, port: int) -> None:
        try:
            upstream = self.server.connect(host, port)
        except OSError:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def back() -> None:
            with contextlib.suppress(OSError):
                while data := upstream.recv(65536):
                    self.wfile.write(data)
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_WR)

        copier = threading.Thread(target=back, daemon=True)
        copier.start()
        with contextlib.suppress(OSError):
            while data := self.rfile.read1(65536):
                upstream.sendall(data)
            upstream.shutdown(socket.SHUT_WR)
        copier.join(10)
        upstream.close()


def _read_head(stream: Any) -> tuple[str, list[tuple[str, str]]] | None:
    """The first line and the headers of one HTTP message head, or None at end of stream."""
    line = stream.readline()
    if not line:
        return None
    first = line.decode("latin-1").rstrip("\r\n")
    headers: list[tuple[str, str]] = []
    while (line := stream.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    return first, headers


def _basic(auth: tuple[str, str]) -> str:
    """A ``Proxy-Authorization`` value for ``(user, password)``."""
    return "Basic " + base64.b64encode(":".join(auth).encode()).decode()


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name.lower()), None)


class RecordingProxy(socketserver.ThreadingTCPServer):
    """A forward proxy on loopback (plain http and CONNECT, keep-alive) that records the
    ``Proxy-Authorization`` header of every request it receives, with ``auth`` demands exactly
    those credentials (407 otherwise), and strips the header before forwarding, as a real proxy
    does. It connects upstream from the relay source address of its port, and names itself in the
    relay header, so a :class:`TargetSite` counts what it carried as relayed by ``name`` (https:
    after ``know_relays([proxy])``)."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, name: str, auth: tuple[str, str] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingProxyHandler)
        self.name = name
        self.port: int = self.server_address[1]
        username, password = auth if auth is not None else (None, None)
        self.proxy = Proxy("127.0.0.1", self.port, username=username, password=password)
        self.expected = None if auth is None else _basic(auth)
        self._lock = threading.Lock()
        self._received: list[tuple[str, str | None]] = []
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def connect(self, host: str, port: int) -> socket.socket:
        return socket.create_connection(
            (host, port), timeout=10, source_address=(source_ip_for_port(self.port), 0)
        )

    def record(self, line: str, auth: str | None) -> None:
        with self._lock:
            self._received.append((line, auth))

    def received(self) -> list[tuple[str, str | None]]:
        """``(request line: "GET <url>" or "CONNECT host:port", Proxy-Authorization or None)``."""
        with self._lock:
            return list(self._received)

    def authorizations(self) -> set[str | None]:
        return {auth for _, auth in self.received()}

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(10)


@pytest.fixture
def recording_proxy() -> Iterator[Callable[..., RecordingProxy]]:
    """Factory: ``recording_proxy(name, auth=None)``, closed at teardown."""
    made: list[RecordingProxy] = []

    def make(name: str, auth: tuple[str, str] | None = None) -> RecordingProxy:
        made.append(RecordingProxy(name, auth))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


# Seconds the client waits for the target's answer where a read timeout is the point: /slow
# never answers in time, a mute proxy never answers at all.
READ_TIMEOUT = 1.0
# The read timeout of a request that must also get an answer in time, through a working relay,
# after a mute proxy timed out (one timeout for every attempt of a request): every attempt on the
# mute proxy costs this long, so it is not as generous as a plain request's 10 s.
MIXED_READ_TIMEOUT = 5.0


# --------------------------------------------------------------------------------------------
# rotation, dead and banned proxies
# --------------------------------------------------------------------------------------------


def test_requests_rotate_over_every_proxy(
    relay_fleet: RelayFleet, target_site: TargetSite, sessions: Sessions
) -> None:
    pool = make_pool(relay_fleet.proxies())
    session = sessions(pool)

    statuses = [
        session.get(target_site.url_for(f"/page/{n}"), timeout=10).status_code for n in range(20)
    ]

    assert statuses == [200] * 20
    assert target_site.hits_by_relay() == dict.fromkeys(relay_fleet.names, 5)
    assert target_site.direct_hits() == []
    assert pool.stats()["successes"] == 20


def test_a_dead_proxy_is_routed_around_and_every_request_succeeds(
    make_relay_fleet: MakeFleet, target_site: TargetSite, sessions: Sessions
) -> None:
    fleet = make_relay_fleet(3)
    fleet.kill("relay-1")
    pool = make_pool(fleet.proxies())
    session = sessions(pool)

    statuses = [session.get(target_site.url_for("/"), timeout=10).status_code for _ in range(12)]

    assert statuses == [200] * 12
    assert set(target_site.hits_by_relay()) == {"relay-0", "relay-2"}
    assert target_site.count() == 12
    assert pool.stats()["failures"] == 1  # tried once, then cooling for the rest of the test


def test_a_banned_proxy_is_routed_around_and_every_request_succeeds(
    relay_fleet: RelayFleet, target_site: TargetSite, sessions: Sessions
) -> None:
    target_site.ban("relay-2", 403)
    pool = make_pool(relay_fleet.proxies())
    session = sessions(pool)

    statuses = [session.get(target_site.url_for("/"), timeout=10).status_code for _ in range(12)]

    assert statuses == [200] * 12
    assert [(hit.relay, hit.status) for hit in target_site.banned_hits()] == [("relay-2", 403)]
    assert target_site.paths_served_ok() == {"/"}
    assert pool.stats()["bans"] == 1


def test_a_pluggable_ban_policy_catches_captcha_pages(
    relay_fleet: RelayFleet, target_site: TargetSite, sessions: Sessions
) -> None:
    target_site.ban("relay-0", captcha=True)
    pool = make_pool(relay_fleet.proxies())
    session = sessions(pool, ban_policy=CaptchaPolicy())

    responses = [session.get(target_site.url_for("/page/4"), timeout=10) for _ in range(8)]

    assert all(CAPTCHA_MARKER not in r.text and "page 4" in r.text for r in responses)
    assert len(target_site.banned_hits()) == 1
    assert pool.stats()["bans"] == 1


def test_every_proxy_banned_raises_naming_the_proxies_tried(
    make_relay_fleet: MakeFleet, target_site: TargetSite, sessions: Sessions
) -> None:
    fleet = make_relay_fleet(3)
    for name in fleet.names:
        target_site.ban(name, 429)
    pool = make_pool(fleet.proxies(), max_failures=10)
    session = sessions(pool, max_proxy_retries=2, pool_timeout=0.5)

    with pytest.raises(ProxyBanned) as caught:
        session.get(target_site.url_for("/page/1"), timeout=10)

    error = caught.value
    assert isinstance(error, requests.exceptions.HTTPError)
    assert isinstance(error, ProxyPoolError)
    assert error.response is not None and error.response.status_code == 429
    assert sorted(error.proxies_tried) == sorted(relay.address for relay in fleet)
    for relay in fleet:
        assert relay.address in str(error)
    assert target_site.count() == 3


def test_a_proxy_refusing_its_credentials_counts_as_failed(
    make_relay_fleet: MakeFleet, target_site: TargetSite, sessions: Sessions
) -> None:
    fleet = make_relay_fleet(2, auth=("crawler", "Right0pass"))
    wrong = Proxy(fleet["relay-0"].host, fleet["relay-0"].port, username="crawler", password="no")
    pool = make_pool([wrong, fleet["relay-1"].proxy])
    session = sessions(pool)

    responses = [session.get(target_site.url_for("/"), timeout=10) for _ in range(4)]

    assert [r.status_code for r in responses] == [200] * 4
    assert target_site.hits_by_relay() == {"relay-1": 4}
    assert pool.stats()["failures"] == 1
    # The retried request carries no credentials of the proxy tried first, nor any of its own.
    assert "Proxy-Authorization" not in responses[0].request.headers
    assert all(hit.header("Proxy-Authorization") is None for hit in target_site.hits())


# --------------------------------------------------------------------------------------------
# https through CONNECT
# --------------------------------------------------------------------------------------------


def test_https_goes_through_connect_tunnels_of_the_pooled_proxies(
    relay_fleet: RelayFleet, tls_target_site: TargetSite, sessions: Sessions
) -> None:
    tls_target_site.know_relays(relay_fleet)
    tunnels_before = {relay.name: len(relay.tunnels()) for relay in relay_fleet}
    pool = make_pool(relay_fleet.proxies())
    session = sessions(pool)
    # Per call: requests lets REQUESTS_CA_BUNDLE from the environment override session.verify.
    verify = str(tls_target_site.cert_path)

    statuses = [
        session.get(tls_target_site.url_for(f"/page/{n}"), timeout=10, verify=verify).status_code
        for n in range(8)
    ]

    assert statuses == [200] * 8
    assert tls_target_site.hits_by_relay() == dict.fromkeys(relay_fleet.names, 2)
    assert tls_target_site.direct_hits() == []
    target = f"127.0.0.1:{tls_target_site.port}"
    for relay in relay_fleet:
        new_tunnels = relay.tunnels()[tunnels_before[relay.name] :]
        assert new_tunnels and set(new_tunnels) == {target}


def test_https_bans_are_routed_around(
    relay_fleet: RelayFleet, tls_target_site: TargetSite, sessions: Sessions
) -> None:
    tls_target_site.know_relays(relay_fleet)
    tls_target_site.ban("relay-1", 403)
    pool = make_pool(relay_fleet.proxies())
    session = sessions(pool)
    verify = str(tls_target_site.cert_path)

    statuses = [
        session.get(tls_target_site.url_for("/"), timeout=10, verify=verify).status_code
        for _ in range(8)
    ]

    assert statuses == [200] * 8
    assert [hit.relay for hit in tls_target_site.banned_hits()] == ["relay-1"]


def test_a_target_certificate_error_is_not_blamed_on_the_proxy(
    relay_fleet: RelayFleet, tls_target_site: TargetSite, sessions: Sessions
) -> None:
    pool = make_pool(relay_fleet.proxies())
    session = sessions(pool)  # verify=True: the self-signed certificate is not trusted

    with pytest.raises(requests.exceptions.SSLError):
        session.get(tls_target_site.url_for("/"), timeout=10)

    stats = pool.stats()
    assert (stats["served"], stats["failures"]) == (1, 0)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_proxy_dropping_its_https_tunnel_is_blamed_and_the_request_retried(
    relay_fleet: RelayFleet,
    tls_target_site: TargetSite,
    sessions: Sessions,
    broken_proxy: Callable[[str], BrokenProxy],
    method: str,
) -> None:
    tls_target_site.know_relays(relay_fleet)
    dropper = broken_proxy("drop")
    pool = make_pool([dropper.proxy, relay_fleet["relay-0"].proxy])  # the dropper comes first
    session = sessions(pool)
    verify = str(tls_target_site.cert_path)

    # The TLS handshake failed before the request was written: even a POST is sent again.
    response = session.request(
        method, tls_target_site.url_for("/echo"), data=b"order-1", timeout=10, verify=verify
    )

    assert response.status_code == 200
    assert response.json()["method"] == method
    assert dropper.request_lines() == [f"CONNECT 127.0.0.1:{tls_target_site.port}"]
    assert tls_target_site.hits_by_relay() == {"relay-0": 1}
    stats = pool.stats()
    assert (stats["served"], stats["successes"], stats["failures"]) == (2, 1, 1)
    # Reported, so cooling: the next request goes straight to the relay.
    assert session.get(tls_target_site.url_for("/"), timeout=10, verify=verify).ok
    assert len(dropper.request_lines()) == 1
    assert tls_target_site.hits_by_relay() == {"relay-0": 2}


# --------------------------------------------------------------------------------------------
# failures that may have reached the target: no answer in time, a connection dropped after
# the request went out
# --------------------------------------------------------------------------------------------


def test_a_post_left_unanswered_is_sent_once_and_blames_no_proxy(
    relay_fleet: RelayFleet, slow_site: SlowSite, sessions: Sessions
) -> None:
    pool = make_pool(relay_fleet.proxies(["relay-0", "relay-1"]), max_failures=1)
    session = sessions(pool, pool_timeout=0.2)

    with pytest.raises(ProxyRequestFailed) as caught:
        session.post(slow_site.url_for("/slow"), data=b"order-1", timeout=(10, READ_TIMEOUT))

    error = caught.value
    assert isinstance(error.last_error, requests.exceptions.ReadTimeout)
    assert error.proxies_tried == (relay_fleet["relay-0"].address,)
    assert "POST is not idempotent and may have reached the target, so no retry" in str(error)
    assert wait_until(lambda: len(slow_site.hits()) >= 1)
    assert slow_site.hits() == [("POST", "/slow", "relay-0")]
    stats = pool.stats()
    assert (stats["failures"], stats["evictions"]) == (0, 0)


def test_a_post_whose_connection_dropped_after_it_was_sent_is_not_replayed(
    relay_fleet: RelayFleet, slow_site: SlowSite, sessions: Sessions
) -> None:
    pool = make_pool(relay_fleet.proxies(["relay-0", "relay-1"]))
    session = sessions(pool, pool_timeout=0.2)

    with pytest.raises(ProxyRequestFailed) as caught:
        session.post(slow_site.url_for("/hangup"), data=b"order-2", timeout=10)

    # urllib3 calls this a ProxyError ("Unable to connect to proxy"), yet the target has it.
    assert isinstance(caught.value.last_error, requests.exceptions.ProxyError)
    assert caught.value.proxies_tried == (relay_fleet["relay-0"].address,)
    assert slow_site.hits() == [("POST", "/hangup", "relay-0")]
    assert pool.stats()["failures"] == 1  # a dropped connection still counts against the proxy


@pytest.mark.parametrize("session_key", [None, "basket-7"], ids=["rotating", "sticky"])
def test_a_get_left_unanswered_is_retried_on_another_proxy_and_evicts_none(
    relay_fleet: RelayFleet, slow_site: SlowSite, sessions: Sessions, session_key: str | None
) -> None:
    # max_failures=1: a timeout held against a proxy would evict it at once.
    pool = make_pool(relay_fleet.proxies(["relay-0", "relay-1"]), max_failures=1)
    session = sessions(pool, session_key=session_key, max_proxy_retries=1, pool_timeout=0.2)

    with pytest.raises(ProxyRequestFailed) as caught:
        session.get(slow_site.url_for("/slow"), timeout=(10, READ_TIMEOUT))

    error = caught.value
    assert isinstance(error.last_error, requests.exceptions.ReadTimeout)
    assert error.proxies_tried == (relay_fleet["relay-0"].address, relay_fleet["relay-1"].address)
    assert wait_until(lambda: len(slow_site.hits()) >= 2)
    # Each relay carried it once. Not necessarily in that order: relay-0 may forward it after
    # the client gave up on it (the order of the attempts is proxies_tried, above).
    assert Counter(slow_site.hits()) == {
        ("GET", "/slow", "relay-0"): 1,
        ("GET", "/slow", "relay-1"): 1,
    }
    stats = pool.stats()
    assert (stats["failures"], stats["evictions"]) == (0, 0)
    # Both still serve; a sticky session kept its proxy.
    assert session.get(slow_site.url_for("/"), timeout=10).ok
    assert session.get(slow_site.url_for("/"), timeout=10).ok
    after = [relay for _, path, relay in slow_site.hits() if path == "/"]
    assert after == (["relay-0", "relay-1"] if session_key is None else ["relay-0", "relay-0"])


def test_a_proxy_that_never_answers_is_blamed_once_another_proxy_gets_the_answer(
    relay_fleet: RelayFleet,
    target_site: TargetSite,
    sessions: Sessions,
    broken_proxy: Callable[[str], BrokenProxy],
) -> None:
    mute = broken_proxy("mute")
    pool = make_pool([mute.proxy, relay_fleet["relay-0"].proxy])  # the mute one comes first
    session = sessions(pool)
    url = target_site.url_for("/page/3")

    response = session.get(url, timeout=(10, MIXED_READ_TIMEOUT))

    assert response.ok and "page 3" in response.text
    assert mute.request_lines() == [f"GET {url}"]
    assert target_site.hits_by_relay() == {"relay-0": 1}
    assert pool.stats()["failures"] == 1  # the target answered in time through relay-0
    assert session.get(url, timeout=10).ok
    assert len(mute.request_lines()) == 1  # cooling: not tried again


def test_a_post_to_a_proxy_that_never_answers_is_not_replayed(
    relay_fleet: RelayFleet,
    target_site: TargetSite,
    sessions: Sessions,
    broken_proxy: Callable[[str], BrokenProxy],
) -> None:
    mute = broken_proxy("mute")
    pool = make_pool([mute.proxy, relay_fleet["relay-0"].proxy])
    session = sessions(pool)

    # The proxy has the request: whether it went on to the target, the client cannot know.
    with pytest.raises(ProxyRequestFailed) as caught:
        session.post(target_site.url_for("/echo"), data=b"order-3", timeout=(10, READ_TIMEOUT))

    assert caught.value.proxies_tried == (mute.proxy.address,)
    assert len(mute.request_lines()) == 1
    assert target_site.count() == 0
    assert pool.stats()["failures"] == 0  # nothing shows the proxy was the slow one


def test_an_unanswered_connect_is_a_connect_failure_so_even_a_post_is_retried(
    relay_fleet: RelayFleet,
    tls_target_site: TargetSite,
    sessions: Sessions,
    broken_proxy: Callable[[str], BrokenProxy],
) -> None:
    tls_target_site.know_relays(relay_fleet)
    mute = broken_proxy("mute")
    pool = make_pool([mute.proxy, relay_fleet["relay-0"].proxy])
    session = sessions(pool)

    # urllib3 waits for the CONNECT answer for the connect timeout and raises ReadTimeout; the
    # request itself was never written, so it goes to the next proxy, and the mute one is
    # blamed at once.
    response = session.post(
        tls_target_site.url_for("/echo"),
        data=b"order-4",
        timeout=(2.0, 10),
        verify=str(tls_target_site.cert_path),
    )

    assert response.json()["method"] == "POST"
    assert mute.request_lines() == [f"CONNECT 127.0.0.1:{tls_target_site.port}"]
    assert tls_target_site.hits_by_relay() == {"relay-0": 1}
    assert pool.stats()["failures"] == 1


# --------------------------------------------------------------------------------------------
# every URL through the pool: adapters mounted for other prefixes
# --------------------------------------------------------------------------------------------


class RecordingAdapter(BaseAdapter):
    """An adapter that would send on its own (an FTP adapter, say): records what reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        self.sent.append(request.url or "")
        raise requests.exceptions.ConnectionError("this adapter never sends in tests")

    def close(self) -> None:
        pass


def _foreign_adapter(kind: str) -> BaseAdapter:
    return HTTPAdapter(max_retries=2) if kind == "http-adapter" else RecordingAdapter()


@pytest.mark.parametrize(
    ("prefix_of", "kind"),
    [
        (lambda site: site.url_for("/v2/"), "http-adapter"),
        (lambda site: "ftp://", "recording"),
        (lambda site: "HTTP://", "http-adapter"),
        (lambda site: "", "recording"),
    ],
    ids=["longer-prefix", "ftp", "upper-case-scheme", "empty-prefix"],
)
def test_wrap_session_refuses_an_adapter_that_would_send_without_the_pool(
    relay_fleet: RelayFleet,
    target_site: TargetSite,
    prefix_of: Callable[[TargetSite], str],
    kind: str,
) -> None:
    pool = make_pool(relay_fleet.proxies())
    session = requests.Session()
    prefix = prefix_of(target_site)
    session.mount(prefix, _foreign_adapter(kind))
    before = list(session.adapters.items())

    with pytest.raises(PoolBypassRefused) as caught:
        wrap_session(session, pool)

    error = caught.value
    assert isinstance(error, ConfigError) and error.field == "session"
    assert isinstance(error, requests.exceptions.RequestException)
    assert repr(prefix) in str(error) and "del session.adapters[" in str(error)
    assert list(session.adapters.items()) == before  # left as it was
    session.close()
    assert target_site.count() == 0


def test_an_adapter_mounted_after_wrapping_is_refused_at_mount_time(
    relay_fleet: RelayFleet, target_site: TargetSite, sessions: Sessions
) -> None:
    pool = make_pool(relay_fleet.proxies())
    session = sessions(pool)
    prefix = target_site.url_for("/echo")
    pooled = session.get_adapter(prefix)

    for adapter in (HTTPAdapter(), RecordingAdapter()):
        with pytest.raises(PoolBypassRefused) as caught:
            session.mount(prefix, adapter)
        assert repr(prefix) in str(caught.value)
    with pytest.raises(PoolBypassRefused):
        session.mount("ftp://", RecordingAdapter())

    assert session.get_adapter(prefix) is pooled
    assert session.get(target_site.url_for("/echo"), timeout=10).ok
    assert target_site.hits_by_relay() == {"relay-0": 1}


def _slip_in_by_replacing_the_mapping(session: requests.Session, prefix: str) -> BaseAdapter:
    adapter = HTTPAdapter()
    session.adapters = collections.OrderedDict([(prefix, adapter), *session.adapters.items()])
    return adapter


def _slip_in_past_setitem(session: requests.Session, prefix: str) -> BaseAdapter:
    adapter = HTTPAdapter()
    collections.OrderedDict.__setitem__(session.adapters, prefix, adapter)
    session.adapters.move_to_end(prefix, last=False)
    return adapter


@pytest.mark.parametrize(
    "slip_in",
    [_slip_in_by_replacing_the_mapping, _slip_in_past_setitem],
    ids=["mapping-replaced", "past-setitem"],
)
@pytest.mark.parametrize("via_redirect", [False, True], ids=["direct-call", "redirect"])
def test_an_adapter_slipped_in_after_wrapping_is_refused_at_send_time(
    relay_fleet: RelayFleet,
    target_site: TargetSite,
    sessions: Sessions,
    slip_in: Callable[[requests.Session, str], BaseAdapter],
    via_redirect: bool,
) -> None:
    pool = make_pool(relay_fleet.proxies())
    session = sessions(pool)
    prefix = target_site.url_for("/echo")
    foreign = slip_in(session, prefix)
    assert session.adapters[prefix] is foreign

    if via_redirect:
        call = lambda: session.get(  # noqa: E731
            target_site.url_for("/redirect"), params={"to": prefix}, timeout=10
        )
    else:
        call = lambda: session.post(prefix, data=b"order-6", timeout=10)  # noqa: E731
    with pytest.raises(PoolBypassRefused) as caught:
        call()

    error = caught.value
    assert isinstance(error, ProxyPoolError)
    assert isinstance(error, requests.exceptions.RequestException)
    assert "HTTPAdapter" in str(error) and repr(prefix) in str(error)
    assert target_site.direct_hits() == []
    expected = [("/redirect", "relay-0")] if via_redirect else []
    assert [(hit.path, hit.relay) for hit in target_site.hits()] == expected
    foreign.close()


def test_a_pool_adapter_may_be_mounted_for_any_prefix(
    relay_fleet: RelayFleet, target_site: TargetSite, sessions: Sessions
) -> None:
    pool = make_pool(relay_fleet.proxies(["relay-0", "relay-1"]))
    # Before wrapping: a sticky adapter for one part of the site.
    session = requests.Session()
    session.mount(target_site.url_for("/page/"), ProxyPoolAdapter(pool, session_key="cart"))
    session = wrap_session(session, pool)
    # After wrapping: another pooled adapter, with other settings.
    echo = ProxyPoolAdapter(pool, max_proxy_retries=0)
    session.mount(target_site.url_for("/echo"), echo)

    try:
        for _ in range(2):
            assert session.get(target_site.url_for("/page/1"), timeout=10).ok
            assert session.get(target_site.url_for("/echo"), timeout=10).ok
    finally:
        session.close()

    assert target_site.direct_hits() == []
    sticky = [hit.relay for hit in target_site.hits() if hit.path == "/page/1"]
    assert len(sticky) == 2 and len(set(sticky)) == 1
    assert session.get_adapter(target_site.url_for("/echo")) is echo


def test_file_urls_keep_their_local_adapter(
    relay_fleet: RelayFleet, target_site: TargetSite, sessions: Sessions, tmp_path: Path
) -> None:
    page = tmp_path / "page.html"
    page.write_text("local page")
    pool = make_pool(relay_fleet.proxies())
    session = requests.Session()
    session.mount("file://", FileAdapter())
    session = wrap_session(session, pool)  # file:// reads local files: not refused
    session.mount("file://localhost/", FileAdapter())

    assert session.get(page.as_uri()).text == "local page"
    assert session.get(f"file://localhost{page}").text == "local page"
    with pytest.raises(ValueError, match="hostname"):  # requests-file: never a remote host
        session.get(f"file://files.example{page}")
    assert pool.stats()["served"] == 0
    session.close()


# --------------------------------------------------------------------------------------------
# Proxy-Authorization: a pool proxy gets its own credentials or none; the site gets none
# --------------------------------------------------------------------------------------------

CORP_AUTH = ("corpuser", "CorpPassw0rd")
POOL_AUTH = ("pooluser", "PoolPassw0rd")


@pytest.mark.parametrize("pool_auth", [None, POOL_AUTH], ids=["pool-open", "pool-credentialed"])
@pytest.mark.parametrize(
    ("first", "then"),
    [("http", "http"), ("https", "https"), ("http", "https"), ("https", "http")],
    ids=lambda s: s,
)
def test_environment_proxy_credentials_never_follow_a_redirect_to_the_pool_proxy(
    target_site: TargetSite,
    tls_target_site: TargetSite,
    sessions: Sessions,
    recording_proxy: Callable[..., RecordingProxy],
    monkeypatch: pytest.MonkeyPatch,
    pool_auth: tuple[str, str] | None,
    first: str,
    then: str,
) -> None:
    corp = recording_proxy("corp", CORP_AUTH)
    monkeypatch.setenv("HTTP_PROXY", corp.proxy.url)
    monkeypatch.setenv("HTTPS_PROXY", corp.proxy.url)
    pooled = recording_proxy("pooled", pool_auth)
    tls_target_site.know_relays([pooled])
    sites = {"http": target_site, "https": tls_target_site}
    session = sessions(make_pool([pooled.proxy]))

    response = session.get(
        sites[first].url_for("/redirect"),
        params={"to": sites[then].url_for("/echo")},
        timeout=10,
        verify=str(tls_target_site.cert_path),
    )

    assert response.status_code == 200 and len(response.history) == 1
    assert pooled.authorizations() == {pooled.expected}  # its own, or none at all
    assert corp.received() == []
    hits = target_site.hits() + tls_target_site.hits()
    assert sorted(hit.path for hit in hits) == ["/echo", "/redirect"]
    assert {hit.relay for hit in hits} == {"pooled"}
    assert all(hit.header("Proxy-Authorization") is None for hit in hits)


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("how", ["session-headers", "call-headers", "proxy-auth"])
def test_a_proxy_authorization_the_application_sets_reaches_no_pool_proxy_and_no_site(
    target_site: TargetSite,
    tls_target_site: TargetSite,
    sessions: Sessions,
    recording_proxy: Callable[..., RecordingProxy],
    scheme: str,
    how: str,
) -> None:
    pooled = recording_proxy("pooled")
    tls_target_site.know_relays([pooled])
    site = target_site if scheme == "http" else tls_target_site
    session = sessions(make_pool([pooled.proxy]))
    kwargs: dict[str, Any] = {"timeout": 10, "verify": str(tls_target_site.cert_path)}
    if how == "session-headers":
        session.headers["Proxy-Authorization"] = _basic(CORP_AUTH)
    elif how == "call-headers":
        kwargs["headers"] = {"proxy-authorization": _basic(CORP_AUTH)}
    else:
        session.auth = requests.auth.HTTPProxyAuth(*CORP_AUTH)

    assert session.get(site.url_for("/echo"), **kwargs).ok

    assert pooled.authorizations() == {None}
    (hit,) = site.hits()
    assert hit.relay == "pooled" and hit.header("Proxy-Authorization") is None


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("where", ["call", "session"])
def test_explicit_proxies_keep_their_own_credentials_through_a_redirect(
    target_site: TargetSite,
    tls_target_site: TargetSite,
    sessions: Sessions,
    recording_proxy: Callable[..., RecordingProxy],
    scheme: str,
    where: str,
) -> None:
    mine = recording_proxy("mine", CORP_AUTH)
    pooled = recording_proxy("pooled")
    tls_target_site.know_relays([mine, pooled])
    site = target_site if scheme == "http" else tls_target_site
    pool = make_pool([pooled.proxy])
    session = sessions(pool)
    proxies = {"http": mine.proxy.url, "https": mine.proxy.url}
    kwargs: dict[str, Any] = {"timeout": 10, "verify": str(tls_target_site.cert_path)}
    if where == "session":
        session.proxies = proxies
    else:
        kwargs["proxies"] = proxies

    response = session.get(
        site.url_for("/redirect"), params={"to": site.url_for("/echo")}, **kwargs
    )

    assert response.status_code == 200 and len(response.history) == 1
    assert mine.received() and mine.authorizations() == {mine.expected}
    assert pooled.received() == [] and pool.stats()["served"] == 0
    assert [hit.relay for hit in site.hits()] == ["mine", "mine"]
    assert all(hit.header("Proxy-Authorization") is None for hit in site.hits())


def test_session_proxies_overridden_by_the_environment_leave_the_pool_in_charge(
    target_site: TargetSite,
    sessions: Sessions,
    recording_proxy: Callable[..., RecordingProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # requests merges the environment's proxy over session.proxies (psf/requests#2018): the
    # adapter then sees the environment's, and the pool, not the environment, carries it.
    corp = recording_proxy("corp", CORP_AUTH)
    mine = recording_proxy("mine")
    monkeypatch.setenv("HTTP_PROXY", corp.proxy.url)
    pooled = recording_proxy("pooled")
    session = sessions(make_pool([pooled.proxy]))
    session.proxies = {"http": mine.proxy.url}

    assert session.get(target_site.url_for("/echo"), timeout=10).ok

    assert (corp.received(), mine.received()) == ([], [])
    assert [hit.relay for hit in target_site.hits()] == ["pooled"]


def test_a_redirect_to_a_no_proxy_host_still_goes_through_the_pool(
    target_site: TargetSite,
    make_target_site: Callable[..., TargetSite],
    sessions: Sessions,
    recording_proxy: Callable[..., RecordingProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    corp = recording_proxy("corp", CORP_AUTH)
    monkeypatch.setenv("HTTP_PROXY", corp.proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the redirect's target, not the first site
    first = make_target_site(host="127.0.0.2")
    pooled = recording_proxy("pooled")
    session = sessions(make_pool([pooled.proxy]))

    response = session.get(
        first.url_for("/redirect"), params={"to": target_site.url_for("/echo")}, timeout=10
    )

    assert response.status_code == 200 and len(response.history) == 1
    assert corp.received() == []
    assert [hit.relay for hit in first.hits() + target_site.hits()] == ["pooled", "pooled"]
    assert pooled.authorizations() == {None}


# --------------------------------------------------------------------------------------------
# a request the site answered is never replayed unless idempotent (bans included)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ban", ["status", "captcha"])
def test_a_post_answered_with_a_ban_reaches_the_target_once(
    relay_fleet: RelayFleet, target_site: TargetSite, sessions: Sessions, ban: str
) -> None:
    target_site.ban("relay-0", 403, captcha=ban == "captcha")
    pool = make_pool(relay_fleet.proxies(["relay-0", "relay-1"]))
    session = sessions(pool, ban_policy=CaptchaPolicy())

    with pytest.raises(ProxyBanned) as caught:
        session.post(target_site.url_for("/echo"), data=b"order-7", timeout=10)

    error = caught.value
    assert error.proxies_tried == (relay_fleet["relay-0"].address,)
    assert "POST is not idempotent and reached the target, so no retry" in str(error)
    assert [(hit.method, hit.relay) for hit in target_site.hits()] == [("POST", "relay-0")]
    assert pool.stats()["bans"] == 1


# --------------------------------------------------------------------------------------------
# threads
# --------------------------------------------------------------------------------------------


def test_one_wrapped_session_shared_by_8_threads_x_100_requests(
    relay_fleet: RelayFleet, target_site: TargetSite, sessions: Sessions
) -> None:
    pool = make_pool(relay_fleet.proxies())
    session = sessions(pool)

    def worker(thread: int) -> list[int]:
        return [
            session.get(target_site.url_for(f"/page/{(thread + i) % 20}"), timeout=10).status_code
            for i in range(100)
        ]

    with ThreadPoolExecutor(8) as executor:
        results = list(executor.map(worker, range(8)))

    assert results == [[200] * 100] * 8
    assert target_site.count() == 800
    assert target_site.direct_hits() == []
    by_relay = target_site.hits_by_relay()
    assert set(by_relay) == set(relay_fleet.names)
    assert min(by_relay.values()) >= 100  # spread over all four, not stuck on one
    assert pool.stats()["successes"] == 800


# --------------------------------------------------------------------------------------------
# fail closed
# --------------------------------------------------------------------------------------------


def test_an_exhausted_pool_raises_and_the_target_receives_nothing(
    target_site: TargetSite, sessions: Sessions
) -> None:
    pool = make_pool([], api_backoff=Backoff(base=600.0, cap=600.0, jitter=0.0))
    session = sessions(pool, pool_timeout=0.2)

    with pytest.raises(NoProxyAvailable) as caught:
        session.get(target_site.url_for("/"), timeout=10)

    error = caught.value
    assert isinstance(error, PoolExhausted)
    assert isinstance(error, ProxyPoolError)
    assert isinstance(error, requests.exceptions.RequestException)
    assert isinstance(error.__cause__, PoolExhausted)
    assert "not sent" in str(error)
    assert target_site.count() == 0


def test_a_closed_pool_raises_and_the_target_receives_nothing(
    relay_fleet: RelayFleet, target_site: TargetSite, sessions: Sessions
) -> None:
    pool = make_pool(relay_fleet.proxies())
    session = sessions(pool)
    assert session.get(target_site.url_for("/"), timeout=10).ok
    pool.close()

    with pytest.raises(NoProxyAvailable):
        session.get(target_site.url_for("/"), timeout=10)
    assert [hit.direct for hit in target_site.hits()] == [False]


def test_all_proxies_dead_fails_with_the_proxies_tried_and_never_goes_direct(
    make_relay_fleet: MakeFleet, target_site: TargetSite, sessions: Sessions
) -> None:
    fleet = make_relay_fleet(2)
    for name in fleet.names:
        fleet.kill(name)
    pool = make_pool(fleet.proxies())
    session = sessions(pool, pool_timeout=0.2)

    with pytest.raises(NoProxyAvailable) as caught:
        session.get(target_site.url_for("/"), timeout=10)

    assert sorted(caught.value.proxies_tried) == sorted(relay.address for relay in fleet)
    assert target_site.count() == 0


def test_retries_exhausted_raise_proxy_request_failed_naming_the_proxies(
    make_relay_fleet: MakeFleet, target_site: TargetSite, sessions: Sessions
) -> None:
    fleet = make_relay_fleet(3)
    for name in fleet.names:
        fleet.kill(name)
    pool = make_pool(fleet.proxies())
    session = sessions(pool, max_proxy_retries=2)

    with pytest.raises(ProxyRequestFailed) as caught:
        session.get(target_site.url_for("/"), timeout=10)

    error = caught.value
    assert isinstance(error, requests.exceptions.ConnectionError)
    assert isinstance(error.last_error, requests.exceptions.ProxyError)
    assert error.__cause__ is error.last_error
    assert error.proxies_tried == tuple(relay.address for relay in fleet)
    assert all(relay.address in str(error) for relay in fleet)
    assert target_site.count() == 0


# --------------------------------------------------------------------------------------------
# replay rules
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [b"0123456789", "0123456789", io.BytesIO(b"0123456789")], ids=["bytes", "str", "file"]
)
def test_a_replayable_body_is_sent_again_on_the_next_proxy(
    make_relay_fleet: MakeFleet, target_site: TargetSite, sessions: Sessions, body: Any
) -> None:
    fleet = make_relay_fleet(2)
    fleet.kill("relay-0")
    pool = make_pool(fleet.proxies())  # relay-0 (dead) comes first in the rotation
    session = sessions(pool)

    response = session.post(target_site.url_for("/echo"), data=body, timeout=10)

    assert response.json()["body_length"] == 10
    assert pool.stats()["failures"] == 1
    assert target_site.hits_by_relay() == {"relay-1": 1}


def test_a_streaming_body_is_not_retried(
    make_relay_fleet: MakeFleet, target_site: TargetSite, sessions: Sessions
) -> None:
    fleet = make_relay_fleet(2)
    fleet.kill("relay-0")
    pool = make_pool(fleet.proxies())
    session = sessions(pool)

    with pytest.raises(ProxyRequestFailed) as caught:
        session.post(target_site.url_for("/echo"), data=iter([b"a", b"b"]), timeout=10)

    assert caught.value.proxies_tried == (fleet["relay-0"].address,)
    assert "could not be replayed" in str(caught.value)
    assert target_site.count() == 0


def test_max_proxy_retries_zero_means_one_attempt(
    make_relay_fleet: MakeFleet, target_site: TargetSite, sessions: Sessions
) -> None:
    fleet = make_relay_fleet(2)
    fleet.kill("relay-0")
    pool = make_pool(fleet.proxies())
    session = sessions(pool, max_proxy_retries=0)

    with pytest.raises(ProxyRequestFailed) as caught:
        session.get(target_site.url_for("/"), timeout=10)
    assert caught.value.proxies_tried == (fleet["relay-0"].address,)
    assert session.get(target_site.url_for("/"), timeout=10).ok  # the next proxy works


# --------------------------------------------------------------------------------------------
# explicit proxies win; sticky sessions
# --------------------------------------------------------------------------------------------


def test_an_explicit_proxies_argument_skips_the_pool(
    relay_fleet: RelayFleet, target_site: TargetSite, sessions: Sessions
) -> None:
    pool = make_pool(relay_fleet.proxies(["relay-0"]))
    session = sessions(pool)

    response = session.get(
        target_site.url_for("/"), proxies={"http": relay_fleet["relay-3"].url}, timeout=10
    )

    assert response.ok
    assert target_site.hits_by_relay() == {"relay-3": 1}
    assert pool.stats()["served"] == 0


def test_the_sessions_own_proxies_skip_the_pool(
    relay_fleet: RelayFleet, target_site: TargetSite, sessions: Sessions
) -> None:
    pool = make_pool(relay_fleet.proxies(["relay-0"]))
    session = sessions(pool)
    session.proxies = {"http": relay_fleet["relay-2"].url}

    assert session.get(target_site.url_for("/"), timeout=10).ok
    assert target_site.hits_by_relay() == {"relay-2": 1}
    assert pool.stats()["served"] == 0


def test_proxies_from_the_environment_do_not_bypass_the_pool(
    relay_fleet: RelayFleet,
    target_site: TargetSite,
    sessions: Sessions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", relay_fleet["relay-3"].url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # would even send it directly
    pool = make_pool(relay_fleet.proxies(["relay-0"]))
    session = sessions(pool)

    assert session.get(target_site.url_for("/"), timeout=10).ok
    monkeypatch.delenv("NO_PROXY")
    assert session.get(target_site.url_for("/"), timeout=10).ok

    assert target_site.hits_by_relay() == {"relay-0": 2}


def test_a_session_key_pins_one_proxy_while_it_is_good(
    relay_fleet: RelayFleet, target_site: TargetSite, sessions: Sessions
) -> None:
    pool = make_pool(relay_fleet.proxies())
    session = sessions(pool, session_key="basket-42")

    for _ in range(5):
        assert session.get(target_site.url_for("/"), timeout=10).ok
    (first,) = target_site.hits_by_relay()
    target_site.ban(first, 403)
    target_site.clear()
    for _ in range(5):
        assert session.get(target_site.url_for("/"), timeout=10).ok

    after = [hit.relay for hit in target_site.hits() if not hit.banned]
    assert len(set(after)) == 1 and after[0] != first
    assert [hit.relay for hit in target_site.banned_hits()] == [first]


# --------------------------------------------------------------------------------------------
# the real ProviderClient as the source
# --------------------------------------------------------------------------------------------

APP_KEY = "AppKeyS3cr3t0987654321"


def _serve_extraction(httpserver: HTTPServer, fleet: RelayFleet) -> None:
    # The seed's shape: data.list nests the "ip:port" strings.
    httpserver.expect_request("/openapi/ip/v3").respond_with_json(
        {"code": 200, "msg": "success", "data": {"list": [[r.address for r in fleet]]}}
    )


def test_a_pool_fed_by_the_provider_client_sends_through_the_extracted_proxies(
    relay_fleet: RelayFleet, target_site: TargetSite, sessions: Sessions, httpserver: HTTPServer
) -> None:
    _serve_extraction(httpserver, relay_fleet)
    client = ProviderClient(APP_KEY, base_url=httpserver.url_for("/openapi"), timeout=5)
    pool = ProxyPool(client, batch=4, min_size=0)
    session = sessions(pool)

    statuses = [session.get(target_site.url_for("/"), timeout=10).status_code for _ in range(8)]

    assert statuses == [200] * 8
    assert target_site.hits_by_relay() == dict.fromkeys(relay_fleet.names, 2)
    (extraction,) = [request for request, _ in httpserver.log]
    assert extraction.args["app_key"] == APP_KEY
    assert extraction.args["num"] == "4"


# --------------------------------------------------------------------------------------------
# secrets
# --------------------------------------------------------------------------------------------


def _all_text(caplog: pytest.LogCaptureFixture, errors: list[BaseException]) -> str:
    # werkzeug is pytest-httpserver's own access log: the provider's side, not ours.
    records = "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if not r.name.startswith("werkzeug")
    )
    failures = "\n".join("".join(traceback.format_exception(e)) + repr(e) for e in errors)
    return records + "\n" + failures


def test_no_app_key_or_proxy_password_in_any_debug_record_or_error(
    make_relay_fleet: MakeFleet,
    relay_fleet: RelayFleet,
    target_site: TargetSite,
    tls_target_site: TargetSite,
    sessions: Sessions,
    httpserver: HTTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    password = "Pr0xyPassw0rdXYZ"
    errors: list[BaseException] = []

    # Part 1: the provider client extracts (app_key in its query strings), requests go out.
    _serve_extraction(httpserver, relay_fleet)
    client = ProviderClient(APP_KEY, base_url=httpserver.url_for("/openapi"), timeout=5)
    session = sessions(ProxyPool(client, batch=4, min_size=0))
    assert session.get(target_site.url_for("/"), timeout=10).ok

    # Part 2: password-protected relays: success, https, a ban, a dead relay, a wrong password.
    fleet = make_relay_fleet(3, auth=("crawler", password))
    target_site.ban("relay-1", 403)
    wrong = Proxy(fleet["relay-2"].host, fleet["relay-2"].port, username="crawler", password="x")
    pool = make_pool([*fleet.proxies(["relay-0", "relay-1"]), wrong])
    session = sessions(pool, pool_timeout=0.2)
    verify = str(tls_target_site.cert_path)
    for _ in range(4):
        assert session.get(target_site.url_for("/"), timeout=10).ok
        assert session.get(tls_target_site.url_for("/"), timeout=10, verify=verify).ok
    fleet.kill("relay-0")
    for url in (target_site.url_for("/"), tls_target_site.url_for("/")):
        try:
            session.get(url, timeout=10, verify=verify)
        except requests.RequestException as exc:
            errors.append(exc)

    assert errors, "the dead relay should have made the last requests fail"
    text = _all_text(caplog, errors)
    assert "proxy 127.0.0.1" in text  # the scan sees the adapter's own records
    assert APP_KEY not in text
    assert password not in text
    for _, response in httpserver.log:
        assert APP_KEY not in response.get_data(as_text=True)


# --------------------------------------------------------------------------------------------
# memory: per-proxy connection managers are dropped when proxies leave the pool
# --------------------------------------------------------------------------------------------


def test_connection_managers_of_departed_proxies_are_dropped(
    relay_fleet: RelayFleet, target_site: TargetSite, sessions: Sessions
) -> None:
    relay = relay_fleet["relay-0"]
    clock = FakeClock()
    pool = ProxyPool(
        FreshCredentials(relay.host, relay.port),
        life=1,
        batch=4,
        min_size=1,
        expiry_margin=0.0,
        clock=clock,
    )
    session = sessions(pool)
    adapter = session.get_adapter("http://")
    assert isinstance(adapter, ProxyPoolAdapter)

    most = 0
    for _ in range(60):
        assert session.get(target_site.url_for("/"), timeout=10).ok
        most = max(most, len(adapter.proxy_manager))
        clock.now += 10.0  # a 60 s life: each proxy expires after six requests

    assert pool.stats()["expired"] >= 40  # ~60 distinct proxy URLs went through the session
    assert most <= 8  # one or two batches alive at a time, never all of them
    pool.close()
    assert adapter.proxy_manager == {}


def test_an_adapter_dropped_without_close_is_not_kept_alive_by_the_pool(
    relay_fleet: RelayFleet,
) -> None:
    pool = make_pool(relay_fleet.proxies())
    adapter = ProxyPoolAdapter(pool)
    ref = weakref.ref(adapter)

    del adapter
    gc.collect()

    assert ref() is None
    pool.close()  # the orphaned listener is called, finds no adapter, and unregisters quietly


# --------------------------------------------------------------------------------------------
# construction
# --------------------------------------------------------------------------------------------


def test_wrap_session_mounts_one_adapter_for_http_and_https(relay_fleet: RelayFleet) -> None:
    pool = make_pool(relay_fleet.proxies())
    session = requests.Session()

    returned = wrap_session(session, pool, geo="US/California", max_proxy_retries=1)

    assert returned is session
    adapter = session.get_adapter("https://example.com/")
    assert adapter is session.get_adapter("http://example.com/")
    assert isinstance(adapter, ProxyPoolAdapter)
    assert (adapter.geo, adapter.max_proxy_retries) == (Geo("US", "California"), 1)
    assert adapter.ban_statuses == frozenset({403, 429})
    session.close()


class HashRefused:
    """A key whose ``__hash__`` raises something other than ``TypeError``."""

    def __hash__(self) -> int:
        raise ValueError("no hash for this key")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_proxy_retries": -1}, "max_proxy_retries"),
        ({"max_proxy_retries": 1.5}, "max_proxy_retries"),
        ({"ban_statuses": [700]}, "ban_statuses"),
        ({"max_proxy_retries": True}, "max_proxy_retries"),
        ({"max_proxy_retries": 101}, "max_proxy_retries"),
        ({"pool_timeout": -1}, "pool_timeout"),
        ({"pool_timeout": float("nan")}, "pool_timeout"),
        ({"pool_timeout": float("inf")}, "pool_timeout"),
        ({"pool_timeout": "30"}, "pool_timeout"),
        ({"pool_maxsize": 0}, "pool_maxsize"),
        ({"pool_connections": 2.0}, "pool_connections"),
        ({"pool_block": 1}, "pool_block"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": "3"}, "max_retries"),
        ({"retries": 3}, "retries"),
        ({"ban_policy": object()}, "ban_policy"),
        ({"session_key": ["unhashable"]}, "session_key"),
        ({"session_key": ("cart", ["unhashable"])}, "session_key"),
        ({"session_key": HashRefused()}, "session_key"),
        ({"geo": 42}, "geo"),
    ],
)
def test_bad_adapter_arguments_raise_config_error(
    relay_fleet: RelayFleet, kwargs: dict[str, Any], field: str
) -> None:
    pool = make_pool(relay_fleet.proxies())
    with pytest.raises(ConfigError) as caught:
        ProxyPoolAdapter(pool, **kwargs)
    assert caught.value.field == field
    assert field in str(caught.value)
    assert pool.stats()["served"] == 0


def test_max_retries_takes_a_count_or_a_urllib3_retry(relay_fleet: RelayFleet) -> None:
    pool = make_pool(relay_fleet.proxies())
    with pytest.raises(ConfigError) as caught:
        ProxyPoolAdapter(pool, max_retries=1.5)
    assert "urllib3 Retry" in str(caught.value)

    adapters = [ProxyPoolAdapter(pool, max_retries=retries) for retries in (0, Retry(2))]

    assert [a.max_retries.total for a in adapters] == [0, 2]
    for adapter in adapters:
        adapter.close()


def test_a_pool_that_is_not_a_pool_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        ProxyPoolAdapter(object())  # type: ignore[arg-type]
    assert caught.value.field == "pool"


class ScriptedRandom(random.Random):
    """The pool's injected randomness, answering a fixed script (then 0.5)."""

    def __init__(self, values: Iterable[float]) -> None:
        super().__init__(0)
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0) if self.values else 0.5


def test_a_retry_goes_to_a_proxy_the_request_has_not_tried(
    make_relay_fleet: MakeFleet, target_site: TargetSite, sessions: Sessions
) -> None:
    fleet = make_relay_fleet(2)
    fleet.kill("relay-0")
    dead, good = fleet.proxies()
    # Random rotation over [dead, good]; the draws: 0.0 picks dead, 0.5 is the (instant)
    # cool-down's jitter, 0.0 offers dead again (its cool-down is already over), 0.99 picks good.
    pool = make_pool(
        [dead, good],
        strategy="random",
        rng=ScriptedRandom([0.0, 0.5, 0.0, 0.99]),
        cooldown=Backoff(base=1e-6, cap=1e-6, jitter=0.0),
    )
    session = sessions(pool, max_proxy_retries=1)

    response = session.get(target_site.url_for("/page/1"), timeout=10)

    assert response.status_code == 200  # the one retry was not spent on the dead proxy again
    assert target_site.hits_by_relay() == {"relay-1": 1}
    assert pool.stats()["failures"] == 1


def test_a_host_no_proxy_can_reach_evicts_no_proxy(
    relay_fleet: RelayFleet, target_site: TargetSite, sessions: Sessions
) -> None:
    """Every relay answers the CONNECT to a host where nothing listens with 502: the proxies did
    their job, so none is failed or evicted (a site linking to unreachable hosts must not make
    the pool evict healthy proxies and buy new ones). The host is skipped per proxy; the same
    proxies go on serving the real site."""
    pool = make_pool(relay_fleet.proxies(), max_failures=1)
    session = sessions(pool, max_proxy_retries=3, pool_timeout=0.5)
    unreachable = f"https://127.0.0.3:{closed_port()}/x"

    with pytest.raises(ProxyRequestFailed):
        session.get(unreachable, timeout=10)

    stats = pool.stats()
    assert (stats["failures"], stats["evictions"]) == (0, 0), stats
    assert stats["bans"] == len(relay_fleet.names)  # each skipped for that host only
    statuses = [session.get(target_site.url_for("/"), timeout=10).status_code for _ in range(8)]
    assert statuses == [200] * 8
    assert set(target_site.hits_by_relay()) == set(relay_fleet.names)


@pytest.mark.parametrize("host", [("a" * 60 + ".") * 5 + "com", "b" * 254])
def test_a_host_longer_than_dns_allows_is_requests_invalid_url_and_nothing_is_sent(
    sessions: Sessions, host: str
) -> None:
    """requests' own error for a URL it cannot use (InvalidURL), not a bare ConfigError, and
    raised before any proxy is taken: no proxy is blamed or used."""
    from proxypool import ConfigError, UnusableURL

    broken = BrokenProxy("mute")
    try:
        pool = make_pool([broken.proxy])
        session = sessions(pool)
        with pytest.raises(requests.exceptions.InvalidURL) as caught:
            session.get(f"http://{host}/page", timeout=5)
        assert isinstance(caught.value, UnusableURL) and isinstance(caught.value, ConfigError)
        assert caught.value.field == "url"
        assert caught.value.request is not None
        assert "not sent" in str(caught.value) and "253" in str(caught.value)
        assert broken.request_lines() == []
        assert pool.stats()["served"] == 0
    finally:
        broken.close()
