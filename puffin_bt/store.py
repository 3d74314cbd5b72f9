"""A forecast store: walk-forward forecasts on disk, keyed by a fingerprint of the data and
the complete model configuration.

A backtest that only changes thresholds, sizing, commission or cash finds its
forecasts here instead of retraining. Entries are ``.npz`` files (arrays plus a
JSON string, loaded with ``allow_pickle=False``) written atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from ._version import __version__
from .errors import ConfigError
from .files import atomic_write_bytes, default_cache_dir
from .walkforward import FoldRecord, WalkForward

# Bump when a change to puffin_bt changes the forecasts themselves: entries made by other code
# must not be read back as if this code had computed them.
STORE_VERSION = 3  # 3: flat input windows forecast a zero return


def fingerprint(walk: WalkForward, closes: np.ndarray, dates: np.ndarray | None = None) -> str:
    """SHA-256 over the closes (and bar dates), the model config, the schedule, epochs and device
    type, and the versions of the store format, puffin_bt and torch (a new release of either may
    compute different numbers, so its forecasts are computed afresh, not read from an old run's)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(closes, dtype=np.float64).tobytes())
    if dates is not None:
        h.update(np.ascontiguousarray(dates, dtype=np.float64).tobytes())
    spec = {
        "version": STORE_VERSION,
        "config": walk.config.to_dict(),
        "schedule": walk.schedule.to_dict(),
        "epochs": walk.epochs,
        "refit_epochs": walk.refit_epochs,
        "device": walk.device.type,
        "puffin_bt": __version__,
        "torch": torch.__version__,
    }
    h.update(json.dumps(spec, sort_keys=True).encode())
    return h.hexdigest()


def _valid(preds: np.ndarray, folds: list[FoldRecord], length: int | None) -> bool:
    """A stored entry as the walk-forward writes it: 1-D, finite from the first fold bar on, folds in
    order. A damaged entry must be recomputed, never served (NaN forecasts were served as a hit)."""
    if preds.ndim != 1 or (length is not None and len(preds) != length):
        return False
    bars = [f.bar for f in folds]
    if not folds or bars != sorted(bars) or not 0 <= bars[0] < len(preds):
        return False
    return bool(np.isfinite(preds[bars[0]:]).all())


class ForecastStore:
    """Forecasts on disk under ``root/forecasts``; ``ForecastStore(None)`` uses the user cache dir.
    ``ForecastStore(memory=True)`` keeps them in this process only (a run that was asked not to
    store anything still hands its parallel workers' forecasts to Backtrader through one).

    >>> store = ForecastStore("/tmp/puffin-store-doctest")
    >>> store.root.name
    'forecasts'
    """

    def __init__(self, root=None, memory: bool = False) -> None:
        self.memory = bool(memory)
        self._entries: dict = {}
        self.hits = 0
        self.misses = 0
        if self.memory:
            self.root = None
            return
        if root is None:
            root = default_cache_dir()
        base = Path(root)
        if base.exists() and not base.is_dir():
            raise ConfigError(f"forecast store location {str(base)!r} is a file; pass a folder (--cache-dir)")
        self.root = base / "forecasts"

    def path_for(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def load(self, key: str, length: int | None = None) -> tuple[np.ndarray, list[FoldRecord]] | None:
        """The stored forecasts and folds, or None if absent, unreadable or not a valid entry (then
        they are recomputed): one row of ``length`` forecasts (when given), finite from the first
        fold bar on, fold records in order."""
        if self.memory:
            hit = self._entries.get(key)
        else:
            path = self.path_for(key)
            try:
                with np.load(path, allow_pickle=False) as blob:
                    preds = np.array(blob["pred_log_return"], dtype=np.float64)
                    folds = [FoldRecord(**f) for f in json.loads(str(blob["folds_json"]))]
            except FileNotFoundError:
                return None
            except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError):
                return None  # a torn or foreign file, a folder: a miss; the entry is rewritten atomically
            hit = preds, folds
        if hit is None or not _valid(*hit, length):
            return None
        return hit

    def save(self, key: str, preds: np.ndarray, folds: list[FoldRecord]) -> Path | None:
        if self.memory:
            self._entries[key] = (np.array(preds, dtype=np.float64), list(folds))
            return None
        self.root.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, pred_log_return=np.asarray(preds, dtype=np.float64),
                 folds_json=np.array(json.dumps([f.to_dict() for f in folds])))
        path = self.path_for(key)
        if path.is_dir():  # something else sits at the entry's name: keep it, serve these forecasts uncached
            warnings.warn(f"forecast store entry {str(path)!r} is a folder; these forecasts are not cached until "
                          "it is removed", stacklevel=2)
            return None
        atomic_write_bytes(path, buf.getvalue())
        return path

    def forecasts(self, walk: WalkForward, closes: np.ndarray, dates=None, date_numbers=None) -> np.ndarray:
        """Forecasts for every bar of ``closes``: from the store (``walk`` adopts the stored folds), or
        computed by ``walk`` and stored."""
        key = fingerprint(walk, closes, date_numbers)
        hit = self.load(key, len(closes))
        if hit is not None:
            self.hits += 1
            preds, folds = hit
            walk.restore(folds)
            return preds
        self.misses += 1
        preds = walk.forecast_range(closes, 0, len(closes), dates)
        self.save(key, preds, walk.folds)
        return preds

    def clear(self) -> int:
        """Delete every stored entry, and the temp files killed writers left behind
        (``.<key>.npz.<random>.tmp``); returns how many entries were removed."""
        removed = len(self._entries)
        self._entries.clear()
        if self.root is not None and self.root.is_dir():
            for path in self.root.glob("*.npz"):
                path.unlink(missing_ok=True)
                removed += 1
            for path in self.root.glob(".*.tmp"):
                path.unlink(missing_ok=True)
        return removed
