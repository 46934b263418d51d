"""Every example runs against the simulated world (what ``proxypool demo --serve`` runs) and does
what its docstring says: examples/requests_session.py, examples/account_admin.py and the Scrapy
project in examples/scrapy_project/. Each runs as a user would run it, in a subprocess, with
``PROXYPOOL_API_URL``/``PROXYPOOL_APP_KEY`` (and the target's URL) in its environment; the target
site's own records and the simulator's call log say whether it did."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _scrapy_crawls import ROOT, crawl_env

from proxypool.api import ProviderClient
from proxypool.sim.world import SimWorld

EXAMPLES = ROOT / "examples"
SCRAPY_PROJECT = EXAMPLES / "scrapy_project"
REQUESTS_AGENT = "python-requests/"


@pytest.fixture(scope="module")
def world() -> Iterator[SimWorld]:
    with SimWorld({"US/California": 2, "GB": 1, "DE": 1}, pages=20) as world:
        yield world


@pytest.fixture
def fresh_world(world: SimWorld) -> Iterator[SimWorld]:
    """The module's world with an empty request log and no bans, restored after the test."""
    world.target.clear()
    world.target.unban_all()
    yield world
    world.target.unban_all()


def run_example(
    world: SimWorld, *args: str, cwd: Path = ROOT, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = crawl_env({**world.env(), "PROXYPOOL_DEMO_TARGET": world.target_url})
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_scrapy(
    world: SimWorld, command: list[str], tmp_path: Path, *, max_pages: int, cwd: Path | None = None
) -> tuple[list[dict[str, Any]], subprocess.CompletedProcess[str]]:
    """``python -m scrapy COMMAND -a url=<the target> -a max_pages=N -O items.jsonl``, as a user
    runs it; its items, once it exited 0."""
    items_file = tmp_path / "items.jsonl"
    proc = run_example(
        world,
        "-m",
        "scrapy",
        *command,
        "-a",
        f"url={world.target.url_for('/')}",
        "-a",
        f"max_pages={max_pages}",
        "-O",
        f"{items_file}:jsonlines",
        cwd=cwd if cwd is not None else tmp_path,
        timeout=80,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in items_file.read_text().splitlines()], proc


# -- requests_session.py ----------------------------------------------------------------------


def test_requests_example_crawls_through_the_pool_and_survives_a_ban(fresh_world: SimWorld) -> None:
    world = fresh_world
    world.ban_relay("relay-0", 403)  # one of the two US relays: its requests must move on

    proc = run_example(world, str(EXAMPLES / "requests_session.py"), "--limit", "8")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    fetched = [line.split(" ", 1)[1] for line in lines if line.startswith("200 ")]
    assert len(fetched) == 8
    assert fetched[0] == world.target_url  # from $PROXYPOOL_DEMO_TARGET
    # Every printed page arrived at the target with a 200, through a US relay, never directly.
    hits = [
        h for h in world.target.hits() if (h.header("User-Agent") or "").startswith(REQUESTS_AGENT)
    ]
    assert world.target.direct_hits() == []
    served = {
        world.target.url_for(h.path).rstrip("/") for h in hits if h.status == 200 and not h.banned
    }
    assert {url.rstrip("/") for url in fetched} <= served
    assert {h.relay for h in hits} <= set(world.relays_in("US"))
    # The ban happened, and the example's own count of bans agrees with the target's.
    banned = [h for h in hits if h.banned]
    assert banned and {h.relay for h in banned} == {"relay-0"}
    summary = lines[-1]
    assert summary.startswith("fetched 8 pages, 0 failed; pool:")
    assert re.search(rf"\b{len(banned)} bans\b", summary), summary


def test_requests_example_explains_a_missing_start_url(fresh_world: SimWorld) -> None:
    env = crawl_env(fresh_world.env())  # no PROXYPOOL_DEMO_TARGET
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "requests_session.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "give a start URL or set PROXYPOOL_DEMO_TARGET" in proc.stderr
    assert fresh_world.target.count() == 0


# -- account_admin.py -------------------------------------------------------------------------


def test_account_admin_tour_shows_the_account_and_changes_nothing(world: SimWorld) -> None:
    calls_before = len(world.simulator.calls())

    proc = run_example(world, str(EXAMPLES / "account_admin.py"))

    assert proc.returncode == 0, proc.stdout + proc.stderr
    made = world.simulator.calls()[calls_before:]
    assert made and all(call.method == "GET" for call in made)  # read-only: no POST at all
    with ProviderClient(world.app_key, base_url=world.api_url) as client:
        accounts = client.list_accounts()
        products = list(client.iter_products())
        static = client.list_static_ips(size=5)
    out = proc.stdout
    assert f"Proxy accounts ({len(accounts)}):" in out
    for account in accounts:
        assert f"  {account.username} " in out
        assert account.password not in out
    assert f"Packages: {len(products)}\n" in out
    assert products[0].trade_no in out
    assert f"Static IPs: {static.total_count}\n" in out
    assert "Traffic, last 7 days:" in out


def test_account_admin_try_changes_adds_changes_and_deletes_an_account(world: SimWorld) -> None:
    calls_before = len(world.simulator.calls())

    proc = run_example(world, str(EXAMPLES / "account_admin.py"), "--try-changes")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    added = re.search(r"^Added account (example[0-9a-f]{8})$", proc.stdout, re.MULTILINE)
    assert added, proc.stdout
    username = added.group(1)
    posts = [c.endpoint for c in world.simulator.calls()[calls_before:] if c.method == "POST"]
    assert posts == [
        "whitelist-account/add",
        "whitelist-account/change-remark",
        "whitelist-account/change-limit",
        "whitelist-account/change-password",
        "whitelist-account/disable",
        "whitelist-account/enable",
        "whitelist-account/delete",
    ]
    # Seen in its changed state, then gone.
    assert re.search(
        rf"now: {username}\s+disabled .* limit 5 GB\s+'changed by account_admin.py'", proc.stdout
    )
    with ProviderClient(world.app_key, base_url=world.api_url) as client:
        assert username not in {a.username for a in client.list_accounts()}
    assert f"Enabled and deleted {username}\n" in proc.stdout
    # The generated passwords (24 hex characters, letters among them; trade numbers are all
    # digits) are never printed.
    assert not re.search(r"\b(?=[0-9]*[a-f])[0-9a-f]{24}\b", proc.stdout + proc.stderr)


# -- scrapy_project/ --------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_scrapy_project_crawls_by_geography(fresh_world: SimWorld, tmp_path: Path) -> None:
    world = fresh_world

    items, proc = run_scrapy(world, ["crawl", "geo"], tmp_path, max_pages=100, cwd=SCRAPY_PROJECT)

    us = {item["url"] for item in items if item["from"] == "US/California"}
    gb = [item for item in items if item["from"] == "GB"]
    assert us == set(world.target.page_urls())  # the whole site
    assert all(item["status"] == 200 for item in items)
    assert [item["url"] for item in gb] == [world.target.url_for("/")]
    # The target's records: nothing direct; the GB request through the GB relay, the rest
    # through the California relays.
    hits = world.target.hits()
    assert world.target.direct_hits() == []
    gb_relays = set(world.relays_in("GB"))
    assert [h.path for h in hits if h.relay in gb_relays] == ["/"]
    assert {h.relay for h in hits if h.relay not in gb_relays} <= set(
        world.relays_in("US/California")
    )
    assert world.app_key not in proc.stdout + proc.stderr


# -- runspider_shop.py ---------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_runspider_example_enables_the_pool_in_custom_settings_and_names_each_pages_proxy(
    fresh_world: SimWorld, tmp_path: Path
) -> None:
    """``scrapy runspider`` on one file, the pool switched on by ``custom_settings`` only: every
    page came through a California relay (the target's records), nothing direct, and each item's
    ``proxy`` is the address whose relay the target saw carry that very page."""
    world = fresh_world

    items, proc = run_scrapy(
        world, ["runspider", str(EXAMPLES / "runspider_shop.py")], tmp_path, max_pages=8
    )
    assert len(items) >= 8
    assert world.target.direct_hits() == []
    relay_of = world.lease_relays()  # leased address -> relay
    carried = {(h.path, h.relay) for h in world.target.hits() if h.status == 200}
    california = set(world.relays_in("US/California"))
    for item in items:
        assert item["status"] == 200
        assert item["geo"] == "US/California"
        relay = relay_of[item["proxy"]]
        assert relay in california
        path = item["url"].removeprefix(world.target.url_for("/").rstrip("/")) or "/"
        assert (path, relay) in carried, (item, sorted(carried))
    assert world.app_key not in proc.stdout + proc.stderr


# -- distributed/ ------------------------------------------------------------------------------


@pytest.mark.timeout(150)
def test_distributed_example_splits_the_site_between_processes_that_share_one_pool(
    tmp_path: Path,
) -> None:
    """``examples/distributed/run.py``: two ``scrapy crawl shop`` processes, scrapy-redis's queue
    and proxypool's pool in one Redis. The whole site is fetched once, split between them,
    through one batch of proxies bought for both. (Relays answer in 0.5 s, so the crawl lasts
    longer than Scrapy's 5 s between looks at an idle spider's queue: both get work.)"""
    from _redis import RedisServer

    with (
        SimWorld({"US/California": 2}, pages=100, relay_latency=0.5) as world,
        RedisServer() as server,
    ):
        env = crawl_env(
            {**world.env(), "PROXYPOOL_REDIS_URL": server.url, "PYTHONWARNINGS": "ignore"}
        )
        proc = subprocess.run(
            [
                sys.executable,
                "run.py",
                "--processes",
                "2",
                "--url",
                world.target.url_for("/"),
                "--out",
                str(tmp_path / "items"),
            ],
            cwd=EXAMPLES / "distributed",
            env=env,
            capture_output=True,
            text=True,
            timeout=140,
        )
        pages = set(world.target.page_urls())
        direct = world.target.direct_hits()
        calls = world.simulator.extraction_calls()
        key = world.app_key
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    per_process = [
        [json.loads(line)["url"] for line in path.read_text().splitlines()]
        for path in sorted((tmp_path / "items").glob("process-*.jsonl"))
    ]
    urls = [url for fetched in per_process for url in fetched]
    assert len(per_process) == 2 and all(per_process), proc.stdout  # both did some
    assert sorted(urls) == sorted(set(urls))  # no page twice
    assert set(urls) == pages  # the whole site
    assert direct == []
    assert len(calls) == 1, calls  # one batch, bought once for both processes
    assert key not in proc.stdout + proc.stderr
