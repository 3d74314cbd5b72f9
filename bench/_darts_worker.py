"""Contender C of bench_walkforward.py: Darts BlockRNNModel + historical_forecasts.

Runs inside the Darts virtualenv (not puffin_bt's), so it imports nothing from
puffin_bt. Reads the closes from a .npy file, runs a tiny warm-up, then the timed
walk-forward ``--repeat`` times and prints ONE JSON line on stdout:

    {"seconds": [...], "warmup_seconds": ..., "versions": {...}, "threads": ..., ...}

Everything else (Lightning/Darts chatter) goes to stderr or is silenced.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings


def _busy_seconds():
    try:
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")


def _my_seconds():
    import resource

    a = resource.getrusage(resource.RUSAGE_SELF)
    return a.ru_utime + a.ru_stime


def others_share(b0, m0, wall):
    """CPU used by other processes (and steal) during a run, as a share of the machine
    (same definition as OthersCpu in bench_walkforward.py)."""
    b1 = _busy_seconds()
    if b0 is None or b1 is None or wall <= 0:
        return None
    return min(1.0, max(0.0, ((b1 - b0) - (_my_seconds() - m0)) / (wall * (os.cpu_count() or 1))))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--closes", required=True)
    ap.add_argument("--pred-bars", type=int, required=True)
    ap.add_argument("--lookback", type=int, required=True)
    ap.add_argument("--hidden", type=int, required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--batch-size", type=int, required=True)
    ap.add_argument("--retrain-every", type=int, required=True)
    ap.add_argument("--train-window", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--budget", type=float, default=0.0, help="no further repeat once this many seconds are spent")
    args = ap.parse_args()

    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric", "darts"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TQDM_DISABLE", "1")

    t_import = time.perf_counter()
    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import darts
    import pytorch_lightning as pl
    from darts import TimeSeries
    from darts.models import BlockRNNModel

    import_seconds = time.perf_counter() - t_import
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric", "darts"):
        logging.getLogger(name).setLevel(logging.ERROR)

    closes = np.load(args.closes).astype(np.float64)
    rets = np.diff(np.log(closes))
    # Timing only: standardise with the first training window's statistics (Darts does not
    # scale by itself); the numbers are not compared with A's forecasts.
    head = rets[: args.train_window]
    scaled = ((rets - head.mean()) / (head.std() or 1.0)).astype(np.float32)

    trainer_kwargs = {"enable_progress_bar": False, "enable_model_summary": False, "logger": False,
                      "enable_checkpointing": False, "accelerator": "cpu"}

    def walk(values, pred_bars, epochs, hidden, retrain_every, train_window):
        series = TimeSeries.from_values(values)
        start = len(series) - pred_bars
        b0, m0 = _busy_seconds(), _my_seconds()
        started = time.perf_counter()
        model = BlockRNNModel(
            model="LSTM", input_chunk_length=args.lookback, output_chunk_length=1, hidden_dim=hidden,
            n_rnn_layers=args.layers, dropout=args.dropout, batch_size=args.batch_size, n_epochs=epochs,
            random_state=args.seed, pl_trainer_kwargs=dict(trainer_kwargs),
        )
        fc = model.historical_forecasts(
            series, start=start, start_format="position", retrain=retrain_every, train_length=train_window,
            forecast_horizon=1, last_points_only=True, verbose=False, show_warnings=False,
        )
        seconds = time.perf_counter() - started
        return seconds, np.asarray(fc.values()).ravel(), start, others_share(b0, m0, seconds)

    # Warm-up: a tiny walk-forward in this process (imports, Lightning, MKL initialisation).
    warm_n = args.lookback + 40 + 20
    warmup_seconds, _, _, _ = walk(scaled[:warm_n], 20, 1, 4, 10, args.lookback + 40)

    seconds, others, n_forecasts, dir_acc = [], [], None, None
    for _ in range(max(1, args.repeat)):
        if seconds and args.budget and sum(seconds) > args.budget:
            break
        s, preds, start, share = walk(scaled, args.pred_bars, args.epochs, args.hidden, args.retrain_every,
                                      args.train_window)
        seconds.append(s)
        others.append(share)
        n_forecasts = len(preds)
        # preds[j] forecasts scaled[start + j]. A raw return r = scaled * std + mean is > 0 when
        # scaled > -mean/std: direction accuracy of the forecast against the realised return.
        realised = scaled[start: start + len(preds)]
        zero = -float(head.mean() / (head.std() or 1.0))
        ok = np.sign(preds - zero) == np.sign(realised - zero)
        dir_acc = float(ok.mean()) if len(ok) else None

    out = {
        "seconds": seconds,
        "others": others,
        "warmup_seconds": warmup_seconds,
        "import_seconds": import_seconds,
        "n_forecasts": n_forecasts,
        "n_trainings": -(-args.pred_bars // args.retrain_every),
        "samples_per_fold": args.train_window - args.lookback,
        "direction_accuracy": dir_acc,
        "threads": torch.get_num_threads(),
        "versions": {"darts": darts.__version__, "torch": torch.__version__, "pytorch_lightning": pl.__version__,
                     "numpy": np.__version__, "python": sys.version.split()[0]},
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
