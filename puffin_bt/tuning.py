"""Hyperparameter search that never sees the test period.

The data is split by date: trials are backtested on the tuning period only (their
walk-forward forecasts there are out-of-sample fold by fold) and scored on it; the
chosen configuration is then run once on the test period, with ``min_train`` bars
of history before it so the first fold ends the day before the test starts.
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import backtesting, tickers
from .data import resolve_data
from .errors import ConfigError
from .evaluation import forecast_metrics
from .files import atomic_write_bytes
from .options import BACKTEST_GROUPS, OPTIONS, names, options_doc, resolve, signature_parameters
from .store import ForecastStore
from .tickers import resolve_workers

# The chapter's grid.
CHAPTER_SPACE = {
    "hidden_dim": [32, 64, 128],
    "num_layers": [1, 2, 3],
    "dropout": [0.1, 0.2, 0.3],
    "lr": [0.001, 0.0001],
    "lookback": [10, 20, 30],
}
OBJECTIVES = {"sharpe": "max", "total_return": "max", "direction_accuracy": "max", "mse": "min"}


@dataclass
class TuneResult:
    """All trials, the best parameters, and the single test-period run of them."""

    trials: pd.DataFrame
    best_params: dict
    objective: str
    tune_period: tuple[str, str]
    test_period: tuple[str, str]
    test: object  # BacktestResult on the test period

    def best_config(self) -> dict:
        """A config that ``puffin-bt backtest --config`` replays (on the test period)."""
        cfg = dict(self.test.config)
        cfg["forecast"] = {**cfg["forecast"], **self.best_params}
        cfg["tuning"] = {"objective": self.objective, "tune_period": list(self.tune_period),
                         "test_period": list(self.test_period)}
        return cfg

    def save(self, out_dir) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "trials.csv", self.trials.to_csv(index=False).encode())
        atomic_write_bytes(out / "best_config.json", json.dumps(self.best_config(), indent=2, default=str).encode())
        self.test.save(out / "test")
        return out


def check_space(space, where: str = "space") -> dict:
    """``space`` if it is a non-empty ``{walk-forward option: non-empty list of valid values}``, else a
    ConfigError naming the key (an empty space never falls back to the chapter's grid)."""
    example = '{"hidden_dim": [16, 32], "lookback": [10, 20]}'
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{where}={space!r} must be a non-empty dict of option -> list of values, e.g. {example}")
    for key, values in space.items():
        if key not in names("forecast"):
            raise ConfigError(f"{where} key {key!r} is not a walk-forward option; valid: {', '.join(names('forecast'))}")
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"{where}[{key!r}]={values!r} must be a non-empty list of values, e.g. {example}")
        for value in values:
            try:
                OPTIONS[key].check(value)
            except ConfigError as exc:
                raise ConfigError(f"{where}[{key!r}]: {exc}") from None
    return space


def candidates(space: dict, search: str, trials: int | None, seed: int = 0):
    """Parameter dicts to try: the full grid (first ``trials`` of it if given) or random draws."""
    keys = list(space)
    if search == "grid":
        combos = (dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys)))
        return list(itertools.islice(combos, trials)) if trials else list(combos)
    rng = random.Random(seed)
    n = trials or 20
    total = math.prod(len(space[k]) for k in keys)
    seen, out = set(), []
    while len(out) < min(n, total):
        combo = tuple(rng.randrange(len(space[k])) for k in keys)
        if combo not in seen:
            seen.add(combo)
            out.append({k: space[k][i] for k, i in zip(keys, combo)})
    return out


def split_periods(frames: dict, test_fraction: float = 0.25, test_start=None) -> pd.Timestamp:
    """The first date of the test period: ``test_start`` or the date ``test_fraction`` from the end."""
    dates = sorted(set().union(*(df.index for df in frames.values())))
    if test_start is not None:
        ts = pd.Timestamp(test_start)
        if ts <= dates[0] or ts > dates[-1]:
            raise ConfigError(f"test_start={test_start} must fall inside the data ({dates[0]:%Y-%m-%d}..{dates[-1]:%Y-%m-%d})")
        return ts
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction={test_fraction} must be between 0 and 1, e.g. 0.25")
    return pd.Timestamp(dates[int(len(dates) * (1 - test_fraction))])


def score(result, objective: str) -> float:
    if objective in ("sharpe", "total_return"):
        value = result.metrics[objective]
    else:
        f = result.forecasts
        value = forecast_metrics(f["pred_return"], f["realized_return"])[objective]
    return float(value) if value is not None and math.isfinite(value) else math.nan


def tune(data=None, model: str = "lstm", *, space: dict | None = None, cache_dir=None, store=True, on_trial=None,
         **options) -> TuneResult:
    opts = resolve(options, ("tune", *BACKTEST_GROUPS), "tune()")
    space = check_space(CHAPTER_SPACE if space is None else space)
    # What every trial's backtest gets: the caller's backtest options (the frames are already cut to dates).
    base = {k: v for k, v in options.items() if k in names(*BACKTEST_GROUPS) and k not in ("start", "end")}
    frames, _ = resolve_data(data, opts["start"], opts["end"], cache_dir, skip_failed=opts["skip_failed"])
    test_begin = split_periods(frames, opts["test_fraction"], opts["test_start"])
    tune_frames = {t: df[df.index < test_begin] for t, df in frames.items()}
    store = ForecastStore(cache_dir) if store is True else (store or None)
    trials = _Trials(model, tune_frames, store, base, opts, on_trial)
    if opts["search"] == "optuna":
        trials.optuna(space)
    else:
        todo = candidates(space, opts["search"], opts["trials"], opts["search_seed"])
        for i in range(0, len(todo), opts["parallel_trials"]):
            trials.run_batch(todo[i:i + opts["parallel_trials"]])
    table, best = _rank(trials.rows, opts["objective"], space)
    test = _test_run(frames, test_begin, model, store, base, best, {**opts, **best})
    tune_end = max(df.index.max() for df in tune_frames.values())
    return TuneResult(
        trials=table,
        best_params=best,
        objective=opts["objective"],
        tune_period=(str(min(df.index.min() for df in tune_frames.values()).date()), str(tune_end.date())),
        test_period=(str(test_begin.date()), str(max(df.index.max() for df in frames.values()).date())),
        test=test,
    )


tune.__doc__ = f"""Search ``space`` on the tuning period, then run the best parameters once on the test period.

    ``space``: ``{{option: [values]}}`` over walk-forward options (default: the chapter's grid,
    ``CHAPTER_SPACE``). ``search``: ``"grid"`` (all combinations, or the first ``trials``),
    ``"random"`` (``trials`` distinct draws) or ``"optuna"`` (TPE sampler, ``trials`` trials; needs
    ``pip install 'puffin_bt[tune]'``). ``objective``: sharpe, total_return, direction_accuracy
    (maximised) or mse (minimised), measured on the tuning period. Every other option goes to each
    trial's ``backtest()``.

    ``parallel_trials`` > 1 computes the forecasts of that many trials at once: every
    (trial, ticker) walk-forward goes to the same pool as a backtest's tickers (local
    processes, or Ray with ``executor="ray"`` and ``address``), into the forecast store,
    and each trial's Backtrader run then reads them. Grid and random searches give the
    same trials as one at a time; Optuna asks for a batch of trials (TPE with the
    constant-liar heuristic) before it is told their scores.

    Options (``puffin_bt.options``):
{options_doc("tune")}
    and those of ``backtest()``.
    """
tune.__signature__ = inspect.Signature([*list(inspect.signature(tune).parameters.values())[:-1],
                                         *signature_parameters(("tune", *BACKTEST_GROUPS))])


class _Trials:
    """Runs trials (one backtest each on the tuning period) and records their scores."""

    def __init__(self, model, frames: dict, store, base: dict, opts: dict, on_trial) -> None:
        self.model, self.frames, self.store, self.base, self.opts, self.on_trial = model, frames, store, base, opts, on_trial
        self.objective = opts["objective"]
        self.rows: list[dict] = []

    def run_batch(self, batch: list[dict]) -> list[float]:
        self.prefetch(batch)
        return [self.run(params) for params in batch]

    def prefetch(self, batch: list[dict]) -> None:
        """Compute the forecasts of a batch of trials together (trial x ticker tasks) into the store."""
        if self.opts["parallel_trials"] < 2 or self.store is None or len(batch) < 2:
            return
        forecast_base = {k: v for k, v in self.base.items() if k in names("forecast")}
        first = len(self.rows) + 1
        jobs = [(f"{t} [trial {first + i}]", df, {**forecast_base, **params})
                for i, params in enumerate(batch) for t, df in self.frames.items()]
        workers = resolve_workers(self.opts["workers"] or "auto", len(jobs))
        tickers.precompute_jobs(jobs, model=self.model, store=self.store, executor=self.opts["executor"] or "local",
                                workers=min(workers, len(jobs)), address=self.opts["address"])

    def run(self, params: dict) -> float:
        result = backtesting.backtest(self.frames, model=self.model,
                                      store=self.store if self.store is not None else False, **{**self.base, **params})
        value = score(result, self.objective)
        self.rows.append({**params, self.objective: value, "sharpe": result.metrics["sharpe"],
                          "total_return": result.metrics["total_return"], "trades": result.metrics["trades"],
                          "seconds": result.seconds})
        if self.on_trial is not None:
            self.on_trial(len(self.rows), params, value)
        return value

    def optuna(self, space: dict) -> None:
        try:
            import optuna
        except ImportError:
            raise ConfigError("search='optuna' needs Optuna: pip install 'puffin_bt[tune]'") from None
        sign = 1.0 if OBJECTIVES[self.objective] == "max" else -1.0
        parallel = self.opts["parallel_trials"]
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():  # constant_liar is marked experimental
            warnings.simplefilter("ignore")
            sampler = optuna.samplers.TPESampler(seed=self.opts["search_seed"], constant_liar=parallel > 1)
        study = optuna.create_study(direction="maximize" if sign > 0 else "minimize", sampler=sampler)

        def finite(value: float) -> float:
            return value if math.isfinite(value) else (-math.inf if sign > 0 else math.inf)

        remaining = self.opts["trials"] or 20
        while remaining > 0:
            asked = [study.ask() for _ in range(min(parallel, remaining))]
            batch = [{k: tr.suggest_categorical(k, list(v)) for k, v in space.items()} for tr in asked]
            for tr, value in zip(asked, self.run_batch(batch)):
                study.tell(tr, finite(value))
            remaining -= len(asked)


def _rank(rows: list[dict], objective: str, space: dict) -> tuple[pd.DataFrame, dict]:
    """Trials best first (NaN scores last) and the best one's parameters."""
    sign = 1.0 if OBJECTIVES[objective] == "max" else -1.0
    table = pd.DataFrame(rows)
    ranked = table.assign(_key=sign * table[objective].fillna(-math.inf * sign)).sort_values(
        "_key", ascending=False, kind="stable")
    best = {k: _plain(ranked[k].iloc[0]) for k in space}
    return ranked.drop(columns="_key").reset_index(drop=True), best


def _test_run(frames: dict, test_begin, model, store, base: dict, best: dict, params: dict):
    """The best parameters, once, on the test period: history before it only feeds the first fold."""
    warmup = int(params["min_train"])
    test_frames = {}
    for t, df in frames.items():
        first = df.index.searchsorted(test_begin)
        test_frames[t] = df.iloc[max(0, first - warmup):]
    return backtesting.backtest(test_frames, model=model, store=store if store is not None else False,
                                **{**base, **best})


def _plain(value):
    return value.item() if hasattr(value, "item") else value
