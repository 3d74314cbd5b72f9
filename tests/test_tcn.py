"""The TCN family (``puffin_bt.models.tcn``) everywhere the LSTM goes: the network's causality and receptive field,
walk-forwards (cold, warm, pooled, lockstep, global, ensembles, intervals, features) with their causality
properties, the indicator in every engine mode, the estimator and its model file, the store, the CLI and tune."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from puffin_bt import CheckpointError, ForecastStore, RNNForecaster, TradingLSTM, backtest
from puffin_bt.adapters.indicators import TCNForecast
from puffin_bt.forecaster import TradingTCN
from puffin_bt.globalmodel import Series, make_global_walk_forward
from puffin_bt.models import FAMILIES, build, state_shapes
from puffin_bt.models import tcn as tcn_family
from puffin_bt.models.tcn import KERNEL_SIZE, TCNNet, levels_for, receptive_field
from puffin_bt.options import ModelConfig
from puffin_bt.tuning import tune
from puffin_bt.universe import forecast_together
from puffin_bt.walkforward import make_walk_forward, walk_forward

from .conftest import TINY, assert_differ, assert_same_forecasts, ohlcv_frame, regime_closes, synthetic_closes
from .test_cli import TINY_FLAGS, run_cli
from .test_indicators import MODES, run_recorder

TCN = {**TINY, "device": "cpu"}


def test_a_tcn_output_at_step_t_reads_inputs_up_to_t_only_and_the_last_sees_the_whole_lookback():
    torch.manual_seed(0)
    lookback = 20
    net = TCNNet(input_dim=2, hidden_dim=6, levels=levels_for(lookback, 1), dropout=0.0).eval()
    x = torch.randn(3, lookback, 2, requires_grad=True)
    hidden = net.blocks(x.transpose(1, 2))  # (batch, channels, time)
    for t in (0, 7, lookback - 1):
        (grad,) = torch.autograd.grad(hidden[:, :, t].sum(), x, retain_graph=True)
        assert grad[:, t + 1:].abs().sum() == 0, f"output at step {t} reads later steps"
        assert grad[:, : t + 1].abs().sum(dim=(0, 2)).min() > 0 or t >= receptive_field(net.levels)
    (grad,) = torch.autograd.grad(net(x).sum(), x)
    assert (grad.abs().sum(dim=(0, 2)) > 0).all(), "the forecast does not see every step of the lookback"
    assert receptive_field(levels_for(lookback, 1)) >= lookback > receptive_field(levels_for(lookback, 1) - 1)


def test_the_tcn_networks_default_kernel_is_the_familys_and_declaring_the_family_needs_no_network_module():
    assert TCNNet().kernel_size == KERNEL_SIZE
    assert "_tcn_net" in TCNNet.__module__ and "torch" not in vars(tcn_family)


@pytest.mark.parametrize("features", [(), ("a", "b")])
def test_tcn_state_shapes_are_those_of_the_built_network(features):
    config = ModelConfig(cell="tcn", hidden_dim=5, num_layers=2, lookback=30, features=features)
    assert {k: tuple(v.shape) for k, v in build(config).state_dict().items()} == state_shapes(config)


@pytest.mark.parametrize("refit", [None, 1])
def test_tcn_walk_forward_forecasts_every_bar_after_the_first_fold_and_ignores_later_bars(refit):
    closes = regime_closes(seed=4)
    base = walk_forward(closes, cell="tcn", **{**TCN, "refit_epochs": refit})
    changed = closes.copy()
    changed[150:] *= 1.3
    other = walk_forward(changed, cell="tcn", **{**TCN, "refit_epochs": refit})
    assert_same_forecasts(other.pred_return[:150], base.pred_return[:150], min_finite=150 - TINY["min_train"])
    assert_differ(other.pred_return[150:], base.pred_return[150:], min_finite=50)
    assert [f.warm_start for f in base.folds[1:]] == [refit is not None] * (len(base.folds) - 1)
    lstm = walk_forward(closes, cell="lstm", **{**TCN, "refit_epochs": refit})
    assert_differ(base.pred_return, lstm.pred_return, min_finite=200)  # really another network


@pytest.mark.parametrize("mode", list(MODES))
def test_tcn_indicator_matches_the_walk_forward_and_ignores_later_bars_in_every_engine_mode(mode):
    closes = synthetic_closes(220, seed=5)
    seen, fc = run_recorder(ohlcv_frame(closes), mode, indicator=TCNForecast)
    expected = walk_forward(closes, cell="tcn", **TCN).pred_return
    assert_same_forecasts(seen, expected, min_finite=len(closes) - TINY["min_train"] + 1)
    cut = 139  # a fold bar: a fold that read one bar past its own is caught here
    changed = closes.copy()
    changed[cut + 1:] *= np.exp(np.random.default_rng(1).normal(0, 0.2, len(closes) - cut - 1))
    other, _ = run_recorder(ohlcv_frame(changed), mode, indicator=TCNForecast)
    assert_same_forecasts(other[: cut + 1], seen[: cut + 1], min_finite=cut + 2 - TINY["min_train"])


def test_tcn_cold_folds_in_the_fold_pool_and_in_lockstep_are_the_walk_forwards_own_bit_for_bit():
    closes = [synthetic_closes(260, seed=s) for s in (6, 7)]
    cold = {**TCN, "refit_epochs": None, "retrain_every": 20}
    alone = [make_walk_forward("tcn", **{**cold, "fold_workers": 1}).run(c).pred_log_return for c in closes]
    pooled = make_walk_forward("tcn", **{**cold, "fold_workers": 2})
    np.testing.assert_array_equal(pooled.run(closes[0]).pred_log_return, alone[0])
    assert pooled.pooled_batches >= 2
    together = forecast_together([make_walk_forward("tcn", **{**cold, "fold_workers": 1}) for _ in closes], closes)
    for lines, own in zip(together, alone):
        np.testing.assert_array_equal(lines[:, 0], own)


def test_tcn_ensemble_interval_and_features_give_finite_bounds_around_the_mean():
    frame = ohlcv_frame(regime_closes(seed=8))
    res = walk_forward(frame, cell="tcn", **{**TCN, "ensemble": 3, "interval": 0.8, "features": ("range", "rsi:5")})
    real = np.isfinite(res.pred_return)
    assert real.sum() >= 200
    assert (res.pred_lo[real] < res.pred_return[real]).all() and (res.pred_return[real] < res.pred_hi[real]).all()
    assert (res.pred_std[real] > 0).all()
    assert [f.half_width > 0 for f in res.folds] == [True] * len(res.folds)


def test_global_tcn_forecasts_each_ticker_from_bars_up_to_the_fold_date():
    frames = {name: ohlcv_frame(synthetic_closes(240, seed=s)) for name, s in (("A", 9), ("B", 10))}

    def run(frames):
        series = [Series(n, np.arange(len(f), dtype=np.float64), f["close"].to_numpy()) for n, f in frames.items()]
        return make_global_walk_forward("tcn", **TCN).forecast_all(series)

    base = run(frames)
    changed = {n: f.copy() for n, f in frames.items()}
    changed["B"].loc[changed["B"].index[150:], "close"] *= 1.2
    other = run(changed)
    for name in frames:
        assert_same_forecasts(other[name][:150], base[name][:150], min_finite=150 - TINY["min_train"])
    assert_differ(other["B"][150:], base["B"][150:], min_finite=50)


def test_trading_tcn_fits_saves_and_loads_its_model_file_and_refuses_the_wrong_class(tmp_path):
    prices = synthetic_closes(300, seed=11)
    model = TradingTCN(hidden_dim=6, num_layers=1, epochs=2, lookback=12)
    model.fit(prices)
    path = model.save(tmp_path / "tcn.pt")
    loaded = RNNForecaster.load(path)
    assert type(loaded) is TradingTCN and isinstance(loaded.model, TCNNet)
    np.testing.assert_array_equal(loaded.predict(prices, steps=3), model.predict(prices, steps=3))
    with pytest.raises(CheckpointError, match="TCN model but TradingLSTM.load"):
        TradingLSTM.load(path)


def test_tcn_backtest_is_served_from_the_store_and_keyed_apart_from_the_lstm(tmp_path):
    store = ForecastStore(tmp_path)
    frames = {"UP": ohlcv_frame(regime_closes(seed=12))}
    params = {**TCN, "lookback": 5, "min_train": 60, "train_window": 80, "retrain_every": 40}
    first = backtest(frames, model="tcn", store=store, **params)
    again = backtest(frames, model="tcn", store=store, entry=0.001, **params)
    assert (store.hits, store.misses) == (1, 1)
    pd.testing.assert_frame_equal(first.forecasts, again.forecasts)
    backtest(frames, model="lstm", store=store, **params)
    assert (store.hits, store.misses) == (1, 2)


def test_cli_compares_lstm_and_tcn_side_by_side_and_refuses_an_unknown_family(tmp_path):
    proc = run_cli("evaluate", "--model", "lstm,tcn", "--start", "2012-01-01", "--sample", "IBM", "--no-plot",
                   "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"), *TINY_FLAGS)
    assert proc.returncode == 0, proc.stderr
    assert "LSTM walk-forward evaluation" in proc.stdout and "TCN walk-forward evaluation" in proc.stdout
    tables = [pd.read_csv(tmp_path / "o" / name / "forecasts.csv") for name in ("lstm", "tcn")]
    assert list(tables[0]["date"]) == list(tables[1]["date"])  # identical bars and schedule
    assert not np.allclose(tables[0]["pred_return"].dropna(), tables[1]["pred_return"].dropna())
    bad = run_cli("evaluate", "--model", "lstm,rnn", "--no-plot", "--out", str(tmp_path / "b"), *TINY_FLAGS)
    assert bad.returncode == 2 and "'rnn' is not a model family" in bad.stderr and "Traceback" not in bad.stderr


def test_tune_searches_a_tcn(tmp_path):
    frame = ohlcv_frame(regime_closes(((100, 0.004), (80, -0.004), (80, 0.004), (80, -0.004)), seed=1))
    fixed = {k: v for k, v in TCN.items() if k != "hidden_dim"}
    result = tune({"A": frame}, model="tcn", space={"hidden_dim": [3, 5]}, store=False, entry=0.001, exit=0.001,
                  **fixed)
    assert len(result.trials) == 2 and result.test.config["model"] == "tcn"
    assert json.loads(json.dumps(result.best_params))["hidden_dim"] in (3, 5)


def test_every_family_has_an_indicator_and_an_estimator():
    from puffin_bt.adapters.indicators import INDICATORS
    from puffin_bt.forecaster import ESTIMATORS

    assert set(INDICATORS) == set(ESTIMATORS) == set(FAMILIES) >= {"lstm", "gru", "tcn"}
    assert INDICATORS["tcn"] is TCNForecast and ESTIMATORS["tcn"] is TradingTCN


def test_a_global_tcn_backtest_forecasts_every_ticker_after_its_first_fold():
    frames = {"A": ohlcv_frame(regime_closes(seed=7)),
              "B": ohlcv_frame(regime_closes(((90, -0.004), (90, 0.004), (80, -0.004)), seed=8))}
    res = backtest(frames, model="tcn", scope="global", store=False, **TCN)
    counts = res.forecasts.groupby("ticker")["pred_return"].apply(lambda s: int(s.notna().sum()))
    assert counts.to_dict() == {"A": 260 - TINY["min_train"] + 1, "B": 260 - TINY["min_train"] + 1}
    assert res.config["model"] == "tcn"
