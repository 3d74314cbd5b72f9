"""Equal-weight buy-and-hold, the benchmark puffin_bt's backtests stand next to."""

from __future__ import annotations

import backtrader as bt

from .sleeves import affordable_shares, user_sizer


class BuyAndHold(bt.Strategy):
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
    """

    params = (("reserve", 0.02), ("start_bar", 0))

    def __init__(self) -> None:
        self.weight = (1.0 - self.p.reserve) / max(1, len(self.datas))
        self.entries: dict[str, dict] = {}
        self.not_held: dict[str, str] = {}
        self._pending: dict = {}
        self._rejected: dict = {}

    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
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

    def notify_order(self, order) -> None:
        if order.status in (order.Submitted, order.Accepted):
            return
        d = order.data
        self._pending.pop(d, None)
        if order.status == order.Completed:
            self.entries[d._name] = {"date": str(bt.num2date(order.executed.dt).date()), "price": order.executed.price,
                                     "size": order.executed.size, "rejected_orders": self._rejected.get(d, 0)}
        else:  # Margin, Rejected, Canceled, Expired: size it again at the next bar
            self._rejected[d] = self._rejected.get(d, 0) + 1

    def stop(self) -> None:
        for d in self.datas:
            if d._name in self.entries or d._name in self.not_held:
                continue
            rejected = self._rejected.get(d, 0)
            self.not_held[d._name] = (f"{rejected} order(s) rejected by the broker and none filled before the data "
                                      "ended" if rejected else "its data ended before an order could fill")
