#!/usr/bin/env python
"""The long-history check of the trade charts: 46 years of daily bars (the bundled AAPL returns chained end to end,
$1 to $500), a real backtest with a tiny LSTM retrained every 21 bars, then the PNGs and trades.html to look at.

    python scripts/long_history_charts.py OUT_DIR [--entry 0.0003]     # ~15 s on 2 CPU cores
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import pandas as pd

from puffin_bt import backtest, load_sample


def long_frame(n: int = 11_504, ticker: str = "AAPL", end_price: float = 500.0, start: str = "1967-01-03") -> pd.DataFrame:
    """``n`` business days from ``start`` on: the ticker's daily returns repeated, rescaled to go from $1 to
    ``end_price`` (also the long history of ``tests/test_plotting.py``)."""
    src = load_sample(ticker)[ticker]
    steps = np.resize(np.diff(np.log(src["close"].to_numpy())), n - 1)
    steps += (math.log(end_price) - steps.sum()) / (n - 1)
    close = np.exp(np.concatenate([[0.0], np.cumsum(steps)]))
    shape = {c: np.resize((src[c] / src["close"]).to_numpy(), n) for c in ("open", "high", "low")}
    return pd.DataFrame({**{c: close * shape[c] for c in shape}, "close": close,
                         "volume": np.resize(src["volume"].to_numpy(), n)}, index=pd.bdate_range(start, periods=n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="folder for trades_LONG.png, equity.png and trades.html")
    parser.add_argument("--entry", type=float, default=0.0003, help="entry and exit threshold (default 0.0003: "
                        "the tiny model's forecasts are small, and the point is hundreds of round trips)")
    args = parser.parse_args()
    started = time.perf_counter()
    res = backtest({"LONG": long_frame()}, model="lstm", hidden_dim=4, num_layers=1, epochs=1, refit_epochs=1,
                   retrain_every=21, entry=args.entry, exit=args.entry, store=False)
    print(f"backtest {time.perf_counter() - started:.1f} s: {len(res.equity)} bars, {len(res.folds)} retrains, "
          f"{len(res.trades)} round trips, {len(res.open_positions)} open")
    res.plot(args.out)
    page = res.plot(args.out, fmt="html")
    print(f"wrote {args.out}: trades_LONG.png, equity.png, trades.html ({page.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
