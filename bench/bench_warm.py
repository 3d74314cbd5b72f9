#!/usr/bin/env python
"""Warm re-runs without torch: the time of ``import puffin_bt`` and of ``puffin-bt backtest`` re-run with new
thresholds from a warm forecast store, next to the same with torch imported (what both cost before torch was
imported lazily) and next to the cold run; each in a fresh interpreter, interleaved, in one run.

    python bench/bench_warm.py                 # the default backtest (4 bundled tickers, default model), 5 repeats
    python bench/bench_warm.py --repeat 9 --plot      # with the charts (PNG, trades.html) as well

Without charts by default, as bench_walkforward.py's warm re-run (the figure issue 29 started from).

Targets (issue 29): ``import puffin_bt`` <= 1.2 s, the warm re-run <= 2.5 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(code: str) -> tuple[float, float, str]:
    """Wall and CPU seconds (user + system, its worker processes included) of a fresh interpreter running
    ``code`` (start-up included), and its last stdout line. CPU time moves less than wall time on a busy machine."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    seconds, cpu = time.perf_counter() - started, children_cpu() - cpu
    if done.returncode != 0:
        sys.exit(f"failed: {code}\n{done.stderr[-2000:]}")
    return seconds, cpu, (done.stdout.strip().splitlines() or [""])[-1]


def backtest_code(argv: list[str], with_torch: bool) -> str:
    return ("import sys\n" + ("import torch\n" if with_torch else "")
            + f"from puffin_bt.cli import main\nmain({argv!r})\nprint('torch' in sys.modules)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--plot", action="store_true", help="write the charts too (puffin-bt backtest's default)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="puffin-bench-warm-") as tmp:
        base = ["backtest", "--cache-dir", f"{tmp}/cache", "--quiet", "--force", *([] if args.plot else ["--no-plot"])]
        cold_seconds, cold_cpu, _ = timed(backtest_code([*base, "--out", f"{tmp}/cold"], False))
        cases = {
            "import puffin_bt": "import sys, puffin_bt\nprint('torch' in sys.modules)",
            "import puffin_bt + import torch": "import sys, puffin_bt, torch\nprint('torch' in sys.modules)",
            "warm re-run, new thresholds": backtest_code(
                [*base, "--out", f"{tmp}/warm", "--entry", "0.003", "--exit", "0.003"], False),
            "warm re-run + import torch": backtest_code(
                [*base, "--out", f"{tmp}/warm_torch", "--entry", "0.003", "--exit", "0.003"], True),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        cpu_times: dict[str, list[float]] = {name: [] for name in cases}
        torch_seen = {}
        for _ in range(args.repeat):
            for name, code in cases.items():
                seconds, cpu, torch_seen[name] = timed(code)
                times[name].append(seconds)
                cpu_times[name].append(cpu)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"work: puffin-bt backtest, the bundled 4 tickers, default model{', charts' if args.plot else ', --no-plot'}; "
          f"each line a fresh interpreter (start-up included), best of {args.repeat} [median], interleaved")
    print(f"  {'':<34} {'wall, best [median]':>22}  {'CPU, best':>9}")
    print(f"  {'cold run (trains; once)':<34} {cold_seconds:7.2f} s {'':>14}  {cold_cpu:7.2f} s")
    for name, values in times.items():
        print(f"  {name:<34} {min(values):7.2f} s  [{statistics.median(values):6.2f} s]  {min(cpu_times[name]):7.2f} s"
              f"  torch imported: {torch_seen[name]}")


if __name__ == "__main__":
    main()
