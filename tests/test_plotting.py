"""Trade charts through Backtrader's plotter, equity and forecast plots: real Cerebro runs, headless."""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from puffin_bt import LSTMForecast
from puffin_bt.adapters.positions import open_positions, round_trips
from puffin_bt.data import load_sample
from puffin_bt.errors import ConfigError, PuffinError
from puffin_bt.plotting import plot_equity, plot_forecasts, plot_trades
from puffin_bt.plotting.tables import EQUAL_WEIGHT, NO_FORECASTS, html_inputs

ROOT = Path(__file__).resolve().parents[1]
TICKERS = ["AAPL", "MSFT"]
START, END = "2011-09-01", "2013-03-01"
FORECAST = {"hidden_dim": 4, "num_layers": 1, "epochs": 1, "refit_epochs": 1, "min_train": 150,
            "retrain_every": 60, "train_window": 200, "lookback": 10, "device": "cpu"}
ENTRY = 0.0005  # low enough that the tiny model trades


class SmaCross(bt.Strategy):
    """A user's own strategy: no puffin_bt indicators, fixed-size SMA crossover on every data."""

    params = (("fast", 10), ("slow", 30))

    def __init__(self):
        self.cross = {d: bt.ind.CrossOver(bt.ind.SMA(d, period=self.p.fast), bt.ind.SMA(d, period=self.p.slow))
                      for d in self.datas}

    def prenext(self):
        self.next()

    def next(self):
        for d, cross in self.cross.items():
            if not len(cross) or not len(d):
                continue
            if not self.getposition(d) and cross[0] > 0:
                self.buy(d, size=10)
            elif self.getposition(d) and cross[0] < 0:
                self.close(d)


class SmaChurn(bt.Strategy):
    """Trades a fast SMA crossover (hundreds of round trips over decades) and keeps a forecast indicator it does
    not trade on: its retrain dates and pred_return still belong on the chart."""

    def __init__(self):
        self.fc = LSTMForecast(self.data, **{**FORECAST, "retrain_every": 50})
        self.cross = bt.ind.CrossOver(bt.ind.SMA(self.data, period=3), bt.ind.SMA(self.data, period=8))

    def next(self):
        if not self.position and self.cross[0] > 0:
            self.buy(size=10)
        elif self.position and self.cross[0] < 0:
            self.close()


def long_frame(n: int, end_price: float) -> pd.DataFrame:
    """``n`` daily bars from AAPL's sample returns chained end to end, rescaled to go from $1 to ``end_price``: the
    long history of ``scripts/long_history_charts.py``, from 1990."""
    path = Path(__file__).resolve().parent.parent / "scripts" / "long_history_charts.py"
    spec = importlib.util.spec_from_file_location("long_history_charts", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script.long_frame(n, "AAPL", end_price, start="1990-01-02")


@pytest.fixture(scope="module")
def headless():
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MPLBACKEND", "DISPLAY", "WAYLAND_DISPLAY"):
            mp.delenv(var, raising=False)
        yield


def _cerebro(frames, names=None):
    cerebro = bt.Cerebro(stdstats=True)
    for i, (name, df) in enumerate(frames.items()):
        feed = bt.feeds.PandasData(dataname=df, openinterest=None)
        label = name if names is None else names[i]
        if label is None:
            cerebro.adddata(feed)
        else:
            cerebro.adddata(feed, name=label)
    cerebro.broker.setcash(100_000)
    return cerebro


@pytest.fixture(scope="module")
def forecast_run(headless, tmp_path_factory):
    from strategies import ForecastThresholdStrategy

    frames = load_sample(TICKERS, start=START, end=END)
    cerebro = _cerebro(frames)
    cerebro.addstrategy(ForecastThresholdStrategy, entry=ENTRY, exit=ENTRY, forecast_kwargs=FORECAST)
    strat = cerebro.run()[0]
    out = tmp_path_factory.mktemp("trades")
    figs = plot_trades(cerebro, out_dir=out)
    return cerebro, strat, figs, out, frames


@pytest.fixture(scope="module")
def sma_run(headless, tmp_path_factory):
    frames = load_sample(["IBM", "MSFT"], start="2011-01-01", end=END)
    frames["MSFT"] = frames["MSFT"].loc["2011-09-01":"2012-10-31"]  # starts late and ends early
    cerebro = _cerebro(frames, names=["BRK/B", None])
    cerebro.addstrategy(SmaCross)
    strat = cerebro.run()[0]
    out = tmp_path_factory.mktemp("sma")
    figs = plot_trades(cerebro, out_dir=out)
    return cerebro, strat, figs, out, frames


@pytest.fixture(scope="module")
def long_run(headless, tmp_path_factory):
    """12 years of daily bars rising 200-fold, 57 retrains, ~170 round trips: past every threshold of the chart."""
    frames = {"LONG": long_frame(3000, 200.0)}
    cerebro = _cerebro(frames)
    cerebro.addstrategy(SmaChurn)
    strat = cerebro.run()[0]
    figs = plot_trades(cerebro, out_dir=tmp_path_factory.mktemp("long"))
    return strat, figs["LONG"], frames["LONG"]


# ---------------------------------------------------------------------------------------- helpers


def _texts(fig) -> str:
    parts = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            parts += [t.get_text() for t in legend.get_texts()]
    return "\n".join(parts)


def _bottom_axes(fig):
    return min(fig.axes, key=lambda ax: ax.get_position().y0)


def _visible_date_labels(fig):
    fig.canvas.draw()
    bottom = _bottom_axes(fig)
    labels = [t.get_text() for t in bottom.get_xticklabels() if t.get_visible() and t.get_text()]
    hidden_elsewhere = all(
        not any(t.get_visible() and t.get_text() for t in ax.get_xticklabels())
        for ax in fig.axes if ax.get_position().y0 > bottom.get_position().y0 + 1e-6)
    return bottom, labels, hidden_elsewhere


def _markers(fig, marker):
    out = []
    for ax in fig.axes:
        for line in ax.lines:
            if line.get_marker() == marker and line.get_linestyle() in ("None", ""):
                x, y = (np.asarray(v, dtype=float) for v in line.get_data())
                out += [xi for xi, yi in zip(x, y) if np.isfinite(yi)]
    return out


def _buysell_counts(strat, data):
    for obs in strat.getobservers():
        if obs.data is data and hasattr(obs.lines, "buy"):
            buys = int(np.isfinite(np.asarray(obs.lines.buy.array, dtype=float)).sum())
            sells = int(np.isfinite(np.asarray(obs.lines.sell.array, dtype=float)).sum())
            return buys, sells
    raise AssertionError("no BuySell observer")


# ------------------------------------------------------------------------------ forecast strategy


def test_one_png_per_data(forecast_run):
    _, _, figs, out, _ = forecast_run
    assert sorted(figs) == TICKERS
    for name in TICKERS:
        path = out / f"trades_{name}.png"
        assert path.exists() and path.stat().st_size > 30_000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == [f"trades_{n}.png" for n in TICKERS]


def test_each_figure_shows_only_its_own_data(forecast_run):
    figs = forecast_run[2]
    for name in TICKERS:
        fig = figs[name]
        other = next(t for t in TICKERS if t != name)
        text = _texts(fig)
        assert f"{name} \u2014 ForecastThresholdStrategy" in text
        assert f"{name} (1 Day)" in text and f"{name} forecast" in text
        assert other not in text
        # price panel + its volume twin + the forecast subplot; no panels of the other data,
        # no portfolio-wide observers with two datas
        assert len(fig.axes) == 3


def test_bottom_axis_has_real_date_labels(forecast_run):
    """Backtrader 1.9.78 on matplotlib >= 3.3 shows no x labels, or dates in year ~3990."""
    _, _, figs, _, frames = forecast_run
    for name, fig in figs.items():
        _, labels, hidden_elsewhere = _visible_date_labels(fig)
        assert len(labels) >= 5, labels
        first, last = frames[name].index[0], frames[name].index[-1]
        for label in labels:
            day = pd.Timestamp(dt.datetime.strptime(label, "%Y-%m-%d"))
            assert first <= day <= last, (label, first, last)
        assert hidden_elsewhere


def test_forecast_panel_thresholds_and_price_overlay(forecast_run):
    _, strat, figs, _, _ = forecast_run
    for data in strat.forecasts:
        fig = figs[data._name]
        price_ax = next(ax for ax in fig.axes if any(line.get_gid() == "puffin_fold" for line in ax.lines))
        assert any(line.get_label().startswith("forecast price") for line in price_ax.lines)
        assert any(t.get_text().startswith("forecast price") for t in price_ax.get_legend().get_texts())
        hlines = {round(float(line.get_ydata()[0]), 6) for ax in fig.axes for line in ax.lines
                  if len(line.get_ydata()) == 2 and line.get_ydata()[0] == line.get_ydata()[1]}
        assert {ENTRY, -ENTRY} <= hlines
        pred = [line for ax in fig.axes for line in ax.lines if "pred return" in line.get_label()]
        assert len(pred) == 1


def test_fold_lines_mark_each_retrain_on_its_date(forecast_run):
    _, strat, figs, _, _ = forecast_run
    for data, fc in strat.forecasts.items():
        fig = figs[data._name]
        assert len(fc.folds) >= 3
        bottom = _bottom_axes(fig)
        fmt = bottom.xaxis.get_major_formatter()
        price_axes = [ax for ax in fig.axes if any(line.get_gid() == "puffin_fold" for line in ax.lines)]
        assert len(price_axes) == 1
        xs = [line.get_xdata()[0] for line in price_axes[0].lines if line.get_gid() == "puffin_fold"]
        assert len(xs) == len(fc.folds)
        assert [fmt(x) for x in xs] == [f"{fold.date:%Y-%m-%d}" for fold in fc.folds]


def test_buy_sell_markers_match_executions(forecast_run):
    _, strat, figs, _, _ = forecast_run
    total = 0
    for data in strat.datas:
        buys, sells = _buysell_counts(strat, data)
        total += buys + sells
        assert len(_markers(figs[data._name], "^")) == buys
        assert len(_markers(figs[data._name], "v")) == sells
    assert total > 0, "the tiny model made no trade: lower ENTRY"


def test_plotting_twice_leaves_first_figures_alone(forecast_run):
    cerebro, strat, figs, _, _ = forecast_run
    flags = [obj.plotinfo.plot for obj in strat.datas + strat.getindicators() + strat.getobservers()]
    n_axes = {k: len(f.axes) for k, f in figs.items()}
    again = plot_trades(cerebro)
    assert {k: len(f.axes) for k, f in figs.items()} == n_axes
    assert {k: len(f.axes) for k, f in again.items()} == n_axes
    assert all(again[k] is not figs[k] for k in figs)
    assert flags == [obj.plotinfo.plot for obj in strat.datas + strat.getindicators() + strat.getobservers()]


# --------------------------------------------------------------------------- any user's strategy


def test_user_strategy_plots_too(sma_run):
    _, strat, figs, out, _ = sma_run
    assert sorted(figs) == ["BRK/B", "data1"]  # names sanitised for files; unnamed data -> data1
    assert sorted(p.name for p in out.iterdir()) == ["trades_BRK_B.png", "trades_data1.png"]
    for key, data in zip(["BRK/B", "data1"], strat.datas):
        fig = figs[key]
        assert "SmaCross" in _texts(fig)
        assert "SMA (10)" in _texts(fig)
        assert not any(line.get_gid() == "puffin_fold" for ax in fig.axes for line in ax.lines)
        buys, sells = _buysell_counts(strat, data)
        assert buys > 0 and sells > 0
        assert len(_markers(fig, "^")) == buys and len(_markers(fig, "v")) == sells
        _, labels, _ = _visible_date_labels(fig)
        assert len(labels) >= 5


def test_late_starting_data_gets_its_own_range_and_markers(sma_run):
    """MSFT starts after IBM: its x range and buy/sell markers must stay on its own dates."""
    _, _, figs, _, frames = sma_run
    fig = figs["data1"]
    msft = frames["MSFT"]
    bottom, labels, _ = _visible_date_labels(fig)
    days = [pd.Timestamp(label) for label in labels]
    assert min(days) >= msft.index[0] and max(days) <= msft.index[-1]
    fmt = bottom.xaxis.get_major_formatter()
    for x in _markers(fig, "^") + _markers(fig, "v"):
        assert msft.index[0] <= pd.Timestamp(fmt(x)) <= msft.index[-1]


def test_single_data_keeps_portfolio_observers(headless):
    frames = load_sample("IBM", start="2012-01-01", end=END)
    cerebro = _cerebro(frames)
    cerebro.addstrategy(SmaCross)
    cerebro.run()
    figs = plot_trades(cerebro, style="line")
    fig = figs["IBM"]
    assert len(fig.axes) == 5  # broker, trades, price + volume twin, crossover
    text = _texts(fig)
    assert "Broker" in text and "IBM" in text


def test_plot_trades_rejects_bad_input(headless):
    cerebro = _cerebro(load_sample("IBM", start="2012-01-01", end="2012-06-30"))
    cerebro.addstrategy(SmaCross)
    with pytest.raises(PuffinError, match="run"):
        plot_trades(cerebro)
    cerebro.run()
    with pytest.raises(ConfigError, match="fmt"):
        plot_trades(cerebro, fmt="../png")
    with pytest.raises(ConfigError, match="style"):
        plot_trades(cerebro, style="heikin")


# ---------------------------------------------------------------------------- equity / forecasts


def test_plot_equity_two_lines_and_drawdown_panel(headless, tmp_path):
    idx = pd.bdate_range("2012-01-02", periods=300)
    rng = np.random.default_rng(0)
    equity = pd.Series(100_000 * np.exp(np.cumsum(rng.normal(0.0004, 0.01, 300))), index=idx)
    bench = pd.Series(100_000 * np.exp(np.cumsum(rng.normal(0.0003, 0.012, 300))), index=idx)
    path = tmp_path / "equity.png"
    fig = plot_equity(equity, bench, out_path=path, title="test equity")
    assert path.stat().st_size > 20_000
    top, dd = sorted(fig.axes, key=lambda ax: -ax.get_position().y0)
    labelled = [line for line in top.lines if not line.get_label().startswith("_")]
    assert len(labelled) == 2
    assert "strategy" in labelled[0].get_label() and "buy & hold" in labelled[1].get_label()
    assert "drawdown" in dd.get_ylabel()
    for line in dd.lines:
        assert np.nanmax(np.asarray(line.get_ydata(), dtype=float)) <= 0.0
    assert min(np.nanmin(np.asarray(line.get_ydata(), dtype=float)) for line in dd.lines) < -1.0


def test_plot_forecasts(headless, tmp_path):
    idx = pd.bdate_range("2012-01-02", periods=200)
    rng = np.random.default_rng(1)
    real = rng.normal(0, 0.015, 200)
    df = pd.DataFrame({"pred_return": 0.2 * real + rng.normal(0, 0.003, 200), "realized_return": real}, index=idx)
    df.iloc[-1, 1] = np.nan  # last bar has no realised next return
    path = tmp_path / "forecasts.png"
    fig = plot_forecasts(df, out_path=path)
    assert path.stat().st_size > 20_000
    assert len(fig.axes) == 3
    with pytest.raises(ConfigError, match="realized_return"):
        plot_forecasts(df[["pred_return"]])


# ------------------------------------------------------------------------------- backend choice


def _run_python(code: str, argv: list[str] = (), **env_overrides) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "DISPLAY", "WAYLAND_DISPLAY")}
    env.update(env_overrides)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *argv], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_headless_selects_agg_lazily():
    out = _run_python("""
        import sys
        import puffin_bt, puffin_bt.plotting
        from puffin_bt.adapters.compat import prepare_matplotlib
        assert "matplotlib.pyplot" not in sys.modules and "backtrader.plot" not in sys.modules
        prepare_matplotlib()
        import matplotlib
        assert "backtrader.plot" in sys.modules
        print(matplotlib.get_backend().lower())
    """)
    assert out == "agg"


def test_user_backend_choice_is_kept():
    out = _run_python("""
        import matplotlib
        calls = []
        real_use = matplotlib.use
        matplotlib.use = lambda *a, **k: (calls.append(a[0]), real_use(*a, **k))
        from puffin_bt.adapters.compat import prepare_matplotlib
        prepare_matplotlib()
        print(matplotlib.get_backend().lower(), calls)
    """, MPLBACKEND="svg", DISPLAY=":99")
    assert out == "svg []"  # neither Agg forced nor Backtrader's TkAgg applied


def test_display_without_choice_does_not_force_agg():
    out = _run_python("""
        import matplotlib
        calls = []
        matplotlib.use = lambda *a, **k: calls.append(a[0])
        from puffin_bt.adapters.compat import prepare_matplotlib
        prepare_matplotlib()
        print(calls)
    """, DISPLAY=":99")
    assert out == "[]"


# ------------------------------------------------------------------- Backtrader's own cerebro.plot()

CEREBRO_PLOT = """
    import datetime as dt, json, sys
    import backtrader as bt
    import numpy as np
    import pandas as pd
    import {module}
    from puffin_bt.data import load_sample

    class SmaCross(bt.Strategy):
        def __init__(self):
            self.sma = bt.ind.SMA(self.data0, period=20)

        def next(self):
            if not self.position and self.data0.close[0] > self.sma[0]:
                self.buy(size=10)
            elif self.position and self.data0.close[0] < self.sma[0]:
                self.close()

    def run(frame, fmt, **plot_kwargs):
        cerebro = bt.Cerebro()
        minutes = {{"timeframe": bt.TimeFrame.Minutes}} if fmt != "%Y-%m-%d" else {{}}
        cerebro.adddata(bt.feeds.PandasData(dataname=frame, **minutes), name="X")
        cerebro.addstrategy(SmaCross)
        cerebro.run()
        figs = cerebro.plot(**plot_kwargs)
        fig = figs[0][0]
        path = sys.argv[1] + f"/cerebro_{{len(plot_kwargs)}}_{{len(fmt)}}.png"
        fig.savefig(path, dpi=60)
        fig.canvas.draw()
        bottom = min(fig.axes, key=lambda ax: ax.get_position().y0)
        shown = [t for t in bottom.get_xticklabels() if t.get_visible() and t.get_text()]
        boxes = [t.get_window_extent() for t in shown]
        overlap = any(a.x1 > b.x0 for a, b in zip(boxes, boxes[1:]))
        days = [dt.datetime.strptime(t.get_text(), fmt) for t in shown]
        return fig, {{"labels": [t.get_text() for t in shown], "in_range": all(frame.index[0] <= d <= frame.index[-1] for d in days),
                      "overlap": overlap, "path": path}}

    import matplotlib
    daily = load_sample(["AAPL"], start="2012-01-01", end="2012-12-31")["AAPL"]
    first, a = run(daily, "%Y-%m-%d")
    second, b = run(daily, "%Y-%m-%d", fmt_x_ticks=None)  # Backtrader's None meant the wrong epoch (year ~3990)
    import matplotlib.pyplot as plt
    current = plt.gcf() is second  # plt.savefig() after cerebro.plot() saves the plot
    t = pd.date_range("2024-03-04 09:30", periods=300, freq="5min")
    px = 100 + np.cumsum(np.sin(np.arange(300) / 7))
    intraday = pd.DataFrame({{"open": px, "high": px + 0.2, "low": px - 0.2, "close": px, "volume": 1000.0}}, index=t)
    _, c = run(intraday, "%Y-%m-%d %H:%M")
    print(json.dumps({{"backend": matplotlib.get_backend().lower(), "same_figure": first is second, "current": current,
                      "axes": [len(first.axes), len(second.axes)], "runs": [a, b, c]}}))
"""


def test_backtraders_own_cerebro_plot_works_headless_with_dates(tmp_path):
    """A Backtrader user's ``cerebro.plot()`` on a machine without a display (no DISPLAY, no MPLBACKEND): without
    puffin_bt, ``backtrader.plot`` forces TkAgg and fails; after ``import strategies`` (which imports puffin_bt, where
    the fix is applied), Agg, real dates, usable figures."""
    import json

    found = json.loads(_run_python(CEREBRO_PLOT.format(module="strategies"), argv=[str(tmp_path)]))
    assert found["backend"] == "agg"
    assert not found["same_figure"] and found["axes"][0] == found["axes"][1]  # the second plot did not draw into the first
    assert found["current"]
    for run in found["runs"]:
        assert len(run["labels"]) >= 3, run
        assert run["in_range"] and not run["overlap"], run
        assert Path(run["path"]).stat().st_size > 10_000
    assert all(":" in label for label in found["runs"][2]["labels"])  # intraday bars: times, not 00:00 dates


def test_cerebro_plot_keeps_a_notebook_kernels_backend():
    """In a Jupyter kernel (MPLBACKEND set by ipykernel) Backtrader's ``iplot=True`` would switch to nbagg."""
    out = _run_python("""
        import sys, types
        sys.modules["ipykernel"] = types.ModuleType("ipykernel")  # what Backtrader looks for
        import backtrader as bt, matplotlib
        import puffin_bt
        from puffin_bt.data import load_sample
        cerebro = bt.Cerebro()
        cerebro.adddata(bt.feeds.PandasData(dataname=load_sample(["IBM"], start="2012-06-01")["IBM"]))
        cerebro.addstrategy(bt.Strategy)
        cerebro.run()
        figs = cerebro.plot()
        print(matplotlib.get_backend().lower(), len(figs[0]))
    """, MPLBACKEND="svg")
    assert out == "svg 1"


# ------------------------------------------------------------------------------ long histories


def test_long_history_chart_is_scaled_to_the_data(long_run):
    """Decades of bars: a log price axis (said in the legend), retrains as a strip of ticks rather than lines across
    the panels, and round trips coloured on the price line (won/lost/open) instead of a smear of triangles."""
    strat, fig, frame = long_run
    trips, still = round_trips(strat), open_positions(strat)
    folds = strat.fc.folds
    buys, sells = _buysell_counts(strat, strat.data)
    assert len(folds) > 40 and buys + sells > 150 and frame["high"].max() / frame["low"].min() > 10
    fmt = _bottom_axes(fig).xaxis.get_major_formatter()

    price = [ax for ax in fig.axes if ax.get_yscale() == "log"]
    assert len(price) == 1
    price = price[0]
    low, high = price.get_ylim()
    assert low <= frame["low"].min() and high >= frame["high"].max()
    assert all(low <= t <= high for t in price.get_yticks())  # no price ticks in the room under the prices

    ticks = [c for ax in fig.axes for c in ax.collections if c.get_gid() == "puffin_fold_ticks"]
    assert len(ticks) == 1 and not any(line.get_gid() == "puffin_fold" for ax in fig.axes for line in ax.lines)
    xs = [seg[0][0] for seg in ticks[0].get_segments()]
    assert [fmt(x) for x in xs] == [f"{fold.date:%Y-%m-%d}" for fold in folds]

    assert not any(line.get_visible() and line.get_marker() in ("^", "v") for line in price.lines)
    coloured = [c for c in price.collections if len(c.get_segments()) == len(trips) + len(still)]
    assert len(coloured) == 1
    segments, colours = coloured[0].get_segments(), coloured[0].get_colors()
    for row, seg, colour in zip(trips.itertuples(), segments, colours):
        assert fmt(seg[0][0]) == f"{row.entry_date:%Y-%m-%d}" and fmt(seg[-1][0]) == f"{row.exit_date:%Y-%m-%d}"
        assert (colour[1] > colour[0]) == (row.pnl_net > 0)  # green when it won, red when it lost
    wins = int((trips["pnl_net"] > 0).sum())
    text = _texts(fig)
    for label in ("log price scale", f"round trip won ({wins})", f"lost ({len(trips) - wins})", f"retrain ({len(folds)})",
                  f"{buys} buys, {sells} sells (too many to mark"):
        assert label in text, label
    _, labels, _ = _visible_date_labels(fig)
    assert all(len(label) == 4 for label in labels)  # a tick a year or more apart: the year says it all


def test_short_history_chart_keeps_lines_markers_and_a_linear_axis(forecast_run):
    _, _, figs, _, _ = forecast_run
    for fig in figs.values():
        assert all(ax.get_yscale() == "linear" for ax in fig.axes)
        assert "log price scale" not in _texts(fig) and "too many to mark" not in _texts(fig)
        assert any(line.get_visible() and line.get_marker() == "^" for ax in fig.axes for line in ax.lines)


# ---------------------------------------------------------------- round trips, open positions, the page


def test_round_trips_from_backtraders_records_match_the_strategys_own_log(forecast_run, monkeypatch):
    """Any strategy's round trips come from Backtrader's trades and orders; ForecastThresholdStrategy logs its own."""
    _, strat, _, _, _ = forecast_run
    logged = round_trips(strat)
    assert len(logged) == len(strat.trade_log) > 0
    monkeypatch.setattr(strat, "trade_log", None)
    rebuilt = round_trips(strat)
    pd.testing.assert_frame_equal(rebuilt.sort_values(["ticker", "entry_date"]).reset_index(drop=True),
                                  logged.sort_values(["ticker", "entry_date"]).reset_index(drop=True),
                                  check_dtype=False, rtol=1e-9)


class ScaleIn(bt.Strategy):
    """Data 0: a round trip, then a long opened in two buys and held to the end. Data 1: a short held to the end."""

    def next(self):
        bar = len(self)
        if bar == 5:
            self.buy(self.datas[0], size=10)
        elif bar == 20:
            self.close(self.datas[0])
        elif bar in (30, 40):
            self.buy(self.datas[0], size=5)
        elif bar == 35:
            self.sell(self.datas[1], size=7)


def test_open_positions_are_the_brokers_with_the_date_they_opened(headless):
    frames = load_sample(["IBM", "MSFT"], start="2012-01-01", end="2012-06-30")
    cerebro = _cerebro(frames)
    cerebro.addstrategy(ScaleIn)
    strat = cerebro.run()[0]
    still = open_positions(strat)
    dates = frames["IBM"].index
    assert list(still["ticker"]) == ["IBM", "MSFT"] and list(still["direction"]) == ["long", "short"]
    assert list(still["size"]) == [10, 7]
    assert list(still["entry_date"]) == [dates[30], dates[35]]  # the first fill of the open trade (next bar's open)
    ibm = frames["IBM"]["open"]
    assert still["entry_price"].iloc[0] == pytest.approx((ibm.iloc[30] + ibm.iloc[40]) / 2)
    assert still["entry_price"].iloc[1] == pytest.approx(frames["MSFT"]["open"].iloc[35])
    trips = round_trips(strat)
    assert len(trips) == 1 and trips["size"].iloc[0] == 10 and trips["entry_date"].iloc[0] == dates[5]
    assert trips["exit_price"].iloc[0] == pytest.approx(ibm.iloc[20])
    assert open_positions(_cerebro_run_nothing()).empty


def _cerebro_run_nothing():
    cerebro = _cerebro(load_sample(["IBM"], start="2012-01-01", end="2012-03-31"))
    cerebro.addstrategy(bt.Strategy)
    return cerebro.run()[0]


def test_html_inputs_of_the_forecast_strategy(forecast_run):
    _, strat, _, _, frames = forecast_run
    inputs = html_inputs(strat, strat.datas)
    assert list(inputs["prices"]) == TICKERS
    for name, px in inputs["prices"].items():
        np.testing.assert_allclose(px[["open", "high", "low", "close", "volume"]].to_numpy(),
                                   frames[name][["open", "high", "low", "close", "volume"]].to_numpy())
        assert (px.index == frames[name].index).all()
    for data, fc in strat.forecasts.items():
        mine = inputs["forecasts"][inputs["forecasts"]["ticker"] == data._name]
        pred = np.asarray(fc.pred_return.array[: len(data)])
        np.testing.assert_array_equal(mine["pred_return"].to_numpy(), pred[np.isfinite(pred)])
        dates = inputs["folds"].loc[inputs["folds"]["ticker"] == data._name, "date"]
        assert [f"{d:%Y-%m-%d}" for d in dates] == [f"{f.date:%Y-%m-%d}" for f in fc.folds]
    assert (inputs["entry"], inputs["exit"]) == (ENTRY, ENTRY) and "long when pred return > +0.05%" in inputs["rule"]
    value = np.asarray(strat.observers.broker.lines.value.array[: len(strat)])
    np.testing.assert_allclose(inputs["equity"]["strategy"].to_numpy(), value)
    assert inputs["equity"]["buy_hold"].iloc[0] == pytest.approx(100_000)


def test_plot_trades_html_for_any_strategy(sma_run, tmp_path):
    """A strategy without a forecast indicator: prices, trades and equity, and the page says so; the tabs are named
    as the PNGs are; Backtrader's own trades are the round trips."""
    cerebro, strat, figs, _, _ = sma_run
    page = plot_trades(cerebro, out_dir=tmp_path / "page", fmt="html")
    assert page == tmp_path / "page" / "trades.html"
    text = page.read_text(encoding="utf-8")
    closed = sum(t.status == t.Closed for trades in strat._trades.values() for ts in trades.values() for t in ts)
    held = sum(bool(strat.getposition(d).size) for d in strat.datas)
    assert f"{closed} round trip(s), {held} still open" in text
    assert NO_FORECASTS in text and EQUAL_WEIGHT in text and "retrain" not in text.split("</header>")[0]
    compact = text.replace(" ", "")
    for key in figs:
        assert f'"title":"{key}"' in compact
    with pytest.raises(ConfigError, match="out_dir"):
        plot_trades(cerebro, fmt="html")


def test_plot_trades_html_renders_in_chromium(sma_run, tmp_path):
    from .test_plotting_html import js_errors, needs_browser_or_skip, probe

    needs_browser_or_skip()
    page = plot_trades(sma_run[0], out_dir=tmp_path, fmt="html")
    found, console, _ = probe(page, tmp_path, "data1")
    assert found["tabs"] == ["Portfolio", "BRK/B", "data1"] and found["active"] == "data1"
    assert found["canvases"] > 0 and found["hover"] == "ok"
    assert js_errors(console) == []


def test_html_thresholds_of_a_strategy_without_entry_params_are_the_indicators_lines(long_run):
    strat = long_run[0]
    inputs = html_inputs(strat, strat.datas)
    assert (inputs["entry"], inputs["exit"]) == (0.005, 0.005)  # LSTMForecast's plothlines
    assert inputs["rule"] == "threshold lines at +0.50% / -0.50% (the forecast indicator's plothlines)"
    assert len(inputs["folds"]) == len(strat.fc.folds) and len(inputs["trades"]) == len(round_trips(strat))
