"""TradingLSTM / TradingGRU: the chapter's API, causal validation, scale invariance, inputs and checkpoints."""

from __future__ import annotations

import itertools
import math
import os
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from puffin_bt import (
    CheckpointError,
    ConfigError,
    DataError,
    NotFittedError,
    RNNForecaster,
    TradingGRU,
    TradingLSTM,
)

TINY = {"hidden_dim": 4, "num_layers": 1}


def synthetic_prices(n: int = 300, seed: int = 0, start: float = 100.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return start * np.exp(np.cumsum(rng.normal(0.0005, 0.01, n)))


def weights_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


def losses(history: dict) -> dict:
    return {k: history[k] for k in ("train_loss", "val_loss", "best_epoch", "stopped_epoch")}


def hand_split(n_bars: int, lookback: int, validation_split: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """The sample bars (window end bars) of a horizon-1 fit, split chronologically."""
    bars = np.arange(lookback, n_bars - 1)
    n_val = max(1, round(len(bars) * validation_split))
    return bars[:-n_val], bars[-n_val:]


def hand_val_loss(model: RNNForecaster, prices: np.ndarray) -> float:
    """MSE of the fitted net on the clean, chronologically last windows, computed from scratch."""
    lookback = model.config_.lookback
    _, val_bars = hand_split(len(prices), lookback, model.config_.validation_split)
    log_p = np.log(prices)
    scaler = model.scaler_
    x = np.stack([np.diff(log_p[b - lookback:b + 1]) for b in val_bars])
    y = log_p[val_bars + 1] - log_p[val_bars]
    x_t = torch.tensor((x - scaler.mean) / scaler.std, dtype=torch.float32)[..., None]
    with torch.no_grad():
        out = model.model.eval()(x_t)[:, 0].double().numpy()
    return float(np.mean((out - (y - scaler.mean) / scaler.std) ** 2))


@pytest.fixture(scope="module")
def prices() -> np.ndarray:
    return synthetic_prices()


@pytest.fixture(scope="module")
def fitted_gru(prices) -> TradingGRU:
    gru = TradingGRU(**TINY)
    gru.fit(prices, lookback=20, epochs=2, lr=0.001)
    return gru


# --- the chapter's calls ------------------------------------------------------------------


@pytest.mark.parametrize("cls", [TradingGRU, TradingLSTM])
def test_chapter_calls_work_verbatim(cls, prices):
    prices = prices[:80]  # the default 64x2 network is the slowest thing in this file
    forecaster = cls()
    assert forecaster.model is None
    history = forecaster.fit(prices, lookback=20, epochs=2, lr=0.001)
    assert isinstance(forecaster.model, nn.Module)
    assert {"train_loss", "val_loss", "best_epoch", "stopped_epoch", "seconds"} <= set(history)
    assert len(history["train_loss"]) == len(history["val_loss"]) == 2
    assert all(type(v) is float and math.isfinite(v) for v in history["train_loss"] + history["val_loss"])
    assert history["best_epoch"] in (0, 1)
    assert history["seconds"] > 0
    preds = forecaster.predict(prices, steps=5)
    assert preds.shape == (5,)
    assert np.all(np.isfinite(preds)) and np.all(preds > 0)


def test_trading_gru_uses_a_gru_and_trading_lstm_an_lstm(prices):
    gru, lstm = TradingGRU(**TINY), TradingLSTM(**TINY)
    gru.fit(prices, epochs=1)
    lstm.fit(prices, epochs=1)
    assert isinstance(gru.model.rnn, nn.GRU)
    assert isinstance(lstm.model.rnn, nn.LSTM)
    assert type(gru).fit is type(lstm).fit is RNNForecaster.fit


def test_first_predicted_step_does_not_depend_on_steps(fitted_gru, prices):
    assert fitted_gru.predict(prices, steps=5)[0] == fitted_gru.predict(prices, steps=1)[0]


def test_multi_step_forecast_feeds_its_own_predictions_back(fitted_gru, prices):
    two = fitted_gru.predict(prices, steps=2)
    extended = np.append(prices, two[0])
    np.testing.assert_allclose(fitted_gru.predict(extended, steps=1)[0], two[1], rtol=1e-9)


def test_predict_returns_matches_predict_and_is_causal(fitted_gru, prices):
    r = fitted_gru.predict_returns(prices)
    assert np.all(np.isnan(r[:20])) and np.all(np.isfinite(r[20:]))
    bar = 150
    np.testing.assert_allclose(prices[bar] * np.exp(r[bar]), fitted_gru.predict(prices[:bar + 1])[0], rtol=1e-9)
    changed_future = prices.copy()
    changed_future[bar + 1:] *= 1.3
    np.testing.assert_array_equal(fitted_gru.predict_returns(changed_future)[:bar + 1], r[:bar + 1])


# --- every grid hyperparameter reaches the model ------------------------------------------


def test_hidden_dim_and_num_layers_set_the_network_shape(prices):
    small = TradingLSTM(hidden_dim=4, num_layers=1)
    small.fit(prices, epochs=1)
    big = TradingLSTM(hidden_dim=6, num_layers=2)
    big.fit(prices, epochs=1)
    assert (small.model.rnn.hidden_size, small.model.rnn.num_layers) == (4, 1)
    assert (big.model.rnn.hidden_size, big.model.rnn.num_layers) == (6, 2)
    assert small.model.fc.in_features == 4 and big.model.fc.in_features == 6


def test_fit_keyword_overrides_reach_the_network(prices):
    lstm = TradingLSTM(**TINY)
    lstm.fit(prices, epochs=1, hidden_dim=5, num_layers=2, dropout=0.3)
    assert (lstm.model.rnn.hidden_size, lstm.model.rnn.num_layers, lstm.model.dropout.p) == (5, 2, 0.3)


@pytest.mark.parametrize(
    ("changed", "where"),
    [({"dropout": 0.5}, "init"), ({"lr": 0.01}, "fit"), ({"weight_decay": 0.1}, "init"),
     ({"batch_size": 16}, "fit"), ({"seed": 1}, "init")],
)
def test_training_hyperparameters_change_the_fitted_weights(prices, changed, where):
    def fitted(extra_init: dict, extra_fit: dict) -> TradingLSTM:
        lstm = TradingLSTM(**{**TINY, "dropout": 0.0, **extra_init})
        lstm.fit(prices, **{"lookback": 20, "epochs": 2, "lr": 0.001, **extra_fit})
        return lstm

    base = fitted({}, {})
    other = fitted(changed, {}) if where == "init" else fitted({}, changed)
    assert not same_weights(weights_of(base.model), weights_of(other.model))
    assert not np.array_equal(base.predict(prices, steps=3), other.predict(prices, steps=3))


def test_lookback_sets_the_window_length(prices):
    results = {}
    for lookback in (10, 30):
        lstm = TradingLSTM(**TINY)
        history = lstm.fit(prices, lookback=lookback, epochs=1)
        assert lstm.config_.lookback == lookback
        assert not np.isnan(lstm.predict_returns(prices)[lookback])
        assert np.isnan(lstm.predict_returns(prices)[lookback - 1])
        results[lookback] = (history["train_loss"], lstm.predict(prices, steps=3))
    assert results[10][0] != results[30][0]
    assert not np.array_equal(results[10][1], results[30][1])


def test_chapter_grid_has_no_duplicate_grid_points(prices):
    grid = {"hidden_dim": [4, 6], "num_layers": [1, 2], "dropout": [0.1, 0.3], "lr": [0.01, 0.001],
            "lookback": [5, 10]}
    forecasts = set()
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values))
        lstm = TradingLSTM(hidden_dim=params["hidden_dim"], num_layers=params["num_layers"],
                           dropout=params["dropout"])
        lstm.fit(prices[:100], lookback=params["lookback"], epochs=1, lr=params["lr"])
        forecasts.add(float(lstm.predict(prices[:100])[0]))
    assert len(forecasts) == 32


# --- returns, scale invariance, seeds -------------------------------------------------------


def test_prediction_is_scale_invariant(fitted_gru, prices):
    np.testing.assert_allclose(fitted_gru.predict(1.5 * prices, steps=5), 1.5 * fitted_gru.predict(prices, steps=5),
                               rtol=1e-9)


def test_fit_on_scaled_prices_learns_the_same_model(prices):
    a, b = TradingGRU(**TINY), TradingGRU(**TINY)
    hist_a = a.fit(prices, epochs=2)
    hist_b = b.fit(1000.0 * prices, epochs=2)
    np.testing.assert_allclose(hist_a["train_loss"], hist_b["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(b.predict(1000.0 * prices, steps=3), 1000.0 * a.predict(prices, steps=3), rtol=1e-5)


def test_model_trained_on_low_prices_is_unbiased_on_high_prices(prices):
    """The chapter's price-level model predicted 109.6 after a 150-160 window; returns do not care."""
    lstm = TradingLSTM(**TINY)
    lstm.fit(prices, epochs=2)
    high = prices / prices[-1] * 160.0
    next_price = lstm.predict(high, steps=1)[0]
    assert abs(next_price / 160.0 - 1) < 0.05


def test_same_seed_gives_identical_histories_and_predictions(prices):
    a, b = TradingLSTM(**TINY, seed=7), TradingLSTM(**TINY, seed=7)
    hist_a, hist_b = a.fit(prices, epochs=2), b.fit(prices, epochs=2)
    assert losses(hist_a) == losses(hist_b)
    np.testing.assert_array_equal(a.predict(prices, steps=5), b.predict(prices, steps=5))


def test_different_seeds_give_different_fits(prices):
    a, b = TradingLSTM(**TINY, seed=7), TradingLSTM(**TINY, seed=8)
    hist_a, hist_b = a.fit(prices, epochs=2), b.fit(prices, epochs=2)
    assert hist_a["train_loss"] != hist_b["train_loss"]
    assert not np.array_equal(a.predict(prices, steps=5), b.predict(prices, steps=5))


def test_fit_does_not_depend_on_the_global_torch_rng(prices):
    a, b = TradingLSTM(**TINY), TradingLSTM(**TINY)
    torch.manual_seed(1)
    hist_a = a.fit(prices, epochs=1)
    torch.manual_seed(2)
    hist_b = b.fit(prices, epochs=1)
    assert losses(hist_a) == losses(hist_b)
    assert same_weights(weights_of(a.model), weights_of(b.model))


def test_fit_leaves_the_global_torch_rng_alone(prices):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    TradingLSTM(**TINY).fit(prices, epochs=1)
    assert torch.equal(torch.rand(3), expected)


# --- chronological validation -----------------------------------------------------------------


def test_scaler_is_fitted_on_training_returns_only(fitted_gru, prices):
    train_bars, _ = hand_split(len(prices), 20)
    train_returns = np.diff(np.log(prices))[: train_bars[-1]]  # r[1] .. r[last training bar]
    assert fitted_gru.scaler_.mean == pytest.approx(train_returns.mean(), rel=1e-12)
    assert fitted_gru.scaler_.std == pytest.approx(train_returns.std(), rel=1e-12)
    all_returns = np.diff(np.log(prices))
    assert fitted_gru.scaler_.std != pytest.approx(all_returns.std(), rel=1e-6)


def test_perturbing_the_validation_tail_leaves_scaler_and_training_unchanged(prices):
    train_bars, _ = hand_split(len(prices), 20)
    perturbed = prices.copy()
    # bar train_bars[-1] + 1 is the last training target; everything after it is validation only
    first_val_only = train_bars[-1] + 2
    perturbed[first_val_only:] *= np.exp(np.random.default_rng(1).normal(0, 0.05, len(prices) - first_val_only))
    a, b = TradingLSTM(**TINY, patience=None), TradingLSTM(**TINY, patience=None)
    hist_a, hist_b = a.fit(prices, epochs=2), b.fit(perturbed, epochs=2)
    assert a.scaler_ == b.scaler_
    assert hist_a["train_loss"] == hist_b["train_loss"]
    assert same_weights(weights_of(a.model), weights_of(b.model))
    assert hist_a["val_loss"] != hist_b["val_loss"]


def test_perturbing_the_training_head_changes_the_scaler(prices):
    perturbed = prices.copy()
    head = int(0.6 * len(prices))
    perturbed[:head] *= np.exp(np.random.default_rng(2).normal(0, 0.03, head))
    a, b = TradingLSTM(**TINY), TradingLSTM(**TINY)
    a.fit(prices, epochs=1)
    b.fit(perturbed, epochs=1)
    assert a.scaler_.std != b.scaler_.std
    assert a.scaler_.mean != b.scaler_.mean


def test_validation_loss_is_measured_on_the_chronological_tail(prices):
    lstm = TradingLSTM(**TINY, patience=None)
    history = lstm.fit(prices, epochs=1)
    assert history["val_loss"][0] == pytest.approx(hand_val_loss(lstm, prices), rel=1e-5)


def test_noise_augmentation_changes_training_but_not_validation_data(prices):
    clean, noisy = TradingLSTM(**TINY, patience=None), TradingLSTM(**TINY, patience=None, noise_level=0.5)
    hist_clean, hist_noisy = clean.fit(prices, epochs=1), noisy.fit(prices, epochs=1)
    assert hist_clean["train_loss"] != hist_noisy["train_loss"]
    assert not same_weights(weights_of(clean.model), weights_of(noisy.model))
    assert clean.scaler_ == noisy.scaler_
    assert hist_noisy["val_loss"][0] == pytest.approx(hand_val_loss(noisy, prices), rel=1e-5)


def test_early_stopping_in_fit_stops_and_keeps_the_best_epoch(prices):
    lstm = TradingLSTM(**TINY, patience=1)
    history = lstm.fit(prices, epochs=30, lr=0.05)
    assert history["stopped_epoch"] is not None and len(history["val_loss"]) < 30
    assert history["stopped_epoch"] == history["best_epoch"] + 1
    assert hand_val_loss(lstm, prices) == pytest.approx(min(history["val_loss"]), rel=1e-5)


# --- input handling ---------------------------------------------------------------------------


def test_list_array_and_datetime_indexed_series_give_identical_results(prices):
    dates = pd.bdate_range("2010-01-04", periods=len(prices))
    inputs = {
        "list": prices.tolist(),
        "ndarray": prices,
        "series": pd.Series(prices, index=dates),
        "shifted-int-index": pd.Series(prices, index=np.arange(1000, 1000 + len(prices))),
        "column": prices.reshape(-1, 1),
    }
    results = {}
    for name, data in inputs.items():
        lstm = TradingLSTM(**TINY)
        history = lstm.fit(data, epochs=1)
        results[name] = (losses(history), lstm.predict(data, steps=3).tolist(), lstm.predict_returns(data)[-1])
    for name, result in results.items():
        assert result == results["list"], name


@pytest.mark.parametrize(
    ("make_bad", "fragment"),
    [
        (lambda p: np.column_stack([p, p]), "1-D"),
        (lambda p: np.where(np.arange(len(p)) == 50, np.nan, p), "position 50"),
        (lambda p: np.where(np.arange(len(p)) == 60, np.inf, p), "position 60"),
        (lambda p: np.where(np.arange(len(p)) == 70, 0.0, p), "position 70"),
        (lambda p: np.where(np.arange(len(p)) == 80, -p, p), "position 80"),
        (lambda p: ["a"] * len(p), "numeric"),
        (lambda p: pd.Series(p).astype(str).radd("$").tolist(), "numeric"),
        (lambda p: [], "at least"),
    ],
    ids=["2-D", "nan", "inf", "zero", "negative", "strings", "currency-strings", "empty"],
)
def test_bad_prices_raise_data_error(prices, make_bad, fragment):
    with pytest.raises(DataError, match=fragment):
        TradingLSTM(**TINY).fit(make_bad(prices), epochs=1)


def test_too_short_series_names_the_minimum_length():
    # lookback 20 + 1 target bar + 2 training windows + 1 validation window
    with pytest.raises(DataError, match="at least 24"):
        TradingLSTM(**TINY).fit(synthetic_prices(23), lookback=20, epochs=1)
    TradingLSTM(**TINY).fit(synthetic_prices(24), lookback=20, epochs=1)


def test_bad_prices_at_predict_time_raise_data_error(fitted_gru, prices):
    with pytest.raises(DataError, match="NaN"):
        fitted_gru.predict(np.append(prices, np.nan))
    with pytest.raises(DataError, match="at least 21"):
        fitted_gru.predict(prices[:20])


def test_predict_before_fit_raises_not_fitted_error(prices):
    lstm = TradingLSTM()
    for call in (lambda: lstm.predict(prices), lambda: lstm.predict_returns(prices), lambda: lstm.save("x.pt")):
        with pytest.raises(NotFittedError, match="fit"):
            call()


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"lookbak": 20}, "lookbak"),
        ({"lr": 0.0}, "lr"),
        ({"lookback": 0}, "lookback"),
        ({"epochs": 0}, "epochs"),
        ({"dropout": 1.0}, "dropout"),
        ({"validation_split": 1.0}, "validation_split"),
        ({"hidden_dim": 2.5}, "hidden_dim"),
        ({"device": "banana"}, "device"),
    ],
)
def test_bad_fit_arguments_raise_config_error(prices, kwargs, param):
    with pytest.raises(ConfigError, match=param):
        TradingLSTM(**TINY).fit(prices, **kwargs)


def test_multi_step_needs_a_one_bar_horizon(prices):
    lstm = TradingLSTM(**TINY, horizon=2)
    lstm.fit(prices, epochs=1)
    assert lstm.predict(prices, steps=1).shape == (1,)
    with pytest.raises(ConfigError, match="steps"):
        lstm.predict(prices, steps=2)


# --- checkpoints ------------------------------------------------------------------------------


def test_save_load_roundtrip_gives_identical_predictions(fitted_gru, prices, tmp_path):
    path = fitted_gru.save(tmp_path / "models" / "gru.pt")
    for loader in (TradingGRU.load, RNNForecaster.load):
        loaded = loader(path)
        assert type(loaded) is TradingGRU
        np.testing.assert_array_equal(loaded.predict(prices, steps=5), fitted_gru.predict(prices, steps=5))
        np.testing.assert_array_equal(loaded.predict_returns(prices), fitted_gru.predict_returns(prices))
        assert loaded.config_ == fitted_gru.config_
        assert loaded.scaler_ == fitted_gru.scaler_
        assert loaded.history_["train_loss"] == fitted_gru.history_["train_loss"]


def test_save_is_atomic_and_leaves_no_temp_files(fitted_gru, tmp_path):
    path = tmp_path / "gru.pt"
    fitted_gru.save(path)
    fitted_gru.save(path)  # overwrite in place
    assert os.listdir(tmp_path) == ["gru.pt"]


def test_loading_a_gru_checkpoint_as_lstm_raises_checkpoint_error(fitted_gru, tmp_path):
    path = fitted_gru.save(tmp_path / "gru.pt")
    with pytest.raises(CheckpointError, match="GRU"):
        TradingLSTM.load(path)


def test_missing_checkpoint_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        TradingLSTM.load(tmp_path / "nope.pt")


class _Exploit:
    """Unpickling this object would run a shell command that creates a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("writer", ["pickle", "torch.save", "torch.save-in-dict"])
def test_crafted_pickle_payload_is_refused_and_never_executed(tmp_path, writer):
    marker = tmp_path / "pwned"
    payload = _Exploit(str(marker))
    path = tmp_path / "model.pt"
    if writer == "pickle":
        path.write_bytes(pickle.dumps(payload))
    elif writer == "torch.save":
        torch.save(payload, path)
    else:
        torch.save({"state_dict": payload, "meta_json": "{}"}, path)
    with pytest.raises(CheckpointError, match="unpickling"):
        TradingLSTM.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "flip-bytes", "empty", "bad-json"])
def test_corrupted_checkpoint_raises_checkpoint_error(fitted_gru, tmp_path, damage):
    path = fitted_gru.save(tmp_path / "gru.pt")
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "flip-bytes":
        start = len(raw) // 3
        raw[start:start + 64] = bytes(b ^ 0xFF for b in raw[start:start + 64])
    elif damage == "empty":
        raw = bytearray()
    else:
        blob = torch.load(path, weights_only=True)
        torch.save({"state_dict": blob["state_dict"], "meta_json": blob["meta_json"][:-5]}, path)
        raw = bytearray(path.read_bytes())
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError):
        TradingGRU.load(path)


def test_checkpoint_with_mismatched_weights_raises_checkpoint_error(fitted_gru, tmp_path):
    path = fitted_gru.save(tmp_path / "gru.pt")
    bigger = TradingGRU(hidden_dim=6, num_layers=1)
    bigger.fit(synthetic_prices(), epochs=1)
    blob = torch.load(path, weights_only=True)
    torch.save({"state_dict": bigger.model.state_dict(), "meta_json": blob["meta_json"]}, path)
    with pytest.raises(CheckpointError, match="architecture"):
        TradingGRU.load(path)


# --- bugs found while writing these tests, fixed -------------------------------------------


def test_high_validation_split_on_a_short_series_raises_data_error():
    with pytest.raises(DataError):
        TradingLSTM(**TINY).fit(synthetic_prices(24), lookback=20, epochs=1, validation_split=0.9)


@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")
@pytest.mark.parametrize("content", ["bare-tensor", "tensor-as-state-dict"])
def test_torch_file_that_is_not_a_puffin_checkpoint_raises_checkpoint_error(fitted_gru, tmp_path, content):
    path = fitted_gru.save(tmp_path / "gru.pt")
    if content == "bare-tensor":
        torch.save(torch.zeros(3), path)
    else:
        blob = torch.load(path, weights_only=True)
        torch.save({"state_dict": torch.zeros(3), "meta_json": blob["meta_json"]}, path)
    with pytest.raises(CheckpointError):
        TradingGRU.load(path)


def test_fit_patience_none_disables_early_stopping(prices):
    lstm = TradingLSTM(**TINY, patience=1)
    history = lstm.fit(prices, epochs=8, lr=0.05, patience=None)
    assert lstm.config_.patience is None
    assert len(history["val_loss"]) == 8


# --- property: anything positive and finite either forecasts or fails cleanly ------------------


@st.composite
def series_near_the_minimum_length(draw) -> tuple[list[float], int]:
    """A positive finite series and a lookback, with the length mostly just around lookback + a few
    windows, where the split and the length checks have their edge cases."""
    lookback = draw(st.integers(min_value=1, max_value=30))
    length = max(0, lookback + draw(st.integers(min_value=-2, max_value=10)))
    price = st.floats(min_value=0.01, max_value=1e4, allow_nan=False, allow_infinity=False)
    return draw(st.lists(price, min_size=length, max_size=length)), lookback


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=series_near_the_minimum_length(),
    steps=st.integers(min_value=1, max_value=4),
    validation_split=st.sampled_from([0.0, 0.2, 0.5, 0.9]),
)
def test_any_positive_finite_series_forecasts_finite_prices_or_raises_a_clean_error(case, steps, validation_split):
    values, lookback = case
    lstm = TradingLSTM(**TINY, epochs=1)
    try:
        lstm.fit(values, lookback=lookback, validation_split=validation_split)
        preds = lstm.predict(values, steps=steps)
    except (DataError, ConfigError):
        return
    assert preds.shape == (steps,)
    assert np.all(np.isfinite(preds)) and np.all(preds > 0)


# --- more bugs found by the test author, fixed ------------------------------------------------


def test_predict_is_deterministic_even_if_the_model_was_left_in_train_mode(prices):
    lstm = TradingLSTM(**{**TINY, "dropout": 0.5})
    lstm.fit(prices, epochs=1)
    lstm.model.train()
    assert lstm.predict(prices)[0] == lstm.predict(prices)[0]


def test_save_works_when_device_was_given_as_a_torch_device(prices, tmp_path):
    lstm = TradingLSTM(**TINY, device=torch.device("cpu"))
    lstm.fit(prices, epochs=1)
    loaded = TradingLSTM.load(lstm.save(tmp_path / "m.pt"))
    np.testing.assert_allclose(loaded.predict(prices), lstm.predict(prices))


def test_checkpoint_with_a_non_numeric_scaler_is_rejected_at_load(fitted_gru, tmp_path):
    import json

    path = fitted_gru.save(tmp_path / "gru.pt")
    blob = torch.load(path, weights_only=True)
    meta = json.loads(blob["meta_json"])
    meta["scaler"]["std"] = "x"
    torch.save({"state_dict": blob["state_dict"], "meta_json": json.dumps(meta)}, path)
    with pytest.raises(CheckpointError, match="gru.pt"):
        TradingGRU.load(path)


@pytest.mark.parametrize("bad", [["100", "101", "102"], [True, False, True]])
def test_strings_and_booleans_are_not_prices(bad):
    with pytest.raises(DataError, match="must be numeric"):
        TradingLSTM(**TINY).fit(bad * 20)


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_flat_adam_is_torch_adam_bit_for_bit_and_keeps_gradients_in_its_buffer(weight_decay):
    import copy

    from puffin_bt.nets import LSTMNet
    from puffin_bt.training import FlatAdam

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        net = LSTMNet(1, 6, 2, dropout=0.0)
        ref = copy.deepcopy(net)
        x, y = torch.randn(40, 7, 1), torch.randn(40, 1)
        ours = FlatAdam(net.parameters(), lr=0.02, weight_decay=weight_decay)
        theirs = torch.optim.Adam(ref.parameters(), lr=0.02, weight_decay=weight_decay)
        for _ in range(15):
            for model, opt in ((net, ours), (ref, theirs)):
                opt.zero_grad()
                torch.nn.functional.mse_loss(model(x), y).backward()
                opt.step()
        for a, b in zip(net.parameters(), ref.parameters()):
            assert torch.equal(a, b)
            assert a.grad.untyped_storage().data_ptr() == ours.grad.untyped_storage().data_ptr()
    finally:
        torch.set_default_dtype(old)
