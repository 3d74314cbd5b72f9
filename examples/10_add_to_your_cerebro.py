"""Add the forecast threshold strategy to your own Cerebro in one line, then plot the trades."""

import argparse
import os

import backtrader as bt

from puffin_bt import load_sample, plot_trades
from strategies import ForecastThresholdStrategy

if __name__ == "__main__":  # the guard lets puffin_bt use worker processes safely
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    quick = os.environ.get("PUFFIN_BT_QUICK") == "1"
    cerebro = bt.Cerebro()
    for name, df in load_sample(["AAPL", "MSFT"], start="2011-01-01" if quick else "2008-01-01").items():
        cerebro.adddata(bt.feeds.PandasData(dataname=df), name=name)
    cerebro.broker.setcash(100_000)
    cerebro.addstrategy(ForecastThresholdStrategy, model="gru",  # <- the one line
                        forecast_kwargs=dict(epochs=args.epochs, **(dict(hidden_dim=8, num_layers=1,
                                                                         retrain_every=63) if quick else {})))
    strategy = cerebro.run()[0]
    print(f"final value: {cerebro.broker.getvalue():,.2f}, closed trades: {len(strategy.trade_log)}")
    plot_trades(cerebro, out_dir="puffin-bt-out/example-10")
    print(f"charts: {sorted(os.listdir('puffin-bt-out/example-10'))}")
