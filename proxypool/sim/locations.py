"""The simulator's location catalog: a few countries with their states and cities.

Tokens are spelt as the provider spells them in ``ip/dynamic-states`` and ``ip/dynamic-citys``:
no spaces (``"NewYork"``, ``"LosAngeles"``). Everything here is immutable (tuples), so one
catalog can be shared by every simulator and thread.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LOCATIONS", "SimCountry", "SimState", "find_country", "find_state"]


@dataclass(frozen=True, slots=True)
class SimState:
    """A state (province) token and the city tokens under it."""

    name: str
    cities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SimCountry:
    """A country of the catalog: ISO 3166 alpha-2 code, names, continent and states."""

    country_code: str
    name_en: str
    name_zh_cn: str
    continent_code: str
    states: tuple[SimState, ...]


DEFAULT_LOCATIONS: tuple[SimCountry, ...] = (
    SimCountry(
        "US",
        "United States",
        "美国",
        "NA",
        (
            SimState("California", ("LosAngeles", "SanFrancisco", "SanDiego")),
            SimState("NewYork", ("NewYork", "Buffalo")),
            SimState("Texas", ("Houston", "Dallas", "Austin")),
            SimState("Florida", ("Miami",)),
        ),
    ),
    SimCountry(
        "GB",
        "United Kingdom",
        "英国",
        "EU",
        (
            SimState("England", ("London", "Manchester")),
            SimState("Scotland", ("Edinburgh",)),
        ),
    ),
    SimCountry(
        "DE",
        "Germany",
        "德国",
        "EU",
        (
            SimState("Berlin", ("Berlin",)),
            SimState("Bavaria", ("Munich",)),
        ),
    ),
    SimCountry(
        "JP",
        "Japan",
        "日本",
        "AS",
        (
            SimState("Tokyo", ("Tokyo",)),
            SimState("Osaka", ("Osaka",)),
        ),
    ),
    SimCountry(
        "BR",
        "Brazil",
        "巴西",
        "SA",
        (SimState("SaoPaulo", ("SaoPaulo",)),),
    ),
)


def find_country(catalog: tuple[SimCountry, ...], code: str) -> SimCountry | None:
    """The country whose code matches ``code`` case-insensitively, or None."""
    wanted = code.strip().upper()
    return next((c for c in catalog if c.country_code == wanted), None)


def find_state(country: SimCountry, name: str) -> SimState | None:
    """The state of ``country`` whose token matches ``name`` case-insensitively, or None."""
    wanted = name.strip().casefold()
    return next((s for s in country.states if s.name.casefold() == wanted), None)
