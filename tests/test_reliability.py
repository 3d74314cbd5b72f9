"""Reliability and security: every bad input gets a clear answer, nothing is unpickled.

Each case of docs/RELIABILITY.md is exercised through the library (``backtest()``,
the indicators, ``walk_forward``, the forecasters, the loaders) and, where the CLI can
reach it, through the CLI in its own process: exit code 2, exactly one line on stderr, no
traceback, and the line names the bad value, where it came from and the fix. The CLI runs
are forked from one pre-imported helper process the first time a CLI test needs them (see
"the CLI, as a subprocess" below), so the ~2 s interpreter start-up is paid once.

Cases the older suites already cover in depth are not repeated here; the doc points to
them (tests/test_data.py, tests/test_forecaster.py, tests/test_cli.py, ...).

Never touches the network: load_prices always gets an injected fetcher; the CLI cannot
take one, so CLI cases either fail before any download or accept both "offline" and
"unknown symbol" answers.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from puffin_bt import (
    CheckpointError,
    ConfigError,
    DataError,
    DeviceError,
    LSTMForecast,
    NetworkError,
    PuffinError,
    RNNForecaster,
    TradingGRU,
    TradingLSTM,
    backtest,
    load_csv,
    load_prices,
    walk_forward,
)
from puffin_bt.store import ForecastStore
from strategies import ForecastThresholdStrategy

from .conftest import TINY, ohlcv_frame, regime_closes, synthetic_closes

REPO = Path(__file__).resolve().parent.parent
HAS_CUDA = torch.cuda.is_available()
LIB = {**TINY, "device": "cpu"}  # tiny model, short schedule (min_train=60)

# The same tiny settings as tests/test_cli.py: min_train=120 bars.
CLI_TINY = ["--hidden-dim", "4", "--num-layers", "1", "--epochs", "1", "--refit-epochs", "1",
            "--lookback", "10", "--min-train", "120", "--train-window", "160", "--retrain-every", "60",
            "--device", "cpu"]


# --------------------------------------------------------------------------- data helpers

BASE = ohlcv_frame(synthetic_closes(80, seed=11))
BAD_DAY = BASE.index[5].strftime("%Y-%m-%d")     # 2020-01-08, line 7 of the CSV
NEXT_DAY = BASE.index[6].strftime("%Y-%m-%d")


def _frame(n: int = 80, seed: int = 11) -> pd.DataFrame:
    return ohlcv_frame(synthetic_closes(n, seed=seed))


def _set(frame: pd.DataFrame, column: str, value) -> pd.DataFrame:
    frame = frame.copy()
    if isinstance(value, str):
        frame[column] = frame[column].astype(object)
    frame.loc[BAD_DAY, column] = value
    return frame


def _high_below_low(frame):
    frame = frame.copy()
    frame.loc[BAD_DAY, ["high", "low"]] = [90.0, 110.0]
    return frame


def _duplicated(frame):
    idx = frame.index.tolist()
    idx[6] = idx[5]
    return frame.set_axis(pd.DatetimeIndex(idx, name="date"))


def _unsorted(frame):
    order = list(range(len(frame)))
    order[5], order[6] = 6, 5
    return frame.iloc[order]


def _mixed_zones(frame):
    zones = ["America/New_York" if i % 2 else "Europe/Paris" for i in range(len(frame))]
    stamps = [pd.Timestamp(d.date()).tz_localize(z) for d, z in zip(frame.index, zones)]
    return frame.set_axis(pd.Index(stamps, dtype=object, name="date"))


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(lineterminator="\n")


def _csv_mixed_zones(frame) -> str:
    return _csv(frame).replace(f"\n{BAD_DAY},", f"\n{BAD_DAY}T00:00:00+05:00,")


def _csv_truncated(frame) -> str:
    text = _csv(frame).rstrip("\n")
    last_comma = text.rfind(",")
    return text[: text.rfind(",", 0, last_comma)]   # the last row loses its close and volume


@dataclass
class DataCase:
    """A bad data set: ``frame`` for the library (None: CSV only), ``csv`` text for the CLI."""

    frame: object = None
    csv: object = None
    fragments: tuple = ()       # value, date and fix the message must contain (library and CLI)
    cli_fragments: tuple = ()   # extra fragments for the CLI line

    def csv_text(self) -> str:
        if self.csv is not None:
            return self.csv(BASE)
        return _csv(self.frame(BASE))


DATA_CASES = {
    "nan-price": DataCase(lambda f: _set(f, "close", np.nan), fragments=("'close'", "NaN/inf", f"{BAD_DAY} (nan)", "dropna")),
    "inf-price": DataCase(lambda f: _set(f, "high", np.inf), fragments=("'high'", "NaN/inf", f"{BAD_DAY} (inf)", "dropna")),
    "zero-price": DataCase(lambda f: _set(f, "low", 0.0), fragments=("'low'", "zero or negative", f"{BAD_DAY} (0.0)", "> 0")),
    "negative-price": DataCase(lambda f: _set(f, "open", -3.0),
                               fragments=("'open'", "zero or negative", f"{BAD_DAY} (-3.0)", "> 0")),
    "high-below-low": DataCase(_high_below_low, fragments=("high < low", BAD_DAY, "high 90.0 < low 110.0", "column order")),
    "duplicated-dates": DataCase(_duplicated, fragments=("duplicated date", BAD_DAY, "duplicated(keep='last')")),
    "unsorted-dates": DataCase(_unsorted, fragments=("not in increasing order", f"{BAD_DAY} after {NEXT_DAY}", "sort_index()")),
    "mixed-time-zones": DataCase(_mixed_zones, csv=_csv_mixed_zones,
                                 fragments=("mix time zones", "one zone"),
                                 cli_fragments=(f"'{BAD_DAY}T00:00:00+05:00'", "UTC+05:00")),
    "missing-column": DataCase(lambda f: f.drop(columns=["close"]),
                               fragments=("missing column(s) 'close'", "provide open, high, low and close")),
    "non-numeric": DataCase(lambda f: _set(f, "close", "eleven"),
                            fragments=("'close'", "non-numeric", f"{BAD_DAY} ('eleven')", "pd.to_numeric")),
    "empty-csv": DataCase(csv=lambda f: "", fragments=("empty", "header line")),
    "truncated-csv": DataCase(csv=_csv_truncated, fragments=("truncated", BASE.index[-1].strftime("%Y-%m-%d"), "again")),
    "wrong-date-format": DataCase(csv=lambda f: _csv(f).replace(f"\n{BAD_DAY},", "\n08.01.2020,"),
                                  fragments=("'08.01.2020'", "line 7", "YYYY-MM-DD")),
}
FRAME_CASES = [name for name, case in DATA_CASES.items() if case.frame is not None]


@pytest.mark.parametrize("case", FRAME_CASES)
def test_bad_data_through_backtest_raises_data_error_naming_value_date_and_fix(case):
    spec = DATA_CASES[case]
    with pytest.raises(DataError) as info:
        backtest({"ACME": spec.frame(_frame())}, store=False, **LIB)
    message = str(info.value)
    assert "ACME" in message, message
    for fragment in spec.fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# --------------------------------------------------------------------------- history length, gaps


@pytest.mark.parametrize("runonce", [True, False])
def test_history_shorter_than_min_train_is_a_data_error_naming_ticker_and_minimum(runonce):
    with pytest.raises(DataError) as info:
        backtest({"ACME": _frame(50)}, store=False, runonce=runonce, **LIB)
    message = str(info.value)
    assert "ACME" in message and "50 bars" in message and "min_train=60" in message
    assert "lower min_train or load more history" in message


def test_history_of_exactly_min_train_bars_gives_one_forecast():
    res = backtest({"ACME": _frame(60)}, store=False, **LIB)
    assert res.forecasts["pred_return"].notna().sum() == 1


def test_walk_forward_and_fit_on_too_short_series_name_the_minimum():
    with pytest.raises(DataError, match="at least 60"):
        walk_forward(synthetic_closes(59), **LIB)
    with pytest.raises(DataError, match="at least"):
        TradingLSTM(hidden_dim=2, num_layers=1, lookback=20, device="cpu").fit(synthetic_closes(22), epochs=1)


def test_gaps_in_dates_are_accepted_and_bars_are_positional():
    frame = _frame(160)
    gappy = frame.drop(frame.index[70:100])          # a six-week hole
    res = backtest({"GAPPY": gappy}, store=False, **LIB)
    # One forecast per bar from the first fold (bar 59) on; the hole is just one step between two bars.
    assert list(res.forecasts["date"]) == list(gappy.index[59:])
    assert np.isfinite(res.forecasts["pred_return"].to_numpy()).all()


# --------------------------------------------------------------------------- unknown tickers, network, cache


def _fake_yahoo(ticker, start, end):
    idx = pd.bdate_range("2019-01-01", "2019-12-31", tz="America/New_York", name="Date")
    close = 50.0 * np.exp(np.cumsum(np.random.default_rng(len(ticker)).normal(0, 0.01, len(idx))))
    frame = pd.DataFrame({"Open": close, "High": close * 1.01, "Low": close * 0.99, "Close": close,
                          "Volume": 1000.0}, index=idx)
    local = frame.index.tz_localize(None)
    keep = np.ones(len(frame), dtype=bool)
    if start is not None:
        keep &= local >= start
    if end is not None:
        keep &= local <= end
    return frame[keep]


@pytest.mark.parametrize("empty", [
    pd.DataFrame(),
    pd.DataFrame(columns=["Open", "High", "Low", "Close", "Volume"]),
    None,
], ids=["no-columns", "columns-no-rows", "none"])
def test_unknown_ticker_fetcher_returning_nothing_is_a_data_error_not_a_network_error(tmp_path, empty):
    with pytest.raises(DataError) as info:
        load_prices("NOSUCH", start="2019-01-01", cache_dir=tmp_path, fetcher=lambda t, s, e: empty)
    assert not isinstance(info.value, NetworkError)
    message = str(info.value)
    assert "'NOSUCH'" in message and "check the symbol" in message
    assert not any(tmp_path.rglob("*.csv"))


@pytest.mark.parametrize("failure", [
    OSError("network unreachable"), ConnectionError("connection refused"), TimeoutError("timed out"),
    RuntimeError("curl: (6) Could not resolve host"),
], ids=lambda e: type(e).__name__)
def test_network_unreachable_without_cache_is_a_network_error_with_offline_fixes(tmp_path, failure):
    def failing(ticker, start, end):
        raise failure

    with pytest.raises(NetworkError) as info:
        load_prices("ACME", start="2019-01-01", end="2019-06-30", cache_dir=tmp_path, fetcher=failing)
    message = str(info.value)
    assert "'ACME'" in message and str(failure) in message and "load_sample()" in message and "--csv" in message


def test_network_unreachable_with_a_cache_serves_the_cache(tmp_path):
    first = load_prices("ACME", start="2019-01-01", end="2019-06-30", cache_dir=tmp_path, fetcher=_fake_yahoo)["ACME"]

    def failing(ticker, start, end):
        raise ConnectionError("network unreachable")

    # Covered range: no download at all. Wider range: the download fails -> cached copy with a warning.
    same = load_prices("ACME", start="2019-01-01", end="2019-06-30", cache_dir=tmp_path, fetcher=failing)["ACME"]
    pd.testing.assert_frame_equal(same, first)
    with pytest.warns(UserWarning, match="cached copy"):
        wider = load_prices("ACME", start="2019-01-01", end="2019-12-31", cache_dir=tmp_path, fetcher=failing)["ACME"]
    pd.testing.assert_frame_equal(wider, first)
    res = backtest({"ACME": wider}, store=False, **LIB)   # and the cached frame backtests offline
    assert len(res.forecasts) == len(first) - 59   # one forecast per bar from the first fold on


# --------------------------------------------------------------------------- parameters

BAD_INTS = [0, -3, 2.5, "5", None]
INT_PARAMS = {
    "lookback": BAD_INTS,
    "retrain_every": BAD_INTS,
    "epochs": BAD_INTS,
    "train_window": [0, -3, 2.5, "5"],  # None is allowed: an expanding window
}
PARAM_CASES = [(p, v) for p, values in INT_PARAMS.items() for v in values]


def _run_indicator(frame, **kwargs):
    class Probe(bt.Strategy):
        def __init__(self):
            self.fc = LSTMForecast(self.data, **kwargs)

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame))
    cerebro.addstrategy(Probe)
    return cerebro.run()[0]


ENTRY_POINTS = {
    "backtest": lambda **kw: backtest({"ACME": _frame(80)}, store=False, **{**LIB, **kw}),
    "LSTMForecast": lambda **kw: _run_indicator(_frame(80), **{**LIB, **kw}),
    "walk_forward": lambda **kw: walk_forward(synthetic_closes(80), **{**LIB, **kw}),
}


@pytest.mark.parametrize("entry_point", list(ENTRY_POINTS))
@pytest.mark.parametrize(("param", "value"), PARAM_CASES, ids=[f"{p}={v!r}" for p, v in PARAM_CASES])
def test_bad_schedule_parameter_is_a_config_error_naming_it(entry_point, param, value):
    with pytest.raises(ConfigError) as info:
        ENTRY_POINTS[entry_point](**{param: value})
    message = str(info.value)
    assert f"{param}={value!r}" in message and ">= 1" in message, message


@pytest.mark.parametrize("value", [0, -1, 2.5, "3"])  # None means "the constructor's value" here
@pytest.mark.parametrize("param", ["lookback", "epochs"])
def test_bad_forecaster_fit_parameter_is_a_config_error(param, value):
    with pytest.raises(ConfigError, match=re.escape(f"{param}={value!r}")):
        TradingLSTM(hidden_dim=2, num_layers=1, device="cpu").fit(synthetic_closes(80), **{param: value})


BAD_THRESHOLDS = [-0.1, 1.5, 100.0, math.nan, math.inf, "0.1", None]


@pytest.mark.parametrize("value", BAD_THRESHOLDS, ids=repr)
@pytest.mark.parametrize("name", ["entry", "exit"])
def test_negative_or_absurd_thresholds_are_config_errors(name, value):
    with pytest.raises(ConfigError) as info:
        backtest({"ACME": _frame(80)}, store=False, **{name: value}, **LIB)
    assert f"{name}=" in str(info.value)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=_frame(80)))
    cerebro.addstrategy(ForecastThresholdStrategy, forecast_kwargs=LIB, **{name: value})
    with pytest.raises(ConfigError, match=f"{name}="):
        cerebro.run()


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA GPU is present")
@pytest.mark.parametrize("where", ["backtest", "LSTMForecast", "walk_forward", "TradingLSTM.fit"])
def test_cuda_without_a_gpu_is_a_config_error_suggesting_cpu(where):
    calls = {**ENTRY_POINTS,
             "TradingLSTM.fit": lambda device: TradingLSTM(hidden_dim=2, num_layers=1, device=device).fit(
                 synthetic_closes(80), epochs=1)}
    with pytest.raises(ConfigError) as info:
        calls[where](device="cuda")
    message = str(info.value)
    assert "device='cuda'" in message and "no CUDA GPU" in message and "'cpu'" in message


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA GPU is present")
@pytest.mark.parametrize("where", [
    "backtest", "walk_forward",
    "LSTMForecast",
])
def test_cuda_without_a_gpu_keeps_the_device_error_type(where):
    with pytest.raises(DeviceError):
        ENTRY_POINTS[where](device="cuda")


@pytest.mark.parametrize("where", ["walk_forward", "TradingLSTM.fit"])
def test_seed_too_large_for_torch_is_a_config_error(where):
    with pytest.raises(ConfigError, match="seed="):
        if where == "walk_forward":
            walk_forward(synthetic_closes(80), **{**LIB, "seed": 2**64})
        else:
            TradingLSTM(hidden_dim=2, num_layers=1, device="cpu", seed=2**64).fit(synthetic_closes(80), epochs=1)


def test_weight_decay_beyond_float32_is_a_config_error():
    with pytest.raises(ConfigError, match="weight_decay="):
        walk_forward(synthetic_closes(80), **{**LIB, "weight_decay": 1e39})


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_extreme_but_valid_prices_never_give_silent_nan_forecasts():
    closes = synthetic_closes(100)
    closes[50:] *= 1e306
    closes[:50] *= 1e-5
    res = walk_forward(closes, **LIB)
    assert np.isfinite(res.pred_log_return[59:]).all()


# --------------------------------------------------------------------------- checkpoints and unpickling


@pytest.fixture(scope="module")
def fitted_lstm():
    model = TradingLSTM(hidden_dim=3, num_layers=1, lookback=5, device="cpu", patience=None)
    model.fit(synthetic_closes(80), epochs=1)
    return model


def test_lstm_checkpoint_loaded_as_gru_names_both_and_the_fix(fitted_lstm, tmp_path):
    path = fitted_lstm.save(tmp_path / "lstm.pt")
    with pytest.raises(CheckpointError) as info:
        TradingGRU.load(path)
    message = str(info.value)
    assert "lstm.pt" in message and "LSTM model" in message and "TradingGRU.load" in message
    assert "use TradingLSTM.load or RNNForecaster.load" in message
    loaded = RNNForecaster.load(path, device="cpu")
    assert type(loaded) is TradingLSTM
    np.testing.assert_array_equal(loaded.predict(synthetic_closes(80)), fitted_lstm.predict(synthetic_closes(80)))


class _Exploit:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("vector", ["legacy-torch-format", "inside-state-dict", "as-meta-json"])
def test_checkpoint_needing_unpickling_is_refused_and_the_payload_never_runs(fitted_lstm, tmp_path, vector):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    good = {k: v for k, v in fitted_lstm.model.state_dict().items()}
    meta = torch.load(fitted_lstm.save(tmp_path / "good.pt"), weights_only=True)["meta_json"]
    if vector == "legacy-torch-format":
        torch.save(_Exploit(marker), path, _use_new_zipfile_serialization=False)
    elif vector == "inside-state-dict":
        torch.save({"state_dict": {**good, "extra": _Exploit(marker)}, "meta_json": meta}, path)
    else:
        torch.save({"state_dict": good, "meta_json": _Exploit(marker)}, path)
    with pytest.raises(CheckpointError) as info:
        TradingLSTM.load(path)
    assert "unpickling" in str(info.value) and "model.pt" in str(info.value)
    assert not marker.exists(), "the pickled payload ran"


def test_forecast_store_entry_needing_unpickling_is_a_miss_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    store = ForecastStore(tmp_path / "cache")
    store.root.mkdir(parents=True)
    key = "0" * 64
    with open(store.path_for(key), "wb") as fh:
        np.savez(fh, pred_log_return=np.array([_Exploit(marker)], dtype=object), folds_json=np.array("[]"))
    assert store.load(key) is None
    assert not marker.exists(), "the pickled payload ran"


UNSAFE_LOADS = [
    (r"\bpickle\.loads?\(", "pickle.load"),
    (r"\btorch\.load\((?![^)]*weights_only\s*=\s*True)", "torch.load without weights_only=True"),
    (r"allow_pickle\s*=\s*True", "np.load(allow_pickle=True)"),
    (r"\bread_pickle\(|\bjoblib\.load\(|\bdill\.|\bshelve\.|\bmarshal\.loads?\(", "pickle-based loader"),
    (r"\byaml\.load\(|(?<![.\w])eval\(|(?<![.\w])exec\(", "code-executing loader"),
]


def test_no_code_path_deserialises_with_pickle():
    offenders = []
    for path in sorted([*(REPO / "puffin_bt").rglob("*.py"), *(REPO / "strategies").rglob("*.py")]):
        text = path.read_text(encoding="utf-8")
        for pattern, what in UNSAFE_LOADS:
            for match in re.finditer(pattern, text):
                line = text.count("\n", 0, match.start()) + 1
                offenders.append(f"{path.relative_to(REPO)}:{line}: {what}")
    assert not offenders, offenders


# --------------------------------------------------------------------------- loaders: corrupt archives


@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.bz2", ".csv.xz"])
def test_truncated_compressed_csv_is_a_data_error(tmp_path, suffix):
    raw = _csv(BASE).encode()
    packed = {".csv.gz": gzip.compress, ".csv.bz2": __import__("bz2").compress,
              ".csv.xz": __import__("lzma").compress}[suffix](raw)
    path = tmp_path / f"acme{suffix}"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match=re.escape(path.name)):
        load_csv(path)


@pytest.mark.parametrize("suffix", [".zip", ".csv.xz", ".tar"])
def test_truncated_or_corrupt_zip_xz_or_tar_csv_is_a_data_error(tmp_path, suffix):
    raw = _csv(BASE).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("acme.csv", raw)
    packed = {".zip": buf.getvalue(), ".csv.xz": __import__("lzma").compress(raw), ".tar": raw}[suffix]
    if suffix == ".csv.xz":   # a truncated .xz is already a DataError (EOFError); a corrupt one is not
        damaged = packed[:40] + bytes(64) + packed[104:]
    else:
        damaged = packed[: len(packed) // 2]
    path = tmp_path / f"acme{suffix}"
    path.write_bytes(damaged)
    with pytest.raises(DataError, match="acme"):
        load_csv(path)


def test_csv_cut_inside_the_last_row_volume_is_reported_as_truncated(tmp_path):
    text = _csv(BASE).rstrip("\n")
    path = tmp_path / "acme.csv"
    path.write_text(text[: text.rfind(",")], encoding="utf-8")
    with pytest.raises(DataError, match="truncated"):
        load_csv(path)


# --------------------------------------------------------------------------- property-based


_BAD_VALUES = st.sampled_from([0, -1, -7, 2.5, "3", None, True, math.nan, math.inf, -math.inf, [], "auto!"])


@st.composite
def walk_forward_cases(draw, corrupt: bool):
    """(options, series length): valid tiny option dicts, or (``corrupt``) ones with one or two
    keys replaced by an invalid value, or a misspelt key."""
    lookback = draw(st.integers(1, 8))
    horizon = draw(st.integers(1, 3))
    min_train = lookback + horizon + draw(st.integers(18, 60))   # 20 + ... is the least a 0.9 split accepts
    opts = dict(
        lookback=lookback,
        min_train=min_train,
        retrain_every=draw(st.integers(15, 60)),
        train_window=draw(st.one_of(st.none(), st.integers(min_train - 2, min_train + 40))),
        epochs=1,
        refit_epochs=draw(st.sampled_from([None, 1])),
        hidden_dim=draw(st.integers(2, 4)),
        num_layers=draw(st.integers(1, 2)),
        dropout=draw(st.sampled_from([0.0, 0.1, 0.5])),
        lr=draw(st.sampled_from([1e-3, 1e-2, 0.5])),
        batch_size=draw(st.integers(1, 64)),
        validation_split=draw(st.sampled_from([0.0, 0.2, 0.5, 0.9])),
        patience=draw(st.sampled_from([None, 1, 3])),
        horizon=horizon,
        # Out-of-range seeds and weight decays are included: they must be ConfigErrors.
        seed=draw(st.integers(0, 2**65)),
        weight_decay=draw(st.sampled_from([0.0, 1e-4, 1.0, 1e30, 1e39])),
        noise_level=draw(st.sampled_from([0.0, 0.1])),
        device="cpu",
    )
    if corrupt:
        n_bad = draw(st.integers(1, 2))
        for key in draw(st.lists(st.sampled_from(sorted(opts)), min_size=n_bad, max_size=n_bad, unique=True)):
            opts[key] = draw(_BAD_VALUES)
        if draw(st.booleans()) and draw(st.booleans()):
            opts["lookbak"] = 5  # a typo
    return opts, max(2, min_train + draw(st.integers(-5, 60)))


@pytest.mark.parametrize("corrupt", [False, True], ids=["valid-options", "invalid-options"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), seed=st.integers(0, 50), cell=st.sampled_from(["lstm", "gru"]))
def test_walk_forward_options_raise_documented_errors_or_give_finite_forecasts(corrupt, data, seed, cell):
    opts, n = data.draw(walk_forward_cases(corrupt), label="options, length")
    closes = synthetic_closes(n, seed=seed)
    try:
        res = walk_forward(closes, cell=cell, **opts)
    except PuffinError as exc:
        event(type(exc).__name__)
        return
    event(f"trained {min(len(res.folds), 3)}+ fold(s)")
    first = res.folds[0].bar
    assert np.isnan(res.pred_log_return[:first]).all()
    assert np.isfinite(res.pred_log_return[first:]).all(), (opts, res.pred_log_return)


@st.composite
def forecaster_params(draw, corrupt: bool):
    params = dict(
        hidden_dim=draw(st.integers(2, 4)), num_layers=draw(st.integers(1, 2)),
        dropout=draw(st.sampled_from([0.0, 0.3])), lookback=draw(st.integers(1, 25)),
        lr=draw(st.sampled_from([1e-3, 0.1])), epochs=draw(st.integers(1, 2)),
        batch_size=draw(st.integers(1, 64)), validation_split=draw(st.sampled_from([0.0, 0.2, 0.9])),
        patience=draw(st.sampled_from([None, 1])), horizon=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 1000)), noise_level=draw(st.sampled_from([0.0, 0.5])), device="cpu",
    )
    n_bad = draw(st.integers(1, 2)) if corrupt else 0
    for key in draw(st.lists(st.sampled_from(sorted(params)), min_size=n_bad, max_size=n_bad, unique=True)):
        params[key] = draw(_BAD_VALUES)
    return params


_PRICE = st.floats(min_value=0.01, max_value=1e6, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize("corrupt", [False, True], ids=["valid-params", "invalid-params"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), prices=st.one_of(
    st.lists(_PRICE, min_size=0, max_size=60),
    st.builds(lambda n, s: list(synthetic_closes(n, seed=s)), st.integers(20, 90), st.integers(0, 20)),
    st.builds(lambda n, s: list(synthetic_closes(n, seed=s)), st.integers(20, 90), st.integers(0, 20))),
    cls=st.sampled_from([TradingLSTM, TradingGRU]), steps=st.integers(1, 3))
def test_forecasters_raise_documented_errors_or_predict_finite_positive_prices(corrupt, data, prices, cls, steps):
    params = data.draw(forecaster_params(corrupt), label="params")
    model = cls(**params)
    try:
        model.fit(prices)
        preds = model.predict(prices, steps=steps)
        rets = model.predict_returns(prices)
    except PuffinError as exc:
        event(type(exc).__name__)
        return
    event("fitted and predicted")
    assert preds.shape == (steps,) and np.isfinite(preds).all() and (preds > 0).all()
    assert np.isfinite(rets[model.config_.lookback:]).all()


_CELL = st.one_of(
    st.sampled_from(["", "nan", "NaN", "inf", "-1", "0", "1e400", "abc", "2020-01-02", "01/02/2020",
                     "2020-01-02T00:00:00+05:00", " ", '"', "10.5", "1,5", "True", "\x00"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=4),
)
_HEADER = st.lists(st.sampled_from(["date", "Date", "open", "High", "low", "close", "Close", "volume",
                                    "Adj Close", "x", ""]), min_size=0, max_size=7)


@st.composite
def csv_bytes(draw):
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=300))
    header = draw(_HEADER)
    rows = draw(st.lists(st.lists(_CELL, min_size=len(header), max_size=len(header) + 1), max_size=8))
    lines = [",".join(header)] + [",".join(row) for row in rows]
    text = "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))
    return text.encode("utf-8", "surrogatepass")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=csv_bytes(), suffix=st.sampled_from([".csv", ".csv.gz", ".txt"]), compress=st.booleans())
def test_load_csv_on_arbitrary_bytes_returns_a_valid_frame_or_a_data_error(payload, suffix, compress):
    if suffix == ".csv.gz" and compress:
        payload = gzip.compress(payload)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(payload)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = load_csv(path)
        except DataError as exc:
            assert "fuzz" in str(exc)
            return
    assert list(out.columns) == ["open", "high", "low", "close", "volume"]
    assert out.index.is_monotonic_increasing and out.index.is_unique and out.index.tz is None
    assert np.isfinite(out[["open", "high", "low", "close"]].to_numpy()).all()


_TICKERS = st.one_of(st.sampled_from(["ACME", "BRK-B", "^GSPC", "../../x", "..", "a/b", "/etc/passwd", "C:\\x",
                                      "~root", "x\x00y", "AAPL/..", ".hidden", "CON", "a" * 40]),
                     st.text(max_size=12))


@st.composite
def fetcher_outputs(draw):
    kind = draw(st.sampled_from(["frame", "frame", "frame", "none", "list", "string", "empty", "raise"]))
    if kind == "raise":
        return draw(st.sampled_from([OSError("offline"), ConnectionError("refused"), TimeoutError("slow"),
                                     KeyError("chart"), ValueError("bad json"), RuntimeError("curl")]))
    if kind in ("none", "list", "string", "empty"):
        return {"none": None, "list": [1, 2], "string": "Open,High", "empty": pd.DataFrame()}[kind]
    n = draw(st.integers(1, 6))
    idx = pd.bdate_range("2019-01-02", periods=n, name="Date")
    if draw(st.booleans()):
        idx = idx.tz_localize(draw(st.sampled_from(["America/New_York", "Asia/Tokyo", "UTC"])))
    value = st.one_of(st.floats(0.5, 200.0), st.sampled_from([np.nan, np.inf, -1.0, 0.0]))
    cols = {c: draw(st.lists(value, min_size=n, max_size=n)) for c in ("Open", "High", "Low", "Close")}
    if draw(st.booleans()):
        cols["Volume"] = draw(st.lists(st.one_of(st.floats(0, 1e6), st.just(np.nan)), min_size=n, max_size=n))
    frame = pd.DataFrame(cols, index=idx)
    if draw(st.booleans()):  # usually consistent bars
        frame["High"] = frame[["Open", "High", "Low", "Close"]].max(axis=1)
        frame["Low"] = frame[["Open", "High", "Low", "Close"]].min(axis=1)
    if draw(st.integers(0, 4)) == 0:
        frame = frame.iloc[::-1]
    return frame


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ticker=_TICKERS, output=fetcher_outputs())
def test_load_prices_on_arbitrary_fetcher_output_raises_documented_errors_and_stays_in_the_cache(ticker, output):
    def fetcher(t, start, end):
        if isinstance(output, BaseException):
            raise output
        return output

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cache = root / "a" / "cache"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = load_prices(ticker, start="2019-01-01", end="2019-12-31", cache_dir=cache, fetcher=fetcher)
        except PuffinError:
            out = None
        written = [p for p in root.rglob("*") if p.is_file()]
        for path in written:
            assert path.resolve().parent == (cache / "prices").resolve(), path
        if out is not None:
            assert np.isfinite(out[ticker][["open", "high", "low", "close"]].to_numpy()).all()


@pytest.fixture(scope="module")
def checkpoint_bytes(fitted_lstm, tmp_path_factory):
    return fitted_lstm.save(tmp_path_factory.mktemp("ckpt") / "m.pt").read_bytes()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_checkpoint_raises_checkpoint_error_or_loads_never_anything_else(checkpoint_bytes, data):
    raw = bytearray(checkpoint_bytes)
    how = data.draw(st.sampled_from(["cut", "flip", "zero-run", "append"]))
    pos = data.draw(st.integers(0, len(raw) - 1))
    if how == "cut":
        raw = raw[:pos]
    elif how == "flip":
        raw[pos] ^= data.draw(st.integers(1, 255))
    elif how == "zero-run":
        raw[pos:pos + 64] = bytes(len(raw[pos:pos + 64]))
    else:
        raw += data.draw(st.binary(min_size=1, max_size=64))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.pt"
        path.write_bytes(bytes(raw))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loaded = TradingLSTM.load(path, device="cpu")
        except CheckpointError as exc:
            event("CheckpointError")
            assert "m.pt" in str(exc)
            return
    event("loaded")
    loaded.predict(synthetic_closes(80))   # whatever loads must at least run


def test_checkpoint_whose_metadata_still_parses_but_contradicts_itself_is_a_checkpoint_error(fitted_lstm, tmp_path):
    """Found by the property test above in CI: one flipped bit turned the scaler's `"horizon": 1`
    into `"horizon":-1`, the JSON still parsed (the checksum covers the weights only), and the
    model loaded, then failed in predict with a math domain error."""
    raw = fitted_lstm.save(tmp_path / "m.pt").read_bytes()
    good = b'"horizon": 1, "feature_mean"'
    assert raw.count(good) == 1
    path = tmp_path / "bad.pt"
    path.write_bytes(raw.replace(good, b'"horizon":-1, "feature_mean"'))
    with pytest.raises(CheckpointError, match=r"bad\.pt.*scaler horizon -1 differs from the model's horizon 1"):
        TradingLSTM.load(path, device="cpu")


def test_checkpoint_with_damaged_weight_bytes_raises_checkpoint_error(fitted_lstm, tmp_path):
    path = fitted_lstm.save(tmp_path / "m.pt")
    raw = bytearray(path.read_bytes())
    state = fitted_lstm.model.state_dict()
    weights = state[next(k for k in state if "weight_hh" in k)].numpy().tobytes()
    pos = bytes(raw).find(weights)
    assert pos > 0
    raw[pos + 2] ^= 0x40            # one bit of one float32 weight
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError):
        TradingLSTM.load(path, device="cpu")


# --------------------------------------------------------------------------- determinism


def _small_portfolio():
    return {"A": ohlcv_frame(regime_closes(seed=7)),
            "B": ohlcv_frame(regime_closes(((90, -0.004), (90, 0.004), (80, -0.004)), seed=8))}


@pytest.fixture(scope="module")
def reference_backtest():
    return backtest(_small_portfolio(), store=False, entry=0.0005, exit=0.0005, **LIB)


def test_same_seed_gives_identical_forecasts_and_trades_across_runs(reference_backtest):
    again = backtest(_small_portfolio(), store=False, entry=0.0005, exit=0.0005, **LIB)
    assert len(reference_backtest.trades) > 0, "thresholds chosen to trade; no trades voids the test"
    pd.testing.assert_frame_equal(again.forecasts, reference_backtest.forecasts, check_exact=True)
    pd.testing.assert_frame_equal(again.trades, reference_backtest.trades, check_exact=True)
    pd.testing.assert_frame_equal(again.equity, reference_backtest.equity, check_exact=True)


def test_runonce_and_event_driven_backtests_agree_to_float_rounding_and_trade_identically(reference_backtest):
    # runonce forecasts a fold's windows in one batched forward pass, runnext one window per bar: on CPUs whose
    # oneDNN kernels block the batch differently (measured on a Xeon: |diff| <= 1.7e-10 on forecasts of ~1e-3; bit
    # for bit on the AMD EPYC of earlier sessions) the last bits differ. DESIGN rule 5: to float rounding, and the
    # same trades.
    nxt = backtest(_small_portfolio(), store=False, runonce=False, entry=0.0005, exit=0.0005, **LIB)
    pd.testing.assert_frame_equal(nxt.forecasts, reference_backtest.forecasts, check_exact=False, rtol=1e-6, atol=1e-12)
    pd.testing.assert_frame_equal(nxt.trades, reference_backtest.trades, check_exact=True)
    assert nxt.metrics["final_value"] == reference_backtest.metrics["final_value"]


_DIGEST_SCRIPT = """
import hashlib, sys, torch
torch.set_num_threads(1)
from puffin_bt import walk_forward
from tests.conftest import TINY, synthetic_closes
res = walk_forward(synthetic_closes(200, seed=3), cell=sys.argv[1], **{**TINY, "device": "cpu"})
print(hashlib.sha256(res.pred_log_return.tobytes()).hexdigest())
"""


def test_same_seed_is_bit_identical_across_processes():
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    child = subprocess.run([sys.executable, "-c", _DIGEST_SCRIPT, "gru"], capture_output=True, text=True,
                           cwd=REPO, env=env, timeout=120)
    assert child.returncode == 0, child.stderr
    here = walk_forward(synthetic_closes(200, seed=3), cell="gru", **LIB).pred_log_return
    assert child.stdout.strip() == hashlib.sha256(here.tobytes()).hexdigest()


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_cuda_runs_are_repeatable_with_deterministic_algorithms_and_close_to_cpu():
    """Never run yet (no GPU was lent to any session). Two CUDA runs with the deterministic switch
    are bit-identical (dropout included); without dropout (nn.LSTM draws its masks from the CUDA
    generator in warm refits, so masks differ by device) CUDA agrees with the CPU within 0.1% of
    the forecasts' scale, for both cells, cold and warm refits, and through a Cerebro."""
    script = """
import sys, torch, numpy as np, backtrader as bt
torch.use_deterministic_algorithms(True)
torch.backends.cudnn.deterministic = True
torch.backends.cudnn.benchmark = False
from puffin_bt import LSTMForecast, walk_forward
from puffin_bt.adapters.feeds import FrameData
from tests.conftest import TINY, ohlcv_frame, synthetic_closes
closes = synthetic_closes(300, seed=3)
p = {**TINY, "hidden_dim": 16, "num_layers": 2, "dropout": 0.2, "epochs": 3}
a = walk_forward(closes, device="cuda", **p).pred_log_return
b = walk_forward(closes, device="cuda", **p).pred_log_return
assert np.isfinite(a).sum() > 100 and np.array_equal(a, b, equal_nan=True), "CUDA runs differ"
worst = 0.0
for cell in ("lstm", "gru"):
    for refit in (None, 1):
        q = {**p, "dropout": 0.0, "refit_epochs": refit}
        g = walk_forward(closes, cell=cell, device="cuda", **q).pred_log_return
        c = walk_forward(closes, cell=cell, device="cpu", **q).pred_log_return
        assert np.array_equal(np.isnan(g), np.isnan(c)) and np.isfinite(g).sum() > 100
        worst = max(worst, float(np.nanmax(np.abs(g - c)) / np.nanmax(np.abs(c))))

class Hold(bt.Strategy):
    params = (("device", "cpu"),)
    def __init__(self):
        self.fc = LSTMForecast(self.data, device=self.p.device, **{**p, "dropout": 0.0})
def engine(device):
    cerebro = bt.Cerebro(runonce=True, stdstats=False)
    cerebro.adddata(FrameData(dataname=ohlcv_frame(closes)))
    cerebro.addstrategy(Hold, device=device)
    fc = cerebro.run()[0].fc
    return np.asarray(fc.pred_return.array[:len(fc.data)])
g, c = engine("cuda"), engine("cpu")
assert np.isfinite(g).sum() > 100
worst = max(worst, float(np.nanmax(np.abs(g - c)) / np.nanmax(np.abs(c))))
print(worst)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, env=env,
                           timeout=600)
    assert child.returncode == 0, child.stderr
    assert float(child.stdout.strip()) < 1e-3


# --------------------------------------------------------------------------- the CLI, as a subprocess
#
# Each CLI case runs in its own process with its own argv, working folder, exit code and
# stderr file. Starting a fresh interpreter costs ~2 s of CPU (importing torch, pandas,
# backtrader), which over ~40 cases would blow the time budget, so the cases are forked from
# one "CLI server" process that has imported those libraries once; each child then executes
# ``puffin_bt.cli`` as ``__main__`` with runpy, exactly what ``python -m puffin_bt.cli ARGS``
# does after start-up. test_forked_cli_runs_match_real_python_m_runs checks that both give
# byte-identical results on an error case and an argparse case.

_CLI_SERVER = r"""
import json, os, runpy, sys
import matplotlib
matplotlib.use("Agg")
import puffin_bt, puffin_bt.evaluation, puffin_bt.plotting, puffin_bt.backtesting, strategies  # noqa: F401


def start(job):
    sys.stdout.flush()
    pid = os.fork()
    if pid:
        return pid
    rc = 70
    try:
        os.chdir(job["cwd"])
        for fd, name in ((1, "stdout"), (2, "stderr")):
            os.dup2(os.open(job[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        sys.argv = ["puffin_bt.cli", *job["args"]]
        try:
            runpy.run_module("puffin_bt.cli", run_name="__main__", alter_sys=True)
            rc = 0
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


pending = [json.loads(line) for line in sys.stdin if line.strip()]
running = {}
while pending or running:
    while pending and len(running) < int(sys.argv[1]):
        job = pending.pop(0)
        running[start(job)] = job["id"]
    pid, status = os.wait()
    print(json.dumps({"id": running.pop(pid), "rc": os.waitstatus_to_exitcode(status)}), flush=True)
"""


def _cli_env() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONPATH": str(REPO)}
    env.pop("PUFFIN_BT_DEBUG", None)
    return env


def _run_cli(args, cwd):
    """A real ``python -m puffin_bt.cli ARGS`` run."""
    return subprocess.run([sys.executable, "-m", "puffin_bt.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=_cli_env(), timeout=300)


def _run_cli_forked(jobs: dict) -> dict:
    """{id: (args, cwd)} -> {id: CompletedProcess}, each case in its own forked process."""
    if not hasattr(os, "fork"):  # e.g. Windows: one real interpreter per case (slow but equivalent)
        return {cid: _run_cli(args, cwd) for cid, (args, cwd) in jobs.items()}
    parallel = max(2, min(4, os.cpu_count() or 2))
    lines = []
    for cid, (args, cwd) in jobs.items():
        lines.append(json.dumps({"id": cid, "args": [str(a) for a in args], "cwd": str(cwd),
                                 "stdout": str(Path(cwd) / ".cli.stdout"), "stderr": str(Path(cwd) / ".cli.stderr")}))
    server = subprocess.run([sys.executable, "-c", _CLI_SERVER, str(parallel)], input="\n".join(lines),
                            capture_output=True, text=True, cwd=REPO, env=_cli_env(), timeout=600)
    assert server.returncode == 0, server.stderr
    out = {}
    for line in server.stdout.splitlines():
        result = json.loads(line)
        args, cwd = jobs[result["id"]]
        stdout = (Path(cwd) / ".cli.stdout").read_text(encoding="utf-8")
        stderr = (Path(cwd) / ".cli.stderr").read_text(encoding="utf-8")
        (Path(cwd) / ".cli.stdout").unlink()
        (Path(cwd) / ".cli.stderr").unlink()
        out[result["id"]] = subprocess.CompletedProcess(args, result["rc"], stdout, stderr)
    assert set(out) == set(jobs), server.stderr
    return out


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@dataclass
class CliCase:
    """One CLI run: ``build(workdir)`` writes its inputs and returns the arguments."""

    build: object
    fragments: tuple = ()
    rc: int = 2
    xfail: str = ""
    run: object = field(default=None, repr=False)


def _common(workdir: Path, plots: bool = False) -> list[str]:
    return [*([] if plots else ["--no-plot"]), "--out", str(workdir / "out"), "--cache-dir", str(workdir / "cache")]


def _csv_case(name: str):
    def build(workdir):
        path = workdir / "acme.csv"
        path.write_text(DATA_CASES[name].csv_text(), encoding="utf-8")
        return ["backtest", "--csv", f"ACME={path}", *CLI_TINY, *_common(workdir)]
    return build


def _valid_csv(workdir: Path, n: int, gap: bool = False) -> Path:
    frame = _frame(n, seed=5)
    if gap:
        frame = frame.drop(frame.index[130:160])
    path = workdir / "acme.csv"
    path.write_text(_csv(frame), encoding="utf-8")
    return path


def _flag_case(*flag_args, data="sample"):
    def build(workdir):
        source = ["--sample", "IBM"] if data == "sample" else ["--csv", f"ACME={_valid_csv(workdir, 200)}"]
        return ["backtest", *source, *CLI_TINY, *flag_args, *_common(workdir)]
    return build


def _cached_offline(workdir):
    load_prices("ACME", start="2019-01-01", end="2019-12-31", cache_dir=workdir / "cache", fetcher=_fake_yahoo)
    return ["backtest", "--tickers", "ACME", "--start", "2019-01-01", "--end", "2019-12-31", *CLI_TINY,
            *_common(workdir)]


def _corrupt_cache(workdir):
    cache = workdir / "cache" / "prices" / "ZZZZQ.csv"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"# puffin_bt price cache v1 ticker=ZZZZQ\x00\x01 garbage")
    return ["backtest", "--tickers", "ZZZZQ", *CLI_TINY, *_common(workdir)]


def _traversal_cache(workdir):
    deep = workdir / "a" / "b"
    deep.mkdir(parents=True)
    return ["backtest", "--tickers", "../../x", *CLI_TINY, *_common(deep)]


def _traversal_evaluate(workdir):
    deep = workdir / "a" / "b"
    deep.mkdir(parents=True)
    return ["evaluate", "--csv", f"a/../../x={_valid_csv(workdir, 200)}", *CLI_TINY, *_common(deep, plots=True)]


def _zip_csv(workdir):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("acme.csv", _csv(BASE))
    path = workdir / "acme.zip"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return ["backtest", "--csv", f"ACME={path}", *CLI_TINY, *_common(workdir)]


CSV_NAME = ("ACME", "acme.csv")
CLI_CASES: dict[str, CliCase] = {
    **{f"csv-{name}": CliCase(_csv_case(name), (*CSV_NAME, *case.fragments, *case.cli_fragments))
       for name, case in DATA_CASES.items()},
    "csv-truncated-zip": CliCase(_zip_csv, ("ACME", "acme.zip", "again")),
    "csv-short-history": CliCase(lambda w: ["backtest", "--csv", f"ACME={_valid_csv(w, 100)}", *CLI_TINY, *_common(w)],
                                 ("ACME", "100 bars", "min_train=120", "load more history")),
    "corrupted-cache-offline": CliCase(_corrupt_cache, ("ZZZZQ.csv", "corrupted", "delete")),
    "ticker-path-traversal": CliCase(_traversal_cache, ("'../../x'", "not a valid symbol", "'AAPL'")),
    "lookback-negative": CliCase(_flag_case("--lookback", "-1"), ("--lookback", "-1", ">= 1")),
    "lookback-non-integer": CliCase(_flag_case("--lookback", "1.5"), ("--lookback", "'1.5'", "whole number")),
    "retrain-every-zero": CliCase(_flag_case("--retrain-every", "0"), ("--retrain-every", "0", ">= 1")),
    "retrain-every-negative": CliCase(_flag_case("--retrain-every", "-2"), ("--retrain-every", "-2", ">= 1")),
    "retrain-every-non-integer": CliCase(_flag_case("--retrain-every", "1.5"), ("--retrain-every", "'1.5'", "whole number")),
    "epochs-zero": CliCase(_flag_case("--epochs", "0"), ("--epochs", "0", ">= 1")),
    "epochs-negative": CliCase(_flag_case("--epochs", "-1"), ("--epochs", "-1", ">= 1")),
    "train-window-zero": CliCase(_flag_case("--train-window", "0", data="csv"), ("--train-window", "0")),
    "train-window-negative": CliCase(_flag_case("--train-window", "-5"), ("--train-window", "-5", ">= 1")),
    "train-window-non-integer": CliCase(_flag_case("--train-window", "2.5"), ("--train-window", "'2.5'", "whole number")),
    "entry-absurd": CliCase(_flag_case("--entry", "2"), ("entry=2.0", "<= 1.0")),
    "exit-negative": CliCase(_flag_case("--exit", "-0.1"), ("exit=-0.1", ">= 0.0")),
    "exit-absurd": CliCase(_flag_case("--exit", "5"), ("exit=5.0", "<= 1.0")),
    "seed-too-large": CliCase(_flag_case("--seed", str(2**64), data="csv"), ("seed=",)),
    "weight-decay-overflow": CliCase(_flag_case("--weight-decay", "1e39", data="csv"), ("weight_decay=",)),
    # Runs that must succeed.
    "csv-with-gaps": CliCase(lambda w: ["backtest", "--csv", f"ACME={_valid_csv(w, 230, gap=True)}", *CLI_TINY,
                                        *_common(w)], rc=0),
    "cached-ticker-offline": CliCase(_cached_offline, rc=0),
    "evaluate-csv-name-traversal": CliCase(
        _traversal_evaluate, rc=-1),
}
ERROR_CASES = [pytest.param(cid, marks=pytest.mark.xfail(strict=True, reason=case.xfail) if case.xfail else ())
               for cid, case in CLI_CASES.items() if case.rc == 2]


@pytest.fixture(scope="module")
def cli(request, tmp_path_factory):
    """Runs every CLI case selected in this session, in parallel, once; maps case id -> (result, workdir)."""
    wanted = {item.callspec.params["cli_case"] for item in request.session.items
              if hasattr(item, "callspec") and "cli_case" in item.callspec.params}
    root = tmp_path_factory.mktemp("cli")
    jobs = {}
    for cid in sorted(wanted):
        workdir = root / cid
        workdir.mkdir()
        jobs[cid] = (CLI_CASES[cid].build(workdir), workdir)
    before = {cid: _files(workdir) for cid, (_, workdir) in jobs.items()}
    results = _run_cli_forked(jobs) if jobs else {}
    return {cid: (results[cid], jobs[cid][1], before[cid]) for cid in jobs}


@pytest.mark.parametrize("cli_case", ["csv-nan-price"])
def test_forked_cli_runs_match_real_python_m_runs(cli, cli_case):
    forked, workdir, _ = cli[cli_case]
    real = _run_cli(CLI_CASES[cli_case].build(workdir), workdir)
    assert (real.returncode, real.stdout, real.stderr) == (forked.returncode, forked.stdout, forked.stderr)


@pytest.mark.parametrize("cli_case", ERROR_CASES)
def test_cli_bad_input_exits_2_with_one_line_naming_value_source_and_fix(cli, cli_case):
    proc, _, _ = cli[cli_case]
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in CLI_CASES[cli_case].fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


@pytest.mark.parametrize("cli_case", ["csv-with-gaps"])
def test_cli_accepts_gaps_in_dates(cli, cli_case):
    proc, workdir, _ = cli[cli_case]
    assert proc.returncode == 0, proc.stderr
    forecasts = pd.read_csv(workdir / "out" / "forecasts.csv")
    assert len(forecasts) == 200 - 119 and forecasts["pred_return"].notna().all()


@pytest.mark.parametrize("cli_case", ["cached-ticker-offline"])
def test_cli_works_offline_from_a_price_cache(cli, cli_case):
    proc, workdir, _ = cli[cli_case]
    assert proc.returncode == 0, proc.stderr
    assert "PORTFOLIO" in proc.stdout and "ACME" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("cli_case", ["ticker-path-traversal"])
def test_cli_ticker_path_traversal_writes_nothing_outside_the_cache(cli, cli_case):
    proc, workdir, before = cli[cli_case]
    assert proc.returncode == 2
    cache = workdir / "a" / "b" / "cache"
    assert [p for p in _files(workdir) - before if cache not in p.parents] == []


@pytest.mark.parametrize("cli_case", ["evaluate-csv-name-traversal"])
def test_cli_csv_name_cannot_write_outside_the_output_folder(cli, cli_case):
    proc, workdir, before = cli[cli_case]
    assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr, proc.stderr
    allowed = [workdir / "a" / "b" / "out", workdir / "a" / "b" / "cache"]
    escaped = [p for p in _files(workdir) - before if not any(a in p.parents for a in allowed)]
    assert escaped == [], escaped
