"""Chapter: "Data Augmentation for Time Series" -- add_noise on training returns only, and noise_level.

Noise goes on the training part of AAPL's returns; the validation tail is never perturbed.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from puffin_bt import TradingLSTM, set_seed
from puffin_bt.data import load_sample


def add_noise(series, noise_level=0.01):
    """Add small noise to create augmented samples."""
    noise = np.random.randn(len(series)) * noise_level * series.std()
    return series + noise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="less data, smaller nets (also PUFFIN_BT_QUICK=1)")
    args = parser.parse_args()
    quick = args.quick or os.environ.get("PUFFIN_BT_QUICK") == "1"
    set_seed(0)

    prices = load_sample("AAPL")["AAPL"]["close"].values[-(250 if quick else 504):]

    # Augment returns, not prices, and only the chronological training part (first 80%).
    returns = np.diff(np.log(prices))
    split = int(len(returns) * 0.8)
    train_returns, val_returns = returns[:split], returns[split:]
    augmented = add_noise(train_returns, noise_level=0.01)
    flipped = np.mean(np.sign(augmented) != np.sign(train_returns))
    print(f"augmented {len(train_returns)} training returns: noise std "
          f"{np.std(augmented - train_returns):.2e} (1% of {train_returns.std():.2e}); "
          f"{flipped:.1%} changed direction; {len(val_returns)} validation returns untouched")

    # TradingLSTM does the same inside fit: noise_level is in units of the standardised
    # returns (std 1), drawn afresh for every training batch; validation windows stay clean.
    hidden_dim = 16 if quick else 64
    for noise_level in (0.0, 0.01, 0.1):
        lstm = TradingLSTM(hidden_dim=hidden_dim, num_layers=1, noise_level=noise_level, patience=None)
        history = lstm.fit(prices, lookback=20, epochs=args.epochs, lr=0.001)
        print(f"noise_level={noise_level:g}: train_loss={history['train_loss'][-1]:.4f} "
              f"val_loss={history['val_loss'][-1]:.4f}")


if __name__ == "__main__":
    main()
