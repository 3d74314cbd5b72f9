#!/usr/bin/env python
"""Regenerate the pictures the README's tour and the docs pages show (docs/*.png) with the real CLI on the bundled
data, and screenshots of the default run's interactive trades.html and of a small search's tune.html in headless
Chromium (skipped, with a note, without it).

    python scripts/make_docs_images.py            # a few minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import os
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
    ("default", ["backtest"], {}),  # the README's main command: its trades.html is screenshot below
    ("tune", ["tune", "--sample", "IBM", "MSFT", "--start", "2009-01-01", "--space",
              '{"hidden_dim": [4, 8], "lookback": [5, 10, 20], "lr": [0.01, 0.001]}', "--min-train", "120",
              "--train-window", "250", "--retrain-every", "60", "--epochs", "3", "--refit-epochs", "2",
              "--num-layers", "1", "--entry", "0.0005", "--exit", "0.0005"], {}),  # its tune.html, screenshot below
]
# (run label, page, tab, picture under docs/, window height): trades.html opens on the tab's last three years; the
# pointer is put on the last trade marker in view so the picture shows a trade's tooltip.
SHOTS = [("default", "trades.html", "MSFT", "trades_html.png", 1000), ("tune", "tune.html", "", "tune_html.png", 1250)]
HOVER = """<script>
setTimeout(() => {
  function* walk(view) { yield view; for (const child of view.child_views ?? []) yield* walk(child); }
  const marks = (v) => (v.model.renderers ?? []).filter((r) => r.data_source?.get_column("signal") != null);
  const view = [...Bokeh.index].flatMap((v) => [...walk(v)])
    .find((v) => marks(v).length && v.el.checkVisibility({visibilityProperty: true}));
  let at = null;
  for (const r of view ? marks(view) : []) {
    const ts = r.data_source.get_column("t"), ps = r.data_source.get_column("price");
    for (let i = 0; i < ts.length; i++) {
      const sx = view.frame.x_scale.compute(ts[i]);
      if (sx > view.frame.bbox.left && sx < view.frame.bbox.right) at = [sx + 1, view.frame.y_scale.compute(ps[i])];
    }
  }
  if (!at) return;
  const box = view.canvas_view.events_el.getBoundingClientRect();
  view.canvas_view.events_el.dispatchEvent(new PointerEvent("pointermove", {clientX: box.left + at[0],
    clientY: box.top + at[1], bubbles: true, composed: true, pointerType: "mouse", isPrimary: true}));
}, 2500);
</script>"""


def screenshot(page: Path, tab: str, picture: Path, workdir: Path, height: int = 1000) -> bool:
    """``page#tab`` in headless Chromium, 1400 wide, into ``picture``; False (with a note) without Chromium."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        print(f"no chromium on PATH: {picture.name} not regenerated", file=sys.stderr)
        return False
    text = page.read_text(encoding="utf-8")
    at = text.rindex("</body>")
    copy = page.with_name(f"shot-{page.name}")
    copy.write_text(text[:at] + HOVER + text[at:], encoding="utf-8")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                    f"--user-data-dir={workdir / 'chromium'}", f"--window-size=1400,{height}", "--virtual-time-budget=6000",
                    f"--screenshot={picture}", f"{copy.as_uri()}#{tab}"], check=True, capture_output=True, timeout=120)
    return True


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
        for label, page, tab, picture, height in SHOTS:
            page = Path(tmp) / label / page
            print(f"{picture}: {page.name} is {os.path.getsize(page):,} bytes", flush=True)
            screenshot(page, tab, docs / picture, Path(tmp), height)
    print(f"wrote {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
