"""Shutdown under load: closing a pool or a wrapped session while an extraction is in flight or
requests are on the wire.

- Closing the pool mid-refill (the extraction is held) wakes every waiter with ``PoolExhausted``
  before the extraction in flight returns; the thread running that extraction ends as soon as it
  does, with ``PoolExhausted`` too, and keeps none of its proxies.
- Closing a wrapped session and its pool mid-refill: every request ends with a ``ProxyPoolError``
  and none reaches the target (nothing is ever sent directly).
- Closing the pool while a top-up runs in its background thread (``proxypool-refill``): the
  thread ends with its extraction and the pool keeps nothing from it.
- Closing a wrapped session mid-request-storm: requests in flight finish, later ones still go
  through the pool, and the adapter lets go of every per-proxy connection manager.

Extractions go through the real ``ProviderClient`` to the ``ProviderSimulator``, behind a gate
(``GatedSource``) the test opens: the order of events is set by the test, not by timing.

Each test starts its servers itself, so it can check afterwards that no thread it caused is left
(``threading.enumerate()``), and that nothing was logged at WARNING or above, no traceback
included, and no thread died of an unhandled exception.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import requests
from _helpers import ListSource

from proxypool import pool as pool_module
from proxypool.adapters import ProxyPoolAdapter, wrap_session
from proxypool.api import ProviderClient
from proxypool.errors import PoolExhausted, ProxyPoolError
from proxypool.geo import Geo
from proxypool.models import Proxy
from proxypool.pool import ProxyPool
from proxypool.sim.provider import ProviderSimulator
from proxypool.sim.relays import RelayFleet
from proxypool.sim.target import TargetSite

JOIN = 10.0  # seconds to wait for a thread that should end now (only reached on failure)


@dataclass
class Watch:
    """What a test must leave behind: no new thread, no warning, no unhandled thread error."""

    baseline: set[threading.Thread]
    unhandled: list[BaseException | None] = field(default_factory=list)

    def leftover_threads(self, grace: float = 10.0) -> list[threading.Thread]:
        """Threads started since the baseline that are still alive once the servers stopped
        (their handler threads get ``grace`` seconds to notice)."""
        deadline = time.monotonic() + grace
        while True:
            extra = [t for t in threading.enumerate() if t not in self.baseline and t.is_alive()]
            if not extra or time.monotonic() > deadline:
                return extra
            time.sleep(0.02)


@pytest.fixture
def watch(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[Watch]:
    caplog.set_level(logging.DEBUG, logger="proxypool")
    watched = Watch(set(threading.enumerate()))
    monkeypatch.setattr(
        threading, "excepthook", lambda args: watched.unhandled.append(args.exc_value)
    )
    yield watched
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert noisy == [], [r.getMessage() for r in noisy]
    assert watched.unhandled == []


def blocked_waiting(thread: threading.Thread) -> bool:
    """Whether ``thread`` is a pool waiter: it sleeps in ``threading``'s ``wait`` called right
    from ``ProxyPool`` code (not, say, in a test's gate or a barrier), seen from its frames."""
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None or frame.f_code.co_name != "wait":
        return False
    while frame is not None and frame.f_code.co_filename == threading.__file__:
        frame = frame.f_back
    return frame is not None and frame.f_code.co_filename == pool_module.__file__


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.005)


class Outcome:
    """What one thread's call ended with, kept for the test to judge."""

    def __init__(self) -> None:
        self.result: object = None
        self.error: BaseException | None = None

    def run(self, call: Callable[[], object]) -> None:
        try:
            self.result = call()
        except BaseException as exc:  # judged by the test
            self.error = exc


def start(call: Callable[[], object], name: str) -> tuple[threading.Thread, Outcome]:
    outcome = Outcome()
    thread = threading.Thread(target=outcome.run, args=(call,), name=name)
    thread.start()
    return thread, outcome


class GatedSource:
    """The real client, behind a gate: ``extract()`` says it has started (``entered``), then
    waits until the test opens ``gate`` before it calls the provider. Records the threads that
    extracted."""

    def __init__(self, client: ProviderClient) -> None:
        self.client = client
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.threads: list[threading.Thread] = []

    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        self.threads.append(threading.current_thread())
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        return self.client.extract(geo, num=num, life=life)


# -- closing the pool mid-refill ----------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("in_flight_call", ["succeeds", "fails"])
def test_closing_the_pool_mid_refill_wakes_waiters_and_leaves_no_thread(
    watch: Watch, in_flight_call: str
) -> None:
    with ProviderSimulator() as sim:
        sim.fail_rate = 1.0 if in_flight_call == "fails" else 0.0
        client = ProviderClient(sim.app_key, base_url=sim.base_url, timeout=10, retries=0)
        source = GatedSource(client)
        pool = ProxyPool(source, min_size=1)

        # The first get() starts the extraction (in the pool's refill thread) and waits for it.
        first = start(lambda: pool.get(timeout=30), "first")
        assert source.entered.wait(JOIN)  # the extraction is in flight, held at the gate
        refiller = source.threads[0]
        assert refiller.name == "proxypool-refill"
        waiting = [first, *(start(lambda: pool.get(timeout=30), f"waiter-{i}") for i in range(3))]
        wait_for(lambda: all(blocked_waiting(t) for t, _ in waiting), "the waiters wait")

        pool.close()
        for thread, _ in waiting:
            thread.join(JOIN)
        assert not any(thread.is_alive() for thread, _ in waiting)
        # Woken by close(), not by the extraction: it is still held, the provider heard nothing.
        assert refiller.is_alive() and not source.gate.is_set()
        assert sim.extraction_calls() == []
        for _, outcome in waiting:
            assert isinstance(outcome.error, PoolExhausted), outcome.error
            assert "closed" in str(outcome.error)

        source.gate.set()
        refiller.join(JOIN)
        assert not refiller.is_alive()
        assert len(sim.extraction_calls()) == 1
        stats = pool.stats()
        assert stats["live"] == {"*": 0}  # what arrived after close() was not kept
        client.close()

    assert watch.leftover_threads() == []


# -- closing a wrapped session and its pool mid-refill ------------------------------------------


@pytest.mark.timeout(60)
def test_closing_a_session_and_pool_mid_refill_sends_nothing(watch: Watch) -> None:
    with ProviderSimulator() as sim, TargetSite() as site:
        client = ProviderClient(sim.app_key, base_url=sim.base_url, timeout=10, retries=0)
        source = GatedSource(client)
        pool = ProxyPool(source, min_size=1)
        session = wrap_session(requests.Session(), pool, pool_timeout=30)

        requesters = [
            start(lambda: session.get(site.url_for("/page/1"), timeout=10), f"requester-{i}")
            for i in range(8)
        ]
        # One request's get() starts the extraction (in the pool's refill thread), held at the
        # gate; all eight wait for it.
        assert source.entered.wait(JOIN)
        wait_for(lambda: all(blocked_waiting(t) for t, _ in requesters), "8 requests wait")
        waiting = [thread for thread, _ in requesters]

        session.close()
        pool.close()
        for thread in waiting:
            thread.join(JOIN)
        assert not any(thread.is_alive() for thread in waiting)
        assert sim.extraction_calls() == []  # woken by close(), before the provider answered
        source.gate.set()
        for thread, _ in requesters:
            thread.join(JOIN)
        assert not any(thread.is_alive() for thread, _ in requesters)
        for _, outcome in requesters:
            assert isinstance(outcome.error, ProxyPoolError), outcome.error
            assert isinstance(outcome.error, requests.ConnectionError)  # NoProxyAvailable
        assert site.hits() == []  # not one request left without a proxy
        wait_for(lambda: len(sim.extraction_calls()) == 1, "the held extraction ends")
        client.close()

    assert watch.leftover_threads() == []


# -- closing the pool while a top-up runs in the background -------------------------------------


@pytest.mark.timeout(60)
def test_closing_the_pool_mid_top_up_leaves_no_refill_thread(watch: Watch) -> None:
    with ProviderSimulator() as sim:
        client = ProviderClient(sim.app_key, base_url=sim.base_url, timeout=10, retries=0)
        source = GatedSource(client)
        source.gate.set()
        pool = ProxyPool(source, batch=4, min_size=4)
        first = pool.get(timeout=30)  # nothing usable yet: this thread extracts 4
        source.gate.clear()
        source.entered.clear()

        pool.report_failure(first)  # 3 live, below min_size
        assert pool.get(timeout=0) != first  # served at once; the top-up is held at the gate
        assert source.entered.wait(JOIN)
        refiller = source.threads[-1]
        assert refiller.name == "proxypool-refill" and refiller is not threading.current_thread()
        assert len(sim.extraction_calls()) == 1

        pool.close()
        assert refiller.is_alive()  # close() does not wait for the provider...
        source.gate.set()
        refiller.join(JOIN)
        assert not refiller.is_alive()  # ...and the thread ends with its extraction
        assert len(sim.extraction_calls()) == 2
        assert pool.stats()["live"] == {"*": 0}  # what the top-up bought was not kept
        client.close()

    assert watch.leftover_threads() == []


# -- closing a wrapped session mid-request-storm ------------------------------------------------


@pytest.mark.timeout(90)
def test_closing_a_session_mid_request_storm(watch: Watch) -> None:
    threads_count, per_thread = 8, 40
    done: list[int] = []
    lock = threading.Lock()

    with RelayFleet(4, latency=0.05) as fleet, TargetSite(threads_count * per_thread) as site:
        pool = ProxyPool(ListSource(fleet.proxies()), batch=4, min_size=0)
        session = wrap_session(requests.Session(), pool)
        adapter = session.get_adapter(site.url)
        assert isinstance(adapter, ProxyPoolAdapter)
        outcomes: dict[int, object] = {}

        def storm(index: int) -> None:
            for n in range(index * per_thread, (index + 1) * per_thread):
                try:
                    outcome: object = session.get(site.url_for(f"/page/{n}"), timeout=10)
                except Exception as exc:  # judged below: only ProxyPoolError may escape
                    outcome = exc
                with lock:
                    outcomes[n] = outcome
                    done.append(n)

        workers = [
            threading.Thread(target=storm, args=(i,), name=f"storm-{i}")
            for i in range(threads_count)
        ]
        for worker in workers:
            worker.start()
        wait_for(lambda: len(done) >= threads_count * per_thread // 4, "a quarter is done")
        in_flight = [w for w in workers if w.is_alive()]
        session.close()  # mid-storm: requests are on the wire through the relays
        closed_at = len(done)
        for worker in workers:
            worker.join(60)

        assert len(in_flight) == threads_count
        assert closed_at < threads_count * per_thread
        assert not any(worker.is_alive() for worker in workers)
        assert len(outcomes) == threads_count * per_thread
        failures = {n: o for n, o in outcomes.items() if not isinstance(o, requests.Response)}
        assert all(isinstance(o, ProxyPoolError) for o in failures.values()), failures
        assert all(
            o.status_code == 200 for o in outcomes.values() if isinstance(o, requests.Response)
        )
        assert site.direct_hits() == []
        assert {hit.relay for hit in site.hits()} <= set(fleet.names)

        pool.close()  # every proxy leaves: the adapter drops their connection managers
        assert len(adapter.proxy_manager) == 0
        session.close()

    assert watch.leftover_threads() == []
