"""FrameData: the backtest's feed gives Backtrader exactly the bars PandasData gives."""

from __future__ import annotations

import datetime
import math

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from puffin_bt import load_sample
from puffin_bt.adapters.feeds import FrameData

TICKS = ("tick_open", "tick_high", "tick_low", "tick_close", "tick_volume", "tick_openinterest", "tick_last")


class Record(bt.Strategy):
    """Each bar's values and the tick_* prices the broker fills orders at."""

    def __init__(self):
        self.rows = {d._name: [] for d in self.datas}

    def next(self):
        for d in self.datas:
            self.rows[d._name].append((d.datetime[0], d.open[0], d.high[0], d.low[0], d.close[0], d.volume[0],
                                       d.openinterest[0], *(getattr(d, t, "unset") for t in TICKS)))


class Trade(bt.Strategy):
    """Market, limit, stop and stop-limit orders on a fixed schedule: fills read the feed's tick_* prices."""

    def __init__(self):
        self.fills = []

    def notify_order(self, order):
        if order.status in (order.Completed, order.Canceled, order.Expired, order.Margin, order.Rejected):
            self.fills.append((order.data._name, order.getordername(), order.getstatusname(), len(self),
                               order.executed.price, order.executed.size))

    def next(self):
        for j, d in enumerate(self.datas):
            step = (len(self) + 3 * j) % 12
            if step == 0:
                self.buy(d, size=10)
            elif step == 3:
                self.sell(d, size=10, exectype=bt.Order.Limit, price=d.close[0] * 1.003,
                          valid=datetime.timedelta(days=7))
            elif step == 6:
                self.buy(d, size=5, exectype=bt.Order.Stop, price=d.close[0] * 1.005)
            elif step == 9:
                self.close(d, exectype=bt.Order.StopLimit, price=d.close[0] * 0.995, plimit=d.close[0] * 0.99)


def bars(feed, frames, **cerebro_kw):
    cerebro = bt.Cerebro(stdstats=False, **cerebro_kw)
    for name, df in frames.items():
        cerebro.adddata(feed(df), name=name)
    cerebro.addstrategy(Record)
    return cerebro.run()[0].rows


MODES = [dict(runonce=True), dict(runonce=False), dict(preload=False)]


@pytest.mark.parametrize("mode", [*MODES, dict(runonce=True, cheat_on_open=True), dict(runonce=False, coc=True)])
def test_orders_fill_as_with_pandas_data(mode):
    """FrameData moves a preloaded feed bar by bar on its own path; the broker must fill every
    order type at the prices it fills them at with PandasData."""
    frames = load_sample(["AAPL", "IBM"], start="2012-01-01", end="2013-06-30")
    frames["IBM"] = frames["IBM"].iloc[25:]

    def run(feed):
        cerebro = bt.Cerebro(stdstats=False, runonce=mode.get("runonce", True), preload=mode.get("preload", True),
                             cheat_on_open=mode.get("cheat_on_open", False))
        cerebro.broker.set_coc(mode.get("coc", False))
        for name, df in frames.items():
            cerebro.adddata(feed(df), name=name)
        cerebro.addstrategy(Trade)
        strat = cerebro.run()[0]
        return strat.fills, cerebro.broker.getvalue()

    ours = run(lambda df: FrameData(dataname=df))
    theirs = run(lambda df: bt.feeds.PandasData(dataname=df, openinterest=None))
    kinds = {(f[1], f[2]) for f in ours[0]}
    assert {("Market", "Completed"), ("Limit", "Completed"), ("Stop", "Completed")} <= kinds
    assert ours == theirs


@pytest.mark.parametrize("mode", MODES)
def test_frame_data_gives_the_bars_pandas_data_gives(mode):
    # Two tickers with different first dates: the engine aligns them the same way for both feeds.
    frames = load_sample(["AAPL", "IBM"], start="2012-06-01")
    frames["IBM"] = frames["IBM"].iloc[30:]
    ours = bars(lambda df: FrameData(dataname=df), frames, **mode)
    theirs = bars(lambda df: bt.feeds.PandasData(dataname=df, openinterest=None), frames, **mode)
    assert len(ours["AAPL"]) > 150 and list(ours) == list(theirs)
    for name in ours:  # NaN != NaN, so compare the rows' text
        assert [repr(r) for r in ours[name]] == [repr(r) for r in theirs[name]]


def test_missing_volume_reads_nan_as_with_pandas_data():
    df = load_sample(["MSFT"], start="2013-01-01")["MSFT"].drop(columns="volume")
    rows = bars(lambda d: FrameData(dataname=d), {"MSFT": df})["MSFT"]
    assert len(rows) == len(df) and all(math.isnan(r[5]) and math.isnan(r[6]) for r in rows)
    assert bt.num2date(rows[0][0]).date() == pd.Timestamp(df.index[0]).date()


@pytest.mark.parametrize("dates", [
    dict(fromdate=pd.Timestamp("2012-09-03").to_pydatetime()),
    dict(todate=pd.Timestamp("2012-11-15").to_pydatetime()),
    dict(fromdate=pd.Timestamp("2012-08-01").to_pydatetime(), todate=pd.Timestamp("2012-08-31").to_pydatetime()),
    dict(fromdate=pd.Timestamp("2030-01-01").to_pydatetime()),  # nothing left
])
def test_bulk_preload_applies_fromdate_and_todate_as_backtrader_does(dates):
    frames = load_sample(["AAPL"], start="2012-06-01", end="2012-12-31")
    ours = bars(lambda df: FrameData(dataname=df, **dates), frames, runonce=True)
    theirs = bars(lambda df: bt.feeds.PandasData(dataname=df, openinterest=None, **dates), frames, runonce=True)
    assert [repr(r) for r in ours["AAPL"]] == [repr(r) for r in theirs["AAPL"]]


def test_bulk_preload_is_what_backtrader_preloads_bar_by_bar():
    """The bulk path against DataBase.preload (bar by bar, through _load) on the same feed class."""
    frames = load_sample(["GOOG", "MSFT"], start="2011-01-01")

    class BarByBar(FrameData):
        def preload(self):
            bt.feed.DataBase.preload(self)

    def preloaded(feed):
        cerebro = bt.Cerebro(stdstats=False, runonce=True, preload=True)
        for name, df in frames.items():
            cerebro.adddata(feed(dataname=df), name=name)
        cerebro.addstrategy(Record)
        strat = cerebro.run()[0]
        return {d._name: [(line.array.tobytes(), line.idx, line.lencount) for line in d.lines] for d in strat.datas}

    bulk, slow = preloaded(FrameData), preloaded(BarByBar)
    assert bulk == slow and len(bulk["GOOG"][0][0]) == 8 * len(frames["GOOG"])


@pytest.mark.parametrize("index", [
    load_sample(["AAPL"])["AAPL"].index,  # daily: the vectorised path
    pd.date_range("1999-01-01", periods=400, freq="h"),  # intraday: Backtrader's date2num per bar
    pd.date_range("2020-01-01", periods=300, freq="D", tz="America/New_York"),  # midnight local = 05:00 UTC
    pd.date_range("2020-01-01", periods=300, freq="D", tz="UTC"),
    pd.date_range("2020-01-01", periods=3, freq="D").as_unit("s"),
    pd.DatetimeIndex(["1900-03-01", "2262-01-01"]),
])
def test_date_numbers_are_backtrader_date2num_bit_for_bit(index):
    """Store keys hash these numbers, so they must be exactly those PandasData makes."""
    from puffin_bt.dates import date_numbers_of

    expected = [bt.date2num(ts) for ts in index.to_pydatetime()]
    assert date_numbers_of(index).tobytes() == np.array(expected, dtype=np.float64).tobytes()


def test_dates_module_converts_both_ways_exactly_as_backtrader():
    """puffin_bt.dates is Backtrader-free (the engine-free layers use it) but must agree with Backtrader."""
    from puffin_bt.dates import date2num, num2date

    rng = np.random.default_rng(0)
    stamps = pd.to_datetime(rng.integers(0, 4_000_000_000, 500), unit="s").to_pydatetime()
    numbers = [bt.date2num(ts) for ts in stamps] + list(rng.uniform(693_596, 767_000, 500))
    assert [date2num(ts) for ts in stamps] == numbers[:500]
    assert [num2date(x) for x in numbers] == [bt.num2date(x) for x in numbers]


@pytest.mark.parametrize("runonce", [True, False])
@pytest.mark.parametrize("how", ["resample", "replay", "clone"])
def test_resampled_replayed_and_cloned_feeds_match_pandas_data(how, runonce):
    """Filters send FrameData down Backtrader's own path; a clone reads a bulk-preloaded original."""
    df = load_sample(["AAPL"], start="2012-01-01", end="2013-06-30")["AAPL"]

    class Rows(bt.Strategy):
        def __init__(self):
            self.rows = []

        def next(self):
            self.rows.append(tuple((d.datetime[0], d.close[0], getattr(d, "tick_close", None), len(d))
                                   for d in self.datas))
            if len(self) % 10 == 0:
                self.buy(self.datas[0], size=1)

    def run(feed):
        cerebro = bt.Cerebro(stdstats=False, runonce=runonce)
        if how == "resample":
            cerebro.adddata(feed())
            cerebro.resampledata(feed(), timeframe=bt.TimeFrame.Weeks)
        elif how == "replay":
            cerebro.replaydata(feed(), timeframe=bt.TimeFrame.Weeks)
        else:
            data = feed()
            cerebro.adddata(data)
            cerebro.adddata(data.clone())
        cerebro.addstrategy(Rows)
        return cerebro.run()[0].rows, cerebro.broker.getvalue()

    ours = run(lambda: FrameData(dataname=df))
    assert len(ours[0]) > 250
    assert repr(ours) == repr(run(lambda: bt.feeds.PandasData(dataname=df, openinterest=None)))
