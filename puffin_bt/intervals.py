"""Uncertainty of a forecast: the spread of a seed ensemble and conformal prediction intervals.

Split conformal prediction (Vovk et al. 2005; Lei et al. 2018): a fold's validation residuals
(its chronological tail: never later data) give the half-width of the interval of the next
``horizon``-bar log return, the ``ceil((n + 1) * coverage)``-th smallest absolute residual
(the finite-sample correction). Adaptive conformal inference (Gibbs & Candès 2021) moves the
miscoverage level online, ``alpha_{t+1} = alpha_t + gamma * (alpha - err_t)``, from errors already
realised at t (a forecast made at bar s is judged at bar s + horizon), so the intervals widen in
volatile regimes and narrow in calm ones; causal by construction. Here ``alpha_t`` is kept in
``[0, 1]``: at 0 the interval is the fold's largest residual wide, never infinite.
The volatility-normalised score (``"vol"``; Lei et al. 2018's locally weighted conformal) divides each
validation residual by the trailing realised volatility at the bar its forecast was made; the interval at
bar t is that quantile times the volatility at t, from bars <= t only: wide in stormy spells, narrow in calm
ones, with the split method's finite-sample guarantee on the normalised scale.

Lines, as simple returns (monotone in the log return, so ``pred_lo <= pred_return <= pred_hi``):
``pred_return = expm1(mean of the members' log returns)``, ``pred_std`` = the members' spread (standard
deviation of their simple returns; NaN for one model), ``pred_lo, pred_hi = expm1(mean -/+ half-width)``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError

__all__ = [
    "AdaptiveLevel", "FoldInterval", "LINES", "VOL_WINDOW", "combine", "combine_variances", "conformal_half_width", "fold_scores",
    "half_widths", "lines_of", "pinball_loss", "trailing_volatility"
]

# A volatility target (``target="volatility"``) keeps the same four columns: the forecast per-bar variance, the
# members' spread of volatilities, and NaN (no interval).
LINES = ("pred_log_return", "pred_std", "pred_lo", "pred_hi")
# Log returns in the trailing realised volatility of the "vol" score. 20 bars over-react (a noisy estimate, and
# volatility reverts): on the bundled stocks the 80% interval then covered 73.5 / 81.8 / 86.7% by tercile of
# 20-bar volatility; 60 bars: 78.0 / 80.4 / 82.8% (ewm 0.94: 75.9 / 81.5 / 85.0; README "Uncertainty").
VOL_WINDOW = 60
# Volatility floor (log-return units): a window of unchanged closes has none, and a score divided by 0 is inf.
VOL_FLOOR = 1e-8


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


def trailing_volatility(closes: np.ndarray, bars: np.ndarray, offset: int = 0) -> np.ndarray:
    """Realised volatility at each of ``bars``: the root mean square of the up to ``VOL_WINDOW`` log returns
    ending at the bar (``closes[i]`` is bar ``offset + i``; bars <= t only), floored at ``VOL_FLOOR``.
    Each bar's value is computed from its own window alone, so it is the same whatever the array's length."""
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.diff(np.log(np.asarray(closes, dtype=np.float64)))
    # padded so that row i of the view holds the returns ending at closes[i]; NaN where there are none
    padded = np.concatenate([np.full(VOL_WINDOW, np.nan), returns])
    windows = np.lib.stride_tricks.sliding_window_view(padded, VOL_WINDOW)
    rows = windows[np.asarray(bars, dtype=np.int64) - offset]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a bar with no return yet: NaN, not a warning
        volatility = np.sqrt(np.nanmean(rows**2, axis=1))
    return np.maximum(volatility, VOL_FLOOR)


def fold_scores(residuals: np.ndarray | None, coverage: float, where: str,
                volatility: np.ndarray | None = None) -> np.ndarray:
    """A fold's conformal scores, sorted: the validation residuals' magnitudes, each over the trailing volatility
    when its forecast was made (``volatility``, the "vol" score); too few for ``coverage`` is a ConfigError naming
    the fold (``where``)."""
    need = min_residuals(coverage)
    if residuals is None or len(residuals) < need:
        got = 0 if residuals is None else len(residuals)
        raise ConfigError(f"interval={coverage} needs at least {need} validation residuals per fold; {where} has "
                          f"{got}: raise validation_split or train_window, or lower interval")
    scores = np.abs(np.asarray(residuals, dtype=np.float64))
    if volatility is not None:
        scores = scores / volatility
    return np.sort(scores)


def half_widths(method: str, scores: np.ndarray, width: float, aci: AdaptiveLevel | None, horizon: int,
                bars: np.ndarray, log_return: np.ndarray, closes: np.ndarray, offset: int = 0) -> np.ndarray:
    """The interval's half-width (log return) at each of ``bars``, forecast ``log_return`` there, from a fold's sorted
    ``scores`` and split half-width ``width``: constant ("split"), scaled by the trailing volatility ("vol"), or at
    the adaptive level of ``aci``, which learns each outcome as it is realised ("aci"; ``closes[i]`` is bar
    ``offset + i``)."""
    if method == "split":
        return np.full(len(bars), width)
    if method == "vol":
        return width * trailing_volatility(closes, bars, offset)
    widths = np.empty(len(bars))
    for i, bar in enumerate(bars):
        then, now = int(bar) - horizon - offset, int(bar) - offset
        if then >= 0:  # the forecast made at bar - horizon is judged now, with the close of this bar
            aci.learn(int(bar) - horizon, float(np.log(closes[now]) - np.log(closes[then])))
        widths[i] = half_width(scores, aci.alpha)
        aci.pending[int(bar)] = (float(log_return[i]), widths[i])
    return widths


class FoldInterval:
    """A per-ticker walk-forward's interval state: the current fold's sorted conformal ``scores`` (its validation
    residuals' magnitudes; ``"vol"``: over the volatility) and split ``half_width``, and the adaptive level ``aci``
    carries across folds (``"aci"``)."""

    def __init__(self, coverage: float, method: str, aci_gamma: float) -> None:
        self.coverage, self.method = coverage, method
        self.scores: np.ndarray | None = None
        self.half_width: float | None = None
        self.aci = AdaptiveLevel(1.0 - coverage, aci_gamma)

    def keep(self, scores: np.ndarray) -> None:
        """Make ``scores`` (a fold's, computed now or read back from a saved fold) the current fold's."""
        self.scores = np.sort(np.asarray(scores, dtype=np.float64))
        self.half_width = conformal_half_width(self.scores, self.coverage)

    def widths(self, horizon: int, bars: np.ndarray, log_return: np.ndarray, closes: np.ndarray,
               offset: int = 0) -> np.ndarray:
        """``half_widths`` of ``bars`` from the current fold's scores."""
        return half_widths(self.method, self.scores, self.half_width, self.aci, horizon, bars, log_return, closes,
                           offset)


def lines_of(log_return: np.ndarray, spread: np.ndarray, widths: np.ndarray | None) -> np.ndarray:
    """The forecast lines (bars, 4: ``LINES``) from the members' mean log return and spread (``combine``) and the
    interval's half-widths (None: no interval, NaN bounds)."""
    out = np.full((len(log_return), len(LINES)), np.nan)
    out[:, 0], out[:, 1] = log_return, spread
    if widths is not None:
        out[:, 2], out[:, 3] = np.expm1(log_return - widths), np.expm1(log_return + widths)
    return out


def combine(members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean log return, spread of simple returns) of an ensemble's forecasts, members along axis 0."""
    members = np.asarray(members, dtype=np.float64)
    if members.shape[0] == 1:
        return members[0], np.full(members.shape[1:], np.nan)
    return members.mean(axis=0), np.expm1(members).std(axis=0, ddof=1)


def combine_variances(members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean variance, spread of volatilities) of an ensemble's variance forecasts (``target="volatility"``),
    members along axis 0: the mean of variances is the mixture's variance, so no member's scale is lost."""
    members = np.asarray(members, dtype=np.float64)
    if members.shape[0] == 1:
        return members[0], np.full(members.shape[1:], np.nan)
    return members.mean(axis=0), np.sqrt(members).std(axis=0, ddof=1)


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
