#!/usr/bin/env python
"""Backtrader's own cost per bar with puffin_bt's feed against PandasData (no model involved).

    python bench/bench_feed.py            # ~10 s

The same Cerebro (runonce, preload, no observers; one two-line indicator per data that fills
its lines in ``once``; a strategy that does nothing) on the bundled tickers, fed three ways,
runs interleaved, best of ``--repeat``:

  PandasData   Backtrader's pandas feed
  bt path      FrameData made to preload and step bar by bar through Backtrader's own code
  bulk + bt    FrameData's bulk preload, then Backtrader's own per-bar step
  FrameData    puffin_bt's feed: bulk preload and its own per-bar step (what backtest() uses)

Also the date numbers of the bundled index: ``parallel.date_numbers_of`` against a loop over
Backtrader's ``date2num`` (they are bit for bit equal, tested in tests/test_feeds.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import backtrader as bt  # noqa: E402
import numpy as np  # noqa: E402
from bench_walkforward import cpu_model  # noqa: E402

from puffin_bt import load_sample  # noqa: E402
from puffin_bt.adapters.feeds import FrameData  # noqa: E402
from puffin_bt.dates import date_numbers_of  # noqa: E402


class BacktraderPath(FrameData):
    """FrameData through Backtrader's own preload and per-bar code (what it did before its fast paths)."""

    def preload(self) -> None:
        bt.feed.DataBase.preload(self)


class BacktraderSteps(FrameData):
    """FrameData's bulk preload, then Backtrader's own per-bar code."""

    def preload(self) -> None:
        super().preload()
        self._bulk = False


class Fill(bt.Indicator):
    lines = ("a", "b")

    def once(self, start: int, end: int) -> None:
        a, b = self.lines.a.array, self.lines.b.array
        for i in range(start, end):
            a[i] = b[i] = 0.0


class Idle(bt.Strategy):
    def __init__(self) -> None:
        self.fills = [Fill(d) for d in self.datas]


FEEDS = {
    "PandasData": lambda df: bt.feeds.PandasData(dataname=df, openinterest=None),
    "bt path": lambda df: BacktraderPath(dataname=df),
    "bulk + bt": lambda df: BacktraderSteps(dataname=df),
    "FrameData": lambda df: FrameData(dataname=df),
}


def run(feed, frames: dict) -> float:
    started = time.perf_counter()
    cerebro = bt.Cerebro(runonce=True, preload=True, stdstats=False)
    for name, df in frames.items():
        cerebro.adddata(feed(df), name=name)
    cerebro.addstrategy(Idle)
    cerebro.run()
    return time.perf_counter() - started


def best_of(fn, repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=15, help="timed runs per feed (best is reported)")
    ap.add_argument("--bars", type=int, default=899, help="bars per ticker (the walk-forward bench's A: 899)")
    args = ap.parse_args(argv)
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {platform.platform()}, "
          f"Python {platform.python_version()}, backtrader {bt.__version__}, numpy {np.__version__}")
    sample = load_sample()
    for tickers in (["AAPL"], list(sample)):
        frames = {t: sample[t].iloc[-args.bars:] for t in tickers}
        for feed in FEEDS.values():  # warm-up
            run(feed, frames)
        times = {name: [] for name in FEEDS}
        for _ in range(args.repeat):  # interleaved, so drift hits every feed alike
            for name, feed in FEEDS.items():
                times[name].append(run(feed, frames))
        best = {name: min(t) for name, t in times.items()}
        n = len(tickers) * args.bars
        print(f"{len(tickers)} ticker(s) x {args.bars} bars, best of {args.repeat}:")
        for name, t in best.items():
            print(f"  {name:<11} {1000 * t:7.2f} ms  {1e6 * t / n:6.2f} us a ticker-bar  "
                  f"PandasData / this = {best['PandasData'] / t:.2f}x")
    index = sample["AAPL"].index
    loop = best_of(lambda: _timed(lambda: [bt.date2num(ts) for ts in index.to_pydatetime()]), args.repeat)
    vec = best_of(lambda: _timed(lambda: date_numbers_of(index)), args.repeat)
    print(f"date numbers of {len(index)} daily bars: date2num loop {1000 * loop:.2f} ms, date_numbers_of "
          f"{1000 * vec:.3f} ms ({loop / vec:.0f}x)")
    return 0


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
