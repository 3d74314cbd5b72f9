"""Tuning studies in a database: a search killed mid-trial resumes to its total keeping every finished trial,
two processes share one study (each trial run once), and bad storage input is a clear StudyError."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from puffin_bt import StudyError
from puffin_bt.store import ForecastStore
from puffin_bt.tuning import tune

from .test_tuning import FIXED, frames

pytest.importorskip("optuna")

REPO = Path(__file__).resolve().parents[1]
SPACE = {"hidden_dim": [3, 4, 5, 6]}


def _study_trials(db: Path, timeout: float = 30) -> list[dict]:
    """Every trial of the study file as {number, state, candidate, pid, value, completed}, read with sqlite3."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=timeout) as con:
        rows = con.execute("SELECT t.trial_id, t.number, t.state, t.datetime_complete, v.value FROM trials t "
                           "LEFT JOIN trial_values v ON v.trial_id = t.trial_id ORDER BY t.number").fetchall()
        attrs = con.execute("SELECT trial_id, key, value_json FROM trial_user_attributes "
                            "WHERE key IN ('candidate', 'pid')").fetchall()
    by_id = {}
    for trial_id, key, value in attrs:
        by_id.setdefault(trial_id, {})[key] = json.loads(value)
    return [{"number": number, "state": state, "completed": completed, "value": value, **by_id.get(trial_id, {})}
            for trial_id, number, state, completed, value in rows]


def _tune_command(tmp_path: Path, out: Path, *extra: str, epochs: int = 1) -> list[str]:
    data = tmp_path / "A.csv"
    if not data.exists():
        frames()["A"].to_csv(data)
    return [sys.executable, "-m", "puffin_bt.cli", "tune", "--csv", f"A={data}", "--space", json.dumps(SPACE),
            "--objective", "mse", "--lookback", "5", "--min-train", "60", "--train-window", "80",
            "--retrain-every", "40", "--epochs", str(epochs), "--refit-epochs", str(epochs), "--patience", "none",
            "--num-layers", "1", "--device", "cpu", "--no-plot", "--out", str(out), "--cache-dir",
            str(tmp_path / f"cache-{out.name}"), *extra]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_a_tune_killed_mid_trial_resumes_to_its_total_keeping_every_finished_trial(tmp_path):
    out = tmp_path / "tune"
    command = _tune_command(tmp_path, out, epochs=150)
    proc = subprocess.Popen(command, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db, deadline = out / "study.db", time.time() + 300
    try:
        while time.time() < deadline:  # kill it once a trial has finished and the next is running
            assert proc.poll() is None, proc.communicate()
            os.kill(proc.pid, signal.SIGSTOP)  # frozen, so the states read are those it is killed in
            try:
                states = [t["state"] for t in _study_trials(db, timeout=0.5)]
            except sqlite3.OperationalError:  # not created yet, or frozen while writing it
                states = []
            if "COMPLETE" in states and "RUNNING" in states:
                break
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = [t for t in _study_trials(db) if t["state"] == "COMPLETE"]
    assert 1 <= len(before) < len(SPACE["hidden_dim"])
    assert any(t["state"] == "RUNNING" for t in _study_trials(db))  # the trial it was killed in

    again = subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "resuming the study" in again.stderr
    after = _study_trials(db)
    complete = [t for t in after if t["state"] == "COMPLETE"]
    # The total: one finished trial per grid point, the killed one failed and its point run again.
    assert sorted(t["candidate"] for t in complete) == [0, 1, 2, 3]
    assert [t for t in after if t["state"] == "RUNNING"] == []
    assert any(t["state"] == "FAIL" for t in after)
    kept = {t["number"]: (t["completed"], t["value"]) for t in complete}
    assert all(kept[t["number"]] == (t["completed"], t["value"]) for t in before)  # finished trials not rerun
    rerun = [t for t in complete if t["number"] not in {b["number"] for b in before}]
    assert rerun and {t["pid"] for t in rerun}.isdisjoint({t["pid"] for t in before})  # the new process ran them
    table = (out / "trials.csv").read_text().splitlines()
    assert len(table) == 1 + 4
    stats = json.loads((out / "tune_stats.json").read_text())
    assert stats["dsr"]["n_trials"] == 4 and stats["study"]["name"] == "puffin-bt"


@pytest.mark.parametrize("search", ["grid", "optuna"])
def test_two_processes_share_one_sqlite_study_each_trial_run_once(tmp_path, search):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    commands = [_tune_command(tmp_path, tmp_path / name, "--storage", storage, "--study-name", "shared", "--search",
                              search, "--trials", "4", epochs=60) for name in ("one", "two")]
    procs = [subprocess.Popen(c, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    trials = _study_trials(tmp_path / "shared.db")
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    assert len(complete) == 4  # the study's total, not 4 per process
    if search == "grid":
        assert sorted(t["candidate"] for t in complete) == [0, 1, 2, 3]  # every grid point once, none twice
    assert len({t["pid"] for t in complete}) == 2  # both processes ran trials
    for name in ("one", "two"):  # and each reports every trial of the study
        stats = json.loads((tmp_path / name / "tune_stats.json").read_text())
        assert stats["dsr"]["n_trials"] == 4
        assert len((tmp_path / name / "trials.csv").read_text().splitlines()) == 1 + 4


_POP = """
import sys, time, warnings
from puffin_bt.study import open_storage
import optuna
optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.simplefilter("ignore")
study = optuna.load_study(storage=open_storage(sys.argv[1]), study_name="queue")
start = float(sys.argv[2])
while time.time() < start:
    pass
print(" ".join(str(study.ask().number) for _ in range(int(sys.argv[3]))))
"""


def test_two_processes_popping_a_sqlite_queue_at_once_never_pop_the_same_trial(tmp_path):
    # The race behind a grid search's "Trial#0 has already finished": SQLite ignores SELECT ... FOR UPDATE and
    # Python's sqlite3 begins a transaction only at the first write, so both processes read a trial as waiting
    # and both marked it running. Many pops started at the same instant make the race near certain without
    # the fix (2 of 60 trials were popped twice on the first try).
    from puffin_bt.study import open_storage

    optuna = pytest.importorskip("optuna")
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    study = optuna.create_study(storage=open_storage(url), study_name="queue")
    for index in range(60):
        study.enqueue_trial({}, user_attrs={"candidate": index})
    start = str(time.time() + 3)
    procs = [subprocess.Popen([sys.executable, "-c", _POP, url, start, "30"], env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    popped = [[int(n) for n in out.split()] for out, _ in outputs]
    assert [len(p) for p in popped] == [30, 30]
    assert set(popped[0]).isdisjoint(popped[1])
    assert sorted(popped[0] + popped[1]) == list(range(60))


@pytest.mark.parametrize("search", ["grid", "random", "optuna"])
def test_a_larger_total_runs_only_the_missing_trials_and_ranks_them_all(tmp_path, search):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    space = {"hidden_dim": [3, 4, 5], "lookback": [5, 6]}
    kw = dict(search=search, space=space, objective="mse", device="cpu", storage=storage, **FIXED)
    ran = []

    def on_trial(number, params, value):
        ran.append(number)

    first = tune(frames(), trials=2, store=ForecastStore(tmp_path / "a"), on_trial=on_trial, **kw)
    assert len(first.trials) == 2 and len(ran) == 2
    second = tune(frames(), trials=4, store=ForecastStore(tmp_path / "b"), on_trial=on_trial, **kw)
    assert len(ran) == 4 and ran[2:] == [3, 4]  # only trials 3 and 4 ran
    assert len(second.trials) == 4 and list(second.trial_returns.columns) == [1, 2, 3, 4]
    assert second.selection["dsr"]["n_trials"] == 4
    # The first two trials' rows and returns come back from the study as they were recorded.
    old = first.trials.set_index("trial").sort_index()
    pd.testing.assert_frame_equal(second.trials.set_index("trial").sort_index().loc[old.index, old.columns], old)
    pd.testing.assert_frame_equal(second.trial_returns[[1, 2]], first.trial_returns)
    if search != "optuna":  # grid and random: the same four trials, rows and returns, as a search kept in memory
        plain = tune(frames(), trials=4, store=ForecastStore(tmp_path / "c"), **{**kw, "storage": None})
        cols = ["trial", *space, "mse", "sharpe", "psr", "total_return", "trades"]
        pd.testing.assert_frame_equal(second.trials[cols], plain.trials[cols])
        pd.testing.assert_frame_equal(second.trial_returns, plain.trial_returns, check_names=False)


@pytest.mark.parametrize("storage, fragment", [
    ("not a url", "is not a database URL"),
    ("postgresql://user:secret@127.0.0.1:1/db", "database driver"),
    ("sqlite:////no/such/folder/study.db", "does not exist"),
])
def test_a_bad_storage_url_is_a_study_error_naming_it_without_its_password(storage, fragment):
    with pytest.raises(StudyError, match=fragment) as caught:
        tune(frames(), storage=storage, space=SPACE, store=False, device="cpu", **FIXED)
    assert "secret" not in str(caught.value)


def test_an_unreachable_database_is_a_study_error(tmp_path):
    folder = tmp_path / "a-folder.db"
    folder.mkdir()  # SQLite cannot open a folder as its file
    with pytest.raises(StudyError, match="cannot use the study database"):
        tune(frames(), storage=f"sqlite:///{folder}", space=SPACE, store=False, device="cpu", **FIXED)


@pytest.mark.parametrize("change, fragment", [
    (dict(objective="sharpe"), "objective='mse', not 'sharpe'"),
    (dict(space={"hidden_dim": [3, 7]}), "space="),
    (dict(commission=0.002), "commission at its default, not commission=0.002"),
])
def test_a_study_of_another_search_is_refused(tmp_path, change, fragment):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    kw = dict(space={"hidden_dim": [3, 4]}, objective="mse", storage=storage, device="cpu", trials=1,
              store=ForecastStore(tmp_path), **FIXED)
    tune(frames(), **kw)
    with pytest.raises(StudyError, match=fragment.replace("[", r"\[")):
        tune(frames(), **{**kw, **change})
    tune(frames(), **{**kw, **change, "study_name": "another"})  # another name is another study
    tune(frames(), **{**kw, "workers": 1, "threads": 1})  # where forecasts are computed may differ between processes


def test_a_locked_sqlite_file_is_a_study_error_after_the_timeout(tmp_path, monkeypatch):
    import puffin_bt.study as study

    db = tmp_path / "study.db"
    kw = dict(space={"hidden_dim": [3, 4]}, objective="mse", storage=f"sqlite:///{db}", device="cpu", trials=1,
              store=ForecastStore(tmp_path), **FIXED)
    tune(frames(), **kw)
    monkeypatch.setattr(study, "SQLITE_LOCK_TIMEOUT_S", 0.5)
    holder = sqlite3.connect(db)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StudyError, match="locked by another process"):
            tune(frames(), **{**kw, "trials": 2})
    finally:
        holder.rollback()
        holder.close()


def test_the_cli_reports_a_bad_storage_in_one_line_and_exit_2(tmp_path):
    proc = subprocess.run(_tune_command(tmp_path, tmp_path / "out", "--storage", "mysql://u:secret@nowhere/x"),
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("puffin-bt: error:") and "storage=" in lines[0]
    assert "secret" not in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing left behind



def test_a_trial_another_process_failed_as_stale_is_dropped_with_a_message_not_a_crash(tmp_path, capsys):
    from puffin_bt.study import Study, open_storage

    optuna = pytest.importorskip("optuna")
    url = f"sqlite:///{tmp_path / 'stale.db'}"
    study = Study(open_storage(url), "stale", {"model": "lstm"}, maximize=False, url=url)
    [(trial, params)] = study._claim(1, lambda trial, trials: {"hidden_dim": 3})
    # Another process saw no heartbeat for GRACE_S and failed the trial while this one was still training it.
    study.storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)
    returns = pd.Series([0.01, -0.02], index=pd.to_datetime(["2020-01-02", "2020-01-03"]))
    study._finish(trial, 0.5, {"trial": 1, "mse": 0.5}, returns)
    assert "trial 1 was marked failed by another process" in capsys.readouterr().err
    assert [t.state.name for t in study.study.get_trials()] == ["FAIL"]
    assert study.complete() == [] and study.mine == set()
