"""The volatility forecasts a volatility net must beat: HAR-RV, RiskMetrics EWMA, the trailing 20-bar mean and
GARCH(1,1), each forecasting ``volatility.realised_variance_target`` (the per-bar variance of the next ``horizon``
log returns) on the walk-forward's refit bars. Torch- and Backtrader-free; GARCH needs the ``arch`` extra.

Causality (DESIGN rules 1-2): the forecast at bar ``t`` uses closes ``<= t`` only; a fitted model's parameters
come from the latest refit bar ``T <= t`` and from targets that end at or before ``T`` (``rv[s]``, ``s <= T -
horizon``), so perturbing any close after ``t`` moves nothing at or before ``t``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from .errors import ConfigError, DataError
from .volatility import realised_variance_target

__all__ = ["baseline_variances", "available_methods", "METHODS", "GARCH_MISSING"]

METHODS = ("har", "ewma", "trailing", "garch")
EWMA_LAMBDA = 0.94  # RiskMetrics (1996), daily data
TRAILING_BARS = 20
HAR_WEEK, HAR_MONTH = 5, 22  # Corsi (2009): the weekly and monthly components, in trading days
HAR_MIN_ROWS = 50  # fewer training rows than this: no HAR fit at that refit bar (its forecasts stay NaN)
GARCH_MIN_RETURNS = 100  # the same for GARCH: too few returns for three parameters' likelihood
GARCH_SCALE = 100.0  # arch's optimiser wants returns in percent (variances of order 1), not in fractions
GARCH_MISSING = "no GARCH(1,1) volatility baseline: arch is not installed (pip install 'puffin_bt[garch]')"
_said = set()  # the notes already said in this process: each is said once


def available_methods() -> tuple[str, ...]:
    """The baselines this installation can compute: all of ``METHODS``, less ``"garch"`` without ``arch``."""
    return METHODS if _arch_installed() else tuple(m for m in METHODS if m != "garch")


def baseline_variances(closes: np.ndarray, horizon: int, refit_bars: Sequence[int],
                       methods: Sequence[str] | None = None, *, train_window: int | None = None) -> dict[str, np.ndarray]:
    """Per-bar forecasts of ``rv[t] = mean(r[t+1..t+horizon]**2)`` by each baseline in ``methods``.

    Each array has the length of ``closes`` and is NaN before the first refit bar (and where a baseline lacks the
    history it needs). ``methods=None`` computes every available one (without ``arch``, GARCH is skipped with a
    one-line warning, said once); naming ``"garch"`` without ``arch`` is a ``ConfigError``. ``train_window``: HAR
    and GARCH fit at refit bar ``T`` on the bars ``T - train_window + 1 .. T`` only (the nets' ``train_window``, so a
    baseline never sees more data than the net it is compared with); None: every bar up to ``T`` (expanding).

    - ``"har"``: HAR-RV (Corsi 2009), fitted by OLS on levels at each refit bar (the targets ending by then):
      ``rv[t] ~ 1 + r[t]**2 + mean(r[t-4..t]**2) + mean(r[t-21..t]**2)``. Levels, not logs: the forecast is of
      the variance's mean, which QLIKE and the MSE reward, and a log of one squared daily return is -inf at a
      zero return. Where the fitted line goes to a variance <= 0, the forecast is the monthly component.
    - ``"ewma"``: RiskMetrics, ``s[t] = 0.94 s[t-1] + 0.06 r[t]**2`` seeded with the mean of the first 20
      squared returns; no fit, and flat over the horizon (a random-walk variance).
    - ``"trailing"``: the mean squared return of the last 20 bars, flat over the horizon.
    - ``"garch"``: GARCH(1,1) with zero mean and normal errors (``arch``), refitted at each refit bar on the
      returns up to it (within ``train_window``); at each bar its recursion runs on the returns up to that bar
      and the forecast is the mean of the next ``horizon`` conditional variances.

    >>> closes = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 300)))
    >>> fc = baseline_variances(closes, horizon=5, refit_bars=[149, 199, 249], methods=["trailing", "ewma"])
    >>> sorted(fc), bool(np.isnan(fc["ewma"][148])), bool(0.5e-4 < fc["trailing"][-1] < 2e-4)
    (['ewma', 'trailing'], True, True)
    """
    closes = _checked_closes(closes)
    horizon = _checked_horizon(horizon, len(closes))
    refits = _checked_refit_bars(refit_bars, len(closes))
    if train_window is not None and (isinstance(train_window, bool) or not isinstance(train_window, int | np.integer)
                                     or train_window < 2):
        raise ConfigError(f"train_window={train_window!r} must be an integer >= 2 (bars) or None (expanding)")
    starts = {int(t): 0 if train_window is None else max(0, int(t) - int(train_window) + 1) for t in refits}
    wanted = _checked_methods(methods)
    squared = _squared_returns(closes)
    fold_of_bar = np.searchsorted(refits, np.arange(len(closes)), side="right") - 1  # -1 before the first refit
    forecasts = {}
    for method in wanted:
        if method == "har":
            forecast = _har_forecasts(closes, squared, horizon, refits, fold_of_bar, starts)
        elif method == "ewma":
            forecast = _ewma_variance(squared)
        elif method == "trailing":
            forecast = _trailing_mean(squared, TRAILING_BARS)
        else:
            forecast = _garch_forecasts(closes, horizon, refits, starts)
        forecast[fold_of_bar < 0] = np.nan
        forecasts[method] = forecast
    return forecasts


def _arch_installed() -> bool:
    try:
        import arch  # noqa: F401
    except ImportError:
        return False
    return True


def _say_once(note: str) -> None:
    if note not in _said:
        _said.add(note)
        warnings.warn(note, RuntimeWarning, stacklevel=3)


def _checked_closes(closes) -> np.ndarray:
    values = np.asarray(closes, dtype=float)
    if values.ndim != 1:
        raise DataError(f"closes must be one series (1-D), got shape {values.shape}; pass one ticker's closes")
    bad = np.flatnonzero(~np.isfinite(values) | (values <= 0))
    if len(bad):
        raise DataError(f"closes must be finite and > 0; bar {bad[0]} is {values[bad[0]]!r}: drop or fill it first")
    return values


def _checked_horizon(horizon, n_bars: int) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or not 1 <= horizon < n_bars:
        raise ConfigError(f"horizon={horizon!r} must be an integer from 1 to {n_bars - 1} (the series' length - 1)")
    return int(horizon)


def _checked_refit_bars(refit_bars, n_bars: int) -> np.ndarray:
    bars = np.asarray(list(refit_bars))
    if bars.size == 0 or not np.issubdtype(bars.dtype, np.integer):
        raise ConfigError(f"refit_bars={list(refit_bars)!r} must be a non-empty sequence of integer bar positions")
    outside = bars[(bars < 0) | (bars >= n_bars)]
    if len(outside):
        raise ConfigError(f"refit bar {outside[0]} is outside the series (0 .. {n_bars - 1})")
    return np.unique(bars)


def _checked_methods(methods) -> tuple[str, ...]:
    if methods is None:
        if not _arch_installed():
            _say_once(GARCH_MISSING)
        return available_methods()
    wanted = tuple(methods)
    unknown = [m for m in wanted if m not in METHODS]
    if unknown:
        raise ConfigError(f"volatility baseline {unknown[0]!r} is not known; use some of {list(METHODS)}")
    if "garch" in wanted and not _arch_installed():
        raise ConfigError(f"method 'garch' asked for, but {GARCH_MISSING}")
    return wanted


def _squared_returns(closes: np.ndarray) -> np.ndarray:
    """``r[t]**2`` with ``r[t] = log(c[t] / c[t-1])``; NaN at bar 0 (no return yet)."""
    squared = np.full(len(closes), np.nan)
    squared[1:] = np.diff(np.log(closes)) ** 2
    return squared


def _trailing_mean(squared: np.ndarray, bars: int) -> np.ndarray:
    """Mean of ``squared[t-bars+1..t]``; NaN until ``bars`` returns exist (bar ``bars``)."""
    cumulative = np.concatenate([[0.0], np.cumsum(np.nan_to_num(squared))])
    mean = np.full(len(squared), np.nan)
    mean[bars:] = (cumulative[bars + 1:] - cumulative[1:-bars]) / bars
    return mean


def _ewma_variance(squared: np.ndarray) -> np.ndarray:
    variance = np.full(len(squared), np.nan)
    if len(squared) <= TRAILING_BARS:
        return variance
    level = float(np.mean(squared[1:TRAILING_BARS + 1]))  # the seed, at bar TRAILING_BARS
    variance[TRAILING_BARS] = level
    for t in range(TRAILING_BARS + 1, len(squared)):
        level = EWMA_LAMBDA * level + (1.0 - EWMA_LAMBDA) * squared[t]
        variance[t] = level
    return variance


def _har_regressors(squared: np.ndarray) -> np.ndarray:
    """Rows ``[1, daily, weekly, monthly]`` per bar; NaN until the monthly component exists."""
    return np.column_stack([np.ones(len(squared)), squared, _trailing_mean(squared, HAR_WEEK),
                            _trailing_mean(squared, HAR_MONTH)])


def _har_coefficients(closes: np.ndarray, squared: np.ndarray, horizon: int, refit_bar: int,
                      train_start: int = 0) -> np.ndarray:
    """OLS coefficients (constant, daily, weekly, monthly) fitted at ``refit_bar`` on the targets that end by it,
    each row's regressors inside the bars ``train_start .. refit_bar``; NaN with fewer than ``HAR_MIN_ROWS`` rows."""
    rows = np.arange(train_start + HAR_MONTH, refit_bar - horizon + 1)
    if len(rows) < HAR_MIN_ROWS:
        return np.full(4, np.nan)
    x = _har_regressors(squared)[rows]
    y = realised_variance_target(closes, rows, horizon)
    coefficients, *_ = np.linalg.lstsq(x, y, rcond=None)
    return coefficients


def _har_forecasts(closes, squared, horizon, refits, fold_of_bar, starts) -> np.ndarray:
    coefficients = np.array([_har_coefficients(closes, squared, horizon, int(t), starts[int(t)]) for t in refits])
    regressors = _har_regressors(squared)
    forecast = np.full(len(closes), np.nan)
    fitted = np.flatnonzero(fold_of_bar >= 0)
    fitted = fitted[np.isfinite(coefficients[fold_of_bar[fitted], 0])]
    forecast[fitted] = np.einsum("ij,ij->i", regressors[fitted], coefficients[fold_of_bar[fitted]])
    not_positive = fitted[~(forecast[fitted] > 0)]
    forecast[not_positive] = regressors[not_positive, 3]  # the monthly mean: positive and never extrapolated
    return forecast


def _garch_parameters(closes: np.ndarray, refit_bar: int,
                      train_start: int = 0) -> tuple[float, float, float, float] | None:
    """``(omega, alpha, beta, variance at refit_bar)`` of a zero-mean GARCH(1,1) fitted on the returns of the bars
    ``train_start .. refit_bar``, per-bar fractions (not percent); None with fewer than ``GARCH_MIN_RETURNS``."""
    from arch import arch_model

    returns = GARCH_SCALE * np.diff(np.log(closes[train_start:refit_bar + 1]))
    if len(returns) < GARCH_MIN_RETURNS:
        return None
    # show_warning=False: arch's fit sets its ConvergenceWarning to "always" itself, past any outer filter; the
    # block restores the global filters it changes. A failed fit is handled below.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = arch_model(returns, mean="Zero", vol="GARCH", p=1, q=1, rescale=False).fit(disp="off",
                                                                                           show_warning=False)
    omega, alpha, beta = (float(result.params[k]) for k in ("omega", "alpha[1]", "beta[1]"))
    if result.convergence_flag != 0 or not np.all(np.isfinite([omega, alpha, beta])):
        return None
    scale2 = GARCH_SCALE ** 2
    return omega / scale2, alpha, beta, float(result.conditional_volatility[-1]) ** 2 / scale2


def _garch_forecasts(closes, horizon, refits, starts) -> np.ndarray:
    """At each bar ``t`` of a fold: the one-step variance ``s[t+1] = omega + alpha r[t]**2 + beta s[t]`` from the
    recursion started at the fold's refit bar, then the mean over ``k = 1..horizon`` of
    ``s[t+k] = omega (1 + p + ... + p**(k-2)) + p**(k-1) s[t+1]`` with ``p = alpha + beta``."""
    returns = np.concatenate([[np.nan], np.diff(np.log(closes))])
    forecast = np.full(len(closes), np.nan)
    parameters, variance = None, np.nan  # variance: s[t], the conditional variance of r[t]
    for k, refit in enumerate(refits):
        fit = _garch_parameters(closes, int(refit), starts[int(refit)])
        if fit is not None:
            *parameters, variance = fit
        elif parameters is None:  # no good fit yet; a failed refit later keeps the last good one's recursion
            continue
        omega, alpha, beta = parameters
        powers = (alpha + beta) ** np.arange(horizon)  # p**(k-1), k = 1..horizon
        scale_on_next = powers.mean()
        constant = omega * np.concatenate([[0.0], np.cumsum(powers[:-1])]).mean()
        end = refits[k + 1] if k + 1 < len(refits) else len(closes)
        for t in range(int(refit), int(end)):
            variance = omega + alpha * returns[t] ** 2 + beta * variance  # now s[t+1]
            forecast[t] = constant + scale_on_next * variance
    return forecast
