#!/usr/bin/env python
"""Regenerate puffin_bt's bundled sample prices from the ``bokeh-sampledata`` package.

Reads ``bokeh_sampledata/_data/stocks.csv.gz`` (Quandl WIKI prices, public domain),
keeps AAPL, GOOG, IBM and MSFT from 2004-08-19 to 2013-03-01, split/dividend-adjusts
open/high/low/close/volume with ``factor = adj_close / close`` and writes

    puffin_bt/sample_data/stocks.csv.gz   (ticker,date,open,high,low,close,volume)
    puffin_bt/sample_data/PROVENANCE.md

The output is byte-for-byte reproducible (fixed row order, fixed number formatting,
gzip header with mtime=0 and no file name).

Usage::

    pip install bokeh-sampledata
    python scripts/build_sample_data.py            # writes into puffin_bt/sample_data/
    python scripts/build_sample_data.py --out DIR  # writes somewhere else (tests use this)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.metadata
import importlib.resources
import io
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

TICKERS = ("AAPL", "GOOG", "IBM", "MSFT")
START = "2004-08-19"
END = "2013-03-01"
SIGNIFICANT_DIGITS = 6
SOURCE_PACKAGE = "bokeh-sampledata"
SOURCE_MEMBER = "_data/stocks.csv.gz"
SOURCE_COLUMNS = [
    "Ticker",
    "Date",
    "Open",
    "High",
    "Low",
    "Close",
    "Volume",
    "Adj Close",
]
OUT_COLUMNS = ["ticker", "date", "open", "high", "low", "close", "volume"]
PRICES = ["open", "high", "low", "close"]
# Smallest daily close-to-close return allowed after adjustment: anything below this
# in these four large caps over 2004-2013 would be an unadjusted split, not a crash.
MIN_DAILY_RETURN = -0.35
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "puffin_bt" / "sample_data"


def default_source() -> Path:
    """Path of ``stocks.csv.gz`` inside the installed bokeh_sampledata package."""
    try:
        root = importlib.resources.files("bokeh_sampledata")
    except ModuleNotFoundError:
        sys.exit(
            "bokeh_sampledata is not installed: run `pip install bokeh-sampledata`, "
            "or pass the file with --source PATH/stocks.csv.gz"
        )
    return Path(str(root / "_data" / "stocks.csv.gz"))


def source_version() -> str:
    try:
        return importlib.metadata.version(SOURCE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed as a distribution)"


def round_sig(values: np.ndarray, digits: int = SIGNIFICANT_DIGITS) -> np.ndarray:
    """Round to ``digits`` significant digits exactly as ``format(x, '.6g')`` prints them."""
    return np.array(
        [float(format(float(v), f".{digits}g")) for v in values], dtype="float64"
    )


def transform(raw: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int], pd.DataFrame]:
    """Select, adjust and round.

    Returns the long frame, the counts of clipped high/low values and the per-ticker
    range of the adjustment factor.
    """
    missing = [c for c in SOURCE_COLUMNS if c not in raw.columns]
    if missing:
        raise SystemExit(
            f"source file lacks columns {missing}; found {list(raw.columns)}"
        )
    df = raw[raw["Ticker"].isin(TICKERS)].copy()
    df["Date"] = pd.to_datetime(df["Date"], format="%Y-%m-%d")
    df = df[(df["Date"] >= START) & (df["Date"] <= END)]
    df = df.sort_values(["Ticker", "Date"], kind="mergesort").reset_index(drop=True)
    found = sorted(df["Ticker"].unique())
    if found != sorted(TICKERS):
        raise SystemExit(f"expected tickers {TICKERS}, found {found} in the source")
    if df[["Ticker", "Date"]].duplicated().any():
        raise SystemExit("source has duplicated (ticker, date) rows")

    factor = df["Adj Close"].to_numpy("float64") / df["Close"].to_numpy("float64")
    if not (np.isfinite(factor).all() and (factor > 0).all()):
        raise SystemExit(
            "adjustment factor adj_close/close is not finite and positive everywhere"
        )

    factors = (
        pd.DataFrame({"ticker": df["Ticker"].astype(str), "factor": factor})
        .groupby("ticker")["factor"]
        .agg(["min", "max"])
    )
    out = pd.DataFrame(
        {"ticker": df["Ticker"].astype(str), "date": df["Date"].dt.strftime("%Y-%m-%d")}
    )
    for col in PRICES:
        out[col] = round_sig(df[col.capitalize()].to_numpy("float64") * factor)
    out["volume"] = np.rint(df["Volume"].to_numpy("float64") / factor).astype("int64")

    # Multiplying by a positive factor and rounding are both monotone, so the OHLC
    # ordering should survive; check it and clip if rounding ever breaks it.
    top = out[["open", "close"]].max(axis=1)
    bottom = out[["open", "close"]].min(axis=1)
    clipped = {
        "high": int((out["high"] < top).sum()),
        "low": int((out["low"] > bottom).sum()),
    }
    out["high"] = np.maximum(out["high"], top)
    out["low"] = np.minimum(out["low"], bottom)

    if not (out[PRICES].to_numpy() > 0).all():
        raise SystemExit("non-positive price after adjustment")
    if not (out["high"] >= out["low"]).all():
        raise SystemExit("high < low after adjustment")
    for ticker, group in out.groupby("ticker"):
        worst = group["close"].pct_change().min()
        if worst < MIN_DAILY_RETURN:
            raise SystemExit(
                f"{ticker}: daily return {worst:.1%} after adjustment looks like an unadjusted split"
            )
    return out, clipped, factors


def to_csv_bytes(out: pd.DataFrame) -> bytes:
    """Serialize with fixed formatting (independent of the pandas version)."""
    lines = [",".join(OUT_COLUMNS)]
    fmt = f".{SIGNIFICANT_DIGITS}g"
    for row in out.itertuples(index=False):
        prices = ",".join(format(float(getattr(row, c)), fmt) for c in PRICES)
        lines.append(f"{row.ticker},{row.date},{prices},{int(row.volume)}")
    return ("\n".join(lines) + "\n").encode("ascii")


def gzip_bytes(payload: bytes) -> bytes:
    buf = io.BytesIO()
    # filename="" and mtime=0: no name or timestamp in the header -> reproducible bytes.
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0
    ) as gz:
        gz.write(payload)
    return buf.getvalue()


def provenance(
    out: pd.DataFrame,
    clipped: dict[str, int],
    factors: pd.DataFrame,
    source_sha: str,
    csv_sha: str,
    gz_sha: str,
    gz_size: int,
) -> str:
    rows = out.groupby("ticker").agg(
        first=("date", "min"),
        last=("date", "max"),
        rows=("date", "size"),
        low=("low", "min"),
        high=("high", "max"),
    )
    table = "\n".join(
        f"| {t} | {r['first']} | {r['last']} | {r['rows']} | {r['low']:.4g} - {r['high']:.4g} "
        f"| {factors.loc[t, 'min']:.4f} - {factors.loc[t, 'max']:.4f} |"
        for t, r in rows.iterrows()
    )
    if clipped["high"] or clipped["low"]:
        clip_text = (
            f"Rounding broke the bar ordering in {clipped['high']} high and {clipped['low']} low "
            "values; those were clipped to max(open, close) / min(open, close)."
        )
    else:
        clip_text = (
            "After adjustment and rounding every bar still satisfies high >= max(open, close) and "
            "low <= min(open, close); the script checks this and would clip high/low (and report "
            "the count here) if rounding ever broke it. Nothing was clipped."
        )
    return f"""# Sample data provenance

`stocks.csv.gz` holds daily prices of AAPL, GOOG, IBM and MSFT from {START} to {END}
(inclusive), {len(out)} rows in long format with columns
`{",".join(OUT_COLUMNS)}`. `puffin_bt.load_sample()` reads it.

## Source

- Package: `{SOURCE_PACKAGE}` version {source_version()} (PyPI), file
  `bokeh_sampledata/{SOURCE_MEMBER}`, sha256 `{source_sha}`.
- Upstream: Quandl WIKI Prices (archived copy), as redistributed by the Bokeh project.
- License: **public domain**. The archived Quandl publisher page declares the WIKI data
  public domain and permits copying, distribution and inclusion in commercial or
  noncommercial products (recorded in the package's `licenses/datasets.json`, module
  `stocks`). No Bokeh code is copied; only the data values are used.
- The prices are supplied as is, without any guarantee of accuracy. Do not use them for
  anything but examples and tests.

## Transformation (scripts/build_sample_data.py)

1. Keep tickers {", ".join(TICKERS)} (FB is dropped: it has only 196 rows from 2012-05-18)
   and dates {START} .. {END}, the span all four share (GOOG's IPO onwards).
2. The source's open/high/low/close/volume are unadjusted; `Adj Close` is split- and
   dividend-adjusted. Per row, `factor = Adj Close / Close`;
   open, high, low and close are multiplied by `factor` and volume is divided by it
   (rounded to an integer), so splits (AAPL 2:1 on 2005-02-28) and special dividends
   (MSFT's $3 on 2004-11-15) do not look like crashes.
3. Prices are rounded to {SIGNIFICANT_DIGITS} significant digits (`format(x, ".{SIGNIFICANT_DIGITS}g")`).
4. {clip_text}
5. Rows are sorted by ticker, then date; dates are `YYYY-MM-DD`; the CSV is gzip-compressed
   at level 9 with `mtime=0` and no file name in the header, so the output is reproducible.

Quirks of the source worth knowing:

- `Adj Close` comes from the source's later snapshot (up to 2018), so it includes corporate
  actions after 2013: AAPL's 7:1 split of 2014 and dividends, Google's 2014 share-class
  split. Adjusted price levels are therefore well below the historical quotes (AAPL's
  prices are 1/16 to 1/8 of its quotes, see the factor column), and volumes are scaled up accordingly.
- GOOG here is Google's pre-2014 history, filed as GOOGL in the source.
- All four tickers have exactly the same {rows["rows"].iloc[0]} trading dates.

| ticker | first | last | rows | adjusted price range | factor adj_close/close |
|---|---|---|---|---|---|
{table}

Uncompressed CSV sha256: `{csv_sha}`
`stocks.csv.gz` sha256: `{gz_sha}` ({gz_size} bytes)

## Regenerate

```
pip install {SOURCE_PACKAGE}=={source_version()}
python scripts/build_sample_data.py               # rewrites puffin_bt/sample_data/
python scripts/build_sample_data.py --out /tmp/x  # or somewhere else, to compare
```

`tests/test_data.py` checks that the script reproduces the bundled file byte for byte.
"""


def build(out_dir: Path, source: Path) -> Path:
    """Write stocks.csv.gz and PROVENANCE.md into ``out_dir``; return the csv.gz path."""
    source_bytes = source.read_bytes()
    raw = pd.read_csv(io.BytesIO(source_bytes), compression="gzip")
    out, clipped, factors = transform(raw)
    csv_bytes = to_csv_bytes(out)
    # Round trip: what we wrote is exactly what we checked.
    back = pd.read_csv(io.BytesIO(csv_bytes))
    for col in PRICES:
        if not np.array_equal(
            back[col].to_numpy("float64"), out[col].to_numpy("float64")
        ):
            raise SystemExit(f"column {col} does not round-trip through the CSV text")
    gz = gzip_bytes(csv_bytes)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "stocks.csv.gz"
    target.write_bytes(gz)
    text = provenance(
        out,
        clipped,
        factors,
        hashlib.sha256(source_bytes).hexdigest(),
        hashlib.sha256(csv_bytes).hexdigest(),
        hashlib.sha256(gz).hexdigest(),
        len(gz),
    )
    (out_dir / "PROVENANCE.md").write_text(text, encoding="utf-8")
    worst = min(g["close"].pct_change().min() for _, g in out.groupby("ticker"))
    print(
        f"wrote {target} ({len(gz)} bytes, {len(out)} rows, clipped high/low: "
        f"{clipped['high']}/{clipped['low']}, worst daily return {worst:.1%})"
    )
    if not math.isfinite(worst):
        raise SystemExit("could not compute daily returns")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output folder (default {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="stocks.csv.gz to read (default: from bokeh_sampledata)",
    )
    args = parser.parse_args(argv)
    build(args.out, args.source or default_source())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
