"""Price data for puffin_bt: the bundled sample, user CSV files and yfinance downloads.

Every frame goes through :func:`validate_ohlcv`, so the rest of the library can rely on
float64 ``open/high/low/close/volume`` columns and a sorted, unique, tz-naive ``date`` index.
"""

from __future__ import annotations

import datetime as _dt
import functools
import importlib.resources
import io
import lzma
import os
import re
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd

from ._io import atomic_write_bytes
from .errors import ConfigError, DataError, NetworkError

__all__ = [
    "SAMPLE_TICKERS",
    "check_ticker",
    "default_cache_dir",
    "load_csv",
    "load_prices",
    "load_sample",
    "validate_ohlcv",
]

SAMPLE_TICKERS = ("AAPL", "GOOG", "IBM", "MSFT")

Fetcher = Callable[[str, "pd.Timestamp | None", "pd.Timestamp | None"], pd.DataFrame]

_PRICE_COLUMNS = ("open", "high", "low", "close")
_COLUMNS = (*_PRICE_COLUMNS, "volume")
_IGNORED_COLUMNS = ("adj close", "adj_close", "adjclose")
_DATE_COLUMN_NAMES = ("date", "datetime", "timestamp")
_MAX_LISTED = 3
# Downloaded bars whose high/low miss open/close by at most this (relative) are clipped, with a warning.
_VENDOR_REPAIR_TOL = 0.01
# Float noise allowed in the bar ordering (high >= max(open, close) ...); repaired, not an error.
_REL_TOL = 1e-9
# The design's pattern, plus an optional leading "^" for Yahoo index symbols (^GSPC, ^VIX).
_TICKER_RE = re.compile(r"\^?[A-Za-z0-9][A-Za-z0-9.\-^=_]{0,31}")
_CACHE_MAGIC = "# puffin_bt price cache v1"
_SAMPLE_FILE = ("sample_data", "stocks.csv.gz")
_ONE_DAY = pd.Timedelta(days=1)
# pd.api.types.infer_dtype kinds of an object index that must not be read as dates.
_NOT_DATES = frozenset(
    {"integer", "floating", "mixed-integer", "mixed-integer-float", "decimal", "complex", "boolean",
     "timedelta", "timedelta64", "time", "bytes"}
)


# --------------------------------------------------------------------------- helpers


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


def _flatten_columns(df: pd.DataFrame, label: str, ticker: str | None = None) -> pd.DataFrame:
    """Flatten yfinance-style MultiIndex columns (price level x ticker level) to one level."""
    if not isinstance(df.columns, pd.MultiIndex):
        return df
    price_level = None
    for level in range(df.columns.nlevels):
        names = {_norm_name(v) for v in df.columns.get_level_values(level)}
        if set(_PRICE_COLUMNS) <= names:
            price_level = level
            break
    if price_level is None:
        raise DataError(
            f"{label}: has multi-level columns {list(df.columns)[:6]} and no level holds "
            "open/high/low/close; flatten them to single names, e.g. df.columns = ['open', ...]"
        )
    others = [lvl for lvl in range(df.columns.nlevels) if lvl != price_level]
    keys = {tuple(c[lvl] for lvl in others) for c in df.columns}
    if len(keys) > 1:
        wanted = [k for k in keys if ticker is not None and ticker in k]
        if len(wanted) != 1:
            listed = ", ".join(sorted(repr(k[0] if len(k) == 1 else k) for k in keys))
            raise DataError(
                f"{label}: has columns for several tickers ({listed}); pass one ticker's frame, "
                "e.g. df.xs('AAPL', axis=1, level=1)"
            )
        keep = [c for c in df.columns if tuple(c[lvl] for lvl in others) == wanted[0]]
        df = df[keep]
    out = df.copy()
    out.columns = [c[price_level] for c in df.columns]
    return out


def _diagnose_dates(values) -> tuple[list[tuple[int, object]], list]:
    """Parse each value on its own: return (unparseable (position, value) pairs, Timestamps)."""
    bad: list[tuple[int, object]] = []
    stamps: list = []
    for pos, value in enumerate(values):
        try:
            if value is None or (isinstance(value, float) and np.isnan(value)):
                raise ValueError("missing")
            if isinstance(value, str) and not value.strip():
                raise ValueError("empty")
            if isinstance(value, (bool, np.bool_, int, float, np.integer, np.floating)):
                raise TypeError("a number is not a date")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                stamp = pd.Timestamp(value)
            if stamp is pd.NaT:
                raise ValueError("NaT")
        except (ValueError, TypeError, OverflowError):
            bad.append((pos, value))
            stamps.append(None)
        else:
            stamps.append(stamp)
    return bad, stamps


def _offset_name(stamp: pd.Timestamp) -> str:
    if stamp.tzinfo is None:
        return "no time zone"
    offset = stamp.utcoffset()
    if offset is None or str(stamp.tzinfo).startswith("UTC"):
        return str(stamp.tzinfo)
    return f"{stamp.tzinfo} (UTC{_fmt_offset(offset)})" if offset is not None else str(stamp.tzinfo)


def _fmt_offset(offset: _dt.timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _local_midnights(stamps) -> bool:
    """True if every timestamp is at 00:00 of its own (local) clock."""
    if isinstance(stamps, pd.DatetimeIndex):
        return bool((stamps == stamps.normalize()).all())
    return all(s.hour == 0 and s.minute == 0 and s.second == 0 and s.microsecond == 0 and s.nanosecond == 0 for s in stamps)


def _index_to_datetime(index: pd.Index, label: str, where: Callable[[int], str]) -> pd.DatetimeIndex:
    """Convert an index to a tz-naive ns DatetimeIndex (tz-aware -> UTC) or raise DataError."""
    if isinstance(index, pd.MultiIndex):
        raise DataError(
            f"{label}: the index is a MultiIndex {list(index.names)}; pass one ticker's frame with a "
            "single date index, e.g. df.xs('AAPL', level='ticker')"
        )
    if isinstance(index, pd.PeriodIndex):
        index = index.to_timestamp()
    if not isinstance(index, pd.DatetimeIndex):
        dtype = index.dtype
        if not (pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)):
            raise DataError(
                f"{label}: the index must hold dates, got a {type(index).__name__} of dtype {dtype} "
                f"(first value {_fmt_value(index[0])}); set the date column as the index, "
                "e.g. df = df.set_index('date') after pd.to_datetime(df['date'])"
            )
        kind = pd.api.types.infer_dtype(index, skipna=True)
        if kind in _NOT_DATES:
            # pd.to_datetime would read numbers as nanoseconds since 1970: refuse them.
            _raise_date_problem(list(index), label, where, TypeError(f"index holds {kind} values"))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parsed = pd.to_datetime(index)
        except (ValueError, TypeError, OverflowError) as exc:
            _raise_date_problem(list(index), label, where, exc)
        if not isinstance(parsed, pd.DatetimeIndex):  # pragma: no cover - defensive
            raise DataError(f"{label}: could not turn the index into dates; pass a DatetimeIndex")
        index = parsed
    nat = np.asarray(index.isna())
    if nat.any():
        pos = int(np.flatnonzero(nat)[0])
        raise DataError(
            f"{label}: the index has {int(nat.sum())} missing date(s) (NaT), first at {where(pos)}; "
            "drop those rows or fill in the dates"
        )
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    try:
        # From the raw values: no freq attribute, so frames compare equal whatever their source.
        return pd.DatetimeIndex(index.as_unit("ns").to_numpy(), name="date")
    except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime) as exc:
        raise DataError(
            f"{label}: dates out of the supported range 1677-2262 ({exc}); check the date column"
        ) from exc


def _raise_date_problem(values, label: str, where: Callable[[int], str], exc: Exception) -> NoReturn:
    """Explain why a date column/index did not parse: bad values, mixed zones or formats."""
    bad, stamps = _diagnose_dates(values)
    if bad:
        listed = ", ".join(f"{_fmt_value(v)} at {where(p)}" for p, v in bad[:_MAX_LISTED])
        more = f" (and {len(bad) - _MAX_LISTED} more)" if len(bad) > _MAX_LISTED else ""
        raise DataError(
            f"{label}: cannot read {len(bad)} date(s): {listed}{more}; "
            "write dates as YYYY-MM-DD (ISO 8601) and remove empty or garbage rows"
        ) from exc
    zones: dict[str, int] = {}
    for pos, stamp in enumerate(stamps):
        zones.setdefault(_offset_name(stamp), pos)
    if len(zones) > 1:
        listed = ", ".join(f"{_fmt_value(values[p])} ({z})" for z, p in list(zones.items())[:_MAX_LISTED])
        raise DataError(
            f"{label}: the dates mix time zones/offsets: {listed}; convert them to one zone first, "
            "e.g. df.index = pd.to_datetime(df.index, utc=True)"
        ) from exc
    # Each value parses on its own, but not with the format pandas inferred from the first
    # one: name the values that break it.
    match = re.search(r'format "([^"]+)"', str(exc))
    if match:
        fmt = match.group(1)
        odd = []
        for pos, value in enumerate(values):
            try:
                pd.to_datetime(str(value), format=fmt)
            except (ValueError, TypeError, OverflowError):
                odd.append(pos)
        if odd:
            listed = ", ".join(f"{_fmt_value(values[p])} at {where(p)}" for p in odd[:_MAX_LISTED])
            more = f" (and {len(odd) - _MAX_LISTED} more)" if len(odd) > _MAX_LISTED else ""
            raise DataError(
                f"{label}: cannot read date(s) {listed}{more}: they do not match the format {fmt} "
                f"of the first date {_fmt_value(values[0])}; write all dates in one format, "
                "preferably YYYY-MM-DD"
            ) from exc
    raise DataError(
        f"{label}: the dates are written in inconsistent formats ({str(exc).splitlines()[0]}); "
        "use one format for all of them, preferably YYYY-MM-DD"
    ) from exc


def _numeric_column(series: pd.Series, column: str, label: str, index: pd.DatetimeIndex) -> np.ndarray:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        raise DataError(f"{label}: column '{column}' holds booleans, not numbers; pass numeric prices/volumes")
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return series.to_numpy(dtype="float64", na_value=np.nan)
    if (
        pd.api.types.is_datetime64_any_dtype(dtype)
        or pd.api.types.is_timedelta64_dtype(dtype)
        or pd.api.types.is_complex_dtype(dtype)
    ):
        raise DataError(
            f"{label}: column '{column}' has dtype {dtype}, not plain numbers; pass float prices/volumes"
        )
    values = series.astype(object)
    coerced = pd.to_numeric(values, errors="coerce")
    # pd.to_numeric lets booleans through as numbers; treat them as bad too.
    is_bool = np.array([isinstance(v, (bool, np.bool_)) for v in values], dtype=bool)
    bad = np.asarray(coerced.isna() & values.notna(), dtype=bool) | is_bool
    if bad.any():
        raise DataError(
            f"{label}: column '{column}' has {int(bad.sum())} non-numeric value(s) at "
            f"{_list_dates(index, bad, values.to_numpy())}; clean them, or convert with "
            f"pd.to_numeric(df['{column}'], errors='coerce') and drop the resulting NaN rows"
        )
    try:
        return coerced.to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError) as exc:  # pragma: no cover - defensive
        raise DataError(f"{label}: column '{column}' cannot be converted to float ({exc})") from exc


def _validate(df, label: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise DataError(
            f"{label}: expected a pandas DataFrame with open/high/low/close columns and a date index, "
            f"got {type(df).__name__}; build one with pd.DataFrame(...) or load_csv(path)"
        )
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise DataError(
            f"{label}: the DataFrame is empty ({df.shape[0]} rows x {df.shape[1]} columns); "
            "pass at least one bar with open/high/low/close"
        )
    df = _flatten_columns(df, label)
    found: dict[str, object] = {}
    for column in df.columns:
        key = _norm_name(column)
        if key in _COLUMNS:
            if key in found:
                raise DataError(
                    f"{label}: columns {found[key]!r} and {column!r} both mean '{key}'; drop one of them"
                )
            found[key] = column
    missing = [c for c in _PRICE_COLUMNS if c not in found]
    if missing:
        present = ", ".join(repr(c) for c in df.columns[:12])
        hint = ""
        if any(_norm_name(c) in _IGNORED_COLUMNS for c in df.columns):
            hint = " ('Adj Close' is ignored: adjust the prices yourself or rename it to 'close')"
        raise DataError(
            f"{label}: missing column(s) {', '.join(repr(c) for c in missing)} (found {present}){hint}; "
            "provide open, high, low and close columns (any letter case; volume is optional)"
        )

    raw_index = df.index

    def where(pos: int) -> str:
        return f"position {pos} of the index"

    if not isinstance(raw_index, (pd.DatetimeIndex, pd.PeriodIndex)) and not (
        pd.api.types.is_object_dtype(raw_index.dtype) or pd.api.types.is_string_dtype(raw_index.dtype)
    ):
        date_cols = [c for c in df.columns if _norm_name(c) in (*_DATE_COLUMN_NAMES, "time")]
        if date_cols:
            raise DataError(
                f"{label}: the index must hold dates, got {type(raw_index).__name__} "
                f"(first value {_fmt_value(raw_index[0])}), but there is a column {date_cols[0]!r}; "
                f"use df = df.set_index({date_cols[0]!r})"
            )
    index = _index_to_datetime(raw_index, label, where)

    dup = np.asarray(index.duplicated(keep=False))
    if dup.any():
        first_dups = np.asarray(index.duplicated(keep="first"))
        raise DataError(
            f"{label}: {int(first_dups.sum())} duplicated date(s): {_list_dates(index, first_dups)}; "
            "keep one row per date, e.g. df = df[~df.index.duplicated(keep='last')]"
        )
    if not index.is_monotonic_increasing:
        steps = np.zeros(len(index), dtype=bool)
        steps[1:] = np.asarray(index[1:] < index[:-1])
        pos = np.flatnonzero(steps)
        listed = ", ".join(
            f"{_fmt_date(index[p])} after {_fmt_date(index[p - 1])}" for p in pos[:_MAX_LISTED]
        )
        raise DataError(
            f"{label}: the dates are not in increasing order ({listed}); "
            "sort it with df.sort_index() (puffin_bt does not reorder your data silently)"
        )

    columns = {c: _numeric_column(df[found[c]], str(found[c]), label, index) for c in _PRICE_COLUMNS}
    for column in _PRICE_COLUMNS:
        values = columns[column]
        bad = ~np.isfinite(values)
        if bad.any():
            raise DataError(
                f"{label}: column '{found[column]}' has {int(bad.sum())} NaN/inf value(s) at "
                f"{_list_dates(index, bad, values)}; drop those rows (df.dropna()) or fill them "
                "(df.ffill()) before passing the data"
            )
    for column in _PRICE_COLUMNS:
        values = columns[column]
        bad = values <= 0
        if bad.any():
            raise DataError(
                f"{label}: column '{found[column]}' has {int(bad.sum())} zero or negative price(s) at "
                f"{_list_dates(index, bad, values)}; prices must be > 0: fix or drop those rows"
            )

    o, h, lo, c = (columns[k] for k in _PRICE_COLUMNS)
    top = np.maximum(o, c)
    bottom = np.minimum(o, c)
    tol_hl = _REL_TOL * np.maximum(h, lo)
    bad = h < lo - tol_hl
    if bad.any():
        raise DataError(
            f"{label}: high < low on {int(bad.sum())} bar(s): "
            f"{_list_dates(index, bad, describe=lambda p: f'high {float(h[p])!r} < low {float(lo[p])!r}')}; "
            "check the column order (open, high, low, close) or fix those rows"
        )
    bad = h < top - _REL_TOL * top
    if bad.any():
        raise DataError(
            f"{label}: high < max(open, close) on {int(bad.sum())} bar(s): "
            f"{_list_dates(index, bad, describe=lambda p: f'high {float(h[p])!r} < {float(top[p])!r}')}; "
            "fix those rows, e.g. df['high'] = df[['open', 'high', 'close']].max(axis=1)"
        )
    bad = lo > bottom + _REL_TOL * bottom
    if bad.any():
        raise DataError(
            f"{label}: low > min(open, close) on {int(bad.sum())} bar(s): "
            f"{_list_dates(index, bad, describe=lambda p: f'low {float(lo[p])!r} > {float(bottom[p])!r}')}; "
            "fix those rows, e.g. df['low'] = df[['open', 'low', 'close']].min(axis=1)"
        )
    # Within float noise: repair so that the invariants hold exactly.
    h = np.maximum.reduce([h, top, lo])
    lo = np.minimum(lo, bottom)

    if "volume" in found:
        volume = _numeric_column(df[found["volume"]], str(found["volume"]), label, index)
        bad = np.isinf(volume)
        if bad.any():
            raise DataError(
                f"{label}: column '{found['volume']}' has infinite volume at {_list_dates(index, bad)}; "
                "fix those rows (NaN volume is allowed and becomes 0)"
            )
        bad = volume < 0
        if bad.any():
            raise DataError(
                f"{label}: column '{found['volume']}' has {int(bad.sum())} negative volume(s) at "
                f"{_list_dates(index, bad, volume)}; volume must be >= 0: fix or drop those rows"
            )
        volume = np.where(np.isnan(volume), 0.0, volume)
    else:
        volume = np.zeros(len(index), dtype="float64")

    return pd.DataFrame(
        {"open": o, "high": h, "low": lo, "close": c, "volume": volume},
        index=index,
        dtype="float64",
    )


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


# --------------------------------------------------------------------------- validation


def validate_ohlcv(df: pd.DataFrame, name: str = "data") -> pd.DataFrame:
    """Check an OHLCV frame and return a clean copy; the one gate for data entering puffin_bt.

    Column names are matched case-insensitively (``Open``/``open``/``OPEN``; ``Adj Close``
    and any other column is dropped). ``open, high, low, close`` are required; a missing
    ``volume`` is filled with 0, as is NaN volume. A string index is parsed with
    ``pd.to_datetime``; a tz-aware index is converted to UTC and made tz-naive.

    Returns a new DataFrame with float64 columns ``open, high, low, close, volume`` and a
    sorted, unique, tz-naive ``DatetimeIndex`` named ``"date"`` (ns resolution). Deviations
    of the bar ordering within 1e-9 (relative float noise) are repaired so that
    ``high >= max(open, close)`` and ``low <= min(open, close)`` hold exactly.

    Raises:
        DataError: naming ``name``, the column and up to three offending dates, for: not a
            DataFrame, empty, missing columns, non-numeric values, an index that is not dates
            (or mixes time zones), duplicated or unsorted dates, NaN/inf or non-positive
            prices, high < low, high < max(open, close), low > min(open, close), negative volume.

    Example:
        >>> import pandas as pd
        >>> raw = pd.DataFrame({"Open": [10.0, 10.5], "High": [11.0, 11.0],
        ...                     "Low": [9.5, 10.0], "Close": [10.5, 10.8]},
        ...                    index=["2020-01-02", "2020-01-03"])
        >>> validate_ohlcv(raw, name="ACME").columns.tolist()
        ['open', 'high', 'low', 'close', 'volume']
    """
    return _validate(df, str(name))


# --------------------------------------------------------------------------- bundled sample


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


# --------------------------------------------------------------------------- CSV files


def _parse_csv_dates(values: pd.Series, label: str, column: str, first_line: int = 2) -> pd.DatetimeIndex:
    """Parse a CSV date column; daily bars with offsets keep their local calendar date.

    ``column`` is the column's description used in messages.
    """

    def where(pos: int) -> str:
        return f"line {pos + first_line}"

    raw = list(values)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = pd.DatetimeIndex(pd.to_datetime(values))
    except (ValueError, TypeError, OverflowError) as exc:
        bad, stamps = _diagnose_dates(raw)
        aware = [s for s in stamps if s is not None and s.tzinfo is not None]
        if bad or not aware or len(aware) != len(stamps):
            _raise_date_problem(raw, f"{label}, column {column}", where, exc)
        # Only explicit offsets that differ (e.g. -05:00/-04:00 across daylight saving time).
        if _local_midnights(stamps):
            parsed = pd.DatetimeIndex([s.tz_localize(None) for s in stamps])
        else:
            parsed = pd.DatetimeIndex([s.tz_convert("UTC").tz_localize(None) for s in stamps])
    nat = np.asarray(parsed.isna())
    if nat.any():
        positions = np.flatnonzero(nat)[:_MAX_LISTED]
        listed = ", ".join(
            f"{'(empty)' if pd.isna(raw[p]) else _fmt_value(raw[p])} at {where(p)}" for p in positions
        )
        raise DataError(
            f"{label}: {int(nat.sum())} empty or unreadable date(s) in column {column}: {listed}; "
            "fill in the dates (YYYY-MM-DD) or delete those rows"
        )
    if parsed.tz is not None and _local_midnights(parsed):
        parsed = parsed.tz_localize(None)  # daily bars: keep the exchange's calendar date
    return parsed


def load_csv(path: str | os.PathLike, name: str | None = None) -> pd.DataFrame:
    """Read a user's OHLCV CSV file (optionally .gz/.zip compressed) and validate it.

    The date column is the one named ``date``/``datetime``/``timestamp`` (any case),
    else the first column. Other columns follow :func:`validate_ohlcv` (``Open`` or
    ``open``; volume optional). Offsets in the dates are handled like this: daily bars
    stamped at local midnight keep their calendar date, other times are converted to UTC.
    ``name`` (default: the file stem) is used in error messages.

    Raises:
        DataError: missing, empty, truncated or garbled file, unreadable dates, or any
            :func:`validate_ohlcv` failure; the message names the file and the fix.

    Example:
        >>> df = load_csv("AAPL.csv")            # doctest: +SKIP
        >>> df[["open", "close"]].head()         # doctest: +SKIP
    """
    path = Path(os.fspath(path)).expanduser()
    if name is None:
        name = path.name.split(".")[0] or path.name
    label = f"'{name}' (file '{path.absolute()}')"
    if not path.exists():
        raise DataError(f"{label}: file not found; check the path (current folder: '{Path.cwd()}')")
    if path.is_dir():
        raise DataError(f"{label}: is a folder, not a CSV file; pass the path of the .csv file")
    try:
        if path.stat().st_size == 0:
            raise pd.errors.EmptyDataError("0 bytes")
        frame = pd.read_csv(path, dtype=str, skipinitialspace=True)
    except pd.errors.EmptyDataError as exc:
        raise DataError(
            f"{label}: the file is empty ({exc}); export the prices again with a header line "
            "date,open,high,low,close,volume"
        ) from exc
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, zlib.error, OSError, ValueError,
            zipfile.BadZipFile, tarfile.TarError, lzma.LZMAError, ImportError) as exc:
        raise DataError(
            f"{label}: the file is not a readable CSV ({type(exc).__name__}: {str(exc).strip()[:200]}); "
            "it may be truncated or garbled: download or export it again"
        ) from exc
    if frame.empty or frame.shape[1] < 2:
        raise DataError(
            f"{label}: no data rows/columns found (columns: {list(frame.columns)}); expected a header "
            "line date,open,high,low,close[,volume] followed by one row per bar"
        )
    named = [c for c in frame.columns if _norm_name(c) in _DATE_COLUMN_NAMES]
    date_col = named[0] if named else frame.columns[0]
    column_text = repr(date_col) if named else (
        f"{date_col!r} (no column is named date/datetime/timestamp, so the first one is used)"
    )
    index = _parse_csv_dates(frame[date_col], label, column_text)
    frame = frame.drop(columns=date_col)
    frame.index = index

    # A last row with missing fields while all others are complete: the file was cut off.
    lowered = {_norm_name(c): c for c in frame.columns}
    price_cols = [lowered[c] for c in _PRICE_COLUMNS if c in lowered]
    if len(price_cols) == len(_PRICE_COLUMNS) and len(frame) > 1:
        checked = price_cols + ([lowered["volume"]] if "volume" in lowered else [])
        empty = frame[checked].isna().any(axis=1).to_numpy()
        if empty[-1] and not empty[:-1].any():
            raise DataError(
                f"{label}: the file looks truncated: its last row (line {len(frame) + 1}, date "
                f"{_fmt_date(frame.index[-1])}) is incomplete; download or export the file again, "
                "or delete that line"
            )
    return _validate(frame, label)


# --------------------------------------------------------------------------- downloads + cache


def default_cache_dir() -> Path:
    """Folder for downloaded prices: ``$PUFFIN_BT_CACHE``, else ``$XDG_CACHE_HOME/puffin_bt``, else ``~/.cache/puffin_bt``.

    Example:
        >>> default_cache_dir()                  # doctest: +SKIP
        PosixPath('/home/me/.cache/puffin_bt')
    """
    env = os.environ.get("PUFFIN_BT_CACHE", "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "puffin_bt"


def check_ticker(ticker: str) -> str:
    """Return ``ticker`` if it is a plausible symbol, else raise ConfigError.

    Allowed: 1-32 characters from letters, digits and ``. - ^ = _``, starting with a
    letter or digit (or ``^`` then a letter or digit, for index symbols), without ``..``. This keeps symbols usable as cache file names and
    blocks path traversal (``"../../x"``).

    Example:
        >>> check_ticker("BRK-B"), check_ticker("^GSPC")
        ('BRK-B', '^GSPC')
    """
    if not isinstance(ticker, str):
        raise ConfigError(f"ticker {ticker!r} is a {type(ticker).__name__}, not a string; pass e.g. 'AAPL'")
    if not _TICKER_RE.fullmatch(ticker) or ".." in ticker:
        raise ConfigError(
            f"ticker {ticker!r} is not a valid symbol; use 1-32 letters, digits or . - ^ = _ "
            "starting with a letter, digit or ^ (e.g. 'AAPL', 'BRK-B', '^GSPC', 'EURUSD=X')"
        )
    return ticker


def _yfinance_fetcher(ticker: str, start: pd.Timestamp | None, end: pd.Timestamp | None) -> pd.DataFrame:
    """Download daily auto-adjusted bars with ``yfinance.Ticker(t).history`` ([start, end] inclusive)."""
    try:
        import yfinance as yf
    except ImportError as exc:
        raise NetworkError(
            f"cannot download '{ticker}': yfinance is not installed ({exc}); run `pip install yfinance`, "
            "or use load_sample() / load_csv()"
        ) from exc
    kwargs: dict = {"interval": "1d", "auto_adjust": True, "actions": False}
    if start is None:
        kwargs["period"] = "max"
    else:
        kwargs["start"] = start.strftime("%Y-%m-%d")
        if end is not None:
            kwargs["end"] = (end.normalize() + _ONE_DAY).strftime("%Y-%m-%d")  # yfinance: end exclusive
    exc_mod = getattr(yf, "exceptions", None)
    no_data = tuple(
        getattr(exc_mod, n)
        for n in ("YFPricesMissingError", "YFTickerMissingError", "YFInvalidPeriodError", "YFTzMissingError")
        if exc_mod is not None and hasattr(exc_mod, n)
    )
    # yfinance hides network errors by default (logs them, returns an empty frame); ask it
    # to raise so that "offline" and "unknown symbol" are told apart.
    debug = None
    config = getattr(yf, "config", None)
    if config is not None:
        try:
            debug = config.debug
            old_hide = debug.hide_exceptions
            debug.hide_exceptions = False
        except AttributeError:  # pragma: no cover - older yfinance
            debug = None
    try:
        return yf.Ticker(ticker).history(**kwargs)
    except no_data:
        return pd.DataFrame()
    finally:
        if debug is not None:
            debug.hide_exceptions = old_hide


@dataclass
class _Cache:
    path: Path
    frame: pd.DataFrame
    covers_from: pd.Timestamp | None  # None: from the start of the ticker's history
    covers_to: pd.Timestamp

    def covers(self, start: pd.Timestamp | None, end: pd.Timestamp) -> bool:
        start_ok = self.covers_from is None or (start is not None and start >= self.covers_from)
        return start_ok and end <= self.covers_to


_HEADER_RE = re.compile(
    re.escape(_CACHE_MAGIC) + r" ticker=(?P<ticker>\S+) from=(?P<from>\S+) to=(?P<to>\S+) fetched=(?P<fetched>\S+)"
)


def _read_cache(path: Path, ticker: str) -> _Cache:
    """Read a cache file; any problem raises (the caller treats the file as corrupt)."""
    text = path.read_text(encoding="utf-8")
    first, _, body = text.partition("\n")
    match = _HEADER_RE.fullmatch(first.strip())
    if match is None:
        raise ValueError("missing or unknown header line")
    if match["ticker"] != ticker:
        raise ValueError(f"it holds ticker {match['ticker']!r}")
    covers_from = None if match["from"] == "start" else pd.Timestamp(match["from"])
    covers_to = pd.Timestamp(match["to"])
    frame = pd.read_csv(io.StringIO(body), dtype={"date": str})
    if "date" not in frame.columns:
        raise ValueError("no 'date' column")
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("date"), format="ISO8601"))
    return _Cache(path, _validate(frame, f"cache file '{path}'"), covers_from, covers_to)


def _write_cache(path: Path, ticker: str, frame: pd.DataFrame, covers_from, covers_to) -> None:
    """Write atomically: temp file in the same folder, flush + fsync, os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"{_CACHE_MAGIC} ticker={ticker} "
        f"from={'start' if covers_from is None else _fmt_date(covers_from)} to={_fmt_date(covers_to)} "
        f"fetched={pd.Timestamp.now(tz='UTC').strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
    )
    out = frame.copy()
    midnight = bool((out.index == out.index.normalize()).all())
    out.index = out.index.strftime("%Y-%m-%d" if midnight else "%Y-%m-%dT%H:%M:%S.%f")
    out.index.name = "date"
    body = out.to_csv(float_format=None, lineterminator="\n")
    atomic_write_bytes(path, (header + body).encode("utf-8"))


def _prepare_fetched(raw, ticker: str) -> pd.DataFrame | None:
    """Flatten yfinance output and drop all-NaN rows; None when there is no data at all."""
    label = f"download of ticker '{ticker}'"
    if raw is None:
        return None
    if not isinstance(raw, pd.DataFrame):
        raise DataError(f"{label}: the fetcher returned {type(raw).__name__}, not a DataFrame")
    if raw.empty:
        return None
    frame = _flatten_columns(raw, label, ticker=ticker)
    lowered = {_norm_name(c): c for c in frame.columns}
    prices = [lowered[c] for c in _PRICE_COLUMNS if c in lowered]
    if len(prices) == len(_PRICE_COLUMNS):
        numeric = frame[prices].apply(pd.to_numeric, errors="coerce")
        keep = ~numeric.isna().all(axis=1).to_numpy()
        frame, numeric = frame.loc[keep], numeric.loc[keep]
        if frame.empty:
            return None
        frame = _repair_vendor_bars(frame, numeric, prices, ticker)
    index = frame.index
    if isinstance(index, pd.DatetimeIndex) and index.tz is not None and _local_midnights(index):
        # Daily bars stamped at the exchange's midnight: keep that calendar date (converting
        # to UTC would move e.g. Tokyo's bars to the previous day).
        frame = frame.copy()
        frame.index = index.tz_localize(None)
    return _validate(frame, label)


def _repair_vendor_bars(frame: pd.DataFrame, numeric: pd.DataFrame, cols: list, ticker: str) -> pd.DataFrame:
    """Clip high/low of downloaded bars that miss open/close by at most 1% (vendor rounding), with a warning.

    Larger violations are left alone, so validation reports them.
    """
    o, h, lo, c = (numeric[col].to_numpy(dtype="float64") for col in cols)
    top, bottom = np.fmax(o, c), np.fmin(o, c)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.fmax((top - h) / top, (lo - bottom) / bottom)
    bad = gap > 0
    if not bad.any() or np.nanmax(gap) > _VENDOR_REPAIR_TOL:
        return frame
    frame = frame.copy()
    frame[cols[1]] = np.where(bad, np.fmax(h, top), h)
    frame[cols[2]] = np.where(bad, np.fmin(lo, bottom), lo)
    warnings.warn(
        f"ticker '{ticker}': the download had {int(bad.sum())} bar(s) whose high/low did not contain "
        f"open/close (at most {np.nanmax(gap):.3%} off), e.g. {_list_dates(frame.index, bad)}; "
        "clipped high/low to max/min(open, close)",
        UserWarning,
        stacklevel=5,
    )
    return frame


def _today() -> pd.Timestamp:
    return pd.Timestamp.now().normalize()


def _load_one(ticker: str, start, end, cache_dir: Path, refresh: bool, fetcher: Fetcher) -> pd.DataFrame:
    prices_dir = cache_dir / "prices"
    path = prices_dir / f"{ticker}.csv"
    if path.resolve().parent != prices_dir.resolve():  # defence in depth; check_ticker blocks this
        raise ConfigError(f"ticker {ticker!r} would be cached outside '{prices_dir}'; pass a plain symbol")
    today = _today()
    want_to = today if end is None else min(end.normalize(), today)

    cache: _Cache | None = None
    corrupt: str | None = None
    if path.exists():
        try:
            cache = _read_cache(path, ticker)
        except Exception as exc:  # noqa: BLE001 - any unreadable cache is treated as missing
            corrupt = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
    if cache is not None and not refresh and cache.covers(start, want_to):
        return _slice_or_raise(cache.frame, start, end, f"ticker '{ticker}'", _cache_fix(path))

    # Fetch what was asked, widened to what the cache already covered (one consistent download).
    fetch_from = start
    fetch_to = end
    if cache is not None:
        if cache.covers_from is None or fetch_from is None:
            fetch_from = None
        else:
            fetch_from = min(fetch_from, cache.covers_from)
        if fetch_to is not None:
            fetch_to = max(fetch_to, cache.covers_to)
    try:
        raw = fetcher(ticker, fetch_from, fetch_to)
        frame = _prepare_fetched(raw, ticker)
    except Exception as exc:  # every fetch failure gets the same handling
        reason = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
        if cache is not None:
            warnings.warn(
                f"could not update prices for ticker '{ticker}' ({reason}); using the cached copy "
                f"'{path}', which covers {_range_text(cache.covers_from, cache.covers_to)} and may miss "
                "the latest bars",
                UserWarning,
                stacklevel=3,
            )
            return _slice_or_raise(cache.frame, start, end, f"ticker '{ticker}'", _cache_fix(path))
        if corrupt is not None:
            raise DataError(
                f"cache file '{path}' for ticker '{ticker}' is corrupted ({corrupt}) and downloading a "
                f"fresh copy failed ({reason}); delete '{path}' and retry when online, or use "
                "load_sample() / load_csv()"
            ) from exc
        if isinstance(exc, DataError):
            raise
        raise NetworkError(
            f"could not download prices for ticker '{ticker}' ({reason}) and there is no cached copy in "
            f"'{prices_dir}'; retry when online, or work offline with load_sample() (bundled "
            "AAPL/GOOG/IBM/MSFT) or load_csv(path) / the CLI's --csv option"
        ) from exc
    if frame is None:
        if cache is not None:
            warnings.warn(
                f"the download for ticker '{ticker}' returned no data; using the cached copy '{path}'",
                UserWarning,
                stacklevel=3,
            )
            return _slice_or_raise(cache.frame, start, end, f"ticker '{ticker}'", _cache_fix(path))
        if corrupt is not None:
            raise DataError(
                f"cache file '{path}' for ticker '{ticker}' is corrupted ({corrupt}) and the fresh "
                f"download returned no data; delete '{path}', check the symbol and retry"
            )
        raise DataError(
            f"no data for ticker '{ticker}' from {_range_text(start, end)} (Yahoo Finance returned "
            "nothing); check the symbol (Yahoo spells e.g. 'BRK-B', '^GSPC', 'BMW.DE') and the dates"
        )
    if corrupt is not None:
        warnings.warn(
            f"cache file '{path}' was unreadable ({corrupt}); replaced it with a fresh download",
            UserWarning,
            stacklevel=3,
        )
    covers_to = today if fetch_to is None else min(fetch_to.normalize(), today)
    _write_cache(path, ticker, frame, fetch_from, covers_to)
    return _slice_or_raise(frame, start, end, f"ticker '{ticker}'", "pick dates inside that range")


def _cache_fix(path: Path) -> str:
    return f"pick dates inside that range, or pass refresh=True / delete '{path}' to download again"


def load_prices(
    tickers: str | Iterable[str],
    start: str | pd.Timestamp | _dt.date | None = None,
    end: str | pd.Timestamp | _dt.date | None = None,
    cache_dir: str | os.PathLike | None = None,
    refresh: bool = False,
    fetcher: Fetcher | None = None,
) -> dict[str, pd.DataFrame]:
    """Daily adjusted prices from Yahoo Finance (yfinance), cached on disk as one CSV per ticker.

    The cache lives in ``cache_dir/prices/<TICKER>.csv`` (default :func:`default_cache_dir`)
    and records the date range it was downloaded for. A cached ticker is read from disk
    when it covers ``[start, end]`` (``end=None`` means today); otherwise, or with
    ``refresh=True``, the ticker is downloaded again over the union of both ranges. If that
    download fails, the cached copy is used with a warning. ``fetcher(ticker, start, end)``
    (Timestamps or None, inclusive) replaces yfinance, e.g. for tests or another vendor; it
    returns a yfinance-shaped frame (Open/High/Low/Close/Volume, possibly tz-aware or
    MultiIndex columns). Daily bars stamped at local midnight keep their calendar date.

    Returns ``{ticker: validated frame sliced to [start, end]}``.

    Raises:
        ConfigError: an invalid ticker symbol or date argument.
        NetworkError: the download failed and there is no cached copy.
        DataError: no data for the symbol/dates, or a corrupted cache that cannot be replaced.

    Example:
        >>> prices = load_prices(["AAPL", "MSFT"], start="2015-01-01")  # doctest: +SKIP
        >>> prices["AAPL"].close.iloc[-1]                                # doctest: +SKIP
    """
    wanted = [check_ticker(t) for t in _as_ticker_list(tickers, "tickers")]
    s, e = _date_range(start, end)
    if not isinstance(refresh, (bool, np.bool_)):
        raise ConfigError(f"refresh={refresh!r} must be True or False")
    if fetcher is not None and not callable(fetcher):
        raise ConfigError(f"fetcher={fetcher!r} is not callable; pass a function fetcher(ticker, start, end)")
    root = default_cache_dir() if cache_dir is None else Path(os.fspath(cache_dir)).expanduser()
    fetch = fetcher if fetcher is not None else _yfinance_fetcher
    out = {}
    for ticker in wanted:  # a plain loop keeps the warnings' stacklevel pointing at the caller
        out[ticker] = _load_one(ticker, s, e, root, bool(refresh), fetch)
    return out
