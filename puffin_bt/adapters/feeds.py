"""A pandas OHLCV frame as a Backtrader feed, converted to plain floats once.

``FrameData`` gives the same bars and date numbers as ``bt.feeds.PandasData`` (tested)
without a pandas lookup per bar and field, preloads all bars at once and steps through
them on its own per-bar path; ``backtest()`` uses it. Any Backtrader feed works with the indicators and the strategy:
this one is only faster (``python bench/bench_feed.py``). ``QueueData`` is a live-style feed whose bars
arrive one at a time on a queue (paper trading, ``examples/16_paper_trading.py``).
"""

from __future__ import annotations

import queue

import backtrader as bt
import numpy as np
import pandas as pd

from ..dates import date_numbers_of

__all__ = ["FrameData", "QueueData"]

FIELDS = ("open", "high", "low", "close", "volume", "openinterest")


class FrameData(bt.feed.DataBase):
    """``FrameData(dataname=df)`` for a DataFrame with a DatetimeIndex and lower-case
    open/high/low/close[/volume/openinterest] columns (missing ones read NaN, as with PandasData).

    >>> from puffin_bt import load_sample
    >>> cerebro = bt.Cerebro()
    >>> _ = cerebro.adddata(FrameData(dataname=load_sample(["IBM"])["IBM"]), name="IBM")
    """

    _bulk = False

    def start(self) -> None:
        super().start()
        df = self.p.dataname
        columns = [df[f].to_numpy(dtype=np.float64) if f in df.columns else np.full(len(df), np.nan) for f in FIELDS]
        dates = date_numbers_of(pd.DatetimeIndex(df.index))
        self._columns = [dates, *columns]
        self._rows = None  # bar-by-bar rows, made only if Backtrader's own path loads them
        self._targets = [self.lines.datetime, *(getattr(self.lines, f) for f in FIELDS)]
        self._bulk = False  # set by the bulk preload: the per-bar fast path below applies

    def preload(self) -> None:
        """All bars at once: each line's array is extended with its column in one call (Backtrader
        loads and checks bar by bar). Feeds with filters, an input timezone, bounded
        buffers or extra lines take Backtrader's own path; ``fromdate``/``todate`` apply as there."""
        lines = list(self.lines)
        if (self._filters or self._ffilters or self._tzinput or self._barstack or self._barstash
                or len(lines) != len(self._targets) or any(ln.mode != ln.UnBounded or len(ln.array) for ln in lines)):
            super().preload()
            return
        dates = self._columns[0]
        # As DataBase.load: bars before fromdate are skipped, the first later one past todate ends the feed.
        after_from = dates >= self.fromdate
        past = np.flatnonzero(after_from & (dates > self.todate))
        keep = np.flatnonzero(after_from[: int(past[0]) if len(past) else len(dates)])
        for line, column in zip(self._targets, self._columns):
            line.array.frombytes(np.ascontiguousarray(column[keep], dtype=np.float64).tobytes())
            line.idx += len(keep)
            line.lencount += len(keep)
        self._rows = iter(())  # consumed
        self._last()
        self.home()
        self._buffers = lines
        names = [alias for alias in self.getlinealiases() if alias != "datetime"]
        self._ticks = [("tick_" + alias, getattr(self.lines, alias)) for alias in names]
        self._tick0 = "tick_" + self._getlinealias(0)
        self._no_ticks = dict.fromkeys([name for name, _ in self._ticks] + ["tick_last"])
        self._bulk = True

    # Backtrader's per-bar steps for a preloaded feed, without its generic line proxies (bench/
    # bench_feed.py, 899 bars: 19.8 -> 11.6 ms). Same effect, tested against PandasData:
    # the lines move one bar, and the broker's tick_* prices are the bar's (None between bars).
    def advance(self, size: int = 1, datamaster=None, ticks: bool = True) -> None:
        if not self._bulk or datamaster is not None:
            super().advance(size, datamaster, ticks)
            return
        if ticks:
            self.__dict__.update(self._no_ticks)
        for line in self._buffers:  # LineBuffer.advance (all unbounded: checked by preload)
            line._idx += size
            line.lencount += size
        if ticks:
            line = self._buffers[0]
            if line.lencount < len(line.array) - line.extension:
                self._tick_fill()

    def advance_peek(self) -> float:
        if not self._bulk:
            return super().advance_peek()
        line, dt = self._buffers[0], self.lines.datetime
        if line.lencount < len(line.array) - line.extension:
            return dt.array[dt._idx + 1]
        return float("inf")

    def _tick_nullify(self) -> None:
        if not self._bulk:
            super()._tick_nullify()
            return
        self.__dict__.update(self._no_ticks)

    def _tick_fill(self, force: bool = False) -> None:
        if not self._bulk:
            super()._tick_fill(force)
            return
        ticks = self.__dict__
        if force or ticks.get(self._tick0) is None:
            for name, line in self._ticks:
                ticks[name] = line.array[line._idx]
            ticks["tick_last"] = ticks[self._tick0]

    def _load(self) -> bool:
        if self._rows is None:
            self._rows = zip(*(column.tolist() for column in self._columns))
        row = next(self._rows, None)
        if row is None:
            return False
        for line, value in zip(self._targets, row):
            line[0] = value
        return True


class QueueData(bt.feed.DataBase):
    """A live-style feed: bars arrive one at a time on a ``queue.Queue`` (a broker's or poller's thread puts
    them), as ``(datetime, open, high, low, close, volume)`` tuples; ``None`` ends the feed.

    ``islive()`` is true, so Cerebro neither preloads nor runs once: every indicator steps bar by bar, as in
    paper trading. ``poll``: seconds to wait for a bar before Cerebro checks its other feeds.

    >>> import queue
    >>> bars = queue.Queue()
    >>> feed = QueueData(dataname=bars)  # then bars.put((datetime, o, h, l, c, v)) as they come; None at the end
    """

    params = (("poll", 0.05),)

    def islive(self) -> bool:
        return True

    def _load(self) -> bool | None:
        try:
            bar = self.p.dataname.get(timeout=self.p.poll)
        except queue.Empty:
            return None  # no bar yet: Cerebro polls again
        if bar is None:
            return False
        stamp, *values = bar
        self.lines.datetime[0] = bt.date2num(pd.Timestamp(stamp).to_pydatetime())
        for line, value in zip((self.lines.open, self.lines.high, self.lines.low, self.lines.close,
                                self.lines.volume), values):
            line[0] = float(value)
        self.lines.openinterest[0] = 0.0
        return True
