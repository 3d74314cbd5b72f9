"""Run one command and report its wall time and peak memory as JSON (helper of bench_walkforward.py).

    python bench/_measure.py OUT_FILE ERR_FILE [--sample pss|rss|none] -- CMD ARGS...

The command's stdout/stderr go to OUT_FILE/ERR_FILE; this script prints one JSON line
``{"rc", "wall", "peak_rss_mb", "tree_peak_rss_mb", "tree_peak_pss_mb", "max_procs", "sampler_cpu_s"}``.

- ``peak_rss_mb``: ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` taken *here*, in a small parent —
  the largest peak RSS of any single process of the command's tree (the command and the
  workers it waited for). On Linux a child's ru_maxrss starts from the resident size of the
  process that forked it (exec records the pre-exec image's high-water mark), so measured
  from the benchmark itself (a few hundred MiB of torch) it would report the benchmark's
  memory; forked from this ~10 MiB interpreter the error is ~10 MiB.
- ``tree_peak_rss_mb`` / ``tree_peak_pss_mb``: the largest *sum* over the command's process
  tree (worker pools included) of VmRSS / Pss, sampled from /proc (Linux only; null
  elsewhere): RSS every 0.1 s, Pss every 1 s (``--sample pss``, the default). RSS counts
  shared library pages once per process (an upper bound); PSS splits them (what the tree
  costs the machine). Reading a torch process's ``smaps_rollup`` costs the kernel ~4 ms, so
  Pss sampled every 0.1 s took ~15% of a core from the command: a timing that needs every
  core (2 workers on 2 cores) runs with ``--sample none``. ``sampler_cpu_s`` is this helper's
  own CPU time, the sampling's cost.
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


PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4
RSS_EVERY, PSS_EVERY = 0.1, 1.0  # seconds between samples


def _rss_kb(pid):
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE_KB  # resident pages
    except (OSError, ValueError, IndexError):
        return 0


def _pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _die_with_parent():
    """Linux: the command gets SIGKILL when this helper dies (Ctrl-C or a kill of the benchmark), so
    no orphan keeps running — Lightning, for one, catches SIGTERM/SIGINT in the Darts worker."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass


def main() -> int:
    args = sys.argv[1:]
    sample = "pss"
    if len(args) > 3 and args[2] == "--sample":
        sample = args[3]
        del args[2:4]
    out_path, err_path, sep, *cmd = args
    if sep != "--" or not cmd or sample not in ("pss", "rss", "none"):
        print("usage: _measure.py OUT ERR [--sample pss|rss|none] -- CMD ...", file=sys.stderr)
        return 2
    can_sample = os.path.isdir("/proc/self") and sample != "none"
    tree_rss = tree_pss = 0
    max_procs = 0
    next_pss = 0.0
    with open(out_path, "w") as out, open(err_path, "w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err,
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        while proc.poll() is None:
            if can_sample:
                pids = _tree(proc.pid)
                tree_rss = max(tree_rss, sum(_rss_kb(pid) for pid in pids))
                if sample == "pss" and time.perf_counter() >= next_pss:
                    tree_pss = max(tree_pss, sum(_pss_kb(pid) for pid in pids))
                    next_pss = time.perf_counter() + PSS_EVERY
                max_procs = max(max_procs, len(pids))
            try:
                proc.wait(timeout=RSS_EVERY)
            except subprocess.TimeoutExpired:
                pass
        wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0  # KiB on Linux
    me = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"rc": proc.returncode, "wall": wall, "peak_rss_mb": peak,
                      "tree_peak_rss_mb": tree_rss / 1024.0 if can_sample else None,
                      "tree_peak_pss_mb": tree_pss / 1024.0 if can_sample and sample == "pss" else None,
                      "max_procs": max_procs if can_sample else None,
                      "sampler_cpu_s": me.ru_utime + me.ru_stime}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
