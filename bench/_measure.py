"""Run one command and report its wall time and peak memory as JSON (helper of bench_walkforward.py).

    python bench/_measure.py OUT_FILE ERR_FILE -- CMD ARGS...

The command's stdout/stderr go to OUT_FILE/ERR_FILE; this script prints one JSON line
``{"rc", "wall", "peak_rss_mb", "tree_peak_rss_mb", "tree_peak_pss_mb", "max_procs"}``.

- ``peak_rss_mb``: ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` taken *here*, in a small parent —
  the largest peak RSS of any single process of the command's tree (the command and the
  workers it waited for). On Linux a child's ru_maxrss starts from the resident size of the
  process that forked it (exec records the pre-exec image's high-water mark), so measured
  from the benchmark itself (a few hundred MiB of torch) it would report the benchmark's
  memory; forked from this ~10 MiB interpreter the error is ~10 MiB.
- ``tree_peak_rss_mb`` / ``tree_peak_pss_mb``: the largest *sum* over the command's process
  tree (worker pools included) of VmRSS / Pss, sampled every 0.1 s from /proc (Linux only;
  null elsewhere). RSS counts shared library pages once per process (an upper bound); PSS
  splits them (what the tree costs the machine).
"""

import json
import os
import resource
import subprocess
import sys
import time


def _children_map():
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(name))
    return kids


def _tree(root):
    kids, out, todo = _children_map(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, ()))
    return out


def _mem_kb(pid):
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                    break
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
    except (OSError, ValueError):
        pass
    return rss, pss


def _die_with_parent():
    """Linux: the command gets SIGKILL when this helper dies (Ctrl-C or a kill of the benchmark), so
    no orphan keeps running — Lightning, for one, catches SIGTERM/SIGINT in the Darts worker."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass


def main() -> int:
    out_path, err_path, sep, *cmd = sys.argv[1:]
    if sep != "--" or not cmd:
        print("usage: _measure.py OUT ERR -- CMD ...", file=sys.stderr)
        return 2
    can_sample = os.path.isdir("/proc/self")
    tree_rss = tree_pss = 0
    max_procs = 0
    with open(out_path, "w") as out, open(err_path, "w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err,
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        while proc.poll() is None:
            if can_sample:
                pids = _tree(proc.pid)
                rss = pss = 0
                for pid in pids:
                    r, p = _mem_kb(pid)
                    rss += r
                    pss += p
                tree_rss, tree_pss = max(tree_rss, rss), max(tree_pss, pss)
                max_procs = max(max_procs, len(pids))
            try:
                proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
        wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0  # KiB on Linux
    print(json.dumps({"rc": proc.returncode, "wall": wall, "peak_rss_mb": peak,
                      "tree_peak_rss_mb": tree_rss / 1024.0 if can_sample else None,
                      "tree_peak_pss_mb": tree_pss / 1024.0 if can_sample else None,
                      "max_procs": max_procs if can_sample else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
