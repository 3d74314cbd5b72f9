"""Worker processes: how many cores and how much memory this process may use, how workers start
(fork or spawn), and which processes are puffin_bt's own workers (they never start pools of their own).

Shared by the two process pools: the fold pool (``foldpool.py``: one walk-forward's cold folds)
and the ticker pool (``tickers.py``: one walk-forward per ticker).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings

from .errors import ConfigError

__all__ = [
    "alive", "available_cpus", "available_memory", "in_worker", "mark_worker", "quiet_fork_warning", "start_method",
    "worker_initargs"
]

_IN_WORKER = False  # set in puffin_bt's worker processes


PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_POLL_SECONDS = 0.5


def worker_initargs() -> tuple:
    """``initargs`` for ``mark_worker``, taken in the process (and thread) that starts the pool."""
    return os.getpid(), threading.current_thread() is threading.main_thread()


def mark_worker(parent_pid: int | None = None, from_main_thread: bool = False) -> None:
    """Pool initializer: this process is one of puffin_bt's workers, and dies with its parent.

    A worker outliving a killed parent (``kill -9``) would go on training for nobody, holding
    its memory. On Linux the kernel sends SIGKILL when the parent dies (``PR_SET_PDEATHSIG``);
    that signal follows the parent *thread* that started the worker, so it is used only for
    pools started from the main thread. Everywhere (and as the only means elsewhere) a daemon
    thread watches the parent's pid and ends the worker when it changes (within
    ``PARENT_POLL_SECONDS``).
    """
    global _IN_WORKER
    _IN_WORKER = True
    if parent_pid is None:
        return
    if from_main_thread and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    ppid = os.getppid()  # the parent, or a forkserver started by it
    if ppid != parent_pid and not alive(parent_pid):  # the parent died before the lines above took effect
        os._exit(1)
    threading.Thread(target=_exit_with_parent, args=(ppid,), name="puffin-bt-parent-watch", daemon=True).start()


def alive(pid) -> bool:
    """Whether process ``pid`` of this machine exists (one owned by someone else, or a pid that cannot be asked
    about, counts as alive: only a process known gone is dead)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError, OverflowError):  # exists, owned by someone else; or not a pid we can ask about
        return True
    return True


def _exit_with_parent(ppid: int) -> None:
    # When a process dies its children are handed to init (or a subreaper) at once: the pid changes.
    while os.getppid() == ppid:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


def in_worker() -> bool:
    """Whether this process is one of puffin_bt's workers, or a daemonic process (which may not have children)."""
    return _IN_WORKER or multiprocessing.current_process().daemon


@contextlib.contextmanager
def quiet_fork_warning():
    """Python >= 3.12 warns when forking a process that has threads; puffin_bt's forked children
    only run the walk-forward (single-threaded torch), as DataLoader's forked workers do."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*use of fork.*", category=DeprecationWarning)
        yield


def available_cpus() -> int:
    """Cores this process may run on (its affinity mask where the OS has one, e.g. in a container)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def available_memory(proc: str = "/proc", cgroup_root: str = "/sys/fs/cgroup") -> int | None:
    """Bytes this process can still use, where the system says: the least of the kernel's
    ``MemAvailable`` and the headroom under this process's cgroup limit (v2 ``memory.max`` -
    ``memory.current``, or v1 ``memory.limit_in_bytes`` - ``memory.usage_in_bytes``; in a
    container the cgroup limit is the one that matters). None where none of them is readable."""
    found = []
    try:
        with open(f"{proc}/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    paths = []
    try:
        with open(f"{proc}/self/cgroup") as fh:
            for line in fh:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if controllers == "":  # v2
                    paths.append((f"{cgroup_root}{path.rstrip('/')}", "memory.max", "memory.current"))
                elif "memory" in controllers.split(","):  # v1
                    paths.append((f"{cgroup_root}/memory{path.rstrip('/')}", "memory.limit_in_bytes",
                                  "memory.usage_in_bytes"))
    except (OSError, ValueError):
        pass
    # A namespaced container sees its own cgroup at the root of the mount.
    paths += [(cgroup_root, "memory.max", "memory.current"),
              (f"{cgroup_root}/memory", "memory.limit_in_bytes", "memory.usage_in_bytes")]
    for folder, limit_file, usage_file in paths:
        try:
            with open(f"{folder}/{limit_file}") as fh:
                limit = fh.read().strip()
            with open(f"{folder}/{usage_file}") as fh:
                usage = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if limit != "max" and int(limit) < 2**60:  # v1 writes "no limit" as ~2**63
            found.append(max(0, int(limit) - usage))
    return min(found) if found else None


def start_method(device="auto", threads: int | None = 1) -> str:
    """How local worker processes start: ``fork`` on Linux for CPU work, else ``spawn``.

    A forked child starts in milliseconds with torch and puffin_bt already imported; a
    spawned one re-imports them first (bench/README.md, "Design measurements"). The walk-forward runs torch
    single-threaded in the child (``threads=1``), the same precaution DataLoader's forked
    workers take. CUDA cannot be used after a fork, so CUDA work (or ``auto`` on a machine
    with a GPU) spawns, and so do children that would run more than one torch ``threads``:
    GNU OpenMP's thread pool does not survive a fork, and a forked child that uses it after
    the parent did hangs (``threads=2`` workers after one 2-thread matmul in the parent: tested).
    ``PUFFIN_BT_START_METHOD=spawn`` (or ``forkserver``) overrides it, e.g. for an application
    whose other threads must not be forked.
    """
    import torch

    forced = os.environ.get("PUFFIN_BT_START_METHOD")
    if forced:
        if forced not in multiprocessing.get_all_start_methods():
            raise ConfigError(f"PUFFIN_BT_START_METHOD={forced!r} is not available here; use one of "
                              f"{multiprocessing.get_all_start_methods()}")
        return forced
    if not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods():
        return "spawn"
    device = str(device)
    if (threads or 1) > 1:
        return "spawn"
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return "fork"
    return "spawn"
