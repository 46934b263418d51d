"""Frozen value types parsed from the provider's API, and the enums it uses.

Field names follow the API's own (``usage_flow``, ``limit_flow``, ``trade_no``, ...); values are
parsed into Python types (``datetime``, ``date``, enums). Units are stated on each field. Every
type here is immutable and safe to share between threads.

Times follow one rule: every ``datetime`` a model exposes is timezone-aware. The provider sends
Unix timestamps (read as UTC instants) or text such as ``2024-06-01 00:00:00`` with no offset,
and documents no zone: such text is read as UTC. Text that carries an offset keeps it. Calendar
days (``DailyUsage.date``) are plain ``date`` values, as the provider reports them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from .geo import Geo

__all__ = [
    "Account",
    "AccountStatus",
    "CountryLocations",
    "DailyUsage",
    "LocationItem",
    "Order",
    "Product",
    "ProductPage",
    "ProductType",
    "Proxy",
    "StaticIp",
    "StaticIpPage",
    "StaticIpStatus",
]


class ProductType(enum.IntEnum):
    """The provider's package types (``product_type``)."""

    DYNAMIC_RESIDENTIAL_TRAFFIC = 9
    DYNAMIC_RESIDENTIAL_IP = 11
    STATIC_DATACENTER_IP = 14
    STATIC_RESIDENTIAL_IP = 25


class AccountStatus(enum.IntEnum):
    """A proxy account's ``status``."""

    DISABLED = 0
    ENABLED = 1


class StaticIpStatus(enum.IntEnum):
    """The ``status`` filter of the static-IP list."""

    VALID = 1
    INVALID = 2
    EXPIRING_SOON = 3
    MAINTENANCE = 4


@dataclass(frozen=True, slots=True)
class Account:
    """A username:password proxy account (``whitelist-account/list``).

    ``usage_flow`` is traffic used, in KB. ``limit_flow`` is the traffic cap in GB (0 = unlimited)
    as the provider documents it. ``password`` is hidden from ``repr``.
    """

    id: int | None
    username: str
    password: str = field(repr=False)
    created_at: datetime | None
    remark: str
    product_type: ProductType | int | None
    usage_flow: int
    limit_flow: int
    status: AccountStatus | int | None

    @property
    def enabled(self) -> bool:
        return self.status == AccountStatus.ENABLED


@dataclass(frozen=True, slots=True)
class DailyUsage:
    """Traffic used on one day (``user-usage-flow/total``); ``flow`` is in KB."""

    day: date
    flow: int


@dataclass(frozen=True, slots=True)
class Order:
    """The order a package was bought with."""

    created_at: datetime | None
    pay_at: datetime | None
    title: str


@dataclass(frozen=True, slots=True)
class Product:
    """A purchased package (``user-product/list``). No traffic is served after ``expired_at``."""

    id: int | None
    created_at: datetime | None
    expired_at: datetime | None
    product_type: ProductType | int | None
    trade_no: str
    order: Order | None


@dataclass(frozen=True, slots=True)
class ProductPage:
    """One page of packages, with the paging fields the API returns."""

    items: tuple[Product, ...]
    page: int
    page_size: int
    total_count: int
    total_page: int


@dataclass(frozen=True, slots=True)
class LocationItem:
    """One state (and, in the city list, one city) of a country's location list."""

    country_code: str
    state: str | None
    city: str | None = None
    continent_code: str | None = None


@dataclass(frozen=True, slots=True)
class CountryLocations:
    """One country of ``ip/dynamic-citys`` or ``ip/dynamic-states``, with its items."""

    country_code: str
    name_en: str
    name_zh_cn: str
    continent_code: str | None
    items: tuple[LocationItem, ...]

    @property
    def states(self) -> tuple[str, ...]:
        """Distinct state tokens of this country, in the provider's order."""
        return tuple(dict.fromkeys(i.state for i in self.items if i.state))

    def cities(self, state: str | None = None) -> tuple[str, ...]:
        """Distinct city tokens, optionally only those of ``state`` (exact token)."""
        return tuple(
            dict.fromkeys(
                i.city for i in self.items if i.city and (state is None or i.state == state)
            )
        )


@dataclass(frozen=True, slots=True)
class StaticIp:
    """A static IP (``ip/get-static-ip``). The provider does not document this schema, so the
    entry is kept whole in ``raw``; the fields below are filled where the entry has them."""

    raw: Mapping[str, Any] = field(repr=False)
    ip: str | None = None
    port: int | None = None
    country_code: str | None = None
    product_type: ProductType | int | None = None
    status: StaticIpStatus | int | None = None
    trade_no: str | None = None
    expired_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StaticIpPage:
    """The static-IP list as returned: ``items`` parsed, ``raw`` the untouched ``data``."""

    items: tuple[StaticIp, ...]
    raw: Any = field(repr=False)
    page: int | None = None
    total_count: int | None = None


# Characters ``quote(..., safe="")`` leaves as they are (RFC 3986 unreserved, ASCII only).
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch


@dataclass(frozen=True, slots=True)
class Proxy:
    """One proxy endpoint. ``url`` is what to hand to an HTTP client (credentials included);
    ``repr``/``str`` show ``host:port`` only (and a gateway ``session``), so a proxy can be logged
    safely.

    Extracted IPs authenticate by whitelisted IP, so ``username``/``password`` are usually None.
    ``session``: for a session of a rotating gateway (``GatewaySource``), its id, so the logs
    tell one session from another at the same ``host:port``; not a secret, and not part of
    ``==`` or ``hash`` (the username, which carries it, is).
    """

    host: str
    port: int
    scheme: str = field(default="http", kw_only=True)
    username: str | None = field(default=None, kw_only=True, repr=False)
    password: str | None = field(default=None, kw_only=True, repr=False)
    geo: Geo | None = field(default=None, kw_only=True, compare=False)
    session: str | None = field(default=None, kw_only=True, compare=False)
    # ``url``, built on first use: a proxy's URL is asked for on every request it carries.
    _url: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 hosts bracketed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """``scheme://[user:password@]host:port``, credentials percent-encoded. Contains secrets:
        never log it. Built on first use and kept in the private field ``_url``, which
        ``dataclasses.asdict``/``astuple`` and pickles carry along with ``password`` (never
        ``repr``, ``str``, ``==`` or ``hash``); ``dataclasses.replace`` builds it anew."""
        url = self._url
        if url is None:  # (written out: with 10k proxies nearly every request builds one)
            host = self.host
            if ":" in host:
                host = f"[{host}]"
            user = self.username
            if user is None:
                url = f"{self.scheme}://{host}:{self.port}"
            else:
                if not (user.__class__ is str and _UNRESERVED(user)):
                    user = quote(user, safe="")
                password = self.password
                if password is not None:
                    if not (password.__class__ is str and _UNRESERVED(password)):
                        password = quote(password, safe="")
                    user = f"{user}:{password}"
                url = f"{self.scheme}://{user}@{host}:{self.port}"
            object.__setattr__(self, "_url", url)  # frozen: set once, same value every time
        return url

    def __str__(self) -> str:
        if self.session is not None:
            return f"{self.address} (session {self.session})"
        return self.address

    def __repr__(self) -> str:
        session = f", session={self.session!r}" if self.session is not None else ""
        geo = f", geo={str(self.geo)!r}" if self.geo is not None else ""
        return f"Proxy({self.address!r}{session}{geo})"
