"""Chapter: "The StackedLSTM Class" -- a 128 -> 64 -> 32 funnel of single-layer LSTMs.

Runs the chapter's forward pass, then trains a funnel on AAPL log-return windows (chronological split).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from torch import nn

from puffin_bt import EarlyStopping, StackedLSTM, TensorBatches, set_seed, training_loop
from puffin_bt.data import load_sample


def return_windows(closes: np.ndarray, lookback: int, validation_split: float = 0.2):
    """Scaled (x, y) tensors for train and validation: the validation part is the chronological tail
    and the scaler sees training returns only."""
    returns = np.diff(np.log(closes))
    x = np.lib.stride_tricks.sliding_window_view(returns[:-1], lookback)
    y = returns[lookback:]
    n_train = len(x) - max(1, round(len(x) * validation_split))
    mean, std = returns[: n_train + lookback - 1].mean(), returns[: n_train + lookback - 1].std()

    def tensors(a, b):
        return (torch.tensor((a - mean) / std, dtype=torch.float32)[..., None],
                torch.tensor((b - mean) / std, dtype=torch.float32)[:, None])

    return tensors(x[:n_train], y[:n_train]), tensors(x[n_train:], y[n_train:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="less data, smaller net (also PUFFIN_BT_QUICK=1)")
    args = parser.parse_args()
    quick = args.quick or os.environ.get("PUFFIN_BT_QUICK") == "1"
    set_seed(0)

    # The chapter's snippet, verbatim apart from the import.
    model = StackedLSTM(input_dim=1, hidden_dims=[128, 64, 32], output_dim=1, dropout=0.2)
    x = torch.randn(16, 20, 1)  # batch_size=16, seq_len=20, features=1
    output = model(x)
    print(f"Output shape: {output.shape}")  # torch.Size([16, 1])
    sizes = [layer.hidden_size for layer in model.lstm_layers]
    print(f"Layers: {sizes}, parameters: {sum(p.numel() for p in model.parameters()):,}")

    closes = load_sample("AAPL")["AAPL"]["close"].to_numpy()[-(250 if quick else 504):]
    (x_train, y_train), (x_val, y_val) = return_windows(closes, lookback=20)
    funnel = StackedLSTM(input_dim=1, hidden_dims=[16, 8, 4] if quick else [128, 64, 32], dropout=0.2)
    history = training_loop(
        funnel,
        TensorBatches(x_train, y_train, batch_size=32, shuffle=True),
        TensorBatches(x_val, y_val, batch_size=256),
        args.epochs,
        torch.optim.Adam(funnel.parameters(), lr=1e-3),
        nn.MSELoss(),
        callbacks=[EarlyStopping(patience=5)],
    )
    print(f"AAPL windows: {len(x_train)} train, {len(x_val)} validation (the last {len(x_val)} days)")
    for epoch, (tr, va) in enumerate(zip(history["train_loss"], history["val_loss"])):
        print(f"epoch {epoch}: train_loss={tr:.4f} val_loss={va:.4f}")
    print(f"best epoch: {history['best_epoch']} (weights restored)")


if __name__ == "__main__":
    main()
