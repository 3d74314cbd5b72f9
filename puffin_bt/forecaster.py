"""The chapter's high-level forecasters, done causally: TradingLSTM and TradingGRU.

They model next-bar log returns (scale-free), fit the normaliser on the training
part only, validate on the chronological tail and still return *prices* from
``predict`` as the chapter shows. The window/scaler/training helpers here are
reused by the walk-forward runner so both paths train exactly the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import numbers
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._io import atomic_write_bytes
from ._validate import check_float, check_int
from .batched import engine_for
from .errors import CheckpointError, ConfigError, DataError, NotFittedError
from .nets import CELLS, RecurrentNet
from .training import EarlyStopping, TensorBatches, resolve_device, training_loop

FORMAT_VERSION = 1
MAX_SEED = 2**32 - 1  # numpy's limit; torch takes up to 2**64 - 1, and fold k uses seed + k


@dataclass(frozen=True)
class ModelConfig:
    """Everything that decides what network is trained and how (not the data).

    The walk-forward runner, the indicators and the forecasters all share it, and
    its ``to_dict`` is part of the forecast store's fingerprint.
    """

    cell: str = "lstm"
    hidden_dim: int = 64
    num_layers: int = 2
    dropout: float = 0.2
    lookback: int = 20
    horizon: int = 1
    lr: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 0.0
    noise_level: float = 0.0
    validation_split: float = 0.2
    patience: int | None = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.cell, str) or self.cell.lower() not in CELLS:
            raise ConfigError(f"cell={self.cell!r} is not a known recurrent cell; use one of {sorted(CELLS)}")
        object.__setattr__(self, "cell", self.cell.lower())
        for name in ("hidden_dim", "num_layers", "lookback", "horizon", "batch_size"):
            object.__setattr__(self, name, check_int(name, getattr(self, name)))
        object.__setattr__(self, "seed", check_int("seed", self.seed, minimum=0))
        if self.seed > MAX_SEED:
            raise ConfigError(f"seed={self.seed} is too large; use a seed between 0 and {MAX_SEED}")
        object.__setattr__(self, "patience", check_int("patience", self.patience, allow_none=True))
        object.__setattr__(self, "dropout", check_float("dropout", self.dropout, 0.0, 1.0, max_inclusive=False))
        object.__setattr__(self, "lr", check_float("lr", self.lr, 0.0, 10.0, min_inclusive=False))
        object.__setattr__(self, "weight_decay", check_float("weight_decay", self.weight_decay, 0.0, 1.0))
        object.__setattr__(self, "noise_level", check_float("noise_level", self.noise_level, 0.0, 10.0))
        object.__setattr__(
            self, "validation_split",
            check_float("validation_split", self.validation_split, 0.0, 0.9),
        )

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def build_net(self) -> RecurrentNet:
        return RecurrentNet(self.cell, 1, self.hidden_dim, self.num_layers, 1, self.dropout)


def as_prices(prices, name: str = "prices", min_length: int = 2) -> np.ndarray:
    """Validate a 1-D price series (list, ndarray, pandas Series: by position, never label).

    Returns a float64 copy. Raises DataError naming the first bad position/value.
    """
    if hasattr(prices, "to_numpy"):  # pandas Series/Index: position-based
        arr = prices.to_numpy()
    else:
        arr = np.asarray(prices)
    if arr.dtype.kind in "bUSV" or (arr.dtype == object and any(
            isinstance(v, (bool, np.bool_, str, bytes)) or not isinstance(v, numbers.Real) for v in arr.ravel())):
        first = next((v for v in arr.ravel().tolist() if not isinstance(v, numbers.Real) or isinstance(v, bool)),
                     arr.ravel()[0] if arr.size else None)
        raise DataError(
            f"{name} must be numeric (one price per bar); got dtype {arr.dtype} with a value like {first!r}"
        )
    try:
        arr = np.array(arr, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be numeric; got dtype {arr.dtype} ({exc})") from None
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise DataError(f"{name} must be 1-D (one price per bar); got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise DataError(
            f"{name} has {bad.size} non-finite value(s) (NaN/inf), first at position {bad[0]} "
            f"({arr[bad[0]]}); drop or fill them before fitting"
        )
    bad = np.flatnonzero(arr <= 0)
    if bad.size:
        raise DataError(
            f"{name} has {bad.size} zero/negative value(s), first at position {bad[0]} "
            f"({arr[bad[0]]}); prices must be strictly positive"
        )
    if len(arr) < min_length:
        raise DataError(f"{name} has {len(arr)} bars; at least {min_length} are needed")
    return arr


def returns_of(closes: np.ndarray) -> np.ndarray:
    """Log returns indexed by bar: ``r[t] = log(c[t] / c[t-1])``, ``r[0] = nan``."""
    r = np.empty(len(closes), dtype=np.float64)
    r[0] = np.nan
    np.subtract(np.log(closes[1:]), np.log(closes[:-1]), out=r[1:])
    return r


def window_inputs(returns: np.ndarray, bars: np.ndarray, lookback: int) -> np.ndarray:
    """Input windows (n, lookback): the ``lookback`` returns ending at each bar (inclusive)."""
    view = np.lib.stride_tricks.sliding_window_view(returns, lookback)  # view[i] ends at bar i+lookback-1
    return view[np.asarray(bars) - lookback + 1]


def window_targets(closes: np.ndarray, bars: np.ndarray, horizon: int) -> np.ndarray:
    """Targets: log return from each bar to ``horizon`` bars later."""
    bars = np.asarray(bars)
    return np.log(closes[bars + horizon]) - np.log(closes[bars])  # a ratio could overflow


@dataclass(frozen=True)
class Scaler:
    """Standardises returns with statistics of one fold's training samples only."""

    mean: float
    std: float
    horizon: int = 1

    @classmethod
    def fit(cls, returns: np.ndarray, horizon: int = 1) -> Scaler:
        std = float(np.std(returns))
        if not math.isfinite(std) or std < 1e-12:
            std = 1.0  # a constant series has no scale to learn; keep inputs finite
        return cls(float(np.mean(returns)), std, horizon)

    def x(self, windows: np.ndarray) -> np.ndarray:
        return (windows - self.mean) / self.std

    def y(self, targets: np.ndarray) -> np.ndarray:
        return (targets - self.horizon * self.mean) / (self.std * math.sqrt(self.horizon))

    def y_inverse(self, scaled: np.ndarray) -> np.ndarray:
        return scaled * (self.std * math.sqrt(self.horizon)) + self.horizon * self.mean


def split_train_val(bars: np.ndarray, validation_split: float) -> tuple[np.ndarray, np.ndarray]:
    """Chronological split: the last ``validation_split`` of the samples validate."""
    n_val = int(round(len(bars) * validation_split)) if validation_split > 0 else 0
    if validation_split > 0:
        n_val = max(1, n_val)
    return bars[: len(bars) - n_val], bars[len(bars) - n_val:]


def min_samples(validation_split: float) -> int:
    """Fewest windows a fit accepts: enough that the chronological split leaves at least 2
    to train on (and at least 1 to validate when ``validation_split > 0``)."""
    n = 2
    while len(split_train_val(np.arange(n), validation_split)[0]) < 2:
        n += 1
    return n


def _to_tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a, dtype=np.float32), device=device)


@dataclass
class FoldData:
    """One fold's scaled training and validation tensors and the scaler fitted on its training part."""

    scaler: Scaler
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor | None
    y_val: torch.Tensor | None

    @property
    def shape_key(self) -> tuple:
        return (tuple(self.x_train.shape), None if self.x_val is None else tuple(self.x_val.shape))


def fold_data(cfg: ModelConfig, closes: np.ndarray, sample_bars: np.ndarray, device: torch.device) -> FoldData:
    """Windows ending at ``sample_bars`` (targets must lie inside ``closes``), split chronologically;
    the scaler is fitted on the training samples only (not the validation tail)."""
    returns = returns_of(closes)
    train_bars, val_bars = split_train_val(sample_bars, cfg.validation_split)
    first_return_bar = int(train_bars[0]) - cfg.lookback + 1
    scaler = Scaler.fit(returns[first_return_bar: int(train_bars[-1]) + 1], cfg.horizon)
    x_train = _to_tensor(scaler.x(window_inputs(returns, train_bars, cfg.lookback))[..., None], device)
    y_train = _to_tensor(scaler.y(window_targets(closes, train_bars, cfg.horizon))[:, None], device)
    x_val = y_val = None
    if len(val_bars):
        x_val = _to_tensor(scaler.x(window_inputs(returns, val_bars, cfg.lookback))[..., None], device)
        y_val = _to_tensor(scaler.y(window_targets(closes, val_bars, cfg.horizon))[:, None], device)
    return FoldData(scaler, x_train, y_train, x_val, y_val)


def train_network(
    net: nn.Module,
    cfg: ModelConfig,
    closes: np.ndarray,
    sample_bars: np.ndarray,
    epochs: int,
    device: torch.device,
    seed: int,
    on_epoch_end=None,
) -> tuple[Scaler, dict]:
    """Train ``net`` on the windows ending at ``sample_bars`` (targets must lie inside ``closes``).

    The scaler is fitted on the training samples (not the validation tail). The
    whole fit runs under its own seeded RNG so it is repeatable and leaves the
    caller's global RNG state untouched.
    """
    data = fold_data(cfg, closes, sample_bars, device)
    val_loader = None
    if data.x_val is not None:
        val_loader = TensorBatches(data.x_val, data.y_val, batch_size=max(cfg.batch_size, 1024))
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        seed_torch(seed, device)
        gen = torch.Generator().manual_seed(seed)
        net.to(device)
        train_loader = TensorBatches(data.x_train, data.y_train, cfg.batch_size, shuffle=True, generator=gen)
        optimizer = make_adam(net, cfg.lr, cfg.weight_decay, device)
        callbacks = []
        if cfg.patience is not None and val_loader is not None:
            callbacks.append(EarlyStopping(patience=cfg.patience, restore_best_weights=True))
        history = training_loop(
            net, train_loader, val_loader, epochs, optimizer, nn.MSELoss(),
            callbacks=callbacks, device=device, noise_std=cfg.noise_level,
            on_epoch_end=on_epoch_end,
        )
    net.eval()
    return data.scaler, history


def train_networks_together(nets: list[nn.Module], cfg: ModelConfig, data: list[FoldData], epochs: int,
                            device: torch.device, seeds: list[int]) -> list[dict]:
    """Train independent LSTM or GRU nets whose folds have equal shapes as one batched computation
    (``batched.BatchedLSTM`` / ``BatchedGRU``); returns one history per net. Each net's result is the same
    whichever nets it is trained with. Validation runs every epoch only when early
    stopping needs it; otherwise once, after the last epoch."""
    keys = {d.shape_key for d in data}
    if len(keys) != 1 or len(nets) != len(data):
        raise ConfigError(f"nets trained together need folds of one shape; got {sorted(map(str, keys))}")
    has_val = data[0].x_val is not None
    engine = engine_for(nets, device)
    histories = engine.fit(
        torch.stack([d.x_train for d in data]), torch.stack([d.y_train for d in data]),
        torch.stack([d.x_val for d in data]) if has_val else None,
        torch.stack([d.y_val for d in data]) if has_val else None,
        epochs=epochs, lr=cfg.lr, batch_size=cfg.batch_size, seeds=seeds, weight_decay=cfg.weight_decay,
        patience=cfg.patience, noise_std=cfg.noise_level, validate_every_epoch=cfg.patience is not None,
    )
    engine.write_back(nets)
    for net in nets:  # built on the CPU (seeded there), trained on the engine's device: forecast there too
        net.to(device)
    return histories


def seed_torch(seed: int, device: torch.device | None = None) -> None:
    """Seed the CPU generator (and CUDA's when training there). ``torch.manual_seed`` also seeds
    every accelerator backend, ~1.5 ms a call: measurable over hundreds of folds."""
    torch.default_generator.manual_seed(seed)
    if device is not None and device.type == "cuda":
        with torch.cuda.device(device):  # manual_seed seeds the *current* GPU: make it this one (cuda:1, ...)
            torch.cuda.manual_seed(seed)


class FlatAdam:
    """``torch.optim.Adam`` (same update, defaults and weight decay) on one flat buffer.

    The parameters are moved into one contiguous tensor (each becomes a view of it) and
    their gradients into another, which autograd accumulates into in place; a step is then
    seven element-wise operations whatever the number of parameter tensors. Measured on the
    default LSTM 64x2: faster per step than torch's fused CPU Adam, and it never touches
    ``torch.optim``, whose first optimizer in a process imports ``torch._dynamo`` (~1 s, paid
    again by every worker process of a parallel run).
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

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        grad = self.grad.add(self.flat, alpha=self.weight_decay) if self.weight_decay else self.grad
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias1 = 1 - beta1 ** self.steps
        bias2_sqrt = math.sqrt(1 - beta2 ** self.steps)
        denom = (self.exp_avg_sq.sqrt() / bias2_sqrt).add_(self.eps)
        self.flat.addcdiv_(self.exp_avg, denom, value=-self.lr / bias1)


def make_adam(net: nn.Module, lr: float, weight_decay: float, device: torch.device):
    """Adam for one fold: ``FlatAdam`` on CPU; torch's fused Adam on CUDA (foreach elsewhere)."""
    if device.type == "cpu":
        return FlatAdam(net.parameters(), lr=lr, weight_decay=weight_decay)
    if device.type == "cuda":
        try:
            return torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)


def predict_log_returns(
    net: nn.Module, scaler: Scaler, closes: np.ndarray, bars: np.ndarray, lookback: int, device: torch.device
) -> np.ndarray:
    """One batched forward pass: the predicted log return after each bar in ``bars``.

    The window for bar t reads returns up to bar t only, i.e. ``closes[:t+1]``.
    """
    bars = np.asarray(bars, dtype=np.int64)
    if len(bars) == 0:
        return np.empty(0)
    returns = returns_of(closes[: int(bars.max()) + 1])
    return predict_windows(net, scaler, window_inputs(returns, bars, lookback), device)


def predict_windows(net: nn.Module, scaler: Scaler, windows: np.ndarray, device: torch.device) -> np.ndarray:
    """One batched forward pass over unscaled return windows (n, lookback): predicted log returns."""
    x = _to_tensor(scaler.x(windows)[..., None], device)
    net.eval()
    with torch.inference_mode():
        out = net(x)[:, 0].cpu().double().numpy()
    return scaler.y_inverse(out)


class RNNForecaster:
    """Fit a recurrent network on a price series and forecast future prices.

    ``__init__`` only stores hyperparameters; ``fit`` does the work and returns
    the loss history (as in the chapter); learned state ends with ``_``. The
    torch module is ``.model`` (None before ``fit``).

    >>> import numpy as np
    >>> prices = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 300)))
    >>> gru = TradingGRU(hidden_dim=8, num_layers=1)
    >>> history = gru.fit(prices, lookback=20, epochs=2, lr=0.001)
    >>> sorted(history)
    ['best_epoch', 'seconds', 'stopped_epoch', 'train_loss', 'val_loss']
    >>> gru.predict(prices, steps=5).shape
    (5,)
    """

    cell = "lstm"

    def __init__(
        self,
        hidden_dim: int = 64,
        num_layers: int = 2,
        dropout: float = 0.2,
        lookback: int = 20,
        lr: float = 1e-3,
        epochs: int = 50,
        batch_size: int = 32,
        weight_decay: float = 0.0,
        noise_level: float = 0.0,
        validation_split: float = 0.2,
        patience: int | None = 10,
        horizon: int = 1,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.dropout = dropout
        self.lookback = lookback
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.noise_level = noise_level
        self.validation_split = validation_split
        self.patience = patience
        self.horizon = horizon
        self.seed = seed
        self.device = device
        self.model: nn.Module | None = None
        self.config_: ModelConfig | None = None
        self.scaler_: Scaler | None = None
        self.history_: dict | None = None
        self.device_: torch.device | None = None

    def get_params(self) -> dict:
        keys = ("hidden_dim", "num_layers", "dropout", "lookback", "lr", "epochs", "batch_size",
                "weight_decay", "noise_level", "validation_split", "patience", "horizon", "seed", "device")
        return {k: getattr(self, k) for k in keys}

    def _config(self, defaults_if_none: dict, explicit: dict) -> ModelConfig:
        """Constructor params, overridden by fit's named arguments that are not None and by
        any other keyword given to fit as is (so ``fit(patience=None)`` disables early stopping)."""
        params = self.get_params()
        params.update({k: v for k, v in defaults_if_none.items() if v is not None})
        params.update(explicit)
        params.pop("epochs")
        params.pop("device")
        return ModelConfig(cell=self.cell, **params)

    def fit(self, prices, lookback: int | None = None, epochs: int | None = None, lr: float | None = None,
            batch_size: int | None = None, validation_split: float | None = None, **overrides) -> dict:
        """Train on ``prices`` (oldest first). Arguments given here override the constructor's.

        Returns ``{'train_loss', 'val_loss', 'best_epoch', 'stopped_epoch', 'seconds'}``.
        Validation is the chronological tail (``validation_split``), never shuffled.
        """
        unknown = set(overrides) - set(self.get_params())
        if unknown:
            raise ConfigError(f"fit() got unknown argument(s) {sorted(unknown)}; valid: {sorted(self.get_params())}")
        epochs = check_int("epochs", epochs if epochs is not None else overrides.pop("epochs", self.epochs))
        device = resolve_device(overrides.pop("device", self.device))
        cfg = self._config(dict(lookback=lookback, lr=lr, batch_size=batch_size, validation_split=validation_split),
                           overrides)
        need = cfg.lookback + cfg.horizon + min_samples(cfg.validation_split)
        closes = as_prices(prices, min_length=need)
        sample_bars = np.arange(cfg.lookback, len(closes) - cfg.horizon)
        started = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            seed_torch(cfg.seed)
            net = cfg.build_net()
        scaler, history = train_network(net, cfg, closes, sample_bars, epochs, device, cfg.seed)
        history["seconds"] = time.perf_counter() - started
        self.model, self.config_, self.scaler_, self.history_ = net, cfg, scaler, history
        self.device_ = device
        return history

    def _check_fitted(self) -> None:
        if self.model is None or self.scaler_ is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(prices) or load(path) first")

    def predict_returns(self, prices) -> np.ndarray:
        """Predicted log return over the next ``horizon`` bars after *every* bar that has a
        full window (NaN for the first ``lookback`` bars), in one batched forward pass."""
        self._check_fitted()
        cfg = self.config_
        closes = as_prices(prices, min_length=cfg.lookback + 1)
        out = np.full(len(closes), np.nan)
        bars = np.arange(cfg.lookback, len(closes))
        out[bars] = predict_log_returns(self.model, self.scaler_, closes, bars, cfg.lookback, self.device_)
        return out

    def predict(self, prices, steps: int = 1) -> np.ndarray:
        """Forecast the next ``steps`` prices after the last one in ``prices``.

        Steps beyond the first feed predictions back in recursively, so errors
        compound: treat ``steps > 1`` as a scenario, not ``steps`` forecasts.
        """
        self._check_fitted()
        cfg = self.config_
        steps = check_int("steps", steps)
        if cfg.horizon != 1 and steps != 1:
            raise ConfigError(f"steps={steps} needs a one-bar model; this one has horizon={cfg.horizon}, use steps=1")
        closes = as_prices(prices, min_length=cfg.lookback + 1)
        self.model.eval()
        window = returns_of(closes[-(cfg.lookback + 1):])[1:]
        preds = []
        last = float(closes[-1])
        for _ in range(steps):
            x = _to_tensor(self.scaler_.x(window)[None, :, None], self.device_)
            with torch.inference_mode():
                r = float(self.scaler_.y_inverse(self.model(x)[0, 0].cpu().double().numpy()))
            last = last * math.exp(r)
            preds.append(last)
            window = np.append(window[1:], r)
        return np.asarray(preds)

    def save(self, path: str | os.PathLike) -> Path:
        """Write weights + JSON metadata to one file, atomically. Load with ``load``."""
        self._check_fitted()
        meta = {
            "format": FORMAT_VERSION,
            "class": type(self).__name__,
            "config": self.config_.to_dict(),
            "scaler": dataclasses.asdict(self.scaler_),
            "params": {k: (str(v) if isinstance(v, torch.device) else v) for k, v in self.get_params().items()},
            "history": {k: self.history_.get(k) for k in ("train_loss", "val_loss", "best_epoch", "stopped_epoch")},
            "versions": {"torch": torch.__version__, "numpy": np.__version__},
        }
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        meta["sha256"] = _state_digest(state)
        buf = io.BytesIO()
        torch.save({"state_dict": state, "meta_json": json.dumps(meta)}, buf)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> RNNForecaster:
        """Load a file written by ``save``. Never unpickles: ``weights_only=True``."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {str(path)!r} does not exist; pass the path given to save()")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            meta = json.loads(blob["meta_json"])
            state = blob["state_dict"]
            cfg = ModelConfig(**meta["config"])
            scaler = Scaler(float(meta["scaler"]["mean"]), float(meta["scaler"]["std"]), int(meta["scaler"]["horizon"]))
            if not (math.isfinite(scaler.mean) and math.isfinite(scaler.std) and scaler.std > 0):
                raise ValueError(f"scaler statistics {meta['scaler']} are not finite with std > 0")
            if scaler.horizon != cfg.horizon:  # the checksum covers the weights only: check what the JSON says
                raise ValueError(f"scaler horizon {scaler.horizon} differs from the model's horizon {cfg.horizon}")
            if not isinstance(state, dict):
                raise TypeError(f"state_dict is a {type(state).__name__}, not a dict of tensors")
        except pickle.UnpicklingError as exc:
            raise CheckpointError(
                f"checkpoint {str(path)!r} would need unpickling arbitrary objects, which puffin_bt refuses "
                f"(weights_only=True); only load files written by RNNForecaster.save ({str(exc).splitlines()[0]})"
            ) from None
        except (KeyError, IndexError, TypeError, AttributeError, ValueError, RuntimeError, EOFError, OSError,
                ConfigError) as exc:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is not a puffin_bt model file or is corrupted ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); re-save it with RNNForecaster.save"
            ) from None
        target = cls
        if cls.cell != cfg.cell:
            if cls is not RNNForecaster:
                raise CheckpointError(
                    f"checkpoint {str(path)!r} holds a {cfg.cell.upper()} model but {cls.__name__}.load was "
                    f"called; use {_CLASS_FOR_CELL[cfg.cell].__name__}.load or RNNForecaster.load"
                )
        if cls is RNNForecaster:
            target = _CLASS_FOR_CELL[cfg.cell]
        params = dict(meta.get("params", {})) if isinstance(meta.get("params", {}), dict) else {}
        params["device"] = device
        try:
            obj = target(**{k: v for k, v in params.items() if k in target().get_params()})
        except (TypeError, ValueError, ConfigError) as exc:
            raise CheckpointError(
                f"checkpoint {str(path)!r} has unusable hyperparameters in its metadata ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); re-save it with RNNForecaster.save"
            ) from None
        net = cfg.build_net()
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError, KeyError) as exc:
            raise CheckpointError(
                f"checkpoint {str(path)!r}: weights do not match the architecture in its metadata "
                f"({str(exc).splitlines()[0]})"
            ) from None
        if "sha256" in meta and meta["sha256"] != _state_digest(state):
            raise CheckpointError(
                f"checkpoint {str(path)!r} is corrupted: its weights do not match the checksum saved with them; "
                "restore the file from a backup or re-train and save again"
            )
        obj.device_ = resolve_device(device)
        net.to(obj.device_).eval()
        obj.model, obj.config_, obj.scaler_ = net, cfg, scaler
        obj.history_ = meta.get("history")
        return obj


class TradingLSTM(RNNForecaster):
    """LSTM price forecaster (the chapter's ``TradingLSTM``); see ``RNNForecaster``."""

    cell = "lstm"


class TradingGRU(RNNForecaster):
    """GRU price forecaster (the chapter's ``TradingGRU``); see ``RNNForecaster``."""

    cell = "gru"


_CLASS_FOR_CELL = {"lstm": TradingLSTM, "gru": TradingGRU}


def _state_digest(state: dict) -> str:
    """SHA-256 over the weights (names, shapes, dtypes, bytes): detects a corrupted checkpoint."""
    h = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name]
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"state_dict entry {name!r} is not a tensor")
        h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
