"""Uncertainty: seed ensembles trained together and conformal prediction intervals, as indicator lines that
stay causal and agree across engine modes, and the strategy rules that trade on them."""

from __future__ import annotations

import backtrader as bt
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from puffin_bt import ConfigError, LSTMForecast, backtest, fitting, load_sample, walk_forward
from puffin_bt.intervals import conformal_half_width, min_residuals
from puffin_bt.options import ModelConfig
from puffin_bt.schedule import FoldSchedule
from strategies import ForecastThresholdStrategy, interval_target

from .conftest import TINY, assert_same_forecasts, ohlcv_frame, synthetic_closes

LINES = ("pred_return", "pred_std", "pred_lo", "pred_hi")
MODES = {"runonce": dict(runonce=True), "runnext": dict(runonce=False), "unpreloaded": dict(runonce=False,
                                                                                            preload=False)}
UNC = {**TINY, "device": "cpu", "ensemble": 2, "interval": 0.8, "validation_split": 0.25}


class Hold(bt.Strategy):
    params = (("kw", None),)

    def __init__(self):
        self.fc = LSTMForecast(self.data, **self.p.kw)


def run_lines(frame, mode: str, **kw) -> np.ndarray:
    cerebro = bt.Cerebro(stdstats=False, **MODES[mode])
    cerebro.adddata(bt.feeds.PandasData(dataname=frame))
    cerebro.addstrategy(Hold, kw={**UNC, **kw})
    fc = cerebro.run()[0].fc
    return np.array([np.asarray(getattr(fc, line).array[: len(frame)]) for line in LINES])


def test_one_model_is_the_default_and_its_spread_is_nan():
    closes = synthetic_closes(200)
    plain = walk_forward(closes, **{**TINY, "device": "cpu"})
    one = walk_forward(closes, ensemble=1, **{**TINY, "device": "cpu"})
    np.testing.assert_array_equal(plain.pred_log_return, one.pred_log_return)
    assert np.isnan(one.pred_std).all() and np.isnan(one.pred_lo).all()


def test_k_members_in_one_batch_equal_each_member_trained_alone():
    cfg = ModelConfig(hidden_dim=8, num_layers=2, lookback=5, ensemble=3, dropout=0.2, patience=2)
    schedule = FoldSchedule(lookback=5, min_train=60, retrain_every=40, train_window=80)
    history = synthetic_closes(120)
    (k, nets, _, hists, _, _), = fitting.train_cold_batch(cfg, schedule, 3, torch.device("cpu"), [(1, history, None)])
    alone_cfg = ModelConfig(**{**cfg.to_dict(), "ensemble": 1})
    data = fitting.fold_data(cfg, history, schedule.sample_bars(len(history) - 1), torch.device("cpu"))
    states = []
    for m, net in enumerate(nets):
        alone = fitting.new_fold_net(alone_cfg, 1, m)
        fitting.train_networks_together([alone], alone_cfg, [data], 3, torch.device("cpu"),
                                        [fitting.member_seed(cfg.seed + 1, m)])
        for a, b in zip(net.state_dict().values(), alone.state_dict().values()):
            assert torch.equal(a, b)
        states.append(torch.cat([p.flatten() for p in net.parameters()]))
    assert not torch.equal(states[0], states[1])  # distinct initial weights, orders and masks: distinct members


@pytest.mark.parametrize("method", ["split", "aci"])
def test_lines_agree_in_every_engine_mode_and_the_interval_holds_the_forecast(method):
    frame = ohlcv_frame(synthetic_closes(230, seed=4))
    base = run_lines(frame, "runonce", interval_method=method)
    lo, ret, hi = base[2], base[0], base[3]
    ok = np.isfinite(ret)
    assert ok.sum() == len(frame) - 59 and np.isnan(base[:, :59]).all()
    assert np.all(lo[ok] <= ret[ok]) and np.all(ret[ok] <= hi[ok]) and np.all(base[1][ok] > 0)
    for mode in ("runnext", "unpreloaded"):
        other = run_lines(frame, mode, interval_method=method)
        for j, line in enumerate(LINES):
            assert_same_forecasts(other[j], base[j], min_finite=len(frame) - 59, atol=1e-8, err_msg=f"{mode} {line}")


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=62, max_value=200), method=st.sampled_from(["split", "aci"]),
       seed=st.integers(0, 10_000))
@example(cut=99, method="aci", seed=1)  # a fold bar, the adaptive level mid-flight
def test_no_line_at_or_before_bar_t_moves_when_later_bars_change(cut, method, seed):
    closes = synthetic_closes(210, seed=2)
    changed = closes.copy()
    changed[cut + 1:] *= np.exp(np.random.default_rng(seed).normal(0, 0.2, len(closes) - cut - 1))
    for mode in MODES:
        base = run_lines(ohlcv_frame(closes), mode, interval_method=method)
        other = run_lines(ohlcv_frame(changed), mode, interval_method=method)
        for j, line in enumerate(LINES):
            assert_same_forecasts(other[j][: cut + 1], base[j][: cut + 1], min_finite=cut + 1 - 59,
                                  err_msg=f"{mode} {line}")


@pytest.mark.parametrize("method", ["split", "aci"])
def test_coverage_of_a_series_with_known_noise_is_close_to_nominal(method):
    rng = np.random.default_rng(7)
    closes = 100 * np.exp(np.cumsum(rng.normal(0.0002, 0.01, 1400)))
    res = walk_forward(closes, lookback=10, min_train=250, retrain_every=50, train_window=250, hidden_dim=8,
                       num_layers=1, epochs=2, device="cpu", interval=0.8, interval_method=method)
    realized = np.full(len(closes), np.nan)
    realized[:-1] = closes[1:] / closes[:-1] - 1
    ok = np.isfinite(res.pred_lo) & np.isfinite(realized)
    coverage = np.mean((realized[ok] >= res.pred_lo[ok]) & (realized[ok] <= res.pred_hi[ok]))
    assert ok.sum() > 1000 and abs(coverage - 0.8) < 0.04, coverage


def test_the_split_conformal_half_width_uses_the_finite_sample_rank():
    scores = np.arange(1.0, 10.0)  # 9 residual magnitudes
    assert conformal_half_width(scores, 0.8) == 8.0  # ceil(10 * 0.8) = 8th smallest
    assert min_residuals(0.8) == 4 and min_residuals(0.95) == 19
    with pytest.raises(ConfigError, match="at least 19 validation residuals"):
        conformal_half_width(scores, 0.95)


class PlannedLines(bt.Indicator):
    """Planned forecast lines per data name (pred_return and an interval around it)."""

    lines = ("pred_return", "pred_price", "pred_std", "pred_lo", "pred_hi")
    params = (("plan", None),)

    def __init__(self):
        self.addminperiod(1)

    def next(self):
        ret, lo, hi = self.p.plan[len(self) - 1]
        self.lines.pred_return[0], self.lines.pred_lo[0], self.lines.pred_hi[0] = ret, lo, hi
        self.lines.pred_price[0] = self.data.close[0] * (1 + ret)


def test_the_interval_rule_never_enters_unless_the_interval_clears_the_threshold():
    n = 160
    rng = np.random.default_rng(3)
    ret = rng.normal(0.006, 0.004, n)  # usually above the +0.5% entry threshold
    ret[::15] = -0.03  # and an interval wholly below -exit every 15 bars: the position closes
    lo = ret - rng.uniform(0.0, 0.01, n)  # the interval clears the entry only sometimes
    plan = np.column_stack([ret, lo, ret + 0.01])
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=ohlcv_frame(synthetic_closes(n))), name="X")
    cerebro.addstrategy(ForecastThresholdStrategy, model=PlannedLines, forecast_kwargs={"plan": plan},
                        rule="interval", plot_forecast=False)
    strat = cerebro.run()[0]
    entries = [t["entry_date"] for t in strat.trade_log]
    dates = list(ohlcv_frame(synthetic_closes(n)).index)
    assert entries, "the rule must trade at least once for the property to mean anything"
    for entry in entries:  # signal on the bar before the fill
        signal = dates.index(entry) - 1
        assert lo[signal] > 0.005
    assert interval_target(0.004, 0.03, 0, 0.005, 0.005, False, 1.0) == 0.0


def test_bad_uncertainty_options_are_clear_errors():
    closes = synthetic_closes(200)
    for bad, match in ((dict(ensemble=0), "ensemble=0"), (dict(ensemble=10_000), "ensemble=10000"),
                       (dict(interval=1.0), "interval=1.0"), (dict(interval=0.0), "interval=0.0"),
                       (dict(interval=0.8, validation_split=0.0), "validation_split=0"),
                       (dict(interval=0.99), "at least 99 validation residuals")):
        with pytest.raises(ConfigError, match=match):
            walk_forward(closes, **{**TINY, "device": "cpu", **bad})
    frames = {t: df.iloc[-300:] for t, df in load_sample(["IBM", "MSFT"]).items()}
    with pytest.raises(ConfigError, match="rule='interval'.*interval"):
        backtest(frames, rule="interval", store=False, **TINY)
    with pytest.raises(ConfigError, match="at least 99 validation residuals per fold; the global fold"):
        backtest(frames, scope="global", ensemble=2, interval=0.99, store=False, **TINY)


def test_backtest_with_intervals_stores_the_lines_and_trades_on_them(tmp_path):
    frames = {t: df.iloc[-400:] for t, df in load_sample(["IBM", "MSFT"]).items()}
    kw = dict(UNC, entry=0.0, exit=0.0, rule="interval", sizing="confidence")
    from puffin_bt import ForecastStore

    store = ForecastStore(tmp_path)
    first = backtest(frames, store=store, **kw)
    again = backtest(frames, store=store, **kw)
    assert len(list(store.root.glob("*.npz"))) == 2  # one entry per ticker, computed once, read back
    assert {"pred_std", "pred_lo", "pred_hi"} <= set(first.forecasts.columns)
    assert first.forecasts[["pred_lo", "pred_hi"]].notna().sum().min() > 500
    np.testing.assert_array_equal(first.forecasts["pred_hi"].to_numpy(), again.forecasts["pred_hi"].to_numpy())
    assert first.config["forecast"]["interval"] == 0.8 and first.config["rule"] == "interval"
