"""Fitting networks on price windows and forecasting with them: one network with autograd, or many
networks of one shape as one batched computation (``batched.py``).

The estimators (``forecaster.py``) and the walk-forward (``walkforward.py``, and the fold pool's
workers) all train and forecast through these functions, so every path computes the same numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .batched import engine_for
from .errors import ConfigError
from .nets import net_for
from .options import ModelConfig
from .schedule import FoldSchedule
from .training import EarlyStopping, TensorBatches, make_adam, seed_torch, training_loop
from .windows import Scaler, flat_windows, returns_of, split_train_val, window_inputs, window_targets


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


def new_net(config: ModelConfig, seed: int) -> nn.Module:
    """A freshly initialised network seeded with ``seed`` (the global RNG is untouched)."""
    with torch.random.fork_rng(devices=[]):
        seed_torch(seed)
        return net_for(config)


def new_fold_net(config: ModelConfig, k: int) -> nn.Module:
    """Fold ``k``'s freshly initialised network (seeded with ``config.seed + k``)."""
    return new_net(config, config.seed + k)


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


def train_cold_batch(config: ModelConfig, schedule: FoldSchedule, epochs: int, device: torch.device,
                     folds: list[tuple[int, np.ndarray]]) -> list[tuple]:
    """Train cold folds of one shape together, each on its own history (closes up to its fold bar).
    Returns ``(k, net, scaler, history, seconds)`` per fold, seconds being its preparation plus
    its share of the batch's training."""
    prepared = []
    for k, history in folds:
        t0 = time.perf_counter()
        data = fold_data(config, history, schedule.sample_bars(len(history) - 1), device)
        prepared.append((k, new_fold_net(config, k), data, time.perf_counter() - t0))
    t0 = time.perf_counter()
    hists = train_networks_together([p[1] for p in prepared], config, [p[2] for p in prepared], epochs, device,
                                    [config.seed + p[0] for p in prepared])
    share = (time.perf_counter() - t0) / len(prepared)
    return [(k, net, data.scaler, hist, prep + share) for (k, net, data, prep), hist in zip(prepared, hists)]


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
    """One batched forward pass over unscaled return windows (n, lookback): predicted log returns.
    A flat window, or any window of a fold trained on flat returns, forecasts a zero return."""
    if scaler.flat:
        return np.zeros(len(windows))
    x = _to_tensor(scaler.x(windows)[..., None], device)
    net.eval()
    with torch.inference_mode():
        out = net(x)[:, 0].cpu().double().numpy()
    pred = scaler.y_inverse(out)
    pred[flat_windows(windows)] = 0.0
    return pred


def predict_one(net: nn.Module, scaler: Scaler, window: np.ndarray, device: torch.device) -> float:
    """The predicted log return after one window of ``lookback`` returns (the estimators' recursive steps)."""
    return float(predict_windows(net, scaler, np.asarray(window, dtype=np.float64)[None, :], device)[0])
