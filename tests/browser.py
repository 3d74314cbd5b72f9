"""Headless Chromium for the tests of the HTML pages puffin_bt writes (trades.html, report.html, later pages):
run it on a page and read back what rendered — the DOM after the page's scripts ran, its title and its text."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def needs_browser_or_skip() -> None:
    """Skip without a browser, except where PUFFIN_BT_REQUIRE_BROWSER=1 (.ci/run sets it after installing Chromium),
    where a missing browser fails the test instead of skipping it silently."""
    if CHROMIUM is not None:
        return
    why = "no chromium, chromium-browser or google-chrome on PATH"
    if os.environ.get("PUFFIN_BT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{why}, and PUFFIN_BT_REQUIRE_BROWSER=1: install it (apt-get install -y chromium)")
    pytest.skip(f"{why} (CI installs chromium)")


def chromium(url: str, tmp_path: Path, *args: str) -> tuple[str, list[str], float]:
    """Run headless Chromium on ``url``; returns stdout, the page's console lines and the wall time."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1000",
           "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0", *args, url]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, [line for line in proc.stderr.splitlines() if ":CONSOLE" in line], seconds


@dataclass
class Rendered:
    """A page as Chromium left it after its scripts (and any handler its data smuggled in) had 5 s of virtual time."""

    dom: str  # the serialised DOM: what a script changed shows here, e.g. a <title> it rewrote
    title: str  # the document's title, unescaped
    text: str  # every text node, unescaped, tags stripped (script and style bodies included)
    console: list[str]


def render(page: Path, tmp_path: Path) -> Rendered:
    """Open ``page`` (a file) in headless Chromium and read back its DOM, title and text."""
    needs_browser_or_skip()
    dom, console, _ = chromium(page.resolve().as_uri(), tmp_path, "--dump-dom")
    assert "<html" in dom.lower(), f"Chromium printed no DOM; console: {console}"
    found = re.search(r"<title>(.*?)</title>", dom, re.S | re.I)
    title = html.unescape(found.group(1)) if found else ""
    text = html.unescape(re.sub(r"<[^>]*>", " ", dom))
    return Rendered(dom=dom, title=title, text=text, console=console)
