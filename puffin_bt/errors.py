"""One exception hierarchy for everything puffin_bt raises on bad input.

Every message names the bad value, where it came from (ticker, file, date,
parameter) and how to fix it. Catch ``PuffinError`` to catch them all.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError", "ConfigError", "DataError", "DeviceError", "NetworkError", "NotFittedError", "PuffinError",
    "StudyError", "failures"
]


class PuffinError(Exception):
    """Base class of every error puffin_bt raises on purpose."""


class ConfigError(PuffinError, ValueError):
    """A parameter or configuration value is invalid (wrong type, range, combination)."""


class DataError(PuffinError, ValueError):
    """Input data is unusable: NaN/negative prices, unsorted dates, too short, bad file."""


class NetworkError(DataError):
    """Data could not be downloaded and no cached copy exists."""


class CheckpointError(PuffinError):
    """A saved model cannot be loaded: corrupt, another architecture, or needs unpickling."""


class DeviceError(ConfigError):
    """The requested compute device is not available on this machine."""


class NotFittedError(PuffinError, RuntimeError):
    """A forecaster was used before ``fit`` (or ``load``)."""


class StudyError(ConfigError):
    """A tuning study's database cannot be used: malformed or unreachable URL, locked file, another search's study."""


def failures(reasons: dict[str, str], limit: int = 5) -> str:
    """``reasons`` (name -> why it failed) as one readable line, the first ``limit`` of them named (a universe may
    fail by the thousand).

    >>> failures({"A": "no data", "B": "bad close"}, limit=1)
    '2 failed: A (no data); and 1 more'
    """
    shown = "; ".join(f"{name} ({why})" for name, why in list(reasons.items())[:limit])
    more = len(reasons) - min(limit, len(reasons))
    return f"{len(reasons)} failed: {shown}" + (f"; and {more} more" if more else "")
