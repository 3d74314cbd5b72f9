"""Volatility targeting: a buy-and-hold sized to run at 15% a year next to the plain one, then the threshold
strategy taking its direction from a GRU's return forecast and its size from that forecast's prediction interval.

With a volatility forecast (``target="volatility"``) the size can come from a second model instead:
``ForecastThresholdStrategy, model="gru", sizing="vol_target", vol_model="lstm", vol_kwargs={...}``.
"""

import argparse
import os

import backtrader as bt
import numpy as np
import pandas as pd

from puffin_bt import load_sample
from puffin_bt.adapters.analyzers import SleeveValue
from strategies import BuyAndHold, ForecastThresholdStrategy


def run(frames: dict, strategy, **params):
    cerebro = bt.Cerebro(stdstats=False)
    for name, df in frames.items():
        cerebro.adddata(bt.feeds.PandasData(dataname=df), name=name)
    cerebro.broker.setcash(100_000)
    cerebro.addstrategy(strategy, **params)
    cerebro.addanalyzer(SleeveValue, _name="sleeves")
    result = cerebro.run()[0]
    equity = result.analyzers.sleeves.get_analysis().sum(axis=1)
    return result, equity


def summary(equity: pd.Series, start) -> str:
    returns = equity[pd.DatetimeIndex(equity.index) >= start].pct_change().dropna()
    drawdown = (1 - equity / equity.cummax()).max()
    return (f"volatility {returns.std() * np.sqrt(252):.3f} a year, Sharpe {returns.mean() / returns.std() * np.sqrt(252):.2f}, "
            f"max drawdown {drawdown:.1%}, return {equity.iloc[-1] / equity.iloc[0] - 1:+.1%}")


if __name__ == "__main__":  # the guard lets puffin_bt use worker processes safely
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    quick = os.environ.get("PUFFIN_BT_QUICK") == "1"
    frames = load_sample(["AAPL", "MSFT"], start="2010-01-01" if quick else "2005-01-01")
    start_bar = 60
    start = min(df.index[start_bar] for df in frames.values())
    _, plain = run(frames, BuyAndHold, start_bar=start_bar)
    managed, sized = run(frames, BuyAndHold, start_bar=start_bar, sizing="vol_target", target_vol=0.15)
    print(f"buy-and-hold:            {summary(plain, start)}")
    print(f"vol-target buy-and-hold: {summary(sized, start)}  (sized on {sorted(managed.vol_sources['AAPL'])})")
    forecast = dict(epochs=args.epochs, interval=0.8, min_train=start_bar + 1,
                    **(dict(hidden_dim=8, num_layers=1, retrain_every=63) if quick else {}))
    threshold, equity = run(frames, ForecastThresholdStrategy, model="gru", forecast_kwargs=forecast,
                            sizing="vol_target", target_vol=0.15, entry=0.0, exit=0.0, allow_short=True,
                            plot_forecast=False)
    print(f"GRU direction (long or short), interval size: {summary(equity, start)}, closed trades {len(threshold.trade_log)}")
    print(f"volatility sources used (bars): {threshold.vol_sources}")
