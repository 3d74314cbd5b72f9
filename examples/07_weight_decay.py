"""Chapter: "Weight Decay (L2 Regularization)" -- Adam(..., weight_decay=1e-5) and stronger settings.

Trains the same seeded LSTM on AAPL closes with several weight_decay values; larger decay, smaller weights.
"""

from __future__ import annotations

import argparse
import os

import torch

from puffin_bt import LSTMNet, TradingLSTM
from puffin_bt.data import load_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="less data, smaller nets (also PUFFIN_BT_QUICK=1)")
    args = parser.parse_args()
    quick = args.quick or os.environ.get("PUFFIN_BT_QUICK") == "1"

    # The chapter's line, for a model you train yourself:
    model = LSTMNet(hidden_dim=64)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001, weight_decay=1e-5)
    print(f"optimizer: {type(optimizer).__name__}, weight_decay={optimizer.defaults['weight_decay']}")

    # TradingLSTM passes weight_decay to the same optimizer.
    prices = load_sample("AAPL")["AAPL"]["close"].values[-(250 if quick else 504):]
    hidden_dim = 16 if quick else 64
    for weight_decay in (0.0, 1e-5, 1e-2, 1e-1):
        lstm = TradingLSTM(hidden_dim=hidden_dim, num_layers=1, weight_decay=weight_decay, patience=None)
        history = lstm.fit(prices, lookback=20, epochs=args.epochs, lr=0.01)
        norm = torch.sqrt(sum((p.detach() ** 2).sum() for p in lstm.model.parameters())).item()
        print(f"weight_decay={weight_decay:g}: val_loss={history['val_loss'][-1]:.4f} weight norm={norm:.3f}")


if __name__ == "__main__":
    main()
