"""The value types of proxypool.models: enum values, immutability, units kept as given, and
secrets (passwords, raw payloads) kept out of reprs."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import date, datetime
from urllib.parse import quote

import pytest

from proxypool import (
    Account,
    AccountStatus,
    CountryLocations,
    DailyUsage,
    Geo,
    LocationItem,
    Order,
    Product,
    ProductPage,
    ProductType,
    Proxy,
    StaticIp,
    StaticIpPage,
    StaticIpStatus,
)


def account(**changes: object) -> Account:
    fields: dict[str, object] = {
        "id": 1,
        "username": "user01",
        "password": "Pw0rdSecret",
        "created_at": datetime(2022, 5, 13, 12, 14, 15),
        "remark": "",
        "product_type": ProductType.DYNAMIC_RESIDENTIAL_TRAFFIC,
        "usage_flow": 2048,
        "limit_flow": 10,
        "status": AccountStatus.ENABLED,
    }
    fields.update(changes)
    return Account(**fields)  # type: ignore[arg-type]


def test_product_type_values_follow_the_api() -> None:
    assert {m.name: m.value for m in ProductType} == {
        "DYNAMIC_RESIDENTIAL_TRAFFIC": 9,
        "DYNAMIC_RESIDENTIAL_IP": 11,
        "STATIC_DATACENTER_IP": 14,
        "STATIC_RESIDENTIAL_IP": 25,
    }
    assert ProductType(25) == 25  # an IntEnum: compares and serialises as the API's number
    assert f"{int(ProductType.STATIC_DATACENTER_IP)}" == "14"


def test_status_enums_follow_the_api() -> None:
    assert {m.name: m.value for m in AccountStatus} == {"DISABLED": 0, "ENABLED": 1}
    assert {m.name: m.value for m in StaticIpStatus} == {
        "VALID": 1,
        "INVALID": 2,
        "EXPIRING_SOON": 3,
        "MAINTENANCE": 4,
    }


@pytest.mark.parametrize(
    ("status", "enabled"),
    [(AccountStatus.ENABLED, True), (AccountStatus.DISABLED, False), (None, False), (7, False)],
)
def test_account_enabled(status: object, enabled: bool) -> None:
    assert account(status=status).enabled is enabled


def test_account_repr_hides_the_password() -> None:
    item = account()
    assert "Pw0rdSecret" not in repr(item)
    assert "Pw0rdSecret" not in str(item)
    assert "user01" in repr(item)
    assert item.password == "Pw0rdSecret"  # still there for whoever asks for it


def test_account_units_are_kept_as_given() -> None:
    # usage_flow is KB and limit_flow GB: no conversion happens in the model.
    item = account(usage_flow=1_048_576, limit_flow=1)
    assert (item.usage_flow, item.limit_flow) == (1_048_576, 1)


MODELS = [
    account(),
    DailyUsage(day=date(2022, 8, 1), flow=10),
    Order(created_at=None, pay_at=None, title="入门级"),
    Product(id=1, created_at=None, expired_at=None, product_type=9, trade_no="T", order=None),
    ProductPage(items=(), page=1, page_size=20, total_count=0, total_page=0),
    LocationItem("US", "California", "LosAngeles", "NA"),
    CountryLocations("US", "United States", "美国", "NA", ()),
    StaticIp(raw={}, ip="1.2.3.4", port=80),
    StaticIpPage(items=(), raw=None),
    Proxy("1.2.3.4", 8080),
]


@pytest.mark.parametrize("value", MODELS, ids=lambda v: type(v).__name__)
def test_models_are_frozen_and_slotted(value: object) -> None:
    assert dataclasses.is_dataclass(value)
    first = dataclasses.fields(value)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(value, first, None)
    assert not hasattr(value, "__dict__")


@pytest.mark.parametrize("value", MODELS, ids=lambda v: type(v).__name__)
def test_models_survive_pickling(value: object) -> None:
    assert pickle.loads(pickle.dumps(value)) == value


def test_static_ip_hides_the_raw_payload() -> None:
    item = StaticIp(raw={"password": "RawSecret1"}, ip="1.2.3.4", port=80)
    page = StaticIpPage(items=(item,), raw={"list": [{"password": "RawSecret1"}]})
    assert "RawSecret1" not in repr(item)
    assert "RawSecret1" not in repr(page)
    assert item.raw["password"] == "RawSecret1"


def test_country_locations_states_and_cities_keep_order_without_repeats() -> None:
    country = CountryLocations(
        "US",
        "United States",
        "美国",
        "NA",
        (
            LocationItem("US", "Texas", "Austin"),
            LocationItem("US", "California", "LosAngeles"),
            LocationItem("US", "Texas", "Dallas"),
            LocationItem("US", "Texas", "Austin"),
            LocationItem("US", None, None),
            LocationItem("US", "California", None),
        ),
    )
    assert country.states == ("Texas", "California")
    assert country.cities() == ("Austin", "LosAngeles", "Dallas")
    assert country.cities("Texas") == ("Austin", "Dallas")
    assert country.cities("texas") == ()  # exact tokens; case-folding is the catalog's job
    assert country.cities("Nowhere") == ()


# -- Proxy ----------------------------------------------------------------------------------


def test_proxy_str_and_repr_show_host_and_port_only() -> None:
    proxy = Proxy(
        "1.2.3.4", 8080, username="user01", password="Pw0rdSecret", geo=Geo("US", "California")
    )
    assert str(proxy) == "1.2.3.4:8080"
    assert repr(proxy) == "Proxy('1.2.3.4:8080', geo='US/California')"
    assert "Pw0rdSecret" not in repr(proxy) and "user01" not in repr(proxy)
    assert "Pw0rdSecret" not in f"{proxy}"


def test_proxy_url_carries_percent_encoded_credentials() -> None:
    proxy = Proxy("1.2.3.4", 8080, username="us er", password="p@ss:w/rd")
    assert proxy.url == "http://us%20er:p%40ss%3Aw%2Frd@1.2.3.4:8080"
    assert Proxy("1.2.3.4", 1, username="u").url == "http://u@1.2.3.4:1"
    assert Proxy("1.2.3.4", 1).url == "http://1.2.3.4:1"
    assert Proxy("1.2.3.4", 1, scheme="socks5").url == "socks5://1.2.3.4:1"


@pytest.mark.parametrize(
    "secret",
    [
        "plain_User-1.x~",
        "",
        "ü",
        "Ä1",
        "a b",
        "a/b",
        "a:b",
        "a@b",
        "%41",
        "a\nb",
        "é\u200b",
        "+=&?#",
    ],
)
def test_proxy_url_encodes_credentials_exactly_as_quote_does(secret: str) -> None:
    # The URL skips quote() for plain ASCII names: it must agree with quote() on everything.
    proxy = Proxy("1.2.3.4", 1, username=secret, password=secret)
    encoded = quote(secret, safe="")
    assert proxy.url == f"http://{encoded}:{encoded}@1.2.3.4:1"


def test_proxy_url_is_built_once_and_never_outlives_a_change() -> None:
    proxy = Proxy("1.2.3.4", 8080, username="user01", password="old")
    first = proxy.url
    assert proxy.url is first  # cached: asked for on every request the proxy carries
    assert proxy == Proxy("1.2.3.4", 8080, username="user01", password="old")  # cache ignored
    assert hash(proxy) == hash(Proxy("1.2.3.4", 8080, username="user01", password="old"))
    changed = dataclasses.replace(proxy, password="new")
    assert changed.url == "http://user01:new@1.2.3.4:8080"
    assert "old" not in repr(proxy) and "user01" not in repr(proxy)
    again = pickle.loads(pickle.dumps(proxy))
    assert again == proxy and again.url == first


def test_proxy_ipv6_is_bracketed() -> None:
    proxy = Proxy("2001:db8::1", 3128)
    assert proxy.address == "[2001:db8::1]:3128"
    assert proxy.url == "http://[2001:db8::1]:3128"


def test_proxy_equality_ignores_geo_but_not_credentials() -> None:
    a = Proxy("1.2.3.4", 80, geo=Geo("US"))
    assert a == Proxy("1.2.3.4", 80, geo=Geo("DE"))
    assert hash(a) == hash(Proxy("1.2.3.4", 80))
    assert a != Proxy("1.2.3.4", 81)
    assert Proxy("1.2.3.4", 80, username="a", password="x") != Proxy(
        "1.2.3.4", 80, username="a", password="y"
    )


def test_proxy_keyword_only_options() -> None:
    with pytest.raises(TypeError):
        Proxy("1.2.3.4", 80, "https")  # type: ignore[misc]
