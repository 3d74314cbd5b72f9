"""Value checks shared by every entry point: numbers in range, known option names.

Each check returns the normalised value or raises ``ConfigError`` naming the parameter,
the bad value and what to pass instead.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable, Mapping

from .errors import ConfigError

__all__ = ["check_float", "check_int", "check_known"]


def check_int(name: str, value, minimum: int = 1, allow_none: bool = False, maximum: int | None = None) -> int | None:
    """Return ``value`` as an int in ``[minimum, maximum]`` or raise ConfigError naming ``name``."""
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
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value} is too large; it must be <= {maximum}")
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


def check_known(given: Iterable[str] | Mapping, valid: Iterable[str], where: str) -> None:
    """The one unknown-option check: every name in ``given`` must be in ``valid``.

    >>> check_known({"hiden_dim": 8}, ["hidden_dim", "lookback"], "backtest()")
    Traceback (most recent call last):
    ...
    puffin_bt.errors.ConfigError: backtest() got unknown option 'hiden_dim' (did you mean 'hidden_dim'?); valid: hidden_dim, lookback
    """
    valid = list(valid)
    unknown = [name for name in given if name not in valid]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(str(name), valid, n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    noun = "option" if len(unknown) == 1 else "options"
    raise ConfigError(f"{where} got unknown {noun} {', '.join(hints)}; valid: {', '.join(valid)}")
