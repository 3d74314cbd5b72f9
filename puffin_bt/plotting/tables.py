"""A strategy that ran, as the tables the interactive trade chart reads (``html.write_trades_html``): prices from its
datas, round trips and open positions from Backtrader's records, forecasts and retrain dates from its forecast
indicators, and the portfolio value from the Broker observer next to an equal-weight buy-and-hold."""

from __future__ import annotations

import math

import backtrader as bt
import numpy as np
import pandas as pd

from ..adapters.positions import data_names, open_positions, round_trips

__all__ = ["html_inputs", "prices_and_rule"]

NO_FORECASTS = "no forecast indicator in this strategy: prices, volume, trades and equity only"
EQUAL_WEIGHT = "buy and hold (equal weight, no costs)"


def _dates(numbers) -> list:
    return [bt.num2date(x) for x in numbers]


def price_frame(data) -> pd.DataFrame:
    """OHLCV of the bars the data delivered in the run, indexed by date; a data without open/high/low (a line of
    closes) gets its close there, and volume is left out when there is none."""
    n = len(data)
    aliases = data.lines.getlinealiases()
    columns = {name: np.asarray(getattr(data.lines, name).array[:n], dtype=float)
               for name in ("open", "high", "low", "close", "volume") if name in aliases}
    close = columns["close"]
    for name in ("open", "high", "low"):
        if name not in columns or not np.isfinite(columns[name]).any():
            columns[name] = close
    if "volume" in columns and not (np.nan_to_num(columns["volume"]) > 0).any():
        del columns["volume"]
    return pd.DataFrame(columns, index=pd.DatetimeIndex(_dates(data.datetime.array[:n])))


def _is_forecast(ind) -> bool:
    try:
        return "pred_return" in ind.lines.getlinealiases()
    except AttributeError:
        return False


def forecast_indicators(strat, datas) -> dict[int, object]:
    """``id(data) -> its first forecast indicator`` (one with a ``pred_return`` line on that data)."""
    found: dict[int, object] = {}
    keep = {id(d) for d in datas}
    for ind in strat.getindicators():
        data = getattr(ind, "data", None)
        if _is_forecast(ind) and id(data) in keep:
            found.setdefault(id(data), ind)
    return found


def forecast_tables(strat, datas) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The forecasts (ticker, date, close, pred_return, realized_return, and pred_lo/pred_hi when the indicator has
    an interval) and the retrain dates (``indicator.folds``) of the datas' forecast indicators."""
    names = data_names(strat, datas)
    forecasts, folds = [], []
    indicators = forecast_indicators(strat, datas)
    for data in datas:
        ind = indicators.get(id(data))
        if ind is None:
            continue
        n = len(data)
        dates = _dates(data.datetime.array[:n])
        close = np.asarray(data.close.array[:n], dtype=float)
        horizon = int(getattr(ind.p, "horizon", 1) or 1)
        realized = np.full(n, np.nan)
        realized[: n - horizon] = close[horizon:] / close[: n - horizon] - 1
        frame = {"ticker": names[id(data)], "date": dates, "close": close,
                 "pred_return": np.asarray(ind.lines.pred_return.array[:n], dtype=float), "realized_return": realized}
        if {"pred_lo", "pred_hi"} <= set(ind.lines.getlinealiases()):
            frame["pred_lo"] = np.asarray(ind.lines.pred_lo.array[:n], dtype=float)
            frame["pred_hi"] = np.asarray(ind.lines.pred_hi.array[:n], dtype=float)
        forecasts.append(pd.DataFrame(frame).dropna(subset=["pred_return"]))
        for fold in getattr(ind, "folds", None) or []:
            bar = int(getattr(fold, "bar", -1))
            if 0 <= bar < n:
                row = fold.to_dict() if hasattr(fold, "to_dict") else {"bar": bar}
                folds.append({"ticker": names[id(data)], **row, "date": dates[bar]})
    columns = ["ticker", "date", "close", "pred_return", "realized_return"]
    return (pd.concat(forecasts, ignore_index=True) if forecasts else pd.DataFrame(columns=columns),
            pd.DataFrame(folds) if folds else pd.DataFrame(columns=["ticker", "date"]))


def equity_frame(strat, prices: dict[str, pd.DataFrame]) -> pd.DataFrame | None:
    """The portfolio value per bar (Backtrader's Broker observer, there with ``stdstats=True``, the default) next to
    an equal-weight buy-and-hold of ``prices`` bought at each data's first close, without costs; None without it."""
    observer = next((o for o in strat.getobservers() if "value" in o.lines.getlinealiases()), None)
    if observer is None:
        return None
    n = len(strat)
    index = pd.DatetimeIndex(_dates(strat.datetime.array[:n]))
    value = np.asarray(observer.lines.value.array[:n], dtype=float)
    start = float(getattr(strat.broker, "startingcash", value[0]))
    growth = [(px["close"] / px["close"].iloc[0]).reindex(index).ffill().fillna(1.0) for px in prices.values()]
    buy_hold = start * sum(growth) / len(growth)
    return pd.DataFrame({"strategy": value, "buy_hold": buy_hold.to_numpy()}, index=index)


def _thresholds(strat, indicators) -> tuple[float | None, float | None, str]:
    """Entry/exit threshold lines and the rule in words: the strategy's ``entry``/``exit`` params when it has them
    (ForecastThresholdStrategy), else the forecast indicator's plothlines."""
    p = getattr(strat, "p", None)
    entry, exit_ = getattr(p, "entry", None), getattr(p, "exit", None)
    if isinstance(entry, (int, float)) and isinstance(exit_, (int, float)) and indicators:
        if getattr(p, "allow_short", False):
            return entry, exit_, (f"long when pred return > {entry:+.2%}, short when < {-entry:+.2%}; "
                                  f"a position closes when it crosses {exit_:.2%} the other way")
        return entry, exit_, f"long when pred return > {entry:+.2%}, flat when < {-exit_:+.2%}"
    if not indicators:
        return None, None, NO_FORECASTS
    levels = [float(h) for ind in indicators for h in (ind.plotinfo._get("plothlines", []) or [])
              if isinstance(h, (int, float)) and math.isfinite(h)]
    up, down = [h for h in levels if h > 0], [-h for h in levels if h < 0]
    entry, exit_ = (min(up) if up else None), (min(down) if down else None)
    shown = " / ".join(f"{h:+.2%}" for h in (entry, None if exit_ is None else -exit_) if h is not None)
    return entry, exit_, f"threshold lines at {shown} (the forecast indicator's plothlines)" if shown else ""


def prices_and_rule(strat, datas) -> dict:
    """``prices`` ({name: OHLCV}) of ``datas`` and the strategy's ``entry``/``exit`` threshold lines and ``rule`` in
    words: the parts of ``write_trades_html``'s input that only the Cerebro knows."""
    names = data_names(strat, datas)
    entry, exit_, rule = _thresholds(strat, list(forecast_indicators(strat, datas).values()))
    return dict(prices={names[id(d)]: price_frame(d) for d in datas}, entry=entry, exit=exit_, rule=rule)


def html_inputs(strat, datas) -> dict:
    """Keyword arguments for ``write_trades_html`` describing ``strat``'s run on ``datas``."""
    inputs = prices_and_rule(strat, datas)
    forecasts, folds = forecast_tables(strat, datas)
    return dict(inputs, trades=round_trips(strat, datas), open_positions=open_positions(strat, datas),
                forecasts=forecasts, folds=folds, equity=equity_frame(strat, inputs["prices"]),
                benchmark=EQUAL_WEIGHT, title=f"{type(strat).__name__}: trades")
