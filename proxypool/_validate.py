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
_MAX_NAME = 64

E = TypeVar("E", bound=IntEnum)


def shown(value: object) -> str:
    """``value`` for an error message: its repr, cut to 60 characters. A huge integer is described
    by its size (Python refuses to print one of more than 4300 digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"a {value.bit_length()}-bit integer"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_int(value: object, field: str, *, min: int | None = None, max: int | None = None) -> int:
    """An ``int`` (not a bool, not a float) within ``[min, max]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"{field} must be a whole number, not {type(value).__name__} {shown(value)}",
            field=field,
        )
    if (min is not None and value < min) or (max is not None and value > max):
        raise ConfigError(f"{field} must be {_range(min, max)}, got {shown(value)}", field=field)
    return value


def check_float(
    value: object, field: str, *, min: float | None = None, max: float | None = None
) -> float:
    """A finite real number (int or float, not bool, NaN or infinity) within ``[min, max]``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise ConfigError(
            f"{field} must be a finite number, not {type(value).__name__} {shown(value)}",
            field=field,
        )
    if (min is not None and value < min) or (max is not None and value > max):
        raise ConfigError(f"{field} must be {_range(min, max)}, got {shown(value)}", field=field)
    try:
        return float(value)
    except OverflowError:
        raise ConfigError(f"{field} is too large: {shown(value)}", field=field) from None


def _range(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"between {lo} and {hi}"
    if lo is not None:
        return f"at least {lo}"
    return f"at most {hi}"


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
