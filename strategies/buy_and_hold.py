"""Equal-weight buy-and-hold, the benchmark puffin_bt's backtests stand next to, and its volatility-managed
variant (``sizing="vol_target"``: Moreira & Muir 2017's test)."""

from __future__ import annotations

import math

import backtrader as bt

from puffin_bt.options import check_sizing

from .sleeves import Sleeves, affordable_shares, user_sizer
from .voltarget import VOL_TARGET_PARAMS, VolTargetSizing, outside_band


class BuyAndHold(VolTargetSizing, bt.Strategy):
    """Equal-weight buy-and-hold: buys each data at its bar ``start_bar`` (fills next open), then holds.

    ``backtest()`` sets ``start_bar`` to the first forecast bar, so the benchmark and the
    strategy both sit in cash through the walk-forward warm-up and the comparison is fair.

    The order is sized for the close with the commission included (any scheme: percentage, per
    share, per order), unless you added a sizer (``cerebro.addsizer``), which then sizes it. An order the broker
    rejects (the next open gapped up past the sleeve's cash, say) is sized again and sent
    at the next bar, with the cash then free, until it fills: the benchmark holds what it
    claims. A data it cannot hold at all (one share costs more than its sleeve) is listed in
    ``not_held`` with the reason, never shown as a 0% benchmark; ``entries`` says when and
    at what price each one was bought, and after how many rejected orders.

    ``sizing="vol_target"``: each data holds ``min(max_leverage x (1 - reserve), target_vol / predicted annualised
    volatility)`` of its sleeve (``1 / n`` of the capital plus its own P&L), resized when that moves by more than
    10% (``strategies.voltarget``: the volatility sources, ``vol_model`` / ``vol_kwargs``, ``vol_sources``,
    ``traded_value``). Without ``vol_model`` it sizes on the trailing 20-bar volatility.
    """

    params = (("reserve", 0.02), ("start_bar", 0), ("sizing", "equal"), *VOL_TARGET_PARAMS)

    def __init__(self) -> None:
        check_sizing("buy-and-hold", self.p.sizing)
        self.weight = (1.0 - self.p.reserve) / max(1, len(self.datas))
        self._init_vol_target()
        self.sleeves = Sleeves(self.datas)
        self.entries: dict[str, dict] = {}
        self.not_held: dict[str, str] = {}
        self._pending: dict = {}
        self._rejected: dict = {}

    def start(self) -> None:
        self.sleeves.start(self.broker.startingcash)

    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
        if self.p.sizing == "vol_target":
            self._next_vol_target()
            return
        now = self.datetime.datetime(0)
        for d in self.datas:
            if (d._name in self.entries or d._name in self.not_held or d in self._pending
                    or len(d) <= self.p.start_bar or d.datetime.datetime(0) != now):
                continue
            sleeve = self.broker.startingcash * self.weight
            budget = min(sleeve, self.broker.getcash())
            price = d.close[0]
            if user_sizer(self):
                order = self.buy(data=d)
                if order is not None:
                    self._pending[d] = order
                continue
            comminfo = self.broker.getcommissioninfo(d)
            size = affordable_shares(comminfo, budget, price)
            if size < 1:
                if affordable_shares(comminfo, sleeve, price) < 1:  # never affordable: say so once
                    self.not_held[d._name] = (f"one share ({price:.6g} on {d.datetime.date(0)}, commission "
                                              f"included) costs more than its sleeve of {sleeve:.6g} cash; "
                                              "raise the cash or hold fewer tickers")
                continue  # the cash is tied up elsewhere for now: try again next bar
            self._pending[d] = self.buy(data=d, size=size)

    def _next_vol_target(self) -> None:
        """Every bar: each data's vol-target share of its sleeve, ordered when it leaves the no-trade band."""
        now = self.datetime.datetime(0)
        for d in self.datas:
            if (d._name in self.not_held or d in self._pending or len(d) <= self.p.start_bar
                    or d.datetime.datetime(0) != now):
                continue
            weight = self.vol_target_weight_for(d, self.p.max_leverage * (1.0 - self.p.reserve))
            if math.isnan(weight):  # NaN: no volatility yet (fewer than 21 bars, a forecast still warming up)
                continue
            held = self.getposition(d).size
            shares = self.sleeves.size_for(d, weight, held, self.broker.getcommissioninfo(d))
            if outside_band(held, shares):
                self._pending[d] = self.order_target_size(d, target=shares)

    def notify_order(self, order) -> None:
        if order.status in (order.Submitted, order.Accepted):
            return
        d = order.data
        self._pending.pop(d, None)
        self._count_traded(order)
        if order.status == order.Completed:
            self.sleeves.filled(order)
            if d._name not in self.entries:  # the first fill; a vol-target position is resized after it
                self.entries[d._name] = {"date": str(bt.num2date(order.executed.dt).date()),
                                         "price": order.executed.price, "size": order.executed.size,
                                         "rejected_orders": self._rejected.get(d, 0)}
        else:  # Margin, Rejected, Canceled, Expired: size it again at the next bar
            self._rejected[d] = self._rejected.get(d, 0) + 1

    def stop(self) -> None:
        for d in self.datas:
            if d._name in self.entries or d._name in self.not_held:
                continue
            rejected = self._rejected.get(d, 0)
            self.not_held[d._name] = (f"{rejected} order(s) rejected by the broker and none filled before the data "
                                      "ended" if rejected else "its data ended before an order could fill")
