"""One ban policy for both integrations (``proxypool.policy.BanPolicy``): ``is_ban(status, body)``
is what the Scrapy middleware (``PROXYPOOL_BAN_POLICY``) and the requests adapter
(``ban_policy=``) both call, so one object serves a crawl and a session alike; each also takes a
policy written against its own objects, ``is_ban(request, response)``. ``ban_check`` tells the
forms apart, and says clearly when it cannot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from _helpers import ListSource
from _scrapy_crawls import CaptchaBodyPolicy, run_crawl

from proxypool import ProxyPool, wrap_session
from proxypool.errors import ConfigError
from proxypool.policy import StatusBanPolicy, ban_check
from proxypool.sim.relays import RelayFleet
from proxypool.sim.target import TargetSite


class ByRequest:
    def is_ban(self, request: Any, response: Any) -> bool:
        return "blocked" in str(response.url)


def status_function(status: int, body: bytes = b"") -> bool:
    return status == 451


def request_function(request: Any, response: Any) -> bool:
    return False


@pytest.mark.parametrize(
    ("policy", "by_status"),
    [
        (CaptchaBodyPolicy(), True),
        (StatusBanPolicy([403]), True),
        (ByRequest(), False),
        (status_function, True),
        (request_function, False),
        (lambda status, body=b"": False, True),
        (lambda r, resp: False, False),
        (lambda rq, response: False, False),
        (lambda s, body: False, True),
        (lambda code, text="": False, True),
        (lambda *args: False, False),
    ],
)
def test_ban_check_reads_the_form_of_a_policy(policy: Any, by_status: bool) -> None:
    test, form = ban_check(policy, field="ban_policy")
    assert form is by_status
    assert callable(test)


@pytest.mark.parametrize(
    ("policy", "words"),
    [
        (object(), "must have an is_ban(status, body) method"),
        (CaptchaBodyPolicy, "not the class CaptchaBodyPolicy"),
        (lambda a, b: False, "cannot tell which form"),
        (lambda x, *rest: False, "cannot tell which form"),
        (42, "must have an is_ban"),
    ],
)
def test_ban_check_says_what_is_wrong(policy: Any, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        ban_check(policy, field="PROXYPOOL_BAN_POLICY")
    assert words in str(info.value) and info.value.field == "PROXYPOOL_BAN_POLICY"


def test_one_policy_object_serves_a_requests_session(
    relay_fleet: RelayFleet, target_site: TargetSite
) -> None:
    target_site.ban("relay-0", captcha=True)
    policy = CaptchaBodyPolicy()
    pool = ProxyPool(ListSource(relay_fleet.proxies()), min_size=0, batch=4)
    with wrap_session(requests.Session(), pool, ban_policy=policy) as session:
        session.trust_env = False
        for n in range(8):
            answer = session.get(target_site.url_for(f"/page/{n}"), timeout=10)
            assert answer.status_code == 200
            assert b"captcha" not in answer.content
    assert policy.calls >= 8
    assert pool.stats()["bans"] >= 1
    assert {h.relay for h in target_site.hits() if not h.banned} <= {
        "relay-1",
        "relay-2",
        "relay-3",
    }


def test_the_same_policy_serves_a_scrapy_crawl(
    tmp_path: Path, relay_fleet: RelayFleet, target_site: TargetSite
) -> None:
    target_site.ban("relay-0", captcha=True)
    result = run_crawl(
        tmp_path,
        follow=True,
        start=[{"url": target_site.url_for("/")}],
        settings={
            "PROXYPOOL_PROXY_LIST": [relay.address for relay in relay_fleet],
            "PROXYPOOL_BAN_POLICY": "_scrapy_crawls.CaptchaBodyPolicy",
            "PROXYPOOL_MAX_PROXY_RETRIES": 6,
        },
    )
    assert result.returncode == 0, result
    pages = {"/"} | {f"/page/{n}" for n in range(target_site.pages)}
    assert pages <= result.ok_paths()
    assert result.stat("proxypool/bans/policy") >= 1
    served = {h.relay for h in target_site.hits() if not h.banned}
    assert "relay-0" not in served


def test_a_requests_policy_of_its_own_objects(
    relay_fleet: RelayFleet, target_site: TargetSite
) -> None:
    seen: list[tuple[str, int]] = []

    class Recording:
        def is_ban(self, request: requests.PreparedRequest, response: requests.Response) -> bool:
            seen.append((str(request.url), response.status_code))
            return False

    pool = ProxyPool(ListSource(relay_fleet.proxies()), min_size=0, batch=4)
    url = target_site.url_for("/page/1")
    with wrap_session(requests.Session(), pool, ban_policy=Recording()) as session:
        session.trust_env = False
        session.get(url, timeout=10)
    assert seen == [(url, 200)]


def test_a_scrapy_policy_that_cannot_be_read_stops_the_crawl_first(
    tmp_path: Path, relay_fleet: RelayFleet, target_site: TargetSite
) -> None:
    result = run_crawl(
        tmp_path,
        start=[{"url": target_site.url_for("/")}],
        settings={
            "PROXYPOOL_PROXY_LIST": [relay_fleet.relays[0].address],
            "PROXYPOOL_BAN_POLICY": "test_ban_policy.two_odd_names",
        },
    )
    assert result.finish_reason == "proxypool_misconfigured", result
    assert "cannot tell which form" in result.stat("proxypool/error")
    assert target_site.hits() == []


def two_odd_names(first: Any, second: Any) -> bool:
    return False


_: Callable[..., Any] = two_odd_names
