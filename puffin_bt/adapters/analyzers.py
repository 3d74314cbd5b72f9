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
        self.rows: list = []

    def notify_trade(self, trade) -> None:
        book = self.open_trades[trade.data]
        if trade.isclosed:
            book.pop(trade.ref, None)
            self.realized[trade.data] += trade.pnlcomm
        else:
            book[trade.ref] = trade

    def next(self) -> None:
        row = {"date": self.strategy.datetime.datetime(0)}
        for d in self.strategy.datas:
            value = self.alloc + self.realized[d]
            held = 0.0
            if len(d):
                for trade in self.open_trades[d].values():
                    value += trade.size * (d.close[0] - trade.price) - trade.commission
                held = float(self.strategy.getposition(d).size != 0)
            row[d._name] = value
            row[f"{d._name}__held"] = held
        self.rows.append(row)

    def get_analysis(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows).set_index("date") if self.rows else pd.DataFrame()
