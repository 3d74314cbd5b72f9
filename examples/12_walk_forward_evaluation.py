"""The chapter's "Walk-Forward Evaluation", done causally: every forecast comes from a fold
trained only on earlier bars, scored against what happened next and against naive baselines.
"""

from __future__ import annotations

import argparse
import os

from puffin_bt import load_sample
from puffin_bt.evaluation import evaluate_forecasts, walk_forward_forecasts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    quick = os.environ.get("PUFFIN_BT_QUICK") == "1"
    frames = load_sample(["AAPL", "IBM"], start="2011-01-01" if quick else None)
    options = dict(hidden_dim=8, num_layers=1, min_train=150, retrain_every=63) if quick else {}
    forecasts = walk_forward_forecasts(frames, model="lstm", epochs=args.epochs, **options)
    table = evaluate_forecasts(forecasts)
    columns = ["n", "mse", "mse_zero", "mse_persist", "mae", "r2", "direction_accuracy", "direction_p_value"]
    print("Walk-forward forecast quality (next-bar returns), model vs baselines on the same bars:")
    print(table[columns].to_string(float_format=lambda v: f"{v:.4g}"))
    pooled = table.loc["POOLED"]
    print(f"Direction accuracy {pooled['direction_accuracy']:.2%} "
          f"(p={pooled['direction_p_value']:.3f} against a coin flip)")


if __name__ == "__main__":
    main()
