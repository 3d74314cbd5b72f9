"""The ticker pool: walk-forward forecasts for many tickers (or (trial, ticker) jobs) in parallel, into
the forecast store.

Tickers walked forward with the same options are planned in groups (``plan_groups``), and a task is a group:
one ticker's own walk-forward when the group holds one, else the group's walk-forwards in lockstep
(``universe.forecast_together``: each fold's models of the group trained as one batched computation, every
ticker's forecasts bit for bit those of its own walk-forward). Tasks run in a local process pool
(``executor="local"``) or on a Ray cluster (``executor="ray"``, optional extra ``puffin_bt[ray]``). Workers
return forecasts to the caller, which alone writes them to the store: a task has no side effect, so a task
run twice (Ray retries the tasks of a node that died) computes the same forecasts and nothing is stored
half-done. A ticker that fails is reported and skipped, never aborting the others.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing.managers import SyncManager

import numpy as np
import pandas as pd

from ._lazy import LazyModule, cuda_impossible, lazy_functions
from ._sizing import WORKER_OWN_BYTES, cold_batch
from .checks import check_int
from .dates import date_numbers_of, num2date
from .errors import ConfigError, PuffinError
from .options import OPTIONS, keyed_values, resolve
from .processes import available_cpus, available_memory, mark_worker, quiet_fork_warning, start_method, worker_initargs
from .store import ForecastStore, fingerprint
from .universe import forecast_together
from .walkforward import FoldRecord, WalkForward, feature_matrix, make_walk_forward, require_history

# Imported on first use (``_lazy``): tickers whose forecasts all come from the store need no torch.
torch = LazyModule("torch")
resolve_device, = lazy_functions("puffin_bt.training", "resolve_device")

__all__ = ["ForecastTask", "ParallelReport", "TickerResult", "check_ray_address", "cuda_devices", "device_of",
           "one_process_options", "plan_groups", "precompute_forecasts", "precompute_jobs", "reason",
           "resolve_workers", "run_group"]

EXECUTORS = ("local", "ray", "serial")
RAY_RETRIES = 3  # attempts after the first when a task's worker or node dies (Ray's default, said out loud)
MEMORY_SHARE = 0.5  # "auto" gives the workers' estimated training scratch at most this share of the free memory


@dataclass
class ForecastTask:
    """Everything one worker needs for one ticker: plain arrays and options (cheap to pickle, no engine objects)."""

    ticker: str
    closes: np.ndarray
    date_numbers: np.ndarray
    model: str
    options: dict
    progress: object = None  # anything with .put((ticker, fold dict)): a Manager queue across processes
    features: np.ndarray | None = None  # the built-in features' values, one row per bar


@dataclass
class TickerResult:
    """What a worker returns for one ticker: its forecast lines and folds, or why it failed."""

    ticker: str
    lines: np.ndarray | None = None
    folds: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"  # the device type that computed the forecasts: they are stored under its key
    error: str | None = None


@dataclass
class ParallelReport:
    """What happened per ticker: computed, found in the store, or failed (and why)."""

    computed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    tasks: int = 0  # tasks run (groups of tickers)

    def summary(self) -> str:
        parts = [f"{len(self.computed)} computed", f"{len(self.cached)} from the store"]
        if self.failed:
            parts.append(f"{len(self.failed)} skipped: " + "; ".join(f"{t} ({why})" for t, why in self.failed.items()))
        return ", ".join(parts)


def reason(exc: BaseException) -> str:
    """One line saying why a ticker failed: a PuffinError's message, else the exception's type and message."""
    if isinstance(exc, PuffinError):
        return " ".join(str(exc).split())
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def device_of(walk: WalkForward) -> str:
    """The device type a worker's walk-forward computed on (what its forecasts are stored under)."""
    return walk.device_type


def run_group(tasks: list[ForecastTask]) -> list[TickerResult]:
    """Worker body: walk forward over a group of tickers with one set of options, one result per ticker in
    the tasks' order. One ticker: its own walk-forward; more: in lockstep, their batched folds trained together
    (``universe.forecast_together``), with the same forecasts. Pure: the same tasks give the same results,
    wherever and however often they run."""
    started = time.perf_counter()
    results: dict[str, TickerResult] = {}
    members = []
    together = {"fold_workers": 1} if len(tasks) > 1 else {}  # lockstep trains its batches itself
    for task in tasks:
        try:
            walk = make_walk_forward(task.model, _reporter(task), **{**task.options, **together})
            require_history(task.ticker, len(task.closes), walk.schedule.min_train)
            members.append((task, walk, [num2date(x) for x in task.date_numbers]))
        except Exception as exc:  # noqa: BLE001 - reported for this ticker
            results[task.ticker] = TickerResult(task.ticker, error=reason(exc))
    if len(members) == 1:
        task, walk, dates = members[0]
        try:
            outcomes = [walk.forecast_lines(task.closes, 0, len(task.closes), dates, features=task.features)]
        except Exception as exc:  # noqa: BLE001 - reported for this ticker
            outcomes = [exc]
    else:
        outcomes = forecast_together([walk for _, walk, _ in members], [task.closes for task, _, _ in members],
                                     [dates for _, _, dates in members], [task.features for task, _, _ in members])
    seconds = (time.perf_counter() - started) / max(1, len(tasks))
    for (task, walk, _), outcome in zip(members, outcomes):
        if isinstance(outcome, BaseException):
            results[task.ticker] = TickerResult(task.ticker, error=reason(outcome))
        else:
            results[task.ticker] = TickerResult(task.ticker, outcome, [f.to_dict() for f in walk.folds], seconds,
                                                device_of(walk))
    return [results[task.ticker] for task in tasks]


def _reporter(task: ForecastTask):
    if task.progress is None:
        return None

    def report(record, _queue=task.progress, _ticker=task.ticker):
        _queue.put((_ticker, record.to_dict()))
    return report


def resolve_workers(workers, n_tasks: int, device="auto") -> int | None:
    """``"auto"``: one worker per CPU core, at most one per task, and on a CUDA machine (``device``
    resolving to CUDA) one per GPU: each worker process holds its own CUDA context, and batches its
    tickers' models on its GPU. None stays None (no pool); a number is checked (a whole number from 1 to
    the available cores). The one reading of ``workers`` for backtest, evaluation, tuning and the pool itself.

    >>> resolve_workers(None, 4) is None, resolve_workers(1, 4), 1 <= resolve_workers("auto", 4) <= 4
    (True, 1, True)
    """
    workers = OPTIONS["workers"].check(workers)  # at most the available cores
    if workers == "auto":
        n = max(1, min(n_tasks, available_cpus()))
        gpus = cuda_devices(device)
        return min(n, gpus) if gpus else n
    return workers


def cuda_devices(device) -> int:
    """How many CUDA GPUs work with ``device`` would use here: 0 unless it resolves to CUDA (without importing
    torch where it has none: a CPU-only wheel)."""
    if str(device).lower() == "cpu" or (device is None or str(device).lower() == "auto") and cuda_impossible():
        return 0
    try:
        on_cuda = resolve_device(device).type == "cuda"
    except PuffinError:  # an unavailable device fails later, where the walk-forward is built
        return 0
    return torch.cuda.device_count() if on_cuda else 0


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
    tickers_per_task: int | None = None,
    **options,
) -> ParallelReport:
    """Fill ``store`` with walk-forward forecasts for every ticker in ``frames``, in parallel.

    ``options`` are walk-forward options (``puffin_bt.options``: lookback, retrain_every, ...). Tickers whose
    forecasts are already stored are skipped. ``executor``: ``"local"`` (process pool
    of ``workers``), ``"ray"`` (``ray.init(address)``; a local runtime when None) or
    ``"serial"``. ``on_done(ticker, status)`` is called as each ticker finishes and, for the
    local and serial executors, ``on_fold(ticker, record)`` as each fold finishes.
    ``tickers_per_task``: tickers walked forward together in one task (``plan_groups``; None: sized
    from the tickers, workers and memory; 1: each ticker alone). The forecasts do not depend on it.

    >>> from puffin_bt import load_sample
    >>> report = precompute_forecasts(load_sample(["IBM"], start="2012-01-01"), store=ForecastStore("/tmp/x"),
    ...                               executor="serial", hidden_dim=4, num_layers=1, epochs=1)  # doctest: +SKIP
    """
    jobs = [(ticker, df, options) for ticker, df in frames.items()]
    return precompute_jobs(jobs, model, store, executor, workers, address, on_done, on_fold, tickers_per_task)


def precompute_jobs(
    jobs: Sequence[tuple[str, pd.DataFrame, dict]],
    model: str = "lstm",
    store: ForecastStore | None = None,
    executor: str = "local",
    workers: int | None = None,
    address: str | None = None,
    on_done: Callable[[str, str], None] | None = None,
    on_fold: Callable[[str, FoldRecord], None] | None = None,
    tickers_per_task: int | None = None,
) -> ParallelReport:
    """``precompute_forecasts`` for (label, frame, walk-forward options) jobs that may each have
    their own options, e.g. every (trial, ticker) pair of a hyperparameter sweep: all of them
    go to the pool (or the Ray cluster) at once, jobs with equal options grouped into tasks.
    Labels must be unique; reports use them."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r} is not known; use one of {EXECUTORS}")
    labels = [label for label, _, _ in jobs]
    if len(set(labels)) != len(labels):
        twice = sorted(label for label, n in Counter(labels).items() if n > 1)
        raise ConfigError(f"job labels must be unique; {len(twice)} repeat: {twice[:5]}")
    check_int("tickers_per_task", tickers_per_task, allow_none=True)
    results = _Results(store if store is not None else ForecastStore(), on_done)
    tasks = results.plan(jobs, model)
    if not tasks:
        return results.report
    device = tasks[0].options.get("device", "auto")
    if executor == "ray":
        ray = _connect_ray(address)
        n_workers = _ray_slots(ray, device, tasks[0].options.get("threads") or 1)
    else:
        n_workers = 1 if executor == "serial" else resolve_workers(workers or "auto", len(tasks), device)
    groups = plan_groups(tasks, model, n_workers, tickers_per_task, results.walks)
    if executor == "local" and workers in (None, "auto"):
        n_workers = min(n_workers, _workers_memory_allows(groups, results.walks))
    n_workers = min(n_workers, len(groups))
    results.report.tasks = len(groups)
    if executor == "serial" or (executor == "local" and n_workers == 1):
        _run_serial(groups, workers, on_fold, results)
    elif executor == "local":
        _run_local(groups, n_workers, on_fold, results, cuda_devices(device))
    else:
        _run_on_ray(ray, groups, device, results)
    return results.report


def plan_groups(tasks: list[ForecastTask], model: str, n_workers: int, tickers_per_task: int | None = None,
                walks: Mapping | None = None) -> list[list[ForecastTask]]:
    """Tasks of equal options in groups walked forward together. ``tickers_per_task`` None: as many as fill one
    batch of the engine (``_sizing.cold_batch``, over the ensemble's members), fewer when
    ``n_workers`` would otherwise wait for work; the longest series together, so batches stay full longer."""
    by_options: dict[str, list[ForecastTask]] = {}
    for task in tasks:
        by_options.setdefault(_signature(task.model, task.options), []).append(task)
    groups = []
    for members in by_options.values():
        size = tickers_per_task
        if size is None:
            walk = _walk_for(members[0], walks)
            batch = max(1, cold_batch(walk.config)[0] // walk.config.trained_members)
            size = max(1, min(batch, -(-len(tasks) // max(1, n_workers))))
        members = sorted(members, key=lambda t: -len(t.closes))
        groups += [members[i:i + size] for i in range(0, len(members), size)]
    return groups


def _signature(model: str, options: dict) -> str:
    """Tasks of equal signatures compute their forecasts alike, so they are walked forward together: the same
    family, device and options that change forecasts (``options.keyed_names``, defaults filled in); the others
    (threads, fold_workers) may differ, each task still runs with its own."""
    values = resolve(options, ["forecast"], "forecast options")
    return repr((model, values["device"], list(keyed_values(values).items())))


def _walk_for(task: ForecastTask, walks: Mapping | None) -> WalkForward:
    """A walk-forward with the task's options: the one built for them already (``_Results.walks``), else a new one."""
    return (walks or {}).get(_signature(task.model, task.options)) or make_walk_forward(task.model, **task.options)


def _workers_memory_allows(groups: list[list[ForecastTask]], walks: Mapping) -> int:
    """The most workers whose training scratch (one full batch each, plus 64 MiB of their own) fits in
    ``MEMORY_SHARE`` of the free memory (``processes.available_memory``: a container's limit included)."""
    free = available_memory()
    if free is None:
        return len(groups)
    need = 0
    for group in groups:
        walk = _walk_for(group[0], walks)
        max_batch, per_model = cold_batch(walk.config)
        need = max(need, min(max_batch, len(group) * walk.config.trained_members) * per_model + WORKER_OWN_BYTES)
    return max(1, int(free * MEMORY_SHARE) // need)


class _Results:
    """Which jobs need computing, and what becomes of each: stored, served from the store, or failed."""

    def __init__(self, store: ForecastStore, on_done) -> None:
        self.store, self.on_done = store, on_done
        self.report = ParallelReport()
        self.inputs: dict = {}  # label -> (walk, closes, date numbers, features): what its store key is made of
        self.walks: dict = {}  # options signature -> a walk-forward with those options
        self.duplicates: dict = {}  # label -> labels with the same key, finished with it

    def plan(self, jobs, model: str) -> list[ForecastTask]:
        """The tasks to run: jobs whose forecasts are not stored yet, each (data, options) once."""
        tasks, scheduled = [], {}  # scheduled: store key -> the label that computes it
        for label, df, options in jobs:
            options = {k: v for k, v in options.items() if k not in ("store", "on_fold")}
            signature = _signature(model, options)
            if signature not in self.walks:
                self.walks[signature] = make_walk_forward(model, **options)
            walk = self.walks[signature]
            closes, features, _ = feature_matrix(df, options.get("features", ()))
            closes = np.asarray(closes, dtype=np.float64)
            numbers = date_numbers_of(pd.DatetimeIndex(df.index))
            self.inputs[label] = (walk, closes, numbers, features)
            key, hit = self.store.lookup(walk, closes, numbers, features)
            if key in scheduled:  # the same data and options twice (an Optuna batch may repeat a trial)
                self.duplicates.setdefault(scheduled[key], []).append(label)
            elif hit is not None:
                self.report.cached.append(label)
                self._tell(label, "cached")
            else:
                scheduled[key] = label
                tasks.append(ForecastTask(label, closes, numbers, model, options, features=features))
        return tasks

    def finish(self, label: str, result: TickerResult | None = None, error: str | None = None) -> None:
        error = error if result is None else result.error
        if error is not None:
            self.report.failed[label] = error
            status = f"failed: {error}"
        else:
            walk, closes, numbers, features = self.inputs[label]
            # Stored under the device that computed them (a GPU worker's forecasts never under a CPU key).
            key = fingerprint(walk, closes, numbers, features, device=result.device)
            self.store.save(key, result.lines, [FoldRecord(**f) for f in result.folds])
            self.report.computed.append(label)
            self.report.seconds[label] = result.seconds
            status = "computed"
        self._tell(label, status)
        for twin in self.duplicates.get(label, ()):
            if error is not None:
                self.report.failed[twin] = error
            else:
                self.report.cached.append(twin)
            self._tell(twin, status if error is not None else "cached")

    def finish_group(self, group: list[ForecastTask], get_results) -> None:
        """Finish a group's tickers from its task's results; a task that failed as a whole (its worker died,
        a node was lost past Ray's retries) fails each of its tickers with the reason."""
        try:
            results = get_results()
        except Exception as exc:  # noqa: BLE001 - a crashed worker must not abort the other groups
            for task in group:
                self.finish(task.ticker, error=reason(exc))
            return
        for result in results:
            self.finish(result.ticker, result)

    def _tell(self, label: str, status: str) -> None:
        if self.on_done is not None:
            self.on_done(label, status)


def _run_serial(groups: list[list[ForecastTask]], workers, on_fold, results: _Results) -> None:
    for group in groups:
        for task in group:
            task.options = one_process_options(task.options, workers)
            task.progress = None if on_fold is None else _DirectReport(on_fold)
        results.finish_group(group, lambda g=group: run_group(g))


def _run_local(groups: list[list[ForecastTask]], n_workers: int, on_fold, results: _Results, gpus: int = 0) -> None:
    # One pool for every job: it spawns if any job needs it (a CUDA job in a forked child fails).
    tasks = [task for group in groups for task in group]
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
        counter = ctx.Value("i", 0) if gpus else None
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=_start_worker,
                                 initargs=(counter, gpus, *worker_initargs())) as pool, quiet_fork_warning():
            futures = {pool.submit(run_group, group): group for group in groups}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                _drain(queue, on_fold)
                for future in done:
                    results.finish_group(futures[future], future.result)
            _drain(queue, on_fold)
    finally:
        if manager is not None:
            manager.shutdown()


def _start_worker(counter, gpus: int, parent_pid: int | None = None, from_main_thread: bool = False) -> None:
    """Pool initializer: a puffin_bt worker that dies with its parent (``processes.mark_worker``); on a CUDA
    machine each worker takes the next GPU (one per GPU)."""
    mark_worker(parent_pid, from_main_thread)
    if counter is not None and gpus:
        with counter.get_lock():
            index, counter.value = counter.value, counter.value + 1
        torch.cuda.set_device(index % gpus)


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


def _connect_ray(address: str | None):
    """Ray, joined to the cluster at ``address`` (a local runtime when None, or the runtime already started)."""
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
    return ray


def _gpus_per_task(ray, device) -> int:
    """A task (a group of tickers) on a GPU takes a whole one and batches its tickers' models there."""
    device = str(device)
    return 1 if (device.startswith("cuda") or device == "auto") and ray.cluster_resources().get("GPU", 0) else 0


def _ray_slots(ray, device, threads: int) -> int:
    """Tasks the cluster runs at once: one per GPU for GPU work, else one per ``threads`` CPUs."""
    resources = ray.cluster_resources()
    if _gpus_per_task(ray, device):
        return max(1, int(resources.get("GPU", 1)))
    return max(1, int(resources.get("CPU", 1)) // threads)


def _run_on_ray(ray, groups: list[list[ForecastTask]], device, results: _Results) -> None:
    threads = groups[0][0].options.get("threads") or 1
    # Retried when its worker or node dies: a task only computes (the driver stores), so a rerun is harmless.
    remote = ray.remote(num_cpus=threads, num_gpus=_gpus_per_task(ray, device), max_retries=RAY_RETRIES,
                        retry_exceptions=False)(run_group)
    for group in groups:  # a task has its CPUs (num_cpus); its cold folds stay in its process
        for task in group:
            task.options = {**task.options, "fold_workers": 1}
    refs = {remote.remote(group): group for group in groups}
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        results.finish_group(refs[done[0]], lambda ref=done[0]: ray.get(ref))
