"""What the recurrent families (``lstm``, ``gru``) share: ``nets.RecurrentNet`` built from a config, its
state shapes, and the batched engine's training scratch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..memory import bytes_per_model
from ..options import ModelConfig
from ._family import Family

if TYPE_CHECKING:
    from ..nets import RecurrentNet


def build(config: ModelConfig) -> RecurrentNet:
    """The network a ``ModelConfig`` describes (inputs: the scaled return and each feature), freshly
    initialised from torch's current random state (``nets``, and torch, imported here: declaring needs neither)."""
    from ..nets import RecurrentNet

    return RecurrentNet(config.cell, config.n_inputs, config.hidden_dim, config.num_layers, 1, config.dropout)


def state_shapes(config: ModelConfig, gates: int) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes of ``build(config)`` for a cell of ``gates`` gates per unit."""
    rows = gates * config.hidden_dim
    shapes = {}
    for layer in range(config.num_layers):
        inputs = config.n_inputs if layer == 0 else config.hidden_dim
        shapes[f"rnn.weight_ih_l{layer}"] = (rows, inputs)
        shapes[f"rnn.weight_hh_l{layer}"] = (rows, config.hidden_dim)
        shapes[f"rnn.bias_ih_l{layer}"] = (rows,)
        shapes[f"rnn.bias_hh_l{layer}"] = (rows,)
    shapes["fc.weight"] = (1, config.hidden_dim)
    shapes["fc.bias"] = (1,)
    return shapes


def scratch_bytes(config: ModelConfig, batch: int) -> int:
    """The batched engine's scratch for one model (``memory.bytes_per_model``; the LSTM's four gates bound the
    GRU's three)."""
    return bytes_per_model(config.hidden_dim, config.num_layers, config.lookback, batch)


def family(name: str, label: str, gates: int, engine_name: str, warm_on_engine: bool) -> Family:
    """A recurrent family: ``RecurrentNet`` over the torch cell called ``name``, ``gates`` gates per unit, trained on
    the batched engine ``batched.<engine_name>``."""
    return Family(name=name, label=label, build=build, state_shapes=lambda config: state_shapes(config, gates),
                  scratch_bytes=scratch_bytes, engine_name=engine_name, warm_on_engine=warm_on_engine)
