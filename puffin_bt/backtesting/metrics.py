"""Performance numbers of a backtest over its statistics period (per-bar returns from the first forecast bar on,
annualised by the bars a year the dates show): equity-curve figures, the probabilistic Sharpe ratio and bootstrap
Sharpe intervals (puffin_bt.stats) for the portfolio, each ticker's sleeve and buy-and-hold; Backtrader's analyzers
add whole-run figures."""

from __future__ import annotations

import math

import pandas as pd

from ..dates import TRADING_DAYS, periods_per_year
from ..errors import DataError
from ..stats import sharpe_report

__all__ = [
    "PERIOD_COVERS", "WHOLE_RUN_COVERS", "benchmark_metrics", "performance", "period_returns", "portfolio_metrics",
    "ticker_metrics"
]

# What the statistics period is, in metrics.json: said once, there and in the README.
PERIOD_COVERS = (
    "sharpe, psr, sharpe_ci, sharpe_benchmark, sharpe_diff, sharpe_diff_ci, cagr, volatility and exposure use the "
    "per-bar equity returns after the first forecast bar (start), so the cash warm-up of min_train bars does not dilute "
    "them; the same dates for buy-and-hold, which buys at the first forecast bar. Per ticker: from that ticker's own "
    "first forecast bar (period_start). Sharpe ratios and volatility are annualised by sqrt(periods_per_year) (the "
    "bars a year: 252 for daily bars, bars per day x 252 intraday; see periods_per_year_basis), rf = 0; cagr uses "
    "calendar time")


WHOLE_RUN_COVERS = (
    "annual_return and sharpe_backtrader (Backtrader's Returns and SharpeRatio analyzers) cover the whole run, warm-up "
    "included; total_return and max_drawdown are the same over either period (the warm-up is flat cash)")


def period_returns(equity: pd.Series, start) -> pd.Series:
    """Per-bar returns of ``equity`` after the bar ``start`` (the first forecast bar, whose value is the base)."""
    curve = equity[equity.index >= start].dropna()
    return curve.pct_change().iloc[1:]


def performance(equity: pd.Series, held: pd.Series | None = None, per_year: float = TRADING_DAYS) -> dict:
    """Total return, CAGR, annualised volatility and Sharpe (per bar x sqrt(``per_year``), rf=0, population std like
    ``puffin_bt.stats``), max drawdown and exposure (the mean of ``held``, 1.0 while a position
    is open) of an equity curve. ``backtest()`` passes the curve from the first forecast bar on,
    and ``held`` on the bars after it (those whose returns count)."""
    equity = equity.dropna()
    if len(equity) < 2 or equity.iloc[0] <= 0:
        return {"total_return": math.nan, "cagr": math.nan, "volatility": math.nan, "sharpe": math.nan,
                "max_drawdown": math.nan, "exposure": math.nan}
    rets = equity.pct_change().dropna()
    years = (equity.index[-1] - equity.index[0]).days / 365.25
    total = equity.iloc[-1] / equity.iloc[0] - 1
    std = rets.std(ddof=0)
    return {
        "total_return": float(total),
        "cagr": float((1 + total) ** (1 / years) - 1) if years > 0 and total > -1 else math.nan,
        "volatility": float(std * math.sqrt(per_year)),
        "sharpe": float(rets.mean() / std * math.sqrt(per_year)) if std > 0 else math.nan,
        "max_drawdown": float((1 - equity / equity.cummax()).max()),
        "exposure": float(held.mean()) if held is not None and len(held) else math.nan,
    }


def sharpe_stats(equity: pd.Series, benchmark: pd.Series | None, start, per_year: float = TRADING_DAYS) -> dict:
    """``puffin_bt.stats.sharpe_report`` of the returns after ``start`` (and against the benchmark's on the
    same dates), with ``period_start``; None and ``stats_note`` where a value cannot be computed."""
    returns = period_returns(equity, start)
    bench = None if benchmark is None else period_returns(benchmark, start).reindex(returns.index)
    try:
        report = sharpe_report(returns.to_numpy(), None if bench is None else bench.to_numpy(),
                               periods_per_year=per_year)
    except DataError as exc:  # e.g. a sleeve whose value reached zero: its returns are not all finite
        report = {"n_periods": len(returns), "sharpe": None, "psr": None, "sharpe_ci": None, "note": str(exc)}
        if bench is not None:
            report.update(sharpe_benchmark=None, sharpe_diff=None, sharpe_diff_ci=None)
    report["stats_note"] = report.pop("note")
    return {**report, "period_start": pd.Timestamp(start)}


def trade_stats(trades: pd.DataFrame, open_position: bool) -> dict:
    n = len(trades)
    return {"trades": n, "open_positions": int(open_position),
            "win_rate": float((trades["pnl_net"] > 0).mean()) if n else math.nan}


def annualisation(index: pd.DatetimeIndex, given: float | None) -> tuple[float, str]:
    """``periods_per_year`` given (the option), else inferred from the bars' dates."""
    return (float(given), "given (periods_per_year)") if given is not None else periods_per_year(index)


def portfolio_metrics(strat, equity: pd.DataFrame, cash: float, tickers: list[str], start,
                      given_per_year: float | None = None) -> dict:
    """The strategy's portfolio line: its equity curve over the statistics period (from ``start``, the first
    forecast bar) with PSR and Sharpe intervals against buy-and-hold, next to Backtrader's analyzers.
    Annualised by ``given_per_year`` bars a year, or by what the dates show."""
    per_year, basis = annualisation(equity.index, given_per_year)
    held_any = (strat.analyzers.sleeves.held()[tickers].sum(axis=1) > 0).astype(float)
    ta = strat.analyzers.tradeanalyzer.get_analysis()
    closed = ta.get("total", {}).get("closed", 0) if ta else 0
    won = ta.get("won", {}).get("total", 0) if ta and closed else 0
    dd = strat.analyzers.drawdown.get_analysis()
    rets = strat.analyzers.returns.get_analysis()
    sharpe_bt = strat.analyzers.sharpe.get_analysis().get("sharperatio")
    final_value = strat.broker.getvalue()
    curve = performance(equity["strategy"][equity.index >= start], held_any[held_any.index > start], per_year)
    # The one Sharpe ratio is the statistics' (None when undefined), from the same returns as the PSR.
    return {**{
        "start_value": cash,
        "final_value": final_value,
        "total_return": final_value / cash - 1,
        "cagr": curve["cagr"],
        "annual_return": rets.get("rnorm"),
        "volatility": curve["volatility"],
        "sharpe": None,  # the statistics' below, kept here in the order of the keys
        "sharpe_backtrader": sharpe_bt if sharpe_bt is not None else math.nan,
        "max_drawdown": dd.max.drawdown / 100.0,
        "trades": closed,
        "open_positions": sum(1 for d in strat.datas if strat.getposition(d).size != 0),
        "win_rate": won / closed if closed else math.nan,
        "exposure": curve["exposure"],
        "rejected_orders": len(strat.orders_rejected),
        "rejected": list(strat.orders_rejected),  # each with its ticker, date, status, size, price, cash, reason
        "not_traded": dict(getattr(strat, "not_traded", {})),
        # sizing="vol_target": per ticker, the bars each volatility source sized (strategies.voltarget's order)
        "vol_sources": {t: dict(counts) for t, counts in getattr(strat, "vol_sources", {}).items()},
        "traded_value": float(getattr(strat, "traded_value", math.nan)),
        "periods_per_year": per_year,
        "periods_per_year_basis": basis,
    }, **sharpe_stats(equity["strategy"], equity["buy_hold"], start, per_year)}


def benchmark_metrics(equity: pd.Series, start, per_year: float = TRADING_DAYS) -> dict:
    """Buy-and-hold's curve figures, PSR and Sharpe interval over the statistics period."""
    return {**performance(equity[equity.index >= start], per_year=per_year), **sharpe_stats(equity, None, start,
                                                                                             per_year)}


def ticker_metrics(strat, bench_strat, frames: dict, trades: pd.DataFrame,
                   starts: dict, per_year: float = TRADING_DAYS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per ticker: the strategy's sleeve (performance, trades, PSR, Sharpe intervals vs the ticker's
    buy-and-hold) and the benchmark's, from the ticker's first forecast bar ``starts[ticker]`` on."""
    sleeves = strat.analyzers.sleeves.get_analysis()
    bench_sleeves = bench_strat.analyzers.sleeves.get_analysis()
    helds = strat.analyzers.sleeves.held()
    per_ticker, bench_per_ticker = {}, {}
    shared_cash = hasattr(strat, "rebalances")  # the rank strategy: one pool of cash, no per-ticker sleeve
    for t in frames:
        start = starts[t]
        still_open = strat.getposition(strat.getdatabyname(t)).size != 0
        held = helds[t]
        own = trades[trades["ticker"] == t]
        if shared_cash:
            per_ticker[t] = {**_capital_used_return(own, held[held.index > start]), **trade_stats(own, still_open)}
        else:
            curve = performance(sleeves[t][sleeves.index >= start], held[held.index > start], per_year)
            per_ticker[t] = {**curve, **sharpe_stats(sleeves[t], bench_sleeves[t], start, per_year),
                             **trade_stats(own, still_open)}
        bench_per_ticker[t] = benchmark_metrics(bench_sleeves[t], start, per_year)
    return _frame(per_ticker), _frame(bench_per_ticker)


def _capital_used_return(trades: pd.DataFrame, held: pd.Series) -> dict:
    """A ranked book's attribution to one ticker: the net P&L of its closed trades over the capital they used (each
    trade's entry value), since its cash is the portfolio's, not a sleeve of its own whose curve would mean anything
    (a sleeve view showed -305% for a long-only name). The curve figures are left blank, with the reason."""
    capital = float((trades["entry_price"] * trades["size"].abs()).sum()) if len(trades) else 0.0
    return {"total_return": float(trades["pnl_net"].sum()) / capital if capital > 0 else math.nan,
            "cagr": math.nan, "volatility": math.nan, "sharpe": None, "psr": None, "max_drawdown": math.nan,
            "exposure": float(held.mean()) if len(held) else math.nan,
            "stats_note": "the rank strategy's tickers share one pool of cash: total_return is the net P&L of the "
                          "ticker's closed trades over the capital they used; no per-ticker curve, Sharpe or drawdown"}


def _frame(rows: dict) -> pd.DataFrame:
    """Rows of mixed values (floats, [lo, hi] lists, notes) as a DataFrame, one row per ticker."""
    return pd.DataFrame.from_dict(rows, orient="index")
