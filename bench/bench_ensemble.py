#!/usr/bin/env python
"""Cheap ensembles (``ensemble_method``) side by side: the default model's walk-forward on each bundled ticker,
one model next to ensembles of K members made by each method, in one run: cost, accuracy and how well the spread
ranks the errors.

    python bench/bench_ensemble.py                      # 4 tickers x 2,148 bars, K=8, 1 round (~6 min on 2 cores)
    python bench/bench_ensemble.py --tickers AAPL --bars 800 --methods folds   # a smoke run (~10 s)

Every run has a split-conformal 80% interval (``interval=0.8``), so each method's own conformal interval is
scored too. Scored on the bars where every run has every line (from the second fold on: the "folds" ensemble has
one member, hence no spread, in its first fold), against the realised next-bar simple return:
- ``cost``: the run's wall time over one model's, and its CPU time over one model's (sums over the tickers, best
  of ``--repeat`` rounds; a warm walk-forward runs in this one process, so its CPU time is its work, the figure
  that other processes on the machine disturb least);
- ``MSE/one``, ``MSE/zero``: squared error of pred_return over one model's (pooled, and min..max over the
  tickers) and over the zero forecast's;
- ``rho``: Spearman rank correlation of pred_std (the members' spread) with the absolute error, per ticker
  (mean, and min..max over the tickers; its standard error is about 1/sqrt(bars), 0.02 here);
- ``spread 80%``: the interval pred_return -/+ z * pred_std (z = 1.2816): coverage and pinball loss (the mean of
  the 0.1 and 0.9 quantile losses, x 1e3); ``conformal 80%``: the same for the run's pred_lo/pred_hi.
Baselines: the zero forecast with -/+ z x the trailing 60-bar realised volatility.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from _interleaved import machine_line  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from puffin_bt import load_sample, walk_forward  # noqa: E402
from puffin_bt.intervals import trailing_volatility  # noqa: E402

Z80 = 1.2815515655446004  # the standard normal's 0.9 quantile
METHODS = ("seeds", "folds")


def pinball(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Mean pinball loss of ``lo`` as the 0.1 and ``hi`` as the 0.9 quantile of ``y``, x 1e3."""
    def loss(q: float, pred: np.ndarray) -> np.ndarray:
        return np.maximum(q * (y - pred), (q - 1) * (y - pred))
    return 1e3 * float(np.mean((loss(0.1, lo) + loss(0.9, hi)) / 2))


def scores(y: np.ndarray, pred: np.ndarray, std: np.ndarray | None, lo: np.ndarray, hi: np.ndarray) -> dict:
    """One run's scores on one ticker's scored bars (``std`` None: no spread)."""
    err = y - pred
    out = {"sse": float(np.sum(err**2)), "n": len(y), "conf_cover": float(np.mean((y >= lo) & (y <= hi))),
           "conf_pinball": pinball(y, lo, hi)}
    if std is not None:
        out["rho"] = float(spearmanr(std, np.abs(err)).statistic)
        slo, shi = pred - Z80 * std, pred + Z80 * std
        out["spread_cover"] = float(np.mean((y >= slo) & (y <= shi)))
        out["spread_pinball"] = pinball(y, slo, shi)
    return out


def timed(cases: dict, repeat: int) -> tuple[dict, dict, dict]:
    """Every case ``repeat`` times, case after case in each round: wall times, CPU times, last results."""
    wall: dict = {name: [] for name in cases}
    cpu: dict = {name: [] for name in cases}
    results = {}
    for _ in range(repeat):
        for name, case in cases.items():
            w, c = time.perf_counter(), time.process_time()
            results[name] = case()
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
    return wall, cpu, results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickers", nargs="+", default=["AAPL", "GOOG", "IBM", "MSFT"])
    ap.add_argument("--bars", type=int, default=None, help="each ticker's first BARS bars (default: all)")
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--repeat", type=int, default=1, help="rounds of timing (the forecasts are the same each round)")
    args = ap.parse_args()
    frames = load_sample(args.tickers)
    closes = {t: frames[t]["close"].to_numpy(np.float64)[: args.bars] for t in args.tickers}
    runs = {"one model": {}, **{f"{m} K={args.members}": dict(ensemble=args.members, ensemble_method=m)
                                for m in args.methods}}
    walk_forward(closes[args.tickers[0]][:400], hidden_dim=8, epochs=1, ensemble=2)  # warm-up
    cases = {(name, t): partial(walk_forward, closes[t], device="cpu", interval=0.8, **extra)
             for t in args.tickers for name, extra in runs.items()}
    times, cpu, results = timed(cases, args.repeat)

    print(machine_line())
    folds = len(results[("one model", args.tickers[0])].folds)
    print(f"work: {', '.join(args.tickers)} ({len(closes[args.tickers[0]])} bars each), the default model (LSTM 64x2, "
          f"warm refit every 21 bars: {folds} folds), interval=0.8 split; best of {args.repeat} round(s)")
    per: dict[str, list[dict]] = {name: [] for name in runs}
    baseline: list[dict] = []
    for t in args.tickers:
        c = closes[t]
        y = np.full(len(c), np.nan)
        y[:-1] = c[1:] / c[:-1] - 1
        ok = np.isfinite(y)
        for name in runs:  # one model has no spread (column 1)
            ok &= np.isfinite(results[(name, t)].lines[:, [0, 2, 3] if name == "one model" else slice(None)]).all(1)
        for name in runs:
            r = results[(name, t)]
            std = None if name == "one model" else r.pred_std[ok]
            per[name].append(scores(y[ok], r.pred_return[ok], std, r.pred_lo[ok], r.pred_hi[ok]))
        vol = trailing_volatility(c, np.flatnonzero(ok))
        baseline.append(scores(y[ok], np.zeros(ok.sum()), None, -Z80 * vol, Z80 * vol))
    sse_one = sum(s["sse"] for s in per["one model"])
    sse_zero = sum(s["sse"] for s in baseline)
    cost_one = sum(min(times[("one model", t)]) for t in args.tickers)
    cpu_one = sum(min(cpu[("one model", t)]) for t in args.tickers)
    print(f"scored bars: {sum(s['n'] for s in baseline)}")
    print(f"{'':<16}{'cost: wall':>11}{'CPU':>7}{'MSE/one (min..max)':>24}{'MSE/zero':>10}{'rho (min..max)':>22}{'spread 80%: cover':>19}"
          f"{'pinball':>9}{'conformal 80%: cover':>22}{'pinball':>9}")
    for name in runs:
        s = per[name]
        cost = sum(min(times[(name, t)]) for t in args.tickers) / cost_one
        cost_cpu = sum(min(cpu[(name, t)]) for t in args.tickers) / cpu_one
        sse = sum(x["sse"] for x in s)
        ratios = [x["sse"] / one["sse"] for x, one in zip(s, per["one model"])]
        line = f"{name:<16}{cost:10.2f}x{cost_cpu:6.2f}x{sse / sse_one:9.3f} ({min(ratios):.3f}..{max(ratios):.3f}){sse / sse_zero:10.3f}"
        if name == "one model":
            line += f"{'-':>22}{'-':>19}{'-':>9}"
        else:
            rho = [x["rho"] for x in s]
            line += (f"{np.mean(rho):+10.3f} ({min(rho):+.2f}..{max(rho):+.2f})"
                     f"{np.mean([x['spread_cover'] for x in s]):19.1%}{np.mean([x['spread_pinball'] for x in s]):9.3f}")
        line += f"{np.mean([x['conf_cover'] for x in s]):22.1%}{np.mean([x['conf_pinball'] for x in s]):9.3f}"
        print(line)
    print(f"{'zero, +-z*vol60':<16}{'':>18}{sse_zero / sse_one:9.3f}{'':>15}{1.0:10.3f}{'':>22}{'':>19}{'':>9}"
          f"{np.mean([x['conf_cover'] for x in baseline]):22.1%}{np.mean([x['conf_pinball'] for x in baseline]):9.3f}")
    print("wall seconds per ticker (best round): " + "; ".join(
        f"{name}: " + " ".join(f"{min(times[(name, t)]):.1f}" for t in args.tickers) for name in runs))


if __name__ == "__main__":
    main()
