"""``Service``: the ``with`` block of every simulated part (started on entry, stopped on exit),
written once."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ["Service"]


class Service:
    """A part of the simulated world with ``start()`` (returns itself) and ``close()``; a
    ``with`` block starts it and closes it, also on an error."""

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
