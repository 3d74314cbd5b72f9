"""Progress bars (tqdm) over the folds of every ticker, or over tickers when folds run on a cluster."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from ..schedule import FoldSchedule

__all__ = ["FoldBar", "TickerBar", "fold_progress_bar"]


class FoldBar:
    """A tqdm bar over every fold of every ticker, showing the current fold's loss."""

    def __init__(self, total: int, schedule=None) -> None:
        from tqdm.auto import tqdm

        self.schedule = schedule
        self.bar = tqdm(total=total, unit="fold", desc="walk-forward", dynamic_ncols=True)

    def on_fold(self, ticker: str, record) -> None:
        date = "" if record.date is None else f" {str(record.date)[:10]}"  # a str when it came from a worker
        self.bar.set_postfix_str(f"{ticker}{date} val_loss={record.val_loss:.3f}")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class TickerBar:
    """A tqdm bar over tickers for parallel forecasting (folds run inside the workers)."""

    def __init__(self, total: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="ticker", desc="forecasts", dynamic_ncols=True)

    def on_done(self, ticker: str, status: str) -> None:
        self.bar.set_postfix_str(f"{ticker}: {status[:60]}")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def fold_progress_bar(frames: Mapping[str, pd.DataFrame], forecast_options: dict) -> FoldBar:
    """A bar over every fold the walk-forwards of ``frames`` will train (one global model: the folds of the
    union calendar)."""
    schedule = FoldSchedule(**{name: forecast_options[name] for name in FoldSchedule.NAMES if name in forecast_options})
    if forecast_options.get("scope") == "global":
        calendar = pd.DatetimeIndex(sorted(set().union(*(df.index for df in frames.values()))))
        return FoldBar(len(schedule.fold_bars(len(calendar))), schedule)
    return FoldBar(sum(len(schedule.fold_bars(len(df))) for df in frames.values()), schedule)
