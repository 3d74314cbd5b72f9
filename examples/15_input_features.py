"""Input features: a forecast indicator that learns from more than the closes, Backtrader's way.

The first data is the series whose return is forecast; every further line (a data's line, any
indicator) is an input feature, and ``features=`` adds built-in ones computed from the bars.
"""

import argparse
import os

import backtrader as bt
import numpy as np

from puffin_bt import LSTMForecast, TradingLSTM, load_sample


class FeatureStrategy(bt.Strategy):
    params = (("forecast", None),)

    def __init__(self):
        rsi = bt.ind.RSI(self.data, period=14)
        self.fc = LSTMForecast(self.data, rsi, self.data.volume, features=("range", "volatility:20"),
                               **self.p.forecast)

    def next(self):
        if not self.position and self.fc.pred_return[0] > 0.005:
            self.buy()
        elif self.position and self.fc.pred_return[0] < -0.005:
            self.close()


if __name__ == "__main__":  # the guard lets puffin_bt use worker processes safely
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    quick = os.environ.get("PUFFIN_BT_QUICK") == "1"
    small = dict(hidden_dim=8, num_layers=1, retrain_every=126) if quick else {}
    df = load_sample(["IBM"], start="2010-01-01" if quick else "2005-01-01")["IBM"]
    cerebro = bt.Cerebro()
    cerebro.adddata(bt.feeds.PandasData(dataname=df), name="IBM")
    cerebro.addstrategy(FeatureStrategy, forecast=dict(epochs=args.epochs, **small))
    strategy = cerebro.run()[0]
    print(f"inputs: returns + {list(strategy.fc.config.features)}")
    print(f"forecasts: {int(np.isfinite(np.asarray(strategy.fc.pred_return.array)).sum())}, "
          f"final value: {cerebro.broker.getvalue():,.2f}")

    # The chapter's API: features as a DataFrame aligned with the prices.
    features = df[["volume"]].pct_change().fillna(0.0)
    model = TradingLSTM(hidden_dim=8, num_layers=1)
    model.fit(df["close"], features=features, epochs=args.epochs)
    print(f"TradingLSTM with features {model.config_.features}: next close {model.predict(df['close'], features=features)[0]:.2f}")
