"""The forecast indicators inside real Cerebros: causality in every engine mode, once == next."""

from __future__ import annotations

import itertools
import math

import backtrader as bt
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from puffin_bt import ConfigError
from puffin_bt.adapters.feeds import FrameData
from puffin_bt.adapters.indicators import GRUForecast, LSTMForecast
from puffin_bt.walkforward import walk_forward
from strategies import ForecastThresholdStrategy

from .conftest import TINY, assert_same_forecasts, ohlcv_frame, regime_closes, synthetic_closes

MODES = {
    "runonce": dict(runonce=True, preload=True),
    "runnext": dict(runonce=False, preload=True),
    "no-preload": dict(runonce=False, preload=False),
}


class Recorder(bt.Strategy):
    """Records the forecast the strategy sees at every bar, as a live strategy would."""

    params = (("indicator", LSTMForecast), ("kwargs", None))

    def __init__(self):
        self.fc = self.p.indicator(self.data, **(self.p.kwargs or {}))
        self.seen = []

    def prenext(self):
        self.seen.append(math.nan)

    def next(self):
        self.seen.append(self.fc.pred_return[0])


def run_recorder(frame, mode, indicator=LSTMForecast, feed=bt.feeds.PandasData, **kwargs):
    cerebro = bt.Cerebro(stdstats=False, **MODES[mode])
    cerebro.adddata(feed(dataname=frame))
    cerebro.addstrategy(Recorder, indicator=indicator, kwargs={**TINY, "device": "cpu", **kwargs})
    strat = cerebro.run()[0]
    return np.array(strat.seen), strat.fc


@pytest.mark.parametrize("mode", list(MODES))
def test_indicator_matches_the_engine_free_walk_forward(mode):
    closes = synthetic_closes(220, seed=1)
    seen, fc = run_recorder(ohlcv_frame(closes), mode)
    expected = walk_forward(closes, cell="lstm", device="cpu", **{k: v for k, v in TINY.items()}).pred_return
    assert len(seen) == len(closes)
    assert_same_forecasts(seen, expected, min_finite=len(closes) - TINY["min_train"] + 1)
    assert [f.bar for f in fc.folds] == [59, 99, 139, 179, 219]
    assert fc.folds[0].date is not None and str(fc.folds[0].date)[:10] == str(ohlcv_frame(closes).index[59].date())


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=62, max_value=200), truncate=st.booleans(), seed=st.integers(0, 10_000))
@example(cut=99, truncate=False, seed=1)  # t = a fold bar (59, 99, 139, 179): a fold that read one bar
@example(cut=140, truncate=True, seed=2)  # past its own is caught only near one, so always try there
def test_forecasts_up_to_bar_t_ignore_later_bars_in_every_engine_mode(cut, truncate, seed):
    closes = synthetic_closes(210, seed=2)
    changed = closes[: cut + 1].copy() if truncate else closes.copy()
    if not truncate:
        changed[cut + 1:] *= np.exp(np.random.default_rng(seed).normal(0, 0.2, len(closes) - cut - 1))
    # Both feeds (FrameData steps preloaded bars on its own path) and both refit kinds (cold folds
    # of a preloaded series train together from the first call, with windows built at once).
    for mode, feed, refit in itertools.product(MODES, (bt.feeds.PandasData, FrameData), (1, None)):
        base, _ = run_recorder(ohlcv_frame(closes), mode, feed=feed, refit_epochs=refit)
        other, _ = run_recorder(ohlcv_frame(changed), mode, feed=feed, refit_epochs=refit)
        assert_same_forecasts(other[: cut + 1], base[: cut + 1], min_finite=cut + 2 - TINY["min_train"],
                              err_msg=f"mode={mode} feed={feed.__name__} refit_epochs={refit}")


def test_pred_price_is_close_times_one_plus_pred_return():
    closes = synthetic_closes(150, seed=4)
    _, fc = run_recorder(ohlcv_frame(closes), "runonce", indicator=GRUForecast)
    ret = np.array(fc.pred_return.array[:150])
    price = np.array(fc.pred_price.array[:150])
    np.testing.assert_allclose(price[59:], closes[59:] * (1 + ret[59:]))
    assert np.isnan(ret[:59]).all()


def _threshold_run(frames, mode, **strategy_kwargs):
    cerebro = bt.Cerebro(**MODES[mode])
    for name, frame in frames.items():
        cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=name)
    cerebro.broker.setcash(100_000)
    cerebro.addstrategy(ForecastThresholdStrategy, forecast_kwargs={**TINY, "device": "cpu"}, **strategy_kwargs)
    return cerebro.run()[0], cerebro


def test_runonce_and_event_driven_modes_make_the_same_trades():
    frames = {"A": ohlcv_frame(regime_closes(seed=7)),
              "B": ohlcv_frame(regime_closes(((90, -0.004), (90, 0.004), (80, -0.004)), seed=8))}
    results = {mode: _threshold_run(frames, mode, entry=0.001, exit=0.001) for mode in MODES}
    logs = {mode: [(t["ticker"], t["entry_date"], t["exit_date"], round(t["pnl"], 6)) for t in s.trade_log]
            for mode, (s, _) in results.items()}
    assert logs["runonce"], "the thresholds were chosen low enough to trade; no trades means the test is void"
    assert logs["runonce"] == logs["runnext"] == logs["no-preload"]
    values = {mode: c.broker.getvalue() for mode, (_, c) in results.items()}
    assert values["runonce"] == pytest.approx(values["runnext"]) == pytest.approx(values["no-preload"])


def test_indicator_rejects_bad_parameters_with_a_named_config_error():
    closes = synthetic_closes(120)
    with pytest.raises(ConfigError, match="retrain_every=0"):
        run_recorder(ohlcv_frame(closes), "runonce", retrain_every=0)
    with pytest.raises(ConfigError, match="lookback"):
        run_recorder(ohlcv_frame(closes), "runonce", lookback=-3)


def test_runonce_trains_the_first_cold_fold_with_the_others(monkeypatch):
    """Backtrader's oncestart asks for the first forecast bar alone; the indicator still trains
    every cold fold of the preloaded series together (fold 0 is not a batch of one)."""
    from puffin_bt import fitting

    sizes = []
    real = fitting.train_networks_together
    monkeypatch.setattr(fitting, "train_networks_together",
                        lambda nets, *a, **k: sizes.append(len(nets)) or real(nets, *a, **k))
    closes = synthetic_closes(200, seed=9)
    kw = dict(refit_epochs=None, train_window=60, retrain_every=20, fold_workers=1)  # 8 folds of one shape
    seen, fc = run_recorder(ohlcv_frame(closes), "runonce", **kw)
    assert len(fc.folds) == 8 and sizes == [8]
    expected = walk_forward(closes, cell="lstm", device="cpu", **{**TINY, **kw}).pred_return
    assert_same_forecasts(seen, expected, min_finite=len(closes) - TINY["min_train"] + 1)
