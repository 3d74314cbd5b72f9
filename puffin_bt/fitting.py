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

from . import models
from .errors import ConfigError, DataError
from .options import ModelConfig
from .schedule import FoldSchedule
from .training import EarlyStopping, TensorBatches, criterion_for, make_adam, seed_torch, training_loop
from .volatility import realised_variance_target
from .windows import (
    Scaler,
    complete_windows,
    flat_windows,
    min_samples,
    returns_of,
    split_train_val,
    window_features,
    window_inputs,
    window_targets,
)

__all__ = ["FoldData", "FoldJob", "cold_job", "even_batches", "fold_data", "fold_seeds", "member_seed",
           "new_fold_net", "new_fold_nets", "new_net", "pool", "predict_log_returns", "predict_one",
           "predict_windows", "train_cold_batch", "train_jobs", "train_network", "train_networks_together",
           "train_prepared", "validation_residuals"]


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


def fold_data(cfg: ModelConfig, closes: np.ndarray, sample_bars: np.ndarray, device: torch.device,
              features: np.ndarray | None = None) -> FoldData:
    """Windows ending at ``sample_bars`` (targets must lie inside ``closes``), split chronologically;
    the scaler is fitted on the training samples only (not the validation tail).

    ``features`` (bars, F), aligned with ``closes`` (and cut where they are): windows in which a
    feature has no value yet (its warm-up, or a feature that starts later) are left out; a fold
    left with too few windows is a DataError naming the feature."""
    returns = returns_of(closes)
    if features is not None:
        sample_bars = _complete_samples(cfg, features, sample_bars)
    train_bars, val_bars = split_train_val(sample_bars, cfg.validation_split)
    first_return_bar = int(train_bars[0]) - cfg.lookback + 1
    rows = slice(first_return_bar, int(train_bars[-1]) + 1)
    scaler = Scaler.fit(returns[rows], cfg.horizon, None if features is None else features[rows])
    targets = realised_variance_target if cfg.target == "volatility" else window_targets
    y_train = targets(closes, train_bars, cfg.horizon)
    if cfg.target == "volatility":  # each target over its window's anchor, floored by the fold's mean variance
        scaler = scaler.for_variance(y_train)

    def inputs(bars, windows):
        feature_windows = None if features is None else window_features(features, bars, cfg.lookback)
        return _to_tensor(scaler.inputs(windows, feature_windows), device)

    train_windows = window_inputs(returns, train_bars, cfg.lookback)  # the inputs, and a variance target's anchors
    x_train = inputs(train_bars, train_windows)
    y_train = _to_tensor(scaler.y(y_train, train_windows)[:, None], device)
    x_val = y_val = None
    if len(val_bars):
        val_windows = window_inputs(returns, val_bars, cfg.lookback)
        x_val = inputs(val_bars, val_windows)
        y_val = _to_tensor(scaler.y(targets(closes, val_bars, cfg.horizon), val_windows)[:, None], device)
    return FoldData(scaler, x_train, y_train, x_val, y_val)


def _complete_samples(cfg: ModelConfig, features: np.ndarray, sample_bars: np.ndarray) -> np.ndarray:
    if features.shape[1] != len(cfg.features):
        raise ConfigError(f"{features.shape[1]} feature column(s) for a model of {len(cfg.features)} feature(s) "
                          f"{list(cfg.features)}; pass one column per feature")
    complete = sample_bars[complete_windows(features, sample_bars, cfg.lookback)]
    need = min_samples(cfg.validation_split)
    if len(complete) < need:
        gaps = ", ".join(f"{name!r} (first value at bar {int(np.argmax(np.isfinite(column)))})"
                         if np.isfinite(column).any() else f"{name!r} (no value up to bar {len(column) - 1})"
                         for name, column in zip(cfg.features, features.T) if np.isnan(column).any())
        raise DataError(
            f"feature(s) {gaps} leave {len(complete)} complete training window(s) of {len(sample_bars)} in the fold "
            f"at bar {len(features) - 1} (need {need}); raise min_train, or use features that start earlier"
        )
    return complete


def new_net(config: ModelConfig, seed: int) -> nn.Module:
    """A freshly initialised network seeded with ``seed`` (the global RNG is untouched)."""
    with torch.random.fork_rng(devices=[]):
        seed_torch(seed)
        return models.build(config)


def member_seed(base: int, member: int) -> int:
    """The seed of an ensemble's member ``member`` of a fold seeded ``base``: member 0 is the single model's own
    (``ensemble=1`` forecasts are those of one model, bit for bit); the others are distinct, within torch's range."""
    return base if member == 0 else (base * 1_000_003 + member) % 2**63


def new_fold_net(config: ModelConfig, k: int, member: int = 0) -> nn.Module:
    """Fold ``k``'s freshly initialised network (seeded with ``config.seed + k``; ensemble members their own)."""
    return new_net(config, member_seed(config.seed + k, member))


def new_fold_nets(config: ModelConfig, k: int) -> list[nn.Module]:
    """Fold ``k``'s freshly initialised networks: ``config.trained_members`` of them."""
    return [new_fold_net(config, k, m) for m in range(config.trained_members)]


def fold_seeds(config: ModelConfig, k: int) -> list[int]:
    return [member_seed(config.seed + k, m) for m in range(config.trained_members)]


def validation_residuals(nets: list[nn.Module], data: FoldData, device: torch.device) -> np.ndarray | None:
    """Realised minus predicted log return (the members' mean) on a fold's validation windows, in
    log-return units: the scores its conformal interval is built from. None without a validation tail."""
    if data.x_val is None or data.scaler is None:
        return None
    with torch.inference_mode():
        scaled = [net.eval()(data.x_val.to(device))[:, 0].cpu().double().numpy() for net in nets]
    forecast = np.mean([data.scaler.y_inverse(s) for s in scaled], axis=0) if len(nets) > 1 else \
        data.scaler.y_inverse(scaled[0])
    if data.scaler.flat:
        forecast = np.zeros_like(forecast)  # a flat fold forecasts a zero return (see predict_windows)
    realized = data.scaler.y_inverse(data.y_val[:, 0].cpu().double().numpy())
    return realized - forecast


def train_network(
    net: nn.Module,
    cfg: ModelConfig,
    closes: np.ndarray,
    sample_bars: np.ndarray,
    epochs: int,
    device: torch.device,
    seed: int,
    on_epoch_end=None,
    features: np.ndarray | None = None,
) -> tuple[Scaler, dict]:
    """Train ``net`` on the windows ending at ``sample_bars`` (targets must lie inside ``closes``).

    The scaler is fitted on the training samples (not the validation tail). The
    whole fit runs under its own seeded RNG so it is repeatable and leaves the
    caller's global RNG state untouched.
    """
    data = fold_data(cfg, closes, sample_bars, device, features)
    return data.scaler, train_prepared(net, cfg, data, epochs, device, seed, on_epoch_end)


def train_prepared(net: nn.Module, cfg: ModelConfig, data: FoldData, epochs: int, device: torch.device, seed: int,
                   on_epoch_end=None) -> dict:
    """Train ``net`` with autograd on a fold's prepared tensors (``fold_data``, or several tickers' pooled
    by ``pool``), under its own seeded RNG; returns the loss history."""
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
            net, train_loader, val_loader, epochs, optimizer, criterion_for(cfg.target),
            callbacks=callbacks, device=device, noise_std=cfg.noise_level,
            on_epoch_end=on_epoch_end,
        )
    net.eval()
    return history


def pool(datas: list[FoldData]) -> FoldData:
    """Several tickers' fold tensors as one training set (each already scaled with its own statistics):
    the training samples side by side, and the validation tails (each ticker's chronological tail)."""
    vals = [d for d in datas if d.x_val is not None]
    return FoldData(
        None,
        torch.cat([d.x_train for d in datas]), torch.cat([d.y_train for d in datas]),
        torch.cat([d.x_val for d in vals]) if vals else None, torch.cat([d.y_val for d in vals]) if vals else None,
    )


def train_networks_together(nets: list[nn.Module], cfg: ModelConfig, data: list[FoldData], epochs: int,
                            device: torch.device, seeds: list[int]) -> list[dict]:
    """Train independent nets of ``cfg`` whose folds have equal shapes as one batched computation on their
    family's engine (``batched.BatchedLSTM`` / ``BatchedGRU``; validation every epoch only when early stopping
    needs it, otherwise once, after the last epoch), or one after the other with autograd for a family without
    one; returns one history per net. Each net's result is the same whichever nets it is trained with."""
    keys = {d.shape_key for d in data}
    if len(keys) != 1 or len(nets) != len(data):
        raise ConfigError(f"nets trained together need folds of one shape; got {sorted(map(str, keys))}")
    engine_class = models.family(cfg.cell).engine
    if engine_class is None:
        return [train_prepared(net, cfg, d, epochs, device, seed) for net, d, seed in zip(nets, data, seeds)]
    has_val = data[0].x_val is not None
    engine = engine_class(nets, device)
    histories = engine.fit(
        torch.stack([d.x_train for d in data]), torch.stack([d.y_train for d in data]),
        torch.stack([d.x_val for d in data]) if has_val else None,
        torch.stack([d.y_val for d in data]) if has_val else None,
        epochs=epochs, lr=cfg.lr, batch_size=cfg.batch_size, seeds=seeds, weight_decay=cfg.weight_decay,
        patience=cfg.patience, noise_std=cfg.noise_level, validate_every_epoch=cfg.patience is not None,
        qlike=cfg.target == "volatility",
    )
    engine.write_back(nets)
    for net in nets:  # built on the CPU (seeded there), trained on the engine's device: forecast there too
        net.to(device)
    return histories


@dataclass
class FoldJob:
    """One fold's models to train on the batched engine: fold ``k``'s networks (an ensemble's members, fresh
    for a cold fold, the previous fold's for a warm refit), its tensors, its epochs, and the seconds spent
    preparing them."""

    k: int
    nets: list[nn.Module]
    data: FoldData
    epochs: int
    prep_seconds: float = 0.0

    @property
    def batch_key(self) -> tuple:
        """Jobs with equal keys can train in one batch: equal tensor shapes and epochs."""
        return self.data.shape_key, self.epochs


def even_batches(items: list, n_batches: int) -> list[list]:
    """``items`` in at most ``n_batches`` consecutive batches of near-equal size: 12 as 6 + 6, not 8 + 4."""
    size = max(1, -(-len(items) // max(1, n_batches)))
    return [items[i:i + size] for i in range(0, len(items), size)]


def train_jobs(config: ModelConfig, jobs: list[FoldJob], device: torch.device, residuals: bool = False) -> list[tuple]:
    """Train fold jobs of one ``batch_key`` (of one walk-forward, or of several tickers' walk-forwards with the
    same options) as one batched computation, each member with its fold's seed; each job's result is the one it
    gets alone. Returns ``(histories, seconds, validation residuals or None)`` per job, seconds being its
    preparation plus its share of the batch's training."""
    t0 = time.perf_counter()
    nets = [net for job in jobs for net in job.nets]
    datas = [job.data for job in jobs for _ in job.nets]
    seeds = [seed for job in jobs for seed in fold_seeds(config, job.k)]
    hists = train_networks_together(nets, config, datas, jobs[0].epochs, device, seeds)
    share = (time.perf_counter() - t0) / len(jobs)
    out, i = [], 0
    for job in jobs:
        scores = validation_residuals(job.nets, job.data, device) if residuals else None
        out.append((hists[i:i + len(job.nets)], job.prep_seconds + share, scores))
        i += len(job.nets)
    return out


def cold_job(config: ModelConfig, schedule: FoldSchedule, epochs: int, device: torch.device, k: int,
             history: np.ndarray, features: np.ndarray | None = None) -> FoldJob:
    """Fold ``k`` trained from scratch on ``history`` (closes up to its fold bar) and its feature rows."""
    t0 = time.perf_counter()
    data = fold_data(config, history, schedule.sample_bars(len(history) - 1), device, features)
    nets = new_fold_nets(config, k)
    return FoldJob(k, nets, data, epochs, time.perf_counter() - t0)


def train_cold_batch(config: ModelConfig, schedule: FoldSchedule, epochs: int, device: torch.device,
                     folds: list[tuple], residuals: bool = False) -> list[tuple]:
    """Train cold folds of one shape together, each on its own history: ``(k, closes up to its fold bar,
    features up to it or None)``; each fold's ``config.ensemble`` members are models of the same batch.
    Returns ``(k, nets, scaler, histories, seconds, validation residuals or None)`` per fold, seconds being
    its preparation plus its share of the batch's training."""
    jobs = [cold_job(config, schedule, epochs, device, k, history, features) for k, history, features in folds]
    return [(job.k, job.nets, job.data.scaler, hists, seconds, scores)
            for job, (hists, seconds, scores) in zip(jobs, train_jobs(config, jobs, device, residuals))]


def predict_log_returns(
    net: nn.Module, scaler: Scaler, closes: np.ndarray, bars: np.ndarray, lookback: int, device: torch.device,
    features: np.ndarray | None = None,
) -> np.ndarray:
    """One batched forward pass: the predicted log return after each bar in ``bars``.

    The window for bar t reads returns (and features) up to bar t only, i.e. ``closes[:t+1]``.
    """
    bars = np.asarray(bars, dtype=np.int64)
    if len(bars) == 0:
        return np.empty(0)
    returns = returns_of(closes[: int(bars.max()) + 1])
    windows = None if features is None else window_features(features, bars, lookback)
    return predict_windows(net, scaler, window_inputs(returns, bars, lookback), device, windows)


def predict_windows(net: nn.Module, scaler: Scaler, windows: np.ndarray, device: torch.device,
                    feature_windows: np.ndarray | None = None) -> np.ndarray:
    """One batched forward pass over unscaled return windows (n, lookback) and feature windows
    (n, lookback, F): predicted log returns. A flat return window, or any window of a fold trained on
    flat returns, forecasts a zero return."""
    if scaler.flat:
        return np.zeros(len(windows))
    x = _to_tensor(scaler.inputs(windows, feature_windows), device)
    net.eval()
    with torch.inference_mode():
        out = net(x)[:, 0].cpu().double().numpy()
    pred = scaler.y_inverse(out, windows)
    if scaler.variance is None:  # a variance forecast from a calm window is still the net's (a low one)
        pred[flat_windows(windows)] = 0.0
    return pred


def predict_one(net: nn.Module, scaler: Scaler, window: np.ndarray, device: torch.device) -> float:
    """The predicted log return after one window of ``lookback`` returns (the estimators' recursive steps)."""
    return float(predict_windows(net, scaler, np.asarray(window, dtype=np.float64)[None, :], device)[0])
