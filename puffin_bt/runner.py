"""``backtest()``: one call from price data to a portfolio backtest with metrics, trades and plots.

It builds a Cerebro with ``ForecastThresholdStrategy`` over every ticker, runs it
with Backtrader's own analyzers, runs an equal-weight buy-and-hold benchmark on
the same data and costs, and collects everything in a ``BacktestResult``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd

from ._io import atomic_write_bytes
from ._validate import check_float
from .errors import ConfigError, DataError, PuffinError
from .evaluation import forecast_frame
from .feeds import FrameData
from .indicators import FORECAST_PARAMS
from .parallel import one_process_options, resolve_workers
from .store import ForecastStore
from .walkforward import WALK_FORWARD_DEFAULTS, make_walk_forward, require_history

TRADING_DAYS = 252


class SleeveValue(bt.Analyzer):
    """Mark-to-market value of each data's sleeve (its share of the starting cash plus its
    realised and open P&L net of commissions) and whether it held a position, per bar.
    The sleeves add up to the portfolio value."""

    def start(self) -> None:
        n = max(1, len(self.strategy.datas))
        self.alloc = self.strategy.broker.startingcash / n
        self.realized = {d: 0.0 for d in self.strategy.datas}
        self.open_trades: dict = {d: {} for d in self.strategy.datas}
        self.rows: list = []

    def notify_trade(self, trade) -> None:
        book = self.open_trades[trade.data]
        if trade.isclosed:
            book.pop(trade.ref, None)
            self.realized[trade.data] += trade.pnlcomm
        else:
            book[trade.ref] = trade

    def next(self) -> None:
        row = {"date": self.strategy.datetime.datetime(0)}
        for d in self.strategy.datas:
            value = self.alloc + self.realized[d]
            held = 0.0
            if len(d):
                for trade in self.open_trades[d].values():
                    value += trade.size * (d.close[0] - trade.price) - trade.commission
                held = float(self.strategy.getposition(d).size != 0)
            row[d._name] = value
            row[f"{d._name}__held"] = held
        self.rows.append(row)

    def get_analysis(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows).set_index("date") if self.rows else pd.DataFrame()


class BuyAndHold(bt.Strategy):
    """Equal-weight buy-and-hold: buys each data at its bar ``start_bar`` (fills next open), then holds.

    ``backtest()`` sets ``start_bar`` to the first forecast bar, so the benchmark and the
    strategy both sit in cash through the walk-forward warm-up and the comparison is fair.
    """

    params = (("reserve", 0.02), ("start_bar", 0))

    def __init__(self) -> None:
        self.weight = (1.0 - self.p.reserve) / max(1, len(self.datas))
        self.bought: set = set()

    def prenext(self) -> None:
        self.next()

    def next(self) -> None:
        for d in self.datas:
            if (d not in self.bought and len(d) > self.p.start_bar
                    and d.datetime.datetime(0) == self.datetime.datetime(0)):
                size = int(self.broker.startingcash * self.weight / d.close[0])
                if size > 0:
                    self.buy(data=d, size=size)
                self.bought.add(d)


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


def _trade_stats(trades: pd.DataFrame, open_position: bool) -> dict:
    n = len(trades)
    return {"trades": n, "open_positions": int(open_position),
            "win_rate": float((trades["pnl_net"] > 0).mean()) if n else math.nan}


@dataclass
class BacktestResult:
    """Everything a backtest produced. ``summary()`` prints the compact table."""

    metrics: dict
    per_ticker: pd.DataFrame
    benchmark: dict
    benchmark_per_ticker: pd.DataFrame
    equity: pd.DataFrame
    trades: pd.DataFrame
    forecasts: pd.DataFrame
    folds: pd.DataFrame
    config: dict
    seconds: float
    cerebro: bt.Cerebro = field(repr=False)
    strategy: bt.Strategy = field(repr=False)

    def table(self) -> pd.DataFrame:
        """Portfolio and per-ticker rows, strategy next to buy-and-hold."""
        cols = ["total_return", "cagr", "sharpe", "max_drawdown", "trades", "open_positions", "win_rate", "exposure"]
        rows = {"PORTFOLIO": {**{c: self.metrics.get(c) for c in cols},
                              "bh_total_return": self.benchmark["total_return"],
                              "bh_sharpe": self.benchmark["sharpe"],
                              "bh_max_drawdown": self.benchmark["max_drawdown"]}}
        for ticker, row in self.per_ticker.iterrows():
            bh = self.benchmark_per_ticker.loc[ticker]
            rows[ticker] = {**{c: row.get(c) for c in cols}, "bh_total_return": bh["total_return"],
                            "bh_sharpe": bh["sharpe"], "bh_max_drawdown": bh["max_drawdown"]}
        return pd.DataFrame(rows).T

    def summary(self) -> str:
        t = self.table()
        out = pd.DataFrame(index=t.index)
        pct = lambda s: s.map(lambda v: "" if pd.isna(v) else f"{100 * v:6.1f}%")  # noqa: E731
        num = lambda s: s.map(lambda v: "" if pd.isna(v) else f"{v:5.2f}")  # noqa: E731
        out["return"] = pct(t["total_return"])
        out["B&H return"] = pct(t["bh_total_return"])
        out["CAGR"] = pct(t["cagr"])
        out["Sharpe"] = num(t["sharpe"])
        out["B&H Sharpe"] = num(t["bh_sharpe"])
        out["max DD"] = pct(t["max_drawdown"])
        out["B&H max DD"] = pct(t["bh_max_drawdown"])
        out["trades"] = t["trades"].map(lambda v: "" if pd.isna(v) else str(int(v)))
        out["open"] = t["open_positions"].map(lambda v: "" if pd.isna(v) else str(int(v)))
        out["win rate"] = pct(t["win_rate"])
        out["exposure"] = pct(t["exposure"])
        cfg = self.config
        head = (f"{cfg['model'].upper()} walk-forward, {len(self.per_ticker)} ticker(s), "
                f"{self.equity.index[0]:%Y-%m-%d}..{self.equity.index[-1]:%Y-%m-%d}, "
                f"{len(self.folds)} folds, {self.seconds:.1f}s")
        text = head + "\n" + out.to_string()
        if self.skipped:
            text += "\nskipped: " + "; ".join(f"{t}: {why}" for t, why in self.skipped.items())
        return text

    @property
    def skipped(self) -> dict:
        """Tickers left out (``skip_failed=True``) and why."""
        return self.config.get("skipped", {})

    def save(self, out_dir) -> Path:
        """Write trades.csv, forecasts.csv, folds.csv, equity.csv, metrics.json and config.json."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in (("trades", self.trades), ("forecasts", self.forecasts),
                            ("folds", self.folds), ("equity", self.equity)):
            atomic_write_bytes(out / f"{name}.csv", frame.to_csv(index=name in ("equity",)).encode())
        metrics = {"portfolio": self.metrics, "benchmark": self.benchmark,
                   "per_ticker": _records(self.per_ticker), "benchmark_per_ticker": _records(self.benchmark_per_ticker),
                   "seconds": self.seconds}
        atomic_write_bytes(out / "metrics.json", json.dumps(_jsonable(metrics), indent=2).encode())
        atomic_write_bytes(out / "config.json", json.dumps(_jsonable(self.config), indent=2).encode())
        return out

    def plot(self, out_dir=None) -> dict:
        """Per-ticker trade charts plus equity vs buy-and-hold; PNGs in ``out_dir`` if given."""
        from .plotting import plot_equity, plot_trades

        figs = plot_trades(self.cerebro, out_dir=out_dir, strategy=self.strategy)
        out_path = None if out_dir is None else Path(out_dir) / "equity.png"
        figs["equity"] = plot_equity(self.equity["strategy"], self.equity["buy_hold"], out_path=out_path,
                                     title=f"{self.config['model'].upper()} threshold strategy vs buy-and-hold")
        return figs


def _records(frame: pd.DataFrame) -> dict:
    return {str(k): v for k, v in frame.to_dict(orient="index").items()}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (pd.Timestamp,)):
        return obj.isoformat()
    return obj


class _FoldBar:
    """A tqdm bar over every fold of every ticker, showing the current fold's loss."""

    def __init__(self, total: int, schedule=None) -> None:
        from tqdm.auto import tqdm

        self.schedule = schedule
        self.bar = tqdm(total=total, unit="fold", desc="walk-forward", dynamic_ncols=True)

    def on_fold(self, ticker: str, record) -> None:
        date = "" if record.date is None else f" {str(record.date)[:10]}"  # a str when it came from a worker
        self.bar.set_postfix_str(f"{ticker}{date} val_loss={record.val_loss:.3f}")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class _TickerBar:
    """A tqdm bar over tickers for parallel forecasting (folds run inside the workers)."""

    def __init__(self, total: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="ticker", desc="forecasts", dynamic_ncols=True)

    def on_done(self, ticker: str, status: str) -> None:
        self.bar.set_postfix_str(f"{ticker}: {status[:60]}")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _fold_progress_bar(frames: Mapping[str, pd.DataFrame], forecast_kwargs: dict) -> _FoldBar:
    options = {k: v for k, v in forecast_kwargs.items() if k in WALK_FORWARD_DEFAULTS}
    schedule = make_walk_forward("lstm", **options).schedule
    return _FoldBar(sum(len(schedule.fold_bars(len(df))) for df in frames.values()), schedule)


def resolve_data(data=None, start=None, end=None, cache_dir=None, skip_failed: bool = False):
    """None -> bundled sample; list of tickers -> yfinance (cached); dict of DataFrames -> validated.

    Returns ``(frames, skipped)``; with ``skip_failed`` a ticker that cannot be loaded is
    recorded in ``skipped`` (ticker -> reason) instead of raising.
    """
    from .data import load_prices, load_sample, validate_ohlcv

    if data is None:
        return load_sample(start=start, end=end), {}
    if isinstance(data, str):
        data = [data]
    if isinstance(data, Mapping):
        if not data:
            raise ConfigError("data is an empty dict; pass {ticker: DataFrame} with at least one entry")

        def load_one(name):
            df = validate_ohlcv(data[name], name=str(name))
            df = df.loc[start:end] if (start or end) else df
            if df.empty:
                raise DataError(f"{name}: no bars between start={start} and end={end}; widen the date range")
            return df
    elif isinstance(data, Sequence):
        def load_one(name):
            return load_prices([name], start=start, end=end, cache_dir=cache_dir)[name]
    else:
        raise ConfigError(
            f"data={type(data).__name__} is not supported; pass None, a list of tickers or a dict of DataFrames"
        )
    frames, skipped = {}, {}
    for name in data:
        try:
            frames[str(name)] = load_one(name)
        except PuffinError as exc:
            if not skip_failed:
                raise
            skipped[str(name)] = " ".join(str(exc).split())
    if not frames:
        raise DataError(f"no ticker could be loaded; skipped: {skipped}")
    return frames, skipped


def add_feeds(cerebro: bt.Cerebro, frames: Mapping[str, pd.DataFrame]) -> None:
    for name, df in frames.items():
        cerebro.adddata(FrameData(dataname=df), name=name)


def _configure_broker(cerebro: bt.Cerebro, cash: float, commission: float) -> None:
    cerebro.broker.setcash(cash)
    cerebro.broker.setcommission(commission=commission)


def backtest(
    data=None,
    model: str = "lstm",
    start=None,
    end=None,
    cash: float = 100_000,
    commission: float = 0.001,
    entry: float = 0.005,
    exit: float = 0.005,
    allow_short: bool = False,
    weight: float | None = None,
    runonce: bool = True,
    cache_dir=None,
    store=True,
    progress: bool = False,
    workers: int | str | None = None,
    executor: str | None = None,
    address: str | None = None,
    skip_failed: bool = False,
    **forecast_kwargs,
) -> BacktestResult:
    """Backtest ``ForecastThresholdStrategy`` on a portfolio and benchmark it against buy-and-hold.

    ``forecast_kwargs`` go to every forecast indicator (lookback, retrain_every,
    train_window, min_train, epochs, refit_epochs, hidden_dim, num_layers, dropout,
    lr, batch_size, weight_decay, seed, device, horizon, ...).

    ``workers`` (a number, or ``"auto"`` = one per CPU core up to one per ticker) /
    ``executor`` compute the tickers' forecasts in parallel first
    (``"local"`` process pool, or ``"ray"`` joining ``address`` / a local runtime), into
    the store; the Backtrader run then reads them. ``skip_failed`` reports and skips
    tickers whose data cannot be loaded or forecast instead of failing the whole run
    (see ``BacktestResult.skipped``).

    ``store=True`` keeps forecasts in a ``ForecastStore`` under ``cache_dir`` (default:
    ``$PUFFIN_BT_CACHE`` or the user cache directory), so a re-run that changes only
    thresholds, sizing, commission or cash does not retrain; ``False`` disables it.

    >>> res = backtest(model="gru", start="2011-01-01", epochs=2, hidden_dim=8)  # doctest: +SKIP
    >>> print(res.summary())  # doctest: +SKIP
    """
    from strategies import ForecastThresholdStrategy

    started = time.perf_counter()
    cash = check_float("cash", cash, 0.0, min_inclusive=False)
    commission = check_float("commission", commission, 0.0, 0.1)
    entry = check_float("entry", entry, 0.0, 1.0)
    exit = check_float("exit", exit, 0.0, 1.0)
    known = {name for name, _ in FORECAST_PARAMS}
    unknown = set(forecast_kwargs) - known
    if unknown:
        raise ConfigError(f"backtest() got unknown argument(s) {sorted(unknown)}; forecast options are {sorted(known)}")
    frames, skipped = resolve_data(data, start, end, cache_dir, skip_failed=skip_failed)
    min_train = make_walk_forward("lstm", **{k: v for k, v in forecast_kwargs.items()
                                             if k in WALK_FORWARD_DEFAULTS}).schedule.min_train
    for name in list(frames):
        try:
            require_history(name, len(frames[name]), min_train)
        except DataError as exc:
            if not skip_failed:
                raise
            skipped[name] = " ".join(str(exc).split())
            del frames[name]
    forecast_kwargs = one_process_options(forecast_kwargs, workers)
    workers = resolve_workers(workers, len(frames))
    parallel = executor is not None or (workers is not None and workers > 1)
    if store is True or (parallel and store in (None, False)):
        store = ForecastStore(cache_dir)
    elif store is False:
        store = None
    elif store is not None and not isinstance(store, ForecastStore):
        raise ConfigError(f"store={store!r} must be True, False or a ForecastStore")
    if parallel:
        from .parallel import precompute_forecasts

        # Folds run in the workers; they report back, so the bar still moves fold by fold (Ray: by ticker).
        fold_bar = _fold_progress_bar(frames, forecast_kwargs) if progress and executor != "ray" else None
        ticker_bar = _TickerBar(len(frames)) if progress and executor == "ray" else None
        on_done = None if ticker_bar is None else ticker_bar.on_done
        if fold_bar is not None:
            def on_done(ticker, status, _bar=fold_bar):
                if status == "cached":  # served from the store: count its folds as done
                    _bar.bar.update(len(_bar.schedule.fold_bars(len(frames[ticker]))))
        try:
            report = precompute_forecasts(frames, model=model if isinstance(model, str) else "lstm", store=store,
                                          executor=executor or "local", workers=workers, address=address,
                                          on_done=on_done,
                                          on_fold=None if fold_bar is None else fold_bar.on_fold,
                                          **forecast_kwargs)
        finally:
            for bar_ in (fold_bar, ticker_bar):
                if bar_ is not None:
                    bar_.close()
        if report.failed and not skip_failed:
            ticker, why = next(iter(report.failed.items()))
            raise DataError(f"forecasting failed for ticker {ticker!r}: {why}")
        skipped.update(report.failed)
        frames = {t: df for t, df in frames.items() if t not in report.failed}
    if not frames:
        raise DataError(f"no ticker left to backtest; skipped: {skipped}")
    if store is not None and runonce:
        forecast_kwargs = {**forecast_kwargs, "store": store}
    tickers = list(frames)

    cerebro = bt.Cerebro(runonce=runonce, stdstats=True)
    add_feeds(cerebro, frames)
    _configure_broker(cerebro, cash, commission)
    bar = _fold_progress_bar(frames, forecast_kwargs) if progress and not parallel else None
    if bar is not None:
        forecast_kwargs = {**forecast_kwargs, "on_fold": bar.on_fold}
    cerebro.addstrategy(ForecastThresholdStrategy, model=model, forecast_kwargs=forecast_kwargs, entry=entry,
                        exit=exit, allow_short=allow_short, weight=weight)
    cerebro.addanalyzer(bt.analyzers.SharpeRatio, _name="sharpe", timeframe=bt.TimeFrame.Days,
                        annualize=True, riskfreerate=0.0, factor=TRADING_DAYS)
    cerebro.addanalyzer(bt.analyzers.DrawDown, _name="drawdown")
    cerebro.addanalyzer(bt.analyzers.Returns, _name="returns", tann=TRADING_DAYS)
    cerebro.addanalyzer(bt.analyzers.TradeAnalyzer, _name="tradeanalyzer")
    cerebro.addanalyzer(bt.analyzers.TimeReturn, _name="timereturn", timeframe=bt.TimeFrame.Days)
    cerebro.addanalyzer(SleeveValue, _name="sleeves")
    try:
        strat = cerebro.run()[0]
    finally:
        if bar is not None:
            bar.close()

    bench = bt.Cerebro(runonce=runonce, stdstats=False)
    add_feeds(bench, frames)
    _configure_broker(bench, cash, commission)
    bench.addstrategy(BuyAndHold, start_bar=min_train - 1)
    bench.addanalyzer(SleeveValue, _name="sleeves")
    bench.addanalyzer(bt.analyzers.TimeReturn, _name="timereturn", timeframe=bt.TimeFrame.Days)
    bench_strat = bench.run()[0]

    sleeves = strat.analyzers.sleeves.get_analysis()
    bench_sleeves = bench_strat.analyzers.sleeves.get_analysis()
    equity = pd.DataFrame({
        "strategy": sleeves[tickers].sum(axis=1),
        "buy_hold": bench_sleeves[tickers].sum(axis=1),
    })
    equity.index = pd.DatetimeIndex(equity.index, name="date")
    trades = pd.DataFrame(strat.trade_log, columns=[
        "ticker", "direction", "entry_date", "exit_date", "entry_price", "exit_price", "size", "bars",
        "pnl", "pnl_net", "commission", "return"])

    held_any = (sleeves[[f"{t}__held" for t in tickers]].sum(axis=1) > 0).astype(float)
    ta = strat.analyzers.tradeanalyzer.get_analysis()
    closed = ta.get("total", {}).get("closed", 0) if ta else 0
    won = ta.get("won", {}).get("total", 0) if ta and closed else 0
    dd = strat.analyzers.drawdown.get_analysis()
    rets = strat.analyzers.returns.get_analysis()
    sharpe = strat.analyzers.sharpe.get_analysis().get("sharperatio")
    final_value = strat.broker.getvalue()
    curve = performance(equity["strategy"])
    metrics = {
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
    }
    benchmark = performance(equity["buy_hold"])
    per_ticker, bench_per_ticker = {}, {}
    for t in tickers:
        held = sleeves[f"{t}__held"]
        alive = frames[t].index.min()
        still_open = strat.getposition(strat.getdatabyname(t)).size != 0
        per_ticker[t] = {**performance(sleeves[t][sleeves.index >= alive], held[held.index >= alive]),
                         **_trade_stats(trades[trades["ticker"] == t], still_open)}
        bench_per_ticker[t] = performance(bench_sleeves[t][bench_sleeves.index >= alive])

    forecasts, folds = [], []
    for data, fc in strat.forecasts.items():
        name = data._name
        n = len(data)
        closes = np.asarray(data.close.array[:n])
        dates = [bt.num2date(x) for x in data.datetime.array[:n]]
        forecasts.append(forecast_frame(name, dates, closes, np.asarray(fc.pred_return.array[:n]), fc.p.horizon))
        folds.extend({"ticker": name, **f.to_dict()} for f in fc.folds)
    forecasts_df = pd.concat(forecasts, ignore_index=True) if forecasts else pd.DataFrame()
    defaults = WALK_FORWARD_DEFAULTS
    config = {"model": model if isinstance(model, str) else model.__name__, "tickers": tickers,
              "start": str(equity.index[0].date()), "end": str(equity.index[-1].date()),
              "cash": cash, "commission": commission, "entry": entry, "exit": exit,
              "allow_short": allow_short, "weight": weight, "runonce": runonce,
              "skipped": skipped,
              "store": None if store is None else {"path": str(store.root), "hits": store.hits,
                                                   "misses": store.misses},
              "forecast": {**defaults, **{k: v for k, v in forecast_kwargs.items() if k in defaults}}}
    return BacktestResult(
        metrics=metrics,
        per_ticker=pd.DataFrame(per_ticker).T,
        benchmark=benchmark,
        benchmark_per_ticker=pd.DataFrame(bench_per_ticker).T,
        equity=equity,
        trades=trades,
        forecasts=forecasts_df,
        folds=pd.DataFrame(folds),
        config=config,
        seconds=time.perf_counter() - started,
        cerebro=cerebro,
        strategy=strat,
    )
