"""Files puffin_bt writes get the mode a plain open() would give them under the process's umask (0644 under 022,
0600 under 077), so a colleague on the same machine can read a shared run: results, charts, the forecast store,
checkpoints and the price cache alike, not the atomic writer's private temp-file mode."""

from __future__ import annotations

import os
import stat

import pytest

from puffin_bt import TradingGRU, load_sample
from puffin_bt.backtesting import backtest
from puffin_bt.data import load_prices
from puffin_bt.store import ForecastStore

from .conftest import TINY


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask):
    ibm = load_sample("IBM", start="2011-06-01")["IBM"]
    old = os.umask(umask)
    try:
        cache = tmp_path / "cache"
        frames = load_prices(["IBM"], start="2011-06-01", cache_dir=cache, fetcher=lambda ticker, start, end: ibm)
        res = backtest(frames, model="gru", store=ForecastStore(cache), workers=1,
                       **{**TINY, "lookback": 10, "min_train": 120, "train_window": 160, "retrain_every": 60})
        out = res.save(tmp_path / "run")
        res.plot(out, fmt="html")
        model = TradingGRU(hidden_dim=4, num_layers=1)
        model.fit(ibm["close"].iloc[:200], lookback=5, epochs=1)
        model.save(tmp_path / "models" / "gru.pt")
    finally:
        os.umask(old)
    files = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*") if p.is_file()}
    for expected in ("cache/prices/IBM.csv", "run/trades.csv", "run/open_positions.csv", "run/metrics.json",
                     "run/config.json", "run/equity.csv", "run/trades.html", "models/gru.pt"):
        assert expected in files, (expected, sorted(files))
    assert any(name.startswith("cache/") and name.endswith(".npz") for name in files), sorted(files)  # the store
    assert {name: mode for name, mode in files.items() if mode != 0o666 & ~umask} == {}
    folders = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*") if p.is_dir()}
    assert {name: mode for name, mode in folders.items() if mode != 0o777 & ~umask} == {}
