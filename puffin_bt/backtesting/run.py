"""``backtest()``: one call from price data to a portfolio backtest with metrics, trades and plots.

In steps: check the options (once, here at the boundary) -> load the data -> precompute the
tickers' forecasts in parallel (into the forecast store) -> build and run the Cerebro with
``ForecastThresholdStrategy`` and Backtrader's analyzers -> run the buy-and-hold benchmark on the
same data and costs -> collect everything in a ``BacktestResult``.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd

from ..adapters.analyzers import SleeveValue
from ..adapters.feeds import FrameData
from ..adapters.indicators import GlobalForecast
from ..adapters.positions import open_positions
from ..data import resolve_data
from ..errors import ConfigError, DataError, failures
from ..evaluation import forecast_frame
from ..options import (
    BACKTEST_GROUPS,
    CELLS,
    check_sizing,
    names,
    options_doc,
    require_return_target,
    resolve,
    signature_parameters,
)
from ..store import ForecastStore
from ..tickers import cuda_devices, one_process_options, precompute_forecasts, resolve_workers
from ..walkforward import make_walk_forward, require_history
from .metrics import PERIOD_COVERS, TRADING_DAYS, WHOLE_RUN_COVERS, benchmark_metrics, portfolio_metrics, ticker_metrics
from .progress import FoldBar, TickerBar, fold_progress_bar
from .result import BacktestResult

__all__ = ["backtest", "shipped_strategy"]

GROUPS = BACKTEST_GROUPS  # backtest()'s keyword options, all from the registry
# Strategies shipped in the top-level ``strategies`` package beside puffin_bt: module and class.
SHIPPED = {"threshold": ("forecast_threshold", "ForecastThresholdStrategy"), "rank": ("forecast_rank", "ForecastRankStrategy"),
           "buy_and_hold": ("buy_and_hold", "BuyAndHold")}
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "strategies"


def shipped_strategy(name: str) -> type:
    """A strategy class from the ``strategies`` package installed beside puffin_bt, found by its file
    path: a user's own top-level ``strategies`` package (first on ``sys.path``) cannot shadow it."""
    module_name, class_name = SHIPPED[name]
    package = _shipped_package()
    return getattr(importlib.import_module(f"{package.__name__}.{module_name}"), class_name)


def _shipped_package():
    found = sys.modules.get("strategies")
    if found is None:
        spec = importlib.util.find_spec("strategies")  # where it is, without running anyone's code
        if spec is not None and spec.origin and Path(spec.origin).resolve().parent == SHIPPED_DIR:
            return importlib.import_module("strategies")
    elif Path(getattr(found, "__file__", "") or "").resolve().parent == SHIPPED_DIR:
        return found
    private = "puffin_bt_shipped_strategies"  # a user's "strategies" is another package: load ours beside it
    if private not in sys.modules:
        spec = importlib.util.spec_from_file_location(private, SHIPPED_DIR / "__init__.py",
                                                      submodule_search_locations=[str(SHIPPED_DIR)])
        if spec is None or spec.loader is None:
            raise ConfigError(f"puffin_bt's strategies are missing from {SHIPPED_DIR}; reinstall puffin_bt")
        module = importlib.util.module_from_spec(spec)
        sys.modules[private] = module
        spec.loader.exec_module(module)
    return sys.modules[private]


@dataclass
class _Run:
    """Everything backtest() has decided before Backtrader runs."""

    frames: dict
    skipped: dict
    options: dict  # every registry option of GROUPS, checked
    forecast: dict  # the walk-forward options handed to the indicators
    store: ForecastStore | None
    parallel: bool


def backtest(data=None, model="lstm", *, runonce: bool = True, cache_dir=None, store=True, progress: bool = False,
             **options) -> BacktestResult:
    started = time.perf_counter()
    run = _prepare(data, model, runonce, cache_dir, store, progress, options)
    strat, cerebro = _run_strategy(run, model, runonce, progress)
    bench_strat = _run_benchmark(run, runonce)
    return _collect(run, model, runonce, strat, cerebro, bench_strat, time.perf_counter() - started)


backtest.__doc__ = f"""Backtest ``ForecastThresholdStrategy`` on a portfolio and benchmark it against buy-and-hold.

    ``data``: None (the bundled sample), a list of tickers (yfinance, cached) or ``{{ticker: DataFrame}}``.
    ``model``: a model family (``"lstm"``, ``"gru"``, ``"tcn"``: ``puffin_bt.models``) or a forecast indicator class.

    The walk-forward options go to every forecast indicator; ``workers`` (``"auto"`` = one per CPU
    core up to one per ticker) / ``executor`` compute the tickers' forecasts in parallel first
    (``"local"`` process pool, or ``"ray"`` joining ``address`` / a local runtime); the Backtrader run
    then reads them. ``skip_failed`` reports and skips tickers whose data cannot be loaded or
    forecast instead of failing the whole run (see ``BacktestResult.skipped``).

    ``store=True`` keeps forecasts in a ``ForecastStore`` under ``cache_dir`` (default:
    ``$PUFFIN_BT_CACHE`` or the user cache directory), so a re-run that changes only thresholds,
    sizing, commission or cash does not retrain; ``False`` keeps nothing on disk. ``runonce=False``
    runs Backtrader event-driven (forecasts are then computed bar by bar, in the run).

    Options (``puffin_bt.options``):
{options_doc(*GROUPS)}

    >>> res = backtest(model="gru", start="2011-01-01", epochs=2, hidden_dim=8)  # doctest: +SKIP
    >>> print(res.summary())  # doctest: +SKIP
    """
backtest.__signature__ = inspect.Signature([
    *list(inspect.signature(backtest).parameters.values())[:-1], *signature_parameters(GROUPS)])


def _prepare(data, model, runonce: bool, cache_dir, store, progress: bool, given: Mapping) -> _Run:
    """Check the options, load the data and, when it pays, precompute the forecasts in parallel."""
    opts = resolve(given, GROUPS, "backtest()")
    require_return_target(opts["target"], f"the {opts['strategy']} strategy")
    if opts["strategy"] == "rank":
        check_sizing("rank", opts["sizing"])
    forecast = {name: opts[name] for name in names("forecast") if name in given}
    cell = model if isinstance(model, str) else getattr(model, "cell", None)
    # Every walk-forward check (the schedule, the device, the memory the model needs) before the data loads.
    schedule = make_walk_forward(cell if cell in CELLS else CELLS[0], **forecast).schedule
    frames, skipped = resolve_data(data, opts["start"], opts["end"], cache_dir, skip_failed=opts["skip_failed"])
    for name in list(frames):
        try:
            require_history(name, len(frames[name]), schedule.min_train)
        except DataError as exc:
            if not opts["skip_failed"]:
                raise
            skipped[name] = " ".join(str(exc).split())
            del frames[name]
    forecast = one_process_options(forecast, opts["workers"])
    workers = resolve_workers(opts["workers"], len(frames), opts["device"])
    # Precomputed forecasts reach the run through the store, which only runonce reads; a global model is one
    # walk-forward over every ticker (its cold folds may still use the fold pool). On a GPU the tickers are
    # batched there by one process per GPU, even when that is one process.
    parallel = runonce and cell is not None and opts["scope"] == "per_ticker" and \
        (opts["executor"] is not None or (workers or 1) > 1 or (cuda_devices(opts["device"]) > 0 and len(frames) > 1))
    if opts["strategy"] == "rank" and opts["top_k"] + opts["bottom_k"] >= len(frames):
        raise ConfigError(f"top_k={opts['top_k']} and bottom_k={opts['bottom_k']} leave nothing to choose among "
                          f"{len(frames)} ticker(s); hold fewer names than there are tickers (or add tickers)")
    store = _store(store, cache_dir, parallel)
    run = _Run(frames, skipped, opts, forecast, store, parallel)
    if parallel:
        _precompute(run, cell, workers, progress)
    if not run.frames:
        raise DataError(f"no ticker left to backtest: {failures(run.skipped)}")
    return run


def _store(store, cache_dir, parallel: bool) -> ForecastStore | None:
    if store is True:
        return ForecastStore(cache_dir)
    if store is None or store is False:
        # Parallel forecasts reach the Backtrader run through a store: one that keeps nothing on disk.
        return ForecastStore(memory=True) if parallel else None
    if not isinstance(store, ForecastStore):
        raise ConfigError(f"store={store!r} must be True, False or a ForecastStore")
    return store


def _precompute(run: _Run, cell: str, workers: int | None, progress: bool) -> None:
    """The tickers' forecasts in the ticker pool (or on Ray), into the store; failed tickers are dropped
    (with ``skip_failed``) or fail the run."""
    opts, frames = run.options, run.frames
    on_ray = opts["executor"] == "ray"
    # Folds run in the workers; they report back, so the bar still moves fold by fold (Ray: by ticker).
    fold_bar = fold_progress_bar(frames, {**opts, **run.forecast}) if progress and not on_ray else None
    ticker_bar = TickerBar(len(frames)) if progress and on_ray else None
    on_done = None if ticker_bar is None else ticker_bar.on_done
    if fold_bar is not None:
        def on_done(ticker, status, _bar=fold_bar):
            if status == "cached":  # served from the store: count its folds as done
                _bar.bar.update(len(_bar.schedule.fold_bars(len(frames[ticker]))))
    try:
        report = precompute_forecasts(frames, model=cell, store=run.store, executor=opts["executor"] or "local",
                                      workers=workers, address=opts["address"], on_done=on_done,
                                      on_fold=None if fold_bar is None else fold_bar.on_fold, **run.forecast)
    finally:
        for bar in (fold_bar, ticker_bar):
            if bar is not None:
                bar.close()
    if report.failed and not opts["skip_failed"]:
        ticker, why = next(iter(report.failed.items()))
        raise DataError(f"forecasting failed for ticker {ticker!r}: {why}")
    run.skipped.update(report.failed)
    run.frames = {t: df for t, df in frames.items() if t not in report.failed}


def _cerebro(run: _Run, runonce: bool, stdstats: bool) -> bt.Cerebro:
    cerebro = bt.Cerebro(runonce=runonce, stdstats=stdstats)
    for name, df in run.frames.items():
        cerebro.adddata(FrameData(dataname=df), name=name)
    cerebro.broker.setcash(run.options["cash"])
    cerebro.broker.setcommission(commission=run.options["commission"])
    return cerebro


def _run_strategy(run: _Run, model, runonce: bool, progress: bool):
    forecast = dict(run.forecast)
    if run.store is not None and runonce:
        forecast["store"] = run.store
    cerebro = _cerebro(run, runonce, stdstats=True)
    bar: FoldBar | None = fold_progress_bar(run.frames, {**run.options, **run.forecast}) \
        if progress and not run.parallel else None
    if bar is not None:
        forecast["on_fold"] = bar.on_fold
    rules = run.options["strategy"]
    trading = {name: run.options[name] for name in names("rank" if rules == "rank" else "strategy")}
    cerebro.addstrategy(shipped_strategy(rules), model=model, forecast_kwargs=forecast, scope=run.options["scope"],
                        **trading)
    cerebro.addanalyzer(bt.analyzers.SharpeRatio, _name="sharpe", timeframe=bt.TimeFrame.Days,
                        annualize=True, riskfreerate=0.0, factor=TRADING_DAYS)
    cerebro.addanalyzer(bt.analyzers.DrawDown, _name="drawdown")
    cerebro.addanalyzer(bt.analyzers.Returns, _name="returns", tann=TRADING_DAYS)
    cerebro.addanalyzer(bt.analyzers.TradeAnalyzer, _name="tradeanalyzer")
    cerebro.addanalyzer(bt.analyzers.TimeReturn, _name="timereturn", timeframe=bt.TimeFrame.Days)
    cerebro.addanalyzer(SleeveValue, _name="sleeves")
    try:
        return cerebro.run()[0], cerebro
    finally:
        if bar is not None:
            bar.close()


def _run_benchmark(run: _Run, runonce: bool):
    """Equal-weight buy-and-hold on the same data and costs, bought at the first forecast bar so both
    sit in cash through the walk-forward warm-up."""
    bench = _cerebro(run, runonce, stdstats=False)
    bench.addstrategy(shipped_strategy("buy_and_hold"), start_bar=run.options["min_train"] - 1,
                      reserve=run.options["reserve"])
    bench.addanalyzer(SleeveValue, _name="sleeves")
    bench.addanalyzer(bt.analyzers.TimeReturn, _name="timereturn", timeframe=bt.TimeFrame.Days)
    return bench.run()[0]


def _collect(run: _Run, model, runonce: bool, strat, cerebro, bench_strat, seconds: float) -> BacktestResult:
    tickers = list(run.frames)
    sleeves = strat.analyzers.sleeves.get_analysis()
    bench_sleeves = bench_strat.analyzers.sleeves.get_analysis()
    equity = pd.DataFrame({"strategy": sleeves[tickers].sum(axis=1), "buy_hold": bench_sleeves[tickers].sum(axis=1)})
    equity.index = pd.DatetimeIndex(equity.index, name="date")
    trades = pd.DataFrame(strat.trade_log, columns=[
        "ticker", "direction", "entry_date", "exit_date", "entry_price", "exit_price", "size", "bars",
        "pnl", "pnl_net", "commission", "return"])
    # The statistics period: from each ticker's first forecast bar (the bar its first fold trains at, where
    # buy-and-hold buys too), for the portfolio from the earliest of them.
    starts = {t: df.index[run.options["min_train"] - 1] for t, df in run.frames.items()}
    start = min(starts.values())
    metrics = portfolio_metrics(strat, equity, run.options["cash"], tickers, start, run.options["periods_per_year"])
    per_year = metrics["periods_per_year"]
    per_ticker, bench_per_ticker = ticker_metrics(strat, bench_strat, run.frames, trades, starts, per_year)
    forecasts, folds = _forecasts_and_folds(strat)
    # A benchmark that could not buy a ticker is reported as such, never as a 0% return.
    not_held = {t: why for t, why in bench_strat.not_held.items() if t in tickers}
    blank = [c for c in bench_per_ticker.columns if c != "period_start"]
    bench_per_ticker.loc[list(not_held), blank] = np.nan
    benchmark = benchmark_metrics(equity["buy_hold"] if len(not_held) < len(tickers) else equity["buy_hold"].iloc[:0],
                                  start, per_year)
    benchmark.update(not_held=not_held, entries=dict(bench_strat.entries))
    return BacktestResult(
        metrics=metrics,
        per_ticker=per_ticker,
        benchmark=benchmark,
        benchmark_per_ticker=bench_per_ticker,
        equity=equity,
        trades=trades,
        open_positions=open_positions(strat),
        forecasts=forecasts,
        folds=folds,
        config=_config(run, model, runonce, equity),
        seconds=seconds,
        cerebro=cerebro,
        strategy=strat,
        period={"start": start, "end": equity.index[-1], "bars": metrics["n_periods"], "covers": PERIOD_COVERS,
                "timestamps": {t: f.attrs["timestamps"] for t, f in run.frames.items() if "timestamps" in f.attrs},
                "whole_run": {"start": equity.index[0], "end": equity.index[-1], "bars": len(equity),
                              "covers": WHOLE_RUN_COVERS}},
    )


def _forecasts_and_folds(strat) -> tuple[pd.DataFrame, pd.DataFrame]:
    forecasts, folds = [], []
    for data, fc in strat.forecasts.items():
        name = data._name
        n = len(data)
        closes = np.asarray(data.close.array[:n])
        dates = [bt.num2date(x) for x in data.datetime.array[:n]]
        extra = None
        if hasattr(fc.lines, "pred_lo"):  # the uncertainty lines, where computed
            extra = np.column_stack([np.full(n, np.nan)] + [np.asarray(getattr(fc.lines, line).array[:n])
                                                            for line in ("pred_std", "pred_lo", "pred_hi")])
        forecasts.append(forecast_frame(name, dates, closes, np.asarray(fc.pred_return.array[:n]), fc.p.horizon,
                                        extra))
        if isinstance(fc, GlobalForecast):  # one model for all: its folds once, bar = the calendar position
            if not folds:
                folds.extend({"ticker": "(global)", **f.to_dict()} for f in fc.p.group.walk.folds)
        else:
            folds.extend({"ticker": name, **f.to_dict()} for f in fc.folds)
    return (pd.concat(forecasts, ignore_index=True) if forecasts else pd.DataFrame()), pd.DataFrame(folds)


def _config(run: _Run, model, runonce: bool, equity: pd.DataFrame) -> dict:
    """What config.json records: enough to replay the run with ``puffin-bt backtest --config``."""
    opts, store = run.options, run.store
    return {"model": model if isinstance(model, str) else model.__name__, "tickers": list(run.frames),
            "start": str(equity.index[0].date()), "end": str(equity.index[-1].date()),
            **{name: opts[name] for name in (*names("broker"), *names("portfolio"), *names("strategy"), *names("rank"))},
            "skip_failed": opts["skip_failed"], "runonce": runonce, "skipped": run.skipped,
            "store": None if store is None or store.memory else {"path": str(store.root), "hits": store.hits,
                                                                   "misses": store.misses},
            "forecast": {**{name: opts[name] for name in names("forecast")}, **run.forecast}}
