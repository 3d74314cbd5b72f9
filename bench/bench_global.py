#!/usr/bin/env python
"""What one global model costs: the default backtest of the bundled portfolio with per-ticker models
(`scope="per_ticker"`, the default) against one model over every ticker (`scope="global"`), cold, no
forecast store, interleaved, in one process.

    python bench/bench_global.py                  # 4 tickers x 2,148 bars, 2 repeats (~2 min)
    python bench/bench_global.py --repeat 3 --model gru

The issue's target: the global run at most 1.5x the per-ticker run's wall time on 2 cores.
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

from puffin_bt import backtest, load_sample  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--model", default="lstm", choices=("lstm", "gru"))
    args = ap.parse_args()
    frames = load_sample()
    backtest(load_sample(["IBM"], start="2012-01-01"), model=args.model, store=False, hidden_dim=8, epochs=1)  # warm-up
    times: dict[str, list[float]] = {"per_ticker": [], "global": []}
    folds = {}
    for _ in range(args.repeat):
        for scope in times:  # interleaved: a slow spell of the machine hits both
            started = time.perf_counter()
            res = backtest(frames, model=args.model, store=False, scope=scope)
            times[scope].append(time.perf_counter() - started)
            folds[scope] = len(res.folds)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    bars = sum(len(df) for df in frames.values())
    print(f"work: default backtest, {args.model.upper()}, {len(frames)} tickers, {bars} bars, cold, no store; "
          f"best of {args.repeat} [median]")
    base = min(times["per_ticker"])
    for scope, values in times.items():
        print(f"  {scope:<11} {folds[scope]:4d} folds  {min(values):7.2f} s  [{statistics.median(values):.2f} s]  "
              f"{min(values) / base:5.2f}x")


if __name__ == "__main__":
    main()
