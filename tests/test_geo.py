"""Tests for proxypool.geo: the Geo value and LocationCatalog (validation against the provider's
cached location lists, suggestions, caching and single-flight fetches).

The catalog's client is a small fake with the two list methods, counting calls (the catalog's
own logic is under test, the HTTP is not); one test runs it on the real ProviderClient against
pytest-httpserver.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pytest
from _provider import envelope, make_client
from hypothesis import given
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer

from proxypool.errors import ApiConnectionError, ConfigError, InvalidGeo
from proxypool.geo import Geo, LocationCatalog
from proxypool.models import CountryLocations, LocationItem

# country -> (English name, {state: [cities]})
PLACES: dict[str, tuple[str, dict[str, list[str]]]] = {
    "US": (
        "United States",
        {
            "California": ["LosAngeles", "SanFrancisco", "SanDiego"],
            "NewYork": ["NewYork", "Buffalo"],
            "Texas": ["Houston", "Austin"],
        },
    ),
    "DE": ("Germany", {"Bayern": ["Munchen"], "Berlin": ["Berlin"]}),
    "GB": ("United Kingdom", {"England": []}),
}


def location_json(with_cities: bool) -> dict[str, Any]:
    """The provider's ``data`` for ip/dynamic-citys (with_cities) or ip/dynamic-states."""
    countries = []
    for code, (name, states) in PLACES.items():
        items: list[dict[str, Any]] = []
        for state, cities in states.items():
            if with_cities:
                items += [
                    {"city": c, "state": state, "continent_code": "X", "country_code": code}
                    for c in cities
                ]
            else:
                items.append({"state": state, "continent_code": "X", "country_code": code})
        countries.append(
            {
                "name_zh_cn": name,
                "name_en": name,
                "continent_code": "X",
                "country_code": code,
                "items": items,
            }
        )
    return {"list": countries}


def as_models(data: Mapping[str, Any]) -> list[CountryLocations]:
    return [
        CountryLocations(
            country_code=c["country_code"],
            name_en=c["name_en"],
            name_zh_cn=c["name_zh_cn"],
            continent_code=c["continent_code"],
            items=tuple(
                LocationItem(
                    country_code=i["country_code"], state=i.get("state"), city=i.get("city")
                )
                for i in c["items"]
            ),
        )
        for c in data["list"]
    ]


class FakeLocations:
    """The two catalog calls of ProviderClient, counting calls; can fail or block on demand."""

    def __init__(self) -> None:
        self.calls = {"states": 0, "cities": 0}
        self.errors: list[BaseException] = []
        self.gate: threading.Event | None = None

    def _answer(self, kind: str) -> list[CountryLocations]:
        self.calls[kind] += 1
        if self.gate is not None:
            assert self.gate.wait(5), "test gate never opened"
        if self.errors:
            raise self.errors.pop(0)
        return as_models(location_json(with_cities=kind == "cities"))

    def list_state_catalog(self) -> list[CountryLocations]:
        return self._answer("states")

    def list_city_catalog(self) -> list[CountryLocations]:
        return self._answer("cities")


class FakeTimer:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def source() -> FakeLocations:
    return FakeLocations()


@pytest.fixture
def timer() -> FakeTimer:
    return FakeTimer()


@pytest.fixture
def catalog(source: FakeLocations, timer: FakeTimer) -> LocationCatalog:
    return LocationCatalog(source, ttl=3600, timer=timer)


# -- Geo --------------------------------------------------------------------------------------

TOKEN = st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,12}", fullmatch=True)


@given(
    country=st.from_regex(r"[A-Z]{2}", fullmatch=True),
    state=st.none() | TOKEN,
    city=st.none() | TOKEN,
)
def test_geo_parse_and_str_round_trip(country: str, state: str | None, city: str | None) -> None:
    geo = Geo(country, state, city if state else None)
    assert Geo.parse(str(geo)) == geo
    assert Geo.coerce(str(geo)) == geo


def test_geo_forms() -> None:
    assert str(Geo.parse("us/California/LosAngeles")) == "US/California/LosAngeles"
    assert Geo.parse("") == Geo.parse("*") == Geo() == Geo.coerce(None)
    assert str(Geo()) == "*" and Geo().is_anywhere
    assert Geo.coerce({"country": "de", "state": "Bayern"}) == Geo("DE", "Bayern")


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("USA", "country"),
        ("US/Cal/LA/x", "geo"),
        ("US//LA", "geo"),
        ({"country": "US", "town": "x"}, "geo"),
        ({"state": "California"}, "country"),
        (42, "geo"),
    ],
)
def test_geo_rejects_malformed_input(value: object, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Geo.coerce(value)  # type: ignore[arg-type]
    assert info.value.field == field


# -- LocationCatalog: validation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_geo", "canonical"),
    [
        ("us/california", "US/California"),
        ("US/CALIFORNIA/losangeles", "US/California/LosAngeles"),
        ("us/new york", "US/NewYork"),  # spaces and case ignored when nothing matches exactly
        ("US/California/los angeles", "US/California/LosAngeles"),
        ("de/bayern/munchen", "DE/Bayern/Munchen"),
        (Geo("US", None, "houston"), "US/Houston"),  # a city without its state
        ("gb", "GB"),
    ],
)
def test_validate_returns_the_providers_spelling(
    catalog: LocationCatalog, given_geo: Geo | str, canonical: str
) -> None:
    assert str(catalog.validate(given_geo)) == canonical


def test_anywhere_needs_no_lists(catalog: LocationCatalog, source: FakeLocations) -> None:
    assert catalog.validate(None) == Geo()
    assert catalog.validate("*") == Geo()
    assert source.calls == {"states": 0, "cities": 0}


def test_city_list_is_fetched_only_for_cities(
    catalog: LocationCatalog, source: FakeLocations
) -> None:
    catalog.validate("US")
    catalog.validate("US/Texas")
    assert source.calls == {"states": 1, "cities": 0}
    catalog.validate("US/Texas/Austin")
    assert source.calls == {"states": 1, "cities": 1}


def test_unknown_state_suggests_close_matches(catalog: LocationCatalog) -> None:
    with pytest.raises(InvalidGeo) as info:
        catalog.validate("US/Califronia")
    assert info.value.field == "state"
    assert info.value.suggestions == ("California",)
    assert "did you mean California?" in str(info.value)
    assert "'Califronia'" in str(info.value)


def test_unknown_country(catalog: LocationCatalog) -> None:
    with pytest.raises(InvalidGeo) as info:
        catalog.validate("ZZ")
    assert info.value.field == "country"
    assert "'ZZ'" in str(info.value)


def test_unknown_city_suggests_close_matches(catalog: LocationCatalog) -> None:
    with pytest.raises(InvalidGeo) as info:
        catalog.validate("US/California/LosAngles")
    assert info.value.field == "city"
    assert info.value.suggestions[0] == "LosAngeles"
    assert "did you mean LosAngeles" in str(info.value)


def test_city_in_the_wrong_state_says_where_it_is(catalog: LocationCatalog) -> None:
    with pytest.raises(InvalidGeo) as info:
        catalog.validate("US/Texas/LosAngeles")
    assert info.value.suggestions == ("LosAngeles",)
    assert "listed under California" in str(info.value)


def test_nothing_close_gives_no_suggestions(catalog: LocationCatalog) -> None:
    with pytest.raises(InvalidGeo) as info:
        catalog.validate("US/Qwxzv")
    assert info.value.suggestions == ()
    assert "did you mean" not in str(info.value)


def test_malformed_geo_fails_before_any_fetch(
    catalog: LocationCatalog, source: FakeLocations
) -> None:
    with pytest.raises(ConfigError) as info:
        catalog.validate("United States")
    assert not isinstance(info.value, InvalidGeo)
    assert source.calls == {"states": 0, "cities": 0}


def test_listings(catalog: LocationCatalog) -> None:
    assert catalog.countries() == ("US", "DE", "GB")
    assert catalog.states("us") == ("California", "NewYork", "Texas")
    assert catalog.cities("US", "california") == ("LosAngeles", "SanFrancisco", "SanDiego")
    assert catalog.cities("de") == ("Munchen", "Berlin")
    assert catalog.cities("GB", "England") == ()
    with pytest.raises(InvalidGeo):
        catalog.states("ZZ")
    with pytest.raises(InvalidGeo):
        catalog.cities("US", "Nevada")


# -- LocationCatalog: caching and fetching ----------------------------------------------------


def test_one_fetch_serves_every_validation_within_the_ttl(
    catalog: LocationCatalog, source: FakeLocations, timer: FakeTimer
) -> None:
    for text in ["US", "US/California", "us/texas/austin", "DE/Berlin/Berlin", "GB"] * 3:
        catalog.validate(text)
    assert source.calls == {"states": 1, "cities": 1}
    timer.advance(3599)
    catalog.validate("US/California/SanDiego")
    assert source.calls == {"states": 1, "cities": 1}
    timer.advance(2)
    catalog.validate("US/California/SanDiego")
    assert source.calls == {"states": 2, "cities": 2}


def test_default_ttl_is_six_hours(source: FakeLocations, timer: FakeTimer) -> None:
    catalog = LocationCatalog(source, timer=timer)
    catalog.validate("US")
    timer.advance(6 * 3600 - 1)
    catalog.validate("US")
    assert source.calls["states"] == 1
    timer.advance(2)
    catalog.validate("US")
    assert source.calls["states"] == 2


def test_clear_forgets_the_lists(catalog: LocationCatalog, source: FakeLocations) -> None:
    catalog.validate("US")
    catalog.clear()
    catalog.validate("US")
    assert source.calls["states"] == 2


def test_failed_fetch_propagates_and_is_not_cached(
    catalog: LocationCatalog, source: FakeLocations, timer: FakeTimer
) -> None:
    source.errors.append(ApiConnectionError("provider unreachable"))
    with pytest.raises(ApiConnectionError):
        catalog.validate("US")
    timer.advance(1.0)  # the default retry_delay
    assert catalog.validate("us") == Geo("US")
    assert source.calls["states"] == 2


def test_failed_fetch_backs_off_instead_of_hammering(
    catalog: LocationCatalog, source: FakeLocations, timer: FakeTimer
) -> None:
    source.errors.extend([ApiConnectionError("down"), ApiConnectionError("still down")])
    with pytest.raises(ApiConnectionError, match="down"):
        catalog.validate("US")
    for _ in range(50):  # every request needing a geography, within the retry delay
        with pytest.raises(ApiConnectionError, match="down"):
            catalog.validate("US")
    assert source.calls["states"] == 1
    timer.advance(1.0)
    with pytest.raises(ApiConnectionError, match="still down"):
        catalog.validate("US")
    assert source.calls["states"] == 2
    timer.advance(1.0)  # the delay doubled after the second failure in a row
    with pytest.raises(ApiConnectionError, match="still down"):
        catalog.validate("US")
    assert source.calls["states"] == 2
    timer.advance(1.0)
    assert catalog.validate("us") == Geo("US")
    assert source.calls["states"] == 3


def test_concurrent_validations_share_one_fetch(
    catalog: LocationCatalog, source: FakeLocations
) -> None:
    source.gate = threading.Event()
    results: list[Geo] = []
    barrier = threading.Barrier(9)

    def worker() -> None:
        barrier.wait()
        results.append(catalog.validate("us/california"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    barrier.wait()
    source.gate.set()
    for thread in threads:
        thread.join(5)
    assert results == [Geo("US", "California")] * 8
    assert source.calls == {"states": 1, "cities": 0}


def test_waiters_of_a_failed_fetch_get_its_error(
    catalog: LocationCatalog, source: FakeLocations
) -> None:
    source.gate = threading.Event()
    failure = ApiConnectionError("provider unreachable")
    source.errors.append(failure)
    caught: list[BaseException] = []
    started = threading.Barrier(5)

    def worker() -> None:
        started.wait()
        try:
            catalog.validate("US")
        except ApiConnectionError as exc:
            caught.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    # Whether the other three are already waiting for the fetch or arrive after it failed
    # (inside the retry delay: the fake timer does not move), they share its one failure.
    while source.calls["states"] == 0:
        threading.Event().wait(0.001)
    source.gate.set()
    for thread in threads:
        thread.join(5)
    assert source.calls["states"] == 1
    assert caught == [failure] * 4


@pytest.mark.parametrize("ttl", [0, -5, float("inf"), float("nan"), 10**400, "1h", True])
def test_bad_ttl(source: FakeLocations, ttl: object) -> None:
    with pytest.raises(ConfigError) as info:
        LocationCatalog(source, ttl=ttl)  # type: ignore[arg-type]
    assert info.value.field == "ttl"


def test_client_without_location_calls(source: FakeLocations) -> None:
    with pytest.raises(ConfigError) as info:
        LocationCatalog(object())  # type: ignore[arg-type]
    assert info.value.field == "client"


def test_catalog_over_the_real_client(httpserver_ipv4: HTTPServer) -> None:
    """LocationCatalog on ProviderClient against a local stand-in for the provider: the lists'
    JSON as PROVIDER_API.md shows it, each endpoint fetched once for many validations."""
    server = httpserver_ipv4
    server.expect_request("/openapi/ip/dynamic-states").respond_with_json(
        envelope(location_json(with_cities=False))
    )
    server.expect_request("/openapi/ip/dynamic-citys").respond_with_json(
        envelope(location_json(with_cities=True))
    )
    catalog = LocationCatalog(make_client(server))
    assert catalog.validate("us/california/los angeles") == Geo("US", "California", "LosAngeles")
    assert catalog.validate("de/BERLIN") == Geo("DE", "Berlin")
    with pytest.raises(InvalidGeo) as info:
        catalog.validate("US/Texas/Huston")
    assert info.value.suggestions[0] == "Houston"
    paths = [request.path for request, _ in server.log]
    assert sorted(paths) == ["/openapi/ip/dynamic-citys", "/openapi/ip/dynamic-states"]


def test_an_interrupt_during_a_fetch_is_not_handed_to_other_threads(
    catalog: LocationCatalog, source: FakeLocations
) -> None:
    source.errors.append(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        catalog.validate("US")
    # Nothing was remembered: the next lookup fetches again instead of re-raising Ctrl-C.
    assert catalog.validate("us") == Geo("US")
    assert source.calls["states"] == 2
