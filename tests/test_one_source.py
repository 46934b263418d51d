"""One source of truth (issue 13, section 2), kept true:

- every ``PROXYPOOL_*`` setting of the table (``scrapy_ext.settings.DEFAULTS``) given a bad value
  stops a real crawl before anything is sent, with an error naming the setting, and the walk
  covers the whole table (a new setting without a bad value here fails the test);
- every environment variable the package reads is named once, in ``proxypool._env``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from scrapy_ext.settings import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
KEY = "KEYs3cr3tXYZ1234567890"

# One out-of-range or malformed value per setting of the table, and words the error must use.
BAD_VALUES: dict[str, tuple[Any, str]] = {
    "PROXYPOOL_ENABLED": ("perhaps", "True or False"),
    "PROXYPOOL_APP_KEY": ("two words", "printable characters"),
    "PROXYPOOL_API_URL": ("ftp://127.0.0.1/api", "http"),
    "PROXYPOOL_API_TIMEOUT": ("soon", "seconds"),
    "PROXYPOOL_SOURCE": ("nodots", "import path"),
    "PROXYPOOL_GATEWAY": ("127.0.0.1", "host:port"),
    "PROXYPOOL_GATEWAY_USER": ("two words", "without spaces"),
    "PROXYPOOL_GATEWAY_PASSWORD": (["a", "list"], "must be a string"),
    "PROXYPOOL_GATEWAY_FORMAT": ("{user}_{nope}", "unknown placeholder {nope}"),
    "PROXYPOOL_PROXY_LIST": (["socks5://127.0.0.1:1080"], "http:// or https://"),
    "PROXYPOOL_GEO": ("USA/California", "alpha-2"),
    "PROXYPOOL_LIFE": (8000, "between 1 and 7200 minutes, got 8000"),
    "PROXYPOOL_BATCH": (501, "between 1 and 500"),
    "PROXYPOOL_MIN_SIZE": (-1, "at least 0"),
    "PROXYPOOL_STRATEGY": ("fastest", "'round_robin'"),
    "PROXYPOOL_EXPIRY_MARGIN": (-5, ">= 0"),
    "PROXYPOOL_MAX_FAILURES": (0, "at least 1"),
    "PROXYPOOL_MAX_EXTRACTED": (0, "at least 1"),
    "PROXYPOOL_CHECK_PROXIES": ("sometimes", "True or False"),
    "PROXYPOOL_CHECK_TIMEOUT": (-1, "> 0"),
    "PROXYPOOL_BAN_STATUSES": ("403,abc", "100-599"),
    "PROXYPOOL_BAN_POLICY": ("not a path", "import path"),
    "PROXYPOOL_MAX_PROXY_RETRIES": (101, "between 0 and 100"),
    "PROXYPOOL_SLOT_PER_PROXY": ("maybe", "True or False"),
    "PROXYPOOL_WAIT_TIMEOUT": ("nan", "finite"),
    "PROXYPOOL_TRUSTED_HANDLERS": ("aiohttp", "import paths"),
    "PROXYPOOL_BAN_STORM_BATCHES": (1001, "between 0 and 1000"),
    "PROXYPOOL_BAN_STORM_COOLDOWN": (0, "> 0"),
    "PROXYPOOL_BAN_STORM_CLOSE": ("sometimes", "True or False"),
    "PROXYPOOL_REDIS_URL": ("http://:S3cret@127.0.0.1:6379", "redis://, rediss:// or unix://"),
    "PROXYPOOL_REDIS_NAMESPACE": ("team{a}", "must not contain braces"),
}


def test_the_walk_covers_every_setting_of_the_table() -> None:
    assert set(BAD_VALUES) == set(DEFAULTS)


def _crawl_all(tmp_path: Path, api: str, site: str, bad: dict[str, Any]) -> dict[str, Any]:
    script = tmp_path / "crawls.py"
    script.write_text(_WALK)
    spec = tmp_path / "spec.json"
    result = tmp_path / "result.json"
    spec.write_text(
        json.dumps(
            {
                "bad": bad,
                "key": KEY,
                "api": api,
                "site": site,
                "log": str(tmp_path / "crawl.log"),
                "result": str(result),
            }
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(spec)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dict(json.loads(result.read_text()))


# All crawls in one process (one reactor), side by side: each records how it ended.
_WALK = textwrap.dedent(
    """
    import json, sys
    import scrapy
    from scrapy import signals
    from scrapy.crawler import CrawlerProcess

    spec = json.loads(open(sys.argv[1]).read())
    results = {}
    handlers = []

    class Probe(scrapy.Spider):
        name = "probe"

        async def start(self):
            yield scrapy.Request(spec["site"], dont_filter=True)

        def parse(self, response):
            pass

    process = CrawlerProcess(
        {"LOG_LEVEL": "INFO", "LOG_FILE": spec["log"], "TELNETCONSOLE_ENABLED": False}
    )

    def record(crawler, name):
        def closed(reason, spider=None):
            stats = crawler.stats
            results[name] = {
                "reason": reason,
                "error": stats.get_value("proxypool/error"),
                "requests": stats.get_value("downloader/request_count", 0),
            }
        return closed

    for name, value in spec["bad"].items():
        settings = {
            "ADDONS": {"scrapy_ext.ProxyPoolAddon": 0},
            "PROXYPOOL_APP_KEY": spec["key"],
            "PROXYPOOL_API_URL": spec["api"],
            "TELNETCONSOLE_ENABLED": False,
            name: value,
        }
        spider = type(f"Probe_{name}", (Probe,), {"custom_settings": settings})
        crawler = process.create_crawler(spider)
        handler = record(crawler, name)
        handlers.append(handler)  # (signals hold their receivers weakly)
        crawler.signals.connect(handler, signal=signals.spider_closed)
        process.crawl(crawler)
    process.start()
    open(spec["result"], "w").write(json.dumps(results))
    """
)


@pytest.mark.timeout(180)
def test_every_bad_setting_stops_the_crawl_before_anything_is_sent(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    """A real crawl per setting (side by side in one process), each with one bad value: the
    spider closes as misconfigured, the error names the setting and what is allowed, nothing
    reached the provider or the site (both are this server, which records every request), and
    the app_key is in no error. ``PROXYPOOL_ENABLED`` is the exception that proves the rule: a
    bad on/off switch cannot be read as off, so it closes the spider too."""
    api = httpserver.url_for("/openapi")
    site = httpserver.url_for("/page")
    results = _crawl_all(tmp_path, api, site, {k: v for k, (v, _) in BAD_VALUES.items()})
    assert set(results) == set(BAD_VALUES)
    wrong = {}
    for name, (_, allowed) in BAD_VALUES.items():
        got = results[name]
        error = got["error"] or ""
        if (
            got["reason"] != "proxypool_misconfigured"
            or name not in error
            or allowed not in error
            or KEY in error
            or got["requests"] != 0
        ):
            wrong[name] = got
    assert wrong == {}
    assert [str(entry[0].url) for entry in httpserver.log] == []
    log = (tmp_path / "crawl.log").read_text()
    assert KEY not in log
    for name in BAD_VALUES:
        assert name in log  # each error is logged, naming its setting


def test_a_bad_setting_is_said_before_the_spider_opens(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    """The error naming the setting is logged when the middleware is built, before Scrapy's
    "Spider opened", and once."""
    api = httpserver.url_for("/openapi")
    results = _crawl_all(tmp_path, api, httpserver.url_for("/page"), {"PROXYPOOL_LIFE": 8000})
    assert results["PROXYPOOL_LIFE"]["reason"] == "proxypool_misconfigured"
    log = (tmp_path / "crawl.log").read_text()
    said = log.index("PROXYPOOL_LIFE must be between 1 and 7200 minutes, got 8000")
    assert said < log.index("Spider opened")
    errors = [line for line in log.splitlines() if " ERROR: " in line]
    assert len([line for line in errors if "PROXYPOOL_LIFE must be" in line]) == 1, errors
    assert httpserver.log == []


def test_a_good_configuration_does_reach_the_provider(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    """The control for the test above: with a valid value the same crawl calls the provider (so
    "nothing reached the server" there is the settings' doing, not a broken harness)."""
    api = httpserver.url_for("/openapi")
    site = httpserver.url_for("/page")
    # The provider refuses the key: the spider closes at once, having asked it.
    httpserver.expect_request("/openapi/ip/v3").respond_with_json({"code": 3, "msg": "bad key"})
    results = _crawl_all(tmp_path, api, site, {"PROXYPOOL_LIFE": 5})
    assert results["PROXYPOOL_LIFE"]["reason"] == "proxypool_account_error"
    assert [entry[0].path for entry in httpserver.log] == ["/openapi/ip/v3"]


# -- environment variable names ------------------------------------------------------------------


def _env_reads_and_names(path: Path) -> list[str]:
    """Environment variable names written as text where they are read or defined: a literal
    ``PROXYPOOL_*`` passed to ``environ.get``/``getenv``/``environ[...]``, or assigned to a
    ``*_ENV`` name."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        literal: ast.expr | None = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = func.value if isinstance(func, ast.Attribute) else None
            owner_name = (
                owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            )
            if name == "getenv" or (name in {"get", "pop"} and owner_name in {"environ", "env"}):
                literal = node.args[0]
        elif isinstance(node, ast.Subscript):
            value = node.value
            if (isinstance(value, ast.Attribute) and value.attr == "environ") or (
                isinstance(value, ast.Name) and value.id == "environ"
            ):
                literal = node.slice
        elif (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and any(isinstance(t, ast.Name) and t.id.endswith("_ENV") for t in node.targets)
        ):
            literal = node.value
        if (
            isinstance(literal, ast.Constant)
            and isinstance(literal.value, str)
            and literal.value.startswith("PROXYPOOL_")
        ):
            found.append(f"{path.name}:{node.lineno}: {literal.value}")
    return found


def test_environment_variables_are_named_once() -> None:
    files = [
        p
        for package in ("proxypool", "scrapy_ext")
        for p in sorted((ROOT / package).rglob("*.py"))
        if p.name != "_env.py"
    ]
    assert [use for path in files for use in _env_reads_and_names(path)] == []
    defined = _env_reads_and_names(ROOT / "proxypool" / "_env.py")
    assert len(defined) >= 8  # the finder finds the definitions where they belong


def test_the_env_finder_finds_reads(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\n"
        "A = os.environ.get('PROXYPOOL_X')\n"
        "B = os.getenv('PROXYPOOL_Y')\n"
        "C = os.environ['PROXYPOOL_Z']\n"
        "D_ENV = 'PROXYPOOL_W'\n"
        "E = env.get('PROXYPOOL_V')\n"
        "F = os.environ.get('HOME')\n"
    )
    assert len(_env_reads_and_names(sample)) == 5


# -- test helpers -----------------------------------------------------------------------------

# Helpers several test files need, and the one module each lives in.
SHARED_HELPERS = {
    "FakeClock": "_helpers.py",
    "ListSource": "_helpers.py",
    "make_client": "_provider.py",
}


def test_shared_test_helpers_are_defined_once() -> None:
    """A fake clock, a list source and a client factory were each written two to four times;
    each now lives in one module, and a second definition anywhere under tests/ fails here."""
    where: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name in SHARED_HELPERS:
                where.setdefault(node.name, []).append(path.name)
    assert where == {name: [home] for name, home in SHARED_HELPERS.items()}
