"""Ridge and gradient-boosting baselines: fitted on the nets' own folds (DESIGN rule 13), causal, and with known
answers on series whose predictability is known (AR(1): R^2 = phi^2; iid with drift: no direction skill)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from puffin_bt.baselines import BaselineWalkForward, baseline_forecasts, global_baseline_forecasts
from puffin_bt.dates import date_numbers_of
from puffin_bt.evaluation import evaluate_forecasts, forecast_frame
from puffin_bt.globalmodel import Series
from puffin_bt.walkforward import feature_matrix, make_walk_forward, walk_forward
from tests.conftest import TINY, ohlcv_frame, synthetic_closes

pytest.importorskip("sklearn")

SCHEDULE = dict(lookback=5, min_train=200, retrain_every=100, train_window=None)


def ar1_closes(phi: float, n: int, seed: int = 0, vol: float = 0.01) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r, e = np.zeros(n), rng.normal(0, vol, n)
    for t in range(1, n):
        r[t] = phi * r[t - 1] + e[t]
    return 100 * np.exp(np.cumsum(r))


def scored(kind: str, closes: np.ndarray) -> pd.Series:
    """The pooled row of ``evaluate_forecasts`` with the baseline's forecasts as the forecast under test."""
    walk = make_walk_forward("lstm", None, **SCHEDULE)
    pred = np.expm1(baseline_forecasts(kind, walk.config, walk.schedule, closes))
    dates = pd.bdate_range("2000-01-03", periods=len(closes))
    return evaluate_forecasts(forecast_frame("X", dates, closes, pred, 1)).loc["POOLED"]


def test_ridge_on_an_ar1_series_reaches_the_theoretical_r2_and_significance():
    row = scored("ridge", ar1_closes(0.7, 1500))
    assert row["n"] == 1300
    assert 0.42 < row["r2"] < 0.56  # theory: phi^2 = 0.49
    assert row["dm_p_value"] < 1e-10 and row["direction_p_value"] < 1e-10


def test_iid_returns_with_a_drift_show_no_direction_skill():
    closes = synthetic_closes(1500, seed=4, drift=0.003, vol=0.01)  # up on ~62% of days, nothing to forecast
    row = scored("ridge", closes)
    assert 0.58 < row["up_rate"] < 0.66
    assert row["direction_accuracy"] > 0.58 and row["direction_p_value_50"] < 1e-6  # the old test calls it skill
    assert row["direction_p_value"] > 0.05  # against its own up/down mix it is not
    assert row["direction_accuracy"] <= row["direction_accuracy_up"]  # no better than always saying "up"


@pytest.mark.parametrize("kind", ["ridge", "gbm"])
def test_a_baseline_forecast_at_t_ignores_every_later_bar(kind):
    frame = ohlcv_frame(synthetic_closes(300, seed=1))
    t = 180
    later = frame.copy()
    later.iloc[t + 1:, :] *= np.random.default_rng(9).uniform(0.8, 1.25, (len(frame) - t - 1, 1))
    walk = make_walk_forward("lstm", None, **{**TINY, "features": ("range", "rsi:14")})
    runs = []
    for f in (frame, later):
        closes, features, _ = feature_matrix(f, ("range", "rsi:14"))
        runs.append(baseline_forecasts(kind, walk.config, walk.schedule, closes, features))
    assert np.isfinite(runs[0][: t + 1]).sum() > 100
    np.testing.assert_array_equal(runs[0][: t + 1], runs[1][: t + 1])
    assert not np.allclose(runs[0][t + 1:], runs[1][t + 1:], equal_nan=True)


def test_a_global_baseline_forecast_at_a_date_ignores_every_ticker_after_it():
    frames = {f"T{i}": ohlcv_frame(synthetic_closes(260 - 20 * i, seed=i), start=f"2020-01-{1 + 7 * i:02d}")
              for i in range(3)}
    cutoff = frames["T0"].index[170]
    walk = make_walk_forward("lstm", None, **TINY)
    runs = []
    for shock in (1.0, 1.3):
        series = []
        for name, f in frames.items():
            closes = f["close"].to_numpy().copy()
            closes[f.index > cutoff] *= shock
            series.append(Series(name, date_numbers_of(f.index), closes))
        runs.append(global_baseline_forecasts("ridge", walk.config, walk.schedule, series))
    for name, f in frames.items():
        upto = f.index <= cutoff
        assert np.isfinite(runs[0][name][upto]).sum() > 20
        np.testing.assert_array_equal(runs[0][name][upto], runs[1][name][upto])
    assert any(not np.allclose(runs[0][n][frames[n].index > cutoff], runs[1][n][frames[n].index > cutoff])
               for n in frames)


def test_baselines_train_on_exactly_the_nets_folds_and_samples():
    frame = ohlcv_frame(synthetic_closes(260, seed=2))
    options = {**TINY, "features": ("rsi:14",)}
    closes, features, _ = feature_matrix(frame, options["features"])
    net = walk_forward(frame, **options)
    walk = make_walk_forward("lstm", None, **options)
    baseline = BaselineWalkForward("ridge", walk.config, walk.schedule)
    pred = baseline.forecast_series(closes, features)
    assert [(f.bar, f.n_train) for f in baseline.folds] == [(f.bar, f.n_train) for f in net.folds]
    assert len(baseline.folds) >= 4
    # forecasts on exactly the bars the net forecasts
    np.testing.assert_array_equal(np.isfinite(pred), np.isfinite(net.pred_log_return))


def test_cli_evaluate_without_scikit_learn_says_so_in_one_line_and_runs(tmp_path):
    blocked = tmp_path / "blocked" / "sklearn"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('scikit-learn blocked for this test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "blocked"), os.getcwd()])}
    proc = subprocess.run([sys.executable, "-m", "puffin_bt.cli", "evaluate", "--sample", "IBM", "--start", "2012-01-01",
                           "--lookback", "5", "--min-train", "60", "--retrain-every", "60", "--train-window", "80",
                           "--epochs", "1", "--hidden-dim", "4", "--num-layers", "1", "--no-plot", "--quiet",
                           "--out", str(tmp_path / "ev"), "--cache-dir", str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "scikit-learn" in line]
    assert len(notes) == 1 and "puffin_bt[baselines]" in notes[0] and "Traceback" not in proc.stderr
    table = pd.read_csv(tmp_path / "ev" / "evaluation.csv", index_col=0)
    assert "mse_ridge" not in table and table.loc["POOLED", "dm_p_value"] >= 0
    assert "beats the zero forecast" in proc.stdout and "beats ridge" not in proc.stdout
