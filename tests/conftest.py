"""Shared pytest fixtures: a clean proxy environment, real local relays and target sites.

Sections (add new fixtures to the matching section, or a new one, and list it here):

- environment: ``_no_proxy_env`` (autouse) clears ``*_proxy`` / ``*_PROXY`` variables.
- hypothesis: the ``proxypool`` profile (loaded here): no per-example deadline.
- sim relays: ``relay_fleet`` (4 relays shared by a module, restored after each test),
  ``make_relay_fleet`` (factory: a test's own fleet, for killing relays, auth, latency).
- sim target: ``target_site`` (http), ``tls_target_site`` (https, self-signed; pin
  ``tls_target_site.cert_path``), ``make_target_site`` (factory: other page counts).

Expensive things (relay processes) live at module scope where tests do not break them;
cheap servers (target sites) are per test, so request logs and bans never leak between tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings

from proxypool.sim.relays import RelayFleet
from proxypool.sim.target import TargetSite

# --------------------------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests honours http_proxy, HTTPS_PROXY, ALL_PROXY, NO_PROXY...: a developer's own
    settings must not route (or exempt) test traffic."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------------------------
# hypothesis
# --------------------------------------------------------------------------------------------

# Hypothesis fails an example that takes over 200 ms by default (``deadline``): a wall-clock
# limit that a loaded CI machine trips at random. Examples are still bounded by pytest-timeout.
# Only the deadline changes; derandomize, database, max_examples... stay hypothesis' defaults,
# and a test's own ``@settings`` still overrides what it sets.
settings.register_profile("proxypool", deadline=None)
settings.load_profile("proxypool")


# --------------------------------------------------------------------------------------------
# sim relays: real proxy.py forward proxies on loopback
# --------------------------------------------------------------------------------------------

SHARED_RELAY_COUNT = 4


@pytest.fixture(scope="module")
def _module_relay_fleet() -> Iterator[RelayFleet]:
    with RelayFleet(SHARED_RELAY_COUNT) as fleet:
        yield fleet


@pytest.fixture
def relay_fleet(_module_relay_fleet: RelayFleet) -> Iterator[RelayFleet]:
    """4 running relays ("relay-0".."relay-3", no auth, no latency), shared by the module.

    Prefer ``make_relay_fleet`` to kill relays or change latency; if a test does it here anyway,
    the fleet is restored (revived, latency 0) after the test so the next one starts clean.
    """
    yield _module_relay_fleet
    for relay in _module_relay_fleet:
        if relay.latency:
            _module_relay_fleet.set_latency(relay.name, 0.0)
        _module_relay_fleet.revive(relay.name)


@pytest.fixture
def make_relay_fleet() -> Iterator[Callable[..., RelayFleet]]:
    """Factory: ``make_relay_fleet(count=4, *, auth=None, latency=0.0, prefix="relay-")`` starts
    a fleet owned by the test (stopped at teardown, also when the test fails)."""
    fleets: list[RelayFleet] = []

    def make(count: int = 4, **kwargs: Any) -> RelayFleet:
        fleet = RelayFleet(count, **kwargs)
        fleets.append(fleet)
        return fleet.start()

    yield make
    for fleet in fleets:
        fleet.close()


# --------------------------------------------------------------------------------------------
# sim target: the recording site requests are sent to
# --------------------------------------------------------------------------------------------


@pytest.fixture
def make_target_site() -> Iterator[Callable[..., TargetSite]]:
    """Factory: ``make_target_site(pages=20, *, tls=False, links_per_page=3, clock=...)``,
    stopped at teardown."""
    sites: list[TargetSite] = []

    def make(pages: int = 20, **kwargs: Any) -> TargetSite:
        site = TargetSite(pages, **kwargs)
        sites.append(site)
        return site.start()

    yield make
    for site in sites:
        site.close()


@pytest.fixture
def target_site(make_target_site: Callable[..., TargetSite]) -> TargetSite:
    """A fresh http site with 20 pages; records every request, bans on demand."""
    return make_target_site()


@pytest.fixture
def tls_target_site(make_target_site: Callable[..., TargetSite]) -> TargetSite:
    """A fresh https site (self-signed certificate; pin it with
    ``verify=str(tls_target_site.cert_path)``)."""
    return make_target_site(tls=True)
