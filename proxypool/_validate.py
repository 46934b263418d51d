"""Input checks shared by the client, the pool, the CLI and the Scrapy settings.

Each check returns the normalised value or raises ``ConfigError`` naming the field and what is
allowed. None of them touches the network.
"""

from __future__ import annotations

import math
import re
import sys
import unicodedata
from collections.abc import Iterable
from datetime import datetime
from enum import IntEnum
from typing import TypeVar

from .errors import ConfigError

__all__ = [
    "TIME_FORMAT",
    "check_alnum",
    "check_enum",
    "check_float",
    "check_int",
    "check_names",
    "check_remark",
    "check_text",
    "check_time",
    "shown",
]

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_ALNUM_RE = re.compile(r"^[A-Za-z0-9]+$")
# The provider's limits, one place for the client, the pool and the Scrapy settings.
MAX_EXTRACT_NUM = 500  # IPs per extraction call, as public clients of the API cap it
MAX_LIFE_MINUTES = 7200  # the largest sticky time reported for the API (minutes)

_MAX_NAME = 64

E = TypeVar("E", bound=IntEnum)


def shown(value: object) -> str:
    """``value`` for an error message: its repr, cut to 60 characters. A huge integer is described
    by its size (Python refuses to print one of more than 4300 digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"a {value.bit_length()}-bit integer"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_int(
    value: object,
    field: str,
    *,
    min: int | None = None,
    max: int | None = None,
    unit: str | None = None,
) -> int:
    """An ``int`` (not a bool, not a float) within ``[min, max]``; ``unit`` (``"minutes"``)
    only words the error message."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"{field} must be a whole number{_of(unit)}, not {type(value).__name__} {shown(value)}",
            field=field,
        )
    if (min is not None and value < min) or (max is not None and value > max):
        raise ConfigError(
            f"{field} must be {_range(min, max, False, unit)}, got {shown(value)}", field=field
        )
    return value


def check_float(
    value: object,
    field: str,
    *,
    min: float | None = None,
    max: float | None = None,
    min_exclusive: bool = False,
    finite: bool = True,
    unit: str | None = None,
) -> float:
    """A real number (int or float, not bool or NaN) within ``[min, max]``, returned as a float.

    ``min_exclusive=True`` makes the lower bound ``(min, ...``: the value must be greater than
    ``min``. ``finite=False`` lets infinity through (still within the bounds). ``unit``
    (``"seconds"``) only words the error message.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and (math.isnan(value) or (finite and math.isinf(value))))
    ):
        kind = "finite number" if finite else "number"
        raise ConfigError(
            f"{field} must be a {kind}{_of(unit)}, not {type(value).__name__} {shown(value)}",
            field=field,
        )
    if (min is not None and (value <= min if min_exclusive else value < min)) or (
        max is not None and value > max
    ):
        raise ConfigError(
            f"{field} must be {_range(min, max, min_exclusive, unit)}, got {shown(value)}",
            field=field,
        )
    try:
        return float(value)
    except OverflowError:  # an int beyond the float range
        raise ConfigError(f"{field} is too large: {shown(value)}", field=field) from None


def _of(unit: str | None) -> str:
    return f" of {unit}" if unit else ""


def _range(lo: float | None, hi: float | None, lo_exclusive: bool, unit: str | None) -> str:
    """``"between 1 and 500 minutes"``, ``"greater than 0 seconds"``, ``"at most 60"``..."""
    suffix = f" {unit}" if unit else ""
    low = None if lo is None else f"{'greater than' if lo_exclusive else 'at least'} {_num(lo)}"
    if low is not None and hi is not None:
        if lo_exclusive:
            return f"{low} and at most {_num(hi)}{suffix}"
        return f"between {_num(lo)} and {_num(hi)}{suffix}"
    if low is not None:
        return low + suffix
    return f"at most {_num(hi)}{suffix}"


def _num(bound: float | None) -> str:
    # 0.0 -> "0", 0.001 -> "0.001": bounds read as the user would write them.
    if isinstance(bound, float) and bound.is_integer() and abs(bound) < 1e15:
        return str(int(bound))
    return str(bound)


def check_alnum(value: object, field: str) -> str:
    """A non-empty string of ASCII letters and digits (the provider's rule for account names and
    passwords)."""
    if not isinstance(value, str):
        raise ConfigError(f"{field} must be a string, not {type(value).__name__}", field=field)
    if not value:
        raise ConfigError(f"{field} must not be empty", field=field)
    if len(value) > _MAX_NAME or not _ALNUM_RE.match(value):
        # The value may be a password: never echo it.
        raise ConfigError(
            f"{field} may contain only letters A-Z, a-z and digits 0-9 "
            f"(1 to {_MAX_NAME} characters, no spaces or symbols)",
            field=field,
        )
    return value


def check_names(values: str | Iterable[str], field: str) -> list[str]:
    """One account name or an iterable of them; at least one; each letters and digits."""
    names = [values] if isinstance(values, str) else list(values)
    if not names:
        raise ConfigError(f"{field} must name at least one account", field=field)
    return [check_alnum(name, field) for name in names]


def check_text(value: object, field: str, *, max_len: int = 256, allow_empty: bool = False) -> str:
    """A printable string without control characters."""
    if not isinstance(value, str):
        raise ConfigError(f"{field} must be a string, not {type(value).__name__}", field=field)
    if not value and not allow_empty:
        raise ConfigError(f"{field} must not be empty", field=field)
    if len(value) > max_len:
        raise ConfigError(f"{field} must be at most {max_len} characters", field=field)
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value):
        raise ConfigError(f"{field} must not contain control characters", field=field)
    return value


def check_remark(value: object, field: str = "remark") -> str:
    """A remark: at most 64 Latin or 32 CJK characters (a wide character counts twice)."""
    # No length cap here: the width check below states the real rule in its message.
    text = check_text(value, field, max_len=sys.maxsize, allow_empty=True)
    width = sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)
    if width > 64:
        raise ConfigError(
            f"{field} is too long: at most 64 Latin or 32 CJK characters (this one counts {width})",
            field=field,
        )
    return text


def check_enum(value: object, enum_type: type[E], field: str) -> E:
    """A member of ``enum_type``, given as the member or its integer value."""
    allowed = ", ".join(f"{m.value} ({m.name})" for m in enum_type)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{field} must be one of {allowed}; got {shown(value)}", field=field)
    try:
        return enum_type(value)
    except ValueError:
        raise ConfigError(
            f"{field} must be one of {allowed}; got {shown(value)}", field=field
        ) from None


def check_time(value: object, field: str) -> str:
    """A ``datetime`` or a ``'Y-m-d H:i:s'`` string; returned in that string form."""
    if isinstance(value, datetime):
        return value.strftime(TIME_FORMAT)
    if isinstance(value, str):
        try:
            return datetime.strptime(value.strip(), TIME_FORMAT).strftime(TIME_FORMAT)
        except ValueError:
            pass
    raise ConfigError(
        f"{field} must be a datetime or a 'YYYY-MM-DD HH:MM:SS' string, got {shown(value)}",
        field=field,
    )
