"""What a model family declares (``Family``): the one object a family module in ``puffin_bt/models/`` exports as
``FAMILY``, from which every list of families is derived. A declaration needs no torch: torch is imported when a
network is built or trained (``build``, ``engine``), so a re-run whose forecasts all come from the store skips it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..options import ModelConfig

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Family"]


@dataclass(frozen=True)
class Family:
    """A model family: how to build its network for a ``ModelConfig`` and train it.

    ``name`` is the ``cell`` option's value and the CLI's ``--model`` word (the module's name); ``label`` names
    the classes derived from it (``Trading<label>``, the estimator a model file records; ``<label>Forecast``, the
    indicator). ``state_shapes``: the ``state_dict`` shapes ``build`` gives, computed without building it (a model
    file is checked against them before anything is allocated). ``scratch_bytes(config, batch)``: training
    memory of one network for a mini-batch of ``batch`` windows beyond its weights (sizes batches, fold
    workers and the memory check). ``engine_name``: the class in ``puffin_bt.batched`` of a batched engine
    (``batched.BatchedRNN``) training many networks of one shape as one computation (``engine``, imported when
    asked), or None: each network trains alone with autograd (``fitting.train_prepared``), wherever the others
    would batch. ``warm_on_engine``: a warm refit of one network also goes to the engine (else to autograd, e.g.
    nn.LSTM's fused kernel is faster there).
    """

    name: str
    label: str
    build: Callable[[ModelConfig], nn.Module]
    state_shapes: Callable[[ModelConfig], dict[str, tuple[int, ...]]]
    scratch_bytes: Callable[[ModelConfig, int], int]
    engine_name: str | None = None
    warm_on_engine: bool = False

    @property
    def engine(self) -> type | None:
        """The batched engine's class (importing the engine, and torch), or None."""
        if self.engine_name is None:
            return None
        from .. import batched

        return getattr(batched, self.engine_name)

    @property
    def estimator_name(self) -> str:
        return f"Trading{self.label}"

    @property
    def indicator_name(self) -> str:
        return f"{self.label}Forecast"
