"""The feature checks of ``scrapy_ext._scrapy_private`` against the installed Scrapy, and the
fallback of each when its check fails.

``_scrapy_private`` holds every part of Scrapy or Twisted the middleware uses that is not
documented API. These tests fail when an upgrade breaks one of its assumptions (the check must
then say no), and prove that a failed check makes the middleware fail closed. A quality test at
the end keeps private accesses from appearing anywhere else.
"""

from __future__ import annotations

import ast
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _helpers import ListSource
from scrapy import Request, Spider
from scrapy.downloadermiddlewares.httpproxy import HttpProxyMiddleware
from scrapy.utils.test import get_crawler

from proxypool.models import Proxy
from scrapy_ext import ProxyPoolMiddleware
from scrapy_ext import _scrapy_private as private
from scrapy_ext.middleware import PROXY_META_KEY

ROOT = Path(__file__).resolve().parent.parent
HTTP11 = "scrapy.core.downloader.handlers.http11.HTTP11DownloadHandler"
SECRET = "pw5ecretZZ9"
SITE = "http://shop.example/item/1"


def make(proxy: Proxy) -> ProxyPoolMiddleware:
    crawler = get_crawler(
        Spider,
        {
            "DOWNLOAD_HANDLERS": {"http": HTTP11, "https": HTTP11},
            "PROXYPOOL_SOURCE": ListSource([proxy]),
            "PROXYPOOL_CHECK_PROXIES": False,
            "PROXYPOOL_MIN_SIZE": 0,
        },
    )
    middleware = ProxyPoolMiddleware.from_crawler(crawler)
    assert middleware.pool is not None
    middleware.pool.refill(middleware.config.geo)
    return middleware


def send(middleware: ProxyPoolMiddleware, request: Request) -> Request:
    from _scrapy_crawls import complete

    assert complete(middleware.process_request(request)) is None
    return request


# -- 1. HttpProxyMiddleware's _auth_proxy note ------------------------------------------------


def test_the_auth_note_check_holds_on_this_scrapy() -> None:
    private._auth_checked = None  # run the probe now, on the installed Scrapy
    assert private.auth_note_works() is True


def test_the_auth_note_check_says_no_when_scrapy_keeps_another_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check really tests Scrapy's behaviour: with the key renamed (as a Scrapy release
    that renamed it would look), it fails."""
    monkeypatch.setattr(private, "AUTH_PROXY_KEY", "_some_other_key")
    monkeypatch.setattr(private, "_auth_checked", None)
    assert private.auth_note_works() is False


def test_the_auth_note_check_says_no_when_scrapy_drops_a_header_it_should_keep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def drops(self: HttpProxyMiddleware, request: Request, spider: Any = None) -> None:
        request.headers.pop(b"Proxy-Authorization", None)

    monkeypatch.setattr(HttpProxyMiddleware, "process_request", drops)
    monkeypatch.setattr(private, "_auth_checked", None)
    assert private.auth_note_works() is False


def test_a_failed_auth_check_sends_no_credentials_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(private, "_auth_checked", False)
    proxy = Proxy("10.0.0.9", 9000, username="u1", password=SECRET)
    with caplog.at_level(logging.WARNING, logger="scrapy_ext.middleware"):
        middleware = make(proxy)
    assert "does not keep a Proxy-Authorization" in caplog.text
    request = send(middleware, Request(SITE))
    HttpProxyMiddleware("latin-1").process_request(request)
    assert request.meta[PROXY_META_KEY] == proxy
    assert b"Proxy-Authorization" not in request.headers
    assert SECRET not in caplog.text


def test_with_the_check_passing_the_credentials_are_sent() -> None:
    private._auth_checked = None
    proxy = Proxy("10.0.0.9", 9000, username="u1", password=SECRET)
    request = send(make(proxy), Request(SITE))
    HttpProxyMiddleware("latin-1").process_request(request)
    assert request.headers[b"Proxy-Authorization"].startswith(b"Basic ")
    assert request.meta["proxy"] == "http://10.0.0.9:9000"


# -- 2. engine._slot.closing --------------------------------------------------------------------

_CLOSING_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import scrapy
    from scrapy import signals
    from scrapy.crawler import CrawlerProcess
    from scrapy_ext._scrapy_private import engine_closing

    seen = {}

    class Probe(scrapy.Spider):
        name = "probe"
        start_urls = ["data:,hello"]

        @classmethod
        def from_crawler(cls, crawler, *args, **kwargs):
            spider = super().from_crawler(crawler, *args, **kwargs)
            crawler.signals.connect(spider.on_closed, signal=signals.spider_closed)
            return spider

        def parse(self, response):
            seen["while_crawling"] = engine_closing(self.crawler.engine)

        def on_closed(self):
            seen["at_close"] = engine_closing(self.crawler.engine)

    process = CrawlerProcess({"LOG_LEVEL": "ERROR", "TELNETCONSOLE_ENABLED": False})
    process.crawl(Probe)
    process.start()
    print(json.dumps(seen))
    """
)


def test_engine_closing_reads_a_real_engine(tmp_path: Path) -> None:
    """On this Scrapy the check finds the slot: False while crawling, True once closing."""
    script = tmp_path / "probe.py"
    script.write_text(_CLOSING_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "while_crawling": False,
        "at_close": True,
    }


def test_engine_closing_says_it_cannot_tell_on_an_engine_without_the_slot() -> None:
    class Engine:
        pass

    class SlotWithoutClosing:
        pass

    engine = Engine()
    assert private.engine_closing(engine) is None
    engine._slot = SlotWithoutClosing()  # type: ignore[attr-defined]
    assert private.engine_closing(engine) is None


# -- 3. TunnelError ------------------------------------------------------------------------------


def test_tunnelerror_is_found_and_its_text_read_on_this_scrapy() -> None:
    import importlib

    module, name = private.TUNNEL_ERROR
    tunnel_error = getattr(importlib.import_module(module), name)
    assert private.is_tunnel_error(tunnel_error("x"))
    assert private.is_tunnel_error(type("Sub", (tunnel_error,), {})("x"))  # a subclass too
    assert not private.is_tunnel_error(ConnectionError("Could not open CONNECT tunnel"))
    # The wording itself is pinned by a real crawl through a refusing relay
    # (test_scrapy_leaks.py: CONNECT answered 502 -> proxypool/target_unreachable).
    refused = tunnel_error(
        "Could not open CONNECT tunnel with proxy 10.0.0.1:8000 [{'status': 502, 'reason': b'x'}]"
    )
    assert private.tunnel_status(refused) == 502
    assert private.tunnel_status(tunnel_error("worded some other way")) is None


def test_the_middleware_does_not_import_the_download_handler_early(tmp_path: Path) -> None:
    """Importing Scrapy's HTTP/1.1 handler while the crawler is built made Scrapy's deprecation
    helper inspect the whole deep stack: ~0.1 s of start-up per crawl (benchmarks/README.md).
    Building the middleware leaves that import to Scrapy's first download."""
    script = textwrap.dedent(
        """
        import sys
        from scrapy import Spider
        from scrapy.utils.test import get_crawler
        from scrapy_ext import ProxyPoolMiddleware
        crawler = get_crawler(Spider, {
            "DOWNLOAD_HANDLERS": {
                "http": "scrapy.core.downloader.handlers.http11.HTTP11DownloadHandler",
                "https": "scrapy.core.downloader.handlers.http11.HTTP11DownloadHandler",
            },
            "PROXYPOOL_APP_KEY": "k",
            "PROXYPOOL_API_URL": "http://127.0.0.1:9/api",
        })
        middleware = ProxyPoolMiddleware.from_crawler(crawler)
        assert middleware.pool is not None  # built, not misconfigured
        print("scrapy.core.downloader.handlers.http11" in sys.modules)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_without_tunnelerror_a_refused_tunnel_goes_to_the_errback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fallback: the error is not taken for the proxy's (not retried elsewhere, nothing
    counted), so it reaches the request's errback; nothing is sent without a proxy."""
    from scrapy.core.downloader.handlers.http11 import TunnelError

    monkeypatch.setattr(private, "TUNNEL_ERROR", None)
    middleware = make(Proxy("10.0.0.1", 8000))
    request = send(middleware, Request(SITE))
    assert middleware.process_exception(request, TunnelError("refused")) is None
    assert request.meta["proxy"] == "http://10.0.0.1:8000"


# -- 4. build_component_list -----------------------------------------------------------------------


def test_httpproxy_enabled_reads_the_middleware_list() -> None:
    on = get_crawler(Spider, {}).settings
    off = get_crawler(Spider, {"DOWNLOADER_MIDDLEWARES": {HttpProxyMiddleware: None}}).settings
    assert private.httpproxy_enabled(on) is True
    assert private.httpproxy_enabled(off) is False


def test_without_build_component_list_no_credentials_are_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(private, "_build_component_list", None)
    assert private.httpproxy_enabled(get_crawler(Spider, {}).settings) is False


# -- nothing private elsewhere -------------------------------------------------------------------


def _private_uses(path: Path) -> list[str]:
    """Imports of, attribute reads of, and import-path strings naming, a private part of
    Scrapy or Twisted (a dotted name with a component starting with ``_``)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value]
        elif isinstance(node, ast.Attribute) and node.attr in {"_slot", "_auth_proxy"}:
            found.append(f"{path.name}:{node.lineno}: .{node.attr}")
        for name in names:
            parts = name.split(".")
            if parts[0] in {"scrapy", "twisted"} and any(
                p.startswith("_") and not p.startswith("__") for p in parts[1:]
            ):
                found.append(f"{path.name}:{node.lineno}: {name}")
            if name == "_auth_proxy":
                found.append(f"{path.name}:{node.lineno}: {name!r}")
    return found


def test_no_private_scrapy_or_twisted_part_outside_the_one_module() -> None:
    files = [
        p
        for p in sorted((ROOT / "proxypool").rglob("*.py"))
        + sorted((ROOT / "scrapy_ext").glob("*.py"))
        if p.name != "_scrapy_private.py"
    ]
    assert files
    assert [use for path in files for use in _private_uses(path)] == []


def test_the_private_use_finder_finds_what_it_looks_for(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from twisted.web._newclient import ResponseFailed\n"
        "X = 'scrapy.core.downloader._idna_patch'\n"
        "def f(engine):\n    return engine._slot\n"
        "KEY = '_auth_proxy'\n"
    )
    assert len(_private_uses(sample)) == 5


# -- the versions the package claims are the ones tested -------------------------------------------


def _floor(requirement: str) -> tuple[int, ...]:
    return tuple(int(part) for part in requirement.split(">=", 1)[1].split(".")[:2])


def test_the_oldest_scrapy_and_python_claimed_are_the_ones_the_tests_run_on() -> None:
    """The README's test command proves the range the package claims: it installs one Scrapy
    and runs on one Python, so the floors must be those (a newer Scrapy installed here means
    the floor is no longer tested: test it too, or move the floor up)."""
    import tomllib

    import scrapy

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    scrapy_floors = {
        _floor(req)
        for extra in project["optional-dependencies"].values()
        for req in extra
        if req.lower().startswith("scrapy>=")
    }
    installed = tuple(int(part) for part in scrapy.__version__.split(".")[:2])
    assert scrapy_floors == {installed}, (scrapy_floors, scrapy.__version__)
    # Python: CI runs the floor (3.11); a newer interpreter running the suite is inside the claim.
    assert sys.version_info[:2] >= _floor(project["requires-python"])
