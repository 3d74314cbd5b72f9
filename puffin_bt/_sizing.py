"""Private: how many cold folds train together and how much memory a fold worker needs, from the model family's
memory estimate (``models.scratch_bytes``). The walk-forward, the lockstep universe and the ticker pool size their
batches and workers here."""

from __future__ import annotations

from . import models
from .options import ModelConfig

# Cold folds trained together at most: past ~8 the working set leaves the caches (bench/README.md,
# "Design measurements"). Results do not depend on it (the batched engine is exact per model).
MAX_BATCH = 8
BATCH_MEMORY = 512 * 2**20  # and at most this much training scratch memory per batch (big nets train fewer at once)
WORKER_OWN_BYTES = 64 * 2**20  # a fold worker's memory of its own beyond a batch (bench/README.md)


def cold_batch(config: ModelConfig) -> tuple[int, int]:
    """Most models trained together (``MAX_BATCH``, fewer when their training scratch would pass
    ``BATCH_MEMORY``) and one model's scratch bytes."""
    per_model = models.scratch_bytes(config)
    return max(1, min(MAX_BATCH, BATCH_MEMORY // per_model)), per_model


def worker_bytes(config: ModelConfig) -> int:
    """A fold worker's memory beyond what it shares with its parent: one full batch's training scratch plus
    ``WORKER_OWN_BYTES`` (measured: bench/README.md, "Design measurements")."""
    max_batch, per_model = cold_batch(config)
    return max_batch * per_model + WORKER_OWN_BYTES
