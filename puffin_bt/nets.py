"""Plain PyTorch recurrent regressors: LSTMNet, GRUNet and the funnel-shaped StackedLSTM.

Every network maps ``(batch, seq, features)`` to ``(batch, output_dim)`` read from
the last time step. LSTM and GRU share one implementation (``RecurrentNet``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .checks import check_float, check_int
from .errors import ConfigError

__all__ = ["GRUNet", "LSTMNet", "RecurrentNet", "StackedLSTM"]

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


def _check_cell(cell: str) -> str:
    if not isinstance(cell, str) or cell.lower() not in CELLS:
        raise ConfigError(f"cell={cell!r} is not a known recurrent cell; use one of {sorted(CELLS)}")
    return cell.lower()


class RecurrentNet(nn.Module):
    """A stack of ``num_layers`` LSTM or GRU layers followed by a linear head.

    ``dropout`` applies between recurrent layers *and* to the last hidden state
    before the head, so it regularises a single-layer network too.

    >>> net = RecurrentNet("gru", input_dim=1, hidden_dim=8, num_layers=2)
    >>> net(torch.randn(4, 20, 1)).shape
    torch.Size([4, 1])
    """

    def __init__(
        self,
        cell: str = "lstm",
        input_dim: int = 1,
        hidden_dim: int = 64,
        num_layers: int = 2,
        output_dim: int = 1,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.cell = _check_cell(cell)
        self.input_dim = check_int("input_dim", input_dim)
        self.hidden_dim = check_int("hidden_dim", hidden_dim)
        self.num_layers = check_int("num_layers", num_layers)
        self.output_dim = check_int("output_dim", output_dim)
        self.dropout_p = check_float("dropout", dropout, 0.0, 1.0, max_inclusive=False)
        self.rnn = CELLS[self.cell](
            self.input_dim,
            self.hidden_dim,
            self.num_layers,
            batch_first=True,
            dropout=self.dropout_p if self.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(self.dropout_p)
        self.fc = nn.Linear(self.hidden_dim, self.output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.fc(self.dropout(out[:, -1, :]))

    def config(self) -> dict:
        """The constructor arguments, JSON-serialisable (used by checkpoints)."""
        return {
            "cell": self.cell,
            "input_dim": self.input_dim,
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
            "output_dim": self.output_dim,
            "dropout": self.dropout_p,
        }


class LSTMNet(RecurrentNet):
    """Multi-layer LSTM regressor (the chapter's ``LSTMNet``).

    >>> LSTMNet(hidden_dim=64, dropout=0.3)(torch.randn(16, 20, 1)).shape
    torch.Size([16, 1])
    """

    def __init__(self, input_dim: int = 1, hidden_dim: int = 64, num_layers: int = 2,
                 output_dim: int = 1, dropout: float = 0.2) -> None:
        super().__init__("lstm", input_dim, hidden_dim, num_layers, output_dim, dropout)


class GRUNet(RecurrentNet):
    """Multi-layer GRU regressor with the same signature as ``LSTMNet``.

    >>> GRUNet(input_dim=1, hidden_dim=64, num_layers=2, dropout=0.2)(torch.randn(16, 20, 1)).shape
    torch.Size([16, 1])
    """

    def __init__(self, input_dim: int = 1, hidden_dim: int = 64, num_layers: int = 2,
                 output_dim: int = 1, dropout: float = 0.2) -> None:
        super().__init__("gru", input_dim, hidden_dim, num_layers, output_dim, dropout)


class StackedLSTM(nn.Module):
    """One single-layer LSTM per entry of ``hidden_dims`` (e.g. a 128 -> 64 -> 32 funnel),
    dropout between layers and before the linear head.

    >>> StackedLSTM(1, hidden_dims=[128, 64, 32])(torch.randn(16, 20, 1)).shape
    torch.Size([16, 1])
    """

    def __init__(self, input_dim: int = 1, hidden_dims: Sequence[int] = (64, 32),
                 output_dim: int = 1, dropout: float = 0.2) -> None:
        super().__init__()
        if isinstance(hidden_dims, (str, bytes)) or not isinstance(hidden_dims, Sequence) or not hidden_dims:
            raise ConfigError(
                f"hidden_dims={hidden_dims!r} must be a non-empty list of layer sizes, e.g. [64, 32]"
            )
        self.input_dim = check_int("input_dim", input_dim)
        self.hidden_dims = [check_int(f"hidden_dims[{i}]", h) for i, h in enumerate(hidden_dims)]
        self.output_dim = check_int("output_dim", output_dim)
        self.dropout_p = check_float("dropout", dropout, 0.0, 1.0, max_inclusive=False)
        sizes = [self.input_dim, *self.hidden_dims]
        self.lstm_layers = nn.ModuleList(
            nn.LSTM(sizes[i], sizes[i + 1], 1, batch_first=True) for i in range(len(self.hidden_dims))
        )
        self.dropout = nn.Dropout(self.dropout_p)
        self.fc = nn.Linear(self.hidden_dims[-1], self.output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for lstm in self.lstm_layers:
            out, _ = lstm(out)
            out = self.dropout(out)
        return self.fc(out[:, -1, :])
