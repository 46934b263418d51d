"""Tests of the local relay fleet: real proxy.py processes, real requests, a real target site."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from proxypool.errors import ConfigError
from proxypool.models import Proxy
from proxypool.sim.relays import (
    RELAY_HEADER,
    RELAYED_AT_HEADER,
    RelayFleet,
    port_for_source_ip,
    source_ip_for_port,
)
from proxypool.sim.target import TargetSite

MakeFleet = Callable[..., RelayFleet]


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    tree = [pid]
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        tree += _process_tree(int(child))
    return tree


def _running(pid: int) -> bool:
    """True unless ``pid`` is gone or a zombie (a zombie holds no sockets, init reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def _refuses(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_each_relay_tags_the_requests_it_forwards(
    relay_fleet: RelayFleet, target_site: TargetSite
) -> None:
    for relay in relay_fleet:
        response = requests.get(
            target_site.url_for("/page/1"), proxies={"http": relay.url}, timeout=10
        )
        assert response.status_code == 200

    hits = target_site.hits()
    assert [hit.relay for hit in hits] == list(relay_fleet.names)
    assert [hit.relay_port for hit in hits] == [relay.port for relay in relay_fleet]
    assert not any(hit.direct for hit in hits)
    assert target_site.hits_by_relay() == dict.fromkeys(relay_fleet.names, 1)


def test_aliases_are_further_addresses_of_the_same_relay(
    make_relay_fleet: MakeFleet, target_site: TargetSite
) -> None:
    fleet = make_relay_fleet(2, aliases=2)
    for relay in fleet:
        assert relay.addresses == tuple(
            f"{host}:{relay.port}" for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3")
        )
        for address in relay.addresses:
            response = requests.get(
                target_site.url_for(f"/echo?via={address}"),
                proxies={"http": f"http://{address}"},
                timeout=10,
            )
            assert response.status_code == 200
    hits = target_site.hits()
    # Every address of a relay is served by that relay's one process.
    assert [hit.relay for hit in hits] == [name for name in fleet.names for _ in range(3)]
    assert not any(hit.direct for hit in hits)
    processes = [relay._process for relay in fleet]
    # proxy.py runs as a parent and one acceptor child: two processes per relay, aliases or not.
    assert sum(len(_process_tree(p.pid)) for p in processes if p is not None) == 4
    # A fleet without aliases listens on its own address only.
    (plain,) = make_relay_fleet(1).relays
    assert plain.addresses == (plain.address,)
    assert _refuses("127.0.0.2", plain.port)


def test_relays_have_stable_distinct_identities(relay_fleet: RelayFleet) -> None:
    assert relay_fleet.names == ("relay-0", "relay-1", "relay-2", "relay-3")
    addresses = {relay.address for relay in relay_fleet}
    assert len(addresses) == len(relay_fleet)
    relay = relay_fleet["relay-2"]
    assert relay.address == f"127.0.0.1:{relay.port}"
    assert relay.proxy == Proxy("127.0.0.1", relay.port)
    assert relay_fleet.by_address(relay.address) is relay
    assert relay_fleet.by_port(relay.port) is relay
    assert relay_fleet.proxies(["relay-2"]) == [relay.proxy]
    with pytest.raises(KeyError, match="relay-9"):
        relay_fleet["relay-9"]


def test_a_client_cannot_spoof_the_relay_header(
    relay_fleet: RelayFleet, target_site: TargetSite
) -> None:
    relay = relay_fleet["relay-1"]
    requests.get(
        target_site.url_for("/"),
        proxies={"http": relay.url},
        headers={RELAY_HEADER: "relay-3"},
        timeout=10,
    )
    requests.get(target_site.url_for("/"), headers={RELAY_HEADER: "relay-3"}, timeout=10)

    via_relay, direct = target_site.hits()
    assert via_relay.relay == "relay-1"
    assert direct.direct
    assert direct.relay is None


def test_a_relay_stamps_when_it_got_a_request_before_its_latency(
    make_relay_fleet: MakeFleet, target_site: TargetSite
) -> None:
    (relay,) = make_relay_fleet(1, latency=0.3).relays
    before = time.monotonic()
    requests.get(
        target_site.url_for("/"),
        proxies={"http": relay.url},
        headers={RELAYED_AT_HEADER: "1.5"},  # a client cannot set it
        timeout=10,
    )
    requests.get(target_site.url_for("/"), headers={RELAYED_AT_HEADER: "1.5"}, timeout=10)

    via_relay, direct = target_site.hits()
    assert via_relay.relayed_at is not None
    assert before <= via_relay.relayed_at <= via_relay.at - 0.3  # stamped before the latency
    assert direct.relayed_at is None  # no relay: nothing to tell, whatever the client sent


def test_a_killed_relay_refuses_and_a_revived_one_serves_on_the_same_port(
    make_relay_fleet: MakeFleet, target_site: TargetSite
) -> None:
    fleet = make_relay_fleet(2)
    relay = fleet["relay-0"]
    port = relay.port

    fleet.kill("relay-0")

    assert not relay.alive
    assert fleet.alive() == ["relay-1"]
    assert _refuses(relay.host, port)
    with pytest.raises(requests.exceptions.ProxyError):
        requests.get(target_site.url_for("/"), proxies={"http": relay.url}, timeout=10)
    assert target_site.count() == 0

    fleet.revive("relay-0")

    assert relay.alive
    assert relay.port == port
    response = requests.get(target_site.url_for("/"), proxies={"http": relay.url}, timeout=10)
    assert response.status_code == 200
    assert target_site.hits_by_relay() == {"relay-0": 1}


def test_https_goes_through_a_connect_tunnel_that_the_relay_records(
    relay_fleet: RelayFleet, tls_target_site: TargetSite
) -> None:
    relay = relay_fleet["relay-3"]
    tunnels_before = relay.tunnels()
    tls_target_site.know_relays(relay_fleet)

    response = requests.get(
        tls_target_site.url_for("/page/2"),
        proxies={"https": relay.url},
        verify=str(tls_target_site.cert_path),
        timeout=10,
    )

    assert response.status_code == 200
    assert "page 2" in response.text
    assert relay.tunnels()[len(tunnels_before) :] == [f"127.0.0.1:{tls_target_site.port}"]
    (hit,) = tls_target_site.hits()
    assert hit.tls
    assert hit.relay_port == relay.port
    assert hit.relay == "relay-3"
    assert hit.header(RELAY_HEADER) is None  # the tunnel is opaque to the relay


def test_basic_auth_is_required_and_never_forwarded(
    make_relay_fleet: MakeFleet, target_site: TargetSite
) -> None:
    fleet = make_relay_fleet(1, auth=("scout", "Hunter2secret"))
    relay = fleet["relay-0"]
    assert relay.proxy.username == "scout"
    assert "Hunter2secret" not in repr(relay) + repr(fleet) + str(relay.proxy)

    refused = requests.get(
        target_site.url_for("/echo"), proxies={"http": relay.proxy.address}, timeout=10
    )
    with requests.Session() as session:  # keep-alive: several requests on one connection
        session.proxies = {"http": relay.url}
        accepted = [session.get(target_site.url_for("/echo"), timeout=10) for _ in range(3)]

    assert refused.status_code == 407
    assert [response.status_code for response in accepted] == [200] * 3
    assert target_site.connections_accepted() == 1
    hits = target_site.hits()  # the refused request never reached the site
    assert [hit.relay for hit in hits] == ["relay-0"] * 3
    assert [hit.header("Proxy-Authorization") for hit in hits] == [None] * 3
    assert not any("Hunter2secret" in response.text for response in accepted)


def test_latency_delays_only_the_slow_relay(
    make_relay_fleet: MakeFleet, target_site: TargetSite
) -> None:
    fleet = make_relay_fleet(2, latency={"relay-1": 5.0})
    url = target_site.url_for("/")

    fast = requests.get(url, proxies={"http": fleet["relay-0"].url}, timeout=10)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(url, proxies={"http": fleet["relay-1"].url}, timeout=(5, 0.2))

    assert fast.status_code == 200
    fleet.set_latency("relay-1", 0.0)
    assert requests.get(url, proxies={"http": fleet["relay-1"].url}, timeout=10).ok


def test_close_leaves_no_process_and_no_listener(make_relay_fleet: MakeFleet) -> None:
    fleet = make_relay_fleet(2)
    pids = [
        pid for relay in fleet if relay._process is not None
        for pid in _process_tree(relay._process.pid)
    ]  # fmt: skip
    ports = [relay.port for relay in fleet]
    assert len(pids) >= 4  # each relay: proxy.py's main process and its acceptor

    fleet.close()
    fleet.close()  # idempotent

    assert [pid for pid in pids if _running(pid)] == []
    assert all(_refuses("127.0.0.1", port) for port in ports)
    with pytest.raises(RuntimeError, match="not running"):
        fleet.revive("relay-0")


_ORPHANING_OWNER = """
import sys, time
from proxypool.sim.relays import RelayFleet
fleet = RelayFleet(2).start()
print(fleet._workdir, flush=True)
print(" ".join(str(relay._process.pid) for relay in fleet), flush=True)
time.sleep(60)
"""


def test_relays_die_when_their_owner_is_killed_without_closing_them() -> None:
    root = str(Path(__file__).resolve().parents[1])
    owner = subprocess.Popen(
        [sys.executable, "-c", _ORPHANING_OWNER],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": root},
    )
    try:
        assert owner.stdout is not None
        workdir = Path(owner.stdout.readline().decode().strip())
        leaders = [int(pid) for pid in owner.stdout.readline().split()]
        pids = [pid for leader in leaders for pid in _process_tree(leader)]
        assert len(pids) >= 4
    finally:
        owner.kill()  # SIGKILL: no atexit, no finally, no close()
        owner.wait()

    deadline = time.monotonic() + 10  # the relays' watchdogs poll every 0.5 s
    while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in pids if _running(pid)] == []
    shutil.rmtree(workdir)  # the killed owner could not clean up after itself


def _started_at(pid: int) -> float:
    """When process ``pid`` started, in seconds since boot (``/proc/<pid>/stat`` field 22, in
    clock ticks: 10 ms apart, usually)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()  # from field 3, state, on
    return int(fields[22 - 3]) / os.sysconf("SC_CLK_TCK")


def test_a_fleet_starts_in_parallel_and_reports_its_startup_time(
    make_relay_fleet: MakeFleet,
) -> None:
    count = 5
    fleet = make_relay_fleet(count)

    assert fleet.alive() == [f"relay-{i}" for i in range(count)]
    assert fleet.startup_seconds is not None and fleet.startup_seconds > 0
    starts = []
    for relay in fleet:
        assert relay._process is not None
        starts.append(_started_at(relay._process.pid))
    tick = 1 / os.sysconf("SC_CLK_TCK")
    spread = max(starts) - min(starts)
    # The start time of each relay process, from the kernel, measured on one clock at once: in
    # parallel, every relay is spawned before any is waited for, so the last one starts a few
    # milliseconds after the first. One by one, each would start only once the one before it
    # answered: the spread would be most of startup_seconds (about 4/5 of it, for 5 relays).
    # The last relay started took at least startup_seconds - spread to come up: the spread must
    # be well below that one relay's start-up time (half of it; ticks round it by < 1 tick).
    assert spread - tick < 0.5 * (fleet.startup_seconds - spread), (
        spread,
        fleet.startup_seconds,
    )
    # startup_seconds covers the whole start: every spawn, then the wait for each relay.
    assert fleet.startup_seconds >= spread - tick, (spread, fleet.startup_seconds)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"count": 0}, "count"),
        ({"count": True}, "count"),
        ({"auth": ("user", "pa:ss")}, "auth"),
        ({"prefix": "relay 0 "}, "prefix"),
        ({"latency": -1.0}, "latency"),
        ({"latency": {"relay-7": 1.0}}, "latency"),
        ({"aliases": -1}, "aliases"),
        ({"aliases": 65}, "aliases"),
        ({"aliases": 2, "host": "127.0.0.3"}, "host"),
    ],
)
def test_bad_fleet_arguments_raise_config_error(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RelayFleet(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


@given(st.integers(min_value=256, max_value=65535))
def test_source_ip_encodes_the_relay_port(port: int) -> None:
    ip = source_ip_for_port(port)
    assert ip != "127.0.0.1"
    assert port_for_source_ip(ip) == port


@given(st.integers(min_value=256, max_value=65535))
def test_the_plugin_encodes_source_addresses_like_the_fleet_decodes_them(port: int) -> None:
    # The plugin runs without the proxypool package, so it keeps its own copy of the encoding.
    from proxypool.sim import _relay_plugin

    assert _relay_plugin.source_ip_for_port(port) == source_ip_for_port(port)
    assert _relay_plugin._HEADER.decode() == RELAY_HEADER
    assert _relay_plugin._RELAYED_AT.decode() == RELAYED_AT_HEADER


@pytest.mark.parametrize("ip", ["127.0.0.1", "10.0.0.1", "::1", "127.0.1.1", "127.x.1.1"])
def test_addresses_that_are_not_relay_sources_decode_to_none(ip: str) -> None:
    assert port_for_source_ip(ip) is None
