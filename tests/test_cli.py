"""Tests of the ``proxypool`` command line against pytest-httpserver standing in for the provider.

Every command runs as a real subprocess (``python -m proxypool``) in both output modes, checking
what reached the server (method, path, query or body) and what was printed. Edge cases (usage
errors, error mapping, the demo hook) call ``main()`` in-process, which runs the same code without
paying interpreter startup each time. The app_key used here is recognisable, and no test lets it
through to stdout or stderr.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _provider import closed_port, default_sigint, envelope
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from proxypool.cli import format_kb, main, render_bar

APP_KEY = "AppKeyS3cretQ7w9"
PREFIX = "/openapi"
ROOT = Path(__file__).resolve().parents[1]
HEAVY_MODULES = {"scrapy", "twisted"}
MASK = "••••"


# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy variables (requests would honour them), no stray PROXYPOOL_* settings, and a
    terminal wide enough that table rows stay on one line."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name.startswith("PROXYPOOL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def provider(httpserver_ipv4: HTTPServer) -> HTTPServer:
    """The stand-in provider, on 127.0.0.1 and a free port."""
    return httpserver_ipv4


@pytest.fixture
def api_url(provider: HTTPServer) -> str:
    return provider.url_for(PREFIX)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, api_url: str) -> None:
    """The CLI's configuration for in-process calls."""
    monkeypatch.setenv("PROXYPOOL_APP_KEY", APP_KEY)
    monkeypatch.setenv("PROXYPOOL_API_URL", api_url)


def serve(provider: HTTPServer, method: str, path: str, data: Any) -> None:
    provider.expect_request(path, method=method).respond_with_json(envelope(data))


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    query: dict[str, str]
    body: Any


def sent(provider: HTTPServer) -> list[Sent]:
    """Every request the provider received, in order."""
    return [
        Sent(
            request.method,
            request.path,
            request.args.to_dict(),
            request.get_json(silent=True) if request.method == "POST" else None,
        )
        for request, _ in provider.log
    ]


def get(path: str, **params: str) -> Sent:
    """The GET we expect: the key and language ride in the query string."""
    return Sent("GET", path, {"app_key": APP_KEY, "language": "en", **params}, None)


def post(path: str, **body: Any) -> Sent:
    """The POST we expect: the key and language ride in the JSON body, the query is empty."""
    return Sent("POST", path, {}, {"app_key": APP_KEY, "language": "en", **body})


@dataclass(frozen=True)
class Result:
    rc: int
    out: str
    err: str
    imported: frozenset[str] = frozenset()

    def assert_no_key(self) -> None:
        assert APP_KEY not in self.out
        assert APP_KEY not in self.err

    def json(self) -> Any:
        return json.loads(self.out)


def subprocess_env(api_url: str | None, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and not k.startswith("PROXYPOOL_")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONIOENCODING"] = "utf-8"
    env["COLUMNS"] = "200"
    env["PROXYPOOL_APP_KEY"] = APP_KEY
    if api_url is not None:
        env["PROXYPOOL_API_URL"] = api_url
    env.update(extra)
    return env


def command(*argv: str) -> list[str]:
    # -X importtime lists every module imported on stderr: run_cli checks Scrapy is never among
    # them and strips those lines before the test sees stderr.
    return [sys.executable, "-X", "importtime", "-m", "proxypool", *argv]


def split_importtime(stderr: str) -> tuple[str, frozenset[str]]:
    lines, imported = [], set()
    for line in stderr.splitlines(keepends=True):
        if line.startswith("import time:"):
            imported.add(line.rsplit("|", 1)[-1].strip())
        else:
            lines.append(line)
    return "".join(lines), frozenset(imported)


def run_cli(
    *argv: str, api_url: str | None, stdin: str | None = None, env: Mapping[str, str] | None = None
) -> Result:
    """Run ``python -m proxypool ARGV`` as a real subprocess."""
    proc = subprocess.run(
        command(*argv),
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=subprocess_env(api_url, **(env or {})),
        cwd=ROOT,
        timeout=60,
    )
    err, imported = split_importtime(proc.stderr)
    assert not {m.split(".")[0] for m in imported} & HEAVY_MODULES
    result = Result(proc.returncode, proc.stdout, err, imported)
    result.assert_no_key()
    return result


def call_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    """Run ``main(argv)`` in this process, capturing what it prints."""
    rc = main(list(argv))
    captured = capsys.readouterr()
    result = Result(rc, captured.out, captured.err)
    result.assert_no_key()
    return result


def row(out: str, first: str) -> list[str]:
    """The cells of the table row whose line contains ``first`` (split on runs of 2+ spaces)."""
    lines = [line for line in out.splitlines() if first in line]
    assert len(lines) == 1, f"expected one line with {first!r} in:\n{out}"
    return [cell.strip() for cell in lines[0].split("  ") if cell.strip()]


def one_error_line(result: Result) -> str:
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("proxypool: ")
    return lines[0]


# -- provider data --------------------------------------------------------------------------------

ACCOUNTS: dict[str, list[dict[str, Any]]] = {
    "list": [
        {
            "id": 1,
            "username": "alice01",
            "password": "PwAlice777",
            "created_at": "2024-05-01 10:20:30",
            "remark": "team a",
            "product_type": 9,
            "usage_flow": 1536,
            "limit_flow": 0,
            "status": 1,
        },
        {
            "id": 2,
            "username": "bob02",
            "password": "PwBob888",
            "created_at": "2024-05-02 08:00:00",
            "remark": "",
            "product_type": 11,
            "usage_flow": 3 * 1024 * 1024,
            "limit_flow": 10,
            "status": 0,
        },
    ]
}

ACCOUNTS_JSON = [
    {
        "id": 1,
        "username": "alice01",
        "status": 1,
        "status_name": "ENABLED",
        "enabled": True,
        "product_type": 9,
        "product_type_name": "DYNAMIC_RESIDENTIAL_TRAFFIC",
        "usage_flow": 1536,
        "limit_flow": 0,
        "remark": "team a",
        "created_at": "2024-05-01T10:20:30+00:00",
    },
    {
        "id": 2,
        "username": "bob02",
        "status": 0,
        "status_name": "DISABLED",
        "enabled": False,
        "product_type": 11,
        "product_type_name": "DYNAMIC_RESIDENTIAL_IP",
        "usage_flow": 3 * 1024 * 1024,
        "limit_flow": 10,
        "remark": "",
        "created_at": "2024-05-02T08:00:00+00:00",
    },
]


def expiry_year(n: int) -> int:
    """Package 1 expired long ago; the others run until 2099."""
    return 2025 if n == 1 else 2099


def product(n: int) -> dict[str, Any]:
    return {
        "id": n,
        "created_at": f"2024-0{n}-01 09:00:00",
        "expired_at": f"{expiry_year(n)}-0{n}-01 00:00:00",
        "product_type": 9,
        "trade_no": f"T2024000{n}",
        "order": {
            "created_at": f"2024-0{n}-01 08:59:00",
            "pay_at": f"2024-0{n}-01 09:00:00",
            "title": f"Traffic {n} GB",
        },
    }


def product_json(n: int) -> dict[str, Any]:
    return {
        "id": n,
        "trade_no": f"T2024000{n}",
        "product_type": 9,
        "product_type_name": "DYNAMIC_RESIDENTIAL_TRAFFIC",
        "created_at": f"2024-0{n}-01T09:00:00+00:00",
        "expired_at": f"{expiry_year(n)}-0{n}-01T00:00:00+00:00",
        "expired": n == 1,
        "order": {
            "title": f"Traffic {n} GB",
            "created_at": f"2024-0{n}-01T08:59:00+00:00",
            "pay_at": f"2024-0{n}-01T09:00:00+00:00",
        },
    }


STATES = {
    "list": [
        {
            "country_code": "US",
            "name_en": "United States",
            "name_zh_cn": "美国",
            "continent_code": "NA",
            "items": [
                {"state": "California", "country_code": "US", "continent_code": "NA"},
                {"state": "NewYork", "country_code": "US", "continent_code": "NA"},
            ],
        },
        {
            "country_code": "DE",
            "name_en": "Germany",
            "name_zh_cn": "德国",
            "continent_code": "EU",
            "items": [{"state": "Berlin", "country_code": "DE", "continent_code": "EU"}],
        },
    ]
}

STATIC_IPS: dict[str, Any] = {
    "list": [
        {
            "ip": "5.6.7.8",
            "port": 3128,
            "country_code": "DE",
            "product_type": 25,
            "status": 1,
            "trade_no": "T99",
            "expired_at": "2025-02-01 00:00:00",
            "username": "su1",
            "password": "StaticPw55",
        }
    ],
    "page": 1,
    "total_count": 1,
}

BOTH_MODES = pytest.mark.parametrize("as_json", [False, True], ids=["human", "json"])


def mode(as_json: bool) -> tuple[str, ...]:
    return ("--json",) if as_json else ()


# -- every command, as a subprocess, in both output modes -----------------------------------------


@pytest.mark.parametrize("show", [False, True], ids=["hidden", "shown"])
@BOTH_MODES
def test_accounts_list(provider: HTTPServer, api_url: str, as_json: bool, show: bool) -> None:
    serve(provider, "GET", f"{PREFIX}/whitelist-account/list", ACCOUNTS)
    flags = ("--show-passwords",) if show else ()

    result = run_cli(*mode(as_json), "accounts", "list", *flags, api_url=api_url)

    assert result.rc == 0, result.err
    assert sent(provider) == [get(f"{PREFIX}/whitelist-account/list")]
    if as_json:
        expected = [dict(a) for a in ACCOUNTS_JSON]
        if show:
            expected[0]["password"] = "PwAlice777"
            expected[1]["password"] = "PwBob888"
        assert result.json() == expected
    else:
        alice, bob = row(result.out, "alice01"), row(result.out, "bob02")
        assert alice == [
            "alice01",
            "PwAlice777" if show else MASK,
            "enabled",
            "dynamic traffic",
            "1.50 MB",
            "unlimited",
            "team a",
            "2024-05-01",
        ]
        assert bob[:6] == [
            "bob02",
            "PwBob888" if show else MASK,
            "disabled",
            "dynamic IP",
            "3.00 GB",
            "10 GB",
        ]
        assert "2 accounts" in result.out
    if not show:
        assert "PwAlice777" not in result.out + result.err
        assert "PwBob888" not in result.out + result.err


@BOTH_MODES
def test_accounts_add(provider: HTTPServer, api_url: str, as_json: bool) -> None:
    serve(provider, "POST", f"{PREFIX}/whitelist-account/add", None)

    result = run_cli(
        *mode(as_json),
        "accounts",
        "add",
        "carol3:PwCarol1",
        "dave4:PwDave2",
        "--remark",
        "batch 7",
        "--product-type",
        "11",
        api_url=api_url,
    )

    assert result.rc == 0, result.err
    assert sent(provider) == [
        post(
            f"{PREFIX}/whitelist-account/add",
            accounts="carol3:PwCarol1,dave4:PwDave2",
            remark="batch 7",
            product_type=11,
        )
    ]
    if as_json:
        assert result.json() == {
            "ok": True,
            "action": "add",
            "accounts": ["carol3", "dave4"],
            "note": None,
        }
    else:
        assert result.out == "Added 2 accounts (dynamic residential ip): carol3, dave4\n"
    assert "PwCarol1" not in result.out + result.err
    # Still works, but says why the stdin forms are safer (the password is in argv now).
    assert result.err.startswith("proxypool: warning: a password on the command line")
    assert "accounts add -" in result.err


ADD_PATH = f"{PREFIX}/whitelist-account/add"


@BOTH_MODES
def test_accounts_add_reads_passwords_from_stdin(
    provider: HTTPServer, api_url: str, as_json: bool
) -> None:
    """``accounts add USER...``: one password per line on stdin, in the order of the users,
    as ``set-password USER -`` reads its one; nothing secret in argv, no warning."""
    serve(provider, "POST", ADD_PATH, None)

    result = run_cli(
        *mode(as_json), "accounts", "add", "carol3", "dave4", "--product-type", "11",
        stdin="PwCarol1\nPwDave2\n", api_url=api_url,
    )  # fmt: skip

    assert result.rc == 0, result.err
    assert sent(provider) == [
        post(ADD_PATH, accounts="carol3:PwCarol1,dave4:PwDave2", remark="", product_type=11)
    ]
    assert "PwCarol1" not in result.out + result.err
    assert result.err == ""


def test_accounts_add_dash_reads_user_pass_lines(provider: HTTPServer, api_url: str) -> None:
    serve(provider, "POST", ADD_PATH, None)
    lines = "# batch 7\ncarol3:PwCarol1\n\n  dave4:PwDave2  \r\n"

    result = run_cli("accounts", "add", "-", "--remark", "b7", stdin=lines, api_url=api_url)

    assert result.rc == 0, result.err
    assert sent(provider) == [
        post(ADD_PATH, accounts="carol3:PwCarol1,dave4:PwDave2", remark="b7", product_type=9)
    ]
    assert result.out == "Added 2 accounts (dynamic residential traffic): carol3, dave4\n"
    assert result.err == ""


@pytest.mark.parametrize(
    ("argv", "stdin", "said"),
    [
        (("carol3",), "", "no password for carol3 on stdin"),
        (("carol3", "dave4"), "PwCarol1\n", "no password for dave4 on stdin"),
        (("carol3",), "Pw Carol!\n", "account 1 (carol3): the password may contain only"),
        (("-",), "", "no USER:PASS line on stdin"),
        (("-",), "carol3\n", "line 1: expected USER:PASS"),
        (("-",), "carol3:PwCarol1\ncarol3:PwOther2\n", "username carol3 given twice"),
        (("-", "dave4"), "carol3:PwCarol1\n", "'-' reads every account from stdin"),
        (("carol3",), "x" * 5_000_000, "longer than"),
        (("-",), "carol3:PwCarol1\n" * 400_000, "more than"),
    ],
    ids=[
        "no-line", "one-line-for-two", "bad-password", "dash-empty", "dash-no-colon",
        "dash-twice", "dash-and-user", "huge-line", "huge-input",
    ],
)  # fmt: skip
def test_accounts_add_stdin_errors_send_nothing(
    provider: HTTPServer, api_url: str, argv: tuple[str, ...], stdin: str, said: str
) -> None:
    result = run_cli("accounts", "add", *argv, stdin=stdin, api_url=api_url)

    assert result.rc == 2, result.err
    assert said in one_error_line(result)
    assert provider.log == []
    assert "PwCarol1" not in result.err and "PwOther2" not in result.err


def test_accounts_add_help_documents_the_stdin_forms() -> None:
    result = run_cli("accounts", "add", "--help", api_url=None)

    assert result.rc == 0
    text = " ".join(result.out.split())
    assert "accounts add USER" in text and "stdin" in text
    assert "visible to other users" in text  # why USER:PASS in argv is the less safe form


def test_set_password_from_huge_stdin_is_refused(provider: HTTPServer, api_url: str) -> None:
    result = run_cli(
        "accounts", "set-password", "alice01", "-", stdin="y" * 5_000_000, api_url=api_url
    )

    assert result.rc == 2
    assert "longer than" in one_error_line(result)
    assert provider.log == []


@BOTH_MODES
def test_accounts_list_masks_a_password_written_into_a_remark(
    provider: HTTPServer, api_url: str, as_json: bool
) -> None:
    """Without --show-passwords no password shows, not even one a remark repeats."""
    accounts = json.loads(json.dumps(ACCOUNTS))
    accounts["list"][0]["remark"] = "pw PwAlice777 (team a)"
    accounts["list"][1]["remark"] = "same as alice: PwAlice777"
    serve(provider, "GET", f"{PREFIX}/whitelist-account/list", accounts)

    result = run_cli(*mode(as_json), "accounts", "list", api_url=api_url)

    assert result.rc == 0, result.err
    assert "PwAlice777" not in result.out
    if as_json:
        assert result.json()[0]["remark"] == f"pw {MASK} (team a)"
        assert result.json()[1]["remark"] == f"same as alice: {MASK}"
    shown = run_cli(*mode(as_json), "accounts", "list", "--show-passwords", api_url=api_url)
    assert "pw PwAlice777 (team a)" in shown.out


@pytest.mark.parametrize(
    ("action", "past", "delayed"),
    [("delete", "Deleted", True), ("enable", "Enabled", False), ("disable", "Disabled", True)],
)
@BOTH_MODES
def test_accounts_bulk_writes(
    provider: HTTPServer, api_url: str, as_json: bool, action: str, past: str, delayed: bool
) -> None:
    serve(provider, "POST", f"{PREFIX}/whitelist-account/{action}", None)

    result = run_cli(*mode(as_json), "accounts", action, "alice01", "bob02", api_url=api_url)

    assert result.rc == 0, result.err
    assert sent(provider) == [
        post(f"{PREFIX}/whitelist-account/{action}", accounts="alice01,bob02")
    ]
    delay_said = "about 5 minutes"
    if as_json:
        document = result.json()
        assert document["ok"] is True
        assert document["action"] == action
        assert document["accounts"] == ["alice01", "bob02"]
        assert (delay_said in (document["note"] or "")) is delayed
        assert (delay_said in result.err) is delayed  # and told to the person at the terminal
    else:
        assert result.out.splitlines()[0] == f"{past}: alice01, bob02"
        assert (delay_said in result.out) is delayed
        assert result.err == ""


@BOTH_MODES
def test_accounts_set_password(provider: HTTPServer, api_url: str, as_json: bool) -> None:
    serve(provider, "POST", f"{PREFIX}/whitelist-account/change-password", None)

    result = run_cli(
        *mode(as_json), "accounts", "set-password", "alice01", "NewPw2024", api_url=api_url
    )

    assert result.rc == 0, result.err
    assert sent(provider) == [
        post(f"{PREFIX}/whitelist-account/change-password", account="alice01", password="NewPw2024")
    ]
    assert "NewPw2024" not in result.out + result.err
    assert "warning: a password on the command line" in result.err
    said = result.err if as_json else result.out
    assert "about 5 minutes" in said
    assert "old password" in said
    if as_json:
        assert result.json()["action"] == "set-password"
        assert result.json()["accounts"] == ["alice01"]
    else:
        assert result.out.splitlines()[0] == "Password of alice01 changed."


@BOTH_MODES
def test_accounts_set_remark(provider: HTTPServer, api_url: str, as_json: bool) -> None:
    serve(provider, "POST", f"{PREFIX}/whitelist-account/change-remark", None)

    result = run_cli(
        *mode(as_json), "accounts", "set-remark", "bob02", "crawler 北京", api_url=api_url
    )

    assert result.rc == 0, result.err
    assert sent(provider) == [
        post(f"{PREFIX}/whitelist-account/change-remark", account="bob02", remark="crawler 北京")
    ]
    if as_json:
        assert result.json() == {
            "ok": True,
            "action": "set-remark",
            "accounts": ["bob02"],
            "note": None,
        }
    else:
        assert result.out == "Remark of bob02 changed.\n"


@BOTH_MODES
def test_accounts_set_limit(provider: HTTPServer, api_url: str, as_json: bool) -> None:
    serve(provider, "POST", f"{PREFIX}/whitelist-account/change-limit", None)

    result = run_cli(*mode(as_json), "accounts", "set-limit", "bob02", "25", api_url=api_url)

    assert result.rc == 0, result.err
    assert sent(provider) == [
        post(f"{PREFIX}/whitelist-account/change-limit", account="bob02", limit=25)
    ]
    if as_json:
        assert result.json()["action"] == "set-limit"
        assert "5 minutes" in result.err
    else:
        assert result.out.splitlines()[0] == "Traffic limit of bob02 set to 25 GB."


USAGE = {
    "list": [
        {"day": "2024-05-01", "flow": 512},
        # 2024-05-02 left out by the provider: the chart shows it as an empty day
        {"day": "2024-05-03", "flow": 2 * 1024 * 1024},
        {"day": "2024-05-04", "flow": 1024 * 1024},
    ]
}


def bar_cells(line: str) -> float:
    eighths = " ▏▎▍▌▋▊▉"
    return line.count("█") + sum(eighths.index(ch) / 8 for ch in line if ch in eighths[1:])


@BOTH_MODES
def test_usage(provider: HTTPServer, api_url: str, as_json: bool) -> None:
    serve(provider, "GET", f"{PREFIX}/user-usage-flow/total", USAGE)

    result = run_cli(
        *mode(as_json),
        "usage",
        "--start",
        "2024-05-01",
        "--end",
        "2024-05-04 12:00:00",
        "--username",
        "alice01",
        "--product-type",
        "9",
        api_url=api_url,
    )

    assert result.rc == 0, result.err
    assert sent(provider) == [
        get(
            f"{PREFIX}/user-usage-flow/total",
            start_time="2024-05-01 00:00:00",
            end_time="2024-05-04 12:00:00",
            username="alice01",
            product_type="9",
        )
    ]
    if as_json:
        assert result.json() == [
            {"day": "2024-05-01", "flow": 512},
            {"day": "2024-05-03", "flow": 2 * 1024 * 1024},
            {"day": "2024-05-04", "flow": 1024 * 1024},
        ]
        return
    days = {line[:10]: line for line in result.out.splitlines() if line.startswith("2024-05-0")}
    assert list(days) == ["2024-05-01", "2024-05-02", "2024-05-03", "2024-05-04"]
    assert days["2024-05-01"].endswith(" 512 KB")
    assert days["2024-05-02"].endswith(" 0 KB")
    assert days["2024-05-03"].endswith(" 2.00 GB")
    assert days["2024-05-04"].endswith(" 1.00 GB")
    assert days["2024-05-01"].startswith("2024-05-01 Wed")
    peak, half = bar_cells(days["2024-05-03"]), bar_cells(days["2024-05-04"])
    assert peak >= 10
    assert abs(half - peak / 2) <= 1 / 8
    assert 0 < bar_cells(days["2024-05-01"]) <= 1 / 8  # tiny, yet visible
    assert bar_cells(days["2024-05-02"]) == 0
    assert "Total 3.00 GB over 4 days." in result.out


@BOTH_MODES
def test_products_walks_every_page(provider: HTTPServer, api_url: str, as_json: bool) -> None:
    path = f"{PREFIX}/user-product/list"
    paging = {"page_size": 1, "total_count": 2, "total_page": 2}
    provider.expect_ordered_request(path).respond_with_json(
        envelope({"list": [product(1)], "page": 1, **paging})
    )
    provider.expect_ordered_request(path).respond_with_json(
        envelope({"list": [product(2)], "page": 2, **paging})
    )

    result = run_cli(*mode(as_json), "products", "--product-type", "9", api_url=api_url)

    assert result.rc == 0, result.err
    assert sent(provider) == [
        get(path, size="20", product_type="9", page="1"),
        get(path, size="20", product_type="9", page="2"),
    ]
    if as_json:
        assert result.json() == [product_json(1), product_json(2)]
    else:
        assert row(result.out, "T20240001") == [
            "T20240001",
            "dynamic traffic",
            "Traffic 1 GB",
            "2024-01-01 09:00",
            "2025-01-01 00:00 (expired)",
        ]
        assert row(result.out, "T20240002")[-1] == "2099-02-01 00:00"
        assert "2 packages, 1 expired" in result.out
        assert "2 packages" in result.out


CITIES = {
    "list": [
        {
            "country_code": "US",
            "name_en": "United States",
            "name_zh_cn": "美国",
            "continent_code": "NA",
            "items": [
                {"city": "LosAngeles", "state": "California", "country_code": "US"},
                {"city": "NewYork", "state": "NewYork", "country_code": "US"},
            ],
        }
    ]
}


@BOTH_MODES
def test_extract(provider: HTTPServer, api_url: str, as_json: bool) -> None:
    # Nested lists and {ip, port} objects, as deployments send them.
    data = {"list": [["10.0.0.1:8001", "10.0.0.2:8002"], {"ip": "10.0.0.3", "port": 8003}]}
    serve(provider, "GET", f"{PREFIX}/ip/dynamic-states", STATES)
    serve(provider, "GET", f"{PREFIX}/ip/dynamic-citys", CITIES)
    serve(provider, "GET", f"{PREFIX}/ip/v3", data)

    result = run_cli(
        *mode(as_json),
        "extract",
        "--country",
        "us",
        "--state",
        "california",
        "--city",
        "losangeles",
        "--num",
        "3",
        "--life",
        "30",
        "--ep",
        "HK",
        api_url=api_url,
    )

    assert result.rc == 0, result.err
    # The place is checked against the location lists first, and sent in the provider's spelling.
    assert sent(provider) == [
        get(f"{PREFIX}/ip/dynamic-states"),
        get(f"{PREFIX}/ip/dynamic-citys"),
        get(
            f"{PREFIX}/ip/v3",
            cc="US",
            state="California",
            city="LosAngeles",
            num="3",
            life="30",
            format="json",
            ep="hk",
        ),
    ]
    if as_json:
        assert result.json() == [
            {"address": "10.0.0.1:8001", "host": "10.0.0.1", "port": 8001},
            {"address": "10.0.0.2:8002", "host": "10.0.0.2", "port": 8002},
            {"address": "10.0.0.3:8003", "host": "10.0.0.3", "port": 8003},
        ]
    else:
        assert result.out == "10.0.0.1:8001\n10.0.0.2:8002\n10.0.0.3:8003\n"
    assert result.err == ""


def test_extract_unknown_state_pays_nothing(provider: HTTPServer, api_url: str) -> None:
    serve(provider, "GET", f"{PREFIX}/ip/dynamic-states", STATES)

    result = run_cli("extract", "--country", "US", "--state", "Californa", api_url=api_url)

    assert result.rc == 2
    assert "California" in one_error_line(result)  # the close match is suggested
    assert [s.path for s in sent(provider)] == [f"{PREFIX}/ip/dynamic-states"]


@BOTH_MODES
def test_locations_countries(provider: HTTPServer, api_url: str, as_json: bool) -> None:
    serve(provider, "GET", f"{PREFIX}/ip/dynamic-states", STATES)

    result = run_cli(*mode(as_json), "locations", "countries", api_url=api_url)

    assert result.rc == 0, result.err
    assert sent(provider) == [get(f"{PREFIX}/ip/dynamic-states")]
    if as_json:
        assert result.json() == [
            {
                "country_code": "US",
                "name_en": "United States",
                "name_zh_cn": "美国",
                "continent_code": "NA",
                "states": ["California", "NewYork"],
            },
            {
                "country_code": "DE",
                "name_en": "Germany",
                "name_zh_cn": "德国",
                "continent_code": "EU",
                "states": ["Berlin"],
            },
        ]
    else:
        assert row(result.out, "United States") == ["US", "United States", "NA", "2"]
        assert row(result.out, "Germany") == ["DE", "Germany", "EU", "1"]


@BOTH_MODES
def test_locations_states(provider: HTTPServer, api_url: str, as_json: bool) -> None:
    serve(provider, "GET", f"{PREFIX}/ip/dynamic-states/search", {"list": ["California", "Texas"]})

    result = run_cli(*mode(as_json), "locations", "states", "us", api_url=api_url)

    assert result.rc == 0, result.err
    assert sent(provider) == [get(f"{PREFIX}/ip/dynamic-states/search", country_code="US")]
    if as_json:
        assert result.json() == ["California", "Texas"]
    else:
        assert result.out == "California\nTexas\n"


@BOTH_MODES
def test_locations_cities(provider: HTTPServer, api_url: str, as_json: bool) -> None:
    serve(provider, "GET", f"{PREFIX}/ip/dynamic-citys/search", {"list": ["LosAngeles", "Fresno"]})

    result = run_cli(*mode(as_json), "locations", "cities", "US", "California", api_url=api_url)

    assert result.rc == 0, result.err
    assert sent(provider) == [
        get(f"{PREFIX}/ip/dynamic-citys/search", country_code="US", state="California")
    ]
    if as_json:
        assert result.json() == ["LosAngeles", "Fresno"]
    else:
        assert result.out == "LosAngeles\nFresno\n"


@pytest.mark.parametrize(
    ("search", "argv", "says"),
    [
        ("dynamic-states/search", ["states", "UX"], ["unknown country 'UX'", "did you mean US?"]),
        (
            "dynamic-citys/search",
            ["cities", "US", "Californa"],
            ["unknown state 'Californa' in US", "did you mean California?"],
        ),
        ("dynamic-citys/search", ["cities", "ZZ", "Anywhere"], ["unknown country 'ZZ'"]),
    ],
    ids=["states-country", "cities-state", "cities-country"],
)
@BOTH_MODES
def test_locations_of_an_unknown_place_is_an_error_with_suggestions(
    provider: HTTPServer, api_url: str, as_json: bool, search: str, argv: list[str], says: list[str]
) -> None:
    """As for extract: an unknown place is an error (exit 2) naming it, with close matches,
    not an empty list and exit 0."""
    serve(provider, "GET", f"{PREFIX}/ip/{search}", {"list": []})
    serve(provider, "GET", f"{PREFIX}/ip/dynamic-states", STATES)

    result = run_cli(*mode(as_json), "locations", *argv, api_url=api_url)

    assert result.rc == 2
    line = one_error_line(result)
    assert all(words in line for words in says), line
    assert result.out == ""


def test_locations_states_of_a_known_country_without_states_is_not_an_error(
    provider: HTTPServer, api_url: str
) -> None:
    serve(provider, "GET", f"{PREFIX}/ip/dynamic-states/search", {"list": []})
    serve(provider, "GET", f"{PREFIX}/ip/dynamic-states", STATES)

    result = run_cli("locations", "states", "de", api_url=api_url)

    assert result.rc == 0, result.err
    assert result.out == "No states listed for DE.\n"


@BOTH_MODES
def test_static_ips(provider: HTTPServer, api_url: str, as_json: bool) -> None:
    # Served without the path prefix, as the provider documents it.
    serve(provider, "GET", "/ip/get-static-ip", STATIC_IPS)

    result = run_cli(
        *mode(as_json),
        "static-ips",
        "--country",
        "de",
        "--product-type",
        "25",
        "--status",
        "1",
        "--trade-no",
        "T99",
        api_url=api_url,
    )

    assert result.rc == 0, result.err
    assert sent(provider) == [
        get(
            "/ip/get-static-ip",
            page="1",
            size="20",
            country_code="DE",
            product_type="25",
            trade_no="T99",
            status="1",
        )
    ]
    assert "StaticPw55" not in result.out
    if as_json:
        document = result.json()
        assert document["page"] == 1
        assert document["total_count"] == 1
        (item,) = document["items"]
        assert {k: v for k, v in item.items() if k != "raw"} == {
            "ip": "5.6.7.8",
            "port": 3128,
            "country_code": "DE",
            "product_type": 25,
            "product_type_name": "STATIC_RESIDENTIAL_IP",
            "status": 1,
            "status_name": "VALID",
            "trade_no": "T99",
            "expired_at": "2025-02-01T00:00:00+00:00",
        }
        assert item["raw"] == {**STATIC_IPS["list"][0], "password": MASK}
    else:
        assert "order T99 (1 IP)" in result.out
        assert row(result.out, "5.6.7.8:3128") == [
            "5.6.7.8:3128",
            "DE",
            "residential",
            "valid",
            "2025-02-01 00:00",
        ]
        assert "Page 1: 1 of 1 static IPs" in result.out


# The provider's own example of a trade number (28 digits), and the widest values of each column.
TRADE_A = "2022051312134339861461465434"
TRADE_B = "2023110809554412345678901234"


def _static_entry(n: int, trade_no: str | None, status: int, kind: int) -> dict[str, Any]:
    return {
        "ip": f"203.113.152.{240 + n}",
        "port": 31280 + n,
        "country_code": "US",
        "product_type": kind,
        "status": status,
        "trade_no": trade_no,
        "expired_at": "2031-02-01 00:00:00",
        "password": "StaticPw55",
    }


@pytest.mark.parametrize("width", [80, 100])
def test_static_ips_read_at_80_and_100_columns(
    provider: HTTPServer, api_url: str, width: int
) -> None:
    """Nothing cut (no "…"), no line wider than the terminal, every address, order number, type
    and status whole on its line (a 28-digit trade number once cut the table at 100)."""
    entries = [
        _static_entry(0, TRADE_A, 3, 25),  # expiring soon, residential
        _static_entry(1, TRADE_A, 4, 14),  # maintenance, datacenter
        _static_entry(2, TRADE_B, 1, 25),
        _static_entry(3, None, 2, 14),
    ]
    serve(provider, "GET", "/ip/get-static-ip", {"list": entries, "page": 1, "total_count": 4})

    result = run_cli("static-ips", api_url=api_url, env={"COLUMNS": str(width)})

    assert result.rc == 0, result.err
    lines = result.out.splitlines()
    assert max(len(line) for line in lines) <= width, result.out
    assert "…" not in result.out
    assert "StaticPw55" not in result.out
    for header in (f"order {TRADE_A} (2 IPs)", f"order {TRADE_B} (1 IP)", "no order number (1 IP)"):
        assert header in lines
    assert row(result.out, "203.113.152.240:31280") == [
        "203.113.152.240:31280",
        "US",
        "residential",
        "expiring soon",
        "2031-02-01 00:00",
    ]
    assert row(result.out, "203.113.152.241:31281")[2:4] == ["datacenter", "maintenance"]
    assert row(result.out, "203.113.152.243:31283")[2:4] == ["datacenter", "invalid"]
    # Each order's IPs are listed under it.
    assert lines.index(f"order {TRADE_A} (2 IPs)") < lines.index(f"order {TRADE_B} (1 IP)")


def test_static_ips_show_odd_provider_values_whole_and_as_sent(
    provider: HTTPServer, api_url: str
) -> None:
    """An IPv6 address too long for its column at 80 columns is folded, not cut; provider text
    that looks like rich markup or an emoji code is printed as sent, not styled away."""
    ipv6 = "2001:db8:85a3:1234:5678:8a2e:370:7334"
    entry = {**_static_entry(0, TRADE_A, 3, 25), "ip": ipv6, "country_code": "[red]X:1234:"}
    serve(provider, "GET", "/ip/get-static-ip", {"list": [entry], "page": 1, "total_count": 1})

    result = run_cli("static-ips", api_url=api_url, env={"COLUMNS": "80"})

    assert result.rc == 0, result.err
    assert max(len(line) for line in result.out.splitlines()) <= 80, result.out
    assert "…" not in result.out
    assert "[red]X:1234:" in result.out
    lines = result.out.splitlines()
    body = lines[lines.index(next(line for line in lines if line.startswith("─"))) + 1 :]
    body = body[: body.index("")]
    address = "".join(line.split()[0] for line in body if line.strip())
    assert address == f"[{ipv6}]:31280"  # folded over lines, nothing dropped


def test_version() -> None:
    from proxypool import __version__

    result = run_cli("--version", api_url=None)

    assert (result.rc, result.out) == (0, f"proxypool {__version__}\n")


# -- startup, exit codes and signals as a subprocess ----------------------------------------------


def test_help_starts_without_heavy_imports() -> None:
    result = run_cli("--help", api_url=None)

    assert result.rc == 0
    assert result.out.startswith("usage: proxypool")
    for name in ("accounts", "usage", "products", "extract", "locations", "static-ips", "demo"):
        assert name in result.out
    assert "proxypool.cli" in result.imported  # the import log was read at all
    top_level = {m.split(".")[0] for m in result.imported}
    assert not top_level & (HEAVY_MODULES | {"rich"})


def test_api_error_exits_1_with_one_line_and_no_key(provider: HTTPServer, api_url: str) -> None:
    # The provider echoes the key back in its message, literally and as a query parameter.
    provider.expect_request(f"{PREFIX}/whitelist-account/list").respond_with_json(
        {"code": 3, "msg": f"session has expired: {APP_KEY} (app_key={APP_KEY})"}, status=401
    )

    result = run_cli("accounts", "list", api_url=api_url)

    assert result.rc == 1
    assert result.out == ""
    line = one_error_line(result)
    assert "code 3" in line
    assert "session has expired" in line
    assert "PROXYPOOL_APP_KEY" in line


def test_unreachable_provider_exits_1() -> None:
    port = closed_port()
    result = run_cli("accounts", "enable", "alice01", api_url=f"http://127.0.0.1:{port}/x")

    assert result.rc == 1
    assert one_error_line(result).endswith(
        f"could not connect to 127.0.0.1:{port} (connection refused)"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["usage", "--product-type", "12"], "argument --product-type: must be one of 9"),
        (["accounts", "add", "alice01:Pw!secret"], "account 1 (alice01): the password may"),
    ],
    ids=["bad-product-type", "bad-password"],
)
def test_usage_error_exits_2_and_sends_nothing(
    provider: HTTPServer, api_url: str, argv: list[str], message: str
) -> None:
    result = run_cli(*argv, api_url=api_url)

    assert result.rc == 2
    assert message in result.err
    assert "Traceback" not in result.err
    assert "Pw!secret" not in result.err
    assert provider.log == []


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("PROXYPOOL_APP_KEY", "set the environment variable PROXYPOOL_APP_KEY"),
        (
            "PROXYPOOL_API_URL",
            "pass --api-url URL or set the environment variable PROXYPOOL_API_URL",
        ),
    ],
)
def test_missing_environment_exits_2(
    provider: HTTPServer, api_url: str, missing: str, message: str
) -> None:
    env = subprocess_env(api_url)
    del env[missing]
    proc = subprocess.run(
        command("accounts", "list"), capture_output=True, text=True, env=env, timeout=60
    )
    err, _ = split_importtime(proc.stderr)

    assert proc.returncode == 2
    assert message in one_error_line(Result(proc.returncode, proc.stdout, err))
    assert provider.log == []


def test_api_url_env_is_used_and_flag_wins(provider: HTTPServer, api_url: str) -> None:
    serve(provider, "GET", f"{PREFIX}/ip/dynamic-states/search", {"list": ["Bavaria"]})
    dead = f"http://127.0.0.1:{closed_port()}/openapi"

    from_env = run_cli("locations", "states", "DE", api_url=api_url)
    from_flag = run_cli("--api-url", api_url, "locations", "states", "DE", api_url=dead)

    assert (from_env.rc, from_env.out) == (0, "Bavaria\n")
    assert (from_flag.rc, from_flag.out) == (0, "Bavaria\n")
    assert len(sent(provider)) == 2


def test_ctrl_c_exits_130_quietly(provider: HTTPServer, api_url: str) -> None:
    arrived, release = threading.Event(), threading.Event()

    def stall(request: Request) -> Response:
        arrived.set()
        release.wait(30)
        return Response(json.dumps(envelope({"list": []})), content_type="application/json")

    provider.expect_request(f"{PREFIX}/ip/v3").respond_with_handler(stall)
    proc = subprocess.Popen(
        command("extract", "--num", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(api_url),
        preexec_fn=default_sigint,
    )
    try:
        assert arrived.wait(30), "the CLI never reached the provider"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        # The stalled request is logged only once its handler returns: wait for that, or it
        # would land in the next test's provider log.
        deadline = time.monotonic() + 10
        while not provider.log and time.monotonic() < deadline:
            time.sleep(0.01)

    assert proc.returncode == 130
    assert out == ""
    assert split_importtime(err)[0] == ""


# -- in-process: usage errors never reach the provider -----------------------------------------

USAGE_ERRORS = {
    "no-command": ([], "required: COMMAND"),
    "no-action": (["accounts"], "required: ACTION"),
    "unknown-command": (["frobnicate"], "invalid choice: 'frobnicate'"),
    # (``accounts add USER`` without ':' reads the password from stdin: see the stdin tests.)
    "add-dash-and-user": (["accounts", "add", "-", "carol3"], "'-' reads every account"),
    "add-bad-user": (["accounts", "add", "ok1:Pw1", "car ol:Pw2"], "account 2: the username"),
    "add-empty-password": (["accounts", "add", "carol3:"], "account 1 (carol3): the password"),
    "add-twice": (["accounts", "add", "a1:Pw1", "a1:Pw2"], "username a1 given twice"),
    "add-bad-type": (["accounts", "add", "a1:Pw1", "--product-type", "x"], "--product-type"),
    "delete-bad-name": (["accounts", "delete", "bob-02"], "usernames may contain only letters"),
    "limit-too-big": (["accounts", "set-limit", "bob02", "102401"], "between 0 and 102400"),
    "limit-not-int": (["accounts", "set-limit", "bob02", "ten"], "invalid int value: 'ten'"),
    "remark-too-long": (["accounts", "set-remark", "bob02", "x" * 65], "at most 64"),
    "password-bad": (["accounts", "set-password", "bob02", "pw with space"], "password may"),
    "usage-bad-time": (["usage", "--start", "yesterday"], "expected 'YYYY-MM-DD'"),
    "usage-utc-offset": (["usage", "--end", "2024-05-01T10:00:00+02:00"], "no UTC offset"),
    "usage-reversed": (["usage", "--start", "2024-05-02", "--end", "2024-05-01"], "start must"),
    "extract-num-0": (["extract", "--num", "0"], "num must be between 1 and 500"),
    "extract-geo-num-0": (
        ["extract", "--country", "US", "--num", "0"],
        "num must be between 1 and 500",
    ),
    "extract-num-501": (["extract", "--num", "501"], "num must be between 1 and 500"),
    "extract-life-0": (["extract", "--life", "0"], "life must be between 1"),
    "extract-state-only": (["extract", "--state", "California"], "needs a country"),
    "extract-bad-country": (["extract", "--country", "USA"], "ISO 3166 alpha-2"),
    "extract-bad-ep": (["extract", "--ep", "u-s"], "ep must be"),
    "static-wrong-type": (["static-ips", "--product-type", "9"], "must be 14"),
    "static-bad-status": (["static-ips", "--status", "9"], "argument --status"),
    "states-bad-country": (["locations", "states", "USA"], "ISO 3166 alpha-2"),
}


@pytest.mark.parametrize(("argv", "message"), USAGE_ERRORS.values(), ids=USAGE_ERRORS.keys())
@pytest.mark.usefixtures("env")
def test_usage_errors(
    capsys: pytest.CaptureFixture[str], provider: HTTPServer, argv: list[str], message: str
) -> None:
    result = call_cli(capsys, *argv)

    assert result.rc == 2
    assert message in result.err
    assert result.err.splitlines()[-1].startswith("proxypool")
    assert "Traceback" not in result.err
    assert result.out == ""
    assert provider.log == []
    for secret in ("Pw1", "Pw2", "pw with space"):
        if secret in argv:
            assert secret not in result.err


# -- in-process: provider errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("respond", "message"),
    [
        ({"json": {"code": 156, "msg": "real-name verification required"}}, "code 156"),
        ({"json": {"code": 3, "message": f"bad key {APP_KEY}"}}, "code 3"),
        ({"response_data": "<html>login</html>", "content_type": "text/html"}, "no JSON"),
        ({"response_data": "", "status": 200}, "empty body"),
        ({"response_data": "<h1>oops</h1>", "status": 500}, "HTTP 500"),
        ({"response_data": "", "status": 302, "headers": {"Location": "/login"}}, "redirected"),
    ],
    ids=["real-name", "bad-key", "html", "empty", "http-500", "redirect"],
)
@pytest.mark.usefixtures("env")
def test_provider_errors_exit_1(
    capsys: pytest.CaptureFixture[str],
    provider: HTTPServer,
    respond: dict[str, Any],
    message: str,
) -> None:
    # A POST command: writes are never retried, so a 500 is reported at once.
    handler = provider.expect_request(f"{PREFIX}/whitelist-account/enable", method="POST")
    if "json" in respond:
        handler.respond_with_json(respond.pop("json"), **respond)
    else:
        handler.respond_with_data(**respond)

    result = call_cli(capsys, "accounts", "enable", "alice01")

    assert result.rc == 1
    assert message in one_error_line(result)
    assert result.out == ""
    assert len(provider.log) == 1


@pytest.mark.usefixtures("env")
def test_wrong_shape_exits_1(capsys: pytest.CaptureFixture[str], provider: HTTPServer) -> None:
    serve(provider, "GET", f"{PREFIX}/whitelist-account/list", {"list": "nope"})

    result = call_cli(capsys, "accounts", "list")

    assert result.rc == 1
    assert "unexpected account" in one_error_line(result)


@pytest.mark.usefixtures("env")
def test_json_errors_still_go_to_stderr(
    capsys: pytest.CaptureFixture[str], provider: HTTPServer
) -> None:
    provider.expect_request(f"{PREFIX}/ip/v3").respond_with_json({"code": 156, "msg": "verify"})

    result = call_cli(capsys, "--json", "extract")

    assert result.rc == 1
    assert result.out == ""
    assert "code 156" in one_error_line(result)


# -- in-process: details --------------------------------------------------------------------------


@pytest.mark.usefixtures("env")
def test_json_flag_after_the_command(
    capsys: pytest.CaptureFixture[str], provider: HTTPServer
) -> None:
    serve(provider, "GET", f"{PREFIX}/whitelist-account/list", ACCOUNTS)

    result = call_cli(capsys, "accounts", "list", "--json")

    assert result.rc == 0
    assert result.json() == ACCOUNTS_JSON


@pytest.mark.usefixtures("env")
def test_key_echoed_in_data_is_masked(
    capsys: pytest.CaptureFixture[str], provider: HTTPServer
) -> None:
    accounts = {"list": [{**ACCOUNTS["list"][0], "remark": f"key {APP_KEY}"}]}
    serve(provider, "GET", f"{PREFIX}/whitelist-account/list", accounts)

    human = call_cli(capsys, "accounts", "list")
    as_json = call_cli(capsys, "--json", "accounts", "list")

    assert human.rc == as_json.rc == 0  # call_cli asserted the key is in neither
    assert as_json.json()[0]["remark"] == "key ***"


@pytest.mark.usefixtures("env")
def test_empty_lists(capsys: pytest.CaptureFixture[str], provider: HTTPServer) -> None:
    serve(provider, "GET", f"{PREFIX}/whitelist-account/list", {"list": []})
    serve(provider, "GET", f"{PREFIX}/user-usage-flow/total", {"list": []})

    assert call_cli(capsys, "accounts", "list").out == "No proxy accounts.\n"
    assert call_cli(capsys, "usage").out == "No traffic in this period.\n"
    assert call_cli(capsys, "--json", "usage").json() == []


@pytest.mark.usefixtures("env")
def test_set_password_from_stdin(
    capsys: pytest.CaptureFixture[str], provider: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve(provider, "POST", f"{PREFIX}/whitelist-account/change-password", None)
    monkeypatch.setattr(sys, "stdin", io.StringIO("FromStdin42\n"))

    result = call_cli(capsys, "accounts", "set-password", "alice01", "-")

    assert result.rc == 0
    assert sent(provider) == [
        post(
            f"{PREFIX}/whitelist-account/change-password", account="alice01", password="FromStdin42"
        )
    ]
    assert "FromStdin42" not in result.out + result.err


def test_set_password_without_pass_reads_stdin(provider: HTTPServer, api_url: str) -> None:
    serve(provider, "POST", f"{PREFIX}/whitelist-account/change-password", None)

    result = run_cli("accounts", "set-password", "alice01", stdin="FromStdin42\n", api_url=api_url)

    assert result.rc == 0, result.err
    assert sent(provider) == [
        post(
            f"{PREFIX}/whitelist-account/change-password", account="alice01", password="FromStdin42"
        )
    ]
    assert "FromStdin42" not in result.out + result.err
    assert "warning" not in result.err


@pytest.mark.usefixtures("env")
def test_product_type_by_name(capsys: pytest.CaptureFixture[str], provider: HTTPServer) -> None:
    serve(provider, "POST", f"{PREFIX}/whitelist-account/add", None)

    result = call_cli(
        capsys, "accounts", "add", "eve5:PwEve5", "--product-type", "static-residential-ip"
    )

    assert result.rc == 0
    assert sent(provider)[0].body["product_type"] == 25
    assert sent(provider)[0].body["remark"] == ""


@pytest.fixture
def no_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail as if the module did not exist, whether or not
    # proxypool/demo.py has been written by now.
    monkeypatch.setitem(sys.modules, "proxypool.demo", None)


@pytest.mark.usefixtures("no_demo")
def test_demo_not_available_yet(capsys: pytest.CaptureFixture[str]) -> None:
    result = call_cli(capsys, "demo")

    assert result.rc == 1
    assert one_error_line(result) == "proxypool: the demo is not available in this version yet"


def test_demo_dispatches_to_the_demo_module(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    fake = types.ModuleType("proxypool.demo")

    def fake_main(args: Any) -> int:
        calls.append(args)
        return 7

    fake.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "proxypool.demo", fake)

    result = call_cli(capsys, "demo", "--serve")

    assert result.rc == 7
    assert len(calls) == 1
    assert calls[0].serve is True


# -- pure helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kb", "text"),
    [
        (0, "0 KB"),
        (1023, "1023 KB"),
        (1024, "1.00 MB"),
        (1536, "1.50 MB"),
        (1024**2 - 1, "1024.00 MB"),
        (1024**2, "1.00 GB"),
        (102400 * 1024**2, "102400.00 GB"),
    ],
)
def test_format_kb(kb: int, text: str) -> None:
    assert format_kb(kb) == text


def test_render_bar() -> None:
    assert render_bar(0, 100, 10) == ""
    assert render_bar(100, 100, 10) == "█" * 10
    assert render_bar(50, 100, 10) == "█" * 5
    assert render_bar(1, 800, 10) == "▏"  # 1/80 of the width rounds to one eighth
    assert render_bar(0.001, 100, 10) == "▏"  # never invisible when not zero
    assert render_bar(55, 100, 10) == "█████▌"


# -- gateway url ----------------------------------------------------------------------------------

GATEWAY = "gw.example.net:3120"


@pytest.mark.parametrize("as_json", [False, True])
def test_gateway_url_looks_the_password_up_validates_the_place_and_masks_it(
    provider: HTTPServer, api_url: str, as_json: bool
) -> None:
    serve(provider, "GET", f"{PREFIX}/whitelist-account/list", ACCOUNTS)
    serve(provider, "GET", f"{PREFIX}/ip/dynamic-states", STATES)
    argv = ["gateway", "url", "--user", "alice01", "--geo", "us/california", "--life", "15"]
    argv += ["--session", "Ab12Cd34", *(["--json"] if as_json else [])]
    result = run_cli(*argv, api_url=api_url, env={"PROXYPOOL_GATEWAY": GATEWAY})
    assert result.rc == 0, result.err
    username = "alice01_area-US_state-California_life-15_session-Ab12Cd34"  # canonical tokens
    expected = f"http://{username}:***@{GATEWAY}"
    if as_json:
        data = json.loads(result.out)
        assert data["url"] == expected and data["username"] == username
        assert (data["gateway"], data["geo"], data["password_shown"]) == (
            GATEWAY,
            "US/California",
            False,
        )
    else:
        assert result.out == expected + "\n"
    if not as_json:
        assert "--show-password" in result.err  # said on stderr: stdout stays one URL
    assert "PwAlice777" not in result.out + result.err
    assert [s.path for s in sent(provider)] == [
        f"{PREFIX}/ip/dynamic-states",
        f"{PREFIX}/whitelist-account/list",
    ]


def test_gateway_url_shows_the_password_when_asked_and_works_offline_with_one(
    api_url: str,
) -> None:
    env = {
        "PROXYPOOL_GATEWAY": GATEWAY,
        "PROXYPOOL_GATEWAY_USER": "crawler01",
        "PROXYPOOL_GATEWAY_PASSWORD": "Pw4Gateway",
        "PROXYPOOL_APP_KEY": "",  # no API at all: nothing to look up, nothing validated
    }
    shown = run_cli("gateway", "url", "--show-password", "--session", "S1", api_url=None, env=env)
    assert shown.rc == 0, shown.err
    assert shown.out == f"http://crawler01_session-S1:Pw4Gateway@{GATEWAY}\n"
    assert shown.err == ""
    fresh = run_cli("gateway", "url", "--geo", "DE", api_url=None, env=env)
    assert fresh.rc == 0
    assert re.fullmatch(
        rf"http://crawler01_area-DE_session-[A-Za-z0-9]{{10}}:\*\*\*@{GATEWAY}\n", fresh.out
    )
    assert "used as typed" in fresh.err and "Pw4Gateway" not in fresh.out + fresh.err
    # A key in the environment (for another tool, say) but no API URL: still offline, no error.
    keyed = run_cli("gateway", "url", "--geo", "DE", api_url=None, env={**env, **KEY_ONLY})
    assert keyed.rc == 0, keyed.err
    assert "used as typed" in keyed.err and "Pw4Gateway" not in keyed.out + keyed.err


KEY_ONLY = {"PROXYPOOL_APP_KEY": APP_KEY}


@pytest.mark.parametrize(
    ("argv", "env", "words"),
    [
        ([], {}, "no gateway"),
        (["--gateway", "gw.example.net"], {}, "no port"),
        (["--gateway", GATEWAY], {}, "no proxy account"),
        (["--gateway", GATEWAY, "--user", "a b"], {}, "spaces"),
        (["--gateway", GATEWAY, "--user", "u", "--life", "0"], {}, "between 1 and 7200"),
        (["--gateway", GATEWAY, "--user", "u", "--session", "a_b"], {}, "letters and digits"),
        (["--gateway", GATEWAY, "--user", "u", "--format", "nosuch"], {}, "not a known grammar"),
        (["--gateway", GATEWAY, "--user", "u", "--geo", "USA"], {}, "alpha-2"),
        (["--gateway", GATEWAY, "--user", "u"], {"PROXYPOOL_APP_KEY": ""}, "no password"),
        (["--gateway", GATEWAY, "--user", "u"], {"PROXYPOOL_API_URL": ""}, "no API URL"),
        (["--gateway", GATEWAY, "--user", "a_b"], {}, "separates the segments"),
    ],
)
def test_gateway_url_bad_input_is_said_before_any_call(
    provider: HTTPServer, api_url: str, argv: list[str], env: dict[str, str], words: str
) -> None:
    result = run_cli("gateway", "url", *argv, api_url=api_url, env=env)
    assert result.rc == 2, result.err
    assert words in one_error_line(result)
    assert sent(provider) == []


def test_gateway_url_for_an_unknown_account_is_an_error(provider: HTTPServer, api_url: str) -> None:
    serve(provider, "GET", f"{PREFIX}/whitelist-account/list", ACCOUNTS)
    result = run_cli("gateway", "url", "--gateway", GATEWAY, "--user", "nobody9", api_url=api_url)
    assert result.rc == 1
    assert "'nobody9' is not among" in one_error_line(result)
    bob = run_cli("gateway", "url", "--gateway", GATEWAY, "--user", "bob02", api_url=api_url)
    assert bob.rc == 1 and "is disabled" in one_error_line(bob)
