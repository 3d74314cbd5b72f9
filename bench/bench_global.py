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
import sys
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _interleaved import best_and_median, machine_line, time_interleaved  # noqa: E402

from puffin_bt import backtest, load_sample  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--model", default="lstm", choices=("lstm", "gru"))
    args = ap.parse_args()
    frames = load_sample()
    backtest(load_sample(["IBM"], start="2012-01-01"), model=args.model, store=False, hidden_dim=8, epochs=1)  # warm-up
    times, results = time_interleaved({scope: partial(backtest, frames, model=args.model, store=False, scope=scope)
                                       for scope in ("per_ticker", "global")}, args.repeat)
    print(machine_line())
    bars = sum(len(df) for df in frames.values())
    print(f"work: default backtest, {args.model.upper()}, {len(frames)} tickers, {bars} bars, cold, no store; "
          f"best of {args.repeat} [median]")
    base = min(times["per_ticker"])
    for scope, values in times.items():
        print(f"  {scope:<11} {len(results[scope].folds):4d} folds  {best_and_median(values)}  "
              f"{min(values) / base:5.2f}x")


if __name__ == "__main__":
    main()
