"""Chapter: "Early Stopping" -- the chapter's manual loop with EarlyStopping(patience=5).

train_one_epoch/validate are real functions; validation is the chronological tail of AAPL return windows.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from torch import nn

from puffin_bt import EarlyStopping, LSTMNet, TensorBatches, set_seed
from puffin_bt.data import load_sample


def make_loaders(closes: np.ndarray, lookback: int = 20, validation_split: float = 0.2):
    """Train batches (shuffled windows from the past) and validation batches (the last windows, in order)."""
    returns = np.diff(np.log(closes))
    x = np.lib.stride_tricks.sliding_window_view(returns[:-1], lookback)
    y = returns[lookback:]
    n_train = len(x) - max(1, round(len(x) * validation_split))
    seen = returns[: n_train + lookback - 1]  # every return a training window reads, nothing later
    mean, std = seen.mean(), seen.std()
    x_t = torch.tensor((x - mean) / std, dtype=torch.float32)[..., None]
    y_t = torch.tensor((y - mean) / std, dtype=torch.float32)[:, None]
    train_loader = TensorBatches(x_t[:n_train], y_t[:n_train], batch_size=32, shuffle=True)
    val_loader = TensorBatches(x_t[n_train:], y_t[n_train:], batch_size=256)
    return train_loader, val_loader


def train_one_epoch(model: nn.Module, loader, optimizer) -> float:
    criterion = nn.MSELoss()
    model.train()
    total, count = 0.0, 0
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(xb)
        count += len(xb)
    return total / count


def validate(model: nn.Module, loader) -> float:
    criterion = nn.MSELoss()
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for xb, yb in loader:
            total += criterion(model(xb), yb).item() * len(xb)
            count += len(xb)
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100, help="upper bound; early stopping usually ends sooner")
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="less data, smaller net (also PUFFIN_BT_QUICK=1)")
    args = parser.parse_args()
    quick = args.quick or os.environ.get("PUFFIN_BT_QUICK") == "1"
    set_seed(0)

    closes = load_sample("AAPL")["AAPL"]["close"].to_numpy()[-(250 if quick else 504):]
    train_loader, val_loader = make_loaders(closes)
    model = LSTMNet(hidden_dim=8 if quick else 32, num_layers=1, dropout=0.2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

    early_stop = EarlyStopping(patience=args.patience, restore_best_weights=True)

    # In a manual training loop:
    for epoch in range(args.epochs):
        train_loss = train_one_epoch(model, train_loader, optimizer)
        val_loss = validate(model, val_loader)
        print(f"epoch {epoch}: train_loss={train_loss:.4f} val_loss={val_loss:.4f}")

        if early_stop(val_loss, model):
            print(f"Early stopping at epoch {epoch}")
            break
    else:
        early_stop.restore(model)  # the epochs ran out first: still keep the best weights
        print(f"Ran all {args.epochs} epochs without triggering early stopping")

    print(f"best epoch: {early_stop.best_epoch} (val_loss={early_stop.best_loss:.4f}); "
          f"restored model val_loss={validate(model, val_loader):.4f}")


if __name__ == "__main__":
    main()
