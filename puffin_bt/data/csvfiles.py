"""A user's OHLCV CSV file (optionally .gz/.zip compressed), read and validated: ``load_csv``."""

from __future__ import annotations

import lzma
import os
import re
import tarfile
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .common import _COLUMNS, _DATE_COLUMN_NAMES, _MAX_LISTED, _PRICE_COLUMNS, _fmt_date, _fmt_value, _norm_name
from .validate import _diagnose_dates, _local_midnights, _raise_date_problem, _validate

__all__ = ["has_symbol_column", "load_csv", "load_csv_symbols"]

# NN/NN/YYYY (or . or - between; a time may follow): day/month or month/day, which the values must tell.
_NUMERIC_DATE = re.compile(r"\s*(\d{1,2})([/.\-])(\d{1,2})\2(\d{2}|\d{4})(?:[ T].*)?\s*$")


def _day_first(raw: list, label: str, column: str) -> bool:
    """Whether dates written NN/NN/YYYY put the day first: only when a first field above 12 says so.
    When every date reads both ways (no field above 12) that is a DataError, never a silent guess:
    monthly bars on the 1st, 01/02/2020, 01/03/2020, ..., would otherwise become daily bars in January."""
    matches = [_NUMERIC_DATE.match(str(v)) for v in raw if not pd.isna(v)]
    if not matches or not all(matches):
        return False
    first = [int(m.group(1)) for m in matches]
    second = [int(m.group(3)) for m in matches]
    month_first, day_first = max(first) <= 12, max(second) <= 12
    if month_first and day_first and first != second:
        example = next(str(v).strip() for v, a, b in zip(raw, first, second) if a != b)
        raise DataError(
            f"{label}: the dates in column {column} read as day/month and as month/day alike (e.g. {example!r}: no "
            "field is above 12 to tell which); write them as YYYY-MM-DD"
        )
    return day_first and not month_first


def _parse_csv_dates(values: pd.Series, label: str, column: str, first_line: int = 2) -> pd.DatetimeIndex:
    """Parse a CSV date column; daily bars with offsets keep their local calendar date.

    ``column`` is the column's description used in messages.
    """

    def where(pos: int) -> str:
        return f"line {pos + first_line}"

    raw = list(values)
    day_first = _day_first(raw, label, column)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = pd.DatetimeIndex(pd.to_datetime(values, dayfirst=day_first))
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


def _check_duplicate_columns(path: Path, frame: pd.DataFrame, label: str) -> None:
    """A header naming a price or date column twice is ambiguous (pandas would rename the second to
    'close.1' and the first would be used silently): a DataError naming it."""
    if not any(re.fullmatch(r".+\.\d+", str(c)) for c in frame.columns):
        return  # pandas renames a repeated name to NAME.1: without one, no name repeats
    header = pd.read_csv(path, header=None, nrows=1, dtype=str, skipinitialspace=True).iloc[0].tolist()
    wanted = (*_COLUMNS, *_DATE_COLUMN_NAMES, "time")
    seen: dict[str, int] = {}
    for position, column in enumerate(header, 1):
        key = _norm_name(column)
        if key in wanted and key in seen:
            raise DataError(
                f"{label}: column {key!r} appears twice in the header (columns {seen[key]} and {position}); "
                "keep one of them"
            )
        seen.setdefault(key, position)


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
    _check_duplicate_columns(path, frame, label)
    symbol = _symbol_column(frame)
    if symbol is not None:
        tickers = frame[symbol].dropna().str.strip().unique()
        if len(tickers) > 1:
            shown = ", ".join(map(repr, tickers[:5])) + (f" and {len(tickers) - 5} more" if len(tickers) > 5 else "")
            raise DataError(
                f"{label}: column {symbol!r} holds {len(tickers)} tickers ({shown}): a long-format file, one row per "
                f"ticker and bar; read it with load_csv_symbols(path) (one frame per ticker; --csv does so) or give "
                f"each ticker its own file"
            )
        frame = frame.drop(columns=symbol)  # one ticker: the column only repeats its name
    return _bars_of(frame, label)


def load_csv_symbols(path: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """A long-format CSV (``symbol,date,open,high,low,close,volume``, as pytimetk, Qlib exports and stacked yfinance
    downloads write) as ``{symbol: validated OHLCV frame}``, in the order the symbols first appear; a file without
    a ``symbol``/``ticker`` column as ``{file stem: frame}`` (:func:`load_csv`)."""
    path = Path(os.fspath(path)).expanduser()
    if not has_symbol_column(path):
        return {path.name.split(".")[0] or path.name: load_csv(path)}
    frame = pd.read_csv(path, dtype=str, skipinitialspace=True)
    symbol = _symbol_column(frame)
    names = frame[symbol].fillna("").str.strip()
    out = {}
    for ticker in dict.fromkeys(names):
        label = f"'{ticker}' (rows of column {symbol!r} in file '{path.absolute()}')"
        if not ticker:
            raise DataError(f"{label}: {int((names == '').sum())} row(s) have no {symbol}; fill or drop them")
        out[ticker] = _bars_of(frame[names == ticker].drop(columns=symbol).reset_index(drop=True), label)
    return out


def has_symbol_column(path: str | os.PathLike) -> bool:
    """Whether a CSV file's header names a ``symbol``/``ticker`` column (False for a file that cannot be read: reading
    it with load_csv says what is wrong)."""
    try:
        return _symbol_column(pd.read_csv(path, dtype=str, skipinitialspace=True, nrows=0)) is not None
    except Exception:  # noqa: BLE001 - any unreadable file is load_csv's to report
        return False


def _symbol_column(frame: pd.DataFrame) -> str | None:
    found = [c for c in frame.columns if _norm_name(c) in ("symbol", "ticker")]
    return found[0] if found else None


def _bars_of(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """The rows of one ticker (text columns, the date among them) as a validated OHLCV frame."""
    named = [c for c in frame.columns if _norm_name(c) in _DATE_COLUMN_NAMES]
    date_col = named[0] if named else frame.columns[0]
    column_text = repr(date_col) if named else (
        f"{date_col!r} (no column is named date/datetime/timestamp, so the first one is used)"
    )
    times = [c for c in frame.columns if _norm_name(c) == "time"]
    if named and _norm_name(date_col) == "date" and times:
        # Intraday bars with the time of day in its own column: the bar's stamp is date + time.
        stamps = frame[date_col].str.strip() + " " + frame[times[0]].str.strip()
        index = _parse_csv_dates(stamps, label, f"{date_col!r} + {times[0]!r}")
        frame = frame.drop(columns=[date_col, times[0]])
    else:
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

