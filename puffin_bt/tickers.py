"""The ticker pool: walk-forward forecasts for many tickers (or (trial, ticker) jobs) in parallel, into
the forecast store.

Tickers are independent, so each is one task: in a local process pool
(``executor="local"``) or on a Ray cluster (``executor="ray"``, optional extra
``puffin_bt[ray]``). Workers return forecasts to the caller, which writes them to
the store; the single-process Backtrader run then reads them from there. A ticker
that fails is reported and skipped, never aborting the others.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing.managers import SyncManager

import numpy as np
import pandas as pd

from .dates import date_numbers_of, num2date
from .errors import ConfigError, PuffinError
from .options import OPTIONS
from .processes import available_cpus, mark_worker, quiet_fork_warning, start_method, worker_initargs
from .store import ForecastStore, fingerprint
from .walkforward import FoldRecord, feature_matrix, make_walk_forward, require_history

EXECUTORS = ("local", "ray", "serial")


@dataclass
class ForecastTask:
    """Everything one worker needs: plain arrays and options (cheap to pickle, no engine objects)."""

    ticker: str
    closes: np.ndarray
    date_numbers: np.ndarray
    model: str
    options: dict
    progress: object = None  # anything with .put((ticker, fold dict)): a Manager queue across processes
    features: np.ndarray | None = None  # the built-in features' values, one row per bar


@dataclass
class ParallelReport:
    """What happened per ticker: computed, found in the store, or failed (and why)."""

    computed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{len(self.computed)} computed", f"{len(self.cached)} from the store"]
        if self.failed:
            parts.append(f"{len(self.failed)} skipped: " + "; ".join(f"{t} ({why})" for t, why in self.failed.items()))
        return ", ".join(parts)


def run_task(task: ForecastTask) -> tuple[str, np.ndarray, list[dict], float]:
    """Worker body: walk forward over one ticker. Returns (ticker, log forecasts, folds, seconds)."""
    started = time.perf_counter()
    report = None
    if task.progress is not None:
        def report(record, _queue=task.progress, _ticker=task.ticker):
            _queue.put((_ticker, record.to_dict()))
    walk = make_walk_forward(task.model, report, **task.options)
    dates = [num2date(x) for x in task.date_numbers]
    require_history(task.ticker, len(task.closes), walk.schedule.min_train)
    preds = walk.forecast_lines(task.closes, 0, len(task.closes), dates, features=task.features)
    return task.ticker, preds, [f.to_dict() for f in walk.folds], time.perf_counter() - started


def resolve_workers(workers, n_tasks: int) -> int | None:
    """``"auto"``: one worker per CPU core, at most one per task; None stays None (no pool);
    a number is checked (a whole number from 1 to the available cores). The one reading of
    ``workers`` for backtest, evaluation, tuning and the pool itself.

    >>> resolve_workers(None, 4) is None, resolve_workers(1, 4), 1 <= resolve_workers("auto", 4) <= 4
    (True, 1, True)
    """
    workers = OPTIONS["workers"].check(workers)  # at most the available cores
    if workers == "auto":
        return max(1, min(n_tasks, available_cpus()))
    return workers


def one_process_options(options: dict, workers) -> dict:
    """Walk-forward options for a run in this process: ``workers=1`` asks for one process in all,
    so cold folds are not sent to a fold pool either (unless ``fold_workers`` says otherwise)."""
    if workers == 1 and "fold_workers" not in options:
        return {**options, "fold_workers": 1}
    return options


def precompute_forecasts(
    frames: Mapping[str, pd.DataFrame],
    model: str = "lstm",
    store: ForecastStore | None = None,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    on_done: Callable[[str, str], None] | None = None,
    on_fold: Callable[[str, FoldRecord], None] | None = None,
    **options,
) -> ParallelReport:
    """Fill ``store`` with walk-forward forecasts for every ticker in ``frames``, in parallel.

    ``options`` are walk-forward options (``puffin_bt.options``: lookback, retrain_every, ...). Tickers whose
    forecasts are already stored are skipped. ``executor``: ``"local"`` (process pool
    of ``workers``), ``"ray"`` (``ray.init(address)``; a local runtime when None) or
    ``"serial"``. ``on_done(ticker, status)`` is called as each ticker finishes and, for the
    local and serial executors, ``on_fold(ticker, record)`` as each fold finishes.

    >>> from puffin_bt import load_sample
    >>> report = precompute_forecasts(load_sample(["IBM"], start="2012-01-01"), store=ForecastStore("/tmp/x"),
    ...                               executor="serial", hidden_dim=4, num_layers=1, epochs=1)  # doctest: +SKIP
    """
    jobs = [(ticker, df, options) for ticker, df in frames.items()]
    return precompute_jobs(jobs, model, store, executor, workers, address, on_done, on_fold)


def precompute_jobs(
    jobs: Sequence[tuple[str, pd.DataFrame, dict]],
    model: str = "lstm",
    store: ForecastStore | None = None,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    on_done: Callable[[str, str], None] | None = None,
    on_fold: Callable[[str, FoldRecord], None] | None = None,
) -> ParallelReport:
    """``precompute_forecasts`` for (label, frame, walk-forward options) jobs that may each have
    their own options, e.g. every (trial, ticker) pair of a hyperparameter sweep: all of them
    go to the pool (or the Ray cluster) at once. Labels must be unique; reports use them."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r} is not known; use one of {EXECUTORS}")
    labels = [label for label, _, _ in jobs]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"job labels must be unique; got {labels}")
    results = _Results(store if store is not None else ForecastStore(), on_done)
    tasks = results.plan(jobs, model)
    if not tasks:
        return results.report
    n_workers = resolve_workers(workers or "auto", len(tasks))
    if executor == "serial" or (executor == "local" and n_workers == 1):
        _run_serial(tasks, workers, on_fold, results.finish)
    elif executor == "local":
        _run_local(tasks, n_workers, on_fold, results.finish)
    else:
        _run_on_ray(tasks, address, tasks[0].options, results.finish)
    return results.report


class _Results:
    """Which jobs need computing, and what becomes of each: stored, served from the store, or failed."""

    def __init__(self, store: ForecastStore, on_done) -> None:
        self.store, self.on_done = store, on_done
        self.report = ParallelReport()
        self.keys: dict = {}  # label -> store key, computed once: the entry written later uses the same one
        self.duplicates: dict = {}  # label -> labels with the same key, finished with it

    def plan(self, jobs, model: str) -> list[ForecastTask]:
        """The tasks to run: jobs whose forecasts are not stored yet, each (data, options) once."""
        tasks, walks, scheduled = [], {}, {}  # scheduled: store key -> the label that computes it
        for label, df, options in jobs:
            options = {k: v for k, v in options.items() if k not in ("store", "on_fold")}
            signature = repr(sorted(options.items()))
            if signature not in walks:
                walks[signature] = make_walk_forward(model, **options)
            closes, features, _ = feature_matrix(df, options.get("features", ()))
            closes = np.asarray(closes, dtype=np.float64)
            numbers = date_numbers_of(pd.DatetimeIndex(df.index))
            key = self.keys[label] = fingerprint(walks[signature], closes, numbers, features)
            if key in scheduled:  # the same data and options twice (an Optuna batch may repeat a trial)
                self.duplicates.setdefault(scheduled[key], []).append(label)
            elif self.store.load(key, len(closes)) is not None:
                self.report.cached.append(label)
                self._tell(label, "cached")
            else:
                scheduled[key] = label
                tasks.append(ForecastTask(label, closes, numbers, model, options, features=features))
        return tasks

    def finish(self, label: str, result=None, error: str | None = None) -> None:
        if error is not None:
            self.report.failed[label] = error
            status = f"failed: {error}"
        else:
            _, preds, folds, seconds = result
            self.store.save(self.keys[label], preds, [FoldRecord(**f) for f in folds])
            self.report.computed.append(label)
            self.report.seconds[label] = seconds
            status = "computed"
        self._tell(label, status)
        for twin in self.duplicates.get(label, ()):
            if error is not None:
                self.report.failed[twin] = error
            else:
                self.report.cached.append(twin)
            self._tell(twin, status if error is not None else "cached")

    def _tell(self, label: str, status: str) -> None:
        if self.on_done is not None:
            self.on_done(label, status)


def _run_serial(tasks: list[ForecastTask], workers, on_fold, finish) -> None:
    for task in tasks:
        task.options = one_process_options(task.options, workers)
        task.progress = None if on_fold is None else _DirectReport(on_fold)
        try:
            finish(task.ticker, run_task(task))
        except PuffinError as exc:
            finish(task.ticker, error=" ".join(str(exc).split()))


def _run_local(tasks: list[ForecastTask], n_workers: int, on_fold, finish) -> None:
    # One pool for every job: it spawns if any job needs it (a CUDA job in a forked child fails).
    methods = {start_method(t.options.get("device", "auto"), t.options.get("threads", 1)) for t in tasks}
    ctx = multiprocessing.get_context("spawn" if "spawn" in methods else methods.pop())
    manager = None
    if on_fold is not None:
        manager = SyncManager(ctx=ctx)
        manager.start(mark_worker, worker_initargs())  # its server process dies with this one too
    try:
        queue = manager.Queue() if manager is not None else None
        for task in tasks:
            task.progress = queue
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=mark_worker,
                                 initargs=worker_initargs()) as pool, \
                quiet_fork_warning():
            futures = {pool.submit(run_task, task): task.ticker for task in tasks}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                _drain(queue, on_fold)
                for future in done:
                    _collect(future.result, futures[future], finish)
            _drain(queue, on_fold)
    finally:
        if manager is not None:
            manager.shutdown()


class _DirectReport:
    """In-process stand-in for the progress queue: reports each fold straight away."""

    def __init__(self, on_fold) -> None:
        self.on_fold = on_fold

    def put(self, item) -> None:
        ticker, fold = item
        self.on_fold(ticker, FoldRecord(**fold))


def _drain(queue, on_fold) -> None:
    if queue is None:
        return
    while True:
        try:
            ticker, fold = queue.get_nowait()
        except Exception:  # noqa: BLE001 - queue.Empty from a manager proxy
            return
        on_fold(ticker, FoldRecord(**fold))


def _collect(get_result, ticker: str, finish) -> None:
    try:
        finish(ticker, get_result())
    except PuffinError as exc:
        finish(ticker, error=" ".join(str(exc).split()))
    except Exception as exc:  # noqa: BLE001 - a crashed worker must not abort the other tickers
        finish(ticker, error=traceback.format_exception_only(type(exc), exc)[-1].strip())


RAY_CONNECT_SECONDS = 10.0


def check_ray_address(address: str, timeout: float = RAY_CONNECT_SECONDS) -> None:
    """A ConfigError within ``timeout`` seconds when nothing listens at ``address`` (HOST:PORT, or
    ray://HOST:PORT): ``ray.init`` itself would keep retrying for minutes. ``auto`` is left to Ray."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"address={address!r} is not HOST:PORT (e.g. '10.0.0.5:6379' or 'ray://10.0.0.5:10001')")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise ConfigError(f"cannot reach a Ray cluster at address={address!r} ({why}); start it (ray start --head) "
                          "or leave out address for a local Ray runtime, or use executor='local'") from None


def _ray_initialized() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def _run_on_ray(tasks: list[ForecastTask], address: str | None, options: dict, finish) -> None:
    if address and not _ray_initialized():
        check_ray_address(address)
    try:
        import ray
    except ImportError:
        raise ConfigError("executor='ray' needs Ray: pip install 'puffin_bt[ray]' (or use executor='local')") from None
    if not ray.is_initialized():
        if address:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), ignore_reinit_error=True, include_dashboard=False,
                     log_to_driver=False)
    device = str(options.get("device", "auto"))
    num_gpus = 0.0
    if device.startswith("cuda") or device == "auto":
        gpus = ray.cluster_resources().get("GPU", 0)
        num_gpus = min(1.0, gpus / max(1, len(tasks))) if gpus else 0.0
    remote = ray.remote(num_cpus=options.get("threads") or 1, num_gpus=num_gpus)(run_task)
    for task in tasks:  # a task has its CPUs (num_cpus); its cold folds stay in its process
        task.options = {**task.options, "fold_workers": 1}
    refs = {remote.remote(task): task.ticker for task in tasks}
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        _collect(lambda ref=done[0]: ray.get(ref), refs[done[0]], finish)
