"""Warm re-runs without torch (issue 29): ``import puffin_bt`` and a backtest whose forecasts all come from the store
never import torch (each checked in a fresh interpreter), and give what the cold run gave."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from puffin_bt import load_sample
from puffin_bt.store import fingerprint
from puffin_bt.walkforward import make_walk_forward

ROOT = Path(__file__).resolve().parents[1]
TINY_CLI = ["--sample", "IBM", "--start", "2011-01-01", "--hidden-dim", "4", "--num-layers", "1", "--epochs", "1",
            "--lookback", "5", "--min-train", "120", "--retrain-every", "60", "--train-window", "120",
            "--workers", "1", "--no-plot", "--quiet", "--entry", "0", "--exit", "0"]


def fresh_python(code: str) -> str:
    """stdout of ``code`` run in a new interpreter that imports this checkout's puffin_bt."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def backtest_in_fresh_python(cache: Path, out: Path, *extra: str) -> bool:
    """Run ``puffin-bt backtest`` in a new interpreter; whether it imported torch."""
    argv = ["backtest", *TINY_CLI, "--cache-dir", str(cache), "--out", str(out), *extra]
    code = (f"import sys\nfrom puffin_bt.cli import main\nrc = main({argv!r})\nassert rc in (0, None), rc\n"
            "print('torch' in sys.modules)")
    return fresh_python(code).strip().splitlines()[-1] == "True"


def test_importing_puffin_bt_does_not_import_torch_until_a_name_that_needs_it_is_read():
    out = fresh_python("import sys, puffin_bt\nprint('torch' in sys.modules)\npuffin_bt.TradingLSTM\n"
                       "print('torch' in sys.modules, 'TradingLSTM' in dir(puffin_bt))")
    assert out.split() == ["False", "True", "True"]


def test_a_warm_store_backtest_never_imports_torch_and_gives_the_cold_runs_results(tmp_path):
    cache = tmp_path / "cache"
    assert backtest_in_fresh_python(cache, tmp_path / "cold")  # the cold run trains: torch
    assert not backtest_in_fresh_python(cache, tmp_path / "warm")
    assert not backtest_in_fresh_python(cache, tmp_path / "thresholds", "--entry", "0.0003", "--exit", "0.0003")
    cold, warm = tmp_path / "cold", tmp_path / "warm"
    assert (warm / "forecasts.csv").read_bytes() == (cold / "forecasts.csv").read_bytes()
    assert (warm / "trades.csv").read_bytes() == (cold / "trades.csv").read_bytes()
    assert len((cold / "trades.csv").read_text().splitlines()) > 3  # trades to compare
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (cold, warm)]
    assert metrics[0]["portfolio"] == metrics[1]["portfolio"]
    assert (tmp_path / "thresholds" / "trades.csv").read_bytes() != (cold / "trades.csv").read_bytes()


@pytest.mark.parametrize("extra", [("--model", "tcn"), ("--scope", "global", "--sample", "IBM", "AAPL")], ids=["tcn", "global"])
def test_a_warm_store_backtest_of_another_family_or_a_global_model_never_imports_torch(tmp_path, extra):
    cache = tmp_path / "cache"
    assert backtest_in_fresh_python(cache, tmp_path / "cold", *extra)
    assert not backtest_in_fresh_python(cache, tmp_path / "warm", *extra)
    cold, warm = tmp_path / "cold", tmp_path / "warm"
    assert (warm / "forecasts.csv").read_bytes() == (cold / "forecasts.csv").read_bytes()
    assert len((cold / "forecasts.csv").read_text().splitlines()) > 100


def test_store_keys_are_the_same_with_torch_imported_and_without():
    options = dict(hidden_dim=4, num_layers=1, lookback=5, epochs=1)
    closes = load_sample(["IBM"])["IBM"]["close"].to_numpy(dtype=np.float64)[:300]
    code = ("import sys, numpy as np\nfrom puffin_bt import load_sample\nfrom puffin_bt.store import fingerprint\n"
            "from puffin_bt.walkforward import make_walk_forward\n"
            "closes = load_sample(['IBM'])['IBM']['close'].to_numpy(dtype=np.float64)[:300]\n"
            f"print(fingerprint(make_walk_forward('lstm', **{options!r}), closes), 'torch' in sys.modules)")
    import torch  # noqa: F401 - this process has torch, as a cold run does

    assert fresh_python(code).split() == [fingerprint(make_walk_forward("lstm", **options), closes), "False"]
