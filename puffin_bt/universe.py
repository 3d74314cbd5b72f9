"""Many tickers' walk-forwards in lockstep: fold k of every ticker trained as one batched computation.

Walk-forwards with the same options retrain at the same bar positions (fold k at bar
``min_train - 1 + k * retrain_every`` of each series, whatever its first date), so fold k has tensors of one
shape for every ticker long enough to reach it. ``forecast_together`` steps such walk-forwards fold by fold:
the folds that train on the batched engine (cold folds, ensembles, warm GRUs: ``WalkForward._on_engine``)
train together, at most ``_sizing.cold_batch`` models at a time, each continuing its own weights; then
each walk-forward forecasts its own bars of those folds. A model's result on the engine does not depend on
the models it trains with, so every ticker's forecasts are bit for bit those of its own walk-forward
(tested); a warm refit of one LSTM trains on nn.LSTM alone, as it does there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ._sizing import cold_batch
from .walkforward import WalkForward, fitting, torch_threads
from .windows import bad_prices, check_prices

__all__ = ["forecast_together"]


@dataclass
class _Member:
    walk: WalkForward
    closes: np.ndarray
    dates: object
    features: np.ndarray | None
    lines: np.ndarray = field(init=False)
    bad_at: np.ndarray = field(init=False)
    n_folds: int = field(init=False)
    done: int = 0  # bars forecast so far
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.lines = np.full((len(self.closes), 4), np.nan)
        self.bad_at = bad_prices(self.closes)
        self.n_folds = len(self.walk.schedule.fold_bars(len(self.closes)))

    @property
    def active(self) -> bool:
        return self.error is None and len(self.walk.folds) < self.n_folds

    def history(self, k: int) -> np.ndarray:
        """Closes up to fold k's bar, or the DataError of the walk-forward's own check if one is unusable."""
        bar = self.walk.schedule.fold_bar(k)
        if len(self.bad_at) and self.bad_at[0] <= bar:
            check_prices(self.closes[: bar + 1], f"closes up to bar {bar}", 0)
        return self.closes[: bar + 1]

    def rows(self, k: int) -> np.ndarray | None:
        return None if self.features is None else self.features[: self.walk.schedule.fold_bar(k) + 1]


def forecast_together(walks: list[WalkForward], closes: list[np.ndarray], dates: list | None = None,
                      features: list[np.ndarray | None] | None = None) -> list[np.ndarray | BaseException]:
    """Forecast lines (bars, 4: ``intervals.LINES``) of every bar of each series, each by its own fresh walk-forward
    (``walks[i]`` on ``closes[i]``, ``dates[i]``, ``features[i]``), their batched folds trained together. A
    series that fails (bad prices, a feature gap) gets its exception in place of lines; the others go on.

    >>> import numpy as np
    >>> from puffin_bt.walkforward import make_walk_forward
    >>> rng = np.random.default_rng(0)
    >>> series = [100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))) for n in (120, 160)]
    >>> options = dict(lookback=5, min_train=60, retrain_every=30, epochs=1, hidden_dim=4, num_layers=1)
    >>> out = forecast_together([make_walk_forward("gru", **options) for _ in series], series)
    >>> [int(np.isfinite(lines[:, 0]).sum()) for lines in out]
    [61, 101]
    """
    members = [_Member(walk, np.asarray(c, dtype=np.float64), None if dates is None else dates[i],
                       None if features is None or features[i] is None else np.asarray(features[i], dtype=np.float64))
               for i, (walk, c) in enumerate(zip(walks, closes))]
    with torch_threads(walks[0].fit.threads if walks else 1):
        while True:
            active = [m for m in members if m.active]
            if not active:
                break
            _train_round(active)
            for m in active:
                if m.error is None:
                    _forecast(m)
    return [m.error if m.error is not None else m.lines for m in members]


def _train_round(members: list[_Member]) -> None:
    """Train the next folds of ``members`` that go on the engine, together; each walk-forward adopts its own.
    Walk-forwards that refit from scratch take several folds ahead (they are independent), so the batches
    stay full however few tickers there are."""
    jobs = []  # (member, job)
    cold_ahead = max(1, -(-_max_models(members[0].walk) // (len(members) * members[0].walk.config.trained_members)))
    for m in members:
        walk = m.walk
        if not walk._on_engine():
            continue
        next_k = len(walk.folds)
        ahead = cold_ahead if walk.fit.refit_epochs is None else 1
        try:
            jobs.append((m, walk._fold_job(m.history(next_k), m.rows(next_k))))
            for k in range(next_k + 1, min(m.n_folds, next_k + ahead)):
                jobs.append((m, fitting.cold_job(walk.config, walk.schedule, walk.fit.epochs, walk.device, k,
                                                 m.history(k), m.rows(k))))
        except Exception as exc:  # noqa: BLE001 - this ticker's data; the others go on
            m.error = exc
    batches: dict = {}
    for m, job in jobs:
        if m.error is None:
            key = (repr(m.walk.config.to_dict()), str(m.walk.device), m.walk.interval is not None, job.batch_key)
            batches.setdefault(key, []).append((m, job))
    for group in batches.values():
        walk = group[0][0].walk
        limit = _max_models(walk)
        n_models = sum(len(job.nets) for _, job in group)
        for batch in fitting.even_batches(group, -(-n_models // limit)):
            started = time.perf_counter()
            try:
                results = fitting.train_jobs(walk.config, [job for _, job in batch], walk.device,
                                             walk.interval is not None)
            except Exception as exc:  # noqa: BLE001 - fails the tickers of this batch only
                for m, _ in batch:
                    m.error = exc
                continue
            share = (time.perf_counter() - started) / len(batch)
            for (m, job), (hists, seconds, scores) in zip(batch, results):
                m.walk._adopt(job, hists, seconds, scores)
                m.walk.training_seconds += share


def _forecast(m: _Member) -> None:
    """Forecast the member's bars up to the last fold it has adopted: each fold's bars in one pass, as in one
    walk-forward. A walk-forward whose next fold trains on nn.LSTM (a warm refit of one LSTM, and so are all
    its later folds) has nothing more to batch: it goes on alone to the end."""
    walk, s = m.walk, m.walk.schedule
    last = len(walk.folds) + walk._adopted  # folds trained after this call
    end = len(m.closes) if last >= m.n_folds or not walk._adopted else s.fold_bar(last)
    try:
        m.lines[m.done:end] = walk.forecast_lines(m.closes, m.done, end, m.dates, features=m.features)
    except Exception as exc:  # noqa: BLE001 - this ticker's data; the others go on
        m.error = exc
    m.done = end


def _max_models(walk: WalkForward) -> int:
    return cold_batch(walk.config)[0]
