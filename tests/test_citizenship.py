"""The forecast indicators in the Cerebros Backtrader users build: feeds that do not tick together (other
calendars, weekly resampling, other times of day, live feeds, replay), other indicators' lines as inputs."""

from __future__ import annotations

import math
import queue

import backtrader as bt
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from puffin_bt import DataError
from puffin_bt.adapters.feeds import QueueData
from puffin_bt.adapters.indicators import GRUForecast, LSTMForecast
from puffin_bt.walkforward import walk_forward
from strategies import ForecastThresholdStrategy

from .conftest import TINY, assert_same_forecasts, ohlcv_frame, regime_closes, synthetic_closes

MODES = {
    "runonce": dict(runonce=True, preload=True),
    "runnext": dict(runonce=False, preload=True),
    "no-preload": dict(runonce=False, preload=False),
}
KWARGS = {**TINY, "device": "cpu"}
WEEKLY = {**KWARGS, "min_train": 30, "retrain_every": 15}  # ~85 weekly bars from 420 days


class Forecasts(bt.Strategy):
    """One forecast indicator per data; records what the strategy sees on every tick."""

    params = (("kwargs", None), ("indicator", LSTMForecast))

    def __init__(self):
        self.fcs = [self.p.indicator(data, **(self.p.kwargs or KWARGS)) for data in self.datas]
        self.ticks = []

    def prenext(self):
        self.next()

    def next(self):
        self.ticks.append([(len(fc), fc.pred_return[0] if len(fc) else math.nan) for fc in self.fcs])


def run(feeds, mode="runnext", strategy=Forecasts, **kwargs):
    """Run ``feeds`` (callables adding one feed each to a Cerebro) with ``strategy``; the strategy."""
    cerebro = bt.Cerebro(stdstats=False, **MODES[mode])
    for add in feeds:
        add(cerebro)
    cerebro.addstrategy(strategy, **kwargs)
    return cerebro.run()[0]


def frame_feed(frame, name=None):
    return lambda cerebro: cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=name)


def lines_of(fc) -> np.ndarray:
    return np.array(fc.pred_return.array[: len(fc)], dtype=float)


def alone(frame, kwargs=KWARGS) -> np.ndarray:
    """The forecasts of one feed in a single-feed runonce Cerebro: the reference."""
    return lines_of(run([frame_feed(frame)], "runonce", kwargs=kwargs).fcs[0])


def gapped(frame, bars) -> pd.DataFrame:
    return frame.drop(frame.index[list(bars)])


# Fold bars of TINY: 59, 99, 139, 179. A missing date right after one is where the repeated tick used to
# retrain the fold; the other patterns miss dates before the first fold, inside a fold's span, and in runs.
GAPS = {
    "after a fold bar": ((60,), ()),
    "after every fold bar": ((60, 100, 140), ()),
    "both feeds, apart": ((10, 61, 62, 120), (30, 100, 101, 170)),
    "a run of holidays": (tuple(range(95, 104)), (5,)),
}


@pytest.mark.parametrize("mode", ["runnext", "no-preload", "runonce"])
@pytest.mark.parametrize("gaps", list(GAPS))
def test_feeds_on_different_calendars_forecast_as_each_feed_alone(mode, gaps):
    gaps_a, gaps_b = GAPS[gaps]
    a = gapped(ohlcv_frame(synthetic_closes(200, seed=1)), gaps_a)
    b = gapped(ohlcv_frame(synthetic_closes(200, seed=2)), gaps_b)
    strat = run([frame_feed(a), frame_feed(b)], mode)
    for fc, frame in zip(strat.fcs, (a, b)):
        expected = alone(frame)
        assert_same_forecasts(lines_of(fc), expected, min_finite=len(frame) - TINY["min_train"] + 1,
                              err_msg=f"{gaps} {mode}")
        assert [f.bar for f in fc.folds] == [59, 99, 139, 179][: len(fc.folds)] and len(fc.folds) >= 3


def _weekly(cerebro, frame):
    cerebro.resampledata(bt.feeds.PandasData(dataname=frame), timeframe=bt.TimeFrame.Weeks)


@pytest.mark.parametrize("mode", list(MODES))
def test_daily_and_its_weekly_resample_forecast_as_each_alone(mode):
    daily = ohlcv_frame(synthetic_closes(420, seed=3))
    strat = run([frame_feed(daily), lambda c: _weekly(c, daily)], mode, kwargs=WEEKLY)
    weekly_alone = lines_of(run([lambda c: _weekly(c, daily)], "runonce", kwargs=WEEKLY).fcs[0])
    assert_same_forecasts(lines_of(strat.fcs[0]), alone(daily, WEEKLY), min_finite=300, err_msg=mode)
    assert_same_forecasts(lines_of(strat.fcs[1]), weekly_alone, min_finite=40, err_msg=mode)


@pytest.mark.parametrize("mode", list(MODES))
def test_feeds_stamped_at_other_times_of_day_forecast_as_each_alone(mode, tmp_path):
    """A CSV feed's bars end at 23:59:59, a DataFrame's at midnight: the strategy ticks twice a day."""
    a = ohlcv_frame(synthetic_closes(200, seed=4))
    b = ohlcv_frame(synthetic_closes(200, seed=5))
    path = tmp_path / "b.csv"
    b.to_csv(path, date_format="%Y-%m-%d")

    def csv_feed(cerebro):
        cerebro.adddata(bt.feeds.GenericCSVData(dataname=str(path), dtformat="%Y-%m-%d", datetime=0, open=1, high=2,
                                                low=3, close=4, volume=5, openinterest=-1))

    strat = run([frame_feed(a), csv_feed], mode)
    assert strat.datas[1].datetime.time(0).hour == 23 and strat.datas[0].datetime.time(0).hour == 0
    assert len(strat.ticks) == 400  # the two feeds never tick together
    for fc, frame in zip(strat.fcs, (a, b)):
        assert_same_forecasts(lines_of(fc), alone(frame), min_finite=141, rtol=1e-9, err_msg=mode)


def _queue_feed(frame):
    bars = queue.Queue()
    for stamp, row in frame.iterrows():
        bars.put((stamp, row.open, row.high, row.low, row.close, row.volume))
    bars.put(None)
    return lambda cerebro: cerebro.adddata(QueueData(dataname=bars, poll=0.0))


def test_live_feeds_delivering_bars_one_by_one_forecast_as_each_alone():
    a = gapped(ohlcv_frame(synthetic_closes(200, seed=6)), (60, 100))
    b = gapped(ohlcv_frame(synthetic_closes(200, seed=7)), (20, 140))
    strat = run([_queue_feed(a), _queue_feed(b)], "runonce")  # a live feed turns runonce and preload off
    for fc, frame in zip(strat.fcs, (a, b)):
        assert_same_forecasts(lines_of(fc), alone(frame), min_finite=137)


class Replayed(bt.Strategy):
    """Records (bar, close, forecast) on every tick of a replayed feed."""

    def __init__(self):
        self.fc = LSTMForecast(self.data, **WEEKLY)
        self.ticks = []

    def next(self):
        self.ticks.append((len(self.data), self.data.close[0], self.fc.pred_return[0], len(self.fc.folds)))


def test_replay_recomputes_the_forming_bar_and_trains_each_fold_once_on_completed_bars():
    daily = ohlcv_frame(synthetic_closes(420, seed=8))
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.replaydata(bt.feeds.PandasData(dataname=daily), timeframe=bt.TimeFrame.Weeks)
    cerebro.addstrategy(Replayed)
    replayed = cerebro.run()[0]
    resampled = run([lambda c: _weekly(c, daily)], "runnext", kwargs=WEEKLY).fcs[0]
    got, expected = lines_of(replayed.fc), lines_of(resampled)
    fold_bars = [f.bar for f in resampled.folds]
    # Each fold trains once, on the same completed bars as in the resampled run (the last fold bar's
    # week has no next week to begin, so that fold never trains in replay).
    assert [f.bar for f in replayed.fc.folds] == [b for b in fold_bars if b < len(expected) - 1]
    # A fold's first forecast comes one bar later than resampled; every other completed bar is the same.
    others = np.setdiff1d(np.arange(len(expected)), fold_bars)
    assert_same_forecasts(got[others], expected[others], min_finite=40)
    assert np.isnan(got[fold_bars[0]]) and math.isfinite(expected[fold_bars[0]])
    # Mid-week ticks recompute the forming bar's forecast from its updated close (not a stale value).
    week = [t for t in replayed.ticks if t[0] == fold_bars[1] + 3]
    assert len(week) >= 4 and len({t[1] for t in week}) == len(week) and len({t[2] for t in week}) == len(week)


@pytest.mark.parametrize("mode", list(MODES))
def test_threshold_strategy_trades_feeds_on_different_calendars_in_every_mode(mode):
    frames = {"A": gapped(ohlcv_frame(regime_closes(seed=7)), (60, 100, 140)),
              "B": gapped(ohlcv_frame(regime_closes(((90, -0.004), (90, 0.004), (80, -0.004)), seed=8)), (15, 99))}

    def trades(run_mode):
        cerebro = bt.Cerebro(**MODES[run_mode])
        for name, frame in frames.items():
            cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=name)
        cerebro.broker.setcash(100_000)
        cerebro.addstrategy(ForecastThresholdStrategy, forecast_kwargs=KWARGS, entry=0.0, exit=0.0)
        strat = cerebro.run()[0]
        return [(t["ticker"], t["entry_date"], round(t["pnl"], 6)) for t in strat.trade_log], cerebro.broker.getvalue()

    log, value = trades(mode)
    reference_log, reference_value = trades("runonce") if mode != "runonce" else (log, value)
    assert {ticker for ticker, *_ in log} == {"A", "B"}
    assert log == reference_log and value == pytest.approx(reference_value)


LINE_INPUTS = {
    "SMA(20)": lambda data: bt.ind.SMA(data, period=20),
    "RSI": lambda data: bt.ind.RSI(data),
    "EMA(10)": lambda data: bt.ind.EMA(data, period=10),
}


class OfALine(bt.Strategy):
    """Forecasts another indicator's line (``LSTMForecast(bt.ind.SMA(self.data, period=20))``)."""

    params = (("line", "SMA(20)"), ("indicator", LSTMForecast))

    def __init__(self):
        self.line = LINE_INPUTS[self.p.line](self.data)
        self.fc = self.p.indicator(self.line, **KWARGS)


def forecast_of_line(frame, mode, line, indicator=LSTMForecast):
    strat = run([frame_feed(frame)], mode, strategy=OfALine, line=line, indicator=indicator)
    return lines_of(strat.fc), np.array(strat.line.array[: len(strat.line)], dtype=float), strat.fc


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("line", list(LINE_INPUTS))
def test_an_indicators_line_is_forecast_after_its_warm_up(mode, line):
    got, values, fc = forecast_of_line(ohlcv_frame(synthetic_closes(220, seed=9)), mode, line)
    warmup = int(np.argmax(np.isfinite(values)))
    assert warmup >= 9 and np.isfinite(values[warmup:]).all()
    expected = walk_forward(values[warmup:], cell="lstm", device="cpu", **TINY).pred_return
    assert_same_forecasts(got, np.concatenate([np.full(warmup, np.nan), expected]),
                          min_finite=220 - warmup - TINY["min_train"] + 1, err_msg=f"{line} {mode}")
    # Folds start once min_train valid values exist, counted in the data's bars.
    assert [f.bar for f in fc.folds][:2] == [warmup + TINY["min_train"] - 1, warmup + TINY["min_train"] + 39]


def test_a_gru_forecasts_rsi_as_the_issue_wrote_it():
    got, values, fc = forecast_of_line(ohlcv_frame(synthetic_closes(200, seed=10)), "runnext", "RSI", GRUForecast)
    assert np.isfinite(got).sum() == 200 - 14 - TINY["min_train"] + 1 and len(fc.folds) == 4


@pytest.mark.parametrize("mode", list(MODES))
def test_an_interior_nan_in_a_forecast_line_stays_a_data_error(mode):
    frame = ohlcv_frame(synthetic_closes(200, seed=11))
    frame.iloc[120, frame.columns.get_loc("close")] = np.nan  # the SMA is NaN for 20 bars after the warm-up
    with pytest.raises(DataError, match="NaN") as error:
        forecast_of_line(frame, mode, "SMA(20)")
    # The data's bar is named, or how the bars are counted.
    assert ("warm-up" if mode == "runonce" else "LSTMForecast at bar 120 (") in str(error.value)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=80, max_value=190), line=st.sampled_from(list(LINE_INPUTS)),
       seed=st.integers(0, 10_000))
@example(cut=97, line="SMA(20)", seed=1)  # t = the second fold bar of SMA(20)'s forecast (19 + 59 + 40 - 1 - 20)
def test_forecasts_of_an_indicator_line_up_to_bar_t_ignore_later_bars_in_every_mode(cut, line, seed):
    closes = synthetic_closes(200, seed=12)
    changed = closes.copy()
    changed[cut + 1:] *= np.exp(np.random.default_rng(seed).normal(0, 0.2, len(closes) - cut - 1))
    for mode in MODES:
        base, _, _ = forecast_of_line(ohlcv_frame(closes), mode, line)
        other, _, _ = forecast_of_line(ohlcv_frame(changed), mode, line)
        assert_same_forecasts(other[: cut + 1], base[: cut + 1], min_finite=cut - 20 - TINY["min_train"],
                              err_msg=f"{line} {mode}")


class Trained(bt.Analyzer):
    """How many of the strategy's forecast indicators trained a network in this run (a store hit restores the
    folds' records only), and its final value: what a worker of optstrategy sends back."""

    def stop(self):
        self.rets["trained"] = sum(bool(fc.walk.nets) for fc in self.strategy.forecasts.values())
        self.rets["folds"] = sum(len(fc.folds) for fc in self.strategy.forecasts.values())
        self.rets["value"] = self.strategy.broker.getvalue()


def _sweep(maxcpus, entries, **kwargs):
    cerebro = bt.Cerebro(stdstats=False, maxcpus=maxcpus)
    for name, seed in (("A", 13), ("B", 14)):
        cerebro.adddata(bt.feeds.PandasData(dataname=ohlcv_frame(regime_closes(seed=seed))), name=name)
    cerebro.broker.setcash(100_000)
    cerebro.addanalyzer(Trained, _name="trained")
    cerebro.optstrategy(ForecastThresholdStrategy, entry=entries, exit=[0.0], **kwargs)
    return [r[0].analyzers.trained.get_analysis() for r in cerebro.run()]


@pytest.mark.parametrize("maxcpus", [1, 2])
def test_optstrategy_over_thresholds_trains_each_forecast_once_without_a_store(maxcpus, tmp_path, monkeypatch):
    monkeypatch.setenv("PUFFIN_BT_CACHE", str(tmp_path))  # a cold default store
    runs = _sweep(maxcpus, [0.0, 0.0015, 0.1], forecast_kwargs=[KWARGS])
    assert sum(r["trained"] for r in runs) == 2  # one combination trained each ticker, the others read
    assert all(r["folds"] == runs[0]["folds"] >= 6 for r in runs)
    assert len({round(r["value"], 6) for r in runs}) > 1  # the thresholds matter
    # The same results as each combination run on its own, trained.
    for entry, r in zip([0.0, 0.0015, 0.1], runs):
        cerebro = bt.Cerebro(stdstats=False)
        for name, seed in (("A", 13), ("B", 14)):
            cerebro.adddata(bt.feeds.PandasData(dataname=ohlcv_frame(regime_closes(seed=seed))), name=name)
        cerebro.broker.setcash(100_000)
        cerebro.addstrategy(ForecastThresholdStrategy, entry=entry, exit=0.0, forecast_kwargs=KWARGS)
        assert cerebro.run()[0].broker.getvalue() == pytest.approx(r["value"], rel=1e-12)


def test_optstrategy_with_store_false_trains_every_combination(tmp_path, monkeypatch):
    monkeypatch.setenv("PUFFIN_BT_CACHE", str(tmp_path))
    runs = _sweep(1, [0.0, 0.1], forecast_kwargs=[{**KWARGS, "store": False}])
    assert [r["trained"] for r in runs] == [2, 2]
    assert not (tmp_path / "forecasts").exists()


class Last(bt.Analyzer):
    def stop(self):
        self.rets["value"] = self.strategy.broker.getvalue()
        self.rets["forecasts"] = [float(fc.pred_return[0]) for fc in getattr(self.strategy, "fcs", [])]


@pytest.mark.parametrize("strategy, kwargs", [
    ("ForecastThresholdStrategy", dict(entry=[0.0, 0.1], forecast_kwargs=[KWARGS])),
    ("ForecastRankStrategy", dict(forecast_kwargs=[KWARGS], max_drop=[1, 2])),
    ("BuyAndHold", dict(reserve=[0.01, 0.02])),
    ("Forecasts", dict(indicator=[LSTMForecast, GRUForecast])),
])
def test_every_shipped_strategy_and_indicator_runs_in_optstrategy_worker_processes(strategy, kwargs, tmp_path,
                                                                                    monkeypatch):
    import strategies

    monkeypatch.setenv("PUFFIN_BT_CACHE", str(tmp_path))
    cls = Forecasts if strategy == "Forecasts" else getattr(strategies, strategy)
    cerebro = bt.Cerebro(stdstats=False, maxcpus=2)  # Backtrader pickles the Cerebro into a process pool
    for name, seed in (("A", 15), ("B", 16), ("C", 17)):
        cerebro.adddata(bt.feeds.PandasData(dataname=ohlcv_frame(synthetic_closes(130, seed=seed))), name=name)
    cerebro.addanalyzer(Last, _name="last")
    cerebro.optstrategy(cls, **kwargs)
    results = [r[0].analyzers.last.get_analysis() for r in cerebro.run()]
    assert len(results) == 2 and all(math.isfinite(r["value"]) for r in results)
    if strategy == "Forecasts":  # both indicator classes forecast in the workers
        assert all(len(r["forecasts"]) == 3 and all(map(math.isfinite, r["forecasts"])) for r in results)


class PerOrderFee(bt.CommInfoBase):
    """A broker that charges a fixed fee per order, whatever its size."""

    params = (("fee", 300.0), ("stocklike", True), ("commtype", bt.CommInfoBase.COMM_FIXED))

    def _getcommission(self, size, price, pseudoexec):
        return self.p.fee if size else 0.0


SCHEMES = {
    "percentage": lambda broker: broker.setcommission(commission=0.01),
    "per share": lambda broker: broker.setcommission(commission=0.5, commtype=bt.CommInfoBase.COMM_FIXED,
                                                     stocklike=True),
    "per order": lambda broker: broker.addcommissioninfo(PerOrderFee()),
}


def _all_in(strategy, scheme, sizer=None, **kwargs):
    """One ticker whose next open equals this close (``ohlcv_frame``), all of the sleeve in: an entry fits
    only if the commission was counted in its size."""
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=ohlcv_frame(regime_closes(seed=7))), name="A")
    cerebro.broker.setcash(10_000)
    SCHEMES[scheme](cerebro.broker)
    if sizer is not None:
        cerebro.addsizer(sizer[0], **sizer[1])
    cerebro.addstrategy(strategy, **kwargs)
    return cerebro.run()[0]


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_entries_fit_price_plus_commission_under_every_commission_scheme(scheme, capsys):
    from strategies import BuyAndHold

    strat = _all_in(ForecastThresholdStrategy, scheme, forecast_kwargs=KWARGS, entry=0.0, exit=0.0, reserve=0.0)
    assert strat.trade_log and strat.orders_rejected == []
    assert "rejected" not in capsys.readouterr().err
    held = _all_in(BuyAndHold, scheme, reserve=0.0)
    entry = held.entries["A"]
    assert entry["rejected_orders"] == 0
    comm = held.broker.getcommissioninfo(held.data)
    cost = lambda n: n * entry["price"] + comm.getcommission(n, entry["price"])  # noqa: E731
    assert cost(entry["size"]) <= 10_000 < cost(entry["size"] + 1)  # the most shares that fit, no fewer


def test_a_sizer_the_user_added_sizes_the_entries():
    from strategies import BuyAndHold

    strat = _all_in(ForecastThresholdStrategy, "percentage", (bt.sizers.FixedSize, {}), forecast_kwargs=KWARGS,
                    entry=0.0, exit=0.0)
    assert strat.trade_log and {t["size"] for t in strat.trade_log} == {1}
    strat = _all_in(ForecastThresholdStrategy, "percentage", (bt.sizers.PercentSizer, dict(percents=10)),
                    forecast_kwargs=KWARGS, entry=0.0, exit=0.0)
    assert all(t["size"] * t["entry_price"] < 0.11 * 10_000 * 1.2 for t in strat.trade_log) and strat.trade_log
    held = _all_in(BuyAndHold, "percentage", (bt.sizers.FixedSize, dict(stake=7)))
    assert held.entries["A"]["size"] == 7


def test_rejected_entries_are_counted_on_stderr_at_the_end_with_the_first_reason(capsys):
    # Orders sized for the close, filled at the next open: a gap up past the (zero) reserve is refused.
    frame = ohlcv_frame(regime_closes(seed=7))
    frame["open"] = frame["close"].shift(1) * 1.03
    frame.iloc[0, frame.columns.get_loc("open")] = frame["close"].iloc[0]
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame), name="A")
    cerebro.addstrategy(ForecastThresholdStrategy, forecast_kwargs=KWARGS, entry=0.0, exit=0.0, reserve=0.0)
    strat = cerebro.run()[0]
    err = capsys.readouterr().err
    assert strat.orders_rejected
    assert (f"{len(strat.orders_rejected)} order(s) rejected by the broker; the first: A on "
            f"{strat.orders_rejected[0]['date']}") in err and "not enough cash" in err


def _ranked(scheme, sizer=None, **kwargs):
    """Three tickers, the rank strategy holding the best one, all of the cash in (no reserve)."""
    from strategies import ForecastRankStrategy

    cerebro = bt.Cerebro(stdstats=False)
    for i, seed in enumerate((7, 8, 9)):
        cerebro.adddata(bt.feeds.PandasData(dataname=ohlcv_frame(regime_closes(seed=seed))), name="ABC"[i])
    cerebro.broker.setcash(10_000)
    SCHEMES[scheme](cerebro.broker)
    if sizer is not None:
        cerebro.addsizer(sizer[0], **sizer[1])
    cerebro.addstrategy(ForecastRankStrategy, top_k=1, rebalance_every=3, forecast_kwargs=KWARGS, **kwargs)
    return cerebro.run()[0]


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_the_rank_strategys_entries_fit_price_plus_commission_under_every_scheme(scheme, capsys):
    strat = _ranked(scheme, reserve=0.0)
    assert strat.trade_log and strat.orders_rejected == []
    assert "rejected" not in capsys.readouterr().err


def test_a_sizer_the_user_added_sizes_the_rank_strategys_entries(capsys):
    strat = _ranked("percentage", (bt.sizers.FixedSize, dict(stake=3)))
    assert strat.trade_log and {t["size"] for t in strat.trade_log} == {3}


def test_the_rank_strategy_counts_rejected_entries_on_stderr_at_the_end(capsys):
    strat = _ranked("percentage", (bt.sizers.FixedSize, dict(stake=10_000)))  # never affordable
    err = capsys.readouterr().err
    assert strat.orders_rejected and not strat.trade_log
    assert f"ForecastRankStrategy: {len(strat.orders_rejected)} order(s) rejected by the broker; the first:" in err
