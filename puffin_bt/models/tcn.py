"""The TCN family: a temporal convolutional network (Bai, Kolter & Koltun 2018, "An Empirical Evaluation of
Generic Convolutional and Recurrent Networks for Sequence Modeling"): residual blocks of two dilated causal
convolutions, dilation doubling per block, enough blocks that the last time step sees the whole lookback.
No batched engine: each network trains with plain autograd (``fitting.train_prepared``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..checks import check_float, check_int
from ..options import ModelConfig
from ._family import Family

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


class _Block(nn.Module):
    """conv -> ReLU -> dropout, twice, each convolution causal (padded on the left only), plus the input
    (through a 1x1 convolution where the channel counts differ), then ReLU."""

    def __init__(self, inputs: int, channels: int, dilation: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.pad = (kernel_size - 1) * dilation
        self.conv1 = nn.Conv1d(inputs, channels, kernel_size, dilation=dilation)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size, dilation=dilation)
        self.dropout = nn.Dropout(dropout)
        self.downsample = nn.Conv1d(inputs, channels, 1) if inputs != channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(F.relu(self.conv1(F.pad(x, (self.pad, 0)))))
        out = self.dropout(F.relu(self.conv2(F.pad(out, (self.pad, 0)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class TCNNet(nn.Module):
    """A TCN regressor with the recurrent nets' interface: ``(batch, seq, features)`` to ``(batch, output_dim)``,
    read from the last time step; ``hidden_dim`` channels per block, ``levels`` blocks (dilations 1, 2, 4, ...).

    >>> TCNNet(input_dim=1, hidden_dim=8, levels=3)(torch.randn(4, 20, 1)).shape
    torch.Size([4, 1])
    """

    def __init__(self, input_dim: int = 1, hidden_dim: int = 64, levels: int = 3, output_dim: int = 1,
                 dropout: float = 0.2, kernel_size: int = KERNEL_SIZE) -> None:
        super().__init__()
        self.input_dim = check_int("input_dim", input_dim)
        self.hidden_dim = check_int("hidden_dim", hidden_dim)
        self.levels = check_int("levels", levels)
        self.kernel_size = check_int("kernel_size", kernel_size, 2)
        dropout = check_float("dropout", dropout, 0.0, 1.0, max_inclusive=False)
        self.blocks = nn.Sequential(*(
            _Block(self.input_dim if i == 0 else self.hidden_dim, self.hidden_dim, 2**i, self.kernel_size, dropout)
            for i in range(self.levels)))
        self.fc = nn.Linear(self.hidden_dim, check_int("output_dim", output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(x.transpose(1, 2))  # convolutions run over (batch, channels, time)
        return self.fc(out[:, :, -1])


def _build(config: ModelConfig) -> TCNNet:
    return TCNNet(config.n_inputs, config.hidden_dim, levels_for(config.lookback, config.num_layers), 1,
                  config.dropout)


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
    engine=None,
)
