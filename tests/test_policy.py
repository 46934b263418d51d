"""Tests for proxypool.policy: the rotation-strategy contract (one suite for every strategy),
backoff, and the status ban policy; and the number checks of proxypool._validate that Backoff,
the pool and the location catalog share."""

from __future__ import annotations

import ast
import math
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxypool._validate import check_float, check_int
from proxypool.errors import ConfigError
from proxypool.policy import (
    DEFAULT_BAN_STATUSES,
    STRATEGIES,
    Backoff,
    LeastUsedRotation,
    RandomRotation,
    RotationStrategy,
    RoundRobinRotation,
    StatusBanPolicy,
    Verdict,
    make_strategy,
)

SERVE, SKIP, DROP = Verdict.SERVE, Verdict.SKIP, Verdict.DROP


@pytest.fixture(params=sorted(STRATEGIES))
def new_strategy(request: pytest.FixtureRequest) -> Callable[[], RotationStrategy[int]]:
    name = request.param
    seeds = iter(range(1000))
    return lambda: make_strategy(name, random.Random(next(seeds)))  # type: ignore[return-value]


def filled(new_strategy: Callable[[], RotationStrategy[int]], n: int) -> RotationStrategy[int]:
    strategy = new_strategy()
    for item in range(n):
        strategy.add(item)
    return strategy


# -- the contract every strategy meets ------------------------------------------------------


def test_empty_strategy_picks_nothing(new_strategy: Callable[[], RotationStrategy[int]]) -> None:
    strategy = new_strategy()
    assert strategy.pick(lambda item: SERVE) is None
    assert len(strategy) == 0


def test_dropped_items_leave_and_are_never_offered_again(
    new_strategy: Callable[[], RotationStrategy[int]],
) -> None:
    strategy = filled(new_strategy, 10)
    dead = {2, 5, 7}
    offered: list[int] = []

    def verdict(item: int) -> Verdict:
        offered.append(item)
        return DROP if item in dead else SERVE

    served = Counter(strategy.pick(verdict) for _ in range(200))
    assert set(served) == set(range(10)) - dead
    assert len(strategy) == 7
    # Each dead item was offered at most once: once dropped it is gone.
    assert all(offered.count(item) <= 1 for item in dead)


def test_skipped_items_stay_for_later_picks(
    new_strategy: Callable[[], RotationStrategy[int]],
) -> None:
    strategy = filled(new_strategy, 6)
    odd_only = {strategy.pick(lambda i: SERVE if i % 2 else SKIP) for _ in range(100)}
    assert odd_only == {1, 3, 5}
    assert len(strategy) == 6
    even_only = {strategy.pick(lambda i: SKIP if i % 2 else SERVE) for _ in range(100)}
    assert even_only == {0, 2, 4}


def test_pick_offers_each_item_at_most_once_and_gives_up(
    new_strategy: Callable[[], RotationStrategy[int]],
) -> None:
    strategy = filled(new_strategy, 8)
    offered: list[int] = []

    def skip_all(item: int) -> Verdict:
        offered.append(item)
        return SKIP

    assert strategy.pick(skip_all) is None
    assert sorted(offered) == list(range(8))
    assert len(strategy) == 8


def test_clear_empties(new_strategy: Callable[[], RotationStrategy[int]]) -> None:
    strategy = filled(new_strategy, 5)
    strategy.clear()
    assert len(strategy) == 0
    assert strategy.pick(lambda i: SERVE) is None


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(sorted(STRATEGIES)),
    seed=st.integers(0, 2**16),
    verdicts=st.lists(st.sampled_from([SERVE, SKIP, DROP]), min_size=0, max_size=30),
    rounds=st.integers(1, 5),
)
def test_pick_serves_exactly_when_something_is_servable(
    name: str, seed: int, verdicts: list[Verdict], rounds: int
) -> None:
    """Liveness and safety: a pick returns an item iff some item in rotation would be served, the
    returned one is servable, and dropped items disappear while the others stay."""
    strategy: RotationStrategy[int] = make_strategy(name, random.Random(seed))  # type: ignore[assignment]
    for item in range(len(verdicts)):
        strategy.add(item)
    alive = set(range(len(verdicts)))
    offered: set[int] = set()

    def verdict(item: int) -> Verdict:
        assert item in alive, "a dropped item was offered again"
        assert item not in offered, "an item was offered twice in one pick"
        offered.add(item)
        return verdicts[item]

    for _ in range(rounds):
        offered.clear()
        picked = strategy.pick(verdict)
        alive -= {i for i in offered if verdicts[i] is DROP}
        servable = {i for i in alive if verdicts[i] is SERVE}
        if picked is None:
            assert not servable
        else:
            assert verdicts[picked] is SERVE
        assert len(strategy) == len(alive)


# -- what distinguishes the strategies ------------------------------------------------------


def test_round_robin_cycles_in_insertion_order() -> None:
    strategy: RoundRobinRotation[int] = RoundRobinRotation()
    for item in range(4):
        strategy.add(item)
    assert [strategy.pick(lambda i: SERVE) for _ in range(9)] == [0, 1, 2, 3, 0, 1, 2, 3, 0]


def test_least_used_serves_the_least_served_item() -> None:
    strategy: LeastUsedRotation[int] = LeastUsedRotation()
    for item in range(3):
        strategy.add(item)
    # Item 0 is not servable for a while, so 1 and 2 pile up uses; then 0 catches up first.
    first = Counter(strategy.pick(lambda i: SKIP if i == 0 else SERVE) for _ in range(4))
    assert first == {1: 2, 2: 2}
    assert [strategy.pick(lambda i: SERVE) for _ in range(2)] == [0, 0]
    counts = Counter(strategy.pick(lambda i: SERVE) for _ in range(30))
    assert counts == {0: 10, 1: 10, 2: 10}


def test_least_used_newcomer_does_not_take_all_traffic() -> None:
    strategy: LeastUsedRotation[int] = LeastUsedRotation()
    strategy.add(0)
    for _ in range(50):
        strategy.pick(lambda i: SERVE)
    strategy.add(1)
    assert Counter(strategy.pick(lambda i: SERVE) for _ in range(10)) == {0: 5, 1: 5}


def test_random_uses_the_injected_generator() -> None:
    def picks(seed: int) -> list[int | None]:
        strategy: RandomRotation[int] = RandomRotation(random.Random(seed))
        for item in range(50):
            strategy.add(item)
        return [strategy.pick(lambda i: SERVE) for _ in range(20)]

    assert picks(1) == picks(1)
    assert picks(1) != picks(2)
    assert len(set(picks(3))) > 10  # not stuck on one item


def test_make_strategy_rejects_unknown_names() -> None:
    with pytest.raises(ConfigError) as info:
        make_strategy("fastest", random.Random())
    assert info.value.field == "strategy"
    assert "'round_robin'" in str(info.value) and "'least_used'" in str(info.value)


# -- backoff ----------------------------------------------------------------------------------


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    backoff = Backoff(base=5.0, cap=120.0, jitter=0.0)
    assert [backoff.ceiling(n) for n in range(7)] == [5.0, 10.0, 20.0, 40.0, 80.0, 120.0, 120.0]
    assert backoff.ceiling(10_000) == 120.0  # no OverflowError for absurd attempts
    assert backoff.delay(3, random.Random()) == 40.0  # no jitter: deterministic


@given(
    attempt=st.integers(0, 200),
    jitter=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32),
)
def test_backoff_delay_is_positive_and_within_its_jitter_band(
    attempt: int, jitter: float, seed: int
) -> None:
    backoff = Backoff(base=0.5, cap=30.0, jitter=jitter)
    ceiling = backoff.ceiling(attempt)
    delay = backoff.delay(attempt, random.Random(seed))
    assert 0.0 < delay <= ceiling
    assert delay >= ceiling * (1.0 - jitter) - 1e-12


def test_full_jitter_spreads_over_the_whole_range() -> None:
    backoff = Backoff(base=1.0, cap=8.0, jitter=1.0)
    rng = random.Random(4)
    delays = [backoff.delay(3, rng) for _ in range(2000)]
    assert min(delays) < 1.0 and max(delays) > 7.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base": 0}, "base"),
        ({"base": -1}, "base"),
        ({"base": float("nan")}, "base"),
        ({"base": "1"}, "base"),
        ({"base": 10, "cap": 5}, "cap"),
        ({"cap": float("inf")}, "cap"),
        ({"jitter": 1.5}, "jitter"),
        ({"jitter": -0.1}, "jitter"),
    ],
)
def test_backoff_rejects_bad_parameters(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Backoff(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base": 0}, "base must be greater than 0 seconds, got 0"),
        ({"base": "1"}, "base must be a finite number of seconds, not str '1'"),
        ({"base": 10, "cap": 5}, "cap must be at least 10 seconds, got 5"),
        ({"cap": float("inf")}, "cap must be a finite number of seconds, not float inf"),
        ({"jitter": 1.5}, "jitter must be between 0 and 1, got 1.5"),
    ],
)
def test_backoff_errors_say_what_is_allowed(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Backoff(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


# -- number checks (proxypool._validate) ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "options", "message"),
    [
        (0.0, {"min": 0.0, "min_exclusive": True}, "x must be greater than 0, got 0.0"),
        (-1, {"min": 0.0, "max": 5.0, "unit": "s"}, "x must be between 0 and 5 s, got -1"),
        (9.5, {"min": 0.5, "max": 9.0}, "x must be between 0.5 and 9, got 9.5"),
        (
            7,
            {"min": 1.0, "max": 5.0, "min_exclusive": True},
            "x must be greater than 1 and at most 5, got 7",
        ),
        (math.nan, {"finite": False}, "x must be a number, not float nan"),
        (-math.inf, {"finite": False, "min": 0.0}, "x must be at least 0, got -inf"),
        (math.inf, {}, "x must be a finite number, not float inf"),
        (True, {}, "x must be a finite number, not bool True"),
        (10**400, {"min": 0.0}, "x is too large: a 1329-bit integer"),
    ],
)
def test_check_float_rejects_with_a_message_naming_the_field(
    value: object, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        check_float(value, "x", **options)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert info.value.field == "x"


def test_check_float_accepts_its_bounds_and_returns_floats() -> None:
    assert check_float(0, "x", min=0.0) == 0.0 and isinstance(check_float(3, "x"), float)
    assert check_float(1e-9, "x", min=0.0, min_exclusive=True) == 1e-9
    assert check_float(math.inf, "x", min=0.0, finite=False) == math.inf


def test_check_int_words_its_unit() -> None:
    with pytest.raises(ConfigError) as info:
        check_int(0, "life", min=1, max=7200, unit="minutes")
    assert str(info.value) == "life must be between 1 and 7200 minutes, got 0"
    with pytest.raises(ConfigError) as info:
        check_int(1.0, "life", min=1, unit="minutes")
    assert str(info.value) == "life must be a whole number of minutes, not float 1.0"


# -- ban policy -------------------------------------------------------------------------------


def test_status_ban_policy_defaults_and_custom_statuses() -> None:
    default = StatusBanPolicy()
    assert default.statuses == frozenset(DEFAULT_BAN_STATUSES) == {403, 429}
    assert default.is_ban(403) and default.is_ban(429, b"slow down")
    assert not default.is_ban(200) and not default.is_ban(404)
    custom = StatusBanPolicy([503])
    assert custom.is_ban(503) and not custom.is_ban(403)


@pytest.mark.parametrize("bad", [[99], [600], ["403"], [True]])
def test_status_ban_policy_rejects_non_statuses(bad: list[object]) -> None:
    with pytest.raises(ConfigError) as info:
        StatusBanPolicy(bad)  # type: ignore[arg-type]
    assert info.value.field == "ban_statuses"


# -- one backoff -------------------------------------------------------------------------------


def _variable_powers_of_two(path: Path) -> list[int]:
    """Lines computing ``2 ** <something not a literal>``: a doubling written out by hand."""
    tree = ast.parse(path.read_text())
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.Pow)
        and isinstance(node.left, ast.Constant)
        and node.left.value == 2
        and not isinstance(node.right, ast.Constant)
    ]


def test_the_doubling_rule_is_written_once_in_backoff() -> None:
    """The pool, the client and the catalog all pause with ``policy.Backoff``: no module but
    policy.py doubles a delay by hand (the client and the catalog each used to)."""
    root = Path(__file__).resolve().parent.parent
    found = {
        str(path.relative_to(root)): lines
        for package in ("proxypool", "scrapy_ext")
        for path in sorted((root / package).rglob("*.py"))
        if path.name != "policy.py" and (lines := _variable_powers_of_two(path))
    }
    assert found == {}
    assert _variable_powers_of_two(root / "proxypool" / "policy.py")  # the finder finds it there


@pytest.mark.parametrize(
    ("base", "cap", "expected"),
    [
        (0.5, 512.0, [0.5, 1.0, 2.0, 4.0]),
        (1.0, 3.0, [1.0, 2.0, 3.0, 3.0]),  # the catalog's max_retry_delay
        (5.0, 2.0, [2.0, 2.0, 2.0, 2.0]),  # base above the cap: the cap every time
    ],
)
def test_doubling_is_the_deterministic_backoff(
    base: float, cap: float, expected: list[float]
) -> None:
    backoff = Backoff.doubling(base, cap)
    assert backoff is not None
    assert [backoff.delay(n) for n in range(4)] == expected


@pytest.mark.parametrize(("base", "cap"), [(0.0, 60.0), (1.0, 0.0)])
def test_doubling_with_a_zero_is_no_pause(base: float, cap: float) -> None:
    assert Backoff.doubling(base, cap) is None
