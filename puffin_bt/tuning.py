"""Hyperparameter search that never sees the test period.

The data is split by date: trials are backtested on the tuning period only (their
walk-forward forecasts there are out-of-sample fold by fold) and scored on it; the
chosen configuration is then run once on the test period, with ``min_train`` bars
of history before it so the first fold ends the day before the test starts.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ._io import atomic_write_bytes
from ._validate import check_int
from .errors import ConfigError
from .evaluation import forecast_metrics
from .walkforward import WALK_FORWARD_DEFAULTS

# The chapter's grid.
CHAPTER_SPACE = {
    "hidden_dim": [32, 64, 128],
    "num_layers": [1, 2, 3],
    "dropout": [0.1, 0.2, 0.3],
    "lr": [0.001, 0.0001],
    "lookback": [10, 20, 30],
}
OBJECTIVES = {"sharpe": "max", "total_return": "max", "direction_accuracy": "max", "mse": "min"}
SEARCHES = ("grid", "random", "optuna")


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


def _check_space(space: dict) -> dict:
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"space={space!r} must be a non-empty dict of option -> list of values")
    for key, values in space.items():
        if key not in WALK_FORWARD_DEFAULTS:
            raise ConfigError(f"space key {key!r} is not a walk-forward option; valid: {sorted(WALK_FORWARD_DEFAULTS)}")
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"space[{key!r}]={values!r} must be a non-empty list of values")
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


def tune(
    data=None,
    model: str = "lstm",
    search: str = "grid",
    trials: int | None = None,
    space: dict | None = None,
    objective: str = "sharpe",
    test_fraction: float = 0.25,
    test_start=None,
    start=None,
    end=None,
    seed: int = 0,
    cache_dir=None,
    store=True,
    on_trial=None,
    parallel_trials: int = 1,
    **backtest_kwargs,
) -> TuneResult:
    """Search ``space`` on the tuning period, then run the best parameters once on the test period.

    ``search``: ``"grid"`` (all combinations, or the first ``trials``), ``"random"``
    (``trials`` distinct draws) or ``"optuna"`` (TPE sampler, ``trials`` trials; needs
    ``pip install 'puffin_bt[tune]'``). ``objective``: sharpe, total_return,
    direction_accuracy (maximised) or mse (minimised), measured on the tuning period.

    ``parallel_trials`` > 1 computes the forecasts of that many trials at once: every
    (trial, ticker) walk-forward goes to the same pool as a backtest's tickers (local
    processes, or Ray with ``executor="ray"`` and ``address``), into the forecast store,
    and each trial's Backtrader run then reads them. Grid and random searches give the
    same trials as one at a time; Optuna asks for a batch of trials (TPE with the
    constant-liar heuristic) before it is told their scores.
    """
    from .runner import backtest, resolve_data
    from .store import ForecastStore

    if search not in SEARCHES:
        raise ConfigError(f"search={search!r} is not known; use one of {SEARCHES}")
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective={objective!r} is not known; use one of {sorted(OBJECTIVES)}")
    space = _check_space(space or CHAPTER_SPACE)
    if trials is not None and (not isinstance(trials, int) or trials < 1):
        raise ConfigError(f"trials={trials!r} must be a whole number >= 1")
    parallel_trials = check_int("parallel_trials", parallel_trials)
    frames, _ = resolve_data(data, start, end, cache_dir, skip_failed=bool(backtest_kwargs.get("skip_failed")))
    test_begin = split_periods(frames, test_fraction, test_start)
    tune_frames = {t: df[df.index < test_begin] for t, df in frames.items()}
    store = ForecastStore(cache_dir) if store is True else (store or None)
    base = {k: v for k, v in backtest_kwargs.items()}
    rows = []
    sign = 1.0 if OBJECTIVES[objective] == "max" else -1.0

    forecast_base = {k: v for k, v in base.items() if k in WALK_FORWARD_DEFAULTS}

    def prefetch(batch: list[dict]) -> None:
        """Compute the forecasts of a batch of trials together (trial x ticker tasks) into the store."""
        if parallel_trials < 2 or store is None or len(batch) < 2:
            return
        from .parallel import precompute_jobs, resolve_workers

        first = len(rows) + 1
        jobs = [(f"{t} [trial {first + i}]", df, {**forecast_base, **params})
                for i, params in enumerate(batch) for t, df in tune_frames.items()]
        workers = resolve_workers(base.get("workers") or "auto", len(jobs))
        precompute_jobs(jobs, model=model, store=store, executor=base.get("executor") or "local",
                        workers=min(workers, len(jobs)), address=base.get("address"))

    def run_trial(params: dict) -> float:
        result = backtest(tune_frames, model=model, store=store if store is not None else False,
                          **{**base, **params})
        value = score(result, objective)
        rows.append({**params, objective: value, "sharpe": result.metrics["sharpe"],
                     "total_return": result.metrics["total_return"], "trades": result.metrics["trades"],
                     "seconds": result.seconds})
        if on_trial is not None:
            on_trial(len(rows), params, value)
        return value

    if search == "optuna":
        try:
            import optuna
        except ImportError:
            raise ConfigError("search='optuna' needs Optuna: pip install 'puffin_bt[tune]'") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():  # constant_liar is marked experimental
            warnings.simplefilter("ignore")
            sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=parallel_trials > 1)
        study = optuna.create_study(direction="maximize" if sign > 0 else "minimize", sampler=sampler)

        def finite(value: float) -> float:
            return value if math.isfinite(value) else (-math.inf if sign > 0 else math.inf)

        if parallel_trials < 2:
            def objective_fn(trial):
                return finite(run_trial({k: trial.suggest_categorical(k, list(v)) for k, v in space.items()}))

            study.optimize(objective_fn, n_trials=trials or 20)
        else:
            remaining = trials or 20
            while remaining > 0:
                asked = [study.ask() for _ in range(min(parallel_trials, remaining))]
                batch = [{k: tr.suggest_categorical(k, list(v)) for k, v in space.items()} for tr in asked]
                prefetch(batch)
                for tr, params in zip(asked, batch):
                    study.tell(tr, finite(run_trial(params)))
                remaining -= len(asked)
    else:
        todo = candidates(space, search, trials, seed)
        for i in range(0, len(todo), parallel_trials):
            prefetch(todo[i:i + parallel_trials])
            for params in todo[i:i + parallel_trials]:
                run_trial(params)

    table = pd.DataFrame(rows)
    ranked = table.assign(_key=sign * table[objective].fillna(-math.inf * sign)).sort_values(
        "_key", ascending=False, kind="stable")
    best = {k: _plain(ranked[k].iloc[0]) for k in space}
    table = ranked.drop(columns="_key").reset_index(drop=True)

    # The test run: history before the test period only feeds the first fold.
    params = {**WALK_FORWARD_DEFAULTS, **base, **best}
    warmup = int(params["min_train"])
    test_frames = {}
    for t, df in frames.items():
        first = df.index.searchsorted(test_begin)
        test_frames[t] = df.iloc[max(0, first - warmup):]
    test = backtest(test_frames, model=model, store=store if store is not None else False, **{**base, **best})
    tune_end = max(df.index.max() for df in tune_frames.values())
    return TuneResult(
        trials=table,
        best_params=best,
        objective=objective,
        tune_period=(str(min(df.index.min() for df in tune_frames.values()).date()), str(tune_end.date())),
        test_period=(str(test_begin.date()), str(max(df.index.max() for df in frames.values()).date())),
        test=test,
    )


def _plain(value):
    return value.item() if hasattr(value, "item") else value
