"""Forecast quality, measured causally: regression and direction metrics against naive baselines.

Every metric compares the forecast made at bar t (from closes up to t) with the
return realised from t to t+horizon; the baselines are computed on the same bars.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .dates import date_numbers_of, num2date
from .errors import ConfigError
from .globalmodel import Series, make_global_walk_forward
from .intervals import pinball_loss
from .store import as_lines
from .tickers import one_process_options, precompute_forecasts, resolve_workers
from .walkforward import feature_matrix, make_walk_forward, require_history


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


def interval_metrics(g: pd.DataFrame, coverage: float) -> dict:
    """How a prediction interval did: the share of realised returns inside it (``coverage``, against the
    nominal level), its mean width, and the mean pinball loss of its bounds as the (1 - c)/2 and
    (1 + c)/2 quantiles."""
    ok = g[["pred_lo", "pred_hi", "realized_return"]].notna().all(axis=1)
    lo, hi, real = (g.loc[ok, c].to_numpy(dtype=float) for c in ("pred_lo", "pred_hi", "realized_return"))
    tail = (1.0 - coverage) / 2
    return {"coverage": float(np.mean((real >= lo) & (real <= hi))) if len(real) else math.nan,
            "interval_width": float(np.mean(hi - lo)) if len(real) else math.nan,
            "pinball": (pinball_loss(real, lo, tail) + pinball_loss(real, hi, 1.0 - tail)) / 2 if len(real) else math.nan}


def evaluate_forecasts(forecasts: pd.DataFrame, interval: float | None = None) -> pd.DataFrame:
    """Per-ticker and pooled metrics of a forecasts frame (columns ticker, date, pred_return,
    realized_return, optionally last_return) next to two baselines on the same bars: zero
    return, and the last ``horizon``-bar return persisting. With the ``interval`` (its nominal
    coverage) the forecasts came with: coverage, width and pinball loss of ``pred_lo``/``pred_hi``."""
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
        if interval is not None and {"pred_lo", "pred_hi"} <= set(g.columns):
            row.update(interval_metrics(g, interval))
        rows[ticker] = row
    return pd.DataFrame(rows).T


def information_coefficients(forecasts: pd.DataFrame, min_tickers: int = 2) -> pd.DataFrame:
    """Cross-sectional skill, per date: the Pearson (IC) and Spearman (rank IC) correlation between the
    tickers' predicted and realised next returns, over the dates where at least ``min_tickers`` tickers
    have both (and they are not all equal). Columns ``ic``, ``rank_ic``, ``tickers``, indexed by date."""
    rows = {}
    both = forecasts.dropna(subset=["pred_return", "realized_return"])
    for date, g in both.groupby("date", sort=True):
        if len(g) < min_tickers or g["pred_return"].nunique() < 2 or g["realized_return"].nunique() < 2:
            continue
        pred, real = g["pred_return"].to_numpy(), g["realized_return"].to_numpy()
        rows[date] = {"ic": float(np.corrcoef(pred, real)[0, 1]),
                      "rank_ic": float(np.corrcoef(pd.Series(pred).rank(), pd.Series(real).rank())[0, 1]),
                      "tickers": len(g)}
    return pd.DataFrame(rows, index=["ic", "rank_ic", "tickers"]).T if rows else \
        pd.DataFrame(columns=["ic", "rank_ic", "tickers"])


def ic_summary(per_date: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation, IR (mean / std) and t-statistic (IR x sqrt(dates)) of the IC and the rank
    IC over dates: the numbers a Qlib user reads first."""
    out = {}
    for column, label in (("ic", "IC"), ("rank_ic", "rank IC")):
        values = per_date[column].astype(float).dropna() if column in per_date else pd.Series(dtype=float)
        n = len(values)
        mean = float(values.mean()) if n else math.nan
        std = float(values.std(ddof=1)) if n > 1 else math.nan
        ir = mean / std if n > 1 and std > 0 else math.nan
        out[label] = {"mean": mean, "std": std, "IR": ir, "t": ir * math.sqrt(n) if n > 1 else math.nan, "dates": n}
    return pd.DataFrame(out).T


def forecast_frame(ticker: str, dates, closes: np.ndarray, pred_return: np.ndarray, horizon: int,
                   lines: np.ndarray | None = None) -> pd.DataFrame:
    """Forecasts next to what happened: the return realised over the next ``horizon`` bars and
    the last ``horizon``-bar return (the persistence baseline); with ``lines`` (``intervals.LINES``)
    also ``pred_std``, ``pred_lo``, ``pred_hi`` where they were computed. Bars without a forecast are dropped."""
    n = len(closes)
    realized = np.full(n, np.nan)
    realized[: n - horizon] = closes[horizon:] / closes[: n - horizon] - 1
    last = np.full(n, np.nan)
    last[horizon:] = closes[horizon:] / closes[: n - horizon] - 1
    columns = {"ticker": ticker, "date": dates, "close": closes, "pred_return": pred_return,
               "realized_return": realized, "last_return": last}
    if lines is not None:
        for j, name in ((1, "pred_std"), (2, "pred_lo"), (3, "pred_hi")):
            if np.isfinite(lines[:, j]).any():
                columns[name] = lines[:, j]
    return pd.DataFrame(columns).dropna(subset=["pred_return"])


def walk_forward_forecasts(frames: dict, model: str = "lstm", store=None, on_fold=None, workers: int | str | None = None,
                           executor: str | None = None, address: str | None = None, scope: str = "per_ticker",
                           **forecast_kwargs) -> pd.DataFrame:
    """Walk-forward forecasts for each ticker's closes, without Backtrader.

    Returns a long frame (ticker, date, close, pred_return, realized_return, last_return).
    With a ``ForecastStore`` the entries are shared with ``backtest()`` runs of the same
    data and configuration (same fingerprint). ``workers`` > 1 (or ``"auto"``) or an ``executor``
    (``"local"``/``"ray"``, as in ``backtest``) computes the tickers in parallel into the
    store first (a store is then required). ``scope="global"``: one model across the tickers
    (``globalmodel``), its folds on the union of their dates.
    """
    if scope == "global":
        return _global_forecasts(frames, model, store, on_fold, forecast_kwargs)
    if scope != "per_ticker":
        raise ConfigError(f"scope={scope!r} is not known; use 'per_ticker' or 'global'")
    forecast_kwargs = one_process_options(forecast_kwargs, workers)
    workers = resolve_workers(workers, len(frames), forecast_kwargs.get("device", "auto"))
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
        closes, features, _ = feature_matrix(df, forecast_kwargs.get("features", ()))
        closes = np.asarray(closes, dtype=np.float64)
        dates = list(df.index.to_pydatetime())
        if store is not None:
            lines = store.forecast_lines(walk, closes, dates, date_numbers_of(df.index), features)
        else:
            lines = walk.run(closes, dates, features).lines
        parts.append(forecast_frame(ticker, df.index, closes, np.expm1(lines[:, 0]), walk.schedule.horizon, lines))
        folds.extend({"ticker": ticker, **f.to_dict()} for f in walk.folds)
    out = pd.concat(parts, ignore_index=True)
    out.attrs["folds"] = pd.DataFrame(folds)
    return out


def _global_forecasts(frames: dict, model: str, store, on_fold, forecast_kwargs: dict) -> pd.DataFrame:
    report = None if on_fold is None else (lambda rec: on_fold("global", rec))
    walk = make_global_walk_forward(model, report, **forecast_kwargs)
    series = []
    for ticker, df in frames.items():
        closes, features, _ = feature_matrix(df, forecast_kwargs.get("features", ()))
        series.append(Series(ticker, date_numbers_of(df.index), np.asarray(closes, dtype=np.float64), features))
    preds = store.global_forecasts(walk, series, num2date) if store is not None else walk.forecast_all(series, num2date)
    parts = [forecast_frame(ticker, df.index, df["close"].to_numpy(dtype=np.float64), np.expm1(as_lines(preds[ticker])[:, 0]),
                            walk.schedule.horizon, as_lines(preds[ticker])) for ticker, df in frames.items()]
    out = pd.concat(parts, ignore_index=True)
    out.attrs["folds"] = pd.DataFrame([{"ticker": "(global)", **f.to_dict()} for f in walk.folds])
    return out
