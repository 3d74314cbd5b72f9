"""Private: cold-fold scheduling for one walk-forward. Folds trained from scratch are independent models, so those
due together are grouped by sample count, cut into batches for the family's batched engine and trained at once,
in the fold pool's worker processes (``foldpool``) when there are several. A fold's result does not depend on its
batch or its process."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ._lazy import LazyModule, lazy_functions
from ._sizing import cold_batch, worker_bytes
from .options import FitConfig, ModelConfig
from .schedule import FoldSchedule

if TYPE_CHECKING:
    import numpy as np

    from .foldpool import FoldPool

# Imported on first use (``_lazy``): a walk-forward served by the store never imports torch.
fitting, foldpool = LazyModule("puffin_bt.fitting"), LazyModule("puffin_bt.foldpool")
resolve_fold_workers, = lazy_functions("puffin_bt.foldpool", "resolve_fold_workers")

__all__ = ["fold_pool", "train_cold"]


def train_cold(config: ModelConfig, schedule: FoldSchedule, epochs: int, device, folds: list[tuple],
               samples: Callable[[int, np.ndarray | None], np.ndarray], residuals: bool,
               pool: FoldPool | None) -> tuple[list[tuple], int, float]:
    """Train from scratch, together, the folds given as (index, closes up to the fold bar, features up to it or
    None); ``samples(bar, features)``: a fold's training windows.

    Folds with equal sample counts share batches of up to ``_sizing.MAX_BATCH`` models (fewer when their scratch
    memory would pass ``_sizing.BATCH_MEMORY``), spread over the ``pool``'s workers when there are several
    batches. Returns each fold's (index, nets, scaler, histories, seconds, scores), the batches trained in the
    pool and the wall time; a fold's seconds are its own preparation plus its share of its batch's training.
    """
    started = time.perf_counter()
    groups: dict[int, list[tuple]] = {}
    for k, history, features in folds:  # equal sample counts give equal tensor shapes
        groups.setdefault(len(samples(len(history) - 1, features)), []).append((k, history, features))
    max_batch, _ = cold_batch(config)
    max_batch = max(1, max_batch // config.trained_members)  # folds per batch: each brings its trained members
    spread = 1 if pool is None else pool.workers
    batches = []
    for members in groups.values():
        batches += fitting.even_batches(members, max(-(-len(members) // max_batch), min(spread, len(members))))
    pooled = 0
    if pool is not None and len(batches) > 1:
        results = pool.train(config, schedule, epochs, batches, residuals)
        pooled = len(batches)
    else:
        results = [fitting.train_cold_batch(config, schedule, epochs, device, batch, residuals) for batch in batches]
    return [fold for batch in results for fold in batch], pooled, time.perf_counter() - started


@contextlib.contextmanager
def fold_pool(config: ModelConfig, fit: FitConfig, device) -> Iterator[FoldPool | None]:
    """The shared process pool of ``fit.fold_workers`` for one call's cold batches, or None where one process
    trains them (one worker resolved, e.g. on a GPU or one core). An error or Ctrl-C may leave batches running:
    the pool is then discarded, to start afresh next time."""
    workers = resolve_fold_workers(fit.fold_workers, device, fit.threads, worker_bytes(config))
    if workers <= 1:
        yield None
        return
    pool = foldpool.acquire(workers, fit.threads)
    try:
        yield pool
    except BaseException:
        foldpool.discard(pool)
        raise
    foldpool.release(pool)
