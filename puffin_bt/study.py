"""A tuning study kept in a database (Optuna's RDB storage): a killed search resumes where it stopped,
and processes on one or many machines share it, each trial run once. Every finished trial carries its
result row and its daily returns, so whoever reads the study can rank all trials and compute DSR and PBO.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator

from .errors import ConfigError, StudyError
from .processes import alive

__all__ = ["Study", "open_storage", "shown_url"]

# A process records a heartbeat for its running trials every HEARTBEAT_S seconds; a running trial
# without one for GRACE_S seconds belongs to a dead process (on any machine) and is failed, so its
# parameters run again. On the machine that ran it a dead process is seen at once (its pid is gone).
HEARTBEAT_S = 5
GRACE_S = 30
# How long a process waits for a SQLite file another process holds locked before giving up.
SQLITE_LOCK_TIMEOUT_S = 30.0
SCHEMA_ATTEMPTS = 5  # tries at opening a database whose tables another process is creating at the same moment
POLL_S = 1.0  # how often a process with nothing left to claim looks at the others' running trials
HOST = socket.gethostname()


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("a tuning study in a database (storage=...) and search='optuna' need Optuna: "
                          "pip install 'puffin_bt[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def shown_url(url: str) -> str:
    """``url`` with its password replaced by ***."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given
        return url


@contextlib.contextmanager
def storage_errors(url: str) -> Iterator[None]:
    """Database failures as StudyError naming the URL and the fix (a locked SQLite file, an unreachable server)."""
    import sqlalchemy.exc

    try:
        yield
    except sqlalchemy.exc.OperationalError as exc:
        if "locked" in str(exc.orig):
            raise StudyError(f"the study database {shown_url(url)} stayed locked by another process for "
                             f"{SQLITE_LOCK_TIMEOUT_S:g} s; close the program holding it, or put the study on a "
                             "server (storage=postgresql://...) for many processes at once") from None
        raise StudyError(f"cannot use the study database {shown_url(url)}: {' '.join(str(exc.orig).split())}; check "
                         "that the server is running and the URL (host, port, user, database) is right") from None
    except sqlalchemy.exc.DBAPIError as exc:
        raise StudyError(f"the study database {shown_url(url)} failed: {' '.join(str(exc.orig).split())}") from None


def open_storage(url):
    """Optuna's RDB storage at ``url`` (any SQLAlchemy URL), with heartbeats; a StudyError for a URL that is
    malformed, needs a missing driver, or cannot be reached."""
    optuna = _optuna()
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    example = "sqlite:///study.db or postgresql://user:password@host/db"
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, TypeError, ValueError):
        raise StudyError(f"storage={url!r} is not a database URL; use e.g. {example}") from None
    engine_kwargs = {}
    if parsed.get_backend_name() == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": SQLITE_LOCK_TIMEOUT_S}
        folder = os.path.dirname(os.path.abspath(parsed.database or ""))
        if parsed.database and not os.path.isdir(folder):
            raise StudyError(f"storage={shown_url(url)}: the folder {folder!r} does not exist; create it or use "
                             "another path")
    with storage_errors(url), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeat_interval is marked experimental
        try:
            for attempt in itertools.count(1):
                try:
                    storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                                         heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
                    if parsed.get_backend_name() == "sqlite":
                        _serialised(storage.engine)
                    return storage
                except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as exc:
                    # Two processes opening a new database create its tables at once: one of them loses the race
                    # (a duplicate schema version, or a table that "already exists"); the tables are there when it
                    # tries again.
                    lost_race = isinstance(exc, sqlalchemy.exc.IntegrityError) or "already exists" in str(exc.orig)
                    if not lost_race or attempt == SCHEMA_ATTEMPTS:
                        raise
                    time.sleep(0.2 * attempt)
        except ImportError as exc:
            raise StudyError(f"storage={shown_url(url)} needs a database driver that is not installed ({exc}); "
                             "pip install it (e.g. psycopg2-binary for PostgreSQL, pymysql for MySQL)") from None
        except sqlalchemy.exc.ArgumentError as exc:
            raise StudyError(f"storage={shown_url(url)} is not usable ({exc}); use e.g. {example}") from None


def _serialised(engine) -> None:
    """Make every transaction on a SQLite ``engine`` take the database's write lock when it begins.

    Python's sqlite3 starts a transaction only at the first write, so Optuna's "read the trial, then mark it
    running if it is still waiting" (SELECT ... FOR UPDATE, which SQLite ignores) lets two processes both read
    *waiting* and both pop the same queued trial: both then run it and the second to finish fails. With
    BEGIN IMMEDIATE the read and the write happen under one lock; other processes wait (up to the busy timeout).
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _manual_transactions(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # sqlite3 emits no BEGIN of its own; the "begin" event does

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened while creating the tables predate the listeners


class Study:
    """One named study: created with the search's ``setup`` (objective, space, data, ...) or loaded if a study
    of that name exists with the same setup; a StudyError when it was made for another one."""

    def __init__(self, storage, name: str, setup: dict, maximize: bool, url: str | None = None) -> None:
        self.optuna = _optuna()
        self.url = url
        self.storage = self.optuna.storages.InMemoryStorage() if storage is None else storage
        with self.errors():
            self.study = self.optuna.create_study(storage=self.storage, study_name=name, load_if_exists=True,
                                                  direction="maximize" if maximize else "minimize")
            stored = self.study.user_attrs.get("setup")
            if stored is None:
                self.study.set_user_attr("setup", setup)
            else:
                _require_same_setup(stored, setup, name, url)
        self.name = name
        self.mine: set[int] = set()  # this process's running trials (their ids), kept alive by heartbeats
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def errors(self):
        return storage_errors(self.url) if self.url else contextlib.nullcontext()

    def run(self, total: int, batch_size: int, propose: Callable, run_batch: Callable,
            refill: Callable | None = None) -> None:
        """Run trials until ``total`` of them are complete. ``refill(trials)`` may enqueue parameters (grid and
        random searches); ``propose(trial, trials)`` gives a claimed trial's parameters, or None when another
        process holds its slot (the trial is then dropped); ``run_batch(params list, trial numbers)`` gives each
        trial's (objective, row, returns). Waits for other processes' running trials before it returns."""
        heart = threading.Thread(target=self._beat, daemon=True)
        heart.start()
        try:
            with self.errors():
                while True:
                    trials = self._reap()
                    done = sum(t.state.name == "COMPLETE" for t in trials)
                    running = sum(t.state.name == "RUNNING" for t in trials)
                    if done >= total:
                        return
                    free = total - done - running
                    if free > 0 and refill is not None:
                        refill(trials)
                    claimed = self._claim(min(batch_size, free), propose) if free > 0 else []
                    if not claimed:
                        time.sleep(POLL_S)
                        continue
                    results = run_batch([p for _, p in claimed], [t.number + 1 for t, _ in claimed])
                    for (trial, _), (value, row, returns) in zip(claimed, results):
                        self._finish(trial, value, row, returns)
        finally:
            self._stop.set()

    def complete(self) -> list:
        """The study's finished trials, in order, each with ``user_attrs['row']`` and ``['returns']``."""
        with self.errors():
            return [t for t in self.study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]

    def count(self) -> int:
        """Every trial the search ran to the end (DSR's N)."""
        return len(self.complete())

    # ------------------------------------------------------------------ internals

    def _claim(self, n: int, propose: Callable) -> list:
        claimed = []
        for _ in range(n):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "heartbeat is supposed to be used with optimize": we beat ourselves
                trial = self.study.ask()
            with self._lock:
                self.mine.add(trial._trial_id)
            self._heartbeat(trial._trial_id)
            trial.set_user_attr("host", HOST)
            trial.set_user_attr("pid", os.getpid())
            params = propose(trial, self.study.get_trials(deepcopy=False))
            if params is None:
                trial.set_user_attr("dropped", "another process holds its slot")
                self._drop(trial)
                break
            claimed.append((trial, params))
        return claimed

    def _finish(self, trial, value: float, row: dict, returns) -> None:
        sign = 1.0 if self.study.direction.name == "MAXIMIZE" else -1.0
        try:
            trial.set_user_attr("row", _jsonable(row))
            trial.set_user_attr("returns", {"dates": [d.isoformat() for d in returns.index],
                                            "values": [float(v) for v in returns.to_numpy()]})
            self.study.tell(trial, value if math.isfinite(value) else -sign * math.inf)
        except self.optuna.exceptions.UpdateFinishedTrialError:
            # Another process failed it as stale (no heartbeat for GRACE_S): its parameters run again there or
            # here, so this result is dropped rather than counted twice.
            print(f"puffin-bt: trial {trial.number + 1} was marked failed by another process (no heartbeat for "
                  f"{GRACE_S} s); its result is dropped and its parameters run again", file=sys.stderr)
        finally:
            with self._lock:
                self.mine.discard(trial._trial_id)

    def _drop(self, trial) -> None:
        self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
        with self._lock:
            self.mine.discard(trial._trial_id)

    def _reap(self) -> list:
        """Fail the running trials of dead processes (no heartbeat for GRACE_S, or a pid gone on this machine);
        their parameters are then free to run again. Returns the study's trials."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fail_stale_trials is marked experimental
            self.optuna.storages.fail_stale_trials(self.study)
        trials = self.study.get_trials(deepcopy=False)
        dead = [t for t in trials if t.state.name == "RUNNING" and t._trial_id not in self.mine
                and t.user_attrs.get("host") == HOST and "pid" in t.user_attrs and not alive(t.user_attrs["pid"])]
        for t in dead:
            with contextlib.suppress(self.optuna.exceptions.UpdateFinishedTrialError):
                self.storage.set_trial_state_values(t._trial_id, state=self.optuna.trial.TrialState.FAIL)
        return self.study.get_trials(deepcopy=False) if dead else trials  # read again only when states changed

    def _heartbeat(self, trial_id: int) -> None:
        if hasattr(self.storage, "record_heartbeat"):
            self.storage.record_heartbeat(trial_id)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with self._lock:
                ids = list(self.mine)
            for trial_id in ids:
                with contextlib.suppress(Exception):  # a missed beat only costs time; the next one may pass
                    self._heartbeat(trial_id)


def _require_same_setup(stored: dict, setup: dict, name: str, url: str | None) -> None:
    where = f"study {name!r} in {shown_url(url)}" if url else f"study {name!r}"
    for key in sorted(set(stored) | set(setup)):
        if _canonical(stored.get(key)) != _canonical(setup.get(key)):
            before, now = stored.get(key), setup.get(key)
            if key == "data":
                what = "other data (tickers, dates or prices)"
            elif isinstance(before, dict) and isinstance(now, dict):  # the backtest options: name the one that differs
                key = next(k for k in sorted(set(before) | set(now)) if _canonical(before.get(k)) != _canonical(now.get(k)))
                what = f"{_shown(key, before)}, not {_shown(key, now)}"
            else:
                what = f"{key}={before!r}, not {now!r}"
            raise StudyError(f"{where} was made with {what}: its trials are not comparable with this search's; "
                             "pass another study_name (--study-name) or the same settings")


def _shown(key: str, options: dict) -> str:
    return f"{key}={options[key]!r}" if key in options else f"{key} at its default"


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _jsonable(row: dict) -> dict:
    return json.loads(json.dumps(row, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
