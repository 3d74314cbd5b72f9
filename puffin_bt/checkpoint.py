"""The model file format: weights as a state_dict plus JSON metadata, in one file written atomically
and read with ``torch.load(weights_only=True)`` — never unpickled.

``RNNForecaster.save`` / ``load`` (``forecaster.py``) are the public entry points.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import CheckpointError, ConfigError
from .files import atomic_write_bytes
from .models import build, state_shapes
from .options import ModelConfig
from .processes import available_memory
from .windows import Scaler

__all__ = ["Checkpoint", "read", "state_digest", "write"]

FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """What a model file holds, checked: the model configuration, its scaler, the weights, the
    estimator's hyperparameters and the training history."""

    config: ModelConfig
    scaler: Scaler
    state: dict
    params: dict
    history: dict | None
    class_name: str


def state_digest(state: dict) -> str:
    """SHA-256 over the weights (names, shapes, dtypes, bytes): detects a corrupted checkpoint."""
    h = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name]
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"state_dict entry {name!r} is not a tensor")
        h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def write(path: str | os.PathLike, class_name: str, config: ModelConfig, scaler: Scaler, state: dict,
          params: dict, history: dict | None) -> Path:
    """Write one model file atomically."""
    meta = {
        "format": FORMAT_VERSION,
        "class": class_name,
        "config": config.to_dict(),
        # "flat" only when set, "variance" only for a volatility target: return models' files as before
        "scaler": {k: v for k, v in dataclasses.asdict(scaler).items() if (k != "flat" or v) and v is not None},
        "params": {k: (str(v) if isinstance(v, torch.device) else v) for k, v in params.items()},
        "history": {k: (history or {}).get(k) for k in ("train_loss", "val_loss", "best_epoch", "stopped_epoch")},
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
    }
    path = _path(path, "save")
    state = {k: v.detach().cpu() for k, v in state.items()}
    meta["sha256"] = state_digest(state)
    buf = io.BytesIO()
    torch.save({"state_dict": state, "meta_json": json.dumps(meta)}, buf)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as exc:  # a folder at that name, a read-only folder, a full disk
        raise CheckpointError(
            f"cannot write checkpoint {str(path)!r} ({exc.strerror or type(exc).__name__}); pass a file path in a "
            "writable folder"
        ) from None
    return path


def _path(path, verb: str) -> Path:
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ConfigError(f"{verb}({path!r}): pass a file path (str or os.PathLike)")
    return Path(path)


def read(path: str | os.PathLike) -> Checkpoint:
    """Read and check a model file; any problem is a CheckpointError naming the file and the fix."""
    path = _path(path, "load")
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist; pass the path given to save()")
    if not path.is_file():  # a folder, a FIFO (would block), a device such as /dev/zero (endless)
        raise CheckpointError(f"checkpoint {str(path)!r} is not a regular file; pass the path given to save()")
    free = available_memory()
    if free is not None and path.stat().st_size > free:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is {path.stat().st_size / 2**30:.2f} GiB, more than the "
            f"{free / 2**30:.2f} GiB of memory available; load it on a machine with more memory"
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        meta = json.loads(blob["meta_json"])
        state = blob["state_dict"]
        config = ModelConfig(**meta["config"])
        saved = meta["scaler"]
        flat = saved.get("flat", False)  # files written before it existed have no "flat"
        if not isinstance(flat, bool):
            raise ValueError(f"scaler flag flat={flat!r} is not true or false")
        scaler = Scaler(float(saved["mean"]), float(saved["std"]), int(saved["horizon"]),
                        tuple(float(v) for v in saved.get("feature_mean", ())),
                        tuple(float(v) for v in saved.get("feature_std", ())), flat,
                        None if saved.get("variance") is None else float(saved["variance"]))
        stats = (scaler.mean, scaler.std, *scaler.feature_mean, *scaler.feature_std, scaler.variance or 1.0)
        if not all(math.isfinite(v) for v in stats) or min((scaler.std, *scaler.feature_std, stats[-1])) <= 0:
            raise ValueError(f"scaler statistics {saved} are not finite with std > 0")
        if len(scaler.feature_mean) != len(config.features) or len(scaler.feature_std) != len(config.features):
            raise ValueError(f"scaler has statistics for {len(scaler.feature_mean)} feature(s), the model "
                             f"{len(config.features)}")
        if scaler.horizon != config.horizon:  # the checksum covers the weights only: check what the JSON says
            raise ValueError(f"scaler horizon {scaler.horizon} differs from the model's horizon {config.horizon}")
        if not isinstance(state, dict):
            raise TypeError(f"state_dict is a {type(state).__name__}, not a dict of tensors")
        digest = state_digest(state)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} would need unpickling arbitrary objects, which puffin_bt refuses "
            f"(weights_only=True); only load files written by RNNForecaster.save ({str(exc).splitlines()[0]})"
        ) from None
    except (KeyError, IndexError, TypeError, AttributeError, ValueError, RuntimeError, EOFError, OSError,
            ConfigError) as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a puffin_bt model file or is corrupted ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); re-save it with RNNForecaster.save"
        ) from None
    expected = state_shapes(config)
    found = {k: tuple(v.shape) for k, v in state.items()}
    if found != expected:
        wrong = sorted(k for k in set(expected) | set(found) if expected.get(k) != found.get(k))
        raise CheckpointError(
            f"checkpoint {str(path)!r}: weights do not match the architecture in its metadata "
            f"({wrong[0]}: {found.get(wrong[0])} in the file, {expected.get(wrong[0])} expected); "
            "re-save it with RNNForecaster.save"
        )
    if "sha256" in meta and meta["sha256"] != digest:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupted: its weights do not match the checksum saved with them; "
            "restore the file from a backup or re-train and save again"
        )
    params = meta.get("params", {})
    return Checkpoint(config, scaler, state, dict(params) if isinstance(params, dict) else {}, meta.get("history"),
                      str(meta.get("class", "")))


def write_fold(path: str | os.PathLike, class_name: str, walk, params: dict) -> Path:
    """The current fold of a walk-forward (``walkforward.WalkForward``: its network and scaler) as a model file that
    ``RNNForecaster.load`` reads; ``params``: the estimator's hyperparameters. It also keeps what a restarted
    walk-forward needs to continue from this fold without training it again: the fold's record and its
    conformal residuals (``read_fold``)."""
    if not walk.nets:
        raise ConfigError("no fold has been trained yet, so there is no model to save; save after the first fold bar")
    if walk.config.ensemble != 1:
        raise ConfigError(f"a model file holds one network; this walk-forward forecasts with an ensemble of "
                          f"{walk.config.ensemble} (ensemble_method={walk.config.ensemble_method!r}): use ensemble=1 "
                          "to save or resume its folds")
    scores = None if walk.interval_state is None else walk.interval_state.scores
    resume = {"fold": walk.folds[-1].to_dict(), "scores": None if scores is None else [float(v) for v in scores]}
    return write(path, class_name, walk.config, walk.scaler, walk.nets[0].state_dict(),
                 {**params, "walk_forward": resume}, None)


def read_fold(path: str | os.PathLike, config: ModelConfig, device: torch.device) -> tuple:
    """A fold written by ``write_fold`` for a walk-forward of ``config``: (network on ``device``, scaler, the fold's
    record as a dict, its conformal residuals or None). A file of another model is a CheckpointError."""
    saved = read(path)
    if saved.config != config:
        theirs, ours = saved.config.to_dict(), config.to_dict()
        differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        saved_values = ", ".join(f"{k}={theirs.get(k)!r}" for k in differ)
        our_values = ", ".join(f"{k}={ours.get(k)!r}" for k in differ)
        raise CheckpointError(f"checkpoint {str(path)!r} holds another model ({saved_values} where this one has "
                              f"{our_values}); pass the file saved by this model, or another folder")
    resume = saved.params.get("walk_forward")
    if not isinstance(resume, dict) or not isinstance(resume.get("fold"), dict):
        raise CheckpointError(f"checkpoint {str(path)!r} is a model file without its walk-forward fold; only files "
                              "saved by a forecast indicator can resume one")
    net = build(config)
    net.load_state_dict(saved.state)
    net.to(device).eval()
    scores = resume.get("scores")
    return net, saved.scaler, resume["fold"], None if scores is None else np.asarray(scores, dtype=np.float64)
