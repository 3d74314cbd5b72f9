"""Reliability, round two (issue 20): what an adversarial probe broke, each case pinned.

Unbounded sizes (a fork bomb from one config key), pool workers outliving a killed parent,
``--config`` replaying a different run, a buy-and-hold benchmark stuck in cash, flat stretches
forecasting moves, results overwritten without a word, and the clear errors and silent answers
listed in the issue. Cases that came from the CLI run through the CLI, forked from one
pre-imported helper process as in tests/test_reliability.py (each in its own process, with its
own argv, working folder, exit code and stderr); the rest through the library. docs/RELIABILITY.md
lists every case with its test.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd
import pytest
import torch

from puffin_bt import (
    CheckpointError,
    ConfigError,
    DataError,
    LSTMForecast,
    TradingLSTM,
    backtest,
    load_csv,
    load_prices,
    walk_forward,
)
from puffin_bt.adapters.feeds import FrameData
from puffin_bt.dates import date_numbers_of
from puffin_bt.evaluation import walk_forward_forecasts
from puffin_bt.fitting import new_net, predict_windows
from puffin_bt.options import BACKTEST_GROUPS, OPTIONS, names
from puffin_bt.processes import available_cpus, available_memory
from puffin_bt.store import ForecastStore, fingerprint
from puffin_bt.tickers import precompute_forecasts
from puffin_bt.tuning import tune
from puffin_bt.walkforward import make_walk_forward
from puffin_bt.windows import Scaler, returns_of, window_inputs

from .conftest import TINY, ohlcv_frame, synthetic_closes
from .test_reliability import _CLI_SERVER, CLI_TINY, REPO, _cli_env, _csv, _fake_yahoo

LIB = {**TINY, "device": "cpu"}
# The tiny flags `T`.
T = ["--lookback", "10", "--retrain-every", "60", "--train-window", "200", "--min-train", "200", "--epochs", "2",
     "--refit-epochs", "1", "--hidden-dim", "8", "--num-layers", "1", "--no-plot", "--quiet"]
# Within the registry's bounds, but more memory than any machine has: refused before anything is allocated.
HUGE_MODEL = dict(hidden_dim=4096, num_layers=16, lookback=10_000, min_train=20_000, train_window=None,
                  batch_size=65_536)
HUGE_FLAGS = [x for k, v in HUGE_MODEL.items() for x in (OPTIONS[k].flag, "none" if v is None else str(v))]
UNWRITABLE = "/sys/puffin-bt-reliability-test"  # sysfs: no one may create a folder there, root included


# --------------------------------------------------------------------------- 1. unbounded sizes


@pytest.mark.parametrize("option, value", [
    ("hidden_dim", 100_000), ("num_layers", 100_000), ("epochs", 10**9), ("refit_epochs", 10**9),
    ("batch_size", 10**7), ("retrain_every", 10**12), ("min_train", 10**12), ("train_window", 10**12),
    ("horizon", 10**6), ("patience", 10**9), ("lookback", 10**6),
])
def test_sizes_beyond_the_registry_bounds_are_config_errors_naming_the_limit(option, value):
    limit = OPTIONS[option].kind.maximum
    assert limit is not None
    with pytest.raises(ConfigError, match=rf"{option}={value} is too large; it must be <= {limit}"):
        make_walk_forward("lstm", **{option: value})


@pytest.mark.parametrize("where", ["walk_forward", "fit"])
def test_a_model_that_would_not_fit_in_memory_is_refused_before_allocating(where):
    # Were the check gone, neither would allocate much before failing: a WalkForward allocates
    # nothing when built, and the fit's scratch (terabytes, from lookback x batch) fails at once.
    with pytest.raises(ConfigError) as info:
        if where == "walk_forward":
            make_walk_forward("lstm", **HUGE_MODEL)
        else:
            TradingLSTM(hidden_dim=64, num_layers=1, lookback=10_000, batch_size=65_536,
                        device="cpu").fit(synthetic_closes(80_000), epochs=1)
    message = str(info.value)
    assert "num_layers=" in message and "batch_size=65536" in message and "GiB to train" in message
    assert "GiB of memory is available" in message and "use a smaller" in message


# Cores + 1, not the 1,000,000: were the cap ever lost, this test must not fork-bomb the machine
# running it (the exact value is checked without starting anything, below).
OVER = available_cpus() + 1


@pytest.mark.parametrize("option", ["workers", "fold_workers", "threads"])
def test_processes_and_threads_beyond_the_cores_are_config_errors_naming_the_limit(option):
    cpus = available_cpus()
    for value in (OVER, 1_000_000):
        with pytest.raises(ConfigError, match=rf"{option}={value} is more than the {cpus} CPU core\(s\).*at most {cpus}"):
            OPTIONS[option].check(value)
    with pytest.raises(ConfigError, match=rf"{option}={OVER} is more than"):
        backtest({"ACME": ohlcv_frame(synthetic_closes(80))}, store=False, **{**LIB, option: OVER})
    assert OPTIONS[option].check(cpus) == cpus  # every core may be used
    if option != "threads":
        assert OPTIONS[option].check("auto") == "auto"


# --------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    model = TradingLSTM(hidden_dim=4, num_layers=1, device="cpu")
    model.fit(synthetic_closes(120), lookback=5, epochs=1)
    path = tmp_path_factory.mktemp("ckpt") / "lstm.pt"
    model.save(path)
    return model, path


def _rewrite(path: Path, out: Path, meta_change: dict) -> Path:
    blob = torch.load(path, weights_only=True)
    meta = json.loads(blob["meta_json"])
    for key, value in meta_change.items():
        meta["config"][key] = value
    import io

    buf = io.BytesIO()
    torch.save({"state_dict": blob["state_dict"], "meta_json": json.dumps(meta)}, buf)
    out.write_bytes(buf.getvalue())
    return out


@pytest.mark.parametrize("change", [{"hidden_dim": 30_000}, {"num_layers": 100_000},
                                    {"hidden_dim": 4096, "num_layers": 16}],
                         ids=["hidden-beyond-bound", "layers-beyond-bound", "huge-within-bounds"])
def test_crafted_checkpoint_hyperparameters_fail_cleanly_before_allocating(saved_model, tmp_path, change):
    path = _rewrite(saved_model[1], tmp_path / "crafted.pt", change)
    with pytest.raises(CheckpointError, match="crafted.pt"):
        TradingLSTM.load(path)


def test_checkpoint_larger_than_the_free_memory_is_refused_before_reading(tmp_path):
    free = available_memory()
    if free is None:
        pytest.skip("this system does not say how much memory is free")
    path = tmp_path / "huge.pt"
    try:
        with open(path, "wb") as fh:
            fh.truncate(2 * free + 2**30)  # sparse: no disk space used
    except OSError as exc:
        pytest.skip(f"cannot make a sparse file here ({exc})")
    with pytest.raises(CheckpointError, match="GiB, more than the .* GiB of memory available"):
        TradingLSTM.load(path)


def test_load_of_a_fifo_a_device_a_folder_or_a_number_is_a_clean_error(tmp_path):
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero"), tmp_path):
        with pytest.raises(CheckpointError, match="is not a regular file"):
            TradingLSTM.load(path)  # a FIFO would block, /dev/zero never end
    with pytest.raises(ConfigError, match=r"load\(123\): pass a file path"):
        TradingLSTM.load(123)


def test_save_to_a_folder_or_an_unwritable_path_is_a_checkpoint_error(saved_model, tmp_path):
    model, _ = saved_model
    (tmp_path / "taken.pt").mkdir()
    for path in (tmp_path / "taken.pt", Path(UNWRITABLE) / "model.pt"):
        with pytest.raises(CheckpointError, match="cannot write checkpoint .* writable folder"):
            model.save(path)
    with pytest.raises(ConfigError, match="pass a file path"):
        model.save(None)


# --------------------------------------------------------------------------- 2. workers die with their parent

_FOLD_POOL_RUN = """
import sys, threading, numpy as np
from puffin_bt import walk_forward
closes = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 4000)))
def run():
    walk_forward(closes, lookback=10, min_train=100, retrain_every=5, train_window=200, epochs=500,
                 refit_epochs=None, hidden_dim=16, num_layers=1, device="cpu", fold_workers=2, patience=None)
print("ready", flush=True)
if sys.argv[1] == "thread":  # a pool started from another thread: no PDEATHSIG, the watcher ends the workers
    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
else:
    run()
"""

_TICKER_POOL_RUN = """
import sys, tempfile, numpy as np
from puffin_bt.store import ForecastStore
from puffin_bt.tickers import precompute_forecasts
from tests.conftest import ohlcv_frame, synthetic_closes
frames = {name: ohlcv_frame(synthetic_closes(3000, seed=i)) for i, name in enumerate(["AAA", "BBB"])}
print("ready", flush=True)
precompute_forecasts(frames, store=ForecastStore(tempfile.mkdtemp()), executor="local", workers=2,
                     on_fold=lambda ticker, record: None, lookback=10, min_train=100, retrain_every=5,
                     train_window=200, epochs=500, refit_epochs=None, hidden_dim=16, num_layers=1, device="cpu",
                     patience=None)
"""


def _children(pid: int) -> set[int]:
    found = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                found |= {int(x) for x in fh.read().split()}
        except OSError:
            pass
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (a container's init may never reap an orphan)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or available_cpus() < 2,
                    reason="needs Linux /proc and two cores for a two-worker pool")
@pytest.mark.parametrize("pool, script, arg, n_children", [
    ("fold pool", _FOLD_POOL_RUN, "main", 2),
    ("fold pool started from a thread", _FOLD_POOL_RUN, "thread", 2),
    ("ticker pool", _TICKER_POOL_RUN, "main", 3),  # two workers and the progress queue's manager
], ids=["fold-pool", "fold-pool-from-a-thread", "ticker-pool"])
def test_pool_workers_die_when_their_parent_is_killed(pool, script, arg, n_children):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen([sys.executable, "-c", script, arg], stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
    workers: set[int] = set()
    try:
        assert parent.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while len(_children(parent.pid)) < n_children and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = _children(parent.pid)
        assert len(workers) >= n_children, f"{pool}: workers never started"
        time.sleep(1.0)  # well inside the training (hundreds of epochs per fold)
        assert parent.poll() is None and all(_running(w) for w in workers)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while any(_running(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = [w for w in workers if _running(w)]
        assert survivors == [], f"{pool}: workers {survivors} outlived their killed parent"
    finally:  # whatever failed, leave no training process behind
        if parent.poll() is None:
            workers |= _children(parent.pid)
            parent.kill()
            parent.wait(timeout=10)
        for pid in workers:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- 4. buy-and-hold holds what it claims


def _column(summary: str, row: str, column: str) -> str:
    """The text of ``column`` in ``row`` of a summary table (columns are right-aligned under their header)."""
    lines = summary.splitlines()
    header = next(line for line in lines if column in line)
    end = header.index(column) + len(column)
    line = next(line for line in lines if line.startswith(row + " "))
    return line[end - len(column):end].strip()


def test_buy_and_hold_that_cannot_buy_one_share_is_reported_never_shown_as_zero():
    frame = ohlcv_frame(synthetic_closes(100, seed=3) * 1e10)  # ~1e12 per share, 100,000 cash
    res = backtest({"ACME": frame}, store=False, entry=0.0, exit=0.0, allow_short=True, **LIB)
    assert "ACME" in res.benchmark["not_held"] and "costs more than its sleeve" in res.benchmark["not_held"]["ACME"]
    assert math.isnan(res.benchmark["total_return"]) and res.benchmark_per_ticker["total_return"].isna().all()
    assert "ACME" in res.metrics["not_traded"] and "costs more than a position" in res.metrics["not_traded"]["ACME"]
    text = res.summary()
    assert "buy-and-hold not held" in text and "signals not traded" in text
    assert _column(text, "ACME", "B&H return") == ""  # blank, not 0.0%


def test_buy_and_hold_holds_every_affordable_ticker_from_the_first_forecast_bar():
    frames = {"AAA": ohlcv_frame(synthetic_closes(100, seed=1)), "BBB": ohlcv_frame(synthetic_closes(100, seed=2))}
    res = backtest(frames, store=False, **LIB)
    assert res.benchmark["not_held"] == {}
    entries = res.benchmark["entries"]
    assert set(entries) == {"AAA", "BBB"}
    first_fold_date = frames["AAA"].index[LIB["min_train"] - 1]
    assert all(pd.Timestamp(e["date"]) > first_fold_date and e["size"] > 0 for e in entries.values())


# --------------------------------------------------------------------------- 5. flat stretches


def test_a_constant_series_forecasts_no_move(tmp_path):
    closes = np.full(200, 50.0)
    model = TradingLSTM(hidden_dim=8, num_layers=1, device="cpu")
    model.fit(closes, lookback=10, epochs=2)
    assert model.scaler_.flat
    assert list(model.predict(closes, steps=3)) == [50.0, 50.0, 50.0]
    moving = synthetic_closes(200)  # a fold that learned nothing forecasts no move on any input
    assert (model.predict_returns(moving)[10:] == 0.0).all()
    loaded = TradingLSTM.load(model.save(tmp_path / "flat.pt"), device="cpu")  # the flag survives a checkpoint
    assert loaded.scaler_.flat and list(loaded.predict(closes, steps=2)) == [50.0, 50.0]
    preds = walk_forward(closes, **LIB).pred_log_return
    first = LIB["min_train"] - 1
    assert np.isnan(preds[:first]).all() and (preds[first:] == 0.0).all()


def _with_flat_stretch(n: int = 450, flat=(150, 330)) -> np.ndarray:
    closes = synthetic_closes(n, seed=4)
    closes[flat[0]:flat[1]] = closes[flat[0] - 1]  # what df.ffill() makes of a gap
    return closes


def test_a_flat_stretch_forecasts_zero_and_never_trades():
    lo, hi = 150, 330
    closes = _with_flat_stretch(flat=(lo, hi))
    lookback = LIB["lookback"]
    res = backtest({"ACME": ohlcv_frame(closes)}, store=False, entry=0.0, exit=0.0, allow_short=True, **LIB)
    pred = res.forecasts.set_index("date")["pred_return"]
    dates = ohlcv_frame(closes).index
    inside = pred[(pred.index >= dates[lo + lookback - 1]) & (pred.index < dates[hi])]
    outside = pred[pred.index >= dates[hi + lookback]]
    assert len(inside) > 150 and (inside == 0.0).all()
    assert (outside != 0.0).sum() > 50  # elsewhere the model forecasts moves
    # An order placed on a zero forecast would fill at the next bar: no trade opens or closes there.
    for column in ("entry_date", "exit_date"):
        filled = pd.to_datetime(res.trades[column])
        assert not ((filled >= dates[lo + lookback]) & (filled <= dates[hi])).any(), column
    assert len(res.trades) > 0  # it does trade elsewhere


def test_the_flat_rule_leaves_every_other_window_bit_for_bit_alone():
    net = new_net(make_walk_forward("lstm", **LIB).config, 0)
    closes = _with_flat_stretch()
    returns = returns_of(closes)
    bars = np.arange(LIB["lookback"], len(closes))
    windows = window_inputs(returns, bars, LIB["lookback"])
    scaler = Scaler.fit(returns[1:100])
    got = predict_windows(net, scaler, windows, torch.device("cpu"))
    with torch.inference_mode():
        x = torch.as_tensor(np.ascontiguousarray(scaler.x(windows)[..., None], dtype=np.float32))
        direct = scaler.y_inverse(net.eval()(x)[:, 0].double().numpy())
    flat = np.std(windows, axis=1) < 1e-12
    assert flat.sum() > 100 and (~flat).sum() > 100
    assert (got[flat] == 0.0).all() and (direct[flat] != 0.0).all()
    np.testing.assert_array_equal(got[~flat], direct[~flat])


# --------------------------------------------------------------------------- forecast store entries


@pytest.fixture
def stored(tmp_path):
    store = ForecastStore(tmp_path)
    closes = synthetic_closes(120, seed=8)
    numbers = date_numbers_of(ohlcv_frame(closes).index)  # keyed as the ticker pool keys it
    preds = store.forecasts(make_walk_forward("lstm", **LIB), closes, None, numbers)
    return store, closes, numbers, preds, fingerprint(make_walk_forward("lstm", **LIB), closes, numbers)


def _npz(path: Path, preds: np.ndarray, folds: list) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, pred_log_return=preds, folds_json=np.array(json.dumps(folds)))
    path.write_bytes(buf.getvalue())


def _damage(kind: str, path: Path, preds: np.ndarray) -> None:
    folds = json.loads(str(np.load(path)["folds_json"]))
    path.unlink()
    if kind == "folder":
        path.mkdir()
    elif kind == "wrong-shape":
        _npz(path, np.stack([preds, preds]), folds)
    elif kind == "too-short":
        _npz(path, preds[:-5], folds)
    elif kind == "nan-forecasts":
        bad = preds.copy()
        bad[-10:] = np.nan
        _npz(path, bad, folds)


@pytest.mark.parametrize("kind", ["folder", "wrong-shape", "too-short", "nan-forecasts"])
def test_a_damaged_store_entry_is_a_miss_and_recomputed(stored, kind):
    store, closes, numbers, preds, key = stored
    _damage(kind, store.path_for(key), preds)
    assert store.load(key, len(closes)) is None
    fresh = ForecastStore(store.root.parent)
    walk = make_walk_forward("lstm", **LIB)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = fresh.forecasts(walk, closes, None, numbers)
    assert (fresh.hits, fresh.misses) == (0, 1)
    np.testing.assert_array_equal(again, preds)
    if kind == "folder":  # the folder is left alone and the forecasts served uncached, with a warning
        assert store.path_for(key).is_dir() and any("is a folder" in str(w.message) for w in caught)
    else:
        assert fresh.load(key, len(closes)) is not None  # rewritten
    # The ticker pool does not count a damaged entry as done either (an intact one it does).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is a folder")
        report = precompute_forecasts({"ACME": ohlcv_frame(closes)}, store=ForecastStore(store.root.parent),
                                      executor="serial", **LIB)
    assert report.cached == ([] if kind == "folder" else ["ACME"])
    if kind != "folder":
        _damage(kind, store.path_for(key), preds)
        report = precompute_forecasts({"ACME": ohlcv_frame(closes)}, store=ForecastStore(store.root.parent),
                                      executor="serial", **LIB)
        assert report.cached == [] and report.computed == ["ACME"]


# --------------------------------------------------------------------------- clear errors (library)


def test_lstm_forecast_in_a_cerebro_with_exactbars_1_is_a_config_error():
    class Hold(bt.Strategy):
        def __init__(self):
            self.fc = LSTMForecast(self.data, **LIB)

    def run(exactbars):
        cerebro = bt.Cerebro(exactbars=exactbars, stdstats=False)
        cerebro.adddata(FrameData(dataname=ohlcv_frame(synthetic_closes(100))))
        cerebro.addstrategy(Hold)
        return cerebro.run()[0]

    with pytest.raises(ConfigError, match=r"LSTMForecast .*\(exactbars=1\) does not keep; use exactbars=False \(the default\)"):
        run(1)
    assert math.isfinite(run(-1).fc.pred_return[0])  # -1 keeps the data's history: it works


@pytest.mark.parametrize("value", [5, 2.5, ["2020-01-01"], "2020-01-01garbage", "not-a-date"])
def test_a_start_that_is_not_a_date_is_a_config_error(value):
    with pytest.raises(ConfigError, match="start=.*date"):
        backtest({"ACME": ohlcv_frame(synthetic_closes(80))}, store=False, start=value, **LIB)


@pytest.mark.parametrize("space", [{}, [], math.nan, {"hidden_dim": []}, {"hidden_dim": [8, 100_000]}, {"nope": [1]}],
                         ids=["empty-dict", "empty-list", "nan", "empty-values", "value-beyond-bound", "unknown-key"])
def test_tune_space_that_is_empty_or_invalid_is_a_config_error_not_the_chapter_grid(space):
    with pytest.raises(ConfigError, match="space"):
        tune({"ACME": ohlcv_frame(synthetic_closes(150))}, space=space, store=False, **LIB)


@pytest.mark.parametrize("store", [False, True], ids=["no-store", "store"])
def test_evaluating_a_ticker_too_short_for_one_fold_is_a_data_error(store, tmp_path):
    frames = {"LONG": ohlcv_frame(synthetic_closes(100)), "SHORT": ohlcv_frame(synthetic_closes(50))}
    with pytest.raises(DataError, match="SHORT has 50 bars but the first fold needs min_train=60"):
        walk_forward_forecasts(frames, store=ForecastStore(tmp_path) if store else None, **LIB)


# --------------------------------------------------------------------------- ticker names


def test_tickers_that_stringify_alike_or_name_a_result_row_are_config_errors():
    frame = ohlcv_frame(synthetic_closes(80))
    with pytest.raises(ConfigError, match=r"two tickers named '1' \(1 and '1'\)"):
        backtest({1: frame, "1": frame}, store=False, **LIB)
    with pytest.raises(ConfigError, match="cannot be named 'PORTFOLIO'"):
        backtest({"PORTFOLIO": frame}, store=False, **LIB)


def test_tickers_named_like_internal_columns_backtest_correctly():
    frames = {"date": ohlcv_frame(synthetic_closes(100, seed=1)), "date__held": ohlcv_frame(synthetic_closes(100, seed=2))}
    res = backtest(frames, store=False, entry=0.0, exit=0.0, **LIB)
    alone = backtest({"X": frames["date"]}, store=False, entry=0.0, exit=0.0, **LIB)
    assert list(res.per_ticker.index) == ["date", "date__held"]
    assert isinstance(res.equity.index, pd.DatetimeIndex) and len(res.equity) == 100
    assert 0.0 <= res.per_ticker.loc["date", "exposure"] <= 1.0
    assert res.benchmark_per_ticker.loc["date", "total_return"] == pytest.approx(
        alone.benchmark_per_ticker.loc["X", "total_return"])


# --------------------------------------------------------------------------- CSV files


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_naming_a_price_column_twice_is_a_data_error(tmp_path):
    text = _csv(ohlcv_frame(synthetic_closes(30)))
    lines = text.splitlines()
    doubled = [lines[0] + ",close"] + [line + "," + line.split(",")[4] for line in lines[1:]]
    with pytest.raises(DataError, match=r"column 'close' appears twice in the header \(columns 5 and 7\)"):
        load_csv(_write(tmp_path / "acme.csv", "\n".join(doubled) + "\n"))


def _dated(frame: pd.DataFrame, fmt: str) -> str:
    return _csv(frame.set_axis(frame.index.strftime(fmt).rename("date")))


def test_dates_that_read_as_day_month_and_month_day_are_a_data_error(tmp_path):
    monthly = ohlcv_frame(synthetic_closes(12)).set_axis(pd.date_range("2020-01-01", periods=12, freq="MS", name="date"))
    with pytest.raises(DataError, match=r"read as day/month and as month/day alike \(e.g. '01/02/2020'.*YYYY-MM-DD"):
        load_csv(_write(tmp_path / "m.csv", _dated(monthly, "%d/%m/%Y")))


def test_day_first_dates_that_can_only_be_day_first_are_read_day_first(tmp_path):
    frame = ohlcv_frame(synthetic_closes(40))
    got = load_csv(_write(tmp_path / "d.csv", _dated(frame, "%d/%m/%Y")))
    assert list(got.index) == list(frame.index)


def test_separate_date_and_time_columns_are_joined_into_one_stamp(tmp_path):
    stamps = pd.date_range("2020-01-02 09:30", periods=26, freq="15min").append(
        pd.date_range("2020-01-03 09:30", periods=26, freq="15min"))
    frame = ohlcv_frame(synthetic_closes(len(stamps))).set_axis(stamps)
    table = frame.assign(date=stamps.strftime("%Y-%m-%d"), time=stamps.strftime("%H:%M"))
    text = table[["date", "time", "open", "high", "low", "close", "volume"]].to_csv(index=False, lineterminator="\n")
    got = load_csv(_write(tmp_path / "intraday.csv", text))
    assert list(got.index) == list(stamps)
    # Without the time column most dates repeat: the message says what is missing, not "keep='last'".
    with pytest.raises(DataError, match="rows repeat a date.*time of day is missing") as info:
        load_csv(_write(tmp_path / "dates-only.csv", text.replace(",time", ",clock")))
    assert "keep='last'" not in str(info.value)


# --------------------------------------------------------------------------- the CLI, as a subprocess
#
# Jobs run in rounds: a replay reads what an earlier round wrote. Within a round every job is forked
# at once from one pre-imported helper (tests/test_reliability.py's server); two jobs may share a
# working folder (two runs in the same second), so each keeps its stdout/stderr apart.


@dataclass
class Job:
    build: Callable  # (workdir, root) -> argv
    rnd: int = 1
    cwd: str | None = None  # a folder shared with other jobs (default: the job's own)
    env: dict = field(default_factory=dict)
    limit: int = 300  # seconds before the job is ended (SIGALRM)


def _sample(*tickers, start="2011-06-01", end=None):
    return ["--sample", *tickers, "--start", start, *(["--end", end] if end else [])]


def _common(w: Path, out: str = "out", cache: str = "cache") -> list:
    return ["--no-plot", "--quiet", "--out", str(w / out), "--cache-dir", str(w / cache)]


def _acme_csv(w: Path, n: int = 300, name: str = "acme.csv", seed: int = 5, scale: float = 1.0) -> Path:
    w.mkdir(parents=True, exist_ok=True)
    path = w / name
    path.write_text(_csv(ohlcv_frame(synthetic_closes(n, seed=seed) * scale)), encoding="utf-8")
    return path


# One non-default value for every option a backtest records (the execution options, which only say
# where forecasts are computed and never change them, are not recorded; see docs/RELIABILITY.md).
EVERY_OPTION = {
    "lookback": "8", "retrain_every": "50", "train_window": "150", "min_train": "130", "epochs": "2",
    "refit_epochs": "2", "hidden_dim": "6", "num_layers": "1", "dropout": "0.1", "lr": "0.002", "batch_size": "16",
    "weight_decay": "0.0001", "noise_level": "0.01", "validation_split": "0.25", "patience": "3", "horizon": "2",
    "seed": "7", "device": "cpu", "threads": "none", "fold_workers": "1", "global_chains": "3",
    "entry": "0.001", "exit": "0.002", "allow_short": None, "weight": "0.4", "reserve": "0.05",
    "cash": "50000", "commission": "0.002", "skip_failed": None, "start": "2020-01-15", "end": "2020-12-31",
    "features": "range,rsi:5", "ensemble": "2", "ensemble_method": "folds", "interval": "0.2", "interval_method": "aci",
    "aci_gamma": "0.01", "rule": "interval", "sizing": "volatility", "periods_per_year": "260",
}
# The global model and the ranking strategy (the ranking strategy needs three tickers for top_k=1 and
# bottom_k=1): a second run, replayed the same way.
EVERY_GLOBAL_OPTION = {
    "scope": "global", "strategy": "rank", "top_k": "1", "bottom_k": "1", "rebalance_every": "3", "max_drop": "1",
    "sizing": "vol_target", "target_vol": "0.2", "max_leverage": "0.9",
}
NOT_RECORDED = {"workers", "executor", "address"}
# Options a backtest takes only at their default: target="volatility" is refused (nothing to trade); its replay
# from config.json is tested with evaluate (test_volatility_target.py).
BACKTEST_DEFAULT_ONLY = {"target"}


def _every_option(w, root):
    flags = [x for name, value in EVERY_OPTION.items() for x in (OPTIONS[name].flag, *([] if value is None else [value]))]
    beta = _acme_csv(w, seed=6, name="BETA.csv")
    return ["backtest", "--csv", f"ACME={_acme_csv(w)}", str(beta), *flags, *_common(w)]


def _every_global_option(w, root):
    flags = [x for name, value in EVERY_GLOBAL_OPTION.items() for x in (OPTIONS[name].flag, value)]
    csvs = [f"{name}={_acme_csv(w, seed=seed, name=f'{name}.csv')}" for name, seed in (("ACME", 5), ("BETA", 6),
                                                                                        ("GAMMA", 7))]
    return ["backtest", "--csv", *csvs, *CLI_TINY, *flags, *_common(w)]


def _replay(source: str, *extra):
    def build(w, root):
        return ["backtest", "--config", str(root / source / "out" / "config.json"), *extra, *_common(w)]
    return build


def _replay_of_copy(source: str, damage: str):
    """A copy of ``source``'s config.json whose data files are copies, then changed or deleted."""
    def build(w, root):
        cfg = json.loads((root / source / "out" / "config.json").read_text())
        records = cfg["data"]["files"] if cfg["data"]["source"] == "csv" else [cfg["data"]]
        for i, record in enumerate(records):
            copy = w / f"copy{i}{Path(record['path']).suffix}"
            copy.write_bytes(Path(record["path"]).read_bytes())
            record["path"] = str(copy)
            if i == 0:
                if damage == "changed":
                    copy.write_bytes(copy.read_bytes().replace(b"\n", b"\r\n", 1))
                else:
                    copy.unlink()
        (w / "config.json").write_text(json.dumps(cfg))
        return ["backtest", "--config", str(w / "config.json"), *_common(w)]
    return build


def _tickers_file(w, root):
    w.mkdir(parents=True, exist_ok=True)
    load_prices("ACME", start="2019-01-01", end="2019-12-31", cache_dir=w / "cache", fetcher=_fake_yahoo)
    (w / "universe.txt").write_bytes("\ufeffACME  # a byte-order mark first, as Windows editors write\n".encode())
    return ["backtest", "--tickers-file", str(w / "universe.txt"), "--start", "2019-01-01", "--end", "2019-12-31",
            *CLI_TINY, *_common(w)]


def _replay_tickers_file(w, root):
    src = root / "tickers-file"
    return ["backtest", "--config", str(src / "out" / "config.json"), "--no-plot", "--quiet", "--out", str(w / "out"),
            "--cache-dir", str(src / "cache")]


OLD_CONFIG = {  # config.json as puffin_bt wrote it before the data source and its files were recorded
    "model": "lstm", "tickers": ["IBM"], "start": "2011-06-01", "end": "2012-12-31", "cash": 50000.0,
    "commission": 0.002, "entry": 0.001, "exit": 0.002, "allow_short": True, "weight": 0.5,
    "runonce": True, "skipped": {}, "store": None,
    "forecast": {"lookback": 10, "retrain_every": 60, "train_window": 160, "min_train": 120, "epochs": 1,
                 "refit_epochs": 1, "hidden_dim": 4, "num_layers": 1, "device": "cpu"},
    "data_source": "sample",
}


def _config_file(cfg, *extra):
    def build(w, root):
        w.mkdir(parents=True, exist_ok=True)
        path = w / "config.json"
        path.write_bytes(cfg if isinstance(cfg, bytes) else json.dumps(cfg).encode())
        return ["backtest", "--config", str(path), *extra, *_common(w)]
    return build


def _with_user_file(*extra):
    def build(w, root):
        (w / "out").mkdir(parents=True)
        (w / "out" / "notes.txt").write_text("the user's own notes")
        return ["backtest", *_sample("IBM"), *CLI_TINY, *extra, *_common(w)]
    return build


def _out_is_file(w, root):
    w.mkdir(parents=True, exist_ok=True)
    (w / "out").write_text("a file")
    return ["backtest", *_sample("IBM"), *CLI_TINY, *_common(w)]


def _unwritable_out(w, root):
    bad = _acme_csv(w, n=80)
    bad.write_text(bad.read_text().replace("\n2020-01-08,", "\n2020-01-08,nan,", 1))  # a bad file, read later
    return ["backtest", "--csv", f"ACME={bad}", *CLI_TINY, "--no-plot", "--out", UNWRITABLE,
            "--cache-dir", str(w / "cache")]


def _unwritable_cache(w, root):
    return ["backtest", *_sample("IBM"), *CLI_TINY, "--no-plot", "--out", str(w / "out"), "--cache-dir", UNWRITABLE]


def _same_name_csvs(w, root):
    a, b = _acme_csv(w / "a", name="ACME.csv"), _acme_csv(w / "b", name="ACME.csv", seed=9)
    return ["backtest", "--csv", str(a), str(b), *CLI_TINY, *_common(w)]


def _equals_in_path(w, root):
    folder = w / "x=1"
    a, b = _acme_csv(folder, name="ACME.csv"), _acme_csv(folder, name="b.csv", seed=9)
    return ["backtest", "--csv", str(a), f"date={b}", *CLI_TINY, *_common(w)]  # a ticker named date, too


def _evaluate_symlinks(w, root):
    out = w / "out"
    out.mkdir(parents=True)
    for name in ("evaluation.csv", "forecasts.csv", "forecast_ACME.png"):
        victim = w / f"victim-{name}"
        victim.write_text("must stay as it is")
        (out / name).symlink_to(victim)
    return ["evaluate", "--csv", f"ACME={_acme_csv(w, n=200)}", *CLI_TINY, "--force", "--quiet", "--out", str(out),
            "--cache-dir", str(w / "cache")]


def _csv_text(name: str, text: Callable[[], str], *extra, command: str = "backtest"):
    def build(w, root):
        w.mkdir(parents=True, exist_ok=True)
        path = w / name
        path.write_text(text(), encoding="utf-8")
        return [command, "--csv", f"ACME={path}", *CLI_TINY, *extra, *_common(w)]
    return build


def _close_twice() -> str:
    lines = _csv(ohlcv_frame(synthetic_closes(200, seed=5))).splitlines()
    return "\n".join([lines[0] + ",close"] + [line + "," + line.split(",")[4] for line in lines[1:]]) + "\n"


def _monthly_day_first() -> str:
    frame = ohlcv_frame(synthetic_closes(200, seed=5))
    return _dated(frame.set_axis(pd.date_range("2000-01-01", periods=200, freq="MS")), "%d/%m/%Y")


def _date_and_time() -> str:
    stamps = pd.DatetimeIndex([d + pd.Timedelta(minutes=15 * i) for d in pd.bdate_range("2020-01-02", periods=8)
                               for i in range(26)]) + pd.Timedelta(hours=9, minutes=30)
    frame = ohlcv_frame(synthetic_closes(len(stamps), seed=5)).set_axis(stamps)
    table = frame.assign(date=stamps.strftime("%Y-%m-%d"), time=stamps.strftime("%H:%M"))
    return table[["date", "time", "open", "high", "low", "close", "volume"]].to_csv(index=False, lineterminator="\n")


def _prices_1e12() -> str:
    return _csv(ohlcv_frame(synthetic_closes(200, seed=5) * 1e10))


def _tune(*extra):
    return lambda w, root: ["tune", *_sample("IBM"), *CLI_TINY, *extra, *_common(w)]


def _fifo_config(w, root):
    w.mkdir(parents=True, exist_ok=True)
    os.mkfifo(w / "config.json")  # nothing ever writes to it: reading it would block forever
    return ["backtest", "--config", str(w / "config.json"), *_common(w)]


def _binary_tickers_file(w, root):
    w.mkdir(parents=True, exist_ok=True)
    (w / "t.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    return ["backtest", "--tickers-file", str(w / "t.txt"), *CLI_TINY, *_common(w)]


RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

JOBS: dict[str, Job] = {
    # 1. sizes
    "hidden-dim-huge": Job(lambda w, r: ["backtest", *_sample("IBM"), *T, "--hidden-dim", "100000", *_common(w)]),
    "num-layers-huge": Job(lambda w, r: ["backtest", *_sample("IBM"), *T, "--num-layers", "100000", *_common(w)]),
    "fold-workers-over-cores-in-config": Job(_config_file({"forecast": {"fold_workers": OVER}}, *_sample("IBM"), *T,
                                                          "--refit-epochs", "none")),
    "workers-over-cores": Job(lambda w, r: ["backtest", *_sample("IBM"), *T, "--workers", str(OVER), *_common(w)]),
    "threads-over-cores": Job(lambda w, r: ["backtest", *_sample("IBM"), *T, "--threads", str(OVER), *_common(w)]),
    "model-beyond-memory": Job(lambda w, r: ["backtest", *_sample("IBM"), *HUGE_FLAGS, *_common(w)]),
    "evaluate-model-beyond-memory": Job(lambda w, r: ["evaluate", *_sample("IBM"), *HUGE_FLAGS, *_common(w)]),
    # 3. replays
    "every-option": Job(_every_option),
    "replay-every-option": Job(_replay("every-option"), rnd=2),
    "every-global-option": Job(_every_global_option),
    "replay-every-global-option": Job(_replay("every-global-option"), rnd=2),
    "replay-with-a-flag": Job(_replay("every-option", "--entry", "0.01"), rnd=2),
    "replay-changed-csv": Job(_replay_of_copy("every-option", "changed"), rnd=2),
    "replay-gone-csv": Job(_replay_of_copy("every-option", "gone"), rnd=2),
    "tickers-file": Job(_tickers_file),
    "replay-tickers-file": Job(_replay_tickers_file, rnd=2),
    "replay-changed-tickers-file": Job(_replay_of_copy("tickers-file", "changed"), rnd=2),
    "old-config": Job(_config_file(OLD_CONFIG)),
    "old-config-csv": Job(_config_file({**OLD_CONFIG, "data_source": "csv", "tickers": ["ACME"]})),
    # 4. buy-and-hold
    "bh-gap": Job(lambda w, r: ["backtest", *_sample("IBM", start="2004-10-01", end="2005-10-11"), *T, *_common(w)]),
    "bh-cash": Job(lambda w, r: ["backtest", *_sample("GOOG", "IBM"), *CLI_TINY, "--cash", "400", *_common(w)]),
    "bh-commission": Job(lambda w, r: ["backtest", *_sample("IBM"), *CLI_TINY, "--commission", "0.05", *_common(w)]),
    "csv-prices-1e12": Job(_csv_text("big.csv", _prices_1e12, "--entry", "0", "--exit", "0", "--allow-short")),
    # 6. results never overwritten
    "same-second-a": Job(lambda w, r: ["backtest", *_sample("IBM", start="2012-01-01"), *CLI_TINY, "--no-plot",
                                       "--quiet", "--cache-dir", str(w / "cache-a")], cwd="same-second"),
    "same-second-b": Job(lambda w, r: ["backtest", *_sample("IBM", start="2012-01-01"), *CLI_TINY, "--no-plot",
                                       "--quiet", "--cache-dir", str(w / "cache-b")], cwd="same-second"),
    "out-not-empty": Job(_with_user_file()),
    "out-not-empty-force": Job(_with_user_file("--force")),
    "out-is-a-file": Job(_out_is_file),
    "out-unwritable": Job(_unwritable_out),
    "cache-dir-unwritable": Job(_unwritable_cache),
    "csv-same-ticker-name": Job(_same_name_csvs),
    "csv-equals-in-path": Job(_equals_in_path),
    "evaluate-through-symlinks": Job(_evaluate_symlinks),
    # clear errors
    "start-not-a-date": Job(lambda w, r: ["backtest", "--sample", "IBM", "--start", "not-a-date", *T, *_common(w)]),
    "tune-test-start-garbage": Job(_tune("--test-start", "garbage")),
    "tune-space-nan": Job(_tune("--space", "NaN")),
    "tune-space-empty-dict": Job(_tune("--space", "{}")),
    "tune-space-empty-list": Job(_tune("--space", "[]")),
    "config-binary": Job(_config_file(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")),
    "config-nested": Job(_config_file(b"[" * 100_000 + b"]" * 100_000)),
    "config-fifo": Job(_fifo_config, limit=60),
    "config-forecast-not-an-object": Job(_config_file({"forecast": "abc"})),
    "config-on-fold": Job(_config_file({"on_fold": "abc"})),
    "config-forecast-on-fold": Job(_config_file({"forecast": {"on_fold": "abc"}})),
    "config-entry-wrong-type": Job(_config_file({"entry": "abc"})),
    "tickers-file-binary": Job(_binary_tickers_file),
    "ray-address-unreachable": Job(lambda w, r: ["backtest", *_sample("IBM"), *CLI_TINY, "--executor", "ray",
                                                 "--address", "127.0.0.1:1", *_common(w)], env=RAY_ENV, limit=60),
    # silent answers
    "evaluate-too-short": Job(lambda w, r: ["evaluate", "--csv", f"ACME={_acme_csv(w, n=100)}", *CLI_TINY, *_common(w)]),
    "csv-close-twice": Job(_csv_text("twice.csv", _close_twice)),
    "csv-day-month-ambiguous": Job(_csv_text("monthly.csv", _monthly_day_first)),
    "csv-date-and-time-columns": Job(_csv_text("intraday.csv", _date_and_time)),
}

ERRORS = {  # job -> fragments its one stderr line names (exit 2, no traceback)
    "hidden-dim-huge": ("--hidden-dim", "100000", "<= 4096"),
    "num-layers-huge": ("--num-layers", "100000", "<= 16"),
    "fold-workers-over-cores-in-config": ("config.json", "'fold_workers'", f"fold_workers={OVER}", "CPU core",
                                          "at most"),
    "workers-over-cores": ("--workers", f"workers={OVER}", "CPU core", "at most"),
    "threads-over-cores": ("--threads", f"threads={OVER}", "CPU core", "at most"),
    "model-beyond-memory": ("hidden_dim=4096, num_layers=16", "GiB to train", "available", "use a smaller"),
    "evaluate-model-beyond-memory": ("hidden_dim=4096, num_layers=16", "GiB to train", "use a smaller"),
    "replay-changed-csv": ("copy0.csv", "changed since the run", "sha256", "restore it", "--csv"),
    "replay-gone-csv": ("copy0.csv", "which is gone", "restore it", "--csv"),
    "replay-changed-tickers-file": ("copy0.txt", "changed since the run", "--tickers-file"),
    "old-config-csv": ("config.json", "CSV files", "pass them again with --csv"),
    "out-not-empty": ("--out", "is not empty", "'notes.txt'", "--force"),
    "out-is-a-file": ("--out", "is a file", "pass a folder"),
    "out-unwritable": ("--out", UNWRITABLE, "not writable", "a folder you can write to"),
    "cache-dir-unwritable": ("--cache-dir", UNWRITABLE, "not writable"),
    "csv-same-ticker-name": ("--csv", "two files are named 'ACME'", "a/ACME.csv", "b/ACME.csv", "name them apart"),
    "start-not-a-date": ("--start", "'not-a-date'", "YYYY-MM-DD"),
    "tune-test-start-garbage": ("--test-start", "'garbage'", "YYYY-MM-DD"),
    "tune-space-nan": ("--space", "nan", "non-empty dict"),
    "tune-space-empty-dict": ("--space", "{}", "non-empty dict"),
    "tune-space-empty-list": ("--space", "[]", "non-empty dict"),
    "config-binary": ("--config", "not a UTF-8 text file"),
    "config-nested": ("--config", "nested too deeply"),
    "config-fifo": ("--config", "is not a regular file"),
    "config-forecast-not-an-object": ("--config", "'forecast' must be an object", "'abc'"),
    "config-on-fold": ("--config", "unknown key 'on_fold'"),
    "config-forecast-on-fold": ("--config", "'forecast' has unknown key 'on_fold'"),
    "config-entry-wrong-type": ("--config", "key 'entry'", "entry='abc'"),
    "tickers-file-binary": ("--tickers-file", "not a UTF-8 text file"),
    "ray-address-unreachable": ("127.0.0.1:1", "cannot reach a Ray cluster", "ray start --head"),
    "evaluate-too-short": ("ACME", "100 bars", "min_train=120", "load more history"),
    "csv-close-twice": ("ACME", "column 'close' appears twice", "keep one"),
    "csv-day-month-ambiguous": ("ACME", "'01/02/2000'", "day/month and as month/day", "YYYY-MM-DD"),
}


def _run_round(jobs: dict, root: Path) -> dict:
    """{id: Job} -> {id: (CompletedProcess, workdir)}: every job forked at once from the pre-imported server."""
    lines, where = [], {}
    for jid, job in jobs.items():
        workdir = root / (job.cwd or jid)
        workdir.mkdir(parents=True, exist_ok=True)
        io_dir = root / ".io" / jid
        io_dir.mkdir(parents=True)
        args = job.build(workdir, root)
        where[jid] = (args, workdir, io_dir)
        lines.append(json.dumps({"id": jid, "args": [str(a) for a in args], "cwd": str(workdir),
                                 "stdout": str(io_dir / "stdout"), "stderr": str(io_dir / "stderr"),
                                 "env": job.env, "limit": job.limit}))
    server = subprocess.run([sys.executable, "-c", _ENV_SERVER, str(max(2, min(4, os.cpu_count() or 2)))],
                            input="\n".join(lines), capture_output=True, text=True, cwd=REPO, env=_cli_env(),
                            timeout=600)
    assert server.returncode == 0, server.stderr
    out = {}
    for line in server.stdout.splitlines():
        result = json.loads(line)
        args, workdir, io_dir = where[result["id"]]
        out[result["id"]] = (subprocess.CompletedProcess(args, result["rc"], (io_dir / "stdout").read_text(),
                                                         (io_dir / "stderr").read_text()), workdir)
    assert set(out) == set(jobs), server.stderr
    return out


# The shared server, plus each job's own environment variables and time limit (set in its child only: a job
# that hangs, as the Ray connection did, is ended by SIGALRM and fails its test instead of stalling the suite).
_ENV_SERVER = _CLI_SERVER.replace(
    "    rc = 70\n",
    "    rc = 70\n    os.environ.update(job.get('env') or {})\n    import signal\n    signal.alarm(job['limit'])\n")
assert _ENV_SERVER != _CLI_SERVER, "the CLI server changed: update the job set-up above"


def _needed(wanted: set[str]) -> set[str]:
    """The wanted jobs and the jobs whose output they replay."""
    sources = {"replay-every-option": "every-option", "replay-every-global-option": "every-global-option",
               "replay-with-a-flag": "every-option",
               "replay-changed-csv": "every-option", "replay-gone-csv": "every-option",
               "replay-tickers-file": "tickers-file", "replay-changed-tickers-file": "tickers-file",
               "same-second-b": "same-second-a", "out-not-empty-force": "out-not-empty"}
    return wanted | {sources[j] for j in wanted if j in sources}


@pytest.fixture(scope="module")
def cli(request, tmp_path_factory):
    wanted = {item.callspec.params["job"] for item in request.session.items
              if hasattr(item, "callspec") and "job" in item.callspec.params and item.module.__name__ == __name__}
    wanted = _needed(wanted)
    root = tmp_path_factory.mktemp("cli2")
    results = {}
    for rnd in sorted({JOBS[j].rnd for j in wanted}):
        results.update(_run_round({j: JOBS[j] for j in sorted(wanted) if JOBS[j].rnd == rnd}, root))
    return results


def _ok(cli, job):
    proc, workdir = cli[job]
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc, workdir


def assert_one_line_error(proc, workdir: Path, fragments) -> None:
    """Exit 2, one stderr line naming every fragment, no traceback, and no results written."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert not (workdir / "out" / "config.json").exists(), "it ran anyway"


@pytest.mark.parametrize("job", sorted(ERRORS))
def test_cli_case_exits_2_with_one_line_naming_value_and_fix(cli, job):
    assert_one_line_error(*cli[job], ERRORS[job])


def _config(workdir: Path, out: str = "out") -> dict:
    return json.loads((workdir / out / "config.json").read_text())


def _without(cfg: dict, *keys) -> dict:
    return {k: v for k, v in cfg.items() if k not in keys}


@pytest.mark.parametrize("job", ["replay-every-option", "replay-every-global-option"])
def test_cli_replay_of_every_option_equals_the_original_run(cli, job):
    source = job.removeprefix("replay-")
    _, first = _ok(cli, source)
    _, again = _ok(cli, job)
    original, replay = _config(first), _config(again)
    # Every option a backtest records was given a non-default value in one of the two runs, so a replay
    # that dropped one shows.
    assert set(EVERY_OPTION) | set(EVERY_GLOBAL_OPTION) == set(names(*BACKTEST_GROUPS)) - NOT_RECORDED - \
        BACKTEST_DEFAULT_ONLY
    recorded = {**_without(original, "forecast"), **original["forecast"]}
    given = EVERY_OPTION if source == "every-option" else EVERY_GLOBAL_OPTION
    for name in given:
        assert recorded[name] != OPTIONS[name].default, name
    tickers = ["ACME", "BETA"] if source == "every-option" else ["ACME", "BETA", "GAMMA"]
    assert original["data"]["source"] == "csv" and [f["name"] for f in original["data"]["files"]] == tickers
    assert _without(replay, "store") == _without(original, "store")
    assert replay["store"]["path"] != original["store"]["path"]  # a fresh cache: the forecasts were recomputed
    for name in ("trades.csv", "forecasts.csv", "equity.csv"):
        assert (again / "out" / name).read_bytes() == (first / "out" / name).read_bytes(), name
    folds = [pd.read_csv(w / "out" / "folds.csv").drop(columns="seconds") for w in (first, again)]
    pd.testing.assert_frame_equal(*folds)
    metrics = [_without(json.loads((w / "out" / "metrics.json").read_text()), "seconds") for w in (first, again)]
    assert metrics[0] == metrics[1]
    assert len(pd.read_csv(first / "out" / "forecasts.csv")) > 100


@pytest.mark.parametrize("job", ["replay-with-a-flag"])
def test_cli_flags_override_a_replayed_config(cli, job):
    _, first = _ok(cli, "every-option")
    _, again = _ok(cli, job)
    original, replay = _config(first), _config(again)
    assert replay["entry"] == 0.01 and original["entry"] == 0.001
    assert _without(replay, "store", "entry") == _without(original, "store", "entry")


@pytest.mark.parametrize("job", ["replay-tickers-file"])
def test_cli_tickers_file_with_a_bom_runs_and_replays(cli, job):
    proc, first = _ok(cli, "tickers-file")
    _, again = _ok(cli, job)
    original = _config(first)
    assert original["tickers"] == ["ACME"] and "\ufeff" not in proc.stdout
    assert original["data"]["source"] == "tickers_file" and original["skip_failed"] is True
    assert _without(_config(again), "store") == _without(original, "store")
    assert (again / "out" / "forecasts.csv").read_bytes() == (first / "out" / "forecasts.csv").read_bytes()


@pytest.mark.parametrize("job", ["old-config"])
def test_cli_replays_a_config_json_in_the_older_format(cli, job):
    _, workdir = _ok(cli, job)
    cfg = _config(workdir)
    for key in ("cash", "commission", "entry", "exit", "allow_short", "weight"):
        assert cfg[key] == OLD_CONFIG[key], key
    assert {k: cfg["forecast"][k] for k in OLD_CONFIG["forecast"]} == OLD_CONFIG["forecast"]
    assert cfg["tickers"] == ["IBM"] and cfg["data"] == {"source": "sample", "tickers": ["IBM"]}
    assert (cfg["start"], cfg["end"]) == ("2011-06-01", "2012-12-31")


@pytest.mark.parametrize("job", ["bh-gap"])
def test_cli_buy_and_hold_retries_an_order_the_opening_gap_made_too_big(cli, job):
    proc, workdir = _ok(cli, job)
    bench = json.loads((workdir / "out" / "metrics.json").read_text())["benchmark"]
    entry = bench["entries"]["IBM"]
    assert entry["rejected_orders"] >= 1 and entry["size"] > 0
    assert bench["not_held"] == {} and abs(bench["total_return"]) > 1e-4
    equity = pd.read_csv(workdir / "out" / "equity.csv", index_col=0)["buy_hold"]
    assert equity.loc[entry["date"]:].nunique() > 20  # marked to market from the fill on: it holds


@pytest.mark.parametrize("job", ["bh-cash"])
def test_cli_buy_and_hold_that_cannot_afford_a_ticker_says_so(cli, job):
    proc, workdir = _ok(cli, job)
    bench = json.loads((workdir / "out" / "metrics.json").read_text())
    assert "GOOG" in bench["benchmark"]["not_held"] and "IBM" in bench["benchmark"]["entries"]
    assert bench["benchmark_per_ticker"]["GOOG"]["total_return"] is None
    assert bench["benchmark_per_ticker"]["IBM"]["total_return"] not in (None, 0.0)
    assert _column(proc.stdout, "GOOG", "B&H return") == ""  # blank, not 0.0%
    assert _column(proc.stdout, "IBM", "B&H return").endswith("%")
    assert "buy-and-hold not held" in proc.stdout and "costs more than its sleeve" in proc.stdout


@pytest.mark.parametrize("job", ["bh-commission"])
def test_cli_buy_and_hold_sizes_its_order_with_the_commission(cli, job):
    _, workdir = _ok(cli, job)
    bench = json.loads((workdir / "out" / "metrics.json").read_text())["benchmark"]
    assert bench["entries"]["IBM"]["rejected_orders"] == 0 and bench["not_held"] == {}


@pytest.mark.parametrize("job", ["csv-prices-1e12"])
def test_cli_prices_too_high_for_one_share_are_reported(cli, job):
    proc, workdir = _ok(cli, job)
    assert "buy-and-hold not held" in proc.stdout and "signals not traded" in proc.stdout
    assert json.loads((workdir / "out" / "metrics.json").read_text())["benchmark"]["total_return"] is None


@pytest.mark.parametrize("job", ["same-second-b"])
def test_cli_two_runs_started_together_get_their_own_output_folders(cli, job):
    (a, shared), (b, _) = _ok(cli, "same-second-a"), _ok(cli, job)
    folders = sorted((shared / "puffin-bt-out").iterdir())
    assert len(folders) == 2 and all((f / "config.json").is_file() for f in folders)
    assert {line.split()[-1] for line in (a.stdout + b.stdout).splitlines() if line.startswith("wrote")} == \
        {str(Path("puffin-bt-out") / f.name) for f in folders}


@pytest.mark.parametrize("job", ["out-not-empty-force"])
def test_cli_force_writes_into_a_non_empty_out_and_keeps_other_files(cli, job):
    _, workdir = _ok(cli, job)
    assert (workdir / "out" / "notes.txt").read_text() == "the user's own notes"
    assert (workdir / "out" / "config.json").is_file()
    _, refused = cli["out-not-empty"]  # without --force: refused, the folder untouched
    assert sorted(p.name for p in (refused / "out").iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("job", ["csv-equals-in-path"])
def test_cli_csv_path_with_an_equals_sign_and_a_ticker_named_date(cli, job):
    proc, workdir = _ok(cli, job)
    assert list(pd.read_csv(workdir / "out" / "forecasts.csv")["ticker"].unique()) == ["ACME", "date"]
    lines = proc.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("PORTFOLIO"))
    assert [line.split()[0] for line in lines[first:first + 3]] == ["PORTFOLIO", "ACME", "date"]


@pytest.mark.parametrize("job", ["evaluate-through-symlinks"])
def test_cli_evaluate_never_writes_through_a_symlink_in_the_output_folder(cli, job):
    _, workdir = _ok(cli, job)
    for name in ("evaluation.csv", "forecasts.csv", "forecast_ACME.png"):
        assert (workdir / f"victim-{name}").read_text() == "must stay as it is", name
        written = workdir / "out" / name
        assert written.is_file() and not written.is_symlink() and written.stat().st_size > 100, name


@pytest.mark.parametrize("job", ["csv-date-and-time-columns"])
def test_cli_csv_with_date_and_time_columns_keeps_every_bar(cli, job):
    _, workdir = _ok(cli, job)
    forecasts = pd.read_csv(workdir / "out" / "forecasts.csv")
    assert len(forecasts) == 8 * 26 - 119  # one per bar from the first fold (bar 119) on, none dropped
    assert pd.to_datetime(forecasts["date"]).dt.time.nunique() == 26
