"""Secrets, end to end: with a recognisable app_key and proxy password planted, the whole demo and
the test workloads run at DEBUG, and every log record, stats value, exception text, repr and line
of CLI output is scanned for them (``_secret_scan``: raw, percent-encoded, base64, the base64 of
``user:password`` a ``Proxy-Authorization`` header carries, and a marker every secret contains,
which catches a secret cut short).

- ``proxypool demo --json`` in a subprocess with ``PROXYPOOL_DEMO_APP_KEY``,
  ``PROXYPOOL_DEMO_PROXY_AUTH`` (relays demand the password) and its Scrapy log kept at DEBUG:
  stdout, stderr, the log (Scrapy, Twisted, urllib3 and proxypool records), every Scrapy stats
  value and the requests pool's stats.
- The requests adapter in-process, caplog at DEBUG on every logger: successes over http and https
  (CONNECT) through relays demanding the password, a wrong password (407), banned and killed
  relays, an exhausted pool, a rejected key and a provider echoing the key back; every exception
  (str, repr, args, attributes, traceback, chained causes), every record, ``pool.stats()`` and
  the reprs.
- The CLI as subprocesses: accounts (``list`` without ``--show-passwords`` hides passwords;
  with it, they show: the control that proves the scan can fail), ``set-password``, bad input,
  ``extract``, ``static-ips``, a rejected key, a provider echoing the key, a key pasted into
  ``--api-url``.
- Scrapy crawls in subprocesses at DEBUG: through relays demanding the password (one relay
  banned, one killed, one country given a wrong password: 407s until the retries run out, over
  http and https), and one whose provider echoes the key (the spider closes): log, output and
  every stats value.

Excluded, by design of the test servers only: the 'werkzeug' logger, pytest-httpserver's access
log of the stand-in provider, which prints the URL it received (the key is in GET query strings by
the provider's own API design). Everything else that holds a secret is a leak.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from _scrapy_crawls import ROOT, crawl_env, run_crawl
from _secret_scan import (
    ACCOUNT_PASSWORD,
    ACCOUNT_USER,
    APP_KEY,
    AUTH_SETTING,
    NEW_ACCOUNT_PASSWORD,
    PROXY_PASSWORD,
    PROXY_USER,
    WRONG_PASSWORD,
    CredentialedSource,
    basic_auth,
    exception_texts,
    leaks,
    needles,
    record_texts,
)
from pytest_httpserver import HTTPServer
from requests.adapters import HTTPAdapter
from werkzeug import Request as WerkzeugRequest
from werkzeug import Response as WerkzeugResponse

from proxypool import ProviderClient, ProxyPool, ProxyPoolError, wrap_session
from proxypool.adapters import (
    NoProxyAvailable,
    PoolBypassRefused,
    ProxyBanned,
    ProxyRequestFailed,
)
from proxypool.geo import Geo
from proxypool.models import Proxy
from proxypool.sim.target import TargetSite
from proxypool.sim.world import SimWorld

#: The password the simulator seeds its proxy account ``alice01`` with (the demo's gateway user).
DEMO_GATEWAY_PASSWORD = "Alice2024pw"

pytestmark = pytest.mark.timeout(120)

# Loggers whose DEBUG records must reach the scan: none may stop propagating to the root.
LOGGERS = ("proxypool", "scrapy_ext", "urllib3", "requests", "scrapy", "twisted", "py.warnings")
# The stand-in provider's access log (pytest-httpserver): it prints the URLs it received, and GET
# URLs carry the key by the provider's API design. The one exclusion.
EXCLUDED_LOGGERS = ("werkzeug",)
ODD_KEY = "Ké+y/s3cr3t=X%41&Z"  # percent-encoded in URLs: that form must not leak either
SEEDED_PASSWORDS = ("Alice2024pw", "BobSecret7", "Carol99x")  # the simulator's own accounts

Texts = list[tuple[str, str]]


def assert_no_leak(texts: Texts, looked_for: dict[str, str] | None = None) -> None:
    found = leaks(texts, looked_for)
    assert not found, "secrets leaked:\n" + "\n".join(found[:20])


def scanned_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if not r.name.startswith(EXCLUDED_LOGGERS)]


@pytest.fixture
def debug_everywhere(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog at DEBUG on the root and on every library logger, each propagating to the root."""
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
        assert logging.getLogger(name).propagate, name
    return caplog


@pytest.fixture(scope="module")
def world() -> Iterator[SimWorld]:
    """Simulator (key planted), relays demanding the proxy password, target site."""
    layout = {"US/California": 3, "DE": 1}
    with SimWorld(layout, pages=10, app_key=APP_KEY, relay_auth=(PROXY_USER, PROXY_PASSWORD)) as w:
        yield w


@pytest.fixture
def echo_provider(httpserver_ipv4: HTTPServer) -> HTTPServer:
    """A provider that puts the request it received (key, URL and body) into every answer,
    depending on the path: a code 3 message (with HTTP 401 or 200), a redirect to a URL carrying
    the key, an HTML page."""

    def answer(request: WerkzeugRequest) -> WerkzeugResponse:
        body = request.get_data(as_text=True)
        key = request.args.get("app_key") or (json.loads(body).get("app_key") if body else None)
        seen = f"key {key}, in {request.url} {body}"
        path = request.path
        if path.endswith("whitelist-account/list"):
            body = json.dumps({"code": 3, "msg": f"app_key invalid: {seen}", "data": None})
            return WerkzeugResponse(body, status=401, content_type="application/json")
        if path.endswith("user-product/list"):
            return WerkzeugResponse("", status=302, headers={"Location": request.url + "&x=1"})
        if path.endswith("ip/v3"):
            return WerkzeugResponse(f"<html><body>{seen}</body></html>", status=200)
        body = json.dumps({"code": 3, "msg": f"session has expired for {seen}", "data": None})
        return WerkzeugResponse(body, status=200, content_type="application/json")

    httpserver_ipv4.expect_request(re.compile(".*")).respond_with_handler(answer)
    return httpserver_ipv4


def echo_url(server: HTTPServer) -> str:
    return server.url_for("/openapi").rstrip("/")


class FixedSource:
    """A ``ProxySource`` handing out the same proxies on every extraction."""

    def __init__(self, *proxies: Proxy) -> None:
        self.proxies = proxies

    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        return list(self.proxies[:num])


# -- the scan itself can fail -----------------------------------------------------------------


def test_the_scan_finds_every_form_of_a_secret() -> None:
    import base64
    from urllib.parse import quote

    odd = ODD_KEY
    planted = {
        "raw key": f"GET /x?app_key={APP_KEY} HTTP/1.1",
        "cut short": "... app_key=APPKEYs3cr3tZ9q8",
        "upper-cased": PROXY_PASSWORD.upper(),
        "header": f"Proxy-Authorization: Basic {basic_auth(PROXY_USER, PROXY_PASSWORD)}",
        "urlsafe": base64.urlsafe_b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode(),
    }
    for what, text in planted.items():
        assert leaks([(what, text)]), what
    assert leaks([("quoted", quote(odd, safe=""))], needles([odd], ()))
    assert not leaks([("clean", f"proxy 127.0.0.1:8080 for {PROXY_USER}, app_key=***")])


# -- the demo ---------------------------------------------------------------------------------


def test_demo_at_debug_leaks_no_secret(tmp_path: Path) -> None:
    log, record = tmp_path / "demo.log", tmp_path / "record.json"
    proc = subprocess.run(
        [sys.executable, "-m", "proxypool", "demo", "--json"],
        cwd=ROOT,
        env=crawl_env(
            {
                "PROXYPOOL_DEMO_APP_KEY": APP_KEY,
                "PROXYPOOL_DEMO_PROXY_AUTH": f"{PROXY_USER}:{PROXY_PASSWORD}",
                "PROXYPOOL_DEMO_LOG": str(log),
                "PROXYPOOL_DEMO_LOG_LEVEL": "DEBUG",
                "PROXYPOOL_DEMO_RECORD": str(record),
                "PYTHONWARNINGS": "always",
            }
        ),
        capture_output=True,
        text=True,
        timeout=100,
    )
    log_text = log.read_text("utf-8", "replace")
    assert proc.returncode == 0, proc.stderr[-3000:] + log_text[-3000:]
    summary, recorded = json.loads(proc.stdout), json.loads(record.read_text())

    # It did what is scanned: pages through the relays (which demand the password), the key
    # used (and redacted) on the API's GET lines, DEBUG records of every layer in the log.
    assert summary["ok"] and summary["records"]["pages_ok"] > 0
    assert all(h["relay_port"] is not None for h in recorded["hits"])
    assert "app_key=***" in log_text
    for name in ("scrapy.core.engine", "urllib3.connectionpool", "proxypool.api", "scrapy_ext"):
        assert re.search(rf"\[{re.escape(name)}[\w.]*\] DEBUG", log_text), name
    scrapy_stats = recorded["stats"]
    assert len(scrapy_stats) == 3 and all(  # two spiders extracting, one on the gateway
        s["proxypool/requests"] > 0 for s in scrapy_stats.values()
    )
    assert recorded["pool"]["served"] > 0

    texts: Texts = [
        ("demo stdout", proc.stdout),
        ("demo stderr", proc.stderr),
        ("demo log", log_text),
        ("demo summary", json.dumps(summary)),
        ("demo stats and pool", json.dumps({"stats": scrapy_stats, "pool": recorded["pool"]})),
    ]
    for part, stats in scrapy_stats.items():
        texts += [(f"{part} stat {k}", f"{k} {v}") for k, v in stats.items()]
    # The gateway spider's account is one the simulator is seeded with (demo.GATEWAY_USER); its
    # password was looked up with the key and sent on every request: a secret like the others.
    assert_no_leak(texts, {**needles(), **needles([DEMO_GATEWAY_PASSWORD], ())})


# -- the requests adapter, in-process ---------------------------------------------------------


def test_requests_workload_at_debug_leaks_no_secret(
    world: SimWorld,
    tls_target_site: TargetSite,
    echo_provider: HTTPServer,
    debug_everywhere: pytest.LogCaptureFixture,
) -> None:
    caplog = debug_everywhere
    errors: list[BaseException] = []
    texts: Texts = []

    def expect_failure(call: Callable[[], object], kind: type[BaseException]) -> BaseException:
        with pytest.raises(kind) as info:
            call()
        errors.append(info.value)
        return info.value

    page = world.target.url_for("/page/1")
    tls_page = tls_target_site.url_for("/page/2")
    verify = str(tls_target_site.cert_path)
    us = world.relays_in("US/California")
    client = ProviderClient(APP_KEY, base_url=world.api_url, timeout=5)
    good = CredentialedSource(client, {"*": (PROXY_USER, PROXY_PASSWORD)})
    bad = CredentialedSource(client, {"*": (PROXY_USER, WRONG_PASSWORD)})
    pools: list[ProxyPool] = []

    def session_for(source: Any, geo: str, **kw: Any) -> requests.Session:
        pool = ProxyPool(source, geo=geo, batch=3, min_size=1, life=10)
        pools.append(pool)
        return wrap_session(requests.Session(), pool, pool_timeout=1.0, **kw)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ok = session_for(good, "US/California", max_proxy_retries=2)
            # Through relays demanding the password: http, and https through a CONNECT tunnel.
            responses = [ok.get(world.target.url_for(f"/page/{n}"), timeout=5) for n in range(4)]
            responses.append(ok.get(tls_page, timeout=5, verify=verify))
            assert [r.status_code for r in responses] == [200] * 5
            for r in responses:  # what a caller may print: no Proxy-Authorization in there
                texts.append(("response headers", f"{r.request.headers!r} {r.headers!r}"))
            hits = world.target.hits()
            assert hits and all(h.relay in us for h in hits)
            proxy = pools[0].get()
            assert proxy.password == PROXY_PASSWORD  # the pool's proxies carry it
            # The application's own Proxy-Authorization (its office proxy's, say) is dropped
            # before a pool proxy: inside the CONNECT tunnel it would reach the site.
            office = {"Proxy-Authorization": "Basic " + basic_auth(ACCOUNT_USER, ACCOUNT_PASSWORD)}
            response = ok.get(tls_page, timeout=5, verify=verify, headers=office)
            assert response.ok
            texts.append(("response headers", f"{response.request.headers!r}"))
            # An adapter slipped in past mount (the mapping replaced): refused at send time,
            # and the refusal quotes neither the URL's credentials nor its query string.
            slipped = session_for(good, "US/California")
            slipped.adapters = collections.OrderedDict(
                [(f"http://{ACCOUNT_USER}:", HTTPAdapter()), *slipped.adapters.items()]
            )
            secret_url = f"http://{ACCOUNT_USER}:{ACCOUNT_PASSWORD}@files.example/?key={APP_KEY}"
            expect_failure(lambda: slipped.get(secret_url, timeout=5), PoolBypassRefused)
            texts += [("repr(proxy)", repr(proxy)), ("str(proxy)", str(proxy))]

            # A wrong password: the relays answer 407, over http and in the CONNECT tunnel.
            wrong = session_for(bad, "DE", max_proxy_retries=1)
            expect_failure(lambda: wrong.get(page, timeout=5), ProxyRequestFailed)
            expect_failure(lambda: wrong.get(tls_page, timeout=5, verify=verify), ProxyPoolError)

            # Banned by the target on every relay (a pool of its own: bans are remembered).
            for name in us:
                world.ban_relay(name, 403)
            banned = session_for(good, "US/California", max_proxy_retries=2)
            expect_failure(lambda: banned.get(page, timeout=5), ProxyBanned)
            for name in us:
                world.unban_relay(name)
            # Every relay killed: each proxy refuses, then the pool has none left to give.
            for name in us:
                world.kill_relay(name)
            expect_failure(lambda: ok.get(page, timeout=5), ProxyRequestFailed)
            # Then the pool has none left, or a background top-up bought IPs that refuse too.
            expect_failure(lambda: ok.get(page, timeout=5), ProxyPoolError)
            # Proxies whose host urllib3 cannot parse (a broken source): its error quotes the
            # proxy URL, password included.
            broken = FixedSource(
                Proxy("a%b", 8080, username=PROXY_USER, password=PROXY_PASSWORD),
                Proxy("a..b", 8080, username=PROXY_USER, password=PROXY_PASSWORD),
            )
            unparsable = session_for(broken, "US", max_proxy_retries=1)
            expect_failure(lambda: unparsable.get(page, timeout=5), ProxyRequestFailed)
            # A geography no relay serves: the pool runs dry.
            expect_failure(lambda: session_for(good, "JP").get(page, timeout=5), NoProxyAvailable)

            # Proxy accounts: passwords go out in POST bodies, come back in the list.
            client.add_accounts({"inproc1": ACCOUNT_PASSWORD})
            client.change_password("inproc1", NEW_ACCOUNT_PASSWORD)
            texts.append(("repr(accounts)", repr(client.list_accounts())))
            texts.append(("simulator's call log", repr(world.simulator.calls())))

            # A rejected key, and a provider echoing the key back in every kind of answer.
            rejected = ProviderClient(APP_KEY + "Wrong", base_url=world.api_url, timeout=5)
            expect_failure(lambda: session_for(rejected, "DE").get(page), NoProxyAvailable)
            echo = ProviderClient(APP_KEY, base_url=echo_url(echo_provider), timeout=5, retries=0)
            expect_failure(lambda: session_for(echo, "DE").get(page), NoProxyAvailable)
            echo_calls = (echo.list_accounts, echo.list_products, echo.list_state_catalog)
            for call in (*echo_calls, lambda: echo.disable_accounts(ACCOUNT_USER)):
                expect_failure(call, ProxyPoolError)
            expect_failure(lambda: echo.extract("US", num=1, life=5), ProxyPoolError)
            expect_failure(
                lambda: ProviderClient(f"{APP_KEY} x", base_url=world.api_url), ValueError
            )
            in_url = f"{world.api_url}?app_key={APP_KEY}"
            expect_failure(lambda: ProviderClient(APP_KEY, base_url=in_url), ValueError)

            for pool in pools:
                stats = pool.stats()
                texts += [("repr(pool)", repr(pool)), ("pool.stats()", json.dumps(stats))]
            objects = (client, echo, good, bad, ok.get_adapter(page))
            texts += [(f"repr of a {type(obj).__name__}", repr(obj)) for obj in objects]
        finally:
            for name in us:
                world.revive_relay(name)
            for pool in pools:
                pool.close()
            client.close()

    records = scanned_records(caplog)
    for exc in errors:
        texts += exception_texts(exc)
    texts += record_texts(records)
    texts += [("warning", str(w.message)) for w in caught]
    # What the target sites received: no proxy credentials forwarded to them either.
    texts += [("target headers", repr(h.headers)) for h in world.target.hits()]
    texts += [("tls target headers", repr(h.headers)) for h in tls_target_site.hits()]
    assert_no_leak(texts)

    # The scan had work: every layer logged at DEBUG, the key went out (redacted in the log),
    # the relays refused the wrong password, and the echoing provider did echo the key (its own
    # access log, excluded above, shows it).
    names = {r.name for r in records if r.levelno == logging.DEBUG}
    for prefix in (
        "urllib3.connectionpool",
        "proxypool.adapters",
        "proxypool.pool",
        "proxypool.api",
    ):
        assert any(n.startswith(prefix) for n in names), (prefix, sorted(names))
    assert any("app_key=***" in r.getMessage() for r in records)
    assert any("407" in r.getMessage() for r in records if r.name == "proxypool.adapters")
    assert any(APP_KEY in r.getMessage() for r in caplog.records if r.name == "werkzeug")


# -- the CLI ----------------------------------------------------------------------------------


def cli(
    *argv: str,
    api_url: str,
    key: str = APP_KEY,
    stdin: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = crawl_env({"PROXYPOOL_APP_KEY": key, "PROXYPOOL_API_URL": api_url, "COLUMNS": "200"})
    env.update(extra_env or {})
    env["PYTHONIOENCODING"] = "utf-8"
    return subprocess.run(
        [sys.executable, "-m", "proxypool", *argv],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_cli_output_leaks_no_secret(world: SimWorld, echo_provider: HTTPServer) -> None:
    api = world.api_url
    runs: dict[str, subprocess.CompletedProcess[str]] = {}

    def run(label: str, *argv: str, code: int, **kw: Any) -> subprocess.CompletedProcess[str]:
        proc = cli(*argv, **{"api_url": api, **kw})
        assert proc.returncode == code, (label, proc.stdout, proc.stderr)
        runs[label] = proc
        return proc

    run("add", "accounts", "add", ACCOUNT_USER, "--remark", "t", code=0,
        stdin=ACCOUNT_PASSWORD + "\n")  # fmt: skip
    table = run("list", "accounts", "list", code=0)
    listed = run("list --json", "--json", "accounts", "list", code=0)
    assert ACCOUNT_USER in table.stdout
    assert ACCOUNT_USER in {a["username"] for a in json.loads(listed.stdout)}
    # The control: asked to, the CLI does show the passwords, and the scan sees them.
    shown = cli("accounts", "list", "--show-passwords", api_url=api)
    assert shown.returncode == 0 and leaks([("--show-passwords", shown.stdout)])
    assert all(p in shown.stdout for p in SEEDED_PASSWORDS)

    run("set-password", "accounts", "set-password", ACCOUNT_USER, "-", code=0,
        stdin=NEW_ACCOUNT_PASSWORD + "\n")  # fmt: skip
    run("add twice", "accounts", "add", f"{ACCOUNT_USER}:{ACCOUNT_PASSWORD}", code=1)
    run("bad password", "accounts", "add", f"{ACCOUNT_USER}x:{ACCOUNT_PASSWORD}!", code=2)
    run("bad new password", "accounts", "set-password", ACCOUNT_USER, ACCOUNT_PASSWORD + "-",
        code=2)  # fmt: skip
    run("extract", "extract", "--country", "US", "--num", "2", code=0)
    run("extract --json", "--json", "extract", "--country", "DE", "--num", "1", code=0)
    run("static-ips", "--json", "static-ips", code=0)
    run("rejected key", "accounts", "list", code=1, key=APP_KEY + "Wrong")
    echo = echo_url(echo_provider)
    for label, argv in {
        "echo: code 3": ("accounts", "list"),
        "echo: redirect": ("products",),
        "echo: html": ("extract", "--num", "1"),
        "echo: json code 3": ("--json", "locations", "countries"),
        "echo: post": ("accounts", "enable", ACCOUNT_USER),
    }.items():
        run(label, *argv, code=1, api_url=echo)
    # A provider echoing the body it received puts the submitted passwords into its message.
    run(
        "echo: add",
        "accounts",
        "add",
        "-",
        code=1,
        api_url=echo,
        stdin=f"{ACCOUNT_USER}:{ACCOUNT_PASSWORD}\n{ACCOUNT_USER}2:{NEW_ACCOUNT_PASSWORD}\n",
    )
    run(
        "echo: add --json",
        "--json",
        "accounts",
        "add",
        ACCOUNT_USER,
        code=1,
        api_url=echo,
        stdin=ACCOUNT_PASSWORD + "\n",
    )
    run("echo: set-password", "accounts", "set-password", ACCOUNT_USER, code=1, api_url=echo,
        stdin=NEW_ACCOUNT_PASSWORD + "\n")  # fmt: skip
    # A key with characters URLs encode: its percent-encoded echo must not show either.
    run("echo: odd key", "accounts", "list", code=1, api_url=echo, key=ODD_KEY)
    run("key in --api-url", "--api-url", f"{echo}?app_key={APP_KEY}", "usage", code=2)
    bad_demo = {"PROXYPOOL_DEMO_APP_KEY": f"{APP_KEY} x", "PROXYPOOL_DEMO_PROXY_AUTH": "u:p"}
    run("demo: bad key", "demo", code=2, extra_env=bad_demo)
    bad_demo = {"PROXYPOOL_DEMO_PROXY_AUTH": f"{PROXY_USER}:{PROXY_PASSWORD}!"}
    run("demo: bad proxy auth", "demo", code=2, extra_env=bad_demo)

    looked_for = needles(
        [
            APP_KEY,
            ODD_KEY,
            PROXY_PASSWORD,
            ACCOUNT_PASSWORD,
            NEW_ACCOUNT_PASSWORD,
            *SEEDED_PASSWORDS,
        ]
    )
    texts: Texts = []
    for label, proc in runs.items():
        texts += [(f"cli {label} stdout", proc.stdout), (f"cli {label} stderr", proc.stderr)]
    assert_no_leak(texts, looked_for)


# -- Scrapy crawls ----------------------------------------------------------------------------


def crawl_texts(result: Any, label: str) -> Texts:
    texts: Texts = [(f"{label} log", result.log), (f"{label} output", result.output)]
    texts += [(f"{label} stat {k}", f"{k} {v}") for k, v in result.stats.items()]
    texts += [(f"{label} errback", json.dumps(e)) for e in result.errors]
    return texts


def test_scrapy_crawl_at_debug_leaks_no_secret(
    world: SimWorld, tls_target_site: TargetSite, tmp_path: Path
) -> None:
    us = world.relays_in("US/California")
    world.ban_relay(us[0], 403)
    world.kill_relay(us[1])
    world.hand_out_dead = True  # the killed relay's IPs are handed out too (and rejected)
    try:
        pages = [{"url": world.target.url_for(f"/page/{n}")} for n in range(6)]
        wrong = [
            {"url": world.target.url_for("/page/7"), "meta": {"proxypool_geo": "DE"}},
            {"url": tls_target_site.url_for("/page/8"), "meta": {"proxypool_geo": "DE"}},
        ]
        result = run_crawl(
            tmp_path,
            start=[*pages, {"url": tls_target_site.url_for("/page/1")}, *wrong],
            geo="US/California",
            settings={
                "PROXYPOOL_SOURCE": "_secret_scan.CredentialedSource",
                "PROXYPOOL_APP_KEY": APP_KEY,
                "PROXYPOOL_API_URL": world.api_url,
                AUTH_SETTING: {
                    "*": f"{PROXY_USER}:{PROXY_PASSWORD}",
                    "DE": f"{PROXY_USER}:{WRONG_PASSWORD}",
                },
                "PROXYPOOL_BATCH": 6,
                "PROXYPOOL_MAX_PROXY_RETRIES": 2,
            },
        )
    finally:
        world.hand_out_dead = False
        world.unban_relay(us[0])
        world.revive_relay(us[1])
    assert result.returncode == 0, result
    # It went through the password-protected relays (ban, rejection of dead IPs and 407s on the
    # way), and the DE requests, with the wrong password, failed visibly.
    assert result.ok_paths() >= {f"/page/{n}" for n in range(6)} | {"/page/1"}, result
    assert result.stat("proxypool/bans") > 0 and result.stat("proxypool/rejected") > 0, result
    assert result.stat("proxypool/proxy_errors") > 0, result
    assert result.stat("proxypool/retry_exhausted") + len(result.errors) >= 2, result
    assert "DEBUG" in result.log and "app_key=***" in result.log
    assert_no_leak(crawl_texts(result, "crawl"))


def test_scrapy_crawl_with_a_provider_echoing_the_key_leaks_no_secret(
    echo_provider: HTTPServer, target_site: TargetSite, tmp_path: Path
) -> None:
    result = run_crawl(
        tmp_path,
        start=[{"url": target_site.url_for("/page/1")}],
        geo="US",
        settings={"PROXYPOOL_APP_KEY": APP_KEY, "PROXYPOOL_API_URL": echo_url(echo_provider)},
    )
    assert result.returncode == 0, result
    assert result.finish_reason == "proxypool_account_error", result
    assert target_site.hits() == []
    # The key was sent, so the provider echoed it back in its answer.
    assert any(APP_KEY in request.url for request, _ in echo_provider.log)
    assert_no_leak(crawl_texts(result, "crawl"))
