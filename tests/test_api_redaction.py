"""Every secret the client sends is scrubbed from what it raises and logs, not only the app_key:
account passwords (``add_accounts``, ``change_password``) echoed by the provider, the key's JSON
form (what a POST body carries), and secrets cut short by an excerpt (the cut may fall inside a
secret: what is left of it must not show either).

The cut-position tests are property tests over real HTTP answers (hypothesis), the rest run each
write call against a provider that echoes what it received.
"""

from __future__ import annotations

import json
import logging
import re
import string
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _provider import KEY, PREFIX, envelope, make_client
from _secret_scan import exception_texts, leaks, needles, record_texts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from proxypool import ApiError, ProviderClient, ProviderError
from proxypool._redact import REDACTED

PASSWORD_A = "PWAs3cr3tQ1w2e3r4"
PASSWORD_B = "PWBs3cr3tZ9x8c7v6"
NEW_PASSWORD = "NEWs3cr3tL5k4j3h2"
ODD_KEY = "Ké+y/s3cr3t=X%41&Z\u2603"  # percent-, form- and JSON-encoded forms all differ

WRITES: dict[str, tuple[str, Callable[[ProviderClient], Any], tuple[str, ...]]] = {
    "add_accounts": (
        "whitelist-account/add",
        lambda c: c.add_accounts({"userA1": PASSWORD_A, "userB2": PASSWORD_B}),
        (PASSWORD_A, PASSWORD_B),
    ),
    "change_password": (
        "whitelist-account/change-password",
        lambda c: c.change_password("userA1", NEW_PASSWORD),
        (NEW_PASSWORD,),
    ),
}


def echo(mode: str) -> Callable[[Request], Response]:
    """A provider answering with the body it received: in an envelope's message, as an HTML
    error page, a bare 500 or a wrong-shape success."""

    def handler(request: Request) -> Response:
        seen = request.get_data(as_text=True)
        if mode == "message":
            return Response(json.dumps(envelope(code=10001, msg=f"bad accounts: {seen}")))
        if mode == "message-list":
            return Response(json.dumps(envelope(code=10001, msg=[seen, {"seen": seen}])))
        if mode == "html-500":
            return Response(f"<html><pre>{seen}</pre></html>", status=500)
        if mode == "long-html":  # the echoed password falls across the excerpt's cut
            sent = json.loads(seen)
            return Response("<p>" + "x" * 185 + sent.get("accounts", sent.get("password")), 502)
        return Response(f"not json: {seen}", status=200)

    return handler


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    return caplog


def scanned(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    # 'werkzeug' is the stand-in provider's access log, not the client's.
    return [r for r in caplog.records if not r.name.startswith("werkzeug")]


@pytest.mark.parametrize("mode", ["message", "message-list", "html-500", "long-html", "plain"])
@pytest.mark.parametrize("name", list(WRITES))
def test_passwords_echoed_by_the_provider_are_scrubbed(
    httpserver: HTTPServer, debug_logs: pytest.LogCaptureFixture, name: str, mode: str
) -> None:
    path, call, passwords = WRITES[name]
    httpserver.expect_request(f"{PREFIX}/{path}").respond_with_handler(echo(mode))
    client = make_client(httpserver)

    with pytest.raises(ProviderError) as info:
        call(client)

    # The answer did echo them (the provider saw them): the scrub is what keeps them out.
    assert all(p in httpserver.log[0][0].get_data(as_text=True) for p in passwords)
    texts = exception_texts(info.value) + record_texts(scanned(debug_logs))
    found = leaks(texts, needles([KEY, *passwords], credentials=()))
    assert not found, "\n".join(found)
    assert REDACTED in str(info.value) or mode == "long-html"


@pytest.mark.parametrize("name", list(WRITES))
def test_the_key_echoed_from_a_json_body_is_scrubbed(httpserver: HTTPServer, name: str) -> None:
    """A POST carries the key JSON-encoded (``\\u00e9``): that form is a secret too."""
    path, call, _ = WRITES[name]
    httpserver.expect_request(f"{PREFIX}/{path}").respond_with_handler(echo("message"))
    client = make_client(httpserver, key=ODD_KEY)

    with pytest.raises(ApiError) as info:
        call(client)

    assert json.dumps(ODD_KEY)[1:-1] in httpserver.log[0][0].get_data(as_text=True)
    found = leaks(exception_texts(info.value), needles([ODD_KEY, json.dumps(ODD_KEY)[1:-1]]))
    assert not found, "\n".join(found)


# -- secrets cut by an excerpt ------------------------------------------------------------------

# Fillers share no character with the secrets, so any 4 characters of a secret found in an
# excerpt came from the secret itself. 'é' and '☃' shift byte positions against characters.
FILLER = st.text(alphabet="-_. \n\té☃<>" + "ghijkmnop", max_size=300)
# Runs of whitespace, which the excerpt flattens: a secret far into the body then shows.
BLANKS = st.integers(min_value=0, max_value=1000).map(lambda n: " " * n)
BEFORE_ANY = st.tuples(FILLER, BLANKS, FILLER).map("".join)
# ...and aimed at the cuts a client makes: the 800 bytes read for an excerpt (blanks before the
# secret so it still shows after flattening) and the 200 characters shown.
HEAD = st.text(alphabet="-_.éghijk", max_size=20)
NEAR_BYTE_CUT = st.tuples(HEAD, st.integers(min_value=-30, max_value=2)).map(
    lambda t: t[0] + " " * max(0, 800 - len(t[0].encode()) + t[1])
)
NEAR_CHAR_CUT = st.integers(min_value=170, max_value=202).map(lambda n: "g" * n)
BEFORE = st.one_of(BEFORE_ANY, NEAR_BYTE_CUT, NEAR_CHAR_CUT)
THRESHOLD = 4  # what is left of a secret at a cut is at most 3 characters


def fragments(secret: str, size: int = THRESHOLD) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def assert_no_fragment(text: str, secret: str) -> None:
    shown = sorted(f for f in fragments(secret) if f in text)
    assert not shown, f"fragments of the secret survived: {shown} in {text!r}"


class Holder:
    """The answer a handler gives, set by each hypothesis example."""

    status = 500
    body = ""


@pytest.fixture(scope="module")
def cut_server() -> Iterator[tuple[HTTPServer, Holder]]:
    holder = Holder()
    server = HTTPServer(host="127.0.0.1", port=0)
    server.expect_request(re.compile(".*")).respond_with_handler(
        lambda request: Response(holder.body, status=holder.status)
    )
    server.start()
    yield server, holder
    server.stop()


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=BEFORE, after=FILLER, status=st.sampled_from([200, 500]))
def test_a_key_across_the_excerpt_cut_leaves_nothing(
    cut_server: tuple[HTTPServer, Holder], before: str, after: str, status: int
) -> None:
    server, holder = cut_server
    holder.body, holder.status = before + KEY + after, status
    client = make_client(server, retries=0)

    with pytest.raises(ProviderError) as info:
        client.list_accounts()

    for text in (str(info.value), repr(info.value)):
        assert_no_fragment(text, KEY)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=BEFORE, after=FILLER)
def test_a_password_across_the_message_cut_leaves_nothing(
    cut_server: tuple[HTTPServer, Holder], before: str, after: str
) -> None:
    server, holder = cut_server
    holder.body = json.dumps(envelope(code=10001, msg=before + NEW_PASSWORD + after))
    holder.status = 200
    client = make_client(server, retries=0)

    with pytest.raises(ApiError) as info:
        client.change_password("userA1", NEW_PASSWORD)

    assert_no_fragment(str(info.value), NEW_PASSWORD)
    assert_no_fragment(repr(info.value), NEW_PASSWORD)


@given(
    before=st.text(max_size=300),
    after=st.text(max_size=300),
    limit=st.integers(min_value=0, max_value=700),
)
def test_redact_excerpt_over_every_cut(before: str, after: str, limit: int) -> None:
    from proxypool._redact import redact_excerpt

    secret = "ABCDs3cr3tEFGHIJ"
    text = before.translate({ord(c): "_" for c in secret}) + secret + after
    excerpt = redact_excerpt(text, [secret], limit=limit)
    assert_no_fragment(excerpt, secret)
    assert len(excerpt) <= limit + len(REDACTED)


def test_redact_excerpt_keeps_short_matches_of_long_secrets_only_below_the_threshold() -> None:
    from proxypool._redact import redact_excerpt

    secret = "ABCDEFGHIJKLMNOPQRST"
    # Whole in the text: scrubbed before the cut, whatever the cut.
    assert redact_excerpt("x" * 10 + secret, [secret], limit=13) == "x" * 10 + REDACTED
    # Cut before the text came (the first bytes of a body): 3 characters may stay, not 4.
    assert redact_excerpt("x" * 10 + secret[:3], [secret], limit=99) == "x" * 10 + "ABC"
    assert redact_excerpt("x" * 10 + secret[:4], [secret], limit=99) == "x" * 10 + REDACTED
    # A short password: a quarter of it is the most that may remain.
    assert redact_excerpt("x" * 10 + "abc", ["abcdefgh"], limit=99) == "x" * 10 + REDACTED
    assert redact_excerpt("x" * 10 + "a", ["abcdefgh"], limit=99) == "x" * 10 + "a"


WRONG_SHAPES_CUT = [
    ("extract", "ip/v3", {"list": ["x" * 40 + KEY]}),
    ("extract", "ip/v3", {"list": [{"ip": "h" * 50 + KEY, "port": 1}]}),
    ("list_accounts", "whitelist-account/list", {"list": [{"created_at": "d" * 30 + KEY}]}),
    ("daily_usage", "user-usage-flow/total", {"list": [{"day": "d" * 30 + KEY, "flow": 1}]}),
]


@pytest.mark.parametrize(("name", "path", "data"), WRONG_SHAPES_CUT)
def test_values_quoted_short_by_the_parsers_leave_nothing(
    httpserver: HTTPServer, name: str, path: str, data: Any
) -> None:
    """The parsers quote the odd value they met, cut to a few dozen characters."""
    httpserver.expect_request(f"{PREFIX}/{path}").respond_with_json(envelope(data))
    client = make_client(httpserver)
    call: dict[str, Callable[[], Any]] = {
        "extract": lambda: client.extract(num=1),
        "list_accounts": client.list_accounts,
        "daily_usage": client.daily_usage,
    }

    with pytest.raises(ProviderError) as info:
        call[name]()

    assert_no_fragment(str(info.value), KEY)


def test_the_fragment_check_can_fail() -> None:
    with pytest.raises(AssertionError):
        assert_no_fragment("x" * 10 + KEY[:5], KEY)
    assert set(string.ascii_letters) & set(KEY)
