"""The global model (scope="global"): one network across the tickers, folds on the union calendar,
causal across tickers, the same in every Backtrader mode."""

from __future__ import annotations

import subprocess
import sys

import backtrader as bt
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from puffin_bt import ConfigError, DataError, ForecastStore, backtest, load_sample
from puffin_bt.dates import date_numbers_of
from puffin_bt.globalmodel import Series, make_global_walk_forward, union_calendar
from strategies import ForecastThresholdStrategy

from .conftest import TINY, assert_same_forecasts, ohlcv_frame, synthetic_closes

MODES = {"runonce": dict(runonce=True), "runnext": dict(runonce=False), "unpreloaded": dict(runonce=False,
                                                                                            preload=False)}
KW = {**TINY, "device": "cpu"}
LINES = ("pred_return", "pred_std", "pred_lo", "pred_hi")


def panel(n: int = 260, seed: int = 0) -> dict:
    """Four tickers on business days: C starts 70 bars late, D misses a few days (one of them a fold date)."""
    frames = {t: ohlcv_frame(synthetic_closes(n, seed=seed + i)) for i, t in enumerate("ABCD")}
    frames["C"] = frames["C"].iloc[70:]
    frames["D"] = frames["D"].drop(frames["D"].index[[30, 59, 60, 131]])
    return frames


def run_global_lines(frames: dict, mode: str, **kw) -> dict:
    """Each ticker's indicator lines (4, bars: pred_return, pred_std, pred_lo, pred_hi) from a global model in a
    Backtrader run."""
    cerebro = bt.Cerebro(stdstats=False, **MODES[mode])
    for name, df in frames.items():
        cerebro.adddata(bt.feeds.PandasData(dataname=df), name=name)
    cerebro.addstrategy(ForecastThresholdStrategy, forecast_kwargs={**KW, **kw}, scope="global", plot_forecast=False)
    strat = cerebro.run()[0]
    return {d._name: np.array([np.asarray(getattr(fc, line).array[: len(d)]) for line in LINES])
            for d, fc in strat.forecasts.items()}


def run_global(frames: dict, mode: str, **kw) -> dict:
    return {name: lines[0] for name, lines in run_global_lines(frames, mode, **kw).items()}


def series_of(frames: dict) -> list[Series]:
    return [Series(t, date_numbers_of(df.index), df["close"].to_numpy()) for t, df in frames.items()]


@pytest.mark.parametrize("refit_epochs", [1, None])
def test_every_engine_mode_gives_the_engine_free_forecasts(refit_epochs):
    frames = panel()
    expected = make_global_walk_forward("lstm", **{**KW, "refit_epochs": refit_epochs}).forecast_all(series_of(frames))
    for mode in MODES:
        got = run_global(frames, mode, refit_epochs=refit_epochs)
        for ticker, df in frames.items():
            assert_same_forecasts(got[ticker], np.expm1(expected[ticker]), min_finite=len(df) - 110, atol=1e-9,
                                  err_msg=f"{mode} {ticker}")


def test_folds_run_on_the_union_calendar_and_a_late_ticker_joins_with_min_train_bars():
    frames = panel()
    walk = make_global_walk_forward("lstm", **KW)
    preds = walk.forecast_all(series_of(frames))
    calendar = union_calendar(series_of(frames))
    assert [f.bar for f in walk.folds] == walk.schedule.fold_bars(len(calendar))
    # C has its 60th bar (min_train) at union position 129: the first fold after that is at 139
    c_dates = date_numbers_of(frames["C"].index)
    first = int(np.flatnonzero(np.isfinite(preds["C"]))[0])
    assert c_dates[first] == calendar[139]
    assert np.isfinite(preds["A"][59:]).all() and np.isnan(preds["A"][:59]).all()
    # the pooled training set is every ticker's windows (C sits the first folds out)
    assert walk.folds[0].n_train < walk.folds[-1].n_train


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=60, max_value=240), seed=st.integers(0, 10_000))
@example(cut=99, seed=1)  # a fold date
@example(cut=139, seed=2)  # the fold where the late ticker joins
def test_no_tickers_forecast_up_to_a_date_moves_when_any_ticker_changes_after_it(cut, seed):
    frames = panel()
    calendar = union_calendar(series_of(frames))
    cutoff = pd.Timestamp(pd.Timestamp("0001-01-01") + pd.Timedelta(days=calendar[cut] - 1))
    rng = np.random.default_rng(seed)
    changed = {}
    for ticker, df in frames.items():
        df = df.copy()
        later = df.index > cutoff
        df.loc[later, ["open", "high", "low", "close"]] *= rng.uniform(0.5, 2.0, (int(later.sum()), 1))
        changed[ticker] = df
    for mode in ("runonce", "runnext"):
        base, other = run_global(frames, mode), run_global(changed, mode)
        for ticker, df in frames.items():
            keep = int((df.index <= cutoff).sum())
            assert_same_forecasts(other[ticker][:keep], base[ticker][:keep], min_finite=0, atol=0,
                                  err_msg=f"{mode} {ticker} up to {cutoff:%Y-%m-%d}")
        assert sum(np.isfinite(v[: int((frames[t].index <= cutoff).sum())]).sum() for t, v in base.items()) >= \
            cut - 60  # the comparison is not vacuous: forecasts exist up to the date


def test_global_with_built_in_features_is_the_same_in_runonce_and_runnext():
    frames = panel()
    once = run_global(frames, "runonce", features=("range", "rsi:5"))
    nxt = run_global(frames, "runnext", features=("range", "rsi:5"))
    for ticker, df in frames.items():
        assert_same_forecasts(nxt[ticker], once[ticker], min_finite=len(df) - 110, atol=1e-9)


def test_the_store_serves_a_global_model_and_a_change_to_any_ticker_is_a_miss(tmp_path):
    frames = {t: df.iloc[-400:] for t, df in load_sample().items()}
    store = ForecastStore(tmp_path)
    first = backtest(frames, scope="global", store=store, **KW)
    again = backtest(frames, scope="global", store=store, **KW)
    assert store.misses == 4 and store.hits == 4
    pd.testing.assert_frame_equal(first.forecasts, again.forecasts)
    assert (first.folds["ticker"] == "(global)").all() and len(first.folds) == len(again.folds) > 3
    changed = dict(frames)
    changed["MSFT"] = frames["MSFT"].copy()
    changed["MSFT"].iloc[-1] *= 1.01  # the last bar, all its prices
    backtest(changed, scope="global", store=store, **KW)
    assert store.misses == 8  # every ticker recomputed: the one model saw MSFT's bars


def test_bad_global_setups_are_clear_errors():
    frames = {t: df.iloc[-300:] for t, df in load_sample(["IBM", "MSFT"]).items()}
    with pytest.raises(ConfigError, match="per-ticker model"):
        backtest({"IBM": frames["IBM"]}, scope="global", store=False, **KW)
    early = {"IBM": load_sample(["IBM"], end="2006-12-31")["IBM"], "MSFT": load_sample(["MSFT"], start="2009-01-01")["MSFT"]}
    with pytest.raises(DataError, match="overlap"):
        make_global_walk_forward("lstm", **KW).forecast_all(series_of(early))
    with pytest.raises(ConfigError, match="scope='sideways'"):
        backtest(frames, scope="sideways", store=False, **KW)
    proc = subprocess.run([sys.executable, "-m", "puffin_bt.cli", "backtest", "--scope", "global", "--sample", "IBM",
                           "--no-plot"], capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "per_ticker" in proc.stderr
