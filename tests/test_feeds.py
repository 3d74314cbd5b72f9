"""FrameData: the runner's feed gives Backtrader exactly the bars PandasData gives."""

from __future__ import annotations

import math

import backtrader as bt
import pandas as pd
import pytest

from puffin_bt import load_sample
from puffin_bt.feeds import FrameData


class Record(bt.Strategy):
    def __init__(self):
        self.rows = {d._name: [] for d in self.datas}

    def next(self):
        for d in self.datas:
            self.rows[d._name].append((d.datetime[0], d.open[0], d.high[0], d.low[0], d.close[0], d.volume[0],
                                       d.openinterest[0]))


def bars(feed, frames, **cerebro_kw):
    cerebro = bt.Cerebro(stdstats=False, **cerebro_kw)
    for name, df in frames.items():
        cerebro.adddata(feed(df), name=name)
    cerebro.addstrategy(Record)
    return cerebro.run()[0].rows


@pytest.mark.parametrize("mode", [dict(runonce=True), dict(runonce=False), dict(preload=False)])
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
