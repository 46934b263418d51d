"""The secret-leak scan of ``test_secrets_e2e.py``: the planted secrets, every form in which they
could leak, the texts of log records and exceptions, and a proxy source whose proxies carry a
password.

Every planted secret contains the marker ``s3cr3t``, so a secret cut short (an excerpt of a
response body, a truncated line) is still caught; the base64 of ``user:password`` (what a
``Proxy-Authorization: Basic`` header carries) is looked for too, since it contains no marker.

``CredentialedSource`` is also loaded by the Scrapy crawl subprocess (``PROXYPOOL_SOURCE``), so
this module must not import Scrapy.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import traceback
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from proxypool.api import ProviderClient
from proxypool.geo import Geo
from proxypool.models import CountryLocations, Proxy

APP_KEY = "APPKEYs3cr3tZ9q8w7e6r5t4"
PROXY_USER = "pxyuser7"
PROXY_PASSWORD = "PXYPASSs3cr3tQ1w2e3"
#: Planted where a proxy password is wrong: a refused password is a secret too.
WRONG_PASSWORD = "BADPASSs3cr3tK8j7h6"
#: A proxy account the CLI adds, and the password it then sets.
ACCOUNT_USER = "acctuser9"
ACCOUNT_PASSWORD = "ACCTPASSs3cr3tM4n5b6"
NEW_ACCOUNT_PASSWORD = "NEWPASSs3cr3tV1c2x3"
MARKER = "s3cr3t"

#: The Scrapy setting ``CredentialedSource.from_crawler`` reads the proxy credentials from.
AUTH_SETTING = "SECRETS_PROXY_AUTH"


def basic_auth(user: str, password: str) -> str:
    """The value of a ``Proxy-Authorization: Basic`` header, without the scheme."""
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def needles(
    secrets: Iterable[str] = (
        APP_KEY,
        PROXY_PASSWORD,
        WRONG_PASSWORD,
        ACCOUNT_PASSWORD,
        NEW_ACCOUNT_PASSWORD,
    ),
    credentials: Iterable[tuple[str, str]] = (
        (PROXY_USER, PROXY_PASSWORD),
        (PROXY_USER, WRONG_PASSWORD),
        (ACCOUNT_USER, ACCOUNT_PASSWORD),
    ),
) -> dict[str, str]:
    """Text to look for -> what it is: each secret raw, percent-encoded (both ways) and
    base64-encoded, the base64 of each ``user:password``, and the marker."""
    found: dict[str, str] = {MARKER: "the secrets' marker (a secret, maybe cut short)"}
    for secret in secrets:
        for form, how in (
            (secret, "raw"),
            (quote(secret, safe=""), "percent-encoded"),
            (quote_plus(secret), "form-encoded"),
            (base64.b64encode(secret.encode()).decode().rstrip("="), "base64"),
        ):
            found.setdefault(form, f"{secret[:4]}... ({how})")
    for user, password in credentials:
        for form, how in (
            (basic_auth(user, password).rstrip("="), "base64 user:password"),
            (base64.urlsafe_b64encode(f"{user}:{password}".encode()).decode().rstrip("="), "b64u"),
        ):
            found.setdefault(form, f"{user}:{password[:4]}... ({how})")
    return found


def leaks(
    texts: Iterable[tuple[str, str]], looked_for: Mapping[str, str] | None = None
) -> list[str]:
    """``(where, text)`` pairs -> one line per secret found: where, what, and the text around it.
    Case-insensitive for the marker (a secret upper-cased is still a secret)."""
    wanted = needles() if looked_for is None else looked_for
    found: list[str] = []
    for where, text in texts:
        for needle, what in wanted.items():
            at = text.lower().find(needle.lower()) if needle == MARKER else text.find(needle)
            if at >= 0:
                excerpt = text[max(0, at - 80) : at + len(needle) + 40]
                found.append(f"{where}: {what}: ...{excerpt!r}...")
    return found


_FORMATTER = logging.Formatter("%(asctime)s [%(name)s] %(levelname)s: %(message)s")


def record_texts(records: Iterable[logging.LogRecord]) -> list[tuple[str, str]]:
    """Every text a handler could write for each record: the message, the formatted line with its
    traceback and stack, the raw ``msg`` and ``args``."""
    texts: list[tuple[str, str]] = []
    for record in records:
        where = f"log record {record.name}:{record.lineno}"
        texts.append((where, _FORMATTER.format(record)))
        texts.append((where + " msg/args", f"{record.msg!s} {record.args!r}"))
        if record.exc_info and record.exc_info[1] is not None:
            texts += exception_texts(record.exc_info[1], where=where + " exc_info")
    return texts


def exception_texts(exc: BaseException, *, where: str = "exception") -> list[tuple[str, str]]:
    """The traceback as printed, and for ``exc`` and each exception chained to it (``__cause__``,
    ``__context__``, exception groups) its ``str``, ``repr``, ``args`` and attributes."""
    texts = [(f"{where} traceback", "".join(traceback.format_exception(exc)))]
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        label = f"{where} {type(current).__name__}"
        texts += [
            (label, str(current)),
            (label + " repr", repr(current)),
            (label + " args", repr(current.args)),
            (label + " attributes", repr(getattr(current, "__dict__", {}))),
        ]
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
        todo += list(getattr(current, "exceptions", ()))
    return texts


class CredentialedSource:
    """A ``ProxySource`` giving every IP a ``ProviderClient`` extracts a username and password, as
    proxies of a provider's username:password gateway carry them (the API's extracted IPs have
    none); also a ``LocationSource``, so geographies are validated. Thread-safe as the client is.

    ``credentials``: country code (or ``"*"`` for any other) -> ``(username, password)``, so a
    test can hand one country's proxies a wrong password. For Scrapy:
    ``PROXYPOOL_SOURCE = "_secret_scan.CredentialedSource"``; ``from_crawler`` builds the client
    from ``PROXYPOOL_APP_KEY`` / ``PROXYPOOL_API_URL`` and reads the setting
    ``SECRETS_PROXY_AUTH``: ``{"*": "user:password", "DE": "user:other"}``.
    """

    def __init__(self, client: ProviderClient, credentials: Mapping[str, tuple[str, str]]) -> None:
        self.client = client
        self._credentials = dict(credentials)

    @classmethod
    def from_crawler(cls, crawler: Any) -> CredentialedSource:
        settings = crawler.settings
        pairs = {
            str(country): tuple(str(text).split(":", 1))
            for country, text in dict(settings.getdict(AUTH_SETTING)).items()
        }
        client = ProviderClient(
            settings.get("PROXYPOOL_APP_KEY"), base_url=settings.get("PROXYPOOL_API_URL")
        )
        return cls(client, pairs)  # type: ignore[arg-type]

    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        country = geo.country if geo is not None else None
        user, password = self._credentials.get(country or "*") or self._credentials["*"]
        return [
            dataclasses.replace(proxy, username=user, password=password)
            for proxy in self.client.extract(geo, num=num, life=life)
        ]

    def list_state_catalog(self) -> list[CountryLocations]:
        return self.client.list_state_catalog()

    def list_city_catalog(self) -> list[CountryLocations]:
        return self.client.list_city_catalog()

    def __repr__(self) -> str:
        users = sorted({user for user, _ in self._credentials.values()})
        return f"CredentialedSource(users={users!r}, client={self.client!r})"
