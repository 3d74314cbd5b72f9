"""From closing prices to a network's inputs and targets: log returns, windows, the per-fold scaler.

Plain numpy. The estimators and the walk-forward both build their samples here, so both train
on exactly the same numbers; ``check_prices`` is the one rule for unusable prices.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

import numpy as np

from .errors import DataError

__all__ = [
    "Scaler", "as_prices", "bad_prices", "check_prices", "complete_windows", "flat_windows", "min_samples",
    "returns_of", "split_train_val", "window_features", "window_inputs", "window_targets"
]


def bad_prices(values: np.ndarray) -> np.ndarray:
    """Positions of prices no model can use: NaN, inf, zero or negative."""
    return np.flatnonzero(~np.isfinite(values) | (values <= 0))


def check_prices(values: np.ndarray, name: str = "closes", first_bar: int = 0, unit: str = "bar") -> np.ndarray:
    """``values`` unchanged, or a DataError naming how many are unusable and the first of them
    (``first_bar`` is the number of ``values[0]``, counted in ``unit``s: bars, or positions of an array)."""
    bad = bad_prices(values)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{name} contain {bad.size} NaN/inf/non-positive value(s), the first at {unit} {first_bar + i} "
            f"({float(values[i])!r}); clean the data (drop or fill those bars) before fitting or forecasting"
        )
    return values


def as_prices(prices, name: str = "prices", min_length: int = 2) -> np.ndarray:
    """Validate a 1-D price series (list, ndarray, pandas Series: by position, never label).

    Returns a float64 copy. Raises DataError naming the first bad position/value.
    """
    if hasattr(prices, "to_numpy"):  # pandas Series/Index: position-based
        arr = prices.to_numpy()
    else:
        arr = np.asarray(prices)
    if arr.dtype.kind in "bUSV" or (arr.dtype == object and any(
            isinstance(v, (bool, np.bool_, str, bytes)) or not isinstance(v, numbers.Real) for v in arr.ravel())):
        first = next((v for v in arr.ravel().tolist() if not isinstance(v, numbers.Real) or isinstance(v, bool)),
                     arr.ravel()[0] if arr.size else None)
        raise DataError(
            f"{name} must be numeric (one price per bar); got dtype {arr.dtype} with a value like {first!r}"
        )
    try:
        arr = np.array(arr, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be numeric; got dtype {arr.dtype} ({exc})") from None
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise DataError(f"{name} must be 1-D (one price per bar); got shape {arr.shape}")
    check_prices(arr, name, unit="position")
    if len(arr) < min_length:
        raise DataError(f"{name} has {len(arr)} bars; at least {min_length} are needed")
    return arr


def returns_of(closes: np.ndarray) -> np.ndarray:
    """Log returns indexed by bar: ``r[t] = log(c[t] / c[t-1])``, ``r[0] = nan``."""
    r = np.empty(len(closes), dtype=np.float64)
    r[0] = np.nan
    np.subtract(np.log(closes[1:]), np.log(closes[:-1]), out=r[1:])
    return r


def window_inputs(returns: np.ndarray, bars: np.ndarray, lookback: int) -> np.ndarray:
    """Input windows (n, lookback): the ``lookback`` returns ending at each bar (inclusive)."""
    view = np.lib.stride_tricks.sliding_window_view(returns, lookback)  # view[i] ends at bar i+lookback-1
    return view[np.asarray(bars) - lookback + 1]


def window_targets(closes: np.ndarray, bars: np.ndarray, horizon: int) -> np.ndarray:
    """Targets: log return from each bar to ``horizon`` bars later."""
    bars = np.asarray(bars)
    return np.log(closes[bars + horizon]) - np.log(closes[bars])  # a ratio could overflow


# Returns whose standard deviation is below this are (near) constant: a flat price (e.g. a stretch
# that df.ffill() filled) carries no move to learn from or to forecast from.
FLAT_STD = 1e-12
# A volatility target's anchor (``Scaler.anchor``) is at least this share of the fold's mean variance.
ANCHOR_FLOOR = 0.01


def flat_windows(windows: np.ndarray) -> np.ndarray:
    """Which input windows (n, lookback) have (near) zero variance: their forecast is a zero return."""
    return np.std(windows, axis=1) < FLAT_STD


def window_features(features: np.ndarray, bars: np.ndarray, lookback: int) -> np.ndarray:
    """Feature windows (n, lookback, F): each feature's ``lookback`` values ending at each bar (inclusive),
    aligned with ``window_inputs``."""
    view = np.lib.stride_tricks.sliding_window_view(features, lookback, axis=0)  # (bars - lookback + 1, F, lookback)
    return view[np.asarray(bars) - lookback + 1].transpose(0, 2, 1)


def complete_windows(features: np.ndarray, bars: np.ndarray, lookback: int) -> np.ndarray:
    """Which windows ending at ``bars`` have every feature value (no NaN: a warm-up or a gap)."""
    ok = np.isfinite(features).all(axis=1)
    return np.lib.stride_tricks.sliding_window_view(ok, lookback).all(axis=1)[np.asarray(bars) - lookback + 1]


@dataclass(frozen=True)
class Scaler:
    """Standardises returns, and each feature, with statistics of one fold's training samples only.

    ``flat``: the fold's training returns were (near) constant, so the fold learned nothing and
    forecasts a zero return (a net trained on all-zero targets still outputs its bias, which
    the fallback std of 1 would turn into a large move).
    """


    mean: float
    std: float
    horizon: int = 1
    feature_mean: tuple[float, ...] = ()
    feature_std: tuple[float, ...] = ()
    flat: bool = False
    # A volatility target (``target="volatility"``): the fold's mean realised variance on its training samples
    # (it floors ``anchor``, the variance each target is divided by; the net outputs the log of that ratio).
    # None for a return target.
    variance: float | None = None

    @classmethod
    def fit(cls, returns: np.ndarray, horizon: int = 1, features: np.ndarray | None = None) -> Scaler:
        std = float(np.std(returns))
        means, stds = [], []
        for column in (features.T if features is not None else ()):
            values = column[np.isfinite(column)]  # a warm-up's NaN rows carry no statistics
            f_std = float(np.std(values)) if values.size else 1.0
            means.append(float(np.mean(values)) if values.size else 0.0)
            stds.append(f_std if math.isfinite(f_std) and f_std >= FLAT_STD else 1.0)
        if not math.isfinite(std) or std < FLAT_STD:  # std 1 keeps the inputs finite
            return cls(float(np.mean(returns)), 1.0, horizon, tuple(means), tuple(stds), flat=True)
        return cls(float(np.mean(returns)), std, horizon, tuple(means), tuple(stds))

    def x(self, windows: np.ndarray) -> np.ndarray:
        return (windows - self.mean) / self.std

    def inputs(self, windows: np.ndarray, feature_windows: np.ndarray | None = None) -> np.ndarray:
        """Scaled network inputs (n, lookback, 1 + F; a volatility target: 2 + F): the return windows (and their
        magnitudes), then each feature's."""
        scaled = self.x(windows)[..., None]
        if self.variance is not None:  # a volatility target: the magnitudes too, which a small net cannot square
            scaled = np.concatenate([scaled, np.abs(scaled)], axis=-1)
        if feature_windows is None or not self.feature_mean:
            return scaled
        features = (feature_windows - np.asarray(self.feature_mean)) / np.asarray(self.feature_std)
        return np.concatenate([scaled, features], axis=-1)

    def for_variance(self, variances: np.ndarray) -> Scaler:
        """This scaler for a volatility target whose training targets are ``variances``."""
        mean = float(np.mean(variances))
        flat = self.flat or not math.isfinite(mean) or mean <= 0
        return dataclasses.replace(self, flat=flat, variance=mean if mean > 0 else 1.0)

    def anchor(self, windows: np.ndarray) -> np.ndarray:
        """The variance a volatility target is measured against, per sample: its input window's mean squared
        return (the trailing ``lookback``-bar estimate, from bars <= t), floored at ``ANCHOR_FLOOR`` of the fold's
        mean training variance (a calm window). The net learns the log of the ratio to it: at its start (an
        output near 0) it forecasts the trailing estimate, and training moves it from there."""
        return np.maximum(np.mean(np.asarray(windows) ** 2, axis=1), ANCHOR_FLOOR * self.variance)

    def y(self, targets: np.ndarray, windows: np.ndarray | None = None) -> np.ndarray:
        """Scaled targets; a volatility target needs the samples' input ``windows`` (unscaled returns)."""
        if self.variance is not None:
            return targets / self.anchor(windows)
        return (targets - self.horizon * self.mean) / (self.std * math.sqrt(self.horizon))

    def y_inverse(self, scaled: np.ndarray, windows: np.ndarray | None = None) -> np.ndarray:
        """A forecast from a net's output: a log return, or (volatility) a variance from a log variance."""
        if self.variance is not None:
            return self.anchor(windows) * np.exp(scaled)
        return scaled * (self.std * math.sqrt(self.horizon)) + self.horizon * self.mean


def split_train_val(bars: np.ndarray, validation_split: float) -> tuple[np.ndarray, np.ndarray]:
    """Chronological split: the last ``validation_split`` of the samples validate."""
    n_val = int(round(len(bars) * validation_split)) if validation_split > 0 else 0
    if validation_split > 0:
        n_val = max(1, n_val)
    return bars[: len(bars) - n_val], bars[len(bars) - n_val:]


def min_samples(validation_split: float) -> int:
    """Fewest windows a fit accepts: enough that the chronological split leaves at least 2
    to train on (and at least 1 to validate when ``validation_split > 0``)."""
    n = 2
    while len(split_train_val(np.arange(n), validation_split)[0]) < 2:
        n += 1
    return n
