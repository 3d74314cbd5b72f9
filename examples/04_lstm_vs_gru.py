"""Chapter: "Comparing LSTM and GRU Side by Side" -- same data, same settings, both cells.

Prints validation losses, training time, parameter counts and 5-day forecasts on bundled AAPL closes.
"""

from __future__ import annotations

import argparse
import os

from puffin_bt import TradingGRU, TradingLSTM
from puffin_bt.data import load_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="less data, smaller nets (also PUFFIN_BT_QUICK=1)")
    args = parser.parse_args()
    quick = args.quick or os.environ.get("PUFFIN_BT_QUICK") == "1"
    size = {"hidden_dim": 16, "num_layers": 1} if quick else {}

    prices = load_sample("AAPL")["AAPL"]["close"].values[-(250 if quick else 504):]

    # Train both on the same data
    lstm = TradingLSTM(**size)
    lstm_history = lstm.fit(prices, lookback=20, epochs=args.epochs, lr=0.001)

    gru = TradingGRU(**size)
    gru_history = gru.fit(prices, lookback=20, epochs=args.epochs, lr=0.001)

    # Compare validation losses. With early stopping the returned model is the best epoch's,
    # so its loss is val_loss[best_epoch] (the chapter's val_loss[-1] can belong to discarded weights).
    for name, model, history in (("LSTM", lstm, lstm_history), ("GRU ", gru, gru_history)):
        best = history["best_epoch"]
        n_params = sum(p.numel() for p in model.model.parameters())
        print(f"{name} val_loss: {history['val_loss'][-1]:.6f} (last epoch), "
              f"{history['val_loss'][best]:.6f} (best epoch {best}); "
              f"{n_params:,} parameters, {history['seconds']:.2f}s")

    # Compare predictions
    lstm_preds = lstm.predict(prices, steps=5)
    gru_preds = gru.predict(prices, steps=5)
    print(f"LSTM predictions: {lstm_preds.round(2)}")
    print(f"GRU  predictions: {gru_preds.round(2)}")


if __name__ == "__main__":
    main()
