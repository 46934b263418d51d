"""``RedisStore``: the steps pools take together (``proxypool.store``) on Redis, so every process
and machine that names the same Redis and namespace shares one pool. Each step is one Lua script
(``proxypool._redis_steps``) on keys that share the namespace's hash tag. Needs redis-py
(``pip install 'proxypool[redis]'``), imported when a store is made."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from ._validate import check_float, check_int
from .errors import ConfigError
from .store import StoreUnavailable

__all__ = ["RedisStore"]


class RedisStore:
    """The store's steps on Redis (see the module docstring): every pool that names the same
    ``url`` and ``namespace`` acts as one. ``url`` is a ``redis://``, ``rediss://`` or
    ``unix://`` URL (a password in it is kept secret); ``namespace`` separates teams or
    projects on one Redis. ``max_events`` bounds the event log (a Redis stream, trimmed);
    ``socket_timeout`` (seconds) bounds each command, so a Redis that stops answering is
    noticed. Needs redis-py (``proxypool[redis]``)."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "proxypool",
        max_events: int = 10_000,
        socket_timeout: float = 5.0,
    ) -> None:
        from ._redis_steps import RedisSteps, masked_url

        timeout = check_float(
            socket_timeout, "socket_timeout", min=0.0, min_exclusive=True, unit="seconds"
        )
        max_events = check_int(max_events, "max_events", min=100)
        try:
            import redis
        except ImportError:  # (redis-py is a dev dependency: the tests always have it)
            raise ConfigError(
                "RedisStore needs redis-py: pip install 'proxypool[redis]'", field="url"
            ) from None
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("url must be a redis://, rediss:// or unix:// URL", field="url")
        self._redis = redis
        self._shown = masked_url(url)
        try:
            # Bounded waits, so a Redis that stops answering is noticed; the connection opens
            # on the first command. The reader's blocking reads wait a few seconds more.
            client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            reader = redis.Redis.from_url(
                url, socket_timeout=timeout + 5.0, socket_connect_timeout=timeout
            )
        except ValueError as exc:  # a malformed URL: say so without quoting it
            raise ConfigError(
                f"url {self._shown!r} cannot be used: {type(exc).__name__}", field="url"
            ) from None
        self._steps = RedisSteps(url, namespace=namespace, client=client, max_events=max_events)
        self._reader = RedisSteps(url, namespace=namespace, client=reader, max_events=max_events)
        self.namespace = self._steps.namespace

    def _call(self, step: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return step(*args, **kwargs)
        except self._redis.exceptions.RedisError as exc:
            # redis-py's messages name the host and port, never the password; the type is
            # enough to say what happened.
            raise StoreUnavailable(
                f"Redis at {self.url} cannot be reached ({type(exc).__name__})"
            ) from None

    @property
    def url(self) -> str:
        """The Redis URL with its password masked."""
        return self._shown

    def now(self) -> float:
        return float(self._call(self._steps.server_time))

    def take_lease(self, name: str, ttl: float) -> str | None:
        return self._call(self._steps.take_lease, name, ttl)  # type: ignore[no-any-return]

    def renew_lease(self, name: str, token: str, ttl: float) -> bool:
        return bool(self._call(self._steps.renew_lease, name, token, ttl))

    def release_lease(self, name: str, token: str) -> bool:
        return bool(self._call(self._steps.release_lease, name, token))

    def reserve(self, holder: str, wanted: int, cap: int, ttl: float) -> int:
        return int(self._call(self._steps.reserve, holder, wanted, cap, ttl))

    def settle(self, holder: str, reserved: int, bought: int) -> int:
        return int(self._call(self._steps.settle, holder, reserved, bought))

    def spent(self) -> int:
        return int(self._call(self._steps.spent))

    def epoch(self, candidate: str) -> str:
        return str(self._call(self._steps.epoch, candidate))

    def bind_session(self, key: str, proxy_id: str, ttl: float) -> str:
        return str(self._call(self._steps.bind_session, key, proxy_id, ttl))

    def rebind_session(self, key: str, old: str, new: str, ttl: float) -> str:
        return str(self._call(self._steps.rebind_session, key, old, new, ttl))

    def publish(self, kind: str, data: Mapping[str, Any]) -> str:
        return str(self._call(self._steps.publish, kind, data))

    def events_after(
        self, cursor: str = "0-0", *, count: int = 1000, block: float | None = None
    ) -> tuple[str, list[dict[str, Any]]]:
        return self._call(  # type: ignore[no-any-return]
            self._reader.events_after, cursor, count=count, block=block
        )

    def close(self) -> None:
        for client in (self._steps.client, self._reader.client):
            with contextlib.suppress(Exception):  # closing a broken connection
                client.close()

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, namespace={self.namespace!r})"
