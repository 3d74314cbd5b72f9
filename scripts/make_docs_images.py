#!/usr/bin/env python
"""Regenerate the pictures the README's tour shows (docs/*.png) with the real CLI on the bundled data.

    python scripts/make_docs_images.py            # a few minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUNS = [
    # (label, CLI arguments, {file written by the run: name under docs/})
    ("backtest", ["backtest", "--start", "2009-01-01"],
     {"trades_AAPL.png": "trades_AAPL.png", "trades_IBM.png": "trades_IBM.png", "equity.png": "equity.png"}),
    ("lstm-vs-gru", ["backtest", "--model", "both", "--start", "2009-01-01"],
     {"comparison.png": "comparison.png"}),
    ("evaluate", ["evaluate", "--sample", "AAPL", "--start", "2009-01-01"],
     {"forecast_AAPL.png": "forecast_AAPL.png"}),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", default=str(ROOT / "docs"), help="where the PNGs go (default docs/)")
    args = parser.parse_args()
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for label, cli_args, files in RUNS:
            out = Path(tmp) / label
            cmd = [sys.executable, "-m", "puffin_bt.cli", *cli_args, "--quiet", "--out", str(out),
                   "--cache-dir", str(cache)]
            print("$ puffin-bt", " ".join(cli_args), flush=True)
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            print(proc.stdout)
            (docs / f"{label}.txt").write_text(f"$ puffin-bt {' '.join(cli_args)}\n{proc.stdout}")
            for source, target in files.items():
                shutil.copyfile(out / source, docs / target)
    print(f"wrote {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
