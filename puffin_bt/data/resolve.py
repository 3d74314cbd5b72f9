"""Where a run's price data comes from: the bundled sample, yfinance tickers, or the caller's DataFrames."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence

from ..errors import ConfigError, DataError, PuffinError, failures
from .csvfiles import has_symbol_column, load_csv, load_csv_symbols
from .sample import load_sample
from .validate import validate_ohlcv
from .yahoo import load_prices

__all__ = ["resolve_data"]

# Row names of the result tables: a ticker of that name would be mistaken for them.
RESERVED_NAMES = ("PORTFOLIO", "POOLED")


def check_ticker_names(names: list) -> None:
    """Ticker names are strings that identify one ticker each: 1 and '1' would be one name, and a ticker
    called PORTFOLIO would be the portfolio's row of the results."""
    seen: dict[str, object] = {}
    for name in names:
        text = str(name)
        if text in seen:
            raise ConfigError(f"data has two tickers named {text!r} ({seen[text]!r} and {name!r}); give every ticker "
                              "its own name")
        if text in RESERVED_NAMES or not text.strip():
            raise ConfigError(f"a ticker cannot be named {text!r} (it names a row of the results); rename it")
        seen[text] = name


def _with_long_csvs(data: Mapping) -> dict:
    """``data`` with every long-format CSV file (a ``symbol`` column naming several tickers) replaced by its
    tickers' frames, each under its symbol."""
    out = {}
    for name, given in data.items():
        tickers = None
        if isinstance(given, (str, os.PathLike)) and has_symbol_column(given):
            with contextlib.suppress(PuffinError):  # a broken file: load_one reports it under its own name
                tickers = load_csv_symbols(given)
        out.update(tickers if tickers is not None and len(tickers) > 1 else {name: given})
    return out


def resolve_data(data=None, start=None, end=None, cache_dir=None, skip_failed: bool = False):
    """None -> bundled sample; list of tickers -> yfinance (cached); dict of DataFrames (or of CSV file paths,
    read with ``load_csv``) -> validated.

    Returns ``(frames, skipped)``; with ``skip_failed`` a ticker that cannot be loaded (whichever way its data
    comes) is recorded in ``skipped`` (ticker -> reason) instead of raising.
    """
    if data is None:
        return load_sample(start=start, end=end), {}
    if isinstance(data, str):
        data = [data]
    if isinstance(data, Mapping):
        if not data:
            raise ConfigError("data is an empty dict; pass {ticker: DataFrame} with at least one entry")
        data = _with_long_csvs(data)
        check_ticker_names(list(data))

        def load_one(name):
            given = data[name]
            if isinstance(given, (str, os.PathLike)):
                given = load_csv(given, name=str(name))
            df = validate_ohlcv(given, name=str(name))
            df = df.loc[start:end] if (start or end) else df
            if df.empty:
                raise DataError(f"{name}: no bars between start={start} and end={end}; widen the date range")
            return df
    elif isinstance(data, Sequence):
        check_ticker_names(list(dict.fromkeys(data)))

        def load_one(name):
            return load_prices([name], start=start, end=end, cache_dir=cache_dir)[name]
    else:
        raise ConfigError(
            f"data={type(data).__name__} is not supported; pass None, a list of tickers or a dict of DataFrames"
        )
    frames, skipped = {}, {}
    for name in data:
        try:
            frames[str(name)] = load_one(name)
        except PuffinError as exc:
            if not skip_failed:
                raise
            skipped[str(name)] = " ".join(str(exc).split())
    if not frames:
        raise DataError(f"no ticker could be loaded: {failures(skipped)}")
    return frames, skipped
