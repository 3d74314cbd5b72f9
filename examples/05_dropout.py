"""Chapter: "Dropout" -- LSTMNet(hidden_dim=64, dropout=0.3) and what dropout does to a fit.

Shows dropout is random in train mode and off in eval mode, then compares dropout rates on AAPL closes.
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
    torch.manual_seed(0)

    # Apply dropout between LSTM layers (and, in puffin_bt, before the linear head)
    model = LSTMNet(hidden_dim=64, dropout=0.3)
    x = torch.randn(4, 20, 1)
    model.train()
    differs = not torch.equal(model(x), model(x))
    model.eval()
    same = torch.equal(model(x), model(x))
    print(f"train mode: two calls differ = {differs}; eval mode: two calls equal = {same}")

    prices = load_sample("AAPL")["AAPL"]["close"].values[-(250 if quick else 504):]
    hidden_dim = 16 if quick else 64
    for dropout in (0.0, 0.3, 0.5):
        lstm = TradingLSTM(hidden_dim=hidden_dim, num_layers=2, dropout=dropout)
        history = lstm.fit(prices, lookback=20, epochs=args.epochs, lr=0.001)
        best = history["best_epoch"]
        print(f"dropout={dropout:.1f}: train_loss={history['train_loss'][best]:.4f} "
              f"val_loss={history['val_loss'][best]:.4f} (best epoch {best}), "
              f"next close {lstm.predict(prices, steps=1)[0]:.2f}")


if __name__ == "__main__":
    main()
