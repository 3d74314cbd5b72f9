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

import copy
import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import intervals, models
from ._lazy import LazyDevice, LazyModule, lazy_functions
from ._sizing import worker_bytes
from .errors import ConfigError, DataError
from .intervals import LINES, VOL_WINDOW, AdaptiveLevel, lines_of
from .options import FitConfig, IntervalConfig, ModelConfig
from .processes import available_memory
from .schedule import FoldSchedule
from .walkforward import FoldRecord, check_interval, option_sets
from .windows import complete_windows, returns_of, split_train_val, window_features, window_inputs

MEMORY_SHARE = 0.25  # the folds trained ahead (every fold's networks, until forecast) take at most this much

if TYPE_CHECKING:
    import torch

# Imported on first use (``_lazy``): a global model whose forecasts all come from the store trains nothing.
fitting = LazyModule("puffin_bt.fitting")
foldpool = LazyModule("puffin_bt.foldpool")
fold_data, pool, predict_windows, train_prepared = lazy_functions(
    "puffin_bt.fitting", "fold_data", "pool", "predict_windows", "train_prepared")
torch_threads, = lazy_functions("puffin_bt.training", "torch_threads")
resolve_fold_workers, = lazy_functions("puffin_bt.foldpool", "resolve_fold_workers")

__all__ = ["GlobalFold", "GlobalWalkForward", "Series", "check_panel", "make_global_walk_forward", "union_calendar"]


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


@dataclass
class GlobalFold:
    """One trained global fold: its members (networks, or their flat weights on the way back from a worker), each
    ticker's scaler and conformal scores, the first member's loss history and what its record needs."""

    k: int
    nets: list
    scalers: dict
    scores: dict
    history: dict
    warm: bool
    n_train: int
    n_val: int
    seconds: float
    record: FoldRecord | None = None  # made (and reported to ``on_fold``) as it trained ahead


class GlobalWalkForward(LazyDevice):
    """The fold runner of a global model: ``train_fold`` at each fold date on every ticker's history up to
    it, ``forecast_lines`` one ticker's bars with the current fold; ``forecast_all`` runs a whole panel.

    Warm refits run in ``fit.global_chains`` chains: fold k continues from fold k - N's weights (N = 1: from
    the fold before). The chains are independent, so ``forecast_all`` trains them side by side in the fold
    pool's processes (the first in this one); a fold's result does not depend on where it trained.
    Ensembles (``config.ensemble`` seeded members) and conformal intervals (``uncertainty``) as ``WalkForward``'s,
    the interval calibrated per ticker: each ticker's own validation residuals in the fold (its scale).
    """

    def __init__(self, config: ModelConfig, schedule: FoldSchedule, fit: FitConfig | None = None,
                 on_fold: Callable[[FoldRecord], None] | None = None, uncertainty: IntervalConfig | None = None) -> None:
        self.config, self.schedule = config, schedule
        self.fit = FitConfig() if fit is None else fit
        self.uncertainty = IntervalConfig() if uncertainty is None else uncertainty
        self.interval = self.uncertainty.interval  # the coverage, None when off
        check_interval(config, self.interval)
        self._name_device(self.fit.device)  # the CPU resolved when first used: no torch for a run from the store
        models.require_memory(config, self._device or "cpu", schedule.train_window)  # before any fold allocates it
        self.on_fold = on_fold
        self.net: torch.nn.Module | None = None  # the current fold's model (an ensemble's first member)
        self.nets: list = []  # the current fold's members
        self.scalers: dict = {}  # ticker -> its scaler in the current fold (tickers in the fold only)
        self.scores: dict = {}  # ticker -> its sorted conformal scores in the current fold (interval on)
        self._aci: dict = {}  # ticker -> its adaptive conformal level (interval_method="aci")
        self._chains: dict = {}  # chain -> the members of its latest fold (the next warm refit continues them)
        self._ready: dict = {}  # fold index -> GlobalFold trained ahead (``forecast_all``), adopted in order
        self.folds: list[FoldRecord] = []
        self.training_seconds = 0.0
        self.pooled_chains = 0  # chains trained in fold-pool workers (diagnostics, tests)
        self.chain_cpu: dict = {}  # chain -> (process id, CPU seconds it took there), from ``_train_ahead``

    def restore(self, folds: list[FoldRecord]) -> None:
        """Adopt stored fold records (the forecast store's), reported to ``on_fold`` as if trained now."""
        self.folds = list(folds)
        if self.on_fold is not None:
            for record in self.folds:
                self.on_fold(record)

    @property
    def tail_bars(self) -> int:
        """Closes one bar's forecast lines need: its window, and the outcomes adaptive intervals learn from or
        the trailing volatility volatility-normalised ones scale by."""
        volatility = VOL_WINDOW if self.uncertainty.interval_method == "vol" else 0
        return max(self.config.lookback, self.schedule.horizon, volatility) + 1

    def _fold_datas(self, position: int, histories: Mapping[str, tuple]) -> dict:
        """Each ticker's fold data (``fitting.fold_data``: windows, targets, per-fold scaler); tickers with fewer
        than ``min_train`` bars sit out, and a fold that no ticker reaches is a DataError."""
        s = self.schedule
        datas = {name: fold_data(self.config, closes, s.sample_bars(len(closes) - 1), self.device, features)
                 for name, (closes, features) in histories.items() if len(closes) >= s.min_train}
        if not datas:
            raise DataError(f"no ticker has min_train={s.min_train} bars at the global fold at calendar position "
                            f"{position}; lower min_train or load more history")
        return datas

    def _fold_index(self, position: int) -> int:
        s = self.schedule
        k = s.fold_index(position)
        if not s.is_fold_bar(position) or k != len(self.folds):
            raise ConfigError(f"global fold at calendar position {position} is out of order (next expected fold "
                              f"{len(self.folds)}); folds must be trained in schedule order")
        return k

    def _fold_data(self, position: int, histories: Mapping[str, tuple]) -> tuple[int, dict]:
        """The index of the fold at calendar ``position`` (folds come in schedule order) and each ticker's fold
        data (``_fold_datas``)."""
        k = self._fold_index(position)
        return k, self._fold_datas(position, histories)

    def _train(self, k: int, position: int, histories: Mapping[str, tuple]) -> GlobalFold:
        """Train fold ``k`` (at calendar ``position``) on the pooled windows of ``histories``: fresh members, or
        its chain's latest ones continued (a warm refit)."""
        cfg = self.config
        started = time.perf_counter()
        datas = self._fold_datas(position, histories)
        pooled = pool(list(datas.values()))
        chain = k % self.fit.global_chains
        warm = self.fit.refit_epochs is not None and chain in self._chains
        nets = self._chains[chain] if warm else fitting.new_fold_nets(cfg, k)
        epochs = self.fit.refit_epochs if warm else self.fit.epochs
        if not warm or len(nets) > 1 or models.family(cfg.cell).warm_on_engine:  # as WalkForward._on_engine
            hist = fitting.train_networks_together(nets, cfg, [pooled] * len(nets), epochs, self.device,
                                                   fitting.fold_seeds(cfg, k))[0]
        else:  # a warm refit of one LSTM: nn.LSTM's fused kernel
            hist = train_prepared(nets[0], cfg, pooled, epochs, self.device, cfg.seed + k)
        self._chains[chain] = nets
        scores = {}
        if self.interval is not None:
            scores = {name: self._scores(nets, data, histories[name], position) for name, data in datas.items()}
        return GlobalFold(k, nets, {name: data.scaler for name, data in datas.items()}, scores, hist, warm,
                          int(pooled.x_train.shape[0]), 0 if pooled.x_val is None else int(pooled.x_val.shape[0]),
                          time.perf_counter() - started)

    def _scores(self, nets: list, data, history: tuple, position: int) -> np.ndarray:
        """One ticker's conformal scores in a fold: its own validation residuals (its scale, not the pool's)."""
        closes, features = history
        volatility = None
        if self.uncertainty.interval_method == "vol":  # each residual over the volatility when its forecast was made
            samples = self.schedule.sample_bars(len(closes) - 1)
            if features is not None:
                samples = samples[complete_windows(features, samples, self.config.lookback)]
            volatility = intervals.trailing_volatility(closes, split_train_val(samples, self.config.validation_split)[1])
        residuals = fitting.validation_residuals(nets, data, self.device)
        return intervals.fold_scores(residuals, self.interval, f"the global fold at calendar position {position}",
                                     volatility)

    def train_fold(self, position: int, histories: Mapping[str, tuple], date=None) -> FoldRecord:
        """Train the fold at calendar ``position`` on each ticker's history up to its date:
        ``{ticker: (closes, features or None)}``; tickers with fewer than ``min_train`` bars sit out."""
        k = self._fold_index(position)
        fold = self._ready.pop(k, None)
        if fold is None:
            with torch_threads(self.fit.threads):
                fold = self._train(k, position, histories)
            self.training_seconds += fold.seconds
        self._chains[k % self.fit.global_chains] = fold.nets
        self.nets, self.net, self.scalers, self.scores = fold.nets, fold.nets[0], fold.scalers, fold.scores
        record = fold.record or self._record(fold, position, date)
        self.folds.append(record)
        if self.on_fold is not None and fold.record is None:
            self.on_fold(record)
        return record

    def _record(self, fold: GlobalFold, position: int, date) -> FoldRecord:
        hist = fold.history
        val, best = hist["val_loss"], hist.get("best_epoch")
        # the record's half-width: the median of the tickers' (each has its own, in its own scale)
        widths = [intervals.conformal_half_width(scores, self.interval) for scores in fold.scores.values()]
        return FoldRecord(
            index=fold.k, bar=position, train_start=0, n_train=fold.n_train, n_val=fold.n_val,
            epochs_run=len(hist["train_loss"]), warm_start=fold.warm,
            train_loss=float(hist["train_loss"][-1]) if hist["train_loss"] else math.nan,
            val_loss=float(val[best] if best is not None else (val[-1] if val else math.nan)), best_epoch=best,
            seconds=fold.seconds, date=date, half_width=float(np.median(widths)) if widths else None,
        )

    def forecast(self, name: str, closes: np.ndarray, bars: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """Predicted log returns for ``bars`` of one ticker (its closes and feature rows up to the last of
        them) from the current fold; NaN when the ticker sat the fold out."""
        return self.forecast_lines(name, closes, bars, features)[:, 0]

    def forecast_lines(self, name: str, closes: np.ndarray, bars: np.ndarray, features: np.ndarray | None = None,
                       offset: int = 0) -> np.ndarray:
        """``forecast`` with the uncertainty lines (bars, 4: ``intervals.LINES``): the members' mean and spread,
        the interval from the ticker's own scores. ``closes[i]`` (and ``features[i]``) is bar ``offset + i``, so a
        tail will do; an adaptive interval learns each outcome once, so forecast a ticker's bars in order."""
        bars = np.asarray(bars, dtype=np.int64)
        scaler = self.scalers.get(name)
        if scaler is None or not len(bars):
            return np.full((len(bars), len(LINES)), np.nan)
        lookback, local = self.config.lookback, bars - offset
        windows = window_inputs(returns_of(closes[: int(local.max()) + 1]), local, lookback)
        feature_windows = None if features is None else window_features(features, local, lookback)
        if feature_windows is not None and not np.isfinite(feature_windows).all():
            raise DataError(f"{name}: a feature has no value in an input window to forecast (NaN); fill or drop "
                            "those bars")
        with torch_threads(self.fit.threads):
            members = np.stack([predict_windows(net, scaler, windows, self.device, feature_windows)
                                for net in self.nets])
        combine = intervals.combine_variances if self.config.target == "volatility" else intervals.combine
        log_return, spread = combine(members)
        widths = None
        if self.interval is not None:
            scores, split = self.scores[name], intervals.conformal_half_width(self.scores[name], self.interval)
            aci = self._aci.setdefault(name, AdaptiveLevel(1.0 - self.interval, self.uncertainty.aci_gamma))
            widths = intervals.half_widths(self.uncertainty.interval_method, scores, split, aci, self.schedule.horizon,
                                           bars, log_return, closes, offset)
        return lines_of(log_return, spread, widths)

    def forecast_all(self, series: list[Series], dates: Callable[[float], object] | None = None) -> dict:
        """Walk forward over a whole panel: ``{ticker: predicted log returns, one per bar}`` (NaN before a
        ticker's first fold). Each fold sees every ticker's bars up to its date only."""
        return {name: lines[:, 0] for name, lines in self.forecast_all_lines(series, dates).items()}

    def forecast_all_lines(self, series: list[Series], dates: Callable[[float], object] | None = None) -> dict:
        """``forecast_all`` with the uncertainty lines: ``{ticker: (bars, 4) intervals.LINES}``."""
        check_panel(series)
        calendar = union_calendar(series)
        positions = self.schedule.fold_bars(len(calendar))
        out = {s.name: np.full((len(s.closes), len(LINES)), np.nan) for s in series}

        def histories(k: int) -> dict:  # every ticker's bars up to fold k's date, nothing later
            n = {s.name: int(np.searchsorted(s.dates, calendar[positions[k]], side="right")) for s in series}
            return {s.name: (s.closes[:n[s.name]], None if s.features is None else s.features[:n[s.name]])
                    for s in series}

        def date_of(k: int):
            return None if dates is None else dates(calendar[positions[k]])

        self._train_ahead(positions, histories, date_of)
        for k, position in enumerate(positions):
            cutoff = calendar[position]
            until = calendar[positions[k + 1]] if k + 1 < len(positions) else np.inf
            self.train_fold(position, histories(k), date_of(k))
            for s in series:
                lo = int(np.searchsorted(s.dates, cutoff, side="left"))
                hi = int(np.searchsorted(s.dates, until, side="left"))
                bars = np.arange(max(lo, self.config.lookback), hi)
                if len(bars):
                    out[s.name][bars] = self.forecast_lines(s.name, s.closes[:hi], bars,
                                                            None if s.features is None else s.features[:hi])
        return out

    def _train_ahead(self, positions: list[int], histories: Callable[[int], dict], date_of: Callable[[int], object]
                     ) -> None:
        """Train every fold of a fresh walk-forward now, the chains side by side: the first in this process, the
        others in the fold pool (``fold_workers``); ``train_fold`` then adopts them in order. The first chain's
        folds are reported to ``on_fold`` as they train (a progress bar moves), the others' as they come back.
        Stays sequential (``train_fold`` trains each fold) where there is one chain or one worker, or where every
        fold's networks would not fit in ``MEMORY_SHARE`` of the free memory: the same forecasts."""
        chains = min(self.fit.global_chains, len(positions))
        if chains < 2 or self.folds:
            return
        workers = resolve_fold_workers(self.fit.fold_workers, self.device, self.fit.threads, worker_bytes(self.config))
        held = len(positions) * self.config.ensemble * models.weight_bytes(self.config)  # every fold's members, kept
        free = available_memory()
        if workers < 2 or (free is not None and held > free * MEMORY_SHARE):
            return
        # each chain's folds with the histories up to their own dates (nothing later reaches a worker)
        work = {c: [(k, positions[k], histories(k)) for k in range(c, len(positions), chains)] for c in range(chains)}
        started = time.perf_counter()
        pool = foldpool.acquire(workers, self.fit.threads)
        try:
            futures = {c: pool.submit(_train_chain, self.config, self.schedule, self.fit, self.uncertainty, work[c])
                       for c in range(1, chains)}
            self._ready.update((fold.k, fold) for fold in self._train_here(0, work[0], date_of))
            for c, future in futures.items():
                try:
                    pid, cpu, flat_folds = future.result()
                except BrokenProcessPool:  # a worker died (killed, out of memory): train its chain here instead
                    folds = self._train_here(c, work[c], date_of)
                else:
                    self.chain_cpu[c] = pid, cpu
                    self.pooled_chains += 1
                    folds = [dataclasses.replace(fold, nets=[foldpool.net_from_flat(self.config, fold.k, member, flat)
                                                             for member, flat in enumerate(fold.nets)])
                             for fold in flat_folds]
                    for fold in folds:
                        self._report(fold, positions[fold.k], date_of(fold.k))
                self._ready.update((fold.k, fold) for fold in folds)
        except BaseException:  # an error or Ctrl-C may leave a chain running: the next run starts a fresh pool
            self._ready.clear()
            foldpool.discard(pool)
            raise
        foldpool.release(pool)
        self._chains.clear()  # train_fold follows each chain again as it adopts the folds
        self.training_seconds += time.perf_counter() - started

    def _train_here(self, chain: int, folds: list[tuple], date_of: Callable[[int], object]) -> list[GlobalFold]:
        """One chain's folds ``(k, calendar position, histories)`` trained ahead in this process, each fold's
        members copied: the chain trains its networks on in place, and each fold forecasts with its own."""
        out, cpu = [], time.process_time()
        with torch_threads(self.fit.threads):
            for k, position, histories in folds:
                fold = self._train(k, position, histories)
                out.append(dataclasses.replace(fold, nets=[copy.deepcopy(net) for net in fold.nets]))
                self._report(out[-1], position, date_of(k))
        self.chain_cpu[chain] = os.getpid(), time.process_time() - cpu
        return out

    def _report(self, fold: GlobalFold, position: int, date) -> None:
        """A fold trained ahead: its record, made and reported to ``on_fold`` now (``train_fold`` keeps it)."""
        fold.record = self._record(fold, position, date)
        if self.on_fold is not None:
            self.on_fold(fold.record)


def _train_chain(config: ModelConfig, schedule: FoldSchedule, fit: FitConfig, uncertainty: IntervalConfig,
                 folds: list[tuple]) -> tuple[int, float, list[GlobalFold]]:
    """A fold-pool worker: one chain's folds ``(k, calendar position, histories)`` in order, each continuing the
    one before. Returns this process's id, the CPU seconds the chain took and its folds, the members as flat
    weights."""
    cpu = time.process_time()
    walk = GlobalWalkForward(config, schedule, fit, None, uncertainty)
    out = []
    with torch_threads(fit.threads or 1):
        for k, position, histories in folds:
            fold = walk._train(k, position, histories)
            out.append(dataclasses.replace(fold, nets=[foldpool.flat_weights(net) for net in fold.nets]))
    return os.getpid(), time.process_time() - cpu, out


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
    """A ``GlobalWalkForward`` from flat walk-forward options, as ``make_walk_forward``. Its ensembles are seeded
    members; the cheaper ensemble methods build on the per-ticker walk-forward's folds."""
    method = options.get("ensemble_method", "seeds")
    if method != "seeds" and options.get("ensemble", 1) > 1:
        raise ConfigError(f"ensemble_method={method!r} is not available with scope='global'; use "
                          "ensemble_method='seeds' (seeded members), or scope='per_ticker'")
    config, schedule, fit, uncertainty = option_sets(cell, **options)
    return GlobalWalkForward(config, schedule, fit, on_fold, uncertainty)
