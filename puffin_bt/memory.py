"""Memory arithmetic that needs no torch: the batched engine's training scratch per model and the memory free where
the tensors live. A walk-forward checks that its model fits when it is built, also when every forecast will come
from the store and torch is never imported (``_lazy``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .processes import available_memory

if TYPE_CHECKING:
    import torch

__all__ = ["ALIGN", "bytes_per_model", "free_memory", "padded_hidden"]

ALIGN = 32  # two AVX-512 float32 vectors: torch's vectorised loops step by 2 vectors, the rest runs scalar


def padded_hidden(hidden: int) -> int:
    return -(-hidden // ALIGN) * ALIGN


def bytes_per_model(hidden: int, layers: int, seq_len: int, batch: int, input_dim: int = 1) -> int:
    """Training scratch memory of one model (float32), per layer about five (T, B, 4H) buffers
    (input product, gates, their coefficients, gate gradients, a copy) and eight (T, B, H) ones
    (checked against measured memory: bench/README.md, "Design measurements")."""
    h = padded_hidden(hidden)
    per_layer = seq_len * batch * (5 * 4 * h + 8 * h + input_dim)
    return 4 * layers * per_layer


def free_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes still free where the tensors live: the GPU's for CUDA, else this process's
    (``processes.available_memory``, a container's limit included); None where unknown.
    Imports torch only for a device other than the CPU."""
    if device == "cpu" or getattr(device, "type", None) == "cpu":
        return available_memory()
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    return available_memory() if device.type == "cpu" else None
