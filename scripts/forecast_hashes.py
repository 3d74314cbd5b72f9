"""Hash every fold's forecasts of the built-in families on the bundled sample, to prove a restructuring moves nothing.

Run it before and after a change and diff the outputs: each line is one walk-forward (family, cold or warm refits,
and the path it takes: single process, ensemble + interval, features, lockstep universe, global scope) and the
SHA-256 of each fold's forecast lines, bit for bit. Small but real: one or two tickers, a few folds, tiny nets.

    python scripts/forecast_hashes.py > before.txt   # ... change ... then again > after.txt; diff before.txt after.txt
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import torch

from puffin_bt.data import load_sample
from puffin_bt.globalmodel import Series, make_global_walk_forward
from puffin_bt.universe import forecast_together
from puffin_bt.walkforward import feature_matrix, make_walk_forward

SMALL = dict(hidden_dim=8, num_layers=1, lookback=10, min_train=250, retrain_every=120, train_window=250,
             epochs=2, batch_size=64, patience=None, validation_split=0.2, fold_workers=1, device="cpu")
CASES = {  # name: (extra options, refit epochs)
    "cold": ({}, None),
    "warm": ({}, 1),
    "ensemble+interval": ({"ensemble": 2, "interval": 0.8, "interval_method": "aci"}, None),
    "features-warm": ({"features": ("volume", "rsi:14")}, 1),
}


def fold_hashes(lines: np.ndarray, fold_bars: list[int], retrain_every: int) -> list[str]:
    """The first 12 hex digits of each fold's forecast lines (bars fold_bar .. fold_bar + retrain_every - 1)."""
    lines = np.ascontiguousarray(np.asarray(lines, dtype=np.float64))
    return [hashlib.sha256(lines[b: b + retrain_every].tobytes()).hexdigest()[:12] for b in fold_bars]


def main(families: list[str]) -> None:
    torch.set_num_threads(1)
    frames = load_sample(["AAPL", "IBM"], start="2009-01-01", end="2012-12-31")
    for cell in families:
        for case, (extra, refit) in CASES.items():
            options = {**SMALL, **extra, "refit_epochs": refit}
            closes, features, _ = feature_matrix(frames["AAPL"], options.get("features", ()))
            walk = make_walk_forward(cell, **options)
            lines = walk.forecast_lines(closes, 0, len(closes), features=features)
            print(cell, case, " ".join(fold_hashes(lines, [f.bar for f in walk.folds], SMALL["retrain_every"])))
        walks = [make_walk_forward(cell, **SMALL) for _ in frames]
        out = forecast_together(walks, [f["close"].to_numpy(np.float64) for f in frames.values()])
        for name, walk, lines in zip(frames, walks, out):
            print(cell, "universe", name, " ".join(fold_hashes(lines, [f.bar for f in walk.folds], SMALL["retrain_every"])))
        glob = make_global_walk_forward(cell, **{**SMALL, "refit_epochs": 1})
        series = [Series(n, np.arange(len(f), dtype=np.float64), f["close"].to_numpy(np.float64)) for n, f in frames.items()]
        for name, forecasts in glob.forecast_all(series).items():
            print(cell, "global", name, hashlib.sha256(np.ascontiguousarray(forecasts).tobytes()).hexdigest()[:12])


if __name__ == "__main__":
    main(sys.argv[1:] or ["lstm", "gru"])
