"""The engine-free walk-forward: schedule arithmetic, purging, and causality as a property."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from puffin_bt import ConfigError, DataError, ModelConfig
from puffin_bt.options import FitConfig
from puffin_bt.walkforward import FoldSchedule, WalkForward, walk_forward

from .conftest import TINY, assert_differ, assert_same_forecasts, synthetic_closes

MODEL = {k: TINY[k] for k in ("hidden_dim", "num_layers", "batch_size", "patience", "validation_split")}


def make_runner(refit_epochs=1, horizon=1, train_window=80, fold_workers="auto", **overrides) -> WalkForward:
    cfg = ModelConfig(lookback=5, horizon=horizon, **{**MODEL, **overrides})
    schedule = FoldSchedule(5, 60, 40, train_window, horizon, cfg.validation_split)
    return WalkForward(cfg, schedule, FitConfig(epochs=1, refit_epochs=refit_epochs, device="cpu",
                                                fold_workers=fold_workers))


def test_schedule_retrains_every_n_bars_from_min_train():
    s = FoldSchedule(lookback=10, min_train=100, retrain_every=25, train_window=None)
    assert s.fold_bars(180) == [99, 124, 149, 174]
    assert s.fold_bar_for(98) is None
    assert [s.fold_bar_for(b) for b in (99, 123, 124, 179)] == [99, 99, 124, 174]
    assert s.is_fold_bar(149) and not s.is_fold_bar(150)


def test_training_targets_end_at_or_before_the_fold_bar_for_every_horizon():
    for horizon in (1, 3, 7):
        s = FoldSchedule(lookback=10, min_train=100, retrain_every=25, train_window=60, horizon=horizon)
        for bar in s.fold_bars(400):
            samples = s.sample_bars(bar)
            assert samples.max() + horizon == bar  # purged: the last target ends exactly at the fold bar
            assert samples.min() - s.lookback + 1 >= s.train_start(bar) + 1  # first return inside the window
            assert bar - s.train_start(bar) + 1 == min(60, bar + 1)


def test_each_fold_is_trained_on_exactly_the_closes_up_to_its_bar():
    seen = []

    class Recording(WalkForward):
        def train_fold(self, history, date=None, features=None):
            seen.append(len(history) - 1)
            record = super().train_fold(history, date, features)
            assert record.bar == len(history) - 1
            return record

    closes = synthetic_closes(230)
    cfg = ModelConfig(lookback=5, **MODEL)
    walk = Recording(cfg, FoldSchedule(5, 60, 40, 80, 1, cfg.validation_split),
                     FitConfig(epochs=1, refit_epochs=None, device="cpu"))
    walk.run(closes)
    assert seen == [59, 99, 139, 179, 219]


def test_predictions_start_at_the_first_fold_bar_and_cover_the_rest():
    closes = synthetic_closes(230)
    res = make_runner().run(closes)
    assert np.isnan(res.pred_log_return[:59]).all()
    assert np.isfinite(res.pred_log_return[59:]).all()
    assert len(res.folds) == 5
    np.testing.assert_allclose(res.pred_return, np.expm1(res.pred_log_return))


@pytest.mark.parametrize("refit_epochs", [None, 1])
def test_event_driven_steps_match_the_batched_run(refit_epochs):
    closes = synthetic_closes(230, seed=3)
    batched = make_runner(refit_epochs).run(closes).pred_log_return
    stepper = make_runner(refit_epochs)
    stepped = np.array([stepper.advance_lines(closes[: t + 1])[0] for t in range(len(closes))])
    assert_same_forecasts(stepped, batched, min_finite=len(closes) - 59)


def test_same_seed_same_forecasts_other_seed_other_forecasts():
    closes = synthetic_closes(200, seed=5)
    a = make_runner(seed=1).run(closes).pred_log_return
    b = make_runner(seed=1).run(closes).pred_log_return
    c = make_runner(seed=2).run(closes).pred_log_return
    np.testing.assert_array_equal(a, b)
    assert_differ(a[59:], c[59:], min_finite=len(closes) - 59)


def test_warm_start_continues_from_previous_weights_and_cold_refit_does_not():
    closes = synthetic_closes(200, seed=6)
    warm = make_runner(refit_epochs=1).run(closes)
    cold = make_runner(refit_epochs=None).run(closes)
    assert [f.warm_start for f in warm.folds] == [False, True, True, True]
    assert not any(f.warm_start for f in cold.folds)
    # Fold 0 is identical; later folds differ because warm folds start from trained weights.
    np.testing.assert_array_equal(warm.pred_log_return[59:99], cold.pred_log_return[59:99])
    assert_differ(warm.pred_log_return[99:], cold.pred_log_return[99:], min_finite=len(closes) - 99)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=st.integers(min_value=60, max_value=200),
    mode=st.sampled_from(["perturb", "truncate"]),
    horizon=st.sampled_from([1, 3]),
    refit=st.sampled_from([None, 1]),
    seed=st.integers(0, 1000),
)
# t = a fold bar (59, 99, 139, ...): a fold that read a bar past its own is caught only near one.
@example(cut=99, mode="perturb", horizon=1, refit=None, seed=1)
@example(cut=139, mode="truncate", horizon=3, refit=1, seed=2)
def test_prediction_at_bar_t_ignores_every_later_bar(cut, mode, horizon, refit, seed):
    closes = synthetic_closes(220, seed=seed % 7)
    base = make_runner(refit, horizon).run(closes).pred_log_return
    if mode == "truncate":
        changed = closes[: cut + 1]
    else:
        rng = np.random.default_rng(seed)
        changed = closes.copy()
        changed[cut + 1:] *= np.exp(rng.normal(0, 0.2, len(closes) - cut - 1))
    other = make_runner(refit, horizon).run(changed).pred_log_return
    assert_same_forecasts(other[: cut + 1], base[: cut + 1], min_finite=cut + 1 - 59)


def test_walk_forward_function_on_plain_array():
    res = walk_forward(list(synthetic_closes(150)), lookback=5, min_train=60, retrain_every=45, train_window=None,
                       epochs=1, refit_epochs=None, hidden_dim=4, num_layers=1, device="cpu")
    assert [f.bar for f in res.folds] == [59, 104, 149] and res.folds[2].train_start == 0
    assert np.isfinite(res.pred_return[59:]).all()


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(min_train=8), "min_train=8"),
    (dict(train_window=8), "train_window=8"),
    (dict(retrain_every=0), "retrain_every=0"),
    (dict(lookback=2.5), "lookback=2.5"),
    (dict(min_train=-5), "min_train=-5"),
])
def test_bad_schedule_parameters_raise_config_error_naming_them(kwargs, fragment):
    params = dict(lookback=5, min_train=60, retrain_every=20, train_window=80)
    params.update(kwargs)
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        FoldSchedule(**params)


def test_nan_inside_a_fold_history_raises_data_error_with_the_bar():
    closes = synthetic_closes(150)
    closes[70] = np.nan
    walk = make_runner()
    with pytest.raises(DataError, match="bar 59|NaN"):
        walk.forecast_lines(closes, 0, len(closes))


def test_series_shorter_than_min_train_is_rejected_with_the_minimum():
    with pytest.raises(DataError, match="at least 60"):
        make_runner().run(synthetic_closes(40))


def test_cold_lstm_folds_train_together_exactly_as_one_by_one(monkeypatch):
    from puffin_bt import fitting

    batches = []
    real = fitting.train_networks_together

    def spy(nets, *args, **kwargs):
        batches.append(len(nets))
        return real(nets, *args, **kwargs)

    monkeypatch.setattr(fitting, "train_networks_together", spy)
    closes = synthetic_closes(300, seed=11)
    # In one process (fold_workers=1): the spy sees the batches (test_foldpool covers the pool).
    kw = dict(refit_epochs=None, hidden_dim=8, dropout=0.2, patience=1, fold_workers=1)
    together = make_runner(**kw).run(closes)
    # Fold 0 (bar 59) has 60 bars of history; folds 1..6 see a full 80-bar window: one batch of 6.
    assert batches == [1, 6] and len(together.folds) == 7
    batches.clear()
    stepper = make_runner(**kw)
    stepped = np.array([stepper.advance_lines(closes[: t + 1])[0] for t in range(len(closes))])
    assert batches == [1] * 7
    # Training is bit-identical (the losses are); inference differs only by the batch-size rounding of nn.LSTM.
    assert [(f.train_loss, f.val_loss, f.epochs_run) for f in stepper.folds] == \
        [(f.train_loss, f.val_loss, f.epochs_run) for f in together.folds]
    assert_same_forecasts(stepped, together.pred_log_return, min_finite=len(closes) - 59, atol=1e-9)
    assert all(f.seconds > 0 for f in together.folds)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_warm_refits_train_one_at_a_time_and_cold_folds_in_batches(monkeypatch, cell):
    from puffin_bt import fitting

    batches = []
    real = fitting.train_networks_together
    monkeypatch.setattr(fitting, "train_networks_together",
                        lambda nets, *a, **k: batches.append(len(nets)) or real(nets, *a, **k))
    warm = make_runner(refit_epochs=1, cell=cell).run(synthetic_closes(300, seed=2))
    # Fold 0 is cold; warm GRU refits use the engine (faster than nn.GRU at M = 1), LSTM ones nn.LSTM.
    assert len(warm.folds) == 7 and batches == ([1] * 7 if cell == "gru" else [1])
    assert [f.warm_start for f in warm.folds] == [False] + [True] * 6
    batches.clear()
    cold = make_runner(refit_epochs=None, cell=cell, fold_workers=1).run(synthetic_closes(300, seed=2))
    assert batches == [1, 6]
    np.testing.assert_array_equal(warm.pred_log_return[59:99], cold.pred_log_return[59:99])


def test_big_cold_nets_train_in_smaller_batches_within_the_memory_budget(monkeypatch):
    from puffin_bt import _sizing, fitting
    from puffin_bt.batched import bytes_per_model

    batches = []
    real = fitting.train_networks_together
    monkeypatch.setattr(fitting, "train_networks_together",
                        lambda nets, *a, **k: batches.append(len(nets)) or real(nets, *a, **k))
    walk = make_runner(refit_epochs=None, hidden_dim=8, fold_workers=1)
    per_model = bytes_per_model(8, MODEL["num_layers"], 5, MODEL["batch_size"])
    monkeypatch.setattr(_sizing, "BATCH_MEMORY", 2 * per_model + 1)  # room for two models
    walk.run(synthetic_closes(300, seed=11))
    assert batches == [1, 2, 2, 2]  # fold 0 alone (shorter history), then folds 1..6 two at a time


def test_batched_cold_folds_report_progress_every_prefetch_window(monkeypatch):
    from puffin_bt import fitting
    from puffin_bt import walkforward as wf_mod

    trained, seen_at_report = [], []
    real = fitting.train_networks_together
    monkeypatch.setattr(fitting, "train_networks_together",
                        lambda nets, *a, **k: trained.append(len(nets)) or real(nets, *a, **k))
    monkeypatch.setattr(wf_mod, "PREFETCH", 3)
    cfg = ModelConfig(lookback=5, **{**MODEL, "hidden_dim": 4})
    walk = WalkForward(cfg, FoldSchedule(5, 60, 10, 80, 1, cfg.validation_split),
                       FitConfig(epochs=1, refit_epochs=None, device="cpu", fold_workers=1),
                       on_fold=lambda rec: seen_at_report.append(sum(trained)))
    res = walk.run(synthetic_closes(150, seed=4))
    assert len(res.folds) == 10
    # Folds are trained 3 at a time, and each window is reported before the next one trains.
    assert seen_at_report == [3, 3, 3, 6, 6, 6, 9, 9, 9, 10]


def test_bad_closes_after_the_requested_bars_do_not_stop_earlier_forecasts():
    """The NaN check reads only the closes the requested bars use: a bad value later fails later."""
    clean = synthetic_closes(150)
    closes = clean.copy()
    closes[140] = np.nan
    got = make_runner().forecast_lines(closes, 0, 130)[:, 0]
    np.testing.assert_array_equal(got, make_runner().forecast_lines(clean, 0, 130)[:, 0])
    assert np.isfinite(got[-10:]).all()
    walk = make_runner()
    walk.forecast_lines(closes, 0, 130)
    with pytest.raises(DataError, match=r"up to bar 149 contain 1 NaN.*the first at bar 140 \(nan\)"):
        walk.forecast_lines(closes, 130, 150)


def test_inference_and_training_seconds_account_for_the_run_separately():
    closes = synthetic_closes(150)
    walk = make_runner(refit_epochs=None)
    started = time.perf_counter()
    walk.forecast_lines(closes, 0, len(closes))
    wall = time.perf_counter() - started
    assert walk.inference_seconds > 0 and walk.training_seconds > 0
    assert walk.inference_seconds + walk.training_seconds <= wall
    before = walk.inference_seconds
    walk._forecast_tail(closes[-6:])  # the event-driven pass counts too
    assert walk.inference_seconds > before


def test_a_negative_close_raises_the_data_error_without_numpy_warnings():
    import warnings

    closes = synthetic_closes(150)
    closes[120] = -1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # log(-1) while building windows must not leak a RuntimeWarning
        with pytest.raises(DataError, match=r"the first at bar 120 \(-1\.0\)"):
            make_runner().forecast_lines(closes, 0, 150)
