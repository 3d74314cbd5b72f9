"""Training: seeding, device resolution, torch threads, the one Adam step, the one early-stopping
rule (``Patience``, vectorised over models) and a plain training loop.

``training_loop`` accepts anything that iterates ``(x, y)`` batches (a torch DataLoader or the
lighter ``TensorBatches`` used by the forecasters). The batched engine (``batched.py``) uses the
same Adam step and patience rule, so both paths train by the same arithmetic.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from .checks import check_float, check_int
from .errors import ConfigError, DeviceError
from .options import OPTIONS

__all__ = [
    "EarlyStopping", "Patience", "TensorBatches", "adam_step", "criterion_for", "make_adam", "qlike_loss",
    "resolve_device", "seed_torch", "torch_threads", "training_loop"
]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so training is repeatable on CPU.

    >>> set_seed(42)
    """
    seed = check_int("seed", seed, minimum=0)
    if seed > 2**32 - 1:
        raise ConfigError(f"seed={seed} is too large; use a seed between 0 and {2**32 - 1}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"`` / ``"cpu"`` / ``"cuda[:n]"`` / ``"mps"`` into a torch.device.

    ``"auto"`` (or None) picks CUDA, then Apple MPS, then CPU. An explicit device
    that is not available raises DeviceError instead of failing later inside torch.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"device={device!r} is not a device name; use 'auto', 'cpu', 'cuda' or 'mps'") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device={device!r} was requested but no CUDA GPU is available; use device='auto' or 'cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) present; "
                f"use an index below {torch.cuda.device_count()}"
            )
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(f"device={device!r} was requested but Apple MPS is not available; use 'auto' or 'cpu'")
    elif dev.type != "cpu":
        raise DeviceError(f"device={device!r} is not supported; use 'auto', 'cpu', 'cuda' or 'mps'")
    return dev


@contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch intra-op threads, then restore the previous setting.

    Small recurrent nets train faster on one thread than on two on a 2-core machine, and
    multi-threaded torch collapses when another process competes for the cores (bench/README.md,
    "Design measurements"); ``None`` leaves torch's setting alone.
    """
    previous = torch.get_num_threads()
    if n is None or n == previous:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Patience:
    """The early-stopping rule for ``n_models`` models at once.

    Each epoch, ``update(losses)`` marks a model improved when its loss is finite and below its
    best so far minus ``min_delta``; otherwise its counter grows, and after ``patience`` epochs
    without improvement the model stops (``active`` False, ``stopped_epoch`` set). Stopped
    models are left alone. ``EarlyStopping`` (one model) and the batched engine (many) both use it.

    >>> rule = Patience(2, patience=2)
    >>> [rule.update(v).tolist() for v in ([1.0, 1.0], [0.9, 1.1], [0.95, 1.2])], rule.active.tolist()
    ([[True, True], [True, False], [False, False]], [True, False])
    """

    def __init__(self, n_models: int, patience: int, min_delta: float = 0.0) -> None:
        self.patience = check_int("patience", patience)
        self.min_delta = check_float("min_delta", min_delta, 0.0)
        self.epoch = -1
        self.best_loss = np.full(n_models, math.inf)
        self.best_epoch = np.full(n_models, -1)
        self.counter = np.zeros(n_models, dtype=np.int64)
        self.active = np.ones(n_models, dtype=bool)
        self.stopped_epoch: list[int | None] = [None] * n_models

    def update(self, losses) -> np.ndarray:
        """Record one epoch's losses; returns which models improved (their best weights should be kept)."""
        self.epoch += 1
        losses = np.asarray(losses, dtype=np.float64)
        improved = self.active & np.isfinite(losses) & (losses < self.best_loss - self.min_delta)
        self.best_loss[improved] = losses[improved]
        self.best_epoch[improved] = self.epoch
        self.counter[improved] = 0
        worse = self.active & ~improved
        self.counter[worse] += 1
        for m in np.flatnonzero(worse & (self.counter >= self.patience)):
            self.active[m] = False
            self.stopped_epoch[m] = self.epoch
        return improved


class EarlyStopping:
    """Stop training when the validation loss has not improved for ``patience`` epochs.

    Call it once per epoch as ``early_stop(val_loss, model)``; it returns True when
    training should stop. With ``restore_best_weights`` the best weights are loaded
    back into the model when it triggers, and ``restore(model)`` does the same when
    the epochs run out first (``training_loop`` calls it for you).

    Examples:
        >>> model = nn.Linear(1, 1)
        >>> early_stop = EarlyStopping(patience=2)
        >>> [early_stop(v, model) for v in (1.0, 0.9, 0.95, 0.97)]
        [False, False, False, True]
    """

    def __init__(self, patience: int = OPTIONS["patience"].default, min_delta: float = 0.0, restore_best_weights: bool = True) -> None:
        self.patience = check_int("patience", patience)
        self.min_delta = check_float("min_delta", min_delta, 0.0)
        self.restore_best_weights = bool(restore_best_weights)
        self.reset()

    def reset(self) -> None:
        self._rule = Patience(1, self.patience, self.min_delta)
        self.best_state: dict | None = None

    @property
    def best_loss(self) -> float:
        return float(self._rule.best_loss[0])

    @property
    def best_epoch(self) -> int:
        return int(self._rule.best_epoch[0])

    @property
    def epoch(self) -> int:
        return self._rule.epoch

    @property
    def counter(self) -> int:
        return int(self._rule.counter[0])

    @property
    def stopped_epoch(self) -> int | None:
        return self._rule.stopped_epoch[0]

    def __call__(self, val_loss: float, model: nn.Module) -> bool:
        if self._rule.update([float(val_loss)])[0]:
            if self.restore_best_weights:
                self.best_state = copy.deepcopy(model.state_dict())
            return False
        if not self._rule.active[0]:
            self.restore(model)
            return True
        return False

    def restore(self, model: nn.Module) -> bool:
        """Load the best weights seen so far into ``model``; returns whether it did."""
        if self.restore_best_weights and self.best_state is not None:
            model.load_state_dict(self.best_state)
            return True
        return False

    def on_train_end(self, model: nn.Module) -> None:
        self.restore(model)


class TensorBatches:
    """Mini-batches over in-memory tensors without DataLoader overhead.

    ``shuffle`` draws a new permutation per epoch from ``generator`` so runs are
    repeatable; the data itself is never reordered in time for validation sets.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 32,
                 shuffle: bool = False, generator: torch.Generator | None = None) -> None:
        if len(x) != len(y):
            raise ConfigError(f"x has {len(x)} rows but y has {len(y)}; they must match")
        self.x, self.y = x, y
        self.batch_size = check_int("batch_size", batch_size)
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self):
        n = len(self.x)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device="cpu").to(self.x.device)
            for start in range(0, n, self.batch_size):
                idx = order[start:start + self.batch_size]
                yield self.x[idx], self.y[idx]
        else:
            for start in range(0, n, self.batch_size):
                yield self.x[start:start + self.batch_size], self.y[start:start + self.batch_size]


Callback = Callable[[float, nn.Module], bool]


def qlike_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Element-wise Gaussian negative log-likelihood of a variance, up to constants: ``y / exp(o) + o`` for a net
    output ``o`` (a log variance) and a target ``y`` (a realised variance, scaled). Minimised at ``exp(o) = E[y]``:
    the forecast is the mean variance, not the median that least squares on ``log y`` gives (biased low by
    Jensen's inequality, which QLIKE punishes). Its gradient in ``o`` is ``1 - y / exp(o)``."""
    return y * torch.exp(-out) + out


class QLikeLoss(nn.Module):
    """``qlike_loss`` averaged: the training loss of a volatility target (``target="volatility"``)."""

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return qlike_loss(out, y).mean()


def criterion_for(target: str) -> nn.Module:
    """The training loss of a forecast target: least squares for returns, QLIKE for volatility."""
    return QLikeLoss() if target == "volatility" else nn.MSELoss()


def _as_2d(t: torch.Tensor) -> torch.Tensor:
    # Predictions are (batch, output_dim); a 1-D target would broadcast an (n, n) loss.
    return t.unsqueeze(-1) if t.dim() == 1 else t


def evaluate(model: nn.Module, loader: Iterable, criterion: Callable, device: torch.device | None = None) -> float:
    """Mean loss per sample over ``loader`` in eval mode (no gradient)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for xb, yb in loader:
            if device is not None:
                xb, yb = xb.to(device), yb.to(device)
            out = model(xb)
            loss = criterion(out, _as_2d(yb).reshape(out.shape))
            total += float(loss) * len(xb)
            count += len(xb)
    return total / count if count else math.nan


def training_loop(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    criterion: Callable,
    callbacks: Sequence[Callback] | None = None,
    device: str | torch.device | None = None,
    noise_std: float = 0.0,
    on_epoch_end: Callable[[int, float, float], None] | None = None,
) -> dict:
    """Train ``model`` for up to ``epochs`` epochs and return the loss history.

    Returns ``{'train_loss': [...], 'val_loss': [...], 'best_epoch', 'stopped_epoch'}``;
    losses are plain floats, the train loss is the sample-weighted mean over batches.
    Each callback is called as ``cb(val_loss, model)`` after every epoch and stops
    training by returning True (``EarlyStopping`` plugs in directly; callbacks with a
    ``reset()`` method are reset first, so one can be reused); callbacks with
    an ``on_train_end(model)`` method get it called at the end, so the best weights
    are restored even when the epochs run out. ``noise_std`` adds Gaussian noise of
    that standard deviation to training inputs only (augmentation).

    >>> from puffin_bt import LSTMNet
    >>> model = LSTMNet(hidden_dim=4, num_layers=1)
    >>> data = [(torch.randn(8, 5, 1), torch.randn(8, 1))]
    >>> opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    >>> hist = training_loop(model, data, data, 2, opt, nn.MSELoss(), callbacks=[EarlyStopping(patience=3)])
    >>> len(hist["train_loss"]), len(hist["val_loss"])
    (2, 2)
    """
    epochs = check_int("epochs", epochs, minimum=0)
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    model.to(dev)
    callbacks = list(callbacks or [])
    for cb in callbacks:  # a callback reused across loops starts fresh (no stale best weights)
        if hasattr(cb, "reset"):
            cb.reset()
    history: dict = {"train_loss": [], "val_loss": [], "best_epoch": None, "stopped_epoch": None}
    for epoch in range(epochs):
        model.train()
        total, count = 0.0, 0
        for xb, yb in train_loader:
            xb, yb = xb.to(dev), yb.to(dev)
            if noise_std > 0:
                xb = xb + noise_std * torch.randn_like(xb)
            optimizer.zero_grad(set_to_none=True)
            out = model(xb)
            loss = criterion(out, _as_2d(yb).reshape(out.shape))
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(xb)
            count += len(xb)
        train_loss = total / count if count else math.nan
        val_loss = evaluate(model, val_loader, criterion, dev) if val_loader is not None else math.nan
        history["train_loss"].append(train_loss)
        history["val_loss"].append(val_loss)
        if on_epoch_end is not None:
            on_epoch_end(epoch, train_loss, val_loss)
        monitored = val_loss if val_loader is not None else train_loss
        if any([bool(cb(monitored, model)) for cb in callbacks]):
            history["stopped_epoch"] = epoch
            break
    for cb in callbacks:
        end = getattr(cb, "on_train_end", None)
        if end is not None:
            end(model)
        if isinstance(cb, EarlyStopping) and cb.best_epoch >= 0:
            history["best_epoch"] = cb.best_epoch
    return history


@torch.no_grad()
def adam_step(params: torch.Tensor, grads: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, step: int,
              lr: float, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
    """One ``torch.optim.Adam`` update (same formula, defaults and weight decay) on flat buffers, in place.

    The one Adam of puffin_bt: ``FlatAdam`` (one model, autograd) and the batched engine (M models
    stacked in one buffer) both call it, so both paths update weights by the same arithmetic.
    """
    beta1, beta2 = betas
    grad = grads.add(params, alpha=weight_decay) if weight_decay else grads
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias1 = 1 - beta1 ** step
    bias2_sqrt = math.sqrt(1 - beta2 ** step)
    denom = (exp_avg_sq.sqrt() / bias2_sqrt).add_(eps)
    params.addcdiv_(exp_avg, denom, value=-lr / bias1)


class FlatAdam:
    """``torch.optim.Adam`` on one flat buffer (``adam_step``), for one model trained with autograd.

    The parameters are moved into one contiguous tensor (each becomes a view of it) and their
    gradients into another, which autograd accumulates into in place; a step is then a few
    element-wise operations whatever the number of parameter tensors. It is faster per step
    than torch's fused CPU Adam (bench/README.md) and never touches ``torch.optim``, whose
    first optimizer in a process imports ``torch._dynamo`` (paid again by every worker process).
    """

    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        with torch.no_grad():
            self.flat = torch.cat([p.detach().reshape(-1) for p in self.params])
        self.grad = torch.zeros_like(self.flat)
        offset = 0
        for p in self.params:
            n = p.numel()
            p.data = self.flat[offset:offset + n].view_as(p)
            p.grad = self.grad[offset:offset + n].view_as(p)
            offset += n
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self.steps = 0

    def zero_grad(self, set_to_none: bool = True) -> None:  # noqa: ARG002 - the views must stay
        self.grad.zero_()

    def step(self) -> None:
        self.steps += 1
        adam_step(self.flat, self.grad, self.exp_avg, self.exp_avg_sq, self.steps, self.lr, self.weight_decay,
                  self.betas, self.eps)


def make_adam(net: nn.Module, lr: float, weight_decay: float, device: torch.device):
    """Adam for one model: ``FlatAdam`` on CPU; torch's fused Adam on CUDA (foreach elsewhere)."""
    if device.type == "cpu":
        return FlatAdam(net.parameters(), lr=lr, weight_decay=weight_decay)
    if device.type == "cuda":
        try:
            return torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)


def seed_torch(seed: int, device: torch.device | None = None) -> None:
    """Seed the CPU generator (and CUDA's when training there). ``torch.manual_seed`` also seeds
    every accelerator backend, which is measurable over hundreds of folds."""
    torch.default_generator.manual_seed(seed)
    if device is not None and device.type == "cuda":
        with torch.cuda.device(device):  # manual_seed seeds the *current* GPU: make it this one (cuda:1, ...)
            torch.cuda.manual_seed(seed)
