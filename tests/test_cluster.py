"""The ticker pool on a real two-node Ray cluster on this machine (``ray.cluster_utils.Cluster``, one CPU per node,
every address on 127.0.0.1): the local pool's forecasts, per-ticker failures, a worker node lost mid-run."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from puffin_bt.dates import date_numbers_of
from puffin_bt.store import ForecastStore, fingerprint
from puffin_bt.tickers import precompute_forecasts
from puffin_bt.walkforward import make_walk_forward

from .conftest import TINY, ohlcv_frame, regime_closes

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")
NodeAffinitySchedulingStrategy = pytest.importorskip("ray.util.scheduling_strategies").NodeAffinitySchedulingStrategy

OPTIONS = {**TINY, "device": "cpu", "model": "gru"}


def universe(n: int = 6) -> dict:
    """Tickers of different lengths and first dates."""
    return {f"T{i}": ohlcv_frame(regime_closes(((100 + 10 * i, 0.003), (80, -0.003), (60 + 5 * i, 0.002)), seed=i),
                                 start=f"2019-0{1 + i % 9}-01") for i in range(n)}


@pytest.fixture(scope="module")
def cluster():
    """One head and one worker node, a CPU each, shared by the module's tests (a cluster takes seconds to start)."""
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"  # conftest, before Ray was imported
    if ray.is_initialized():
        ray.shutdown()
    nodes = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()
    ray.init(address=nodes.address, log_to_driver=False)
    try:
        yield nodes, worker
    finally:
        ray.shutdown()
        nodes.shutdown()


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> dict:
    """The local process pool's forecasts: the reference."""
    store = ForecastStore(tmp_path_factory.mktemp("local"))
    frames = universe()
    report = precompute_forecasts(frames, model=OPTIONS["model"], executor="local", workers=2, store=store,
                                  **_walk_options())
    assert sorted(report.computed) == sorted(frames)
    return entries(store, frames)


def _walk_options(**changes) -> dict:
    return {k: v for k, v in OPTIONS.items() if k != "model"} | {"refit_epochs": 1} | changes


# The lost-node test's tickers train this long, so the worker node is still computing when it goes: a warm worker
# computes a ticker of the other tests in a fraction of a second (all six were done before the node was removed).
SLOW = {"epochs": 30, "refit_epochs": 10}


def entries(store: ForecastStore, frames: dict, **changes) -> dict:
    walk = make_walk_forward(OPTIONS["model"], **_walk_options(**changes))
    out = {}
    for name, df in frames.items():
        hit = store.load(fingerprint(walk, df["close"].to_numpy(dtype=float), date_numbers_of(df.index)))
        out[name] = None if hit is None else hit[0]
    return out


def run_on_cluster(store: ForecastStore, frames: dict, changes: dict | None = None, **kwargs):
    return precompute_forecasts(frames, model=OPTIONS["model"], executor="ray", store=store, **kwargs,
                                **_walk_options(**(changes or {})))


def test_the_cluster_has_two_nodes_of_one_cpu_on_the_loopback_address(cluster):
    nodes, _ = cluster
    alive = [n for n in ray.nodes() if n["Alive"]]
    assert [n["NodeManagerAddress"] for n in alive] == ["127.0.0.1", "127.0.0.1"]
    assert [n["Resources"]["CPU"] for n in alive] == [1.0, 1.0]
    assert nodes.address.startswith("127.0.0.1:")


@pytest.mark.parametrize("tickers_per_task", [1, None], ids=["ticker-tasks", "group-tasks"])
def test_forecasts_on_the_cluster_equal_the_local_pools(cluster, local, tmp_path, tickers_per_task):
    store = ForecastStore(tmp_path)
    report = run_on_cluster(store, universe(), tickers_per_task=tickers_per_task)
    assert sorted(report.computed) == sorted(local) and not report.failed
    assert report.tasks == (6 if tickers_per_task == 1 else 2)  # groups sized to the cluster's two CPUs
    for name, lines in entries(store, universe()).items():
        assert np.isfinite(local[name][:, 0]).sum() >= 100
        np.testing.assert_array_equal(lines, local[name])


def test_a_ticker_that_fails_in_its_worker_is_reported_and_nothing_of_it_is_stored(cluster, tmp_path):
    """The driver does not check the bars (precompute_forecasts takes the caller's frames as they are); the
    worker's walk-forward meets a bad close mid-series and fails that ticker alone, in its group."""
    frames = universe()
    bad = frames["T2"].copy()
    bad.iloc[170, bad.columns.get_loc("close")] = np.nan
    frames["T2"] = bad
    store = ForecastStore(tmp_path)
    report = run_on_cluster(store, frames)
    assert list(report.failed) == ["T2"] and "NaN" in report.failed["T2"] and "bar 170" in report.failed["T2"]
    assert sorted(report.computed) == ["T0", "T1", "T3", "T4", "T5"]
    stored = entries(store, frames)
    assert stored["T2"] is None and sorted(p.name for p in store.root.iterdir()) == sorted(
        f"{key}.npz" for key in _keys(frames, ["T0", "T1", "T3", "T4", "T5"]))


def _keys(frames, names):
    walk = make_walk_forward(OPTIONS["model"], **_walk_options())
    return [fingerprint(walk, frames[n]["close"].to_numpy(dtype=float), date_numbers_of(frames[n].index)) for n in names]


def _hold_a_cpu(flag: str, started: str) -> None:
    """A Ray task that takes its node's CPU until ``flag`` is removed (test scaffolding, not puffin_bt's)."""
    Path(started).touch()
    while os.path.exists(flag):
        time.sleep(0.02)


def test_a_worker_node_lost_mid_run_is_survived_with_the_same_forecasts_and_nothing_missing(cluster, tmp_path, capfd):
    """Ray reruns the tasks of the node that died on the node left (puffin_bt's tasks only compute; the driver
    stores): every ticker is computed once in the store, with the local pool's forecasts. Last in the module:
    the cluster keeps one node."""
    nodes, worker = cluster
    frames = {f"L{i}": ohlcv_frame(regime_closes(((300, 0.002), (200, -0.002), (100 + 20 * i, 0.001)), seed=10 + i))
              for i in range(6)}  # longer series: the tasks are still running when the node goes
    reference = ForecastStore(tmp_path / "local")
    precompute_forecasts(frames, model=OPTIONS["model"], executor="local", workers=2, store=reference,
                         **_walk_options(**SLOW))
    store = ForecastStore(tmp_path / "cluster")
    done: list[str] = []
    outcome = {}

    def on_done(ticker, status):
        done.append(ticker)

    def run():
        try:
            outcome["report"] = run_on_cluster(store, frames, SLOW, tickers_per_task=1, on_done=on_done)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = exc

    # The head's CPU is held while the run starts, so puffin_bt's tasks can only run on the worker node, which is
    # therefore busy (a task running, the rest queued) whenever it is removed: Ray must retry, and not by luck of
    # where its scheduler put the tasks (left to it, it sometimes ran them all on the head: nothing to retry).
    flag, started = tmp_path / "hold", tmp_path / "holding"
    flag.touch()
    on_head = NodeAffinitySchedulingStrategy(nodes.head_node.node_id, soft=False)
    holder = ray.remote(num_cpus=1)(_hold_a_cpu).options(scheduling_strategy=on_head).remote(str(flag), str(started))
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert started.exists()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        # The worker node takes the first ticker (no free CPU while the head's is held) and is removed while that
        # task runs (SLOW). Waiting for a first result instead found the node idle: nothing was retried.
        busy_by = time.monotonic() + 120
        while ray.available_resources().get("CPU", 0) > 0 and time.monotonic() < busy_by:
            time.sleep(0.02)
        assert ray.available_resources().get("CPU", 0) == 0
        time.sleep(0.5)
        alive_before, done_before = sum(n["Alive"] for n in ray.nodes()), len(done)
        nodes.remove_node(worker)
    finally:
        flag.unlink()  # the head takes the lost node's tasks and the rest
    thread.join(300)
    ray.get(holder, timeout=60)
    assert not thread.is_alive() and "error" not in outcome
    report = outcome["report"]
    assert alive_before == 2 and sum(n["Alive"] for n in ray.nodes()) == 1 and done_before < len(frames) - 1
    # Ray's word that a task of the lost node is rerun. Its log monitor forwards it to the driver's output
    # asynchronously: on a loaded machine it had not arrived when the run ended, so it is awaited (up to 60 s).
    said, deadline = "", time.monotonic() + 60
    while "will be retried" not in said and time.monotonic() < deadline:
        captured = capfd.readouterr()
        said += captured.out + captured.err
        time.sleep(0.2)
    assert "will be retried" in said
    assert sorted(report.computed) == sorted(frames) and not report.failed
    expected = entries(reference, frames, **SLOW)
    for name, lines in entries(store, frames, **SLOW).items():
        assert np.isfinite(expected[name][:, 0]).sum() >= 300
        np.testing.assert_array_equal(lines, expected[name])
    assert len(list(store.root.glob("*.npz"))) == len(frames) and not list(store.root.glob(".*.tmp"))
