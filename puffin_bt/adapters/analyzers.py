"""Backtrader analyzers that puffin_bt's backtests add to a Cerebro."""

from __future__ import annotations

import backtrader as bt
import pandas as pd


class SleeveValue(bt.Analyzer):
    """Mark-to-market value of each data's sleeve (its share of the starting cash plus its
    realised and open P&L net of commissions) and whether it held a position, per bar.
    The sleeves add up to the portfolio value."""

    def start(self) -> None:
        n = max(1, len(self.strategy.datas))
        self.alloc = self.strategy.broker.startingcash / n
        self.realized = {d: 0.0 for d in self.strategy.datas}
        self.open_trades: dict = {d: {} for d in self.strategy.datas}
        # Dates, values and held flags apart: a ticker may be named anything ('date', 'X__held').
        self.dates: list = []
        self.values: list = []
        self.helds: list = []

    def notify_trade(self, trade) -> None:
        book = self.open_trades[trade.data]
        if trade.isclosed:
            book.pop(trade.ref, None)
            self.realized[trade.data] += trade.pnlcomm
        else:
            book[trade.ref] = trade

    def next(self) -> None:
        values, helds = [], []
        for d in self.strategy.datas:
            value = self.alloc + self.realized[d]
            held = 0.0
            if len(d):
                for trade in self.open_trades[d].values():
                    value += trade.size * (d.close[0] - trade.price) - trade.commission
                held = float(self.strategy.getposition(d).size != 0)
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
