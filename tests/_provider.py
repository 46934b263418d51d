"""Test helpers for the provider client: the seed's example payloads, a client factory aimed at a
pytest-httpserver standing in for the provider, and the table of every client method.

Shared by tests/test_api_*.py. Not a conftest: the fixtures here are plain functions the test
modules call, so each test states what it uses.
"""

from __future__ import annotations

import copy
import json
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_httpserver import HTTPServer

from proxypool import ProviderClient

# A recognisable key: the secret scan looks for it everywhere.
KEY = "KEYs3cr3tXYZ1234567890"
PREFIX = "/openapi"


def base_url(server: HTTPServer, prefix: str = PREFIX) -> str:
    return server.url_for(prefix).rstrip("/")


class SleepRecorder:
    """Stands in for ``time.sleep``: records the delays instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_client(
    server: HTTPServer, *, key: str = KEY, sleep: SleepRecorder | None = None, **kwargs: Any
) -> ProviderClient:
    """A client for ``server`` that never really sleeps (retries back off through ``sleep``)."""
    kwargs.setdefault("base_url", base_url(server))
    kwargs.setdefault("timeout", 5.0)
    return ProviderClient(key, sleep=sleep if sleep is not None else SleepRecorder(), **kwargs)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def envelope(data: Any = None, *, code: Any = 200, msg: str = "success") -> dict[str, Any]:
    return {"code": code, "msg": msg, "data": data}


def body_of(request: Any) -> Any:
    """The JSON body a logged werkzeug request carried."""
    return json.loads(request.get_data(as_text=True))


def query_of(request: Any) -> dict[str, list[str]]:
    """A logged request's query string as ``{name: [values]}`` (repeats would show)."""
    result: dict[str, list[str]] = request.args.to_dict(flat=False)
    return result


class HeaderDripServer:
    """A raw HTTP/1.1 provider on loopback whose answers never finish their headers: it sends the
    status line, then drips an endless header line, one byte per ``every`` s for at most
    ``drip_for`` s (a cut client never reads the rest). Only the first ``drips`` connections are
    dripped (all when None); later ones get ``answer`` (a JSON body) at once, then close.

    ``held`` lists, per dripped connection, the seconds from its request to the moment the
    client went away (a send failed) or the drip ended: how long the client let itself be held.
    Thread-safe: one thread per connection; ``held`` and the count are guarded by a lock."""

    def __init__(
        self,
        *,
        drips: int | None = None,
        answer: bytes = b"",
        every: float = 0.2,
        drip_for: float = 12.0,
    ) -> None:
        self.drips = drips
        self.answer = answer
        self.every = every
        self.drip_for = drip_for
        self.held: list[float] = []
        self._lock = threading.Lock()
        self._count = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}{PREFIX}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def connections(self) -> int:
        """Requests received so far."""
        with self._lock:
            return self._count

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                _read_request_head(conn)
                with self._lock:
                    self._count += 1
                    drip = self.drips is None or self._count <= self.drips
                if drip:
                    self._drip(conn)
                else:
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(self.answer)}\r\n".encode()
                        + b"Connection: close\r\n\r\n"
                        + self.answer
                    )
            except OSError:
                return

    def _drip(self, conn: socket.socket) -> None:
        started = time.monotonic()
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            while time.monotonic() - started < self.drip_for and not self._stop.is_set():
                conn.sendall(b"a")
                time.sleep(self.every)
        except OSError:
            pass  # the client cut the connection
        with self._lock:
            self.held.append(time.monotonic() - started)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(5)


def _read_request_head(conn: socket.socket) -> None:
    """Read a request up to the end of its headers (the provider's calls here are GETs)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionResetError("the client closed before its request ended")
        data += chunk


# -- the seed's example payloads (placeholders "string" replaced by realistic values where the
#    client must parse them: a time field reading "string" is not a time) ----------------------

SEED_ACCOUNTS = envelope(
    {
        "list": [
            {
                "id": 0,
                "username": "user01",
                "password": "pass01",
                "created_at": "2022-05-13 12:14:15",
                "remark": "string",
                "product_type": 9,
                "usage_flow": 0,
                "limit_flow": 102400,
                "status": 0,
            }
        ]
    },
    msg="string",
)

SEED_WRITE_OK = envelope(None, msg="string")

SEED_USAGE = envelope({"list": [{"day": "2022-08-01", "flow": 0}]}, msg="string")

SEED_PRODUCTS = envelope(
    {
        "list": [
            {
                "id": 0,
                "created_at": "2022-05-13 12:14:15",
                "expired_at": "2022-05-13 12:14:15",
                "product_type": 9,
                "trade_no": "2022051312134339861461465434",
                "order": {
                    "created_at": "2022-05-13 12:13:43",
                    "pay_at": "2022-05-13 12:13:43",
                    "title": "入门级",
                },
            }
        ],
        "page": 1,
        "page_size": 20,
        "total_count": 0,
        "total_page": 0,
    },
    msg="string",
)

SEED_EXTRACT_ADDRESSES = [f"150.109.114.72:{port}" for port in range(1140, 1150)]
SEED_EXTRACT = envelope({"list": [list(SEED_EXTRACT_ADDRESSES)]}, msg="string")

SEED_CITY_CATALOG = envelope(
    {
        "list": [
            {
                "name_zh_cn": "美国",
                "name_en": "United States",
                "continent_code": "NA",
                "country_code": "US",
                "items": [
                    {"city": None, "state": None, "continent_code": None, "country_code": None}
                ],
            }
        ]
    },
    msg="string",
)

SEED_STATE_CATALOG = envelope(
    {
        "list": [
            {
                "name_zh_cn": "美国",
                "name_en": "United States",
                "continent_code": "NA",
                "country_code": "US",
                "items": [{"state": None, "continent_code": None, "country_code": None}],
            }
        ]
    },
    msg="string",
)

SEED_SEARCH = envelope({"list": ["string"]}, msg="string")

# The seed leaves the static-IP answer undocumented; this is a plausible one.
STATIC_IPS = envelope(
    {
        "list": [
            {
                "ip": "203.0.113.7",
                "port": 8000,
                "country_code": "US",
                "product_type": 25,
                "status": 1,
                "trade_no": "T2024",
                "expired_at": "2024-06-01 00:00:00",
                "isp": "ExampleNet",
            }
        ],
        "page": 1,
        "total_count": 1,
    }
)


def seed(payload: dict[str, Any]) -> dict[str, Any]:
    """A private copy, so a test may alter it."""
    return copy.deepcopy(payload)


# -- every client method, with valid arguments -------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One client method: how to call it with valid arguments, where it goes, what succeeds."""

    name: str
    method: str
    path: str  # absolute path on the fake provider
    call: Callable[[ProviderClient], Any]
    ok: dict[str, Any]  # a success envelope for it

    def __str__(self) -> str:
        return self.name


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "list_accounts",
        "GET",
        f"{PREFIX}/whitelist-account/list",
        lambda c: c.list_accounts(),
        SEED_ACCOUNTS,
    ),
    Endpoint(
        "add_accounts",
        "POST",
        f"{PREFIX}/whitelist-account/add",
        lambda c: c.add_accounts({"user01": "pass01"}, remark="r"),
        SEED_WRITE_OK,
    ),
    Endpoint(
        "delete_accounts",
        "POST",
        f"{PREFIX}/whitelist-account/delete",
        lambda c: c.delete_accounts(["user01", "user02"]),
        SEED_WRITE_OK,
    ),
    Endpoint(
        "disable_accounts",
        "POST",
        f"{PREFIX}/whitelist-account/disable",
        lambda c: c.disable_accounts("user01"),
        SEED_WRITE_OK,
    ),
    Endpoint(
        "enable_accounts",
        "POST",
        f"{PREFIX}/whitelist-account/enable",
        lambda c: c.enable_accounts(["user01"]),
        SEED_WRITE_OK,
    ),
    Endpoint(
        "change_password",
        "POST",
        f"{PREFIX}/whitelist-account/change-password",
        lambda c: c.change_password("user01", "newpass1"),
        SEED_WRITE_OK,
    ),
    Endpoint(
        "change_remark",
        "POST",
        f"{PREFIX}/whitelist-account/change-remark",
        lambda c: c.change_remark("user01", "crawler A"),
        SEED_WRITE_OK,
    ),
    Endpoint(
        "change_limit",
        "POST",
        f"{PREFIX}/whitelist-account/change-limit",
        lambda c: c.change_limit("user01", 5),
        SEED_WRITE_OK,
    ),
    Endpoint(
        "daily_usage",
        "GET",
        f"{PREFIX}/user-usage-flow/total",
        lambda c: c.daily_usage(start="2022-08-01 00:00:00"),
        SEED_USAGE,
    ),
    Endpoint(
        "list_products",
        "GET",
        f"{PREFIX}/user-product/list",
        lambda c: c.list_products(),
        SEED_PRODUCTS,
    ),
    Endpoint(
        "iter_products",
        "GET",
        f"{PREFIX}/user-product/list",
        lambda c: list(c.iter_products()),
        SEED_PRODUCTS,
    ),
    Endpoint(
        "extract",
        "GET",
        f"{PREFIX}/ip/v3",
        lambda c: c.extract("US/California", num=10, life=5),
        SEED_EXTRACT,
    ),
    Endpoint(
        "list_city_catalog",
        "GET",
        f"{PREFIX}/ip/dynamic-citys",
        lambda c: c.list_city_catalog(),
        SEED_CITY_CATALOG,
    ),
    Endpoint(
        "search_cities",
        "GET",
        f"{PREFIX}/ip/dynamic-citys/search",
        lambda c: c.search_cities("US", "California"),
        SEED_SEARCH,
    ),
    Endpoint(
        "list_state_catalog",
        "GET",
        f"{PREFIX}/ip/dynamic-states",
        lambda c: c.list_state_catalog(),
        SEED_STATE_CATALOG,
    ),
    Endpoint(
        "search_states",
        "GET",
        f"{PREFIX}/ip/dynamic-states/search",
        lambda c: c.search_states("US"),
        SEED_SEARCH,
    ),
    Endpoint(
        "list_static_ips",
        "GET",
        "/ip/get-static-ip",
        lambda c: c.list_static_ips(country_code="US"),
        STATIC_IPS,
    ),
)

GET_ENDPOINTS = tuple(e for e in ENDPOINTS if e.method == "GET")
POST_ENDPOINTS = tuple(e for e in ENDPOINTS if e.method == "POST")


def default_sigint() -> None:
    """``preexec_fn`` for a child that a test stops with SIGINT, as Ctrl-C in a terminal would: a
    suite started with SIGINT ignored (nohup, a background job, some CI wrappers) would hand the
    child that disposition, and Python then ignores the signal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
