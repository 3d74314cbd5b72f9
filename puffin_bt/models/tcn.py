"""The TCN family: a temporal convolutional network (Bai, Kolter & Koltun 2018, "An Empirical Evaluation of
Generic Convolutional and Recurrent Networks for Sequence Modeling"): residual blocks of two dilated causal
convolutions, dilation doubling per block, enough blocks that the last time step sees the whole lookback.
No batched engine: each network trains with plain autograd (``fitting.train_prepared``). The network classes live
in ``_tcn_net.py``, imported when a network is built (``TCNNet`` here too, on first read): declaring the family
needs no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..options import ModelConfig
from ._family import Family

if TYPE_CHECKING:
    from ._tcn_net import TCNNet

__all__ = ["FAMILY", "KERNEL_SIZE", "TCNNet", "levels_for"]

KERNEL_SIZE = 3  # the paper's choice for its smaller tasks; the receptive field grows with the dilations


def receptive_field(levels: int, kernel_size: int = KERNEL_SIZE) -> int:
    """Time steps the last output sees: each block's two convolutions add ``2 (k - 1) d`` with d = 1, 2, 4, ..."""
    return 1 + 2 * (kernel_size - 1) * (2**levels - 1)


def levels_for(lookback: int, num_layers: int = 1, kernel_size: int = KERNEL_SIZE) -> int:
    """Residual blocks: ``num_layers``, more when needed for the receptive field to cover ``lookback`` steps.

    >>> levels_for(20, 2), receptive_field(3)
    (3, 29)
    """
    levels = max(1, num_layers)
    while receptive_field(levels, kernel_size) < lookback:
        levels += 1
    return levels


def __getattr__(name: str):
    if name == "TCNNet":  # the network class, imported on first read (it imports torch)
        from ._tcn_net import TCNNet

        return TCNNet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _build(config: ModelConfig) -> TCNNet:
    from ._tcn_net import TCNNet

    return TCNNet(config.n_inputs, config.hidden_dim, levels_for(config.lookback, config.num_layers), 1,
                  config.dropout, KERNEL_SIZE)


def _state_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    c, k = config.hidden_dim, KERNEL_SIZE
    shapes = {}
    for i in range(levels_for(config.lookback, config.num_layers)):
        inputs = config.n_inputs if i == 0 else c
        shapes[f"blocks.{i}.conv1.weight"] = (c, inputs, k)
        shapes[f"blocks.{i}.conv1.bias"] = (c,)
        shapes[f"blocks.{i}.conv2.weight"] = (c, c, k)
        shapes[f"blocks.{i}.conv2.bias"] = (c,)
        if inputs != c:
            shapes[f"blocks.{i}.downsample.weight"] = (c, inputs, 1)
            shapes[f"blocks.{i}.downsample.bias"] = (c,)
    shapes["fc.weight"] = (1, c)
    shapes["fc.bias"] = (1,)
    return shapes


def _scratch_bytes(config: ModelConfig, batch: int) -> int:
    """Autograd keeps about twelve (batch, channels, lookback) float32 tensors per block (padded inputs,
    convolution outputs, ReLU, dropout masks and outputs, the residual sum) and their gradients."""
    levels = levels_for(config.lookback, config.num_layers)
    return 4 * 2 * levels * batch * (config.lookback + 2 * (KERNEL_SIZE - 1) * 2**levels) * \
        (12 * config.hidden_dim + config.n_inputs)


FAMILY = Family(
    name="tcn",
    label="TCN",
    build=_build,
    state_shapes=_state_shapes,
    scratch_bytes=_scratch_bytes,
)
