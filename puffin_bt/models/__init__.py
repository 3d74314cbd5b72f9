"""Model families as plug-ins: each module here (``lstm.py``, ``gru.py``, ``tcn.py``) declares one ``Family``,
and everything that lists families derives from ``FAMILIES``: the ``cell`` option (``options.CELLS``, the
module names), the CLI's ``--model`` words, the indicator and estimator classes, checkpoints, memory checks
and which engine trains a fold. Adding a family is adding a module here (README, "Adding a model family").
The registry and the declarations import no torch: a network's module is imported when it is built.
"""

from __future__ import annotations

import importlib
import math
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..memory import free_memory
from ..options import CELLS, ModelConfig
from ._family import Family

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["FAMILIES", "Family", "build", "family", "model_list", "require_memory", "scratch_bytes",
           "state_shapes", "training_bytes", "weight_bytes"]

# Imported by name (the folder's modules, ``options.CELLS``): the registry needs no list of its own.
FAMILIES: dict[str, Family] = {name: importlib.import_module(f"{__name__}.{name}").FAMILY for name in CELLS}
# --model words naming several families: "all", and "both", the two recurrent ones (as before there were more).
GROUPS: dict[str, tuple[str, ...]] = {"all": CELLS, "both": ("lstm", "gru")}


def family(name: str) -> Family:
    """The family called ``name`` (case-insensitive); ConfigError listing the known ones otherwise."""
    found = FAMILIES.get(name.lower()) if isinstance(name, str) else None
    if found is None:
        raise ConfigError(f"model={name!r} is not a known model family; use one of {', '.join(FAMILIES)}")
    return found


def model_list(text: str) -> tuple[str, ...]:
    """The families a ``--model`` value names: one family, a comma-separated list (``lstm,tcn``), ``all`` or
    ``both`` (LSTM and GRU); ConfigError for anything else or a repeat.

    >>> model_list("lstm, GRU")
    ('lstm', 'gru')
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"model={text!r} is not known; use one of {', '.join(FAMILIES)}, a comma-separated list "
                          "of them, 'all' or 'both'")
    words = [w.strip().lower() for w in text.split(",")]
    if len(words) == 1 and words[0] in GROUPS:
        return GROUPS[words[0]]
    for word in words:
        if word not in FAMILIES:
            raise ConfigError(f"model={text!r}: {word!r} is not a model family; use {', '.join(FAMILIES)}, a "
                              "comma-separated list of them, 'all' or 'both'")
    if len(set(words)) != len(words):
        raise ConfigError(f"model={text!r} names a family twice; name each once")
    return tuple(words)


def build(config: ModelConfig) -> nn.Module:
    """A freshly initialised network of ``config`` (its family's, from torch's current random state)."""
    return family(config.cell).build(config)


def state_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes of ``build(config)``, computed without building it."""
    return family(config.cell).state_shapes(config)


def scratch_bytes(config: ModelConfig) -> int:
    """Training scratch of one network of ``config`` for one full mini-batch (sizes batches and fold workers)."""
    return family(config.cell).scratch_bytes(config, config.batch_size)


def weight_bytes(config: ModelConfig) -> int:
    """Bytes of one network's float32 weights (from the shapes, nothing allocated)."""
    return 4 * sum(math.prod(shape) for shape in state_shapes(config).values())


def training_bytes(config: ModelConfig, samples: int | None = None) -> int:
    """About how much memory training one network of ``config`` takes: its weights five times
    (weights, gradients, Adam's two moments, the best weights early stopping keeps) plus its
    family's scratch for one mini-batch (``samples`` caps the batch)."""
    batch = config.batch_size if samples is None else max(1, min(config.batch_size, samples))
    return 5 * weight_bytes(config) + family(config.cell).scratch_bytes(config, batch)


def require_memory(config: ModelConfig, device: torch.device | str = "cpu", samples: int | None = None,
                   weights_only: bool = False, error: type = ConfigError) -> None:
    """Refuse a network that would not fit in the free memory, before anything is allocated
    (a 100,000-unit LSTM died in the allocator; a crafted checkpoint asked for 14 GB).
    ``weights_only``: just holding the weights (loading a model file), not training it."""
    need = weight_bytes(config) if weights_only else training_bytes(config, samples)
    free = free_memory(device)
    if free is None or need <= free:
        return
    what = "load" if weights_only else "train"
    raise error(
        f"hidden_dim={config.hidden_dim}, num_layers={config.num_layers} (lookback={config.lookback}, "
        f"batch_size={config.batch_size}) needs about {need / 2**30:.2f} GiB to {what} but only "
        f"{free / 2**30:.2f} GiB of memory is available; use a smaller hidden_dim, num_layers, batch_size or lookback"
    )
