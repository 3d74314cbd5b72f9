"""Input features: the built-in features' arithmetic and causality, models that learn from features,
causality with features in every engine mode, and the errors bad features get."""

from __future__ import annotations

import itertools
import subprocess
import sys

import backtrader as bt
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from puffin_bt import ConfigError, DataError, ForecastStore, GRUForecast, LSTMForecast, TradingGRU, TradingLSTM, walk_forward
from puffin_bt.adapters.feeds import FrameData
from puffin_bt.features import FEATURES, feature_lag, frame_features, parse_features
from puffin_bt.walkforward import make_walk_forward

from .conftest import TINY, assert_same_forecasts, ohlcv_frame, synthetic_closes

ALL = ("volume", "range", "gap", "rsi:5", "sma_ratio:4", "volatility:6", "returns:3")


def bars(n: int = 120, seed: int = 0) -> pd.DataFrame:
    frame = ohlcv_frame(synthetic_closes(n, seed=seed))
    rng = np.random.default_rng(seed)
    frame["open"] *= rng.uniform(0.99, 1.01, n)  # gaps
    frame["high"] = np.maximum(frame["high"], frame["open"])
    frame["low"] = np.minimum(frame["low"], frame["open"])
    frame["volume"] = rng.integers(0, 5000, n).astype(float)  # zeros included
    return frame


# --------------------------------------------------------------------------- the built-in features


def test_every_built_in_feature_is_tested_here():
    assert {spec.split(":")[0] for spec in ALL} == set(FEATURES)


def test_features_match_their_definitions_computed_by_hand():
    f = bars()
    o, h, lo, c, v = (f[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    got = frame_features(ALL, f)
    log_r = np.log(c / np.roll(c, 1))
    t = 50  # one bar, each definition written out
    gains = sum(max(c[i] - c[i - 1], 0) for i in range(t - 4, t + 1))
    losses = sum(max(c[i - 1] - c[i], 0) for i in range(t - 4, t + 1))
    expected = [
        np.log((v[t] + 1) / (v[t - 1] + 1)),
        (h[t] - lo[t]) / c[t],
        o[t] / c[t - 1] - 1,
        gains / (gains + losses) - 0.5,
        c[t] / np.mean(c[t - 3: t + 1]) - 1,
        np.std(log_r[t - 5: t + 1]),
        np.log(c[t] / c[t - 3]),
    ]
    np.testing.assert_allclose(got[t], expected, rtol=1e-12)
    # NaN exactly for the bars before each feature's first value (its lag)
    for j, spec in enumerate(ALL):
        lag = feature_lag(spec)
        assert np.isnan(got[:lag, j]).all() and np.isfinite(got[lag:, j]).all(), spec


@settings(max_examples=15, deadline=None)
@given(cut=st.integers(10, 110), seed=st.integers(0, 1000))
def test_a_feature_at_bar_t_ignores_every_later_bar(cut, seed):
    f = bars(seed=seed % 5)
    changed = f.copy()
    rng = np.random.default_rng(seed)
    changed.iloc[cut + 1:] *= rng.uniform(0.5, 2.0, (len(f) - cut - 1, 1))
    a, b = frame_features(ALL, f), frame_features(ALL, changed)
    np.testing.assert_array_equal(a[: cut + 1], b[: cut + 1])


def test_the_last_bars_computed_on_a_short_tail_equal_the_full_series_bit_for_bit():
    """What an event-driven run computes (features on the last lookback + lag bars) is what a
    preloaded run computes on the whole series."""
    f = bars(300, seed=3)
    full = frame_features(ALL, f)
    lag = max(feature_lag(s) for s in ALL)
    for end in (40, 177, 300):
        for lookback in (1, 7):
            tail = frame_features(ALL, f.iloc[max(0, end - lookback - lag): end])[-lookback:]
            assert tail.tobytes() == full[end - lookback: end].tobytes()


@pytest.mark.parametrize("spec, message", [
    ("rsi:abc", "whole number"), ("rsi:0", "between"), ("rsi", "whole number"), ("volume:3", "no period"),
    ("momentum:3", "not known"), ("volatility:1", "between 2"), (["range", "range"], "twice"), (3, "not a list"),
])
def test_bad_feature_specs_are_config_errors_naming_the_spec(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_features(spec)


def test_cli_bad_feature_is_one_line_and_exit_2():
    proc = subprocess.run([sys.executable, "-m", "puffin_bt.cli", "backtest", "--features", "volume,rsi:abc",
                           "--sample", "IBM"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "rsi:abc" in proc.stderr
    help_text = subprocess.run([sys.executable, "-m", "puffin_bt.cli", "backtest", "--help"], capture_output=True,
                               text=True).stdout
    assert "--features" in help_text and "sma_ratio:N" in help_text


# --------------------------------------------------------------------------- models use features


def planted(n: int = 600, seed: int = 0):
    """Closes whose next return follows a feature's sign; the closes alone do not carry it."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(0, 1, n)
    returns = np.zeros(n)
    returns[1:] = 0.01 * np.sign(signal[:-1]) + rng.normal(0, 0.004, n - 1)
    return 100 * np.exp(np.cumsum(returns)), signal


def direction_accuracy(pred_log: np.ndarray, closes: np.ndarray) -> tuple[float, int]:
    realized = np.full(len(closes), np.nan)
    realized[:-1] = np.diff(np.log(closes))
    ok = np.isfinite(pred_log) & np.isfinite(realized)
    return float(np.mean(np.sign(pred_log[ok]) == np.sign(realized[ok]))), int(ok.sum())


PLANTED = dict(lookback=10, min_train=300, retrain_every=100, train_window=300, hidden_dim=16, num_layers=1,
               epochs=20, refit_epochs=5, device="cpu", patience=None, dropout=0.0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_walk_forward_learns_a_planted_feature_and_is_at_chance_without_it(cell):
    closes, signal = planted()
    with_feature, n = direction_accuracy(walk_forward(closes, cell=cell, inputs=signal, **PLANTED).pred_log_return,
                                         closes)
    without, _ = direction_accuracy(walk_forward(closes, cell=cell, **PLANTED).pred_log_return, closes)
    assert n >= 250
    assert with_feature >= 0.8, with_feature
    assert 0.4 <= without <= 0.6, without


def test_the_estimator_learns_a_planted_feature_and_round_trips_it_through_a_file(tmp_path):
    closes, signal = planted()
    features = pd.DataFrame({"signal": signal})
    model = TradingGRU(hidden_dim=16, num_layers=1, dropout=0.0)
    model.fit(closes[:450], features=features.iloc[:450], epochs=30, lookback=10)
    assert model.config_.features == ("signal",)
    pred = model.predict_returns(closes, features=features)
    accuracy, n = direction_accuracy(np.where(np.arange(len(closes)) >= 450, pred, np.nan), closes)
    assert n >= 140 and accuracy >= 0.8
    loaded = TradingGRU.load(model.save(tmp_path / "gru.pt"))
    np.testing.assert_array_equal(loaded.predict_returns(closes, features=features), pred)
    one = model.predict(closes[:500], features=features.iloc[:500])
    assert one.shape == (1,) and np.isclose(one[0], closes[499] * np.exp(pred[499]))
    with pytest.raises(ConfigError, match="steps=2 with features"):
        model.predict(closes[:500], steps=2, features=features.iloc[:500])
    with pytest.raises(ConfigError, match="fitted with features"):
        model.predict(closes)
    with pytest.raises(DataError, match="2 column"):
        model.predict(closes, features=np.column_stack([signal, signal]))


@pytest.mark.parametrize("bad, message", [
    (lambda s: np.full_like(s, 3.0), "constant"),
    (lambda s: np.full_like(s, np.nan), "all NaN"),
    (lambda s: np.where(np.arange(len(s)) == 77, np.inf, s), "infinite at bar 77"),
    (lambda s: s[:-5], "one row per price bar"),
    (lambda s: np.array(["x"] * len(s), dtype=object), "numeric"),
])
def test_unusable_feature_values_are_data_errors_naming_the_feature(bad, message):
    closes, signal = planted(400)
    with pytest.raises(DataError, match=message):
        TradingLSTM(hidden_dim=4, num_layers=1).fit(closes, features=pd.DataFrame({"sig": bad(signal)}), epochs=1)
    with pytest.raises(DataError, match=message):
        walk_forward(closes, inputs=pd.Series(bad(signal), name="sig"), **{**PLANTED, "epochs": 1})


def test_a_feature_whose_warm_up_eats_the_first_fold_names_the_feature():
    with pytest.raises(DataError, match=r"'sma_ratio:90' \(no value up to bar 59\).*raise min_train"):
        walk_forward(bars(200), features=("sma_ratio:90",), **{**TINY, "device": "cpu"})


def test_a_gap_inside_a_forecast_window_names_the_feature_and_the_bar():
    closes, signal = planted(400)
    signal = signal.copy()
    signal[350] = np.nan
    with pytest.raises(DataError, match=r"\['gap'\].* bar 350"):
        walk_forward(closes, inputs=pd.DataFrame({"gap": signal}), **{**PLANTED, "epochs": 1})


def test_built_in_features_need_the_bars_not_only_closes():
    with pytest.raises(ConfigError, match="OHLCV DataFrame"):
        walk_forward(synthetic_closes(200), features=("volume",), **TINY)


# --------------------------------------------------------------------------- in Backtrader, every mode

MODES = {"runonce": dict(runonce=True), "runnext": dict(runonce=False), "unpreloaded": dict(runonce=False,
                                                                                            preload=False)}


class WithFeatures(bt.Strategy):
    """A forecast on the data's own volume line and an RSI of it, plus built-in features."""

    params = (("kw", None), ("cell", "lstm"))

    def __init__(self):
        rsi = bt.ind.RSI(self.data, period=7)
        indicator = GRUForecast if self.p.cell == "gru" else LSTMForecast
        self.fc = indicator(self.data, rsi, self.data.volume, **self.p.kw)


def run_with_features(frame, mode, feed=bt.feeds.PandasData, cell="lstm", **kw):
    cerebro = bt.Cerebro(stdstats=False, **MODES[mode])
    cerebro.adddata(feed(dataname=frame))
    cerebro.addstrategy(WithFeatures, kw={**TINY, "device": "cpu", "features": ("range", "rsi:5"), **kw}, cell=cell)
    strat = cerebro.run()[0]
    return np.asarray(strat.fc.pred_return.array[: len(frame)]), strat.fc


def test_the_indicator_names_its_inputs_and_runonce_equals_runnext():
    frame = bars(220, seed=1)
    base, fc = run_with_features(frame, "runonce")
    assert fc.config.features == ("range", "rsi:5", "RSI(period=7)", "PandasData.volume")
    assert fc.config.n_inputs == 5
    for mode in ("runnext", "unpreloaded"):
        other, _ = run_with_features(frame, mode)
        assert_same_forecasts(other, base, min_finite=len(frame) - TINY["min_train"] + 1, err_msg=mode)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=62, max_value=200), seed=st.integers(0, 10_000))
@example(cut=99, seed=1)  # t = a fold bar
def test_forecasts_with_features_up_to_bar_t_ignore_later_bars_in_every_engine_mode(cut, seed):
    frame = bars(210, seed=2)
    changed = frame.copy()
    # every column after t: the closes, so every feature (built-in, RSI, volume) changes too
    changed.iloc[cut + 1:] *= np.random.default_rng(seed).uniform(0.6, 1.6, (len(frame) - cut - 1, 1))
    changed["volume"] = np.where(np.arange(len(frame)) > cut, changed["volume"] * 3 + 17, changed["volume"])
    for mode, feed, refit in itertools.product(MODES, (bt.feeds.PandasData, FrameData), (1, None)):
        base, _ = run_with_features(frame, mode, feed=feed, refit_epochs=refit)
        other, _ = run_with_features(changed, mode, feed=feed, refit_epochs=refit)
        assert_same_forecasts(other[: cut + 1], base[: cut + 1], min_finite=cut + 2 - TINY["min_train"],
                              err_msg=f"mode={mode} feed={feed.__name__} refit_epochs={refit}")


def test_gru_horizon_and_cold_refits_work_with_features():
    frame = bars(230, seed=4)
    res = walk_forward(frame, cell="gru", features=("gap", "volatility:5"), horizon=3, refit_epochs=None,
                       **{k: v for k, v in TINY.items() if k != "refit_epochs"}, device="cpu")
    assert np.isfinite(res.pred_log_return[59:]).all() and np.isnan(res.pred_log_return[:59]).all()
    pooled = walk_forward(frame, cell="gru", features=("gap", "volatility:5"), horizon=3, refit_epochs=None,
                          fold_workers=2, **{k: v for k, v in TINY.items() if k != "refit_epochs"}, device="cpu")
    np.testing.assert_array_equal(pooled.pred_log_return, res.pred_log_return)


def test_the_store_key_covers_feature_values_and_names(tmp_path):
    from puffin_bt.dates import date_numbers_of
    from puffin_bt.store import fingerprint

    frame = bars(200)
    walk = make_walk_forward("lstm", features=("volume",), **TINY)
    closes, numbers = frame["close"].to_numpy(), date_numbers_of(frame.index)
    values = frame_features(("volume",), frame)
    key = fingerprint(walk, closes, numbers, values)
    assert key == fingerprint(make_walk_forward("lstm", features=("volume",), **TINY), closes, numbers, values)
    assert key != fingerprint(walk, closes, numbers, values * 1.0001)
    other = make_walk_forward("lstm", features=("range",), **TINY)
    assert key != fingerprint(other, closes, numbers, frame_features(("range",), frame))
    store = ForecastStore(tmp_path)
    first = store.forecasts(walk, closes, None, numbers, values)
    again = store.forecasts(make_walk_forward("lstm", features=("volume",), **TINY), closes, None, numbers, values)
    assert store.hits == 1 and store.misses == 1 and np.array_equal(first, again, equal_nan=True)


def test_backtest_with_features_in_the_ticker_pool_equals_one_process_and_replays(tmp_path):
    from puffin_bt import backtest, load_sample

    frames = {t: df.iloc[-400:] for t, df in load_sample(["IBM", "MSFT"]).items()}
    kw = dict(TINY, features=("volume", "rsi:14"), store=False, device="cpu")
    pooled = backtest(frames, workers=2, **kw)
    serial = backtest(frames, workers=1, **kw)
    assert_same_forecasts(pooled.forecasts["pred_return"], serial.forecasts["pred_return"], min_finite=600, atol=0)
    assert pooled.config["forecast"]["features"] == ("volume", "rsi:14")
    assert list(pooled.folds.ticker.unique()) == ["IBM", "MSFT"]
