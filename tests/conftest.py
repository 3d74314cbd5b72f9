"""Shared fixtures: small synthetic series and tiny model settings so the suite stays fast."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import settings

os.environ.setdefault("MPLBACKEND", "Agg")
# Keep the user's cache untouched: anything that defaults to it (parallel runs, examples, CLI
# subprocesses, which inherit the environment) writes into a throwaway folder instead.
os.environ["PUFFIN_BT_CACHE"] = tempfile.mkdtemp(prefix="puffin-bt-test-cache-")
# Every Ray node a test starts listens on 127.0.0.1 only: with this set (before Ray is imported) Ray takes the
# loopback address for its nodes instead of the machine's network address (tests/test_cluster.py checks it).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# Tiny test models gain nothing from intra-op threads, and spinning OpenMP threads make
# the suite crawl when the machine is busy with anything else.
torch.set_num_threads(1)
# Property tests draw fresh random examples on every run (that is how they find bugs) except in
# CI (.ci/run sets HYPOTHESIS_PROFILE=ci): there the examples are derandomized, so a merge is
# never rejected by an example no one has seen locally; `print_blob` makes a failure replayable.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Tiny network and short schedule: real training, a few milliseconds per fold.
TINY = dict(hidden_dim=4, num_layers=1, epochs=1, refit_epochs=1, lookback=5, min_train=60,
            retrain_every=40, train_window=80, batch_size=32, patience=None, validation_split=0.2)


def synthetic_closes(n: int, seed: int = 0, drift: float = 0.0003, vol: float = 0.015) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(drift, vol, n)))


def regime_closes(drifts=((100, 0.004), (80, -0.004), (80, 0.004)), seed: int = 0, vol: float = 0.01) -> np.ndarray:
    """Closes whose drift switches sign by regime, so a walk-forward model's forecasts do too."""
    rng = np.random.default_rng(seed)
    steps = np.concatenate([rng.normal(mu, vol, n) for n, mu in drifts])
    return 100.0 * np.exp(np.cumsum(steps))


def ohlcv_frame(closes: np.ndarray, start: str = "2020-01-01") -> pd.DataFrame:
    closes = np.asarray(closes, dtype=float)
    opens = np.concatenate([[closes[0]], closes[:-1]])
    idx = pd.bdate_range(start, periods=len(closes), name="date")
    return pd.DataFrame({
        "open": opens,
        "high": np.maximum(opens, closes) * 1.005,
        "low": np.minimum(opens, closes) * 0.995,
        "close": closes,
        "volume": 1_000_000.0,
    }, index=idx)


@pytest.fixture
def tiny_params() -> dict:
    return dict(TINY)


def assert_same_forecasts(actual, expected, min_finite: int, rtol: float = 0.0, atol: float = 1e-7,
                          err_msg: str = "") -> None:
    """Two forecast arrays agree: NaN at the same bars (before the first fold), at least ``min_finite``
    real forecasts, and those within tolerance. ``assert_allclose(..., equal_nan=True)`` alone would
    also pass on two all-NaN arrays."""
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape, err_msg
    finite = np.isfinite(expected)
    assert finite.sum() >= min_finite, f"only {finite.sum()} finite forecasts (< {min_finite}): {err_msg}"
    np.testing.assert_array_equal(np.isfinite(actual), finite, err_msg=f"NaN at other bars: {err_msg}")
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=rtol, atol=atol, err_msg=err_msg)


def assert_differ(a, b, min_finite: int) -> None:
    """Two forecast arrays with at least ``min_finite`` real values each differ somewhere
    (``not np.allclose`` alone also passes when they are NaN)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert np.isfinite(a).sum() >= min_finite and np.isfinite(b).sum() >= min_finite
    assert not np.allclose(a, b, equal_nan=True)
