#!/usr/bin/env python
"""What input features cost: the default model's walk-forward over one bundled ticker, closes only
against the same run with 3 built-in features, interleaved, in one process.

    python bench/bench_features.py                 # AAPL, 3 repeats of each
    python bench/bench_features.py --repeat 5 --features volume,rsi:14,volatility:20,range

Prints the best and median wall time of each and their ratio (the issue's target: <= 1.3x).
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
    ap.add_argument("--features", default="volume,rsi:14,volatility:20")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    frame = load_sample([args.ticker])[args.ticker]
    runs = {"closes only": {}, f"+ {args.features}": {"features": args.features}}
    walk_forward(frame.iloc[:400], hidden_dim=8, epochs=1)  # warm-up: imports, allocator, first kernels
    times, results = time_interleaved({name: partial(walk_forward, frame, device="cpu", **extra)
                                       for name, extra in runs.items()}, args.repeat)
    print(machine_line())
    print(f"work: {args.ticker} {len(frame)} bars, default model (LSTM 64x2, lookback 20, refit every 21 bars, "
          f"{len(results['closes only'].folds)} folds), best of {args.repeat} [median]")
    best = {}
    for name, values in times.items():
        best[name] = min(values)
        print(f"  {name:<40} {best_and_median(values)}")
    base, other = list(best.values())
    print(f"ratio with features / closes only: {other / base:.2f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()
