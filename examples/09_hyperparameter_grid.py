"""Chapter: "Hyperparameter Tuning" -- the chapter's grid, where every parameter reaches the model.

hidden_dim/num_layers/dropout go to TradingLSTM(...), lookback/lr to fit(...); --full runs all 162 points.
"""

from __future__ import annotations

import argparse
import itertools
import os

from puffin_bt import TradingLSTM
from puffin_bt.data import load_sample


def parameter_grid(grid: dict):
    """Every combination of the grid's values, like sklearn.model_selection.ParameterGrid."""
    for values in itertools.product(*grid.values()):
        yield dict(zip(grid, values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="the chapter's full 3x3x3x2x3 grid (slow)")
    parser.add_argument("--quick", action="store_true", help="a 2x2x2x1x1 grid on less data (also PUFFIN_BT_QUICK=1)")
    args = parser.parse_args()
    quick = args.quick or os.environ.get("PUFFIN_BT_QUICK") == "1"

    # Define hyperparameter grid
    if args.full:
        param_grid = {
            'hidden_dim': [32, 64, 128],
            'num_layers': [1, 2, 3],
            'dropout': [0.1, 0.2, 0.3],
            'lr': [0.001, 0.0001],
            'lookback': [10, 20, 30]
        }
    elif quick:
        param_grid = {'hidden_dim': [8, 16], 'num_layers': [1, 2], 'dropout': [0.1, 0.3], 'lr': [0.001],
                      'lookback': [10]}
    else:
        param_grid = {'hidden_dim': [16, 32], 'num_layers': [1, 2], 'dropout': [0.1, 0.3], 'lr': [0.001, 0.01],
                      'lookback': [10, 20]}

    prices = load_sample("AAPL")["AAPL"]["close"].values[-(250 if quick else 504):]

    best_params = None
    best_val_loss = float('inf')
    results = []

    for params in parameter_grid(param_grid):
        lstm = TradingLSTM(hidden_dim=params['hidden_dim'], num_layers=params['num_layers'],
                           dropout=params['dropout'])
        history = lstm.fit(
            prices,
            lookback=params['lookback'],
            epochs=args.epochs,
            lr=params['lr']
        )

        # The fitted model holds the best epoch's weights (early stopping restores them).
        val_loss = history['val_loss'][history['best_epoch']]
        results.append(val_loss)
        print(f"{params} -> val_loss={val_loss:.4f}")

        if val_loss < best_val_loss:
            best_val_loss = val_loss
            best_params = params

    print(f"Distinct results: {len(set(results))} of {len(results)} grid points")
    print(f"Best parameters: {best_params}")
    print(f"Best validation loss: {best_val_loss:.4f}")


if __name__ == "__main__":
    main()
