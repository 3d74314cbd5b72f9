"""Hyperparameter search: tuning never sees the test period nor the embargo before it; every searched option
reaches the model; the chosen trial's deflated Sharpe ratio and the PBO over all trials are reported."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from puffin_bt import ConfigError
from puffin_bt.stats import deflated_sharpe_ratio, probabilistic_sharpe_ratio, probability_of_backtest_overfitting
from puffin_bt.store import ForecastStore
from puffin_bt.tuning import CHAPTER_SPACE, candidates, pbo_splits, selection_stats, tune

from .conftest import TINY, ohlcv_frame, regime_closes

FIXED = {k: v for k, v in TINY.items() if k not in ("hidden_dim", "lookback")}


def frames():
    return {"A": ohlcv_frame(regime_closes(((100, 0.004), (80, -0.004), (80, 0.004), (80, -0.004)), seed=1))}


def test_grid_covers_the_chapter_space_and_random_draws_are_distinct():
    grid = candidates(CHAPTER_SPACE, "grid", None)
    assert len(grid) == 162 and len({json.dumps(g, sort_keys=True) for g in grid}) == 162
    drawn = candidates(CHAPTER_SPACE, "random", 25, seed=3)
    assert len({json.dumps(g, sort_keys=True) for g in drawn}) == 25
    assert candidates(CHAPTER_SPACE, "random", 25, seed=3) == drawn


@pytest.fixture(scope="module")
def spied_tune(tmp_path_factory):
    """A tune whose trials trade (low thresholds), with a spy on backtest() recording every ticker's last bar
    each call saw (the real backtest runs), saved to disk."""
    import puffin_bt.backtesting as backtesting

    seen_ends, original = [], backtesting.backtest

    def recording_backtest(data, *args, **kwargs):
        seen_ends.append({t: df.index.max() for t, df in data.items()})
        return original(data, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backtesting, "backtest", recording_backtest)
        result = tune(frames(), space={"hidden_dim": [3, 5], "lookback": [5, 8]}, objective="sharpe",
                      test_fraction=0.25, entry=0.001, exit=0.001, store=ForecastStore(tmp_path_factory.mktemp("s")),
                      device="cpu", **FIXED)
    return result, seen_ends, result.save(tmp_path_factory.mktemp("tune"))


def test_no_trial_sees_the_embargo_or_the_test_period(spied_tune):
    result, seen_ends, out = spied_tune
    full = frames()["A"]
    test_begin = pd.Timestamp(result.test_period[0])
    *trial_ends, test_end = seen_ends
    assert len(trial_ends) == 4 and test_end["A"] == full.index.max()
    # The test run's first forecast is the bar before the test period (its first fold trains there).
    first_test_forecast = full.index.searchsorted(test_begin) - 1
    assert result.test.forecasts["date"].min() == full.index[first_test_forecast]
    # Default embargo: the longest lookback searched (8) + horizon (1), in bars strictly between the last
    # tuning target (the bar after the last tuning bar) and the first test forecast.
    assert result.embargo["bars"] == result.embargo["minimum"] == 9
    for ends in trial_ends:
        last_target = full.index.get_loc(ends["A"]) + 1
        assert first_test_forecast - last_target - 1 == 9
    assert str(max(e["A"] for e in trial_ends).date()) == result.tune_period[1]
    recorded = json.loads((out / "best_config.json").read_text())["tuning"]
    assert recorded["embargo"]["bars"] == 9 and recorded["test_period"][0] == str(test_begin.date())
    assert len(result.trials) == 4 and set(result.best_params) == {"hidden_dim", "lookback"}
    assert isinstance(result.best_params["hidden_dim"], int)


def test_an_explicit_embargo_is_kept_and_one_below_lookback_plus_horizon_refused(tmp_path, monkeypatch):
    import puffin_bt.backtesting as backtesting

    with pytest.raises(ConfigError, match=r"embargo=8 is below the minimum of 9 bars"):
        tune(frames(), space={"lookback": [5, 8]}, embargo=8, store=False, device="cpu", **FIXED)
    ends, original = [], backtesting.backtest
    monkeypatch.setattr(backtesting, "backtest",
                        lambda data, *a, **k: ends.append(data["A"].index.max()) or original(data, *a, **k))
    result = tune(frames(), space={"hidden_dim": [3]}, embargo=30, objective="mse", store=False, device="cpu",
                  **{**FIXED, "lookback": 5})
    full = frames()["A"]
    first_test_forecast = full.index.searchsorted(pd.Timestamp(result.test_period[0])) - 1
    assert result.embargo == {**result.embargo, "bars": 30, "minimum": 6}
    assert first_test_forecast - (full.index.get_loc(ends[0]) + 1) - 1 == 30


def test_tune_reports_the_deflated_sharpe_of_the_chosen_trial_and_the_pbo_of_all(spied_tune):
    result, _, out = spied_tune
    returns, trials = result.trial_returns, result.trials
    dsr, pbo = result.selection["dsr"], result.selection["pbo"]
    # Every trial's returns, on the same dates: the tuning period after the first forecast bar.
    assert list(returns.columns) == [1, 2, 3, 4] and returns.index.max() <= pd.Timestamp(result.tune_period[1])
    assert (returns.std() > 0).sum() >= 2, "the trials must trade for this test to mean anything"
    # The Sharpe ratios the search ranked are those of these returns, so the DSR deflates the same numbers.
    per_period = np.where(returns.std() > 0, returns.mean() / returns.std(ddof=0).replace(0, 1), 0.0)
    np.testing.assert_allclose(trials.set_index("trial").loc[returns.columns, "sharpe"].astype(float).fillna(0),
                               per_period * np.sqrt(252), rtol=1e-9)
    chosen = int(trials["trial"].iloc[0])
    assert dsr["trial"] == chosen and dsr["n_trials"] == 4
    assert trials["sharpe"].iloc[0] == trials["sharpe"].max()
    assert dsr["value"] == pytest.approx(deflated_sharpe_ratio(returns[chosen], per_period), rel=1e-12)
    assert dsr["value"] <= dsr["psr"] == pytest.approx(probabilistic_sharpe_ratio(returns[chosen]), rel=1e-12)
    assert dsr["psr"] == pytest.approx(trials["psr"].iloc[0], rel=1e-9)
    # PBO: CSCV over 8 blocks (184 daily returns, blocks of at least 21 bars).
    assert len(returns) == 184 and pbo["n_splits"] == 8 and pbo["n_combinations"] == 70
    traded = [c for c in returns.columns if c not in pbo["excluded_trials"]]
    expected = probability_of_backtest_overfitting(returns[traded].to_numpy(), n_splits=8).pbo
    assert 0 <= pbo["value"] == expected <= 1
    saved = json.loads((out / "tune_stats.json").read_text())
    assert saved["dsr"]["value"] == dsr["value"] and saved["pbo"]["value"] == pbo["value"]
    assert saved["embargo"]["bars"] == 9
    best = json.loads((out / "best_config.json").read_text())["tuning"]
    assert best["dsr"] == dsr["value"] and best["pbo"] == pbo["value"]
    assert pd.read_csv(out / "trial_returns.csv", index_col=0).shape == (184, 4)


def test_pbo_blocks_hold_at_least_a_trading_month():
    assert [pbo_splits(n) for n in (0, 83, 84, 125, 126, 184, 336, 337, 5000)] == [0, 0, 4, 4, 6, 8, 16, 16, 16]


def test_selection_stats_leave_out_trials_that_never_traded_and_see_a_dominant_trial():
    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2020-01-01", periods=400)
    returns = pd.DataFrame(rng.normal(0.0, 0.01, (400, 5)), index=dates, columns=[1, 2, 3, 4, 5])
    returns[2] += 0.01  # trial 2 earns an edge every day
    returns[4] = 0.0    # trial 4 never traded
    stats = selection_stats(returns, chosen=2)
    assert stats["pbo"]["value"] == 0.0 and stats["pbo"]["excluded_trials"] == [4]
    assert stats["pbo"]["n_trials"] == 4 and stats["pbo"]["n_splits"] == 16 and stats["pbo"]["block_bars"] == 25
    # The never-traded trial counts among the N trials with Sharpe 0; the dominant one survives the deflation.
    assert stats["dsr"]["n_trials"] == 5 and stats["dsr"]["value"] > 0.99 and stats["dsr"]["note"] is None
    idle = selection_stats(returns, chosen=4)
    assert idle["dsr"]["value"] is None and "never traded" in idle["dsr"]["note"]
    short = selection_stats(returns.iloc[:60], chosen=2)
    assert short["pbo"]["value"] is None and "84" in short["pbo"]["note"] and short["dsr"]["value"] is not None
    alone = selection_stats(returns[[2]], chosen=2)
    assert alone["dsr"]["value"] is None and "1 trial" in alone["dsr"]["note"] and alone["pbo"]["value"] is None


def test_selection_stats_leave_out_a_trial_constant_up_to_round_off():
    rng = np.random.default_rng(1)
    dates = pd.bdate_range("2020-01-01", periods=400)
    returns = pd.DataFrame(rng.normal(0.0, 0.01, (400, 3)), index=dates, columns=[1, 2, 3])
    returns[3] = 0.01
    returns.iloc[7, 2] = np.nextafter(0.01, 1.0)  # one float step: round-off, not trading
    stats = selection_stats(returns, chosen=1)
    assert stats["pbo"]["excluded_trials"] == [3] and stats["pbo"]["n_trials"] == 2
    assert stats["pbo"]["value"] is not None


def test_each_searched_option_changes_the_trial_results(tmp_path):
    result = tune(frames(), search="grid", space={"hidden_dim": [3, 6], "lookback": [5, 9]}, objective="mse",
                  store=ForecastStore(tmp_path), device="cpu", **FIXED)
    assert result.trials["mse"].nunique() == 4


def test_best_config_replays_through_the_cli(tmp_path):
    from .test_cli import run_cli

    data = tmp_path / "A.csv"
    frames()["A"].to_csv(data)
    out = tmp_path / "tune"
    proc = run_cli("tune", "--csv", f"A={data}", "--space", '{"hidden_dim": [3, 4]}', "--objective", "mse",
                   "--lookback", "5", "--min-train", "60", "--train-window", "80", "--retrain-every", "40",
                   "--epochs", "1", "--refit-epochs", "1", "--num-layers", "1", "--device", "cpu", "--no-plot",
                   "--out", str(out), "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode == 0, proc.stderr
    assert "never seen by the search" in proc.stdout
    assert "DSR of trial" in proc.stdout and "PBO:" in proc.stdout and "embargo: 6 bars" in proc.stdout
    stats = json.loads((out / "tune_stats.json").read_text())
    assert stats["dsr"]["n_trials"] == 2 and stats["embargo"]["bars"] == 6
    cfg = json.loads((out / "best_config.json").read_text())
    assert cfg["forecast"]["hidden_dim"] in (3, 4) and cfg["forecast"]["lookback"] == 5
    assert (out / "trials.csv").is_file() and (out / "test" / "metrics.json").is_file()


def test_optuna_search_runs_the_requested_number_of_trials(tmp_path):
    pytest.importorskip("optuna")
    result = tune(frames(), search="optuna", trials=3, space={"hidden_dim": [3, 4, 5], "lookback": [5, 6]},
                  objective="mse", store=ForecastStore(tmp_path), device="cpu", **FIXED)
    assert len(result.trials) == 3


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(search="bayes"), "search='bayes'"),
    (dict(objective="alpha"), "objective='alpha'"),
    (dict(space={"hidden": [1]}), "'hidden'"),
    (dict(space={"hidden_dim": []}), "hidden_dim"),
    (dict(trials=0), "trials=0"),
    (dict(test_fraction=1.5), "test_fraction=1.5"),
])
def test_bad_search_settings_are_config_errors(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[")):
        tune(frames(), store=False, device="cpu", **{**FIXED, **kwargs})


@pytest.mark.parametrize("search", ["grid", "random"])
def test_parallel_trials_compute_forecasts_in_the_pool_and_give_the_same_trials(tmp_path, monkeypatch, search):
    import puffin_bt.tickers as parallel

    space = {"hidden_dim": [3, 5], "lookback": [5, 8]}
    kw = dict(search=search, trials=4, space=space, objective="mse", device="cpu", **FIXED)
    one = tune(frames(), store=ForecastStore(tmp_path / "one"), **kw)
    batches, real = [], parallel.precompute_jobs

    def spy(jobs, *args, **kwargs):  # the real pool runs
        if any("[trial" in label for label, _, _ in jobs):
            batches.append(sorted(label for label, _, _ in jobs))
        return real(jobs, *args, **kwargs)

    monkeypatch.setattr(parallel, "precompute_jobs", spy)
    store = ForecastStore(tmp_path / "many")
    many = tune(frames(), store=store, parallel_trials=3, executor="local", workers=2, **kw)
    cols = ["hidden_dim", "lookback", "mse", "sharpe", "trades"]
    pd.testing.assert_frame_equal(one.trials[cols], many.trials[cols])
    # Trials 1-3 went to the pool as one batch; the last one, alone, ran inside its own backtest.
    assert batches == [["A [trial 1]", "A [trial 2]", "A [trial 3]"]]
    assert store.misses == 0 and store.hits == 5  # every Backtrader run read stored forecasts


def test_parallel_optuna_trials_run_in_batches_on_a_local_ray(tmp_path):
    pytest.importorskip("optuna")
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        store = ForecastStore(tmp_path)
        result = tune(frames(), search="optuna", trials=4, space={"hidden_dim": [3, 4, 5], "lookback": [5, 6]},
                      objective="mse", store=store, parallel_trials=2, executor="ray", device="cpu", **FIXED)
    finally:
        ray.shutdown()
    assert len(result.trials) == 4 and store.hits >= 3  # a batch may ask the same parameters twice
    assert result.trials["mse"].notna().all()
