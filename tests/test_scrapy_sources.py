"""Real Scrapy crawls through each source but extraction (``PROXYPOOL_SOURCE``): your own list
(``PROXYPOOL_PROXY_LIST``, and a scrapy-rotating-proxies project switched by its middleware line),
and the account's static IPs (``"static"``, from the provider simulator). Real relays, a recording
target site; every crawl logs at DEBUG and no secret may reach the log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _scrapy_crawls import CrawlResult, run_crawl

from proxypool.sim.provider import ProviderSimulator
from proxypool.sim.relays import RelayFleet
from proxypool.sim.target import TargetSite

pytestmark = pytest.mark.timeout(90)

KEY = "KEYs3cr3tXYZ1234567890"
PASSWORD = "relayPwS3cret7"


@pytest.fixture
def auth_fleet(make_relay_fleet: Any) -> RelayFleet:
    """3 relays that require ``user:PASSWORD`` (so credentials must reach them, and only them)."""
    fleet: RelayFleet = make_relay_fleet(3, auth=("user", PASSWORD))
    return fleet


@pytest.fixture
def sim() -> Iterator[ProviderSimulator]:
    simulator = ProviderSimulator(app_key=KEY).start()
    yield simulator
    simulator.stop()


def pages_of(site: TargetSite) -> set[str]:
    return {"/"} | {f"/page/{n}" for n in range(site.pages)}


def assert_every_page_through(
    result: CrawlResult, site: TargetSite, relays: set[str], *secrets: str
) -> None:
    assert result.returncode == 0, result
    assert result.finish_reason == "finished", result
    assert pages_of(site) <= result.ok_paths(), result
    hits = site.hits()
    assert site.direct_hits() == []
    assert {hit.relay for hit in hits} <= relays
    for secret in (KEY, PASSWORD, *secrets):
        assert secret not in result.log and secret not in result.output
        assert all(secret not in value for hit in hits for _, value in hit.headers)


def test_a_list_file_feeds_the_pool(
    tmp_path: Path, auth_fleet: RelayFleet, target_site: TargetSite
) -> None:
    dead = auth_fleet.relays[2]
    auth_fleet.kill(dead.name)
    listing = tmp_path / "proxies.txt"
    listing.write_text(
        "# the team's proxies\n"
        + "".join(
            f"http://user:{PASSWORD}@{relay.address}  # {relay.name}\n" for relay in auth_fleet
        )
    )
    result = run_crawl(
        tmp_path,
        follow=True,
        start=[{"url": target_site.url_for("/")}],
        settings={"PROXYPOOL_PROXY_LIST": str(listing), "PROXYPOOL_MIN_SIZE": 5},
    )  # no app_key, no API URL: a list needs neither
    assert_every_page_through(result, target_site, {"relay-0", "relay-1"})
    assert set(target_site.hits_by_relay()) == {"relay-0", "relay-1"}
    stats = result.proxypool_stats()
    assert stats["proxypool/minted"] >= 3
    assert "proxypool/extracted" not in stats
    assert stats["proxypool/rejected"] >= 1  # the dead one, dropped on arrival


def test_a_scrapy_rotating_proxies_project_switches_by_its_middleware_line(
    tmp_path: Path, relay_fleet: RelayFleet, target_site: TargetSite
) -> None:
    listing = tmp_path / "proxies.txt"
    listing.write_text("".join(f"{relay.address}\n" for relay in relay_fleet))
    target_site.ban("relay-1", 403)
    # A scrapy-rotating-proxies project's settings, as its README writes them, with one line
    # changed: RotatingProxyMiddleware -> ProxyPoolMiddleware.
    settings = {
        "ADDONS": {},
        "ROTATING_PROXY_LIST_PATH": str(listing),
        "ROTATING_PROXY_PAGE_RETRY_TIMES": 5,
        "DOWNLOADER_MIDDLEWARES": {
            # "rotating_proxies.middlewares.RotatingProxyMiddleware": 610,
            "scrapy_ext.ProxyPoolMiddleware": 560,
            "rotating_proxies.middlewares.BanDetectionMiddleware": 620,
        },
        "PROXYPOOL_MIN_SIZE": None,
        "PROXYPOOL_BATCH": None,
    }
    result = run_crawl(
        tmp_path, follow=True, start=[{"url": target_site.url_for("/")}], settings=settings
    )
    assert_every_page_through(result, target_site, set(relay_fleet.names))
    served = {hit.relay for hit in target_site.hits() if not hit.banned}
    assert served == set(relay_fleet.names) - {"relay-1"}
    assert result.proxypool_stats()["proxypool/bans/403"] >= 1

    # The inline form, ROTATING_PROXY_LIST, is read the same way.
    inline = dict(settings, ROTATING_PROXY_LIST=[r.address for r in relay_fleet][:1])
    del inline["ROTATING_PROXY_LIST_PATH"]
    target_site.clear()
    again = run_crawl(
        tmp_path, follow=False, start=[{"url": target_site.url_for("/")}], settings=inline
    )
    assert again.returncode == 0, again
    assert {hit.relay for hit in target_site.hits()} == {"relay-0"}


def test_a_list_with_a_geography_stops_before_anything_is_sent(
    tmp_path: Path, relay_fleet: RelayFleet, target_site: TargetSite
) -> None:
    listed = {"PROXYPOOL_PROXY_LIST": [relay_fleet.relays[0].address]}
    by_setting = run_crawl(
        tmp_path,
        start=[{"url": target_site.url_for("/")}],
        settings={**listed, "PROXYPOOL_GEO": "US"},
    )
    assert by_setting.finish_reason == "proxypool_misconfigured", by_setting
    assert "PROXYPOOL_GEO: a proxy list has no geography" in by_setting.stat("proxypool/error")
    by_spider = run_crawl(
        tmp_path, start=[{"url": target_site.url_for("/")}], settings=listed, geo="US"
    )
    assert by_spider.finish_reason == "proxypool_invalid_geo", by_spider
    assert "no geography" in by_spider.stat("proxypool/error"), by_spider
    by_request = run_crawl(
        tmp_path,
        start=[
            {"url": target_site.url_for("/page/1"), "meta": {"proxypool_geo": "US"}},
            {"url": target_site.url_for("/page/2")},
        ],
        settings=listed,
    )
    assert by_request.returncode == 0, by_request
    assert by_request.ok_paths() == {"/page/2"}
    assert by_request.error_paths() == {"/page/1"}
    assert "no geography" in by_request.log
    assert [hit.path for hit in target_site.hits()] == ["/page/2"]


def test_static_ips_feed_the_pool(
    tmp_path: Path, auth_fleet: RelayFleet, target_site: TargetSite, sim: ProviderSimulator
) -> None:
    live = auth_fleet.relays[:3]
    sim.set_static_ips(
        [relay.address for relay in live],
        credentials=("user", PASSWORD),
        extra=[{"port": 1}, {"ip": "127.0.0.1", "port": 2, "status": 2}],  # no address; invalid
    )
    target_site.ban(live[2].name, 403)  # a ban moves its requests to the other static IPs
    result = run_crawl(
        tmp_path,
        env=sim.env(),
        follow=True,
        start=[{"url": target_site.url_for("/")}],
        settings={"PROXYPOOL_SOURCE": "static", "PROXYPOOL_MIN_SIZE": 2},
    )
    assert_every_page_through(result, target_site, {"relay-0", "relay-1", "relay-2"})
    served = {hit.relay for hit in target_site.hits() if not hit.banned}
    assert served == {"relay-0", "relay-1"}
    assert result.stat("proxypool/bans/403") >= 1
    stats = result.proxypool_stats()
    assert "proxypool/extracted" not in stats and stats["proxypool/minted"] >= 2
    assert sim.extraction_calls() == []  # nothing bought
    assert len(sim.calls("ip/get-static-ip")) >= 1


def test_static_ips_are_matched_by_country_per_request(
    tmp_path: Path, auth_fleet: RelayFleet, target_site: TargetSite, sim: ProviderSimulator
) -> None:
    us, de = auth_fleet.relays[0], auth_fleet.relays[1]
    sim.set_static_ips(
        [us.address],
        credentials=("user", PASSWORD),
        extra=[
            {
                "ip": de.host,
                "port": de.port,
                "country_code": "DE",
                "status": 1,
                "product_type": 25,
                "username": "user",
                "password": PASSWORD,
            }
        ],
    )
    result = run_crawl(
        tmp_path,
        env=sim.env(),
        start=[
            {"url": target_site.url_for(f"/page/{n}"), "meta": {"proxypool_geo": "DE"}}
            for n in range(4)
        ]
        + [{"url": target_site.url_for(f"/page/{n}")} for n in range(4, 8)],
        settings={"PROXYPOOL_SOURCE": "static", "PROXYPOOL_MIN_SIZE": 1},
    )
    assert result.returncode == 0, result
    assert result.ok_paths() == {f"/page/{n}" for n in range(8)}
    relay_of = {hit.path: hit.relay for hit in target_site.hits()}
    assert {relay_of[f"/page/{n}"] for n in range(4)} == {de.name}
    assert PASSWORD not in result.log
