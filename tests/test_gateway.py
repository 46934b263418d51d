"""The rotating gateway, end to end: the simulator's gateway (``proxypool.sim.account_gateway``)
against its own proxy accounts, then ``GatewaySource`` in a pool, through real ``requests``
sessions and real Scrapy crawls, over real relays to a recording target site.

What the target and the gateway record decide: which session each request named (the gateway's
log), which relay it exited from (the gateway) and which relay the site saw (the site). Each
request must exit through the session its username names, also on kept-alive connections."""

from __future__ import annotations

import base64
import collections
import logging
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from _helpers import FakeClock
from _scrapy_crawls import CrawlResult, run_crawl
from hypothesis import given
from hypothesis import strategies as st

from proxypool import ProxyPool
from proxypool.api import ProviderClient
from proxypool.errors import ConfigError
from proxypool.geo import Geo
from proxypool.sim.account_gateway import BadUsername, parse_username
from proxypool.sim.world import SimWorld
from proxypool.sources import GATEWAY_FORMATS, GatewaySource

pytestmark = pytest.mark.timeout(120)

LAYOUT = {"US/California": 3, "DE": 2, "*": 1}
USER, PASSWORD = "alice01", "Alice2024pw"  # a proxy account the simulator is seeded with
DISABLED = ("carol03", "Carol99x")
LIMITED = ("bob02", "BobSecret7")  # limit_flow 50 GB


@pytest.fixture(scope="module")
def world() -> Iterator[SimWorld]:
    with SimWorld(LAYOUT, pages=40, app_key="KEYgw" + "x" * 20) as world:
        yield world


@pytest.fixture(autouse=True)
def _clean(world: SimWorld) -> None:
    world.target.clear()
    world.target.unban_all()


def plain_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def proxied(url: str) -> dict[str, str]:
    return {"http": url, "https": url}


def california(world: SimWorld) -> set[str]:
    return set(world.relays_in("US/California"))


# -- the simulator's gateway ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "parsed"),
    [
        ("alice01", ("alice01", Geo(), 10, None)),
        (
            "alice01_area-US_state-California_city-LosAngeles_life-15_session-Ab12",
            ("alice01", Geo("US", "California", "LosAngeles"), 15, "Ab12"),
        ),
        ("alice01_session-X_area-DE", ("alice01", Geo("DE"), 10, "X")),
    ],
)
def test_the_gateway_reads_the_white_label_grammar(username: str, parsed: Any) -> None:
    assert parse_username(username) == parsed


@pytest.mark.parametrize(
    "username",
    ["alice01_zone-x", "alice01_area-US_area-DE", "alice01_life-0", "alice01_session-a b", "a-b"],
)
def test_the_gateway_refuses_what_the_grammar_does_not_say(username: str) -> None:
    with pytest.raises(BadUsername):
        parse_username(username)


@pytest.mark.parametrize(
    ("user", "password", "reason"),
    [
        ("nobody9", "whatever1", "unknown proxy account"),
        (USER, "wrongPass1", "wrong password"),
        (*DISABLED, "proxy account disabled"),
        (USER + "_zone-x", PASSWORD, "bad username"),
    ],
)
def test_the_gateway_refuses_a_bad_login_with_407_and_nothing_reaches_the_site(
    world: SimWorld, user: str, password: str, reason: str
) -> None:
    url = f"http://{user}:{password}@{world.gateway_address}"
    with plain_session() as session:
        answer = session.get(world.target.url_for("/page/1"), proxies=proxied(url), timeout=10)
        assert answer.status_code == 407
        assert reason in answer.text and password not in answer.text
        assert answer.headers["Proxy-Authenticate"].startswith("Basic")
        with pytest.raises(requests.exceptions.ProxyError):  # a CONNECT is refused the same way
            session.get("https://127.0.0.1:1/", proxies=proxied(url), timeout=10)
    assert world.target.hits() == []


def test_an_account_past_its_traffic_limit_is_refused(world: SimWorld) -> None:
    user, password = LIMITED
    url = f"http://{user}_session-L1:{password}@{world.gateway_address}"
    with plain_session() as session:
        ok = session.get(world.target.url_for("/page/1"), proxies=proxied(url), timeout=10)
        assert ok.status_code == 200
        world.simulator.record_traffic(user, 50 * 1024**3)  # 50 GB: its limit_flow
        refused = session.get(world.target.url_for("/page/2"), proxies=proxied(url), timeout=10)
    assert refused.status_code == 407 and "traffic limit reached" in refused.text
    assert [hit.path for hit in world.target.hits()] == ["/page/1"]


def test_an_account_added_through_the_api_crawls_and_its_traffic_is_counted(
    world: SimWorld,
) -> None:
    with ProviderClient(world.app_key, base_url=world.api_url) as client:
        client.add_accounts({"crawler77": "Fresh77pw"})
        before = next(a for a in client.list_accounts() if a.username == "crawler77")
        gateway = GatewaySource(world.gateway_address, "crawler77", client=client)
        proxy = gateway.proxy(Geo("DE"), life=5)
        with plain_session() as session:
            for n in range(3):
                answer = session.get(
                    world.target.url_for(f"/page/{n}"), proxies=proxied(proxy.url), timeout=10
                )
                assert answer.status_code == 200
        after = next(a for a in client.list_accounts() if a.username == "crawler77")
        days = client.daily_usage(username="crawler77")
    assert before.usage_flow == 0 and after.usage_flow >= 1  # KB, rounded up
    assert sum(day.flow for day in days) == after.usage_flow
    assert {hit.relay for hit in world.target.hits()} <= set(world.relays_in("DE"))


def test_a_session_keeps_its_exit_for_its_life_and_then_moves() -> None:
    clock = FakeClock()
    with SimWorld({"US/California": 4}, pages=5, clock=clock) as world:
        source = GatewaySource(world.gateway_address, USER, PASSWORD)
        with plain_session() as session:

            def exit_of(proxy_url: str) -> str | None:
                world.target.clear()
                session.get(world.target.url_for("/"), proxies=proxied(proxy_url), timeout=10)
                (hit,) = world.target.hits()
                return hit.relay

            sticky = source.proxy(Geo("US", "California"), life=2, session="Stay1")
            first = exit_of(sticky.url)
            assert {exit_of(sticky.url) for _ in range(8)} == {first}
            clock.advance(121)  # past its 2 minutes: the gateway picks again
            moved = {exit_of(sticky.url) for _ in range(12)}
            assert len(moved) == 1  # sticky again, for the next life
            other = GatewaySource(
                world.gateway_address,
                USER,
                PASSWORD,
                format="{user}_area-{country}_session-{session}",
            ).proxy(Geo("US"), session="Other1")
            assert exit_of(other.url) in world.relays_in("US")
        sessions = world.account_gateway.sessions()
    assert sessions[(USER, "Stay1")] in world.relays_in("US/California")


def test_without_a_session_each_request_gets_a_random_exit(world: SimWorld) -> None:
    url = f"http://{USER}_area-US_state-California:{PASSWORD}@{world.gateway_address}"
    with plain_session() as session:
        for n in range(30):
            session.get(world.target.url_for(f"/page/{n}"), proxies=proxied(url), timeout=10)
    exits = {hit.relay for hit in world.target.hits()}
    assert exits == california(world)  # 30 draws over 3 relays: all of them


# -- requests through a pool of gateway sessions ---------------------------------------------


def exits_match_sessions(world: SimWorld, since: int) -> dict[str, set[str]]:
    """Session id -> the relays the site saw its requests come from; asserts that each request
    (of the gateway's log from entry ``since`` on) exited through the relay the gateway chose
    for the session its username named."""
    site_relay = {hit.path: hit.relay for hit in world.target.hits()}
    by_session: dict[str, set[str]] = collections.defaultdict(set)
    for entry in world.account_gateway.requests()[since:]:
        if entry.status != 200 or entry.method == "CONNECT":
            continue
        path = "/" + entry.target.split("/", 3)[3]
        assert site_relay[path] == entry.relay, (path, entry)
        assert entry.session is not None
        by_session[entry.session].add(site_relay[path])
    return by_session


def test_requests_exit_through_the_session_they_name_on_reused_connections(
    world: SimWorld, caplog: pytest.LogCaptureFixture
) -> None:
    from proxypool.adapters import wrap_session

    caplog.set_level(logging.DEBUG)  # every logger, urllib3's included

    source = GatewaySource(world.gateway_address, USER, PASSWORD)
    connections = world.account_gateway.connections
    logged = len(world.account_gateway.requests())
    with ProxyPool(source, geo="US/California", batch=4, min_size=1) as pool:
        sessions = {
            key: wrap_session(plain_session(), pool, session_key=key) for key in ("a", "b", "c")
        }
        for n in range(30):
            key = "abc"[n % 3]
            answer = sessions[key].get(world.target.url_for(f"/page/{n}"), timeout=10)
            assert answer.status_code == 200
        stats = pool.stats()
        for session in sessions.values():
            session.close()
    entries = world.account_gateway.requests()[logged:]
    assert len(entries) == 30
    by_session = exits_match_sessions(world, logged)
    assert len(by_session) == 3 and all(len(relays) == 1 for relays in by_session.values())
    assert set().union(*by_session.values()) <= california(world)
    assert {e.geo for e in entries} == {Geo("US", "California")}
    assert world.account_gateway.connections - connections <= 3  # one kept-alive per session
    assert (stats["minted"], stats["extracted"]) == (4, 0)
    secret_forms = (PASSWORD, base64.b64encode(PASSWORD.encode()).decode().rstrip("="))
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "DEBUG" in {record.levelname for record in caplog.records}
    assert not any(form in logged for form in secret_forms)


@pytest.mark.parametrize(
    ("scheme", "user", "password"),
    [
        ("http", USER, "wrongPass1"),
        ("https", USER, "wrongPass1"),
        ("http", *DISABLED),
        ("https", *LIMITED),
    ],
)
def test_a_refused_account_fails_a_requests_call_at_once_and_clearly(
    world: SimWorld, scheme: str, user: str, password: str
) -> None:
    from proxypool.adapters import ProxyRequestFailed, wrap_session

    if (user, password) == LIMITED:
        world.simulator.record_traffic(user, 50 * 1024**3)  # its 50 GB limit_flow, used up
    source = GatewaySource(world.gateway_address, user, password)
    logged = len(world.account_gateway.requests())
    url = world.target.url_for("/page/1")
    if scheme == "https":
        url = "https://127.0.0.1:1/"  # refused at the CONNECT: the site is never reached
    with (
        ProxyPool(source, min_size=1, batch=4) as pool,
        wrap_session(plain_session(), pool) as session,
        pytest.raises(ProxyRequestFailed) as info,
    ):
        session.get(url, timeout=10)
    message = str(info.value)
    assert f"refused proxy account {user!r}" in message and "407" in message
    assert password not in message
    assert len(world.account_gateway.requests()) - logged == 1  # no other session tried
    assert world.target.hits() == []


def test_a_sites_own_407_over_https_is_its_answer_not_the_gateway_refusing_the_account(
    world: SimWorld,
) -> None:
    """Over https the gateway only opens the tunnel (a refusal is a tunnel error); a 407 that
    comes back as a response is the site's, read through a working session."""
    from proxypool.adapters import wrap_session
    from proxypool.sim.target import TargetSite

    source = GatewaySource(world.gateway_address, USER, PASSWORD)
    with TargetSite(3, tls=True) as site:
        site.know_relays(world.fleet)
        with (
            ProxyPool(source, min_size=1, batch=2) as pool,
            wrap_session(plain_session(), pool) as session,
        ):
            verify = str(site.cert_path)  # per call: REQUESTS_CA_BUNDLE would override a session's
            answer = session.get(site.url_for("/status/407"), timeout=10, verify=verify)
            assert answer.status_code == 407
            page = session.get(site.url_for("/page/1"), timeout=10, verify=verify)
            assert page.status_code == 200
            stats = pool.stats()
        assert [hit.path for hit in site.hits()] == ["/status/407", "/page/1"]
    assert stats["failures"] == 0


def test_a_ban_moves_a_requests_session_to_another_gateway_session(world: SimWorld) -> None:
    from proxypool.adapters import wrap_session

    banned = sorted(california(world))[0]
    world.target.ban(banned, 403)
    source = GatewaySource(world.gateway_address, USER, PASSWORD)
    with (
        ProxyPool(source, geo="US/California", batch=3, min_size=1) as pool,
        wrap_session(plain_session(), pool, session_key="cart", max_proxy_retries=8) as session,
    ):
        for n in range(12):
            assert session.get(world.target.url_for(f"/page/{n}"), timeout=10).status_code == 200
        stats = pool.stats()
    served = [hit.relay for hit in world.target.hits() if not hit.banned]
    assert banned not in served
    assert len(set(served)) == 1  # the sticky key kept one session once it found a clean exit
    assert stats["bans"] == sum(hit.banned for hit in world.target.hits())


# -- Scrapy crawls ------------------------------------------------------------------------------


def gateway_settings(world: SimWorld, **extra: Any) -> dict[str, Any]:
    return {
        "PROXYPOOL_SOURCE": "gateway",
        "PROXYPOOL_GATEWAY": world.gateway_address,
        "PROXYPOOL_GATEWAY_USER": USER,
        "PROXYPOOL_BATCH": 4,
        "PROXYPOOL_MIN_SIZE": 2,
        **extra,
    }


def assert_no_secret(result: CrawlResult, world: SimWorld) -> None:
    assert result.returncode == 0, result
    assert "DEBUG" in result.log
    for secret in (PASSWORD, world.app_key, base64.b64encode(PASSWORD.encode()).decode()):
        assert secret not in result.log and secret not in result.output
    for hit in world.target.hits():
        assert all(PASSWORD not in value for _, value in hit.headers)
        assert all(name.lower() != "proxy-authorization" for name, _ in hit.headers)


def test_a_scrapy_crawl_through_the_gateway_rotates_sticks_and_names_its_geography(
    tmp_path: Path, world: SimWorld
) -> None:
    start = [{"url": world.target.url_for(f"/page/{n}")} for n in range(24)]
    start += [
        {"url": world.target.url_for(f"/page/{n}"), "meta": {"proxypool_session": f"s{n % 2}"}}
        for n in range(24, 36)
    ]
    logged = len(world.account_gateway.requests())
    result = run_crawl(
        tmp_path,
        env=world.env(),  # the password is looked up among the accounts with the app_key
        geo="US/California",
        start=start,
        settings=gateway_settings(world),
    )
    assert_no_secret(result, world)
    assert result.finish_reason == "finished", result
    assert result.ok_paths() == {f"/page/{n}" for n in range(36)}
    assert world.target.direct_hits() == []
    entries = world.account_gateway.requests()[logged:]
    assert {e.user for e in entries} == {USER}
    assert {e.geo for e in entries} == {Geo("US", "California")}  # as the spider asked
    by_session = exits_match_sessions(world, logged)
    assert all(len(relays) == 1 for relays in by_session.values())  # one exit per session
    assert len(by_session) >= 4  # the batch of sessions shared the rotating requests
    sticky = collections.defaultdict(set)
    for entry in entries:
        path = "/" + entry.target.split("/", 3)[3]
        if int(path.rsplit("/", 1)[1]) >= 24:
            sticky[int(path.rsplit("/", 1)[1]) % 2].add(entry.session)
    assert all(len(sessions) == 1 for sessions in sticky.values())  # a key keeps its session
    assert world.account_gateway.connections < len(entries)  # connections were reused
    stats = result.proxypool_stats()
    assert stats["proxypool/minted"] >= 4 and "proxypool/extracted" not in stats
    assert "ip/v3" not in {c.endpoint for c in world.simulator.calls()}  # nothing extracted


def test_geography_per_spider_and_per_request_reaches_the_username(
    tmp_path: Path, world: SimWorld
) -> None:
    logged = len(world.account_gateway.requests())
    start = [{"url": world.target.url_for(f"/page/{n}")} for n in range(4)]
    start += [
        {"url": world.target.url_for(f"/page/{n}"), "meta": {"proxypool_geo": "de"}}
        for n in range(4, 8)
    ]
    result = run_crawl(
        tmp_path,
        env=world.env(),  # the catalog canonicalises: "us/california" -> US/California
        geo="us/california",
        start=start,
        settings=gateway_settings(world),
    )
    assert_no_secret(result, world)
    assert result.ok_paths() == {f"/page/{n}" for n in range(8)}
    geo_of = {
        "/" + e.target.split("/", 3)[3]: e.geo
        for e in world.account_gateway.requests()[logged:]
        if e.status == 200
    }
    assert {geo_of[f"/page/{n}"] for n in range(4)} == {Geo("US", "California")}
    assert {geo_of[f"/page/{n}"] for n in range(4, 8)} == {Geo("DE")}
    relay_of = {hit.path: hit.relay for hit in world.target.hits()}
    assert {relay_of[f"/page/{n}"] for n in range(4, 8)} <= set(world.relays_in("DE"))
    assert {relay_of[f"/page/{n}"] for n in range(4)} <= california(world)


def test_https_through_the_gateway_tunnels_by_session(tmp_path: Path) -> None:
    with SimWorld({"US/California": 3}, pages=12) as world:
        tls_site = world.target
        assert not tls_site.tls  # the world's site is http; an https one of its own:
        from proxypool.sim.target import TargetSite

        with TargetSite(12, tls=True) as site:
            site.know_relays(world.fleet)
            start = [
                {"url": site.url_for(f"/page/{n}"), "meta": {"proxypool_session": f"k{n % 3}"}}
                for n in range(12)
            ]
            result = run_crawl(
                tmp_path,
                start=start,
                settings=gateway_settings(world, PROXYPOOL_GATEWAY_PASSWORD=PASSWORD),
            )
            hits = site.hits()
        tunnels = [e for e in world.account_gateway.requests() if e.method == "CONNECT"]
    assert result.returncode == 0, result
    assert result.ok_paths() == {f"/page/{n}" for n in range(12)}
    assert all(hit.tls and hit.relay is not None for hit in hits)
    relay_of_session = {e.session: e.relay for e in tunnels}
    assert len(relay_of_session) == len({(e.session, e.relay) for e in tunnels})
    by_key = collections.defaultdict(set)
    for hit in hits:
        by_key[int(hit.path.rsplit("/", 1)[1]) % 3].add(hit.relay)
    assert all(len(relays) == 1 for relays in by_key.values())  # each key: one session, one exit
    assert PASSWORD not in result.log


def test_a_ban_moves_the_site_to_another_session(tmp_path: Path, world: SimWorld) -> None:
    banned = sorted(california(world))[0]
    world.target.ban(banned, 403)
    result = run_crawl(
        tmp_path,
        geo="US/California",
        start=[{"url": world.target.url_for(f"/page/{n}")} for n in range(20)],
        settings=gateway_settings(
            world, PROXYPOOL_GATEWAY_PASSWORD=PASSWORD, PROXYPOOL_MAX_PROXY_RETRIES=8
        ),
    )
    assert_no_secret(result, world)
    assert result.ok_paths() == {f"/page/{n}" for n in range(20)}
    served = {hit.relay for hit in world.target.hits() if not hit.banned}
    assert banned not in served
    if any(hit.banned for hit in world.target.hits()):
        assert result.proxypool_stats()["proxypool/bans/403"] >= 1


@pytest.mark.parametrize(
    ("user", "password"),
    [(USER, "wrongPass1"), DISABLED, ("nobody9", "whatever1"), LIMITED],
)
def test_a_refused_account_closes_the_crawl_before_anything_reaches_the_site(
    tmp_path: Path, world: SimWorld, user: str, password: str
) -> None:
    if (user, password) == LIMITED:
        world.simulator.record_traffic(user, 50 * 1024**3)  # its 50 GB limit_flow, used up
    result = run_crawl(
        tmp_path,
        start=[{"url": world.target.url_for(f"/page/{n}")} for n in range(5)],
        settings=gateway_settings(
            world, PROXYPOOL_GATEWAY_USER=user, PROXYPOOL_GATEWAY_PASSWORD=password
        ),
    )
    assert result.returncode == 0, result
    assert result.finish_reason == "proxypool_account_error", result
    error = result.stat("proxypool/error")
    assert f"refused proxy account {user!r}" in error and "407" in error
    assert world.target.hits() == []
    assert password not in result.log and password not in result.output


def test_an_unknown_account_is_said_before_the_crawl_when_the_password_is_looked_up(
    tmp_path: Path, world: SimWorld
) -> None:
    result = run_crawl(
        tmp_path,
        env=world.env(),
        start=[{"url": world.target.url_for("/page/1")}],
        settings=gateway_settings(world, PROXYPOOL_GATEWAY_USER="nobody9"),
    )
    assert result.finish_reason == "proxypool_account_error", result
    assert re.search(r"'nobody9' is not among", result.stat("proxypool/error"))
    assert world.target.hits() == []
    assert world.app_key not in result.log


def test_a_refused_account_over_https_closes_the_crawl_too(tmp_path: Path, world: SimWorld) -> None:
    from proxypool.sim.target import TargetSite

    with TargetSite(3, tls=True) as site:
        result = run_crawl(
            tmp_path,
            start=[{"url": site.url_for(f"/page/{n}")} for n in range(3)],
            settings=gateway_settings(world, PROXYPOOL_GATEWAY_PASSWORD="wrongPass1"),
        )
        hits = site.hits()
    assert result.finish_reason == "proxypool_account_error", result
    assert f"refused proxy account {USER!r}" in result.stat("proxypool/error")
    assert hits == []  # the CONNECT was refused: nothing reached the site
    assert "wrongPass1" not in result.log


def test_a_gateway_that_is_down_fails_closed_without_a_loop(tmp_path: Path) -> None:
    """The gateway's port refuses connections: every session is dropped on arrival by the
    reachability check, the pool backs off between refills, requests fail visibly; nothing is
    sent without a proxy."""
    with SimWorld({"US/California": 1}, pages=3) as world:
        settings = gateway_settings(
            world, PROXYPOOL_GATEWAY_PASSWORD=PASSWORD, PROXYPOOL_WAIT_TIMEOUT=4
        )
        world.account_gateway.close()  # its port refuses connections from now on
        result = run_crawl(
            tmp_path,
            start=[{"url": world.target.url_for(f"/page/{n}")} for n in range(3)],
            settings=settings,
            timeout=60,
        )
        hits = world.target.hits()
    assert result.returncode == 0, result
    assert hits == []
    assert result.ok_paths() == set()
    assert result.error_paths() == {f"/page/{n}" for n in range(3)}
    stats = result.proxypool_stats()
    assert stats["proxypool/rejected"] >= 4  # sessions minted, refused on arrival
    assert stats["proxypool/refills"] <= 6  # backed off, not a busy loop


# -- the grammar, both ways ----------------------------------------------------------------------

_TOKEN = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=12)


@given(
    user=_TOKEN,
    country=st.one_of(st.none(), st.sampled_from(["US", "DE", "GB", "JP"])),
    state=st.one_of(st.none(), _TOKEN),
    city=st.one_of(st.none(), _TOKEN),
    life=st.integers(min_value=1, max_value=7200),
    session=_TOKEN,
)
def test_what_the_source_writes_the_gateway_reads_back(
    user: str, country: str | None, state: str | None, city: str | None, life: int, session: str
) -> None:
    """The default grammar, written by ``GatewaySource`` and read by the simulator's gateway:
    every geography, life and session comes back as it went in (empty parts left out)."""
    if country is None:
        state = city = None
    if state is None:
        city = None
    geo = Geo(country, state, city)
    source = GatewaySource("127.0.0.1:3120", user, "pw")
    username = source.username_for(geo, life=life, session=session)
    assert "__" not in username and not username.endswith("-")
    assert parse_username(username) == (user, geo, life, session)


def test_an_ipv6_gateway_is_bracketed_in_its_urls() -> None:
    proxy = GatewaySource("[::1]:3120", "crawler01", "pw").proxy(session="S")
    assert (proxy.host, proxy.port) == ("::1", 3120)
    assert proxy.url == "http://crawler01_session-S:pw@[::1]:3120"


def test_a_place_spelled_with_spaces_reaches_the_gateway_as_one_token(world: SimWorld) -> None:
    """Without a catalog the pool hands the place over as written: ``New York`` must not split
    the grammar (the gateway would answer 407, and the crawl would stop as a refused account)."""
    from proxypool.adapters import wrap_session

    source = GatewaySource(world.gateway_address, USER, PASSWORD)
    logged = len(world.account_gateway.requests())
    with (
        ProxyPool(source, geo="US/New York/New York City", min_size=1, batch=2) as pool,
        wrap_session(plain_session(), pool) as session,
    ):
        for n in range(3):
            assert session.get(world.target.url_for(f"/page/{n}"), timeout=10).status_code == 200
    asked = {entry.geo for entry in world.account_gateway.requests()[logged:]}
    assert asked == {Geo("US", "NewYork", "NewYorkCity")}


@pytest.mark.parametrize(
    ("format", "username", "allowed"),
    [
        ("smartproxy", "smart-alice01", True),  # a brand prefix: '-' is inside a segment
        ("smartproxy", "alice_01", False),  # '_' starts a segment
        ("sessid", "alice-01", False),
        ("sessid", "alice_01", True),
        ("{user}.{session}", "alice-01", True),  # only "." separates there
    ],
)
def test_a_username_holding_the_grammars_separator_is_refused_up_front(
    format: str, username: str, allowed: bool
) -> None:
    if allowed:
        assert GatewaySource("127.0.0.1:3120", username, "pw", format=format).username == username
        return
    with pytest.raises(ConfigError, match="separates the segments") as info:
        GatewaySource("127.0.0.1:3120", username, "pw", format=format)
    assert info.value.field == "username"


@pytest.mark.parametrize("place", ["US/New_York", "US/New-York", "US/New York", "us/new.york"])
def test_separators_in_a_place_are_dropped_in_every_grammar(place: str) -> None:
    for format in GATEWAY_FORMATS:
        username = GatewaySource("127.0.0.1:3120", "alice", "pw", format=format).username_for(
            Geo.coerce(place), life=5, session="S1"
        )
        assert re.search("(?i)newyork", username), username
        assert not re.search(r"(?i)new[ _.-]york", username), username


@pytest.mark.parametrize("template", ["{user}[_session-{session}]", "[{user}]_session-{session}"])
def test_user_and_session_cannot_be_optional(template: str) -> None:
    with pytest.raises(ConfigError, match=r"cannot be inside \[\.\.\.\]") as info:
        GatewaySource("127.0.0.1:3120", "alice", "pw", format=template)
    assert info.value.field == "format"


@pytest.mark.parametrize("made", ["has_underscore", "", "x" * 65, 12345])
def test_a_session_id_generator_is_held_to_letters_and_digits(made: Any) -> None:
    source = GatewaySource("127.0.0.1:3120", "alice", "pw", session_id=lambda: made)
    for mint in (
        lambda: source.extract(None, num=1, life=5),
        lambda: source.proxy(),
        lambda: source.username_for(),
    ):
        with pytest.raises(ConfigError, match="session_id") as info:
            mint()
        assert info.value.field == "session_id"
