"""Geography: the ``Geo`` value (country/state/city) and the ``LocationCatalog`` that validates it
against the provider's cached location lists before any extraction is paid for."""

from __future__ import annotations

import difflib
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from cachetools import TTLCache

from ._validate import check_float
from .errors import ApiResponseError, ConfigError, InvalidGeo
from .models import CountryLocations
from .policy import Backoff

__all__ = ["Geo", "LocationCatalog", "LocationSource"]

logger = logging.getLogger(__name__)

_COUNTRY_RE = re.compile(r"^[A-Za-z]{2}$")
# State and city tokens as the provider lists them: letters (any script), digits, spaces and a
# little punctuation. No "/" (it separates the parts of the string form) and no control characters.
_TOKEN_RE = re.compile(r"^[^\W_](?:[\w .'\-()]*[\w.)])?$")
_MAX_TOKEN = 64


def _check_token(value: object, field_name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(
            f"{field_name} must be a string, not {type(value).__name__}", field=field_name
        )
    value = value.strip()
    if not value:
        return None
    if len(value) > _MAX_TOKEN or not _TOKEN_RE.match(value):
        raise ConfigError(
            f"{field_name} {value[:80]!r} is not a valid location name: use letters, digits, "
            f"spaces, '.', '-', \"'\" (at most {_MAX_TOKEN} characters)",
            field=field_name,
        )
    return value


@dataclass(frozen=True, slots=True)
class Geo:
    """Where extracted IPs should come from. Every part is optional; ``Geo()`` means anywhere.

    ``country`` is an ISO 3166 alpha-2 code (stored upper-case); ``state`` and ``city`` are the
    provider's tokens (``"California"``, ``"LosAngeles"``). A state or city needs a country.
    Construction checks the form only; ``LocationCatalog.validate`` checks that the place exists
    and returns it in the provider's canonical spelling.
    """

    country: str | None = None
    state: str | None = None
    city: str | None = None

    def __post_init__(self) -> None:
        country = self.country
        if country is not None:
            if not isinstance(country, str):
                raise ConfigError(
                    f"country must be a string, not {type(country).__name__}", field="country"
                )
            country = country.strip()
            if country and not _COUNTRY_RE.match(country):
                raise ConfigError(
                    f"country {country[:80]!r} is not an ISO 3166 alpha-2 code "
                    "(two letters, e.g. 'US')",
                    field="country",
                )
            country = country.upper() or None
        state = _check_token(self.state, "state")
        city = _check_token(self.city, "city")
        if (state or city) and not country:
            raise ConfigError("a state or city needs a country as well", field="country")
        object.__setattr__(self, "country", country)
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "city", city)

    @classmethod
    def parse(cls, text: str) -> Geo:
        """Parse ``"US"``, ``"US/California"`` or ``"US/California/LosAngeles"``; ``""`` or
        ``"*"`` is anywhere. Inverse of ``str()``."""
        if not isinstance(text, str):
            raise ConfigError(
                f"geo must be a string like 'US/California', not {type(text).__name__}",
                field="geo",
            )
        text = text.strip()
        if text in ("", "*"):
            return cls()
        parts = [p.strip() for p in text.split("/")]
        if len(parts) > 3 or any(not p for p in parts):
            raise ConfigError(
                f"geo {text[:80]!r} must look like 'CC', 'CC/State' or 'CC/State/City'",
                field="geo",
            )
        return cls(*parts)

    @classmethod
    def coerce(cls, value: Geo | str | Mapping[str, Any] | None) -> Geo:
        """Accept a ``Geo``, its string form, a mapping with ``country``/``state``/``city`` keys,
        or ``None`` (anywhere)."""
        if value is None:
            return cls()
        if isinstance(value, Geo):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, Mapping):
            unknown = set(value) - {"country", "state", "city"}
            if unknown:
                raise ConfigError(
                    f"geo has unknown keys {sorted(map(str, unknown))}: "
                    "allowed are 'country', 'state', 'city'",
                    field="geo",
                )
            return cls(value.get("country"), value.get("state"), value.get("city"))
        raise ConfigError(
            "geo must be a Geo, a string like 'US/California' or a dict with country/state/city, "
            f"not {type(value).__name__}",
            field="geo",
        )

    @property
    def is_anywhere(self) -> bool:
        return self.country is None

    def __str__(self) -> str:
        return "/".join(p for p in (self.country, self.state, self.city) if p) or "*"


class LocationSource(Protocol):
    """What ``LocationCatalog`` needs from a client: the provider's two location lists.

    ``ProviderClient`` implements it; tests can pass any object with these two methods.
    """

    def list_state_catalog(self) -> Sequence[CountryLocations]:
        """One entry per country, its items carrying the state tokens."""

    def list_city_catalog(self) -> Sequence[CountryLocations]:
        """One entry per country, its items carrying state and city tokens."""


def _country_code(country: object) -> str:
    """The upper-case code of a country argument; ``ConfigError`` for an empty or malformed one."""
    code = Geo(country).country  # type: ignore[arg-type]  # Geo checks the type itself
    if code is None:
        raise ConfigError(
            "country must be an ISO 3166 alpha-2 code (two letters, e.g. 'US'), not empty",
            field="country",
        )
    return code


def _loose(name: str) -> str:
    """Case- and punctuation-insensitive key: ``"Los Angeles"`` and ``"losangeles"`` agree."""
    return "".join(ch for ch in name.casefold() if ch.isalnum())


def _or_list(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


class _Names:
    """A set of canonical names looked up case-insensitively, then ignoring spaces/punctuation."""

    __slots__ = ("_exact", "_loose", "canonical")

    def __init__(self, names: Iterable[str]) -> None:
        self.canonical: tuple[str, ...] = tuple(dict.fromkeys(n for n in names if n))
        self._exact: dict[str, str] = {}
        # None marks a loose key shared by two different names: too ambiguous to guess.
        self._loose: dict[str, str | None] = {}
        for name in self.canonical:
            self._exact.setdefault(name.casefold(), name)
            key = _loose(name)
            if key in self._loose and self._loose[key] != name:
                self._loose[key] = None
            else:
                self._loose.setdefault(key, name)

    def match(self, name: str) -> str | None:
        hit = self._exact.get(name.casefold())
        return hit if hit is not None else self._loose.get(_loose(name))

    def suggest(self, name: str, limit: int = 3) -> tuple[str, ...]:
        close = difflib.get_close_matches(_loose(name), list(self._loose), n=limit, cutoff=0.6)
        found: list[str] = []
        for key in close:
            canonical = self._loose[key]
            if canonical is None:  # ambiguous key: offer every name that shares it
                found.extend(n for n in self.canonical if _loose(n) == key)
            else:
                found.append(canonical)
        return tuple(dict.fromkeys(found))[:limit]


@dataclass(frozen=True, slots=True)
class _CountryIndex:
    """One country of one location list, indexed for lookups."""

    code: str
    name: str
    states: _Names
    # Keyed by the casefolded state token; "" holds cities listed without a state.
    cities_by_state: Mapping[str, _Names]
    cities: _Names
    # Canonical city -> the states it is listed under (to say where a misplaced city is).
    homes: Mapping[str, tuple[str, ...]]

    @classmethod
    def build(cls, country: CountryLocations) -> _CountryIndex:
        grouped: dict[str, list[str]] = {}
        homes: dict[str, list[str]] = {}
        for item in country.items:
            if item.city:
                grouped.setdefault((item.state or "").casefold(), []).append(item.city)
                if item.state:
                    homes.setdefault(item.city, []).append(item.state)
        return cls(
            code=country.country_code.upper(),
            name=country.name_en,
            states=_Names(country.states),
            cities_by_state={k: _Names(v) for k, v in grouped.items()},
            cities=_Names(country.cities()),
            homes={k: tuple(dict.fromkeys(v)) for k, v in homes.items()},
        )


_Index = Mapping[str, _CountryIndex]


def _build_index(countries: Iterable[CountryLocations]) -> _Index:
    index: dict[str, _CountryIndex] = {}
    for country in countries:
        built = _CountryIndex.build(country)
        index.setdefault(built.code, built)
    return index


class LocationCatalog:
    """The provider's countries, states and cities, fetched through ``client`` and cached.

    Each list is fetched at most once per ``ttl`` seconds (cachetools ``TTLCache`` on the
    injected ``timer``), and only when a lookup needs it: countries and states come from the
    state list; the (larger) city list is fetched the first time a city is validated or listed.
    One fetch serves every validation in that window.

    A failed fetch is not cached, but it is not repeated at once either: for ``retry_delay``
    seconds (doubling with each consecutive failure, at most ``max_retry_delay``) lookups raise
    the same error without asking the provider again, so a broken location endpoint is not
    hammered by every request that needs a geography.

    Thread-safe. Fetches happen outside the lock and are single-flight: concurrent callers wait
    for the fetch in flight and share its result, or its error. Provider errors from the client
    propagate unchanged (``ApiError``, ``ApiConnectionError``, ...); nothing failed is cached, and
    neither is an empty list (``ApiResponseError``: a provider glitch, not a catalog).
    """

    _KINDS: Mapping[str, str] = MappingProxyType(
        {"states": "list_state_catalog", "cities": "list_city_catalog"}
    )

    def __init__(
        self,
        client: LocationSource,
        *,
        ttl: float = 6 * 3600,
        timer: Callable[[], float] = time.monotonic,
        retry_delay: float = 1.0,
        max_retry_delay: float = 60.0,
    ) -> None:
        for method in self._KINDS.values():
            if not callable(getattr(client, method, None)):
                raise ConfigError(
                    f"client must have a {method}() method (a ProviderClient or alike)",
                    field="client",
                )
        ttl = check_float(ttl, "ttl", min=0.0, min_exclusive=True, unit="seconds")
        if not callable(timer):
            raise ConfigError("timer must be a callable returning seconds", field="timer")
        # retry_delay * 2**(n - 1) after n failures in a row, at most max_retry_delay.
        self._backoff = Backoff.doubling(
            check_float(retry_delay, "retry_delay", min=0.0, max=3600.0, unit="seconds"),
            check_float(max_retry_delay, "max_retry_delay", min=0.0, max=86400.0, unit="seconds"),
        )
        self._timer = timer
        self._client = client
        self._cache: TTLCache[str, _Index] = TTLCache(
            maxsize=len(self._KINDS), ttl=ttl, timer=timer
        )
        self._cond = threading.Condition(threading.Lock())
        self._loading: set[str] = set()
        # The error of the last failed fetch per kind, with the fetch's generation, so callers
        # that waited for that fetch raise it instead of starting another one at once.
        self._generation: dict[str, int] = dict.fromkeys(self._KINDS, 0)
        self._failed: dict[str, tuple[int, Exception]] = {}
        # Per kind: consecutive failures, and the timer reading before which none is retried.
        self._failures: dict[str, int] = dict.fromkeys(self._KINDS, 0)
        self._retry_at: dict[str, float] = dict.fromkeys(self._KINDS, -math.inf)

    def _index(self, kind: str) -> _Index:
        with self._cond:
            waited_for: int | None = None
            while True:
                index = self._cache.get(kind)
                if index is not None:
                    return index
                failed = self._failed.get(kind)
                if waited_for is not None and failed is not None and failed[0] == waited_for:
                    raise failed[1].with_traceback(None)
                if failed is not None and self._timer() < self._retry_at[kind]:
                    raise failed[1].with_traceback(None)
                if kind not in self._loading:
                    self._loading.add(kind)
                    self._generation[kind] += 1
                    generation = self._generation[kind]
                    break
                waited_for = self._generation[kind]
                self._cond.wait()
        try:
            raw = getattr(self._client, self._KINDS[kind])()
            index = _build_index(raw)
            if not index:
                # No provider sells IPs in no country: an empty list is a glitch, and caching it
                # would make every geography "unknown" for the whole ttl.
                raise ApiResponseError(
                    f"the provider's location list ({self._KINDS[kind]}) is empty; "
                    "not cached, asked again on the next lookup"
                )
        except Exception as exc:
            with self._cond:
                self._loading.discard(kind)
                self._failed[kind] = (generation, exc)
                self._failures[kind] += 1
                backoff = self._backoff
                delay = backoff.delay(self._failures[kind] - 1) if backoff is not None else 0.0
                self._retry_at[kind] = self._timer() + delay
                self._cond.notify_all()
            raise
        except BaseException:
            # KeyboardInterrupt, SystemExit: this thread's business only. Remember nothing, so
            # no other thread re-raises it; a waiter finds no result and fetches again itself.
            with self._cond:
                self._loading.discard(kind)
                self._cond.notify_all()
            raise
        with self._cond:
            self._cache[kind] = index
            self._loading.discard(kind)
            self._failed.pop(kind, None)
            self._failures[kind] = 0
            self._cond.notify_all()
        logger.debug("location list %s loaded: %d countries", kind, len(index))
        return index

    def clear(self) -> None:
        """Forget the cached lists; the next lookup fetches them again."""
        with self._cond:
            self._cache.clear()

    def _resolve_country(self, country: str) -> _CountryIndex:
        code = _country_code(country)
        states = self._index("states")
        found = states.get(code)
        if found is None:
            suggestions = tuple(difflib.get_close_matches(code, list(states), n=3, cutoff=0.5))
            hint = f"; did you mean {_or_list(suggestions)}?" if suggestions else ""
            raise InvalidGeo(
                f"unknown country {code!r}: the provider lists no such country code{hint}",
                field="country",
                suggestions=suggestions,
            )
        return found

    def _resolve_state(self, country: _CountryIndex, state: str) -> str:
        hit = country.states.match(state)
        if hit is not None:
            return hit
        suggestions = country.states.suggest(state)
        hint = f"; did you mean {_or_list(suggestions)}?" if suggestions else ""
        raise InvalidGeo(
            f"unknown state {state!r} in {country.code}{hint}",
            field="state",
            suggestions=suggestions,
        )

    def _resolve_city(self, code: str, state: str | None, city: str) -> str:
        country = self._index("cities").get(code)
        if country is None:
            raise InvalidGeo(
                f"the provider lists no cities in {code}; leave the city out",
                field="city",
            )
        names = country.cities if state is None else country.cities_by_state.get(state.casefold())
        if names is not None:
            hit = names.match(city)
            if hit is not None:
                return hit
        where = code if state is None else f"{code}/{state}"
        elsewhere = country.cities.match(city) if state is not None else None
        if state is not None and elsewhere is not None:
            homes = [
                h for h in country.homes.get(elsewhere, ()) if h.casefold() != state.casefold()
            ]
            also = f" (it is listed under {_or_list(homes)})" if homes else ""
            raise InvalidGeo(
                f"unknown city {city!r} in {where}{also}", field="city", suggestions=(elsewhere,)
            )
        suggestions = (names or country.cities).suggest(city)
        hint = f"; did you mean {_or_list(suggestions)}?" if suggestions else ""
        raise InvalidGeo(
            f"unknown city {city!r} in {where}{hint}", field="city", suggestions=suggestions
        )

    def validate(self, geo: Geo | str | Mapping[str, Any] | None) -> Geo:
        """Check that ``geo`` exists and return it in the provider's canonical spelling.

        Matching ignores case (and, failing that, spaces and punctuation). Raises ``InvalidGeo``
        naming the unknown part, with close matches in ``.suggestions``; ``ConfigError`` for a
        malformed geo. May fetch the location lists (blocking I/O) on first use.
        """
        geo = Geo.coerce(geo)
        if geo.country is None:
            return geo
        country = self._resolve_country(geo.country)
        state = self._resolve_state(country, geo.state) if geo.state else None
        city = self._resolve_city(country.code, state, geo.city) if geo.city else None
        return Geo(country.code, state, city)

    def countries(self) -> tuple[str, ...]:
        """Every country code the provider lists, in its order."""
        return tuple(self._index("states"))

    def states(self, country: str) -> tuple[str, ...]:
        """The state tokens of ``country`` (any case); ``InvalidGeo`` if the country is unknown,
        ``ConfigError`` (before any fetch) if it is not a two-letter code."""
        return self._resolve_country(country).states.canonical

    def cities(self, country: str, state: str | None = None) -> tuple[str, ...]:
        """The city tokens of ``country``, only those of ``state`` if given (any case);
        ``InvalidGeo`` if the country or state is unknown, ``ConfigError`` (before any fetch) if
        either is malformed."""
        _country_code(country)
        Geo(country, state)  # a malformed state fails here, before the lists are fetched
        found = self._resolve_country(country)
        canonical = self._resolve_state(found, state) if state is not None else None
        in_cities = self._index("cities").get(found.code)
        if in_cities is None:
            return ()
        if canonical is None:
            return in_cities.cities.canonical
        names = in_cities.cities_by_state.get(canonical.casefold())
        return names.canonical if names else ()
