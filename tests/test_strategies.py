"""The shipped strategies' rules: the ranking strategy's selection, turnover cap and limits, in real Cerebros."""

from __future__ import annotations

import subprocess
import sys

import backtrader as bt
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from puffin_bt import ConfigError, backtest, load_sample
from strategies import ForecastRankStrategy, rank_targets

from .conftest import TINY, ohlcv_frame, synthetic_closes
from .test_backtest import PlannedForecast

names = st.sampled_from("ABCDEFGH")


@given(scores=st.dictionaries(names, st.floats(-0.1, 0.1, allow_nan=False), min_size=1),
       held=st.lists(names, unique=True, max_size=4), top_k=st.integers(1, 3), bottom_k=st.integers(0, 2),
       max_drop=st.one_of(st.none(), st.integers(1, 3)))
def test_rank_targets_hold_at_most_k_names_and_replace_at_most_max_drop(scores, held, top_k, bottom_k, max_drop):
    held_long, held_short = held[:top_k], held[top_k: top_k + bottom_k]
    longs, shorts = rank_targets(scores, held_long, held_short, top_k, bottom_k, max_drop)
    assert len(longs) <= top_k and len(shorts) <= bottom_k and not set(longs) & set(shorts)
    assert set(longs) <= set(scores) and set(shorts) <= set(scores)  # only names with a forecast
    kept_long = [n for n in held_long if n in scores]
    if max_drop is not None:
        assert len(set(kept_long) - set(longs)) <= max_drop
    if max_drop is None:  # no cap: exactly the best top_k
        assert set(longs) == set(sorted(scores, key=scores.get, reverse=True)[:top_k])


class Watched(ForecastRankStrategy):
    """Records the long positions held at every bar."""

    def __init__(self):
        super().__init__()
        self.held = []

    def next(self):
        self.held.append(sum(1 for d in self.datas if self.getposition(d).size > 0))
        super().next()


def test_the_rank_strategy_holds_the_planned_top_k_and_never_more():
    n = 200
    frames = {t: ohlcv_frame(synthetic_closes(n, seed=i)) for i, t in enumerate("ABCD")}
    plan = {"A": np.full(n, 0.03), "B": np.where(np.arange(n) < 100, 0.02, -0.02),
            "C": np.where(np.arange(n) < 100, -0.01, 0.04), "D": np.full(n, 0.0)}
    cerebro = bt.Cerebro(stdstats=False)
    for name, df in frames.items():
        cerebro.adddata(bt.feeds.PandasData(dataname=df), name=name)
    cerebro.addstrategy(Watched, model=PlannedForecast, forecast_kwargs={"plan": plan}, top_k=2, rebalance_every=10,
                        plot_forecast=False)
    strat = cerebro.run()[0]
    assert max(strat.held) == 2 and strat.orders_rejected == []
    assert strat.rebalances[0]["long"] == ["A", "B"]
    later = [r for r in strat.rebalances if r["date"] >= frames["A"].index[100]]
    assert later and all(set(r["long"]) == {"A", "C"} for r in later)
    final = sorted(d._name for d in strat.datas if strat.getposition(d).size > 0)
    assert final == ["A", "C"]


def test_backtest_rank_strategy_end_to_end_and_its_bad_input():
    frames = {t: df.iloc[-300:] for t, df in load_sample().items()}
    res = backtest(frames, strategy="rank", top_k=2, rebalance_every=5, max_drop=1, store=False, device="cpu", **TINY)
    assert res.config["strategy"] == "rank" and res.config["top_k"] == 2
    assert res.metrics["trades"] >= 1 and "rank" in res.summary()
    with pytest.raises(ConfigError, match="top_k=4"):
        backtest(frames, strategy="rank", top_k=4, store=False, **TINY)
    with pytest.raises(ConfigError, match="strategy='momentum'"):
        backtest(frames, strategy="momentum", store=False, **TINY)
    proc = subprocess.run([sys.executable, "-m", "puffin_bt.cli", "backtest", "--strategy", "rank", "--top-k", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "top_k" in proc.stderr
