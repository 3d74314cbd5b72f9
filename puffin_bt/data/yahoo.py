"""Daily prices from Yahoo Finance (yfinance), cached on disk one CSV per ticker: ``load_prices``."""

from __future__ import annotations

import datetime as _dt
import io
import os
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError, NetworkError
from ..files import atomic_write_bytes, default_cache_dir, warn_cache_unwritable
from .common import _ONE_DAY, _PRICE_COLUMNS, _as_ticker_list, _date_range, _fmt_date, _list_dates, _norm_name, _range_text, _slice_or_raise
from .validate import _flatten_columns, _local_midnights, _validate

__all__ = ["check_ticker", "load_prices"]

Fetcher = Callable[[str, "pd.Timestamp | None", "pd.Timestamp | None"], pd.DataFrame]

# Downloaded bars whose high/low miss open/close by at most this (relative) are clipped, with a warning.
_VENDOR_REPAIR_TOL = 0.01
# The design's pattern, plus an optional leading "^" for Yahoo index symbols (^GSPC, ^VIX).
_TICKER_RE = re.compile(r"\^?[A-Za-z0-9][A-Za-z0-9.\-^=_]{0,31}")
_CACHE_MAGIC = "# puffin_bt price cache v1"


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
    try:
        _write_cache(path, ticker, frame, fetch_from, covers_to)
    except OSError as exc:  # a full disk: the prices were downloaded, so the run goes on without caching them
        warn_cache_unwritable("price cache", path.parent, exc)
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
