"""Redaction of secrets (the app_key, proxy and account passwords) from text and log records.

Two kinds of masking: patterns that look like a key wherever it comes from (``app_key=...``,
``user:password@`` in URLs), and the literal secrets a caller knows (``redact(text, secrets)``),
in every form they travel in (``secret_forms``: raw, percent-, form- and JSON-encoded).

A text cut short may hold the start of a secret whose end fell past the cut, which an exact match
no longer finds: ``redact_excerpt`` scrubs first, cuts after, then masks what is left of a secret
at the cut; ``clip`` marks a cut with ``CUT`` so that ``redact`` masks such a remnant wherever a
cut shows.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = [
    "CUT",
    "REDACTED",
    "RedactingFilter",
    "clip",
    "install_log_redaction",
    "redact",
    "redact_excerpt",
    "secret_forms",
]

REDACTED = "***"
#: Marks where ``clip`` cut a text: a secret's remnant just before it is masked by ``redact``.
CUT = "\u2026"
#: A remnant of a secret at a cut is masked from this many characters on (fewer for secrets
#: shorter than 16 characters: a quarter of the secret, at least one character).
PARTIAL_MIN = 4

# app_key=VALUE in a query string (also JSON-ish "app_key": "VALUE"), and user:password@ in URLs.
_QUERY_KEY_RE = re.compile(r"(app_key=)[^&\s'\"#;,)]*", re.IGNORECASE)
_JSON_KEY_RE = re.compile(r"""(['"]app_key['"]\s*:\s*['"])[^'"]*""", re.IGNORECASE)
_USERINFO_RE = re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^/\s:@]*:)[^/\s@]*@", re.IGNORECASE)

# urllib3 logs request lines (with the query string) and retry notices (with the URL).
_URLLIB3_LOGGERS = (
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.util.retry",
    "urllib3.response",
)


def secret_forms(secret: str) -> tuple[str, ...]:
    """``secret`` as it may come back: raw, percent-encoded (path and form style) and as a JSON
    string's inside (how a request body carries it, ``\\u00e9`` escapes and all)."""
    forms = (
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    )
    return tuple(dict.fromkeys(f for f in forms if f))


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return ``text`` with app_key values, URL passwords and the given literal secrets masked,
    and what is left of a secret just before a ``CUT`` mark."""
    known = _longest_first(secrets)
    for secret in known:
        text = text.replace(secret, REDACTED)
    text = _QUERY_KEY_RE.sub(r"\g<1>" + REDACTED, text)
    text = _JSON_KEY_RE.sub(r"\g<1>" + REDACTED, text)
    text = _USERINFO_RE.sub(r"\g<1>" + REDACTED + "@", text)
    if CUT in text and known:
        *cut, rest = text.split(CUT)
        text = CUT.join([*(_mask_partial_tail(part, known) for part in cut), rest])
    return text


def redact_excerpt(text: str, secrets: Iterable[str | None], *, limit: int) -> str:
    """At most ``limit`` characters of ``text`` (plus a mask), whitespace runs flattened, with
    every secret masked: scrubbed before the cut, and a secret's start left at the cut masked
    too. The text may itself be a cut (the first bytes of a body): it is treated as cut at its
    end, since nothing says the secret there ended."""
    known = _longest_first(secrets)
    flat = " ".join(redact(text, known).split())
    return _mask_partial_tail(flat[:limit], known)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with ``CUT`` (see ``redact``)."""
    return text if len(text) <= limit else text[:limit] + CUT


def _longest_first(secrets: Iterable[str | None]) -> list[str]:
    # A secret inside another must not be replaced first: the longer one's rest would remain.
    return sorted({s for s in secrets if s}, key=len, reverse=True)


def _partial_min(secret: str) -> int:
    return max(1, min(PARTIAL_MIN, len(secret) // 4))


def _mask_partial_tail(text: str, secrets: Iterable[str]) -> str:
    """Mask the longest start of a secret that ends ``text`` (a cut went through it)."""
    longest = 0
    for secret in secrets:
        for size in range(min(len(secret) - 1, len(text)), _partial_min(secret) - 1, -1):
            if size > longest and text.endswith(secret[:size]):
                longest = size
                break
    return text[: len(text) - longest] + REDACTED if longest else text


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites a record's message with secrets masked. It never drops a
    record and adds no handler or level: attaching it is not configuring logging."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's problem, not ours
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = ()
        return True


def install_log_redaction() -> None:
    """Attach one ``RedactingFilter`` to each urllib3 logger that writes URLs (idempotent)."""
    for name in _URLLIB3_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in target.filters):
            target.addFilter(RedactingFilter())
