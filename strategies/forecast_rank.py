"""Rank the tickers by predicted return and hold the best: a cross-sectional strategy on forecast indicators.

From the first bar with a forecast on, every ``rebalance_every`` bars the tickers that have a forecast are ranked
by ``pred_return``; the
portfolio holds the ``top_k`` (and shorts the ``bottom_k``), equal weight, and replaces at most
``max_drop`` names per rebalance (Qlib's TopkDropout turnover cap). Orders go in at the close and
fill at the next open.
"""

from __future__ import annotations

import math

import backtrader as bt

from puffin_bt.adapters.indicators import ForecastPrice, traded_forecast_indicators
from puffin_bt.errors import ConfigError
from puffin_bt.options import OPTIONS, check_sizing, names

from .forecast_threshold import TradeLog
from .sleeves import affordable_shares, user_sizer
from .voltarget import VOL_MODEL_PARAMS, VolTargetSizing, outside_band


def rank_targets(scores: dict, held_long: list, held_short: list, top_k: int, bottom_k: int,
                 max_drop: int | None) -> tuple[list, list]:
    """The names to hold long and short after a rebalance (pure function).

    ``scores``: name -> predicted return of the names that have a forecast now. The best ``top_k``
    are wanted long and the worst ``bottom_k`` short; held names that fell out are replaced worst
    first, at most ``max_drop`` per side; held names without a forecast are dropped.

    >>> rank_targets({"A": 0.03, "B": 0.02, "C": -0.01, "D": 0.05}, ["A", "C"], [], 2, 0, max_drop=1)
    (['A', 'D'], [])
    """
    ranked = sorted(scores, key=lambda name: scores[name], reverse=True)
    longs = _side(ranked, [n for n in held_long if n in scores], top_k, max_drop, scores, best_first=True)
    taken = set(longs)
    shorts = _side([n for n in reversed(ranked) if n not in taken], [n for n in held_short if n in scores],
                   bottom_k, max_drop, scores, best_first=False)
    return longs, shorts


def _side(ranked: list, held: list, k: int, max_drop: int | None, scores: dict, best_first: bool) -> list:
    if k == 0:
        return []
    wanted = ranked[:k]
    # held names outside the wanted set, the worst (for this side) first
    leaving = sorted((n for n in held if n not in wanted), key=lambda n: scores[n], reverse=not best_first)
    drop = leaving if max_drop is None else leaving[:max_drop]
    keep = [n for n in held if n not in drop]
    joining = [n for n in wanted if n not in keep][: k - len(keep)]
    return keep + joining


class ForecastRankStrategy(VolTargetSizing, TradeLog, bt.Strategy):
    """Cross-sectional: hold the ``top_k`` tickers by predicted return (short the ``bottom_k``).

    Params:
      - ``model``, ``forecast_kwargs``, ``plot_forecast``: as ``ForecastThresholdStrategy``'s.
      - ``top_k``: names held long (fewer than the tickers); ``bottom_k``: names held short (default 0).
      - ``rebalance_every``: bars between rebalances (default 5); the first is at the first bar with a forecast.
      - ``max_drop``: at most this many names replaced per rebalance and side (None: no cap).
      - ``reserve``: share of the portfolio kept in cash for next-open gaps and commissions.

    Sizing: a sizer the user added (``cerebro.addsizer``) sizes every entry. Otherwise, as Qlib's TopkDropout:
    the names bought at a rebalance share equally the cash there will be after its exits (net of their
    commission), less the ``reserve`` (at the start: ``(1 - reserve) / (top_k + bottom_k)`` of the capital each),
    each order's own commission included under any commission scheme; names kept are not resized. A buy the
    broker still refuses (the next open gapped past the reserve) is sized again from the cash then free and sent
    at the next bar; rejected orders are counted on stderr at the end of the run. Tickers without a forecast
    yet are not ranked; a held ticker whose forecast is gone (its data ended) is closed.
    The forecasts can be per ticker or global (``scope``, through ``forecast_kwargs``' indicator).

    ``sizing="vol_target"``: each name held takes ``min(max_leverage x (1 - reserve), target_vol / predicted
    annualised volatility)`` of its slot, ``1 / (top_k + bottom_k)`` of the portfolio's value, and is resized on
    any bar when that moves by more than 10% (``strategies.voltarget``: the volatility sources, ``vol_model`` /
    ``vol_kwargs`` for a volatility forecast beside the return forecast that ranks).

    >>> cerebro.addstrategy(ForecastRankStrategy, top_k=2, rebalance_every=5)  # doctest: +SKIP
    """

    params = (("model", "lstm"), ("forecast_kwargs", None), ("scope", OPTIONS["scope"].default),
              *((n, OPTIONS[n].default) for n in names("rank")), *VOL_MODEL_PARAMS, ("plot_forecast", True))

    def __init__(self) -> None:
        p = self.p
        for name in names("rank"):
            OPTIONS[name].check(getattr(p, name))
        check_sizing("rank", p.sizing)
        if p.top_k + p.bottom_k >= len(self.datas):
            raise ConfigError(f"top_k={p.top_k} and bottom_k={p.bottom_k} leave nothing to choose from among "
                              f"{len(self.datas)} ticker(s); hold fewer names than there are tickers")
        OPTIONS["scope"].check(p.scope)
        self.forecasts = traded_forecast_indicators(self.datas, p.model, dict(p.forecast_kwargs or {}), p.scope)
        for data, fc in self.forecasts.items():
            fc.plotinfo.plotname = f"{data._name or 'data'} forecast"
            if p.plot_forecast:
                ForecastPrice(fc, plotmaster=data)
        self.orders_rejected: list[dict] = []
        self.rebalances: list[dict] = []
        self._bars = 0  # bars since the first bar with a forecast: the rebalance clock
        self._retry: list = []  # (side, data) of buys refused for cash, sent again at the next bar
        self._sized_by_user = user_sizer(self)
        self._init_trade_log()
        self._init_vol_target(self.forecasts, p.scope)

    def prenext(self) -> None:
        self.next()  # tickers start on different dates: rank those that already have forecasts

    def next(self) -> None:
        now = self.datetime.datetime(0)
        scores = {}
        for data, fc in self.forecasts.items():
            if len(data) and len(fc) and data.datetime.datetime(0) == now and not math.isnan(fc.pred_return[0]):
                scores[data] = fc.pred_return[0]
        if not scores and not self._bars:
            return  # the clock starts at the first forecast, not at the first bar of data
        self._bars += 1
        if (self._bars - 1) % self.p.rebalance_every:
            self._send_again()
            self._resize_held()
            return
        self._retry = []
        if not scores:
            return
        held_long = [d for d in self.datas if self.getposition(d).size > 0]
        held_short = [d for d in self.datas if self.getposition(d).size < 0]
        longs, shorts = rank_targets(scores, held_long, held_short, self.p.top_k, self.p.bottom_k, self.p.max_drop)
        self.rebalances.append({"date": now, "long": [d._name for d in longs], "short": [d._name for d in shorts]})
        cash = self.broker.getcash()
        for data in self.datas:  # exits first: their cash, net of their commission, is there when the entries fill
            size = self.getposition(data).size
            if (size > 0 and data not in longs) or (size < 0 and data not in shorts):
                cash += size * data.close[0] - self._commission(data, size)
                self.order_target_size(data, target=0)
        entries = [(side, d) for side, chosen in ((1, longs), (-1, shorts)) for d in chosen
                   if self.getposition(d).size * side <= 0 and d.close[0] > 0]
        self._resize_held([d for side, chosen in ((1, longs), (-1, shorts)) for d in chosen
                           if self.getposition(d).size * side > 0])
        if not entries:
            return
        # As Qlib's TopkDropout: the cash there will be after the exits, less the reserve, split equally among
        # the names bought (kept names are not resized, so one that grew never crowds the entries out).
        budget = (1.0 - self.p.reserve) * max(0.0, cash) / len(entries)
        for side, data in entries:
            self._enter(side, data, budget)

    def _commission(self, data, size: float) -> float:
        return self.broker.getcommissioninfo(data).getcommission(size, data.close[0])

    def _enter(self, side: int, data, budget: float) -> None:
        """Enter ``data`` long (``side`` 1) or short (-1): sized by the user's sizer when there is one, else the
        whole shares ``budget`` buys at the close with the order's commission, under any commission scheme."""
        if self._sized_by_user:  # a held position on the other side was closed with the exits
            (self.buy if side > 0 else self.sell)(data)
            return
        if self.p.sizing == "vol_target":
            shares = self._vol_target_shares(data)
            if shares is None:  # no volatility yet: the name waits for the next rebalance
                return
        else:
            shares = affordable_shares(self.broker.getcommissioninfo(data), budget, data.close[0])
        self.order_target_size(data, target=side * shares)

    def _vol_target_shares(self, data) -> int | None:
        """The whole shares of ``data``'s vol-target position (its share of one slot of the portfolio's value, with
        the order's commission); None while there is no volatility to size on."""
        weight = self.vol_target_weight_for(data, self.p.max_leverage * (1.0 - self.p.reserve))
        budget = weight * self.broker.getvalue() / (self.p.top_k + self.p.bottom_k)
        if math.isnan(budget):
            return None
        return affordable_shares(self.broker.getcommissioninfo(data), budget, data.close[0])

    def _resize_held(self, held: list | None = None) -> None:
        """vol_target: the held names (all, or ``held``) whose target moved outside the no-trade band, resized."""
        if self.p.sizing != "vol_target" or self._sized_by_user:
            return
        now = self.datetime.datetime(0)
        for data in held if held is not None else self.datas:
            size = self.getposition(data).size
            if not size or not len(data) or data.datetime.datetime(0) != now:
                continue
            shares = self._vol_target_shares(data)
            if shares is None:
                continue
            shares = shares if size > 0 else -shares
            if outside_band(size, shares):
                self.order_target_size(data, target=shares)

    def _send_again(self) -> None:
        """Buys the broker refused for cash at the last open: sized again from the cash free now."""
        retry, self._retry = self._retry, []
        retry = [(side, d) for side, d in retry if len(d) and self.getposition(d).size == 0]
        if not retry:
            return
        budget = (1.0 - self.p.reserve) * max(0.0, self.broker.getcash()) / len(retry)
        for side, data in retry:
            self._enter(side, data, budget)

    def notify_order(self, order) -> None:
        self._count_traded(order)
        if order.status == order.Margin and self.getposition(order.data).size == 0:
            self._retry.append((1 if order.isbuy() else -1, order.data))
        if order.status in (order.Margin, order.Rejected):
            self.orders_rejected.append({
                "ticker": order.data._name, "date": str(self.datetime.date(0)), "status": order.getstatusname(),
                "size": order.created.size, "price": order.data.close[0], "cash": self.broker.getcash(),
                "reason": "not enough cash at the next open" if order.status == order.Margin else "refused by the broker",
            })
