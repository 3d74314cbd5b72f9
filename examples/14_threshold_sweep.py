"""Sweep the entry/exit thresholds with Backtrader's optstrategy: the forecasts are trained once.

The forecast store (``ForecastStore``) keys forecasts by the data and the model configuration,
so every threshold combination after the first reads them instead of retraining.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import backtrader as bt

from puffin_bt import ForecastStore, load_sample
from puffin_bt.adapters.feeds import FrameData
from strategies import ForecastThresholdStrategy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    quick = os.environ.get("PUFFIN_BT_QUICK") == "1"
    forecast = dict(epochs=args.epochs, retrain_every=21)
    if quick:
        forecast.update(hidden_dim=8, num_layers=1, min_train=150, retrain_every=63)
    store = ForecastStore(tempfile.mkdtemp(prefix="puffin-sweep-"))
    forecast["store"] = store

    cerebro = bt.Cerebro(optreturn=False, maxcpus=1, stdstats=False)
    for name, df in load_sample(["AAPL", "MSFT"], start="2010-01-01" if quick else "2008-01-01").items():
        cerebro.adddata(FrameData(dataname=df), name=name)
    cerebro.broker.setcommission(commission=0.001)
    cerebro.addanalyzer(bt.analyzers.Returns, _name="returns")
    cerebro.addanalyzer(bt.analyzers.TradeAnalyzer, _name="trades")
    thresholds = [0.001, 0.0025, 0.005, 0.01]
    cerebro.optstrategy(ForecastThresholdStrategy, entry=thresholds, exit=thresholds, forecast_kwargs=[forecast])
    started = time.perf_counter()
    runs = [r[0] for r in cerebro.run()]
    seconds = time.perf_counter() - started

    print(f"{'entry':>7} {'exit':>7} {'return':>8} {'trades':>6}")
    for strat in sorted(runs, key=lambda s: -s.analyzers.returns.get_analysis()["rtot"]):
        trades = strat.analyzers.trades.get_analysis().get("total", {}).get("closed", 0)
        print(f"{strat.p.entry:7.4f} {strat.p.exit:7.4f} {strat.analyzers.returns.get_analysis()['rtot']:8.2%} "
              f"{trades:>6}")
    print(f"{len(runs)} threshold combinations in {seconds:.1f}s; forecast store: "
          f"{store.misses} trained, {store.hits} reused")


if __name__ == "__main__":
    main()
