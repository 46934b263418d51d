"""ProviderClient's error paths against a fake provider: every bad answer maps to the right
``proxypool.errors`` type, GET retries (5xx, network) with injected sleeps, POST never retries,
and no other exception type escapes a client method."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _provider import (
    ENDPOINTS,
    GET_ENDPOINTS,
    KEY,
    POST_ENDPOINTS,
    PREFIX,
    SEED_ACCOUNTS,
    SEED_EXTRACT,
    SEED_PRODUCTS,
    SEED_USAGE,
    Endpoint,
    SleepRecorder,
    closed_port,
    envelope,
    make_client,
    seed,
)
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from proxypool import (
    AccountError,
    ApiConnectionError,
    ApiError,
    ApiResponseError,
    InvalidAppKey,
    ProviderClient,
    ProviderError,
    RealNameRequired,
)

ACCOUNTS_PATH = "/openapi/whitelist-account/list"
ADD_PATH = "/openapi/whitelist-account/add"


def respond(
    server: HTTPServer,
    path: str,
    body: str | bytes,
    status: int = 200,
    content_type: str = "application/json",
    **headers: str,
) -> None:
    server.expect_request(path).respond_with_response(
        Response(body, status=status, content_type=content_type, headers=headers)
    )


# -- answers that are not a usable envelope -----------------------------------------------------

BAD_ANSWERS = [
    pytest.param(
        "<!doctype html><html><body>Welcome to nginx!</body></html>", 200, "text/html", id="html"
    ),
    pytest.param("", 200, "application/json", id="empty"),
    pytest.param("   \r\n ", 200, "application/json", id="blank"),
    pytest.param("OK", 200, "text/plain", id="not-json"),
    pytest.param(
        '{"code": 200, "msg": "ok", "data": {"list": [',
        200,
        "application/json",
        id="truncated-json",
    ),
    pytest.param('[{"code": 200}]', 200, "application/json", id="list-not-object"),
    pytest.param('"success"', 200, "application/json", id="json-string"),
    pytest.param("null", 200, "application/json", id="json-null"),
    pytest.param('{"msg": "ok", "data": {"list": []}}', 200, "application/json", id="no-code"),
    pytest.param("{}", 200, "application/json", id="empty-object"),
    pytest.param(
        '{"code": "ok", "msg": "x", "data": null}', 200, "application/json", id="code-not-a-number"
    ),
    pytest.param('{"code": null, "data": null}', 200, "application/json", id="code-null"),
    pytest.param('{"code": true, "data": null}', 200, "application/json", id="code-bool"),
    pytest.param('{"code": 200.5, "data": null}', 200, "application/json", id="code-float"),
    pytest.param('{"code": [200], "data": null}', 200, "application/json", id="code-list"),
    pytest.param(b"\xff\xfe\x00garbage", 200, "application/octet-stream", id="binary"),
]


@pytest.mark.parametrize(("body", "status", "content_type"), BAD_ANSWERS)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_unusable_answers_raise_api_response_error(
    httpserver: HTTPServer, endpoint: Endpoint, body: str, status: int, content_type: str
) -> None:
    respond(httpserver, endpoint.path, body, status, content_type)
    sleep = SleepRecorder()

    with pytest.raises(ApiResponseError) as info:
        endpoint.call(make_client(httpserver, sleep=sleep))

    assert info.value.http_status == 200
    assert len(httpserver.log) == 1 and sleep.calls == []  # a 200 is not retried


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("endpoint", [ENDPOINTS[0], ENDPOINTS[1]], ids=str)
def test_redirects_are_errors_and_not_followed(
    httpserver: HTTPServer, endpoint: Endpoint, status: int
) -> None:
    httpserver.expect_request(endpoint.path).respond_with_response(
        Response("", status=status, headers={"Location": "/login"})
    )
    httpserver.expect_request("/login").respond_with_json(endpoint.ok)

    with pytest.raises(ApiResponseError) as info:
        endpoint.call(make_client(httpserver))

    assert info.value.http_status == status
    assert "/login" in str(info.value) and "redirect" in str(info.value)
    assert [r.path for r, _ in httpserver.log] == [endpoint.path]


def test_html_error_page_text_is_shortened_and_flattened(httpserver: HTTPServer) -> None:
    page = "<html>\n<body>\n" + "<p>busy</p>\n" * 500 + "</body></html>"
    respond(httpserver, ACCOUNTS_PATH, page, 200, "text/html")

    with pytest.raises(ApiResponseError) as info:
        make_client(httpserver).list_accounts()

    text = str(info.value)
    assert "<html> <body> <p>busy</p>" in text
    assert "\n" not in text and len(text) < 400


# -- HTTP errors and provider error codes -------------------------------------------------------


@pytest.mark.parametrize("endpoint", [ENDPOINTS[0], ENDPOINTS[1]], ids=str)
def test_http_500_without_envelope(httpserver: HTTPServer, endpoint: Endpoint) -> None:
    respond(httpserver, endpoint.path, "<h1>Internal Server Error</h1>", 500, "text/html")

    with pytest.raises(ApiError) as info:
        endpoint.call(make_client(httpserver, retries=0))

    assert (info.value.code, info.value.http_status) == (None, 500)
    assert "Internal Server Error" in info.value.message
    assert not isinstance(info.value, AccountError)


@pytest.mark.parametrize("endpoint", [ENDPOINTS[0], ENDPOINTS[1]], ids=str)
def test_http_500_with_envelope(httpserver: HTTPServer, endpoint: Endpoint) -> None:
    respond(httpserver, endpoint.path, json.dumps(envelope(code=500, msg="server busy")), 500)

    with pytest.raises(ApiError) as info:
        endpoint.call(make_client(httpserver, retries=0))

    assert (info.value.code, info.value.http_status) == (500, 500)
    assert "server busy" in info.value.message


@pytest.mark.parametrize("status", [400, 403, 404, 429])
def test_http_4xx_without_envelope(httpserver: HTTPServer, status: int) -> None:
    respond(httpserver, ACCOUNTS_PATH, "nope", status, "text/plain")

    with pytest.raises(ApiError) as info:
        make_client(httpserver).list_accounts()

    assert (info.value.code, info.value.http_status) == (None, status)


def test_success_code_with_http_error_status_is_an_error(httpserver: HTTPServer) -> None:
    respond(httpserver, ACCOUNTS_PATH, json.dumps(SEED_ACCOUNTS), 403)

    with pytest.raises(ApiError) as info:
        make_client(httpserver).list_accounts()

    assert info.value.http_status == 403


@pytest.mark.parametrize("status", [200, 401])
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_code_3_is_invalid_app_key(httpserver: HTTPServer, endpoint: Endpoint, status: int) -> None:
    respond(
        httpserver, endpoint.path, json.dumps(envelope(code=3, msg="session has expired")), status
    )

    with pytest.raises(InvalidAppKey) as info:
        endpoint.call(make_client(httpserver))

    assert (info.value.code, info.value.http_status) == (3, status)
    assert "session has expired" in info.value.message
    assert "PROXYPOOL_APP_KEY" in str(info.value)
    assert len(httpserver.log) == 1


@pytest.mark.parametrize("endpoint", [ENDPOINTS[0], ENDPOINTS[1], ENDPOINTS[11]], ids=str)
def test_code_156_is_real_name_required(httpserver: HTTPServer, endpoint: Endpoint) -> None:
    respond(httpserver, endpoint.path, json.dumps({"code": 156, "message": "实名认证"}))

    with pytest.raises(RealNameRequired) as info:
        endpoint.call(make_client(httpserver))

    assert (info.value.code, info.value.http_status) == (156, 200)
    assert "实名认证" in info.value.message


def test_account_errors_without_message_still_explain(httpserver: HTTPServer) -> None:
    respond(httpserver, ACCOUNTS_PATH, json.dumps({"code": 3}))
    with pytest.raises(InvalidAppKey, match="invalid or has expired"):
        make_client(httpserver).list_accounts()

    httpserver.clear()
    respond(httpserver, ACCOUNTS_PATH, json.dumps({"code": "156"}))
    with pytest.raises(RealNameRequired, match="real-name"):
        make_client(httpserver).list_accounts()


@pytest.mark.parametrize(
    ("payload", "code", "text"),
    [
        ({"code": 10001, "msg": "参数错误", "data": None}, 10001, "参数错误"),
        ({"code": 400, "message": "bad cc"}, 400, "bad cc"),
        ({"code": "42", "msg": "", "message": "from message"}, 42, "from message"),
        ({"code": -1, "msg": None}, -1, "no message"),
        ({"code": 1, "msg": {"detail": "odd"}}, 1, "odd"),
    ],
)
@pytest.mark.parametrize("endpoint", [ENDPOINTS[0], ENDPOINTS[1]], ids=str)
def test_other_codes_are_api_errors(
    httpserver: HTTPServer, endpoint: Endpoint, payload: dict[str, Any], code: int, text: str
) -> None:
    respond(httpserver, endpoint.path, json.dumps(payload))

    with pytest.raises(ApiError) as info:
        endpoint.call(make_client(httpserver))

    assert type(info.value) is ApiError
    assert (info.value.code, info.value.http_status) == (code, 200)
    assert text in info.value.message
    assert len(httpserver.log) == 1  # not retried


def test_long_messages_are_shortened(httpserver: HTTPServer) -> None:
    respond(httpserver, ACCOUNTS_PATH, json.dumps(envelope(code=7, msg="x" * 5000)))

    with pytest.raises(ApiError) as info:
        make_client(httpserver).list_accounts()

    assert len(str(info.value)) < 400


# -- JSON of the wrong shape inside a success envelope ----------------------------------------


def _accounts_with(**fields: Any) -> dict[str, Any]:
    payload = seed(SEED_ACCOUNTS)
    payload["data"]["list"][0].update(fields)
    return payload


WRONG_SHAPES = [
    pytest.param("list_accounts", envelope({"list": "user01"}), id="accounts-list-is-text"),
    pytest.param("list_accounts", envelope({"list": {"a": 1}}), id="accounts-list-is-object"),
    pytest.param("list_accounts", envelope("nope"), id="accounts-data-is-text"),
    pytest.param("list_accounts", envelope(5), id="accounts-data-is-number"),
    pytest.param("list_accounts", envelope({"list": [["user01"]]}), id="account-is-list"),
    pytest.param("list_accounts", envelope({"list": [None]}), id="account-is-null"),
    pytest.param("list_accounts", _accounts_with(usage_flow="lots"), id="usage-flow-text"),
    pytest.param("list_accounts", _accounts_with(usage_flow=True), id="usage-flow-bool"),
    pytest.param("list_accounts", _accounts_with(limit_flow=1.5), id="limit-flow-fraction"),
    pytest.param("list_accounts", _accounts_with(limit_flow=[1]), id="limit-flow-list"),
    pytest.param("list_accounts", _accounts_with(product_type="nine"), id="product-type-text"),
    pytest.param("list_accounts", _accounts_with(status={"on": 1}), id="status-object"),
    pytest.param("list_accounts", _accounts_with(created_at="string"), id="created-at-text"),
    pytest.param("list_accounts", _accounts_with(created_at=[2022]), id="created-at-list"),
    pytest.param("list_accounts", _accounts_with(created_at=1e300), id="created-at-huge"),
    pytest.param("list_accounts", _accounts_with(username=["a"]), id="username-list"),
    pytest.param("list_accounts", _accounts_with(id="x1"), id="id-text"),
    pytest.param("list_accounts", _accounts_with(id="--5"), id="id-double-minus"),
    pytest.param("list_accounts", _accounts_with(id="²"), id="id-superscript-digit"),
    pytest.param("list_accounts", _accounts_with(id="9" * 5000), id="id-too-many-digits"),
    pytest.param(
        "daily_usage", envelope({"list": [{"day": "yesterday", "flow": 1}]}), id="usage-day-text"
    ),
    pytest.param(
        "daily_usage", envelope({"list": [{"day": None, "flow": 1}]}), id="usage-day-null"
    ),
    pytest.param(
        "daily_usage",
        envelope({"list": [{"day": "2022-08-01", "flow": "1KB"}]}),
        id="usage-flow-unit",
    ),
    pytest.param("list_products", envelope([]), id="products-data-is-list"),
    pytest.param(
        "list_products", envelope({"list": [], "total_page": "many"}), id="products-total-page-text"
    ),
    pytest.param("list_products", envelope({"list": [{"order": "paid"}]}), id="order-is-text"),
    pytest.param(
        "list_products", envelope({"list": [{"order": {"pay_at": "soon"}}]}), id="order-pay-at-text"
    ),
    pytest.param("extract", envelope({"list": ["1.2.3.4"]}), id="extract-no-port"),
    pytest.param("extract", envelope({"list": ["1.2.3.4:0"]}), id="extract-port-zero"),
    pytest.param("extract", envelope({"list": ["1.2.3.4:65536"]}), id="extract-port-big"),
    pytest.param("extract", envelope({"list": ["1.2.3.4:http"]}), id="extract-port-text"),
    pytest.param("extract", envelope({"list": [":8080"]}), id="extract-no-host"),
    pytest.param("extract", envelope({"list": ["1.2 .3.4:80"]}), id="extract-space-in-host"),
    pytest.param("extract", envelope({"list": [1234]}), id="extract-number"),
    # Hosts that would smuggle userinfo, a path, a query or a control character into a URL.
    pytest.param("extract", envelope({"list": ["evil@1.2.3.4:80"]}), id="extract-userinfo"),
    pytest.param("extract", envelope({"list": ["1.2.3.4/x:3128"]}), id="extract-path-in-host"),
    pytest.param("extract", envelope({"list": ["h?#:80"]}), id="extract-query-in-host"),
    pytest.param("extract", envelope({"list": ["a\x00b:80"]}), id="extract-nul-in-host"),
    pytest.param(
        "extract", envelope({"list": [{"ip": "a\nb", "port": 80}]}), id="extract-newline-in-host"
    ),
    pytest.param("extract", envelope({"list": [None]}), id="extract-null"),
    pytest.param("extract", envelope({"list": [{"ip": "1.2.3.4"}]}), id="extract-object-no-port"),
    pytest.param(
        "extract",
        envelope({"list": [{"ip": "1.2.3.4", "port": "²"}]}),
        id="extract-port-superscript",
    ),
    pytest.param(
        "extract",
        envelope({"list": [[[[[[[[[[[[[[[[[[["1.2.3.4:1"]]]]]]]]]]]]]]]]]]]}),
        id="extract-nested-too-deep",
    ),
    pytest.param(
        "list_city_catalog",
        envelope({"list": [{"name_en": "Nowhere"}]}),
        id="catalog-country-without-code",
    ),
    pytest.param(
        "list_city_catalog",
        envelope({"list": [{"country_code": "US", "items": 5}]}),
        id="catalog-items-number",
    ),
    pytest.param(
        "list_city_catalog",
        envelope({"list": [{"country_code": "US", "items": {"state": "CA"}}]}),
        id="catalog-items-object",
    ),
    pytest.param(
        "list_city_catalog",
        envelope({"list": [{"country_code": "US", "items": ["CA"]}]}),
        id="catalog-item-text",
    ),
    pytest.param("search_states", envelope({"list": [1, 2]}), id="states-numbers"),
    pytest.param("search_cities", envelope({"list": [{"name": "x"}]}), id="cities-wrong-key"),
    pytest.param("list_static_ips", envelope({"list": [{"port": "x"}]}), id="static-port-text"),
    pytest.param("list_static_ips", envelope({"list": [7]}), id="static-item-number"),
    pytest.param("list_static_ips", envelope({"list": [], "page": "one"}), id="static-page-text"),
]


@pytest.mark.parametrize(("name", "payload"), WRONG_SHAPES)
def test_wrong_shapes_raise_api_response_error(
    httpserver: HTTPServer, name: str, payload: dict[str, Any]
) -> None:
    endpoint = next(e for e in ENDPOINTS if e.name == name)
    respond(httpserver, endpoint.path, json.dumps(payload))

    with pytest.raises(ApiResponseError) as info:
        endpoint.call(make_client(httpserver))

    assert endpoint.path.rsplit("/", 1)[-1] in str(info.value), "the error says which call"


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("²", id="superscript"),
        pytest.param("--3", id="double-minus"),
        pytest.param("9" * 5000, id="too-many-digits"),
        pytest.param("", id="empty"),
    ],
)
def test_unreadable_code_strings(httpserver: HTTPServer, code: str) -> None:
    respond(httpserver, ACCOUNTS_PATH, json.dumps({"code": code, "msg": "x"}))

    with pytest.raises(ApiResponseError, match="not a number"):
        make_client(httpserver).list_accounts()


def test_deeply_nested_json_body(httpserver: HTTPServer) -> None:
    respond(httpserver, ACCOUNTS_PATH, "[" * 100_000 + "]" * 100_000)

    with pytest.raises(ApiResponseError):
        make_client(httpserver).list_accounts()


# -- network failures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_server() -> Iterator[HTTPServer]:
    """A threaded provider for the timeout tests: a sleeping handler must not hold up the
    shared (single-threaded) httpserver."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


def sleepy(seconds: float) -> Any:
    def handler(request: Request) -> Response:
        time.sleep(seconds)
        return Response(json.dumps(SEED_EXTRACT), content_type="application/json")

    return handler


@pytest.mark.parametrize("endpoint", [ENDPOINTS[0], ENDPOINTS[1]], ids=str)
def test_connection_refused(endpoint: Endpoint) -> None:
    port = closed_port()
    client = ProviderClient(
        KEY, base_url=f"http://127.0.0.1:{port}/openapi", retries=0, sleep=SleepRecorder()
    )

    with pytest.raises(ApiConnectionError) as info:
        endpoint.call(client)

    # Said like a person, not urllib3's "HTTPConnectionPool(...): Max retries exceeded ...".
    assert str(info.value) == (
        f"{endpoint.method} {endpoint.path.removeprefix(PREFIX + '/')}: "
        f"could not connect to 127.0.0.1:{port} (connection refused)"
    )


@pytest.mark.parametrize("endpoint", [ENDPOINTS[0], ENDPOINTS[1]], ids=str)
def test_timeout(slow_server: HTTPServer, endpoint: Endpoint) -> None:
    slow_server.clear()
    slow_server.expect_request(endpoint.path).respond_with_handler(sleepy(0.5))
    client = make_client(slow_server, timeout=0.1, retries=0)

    with pytest.raises(ApiConnectionError, match=r"did not answer within 0\.1 s"):
        endpoint.call(client)


def test_a_timeout_is_not_retried_past_the_deadline(slow_server: HTTPServer) -> None:
    """``timeout`` bounds the whole call, retries included: an attempt that timed out used it
    all, so no retry follows (tests/test_api_bounds.py checks the bound itself)."""
    slow_server.clear()
    slow_server.expect_request(ACCOUNTS_PATH).respond_with_handler(sleepy(0.4))
    sleep = SleepRecorder()
    client = make_client(slow_server, timeout=0.1, retries=2, backoff=0.25, sleep=sleep)

    with pytest.raises(ApiConnectionError, match=r"did not answer within 0\.1 s"):
        client.list_accounts()

    assert sleep.calls == []


# -- retries ------------------------------------------------------------------------------------


FREE_GET_ENDPOINTS = tuple(e for e in GET_ENDPOINTS if e.name != "extract")
EXTRACT = next(e for e in GET_ENDPOINTS if e.name == "extract")


@pytest.mark.parametrize("endpoint", FREE_GET_ENDPOINTS, ids=str)
def test_get_retries_5xx_then_succeeds(httpserver: HTTPServer, endpoint: Endpoint) -> None:
    httpserver.expect_oneshot_request(endpoint.path).respond_with_data("bad gateway", status=502)
    httpserver.expect_oneshot_request(endpoint.path).respond_with_json(
        envelope(code=500, msg="busy"), status=503
    )
    httpserver.expect_request(endpoint.path).respond_with_json(endpoint.ok)
    sleep = SleepRecorder()

    endpoint.call(make_client(httpserver, sleep=sleep, retries=2, backoff=0.5))

    assert len(httpserver.log) == 3
    assert sleep.calls == [0.5, 1.0]
    first, second, third = (r for r, _ in httpserver.log)
    assert first.url == second.url == third.url  # the same request, repeated


def test_get_gives_up_after_the_retries(httpserver: HTTPServer) -> None:
    httpserver.expect_request(ACCOUNTS_PATH).respond_with_data("down", status=500)
    sleep = SleepRecorder()

    with pytest.raises(ApiError) as info:
        make_client(httpserver, sleep=sleep, retries=3, backoff=0.1).list_accounts()

    assert info.value.http_status == 500
    assert len(httpserver.log) == 4
    assert sleep.calls == pytest.approx([0.1, 0.2, 0.4])


@pytest.mark.parametrize(
    "call",
    [lambda c: c.daily_usage(), lambda c: c.extract("US", num=5)],
    ids=["daily_usage", "extract"],
)
def test_get_retries_connection_errors(call: Callable[[ProviderClient], object]) -> None:
    """Refused: the request never reached the provider, so even an extraction (which costs
    money) is tried again."""
    sleep = SleepRecorder()
    client = ProviderClient(
        KEY,
        base_url=f"http://127.0.0.1:{closed_port()}/openapi",
        retries=2,
        backoff=1.0,
        sleep=sleep,
    )

    with pytest.raises(ApiConnectionError) as info:
        call(client)

    assert info.value.sent is False
    assert sleep.calls == [1.0, 2.0]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_an_extraction_answered_with_5xx_is_not_paid_for_again(
    httpserver: HTTPServer, status: int
) -> None:
    # The provider may have billed the IPs of an answer that failed: the pool, with its
    # backoff and its budget, decides whether to buy again, not a quick retry in the client.
    httpserver.expect_oneshot_request(EXTRACT.path).respond_with_data("busy", status=status)
    httpserver.expect_request(EXTRACT.path).respond_with_json(EXTRACT.ok)
    sleep = SleepRecorder()

    with pytest.raises(ApiError) as info:
        EXTRACT.call(make_client(httpserver, sleep=sleep, retries=3, backoff=0.1))

    assert info.value.http_status == status
    assert len(httpserver.log) == 1 and sleep.calls == []


class HangUpServer:
    """A loopback server that reads each request, then closes the connection without an answer:
    the request reached it, the answer was lost. Counts the requests it read."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.requests = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if data:
                    self.requests += 1

    def close(self) -> None:
        self._sock.close()


def test_an_extraction_whose_answer_was_lost_is_not_sent_again() -> None:
    server = HangUpServer()
    sleep = SleepRecorder()
    client = ProviderClient(
        KEY,
        base_url=f"http://127.0.0.1:{server.port}/openapi",
        retries=3,
        backoff=0.01,
        sleep=sleep,
    )
    try:
        with pytest.raises(ApiConnectionError) as info:
            client.extract("US", num=5)
        assert info.value.sent is True
        assert server.requests == 1 and sleep.calls == []
        # A free call meeting the same failure is retried as before.
        with pytest.raises(ApiConnectionError):
            client.list_accounts()
        assert server.requests == 1 + 4 and len(sleep.calls) == 3
    finally:
        server.close()


def test_retries_zero_means_one_attempt(httpserver: HTTPServer) -> None:
    httpserver.expect_request(ACCOUNTS_PATH).respond_with_data("down", status=503)
    sleep = SleepRecorder()

    with pytest.raises(ApiError):
        make_client(httpserver, sleep=sleep, retries=0).list_accounts()

    assert len(httpserver.log) == 1 and sleep.calls == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param("nope", 404, id="http-404"),
        pytest.param(json.dumps(envelope(code=10001, msg="bad")), 200, id="error-code"),
        pytest.param(json.dumps(envelope(code=3, msg="expired")), 401, id="invalid-key"),
        pytest.param(json.dumps(envelope(code=3, msg="expired")), 500, id="invalid-key-500"),
        pytest.param(json.dumps(envelope(code=156, msg="verify")), 503, id="real-name-503"),
        pytest.param("<html></html>", 200, id="html"),
        pytest.param("", 302, id="redirect"),
    ],
)
def test_get_does_not_retry_what_cannot_change(
    httpserver: HTTPServer, body: str, status: int
) -> None:
    respond(httpserver, ACCOUNTS_PATH, body, status, Location="/x")
    sleep = SleepRecorder()

    with pytest.raises(ProviderError):
        make_client(httpserver, sleep=sleep, retries=3).list_accounts()

    assert len(httpserver.log) == 1 and sleep.calls == []


@pytest.mark.parametrize("endpoint", POST_ENDPOINTS, ids=str)
def test_post_is_never_retried_on_5xx(httpserver: HTTPServer, endpoint: Endpoint) -> None:
    httpserver.expect_oneshot_request(endpoint.path).respond_with_data("oops", status=500)
    httpserver.expect_request(endpoint.path).respond_with_json(endpoint.ok)
    sleep = SleepRecorder()

    with pytest.raises(ApiError) as info:
        endpoint.call(make_client(httpserver, sleep=sleep, retries=5))

    assert info.value.http_status == 500
    assert len(httpserver.log) == 1 and sleep.calls == []


def test_post_is_never_retried_on_connection_errors() -> None:
    sleep = SleepRecorder()
    client = ProviderClient(
        KEY, base_url=f"http://127.0.0.1:{closed_port()}/openapi", retries=5, sleep=sleep
    )

    with pytest.raises(ApiConnectionError):
        client.add_accounts({"u1": "p1"})

    assert sleep.calls == []


def test_post_is_never_retried_on_timeouts(slow_server: HTTPServer) -> None:
    slow_server.clear()
    slow_server.expect_request(ADD_PATH).respond_with_handler(sleepy(0.3))
    sleep = SleepRecorder()
    client = make_client(slow_server, timeout=0.1, retries=5, sleep=sleep)

    with pytest.raises(ApiConnectionError):
        client.add_accounts({"u1": "p1"})

    assert sleep.calls == []


# -- no other exception type escapes: tests/test_fuzz.py fuzzes every method ------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_every_method_maps_errors(httpserver: HTTPServer, endpoint: Endpoint) -> None:
    # One sweep with a mix of failures; each must be a ProviderError of the documented kind.
    for body, status, expected in [
        ("<html/>", 200, ApiResponseError),
        (json.dumps({"code": 3}), 401, InvalidAppKey),
        (json.dumps({"code": 156}), 200, RealNameRequired),
        (json.dumps({"code": 99}), 200, ApiError),
    ]:
        httpserver.clear()
        respond(httpserver, endpoint.path, body, status)
        with pytest.raises(expected):
            endpoint.call(make_client(httpserver, retries=0))


def test_successful_payloads_still_parse(httpserver: HTTPServer) -> None:
    # Guard for the fuzz test above: the same client and fixtures do succeed on good answers.
    for endpoint, payload in [
        (ENDPOINTS[0], SEED_ACCOUNTS),
        (ENDPOINTS[8], SEED_USAGE),
        (ENDPOINTS[9], SEED_PRODUCTS),
        (ENDPOINTS[11], SEED_EXTRACT),
    ]:
        httpserver.clear()
        respond(httpserver, endpoint.path, json.dumps(payload))
        assert endpoint.call(make_client(httpserver))


@pytest.mark.parametrize(
    ("body", "what"), [(b"", "an empty body"), (b"<html>busy</html>", "no JSON envelope")]
)
def test_an_unusable_answer_names_the_call_once(
    httpserver: HTTPServer, body: bytes, what: str
) -> None:
    httpserver.expect_request("/openapi/ip/v3").respond_with_data(body)
    client = make_client(httpserver, retries=0)

    with pytest.raises(ApiResponseError) as info:
        client.extract(num=1)

    assert str(info.value).startswith(f"GET ip/v3: {what} (HTTP 200)"), str(info.value)
