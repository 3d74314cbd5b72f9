"""Train many independent LSTM regressors as one batched computation.

Walk-forward folds that retrain from scratch are independent models with the same
shapes (so would be the folds of different tickers; the walk-forward batches the former). ``BatchedLSTM`` stacks their weights
(``M`` models) and runs forward, backward (hand-written backpropagation through
time) and Adam for all of them at once with batched matrix products, so the
per-operation overhead that dominates small recurrent nets on a CPU is paid once
per step instead of once per model and step.

Each model keeps its own initial weights, sample order, dropout masks, Adam state,
early stopping and best weights, so a model's result does not depend on which
other models it is trained with (tested bit for bit); ``M = 1`` is the ordinary
single-model case. The maths is that of ``nn.LSTM`` + dropout + ``nn.Linear`` with
``MSELoss`` and ``torch.optim.Adam``; results agree with that autograd path to float
rounding (tested), not bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ConfigError
from .memory import ALIGN, bytes_per_model, free_memory, padded_hidden  # re-exported: their home before memory.py
from .nets import RecurrentNet
from .training import Patience, adam_step, qlike_loss

__all__ = ["BatchedGRU", "BatchedLSTM", "BatchedRNN", "bytes_per_model", "engine_for", "free_memory",
           "padded_hidden", "supports"]

VAL_CHUNK = 256  # samples per inference pass (bounds memory for long validation tails)
# 0-dim operands: an in-place op with a Python number first converts it to a tensor (~3 us a call).
TWO, MINUS_ONE = torch.tensor(2.0), torch.tensor(-1.0)


def supports(net: torch.nn.Module) -> bool:
    """Whether ``net`` is a network this engine can train (an LSTM or GRU ``RecurrentNet``)."""
    return isinstance(net, RecurrentNet) and net.cell in ENGINES and type(net).forward is RecurrentNet.forward


def engine_for(nets: list[torch.nn.Module], device: torch.device | str = "cpu") -> BatchedRNN:
    """The batched engine for these networks' cell (``BatchedLSTM`` or ``BatchedGRU``)."""
    if not nets or not isinstance(nets[0], RecurrentNet) or nets[0].cell not in ENGINES:
        raise ConfigError(f"no batched engine for {type(nets[0]).__name__ if nets else 'an empty list'}; "
                          "use LSTMNet/GRUNet (RecurrentNet) or train with training_loop")
    return ENGINES[nets[0].cell](nets, device)


@dataclass
class _Layer:
    w_ih: torch.Tensor  # (M, I, 4H)  views into the flat parameter buffer
    w_hh: torch.Tensor  # (M, H, 4H)
    b_ih: torch.Tensor  # (M, 1, 4H)
    b_hh: torch.Tensor  # (M, 1, 4H)
    g_ih: torch.Tensor  # gradient views, same shapes
    g_hh: torch.Tensor
    g_b_ih: torch.Tensor
    g_b_hh: torch.Tensor


class BatchedRNN:
    """What the LSTM and GRU engines share: the stacked parameter buffer, loading and writing
    back ``nn`` weights, dropout, the linear head, the loss, Adam and the training loop.
    Subclasses give the cell (``CELL``, ``GATES``, ``_layer_forward``, ``_layer_backward``).
    """

    CELL = ""
    GATES = 0

    def __init__(self, nets: list[torch.nn.Module], device: torch.device | str = "cpu") -> None:
        if not nets:
            raise ConfigError(f"{type(self).__name__} needs at least one network")
        first = nets[0]
        for net in nets:
            if not (supports(net) and net.cell == self.CELL):
                raise ConfigError(f"{type(net).__name__} is not a {self.CELL.upper()} RecurrentNet; "
                                  f"train it with training_loop")
            if net.config() != first.config():
                raise ConfigError("all networks trained together must have the same configuration")
        self.M = len(nets)
        self.I, self.L, self.O = first.input_dim, first.num_layers, first.output_dim
        self.hidden = first.hidden_dim
        # Hidden units are padded to a multiple of ALIGN with units whose weights are zero and
        # stay zero (their gradients are exactly 0). Every per-model block of every tensor then
        # starts on a SIMD-vector boundary, so vectorised kernels treat a model's numbers the
        # same way whatever M is: results do not depend on which models train together.
        self.H = padded_hidden(self.hidden)
        self.p = first.dropout_p
        self.device = torch.device(device)
        self._buffers: dict = {}
        self._view_cache: dict = {}
        G = self.GATES * self.H
        sizes = []  # (name, shape) per model, in buffer order
        for layer in range(self.L):
            inp = self.I if layer == 0 else self.H
            sizes += [(f"w_ih{layer}", (inp, G)), (f"w_hh{layer}", (self.H, G)),
                      (f"b_ih{layer}", (1, G)), (f"b_hh{layer}", (1, G))]
        sizes += [("w_fc", (self.H, self.O)), ("b_fc", (1, self.O))]
        total = -(-sum(math.prod(s) for _, s in sizes) // ALIGN) * ALIGN
        self.params = torch.zeros(self.M, total, device=self.device)
        self.grads = torch.zeros_like(self.params)
        self._views, self._gviews = {}, {}
        offset = 0
        for name, shape in sizes:
            n = math.prod(shape)
            self._views[name] = self.params[:, offset:offset + n].view(self.M, *shape)
            self._gviews[name] = self.grads[:, offset:offset + n].view(self.M, *shape)
            offset += n
        self.layers = [
            _Layer(*(self._views[f"{k}{i}"] for k in ("w_ih", "w_hh", "b_ih", "b_hh")),
                   *(self._gviews[f"{k}{i}"] for k in ("w_ih", "w_hh", "b_ih", "b_hh")))
            for i in range(self.L)
        ]
        self.load(nets)

    # ------------------------------------------------------------------ weights
    def _gate_cols(self, view: torch.Tensor) -> torch.Tensor:
        """(..., G*Hpad) -> (..., G, H): the real units of each gate block."""
        return view.unflatten(-1, (self.GATES, self.H))[..., :self.hidden]

    def _pairs(self, m: int, net: torch.nn.Module):
        """(engine view, the same weights of ``net`` as a view in the engine's layout) for model
        ``m``: load copies one way, write_back the other."""
        h = self.hidden
        for i in range(self.L):
            for name, rows in (("ih", self.I if i == 0 else h), ("hh", h)):
                w = getattr(net.rnn, f"weight_{name}_l{i}")  # (G*h, rows)
                yield self._gate_cols(self._views[f"w_{name}{i}"][m, :rows]), w.t().unflatten(-1, (self.GATES, h))
                b = getattr(net.rnn, f"bias_{name}_l{i}")
                yield self._gate_cols(self._views[f"b_{name}{i}"][m, 0]), b.unflatten(-1, (self.GATES, h))
        yield self._views["w_fc"][m, :h], net.fc.weight.t()
        yield self._views["b_fc"][m, 0], net.fc.bias

    def load(self, nets: list[torch.nn.Module]) -> None:
        """Copy the networks' weights in (transposed to ``x @ W`` layout, gates padded)."""
        with torch.no_grad():
            for m, net in enumerate(nets):
                for ours, theirs in self._pairs(m, net):
                    ours.copy_(theirs)

    def write_back(self, nets: list[torch.nn.Module]) -> None:
        """Copy the trained weights into the networks (which stay ordinary modules)."""
        with torch.no_grad():
            for m, net in enumerate(nets):
                for ours, theirs in self._pairs(m, net):
                    theirs.copy_(ours)
                net.eval()

    def _input_product(self, x: torch.Tensor, w_ih: torch.Tensor, bias: torch.Tensor, out: torch.Tensor, key) -> None:
        """out (T, M, B, 4H) = x (T, M, B, I) @ w_ih (M, I, 4H) + bias, one product per model."""
        T, M, B, inp = x.shape
        if inp == 1:
            torch.addcmul(bias, x, w_ih, out=out)
            return
        x_mm = self._work(key, "x_mm", (M, T, B, inp), x)  # a broadcast matmul would fold dims differently for M = 1
        x_mm.copy_(x.transpose(0, 1))
        product = torch.bmm(x_mm.view(M, T * B, inp), w_ih).view(M, T, B, -1)
        torch.add(product.transpose(0, 1), bias, out=out)

    def _work(self, key, name: str, shape: tuple, like: torch.Tensor) -> torch.Tensor:
        """A reusable scratch buffer: fresh multi-MB tensors every step cost more in page
        faults (the CPU allocator returns them to the OS) than the arithmetic on them.
        Kept per shape: an epoch's last, shorter batch and the validation passes get their
        own buffers instead of replacing the full batch's ones every epoch (the per-step view
        caches hold on to the buffers they were built on: replacing them grew memory over a
        fit, bench/README.md)."""
        index = (key, name, tuple(shape), like.dtype)
        buf = self._buffers.get(index)
        if buf is None:
            buf = self._buffers[index] = like.new_empty(shape)
        return buf

    def _weight_grads(self, layer: _Layer, key, x: torch.Tensor, hs: torch.Tensor, dgi_mm: torch.Tensor,
                      dgh_mm: torch.Tensor, need_dx: bool) -> torch.Tensor | None:
        """Weight and bias gradients of one layer from its gate gradients (model-major, (M, T, B, G)):
        ``dgi`` w.r.t. the input product, ``dgh`` w.r.t. the hidden product (the same tensor for
        an LSTM). Sums over time and batch are one product per model with K = T*B. Returns
        dLoss/dx (T, M, B, I) for the layer below when ``need_dx``."""
        T, M, B, inp = x.shape
        H, ws = self.H, self._work
        flat_gi = dgi_mm.view(M, T * B, -1)
        flat_gh = dgh_mm.view(M, T * B, -1)
        flat_h = ws(key, "flat_h", (M, T, B, H), x)
        flat_h.copy_(hs[:-1].transpose(0, 1))
        g_hh = ws(key, "g_hh", layer.g_hh.shape, x)
        torch.bmm(flat_h.view(M, T * B, H).transpose(1, 2), flat_gh, out=g_hh)
        layer.g_hh.copy_(g_hh)
        flat_x = ws(key, "flat_x", (M, T, B, inp), x)
        flat_x.copy_(x.transpose(0, 1))
        if inp == 1:
            # A vector product per model. One mm per model keeps each result independent of M
            # (a batched matrix-vector product rounds differently for M = 1), and is ~8x faster
            # than the broadcast multiply + sum it replaced.
            g_ih = ws(key, "g_ih", layer.g_ih.shape, x)
            for m in range(M):
                torch.mm(flat_x[m].view(1, T * B), flat_gi[m], out=g_ih[m])
            layer.g_ih.copy_(g_ih)
        else:
            torch.bmm(flat_x.view(M, T * B, inp).transpose(1, 2), flat_gi, out=layer.g_ih)
        torch.sum(flat_gi, dim=1, keepdim=True, out=layer.g_b_ih)
        if dgh_mm is dgi_mm:
            layer.g_b_hh.copy_(layer.g_b_ih)
        else:
            torch.sum(flat_gh, dim=1, keepdim=True, out=layer.g_b_hh)
        if not need_dx:
            return None
        dx = ws(key, "dx", (T, M, B, inp), x)
        dx.copy_(torch.bmm(flat_gi, layer.w_ih.transpose(1, 2)).view(M, T, B, -1).transpose(0, 1))
        return dx

    def _masks(self, gens: list[torch.Generator], shape: tuple, model_dim: int = 0) -> torch.Tensor:
        """Inverted-dropout masks of ``shape`` per model, each drawn from that model's own generator,
        stacked along ``model_dim``."""
        keep = 1.0 - self.p
        masks = torch.stack([torch.empty(shape, device="cpu").bernoulli_(keep, generator=g) for g in gens], dim=model_dim)
        return masks.div_(keep).to(self.device)

    def forward(self, x: torch.Tensor, train: bool = False, gens=None) -> tuple[torch.Tensor, list]:
        """x: (M, N, T, I) -> predictions (M, N, O). With ``train`` returns what backward needs."""
        h = x.transpose(1, 2).transpose(0, 1)  # (T, M, N, I)
        saved = []
        dropping = train and self.p > 0
        for i, layer in enumerate(self.layers):
            hs, s = self._layer_forward(layer, h.contiguous() if i == 0 else h, keep=train)
            h = hs[1:]
            mask = None
            if dropping and i < self.L - 1:
                mask = self._masks(gens, (h.shape[0], h.shape[2], h.shape[3]), model_dim=1)  # (T, M, N, H)
                h = h * mask
            saved.append((s, mask))
        last = h[-1]  # (M, N, H)
        head_mask = None
        if dropping:
            head_mask = self._masks(gens, (last.shape[1], self.H))
            last = last * head_mask
        out = self._head(last)
        return out, [saved, last, head_mask]

    def _head(self, last: torch.Tensor) -> torch.Tensor:
        w, b = self._views["w_fc"], self._views["b_fc"]
        if self.O == 1:  # element-wise + sum: MKL's batched matrix-vector path rounds differently for M = 1
            return torch.sum(last * w.transpose(1, 2), dim=-1, keepdim=True).add_(b)
        return torch.baddbmm(b, last, w)

    def backward(self, d_out: torch.Tensor, cache: list) -> None:
        saved, last, head_mask = cache
        w_fc = self._views["w_fc"]
        if self.O == 1:
            torch.sum(last * d_out, dim=1, keepdim=True, out=self._gviews["w_fc"].transpose(1, 2))
            d_last = d_out * w_fc.transpose(1, 2)
        else:
            torch.bmm(last.transpose(1, 2), d_out, out=self._gviews["w_fc"])
            d_last = torch.bmm(d_out, w_fc.transpose(1, 2))
        torch.sum(d_out, dim=1, keepdim=True, out=self._gviews["b_fc"])
        if head_mask is not None:
            d_last = d_last * head_mask
        d_seq = None
        for i in range(self.L - 1, -1, -1):
            s, mask = saved[i]
            if mask is not None:
                d_seq.mul_(mask)  # in place: d_seq is the layer above's dx buffer (a fresh tensor here would
                # key a new per-step view cache in _layer_backward every step)
            d_seq = self._layer_backward(self.layers[i], s, d_seq if i < self.L - 1 else None,
                                         d_last if i == self.L - 1 else None, need_dx=i > 0)

    # ------------------------------------------------------------------ training
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Eval-mode predictions (M, N, O) for x (M, N, T, I), in chunks of VAL_CHUNK samples."""
        with torch.no_grad():
            return torch.cat([self.forward(x[:, i:i + VAL_CHUNK])[0] for i in range(0, x.shape[1], VAL_CHUNK)], dim=1)

    def loss(self, x: torch.Tensor, y: torch.Tensor, qlike: bool = False) -> torch.Tensor:
        """Per-model mean squared error (``qlike``: mean ``training.qlike_loss``) on (M, N, T, I) / (M, N, O),
        eval mode."""
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        with torch.no_grad():
            for i in range(0, x.shape[1], VAL_CHUNK):  # chunks fixed by N alone: results do not depend on M
                out, _ = self.forward(x[:, i:i + VAL_CHUNK])
                part = y[:, i:i + VAL_CHUNK]
                losses = qlike_loss(out, part) if qlike else (out - part).pow(2)
                total += losses.flatten(1).sum(dim=1)
        return total / (y.shape[1] * y.shape[2])

    def fit(self, x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor | None, y_val: torch.Tensor | None,
            epochs: int, lr: float, batch_size: int, seeds: list[int], weight_decay: float = 0.0,
            patience: int | None = None, noise_std: float = 0.0, validate_every_epoch: bool = True,
            qlike: bool = False) -> list[dict]:
        """Train all models; returns one ``training_loop``-style history per model.

        ``x`` (M, N, T, I), ``y`` (M, N, O) on this engine's device. Each model draws
        its sample order from ``torch.Generator().manual_seed(seeds[m])`` (as
        ``TensorBatches`` does) and its dropout/noise from a second generator with the
        same seed. With ``patience`` and validation data, a model stops after
        ``patience`` epochs without improvement and keeps its best weights. Without
        ``validate_every_epoch`` (and no early stopping) the validation loss is only
        computed after the last epoch (NaN before). ``qlike``: train on ``training.qlike_loss`` (outputs are log
        variances, targets scaled variances) instead of the squared error.
        """
        M, N = x.shape[0], x.shape[1]
        if len(seeds) != M:
            raise ConfigError(f"{len(seeds)} seeds for {M} models")
        order_gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        noise_gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        rows = torch.arange(M, device=self.device)[:, None]
        exp_avg = torch.zeros_like(self.params)
        exp_sq = torch.zeros_like(self.params)
        step = 0
        has_val = x_val is not None and x_val.shape[1] > 0
        rule = Patience(M, patience) if patience is not None and has_val else None
        best_params = self.params.clone() if rule is not None else None
        history = [{"train_loss": [], "val_loss": [], "best_epoch": None, "stopped_epoch": None} for _ in range(M)]
        for epoch in range(epochs):
            perms = torch.stack([torch.randperm(N, generator=g, device="cpu") for g in order_gens]).to(self.device)
            total = torch.zeros(M, device=self.device)
            for start in range(0, N, batch_size):
                idx = perms[:, start:start + batch_size]
                xb, yb = x[rows, idx], y[rows, idx]
                if noise_std > 0:
                    noise = torch.stack([torch.randn(xb.shape[1:], generator=g, device="cpu") for g in noise_gens]).to(self.device)
                    xb = xb + noise_std * noise
                out, cache = self.forward(xb, train=True, gens=noise_gens)
                if qlike:  # d/do (y exp(-o) + o) = 1 - y exp(-o)
                    scaled = torch.exp(-out).mul_(yb)
                    total += (scaled + out).mean(dim=(1, 2)).detach() * idx.shape[1]
                    self.backward(scaled.neg_().add_(1.0).mul_(1.0 / out[0].numel()), cache)
                else:
                    diff = out - yb
                    total += diff.pow(2).mean(dim=(1, 2)).detach() * idx.shape[1]
                    self.backward(diff.mul_(2.0 / diff[0].numel()), cache)
                step += 1
                adam_step(self.params, self.grads, exp_avg, exp_sq, step, lr, weight_decay)
                if rule is not None and not rule.active.all():  # stopped models keep their best weights
                    frozen = torch.from_numpy(~rule.active).to(self.device)[:, None]
                    torch.where(frozen, best_params, self.params, out=self.params)
            train_loss = (total / N).tolist()
            validate = has_val and (rule is not None or validate_every_epoch or epoch == epochs - 1)
            val_loss = self.loss(x_val, y_val, qlike).tolist() if validate else [math.nan] * M
            active = rule.active.copy() if rule is not None else np.ones(M, dtype=bool)
            for m in np.flatnonzero(active):
                history[m]["train_loss"].append(train_loss[m])
                history[m]["val_loss"].append(val_loss[m])
            if rule is not None:
                for m in np.flatnonzero(rule.update(val_loss)):
                    best_params[m].copy_(self.params[m])
                for m in np.flatnonzero(active & ~rule.active):
                    history[m]["stopped_epoch"] = rule.stopped_epoch[m]
                if not rule.active.any():
                    break
        if rule is not None:
            for m in range(M):
                if rule.best_epoch[m] >= 0:
                    self.params[m].copy_(best_params[m])
                    history[m]["best_epoch"] = int(rule.best_epoch[m])
        return history


class BatchedLSTM(BatchedRNN):
    """``M`` LSTM regressors (``RecurrentNet`` with ``cell='lstm'``) trained together.

    >>> import torch
    >>> from puffin_bt.nets import LSTMNet
    >>> nets = [LSTMNet(hidden_dim=4, num_layers=1, dropout=0.0) for _ in range(3)]
    >>> engine = BatchedLSTM(nets)
    >>> x, y = torch.randn(3, 40, 5, 1), torch.randn(3, 40, 1)
    >>> hist = engine.fit(x, y, None, None, epochs=2, lr=1e-3, batch_size=8, seeds=[0, 1, 2])
    >>> engine.write_back(nets); len(hist), len(hist[0]["train_loss"])
    (3, 2)
    """

    CELL = "lstm"
    GATES = 4  # i, f, g, o (nn.LSTM's order)

    def _layer_forward(self, layer: _Layer, x: torch.Tensor, keep: bool) -> tuple[torch.Tensor, dict | None]:
        """x: (T, M, B, I) -> hidden states (T+1, M, B, H) with h_0 = 0 at index 0.

        tanh is computed as 2*sigmoid(2z) - 1: torch's CPU sigmoid is faster than its
        tanh at these sizes. The g-gate columns of the weights are doubled for the forward
        products only (``_gate_scale``); gradients stay those of the unscaled parameters.
        """
        T, M, B, _ = x.shape
        H = self.H
        scale = self._gate_scale(x)
        bias = (layer.b_ih + layer.b_hh) * scale  # (M, 1, 4H)
        w_ih = layer.w_ih * scale
        w_hh = layer.w_hh * scale
        ws = self._work
        key = (id(layer), keep)
        # Inference (keep=False) only needs the current step's input product, gates and cell state.
        steps = T if keep else 1
        xp = ws(key, "xp", (steps, M, B, 4 * H), x)
        if keep:
            self._input_product(x, w_ih, bias, xp, key)
        hs = ws(key, "hs", (T + 1, M, B, H), x)
        cs = ws(key, "cs", (T + 1 if keep else 2, M, B, H), x)
        hs[0].zero_()
        cs[0].zero_()
        acts, tcs = ws(key, "acts", (steps, M, B, 4 * H), x), ws(key, "tcs", (steps, M, B, H), x)
        for t, (x_t, h_prev, a, i_, f_, g_, o_, c_prev, c, tc, h) in enumerate(
                self._step_views(key, keep, T, xp, hs, cs, acts, tcs)):
            if not keep:
                self._input_product(x[t:t + 1], w_ih, bias, xp, key)
            torch.baddbmm(x_t, h_prev, w_hh, out=a)
            a.sigmoid_()  # i, f, o; the g slot holds s = sigmoid(2 z_g), tanh(z_g) = 2s - 1
            torch.mul(f_, c_prev, out=c)
            c.addcmul_(i_, g_, value=2.0).sub_(i_)  # f c + i (2s - 1)
            torch.add(c, c, out=tc)
            tc.sigmoid_().mul_(TWO).add_(MINUS_ONE)  # tanh(c)
            torch.mul(o_, tc, out=h)
        if not keep:
            return hs, None
        acts[..., 2 * H:3 * H].mul_(2.0).sub_(1.0)  # g = tanh(z_g), in bulk
        return hs, {"x": x, "hs": hs, "cs": cs, "acts": acts, "tcs": tcs}

    def _step_views(self, key, keep: bool, T: int, xp, hs, cs, acts, tcs) -> list[tuple]:
        """Per time step views into the forward buffers, built once per buffer set: slicing
        a dozen views per step costs a noticeable share of a small model's forward."""
        cache_key = (key, "fwd", T, acts.data_ptr(), hs.data_ptr())
        views = self._view_cache.get(cache_key)
        if views is None:
            H, views = self.H, []
            for t in range(T):
                slot = t if keep else 0
                prev, cur = (t, t + 1) if keep else (t % 2, 1 - t % 2)
                a = acts[slot]
                views.append((xp[slot], hs[t], a, a[..., :H], a[..., H:2 * H], a[..., 2 * H:3 * H], a[..., 3 * H:],
                              cs[prev], cs[cur], tcs[slot], hs[t + 1]))
            self._view_cache[cache_key] = views
        return views

    def _gate_scale(self, like: torch.Tensor) -> torch.Tensor:
        scale = getattr(self, "_scale", None)
        if scale is None or scale.dtype != like.dtype:
            scale = torch.ones(4 * self.H, dtype=like.dtype, device=like.device)
            scale[2 * self.H:3 * self.H] = 2.0
            self._scale = scale
        return scale

    def _layer_backward(self, layer: _Layer, saved: dict, d_out: torch.Tensor | None, d_last: torch.Tensor | None,
                        need_dx: bool) -> torch.Tensor | None:
        """Gradients of one layer. ``d_out`` (T, M, B, H) is dLoss/dh_t for every t (lower layers);
        ``d_last`` (M, B, H) is dLoss/dh_T only (the top layer). Writes the gradient views."""
        x, hs, cs, acts, tcs = saved["x"], saved["hs"], saved["cs"], saved["acts"], saved["tcs"]
        T, M, B, _ = x.shape
        H = self.H
        f_, o_ = acts[..., H:2 * H], acts[..., 3 * H:]
        # Everything that does not depend on the recurrence, in bulk over all time steps:
        # coef[..., gate] = d pre_gate / d c (gates i, f, g) or d pre_o / d h (gate o).
        ws, key = self._work, (id(layer), "bwd")
        coef = ws(key, "coef", acts.shape, acts)
        torch.mul(acts, acts, out=coef)
        torch.sub(acts, coef, out=coef)  # sigmoid' = a - a^2 for i, f, o
        g = acts[..., 2 * H:3 * H]
        coef[..., :H].mul_(g)
        coef[..., H:2 * H].mul_(cs[:-1])
        cg = coef[..., 2 * H:3 * H]
        torch.mul(g, g, out=cg)
        cg.neg_().add_(1).mul_(acts[..., :H])  # i * tanh'(z_g)
        coef[..., 3 * H:].mul_(tcs)
        k = ws(key, "k", tcs.shape, tcs)
        torch.mul(tcs, tcs, out=k)
        k.neg_().add_(1).mul_(o_)  # d c / d h = o * (1 - tanh(c)^2)
        dg_mm = ws(key, "dg", (M, T, B, 4 * H), acts)  # model-major: the weight products need no copy
        dg = dg_mm.transpose(0, 1)
        w_hh_t = layer.w_hh.transpose(1, 2)
        dh = d_last if d_last is not None else d_out[T - 1]
        dc = torch.mul(dh, k[T - 1])
        cache_key = (key, "bwd", T, dg_mm.data_ptr(), coef.data_ptr(), None if d_out is None else d_out.data_ptr())
        views = self._view_cache.get(cache_key)
        if views is None:
            views = []
            for t in range(T):
                d, cf = dg[t], coef[t]
                views.append((dg[t + 1] if t < T - 1 else None, f_[t + 1] if t < T - 1 else None, k[t],
                              None if d_out is None else d_out[t], cf[..., :3 * H].unflatten(-1, (3, H)),
                              d[..., :3 * H].unflatten(-1, (3, H)), cf[..., 3 * H:], d[..., 3 * H:]))
            self._view_cache[cache_key] = views
        for t in range(T - 1, -1, -1):
            dg_next, f_next, k_t, d_out_t, cf3, d3, cf_o, d_o = views[t]
            if t < T - 1:
                dh = torch.bmm(dg_next, w_hh_t) if d_out_t is None else torch.baddbmm(d_out_t, dg_next, w_hh_t)
                dc.mul_(f_next).addcmul_(dh, k_t)
            torch.mul(cf3, dc.unsqueeze(-2), out=d3)
            torch.mul(cf_o, dh, out=d_o)
        return self._weight_grads(layer, key, x, hs, dg_mm, dg_mm, need_dx)


class BatchedGRU(BatchedRNN):
    """``M`` GRU regressors (``RecurrentNet`` with ``cell='gru'``) trained together.

    nn.GRU's cell, gates r, z, n in its order: ``r = s(Wir x + bir + Whr h + bhr)``,
    ``z = s(Wiz x + biz + Whz h + bhz)``, ``n = tanh(Win x + bin + r * (Whn h + bhn))``,
    ``h' = (1 - z) * n + z * h``.

    >>> import torch
    >>> from puffin_bt.nets import GRUNet
    >>> nets = [GRUNet(hidden_dim=4, num_layers=2, dropout=0.1) for _ in range(2)]
    >>> engine = BatchedGRU(nets)
    >>> hist = engine.fit(torch.randn(2, 30, 5, 1), torch.randn(2, 30, 1), None, None, epochs=1, lr=1e-3,
    ...                   batch_size=8, seeds=[0, 1])
    >>> engine.write_back(nets); len(hist)
    2
    """

    CELL = "gru"
    GATES = 3

    def _layer_forward(self, layer: _Layer, x: torch.Tensor, keep: bool) -> tuple[torch.Tensor, dict | None]:
        """x: (T, M, B, I) -> hidden states (T+1, M, B, H) with h_0 = 0 at index 0."""
        T, M, B, _ = x.shape
        H, ws = self.H, self._work
        key = (id(layer), keep)
        steps = T if keep else 1
        gi = ws(key, "gi", (steps, M, B, 3 * H), x)
        if keep:
            self._input_product(x, layer.w_ih, layer.b_ih, gi, key)
        hs = ws(key, "hs", (T + 1, M, B, H), x)
        hs[0].zero_()
        rz = ws(key, "rz", (steps, M, B, 2 * H), x)
        ns = ws(key, "ns", (steps, M, B, H), x)
        ghn = ws(key, "ghn", (T, M, B, H), x) if keep else None  # Whn h + bhn, for the backward pass
        gh = ws(key, "gh", (M, B, 3 * H), x)
        for t in range(T):
            slot = t if keep else 0
            if not keep:
                self._input_product(x[t:t + 1], layer.w_ih, layer.b_ih, gi, key)
            g_i, h_prev, h = gi[slot], hs[t], hs[t + 1]
            torch.baddbmm(layer.b_hh, h_prev, layer.w_hh, out=gh)
            a = rz[slot]
            torch.add(g_i[..., :2 * H], gh[..., :2 * H], out=a)
            a.sigmoid_()
            r, z, n, g_n = a[..., :H], a[..., H:], ns[slot], gh[..., 2 * H:]
            if keep:
                ghn[slot].copy_(g_n)
            torch.mul(r, g_n, out=n)
            n.add_(g_i[..., 2 * H:])
            n.mul_(TWO).sigmoid_().mul_(TWO).add_(MINUS_ONE)  # tanh, as 2 sigmoid(2x) - 1
            torch.sub(h_prev, n, out=h)
            h.mul_(z).add_(n)  # n + z (h - n)
        if not keep:
            return hs, None
        return hs, {"x": x, "hs": hs, "rz": rz, "ns": ns, "ghn": ghn}

    def _layer_backward(self, layer: _Layer, saved: dict, d_out: torch.Tensor | None, d_last: torch.Tensor | None,
                        need_dx: bool) -> torch.Tensor | None:
        """Gradients of one layer; ``d_out`` / ``d_last`` as for the LSTM."""
        x, hs, rz, ns, ghn = saved["x"], saved["hs"], saved["rz"], saved["ns"], saved["ghn"]
        T, M, B, _ = x.shape
        H, ws = self.H, self._work
        key = (id(layer), "bwd")
        r, z = rz[..., :H], rz[..., H:]
        # Bulk coefficients (everything but the recurrence): per unit of dLoss/dh_t,
        # d pre_n = (1 - z)(1 - n^2), d pre_z = (h_prev - n) z (1 - z), d pre_r = d pre_n * ghn * r (1 - r);
        # the hidden product's n slot gets d pre_n * r.
        coef = ws(key, "coef", (T, M, B, 3 * H), x)
        c_r, c_z, c_n = coef[..., :H], coef[..., H:2 * H], coef[..., 2 * H:]
        torch.mul(ns, ns, out=c_n)
        c_n.neg_().add_(1)
        c_n.mul_(1 - z)
        torch.sub(hs[:-1], ns, out=c_z)
        c_z.mul_(z).mul_(1 - z)
        torch.mul(r, 1 - r, out=c_r)
        c_r.mul_(ghn).mul_(c_n)
        n_h = ws(key, "n_h", (T, M, B, H), x)
        torch.mul(c_n, r, out=n_h)
        dgi_mm = ws(key, "dgi", (M, T, B, 3 * H), x)
        dgh_mm = ws(key, "dgh", (M, T, B, 3 * H), x)
        dgi, dgh = dgi_mm.transpose(0, 1), dgh_mm.transpose(0, 1)
        w_hh_t = layer.w_hh.transpose(1, 2)
        dh = d_last if d_last is not None else d_out[T - 1]
        for t in range(T - 1, -1, -1):
            if t < T - 1:
                carry = dh * z[t + 1]
                if d_out is not None:
                    carry += d_out[t]
                dh = torch.baddbmm(carry, dgh[t + 1], w_hh_t)
            torch.mul(coef[t].unflatten(-1, (3, H)), dh.unsqueeze(-2), out=dgi[t].unflatten(-1, (3, H)))
            dgh[t][..., :2 * H].copy_(dgi[t][..., :2 * H])
            torch.mul(n_h[t], dh, out=dgh[t][..., 2 * H:])
        return self._weight_grads(layer, key, x, hs, dgi_mm, dgh_mm, need_dx)


ENGINES = {engine.CELL: engine for engine in (BatchedLSTM, BatchedGRU)}
