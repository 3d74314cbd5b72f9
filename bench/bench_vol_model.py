#!/usr/bin/env python
"""What a volatility model costs next to the return model of the same size, and how it scores: the walk-forward of
each bundled ticker with ``target="return"`` and with ``target="volatility"`` (the default model otherwise), timed
interleaved in one process, per fold and in all; then the volatility model's QLIKE per ticker and pooled next to
HAR-RV, EWMA, the trailing 20-bar estimate and GARCH(1,1) refitted at its fold bars (``voleval``), with the DM p
against HAR.

    python bench/bench_vol_model.py                      # 4 bundled tickers, default model, horizon 5, 3 repeats
    python bench/bench_vol_model.py --horizon 1 --repeat 1 --model gru
    python bench/bench_vol_model.py --options '{"hidden_dim": 16, "num_layers": 1, "dropout": 0, "lookback": 60,
        "epochs": 30, "patience": 5, "refit_epochs": null, "retrain_every": 63}'   # docs/volatility.md's recipe
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _interleaved import machine_line, time_interleaved  # noqa: E402

from puffin_bt import load_sample  # noqa: E402
from puffin_bt.voleval import evaluate_volatility, format_volatility_table, volatility_frame  # noqa: E402
from puffin_bt.walkforward import make_walk_forward  # noqa: E402


def walk_all(closes: dict[str, np.ndarray], model: str, options: dict) -> dict:
    """Each ticker's walk-forward from scratch: its forecast lines, folds and training seconds."""
    out = {}
    for ticker, c in closes.items():
        walk = make_walk_forward(model, **options)
        lines = walk.forecast_lines(c, 0, len(c))
        out[ticker] = (lines, [f.bar for f in walk.folds], walk.training_seconds, walk.schedule.train_window)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lstm")
    ap.add_argument("--horizon", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--options", default="{}", help="JSON of walk-forward options for both models (default: defaults)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    frames = load_sample()
    closes = {t: df["close"].to_numpy(np.float64) for t, df in frames.items()}
    common = {**json.loads(args.options), "horizon": args.horizon, "device": "cpu", "fold_workers": 1}
    cases = {target: partial(walk_all, closes, args.model, {**common, "target": target})
             for target in ("return", "volatility")}
    times, results = time_interleaved(cases, args.repeat)
    print(machine_line())
    folds = sum(len(bars) for _, bars, _, _ in results["return"].values())
    print(f"work: {args.model} {args.options} ({', '.join(closes)}: {sum(map(len, closes.values()))} bars, {folds} folds "
          f"in all), horizon {args.horizon}, one process, 1 thread; best of {args.repeat} [median]")
    for target in cases:
        wall = min(times[target])
        training = sum(seconds for _, _, seconds, _ in results[target].values())
        ratio = wall / min(times["return"])
        print(f"  target={target:<10} {wall:7.2f} s [{np.median(times[target]):.2f} s]  "
              f"{1e3 * wall / folds:6.1f} ms a fold (training {1e3 * training / folds:.1f} ms)  x{ratio:.2f} the return model")
    parts = [volatility_frame(t, frames[t].index, closes[t], lines, args.horizon, bars, train_window=window)
             for t, (lines, bars, _, window) in results["volatility"].items()]
    table = evaluate_volatility(pd.concat(parts, ignore_index=True), args.horizon)
    print(f"QLIKE of the realised variance over the next {args.horizon} bar(s), same bars for all (lower is better):")
    print(format_volatility_table(table))


if __name__ == "__main__":
    main()
