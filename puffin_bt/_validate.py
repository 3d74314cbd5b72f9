"""Parameter validators shared by every entry point (forecasters, walk-forward, indicators, CLI)."""

from __future__ import annotations

import math
import numbers

from .errors import ConfigError


def check_int(name: str, value, minimum: int = 1, allow_none: bool = False) -> int | None:
    """Return ``value`` as an int >= ``minimum`` or raise ConfigError naming ``name``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(
                f"{name}={value!r} is not an integer; pass a whole number >= {minimum}"
            )
    value = int(value)
    if value < minimum:
        raise ConfigError(f"{name}={value} is too small; it must be >= {minimum}")
    return value


def check_float(
    name: str,
    value,
    minimum: float | None = None,
    maximum: float | None = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
) -> float:
    """Return ``value`` as a finite float inside the given bounds or raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name}={value!r} is not a number; pass a finite float")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} is not finite; pass a finite float")
    if minimum is not None and (value < minimum or (value == minimum and not min_inclusive)):
        op = ">=" if min_inclusive else ">"
        raise ConfigError(f"{name}={value} is out of range; it must be {op} {minimum}")
    if maximum is not None and (value > maximum or (value == maximum and not max_inclusive)):
        op = "<=" if max_inclusive else "<"
        raise ConfigError(f"{name}={value} is out of range; it must be {op} {maximum}")
    return value
