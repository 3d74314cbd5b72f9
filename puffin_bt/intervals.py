"""Uncertainty of a forecast: the spread of a seed ensemble and conformal prediction intervals.

Split conformal prediction (Vovk et al. 2005; Lei et al. 2018): a fold's validation residuals
(its chronological tail: never later data) give the half-width of the interval of the next
``horizon``-bar log return, the ``ceil((n + 1) * coverage)``-th smallest absolute residual
(the finite-sample correction). Adaptive conformal inference (Gibbs & Candès 2021) moves the
miscoverage level online, ``alpha_{t+1} = alpha_t + gamma * (alpha - err_t)``, from errors already
realised at t (a forecast made at bar s is judged at bar s + horizon), so the intervals widen in
volatile regimes and narrow in calm ones; causal by construction. Here ``alpha_t`` is kept in
``[0, 1]``: at 0 the interval is the fold's largest residual wide, never infinite.

Lines, as simple returns (monotone in the log return, so ``pred_lo <= pred_return <= pred_hi``):
``pred_return = expm1(mean of the members' log returns)``, ``pred_std`` = the members' spread (standard
deviation of their simple returns; NaN for one model), ``pred_lo, pred_hi = expm1(mean -/+ half-width)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError

LINES = ("pred_log_return", "pred_std", "pred_lo", "pred_hi")


def min_residuals(coverage: float) -> int:
    """Fewest validation residuals for which a ``coverage`` interval is finite: ``ceil((n+1) c) <= n``."""
    n = 1
    while math.ceil((n + 1) * coverage - 1e-12) > n:
        n += 1
    return n


def conformal_half_width(scores: np.ndarray, coverage: float) -> float:
    """The split-conformal half-width: the ``ceil((n + 1) * coverage)``-th smallest absolute residual."""
    n = len(scores)
    rank = math.ceil((n + 1) * coverage - 1e-12)
    if rank > n:
        raise ConfigError(f"interval={coverage} needs at least {min_residuals(coverage)} validation residuals per "
                          f"fold; a fold has {n}: raise validation_split or train_window, or lower interval")
    return float(np.sort(scores)[max(rank, 1) - 1])


def combine(members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean log return, spread of simple returns) of an ensemble's forecasts, members along axis 0."""
    members = np.asarray(members, dtype=np.float64)
    if members.shape[0] == 1:
        return members[0], np.full(members.shape[1:], np.nan)
    return members.mean(axis=0), np.expm1(members).std(axis=0, ddof=1)


@dataclass
class AdaptiveLevel:
    """Adaptive conformal inference's running miscoverage level and the forecasts awaiting their outcome."""

    target: float  # alpha = 1 - coverage
    gamma: float
    alpha: float = field(init=False)
    pending: dict = field(default_factory=dict)  # bar -> (log forecast, half-width)

    def __post_init__(self) -> None:
        self.alpha = self.target

    def learn(self, bar: int, realized: float | None) -> None:
        """The outcome of the forecast made at ``bar`` is known now: update the level."""
        made = self.pending.pop(bar, None)
        if made is None or realized is None or not math.isfinite(realized):
            return
        forecast, half_width = made
        err = 0.0 if abs(realized - forecast) <= half_width else 1.0
        self.alpha = min(1.0, max(0.0, self.alpha + self.gamma * (self.target - err)))


def half_width(scores: np.ndarray, alpha: float) -> float:
    """The conformal half-width at miscoverage ``alpha`` (0: the largest residual)."""
    n = len(scores)
    rank = min(n, max(1, math.ceil((n + 1) * (1.0 - alpha) - 1e-12)))
    return float(np.sort(scores)[rank - 1])


def pinball_loss(realized: np.ndarray, quantile: np.ndarray, tau: float) -> float:
    """Mean pinball (quantile) loss of ``quantile`` as the tau-quantile of ``realized``."""
    diff = np.asarray(realized, dtype=float) - np.asarray(quantile, dtype=float)
    ok = np.isfinite(diff)
    if not ok.any():
        return math.nan
    diff = diff[ok]
    return float(np.mean(np.maximum(tau * diff, (tau - 1.0) * diff)))
