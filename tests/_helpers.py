"""Test helpers shared by several test files, written once: a clock that moves only when told
to, and an in-memory proxy source. (Provider-side helpers, such as the client factory
``make_client``, are in ``_provider.py``.)"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from proxypool.geo import Geo
from proxypool.models import Proxy

__all__ = ["FakeClock", "ListSource"]


class FakeClock:
    """A monotonic clock (seconds) that moves only when told to: ``advance()``, or set ``now``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ListSource:
    """A ``ProxySource`` handing out fixed proxies without HTTP, each tagged with the geography
    asked for. Records the geographies asked (``calls``); raises ``error`` when one is set."""

    def __init__(self, proxies: Iterable[Proxy]) -> None:
        self.proxies = list(proxies)
        self.calls: list[Geo | None] = []
        self.error: Exception | None = None

    def extract(self, geo: Geo | None, *, num: int, life: int) -> list[Proxy]:
        self.calls.append(geo)
        if self.error is not None:
            raise self.error
        return [dataclasses.replace(p, geo=geo) for p in self.proxies[:num]]
