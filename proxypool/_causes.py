"""causes(): an exception and the lower-level errors it wraps, as requests and urllib3 nest them."""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["causes"]

_MAX_CAUSES = 32  # exceptions examined in one error's chain (args, reason, cause, context)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the errors it wraps: requests and urllib3 nest the real one in ``args``
    (``MaxRetryError``), ``reason``, ``__cause__`` and ``__context__``. At most 32, each once."""
    seen: set[int] = set()
    pending = [exc]
    while pending and len(seen) < _MAX_CAUSES:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
        for linked in (getattr(current, "reason", None), current.__cause__, current.__context__):
            if isinstance(linked, BaseException):
                pending.append(linked)
