"""Volatility forecasts scored (``target="volatility"``): QLIKE and the MSE of variance per ticker and pooled, next
to the HAR-RV, EWMA, trailing 20-bar and GARCH(1,1) baselines (``volbaselines``) refitted on the nets' own fold
bars, with Diebold–Mariano tests of the QLIKE differences. ``evaluation.evaluate`` hands a volatility model here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .files import atomic_write_bytes
from .skill import diebold_mariano
from .volatility import mse_variance, qlike, realised_variance_target
from .volbaselines import METHODS, available_methods, baseline_variances

__all__ = ["VolatilityEvaluation", "compare_volatility", "evaluate_volatility", "volatility_frame",
           "volatility_verdict"]

SIGNIFICANT = 0.05  # the level at which a verdict says "yes"


def volatility_frame(ticker: str, dates, closes: np.ndarray, lines: np.ndarray, horizon: int,
                     refit_bars: Sequence[int], methods: Sequence[str] | None = None,
                     train_window: int | None = None) -> pd.DataFrame:
    """A volatility model's forecasts next to what happened, one row per bar with a forecast: ``pred_var`` (the
    nets' per-bar variance, ``intervals.LINES``' first column), ``pred_vol`` (its square root), ``realized_var``
    (``volatility.realised_variance_target``: NaN for the last ``horizon`` bars) and ``var_<method>`` for each
    baseline of ``methods`` (None: every one installed; ``()``: none), refitted at ``refit_bars`` on the nets'
    ``train_window`` (None: expanding)."""
    closes = np.asarray(closes, dtype=np.float64)
    n = len(closes)
    realised = np.full(n, np.nan)
    scored = np.arange(max(0, n - horizon))
    realised[scored] = realised_variance_target(closes, scored, horizon)
    columns = {"ticker": ticker, "date": dates, "close": closes, "pred_var": lines[:, 0],
               "pred_vol": np.sqrt(lines[:, 0]), "realized_var": realised}
    if np.isfinite(lines[:, 1]).any():
        columns["pred_vol_std"] = lines[:, 1]  # an ensemble's spread of volatility forecasts
    if methods is None or len(methods):
        for method, values in baseline_variances(closes, horizon, refit_bars, methods,
                                                 train_window=train_window).items():
            columns[f"var_{method}"] = values
    return pd.DataFrame(columns).dropna(subset=["pred_var"])


def baseline_names(forecasts: pd.DataFrame) -> list[str]:
    """The baselines a frame of ``volatility_frame`` holds, in ``volbaselines.METHODS`` order."""
    return [m for m in METHODS if f"var_{m}" in forecasts]


def _dm_p_value(g: pd.DataFrame, column: str, horizon: int) -> float:
    """One-sided Diebold–Mariano p that the nets' QLIKE is below ``column``'s on the rows of ``g``; several
    tickers: the differences averaged across tickers per date first (their common shocks are not independent
    evidence), as ``evaluation.dm_p_value``."""
    d = pd.Series(qlike(g["pred_var"], g["realized_var"]) - qlike(g[column], g["realized_var"]), index=g.index)
    d = d.groupby(g["date"].to_numpy()).mean().sort_index()
    return diebold_mariano(d.to_numpy(), np.zeros(len(d)), horizon)[1]


def evaluate_volatility(forecasts: pd.DataFrame, horizon: int = 1) -> pd.DataFrame:
    """Per-ticker and pooled scores of a frame of ``volatility_frame`` rows, all on the same bars (those where
    the nets, every baseline and the realised variance have a value): ``qlike`` and ``mse_var`` (the nets'),
    ``qlike_<b>`` / ``mse_var_<b>`` for each baseline, ``dm_p_value_<b>`` (Diebold–Mariano, HLN-corrected, HAC
    for ``horizon > 1``: the nets' QLIKE below the baseline's), ``best_baseline`` (lowest QLIKE) and
    ``coverage``, the share of the bars with a forecast and a realised variance that are scored."""
    methods = baseline_names(forecasts)
    needed = ["pred_var", "realized_var", *(f"var_{m}" for m in methods)]
    rows = {}
    for ticker, g in [*forecasts.groupby("ticker", sort=False), ("POOLED", forecasts)]:
        known = g.dropna(subset=["pred_var", "realized_var"])
        g = known.dropna(subset=needed)
        row = {"n": len(g), "coverage": len(g) / len(known) if len(known) else math.nan,
               "qlike": float(np.mean(qlike(g["pred_var"], g["realized_var"]))) if len(g) else math.nan,
               "mse_var": float(np.mean(mse_variance(g["pred_var"], g["realized_var"]))) if len(g) else math.nan}
        for method in methods:
            column = f"var_{method}"
            row[f"qlike_{method}"] = float(np.mean(qlike(g[column], g["realized_var"]))) if len(g) else math.nan
            row[f"mse_var_{method}"] = float(np.mean(mse_variance(g[column], g["realized_var"]))) if len(g) else \
                math.nan
            row[f"dm_p_value_{method}"] = _dm_p_value(g, column, horizon) if len(g) else math.nan
        scores = {m: row[f"qlike_{m}"] for m in methods if math.isfinite(row[f"qlike_{m}"])}
        row["best_baseline"] = min(scores, key=scores.get) if scores else None
        rows[ticker] = row
    return pd.DataFrame(rows).T.infer_objects()


def volatility_verdict(row) -> str:
    """One line in words for a row of ``evaluate_volatility``: does the nets' QLIKE beat each baseline's
    (one-sided Diebold–Mariano at 5%)?"""
    def p_text(p) -> str:
        return "n/a" if p is None or not math.isfinite(p) else f"{p:.2g}"

    parts = [f"QLIKE {row['qlike']:.4f}"]
    for method in METHODS:
        p = row.get(f"dm_p_value_{method}")
        if p is not None:
            better = "yes" if math.isfinite(p) and p < SIGNIFICANT else "no"
            parts.append(f"beats {method} ({row[f'qlike_{method}']:.4f}): {better} (DM p = {p_text(p)})")
    return "; ".join(parts)


TABLE_COLUMNS = {"n": "bars", "coverage": "coverage", "qlike": "QLIKE", "qlike_har": "QLIKE har",
                 "qlike_ewma": "QLIKE ewma", "qlike_trailing": "QLIKE trail20", "qlike_garch": "QLIKE garch",
                 "dm_p_value_har": "DM p har", "mse_var": "MSE var", "mse_var_har": "MSE var har"}


def format_volatility_table(table: pd.DataFrame) -> str:
    shown = table[[c for c in TABLE_COLUMNS if c in table]].rename(columns=TABLE_COLUMNS).copy().astype(object)
    for col in shown.columns:
        if col == "bars":
            shown[col] = table["n"].map(lambda v: f"{int(v)}")
        elif col == "coverage":
            shown[col] = shown[col].map(lambda v: f"{100 * v:.1f}%")
        else:
            shown[col] = shown[col].map(lambda v: f"{v:.4g}")
    return shown.to_string()


class ScoredForecasts:
    """What an evaluation's result shares, return or volatility target: its folds, the verdict lines under its
    table and its two CSV files. The result classes (dataclasses) give ``forecasts``, ``table``, ``notes`` and
    ``verdicts()``."""

    @property
    def folds(self) -> pd.DataFrame:
        return self.forecasts.attrs.get("folds", pd.DataFrame())

    def verdict_lines(self, heading: str) -> list[str]:
        """``heading``, one verdict line per ticker and pooled, then the notes."""
        width = max(len(str(t)) for t in self.table.index)
        return [heading, *(f"  {str(ticker):<{width}}  {line}" for ticker, line in self.verdicts().items()),
                *(f"note: {note}" for note in self.notes)]

    def write_tables(self, folder) -> Path:
        """evaluation.csv and forecasts.csv into ``folder`` (atomically); returns the folder."""
        folder = Path(folder)
        atomic_write_bytes(folder / "evaluation.csv", self.table.to_csv().encode())
        atomic_write_bytes(folder / "forecasts.csv", self.forecasts.to_csv(index=False).encode())
        return folder


@dataclass
class VolatilityEvaluation(ScoredForecasts):
    """What ``evaluate(..., target="volatility")`` found: the forecasts next to the realised variance and the
    baselines' (``forecasts``), the per-ticker and pooled scores (``table``: evaluation.csv) and notes."""

    model: str
    forecasts: pd.DataFrame
    table: pd.DataFrame
    horizon: int = 1
    notes: list[str] = field(default_factory=list)

    def verdicts(self) -> dict[str, str]:
        return {ticker: volatility_verdict(row) for ticker, row in self.table.iterrows()}

    def summary(self) -> str:
        tickers = self.forecasts["ticker"].nunique()
        return "\n".join([
            f"{self.model.upper()} walk-forward volatility evaluation ({tickers} ticker(s), realised variance over "
            f"the next {self.horizon} bar(s); QLIKE: lower is better)", format_volatility_table(self.table),
            *self.verdict_lines("verdict (one-sided Diebold-Mariano on QLIKE at 5%):")])

    def write(self, folder) -> None:
        """evaluation.csv and forecasts.csv into ``folder`` (atomically)."""
        self.write_tables(folder)


def baseline_methods(no_baselines: bool) -> tuple[str, ...]:
    """The volatility baselines an evaluation fits: none with ``no_baselines``, else every one installed."""
    return () if no_baselines else available_methods()


def compare_volatility(results: list[VolatilityEvaluation]) -> str:
    """The pooled QLIKE and MSE of variance of each model family beside the baselines' (``--model both``); each
    family on its own scored bars (equal when both reach every bar)."""
    rows = {}
    for result in results:
        pooled = result.table.loc["POOLED"]
        rows[result.model] = {"n": pooled["n"], "qlike": pooled["qlike"], "mse_var": pooled["mse_var"],
                              "dm_p_value_har": pooled.get("dm_p_value_har", math.nan)}
    pooled = results[0].table.loc["POOLED"]
    for method in baseline_names(results[0].forecasts):
        rows[method] = {"n": pooled["n"], "qlike": pooled[f"qlike_{method}"], "mse_var": pooled[f"mse_var_{method}"]}
    return format_volatility_table(pd.DataFrame(rows).T)
