"""Forecast quality, measured causally: regression and direction metrics against naive baselines.

Every metric compares the forecast made at bar t (from closes up to t) with the
return realised from t to t+horizon; the baselines are computed on the same bars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .baselines import BASELINES, BASELINES_MISSING, baseline_forecasts, baselines_available, global_baseline_forecasts
from .dates import date_numbers_of, num2date
from .errors import ConfigError
from .files import atomic_write_bytes
from .globalmodel import Series, make_global_walk_forward
from .intervals import pinball_loss
from .options import OPTIONS
from .skill import diebold_mariano, direction_test, newey_west_t
from .store import as_lines
from .tickers import one_process_options, precompute_forecasts, resolve_workers
from .volbaselines import GARCH_MISSING, available_methods
from .voleval import ScoredForecasts, VolatilityEvaluation, baseline_methods, evaluate_volatility, volatility_frame
from .walkforward import feature_matrix, make_walk_forward, require_history

__all__ = [
    "EvaluationResult", "compare_families", "evaluate", "evaluate_forecasts", "forecast_frame", "forecast_metrics",
    "format_table", "walk_forward_forecasts"
]


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


def forecast_metrics(pred: np.ndarray, actual: np.ndarray, groups=None) -> dict:
    """MSE, MAE, R^2 (against the actuals' own mean) and direction accuracy, next to the always-up
    baseline's (``up_rate``, the share of moves that were up, is its accuracy). ``direction_p_value``: one-sided,
    against the accuracy the forecast's own mix of up and down calls would reach by chance on these outcomes
    (``skill.direction_test``, exact; within each of ``groups``, e.g. the tickers, when given), so a drift
    is not skill; ``direction_p_value_50``: the binomial test against 50%, which any drift passes.
    NaN pairs are dropped; zero actual moves do not count towards direction accuracy."""
    pred = np.asarray(pred, dtype=float)
    actual = np.asarray(actual, dtype=float)
    ok = np.isfinite(pred) & np.isfinite(actual)
    pred, actual = pred[ok], actual[ok]
    groups = None if groups is None else np.asarray(groups)[ok]
    n = len(actual)
    if n == 0:
        return {"n": 0, **dict.fromkeys(("mse", "mae", "r2", "direction_accuracy", "up_rate", "direction_accuracy_up",
                                         "direction_accuracy_chance", "direction_p_value", "direction_p_value_50"),
                                        math.nan)}
    err = pred - actual
    ss_tot = float(np.sum((actual - actual.mean()) ** 2))
    moved = actual != 0
    hits = int(np.sum(np.sign(pred[moved]) == np.sign(actual[moved])))
    trials = int(moved.sum())
    up_rate = float(np.mean(actual[moved] > 0)) if trials else math.nan
    against_mix = direction_test(pred, actual, groups)
    return {
        "n": n,
        "mse": float(np.mean(err ** 2)),
        "mae": float(np.mean(np.abs(err))),
        "r2": 1.0 - float(np.sum(err ** 2)) / ss_tot if ss_tot > 0 else math.nan,
        "direction_accuracy": hits / trials if trials else math.nan,
        "up_rate": up_rate,
        "direction_accuracy_up": up_rate,
        "direction_accuracy_chance": against_mix["chance_accuracy"],
        "direction_p_value": against_mix["p_value"],
        "direction_p_value_50": binomial_p_value(hits, trials),
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


def dm_p_value(g: pd.DataFrame, baseline: str | None, horizon: int = 1) -> float:
    """One-sided Diebold–Mariano p (``skill.diebold_mariano``, HLN-corrected) that ``pred_return``'s squared
    error is below the ``baseline`` column's (None: the zero-return forecast), on the rows of ``g`` in date
    order. Several tickers: the loss differential is averaged across the tickers on each date first, so
    the test runs on one series of dates and the tickers' common shocks do not count as independent."""
    real = g["realized_return"]
    base = 0.0 if baseline is None else g[baseline]
    d = (g["pred_return"] - real) ** 2 - (base - real) ** 2
    d = d.groupby(g["date"].to_numpy()).mean().sort_index()
    return diebold_mariano(d.to_numpy(), np.zeros(len(d)), horizon)[1]


# The forecasts frame's baseline columns (simple returns on the model's bars) and their names in the table.
BASELINE_COLUMNS = {"zero": None, "persist": "last_return", "ridge": "pred_ridge", "gbm": "pred_gbm"}


def evaluate_forecasts(forecasts: pd.DataFrame, interval: float | None = None, horizon: int = 1) -> pd.DataFrame:
    """Per-ticker and pooled metrics of a forecasts frame (columns ticker, date, pred_return,
    realized_return, optionally last_return, pred_ridge, pred_gbm) next to the baselines on the same bars:
    zero return (``mse_zero``), always up (``direction_accuracy_up``), the last ``horizon``-bar return
    persisting (``*_persist``) and, when given, ridge and gradient boosting (``*_ridge``, ``*_gbm``).
    ``dm_p_value``: Diebold–Mariano, the model's squared error below the zero forecast's; ``dm_p_value_<b>``
    against each other baseline and ``dm_p_value_best`` against ``best_baseline``, the one of lowest MSE.
    ``horizon``: the forecasts' (overlapping errors widen the DM variance). With the ``interval`` (its
    nominal coverage) the forecasts came with: coverage, width and pinball loss of ``pred_lo``/``pred_hi``."""
    rows = {}
    frames = [(t, g, None) for t, g in forecasts.groupby("ticker", sort=False)] + [("POOLED", forecasts, "ticker")]
    for ticker, g, strata in frames:
        g = g.dropna(subset=["pred_return", "realized_return"])
        real = g["realized_return"]
        row = forecast_metrics(g["pred_return"], real, None if strata is None else g[strata])
        baseline_mse = {}
        for name, column in BASELINE_COLUMNS.items():
            if column is not None and column not in g:
                continue
            base = forecast_metrics(np.zeros(len(g)) if column is None else g[column], real)
            baseline_mse[name] = base["mse"]
            row.update({f"mse_{name}": base["mse"], f"mae_{name}": base["mae"]})
            if name in ("ridge", "gbm"):
                row.update({f"r2_{name}": base["r2"], f"direction_accuracy_{name}": base["direction_accuracy"]})
            elif name == "persist":
                row["direction_accuracy_persist"] = base["direction_accuracy"]
            row["dm_p_value" if column is None else f"dm_p_value_{name}"] = dm_p_value(g, column, horizon)
        valid = {k: v for k, v in baseline_mse.items() if math.isfinite(v)}
        best = min(valid, key=valid.get) if valid else "zero"
        row["best_baseline"] = best
        row["dm_p_value_best"] = row["dm_p_value" if best == "zero" else f"dm_p_value_{best}"]
        if interval is not None and {"pred_lo", "pred_hi"} <= set(g.columns):
            row.update(interval_metrics(g, interval))
        rows[ticker] = row
    return pd.DataFrame(rows).T.infer_objects()


SIGNIFICANT = 0.05  # the level at which a verdict says "yes"


def _p_text(p) -> str:
    return "n/a" if p is None or not math.isfinite(p) else f"{p:.2g}"


def verdict(row) -> str:
    """One line in words for a row of ``evaluate_forecasts``: does the model beat the zero forecast and each
    trained baseline on squared error (one-sided Diebold–Mariano at 5%), and does its direction beat what
    its own call mix scores by chance (the drift)?"""
    def answer(p) -> str:
        return "yes" if p is not None and math.isfinite(p) and p < SIGNIFICANT else "no"

    parts = [f"beats the zero forecast: {answer(row['dm_p_value'])} (DM p = {_p_text(row['dm_p_value'])})"]
    for name in ("ridge", "gbm"):
        p = row.get(f"dm_p_value_{name}")
        if p is not None:
            parts.append(f"beats {name}: {answer(p)} (DM p = {_p_text(p)})")
    p = row["direction_p_value"]
    parts.append(f"direction skill beyond drift: {answer(p)} (p = {_p_text(p)})")
    return "; ".join(parts)


def information_coefficients(forecasts: pd.DataFrame, min_tickers: int = 3) -> pd.DataFrame:
    """Cross-sectional skill, per date: the Pearson (IC) and Spearman (rank IC) correlation between the
    tickers' predicted and realised next returns, over the dates where at least ``min_tickers`` tickers
    have both (and they are not all equal): with two tickers a correlation is always +-1, so the default
    is three. Columns ``ic``, ``rank_ic``, ``tickers``, indexed by date."""
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


def ic_summary(per_date: pd.DataFrame, horizon: int = 1) -> pd.DataFrame:
    """Mean, standard deviation, IR (mean / std) and t-statistic of the IC and the rank IC over dates: the
    numbers a Qlib user reads first. The t-statistic has Newey–West standard errors with ``horizon - 1``
    lags (``horizon``-bar returns overlap, so neighbouring dates' ICs are correlated); for next-bar returns
    it is IR x sqrt(dates). NaN without dates (``information_coefficients`` keeps dates with 3+ tickers)."""
    out = {}
    for column, label in (("ic", "IC"), ("rank_ic", "rank IC")):
        values = per_date[column].astype(float).dropna() if column in per_date else pd.Series(dtype=float)
        n = len(values)
        mean = float(values.mean()) if n else math.nan
        std = float(values.std(ddof=1)) if n > 1 else math.nan
        ir = mean / std if n > 1 and std > 0 else math.nan
        out[label] = {"mean": mean, "std": std, "IR": ir, "t": newey_west_t(values.to_numpy(), horizon - 1),
                      "dates": n}
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


def _frame(ticker: str, dates, closes: np.ndarray, lines: np.ndarray, schedule, target: str,
           vol_methods: tuple[str, ...] | None) -> pd.DataFrame:
    """One ticker's forecasts next to what happened: ``forecast_frame``'s, or a volatility model's
    (``voleval.volatility_frame``, with the baselines ``vol_methods`` refitted at the schedule's fold bars on its
    training window)."""
    if target == "volatility":
        return volatility_frame(ticker, dates, closes, lines, schedule.horizon, schedule.fold_bars(len(closes)),
                                vol_methods, schedule.train_window)
    return forecast_frame(ticker, dates, closes, np.expm1(lines[:, 0]), schedule.horizon, lines)


def walk_forward_forecasts(frames: dict, model: str = "lstm", store=None, on_fold=None, workers: int | str | None = None,
                           executor: str | None = None, address: str | None = None, scope: str = "per_ticker",
                           vol_methods: tuple[str, ...] | None = (), **forecast_kwargs) -> pd.DataFrame:
    """Walk-forward forecasts for each ticker's closes, without Backtrader.

    Returns a long frame (ticker, date, close, pred_return, realized_return, last_return); with
    ``target="volatility"`` ``voleval.volatility_frame``'s (pred_var, pred_vol, realized_var and the volatility
    baselines ``vol_methods`` fitted on the same folds: ``()`` none, None every one installed).
    With a ``ForecastStore`` the entries are shared with ``backtest()`` runs of the same
    data and configuration (same fingerprint). ``workers`` > 1 (or ``"auto"``) or an ``executor``
    (``"local"``/``"ray"``, as in ``backtest``) computes the tickers in parallel into the
    store first (a store is then required). ``scope="global"``: one model across the tickers
    (``globalmodel``), its folds on the union of their dates.
    """
    if scope == "global":
        return _global_forecasts(frames, model, store, on_fold, vol_methods, forecast_kwargs)
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
        parts.append(_frame(ticker, df.index, closes, lines, walk.schedule, walk.config.target, vol_methods))
        folds.extend({"ticker": ticker, **f.to_dict()} for f in walk.folds)
    out = pd.concat(parts, ignore_index=True)
    out.attrs["folds"] = pd.DataFrame(folds)
    return out


def _global_forecasts(frames: dict, model: str, store, on_fold, vol_methods, forecast_kwargs: dict) -> pd.DataFrame:
    report = None if on_fold is None else (lambda rec: on_fold("global", rec))
    walk = make_global_walk_forward(model, report, **forecast_kwargs)
    series = []
    for ticker, df in frames.items():
        closes, features, _ = feature_matrix(df, forecast_kwargs.get("features", ()))
        series.append(Series(ticker, date_numbers_of(df.index), np.asarray(closes, dtype=np.float64), features))
    preds = store.global_forecasts(walk, series, num2date) if store is not None else \
        walk.forecast_all_lines(series, num2date)
    parts = [_frame(ticker, df.index, df["close"].to_numpy(dtype=np.float64), as_lines(preds[ticker]), walk.schedule,
                    walk.config.target, vol_methods) for ticker, df in frames.items()]
    out = pd.concat(parts, ignore_index=True)
    out.attrs["folds"] = pd.DataFrame([{"ticker": "(global)", **f.to_dict()} for f in walk.folds])
    return out


def add_baseline_forecasts(forecasts: pd.DataFrame, frames: dict, model: str = "lstm", scope: str = "per_ticker",
                           **forecast_kwargs) -> pd.DataFrame:
    """``forecasts`` with columns ``pred_ridge`` and ``pred_gbm``: the baselines' simple-return forecasts for
    the same tickers and dates, each fitted on the nets' folds, windows, features and per-fold scaling
    (``baselines``; ``scope="global"``: one regressor per fold on every ticker's pooled windows)."""
    walk = make_walk_forward(model, None, **forecast_kwargs)
    inputs = {}
    for ticker, df in frames.items():
        closes, features, _ = feature_matrix(df, forecast_kwargs.get("features", ()))
        inputs[ticker] = (df.index, np.asarray(closes, dtype=np.float64), features)
    out = forecasts.copy()
    where = pd.MultiIndex.from_arrays([out["ticker"], out["date"]])
    for kind in BASELINES:
        if scope == "global":
            preds = global_baseline_forecasts(kind, walk.config, walk.schedule,
                                              [Series(t, date_numbers_of(i), c, f) for t, (i, c, f) in inputs.items()])
        else:
            preds = {t: baseline_forecasts(kind, walk.config, walk.schedule, c, f) for t, (_, c, f) in inputs.items()}
        values = pd.concat([pd.Series(np.expm1(preds[t]), index=pd.MultiIndex.from_arrays([[t] * len(i), i]))
                            for t, (i, _, _) in inputs.items()])
        out[f"pred_{kind}"] = values.reindex(where).to_numpy()
    out.attrs = dict(forecasts.attrs)
    return out


def _copy_baselines(forecasts: pd.DataFrame, source: pd.DataFrame) -> pd.DataFrame:
    out = forecasts.copy()
    where = pd.MultiIndex.from_arrays([out["ticker"], out["date"]])
    for kind in BASELINES:
        values = source.set_index(["ticker", "date"])[f"pred_{kind}"]
        out[f"pred_{kind}"] = values.reindex(where).to_numpy()
    return out


# The printed table's columns (evaluation.csv has them all).
TABLE_COLUMNS = {
    "n": "bars", "mse": "MSE", "mse_1": "MSE 1 model", "mse_zero": "MSE zero", "mse_ridge": "MSE ridge",
    "mse_gbm": "MSE gbm", "r2": "R2", "direction_accuracy": "dir acc", "direction_accuracy_1": "dir acc 1 model",
    "up_rate": "up rate", "direction_accuracy_ridge": "dir acc ridge", "direction_accuracy_gbm": "dir acc gbm",
    "direction_p_value": "p(dir>mix)", "direction_p_value_50": "p(dir>50%)", "dm_p_value": "DM p zero",
    "dm_p_value_ridge": "DM p ridge", "coverage": "coverage", "interval_width": "width", "pinball": "pinball",
}


def format_table(table: pd.DataFrame) -> str:
    """The printed form of an ``evaluate_forecasts`` table: the columns of ``TABLE_COLUMNS`` it has,
    accuracies and coverage in percent, the rest to 3 significant digits."""
    shown = table[[c for c in TABLE_COLUMNS if c in table]].rename(columns=TABLE_COLUMNS).copy().astype(object)
    for col in shown.columns:
        if col == "bars":
            shown[col] = table["n"].map(lambda v: f"{int(v)}")
        elif col.startswith(("dir acc", "up rate")) or col == "coverage":
            shown[col] = shown[col].map(lambda v: f"{100 * v:.1f}%")
        else:
            shown[col] = shown[col].map(lambda v: f"{v:.3g}")
    return shown.to_string()


@dataclass
class EvaluationResult(ScoredForecasts):
    """What ``evaluate`` found for one model family: the forecasts next to what happened (``forecasts``,
    with the baselines' columns), the per-ticker and pooled metrics (``table``: evaluation.csv), the
    per-date information coefficients (``ic``) and their summary, and notes on what could not be computed."""

    model: str
    forecasts: pd.DataFrame
    table: pd.DataFrame
    ic: pd.DataFrame
    ic_summary: pd.DataFrame
    horizon: int = 1
    notes: list[str] = field(default_factory=list)

    def verdicts(self) -> dict[str, str]:
        """``{ticker or "POOLED": verdict line}``."""
        return {ticker: verdict(row) for ticker, row in self.table.iterrows()}

    def summary(self) -> str:
        """The printed report: the table, the cross-sectional IC, a verdict per ticker and pooled, the notes."""
        tickers = self.forecasts["ticker"].nunique()
        bars = "next-bar" if self.horizon == 1 else f"{self.horizon}-bar"
        lines = [f"{self.model.upper()} walk-forward evaluation ({tickers} ticker(s), {bars} returns)",
                 format_table(self.table)]
        if len(self.ic):
            lines += [f"cross-sectional, per date across the {tickers} tickers (ic.csv; t with Newey-West errors, "
                      f"{self.horizon - 1} lag(s)):", self.ic_summary.to_string(float_format=lambda v: f"{v:.4f}")]
        lines += self.verdict_lines("verdict (one-sided tests at 5%):")
        return "\n".join(lines)

    def write(self, folder) -> None:
        """evaluation.csv, forecasts.csv and, when there are IC dates, ic.csv and ic_summary.csv into ``folder``
        (atomically)."""
        folder = self.write_tables(folder)
        if len(self.ic):
            atomic_write_bytes(folder / "ic.csv", self.ic.to_csv(index_label="date").encode())
            atomic_write_bytes(folder / "ic_summary.csv", self.ic_summary.to_csv().encode())


MIN_IC_TICKERS = 3


def evaluate(frames: dict, model: str = "lstm", store=None, on_fold=None, workers: int | str | None = None,
             executor: str | None = None, address: str | None = None, scope: str = "per_ticker",
             no_baselines: bool = False, baselines_from: EvaluationResult | None = None,
             **forecast_kwargs) -> EvaluationResult | VolatilityEvaluation:
    """Walk-forward forecasts of ``frames`` ({ticker: OHLCV frame}) scored honestly: every metric next to
    the zero-return, always-up and last-return forecasts and (unless ``no_baselines``, and when
    scikit-learn is installed) ridge and gradient boosting fitted on the same folds; Diebold–Mariano and
    call-mix direction tests; IC over dates with 3+ tickers. Options as ``walk_forward_forecasts``;
    ``baselines_from``: an earlier result on the same data and schedule (another family) whose baseline
    forecasts are reused instead of refitted. ``target="volatility"``: a ``voleval.VolatilityEvaluation``, QLIKE
    and the MSE of variance against HAR-RV, EWMA, the trailing 20-bar estimate and GARCH(1,1) (with ``arch``)
    refitted on the nets' fold bars (none with ``no_baselines``)."""
    horizon = OPTIONS["horizon"].check(forecast_kwargs.get("horizon", OPTIONS["horizon"].default))
    if OPTIONS["target"].check(forecast_kwargs.get("target", OPTIONS["target"].default)) == "volatility":
        forecasts = walk_forward_forecasts(frames, model, store, on_fold, workers, executor, address, scope,
                                           baseline_methods(no_baselines), **forecast_kwargs)
        notes = [] if no_baselines or "garch" in available_methods() else [GARCH_MISSING]
        return VolatilityEvaluation(model, forecasts, evaluate_volatility(forecasts, horizon), horizon, notes)
    forecasts = walk_forward_forecasts(frames, model, store, on_fold, workers, executor, address, scope,
                                       **forecast_kwargs)
    notes = []
    if no_baselines:
        pass
    elif baselines_from is not None and "pred_ridge" in baselines_from.forecasts:
        forecasts = _copy_baselines(forecasts, baselines_from.forecasts)
    elif baselines_available():
        forecasts = add_baseline_forecasts(forecasts, frames, model, scope, **forecast_kwargs)
    else:
        notes.append(BASELINES_MISSING)
    table = evaluate_forecasts(forecasts, forecast_kwargs.get("interval"), horizon)
    per_date = information_coefficients(forecasts, MIN_IC_TICKERS)
    dates = forecasts.dropna(subset=["pred_return", "realized_return"])["date"].nunique()
    if forecasts["ticker"].nunique() > 1 and len(per_date) < dates:
        notes.append(f"IC and rank IC use the dates with at least {MIN_IC_TICKERS} tickers (with two, a correlation "
                     f"is always +-1): {dates - len(per_date)} of {dates} date(s) left out"
                     + ("; no IC" if not len(per_date) else ""))
    return EvaluationResult(model, forecasts, table, per_date, ic_summary(per_date, horizon), horizon, notes)


def compare_families(results: list[EvaluationResult]) -> str:
    """The pooled numbers of each model family beside the baselines on the same bars (``--model both``):
    MSE, R^2, direction accuracy, the DM p against the zero forecast and the call-mix direction p."""
    rows = {}
    for result in results:
        pooled = result.table.loc["POOLED"]
        rows[result.model] = {"n": pooled["n"], "mse": pooled["mse"], "r2": pooled["r2"],
                              "direction_accuracy": pooled["direction_accuracy"],
                              "dm_p_value": pooled["dm_p_value"], "direction_p_value": pooled["direction_p_value"]}
    first = results[0]
    pooled = first.table.loc["POOLED"]
    for name in ("ridge", "gbm"):
        if f"pred_{name}" in first.forecasts:
            g = first.forecasts.dropna(subset=["pred_return", "realized_return"])
            test = evaluate_forecasts(g.assign(pred_return=g[f"pred_{name}"]), horizon=first.horizon).loc["POOLED"]
            rows[name] = {k: test[k] for k in ("n", "mse", "r2", "direction_accuracy", "dm_p_value",
                                              "direction_p_value")}
    rows["zero"] = {"n": pooled["n"], "mse": pooled["mse_zero"]}
    rows["always up"] = {"n": pooled["n"], "direction_accuracy": pooled["direction_accuracy_up"]}
    return format_table(pd.DataFrame(rows).T)
