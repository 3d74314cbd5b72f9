"""The one gate for price data entering puffin_bt: ``validate_ohlcv``.

Every frame (bundled sample, CSV file, download, the caller's DataFrame) goes through it, so the
rest of the library can rely on float64 ``open/high/low/close/volume`` columns and a sorted,
unique, tz-naive ``date`` index.
"""

from __future__ import annotations

import datetime as _dt
import re
import warnings
from collections.abc import Callable
from typing import NoReturn

import numpy as np
import pandas as pd

from ..errors import DataError
from .common import (
    _COLUMNS,
    _DATE_COLUMN_NAMES,
    _MAX_LISTED,
    _PRICE_COLUMNS,
    _fmt_date,
    _fmt_value,
    _list_dates,
    _norm_name,
)

__all__ = ["validate_ohlcv"]

_IGNORED_COLUMNS = ("adj close", "adj_close", "adjclose")
# Float noise allowed in the bar ordering (high >= max(open, close) ...); repaired, not an error.
_REL_TOL = 1e-9
# pd.api.types.infer_dtype kinds of an object index that must not be read as dates.
_NOT_DATES = frozenset(
    {"integer", "floating", "mixed-integer", "mixed-integer-float", "decimal", "complex", "boolean",
     "timedelta", "timedelta64", "time", "bytes"}
)



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
    """``validate_ohlcv`` in steps: the frame, its columns, its dates, the prices, the bars, the volume."""
    _check_frame(df, label)
    df = _flatten_columns(df, label)
    found = _find_columns(df, label)
    index = _check_dates(df, label)
    columns = _check_prices(df, found, label, index)
    o, h, lo, c = _check_bars(columns, label, index)
    volume = _check_volume(df, found, label, index)
    out = pd.DataFrame(
        {"open": o, "high": h, "low": lo, "close": c, "volume": volume},
        index=index,
        dtype="float64",
    )
    zone = getattr(df.index, "tz", None)
    if zone is not None:  # the stamps are UTC now: say so wherever they are written (metrics.json, the summary)
        out.attrs["timestamps"] = f"UTC, converted from {zone}"
    return out


def _check_frame(df, label: str) -> None:
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


def _find_columns(df: pd.DataFrame, label: str) -> dict[str, object]:
    """{'open': the frame's column for it, ...}: names matched case-insensitively, each at most once."""
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
    return found


def _check_dates(df: pd.DataFrame, label: str) -> pd.DatetimeIndex:
    """The index as sorted, unique, tz-naive dates, or a DataError naming the bad ones."""
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
        if first_dups.sum() * 2 > len(index):  # most rows repeat a date: intraday bars missing their time
            raise DataError(
                f"{label}: {int(first_dups.sum())} of {len(index)} rows repeat a date ({_list_dates(index, first_dups)}): "
                "several bars per day whose time of day is missing; put the time into the date column "
                "('2020-01-02 09:30') or name its column 'time' (load_csv joins 'date' and 'time')"
            )
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
    return index


def _check_prices(df: pd.DataFrame, found: dict, label: str, index: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    """The four price columns as floats: finite and > 0."""
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
    return columns


def _check_bars(columns: dict, label: str, index: pd.DatetimeIndex) -> tuple[np.ndarray, ...]:
    """open, high, low, close with high >= max(open, close) >= min(open, close) >= low (float noise repaired)."""
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
    return o, h, lo, c


def _check_volume(df: pd.DataFrame, found: dict, label: str, index: pd.DatetimeIndex) -> np.ndarray:
    """Volume >= 0. A NaN volume stays NaN: a missing value, so the ``volume`` feature is missing there too (as zero
    it made the feature's log change spike to +-15); a missing column is all zeros (no volume at all)."""
    if "volume" in found:
        volume = _numeric_column(df[found["volume"]], str(found["volume"]), label, index)
        bad = np.isinf(volume)
        if bad.any():
            raise DataError(
                f"{label}: column '{found['volume']}' has infinite volume at {_list_dates(index, bad)}; "
                "fix those rows (NaN volume is allowed: a missing value)"
            )
        bad = volume < 0
        if bad.any():
            raise DataError(
                f"{label}: column '{found['volume']}' has {int(bad.sum())} negative volume(s) at "
                f"{_list_dates(index, bad, volume)}; volume must be >= 0: fix or drop those rows"
            )
    else:
        volume = np.zeros(len(index), dtype="float64")
    return volume


def validate_ohlcv(df: pd.DataFrame, name: str = "data") -> pd.DataFrame:
    """Check an OHLCV frame and return a clean copy; the one gate for data entering puffin_bt.

    Column names are matched case-insensitively (``Open``/``open``/``OPEN``; ``Adj Close``
    and any other column is dropped). ``open, high, low, close`` are required; a missing
    ``volume`` is filled with 0; a NaN volume stays NaN (missing, not zero). A string index is parsed with
    ``pd.to_datetime``; a tz-aware index is converted to UTC and made tz-naive, and the frame's
    ``attrs["timestamps"]`` says so (``"UTC, converted from America/New_York"``).

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

