#!/usr/bin/env python
"""Conditional coverage of the conformal intervals: coverage per tercile of trailing 20-bar volatility and mean
width for split, ACI and the volatility-normalised score ("vol"), side by side on the bundled data.

    python bench/bench_coverage.py                     # the 4 bundled stocks, default model, 80% (~2 min idle)
    python bench/bench_coverage.py --tickers AAPL --coverage 0.9
    python bench/bench_coverage.py --scope global      # one global model, calibrated per ticker (~1 min idle)

Each method runs the same walk-forward (same seeds: the forecasts are identical, the line says so); only the
interval differs. A bar's tercile is that of its trailing volatility (standard deviation of the 20 log returns
ending at it, known at the bar) among the ticker's forecast bars; terciles are pooled over the tickers. The
naive line is no model: 0 +/- z * trailing volatility (the normal quantile). The issue's goal: every tercile
within +/-3 points of nominal, mean width at most 10% above split's.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from statistics import NormalDist

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _interleaved import machine_line  # noqa: E402

from puffin_bt import load_sample, walk_forward  # noqa: E402
from puffin_bt.dates import date_numbers_of  # noqa: E402
from puffin_bt.globalmodel import Series, make_global_walk_forward  # noqa: E402

METHODS = ("split", "aci", "vol")
TERCILES = ("calm", "middle", "stormy")


def trailing_std(closes: np.ndarray, window: int = 20) -> np.ndarray:
    """Standard deviation of the ``window`` log returns ending at each bar (NaN before there are that many)."""
    returns = np.diff(np.log(closes))
    out = np.full(len(closes), np.nan)
    view = np.lib.stride_tricks.sliding_window_view(returns, window)
    out[window:] = view.std(axis=1, ddof=1)
    return out


def tally(closes: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> dict[str, np.ndarray]:
    """Per forecast bar with an outcome: covered (0/1), width (simple return) and volatility tercile (0, 1, 2)."""
    realized = np.full(len(closes), np.nan)
    realized[:-1] = closes[1:] / closes[:-1] - 1
    vol = trailing_std(closes)
    ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(realized) & np.isfinite(vol)
    cuts = np.quantile(vol[ok], [1 / 3, 2 / 3])
    return {"covered": ((realized[ok] >= lo[ok]) & (realized[ok] <= hi[ok])).astype(float),
            "width": hi[ok] - lo[ok], "tercile": np.searchsorted(cuts, vol[ok], side="right")}


def pooled(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def cell(covered: np.ndarray) -> str:
    p, n = covered.mean(), len(covered)
    return f"{100 * p:5.1f} ±{100 * math.sqrt(p * (1 - p) / n):.1f}"


def global_lines(data: dict, coverage: float) -> dict:
    """One global model's forecast lines per interval method: ``{method: {ticker: (bars, 4)}}``."""
    series = [Series(t, date_numbers_of(f.index), f["close"].to_numpy(dtype=np.float64)) for t, f in data.items()]
    out = {}
    for method in METHODS:
        print(f"global {method} ...", file=sys.stderr, flush=True)
        walk = make_global_walk_forward("lstm", interval=coverage, interval_method=method, device="cpu")
        out[method] = walk.forecast_all_lines(series)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickers", nargs="+", default=None, help="bundled tickers (default: all)")
    ap.add_argument("--coverage", type=float, default=0.8)
    ap.add_argument("--scope", default="per_ticker", choices=("per_ticker", "global"))
    args = ap.parse_args()
    data = load_sample(args.tickers)
    z = NormalDist().inv_cdf(0.5 + args.coverage / 2)
    rows: dict[str, list] = {name: [] for name in (*METHODS, "naive")}
    identical = True
    lines = global_lines(data, args.coverage) if args.scope == "global" else {}
    for ticker, frame in data.items():
        closes = frame["close"].to_numpy(dtype=np.float64)
        forecasts = None
        for method in METHODS:
            print(f"{ticker} {method} ...", file=sys.stderr, flush=True)
            if args.scope == "global":
                log_return, lo, hi = lines[method][ticker][:, 0], lines[method][ticker][:, 2], lines[method][ticker][:, 3]
            else:
                res = walk_forward(closes, interval=args.coverage, interval_method=method, device="cpu")
                log_return, lo, hi = res.pred_log_return, res.pred_lo, res.pred_hi
            rows[method].append(tally(closes, lo, hi))
            if forecasts is None:
                forecasts = log_return
            identical &= bool(np.array_equal(forecasts, log_return, equal_nan=True))
        sigma = trailing_std(closes)
        naive_lo, naive_hi = np.expm1(-z * sigma), np.expm1(z * sigma)
        naive_lo[np.isnan(forecasts)] = np.nan  # the same bars as the models'
        rows["naive"].append(tally(closes, naive_lo, naive_hi))
    print(machine_line())
    print(f"work: {', '.join(data)} ({sum(len(f) for f in data.values())} bars), {args.scope} scope, default model "
          f"(LSTM 64x2, refit "
          f"every 21 bars, warm refits), {args.coverage:.0%} intervals; forecasts identical across methods: "
          f"{identical}")
    print("coverage % (± binomial s.e.) by tercile of trailing 20-bar volatility; width: mean hi - lo")
    print(f"  {'method':<7} {'calm':>11} {'middle':>11} {'stormy':>11} {'all':>11} {'width':>8} {'vs split':>9}")
    split_width = pooled(rows["split"])["width"].mean()
    for name, parts in rows.items():
        t = pooled(parts)
        terciles = " ".join(f"{cell(t['covered'][t['tercile'] == k]):>11}" for k in range(3))
        width = t["width"].mean()
        print(f"  {name:<7} {terciles} {cell(t['covered']):>11} {100 * width:7.2f}% {width / split_width:8.2f}x")


if __name__ == "__main__":
    main()
