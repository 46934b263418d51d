"""Every client call is bounded in time and memory, whatever the provider does.

- Time: ``timeout`` bounds the whole method call (connect, send, headers, the whole body, and the
  retries with their backoff). A provider that drips its answer a byte at a time, in the body or
  in the headers, is cut at the deadline; the CLI and ``LocationCatalog`` go through the same
  client.
- Memory: an answer is read in chunks and refused past ``max_response_bytes`` *decoded* bytes, so
  a gzip bomb or a huge body costs a few MB, never the answer's size, and raises
  ``ApiResponseError``; even under a memory limit, only ``ProxyPoolError`` subclasses escape.

Real loopback servers throughout: pytest-httpserver (threaded) for streamed answers, a raw socket
server for dripped headers, and a subprocess for memory, so its peak RSS is its own.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _provider import (
    KEY,
    PREFIX,
    SEED_STATE_CATALOG,
    HeaderDripServer,
    SleepRecorder,
    envelope,
    make_client,
)
from _secret_scan import exception_texts
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from proxypool import ApiConnectionError, ApiResponseError, ProviderClient, ProviderSession
from proxypool.geo import Geo, LocationCatalog

ROOT = Path(__file__).resolve().parents[1]
EXTRACT = f"{PREFIX}/ip/v3"
CATALOG = f"{PREFIX}/ip/dynamic-states"
SMALL_ANSWER = json.dumps(envelope({"list": ["203.0.113.9:8000"]})).encode()
DRIP_EVERY = 0.2  # seconds between two bytes
# Each drip stops by itself well before pytest's timeout (a cut client never reads the rest).
DRIP_FOR = 12.0

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def threaded_server() -> Iterator[HTTPServer]:
    """A provider that answers several calls at once (a drip holds its thread)."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


def dripping(body: bytes, stop: threading.Event) -> Iterator[bytes]:
    """``body`` one byte per ``DRIP_EVERY`` s, then padding until ``DRIP_FOR`` s have passed."""
    started = time.monotonic()
    for byte in body:
        if stop.is_set():
            return
        yield bytes([byte])
        time.sleep(DRIP_EVERY)
    while time.monotonic() - started < DRIP_FOR and not stop.is_set():
        yield b" "
        time.sleep(DRIP_EVERY)


@pytest.fixture
def drip_stop() -> Iterator[threading.Event]:
    stop = threading.Event()
    yield stop
    stop.set()


def serve_drip(server: HTTPServer, path: str, body: bytes, stop: threading.Event) -> None:
    server.expect_request(path).respond_with_handler(
        lambda request: Response(dripping(body, stop), content_type="application/json")
    )


def test_a_dripped_body_is_cut_at_the_timeout(
    threaded_server: HTTPServer, drip_stop: threading.Event
) -> None:
    # Slow enough to need 10 s, fast enough that no single read waits a whole second.
    serve_drip(threaded_server, EXTRACT, SMALL_ANSWER, drip_stop)
    client = make_client(threaded_server, timeout=1.0, retries=2)

    started = time.monotonic()
    with pytest.raises(ApiConnectionError, match=r"did not answer within 1 s") as info:
        client.extract(num=1)
    elapsed = time.monotonic() - started

    assert elapsed < 5.0, f"the call took {elapsed:.1f} s with timeout=1"
    assert not any(KEY in text for _, text in exception_texts(info.value))


def test_retries_do_not_extend_the_call_past_its_timeout(
    threaded_server: HTTPServer, drip_stop: threading.Event
) -> None:
    """One deadline for the whole call: the first attempt used it, so there is no second."""
    serve_drip(threaded_server, EXTRACT, SMALL_ANSWER, drip_stop)
    sleep = SleepRecorder()
    client = make_client(threaded_server, timeout=1.0, retries=3, sleep=sleep)

    with pytest.raises(ApiConnectionError):
        client.extract(num=1)

    assert len(threaded_server.log) == 1
    assert sleep.calls == []


def test_backoff_is_cut_to_the_time_left(threaded_server: HTTPServer) -> None:
    """A retry whose pause would reach past the deadline is not made: the last error is
    raised at once instead of after a sleep that leaves no time to try."""
    threaded_server.expect_request(CATALOG).respond_with_data("busy", status=503)
    sleep = SleepRecorder()
    client = make_client(threaded_server, timeout=2.0, retries=3, backoff=0.5, sleep=sleep)

    with pytest.raises(Exception, match="HTTP 503"):
        client.list_state_catalog()

    # 0.5 and 1.0 fit in 2 s (the recorder does not really sleep), 2.0 would not.
    assert sleep.calls == [0.5, 1.0]
    assert len(threaded_server.log) == 3


@pytest.fixture
def header_drip() -> Iterator[HeaderDripServer]:
    server = HeaderDripServer(every=DRIP_EVERY, drip_for=DRIP_FOR)
    yield server
    server.close()


@pytest.mark.parametrize("own_session", [False, True], ids=["default-session", "scrapy-session"])
def test_dripped_headers_are_cut_at_the_timeout(
    header_drip: HeaderDripServer, own_session: bool
) -> None:
    """Also with the session the Scrapy middleware hands the client (the one it aborts when the
    spider closes): its connections report to the client's watchdog too."""
    session = ProviderSession() if own_session else None
    client = ProviderClient(
        KEY,
        base_url=header_drip.url,
        timeout=1.0,
        retries=1,
        session=session,
    )

    started = time.monotonic()
    with pytest.raises(ApiConnectionError, match="did not answer within 1 s"):
        client.list_state_catalog()

    assert time.monotonic() - started < 5.0


def test_a_dripped_proxy_tunnel_is_cut_at_the_timeout(header_drip: HeaderDripServer) -> None:
    """An https provider reached through an http proxy: the proxy's answer to CONNECT is read
    while the connection is still connecting, and it is dripped. The deadline cuts it too."""
    session = ProviderSession()
    session.proxies = {"https": f"http://127.0.0.1:{header_drip.port}"}
    client = ProviderClient(
        KEY, base_url="https://127.0.0.1:9/openapi", timeout=1.0, retries=1, session=session
    )

    started = time.monotonic()
    with pytest.raises(ApiConnectionError, match="did not answer within 1 s"):
        client.extract(num=1)

    assert time.monotonic() - started < 5.0
    # The proxy sees the connection closed soon after (it notices on its next byte).
    give_up = time.monotonic() + 5.0
    while not header_drip.held and time.monotonic() < give_up:
        time.sleep(0.05)
    assert header_drip.held and max(header_drip.held) < 3.5, header_drip.held
    session.close()


def test_a_deadline_cuts_only_its_own_call_on_a_shared_session(
    header_drip: HeaderDripServer, threaded_server: HTTPServer
) -> None:
    """Two clients, one session, two threads: the call that reaches its deadline is cut; the
    other, still waiting for its headers on the same session, gets its answer."""

    def late(request: Request) -> Response:
        time.sleep(2.5)
        return Response(SMALL_ANSWER, content_type="application/json")

    threaded_server.expect_request(EXTRACT).respond_with_handler(late)
    session = ProviderSession()
    patient = make_client(threaded_server, timeout=20.0, retries=0, session=session)
    hasty = ProviderClient(KEY, base_url=header_drip.url, timeout=1.0, session=session)
    answers: list[object] = []
    waiter = threading.Thread(target=lambda: answers.append(patient.extract(num=1)))
    waiter.start()

    with pytest.raises(ApiConnectionError, match="did not answer within 1 s"):
        hasty.extract(num=1)
    waiter.join(20)

    assert len(answers) == 1, "the patient call was cut by the other thread's deadline"
    assert [p.address for p in answers[0]] == ["203.0.113.9:8000"]  # type: ignore[attr-defined]
    session.close()


def test_abort_cuts_a_call_waiting_for_its_headers(header_drip: HeaderDripServer) -> None:
    """The same session's abort switch: a call dripping its headers fails as soon as the session
    is aborted (long before its deadline), and a later call fails without connecting."""
    session = ProviderSession()
    client = ProviderClient(
        KEY, base_url=header_drip.url, timeout=30.0, session=session, sleep=session.sleep
    )
    failures: list[BaseException] = []

    def call() -> None:
        try:
            client.extract(num=1)
        except ApiConnectionError as exc:
            failures.append(exc)

    caller = threading.Thread(target=call)
    started = time.monotonic()
    caller.start()
    while header_drip.connections == 0 and time.monotonic() - started < 10:
        time.sleep(0.05)
    session.abort()
    caller.join(10)

    assert not caller.is_alive() and len(failures) == 1, failures
    # Reported as cut, not as the "empty answer" http.client makes of a header block cut short.
    assert "the session was aborted" in str(failures[0]), failures
    assert time.monotonic() - started < 8.0
    with pytest.raises(ApiConnectionError):
        client.extract(num=1)
    assert header_drip.connections == 1


def test_the_location_catalog_is_bounded_by_the_client(
    threaded_server: HTTPServer, drip_stop: threading.Event
) -> None:
    serve_drip(threaded_server, CATALOG, json.dumps(SEED_STATE_CATALOG).encode(), drip_stop)
    catalog = LocationCatalog(make_client(threaded_server, timeout=1.0))

    started = time.monotonic()
    with pytest.raises(ApiConnectionError):
        catalog.validate(Geo("US"))

    assert time.monotonic() - started < 5.0


def test_the_cli_is_bounded_by_its_timeout(
    threaded_server: HTTPServer, drip_stop: threading.Event
) -> None:
    serve_drip(threaded_server, CATALOG, json.dumps(SEED_STATE_CATALOG).encode(), drip_stop)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXYPOOL_")}
    env.update(
        PROXYPOOL_APP_KEY=KEY,
        PROXYPOOL_API_URL=threaded_server.url_for(PREFIX),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )

    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "proxypool", "--timeout", "1", "locations", "countries"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert time.monotonic() - started < 8.0  # interpreter start-up included
    assert proc.returncode == 1, proc.stderr
    assert "did not answer within 1 s" in proc.stderr
    assert KEY not in proc.stdout + proc.stderr


# -- memory ---------------------------------------------------------------------------------

BOMB_SIZE = 128 * 1024 * 1024  # decoded bytes; about 130 KB gzipped


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    return gzip.compress(b"\0" * BOMB_SIZE, compresslevel=6)


# Run in a fresh interpreter: its peak RSS (ru_maxrss) measures this call alone. A warm-up call
# first, so imports and the first connection are in the baseline; then, optionally, an address-
# space limit 100 MB above what the process maps, as a container's memory limit would be.
MEMORY_PROBE = """
import json, resource, sys
from proxypool import ProviderClient, ProxyPoolError

url, limit = sys.argv[1], sys.argv[2] == "limit"
client = ProviderClient("KEYs3cr3tXYZ1234567890", base_url=url, retries=0, timeout=30)
client.list_state_catalog()  # warm-up: the small answer
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if limit:
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + 100 * 1024 * 1024, resource.RLIM_INFINITY))
try:
    client.extract(num=1)
    outcome = "no error"
except ProxyPoolError as exc:
    outcome = f"{type(exc).__name__}: {exc}"
except BaseException as exc:
    outcome = f"ESCAPED {type(exc).__name__}"
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "grew_kb": after - before}))
"""


def probe(server: HTTPServer, *, limit: bool = False) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXYPOOL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            MEMORY_PROBE,
            server.url_for(PREFIX),
            "limit" if limit else "no-limit",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def serve_catalog_and(server: HTTPServer, response: Response) -> None:
    server.expect_request(CATALOG).respond_with_json(SEED_STATE_CATALOG)
    server.expect_request(EXTRACT).respond_with_response(response)


@pytest.mark.parametrize("limit", [False, True], ids=["no-limit", "memory-limit"])
def test_a_gzip_bomb_costs_a_few_mb(
    threaded_server: HTTPServer, gzip_bomb: bytes, limit: bool
) -> None:
    serve_catalog_and(
        threaded_server,
        Response(gzip_bomb, headers={"Content-Encoding": "gzip"}, content_type="application/json"),
    )

    result = probe(threaded_server, limit=limit)

    assert str(result["outcome"]).startswith("ApiResponseError"), result
    assert "larger than the 8 MiB" in str(result["outcome"]), result
    assert int(str(result["grew_kb"])) < 40 * 1024, result


def test_a_huge_streamed_body_is_refused_in_chunks(threaded_server: HTTPServer) -> None:
    def huge(request: Request) -> Response:
        chunk = b"x" * 65536
        return Response((chunk for _ in range(16 * 64)), content_type="text/plain")  # 64 MiB

    threaded_server.expect_request(CATALOG).respond_with_json(SEED_STATE_CATALOG)
    threaded_server.expect_request(EXTRACT).respond_with_handler(huge)

    result = probe(threaded_server)

    assert str(result["outcome"]).startswith("ApiResponseError"), result
    assert "larger than the 8 MiB" in str(result["outcome"]), result
    assert int(str(result["grew_kb"])) < 40 * 1024, result


def test_a_declared_length_past_the_cap_is_refused_before_reading(
    threaded_server: HTTPServer,
) -> None:
    threaded_server.expect_request(EXTRACT).respond_with_data(b"x" * (2 * 1024 * 1024))
    client = make_client(threaded_server, max_response_bytes=1024 * 1024)

    with pytest.raises(ApiResponseError, match=r"larger than the 1 MiB"):
        client.extract(num=1)


def test_an_answer_at_the_cap_is_still_read(threaded_server: HTTPServer) -> None:
    body = json.dumps(envelope({"list": ["203.0.113.9:8000"]}, msg="m" * 3000)).encode()
    threaded_server.expect_request(EXTRACT).respond_with_data(
        gzip.compress(body), headers={"Content-Encoding": "gzip"}
    )
    client = make_client(threaded_server, max_response_bytes=len(body))

    assert [p.address for p in client.extract(num=1)] == ["203.0.113.9:8000"]


def test_max_response_bytes_is_checked() -> None:
    from proxypool import ConfigError

    for bad in (0, -1, 1.5, "8M", True):
        with pytest.raises(ConfigError, match="max_response_bytes"):
            ProviderClient(KEY, base_url="http://127.0.0.1:9/x", max_response_bytes=bad)  # type: ignore[arg-type]
