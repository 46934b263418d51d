"""ProviderClient against a fake provider (pytest-httpserver): for each of the 16 endpoints, the
exact request (method, path, query or JSON body) and the parsed models, from the seed's example
payloads and the variants PROVIDER_API.md says deployments send."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from _provider import (
    KEY,
    SEED_ACCOUNTS,
    SEED_CITY_CATALOG,
    SEED_EXTRACT,
    SEED_EXTRACT_ADDRESSES,
    SEED_PRODUCTS,
    SEED_SEARCH,
    SEED_STATE_CATALOG,
    SEED_USAGE,
    SEED_WRITE_OK,
    STATIC_IPS,
    base_url,
    body_of,
    envelope,
    make_client,
    query_of,
    seed,
)
from pytest_httpserver import HTTPServer

from proxypool import (
    Account,
    AccountStatus,
    ApiResponseError,
    CountryLocations,
    DailyUsage,
    Geo,
    LocationItem,
    Order,
    Product,
    ProductPage,
    ProductType,
    ProviderClient,
    Proxy,
    StaticIpPage,
    StaticIpStatus,
)


@pytest.fixture
def client(httpserver: HTTPServer) -> ProviderClient:
    """``language=None`` so request bodies are exactly the seed's examples."""
    return make_client(httpserver, language=None)


def only_request(server: HTTPServer) -> Any:
    assert len(server.log) == 1, [r.url for r, _ in server.log]
    return server.log[0][0]


def assert_get(server: HTTPServer, path: str, params: dict[str, str]) -> None:
    request = only_request(server)
    assert request.method == "GET"
    assert request.path == path
    assert query_of(request) == {"app_key": [KEY], **{k: [v] for k, v in params.items()}}
    assert request.get_data() == b""


def assert_post(server: HTTPServer, path: str, body: dict[str, Any]) -> None:
    request = only_request(server)
    assert request.method == "POST"
    assert request.path == path
    assert request.query_string == b"", "the key must travel in the body, not the URL"
    assert request.mimetype == "application/json"
    assert body_of(request) == {"app_key": KEY, **body}


# -- proxy accounts --------------------------------------------------------------------------


def test_list_accounts_parses_the_seed_example(
    httpserver: HTTPServer, client: ProviderClient
) -> None:
    httpserver.expect_request("/openapi/whitelist-account/list").respond_with_json(SEED_ACCOUNTS)

    accounts = client.list_accounts()

    assert_get(httpserver, "/openapi/whitelist-account/list", {})
    assert accounts == [
        Account(
            id=0,
            username="user01",
            password="pass01",
            created_at=datetime(2022, 5, 13, 12, 14, 15, tzinfo=UTC),
            remark="string",
            product_type=ProductType.DYNAMIC_RESIDENTIAL_TRAFFIC,
            usage_flow=0,
            limit_flow=102400,
            status=AccountStatus.DISABLED,
        )
    ]
    assert type(accounts[0].product_type) is ProductType
    assert type(accounts[0].status) is AccountStatus
    assert accounts[0].enabled is False


def test_list_accounts_tolerates_string_numbers_message_key_and_code_zero(
    httpserver: HTTPServer, client: ProviderClient
) -> None:
    payload = {
        "code": 0,
        "message": "ok",
        "data": {
            "list": [
                {
                    "id": "17",
                    "username": "crawler1",
                    "password": "Secret99",
                    "created_at": "2024-02-29 23:59:59",
                    "remark": "",
                    "product_type": "11",
                    "usage_flow": "2048",  # KB
                    "limit_flow": 0,  # GB, 0 = unlimited
                    "status": 1,
                }
            ]
        },
    }
    httpserver.expect_request("/openapi/whitelist-account/list").respond_with_json(payload)

    (account,) = client.list_accounts()

    assert account.id == 17
    assert account.product_type is ProductType.DYNAMIC_RESIDENTIAL_IP
    assert account.usage_flow == 2048
    assert account.limit_flow == 0
    assert account.status is AccountStatus.ENABLED and account.enabled
    assert account.created_at == datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)


def test_list_accounts_keeps_unknown_enum_values_as_numbers(
    httpserver: HTTPServer, client: ProviderClient
) -> None:
    payload = seed(SEED_ACCOUNTS)
    payload["data"]["list"][0].update(product_type=33, status=7, created_at=None)
    httpserver.expect_request("/openapi/whitelist-account/list").respond_with_json(payload)

    (account,) = client.list_accounts()

    assert account.product_type == 33 and not isinstance(account.product_type, ProductType)
    assert account.status == 7
    assert account.created_at is None


@pytest.mark.parametrize("data", [None, {"list": []}, {"list": None}, {}])
def test_list_accounts_empty(httpserver: HTTPServer, client: ProviderClient, data: Any) -> None:
    httpserver.expect_request("/openapi/whitelist-account/list").respond_with_json(envelope(data))
    assert client.list_accounts() == []


def test_add_accounts_sends_the_seed_body(httpserver: HTTPServer, client: ProviderClient) -> None:
    httpserver.expect_request("/openapi/whitelist-account/add", method="POST").respond_with_json(
        SEED_WRITE_OK
    )

    result = client.add_accounts(
        {"user01": "pass", "user02": "pass", "user03": "pass"},
        product_type=ProductType.DYNAMIC_RESIDENTIAL_TRAFFIC,
        remark="",
    )

    assert result is None
    assert_post(
        httpserver,
        "/openapi/whitelist-account/add",
        {"accounts": "user01:pass,user02:pass,user03:pass", "remark": "", "product_type": 9},
    )


def test_add_accounts_with_remark_and_int_product_type(
    httpserver: HTTPServer, client: ProviderClient
) -> None:
    httpserver.expect_request("/openapi/whitelist-account/add", method="POST").respond_with_json(
        SEED_WRITE_OK
    )

    client.add_accounts({"bot7": "Pw0rd"}, product_type=25, remark="批量 crawler")

    assert_post(
        httpserver,
        "/openapi/whitelist-account/add",
        {"accounts": "bot7:Pw0rd", "remark": "批量 crawler", "product_type": 25},
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("delete_accounts", "/openapi/whitelist-account/delete"),
        ("disable_accounts", "/openapi/whitelist-account/disable"),
        ("enable_accounts", "/openapi/whitelist-account/enable"),
    ],
)
@pytest.mark.parametrize(
    ("usernames", "sent"),
    [(["user01", "user02"], "user01,user02"), ("user01", "user01"), (("a1", "b2"), "a1,b2")],
)
def test_batch_account_writes(
    httpserver: HTTPServer,
    client: ProviderClient,
    method: str,
    path: str,
    usernames: Any,
    sent: str,
) -> None:
    httpserver.expect_request(path, method="POST").respond_with_json(SEED_WRITE_OK)

    assert getattr(client, method)(usernames) is None

    assert_post(httpserver, path, {"accounts": sent})


def test_change_password(httpserver: HTTPServer, client: ProviderClient) -> None:
    path = "/openapi/whitelist-account/change-password"
    httpserver.expect_request(path, method="POST").respond_with_json(SEED_WRITE_OK)

    client.change_password("user", "pass")

    assert_post(httpserver, path, {"account": "user", "password": "pass"})


def test_change_remark(httpserver: HTTPServer, client: ProviderClient) -> None:
    path = "/openapi/whitelist-account/change-remark"
    httpserver.expect_request(path, method="POST").respond_with_json(SEED_WRITE_OK)

    client.change_remark("user", "")

    assert_post(httpserver, path, {"account": "user", "remark": ""})


@pytest.mark.parametrize("limit", [0, 1, 102400])
def test_change_limit_in_gb(httpserver: HTTPServer, client: ProviderClient, limit: int) -> None:
    path = "/openapi/whitelist-account/change-limit"
    httpserver.expect_request(path, method="POST").respond_with_json(SEED_WRITE_OK)

    client.change_limit("user", limit)

    assert_post(httpserver, path, {"account": "user", "limit": limit})


# -- usage and packages ----------------------------------------------------------------------


def test_daily_usage_without_filters(httpserver: HTTPServer, client: ProviderClient) -> None:
    httpserver.expect_request("/openapi/user-usage-flow/total").respond_with_json(SEED_USAGE)

    usage = client.daily_usage()

    assert_get(httpserver, "/openapi/user-usage-flow/total", {})
    assert usage == [DailyUsage(day=date(2022, 8, 1), flow=0)]
    assert type(usage[0].day) is date


def test_daily_usage_with_every_filter(httpserver: HTTPServer, client: ProviderClient) -> None:
    payload = envelope(
        {"list": [{"day": "2022-08-01", "flow": 1536}, {"day": "2022-08-02", "flow": "7"}]}
    )
    httpserver.expect_request("/openapi/user-usage-flow/total").respond_with_json(payload)

    usage = client.daily_usage(
        start=datetime(2022, 8, 1, 0, 0, 0),
        end="2022-08-02 23:59:59",
        username="user01",
        product_type=ProductType.DYNAMIC_RESIDENTIAL_IP,
    )

    assert_get(
        httpserver,
        "/openapi/user-usage-flow/total",
        {
            "start_time": "2022-08-01 00:00:00",
            "end_time": "2022-08-02 23:59:59",
            "username": "user01",
            "product_type": "11",
        },
    )
    assert usage == [
        DailyUsage(day=date(2022, 8, 1), flow=1536),
        DailyUsage(day=date(2022, 8, 2), flow=7),
    ]


def test_list_products_parses_the_seed_example(
    httpserver: HTTPServer, client: ProviderClient
) -> None:
    httpserver.expect_request("/openapi/user-product/list").respond_with_json(SEED_PRODUCTS)

    page = client.list_products()

    assert_get(httpserver, "/openapi/user-product/list", {"page": "1", "size": "20"})
    assert page == ProductPage(
        items=(
            Product(
                id=0,
                created_at=datetime(2022, 5, 13, 12, 14, 15, tzinfo=UTC),
                expired_at=datetime(2022, 5, 13, 12, 14, 15, tzinfo=UTC),
                product_type=ProductType.DYNAMIC_RESIDENTIAL_TRAFFIC,
                trade_no="2022051312134339861461465434",
                order=Order(
                    created_at=datetime(2022, 5, 13, 12, 13, 43, tzinfo=UTC),
                    pay_at=datetime(2022, 5, 13, 12, 13, 43, tzinfo=UTC),
                    title="入门级",
                ),
            ),
        ),
        page=1,
        page_size=20,
        total_count=0,
        total_page=0,
    )


def test_list_products_with_filters(httpserver: HTTPServer, client: ProviderClient) -> None:
    payload = seed(SEED_PRODUCTS)
    payload["data"].update(page=3, page_size=5, total_count=11, total_page=3)
    payload["data"]["list"][0]["order"] = None
    httpserver.expect_request("/openapi/user-product/list").respond_with_json(payload)

    page = client.list_products(trade_no="T123", page=3, size=5, product_type=14)

    assert_get(
        httpserver,
        "/openapi/user-product/list",
        {"trade_no": "T123", "page": "3", "size": "5", "product_type": "14"},
    )
    assert (page.page, page.page_size, page.total_count, page.total_page) == (3, 5, 11, 3)
    assert page.items[0].order is None


def _product(n: int) -> dict[str, Any]:
    item = seed(SEED_PRODUCTS)["data"]["list"][0]
    item.update(id=n, trade_no=f"T{n}")
    return item


def test_iter_products_walks_every_page(httpserver: HTTPServer, client: ProviderClient) -> None:
    per_page = {1: [1, 2], 2: [3, 4], 3: [5]}
    for number, ids in per_page.items():
        data = {
            "list": [_product(i) for i in ids],
            "page": number,
            "page_size": 2,
            "total_count": 5,
            "total_page": 3,
        }
        httpserver.expect_request(
            "/openapi/user-product/list",
            query_string={"app_key": KEY, "page": str(number), "size": "2", "product_type": "9"},
        ).respond_with_json(envelope(data))

    products = list(
        client.iter_products(size=2, product_type=ProductType.DYNAMIC_RESIDENTIAL_TRAFFIC)
    )

    assert [p.id for p in products] == [1, 2, 3, 4, 5]
    assert [p.trade_no for p in products] == ["T1", "T2", "T3", "T4", "T5"]
    assert [query_of(r)["page"] for r, _ in httpserver.log] == [["1"], ["2"], ["3"]]
    assert len(httpserver.log) == 3


def test_iter_products_is_lazy_and_stops_on_an_empty_page(
    httpserver: HTTPServer, client: ProviderClient
) -> None:
    full = {"list": [_product(1)], "page": 1, "page_size": 1, "total_count": 9, "total_page": 9}
    empty = {"list": [], "page": 2, "page_size": 1, "total_count": 9, "total_page": 9}
    httpserver.expect_oneshot_request("/openapi/user-product/list").respond_with_json(
        envelope(full)
    )
    httpserver.expect_oneshot_request("/openapi/user-product/list").respond_with_json(
        envelope(empty)
    )

    products = client.iter_products(size=1)
    assert httpserver.log == []  # nothing fetched until iterated
    assert [p.id for p in products] == [1]
    assert len(httpserver.log) == 2


def test_iter_products_seed_example_is_one_page(
    httpserver: HTTPServer, client: ProviderClient
) -> None:
    # The seed's example says total_page 0 with one item on page 1: one request, one product.
    httpserver.expect_request("/openapi/user-product/list").respond_with_json(SEED_PRODUCTS)

    products = list(client.iter_products())

    assert [p.trade_no for p in products] == ["2022051312134339861461465434"]
    assert len(httpserver.log) == 1


def test_iter_products_derives_pages_from_total_count(
    httpserver: HTTPServer, client: ProviderClient
) -> None:
    # No total_page in the answer: 3 packages at 2 per page are 2 pages.
    for number, ids in {1: [1, 2], 2: [3]}.items():
        data = {"list": [_product(i) for i in ids], "page_size": 2, "total_count": 3}
        httpserver.expect_request(
            "/openapi/user-product/list",
            query_string={"app_key": KEY, "page": str(number), "size": "2"},
        ).respond_with_json(envelope(data))

    assert [p.id for p in client.iter_products(size=2)] == [1, 2, 3]
    assert len(httpserver.log) == 2


def test_iter_products_follows_the_providers_page_size(
    httpserver: HTTPServer, client: ProviderClient
) -> None:
    # Asked for 100 per page, the provider serves 2: a page of 2 is full, not the last.
    for number, ids in {1: [1, 2], 2: [3, 4], 3: [5]}.items():
        data = {"list": [_product(i) for i in ids], "page_size": 2, "total_page": 3}
        httpserver.expect_request(
            "/openapi/user-product/list",
            query_string={"app_key": KEY, "page": str(number), "size": "100"},
        ).respond_with_json(envelope(data))

    assert [p.id for p in client.iter_products(size=100)] == [1, 2, 3, 4, 5]


def test_iter_products_stops_on_a_provider_that_ignores_page(
    httpserver: HTTPServer, client: ProviderClient
) -> None:
    data = {"list": [_product(1), _product(2)], "page_size": 2, "total_page": 10**9}
    httpserver.expect_request("/openapi/user-product/list").respond_with_json(envelope(data))

    walked = []
    with pytest.raises(ApiResponseError, match="ignores the page parameter"):
        walked.extend(p.id for p in client.iter_products(size=2))

    assert walked == [1, 2]
    assert len(httpserver.log) == 2


# -- extraction ------------------------------------------------------------------------------


def test_extract_parses_the_seed_example(httpserver: HTTPServer, client: ProviderClient) -> None:
    httpserver.expect_request("/openapi/ip/v3").respond_with_json(SEED_EXTRACT)

    proxies = client.extract(Geo("US", "California", "LosAngeles"), num=10, life=30, ep="us")

    assert_get(
        httpserver,
        "/openapi/ip/v3",
        {
            "cc": "US",
            "state": "California",
            "city": "LosAngeles",
            "num": "10",
            "life": "30",
            "format": "json",
            "ep": "us",
        },
    )
    assert [str(p) for p in proxies] == SEED_EXTRACT_ADDRESSES
    assert all(type(p) is Proxy for p in proxies)
    assert proxies[0] == Proxy("150.109.114.72", 1140)
    assert proxies[0].url == "http://150.109.114.72:1140"
    assert proxies[0].username is None and proxies[0].password is None
    assert all(p.geo == Geo("US", "California", "LosAngeles") for p in proxies)


def test_extract_anywhere_sends_no_geography(
    httpserver: HTTPServer, client: ProviderClient
) -> None:
    httpserver.expect_request("/openapi/ip/v3").respond_with_json(SEED_EXTRACT)

    proxies = client.extract()

    assert_get(httpserver, "/openapi/ip/v3", {"num": "10", "life": "10", "format": "json"})
    assert all(p.geo == Geo() for p in proxies)


@pytest.mark.parametrize(
    ("geo", "params"),
    [
        ("de", {"cc": "DE"}),
        ("US/California", {"cc": "US", "state": "California"}),
        ({"country": "gb", "city": "London"}, {"cc": "GB", "city": "London"}),
    ],
)
def test_extract_accepts_geo_strings_and_mappings(
    httpserver: HTTPServer, client: ProviderClient, geo: Any, params: dict[str, str]
) -> None:
    httpserver.expect_request("/openapi/ip/v3").respond_with_json(SEED_EXTRACT)

    client.extract(geo, num=1, life=1)

    assert_get(httpserver, "/openapi/ip/v3", {**params, "num": "1", "life": "1", "format": "json"})


@pytest.mark.parametrize(
    "listing",
    [
        pytest.param(["1.2.3.4:8000", "5.6.7.8:8001"], id="flat"),
        pytest.param([["1.2.3.4:8000"], ["5.6.7.8:8001"]], id="nested"),
        pytest.param([[["1.2.3.4:8000", ["5.6.7.8:8001"]]]], id="deeper"),
        pytest.param(
            [{"ip": "1.2.3.4", "port": 8000}, {"ip": "5.6.7.8", "port": "8001"}], id="objects"
        ),
        pytest.param([[{"ip": "1.2.3.4", "port": 8000}], " 5.6.7.8:8001 "], id="mixed"),
    ],
)
def test_extract_list_variants(
    httpserver: HTTPServer, client: ProviderClient, listing: list[Any]
) -> None:
    httpserver.expect_request("/openapi/ip/v3").respond_with_json(
        {"code": 0, "message": "ok", "data": {"list": listing}}
    )

    proxies = client.extract("US", num=2)

    assert [(p.host, p.port) for p in proxies] == [("1.2.3.4", 8000), ("5.6.7.8", 8001)]


def test_extract_bare_list_as_data_and_ipv6(httpserver: HTTPServer, client: ProviderClient) -> None:
    httpserver.expect_request("/openapi/ip/v3").respond_with_json(envelope(["[2001:db8::1]:3128"]))

    (proxy,) = client.extract(num=1)

    assert (proxy.host, proxy.port) == ("2001:db8::1", 3128)
    assert str(proxy) == "[2001:db8::1]:3128"


def test_extract_empty_list(httpserver: HTTPServer, client: ProviderClient) -> None:
    httpserver.expect_request("/openapi/ip/v3").respond_with_json(envelope({"list": [[]]}))
    assert client.extract(num=5) == []


# -- locations -------------------------------------------------------------------------------


def test_list_city_catalog_parses_the_seed_example(
    httpserver: HTTPServer, client: ProviderClient
) -> None:
    httpserver.expect_request("/openapi/ip/dynamic-citys").respond_with_json(SEED_CITY_CATALOG)

    catalog = client.list_city_catalog()

    assert_get(httpserver, "/openapi/ip/dynamic-citys", {})
    assert catalog == [
        CountryLocations(
            country_code="US",
            name_en="United States",
            name_zh_cn="美国",
            continent_code="NA",
            items=(LocationItem(country_code="US", state=None, city=None, continent_code=None),),
        )
    ]
    assert catalog[0].states == () and catalog[0].cities() == ()


def test_list_city_catalog_with_cities(httpserver: HTTPServer, client: ProviderClient) -> None:
    us = seed(SEED_CITY_CATALOG)["data"]["list"][0]
    us["items"] = [
        {"city": "LosAngeles", "state": "California", "continent_code": "NA", "country_code": "US"},
        {"city": "SanJose", "state": "California", "continent_code": "NA", "country_code": "us"},
        {"city": "Austin", "state": "Texas", "continent_code": "NA", "country_code": "US"},
    ]
    de = {
        "name_zh_cn": "德国",
        "name_en": "Germany",
        "continent_code": "EU",
        "country_code": "de",
        "items": [],
    }
    httpserver.expect_request("/openapi/ip/dynamic-citys").respond_with_json(
        envelope({"list": [us, de]})
    )

    us_loc, de_loc = client.list_city_catalog()

    assert us_loc.states == ("California", "Texas")
    assert us_loc.cities("California") == ("LosAngeles", "SanJose")
    assert us_loc.cities() == ("LosAngeles", "SanJose", "Austin")
    assert {i.country_code for i in us_loc.items} == {"US"}
    assert (de_loc.country_code, de_loc.name_en, de_loc.items) == ("DE", "Germany", ())


def test_list_state_catalog_parses_the_seed_example(
    httpserver: HTTPServer, client: ProviderClient
) -> None:
    payload = seed(SEED_STATE_CATALOG)
    payload["data"]["list"][0]["items"].append(
        {"state": "California", "continent_code": "NA", "country_code": "US"}
    )
    httpserver.expect_request("/openapi/ip/dynamic-states").respond_with_json(payload)

    (us,) = client.list_state_catalog()

    assert_get(httpserver, "/openapi/ip/dynamic-states", {})
    assert (us.country_code, us.name_en, us.name_zh_cn, us.continent_code) == (
        "US",
        "United States",
        "美国",
        "NA",
    )
    assert us.items[1] == LocationItem("US", "California", None, "NA")
    assert us.states == ("California",)


def test_search_states(httpserver: HTTPServer, client: ProviderClient) -> None:
    httpserver.expect_request("/openapi/ip/dynamic-states/search").respond_with_json(
        envelope({"list": ["California", "Texas"]})
    )

    assert client.search_states("us") == ["California", "Texas"]
    assert_get(httpserver, "/openapi/ip/dynamic-states/search", {"country_code": "US"})


def test_search_states_seed_example(httpserver: HTTPServer, client: ProviderClient) -> None:
    httpserver.expect_request("/openapi/ip/dynamic-states/search").respond_with_json(SEED_SEARCH)
    assert client.search_states("US") == ["string"]


def test_search_cities(httpserver: HTTPServer, client: ProviderClient) -> None:
    httpserver.expect_request("/openapi/ip/dynamic-citys/search").respond_with_json(
        envelope({"list": ["LosAngeles", "SanJose"]})
    )

    assert client.search_cities("US", "California") == ["LosAngeles", "SanJose"]
    assert_get(
        httpserver,
        "/openapi/ip/dynamic-citys/search",
        {"country_code": "US", "state": "California"},
    )


def test_search_cities_accepts_objects(httpserver: HTTPServer, client: ProviderClient) -> None:
    httpserver.expect_request("/openapi/ip/dynamic-citys/search").respond_with_json(
        envelope({"list": [{"city": "Austin"}]})
    )
    assert client.search_cities("US", "Texas") == ["Austin"]


# -- static IPs ------------------------------------------------------------------------------


def test_list_static_ips_lives_without_the_prefix(
    httpserver: HTTPServer, client: ProviderClient
) -> None:
    httpserver.expect_request("/ip/get-static-ip").respond_with_json(STATIC_IPS)

    page = client.list_static_ips(
        country_code="us",
        product_type=ProductType.STATIC_RESIDENTIAL_IP,
        trade_no="T2024",
        status=StaticIpStatus.VALID,
        page=2,
        size=50,
    )

    assert_get(
        httpserver,
        "/ip/get-static-ip",
        {
            "country_code": "US",
            "product_type": "25",
            "trade_no": "T2024",
            "status": "1",
            "page": "2",
            "size": "50",
        },
    )
    assert isinstance(page, StaticIpPage)
    (item,) = page.items
    assert (item.ip, item.port, item.country_code, item.trade_no) == (
        "203.0.113.7",
        8000,
        "US",
        "T2024",
    )
    assert item.product_type is ProductType.STATIC_RESIDENTIAL_IP
    assert item.status is StaticIpStatus.VALID
    assert item.expired_at == datetime(2024, 6, 1, tzinfo=UTC)
    assert item.raw["isp"] == "ExampleNet"  # undocumented fields are kept
    assert (page.page, page.total_count) == (1, 1)
    assert page.raw == STATIC_IPS["data"]


def test_list_static_ips_defaults_and_string_entries(
    httpserver: HTTPServer, client: ProviderClient
) -> None:
    httpserver.expect_request("/ip/get-static-ip").respond_with_json(
        envelope({"list": ["198.51.100.1:9000"], "total": 1, "expired_at": 1717200000})
    )

    page = client.list_static_ips()

    assert_get(httpserver, "/ip/get-static-ip", {"page": "1", "size": "20"})
    assert (page.items[0].ip, page.items[0].port) == ("198.51.100.1", 9000)
    assert page.total_count == 1


def test_list_static_ips_epoch_expiry_is_utc(
    httpserver: HTTPServer, client: ProviderClient
) -> None:
    httpserver.expect_request("/ip/get-static-ip").respond_with_json(
        envelope({"list": [{"ip": "198.51.100.1", "port": 1, "expired_at": 1717200000}]})
    )
    (item,) = client.list_static_ips().items
    assert item.expired_at == datetime(2024, 6, 1, tzinfo=UTC)


def test_static_base_url_can_be_set(httpserver: HTTPServer) -> None:
    client = make_client(httpserver, static_base_url=httpserver.url_for("/pub"))
    httpserver.expect_request("/pub/ip/get-static-ip").respond_with_json(STATIC_IPS)

    client.list_static_ips()

    assert only_request(httpserver).path == "/pub/ip/get-static-ip"


# -- configuration ---------------------------------------------------------------------------


def test_other_brand_prefix(httpserver: HTTPServer) -> None:
    # ProxyLite-style base URL: the prefix changes, the path after it does not.
    client = make_client(httpserver, base_url=httpserver.url_for("/end-point/"), language=None)
    httpserver.expect_request("/end-point/ip/dynamic-states/search").respond_with_json(SEED_SEARCH)
    httpserver.expect_request("/ip/get-static-ip").respond_with_json(STATIC_IPS)

    assert client.search_states("US") == ["string"]
    client.list_static_ips()

    assert [r.path for r, _ in httpserver.log] == [
        "/end-point/ip/dynamic-states/search",
        "/ip/get-static-ip",
    ]


def test_language_is_sent_by_default(httpserver: HTTPServer) -> None:
    client = make_client(httpserver)
    httpserver.expect_request("/openapi/ip/dynamic-states/search").respond_with_json(SEED_SEARCH)
    httpserver.expect_request("/openapi/whitelist-account/enable").respond_with_json(SEED_WRITE_OK)

    client.search_states("US")
    client.enable_accounts("u1")

    get, post = (r for r, _ in httpserver.log)
    assert query_of(get) == {"app_key": [KEY], "country_code": ["US"], "language": ["en"]}
    assert body_of(post) == {"app_key": KEY, "accounts": "u1", "language": "en"}


def test_key_and_url_from_the_environment(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROXYPOOL_APP_KEY", "EnvKey123")
    monkeypatch.setenv("PROXYPOOL_API_URL", base_url(httpserver) + "/")
    httpserver.expect_request("/openapi/ip/dynamic-states/search").respond_with_json(SEED_SEARCH)

    with ProviderClient(language=None) as client:
        assert client.search_states("US") == ["string"]

    assert query_of(only_request(httpserver)) == {"app_key": ["EnvKey123"], "country_code": ["US"]}


def test_explicit_arguments_win_over_the_environment(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROXYPOOL_APP_KEY", "EnvKey123")
    monkeypatch.setenv("PROXYPOOL_API_URL", "http://127.0.0.1:9/elsewhere")
    httpserver.expect_request("/openapi/ip/dynamic-states/search").respond_with_json(SEED_SEARCH)

    client = ProviderClient("ArgKey456", base_url=base_url(httpserver), language=None)
    client.search_states("US")

    assert query_of(only_request(httpserver))["app_key"] == ["ArgKey456"]


def test_a_given_session_is_used(httpserver: HTTPServer) -> None:
    import requests

    session = requests.Session()
    session.headers["X-Team"] = "crawlers"
    httpserver.expect_request("/openapi/ip/dynamic-states/search").respond_with_json(SEED_SEARCH)

    with make_client(httpserver, session=session) as client:
        client.search_states("US")

    assert only_request(httpserver).headers["X-Team"] == "crawlers"


# -- one rule for times: every datetime a model exposes is timezone-aware -------------------------


def datetimes_in(value: Any, where: str = "") -> list[tuple[str, datetime]]:
    """Every datetime reachable from a parsed model, through dataclass fields, lists and dicts."""
    import dataclasses

    if isinstance(value, datetime):
        return [(where, value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [
            found
            for f in dataclasses.fields(value)
            for found in datetimes_in(getattr(value, f.name), f"{where}.{f.name}")
        ]
    if isinstance(value, list | tuple):
        return [found for i, v in enumerate(value) for found in datetimes_in(v, f"{where}[{i}]")]
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in datetimes_in(v, f"{where}[{k!r}]")]
    return []


@pytest.mark.parametrize(
    "when",
    ["2022-05-13 12:14:15", "2022-05-13T12:14:15", "2022-05-13T14:14:15+02:00", 1652444055],
    ids=["seed-text", "iso-text", "iso-offset", "timestamp"],
)
def test_every_model_datetime_is_aware_and_names_the_same_instant(
    httpserver: HTTPServer, client: ProviderClient, when: Any
) -> None:
    """Whatever form a deployment sends a time in, the models expose one aware instant: text
    without an offset is UTC (the documented rule in proxypool.models)."""
    accounts, products, statics = seed(SEED_ACCOUNTS), seed(SEED_PRODUCTS), seed(STATIC_IPS)
    accounts["data"]["list"][0]["created_at"] = when
    for item in products["data"]["list"]:
        item["created_at"] = item["expired_at"] = when
        item["order"]["created_at"] = item["order"]["pay_at"] = when
    statics["data"]["list"][0]["expired_at"] = when
    httpserver.expect_request("/openapi/whitelist-account/list").respond_with_json(accounts)
    httpserver.expect_request("/openapi/user-product/list").respond_with_json(products)
    httpserver.expect_request("/ip/get-static-ip").respond_with_json(statics)

    found = (
        datetimes_in(client.list_accounts(), "accounts")
        + datetimes_in(client.list_products(), "products")
        + datetimes_in(client.list_static_ips(), "static_ips")
    )

    # accounts: created_at; products: created_at, expired_at, order.created_at, order.pay_at;
    # a static IP: expired_at.
    assert len(found) >= 1 + 4 + 1, found
    naive = [where for where, value in found if value.tzinfo is None]
    assert naive == []
    instant = datetime(2022, 5, 13, 12, 14, 15, tzinfo=UTC)
    assert {value for _, value in found} == {instant}
