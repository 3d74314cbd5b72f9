"""The chapter's high-level forecasters, done causally: one estimator per model family (``TradingLSTM``,
``TradingGRU``, ``TradingTCN``: ``ESTIMATORS``, derived from ``models.FAMILIES``) over ``RNNForecaster``.

They model next-bar log returns (scale-free), fit the normaliser on the training part only,
validate on the chronological tail and still return *prices* from ``predict`` as the chapter
shows. They keep scikit-learn's estimator contract: ``__init__`` only stores hyperparameters
(introspected from its signature, which the options registry defines), ``fit`` does the work,
learned state ends in ``_``, and ``sklearn.base.clone`` works.
"""

from __future__ import annotations

import inspect
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import checkpoint, models
from .checks import check_int, check_known
from .errors import CheckpointError, ConfigError, DataError, NotFittedError
from .features import check_feature_columns
from .fitting import new_net, predict_log_returns, predict_one, train_network
from .options import ESTIMATOR_DEFAULTS, ESTIMATOR_NAMES, ModelConfig
from .training import resolve_device
from .windows import Scaler, as_prices, complete_windows, min_samples, returns_of


def _init(self, **params) -> None:
    check_known(params, ESTIMATOR_NAMES, f"{type(self).__name__}()")
    for name in ESTIMATOR_NAMES:
        setattr(self, name, params.get(name, ESTIMATOR_DEFAULTS[name]))
    self.model: nn.Module | None = None
    self.config_: ModelConfig | None = None
    self.scaler_: Scaler | None = None
    self.history_: dict | None = None
    self.device_: torch.device | None = None


# Keyword-only hyperparameters, defaults from the options registry: what get_params introspects.
_init.__signature__ = inspect.Signature(
    [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=ESTIMATOR_DEFAULTS[name])
       for name in ESTIMATOR_NAMES]
)


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

    Input features besides the prices: ``fit(prices, features=X)`` with ``X`` a 2-D array or a
    DataFrame aligned with ``prices`` (one row per bar; a value at bar t enters the window ending
    at t), then ``predict(prices, features=X)`` with the rows for those prices (``steps=1``: the
    features of future bars are unknown).
    """

    cell = "lstm"
    __init__ = _init

    @classmethod
    def _get_param_names(cls) -> list[str]:
        return [p.name for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]

    def get_params(self, deep: bool = True) -> dict:  # noqa: ARG002 - no nested estimators
        """The hyperparameters given to ``__init__`` (scikit-learn's contract)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params) -> RNNForecaster:
        """Set hyperparameters (unknown names raise ConfigError); returns self."""
        check_known(params, self._get_param_names(), f"{type(self).__name__}.set_params()")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != ESTIMATOR_DEFAULTS[k]}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def _config(self, defaults_if_none: dict, explicit: dict, features: tuple[str, ...]) -> ModelConfig:
        """Constructor params, overridden by fit's named arguments that are not None and by
        any other keyword given to fit as is (so ``fit(patience=None)`` disables early stopping)."""
        params = self.get_params()
        params.update({k: v for k, v in defaults_if_none.items() if v is not None})
        params.update(explicit)
        params.pop("epochs")
        params.pop("device")
        return ModelConfig(cell=self.cell, features=features, **params)

    def fit(self, prices, lookback: int | None = None, epochs: int | None = None, lr: float | None = None,
            batch_size: int | None = None, validation_split: float | None = None, features=None,
            **overrides) -> dict:
        """Train on ``prices`` (oldest first), and ``features`` (a 2-D array or DataFrame aligned with
        them) if given. Arguments given here override the constructor's.

        Returns ``{'train_loss', 'val_loss', 'best_epoch', 'stopped_epoch', 'seconds'}``.
        Validation is the chronological tail (``validation_split``), never shuffled.
        """
        check_known(overrides, self._get_param_names(), "fit()")
        epochs = check_int("epochs", epochs if epochs is not None else overrides.pop("epochs", self.epochs))
        device = resolve_device(overrides.pop("device", self.device))
        names = _feature_names(features)
        cfg = self._config(dict(lookback=lookback, lr=lr, batch_size=batch_size, validation_split=validation_split),
                           overrides, names)
        need = cfg.lookback + cfg.horizon + min_samples(cfg.validation_split)
        closes = as_prices(prices, min_length=need)
        rows = None if features is None else _feature_values(features, names, len(closes))
        sample_bars = np.arange(cfg.lookback, len(closes) - cfg.horizon)
        models.require_memory(cfg, device, len(sample_bars))
        started = time.perf_counter()
        net = new_net(cfg, cfg.seed)
        scaler, history = train_network(net, cfg, closes, sample_bars, epochs, device, cfg.seed, features=rows)
        history["seconds"] = time.perf_counter() - started
        self.model, self.config_, self.scaler_, self.history_ = net, cfg, scaler, history
        self.device_ = device
        return history

    def _check_fitted(self) -> None:
        if self.model is None or self.scaler_ is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(prices) or load(path) first")

    def _rows(self, features, n_bars: int) -> np.ndarray | None:
        """The feature rows given to predict, checked against those the model was fitted with."""
        names = self.config_.features
        if features is None:
            if names:
                raise ConfigError(f"this model was fitted with features {list(names)}; pass their values for "
                                  "these prices (features=...)")
            return None
        if not names:
            raise ConfigError("this model was fitted without features; call predict without features=")
        width = len(_feature_names(features))
        if width != len(names):
            raise DataError(f"features have {width} column(s); the model was fitted with {len(names)}: {list(names)}")
        return _feature_values(features, names, n_bars)

    def predict_returns(self, prices, features=None) -> np.ndarray:
        """Predicted log return over the next ``horizon`` bars after *every* bar that has a
        full window (NaN for the first ``lookback`` bars, and where a feature has no value yet),
        in one batched forward pass."""
        self._check_fitted()
        cfg = self.config_
        closes = as_prices(prices, min_length=cfg.lookback + 1)
        rows = self._rows(features, len(closes))
        out = np.full(len(closes), np.nan)
        bars = np.arange(cfg.lookback, len(closes))
        if rows is not None:
            bars = bars[complete_windows(rows, bars, cfg.lookback)]
        out[bars] = predict_log_returns(self.model, self.scaler_, closes, bars, cfg.lookback, self.device_, rows)
        return out

    def predict(self, prices, steps: int = 1, features=None) -> np.ndarray:
        """Forecast the next ``steps`` prices after the last one in ``prices``.

        Steps beyond the first feed predictions back in recursively, so errors
        compound: treat ``steps > 1`` as a scenario, not ``steps`` forecasts. A model
        fitted with features needs their rows for ``prices`` and forecasts one step.
        """
        self._check_fitted()
        cfg = self.config_
        steps = check_int("steps", steps)
        if cfg.horizon != 1 and steps != 1:
            raise ConfigError(f"steps={steps} needs a one-bar model; this one has horizon={cfg.horizon}, use steps=1")
        closes = as_prices(prices, min_length=cfg.lookback + 1)
        rows = self._rows(features, len(closes))
        if rows is not None:
            if steps != 1:
                raise ConfigError(f"steps={steps} with features: the features of future bars are unknown; use steps=1")
            value = self.predict_returns(closes, features)[-1]
            if not np.isfinite(value):
                raise DataError("a feature has no value in the last input window; pass complete rows for the "
                                f"last {cfg.lookback} bars")
            return np.array([float(closes[-1]) * math.exp(value)])
        window = returns_of(closes[-(cfg.lookback + 1):])[1:]
        preds = []
        last = float(closes[-1])
        for _ in range(steps):
            r = predict_one(self.model, self.scaler_, window, self.device_)
            last = last * math.exp(r)
            preds.append(last)
            window = np.append(window[1:], r)
        return np.asarray(preds)

    def save(self, path: str | os.PathLike) -> Path:
        """Write weights + JSON metadata to one file, atomically. Load with ``load``."""
        self._check_fitted()
        return checkpoint.write(path, type(self).__name__, self.config_, self.scaler_, self.model.state_dict(),
                                self.get_params(), self.history_)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "auto") -> RNNForecaster:
        """Load a file written by ``save``. Never unpickles: ``weights_only=True``."""
        saved = checkpoint.read(path)
        cfg = saved.config
        if cls.cell != cfg.cell and cls is not RNNForecaster:
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds a {cfg.cell.upper()} model but {cls.__name__}.load was "
                f"called; use {ESTIMATORS[cfg.cell].__name__}.load or RNNForecaster.load"
            )
        if cfg.target == "volatility":  # its output is a variance: an estimator would read it as a log return
            raise CheckpointError(f"checkpoint {str(path)!r} holds a volatility model (target='volatility'); the "
                                  "estimators forecast returns: resume it with a forecast indicator's model_dir")
        target = ESTIMATORS[cfg.cell] if cls is RNNForecaster else cls
        params = {k: v for k, v in saved.params.items() if k in ESTIMATOR_NAMES}
        params["device"] = device
        try:
            obj = target(**params)
            ModelConfig(cell=cfg.cell, **{k: v for k, v in params.items() if k not in ("epochs", "device")})
        except (TypeError, ValueError, ConfigError) as exc:
            raise CheckpointError(
                f"checkpoint {str(path)!r} has unusable hyperparameters in its metadata ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); re-save it with RNNForecaster.save"
            ) from None
        obj.device_ = resolve_device(device)
        models.require_memory(cfg, "cpu", weights_only=True, error=CheckpointError)  # built on the CPU first
        models.require_memory(cfg, obj.device_, weights_only=True, error=CheckpointError)
        try:
            net = models.build(cfg)
            net.load_state_dict(saved.state)
            net.to(obj.device_).eval()
        except (RuntimeError, TypeError, AttributeError, KeyError, MemoryError) as exc:
            raise CheckpointError(
                f"checkpoint {str(path)!r}: its weights cannot be loaded into the architecture in its metadata "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None
        obj.model, obj.config_, obj.scaler_ = net, cfg, saved.scaler
        obj.history_ = saved.history
        return obj


def _feature_names(features) -> tuple[str, ...]:
    """A DataFrame's column names, a Series' name, or x0, x1, ... for an array."""
    if features is None:
        return ()
    if hasattr(features, "columns"):
        return tuple(str(c) for c in features.columns)
    shape = np.shape(features)
    if len(shape) == 1:
        return (str(getattr(features, "name", None) or "x0"),)
    if len(shape) != 2:
        raise DataError(f"features has shape {shape}; pass a 2-D array or a DataFrame, one row per price bar")
    return tuple(f"x{j}" for j in range(shape[1]))


def _feature_values(features, names: tuple[str, ...], n_bars: int) -> np.ndarray:
    values = features.to_numpy() if hasattr(features, "to_numpy") else features
    return check_feature_columns(values, names, n_bars, "features")


def _estimator(family: models.Family) -> type[RNNForecaster]:
    return type(family.estimator_name, (RNNForecaster,), {
        "__doc__": f"{family.label} price forecaster; see ``RNNForecaster``.", "__module__": __name__,
        "__qualname__": family.estimator_name, "cell": family.name})


# One estimator class per family (TradingLSTM is the chapter's), as module attributes: importable and picklable.
ESTIMATORS: dict[str, type[RNNForecaster]] = {name: _estimator(f) for name, f in models.FAMILIES.items()}
globals().update({cls.__name__: cls for cls in ESTIMATORS.values()})
__all__ = ["ESTIMATORS", "RNNForecaster", *(cls.__name__ for cls in ESTIMATORS.values())]
