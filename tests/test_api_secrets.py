"""The app_key is a secret: run every client method at DEBUG logging, on success and on every kind
of failure (network, timeout, HTTP errors, code 3, redirects and bodies that echo the key), and
scan every log record, exception text, traceback, exception chain and the client's repr."""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from _provider import (
    ENDPOINTS,
    GET_ENDPOINTS,
    KEY,
    SEED_ACCOUNTS,
    Endpoint,
    base_url,
    closed_port,
    envelope,
    make_client,
)
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from proxypool import ConfigError, ProviderClient, ProviderError, ProxyPoolError

# A key with characters that URLs encode, to catch leaks of its percent-encoded form too.
ODD_KEY = "Ké+y/s3cr3t=XYZ%41&1234567890"


def forms(key: str) -> list[str]:
    return [key, quote(key, safe=""), quote_plus(key)]


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    return caplog


def our_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    # 'werkzeug' is the fake provider's own access log (it prints the URL it received), not ours.
    return [r for r in caplog.records if not r.name.startswith("werkzeug")]


def log_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    texts = []
    for record in our_records(caplog):
        texts += [record.getMessage(), formatter.format(record), str(record.msg), repr(record.args)]
    return texts


def exception_texts(exc: BaseException) -> list[str]:
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args), repr(vars(current))]
        texts += ["".join(traceback.format_exception_only(type(current), current))]
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                texts += [str(linked), repr(linked)]
        current = current.__cause__ or current.__context__
    return texts


def assert_clean(texts: list[str], key: str = KEY) -> None:
    for text in texts:
        for form in forms(key):
            assert form not in text, f"secret leaked: {text[:300]!r}"


def run(endpoint: Endpoint, client: ProviderClient) -> list[str]:
    """Call the endpoint; the texts of any error it raised (only ProviderError may escape)."""
    try:
        endpoint.call(client)
    except ProviderError as exc:
        return exception_texts(exc)
    return []


def assert_urllib3_was_scanned(caplog: pytest.LogCaptureFixture) -> None:
    """The scan is only worth something if urllib3's request lines were captured."""
    lines = [r.getMessage() for r in our_records(caplog) if r.name.startswith("urllib3")]
    assert any("app_key=***" in line for line in lines), lines


# -- success ------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_success_at_debug(
    httpserver: HTTPServer, debug_logs: pytest.LogCaptureFixture, endpoint: Endpoint
) -> None:
    httpserver.expect_request(endpoint.path).respond_with_json(endpoint.ok)
    client = make_client(httpserver)

    assert run(endpoint, client) == []

    assert_clean([*log_texts(debug_logs), repr(client), str(client)])
    if endpoint.method == "GET":
        assert_urllib3_was_scanned(debug_logs)
        # The key did travel, in the query string (the fake provider saw it).
        assert httpserver.log[0][0].args["app_key"] == KEY
    else:
        assert json.loads(httpserver.log[0][0].get_data())["app_key"] == KEY


@pytest.mark.parametrize("endpoint", [ENDPOINTS[0], ENDPOINTS[1]], ids=str)
def test_odd_key_at_debug(
    httpserver: HTTPServer, debug_logs: pytest.LogCaptureFixture, endpoint: Endpoint
) -> None:
    httpserver.expect_request(endpoint.path).respond_with_json(
        envelope(code=3, msg=f"bad key {ODD_KEY} / {quote_plus(ODD_KEY)}")
    )
    client = make_client(httpserver, key=ODD_KEY)

    texts = run(endpoint, client)

    assert texts
    assert_clean(texts + log_texts(debug_logs) + [repr(client)], ODD_KEY)


# -- answers that echo the key --------------------------------------------------------------

ECHOES = [
    pytest.param(
        500, "text/html", f"<h1>Error</h1><p>GET /openapi?app_key={KEY}&x=1</p>", id="500-html-echo"
    ),
    pytest.param(
        500,
        "application/json",
        json.dumps(envelope(code=500, msg=f"boom {KEY}")),
        id="500-envelope-echo",
    ),
    pytest.param(
        200,
        "application/json",
        json.dumps(envelope(code=3, msg=f"app_key {KEY} has expired")),
        id="code-3",
    ),
    pytest.param(
        401,
        "application/json",
        json.dumps({"code": 3, "message": f'{{"app_key": "{KEY}"}}'}),
        id="code-3-401",
    ),
    pytest.param(200, "application/json", json.dumps(envelope(code=156, msg=KEY)), id="code-156"),
    pytest.param(
        200, "application/json", json.dumps(envelope(code=42, msg=[KEY])), id="code-42-list-message"
    ),
    pytest.param(200, "text/plain", f"key={KEY}", id="not-json"),
    pytest.param(200, "application/json", json.dumps([KEY]), id="json-list"),
    pytest.param(404, "text/plain", KEY * 3, id="404-echo"),
]


@pytest.mark.parametrize(("status", "content_type", "body"), ECHOES)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_errors_that_echo_the_key(
    httpserver: HTTPServer,
    debug_logs: pytest.LogCaptureFixture,
    endpoint: Endpoint,
    status: int,
    content_type: str,
    body: str,
) -> None:
    httpserver.expect_request(endpoint.path).respond_with_response(
        Response(body, status=status, content_type=content_type)
    )
    client = make_client(httpserver, retries=1)

    texts = run(endpoint, client)

    assert texts, "an error was expected"
    assert_clean(texts + log_texts(debug_logs) + [repr(client)])


WRONG_SHAPES_ECHOING = [
    ("list_accounts", {"list": [{"created_at": KEY}]}),
    ("list_accounts", {"list": [{"usage_flow": KEY}]}),
    ("list_accounts", {"list": [KEY]}),
    ("daily_usage", {"list": [{"day": KEY, "flow": 1}]}),
    ("list_products", {"list": [{"expired_at": f"x{KEY}"}]}),
    ("list_products", {"list": [{"order": {"pay_at": KEY}}]}),
    ("extract", {"list": [KEY]}),
    ("extract", {"list": [f"{KEY}:http"]}),
    ("extract", {"list": [{"ip": KEY}]}),
    ("list_city_catalog", {"list": [{"country_code": "US", "items": [KEY]}]}),
    ("search_states", {"list": [{"state": [KEY]}]}),
    ("list_static_ips", {"list": [{"expired_at": KEY}]}),
]


@pytest.mark.parametrize(("name", "data"), WRONG_SHAPES_ECHOING)
def test_wrong_shapes_that_echo_the_key(
    httpserver: HTTPServer, debug_logs: pytest.LogCaptureFixture, name: str, data: Any
) -> None:
    endpoint = next(e for e in ENDPOINTS if e.name == name)
    httpserver.expect_request(endpoint.path).respond_with_json(envelope(data))

    texts = run(endpoint, make_client(httpserver))

    assert texts, "an error was expected"
    assert_clean(texts + log_texts(debug_logs))


@pytest.mark.parametrize(
    "location",
    [
        f"https://login.example.com/?app_key={KEY}&next=/openapi",
        f"/openapi/{KEY}/login",
        f"http://user:{KEY}@proxy.example.com/",
    ],
    ids=["query", "path", "userinfo"],
)
@pytest.mark.parametrize("endpoint", [ENDPOINTS[0], ENDPOINTS[1], ENDPOINTS[11]], ids=str)
def test_redirects_that_echo_the_key(
    httpserver: HTTPServer,
    debug_logs: pytest.LogCaptureFixture,
    endpoint: Endpoint,
    location: str,
) -> None:
    httpserver.expect_request(endpoint.path).respond_with_response(
        Response(f"moved to {location}", status=302, headers={"Location": location})
    )

    texts = run(endpoint, make_client(httpserver))

    assert any("redirect" in t for t in texts)
    assert_clean(texts + log_texts(debug_logs))


# -- network failures -----------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_connection_refused_at_debug(
    debug_logs: pytest.LogCaptureFixture, endpoint: Endpoint
) -> None:
    client = ProviderClient(
        KEY,
        base_url=f"http://127.0.0.1:{closed_port()}/openapi",
        retries=1,
        sleep=lambda seconds: None,
    )

    texts = run(endpoint, client)

    assert any("could not connect" in t for t in texts)
    assert_clean(texts + log_texts(debug_logs) + [repr(client)])


@pytest.fixture(scope="module")
def slow_server() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.mark.parametrize("endpoint", [ENDPOINTS[0], ENDPOINTS[1], ENDPOINTS[11]], ids=str)
def test_timeouts_at_debug(
    slow_server: HTTPServer, debug_logs: pytest.LogCaptureFixture, endpoint: Endpoint
) -> None:
    def handler(request: Request) -> Response:
        time.sleep(0.4)
        return Response(json.dumps(SEED_ACCOUNTS), content_type="application/json")

    slow_server.clear()
    slow_server.expect_request(endpoint.path).respond_with_handler(handler)
    client = make_client(slow_server, timeout=0.1, retries=1)

    texts = run(endpoint, client)

    assert any("did not answer" in t for t in texts)
    assert_clean(texts + log_texts(debug_logs))


@pytest.mark.parametrize("endpoint", GET_ENDPOINTS, ids=str)
def test_retries_at_debug(
    httpserver: HTTPServer, debug_logs: pytest.LogCaptureFixture, endpoint: Endpoint
) -> None:
    httpserver.expect_oneshot_request(endpoint.path).respond_with_data(f"busy {KEY}", status=503)
    httpserver.expect_request(endpoint.path).respond_with_json(endpoint.ok)

    texts = run(endpoint, make_client(httpserver, retries=2))

    if endpoint.name == "extract":  # paid: not sent again after an answer (see test_api_errors)
        assert len(httpserver.log) == 1 and texts
        assert_clean(texts + log_texts(debug_logs))
        return
    assert texts == []
    assert len(httpserver.log) == 2
    assert any("retry" in r.getMessage() for r in our_records(debug_logs))
    assert_clean(log_texts(debug_logs))


# -- construction ---------------------------------------------------------------------------


def test_repr_shows_the_url_not_the_key(httpserver: HTTPServer) -> None:
    client = make_client(httpserver)
    assert repr(client) == f"ProviderClient(base_url={base_url(httpserver)!r})"
    assert_clean([repr(client), str(client), format(client)])


def test_a_rejected_key_is_not_echoed() -> None:
    bad = "KEYs3cr3t XYZ1234567890"
    with pytest.raises(ConfigError) as info:
        ProviderClient(bad, base_url="https://api.example.com/openapi")
    assert_clean(exception_texts(info.value), bad)
    assert "KEYs3cr3t" not in str(info.value)


def test_key_from_the_environment_is_not_echoed(
    httpserver: HTTPServer, debug_logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROXYPOOL_APP_KEY", KEY)
    monkeypatch.setenv("PROXYPOOL_API_URL", base_url(httpserver))
    httpserver.expect_request(ENDPOINTS[0].path).respond_with_json(envelope(code=3, msg=KEY))
    client = ProviderClient()

    with pytest.raises(ProxyPoolError) as info:
        client.list_accounts()

    assert_clean(exception_texts(info.value) + log_texts(debug_logs) + [repr(client)])


def test_the_scan_would_catch_a_leak(debug_logs: pytest.LogCaptureFixture) -> None:
    # Guard against a scan that cannot fail: a record and an error carrying the key are caught.
    logging.getLogger("proxypool.test").debug("oops %s", KEY)
    with pytest.raises(AssertionError):
        assert_clean(log_texts(debug_logs))
    try:
        try:
            raise ValueError(quote_plus(ODD_KEY))
        except ValueError as inner:
            raise ProviderError("outer") from inner
    except ProviderError as exc:
        with pytest.raises(AssertionError):
            assert_clean(exception_texts(exc), ODD_KEY)
