"""Forecast quality, measured causally: regression and direction metrics against naive baselines.

Every metric compares the forecast made at bar t (from closes up to t) with the
return realised from t to t+horizon; the baselines are computed on the same bars.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .dates import date_numbers_of
from .errors import ConfigError
from .tickers import one_process_options, precompute_forecasts, resolve_workers
from .walkforward import make_walk_forward, require_history


def binomial_p_value(successes: int, trials: int, p: float = 0.5) -> float:
    """One-sided P(X >= successes) for X ~ Binomial(trials, p): is the hit rate better than chance?"""
    if trials == 0:
        return math.nan
    k = np.arange(successes, trials + 1)
    log_pmf = (
        np.array([math.lgamma(trials + 1) - math.lgamma(i + 1) - math.lgamma(trials - i + 1) for i in k])
        + k * math.log(p) + (trials - k) * math.log1p(-p)
    )
    return float(min(1.0, np.exp(log_pmf).sum()))


def forecast_metrics(pred: np.ndarray, actual: np.ndarray) -> dict:
    """MSE, MAE, R^2 (against the actuals' own mean), direction accuracy and its one-sided
    binomial p-value against 50%. NaN pairs are dropped; zero actual moves do not count
    towards direction accuracy."""
    pred = np.asarray(pred, dtype=float)
    actual = np.asarray(actual, dtype=float)
    ok = np.isfinite(pred) & np.isfinite(actual)
    pred, actual = pred[ok], actual[ok]
    n = len(actual)
    if n == 0:
        return {"n": 0, "mse": math.nan, "mae": math.nan, "r2": math.nan, "direction_accuracy": math.nan,
                "direction_p_value": math.nan}
    err = pred - actual
    ss_tot = float(np.sum((actual - actual.mean()) ** 2))
    moved = actual != 0
    hits = int(np.sum(np.sign(pred[moved]) == np.sign(actual[moved])))
    trials = int(moved.sum())
    return {
        "n": n,
        "mse": float(np.mean(err ** 2)),
        "mae": float(np.mean(np.abs(err))),
        "r2": 1.0 - float(np.sum(err ** 2)) / ss_tot if ss_tot > 0 else math.nan,
        "direction_accuracy": hits / trials if trials else math.nan,
        "direction_p_value": binomial_p_value(hits, trials),
    }


def evaluate_forecasts(forecasts: pd.DataFrame) -> pd.DataFrame:
    """Per-ticker and pooled metrics of a forecasts frame (columns ticker, date, pred_return,
    realized_return, optionally last_return) next to two baselines on the same bars: zero
    return, and the last ``horizon``-bar return persisting."""
    rows = {}
    frames = [(t, g) for t, g in forecasts.groupby("ticker", sort=False)] + [("POOLED", forecasts)]
    for ticker, g in frames:
        g = g.dropna(subset=["pred_return", "realized_return"])
        model = forecast_metrics(g["pred_return"], g["realized_return"])
        zero = forecast_metrics(np.zeros(len(g)), g["realized_return"])
        persist = forecast_metrics(g["last_return"], g["realized_return"]) if "last_return" in g else None
        row = {**model, "mse_zero": zero["mse"], "mae_zero": zero["mae"]}
        if persist is not None:
            row.update({"mse_persist": persist["mse"], "mae_persist": persist["mae"],
                        "direction_accuracy_persist": persist["direction_accuracy"]})
        rows[ticker] = row
    return pd.DataFrame(rows).T


def forecast_frame(ticker: str, dates, closes: np.ndarray, pred_return: np.ndarray, horizon: int) -> pd.DataFrame:
    """Forecasts next to what happened: the return realised over the next ``horizon`` bars and
    the last ``horizon``-bar return (the persistence baseline). Bars without a forecast are dropped."""
    n = len(closes)
    realized = np.full(n, np.nan)
    realized[: n - horizon] = closes[horizon:] / closes[: n - horizon] - 1
    last = np.full(n, np.nan)
    last[horizon:] = closes[horizon:] / closes[: n - horizon] - 1
    return pd.DataFrame({"ticker": ticker, "date": dates, "close": closes, "pred_return": pred_return,
                         "realized_return": realized, "last_return": last}).dropna(subset=["pred_return"])


def walk_forward_forecasts(frames: dict, model: str = "lstm", store=None, on_fold=None, workers: int | str | None = None,
                           executor: str | None = None, address: str | None = None,
                           **forecast_kwargs) -> pd.DataFrame:
    """Walk-forward forecasts for each ticker's closes, without Backtrader.

    Returns a long frame (ticker, date, close, pred_return, realized_return, last_return).
    With a ``ForecastStore`` the entries are shared with ``backtest()`` runs of the same
    data and configuration (same fingerprint). ``workers`` > 1 (or ``"auto"``) or an ``executor``
    (``"local"``/``"ray"``, as in ``backtest``) computes the tickers in parallel into the
    store first (a store is then required).
    """
    forecast_kwargs = one_process_options(forecast_kwargs, workers)
    workers = resolve_workers(workers, len(frames))
    if executor is not None or (workers or 1) > 1:
        if store is None:
            raise ConfigError("parallel walk-forward forecasts need a ForecastStore (store=...) to land in")
        precompute_forecasts(frames, model=model, store=store, executor=executor or "local", workers=workers,
                             address=address, **forecast_kwargs)
    parts, folds = [], []
    for ticker, df in frames.items():
        report = None if on_fold is None else (lambda rec, _t=ticker: on_fold(_t, rec))
        walk = make_walk_forward(model, report, **forecast_kwargs)
        require_history(str(ticker), len(df), walk.schedule.min_train)  # as backtest: never an empty row
        closes = df["close"].to_numpy(dtype=np.float64)
        dates = list(df.index.to_pydatetime())
        if store is not None:
            log_pred = store.forecasts(walk, closes, dates, date_numbers_of(df.index))
        else:
            log_pred = walk.run(closes, dates).pred_log_return
        parts.append(forecast_frame(ticker, df.index, closes, np.expm1(log_pred), walk.schedule.horizon))
        folds.extend({"ticker": ticker, **f.to_dict()} for f in walk.folds)
    out = pd.concat(parts, ignore_index=True)
    out.attrs["folds"] = pd.DataFrame(folds)
    return out
