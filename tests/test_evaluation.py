"""Forecast quality: per-ticker metrics against naive baselines and cross-sectional information coefficients."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from puffin_bt.evaluation import forecast_metrics, ic_summary, information_coefficients


def cross_section(pred: dict, real: dict) -> pd.DataFrame:
    rows = []
    for ticker in pred:
        for i, (p, r) in enumerate(zip(pred[ticker], real[ticker])):
            rows.append({"ticker": ticker, "date": pd.Timestamp("2020-01-01") + pd.Timedelta(days=i),
                         "pred_return": p, "realized_return": r})
    return pd.DataFrame(rows)


def test_information_coefficients_per_date_by_hand():
    pred = {"A": [0.01, 0.03], "B": [0.02, 0.01], "C": [0.03, 0.02]}
    real = {"A": [-0.01, 0.05], "B": [0.00, -0.02], "C": [0.04, 0.01]}
    per_date = information_coefficients(cross_section(pred, real))
    day0_pred, day0_real = np.array([0.01, 0.02, 0.03]), np.array([-0.01, 0.00, 0.04])
    assert per_date["ic"].iloc[0] == pytest.approx(np.corrcoef(day0_pred, day0_real)[0, 1])
    assert per_date["rank_ic"].iloc[0] == pytest.approx(1.0)  # same order on day 0
    assert per_date["rank_ic"].iloc[1] == pytest.approx(1.0)  # A > C > B predicted and realised on day 1
    summary = ic_summary(per_date)
    ic = per_date["ic"].to_numpy()
    assert summary.loc["IC", "mean"] == pytest.approx(ic.mean())
    assert summary.loc["IC", "IR"] == pytest.approx(ic.mean() / ic.std(ddof=1))
    assert summary.loc["IC", "t"] == pytest.approx(ic.mean() / ic.std(ddof=1) * np.sqrt(2))


def test_a_perfect_ranker_has_rank_ic_one_and_noise_is_near_zero():
    rng = np.random.default_rng(0)
    real = {t: rng.normal(0, 0.01, 300) for t in "ABCDEFGH"}
    perfect = information_coefficients(cross_section({t: 2 * v for t, v in real.items()}, real))
    assert (perfect["rank_ic"] > 0.999).all() and len(perfect) == 300
    noise = ic_summary(information_coefficients(cross_section({t: rng.normal(0, 1, 300) for t in real}, real)))
    assert abs(noise.loc["rank IC", "mean"]) < 0.05 and abs(noise.loc["IC", "t"]) < 3


def test_dates_with_too_few_tickers_or_equal_forecasts_are_left_out():
    pred = {"A": [0.01, 0.02, np.nan], "B": [0.01, 0.03, 0.01]}
    real = {"A": [0.02, 0.01, 0.0], "B": [0.03, 0.02, 0.01]}
    per_date = information_coefficients(cross_section(pred, real), min_tickers=2)
    assert len(per_date) == 1 and per_date["tickers"].iloc[0] == 2  # day 0: equal forecasts; day 2: one ticker


def test_ic_with_two_tickers_is_not_computed_by_default():
    # Two tickers' correlation is +-1 on every date: by default the IC needs three, so there is none here
    # (and its summary is NaN, not a t-statistic of +-1s).
    rng = np.random.default_rng(0)
    pred = {t: rng.normal(0, 0.01, 50) for t in "AB"}
    real = {t: rng.normal(0, 0.01, 50) for t in "AB"}
    assert np.allclose(information_coefficients(cross_section(pred, real), min_tickers=2)["ic"].abs(), 1.0)
    per_date = information_coefficients(cross_section(pred, real))
    assert len(per_date) == 0
    assert np.isnan(ic_summary(per_date).loc["IC", "t"])


def test_forecast_metrics_count_direction_only_where_the_price_moved():
    m = forecast_metrics(np.array([0.01, -0.01, 0.02, 0.01]), np.array([0.02, 0.01, 0.0, 0.03]))
    assert m["n"] == 4 and m["direction_accuracy"] == pytest.approx(2 / 3)


def test_cli_evaluate_prints_and_writes_the_information_coefficient(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "puffin_bt.cli", "evaluate", "--sample", "IBM", "MSFT", "GOOG",
                           "--start", "2011-01-01", "--lookback", "5", "--min-train", "60", "--retrain-every", "60",
                           "--train-window", "80", "--epochs", "1", "--hidden-dim", "4", "--num-layers", "1",
                           "--no-plot", "--quiet", "--out", str(tmp_path / "ev"), "--cache-dir", str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "rank IC" in proc.stdout and "IR" in proc.stdout
    per_date = pd.read_csv(tmp_path / "ev" / "ic.csv")
    assert len(per_date) > 400 and per_date["ic"].between(-1, 1).all()


def test_forecast_metrics_test_direction_against_the_call_mix_and_keep_the_test_against_50():
    actual = np.random.default_rng(5).normal(0.003, 0.01, 800)  # up on ~62% of days
    always_up = forecast_metrics(np.full(800, 0.001), actual)
    assert always_up["direction_accuracy"] == pytest.approx(always_up["up_rate"]) and always_up["up_rate"] > 0.58
    assert always_up["direction_accuracy_up"] == always_up["up_rate"]
    assert always_up["direction_p_value_50"] < 1e-6 and always_up["direction_p_value"] == 1.0


def test_evaluate_returns_a_result_whose_summary_gives_a_verdict_per_ticker_and_pooled(tmp_path):
    from puffin_bt.evaluation import EvaluationResult, evaluate
    from tests.conftest import TINY, ohlcv_frame, synthetic_closes

    pytest.importorskip("sklearn")
    frames = {t: ohlcv_frame(synthetic_closes(400, seed=s, drift=0.003, vol=0.01)) for s, t in enumerate("AB")}
    result = evaluate(frames, model="lstm", **TINY)
    assert isinstance(result, EvaluationResult)
    pooled = result.table.loc["POOLED"]
    assert 0.56 < pooled["up_rate"] < 0.68 and pooled["direction_p_value"] > 0.05  # a drift is not skill
    assert {"mse_ridge", "mse_gbm", "direction_accuracy_ridge", "direction_accuracy_gbm", "dm_p_value",
            "dm_p_value_best", "direction_p_value_50"} <= set(result.table.columns)
    assert result.forecasts[["pred_ridge", "pred_gbm"]].notna().all().all()
    text = result.summary()
    for name in ("A", "B", "POOLED"):
        line = next(line for line in text.splitlines() if line.strip().startswith(name + " ") and "beats" in line)
        assert "beats the zero forecast: " in line and "beats ridge: " in line and "direction skill beyond drift: no" in line
    assert len(result.ic) == 0 and any("at least 3 tickers" in note for note in result.notes)
    result.write(tmp_path)
    written = pd.read_csv(tmp_path / "evaluation.csv", index_col=0)
    assert written.loc["POOLED", "dm_p_value"] == pytest.approx(pooled["dm_p_value"])
    assert not (tmp_path / "ic.csv").exists()


def test_cli_evaluate_both_families_beside_the_baselines(tmp_path):
    pytest.importorskip("sklearn")
    proc = subprocess.run([sys.executable, "-m", "puffin_bt.cli", "evaluate", "--sample", "IBM", "MSFT", "GOOG",
                           "--start", "2012-01-01", "--model", "both", "--lookback", "5", "--min-train", "60",
                           "--retrain-every", "60", "--train-window", "80", "--epochs", "1", "--hidden-dim", "4",
                           "--num-layers", "1", "--no-plot", "--quiet", "--out", str(tmp_path / "ev"),
                           "--cache-dir", str(tmp_path / "c")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    comparison = proc.stdout.split("model comparison")[1].splitlines()
    assert [line.split()[0] for line in comparison[2:8]] == ["lstm", "gru", "ridge", "gbm", "zero", "always"]
    assert proc.stdout.count("beats ridge: ") == 8  # 3 tickers and pooled, per family
    for family in ("lstm", "gru"):
        table = pd.read_csv(tmp_path / "ev" / family / "evaluation.csv", index_col=0)
        assert table["mse_ridge"].notna().all() and table["direction_p_value"].between(0, 1).all()
    lstm = pd.read_csv(tmp_path / "ev" / "lstm" / "forecasts.csv")
    gru = pd.read_csv(tmp_path / "ev" / "gru" / "forecasts.csv")
    np.testing.assert_array_equal(lstm["pred_ridge"], gru["pred_ridge"])  # same folds, same baseline


def test_global_scope_baselines_are_pooled_on_the_global_folds_and_the_ic_has_three_tickers():
    from puffin_bt.evaluation import evaluate
    from tests.conftest import TINY, ohlcv_frame, synthetic_closes

    pytest.importorskip("sklearn")
    frames = {t: ohlcv_frame(synthetic_closes(300, seed=s)) for s, t in enumerate("ABC")}
    result = evaluate(frames, model="gru", scope="global", **TINY)
    forecasts = result.forecasts
    assert forecasts["pred_return"].notna().sum() > 600
    assert forecasts.loc[forecasts["pred_return"].notna(), ["pred_ridge", "pred_gbm"]].notna().all().all()
    assert len(result.ic) > 200 and (result.ic["tickers"] == 3).all() and not result.notes
    assert np.isfinite(result.ic_summary.loc["IC", "t"])


def test_pooled_diebold_mariano_averages_the_loss_differential_over_tickers_per_date():
    from puffin_bt.evaluation import evaluate_forecasts
    from puffin_bt.skill import diebold_mariano

    rng = np.random.default_rng(7)
    real = {t: rng.normal(0, 0.01, 120) for t in "AB"}
    pred = {t: 0.3 * v + rng.normal(0, 0.01, 120) for t, v in real.items()}
    frame = cross_section(pred, real)
    d = ((pred["A"] - real["A"]) ** 2 - real["A"] ** 2 + (pred["B"] - real["B"]) ** 2 - real["B"] ** 2) / 2
    for horizon in (1, 3):
        table = evaluate_forecasts(frame, horizon=horizon)
        assert table.loc["POOLED", "dm_p_value"] == pytest.approx(diebold_mariano(d, np.zeros(120), horizon)[1])
        assert table.loc["A", "dm_p_value"] == pytest.approx(
            diebold_mariano((pred["A"] - real["A"]) ** 2, real["A"] ** 2, horizon)[1])
    assert evaluate_forecasts(frame, horizon=3).loc["POOLED", "dm_p_value"] != \
        pytest.approx(evaluate_forecasts(frame, horizon=1).loc["POOLED", "dm_p_value"])
