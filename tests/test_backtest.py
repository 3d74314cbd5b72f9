"""backtest() end to end on the bundled data with tiny models, and the forecast store."""

from __future__ import annotations

import json

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from puffin_bt import ConfigError, DataError, load_sample
from puffin_bt.backtesting import backtest, performance
from puffin_bt.stats import sharpe_report
from puffin_bt.store import ForecastStore

from .conftest import TINY, ohlcv_frame, regime_closes

FAST = {**{k: v for k, v in TINY.items() if k not in ("lookback", "min_train", "train_window")},
        "lookback": 10, "min_train": 120, "train_window": 160, "retrain_every": 60, "device": "cpu"}


@pytest.fixture(scope="module")
def sample_result(tmp_path_factory):
    store = ForecastStore(tmp_path_factory.mktemp("store"))
    return backtest(None, model="gru", start="2011-06-01", end="2012-12-31", store=store, entry=0.002,
                    exit=0.002, **FAST)


@pytest.fixture(scope="module")
def trading_result():
    """Two tickers starting on different dates, thresholds low enough that the tiny models trade in and out."""
    frames = {"A": ohlcv_frame(regime_closes(seed=1)), "B": ohlcv_frame(regime_closes(seed=2), start="2020-02-01")}
    return backtest(frames, store=False, entry=0.001, exit=0.001, device="cpu", **TINY)


def test_bundled_backtest_reports_portfolio_ticker_and_benchmark_metrics(sample_result):
    res = sample_result
    assert set(res.per_ticker.index) == {"AAPL", "GOOG", "IBM", "MSFT"}
    for key in ("total_return", "cagr", "volatility", "sharpe", "max_drawdown", "trades", "win_rate", "exposure"):
        assert key in res.metrics
    assert res.metrics["final_value"] == pytest.approx(res.equity["strategy"].iloc[-1], rel=1e-9)
    assert 0 <= res.metrics["max_drawdown"] < 1 and 0 <= res.metrics["exposure"] <= 1
    # Equal-weight buy-and-hold on the same data: its return is the average of the tickers' own moves.
    assert res.benchmark["total_return"] == pytest.approx(
        res.benchmark_per_ticker["total_return"].mean(), abs=0.02)


def test_sleeves_add_up_to_the_broker_value(sample_result):
    res = sample_result
    sleeves = res.strategy.analyzers.sleeves.get_analysis()
    total = sleeves[["AAPL", "GOOG", "IBM", "MSFT"]].sum(axis=1)
    values = res.strategy.observers.broker.lines.value.array
    np.testing.assert_allclose(total.to_numpy(), np.asarray(values[: len(total)]), rtol=1e-9)


def test_trades_and_forecasts_are_consistent_with_the_engine(sample_result):
    res = sample_result
    ta = res.strategy.analyzers.tradeanalyzer.get_analysis()
    closed = ta.get("total", {}).get("closed", 0)
    assert len(res.trades) == closed == res.metrics["trades"]
    f = res.forecasts
    assert {"ticker", "date", "close", "pred_return", "realized_return", "last_return"} <= set(f.columns)
    for _, g in f.groupby("ticker"):
        g = g.sort_values("date")
        # realised return at t is close[t+1]/close[t]-1: the forecast is about the *next* bar.
        np.testing.assert_allclose(g["realized_return"].iloc[:-1].to_numpy(),
                                   g["close"].iloc[1:].to_numpy() / g["close"].iloc[:-1].to_numpy() - 1)
    assert set(res.folds["ticker"]) == {"AAPL", "GOOG", "IBM", "MSFT"}


def test_save_writes_every_artifact_and_a_replayable_config(sample_result, tmp_path):
    out = sample_result.save(tmp_path / "run")
    for name in ("trades.csv", "forecasts.csv", "folds.csv", "equity.csv", "metrics.json", "config.json"):
        assert (out / name).stat().st_size > 0, name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == "gru" and cfg["forecast"]["retrain_every"] == 60 and cfg["entry"] == 0.002
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["per_ticker"]) == {"AAPL", "GOOG", "IBM", "MSFT"}
    table = sample_result.summary()
    assert "PORTFOLIO" in table and "B&H return" in table and "MSFT" in table


STATS_KEYS = ("n_periods", "sharpe", "psr", "sharpe_ci", "sharpe_benchmark", "sharpe_diff", "sharpe_diff_ci")


def _after(curve: pd.Series, start) -> np.ndarray:
    """Returns of ``curve`` after the bar ``start``, recomputed here, not by puffin_bt."""
    kept = curve[curve.index >= pd.Timestamp(start)]
    return (kept.to_numpy()[1:] / kept.to_numpy()[:-1]) - 1


def _assert_report(recorded: dict, expected: dict, keys) -> None:
    for key in keys:
        assert recorded[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-12), key


@pytest.mark.parametrize("run", ["sample_result", "trading_result"])
def test_metrics_json_statistics_are_those_of_the_returns_after_the_first_forecast_bar(run, request, tmp_path):
    result = request.getfixturevalue(run)
    out = result.save(tmp_path / "run")
    metrics = json.loads((out / "metrics.json").read_text())
    equity = pd.read_csv(out / "equity.csv", index_col="date", parse_dates=True)
    period = metrics["period"]
    # The period starts at the first forecast (the earliest ticker's), not at the first bar of the run.
    first_forecasts = result.forecasts.groupby("ticker")["date"].min()
    assert pd.Timestamp(period["start"]) == first_forecasts.min() > equity.index[0]
    assert period["whole_run"]["start"] == str(equity.index[0].date()) and "warm-up" in period["whole_run"]["covers"]
    strat, bench = _after(equity["strategy"], period["start"]), _after(equity["buy_hold"], period["start"])
    assert period["bars"] == len(strat) == (equity.index > pd.Timestamp(period["start"])).sum()
    assert np.ptp(strat) > 0 and np.ptp(bench) > 0, "the run must trade for this test to mean anything"
    if run == "trading_result":  # trades in and out: not buy-and-hold in disguise (the sample run is, to the cent)
        assert np.ptp(strat - bench) > 0 and metrics["portfolio"]["trades"] > 0
    _assert_report(metrics["portfolio"], sharpe_report(strat, bench), STATS_KEYS)
    _assert_report(metrics["benchmark"], sharpe_report(bench), ("n_periods", "sharpe", "psr", "sharpe_ci"))
    assert metrics["portfolio"]["sharpe_benchmark"] == pytest.approx(metrics["benchmark"]["sharpe"], rel=1e-12)
    assert 0 <= metrics["portfolio"]["psr"] <= 1 and metrics["portfolio"]["stats_note"] is None
    # Per ticker: the strategy's sleeve from the ticker's own first forecast bar; its buy-and-hold on the same dates.
    sleeves = result.strategy.analyzers.sleeves.get_analysis()
    traded = 0
    for ticker, row in metrics["per_ticker"].items():
        bh = metrics["benchmark_per_ticker"][ticker]
        assert row["period_start"] == bh["period_start"] == str(first_forecasts[ticker].date())
        mine = _after(sleeves[ticker], row["period_start"])
        assert row["n_periods"] == bh["n_periods"] == len(mine)
        assert row["sharpe_benchmark"] == pytest.approx(bh["sharpe"], rel=1e-12)
        if np.ptp(mine) > 0:
            traded += 1
            _assert_report(row, sharpe_report(mine), ("sharpe", "psr", "sharpe_ci"))
            assert row["sharpe_diff"] == pytest.approx(row["sharpe"] - bh["sharpe"], rel=1e-12)
            lo, hi = row["sharpe_diff_ci"]
            assert lo <= row["sharpe_diff"] <= hi or lo == hi == 0.0  # 0 when the sleeve is buy-and-hold's own
    assert traded >= 1
    table = result.summary()
    assert "PSR" in table and period["start"] in table


def test_a_strategy_that_never_trades_gets_no_sharpe_and_a_note_not_a_crash(tmp_path):
    res = backtest({"X": ohlcv_frame(regime_closes(seed=1))}, store=False, entry=0.99, device="cpu", **TINY)
    assert res.metrics["trades"] == 0 and res.metrics["exposure"] == 0
    metrics = json.loads((res.save(tmp_path / "run") / "metrics.json").read_text())
    for row in (metrics["portfolio"], metrics["per_ticker"]["X"]):
        assert row["sharpe"] is row["psr"] is row["sharpe_ci"] is row["sharpe_diff"] is row["sharpe_diff_ci"] is None
        assert "constant" in row["stats_note"] and row["n_periods"] == metrics["period"]["bars"] > 0
        assert row["sharpe_benchmark"] is not None  # buy-and-hold still has its statistics
    assert metrics["benchmark"]["psr"] is not None and len(metrics["benchmark"]["sharpe_ci"]) == 2
    assert "PORTFOLIO" in res.summary()


def test_open_positions_and_the_interactive_page(sample_result, tmp_path):
    res = sample_result
    still = res.open_positions
    assert list(still.columns) == ["ticker", "direction", "entry_date", "entry_price", "size"]
    assert sorted(still["ticker"]) == sorted(res.per_ticker.index[res.per_ticker["open_positions"] == 1])
    for row in still.itertuples():
        position = res.strategy.getposition(res.strategy.getdatabyname(row.ticker))
        assert (row.size, row.entry_price) == (abs(position.size), position.price)
        closed = res.trades[res.trades["ticker"] == row.ticker]
        assert closed.empty or row.entry_date >= closed["exit_date"].max()
    (tmp_path / "report.html").write_text("<html><body>report</body></html>")
    page = res.plot(tmp_path, fmt="html")
    assert page == tmp_path / "trades.html"
    text = page.read_text(encoding="utf-8")
    assert f"{len(res.trades)} round trip(s), {len(still)} still open" in text
    assert f"{len(res.folds)} retrain(s)" in text and "long when pred return &gt; +0.20%" in text
    assert '<a href="report.html">quantstats report</a>' in text  # a report beside it gets a link
    assert pd.read_csv(res.save(tmp_path / "run") / "open_positions.csv").shape == still.shape


def test_rerun_with_new_thresholds_reuses_stored_forecasts(tmp_path):
    store = ForecastStore(tmp_path)
    frames = {"UP": ohlcv_frame(regime_closes(seed=1))}
    first = backtest(frames, store=store, **{**FAST, "lookback": 5, "min_train": 60, "train_window": 80,
                                            "retrain_every": 40})
    assert (store.hits, store.misses) == (0, 1)
    again = backtest(frames, store=store, entry=0.001, exit=0.001,
                     **{**FAST, "lookback": 5, "min_train": 60, "train_window": 80, "retrain_every": 40})
    assert (store.hits, store.misses) == (1, 1)
    pd.testing.assert_frame_equal(first.forecasts, again.forecasts)
    fresh = backtest(frames, store=False, entry=0.001, exit=0.001,
                     **{**FAST, "lookback": 5, "min_train": 60, "train_window": 80, "retrain_every": 40})
    pd.testing.assert_frame_equal(fresh.trades, again.trades)
    assert len(again.folds) == len(first.folds)


def test_store_misses_when_any_bar_or_option_changes(tmp_path):
    store = ForecastStore(tmp_path)
    closes = regime_closes(seed=2)
    params = {**FAST, "lookback": 5, "min_train": 60, "train_window": 80, "retrain_every": 40}
    backtest({"X": ohlcv_frame(closes)}, store=store, **params)
    changed = closes.copy()
    changed[-1] *= 1.01
    other = backtest({"X": ohlcv_frame(changed)}, store=store, **params)
    backtest({"X": ohlcv_frame(closes)}, store=store, **{**params, "hidden_dim": 5})
    assert store.misses == 3 and store.hits == 0
    # The changed last bar cannot move any earlier forecast (causality through the store too).
    base = backtest({"X": ohlcv_frame(closes)}, store=store, **params)
    np.testing.assert_allclose(other.forecasts["pred_return"].to_numpy()[:-1],
                               base.forecasts["pred_return"].to_numpy()[:-1], atol=1e-7)


def test_corrupted_store_entry_is_recomputed_not_fatal(tmp_path):
    store = ForecastStore(tmp_path)
    frames = {"X": ohlcv_frame(regime_closes(seed=3))}
    params = {**FAST, "lookback": 5, "min_train": 60, "train_window": 80, "retrain_every": 40}
    first = backtest(frames, store=store, **params)
    (entry,) = list(store.root.glob("*.npz"))
    entry.write_bytes(entry.read_bytes()[:100])
    again = backtest(frames, store=store, **params)
    assert store.misses == 2
    pd.testing.assert_frame_equal(first.forecasts, again.forecasts)


def test_tickers_starting_on_different_dates_are_traded_from_their_first_forecast():
    early = ohlcv_frame(regime_closes(seed=4), start="2020-01-01")
    late = ohlcv_frame(regime_closes(((90, 0.004), (80, -0.004)), seed=5), start="2020-06-01")
    params = {**FAST, "lookback": 5, "min_train": 60, "train_window": 80, "retrain_every": 40}
    res = backtest({"EARLY": early, "LATE": late}, store=False, entry=0.001, exit=0.001, **params)
    f = res.forecasts
    assert f[f.ticker == "LATE"]["date"].min() == late.index[59]
    assert f[f.ticker == "EARLY"]["date"].min() == early.index[59]
    assert res.per_ticker.loc["LATE", "exposure"] > 0, "the late ticker must trade once it has forecasts"
    first_late_trade = res.trades[res.trades.ticker == "LATE"]["entry_date"].min()
    assert pd.isna(first_late_trade) or first_late_trade > late.index[59]


def test_backtest_validates_its_arguments():
    with pytest.raises(ConfigError, match="cash"):
        backtest({"X": ohlcv_frame(regime_closes())}, cash=-5, store=False, **FAST)
    with pytest.raises(ConfigError, match="epoch"):
        backtest({"X": ohlcv_frame(regime_closes())}, store=False, epoch=3)
    with pytest.raises(ConfigError, match="model='transformer'"):
        backtest({"X": ohlcv_frame(regime_closes())}, model="transformer", store=False, **FAST)
    with pytest.raises(DataError):
        backtest({"X": pd.DataFrame({"close": [1.0, -2.0]})}, store=False)


def test_performance_of_a_known_curve():
    idx = pd.bdate_range("2020-01-01", periods=3)
    stats = performance(pd.Series([100.0, 110.0, 99.0], index=idx), pd.Series([1.0, 0.0, 1.0], index=idx))
    assert stats["total_return"] == pytest.approx(-0.01)
    assert stats["max_drawdown"] == pytest.approx(0.1)
    assert stats["exposure"] == pytest.approx(2 / 3)


def test_user_cerebro_takes_the_strategy_in_one_line():
    from strategies import ForecastThresholdStrategy

    cerebro = bt.Cerebro()
    cerebro.adddata(bt.feeds.PandasData(dataname=ohlcv_frame(regime_closes(seed=6))), name="X")
    cerebro.addstrategy(ForecastThresholdStrategy, model="gru", entry=0.001, exit=0.001,
                        forecast_kwargs={**TINY, "device": "cpu"})
    strat = cerebro.run()[0]
    fc = strat.forecasts[strat.datas[0]]
    assert type(fc).__name__ == "GRUForecast" and len(fc.folds) > 0
    assert strat.trade_log or strat.getposition(strat.datas[0]).size != 0


def test_allow_short_trades_the_mirror_signal():
    frames = {"DOWN": ohlcv_frame(regime_closes(((100, -0.004), (80, 0.004), (80, -0.004)), seed=9))}
    params = {**FAST, "lookback": 5, "min_train": 60, "train_window": 80, "retrain_every": 40}
    long_only = backtest(frames, store=False, entry=0.001, exit=0.001, **params)
    both = backtest(frames, store=False, entry=0.001, exit=0.001, allow_short=True, **params)
    assert set(long_only.trades["direction"]) <= {"long"}
    assert "short" in set(both.trades["direction"]) or both.strategy.getposition(both.strategy.datas[0]).size < 0
    pd.testing.assert_frame_equal(long_only.forecasts, both.forecasts)  # same forecasts, other trades


def test_threshold_rules_follow_the_chapter():
    from strategies import threshold_target

    def rule(pred, position, allow_short=False):
        return threshold_target(pred, position, 0.005, 0.005, allow_short, 0.5)

    assert rule(0.006, 0) == 0.5                       # flat, pred > +entry: go long
    assert rule(0.004, 0) == 0.0                       # below the entry threshold: stay flat
    assert rule(-0.004, 10) == 0.5                     # long, pred above -exit: hold
    assert rule(-0.006, 10) == 0.0                     # long, pred < -exit: exit
    assert rule(-0.006, 0, allow_short=True) == -0.5   # flat, short allowed: go short
    assert rule(0.006, -10, allow_short=True) == 0.5   # short, strong up signal: reverse
    assert rule(0.004, -10, allow_short=True) == -0.5  # short, pred below +exit: hold
    assert rule(0.006, -10, allow_short=True) == 0.5


def test_optstrategy_over_thresholds_trains_each_ticker_once(tmp_path):
    from puffin_bt import load_sample
    from puffin_bt.adapters.feeds import FrameData
    from strategies import ForecastThresholdStrategy

    store = ForecastStore(tmp_path)
    cerebro = bt.Cerebro(optreturn=False, maxcpus=1, stdstats=False)
    for name, df in load_sample(["AAPL", "IBM"], start="2011-06-01", end="2012-12-31").items():
        cerebro.adddata(FrameData(dataname=df), name=name)
    cerebro.addanalyzer(bt.analyzers.Returns, _name="returns")
    cerebro.optstrategy(ForecastThresholdStrategy, entry=[0.0005, 0.002, 0.01], exit=[0.0005, 0.01],
                        forecast_kwargs=[{**FAST, "store": store}])
    runs = [r[0] for r in cerebro.run()]
    assert len(runs) == 6
    # The first combination trains both tickers; the other five read the stored forecasts.
    assert (store.misses, store.hits) == (2, 10)
    assert len({round(r.analyzers.returns.get_analysis()["rtot"], 12) for r in runs}) > 1  # thresholds matter


class PlannedForecast(bt.Indicator):
    """A forecast indicator whose predicted returns are planned per data name (a stand-in for a trained
    net, so a sizing property can be set up exactly)."""

    lines = ("pred_return", "pred_price")
    params = (("plan", None),)

    def __init__(self):
        self.addminperiod(1)

    def next(self):
        planned = self.p.plan[self.data._name]
        self.lines.pred_return[0] = planned[len(self) - 1]
        self.lines.pred_price[0] = self.data.close[0] * (1 + self.lines.pred_return[0])


def test_a_ticker_soaring_20x_while_held_does_not_stop_another_tickers_later_entry():
    """Per-ticker sleeves: B's entry must not be refused for cash that A's position took as it grew."""
    from strategies import ForecastThresholdStrategy

    n = 300
    soaring = 10 * np.exp(np.linspace(0, np.log(20), n))  # A: x20 while held
    flat = 50 + np.sin(np.arange(n) / 7.0)
    frames = {"A": ohlcv_frame(soaring), "B": ohlcv_frame(flat)}
    plan = {"A": np.full(n, 0.01), "B": np.where(np.arange(n) >= 250, 0.01, -0.01)}  # B's signal comes late
    cerebro = bt.Cerebro(stdstats=False)
    for name, df in frames.items():
        cerebro.adddata(bt.feeds.PandasData(dataname=df), name=name)
    cerebro.broker.setcash(100_000)
    cerebro.addstrategy(ForecastThresholdStrategy, model=PlannedForecast, forecast_kwargs={"plan": plan},
                        plot_forecast=False)
    strat = cerebro.run()[0]
    a, b = (strat.getdatabyname(t) for t in ("A", "B"))
    assert strat.orders_rejected == []
    assert strat.getposition(a).size > 0 and strat.getposition(b).size > 0
    # B's sleeve is its half of the starting cash: it bought about (1 - reserve) x 50,000 of B.
    assert 0.9 * 49_000 <= strat.getposition(b).size * b.close[0] <= 1.05 * 49_000
    # A's sleeve grew x20 and stays within A's own value.
    assert strat.getposition(a).size * a.close[0] > 10 * 49_000


def test_the_bundled_portfolio_has_no_rejected_orders_and_reports_any_with_its_reason():
    res = backtest(dict(load_sample(start="2009-06-01")), entry=0.0, exit=0.0, store=False, device="cpu",
                   **{**TINY, "min_train": 120})
    assert res.metrics["trades"] > 5  # it trades: the property is not vacuous
    assert res.metrics["rejected_orders"] == 0 and res.metrics["rejected"] == []
