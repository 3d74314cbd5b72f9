"""Per-ticker sleeves: each data trades its own share of the starting capital plus its own P&L.

A portfolio strategy that sizes every order on the whole portfolio's value lets the winners'
growth consume the cash the other tickers' signals need (the broker then refuses their orders).
With sleeves a signal is never lost to cash another position holds, and each ticker's result is
what the rule did on that ticker alone, comparable with its own buy-and-hold.
"""

from __future__ import annotations


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

    def size_for(self, data, weight: float, position_size: float) -> int:
        """Whole shares for a position of ``weight`` (signed) of the sleeve's value at the current close."""
        value = self.value(data, position_size)
        price = data.close[0]
        if value <= 0 or price <= 0:
            return 0
        shares = int(abs(weight) * value / price)
        return shares if weight >= 0 else -shares
