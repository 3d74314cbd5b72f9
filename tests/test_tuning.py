"""Hyperparameter search: tuning never sees the test period; every searched option reaches the model."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from puffin_bt import ConfigError
from puffin_bt.store import ForecastStore
from puffin_bt.tuning import CHAPTER_SPACE, candidates, tune

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


def test_trials_only_see_the_tuning_period_and_the_test_run_starts_after_it(tmp_path, monkeypatch):
    seen_ends = []
    import puffin_bt.backtesting as backtesting

    original = backtesting.backtest

    def recording_backtest(data, *args, **kwargs):  # a spy: the real backtest runs
        seen_ends.append(max(df.index.max() for df in data.values()))
        return original(data, *args, **kwargs)

    monkeypatch.setattr(backtesting, "backtest", recording_backtest)
    result = tune(frames(), space={"hidden_dim": [3, 5], "lookback": [5, 8]}, objective="mse",
                  test_fraction=0.25, store=ForecastStore(tmp_path), device="cpu", **FIXED)
    test_begin = pd.Timestamp(result.test_period[0])
    *trial_ends, test_end = seen_ends
    assert len(trial_ends) == 4 and all(end < test_begin for end in trial_ends)
    assert test_end == frames()["A"].index.max()
    forecasts = result.test.forecasts
    assert forecasts["date"].min() == test_begin - pd.offsets.BDay(1)  # first fold the day before the test
    assert len(result.trials) == 4 and set(result.best_params) == {"hidden_dim", "lookback"}
    assert isinstance(result.best_params["hidden_dim"], int)


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
