"""Trade predicted returns with entry/exit thresholds, one forecast indicator per data.

Long when ``pred_return > entry``; flat again when ``pred_return < -exit``
(optionally short on the mirror signals). Orders go in at the close of bar t and
fill at the open of bar t+1 (Backtrader's default, no cheat-on-close).
"""

from __future__ import annotations

import math

import backtrader as bt

from puffin_bt.adapters.indicators import FORECAST_OPTIONS, ForecastPrice, forecast_indicator
from puffin_bt.checks import check_known
from puffin_bt.options import OPTIONS, defaults


def threshold_target(pred: float, position: float, entry: float, exit: float, allow_short: bool,
                     weight: float) -> float:
    """The chapter's rule as a pure function: target weight given a forecast and the position.

    >>> threshold_target(0.006, 0, 0.005, 0.005, False, 0.5)   # flat, pred > +entry: long
    0.5
    >>> threshold_target(-0.006, 10, 0.005, 0.005, False, 0.5)  # long, pred < -exit: flat
    0.0
    """
    if pred > entry:
        return weight
    if allow_short and pred < -entry:
        return -weight
    if position > 0 and pred < -exit:
        return 0.0
    if position < 0 and pred > exit:
        return 0.0
    return math.copysign(weight, position) if position else 0.0


class ForecastThresholdStrategy(bt.Strategy):
    """The chapter's +-0.5% threshold strategy, on every data in the Cerebro.

    Params:
      - ``model``: ``"lstm"``, ``"gru"`` or a forecast indicator class.
      - ``forecast_kwargs``: dict passed to each indicator (lookback, retrain_every, epochs, ...).
      - ``entry`` / ``exit``: thresholds on ``pred_return`` (default 0.005 each).
      - ``allow_short``: also go short when ``pred_return < -entry``.
      - ``weight``: target weight per position as a fraction of portfolio value;
        None = equal weight ``(1 - reserve) / number of datas``.
      - ``reserve``: cash kept back from equal weighting so next-open gaps and
        commissions don't get orders rejected (default 0.02).
      - ``plot_forecast``: overlay the forecast price on each price panel.

    >>> cerebro.addstrategy(ForecastThresholdStrategy, model="gru")  # doctest: +SKIP
    """

    # entry, exit, allow_short, weight, reserve: the registry's trading options (puffin_bt.options)
    params = (("model", "lstm"), ("forecast_kwargs", None), *defaults("strategy").items(), ("plot_forecast", True))

    def __init__(self) -> None:
        p = self.p
        for name in defaults("strategy"):
            OPTIONS[name].check(getattr(p, name))
        indicator = forecast_indicator(p.model)
        kwargs = dict(p.forecast_kwargs or {})
        check_known({k: v for k, v in kwargs.items() if k not in ("store", "on_fold")}, FORECAST_OPTIONS,
                    "forecast_kwargs")
        self.forecasts = {}
        for data in self.datas:
            fc = indicator(data, **kwargs)
            fc.plotinfo.plothlines = [p.entry, -p.exit]
            fc.plotinfo.plotname = f"{data._name or 'data'} forecast"
            self.forecasts[data] = fc
            if p.plot_forecast:
                ForecastPrice(fc, plotmaster=data)
        self.weight = p.weight if p.weight is not None else (1.0 - p.reserve) / max(1, len(self.datas))
        self.trade_log: list[dict] = []
        self.orders_rejected: list[str] = []
        self.not_traded: dict[str, str] = {}  # ticker -> why a signal gave no order (a share costs too much)
        self._pending: dict = {}
        self._open_sizes: dict = {}

    def target_for(self, pred: float, position: float) -> float:
        """The target weight after seeing ``pred`` with a current position of sign ``position``."""
        p = self.p
        return threshold_target(pred, position, p.entry, p.exit, p.allow_short, self.weight)

    def prenext(self) -> None:
        # Tickers start on different dates: trade the ones that already have forecasts.
        self.next()

    def next(self) -> None:
        now = self.datetime.datetime(0)
        for data, fc in self.forecasts.items():
            if not len(data) or not len(fc) or data in self._pending:
                continue
            if data.datetime.datetime(0) != now:  # this data has no bar today (not started / ended)
                continue
            pred = fc.pred_return[0]
            if math.isnan(pred):
                continue
            size = self.getposition(data).size
            target = self.target_for(pred, size)
            if (target > 0) == (size > 0) and (target < 0) == (size < 0):
                continue
            order = self.order_target_percent(data, target=target)
            if order is not None:
                self._pending[data] = order
            elif size == 0 and data._name not in self.not_traded:  # a whole share is more than the position
                value = abs(target) * self.broker.getvalue()
                self.not_traded[data._name] = (f"one share ({data.close[0]:.6g} on {data.datetime.date(0)}) costs "
                                               f"more than a position of {value:.6g}; raise the cash or the weight")

    def notify_order(self, order) -> None:
        if order.status in (order.Submitted, order.Accepted):
            return
        self._pending.pop(order.data, None)
        if order.status in (order.Margin, order.Rejected):
            self.orders_rejected.append(f"{order.data._name}: {order.getstatusname()} on {self.datetime.date(0)}")

    def notify_trade(self, trade) -> None:
        if trade.justopened:
            self._open_sizes[trade.ref] = trade.size
            return
        if not trade.isclosed:
            return
        size = self._open_sizes.pop(trade.ref, None)
        exit_price = trade.price + trade.pnl / size if size else math.nan
        self.trade_log.append({
            "ticker": trade.data._name,
            "direction": "long" if trade.long else "short",
            "entry_date": bt.num2date(trade.dtopen),
            "exit_date": bt.num2date(trade.dtclose),
            "entry_price": trade.price,
            "exit_price": exit_price,
            "size": size,
            "bars": trade.barlen,
            "pnl": trade.pnl,
            "pnl_net": trade.pnlcomm,
            "commission": trade.commission,
            "return": (exit_price / trade.price - 1.0) * (1 if trade.long else -1) if size else math.nan,
        })
