"""ProviderClient input checks: every bad argument raises ConfigError naming the field and what
is allowed, and nothing reaches the provider; boundary values are accepted and sent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from _provider import (
    KEY,
    SEED_EXTRACT,
    SEED_WRITE_OK,
    base_url,
    body_of,
    make_client,
    query_of,
)
from pytest_httpserver import HTTPServer

from proxypool import ConfigError, Geo, ProductType, ProviderClient, StaticIpStatus

Call = Callable[[ProviderClient], Any]

# (call, field, a word the message must contain: what is allowed)
BAD_CALLS: list[Any] = [
    # add_accounts
    pytest.param(lambda c: c.add_accounts({}), "credentials", "non-empty", id="add-no-accounts"),
    pytest.param(
        lambda c: c.add_accounts([("u1", "p1")]), "credentials", "mapping", id="add-not-a-mapping"
    ),
    pytest.param(lambda c: c.add_accounts({"": "p1"}), "username", "empty", id="add-empty-user"),
    pytest.param(
        lambda c: c.add_accounts({"us er": "p1"}), "username", "letters", id="add-space-in-user"
    ),
    pytest.param(
        lambda c: c.add_accounts({"user_1": "p1"}), "username", "letters", id="add-symbol-in-user"
    ),
    pytest.param(
        lambda c: c.add_accounts({"usér": "p1"}), "username", "letters", id="add-accent-in-user"
    ),
    pytest.param(lambda c: c.add_accounts({"u1": ""}), "password", "empty", id="add-empty-pass"),
    pytest.param(
        lambda c: c.add_accounts({"u1": "pa:ss"}), "password", "letters", id="add-colon-in-pass"
    ),
    pytest.param(
        lambda c: c.add_accounts({"u1": "pa,ss"}), "password", "letters", id="add-comma-in-pass"
    ),
    pytest.param(
        lambda c: c.add_accounts({"u1": "密码"}), "password", "letters", id="add-cjk-pass"
    ),
    pytest.param(lambda c: c.add_accounts({"u1": 123}), "password", "string", id="add-number-pass"),
    pytest.param(
        lambda c: c.add_accounts({"ok1": "p1", "bad one": "p2"}),
        "username",
        "letters",
        id="add-second-user-bad",
    ),
    pytest.param(
        lambda c: c.add_accounts({"u1": "p1"}, product_type=10),
        "product_type",
        "9",
        id="add-unknown-product-type",
    ),
    pytest.param(
        lambda c: c.add_accounts({"u1": "p1"}, product_type="9"),
        "product_type",
        "25",
        id="add-product-type-text",
    ),
    pytest.param(
        lambda c: c.add_accounts({"u1": "p1"}, product_type=True),
        "product_type",
        "DYNAMIC_RESIDENTIAL_TRAFFIC",
        id="add-product-type-bool",
    ),
    pytest.param(
        lambda c: c.add_accounts({"u1": "p1"}, remark="x" * 65),
        "remark",
        "64",
        id="add-remark-65-latin",
    ),
    pytest.param(
        lambda c: c.add_accounts({"u1": "p1"}, remark="备" * 33),
        "remark",
        "32 CJK",
        id="add-remark-33-cjk",
    ),
    pytest.param(
        lambda c: c.add_accounts({"u1": "p1"}, remark="a\nb"),
        "remark",
        "control",
        id="add-remark-newline",
    ),
    pytest.param(
        lambda c: c.add_accounts({"u1": "p1"}, remark=None),
        "remark",
        "string",
        id="add-remark-none",
    ),
    # delete / disable / enable
    *[
        pytest.param(call, "usernames", word, id=f"{verb}-{case}")
        for verb in ("delete", "disable", "enable")
        for case, call, word in [
            ("empty-list", lambda c, v=verb: getattr(c, f"{v}_accounts")([]), "at least one"),
            ("empty-name", lambda c, v=verb: getattr(c, f"{v}_accounts")(""), "empty"),
            ("empty-in-list", lambda c, v=verb: getattr(c, f"{v}_accounts")(["a1", ""]), "empty"),
            ("symbol", lambda c, v=verb: getattr(c, f"{v}_accounts")(["a1", "b-2"]), "letters"),
            ("comma", lambda c, v=verb: getattr(c, f"{v}_accounts")("a1,b2"), "letters"),
            ("number", lambda c, v=verb: getattr(c, f"{v}_accounts")(42), "list of names"),
            ("number-in-list", lambda c, v=verb: getattr(c, f"{v}_accounts")([42]), "string"),
        ]
    ],
    # change_password / change_remark / change_limit
    pytest.param(lambda c: c.change_password("", "p1"), "username", "empty", id="pw-empty-user"),
    pytest.param(
        lambda c: c.change_password("u 1", "p1"), "username", "letters", id="pw-space-user"
    ),
    pytest.param(lambda c: c.change_password("u1", ""), "password", "empty", id="pw-empty-pass"),
    pytest.param(
        lambda c: c.change_password("u1", "p w"), "password", "letters", id="pw-space-pass"
    ),
    pytest.param(lambda c: c.change_password("u1", "x" * 65), "password", "64", id="pw-too-long"),
    pytest.param(
        lambda c: c.change_remark("u-1", "x"), "username", "letters", id="remark-bad-user"
    ),
    pytest.param(
        lambda c: c.change_remark("u1", "x" * 65), "remark", "64 Latin", id="remark-65-latin"
    ),
    pytest.param(
        lambda c: c.change_remark("u1", "中" * 33), "remark", "32 CJK", id="remark-33-cjk"
    ),
    pytest.param(
        lambda c: c.change_remark("u1", "中" * 32 + "x"),
        "remark",
        "32 CJK",
        id="remark-32-cjk-plus-one",
    ),
    pytest.param(lambda c: c.change_remark("u1", "a\x00b"), "remark", "control", id="remark-nul"),
    pytest.param(lambda c: c.change_limit("", 1), "username", "empty", id="limit-empty-user"),
    pytest.param(
        lambda c: c.change_limit("u1", -1), "limit_gb", "between 0 and 102400", id="limit-negative"
    ),
    pytest.param(
        lambda c: c.change_limit("u1", 102401),
        "limit_gb",
        "between 0 and 102400",
        id="limit-too-big",
    ),
    pytest.param(lambda c: c.change_limit("u1", 1.5), "limit_gb", "whole number", id="limit-float"),
    pytest.param(lambda c: c.change_limit("u1", "10"), "limit_gb", "whole number", id="limit-text"),
    pytest.param(lambda c: c.change_limit("u1", True), "limit_gb", "whole number", id="limit-bool"),
    # daily_usage
    pytest.param(
        lambda c: c.daily_usage(start="2022/08/01 00:00:00"),
        "start",
        "YYYY-MM-DD HH:MM:SS",
        id="usage-start-slashes",
    ),
    pytest.param(
        lambda c: c.daily_usage(start="2022-08-01"),
        "start",
        "YYYY-MM-DD HH:MM:SS",
        id="usage-start-date-only",
    ),
    pytest.param(
        lambda c: c.daily_usage(start="2022-08-01T00:00:00"),
        "start",
        "YYYY-MM-DD HH:MM:SS",
        id="usage-start-iso-t",
    ),
    pytest.param(
        lambda c: c.daily_usage(start="2022-02-30 00:00:00"),
        "start",
        "YYYY-MM-DD HH:MM:SS",
        id="usage-start-no-such-day",
    ),
    pytest.param(lambda c: c.daily_usage(end=1659312000), "end", "datetime", id="usage-end-epoch"),
    pytest.param(lambda c: c.daily_usage(end="now"), "end", "datetime", id="usage-end-word"),
    pytest.param(
        lambda c: c.daily_usage(start="2022-08-02 00:00:00", end="2022-08-01 00:00:00"),
        "start",
        "after end",
        id="usage-start-after-end",
    ),
    pytest.param(
        lambda c: c.daily_usage(username="a b"), "username", "letters", id="usage-bad-username"
    ),
    pytest.param(
        lambda c: c.daily_usage(username=""), "username", "empty", id="usage-empty-username"
    ),
    pytest.param(
        lambda c: c.daily_usage(product_type=12), "product_type", "14", id="usage-bad-product-type"
    ),
    # list_products / iter_products
    pytest.param(lambda c: c.list_products(page=0), "page", "at least 1", id="products-page-0"),
    pytest.param(
        lambda c: c.list_products(page="2"), "page", "whole number", id="products-page-text"
    ),
    pytest.param(lambda c: c.list_products(size=0), "size", "between 1", id="products-size-0"),
    pytest.param(lambda c: c.list_products(size=1001), "size", "between 1", id="products-size-big"),
    pytest.param(
        lambda c: c.list_products(product_type=1), "product_type", "11", id="products-bad-type"
    ),
    pytest.param(
        lambda c: c.list_products(trade_no=""), "trade_no", "empty", id="products-empty-trade-no"
    ),
    pytest.param(
        lambda c: c.list_products(trade_no="T" * 65), "trade_no", "64", id="products-long-trade-no"
    ),
    pytest.param(
        lambda c: c.list_products(trade_no="T1\r\nX: y"),
        "trade_no",
        "control",
        id="products-trade-no-crlf",
    ),
    pytest.param(lambda c: c.iter_products(size=0), "size", "between 1", id="iter-size-0"),
    pytest.param(
        lambda c: c.iter_products(product_type=99), "product_type", "9", id="iter-bad-type"
    ),
    pytest.param(
        lambda c: c.iter_products(trade_no=7), "trade_no", "string", id="iter-trade-no-number"
    ),
    # extract
    pytest.param(lambda c: c.extract(num=0), "num", "between 1 and 500", id="extract-num-0"),
    pytest.param(lambda c: c.extract(num=501), "num", "between 1 and 500", id="extract-num-501"),
    pytest.param(lambda c: c.extract(num="10"), "num", "whole number", id="extract-num-text"),
    pytest.param(lambda c: c.extract(num=2.0), "num", "whole number", id="extract-num-float"),
    pytest.param(lambda c: c.extract(life=0), "life", "between 1", id="extract-life-0"),
    pytest.param(lambda c: c.extract(life=-5), "life", "between 1", id="extract-life-negative"),
    pytest.param(lambda c: c.extract(life=None), "life", "whole number", id="extract-life-none"),
    pytest.param(lambda c: c.extract(ep="u s"), "ep", "letters", id="extract-ep-space"),
    pytest.param(lambda c: c.extract(ep="us&x=1"), "ep", "letters", id="extract-ep-injection"),
    pytest.param(lambda c: c.extract(ep=""), "ep", "letters", id="extract-ep-empty"),
    pytest.param(lambda c: c.extract("USA"), "country", "alpha-2", id="extract-geo-usa"),
    pytest.param(lambda c: c.extract("U1"), "country", "alpha-2", id="extract-geo-digit"),
    pytest.param(
        lambda c: c.extract("US/California/LosAngeles/Downtown"),
        "geo",
        "CC/State/City",
        id="extract-geo-four-parts",
    ),
    pytest.param(
        lambda c: c.extract("US//LosAngeles"), "geo", "CC/State/City", id="extract-geo-empty-part"
    ),
    pytest.param(
        lambda c: c.extract({"state": "California"}),
        "country",
        "needs a country",
        id="extract-geo-state-only",
    ),
    pytest.param(
        lambda c: c.extract({"country": "US", "planet": "Mars"}),
        "geo",
        "allowed",
        id="extract-geo-unknown-key",
    ),
    pytest.param(lambda c: c.extract(42), "geo", "Geo", id="extract-geo-number"),
    pytest.param(
        lambda c: c.extract("US/Cal&ifornia"), "state", "location name", id="extract-geo-bad-state"
    ),
    pytest.param(
        lambda c: c.extract("US/California/Los\nAngeles"),
        "city",
        "location name",
        id="extract-geo-bad-city",
    ),
    # locations
    pytest.param(lambda c: c.search_states("USA"), "country_code", "alpha-2", id="states-usa"),
    pytest.param(lambda c: c.search_states(""), "country_code", "alpha-2", id="states-empty"),
    pytest.param(lambda c: c.search_states(None), "country_code", "alpha-2", id="states-none"),
    pytest.param(lambda c: c.search_states("1"), "country_code", "alpha-2", id="states-digit"),
    pytest.param(lambda c: c.search_cities("US", ""), "state", "empty", id="cities-empty-state"),
    pytest.param(
        lambda c: c.search_cities("US", "Cal/ifornia"),
        "state",
        "location name",
        id="cities-slash-state",
    ),
    pytest.param(
        lambda c: c.search_cities("Ü1", "California"),
        "country_code",
        "alpha-2",
        id="cities-bad-country",
    ),
    # static IPs
    pytest.param(
        lambda c: c.list_static_ips(country_code="usa"),
        "country_code",
        "alpha-2",
        id="static-bad-country",
    ),
    pytest.param(
        lambda c: c.list_static_ips(product_type=9),
        "product_type",
        "14",
        id="static-dynamic-product",
    ),
    pytest.param(
        lambda c: c.list_static_ips(product_type=13),
        "product_type",
        "25",
        id="static-unknown-product",
    ),
    pytest.param(
        lambda c: c.list_static_ips(status=0), "status", "EXPIRING_SOON", id="static-status-0"
    ),
    pytest.param(
        lambda c: c.list_static_ips(status=5), "status", "MAINTENANCE", id="static-status-5"
    ),
    pytest.param(lambda c: c.list_static_ips(page=0), "page", "at least 1", id="static-page-0"),
    pytest.param(lambda c: c.list_static_ips(size=0), "size", "between 1", id="static-size-0"),
    pytest.param(
        lambda c: c.list_static_ips(trade_no=""), "trade_no", "empty", id="static-empty-trade-no"
    ),
]


@pytest.mark.parametrize(("call", "field", "allowed"), BAD_CALLS)
def test_bad_input_names_the_field_and_sends_nothing(
    httpserver: HTTPServer, call: Call, field: str, allowed: str
) -> None:
    client = make_client(httpserver)

    with pytest.raises(ConfigError) as info:
        result = call(client)
        # A generator must not defer the check to its first item.
        assert not hasattr(result, "__next__"), "validated only when iterated"

    assert info.value.field == field
    assert allowed in str(info.value)
    assert isinstance(info.value, ValueError)
    assert httpserver.log == []


def test_passwords_are_not_echoed_in_errors(httpserver: HTTPServer) -> None:
    client = make_client(httpserver)
    for call in (
        lambda: client.add_accounts({"u1": "Hunter2!secret"}),
        lambda: client.change_password("u1", "Hunter2!secret"),
    ):
        with pytest.raises(ConfigError) as info:
            call()
        assert "Hunter2" not in str(info.value)
        assert "Hunter2" not in repr(info.value)
    assert httpserver.log == []


# -- boundaries that are allowed ------------------------------------------------------------


@pytest.fixture
def ok_server(httpserver: HTTPServer) -> HTTPServer:
    httpserver.expect_request("/openapi/ip/v3").respond_with_json(SEED_EXTRACT)
    httpserver.expect_request("/ip/get-static-ip").respond_with_json({"code": 200, "data": None})
    for path in (
        "user-usage-flow/total",
        "user-product/list",
        "ip/dynamic-states/search",
        "ip/dynamic-citys/search",
    ):
        httpserver.expect_request(f"/openapi/{path}").respond_with_json({"code": 200, "data": None})
    httpserver.expect_request("/openapi/whitelist-account/add").respond_with_json(SEED_WRITE_OK)
    httpserver.expect_request("/openapi/whitelist-account/change-remark").respond_with_json(
        SEED_WRITE_OK
    )
    httpserver.expect_request("/openapi/whitelist-account/change-limit").respond_with_json(
        SEED_WRITE_OK
    )
    return httpserver


def last_request(server: HTTPServer) -> Any:
    return server.log[-1][0]


@pytest.mark.parametrize(
    "remark",
    ["x" * 64, "中" * 32, "中" * 31 + "xx", "", "ｶﾀｶﾅ" * 16, "Crawler #1 (EU), ünïcödé"],
    ids=["64-latin", "32-cjk", "31-cjk-2-latin", "empty", "halfwidth-kana", "latin-punctuation"],
)
def test_remark_boundaries_are_sent(ok_server: HTTPServer, remark: str) -> None:
    make_client(ok_server).change_remark("u1", remark)
    assert body_of(last_request(ok_server))["remark"] == remark


@pytest.mark.parametrize("limit", [0, 102400])
def test_limit_boundaries_are_sent(ok_server: HTTPServer, limit: int) -> None:
    make_client(ok_server).change_limit("u1", limit)
    assert body_of(last_request(ok_server))["limit"] == limit


@pytest.mark.parametrize(("num", "life"), [(1, 1), (500, 1), (10, 120), (10, 7200)])
def test_num_and_life_boundaries_are_sent(ok_server: HTTPServer, num: int, life: int) -> None:
    make_client(ok_server).extract(num=num, life=life)
    sent = query_of(last_request(ok_server))
    assert (sent["num"], sent["life"]) == ([str(num)], [str(life)])


@pytest.mark.parametrize("product_type", list(ProductType))
def test_every_product_type_is_accepted(ok_server: HTTPServer, product_type: ProductType) -> None:
    client = make_client(ok_server)
    client.add_accounts({"u1": "p1"}, product_type=product_type)
    assert body_of(last_request(ok_server))["product_type"] == int(product_type)
    client.daily_usage(product_type=int(product_type))
    assert query_of(last_request(ok_server))["product_type"] == [str(int(product_type))]


def test_usernames_and_passwords_of_64_letters_and_digits(ok_server: HTTPServer) -> None:
    user, password = "U" * 32 + "9" * 32, "aZ09" * 16
    make_client(ok_server).add_accounts({user: password})
    assert body_of(last_request(ok_server))["accounts"] == f"{user}:{password}"


def test_times_accept_datetime_and_normalise_strings(ok_server: HTTPServer) -> None:
    make_client(ok_server).daily_usage(
        start=datetime(2022, 8, 1, 7, 5, 3), end=" 2022-08-09 23:59:59 "
    )
    sent = query_of(last_request(ok_server))
    assert sent["start_time"] == ["2022-08-01 07:05:03"]
    assert sent["end_time"] == ["2022-08-09 23:59:59"]


def test_equal_start_and_end_are_allowed(ok_server: HTTPServer) -> None:
    make_client(ok_server).daily_usage(start="2022-08-01 00:00:00", end="2022-08-01 00:00:00")
    assert len(ok_server.log) == 1


def test_country_codes_are_normalised(ok_server: HTTPServer) -> None:
    client = make_client(ok_server)
    client.search_states(" gb ")
    assert query_of(last_request(ok_server))["country_code"] == ["GB"]
    client.search_cities("us", " California ")
    assert query_of(last_request(ok_server))["state"] == ["California"]
    client.extract(Geo("de"), num=1)
    assert query_of(last_request(ok_server))["cc"] == ["DE"]


def test_static_ip_filters_accept_enums_and_ints(ok_server: HTTPServer) -> None:
    client = make_client(ok_server)
    client.list_static_ips(product_type=14, status=StaticIpStatus.MAINTENANCE)
    sent = query_of(last_request(ok_server))
    assert (sent["product_type"], sent["status"]) == (["14"], ["4"])


# -- the constructor -----------------------------------------------------------------------


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("PROXYPOOL_APP_KEY", raising=False)
    monkeypatch.delenv("PROXYPOOL_API_URL", raising=False)
    return monkeypatch


def test_missing_app_key_names_the_variable(no_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="PROXYPOOL_APP_KEY") as info:
        ProviderClient(base_url="https://api.example.com/openapi")
    assert info.value.field == "app_key"


def test_empty_app_key_variable_counts_as_missing(no_env: pytest.MonkeyPatch) -> None:
    no_env.setenv("PROXYPOOL_APP_KEY", "")
    with pytest.raises(ConfigError, match="PROXYPOOL_APP_KEY"):
        ProviderClient(base_url="https://api.example.com/openapi")


def test_missing_api_url_names_the_variable(no_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="PROXYPOOL_API_URL") as info:
        ProviderClient("k" * 32)
    assert info.value.field == "base_url"


def test_missing_api_url_with_key_from_env(no_env: pytest.MonkeyPatch) -> None:
    no_env.setenv("PROXYPOOL_APP_KEY", KEY)
    with pytest.raises(ConfigError, match="PROXYPOOL_API_URL"):
        ProviderClient()


def test_neither_set_names_the_key_first(no_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="PROXYPOOL_APP_KEY"):
        ProviderClient()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"app_key": "has space"}, "app_key"),
        ({"app_key": "tab\there"}, "app_key"),
        ({"app_key": 1234}, "app_key"),
        ({"base_url": "ftp://api.example.com/openapi"}, "base_url"),
        ({"base_url": "api.example.com/openapi"}, "base_url"),
        ({"base_url": "https:///openapi"}, "base_url"),
        ({"base_url": "https://u:p@api.example.com/openapi"}, "base_url"),
        ({"base_url": "https://api.example.com/openapi?app_key=x"}, "base_url"),
        ({"base_url": "https://api.example.com/openapi#top"}, "base_url"),
        ({"base_url": 42}, "base_url"),
        ({"static_base_url": "file:///tmp"}, "static_base_url"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1.0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": "10"}, "timeout"),
        ({"retries": -1}, "retries"),
        ({"retries": 11}, "retries"),
        ({"retries": 1.0}, "retries"),
        ({"backoff": -0.5}, "backoff"),
    ],
)
def test_bad_constructor_arguments(
    no_env: pytest.MonkeyPatch, kwargs: dict[str, Any], field: str
) -> None:
    arguments: dict[str, Any] = {"app_key": KEY, "base_url": "https://api.example.com/openapi"}
    arguments.update(kwargs)
    with pytest.raises(ConfigError) as info:
        ProviderClient(**arguments)
    assert info.value.field == field


def test_base_url_is_normalised(httpserver: HTTPServer) -> None:
    client = ProviderClient(KEY, base_url=f"  {base_url(httpserver)}/  ")
    assert client.base_url == base_url(httpserver)
    assert client.static_base_url == httpserver.url_for("").rstrip("/")
