"""The documentation site: every page under docs/ is in mkdocs.yml's navigation and every navigation entry exists;
the README stays a short front door whose two commands are the quick start's; the site builds strictly."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _nav_pages() -> list[str]:
    text = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text.split("\nnav:\n", 1)[1].split("\nmarkdown_extensions:", 1)[0]
    return re.findall(r"^\s+- [^:]+: (\S+\.md)$", nav, re.M)


def test_every_docs_page_is_in_the_navigation_and_every_entry_exists():
    pages = _nav_pages()
    assert len(pages) >= 14 and len(set(pages)) == len(pages)
    assert sorted(pages) == sorted(p.name for p in (REPO / "docs").glob("*.md"))


def test_the_readme_is_a_short_front_door_with_the_quick_starts_two_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    commands = re.findall(r"```bash\n(python3 -m venv .*)\n```", readme)
    assert len(commands) == 2 and "puffin-bt backtest" in commands[0] and "pytest" in commands[1]
    quickstart = (REPO / "docs" / "quickstart.md").read_text(encoding="utf-8")
    assert all(command in quickstart for command in commands)
    for page in ("quickstart", "tuning", "api"):  # links into the site
        assert f"docs/{page}.md" in readme


@pytest.mark.skipif(shutil.which("mkdocs") is None and os.environ.get("PUFFIN_BT_REQUIRE_DOCS") != "1",
                    reason="mkdocs is not installed (pip install -e '.[docs]'; .ci/run builds the site)")
def test_the_site_builds_strictly(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    assert "study_name" in api and "write_tune_html" in api  # the reference is generated from the docstrings
    assert (tmp_path / "site" / "tune_html.png").is_file()
