"""Tests of the provider simulator (proxypool.sim.provider), driven over real HTTP on loopback."""

from __future__ import annotations

import json
import logging
import math
import random
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import requests

from proxypool.api import ProviderClient
from proxypool.errors import ApiError, ApiResponseError, InvalidAppKey, RealNameRequired
from proxypool.sim.provider import (
    CODE_BAD_PARAMETER,
    CODE_CONFLICT,
    CODE_INTERNAL,
    CODE_INVALID_KEY,
    CODE_NOT_FOUND,
    CODE_REAL_NAME_REQUIRED,
    ENDPOINTS,
    GARBAGE_KINDS,
    ProviderSimulator,
)

NOW = datetime(2024, 3, 15, 12, 30, 0)
ACCOUNT_FIELDS = {
    "id",
    "username",
    "password",
    "created_at",
    "remark",
    "product_type",
    "usage_flow",
    "limit_flow",
    "status",
}
# Required parameters, so that each endpoint can be called successfully.
GOOD_PARAMS: dict[str, dict[str, Any]] = {
    "whitelist-account/add": {"accounts": "newuser1:Passw0rd"},
    "whitelist-account/delete": {"accounts": "alice01"},
    "whitelist-account/disable": {"accounts": "alice01"},
    "whitelist-account/enable": {"accounts": "alice01"},
    "whitelist-account/change-password": {"account": "alice01", "password": "NewPass1"},
    "whitelist-account/change-remark": {"account": "alice01", "remark": "r"},
    "whitelist-account/change-limit": {"account": "alice01", "limit": 5},
    "ip/v3": {"format": "json", "num": 2},
    "ip/dynamic-citys/search": {"country_code": "US", "state": "California"},
    "ip/dynamic-states/search": {"country_code": "US"},
}


@pytest.fixture
def sim() -> Iterator[ProviderSimulator]:
    with ProviderSimulator(clock=lambda: NOW) as simulator:
        yield simulator


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def url(sim: ProviderSimulator, endpoint: str) -> str:
    root = sim.root_url if endpoint == "ip/get-static-ip" else sim.base_url
    return f"{root}/{endpoint}"


def call(
    http: requests.Session,
    sim: ProviderSimulator,
    endpoint: str,
    key: str | None = None,
    **params: Any,
) -> requests.Response:
    """Call ``endpoint`` the way the real API wants: key in the query (GET) or JSON body (POST)."""
    payload = {"app_key": sim.app_key if key is None else key, **params}
    if ENDPOINTS[endpoint] == "POST":
        return http.post(url(sim, endpoint), json=payload, timeout=5)
    return http.get(url(sim, endpoint), params=payload, timeout=5)


def ok(response: requests.Response) -> Any:
    """The ``data`` of a successful envelope, checking the envelope on the way."""
    assert response.status_code == 200, response.text[:200]
    body = response.json()
    assert set(body) == {"code", "msg", "data"}
    assert body["code"] == 200, body
    assert body["msg"] == "success"
    return body["data"]


def error(response: requests.Response, code: int, http_status: int = 200) -> str:
    """The message of an error envelope with ``code``."""
    assert response.status_code == http_status, response.text[:200]
    body = response.json()
    assert body["code"] == code, body
    assert body["data"] is None
    assert isinstance(body["msg"], str) and body["msg"]
    return str(body["msg"])


def accounts(http: requests.Session, sim: ProviderSimulator) -> dict[str, dict[str, Any]]:
    data = ok(call(http, sim, "whitelist-account/list"))
    return {a["username"]: a for a in data["list"]}


# ----------------------------------------------------------------------------- lifecycle


def test_serves_on_loopback_free_port_and_stops() -> None:
    sim = ProviderSimulator()
    with pytest.raises(RuntimeError):
        _ = sim.base_url
    sim.start()
    try:
        assert sim.base_url == f"http://127.0.0.1:{sim.port}/openapi"
        assert sim.port > 0
        with pytest.raises(RuntimeError):
            sim.start()
        assert requests.get(url(sim, "ip/v3"), params={"app_key": sim.app_key}, timeout=5).ok
        base = sim.base_url
    finally:
        sim.stop()
    sim.stop()  # twice is fine
    with pytest.raises(requests.ConnectionError):
        requests.get(base + "/ip/v3", timeout=2)


def test_given_key_and_prefix_are_used(http: requests.Session) -> None:
    with ProviderSimulator(app_key="k" * 32, prefix="end-point/") as sim:
        assert sim.app_key == "k" * 32
        assert sim.base_url.endswith("/end-point")
        ok(call(http, sim, "ip/dynamic-states"))
        assert http.get(sim.root_url + "/openapi/ip/dynamic-states", timeout=5).status_code == 404
        assert sim.env() == {"PROXYPOOL_API_URL": sim.base_url, "PROXYPOOL_APP_KEY": "k" * 32}


def test_keepalive_connections_do_not_block_stop(http: requests.Session) -> None:
    sim = ProviderSimulator().start()
    ok(call(http, sim, "ip/v3"))  # leaves a keep-alive connection open in the session
    base = sim.base_url
    sim.stop()  # returns although the session still holds its connection
    with pytest.raises(requests.ConnectionError):
        http.get(base + "/ip/v3", timeout=2)


def test_repr_hides_the_key(sim: ProviderSimulator) -> None:
    assert sim.app_key not in repr(sim)
    assert "127.0.0.1" in repr(sim)


# ----------------------------------------------------------------------------- envelope, auth


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_every_endpoint_answers_the_envelope(
    sim: ProviderSimulator, http: requests.Session, endpoint: str
) -> None:
    data = ok(call(http, sim, endpoint, **GOOD_PARAMS.get(endpoint, {})))
    if ENDPOINTS[endpoint] == "POST":
        assert data is None  # the seed's POST answers carry "data": null
    else:
        assert isinstance(data["list"], list)


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_wrong_or_missing_key_is_code_3(
    sim: ProviderSimulator, http: requests.Session, endpoint: str
) -> None:
    error(call(http, sim, endpoint, key="wrong", **GOOD_PARAMS.get(endpoint, {})), 3)
    error(call(http, sim, endpoint, key="", **GOOD_PARAMS.get(endpoint, {})), 3)


def test_code_3_may_come_with_http_401(sim: ProviderSimulator, http: requests.Session) -> None:
    sim.invalid_key_status = 401
    error(call(http, sim, "ip/v3", key="wrong"), CODE_INVALID_KEY, http_status=401)
    with pytest.raises(ValueError):
        sim.invalid_key_status = 403


def test_post_key_must_be_in_the_body(sim: ProviderSimulator, http: requests.Session) -> None:
    response = http.post(
        url(sim, "whitelist-account/add"),
        params={"app_key": sim.app_key},
        json={"accounts": "qq1:pp1"},
        timeout=5,
    )
    error(response, CODE_INVALID_KEY)
    assert "qq1" not in accounts(http, sim)


def test_rotated_key_invalidates_the_old_one(
    sim: ProviderSimulator, http: requests.Session
) -> None:
    old = sim.app_key
    new = sim.rotate_app_key()
    assert new != old
    error(call(http, sim, "ip/v3", key=old), CODE_INVALID_KEY)
    ok(call(http, sim, "ip/v3", key=new))


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_unverified_account_is_code_156_everywhere(
    sim: ProviderSimulator, http: requests.Session, endpoint: str
) -> None:
    sim.real_name_verified = False
    before = sim.ips_handed_out
    error(call(http, sim, endpoint, **GOOD_PARAMS.get(endpoint, {})), CODE_REAL_NAME_REQUIRED)
    assert sim.ips_handed_out == before
    sim.real_name_verified = True
    assert "newuser1" not in accounts(http, sim)  # the refused add changed nothing


def test_messages_are_chinese_unless_language_en(
    sim: ProviderSimulator, http: requests.Session
) -> None:
    zh = error(call(http, sim, "ip/v3", key="wrong"), CODE_INVALID_KEY)
    en = error(call(http, sim, "ip/v3", key="wrong", language="en"), CODE_INVALID_KEY)
    assert not zh.isascii()
    assert en.isascii() and "app_key" in en
    en_post = error(
        call(
            http, sim, "whitelist-account/change-limit", account="alice01", limit="x", language="en"
        ),
        CODE_BAD_PARAMETER,
    )
    assert "limit" in en_post


def test_unknown_path_and_wrong_method_are_web_server_errors(
    sim: ProviderSimulator, http: requests.Session
) -> None:
    missing = http.get(sim.base_url + "/no/such", params={"app_key": sim.app_key}, timeout=5)
    assert missing.status_code == 404
    assert missing.headers["Content-Type"].startswith("text/html")
    # The static-IP list lives at the root, not under the prefix (as in the seed).
    assert http.get(sim.base_url + "/ip/get-static-ip", timeout=5).status_code == 404
    wrong = http.get(url(sim, "whitelist-account/add"), params={"app_key": sim.app_key}, timeout=5)
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "POST"


def test_post_body_must_be_a_json_object(sim: ProviderSimulator, http: requests.Session) -> None:
    for body in (b"app_key=x", b"[1, 2]", b"\xff\xfe"):
        response = http.post(url(sim, "whitelist-account/add"), data=body, timeout=5)
        error(response, CODE_BAD_PARAMETER)


# ----------------------------------------------------------------------------- accounts


def test_account_list_has_the_seed_fields(sim: ProviderSimulator, http: requests.Session) -> None:
    listed = accounts(http, sim)
    assert listed, "the simulator starts with a few accounts"
    for account in listed.values():
        assert set(account) == ACCOUNT_FIELDS
        assert account["product_type"] in (9, 11, 14, 25)
        assert account["status"] in (0, 1)
        datetime.strptime(account["created_at"], "%Y-%m-%d %H:%M:%S")
    assert len({a["id"] for a in listed.values()}) == len(listed)


def test_add_accounts_in_a_batch(sim: ProviderSimulator, http: requests.Session) -> None:
    ok(
        call(
            http,
            sim,
            "whitelist-account/add",
            accounts="team1:Pass1,team2:Pass2",
            remark="scrapers",
            product_type=11,
        )
    )
    listed = accounts(http, sim)
    for name, password in (("team1", "Pass1"), ("team2", "Pass2")):
        account = listed[name]
        assert account["password"] == password
        assert account["remark"] == "scrapers"
        assert account["product_type"] == 11
        assert (account["status"], account["usage_flow"], account["limit_flow"]) == (1, 0, 0)
        assert account["created_at"] == NOW.strftime("%Y-%m-%d %H:%M:%S")
    ok(call(http, sim, "whitelist-account/add", accounts="team3:Pass3"))
    assert accounts(http, sim)["team3"]["product_type"] == 9  # the default type


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"accounts": "good1:Pass1,bad user:Pass2"}, CODE_BAD_PARAMETER),
        ({"accounts": "good1:Pass1,bad2:pa$$"}, CODE_BAD_PARAMETER),
        ({"accounts": "good1"}, CODE_BAD_PARAMETER),
        ({"accounts": ""}, CODE_BAD_PARAMETER),
        ({}, CODE_BAD_PARAMETER),
        ({"accounts": "good1:Pass1", "product_type": 12}, CODE_BAD_PARAMETER),
        ({"accounts": "good1:Pass1", "remark": "x" * 65}, CODE_BAD_PARAMETER),
        ({"accounts": "good1:Pass1,good1:Pass2"}, CODE_CONFLICT),
        ({"accounts": "good1:Pass1,alice01:Pass2"}, CODE_CONFLICT),  # alice01 exists, type 9
    ],
)
def test_add_rejects_bad_batches_whole(
    sim: ProviderSimulator, http: requests.Session, body: dict[str, Any], code: int
) -> None:
    before = accounts(http, sim)
    message = error(call(http, sim, "whitelist-account/add", language="en", **body), code)
    assert "pa$$" not in message  # a password is never echoed
    assert accounts(http, sim) == before


def test_same_name_under_another_product_type_is_allowed(
    sim: ProviderSimulator, http: requests.Session
) -> None:
    ok(call(http, sim, "whitelist-account/add", accounts="alice01:Other1", product_type=25))
    data = ok(call(http, sim, "whitelist-account/list"))
    assert sorted(a["product_type"] for a in data["list"] if a["username"] == "alice01") == [9, 25]


def test_disable_and_enable(sim: ProviderSimulator, http: requests.Session) -> None:
    assert accounts(http, sim)["alice01"]["status"] == 1
    ok(call(http, sim, "whitelist-account/disable", accounts="alice01,bob02"))
    listed = accounts(http, sim)
    assert (listed["alice01"]["status"], listed["bob02"]["status"]) == (0, 0)
    ok(call(http, sim, "whitelist-account/enable", accounts="bob02"))
    listed = accounts(http, sim)
    assert (listed["alice01"]["status"], listed["bob02"]["status"]) == (0, 1)


@pytest.mark.parametrize("endpoint", ["delete", "disable", "enable"])
def test_batch_with_an_unknown_account_changes_nothing(
    sim: ProviderSimulator, http: requests.Session, endpoint: str
) -> None:
    before = accounts(http, sim)
    message = error(
        call(http, sim, f"whitelist-account/{endpoint}", accounts="alice01,nobody9"),
        CODE_NOT_FOUND,
    )
    assert "nobody9" in message
    error(call(http, sim, f"whitelist-account/{endpoint}", accounts="ali-ce"), CODE_BAD_PARAMETER)
    assert accounts(http, sim) == before


def test_delete_removes_account_and_its_usage(
    sim: ProviderSimulator, http: requests.Session
) -> None:
    wide = {"start_time": "2000-01-01 00:00:00", "end_time": "2100-01-01 00:00:00"}
    assert ok(call(http, sim, "user-usage-flow/total", username="bob02", **wide))["list"]
    ok(call(http, sim, "whitelist-account/delete", accounts="bob02"))
    assert "bob02" not in accounts(http, sim)
    assert "alice01" in accounts(http, sim)
    assert ok(call(http, sim, "user-usage-flow/total", username="bob02", **wide))["list"] == []
    error(call(http, sim, "whitelist-account/delete", accounts="bob02"), CODE_NOT_FOUND)


def test_change_password_remark_and_limit(sim: ProviderSimulator, http: requests.Session) -> None:
    ok(call(http, sim, "whitelist-account/change-password", account="alice01", password="Zz9"))
    ok(call(http, sim, "whitelist-account/change-remark", account="alice01", remark="东京" * 16))
    ok(call(http, sim, "whitelist-account/change-limit", account="alice01", limit=102400))
    alice = accounts(http, sim)["alice01"]
    assert (alice["password"], alice["remark"], alice["limit_flow"]) == ("Zz9", "东京" * 16, 102400)
    ok(call(http, sim, "whitelist-account/change-remark", account="alice01", remark=""))
    ok(call(http, sim, "whitelist-account/change-limit", account="alice01", limit=0))
    alice = accounts(http, sim)["alice01"]
    assert (alice["remark"], alice["limit_flow"]) == ("", 0)


@pytest.mark.parametrize(
    ("endpoint", "body", "code"),
    [
        ("change-password", {"account": "alice01", "password": "with space"}, CODE_BAD_PARAMETER),
        ("change-password", {"account": "alice01"}, CODE_BAD_PARAMETER),
        ("change-password", {"account": "nobody9", "password": "Pass1"}, CODE_NOT_FOUND),
        ("change-remark", {"account": "alice01", "remark": "东" * 33}, CODE_BAD_PARAMETER),
        ("change-remark", {"account": "alice01"}, CODE_BAD_PARAMETER),
        ("change-limit", {"account": "alice01", "limit": 102401}, CODE_BAD_PARAMETER),
        ("change-limit", {"account": "alice01", "limit": -1}, CODE_BAD_PARAMETER),
        ("change-limit", {"account": "alice01", "limit": 1.5}, CODE_BAD_PARAMETER),
        ("change-limit", {"account": "alice01", "limit": True}, CODE_BAD_PARAMETER),
        ("change-limit", {"account": "alice01"}, CODE_BAD_PARAMETER),
        ("change-limit", {"account": "bad!", "limit": 1}, CODE_BAD_PARAMETER),
    ],
)
def test_single_account_changes_validate(
    sim: ProviderSimulator,
    http: requests.Session,
    endpoint: str,
    body: dict[str, Any],
    code: int,
) -> None:
    before = accounts(http, sim)
    error(call(http, sim, f"whitelist-account/{endpoint}", **body), code)
    assert accounts(http, sim) == before


# ----------------------------------------------------------------------------- usage


def usage(http: requests.Session, sim: ProviderSimulator, **params: Any) -> dict[str, int]:
    data = ok(call(http, sim, "user-usage-flow/total", **params))
    for row in data["list"]:
        assert set(row) == {"day", "flow"}
        assert isinstance(row["flow"], int) and row["flow"] >= 0
    days = [row["day"] for row in data["list"]]
    assert days == sorted(days)
    return {row["day"]: row["flow"] for row in data["list"]}


def test_usage_defaults_to_the_last_seven_days(
    sim: ProviderSimulator, http: requests.Session
) -> None:
    days = usage(http, sim)
    assert days
    oldest = (NOW - timedelta(days=7)).date()
    assert all(oldest <= date.fromisoformat(d) <= NOW.date() for d in days)
    wide = usage(http, sim, start_time="2000-01-01 00:00:00")
    assert len(wide) > len(days)
    assert {d: wide[d] for d in days} == days


def test_usage_filters_add_up(sim: ProviderSimulator, http: requests.Session) -> None:
    wide = {"start_time": "2000-01-01 00:00:00", "end_time": "2100-01-01 00:00:00"}
    total = usage(http, sim, **wide)
    listed = accounts(http, sim)
    per_user = {name: usage(http, sim, username=name, **wide) for name in listed}
    for day, flow in total.items():
        assert flow == sum(u.get(day, 0) for u in per_user.values())
    # The list's usage_flow (KB) is the account's whole history.
    for name, account in listed.items():
        assert account["usage_flow"] == sum(per_user[name].values())
    per_type = {t: usage(http, sim, product_type=t, **wide) for t in (9, 11, 14, 25)}
    for day, flow in total.items():
        assert flow == sum(p.get(day, 0) for p in per_type.values())
    assert per_type[11] == per_user["bob02"]  # bob02 is the only type-11 account


def test_usage_time_window(sim: ProviderSimulator, http: requests.Session) -> None:
    window = usage(http, sim, start_time="2024-03-10 00:00:00", end_time="2024-03-12 23:59:59")
    assert window and set(window) <= {"2024-03-10", "2024-03-11", "2024-03-12"}


@pytest.mark.parametrize(
    "params",
    [
        {"start_time": "2024-03-10"},
        {"end_time": "yesterday"},
        {"start_time": "2024-03-12 00:00:00", "end_time": "2024-03-10 00:00:00"},
        {"product_type": 7},
        {"username": "no-dash"},
    ],
)
def test_usage_rejects_bad_parameters(
    sim: ProviderSimulator, http: requests.Session, params: dict[str, Any]
) -> None:
    error(call(http, sim, "user-usage-flow/total", **params), CODE_BAD_PARAMETER)


# ----------------------------------------------------------------------------- packages


def test_products_paginate(sim: ProviderSimulator, http: requests.Session) -> None:
    first = ok(call(http, sim, "user-product/list"))
    assert (first["page"], first["page_size"]) == (1, 20)
    total = first["total_count"]
    assert total > 20, "enough packages for pagination to matter"
    assert first["total_page"] == math.ceil(total / 20)
    seen: list[int] = []
    pages = math.ceil(total / 7)
    for page in range(1, pages + 1):
        data = ok(call(http, sim, "user-product/list", page=page, size=7))
        assert (data["page"], data["page_size"], data["total_page"]) == (page, 7, pages)
        assert len(data["list"]) == (7 if page < pages else total - 7 * (pages - 1))
        seen += [p["id"] for p in data["list"]]
    assert len(set(seen)) == total
    assert ok(call(http, sim, "user-product/list", page=pages + 1, size=7))["list"] == []


def test_product_items_follow_the_seed(sim: ProviderSimulator, http: requests.Session) -> None:
    for item in ok(call(http, sim, "user-product/list", size=100))["list"]:
        assert set(item) == {"id", "created_at", "expired_at", "product_type", "trade_no", "order"}
        assert set(item["order"]) == {"created_at", "pay_at", "title"}
        assert item["product_type"] in (9, 11, 14, 25)
        assert len(item["trade_no"]) == 28 and item["trade_no"].isdigit()
        created = datetime.strptime(item["created_at"], "%Y-%m-%d %H:%M:%S")
        assert datetime.strptime(item["expired_at"], "%Y-%m-%d %H:%M:%S") > created


def test_product_filters(sim: ProviderSimulator, http: requests.Session) -> None:
    every = ok(call(http, sim, "user-product/list", size=100))["list"]
    wanted = every[3]["trade_no"]
    exact = ok(call(http, sim, "user-product/list", trade_no=wanted))
    assert [p["trade_no"] for p in exact["list"]] == [wanted]
    assert exact["total_count"] == 1
    assert ok(call(http, sim, "user-product/list", trade_no=wanted[:-1]))["total_count"] == 0
    for ptype in (9, 11, 14, 25):
        data = ok(call(http, sim, "user-product/list", product_type=ptype, size=100))
        assert data["list"] and {p["product_type"] for p in data["list"]} == {ptype}
        assert data["total_count"] == sum(p["product_type"] == ptype for p in every)


@pytest.mark.parametrize(
    "params", [{"page": 0}, {"size": 0}, {"size": 1001}, {"page": "x"}, {"product_type": 1}]
)
def test_products_reject_bad_parameters(
    sim: ProviderSimulator, http: requests.Session, params: dict[str, Any]
) -> None:
    error(call(http, sim, "user-product/list", **params), CODE_BAD_PARAMETER)


# ----------------------------------------------------------------------------- static IPs


def test_static_ips_filter_and_paginate(sim: ProviderSimulator, http: requests.Session) -> None:
    every = ok(call(http, sim, "ip/get-static-ip", size=100))
    items = every["list"]
    assert 3 <= every["total_count"] == len(items)
    for item in items:
        assert {"ip", "port", "country_code", "product_type", "status", "trade_no"} <= set(item)
    for field, value in (
        ("country_code", "US"),
        ("product_type", 25),
        ("status", 1),
        ("trade_no", items[0]["trade_no"]),
    ):
        only: dict[str, Any] = {field: value}
        data = ok(call(http, sim, "ip/get-static-ip", size=100, **only))
        assert data["list"] and all(i[field] == value for i in data["list"])
        assert data["total_count"] == sum(i[field] == value for i in items)
    assert ok(call(http, sim, "ip/get-static-ip", country_code="us"))["total_count"] == sum(
        i["country_code"] == "US" for i in items
    )
    paged = ok(call(http, sim, "ip/get-static-ip", page=2, size=3))
    assert paged["list"] == items[3:6]
    assert paged["total_page"] == math.ceil(len(items) / 3)
    # Static IPs come from the packages bought.
    trades = {p["trade_no"] for p in ok(call(http, sim, "user-product/list", size=100))["list"]}
    assert {i["trade_no"] for i in items} <= trades


@pytest.mark.parametrize(
    "params", [{"status": 5}, {"product_type": 9}, {"country_code": "USA"}, {"size": 0}]
)
def test_static_ips_reject_bad_parameters(
    sim: ProviderSimulator, http: requests.Session, params: dict[str, Any]
) -> None:
    error(call(http, sim, "ip/get-static-ip", **params), CODE_BAD_PARAMETER)


# ----------------------------------------------------------------------------- locations


def test_city_and_state_catalogs(sim: ProviderSimulator, http: requests.Session) -> None:
    cities = ok(call(http, sim, "ip/dynamic-citys"))["list"]
    states = ok(call(http, sim, "ip/dynamic-states"))["list"]
    for country in cities + states:
        assert {"name_zh_cn", "name_en", "continent_code", "country_code", "items"} <= set(country)
        for item in country["items"]:
            assert item["country_code"] == country["country_code"]
            assert " " not in item["state"]
    places = {(c["country_code"], i["state"], i["city"]) for c in cities for i in c["items"]}
    for place in (
        ("US", "California", "LosAngeles"),
        ("US", "California", "SanFrancisco"),
        ("US", "NewYork", "NewYork"),
        ("US", "Texas", "Houston"),
        ("GB", "England", "London"),
        ("DE", "Berlin", "Berlin"),
        ("JP", "Tokyo", "Tokyo"),
    ):
        assert place in places
    assert all(
        set(i) == {"city", "state", "continent_code", "country_code"}
        for c in cities
        for i in c["items"]
    )
    state_pairs = {(c["country_code"], i["state"]) for c in states for i in c["items"]}
    assert state_pairs == {(cc, state) for cc, state, _ in places}


def test_location_searches(sim: ProviderSimulator, http: requests.Session) -> None:
    states = ok(call(http, sim, "ip/dynamic-states/search", country_code="US"))["list"]
    assert {"California", "NewYork", "Texas"} <= set(states)
    cities = ok(call(http, sim, "ip/dynamic-citys/search", country_code="US", state="California"))
    assert {"LosAngeles", "SanFrancisco"} <= set(cities["list"])
    assert "Houston" not in cities["list"]
    assert ok(call(http, sim, "ip/dynamic-states/search", country_code="ZZ"))["list"] == []
    nowhere = call(http, sim, "ip/dynamic-citys/search", country_code="US", state="Atlantis")
    assert ok(nowhere)["list"] == []
    error(call(http, sim, "ip/dynamic-states/search"), CODE_BAD_PARAMETER)
    error(call(http, sim, "ip/dynamic-citys/search", country_code="US"), CODE_BAD_PARAMETER)


# ----------------------------------------------------------------------------- extraction


class RecordingSource:
    """An address source that remembers what it was asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[str | None, str | None, str | None, int, int]] = []

    def __call__(
        self, cc: str | None, state: str | None, city: str | None, num: int, life: int
    ) -> list[str]:
        self.asked.append((cc, state, city, num, life))
        return [f"10.0.0.{i + 1}:{8000 + len(self.asked)}" for i in range(num)]


def test_extraction_returns_the_seeds_nested_list(
    sim: ProviderSimulator, http: requests.Session
) -> None:
    data = ok(call(http, sim, "ip/v3", format="json", num=5))
    assert list(data) == ["list"]
    assert len(data["list"]) == 1 and len(data["list"][0]) == 5
    for address in data["list"][0]:
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1" and 0 < int(port) < 65536
    again = ok(call(http, sim, "ip/v3", num=5))["list"][0]
    assert not set(again) & set(data["list"][0]), "each extraction hands out fresh addresses"
    assert sim.ips_handed_out == 10


def test_extraction_asks_the_source_in_canonical_spelling(http: requests.Session) -> None:
    source = RecordingSource()
    with ProviderSimulator(address_source=source) as sim:
        got = ok(
            call(http, sim, "ip/v3", cc="us", state="california", city="losangeles", num=3, life=15)
        )
        ok(call(http, sim, "ip/v3", cc="GB", city="London", num=1))
        ok(call(http, sim, "ip/v3", cc="DE", num=2))
        ok(call(http, sim, "ip/v3", num=1, ep="us"))
        assert source.asked == [
            ("US", "California", "LosAngeles", 3, 15),
            ("GB", "England", "London", 1, 10),
            ("DE", None, None, 2, 10),
            (None, None, None, 1, 10),
        ]
        assert got["list"] == [["10.0.0.1:8001", "10.0.0.2:8001", "10.0.0.3:8001"]]
        assert sim.ips_handed_out == 7
        calls = sim.extraction_calls()
        assert [c.ips for c in calls] == [3, 1, 2, 1]
        assert calls[0].params["cc"] == "us" and calls[0].params["app_key"] == "***"


def test_source_giving_too_many_is_capped_and_failures_are_500(http: requests.Session) -> None:
    def generous(
        cc: str | None, state: str | None, city: str | None, num: int, life: int
    ) -> list[str]:
        if cc == "JP":
            raise OSError("no relay")
        return [f"127.0.0.1:{30000 + i}" for i in range(num + 5)]

    with ProviderSimulator(address_source=generous) as sim:
        assert len(ok(call(http, sim, "ip/v3", num=4))["list"][0]) == 4
        error(call(http, sim, "ip/v3", cc="JP", num=4), CODE_INTERNAL)
        assert sim.ips_handed_out == 4


@pytest.mark.parametrize(
    "params",
    [
        {"cc": "FR"},
        {"cc": "US", "state": "Atlantis"},
        {"cc": "US", "state": "Texas", "city": "LosAngeles"},
        {"cc": "US", "city": "Gotham"},
    ],
)
def test_unknown_place_is_an_error_or_empty(http: requests.Session, params: dict[str, Any]) -> None:
    source = RecordingSource()
    with ProviderSimulator(address_source=source) as sim:
        message = error(call(http, sim, "ip/v3", language="en", **params), CODE_NOT_FOUND)
        assert params["cc"] in message
        sim.unknown_geo = "empty"
        assert ok(call(http, sim, "ip/v3", **params)) == {"list": []}
        assert source.asked == []
        assert sim.ips_handed_out == 0


@pytest.mark.parametrize(
    "params",
    [
        {"num": 0},
        {"num": 501},
        {"num": "ten"},
        {"life": 0},
        {"life": 7201},
        {"cc": "USA"},
        {"state": "California"},
        {"format": "xml"},
        {"ep": "u s"},
    ],
)
def test_extraction_rejects_bad_parameters(
    sim: ProviderSimulator, http: requests.Session, params: dict[str, Any]
) -> None:
    error(call(http, sim, "ip/v3", **params), CODE_BAD_PARAMETER)
    assert sim.ips_handed_out == 0


def test_extraction_text_format(sim: ProviderSimulator, http: requests.Session) -> None:
    response = call(http, sim, "ip/v3", format="txt", num=3, lb="|")
    assert response.headers["Content-Type"].startswith("text/plain")
    assert len(response.text.split("|")) == 3
    assert len(call(http, sim, "ip/v3", format="txt", num=2).text.split("\r\n")) == 2


def test_flat_lists_knob(sim: ProviderSimulator, http: requests.Session) -> None:
    sim.flat_lists = True
    flat = ok(call(http, sim, "ip/v3", num=3))["list"]
    assert len(flat) == 3 and all(isinstance(a, str) for a in flat)


def test_concurrent_extractions_are_counted_exactly(sim: ProviderSimulator) -> None:
    got: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        with requests.Session() as session:
            for _ in range(5):
                data = ok(call(session, sim, "ip/v3", num=3))
                with lock:
                    got.extend(data["list"][0])

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(set(got)) == 90 == sim.ips_handed_out
    assert len(sim.extraction_calls()) == 30


# ----------------------------------------------------------------------------- fault knobs


def test_fail_rate_one_is_http_500_and_changes_nothing(
    sim: ProviderSimulator, http: requests.Session
) -> None:
    sim.fail_rate = 1.0
    response = call(http, sim, "whitelist-account/add", accounts="late1:Pass1")
    assert response.status_code == 500
    with pytest.raises(ValueError):
        response.json()
    assert call(http, sim, "ip/v3", num=3).status_code == 500
    assert sim.ips_handed_out == 0
    sim.fail_rate = 0
    assert "late1" not in accounts(http, sim)


def test_fault_knobs_are_deterministic_for_a_seed(http: requests.Session) -> None:
    def outcomes(seed: int) -> list[int]:
        with ProviderSimulator(rng=random.Random(seed)) as sim:
            sim.fail_rate = 0.5
            return [call(http, sim, "ip/v3").status_code for _ in range(30)]

    first = outcomes(7)
    assert first == outcomes(7)
    assert set(first) == {200, 500}
    assert first != outcomes(8)


def test_knobs_reject_bad_values(sim: ProviderSimulator) -> None:
    for name in ("fail_rate", "garbage_rate", "empty_rate"):
        with pytest.raises(ValueError):
            setattr(sim, name, 1.5)
        with pytest.raises(ValueError):
            setattr(sim, name, -0.1)
    with pytest.raises(ValueError):
        sim.delay = -1
    with pytest.raises(ValueError):
        sim.garbage_kinds = ("html", "poetry")
    with pytest.raises(ValueError):
        ProviderSimulator(unknown_geo="maybe")


def test_garbage_kinds(sim: ProviderSimulator, http: requests.Session) -> None:
    sim.garbage_rate = 1.0
    sim.garbage_kinds = ("html",)
    html = call(http, sim, "ip/v3")
    assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
    sim.garbage_kinds = ("truncated",)
    with pytest.raises(json.JSONDecodeError):
        json.loads(call(http, sim, "ip/v3").text)
    sim.garbage_kinds = ("wrong_shape",)
    assert isinstance(call(http, sim, "ip/v3").json(), list)
    sim.garbage_kinds = ("empty",)
    assert call(http, sim, "whitelist-account/list").content == b""
    sim.garbage_kinds = ("redirect",)
    redirected = call(http, sim, "ip/v3")
    assert [r.status_code for r in redirected.history] == [302]
    assert redirected.headers["Content-Type"].startswith("text/html")
    assert sim.ips_handed_out == 0
    sim.garbage_kinds = GARBAGE_KINDS
    sim.garbage_rate = 0.0
    ok(call(http, sim, "ip/v3"))


def test_empty_rate(sim: ProviderSimulator, http: requests.Session) -> None:
    sim.empty_rate = 1.0
    assert ok(call(http, sim, "ip/v3", num=5)) == {"list": []}
    assert sim.ips_handed_out == 0
    assert sim.extraction_calls()[-1].ips == 0


def test_message_key_knob(sim: ProviderSimulator, http: requests.Session) -> None:
    sim.use_message_key = True
    body = call(http, sim, "ip/dynamic-states").json()
    assert set(body) == {"code", "message", "data"} and body["message"] == "success"
    failed = call(http, sim, "ip/v3", key="wrong").json()
    assert failed["code"] == 3 and "msg" not in failed and failed["message"]


def test_delay_per_path(sim: ProviderSimulator, http: requests.Session) -> None:
    sim.set_delay(2.0, path="ip/v3")
    with pytest.raises(requests.ReadTimeout):
        http.get(url(sim, "ip/v3"), params={"app_key": sim.app_key}, timeout=0.2)
    ok(call(http, sim, "ip/dynamic-states"))  # other paths are not delayed
    sim.set_delay(0, path="/openapi/ip/v3")
    ok(call(http, sim, "ip/v3"))
    sim.delay = 2.0
    with pytest.raises(requests.ReadTimeout):
        http.get(url(sim, "ip/dynamic-states"), params={"app_key": sim.app_key}, timeout=0.2)
    sim.delay = 0


# ----------------------------------------------------------------------------- records, secrets


def test_call_log_redacts_secrets(sim: ProviderSimulator, http: requests.Session) -> None:
    ok(call(http, sim, "whitelist-account/add", accounts="sec1:TopSecret1,sec2:TopSecret2"))
    ok(call(http, sim, "whitelist-account/change-password", account="sec1", password="Hidden9"))
    ok(call(http, sim, "ip/v3", cc="US", num=1))
    everything = repr(sim.calls())
    for secret in (sim.app_key, "TopSecret1", "TopSecret2", "Hidden9"):
        assert secret not in everything
    added = sim.calls("whitelist-account/add")
    assert len(added) == 1 and added[0].params["accounts"] == "sec1:***,sec2:***"
    assert added[0].method == "POST" and added[0].time == NOW and added[0].code == 200
    assert [c.endpoint for c in sim.calls("/openapi/ip/v3")] == ["ip/v3"]
    sim.clear_calls()
    assert sim.calls() == [] and sim.ips_handed_out == 0


def test_server_never_writes_the_key_to_logs_or_stderr(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    with (
        ProviderSimulator(app_key="S3cretKeyS3cretKeyS3cretKey00000") as sim,
        requests.Session() as http,
    ):
        ok(call(http, sim, "ip/v3", num=2))
        error(call(http, sim, "ip/v3", key=sim.app_key + "x"), CODE_INVALID_KEY)
        http.get(sim.base_url + "/nope", params={"app_key": sim.app_key}, timeout=5)
        sim.fail_rate = 1.0
        call(http, sim, "user-product/list")
    out, err = capfd.readouterr()
    assert caplog.records, "the simulator logs its calls at DEBUG"
    assert "S3cretKey" not in caplog.text + out + err


# ----------------------------------------------------------------------------- typed client
# These go through proxypool.api.ProviderClient: the simulator must be usable by the real client.


@pytest.fixture
def client(sim: ProviderSimulator) -> Iterator[ProviderClient]:
    with ProviderClient(sim.app_key, base_url=sim.base_url, timeout=5, sleep=lambda s: None) as c:
        yield c


def test_client_manages_accounts(sim: ProviderSimulator, client: ProviderClient) -> None:
    client.add_accounts({"cli1": "Pass1", "cli2": "Pass2"}, remark="from client")
    client.disable_accounts(["cli2"])
    client.change_password("cli1", "Pass9")
    client.change_limit("cli1", 7)
    by_name = {a.username: a for a in client.list_accounts()}
    assert by_name["cli1"].password == "Pass9" and by_name["cli1"].limit_flow == 7
    assert by_name["cli1"].enabled and not by_name["cli2"].enabled
    assert by_name["cli2"].remark == "from client"
    assert by_name["cli1"].created_at == NOW.replace(tzinfo=UTC)
    client.delete_accounts("cli2")
    assert "cli2" not in {a.username for a in client.list_accounts()}
    with pytest.raises(ApiError) as caught:
        client.enable_accounts("ghost1")
    assert caught.value.code == CODE_NOT_FOUND


def test_client_reads_usage_products_and_static_ips(
    sim: ProviderSimulator, client: ProviderClient
) -> None:
    usage_rows = client.daily_usage(start="2000-01-01 00:00:00", username="alice01")
    alice = next(a for a in client.list_accounts() if a.username == "alice01")
    assert usage_rows and sum(u.flow for u in usage_rows) == alice.usage_flow
    products = list(client.iter_products(size=7))
    assert len(products) == client.list_products().total_count
    assert len({p.id for p in products}) == len(products)
    assert len(sim.calls("user-product/list")) > 2  # the walk really paged
    page = client.list_static_ips(country_code="US")
    assert page.items and all(ip.country_code == "US" for ip in page.items)
    assert sim.calls("ip/get-static-ip")[-1].path == "/ip/get-static-ip"


def test_client_extracts_and_reads_locations(
    sim: ProviderSimulator, client: ProviderClient
) -> None:
    proxies = client.extract("US/California/LosAngeles", num=4, life=5)
    assert len(proxies) == 4 and all(p.host == "127.0.0.1" for p in proxies)
    assert str(proxies[0].geo) == "US/California/LosAngeles"
    sim.flat_lists = True
    assert len(client.extract("GB", num=2)) == 2
    assert sim.ips_handed_out == 6
    assert "Houston" in client.search_cities("US", "Texas")
    assert "England" in client.search_states("GB")
    catalog = {c.country_code: c for c in client.list_city_catalog()}
    assert "SanFrancisco" in catalog["US"].cities("California")
    assert "Tokyo" in {c.country_code: c for c in client.list_state_catalog()}["JP"].states


def test_client_maps_account_errors(sim: ProviderSimulator) -> None:
    for status in (200, 401):
        sim.invalid_key_status = status
        bad = ProviderClient("wrong" * 6, base_url=sim.base_url, timeout=5)
        with bad, pytest.raises(InvalidAppKey) as caught:
            bad.list_accounts()
        assert caught.value.http_status == status
    with ProviderClient(sim.app_key, base_url=sim.base_url, timeout=5) as good:
        sim.real_name_verified = False
        with pytest.raises(RealNameRequired):
            good.extract(num=1)
        sim.real_name_verified = True
        sim.use_message_key = True
        with pytest.raises(ApiError, match="no IPs available"):
            good.extract("FR", num=1)
        assert sim.app_key not in repr(sim.calls())


def test_client_survives_or_reports_faults(sim: ProviderSimulator, client: ProviderClient) -> None:
    sim.garbage_rate = 1.0
    for kind in GARBAGE_KINDS:
        sim.garbage_kinds = (kind,)
        with pytest.raises(ApiResponseError):
            client.extract(num=1)
    sim.garbage_rate = 0.0
    sim.fail_rate = 1.0
    with pytest.raises(ApiError) as caught:
        client.extract(num=1)
    assert caught.value.http_status == 500
    # An extraction answered with a 5xx may have been billed: the client does not send it again.
    assert len(sim.extraction_calls()) == len(GARBAGE_KINDS) + 1
    with pytest.raises(ApiError):
        client.list_accounts()
    assert len(sim.calls("whitelist-account/list")) == 1 + client.retries  # free calls retry
    sim.fail_rate = 0.0
    sim.empty_rate = 1.0
    assert client.extract(num=3) == []
    assert sim.ips_handed_out == 0
