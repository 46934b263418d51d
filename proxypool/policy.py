"""Small pluggable policies for the pool: rotation strategies, backoff, and ban detection.

Rotation strategies decide which pooled item a ``get()`` hands out next. They are written against
one small interface, :class:`RotationStrategy`, so the pool (and its contract tests) treat them
alike:

- ``add(item)`` puts an item into rotation;
- ``pick(verdict)`` offers items in the strategy's order to ``verdict``, which answers
  :data:`Verdict.SERVE` (hand it out), :data:`Verdict.SKIP` (not for this request, keep it) or
  :data:`Verdict.DROP` (gone for good: remove it). The first item served is returned; ``None``
  means every item was skipped or dropped. Each item is offered at most once per call, so a call
  costs O(items examined): O(1) when the first candidate is usable, which is the normal case
  because the pool drops dead items lazily as the strategy meets them.

Strategies hold no lock: the pool calls them under its own. :class:`Backoff` is an immutable
exponential-backoff policy with configurable jitter; :class:`StatusBanPolicy` is the default ban
check shared by the integrations.
"""

from __future__ import annotations

import enum
import heapq
import inspect
import itertools
import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, Protocol, TypeVar

from ._validate import check_float, shown
from .errors import ConfigError

__all__ = [
    "DEFAULT_BAN_STATUSES",
    "IDEMPOTENT_METHODS",
    "STRATEGIES",
    "Backoff",
    "BanPolicy",
    "LeastUsedRotation",
    "RandomRotation",
    "RotationStrategy",
    "RoundRobinRotation",
    "StatusBanPolicy",
    "Verdict",
    "ban_check",
    "make_strategy",
]

T = TypeVar("T")

DEFAULT_BAN_STATUSES: tuple[int, ...] = (403, 429)
"""HTTP statuses treated as "this site has banned this proxy" unless configured otherwise."""

IDEMPOTENT_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""HTTP methods a request may be sent again with once it may have reached the site (RFC 9110
idempotent methods; the set urllib3's ``Retry.DEFAULT_ALLOWED_METHODS`` holds). Any other method
(POST, PATCH, ...) is never replayed after the site may have seen it."""


class Verdict(enum.Enum):
    """A pool's answer when a strategy offers it an item."""

    SERVE = "serve"
    """Hand this item out; the strategy counts it as used."""
    SKIP = "skip"
    """Not usable for this request (e.g. banned for the requested domain); keep it in rotation."""
    DROP = "drop"
    """Gone (expired, evicted, cooling down): remove it from rotation."""


# Bound once: enum attribute lookups are measurable in the per-get hot path.
_SERVE = Verdict.SERVE
_DROP = Verdict.DROP


class RotationStrategy(Protocol[T]):
    """The interface every rotation strategy implements. Not thread-safe: the caller locks."""

    def add(self, item: T) -> None:
        """Put ``item`` into rotation. The caller never adds an item that is already in it."""

    def pick(self, verdict: Callable[[T], Verdict]) -> T | None:
        """Offer items in this strategy's order until ``verdict`` serves one; return it.

        Every item is offered at most once per call. Dropped items are removed and never offered
        again; skipped items stay. Returns ``None`` when no item was served.
        """

    def clear(self) -> None:
        """Remove every item."""

    def __len__(self) -> int:
        """Items in rotation, including ones a later ``pick`` will drop."""


class RoundRobinRotation(Generic[T]):
    """Round robin over a ring (a ``deque``): the served item moves to the back. O(1) per pick."""

    __slots__ = ("_ring",)

    def __init__(self) -> None:
        self._ring: deque[T] = deque()

    def add(self, item: T) -> None:
        self._ring.append(item)

    def pick(self, verdict: Callable[[T], Verdict]) -> T | None:
        ring = self._ring
        for _ in range(len(ring)):
            item = ring.popleft()
            answer = verdict(item)
            if answer is _DROP:
                continue
            ring.append(item)
            if answer is _SERVE:
                return item
        return None

    def clear(self) -> None:
        self._ring.clear()

    def __len__(self) -> int:
        return len(self._ring)


class RandomRotation(Generic[T]):
    """Uniformly random choice from a list, with swap-remove for dropped items. O(1) per pick.

    ``rng`` is the source of randomness (inject a seeded ``random.Random`` for reproducibility).
    """

    __slots__ = ("_items", "_rng")

    def __init__(self, rng: random.Random | None = None) -> None:
        self._items: list[T] = []
        self._rng = rng if rng is not None else random.Random()

    def add(self, item: T) -> None:
        self._items.append(item)

    def pick(self, verdict: Callable[[T], Verdict]) -> T | None:
        items = self._items
        draw = self._rng.random
        # items[:unseen] have not been offered in this call; items[unseen:] were offered and kept.
        unseen = len(items)
        while unseen:
            i = int(draw() * unseen)
            item = items[i]
            answer = verdict(item)
            if answer is _SERVE:
                return item
            unseen -= 1
            items[i] = items[unseen]
            if answer is _DROP:
                # Slot ``unseen`` is now free: fill it with the last item and shrink the list.
                last = items.pop()
                if unseen < len(items):
                    items[unseen] = last
            else:
                items[unseen] = item
        return None

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class LeastUsedRotation(Generic[T]):
    """The item served the fewest times so far (ties: the one waiting longest). O(log n) per pick.

    A min-heap of ``(times_served, sequence, item)``; the sequence number keeps ties in FIFO
    order, so items never need to be comparable.
    """

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, T]] = []
        self._seq = itertools.count()

    def add(self, item: T) -> None:
        # A newcomer joins at the current minimum so it is not flooded with every request until
        # it has caught up with items that have been in rotation for hours.
        uses = self._heap[0][0] if self._heap else 0
        heapq.heappush(self._heap, (uses, next(self._seq), item))

    def pick(self, verdict: Callable[[T], Verdict]) -> T | None:
        heap = self._heap
        skipped: list[tuple[int, int, T]] = []
        served: T | None = None
        while heap:
            uses, _, item = top = heap[0]
            answer = verdict(item)
            if answer is _SERVE:
                heapq.heapreplace(heap, (uses + 1, next(self._seq), item))
                served = item
                break
            heapq.heappop(heap)
            if answer is not _DROP:
                skipped.append(top)
        for entry in skipped:
            heapq.heappush(heap, entry)
        return served

    def clear(self) -> None:
        self._heap.clear()

    def __len__(self) -> int:
        return len(self._heap)


def _round_robin(rng: random.Random) -> RotationStrategy[T]:
    return RoundRobinRotation()


def _random(rng: random.Random) -> RotationStrategy[T]:
    return RandomRotation(rng)


def _least_used(rng: random.Random) -> RotationStrategy[T]:
    return LeastUsedRotation()


STRATEGIES: Mapping[str, Callable[[random.Random], RotationStrategy[object]]] = MappingProxyType(
    {"round_robin": _round_robin, "random": _random, "least_used": _least_used}
)
"""Strategy names accepted by ``ProxyPool(strategy=...)``, mapped to factories taking the pool's
random generator."""


def make_strategy(name: str, rng: random.Random) -> RotationStrategy[object]:
    """A new, empty strategy called ``name``; ``ConfigError`` (field ``strategy``) if unknown."""
    factory = STRATEGIES.get(name) if isinstance(name, str) else None
    if factory is None:
        raise ConfigError(
            f"strategy {shown(name)} is unknown: use one of {', '.join(map(repr, STRATEGIES))}",
            field="strategy",
        )
    return factory(rng)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: attempt ``n`` (0-based) waits up to ``min(cap, base * 2**n)`` seconds.

    The one backoff of the package: the pool's proxy cooldown and extraction backoff, the
    client's retries of a failed GET and the location catalog's pause after a failed fetch.

    ``jitter`` is the fraction of that ceiling drawn at random: ``1.0`` is "full jitter" (uniform
    in ``(0, ceiling]``), ``0.5`` keeps at least half the ceiling, ``0.0`` is deterministic.
    Immutable and thread-safe; the random generator is passed in by the caller.
    """

    base: float = 1.0
    cap: float = 60.0
    jitter: float = 1.0

    def __post_init__(self) -> None:
        base = check_float(self.base, "base", min=0.0, min_exclusive=True, unit="seconds")
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "cap", check_float(self.cap, "cap", min=base, unit="seconds"))
        object.__setattr__(self, "jitter", check_float(self.jitter, "jitter", min=0.0, max=1.0))

    def ceiling(self, attempt: int) -> float:
        """The longest wait for 0-based ``attempt``, in seconds (no overflow for large ones)."""
        if attempt <= 0:
            return self.base
        # Compare exponents instead of computing 2**attempt, which overflows a float.
        if attempt >= math.log2(self.cap / self.base):
            return self.cap
        return self.base * 2.0**attempt

    @classmethod
    def doubling(cls, base: float, cap: float) -> Backoff | None:
        """The deterministic backoff ``min(cap, base * 2**n)`` (no jitter) that the client's
        retries and the location catalog's failed fetches use; None when ``base`` or ``cap`` is
        0 (no pause). ``base`` above ``cap`` waits ``cap`` every time."""
        if base <= 0 or cap <= 0:
            return None
        return cls(base=min(base, cap), cap=cap, jitter=0.0)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before the next try after 0-based ``attempt`` failed; always > 0.
        ``rng`` draws the jitter (the ``random`` module's generator when None)."""
        ceiling = self.ceiling(attempt)
        if not self.jitter:
            return ceiling
        if rng is None:
            return ceiling * (1.0 - self.jitter * random.random())
        # 1 - random() lies in (0, 1], so full jitter never yields a zero delay.
        return ceiling * (1.0 - self.jitter * rng.random())


class BanPolicy(Protocol):
    """Decides whether a response means the target site has banned the proxy that fetched it.

    One protocol for both integrations: the Scrapy middleware (``PROXYPOOL_BAN_POLICY``) and the
    requests adapter (``ban_policy=``) both call ``is_ban(status, body)`` with the answer's HTTP
    status and its decoded body, so one policy serves both. Each also accepts a policy written
    against its own objects, ``is_ban(request, response)`` (Scrapy's, or requests'
    ``PreparedRequest`` and ``Response``), for a rule that needs the URL or the headers; which
    form a policy has is read from its parameters' names (``status, body`` or ``request,
    response``: see ``ban_check``). A plain function of either form works as well."""

    def is_ban(self, status: int, body: bytes = b"") -> bool:
        """``True`` if a response with this HTTP ``status`` and (decoded) ``body`` is a ban."""


#: The parameter names of each form of ``is_ban`` (see ``BanPolicy``): first, then second.
_STATUS_FORM = ("status", "status_code", "code")
_REQUEST_FORM = ("request", "req", "r", "rq")
_BODY_SECOND = ("body", "text", "content", "data")
_RESPONSE_SECOND = ("response", "resp", "res", "rsp")


def ban_check(policy: object, *, field: str) -> tuple[Callable[..., Any], bool]:
    """``policy``'s ban test and its form: ``(fn, True)`` for ``is_ban(status, body)`` (the
    shared ``BanPolicy``), ``(fn, False)`` for ``is_ban(request, response)`` (an integration's
    own objects). ``policy`` is an object with ``is_ban`` or a function. The form is read from
    the first parameter's name (``status``, ``code``; ``request``, ``req``, ``r``), else from
    the second's (``body``, ``text``; ``response``, ``resp``); ``*args`` alone is the
    ``(request, response)`` form, which gets everything. ``ConfigError`` naming ``field`` when
    it is neither an object with ``is_ban`` nor a function, or when its names say neither form
    (guessing would silently never see a ban)."""
    if isinstance(policy, type):
        raise ConfigError(
            f"{field} must be a ban policy object, not the class {policy.__name__}: "
            f"pass {policy.__name__}()",
            field=field,
        )
    fn = getattr(policy, "is_ban", None)
    if not callable(fn):
        if isinstance(policy, type) or not callable(policy):
            raise ConfigError(
                f"{field} must have an is_ban(status, body) method (a BanPolicy) or "
                f"is_ban(request, response), or be such a function; got {shown(policy)}",
                field=field,
            )
        fn = policy
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        parameters = []
    positional = [
        p.name
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    first = positional[0] if positional else ""
    second = positional[1] if len(positional) > 1 else ""
    if first in _STATUS_FORM or (first not in _REQUEST_FORM and second in _BODY_SECOND):
        return fn, True
    if first in _REQUEST_FORM or second in _RESPONSE_SECOND:
        return fn, False
    if parameters and parameters[0].kind is inspect.Parameter.VAR_POSITIONAL:
        return fn, False
    raise ConfigError(
        f"{field}: cannot tell which form its is_ban has: name its parameters (status, body), "
        "the BanPolicy both integrations call, or (request, response); got "
        f"({', '.join(positional)})",
        field=field,
    )


@dataclass(frozen=True, slots=True, init=False)
class StatusBanPolicy:
    """A ban is any response whose status is in ``statuses`` (default 403 and 429)."""

    statuses: frozenset[int]

    def __init__(self, statuses: Iterable[int] = DEFAULT_BAN_STATUSES) -> None:
        if isinstance(statuses, (str, bytes)):
            checked: tuple[object, ...] = (statuses,)
        else:
            try:
                checked = tuple(statuses)
            except TypeError:
                raise ConfigError(
                    f"ban_statuses must be a collection of HTTP status codes such as "
                    f"[403, 429], not {type(statuses).__name__}",
                    field="ban_statuses",
                ) from None
        codes: list[int] = []
        for status in checked:
            if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
                raise ConfigError(
                    f"ban_statuses must hold HTTP status codes (100-599); "
                    f"{shown(status)} is not one",
                    field="ban_statuses",
                )
            codes.append(status)
        object.__setattr__(self, "statuses", frozenset(codes))

    def is_ban(self, status: int, body: bytes = b"") -> bool:
        return status in self.statuses
