"""Train the cold folds of one walk-forward on several CPU cores.

Folds retrained from scratch are independent, so their batches (see
``_coldfolds.train_cold``) can train in separate processes. A forked worker
starts in milliseconds with torch already imported; it receives each fold's closes
up to its fold bar (nothing later, so causality is that of the in-process path),
trains the batch single-threaded and sends back the flat weights, the scaler and
the history. The engine's per-model results do not depend on the batch, so the
forecasts are bit for bit those of one process (tested).

``fold_workers="auto"`` uses one process per available core on Linux when training
on the CPU, no more than half the free memory holds (``available_memory``, a cgroup
limit included), and stays in-process where a pool would not pay or not work: on CUDA
(one device batches the folds itself), where processes spawn instead of forking
(a spawned worker re-imports torch first), inside a daemonic process (Backtrader's
``optstrategy`` pool) and inside puffin_bt's own ticker workers (which already use
the cores).

The pool is kept for the next walk-forward (every data feed's indicator, the next
backtest in a sweep) and closed after ``IDLE_SECONDS`` without work, or by
``shutdown()``: a fresh worker's first batch runs slower than a warm one's (allocator and
library warm-up), on top of the cost of forking and joining the pool (bench/README.md).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import torch

from .errors import PuffinError
from .fitting import new_fold_net, train_cold_batch
from .options import OPTIONS
from .processes import available_cpus, available_memory, in_worker, mark_worker, quiet_fork_warning, start_method, worker_initargs
from .training import torch_threads

__all__ = ["FoldPool", "acquire", "discard", "flat_weights", "net_from_flat", "release", "resolve_fold_workers"]

IDLE_SECONDS = 60.0  # an idle shared pool is closed after this long
_lock = threading.Lock()
_shared: dict = {"pool": None, "timer": None, "users": 0}


MEMORY_SHARE = 0.5  # "auto" gives the fold workers' estimated scratch at most this share of the free memory


def resolve_fold_workers(value, device: torch.device, threads: int | None = 1,
                         worker_bytes: int | None = None) -> int:
    """How many processes train one walk-forward's cold folds (1 = in this process).

    ``"auto"``: one per core (``threads`` cores each), and no more than let their training
    scratch (``worker_bytes`` each, the walk-forward's estimate) fit in ``MEMORY_SHARE`` of the
    memory still available (``available_memory``: a container's cgroup limit included).

    >>> resolve_fold_workers(None, torch.device("cpu")), resolve_fold_workers(1, torch.device("cpu"))
    (1, 1)
    >>> resolve_fold_workers("auto", torch.device("cuda"))
    1
    """
    value = OPTIONS["fold_workers"].check(value)
    if value is None or device.type != "cpu" or in_worker():
        return 1
    if value != "auto":
        return value
    if start_method("cpu", threads) != "fork":
        return 1
    workers = max(1, available_cpus() // (threads or 1))
    free = available_memory() if worker_bytes else None
    if free is not None:
        workers = min(workers, max(1, int(free * MEMORY_SHARE) // worker_bytes))
    return workers


def acquire(workers: int, threads: int | None = 1) -> FoldPool:
    """The shared pool with ``workers`` processes of ``threads`` torch threads (kept between
    walk-forwards; see ``release``)."""
    with _lock:
        _cancel_timer()
        pool = _shared["pool"]
        if pool is not None and (pool.workers, pool.threads, pool.pid) != (workers, threads or 1, os.getpid()):
            if pool.pid == os.getpid():
                pool.close()
            pool = None  # a pool inherited through a fork belongs to the parent
        if pool is None:
            pool = _shared["pool"] = FoldPool(workers, threads)
            _shared["users"] = 0
        _shared["users"] += 1
        return pool


def release(pool: FoldPool) -> None:
    """Done with the shared pool for now: it is closed after ``IDLE_SECONDS`` unless used again."""
    with _lock:
        if _shared["pool"] is not pool:
            return
        _shared["users"] -= 1
        if _shared["users"] <= 0:
            _cancel_timer()
            timer = threading.Timer(IDLE_SECONDS, _close_if_idle, args=(pool,))
            timer.daemon = True
            timer.start()
            _shared["timer"] = timer


def discard(pool: FoldPool, wait: bool = False) -> None:
    """Close ``pool`` now and forget it: a walk-forward that failed or was interrupted may have left
    batches running in it, which the next one must not queue behind."""
    with _lock:
        if _shared["pool"] is pool:
            _cancel_timer()
            _shared["pool"], _shared["users"] = None, 0
    if pool.pid == os.getpid():
        pool.close(wait=wait)


def shutdown() -> None:
    """Close the shared fold pool now (its worker processes exit)."""
    pool = _shared["pool"]
    if pool is not None:
        discard(pool, wait=True)


def _close_if_idle(pool: FoldPool) -> None:
    with _lock:
        if _shared["pool"] is not pool or _shared["users"] > 0:
            return
        _shared["pool"] = None
    pool.close()


def _cancel_timer() -> None:
    timer, _shared["timer"] = _shared["timer"], None
    if timer is not None:
        timer.cancel()


class FoldPool:
    """A process pool for cold-fold batches, started on first use; ``close`` ends it."""

    def __init__(self, workers: int, threads: int | None = 1) -> None:
        self.workers, self.threads = workers, threads or 1
        self.pid = os.getpid()
        self._executor: ProcessPoolExecutor | None = None

    def train(self, config, schedule, epochs: int, batches: list[list], residuals: bool = False) -> list[list[tuple]]:
        """``train_cold_batch`` for every batch, in the pool; results in batch order.

        A pool whose worker died (killed while idle, say) is replaced and the batches run once
        more; a second death is reported (a worker that dies on the work itself, e.g. out of memory).
        """
        try:
            results = self._run(config, schedule, epochs, batches, residuals)
        except BrokenProcessPool:
            self.close()
            try:
                results = self._run(config, schedule, epochs, batches, residuals)
            except BrokenProcessPool as exc:
                self.close()  # the next walk-forward starts a fresh pool
                raise PuffinError(
                    f"a fold worker process died twice ({exc}); it may have run out of memory. "
                    "Train in one process with fold_workers=1 (CLI: --workers 1), or use a smaller model"
                ) from None
        out = []
        for batch in results:
            trained = []
            for k, flats, scaler, hists, seconds, scores in batch:
                nets = [net_from_flat(config, k, member, flat) for member, flat in enumerate(flats)]
                trained.append((k, nets, scaler, hists, seconds, scores))
            out.append(trained)
        return out

    def _run(self, config, schedule, epochs: int, batches: list[list], residuals: bool) -> list:
        futures = [self.submit(_train_in_worker, config, schedule, epochs, self.threads, batch, residuals)
                   for batch in batches]
        return [future.result() for future in futures]

    def submit(self, fn, *args) -> Future:
        """Run ``fn(*args)`` in a worker (a module-level function: it is pickled by name); a dead worker shows as
        ``BrokenProcessPool`` from the future's ``result()``."""
        with quiet_fork_warning():
            if self._executor is None:
                ctx = multiprocessing.get_context(start_method("cpu", self.threads))
                self._executor = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=mark_worker,
                                                     initargs=worker_initargs())
            return self._executor.submit(fn, *args)

    def close(self, wait: bool = True) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait, cancel_futures=True)


def _train_in_worker(config, schedule, epochs: int, threads: int | None, batch: list, residuals: bool) -> list[tuple]:
    with torch_threads(threads or 1):
        trained = train_cold_batch(config, schedule, epochs, torch.device("cpu"), batch, residuals)
    return [(k, [flat_weights(net) for net in nets], scaler, hists, seconds, scores)
            for k, nets, scaler, hists, seconds, scores in trained]


def flat_weights(net: torch.nn.Module) -> np.ndarray:
    """A trained network's parameters as one flat array: what a worker sends back."""
    return np.ascontiguousarray(torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy())


def net_from_flat(config, k: int, member: int, flat: np.ndarray) -> torch.nn.Module:
    """Fold ``k``'s member ``member`` with the weights ``flat_weights`` sent back, ready to forecast."""
    net = new_fold_net(config, k, member)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.from_numpy(flat), net.parameters())
    return net.eval()
