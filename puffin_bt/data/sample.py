"""The bundled sample: daily OHLCV of AAPL, GOOG, IBM and MSFT, 2004-08-19 to 2013-03-01, offline."""

from __future__ import annotations

import datetime as _dt
import functools
import importlib.resources
import io
import zlib
from collections.abc import Iterable

import pandas as pd

from ..errors import DataError
from .common import _as_ticker_list, _date_range, _slice_or_raise
from .validate import _validate

__all__ = ["SAMPLE_TICKERS", "load_sample"]

SAMPLE_TICKERS = ("AAPL", "GOOG", "IBM", "MSFT")
_SAMPLE_FILE = ("sample_data", "stocks.csv.gz")


@functools.lru_cache(maxsize=1)
def _sample_frames() -> dict[str, pd.DataFrame]:
    resource = importlib.resources.files("puffin_bt")
    for part in _SAMPLE_FILE:
        resource = resource / part
    try:
        payload = resource.read_bytes()
        long = pd.read_csv(io.BytesIO(payload), compression="gzip", dtype={"ticker": str, "date": str})
    except (OSError, EOFError, zlib.error, ValueError, pd.errors.ParserError) as exc:
        raise DataError(
            f"bundled sample data '{resource}' is missing or unreadable ({exc}); reinstall puffin_bt "
            "or regenerate it with scripts/build_sample_data.py"
        ) from exc
    frames = {}
    for ticker, group in long.groupby("ticker", sort=False):
        frame = group.drop(columns="ticker").set_index(pd.to_datetime(group["date"], format="%Y-%m-%d"))
        frames[str(ticker)] = _validate(frame.drop(columns="date"), f"sample ticker '{ticker}'")
    return frames


def load_sample(
    tickers: str | Iterable[str] | None = None,
    start: str | pd.Timestamp | _dt.date | None = None,
    end: str | pd.Timestamp | _dt.date | None = None,
) -> dict[str, pd.DataFrame]:
    """Bundled daily prices (split/dividend adjusted) of AAPL, GOOG, IBM and MSFT, 2004-08-19 to 2013-03-01.

    Works offline. ``tickers`` is one symbol, a list, or None for all of
    :data:`SAMPLE_TICKERS`; ``start``/``end`` (inclusive) slice the dates. Returns
    ``{ticker: validated frame}`` in the requested order; the frames are copies.

    Raises:
        DataError: unknown ticker (the message lists the available ones) or an empty slice.
        ConfigError: a start/end that is not a date, or start after end.

    Example:
        >>> data = load_sample(["AAPL", "MSFT"], start="2010-01-01", end="2010-12-31")
        >>> sorted(data), len(data["AAPL"])
        (['AAPL', 'MSFT'], 252)
    """
    wanted = list(SAMPLE_TICKERS) if tickers is None else _as_ticker_list(tickers, "tickers")
    s, e = _date_range(start, end)
    frames = _sample_frames()
    out = {}
    for ticker in wanted:
        if ticker not in frames:
            hint = ""
            if isinstance(ticker, str) and ticker.upper() in frames:
                hint = f" (did you mean '{ticker.upper()}'?)"
            raise DataError(
                f"ticker {ticker!r} is not in the bundled sample{hint}; available: "
                f"{', '.join(SAMPLE_TICKERS)}. For other symbols use load_prices() (needs internet) "
                "or load_csv()"
            )
        out[ticker] = _slice_or_raise(
            frames[ticker], s, e, f"sample ticker '{ticker}'", "pick dates between 2004-08-19 and 2013-03-01"
        )
    return out
