"""Backtrader analyzers that puffin_bt's backtests add to a Cerebro."""

from __future__ import annotations

import backtrader as bt
import pandas as pd

__all__ = ["SleeveValue"]


class SleeveValue(bt.Analyzer):
    """Mark-to-market value of each data's sleeve (its share of the starting cash plus its
    realised and open P&L net of commissions) and whether it held a position, per bar.
    The sleeves add up to the portfolio value.

    Booked from the orders' fills, not from Backtrader's trade notifications: those come only when a trade opens
    and closes (as copies), so a position resized while open (``sizing="vol_target"``) would be valued at its
    opening size. Each fill adds its realised P&L net of commission (``order.executed.pnl - comm``, under the
    data's commission scheme); the open position adds its ``profitandloss`` at the close."""

    def start(self) -> None:
        n = max(1, len(self.strategy.datas))
        self.alloc = self.strategy.broker.startingcash / n
        self.realized = {d: 0.0 for d in self.strategy.datas}
        self._booked: dict = {}  # order ref -> realised P&L net of commission already added (partial fills)
        # Dates, values and held flags apart: a ticker may be named anything ('date', 'X__held').
        self.dates: list = []
        self.values: list = []
        self.helds: list = []

    def notify_order(self, order) -> None:
        if order.status not in (order.Partial, order.Completed) or order.data not in self.realized:
            return
        net = order.executed.pnl - order.executed.comm  # cumulative over the order's fills
        self.realized[order.data] += net - self._booked.get(order.ref, 0.0)
        if order.status == order.Completed:
            self._booked.pop(order.ref, None)
        else:
            self._booked[order.ref] = net

    def next(self) -> None:
        values, helds = [], []
        for d in self.strategy.datas:
            value = self.alloc + self.realized[d]
            held = 0.0
            if len(d):
                position = self.strategy.getposition(d)
                if position.size:
                    comminfo = self.strategy.broker.getcommissioninfo(d)
                    value += comminfo.profitandloss(position.size, position.price, d.close[0])
                held = float(position.size != 0)
            values.append(value)
            helds.append(held)
        self.dates.append(self.strategy.datetime.datetime(0))
        self.values.append(values)
        self.helds.append(helds)

    def _frame(self, rows: list) -> pd.DataFrame:
        names = [d._name for d in self.strategy.datas]
        return pd.DataFrame(rows, index=pd.Index(self.dates, name="date"), columns=names)

    def get_analysis(self) -> pd.DataFrame:
        """Each sleeve's value per bar (one column per data, named as the data)."""
        return self._frame(self.values)

    def held(self) -> pd.DataFrame:
        """1.0 where the sleeve held a position at the bar's close, else 0.0 (columns as ``get_analysis``)."""
        return self._frame(self.helds)
