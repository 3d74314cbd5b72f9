#!/usr/bin/env python
"""A threshold sweep in Backtrader's own ``cerebro.optstrategy``: trained once, not once per combination.

    python bench/bench_optstrategy.py               # ~3 min on 2 cores
    python bench/bench_optstrategy.py --quick       # fewer bars, ~1 min

Every case is a fresh process with a fresh (empty) default forecast store, run through
``_measure.py`` (wall time, peak RSS), interleaved round by round (``--repeat``; best and median):

  one run       cerebro.addstrategy(ForecastThresholdStrategy): trains each ticker's forecasts (no store)
  3 combos      cerebro.optstrategy(ForecastThresholdStrategy, entry=[3 values]), maxcpus=1
  3 combos x3   the same with maxcpus=3: three forked workers, one trains per forecast, the others wait for it
  3, store off  3 combos with forecast_kwargs={"store": False}: every combination trains (the behaviour before)
  10 / 100      optstrategy over 10 and 100 entry values, maxcpus=1: peak memory (optreturn, the default)

Targets (issue 24): 3 combos <= 1.3x one run; peak memory of 100 combos <= 1.2x that of 10. The seconds
are Cerebro.run's (imports and data loading excluded; the same in every case).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import backtrader as bt  # noqa: E402

# A small model on two bundled tickers, four years of daily bars.
FORECAST = dict(hidden_dim=32, num_layers=1, lookback=20, min_train=252, retrain_every=63, train_window=504,
                epochs=10, refit_epochs=3, batch_size=64, device="cpu")
CASES = {"one run": (0, 1), "3 combos": (3, 1), "3 combos x3": (3, 3), "3, store off": (3, 1), "10 combos": (10, 1),
         "100 combos": (100, 1)}


class Trained(bt.Analyzer):
    """How many of the strategy's forecasts trained networks (a store hit restores none)."""

    def stop(self):
        self.rets["trained"] = sum(bool(fc.walk.nets) for fc in self.strategy.forecasts.values())


def child(case: str, quick: bool) -> None:
    """One case in this process; prints {"seconds", "trained", "combos"} as JSON."""
    import numpy as np

    from puffin_bt import load_sample
    from puffin_bt.adapters.feeds import FrameData
    from strategies import ForecastThresholdStrategy

    combos, maxcpus = CASES[case]
    cerebro = bt.Cerebro(stdstats=False, maxcpus=maxcpus)
    start = "2011-01-01" if quick else "2009-01-01"
    for name, df in load_sample(["AAPL", "MSFT"], start=start, end="2012-12-31").items():
        cerebro.adddata(FrameData(dataname=df), name=name)
    cerebro.broker.setcash(100_000)
    cerebro.addanalyzer(Trained, _name="trained")
    if combos:
        kwargs = {**FORECAST, "store": False} if "store off" in case else FORECAST
        cerebro.optstrategy(ForecastThresholdStrategy, entry=list(np.linspace(0.0, 0.01, combos)),
                            forecast_kwargs=[kwargs], plot_forecast=False)
    else:
        cerebro.addstrategy(ForecastThresholdStrategy, forecast_kwargs=FORECAST, plot_forecast=False)
    t0 = time.perf_counter()
    results = cerebro.run()
    seconds = time.perf_counter() - t0
    strats = [r[0] for r in results] if combos else results
    trained = sum(s.analyzers.trained.get_analysis()["trained"] for s in strats)
    print(json.dumps({"seconds": seconds, "trained": trained, "combos": len(strats)}))


def measure(case: str, quick: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-optstrategy-") as cache:
        out, err = Path(cache) / "out.txt", Path(cache) / "err.txt"
        env = {**os.environ, "PUFFIN_BT_CACHE": cache, "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, str(HERE / "_measure.py"), str(out), str(err), "--sample", "rss", "--",
               sys.executable, str(Path(__file__).resolve()), "--child", case, *(["--quick"] if quick else [])]
        meta = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
        if meta["rc"] != 0:
            raise SystemExit(f"{case} failed:\n{err.read_text()[-3000:]}")
        return {**meta, **json.loads(out.read_text().strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; the best and median are shown")
    parser.add_argument("--quick", action="store_true", help="two years of bars instead of four")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.quick)
        return
    from bench_walkforward import cpu_model

    runs: dict[str, list[dict]] = {case: [] for case in CASES}
    for _ in range(args.repeat):
        for case in CASES:
            runs[case].append(measure(case, args.quick))
    best = {case: min(got, key=lambda r: r["seconds"]) for case, got in runs.items()}
    median = {case: statistics.median(r["seconds"] for r in got) for case, got in runs.items()}
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"{args.repeat} interleaved rounds; {'2011-2012' if args.quick else '2009-2012'} AAPL+MSFT; "
          f"model {FORECAST}")
    print(f"{'case':<14}{'combos':>7}{'nets trained':>14}{'best s':>9}{'x one':>8}{'median s':>10}{'x one':>8}"
          f"{'peak RSS MiB':>14}{'tree RSS MiB':>14}")
    for case, got in best.items():
        print(f"{case:<14}{got['combos']:>7}{got['trained']:>14}{got['seconds']:>9.2f}"
              f"{got['seconds'] / best['one run']['seconds']:>8.2f}{median[case]:>10.2f}"
              f"{median[case] / median['one run']:>8.2f}{max(r['peak_rss_mb'] for r in runs[case]):>14.0f}"
              f"{max(r['tree_peak_rss_mb'] or 0 for r in runs[case]):>14.0f}")
    ratio = max(r["peak_rss_mb"] for r in runs["100 combos"]) / max(r["peak_rss_mb"] for r in runs["10 combos"])
    print(f"3 combos / one run: {best['3 combos']['seconds'] / best['one run']['seconds']:.2f}x best, "
          f"{median['3 combos'] / median['one run']:.2f}x median (target <= 1.3x); maxcpus=3: "
          f"{median['3 combos x3'] / median['one run']:.2f}x median; peak memory 100 / 10 combos: {ratio:.2f}x "
          "(target <= 1.2x)")


if __name__ == "__main__":
    main()
