"""Helpers shared by the data loaders: how dates and values are shown in messages, date arguments,
slicing by date, ticker lists."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError

__all__: list[str] = []  # internal: the private helpers of the data package's loaders

_PRICE_COLUMNS = ("open", "high", "low", "close")
_COLUMNS = (*_PRICE_COLUMNS, "volume")
_DATE_COLUMN_NAMES = ("date", "datetime", "timestamp")
_MAX_LISTED = 3
_ONE_DAY = pd.Timedelta(days=1)


def _fmt_date(ts) -> str:
    ts = pd.Timestamp(ts)
    if ts is pd.NaT:
        return "NaT"
    return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.isoformat()


def _list_dates(index: pd.Index, mask, values=None, describe=None) -> str:
    """'2020-01-02 (nan), 2020-01-03 (inf) (and 4 more)' for the first positions where mask is True."""
    positions = np.flatnonzero(np.asarray(mask))
    shown = []
    for pos in positions[:_MAX_LISTED]:
        text = _fmt_date(index[pos])
        if values is not None:
            text += f" ({_fmt_value(values[pos])})"
        elif describe is not None:
            text += f" ({describe(pos)})"
        shown.append(text)
    more = len(positions) - len(shown)
    return ", ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def _fmt_value(value) -> str:
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (_dt.date, np.datetime64)):
        return repr(str(value))
    return repr(value)


def _norm_name(column) -> str:
    return str(column).strip().lower()


def _to_timestamp(value, what: str) -> pd.Timestamp | None:
    """Parse a start/end argument (None, 'YYYY-MM-DD', date, datetime, Timestamp)."""
    if value is None:
        return None
    if isinstance(value, (bool, int, float, np.integer, np.floating)):
        raise ConfigError(f"{what}={value!r} is a number, not a date; pass a string like '2010-01-04'")
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ConfigError(f"{what}={value!r} is not a date; pass a string like '2010-01-04' or a Timestamp") from exc
    if stamp is pd.NaT:
        raise ConfigError(f"{what}={value!r} is not a date; pass a string like '2010-01-04' or a Timestamp")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp


def _date_range(start, end) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    s = _to_timestamp(start, "start")
    e = _to_timestamp(end, "end")
    if s is not None and e is not None and s > e:
        raise ConfigError(f"start={_fmt_date(s)} is after end={_fmt_date(e)}; swap them")
    return s, e


def _slice(df: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp | None) -> pd.DataFrame:
    """Rows with start <= date <= end; a date-only end includes that whole day."""
    mask = np.ones(len(df), dtype=bool)
    if start is not None:
        mask &= np.asarray(df.index >= start)
    if end is not None:
        if end == end.normalize():
            mask &= np.asarray(df.index < end + _ONE_DAY)
        else:
            mask &= np.asarray(df.index <= end)
    return df.loc[mask].copy()


def _range_text(start, end) -> str:
    return f"{_fmt_date(start) if start is not None else 'the beginning'} to {_fmt_date(end) if end is not None else 'the end'}"


def _slice_or_raise(df: pd.DataFrame, start, end, what: str, fix: str) -> pd.DataFrame:
    out = _slice(df, start, end)
    if out.empty:
        raise DataError(
            f"{what}: no bars from {_range_text(start, end)}; the data covers "
            f"{_fmt_date(df.index[0])} to {_fmt_date(df.index[-1])} ({fix})"
        )
    return out


def _as_ticker_list(tickers, what: str) -> list[str]:
    if isinstance(tickers, str):
        return [tickers]
    if tickers is None or not isinstance(tickers, Iterable):
        raise ConfigError(f"{what}={tickers!r} is not a ticker or a list of tickers; pass e.g. ['AAPL', 'MSFT']")
    out = list(tickers)
    for ticker in out:
        if not isinstance(ticker, str):
            raise ConfigError(
                f"{what} contains {ticker!r} ({type(ticker).__name__}); every ticker must be a string like 'AAPL'"
            )
    out = list(dict.fromkeys(out))
    if not out:
        raise ConfigError(f"{what} is empty; pass at least one ticker, e.g. ['AAPL']")
    return out

