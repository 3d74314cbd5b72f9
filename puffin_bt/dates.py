"""Bar dates as Backtrader's float day numbers, computed without Backtrader, and the bars a year a date index shows.

The forecast store keys entries by the bar dates, and the engine-free paths (ticker workers,
evaluation) must compute the same numbers the Backtrader feeds do: these functions follow
``backtrader.date2num`` / ``num2date`` exactly (tested against them), so nothing below the
Backtrader adapters needs to import it.
"""

from __future__ import annotations

import datetime as _dt
import math

import numpy as np
import pandas as pd

__all__ = ["TRADING_DAYS", "date_numbers_of", "num2date", "periods_per_year"]

TRADING_DAYS = 252  # bars a year of daily data: the annualisation of Sharpe ratios and volatility
_ORDINAL_1970 = 719163.0  # datetime.date(1970, 1, 1).toordinal()


def date2num(when: _dt.datetime) -> float:
    """Days since 0001-01-01 UTC plus one, the fraction being the time of day (``backtrader.date2num``)."""
    if when.tzinfo is not None:
        delta = when.tzinfo.utcoffset(when)
        if delta is not None:
            when = when - delta
    base = float(when.toordinal())
    if isinstance(when, _dt.datetime):
        base = math.fsum((base, when.hour / 24.0, when.minute / 1440.0, when.second / 86400.0,
                          when.microsecond / 86400e6))
    return base


def num2date(number: float) -> _dt.datetime:
    """The naive UTC datetime of a day number (``backtrader.num2date`` without a time zone).

    >>> num2date(date2num(_dt.datetime(2010, 3, 4, 15, 30)))
    datetime.datetime(2010, 3, 4, 15, 30)
    """
    day = int(number)
    date = _dt.datetime.fromordinal(day)
    hour, rest = divmod(24.0 * (float(number) - day), 1)
    minute, rest = divmod(60.0 * rest, 1)
    second, rest = divmod(60.0 * rest, 1)
    microsecond = int(1e6 * rest)
    if microsecond < 10:  # Backtrader's compensation for rounding errors, kept so dates agree with it
        microsecond = 0
    out = _dt.datetime(date.year, date.month, date.day, int(hour), int(minute), int(second), microsecond)
    if microsecond > 999990:
        out += _dt.timedelta(microseconds=1e6 - microsecond)
    return out


def date_numbers_of(index) -> np.ndarray:
    """Backtrader's float date numbers for a DatetimeIndex, exactly as ``PandasData`` makes them
    (so fingerprints computed on a frame match the ones the indicators compute in the engine)."""
    index = pd.DatetimeIndex(index)
    utc = (index if index.tz is None else index.tz_convert(None)).to_numpy(dtype="datetime64[ns]")
    days = utc.astype("datetime64[D]")
    if len(utc) and not np.any(utc == np.datetime64("NaT")) and np.array_equal(utc, days.astype(utc.dtype)):
        # Daily bars (all at midnight, UTC): the number is the day's ordinal, here without a Python loop.
        return days.astype(np.int64).astype(np.float64) + _ORDINAL_1970
    return np.array([date2num(ts) for ts in index.to_pydatetime()], dtype=np.float64)


def periods_per_year(index: pd.DatetimeIndex) -> tuple[float, str]:
    """Bars per year of a bar index, and how that was found. Intraday bars (most consecutive bars on one date):
    the median bars per date x 252 trading days (x 365 when bars fall on weekends, as crypto's do); daily bars: 252
    (365 with weekend bars); longer bars: 365.25 days over the median spacing (52 weekly, 12 monthly)."""
    dates = pd.DatetimeIndex(index)
    if len(dates) < 2:
        return float(TRADING_DAYS), "too few bars to tell: 252 (daily bars)"
    days_a_year = 365 if (dates.day_of_week >= 5).mean() > 0.05 else TRADING_DAYS
    calendar = "calendar days (bars on weekends)" if days_a_year == 365 else "trading days"
    gap_days = float(np.median(np.diff(dates.values) / np.timedelta64(1, "D")))
    if gap_days < 0.5:
        per_day = float(pd.Series(1, index=dates).groupby(dates.normalize()).sum().median())
        return per_day * days_a_year, f"intraday bars: {per_day:g} a day (median) x {days_a_year} {calendar}"
    if gap_days < 4.5:
        return float(days_a_year), f"daily bars: {days_a_year} {calendar} a year"
    return float(round(365.25 / gap_days)), f"bars {gap_days:g} days apart (median): 365.25 / {gap_days:g}, rounded"
