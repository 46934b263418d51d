"""Where the pool's proxies come from.

- ``ProxySource``: the protocol every source follows, ``extract(geo, *, num, life)``.
- ``ExtractionSource(client)``: IPs extracted from the provider (``ip/v3``), paid for one by one.
  ``ProxyPool(client)`` with a ``ProviderClient`` wraps it in one.
- ``GatewaySource(gateway, username, password)``: sessions of the provider's username:password
  rotating gateway (the proxy accounts), minted without an API call: free, each lasts ``life``.
- ``StaticIPSource(client)``: the account's static IPs (``ip/get-static-ip``): free, lasting.
- ``ListSource(proxies)``: your own proxies (URLs or ``host:port``, inline or a file): free,
  lasting.
- ``CheckedSource(source)``: a wrapper that drops extracted proxies refusing TCP connections
  (``reachable``), counts what was extracted, and logs one INFO line per extraction. Used by the
  Scrapy middleware; usable with the requests adapter as well.

What a source declares (``source_terms``): ``paid`` (each proxy costs money: the pool counts it
in ``extracted`` and against ``max_extracted``, cuts a surplus and stops buying in a ban storm;
default True, the safe side for a source that says nothing) and ``expires`` (each proxy lasts
``life`` minutes from its extraction; default True). Class attributes, read once by the pool.

The geography validator is given to the pool (``catalog=``); ``catalog_for`` makes the one a
provider-backed source needs. Nothing probes a source for methods.

Why check reachability at all: an extracted IP that is already offline costs a request slot
until the connection fails (~0.3 s per refused connection inside Twisted's ``HostnameEndpoint``,
up to ``DOWNLOAD_TIMEOUT`` for one that never answers) and then a retry. One non-blocking TCP
connect per distinct ``host:port``, all in parallel, right after the extraction and in the same
worker thread, costs one round trip per batch instead; nothing is sent over the connection.

Money: what the check drops was still paid for. ``extract`` returns an ``ExtractedBatch`` whose
``handed_over`` is the number of IPs the provider returned, and the pool counts that against
``max_extracted``, so the cap holds whether the proxies are reachable or not, inside Scrapy or
out. An answer with more IPs than asked for is cut to ``num`` before the check (the pool logs
the surplus), so a provider that over-delivers costs no extra probing.

``CheckedSource.extract`` blocks: the pool calls it from ``refill``, in a worker thread, never on
an event loop.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import re
import secrets
import selectors
import socket
import string
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from ._env import GATEWAY_PASSWORD_ENV, GATEWAY_USER_ENV
from ._validate import MAX_LIFE_MINUTES, check_int, shown
from .api import ProviderClient
from .errors import AccountError, ConfigError
from .geo import Geo, LocationCatalog
from .models import ProductType, Proxy, StaticIp, StaticIpStatus

__all__ = [
    "GATEWAY_FORMATS",
    "CheckedSource",
    "ExtractedBatch",
    "ExtractionSource",
    "GatewaySource",
    "ListSource",
    "ProxySource",
    "SourceCounters",
    "StaticIPSource",
    "catalog_for",
    "handed_over",
    "reachable",
    "source_terms",
]

logger = logging.getLogger(__name__)

Address = tuple[str, int]

# Addresses probed at once (reachable's max_open): one wave of them takes one timeout at most.
_PROBE_AT_ONCE = 256

# connect() on a non-blocking socket answers one of these while the handshake is under way.
_IN_PROGRESS = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, errno.EAGAIN})


def reachable(
    addresses: Iterable[Address],
    *,
    timeout: float,
    max_open: int = _PROBE_AT_ONCE,
    clock: Callable[[], float] = time.monotonic,
) -> set[Address]:
    """The ``(host, port)`` pairs that accept a TCP connection within ``timeout`` seconds.

    Connections are opened in parallel (at most ``max_open`` sockets at once) and closed as soon
    as they are established; hosts that are not IP literals are resolved first (blocking DNS, so
    call this from a worker thread). Thread-safe: it shares nothing.
    """
    todo = deque(dict.fromkeys(addresses))
    ok: set[Address] = set()
    selector = selectors.DefaultSelector()
    pending: dict[socket.socket, tuple[float, Address]] = {}  # connecting: deadline, address
    try:
        while todo or pending:
            while todo and len(pending) < max_open:
                address = todo.popleft()
                started = _start_connect(address)
                if isinstance(started, socket.socket):
                    selector.register(started, selectors.EVENT_WRITE)
                    pending[started] = (clock() + timeout, address)
                elif started:
                    ok.add(address)
            if not pending:
                continue
            wait = min(deadline for deadline, _ in pending.values()) - clock()
            for key, _ in selector.select(max(0.0, wait)):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                _, address = pending.pop(sock)
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    ok.add(address)
                selector.unregister(sock)
                sock.close()
            now = clock()
            for sock in [s for s, (deadline, _) in pending.items() if deadline <= now]:
                del pending[sock]  # timed out
                selector.unregister(sock)
                sock.close()
    finally:
        for sock in pending:
            sock.close()
        selector.close()
    return ok


def _start_connect(address: Address) -> socket.socket | bool | None:
    """Start a non-blocking connect: the socket while it is under way, True if it connected at
    once, None if it failed at once (refused, unroutable, unresolvable)."""
    host, port = address
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError):
        return None
    family, kind, proto, _, sockaddr = info
    sock = socket.socket(family, kind, proto)
    sock.setblocking(False)
    try:
        code = sock.connect_ex(sockaddr)
    except OSError:
        sock.close()
        return None
    if code == 0:
        sock.close()
        return True
    if code in _IN_PROGRESS:
        return sock
    sock.close()
    return None


class SourceCounters:
    """Totals over the crawl, updated under a lock by worker threads: ``extractions`` (calls that
    answered), ``extracted`` (IPs the provider handed out), ``rejected`` (of those, IPs that
    refused connections), ``failed`` (calls that raised)."""

    __slots__ = ("extracted", "extractions", "failed", "rejected")

    def __init__(self) -> None:
        self.extractions = 0
        self.extracted = 0
        self.rejected = 0
        self.failed = 0


class CheckedSource:
    """Wraps a ``ProxySource`` (usually a ``ProviderClient``) for the pool.

    ``extract`` calls the wrapped source, then, when ``check`` is true, keeps only the proxies
    whose ``host:port`` accepts a TCP connection within ``timeout`` seconds. Returns an
    ``ExtractedBatch``: the proxies kept, and how many the provider handed over (all of them
    count against the pool's ``max_extracted``). A free source (``paid = False``: a list, static
    IPs) hands over all it has at each refill: only its first 256 addresses are probed, the rest
    join unprobed, so a refill never waits more than ``timeout`` on a long list. Logs one INFO
    line per extraction (a WARNING when every proxy of a batch was rejected). Thread-safe;
    blocking, so it belongs in worker threads, which is where the pool calls it.
    """

    def __init__(
        self,
        source: ProxySource,
        *,
        check: bool = True,
        timeout: float = 3.0,
        probe: Callable[..., set[Address]] = reachable,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.check = check
        self.timeout = timeout
        self._probe = probe
        self._clock = clock
        self._lock = threading.Lock()
        self._counters = SourceCounters()
        self.paid, self.expires = source_terms(source)  # what it wraps declares

    def counters(self) -> SourceCounters:
        """A snapshot of the totals."""
        snapshot = SourceCounters()
        with self._lock:
            for name in SourceCounters.__slots__:
                setattr(snapshot, name, getattr(self._counters, name))
        return snapshot

    def extract(self, geo: Geo | None, *, num: int, life: int) -> ExtractedBatch:
        started = self._clock()
        try:
            answer = self.source.extract(geo, num=num, life=life)
            proxies = list(answer)
        except Exception:
            with self._lock:
                self._counters.failed += 1
            raise
        count = handed_over(answer, len(proxies))
        if self.paid:
            del proxies[num:]  # the pool keeps at most num: no point probing the surplus
        kept = proxies
        if self.check and proxies:
            addresses = list(dict.fromkeys((p.host, p.port) for p in proxies))
            unprobed: set[Address] = set()
            if not self.paid and len(addresses) > _PROBE_AT_ONCE:
                # A free source hands over its whole list at every refill (a list of 10,000):
                # one wave of probes, so the wait stays one timeout; the rest join unprobed and
                # meet the pool's usual health checks, as they would with the check off.
                unprobed = set(addresses[_PROBE_AT_ONCE:])
                addresses = addresses[:_PROBE_AT_ONCE]
            alive = self._probe(set(addresses), timeout=self.timeout) | unprobed
            kept = [p for p in proxies if (p.host, p.port) in alive]
        rejected = len(proxies) - len(kept)
        with self._lock:
            self._counters.extractions += 1
            self._counters.extracted += count
            self._counters.rejected += rejected
        where = str(geo) if geo is not None else "anywhere"
        elapsed = self._clock() - started
        if proxies and not kept:
            logger.warning(
                "proxypool: refill for %s: all %d extracted proxies refuse connections (%.2f s)",
                where,
                count,
                elapsed,
            )
        else:
            logger.info(
                "proxypool: refill for %s: %d proxies extracted (asked for %d), %d rejected as "
                "unreachable, %.2f s",
                where,
                count,
                num,
                rejected,
                elapsed,
            )
        lasts = answer.lasts if isinstance(answer, ExtractedBatch) else None
        return ExtractedBatch(kept, handed_over=count, lasts=lasts)


class ProxySource(Protocol):
    """Anything that extracts proxies: ``ProviderClient``, or a fake in tests and benchmarks.

    ``geo`` is ``None`` for "anywhere"; ``life`` is in minutes. Expected to raise
    ``ProviderError`` subclasses for provider trouble (``AccountError`` when retrying cannot help).
    """

    def extract(self, geo: Geo | None, *, num: int, life: int) -> Iterable[Proxy]: ...


class ExtractedBatch(list[Proxy]):
    """What a ``ProxySource`` (or a wrapper) returns when a plain list does not say enough: the
    proxies, plus ``handed_over``, how many the provider returned (an unreachable-proxy check
    may have dropped some; the pool counts ``handed_over`` against ``max_extracted``: every IP
    handed over was paid for, used or not; a plain list counts its length), and ``lasts``:
    seconds each listed proxy has left (a static IP's package ends then), for a source whose
    proxies do not expire by ``life``; the pool retires them then (minus its expiry margin)."""

    __slots__ = ("handed_over", "lasts")

    def __init__(
        self,
        proxies: Iterable[Proxy] = (),
        *,
        handed_over: int,
        lasts: Mapping[Proxy, float] | None = None,
    ) -> None:
        super().__init__(proxies)
        self.handed_over = handed_over
        self.lasts: Mapping[Proxy, float] = dict(lasts) if lasts else {}


def handed_over(result: object, kept: int) -> int:
    """How many IPs the provider handed over for an extraction that returned ``result`` holding
    ``kept`` proxies: ``ExtractedBatch.handed_over`` (never fewer than were kept). For wrappers
    of a ``ProxySource`` (they pass the count of the source they wrap on)."""
    count = getattr(result, "handed_over", None)
    if isinstance(count, int) and not isinstance(count, bool) and count > kept:
        return count
    return kept


class ExtractionSource:
    """IPs extracted from the provider (``ip/v3``) through ``client``: each one is paid for.

    ``ProxyPool(ExtractionSource(client))`` and ``ProxyPool(client)`` behave the same: either
    way the pool validates geographies with the client's location lists (``catalog_for``)."""

    __slots__ = ("client",)

    #: Each proxy costs money. (The pool does not read this yet: it counts every source's
    #: proxies in ``extracted`` and against ``max_extracted``.)
    paid = True

    def __init__(self, client: ProviderClient) -> None:
        if not isinstance(client, ProviderClient):
            raise ConfigError(
                f"ExtractionSource needs a ProviderClient, not {type(client).__name__}",
                field="client",
            )
        self.client = client

    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        return self.client.extract(geo, num=num, life=life)

    def __repr__(self) -> str:
        return f"ExtractionSource({self.client!r})"


def catalog_for(
    source: object, *, timer: Callable[[], float] = time.monotonic
) -> LocationCatalog | None:
    """The location catalog that validates geographies for ``source`` before it is used: one
    over the provider's lists for a ``ProviderClient``, an ``ExtractionSource`` or a
    ``GatewaySource`` with a ``client`` (or a ``CheckedSource`` around one), None for any other
    source (a source of your own: pass the pool a ``catalog=`` if it needs one)."""
    while isinstance(source, CheckedSource):
        source = source.source
    if isinstance(source, ExtractionSource | GatewaySource):
        source = source.client
    if isinstance(source, ProviderClient):
        return LocationCatalog(source, timer=timer)
    return None


def source_terms(source: object) -> tuple[bool, bool]:
    """``(paid, expires)`` as ``source`` declares them (class or instance attributes): ``paid``,
    each proxy costs money (counted in ``extracted`` and against ``max_extracted``); ``expires``,
    each proxy lasts ``life`` minutes from its extraction. Both default to True: a source that
    says nothing is treated as one that bills per IP and whose IPs run out, the safe side."""
    terms = []
    for name in ("paid", "expires"):
        value = getattr(source, name, True)
        if not isinstance(value, bool):
            raise ConfigError(
                f"{type(source).__name__}.{name} must be True or False, not {shown(value)}",
                field=name,
            )
        terms.append(value)
    return terms[0], terms[1]


# -- your own list ---------------------------------------------------------------------------------

_SCHEMES = ("http", "https")


def _parse_entry(entry: object, where: str) -> Proxy:
    """One list entry (``host:port``, ``user:password@host:port`` or a URL) as a Proxy. Errors
    name ``where`` (the entry's position) and never show a password."""
    if isinstance(entry, Proxy):
        return entry
    if not isinstance(entry, str):
        raise ConfigError(
            f"{where}: expected a proxy URL or host:port, not {type(entry).__name__}",
            field="proxies",
        )
    text = entry.strip()
    scheme, sep, rest = text.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):  # ('://' may be inside a password)
        scheme, rest = "http", text
    scheme = scheme.lower()
    if scheme not in _SCHEMES:
        raise ConfigError(
            f"{where}: scheme {scheme!r} is not supported; use http:// or https:// proxies",
            field="proxies",
        )
    # Credentials first, split at the last '@' (a host or port never has one): a password may
    # hold '/', '?', '#' or ':' unescaped, and nothing of it may reach an error message.
    username = password = None
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        user_text, colon, password_text = userinfo.partition(":")
        username = unquote(user_text)
        password = unquote(password_text) if colon else None
    try:
        parts = urlsplit(f"{scheme}://{rest}")
        port = parts.port
        host = parts.hostname
    except ValueError:  # a port out of range or not a number, a bad IPv6 literal
        raise ConfigError(
            f"{where}: not a valid host:port (the port is a number from 1 to 65535; an IPv6 "
            "address goes in brackets)",
            field="proxies",
        ) from None
    if not host:
        raise ConfigError(f"{where}: no host", field="proxies")
    if port is None:
        raise ConfigError(f"{where}: no port (write host:port)", field="proxies")
    if not 0 < port < 65536:
        raise ConfigError(f"{where}: port {port} is out of range", field="proxies")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{where}: a proxy URL has no path, query or fragment", field="proxies")
    if not _host_ok(host):
        raise ConfigError(f"{where}: {host!r} is not a valid host name", field="proxies")
    return Proxy(host, port, scheme=scheme, username=username, password=password)


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def _host_ok(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in host.split("."))


_COMMENT = re.compile(r"(?:^|\s)#.*")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def _lines_of(path: Path) -> list[tuple[str, str]]:
    """``(where, entry)`` per proxy line of ``path``: blank lines and ``#`` comments skipped (a
    comment starts a line or follows a space)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        shown_path = str(path)
        if "@" in shown_path:  # a URL with credentials given as a path: never echo them
            shown_path = "***@" + shown_path.rpartition("@")[2]
        raise ConfigError(
            f"proxy list {shown_path!r} cannot be read: {exc.__class__.__name__}: "
            f"{getattr(exc, 'strerror', None) or exc}",
            field="proxies",
        ) from None
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        # A comment starts a line or follows a space: a '#' inside a password is its own.
        entry = _COMMENT.sub("", line).strip()
        if entry:
            found.append((f"{path.name} line {number}", entry))
    return found


class ListSource:
    """Your own proxies: ``proxies`` is an iterable of proxy URLs (``http://user:pw@host:port``,
    ``https://host:port``) or ``host:port`` (http), or a ``pathlib.Path`` (or ``str`` path via
    ``ListSource.from_file``) of a file with one per line (blank lines and ``#`` comments, at a
    line's start or after a space, are skipped). Entries are checked when the source is made
    (``ConfigError`` naming the entry's position, never its password); duplicates count once.

    Free and lasting (``paid = False``, ``expires = False``): every ``extract`` hands the pool the
    whole list, so it keeps them all; a proxy the pool evicted joins again at its next refill
    (as scrapy-rotating-proxies revives its dead proxies). A list has no geography: asking one
    is an error. ``len()`` is the number of proxies."""

    paid = False
    expires = False

    __slots__ = ("_proxies",)

    def __init__(self, proxies: Iterable[str | Proxy] | Path) -> None:
        if isinstance(proxies, Path):
            entries = _lines_of(proxies)
        elif isinstance(proxies, str | bytes) or not isinstance(proxies, Iterable):
            raise ConfigError(
                "proxies must be a list of proxy URLs or host:port, or a pathlib.Path of a file "
                f"of them, not {type(proxies).__name__}",
                field="proxies",
            )
        else:
            entries = [(f"entry {n}", e) for n, e in enumerate(proxies, 1)]  # type: ignore[misc]
        parsed = dict.fromkeys(_parse_entry(entry, where) for where, entry in entries)
        if not parsed:
            raise ConfigError("the proxy list is empty", field="proxies")
        self._proxies = tuple(parsed)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ListSource:
        """The proxies of the file at ``path`` (one per line, ``#`` comments)."""
        return cls(Path(path))

    def __len__(self) -> int:
        return len(self._proxies)

    @property
    def proxies(self) -> tuple[Proxy, ...]:
        return self._proxies

    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        if geo is not None and not geo.is_anywhere:
            raise ConfigError(
                f"a proxy list has no geography, so {str(geo)!r} cannot be served from it: "
                "leave the geography unset, or use a source that has one",
                field="geo",
            )
        return list(self._proxies)

    def __repr__(self) -> str:
        return f"ListSource({len(self._proxies)} proxies)"


# -- static IPs --------------------------------------------------------------------------------

_USER_KEYS = ("username", "user", "account", "login", "proxy_user")
_MAX_STATIC_PAGES = 1000
_PASSWORD_KEYS = ("password", "pwd", "pass", "passwd", "proxy_password")
_UNUSABLE = (StaticIpStatus.INVALID, StaticIpStatus.MAINTENANCE)


def _raw_text(raw: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = raw.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


class StaticIPSource:
    """The account's static IPs (``ip/get-static-ip``, every page), optionally of one
    ``product_type`` (14 datacenter, 25 residential) or ``country_code``.

    The provider does not document the entries: each gives its address (``ip``/``host`` and
    ``port``), and where present credentials (``username``/``user``/``account`` and
    ``password``/``pwd``/``pass``), a ``country_code``, a ``status`` and an ``expired_at``. An
    entry without a usable address is skipped and counted (``skipped``); so is one whose status
    is invalid or under maintenance, or whose package has expired (``expired``).

    Free and lasting (``paid = False``, ``expires = False``): bought with their package, never by
    the pool, and never retired by ``life``; they leave the pool when they fail, and an IP whose
    package has expired is not handed over again. A geography is matched on the country (the
    list says nothing finer: a state or city is an error)."""

    paid = False
    expires = False

    def __init__(
        self,
        client: ProviderClient,
        *,
        product_type: ProductType | int | None = None,
        country_code: str | None = None,
        page_size: int = 100,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not isinstance(client, ProviderClient):
            raise ConfigError(
                f"StaticIPSource needs a ProviderClient, not {type(client).__name__}",
                field="client",
            )
        self.client = client
        self.product_type = product_type
        self.country_code = None if country_code is None else Geo(country_code).country
        self.page_size = check_int(page_size, "page_size", min=1, max=1000)
        self._now = now
        self._lock = threading.Lock()
        self.skipped = 0  # entries without a usable address, over every extract
        self.expired = 0  # entries left out: package expired, or status invalid/maintenance

    def static_ips(self) -> list[StaticIp]:
        """Every static IP of the account (all pages), as listed."""
        found: list[StaticIp] = []
        seen: set[tuple[str | None, int | None]] = set()
        page = 1
        while True:
            listed = self.client.list_static_ips(
                country_code=self.country_code,
                product_type=self.product_type,
                page=page,
                size=self.page_size,
            )
            addresses = {(item.ip, item.port) for item in listed.items}
            if addresses and addresses <= seen:
                # A provider that ignores ``page`` answers the same page again: it is the end.
                logger.warning(
                    "proxypool: the static IP list repeated itself at page %d; stopped there", page
                )
                break
            seen |= addresses
            found.extend(listed.items)
            total = listed.total_count
            if not listed.items or len(listed.items) < self.page_size:
                break
            if total is not None and len(found) >= total:
                break
            page += 1
            if page > _MAX_STATIC_PAGES:  # a provider that pages forever
                logger.warning(
                    "proxypool: the static IP list goes on past %d pages; stopped there",
                    _MAX_STATIC_PAGES,
                )
                break
        return found

    def extract(self, geo: Geo | None, *, num: int, life: int) -> ExtractedBatch:
        if geo is not None and (geo.state or geo.city):
            raise ConfigError(
                f"static IPs are listed by country only, so {str(geo)!r} cannot be matched: "
                "ask for a country",
                field="geo",
            )
        country = geo.country if geo is not None else None
        now = self._now()
        proxies: dict[Proxy, None] = {}
        lasts: dict[Proxy, float] = {}
        skipped = expired = 0
        for item in self.static_ips():
            if not item.ip or item.port is None or not 0 < item.port < 65536:
                skipped += 1
                continue
            if item.status in _UNUSABLE or (item.expired_at is not None and item.expired_at <= now):
                expired += 1
                continue
            if country and (item.country_code or "").upper() != country:
                continue
            host = item.ip.strip().strip("[]")
            if not _host_ok(host):
                skipped += 1
                continue
            proxy = Proxy(
                host,
                item.port,
                username=_raw_text(item.raw, _USER_KEYS),
                password=_raw_text(item.raw, _PASSWORD_KEYS),
                geo=geo,
            )
            proxies[proxy] = None
            if item.expired_at is not None:  # it leaves the pool when its package ends
                lasts[proxy] = (item.expired_at - now).total_seconds()
        with self._lock:
            self.skipped += skipped
            self.expired += expired
        if skipped:
            logger.warning(
                "proxypool: %d static IP entries had no usable address and were skipped", skipped
            )
        return ExtractedBatch(proxies, handed_over=len(proxies), lasts=lasts)

    def __repr__(self) -> str:
        return f"StaticIPSource({self.client!r})"


# -- the rotating gateway ---------------------------------------------------------------------

#: Username grammars, by name. Placeholders: ``{user}``, ``{country}``, ``{state}``, ``{city}``,
#: ``{life}`` (minutes), ``{session}``; ``{country:lower}`` (or ``:upper``) changes the case. A
#: placeholder and the text before it (back to the previous placeholder) form a segment, left
#: out when its value is empty; ``[...]`` makes a segment of its own (left out when any
#: placeholder inside is empty).
GATEWAY_FORMATS: dict[str, str] = {
    # The white-label family this provider belongs to (smartproxy, and brands prefixing the user:
    # ``smart-USER_...``, ``pl-USER_...``, ``lumi-USER_...``): confirmed by the provider's page.
    "smartproxy": "{user}_area-{country}_state-{state}_city-{city}_life-{life}_session-{session}",
    # The all-hyphen family, from public examples (``user-USER-region-us-sessid-X-sesstime-90``).
    # Not confirmed against a live gateway: the city key is a guess.
    "sessid": "user-{user}-region-{country:lower}-st-{state:lower}-city-{city:lower}"
    "-sessid-{session}-sesstime-{life}",
    # ``USER-zone-custom-region-us-st-newyork-city-x-session-X-sessTime-5``, from public
    # examples. Not confirmed against a live gateway.
    "zone": "{user}-zone-custom[-region-{country:lower}]-st-{state:lower}-city-{city:lower}"
    "-session-{session}-sessTime-{life}",
    # ``customer-USER-cc-US-st-us_california-sessid-X-sesstime-5``, from public examples. Not
    # confirmed against a live gateway: the city key is a guess.
    "customer": "customer-{user}-cc-{country}[-st-{country:lower}_{state:lower}]"
    "-city-{city:lower}-sessid-{session}-sesstime-{life}",
}

_PLACEHOLDERS = frozenset({"user", "country", "state", "city", "life", "session"})
_TOKEN = re.compile(r"\[([^\[\]{}]*(?:\{[^{}]*\}[^\[\]{}]*)*)\]|\{([^{}]*)\}")
_FIELD = re.compile(r"(\w+)(?::(lower|upper))?")
_SESSION_CHARS = string.ascii_letters + string.digits

# A segment: literal text and the placeholders in it, as (text, name, case) parts.
_Part = tuple[str, str | None, str | None]


def _compile(template: str) -> list[list[_Part]]:
    """``template`` as segments (see ``GATEWAY_FORMATS``); ConfigError naming ``format``."""
    segments: list[list[_Part]] = []
    pending = ""
    at = 0

    def field_of(spec: str) -> _Part:
        match = _FIELD.fullmatch(spec)
        if match is None or match.group(1) not in _PLACEHOLDERS:
            raise ConfigError(
                f"format: unknown placeholder {{{spec}}}; allowed: "
                + ", ".join(f"{{{name}}}" for name in sorted(_PLACEHOLDERS)),
                field="format",
            )
        return ("", match.group(1), match.group(2))

    def literal(text: str) -> str:
        if any(c in text for c in "[]{}"):
            raise ConfigError(
                f"format: unbalanced brackets or braces in {template!r}", field="format"
            )
        return text

    for match in _TOKEN.finditer(template):
        pending += literal(template[at : match.start()])
        at = match.end()
        if match.group(1) is not None:  # [...]: one segment
            if pending:
                segments.append([(pending, None, None)])
                pending = ""
            inner = match.group(1)
            parts: list[_Part] = []
            last = 0
            for field_match in re.finditer(r"\{([^{}]*)\}", inner):
                if field_match.start() > last:
                    parts.append((inner[last : field_match.start()], None, None))
                part = field_of(field_match.group(1))
                if part[1] in ("user", "session"):
                    raise ConfigError(
                        f"format: {{{part[1]}}} cannot be inside [...] (an optional segment, "
                        f"left out when a value in it is empty): {template!r}",
                        field="format",
                    )
                parts.append(part)
                last = field_match.end()
            if last < len(inner):
                parts.append((inner[last:], None, None))
            segments.append(parts)
        else:
            segments.append([(pending, None, None), field_of(match.group(2))])
            pending = ""
    pending += literal(template[at:])
    if pending:
        segments.append([(pending, None, None)])
    names = {name for segment in segments for _, name, _ in segment if name}
    for needed in ("user", "session"):
        if needed not in names:
            raise ConfigError(
                f"format must contain {{{needed}}} (each minted proxy is one session of the "
                f"account): {template!r}",
                field="format",
            )
    return segments


def _separators(segments: list[list[_Part]]) -> str:
    """The characters that begin a segment of the grammar (``_`` for the white-label family,
    ``-`` for the hyphen ones): a value holding one would be read as a new segment."""
    found = ""
    for segment in segments[1:]:
        text = segment[0][0] if segment else ""
        if text and not text[0].isalnum() and text[0] not in found:
            found += text[0]
    return found


def _render(segments: list[list[_Part]], values: Mapping[str, str]) -> str:
    out = []
    for segment in segments:
        text = []
        for literal, name, case in segment:
            if name is None:
                text.append(literal)
                continue
            value = values.get(name, "")
            if not value:
                break
            text.append(value.lower() if case == "lower" else value.upper() if case else value)
        else:
            out.append("".join(text))
    return "".join(out)


def _gateway_address(gateway: object) -> tuple[str, int]:
    if not isinstance(gateway, str) or not gateway.strip():
        raise ConfigError(
            f"gateway must be 'host:port' (the provider's rotating gateway), not {shown(gateway)}",
            field="gateway",
        )
    text = gateway.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    if "@" in text:
        raise ConfigError(
            "gateway must be 'host:port' without credentials: give username and password "
            "(or PROXYPOOL_GATEWAY_USER / PROXYPOOL_GATEWAY_PASSWORD)",
            field="gateway",
        )
    try:
        proxy = _parse_entry(text, "gateway")
    except ConfigError as exc:
        raise ConfigError(str(exc), field="gateway") from None
    return proxy.host, proxy.port


class GatewaySource:
    """Sessions of the provider's username:password rotating gateway, the way its proxy accounts
    (``whitelist-account/*``) are used. ``gateway`` is ``host:port``.

    Each minted proxy is one gateway session: the gateway's address, the account's password, and
    a username that carries the geography, ``life`` and a fresh random session id (10 letters
    and digits), so each one exits from its own IP for ``life`` minutes. ``format`` is a name in
    ``GATEWAY_FORMATS`` (default ``"smartproxy"``, the white-label family:
    ``crawler01_area-US_state-California_life-15_session-Ab12Cd34Ef``) or a template of your own
    with the same placeholders. Geography goes in as the pool hands it over: validated with the
    provider's location lists first when the pool has a catalog (``catalog_for`` makes one when
    ``client`` is given), so the catalog's canonical tokens are what the username carries.

    ``username`` and ``password`` fall back to the environment (``PROXYPOOL_GATEWAY_USER`` /
    ``PROXYPOOL_GATEWAY_PASSWORD``). With a username but no password, and a ``client``, the
    password is looked up with ``client.list_accounts()`` at the first extraction; an unknown or
    disabled account is then an ``AccountError``, which stops the pool before any request is
    sent. The password never appears in a repr, a log line or an error.

    Free (``paid = False``: minting calls no API; the provider bills the traffic) and timed
    (``expires = True``: a session lasts ``life`` minutes)."""

    paid = False
    expires = True

    def __init__(
        self,
        gateway: str,
        username: str | None = None,
        password: str | None = None,
        *,
        format: str = "smartproxy",
        client: ProviderClient | None = None,
        session_id: Callable[[], str] | None = None,
    ) -> None:
        self.host, self.port = _gateway_address(gateway)
        if username is None:
            username = os.environ.get(GATEWAY_USER_ENV) or None
        if password is None:
            password = os.environ.get(GATEWAY_PASSWORD_ENV) or None
        if not isinstance(username, str) or not username.strip():
            raise ConfigError(
                f"username is required: the proxy account's name (or set {GATEWAY_USER_ENV})",
                field="username",
            )
        self.username = username.strip()
        if re.search(r"[\s:@]", self.username):
            raise ConfigError(
                f"username {self.username!r} must not contain spaces, ':' or '@'",
                field="username",
            )
        if password is not None and not isinstance(password, str):
            raise ConfigError("password must be a string", field="password")
        if password is None and client is None:
            raise ConfigError(
                f"password is required (or set {GATEWAY_PASSWORD_ENV}, or pass client= to look "
                "it up among the proxy accounts)",
                field="password",
            )
        if client is not None and not isinstance(client, ProviderClient):
            raise ConfigError(
                f"client must be a ProviderClient, not {type(client).__name__}", field="client"
            )
        if not isinstance(format, str) or not format:
            raise ConfigError(
                "format must be a name in GATEWAY_FORMATS or a template string", field="format"
            )
        template = GATEWAY_FORMATS.get(format, format)
        if template is format and "{" not in format:
            raise ConfigError(
                f"format {format!r} is not a known grammar: use one of "
                f"{', '.join(sorted(GATEWAY_FORMATS))} or a template with {{user}} and "
                "{session}",
                field="format",
            )
        self.format = format
        self._segments = _compile(template)
        self._separators = _separators(self._segments)
        clash = sorted({c for c in self.username if c in self._separators})
        if clash:
            raise ConfigError(
                f"username {self.username!r} holds {', '.join(map(repr, clash))}, which "
                f"separates the segments of the {format!r} grammar: the gateway would misread "
                "it (use the account's name as the provider lists it)",
                field="username",
            )
        self.client = client
        self._password = password
        self._password_lock = threading.Lock()
        self._session_id = session_id if session_id is not None else _new_session_id

    def username_for(
        self, geo: Geo | None = None, *, life: int | None = None, session: str | None = None
    ) -> str:
        """The username of one session: ``geo`` (canonical tokens), ``life`` minutes, ``session``
        (a fresh id when None). Pure: no API call."""
        if life is not None:
            life = check_int(life, "life", min=1, max=MAX_LIFE_MINUTES, unit="minutes")
        session = self._session(session)
        place = geo if geo is not None else Geo()
        values = {
            "user": self.username,
            "country": _token(place.country),
            "state": _token(place.state),
            "city": _token(place.city),
            "life": "" if life is None else str(life),
            "session": session,
        }
        return _render(self._segments, values)

    def _session(self, session: str | None) -> str:
        """``session``, or a fresh id from ``session_id``; either checked (letters and digits:
        anything else would break the grammar, and the gateway would refuse the account)."""
        given = session is not None
        value = session if given else self._session_id()
        if not isinstance(value, str) or not _SESSION_ID.fullmatch(value):
            source = "session" if given else "session_id() returned"
            raise ConfigError(
                f"{source} {shown(value)}: a session id is 1 to 64 letters and digits",
                field="session" if given else "session_id",
            )
        return value

    def password(self) -> str:
        """The account's password: as given, from the environment, or looked up (once) with
        ``client.list_accounts()``. Raises ``AccountError`` for an unknown or disabled account."""
        with self._password_lock:
            if self._password is not None:
                return self._password
            assert self.client is not None  # checked in __init__
            for account in self.client.list_accounts():
                if account.username == self.username:
                    if not account.enabled:
                        raise AccountError(
                            f"proxy account {self.username!r} is disabled: enable it "
                            "(proxypool accounts enable) or use another"
                        )
                    self._password = account.password
                    return account.password
            raise AccountError(
                f"proxy account {self.username!r} is not among the account's proxy accounts "
                "(proxypool accounts list)"
            )

    def proxy(
        self, geo: Geo | None = None, *, life: int | None = None, session: str | None = None
    ) -> Proxy:
        """One session as a Proxy (see ``username_for``)."""
        session = self._session(session)
        return Proxy(
            self.host,
            self.port,
            username=self.username_for(geo, life=life, session=session),
            password=self.password(),
            geo=geo,
            session=session,
        )

    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        password = self.password()
        proxies = []
        for _ in range(num):
            session = self._session(None)
            proxies.append(
                Proxy(
                    self.host,
                    self.port,
                    username=self.username_for(geo, life=life, session=session),
                    password=password,
                    geo=geo,
                    session=session,
                )
            )
        return proxies

    def __repr__(self) -> str:
        return f"GatewaySource({self.host}:{self.port}, user={self.username!r})"


_SESSION_ID = re.compile(r"[A-Za-z0-9]{1,64}")


def _token(value: str | None) -> str:
    """A place as one token of the username: letters and digits only (the provider's own
    spelling, ``NewYork``; a catalog already gives it so). Spaces, ``_``, ``-`` and other
    punctuation would split the grammar's segments, and the gateway would refuse the account."""
    return re.sub(r"[\W_]+", "", value) if value else ""


def _new_session_id() -> str:
    return "".join(secrets.choice(_SESSION_CHARS) for _ in range(10))
