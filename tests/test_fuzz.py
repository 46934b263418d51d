"""Fuzzing the provider's answers: whatever comes back (any JSON, any status, any content type,
raw bytes), every ``ProviderClient`` method raises only ``ProxyPoolError`` subclasses (never a
``KeyError``, ``TypeError`` or ``ValueError`` from parsing), and a ``ProxyPool`` fed by such a
client never crashes: ``get()`` raises only ``PoolExhausted`` or a ``ProviderError``, its stats
stay consistent, and it recovers once the provider answers properly again.

One real HTTP server (pytest-httpserver) answers every path with a mutable reply, so each
hypothesis example costs one or two loopback round trips.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from _helpers import FakeClock
from _provider import ENDPOINTS, KEY, SEED_PRODUCTS, STATIC_IPS, make_client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from proxypool.api import ProviderClient
from proxypool.errors import (
    AccountError,
    ApiResponseError,
    ConfigError,
    InvalidGeo,
    PoolExhausted,
    ProviderError,
    ProxyPoolError,
)
from proxypool.geo import Geo
from proxypool.models import (
    Account,
    CountryLocations,
    DailyUsage,
    Product,
    ProductPage,
    Proxy,
    StaticIpPage,
)
from proxypool.policy import Backoff
from proxypool.pool import ProxyPool

PREFIX = "/openapi"

# -- the server ---------------------------------------------------------------------------------


@dataclass
class Reply:
    """What the server answers next, to any request (one per example, set by the test)."""

    body: bytes = b""
    status: int = 200
    content_type: str = "application/json"
    location: str | None = None
    # When set, the answer depends on the path (suffix -> JSON): a provider behaving again.
    by_path: dict[str, Any] | None = None
    seen: list[str] = field(default_factory=list)

    def __call__(self, request: Request) -> Response:
        self.seen.append(request.path)
        if self.by_path is not None:
            for suffix, payload in self.by_path.items():
                if request.path.endswith(suffix):
                    return Response(json.dumps(payload), 200, content_type="application/json")
            return Response("not found", 404)
        headers = {"Location": self.location} if self.location is not None else {}
        response = Response(self.body, self.status, headers=headers)
        # Set after construction: werkzeug would append "; charset=utf-8" to text types.
        response.headers["Content-Type"] = self.content_type
        return response

    def set(self, body: bytes, status: int, content_type: str, location: str | None) -> None:
        self.body, self.status, self.content_type, self.location = (
            body,
            status,
            content_type,
            location,
        )
        self.by_path = None
        self.seen.clear()


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[tuple[HTTPServer, Reply]]:
    """A module-wide server whose one handler answers every method and path with ``Reply``
    (module scope: hypothesis runs many examples per test, and they share it)."""
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    reply = Reply()
    server.expect_request(re.compile(".*")).respond_with_handler(reply)
    yield server, reply
    server.clear()
    if server.is_running():
        server.stop()


# -- what the provider may send -----------------------------------------------------------------

# Any JSON value, NaN and Infinity included (Python's json reads them), plus very large numbers.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

# Values that look like what the API's fields hold, and near misses.
field_values = st.one_of(
    json_scalars,
    st.sampled_from(
        [
            "2022-05-13 12:14:15",
            "2022-02-30 00:00:00",
            "0000-00-00 00:00:00",
            "2022-05-13T12:14:15+08:00",
            "9999-99-99",
            "²",
            "١٢",
            "1e5",
            " 42 ",
            "-0",
            "NaN",
            "--1",
            "9" * 30,
            "us",
            "evil@1.2.3.4:80",
            "1.2.3.4/x:80",
            1e308,
            -1,
            2**63,
            9,
            11,
            14,
            25,
        ]
    ),
)
addresses = st.one_of(
    st.builds(
        lambda host, port: f"{host}:{port}",
        st.one_of(st.ip_addresses().map(str), st.text(max_size=10)),
        st.integers(min_value=-5, max_value=70000),
    ),
    st.sampled_from(["1.2.3.4", ":80", "1.2.3.4:", "[::1]:8080", "::1", "a b:80", "h:８０"]),
    st.fixed_dictionaries({}, optional={"ip": field_values, "host": field_values}).flatmap(
        lambda d: st.fixed_dictionaries(
            {**{k: st.just(v) for k, v in d.items()}, "port": field_values}
        )
    ),
)
known_keys = st.sampled_from(
    [
        "id",
        "username",
        "password",
        "created_at",
        "remark",
        "product_type",
        "usage_flow",
        "limit_flow",
        "status",
        "day",
        "flow",
        "expired_at",
        "trade_no",
        "order",
        "ip",
        "host",
        "port",
        "country_code",
        "name_en",
        "name_zh_cn",
        "continent_code",
        "items",
        "state",
        "city",
        "list",
        "page",
        "page_size",
        "total_count",
        "total_page",
        "total",
    ]
)
items = st.recursive(
    st.one_of(field_values, addresses),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(known_keys, children, max_size=8)
    ),
    max_leaves=10,
)
datas = st.one_of(
    json_values,
    st.lists(items, max_size=4),
    st.fixed_dictionaries(
        {"list": st.one_of(st.lists(items, max_size=4), field_values)},
        optional={
            "page": field_values,
            "page_size": field_values,
            "total_count": field_values,
            "total_page": field_values,
            "total": field_values,
        },
    ),
)
codes = st.one_of(
    st.sampled_from([0, 200, "200", " 0 ", 3, 156, 400, 500, "3", "²", True]), json_values
)
envelopes = st.fixed_dictionaries(
    {"code": codes, "data": datas},
    optional={"msg": json_values, "message": json_values},
)


@st.composite
def mutated(draw: st.DrawFn, value: Any) -> Any:
    """``value`` (a valid answer) with some parts replaced, dropped, added or repeated: answers
    that get past the envelope and reach the parsers of each field."""
    if draw(st.integers(0, 9)) == 0:
        return draw(field_values)
    if isinstance(value, dict):
        out = {k: draw(mutated(v)) for k, v in value.items() if draw(st.integers(0, 9))}
        if draw(st.integers(0, 5)) == 0:
            out[draw(known_keys)] = draw(items)
        return out
    if isinstance(value, list):
        out_list = [draw(mutated(v)) for v in value]
        if draw(st.integers(0, 5)) == 0:
            out_list.append(draw(items))
        if draw(st.integers(0, 9)) == 0:
            return [out_list]  # one level deeper
        return out_list
    return value


def answers_for(payload: Any) -> st.SearchStrategy[bytes]:
    """Mostly mutations of ``payload`` (a success envelope), sometimes anything at all."""
    return st.integers(0, 3).flatmap(
        lambda i: mutated(payload).map(lambda v: json.dumps(v).encode()) if i else bodies
    )


def deep(n: int) -> bytes:
    """JSON nested ``n`` levels deep (Python's parser gives up at about 1000)."""
    return b'{"code": 200, "data": {"list": ' + b"[" * n + b"]" * n + b"}}"


bodies = st.one_of(
    envelopes.map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    envelopes.map(lambda v: json.dumps(v).encode()).flatmap(
        lambda whole: st.integers(0, len(whole)).map(lambda cut: whole[:cut])  # truncated
    ),
    envelopes.map(lambda v: json.dumps(v).encode("utf-16")),  # not UTF-8
    st.integers(min_value=10, max_value=3000).map(deep),
    st.just(b"<!doctype html><html><body>502 Bad Gateway</body></html>"),
)
statuses = st.integers(0, 3).flatmap(
    lambda i: (
        st.just(200)
        if i
        else st.one_of(
            st.sampled_from([201, 204, 301, 302, 307, 400, 401, 403, 404, 429, 500, 502]),
            st.integers(min_value=200, max_value=599),
        )
    )
)
content_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=latin-1",
            "text/html; charset=utf-8",
            "text/plain",
            "application/octet-stream",
            "",
        ]
    ),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
)
locations = st.one_of(
    st.none(),
    st.sampled_from(["/login", "https://elsewhere.example/", f"/login?app_key={KEY}", ""]),
)


# -- every client method ------------------------------------------------------------------------

PUBLIC_METHODS = {
    name
    for name, member in inspect.getmembers(ProviderClient, inspect.isfunction)
    if not name.startswith("_") and name != "close"
}
# What a successful call of each method returns (checked on the values that do come back).
RESULT_CHECKS: dict[str, Callable[[Any], bool]] = {
    "list_accounts": lambda r: all(isinstance(a, Account) for a in r),
    "daily_usage": lambda r: all(isinstance(u, DailyUsage) for u in r),
    "list_products": lambda r: isinstance(r, ProductPage),
    "iter_products": lambda r: all(isinstance(p, Product) for p in r),
    "extract": lambda r: all(
        isinstance(p, Proxy) and 0 < p.port < 65536 and p.host and p.geo == Geo("US", "California")
        for p in r
    ),
    "list_city_catalog": lambda r: all(isinstance(c, CountryLocations) for c in r),
    "list_state_catalog": lambda r: all(isinstance(c, CountryLocations) for c in r),
    "search_states": lambda r: all(isinstance(s, str) for s in r),
    "search_cities": lambda r: all(isinstance(s, str) for s in r),
    "list_static_ips": lambda r: isinstance(r, StaticIpPage),
}
WRITES = {e.name for e in ENDPOINTS if e.method == "POST"}
# Richer valid answers than the seed's one-item examples, to mutate from.
SEEDS: dict[str, Any] = {
    "extract": {
        "code": 200,
        "msg": "success",
        "data": {"list": [["1.2.3.4:8000", "5.6.7.8:8001"], {"ip": "9.9.9.9", "port": 80}]},
    },
    "iter_products": {
        "code": 200,
        "data": {
            "list": [dict(p, id=i) for i, p in enumerate(SEED_PRODUCTS["data"]["list"] * 2)],
            "page": 1,
            "page_size": 2,
            "total_count": 5,
            "total_page": 3,
        },
    },
    "list_static_ips": STATIC_IPS,
    "search_states": {"code": 200, "data": {"list": ["California", {"state": "Texas"}]}},
}


def test_every_public_client_method_is_fuzzed() -> None:
    # A method added later must join the fuzz (through tests/_provider.py's table).
    assert {e.name for e in ENDPOINTS} == PUBLIC_METHODS
    assert set(RESULT_CHECKS) | WRITES == PUBLIC_METHODS


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    data=st.data(),
    status=statuses,
    content_type=content_types,
    location=locations,
)
def test_client_methods_raise_only_proxypool_errors(
    fuzz_server: tuple[HTTPServer, Reply],
    endpoint: Any,
    data: st.DataObject,
    status: int,
    content_type: str,
    location: str | None,
) -> None:
    server, reply = fuzz_server
    body = data.draw(answers_for(SEEDS.get(endpoint.name, endpoint.ok)), label="body")
    reply.set(body, status, content_type, location)
    client = make_client(server, retries=1)
    try:
        result = endpoint.call(client)
    except ProxyPoolError as exc:
        # Arguments are valid, so it is the provider's answer that failed: a ProviderError.
        assert isinstance(exc, ProviderError), repr(exc)
        assert KEY not in str(exc) and KEY not in repr(exc)
        # GETs retry a 5xx once; writes are never retried; iter_products walks pages.
        assert reply.seen, "raised without asking the provider"
        if endpoint.name != "iter_products":
            assert len(reply.seen) <= (1 if endpoint.name in WRITES else 2)
    else:
        assert status < 300, f"HTTP {status} taken for a success"
        if endpoint.name not in WRITES:
            assert RESULT_CHECKS[endpoint.name](result), result
    finally:
        client.close()


# -- a pool fed by a fuzzed client --------------------------------------------------------------

GOOD = {
    "/ip/v3": {"code": 200, "msg": "ok", "data": {"list": [["10.0.0.1:8000", "10.0.0.2:8000"]]}},
    "/ip/dynamic-states": {
        "code": 200,
        "data": {"list": [{"country_code": "US", "name_en": "US", "items": [{"state": "CA"}]}]},
    },
    "/ip/dynamic-citys": {
        "code": 200,
        "data": {"list": [{"country_code": "US", "items": [{"state": "CA", "city": "LA"}]}]},
    },
}


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    answers=st.lists(
        st.tuples(
            st.integers(0, 2).flatmap(
                lambda i: answers_for(GOOD["/ip/v3"] if i else GOOD["/ip/dynamic-states"])
            ),
            statuses,
            content_types,
            locations,
        ),
        min_size=1,
        max_size=4,
    ),
    geo=st.sampled_from([None, "US", "US/CA/LA"]),
    min_size=st.integers(min_value=0, max_value=3),
)
def test_a_pool_on_a_fuzzed_provider_never_crashes(
    fuzz_server: tuple[HTTPServer, Reply],
    answers: list[tuple[bytes, int, str, str | None]],
    geo: str | None,
    min_size: int,
) -> None:
    server, reply = fuzz_server
    clock = FakeClock()
    client = make_client(server, retries=0)
    pool = ProxyPool(
        client,
        geo=geo,
        batch=4,
        min_size=min_size,
        clock=clock,
        api_backoff=Backoff(base=1.0, cap=8.0, jitter=0.0),
        refill_runner=lambda job: job(),  # top-ups inline: the counts below stay exact
    )
    served = 0
    extraction_requests = 0
    fatal: AccountError | None = None
    try:
        for body, status, content_type, location in answers:
            reply.set(body, status, content_type, location)
            for _ in range(2):
                try:
                    proxy = pool.get(timeout=0, domain="example.com")
                except AccountError as exc:
                    fatal = fatal or exc
                except InvalidGeo:
                    # The fuzzed location lists may well lack the pool's geography.
                    assert geo is not None
                except ConfigError as exc:  # any other ConfigError is a bug: input was valid
                    raise AssertionError(f"ConfigError from a provider answer: {exc!r}") from exc
                except (PoolExhausted, ProviderError) as exc:
                    assert KEY not in str(exc)
                else:
                    served += 1
                    assert isinstance(proxy, Proxy)
                    pool.report_failure(proxy)
                    pool.report_success(proxy)
                    pool.report_failure(proxy, domain="example.com", banned=True)
                clock.now += 9.0  # past any backoff of this test's pool
                extraction_requests += sum(path.endswith("/ip/v3") for path in reply.seen)
                reply.seen.clear()
            stats = pool.stats()
            assert stats["served"] == served
            alive = sum(stats["live"].values()) + sum(stats["cooling"].values())
            gone = stats["duplicates"] + stats["expired"] + stats["evictions"]
            assert 0 <= alive <= stats["extracted"] - gone
            if geo is None:  # no location lists involved: every API error is an extraction's
                assert stats["refills"] + stats["api_errors"] == extraction_requests

        # The provider behaves again: after the backoff (and the location lists' cache) has
        # run out, the same pool serves, unless the provider refused the account for good.
        reply.by_path = GOOD
        clock.now += 7 * 3600
        if fatal is not None:
            with pytest.raises(AccountError):
                pool.get(timeout=0)
        else:
            proxy = pool.get(timeout=0)
            assert proxy.port == 8000 and proxy.host.startswith("10.0.0.")
    finally:
        pool.close()
        client.close()


def test_deep_nesting_and_non_finite_numbers_are_api_errors(
    fuzz_server: tuple[HTTPServer, Reply],
) -> None:
    # Guards for the strategies above: shapes that once broke parsers elsewhere.
    server, reply = fuzz_server
    client = make_client(server, retries=0)
    cases: list[tuple[bytes, Callable[[ProviderClient], Any]]] = [
        (deep(100_000), lambda c: c.extract()),
        (deep(40), lambda c: c.extract()),
        (
            b'{"code": 200, "data": {"list": [{"day": "2022-01-01", "flow": NaN}]}}',
            lambda c: c.daily_usage(),
        ),
        (b'{"code": 200, "data": {"list": [{"id": Infinity}]}}', lambda c: c.list_accounts()),
        (b'{"code": 200, "data": {"list": [{"created_at": 1e300}]}}', lambda c: c.list_accounts()),
        (b'{"code": 200, "data": {"list": ["1.2.3.4:1e3"]}}', lambda c: c.extract()),
        (
            b'{"code": 200, "data": {"total_count": 1e400, "page_size": 0}}',
            lambda c: c.list_products(),
        ),
    ]
    for body, call in cases:
        reply.set(body, 200, "application/json", None)
        with pytest.raises(ProviderError):
            call(client)
    client.close()


@pytest.mark.parametrize(
    "glitch",
    [b'{"code": 0, "data": null}', b'{"code": 200, "data": {"list": []}}', b'{"code": 200}'],
    ids=["null", "empty-list", "no-data"],
)
def test_an_empty_location_list_is_a_glitch_not_a_catalog(
    fuzz_server: tuple[HTTPServer, Reply], glitch: bytes
) -> None:
    # Found by the fuzz above: one empty answer to the location list was cached for the
    # catalog's whole ttl (6 h), making every geography "unknown" (InvalidGeo) meanwhile.
    server, reply = fuzz_server
    client = make_client(server, retries=0)
    clock = FakeClock()
    pool = ProxyPool(client, geo="US/CA", clock=clock)
    reply.set(glitch, 200, "application/json", None)
    with pytest.raises(PoolExhausted) as info:
        pool.get(timeout=0)
    assert isinstance(info.value.__cause__, ApiResponseError)
    assert "location list" in str(info.value)

    reply.by_path = GOOD
    clock.now += 1.0  # past the catalog's retry delay, the next lookup asks again
    assert pool.get(timeout=10).port == 8000  # (waits for the extraction in the refill thread)
    assert [path for path in reply.seen if path.endswith("/ip/dynamic-states")] == [
        "/openapi/ip/dynamic-states"
    ] * 2
    pool.close()
    client.close()
