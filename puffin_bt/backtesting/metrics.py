"""Performance numbers of a backtest: the portfolio's from Backtrader's analyzers, each ticker's
sleeve and the buy-and-hold benchmark from their equity curves."""

from __future__ import annotations

import math

import pandas as pd

TRADING_DAYS = 252


def performance(equity: pd.Series, held: pd.Series | None = None) -> dict:
    """Total return, CAGR, annualised volatility and Sharpe (daily, rf=0), max drawdown and
    exposure of an equity curve. Used for per-ticker sleeves and the benchmark; the
    portfolio line of a backtest comes from Backtrader's analyzers."""
    equity = equity.dropna()
    if len(equity) < 2 or equity.iloc[0] <= 0:
        return {"total_return": math.nan, "cagr": math.nan, "volatility": math.nan, "sharpe": math.nan,
                "max_drawdown": math.nan, "exposure": math.nan}
    rets = equity.pct_change().dropna()
    years = (equity.index[-1] - equity.index[0]).days / 365.25
    total = equity.iloc[-1] / equity.iloc[0] - 1
    std = rets.std(ddof=1)
    return {
        "total_return": float(total),
        "cagr": float((1 + total) ** (1 / years) - 1) if years > 0 and total > -1 else math.nan,
        "volatility": float(std * math.sqrt(TRADING_DAYS)),
        "sharpe": float(rets.mean() / std * math.sqrt(TRADING_DAYS)) if std > 0 else math.nan,
        "max_drawdown": float((1 - equity / equity.cummax()).max()),
        "exposure": float(held.mean()) if held is not None and len(held) else math.nan,
    }


def trade_stats(trades: pd.DataFrame, open_position: bool) -> dict:
    n = len(trades)
    return {"trades": n, "open_positions": int(open_position),
            "win_rate": float((trades["pnl_net"] > 0).mean()) if n else math.nan}




def portfolio_metrics(strat, equity: pd.DataFrame, cash: float, tickers: list[str]) -> dict:
    """The strategy's portfolio line: Backtrader's analyzers (Sharpe, drawdown, returns, trades)
    next to what its equity curve says (CAGR, volatility, exposure)."""
    held_any = (strat.analyzers.sleeves.held()[tickers].sum(axis=1) > 0).astype(float)
    ta = strat.analyzers.tradeanalyzer.get_analysis()
    closed = ta.get("total", {}).get("closed", 0) if ta else 0
    won = ta.get("won", {}).get("total", 0) if ta and closed else 0
    dd = strat.analyzers.drawdown.get_analysis()
    rets = strat.analyzers.returns.get_analysis()
    sharpe = strat.analyzers.sharpe.get_analysis().get("sharperatio")
    final_value = strat.broker.getvalue()
    curve = performance(equity["strategy"])
    return {
        "start_value": cash,
        "final_value": final_value,
        "total_return": final_value / cash - 1,
        "cagr": curve["cagr"],
        "annual_return": rets.get("rnorm"),
        "volatility": curve["volatility"],
        "sharpe": sharpe if sharpe is not None else math.nan,
        "max_drawdown": dd.max.drawdown / 100.0,
        "trades": closed,
        "open_positions": sum(1 for d in strat.datas if strat.getposition(d).size != 0),
        "win_rate": won / closed if closed else math.nan,
        "exposure": float(held_any.mean()),
        "rejected_orders": len(strat.orders_rejected),
        "not_traded": dict(getattr(strat, "not_traded", {})),
    }


def ticker_metrics(strat, bench_strat, frames: dict, trades: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per ticker: the strategy's sleeve (performance, trades) and the benchmark's, from each
    ticker's first bar on."""
    sleeves = strat.analyzers.sleeves.get_analysis()
    bench_sleeves = bench_strat.analyzers.sleeves.get_analysis()
    helds = strat.analyzers.sleeves.held()
    per_ticker, bench_per_ticker = {}, {}
    for t, df in frames.items():
        held = helds[t]
        alive = df.index.min()
        still_open = strat.getposition(strat.getdatabyname(t)).size != 0
        per_ticker[t] = {**performance(sleeves[t][sleeves.index >= alive], held[held.index >= alive]),
                         **trade_stats(trades[trades["ticker"] == t], still_open)}
        bench_per_ticker[t] = performance(bench_sleeves[t][bench_sleeves.index >= alive])
    return pd.DataFrame(per_ticker).T, pd.DataFrame(bench_per_ticker).T
