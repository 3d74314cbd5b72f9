"""Tests for puffin_bt.data: bundled sample, validation, CSV loading and the price cache.

The network is never touched: load_prices always gets an injected fetcher.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from puffin_bt import files as files_mod
from puffin_bt.data import (
    SAMPLE_TICKERS,
    check_ticker,
    default_cache_dir,
    load_csv,
    load_prices,
    load_sample,
    validate_ohlcv,
)
from puffin_bt.data import yahoo as yahoo_mod
from puffin_bt.errors import ConfigError, DataError, NetworkError, PuffinError

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO / "puffin_bt" / "sample_data"


# --------------------------------------------------------------------------- helpers


def ohlcv(n: int = 5, start: str = "2020-01-06", upper: bool = True) -> pd.DataFrame:
    """A small valid frame on business days, yfinance-style capitalised columns."""
    idx = pd.bdate_range(start, periods=n)
    close = 100.0 + np.arange(n, dtype=float)
    frame = pd.DataFrame(
        {
            "Open": close - 0.5,
            "High": close + 1.0,
            "Low": close - 1.0,
            "Close": close,
            "Volume": np.full(n, 1000.0),
        },
        index=idx,
    )
    if not upper:
        frame.columns = [c.lower() for c in frame.columns]
    return frame


def raises_data_error(frame, *needles, name="ACME"):
    with pytest.raises(DataError) as info:
        validate_ohlcv(frame, name=name)
    message = str(info.value)
    assert name in message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def yahoo_history(ticker: str, start, end) -> pd.DataFrame:
    """Deterministic yfinance-shaped bars for 2019-2021, stamped at New York midnight."""
    idx = pd.bdate_range("2019-01-01", "2021-12-31", tz="America/New_York")
    seed = sum(map(ord, ticker))
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0, 0.01, len(idx))))
    frame = pd.DataFrame(
        {
            "Open": close * 0.999,
            "High": close * 1.01,
            "Low": close * 0.99,
            "Close": close,
            "Volume": rng.integers(1_000, 10_000, len(idx)).astype(float),
            "Dividends": 0.0,
            "Stock Splits": 0.0,
        },
        index=pd.DatetimeIndex(idx, name="Date"),
    )
    local = frame.index.tz_localize(None)
    mask = np.ones(len(frame), dtype=bool)
    if start is not None:
        mask &= local >= start
    if end is not None:
        mask &= local <= end
    return frame[mask]


class RecordingFetcher:
    def __init__(self, func=yahoo_history):
        self.func = func
        self.calls: list[tuple] = []

    def __call__(self, ticker, start, end):
        self.calls.append((ticker, start, end))
        return self.func(ticker, start, end)


def offline(ticker, start, end):
    raise OSError("network unreachable")


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --------------------------------------------------------------------------- bundled sample


def test_sample_has_four_tickers_over_the_full_range():
    sample = load_sample()
    assert tuple(sample) == SAMPLE_TICKERS == ("AAPL", "GOOG", "IBM", "MSFT")
    for ticker, frame in sample.items():
        assert frame.index[0] == pd.Timestamp("2004-08-19"), ticker
        assert frame.index[-1] == pd.Timestamp("2013-03-01"), ticker
        assert 2100 <= len(frame) <= 2200, ticker
        assert len(frame) == 2148, ticker


def test_sample_frames_are_already_valid():
    for ticker, frame in load_sample().items():
        assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
        assert all(dtype == np.float64 for dtype in frame.dtypes)
        assert frame.index.name == "date" and frame.index.tz is None
        pd.testing.assert_frame_equal(validate_ohlcv(frame, ticker), frame)
        assert (frame["volume"] > 0).all()


def test_sample_is_split_adjusted():
    # Raw AAPL closes went 88.99 -> 44.86 on the 2005-02-28 2:1 split; adjusted, it is a normal day.
    for ticker, frame in load_sample().items():
        returns = frame["close"].pct_change().dropna()
        assert returns.min() > -0.35, (ticker, returns.idxmin(), returns.min())
    aapl = load_sample("AAPL")["AAPL"]["close"]
    split_day = aapl.pct_change().loc["2005-02-28"]
    assert abs(split_day) < 0.05


def test_sample_returns_copies():
    first = load_sample("IBM")["IBM"]
    first.iloc[0, 0] = -1.0
    again = load_sample("IBM")["IBM"]
    assert again.iloc[0, 0] > 0


def test_sample_slicing_is_inclusive():
    out = load_sample(["MSFT", "AAPL"], start="2010-01-04", end="2010-01-08")
    assert list(out) == ["MSFT", "AAPL"]
    for frame in out.values():
        assert list(frame.index.strftime("%Y-%m-%d")) == [
            "2010-01-04",
            "2010-01-05",
            "2010-01-06",
            "2010-01-07",
            "2010-01-08",
        ]
    ts = load_sample("GOOG", start=pd.Timestamp("2012-12-31"))["GOOG"]
    assert ts.index[0] == pd.Timestamp("2012-12-31") and ts.index[-1] == pd.Timestamp("2013-03-01")


def test_sample_unknown_ticker_lists_available():
    with pytest.raises(DataError) as info:
        load_sample(["AAPL", "FB"])
    message = str(info.value)
    assert "'FB'" in message and "AAPL, GOOG, IBM, MSFT" in message and "load_prices" in message


def test_sample_lowercase_ticker_gets_a_hint():
    with pytest.raises(DataError, match="did you mean 'AAPL'"):
        load_sample("aapl")


def test_sample_empty_slice_is_an_error():
    with pytest.raises(DataError) as info:
        load_sample("AAPL", start="2015-01-01")
    assert "2015-01-01" in str(info.value) and "2004-08-19 to 2013-03-01" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"start": "2010-13-45"}, "start='2010-13-45'"),
        ({"start": "2011-01-01", "end": "2010-01-01"}, "swap"),
        ({"end": 20100101}, "number"),
    ],
)
def test_sample_bad_date_arguments(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        load_sample("AAPL", **kwargs)


def test_sample_provenance_is_bundled():
    text = (SAMPLE_DIR / "PROVENANCE.md").read_text(encoding="utf-8")
    assert "public domain" in text and "bokeh-sampledata" in text and "build_sample_data.py" in text


def _load_build_script():
    spec = importlib.util.spec_from_file_location("build_sample_data", REPO / "scripts" / "build_sample_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_script_reproduces_the_bundled_file(tmp_path, capsys):
    pytest.importorskip("bokeh_sampledata")
    script = _load_build_script()
    assert script.main(["--out", str(tmp_path)]) == 0
    built = (tmp_path / "stocks.csv.gz").read_bytes()
    bundled = (SAMPLE_DIR / "stocks.csv.gz").read_bytes()
    # Same content first (clear failure message), then the same compressed bytes.
    assert gzip.decompress(built) == gzip.decompress(bundled)
    assert built == bundled
    assert (tmp_path / "PROVENANCE.md").read_bytes() == (SAMPLE_DIR / "PROVENANCE.md").read_bytes()
    assert "wrote" in capsys.readouterr().out


# --------------------------------------------------------------------------- validate_ohlcv


def test_validate_returns_clean_new_frame():
    raw = ohlcv()
    raw["Adj Close"] = raw["Close"] * 0.5
    raw["Dividends"] = 0.0
    before = raw.copy()
    out = validate_ohlcv(raw, "ACME")
    pd.testing.assert_frame_equal(raw, before)  # input untouched
    assert out is not raw
    assert list(out.columns) == ["open", "high", "low", "close", "volume"]
    assert all(dtype == np.float64 for dtype in out.dtypes)
    assert out.index.name == "date" and isinstance(out.index, pd.DatetimeIndex)
    np.testing.assert_array_equal(out["close"].to_numpy(), raw["Close"].to_numpy())


@pytest.mark.parametrize("case", [str.lower, str.upper, str.title])
def test_validate_column_names_are_case_insensitive(case):
    raw = ohlcv(upper=False)
    raw.columns = [case(c) for c in raw.columns]
    assert list(validate_ohlcv(raw).columns) == ["open", "high", "low", "close", "volume"]


def test_validate_fills_missing_volume_with_zero():
    out = validate_ohlcv(ohlcv().drop(columns="Volume"))
    assert (out["volume"] == 0.0).all()


def test_validate_nan_volume_stays_missing_not_zero():
    raw = ohlcv()
    raw.iloc[2, 4] = np.nan
    out = validate_ohlcv(raw)
    assert np.isnan(out["volume"].iloc[2]) and out["volume"].iloc[1] == 1000.0


def test_validate_accepts_int_and_numeric_string_columns():
    raw = ohlcv()
    raw["Volume"] = raw["Volume"].astype("int64")
    raw["Close"] = raw["Close"].astype(str)
    out = validate_ohlcv(raw)
    assert out["close"].dtype == np.float64 and out["volume"].dtype == np.float64


def test_validate_parses_string_index():
    raw = ohlcv()
    raw.index = raw.index.strftime("%Y-%m-%d")
    out = validate_ohlcv(raw)
    assert out.index[0] == pd.Timestamp("2020-01-06") and out.index.tz is None


def test_validate_tz_aware_index_is_converted_to_utc_naive():
    raw = ohlcv()
    raw.index = raw.index.tz_localize("America/New_York")
    out = validate_ohlcv(raw)
    assert out.index.tz is None
    assert out.index[0] == pd.Timestamp("2020-01-06 05:00")  # midnight EST = 05:00 UTC


def test_validate_mixed_timezones_in_object_index():
    raw = ohlcv(3)
    raw.index = pd.Index(
        [
            pd.Timestamp("2020-01-06", tz="America/New_York"),
            pd.Timestamp("2020-01-07", tz="Europe/Paris"),
            pd.Timestamp("2020-01-08", tz="America/New_York"),
        ],
        dtype=object,
    )
    raises_data_error(raw, "mix time zones", "America/New_York", "Europe/Paris", "utc=True")


def test_validate_mixed_offset_strings_in_index():
    raw = ohlcv(2)
    raw.index = ["2020-01-06 00:00:00-05:00", "2020-07-07 00:00:00-04:00"]
    raises_data_error(raw, "mix time zones", "-05:00", "-04:00")


def test_validate_repairs_float_noise_in_bar_order():
    raw = ohlcv(2)
    raw.iloc[0, 1] = raw.iloc[0, 3] * (1 - 1e-12)  # high a hair below close
    out = validate_ohlcv(raw)
    assert out["high"].iloc[0] == out["close"].iloc[0]


def test_validate_flattens_single_ticker_multiindex_columns():
    raw = ohlcv()
    raw.columns = pd.MultiIndex.from_tuples([(c, "AAPL") for c in raw.columns], names=["Price", "Ticker"])
    assert list(validate_ohlcv(raw).columns) == ["open", "high", "low", "close", "volume"]


def test_validate_rejects_multi_ticker_columns():
    one, two = ohlcv(), ohlcv()
    raw = pd.concat({"AAPL": one, "MSFT": two}, axis=1).swaplevel(axis=1)
    raises_data_error(raw, "several tickers", "'AAPL'", "'MSFT'", "df.xs(")


# One test per failure case: type, message names the problem and the dates.


def test_validate_not_a_dataframe():
    raises_data_error([1, 2, 3], "got list", "DataFrame")


def test_validate_series_is_not_a_dataframe():
    raises_data_error(ohlcv()["Close"], "got Series")


def test_validate_empty_frame():
    raises_data_error(ohlcv().iloc[:0], "empty", "0 rows")


def test_validate_missing_columns():
    raw = ohlcv().drop(columns=["High", "Close"])
    raw["Adj Close"] = 1.0
    raises_data_error(raw, "missing column(s) 'high', 'close'", "'Adj Close' is ignored")


def test_validate_duplicate_columns_after_lowercasing():
    raw = ohlcv()
    raw["close"] = raw["Close"]
    raises_data_error(raw, "'Close' and 'close'")


def test_validate_non_numeric_values():
    raw = ohlcv()
    raw["Close"] = raw["Close"].astype(object)
    raw.iloc[2, 3] = "n/a!"
    raw.iloc[4, 3] = "x"
    raises_data_error(raw, "'Close'", "non-numeric", "2020-01-08 ('n/a!')", "2020-01-10 ('x')")


def test_validate_boolean_column():
    raw = ohlcv()
    raw["Volume"] = True
    raises_data_error(raw, "'Volume'", "booleans")


def test_validate_index_not_dates():
    raw = ohlcv().reset_index(drop=True)
    raises_data_error(raw, "index must hold dates", "RangeIndex", "set_index")


def test_validate_index_not_dates_with_date_column_hint():
    raw = ohlcv().reset_index(names="Date")
    raises_data_error(raw, "index must hold dates", "set_index('Date')")


def test_validate_unparseable_index_value():
    raw = ohlcv(4)
    raw.index = ["2020-01-06", "2020-01-07", "someday", "2020-01-09"]
    raises_data_error(raw, "'someday'", "position 2", "YYYY-MM-DD")


def test_validate_numbers_in_object_index_are_not_dates():
    raw = ohlcv(3)
    raw.index = pd.Index(["2020-01-06", 20200107, 1.5], dtype=object)
    raises_data_error(raw, "20200107 at position 1", "1.5 at position 2")


def test_validate_nat_in_index():
    raw = ohlcv(3)
    raw.index = pd.DatetimeIndex(["2020-01-06", None, "2020-01-08"])
    raises_data_error(raw, "NaT", "position 1")


def test_validate_duplicated_dates():
    raw = ohlcv(4)
    raw.index = pd.DatetimeIndex(["2020-01-06", "2020-01-07", "2020-01-07", "2020-01-08"])
    raises_data_error(raw, "duplicated", "2020-01-07", "duplicated(keep='last')")


def test_validate_unsorted_dates_are_not_sorted_silently():
    raw = ohlcv(4).iloc[[0, 2, 1, 3]]
    raises_data_error(raw, "not in increasing order", "2020-01-07 after 2020-01-08", "df.sort_index()")


@pytest.mark.parametrize(("bad", "shown"), [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
@pytest.mark.parametrize("column", ["Open", "High", "Low", "Close"])
def test_validate_nan_or_inf_prices(column, bad, shown):
    raw = ohlcv()
    raw.loc["2020-01-08", column] = bad
    raises_data_error(raw, f"'{column}'", "NaN/inf", f"2020-01-08 ({shown})", "dropna")


def test_validate_zero_price():
    raw = ohlcv()
    raw.loc["2020-01-07", "Low"] = 0.0
    raises_data_error(raw, "'Low'", "zero or negative", "2020-01-07 (0.0)")


def test_validate_negative_price():
    raw = ohlcv()
    raw.loc["2020-01-09", "Open"] = -3.0
    raises_data_error(raw, "'Open'", "zero or negative", "2020-01-09 (-3.0)")


def test_validate_high_below_low():
    raw = ohlcv()
    raw.loc["2020-01-07", ["High", "Low"]] = [90.0, 110.0]
    raises_data_error(raw, "high < low", "2020-01-07", "high 90.0 < low 110.0")


def test_validate_high_below_open_or_close():
    raw = ohlcv()
    raw.loc["2020-01-08", "High"] = raw.loc["2020-01-08", "Close"] - 0.25
    raises_data_error(raw, "high < max(open, close)", "2020-01-08")


def test_validate_low_above_open_or_close():
    raw = ohlcv()
    raw.loc["2020-01-10", "Low"] = raw.loc["2020-01-10", "Open"] + 0.1
    raises_data_error(raw, "low > min(open, close)", "2020-01-10")


def test_validate_negative_volume():
    raw = ohlcv()
    raw.loc["2020-01-06", "Volume"] = -1.0
    raises_data_error(raw, "'Volume'", "negative volume", "2020-01-06 (-1.0)")


def test_validate_lists_at_most_three_dates():
    raw = ohlcv(6)
    raw["Close"] = np.nan
    message = raises_data_error(raw, "6 NaN/inf", "(and 3 more)")
    assert "2020-01-09" not in message


def test_errors_are_puffin_and_value_errors():
    with pytest.raises(PuffinError):
        validate_ohlcv(None)
    with pytest.raises(ValueError):
        validate_ohlcv(None)


# Property: any small OHLC frame either validates into a frame meeting every invariant
# or raises DataError -- never another exception.

_price = st.one_of(
    st.floats(min_value=0.01, max_value=1e4, allow_nan=False),
    st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -1.0, 1e-300, 1e300]),
)
_dates = pd.date_range("2020-01-01", periods=8, freq="D")


@st.composite
def _frames(draw):
    n = draw(st.integers(min_value=0, max_value=6))
    positions = draw(st.lists(st.integers(0, 7), min_size=n, max_size=n))
    if draw(st.booleans()):
        positions = sorted(set(positions))  # often valid order
    columns = {}
    for name in ("Open", "High", "Low", "Close"):
        columns[name] = draw(st.lists(_price, min_size=len(positions), max_size=len(positions)))
    if draw(st.booleans()):
        columns["Volume"] = draw(
            st.lists(
                st.one_of(st.floats(0, 1e9), st.sampled_from([np.nan, -5.0, np.inf])),
                min_size=len(positions),
                max_size=len(positions),
            )
        )
    frame = pd.DataFrame(columns, index=_dates[positions])
    if draw(st.booleans()) and len(frame):  # sometimes make the bar ordering consistent
        body = frame[["Open", "Close"]]
        frame["High"] = np.fmax(frame["High"], body.max(axis=1))
        frame["Low"] = np.fmin(frame["Low"], body.min(axis=1))
    if draw(st.booleans()):
        frame.index = frame.index.strftime("%Y-%m-%d")
    return frame


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_frames())
def test_validate_property_valid_or_data_error(frame):
    before = frame.copy()
    try:
        out = validate_ohlcv(frame, "prop")
    except DataError:
        return
    finally:
        pd.testing.assert_frame_equal(frame, before)
    assert list(out.columns) == ["open", "high", "low", "close", "volume"]
    assert all(dtype == np.float64 for dtype in out.dtypes)
    assert isinstance(out.index, pd.DatetimeIndex) and out.index.tz is None
    assert out.index.name == "date"
    assert out.index.is_monotonic_increasing and out.index.is_unique
    prices = out[["open", "high", "low", "close"]].to_numpy()
    assert np.isfinite(prices).all() and (prices > 0).all()
    assert (out["high"] >= out[["open", "close"]].max(axis=1)).all()
    assert (out["low"] <= out[["open", "close"]].min(axis=1)).all()
    assert (out["high"] >= out["low"]).all()
    volume = out["volume"].dropna()  # a NaN volume stays missing (issue 25), never infinite or negative
    assert np.isfinite(volume).all() and (volume >= 0).all()
    assert len(out) == len(frame)


# --------------------------------------------------------------------------- load_csv


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


GOOD_CSV = (
    "Date,Open,High,Low,Close,Adj Close,Volume\n"
    "2020-01-02,10.0,11.0,9.5,10.5,10.4,1000\n"
    "2020-01-03,10.5,11.5,10.0,11.0,10.9,1200\n"
    "2020-01-06,11.0,11.2,10.1,10.2,10.1,900\n"
)


def test_load_csv_happy_path(tmp_path):
    out = load_csv(write(tmp_path / "ACME.csv", GOOD_CSV))
    assert list(out.columns) == ["open", "high", "low", "close", "volume"]
    assert list(out.index.strftime("%Y-%m-%d")) == ["2020-01-02", "2020-01-03", "2020-01-06"]
    assert out.loc["2020-01-06", "close"] == 10.2 and out.loc["2020-01-03", "volume"] == 1200.0


def test_load_csv_gzip_and_first_column_dates(tmp_path):
    text = "when,open,high,low,close\n2020-01-02,1,2,0.5,1.5\n2020-01-03,1.5,2,1,1.2\n"
    path = tmp_path / "x.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    out = load_csv(path)
    assert len(out) == 2 and (out["volume"] == 0).all()


def test_load_csv_round_trips_a_frame_written_by_pandas(tmp_path):
    frame = load_sample("IBM", end="2004-12-31")["IBM"]
    frame.to_csv(tmp_path / "ibm.csv")
    pd.testing.assert_frame_equal(load_csv(tmp_path / "ibm.csv"), frame)


def test_load_csv_daily_bars_with_dst_offsets_keep_local_dates(tmp_path):
    # What yfinance's Ticker.history(...).to_csv() writes: offsets change with daylight saving.
    text = (
        "Date,Open,High,Low,Close,Volume\n"
        "2020-03-06 00:00:00-05:00,10,11,9,10.5,100\n"
        "2020-03-09 00:00:00-04:00,10.5,11,9,10,100\n"
    )
    out = load_csv(write(tmp_path / "dst.csv", text))
    assert list(out.index) == [pd.Timestamp("2020-03-06"), pd.Timestamp("2020-03-09")]


def test_load_csv_missing_file(tmp_path):
    with pytest.raises(DataError) as info:
        load_csv(tmp_path / "nope.csv")
    assert "nope.csv" in str(info.value) and "not found" in str(info.value)


def test_load_csv_empty_file(tmp_path):
    with pytest.raises(DataError) as info:
        load_csv(write(tmp_path / "empty.csv", ""))
    assert "empty.csv" in str(info.value) and "empty" in str(info.value) and "header" in str(info.value)


def test_load_csv_header_only(tmp_path):
    with pytest.raises(DataError, match="no data rows"):
        load_csv(write(tmp_path / "hdr.csv", "date,open,high,low,close\n"))


def test_load_csv_truncated_last_line(tmp_path):
    path = write(tmp_path / "cut.csv", GOOD_CSV + "2020-01-07,10.2,10.8")
    with pytest.raises(DataError) as info:
        load_csv(path)
    message = str(info.value)
    assert "cut.csv" in message and "truncated" in message and "2020-01-07" in message


def test_load_csv_truncated_gzip(tmp_path):
    load_sample("IBM")["IBM"].to_csv(tmp_path / "ibm.csv")
    payload = gzip.compress((tmp_path / "ibm.csv").read_bytes())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(DataError) as info:
        load_csv(path)
    assert "cut.csv.gz" in str(info.value) and "truncated" in str(info.value) and "again" in str(info.value)


def test_load_csv_without_a_date_column_says_so(tmp_path):
    with pytest.raises(DataError) as info:
        load_csv(write(tmp_path / "nodates.csv", "open,high,low,close\n1,2,0.5,1\n"))
    assert "no column is named date" in str(info.value) and "'open'" in str(info.value)


def test_load_csv_garbled_binary(tmp_path):
    path = tmp_path / "junk.csv"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError) as info:
        load_csv(path)
    assert "junk.csv" in str(info.value)


def test_load_csv_bad_date_format(tmp_path):
    text = GOOD_CSV.replace("2020-01-03", "3rd of Jan")
    with pytest.raises(DataError) as info:
        load_csv(write(tmp_path / "dates.csv", text))
    message = str(info.value)
    assert "dates.csv" in message and "'3rd of Jan'" in message and "line 3" in message
    assert "YYYY-MM-DD" in message


def test_load_csv_mixed_date_formats(tmp_path):
    text = GOOD_CSV.replace("2020-01-03", "01/03/2020")
    with pytest.raises(DataError) as info:
        load_csv(write(tmp_path / "mixed.csv", text))
    assert "mixed.csv" in str(info.value) and "format" in str(info.value)


def test_load_csv_empty_date(tmp_path):
    text = GOOD_CSV.replace("2020-01-03", "")
    with pytest.raises(DataError) as info:
        load_csv(write(tmp_path / "nodate.csv", text))
    assert "nodate.csv" in str(info.value) and "(empty) at line 3" in str(info.value)


def test_load_csv_missing_column(tmp_path):
    text = "\n".join(",".join(line.split(",")[:4]) for line in GOOD_CSV.splitlines())
    with pytest.raises(DataError) as info:
        load_csv(write(tmp_path / "nolose.csv", text))
    assert "nolose.csv" in str(info.value) and "'close'" in str(info.value)


def test_load_csv_non_numeric(tmp_path):
    text = GOOD_CSV.replace("10.5,11.5,10.0,11.0", "10.5,11.5,10.0,eleven")
    with pytest.raises(DataError) as info:
        load_csv(write(tmp_path / "words.csv", text), name="WORDS")
    message = str(info.value)
    assert "WORDS" in message and "words.csv" in message and "'eleven'" in message and "2020-01-03" in message


def test_load_csv_name_defaults_to_stem(tmp_path):
    text = GOOD_CSV.replace("2020-01-06,11.0,11.2", "2020-01-06,-11.0,11.2")
    with pytest.raises(DataError, match="'MSFT_daily'"):
        load_csv(write(tmp_path / "MSFT_daily.csv", text))


# --------------------------------------------------------------------------- load_prices


def test_load_prices_writes_csv_cache_then_works_offline(tmp_path):
    fetcher = RecordingFetcher()
    first = load_prices(["AAPL", "MSFT"], start="2020-01-01", end="2020-06-30", cache_dir=tmp_path, fetcher=fetcher)
    assert [c[0] for c in fetcher.calls] == ["AAPL", "MSFT"]
    assert fetcher.calls[0][1:] == (pd.Timestamp("2020-01-01"), pd.Timestamp("2020-06-30"))
    frame = first["AAPL"]
    # yfinance stamps daily bars at New York midnight; the calendar date is kept.
    assert frame.index[0] == pd.Timestamp("2020-01-01") and frame.index[-1] == pd.Timestamp("2020-06-30")
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]

    cache = tmp_path / "prices" / "AAPL.csv"
    text = cache.read_text(encoding="utf-8")
    assert text.startswith("# puffin_bt price cache v1 ticker=AAPL from=2020-01-01 to=2020-06-30")
    assert "date,open,high,low,close,volume" in text  # plain CSV, not a pickle

    again = load_prices(["AAPL", "MSFT"], start="2020-01-01", end="2020-06-30", cache_dir=tmp_path, fetcher=offline)
    for ticker in ("AAPL", "MSFT"):
        pd.testing.assert_frame_equal(again[ticker], first[ticker])  # exact float round trip
    inner = load_prices("AAPL", start="2020-03-02", end="2020-03-06", cache_dir=tmp_path, fetcher=offline)
    assert len(inner["AAPL"]) == 5


def test_load_prices_flattens_yfinance_download_columns(tmp_path):
    def download_shaped(ticker, start, end):
        frame = yahoo_history(ticker, start, end)[["Close", "High", "Low", "Open", "Volume"]]
        frame.columns = pd.MultiIndex.from_product([frame.columns, [ticker]], names=["Price", "Ticker"])
        frame.index = frame.index.tz_localize(None)
        return frame

    out = load_prices("IBM", start="2021-01-04", end="2021-01-08", cache_dir=tmp_path, fetcher=download_shaped)
    assert list(out["IBM"].columns) == ["open", "high", "low", "close", "volume"] and len(out["IBM"]) == 5


def test_load_prices_atomic_write_leaves_no_temp_files(tmp_path):
    load_prices(["AAPL", "GOOG"], start="2020-01-01", end="2020-02-01", cache_dir=tmp_path, fetcher=yahoo_history)
    assert files_under(tmp_path) == ["prices", "prices/AAPL.csv", "prices/GOOG.csv"]


def test_load_prices_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files_mod.os, "replace", broken_replace)
    # The price cache is a cache (issue 25): a write that fails is a warning, and the download is served.
    with pytest.warns(UserWarning, match=r"price cache .* cannot be written \(disk full\)"):
        out = load_prices("AAPL", start="2020-01-01", end="2020-02-01", cache_dir=tmp_path, fetcher=yahoo_history)
    assert len(out["AAPL"]) > 15
    assert files_under(tmp_path) == ["prices"]


def test_load_prices_uncovered_range_refetches_union(tmp_path):
    fetcher = RecordingFetcher()
    load_prices("AAPL", start="2020-03-01", end="2020-04-30", cache_dir=tmp_path, fetcher=fetcher)
    out = load_prices("AAPL", start="2020-01-01", end="2020-02-28", cache_dir=tmp_path, fetcher=fetcher)
    assert fetcher.calls[-1][1:] == (pd.Timestamp("2020-01-01"), pd.Timestamp("2020-04-30"))
    assert out["AAPL"].index[-1] <= pd.Timestamp("2020-02-28")
    # now both ranges are served from disk
    load_prices("AAPL", start="2020-02-03", end="2020-04-01", cache_dir=tmp_path, fetcher=offline)
    assert len(fetcher.calls) == 2


def test_load_prices_uncovered_range_falls_back_to_cache_with_warning(tmp_path):
    load_prices("AAPL", start="2020-01-01", end="2020-03-31", cache_dir=tmp_path, fetcher=yahoo_history)
    with pytest.warns(UserWarning, match="cached copy"):
        out = load_prices("AAPL", start="2020-02-01", end="2020-12-31", cache_dir=tmp_path, fetcher=offline)
    assert out["AAPL"].index[-1] == pd.Timestamp("2020-03-31")


def test_load_prices_end_none_means_today(tmp_path, monkeypatch):
    monkeypatch.setattr(yahoo_mod, "_today", lambda: pd.Timestamp("2021-06-30"))
    fetcher = RecordingFetcher()
    load_prices("MSFT", start="2021-01-04", cache_dir=tmp_path, fetcher=fetcher)
    load_prices("MSFT", start="2021-01-04", cache_dir=tmp_path, fetcher=offline)  # same day: cached
    assert len(fetcher.calls) == 1
    monkeypatch.setattr(yahoo_mod, "_today", lambda: pd.Timestamp("2021-07-15"))
    load_prices("MSFT", start="2021-01-04", cache_dir=tmp_path, fetcher=fetcher)  # stale: refetch
    assert len(fetcher.calls) == 2


def test_load_prices_refresh_forces_download(tmp_path):
    fetcher = RecordingFetcher()
    load_prices("AAPL", start="2020-01-01", end="2020-01-31", cache_dir=tmp_path, fetcher=fetcher)
    load_prices("AAPL", start="2020-01-01", end="2020-01-31", cache_dir=tmp_path, fetcher=fetcher, refresh=True)
    assert len(fetcher.calls) == 2


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00\x01\x02garbage", b"# puffin_bt price cache v1 ticker=AAPL from=start to=2020-01-31 fetched=x\nfoo\n1,2"],
)
def test_load_prices_corrupted_cache_is_refetched(tmp_path, garbage):
    cache = tmp_path / "prices" / "AAPL.csv"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(garbage)
    with pytest.warns(UserWarning, match="unreadable"):
        out = load_prices("AAPL", start="2020-01-01", end="2020-01-31", cache_dir=tmp_path, fetcher=yahoo_history)
    assert len(out["AAPL"]) > 15
    assert cache.read_text(encoding="utf-8").startswith("# puffin_bt price cache v1 ticker=AAPL")


def test_load_prices_corrupted_cache_and_offline(tmp_path):
    cache = tmp_path / "prices" / "AAPL.csv"
    cache.parent.mkdir(parents=True)
    cache.write_text("date,open\n2020-01-01,oops\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_prices("AAPL", start="2020-01-01", end="2020-01-31", cache_dir=tmp_path, fetcher=offline)
    message = str(info.value)
    assert str(cache) in message and "delete" in message and "network unreachable" in message


def test_load_prices_empty_frame_means_unknown_symbol(tmp_path):
    with pytest.raises(DataError) as info:
        load_prices("XYZQ", start="2020-01-01", cache_dir=tmp_path, fetcher=lambda t, s, e: pd.DataFrame())
    assert not isinstance(info.value, NetworkError)
    assert "no data for ticker 'XYZQ'" in str(info.value) and "check the symbol" in str(info.value)
    assert files_under(tmp_path) == []


def test_load_prices_all_nan_rows_mean_no_data(tmp_path):
    def nan_rows(ticker, start, end):
        frame = yahoo_history(ticker, start, end)
        frame[["Open", "High", "Low", "Close"]] = np.nan
        return frame

    with pytest.raises(DataError, match="no data for ticker"):
        load_prices("XYZQ", start="2020-01-01", end="2020-01-31", cache_dir=tmp_path, fetcher=nan_rows)


def test_load_prices_offline_without_cache(tmp_path):
    with pytest.raises(NetworkError) as info:
        load_prices(["AAPL"], start="2020-01-01", cache_dir=tmp_path, fetcher=offline)
    message = str(info.value)
    assert "'AAPL'" in message and "network unreachable" in message
    assert "load_sample()" in message and "load_csv" in message and "--csv" in message
    assert isinstance(info.value, DataError)


def test_load_prices_bad_data_from_fetcher_is_a_data_error(tmp_path):
    def negative(ticker, start, end):
        frame = yahoo_history(ticker, start, end)
        frame.iloc[3, 0] = -1.0
        return frame

    with pytest.raises(DataError, match="'Open'"):
        load_prices("AAPL", start="2020-01-01", end="2020-01-31", cache_dir=tmp_path, fetcher=negative)
    assert files_under(tmp_path) == []


def test_load_prices_clips_small_vendor_glitches_with_warning(tmp_path):
    def glitchy(ticker, start, end):
        frame = yahoo_history(ticker, start, end)
        frame.iloc[2, frame.columns.get_loc("High")] = frame["Close"].iloc[2] * 0.999
        return frame

    with pytest.warns(UserWarning, match="clipped high/low"):
        out = load_prices("AAPL", start="2020-01-01", end="2020-01-31", cache_dir=tmp_path, fetcher=glitchy)
    bar = out["AAPL"].iloc[2]
    assert bar["high"] == max(bar["open"], bar["close"])


def test_load_prices_tz_aware_intraday_stamps_become_utc(tmp_path):
    def intraday(ticker, start, end):
        frame = yahoo_history(ticker, start, end)
        frame.index = frame.index + pd.Timedelta(hours=16)  # 16:00 New York
        return frame

    out = load_prices("AAPL", start="2020-01-02", end="2020-01-03", cache_dir=tmp_path, fetcher=intraday)
    assert list(out["AAPL"].index) == [pd.Timestamp("2020-01-02 21:00"), pd.Timestamp("2020-01-03 21:00")]
    again = load_prices("AAPL", start="2020-01-02", end="2020-01-03", cache_dir=tmp_path, fetcher=offline)
    pd.testing.assert_frame_equal(again["AAPL"], out["AAPL"])


@pytest.mark.parametrize("ticker", ["../../x", "..", "a/../../b", "/etc/passwd", "AAPL/..", "A..B", "", " AAPL", "x" * 40])
def test_load_prices_rejects_path_traversal(tmp_path, ticker):
    cache_dir = tmp_path / "cache"
    fetcher = RecordingFetcher()
    with pytest.raises(ConfigError):
        load_prices(ticker, cache_dir=cache_dir, fetcher=fetcher)
    assert fetcher.calls == []
    assert files_under(tmp_path) == []


def test_load_prices_honours_puffin_bt_cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PUFFIN_BT_CACHE", str(tmp_path / "envcache"))
    assert default_cache_dir() == tmp_path / "envcache"
    load_prices("GOOG", start="2020-01-01", end="2020-01-31", fetcher=yahoo_history)
    assert (tmp_path / "envcache" / "prices" / "GOOG.csv").is_file()


def test_default_cache_dir_fallbacks(tmp_path, monkeypatch):
    monkeypatch.delenv("PUFFIN_BT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "puffin_bt"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "puffin_bt"


@pytest.mark.parametrize("ticker", ["AAPL", "BRK-B", "^GSPC", "EURUSD=X", "BMW.DE", "7203.T", "a_b"])
def test_check_ticker_accepts_symbols(ticker):
    assert check_ticker(ticker) == ticker


@pytest.mark.parametrize("ticker", ["../x", "A..B", ".hidden", "-x", "^", "^^X", "AAPL\n", "A B", "a\\b", None, 42])
def test_check_ticker_rejects_bad_symbols(ticker):
    with pytest.raises(ConfigError) as info:
        check_ticker(ticker)
    assert repr(ticker) in str(info.value)


def test_load_prices_argument_errors(tmp_path):
    with pytest.raises(ConfigError, match="empty"):
        load_prices([], cache_dir=tmp_path, fetcher=offline)
    with pytest.raises(ConfigError, match="swap"):
        load_prices("AAPL", start="2021-01-01", end="2020-01-01", cache_dir=tmp_path, fetcher=offline)
    with pytest.raises(ConfigError, match="callable"):
        load_prices("AAPL", cache_dir=tmp_path, fetcher="yahoo")
    with pytest.raises(ConfigError, match="must be a string"):
        load_prices(["AAPL", ["MSFT"]], cache_dir=tmp_path, fetcher=offline)
    assert files_under(tmp_path) == []


def test_no_warnings_on_happy_paths(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_sample()
        load_prices("AAPL", start="2020-01-01", end="2020-01-31", cache_dir=tmp_path, fetcher=yahoo_history)
        load_prices("AAPL", start="2020-01-01", end="2020-01-31", cache_dir=tmp_path, fetcher=offline)
    assert os.listdir(tmp_path / "prices") == ["AAPL.csv"]
