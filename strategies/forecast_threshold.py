"""Trade predicted returns with entry/exit thresholds, one forecast indicator per data.

Long when ``pred_return > entry``; flat again when ``pred_return < -exit``
(optionally short on the mirror signals). Orders go in at the close of bar t and
fill at the open of bar t+1 (Backtrader's default, no cheat-on-close). Each data trades its
own sleeve of the capital (``sleeves.Sleeves``).
"""

from __future__ import annotations

import math
import sys

import backtrader as bt
import numpy as np

from puffin_bt.adapters.indicators import ForecastPrice, traded_forecast_indicators
from puffin_bt.errors import ConfigError
from puffin_bt.options import OPTIONS, defaults

from .sleeves import Sleeves, user_sizer
from .voltarget import VOL_MODEL_PARAMS, VolTargetSizing, outside_band


def threshold_target(pred: float, position: float, entry: float, exit: float, allow_short: bool,
                     weight: float) -> float:
    """The chapter's rule as a pure function: target weight given a forecast and the position.

    >>> threshold_target(0.006, 0, 0.005, 0.005, False, 0.5)   # flat, pred > +entry: long
    0.5
    >>> threshold_target(-0.006, 10, 0.005, 0.005, False, 0.5)  # long, pred < -exit: flat
    0.0
    """
    return interval_target(pred, pred, position, entry, exit, allow_short, weight)  # an interval of one point


def interval_target(lo: float, hi: float, position: float, entry: float, exit: float, allow_short: bool,
                    weight: float) -> float:
    """The interval rule as a pure function: long only when the whole prediction interval clears the entry
    threshold (``pred_lo > entry``), flat when it lies below ``-exit`` (``pred_hi < -exit``); shorts mirror.

    >>> interval_target(0.006, 0.02, 0, 0.005, 0.005, False, 0.5)    # the interval clears +entry: long
    0.5
    >>> interval_target(-0.001, 0.02, 0, 0.005, 0.005, False, 0.5)   # pred may be high, the interval does not clear
    0.0
    """
    if lo > entry:
        return weight
    if allow_short and hi < -entry:
        return -weight
    if position > 0 and hi < -exit:
        return 0.0
    if position < 0 and lo > exit:
        return 0.0
    return math.copysign(weight, position) if position else 0.0


class TradeLog:
    """A strategy mixin: one row per closed round trip in ``trade_log`` (what trades.csv holds), and at the end
    of the run the orders the broker rejected (``orders_rejected``), counted on stderr with the first reason."""

    def stop(self) -> None:
        if getattr(self, "orders_rejected", None):  # said where the user looks, not only in metrics.json
            first = self.orders_rejected[0]
            print(f"{type(self).__name__}: {len(self.orders_rejected)} order(s) rejected by the broker; the first: "
                  f"{first['ticker']} on {first['date']} ({first['status']}: {first['reason']})", file=sys.stderr)

    def _init_trade_log(self) -> None:
        self.trade_log: list[dict] = []
        self._open_sizes: dict = {}

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


class ForecastThresholdStrategy(VolTargetSizing, TradeLog, bt.Strategy):
    """The chapter's +-0.5% threshold strategy, on every data in the Cerebro.

    Params:
      - ``model``: ``"lstm"``, ``"gru"`` or a forecast indicator class.
      - ``forecast_kwargs``: dict passed to each indicator (lookback, retrain_every, epochs, ...).
      - ``entry`` / ``exit``: thresholds on ``pred_return`` (default 0.005 each).
      - ``allow_short``: also go short when ``pred_return < -entry``.
      - ``rule``: ``"threshold"`` (the chapter's, on ``pred_return``) or ``"interval"`` (long when
        ``pred_lo > entry``, flat when ``pred_hi < -exit``: needs the indicators' ``interval``).
      - ``sizing``: ``"equal"`` (``weight`` of the sleeve), ``"volatility"`` (scaled down by the predicted
        volatility over its median so far: the interval's half-width, else the ensemble's spread, else the
        last 20 returns' standard deviation), ``"confidence"`` (scaled by ``|pred_return|`` / interval
        width); never above ``weight``; or ``"vol_target"``: ``min(max_leverage x weight, target_vol /
        predicted annualised volatility)`` of the sleeve, the direction from the rule, resized while held when
        that moves by more than 10% (``strategies.voltarget``: its volatility sources, first ``vol_model``).
      - ``vol_model`` / ``vol_kwargs``: a volatility forecast (a model family, built with ``target="volatility"``,
        or an indicator class with a ``pred_vol`` line) that sizes the positions with ``sizing="vol_target"``
        while ``model`` gives their direction.
      - ``weight``: the share of its sleeve a position takes; None = ``1 - reserve``.
      - ``reserve``: share of each sleeve kept in cash so next-open gaps and commissions
        don't get orders rejected (default 0.02).
      - ``plot_forecast``: overlay the forecast price on each price panel.

    Sizing, per-ticker sleeves: each data trades its own ``1 / n`` of the starting cash plus its
    own realised and open P&L (net of commissions). An entry buys ``weight x sleeve value /
    close`` whole shares at the next open (fewer when the commission would not fit: any scheme,
    percentage, per share or per order), so one ticker's growth never takes the cash another
    ticker's signal needs, and each ticker's result is the rule's on that ticker alone. Orders the
    broker still refuses (a gap beyond the reserve) are listed in ``orders_rejected`` with why, and
    counted on stderr at the end of the run with the first reason.

    A sizer you add (``cerebro.addsizer``) wins: it sizes every entry, and ``weight``, ``reserve``
    and ``sizing`` are not used; exits close the whole position.

    >>> cerebro.addstrategy(ForecastThresholdStrategy, model="gru")  # doctest: +SKIP
    """

    # entry, exit, allow_short, weight, reserve: the registry's trading options (puffin_bt.options)
    params = (("model", "lstm"), ("forecast_kwargs", None), ("scope", OPTIONS["scope"].default),
              *defaults("strategy").items(), *VOL_MODEL_PARAMS, ("plot_forecast", True))

    def __init__(self) -> None:
        p = self.p
        for name in defaults("strategy"):
            OPTIONS[name].check(getattr(p, name))
        OPTIONS["scope"].check(p.scope)
        kwargs = dict(p.forecast_kwargs or {})
        if (p.rule == "interval" or p.sizing == "confidence") and kwargs.get("interval") is None and \
                isinstance(p.model, str):
            what = "rule='interval'" if p.rule == "interval" else "sizing='confidence'"
            raise ConfigError(f"{what} trades on the prediction interval: give the forecasts one, e.g. "
                              "forecast_kwargs={'interval': 0.8} (CLI --interval 0.8)")
        self.forecasts = traded_forecast_indicators(self.datas, p.model, kwargs, p.scope)
        for data, fc in self.forecasts.items():
            fc.plotinfo.plothlines = [p.entry, -p.exit]
            fc.plotinfo.plotname = f"{data._name or 'data'} forecast"
            if p.plot_forecast:
                ForecastPrice(fc, plotmaster=data)
        self.weight = p.weight if p.weight is not None else 1.0 - p.reserve
        self.sleeves = Sleeves(self.datas)
        self._vols: dict = {data: [] for data in self.datas}  # predicted volatility seen so far, per data
        self.orders_rejected: list[dict] = []
        self.not_traded: dict[str, str] = {}  # ticker -> why a signal gave no order (a share costs too much)
        self._pending: dict = {}
        self._sized_by_user = user_sizer(self)
        self._init_trade_log()
        self._init_vol_target(self.forecasts, p.scope)

    def target_for(self, pred: float, position: float, lo: float = math.nan, hi: float = math.nan) -> float:
        """The target weight after seeing ``pred`` (and its interval) with a current position of sign ``position``."""
        p = self.p
        if p.rule == "interval":
            return interval_target(lo, hi, position, p.entry, p.exit, p.allow_short, self.weight)
        return threshold_target(pred, position, p.entry, p.exit, p.allow_short, self.weight)

    def scale_for(self, data, fc, pred: float, lo: float, hi: float) -> float:
        """The sizing's multiplier of the target weight, in [0, 1]."""
        if self.p.sizing == "confidence":
            width = hi - lo
            return min(1.0, abs(pred) / width) if width > 0 else 1.0
        if self.p.sizing == "volatility":
            vol = (hi - lo) / 2 if math.isfinite(hi - lo) else getattr(fc, "pred_std", [math.nan])[0]
            if not math.isfinite(vol):
                closes = np.asarray(data.close.get(size=21), dtype=float)
                vol = float(np.std(np.diff(closes) / closes[:-1])) if len(closes) > 2 else math.nan
            seen = self._vols[data]
            if not math.isfinite(vol) or vol <= 0:
                return 1.0
            seen.append(vol)
            return min(1.0, float(np.median(seen)) / vol)
        return 1.0

    def start(self) -> None:
        self.sleeves.start(self.broker.startingcash)

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
            lo, hi = (fc.pred_lo[0], fc.pred_hi[0]) if hasattr(fc.lines, "pred_lo") else (math.nan, math.nan)
            size = self.getposition(data).size
            target = self.target_for(pred, size, lo, hi)
            vol_target = self.p.sizing == "vol_target" and not self._sized_by_user
            if vol_target and target:
                scale = self.vol_target_weight_for(data, self.p.max_leverage * self.weight) / self.weight
                if math.isnan(scale):  # no volatility yet: wait for one
                    continue
            else:
                scale = self.scale_for(data, fc, pred, lo, hi) if self.p.sizing not in ("equal", "vol_target") else 1.0
            same_side = (target > 0) == (size > 0) and (target < 0) == (size < 0)
            if same_side and not (vol_target and target):
                continue
            if self._sized_by_user:
                order = self._user_sized_order(data, target, size)
            else:
                shares = self.sleeves.size_for(data, target * scale, size, self.broker.getcommissioninfo(data))
                if same_side and not outside_band(size, shares):
                    continue  # vol_target: a held position is resized only outside the no-trade band
                order = self.order_target_size(data, target=shares)
            if order is not None:
                self._pending[data] = order
            elif size == 0 and target != 0 and data._name not in self.not_traded:  # a share is more than the position
                value = abs(target * scale) * self.sleeves.value(data, size)
                self.not_traded[data._name] = (f"one share ({data.close[0]:.6g} on {data.datetime.date(0)}) costs "
                                               f"more than a position of {value:.6g}; raise the cash or the weight")

    def _user_sized_order(self, data, target: float, size: float):
        """The user's sizer sizes the entry; an exit closes the position; a reversal closes it and enters."""
        if target == 0:
            return self.close(data)
        if size:
            self.close(data)
        return self.buy(data) if target > 0 else self.sell(data)

    def notify_order(self, order) -> None:
        if order.status in (order.Submitted, order.Accepted, order.Partial):
            return
        self._pending.pop(order.data, None)
        self._count_traded(order)
        if order.status == order.Completed:
            self.sleeves.filled(order)
        elif order.status in (order.Margin, order.Rejected):
            self.orders_rejected.append({
                "ticker": order.data._name, "date": str(self.datetime.date(0)), "status": order.getstatusname(),
                "size": order.created.size, "price": order.data.close[0], "cash": self.broker.getcash(),
                "reason": ("not enough cash at the next open (the order's value plus commission exceeds the cash)"
                           if order.status == order.Margin else "refused by the broker"),
            })
