"""Walk-forward retraining without any engine: the causal fold runner (``WalkForward``).

A fold trained at bar t sees ``closes[:t+1]`` only and uses samples whose target
ends at or before t; its model then forecasts bars t .. t+retrain_every-1, each
from the window of returns ending at that bar. The Backtrader indicators are thin
adapters over ``WalkForward``; ``walk_forward`` runs it on a plain array.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import models
from ._coldfolds import fold_pool, train_cold
from ._lazy import LazyDevice, LazyModule, lazy_functions
from ._sizing import MAX_BATCH
from .errors import ConfigError, DataError
from .features import check_feature_columns, frame_features
from .intervals import (
    LINES,
    VOL_WINDOW,
    FoldInterval,
    combine,
    combine_variances,
    fold_scores,
    lines_of,
    trailing_volatility,
)
from .options import OPTIONS, FitConfig, IntervalConfig, ModelConfig, resolve
from .schedule import FoldSchedule
from .windows import (
    as_prices,
    bad_prices,
    check_prices,
    complete_windows,
    returns_of,
    split_train_val,
    window_features,
    window_inputs,
    window_targets,
)

if TYPE_CHECKING:
    import torch

    from .foldpool import FoldPool

# Imported on first use (``_lazy``): a walk-forward whose forecasts all come from the store trains nothing, and
# never imports torch.
fitting = LazyModule("puffin_bt.fitting")
fold_data, predict_windows, train_prepared = lazy_functions("puffin_bt.fitting", "fold_data", "predict_windows",
                                                            "train_prepared")
torch_threads, = lazy_functions("puffin_bt.training", "torch_threads")

__all__ = ["FoldRecord", "WalkForward", "WalkForwardResult", "feature_matrix", "make_walk_forward", "option_sets",
           "require_history", "walk_forward"]


@dataclass
class FoldRecord:
    """What happened in one fold, for reports and plots."""

    index: int
    bar: int
    train_start: int
    n_train: int
    n_val: int
    epochs_run: int
    warm_start: bool
    train_loss: float
    val_loss: float
    best_epoch: int | None
    seconds: float
    date: object = None
    half_width: float | None = None  # the fold's conformal half-width (log return), when intervals are on

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["date"] = None if self.date is None else str(self.date)
        return d


@dataclass
class WalkForwardResult:
    """Forecasts for every bar of a series (NaN where no fold had been trained yet)."""

    pred_log_return: np.ndarray  # target="volatility": the forecast per-bar variance
    folds: list[FoldRecord] = field(default_factory=list)
    lines: np.ndarray | None = None  # (bars, 4): intervals.LINES
    target: str = "return"

    @property
    def pred_return(self) -> np.ndarray:
        """Predicted simple return over the next ``horizon`` bars (an ensemble's: of its mean log return); NaN for
        a volatility target."""
        if self.target == "volatility":
            return np.full(len(self.pred_log_return), np.nan)
        return np.expm1(self.pred_log_return)

    @property
    def pred_vol(self) -> np.ndarray:
        """Forecast volatility (``target="volatility"``): the square root of the mean squared log return per bar
        over the next ``horizon`` bars, not annualised (times ``sqrt(252)`` for daily bars); NaN for a return
        target."""
        if self.target != "volatility":
            return np.full(len(self.pred_log_return), np.nan)
        return np.sqrt(self.pred_log_return)

    @property
    def pred_std(self) -> np.ndarray:
        """The ensemble members' spread (standard deviation of their simple returns); NaN for one model."""
        return self.lines[:, 1]

    @property
    def pred_lo(self) -> np.ndarray:
        """Lower bound of the conformal interval of the simple return (NaN when ``interval`` is off)."""
        return self.lines[:, 2]

    @property
    def pred_hi(self) -> np.ndarray:
        return self.lines[:, 3]


class FoldModel:
    """A fold's model in an ``ensemble_method="folds"`` ensemble: its network and scaler, never trained again (a warm
    refit continues from a copy), and the forecasts it has made, by input window. Successive folds' validation
    windows and forecast bars overlap, so each window is forecast once by each model, not once per fold."""

    def __init__(self, net: torch.nn.Module, scaler) -> None:
        self.net, self.scaler = net, scaler
        self._seen: dict[bytes, float] = {}

    def forecast(self, windows: np.ndarray, feature_windows: np.ndarray | None, device) -> np.ndarray:
        """``predict_windows`` of this model, each window computed the first time it is asked for."""
        keys = [row.tobytes() for row in np.ascontiguousarray(windows)]
        if feature_windows is not None:
            keys = [key + rows.tobytes() for key, rows in zip(keys, np.ascontiguousarray(feature_windows))]
        new = [i for i, key in enumerate(keys) if key not in self._seen]
        if new:
            values = predict_windows(self.net, self.scaler, windows[new], device,
                                     None if feature_windows is None else feature_windows[new])
            self._seen.update(zip((keys[i] for i in new), values.tolist()))
        return np.array([self._seen[key] for key in keys])


class WalkForward(LazyDevice):
    """Stateful fold runner: trains folds in order and forecasts with the current one.

    Its public names: ``run`` (a whole series), ``forecast_lines`` (a range of bars of an array),
    ``advance_lines`` (growing histories, one bar at a time), ``train_fold``, and the ``current_fold``
    index. Each trains the fold at bar t on exactly ``closes[:t+1]`` (``train_fold``),
    so nothing after t can reach the fold. It takes the option sets as they are: the network
    (``ModelConfig``), the schedule (``FoldSchedule``), the training (``FitConfig``: ``refit_epochs``
    continues from the previous fold's weights, a warm start, None retrains from scratch; ``threads``;
    ``fold_workers``, processes that train cold folds side by side in ``forecast_lines``, ``"auto"``:
    one per core on Linux CPU, see ``foldpool``; results do not depend on it) and the interval
    (``IntervalConfig``). ``make_walk_forward`` builds all four from flat options.

    >>> import numpy as np
    >>> closes = 100 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.01, 160)))
    >>> wf = WalkForward(ModelConfig(hidden_dim=4, num_layers=1, lookback=10),
    ...                  FoldSchedule(lookback=10, min_train=60, retrain_every=50), FitConfig(epochs=1))
    >>> res = wf.run(closes)
    >>> len(res.folds), int(np.isnan(res.pred_log_return).sum())
    (3, 59)
    """

    def __init__(self, config: ModelConfig, schedule: FoldSchedule, fit: FitConfig | None = None,
                 uncertainty: IntervalConfig | None = None, on_fold: Callable[[FoldRecord], None] | None = None) -> None:
        if schedule.lookback != config.lookback or schedule.horizon != config.horizon:
            raise ConfigError(
                f"schedule (lookback={schedule.lookback}, horizon={schedule.horizon}) and model config "
                f"(lookback={config.lookback}, horizon={config.horizon}) disagree; build both from the same values"
            )
        self.config, self.schedule = config, schedule
        self.fit = FitConfig() if fit is None else fit
        self.uncertainty = IntervalConfig() if uncertainty is None else uncertainty
        self.auto_device = self.fit.device.lower() == "auto"
        self._name_device(self.fit.device)  # the CPU resolved when first used: no torch for a run from the store
        models.require_memory(config, self._device or "cpu", schedule.train_window)  # before any fold allocates it
        self.on_fold = on_fold
        self.interval = self.uncertainty.interval  # the coverage, None when off
        check_interval(config, self.interval)
        self.nets: list[torch.nn.Module] = []  # the current fold's model(s): config.trained_members of them
        self.scaler = None
        # ensemble_method="folds": the current fold's model and up to ensemble - 1 earlier ones, oldest first
        self._fold_models: list[FoldModel] = []
        # the current fold's conformal scores and split half-width (log return; "vol": in units of the trailing
        # volatility) and the adaptive level; None when intervals are off
        self.interval_state = None if self.interval is None else FoldInterval(
            self.interval, self.uncertainty.interval_method, self.uncertainty.aci_gamma)
        self.folds: list[FoldRecord] = []
        # Folds trained from scratch are independent models: they are trained together when several are due at
        # once, e.g. in ``forecast_lines`` (on the family's batched engine, or one by one with autograd when it
        # has none) and wait here until their turn. A fold's result does not depend on its batch.
        self._ready: dict[int, tuple] = {}
        self._pool: FoldPool | None = None
        self.pooled_batches = 0  # cold batches trained in worker processes (diagnostics, tests)
        # Wall time spent training folds, batches trained side by side counted once (a fold's
        # ``seconds`` is its own share of its batch, whichever process trained it).
        self.training_seconds = 0.0
        self.inference_seconds = 0.0  # wall time in forecast passes (window preparation included)

    @property
    def current_fold(self) -> int:
        return len(self.folds) - 1

    def _restore(self, folds: list[FoldRecord]) -> None:
        """Adopt the fold records of forecasts computed earlier (the forecast store's), reporting each
        to ``on_fold`` as if trained now; no network is restored, so only those forecasts can be used."""
        self.folds = list(folds)
        if self.on_fold is not None:
            for record in self.folds:
                self.on_fold(record)

    def train_fold(self, history: np.ndarray, date=None, features: np.ndarray | None = None) -> FoldRecord:
        """Train the fold at bar ``len(history) - 1`` on ``history`` (closes up to that bar) and
        ``features`` (the feature rows up to that bar, when the model has features)."""
        features = self._features(features, len(history))
        with torch_threads(self.fit.threads):
            return self._train_fold(history, date, features)

    def _features(self, features, n_bars: int) -> np.ndarray | None:
        """The feature rows given for ``n_bars`` bars, checked against the model's features."""
        names = self.config.features
        if features is None:
            if names:
                raise ConfigError(f"this model takes features {list(names)}; pass their values (features=...)")
            return None
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != len(names) or features.shape[0] < n_bars:
            raise DataError(f"features of shape {features.shape} for {n_bars} bars and the model's features "
                            f"{list(names)}; pass one row per bar and one column per feature")
        return features

    def _warm(self) -> bool:
        """Whether the next fold continues from the current fold's weights."""
        return self.fit.refit_epochs is not None and bool(self.nets)

    def _fold_in_order(self, bar: int) -> int:
        k = self.schedule.fold_index(bar)
        if not self.schedule.is_fold_bar(bar) or k != len(self.folds):
            raise ConfigError(
                f"fold at bar {bar} is out of order (next expected fold index {len(self.folds)}); "
                "folds must be trained in schedule order"
            )
        return k

    def _on_engine(self) -> bool:
        """Whether the next fold trains as a job (``_fold_job``, on the family's batched engine if it has one): a
        cold fold, an ensemble's members, a warm refit of a ``warm_on_engine`` family (GRU). A warm refit of one
        LSTM trains on nn.LSTM's fused kernel (``models.lstm``, bench/README.md)."""
        return not self._warm() or len(self.nets) > 1 or models.family(self.config.cell).warm_on_engine

    def _fold_job(self, history: np.ndarray, features: np.ndarray | None = None) -> fitting.FoldJob:
        """The next fold (at bar ``len(history) - 1``, on ``history`` and its feature rows) as work for the batched
        engine (see ``_on_engine``): fresh networks for a cold fold, the current ones, continued in place, for a
        warm refit. Train it (``fitting.train_jobs``, alone or with other walk-forwards' jobs), then ``_adopt`` it."""
        bar = len(history) - 1
        k = self._fold_in_order(bar)
        if not self._warm():
            return fitting.cold_job(self.config, self.schedule, self.fit.epochs, self.device, k, history, features)
        t0 = time.perf_counter()
        data = fold_data(self.config, history, self.schedule.sample_bars(bar), self.device, features)
        return fitting.FoldJob(k, self._continued(), data, self.fit.refit_epochs, time.perf_counter() - t0)

    def _continued(self) -> list[torch.nn.Module]:
        """The networks a warm refit continues: the current ones, in place; copies of them for
        ``ensemble_method="folds"``, whose members keep each earlier fold's model as it was at its date."""
        if self.config.ensemble_method == "folds":
            return [copy.deepcopy(net) for net in self.nets]
        return self.nets

    def _take(self, nets: list[torch.nn.Module], scaler) -> None:
        """Make a fold's trained ``nets`` and ``scaler`` the current ones (``"folds"``: its model joins the
        ensemble's fold models, the oldest beyond ``ensemble`` leaves)."""
        self.nets, self.scaler = nets, scaler
        if self.config.ensemble_method == "folds":
            self._fold_models = [*self._fold_models, FoldModel(nets[0], scaler)][-self.config.ensemble:]

    def _adopt(self, job: fitting.FoldJob, histories: list[dict], seconds: float, scores: np.ndarray | None) -> None:
        """A trained ``_fold_job``: the fold's ``train_fold`` (or ``forecast_lines``) uses it instead of training."""
        self._ready[job.k] = (job.nets, job.data.scaler, histories, seconds, scores)

    @property
    def _adopted(self) -> int:
        """Folds adopted (``_adopt``) and not yet reached."""
        return len(self._ready)

    def _samples(self, bar: int, features: np.ndarray | None) -> np.ndarray:
        """The fold's training windows: those of the schedule whose features all have values."""
        samples = self.schedule.sample_bars(bar)
        if features is None or not len(samples):
            return samples
        return samples[complete_windows(features[: bar + 1], samples, self.config.lookback)]

    def _train_fold(self, history: np.ndarray, date=None, features: np.ndarray | None = None) -> FoldRecord:
        bar = len(history) - 1
        k = self._fold_in_order(bar)
        cfg = self.config
        started = time.perf_counter()
        warm = self._warm()
        fold_features = None if features is None else features[: bar + 1]
        extra, scores, here = 0.0, None, 0.0  # here: training time spent in this call (not in _train_cold's)
        if k not in self._ready and self._on_engine():
            if warm:  # an ensemble's members or a GRU continue together, each its own weights
                job = self._fold_job(history, fold_features)
                (hists, extra, scores), = fitting.train_jobs(cfg, [job], self.device, self.interval is not None)
                self._adopt(job, hists, extra, scores)
                here = time.perf_counter() - started
            else:
                self._train_cold([(k, history, fold_features)])
        if k in self._ready:  # trained together with other folds (cold ones, or other tickers' in ``universe``)
            nets, scaler, hists, extra, scores = self._ready.pop(k)
            self._take(nets, scaler)
            hist = hists[0]
            started = time.perf_counter()
        else:  # a warm refit of one model off the engine (an LSTM: nn.LSTM's fused kernel)
            data = fold_data(cfg, history, self.schedule.sample_bars(bar), self.device, fold_features)
            nets = self._continued()
            hist = train_prepared(nets[0], cfg, data, self.fit.refit_epochs, self.device, cfg.seed + k)
            self._take(nets, data.scaler)
            if self.interval is not None and cfg.ensemble_method == "seeds":
                scores = fitting.validation_residuals(self.nets, data, self.device)
            here = time.perf_counter() - started
        if self.interval is not None:
            if cfg.ensemble_method != "seeds":  # the residuals of the members' mean, each member as it forecasts
                scores = self._member_residuals(bar, history, fold_features)
            self._set_scores(scores, bar, history, fold_features)
        self.training_seconds += here
        sample_bars = self._samples(bar, fold_features)
        n_val = len(split_train_val(sample_bars, cfg.validation_split)[1])
        val = hist["val_loss"]
        best = hist.get("best_epoch")
        record = FoldRecord(
            index=k,
            bar=bar,
            train_start=self.schedule.train_start(bar),
            n_train=len(sample_bars) - n_val,
            n_val=n_val,
            epochs_run=len(hist["train_loss"]),
            warm_start=warm,
            train_loss=float(hist["train_loss"][-1]) if hist["train_loss"] else math.nan,
            val_loss=float(val[best] if best is not None else (val[-1] if val else math.nan)),
            best_epoch=best,
            seconds=extra + time.perf_counter() - started,
            date=date,
            half_width=None if self.interval_state is None else self.interval_state.half_width,
        )
        self.folds.append(record)
        if self.on_fold is not None:
            self.on_fold(record)
        return record

    def _train_cold(self, folds: list[tuple]) -> None:
        """Train from scratch, together, the folds given as (index, closes up to the fold bar, features up to it
        or None), in the fold pool inside ``forecast_lines`` (``_coldfolds.train_cold``); each waits in
        ``_ready`` for its turn."""
        results, pooled, seconds = train_cold(self.config, self.schedule, self.fit.epochs, self.device, folds,
                                              self._samples, self.interval is not None, self._pool)
        for k, nets, scaler, hists, fold_seconds, scores in results:
            self._ready[k] = (nets, scaler, hists, fold_seconds, scores)
        self.pooled_batches += pooled
        self.training_seconds += seconds

    def forecast_lines(self, closes: np.ndarray, start: int, end: int, dates=None,
                       ahead: int | None = None, features: np.ndarray | None = None) -> np.ndarray:
        """The lines of bars ``start .. end-1`` of ``closes``: an array (bars, 4) of ``intervals.LINES``, the
        predicted log return (an ensemble's mean; column 0), the members' spread and the interval's bounds
        (simple returns; NaN when off). NaN before the first fold.

        Trains every fold those bars need, in order, each on ``closes[:fold_bar+1]`` (and
        ``features[:fold_bar+1]``: the arrays may hold later bars, never read);
        then one batched forward pass per fold. ``ahead``: cold folds due before that bar
        may be trained now, together with these (the indicator's ``oncestart`` asks for
        one bar, then ``once`` for the rest); each still sees only its own history.
        """
        features = self._features(features, len(closes))
        with torch_threads(self.fit.threads), self._fold_pool():
            return self._forecast_range(closes, start, end, dates, ahead, features)

    @contextlib.contextmanager
    def _fold_pool(self):
        """The shared process pool for this ``forecast_lines`` call's cold batches (``_coldfolds.fold_pool``);
        none for warm refits, which train one fold at a time, or inside a call that holds one."""
        if self.fit.refit_epochs is not None or self._pool is not None:
            yield
            return
        with fold_pool(self.config, self.fit, self.device) as pool:
            self._pool = pool
            try:
                yield
            finally:
                self._pool = None

    def _forecast_range(self, closes: np.ndarray, start: int, end: int, dates=None,
                        ahead: int | None = None, features: np.ndarray | None = None) -> np.ndarray:
        closes = np.asarray(closes, dtype=np.float64)
        end = min(end, len(closes))
        out = np.full((max(0, end - start), len(LINES)), np.nan)
        s = self.schedule
        bar = max(start, s.first_fold_bar)
        horizon = end if ahead is None else max(end, min(ahead, len(closes)))
        last_due = s.fold_index(horizon - 1) if bar < end else -1
        bad_at = bad_prices(closes)  # found once, not per fold
        lookback = self.config.lookback
        windows = feature_windows = None
        if bar < end:  # the input window of every bar asked for, each ending at its bar, built at once
            t0 = time.perf_counter()
            with np.errstate(divide="ignore", invalid="ignore"):  # bad closes raise below, before use
                windows = window_inputs(returns_of(closes[:end]), np.arange(bar, end), lookback)
            if features is not None:
                feature_windows = window_features(features[:end], np.arange(bar, end), lookback)
            self.inference_seconds += time.perf_counter() - t0
        first = bar

        def rows(hi: int) -> np.ndarray | None:  # the feature rows up to bar hi - 1
            return None if features is None else features[:hi]

        def clean(lo: int, hi: int) -> np.ndarray:  # closes[lo:hi], or the DataError naming the bad ones
            i = int(np.searchsorted(bad_at, lo))
            if i < len(bad_at) and bad_at[i] < hi:
                check_prices(closes[lo:hi], f"closes up to bar {hi - 1}", lo)
            return closes[lo:hi]

        while bar < end:
            k = s.fold_index(bar)
            fold_bar = s.fold_bar(k)
            while len(self.folds) <= k:
                nxt = len(self.folds)
                if self.fit.refit_epochs is None and nxt not in self._ready:
                    # Every fold up to last_due is known now: train the next PREFETCH of them
                    # together (each on its own history), so progress still moves every few batches.
                    prefetch = PREFETCH if self._pool is None else max(PREFETCH, self._pool.workers * MAX_BATCH // 2)
                    due = range(nxt, min(last_due, nxt + prefetch - 1) + 1)
                    self._train_cold([(j, clean(0, s.fold_bar(j) + 1), rows(s.fold_bar(j) + 1)) for j in due])
                fb = s.fold_bar(nxt)
                history = clean(0, fb + 1)
                self.train_fold(history, None if dates is None else dates[fb], rows(fb + 1))
            if k != self.current_fold:
                raise ConfigError(
                    f"bar {bar} needs fold {k} but the walk-forward is at fold {self.current_fold}; "
                    "forecast bars in increasing order"
                )
            stop = min(end, fold_bar + s.retrain_every)
            clean(bar - lookback, stop)
            part = None
            if feature_windows is not None:
                part = self._complete(feature_windows[bar - first: stop - first], bar)
            t0 = time.perf_counter()
            out[bar - start: stop - start] = self._lines(windows[bar - first: stop - first], part,
                                                         np.arange(bar, stop), closes)
            self.inference_seconds += time.perf_counter() - t0
            bar = stop
        return out

    def _lines(self, windows: np.ndarray, feature_windows: np.ndarray | None, bars: np.ndarray,
               closes: np.ndarray, offset: int = 0) -> np.ndarray:
        """The lines of ``bars`` from the current fold: each member's forecast pass, their mean and spread,
        and the interval (``closes[i]`` is bar ``offset + i``: the outcomes adaptive intervals learn from)."""
        log_return, spread = (combine_variances if self.config.target == "volatility" else combine)(
            self._member_forecasts(windows, feature_windows))
        widths = None
        if self.interval is not None:
            widths = self.interval_state.widths(self.schedule.horizon, bars, log_return, closes, offset)
        return lines_of(log_return, spread, widths)

    def _member_forecasts(self, windows: np.ndarray, feature_windows: np.ndarray | None) -> np.ndarray:
        """Each ensemble member's forecast pass over ``windows``, members along axis 0 (``ensemble_method``:
        the seeded nets; the current and up to ``ensemble - 1`` earlier folds' models, each with its own fold's
        scaler, fewer in the first folds (``FoldModel``))."""
        if self.config.ensemble_method == "folds":
            return np.stack([model.forecast(windows, feature_windows, self.device) for model in self._fold_models])
        return np.stack([predict_windows(net, self.scaler, windows, self.device, feature_windows) for net in self.nets])

    def _member_residuals(self, bar: int, history: np.ndarray, features: np.ndarray | None) -> np.ndarray | None:
        """Realised minus forecast (the members' mean, as ``_lines`` forecasts it) log return on the fold's
        validation windows (its chronological tail, targets <= ``bar``): the conformal scores of an ensemble
        whose members are not all trained on this fold. None without a validation tail."""
        val_bars = split_train_val(self._samples(bar, features), self.config.validation_split)[1]
        if not len(val_bars):
            return None
        lookback = self.config.lookback
        windows = window_inputs(returns_of(history), val_bars, lookback)
        feature_windows = None if features is None else window_features(features, val_bars, lookback)
        forecast = combine(self._member_forecasts(windows, feature_windows))[0]
        return window_targets(history, val_bars, self.schedule.horizon) - forecast

    def _set_scores(self, residuals: np.ndarray | None, bar: int, history: np.ndarray,
                    features: np.ndarray | None) -> None:
        volatility = None
        if self.uncertainty.interval_method == "vol":  # each residual over the volatility when its forecast was made
            val_bars = split_train_val(self._samples(bar, features), self.config.validation_split)[1]
            volatility = trailing_volatility(history, val_bars)
        self.interval_state.keep(fold_scores(residuals, self.interval, f"the fold at bar {bar}", volatility))

    def _complete(self, feature_windows: np.ndarray, first_bar: int | None) -> np.ndarray:
        """Forecast windows must have every feature value: a gap after the warm-up is a DataError."""
        ok = np.isfinite(feature_windows).all(axis=(1, 2))
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            missing = [n for j, n in enumerate(self.config.features) if not np.isfinite(feature_windows[i, :, j]).all()]
            where = "the last bar" if first_bar is None else f"bar {first_bar + i}"
            raise DataError(f"feature(s) {missing} have no value in the input window of {where} (NaN or inf); "
                            "fill or drop those bars before forecasting")
        return feature_windows

    def advance_lines(self, history: np.ndarray, date=None, features: np.ndarray | None = None) -> np.ndarray:
        """Event-driven step: ``history`` is the closes up to the current bar t (inclusive), ``features``
        the feature rows up to t (at a fold bar all of them; otherwise the last ``lookback`` will do).

        Retrains when t is a fold bar, then forecasts bar t from its last ``lookback + 1`` closes (adaptive
        and volatility-normalised intervals: its last ``_tail_bars``): the lines (``intervals.LINES``).
        """
        history = np.asarray(history, dtype=np.float64)
        bar = len(history) - 1
        if bar < self.schedule.first_fold_bar:
            return np.full(len(LINES), np.nan)
        if self.schedule.is_fold_bar(bar):
            self.train_fold(check_prices(history, f"closes up to bar {bar}"), date, features)
        lookback = self.config.lookback
        tail = history[-self._tail_bars:]
        return self._forecast_tail(tail, None if features is None else features[-lookback:], bar)

    @property
    def _tail_bars(self) -> int:
        """Closes ``_forecast_tail`` needs: the window, and the outcomes adaptive intervals learn from
        or the trailing volatility volatility-normalised ones scale by."""
        volatility = VOL_WINDOW if self.uncertainty.interval_method == "vol" else 0
        return max(self.config.lookback, self.schedule.horizon, volatility) + 1

    def _forecast_tail(self, tail: np.ndarray, feature_tail: np.ndarray | None = None,
                            bar: int | None = None) -> np.ndarray:
        """The lines (``intervals.LINES``) from the current fold for the bar that ends ``tail`` (its last
        ``_tail_bars`` closes; ``feature_tail``: the last ``lookback`` feature rows; ``bar``: its number)."""
        if not self.nets:
            raise ConfigError("no fold has been trained yet; call train_fold (or advance_lines) at the first fold bar")
        lookback = self.config.lookback
        tail = np.asarray(tail, dtype=np.float64)
        check_prices(tail[-(lookback + 1):], "the last closes")
        feature_tail = self._features(feature_tail, lookback)
        windows = None
        if feature_tail is not None:
            windows = self._complete(feature_tail[-lookback:][None], bar)
        t0 = time.perf_counter()
        with torch_threads(self.fit.threads):
            x = window_inputs(returns_of(tail[-(lookback + 1):]), np.array([lookback]), lookback)
            at = len(tail) - 1 if bar is None else bar
            lines = self._lines(x, windows, np.array([at]), tail, offset=at - len(tail) + 1)[0]
        self.inference_seconds += time.perf_counter() - t0
        return lines

    def run(self, closes, dates=None, features: np.ndarray | None = None) -> WalkForwardResult:
        """Walk forward over a whole series of closes (oldest first), with its feature rows if any."""
        closes = as_prices(closes, name="closes", min_length=self.schedule.min_train)
        lines = self.forecast_lines(closes, 0, len(closes), dates, features=features)
        return WalkForwardResult(lines[:, 0], list(self.folds), lines, self.config.target)


PREFETCH = 2 * MAX_BATCH  # cold folds trained ahead at a time in forecast_lines (progress granularity)


def option_sets(cell: str = "lstm", inputs: tuple[str, ...] = (), **options) -> tuple:
    """``(ModelConfig, FoldSchedule, FitConfig, IntervalConfig)`` from flat walk-forward options
    (``options.forecast_defaults()`` fill the gaps); unknown names and bad values raise ConfigError naming them.
    ``inputs``: names of further feature columns (lines, the caller's arrays) after the built-in ``features``."""
    p = resolve(options, ["forecast"], "walk-forward")
    if p["interval"] is None and p["interval_method"] != "split":
        raise ConfigError(f"interval_method={p['interval_method']!r} adapts a prediction interval, but interval is "
                          "None; set one, e.g. interval=0.8 (or leave interval_method at 'split')")
    p["features"] = tuple(p["features"]) + tuple(inputs)
    config = ModelConfig(cell=cell, **{name: p[name] for name in ModelConfig.NAMES if name != "cell"})
    return (config, *(kind(**{name: p[name] for name in kind.NAMES}) for kind in (FoldSchedule, FitConfig,
                                                                                  IntervalConfig)))


def check_interval(config: ModelConfig, interval: float | None) -> None:
    """A conformal interval needs a return target and validation residuals to be fitted on."""
    if interval is not None and config.target == "volatility":
        raise ConfigError(f"interval={interval} is a conformal interval of the return; target='volatility' "
                          "forecasts a variance and has none: use interval=None (pred_std is an ensemble's "
                          "spread of volatility forecasts)")
    if interval is not None and config.validation_split == 0:
        raise ConfigError(f"interval={interval} is fitted on each fold's validation residuals; "
                          "validation_split=0 leaves none: use validation_split > 0")


def make_walk_forward(cell: str = "lstm", on_fold: Callable[[FoldRecord], None] | None = None,
                      inputs: tuple[str, ...] = (), **options) -> WalkForward:
    """A ``WalkForward`` from flat walk-forward options (``option_sets``).

    >>> make_walk_forward("gru", hidden_dim=8, retrain_every=5).schedule.retrain_every
    5
    """
    config, schedule, fit, uncertainty = option_sets(cell, inputs, **options)
    return WalkForward(config, schedule, fit, uncertainty, on_fold)


def require_history(name: str, n_bars: int, min_train: int) -> None:
    """A series must reach the first fold, or it would never get a forecast."""
    if n_bars < min_train:
        raise DataError(
            f"{name} has {n_bars} bars but the first fold needs min_train={min_train}; "
            f"lower min_train or load more history"
        )


def walk_forward(closes, *, cell: str = "lstm", on_fold: Callable[[FoldRecord], None] | None = None,
                 inputs=None, **options) -> WalkForwardResult:
    """Walk-forward forecasts for a plain array of closes, no engine involved.

    ``options`` are the walk-forward options (lookback, retrain_every, ...; ``puffin_bt.options``).
    Built-in ``features`` (``"volume"``, ``"rsi:14"``, ...) need the bars: pass an OHLCV DataFrame
    as ``closes``. ``inputs``: further features of your own, one row per bar (an array, a Series or
    a DataFrame whose columns name them); a value at bar t enters the window ending at t.

    >>> import numpy as np
    >>> closes = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 150)))
    >>> res = walk_forward(closes, lookback=10, min_train=60, retrain_every=30, epochs=1,
    ...                    hidden_dim=4, num_layers=1)
    >>> res.pred_return.shape, len(res.folds)
    ((150,), 4)
    """
    closes, features, names = feature_matrix(closes, options.get("features", ()), inputs)
    return make_walk_forward(cell, on_fold, inputs=names, **options).run(closes, features=features)


def feature_matrix(data, specs, inputs=None) -> tuple:
    """(closes, feature rows or None, the names of ``inputs``' columns) from closes or an OHLCV frame, the
    built-in feature ``specs`` (computed from the frame) and the caller's ``inputs``."""
    specs = OPTIONS["features"].check(specs)
    frame = data if hasattr(data, "columns") else None
    if frame is not None:
        missing = [c for c in ("close", *(("open", "high", "low", "volume") if specs else ())) if c not in frame.columns]
        if missing:
            raise DataError(f"the bars lack column(s) {missing}; pass an OHLCV frame (load_sample, load_csv, "
                            "validate_ohlcv)")
        closes = frame["close"].to_numpy(dtype=np.float64)
    else:
        closes = data
        if specs:
            raise ConfigError(f"features {list(specs)} are computed from the bars: pass an OHLCV DataFrame instead "
                              "of closes (or your own values as inputs=...)")
    columns, names = [], list(specs)
    if specs:
        columns.append(frame_features(specs, frame))
    input_names: tuple[str, ...] = ()
    if inputs is not None:
        try:
            values = np.asarray(inputs.to_numpy() if hasattr(inputs, "to_numpy") else inputs, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"inputs must be numeric ({exc}); convert the columns to numbers first") from None
        values = values[:, None] if values.ndim == 1 else values
        if hasattr(inputs, "columns"):
            input_names = tuple(str(c) for c in inputs.columns)
        else:
            input_names = tuple(str(getattr(inputs, "name", None) or f"input{j}") if values.shape[1] == 1
                                else f"input{j}" for j in range(values.shape[1]))
        columns.append(values)
        names += list(input_names)
    if not columns:
        return closes, None, ()
    n_bars = len(closes)
    if any(len(c) != n_bars for c in columns):
        raise DataError(f"features {names} have {[len(c) for c in columns]} rows; they must have one row per price "
                        f"bar ({n_bars} rows)")
    return closes, check_feature_columns(np.column_stack(columns), names, n_bars), input_names
