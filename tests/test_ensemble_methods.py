"""Cheap ensembles (``ensemble_method="folds"``): the last folds' models as ensemble members that stay causal,
agree across engine modes, train no more than one model, and feed the same lines, store and config as the seed
ensemble."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from puffin_bt import ConfigError, ForecastStore, backtest, checkpoint, fitting, walk_forward
from puffin_bt.globalmodel import make_global_walk_forward
from puffin_bt.universe import forecast_together
from puffin_bt.walkforward import feature_matrix, make_walk_forward

from .conftest import TINY, assert_same_forecasts, ohlcv_frame, synthetic_closes
from .test_cli import run_cli
from .test_uncertainty import LINES, run_lines

WARM_UP = 59  # bars before the first fold of TINY (min_train=60)
FOLDS = {"ensemble": 3, "ensemble_method": "folds"}


def test_folds_lines_agree_in_every_engine_mode():
    frame = ohlcv_frame(synthetic_closes(230, seed=4))
    base = run_lines(frame, "runonce", **FOLDS)
    ok = np.isfinite(base[0])
    assert ok.sum() == len(frame) - WARM_UP
    assert np.all(base[2][ok] <= base[0][ok]) and np.all(base[0][ok] <= base[3][ok])
    assert np.nanmin(base[1]) > 0 and np.isfinite(base[1]).sum() >= len(frame) - WARM_UP - 40
    for mode in ("runnext", "unpreloaded"):
        other = run_lines(frame, mode, **FOLDS)
        for j, line in enumerate(LINES):
            assert_same_forecasts(other[j], base[j], min_finite=len(frame) - WARM_UP - 40, atol=1e-8,
                                  err_msg=f"{mode} {line}")


@pytest.mark.parametrize("cut", [99, 150])  # a fold bar, and mid-fold
def test_no_folds_line_at_or_before_bar_t_moves_when_later_bars_change(cut):
    closes = synthetic_closes(210, seed=2)
    changed = closes.copy()
    changed[cut + 1:] *= np.exp(np.random.default_rng(cut).normal(0, 0.2, len(closes) - cut - 1))
    for mode in ("runonce", "runnext"):
        base = run_lines(ohlcv_frame(closes), mode, **FOLDS)
        other = run_lines(ohlcv_frame(changed), mode, **FOLDS)
        assert not np.allclose(other[0][cut + 1:], base[0][cut + 1:])  # the perturbation reaches the model
        for j, line in enumerate(LINES):
            assert_same_forecasts(other[j][: cut + 1], base[j][: cut + 1], min_finite=cut + 1 - WARM_UP - 40,
                                  err_msg=f"{mode} {line}")


def _trained_model_epochs(monkeypatch) -> list[int]:
    """Count, for real, the network-epochs trained: every net passed to the batched engine or to autograd
    training, times its epochs (the originals run; the fold pool is off so that all training happens here)."""
    count = [0]
    together, alone = fitting.train_networks_together, fitting.train_prepared

    def counted_together(nets, cfg, data, epochs, *args, **kwargs):
        count[0] += len(nets) * epochs
        return together(nets, cfg, data, epochs, *args, **kwargs)

    def counted_alone(net, cfg, data, epochs, *args, **kwargs):
        count[0] += epochs
        return alone(net, cfg, data, epochs, *args, **kwargs)

    monkeypatch.setattr(fitting, "train_networks_together", counted_together)
    monkeypatch.setattr(fitting, "train_prepared", counted_alone)
    return count


@pytest.mark.parametrize("refit", [1, None])
def test_folds_trains_exactly_what_one_model_trains(monkeypatch, refit):
    closes = synthetic_closes(260, seed=3)
    opts = {**TINY, "device": "cpu", "fold_workers": 1, "refit_epochs": refit, "epochs": 2}
    count = _trained_model_epochs(monkeypatch)
    trained = {}
    for name, extra in {"one": {}, "seeds": {"ensemble": 4}, "folds": {"ensemble": 4, "ensemble_method": "folds"}}.items():
        before = count[0]
        walk_forward(closes, **opts, **extra)
        trained[name] = count[0] - before
    folds = 6  # fold bars 59, 99, 139, 179, 219, 259
    assert trained["one"] == (2 + (folds - 1) * (1 if refit else 2))
    assert trained["folds"] == trained["one"]
    assert trained["seeds"] == 4 * trained["one"]


@pytest.mark.parametrize("refit, features", [(1, ()), (None, ()), (1, ("rsi:5",))])
def test_the_folds_ensemble_averages_this_folds_model_and_the_earlier_folds_models_as_they_were(refit, features):
    """K=2: at fold k the members are fold k's model and fold k-1's, each as trained at its own date (a warm refit
    continues from a copy, so the earlier member is not overwritten) with its own fold's scaler."""
    closes, rows, _ = feature_matrix(ohlcv_frame(synthetic_closes(230, seed=5)), features)
    opts = {**TINY, "device": "cpu", "fold_workers": 1, "refit_epochs": refit, "features": features}
    one = make_walk_forward(**opts).forecast_lines(closes, 0, 230, features=rows)[:, 0]
    pair = make_walk_forward(**opts, ensemble=2, ensemble_method="folds").forecast_lines(closes, 0, 230, features=rows)
    first = slice(59, 99)  # the first fold: one member, the one model's forecast and no spread
    np.testing.assert_array_equal(pair[first, 0], one[first])
    assert np.isnan(pair[first, 1]).all()
    earlier = make_walk_forward(**opts)
    earlier.forecast_lines(closes, 0, 139, features=rows)  # trains folds 0 and 1 (bars 59, 99) on data up to them
    net, scaler = earlier.nets[0], earlier.scaler  # fold 1's model as it was at bar 99
    bars = np.arange(139, 179)  # fold 2's bars
    previous = fitting.predict_log_returns(net, scaler, closes, bars, TINY["lookback"], torch.device("cpu"), rows)
    np.testing.assert_allclose(pair[bars, 0], (one[bars] + previous) / 2, rtol=0, atol=1e-12)
    spread = np.abs(np.expm1(one[bars]) - np.expm1(previous)) / np.sqrt(2)
    np.testing.assert_allclose(pair[bars, 1], spread, rtol=1e-9)
    assert (spread > 0).all()


@pytest.mark.parametrize("options, says", [
    ({"ensemble_method": "folds"}, ["ensemble_method='folds'", "ensemble=1", "ensemble >= 2"]),
    ({"ensemble_method": "dropout", "ensemble": 4}, ["ensemble_method='dropout'", "'seeds', 'folds'"]),
])
def test_a_bad_ensemble_method_is_a_config_error_naming_the_value_and_the_fix(options, says):
    with pytest.raises(ConfigError) as err:
        make_walk_forward(**TINY, **options)
    for text in says:
        assert text in str(err.value)


def test_the_cli_help_lists_the_ensemble_methods_from_the_registry():
    out = run_cli("backtest", "--help")
    assert out.returncode == 0 and "--ensemble-method {seeds,folds}" in out.stdout


def test_the_cli_refuses_an_ensemble_method_without_an_ensemble_in_one_line():
    out = run_cli("backtest", "--ensemble-method", "folds", "--tickers", "AAPL")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "ensemble_method='folds'" in lines[0] and "ensemble >= 2" in lines[0]


def test_the_global_scope_refuses_the_folds_ensemble():
    with pytest.raises(ConfigError, match="global"):
        make_global_walk_forward(**TINY, ensemble=2, ensemble_method="folds")


def test_a_model_file_is_refused_for_a_folds_ensemble(tmp_path):
    walk = make_walk_forward(**TINY, device="cpu", ensemble=2, ensemble_method="folds")
    walk.forecast_lines(synthetic_closes(120), 0, 120)
    with pytest.raises(ConfigError, match="ensemble_method='folds'"):
        checkpoint.write_fold(tmp_path / "m.pt", "LSTMForecast", walk, {})


def test_a_warm_rerun_serves_the_stored_ensemble_and_the_config_records_its_method(tmp_path):
    store = ForecastStore(tmp_path)
    frames = {"X": ohlcv_frame(synthetic_closes(230, seed=7))}
    kw = {**TINY, "device": "cpu", "ensemble": 3, "ensemble_method": "folds", "interval": 0.8}
    first = backtest(frames, store=store, **kw)
    again = backtest(frames, store=store, entry=0.001, **kw)
    assert (store.hits, store.misses) == (1, 1)
    assert first.forecasts["pred_std"].notna().sum() >= 230 - WARM_UP - 40
    np.testing.assert_array_equal(first.forecasts["pred_std"].to_numpy(), again.forecasts["pred_std"].to_numpy())
    assert first.config["forecast"]["ensemble_method"] == "folds"
    backtest(frames, store=store, **{**kw, "ensemble_method": "seeds"})
    assert store.misses == 2  # another method: other forecasts, computed, not read back


def test_cli_evaluate_sets_a_cheap_ensemble_beside_one_model(tmp_path):
    proc = run_cli("evaluate", "--sample", "IBM", "--start", "2012-01-01", "--lookback", "5", "--min-train", "60",
                   "--retrain-every", "60", "--train-window", "80", "--epochs", "1", "--hidden-dim", "4",
                   "--num-layers", "1", "--device", "cpu", "--ensemble", "3", "--ensemble-method", "folds",
                   "--interval", "0.8", "--interval-method", "aci", "--no-baselines", "--no-plot", "--quiet",
                   "--out", str(tmp_path / "ev"), "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode == 0, proc.stderr
    assert "ensemble of 3 (folds) vs one model, same bars:" in proc.stdout


@pytest.mark.parametrize("refit", [1, None])
def test_folds_ensembles_walked_forward_together_or_in_the_fold_pool_equal_each_alone(refit):
    """The lockstep universe (warm refits of several tickers as one job) and the fold pool (cold folds in worker
    processes) hand each walk-forward its trained folds: its fold models must be those it trains alone."""
    series = [synthetic_closes(230, seed=s) for s in (8, 9)]
    opts = {**TINY, "device": "cpu", "refit_epochs": refit, "interval": 0.8, **FOLDS}
    alone = [make_walk_forward(**opts, fold_workers=1).forecast_lines(c, 0, len(c)) for c in series]
    together = forecast_together([make_walk_forward(**opts, fold_workers=1) for _ in series], series)
    pooled = [make_walk_forward(**opts, fold_workers=2).forecast_lines(c, 0, len(c)) for c in series]
    for one, lock, pool in zip(alone, together, pooled):
        assert np.isfinite(one[:, 1]).sum() >= 230 - WARM_UP - 40
        for j, line in enumerate(LINES):
            assert_same_forecasts(lock[:, j], one[:, j], min_finite=230 - WARM_UP - 40, atol=1e-8,
                                  err_msg=f"together {line}")
            assert_same_forecasts(pool[:, j], one[:, j], min_finite=230 - WARM_UP - 40, atol=1e-8,
                                  err_msg=f"fold pool {line}")
