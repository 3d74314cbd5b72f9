"""The GRU family: ``nets.RecurrentNet`` over ``nn.GRU``, trained on the batched engine ``batched.BatchedGRU``,
warm refits of one model too (it beats nn.GRU at M = 1, and many tickers' refits then batch together,
``universe``)."""

from __future__ import annotations

from . import _recurrent

__all__ = ["FAMILY"]

FAMILY = _recurrent.family("gru", "GRU", gates=3, engine_name="BatchedGRU", warm_on_engine=True)
