"""Bad input at every public Python entry point: ``Geo``, ``LocationCatalog``, ``ProxyPool``,
``ProviderClient``, ``ProxyPoolAdapter`` and ``wrap_session``.

Wrong types, empty strings, negative numbers, NaN and infinity, huge integers, unicode look-alikes,
control characters, overlong values and ``None`` where it is not allowed must each raise a
``ConfigError`` (also a ``ValueError``) that names the field, in a message of bounded length, and
before anything is sent: every test here runs against a real (loopback) provider and checks that
it received nothing. Nothing is left half-done either: a rejected ``wrap_session`` mounts nothing.

Complements tests/test_api_validation.py (the client's documented ranges and formats),
tests/test_pool.py and tests/test_adapters.py (their constructors' main cases) and
tests/test_geo.py: the cases here are the ones those leave out.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from _provider import KEY, SEED_EXTRACT, envelope, make_client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from proxypool.adapters import ProxyPoolAdapter, wrap_session
from proxypool.api import ProviderClient
from proxypool.errors import ConfigError, InvalidGeo
from proxypool.geo import Geo, LocationCatalog
from proxypool.models import Proxy
from proxypool.pool import ProxyPool

NAN, INF = math.nan, math.inf
HUGE = 10**5000  # more digits than Python will print
LONG = "x" * 100_000
MAX_MESSAGE = 400  # an error message stays readable whatever the value


def assert_config_error(info: pytest.ExceptionInfo[ConfigError], field: str) -> None:
    error = info.value
    assert isinstance(error, ValueError)
    assert error.field == field, (error.field, str(error))
    assert field in str(error), str(error)
    assert len(str(error)) <= MAX_MESSAGE, len(str(error))


# -- a real provider that must hear nothing -----------------------------------------------------

STATES = {
    "list": [
        {
            "country_code": "US",
            "name_en": "United States",
            "items": [{"state": "California", "country_code": "US"}],
        }
    ]
}
CITIES = {
    "list": [
        {
            "country_code": "US",
            "name_en": "United States",
            "items": [{"state": "California", "city": "LosAngeles", "country_code": "US"}],
        }
    ]
}


def answer(request: Request) -> Response:
    if request.path.endswith("/ip/dynamic-states"):
        payload = envelope(STATES)
    elif request.path.endswith("/ip/dynamic-citys"):
        payload = envelope(CITIES)
    elif request.path.endswith("/ip/v3"):
        payload = SEED_EXTRACT
    else:
        payload = envelope(None)
    return Response(json.dumps(payload), content_type="application/json")


@pytest.fixture(scope="module")
def provider_server() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    server.expect_request(re.compile(".*")).respond_with_handler(answer)
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def provider(provider_server: HTTPServer) -> Iterator[HTTPServer]:
    """The module's provider with an empty request log; the test asserts it stays empty."""
    provider_server.clear_log()
    yield provider_server


# -- Geo ----------------------------------------------------------------------------------------

BAD_GEOS: list[Any] = [
    # (value given to Geo.coerce / a geo= parameter, field)
    pytest.param(NAN, "geo", id="nan"),
    pytest.param(INF, "geo", id="inf"),
    pytest.param(-1, "geo", id="negative"),
    pytest.param(b"US", "geo", id="bytes"),
    pytest.param(["US"], "geo", id="list"),
    pytest.param(("US", "California"), "geo", id="tuple"),
    pytest.param(True, "geo", id="bool"),
    pytest.param("ＵＳ", "country", id="fullwidth-letters"),
    pytest.param("ÜS", "country", id="accented"),
    pytest.param("U\u0301S", "country", id="combining-accent"),
    pytest.param("US\x00", "country", id="nul"),
    pytest.param("U", "country", id="one-letter"),
    pytest.param("U1", "country", id="digit"),
    pytest.param(LONG, "country", id="overlong-country"),
    pytest.param("*/*", "country", id="star-country"),
    pytest.param("/", "geo", id="slash"),
    pytest.param("US/", "geo", id="trailing-slash"),
    pytest.param("US/ /LA", "geo", id="blank-state"),
    pytest.param("US/Cal\u200bifornia", "state", id="zero-width-space"),
    pytest.param("US/Cali\u202efornia", "state", id="rtl-override"),
    pytest.param("US/Cal\tifornia", "state", id="tab"),
    pytest.param("US/" + "a" * 65, "state", id="state-65-chars"),
    pytest.param("US/" + LONG, "state", id="overlong-state"),
    pytest.param("US/-California", "state", id="leading-dash"),
    pytest.param("US/California/Los;Angeles", "city", id="semicolon-city"),
    pytest.param("US/California/" + "€" * 10, "city", id="symbol-city"),
    pytest.param({"country": 5}, "country", id="dict-country-int"),
    pytest.param({"country": "US", "state": NAN}, "state", id="dict-state-nan"),
    pytest.param({"country": "US", "city": ["LA"]}, "city", id="dict-city-list"),
    pytest.param({"country": None, "city": "LA"}, "country", id="dict-city-without-country"),
    pytest.param({None: "US"}, "geo", id="dict-none-key"),
    pytest.param({"COUNTRY": "US"}, "geo", id="dict-upper-key"),
]


@pytest.mark.parametrize(("value", "field"), BAD_GEOS)
def test_geo_coerce_rejects(value: Any, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Geo.coerce(value)
    assert_config_error(info, field)


@pytest.mark.parametrize("value", [None, 5, NAN, b"US/CA", ["US"], Geo("US")])
def test_geo_parse_wants_a_string(value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        Geo.parse(value)
    assert_config_error(info, "geo")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((5,), "country"),
        ((NAN,), "country"),
        (("US", 5), "state"),
        (("US", b"CA"), "state"),
        (("US", "CA", 3.5), "city"),
        (("", "California"), "country"),
        ((None, None, "LosAngeles"), "country"),
        (("US", "Cal/ifornia"), "state"),
        (("US", "California", "Los/Angeles"), "city"),
        (("US", "a" * 65), "state"),
    ],
)
def test_geo_constructor_rejects(args: tuple[Any, ...], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Geo(*args)
    assert_config_error(info, field)


@given(st.text(max_size=80))
def test_geo_parse_of_any_text_is_a_geo_or_a_config_error(text: str) -> None:
    try:
        geo = Geo.parse(text)
    except ConfigError as exc:
        assert exc.field in ("geo", "country", "state", "city")
        assert len(str(exc)) <= MAX_MESSAGE
    else:
        assert Geo.parse(str(geo)) == geo


@given(
    st.one_of(st.none(), st.text(max_size=10), st.integers(), st.floats(), st.binary(max_size=4)),
    st.one_of(st.none(), st.text(max_size=10), st.integers(), st.floats()),
    st.one_of(st.none(), st.text(max_size=10), st.integers(), st.floats()),
)
def test_geo_of_any_parts_is_a_geo_or_a_config_error(country: Any, state: Any, city: Any) -> None:
    try:
        Geo(country, state, city)
    except ConfigError as exc:
        assert exc.field in ("country", "state", "city")


# -- LocationCatalog ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ttl": NAN}, "ttl"),
        ({"ttl": None}, "ttl"),
        ({"ttl": HUGE}, "ttl"),
        ({"ttl": -0.0}, "ttl"),
        ({"timer": None}, "timer"),
        ({"timer": 5.0}, "timer"),
    ],
)
def test_catalog_constructor_rejects(
    provider: HTTPServer, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        LocationCatalog(make_client(provider), **kwargs)
    assert_config_error(info, field)
    assert provider.log == []


@pytest.mark.parametrize("client", [None, object(), "https://api.example.com"])
def test_catalog_needs_a_client_with_location_lists(client: Any) -> None:
    with pytest.raises(ConfigError) as info:
        LocationCatalog(client)
    assert_config_error(info, "client")


CATALOG_CALLS: list[Any] = [
    pytest.param(lambda c: c.validate(5), "geo", id="validate-int"),
    pytest.param(lambda c: c.validate("USA/California"), "country", id="validate-usa"),
    pytest.param(lambda c: c.validate({"state": "California"}), "country", id="validate-no-cc"),
    pytest.param(lambda c: c.states(""), "country", id="states-empty"),
    pytest.param(lambda c: c.states(None), "country", id="states-none"),
    pytest.param(lambda c: c.states(5), "country", id="states-int"),
    pytest.param(lambda c: c.states("ＵＳ"), "country", id="states-fullwidth"),
    pytest.param(lambda c: c.cities(""), "country", id="cities-empty"),
    pytest.param(lambda c: c.cities("US", 5), "state", id="cities-state-int"),
    pytest.param(lambda c: c.cities("US", "Cal/ifornia"), "state", id="cities-state-slash"),
    pytest.param(lambda c: c.cities("US", LONG), "state", id="cities-state-overlong"),
    pytest.param(lambda c: c.cities(None, "California"), "country", id="cities-no-country"),
]


@pytest.mark.parametrize(("call", "field"), CATALOG_CALLS)
def test_catalog_lookups_reject_before_fetching(
    provider: HTTPServer, call: Callable[[LocationCatalog], Any], field: str
) -> None:
    catalog = LocationCatalog(make_client(provider))
    with pytest.raises(ConfigError) as info:
        call(catalog)
    assert not isinstance(info.value, InvalidGeo)  # malformed, not unknown
    assert_config_error(info, field)
    assert provider.log == []


def test_catalog_guard_good_lookups_do_fetch(provider: HTTPServer) -> None:
    # Guard for the tests above: the same catalog and server do answer well-formed lookups.
    catalog = LocationCatalog(make_client(provider))
    assert catalog.states("us") == ("California",)
    assert catalog.cities("US", "california") == ("LosAngeles",)
    assert len(provider.log) == 2


# -- ProxyPool ----------------------------------------------------------------------------------

POOL_ARGS: list[Any] = [
    pytest.param({"life": NAN}, "life", id="life-nan"),
    pytest.param({"life": INF}, "life", id="life-inf"),
    pytest.param({"life": None}, "life", id="life-none"),
    pytest.param({"life": HUGE}, "life", id="life-huge"),
    pytest.param({"life": 1.0}, "life", id="life-float"),
    pytest.param({"batch": -1}, "batch", id="batch-negative"),
    pytest.param({"batch": HUGE}, "batch", id="batch-huge"),
    pytest.param({"batch": "20"}, "batch", id="batch-text"),
    pytest.param({"min_size": None}, "min_size", id="min-size-none"),
    pytest.param({"min_size": 2.5}, "min_size", id="min-size-float"),
    pytest.param({"min_size": False}, "min_size", id="min-size-bool"),
    pytest.param({"max_failures": -3}, "max_failures", id="max-failures-negative"),
    pytest.param({"max_failures": NAN}, "max_failures", id="max-failures-nan"),
    pytest.param({"expiry_margin": INF}, "expiry_margin", id="margin-inf"),
    pytest.param({"expiry_margin": HUGE}, "expiry_margin", id="margin-huge"),
    pytest.param({"expiry_margin": None}, "expiry_margin", id="margin-none"),
    pytest.param({"expiry_margin": "15"}, "expiry_margin", id="margin-text"),
    pytest.param({"max_extracted": -1}, "max_extracted", id="budget-negative"),
    pytest.param({"max_extracted": 10.0}, "max_extracted", id="budget-float"),
    pytest.param({"strategy": ""}, "strategy", id="strategy-empty"),
    pytest.param({"strategy": "ｒｏｕｎｄ_ｒｏｂｉｎ"}, "strategy", id="strategy-fullwidth"),
    pytest.param({"strategy": "round_robin\x00"}, "strategy", id="strategy-nul"),
    pytest.param({"strategy": None}, "strategy", id="strategy-none"),
    pytest.param({"strategy": LONG}, "strategy", id="strategy-overlong"),
    pytest.param({"geo": LONG}, "country", id="geo-overlong"),
    pytest.param({"geo": "US/Cal\u200bifornia"}, "state", id="geo-zero-width"),
    pytest.param({"geo": NAN}, "geo", id="geo-nan"),
    pytest.param({"clock": "monotonic"}, "clock", id="clock-text"),
    pytest.param({"api_backoff": 1.0}, "api_backoff", id="api-backoff-number"),
    pytest.param({"catalog": "US"}, "catalog", id="catalog-text"),
]


@pytest.mark.parametrize(("kwargs", "field"), POOL_ARGS)
def test_pool_constructor_rejects(provider: HTTPServer, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ProxyPool(make_client(provider), **kwargs)
    assert_config_error(info, field)
    assert provider.log == []


@pytest.mark.parametrize("client", [None, "client", object(), requests.Session()])
def test_pool_needs_a_proxy_source(client: Any) -> None:
    with pytest.raises(ConfigError) as info:
        ProxyPool(client)
    assert_config_error(info, "client")


TIMEOUTS: list[Any] = [
    pytest.param(NAN, id="timeout-nan"),
    pytest.param(INF, id="timeout-inf"),
    pytest.param(-0.5, id="timeout-negative"),
    pytest.param(HUGE, id="timeout-huge"),
    pytest.param(None, id="timeout-none"),
    pytest.param("5", id="timeout-text"),
]
GET_ARGS: list[Any] = [
    pytest.param({"domain": ""}, "domain", id="domain-empty"),
    pytest.param({"domain": "  "}, "domain", id="domain-blank"),
    pytest.param({"domain": 5}, "domain", id="domain-int"),
    pytest.param({"domain": b"example.com"}, "domain", id="domain-bytes"),
    pytest.param({"domain": "a" * 254}, "domain", id="domain-overlong"),
    pytest.param({"session": ["key"]}, "session", id="session-list"),
    pytest.param({"session": {"k": 1}}, "session", id="session-dict"),
    pytest.param({"session": {1, 2}}, "session", id="session-set"),
    pytest.param({"geo": 5}, "geo", id="geo-int"),
    pytest.param({"geo": "USA"}, "country", id="geo-usa"),
    pytest.param({"geo": "US/California/Los Angeles/Downtown"}, "geo", id="geo-four-parts"),
    pytest.param({"geo": "ＵＳ"}, "country", id="geo-fullwidth"),
]


@pytest.mark.parametrize("timeout", TIMEOUTS)
def test_pool_get_rejects_a_bad_timeout_before_extracting(
    provider: HTTPServer, timeout: Any
) -> None:
    pool = ProxyPool(make_client(provider))
    with pytest.raises(ConfigError) as info:
        pool.get(timeout=timeout)
    assert_config_error(info, "timeout")
    assert provider.log == []


@pytest.mark.parametrize(("kwargs", "field"), GET_ARGS)
@pytest.mark.parametrize("method", ["get", "try_get"])
def test_pool_get_rejects_before_extracting(
    provider: HTTPServer, method: str, kwargs: dict[str, Any], field: str
) -> None:
    pool = ProxyPool(make_client(provider))
    with pytest.raises(ConfigError) as info:
        getattr(pool, method)(**kwargs)
    assert_config_error(info, field)
    assert provider.log == []
    assert pool.stats()["served"] == pool.stats()["refills"] == 0


POOL_CALLS: list[Any] = [
    pytest.param(lambda p: p.refill(5), "geo", id="refill-geo-int"),
    pytest.param(lambda p: p.refill("USA"), "country", id="refill-geo-usa"),
    pytest.param(lambda p: p.refill(wait="yes"), "wait", id="refill-wait-text"),
    pytest.param(lambda p: p.refill(wait=None), "wait", id="refill-wait-none"),
    pytest.param(lambda p: p.needs_refill(5), "geo", id="needs-refill-geo-int"),
    pytest.param(lambda p: p.needs_refill("U.S."), "country", id="needs-refill-geo-dots"),
    pytest.param(lambda p: p.resolve_geo(NAN), "geo", id="resolve-geo-nan"),
    pytest.param(lambda p: p.report_success(None), "proxy", id="success-none"),
    pytest.param(lambda p: p.report_success("1.2.3.4:80"), "proxy", id="success-text"),
    pytest.param(lambda p: p.report_failure(None), "proxy", id="failure-none"),
    pytest.param(lambda p: p.report_failure(("1.2.3.4", 80)), "proxy", id="failure-tuple"),
    pytest.param(
        lambda p: p.report_failure(Proxy("1.2.3.4", 80), domain=""), "domain", id="failure-domain"
    ),
    pytest.param(
        lambda p: p.report_failure(Proxy("1.2.3.4", 80), banned=True), "domain", id="ban-no-domain"
    ),
    pytest.param(lambda p: p.add_listener(None), "callback", id="listener-none"),
]


@pytest.mark.parametrize(("call", "field"), POOL_CALLS)
def test_pool_calls_reject_before_extracting(
    provider: HTTPServer, call: Callable[[ProxyPool], Any], field: str
) -> None:
    pool = ProxyPool(make_client(provider))
    with pytest.raises(ConfigError) as info:
        call(pool)
    assert_config_error(info, field)
    assert provider.log == []


def test_pool_guard_good_arguments_do_extract(provider: HTTPServer) -> None:
    # Guard for the tests above: the same pool and server hand out proxies for good arguments.
    pool = ProxyPool(make_client(provider))
    proxy = pool.get("us/california", session=("user", 1), domain="bücher.example", timeout=5)
    assert proxy.port in range(1140, 1150)
    pool.report_success(proxy)
    assert pool.try_get("us/california", session="s", domain="example.com") is not None
    assert [r.path for r, _ in provider.log] == [
        "/openapi/ip/dynamic-states",
        "/openapi/ip/v3",
    ]


# -- ProviderClient -----------------------------------------------------------------------------

CLIENT_ARGS: list[Any] = [
    pytest.param({"app_key": "k" * 257}, "app_key", id="key-overlong"),
    pytest.param({"app_key": "key\u200b"}, "app_key", id="key-zero-width"),
    pytest.param({"app_key": "key\nX-Header: 1"}, "app_key", id="key-newline"),
    pytest.param({"app_key": b"key"}, "app_key", id="key-bytes"),
    pytest.param({"app_key": ["key"]}, "app_key", id="key-list"),
    pytest.param({"base_url": "http://[::1/openapi"}, "base_url", id="url-broken-ipv6"),
    pytest.param({"base_url": "http://api.example.com:99999/x"}, "base_url", id="url-port-big"),
    pytest.param({"base_url": "http://api.example.com:0/x"}, "base_url", id="url-port-0"),
    pytest.param({"base_url": "http://api.example.com:http/x"}, "base_url", id="url-port-text"),
    pytest.param({"base_url": "http://" + "a" * 64 + ".com/x"}, "base_url", id="url-label-64"),
    pytest.param({"base_url": "http://api.example.com/" + LONG}, "base_url", id="url-overlong"),
    pytest.param({"base_url": "http://api example.com/x"}, "base_url", id="url-space"),
    pytest.param({"base_url": "https://"}, "base_url", id="url-no-host"),
    pytest.param({"base_url": ["https://api.example.com"]}, "base_url", id="url-list"),
    pytest.param({"static_base_url": "http://[::1"}, "static_base_url", id="static-url-broken"),
    pytest.param({"timeout": INF}, "timeout", id="timeout-inf"),
    pytest.param({"timeout": 1e300}, "timeout", id="timeout-1e300"),
    pytest.param({"timeout": HUGE}, "timeout", id="timeout-huge"),
    pytest.param({"timeout": None}, "timeout", id="timeout-none"),
    pytest.param({"backoff": INF}, "backoff", id="backoff-inf"),
    pytest.param({"backoff": NAN}, "backoff", id="backoff-nan"),
    pytest.param({"retries": HUGE}, "retries", id="retries-huge"),
    pytest.param({"retries": NAN}, "retries", id="retries-nan"),
    pytest.param({"sleep": 0.5}, "sleep", id="sleep-number"),
    pytest.param({"session": "session"}, "session", id="session-text"),
    pytest.param({"session": 5}, "session", id="session-int"),
    pytest.param({"language": ""}, "language", id="language-empty"),
    pytest.param({"language": 5}, "language", id="language-int"),
    pytest.param({"language": "en\r\nX-Injected: 1"}, "language", id="language-crlf"),
    pytest.param({"language": "中文"}, "language", id="language-cjk"),
    pytest.param({"language": LONG}, "language", id="language-overlong"),
]


@pytest.mark.parametrize(("kwargs", "field"), CLIENT_ARGS)
def test_client_constructor_rejects(
    provider: HTTPServer, monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any], field: str
) -> None:
    monkeypatch.delenv("PROXYPOOL_APP_KEY", raising=False)
    monkeypatch.delenv("PROXYPOOL_API_URL", raising=False)
    arguments: dict[str, Any] = {
        "app_key": KEY,
        "base_url": provider.url_for("/openapi").rstrip("/"),
        **kwargs,
    }
    with pytest.raises(ConfigError) as info:
        ProviderClient(**arguments)
    assert_config_error(info, field)
    assert KEY not in str(info.value)
    assert provider.log == []


def test_a_bad_key_from_the_environment_is_not_echoed(
    provider: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "Secret123 with a space"
    monkeypatch.setenv("PROXYPOOL_APP_KEY", secret)
    with pytest.raises(ConfigError) as info:
        ProviderClient(base_url=provider.url_for("/openapi"))
    assert_config_error(info, "app_key")
    assert "Secret123" not in str(info.value)


CLIENT_CALLS: list[Any] = [
    pytest.param(lambda c: c.extract(num=HUGE), "num", id="extract-num-huge"),
    pytest.param(lambda c: c.extract(num=INF), "num", id="extract-num-inf"),
    pytest.param(lambda c: c.extract(num=-1), "num", id="extract-num-negative"),
    pytest.param(lambda c: c.extract(life=NAN), "life", id="extract-life-nan"),
    pytest.param(lambda c: c.extract(life=True), "life", id="extract-life-bool"),
    pytest.param(lambda c: c.extract(ep=5), "ep", id="extract-ep-int"),
    pytest.param(lambda c: c.extract(ep="ü"), "ep", id="extract-ep-umlaut"),
    pytest.param(lambda c: c.extract(ep="u" * 9), "ep", id="extract-ep-long"),
    pytest.param(lambda c: c.extract(LONG), "country", id="extract-geo-overlong"),
    pytest.param(lambda c: c.extract(NAN), "geo", id="extract-geo-nan"),
    pytest.param(lambda c: c.change_limit("u1", HUGE), "limit_gb", id="limit-huge"),
    pytest.param(lambda c: c.change_limit("u1", INF), "limit_gb", id="limit-inf"),
    pytest.param(lambda c: c.change_limit("u1", NAN), "limit_gb", id="limit-nan"),
    pytest.param(lambda c: c.change_limit("u1", None), "limit_gb", id="limit-none"),
    pytest.param(lambda c: c.change_limit(None, 1), "username", id="limit-user-none"),
    pytest.param(lambda c: c.change_password("u1", None), "password", id="password-none"),
    pytest.param(lambda c: c.change_password("ｕ1", "p1"), "username", id="user-fullwidth"),
    pytest.param(lambda c: c.change_password("u1", "p" * 65), "password", id="password-65"),
    pytest.param(lambda c: c.change_remark("u1", None), "remark", id="remark-none"),
    pytest.param(lambda c: c.change_remark("u1", "a\u202eb"), "remark", id="remark-rtl"),
    pytest.param(lambda c: c.change_remark("u1", LONG), "remark", id="remark-overlong"),
    pytest.param(lambda c: c.add_accounts({5: "p1"}), "username", id="add-int-user"),
    pytest.param(lambda c: c.add_accounts({"u1": None}), "password", id="add-none-pass"),
    pytest.param(lambda c: c.add_accounts(None), "credentials", id="add-none"),
    pytest.param(lambda c: c.add_accounts({"u1": "p1"}, remark=5), "remark", id="add-remark-int"),
    pytest.param(
        lambda c: c.add_accounts({"u1": "p1"}, product_type=None), "product_type", id="add-pt-none"
    ),
    pytest.param(
        lambda c: c.add_accounts({"u1": "p1"}, product_type=9.0), "product_type", id="add-pt-float"
    ),
    pytest.param(lambda c: c.delete_accounts(None), "usernames", id="delete-none"),
    pytest.param(lambda c: c.delete_accounts([None]), "usernames", id="delete-none-in-list"),
    pytest.param(lambda c: c.disable_accounts(b"ab"), "usernames", id="disable-bytes"),
    pytest.param(lambda c: c.enable_accounts([LONG]), "usernames", id="enable-overlong"),
    pytest.param(lambda c: c.daily_usage(start=NAN), "start", id="usage-start-nan"),
    pytest.param(lambda c: c.daily_usage(end=""), "end", id="usage-end-empty"),
    pytest.param(lambda c: c.daily_usage(username=5), "username", id="usage-user-int"),
    pytest.param(lambda c: c.daily_usage(product_type=NAN), "product_type", id="usage-pt-nan"),
    pytest.param(lambda c: c.list_products(page=HUGE), "page", id="products-page-huge"),
    pytest.param(lambda c: c.list_products(page=10**7), "page", id="products-page-1e7"),
    pytest.param(lambda c: c.list_products(size=INF), "size", id="products-size-inf"),
    pytest.param(lambda c: c.list_products(trade_no=LONG), "trade_no", id="products-trade-long"),
    pytest.param(lambda c: c.iter_products(size=None), "size", id="iter-size-none"),
    pytest.param(lambda c: c.search_states("ＵＳ"), "country_code", id="states-fullwidth"),
    pytest.param(lambda c: c.search_cities("US", None), "state", id="cities-state-none"),
    pytest.param(lambda c: c.search_cities("US", LONG), "state", id="cities-state-overlong"),
    pytest.param(lambda c: c.list_static_ips(page=10**30), "page", id="static-page-1e30"),
    pytest.param(lambda c: c.list_static_ips(size=-5), "size", id="static-size-negative"),
    pytest.param(lambda c: c.list_static_ips(country_code=NAN), "country_code", id="static-cc-nan"),
    pytest.param(lambda c: c.list_static_ips(status="1"), "status", id="static-status-text"),
    pytest.param(lambda c: c.list_static_ips(trade_no="T\x00"), "trade_no", id="static-trade-nul"),
]


@pytest.mark.parametrize(("call", "field"), CLIENT_CALLS)
def test_client_methods_reject_before_sending(
    provider: HTTPServer, call: Callable[[ProviderClient], Any], field: str
) -> None:
    client = make_client(provider)
    with pytest.raises(ConfigError) as info:
        call(client)
    assert_config_error(info, field)
    assert provider.log == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    geo=st.one_of(st.none(), st.text(max_size=12), st.integers(), st.floats()),
    num=st.one_of(st.integers(min_value=-10, max_value=600), st.floats(), st.text(max_size=3)),
    life=st.one_of(st.integers(min_value=-10, max_value=8000), st.none(), st.booleans()),
    ep=st.one_of(st.none(), st.text(max_size=10)),
)
def test_extract_sends_exactly_when_the_arguments_are_valid(
    provider_server: HTTPServer, geo: Any, num: Any, life: Any, ep: Any
) -> None:
    # A ConfigError and a request never both happen; valid arguments always reach the provider.
    provider_server.clear_log()
    client = make_client(provider_server)
    try:
        proxies = client.extract(geo, num=num, life=life, ep=ep)
    except ConfigError as exc:
        assert exc.field in ("geo", "country", "state", "city", "num", "life", "ep")
        assert provider_server.log == []
    else:
        assert len(proxies) == 10
        assert len(provider_server.log) == 1
    finally:
        client.close()


# -- ProxyPoolAdapter and wrap_session ----------------------------------------------------------

ADAPTER_ARGS: list[Any] = [
    pytest.param({"ban_statuses": 403}, "ban_statuses", id="statuses-int"),
    pytest.param({"ban_statuses": None}, "ban_statuses", id="statuses-none"),
    pytest.param({"ban_statuses": [HUGE]}, "ban_statuses", id="statuses-huge"),
    pytest.param({"ban_statuses": [403, NAN]}, "ban_statuses", id="statuses-nan"),
    pytest.param({"max_proxy_retries": HUGE}, "max_proxy_retries", id="retries-huge"),
    pytest.param({"max_proxy_retries": 101}, "max_proxy_retries", id="retries-101"),
    pytest.param({"max_proxy_retries": None}, "max_proxy_retries", id="retries-none"),
    pytest.param({"pool_timeout": NAN}, "pool_timeout", id="pool-timeout-nan"),
    pytest.param({"pool_timeout": HUGE}, "pool_timeout", id="pool-timeout-huge"),
    pytest.param({"pool_timeout": None}, "pool_timeout", id="pool-timeout-none"),
    pytest.param({"geo": "USA"}, "country", id="geo-usa"),
    pytest.param({"geo": LONG}, "country", id="geo-overlong"),
    pytest.param({"session_key": ["k"]}, "session_key", id="session-key-list"),
    pytest.param({"ban_policy": "403"}, "ban_policy", id="ban-policy-text"),
    pytest.param({"pool_maxsize": -1}, "pool_maxsize", id="maxsize-negative"),
    pytest.param({"pool_maxsize": 0}, "pool_maxsize", id="maxsize-zero"),
    pytest.param({"pool_connections": "10"}, "pool_connections", id="connections-text"),
    pytest.param({"pool_connections": HUGE}, "pool_connections", id="connections-huge"),
    pytest.param({"pool_block": "no"}, "pool_block", id="block-text"),
    pytest.param({"max_retries": -1}, "max_retries", id="urllib3-retries-negative"),
    pytest.param({"max_retries": NAN}, "max_retries", id="urllib3-retries-nan"),
    pytest.param({"proxies": {"http": "http://1.2.3.4:80"}}, "proxies", id="unknown-proxies"),
    pytest.param({"timeout": 5}, "timeout", id="unknown-timeout"),
]


@pytest.fixture
def pool(provider: HTTPServer) -> Iterator[ProxyPool]:
    made = ProxyPool(make_client(provider))
    yield made
    made.close()


@pytest.mark.parametrize(("kwargs", "field"), ADAPTER_ARGS)
def test_adapter_rejects(
    provider: HTTPServer, pool: ProxyPool, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as info:
        ProxyPoolAdapter(pool, **kwargs)
    assert_config_error(info, field)
    assert pool._listeners == ()  # registered with the pool only once fully built
    assert provider.log == []


@pytest.mark.parametrize(("kwargs", "field"), ADAPTER_ARGS)
def test_wrap_session_rejects_and_mounts_nothing(
    provider: HTTPServer, pool: ProxyPool, kwargs: dict[str, Any], field: str
) -> None:
    session = requests.Session()
    before = dict(session.adapters)
    with pytest.raises(ConfigError) as info:
        wrap_session(session, pool, **kwargs)
    assert_config_error(info, field)
    assert session.adapters == before
    assert all(type(a) is requests.adapters.HTTPAdapter for a in session.adapters.values())
    assert pool._listeners == ()
    assert provider.log == []
    session.close()


@pytest.mark.parametrize("session", [None, "session", requests, requests.adapters.HTTPAdapter()])
def test_wrap_session_needs_a_session(pool: ProxyPool, session: Any) -> None:
    with pytest.raises(ConfigError) as info:
        wrap_session(session, pool)
    assert_config_error(info, "session")
    assert pool._listeners == ()


@pytest.mark.parametrize("bad_pool", [None, "pool", object(), requests.Session()])
def test_wrap_session_needs_a_pool(bad_pool: Any) -> None:
    session = requests.Session()
    before = dict(session.adapters)
    with pytest.raises(ConfigError) as info:
        wrap_session(session, bad_pool)
    assert_config_error(info, "pool")
    assert session.adapters == before


def test_adapter_guard_good_arguments_are_accepted(pool: ProxyPool) -> None:
    # Guard for the tests above: boundary values and HTTPAdapter's own arguments are taken.
    session = wrap_session(
        requests.Session(),
        pool,
        geo="US/California",
        ban_statuses=[403, 429, 503],
        max_proxy_retries=100,
        pool_timeout=0,
        pool_maxsize=32,
        pool_connections=4,
        pool_block=True,
        max_retries=0,
        session_key=("tenant", 7),
    )
    adapter = session.get_adapter("https://example.com/")
    assert isinstance(adapter, ProxyPoolAdapter)
    assert adapter.max_proxy_retries == 100
    assert len(pool._listeners) == 1
    session.close()
    assert len(pool._listeners) == 0
