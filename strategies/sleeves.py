"""Per-ticker sleeves: each data trades its own share of the starting capital plus its own P&L.

A portfolio strategy that sizes every order on the whole portfolio's value lets the winners'
growth consume the cash the other tickers' signals need (the broker then refuses their orders).
With sleeves a signal is never lost to cash another position holds, and each ticker's result is
what the rule did on that ticker alone, comparable with its own buy-and-hold.

``affordable_shares`` sizes an entry so its cost plus the commission fit a budget under any Backtrader
commission scheme; ``user_sizer`` says whether the user added a sizer (``cerebro.addsizer``), which then wins.
"""

from __future__ import annotations

import math


def affordable_shares(comminfo, budget: float, price: float) -> int:
    """The most whole shares whose cost (``getoperationcost``: the price, or a future's margin) plus commission
    (``getcommission``: a percentage, a fixed amount per share, or any scheme a ``CommInfoBase`` subclass
    computes, such as a fixed fee per order) fit ``budget`` at ``price``."""
    if budget <= 0 or price <= 0:
        return 0
    shares = math.floor(budget / comminfo.getoperationcost(1, price))
    while shares > 0:
        cost = comminfo.getoperationcost(shares, price) + comminfo.getcommission(shares, price)
        if cost <= budget:
            return shares
        # Drop at least one share, at once all the shares the overshoot pays for.
        shares = min(shares - 1, math.floor(shares * budget / cost))
    return 0


def user_sizer(strategy) -> bool:
    """Whether the Cerebro running ``strategy`` has a sizer the user added (``addsizer``/``addsizer_byidx``)."""
    return bool(getattr(getattr(strategy, "cerebro", None), "sizers", None))


class Sleeves:
    """The cash of each data's sleeve; its value is that cash plus its position at the current close.

    ``start(capital)`` splits the capital equally; ``filled(order)`` books an executed order
    (price, size and commission) against its data's sleeve.
    """

    def __init__(self, datas) -> None:
        self.datas = list(datas)
        self.cash: dict = {}

    def start(self, capital: float) -> None:
        share = capital / max(1, len(self.datas))
        self.cash = {data: share for data in self.datas}

    def filled(self, order) -> None:
        executed = order.executed
        self.cash[order.data] -= executed.size * executed.price + executed.comm

    def value(self, data, position_size: float) -> float:
        return self.cash[data] + position_size * data.close[0]

    def size_for(self, data, weight: float, position_size: float, comminfo=None) -> int:
        """Whole shares for a position of ``weight`` (signed) of the sleeve's value at the current close; with the
        data's ``comminfo``, as many as fit that value with the commission paid (``affordable_shares``)."""
        value = self.value(data, position_size)
        price = data.close[0]
        if value <= 0 or price <= 0:
            return 0
        if comminfo is None:
            shares = int(abs(weight) * value / price)
        else:
            shares = affordable_shares(comminfo, abs(weight) * value, price)
        return shares if weight >= 0 else -shares
