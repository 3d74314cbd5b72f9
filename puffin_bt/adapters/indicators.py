"""Backtrader indicators that retrain an LSTM/GRU walk-forward inside the engine.

``ForecastIndicator`` (public base class; ``LSTMForecast`` / ``GRUForecast``) is a thin adapter
over ``walkforward.WalkForward``: ``once()`` (runonce) forecasts each fold with one batched
forward pass, ``next()`` (event-driven, live feeds, preload=False) follows the same schedule bar
by bar. Its params are the walk-forward options of ``puffin_bt.options``.
"""

from __future__ import annotations

import math
from array import array

import backtrader as bt
import numpy as np

from ..errors import ConfigError
from ..options import forecast_defaults
from ..walkforward import make_walk_forward, require_history

# Indicator params: the walk-forward options plus where results go.
FORECAST_PARAMS = (*forecast_defaults().items(), ("store", None), ("on_fold", None))
FORECAST_OPTIONS = tuple(forecast_defaults())


class ForecastIndicator(bt.Indicator):
    """Walk-forward RNN forecast of the next ``horizon``-bar return; subclass it (set ``cell``) or use
    ``LSTMForecast`` / ``GRUForecast``.

    Lines: ``pred_return`` (predicted simple return from this bar's close to
    ``horizon`` bars later) and ``pred_price`` (``close * (1 + pred_return)``).
    Bars before the first fold (``min_train`` bars) are NaN.

    ``store`` (a ``ForecastStore``) serves runonce forecasts from disk when the data
    and every model option match a previous run; event-driven modes always compute.

    Usage inside any strategy::

        self.fc = LSTMForecast(self.data, lookback=20, retrain_every=21, epochs=5)
        if self.fc.pred_return[0] > 0.005: self.buy()
    """

    cell = "lstm"
    lines = ("pred_return", "pred_price")
    params = FORECAST_PARAMS
    plotinfo = dict(subplot=True, plotname="forecast", plothlines=[0.005, -0.005], plotyhlines=[0.0])
    plotlines = dict(
        pred_return=dict(_name="pred return", color="tab:purple"),
        pred_price=dict(_plotskip=True),
    )

    def __init__(self) -> None:
        p = self.p
        on_fold = None
        if p.on_fold is not None:
            name = getattr(self.data, "_name", "") or "data"

            def on_fold(record, _name=name, _report=p.on_fold):
                _report(_name, record)

        exactbars = _exactbars(self)
        if exactbars is True or (isinstance(exactbars, int) and exactbars > 0):
            raise ConfigError(
                f"{type(self).__name__} retrains each fold on the whole history up to it, which "
                f"Cerebro(exactbars={exactbars!r}) does not keep; use exactbars=False (the default), -1 or -2"
            )
        try:
            self.walk = make_walk_forward(self.cell, on_fold, **{k: getattr(p, k) for k in FORECAST_OPTIONS})
        except ConfigError as exc:
            raise type(exc)(f"{type(self).__name__}: {exc}") from None
        self.config, self.schedule = self.walk.config, self.walk.schedule
        self._close = self.data.close if hasattr(self.data, "close") else self.data
        self._stored = None
        self.addminperiod(self.schedule.min_train)

    @property
    def folds(self):
        """The folds trained so far (``FoldRecord``: bar, date, train range, losses, seconds)."""
        return self.walk.folds

    def _plotlabel(self):
        return [f"{self.cell.upper()} lb={self.p.lookback} every={self.p.retrain_every}"]

    def _dates(self):
        return _LazyDates(self.data)

    def once(self, start: int, end: int) -> None:
        if not self.walk.folds and self._stored is None:
            # Preloaded: the whole length is known, so a series that never reaches a fold is an error.
            require_history(getattr(self.data, "_name", "") or "data", len(self._close.array), self.schedule.min_train)
        # The array holds the whole preloaded series, future included: WalkForward
        # slices it to each fold's end before training, and each forecast window ends at its bar.
        if self.p.store is not None:
            # Stored forecasts are keyed by the whole series: any change to any bar is a miss.
            if self._stored is None:
                closes_all = np.asarray(self._close.array, dtype=np.float64)
                date_numbers = np.asarray(self.data.datetime.array) if hasattr(self.data, "datetime") else None
                self._stored = self.p.store.forecasts(self.walk, closes_all, self._dates(), date_numbers)
            preds = self._stored[start:end]
        else:
            # Cold folds of the whole preloaded series are trained together from the first call
            # (oncestart asks for one bar): WalkForward cuts each fold's history at its own bar.
            closes_all = np.asarray(self._close.array, dtype=np.float64)
            preds = self.walk.forecast_range(closes_all, start, end, self._dates(), ahead=len(closes_all))
        # Written slice by slice (Backtrader sized the lines for every bar before calling once).
        pred_return = np.expm1(preds)
        closes = np.asarray(self._close.array[start:end], dtype=np.float64)
        self.lines.pred_return.array[start:end] = array("d", pred_return.tobytes())
        self.lines.pred_price.array[start:end] = array("d", (closes * (1.0 + pred_return)).tobytes())

    def next(self) -> None:
        bar = len(self) - 1
        if self.schedule.is_fold_bar(bar):
            history = np.asarray(self._close.get(size=bar + 1), dtype=np.float64)
        else:
            history = np.asarray(self._close.get(size=self.config.lookback + 1), dtype=np.float64)
        if self.schedule.is_fold_bar(bar):
            date = self.data.datetime.datetime(0) if hasattr(self.data, "datetime") else None
            self.walk.train_fold(history, date)
        pred_return = math.expm1(self.walk.forecast_tail(history))
        self.lines.pred_return[0] = pred_return
        self.lines.pred_price[0] = self._close[0] * (1.0 + pred_return)


def _exactbars(indicator):
    """The ``exactbars`` setting of the Cerebro the indicator runs in (False when unknown)."""
    strategy = bt.metabase.findowner(indicator, bt.Strategy)
    cerebro = getattr(strategy, "cerebro", None) or getattr(strategy, "env", None)
    return getattr(getattr(cerebro, "p", None), "exactbars", False)


class _LazyDates:
    """Bar index -> datetime of a data feed, converted only for the bars asked for."""

    def __init__(self, data) -> None:
        self._array = data.datetime.array if hasattr(data, "datetime") else None

    def __getitem__(self, bar: int):
        if self._array is None:
            return None
        return bt.num2date(self._array[bar])


class LSTMForecast(ForecastIndicator):
    """Walk-forward LSTM forecast indicator (lines ``pred_return``, ``pred_price``)."""

    cell = "lstm"


class GRUForecast(ForecastIndicator):
    """Walk-forward GRU forecast indicator (lines ``pred_return``, ``pred_price``)."""

    cell = "gru"


_ForecastIndicator = ForecastIndicator  # the name before it was public
INDICATORS = {"lstm": LSTMForecast, "gru": GRUForecast}


def forecast_indicator(model) -> type:
    """The forecast indicator class for ``model``: ``"lstm"``, ``"gru"`` or an indicator class with a
    ``pred_return`` line (a ``ForecastIndicator`` subclass or your own)."""
    if isinstance(model, str):
        if model.lower() not in INDICATORS:
            raise ConfigError(f"model={model!r} is not known; use 'lstm', 'gru' or a forecast indicator class")
        return INDICATORS[model.lower()]
    if isinstance(model, type) and issubclass(model, bt.Indicator):
        if not issubclass(model, ForecastIndicator) and "pred_return" not in model.lines.getlinealiases():
            raise ConfigError(f"model={model.__name__} has no 'pred_return' line; use LSTMForecast/GRUForecast")
        return model
    raise ConfigError(f"model={model!r} is not 'lstm', 'gru' or an indicator class")


class ForecastPrice(bt.Indicator):
    """Draws a forecast indicator's ``pred_price`` on its data's price panel.

    ``ForecastPrice(forecast, plotmaster=data)`` is what ``ForecastThresholdStrategy``
    adds for its trade charts; it computes nothing new.
    """

    lines = ("forecast_price",)
    params = (("plotmaster", None),)
    plotinfo = dict(subplot=False, plotname="forecast price")
    plotlines = dict(forecast_price=dict(color="tab:orange", ls="--", lw=1.0))

    def __init__(self) -> None:
        self.lines.forecast_price = self.data.pred_price
        if self.p.plotmaster is not None:
            self.plotinfo.plotmaster = self.p.plotmaster

    def _plotlabel(self):
        return []
