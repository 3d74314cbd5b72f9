#!/usr/bin/env python
"""Walk-forward benchmark: puffin_bt's engine path against the chapter's pattern and Darts.

One command, one run, on the bundled data (``puffin_bt.load_sample``)::

    python bench/bench_walkforward.py                 # full run (a few minutes)
    python bench/bench_walkforward.py --quick --no-darts   # smoke run (< 60 s)

Contenders on the same walk-forward work (one ticker, cold refit every fold, equal epochs):

  A  puffin_bt: a Backtrader Cerebro (runonce) with ``LSTMForecast`` on the data, store=None.
  B  the chapter's pattern: ``TradingLSTM.fit`` every ``retrain_every`` bars on the same
     training window, one ``predict(prices[:i+1], steps=1)`` per bar.
  C  Darts ``BlockRNNModel`` + ``historical_forecasts(retrain=...)``, in its own virtualenv
     (a subprocess running ``bench/_darts_worker.py``).

Then: warm-start A next to cold A (time and forecast quality), A's training throughput and
achieved FLOP/s against the measured float32 GEMM peak, the share of A's wall time spent
outside training, a 1/2/4-ticker x two-history scaling sweep for A, and the default
``puffin-bt backtest`` from a cold and a warm forecast store (subprocesses, imports included).
See bench/README.md for what every line means.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run from anywhere without installing the package
    sys.path.insert(0, str(ROOT))

T_IMPORT = time.perf_counter()
import backtrader as bt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from puffin_bt import LSTMForecast, TradingLSTM, load_sample  # noqa: E402
from puffin_bt.adapters.feeds import FrameData  # noqa: E402
from puffin_bt.data import SAMPLE_TICKERS  # noqa: E402
from puffin_bt.foldpool import resolve_fold_workers  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - T_IMPORT
DEFAULT_THREADS = torch.get_num_threads()  # before anything changes it
DEFAULT_DARTS_VENV = Path(tempfile.gettempdir()) / "puffin-bench-darts"
TORCH_PIN = "torch==2.13.0"

warnings.filterwarnings("ignore", category=DeprecationWarning)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux: KiB


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


class OthersCpu:
    """Share of the machine's CPU capacity used by *other* processes (and hypervisor steal) while
    the ``with`` block ran: (busy CPU seconds over all cores from /proc/stat - this process's and
    its children's CPU seconds) / (wall x cores). None where /proc/stat is missing."""

    CONTENDED = 0.15  # a measurement with more than this is retried (see measure())

    def __init__(self) -> None:
        self.share: float | None = None

    @staticmethod
    def _busy() -> float | None:
        try:
            with open("/proc/stat") as fh:
                v = [int(x) for x in fh.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = v
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _mine() -> float:
        """CPU seconds of this process, its reaped children and its live children (the fold
        pool's workers live on between runs: they are ours, not other processes)."""
        a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime + OthersCpu._live_children()

    @staticmethod
    def _live_children() -> float:
        me, total = str(os.getpid()), 0.0
        try:
            pids = [d for d in os.listdir("/proc") if d.isdigit()]
        except OSError:
            return 0.0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    text = fh.read()
            except OSError:  # exited meanwhile
                continue
            rest = text[text.rfind(")") + 2:].split()  # fields from 3 (state) on
            if rest[1] == me:  # field 4: ppid
                total += (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")  # fields 14, 15: utime, stime
        return total

    def __enter__(self):
        self._b0, self._m0, self._t0 = self._busy(), self._mine(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        b1, wall = self._busy(), time.perf_counter() - self._t0
        if self._b0 is None or b1 is None or wall <= 0:
            return
        others = (b1 - self._b0) - (self._mine() - self._m0)
        self.share = min(1.0, max(0.0, others / (wall * (os.cpu_count() or 1))))


def measure(fn, repeats: int, retries: int, runs: list | None = None) -> list:
    """``repeats`` runs of ``fn`` (each returns a dict with ``wall`` and ``others``), then up to
    ``retries`` more while the fastest run so far was contended (others > OthersCpu.CONTENDED)."""
    runs = list(runs or [])
    for _ in range(max(0, repeats - len(runs))):
        runs.append(fn())
    for _ in range(retries):
        best = min(runs, key=lambda r: r["wall"])
        if best.get("others") is None or best["others"] <= OthersCpu.CONTENDED:
            break
        log(f"  contended run (others {100 * best['others']:.0f}%), retrying ...")
        runs.append(fn())
    return runs


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


# --------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int) -> dict:
    cfg = torch.__config__.show()
    blas = "MKL" if "USE_MKL=ON" in cfg else ("OpenBLAS" if "openblas" in cfg.lower() else "?")
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    cuda = torch.cuda.is_available()
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_build": f"{'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU-only'}, BLAS={blas}, "
                       f"capability={torch.backends.cpu.get_cpu_capability()}, "
                       f"mkldnn={torch.backends.mkldnn.is_available()}, openmp={torch.backends.openmp.is_available()}",
        "device": "cuda" if cuda else "cpu",
        "threads_default": DEFAULT_THREADS,
        "threads": threads,
        "interop_threads": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "backtrader": getattr(bt, "__version__", "?"),
        "numpy": np.__version__,
        "loadavg_start": loadavg(),
    }


def gemm_peak(threads: int, n: int = 2048, repeats: int = 7) -> float:
    """Best-of-``repeats`` float32 torch.mm GFLOP/s on n x n matrices with ``threads`` threads."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)  # warm-up
        best = math.inf
        for _ in range(repeats):
            t = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t)
        return 2.0 * n ** 3 / best / 1e9
    finally:
        torch.set_num_threads(old)


# --------------------------------------------------------------------------- workload


def lstm_forward_flops(seq_len: int, input_dim: int, hidden: int, layers: int, out_dim: int = 1) -> int:
    """Matmul FLOPs of one sample's forward pass: per time step and layer the four gates cost
    ``4H x (I_l + H)`` multiply-adds (W_ih x_t and W_hh h_{t-1}) = ``2*4*H*(I_l+H)`` FLOPs; plus
    the linear head ``2*H*out``. Element-wise gate math, biases and the loss are not counted."""
    per_step = sum(2 * 4 * hidden * ((input_dim if layer == 0 else hidden) + hidden) for layer in range(layers))
    return seq_len * per_step + 2 * hidden * out_dim


def fold_training_flops(folds, fwd: int, val_every_epoch: bool) -> float:
    """Training ~ 3x forward per trained sample (forward + backward ~ 2x), plus one forward per
    validation sample per validation pass: every epoch, or (cold LSTM folds trained by the batched
    engine without early stopping) once, after the last epoch."""
    return float(sum((3 * f.epochs_run * f.n_train + (f.epochs_run if val_every_epoch else 1) * f.n_val) * fwd
                     for f in folds))


def frames_for(tickers, n_pred: int, min_train: int) -> dict:
    """The last ``min_train - 1 + n_pred`` bars of each ticker: exactly ``n_pred`` forecast bars."""
    n = min_train - 1 + n_pred
    frames = load_sample(list(tickers))
    out = {}
    for name, df in frames.items():
        if len(df) < n:
            raise SystemExit(f"{name} has {len(df)} bars; --pred-bars/--train-window need {n}")
        out[name] = df.iloc[-n:]
    return out


def wf_options(args, *, refit_epochs=None, **over) -> dict:
    opts = dict(lookback=args.lookback, retrain_every=args.retrain_every, train_window=args.train_window,
                min_train=args.train_window, epochs=args.epochs, refit_epochs=refit_epochs,
                hidden_dim=args.hidden, num_layers=args.layers, dropout=args.dropout, batch_size=args.batch_size,
                patience=None, validation_split=args.val_split, seed=args.seed, device="cpu", store=None)
    opts.update(over)
    return opts


def direction_accuracy(pred_return: np.ndarray, closes: np.ndarray) -> tuple[float, int]:
    """Share of bars t where sign(pred_return[t]) == sign(close[t+1]/close[t]-1)."""
    realised = np.full(len(closes), np.nan)
    realised[:-1] = closes[1:] / closes[:-1] - 1.0
    ok = np.isfinite(pred_return) & np.isfinite(realised) & (realised != 0)
    if not ok.any():
        return math.nan, 0
    return float((np.sign(pred_return[ok]) == np.sign(realised[ok])).mean()), int(ok.sum())


# --------------------------------------------------------------------------- A: puffin_bt engine path


class _ForecastOnly(bt.Strategy):
    """Holds one LSTMForecast per data; trades nothing (the work is the forecasts)."""

    params = (("fc_kwargs", None),)

    def __init__(self) -> None:
        self.fcs = {d._name: LSTMForecast(d, **(self.p.fc_kwargs or {})) for d in self.datas}


def run_engine(frames: dict, opts: dict) -> dict:
    """A: Cerebro(runonce) + LSTMForecast on every data, timed from Cerebro construction to run() end."""
    with OthersCpu() as watch:
        started = time.perf_counter()
        cpu0 = time.process_time()
        cerebro = bt.Cerebro(runonce=True, stdstats=False, preload=True)
        for name, df in frames.items():
            cerebro.adddata(FrameData(dataname=df), name=name)  # backtest()'s feed (PandasData: ~+20 ms here)
        cerebro.addstrategy(_ForecastOnly, fc_kwargs=opts)
        strat = cerebro.run()[0]
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu0
    folds, preds = [], {}
    for name, fc in strat.fcs.items():
        folds.extend(fc.folds)
        n = len(fc.data)
        preds[name] = np.asarray(fc.pred_return.array[:n], dtype=np.float64)
    walks = [fc.walk for fc in strat.fcs.values()]
    # train_seconds: wall time spent training (batches trained side by side in the fold pool count
    # once); fold_seconds: the folds' own seconds summed over the processes that trained them.
    return {"wall": wall, "cpu": cpu, "folds": folds, "preds": preds, "others": watch.share,
            "train_seconds": sum(r.training_seconds for r in walks),
            "inference_seconds": sum(r.inference_seconds for r in walks),
            "fold_seconds": sum(f.seconds for f in folds),
            "pooled_batches": sum(r.pooled_batches for r in walks)}


# --------------------------------------------------------------------------- B: the chapter's pattern


def run_chapter(closes: np.ndarray, args, n_pred: int) -> dict:
    """B: fit every retrain_every bars on the same window as A's fold, predict(prices[:i+1]) per bar."""
    with OthersCpu() as watch:
        out = _chapter_loop(closes, args, n_pred)
    out["others"] = watch.share
    return out


def _chapter_loop(closes: np.ndarray, args, n_pred: int) -> dict:
    first = args.train_window - 1
    started = time.perf_counter()
    cpu0 = time.process_time()
    model = TradingLSTM(hidden_dim=args.hidden, num_layers=args.layers, dropout=args.dropout,
                        lookback=args.lookback, batch_size=args.batch_size, epochs=args.epochs,
                        validation_split=args.val_split, patience=None, device="cpu")
    preds = np.full(len(closes), np.nan)
    fit_seconds = 0.0
    n_fits = 0
    for i in range(first, first + n_pred):
        k = (i - first) // args.retrain_every
        if (i - first) % args.retrain_every == 0:
            # Same window and seed as A's fold k (A seeds fold k with seed + k).
            hist = model.fit(closes[i - args.train_window + 1: i + 1], lookback=args.lookback, epochs=args.epochs,
                             batch_size=args.batch_size, validation_split=args.val_split, patience=None,
                             seed=args.seed + k)
            fit_seconds += hist["seconds"]
            n_fits += 1
        preds[i] = model.predict(closes[: i + 1], steps=1)[0] / closes[i] - 1.0
    return {"wall": time.perf_counter() - started, "cpu": time.process_time() - cpu0, "preds": preds,
            "train_seconds": fit_seconds, "n_fits": n_fits}


# --------------------------------------------------------------------------- C: Darts in its own venv


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _probe_darts(py: Path) -> dict | None:
    code = ("import json, darts, torch, pytorch_lightning as pl; from darts.models import BlockRNNModel; "
            "print(json.dumps({'darts': darts.__version__, 'torch': torch.__version__, 'pl': pl.__version__}))")
    try:
        r = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return None
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def ensure_darts_venv(venv: Path, spec: str) -> tuple[Path | None, str]:
    """(python of a venv where Darts' BlockRNNModel imports, message). Creates/installs when needed:
    ``torch==2.13.0`` first (the CPU wheel lies on this disk), then ``spec`` (``darts[torch]``)."""
    py = _venv_python(venv)
    if py.exists():
        found = _probe_darts(py)
        if found:
            return py, f"reused {venv} (darts {found['darts']}, torch {found['torch']}, lightning {found['pl']})"
    t = time.perf_counter()
    log(f"creating Darts virtualenv {venv} (pip: {TORCH_PIN}, then {spec}) ...")
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(py), "-m", "pip", "install", "-q", TORCH_PIN],
             [str(py), "-m", "pip", "install", "-q", spec]]
    if py.exists():
        steps = steps[1:]
    for cmd in steps:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"`{' '.join(cmd)}` failed: {exc}"
        if r.returncode != 0:
            tail = " | ".join([ln for ln in (r.stderr or r.stdout).splitlines() if "is ignored" not in ln][-3:])
            return None, f"`{' '.join(cmd)}` exited {r.returncode}: {tail}"
    found = _probe_darts(py)
    if not found:
        return None, f"installed {spec} into {venv} but `from darts.models import BlockRNNModel` fails"
    return py, (f"installed into {venv} in {time.perf_counter() - t:.0f}s: darts {found['darts']}, "
                f"torch {found['torch']}, lightning {found['pl']}")


def wait_rusage(cmd, cwd=None, env=None, timeout=None, sample: str = "pss") -> tuple[int, float, dict, str, str]:
    """Run ``cmd`` under ``bench/_measure.py``; (returncode, wall seconds, memory, stdout, stderr).

    ``memory["peak_rss_mb"]`` is ``getrusage(RUSAGE_CHILDREN)`` taken in that small parent process
    (the largest single process of the command's tree): measured from this process it would include
    the few hundred MiB this benchmark holds at fork time (see _measure.py). ``tree_peak_rss_mb`` /
    ``tree_peak_pss_mb`` are sampled sums over the whole process tree (worker pools included).
    The wall time is taken around the command inside the helper (interpreter start and imports of
    the command included, the helper's own start excluded). ``sample``: ``"none"`` for timings that
    need every core (the memory sampling costs CPU; see _measure.py)."""
    with tempfile.TemporaryDirectory() as d:
        out_p, err_p = Path(d) / "out", Path(d) / "err"
        try:
            r = subprocess.run([sys.executable, str(HERE / "_measure.py"), str(out_p), str(err_p), "--sample", sample,
                                "--", *cmd],
                               cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return 124, math.nan, {}, "", f"timed out after {timeout}s"
        out = out_p.read_text() if out_p.exists() else ""
        err = err_p.read_text() if err_p.exists() else ""
        try:
            m = json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return r.returncode or 1, math.nan, {}, out, err + r.stderr
        mem = {k: m.get(k) for k in ("peak_rss_mb", "tree_peak_rss_mb", "tree_peak_pss_mb", "max_procs",
                                     "sampler_cpu_s")}
        return m["rc"], m["wall"], mem, out, err


def run_darts(py: Path, closes: np.ndarray, args, n_pred: int, tmp: Path, threads: int) -> dict:
    path = tmp / "darts_closes.npy"
    # n_pred forecasts of the next return, the first after a training window of train_window returns.
    need = n_pred + args.train_window + 1
    if len(closes) < need:
        return {"error": f"Darts needs {need} closes for {n_pred} forecasts after a {args.train_window}-bar window; "
                         f"the ticker has {len(closes)}"}
    np.save(path, closes[-need:])
    cmd = [str(py), str(HERE / "_darts_worker.py"), "--closes", str(path), "--pred-bars", str(n_pred),
           "--lookback", str(args.lookback), "--hidden", str(args.hidden), "--layers", str(args.layers),
           "--dropout", str(args.dropout), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
           "--retrain-every", str(args.retrain_every), "--train-window", str(args.train_window),
           "--seed", str(args.seed), "--threads", str(threads), "--repeat", str(args.darts_repeat),
           "--budget", str(args.darts_budget / 2)]
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
    with OthersCpu() as watch:
        rc, wall, mem, out, err = wait_rusage(cmd, cwd=tmp, env=env, timeout=3600)  # cwd: Darts may write logs
    if rc != 0:
        tail = " | ".join(err.strip().splitlines()[-3:])
        return {"error": f"Darts worker exited {rc}: {tail}"}
    try:
        res = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"Darts worker printed no JSON: {out[-300:]!r}"}
    res["peak_rss_mb"] = mem.get("peak_rss_mb")
    res["others_process"] = watch.share  # over the whole worker process (imports, warm-up and all repeats)
    res["process_wall"] = wall
    _darts_best(res)
    return res


def _darts_best(res: dict) -> None:
    others = res.get("others") or [None] * len(res["seconds"])
    i = min(range(len(res["seconds"])), key=lambda j: res["seconds"][j])
    res["best"], res["best_others"] = res["seconds"][i], others[i]


# --------------------------------------------------------------------------- the default CLI backtest


def run_cli_backtest(tmp: Path, quick: bool, threads_env: int | None) -> dict:
    cache, py = tmp / "store", sys.executable
    base = [py, "-m", "puffin_bt.cli", "backtest", "--no-plot", "--quiet", "--cache-dir", str(cache)]
    if quick:  # smoke only: a small slice and a tiny model, so --quick stays fast
        base += ["--sample", "AAPL", "--start", "2012-03-01", "--min-train", "100", "--train-window", "100",
                 "--retrain-every", "50", "--epochs", "1", "--hidden-dim", "8", "--num-layers", "1"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if threads_env is not None:
        env["OMP_NUM_THREADS"] = str(threads_env)
    runs = {}
    for label, extra in (("cold", ["--out", str(tmp / "out_cold")]),
                         ("warm", ["--out", str(tmp / "out_warm"), "--entry", "0.003", "--exit", "0.003"])):
        log(f"puffin-bt backtest ({label} store) ...")
        with OthersCpu() as watch:
            rc, wall, mem, out, err = wait_rusage(base + extra, cwd=ROOT, env=env, timeout=3600)
        entry = {"rc": rc, "wall": wall, **mem, "others": watch.share, "cmd": " ".join(base[1:] + extra)}
        if rc != 0:
            entry["error"] = " | ".join(err.strip().splitlines()[-3:])
        else:
            entry["summary"] = out.strip().splitlines()[0] if out.strip() else ""
            try:
                cfg = json.loads((tmp / f"out_{label}" / "config.json").read_text())
                entry["store"] = cfg.get("store")
                entry["n_tickers"] = len(cfg.get("tickers", []))
                entry["span"] = f"{cfg.get('start')}..{cfg.get('end')}"
                entry["forecast"] = cfg.get("forecast")
            except (OSError, ValueError):
                pass
            try:
                import pandas as pd

                folds = pd.read_csv(tmp / f"out_{label}" / "folds.csv")
                entry["folds"] = int(len(folds))
                if label == "cold":
                    entry["train_seconds"] = float(folds["seconds"].sum())
                    entry["slowest_fold_seconds"] = float(folds["seconds"].max())
                    entry["median_fold_seconds"] = float(folds["seconds"].median())
                    fc = entry.get("forecast") or {}
                    if fc.get("hidden_dim") and fc.get("num_layers") and fc.get("lookback"):
                        fwd = lstm_forward_flops(int(fc["lookback"]), 1, int(fc["hidden_dim"]), int(fc["num_layers"]))
                        # patience is set by default: every fold validates every epoch
                        work = (folds["epochs_run"] * (3 * folds["n_train"] + folds["n_val"])).sum() * fwd
                        entry["train_gflops_per_process"] = float(work / folds["seconds"].sum() / 1e9)
                        entry["model"] = f"{fc['hidden_dim']}x{fc['num_layers']}"
            except (OSError, ValueError, KeyError):
                pass
        runs[label] = entry
    # import cost alone, for reference
    rc, wall, mem, _, _ = wait_rusage([py, "-c", "import puffin_bt, puffin_bt.cli, strategies"], cwd=ROOT, env=env)
    runs["import_only"] = {"wall": wall, **mem, "rc": rc}
    if not quick:
        runs["workers"] = run_workers_comparison(tmp, base, env, repeat=3)
    return runs


_PRECOMPUTE = """
import json, sys, time, tempfile
t0 = time.perf_counter()
from puffin_bt import load_sample
from puffin_bt.tickers import precompute_forecasts
from puffin_bt.store import ForecastStore
def main():
    frames = load_sample()
    t1 = time.perf_counter()
    w = int(sys.argv[1])
    rep = precompute_forecasts(frames, store=ForecastStore(tempfile.mkdtemp()), workers=w,
                               executor="local" if w > 1 else "serial")
    print(json.dumps({"import": t1 - t0, "forecasts": time.perf_counter() - t1, "computed": len(rep.computed)}))
if __name__ == "__main__":
    main()
"""


def run_workers_comparison(tmp: Path, base: list[str], env: dict, repeat: int = 2) -> dict:
    """Issue 6's measure: 2 local workers vs 1 on the bench's default workload (the 4 bundled
    tickers, library defaults), as the forecast phase alone (``precompute_forecasts`` in a fresh
    interpreter) and end to end (``puffin-bt backtest --workers 1|2``, cold store). Runs are
    interleaved (1, 2, 1, 2, ...) and the best of ``repeat`` is kept: this machine's speed drifts
    by +-20% between identical runs a minute apart."""
    script = tmp / "precompute.py"
    script.write_text(_PRECOMPUTE)
    out: dict = {}
    for r in range(repeat):
        for w in (1, 2):
            log(f"forecast phase with {w} worker(s), run {r + 1}/{repeat} ...")
            with OthersCpu() as watch:
                rc, wall, mem, stdout, err = wait_rusage([sys.executable, str(script), str(w)], cwd=ROOT, env=env,
                                                         timeout=3600, sample="none")
            entry = {"rc": rc, "process_wall": wall, "others": watch.share, **mem}
            if rc == 0:
                entry.update(json.loads(stdout.strip().splitlines()[-1]))
            else:
                entry["error"] = " | ".join(err.strip().splitlines()[-3:])
            _keep_best(out, f"forecasts_{w}", entry, "forecasts")
            log(f"puffin-bt backtest --workers {w} (cold store), run {r + 1}/{repeat} ...")
            store = tmp / f"store_w{w}_{r}"
            cmd = base[:-2] + ["--cache-dir", str(store), "--out", str(tmp / f"out_w{w}_{r}"), "--workers", str(w)]
            with OthersCpu() as watch:
                rc, wall, mem, _, err = wait_rusage(cmd, cwd=ROOT, env=env, timeout=3600, sample="none")
            _keep_best(out, f"cli_{w}", {"rc": rc, "wall": wall, "others": watch.share, **mem,
                                         **({"error": " | ".join(err.strip().splitlines()[-3:])} if rc else {})},
                       "wall")
    return out


def _keep_best(out: dict, key: str, entry: dict, field: str) -> None:
    runs = out.setdefault(f"{key}_runs", [])
    value = entry.get(field)
    runs.append(None if value is None else round(value, 2))
    old = out.get(key)
    if old is None or "error" in old or ("error" not in entry and entry[field] < old[field]):
        out[key] = entry


# --------------------------------------------------------------------------- reporting


def verdict(ok: bool | None) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "FAIL")


def fmt_s(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}s"


def best_med(xs: list[float]) -> tuple[float, float]:
    return min(xs), statistics.median(xs)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 repeat: a smoke run (< 60 s without Darts)")
    ap.add_argument("--no-darts", action="store_true", help="skip contender C (no virtualenv is created)")
    ap.add_argument("--darts-venv", type=Path, default=DEFAULT_DARTS_VENV, help="virtualenv for Darts (created)")
    ap.add_argument("--darts-spec", default="darts[torch]", help="pip requirement installed after torch")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads for A, B, C, the GEMM peak and (via OMP_NUM_THREADS) the CLI "
                         "subprocesses; default: torch's default")
    ap.add_argument("--json", type=Path, default=None, help="also write all results as JSON here")
    ap.add_argument("--repeat", type=int, default=None, help="timed repeats of A and B (best is reported; "
                                                             "default 3, 1 with --quick)")
    ap.add_argument("--darts-repeat", type=int, default=None, help="timed repeats of C (default 2, 1 with --quick)")
    ap.add_argument("--darts-budget", type=float, default=300.0,
                    help="seconds of timed Darts runs after which no repeat or retry starts (a contended 2-thread "
                         "run can take minutes)")
    ap.add_argument("--ticker", default="AAPL", choices=SAMPLE_TICKERS, help="ticker of the same-work comparison")
    ap.add_argument("--pred-bars", type=int, default=None, help="forecast bars (default 600; 150 with --quick)")
    ap.add_argument("--lookback", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=None, help="LSTM hidden units (default 32; 8 with --quick)")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--epochs", type=int, default=None, help="epochs per fold (default 4; 2 with --quick)")
    ap.add_argument("--retrain-every", type=int, default=50)
    ap.add_argument("--train-window", type=int, default=None,
                    help="bars per training window, also min_train (default 300; 150 with --quick)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--val-split", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scaling-tickers", type=int, nargs="+", default=None, help="default 1 2 4 (1 2 with --quick)")
    ap.add_argument("--scaling-bars", type=int, nargs="+", default=None,
                    help="forecast bars per ticker in the sweep (default 600 1200; 100 200 with --quick)")
    ap.add_argument("--scaling-repeat", type=int, default=None, help="repeats per sweep point, best reported "
                                                                     "(default 2, 1 with --quick)")
    ap.add_argument("--retries", type=int, default=None,
                    help="extra runs of a measurement whose best run was contended (others > 15%%; default 3, "
                         "0 with --quick)")
    ap.add_argument("--no-scaling", action="store_true", help="skip the scaling sweep")
    ap.add_argument("--no-backtest", action="store_true", help="skip the default `puffin-bt backtest` timing")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the scratch folder (store, outputs)")
    args = ap.parse_args(argv)
    q = args.quick
    defaults = dict(repeat=1 if q else 3, scaling_repeat=1 if q else 2, retries=0 if q else 3,
                    darts_repeat=1 if q else 2, pred_bars=150 if q else 600,
                    hidden=8 if q else 32, epochs=2 if q else 4, train_window=150 if q else 300,
                    scaling_tickers=[1, 2] if q else [1, 2, 4], scaling_bars=[100, 200] if q else [600, 1200])
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.threads is not None and args.threads < 1:
        ap.error("--threads must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    t_all = time.perf_counter()
    threads = args.threads or DEFAULT_THREADS
    torch.set_num_threads(threads)
    mach = machine_info(threads)
    results: dict = {"machine": mach, "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                     "import_seconds": IMPORT_SECONDS}
    tmp = Path(tempfile.mkdtemp(prefix="puffin-bench-"))
    lines: list[str] = []
    say = lines.append
    with OthersCpu() as idle:
        time.sleep(1.0)
    results["others_at_start"] = idle.share
    log(f"threads={threads} (torch default {DEFAULT_THREADS}), load average {mach['loadavg_start']}, others "
        f"{pct(idle.share)}, scratch {tmp}")

    # --- workload -------------------------------------------------------------------------
    n_pred = args.pred_bars
    frames = frames_for([args.ticker], n_pred, args.train_window)
    df = frames[args.ticker]
    closes = df["close"].to_numpy(dtype=np.float64)
    opts_cold = wf_options(args, refit_epochs=None)
    opts_warm = wf_options(args, refit_epochs=1)
    opts_one = wf_options(args, refit_epochs=None, fold_workers=1)  # A in one process
    fold_workers = resolve_fold_workers("auto", torch.device("cpu"))
    fwd = lstm_forward_flops(args.lookback, 1, args.hidden, args.layers)

    # --- warm-up (same process, tiny) -----------------------------------------------------
    log("warm-up A and B ...")
    tiny_args = argparse.Namespace(**{**vars(args), "train_window": 60, "retrain_every": 20, "epochs": 1,
                                      "hidden": 4})
    tiny_frames = frames_for([args.ticker], 40, 60)
    run_engine(tiny_frames, wf_options(tiny_args))
    run_chapter(tiny_frames[args.ticker]["close"].to_numpy(dtype=np.float64), tiny_args, 40)

    # --- A and B, interleaved repeats -----------------------------------------------------
    log(f"same work: A (engine) / A in one process / B (chapter) / A warm-start, {args.repeat} repeat(s) ...")
    a_runs, a1_runs, b_runs, w_runs = [], [], [], []
    for _ in range(args.repeat):  # interleaved, so a burst of outside load hits all of them alike
        a_runs.append(run_engine(frames, opts_cold))
        a1_runs.append(run_engine(frames, opts_one))
        b_runs.append(run_chapter(closes, args, n_pred))
        w_runs.append(run_engine(frames, opts_warm))
    a_runs = measure(lambda: run_engine(frames, opts_cold), args.repeat, args.retries, a_runs)
    a1_runs = measure(lambda: run_engine(frames, opts_one), args.repeat, args.retries, a1_runs)
    b_runs = measure(lambda: run_chapter(closes, args, n_pred), args.repeat, args.retries, b_runs)
    w_runs = measure(lambda: run_engine(frames, opts_warm), args.repeat, args.retries, w_runs)
    rss_after_ab = peak_rss_mb()
    a = min(a_runs, key=lambda r: r["wall"])
    a1 = min(a1_runs, key=lambda r: r["wall"])
    b = min(b_runs, key=lambda r: r["wall"])
    w = min(w_runs, key=lambda r: r["wall"])
    a_pred = a["preds"][args.ticker]
    same = np.isfinite(a_pred) & np.isfinite(b["preds"])
    max_diff = float(np.max(np.abs(a_pred[same] - b["preds"][same]))) if same.any() else math.nan
    a_dir, n_dir = direction_accuracy(a_pred, closes)
    w_dir, _ = direction_accuracy(w["preds"][args.ticker], closes)
    b_dir, _ = direction_accuracy(b["preds"], closes)
    a_val = float(np.mean([f.val_loss for f in a["folds"]]))
    w_val = float(np.mean([f.val_loss for f in w["folds"]]))
    a_train_samples = sum(f.epochs_run * f.n_train for f in a["folds"])
    a_flops = fold_training_flops(a["folds"], fwd, val_every_epoch=False)
    a_flops_rate = a_flops / a["train_seconds"] / 1e9  # all processes together, over the training wall time
    a1_flops_rate = a_flops / a1["train_seconds"] / 1e9
    outside = (a["wall"] - a["train_seconds"]) / a["wall"]
    a_best, a_med = best_med([r["wall"] for r in a_runs])
    a1_best, a1_med = best_med([r["wall"] for r in a1_runs])
    b_best, b_med = best_med([r["wall"] for r in b_runs])
    w_best, w_med = best_med([r["wall"] for r in w_runs])
    fold0 = a["folds"][0]
    results["same_work"] = {
        "workload": {"ticker": args.ticker, "forecast_bars": n_pred, "folds": len(a["folds"]),
                     "lookback": args.lookback, "hidden": args.hidden, "layers": args.layers,
                     "epochs_per_fold": args.epochs, "retrain_every": args.retrain_every,
                     "train_window": args.train_window, "batch_size": args.batch_size,
                     "validation_split": args.val_split, "dropout": args.dropout,
                     "train_samples_per_fold": fold0.n_train, "val_samples_per_fold": fold0.n_val},
        "A": {"best": a_best, "median": a_med, "runs": [r["wall"] for r in a_runs], "cpu": a["cpu"],
              "others": a["others"],
              "train_seconds": a["train_seconds"], "outside_training_share": outside,
              "inference_seconds": a["inference_seconds"], "bars": len(df), "folds_per_run": len(a["folds"]),
              "train_samples_per_s": a_train_samples / a["train_seconds"],
              "forward_flops_per_sample": fwd, "training_flops": a_flops, "achieved_gflops": a_flops_rate,
              "peak_fraction": None,  # filled in once the GEMM peak is measured
              "fold_workers": fold_workers, "pooled_batches": a["pooled_batches"],
              "fold_seconds_all_processes": a["fold_seconds"],
              "mean_fold_val_loss": a_val, "direction_accuracy": a_dir, "direction_bars": n_dir},
        "A_one_process": {"best": a1_best, "median": a1_med, "runs": [r["wall"] for r in a1_runs],
                          "cpu": a1["cpu"], "others": a1["others"], "train_seconds": a1["train_seconds"],
                          "achieved_gflops": a1_flops_rate, "one_thread_peak_fraction": None,
                          "same_forecasts_as_A": bool(np.array_equal(a1["preds"][args.ticker], a_pred,
                                                                     equal_nan=True))},
        "B": {"best": b_best, "median": b_med, "runs": [r["wall"] for r in b_runs], "cpu": b["cpu"],
              "others": b["others"],
              "fit_seconds": b["train_seconds"], "fits": b["n_fits"], "direction_accuracy": b_dir,
              "max_abs_pred_diff_vs_A": max_diff},
        "A_warm": {"best": w_best, "median": w_med, "runs": [r["wall"] for r in w_runs], "others": w["others"],
                   "train_seconds": w["train_seconds"], "epochs": [f.epochs_run for f in w["folds"]],
                   "mean_fold_val_loss": w_val, "direction_accuracy": w_dir},
        "rss_mb_after_A_B": rss_after_ab,
    }

    # --- C: Darts ---------------------------------------------------------------------------
    c = None
    if args.no_darts:
        results["darts"] = {"skipped": "--no-darts"}
    else:
        py, msg = ensure_darts_venv(args.darts_venv, args.darts_spec)
        log(f"Darts: {msg}")
        if py is None:
            results["darts"] = {"skipped": msg}
        else:
            log(f"C (Darts) x{args.darts_repeat} ...")
            full = load_sample(args.ticker)[args.ticker]["close"].to_numpy(dtype=np.float64)
            c = run_darts(py, full, args, n_pred, tmp, threads)
            for _ in range(args.retries):  # the worker's fastest repeat was contended: run it again
                if "error" in c or (c["best_others"] or 0) <= OthersCpu.CONTENDED:
                    break
                if sum(c["seconds"]) > args.darts_budget:
                    log(f"  contended Darts run, but {sum(c['seconds']):.0f}s spent (--darts-budget): not retrying")
                    break
                log(f"  contended Darts run (others {100 * c['best_others']:.0f}%), retrying ...")
                again = run_darts(py, full, args, n_pred, tmp, threads)
                if "error" not in again:
                    again["seconds"] = c["seconds"] + again["seconds"]
                    again["others"] = c["others"] + again["others"]
                    _darts_best(again)
                    c = again
            c["venv"] = msg
            if "error" in c:
                results["darts"] = {"skipped": c["error"], "venv": msg}
                c = None
            else:
                results["darts"] = c

    # --- scaling (A only) ---------------------------------------------------------------------
    if not args.no_scaling:
        log("scaling sweep (A) ...")
        sweep = []
        for n_bars in args.scaling_bars:
            for n_t in args.scaling_tickers:
                tick = list(SAMPLE_TICKERS[:n_t]) if n_t <= len(SAMPLE_TICKERS) else None
                if tick is None:
                    continue
                fr = frames_for(tick, n_bars, args.train_window)
                r = min(measure(lambda fr=fr: run_engine(fr, opts_cold), args.scaling_repeat, args.retries),
                        key=lambda x: x["wall"])
                sweep.append({"tickers": n_t, "forecast_bars": n_bars, "wall": r["wall"],
                              "train_seconds": r["train_seconds"], "folds": len(r["folds"]),
                              "ms_per_ticker_bar": 1e3 * r["wall"] / (n_t * n_bars), "others": r["others"],
                              "outside_training_share": (r["wall"] - r["train_seconds"]) / r["wall"]})
        results["scaling"] = sweep

    # --- GEMM peak (after the in-process timings, so its big matrices leave no state behind them) ---
    log("float32 GEMM peak ...")
    peak_default = gemm_peak(DEFAULT_THREADS, n=1024 if args.quick else 2048)
    peak_used = peak_default if threads == DEFAULT_THREADS else gemm_peak(threads, n=1024 if args.quick else 2048)
    peak_one = peak_used if threads == 1 else (peak_default if DEFAULT_THREADS == 1 else
                                                gemm_peak(1, n=1024 if args.quick else 2048))
    results["gemm_peak_gflops"] = {"default_threads": peak_default, "bench_threads": peak_used, "one_thread": peak_one}

    results["same_work"]["A"]["peak_fraction"] = a_flops_rate / peak_default
    results["same_work"]["A_one_process"]["one_thread_peak_fraction"] = a1_flops_rate / peak_one

    # --- default CLI backtest -------------------------------------------------------------------
    if not args.no_backtest:
        results["cli_backtest"] = run_cli_backtest(tmp, args.quick, args.threads)

    results["peak_rss_mb_self"] = peak_rss_mb()
    results["loadavg_end"] = loadavg()
    results["total_seconds"] = time.perf_counter() - t_all

    # ======================================================================= print
    W = results["same_work"]["workload"]
    say("=" * 100)
    say("puffin_bt walk-forward benchmark" + ("  [--quick: smoke sizes, targets not meaningful]" if args.quick else ""))
    say("=" * 100)
    say(f"machine : {mach['cpu']}, {mach['logical_cpus']} logical CPUs ({mach['usable_cpus']} usable), "
        f"Python {mach['python']}, {mach['platform']}")
    say(f"torch   : {mach['torch']} ({mach['torch_build']}); device={mach['device']} (all contenders run on CPU)")
    say(f"threads : torch intra-op threads = {threads} (torch default {DEFAULT_THREADS}"
        f"{', set by --threads' if args.threads else ''}), inter-op {mach['interop_threads']}, "
        f"OMP_NUM_THREADS={mach['OMP_NUM_THREADS']}; load average start {mach['loadavg_start']}, "
        f"end {results['loadavg_end']}")
    if (results["others_at_start"] or 0) > OthersCpu.CONTENDED:
        say(f"WARNING : other processes used {pct(results['others_at_start'])} of the machine in the second before "
            f"the start: they compete for the cores and multi-threaded torch degrades badly then; timings are "
            f"noisy (rerun when idle, or compare with --threads 1)")
    say(f"GEMM    : float32 torch.mm {2048 if not args.quick else 1024}^2 best-of-7 peak = {peak_default:.1f} GFLOP/s "
        f"at {DEFAULT_THREADS} thread(s)" + ("" if threads == DEFAULT_THREADS else
                                             f"; {peak_used:.1f} GFLOP/s at {threads} thread(s)"))
    say(f"workload: {W['ticker']}, {W['forecast_bars']} forecast bars, {W['folds']} cold folds (every "
        f"{W['retrain_every']} bars on {W['train_window']} bars: {W['train_samples_per_fold']} train + "
        f"{W['val_samples_per_fold']} val windows), LSTM {W['hidden']}x{W['layers']}, lookback {W['lookback']}, "
        f"{W['epochs_per_fold']} epochs/fold, batch {W['batch_size']}, dropout {W['dropout']}, patience=None")
    say(f"timings : best of {args.repeat} (median in brackets), each after an in-process warm-up; 'others' = CPU "
        f"used by other processes during the best run, share of the machine (> {100 * OthersCpu.CONTENDED:.0f}%: "
        f"retried up to {args.retries}x)")
    say("-" * 100)
    sw = results["same_work"]
    A, A1, B, AW = sw["A"], sw["A_one_process"], sw["B"], sw["A_warm"]
    say(f"A  puffin_bt Cerebro+LSTMForecast (cold)  {A['best']:7.3f}s  [{A['median']:.3f}s]  "
        f"training {A['train_seconds']:.3f}s wall, outside training {100 * outside:.1f}%, parent cpu {A['cpu']:.2f}s, "
        f"others {pct(A['others'])}; fold_workers auto = {fold_workers} process(es), "
        f"{A['pooled_batches']} batches in the pool")
    say(f"A1 same, one process (fold_workers=1)     {A1['best']:7.3f}s  [{A1['median']:.3f}s]  "
        f"training {A1['train_seconds']:.3f}s, others {pct(A1['others'])}; same forecasts as A: "
        f"{A1['same_forecasts_as_A']}")
    say(f"B  chapter: fit/50 bars + predict per bar  {B['best']:7.3f}s  [{B['median']:.3f}s]  "
        f"fits {B['fit_seconds']:.3f}s, cpu {B['cpu']:.2f}s, others {pct(B['others'])}; same forecasts as A to "
        f"{max_diff:.1e}")
    ratio_ab = B["best"] / A["best"]
    ratio_ac = None
    targets = results["targets"] = {}
    if c is not None:
        c_best, c_med = c["best"], statistics.median(c["seconds"])
        ratio_ac = c_best / A["best"]
        say(f"C  Darts {c['versions']['darts']} BlockRNNModel hist.fc.   {c_best:7.3f}s  [{c_med:.3f}s]  "
            f"{c['n_trainings']} trainings on {c['samples_per_fold']} windows (no val split), "
            f"{c['n_forecasts']} forecasts, threads {c['threads']}, others {pct(c.get('best_others'))}")
    else:
        say(f"C  Darts: skipped ({results['darts'].get('skipped')})")
    say(f"AW puffin_bt warm-start (refit_epochs=1)    {AW['best']:7.3f}s  [{AW['median']:.3f}s]  "
        f"epochs/fold {AW['epochs'][0]} then 1, others {pct(AW['others'])}")
    say("-" * 100)
    def judge(name, value, ok, *others):
        """PASS/FAIL; marked when a run it rests on was contended (others > CONTENDED): rerun then."""
        noisy = any(o is not None and o > OthersCpu.CONTENDED for o in others)
        targets[name] = {"value": value, "pass": None if args.quick or ok is None else bool(ok), "contended": noisy}
        if args.quick:
            return "n/a (quick)"
        return verdict(ok) + (" (contended run: unreliable, rerun)" if noisy else "")

    v = judge("A_vs_B", ratio_ab, ratio_ab >= 2, A["others"], B["others"])
    say(f"ratio B/A (A vs chapter)  = {ratio_ab:5.2f}x   target >= 2x    {v}   (A in one process: "
        f"{B['best'] / A1['best']:.2f}x; the pool: {A1['best'] / A['best']:.2f}x)")
    if ratio_ac is not None:
        v = judge("A_vs_C", ratio_ac, ratio_ac >= 15, A["others"], c.get("best_others"))
        say(f"ratio C/A (A vs Darts)    = {ratio_ac:5.2f}x   target >= 15x   {v}")
    else:
        targets["A_vs_C"] = {"value": None, "pass": None}
        say("ratio C/A (A vs Darts)    = n/a      target >= 15x   n/a (Darts skipped)")
    say(f"warm vs cold A            : time {AW['best']:.3f}s vs {A['best']:.3f}s ({A['best'] / AW['best']:.2f}x faster); "
        f"mean fold val loss {AW['mean_fold_val_loss']:.4f} vs {A['mean_fold_val_loss']:.4f}; "
        f"direction accuracy {100 * AW['direction_accuracy']:.1f}% vs {100 * A['direction_accuracy']:.1f}% "
        f"({A['direction_bars']} bars; B {100 * B['direction_accuracy']:.1f}%"
        + (f", C {100 * c['direction_accuracy']:.1f}%" if c is not None and c.get('direction_accuracy') is not None
           else "") + ")")
    say(f"A training throughput     : {A['train_samples_per_s']:,.0f} train samples/s "
        f"({sum(f.epochs_run * f.n_train for f in a['folds'])} sample-epochs in {A['train_seconds']:.3f}s of fold "
        f"training)")
    say(f"A achieved FLOP/s         : {A['achieved_gflops']:.2f} GFLOP/s (all processes, over the training wall time) "
        f"= {100 * A['peak_fraction']:.1f}% of GEMM peak "
        + ("" if threads == DEFAULT_THREADS else f"({100 * A['achieved_gflops'] / peak_used:.1f}% of the "
                                                 f"{threads}-thread peak) ")
        + "-- reported (the >= 25% target is the default model's: the `puffin-bt backtest` line below)  "
        f"(fwd {fwd:,} FLOP/sample = {args.lookback} steps x sum_l 2*4*H*(I_l+H) + 2*H; "
        f"train = (3 x epochs x n_train + n_val) x fwd = {A['training_flops'] / 1e9:.2f} GFLOP); "
        f"A1 {A1['achieved_gflops']:.2f} GFLOP/s = {100 * A1['one_thread_peak_fraction']:.1f}% of the 1-thread peak")
    say(f"A time outside training   : {100 * outside:.1f}% of {A['best']:.3f}s (data prep, batched inference, "
        f"Backtrader) -- target < 15%  {judge('outside_training_share', outside, outside < 0.15, A['others'])}  "
        f"(A1, one process: {100 * (A1['best'] - A1['train_seconds']) / A1['best']:.1f}% of {A1['best']:.3f}s; the pool "
        f"shortens the training, not the rest)")
    rest = A["best"] - A["train_seconds"] - A["inference_seconds"]
    say(f"  of which                : inference {1000 * A['inference_seconds']:.1f} ms ({A['folds_per_run']} folds' "
        f"forecast passes), Backtrader's bar loop + data preparation + set-up {1000 * rest:.1f} ms "
        f"({1e6 * rest / A['bars']:.1f} us a bar over {A['bars']} bars)")
    if "scaling" in results:
        say("-" * 100)
        say(f"scaling (A, cold folds, same model, best of {args.scaling_repeat}): ms per ticker-bar stays flat "
            f"if the cost is linear")
        say(f"  {'tickers':>7} {'fc bars':>7} {'folds':>5} {'wall':>8} {'train':>8} {'outside':>7} {'ms/ticker-bar':>13}"
            f" {'others':>6}")
        for r in results["scaling"]:
            say(f"  {r['tickers']:>7} {r['forecast_bars']:>7} {r['folds']:>5} {r['wall']:>7.2f}s "
                f"{r['train_seconds']:>7.2f}s {100 * r['outside_training_share']:>6.1f}% {r['ms_per_ticker_bar']:>13.3f}"
                f" {pct(r['others']):>6}")
        twin = next((r for r in results["scaling"] if r["tickers"] == 1 and r["forecast_bars"] == n_pred
                     and args.ticker == SAMPLE_TICKERS[0]), None)
        if twin is not None and abs(twin["wall"] / A["best"] - 1) > 0.2:
            say(f"  NOTE: the 1-ticker x {n_pred}-bar point is A's exact workload but took {twin['wall']:.3f}s vs A's "
                f"{A['best']:.3f}s: the machine's speed drifted during the run (noisy neighbours?); rerun")
    if "cli_backtest" in results:
        cb = results["cli_backtest"]
        say("-" * 100)
        cold, warm = cb["cold"], cb["warm"]
        label = "quick smoke slice" if args.quick else "library defaults"
        imp = cb["import_only"]
        say(f"`puffin-bt backtest` ({label}, CLI default --workers auto) as subprocesses; wall includes interpreter "
            f"start + imports (import alone {imp['wall']:.2f}s, {imp['peak_rss_mb']:.0f} MiB)")
        if "error" in cold:
            say(f"  cold store : FAILED rc={cold['rc']}: {cold['error']}")
        else:
            tree = cold.get("tree_peak_rss_mb")
            judged = tree if tree else cold["peak_rss_mb"]
            # the CLI's --workers auto: one process per core up to one per ticker, cores // workers threads each
            cpus = os.cpu_count() or 1
            n_workers = min(cpus, cold.get("n_tickers") or 1)
            tpw = max(1, cpus // n_workers) if n_workers > 1 else threads
            wpeak = {1: peak_one, DEFAULT_THREADS: peak_default, threads: peak_used}.get(tpw) or gemm_peak(tpw)
            rate = cold.get("train_gflops_per_process")
            cold["worker_threads"], cold["worker_peak_fraction"] = tpw, (rate / wpeak if rate else None)
            v = judge("backtest_seconds", cold["wall"], cold["wall"] < 60, cold.get("others"))
            say(f"  cold store : {cold['wall']:7.2f}s  target < 60 s   {v}   "
                f"{cold.get('n_tickers', '?')} tickers {cold.get('span', '')}, {cold.get('folds', '?')} folds, "
                f"others {pct(cold.get('others'))}")
            say(f"               peak memory: whole process tree {judged:.0f} MiB RSS"
                + (f" / {cold['tree_peak_pss_mb']:.0f} MiB PSS ({cold.get('max_procs')} processes)" if tree else "")
                + f", largest process {cold['peak_rss_mb']:.0f} MiB (RUSAGE_CHILDREN)  target < 1.5 GB  "
                  f"{judge('backtest_peak_mb', judged, judged < 1536)}"
                + (f"  (sampling took {cold['sampler_cpu_s']:.2f} CPU-s)" if cold.get("sampler_cpu_s") else ""))
            say(f"               fold training {cold.get('train_seconds', float('nan')):.1f}s summed over processes "
                f"(median fold {cold.get('median_fold_seconds', float('nan')):.3f}s, slowest "
                f"{cold.get('slowest_fold_seconds', float('nan')):.2f}s)"
                + (f"; LSTM {cold['model']} training {rate:.1f} GFLOP/s per process = {100 * rate / wpeak:.0f}% of the "
                   f"{tpw}-thread GEMM peak ({wpeak:.0f} GFLOP/s; the CLI's {n_workers} worker(s) run {tpw} thread(s) "
                   f"each)  target >= 25%  "
                   f"{judge('training_peak_fraction', rate / wpeak, rate / wpeak >= 0.25, cold.get('others'))}"
                   if rate else ""))
        if "error" in warm:
            say(f"  warm store : FAILED rc={warm['rc']}: {warm['error']}")
        else:
            st = warm.get("store") or {}
            ok = warm["wall"] < 5 and (warm.get("store") or {}).get("misses") == 0
            say(f"  warm store : {warm['wall']:7.2f}s  target < 5 s    {judge('rerun_seconds', warm['wall'], ok, warm.get('others'))}   "
                f"entry/exit 0.003, store hits "
                f"{st.get('hits')} misses {st.get('misses')}; peak RSS {warm['peak_rss_mb']:.0f} MiB "
                f"(tree {warm.get('tree_peak_rss_mb') or float('nan'):.0f} MiB), others {pct(warm.get('others'))}")
        wk = cb.get("workers")
        if wk:
            f1, f2, c1, c2 = wk["forecasts_1"], wk["forecasts_2"], wk["cli_1"], wk["cli_2"]
            if all("error" not in e for e in (f1, f2, c1, c2)):
                r_f, r_c = f1["forecasts"] / f2["forecasts"], c1["wall"] / c2["wall"]
                v = judge("workers_speedup", r_f, r_f >= 1.7, max(f1["others"] or 0, f2["others"] or 0))
                runs = (f"runs {wk['forecasts_1_runs']} vs {wk['forecasts_2_runs']}")
                say(f"  2 workers vs 1, forecast phase (4 tickers, precompute_forecasts, best of "
                    f"{len(wk['forecasts_1_runs'])}): {f1['forecasts']:.2f}s vs {f2['forecasts']:.2f}s = {r_f:.2f}x  "
                    f"target >= 1.7x  {v}  ({runs})")
                say(f"  2 workers vs 1, end to end (`--workers 1` vs `--workers 2`, cold store, imports and the "
                    f"serial Backtrader run included): {c1['wall']:.2f}s vs {c2['wall']:.2f}s = {r_c:.2f}x "
                    f"(runs {wk['cli_1_runs']} vs {wk['cli_2_runs']})")
            else:
                say(f"  workers comparison FAILED: {[e.get('error') for e in (f1, f2, c1, c2) if 'error' in e]}")
    say("-" * 100)
    say(f"peak RSS  : bench process {results['peak_rss_mb_self']:.0f} MiB (after A/B: {rss_after_ab:.0f} MiB)"
        + (f"; Darts worker {c['peak_rss_mb']:.0f} MiB" if c is not None else ""))
    say(f"total     : {results['total_seconds']:.1f}s (bench imports {IMPORT_SECONDS:.2f}s)")
    say("=" * 100)
    print("\n".join(lines), flush=True)

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=_json_default))
        print(f"wrote {args.json}")
    if not args.keep_tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp}")
    return 0


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


if __name__ == "__main__":
    sys.exit(main())
