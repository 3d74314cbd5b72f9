"""The chapter's `backtest_lstm_strategy`, done causally, next to its look-ahead version.

The chapter compared `predict(prices[i-100:i])` -- a forecast OF bar i -- with `prices[i]` and
traded at `prices[i]`: it used bar i's information to trade at bar i's price. Here the forecast
made at the close of bar i (from closes up to i) is about bar i+1, and orders fill at the next
open in Backtrader; the model retrains walk-forward instead of once on the whole history.
"""

from __future__ import annotations

import argparse
import os

from puffin_bt import backtest, load_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    quick = os.environ.get("PUFFIN_BT_QUICK") == "1"
    options = dict(hidden_dim=8, num_layers=1, min_train=150, retrain_every=63) if quick else {}
    # The chapter: one ticker, (almost) all cash in or out, +-0.5% thresholds, no costs.
    aapl = load_sample(["AAPL"], start="2011-01-01" if quick else "2008-01-01")
    result = backtest(aapl, model="lstm", cash=10_000, commission=0.0, entry=0.005, exit=0.005, weight=0.98,
                      epochs=args.epochs, store=False, **options)
    m = result.metrics
    print(f"Final Capital: ${m['final_value']:,.2f}")
    print(f"Total Return: {m['total_return']:.2%} (buy-and-hold {result.benchmark['total_return']:.2%})")
    print(f"Number of Trades: {m['trades']} closed, {m['open_positions']} open at the end")
    print(f"Folds trained: {len(result.folds)}; first forecast on {result.forecasts['date'].min():%Y-%m-%d}")


if __name__ == "__main__":
    main()
