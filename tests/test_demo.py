"""The embedded default: the simulated world (``proxypool.sim.world``) and ``proxypool demo``.

- ``check_records`` (the demo's verdict) on hand-made request logs: it must be able to fail.
- ``SimWorld`` with real relays: leases per geography, life honoured (fake clock), killed relays,
  ``"*"`` relays standing in for unplaced geographies, layout validation.
- ``proxypool demo --json`` end to end in a subprocess; its summary is checked against the target's
  raw request log, which the demo writes to ``$PROXYPOOL_DEMO_RECORD``, recomputed here.
- ``proxypool demo --serve``: the export lines work, SIGINT stops it cleanly (exit 0, no traceback,
  no relay process left).
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from _helpers import FakeClock
from _scrapy_crawls import ROOT, crawl_env

from proxypool.api import ProviderClient
from proxypool.demo import SCRAPY_SETTINGS, DemoPart, check_records
from proxypool.errors import ConfigError
from proxypool.geo import Geo
from proxypool.sim.target import Hit
from proxypool.sim.world import SimWorld, geo_covers

DEMO_KEY_RE = re.compile(r"demo-[0-9a-f]{16}")


# -- check_records: the verdict ---------------------------------------------------------------


RELAYS = {"r-us": Geo("US", "California"), "r-de": Geo("DE"), "r-any": Geo()}
PART_US = DemoPart("us", "scrapy", Geo("US"), "ua-us", ("/", "/page/0", "/page/1"))
PART_DE = DemoPart("de", "requests", Geo("DE"), "ua-de", ("/page/0",))


def hit(
    path: str, agent: str, relay: str | None, status: int = 200, *, banned: bool = False
) -> Hit:
    """A request as the target records it; ``relay=None``: it came without a proxy."""
    return Hit(
        method="GET",
        path=path,
        relay=relay,
        relay_port=None if relay is None else 40000,
        status=status,
        at=0.0,
        tls=False,
        banned=banned,
        headers=(("User-Agent", agent),),
    )


def good_log() -> list[Hit]:
    return [
        hit("/", "ua-us", "r-us"),
        hit("/page/0", "ua-us", "r-us", 403, banned=True),
        hit("/page/0", "ua-us", "r-us"),
        hit("/page/1", "ua-us", "r-us"),
        hit("/page/0", "ua-de", "r-de"),
    ]


def test_check_records_passes_a_complete_log_and_counts_per_relay() -> None:
    check = check_records(good_log(), [PART_US, PART_DE], RELAYS)
    assert check.ok
    assert (check.hits, check.direct, check.unattributed) == (5, 0, 0)
    us, de = check.parts
    assert (us.requests, us.pages_ok, us.banned, us.missing) == (4, 3, 1, ())
    assert us.pages_by_relay == {"r-us": 3}
    assert (de.requests, de.pages_ok, de.pages_by_relay) == (1, 1, {"r-de": 1})
    assert check.verdict().startswith("No page lost: all 4 expected pages answered 200")


def test_check_records_fails_on_a_page_never_answered_200() -> None:
    log = [h for h in good_log() if not (h.path == "/page/1" and h.header("User-Agent") == "ua-us")]
    log.append(hit("/page/1", "ua-us", "r-us", 403, banned=True))
    check = check_records(log, [PART_US, PART_DE], RELAYS)
    assert not check.ok
    assert check.parts[0].missing == ("/page/1",)
    assert "PAGES LOST: 1 of 4" in check.verdict()
    assert "us: /page/1" in check.verdict()


def test_check_records_does_not_count_a_captcha_page_as_fetched() -> None:
    log = [*good_log()[:-1], hit("/page/0", "ua-de", "r-de", 200, banned=True)]
    check = check_records(log, [PART_US, PART_DE], RELAYS)
    assert not check.ok
    assert check.parts[1].missing == ("/page/0",)


def test_check_records_fails_on_a_direct_request_even_when_every_page_arrived() -> None:
    log = [*good_log(), hit("/page/1", "ua-us", None)]
    check = check_records(log, [PART_US, PART_DE], RELAYS)
    assert check.pages_ok == check.pages_expected
    assert check.direct == 1
    assert not check.ok
    assert "1 of 6 requests reached the target WITHOUT a proxy" in check.verdict()


@pytest.mark.parametrize("relay", ["r-de", "r-any", "unknown"])
def test_check_records_flags_requests_through_a_relay_outside_the_geography(relay: str) -> None:
    log = [*good_log(), hit("/page/1", "ua-us", relay)]
    check = check_records(log, [PART_US, PART_DE], RELAYS)
    assert check.parts[0].outside_geo == 1
    assert not check.ok
    assert "1 requests came through a relay outside their geography" in check.verdict()


def test_check_records_counts_hits_of_no_part_as_unattributed() -> None:
    check = check_records([*good_log(), hit("/", "curl/8", "r-us")], [PART_US, PART_DE], RELAYS)
    assert check.unattributed == 1
    assert check.ok  # a stranger's request is not a lost page


def test_geo_covers() -> None:
    assert geo_covers(Geo("US"), Geo("US", "California"))
    assert geo_covers(Geo(), Geo("DE"))
    assert not geo_covers(Geo("US", "California"), Geo("US"))
    assert not geo_covers(Geo("US", "Texas"), Geo("US", "California"))


# -- SimWorld ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def world(clock: FakeClock) -> Iterator[SimWorld]:
    layout = {"US/California": 2, "DE": 1, "*": 1}
    with SimWorld(layout, pages=5, clock=clock, linger=30.0) as world:
        yield world


def fetch(proxy_url: str, url: str) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False
        return session.get(url, proxies={"http": proxy_url}, timeout=5)


def refuses(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_world_leases_relays_of_the_geography_asked_for(world: SimWorld) -> None:
    with ProviderClient(world.app_key, base_url=world.api_url) as client:
        proxies = client.extract("US/California", num=4, life=10)
        de = client.extract("DE", num=1, life=10)
    assert len({p.address for p in proxies}) == 4  # a fresh port per IP, as a provider's
    leased = world.lease_relays()
    assert {leased[p.address] for p in proxies} == {"relay-0", "relay-1"}
    assert leased[de[0].address] == "relay-2"
    world.target.clear()
    for proxy in [*proxies, *de]:
        assert fetch(proxy.url, world.target.url_for("/page/1")).status_code == 200
    by_relay = world.target.hits_by_relay()
    assert by_relay == Counter({"relay-0": 2, "relay-1": 2, "relay-2": 1})
    assert world.target.direct_hits() == []
    used = {u.lease.address for u in world.leases() if u.used}
    assert {p.address for p in [*proxies, *de]} <= used


def test_world_star_relays_stand_in_for_places_without_relays(world: SimWorld) -> None:
    with ProviderClient(world.app_key, base_url=world.api_url) as client:
        gb = client.extract("GB/England", num=2, life=10)
        us = client.extract("US", num=2, life=10)
    leased = world.lease_relays()
    assert {leased[p.address] for p in gb} == {"relay-3"}
    assert {leased[p.address] for p in us} <= set(world.relays_in("US"))
    assert world.relays_in("US") == ["relay-0", "relay-1"]


def test_world_lease_stops_working_after_its_life(world: SimWorld, clock: FakeClock) -> None:
    with ProviderClient(world.app_key, base_url=world.api_url) as client:
        (proxy,) = client.extract("DE", num=1, life=2)
    usage = world.gateway.usage(proxy.address)
    assert usage.lease.ends_at == pytest.approx(usage.lease.issued_at + 120.0)
    url = world.target.url_for("/page/2")
    assert fetch(proxy.url, url).status_code == 200

    # The gateway's own thread sweeps too, so look at the lease's state, not at who ended it.
    clock.now += 119.0
    world.gateway.sweep()
    assert world.gateway.usage(proxy.address).state == "active"
    assert not world.gateway.usage(proxy.address).lived_out
    assert fetch(proxy.url, url).status_code == 200

    clock.now += 1.0
    world.gateway.sweep()
    assert world.gateway.usage(proxy.address).state == "ended"
    assert world.gateway.usage(proxy.address).lived_out
    before = world.target.count()
    with pytest.raises(requests.ConnectionError):
        fetch(proxy.url, url)
    assert world.target.count() == before
    usage = world.gateway.usage(proxy.address)
    assert (usage.state, usage.late_connections) == ("ended", 1)

    clock.now += 30.0  # the linger: then the port closes
    world.gateway.sweep()
    assert world.gateway.usage(proxy.address).state == "closed"
    assert world.gateway.usage(proxy.address).lived_out  # how it ended is kept
    assert refuses(proxy.address)


def test_world_time_scale_shortens_lives() -> None:
    clock = FakeClock()
    with SimWorld({"DE": 1}, pages=1, time_scale=0.1, clock=clock) as world:
        with ProviderClient(world.app_key, base_url=world.api_url) as client:
            (proxy,) = client.extract("DE", num=1, life=1)
        lease = world.gateway.usage(proxy.address).lease
        assert lease.ends_at - lease.issued_at == pytest.approx(6.0)
        clock.now += 5.9
        world.gateway.sweep()
        assert world.gateway.usage(proxy.address).state == "active"
        clock.now += 0.1
        world.gateway.sweep()
        assert world.gateway.usage(proxy.address).state == "ended"


def test_world_records_the_connection_a_lease_end_cut_and_the_request_it_carried() -> None:
    with SimWorld({"DE": 1}, pages=2, relay_latency=0.6) as world:
        with ProviderClient(world.app_key, base_url=world.api_url) as client:
            (cut_proxy,) = client.extract("DE", num=1, life=10)
        failure: list[BaseException] = []

        def send() -> None:
            try:
                fetch(cut_proxy.url, world.target.url_for("/page/0"))
            except requests.ConnectionError as exc:
                failure.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        deadline = time.monotonic() + 5  # the request went through to the relay, which holds
        while not world.gateway.usage(cut_proxy.address).used:  # it for its latency: cut now
            assert time.monotonic() < deadline, "the request never reached the relay"
            time.sleep(0.01)
        world.end_leases()
        sender.join(10)
        assert failure, "the client got an answer through an ended lease"
        ended = world.gateway.usage(cut_proxy.address)
        assert (ended.state, ended.lived_out) == ("ended", False)  # ended early, not by its life
        deadline = time.monotonic() + 5
        while world.target.count() < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        with ProviderClient(world.app_key, base_url=world.api_url) as client:
            (fresh,) = client.extract("DE", num=1, life=10)
        assert fetch(fresh.url, world.target.url_for("/page/1")).status_code == 200
        deadline = time.monotonic() + 5
        while len(world.forwarded()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        hits = {hit.path: hit for hit in world.target.hits()}
        forwarded = world.forwarded()
    cut_hit, fresh_hit = hits["/page/0"], hits["/page/1"]  # the relay forwarded it anyway
    (cut,) = [conn for conn in forwarded if conn.cut]
    (kept,) = [conn for conn in forwarded if not conn.cut]
    assert (cut.relay, cut.port, cut.lease) == (
        "relay-0",
        cut_hit.relay_peer_port,
        cut_proxy.address,
    )
    assert cut_hit.relayed_at is not None and cut.opened_at <= cut_hit.relayed_at
    assert (kept.relay, kept.port, kept.lease) == (
        "relay-0",
        fresh_hit.relay_peer_port,
        fresh.address,
    )


def test_world_killed_relay_goes_offline_and_is_no_longer_handed_out() -> None:
    with SimWorld({"US/California": 2}, pages=2) as world:
        with ProviderClient(world.app_key, base_url=world.api_url) as client:
            before = client.extract("US/California", num=4, life=10)
            world.kill_relay("relay-1")
            after = client.extract("US/California", num=4, life=10)
        leased = world.lease_relays()
        dead = [p for p in before if leased[p.address] == "relay-1"]
        assert len(dead) == 2
        assert all(refuses(p.address) for p in dead)
        assert {leased[p.address] for p in after} == {"relay-0"}
        world.revive_relay("relay-1")
        with ProviderClient(world.app_key, base_url=world.api_url) as client:
            again = client.extract("US/California", num=2, life=10)
        assert {world.lease_relays()[p.address] for p in again} == {"relay-0", "relay-1"}
        for proxy in again:
            assert fetch(proxy.url, world.target.url_for("/")).status_code == 200

        # A provider that hands out offline IPs: the dead relay's new leases refuse at once.
        world.hand_out_dead = True
        world.kill_relay("relay-0")
        with ProviderClient(world.app_key, base_url=world.api_url) as client:
            offline = client.extract("US/California", num=2, life=10)
        leased = world.lease_relays()
        assert sorted(leased[p.address] for p in offline) == ["relay-0", "relay-1"]
        for proxy in offline:
            assert refuses(proxy.address) == (leased[proxy.address] == "relay-0")


def test_world_ban_makes_the_target_refuse_one_relay(world: SimWorld) -> None:
    with ProviderClient(world.app_key, base_url=world.api_url) as client:
        proxies = client.extract("US/California", num=2, life=10)
    leased = world.lease_relays()
    world.ban_relay("relay-0", 429)
    try:
        statuses = {leased[p.address]: fetch(p.url, world.target.url).status_code for p in proxies}
    finally:
        world.unban_relay("relay-0")
    assert statuses == {"relay-0": 429, "relay-1": 200}
    with pytest.raises(KeyError, match="relay-9"):
        world.ban_relay("relay-9")


@pytest.mark.parametrize(
    ("layout", "field_text"),
    [
        ({"XX": 1}, "no such country"),
        ({"US/Atlantis": 1}, "no such state"),
        ({"DE": 0}, "from 1 to 32"),
        ({}, "at least one relay"),
    ],
)
def test_world_rejects_a_bad_layout_before_starting_anything(
    layout: dict[str, int], field_text: str
) -> None:
    with pytest.raises(ConfigError, match=field_text):
        SimWorld(layout)


def test_world_demo_key_is_obviously_fake_and_not_in_reprs(world: SimWorld) -> None:
    assert DEMO_KEY_RE.fullmatch(world.app_key)
    assert world.app_key not in repr(world)
    assert world.env() == {"PROXYPOOL_API_URL": world.api_url, "PROXYPOOL_APP_KEY": world.app_key}


# -- proxypool demo, end to end ---------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    record = tmp_path_factory.mktemp("demo") / "record.json"
    proc = subprocess.run(
        [sys.executable, "-m", "proxypool", "demo", "--json"],
        cwd=ROOT,
        env=crawl_env({"PROXYPOOL_DEMO_RECORD": str(record)}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return {
        "proc": proc,
        "summary": json.loads(proc.stdout) if proc.stdout.strip() else {},
        "record": json.loads(record.read_text()) if record.exists() else {},
    }


@pytest.mark.timeout(150)
def test_demo_exits_0_and_its_verdict_holds_in_the_target_records(demo_run: dict[str, Any]) -> None:
    proc, summary, record = demo_run["proc"], demo_run["summary"], demo_run["record"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert summary["ok"] is True
    assert summary["verdict"].startswith("No page lost")
    hits = record["hits"]
    assert hits, "the demo wrote no request log"
    # Recomputed here from the raw log, not taken from the summary:
    direct = [h for h in hits if h["relay_port"] is None]
    assert direct == []
    geos = {name: Geo.parse(text) for name, text in record["relay_geos"].items()}
    for part in record["parts"]:
        mine = [h for h in hits if h["user_agent"] == part["user_agent"]]
        ok = {h["path"] for h in mine if h["status"] == 200 and not h["banned"]}
        assert set(part["paths"]) <= ok, part["name"]
        wanted = Geo.parse(part["geo"])
        assert all(geo_covers(wanted, geos[h["relay"]]) for h in mine), part["name"]
    records = summary["records"]
    assert records["target_requests"] == len(hits)
    assert records["direct"] == 0
    assert (
        records["pages_ok"]
        == records["pages_expected"]
        == sum(len(p["paths"]) for p in record["parts"])
    )


def test_demo_summary_counts_match_the_target_records(demo_run: dict[str, Any]) -> None:
    summary, record = demo_run["summary"], demo_run["record"]
    hits = record["hits"]
    agents = {p["name"]: p["user_agent"] for p in record["parts"]}
    killed = {e["relay"] for e in summary["events"] if e["event"] == "kill"}
    on_the_wire = SCRAPY_SETTINGS["CONCURRENT_REQUESTS"]  # per spider
    for relay in summary["relays"]:
        name = relay["relay"]
        assert relay["geo"] == record["relay_geos"][name]
        for part, count in relay["pages"].items():
            expected = sum(
                1
                for h in hits
                if h["relay"] == name
                and h["user_agent"] == agents[part]
                and h["status"] == 200
                and not h["banned"]
            )
            assert count == expected, (name, part)
        assert relay["bans"] == sum(1 for h in hits if h["relay"] == name and h["banned"])
    for row in summary["parts"]:
        mine = [h for h in hits if h["user_agent"] == agents[row["part"]]]
        assert row["target_requests"] == len(mine)
        assert row["target_bans"] == sum(1 for h in mine if h["banned"])
        # The client's own counters agree with what arrived: every request sent through a proxy
        # reached the target unless the proxy failed, and every ban the client saw was served.
        assert row["bans"] == row["target_bans"], row
        # Except when a relay is killed mid-crawl: a request it had already forwarded reached the
        # target, yet its answer never came back, so the client counted a proxy error too. Only
        # requests on the wire through the killed relay can be caught so.
        caught = row["target_requests"] - (row["requests"] - row["proxy_errors"])
        through_killed = sum(1 for h in mine if h["relay"] in killed)
        if through_killed:
            assert 0 <= caught <= min(on_the_wire, through_killed, row["proxy_errors"]), row
        else:
            assert caught == 0, row
        assert row["failed"] == 0, row
    ips = summary["ips"]
    assert ips["bought"] == record["ips_handed_out"] == len(record["leases"])
    assert ips["used"] == sum(1 for lease in record["leases"] if lease["used"])


def test_demo_plays_its_scenario(demo_run: dict[str, Any]) -> None:
    summary, record = demo_run["summary"], demo_run["record"]
    events = Counter(e["event"] for e in summary["events"])
    assert events["ban"] == 3 and events["kill"] == 1 and events["ttl"] == 1
    banned = {e["relay"] for e in summary["events"] if e["event"] == "ban"}
    # Banned relays were refused by the target, and the crawls still got every page (above).
    assert all(any(h["relay"] == r and h["banned"] for h in record["hits"]) for r in banned)
    killed = next(e["relay"] for e in summary["events"] if e["event"] == "kill")
    assert all(lease["state"] == "closed" for lease in record["leases"] if lease["relay"] == killed)
    # One spider per geography, through the add-on, with retries and TTL expiry in the pool.
    scrapy_rows = [row for row in summary["parts"] if row["client"] == "scrapy"]
    assert {row["geo"] for row in scrapy_rows} == {"US/California", "DE"}
    assert all(row["finish_reason"] == "finished" for row in scrapy_rows)
    assert all(row["retries"] >= row["bans"] > 0 for row in scrapy_rows)
    assert sum(row["expired"] for row in scrapy_rows) > 0
    assert summary["ips"]["leases_ended"] > 0
    buying = [row for row in summary["parts"] if row["client"] != "gateway"]
    assert summary["api_calls"]["ip/v3"] >= len(buying)
    assert summary["api_calls"]["total"] == sum(
        v for k, v in summary["api_calls"].items() if k != "total"
    )


def test_demo_shows_gateway_mode(demo_run: dict[str, Any]) -> None:
    """A spider on the simulator's rotating gateway, its requests on one sticky session until
    the target bans that session's exit; the crawl moves to a new session; its traffic shows in
    the provider's accounts list."""
    summary, record = demo_run["summary"], demo_run["record"]
    (row,) = [row for row in summary["parts"] if row["client"] == "gateway"]
    assert row["finish_reason"] == "finished" and row["pages_ok"] == row["pages_expected"]
    assert row["extracted"] == 0 and row["minted"] >= 2  # sessions are minted, never bought
    gateway = summary["gateway"]
    assert gateway["account"] == "alice01" and gateway["sessions_used"] >= 2
    assert gateway["traffic_kb"] > 0
    agent = next(p["user_agent"] for p in record["parts"] if p["name"] == row["part"])
    mine = [h for h in record["hits"] if h["user_agent"] == agent]
    (ban,) = [e for e in summary["events"] if "gateway session" in e["detail"]]
    served = [h["relay"] for h in mine if not h["banned"]]
    assert ban["relay"] in served  # the relay banned was a session's exit
    first_ban = next(i for i, h in enumerate(mine) if h["banned"])
    # One sticky session, so one exit, until a ban (the director's, or the plan's on a relay it
    # happened to exit from) moved the crawl to a new session, and another exit.
    before = {h["relay"] for h in mine[:first_ban]}
    assert len(before) == 1
    after = {h["relay"] for h in mine[first_ban:] if not h["banned"]}
    assert after - before  # pages came through another exit afterwards


def test_demo_output_never_shows_the_simulator_key(demo_run: dict[str, Any]) -> None:
    proc = demo_run["proc"]
    assert not DEMO_KEY_RE.search(proc.stdout + proc.stderr)
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("width", [80, 100])
def test_demo_summary_reads_at_80_columns(demo_run: dict[str, Any], width: int) -> None:
    """The summary of a real run, printed as a terminal of ``width`` columns shows it: no line
    wider, no value cut short with an ellipsis, every client and place whole."""
    import io

    from rich.console import Console

    from proxypool.demo import _print_summary

    summary = demo_run["summary"]
    buffer = io.StringIO()
    _print_summary(summary, Console(file=buffer, width=width, highlight=False, emoji=False))
    text = buffer.getvalue()

    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    assert "\u2026" not in text
    for row in summary["parts"]:
        assert row["part"] in text or row["part"].split(" ", 1)[1] in text
        assert f"{row['pages_ok']}/{row['pages_expected']}" in text
    for relay in summary["relays"]:
        assert re.search(rf"{relay['relay']}\s+{re.escape(relay['geo'])}\s", text), relay


def test_demo_ttl_names_its_clocks(demo_run: dict[str, Any]) -> None:
    ttl = demo_run["summary"]["ttl"]
    assert set(ttl) == {
        "life_simulated_minutes",
        "speed",
        "lease_real_seconds",
        "pool_retires_after_real_seconds",
    }
    assert ttl["lease_real_seconds"] == ttl["life_simulated_minutes"] * 60 / ttl["speed"]
    assert 0 < ttl["pool_retires_after_real_seconds"] < ttl["lease_real_seconds"]


def test_demo_announces_the_pages_it_then_counts(demo_run: dict[str, Any]) -> None:
    announced = re.search(r"a (\d+)-page target", demo_run["proc"].stderr)
    assert announced, demo_run["proc"].stderr[:2000]
    for row in demo_run["summary"]["parts"]:
        if row["client"] == "scrapy":
            assert row["pages_expected"] == int(announced.group(1))


@pytest.mark.parametrize(
    "argv",
    [["demo", "--api-url", "http://127.0.0.1:1/x"], ["--api-url", "http://127.0.0.1:1/x", "demo"],
     ["--timeout", "3", "demo"]],
    ids=["after", "before", "timeout"],
)  # fmt: skip
def test_demo_refuses_provider_flags(argv: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "proxypool", *argv],
        cwd=ROOT,
        env=crawl_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--api-url" in proc.stderr or "--timeout" in proc.stderr
    assert "simulator" not in proc.stdout


# -- proxypool demo --serve -------------------------------------------------------------------


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


@pytest.mark.timeout(60)
def test_demo_serve_prints_working_exports_and_stops_cleanly_on_sigint() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxypool", "demo", "--serve"],
        cwd=ROOT,
        env=crawl_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        exports: dict[str, str] = {}
        for _ in range(4):
            line = proc.stdout.readline()
            words = shlex.split(line)
            assert words[0] == "export", line
            name, _, value = words[1].partition("=")
            exports[name] = value
        assert set(exports) == {
            "PROXYPOOL_API_URL",
            "PROXYPOOL_APP_KEY",
            "PROXYPOOL_DEMO_TARGET",
            "PROXYPOOL_GATEWAY",
        }
        assert DEMO_KEY_RE.fullmatch(exports["PROXYPOOL_APP_KEY"])
        relays = children_of(proc.pid)
        assert len(relays) >= 8

        client = ProviderClient(exports["PROXYPOOL_APP_KEY"], base_url=exports["PROXYPOOL_API_URL"])
        with client:
            assert "US" in {c.country_code for c in client.list_state_catalog()}
            proxies = client.extract("JP", num=2, life=5)
        for proxy in proxies:
            page = fetch(proxy.url, exports["PROXYPOOL_DEMO_TARGET"] + "/page/3")
            assert page.status_code == 200
        # The gateway export works with `proxypool gateway url` and a seeded account.
        shown = subprocess.run(
            [
                *(sys.executable, "-m", "proxypool", "gateway", "url", "--user", "alice01"),
                *("--geo", "us/california", "--show-password"),
            ],
            cwd=ROOT,
            env=crawl_env(exports),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert shown.returncode == 0, shown.stderr
        gateway_url = shown.stdout.strip()
        assert "_area-US_state-California_" in gateway_url
        assert fetch(gateway_url, exports["PROXYPOOL_DEMO_TARGET"] + "/page/4").status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "stopped" in err
    deadline = time.monotonic() + 5
    while any(running(pid) for pid in relays) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(running(pid) for pid in relays)
    assert all(refuses(p.address) for p in proxies)
    api_port = exports["PROXYPOOL_API_URL"].split(":")[2].split("/")[0]
    assert refuses(f"127.0.0.1:{api_port}")
