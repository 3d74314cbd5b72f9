"""Round trips and open positions of any strategy that ran, read from Backtrader's own records (its trades
and executed orders), as the tables ``BacktestResult`` and the trade charts use."""

from __future__ import annotations

import math

import backtrader as bt
import pandas as pd

__all__ = ["data_names", "open_positions", "round_trips"]

TRADE_COLUMNS = ["ticker", "direction", "entry_date", "exit_date", "entry_price", "exit_price", "size", "bars",
                 "pnl", "pnl_net", "commission", "return"]
OPEN_COLUMNS = ["ticker", "direction", "entry_date", "entry_price", "size"]


def data_names(strategy, datas=None) -> dict[int, str]:
    """``id(data) -> name`` for ``datas`` (default: all of the strategy's): the data's name, ``data<i>`` when unnamed
    (i: its place among the strategy's datas), ``_2``, ``_3``... on repeats, as the trade charts name their files."""
    every = list(strategy.datas)
    names: dict[int, str] = {}
    for data in every if datas is None else datas:
        idx = next((i for i, d in enumerate(every) if d is data), len(names))
        name = getattr(data, "_name", "") or f"data{idx}"
        key, n = name, 2
        while key in names.values():
            key, n = f"{name}_{n}", n + 1
        names[id(data)] = key
    return names


def _trades_of(strategy, data) -> list:
    """Backtrader's Trade objects of ``data`` (every tradeid), oldest first."""
    by_id = getattr(strategy, "_trades", {}).get(data, {})
    return sorted((t for trades in by_id.values() for t in trades), key=lambda t: (t.dtopen, t.ref))


def _fills(strategy, data) -> list[tuple[float, float]]:
    """``(date number, position after the fill)`` for every executed order of ``data``, in execution order."""
    orders = [o for o in getattr(strategy, "_orders", []) if o.data is data and o.executed.size]
    position, out = 0.0, []
    for order in sorted(orders, key=lambda o: (o.executed.dt, o.ref)):
        position += order.executed.size
        out.append((order.executed.dt, position))
    return out


def _peak_size(fills, opened: float, closed: float, sign: int) -> float:
    """The largest position on the trade's side between its open and close (Backtrader's closed trade says 0)."""
    held = [sign * pos for dt, pos in fills if opened <= dt <= closed and sign * pos > 0]
    return max(held) if held else math.nan


def round_trips(strategy, datas=None) -> pd.DataFrame:
    """One row per closed round trip (``TRADE_COLUMNS``), for any strategy.

    A strategy that keeps a ``trade_log`` of such rows (``ForecastThresholdStrategy``) is read as it is; otherwise
    the rows come from Backtrader's trades (dates, entry price, P&L, commission, bars held) and executed orders
    (the size: the largest position held; the exit price: the one that gives the trade's P&L). Only the
    ``datas`` given (default: all) are kept, named by :func:`data_names`.
    """
    datas = list(strategy.datas if datas is None else datas)
    names = data_names(strategy, datas)
    log = getattr(strategy, "trade_log", None)
    named = all(names[id(d)] == getattr(d, "_name", "") for d in datas)  # the log names datas by their _name
    if named and isinstance(log, list) and all(isinstance(row, dict) and set(TRADE_COLUMNS) <= set(row) for row in log):
        frame = pd.DataFrame(log, columns=TRADE_COLUMNS)
        return frame[frame["ticker"].isin(set(names.values()))].reset_index(drop=True)
    rows = []
    for data in datas:
        fills = _fills(strategy, data)
        for trade in _trades_of(strategy, data):
            if trade.status != trade.Closed:
                continue
            sign = 1 if trade.long else -1
            size = _peak_size(fills, trade.dtopen, trade.dtclose, sign)
            exit_price = math.nan if math.isnan(size) else trade.price + trade.pnl / (sign * size)
            rows.append({"ticker": names[id(data)], "direction": "long" if trade.long else "short",
                         "entry_date": bt.num2date(trade.dtopen), "exit_date": bt.num2date(trade.dtclose),
                         "entry_price": trade.price, "exit_price": exit_price, "size": size, "bars": trade.barlen,
                         "pnl": trade.pnl, "pnl_net": trade.pnlcomm, "commission": trade.commission,
                         "return": (exit_price / trade.price - 1) * sign if trade.price else math.nan})
    frame = pd.DataFrame(rows, columns=TRADE_COLUMNS)
    return frame.sort_values(["entry_date", "ticker"], kind="stable").reset_index(drop=True)


def open_positions(strategy, datas=None) -> pd.DataFrame:
    """The positions still open when the run ended (``OPEN_COLUMNS``): ticker, long/short, the date the position
    was opened, its average entry price and its size (unsigned)."""
    datas = list(strategy.datas if datas is None else datas)
    names = data_names(strategy, datas)
    rows = []
    for data in datas:
        position = strategy.getposition(data)
        if not position.size:
            continue
        opened = [t.dtopen for t in _trades_of(strategy, data) if t.status == t.Open]
        rows.append({"ticker": names[id(data)], "direction": "long" if position.size > 0 else "short",
                     "entry_date": bt.num2date(min(opened)) if opened else pd.NaT, "entry_price": position.price,
                     "size": abs(position.size)})
    return pd.DataFrame(rows, columns=OPEN_COLUMNS)
