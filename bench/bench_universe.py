"""Universe benchmark: the forecasts of N synthetic tickers, today's per-ticker path against tickers batched.

N tickers of seeded geometric Brownian motion (daily volatility 1-3%, drawn per ticker; first dates
staggered over a year) x 8 1/2 years of daily bars (2,142), walked forward with the default model into a forecast
store by ``puffin_bt.precompute_forecasts`` with ``workers="auto"`` (one process per core), two ways, side by
side in one run, each in a fresh interpreter:

- ``per-ticker``: ``tickers_per_task=1``: each ticker its own walk-forward, one task per ticker (today's path);
- ``batched``: ``tickers_per_task=None``: tickers in groups whose folds train together on the batched engine.

Per run: wall time from after the imports and the data to the last forecast stored (tickers/s), CPU seconds of
the whole process tree per ticker, peak memory (``_measure.py``: the tree's resident pages every 0.1 s, and the
largest process), other processes' share of the machine during the run, and the load average before and after.
Both paths' stored forecasts are compared bit for bit. Progress goes to stderr, the report to stdout.

    python bench/bench_universe.py                      # N = 16, 64, 256, default LSTM and GRU (~45 min here)
    python bench/bench_universe.py --quick              # tiny models, N = 4, 8 (< 1 min)
    python bench/bench_universe.py --n 16 64 --models lstm --json /tmp/universe.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BARS = 2142  # 8 1/2 years of daily bars
QUICK = dict(hidden_dim=8, num_layers=1, epochs=2, lookback=10, min_train=120, retrain_every=40, train_window=200)
PATHS = {"per-ticker": 1, "batched": None}


def synthetic_universe(n: int, bars: int, seed: int = 0) -> dict:
    """``n`` OHLCV frames of seeded GBM: daily volatility 1-3% and drift drawn per ticker, first dates staggered."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frames = {}
    for i in range(n):
        vol = rng.uniform(0.01, 0.03)
        drift = rng.normal(0.0003, 0.0003)
        closes = 50.0 * np.exp(np.cumsum(rng.normal(drift - vol ** 2 / 2, vol, bars)))
        opens = closes * np.exp(rng.normal(0, vol / 4, bars))
        high = np.maximum(opens, closes) * (1 + np.abs(rng.normal(0, vol / 2, bars)))
        low = np.minimum(opens, closes) * (1 - np.abs(rng.normal(0, vol / 2, bars)))
        start = pd.Timestamp("2004-08-19") + pd.offsets.BDay(int(rng.integers(0, 252)))
        index = pd.bdate_range(start, periods=bars, name="date")
        frames[f"SYN{i:03d}"] = pd.DataFrame({"open": opens, "high": high, "low": low, "close": closes,
                                              "volume": rng.integers(10**5, 10**7, bars).astype(float)}, index=index)
    return frames


def busy_seconds() -> float | None:
    """CPU seconds all cores spent busy since boot (/proc/stat), None where there is none."""
    try:
        with open("/proc/stat") as fh:
            fields = [float(x) for x in fh.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def child(args) -> None:
    """One measured run (in its own interpreter): data, then the timed forecast phase; prints JSON."""
    import resource

    import numpy as np

    sys.path.insert(0, str(ROOT))
    from puffin_bt.store import ForecastStore
    from puffin_bt.tickers import precompute_forecasts

    frames = synthetic_universe(args.n, args.bars)
    options = dict(QUICK) if args.quick else {}
    store = ForecastStore(args.store)

    def cpu() -> float:
        mine, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return mine.ru_utime + mine.ru_stime + kids.ru_utime + kids.ru_stime

    cpu0, busy0, t0 = cpu(), busy_seconds(), time.perf_counter()
    report = precompute_forecasts(frames, model=args.model, store=store, workers="auto",
                                  tickers_per_task=PATHS[args.path], device="cpu", **options)
    wall, used, busy1 = time.perf_counter() - t0, cpu() - cpu0, busy_seconds()
    others = None
    if busy0 is not None and busy1 is not None:
        others = max(0.0, (busy1 - busy0) - used) / (wall * os.cpu_count())
    folds = sum(1 for p in store.root.glob("*.npz"))
    finite = sum(int(np.isfinite(store.load(p.stem)[0][:, 0]).sum()) for p in store.root.glob("*.npz"))
    print(json.dumps({"wall": wall, "cpu": used, "others": others, "computed": len(report.computed),
                      "failed": report.failed, "tasks": report.tasks, "entries": folds, "forecasts": finite}))


def measure(args, model: str, n: int, path: str, store: Path) -> dict:
    """Run ``child`` through ``_measure.py`` (peak memory of the process tree); the child's figures with it."""
    out, err = store.parent / f"{model}-{n}-{path}.out", store.parent / f"{model}-{n}-{path}.err"
    cmd = [sys.executable, str(HERE / "bench_universe.py"), "--child", "--model", model, "--n", str(n),
           "--path", path, "--store", str(store), "--bars", str(args.bars)] + (["--quick"] if args.quick else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    load_before = os.getloadavg()
    measured = json.loads(subprocess.run([sys.executable, str(HERE / "_measure.py"), str(out), str(err), "--sample",
                                          "rss", "--", *cmd], capture_output=True, text=True, env=env,
                                         check=True).stdout)
    if measured["rc"] != 0:
        raise SystemExit(f"{model} N={n} {path} failed:\n{err.read_text()[-3000:]}")
    figures = json.loads(out.read_text().strip().splitlines()[-1])
    return {**figures, "peak_tree_rss_mb": measured["tree_peak_rss_mb"], "peak_process_rss_mb": measured["peak_rss_mb"],
            "load_before": load_before, "load_after": os.getloadavg()}


def same_forecasts(a: Path, b: Path) -> bool:
    """Whether two stores hold the same entries, bit for bit."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from puffin_bt.store import ForecastStore

    sa, sb = ForecastStore(a), ForecastStore(b)
    keys = sorted(p.stem for p in sa.root.glob("*.npz"))
    if keys != sorted(p.stem for p in sb.root.glob("*.npz")):
        return False
    return all(np.array_equal(sa.load(k)[0], sb.load(k)[0], equal_nan=True) for k in keys)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", help="universe sizes (default 16 64 256; --quick: 4 8)")
    parser.add_argument("--models", nargs="+", default=None, choices=("lstm", "gru"),
                        help="default: lstm gru (gru on the first two sizes only)")
    parser.add_argument("--bars", type=int, default=None, help=f"bars per ticker (default {BARS}; --quick: 600)")
    parser.add_argument("--quick", action="store_true", help="tiny models and universes: a smoke run")
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=tuple(PATHS), help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.bars = args.bars or (600 if args.quick else BARS)
    if args.child:
        args.n = args.n[0]
        child(args)
        return 0
    sizes = args.n or ([4, 8] if args.quick else [16, 64, 256])
    plan = [(m, n) for m in (args.models or ["lstm", "gru"]) for n in sizes
            if args.models or m == "lstm" or n in sizes[:2]]
    started, load_start = time.perf_counter(), os.getloadavg()
    print(f"# bench_universe: {os.cpu_count()} cores, load average {load_start[0]:.2f} {load_start[1]:.2f} "
          f"{load_start[2]:.2f}; {args.bars} bars per ticker; {'tiny models (--quick)' if args.quick else 'default model'}",
          file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="puffin-universe-") as tmp:
        for model, n in plan:
            runs = {}
            for path in PATHS:
                store = Path(tmp) / f"{model}-{n}-{path}"
                print(f"# {model} N={n} {path} ...", file=sys.stderr, flush=True)
                runs[path] = measure(args, model, n, path, store)
                r = runs[path]
                print(f"#   {r['wall']:.1f} s, {n / r['wall']:.2f} tickers/s, {r['cpu'] / n:.2f} CPU-s/ticker, "
                      f"{r['tasks']} tasks, others {100 * (r['others'] or 0):.0f}%", file=sys.stderr, flush=True)
            equal = same_forecasts(Path(tmp) / f"{model}-{n}-per-ticker", Path(tmp) / f"{model}-{n}-batched")
            rows.append({"model": model, "n": n, "runs": runs, "same_forecasts": equal})
    load_end = os.getloadavg()
    minutes = (time.perf_counter() - started) / 60
    print(f"universe bench: {os.cpu_count()} cores, {args.bars} bars per ticker, "
          f"{'--quick tiny models' if args.quick else 'default model (64x2, warm refits every 21 bars)'}; "
          f"load average {load_start[0]:.2f} before, {load_end[0]:.2f} after; {minutes:.1f} minutes")
    head = f"{'model':5} {'N':>4} {'path':10} {'wall s':>8} {'tickers/s':>9} {'CPU-s/ticker':>12} " \
           f"{'tree RSS MB':>11} {'proc MB':>8} {'tasks':>5} {'others':>6} {'speed-up':>8}"
    print(head)
    for row in rows:
        base = row["runs"]["per-ticker"]["wall"]
        for path, r in row["runs"].items():
            print(f"{row['model']:5} {row['n']:>4} {path:10} {r['wall']:8.1f} {row['n'] / r['wall']:9.2f} "
                  f"{r['cpu'] / row['n']:12.2f} {r['peak_tree_rss_mb']:11.0f} {r['peak_process_rss_mb']:8.0f} "
                  f"{r['tasks']:>5} {100 * (r['others'] or 0):5.0f}% {base / r['wall']:7.2f}x")
        print(f"{'':5} {'':>4} forecasts of both paths {'identical' if row['same_forecasts'] else 'DIFFER'} "
              f"({row['runs']['batched']['entries']} tickers, {row['runs']['batched']['forecasts']} forecasts)")
    if args.json:
        Path(args.json).write_text(json.dumps({"load_start": load_start, "load_end": load_end, "minutes": minutes,
                                               "bars": args.bars, "quick": args.quick, "rows": rows}, indent=2))
    return 0 if all(row["same_forecasts"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
