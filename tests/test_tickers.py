"""Parallel forecasts (local process pool and a local Ray runtime) give the single-process results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from puffin_bt import ConfigError, DataError
from puffin_bt.backtesting import backtest
from puffin_bt.store import ForecastStore
from puffin_bt.tickers import precompute_forecasts
from puffin_bt.walkforward import make_walk_forward

from .conftest import TINY, ohlcv_frame, regime_closes

PARAMS = {**TINY, "device": "cpu"}


def universe():
    return {
        "UP": ohlcv_frame(regime_closes(seed=1)),
        "DOWN": ohlcv_frame(regime_closes(((90, -0.004), (90, 0.004), (80, -0.004)), seed=2)),
        "LATE": ohlcv_frame(regime_closes(((120, 0.003), (80, -0.003)), seed=3), start="2020-03-02"),
    }


@pytest.fixture(scope="module")
def serial_result():
    return backtest(universe(), store=False, entry=0.001, exit=0.001, **PARAMS)


def assert_same_run(result, reference):
    pd.testing.assert_frame_equal(result.forecasts, reference.forecasts)
    pd.testing.assert_frame_equal(result.trades, reference.trades)
    assert result.metrics["final_value"] == pytest.approx(reference.metrics["final_value"], rel=1e-12)


def test_local_process_pool_gives_the_single_process_forecasts_and_trades(serial_result, tmp_path):
    store = ForecastStore(tmp_path)
    result = backtest(universe(), store=store, workers=2, entry=0.001, exit=0.001, **PARAMS)
    assert_same_run(result, serial_result)
    assert store.hits == 3 and store.misses == 0  # the engine read every ticker from the store


def test_precompute_skips_stored_tickers_and_reports_failures(tmp_path):
    store = ForecastStore(tmp_path)
    frames = universe()
    first = precompute_forecasts(frames, store=store, executor="serial", **PARAMS)
    assert sorted(first.computed) == ["DOWN", "LATE", "UP"] and not first.failed
    again = precompute_forecasts(frames, store=store, executor="serial", **PARAMS)
    assert sorted(again.cached) == ["DOWN", "LATE", "UP"] and not again.computed
    short = {"SHORT": ohlcv_frame(regime_closes(((30, 0.001),)))}
    report = precompute_forecasts({**frames, **short}, store=store, executor="local", workers=2, **PARAMS)
    assert list(report.failed) == ["SHORT"] and "60" in report.failed["SHORT"]
    assert "SHORT" in report.summary() and "skipped" in report.summary()


def test_a_failed_ticker_is_skipped_and_reported_when_asked(tmp_path):
    frames = {**universe(), "SHORT": ohlcv_frame(regime_closes(((30, 0.001),)))}
    with pytest.raises(DataError, match="SHORT"):
        backtest(frames, store=ForecastStore(tmp_path), workers=2, **PARAMS)
    result = backtest(frames, store=ForecastStore(tmp_path), workers=2, skip_failed=True, **PARAMS)
    assert set(result.per_ticker.index) == {"UP", "DOWN", "LATE"}
    assert "SHORT" in result.skipped and "SHORT" in result.summary()


def test_bad_data_for_one_ticker_is_skipped_at_load_time_when_asked():
    frames = universe()
    broken = frames["UP"].copy()
    broken.iloc[10, broken.columns.get_loc("close")] = -1.0
    result = backtest({**frames, "BROKEN": broken}, store=False, skip_failed=True, **PARAMS)
    assert "BROKEN" in result.skipped and "BROKEN" not in result.per_ticker.index


def test_unknown_executor_is_a_config_error():
    with pytest.raises(ConfigError, match="executor='dask'"):
        precompute_forecasts(universe(), store=ForecastStore("/tmp/unused-store"), executor="dask", **PARAMS)


def test_ray_local_runtime_gives_the_single_process_forecasts_and_trades(serial_result, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        store = ForecastStore(tmp_path)
        result = backtest(universe(), store=store, executor="ray", entry=0.001, exit=0.001, **PARAMS)
    finally:
        ray.shutdown()
    assert_same_run(result, serial_result)
    assert store.hits == 3


@pytest.mark.parametrize("executor, workers", [("local", 2), ("serial", None)])
def test_workers_report_every_fold_back_for_the_progress_bar(tmp_path, executor, workers):
    seen = []
    report = precompute_forecasts(universe(), store=ForecastStore(tmp_path), executor=executor, workers=workers,
                                  on_fold=lambda ticker, record: seen.append((ticker, record.index)), **PARAMS)
    assert sorted(report.computed) == ["DOWN", "LATE", "UP"]
    folds = {t: [] for t in ("DOWN", "LATE", "UP")}
    for ticker, index in seen:
        folds[ticker].append(index)
    schedule = make_walk_forward("lstm", **PARAMS).schedule
    expected = {t: list(range(len(schedule.fold_bars(len(df))))) for t, df in universe().items()}
    assert folds == expected and all(len(v) >= 4 for v in expected.values())


def test_progress_bars_count_every_fold_computed_or_stored(capsys, tmp_path):
    for workers in (None, 2, None, 2):  # the second pair is served from the store
        result = backtest(universe(), store=ForecastStore(tmp_path / str(workers)), workers=workers, progress=True,
                          **PARAMS)
        err = capsys.readouterr().err
        assert "walk-forward" in err and "16/16" in err, err[-500:]
        assert len(result.folds) == 16  # 6 + 6 + 4 folds


def test_evaluation_forecasts_in_a_pool_equal_the_serial_ones(tmp_path):
    from puffin_bt.evaluation import walk_forward_forecasts

    serial = walk_forward_forecasts(universe(), store=None, **PARAMS)
    store = ForecastStore(tmp_path)
    pooled = walk_forward_forecasts(universe(), store=store, workers=2, **PARAMS)
    pd.testing.assert_frame_equal(pooled, serial)
    pd.testing.assert_frame_equal(pooled.attrs["folds"].drop(columns="seconds"),
                                  serial.attrs["folds"].drop(columns="seconds"))
    assert store.hits == 3 and store.misses == 0
    with pytest.raises(ConfigError, match="ForecastStore"):
        walk_forward_forecasts(universe(), store=None, workers=2, **PARAMS)


def test_start_method_forks_only_for_cpu_work():
    import sys

    from puffin_bt.processes import start_method

    assert start_method("cuda") == "spawn"
    assert start_method("cpu") == ("fork" if sys.platform.startswith("linux") else "spawn")


def test_start_method_can_be_forced_and_a_forced_spawn_pool_gives_the_same_forecasts(tmp_path, monkeypatch):
    from puffin_bt.processes import start_method

    monkeypatch.setenv("PUFFIN_BT_START_METHOD", "spawn")
    assert start_method("cpu") == "spawn"
    frames = {k: v for k, v in universe().items() if k != "LATE"}
    spawned = ForecastStore(tmp_path / "spawn")
    precompute_forecasts(frames, store=spawned, executor="local", workers=2, **PARAMS)
    monkeypatch.delenv("PUFFIN_BT_START_METHOD")
    forked = ForecastStore(tmp_path / "fork")
    precompute_forecasts(frames, store=forked, executor="local", workers=2, **PARAMS)
    walk = make_walk_forward("lstm", **{k: v for k, v in PARAMS.items()})
    for df in frames.values():
        from puffin_bt.dates import date_numbers_of
        from puffin_bt.store import fingerprint

        key = fingerprint(walk, df["close"].to_numpy(dtype=float), date_numbers_of(df.index))
        a, b = spawned.load(key), forked.load(key)
        assert a is not None and b is not None
        np.testing.assert_array_equal(a[0], b[0])
    monkeypatch.setenv("PUFFIN_BT_START_METHOD", "teleport")
    with pytest.raises(ConfigError, match="PUFFIN_BT_START_METHOD='teleport'"):
        start_method("cpu")


def test_jobs_with_the_same_data_and_options_are_computed_once(tmp_path):
    from puffin_bt.tickers import precompute_jobs

    up = universe()["UP"]
    store = ForecastStore(tmp_path)
    report = precompute_jobs([("UP [trial 1]", up, PARAMS), ("UP [trial 2]", up, PARAMS),
                              ("UP [trial 3]", up, {**PARAMS, "seed": 1})], store=store, executor="local", workers=2)
    assert sorted(report.computed) == ["UP [trial 1]", "UP [trial 3]"] and report.cached == ["UP [trial 2]"]
    with pytest.raises(ConfigError, match="unique"):
        precompute_jobs([("X", up, PARAMS), ("X", up, PARAMS)], store=store)


def test_one_job_that_must_spawn_makes_the_whole_pool_spawn(monkeypatch, tmp_path):
    """The pool's start method is decided over every job, not the first: here job 2 runs two torch
    threads, which a forked child must not (GNU OpenMP hangs); a CUDA job likewise cannot fork."""
    import multiprocessing

    from puffin_bt import tickers as parallel
    from puffin_bt.tickers import precompute_jobs

    asked = []
    real = multiprocessing.get_context

    def spy(method=None):
        asked.append(method)
        return real(method)

    monkeypatch.setattr(parallel.multiprocessing, "get_context", spy)
    monkeypatch.delenv("PUFFIN_BT_START_METHOD", raising=False)
    up = universe()["UP"]
    report = precompute_jobs([("one thread", up, PARAMS), ("two threads", up, {**PARAMS, "threads": 2, "seed": 1})],
                             store=ForecastStore(tmp_path), executor="local", workers=2)
    assert sorted(report.computed) == ["one thread", "two threads"] and not report.failed
    assert asked == ["spawn"]


def test_a_new_puffin_bt_or_torch_release_never_reads_an_older_ones_forecasts(monkeypatch, tmp_path):
    """Store keys cover the code that computed the forecasts: the same data and options under
    another puffin_bt or torch version is a miss, computed afresh."""
    import torch

    from puffin_bt import store as store_module
    from puffin_bt.store import fingerprint

    walk = make_walk_forward("lstm", **PARAMS)
    closes = universe()["UP"]["close"].to_numpy(dtype=float)
    key = fingerprint(walk, closes)
    assert fingerprint(make_walk_forward("lstm", **PARAMS), closes) == key  # stable
    monkeypatch.setattr(store_module, "__version__", "99.0")
    newer_package = fingerprint(walk, closes)
    monkeypatch.undo()
    monkeypatch.setattr(torch, "__version__", "99.0+cpu")
    newer_torch = fingerprint(walk, closes)
    assert len({key, newer_package, newer_torch}) == 3
