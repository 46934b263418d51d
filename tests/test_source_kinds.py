"""Every way the provider sells access, as a source of the same pool (``proxypool.sources``):
what a source declares (``paid``, ``expires``) and what the pool does with it; ``ListSource``
(your own proxies, inline or a file); ``StaticIPSource`` (the account's static IPs, over every
page of an undocumented schema); ``GatewaySource`` (sessions of the rotating gateway, minted from
a username grammar). Crawls through each are in ``test_scrapy_sources.py``."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _helpers import FakeClock
from _provider import KEY, envelope, make_client
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from proxypool import ProxyPool
from proxypool.errors import AccountError, BanStorm, ConfigError
from proxypool.geo import Geo
from proxypool.models import Proxy
from proxypool.sources import (
    GATEWAY_FORMATS,
    CheckedSource,
    ExtractionSource,
    GatewaySource,
    ListSource,
    StaticIPSource,
    catalog_for,
    source_terms,
)

PASSWORD = "pw-Secr3t-Gw"


def make_pool(source: Any, clock: FakeClock | None = None, **kwargs: Any) -> ProxyPool:
    kwargs.setdefault("refill_runner", lambda job: job())
    return ProxyPool(source, clock=clock or FakeClock(), **kwargs)


# -- what a source declares ---------------------------------------------------------------------


class Free:
    paid = False
    expires = False

    def __init__(self, count: int) -> None:
        self.count = count
        self.calls = 0

    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        self.calls += 1
        return [Proxy("10.1.0.1", 8000 + n) for n in range(self.count)]


class Silent:  # says nothing: treated as paid and expiring
    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        return [Proxy("10.2.0.1", 8000 + n) for n in range(num + 3)]


def test_source_terms_default_to_the_safe_side() -> None:
    assert source_terms(Silent()) == (True, True)
    assert source_terms(Free(1)) == (False, False)
    assert source_terms(GatewaySource("127.0.0.1:1", "u", "p")) == (False, True)
    assert source_terms(ListSource(["127.0.0.1:1"])) == (False, False)
    assert source_terms(CheckedSource(ListSource(["127.0.0.1:1"]))) == (False, False)
    odd = Free(1)
    odd.paid = "no"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"Free\.paid must be True or False") as info:
        make_pool(odd)
    assert info.value.field == "paid"


def test_a_free_source_is_minted_not_extracted_and_kept_whole() -> None:
    source = Free(30)  # more than the batch asks for: a free source's surplus is not cut
    pool = make_pool(source, batch=5, min_size=1)
    pool.get(timeout=0)
    stats = pool.stats()
    assert stats["extracted"] == 0
    assert stats["minted"] == 30
    assert stats["live"] == {"*": 30}


def test_a_paid_source_is_extracted_and_its_surplus_cut() -> None:
    pool = make_pool(Silent(), batch=5, min_size=1)
    pool.get(timeout=0)
    stats = pool.stats()
    assert (stats["extracted"], stats["minted"], stats["live"]) == (8, 0, {"*": 5})


def test_a_lasting_source_never_expires_by_life() -> None:
    clock = FakeClock()
    pool = make_pool(Free(3), clock, life=1, min_size=0, expiry_margin=0)
    pool.refill()
    clock.advance(10 * 24 * 3600)
    assert pool.stats()["expired"] == 0
    assert len(pool) == 3
    timed = make_pool(Silent(), clock, life=1, batch=3, min_size=0, expiry_margin=0)
    timed.refill()
    clock.advance(61)
    assert timed.stats()["expired"] == 3


def test_max_extracted_with_a_free_source_is_refused() -> None:
    with pytest.raises(ConfigError, match="max_extracted caps the IPs bought") as info:
        make_pool(Free(3), max_extracted=10)
    assert info.value.field == "max_extracted"


class Minting:
    """Fresh proxies on every call, like a gateway's sessions; ``paid`` as told."""

    expires = True

    def __init__(self, *, paid: bool) -> None:
        self.paid = paid
        self.minted = 0

    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        self.minted += num
        return [Proxy("10.4.0.1", self.minted - n) for n in range(num)]


@pytest.mark.parametrize("paid", [True, False])
def test_only_a_paid_source_is_stopped_by_a_ban_storm(paid: bool) -> None:
    pool = make_pool(Minting(paid=paid), batch=2, min_size=0, ban_storm_batches=1)

    def ban_a_batch() -> None:
        for proxy in [pool.get(timeout=0, domain="x.example") for _ in range(2)]:
            pool.report_failure(proxy, domain="x.example", banned=True)

    ban_a_batch()  # one batch all banned: a storm for a source that buys
    if paid:
        with pytest.raises(BanStorm):
            pool.get(timeout=0, domain="x.example")
        return
    for _ in range(3):  # a free source mints new sessions, batch after batch
        ban_a_batch()
    assert pool.stats()["ban_storms"] == 0
    assert pool.stats()["minted"] == 8


# -- ListSource ---------------------------------------------------------------------------------


def test_list_source_reads_urls_and_host_port() -> None:
    source = ListSource(
        [
            "127.0.0.1:8080",
            " http://user:p%40ss@proxy.example:3128 ",
            "https://[::1]:8443",
            "alice:s3cret@10.0.0.9:9000",
            "127.0.0.1:8080",  # a duplicate counts once
        ]
    )
    assert len(source) == 4
    first, second, third, fourth = source.proxies
    assert first == Proxy("127.0.0.1", 8080)
    assert (second.host, second.port, second.username, second.password) == (
        "proxy.example",
        3128,
        "user",
        "p@ss",
    )
    assert (third.scheme, third.host, third.port) == ("https", "::1", 8443)
    assert (fourth.username, fourth.password) == ("alice", "s3cret")
    assert source.extract(None, num=1, life=5) == list(source.proxies)  # always the whole list
    assert "s3cret" not in repr(source) and "p@ss" not in repr(source)


def test_list_source_reads_a_file_with_comments(tmp_path: Path) -> None:
    path = tmp_path / "proxies.txt"
    path.write_text(
        "# my proxies\n\n127.0.0.1:8001\n  http://u:pw@127.0.0.1:8002  # the paid one\n#off:1\n"
    )
    source = ListSource(path)
    assert [p.port for p in source.proxies] == [8001, 8002]
    assert ListSource.from_file(str(path)).proxies == source.proxies


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("socks5://127.0.0.1:1080", "scheme 'socks5' is not supported"),
        ("127.0.0.1", "no port"),
        ("127.0.0.1:0", "out of range"),
        ("127.0.0.1:99999", "entry 2"),
        ("http://127.0.0.1:80/path", "no path"),
        ("bad_host!:80", "not a valid host"),
        ("user:hunter2@:80", "no host"),
    ],
)
def test_list_source_names_a_bad_entry_and_never_its_password(entry: str, words: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)) as info:
        ListSource(["127.0.0.1:1", entry])
    assert info.value.field == "proxies"
    assert "entry 2" in str(info.value)
    assert "hunter2" not in str(info.value)


# Passwords with the characters that end a URL's authority, unescaped, as people paste them.
ODD_PASSWORDS = ["Hunt/er2x", "Hunt?er2x", "Hunt#er2x", "Hunt@er2x", "Hunt:er2x", "Hu://nter2x"]


@pytest.mark.parametrize("password", ODD_PASSWORDS)
def test_list_source_keeps_a_password_with_url_characters_whole(password: str) -> None:
    (proxy,) = ListSource([f"alice:{password}@127.0.0.1:8080"]).proxies
    assert (proxy.host, proxy.port, proxy.username, proxy.password) == (
        "127.0.0.1",
        8080,
        "alice",
        password,
    )
    assert password not in repr(proxy) and password not in str(proxy)


@pytest.mark.parametrize("password", ODD_PASSWORDS)
@pytest.mark.parametrize(
    "template",
    [
        "alice:{pw}@127.0.0.1:notaport",
        "http://alice:{pw}@127.0.0.1:99999",
        "socks5://alice:{pw}@127.0.0.1:1080",
        "alice:{pw}@[::1:80",
        "alice:{pw}",  # the ':' makes the password look like a port
        "alice:{pw}@bad_host!:80",
    ],
)
def test_no_bad_entry_error_shows_any_part_of_its_password(template: str, password: str) -> None:
    with pytest.raises(ConfigError) as info:
        ListSource([template.format(pw=password)])
    message = str(info.value)
    assert info.value.field == "proxies" and "entry 1" in message
    # Not the password, nor a piece of it either side of the character that ends an authority.
    pieces = {p for p in (password, *re.split(r"[/?#@:]+", password)) if len(p) >= 4}
    assert not [piece for piece in pieces if piece in message], message


def test_a_hash_inside_a_password_is_not_a_comment(tmp_path: Path) -> None:
    path = tmp_path / "proxies.txt"
    path.write_text("u:pa#ss1@127.0.0.1:8001 # the first\nu:pa#ss2@bad_host!:8002\n")
    with pytest.raises(ConfigError) as info:
        ListSource(path)
    assert "line 2" in str(info.value) and "ss2" not in str(info.value)
    path.write_text("u:pa#ss1@127.0.0.1:8001 # the first\n#u:x@127.0.0.1:8003\n")
    (proxy,) = ListSource(path).proxies
    assert (proxy.port, proxy.password) == (8001, "pa#ss1")


def test_a_url_given_where_a_file_belongs_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read") as info:
        ListSource(Path("http://alice:Hunter2x@127.0.0.1:1"))
    assert "Hunter2x" not in str(info.value)


def test_list_source_refuses_what_is_not_a_list(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pathlib\.Path"):
        ListSource("127.0.0.1:80")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="empty"):
        ListSource([])
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="empty"):
        ListSource(empty)
    with pytest.raises(ConfigError, match="cannot be read") as info:
        ListSource(tmp_path / "missing.txt")
    assert "missing.txt" in str(info.value)
    bad = tmp_path / "bad.txt"
    bad.write_text("127.0.0.1:1\nftp://127.0.0.1:21\n")
    with pytest.raises(ConfigError, match=r"bad\.txt line 2"):
        ListSource(bad)


def test_a_list_has_no_geography() -> None:
    source = ListSource(["127.0.0.1:1"])
    assert source.extract(Geo(), num=1, life=1)  # anywhere is fine
    with pytest.raises(ConfigError, match="no geography") as info:
        source.extract(Geo("US"), num=1, life=1)
    assert info.value.field == "geo"


def test_a_pool_on_a_list_revives_what_it_evicted_at_its_next_refill() -> None:
    source = ListSource([f"127.0.0.1:{9000 + n}" for n in range(3)])
    pool = make_pool(source, min_size=3, max_failures=1)
    dead = pool.get(timeout=0)
    pool.report_failure(dead)  # evicted: 2 left, below min_size
    assert pool.stats()["evictions"] == 1
    served = {pool.get(timeout=0) for _ in range(6)}  # the refill brings the whole list back
    assert dead in served and len(served) == 3
    assert pool.stats()["minted"] == 6


def test_a_long_list_is_probed_one_wave_at_a_time(tmp_path: Path) -> None:
    """A free source hands over its whole list at each refill: the reachability check probes one
    wave of it (one timeout at most), the rest joins unprobed; a paid batch is probed whole."""
    probed: list[int] = []

    def probe(addresses: set[tuple[str, int]], *, timeout: float) -> set[tuple[str, int]]:
        probed.append(len(addresses))
        return {a for a in addresses if a[1] % 2 == 0}  # the odd ports refuse

    listing = ListSource([f"10.5.{n // 250}.{n % 250}:{8000 + n}" for n in range(1000)])
    kept = CheckedSource(listing, probe=probe).extract(None, num=20, life=5)
    assert probed == [256]
    assert len(kept) == 128 + (1000 - 256)  # the probed half that answers, and the unprobed
    paid = CheckedSource(Silent(), probe=probe).extract(None, num=500, life=5)
    assert probed[-1] == 500 and len(paid) == 250


# -- StaticIPSource -----------------------------------------------------------------------------

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def static_entry(n: int, **extra: Any) -> dict[str, Any]:
    entry = {
        "ip": f"10.3.0.{n}",
        "port": 7000 + n,
        "country_code": "US",
        "status": 1,
        "product_type": 25,
        "trade_no": "T" * 28,
        "expired_at": "2027-01-01 00:00:00",
    }
    entry.update(extra)
    return entry


def serve_static_pages(httpserver: HTTPServer, pages: list[list[Any]], total: int) -> None:
    def handler(request: Request) -> Response:
        assert request.args["app_key"] == KEY
        page = int(request.args["page"])
        items = pages[page - 1] if page <= len(pages) else []
        body = envelope({"list": items, "page": page, "total_count": total})
        import json

        return Response(json.dumps(body), content_type="application/json")

    httpserver.expect_request("/ip/get-static-ip").respond_with_handler(handler)


def test_static_ips_come_from_every_page_and_odd_entries_are_skipped(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    page1 = [static_entry(n) for n in range(1, 3)]
    page2 = [
        static_entry(3, username="st-user", password="st-Pass-9"),  # credentials where given
        {"port": 7004},  # no address: skipped and counted
        static_entry(5, status=2),  # invalid: left out
        static_entry(6, expired_at="2026-12-01 00:00:00"),  # package expired: left out
        static_entry(7, country_code="DE"),
        "10.3.0.8:7008",  # a bare string entry
    ]
    serve_static_pages(httpserver, [page1, page2], total=8)
    source = StaticIPSource(make_client(httpserver), page_size=2, now=lambda: NOW)
    with caplog.at_level(logging.WARNING, logger="proxypool"):
        proxies = source.extract(None, num=1, life=5)
    assert [p.port for p in proxies] == [7001, 7002, 7003, 7007, 7008]
    third = proxies[2]
    assert (third.username, third.password) == ("st-user", "st-Pass-9")
    assert source.skipped == 1 and source.expired == 2
    assert "1 static IP entries had no usable address" in caplog.text
    assert "st-Pass-9" not in caplog.text and KEY not in caplog.text
    pages = [int(r.args["page"]) for r, _ in httpserver.log]
    assert pages == [1, 2]  # all 8 the first page announced are in: no third call

    by_country = source.extract(Geo("DE"), num=1, life=5)
    assert [p.port for p in by_country] == [7007]
    with pytest.raises(ConfigError, match="country only"):
        source.extract(Geo("US", "California"), num=1, life=5)


def test_a_provider_that_ignores_the_page_number_does_not_loop(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    import json

    def same_page(request: Request) -> Response:
        items = [static_entry(n) for n in range(1, 3)]  # always full, never a total
        return Response(json.dumps(envelope({"list": items})), content_type="application/json")

    httpserver.expect_request("/ip/get-static-ip").respond_with_handler(same_page)
    source = StaticIPSource(make_client(httpserver), page_size=2, now=lambda: NOW)
    with caplog.at_level(logging.WARNING, logger="proxypool"):
        proxies = source.extract(None, num=1, life=5)
    assert [p.port for p in proxies] == [7001, 7002]
    assert len(httpserver.log) == 2  # the second answer repeated the first: the end
    assert "repeated itself at page 2" in caplog.text


def test_static_ips_in_a_pool_are_free_and_lasting(httpserver: HTTPServer) -> None:
    serve_static_pages(httpserver, [[static_entry(n) for n in range(1, 4)]], total=3)
    clock = FakeClock()
    pool = make_pool(StaticIPSource(make_client(httpserver), now=lambda: NOW), clock, min_size=1)
    pool.get(timeout=0)
    clock.advance(20 * 24 * 3600)  # far past any life, before their packages end
    stats = pool.stats()
    assert (stats["extracted"], stats["minted"], stats["expired"]) == (0, 3, 0)
    assert catalog_for(StaticIPSource(make_client(httpserver))) is None  # country codes only


def test_a_static_ip_leaves_the_pool_when_its_package_ends(httpserver: HTTPServer) -> None:
    soon = static_entry(1, expired_at="2026-12-04 13:00:00")  # an hour after NOW
    later = static_entry(2, expired_at="2027-01-01 00:00:00")
    never = static_entry(3)
    del never["expired_at"]
    serve_static_pages(httpserver, [[never, later, soon]], total=3)  # the latest end first
    clock = FakeClock()
    source = StaticIPSource(make_client(httpserver), now=lambda: NOW)
    pool = make_pool(source, clock, min_size=0, expiry_margin=60)
    pool.refill()
    assert pool.stats()["live"] == {"*": 3}
    clock.advance(3600 - 61)  # just before the margin before its end
    assert pool.stats()["expired"] == 0
    clock.advance(2)
    stats = pool.stats()
    assert (stats["expired"], stats["live"]) == (1, {"*": 2})
    assert {p.port for p in [pool.get(timeout=0) for _ in range(4)]} == {7002, 7003}
    clock.advance(400 * 24 * 3600)  # a year on: the dated one ended, the undated one stays
    assert pool.stats()["live"] == {"*": 1}


# -- GatewaySource ------------------------------------------------------------------------------


def test_the_default_grammar_is_the_white_label_family() -> None:
    gateway = GatewaySource("gw.example:3120", "crawler01", PASSWORD)
    assert (
        gateway.username_for(Geo("US", "California"), life=15, session="Ab12Cd34")
        == "crawler01_area-US_state-California_life-15_session-Ab12Cd34"
    )
    assert gateway.username_for(None, session="X") == "crawler01_session-X"
    assert (
        gateway.username_for(Geo("US", "California", "LosAngeles"), life=5, session="Q")
        == "crawler01_area-US_state-California_city-LosAngeles_life-5_session-Q"
    )


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("sessid", "user-crawler01-region-us-st-california-sessid-S1-sesstime-90"),
        ("zone", "crawler01-zone-custom-region-us-st-california-session-S1-sessTime-90"),
        ("customer", "customer-crawler01-cc-US-st-us_california-sessid-S1-sesstime-90"),
        ("pl-{user}_area-{country}_session-{session}", "pl-crawler01_area-US_session-S1"),
        (
            "{user}[-cc-{country:lower}-st-{state}]-s-{session}",
            "crawler01-cc-us-st-California-s-S1",
        ),
    ],
)
def test_other_grammars_are_data(fmt: str, expected: str) -> None:
    gateway = GatewaySource("gw.example:3120", "crawler01", PASSWORD, format=fmt)
    assert gateway.username_for(Geo("US", "California"), life=90, session="S1") == expected


def test_a_bracketed_segment_goes_when_any_of_its_values_is_missing() -> None:
    gateway = GatewaySource(
        "gw.example:1", "u", "p", format="{user}[-st-{country:lower}_{state:lower}]-s-{session}"
    )
    assert gateway.username_for(Geo("US"), session="S") == "u-s-S"


def test_every_preset_says_whether_it_was_confirmed() -> None:
    source = Path(__file__).resolve().parent.parent / "proxypool" / "sources.py"
    text = source.read_text()
    block = text[text.index("GATEWAY_FORMATS: dict") : text.index("_PLACEHOLDERS")]
    for name in GATEWAY_FORMATS:
        comment = block[: block.index(f'"{name}":')].rsplit("}", 1)[-1].rsplit('",', 1)[-1]
        assert "onfirmed" in comment, name


def test_each_minted_proxy_is_a_fresh_session() -> None:
    gateway = GatewaySource("127.0.0.1:3120", "crawler01", PASSWORD)
    proxies = gateway.extract(Geo("US"), num=50, life=10)
    sessions = {re.search(r"_session-(\w+)$", p.username or "").group(1) for p in proxies}  # type: ignore[union-attr]
    assert len(sessions) == 50
    assert all(re.fullmatch(r"[A-Za-z0-9]{10}", s) for s in sessions)
    assert all(
        (p.host, p.port, p.password, p.geo) == ("127.0.0.1", 3120, PASSWORD, Geo("US"))
        for p in proxies
    )
    assert all("_life-10_" in (p.username or "") for p in proxies)
    # The logs tell sessions apart: the id (not a secret) shows beside the gateway's address.
    assert {str(p) for p in proxies} == {f"127.0.0.1:3120 (session {s})" for s in sessions}
    assert all(f"session={p.session!r}" in repr(p) for p in proxies)
    assert PASSWORD not in repr(gateway) and PASSWORD not in repr(proxies)


def test_gateway_credentials_fall_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXYPOOL_GATEWAY_USER", "envuser")
    monkeypatch.setenv("PROXYPOOL_GATEWAY_PASSWORD", "envPass1")
    gateway = GatewaySource("127.0.0.1:3120")
    proxy = gateway.proxy(session="S")
    assert (proxy.username, proxy.password) == ("envuser_session-S", "envPass1")
    monkeypatch.delenv("PROXYPOOL_GATEWAY_PASSWORD")
    with pytest.raises(ConfigError, match="PROXYPOOL_GATEWAY_PASSWORD") as info:
        GatewaySource("127.0.0.1:3120")
    assert info.value.field == "password"
    monkeypatch.delenv("PROXYPOOL_GATEWAY_USER")
    with pytest.raises(ConfigError, match="PROXYPOOL_GATEWAY_USER") as info:
        GatewaySource("127.0.0.1:3120", password="x")
    assert info.value.field == "username"


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"gateway": "gw.example"}, "gateway", "no port"),
        ({"gateway": "u:p@gw.example:1"}, "gateway", "without credentials"),
        ({"gateway": 3120}, "gateway", "host:port"),
        ({"username": "two words"}, "username", "spaces"),
        ({"format": "nosuch"}, "format", "not a known grammar"),
        ({"format": "{user}_{area}_{session}"}, "format", "unknown placeholder {area}"),
        ({"format": "{user}_area-{country}"}, "format", "must contain {session}"),
        ({"format": "{user}[_x-{session}"}, "format", "unbalanced"),
    ],
)
def test_gateway_settings_are_checked_before_anything(
    kwargs: dict[str, Any], field: str, words: str
) -> None:
    args: dict[str, Any] = {"gateway": "127.0.0.1:3120", "username": "u", "password": PASSWORD}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=re.escape(words)) as info:
        GatewaySource(**args)
    assert info.value.field == field
    assert PASSWORD not in str(info.value)


def test_a_session_id_given_by_hand_is_checked() -> None:
    gateway = GatewaySource("127.0.0.1:3120", "u", "p")
    with pytest.raises(ConfigError, match="letters and digits") as info:
        gateway.username_for(session="a_b")
    assert info.value.field == "session"
    with pytest.raises(ConfigError, match="7200 minutes"):
        gateway.username_for(life=8000)


def accounts_payload(*rows: tuple[str, str, int]) -> dict[str, Any]:
    return envelope(
        [
            {
                "id": n,
                "username": user,
                "password": password,
                "status": status,
                "remark": "",
                "product_type": 9,
                "usage_flow": 0,
                "limit_flow": 0,
                "created_at": "2026-11-01 00:00:00",
            }
            for n, (user, password, status) in enumerate(rows, 1)
        ]
    )


def test_the_password_is_looked_up_once_among_the_accounts(httpserver: HTTPServer) -> None:
    httpserver.expect_request(re.compile(r".*/whitelist-account/list")).respond_with_json(
        accounts_payload(("other", "no", 1), ("crawler01", "Looked-Up-7", 1))
    )
    gateway = GatewaySource("127.0.0.1:3120", "crawler01", client=make_client(httpserver))
    assert len(httpserver.log) == 0  # nothing fetched until the first extraction
    first = gateway.extract(None, num=2, life=5)
    gateway.extract(None, num=2, life=5)
    assert {p.password for p in first} == {"Looked-Up-7"}
    assert len(httpserver.log) == 1
    assert "Looked-Up-7" not in repr(gateway)


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        ((("crawler01", "pw", 2),), "is disabled"),
        ((("someone", "pw", 1),), "is not among"),
    ],
)
def test_an_unusable_account_stops_the_pool_before_any_proxy(
    httpserver: HTTPServer, rows: tuple[tuple[str, str, int], ...], words: str
) -> None:
    httpserver.expect_request(re.compile(r".*/whitelist-account/list")).respond_with_json(
        accounts_payload(*rows)
    )
    gateway = GatewaySource("127.0.0.1:3120", "crawler01", client=make_client(httpserver))
    pool = make_pool(gateway, catalog=None, min_size=1)
    with pytest.raises(AccountError, match=words):
        pool.get(timeout=0)
    with pytest.raises(AccountError):  # fatal: the pool stays stopped
        pool.get(timeout=0)
    assert pool.stats()["minted"] == 0


def test_a_gateway_with_a_client_validates_geography_with_the_catalog(
    httpserver: HTTPServer,
) -> None:
    client = make_client(httpserver)
    assert catalog_for(GatewaySource("127.0.0.1:1", "u", "p", client=client)) is not None
    assert catalog_for(GatewaySource("127.0.0.1:1", "u", "p")) is None
    assert catalog_for(ExtractionSource(client)) is not None


def test_gateway_settings_keep_the_password_out_of_reprs_and_errors() -> None:
    from scrapy_ext.settings import read_settings

    settings = {
        "PROXYPOOL_SOURCE": "gateway",
        "PROXYPOOL_GATEWAY": "127.0.0.1:3120",
        "PROXYPOOL_GATEWAY_USER": "crawler01",
        "PROXYPOOL_GATEWAY_PASSWORD": PASSWORD,
    }
    config = read_settings(settings, environ={})
    assert config.gateway_password == PASSWORD
    assert PASSWORD not in repr(config)
    source = GatewaySource("127.0.0.1:3120", "crawler01", PASSWORD)
    assert PASSWORD not in repr(source) and PASSWORD not in str(source.proxy())
    bad = dict(settings, PROXYPOOL_GATEWAY=f"crawler01:{PASSWORD}@127.0.0.1:3120")
    with pytest.raises(ConfigError) as info:
        read_settings(bad, environ={})
    assert PASSWORD not in str(info.value) and info.value.field == "PROXYPOOL_GATEWAY"
    listed = ListSource([f"http://u:{PASSWORD}@127.0.0.1:1"])
    assert PASSWORD not in repr(listed) and PASSWORD not in repr(listed.proxies)
    with pytest.raises(ConfigError) as info:
        ListSource([f"socks5://u:{PASSWORD}@127.0.0.1:1"])
    assert PASSWORD not in str(info.value)


@pytest.mark.parametrize(
    "value",
    [
        f"crawler01:{PASSWORD}",  # the credentials without the gateway
        f"crawler01:{PASSWORD}:127.0.0.1:3120",
        f"http://crawler01:{PASSWORD}/x@127.0.0.1:3120",
    ],
)
def test_a_gateway_setting_holding_credentials_never_echoes_them(value: str) -> None:
    from scrapy_ext.settings import read_settings

    settings = {
        "PROXYPOOL_SOURCE": "gateway",
        "PROXYPOOL_GATEWAY": value,
        "PROXYPOOL_GATEWAY_USER": "crawler01",
        "PROXYPOOL_GATEWAY_PASSWORD": PASSWORD,
    }
    with pytest.raises(ConfigError) as info:
        read_settings(settings, environ={})
    assert PASSWORD not in str(info.value) and info.value.field == "PROXYPOOL_GATEWAY"
    with pytest.raises(ConfigError) as info:
        GatewaySource(value, "crawler01", PASSWORD)
    assert PASSWORD not in str(info.value) and info.value.field == "gateway"


@pytest.mark.parametrize(
    ("value", "ports"),
    [
        ("http://u:Hunter2x@127.0.0.1:8001", [8001]),
        ("127.0.0.1:8001", [8001]),
        ("127.0.0.1:8001, u:Hunter2x@127.0.0.1:8002", [8001, 8002]),
    ],
)
def test_proxy_list_setting_as_a_string_of_proxies_is_read_as_proxies(
    value: str, ports: list[int]
) -> None:
    from scrapy_ext.settings import read_settings

    config = read_settings({"PROXYPOOL_PROXY_LIST": value}, environ={})
    assert isinstance(config.proxy_list, tuple)
    assert [proxy.port for proxy in ListSource(config.proxy_list).proxies] == ports


def test_proxy_list_setting_as_a_path_is_read_as_a_path(tmp_path: Path) -> None:
    from scrapy_ext.settings import read_settings

    path = tmp_path / "my proxies.txt"
    path.write_text("127.0.0.1:8001\n")
    config = read_settings({"PROXYPOOL_PROXY_LIST": str(path)}, environ={})
    assert config.proxy_list == str(path)


def test_gateway_mode_needs_no_api_url_when_the_password_is_given() -> None:
    from scrapy import Spider
    from scrapy.utils.test import get_crawler

    from scrapy_ext import ProxyPoolMiddleware

    crawler = get_crawler(
        Spider,
        {
            "DOWNLOAD_HANDLERS": {
                "http": "scrapy.core.downloader.handlers.http11.HTTP11DownloadHandler",
                "https": "scrapy.core.downloader.handlers.http11.HTTP11DownloadHandler",
            },
            "PROXYPOOL_SOURCE": "gateway",
            "PROXYPOOL_GATEWAY": "127.0.0.1:3120",
            "PROXYPOOL_GATEWAY_USER": "crawler01",
            "PROXYPOOL_GATEWAY_PASSWORD": PASSWORD,
            "PROXYPOOL_APP_KEY": "a-key-but-no-url",  # (from the environment, say)
        },
    )
    middleware = ProxyPoolMiddleware.from_crawler(crawler)
    assert middleware.pool is not None and middleware.source is not None
    gateway = middleware.source.source
    assert isinstance(gateway, GatewaySource) and gateway.client is None
