"""Equal-weight buy-and-hold, the benchmark puffin_bt's backtests stand next to."""

from __future__ import annotations

import backtrader as bt


class BuyAndHold(bt.Strategy):
    """Equal-weight buy-and-hold: buys each data at its bar ``start_bar`` (fills next open), then holds.

    ``backtest()`` sets ``start_bar`` to the first forecast bar, so the benchmark and the
    strategy both sit in cash through the walk-forward warm-up and the comparison is fair.
    """

    params = (("reserve", 0.02), ("start_bar", 0))

    def __init__(self) -> None:
        self.weight = (1.0 - self.p.reserve) / max(1, len(self.datas))
        self.bought: set = set()

    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
        for d in self.datas:
            if (d not in self.bought and len(d) > self.p.start_bar
                    and d.datetime.datetime(0) == self.datetime.datetime(0)):
                size = int(self.broker.startingcash * self.weight / d.close[0])
                if size > 0:
                    self.buy(data=d, size=size)
                self.bought.add(d)
