"""What the option benches share (``bench_features``, ``bench_uncertainty``, ``bench_global``): cases timed
interleaved in one process, so a slow spell of the machine hits every case, and the machine line of the report."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable


def time_interleaved(cases: dict[str, Callable[[], object]], repeat: int) -> tuple[dict[str, list[float]], dict]:
    """Run every case ``repeat`` times, case after case in each round; their wall times and last results by name."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    results = {}
    for _ in range(repeat):
        for name, case in cases.items():
            started = time.perf_counter()
            results[name] = case()
            times[name].append(time.perf_counter() - started)
    return times, results


def machine_line() -> str:
    import torch

    return (f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def best_and_median(values: list[float]) -> str:
    return f"{min(values):7.2f} s  [{statistics.median(values):.2f} s]"
