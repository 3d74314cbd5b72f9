"""Every script in examples/ runs offline on the bundled data (quick mode) and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# script -> (extra arguments, fragments its output must contain)
EXPECTED = {
    "01_stacked_lstm.py": ([], ["Output shape: torch.Size([16, 1])", "Layers: [128, 64, 32]", "validation",
                               "best epoch"]),
    "02_deep_lstm_custom.py": ([], ["Output shape: torch.Size([16, 1])", "'volume'", "epoch 1: train_loss="]),
    "03_gru_net.py": ([], ["GRUNet output shape: torch.Size([16, 1])", "last close 2013-03-01",
                           "GRU predictions: ["]),
    "04_lstm_vs_gru.py": ([], ["LSTM val_loss:", "GRU  val_loss:", "LSTM predictions: [", "GRU  predictions: ["]),
    "05_dropout.py": ([], ["two calls differ = True", "two calls equal = True", "dropout=0.5: train_loss="]),
    "06_early_stopping.py": (["--epochs", "12", "--patience", "3"], ["epoch 0: train_loss=", "best epoch:",
                                                                    "restored model val_loss="]),
    "07_weight_decay.py": ([], ["weight_decay=1e-05", "weight_decay=0.1: val_loss="]),
    "08_noise_augmentation.py": ([], ["validation returns untouched", "noise_level=0.1: train_loss="]),
    "09_hyperparameter_grid.py": ([], ["Distinct results: 8 of 8 grid points", "Best parameters: {",
                                       "Best validation loss:"]),
    "10_add_to_your_cerebro.py": ([], ["final value:", "closed trades:", "trades_AAPL.png", "trades_MSFT.png"]),
    "11_portfolio_backtest.py": ([], ["PORTFOLIO", "B&H return", "charts,", "folds"]),
    "12_walk_forward_evaluation.py": ([], ["POOLED", "mse_zero", "Direction accuracy", "against a coin flip"]),
    "13_chapter_backtest_done_causally.py": ([], ["Final Capital: $", "Total Return:", "Number of Trades:",
                                                  "first forecast on"]),
    "14_threshold_sweep.py": ([], ["16 threshold combinations", "forecast store: 2 trained, 30 reused"]),
    "15_input_features.py": ([], ["inputs: returns + ['range', 'volatility:20', 'RSI', 'IBM.volume']", "forecasts:",
                                  "TradingLSTM with features ('volume',): next close"]),
    "16_paper_trading.py": ([], ["bars delivered one by one", "killed the paper trader at", "resumed from 3 saved folds",
                                 "forecasts equal to an uninterrupted run: True", "daily job: puffin-bt forecast"]),
    "17_vol_target.py": ([], ["buy-and-hold:", "vol-target buy-and-hold:", "sized on ['trailing_20']",
                              "interval size: volatility", "volatility sources used (bars): {'AAPL': {'interval':"]),
}


def run_example(name: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PUFFIN_BT_QUICK="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, str(EXAMPLES / name), "--epochs", "2", *args]
    return subprocess.run(command, check=False, cwd=cwd or ROOT, env=env, capture_output=True, text=True,
                          timeout=180)


def test_every_example_script_is_covered():
    assert sorted(p.name for p in EXAMPLES.glob("[0-9]*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_offline_and_prints_its_results(name, tmp_path):
    extra_args, fragments = EXPECTED[name]
    result = run_example(name, *extra_args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in result.stdout, f"{fragment!r} missing from:\n{result.stdout}"
    assert "nan" not in result.stdout.lower()

