"""The TCN family's networks (``tcn.py`` declares the family): residual blocks of two dilated causal convolutions.
A module of its own so that declaring the family imports no torch; it is imported when a network is built."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..checks import check_float, check_int

__all__ = ["TCNNet"]


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
                 dropout: float = 0.2, kernel_size: int = 3) -> None:  # tcn.KERNEL_SIZE (not imported: no circle)
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
