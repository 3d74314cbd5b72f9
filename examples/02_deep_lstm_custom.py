"""Chapter: "Building a Custom Stacked Architecture" -- DeepLSTM composed from nn.LSTM layers.

Runs the chapter's class on random input, then trains it on five AAPL OHLCV features (chronological split).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd
import torch
from torch import nn

from puffin_bt import EarlyStopping, TensorBatches, set_seed, training_loop
from puffin_bt.data import load_sample


class DeepLSTM(nn.Module):
    def __init__(self, input_dim, hidden_dims=(128, 64, 32), output_dim=1):
        super().__init__()

        # Create multiple LSTM layers with different hidden dims
        self.lstm_layers = nn.ModuleList()

        for i, hidden_dim in enumerate(hidden_dims):
            layer_input_dim = input_dim if i == 0 else hidden_dims[i - 1]
            self.lstm_layers.append(
                nn.LSTM(layer_input_dim, hidden_dim, 1, batch_first=True)
            )

        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(hidden_dims[-1], output_dim)

    def forward(self, x):
        out = x
        for lstm in self.lstm_layers:
            out, _ = lstm(out)
            out = self.dropout(out)

        out = self.fc(out[:, -1, :])
        return out


def ohlcv_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Five scale-free features per bar, each known at that bar's close."""
    log_close = np.log(frame["close"])
    return pd.DataFrame({
        "return": log_close.diff(),
        "gap": np.log(frame["open"] / frame["close"].shift()),
        "range": np.log(frame["high"] / frame["low"]),
        "body": np.log(frame["close"] / frame["open"]),
        "volume": np.log(frame["volume"]).diff(),
    }).iloc[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lookback", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="less data, smaller net (also PUFFIN_BT_QUICK=1)")
    args = parser.parse_args()
    quick = args.quick or os.environ.get("PUFFIN_BT_QUICK") == "1"
    set_seed(0)

    # The chapter's snippet.
    model = DeepLSTM(input_dim=5, hidden_dims=[128, 64, 32])
    x = torch.randn(16, 30, 5)  # 5 input features
    output = model(x)
    print(f"Output shape: {output.shape}")  # torch.Size([16, 1])

    frame = load_sample("AAPL")["AAPL"].iloc[-(250 if quick else 504):]
    features = ohlcv_features(frame).to_numpy()
    target = features[args.lookback:, 0]  # next bar's log return
    windows = np.lib.stride_tricks.sliding_window_view(features[:-1], args.lookback, axis=0).transpose(0, 2, 1)
    n_train = int(len(windows) * 0.8)
    # Standardise with statistics of the training windows only; the tail stays unseen.
    mean, std = features[: n_train + args.lookback - 1].mean(0), features[: n_train + args.lookback - 1].std(0)
    x_all = torch.tensor((windows - mean) / std, dtype=torch.float32)
    y_all = torch.tensor((target - mean[0]) / std[0], dtype=torch.float32)[:, None]

    net = DeepLSTM(input_dim=5, hidden_dims=[16, 8] if quick else [128, 64, 32])
    history = training_loop(
        net,
        TensorBatches(x_all[:n_train], y_all[:n_train], batch_size=32, shuffle=True),
        TensorBatches(x_all[n_train:], y_all[n_train:], batch_size=256),
        args.epochs,
        torch.optim.Adam(net.parameters(), lr=1e-3),
        nn.MSELoss(),
        callbacks=[EarlyStopping(patience=5)],
    )
    print(f"features: {list(ohlcv_features(frame).columns)}; windows {tuple(x_all.shape)}")
    for epoch, (tr, va) in enumerate(zip(history["train_loss"], history["val_loss"])):
        print(f"epoch {epoch}: train_loss={tr:.4f} val_loss={va:.4f}")
    print(f"best epoch: {history['best_epoch']}")


if __name__ == "__main__":
    main()
