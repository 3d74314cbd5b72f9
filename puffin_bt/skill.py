"""Is a forecast better than a naive one by more than chance? Engine-free numpy significance tests with
the right nulls (DESIGN rule 13): Diebold–Mariano with the Harvey–Leybourne–Newbold correction, Newey–West
t-statistics for overlapping horizons, and the direction test against the model's own up/down call mix.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["diebold_mariano", "direction_test", "newey_west_t"]


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom.

    >>> round(t_cdf(2.0, 10), 6), t_cdf(0.0, 3)
    (0.963306, 0.5)
    """
    if not math.isfinite(t):
        return math.nan if math.isnan(t) else float(t > 0)
    tail = 0.5 * _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def diebold_mariano(loss_model, loss_baseline, horizon: int = 1) -> tuple[float, float]:
    """Diebold–Mariano test that the model's loss is *below* the baseline's (one-sided), with the
    Harvey–Leybourne–Newbold (1997) small-sample correction. Returns ``(statistic, p_value)``.

    ``d = loss_model - loss_baseline`` per bar; its long-run variance is ``gamma_0 + 2 sum_{k<h} gamma_k``
    (the autocovariances an ``h``-bar forecast's overlapping errors carry; when that is not positive, the
    Bartlett-weighted Newey–West sum). The statistic ``mean(d) / sqrt(V / n)`` is scaled by
    ``sqrt((n + 1 - 2h + h(h - 1) / n) / n)`` and compared with Student's t on ``n - 1`` degrees of freedom:
    a small p says the model's loss is significantly lower. Non-finite pairs are dropped; NaN when fewer
    than 3 remain or ``d`` does not vary.
    """
    d = np.asarray(loss_model, dtype=float) - np.asarray(loss_baseline, dtype=float)
    d = d[np.isfinite(d)]
    n, h = len(d), int(horizon)
    if n < 3:
        return math.nan, math.nan
    centred = d - d.mean()
    gammas = [float(centred @ centred) / n] + [float(centred[k:] @ centred[:-k]) / n for k in range(1, min(h, n))]
    variance = gammas[0] + 2.0 * sum(gammas[1:])
    if variance <= 0:
        variance = gammas[0] + 2.0 * sum((1.0 - k / h) * g for k, g in enumerate(gammas[1:], start=1))
    if not variance > 1e-300:
        return math.nan, math.nan
    statistic = float(d.mean()) / math.sqrt(variance / n)
    statistic *= math.sqrt(max(n + 1 - 2 * h + h * (h - 1) / n, 0.0) / n)
    return statistic, t_cdf(statistic, n - 1)


def newey_west_t(values, lags: int = 0) -> float:
    """t-statistic of the mean of ``values`` with Newey–West (Bartlett, ``lags`` lags) standard errors, for
    overlapping observations (an ``h``-bar horizon: ``lags = h - 1``). With ``lags = 0`` it is the plain
    ``mean / (std / sqrt(n))``; the long-run variance is scaled by ``n / (n - 1)`` so both agree there.

    >>> round(newey_west_t([1.0, 2.0, 3.0, 4.0]), 4)
    3.873
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 2:
        return math.nan
    centred = x - x.mean()
    variance = float(centred @ centred) / n
    for k in range(1, min(int(lags), n - 1) + 1):
        variance += 2.0 * (1.0 - k / (lags + 1)) * float(centred[k:] @ centred[:-k]) / n
    variance *= n / (n - 1)
    return float(x.mean()) / math.sqrt(variance / n) if variance > 0 else math.nan


def _log_factorials(n: int) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])


def _hits_distribution(n: int, calls_up: int, moves_up: int) -> np.ndarray:
    """P(hits = j), j = 0..n, when ``calls_up`` up-calls fall on ``n`` days at random (every arrangement
    equally likely) and ``moves_up`` of the days went up: the correct up-calls are hypergeometric."""
    lf = _log_factorials(n)
    k = np.arange(max(0, calls_up + moves_up - n), min(calls_up, moves_up) + 1)
    log_pmf = (lf[moves_up] - lf[k] - lf[moves_up - k] + lf[n - moves_up] - lf[calls_up - k]
               - lf[n - moves_up - calls_up + k] - lf[n] + lf[calls_up] + lf[n - calls_up])
    out = np.zeros(n + 1)
    out[2 * k + n - calls_up - moves_up] = np.exp(log_pmf)  # hits = up-calls right + down-calls right
    return out


def direction_test(pred, actual, groups=None) -> dict:
    """Direction skill beyond drift: is the hit rate above what the model's own mix of up and down calls
    would score by chance on these outcomes?

    On the bars where the model made a call (``pred != 0``) and the price moved (``actual != 0``), the
    null is that the calls are unrelated to the outcomes: every arrangement of the model's up-calls over
    the bars is equally likely, so the number of correct up-calls is hypergeometric and the one-sided p is
    exact (Fisher's exact test on the calls × outcomes table). With ``groups`` (e.g. the tickers) the calls
    are permuted within each group and the hit counts' distributions convolved (an exact stratified test),
    so one ticker's drift cannot stand in for skill on another. Always calling "up" in a rising market
    scores the up-rate and gets p = 1.

    The null treats the bars as exchangeable: for overlapping ``h``-bar outcomes (``h`` > 1), which are
    autocorrelated, the p is optimistic (too small); read it with care there.

    Returns ``trials``, ``hits``, ``accuracy``, ``chance_accuracy`` (the null's expected hit rate) and
    ``p_value``.
    """
    pred = np.asarray(pred, dtype=float)
    actual = np.asarray(actual, dtype=float)
    keys = np.zeros(len(pred)) if groups is None else np.asarray(groups)
    ok = np.isfinite(pred) & np.isfinite(actual) & (pred != 0) & (actual != 0)
    distribution, hits, trials = np.ones(1), 0, 0
    for key in dict.fromkeys(keys[ok].tolist()):
        here = ok & (keys == key)
        up_call, up_move = pred[here] > 0, actual[here] > 0
        n = int(here.sum())
        distribution = np.convolve(distribution, _hits_distribution(n, int(up_call.sum()), int(up_move.sum())))
        hits += int(np.sum(up_call == up_move))
        trials += n
    if trials == 0:
        return {"trials": 0, "hits": 0, "accuracy": math.nan, "chance_accuracy": math.nan, "p_value": math.nan}
    expected = float(np.arange(trials + 1) @ distribution)
    return {"trials": trials, "hits": hits, "accuracy": hits / trials, "chance_accuracy": expected / trials,
            "p_value": float(min(1.0, distribution[hits:].sum()))}
