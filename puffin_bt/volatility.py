"""Volatility as a forecast target: the realised measure the nets and the baselines forecast, and the losses
they are judged by (QLIKE, the MSE of variance). Torch-free; numpy only.

The realised measure at bar ``t`` for a horizon ``h`` is the mean squared log return over the next ``h`` bars,
``rv[t] = mean(r[t+1]**2, ..., r[t+h]**2)`` with ``r[t] = log(c[t] / c[t-1])``: a per-bar variance, not
annualised and not demeaned (daily means are noise next to daily variances). It ends at bar ``t + h``, so a
fold trained at bar ``T`` may use it only for ``t <= T - h`` (the same purge as a return target).
"""

from __future__ import annotations

import numpy as np

__all__ = ["realised_variance_target", "qlike", "mse_variance"]

# QLIKE divides by the forecast: a variance at or below this (a flat stretch of prices) is clipped to it.
MIN_VARIANCE = 1e-12


def realised_variance_target(closes: np.ndarray, bars: np.ndarray, horizon: int) -> np.ndarray:
    """The realised variance over the ``horizon`` bars after each of ``bars``: ``mean(r[t+1..t+h]**2)``.

    ``bars + horizon`` must be inside ``closes`` (the caller purges bars whose target ends after the fold).
    """
    closes = np.asarray(closes, dtype=float)
    bars = np.asarray(bars, dtype=np.int64)
    logs = np.log(closes)
    squared = np.zeros(len(closes))
    squared[1:] = np.diff(logs) ** 2
    cumulative = np.concatenate([[0.0], np.cumsum(squared)])  # cumulative[k] = sum(squared[:k])
    return (cumulative[bars + horizon + 1] - cumulative[bars + 1]) / horizon


def qlike(forecast_variance: np.ndarray, realised_variance: np.ndarray) -> np.ndarray:
    """QLIKE loss per bar, ``rv / f - log(rv / f) - 1`` (Patton 2011): zero for a perfect forecast, robust to
    noise in the realised measure, and it punishes forecasting too little variance more than too much.
    NaN where either side is NaN; a zero realised variance is kept (its loss is ``-log`` of a tiny ratio, so it
    is clipped like the forecast)."""
    f = np.maximum(np.asarray(forecast_variance, dtype=float), MIN_VARIANCE)
    rv = np.maximum(np.asarray(realised_variance, dtype=float), MIN_VARIANCE)
    ratio = rv / f
    return ratio - np.log(ratio) - 1.0


def mse_variance(forecast_variance: np.ndarray, realised_variance: np.ndarray) -> np.ndarray:
    """Squared error of the variance forecast per bar (the other robust loss of Patton 2011)."""
    return (np.asarray(forecast_variance, dtype=float) - np.asarray(realised_variance, dtype=float)) ** 2
