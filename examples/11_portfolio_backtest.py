"""Portfolio backtest of the bundled tickers with one call: metrics vs buy-and-hold, trades, charts.

Same engine as `puffin-bt backtest`; results and PNGs go to puffin-bt-out/example-11.
"""

from __future__ import annotations

import argparse
import os

from puffin_bt import backtest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--model", choices=("lstm", "gru"), default="lstm")
    args = parser.parse_args()
    quick = os.environ.get("PUFFIN_BT_QUICK") == "1"
    options = dict(hidden_dim=8, num_layers=1, min_train=150, retrain_every=63) if quick else {}
    result = backtest(model=args.model, start="2011-01-01" if quick else None, epochs=args.epochs,
                      workers="auto", store=False, **options)
    print(result.summary())
    out = result.save("puffin-bt-out/example-11")
    figures = result.plot(out)
    print(f"wrote {out}: {len(figures)} charts, {len(result.trades)} closed trades, {len(result.folds)} folds")


if __name__ == "__main__":
    main()
