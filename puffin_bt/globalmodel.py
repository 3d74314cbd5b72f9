"""One model across the portfolio ("global"): at each fold date one network is trained on the pooled
windows of every ticker, each ticker's inputs and targets scaled with its own per-fold statistics,
and it forecasts every ticker.

Tickers rarely share a calendar, so global folds are scheduled by date: on the union of every
ticker's bar dates, the first fold at its ``min_train - 1``-th date and then every ``retrain_every``
dates (``FoldSchedule`` on calendar positions). A fold at date d sees each ticker's bars up to d
only. A ticker joins at the first fold date at which it has ``min_train`` bars of its own (before
that it is not trained on and gets no forecast); between two folds, each of a ticker's bars is
forecast by the fold before it, whether or not the ticker had a bar on the fold date. Engine-free:
``adapters.indicators.ForecastGroup`` drives it from Backtrader, ``forecast_all`` on arrays.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import models
from ._lazy import LazyDevice, LazyModule, lazy_functions
from .errors import ConfigError, DataError
from .options import FitConfig, IntervalConfig, ModelConfig
from .schedule import FoldSchedule
from .walkforward import FoldRecord, option_sets
from .windows import returns_of, window_features, window_inputs

if TYPE_CHECKING:
    import torch

# Imported on first use (``_lazy``): a global model whose forecasts all come from the store trains nothing.
fitting = LazyModule("puffin_bt.fitting")
fold_data, new_fold_net, pool, predict_windows, train_prepared = lazy_functions(
    "puffin_bt.fitting", "fold_data", "new_fold_net", "pool", "predict_windows", "train_prepared")
torch_threads, = lazy_functions("puffin_bt.training", "torch_threads")

__all__ = ["GlobalWalkForward", "Series", "check_panel", "make_global_walk_forward", "union_calendar"]


@dataclass
class Series:
    """One ticker for a global model: its bar dates (Backtrader date numbers, increasing), closes and
    feature rows (or None)."""

    name: str
    dates: np.ndarray
    closes: np.ndarray
    features: np.ndarray | None = None


def union_calendar(series: list[Series]) -> np.ndarray:
    """Every date on which at least one ticker has a bar, in order."""
    return np.unique(np.concatenate([s.dates for s in series])) if series else np.empty(0)


class GlobalWalkForward(LazyDevice):
    """The fold runner of a global model: ``train_fold`` at each fold date on every ticker's history up to
    it, ``forecast`` one ticker's windows with the current fold; ``forecast_all`` runs a whole panel.

    Takes ``WalkForward``'s option sets but the interval (``make_global_walk_forward`` builds them from flat options).
    """

    def __init__(self, config: ModelConfig, schedule: FoldSchedule, fit: FitConfig | None = None,
                 on_fold: Callable[[FoldRecord], None] | None = None) -> None:
        self.config, self.schedule = config, schedule
        self.fit = FitConfig() if fit is None else fit
        self.uncertainty = IntervalConfig()  # no interval for a global model (yet)
        self._name_device(self.fit.device)  # the CPU resolved when first used: no torch for a run from the store
        models.require_memory(config, self._device or "cpu", schedule.train_window)  # before any fold allocates it
        self.on_fold = on_fold
        self.net: torch.nn.Module | None = None
        self.scalers: dict = {}  # ticker -> its scaler in the current fold (tickers in the fold only)
        self.folds: list[FoldRecord] = []
        self.training_seconds = 0.0

    def restore(self, folds: list[FoldRecord]) -> None:
        """Adopt stored fold records (the forecast store's), reported to ``on_fold`` as if trained now."""
        self.folds = list(folds)
        if self.on_fold is not None:
            for record in self.folds:
                self.on_fold(record)

    def _fold_data(self, position: int, histories: Mapping[str, tuple]) -> tuple[int, dict]:
        """The index of the fold at calendar ``position`` (folds come in schedule order) and each ticker's fold
        data (``fitting.fold_data``: windows, targets, per-fold scaler); tickers with fewer than ``min_train``
        bars sit out, and a fold that no ticker reaches is a DataError."""
        s = self.schedule
        k = s.fold_index(position)
        if not s.is_fold_bar(position) or k != len(self.folds):
            raise ConfigError(f"global fold at calendar position {position} is out of order (next expected fold "
                              f"{len(self.folds)}); folds must be trained in schedule order")
        datas = {name: fold_data(self.config, closes, s.sample_bars(len(closes) - 1), self.device, features)
                 for name, (closes, features) in histories.items() if len(closes) >= s.min_train}
        if not datas:
            raise DataError(f"no ticker has min_train={s.min_train} bars at the global fold at calendar position "
                            f"{position}; lower min_train or load more history")
        return k, datas

    def train_fold(self, position: int, histories: Mapping[str, tuple], date=None) -> FoldRecord:
        """Train the fold at calendar ``position`` on each ticker's history up to its date:
        ``{ticker: (closes, features or None)}``; tickers with fewer than ``min_train`` bars sit out."""
        cfg = self.config
        started = time.perf_counter()
        with torch_threads(self.fit.threads):
            k, datas = self._fold_data(position, histories)
            pooled = pool(list(datas.values()))
            warm = self.fit.refit_epochs is not None and self.net is not None
            if not warm:
                self.net = new_fold_net(cfg, k)
            epochs = self.fit.refit_epochs if warm else self.fit.epochs
            if not warm or models.family(cfg.cell).warm_on_engine:  # as WalkForward: a job (the engine, M = 1)
                hist = fitting.train_networks_together([self.net], cfg, [pooled], epochs, self.device,
                                                       [cfg.seed + k])[0]
            else:
                hist = train_prepared(self.net, cfg, pooled, epochs, self.device, cfg.seed + k)
        self.scalers = {name: data.scaler for name, data in datas.items()}
        seconds = time.perf_counter() - started
        self.training_seconds += seconds
        val, best = hist["val_loss"], hist.get("best_epoch")
        record = FoldRecord(
            index=k, bar=position, train_start=0, n_train=int(pooled.x_train.shape[0]),
            n_val=0 if pooled.x_val is None else int(pooled.x_val.shape[0]), epochs_run=len(hist["train_loss"]),
            warm_start=warm, train_loss=float(hist["train_loss"][-1]) if hist["train_loss"] else math.nan,
            val_loss=float(val[best] if best is not None else (val[-1] if val else math.nan)), best_epoch=best,
            seconds=seconds, date=date,
        )
        self.folds.append(record)
        if self.on_fold is not None:
            self.on_fold(record)
        return record

    def forecast(self, name: str, closes: np.ndarray, bars: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """Predicted log returns for ``bars`` of one ticker (its closes and feature rows up to the last of
        them) from the current fold; NaN when the ticker sat the fold out."""
        bars = np.asarray(bars, dtype=np.int64)
        scaler = self.scalers.get(name)
        if scaler is None or not len(bars):
            return np.full(len(bars), np.nan)
        lookback = self.config.lookback
        windows = window_inputs(returns_of(closes[: int(bars.max()) + 1]), bars, lookback)
        feature_windows = None if features is None else window_features(features, bars, lookback)
        if feature_windows is not None and not np.isfinite(feature_windows).all():
            raise DataError(f"{name}: a feature has no value in an input window to forecast (NaN); fill or drop "
                            "those bars")
        with torch_threads(self.fit.threads):
            return predict_windows(self.net, scaler, windows, self.device, feature_windows)

    def forecast_all(self, series: list[Series], dates: Callable[[float], object] | None = None) -> dict:
        """Walk forward over a whole panel: ``{ticker: predicted log returns, one per bar}`` (NaN before a
        ticker's first fold). Each fold sees every ticker's bars up to its date only."""
        check_panel(series)
        calendar = union_calendar(series)
        positions = self.schedule.fold_bars(len(calendar))
        out = {s.name: np.full(len(s.closes), np.nan) for s in series}
        for k, position in enumerate(positions):
            cutoff = calendar[position]
            until = calendar[positions[k + 1]] if k + 1 < len(positions) else np.inf
            histories = {}
            for s in series:
                n = int(np.searchsorted(s.dates, cutoff, side="right"))
                histories[s.name] = (s.closes[:n], None if s.features is None else s.features[:n])
            self.train_fold(position, histories, None if dates is None else dates(cutoff))
            for s in series:
                lo = int(np.searchsorted(s.dates, cutoff, side="left"))
                hi = int(np.searchsorted(s.dates, until, side="left"))
                bars = np.arange(max(lo, self.config.lookback), hi)
                if len(bars):
                    out[s.name][bars] = self.forecast(s.name, s.closes[:hi], bars,
                                                      None if s.features is None else s.features[:hi])
        return out


def check_panel(series: list[Series]) -> None:
    """A global model needs several tickers whose histories overlap."""
    if len(series) < 2:
        raise ConfigError("scope='global' trains one model across several tickers; with one ticker it is the "
                          "per-ticker model: use scope='per_ticker'")
    last_start = max(float(s.dates[0]) for s in series if len(s.dates))
    for s in series:
        if not len(s.dates) or float(s.dates[-1]) < last_start:
            raise DataError(f"ticker {s.name!r} ends before another ticker starts: a global model needs tickers "
                            "whose dates overlap; backtest them separately (scope='per_ticker')")


def make_global_walk_forward(cell: str = "lstm", on_fold=None, **options) -> GlobalWalkForward:
    """A ``GlobalWalkForward`` from flat walk-forward options, as ``make_walk_forward``."""
    config, schedule, fit, uncertainty = option_sets(cell, **options)
    if config.ensemble > 1 or uncertainty.interval is not None:
        raise ConfigError("ensemble and interval are not available with scope='global' yet; use them with "
                          "scope='per_ticker'")
    return GlobalWalkForward(config, schedule, fit, on_fold)
