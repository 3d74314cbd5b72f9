"""The global model's intervals and seed ensembles, and its chains of warm refits trained side by side: the
lines stay causal across tickers, agree in every engine mode and come back from the store; a fold's result does
not depend on the process that trained it."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from puffin_bt import ConfigError, ForecastStore, backtest, load_sample
from puffin_bt.globalmodel import make_global_walk_forward, union_calendar

from .conftest import TINY, assert_differ, assert_same_forecasts
from .test_global import LINES, MODES, panel, run_global_lines, series_of

UNC = {**TINY, "device": "cpu", "ensemble": 2, "interval": 0.8, "validation_split": 0.25}


def run_lines(frames: dict, mode: str, **kw) -> dict:
    return run_global_lines(frames, mode, **{**UNC, **kw})


@pytest.mark.parametrize("method", ["split", "aci", "vol"])
def test_global_lines_agree_in_every_engine_mode_and_the_interval_holds_the_forecast(method):
    frames = panel()
    expected = make_global_walk_forward("lstm", **UNC, interval_method=method).forecast_all_lines(series_of(frames))
    for mode in MODES:
        got = run_lines(frames, mode, interval_method=method)
        for ticker, df in frames.items():
            want = expected[ticker].T.copy()
            want[0] = np.expm1(want[0])
            for j, line in enumerate(LINES):
                assert_same_forecasts(got[ticker][j], want[j], min_finite=len(df) - 110, atol=1e-9,
                                      err_msg=f"{method} {mode} {ticker} {line}")
            pred, _, lo, hi = got[ticker]
            ok = np.isfinite(pred)
            assert (lo[ok] < pred[ok]).all() and (pred[ok] < hi[ok]).all()


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=60, max_value=240), seed=st.integers(0, 10_000), method=st.sampled_from(["aci", "vol"]))
@example(cut=99, seed=1, method="aci")  # a fold date
@example(cut=139, seed=2, method="vol")  # the fold where the late ticker joins
def test_no_tickers_lines_up_to_a_date_move_when_one_ticker_changes_after_it(cut, seed, method):
    frames = panel()
    calendar = union_calendar(series_of(frames))
    cutoff = pd.Timestamp(pd.Timestamp("0001-01-01") + pd.Timedelta(days=calendar[cut] - 1))
    rng = np.random.default_rng(seed)
    victim = "ABCD"[seed % 4]
    changed = dict(frames)
    df = frames[victim].copy()
    later = df.index > cutoff
    df.loc[later, ["open", "high", "low", "close"]] *= rng.uniform(0.5, 2.0, (int(later.sum()), 1))
    changed[victim] = df
    for mode in ("runonce", "runnext"):
        base, other = run_lines(frames, mode, interval_method=method), run_lines(changed, mode, interval_method=method)
        for ticker, df in frames.items():
            keep = int((df.index <= cutoff).sum())
            for j, line in enumerate(LINES):
                assert_same_forecasts(other[ticker][j, :keep], base[ticker][j, :keep], min_finite=0, atol=0,
                                      err_msg=f"{mode} {ticker} {line} up to {cutoff:%Y-%m-%d} ({victim} changed)")
        assert sum(np.isfinite(v[3, : int((frames[t].index <= cutoff).sum())]).sum() for t, v in base.items()) >= \
            cut - 60  # the comparison is not vacuous: intervals exist up to the date


def test_the_store_serves_a_global_models_lines(tmp_path):
    frames = {t: df.iloc[-400:] for t, df in load_sample().items()}
    store = ForecastStore(tmp_path)
    options = {**UNC, "interval_method": "aci"}
    first = backtest(frames, scope="global", store=store, **options)
    again = backtest(frames, scope="global", store=store, **options)
    assert store.misses == 4 and store.hits == 4
    pd.testing.assert_frame_equal(first.forecasts, again.forecasts)
    f = first.forecasts
    assert {"pred_std", "pred_lo", "pred_hi"} <= set(f.columns) and len(f) > 500
    assert f[["pred_std", "pred_lo", "pred_hi"]].notna().all().all()
    covered = ((f["realized_return"] >= f["pred_lo"]) & (f["realized_return"] <= f["pred_hi"]))[f["realized_return"].notna()]
    assert 0.6 < covered.mean() < 0.95  # an 80% interval, calibrated on each ticker's own residuals


def test_the_chains_train_side_by_side_in_two_processes_and_give_the_forecasts_of_one():
    frames = panel(400)
    options = {**UNC, "retrain_every": 20, "epochs": 2}
    alone = make_global_walk_forward("lstm", **options, fold_workers=1)
    one = alone.forecast_all_lines(series_of(frames))
    reported = []
    pooled = make_global_walk_forward("lstm", reported.append, **options, fold_workers=2)
    two = pooled.forecast_all_lines(series_of(frames))
    assert alone.pooled_chains == 0 and pooled.pooled_chains == 1
    # every fold reported once: this process's chain as it trained (a progress bar moves), the worker's after
    assert sorted(reported, key=lambda r: r.index) == pooled.folds
    mine = list(range(0, len(pooled.folds), 2))
    assert [r.index for r in reported[: len(mine)]] == mine
    assert [(f.warm_start, f.n_train, f.train_loss, f.half_width) for f in pooled.folds] == \
        [(f.warm_start, f.n_train, f.train_loss, f.half_width) for f in alone.folds]
    (main_pid, main_cpu), (worker_pid, worker_cpu) = pooled.chain_cpu[0], pooled.chain_cpu[1]
    assert main_pid == os.getpid() and worker_pid != main_pid
    assert main_cpu > 0 and worker_cpu > 0.2 * main_cpu  # the other core trained a chain of its own
    for ticker in frames:
        for j, line in enumerate(LINES):
            assert_same_forecasts(two[ticker][:, j], one[ticker][:, j], min_finite=len(frames[ticker]) - 110, atol=0,
                                  err_msg=f"{ticker} {line}")


def test_fold_k_continues_fold_k_minus_global_chains():
    frames = panel()
    runs = {}
    for chains in (1, 2, 3):
        walk = make_global_walk_forward("lstm", **{**TINY, "device": "cpu"}, global_chains=chains)
        runs[chains] = walk.forecast_all(series_of(frames))
        assert [f.warm_start for f in walk.folds] == [k >= chains for k in range(len(walk.folds))]
    assert_differ(runs[2]["A"], runs[1]["A"], min_finite=100)
    with pytest.raises(ConfigError, match="global_chains=0"):
        make_global_walk_forward("lstm", global_chains=0)


def test_other_ensemble_methods_are_refused_in_global_scope():
    with pytest.raises(ConfigError, match="ensemble_method='folds'.*scope='global'.*seeds"):
        make_global_walk_forward("lstm", ensemble=4, ensemble_method="folds")


def test_cli_evaluate_compares_a_global_ensemble_with_adaptive_intervals_to_one_model(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "puffin_bt.cli", "evaluate", "--sample", "AAPL", "MSFT", "IBM",
                           "--start", "2011-06-01", "--scope", "global", "--ensemble", "2", "--interval", "0.8",
                           "--interval-method", "aci", "--hidden-dim", "4", "--num-layers", "1", "--epochs", "1",
                           "--lookback", "10", "--min-train", "120", "--train-window", "160", "--retrain-every", "60",
                           "--no-baselines", "--no-plot", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ensemble of 2 (seeds) vs one model" in proc.stdout
    forecasts = pd.read_csv(tmp_path / "out" / "forecasts.csv")
    assert set(forecasts["ticker"]) == {"AAPL", "MSFT", "IBM"} and len(forecasts) > 300
    assert forecasts[["pred_std", "pred_lo", "pred_hi"]].notna().all().all()


def test_a_global_ensemble_of_volatility_models_combines_variances_and_refuses_an_interval():
    frames = panel()
    walk = make_global_walk_forward("lstm", **{**TINY, "device": "cpu"}, target="volatility", ensemble=2)
    lines = walk.forecast_all_lines(series_of(frames))
    one = make_global_walk_forward("lstm", **{**TINY, "device": "cpu"}, target="volatility").forecast_all_lines(
        series_of(frames))
    for ticker, df in frames.items():
        variance, spread = lines[ticker][:, 0], lines[ticker][:, 1]
        ok = np.isfinite(variance)
        assert ok.sum() >= len(df) - 110 and (variance[ok] > 0).all() and np.isfinite(spread[ok]).all()
        assert_differ(variance, one[ticker][:, 0], min_finite=len(df) - 110)  # the second member moved the mean
    with pytest.raises(ConfigError, match="target='volatility'"):
        make_global_walk_forward("lstm", target="volatility", interval=0.8)
