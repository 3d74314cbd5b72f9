#!/usr/bin/env python
"""TCN against the LSTM on the default workload: time per fold and forecast quality, side by side in one run.

    python bench/bench_tcn.py            # the bundled sample, every ticker, default options (a few minutes)
    python bench/bench_tcn.py --quick    # one ticker from 2011 (< 1 minute)

Each ticker is walked forward with the default options (``puffin-bt backtest``'s: 64 units/channels x 2, lookback
20, retrain every 21 bars, 10 epochs then 1-epoch warm refits) by each family in turn, in this one process
(threads=1, fold_workers=1, CPU), the families interleaved ticker by ticker so that a busy machine slows both
alike. Per family: training seconds per fold (median over tickers) and, on the same bars, the forecasts' MSE
against the realised next-bar log return next to the zero forecast's, and the direction accuracy with its
standard error (50% is a coin). Prints the machine it ran on.
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
if str(ROOT) not in sys.path:  # run from anywhere without installing the package
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from puffin_bt import load_sample  # noqa: E402
from puffin_bt.walkforward import make_walk_forward  # noqa: E402

FAMILIES = ("lstm", "tcn")


def run_one(cell: str, closes: np.ndarray) -> dict:
    walk = make_walk_forward(cell, device="cpu", threads=1, fold_workers=1)
    started = time.perf_counter()
    pred = walk.run(closes).pred_log_return
    wall = time.perf_counter() - started
    realised = np.full(len(closes), np.nan)
    realised[:-1] = np.diff(np.log(closes))  # the next bar's log return, known one bar after the forecast
    ok = np.isfinite(pred) & np.isfinite(realised)
    hit = np.sign(pred[ok]) == np.sign(realised[ok])
    return {"folds": len(walk.folds), "per_fold": walk.training_seconds / len(walk.folds), "wall": wall,
            "n": int(ok.sum()), "mse": float(np.mean((pred[ok] - realised[ok]) ** 2)),
            "mse_zero": float(np.mean(realised[ok] ** 2)), "hits": int(hit.sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one ticker from 2011")
    args = parser.parse_args()
    torch.set_num_threads(1)
    frames = load_sample(["AAPL"], start="2011-01-01") if args.quick else load_sample()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at start; torch {torch.__version__}; tickers {', '.join(frames)}")
    results: dict[str, list[dict]] = {cell: [] for cell in FAMILIES}
    for ticker, frame in frames.items():
        closes = frame["close"].to_numpy(np.float64)
        for cell in FAMILIES:
            r = run_one(cell, closes)
            results[cell].append(r)
            print(f"  {ticker} {cell}: {r['folds']} folds, {r['per_fold'] * 1000:.0f} ms/fold, MSE "
                  f"{r['mse']:.3e} (zero {r['mse_zero']:.3e}), direction {r['hits'] / r['n']:.1%} of {r['n']}",
                  flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'family':7} {'ms/fold (median)':>17} {'MSE / MSE(zero)':>16} {'direction accuracy':>20}")
    base = statistics.median(r["per_fold"] for r in results["lstm"])
    for cell, rows in results.items():
        per_fold = statistics.median(r["per_fold"] for r in rows)
        n, hits = sum(r["n"] for r in rows), sum(r["hits"] for r in rows)
        ratio = sum(r["mse"] * r["n"] for r in rows) / sum(r["mse_zero"] * r["n"] for r in rows)
        p = hits / n
        print(f"{cell:7} {per_fold * 1000:10.0f} ({per_fold / base:.2f}x) {ratio:16.4f} "
              f"{p:13.1%} +- {np.sqrt(p * (1 - p) / n):.1%}")


if __name__ == "__main__":
    main()
