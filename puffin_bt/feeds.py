"""A pandas OHLCV frame as a Backtrader feed, converted to plain floats once.

``FrameData`` gives the same bars and date numbers as ``bt.feeds.PandasData`` (tested)
without a pandas lookup per bar and field; the runner uses it. Any Backtrader feed
works with the indicators and the strategy: this one is only faster to preload.
"""

from __future__ import annotations

import backtrader as bt
import numpy as np
import pandas as pd

from .parallel import date_numbers_of

FIELDS = ("open", "high", "low", "close", "volume", "openinterest")


class FrameData(bt.feed.DataBase):
    """``FrameData(dataname=df)`` for a DataFrame with a DatetimeIndex and lower-case
    open/high/low/close[/volume/openinterest] columns (missing ones read NaN, as with PandasData).

    >>> from puffin_bt import load_sample
    >>> cerebro = bt.Cerebro()
    >>> _ = cerebro.adddata(FrameData(dataname=load_sample(["IBM"])["IBM"]), name="IBM")
    """

    def start(self) -> None:
        super().start()
        df = self.p.dataname
        columns = [df[f].to_numpy(dtype=np.float64) if f in df.columns else np.full(len(df), np.nan) for f in FIELDS]
        dates = date_numbers_of(pd.DatetimeIndex(df.index))
        self._rows = zip(dates.tolist(), *(c.tolist() for c in columns))
        self._targets = [self.lines.datetime, *(getattr(self.lines, f) for f in FIELDS)]

    def _load(self) -> bool:
        row = next(self._rows, None)
        if row is None:
            return False
        for line, value in zip(self._targets, row):
            line[0] = value
        return True
