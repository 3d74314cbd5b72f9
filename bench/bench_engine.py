"""Per-model cost of one warm-refit epoch on the batched engine, M models at once, against autograd's
``nn.LSTM`` / ``nn.GRU`` training one model alone: the measurement behind which warm refits go to the engine
(``warm_on_engine`` of ``models/gru.py`` and ``models/lstm.py``) and behind what batching many tickers can gain (``universe.py``).

The default model (64x2, lookback 20, batch 32) on 484 training windows of a seeded random walk, one torch
thread, best of 5 (autograd) and of 3 (engine) after a warm-up run each.

    python bench/bench_engine.py                     # LSTM and GRU, M = 1, 2, 4, 8 (~30 s)
    python bench/bench_engine.py --cells lstm --m 1 8 16
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def alone(cfg, data) -> float:
    """Seconds for one epoch of one fresh net with autograd (``nn.LSTM`` / ``nn.GRU``)."""
    import torch

    from puffin_bt.fitting import new_net, train_prepared

    net = new_net(cfg, 1)
    t = time.perf_counter()
    train_prepared(net, cfg, data, 1, torch.device("cpu"), 1)
    return time.perf_counter() - t


def together(cfg, data, m: int) -> float:
    """Seconds for one epoch of ``m`` fresh nets trained together on the batched engine."""
    import torch

    from puffin_bt.fitting import new_net, train_networks_together

    nets = [new_net(cfg, s) for s in range(m)]
    t = time.perf_counter()
    train_networks_together(nets, cfg, [data] * m, 1, torch.device("cpu"), list(range(m)))
    return time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru"], choices=("lstm", "gru"))
    parser.add_argument("--m", type=int, nargs="+", default=[1, 2, 4, 8], help="models trained together")
    parser.add_argument("--windows", type=int, default=484, help="training windows per model")
    args = parser.parse_args()

    import numpy as np
    import torch

    from puffin_bt.fitting import fold_data
    from puffin_bt.options import ModelConfig

    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    closes = 50 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.02, args.windows + 200)))
    load = os.getloadavg()
    print(f"# engine bench: {os.cpu_count()} cores, 1 torch thread, load average {load[0]:.2f}; "
          f"{args.windows} windows, one epoch")
    print(f"{'cell':5} {'how':18} {'ms':>7} {'ms/model':>9} {'vs autograd alone':>18}")
    for cell in args.cells:
        cfg = ModelConfig(cell=cell)
        bars = np.arange(cfg.lookback + 10, cfg.lookback + 10 + args.windows)
        data = fold_data(cfg, closes, bars, cpu)

        alone(cfg, data)
        base = min(alone(cfg, data) for _ in range(5))
        print(f"{cell:5} {'autograd, alone':18} {base * 1e3:7.0f} {base * 1e3:9.0f} {1.0:17.2f}x")
        for m in args.m:
            together(cfg, data, m)
            took = min(together(cfg, data, m) for _ in range(3))
            print(f"{cell:5} {f'engine, M = {m}':18} {took * 1e3:7.0f} {took / m * 1e3:9.0f} "
                  f"{base / (took / m):17.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
