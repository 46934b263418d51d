"""The source seam (``proxypool.sources``): the pool takes its geography validator as
``catalog=`` and never probes a source for methods; ``ExtractionSource`` is the provider's
extraction; ``catalog_for`` gives a provider-backed source its catalog, by type."""

from __future__ import annotations

from typing import Any

import pytest
from _helpers import ListSource
from _provider import KEY, PREFIX, envelope, make_client
from pytest_httpserver import HTTPServer

import proxypool.pool
from proxypool import ProxyPool, ProxySource
from proxypool.errors import ConfigError
from proxypool.geo import Geo, LocationCatalog
from proxypool.models import CountryLocations, Proxy
from proxypool.sources import CheckedSource, ExtractionSource, catalog_for

STATES = [
    {
        "country_code": "US",
        "name_en": "United States",
        "name_zh_cn": "美国",
        "continent_code": "NA",
        "list": [{"name": "California"}],
    }
]


class LooksLikeAProvider(ListSource):
    """A source of the user's own that happens to have the provider's location calls: the pool
    must not take them for a catalog (it used to, by probing)."""

    def __init__(self) -> None:
        super().__init__([Proxy("10.0.0.1", 8000)])
        self.listed = 0

    def list_state_catalog(self) -> list[CountryLocations]:
        self.listed += 1
        raise AssertionError("probed for a location list")

    list_city_catalog = list_state_catalog


def test_the_pool_does_not_probe_a_source_for_a_catalog() -> None:
    source = LooksLikeAProvider()
    pool = ProxyPool(source, geo="us/california", min_size=0, refill_runner=lambda job: job())
    pool.get(timeout=1)
    assert source.listed == 0
    assert source.calls == [Geo("us", "california")]  # as given: nothing validated it


def test_a_catalog_given_is_the_one_used() -> None:
    class Catalog:
        def __init__(self) -> None:
            self.seen: list[Geo] = []

        def validate(self, geo: Any) -> Geo:
            self.seen.append(Geo.coerce(geo))
            return Geo("US", "California")

    catalog = Catalog()
    source = ListSource([Proxy("10.0.0.1", 8000)])
    pool = ProxyPool(source, geo="us/california", catalog=catalog, min_size=0)
    pool.get(timeout=5)
    assert catalog.seen == [Geo("us", "california")]
    assert source.calls == [Geo("US", "California")]


def test_a_provider_client_still_makes_its_own_catalog(httpserver: HTTPServer) -> None:
    """``ProxyPool(client)`` keeps working: the client's location lists validate the geography
    before anything is bought."""
    httpserver.expect_request(f"{PREFIX}/ip/dynamic-states").respond_with_json(envelope(STATES))
    client = make_client(httpserver)
    for source in (client, ExtractionSource(client), CheckedSource(ExtractionSource(client))):
        catalog = catalog_for(source)
        assert isinstance(catalog, LocationCatalog)
        with pytest.raises(ConfigError, match="unknown state 'Texsa' in US"):
            catalog.validate("US/Texsa")
    pool = ProxyPool(client, geo="US/Californa", min_size=0)
    with pytest.raises(ConfigError, match="unknown state 'Californa' in US"):
        pool.get(timeout=5)
    assert all("/ip/v3" not in str(entry[0].url) for entry in httpserver.log)  # nothing bought


def test_catalog_for_any_other_source_is_none() -> None:
    assert catalog_for(ListSource([])) is None
    assert catalog_for(CheckedSource(LooksLikeAProvider())) is None


def test_extraction_source_extracts_through_its_client(httpserver: HTTPServer) -> None:
    answer = envelope([{"ip": "10.1.2.3", "port": 4000}])
    httpserver.expect_request(f"{PREFIX}/ip/v3").respond_with_json(answer)
    source = ExtractionSource(make_client(httpserver))
    assert source.paid is True
    assert source.extract(None, num=1, life=5) == [Proxy("10.1.2.3", 4000)]
    assert KEY not in repr(source)


def test_extraction_source_needs_a_provider_client() -> None:
    with pytest.raises(ConfigError) as caught:
        ExtractionSource(ListSource([]))  # type: ignore[arg-type]
    assert caught.value.field == "client"


def test_the_old_import_paths_still_work() -> None:
    """``ProxySource`` moved to ``proxypool.sources``; ``proxypool.ProxySource`` and
    ``proxypool.pool.ProxySource`` are the same protocol."""
    from proxypool import sources

    assert ProxySource is sources.ProxySource is proxypool.pool.ProxySource
    assert proxypool.pool.ExtractedBatch is sources.ExtractedBatch
