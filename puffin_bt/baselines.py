"""The simple models a network's forecast must beat: ridge regression and gradient-boosted trees
(scikit-learn), trained on exactly the nets' fold schedule, windows, features and per-fold scaling.

Each fold's training set is ``fitting.fold_data``'s (the nets' own tensors: the same purged sample bars,
the same complete-feature windows, the same scaler fitted on the fold's training part, the validation tail
left out), flattened to one row per window; its forecasts go through ``fitting.predict_windows`` like a
net's. So a baseline never sees more data than the net it is compared with (DESIGN rule 13). The global
scope reuses ``GlobalWalkForward``'s calendar: one regressor per fold on every ticker's pooled windows.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .errors import ConfigError
from .globalmodel import GlobalWalkForward, Series
from .options import FitConfig, ModelConfig
from .schedule import FoldSchedule
from .store import as_lines
from .walkforward import FoldRecord
from .windows import returns_of, window_features, window_inputs

__all__ = ["BASELINES", "BASELINES_MISSING", "baseline_forecasts", "baselines_available", "global_baseline_forecasts"]

BASELINES = ("ridge", "gbm")
RIDGE_ALPHAS = tuple(10.0 ** k for k in range(-2, 6))  # on standardised inputs and targets
BASELINES_MISSING = ("no ridge/gbm baselines: scikit-learn is not installed "
                     "(pip install 'puffin_bt[baselines]'); the rest of the evaluation runs")


def baselines_available() -> bool:
    """Whether scikit-learn can be imported (the ``baselines`` extra)."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


def new_regressor(kind: str, seed: int):
    """An unfitted scikit-learn regressor: ridge (its penalty picked from ``RIDGE_ALPHAS`` by efficient
    leave-one-out on the fold's training windows only, so it shrinks towards the drift when the windows
    carry nothing, as a fair baseline should) or histogram gradient boosting (50 rounds of 8-leaf trees
    on 32 bins: cheap enough to refit on every fold; a fixed number of rounds, as early stopping would
    hold out samples the net trains on)."""
    if kind == "ridge":
        from sklearn.linear_model import RidgeCV

        return RidgeCV(alphas=RIDGE_ALPHAS)  # alpha by leave-one-out over the fold's own training windows
    if kind == "gbm":
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(max_iter=50, learning_rate=0.1, max_leaf_nodes=8, min_samples_leaf=20,
                                             max_bins=32, early_stopping=False, random_state=seed)
    raise ConfigError(f"baseline {kind!r} is not known; use one of {list(BASELINES)}")


def one_thread():
    """scikit-learn's OpenMP and BLAS pools limited to one thread, as the nets' default: on these small
    fits and predictions, spinning threads cost far more than they save (more so on a busy CPU)."""
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    return threadpool_limits(1)


@functools.cache
def _regressor_module() -> type:
    """``FittedRegressor``: a fitted regressor behind a network's interface, scaled windows (n, lookback, inputs)
    in, the scaled forecast (n, 1) out, so ``predict_windows`` scales and guards it exactly as a net's. Defined on
    first use: a warm evaluation whose forecasts come from the store never imports torch."""
    import torch
    from torch import nn

    class FittedRegressor(nn.Module):
        def __init__(self, regressor) -> None:
            super().__init__()
            self.regressor = regressor

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            rows = x.reshape(len(x), -1).double().numpy()
            with one_thread():
                return torch.from_numpy(np.asarray(self.regressor.predict(rows), dtype=np.float64)[:, None])

    return FittedRegressor


class BaselineWalkForward(GlobalWalkForward):
    """A baseline on the nets' folds: ``train_fold`` fits the regressor on the fold's (pooled) scaled
    windows, ``forecast`` predicts like a net; ``forecast_all`` (inherited) runs a global panel and
    ``forecast_series`` one ticker on the per-ticker schedule."""

    def __init__(self, kind: str, config: ModelConfig, schedule: FoldSchedule) -> None:
        super().__init__(config, schedule, FitConfig(epochs=1, device="cpu"))
        new_regressor(kind, config.seed)  # an unknown kind fails now, not at the first fold
        self.kind = kind

    def train_fold(self, position: int, histories, date=None) -> FoldRecord:
        s, cfg = self.schedule, self.config
        from .fitting import pool  # torch: on first use

        k, datas = self._fold_data(position, histories)  # the nets' own fold data, exactly
        pooled = pool(list(datas.values()))
        x = pooled.x_train.reshape(len(pooled.x_train), -1).double().numpy()
        y = pooled.y_train[:, 0].double().numpy()
        with one_thread():
            self.net = _regressor_module()(new_regressor(self.kind, cfg.seed + k).fit(x, y))
        self.scalers = {name: data.scaler for name, data in datas.items()}
        fitted = self.net(pooled.x_train)[:, 0].numpy()
        record = FoldRecord(index=k, bar=position, train_start=s.train_start(position), n_train=len(y),
                            n_val=0, epochs_run=0, warm_start=False, train_loss=float(np.mean((fitted - y) ** 2)),
                            val_loss=math.nan, best_epoch=None, seconds=0.0, date=date)
        self.folds.append(record)
        return record

    def forecast(self, name: str, closes: np.ndarray, bars: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """Predicted log returns for ``bars`` of one ticker from the current fold; NaN where the ticker sat the
        fold out or a feature has no value in the window (where the net has no forecast either)."""
        bars = np.asarray(bars, dtype=np.int64)
        out = np.full(len(bars), np.nan)
        scaler = self.scalers.get(name)
        if scaler is None or not len(bars):
            return out
        lookback = self.config.lookback
        windows = window_inputs(returns_of(closes[: int(bars.max()) + 1]), bars, lookback)
        feature_windows = None if features is None else window_features(features, bars, lookback)
        ok = np.ones(len(bars), bool) if feature_windows is None else np.isfinite(feature_windows).all(axis=(1, 2))
        if ok.any():
            from .fitting import predict_windows

            out[ok] = predict_windows(self.net, scaler, windows[ok], self.device,
                                      None if feature_windows is None else feature_windows[ok])
        return out

    def forecast_lines(self, name: str, closes: np.ndarray, bars: np.ndarray, features: np.ndarray | None = None,
                       offset: int = 0) -> np.ndarray:
        """``forecast`` as lines (a baseline has no members and no interval: NaN there); ``closes`` from bar 0."""
        return as_lines(self.forecast(name, closes, bars, features))

    def _train_ahead(self, positions, histories, date_of) -> None:
        """Nothing ahead: a regressor fits in moments, fold by fold in ``train_fold``."""

    def forecast_series(self, closes: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """One ticker walked forward on the per-ticker schedule: the fold at bar t fits on ``closes[:t+1]``
        (and ``features[:t+1]``) and forecasts bars t .. t + retrain_every - 1. Predicted log returns, one per
        bar (NaN before the first fold)."""
        s, n = self.schedule, len(closes)
        out = np.full(n, np.nan)
        for bar in s.fold_bars(n):
            self.train_fold(bar, {"": (closes[: bar + 1], None if features is None else features[: bar + 1])})
            stop = min(n, bar + s.retrain_every)
            out[bar:stop] = self.forecast("", closes[:stop], np.arange(bar, stop),
                                          None if features is None else features[:stop])
        return out


def baseline_forecasts(kind: str, config: ModelConfig, schedule: FoldSchedule, closes: np.ndarray,
                       features: np.ndarray | None = None) -> np.ndarray:
    """A baseline's walk-forward forecasts (log returns, one per bar) for one ticker, per-ticker scope."""
    return BaselineWalkForward(kind, config, schedule).forecast_series(np.asarray(closes, dtype=np.float64), features)


def global_baseline_forecasts(kind: str, config: ModelConfig, schedule: FoldSchedule, series: list[Series]) -> dict:
    """A baseline's forecasts for a panel, global scope: ``{ticker: log returns, one per bar}``."""
    return BaselineWalkForward(kind, config, schedule).forecast_all(series)
