"""When walk-forward folds retrain and which bars each one trains on (``FoldSchedule``)."""

from __future__ import annotations

import numpy as np

from .errors import ConfigError
from .options import OptionSet
from .windows import min_samples

__all__ = ["FoldSchedule"]


class FoldSchedule(OptionSet):
    """When folds retrain and which bars each one trains on.

    Bars are 0-based positions in the series. The first fold trains at bar
    ``min_train - 1`` (its history is exactly ``min_train`` bars), the next ones
    every ``retrain_every`` bars after it. A fold at bar t trains on the bars
    ``train_start(t) .. t`` (``train_window`` bars, or all of them when None),
    with the last ``horizon`` samples purged so every target ends <= t.
    Whether a bar retrains depends on its index only, so event-driven (``next``)
    and batched (``once``) engines follow the same schedule.

    >>> s = FoldSchedule(lookback=20, min_train=100, retrain_every=21)
    >>> s.fold_bars(160)
    [99, 120, 141]
    >>> s.fold_bar_for(130), s.fold_index(130), s.fold_bar(2)
    (120, 1, 141)
    """

    NAMES = ("lookback", "min_train", "retrain_every", "train_window", "horizon", "validation_split")

    def _check(self) -> None:
        need = self.lookback + self.horizon + min_samples(self.validation_split)
        if self.min_train < need:
            raise ConfigError(
                f"min_train={self.min_train} leaves too few training windows for lookback={self.lookback} and "
                f"horizon={self.horizon}; use min_train >= {need}"
            )
        if self.train_window is not None and self.train_window < need:
            raise ConfigError(
                f"train_window={self.train_window} leaves too few training windows for lookback={self.lookback} "
                f"and horizon={self.horizon}; use train_window >= {need} or None (expanding)"
            )

    @property
    def first_fold_bar(self) -> int:
        return self.min_train - 1

    def fold_index(self, bar: int) -> int | None:
        """Index of the fold whose model forecasts ``bar`` (None before the first fold)."""
        if bar < self.first_fold_bar:
            return None
        return (bar - self.first_fold_bar) // self.retrain_every

    def fold_bar(self, k: int) -> int:
        """The bar fold ``k`` trains at."""
        return self.first_fold_bar + k * self.retrain_every

    def fold_bar_for(self, bar: int) -> int | None:
        k = self.fold_index(bar)
        return None if k is None else self.fold_bar(k)

    def is_fold_bar(self, bar: int) -> bool:
        return self.fold_bar_for(bar) == bar

    def fold_bars(self, n_bars: int) -> list[int]:
        return list(range(self.first_fold_bar, n_bars, self.retrain_every))

    def train_start(self, bar: int) -> int:
        return 0 if self.train_window is None else max(0, bar - self.train_window + 1)

    def sample_bars(self, bar: int) -> np.ndarray:
        """End bars of the training windows of the fold at ``bar``: each window's returns lie
        inside the fold's training range and its target ends <= ``bar`` (purged)."""
        return np.arange(self.train_start(bar) + self.lookback, bar - self.horizon + 1)

