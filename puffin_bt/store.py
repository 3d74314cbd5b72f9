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

from ._lazy import torch_version
from ._version import __version__
from .errors import ConfigError
from .files import atomic_write_bytes, default_cache_dir, warn_cache_unwritable
from .intervals import LINES
from .options import keyed_values
from .walkforward import FoldRecord, WalkForward

__all__ = ["ForecastStore", "as_lines", "fingerprint"]

# Bump when a change to puffin_bt changes the forecasts themselves: entries made by other code
# must not be read back as if this code had computed them.
STORE_VERSION = 4  # 3: flat input windows forecast a zero return; 4: entries hold the forecast lines


def fingerprint(walk, closes: np.ndarray, dates: np.ndarray | None = None,
                features: np.ndarray | None = None, device: str | None = None) -> str:
    """SHA-256 over the closes (and bar dates, and feature values), the model family and every option that
    changes forecasts (``keyed_options``: exactly those flagged in the registry), the device type and the
    versions of the store format, puffin_bt and torch (a new release of either may compute different numbers,
    so its forecasts are computed afresh, not read from an old run's). ``walk``: a ``WalkForward`` or
    ``GlobalWalkForward``. ``device``: the device type that computes the forecasts (default: the one ``walk``
    resolved; a worker elsewhere may have used another)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(closes, dtype=np.float64).tobytes())
    if dates is not None:
        h.update(np.ascontiguousarray(dates, dtype=np.float64).tobytes())
    if features is not None:
        h.update(np.ascontiguousarray(features, dtype=np.float64).tobytes())
    spec = {
        "version": STORE_VERSION,
        "options": keyed_options(walk),
        "device": device or walk.device_type,
        "puffin_bt": __version__,
        "torch": torch_version(),
    }
    h.update(json.dumps(spec, sort_keys=True).encode())
    return h.hexdigest()


def keyed_options(walk) -> dict:
    """The walk-forward's model family and the values of the options that change forecasts
    (``options.keyed_names``), read from its option sets; the features with the names of the caller's inputs."""
    sets = [walk.config, walk.schedule, walk.fit, walk.uncertainty]
    values = {name: value for option_set in sets for name, value in option_set.to_dict().items()}
    return {"cell": walk.config.cell, **keyed_values(values)}


DEVICE_TYPES = ("cuda", "mps", "cpu")


def readable_devices(walk: WalkForward) -> list[str]:
    """The device types whose stored forecasts ``walk`` takes: its own; with ``device="auto"`` any of them, its
    own first ("auto" asks for whatever device there is: a run on a machine without a GPU reads the forecasts a
    GPU worker of the cluster stored, under its CUDA key). An explicit device reads only its own entries."""
    own = walk.device_type
    if not walk.auto_device:
        return [own]
    return [own] + [d for d in DEVICE_TYPES if d != own]


def as_lines(values: np.ndarray) -> np.ndarray:
    """Forecasts as lines (bars, 4: ``intervals.LINES``): predicted log returns alone get NaN for the rest."""
    if values.ndim == 2:
        return values
    lines = np.full((len(values), len(LINES)), np.nan)
    lines[:, 0] = values
    return lines


def _valid(lines: np.ndarray, folds: list[FoldRecord], length: int | None, finite_from_first_fold: bool) -> bool:
    """A stored entry as the walk-forward writes it: forecast lines (bars, 4), the forecasts finite from the
    first fold bar on (a global model's folds are calendar positions: not checked there), folds in order.
    A damaged entry must be recomputed, never served (NaN forecasts were served as a hit)."""
    if lines.ndim != 2 or lines.shape[1] != len(LINES) or (length is not None and len(lines) != length):
        return False
    bars = [f.bar for f in folds]
    if not folds or bars != sorted(bars):
        return False
    if not finite_from_first_fold:
        return True
    return 0 <= bars[0] < len(lines) and bool(np.isfinite(lines[bars[0]:, 0]).all())


def global_keys(walk, series) -> dict[str, str]:
    """Store keys of a global model's forecasts, one per ticker, each covering every ticker's data (a change
    to any ticker's bars is a miss for all of them)."""
    h = hashlib.sha256(b"global")
    for s in series:
        h.update(s.name.encode())
        h.update(fingerprint(walk, s.closes, s.dates, s.features).encode())
    return {s.name: hashlib.sha256((h.hexdigest() + s.name).encode()).hexdigest() for s in series}


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

    def load(self, key: str, length: int | None = None,
             finite_from_first_fold: bool = True) -> tuple[np.ndarray, list[FoldRecord]] | None:
        """The stored forecast lines (bars, 4: ``intervals.LINES``) and folds, or None if absent, unreadable
        or not a valid entry (then they are recomputed): ``length`` rows (when given), forecasts finite from
        the first fold bar on, fold records in order."""
        if self.memory:
            hit = self._entries.get(key)
        else:
            path = self.path_for(key)
            try:
                with np.load(path, allow_pickle=False) as blob:
                    preds = as_lines(np.array(blob["pred_log_return"], dtype=np.float64))
                    folds = [FoldRecord(**f) for f in json.loads(str(blob["folds_json"]))]
            except FileNotFoundError:
                return None
            except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError):
                return None  # a torn or foreign file, a folder: a miss; the entry is rewritten atomically
            hit = preds, folds
        if hit is None or not _valid(*hit, length, finite_from_first_fold):
            return None
        return hit

    def lookup(self, walk: WalkForward, closes: np.ndarray, date_numbers=None, features: np.ndarray | None = None):
        """``(key, entry)``: the stored forecasts of ``walk`` on this data, from any device it reads
        (``readable_devices``), or None with the key they are computed under here."""
        own = None
        for device in readable_devices(walk):
            key = fingerprint(walk, closes, date_numbers, features, device=device)
            own = own or key
            hit = self.load(key, len(closes))
            if hit is not None:
                return key, hit
        return own, None

    def save(self, key: str, preds: np.ndarray, folds: list[FoldRecord]) -> Path | None:
        """Store forecasts: the lines (bars, 4), or predicted log returns alone (bars,)."""
        preds = as_lines(np.array(preds, dtype=np.float64))
        if self.memory:
            self._entries[key] = (preds, list(folds))
            return None
        buf = io.BytesIO()
        np.savez(buf, pred_log_return=preds,
                 folds_json=np.array(json.dumps([f.to_dict() for f in folds])))
        path = self.path_for(key)
        if path.is_dir():  # something else sits at the entry's name: keep it, serve these forecasts uncached
            warnings.warn(f"forecast store entry {str(path)!r} is a folder; these forecasts are not cached until "
                          "it is removed", stacklevel=2)
            return None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, buf.getvalue())
        except OSError as exc:  # a full disk, a quota: the store is a cache, so the run carries on without it
            warn_cache_unwritable("forecast store", self.root, exc)
            return None
        return path

    def forecasts(self, walk: WalkForward, closes: np.ndarray, dates=None, date_numbers=None,
                  features: np.ndarray | None = None) -> np.ndarray:
        """Predicted log returns for every bar of ``closes``: from the store (``walk`` adopts the stored
        folds), or computed by ``walk`` and stored."""
        return self.forecast_lines(walk, closes, dates, date_numbers, features)[:, 0]

    def serve(self, walk: WalkForward, hit) -> np.ndarray:
        """The lines of a ``lookup`` hit, counted, with ``walk`` adopting the stored folds."""
        self.hits += 1
        lines, folds = hit
        walk._restore(folds)
        return lines

    def forecast_lines(self, walk: WalkForward, closes: np.ndarray, dates=None, date_numbers=None,
                       features: np.ndarray | None = None) -> np.ndarray:
        """``forecasts`` with the uncertainty lines (bars, 4: ``intervals.LINES``)."""
        key, hit = self.lookup(walk, closes, date_numbers, features)
        if hit is not None:
            return self.serve(walk, hit)
        self.misses += 1
        lines = walk.forecast_lines(closes, 0, len(closes), dates, features=features)
        self.save(key, lines, walk.folds)
        return lines

    def global_forecasts(self, walk, series, dates=None) -> dict:
        """A global model's forecasts for every ticker of ``series``: from the store when all are there (``walk``
        adopts the stored folds), else computed by ``walk.forecast_all`` and stored."""
        keys = global_keys(walk, series)
        hits = {s.name: self.load(keys[s.name], len(s.closes), finite_from_first_fold=False) for s in series}
        if all(hit is not None for hit in hits.values()):
            self.hits += len(series)
            walk.restore(next(iter(hits.values()))[1])
            return {name: hit[0] for name, hit in hits.items()}
        self.misses += len(series)
        preds = walk.forecast_all_lines(series, dates)
        for s in series:
            self.save(keys[s.name], preds[s.name], walk.folds)
        return preds

    def clear(self) -> int:
        """Delete every stored entry, the temp files killed writers left behind (``.<key>.npz.<random>.tmp``)
        and the entries' lock files (``.<key>.lock``, from optimisations); returns how many entries were removed."""
        removed = len(self._entries)
        self._entries.clear()
        if self.root is not None and self.root.is_dir():
            for path in self.root.glob("*.npz"):
                path.unlink(missing_ok=True)
                removed += 1
            for pattern in (".*.tmp", ".*.lock"):
                for path in self.root.glob(pattern):
                    path.unlink(missing_ok=True)
        return removed
