"""Hyperparameter search that never sees the test period, and how much to trust its winner.

The data is split by date: trials are backtested on the tuning period only (their walk-forward
forecasts there are out-of-sample fold by fold) and scored on it; an embargo of at least
lookback + horizon bars separates the last tuning target from the first test forecast. The
chosen configuration then runs once on the test period, with ``min_train`` bars of history
before it so the first fold ends the day before the test starts. Every trial's daily returns
are kept, for the deflated Sharpe ratio of the winner and the probability of backtest overfitting.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import math
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import backtesting, tickers
from .data import resolve_data
from .errors import ConfigError, DataError
from .evaluation import forecast_metrics
from .files import atomic_write_bytes
from .options import BACKTEST_GROUPS, OPTIONS, names, options_doc, require_return_target, resolve, signature_parameters
from .stats import (
    constant_up_to_roundoff,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
)
from .store import ForecastStore
from .study import Study, open_storage, shown_url
from .tickers import resolve_workers

__all__ = ["CHAPTER_SPACE", "TuneResult", "check_space", "tune"]

# The chapter's grid.
CHAPTER_SPACE = {
    "hidden_dim": [32, 64, 128],
    "num_layers": [1, 2, 3],
    "dropout": [0.1, 0.2, 0.3],
    "lr": [0.001, 0.0001],
    "lookback": [10, 20, 30],
}
OBJECTIVES = {"sharpe": "max", "total_return": "max", "direction_accuracy": "max", "mse": "min"}
TRADING_DAYS = 252
# CSCV (the PBO) cuts the tuning period's returns into the paper's 16 blocks, or fewer (an even number)
# so that each block holds at least a month of trading days: a Sharpe ratio over fewer bars is mostly noise.
PBO_MAX_SPLITS = 16
PBO_MIN_BLOCK_BARS = 21


@dataclass
class TuneResult:
    """All trials, the best parameters, and the single test-period run of them."""

    trials: pd.DataFrame
    best_params: dict
    objective: str
    tune_period: tuple[str, str]
    test_period: tuple[str, str]
    test: object  # BacktestResult on the test period
    # Daily portfolio returns of every trial on the tuning period (dates x trial numbers, on the dates all share).
    trial_returns: pd.DataFrame
    selection: dict  # the chosen trial's DSR and the PBO over all trials (tune_stats.json)
    embargo: dict  # bars between the last tuning target and the first test forecast, and the minimum
    study: dict | None = None  # where the trials are kept: {"storage": URL (no password), "name": ...}, or None

    def best_config(self) -> dict:
        """A config that ``puffin-bt backtest --config`` replays (on the test period)."""
        cfg = dict(self.test.config)
        cfg["forecast"] = {**cfg["forecast"], **self.best_params}
        cfg["tuning"] = {"objective": self.objective, "tune_period": list(self.tune_period),
                         "test_period": list(self.test_period), "embargo": self.embargo,
                         "dsr": self.selection["dsr"]["value"], "pbo": self.selection["pbo"]["value"]}
        return cfg

    def plot_html(self, out_dir) -> Path:
        """Write tune.html to ``out_dir``: every trial's objective in order and against each parameter, the chosen
        trial's PSR and DSR, the PBO's CSCV logits, the test period next to buy-and-hold; linked to the files
        ``save`` wrote there."""
        from .plotting.tune_html import write_tune_html

        out = Path(out_dir)
        test = self.test
        files = {"trials.csv": "trials.csv", "best_config.json": "best_config.json", "tune_stats.json": "tune_stats.json",
                 "test period trades": "test/trades.html"}
        return write_tune_html(
            out / "tune.html", self.trials, self.objective, list(self.best_params), self.selection,
            maximize=OBJECTIVES[self.objective] == "max", tune_period=self.tune_period, test_period=self.test_period,
            test_equity=test.equity.loc[test.period["start"]:] if test.period.get("start") else test.equity,
            test_metrics={"total_return": test.metrics.get("total_return"), "sharpe": test.metrics.get("sharpe"),
                          "bh_total_return": test.benchmark.get("total_return"), "bh_sharpe": test.benchmark.get("sharpe")},
            study=self.study, title=f"{test.config.get('model', 'model').upper()} hyperparameter search",
            links={label: href for label, href in files.items() if (out / href).is_file()})

    def save(self, out_dir) -> Path:
        """Write trials.csv, trial_returns.csv, tune_stats.json (DSR, PBO), best_config.json and test/."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "trials.csv", self.trials.to_csv(index=False).encode())
        atomic_write_bytes(out / "trial_returns.csv", self.trial_returns.to_csv().encode())
        # The CSCV logits (up to 12,870) are drawn in tune.html, not listed in the JSON.
        selection = {**self.selection, "pbo": {k: v for k, v in self.selection["pbo"].items() if k != "logits"}}
        stats = {"objective": self.objective, "tune_period": list(self.tune_period),
                 "test_period": list(self.test_period), "embargo": self.embargo, "study": self.study, **selection}
        atomic_write_bytes(out / "tune_stats.json", json.dumps(stats, indent=2, default=str).encode())
        atomic_write_bytes(out / "best_config.json", json.dumps(self.best_config(), indent=2, default=str).encode())
        self.test.save(out / "test")
        return out


def check_space(space, where: str = "space") -> dict:
    """``space`` if it is a non-empty ``{walk-forward option: non-empty list of valid values}``, else a
    ConfigError naming the key (an empty space never falls back to the chapter's grid)."""
    example = '{"hidden_dim": [16, 32], "lookback": [10, 20]}'
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{where}={space!r} must be a non-empty dict of option -> list of values, e.g. {example}")
    checked = {}
    for key, values in space.items():
        if key not in names("forecast"):
            raise ConfigError(f"{where} key {key!r} is not a walk-forward option; valid: {', '.join(names('forecast'))}")
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"{where}[{key!r}]={values!r} must be a non-empty list of values, e.g. {example}")
        try:
            checked[key] = [OPTIONS[key].check(value) for value in values]
        except ConfigError as exc:
            raise ConfigError(f"{where}[{key!r}]: {exc}") from None
    return checked


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


def embargo_bars(opts: dict, space: dict) -> tuple[int, int]:
    """(embargo, minimum) in bars: the minimum is the longest lookback + the longest horizon any trial uses
    (the test run's first input window then starts after every tuning target); ``embargo`` None means it."""
    minimum = max(space.get("lookback", [opts["lookback"]])) + max(space.get("horizon", [opts["horizon"]]))
    embargo = opts["embargo"]
    if embargo is None:
        return minimum, minimum
    if embargo < minimum:
        raise ConfigError(
            f"embargo={embargo} is below the minimum of {minimum} bars (the longest lookback + horizon searched): a "
            f"shorter gap lets the test period's first input windows overlap tuning targets; use embargo >= {minimum} "
            f"or leave it unset ('auto')")
    return embargo, minimum


def tuning_frames(frames: dict, test_begin, embargo: int, horizon: int) -> dict:
    """Each ticker's bars that the trials may see. The test run's first forecast is the ticker's last bar
    before ``test_begin`` (bar f); the last tuning bar e is the one whose target, e + ``horizon``, leaves
    ``embargo`` bars before f: e = f - embargo - horizon - 1. Counted in the ticker's own bars."""
    out = {}
    for t, df in frames.items():
        first_test_forecast = int(df.index.searchsorted(pd.Timestamp(test_begin))) - 1
        out[t] = df.iloc[:max(0, first_test_forecast - embargo - horizon)]
    return out


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
    require_return_target(opts["target"], "every trial's backtest")
    space = check_space(CHAPTER_SPACE if space is None else space)
    embargo, minimum = embargo_bars(opts, space)
    # What every trial's backtest gets: the caller's backtest options (the frames are already cut to dates).
    base = {k: v for k, v in options.items() if k in names(*BACKTEST_GROUPS) and k not in ("start", "end")}
    frames, skipped = resolve_data(data, opts["start"], opts["end"], cache_dir, skip_failed=opts["skip_failed"])
    test_begin = split_periods(frames, opts["test_fraction"], opts["test_start"])
    horizon = max(space.get("horizon", [opts["horizon"]]))
    tune_frames = tuning_frames(frames, test_begin, embargo, horizon)
    _require_tuning_history(tune_frames, test_begin, embargo, max(space.get("min_train", [opts["min_train"]])),
                            opts["skip_failed"])
    store = ForecastStore(cache_dir) if store is True else (store or None)
    trials = _Trials(model, tune_frames, store, base, opts, on_trial)
    if opts["storage"] is not None or opts["search"] == "optuna":
        trials.in_study(space, _setup(model, space, base, tune_frames, opts))
    else:
        todo = candidates(space, opts["search"], opts["trials"], opts["search_seed"])
        for i in range(0, len(todo), opts["parallel_trials"]):
            trials.run_batch(todo[i:i + opts["parallel_trials"]])
    table, best = _rank(trials.rows, opts["objective"], space)
    returns = pd.concat(trials.returns, axis=1, join="inner")
    selection = selection_stats(returns, chosen=int(table["trial"].iloc[0]))
    test = _test_run(frames, test_begin, model, store, base, best, {**opts, **best})
    test.config["skipped"] = {**skipped, **test.config.get("skipped", {})}  # the tickers no trial saw, too
    seen = [df for df in tune_frames.values() if len(df)]
    return TuneResult(
        trials=table,
        best_params=best,
        objective=opts["objective"],
        tune_period=(str(min(df.index.min() for df in seen).date()), str(max(df.index.max() for df in seen).date())),
        test_period=(str(test_begin.date()), str(max(df.index.max() for df in frames.values()).date())),
        test=test,
        trial_returns=returns,
        selection=selection,
        embargo={"bars": embargo, "minimum": minimum,
                 "rule": "bars between the last tuning target (horizon bars after the last tuning bar) and the first "
                         "test forecast (the bar before the test period), in each ticker's own bars"},
        study=None if opts["storage"] is None else {"storage": shown_url(opts["storage"]), "name": opts["study_name"]},
    )


def _require_tuning_history(tune_frames: dict, test_begin, embargo: int, min_train: int, skip_failed: bool) -> None:
    """The tuning period must reach every ticker's first fold (with ``skip_failed`` the trials skip those that don't)."""
    if skip_failed:
        return
    for t, df in tune_frames.items():
        if len(df) < min_train:
            raise DataError(
                f"the tuning period leaves {t} {len(df)} bars (before the test period from {pd.Timestamp(test_begin):%Y-%m-%d}, "
                f"less the {embargo}-bar embargo) but the first fold needs min_train={min_train}; pick a later "
                f"test_start or a smaller test_fraction, lower min_train, or load more history")


def _trial_sharpes(m: np.ndarray) -> np.ndarray:
    """Per-period Sharpe ratio (mean / population std) of each column; 0 for a trial that never traded (flat)."""
    flat = m.max(axis=0) == m.min(axis=0)
    return np.where(flat, 0.0, m.mean(axis=0) / np.where(flat, 1.0, m.std(axis=0)))


def pbo_splits(n_periods: int) -> int:
    """CSCV blocks for ``n_periods`` returns: the paper's 16, or the largest even number of blocks of at
    least 21 bars (a trading month); 0 when fewer than 4 such blocks fit (PBO is then not computed)."""
    n_splits = min(PBO_MAX_SPLITS, n_periods // PBO_MIN_BLOCK_BARS // 2 * 2)
    return n_splits if n_splits >= 4 else 0


def selection_stats(returns: pd.DataFrame, chosen: int) -> dict:
    """The deflated Sharpe ratio of trial ``chosen`` and the probability of backtest overfitting over all trials.

    ``returns``: daily returns on the tuning period, one column per trial run (its number), on common dates.
    DSR: the chosen trial's PSR against the best Sharpe ratio expected from N unskilled trials, N = every
    trial run, ``trial_sharpes`` their per-period Sharpe ratios (0 for a trial that never traded: it was
    tried, and earned nothing). PBO: CSCV over ``pbo_splits(T)`` blocks; trials that are flat over the rows
    CSCV uses (never traded) have no Sharpe ratio to rank and are left out (listed in ``excluded_trials``).
    What cannot be computed is None with a ``note`` saying why."""
    m = returns.to_numpy(dtype=float)
    n_periods, n_trials = m.shape
    period = {"first_return": str(returns.index[0].date()) if n_periods else None,
              "last_return": str(returns.index[-1].date()) if n_periods else None, "bars": n_periods}
    dsr = {"value": None, "sharpe": None, "psr": None, "expected_max_sharpe": None, "n_trials": n_trials,
           "trial": chosen, "note": None}
    pbo = {"value": None, "n_splits": None, "block_bars": None, "n_combinations": None, "n_trials": None,
           "excluded_trials": [], "note": None}
    if n_periods < 3 or not np.isfinite(m).all():
        why = (f"the trials share {n_periods} daily returns on the tuning period; DSR and PBO need more"
               if n_periods < 3 else "some trial's returns are not finite (a portfolio value reached zero)")
        dsr["note"] = pbo["note"] = why
        return {"period": period, "dsr": dsr, "pbo": pbo}
    sharpes = _trial_sharpes(m)
    x = m[:, returns.columns.get_loc(chosen)]
    if n_trials < 2:
        dsr["note"] = "only 1 trial was run: there was no selection to deflate for (its PSR is in trials.csv)"
    elif x.max() == x.min():
        dsr["note"] = "the chosen trial never traded on the tuning period (constant returns): it has no Sharpe ratio"
    else:
        try:
            sr0 = expected_max_sharpe(sharpes)
            dsr.update(value=deflated_sharpe_ratio(x, sharpes), psr=probabilistic_sharpe_ratio(x),
                       sharpe=float(sharpes[returns.columns.get_loc(chosen)] * math.sqrt(TRADING_DAYS)),
                       expected_max_sharpe=sr0 * math.sqrt(TRADING_DAYS))
        except DataError as exc:
            dsr["note"] = str(exc)
    n_splits = pbo_splits(n_periods)
    if not n_splits:
        pbo["note"] = (f"the tuning period has {n_periods} daily returns; PBO needs at least 4 blocks of "
                       f"{PBO_MIN_BLOCK_BARS} ({4 * PBO_MIN_BLOCK_BARS})")
        return {"period": period, "dsr": dsr, "pbo": pbo}
    block = n_periods // n_splits
    used = m[n_periods - block * n_splits:]
    traded = ~constant_up_to_roundoff(used, axis=0)  # as PBO itself sees it: round-off is not trading
    pbo.update(n_splits=n_splits, block_bars=block, n_trials=int(traded.sum()),
               excluded_trials=[_plain(c) for c, ok in zip(returns.columns, traded) if not ok])
    if traded.sum() < 2:
        pbo["note"] = f"{int(traded.sum())} of {n_trials} trials traded on the tuning period; PBO ranks at least 2"
    else:
        result = probability_of_backtest_overfitting(m[:, traded], n_splits=n_splits)
        pbo.update(value=result.pbo, n_combinations=result.n_combinations, logits=result.logits.tolist())
    return {"period": period, "dsr": dsr, "pbo": pbo}


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

    The trials never see the test period: between the last tuning target (``horizon`` bars after
    the last bar a trial sees) and the test run's first forecast lie ``embargo`` bars (default
    and minimum: the longest lookback + horizon searched). Every trial's daily portfolio returns
    on the tuning period are kept (``TuneResult.trial_returns``), for the deflated Sharpe ratio
    of the chosen trial against all N trials run and the probability of backtest overfitting
    over them (``TuneResult.selection``; see ``selection_stats``).

    ``storage``: a database URL (``sqlite:///study.db``, ``postgresql://...``; needs Optuna) keeps the
    search as an Optuna study named ``study_name``, each finished trial with its row and daily returns:
    ``trials`` is then the study's total, so the same call after a kill runs only the missing trials,
    and processes on any machine pointed at one storage share the search, each trial run once (a
    trial of a dead process is failed and its parameters run again). DSR and PBO count every finished
    trial of the study. A study made for another objective, space, data or backtest options is
    refused (``StudyError``), as are an unreachable URL and a SQLite file locked for too long.

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
        self.returns: dict[int, pd.Series] = {}  # trial number -> daily portfolio returns on the tuning period

    def run_batch(self, batch: list[dict]) -> None:
        """Run trials in this process, numbered on from the last (grid and random searches kept in memory)."""
        numbers = [len(self.rows) + 1 + i for i in range(len(batch))]
        for number, (_, row, returns) in zip(numbers, self.evaluate_batch(batch, numbers)):
            self.rows.append(row)
            self.returns[number] = returns

    def evaluate_batch(self, batch: list[dict], numbers: list[int]) -> list[tuple]:
        self.prefetch(batch, numbers)
        return [self.evaluate(params, number) for params, number in zip(batch, numbers)]

    def prefetch(self, batch: list[dict], numbers: list[int]) -> None:
        """Compute the forecasts of a batch of trials together (trial x ticker tasks) into the store."""
        if self.opts["parallel_trials"] < 2 or self.store is None or len(batch) < 2:
            return
        forecast_base = {k: v for k, v in self.base.items() if k in names("forecast")}
        jobs = [(f"{t} [trial {number}]", df, {**forecast_base, **params})
                for number, params in zip(numbers, batch) for t, df in self.frames.items()]
        workers = resolve_workers(self.opts["workers"] or "auto", len(jobs), forecast_base.get("device", "auto"))
        tickers.precompute_jobs(jobs, model=self.model, store=self.store, executor=self.opts["executor"] or "local",
                                workers=min(workers, len(jobs)), address=self.opts["address"])

    def evaluate(self, params: dict, number: int) -> tuple[float, dict, pd.Series]:
        """One trial: its objective, its row of trials.csv and its daily returns on the tuning period."""
        result = backtesting.backtest(self.frames, model=self.model,
                                      store=self.store if self.store is not None else False, **{**self.base, **params})
        value = score(result, self.objective)
        # None (no Sharpe ratio: the trial never traded) as NaN, so the columns stay numeric.
        sharpe, psr = (math.nan if result.metrics[k] is None else result.metrics[k] for k in ("sharpe", "psr"))
        row = {"trial": number, **params, self.objective: value, "sharpe": sharpe, "psr": psr,
               "total_return": result.metrics["total_return"], "trades": result.metrics["trades"],
               "seconds": result.seconds}
        if self.on_trial is not None:
            self.on_trial(number, params, value)
        return value, row, result.returns("strategy")

    def in_study(self, space: dict, setup: dict) -> None:
        """Run the search in an Optuna study (in ``storage``, or in memory) until it holds ``trials`` finished
        trials, then read every finished trial of it, whichever process ran it."""
        url = self.opts["storage"]
        study = Study(open_storage(url) if url else None, self.opts["study_name"], setup,
                      maximize=OBJECTIVES[self.objective] == "max", url=url)
        total = self.opts["trials"] or (math.prod(len(v) for v in space.values()) if self.opts["search"] == "grid"
                                        else 20)
        if self.opts["search"] == "optuna":
            propose, refill = _tpe_proposals(study, space, total, self.opts["search_seed"]), None
        else:
            todo = candidates(space, self.opts["search"], total, self.opts["search_seed"])
            propose, refill = _queued_proposals(study, todo)
        study.run(min(total, _most_trials(space, self.opts["search"])), self.opts["parallel_trials"], propose,
                  self.evaluate_batch, refill)
        for trial in study.complete():
            row, kept = trial.user_attrs["row"], trial.user_attrs["returns"]
            self.rows.append({**row, **{k: _decoded(row[k], space[k]) for k in space}})
            self.returns[row["trial"]] = pd.Series(kept["values"], index=pd.to_datetime(kept["dates"]), dtype=float)


def _most_trials(space: dict, search: str) -> int:
    """Grid and random searches end when the space is exhausted; Optuna may repeat a point."""
    return 1_000_000 if search == "optuna" else math.prod(len(v) for v in space.values())


def _decoded(value, values: list):
    """A parameter read back from the study's JSON as the space's own value (a tuple feature set, not a list)."""
    return next((v for v in values if v == value or (isinstance(v, tuple) and list(v) == value)), value)


# Options that say where and how fast forecasts are computed, never what they are: processes sharing a study may differ.
_WHERE_COMPUTED = ("workers", "executor", "address", "threads", "fold_workers")


def _setup(model: str, space: dict, base: dict, frames: dict, opts: dict) -> dict:
    """What makes two searches' trials comparable: a study made for another setup is refused (StudyError)."""
    digest = hashlib.sha256()
    for ticker, df in sorted(frames.items()):
        digest.update(ticker.encode())
        digest.update(pd.util.hash_pandas_object(df).to_numpy().tobytes())
    return {"model": model, "objective": opts["objective"], "search": opts["search"],
            "search_seed": opts["search_seed"], "space": [[k, list(v)] for k, v in space.items()],
            "options": json.loads(json.dumps({k: v for k, v in base.items() if k not in _WHERE_COMPUTED}, sort_keys=True,
                                             default=str)),
            "data": digest.hexdigest()}


def _tpe_proposals(study: Study, space: dict, total: int, seed: int):
    """Optuna's TPE sampler, seeded per trial number (processes sharing a study then draw different points,
    and one process alone draws the same ones on every run), lying about running trials (constant liar)."""
    optuna = study.optuna
    # Optuna's categories must be plain values: a list (a feature set) goes in as its JSON text.
    encoded = {k: [json.dumps(list(x)) if isinstance(x, (list, tuple)) else x for x in v] for k, v in space.items()}
    decode = {json.dumps(list(x)): x for v in space.values() for x in v if isinstance(x, (list, tuple))}

    def propose(trial, trials):
        ahead = [t for t in trials if t.number < trial.number and t.state.name in ("COMPLETE", "RUNNING")]
        if len(ahead) >= total:
            return None
        with warnings.catch_warnings():  # constant_liar is marked experimental
            warnings.simplefilter("ignore")
            study.study.sampler = optuna.samplers.TPESampler(seed=(seed + trial.number) % 2**32, constant_liar=True)
        return {k: decode.get(value, value) for k in space for value in [trial.suggest_categorical(k, encoded[k])]}

    return propose


def _queued_proposals(study: Study, todo: list[dict]):
    """Grid and random searches: every candidate waits in the study's queue with its index; a popped trial runs
    it unless a lower-numbered trial (waiting, running or finished) holds the same index (two processes refilled
    the queue at once)."""

    def refill(trials):
        held = {t.user_attrs.get("candidate") for t in trials if t.state.name in ("WAITING", "RUNNING", "COMPLETE")}
        for index in range(len(todo)):
            if index not in held:
                study.study.enqueue_trial({}, user_attrs={"candidate": index})

    def propose(trial, trials):
        index = trial.user_attrs.get("candidate")
        if index is None or index >= len(todo) or any(
                t.number < trial.number and t.state.name != "FAIL" and t.user_attrs.get("candidate") == index
                for t in trials):
            return None
        return todo[index]

    return propose, refill


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
