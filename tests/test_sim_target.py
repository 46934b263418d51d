"""Tests of the local target site: crawlable pages, the request log, bans, https."""

from __future__ import annotations

import itertools
import re
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests

from proxypool.errors import ConfigError
from proxypool.sim.relays import RelayFleet, source_ip_for_port
from proxypool.sim.target import CAPTCHA_MARKER, TargetSite

_LINK_RE = re.compile(r'href="(/page/\d+)"')


def test_a_crawl_from_the_home_page_reaches_every_page(
    make_target_site: Callable[..., TargetSite],
) -> None:
    site = make_target_site(pages=13, links_per_page=2)
    seen, queue = {"/"}, ["/"]
    with requests.Session() as session:
        while queue:
            response = session.get(site.url_for(queue.pop()), timeout=10)
            assert response.status_code == 200
            for link in _LINK_RE.findall(response.text):
                if link not in seen:
                    seen.add(link)
                    queue.append(link)

    assert {site.url_for(path) for path in seen} == set(site.page_urls())
    assert site.paths_served_ok() == seen
    assert len(site.direct_hits()) == 14
    assert site.hits_by_relay() == {None: 14}


def test_keep_alive_serves_many_requests_on_one_connection(target_site: TargetSite) -> None:
    with requests.Session() as session:
        for n in range(10):
            assert session.get(target_site.url_for(f"/page/{n}"), timeout=10).ok

    assert target_site.count() == 10
    assert target_site.connections_accepted() == 1


def test_unknown_paths_and_status_pages(target_site: TargetSite) -> None:
    assert requests.get(target_site.url_for("/page/20"), timeout=10).status_code == 404
    assert requests.get(target_site.url_for("/nope"), timeout=10).status_code == 404
    assert requests.get(target_site.url_for("/status/503"), timeout=10).status_code == 503
    assert [hit.status for hit in target_site.hits()] == [404, 404, 503]
    assert target_site.paths_served_ok() == set()


def test_echo_reports_headers_and_bodies(target_site: TargetSite) -> None:
    plain = requests.post(
        target_site.url_for("/echo?x=1"), data=b"abc", headers={"X-Test": "yes"}, timeout=10
    ).json()
    chunked = requests.post(
        target_site.url_for("/echo"), data=iter([b"12", b"345"]), timeout=10
    ).json()

    assert plain["method"] == "POST"
    assert plain["path"] == "/echo?x=1"
    assert ["X-Test", "yes"] in plain["headers"]
    assert plain["body_length"] == 3
    assert chunked["body_length"] == 5
    assert target_site.hits()[0].header("x-test") == "yes"


def test_a_status_ban_hits_only_the_banned_relay(
    relay_fleet: RelayFleet, target_site: TargetSite
) -> None:
    target_site.ban("relay-0", 429)
    url = target_site.url_for("/page/3")

    banned = requests.get(url, proxies={"http": relay_fleet["relay-0"].url}, timeout=10)
    free = requests.get(url, proxies={"http": relay_fleet["relay-1"].url}, timeout=10)

    assert banned.status_code == 429
    assert free.status_code == 200
    assert [(h.relay, h.status, h.banned) for h in target_site.hits()] == [
        ("relay-0", 429, True),
        ("relay-1", 200, False),
    ]
    assert target_site.paths_served_ok() == {"/page/3"}

    target_site.unban("relay-0")
    assert requests.get(url, proxies={"http": relay_fleet["relay-0"].url}, timeout=10).ok


def test_a_captcha_ban_answers_200_with_a_captcha_page(
    relay_fleet: RelayFleet, target_site: TargetSite
) -> None:
    target_site.ban("relay-2", captcha=True)

    response = requests.get(
        target_site.url_for("/page/1"), proxies={"http": relay_fleet["relay-2"].url}, timeout=10
    )

    assert response.status_code == 200
    assert CAPTCHA_MARKER in response.text
    assert "page 1" not in response.text
    assert target_site.banned_hits()[0].relay == "relay-2"
    assert target_site.paths_served_ok() == set()


def test_direct_requests_can_be_banned_too(target_site: TargetSite) -> None:
    target_site.ban(None, 403)
    assert requests.get(target_site.url_for("/"), timeout=10).status_code == 403
    target_site.unban_all()
    assert requests.get(target_site.url_for("/"), timeout=10).status_code == 200


def test_https_needs_the_pinned_certificate(tls_target_site: TargetSite) -> None:
    assert tls_target_site.url.startswith("https://127.0.0.1:")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(tls_target_site.url_for("/"), timeout=10)

    response = requests.get(
        tls_target_site.url_for("/"), verify=str(tls_target_site.cert_path), timeout=10
    )

    assert response.status_code == 200
    (hit,) = tls_target_site.hits()  # the failed handshake never became a request
    assert hit.tls
    assert hit.direct


def test_https_bans_apply_to_relays_known_by_port(
    relay_fleet: RelayFleet, tls_target_site: TargetSite
) -> None:
    tls_target_site.know_relays(relay_fleet)
    tls_target_site.ban("relay-1", 403)
    verify = str(tls_target_site.cert_path)
    url = tls_target_site.url_for("/")

    banned = requests.get(url, proxies={"https": relay_fleet["relay-1"].url}, verify=verify)
    free = requests.get(url, proxies={"https": relay_fleet["relay-2"].url}, verify=verify)

    assert (banned.status_code, free.status_code) == (403, 200)
    assert tls_target_site.hits_by_relay() == {"relay-1": 1, "relay-2": 1}
    assert tls_target_site.hits_by_relay_port() == {
        relay_fleet["relay-1"].port: 1,
        relay_fleet["relay-2"].port: 1,
    }


def test_the_log_is_consistent_under_threads(
    relay_fleet: RelayFleet, target_site: TargetSite
) -> None:
    relays = list(relay_fleet)

    def fetch(n: int) -> int:
        relay = relays[n % len(relays)]
        with requests.Session() as session:
            session.proxies = {"http": relay.url}
            return sum(
                session.get(target_site.url_for(f"/page/{i % 20}"), timeout=10).status_code
                for i in range(n, n + 25)
            )

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(fetch, range(8)))

    assert statuses == [25 * 200] * 8
    assert target_site.count() == 200
    assert target_site.hits_by_relay() == {relay.name: 50 for relay in relays}


def test_hits_are_stamped_with_the_injected_clock(
    make_target_site: Callable[..., TargetSite],
) -> None:
    ticks: Iterator[float] = itertools.count(100.0)
    site = make_target_site(clock=lambda: next(ticks))

    for _ in range(3):
        requests.get(site.url_for("/"), timeout=10)

    assert [hit.at for hit in site.hits()] == [100.0, 101.0, 102.0]
    site.clear()
    assert site.hits() == []


def test_a_hit_is_stamped_together_with_its_ban_lookup(
    make_target_site: Callable[..., TargetSite],
) -> None:
    # Tests compare hit.at with the moment a ban was set: a hit stamped after ban() returned
    # must have been answered with the ban. Here a ban arrives while the first hit is stamped:
    # it must wait, so that hit is unbanned and stamped before the ban's time.
    ticks: Iterator[float] = itertools.count(100.0)
    ban_times: list[float] = []
    banners: list[threading.Thread] = []

    def ban_now() -> None:
        site.ban(None)
        ban_times.append(next(ticks))

    def clock() -> float:
        if not banners:
            banners.append(threading.Thread(target=ban_now))
            banners[0].start()
            # Ample time for the ban to land, unless the site holds it off (as it must).
            banners[0].join(1.0)
        return next(ticks)

    site = make_target_site(clock=clock)
    first = requests.get(site.url_for("/"), timeout=10).status_code
    banners[0].join(10)
    second = requests.get(site.url_for("/"), timeout=10).status_code

    (banned_at,) = ban_times
    assert (first, second) == (200, 403)
    assert [(hit.at > banned_at, hit.banned) for hit in site.hits()] == [
        (False, False),
        (True, True),
    ]


@dataclass(frozen=True)
class FakeRelay:
    """A relay as the site knows it: a name and a port (its connections come from the source
    address the port maps to, see ``source_ip_for_port``)."""

    name: str
    port: int

    def connect(self, site: TargetSite) -> socket.socket:
        return socket.create_connection(
            (site.host, site.port), timeout=10, source_address=(source_ip_for_port(self.port), 0)
        )


def test_waiting_until_the_site_is_done_with_a_relay_s_connections(
    target_site: TargetSite,
) -> None:
    relay, other = FakeRelay("relay-x", 40001), FakeRelay("relay-y", 40002)
    target_site.know_relays([relay, other])
    request = f"GET /page/1 HTTP/1.1\r\nHost: {target_site.host}\r\n\r\n".encode()

    with relay.connect(target_site) as kept_alive:
        kept_alive.sendall(request)
        assert kept_alive.recv(64).startswith(b"HTTP/1.1 200")
        # Open (keep-alive): the wait gives up, as it does for a relay that still serves.
        assert target_site.wait_done_with([relay], timeout=0.3) is False
        assert target_site.wait_done_with([other], timeout=10) is True  # other relays: no matter
    assert target_site.wait_done_with([relay], timeout=10) is True

    # Requests sent on connections closed at once, before the site may even have accepted them:
    # once the wait returns, each one has been recorded.
    for n in range(20):
        with relay.connect(target_site) as hasty:
            hasty.sendall(request)
        assert target_site.wait_done_with([relay], timeout=10) is True
        assert target_site.count() == n + 2
    assert target_site.hits_by_relay() == {"relay-x": 21}
    assert target_site.direct_hits() == []  # the wait's probe connections are no requests


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"pages": 0}, "pages"), ({"pages": "5"}, "pages"), ({"links_per_page": 0}, "links_per_page")],
)
def test_bad_site_arguments_raise_config_error(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TargetSite(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_ban_rejects_a_status_that_is_not_http(target_site: TargetSite) -> None:
    with pytest.raises(ConfigError) as caught:
        target_site.ban("relay-0", 1000)
    assert caught.value.field == "status"


def test_redirect_answers_302_to_the_given_location(target_site: TargetSite) -> None:
    to = target_site.url_for("/page/2")
    response = requests.get(target_site.url_for("/redirect"), params={"to": to}, timeout=10)

    assert response.status_code == 200 and "page 2" in response.text
    assert [r.headers["Location"] for r in response.history] == [to]
    assert [(hit.path, hit.status) for hit in target_site.hits()] == [
        ("/redirect", 302),
        ("/page/2", 200),
    ]
    bare = requests.get(target_site.url_for("/redirect"), allow_redirects=False, timeout=10)
    assert bare.headers["Location"] == "/"
