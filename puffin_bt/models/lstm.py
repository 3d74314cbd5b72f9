"""The LSTM family (the chapter's model, the default): ``nets.RecurrentNet`` over ``nn.LSTM``, cold folds on the
batched engine ``batched.BatchedLSTM``; a warm refit of one model on nn.LSTM's fused oneDNN kernel, which beats
the engine per model for the default LSTM even in batches of 8 (bench/README.md, "Design measurements")."""

from __future__ import annotations

from . import _recurrent

__all__ = ["FAMILY"]

FAMILY = _recurrent.family("lstm", "LSTM", gates=4, engine_name="BatchedLSTM", warm_on_engine=False)
