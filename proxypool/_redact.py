"""Redaction of secrets (the app_key, proxy passwords) from text and log records."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

__all__ = ["REDACTED", "RedactingFilter", "install_log_redaction", "redact"]

REDACTED = "***"

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


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return ``text`` with app_key values, URL passwords and the given literal secrets masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _QUERY_KEY_RE.sub(r"\g<1>" + REDACTED, text)
    text = _JSON_KEY_RE.sub(r"\g<1>" + REDACTED, text)
    return _USERINFO_RE.sub(r"\g<1>" + REDACTED + "@", text)


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
