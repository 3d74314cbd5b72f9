#!/usr/bin/env python
"""The volatility-targeting evidence of docs/portfolios.md: on the bundled data, buy-and-hold next to vol-targeted
buy-and-hold (``sizing="vol_target"``) sized on the trailing 20-bar volatility and on the HAR, EWMA and GARCH
baselines' forecasts (``puffin_bt.volbaselines``), with realised volatility, Sharpe (and its 95% interval), PSR,
max drawdown, exposure and turnover over the same period, and the Sharpe difference to buy-and-hold.

    python scripts/vol_target_evidence.py [--target-vol 0.15] [--max-leverage 1.0]    # ~15 s on 2 CPU cores
    python scripts/vol_target_evidence.py --band 0      # what the no-trade band saves: resize on every move

Both start at bar 251 (the default walk-forward's first forecast bar, where ``backtest()``'s benchmark buys), with
the same cash and a 0.1% commission. The baselines refit on the default walk-forward's refit bars and training
window (504 bars); their forecasts at bar t use closes up to t only (tests/test_volbaselines.py).
"""

from __future__ import annotations

import argparse

import backtrader as bt
import numpy as np
import pandas as pd

from puffin_bt import load_sample
from puffin_bt.adapters.analyzers import SleeveValue
from puffin_bt.backtesting.metrics import performance
from puffin_bt.options import forecast_defaults
from puffin_bt.schedule import FoldSchedule
from puffin_bt.stats import sharpe_report
from puffin_bt.volbaselines import available_methods, baseline_variances
from strategies import BuyAndHold, voltarget

HORIZON = 5  # the variance of the next week: what a position held for days should follow
CASH = 1_000_000.0


class PlannedVolatility(bt.Indicator):
    """A ``pred_vol`` line read from arrays computed beforehand per data name (the baselines' causal forecasts);
    ``pred_return`` is NaN: this indicator sizes, it does not pick a direction."""

    lines = ("pred_return", "pred_vol")
    params = (("vols", None),)

    def next(self):
        self.lines.pred_return[0] = float("nan")
        self.lines.pred_vol[0] = self.p.vols[self.data._name][len(self) - 1]


class Exposure(bt.Analyzer):
    """The share of the portfolio's value held in positions, per bar."""

    def start(self):
        self.dates, self.shares = [], []

    def next(self):
        value = self.strategy.broker.getvalue()
        self.dates.append(self.strategy.datetime.datetime(0))
        self.shares.append(1 - self.strategy.broker.getcash() / value if value > 0 else np.nan)

    def get_analysis(self):
        return pd.Series(self.shares, index=pd.DatetimeIndex(self.dates))


def run(frames: dict, **params) -> tuple:
    cerebro = bt.Cerebro(stdstats=False)
    for name, df in frames.items():
        cerebro.adddata(bt.feeds.PandasData(dataname=df), name=name)
    cerebro.broker.setcash(CASH)
    cerebro.broker.setcommission(commission=0.001)
    cerebro.addstrategy(BuyAndHold, **params)
    cerebro.addanalyzer(SleeveValue, _name="sleeves")
    cerebro.addanalyzer(Exposure, _name="exposure")
    strat = cerebro.run()[0]
    sleeves = strat.analyzers.sleeves.get_analysis()[list(frames)]
    sleeves.index = pd.DatetimeIndex(sleeves.index)
    return strat, sleeves


def row(name: str, strat, equity: pd.Series, start, benchmark: pd.Series | None) -> dict:
    curve = equity[equity.index >= start]
    returns = curve.pct_change().dropna()
    figures = performance(curve)
    stats = sharpe_report(returns.to_numpy(), None if benchmark is None else benchmark.to_numpy())
    years = len(returns) / 252
    exposure = strat.analyzers.exposure.get_analysis()
    traded = getattr(strat, "traded_value", 0.0)
    return {"sizing": name, "volatility": figures["volatility"], "sharpe": figures["sharpe"],
            "sharpe_ci": stats["sharpe_ci"], "psr": stats["psr"], "max_drawdown": figures["max_drawdown"],
            "total_return": figures["total_return"], "turnover_a_year": traded / curve.mean() / years,
            "sharpe_diff_ci": stats.get("sharpe_diff_ci"), "mean_exposure": float(exposure[exposure.index >= start].mean())}


def sleeve_volatility(sleeves: pd.DataFrame, frames: dict, start_bar: int) -> dict:
    """Each ticker's sleeve's annualised volatility from its own first forecast bar on."""
    return {t: performance(sleeves[t][sleeves.index >= frames[t].index[start_bar]])["volatility"] for t in frames}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target-vol", type=float, default=0.15)
    ap.add_argument("--max-leverage", type=float, default=1.0)
    ap.add_argument("--band", type=float, default=voltarget.RESIZE_BAND,
                    help="the no-trade band to measure (the strategies' is fixed at 0.1)")
    args = ap.parse_args()
    voltarget.RESIZE_BAND = args.band  # a what-if for this measurement only
    frames = load_sample()
    defaults = forecast_defaults()
    schedule = FoldSchedule(**{name: defaults[name] for name in FoldSchedule.NAMES} | {"horizon": HORIZON})
    start_bar = schedule.first_fold_bar
    start = min(df.index[start_bar] for df in frames.values())
    plain_strat, plain_sleeves = run(frames, start_bar=start_bar)
    plain = plain_sleeves.sum(axis=1)
    plain_returns = plain[plain.index >= start].pct_change().dropna()
    rows = [row("buy-and-hold", plain_strat, plain, start, None)]
    sleeve_vols = {"buy-and-hold": sleeve_volatility(plain_sleeves, frames, start_bar)}
    sized = {"trailing_20": {}}
    for method in available_methods():
        if method != "trailing":
            sized[method] = {"vol_model": PlannedVolatility, "vol_kwargs": {"vols": {
                t: np.sqrt(baseline_variances(df["close"].to_numpy(), HORIZON, schedule.fold_bars(len(df)),
                                              methods=[method], train_window=schedule.train_window)[method])
                for t, df in frames.items()}}}
    for source, extra in sized.items():
        strat, sleeves = run(frames, start_bar=start_bar, sizing="vol_target", target_vol=args.target_vol,
                             max_leverage=args.max_leverage, **extra)
        equity = sleeves.sum(axis=1)
        sleeve_vols[f"vol_target ({source})"] = sleeve_volatility(sleeves, frames, start_bar)
        returns = equity[equity.index >= start].pct_change().dropna()
        rows.append(row(f"vol_target ({source})", strat, equity, start, plain_returns.reindex(returns.index)))
        print(f"{source}: sizing sources used {strat.vol_sources}")
    table = pd.DataFrame(rows).set_index("sizing")
    print(f"bundled data: {', '.join(frames)}, from {start.date()} to {plain.index[-1].date()}, target_vol "
          f"{args.target_vol}, max_leverage {args.max_leverage}, no-trade band {args.band}, horizon of the baselines "
          f"{HORIZON}")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 3):
        print(table)
        print("\nrealised volatility of each ticker's sleeve (annualised):")
        print(pd.DataFrame(sleeve_vols).T)


if __name__ == "__main__":
    main()
