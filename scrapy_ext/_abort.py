"""AbortableSession: the provider session the middleware cuts when the spider closes.

It is ``proxypool._deadline.ProviderSession`` (one machinery for the client's per-call deadline and
for the abort): kept under this name for the middleware and its tests.
"""

from __future__ import annotations

from proxypool._deadline import ProviderSession as AbortableSession

__all__ = ["AbortableSession"]
