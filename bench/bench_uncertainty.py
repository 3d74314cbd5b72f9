#!/usr/bin/env python
"""What uncertainty costs: the default model's walk-forward with a seed ensemble of K = 4 and 8 next to one
model, for warm and cold refits, and conformal intervals next to none; interleaved, in one process.

    python bench/bench_uncertainty.py                  # AAPL's first 1,000 bars, 2 repeats (~9 min)
    python bench/bench_uncertainty.py --only interval --repeat 7   # the intervals alone (~1 min)
    python bench/bench_uncertainty.py --bars 2148 --repeat 3

The issue's targets: an ensemble of 8 at most 3x one model, intervals under 5%.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _interleaved import best_and_median, machine_line, time_interleaved  # noqa: E402

from puffin_bt import load_sample, walk_forward  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticker", default="AAPL")
    ap.add_argument("--bars", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--only", choices=("ensemble", "interval"), help="one part of the bench")
    args = ap.parse_args()
    closes = load_sample([args.ticker])[args.ticker]["close"].to_numpy()[: args.bars]
    runs = {}
    for refit, label in ((1, "warm"), (None, "cold")):
        for k in (1, 4, 8):
            if args.only != "interval" or (label == "warm" and k == 1):
                runs[f"{label} K={k}"] = dict(refit_epochs=refit, ensemble=k)
    if args.only != "ensemble":
        runs["warm K=1 + interval 0.8 (split)"] = dict(interval=0.8)
        runs["warm K=1 + interval 0.8 (aci)"] = dict(interval=0.8, interval_method="aci")
    walk_forward(closes[:400], hidden_dim=8, epochs=1, ensemble=2)  # warm-up
    times, results = time_interleaved({name: partial(walk_forward, closes, device="cpu", **extra)
                                       for name, extra in runs.items()}, args.repeat)
    print(machine_line())
    print(f"work: {args.ticker}'s first {len(closes)} bars, default model (LSTM 64x2, refit every 21 bars, "
          f"{len(results['warm K=1'].folds)} folds; cold folds on the fold pool), best of {args.repeat} [median]")
    best = {name: min(values) for name, values in times.items()}
    for name, values in times.items():
        base = best["warm K=1"] if name.startswith("warm") else best.get("cold K=1")
        print(f"  {name:<34} {best_and_median(values)}  {min(values) / base:5.2f}x")


if __name__ == "__main__":
    main()
