"""Built-in input features computed from a ticker's own OHLCV bars, each made stationary where it needs to be.

Every feature at bar t uses bars up to t only, and from a fixed number of bars back (its ``lag``): a
value depends only on the bars of its own window, computed the same way wherever the array starts,
so an event-driven run that computes features on the last few bars gets the very numbers a
preloaded run computes on the whole series (tested bit for bit).

Specs are strings: ``volume``, ``range``, ``gap``, ``rsi:N``, ``sma_ratio:N``, ``volatility:N``,
``returns:K``.

>>> parse_features("volume, rsi:14")
('volume', 'rsi:14')
>>> feature_lag("volatility:20")
20
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, DataError

__all__ = [
    "check_feature_columns", "compute_features", "describe_features", "feature_lag", "frame_features",
    "parse_features"
]

MAX_PERIOD = 1000  # longest rolling window a spec may ask for


@dataclass(frozen=True)
class Feature:
    """One built-in feature: what it is, whether it takes a period, and how much history it needs."""

    name: str
    description: str
    takes_period: bool
    lag: Callable[[int], int]  # bars before the first value, given the period (0 when it takes none)
    compute: Callable[..., np.ndarray]


def _rolling_sum(x: np.ndarray, n: int) -> np.ndarray:
    """Sum of the last ``n`` values at each bar (NaN before), added in one fixed order: each value depends
    on its window's values only, whatever the array's start (a cumulative sum would not)."""
    out = np.full(len(x), np.nan)
    if len(x) >= n:
        acc = x[: len(x) - n + 1].copy()
        for k in range(1, n):
            acc += x[k: len(x) - n + 1 + k]
        out[n - 1:] = acc
    return out


def _log_returns(close: np.ndarray, k: int = 1) -> np.ndarray:
    out = np.full(len(close), np.nan)
    if len(close) > k:
        out[k:] = np.log(close[k:]) - np.log(close[:-k])
    return out


def _volume(o, h, lo, c, v, _):
    out = np.full(len(v), np.nan)
    out[1:] = np.log1p(v[1:]) - np.log1p(v[:-1])  # log change; +1 keeps zero-volume bars finite
    return out


def _range(o, h, lo, c, v, _):
    return (h - lo) / c


def _gap(o, h, lo, c, v, _):
    out = np.full(len(c), np.nan)
    out[1:] = o[1:] / c[:-1] - 1.0
    return out


def _rsi(o, h, lo, c, v, n):
    """Cutler's RSI (simple averages of the last n gains and losses), centred: RSI/100 - 0.5.
    Wilder's smoothing would reach back to the first bar; this one looks n bars back only."""
    change = np.full(len(c), np.nan)
    change[1:] = c[1:] - c[:-1]
    gains = _rolling_sum(np.where(change > 0, change, 0.0), n)
    losses = _rolling_sum(np.where(change < 0, -change, 0.0), n)
    total = gains + losses
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total > 0, gains / total - 0.5, 0.0)  # flat: neutral
    out[: n] = np.nan  # the first change is at bar 1: n changes end at bar n
    return out


def _sma_ratio(o, h, lo, c, v, n):
    return c / (_rolling_sum(c, n) / n) - 1.0


def _volatility(o, h, lo, c, v, n):
    """Population standard deviation of the last n log returns."""
    r = _log_returns(c)
    mean = _rolling_sum(r, n) / n
    out = np.full(len(c), np.nan)
    if len(c) > n:
        acc = np.zeros(len(c) - n)
        for k in range(n):
            d = r[1 + k: len(c) - n + 1 + k] - mean[n:]
            acc += d * d
        out[n:] = np.sqrt(acc / n)
    return out


def _returns(o, h, lo, c, v, k):
    return _log_returns(c, k)


FEATURES: dict[str, Feature] = {f.name: f for f in (
    Feature("volume", "log change of volume, log((v+1)/(v_prev+1))", False, lambda n: 1, _volume),
    Feature("range", "(high - low) / close", False, lambda n: 0, _range),
    Feature("gap", "open / previous close - 1", False, lambda n: 1, _gap),
    Feature("rsi", "RSI over N bars (Cutler's, simple averages), centred to [-0.5, 0.5]", True, lambda n: n, _rsi),
    Feature("sma_ratio", "close / SMA(N) - 1", True, lambda n: n - 1, _sma_ratio),
    Feature("volatility", "standard deviation of the last N log returns", True, lambda n: n, _volatility),
    Feature("returns", "K-bar log return, log(close / close K bars ago)", True, lambda n: n, _returns),
)}
_SPEC = re.compile(r"([a-z_]+)(?::(.*))?")


def _parse_one(text: str) -> tuple[Feature, int]:
    if not isinstance(text, str):
        raise ConfigError(f"feature {text!r} is a {type(text).__name__}, not a name; use e.g. 'volume' or 'rsi:14'")
    match = _SPEC.fullmatch(text.strip().lower())
    feature = FEATURES.get(match.group(1)) if match else None
    if feature is None:
        raise ConfigError(f"feature {text!r} is not known; use one of {describe_features()}")
    period = match.group(2)
    if not feature.takes_period:
        if period is not None:
            raise ConfigError(f"feature {text!r}: {feature.name} takes no period; write just '{feature.name}'")
        return feature, 0
    if period is None or not re.fullmatch(r"[0-9]+", period.strip()):  # not isdigit(): '²' is a digit to it
        raise ConfigError(f"feature {text!r} needs a whole number of bars after the colon, e.g. '{feature.name}:14'")
    n = int(period)
    if not 1 <= n <= MAX_PERIOD or (feature.name in ("rsi", "volatility", "sma_ratio") and n < 2):
        low = 2 if feature.name in ("rsi", "volatility", "sma_ratio") else 1
        raise ConfigError(f"feature {text!r}: the period must be between {low} and {MAX_PERIOD} bars")
    return feature, n


def parse_features(value) -> tuple[str, ...]:
    """Canonical feature specs from a comma-separated string or a sequence of specs; duplicates refused.

    >>> parse_features(["RSI:14", "range"])
    ('rsi:14', 'range')
    """
    if value is None:
        return ()
    if isinstance(value, str):
        items = [part for part in value.split(",") if part.strip()]
    else:
        try:
            items = list(value)
        except TypeError:
            raise ConfigError(f"{value!r} is not a list of features; pass e.g. ('volume', 'rsi:14')") from None
    specs = []
    for item in items:
        feature, n = _parse_one(item)
        spec = f"{feature.name}:{n}" if feature.takes_period else feature.name
        if spec in specs:
            raise ConfigError(f"feature {spec!r} is listed twice; list each feature once")
        specs.append(spec)
    return tuple(specs)


def feature_lag(spec: str) -> int:
    """Bars of history a feature needs before its first value."""
    feature, n = _parse_one(spec)
    return feature.lag(n)


def describe_features() -> str:
    return ", ".join(f"{f.name}:N" if f.takes_period else f.name for f in FEATURES.values())


def compute_features(specs: Iterable[str], open_, high, low, close, volume) -> np.ndarray:
    """The features' values at every bar, shape (bars, len(specs)); NaN before each one's first value."""
    arrays = [np.asarray(a, dtype=np.float64) for a in (open_, high, low, close, volume)]
    columns = []
    for spec in specs:
        feature, n = _parse_one(spec)
        with np.errstate(invalid="ignore", divide="ignore"):
            columns.append(feature.compute(*arrays, n))
    return np.column_stack(columns) if columns else np.empty((len(arrays[3]), 0))


def frame_features(specs: Iterable[str], frame) -> np.ndarray:
    """``compute_features`` on a validated OHLCV DataFrame (puffin_bt.data)."""
    return compute_features(specs, *(frame[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close",
                                                                                   "volume")))


def check_feature_columns(matrix: np.ndarray, names: Iterable[str], n_bars: int, where: str = "features") -> np.ndarray:
    """A feature matrix aligned with ``n_bars`` prices, as float64 (bars, F); each column has finite values
    that are not all equal, and no infinity. Leading NaN (a warm-up) is allowed."""
    names = list(names)
    try:
        matrix = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where} must be numeric ({exc}); convert the columns to numbers first") from None
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2 or matrix.shape[0] != n_bars:
        raise DataError(f"{where} has shape {matrix.shape}; it must have one row per price bar ({n_bars} rows)")
    for j, name in enumerate(names):
        column = matrix[:, j]
        finite = np.isfinite(column)
        if np.isinf(column).any():
            i = int(np.flatnonzero(np.isinf(column))[0])
            raise DataError(f"feature {name!r} is infinite at bar {i}; clean it (drop or fill) before using it")
        if not finite.any():
            raise DataError(f"feature {name!r} has no values (all NaN); drop it or check how it is computed")
        values = column[finite]
        if values.min() == values.max():
            raise DataError(f"feature {name!r} is constant ({float(values[0])!r}); it carries no information: drop it")
    return matrix
