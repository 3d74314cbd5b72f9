"""Walk-forward retraining without any engine: the causal fold runner (``WalkForward``).

A fold trained at bar t sees ``closes[:t+1]`` only and uses samples whose target
ends at or before t; its model then forecasts bars t .. t+retrain_every-1, each
from the window of returns ending at that bar. The Backtrader indicators are thin
adapters over ``WalkForward``; ``walk_forward`` runs it on a plain array.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from . import fitting, foldpool
from .batched import ENGINES, bytes_per_model, require_memory
from .errors import ConfigError, DataError
from .fitting import fold_data, new_fold_net, predict_log_returns, predict_windows, train_network
from .foldpool import FoldPool, resolve_fold_workers
from .options import OPTIONS, ModelConfig, resolve
from .schedule import FoldSchedule
from .training import resolve_device, torch_threads
from .windows import as_prices, bad_prices, check_prices, returns_of, split_train_val, window_inputs


@dataclass
class FoldRecord:
    """What happened in one fold, for reports and plots."""

    index: int
    bar: int
    train_start: int
    n_train: int
    n_val: int
    epochs_run: int
    warm_start: bool
    train_loss: float
    val_loss: float
    best_epoch: int | None
    seconds: float
    date: object = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["date"] = None if self.date is None else str(self.date)
        return d


@dataclass
class WalkForwardResult:
    """Forecasts for every bar of a series (NaN where no fold had been trained yet)."""

    pred_log_return: np.ndarray
    folds: list[FoldRecord] = field(default_factory=list)

    @property
    def pred_return(self) -> np.ndarray:
        """Predicted simple return over the next ``horizon`` bars."""
        return np.expm1(self.pred_log_return)


class WalkForward:
    """Stateful fold runner: trains folds in order and forecasts with the current one.

    Feed it growing histories (``advance``) or a whole array (``forecast_range``);
    both call ``train_fold`` with exactly ``closes[:t+1]`` for each fold bar t,
    so nothing after t can reach the fold. ``refit_epochs`` continues training
    from the previous fold's weights (warm start); None retrains from scratch.
    ``threads``: torch intra-op threads; ``fold_workers``: processes that train cold
    folds side by side in ``forecast_range`` (``"auto"``: one per core on Linux CPU,
    see ``foldpool``; 1 or None: this process only). Results do not depend on it.

    >>> import numpy as np
    >>> closes = 100 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.01, 160)))
    >>> wf = WalkForward(ModelConfig(hidden_dim=4, num_layers=1, lookback=10),
    ...                  FoldSchedule(lookback=10, min_train=60, retrain_every=50), epochs=1)
    >>> res = wf.run(closes)
    >>> len(res.folds), int(np.isnan(res.pred_log_return).sum())
    (3, 59)
    """

    def __init__(
        self,
        config: ModelConfig,
        schedule: FoldSchedule,
        epochs: int = 10,
        refit_epochs: int | None = None,
        device: str | torch.device = "auto",
        on_fold: Callable[[FoldRecord], None] | None = None,
        threads: int | None = 1,
        fold_workers: int | str | None = "auto",
    ) -> None:
        if schedule.lookback != config.lookback or schedule.horizon != config.horizon:
            raise ConfigError(
                f"schedule (lookback={schedule.lookback}, horizon={schedule.horizon}) and model config "
                f"(lookback={config.lookback}, horizon={config.horizon}) disagree; build both from the same values"
            )
        self.config = config
        self.schedule = schedule
        self.epochs = OPTIONS["epochs"].check(epochs)
        self.refit_epochs = OPTIONS["refit_epochs"].check(refit_epochs)
        self.device = resolve_device(device)
        self.threads = OPTIONS["threads"].check(threads)
        require_memory(config, self.device, schedule.train_window)  # before any fold allocates it
        self.fold_workers = OPTIONS["fold_workers"].check(fold_workers)
        self.on_fold = on_fold
        self.net: torch.nn.Module | None = None
        self.scaler = None
        self.folds: list[FoldRecord] = []
        # Folds trained from scratch are independent models: they are trained with the batched
        # engine (together when several are due at once, e.g. in ``forecast_range``) and wait
        # here until their turn. A fold's result does not depend on its batch.
        self.batched = config.cell in ENGINES
        self._ready: dict[int, tuple] = {}
        self._pool: FoldPool | None = None
        self.pooled_batches = 0  # cold batches trained in worker processes (diagnostics, tests)
        # Wall time spent training folds, batches trained side by side counted once (a fold's
        # ``seconds`` is its own share of its batch, whichever process trained it).
        self.training_seconds = 0.0
        self.inference_seconds = 0.0  # wall time in forecast passes (window preparation included)

    @property
    def current_fold(self) -> int:
        return len(self.folds) - 1

    def restore(self, folds: list[FoldRecord]) -> None:
        """Adopt the fold records of forecasts computed earlier (the forecast store's), reporting each
        to ``on_fold`` as if trained now; no network is restored, so only those forecasts can be used."""
        self.folds = list(folds)
        if self.on_fold is not None:
            for record in self.folds:
                self.on_fold(record)

    def train_fold(self, history: np.ndarray, date=None) -> FoldRecord:
        """Train the fold at bar ``len(history) - 1`` on ``history`` (closes up to that bar)."""
        with torch_threads(self.threads):
            return self._train_fold(history, date)

    def _train_fold(self, history: np.ndarray, date=None) -> FoldRecord:
        bar = len(history) - 1
        k = self.schedule.fold_index(bar)
        if not self.schedule.is_fold_bar(bar) or k != len(self.folds):
            raise ConfigError(
                f"fold at bar {bar} is out of order (next expected fold index {len(self.folds)}); "
                "folds must be trained in schedule order"
            )
        cfg = self.config
        started = time.perf_counter()
        warm = self.refit_epochs is not None and self.net is not None
        sample_bars = self.schedule.sample_bars(bar)
        extra = 0.0
        if not warm and self.batched:
            if k not in self._ready:
                self._train_cold([(k, history)])
            self.net, self.scaler, hist, extra = self._ready.pop(k)
            started = time.perf_counter()
        elif warm and cfg.cell in WARM_ON_ENGINE:
            data = fold_data(cfg, history, sample_bars, self.device)
            hist = fitting.train_networks_together([self.net], cfg, [data], self.refit_epochs, self.device, [cfg.seed + k])[0]
            self.scaler = data.scaler
        else:
            if not warm:
                self.net = new_fold_net(cfg, k)
            epochs = self.refit_epochs if warm else self.epochs
            self.scaler, hist = train_network(self.net, cfg, history, sample_bars, epochs, self.device, cfg.seed + k)
        if warm or not self.batched:
            self.training_seconds += time.perf_counter() - started
        n_val = len(split_train_val(sample_bars, cfg.validation_split)[1])
        val = hist["val_loss"]
        best = hist.get("best_epoch")
        record = FoldRecord(
            index=k,
            bar=bar,
            train_start=self.schedule.train_start(bar),
            n_train=len(sample_bars) - n_val,
            n_val=n_val,
            epochs_run=len(hist["train_loss"]),
            warm_start=warm,
            train_loss=float(hist["train_loss"][-1]) if hist["train_loss"] else math.nan,
            val_loss=float(val[best] if best is not None else (val[-1] if val else math.nan)),
            best_epoch=best,
            seconds=extra + time.perf_counter() - started,
            date=date,
        )
        self.folds.append(record)
        if self.on_fold is not None:
            self.on_fold(record)
        return record

    def _train_cold(self, folds: list[tuple[int, np.ndarray]]) -> None:
        """Train from scratch the folds given as (index, closes up to the fold bar), together.

        Folds with equal sample counts share batches of up to ``MAX_BATCH`` models (fewer
        when their scratch memory would pass ``BATCH_MEMORY``). Inside ``forecast_range`` the
        batches go to a process pool of ``fold_workers`` when there are several (a fold's
        result does not depend on its batch or its process); each fold's seconds are its own
        preparation plus its share of its batch's training.
        """
        started = time.perf_counter()
        cfg, s = self.config, self.schedule
        groups: dict[int, list[tuple[int, np.ndarray]]] = {}
        for k, history in folds:  # equal sample counts give equal tensor shapes
            groups.setdefault(len(s.sample_bars(len(history) - 1)), []).append((k, history))
        max_batch, _ = self._batch_size_and_bytes()
        pool = self._pool
        spread = 1 if pool is None else pool.workers
        batches = []
        for members in groups.values():
            n_batches = max(-(-len(members) // max_batch), min(spread, len(members)))
            size = -(-len(members) // n_batches)  # even batches: 12 folds train as 6 + 6, not 8 + 4
            batches += [members[i:i + size] for i in range(0, len(members), size)]
        if pool is not None and len(batches) > 1:
            results = pool.train(cfg, s, self.epochs, batches)
            self.pooled_batches += len(batches)
        else:
            results = [fitting.train_cold_batch(cfg, s, self.epochs, self.device, batch) for batch in batches]
        for batch in results:
            for k, net, scaler, hist, seconds in batch:
                self._ready[k] = (net, scaler, hist, seconds)
        self.training_seconds += time.perf_counter() - started

    def forecast_range(self, closes: np.ndarray, start: int, end: int, dates=None,
                       ahead: int | None = None) -> np.ndarray:
        """Predicted log returns for bars ``start .. end-1`` of ``closes`` (NaN before the first fold).

        Trains every fold those bars need, in order, each on ``closes[:fold_bar+1]``;
        then one batched forward pass per fold. ``ahead``: cold folds due before that bar
        may be trained now, together with these (the indicator's ``oncestart`` asks for
        one bar, then ``once`` for the rest); each still sees only its own history.
        """
        with torch_threads(self.threads), self._fold_pool():
            return self._forecast_range(closes, start, end, dates, ahead)

    @contextlib.contextmanager
    def _fold_pool(self):
        """The shared process pool for this ``forecast_range`` call's cold batches (``foldpool``)."""
        workers = 1
        if self.batched and self.refit_epochs is None and self._pool is None:
            workers = resolve_fold_workers(self.fold_workers, self.device, self.threads, self._worker_bytes())
        if workers <= 1:
            yield
            return
        self._pool = foldpool.acquire(workers, self.threads)
        try:
            yield
        except BaseException:  # an error or Ctrl-C may leave batches running: start afresh next time
            pool, self._pool = self._pool, None
            foldpool.discard(pool)
            raise
        pool, self._pool = self._pool, None
        foldpool.release(pool)

    def _batch_size_and_bytes(self) -> tuple[int, int]:
        """Most cold folds trained together (``MAX_BATCH``, fewer when their training scratch
        would pass ``BATCH_MEMORY``) and one model's scratch bytes."""
        cfg = self.config
        per_model = bytes_per_model(cfg.hidden_dim, cfg.num_layers, cfg.lookback, cfg.batch_size)
        return max(1, min(MAX_BATCH, BATCH_MEMORY // per_model)), per_model

    def _worker_bytes(self) -> int:
        """A fold worker's memory beyond what it shares with this process: one full batch's
        training scratch plus 64 MiB of its own (measured: bench/README.md, "Design measurements")."""
        max_batch, per_model = self._batch_size_and_bytes()
        return max_batch * per_model + 64 * 2**20

    def _forecast_range(self, closes: np.ndarray, start: int, end: int, dates=None,
                        ahead: int | None = None) -> np.ndarray:
        closes = np.asarray(closes, dtype=np.float64)
        end = min(end, len(closes))
        out = np.full(max(0, end - start), np.nan)
        s = self.schedule
        bar = max(start, s.first_fold_bar)
        horizon = end if ahead is None else max(end, min(ahead, len(closes)))
        last_due = s.fold_index(horizon - 1) if bar < end else -1
        bad_at = bad_prices(closes)  # found once, not per fold
        lookback = self.config.lookback
        windows = None
        if bar < end:  # the input window of every bar asked for, each ending at its bar, built at once
            t0 = time.perf_counter()
            with np.errstate(divide="ignore", invalid="ignore"):  # bad closes raise below, before use
                windows = window_inputs(returns_of(closes[:end]), np.arange(bar, end), lookback)
            self.inference_seconds += time.perf_counter() - t0
        first = bar

        def clean(lo: int, hi: int) -> np.ndarray:  # closes[lo:hi], or the DataError naming the bad ones
            i = int(np.searchsorted(bad_at, lo))
            if i < len(bad_at) and bad_at[i] < hi:
                check_prices(closes[lo:hi], f"closes up to bar {hi - 1}", lo)
            return closes[lo:hi]

        while bar < end:
            k = s.fold_index(bar)
            fold_bar = s.fold_bar(k)
            while len(self.folds) <= k:
                nxt = len(self.folds)
                if self.batched and self.refit_epochs is None and nxt not in self._ready:
                    # Every fold up to last_due is known now: train the next PREFETCH of them
                    # together (each on its own history), so progress still moves every few batches.
                    prefetch = PREFETCH if self._pool is None else max(PREFETCH, self._pool.workers * MAX_BATCH // 2)
                    due = range(nxt, min(last_due, nxt + prefetch - 1) + 1)
                    self._train_cold([(j, clean(0, s.fold_bar(j) + 1)) for j in due])
                fb = s.fold_bar(nxt)
                history = clean(0, fb + 1)
                self.train_fold(history, None if dates is None else dates[fb])
            if k != self.current_fold:
                raise ConfigError(
                    f"bar {bar} needs fold {k} but the walk-forward is at fold {self.current_fold}; "
                    "forecast bars in increasing order"
                )
            stop = min(end, fold_bar + s.retrain_every)
            clean(bar - lookback, stop)
            t0 = time.perf_counter()
            out[bar - start: stop - start] = predict_windows(self.net, self.scaler, windows[bar - first: stop - first],
                                                             self.device)
            self.inference_seconds += time.perf_counter() - t0
            bar = stop
        return out

    def advance(self, history: np.ndarray, date=None) -> float:
        """Event-driven step: ``history`` is the closes up to the current bar t (inclusive).

        Retrains when t is a fold bar, then forecasts bar t from its last ``lookback + 1`` closes.
        """
        history = np.asarray(history, dtype=np.float64)
        bar = len(history) - 1
        if bar < self.schedule.first_fold_bar:
            return math.nan
        if self.schedule.is_fold_bar(bar):
            self.train_fold(check_prices(history, f"closes up to bar {bar}"), date)
        return self.forecast_tail(history[-(self.config.lookback + 1):])

    def forecast_tail(self, tail: np.ndarray) -> float:
        """Forecast from the current fold for the bar that ends ``tail`` (its last ``lookback + 1`` closes)."""
        if self.net is None:
            raise ConfigError("no fold has been trained yet; call train_fold (or advance) at the first fold bar")
        lookback = self.config.lookback
        tail = check_prices(np.asarray(tail, dtype=np.float64)[-(lookback + 1):], "the last closes")
        t0 = time.perf_counter()
        with torch_threads(self.threads):
            pred = float(predict_log_returns(self.net, self.scaler, tail, [lookback], lookback, self.device)[0])
        self.inference_seconds += time.perf_counter() - t0
        return pred

    def run(self, closes, dates=None) -> WalkForwardResult:
        """Walk forward over a whole series of closes (oldest first)."""
        closes = as_prices(closes, name="closes", min_length=self.schedule.min_train)
        preds = self.forecast_range(closes, 0, len(closes), dates)
        return WalkForwardResult(preds, list(self.folds))


# Cold folds trained together at most: past ~8 the working set leaves the caches (bench/README.md,
# "Design measurements"). Results do not depend on it (the batched engine is exact per model).
MAX_BATCH = 8
# Warm refits continue one model, so they train one at a time: on the batched engine where it beat
# the nn module at M = 1 (GRU), on nn.LSTM's fused oneDNN kernel otherwise (bench/README.md).
WARM_ON_ENGINE = {"gru"}
PREFETCH = 2 * MAX_BATCH  # cold folds trained ahead at a time in forecast_range (progress granularity)
BATCH_MEMORY = 512 * 2**20  # and at most this much training scratch memory per batch (big nets train fewer at once)


def make_walk_forward(cell: str = "lstm", on_fold: Callable[[FoldRecord], None] | None = None,
                      **options) -> WalkForward:
    """A ``WalkForward`` from flat walk-forward options (``options.forecast_defaults()`` fill the gaps);
    unknown names and bad values raise ConfigError naming them.

    >>> make_walk_forward("gru", hidden_dim=8, retrain_every=5).schedule.retrain_every
    5
    """
    p = resolve(options, ["forecast"], "walk-forward")
    config = ModelConfig(cell=cell, **{name: p[name] for name in ModelConfig.NAMES if name != "cell"})
    schedule = FoldSchedule(**{name: p[name] for name in FoldSchedule.NAMES})
    return WalkForward(config, schedule, p["epochs"], p["refit_epochs"], p["device"], on_fold, p["threads"],
                       p["fold_workers"])


def require_history(name: str, n_bars: int, min_train: int) -> None:
    """A series must reach the first fold, or it would never get a forecast."""
    if n_bars < min_train:
        raise DataError(
            f"{name} has {n_bars} bars but the first fold needs min_train={min_train}; "
            f"lower min_train or load more history"
        )


def walk_forward(closes, *, cell: str = "lstm", on_fold: Callable[[FoldRecord], None] | None = None,
                 **options) -> WalkForwardResult:
    """Walk-forward forecasts for a plain array of closes, no engine involved.

    ``options`` are the walk-forward options (lookback, retrain_every, ...; ``puffin_bt.options``).

    >>> import numpy as np
    >>> closes = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 150)))
    >>> res = walk_forward(closes, lookback=10, min_train=60, retrain_every=30, epochs=1,
    ...                    hidden_dim=4, num_layers=1)
    >>> res.pred_return.shape, len(res.folds)
    ((150,), 4)
    """
    return make_walk_forward(cell, on_fold, **options).run(closes)
