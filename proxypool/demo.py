"""``proxypool demo``: the whole product working offline, in one command, with no account.

:func:`main` (called by the CLI with its parsed arguments) runs one of two things:

- the demo: a :class:`~proxypool.sim.world.SimWorld` on ``127.0.0.1`` (provider simulator, real
  forward proxies leased per extracted IP, a target site), then a real Scrapy crawl through the
  add-on, one spider per geography, while relays get banned by the target and one is killed, and
  the first leases reach the end of their life; beside them a spider in gateway mode
  (``PROXYPOOL_SOURCE = "gateway"``: the simulator's proxy account ``alice01`` on its rotating
  gateway, the password looked up with the app_key), its requests on one sticky session until
  the target bans that session's exit and the crawl moves to a new session; then a short
  ``requests`` session through ``wrap_session``. A progress bar runs on stderr (plain lines
  when stderr is not a terminal); at the end a summary (tables, or JSON with ``--json``) and a
  verdict computed from the target site's own records: every expected page answered 200 at
  least once, no request reached the target without a proxy, none through a relay outside its
  spider's geography. Exit code 0 when
  the verdict holds, 1 when it does not, 130 when interrupted.
- ``--serve``: the same world kept running until Ctrl-C, with the ``export`` lines for
  ``PROXYPOOL_API_URL`` and ``PROXYPOOL_APP_KEY`` (the simulator's own key, ``demo-...``: not a
  real account's) and the target's URL, to try a spider, the examples or the CLI against.

The demo ignores ``*_proxy`` environment variables: nothing leaves ``127.0.0.1``. Scrapy and
proxy.py are needed (``proxypool[demo]``). Environment variables for tests and the curious:

- ``PROXYPOOL_DEMO_RECORD=path``: write the target's raw request log, and every client's own
  counters (Scrapy stats, the requests pool's stats), as JSON (the tests read it to check the
  summary against the records).
- ``PROXYPOOL_DEMO_APP_KEY=key``: the key the simulator accepts, instead of a random ``demo-...``
  one (the secret-leak test plants a recognisable one).
- ``PROXYPOOL_DEMO_PROXY_AUTH=user:password`` (the demo run only): the relays demand proxy basic
  auth, and both clients give every extracted IP these credentials, as with a provider's
  username:password gateway accounts.
- ``PROXYPOOL_DEMO_LOG=path``, ``PROXYPOOL_DEMO_LOG_LEVEL=DEBUG``: keep Scrapy's log there (the
  requests part logs into it too), at that level (default ``INFO``; the log is otherwise
  written to a temporary directory and kept only when the verdict fails).

Time in the demo runs fast: leases live ``life`` (1 minute) times :data:`TIME_SCALE`, and the
pool's expiry margin is set to retire each proxy before its lease ends.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, MappingProxyType
from typing import TYPE_CHECKING, Any, TextIO

from ._env import (
    API_URL_ENV,
    DEMO_APP_KEY_ENV,
    DEMO_LOG_ENV,
    DEMO_LOG_LEVEL_ENV,
    DEMO_PROXY_AUTH_ENV,
    DEMO_RECORD_ENV,
    DEMO_TARGET_ENV,
    GATEWAY_ENV,
)
from ._env import APP_KEY_ENV as LIBRARY_APP_KEY_ENV
from .errors import ConfigError, ProxyPoolError
from .geo import Geo
from .models import CountryLocations, Proxy
from .sim.target import Hit
from .sim.world import SimWorld, geo_covers

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from .api import ProviderClient

__all__ = [
    "DEMO_LAYOUT",
    "SERVE_LAYOUT",
    "TIME_SCALE",
    "DemoPart",
    "PartCheck",
    "RecordCheck",
    "check_records",
    "main",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
#: ``demo --processes N``: pages each process fetches.
PROCESS_PAGES = 150

RECORD_ENV = DEMO_RECORD_ENV
TARGET_ENV = DEMO_TARGET_ENV
APP_KEY_ENV = DEMO_APP_KEY_ENV
PROXY_AUTH_ENV = DEMO_PROXY_AUTH_ENV
LOG_ENV = DEMO_LOG_ENV
LOG_LEVEL_ENV = DEMO_LOG_LEVEL_ENV
_LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")

#: Relays per geography in the demo run, and in ``--serve`` (``"*"``: stands in for any other
#: place, so one's own spider may ask for GB or JP too).
DEMO_LAYOUT: Mapping[str, int] = MappingProxyType({"US/California": 4, "DE": 3})
SERVE_LAYOUT: Mapping[str, int] = MappingProxyType({"US/California": 3, "DE": 2, "*": 3})

#: Real seconds per simulated second in the demo: a 1-minute lease ends after 12 s.
TIME_SCALE = 0.2
LIFE = 1  # minutes, the provider's minimum
# The pool stops handing a proxy out this many (pool, real) seconds before the end of its 60 s
# life: at 10 s, 2 s before the demo's 12 s lease ends, so nothing in flight meets the end.
EXPIRY_MARGIN = 50.0
PAGES = 40
DOWNLOAD_DELAY = 0.3  # seconds; makes the crawl outlive the first leases (~15 s per spider)
REQUESTS_PAGES = 10
SERVE_PAGES = 50
#: The gateway part: a proxy account the simulator is seeded with (its password is looked up
#: with the app_key, as ``PROXYPOOL_GATEWAY_USER`` alone does), and the session key its
#: requests share.
GATEWAY_USER = "alice01"
GATEWAY_SESSION = "demo-cart"

#: The crawl's settings, besides ``ADDONS = {"scrapy_ext.ProxyPoolAddon": 0}`` and the API's URL
#: and key.
SCRAPY_SETTINGS: Mapping[str, Any] = MappingProxyType(
    {
        "PROXYPOOL_LIFE": LIFE,
        "PROXYPOOL_EXPIRY_MARGIN": EXPIRY_MARGIN,
        "PROXYPOOL_BATCH": 5,
        "PROXYPOOL_MIN_SIZE": 3,
        "PROXYPOOL_WAIT_TIMEOUT": 20.0,
        "DOWNLOAD_DELAY": DOWNLOAD_DELAY,
        "RANDOMIZE_DOWNLOAD_DELAY": False,
        # A request takes its proxy before it waits in the download slot: a short queue keeps that
        # wait well inside the 2 s between the pool retiring a proxy and its lease ending.
        "CONCURRENT_REQUESTS": 2,
        "DOWNLOAD_TIMEOUT": 10,
        "ROBOTSTXT_OBEY": False,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": "INFO",
    }
)


# -- the parts of the demo and the check of the target's records ----------------------------------


@dataclass(frozen=True, slots=True)
class DemoPart:
    """One client of the demo: a spider for one geography, or the requests session. The target
    tells parts apart by ``user_agent``; ``paths`` are the pages this part must get."""

    name: str
    client: str  # "scrapy", "gateway" (a Scrapy spider in gateway mode) or "requests"
    geo: Geo
    user_agent: str
    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PartCheck:
    """What the target's records say about one part: ``requests`` it received with the part's
    user agent, ``pages_ok`` expected paths answered 200 at least once, ``missing`` the others,
    ``banned`` answers that were bans, ``outside_geo`` requests that came through a relay not
    placed inside the part's geography, ``pages_by_relay`` 200 answers per relay name."""

    part: DemoPart
    requests: int
    pages_ok: int
    missing: tuple[str, ...]
    banned: int
    outside_geo: int
    pages_by_relay: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class RecordCheck:
    """The verdict on a run, from the target's records alone: ``hits`` requests in all,
    ``direct`` of them without a proxy, ``unattributed`` with no part's user agent."""

    parts: tuple[PartCheck, ...]
    hits: int
    direct: int
    unattributed: int

    @property
    def pages_expected(self) -> int:
        return sum(len(p.part.paths) for p in self.parts)

    @property
    def pages_ok(self) -> int:
        return sum(p.pages_ok for p in self.parts)

    @property
    def outside_geo(self) -> int:
        return sum(p.outside_geo for p in self.parts)

    @property
    def ok(self) -> bool:
        """No page lost, none sent without a proxy, none through the wrong geography."""
        return self.pages_ok == self.pages_expected and self.direct == 0 and self.outside_geo == 0

    def verdict(self) -> str:
        """One sentence saying what the records show."""
        if self.ok:
            return (
                f"No page lost: all {self.pages_expected} expected pages answered 200; none left "
                f"without a proxy: 0 of {self.hits} requests reached the target directly, and "
                f"none came through a relay outside its geography (the target's own records)."
            )
        problems: list[str] = []
        lost = [
            f"{p.part.name}: {', '.join(p.missing[:5])}{' ...' if len(p.missing) > 5 else ''}"
            for p in self.parts
            if p.missing
        ]
        if lost:
            problems.append(
                f"PAGES LOST: {self.pages_expected - self.pages_ok} of {self.pages_expected} "
                f"expected pages never answered 200 ({'; '.join(lost)})"
            )
        if self.direct:
            problems.append(
                f"{self.direct} of {self.hits} requests reached the target WITHOUT a proxy"
            )
        if self.outside_geo:
            problems.append(
                f"{self.outside_geo} requests came through a relay outside their geography"
            )
        return "; ".join(problems) + " (the target's own records)."


def check_records(
    hits: Sequence[Hit], parts: Sequence[DemoPart], relay_geos: Mapping[str, Geo]
) -> RecordCheck:
    """Judge a run from the target's request log ``hits``: pure, no I/O.

    A part's requests are the hits with its user agent. A page counts as fetched when the target
    answered it 200 and not with a ban (a captcha page is a 200 ban). A hit through a relay whose
    placement ``geo_covers`` does not put inside the part's geography (or through a relay not in
    ``relay_geos``) is outside its geography.
    """
    by_agent = {part.user_agent: part for part in parts}
    seen: dict[str, list[Hit]] = {part.name: [] for part in parts}
    unattributed = 0
    for hit in hits:
        part = by_agent.get(hit.header("User-Agent") or "")
        if part is None:
            unattributed += 1
        else:
            seen[part.name].append(hit)
    checks: list[PartCheck] = []
    for part in parts:
        mine = seen[part.name]
        ok_paths = {h.path for h in mine if h.status == 200 and not h.banned}
        relay_pages = Counter(
            h.relay or "?" for h in mine if h.status == 200 and not h.banned and not h.direct
        )
        outside = 0
        for h in mine:
            if h.direct:
                continue  # counted as direct, not as a geography question
            placed = relay_geos.get(h.relay) if h.relay is not None else None
            if placed is None or placed.is_anywhere or not geo_covers(part.geo, placed):
                outside += 1
        checks.append(
            PartCheck(
                part=part,
                requests=len(mine),
                pages_ok=sum(1 for p in set(part.paths) if p in ok_paths),
                missing=tuple(p for p in part.paths if p not in ok_paths),
                banned=sum(1 for h in mine if h.banned),
                outside_geo=outside,
                pages_by_relay=dict(sorted(relay_pages.items())),
            )
        )
    return RecordCheck(
        parts=tuple(checks),
        hits=len(hits),
        direct=sum(1 for h in hits if h.direct),
        unattributed=unattributed,
    )


# -- progress on stderr ---------------------------------------------------------------------------


class _Progress:
    """A rich progress bar per part on a terminal; plain, sparse lines otherwise (a log file, a
    CI job). Thread-safe: rich's Progress is, and plain lines are written under a lock."""

    def __init__(self, parts: Sequence[DemoPart], stream: TextIO, started: float) -> None:
        self._stream = stream
        self._started = started
        self._lock = threading.Lock()
        self._finished: set[str] = set()
        self._totals = {part.name: len(part.paths) for part in parts}
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        if _is_terminal(stream):
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description:<28}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("pages"),
                TimeElapsedColumn(),
                console=Console(file=stream, highlight=False),
            )
            for part in parts:
                self._tasks[part.name] = self._progress.add_task(
                    part.name, total=len(part.paths), start=False
                )

    def __enter__(self) -> _Progress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def begin(self, name: str) -> None:
        if self._progress is not None:
            self._progress.start_task(self._tasks[name])

    def update(self, name: str, done: int) -> None:
        if self._progress is not None:
            self._progress.update(self._tasks[name], completed=done)
            return
        with self._lock:
            if done >= self._totals[name] and name not in self._finished:
                self._finished.add(name)
                self._line(f"{name}: {done}/{self._totals[name]} pages")

    def note(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(f"[dim]{self._stamp()}[/dim] {text}")
            return
        with self._lock:
            self._line(text)

    def _stamp(self) -> str:
        return f"+{time.monotonic() - self._started:5.1f}s"

    def _line(self, text: str) -> None:
        self._stream.write(f"proxypool demo {self._stamp()}: {text}\n")
        self._stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


# -- the scenario: what happens to the relays while the crawl runs --------------------------------


@dataclass(frozen=True, slots=True)
class _Planned:
    """Do ``action`` to ``relay`` once ``part`` has fetched ``fraction`` of its pages."""

    part: str
    fraction: float
    action: str  # "ban", "kill", or "ban_session" (the exit of the gateway part's session)
    relay: str
    status: int = 403


@dataclass
class _Event:
    at: float  # seconds since the demo started
    what: str
    relay: str | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": round(self.at, 1),
            "event": self.what,
            "relay": self.relay,
            "detail": self.detail,
        }


class _Director(threading.Thread):
    """Watches the target's records, moves the progress bars and plays the scenario: bans and a
    kill at chosen points of the crawl, and a note when the first leases end (TTL)."""

    def __init__(
        self,
        world: SimWorld,
        parts: Sequence[DemoPart],
        plan: Sequence[_Planned],
        progress: _Progress,
        started: float,
    ) -> None:
        super().__init__(name="demo-director", daemon=True)
        self.world = world
        self.parts = parts
        self.plan = list(plan)
        self.progress = progress
        self.started = started
        self.events: list[_Event] = []
        self._stop_event = threading.Event()
        self._ttl_seen = False

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        self.tick()  # final counts

    def run(self) -> None:
        while not self._stop_event.wait(0.1):
            try:
                self.tick()
            except Exception as exc:  # the demo goes on; the summary tells what happened
                self.progress.note(f"scenario step failed: {type(exc).__name__}: {exc}")

    def done_per_part(self) -> dict[str, int]:
        agents = {part.user_agent: part.name for part in self.parts}
        wanted = {part.name: set(part.paths) for part in self.parts}
        done: dict[str, set[str]] = {part.name: set() for part in self.parts}
        for hit in self.world.target.hits():
            name = agents.get(hit.header("User-Agent") or "")
            if (
                name is not None
                and hit.status == 200
                and not hit.banned
                and hit.path in wanted[name]
            ):
                done[name].add(hit.path)
        return {name: len(paths) for name, paths in done.items()}

    def tick(self) -> None:
        done = self.done_per_part()
        for part in self.parts:
            self.progress.update(part.name, done[part.name])
        totals = {part.name: len(part.paths) for part in self.parts}
        for step in list(self.plan):
            if done.get(step.part, 0) < step.fraction * totals.get(step.part, 1):
                continue
            self.plan.remove(step)
            self._play(step)
        if not self._ttl_seen:
            ended = [u for u in self.world.leases() if u.state != "active"]
            ended = [u for u in ended if u.lease.relay not in self._killed()]
            if ended:
                self._ttl_seen = True
                relays = sorted({u.lease.relay for u in ended})
                self._record(
                    "ttl",
                    None,
                    f"first leases reached the end of their life: {len(ended)}, on "
                    f"{', '.join(relays)}",
                )

    def _killed(self) -> set[str]:
        return {e.relay for e in self.events if e.what == "kill" and e.relay is not None}

    def _play(self, step: _Planned) -> None:
        if step.action == "ban_session":
            # The relay the gateway's session exits through right now: banning it must move
            # the crawl to a new session.
            served = [
                e
                for e in self.world.account_gateway.requests()
                if e.user == GATEWAY_USER and e.status == 200 and e.relay is not None
            ]
            if not served:
                return
            relay, session = served[-1].relay, served[-1].session
            assert relay is not None
            self.world.ban_relay(relay, step.status)
            self._record(
                "ban",
                relay,
                f"the exit of gateway session {session}: the target now answers "
                f"{step.status} to it",
            )
            return
        if step.action == "ban":
            self.world.ban_relay(step.relay, step.status)
            self._record("ban", step.relay, f"the target now answers {step.status} to it")
        elif step.action == "kill":
            self.world.kill_relay(step.relay)
            self._record("kill", step.relay, "its IPs now refuse connections")

    def _record(self, what: str, relay: str | None, detail: str) -> None:
        event = _Event(time.monotonic() - self.started, what, relay, detail)
        self.events.append(event)
        label = f"{relay}: {detail}" if relay else detail
        self.progress.note(f"{what.upper():<4} {label}")


def _plan(world: SimWorld, parts: Sequence[DemoPart]) -> list[_Planned]:
    """Ban one relay per spider's geography at 20% of its pages; kill a second relay of the
    first geography at 50%. Relays are picked by name order, so runs are repeatable."""
    plan: list[_Planned] = []
    spiders = [part for part in parts if part.client == "scrapy"]
    plan += [_Planned(p.name, 0.3, "ban_session", "") for p in parts if p.client == "gateway"]
    for i, part in enumerate(spiders):
        relays = world.relays_in(part.geo)
        if len(relays) >= 2:
            plan.append(_Planned(part.name, 0.2, "ban", relays[1], 403 if i == 0 else 429))
        if i == 0 and len(relays) >= 4:
            plan.append(_Planned(part.name, 0.5, "kill", relays[2]))
    return plan


# -- options from the environment, and proxies with credentials ----------------------------------

_CREDENTIAL_RE = re.compile(r"^[A-Za-z0-9]{1,64}$")
_MAX_KEY = 256


@dataclass(frozen=True, slots=True)
class _Options:
    """What the ``PROXYPOOL_DEMO_*`` variables ask of a run (see the module docstring)."""

    app_key: str | None = field(default=None, repr=False)
    proxy_auth: tuple[str, str] | None = field(default=None, repr=False)
    log_file: Path | None = None
    log_level: str = "INFO"


def _options(environ: Mapping[str, str]) -> _Options:
    """Read the ``PROXYPOOL_DEMO_*`` variables; a bad value raises ``ConfigError`` naming the
    variable (and never echoing a secret)."""
    key = environ.get(APP_KEY_ENV) or None
    if key is not None and (
        len(key) > _MAX_KEY or any(ch.isspace() or not ch.isprintable() for ch in key)
    ):
        raise ConfigError(
            f"{APP_KEY_ENV} must be printable characters without spaces (at most {_MAX_KEY})",
            field=APP_KEY_ENV,
        )
    auth = None
    text = environ.get(PROXY_AUTH_ENV)
    if text:
        user, sep, password = text.partition(":")
        if not (sep and _CREDENTIAL_RE.match(user) and _CREDENTIAL_RE.match(password)):
            raise ConfigError(
                f"{PROXY_AUTH_ENV} must be user:password, both letters and digits (1 to 64)",
                field=PROXY_AUTH_ENV,
            )
        auth = (user, password)
    level = (environ.get(LOG_LEVEL_ENV) or "INFO").strip().upper()
    if level not in _LOG_LEVELS:
        raise ConfigError(
            f"{LOG_LEVEL_ENV} must be one of {', '.join(_LOG_LEVELS)}, not {level[:20]!r}",
            field=LOG_LEVEL_ENV,
        )
    log = environ.get(LOG_ENV)
    return _Options(
        app_key=key, proxy_auth=auth, log_file=Path(log) if log else None, log_level=level
    )


class _AccountSource:
    """A ``ProxySource`` giving every IP ``client`` extracts the account's ``username`` and
    ``password``, as proxies of a username:password gateway carry them; and a
    ``LocationSource`` (the client's lists), so geographies are still validated. Thread-safe as
    the client is. Its ``repr`` never shows the password."""

    def __init__(self, client: ProviderClient, username: str, password: str) -> None:
        self.client = client
        self._username = username
        self._password = password

    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        return [
            dataclasses.replace(proxy, username=self._username, password=self._password)
            for proxy in self.client.extract(geo, num=num, life=life)
        ]

    def list_state_catalog(self) -> list[CountryLocations]:
        return self.client.list_state_catalog()

    def list_city_catalog(self) -> list[CountryLocations]:
        return self.client.list_city_catalog()

    def __repr__(self) -> str:
        return f"<demo account source {self._username} via {self.client!r}>"


def _scrapy_source(world: SimWorld, auth: tuple[str, str]) -> type[_AccountSource]:
    """A class for ``PROXYPOOL_SOURCE`` (the middleware builds it with ``from_crawler``). A class,
    not an instance: Scrapy deep-copies its settings; and the credentials stay out of the
    settings, which extensions may dump."""
    from .api import ProviderClient

    class DemoAccountSource(_AccountSource):
        @classmethod
        def from_crawler(cls, crawler: Any) -> _AccountSource:
            return cls(ProviderClient(world.app_key, base_url=world.api_url), *auth)

    return DemoAccountSource


# -- the crawl ------------------------------------------------------------------------------------


@dataclass
class _CrawlOutcome:
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # part name -> Scrapy stats
    failures: dict[str, int] = field(default_factory=dict)  # part name -> errbacks
    interrupted: bool = False


def _crawl(
    world: SimWorld, parts: Sequence[DemoPart], log_file: Path, options: _Options
) -> _CrawlOutcome:
    """Run every Scrapy part at once in one CrawlerProcess (blocks until they finish)."""
    import scrapy
    from scrapy.crawler import CrawlerProcess

    outcome = _CrawlOutcome()

    class DemoSpider(scrapy.Spider):
        """Crawls the target from its start URL, following every link (the dupe filter stops
        it); its geography is the ``proxypool_geo`` attribute, given as a keyword argument."""

        name = "demo"
        start_url = ""
        part_name = ""
        session_key = ""  # every request on one pool session (one gateway session)

        def _meta(self) -> dict[str, Any]:
            return {"proxypool_session": self.session_key} if self.session_key else {}

        async def start(self) -> Any:
            yield scrapy.Request(
                self.start_url, callback=self.parse, errback=self.failed, meta=self._meta()
            )

        def parse(self, response: Any) -> Iterator[Any]:
            for href in response.css("a::attr(href)").getall():
                yield response.follow(
                    href, callback=self.parse, errback=self.failed, meta=self._meta()
                )

        def failed(self, failure: Any) -> None:
            outcome.failures[self.part_name] = outcome.failures.get(self.part_name, 0) + 1

    class GatewaySpider(DemoSpider):
        """The same, in gateway mode: sessions of the simulator's rotating gateway for proxy
        account GATEWAY_USER; the password is looked up with the app_key."""

        custom_settings: dict[Any, Any] | None = {  # noqa: RUF012 (Scrapy's own type)
            "PROXYPOOL_SOURCE": "gateway",
            "PROXYPOOL_GATEWAY": world.gateway_address,
            "PROXYPOOL_GATEWAY_USER": GATEWAY_USER,
            # A new session after a ban gets a random exit, which may be banned as well: by the
            # end two of the three live exits are, so a page may need many sessions (they are
            # free): 20 tries leave a page lost once in 3,000.
            "PROXYPOOL_MAX_PROXY_RETRIES": 20,
        }

    settings = {
        **SCRAPY_SETTINGS,
        "ADDONS": {"scrapy_ext.ProxyPoolAddon": 0},  # all it takes to crawl through the pool
        "PROXYPOOL_API_URL": world.api_url,
        "PROXYPOOL_APP_KEY": world.app_key,
        "LOG_FILE": str(log_file),
        "LOG_LEVEL": options.log_level,
    }
    if options.proxy_auth is not None:
        settings["PROXYPOOL_SOURCE"] = _scrapy_source(world, options.proxy_auth)
    process = CrawlerProcess(settings)
    crawlers: dict[str, Any] = {}
    for part in parts:
        gateway = part.client == "gateway"
        crawler = process.create_crawler(GatewaySpider if gateway else DemoSpider)
        crawlers[part.name] = crawler
        process.crawl(
            crawler,
            name="demo_gateway" if gateway else f"demo_{part.geo.country or 'any'}".lower(),
            start_url=world.target.url_for("/"),
            part_name=part.name,
            proxypool_geo=str(part.geo),
            user_agent=part.user_agent,
            session_key=GATEWAY_SESSION if gateway else "",
        )
    process.start()
    for name, crawler in crawlers.items():
        stats = dict(crawler.stats.get_stats() or {})
        outcome.stats[name] = stats
        if stats.get("finish_reason") == "shutdown":
            outcome.interrupted = True
    return outcome


# -- the requests session -------------------------------------------------------------------------


@dataclass
class _SessionOutcome:
    statuses: list[int] = field(default_factory=list)
    failures: int = 0
    pool: dict[str, Any] = field(default_factory=dict)


def _requests_session(
    world: SimWorld, part: DemoPart, auth: tuple[str, str] | None
) -> _SessionOutcome:
    """GET each of the part's pages through ``wrap_session`` with a pool of its own."""
    import requests

    from .adapters import wrap_session
    from .api import ProviderClient
    from .pool import ProxyPool, ProxySource

    outcome = _SessionOutcome()
    with ProviderClient(world.app_key, base_url=world.api_url) as client:
        source: ProxySource = client if auth is None else _AccountSource(client, *auth)
        # The source has the client's location lists: the pool still validates the geography.
        pool = ProxyPool(
            source,
            geo=part.geo,
            life=LIFE,
            batch=4,
            min_size=2,
            expiry_margin=EXPIRY_MARGIN,
        )
        with wrap_session(requests.Session(), pool) as session:
            session.headers["User-Agent"] = part.user_agent
            for path in part.paths:
                try:
                    response = session.get(world.target.url_for(path), timeout=10)
                except (ProxyPoolError, requests.RequestException):
                    outcome.failures += 1
                    outcome.statuses.append(0)
                    continue
                outcome.statuses.append(response.status_code)
        stats = pool.stats()
        pool.close()
    outcome.pool = dict(stats)
    return outcome


# -- the summary ----------------------------------------------------------------------------------


def _part_row(
    part: DemoPart,
    check: PartCheck,
    crawl: _CrawlOutcome,
    session: _SessionOutcome | None,
) -> dict[str, Any]:
    """Client-side counters (Scrapy stats, or the requests pool) next to what the target saw."""
    row: dict[str, Any] = {
        "part": part.name,
        "client": part.client,
        "geo": str(part.geo),
        "pages_expected": len(part.paths),
        "pages_ok": check.pages_ok,
        "missing": list(check.missing),
        "target_requests": check.requests,
        "target_bans": check.banned,
        "outside_geo": check.outside_geo,
    }
    if part.client in ("scrapy", "gateway"):
        stats = crawl.stats.get(part.name, {})

        def stat(key: str) -> int:
            value = stats.get(f"proxypool/{key}", 0)
            return int(value) if isinstance(value, int | float) else 0

        row.update(
            requests=stat("requests"),
            bans=stat("bans"),
            retries=stat("retries"),
            proxy_errors=stat("proxy_errors"),
            refills=stat("refills"),
            extracted=stat("extracted"),
            minted=stat("minted"),
            expired=stat("expired"),
            waits=stat("waits"),
            failed=crawl.failures.get(part.name, 0) + stat("retry_exhausted"),
            finish_reason=str(stats.get("finish_reason", "")),
        )
    elif session is not None:
        pool = session.pool
        served = int(pool.get("served", 0))
        row.update(
            requests=served,
            bans=int(pool.get("bans", 0)),
            retries=max(0, served - len(session.statuses) + session.failures),
            proxy_errors=int(pool.get("failures", 0)),
            refills=int(pool.get("refills", 0)),
            extracted=int(pool.get("extracted", 0)),
            minted=int(pool.get("minted", 0)),
            expired=int(pool.get("expired", 0)),
            waits=0,
            failed=session.failures,
            finish_reason="finished",
        )
    return row


def _gateway_summary(world: SimWorld, usage_before: int, usage_after: int) -> dict[str, Any]:
    """What the gateway part did, from the gateway's records and the provider's accounts list."""
    served = [
        e for e in world.account_gateway.requests() if e.user == GATEWAY_USER and e.status == 200
    ]
    return {
        "account": GATEWAY_USER,
        "gateway": world.gateway_address,
        "requests": len(served),
        "sessions_used": len({e.session for e in served}),
        "exits": sorted({e.relay for e in served if e.relay is not None}),
        "traffic_kb": usage_after - usage_before,
        "usage_flow_kb": usage_after,
    }


def _usage_flow(world: SimWorld) -> int:
    """GATEWAY_USER's traffic so far (KB), as ``proxypool accounts list`` shows it."""
    from .api import ProviderClient

    with ProviderClient(world.app_key, base_url=world.api_url) as client:
        return next((a.usage_flow for a in client.list_accounts() if a.username == GATEWAY_USER), 0)


def _summary(
    world: SimWorld,
    parts: Sequence[DemoPart],
    check: RecordCheck,
    crawl: _CrawlOutcome,
    session: _SessionOutcome | None,
    events: Sequence[_Event],
    seconds: float,
    gateway: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    rows = [
        _part_row(part, part_check, crawl, session)
        for part, part_check in zip(parts, check.parts, strict=True)
    ]
    hits = world.target.hits()
    banned_by_relay = Counter(h.relay for h in hits if h.banned and h.relay)
    fates = {e.relay: e.what for e in events if e.relay}
    relays = []
    for name, geo in world.relay_geos.items():
        pages = {pc.part.name: pc.pages_by_relay.get(name, 0) for pc in check.parts}
        relays.append(
            {
                "relay": name,
                "geo": str(geo),
                "pages": pages,
                "pages_total": sum(pages.values()),
                "bans": banned_by_relay.get(name, 0),
                "fate": {"ban": "banned", "kill": "killed"}.get(fates.get(name, ""), "ok"),
            }
        )
    leases = world.leases()
    calls = Counter(call.endpoint for call in world.simulator.calls())
    return {
        "ok": check.ok,
        "verdict": check.verdict(),
        "seconds": round(seconds, 1),
        "records": {
            "target_requests": check.hits,
            "direct": check.direct,
            "outside_geo": check.outside_geo,
            "unattributed": check.unattributed,
            "pages_expected": check.pages_expected,
            "pages_ok": check.pages_ok,
        },
        "parts": rows,
        "relays": relays,
        "ips": {
            "bought": world.simulator.ips_handed_out,
            "used": sum(1 for u in leases if u.used),
            "leases_ended": sum(1 for u in leases if u.state == "ended"),
            "late_connections": sum(u.late_connections for u in leases),
        },
        "api_calls": {"total": sum(calls.values()), **dict(sorted(calls.items()))},
        "gateway": dict(gateway) if gateway is not None else None,
        "events": [e.as_dict() for e in events],
        # Every duration names its clock: the provider's minutes run 1/TIME_SCALE times faster
        # than the wall clock; the pool and the events count real seconds.
        "ttl": {
            "life_simulated_minutes": LIFE,
            "speed": round(1 / TIME_SCALE, 6),
            "lease_real_seconds": LIFE * 60 * TIME_SCALE,
            "pool_retires_after_real_seconds": LIFE * 60 - EXPIRY_MARGIN,
        },
    }


def _print_summary(summary: Mapping[str, Any], console: Console) -> None:
    """The summary as two tables and a few lines, readable at 80 columns: one column per client
    (three at most), one row per relay."""
    from rich import box
    from rich.table import Table

    parts = summary["parts"]
    table = Table(
        title="Per client (its own count | the target's records)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("", no_wrap=True)
    for row in parts:
        table.add_column(row["part"], justify="right", no_wrap=True)
    measures: tuple[tuple[str, Callable[[Mapping[str, Any]], str]], ...] = (
        ("pages answered", lambda r: f"{r['pages_ok']}/{r['pages_expected']}"),
        ("requests", lambda r: f"{r['requests']} | {r['target_requests']}"),
        ("bans", lambda r: f"{r['bans']} | {r['target_bans']}"),
        ("retries", lambda r: str(r["retries"])),
        ("proxy errors", lambda r: str(r["proxy_errors"])),
        ("refills", lambda r: str(r["refills"])),
        ("IPs extracted", lambda r: str(r["extracted"])),
        ("sessions minted", lambda r: str(r.get("minted", 0))),
        ("expired (TTL)", lambda r: str(r["expired"])),
        ("waits", lambda r: str(r["waits"])),
        ("failed", lambda r: str(r["failed"])),
    )
    for label, cell in measures:
        table.add_row(label, *(cell(row) for row in parts))
    console.print(table)

    relays = Table(
        title="Pages per relay (the target's records)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,  # one space between columns: a column per client fits 80
        pad_edge=False,
    )
    relays.add_column("relay", no_wrap=True)
    relays.add_column("placed in", no_wrap=True)
    for row in parts:
        # "Scrapy" over "US/California": the client's name on one line, its place on the next.
        relays.add_column(row["part"].replace(" ", "\n", 1), justify="right", no_wrap=True)
    relays.add_column("bans", justify="right", no_wrap=True)
    relays.add_column("fate", no_wrap=True)
    for relay in summary["relays"]:
        relays.add_row(
            relay["relay"],
            relay["geo"],
            *(str(relay["pages"].get(row["part"], 0)) for row in parts),
            str(relay["bans"]),
            relay["fate"],
        )
    console.print(relays)

    ips = summary["ips"]
    calls = summary["api_calls"]
    ttl = summary["ttl"]
    detail = ", ".join(f"{k} {v}" for k, v in calls.items() if k != "total")
    console.print(
        f"IPs bought {ips['bought']}, used {ips['used']} "
        f"({ips['bought'] - ips['used']} never carried a request)."
    )
    console.print(f"API calls {calls['total']}: {detail}.")
    console.print(
        f"TTL: life {ttl['life_simulated_minutes']} min, played at {ttl['speed']:g}x speed "
        f"(leases end after {ttl['lease_real_seconds']:g} s, the pool retires them after "
        f"{ttl['pool_retires_after_real_seconds']:g} s); {ips['leases_ended']} leases ended, "
        f"{ips['late_connections']} connections reached an ended lease."
    )
    gateway = summary.get("gateway")
    if gateway:
        console.print(
            f"Gateway: proxy account {gateway['account']}, {gateway['sessions_used']} sessions "
            f"carried pages (exits {', '.join(gateway['exits']) or 'none'}); traffic "
            f"{gateway['traffic_kb']} KB, in `proxypool accounts list` (used) and "
            "`proxypool usage`."
        )
    for event in summary["events"]:
        who = f"{event['relay']}: " if event["relay"] else ""
        console.print(f"  +{event['at']:>4}s {event['event']:<4} {who}{event['detail']}")
    style = "bold green" if summary["ok"] else "bold red"
    console.print(f"[{style}]{summary['verdict']}[/{style}]  ({summary['seconds']} s)")


# -- the demo run ---------------------------------------------------------------------------------


def _parts(world: SimWorld) -> list[DemoPart]:
    site_paths = tuple(url[len(world.target.url) :] for url in world.target.page_urls())
    parts = [
        DemoPart(
            name=f"Scrapy {geo}",
            client="scrapy",
            geo=Geo.parse(geo),
            user_agent=f"proxypool-demo/scrapy ({geo})",
            paths=site_paths,
        )
        for geo in DEMO_LAYOUT
    ]
    first = next(iter(DEMO_LAYOUT))
    parts.append(
        DemoPart(
            name="gateway",
            client="gateway",
            geo=Geo.parse(first),
            user_agent=f"proxypool-demo/gateway ({first})",
            paths=site_paths,
        )
    )
    parts.append(
        DemoPart(
            name="requests US",
            client="requests",
            geo=Geo("US"),
            user_agent="proxypool-demo/requests",
            paths=tuple(f"/page/{n}" for n in range(REQUESTS_PAGES)),
        )
    )
    return parts


def _jsonable(value: Any) -> Any:
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def _write_record(
    path: str,
    world: SimWorld,
    parts: Sequence[DemoPart],
    crawl: _CrawlOutcome,
    session: _SessionOutcome | None,
) -> None:
    record = {
        "hits": [
            {
                "path": h.path,
                "relay": h.relay,
                "relay_port": h.relay_port,
                "status": h.status,
                "banned": h.banned,
                "user_agent": h.header("User-Agent"),
            }
            for h in world.target.hits()
        ],
        "relay_geos": {name: str(geo) for name, geo in world.relay_geos.items()},
        "parts": [
            {"name": p.name, "geo": str(p.geo), "user_agent": p.user_agent, "paths": p.paths}
            for p in parts
        ],
        "ips_handed_out": world.simulator.ips_handed_out,
        "leases": [
            {"address": u.lease.address, "relay": u.lease.relay, "state": u.state, "used": u.used}
            for u in world.leases()
        ],
        # Every client's own counters, whole: Scrapy's stats per spider, the requests pool's.
        "stats": {name: _jsonable(stats) for name, stats in crawl.stats.items()},
        "pool": _jsonable(session.pool) if session is not None else None,
    }
    Path(path).write_text(json.dumps(record), "utf-8")


def _run_demo(as_json: bool, stdout: TextIO, stderr: TextIO, options: _Options) -> int:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="proxypool-demo-"))
    log_file = options.log_file or workdir / "scrapy.log"
    keep_log = False
    world = SimWorld(
        DEMO_LAYOUT,
        pages=PAGES,
        time_scale=TIME_SCALE,
        app_key=options.app_key,
        relay_auth=options.proxy_auth,
    )
    try:
        world.start()
        parts = _parts(world)
        spiders = [p for p in parts if p.client in ("scrapy", "gateway")]
        session_part = next(p for p in parts if p.client == "requests")
        with _Progress(parts, stderr, started) as progress:
            progress.note(
                f"simulator, {len(world.relay_geos)} relays and a "
                f"{len(world.target.page_urls())}-page target (/ and {PAGES} linked pages) up "
                f"on 127.0.0.1 in {time.monotonic() - started:.1f} s"
            )
            usage_before = _usage_flow(world)
            director = _Director(world, parts, _plan(world, parts), progress, started)
            director.start()
            for part in spiders:
                progress.begin(part.name)
            try:
                crawl = _crawl(world, spiders, log_file, options)
                session: _SessionOutcome | None = None
                if not crawl.interrupted:
                    progress.begin(session_part.name)
                    session = _requests_session(world, session_part, options.proxy_auth)
            finally:
                director.stop()
        if crawl.interrupted:
            stderr.write("proxypool demo: interrupted\n")
            return EXIT_INTERRUPTED
        check = check_records(world.target.hits(), parts, world.relay_geos)
        gateway = _gateway_summary(world, usage_before, _usage_flow(world))
        summary = _summary(
            world,
            parts,
            check,
            crawl,
            session,
            director.events,
            time.monotonic() - started,
            gateway,
        )
        record_path = os.environ.get(RECORD_ENV)
        if record_path:
            _write_record(record_path, world, parts, crawl, session)
        if as_json:
            stdout.write(json.dumps(summary, indent=2) + "\n")
        else:
            _print_summary(summary, _console(stdout))
        if not check.ok:
            keep_log = True
            stderr.write(f"proxypool demo: Scrapy's log is kept in {log_file}\n")
        return EXIT_OK if check.ok else EXIT_FAILED
    finally:
        world.close()
        if not keep_log:
            shutil.rmtree(workdir, ignore_errors=True)


def _console(stream: TextIO) -> Console:
    from rich.console import Console

    console = Console(file=stream, highlight=False, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160  # piped: room for every column on one line
    return console


# -- serve ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _until_signalled() -> Iterator[threading.Event]:
    """An Event set by SIGINT or SIGTERM while the block runs; the previous handlers return
    afterwards."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _serve(as_json: bool, stdout: TextIO, stderr: TextIO, options: _Options) -> int:
    world = SimWorld(SERVE_LAYOUT, pages=SERVE_PAGES, app_key=options.app_key)
    with _until_signalled() as stop, world:
        exports = {
            API_URL_ENV: world.api_url,
            # The simulator's own key ("demo-...", or the one PROXYPOOL_DEMO_APP_KEY chose), not
            # an account's: safe to show, and what this mode is for.
            LIBRARY_APP_KEY_ENV: world.app_key,
            TARGET_ENV: world.target_url,
            # The rotating gateway of the simulator's proxy accounts (alice01 is one).
            GATEWAY_ENV: world.gateway_address,
        }
        if as_json:
            relays = {name: str(geo) for name, geo in world.relay_geos.items()}
            stdout.write(json.dumps({**exports, "relays": relays}) + "\n")
        else:
            for name, value in exports.items():
                stdout.write(f"export {name}={shlex.quote(value)}\n")
        stdout.flush()
        placed = Counter(str(geo) for geo in world.relay_geos.values())
        layout = ", ".join(
            f"{'anywhere else' if geo == '*' else geo} x{n}" for geo, n in placed.items()
        )
        stderr.write(
            f"# proxypool demo --serve: simulated provider with {len(world.relay_geos)} relays "
            f"({layout}) and a {SERVE_PAGES}-page target site, on 127.0.0.1.\n"
            "# Paste the export lines above into another shell, then try e.g.\n"
            "#   proxypool locations countries\n"
            f"#   proxypool gateway url --user {GATEWAY_USER} --geo US/California --show-password\n"
            f"#   python examples/requests_session.py ${TARGET_ENV}\n"
            "# Ctrl-C stops everything.\n"
        )
        stderr.flush()
        while not stop.wait(0.5):
            pass
    stderr.write("# proxypool demo --serve: stopped\n")
    return EXIT_OK


# -- entry point ----------------------------------------------------------------------------------


def _missing_requirement() -> str | None:
    import importlib.util

    for module, package in (("scrapy", "Scrapy"), ("proxy", "proxy.py")):
        if importlib.util.find_spec(module) is None:
            return package
    return None


def main(args: argparse.Namespace) -> int:
    """Run the demo (or ``--serve``) for the CLI's parsed arguments (``serve``, ``json``)."""
    stdout, stderr = sys.stdout, sys.stderr
    missing = _missing_requirement()
    if missing is not None:
        stderr.write(f"proxypool demo needs {missing}: pip install 'proxypool[demo]'\n")
        return EXIT_FAILED
    # Everything stays on 127.0.0.1: a developer's *_proxy variables must not route the
    # simulator's API calls (requests honours them) or the crawl (Scrapy does too).
    for name in [n for n in os.environ if n.lower().endswith("_proxy")]:
        del os.environ[name]
    from .sim.relays import RelayStartError

    as_json = bool(getattr(args, "json", False))
    processes = getattr(args, "processes", None)
    if processes is not None:
        from . import demo_shared

        try:
            return demo_shared.run(processes, PROCESS_PAGES, as_json, stdout, stderr)
        except RelayStartError as exc:
            stderr.write(f"proxypool demo: a local relay did not start: {exc}\n")
            return EXIT_FAILED
    options = _options(os.environ)
    try:
        if getattr(args, "serve", False):
            return _serve(as_json, stdout, stderr, options)
        return _run_demo(as_json, stdout, stderr, options)
    except RelayStartError as exc:
        stderr.write(f"proxypool demo: a local relay did not start: {exc}\n")
        return EXIT_FAILED
