"""Backtrader indicators that retrain a model walk-forward inside the engine.

``ForecastIndicator`` (public base class; one subclass per model family, ``INDICATORS``: ``LSTMForecast``,
``GRUForecast``, ``TCNForecast``, derived from ``models.FAMILIES``) is a thin adapter
over ``walkforward.WalkForward``: ``once()`` (runonce) forecasts each fold with one batched
forward pass, ``next()`` (event-driven, live feeds, preload=False) follows the same schedule bar
by bar. Its params are the walk-forward options of ``puffin_bt.options``.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import types
from array import array
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: optstrategy's workers may then train the same forecasts side by side
    fcntl = None

import backtrader as bt
import numpy as np

from .._lazy import LazyModule
from ..checks import check_known
from ..errors import ConfigError, DataError
from ..features import check_feature_columns, compute_features, feature_lag
from ..globalmodel import Series, make_global_walk_forward
from ..intervals import LINES
from ..models import FAMILIES, family
from ..options import ESTIMATOR_NAMES, forecast_defaults, require_return_target
from ..store import ForecastStore, as_lines
from ..walkforward import FoldRecord, make_walk_forward, require_history
from ..windows import check_prices

__all__ = [
    "ForecastIndicator", "ForecastPrice", "GlobalForecast", "INDICATORS", "forecast_indicator",
    "forecast_indicators", "traded_forecast_indicators"
]

# Imported on first use (``_lazy``): model files are read and written with torch, a run from the store needs none.
checkpoint = LazyModule("puffin_bt.checkpoint")

# Indicator params: the walk-forward options plus where results go.
FORECAST_PARAMS = (*forecast_defaults().items(), ("store", None), ("on_fold", None), ("model_dir", None))
FORECAST_OPTIONS = tuple(forecast_defaults())


class ForecastIndicator(bt.Indicator):
    """Walk-forward RNN forecast of the next ``horizon``-bar return; subclass it (set ``cell``) or use
    ``LSTMForecast`` / ``GRUForecast``.

    Lines: ``pred_return`` (predicted simple return from this bar's close to
    ``horizon`` bars later; with ``ensemble=K`` the members' mean), ``pred_price``
    (``close * (1 + pred_return)``), ``pred_std`` (the ensemble members' spread; NaN for one
    model) and ``pred_lo``/``pred_hi`` (the conformal interval with ``interval=0.8``, say; NaN when
    off). Bars before the first fold (``min_train`` bars) are NaN.

    ``target="volatility"`` forecasts the realised variance over the next ``horizon`` bars instead: ``pred_vol`` is
    its square root, the forecast standard deviation of one bar's log return (per bar, not annualised: times
    ``sqrt(252)`` for daily bars), ``pred_std`` the ensemble members' spread of it; ``pred_return``,
    ``pred_price``, ``pred_lo`` and ``pred_hi`` are NaN, so no return rule can trade a volatility model by
    mistake. With a return target ``pred_vol`` is NaN.

    The first data may be any line: a feed, a feed's line or another indicator
    (``LSTMForecast(bt.ind.SMA(self.data, period=20))``); an indicator's warm-up bars are NaN and folds
    start once ``min_train`` valid values exist (a NaN after the warm-up is a DataError).

    Event-driven, the indicator advances only when its own data does: ticks of other feeds (other
    calendars, a weekly copy, other times of day) keep its values and never train. With ``replaydata``
    the forming bar's forecast is recomputed from its latest close on every tick, and a fold trains
    once its bar is complete, when the next bar begins: a fold's first forecast comes one bar later
    than with ``resampledata`` (every other completed bar is the same).

    ``model_dir`` (a folder; event-driven runs: live feeds, ``runonce=False``) saves each fold's network
    as it trains; a restarted run on the same bars reads them back instead of training (paper trading,
    ``examples/16_paper_trading.py``). ``save_model(path)`` writes the latest fold's network for
    ``RNNForecaster.load``.

    ``store`` (a ``ForecastStore``) serves runonce forecasts from disk when the data
    and every model option match a previous run; event-driven modes always compute. By default
    (None) an indicator inside ``cerebro.optstrategy`` uses the default store (as ``backtest()``
    does), so a sweep over entry/exit/sizing trains each forecast once, also with ``maxcpus>1`` (one
    worker trains, the others wait for it and read); ``store=False`` turns that off, ``store=True``
    uses the default store in any run.

    Input features, as Backtrader indicators take inputs: the first data is the series whose
    return is forecast; every further line passed in (a data's line, any indicator, another data's
    close on the same bars) is an input feature, and so is each built-in ``features`` spec
    (``"volume"``, ``"rsi:14"``, ...: ``puffin_bt.features``), computed from the first data's bars.
    A feature's value at bar t enters the input window ending at t. Missing values (an indicator's
    warm-up, a feature that starts later) are left out of training; a fold left with too few
    complete windows, or a gap inside a forecast window, is a DataError naming the feature.

    Usage inside any strategy::

        self.fc = LSTMForecast(self.data, lookback=20, retrain_every=21, epochs=5)
        rsi = bt.ind.RSI(self.data)
        self.fc2 = GRUForecast(self.data, rsi, self.data.volume, features=("range",))
        if self.fc.pred_return[0] > 0.005: self.buy()
    """

    cell = "lstm"
    lines = ("pred_return", "pred_price", "pred_std", "pred_lo", "pred_hi", "pred_vol")
    params = FORECAST_PARAMS
    plotinfo = dict(subplot=True, plotname="forecast", plothlines=[0.005, -0.005], plotyhlines=[0.0])
    plotlines = dict(
        pred_return=dict(_name="pred return", color="tab:purple"),
        pred_price=dict(_plotskip=True),
        pred_std=dict(_plotskip=True),
        pred_lo=dict(_name="interval", color="tab:purple", ls=":", lw=0.8, alpha=0.6),
        pred_hi=dict(_name="", color="tab:purple", ls=":", lw=0.8, alpha=0.6),
        pred_vol=dict(_name="pred vol", color="tab:orange"),
    )

    def __init__(self) -> None:
        p = self.p
        on_fold = None
        if p.on_fold is not None:
            name = getattr(self.data, "_name", "") or "data"

            def on_fold(record, _name=name, _report=p.on_fold):
                _report(_name, record)

        cerebro = _cerebro_of(self)
        exactbars = getattr(getattr(cerebro, "p", None), "exactbars", False)
        if exactbars is True or (isinstance(exactbars, int) and exactbars > 0):
            raise ConfigError(
                f"{type(self).__name__} retrains each fold on the whole history up to it, which "
                f"Cerebro(exactbars={exactbars!r}) does not keep; use exactbars=False (the default), -1 or -2"
            )
        self._inputs = [d.lines[0] for d in self.datas[1:]]  # further lines: input features
        names = _input_names(self.datas[1:])
        try:
            self.walk = make_walk_forward(self.cell, on_fold, inputs=names,
                                          **{k: getattr(p, k) for k in FORECAST_OPTIONS})
        except ConfigError as exc:
            raise type(exc)(f"{type(self).__name__}: {exc}") from None
        self.config, self.schedule = self.walk.config, self.walk.schedule
        self._specs = tuple(self.walk.config.features[: len(self.config.features) - len(names)])
        self._lag = max((feature_lag(spec) for spec in self._specs), default=0)
        self._close = self.data.close if hasattr(self.data, "close") else self.data
        # Forecasting an indicator's line (an SMA, an RSI): its first bars are a warm-up, NaN by design.
        # The walk-forward runs on the bars after it, so folds start once min_train valid values exist.
        self._warmup = self.data._minperiod - 1
        self._feed = _feed_of(self.data)
        self._replaying = bool(getattr(self._feed, "replaying", False))  # replaydata: the current bar is forming
        if self._specs and not all(hasattr(self.data, f) for f in ("open", "high", "low", "close", "volume")):
            raise ConfigError(f"{type(self).__name__}: features {list(self._specs)} are computed from the bars of "
                              "the first data, which has no open/high/low/close/volume lines; pass a data feed")
        self._stored = None
        self._store = _store_for(p.store, cerebro)
        self._bar: int | None = None  # event-driven: the walk-forward bar last seen
        # The forecast needs min_train bars of its data; a feature's own warm-up (an indicator's first
        # bars) is not waited for here but handled as missing values.
        for line in self.lines:
            line._minperiod = self.data._minperiod + self.schedule.min_train - 1

    @property
    def folds(self):
        """The folds trained so far (``FoldRecord``: bar, date, train range, losses, seconds), bars counted from
        the data's first bar (the walk-forward's own count starts after an indicator input's warm-up)."""
        if not self._warmup:
            return self.walk.folds
        return [dataclasses.replace(r, bar=r.bar + self._warmup, train_start=r.train_start + self._warmup)
                for r in self.walk.folds]

    def _plotlabel(self):
        return [f"{self.cell.upper()} lb={self.p.lookback} every={self.p.retrain_every}"]

    def _dates(self):
        return _LazyDates(self._feed, self._warmup)

    def _closes_all(self) -> np.ndarray:
        """runonce: every preloaded value of the forecast line after its warm-up, future included."""
        return np.asarray(self._close.array, dtype=np.float64)[self._warmup:]

    def _feature_rows(self, size: int | None, ago: int = 0) -> np.ndarray | None:
        """The features' values for the last ``size`` bars up to this one (``ago=-1``: up to the previous one;
        None: every preloaded bar, future included, which WalkForward cuts at each fold's bar before use)."""
        if not self.config.features:
            return None
        skip = self._warmup if size is None else 0
        n = len(self._close.array) - skip if size is None else size
        columns = []
        if self._specs:
            lines = [getattr(self.data, f) for f in ("open", "high", "low", "close", "volume")]
            if size is None:
                bars = [np.asarray(line.array, dtype=np.float64) for line in lines]
            else:  # the last size bars need each feature's lag of history before them
                bars = [np.asarray(line.get(ago=ago, size=min(size + self._lag, len(self.data) + ago)),
                                   dtype=np.float64) for line in lines]
            columns.append(compute_features(self._specs, *bars)[-n:] if n else np.empty((0, len(self._specs))))
        for i, line in enumerate(self._inputs):
            values = np.asarray(line.array[skip:] if size is None else line.get(ago=ago, size=size), dtype=np.float64)
            if len(values) != n:
                raise DataError(f"{type(self).__name__}: input feature {self.config.features[len(self._specs) + i]!r} "
                                f"has {len(values)} bars where the data has {n}; input lines must run on the "
                                "data's bars (a line of this data, an indicator of it, or a data with the same dates)")
            columns.append(values[:, None])
        rows = np.concatenate(columns, axis=1)
        if size is None:
            check_feature_columns(rows, self.config.features, n, f"{type(self).__name__} features")
        return rows

    def once(self, start: int, end: int) -> None:
        if self.p.model_dir is not None:
            raise ConfigError(f"{type(self).__name__}: model_dir saves and resumes folds bar by bar (live feeds, "
                              "Cerebro(runonce=False)); this Cerebro runs once over preloaded data: pass "
                              "runonce=False, or drop model_dir and call save_model(path) after the run")
        warmup = self._warmup
        if not self.walk.folds and self._stored is None:
            # Preloaded: the whole length is known, so a series that never reaches a fold is an error.
            require_history(getattr(self.data, "_name", "") or "data", len(self._close.array) - warmup,
                            self.schedule.min_train)
        # The arrays hold the whole preloaded series, future included: WalkForward
        # slices them to each fold's end before training, and each forecast window ends at its bar.
        if self._store is not None:
            # Stored forecasts are keyed by the whole series: any change to any bar is a miss.
            if self._stored is None:
                numbers = None if self._feed is None else np.asarray(self._feed.datetime.array)[warmup:]
                stored = _stored_lines(self._store, self.walk, self._closes_all(), self._dates(), numbers,
                                       self._feature_rows(None))
                self._stored = np.concatenate([np.full((warmup, stored.shape[1]), np.nan), stored])
            lines = self._stored[start:end]
        else:
            # Cold folds of the whole preloaded series are trained together from the first call
            # (oncestart asks for one bar): WalkForward cuts each fold's history at its own bar.
            closes_all = self._closes_all()
            try:
                lines = self.walk.forecast_lines(closes_all, start - warmup, end - warmup, self._dates(),
                                                 ahead=len(closes_all), features=self._feature_rows(None))
            except DataError as exc:
                if not warmup:
                    raise
                raise DataError(f"{type(self).__name__}: {exc} (bars counted after the input's {warmup}-bar "
                                "warm-up)") from None
        _write_lines(self, lines, start, end)

    def next(self) -> None:
        try:
            self._step()
        except DataError as exc:  # name the data's bar: the walk-forward counts its own bars and windows
            when = f" ({self._feed.datetime.date(0)})" if self._feed is not None else ""
            raise DataError(f"{type(self).__name__} at bar {len(self) - 1}{when}: {exc}") from None

    def _step(self) -> None:
        # Backtrader calls next() on every tick of the strategy, also when this data did not advance
        # (another feed's date, a weekly bar mid-week, a replayed partial bar): such a repeated tick
        # keeps the current values and never trains (DESIGN rule 11).
        bar = len(self) - 1 - self._warmup  # the walk-forward's bar: the warm-up's bars are not its
        advanced = bar != self._bar
        self._bar = bar
        if self._replaying:  # the current bar is still forming: train on completed bars only
            if advanced and bar > 0 and self.schedule.is_fold_bar(bar - 1):
                self._train(bar - 1, ago=-1)
        elif not advanced:
            return
        elif self.schedule.is_fold_bar(bar):
            self._train(bar)
        if not self.walk.nets:  # replay: the first fold trains when the bar after it begins
            return
        lookback = self.config.lookback
        # adaptive and volatility-normalised intervals also need past outcomes / the trailing volatility
        needed = self.walk._tail_bars if self.walk.uncertainty.interval_method != "split" and \
            self.walk.interval is not None else lookback + 1
        history = np.asarray(self._close.get(size=min(bar + 1, needed)), dtype=np.float64)
        features = self._feature_rows(lookback)
        lines = self.walk._forecast_tail(history, features, bar)
        _write_bar(self, lines)

    def _train(self, bar: int, ago: int = 0) -> None:
        """Train the fold at ``bar`` on the closes (and feature rows) up to it; ``ago=-1``: bar is the previous one.
        With ``model_dir``, a fold saved there by an earlier run on the same bars is read back instead."""
        history = check_prices(np.asarray(self._close.get(ago=ago, size=bar + 1), dtype=np.float64),
                               f"{type(self).__name__}: values up to bar {bar + self._warmup}", self._warmup)
        features = self._feature_rows(bar + 1, ago)
        date = self._feed.datetime.datetime(ago) if self._feed is not None else None
        if self.p.model_dir is None:
            self.walk.train_fold(history, date, features)
            return
        path = Path(self.p.model_dir) / f"fold-{len(self.walk.folds):04d}-{self._fold_key(history, features)}.pt"
        if path.is_file():
            net, scaler, record, scores = checkpoint.read_fold(path, self.config, self.walk.device)
            self.walk.nets, self.walk.scaler = [net], scaler
            if scores is not None:
                self.walk.interval_state.keep(scores)
            self.walk.folds.append(FoldRecord(**record))
            if self.walk.on_fold is not None:
                self.walk.on_fold(self.walk.folds[-1])
            return
        self.walk.train_fold(history, date, features)
        self.save_model(path)

    def _fold_key(self, history: np.ndarray, features: np.ndarray | None) -> str:
        """What a fold's result depends on: every option, and the bars it trains on."""
        h = hashlib.sha256(json.dumps({k: getattr(self.p, k) for k in FORECAST_OPTIONS}, sort_keys=True,
                                      default=repr).encode())
        h.update(self.cell.encode())
        h.update(np.ascontiguousarray(history).tobytes())
        if features is not None:
            h.update(np.ascontiguousarray(features).tobytes())
        return h.hexdigest()[:24]

    def save_model(self, path) -> Path:
        """Write the latest fold's network and scaler as a model file (the ``RNNForecaster.save`` format: weights
        and JSON, never unpickled): ``RNNForecaster.load(path)`` (or ``TradingLSTM``/``TradingGRU``) reads it, and
        its ``predict`` on the same closes gives this indicator's last forecast. The file is written atomically;
        a path that cannot be written is a CheckpointError and leaves nothing behind."""
        if self.walk.folds and not self.walk.nets:
            raise ConfigError(f"{type(self).__name__}: these forecasts came from the forecast store, which keeps "
                              "forecasts, not networks; run with store=False to save the model")
        class_name = family(self.config.cell).estimator_name
        params = {name: getattr(self.config, name) for name in ESTIMATOR_NAMES if hasattr(self.config, name)}
        params["epochs"] = self.p.epochs
        return checkpoint.write_fold(path, class_name, self.walk, params)


def _feed_of(line):
    """The data feed ``line`` (a data, a data's line, an indicator) is computed from; None if none."""
    if isinstance(line, bt.AbstractDataBase):
        return line
    owner = getattr(line, "_owner", None)
    if type(line).__name__ == "LineSeriesStub" and owner is not None:
        return _feed_of(owner)
    return next((feed for feed in map(_feed_of, getattr(line, "datas", ())) if feed is not None), None)


def _input_names(objects) -> tuple[str, ...]:
    """Readable, distinct names of input lines: ``IBM.volume``, ``RSI(14)``, ``data.close``."""
    names = []
    for obj in objects:
        owner = getattr(obj, "_owner", None)
        if type(obj).__name__ == "LineSeriesStub" and owner is not None and hasattr(owner, "lines"):
            index = next((i for i, line in enumerate(owner.lines) if line is obj.lines[0]), 0)
            name = f"{getattr(owner, '_name', '') or type(owner).__name__}.{owner.lines._getlinealias(index)}"
        elif isinstance(obj, bt.Indicator):
            defaults = dict(type(obj).params._getitems())
            changed = [f"{k}={v}" for k, v in obj.params._getkwargs().items() if defaults.get(k) != v]
            name = type(obj).__name__ + (f"({','.join(changed)})" if changed else "")
        else:
            name = f"{getattr(obj, '_name', '') or type(obj).__name__}.{obj.lines._getlinealias(0)}"
        while name in names:
            name += "'"
        names.append(name)
    return tuple(names)


def _write_lines(indicator, lines: np.ndarray, start: int, end: int) -> None:
    """runonce: an indicator's lines for bars start .. end-1 from forecast lines (``intervals.LINES``), written
    slice by slice (Backtrader sized the lines for every bar before calling once)."""
    values = _indicator_lines(lines, np.asarray(indicator._close.array[start:end], dtype=np.float64),
                              indicator.config.target)
    for name, column in values.items():
        getattr(indicator.lines, name).array[start:end] = array("d", np.ascontiguousarray(column).tobytes())


def _write_bar(indicator, lines: np.ndarray) -> None:
    """Event-driven: this bar's lines."""
    out = indicator.lines
    if indicator.config.target == "volatility":
        values = _indicator_lines(np.asarray(lines)[None], np.array([indicator._close[0]]), "volatility")
        for name, column in values.items():
            getattr(out, name)[0] = float(column[0])
        return
    pred_return = math.expm1(lines[0])
    out.pred_return[0] = pred_return
    out.pred_price[0] = indicator._close[0] * (1.0 + pred_return)
    out.pred_std[0], out.pred_lo[0], out.pred_hi[0] = (float(v) for v in lines[1:])
    out.pred_vol[0] = math.nan


def _indicator_lines(lines: np.ndarray, closes: np.ndarray, target: str) -> dict[str, np.ndarray]:
    """The indicator's lines from forecast lines (bars, 4: ``intervals.LINES``) and the bars' closes: a return
    target's, or a volatility target's (``pred_vol`` from the forecast variance, the return lines NaN)."""
    nan = np.full(len(lines), np.nan)
    if target == "volatility":
        return {"pred_return": nan, "pred_price": nan, "pred_std": lines[:, 1], "pred_lo": nan, "pred_hi": nan,
                "pred_vol": np.sqrt(lines[:, 0])}
    pred_return = np.expm1(lines[:, 0])
    return {"pred_return": pred_return, "pred_price": closes * (1.0 + pred_return), "pred_std": lines[:, 1],
            "pred_lo": lines[:, 2], "pred_hi": lines[:, 3], "pred_vol": nan}


def _cerebro_of(indicator):
    """The Cerebro the indicator runs in (None when unknown)."""
    strategy = bt.metabase.findowner(indicator, bt.Strategy)
    return getattr(strategy, "cerebro", None) or getattr(strategy, "env", None)


def _store_for(store, cerebro) -> ForecastStore | None:
    """The forecast store an indicator uses: the one given; none with ``store=False``; by default (None) the
    default store (``$PUFFIN_BT_CACHE``, as ``backtest()``) inside ``cerebro.optstrategy``, so a sweep over
    parameters that do not change the forecasts (entry, exit, sizing) trains each forecast once, and none
    otherwise; ``store=True``: the default store in any run."""
    if store is False or isinstance(store, ForecastStore):
        return store or None
    if store is True or (store is None and getattr(cerebro, "_dooptimize", False)):
        return ForecastStore()
    if store is None:
        return None
    raise ConfigError(f"store={store!r} must be a ForecastStore, True (the default store), False (none) or None "
                      "(the default store inside optstrategy only)")


def _stored_lines(store: ForecastStore, walk, closes, dates, numbers, features) -> np.ndarray:
    """``store.forecast_lines``, trained by one process at a time per entry: the forked workers of
    ``optstrategy(maxcpus>1)`` all ask for the same forecasts at once; the first trains, the others wait on the
    entry's lock file and then read what it stored."""
    key, hit = store.lookup(walk, closes, numbers, features)
    if hit is not None:
        return store.serve(walk, hit)
    if store.root is None or fcntl is None:
        return store.forecast_lines(walk, closes, dates, numbers, features)
    store.root.mkdir(parents=True, exist_ok=True)
    with open(store.root / f".{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return store.forecast_lines(walk, closes, dates, numbers, features)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class _LazyDates:
    """Bar index -> datetime of a data feed (its bars after ``skip`` of them), converted only for the bars asked
    for."""

    def __init__(self, data, skip: int = 0) -> None:
        self._array = data.datetime.array if data is not None else None
        self._skip = skip

    def __getitem__(self, bar: int):
        if self._array is None:
            return None
        return bt.num2date(self._array[bar + self._skip])


def _indicator(family) -> type[ForecastIndicator]:
    def body(ns: dict) -> None:
        ns.update(__doc__=f"Walk-forward {family.label} forecast indicator (lines ``pred_return``, ``pred_price``, ...).",
                  __module__=__name__, __qualname__=family.indicator_name, cell=family.name)

    return types.new_class(family.indicator_name, (ForecastIndicator,), exec_body=body)


_ForecastIndicator = ForecastIndicator  # the name before it was public
# One indicator class per model family (LSTMForecast, GRUForecast, TCNForecast), as module attributes.
INDICATORS: dict[str, type[ForecastIndicator]] = {name: _indicator(f) for name, f in FAMILIES.items()}
globals().update({cls.__name__: cls for cls in INDICATORS.values()})


class ForecastGroup:
    """The one global model (``scope="global"``) shared by a strategy's forecast indicators, one
    ``GlobalForecast`` per data: ``globalmodel.GlobalWalkForward`` driven from Backtrader.

    runonce: the first indicator asked computes every data's forecasts from the preloaded arrays
    (each fold sees every data's bars up to its date only) and each indicator takes its own.
    Event-driven (runnext, preload=False, live): the calendar is the union of the datas' dates as
    the strategy steps through them; at a fold date the first indicator called trains the fold on
    every data's bars up to that date, then each forecasts its own bar.
    """

    def __init__(self, cell: str = "lstm", store=None, on_fold=None, **options) -> None:
        report = None
        if on_fold is not None:
            def report(record, _report=on_fold):
                _report("global", record)
        try:
            self.walk = make_global_walk_forward(cell, report, **options)
        except ConfigError as exc:
            raise type(exc)(f"global model: {exc}") from None
        self.config, self.schedule = self.walk.config, self.walk.schedule
        self.specs = self.config.features
        self.lag = max((feature_lag(spec) for spec in self.specs), default=0)
        self.store = store
        self.members: list[GlobalForecast] = []
        self._preds: dict | None = None
        self._seen: list[float] = []  # event-driven: the calendar so far

    def _series(self, member, size: int | None = None):
        data = member.data
        if size is None:
            closes = np.asarray(data.close.array, dtype=np.float64)
            dates = np.asarray(data.datetime.array, dtype=np.float64)
        else:
            closes = np.asarray(data.close.get(size=size), dtype=np.float64)
            dates = np.asarray(data.datetime.get(size=size), dtype=np.float64)
        features = None
        if self.specs:
            lines = [getattr(data, f) for f in ("open", "high", "low", "close", "volume")]
            bars = [np.asarray(line.array if size is None else line.get(size=size), dtype=np.float64) for line in lines]
            features = compute_features(self.specs, *bars)
        return Series(member.name, dates, closes, features)

    def forecasts(self, member) -> np.ndarray:
        """runonce: this member's forecast lines (``intervals.LINES``) for every preloaded bar."""
        if self._preds is None:
            series = [self._series(m) for m in self.members]
            for s in series:
                require_history(s.name, len(s.closes), 1)
            if self.store is not None:
                self._preds = self.store.global_forecasts(self.walk, series, bt.num2date)
            else:
                self._preds = self.walk.forecast_all_lines(series, bt.num2date)
        return as_lines(self._preds[member.name])

    def step(self, member) -> np.ndarray | None:
        """Event-driven: train a fold when the strategy's date is a fold date, then forecast this member's
        bar (its lines); None when its data has no bar today."""
        now = float(member._owner.datetime[0])
        if not self._seen or now > self._seen[-1]:
            self._seen.append(now)
        position = len(self._seen) - 1
        if self.schedule.is_fold_bar(position) and self.schedule.fold_index(position) == len(self.walk.folds):
            histories = {}
            for m in self.members:
                s = self._series(m, len(m.data))
                histories[m.name] = (s.closes, s.features)
            self.walk.train_fold(position, histories, bt.num2date(now))
        data = member.data
        if not len(data) or float(data.datetime[0]) != now:
            return None
        if not self.walk.folds or len(data) <= self.config.lookback:
            return np.full(len(LINES), np.nan)
        size = min(len(data), max(self.config.lookback + 1 + self.lag, self.walk.tail_bars))
        s = self._series(member, size)
        return self.walk.forecast_lines(member.name, s.closes, np.array([len(data) - 1]), s.features,
                                        offset=len(data) - size)[0]


class GlobalForecast(bt.Indicator):
    """One data's forecast from the strategy's shared global model (``ForecastGroup``): the same lines
    as ``ForecastIndicator`` (``pred_return``, ``pred_price``), NaN until a fold includes the data."""

    lines = ("pred_return", "pred_price", "pred_std", "pred_lo", "pred_hi", "pred_vol")
    params = (("group", None), ("horizon", 1))
    plotinfo = dict(subplot=True, plotname="global forecast", plothlines=[0.005, -0.005], plotyhlines=[0.0])
    plotlines = dict(pred_return=dict(_name="pred return", color="tab:purple"), pred_price=dict(_plotskip=True),
                     pred_std=dict(_plotskip=True), pred_lo=dict(_plotskip=True), pred_hi=dict(_plotskip=True))

    def __init__(self) -> None:
        if not isinstance(self.p.group, ForecastGroup):
            raise ConfigError("GlobalForecast needs group=ForecastGroup(...) shared by the strategy's datas")
        self.name = getattr(self.data, "_name", "") or f"data{len(self.p.group.members)}"
        self.p.group.members.append(self)
        self._close = self.data.close

    @property
    def config(self):
        return self.p.group.config

    @property
    def folds(self):
        """The global folds, with ``bar`` as this data's bar: its first bar on or after the fold date."""
        dates = np.asarray(self.data.datetime.array, dtype=np.float64)
        out = []
        for record in self.p.group.walk.folds:
            calendar_date = _calendar_date(self.p.group, record)
            bar = int(np.searchsorted(dates, calendar_date, side="left")) if calendar_date is not None else record.bar
            if bar < len(dates):
                out.append(dataclasses.replace(record, bar=bar))
        return out

    def once(self, start: int, end: int) -> None:
        _write_lines(self, self.p.group.forecasts(self)[start:end], start, end)

    def next(self) -> None:
        lines = self.p.group.step(self)
        if lines is not None:
            _write_bar(self, lines)


def _calendar_date(group: ForecastGroup, record) -> float | None:
    if record.date is None:
        return None
    stamp = record.date if not isinstance(record.date, str) else datetime.datetime.fromisoformat(record.date)
    return bt.date2num(stamp)


def forecast_indicators(datas, model, kwargs: dict, scope: str = "per_ticker") -> dict:
    """One forecast indicator per data: per ticker (``forecast_indicator(model)``) or, with ``scope="global"``,
    ``GlobalForecast`` indicators sharing one ``ForecastGroup``."""
    if scope == "global":
        if not isinstance(model, str) or model.lower() not in INDICATORS:
            raise ConfigError(f"scope='global' trains one of puffin_bt's own model families; model={model!r} must be "
                              f"one of {', '.join(map(repr, INDICATORS))}")
        check_known(kwargs, (*FORECAST_OPTIONS, "store", "on_fold"), "forecast_kwargs")
        group = ForecastGroup(model.lower(), **kwargs)
        if len(datas) < 2:
            raise ConfigError("scope='global' trains one model across several tickers; with one ticker it is the "
                              "per-ticker model: use scope='per_ticker'")
        return {data: GlobalForecast(data, group=group, horizon=group.config.horizon) for data in datas}
    if scope != "per_ticker":
        raise ConfigError(f"scope={scope!r} is not known; use 'per_ticker' or 'global'")
    indicator = forecast_indicator(model)
    check_known(kwargs, indicator.params._getkeys(), "forecast_kwargs")  # the indicator's own params
    return {data: indicator(data, **kwargs) for data in datas}


def traded_forecast_indicators(datas, model, kwargs: dict, scope: str = "per_ticker") -> dict:
    """``forecast_indicators`` for a strategy that trades ``pred_return``: a volatility model's forecasts
    (``target="volatility"``) are refused before anything trains, whatever the strategy plots."""
    require_return_target(kwargs.get("target", "return"), "the strategy's forecast (model, forecast_kwargs)")
    return forecast_indicators(datas, model, kwargs, scope)


def forecast_indicator(model) -> type:
    """The forecast indicator class for ``model``: a model family's name (``"lstm"``, ...) or an indicator class with a
    ``pred_return`` line (a ``ForecastIndicator`` subclass or your own)."""
    if isinstance(model, str):
        if model.lower() not in INDICATORS:
            raise ConfigError(f"model={model!r} is not known; use one of {', '.join(map(repr, INDICATORS))} or a "
                              "forecast indicator class")
        return INDICATORS[model.lower()]
    if isinstance(model, type) and issubclass(model, bt.Indicator):
        if not issubclass(model, ForecastIndicator) and "pred_return" not in model.lines.getlinealiases():
            raise ConfigError(f"model={model.__name__} has no 'pred_return' line; use LSTMForecast/GRUForecast")
        return model
    raise ConfigError(f"model={model!r} is not a model family ({', '.join(map(repr, INDICATORS))}) or an indicator "
                      "class")


class ForecastPrice(bt.Indicator):
    """Draws a forecast indicator's ``pred_price`` on its data's price panel.

    ``ForecastPrice(forecast, plotmaster=data)`` is what ``ForecastThresholdStrategy``
    adds for its trade charts; it computes nothing new. The forecast the strategies trade and draw must be one of
    the return: a volatility model's (``target="volatility"``) is a ConfigError naming the fix.
    """

    lines = ("forecast_price",)
    params = (("plotmaster", None),)
    plotinfo = dict(subplot=False, plotname="forecast price")
    plotlines = dict(forecast_price=dict(color="tab:orange", ls="--", lw=1.0))

    def __init__(self) -> None:
        config = getattr(self.data, "config", None)
        require_return_target(getattr(config, "target", "return"), "the strategy's forecast (model, forecast_kwargs)")
        self.lines.forecast_price = self.data.pred_price
        if self.p.plotmaster is not None:
            self.plotinfo.plotmaster = self.p.plotmaster

    def _plotlabel(self):
        return []
