"""Durability: the price cache, the forecast store and checkpoints survive SIGKILL and races.

All three write a temporary file in the destination folder (``.<name>.<random>.tmp``),
fsync it and ``os.replace`` it onto the final name. The tests run real writers in child
processes (``python -c`` on this module's ``_writer_main``):

* a writer that rewrites a large entry in a loop is killed with SIGKILL while a temporary
  file is open (retried until the kill lands mid-write); the entry must then be absent or
  complete: it loads and equals one of the payloads written, never a torn file;
* two writers write the same entry concurrently; both finish, every read taken meanwhile and
  the final file load and equal one of the two payloads;
* the temporary files a killed writer leaves behind do not disturb later reads and writes.
  They are *not* cleaned up (they accumulate until deleted by hand): see docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from puffin_bt.data import load_prices
from puffin_bt.errors import CheckpointError, NetworkError
from puffin_bt.forecaster import TradingLSTM
from puffin_bt.store import ForecastStore, as_lines
from puffin_bt.walkforward import FoldRecord

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

MODES = ("store", "cache", "checkpoint")
STORE_KEY = "ab" * 32
STORE_N = 1_000_000           # 8 MB of forecasts per entry
CACHE_TICKER = "ACME"
CACHE_ROWS = 10_000           # ~0.8 MB of CSV per price cache
CACHE_START, CACHE_END = "1900-01-01", "1938-12-31"
CKPT_HIDDEN = 192             # ~1.8 MB of LSTM weights per checkpoint


# --------------------------------------------------------------------------- payloads (shared with the child)


def store_payload(i: int) -> tuple[np.ndarray, list[FoldRecord]]:
    preds = np.linspace(-1.0, 1.0, STORE_N) * (i + 1)
    folds = [FoldRecord(index=k, bar=100 + k, train_start=0, n_train=50 + i, n_val=10, epochs_run=1,
                        warm_start=bool(k), train_loss=0.5 + i, val_loss=0.25 + i, best_epoch=None,
                        seconds=0.0, date=None) for k in range(3)]
    return preds, folds


def cache_fetcher(i: int):
    def fetch(ticker, start, end):
        idx = pd.bdate_range(CACHE_START, periods=CACHE_ROWS, name="Date")
        close = 50.0 + 10.0 * np.sin(np.arange(CACHE_ROWS) / (40.0 + i)) + i
        return pd.DataFrame({"Open": close, "High": close * 1.01, "Low": close * 0.99, "Close": close,
                             "Volume": 1000.0 + i}, index=idx)
    return fetch


def fit_checkpoint_model(i: int) -> TradingLSTM:
    """A real fitted forecaster with enough weights that a save takes a few milliseconds."""
    model = TradingLSTM(hidden_dim=CKPT_HIDDEN, num_layers=2, dropout=0.0, lookback=5, patience=None,
                        batch_size=64, seed=i, device="cpu")
    rng = np.random.default_rng(i)
    model.fit(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 40))), epochs=1)
    return model


def _target(mode: str, root: Path) -> Path:
    return {"store": root / "forecasts" / f"{STORE_KEY}.npz",
            "cache": root / "prices" / f"{CACHE_TICKER}.csv",
            "checkpoint": root / "model.pt"}[mode]


def _writer(mode: str, root: Path, ids: list[int]):
    """Prepare the payloads (and reference copies), return write(i)."""
    if mode == "store":
        store = ForecastStore(root)
        payloads = {i: store_payload(i) for i in ids}
        return lambda i: store.save(STORE_KEY, *payloads[i])
    if mode == "cache":
        return lambda i: load_prices(CACHE_TICKER, start=CACHE_START, end=CACHE_END, cache_dir=root, refresh=True,
                                     fetcher=cache_fetcher(i))
    # The reference checkpoints were fitted once by the test process (fixture ``checkpoint_refs``).
    models = {i: TradingLSTM.load(root / f"ref_{i}.pt", device="cpu") for i in ids}
    return lambda i: models[i].save(_target("checkpoint", root))


def _parent_write(mode: str, root: Path, i: int) -> None:
    """The same writes, from the test process."""
    _writer(mode, root, [i])(i)


def _writer_main(argv: list[str]) -> None:
    """Child entry point: MODE ROOT IDS COUNT WAIT_GO. COUNT=0 rewrites until killed."""
    mode, root, ids, count, wait_go = argv
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    ids_ = [int(x) for x in ids.split(",")]
    write = _writer(mode, Path(root), ids_)
    print("READY", flush=True)
    if wait_go == "1":
        sys.stdin.readline()
    started, k = time.time(), 0
    while int(count) == 0 or k < int(count):
        write(ids_[k % len(ids_)])
        k += 1
    print(json.dumps({"writes": k, "start": started, "end": time.time()}), flush=True)
    os._exit(0)   # skip the slow interpreter teardown (everything is written and fsynced)


# --------------------------------------------------------------------------- parent-side helpers


def _start(mode: str, root: Path, ids: str, count: int = 0, wait_go: bool = False) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    code = "import sys; from tests.test_durability import _writer_main; _writer_main(sys.argv[1:])"
    proc = subprocess.Popen([sys.executable, "-c", code, mode, str(root), ids, str(count), "1" if wait_go else "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=env)
    watchdog = threading.Timer(120, proc.kill)   # never leave a runaway writer behind
    watchdog.daemon = True
    watchdog.start()
    return proc


def _ready(proc: subprocess.Popen) -> subprocess.Popen:
    line = proc.stdout.readline()
    if line.strip() != "READY":
        proc.kill()
        pytest.fail(f"writer did not start: {line!r} {proc.stderr.read()}")
    return proc


def _temp_files(folder: Path, target: Path) -> list[Path]:
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return [folder / n for n in names if n.startswith(f".{target.name}.") and n.endswith(".tmp")]


class Expected:
    """Reads an entry the way the library does and says which payload it holds (None = absent)."""

    def __init__(self, mode: str, root: Path, ids=(0, 1)):
        self.mode, self.root = mode, root
        self.refs: dict = {}
        if mode == "store":
            self.payloads = {i: store_payload(i) for i in ids}
        elif mode == "cache":
            self.payloads = {}
            for i in ids:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self.payloads[i] = load_prices(CACHE_TICKER, start=CACHE_START, end=CACHE_END,
                                                   cache_dir=root / f"expected_{i}", fetcher=cache_fetcher(i))[CACHE_TICKER]

    def which(self, racing: bool = False) -> int | None:
        """The payload id the entry holds now; None if absent; fails the test if torn/corrupt.

        The entry is read once, as the library reads it; when not ``racing`` with a writer the
        store entry is also read through ``ForecastStore.load``."""
        target = _target(self.mode, self.root)
        if self.mode == "store":
            try:
                with np.load(target, allow_pickle=False) as blob:   # a torn .npz raises here
                    preds = np.array(blob["pred_log_return"])
                    folds = json.loads(str(blob["folds_json"]))
            except FileNotFoundError:
                return None
            for i, (p, f) in self.payloads.items():
                lines = as_lines(np.asarray(p, dtype=np.float64))  # what the store keeps: the forecast lines
                if np.array_equal(preds, lines, equal_nan=True) and folds == [r.to_dict() for r in f]:
                    if not racing:
                        loaded = ForecastStore(self.root).load(STORE_KEY)
                        assert loaded is not None and np.array_equal(loaded[0], lines, equal_nan=True)
                        assert loaded[1] == f
                    return i
            pytest.fail(f"store entry {target} holds neither payload")
        if self.mode == "cache":
            def offline(ticker, start, end):
                raise ConnectionError("offline")
            try:
                frame = load_prices(CACHE_TICKER, start=CACHE_START, end=CACHE_END, cache_dir=self.root,
                                    fetcher=offline)[CACHE_TICKER]   # a torn cache raises DataError here
            except NetworkError:
                return None
            for i, expected in self.payloads.items():
                if frame.equals(expected):
                    return i
            pytest.fail(f"price cache {target} holds neither payload ({len(frame)} rows)")
        try:
            model = TradingLSTM.load(target, device="cpu")
        except CheckpointError as exc:
            if "does not exist" in str(exc):
                return None
            raise
        state = model.model.state_dict()
        for i in (0, 1):
            ref_path = self.root / f"ref_{i}.pt"
            if i not in self.refs and ref_path.exists():
                self.refs[i] = TradingLSTM.load(ref_path, device="cpu").model.state_dict()
            ref = self.refs.get(i)
            if ref is not None and all(torch.equal(state[k], ref[k]) for k in ref):
                return i
        pytest.fail(f"checkpoint {target} holds neither payload")


@pytest.fixture(scope="module")
def checkpoint_refs(tmp_path_factory) -> dict[int, bytes]:
    folder = tmp_path_factory.mktemp("refs")
    return {i: fit_checkpoint_model(i).save(folder / f"ref_{i}.pt").read_bytes() for i in (0, 1)}


@pytest.fixture
def root(tmp_path, request, checkpoint_refs) -> Path:
    """The folder the writers share; checkpoint writers find their reference models there."""
    folder = tmp_path / "root"
    folder.mkdir()
    if request.node.callspec.params.get("mode") == "checkpoint":
        for i, blob in checkpoint_refs.items():
            (folder / f"ref_{i}.pt").write_bytes(blob)
    return folder


# --------------------------------------------------------------------------- SIGKILL mid-write


def _kill_mid_write(mode: str, root: Path) -> list[Path]:
    """Kill a looping writer while it has a temporary file open; return the strays left behind."""
    target = _target(mode, root)
    for _ in range(6):
        proc = _ready(_start(mode, root, "0,1"))
        deadline = time.monotonic() + 60
        while not target.exists() and time.monotonic() < deadline:   # at least one complete write first
            time.sleep(0.001)
        before = set(_temp_files(target.parent, target))
        while time.monotonic() < deadline:
            if set(_temp_files(target.parent, target)) - before:
                os.kill(proc.pid, signal.SIGKILL)
                break
        else:
            proc.kill()
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        strays = set(_temp_files(target.parent, target)) - before
        if strays:   # the temp file survived the kill: it landed between mkstemp and os.replace
            return sorted(strays)
    pytest.fail("could not land a SIGKILL while the writer had a temporary file open")


@pytest.mark.parametrize("mode", MODES)
def test_sigkill_mid_write_leaves_the_previous_complete_entry_and_harmless_strays(root, mode):
    expected = Expected(mode, root)
    strays = _kill_mid_write(mode, root)
    target = _target(mode, root)
    # The final name holds a complete entry (the last one renamed before the kill), never a torn one.
    assert expected.which() in (0, 1)
    # What was being written when the kill landed sits in the temp file, under another name.
    assert all(p.name != target.name and p.parent == target.parent for p in strays)
    # Strays break nothing: reads ignore them, a later write replaces the entry, and they stay.
    _parent_write(mode, root, 1)
    assert expected.which() == 1
    _parent_write(mode, root, 0)
    assert expected.which() == 0
    assert all(p.exists() for p in strays), "stray temp files are not cleaned up (documented)"
    if mode == "store":
        assert ForecastStore(root).clear() == 1   # clear() counts entries only


def test_store_clear_removes_stray_temp_files(tmp_path):
    store = ForecastStore(tmp_path)
    preds, folds = store_payload(0)
    store.save(STORE_KEY, preds[:10], folds)
    stray = store.root / f".{STORE_KEY}.npz.k1ll3d.tmp"
    stray.write_bytes(b"PK\x03\x04 half an npz")
    lock = store.root / f".{STORE_KEY}.lock"  # what an optimisation's workers wait on
    lock.touch()
    store.clear()
    assert not stray.exists() and not lock.exists() and not list(store.root.iterdir())


# --------------------------------------------------------------------------- concurrent writers


@pytest.mark.parametrize("mode", MODES)
def test_two_processes_writing_the_same_entry_concurrently_do_not_corrupt_it(root, mode):
    expected = Expected(mode, root)
    count = {"store": 6, "cache": 6, "checkpoint": 30}[mode]   # about a second of writing each
    writers = [_ready(proc) for proc in [_start(mode, root, str(i), count=count, wait_go=True) for i in (0, 1)]]
    for proc in writers:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    seen = set()
    while any(p.poll() is None for p in writers):
        seen.add(expected.which(racing=True))   # every read taken during the race is absent or complete
        time.sleep(0.005)
    reports = []
    for proc in writers:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["writes"] for r in reports] == [count, count]
    assert max(r["start"] for r in reports) < min(r["end"] for r in reports), "the writers did not overlap"
    assert expected.which() in (0, 1)
    assert seen <= {None, 0, 1}
    target = _target(mode, root)
    assert _temp_files(target.parent, target) == []   # finished writers leave no temp files
