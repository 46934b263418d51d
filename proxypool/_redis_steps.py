"""Cross-process steps of a pool shared through Redis: the first part of issue 15.

What many crawler processes must agree on, each step one Lua script (atomic on the server) on
keys that share the namespace's hash tag (``{proxypool}:...``), so they run on Redis Cluster too,
and timed by the server's clock (``TIME``), not the machines':

- the **refill lease** (``take_lease`` / ``renew_lease`` / ``release_lease``): one extraction in
  flight per name (a geography) across every process; it expires by itself after ``ttl``
  seconds, so a process killed while holding it blocks the others for ``ttl`` at most;
- the **budget** (``reserve`` / ``settle``): ``max_extracted`` as one sum over every process.
  An extraction reserves what it may buy before paying; the reservation is settled with what
  was really bought (a surplus counts too) or given back; a reservation whose holder died
  expires after ``ttl`` seconds and its IPs can be reserved again. The cap is never passed as
  long as ``ttl`` outlasts an extraction (a holder slower than that, not dead, could settle
  after its IPs were granted to another: give ``ttl`` more than the API timeout and retries);
- the **server's clock** (``server_time``): expiry judged the same way on every machine;
- **sticky sessions** (``bind_session`` / ``rebind_session``): a session key means one proxy in
  every process; the first process to bind it wins, and moving it off a banned proxy happens
  once, whoever notices first;
- the **event log** (``publish`` / ``events_after``): what one process learns (a batch bought, a
  ban, a failure, an eviction) for every other to apply to its own view, in order, within one
  poll; a Redis stream, trimmed to ``max_events``.

``ProxyPool`` does not use these yet: the store seam that will (``PoolStore``, ``RedisStore``
keeping each process's view of the pool in step through these) is the next part. Proxy
credentials in a published batch are stored in Redis as they are: protect the Redis as you would
the proxies (the app_key is never stored there). Needs redis-py (``proxypool[redis]``).
The URL's password is a secret: it appears in no repr and no error of this module.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._validate import check_float, check_int, check_text
from .errors import ConfigError

if TYPE_CHECKING:
    import redis

__all__ = ["RedisSteps", "masked_url"]

_TAKE = """
local token = ARGV[1]
local ttl_ms = tonumber(ARGV[2])
if redis.call('SET', KEYS[1], token, 'NX', 'PX', ttl_ms) then return 1 end
return 0
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS: spent (int), reservations (hash holder -> IPs), their expiries (zset holder -> time).
# ARGV: wanted, cap, holder, ttl seconds. Returns the IPs granted (0: none left).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for _, holder in ipairs(dead) do
  redis.call('HDEL', KEYS[2], holder)
  redis.call('ZREM', KEYS[3], holder)
end
local reserved = 0
for _, value in ipairs(redis.call('HVALS', KEYS[2])) do reserved = reserved + tonumber(value) end
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local grant = math.min(tonumber(ARGV[1]), tonumber(ARGV[2]) - spent - reserved)
if grant <= 0 then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[3], grant)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[3])
return grant
"""

# KEYS as above. ARGV: holder, reserved (to give back), bought (to count). Returns the spent sum.
_SETTLE = """
local left = redis.call('HINCRBY', KEYS[2], ARGV[1], -tonumber(ARGV[2]))
if left <= 0 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
return redis.call('INCRBY', KEYS[1], tonumber(ARGV[3]))
"""


# KEYS: the epoch key. ARGV: a candidate. The epoch: the one set, or the candidate if none was
# (the data was lost: a restart without persistence, a flush).
_EPOCH = """
local current = redis.call('GET', KEYS[1])
if current then
  return current
end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""

# KEYS: the session key. ARGV: proxy id, ttl ms. The id bound (ours, or the one bound first).
_BIND = """
local current = redis.call('GET', KEYS[1])
if current then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return current
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return ARGV[1]
"""

# KEYS: the session key. ARGV: old id, new id, ttl ms. Moves the key off ``old`` once: returns
# ``new``, or the id another process moved it to already.
_REBIND = """
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', tonumber(ARGV[3]))
  return ARGV[2]
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return current
"""


def check_namespace(namespace: object) -> str:
    """``namespace`` if it can name a shared pool's keys (their hash tag); else ConfigError."""
    text = check_text(namespace, "namespace", max_len=64)
    if any(c in text for c in "{}: \t\n"):
        raise ConfigError(
            "namespace must not contain braces, ':' or spaces (it is the keys' hash tag)",
            field="namespace",
        )
    return text


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, in the credentials and in a ``password=``
    query parameter (redis-py reads both): for reprs and messages. The credentials are
    everything before the last ``@``, so a password holding ``/``, ``?``, ``#`` or ``@``
    unescaped is masked whole (a URL that cannot be parsed is masked, not shown)."""
    shown = _QUERY_PASSWORD.sub(r"\1***", url)
    scheme, sep, rest = shown.partition("://")
    if not sep:
        return "***" if "@" in shown else shown
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        userinfo = f"{user}:***" if colon else "***"
        rest = f"{userinfo}@{rest}"
    return f"{scheme}://{rest}"


_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)


class RedisSteps:
    """The cross-process steps (see the module docstring) on the Redis at ``url`` (``redis://``,
    ``rediss://`` or ``unix://``), under ``namespace``. ``client``: a ``redis.Redis`` of your
    own instead (the URL then only names it in reprs). Thread-safe as redis-py's client is."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "proxypool",
        client: redis.Redis | None = None,
        max_events: int = 100_000,
    ) -> None:
        if not isinstance(url, str) or urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError("url must be a redis://, rediss:// or unix:// URL", field="url")
        self.namespace = check_namespace(namespace)
        self._shown = masked_url(url)
        if client is None:
            import redis as redis_py

            try:
                client = redis_py.Redis.from_url(url)
            except ValueError as exc:  # a malformed URL: say so without quoting it
                raise ConfigError(
                    f"url {self._shown!r} cannot be used: {type(exc).__name__}", field="url"
                ) from None
        self.client = client
        self._take = client.register_script(_TAKE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)
        self._bind = client.register_script(_BIND)
        self._epoch = client.register_script(_EPOCH)
        self._rebind = client.register_script(_REBIND)
        self.max_events = max_events

    def key(self, name: str) -> str:
        """The Redis key of ``name`` in this namespace (one hash tag for all of them)."""
        return f"{{{self.namespace}}}:{name}"

    def server_time(self) -> float:
        """The Redis server's clock, in seconds since the epoch."""
        seconds, micros = self.client.time()
        return float(seconds) + float(micros) / 1_000_000

    # -- the refill lease -----------------------------------------------------------------------

    def take_lease(self, name: str, ttl: float) -> str | None:
        """Take lease ``name`` for ``ttl`` seconds: a token to renew or release it with, or None
        when another holder has it."""
        token = secrets.token_hex(16)
        ms = _milliseconds(ttl)
        taken = self._take(keys=[self.key(f"lease:{name}")], args=[token, ms])
        return token if int(taken) == 1 else None

    def renew_lease(self, name: str, token: str, ttl: float) -> bool:
        """Extend the lease to ``ttl`` seconds from now; False when it is no longer ours."""
        ms = _milliseconds(ttl)
        return int(self._renew(keys=[self.key(f"lease:{name}")], args=[token, ms])) == 1

    def release_lease(self, name: str, token: str) -> bool:
        """Give the lease back; False when it was no longer ours (it expired, another took it)."""
        return int(self._release(keys=[self.key(f"lease:{name}")], args=[token])) == 1

    # -- the budget -------------------------------------------------------------------------

    def _budget_keys(self) -> list[str]:
        return [self.key("budget:spent"), self.key("budget:held"), self.key("budget:until")]

    def reserve(self, holder: str, wanted: int, cap: int, ttl: float) -> int:
        """Reserve up to ``wanted`` IPs of the budget ``cap`` for ``holder`` (one extraction in
        flight), for ``ttl`` seconds; returns how many were granted (0: the budget is spent or
        held by others). Settle it with ``settle``."""
        check_int(wanted, "wanted", min=1)
        check_int(cap, "cap", min=1)
        seconds = check_float(ttl, "ttl", min=0.0, min_exclusive=True, unit="seconds")
        granted = self._reserve(keys=self._budget_keys(), args=[wanted, cap, holder, seconds])
        return int(granted)

    def settle(self, holder: str, reserved: int, bought: int) -> int:
        """End ``holder``'s reservation of ``reserved`` IPs, counting the ``bought`` ones (0 for
        an extraction that failed); returns what has been spent in all."""
        check_int(reserved, "reserved", min=0)
        check_int(bought, "bought", min=0)
        return int(self._settle(keys=self._budget_keys(), args=[holder, reserved, bought]))

    # -- sticky sessions ----------------------------------------------------------------------

    def bind_session(self, key: str, proxy_id: str, ttl: float) -> str:
        """The proxy session ``key`` means in every process: ``proxy_id`` if the key was free,
        else the one bound first. Either way the binding lives ``ttl`` more seconds."""
        bound = self._bind(keys=[self.key(f"session:{key}")], args=[proxy_id, _milliseconds(ttl)])
        return _text(bound)

    def rebind_session(self, key: str, old: str, new: str, ttl: float) -> str:
        """Move ``key`` off ``old`` (banned, failed) to ``new``: returns ``new``, or the proxy
        another process moved it to first (so every process follows the same move)."""
        bound = self._rebind(keys=[self.key(f"session:{key}")], args=[old, new, _milliseconds(ttl)])
        return _text(bound)

    # -- the event log ------------------------------------------------------------------------

    def publish(self, kind: str, data: Mapping[str, Any]) -> str:
        """Append an event (``kind`` and JSON-able ``data``) for every process; its id. A
        ``"kind"`` or ``"@"`` key in ``data`` is an error: they say the event's kind and id."""
        if "kind" in data or "@" in data:
            raise ValueError("publish: data must not have a 'kind' or '@' key (kind and id)")
        body = json.dumps({"kind": kind, **data}, separators=(",", ":"))
        event_id = self.client.xadd(
            self.key("events"), {"e": body}, maxlen=self.max_events, approximate=True
        )
        return _text(event_id)

    def events_after(
        self, cursor: str = "0-0", *, count: int = 1000, block: float | None = None
    ) -> tuple[str, list[dict[str, Any]]]:
        """The events after ``cursor`` (an event id; ``"0-0"``: from the oldest kept), oldest
        first, at most ``count``; waits up to ``block`` seconds for one when there is none.
        Returns the cursor to pass next time, and the events, each with its id under ``"@"``."""
        timeout = None if block is None else max(1, round(block * 1000))
        answer: Any = self.client.xread({self.key("events"): cursor}, count=count, block=timeout)
        events: list[dict[str, Any]] = []
        for _stream, entries in answer or []:
            for event_id, fields in entries:
                cursor = _text(event_id)
                raw = fields.get(b"e", fields.get("e"))
                event = json.loads(raw)
                event["@"] = cursor
                events.append(event)
        return cursor, events

    def spent(self) -> int:
        """IPs bought so far over every process of the namespace."""
        return int(self.client.get(self.key("budget:spent")) or 0)

    def epoch(self, candidate: str) -> str:
        """The namespace's epoch: set by the first caller (to ``candidate``) and kept while
        Redis keeps its data, so a caller that sees another than it saw before knows the data
        (the budget spent among it) was lost."""
        return _text(self._epoch(keys=[self.key("epoch")], args=[candidate]))

    def __repr__(self) -> str:
        return f"RedisSteps({self._shown!r}, namespace={self.namespace!r})"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _milliseconds(ttl: float) -> int:
    seconds = check_float(ttl, "ttl", min=0.0, min_exclusive=True, unit="seconds")
    return max(1, round(seconds * 1000))
