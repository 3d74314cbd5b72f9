#!/usr/bin/env python
"""What the volatility baselines cost: HAR, EWMA, trailing-20 and GARCH(1,1) forecasts of the realised variance
(``puffin_bt.volbaselines``) for the bundled tickers on the default walk-forward's refit bars, timed interleaved
in one process, with each baseline's pooled QLIKE on the same bars beside its time.

    python bench/bench_vol_baselines.py                 # the 4 bundled tickers, horizon 1, 5 repeats (~1 min)
    python bench/bench_vol_baselines.py --horizon 5 --repeat 3
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _interleaved import machine_line, time_interleaved  # noqa: E402

from puffin_bt import load_sample  # noqa: E402
from puffin_bt.options import forecast_defaults  # noqa: E402
from puffin_bt.schedule import FoldSchedule  # noqa: E402
from puffin_bt.volatility import qlike, realised_variance_target  # noqa: E402
from puffin_bt.volbaselines import available_methods, baseline_variances  # noqa: E402


def all_tickers(closes: dict[str, np.ndarray], horizon: int, refits: dict[str, list[int]], window: int | None,
                method: str) -> dict:
    return {t: baseline_variances(c, horizon, refits[t], methods=[method], train_window=window)[method]
            for t, c in closes.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--horizon", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    closes = {t: df["close"].to_numpy() for t, df in load_sample().items()}
    defaults = forecast_defaults()
    schedule = FoldSchedule(**{name: defaults[name] for name in FoldSchedule.NAMES} | {"horizon": args.horizon})
    refits = {t: schedule.fold_bars(len(c)) for t, c in closes.items()}
    methods = available_methods()
    window = schedule.train_window  # HAR and GARCH fit on the nets' training window (DESIGN rule 12)
    all_tickers(closes, args.horizon, refits, window, "trailing")  # warm-up: imports, caches
    times, results = time_interleaved({m: partial(all_tickers, closes, args.horizon, refits, window, m)
                                       for m in methods}, args.repeat)
    print(machine_line())
    print(f"work: {len(closes)} bundled tickers ({', '.join(closes)}), {sum(map(len, closes.values()))} bars, "
          f"refit every {schedule.retrain_every} bars from bar {schedule.first_fold_bar} "
          f"({sum(map(len, refits.values()))} refits in all) on the last {window} bars, horizon {args.horizon}; best of "
          f"{args.repeat} [median]")
    if "garch" not in methods:
        print("  garch: skipped (pip install 'puffin_bt[garch]')")
    for method in methods:
        losses = []
        for ticker, c in closes.items():
            bars = np.arange(refits[ticker][0], len(c) - args.horizon)
            losses.append(qlike(results[method][ticker][bars], realised_variance_target(c, bars, args.horizon)))
        pooled = float(np.mean(np.concatenate(losses)))
        best, median = min(times[method]) * 1e3, float(np.median(times[method])) * 1e3
        per_refit = best / sum(map(len, refits.values()))
        print(f"  {method:<9} {best:9.1f} ms [{median:.1f} ms]  {per_refit:6.3f} ms a refit   pooled QLIKE {pooled:.4f}")


if __name__ == "__main__":
    main()
