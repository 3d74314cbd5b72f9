"""Reliability, round three (issue 25): what a third adversarial probe broke, each case pinned.

A script injected through report.html, PBO reading ties as certain overfitting, the rank strategy's clock and
attribution, intraday bars annualised as days, a missing volume poisoning a feature, a full disk losing the run, and
the clear errors and smaller silent answers listed in the issue. CLI cases run through the forked CLI server of
tests/test_reliability2.py; HTML pages are opened in a real headless Chromium (tests/browser.py).
docs/RELIABILITY.md lists every case with its test under "Round three".
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .browser import render
from .conftest import ohlcv_frame, synthetic_closes
from .test_reliability import CLI_TINY, _csv
from .test_reliability2 import Job, _run_round

# --------------------------------------------------------------------------- 1. script injection in the HTML pages

# Each would rewrite the page's title if the browser ran it; the text itself must show instead.
HOSTILE_FILE = "q<img src=x onerror=document['title']='PWNED'>.csv"
HOSTILE_NAME = "<b>bold<i>"  # through --csv NAME=FILE: a name holds no '=' (and one with '/' is read as a path)
HOSTILE_COLUMN = "<img src=x onerror=document.title='PWNEDCOL'>"


def _hostile_csv(w: Path, name: str, seed: int) -> Path:
    w.mkdir(parents=True, exist_ok=True)
    frame = ohlcv_frame(synthetic_closes(300, seed=seed))
    frame[HOSTILE_COLUMN] = 1.0  # an extra column: ignored, and never pasted anywhere as markup
    path = w / name
    path.write_text(_csv(frame), encoding="utf-8")
    return path


def _hostile_run(w: Path, root: Path) -> list:
    return ["backtest", "--csv", str(_hostile_csv(w, HOSTILE_FILE, 5)), f"{HOSTILE_NAME}={_hostile_csv(w, 'b.csv', 6)}",
            *CLI_TINY, "--entry", "0", "--exit", "0", "--allow-short", "--report", "html", "--quiet", "--out", str(w / "out"),
            "--cache-dir", str(w / "cache")]


def _hostile_replay(w: Path, root: Path) -> list:
    """The first run's config.json with a ticker renamed to a script, replayed with --config."""
    cfg = json.loads((root / "hostile" / "out" / "config.json").read_text())
    cfg["data"]["files"][1]["name"] = "r<img src=x onerror=document.title='PWNEDREPLAY'>"
    w.mkdir(parents=True, exist_ok=True)
    (w / "config.json").write_text(json.dumps(cfg))
    return ["backtest", "--config", str(w / "config.json"), "--report", "html", "--quiet", "--out", str(w / "out"),
            "--cache-dir", str(w / "cache")]


HTML_JOBS = {"hostile": Job(_hostile_run), "hostile-replay": Job(_hostile_replay, rnd=2)}


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("html3")
    results = _run_round({"hostile": HTML_JOBS["hostile"]}, root)
    results.update(_run_round({"hostile-replay": HTML_JOBS["hostile-replay"]}, root))
    return results


@pytest.mark.parametrize("job, names", [
    ("hostile", (HOSTILE_FILE.removesuffix(".csv"), HOSTILE_NAME)),
    ("hostile-replay", ("r<img src=x onerror=document.title='PWNEDREPLAY'>",)),
])
@pytest.mark.parametrize("page", ["report.html", "trades.html"])
def test_hostile_ticker_file_and_column_names_run_no_script_in_the_html_pages(hostile_runs, tmp_path, job, names, page):
    proc, workdir = hostile_runs[job]
    assert proc.returncode == 0, proc.stderr
    rendered = render(workdir / "out" / page, tmp_path)
    assert "PWNED" not in rendered.title, f"a script from the data ran: the title is {rendered.title!r}"
    assert not re.search(r"<img\b[^>]*\bsrc=\"?x\b", rendered.dom), "a ticker name became an <img> element"
    assert not re.search(r"<b>bold", rendered.dom), "a ticker name became markup"
    for name in names:
        assert name in rendered.text, f"{name!r} is not shown as text"
