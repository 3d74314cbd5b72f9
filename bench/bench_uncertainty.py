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
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

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
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, extra in runs.items():  # interleaved: a slow spell of the machine hits every line
            started = time.perf_counter()
            res = walk_forward(closes, device="cpu", **extra)
            times[name].append(time.perf_counter() - started)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"work: {args.ticker}'s first {len(closes)} bars, default model (LSTM 64x2, refit every 21 bars, "
          f"{len(res.folds)} folds; cold folds on the fold pool), best of {args.repeat} [median]")
    best = {name: min(values) for name, values in times.items()}
    for name, values in times.items():
        base = best["warm K=1"] if name.startswith("warm") else best.get("cold K=1")
        print(f"  {name:<34} {min(values):7.2f} s  [{statistics.median(values):.2f} s]  {min(values) / base:5.2f}x")


if __name__ == "__main__":
    main()
