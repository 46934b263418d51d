"""Real Scrapy crawls through the middleware: each one a ``CrawlerProcess`` in its own subprocess
(the reactor starts once per process), with the default asyncio reactor, through real forward
proxies (proxy.py relays) to a local target site that records which relay carried each request,
with the provider simulated on loopback (``ProviderSimulator``, or pytest-httpserver where the test
states exactly what the provider answers).

Every crawl logs at DEBUG; every test checks the app_key appears in no log line.
"""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from _scrapy_crawls import ROOT, CrawlResult, crawl_env, relay_source, run_crawl
from pytest_httpserver import HTTPServer
from werkzeug import Request as WerkzeugRequest
from werkzeug import Response as WerkzeugResponse

from proxypool.sim.provider import ProviderSimulator
from proxypool.sim.relays import RelayFleet
from proxypool.sim.target import TargetSite

pytestmark = pytest.mark.timeout(90)

KEY = "KEYs3cr3tXYZ1234567890"
EXAMPLE = ROOT / "examples" / "scrapy_project"


@pytest.fixture
def make_sim() -> Iterator[Callable[..., ProviderSimulator]]:
    sims: list[ProviderSimulator] = []

    def make(addresses: dict[str | None, list[str]], **kwargs: Any) -> ProviderSimulator:
        sim = ProviderSimulator(app_key=KEY, address_source=relay_source(addresses), **kwargs)
        sims.append(sim)
        return sim.start()

    yield make
    for sim in sims:
        sim.stop()


def everywhere(fleet: RelayFleet) -> dict[str | None, list[str]]:
    return {None: [relay.address for relay in fleet]}


def assert_clean(result: CrawlResult, *secrets: str) -> None:
    """The crawl ended on its own and no secret reached a log line (the log is at DEBUG)."""
    assert result.returncode == 0, result
    assert "DEBUG" in result.log
    # Nothing of ours trips a Scrapy deprecation warning (it would land in every user's log).
    deprecated = [
        line
        for line in result.log.splitlines()
        if "DeprecationWarning" in line and ("proxypool" in line.lower() or "scrapy_ext" in line)
    ]
    assert not deprecated, deprecated
    for secret in (KEY, *secrets):
        assert secret not in result.log, f"secret in the crawl log:\n{result}"
        assert secret not in result.output


def page_paths(site: TargetSite) -> set[str]:
    return {"/"} | {f"/page/{n}" for n in range(site.pages)}


# -- rotation, fail closed, stats ------------------------------------------------------------------


def test_rotation_fail_closed_and_stats(
    tmp_path: Path,
    relay_fleet: RelayFleet,
    target_site: TargetSite,
    make_sim: Callable[..., ProviderSimulator],
) -> None:
    sim = make_sim(everywhere(relay_fleet))
    own_relay = relay_fleet["relay-3"]
    result = run_crawl(
        tmp_path,
        env=sim.env(),
        geo="us/california",
        follow=True,
        start=[
            {"url": target_site.url_for("/")},
            {"url": target_site.url_for("/echo?disabled"), "meta": {"proxypool_disable": True}},
            {"url": target_site.url_for("/echo?own"), "meta": {"proxy": own_relay.url}},
            {"url": target_site.url_for("/status/500")},
        ],
    )
    assert_clean(result)
    assert result.finish_reason == "finished"
    pages = page_paths(target_site)
    assert pages <= result.ok_paths()

    hits = target_site.hits()
    page_hits = [hit for hit in hits if hit.path in pages]
    assert len(page_hits) == len(pages)
    assert all(hit.relay in relay_fleet.names for hit in page_hits), hits
    assert set(target_site.hits_by_relay()) >= set(relay_fleet.names)  # every relay carried some
    # Fail closed: the one request that came without a proxy is the one marked so.
    assert [hit.path for hit in target_site.direct_hits()] == ["/echo"]
    echo = [hit for hit in hits if hit.path == "/echo" and not hit.direct]
    assert [hit.relay for hit in echo] == ["relay-3"]  # the user's own proxy, left alone

    # Scrapy's RetryMiddleware still retries what is not a proxy's fault (2 retries by default),
    # each attempt through the pool.
    errors = [hit for hit in hits if hit.path == "/status/500"]
    assert len(errors) == 3 and all(hit.relay in relay_fleet.names for hit in errors)
    assert result.stat("retry/count") == 2

    stats = result.proxypool_stats()
    assert stats["proxypool/requests"] == len(pages) + 3  # the two marked requests are not ours
    assert stats["proxypool/refills"] >= 1
    assert stats["proxypool/extracted"] >= 4
    assert stats["proxypool/live/US/California"] == 4
    assert "proxypool/retries" not in stats
    assert result.slots == ["127.0.0.1"]  # throttling stays per site
    assert result.log.count("proxypool: refill for US/California") == stats["proxypool/extractions"]
    # The spider's geography (canonicalised) reached the extraction call.
    extraction = sim.extraction_calls()[0].params
    assert (extraction["cc"], extraction["state"]) == ("US", "California")


def test_spider_and_request_geo_reach_the_extraction_call(
    tmp_path: Path, relay_fleet: RelayFleet, target_site: TargetSite, httpserver: HTTPServer
) -> None:
    """The provider on pytest-httpserver: US/California hands out relay-0/1, JP/Tokyo relay-2/3,
    so the relay that carried each page shows which geography served it."""
    by_country = {
        "US": [relay_fleet["relay-0"].address, relay_fleet["relay-1"].address],
        "JP": [relay_fleet["relay-2"].address, relay_fleet["relay-3"].address],
    }

    def extract(request: WerkzeugRequest) -> WerkzeugResponse:
        addresses = by_country.get(request.args.get("cc", ""), [])
        body = {"code": 200, "msg": "success", "data": {"list": [addresses]}}
        return WerkzeugResponse(json.dumps(body), content_type="application/json")

    def country(code: str, name: str, states: list[str]) -> dict[str, Any]:
        items = [{"state": s, "continent_code": None, "country_code": code} for s in states]
        return {
            "country_code": code,
            "name_en": name,
            "name_zh_cn": name,
            "continent_code": None,
            "items": items,
        }

    states = {
        "code": 200,
        "msg": "success",
        "data": {
            "list": [
                country("US", "United States", ["California", "Texas"]),
                country("JP", "Japan", ["Tokyo", "Osaka"]),
            ]
        },
    }
    httpserver.expect_request("/openapi/ip/dynamic-states").respond_with_json(states)
    httpserver.expect_request("/openapi/ip/v3").respond_with_handler(extract)
    env = {"PROXYPOOL_API_URL": httpserver.url_for("/openapi"), "PROXYPOOL_APP_KEY": KEY}

    result = run_crawl(
        tmp_path,
        env=env,
        geo="us/california",
        start=[
            {"url": target_site.url_for("/page/0")},
            {"url": target_site.url_for("/page/1"), "meta": {"proxypool_geo": "JP/tokyo"}},
            {
                "url": target_site.url_for("/page/2"),
                "meta": {"proxypool_geo": {"country": "jp", "state": "Tokyo"}},
            },
            {"url": target_site.url_for("/page/3"), "meta": {"proxypool_geo": "JP/Tokio"}},
        ],
    )
    assert_clean(result)
    extractions = [
        (r.args.get("cc"), r.args.get("state"))
        for r, _ in httpserver.log
        if r.path.endswith("/ip/v3")
    ]
    assert ("US", "California") in extractions  # the spider's geo, canonical spelling
    assert ("JP", "Tokyo") in extractions  # the requests' geo
    assert not [e for e in extractions if e[1] == "Tokio"]  # an unknown place is never bought

    relay_of = {hit.path: hit.relay for hit in target_site.hits()}
    assert relay_of["/page/0"] in {"relay-0", "relay-1"}
    assert relay_of["/page/1"] in {"relay-2", "relay-3"}
    assert relay_of["/page/2"] in {"relay-2", "relay-3"}
    assert "/page/3" not in relay_of  # dropped, not sent
    assert result.stat("proxypool/bad_geo") == 1
    assert "'Tokio'" in result.log and "did you mean Tokyo" in result.log
    assert [e["url"] for e in result.errors] == [target_site.url_for("/page/3")]
    assert result.finish_reason == "finished"  # a bad request geo does not stop the crawl


# -- stopping before any request -------------------------------------------------------------------


def test_invalid_spider_geo_stops_before_any_request(
    tmp_path: Path,
    relay_fleet: RelayFleet,
    target_site: TargetSite,
    make_sim: Callable[..., ProviderSimulator],
) -> None:
    sim = make_sim(everywhere(relay_fleet))
    result = run_crawl(
        tmp_path, env=sim.env(), geo="US/Califrnia", start=[{"url": target_site.url_for("/")}]
    )
    assert_clean(result)
    assert result.finish_reason == "proxypool_invalid_geo"
    assert target_site.hits() == []
    assert sim.extraction_calls() == []  # no IP was paid for
    error_lines = [line for line in result.log.splitlines() if "ERROR" in line]
    assert any(
        "spider attribute proxypool_geo = 'US/Califrnia'" in line
        and "did you mean California" in line
        for line in error_lines
    ), error_lines
    assert "did you mean California" in result.stat("proxypool/error")


@pytest.mark.parametrize("missing", ["PROXYPOOL_APP_KEY", "PROXYPOOL_API_URL"])
def test_missing_key_or_url_fails_loudly_and_crawls_nothing(
    tmp_path: Path,
    relay_fleet: RelayFleet,
    target_site: TargetSite,
    make_sim: Callable[..., ProviderSimulator],
    missing: str,
) -> None:
    sim = make_sim(everywhere(relay_fleet))
    env = {k: v for k, v in sim.env().items() if k != missing}
    result = run_crawl(tmp_path, env=env, start=[{"url": target_site.url_for("/")}])
    assert_clean(result)
    assert result.finish_reason == "proxypool_misconfigured"
    assert target_site.hits() == []
    assert sim.calls() == []
    assert any(
        "ERROR" in line and f"{missing} is not set" in line for line in result.log.splitlines()
    )


@pytest.mark.parametrize("refusal", ["invalid_key", "real_name_required"])
def test_refused_account_closes_the_spider(
    tmp_path: Path,
    relay_fleet: RelayFleet,
    target_site: TargetSite,
    make_sim: Callable[..., ProviderSimulator],
    refusal: str,
) -> None:
    """Code 3 (invalid app_key) or code 156 (no real-name verification): nothing is crawled and
    the provider is asked once, not hammered."""
    sim = make_sim(everywhere(relay_fleet), real_name_verified=refusal == "invalid_key")
    wrong = "WRONGk3yABCDEF123"
    key = wrong if refusal == "invalid_key" else KEY
    env = {"PROXYPOOL_API_URL": sim.base_url, "PROXYPOOL_APP_KEY": key}
    result = run_crawl(tmp_path, env=env, start=[{"url": target_site.url_for("/")}])
    assert_clean(result, wrong)
    assert result.finish_reason == "proxypool_account_error"
    assert target_site.hits() == []
    code = 3 if refusal == "invalid_key" else 156
    assert [call.code for call in sim.calls()] == [code]
    assert f"code {code}" in result.stat("proxypool/error")


# -- bans, dead proxies, a flaky provider ----------------------------------------------------------


def test_dead_and_banned_relays_are_routed_around(
    tmp_path: Path,
    relay_fleet: RelayFleet,
    target_site: TargetSite,
    make_sim: Callable[..., ProviderSimulator],
) -> None:
    """relay-1 dead (connection refused), relay-2 answered 403, relay-3 a 200 captcha page that
    the ban policy recognises: every page is still fetched, through relay-0."""
    sim = make_sim(everywhere(relay_fleet))
    relay_fleet.kill("relay-1")
    target_site.ban("relay-2", 403)
    target_site.ban("relay-3", captcha=True)
    result = run_crawl(
        tmp_path,
        env=sim.env(),
        follow=True,
        settings={
            "PROXYPOOL_CHECK_PROXIES": False,  # let the dead relay in, to meet it mid-crawl
            "PROXYPOOL_BAN_POLICY": "_scrapy_crawls.CaptchaBanPolicy",
            # Bound: 2 banned relays fail a request once each, the dead one at most
            # max_failures (3) times before eviction, so 6 retries always reach relay-0.
            "PROXYPOOL_MAX_PROXY_RETRIES": 6,
        },
        start=[{"url": target_site.url_for("/")}],
    )
    assert_clean(result)
    pages = page_paths(target_site)
    assert pages <= result.ok_paths()
    assert all(r["status"] == 200 for r in result.responses)
    assert target_site.paths_served_ok() >= pages
    assert {h.relay for h in target_site.hits() if not h.banned} == {"relay-0"}
    assert not target_site.direct_hits()
    stats = result.proxypool_stats()
    assert stats["proxypool/bans/403"] >= 1
    assert stats["proxypool/bans/policy"] >= 1
    assert stats["proxypool/proxy_errors/DownloadConnectionRefusedError"] >= 1
    assert stats["proxypool/retries"] >= 3
    assert "proxypool/retry_exhausted" not in stats


def test_unreachable_proxies_are_rejected_on_arrival(
    tmp_path: Path,
    relay_fleet: RelayFleet,
    target_site: TargetSite,
    make_sim: Callable[..., ProviderSimulator],
) -> None:
    sim = make_sim(everywhere(relay_fleet))
    relay_fleet.kill("relay-1")
    result = run_crawl(
        tmp_path, env=sim.env(), follow=True, start=[{"url": target_site.url_for("/")}]
    )
    assert_clean(result)
    assert page_paths(target_site) <= result.ok_paths()
    stats = result.proxypool_stats()
    assert stats["proxypool/rejected"] == 1
    assert stats["proxypool/live"] == 3
    assert "proxypool/proxy_errors" not in stats  # never handed out
    assert "1 rejected as unreachable" in result.log


def test_flaky_slow_provider_never_blocks_the_loop(
    tmp_path: Path,
    relay_fleet: RelayFleet,
    target_site: TargetSite,
    make_sim: Callable[..., ProviderSimulator],
) -> None:
    """Extractions take 2 s and half of all provider calls answer HTTP 500 (seeded: here the
    first JP extraction answers 500, the client's retry succeeds), while a LoopingCall ticks
    every 20 ms on the reactor: the reactor ticks while each extraction is pending, and requests
    whose geography has no proxy yet wait for the refill."""
    slow = 2.0  # seconds the provider takes to answer an extraction
    sim = make_sim(
        {
            "US": [r.address for r in relay_fleet.relays[:2]],
            "JP": [r.address for r in relay_fleet.relays[2:]],
        },
        rng=random.Random(24),
    )
    sim.set_delay(slow, path="ip/v3")
    sim.fail_rate = 0.5
    start = [{"url": target_site.url_for(f"/page/{n}")} for n in range(6)]
    start += [
        {"url": target_site.url_for(f"/page/{n}"), "meta": {"proxypool_geo": "JP"}}
        for n in range(6, 12)
    ]
    result = run_crawl(tmp_path, env=sim.env(), geo="US", start=start, ticker=0.02)
    assert_clean(result)
    assert {f"/page/{n}" for n in range(12)} <= result.ok_paths()
    relay_of = {hit.path: hit.relay for hit in target_site.hits()}
    assert {relay_of[f"/page/{n}"] for n in range(6, 12)} <= {"relay-2", "relay-3"}
    assert result.stat("proxypool/waits") >= 1  # JP requests waited for their refill
    assert any(call.http_status == 500 for call in sim.calls())  # the provider did fail
    assert len(sim.extraction_calls()) >= 2  # two 2 s extractions at least
    # Never blocked: an extraction's caller waits from before the simulator got the call until
    # after its answer (stamped at call.time, after the delay), so the slow s before call.time
    # lie inside that wait. Had the wait blocked the reactor, no tick could fall in them; a
    # loaded machine may stall the reactor for a moment, but not for a whole window. Judged:
    # each window's part the ticker ran across (it starts once the spider is open, stops once
    # it closes), when that is at least half the window.
    ticks = result.tick_times
    assert ticks, result.ticks
    windows = [(c.time.timestamp() - slow, c.time.timestamp()) for c in sim.extraction_calls()]
    watched = [(max(lo, ticks[0]), min(hi, ticks[-1])) for lo, hi in windows]
    watched = [(lo, hi) for lo, hi in watched if hi - lo >= slow / 2]
    assert len(watched) >= 2, (windows, ticks[0], ticks[-1])
    blocked = [(lo, hi) for lo, hi in watched if not any(lo < tick < hi for tick in ticks)]
    assert blocked == [], (blocked, result.ticks)
    assert result.ticks["count"] >= 100  # ~20 ms ticks over >= 4 s of provider waits


def test_exhausted_pool_drops_requests_instead_of_sending_them_direct(
    tmp_path: Path,
    relay_fleet: RelayFleet,
    target_site: TargetSite,
    make_sim: Callable[..., ProviderSimulator],
) -> None:
    sim = make_sim(everywhere(relay_fleet))
    sim.empty_rate = 1.0  # the provider has nothing to hand out
    result = run_crawl(
        tmp_path,
        env=sim.env(),
        settings={"PROXYPOOL_WAIT_TIMEOUT": 1.0},
        start=[{"url": target_site.url_for(f"/page/{n}")} for n in range(3)],
    )
    assert_clean(result)
    assert target_site.hits() == []
    assert result.stat("proxypool/exhausted") == 3
    assert sorted(e["error"] for e in result.errors) == ["IgnoreRequest"] * 3


# -- https, sessions, slots ------------------------------------------------------------------------


def test_https_target_through_connect_tunnels(
    tmp_path: Path,
    relay_fleet: RelayFleet,
    tls_target_site: TargetSite,
    make_sim: Callable[..., ProviderSimulator],
) -> None:
    sim = make_sim(everywhere(relay_fleet))
    tls_target_site.know_relays(relay_fleet)
    result = run_crawl(
        tmp_path, env=sim.env(), follow=True, start=[{"url": tls_target_site.url_for("/")}]
    )
    assert_clean(result)
    assert page_paths(tls_target_site) <= result.ok_paths()
    hits = tls_target_site.hits()
    assert hits and all(hit.tls and hit.relay in relay_fleet.names for hit in hits)
    target = f"127.0.0.1:{tls_target_site.port}"
    tunnels = [t for relay in relay_fleet for t in relay.tunnels() if t == target]
    assert tunnels  # CONNECT tunnels to the site


def test_sticky_sessions_and_per_proxy_slots(
    tmp_path: Path,
    relay_fleet: RelayFleet,
    target_site: TargetSite,
    make_sim: Callable[..., ProviderSimulator],
) -> None:
    sim = make_sim(everywhere(relay_fleet))
    start = []
    for n in range(18):
        session = ("alpha", "beta", None)[n % 3]
        meta = {"proxypool_session": session} if session else {}
        start.append(
            {
                "url": target_site.url_for(f"/page/{n}"),
                "meta": meta,
                "headers": {"X-Session": session or "none"},
            }
        )
    result = run_crawl(
        tmp_path,
        env=sim.env(),
        start=start,
        # 4 relays < min_size 5: the pool tops itself up in the background while serving.
        settings={"PROXYPOOL_SLOT_PER_PROXY": True, "PROXYPOOL_MIN_SIZE": 5},
    )
    assert_clean(result)
    assert {f"/page/{n}" for n in range(18)} <= result.ok_paths()
    relays: dict[str, set[str | None]] = {"alpha": set(), "beta": set(), "none": set()}
    for hit in target_site.hits():
        relays[hit.header("X-Session") or "none"].add(hit.relay)
    assert len(relays["alpha"]) == 1
    assert len(relays["beta"]) == 1
    assert len(relays["none"]) > 1
    assert set(result.slots) == {f"proxypool:{relay.address}" for relay in relay_fleet}
    assert result.stat("proxypool/extractions") >= 2  # the pre-fill, then a background top-up
    assert "proxypool/waits" not in result.stats  # no request waited for it


# -- the example project ---------------------------------------------------------------------------


def test_example_project_crawls_through_the_pool(
    relay_fleet: RelayFleet,
    target_site: TargetSite,
    make_sim: Callable[..., ProviderSimulator],
) -> None:
    sim = make_sim(everywhere(relay_fleet))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scrapy",
            "crawl",
            "geo",
            "-a",
            f"url={target_site.url_for('/')}",
            "-s",
            "LOG_LEVEL=DEBUG",
            "-s",
            "TELNETCONSOLE_ENABLED=False",
        ],
        cwd=EXAMPLE,
        env=crawl_env(sim.env()),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert KEY not in proc.stderr + proc.stdout
    assert "'finish_reason': 'finished'" in proc.stderr
    assert page_paths(target_site) <= target_site.paths_served_ok()
    assert not target_site.direct_hits()
    calls = sim.extraction_calls()
    assert {(c.params.get("cc"), c.params.get("state")) for c in calls} >= {
        ("US", "California"),
        ("GB", None),
    }


# -- money and bounded waits (issue 12) ------------------------------------------------------------


def test_dead_ips_count_against_max_extracted(tmp_path: Path, target_site: TargetSite) -> None:
    """Every IP the provider hands out refuses connections (the simulator's synthetic ports):
    the check drops them all, yet they count, so the crawl buys at most PROXYPOOL_MAX_EXTRACTED
    and its requests fail visibly instead of waiting while the pool keeps buying."""
    with ProviderSimulator(app_key=KEY) as sim:
        result = run_crawl(
            tmp_path,
            env=sim.env(),
            settings={
                "PROXYPOOL_MAX_EXTRACTED": 10,
                "PROXYPOOL_BATCH": 4,
                "PROXYPOOL_CHECK_TIMEOUT": 1.0,
                "PROXYPOOL_WAIT_TIMEOUT": 8.0,
            },
            start=[{"url": target_site.url_for(f"/page/{n}")} for n in range(3)],
        )
        handed_over = sim.ips_handed_out
    assert_clean(result)
    assert handed_over == 10  # 4 + 4 + 2: never more than the budget left
    assert result.stat("proxypool/extracted") == handed_over
    assert result.stat("proxypool/rejected") == handed_over
    assert result.error_paths() == {f"/page/{n}" for n in range(3)}
    assert all("max_extracted=10" in e["message"] for e in result.errors), result.errors
    assert not target_site.hits()  # nothing went out, through a proxy or without


def cycling_source(addresses: list[str]) -> Callable[..., list[str]]:
    """A ProviderSimulator address source handing out ``addresses`` in turn: each extraction
    gets the next ``num`` of them (fresh IPs, as a real provider's)."""
    turn = itertools.count()

    def source(cc: Any, state: Any, city: Any, num: int, life: int) -> list[str]:
        return [addresses[next(turn) % len(addresses)] for _ in range(num)]

    return source


def test_a_site_that_bans_every_proxy_costs_three_batches(
    tmp_path: Path,
    relay_fleet: RelayFleet,
    target_site: TargetSite,
    make_target_site: Callable[..., TargetSite],
) -> None:
    """One site answers 403 through every relay, another serves them all, in the same crawl:
    three one-proxy batches are bought, all banned by the first site, and then its requests
    fail to the errback naming it (one WARNING), while the other site is fully crawled."""
    # https: each request to it goes through its own CONNECT tunnel. (A relay reuses the
    # upstream connection of a plain-http client connection, whatever the next request's host,
    # so two plain-http sites through one relay would get each other's answers.)
    banning = make_target_site(host="127.0.0.2", tls=True)
    banning.know_relays(relay_fleet)
    for relay in relay_fleet:
        banning.ban(relay.name, 403)
    addresses = [relay.address for relay in relay_fleet]
    with ProviderSimulator(app_key=KEY, address_source=cycling_source(addresses)) as sim:
        result = run_crawl(
            tmp_path,
            env=sim.env(),
            follow=True,
            settings={"PROXYPOOL_BATCH": 1},
            start=[
                {"url": target_site.url_for("/")},
                *({"url": banning.url_for(f"/page/{n}")} for n in range(6)),
            ],
        )
        extractions = len(sim.extraction_calls())
    assert_clean(result)
    assert extractions == 3  # the provider's own record
    assert page_paths(target_site) <= result.ok_paths()  # the other site: fully served
    banned_paths = {f"/page/{n}" for n in range(6)}
    failed = [e for e in result.errors if e["url"].startswith(banning.url)]
    assert {urlsplit(e["url"]).path for e in failed} == banned_paths
    assert all(e["error"] == "IgnoreRequest" for e in failed), failed
    assert all("ban storm on 127.0.0.2" in e["message"] for e in failed), failed
    assert result.stat("proxypool/ban_storm") == len(banned_paths)
    warnings = [
        line for line in result.log.splitlines() if "WARNING" in line and "ban storm" in line
    ]
    assert len(warnings) == 1 and "127.0.0.2" in warnings[0], warnings
    assert not banning.direct_hits() and not target_site.direct_hits()
    assert result.finish_reason == "finished"


def test_ban_storm_can_close_the_spider(
    tmp_path: Path, relay_fleet: RelayFleet, make_target_site: Callable[..., TargetSite]
) -> None:
    banning = make_target_site()
    for relay in relay_fleet:
        banning.ban(relay.name, 403)
    addresses = [relay.address for relay in relay_fleet]
    with ProviderSimulator(app_key=KEY, address_source=cycling_source(addresses)) as sim:
        result = run_crawl(
            tmp_path,
            env=sim.env(),
            settings={
                "PROXYPOOL_BATCH": 1,
                "PROXYPOOL_BAN_STORM_BATCHES": 2,
                "PROXYPOOL_BAN_STORM_CLOSE": True,
            },
            start=[{"url": banning.url_for(f"/page/{n}")} for n in range(4)],
        )
        extractions = len(sim.extraction_calls())
    assert_clean(result)
    assert extractions == 2
    assert result.finish_reason == "proxypool_ban_storm"
    assert "ban storm on 127.0.0.1" in result.stat("proxypool/error")


def test_a_slow_provider_cannot_hold_the_crawl(
    tmp_path: Path, target_site: TargetSite, httpserver: HTTPServer
) -> None:
    """The extraction API does not answer for 30 s (within PROXYPOOL_API_TIMEOUT): with
    PROXYPOOL_WAIT_TIMEOUT = 1 the spider's pre-fill and every request's wait end after about
    a second, the requests fail visibly, and the crawl ends long before the provider would."""
    released = threading.Event()

    def stall(request: WerkzeugRequest) -> WerkzeugResponse:
        released.wait(30)
        return WerkzeugResponse(json.dumps({"code": 200, "msg": "ok", "data": {"list": []}}))

    httpserver.expect_request("/openapi/ip/v3").respond_with_handler(stall)
    try:
        result = run_crawl(
            tmp_path,
            env={"PROXYPOOL_APP_KEY": KEY, "PROXYPOOL_API_URL": httpserver.url_for("/openapi")},
            settings={"PROXYPOOL_API_TIMEOUT": 60, "PROXYPOOL_WAIT_TIMEOUT": 1.0},
            start=[{"url": target_site.url_for(f"/page/{n}")} for n in range(3)],
        )
    finally:
        released.set()
    assert_clean(result)
    assert result.seconds < 20, result  # the provider alone would have taken 30 s
    assert result.error_paths() == {f"/page/{n}" for n in range(3)}
    assert result.stat("proxypool/exhausted") == 3
    assert "pre-filling" in result.log
    assert not target_site.hits()
