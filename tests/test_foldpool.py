"""Cold folds trained in worker processes: same forecasts bit for bit, same causality, clear limits."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import backtrader as bt
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from puffin_bt import ConfigError, PuffinError, foldpool, processes
from puffin_bt._sizing import worker_bytes
from puffin_bt.adapters.indicators import LSTMForecast
from puffin_bt.foldpool import available_cpus, resolve_fold_workers
from puffin_bt.walkforward import make_walk_forward

from .conftest import TINY, assert_same_forecasts, ohlcv_frame, synthetic_closes

ROOT = Path(__file__).resolve().parents[1]

COLD = {**TINY, "refit_epochs": None, "retrain_every": 15, "device": "cpu"}
CPU = torch.device("cpu")


def _run(closes, fold_workers, cell="lstm", **over):
    walk = make_walk_forward(cell, **{**COLD, **over, "fold_workers": fold_workers})
    return walk, walk.run(closes)


@pytest.mark.parametrize("cell,over", [
    ("lstm", {}),
    ("gru", {}),
    ("lstm", {"dropout": 0.2, "num_layers": 2, "patience": 1, "epochs": 3}),  # early stopping, dropout masks
    ("gru", {"train_window": None}),  # expanding window: every fold its own shape, one fold per batch
])
def test_pooled_folds_give_the_in_process_forecasts_bit_for_bit(cell, over):
    closes = synthetic_closes(260, seed=3)
    alone, res1 = _run(closes, 1, cell, **over)
    pooled, res2 = _run(closes, 2, cell, **over)
    assert alone.pooled_batches == 0 and pooled.pooled_batches >= 2
    np.testing.assert_array_equal(res2.pred_log_return, res1.pred_log_return)
    fields = ("index", "bar", "n_train", "n_val", "epochs_run", "train_loss", "val_loss", "best_epoch")
    assert [[getattr(f, k) for k in fields] for f in res2.folds] == [[getattr(f, k) for k in fields] for f in res1.folds]
    assert all(f.seconds > 0 for f in res2.folds)
    # training_seconds is wall time (in one process: the folds' own seconds plus a little bookkeeping).
    assert alone.training_seconds >= 0.95 * sum(f.seconds for f in res1.folds) > 0
    assert pooled.training_seconds > 0
    # The parent's copies of the nets are ordinary eval-mode modules with the trained weights.
    assert not pooled.nets[0].training
    for a, b in zip(pooled.nets[0].state_dict().values(), alone.nets[0].state_dict().values()):
        assert torch.equal(a, b)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=62, max_value=190), seed=st.integers(0, 10_000))
def test_pooled_forecasts_up_to_bar_t_ignore_later_bars(cut, seed):
    """Workers receive each fold's closes up to its fold bar only: perturbing the future
    moves no forecast up to t, in a real Cerebro (runonce) and the engine-free walk."""
    closes = synthetic_closes(200, seed=5)
    changed = closes.copy()
    changed[cut + 1:] *= np.exp(np.random.default_rng(seed).normal(0, 0.2, len(closes) - cut - 1))
    _, base = _run(closes, 2)
    _, other = _run(changed, 2)
    np.testing.assert_array_equal(other.pred_log_return[: cut + 1], base.pred_log_return[: cut + 1])

    def in_cerebro(series):
        cerebro = bt.Cerebro(stdstats=False, runonce=True, preload=True)
        cerebro.adddata(bt.feeds.PandasData(dataname=ohlcv_frame(series)))
        cerebro.addindicator(LSTMForecast, **{**COLD, "fold_workers": 2})
        strat = cerebro.run()[0]
        fc = strat.getindicators()[0]
        assert fc.walk.pooled_batches >= 2
        return np.asarray(fc.pred_return.array[: len(series)])

    np.testing.assert_array_equal(in_cerebro(changed)[: cut + 1], in_cerebro(closes)[: cut + 1])
    assert_same_forecasts(in_cerebro(closes), base.pred_return, min_finite=len(closes) - COLD["min_train"] + 1)


def test_auto_uses_the_cores_on_linux_cpu_and_stays_in_process_elsewhere(monkeypatch):
    from puffin_bt.processes import start_method

    monkeypatch.delenv("PUFFIN_BT_START_METHOD", raising=False)
    if start_method("cpu") == "fork":  # Linux
        assert resolve_fold_workers("auto", CPU) == available_cpus()
        assert start_method("cpu", threads=2) == "spawn"  # OpenMP's pool does not survive a fork
        assert resolve_fold_workers("auto", CPU, threads=2) == 1
    else:
        assert resolve_fold_workers("auto", CPU) == 1
    assert resolve_fold_workers(None, CPU) == 1
    assert resolve_fold_workers(available_cpus(), CPU) == available_cpus()  # asked for explicitly: as many
    with pytest.raises(ConfigError, match=f"at most {available_cpus()}"):  # more than the cores: refused
        resolve_fold_workers(available_cpus() + 1, CPU)
    assert resolve_fold_workers("auto", torch.device("cuda")) == 1  # the GPU batches the folds itself
    assert resolve_fold_workers(available_cpus(), torch.device("cuda")) == 1
    monkeypatch.setenv("PUFFIN_BT_START_METHOD", "spawn")  # a spawned worker re-imports torch: not worth it
    assert resolve_fold_workers("auto", CPU) == 1
    assert resolve_fold_workers(2, CPU) == 2  # asked for explicitly: spawned


def _system(tmp_path, meminfo_kb=None, cgroup=None, files=None):
    """A fake /proc and /sys/fs/cgroup on disk: ``cgroup`` is /proc/self/cgroup's text, ``files``
    maps paths under the cgroup root to their contents."""
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    root.mkdir()
    if meminfo_kb is not None:
        (proc / "meminfo").write_text(f"MemTotal:       99999999 kB\nMemAvailable:   {meminfo_kb} kB\n")
    if cgroup is not None:
        (proc / "self" / "cgroup").write_text(cgroup)
    for rel, text in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return str(proc), str(root)


@pytest.mark.parametrize("case,expected", [
    ("meminfo only", 8 * 2**30),
    ("cgroup v2 limit", 3 * 2**30),
    ("cgroup v2 unlimited", 8 * 2**30),
    ("cgroup v1 limit", 2**30),
    ("cgroup v1 unlimited", 8 * 2**30),
    ("namespaced v2 root", 2 * 2**30),
    ("nothing readable", None),
])
def test_available_memory_reads_meminfo_and_the_cgroup_limit(tmp_path, case, expected):
    gib = 2**30
    setups = {
        "meminfo only": dict(meminfo_kb=8 * 2**20),
        "cgroup v2 limit": dict(meminfo_kb=8 * 2**20, cgroup="0::/box\n",
                                files={"box/memory.max": f"{4 * gib}\n", "box/memory.current": f"{gib}\n"}),
        "cgroup v2 unlimited": dict(meminfo_kb=8 * 2**20, cgroup="0::/box\n",
                                    files={"box/memory.max": "max\n", "box/memory.current": f"{gib}\n"}),
        "cgroup v1 limit": dict(meminfo_kb=8 * 2**20, cgroup="4:memory:/job/7\n3:cpuset:/\n",
                                files={"memory/job/7/memory.limit_in_bytes": f"{3 * gib}\n",
                                       "memory/job/7/memory.usage_in_bytes": f"{2 * gib}\n"}),
        "cgroup v1 unlimited": dict(meminfo_kb=8 * 2**20, cgroup="4:memory:/\n",
                                    files={"memory/memory.limit_in_bytes": "9223372036854771712\n",
                                           "memory/memory.usage_in_bytes": f"{gib}\n"}),
        "namespaced v2 root": dict(meminfo_kb=8 * 2**20, cgroup="0::/\n",
                                   files={"memory.max": f"{3 * gib}\n", "memory.current": f"{gib}\n"}),
        "nothing readable": dict(),
    }
    proc, root = _system(tmp_path, **setups[case])
    assert foldpool.available_memory(proc, root) == expected


def test_auto_starts_no_more_workers_than_the_free_memory_holds(monkeypatch):
    from puffin_bt.processes import start_method

    monkeypatch.delenv("PUFFIN_BT_START_METHOD", raising=False)
    if start_method("cpu") != "fork":
        pytest.skip("auto uses a pool only where processes fork")
    monkeypatch.setattr(foldpool, "available_cpus", lambda: 16)
    monkeypatch.setattr(processes, "available_cpus", lambda: 16)  # explicit numbers are capped at the cores
    monkeypatch.setattr(foldpool, "available_memory", lambda: 4 * 2**30)
    per_worker = 600 * 2**20  # half of 4 GiB holds 3 of these
    assert resolve_fold_workers("auto", CPU, worker_bytes=per_worker) == 3
    assert resolve_fold_workers("auto", CPU, worker_bytes=8 * 2**30) == 1  # never fewer than one
    assert resolve_fold_workers("auto", CPU, worker_bytes=2**20) == 16  # the cores bind first
    assert resolve_fold_workers(8, CPU, worker_bytes=per_worker) == 8  # an explicit number is obeyed
    monkeypatch.setattr(foldpool, "available_memory", lambda: None)
    assert resolve_fold_workers("auto", CPU, worker_bytes=per_worker) == 16  # unknown: cores only


def test_a_walk_forward_sizes_its_workers_from_its_own_model():
    small = make_walk_forward("lstm", **{**COLD, "hidden_dim": 8})
    big = make_walk_forward("lstm", **{**COLD, "hidden_dim": 256, "num_layers": 3, "lookback": 60, "batch_size": 64,
                                       "min_train": 200, "train_window": 200})
    # 256x3, lookback 60, batch 64: 315 MiB of scratch a model, so one model per batch (BATCH_MEMORY)
    assert worker_bytes(small.config) < 100 * 2**20 < 300 * 2**20 < worker_bytes(big.config) < 512 * 2**20


def test_inside_a_worker_process_folds_stay_in_process(monkeypatch):
    monkeypatch.setattr(processes, "_IN_WORKER", False)
    assert resolve_fold_workers(2, CPU) == 2
    processes.mark_worker()  # what puffin_bt's ticker pool runs in each worker
    assert resolve_fold_workers(2, CPU) == 1 and resolve_fold_workers("auto", CPU) == 1


def _resolve_in_child(queue):
    queue.put(resolve_fold_workers(2, CPU))


def test_a_daemonic_process_never_starts_a_pool():
    """Backtrader's optstrategy runs strategies in multiprocessing.Pool (daemonic) workers."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_resolve_in_child, args=(queue,), daemon=True)
    child.start()
    assert queue.get(timeout=60) == 1
    child.join(timeout=60)


@pytest.mark.parametrize("bad", [0, -2, 1.5, "many", True])
def test_bad_fold_workers_is_a_config_error_naming_it(bad):
    with pytest.raises(ConfigError, match="fold_workers"):
        make_walk_forward("lstm", fold_workers=bad)


def test_workers_1_means_one_process_in_all():
    from puffin_bt.backtesting import backtest
    from puffin_bt.tickers import one_process_options

    assert one_process_options({"epochs": 2}, 1) == {"epochs": 2, "fold_workers": 1}
    assert one_process_options({"fold_workers": 2}, 1) == {"fold_workers": 2}  # explicit wins
    assert one_process_options({"epochs": 2}, "auto") == {"epochs": 2}
    data = {"X": ohlcv_frame(synthetic_closes(160, seed=8))}

    def pooled(**kw):
        res = backtest(data, store=False, **COLD, **kw)
        return sum(fc.walk.pooled_batches for fc in res.strategy.forecasts.values()), res.forecasts

    alone, f1 = pooled(workers=1)
    spread, f2 = pooled(workers=None, fold_workers=2)
    assert alone == 0 and spread >= 2
    np.testing.assert_array_equal(f1["pred_return"].to_numpy(), f2["pred_return"].to_numpy())


def test_the_pool_is_shared_between_walk_forwards_and_closed_when_idle(monkeypatch):
    import time

    foldpool.shutdown()
    closes = synthetic_closes(200, seed=6)
    first, _ = _run(closes, 2)
    pool = foldpool._shared["pool"]
    assert pool is not None and pool._executor is not None  # kept for the next walk-forward
    workers_pids = set(pool._executor._processes)
    second, _ = _run(closes, 2)
    assert foldpool._shared["pool"] is pool and set(pool._executor._processes) == workers_pids
    assert first.pooled_batches == second.pooled_batches >= 2
    monkeypatch.setattr(foldpool, "IDLE_SECONDS", 0.05)
    _run(closes, 2)
    deadline = time.monotonic() + 10
    while foldpool._shared["pool"] is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert foldpool._shared["pool"] is None and pool._executor is None  # closed after the idle time
    _run(closes, 2)
    assert foldpool._shared["pool"] is not None
    foldpool.shutdown()
    assert foldpool._shared["pool"] is None


def test_a_pool_inherited_through_fork_is_not_used(monkeypatch):
    foldpool.shutdown()
    pool = foldpool.acquire(2)
    foldpool.release(pool)
    monkeypatch.setattr(pool, "pid", -1)  # as in a child forked from this process
    other = foldpool.acquire(2)
    foldpool.release(other)
    assert other is not pool
    foldpool.shutdown()


def test_multi_threaded_workers_after_openmp_use_in_the_parent_do_not_hang(tmp_path):
    """GNU OpenMP's thread pool does not survive a fork: forked children running 2 torch threads
    after the parent ran a 2-thread matmul hung (fold pool and ticker pool alike). They spawn now."""
    import subprocess
    import sys

    script = tmp_path / "omp_then_pool.py"
    script.write_text(f"""
import sys, tempfile
sys.path.insert(0, {str(ROOT)!r})
import numpy as np, torch
from puffin_bt import load_sample
from puffin_bt.tickers import precompute_forecasts
from puffin_bt.store import ForecastStore
from puffin_bt.walkforward import make_walk_forward

if __name__ == "__main__":
    torch.set_num_threads(2)
    a = torch.randn(600, 600)
    for _ in range(3):
        a @ a  # the parent's OpenMP pool is now running
    opts = dict(lookback=5, min_train=60, train_window=60, retrain_every=20, epochs=1, refit_epochs=None,
                hidden_dim=4, num_layers=1, device="cpu", threads=2)
    closes = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 160)))
    pooled = make_walk_forward("lstm", fold_workers=2, **opts)
    r2 = pooled.run(closes)
    r1 = make_walk_forward("lstm", fold_workers=1, **opts).run(closes)
    assert pooled.pooled_batches >= 2 and np.isfinite(r1.pred_log_return).sum() >= 100
    # With 2 intra-op threads this Xeon's kernels are not bit-reproducible run to run, in one process too, and
    # training amplifies the rounding: two serial runs in one process differed by up to 1.2e-6 relative, a pooled
    # one by 5.7e-6 (6 runs under load). Bit-equality of the pool is pinned with 1 thread (test above); here the
    # forecasts must agree far below any real difference (a wrong fold or weights moves them by O(1) relative).
    np.testing.assert_allclose(r1.pred_log_return, r2.pred_log_return, rtol=1e-4, atol=1e-12)
    frames = load_sample(["IBM", "MSFT"], start="2012-06-01")
    report = precompute_forecasts(frames, store=ForecastStore(tempfile.mkdtemp()), workers=2, **opts)
    assert sorted(report.computed) == ["IBM", "MSFT"], report.summary()
    print("done")
""")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=150)
    assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr[-2000:]


def test_a_worker_killed_while_idle_is_replaced_and_the_run_gives_the_same_forecasts():
    import os
    import signal
    import time

    foldpool.shutdown()
    closes = synthetic_closes(200, seed=12)
    _, before = _run(closes, 2)
    pool = foldpool._shared["pool"]
    victim = next(iter(pool._executor._processes))
    os.kill(victim, signal.SIGKILL)
    time.sleep(0.2)
    walk, after = _run(closes, 2)
    assert walk.pooled_batches >= 2 and victim not in (foldpool._shared["pool"]._executor._processes or {})
    np.testing.assert_array_equal(after.pred_log_return, before.pred_log_return)
    foldpool.shutdown()


def _die(*_args):
    import os

    os._exit(3)  # as a worker killed by the OOM killer would


def test_a_worker_that_dies_on_the_work_is_a_puffin_error_naming_the_fix(monkeypatch):
    foldpool.shutdown()
    monkeypatch.setattr(foldpool, "_train_in_worker", _die)  # the forked workers inherit it
    with pytest.raises(PuffinError, match="fold_workers=1"):
        _run(synthetic_closes(200, seed=13), 2)
    assert foldpool._shared["pool"] is None  # discarded: the next walk-forward starts afresh
    monkeypatch.undo()
    _, res = _run(synthetic_closes(200, seed=13), 2)
    assert np.isfinite(res.pred_log_return[59:]).all()
    foldpool.shutdown()


def test_an_error_during_the_walk_forward_discards_the_shared_pool():
    foldpool.shutdown()

    def boom(record):
        raise RuntimeError("from on_fold")

    walk = make_walk_forward("lstm", on_fold=boom, **{**COLD, "fold_workers": 2})
    with pytest.raises(RuntimeError, match="from on_fold"):
        walk.run(synthetic_closes(200, seed=14))
    assert foldpool._shared["pool"] is None
    _, res = _run(synthetic_closes(200, seed=14), 2)
    assert np.isfinite(res.pred_log_return[59:]).all()
    foldpool.shutdown()
