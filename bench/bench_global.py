#!/usr/bin/env python
"""What one global model costs: the default backtest of the bundled portfolio with per-ticker models
(`scope="per_ticker"`, the default) against one model over every ticker (`scope="global"`), cold, no
forecast store, interleaved, in one process. The global model runs as before (`global_chains=1`: one chain of
warm refits, on one core) and as now (the default `global_chains=2`: two chains side by side, one per core),
with the forecasts' accuracy next to each (MSE and direction accuracy over every ticker's forecast bars, with
the always-zero forecast's MSE and the up rate as baselines), so that the faster design loses nothing unseen.

    python bench/bench_global.py                  # 4 tickers x 2,148 bars, 2 repeats (~4 min on 2 idle cores)
    python bench/bench_global.py --repeat 3 --model gru

The issue's target: the global run at most 1.2x the per-ticker run's wall time on 2 cores. CPU seconds are
those of this process and its workers (the ticker and fold pools): what the cores did, whatever else ran; on a
machine shared with other work the wall times say little, the split of the CPU between the processes more.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _interleaved import best_and_median, machine_line, time_interleaved  # noqa: E402

from puffin_bt import backtest, load_sample  # noqa: E402
from puffin_bt.evaluation import forecast_metrics  # noqa: E402


def cpu_by_process() -> dict:
    """User + system CPU seconds of this process (key 0), of each live child (the fold pool's workers, by pid) and
    of the children already reaped (key -1: the ticker pool's, which exit after each run)."""
    def of(pid: int) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    kids = {int(pid) for task in Path(f"/proc/{os.getpid()}/task").glob("*/children")
            for pid in task.read_text().split()}  # children started by any thread (the pools' own included)
    reaped = os.times()
    return {0: of(os.getpid()), -1: reaped.children_user + reaped.children_system, **{pid: of(pid) for pid in kids}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--model", default="lstm", choices=("lstm", "gru"))
    args = ap.parse_args()
    frames = load_sample()
    backtest(load_sample(["IBM"], start="2012-01-01"), model=args.model, store=False, hidden_dim=8, epochs=1)  # warm-up
    cases = {"per_ticker": dict(scope="per_ticker"), "global, 1 chain (before)": dict(scope="global", global_chains=1),
             "global, 2 chains (now)": dict(scope="global")}
    cpu: dict[str, list[tuple]] = {name: [] for name in cases}  # (process tree, this process, its workers)

    def run(name: str, options: dict):
        before = cpu_by_process()
        result = backtest(frames, model=args.model, store=False, **options)
        after = cpu_by_process()
        # totals, not per pid: a worker that exits moves its CPU from its pid to the reaped children's
        tree, main = sum(after.values()) - sum(before.values()), after[0] - before[0]
        cpu[name].append((tree, main, tree - main))
        return result

    times, results = time_interleaved({name: partial(run, name, options) for name, options in cases.items()},
                                      args.repeat)
    print(machine_line())
    bars = sum(len(df) for df in frames.values())
    print(f"work: default backtest, {args.model.upper()}, {len(frames)} tickers, {bars} bars, cold, no store; "
          f"best of {args.repeat} [median]; CPU s of the best run: this process + its workers")
    base = min(times["per_ticker"])
    print("  ratio: best / best per-ticker; round: the median [range] of each round's ratio to that round's "
          "per-ticker run (robust to a machine whose load drifts)")
    for name, values in times.items():
        rounds = sorted(v / p for v, p in zip(values, times["per_ticker"]))
        best = int(np.argmin(values))
        f = results[name].forecasts
        m = forecast_metrics(f["pred_return"].to_numpy(), f["realized_return"].to_numpy(), f["ticker"].to_numpy())
        mse_zero = float(np.nanmean(f["realized_return"].to_numpy() ** 2))
        print(f"  {name:<25} {len(results[name].folds):4d} folds  {best_and_median(values)}  "
              f"{min(values) / base:5.2f}x  round {np.median(rounds):4.2f}x [{rounds[0]:.2f}-{rounds[-1]:.2f}]  "
              f"CPU {cpu[name][best][0]:5.1f} = {cpu[name][best][1]:4.1f} + "
              f"{cpu[name][best][2]:4.1f} s  | MSE {m['mse']:.4e} (zero {mse_zero:.4e})  "
              f"dir acc {m['direction_accuracy']:.4f} (up rate {m['up_rate']:.4f}, n {m['n']})")


if __name__ == "__main__":
    main()
