"""Real Scrapy crawls in a subprocess, for the Scrapy integration tests (and the benchmark).

Scrapy's reactor starts once per process, so every crawl runs in its own interpreter:
``run_crawl()`` (test side) writes a JSON spec, runs ``python tests/_scrapy_crawls.py SPEC`` and
reads back a JSON result; ``main()`` (crawl side) runs the crawl with ``CrawlerProcess`` and the
default asyncio reactor, logging at DEBUG to a file the test then scans.

The spider (``RecordingSpider``) starts from the spec's requests, optionally follows every link of
the same site (passing chosen meta keys on to the children), and records each response, each
failure, the download slots it saw and, with ``ticker``, when a ``LoopingCall`` on the reactor
ticked (the proof that nothing blocks the loop). With ``status_errback`` non-2xx answers go
to the errback (Scrapy's ``HttpError``) instead of the callback. With ``close`` the spider stays
open until a marker file appears, then closes itself (``CloseSpider`` from a callback, or
``engine.close_spider``). After the crawl, the names of the threads still alive in the crawl
process are recorded (and printed), once its ``proxypool*`` threads had a moment to end.
Also here: ``CaptchaBanPolicy``, ``SettingsSource`` (a ``PROXYPOOL_SOURCE`` handing out the
proxies listed in a setting) and ``relay_source`` (a ProviderSimulator address source handing out
relays per geography).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from proxypool.geo import Geo
from proxypool.models import Proxy
from proxypool.sim.target import CAPTCHA_MARKER as _SIM_CAPTCHA

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent

#: Settings every crawl starts from (a spec's settings override them).
BASE_SETTINGS: dict[str, Any] = {
    "ADDONS": {"scrapy_ext.ProxyPoolAddon": 0},
    "LOG_LEVEL": "DEBUG",
    "TELNETCONSOLE_ENABLED": False,
    "REMOTE_CONTROL_ENABLED": False,
    "ROBOTSTXT_OBEY": False,
    "COOKIES_ENABLED": False,
    "DOWNLOAD_TIMEOUT": 15,
    "CONCURRENT_REQUESTS": 8,
    "CONCURRENT_REQUESTS_PER_DOMAIN": 8,
    "PROXYPOOL_MIN_SIZE": 1,
    "PROXYPOOL_BATCH": 10,
    "PROXYPOOL_WAIT_TIMEOUT": 20,
}


# ------------------------------------------------------------------------------------------------
# test side
# ------------------------------------------------------------------------------------------------


T = TypeVar("T")


def complete(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that must finish without suspending (a hook called without a reactor)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result
    coro.close()
    raise AssertionError("the coroutine suspended: it waited for something")


@dataclass
class CrawlResult:
    """What a crawl left behind: exit code, Scrapy stats, responses, failures, the DEBUG log."""

    returncode: int
    stats: dict[str, Any]
    responses: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    slots: list[str]
    ticks: dict[str, float]  # the ticker's "count" and "max_gap" (seconds)
    log: str
    output: str
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)
    threads: list[str] = field(default_factory=list)  # alive in the crawl process after it
    # When the ticker ticked, wall clock (``time.time()``: comparable with other processes'
    # ``datetime.now()``, such as the ProviderSimulator's call times), oldest first.
    tick_times: list[float] = field(default_factory=list)

    def error_paths(self) -> set[str]:
        """Paths of the requests that reached the errback."""
        return {urlsplit(e["url"]).path for e in self.errors}

    def stat(self, name: str, default: Any = 0) -> Any:
        return self.stats.get(name, default)

    def proxypool_stats(self) -> dict[str, Any]:
        return {k: v for k, v in self.stats.items() if k.startswith("proxypool/")}

    @property
    def finish_reason(self) -> str | None:
        reason = self.stats.get("finish_reason")
        return str(reason) if reason is not None else None

    def ok_paths(self) -> set[str]:
        """Paths answered 200 to the spider."""
        return {r["path"] for r in self.responses if r["status"] == 200}

    def __str__(self) -> str:  # shown by pytest on failure
        tail = "\n".join(self.log.splitlines()[-60:])
        return (
            f"exit {self.returncode} in {self.seconds:.1f} s; finish_reason={self.finish_reason}\n"
            f"proxypool stats: {self.proxypool_stats()}\nerrors: {self.errors[:5]}\n"
            f"--- output ---\n{self.output[-3000:]}\n--- log tail ---\n{tail}"
        )


@dataclass(frozen=True)
class CloseSpec:
    """How the spider closes itself: once ``marker`` exists (and Scrapy's stat
    ``proxypool/waits`` reached ``min_waits``), either ``how="callback"`` (a request to ``url``
    whose callback raises ``CloseSpider(reason)``) or ``how="engine"``
    (``engine.close_spider_async(reason=reason)`` from a ``LoopingCall``). Until then the spider
    is kept open when idle, for at most ``hold`` seconds."""

    marker: Path
    how: str
    reason: str
    url: str = ""
    min_waits: int = 0
    hold: float = 30.0

    def as_json(self) -> dict[str, Any]:
        return {
            "marker": str(self.marker),
            "how": self.how,
            "reason": self.reason,
            "url": self.url,
            "min_waits": self.min_waits,
            "hold": self.hold,
        }


def crawl_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a crawl subprocess: no *_proxy variables (Scrapy would use them), no
    PROXYPOOL_* from the caller unless given in ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and not k.startswith("PROXYPOOL_")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS)])
    env.update(extra or {})
    return env


def run_crawl(
    workdir: Path,
    *,
    start: Sequence[Mapping[str, Any]],
    settings: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    geo: Any = None,
    geos: Sequence[Any] | None = None,
    follow: bool = False,
    follow_meta: Sequence[str] = (),
    ticker: float | None = None,
    status_errback: bool = False,
    close: CloseSpec | None = None,
    timeout: float = 60.0,
    async_process: bool = False,
) -> CrawlResult:
    """Crawl in a subprocess. ``start``: ``{"url", "meta"?, "headers"?, "method"?, "body"?,
    "formdata"?}`` dicts (``formdata``: a ``FormRequest``). ``geo``/``geos``
    become the spider's ``proxypool_geo``/``proxypool_geos`` attributes (omitted when None).
    ``status_errback``: non-2xx responses go to the errback, not the callback. ``close``: the
    spider closes itself once a marker file exists (see ``CloseSpec``). ``async_process``: run
    with ``AsyncCrawlerProcess`` (as ``scrapy crawl`` does) instead of ``CrawlerProcess``."""
    workdir.mkdir(parents=True, exist_ok=True)
    n = len(list(workdir.glob("spec-*.json")))
    spec_path = workdir / f"spec-{n}.json"
    result_path = workdir / f"result-{n}.json"
    log_path = workdir / f"crawl-{n}.log"
    spec = {
        "settings": {**BASE_SETTINGS, **(settings or {}), "LOG_FILE": str(log_path)},
        "start": list(start),
        "geo": geo,
        "geos": geos,
        "follow": follow,
        "follow_meta": list(follow_meta),
        "ticker": ticker,
        "status_errback": status_errback,
        "close": close.as_json() if close is not None else None,
        "async_process": async_process,
        "result": str(result_path),
    }
    spec_path.write_text(json.dumps(spec))
    began = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(spec_path)],
        cwd=workdir,
        env=crawl_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.perf_counter() - began
    data: dict[str, Any] = {}
    if result_path.exists():
        data = json.loads(result_path.read_text())
    log = log_path.read_text("utf-8", "replace") if log_path.exists() else ""
    return CrawlResult(
        returncode=proc.returncode,
        stats=data.get("stats", {}),
        responses=data.get("responses", []),
        errors=data.get("errors", []),
        slots=data.get("slots", []),
        ticks=data.get("ticks", {}),
        log=log,
        output=proc.stdout + proc.stderr,
        seconds=seconds,
        extra=data.get("extra", {}),
        threads=data.get("threads", []),
        tick_times=data.get("tick_times", []),
    )


def relay_source(
    addresses: Mapping[str | None, Sequence[str]],
) -> Callable[[str | None, str | None, str | None, int, int], list[str]]:
    """A ProviderSimulator ``address_source``: the addresses listed for the most specific key of
    ``"CC/State/City"``, ``"CC/State"``, ``"CC"``, or ``None`` (anywhere / fallback)."""

    def source(
        cc: str | None, state: str | None, city: str | None, num: int, life: int
    ) -> list[str]:
        keys = ["/".join(p for p in (cc, state, city) if p), "/".join(p for p in (cc, state) if p)]
        for key in [*keys, cc]:
            if key and key in addresses:
                return list(addresses[key])[:num]
        return list(addresses.get(None, ()))[:num]

    return source


# ------------------------------------------------------------------------------------------------
# crawl side (imports Scrapy only here, so the test process never touches its reactor)
# ------------------------------------------------------------------------------------------------


class SettingsSource:
    """A ``PROXYPOOL_SOURCE`` for crawls: hands out the proxies of the setting
    ``TEST_PROXIES`` (``"host:port"`` or ``"user:password@host:port"`` strings, any host, even a
    malformed one), the same list at every extraction, in order."""

    def __init__(self, addresses: Sequence[str]) -> None:
        self.proxies = [_parse_proxy(address) for address in addresses]

    @classmethod
    def from_crawler(cls, crawler: Any) -> SettingsSource:
        return cls(crawler.settings.getlist("TEST_PROXIES"))

    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        return [dataclasses.replace(p, geo=geo) for p in self.proxies[:num]]


def _parse_proxy(address: str) -> Proxy:
    credentials, _, hostport = address.rpartition("@")
    host, _, port = hostport.rpartition(":")
    user, _, password = credentials.partition(":")
    return Proxy(host, int(port), username=user or None, password=password or None)


CAPTCHA_MARKER = _SIM_CAPTCHA.encode()


class CaptchaBanPolicy:
    """A body-based ban policy: a 200 page carrying the target's captcha marker is a ban."""

    def is_ban(self, request: Any, response: Any) -> bool:
        return CAPTCHA_MARKER in response.body


class CaptchaBodyPolicy:
    """The same rule as a ``BanPolicy`` (``is_ban(status, body)``): the form the requests adapter
    and the Scrapy middleware both take, so one object serves both."""

    def __init__(self) -> None:
        self.calls = 0

    def is_ban(self, status: int, body: bytes = b"") -> bool:
        self.calls += 1
        return status == 200 and CAPTCHA_MARKER in body


def _jsonable(value: Any) -> Any:
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def main(spec_path: str) -> int:
    import scrapy
    from scrapy import signals
    from scrapy.crawler import AsyncCrawlerProcess, CrawlerProcess
    from scrapy.exceptions import CloseSpider, DontCloseSpider
    from scrapy.utils.defer import deferred_from_coro
    from twisted.internet import task

    spec = json.loads(Path(spec_path).read_text())
    record: dict[str, Any] = {
        "responses": [],
        "errors": [],
        "slots": set(),
        "ticks": [],
        "extra": {},
    }
    close = spec.get("close")

    class RecordingSpider(scrapy.Spider):
        name = "recording"

        @classmethod
        def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> RecordingSpider:
            spider: RecordingSpider = super().from_crawler(crawler, *args, **kwargs)
            crawler.signals.connect(spider.on_opened, signal=signals.spider_opened)
            crawler.signals.connect(spider.on_closed, signal=signals.spider_closed)
            crawler.signals.connect(spider.on_idle, signal=signals.spider_idle)
            return spider

        def on_opened(self) -> None:
            self.opened_at = time.monotonic()
            self.close_begun = False
            interval = spec.get("ticker")
            if interval:
                self.loop = task.LoopingCall(lambda: record["ticks"].append(time.monotonic()))
                self.loop.start(interval, now=True)
            if close:
                self.close_loop = task.LoopingCall(self.maybe_close)
                self.close_loop.start(0.05, now=False)

        def on_closed(self) -> None:
            for loop in (getattr(self, "loop", None), getattr(self, "close_loop", None)):
                if loop is not None and loop.running:
                    loop.stop()

        def on_idle(self) -> None:
            holding = time.monotonic() - self.opened_at < close["hold"] if close else False
            if holding and not self.close_begun:
                raise DontCloseSpider

        def maybe_close(self) -> None:
            if self.close_begun or not Path(close["marker"]).exists():
                return
            if (self.crawler.stats.get_value("proxypool/waits") or 0) < close["min_waits"]:
                return
            self.close_begun = True
            record["extra"]["close_begun"] = time.monotonic()
            engine = self.crawler.engine
            if close["how"] == "engine":
                deferred_from_coro(engine.close_spider_async(reason=close["reason"]))
            else:
                engine.crawl(
                    scrapy.Request(close["url"], callback=self.close_now, dont_filter=True)
                )

        def close_now(self, response: Any) -> None:
            record["extra"]["closed_from_callback"] = response.url
            raise CloseSpider(close["reason"])

        def _request(
            self, url: str, meta: dict[str, Any], headers: Any = None, item: Any = None
        ) -> scrapy.Request:
            status_meta = {} if spec.get("status_errback") else {"handle_httpstatus_all": True}
            item = item or {}
            if "formdata" in item:  # a FormRequest: POST with a urlencoded body
                return scrapy.FormRequest(
                    url,
                    formdata=item["formdata"],
                    meta={**status_meta, **meta},
                    headers=headers,
                    callback=self.parse,
                    errback=self.failed,
                )
            return scrapy.Request(
                url,
                method=item.get("method", "GET"),
                body=item.get("body"),
                meta={**status_meta, **meta},
                headers=headers,
                callback=self.parse,
                errback=self.failed,
            )

        async def start(self) -> Any:
            for item in spec["start"]:
                yield self._request(
                    item["url"], dict(item.get("meta") or {}), item.get("headers"), item
                )

        def parse(self, response: Any) -> Iterator[scrapy.Request]:
            from urllib.parse import urlsplit

            record["responses"].append(
                {
                    "url": response.url,
                    "path": urlsplit(response.url).path,
                    "status": response.status,
                    "retries": response.meta.get("_proxypool_retries", 0),
                    "session": response.meta.get("proxypool_session"),
                }
            )
            downloader = self.crawler.engine.downloader
            record["slots"].update(str(key) for key in downloader.slots)
            if spec.get("follow") and response.status == 200:
                inherited = {
                    key: response.meta[key] for key in spec["follow_meta"] if key in response.meta
                }
                for href in response.css("a::attr(href)").getall():
                    yield self._request(response.urljoin(href), dict(inherited))

        def failed(self, failure: Any) -> None:
            request = failure.request
            record["errors"].append(
                {
                    "url": request.url,
                    "error": type(failure.value).__name__,
                    "message": str(failure.value)[:300],
                }
            )

    if spec.get("geo") is not None:
        RecordingSpider.proxypool_geo = spec["geo"]  # type: ignore[attr-defined]
    if spec.get("geos") is not None:
        RecordingSpider.proxypool_geos = spec["geos"]  # type: ignore[attr-defined]

    # AsyncCrawlerProcess (what ``scrapy crawl`` uses) builds the crawler's components inside the
    # running event loop, which some download handlers (aiohttp's) need.
    process_class = AsyncCrawlerProcess if spec.get("async_process") else CrawlerProcess
    process = process_class(spec["settings"])
    crawler = process.create_crawler(RecordingSpider)
    process.crawl(crawler)
    process.start()
    record["extra"]["crawl_ended"] = ended = time.monotonic()
    if "close_begun" in record["extra"]:
        record["extra"]["close_seconds"] = ended - record["extra"]["close_begun"]

    # A thread that has finished its last job may take a moment to leave enumerate().
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(
        t.name.startswith("proxypool") for t in threading.enumerate()
    ):
        time.sleep(0.01)
    threads = sorted(t.name for t in threading.enumerate() if t.is_alive())
    print("threads alive after the crawl:", threads, flush=True)

    ticks = record["ticks"]  # time.monotonic(): gaps unaffected by wall-clock steps
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    to_wall = time.time() - time.monotonic()
    result = {
        "stats": {k: _jsonable(v) for k, v in (crawler.stats.get_stats() or {}).items()},
        "responses": record["responses"],
        "errors": record["errors"],
        "slots": sorted(record["slots"]),
        "ticks": {"count": len(ticks), "max_gap": max(gaps, default=0.0)},
        "tick_times": [tick + to_wall for tick in ticks],
        "threads": threads,
        "extra": record["extra"],
    }
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
