"""Chapter: "Using GRUNet and TradingGRU" -- the raw GRU module and the high-level wrapper.

Fits TradingGRU on two years of bundled AAPL closes (instead of yfinance) and forecasts 5 days.
"""

from __future__ import annotations

import argparse
import os

import torch

from puffin_bt import GRUNet, TradingGRU
from puffin_bt.data import load_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="less data, smaller net (also PUFFIN_BT_QUICK=1)")
    args = parser.parse_args()
    quick = args.quick or os.environ.get("PUFFIN_BT_QUICK") == "1"

    # Low-level GRU module
    gru_model = GRUNet(input_dim=1, hidden_dim=64, num_layers=2, dropout=0.2)
    x = torch.randn(16, 20, 1)
    output = gru_model(x)
    print(f"GRUNet output shape: {output.shape}")  # torch.Size([16, 1])

    # High-level TradingGRU wrapper; the bundled sample replaces yf.Ticker("AAPL").history(period="2y")
    df = load_sample("AAPL")["AAPL"].iloc[-(250 if quick else 504):]
    prices = df["close"].values

    gru = TradingGRU(hidden_dim=16, num_layers=1) if quick else TradingGRU()
    history = gru.fit(
        prices,
        lookback=20,
        epochs=args.epochs,
        lr=0.001,
    )
    print(f"trained {len(history['train_loss'])} epochs in {history['seconds']:.2f}s; "
          f"val_loss per epoch: {[round(v, 4) for v in history['val_loss']]}")

    # Make predictions (steps after the first feed predictions back in, so errors compound)
    gru_predictions = gru.predict(prices, steps=5)
    print(f"last close {df.index[-1].date()}: {prices[-1]:.2f}")
    print(f"GRU predictions: {gru_predictions.round(2)}")


if __name__ == "__main__":
    main()
