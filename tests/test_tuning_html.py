"""tune.html: one self-contained page of a real search (every trial's objective in order and per parameter, the
chosen trial's PSR and DSR, the PBO's CSCV logits, the test period next to buy-and-hold), rendered in Chromium."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from puffin_bt.errors import ConfigError, DataError
from puffin_bt.plotting.tune_html import write_tune_html
from puffin_bt.store import ForecastStore
from puffin_bt.tuning import tune

from .test_plotting_html import chromium, external_refs, js_errors, needs_browser_or_skip
from .test_tuning import FIXED, frames
from .test_tuning_study import _env

pytest.importorskip("bokeh")

# Appended to a copy of the page: once Bokeh has drawn, lists what it drew (plot titles, canvases) and the bar
# heights of each histogram (a ColumnDataSource with top/left/right) into the light DOM, for --dump-dom.
PROBE = """<script>
function shadowed(root, found = []) {
  for (const el of root.querySelectorAll("*")) { if (el.shadowRoot) shadowed(el.shadowRoot, found); found.push(el); }
  return found;
}
setTimeout(() => {
  const found = {canvases: 0, titles: [], histograms: []};
  for (const el of shadowed(document)) if (el.tagName === "CANVAS") found.canvases++;
  for (const model of Bokeh.documents[0].all_models) {
    if (model.type === "Title" && model.text) found.titles.push(model.text);
    const top = model.data?.top;
    if (top && model.data.left) found.histograms.push(Array.from(top).reduce((a, b) => a + b, 0));
  }
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(found);
  document.body.appendChild(pre);
}, 3000);
</script>"""


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A real search whose trials trade (so DSR and PBO exist), kept in a study, saved with its page."""
    out = tmp_path_factory.mktemp("tune")
    result = tune(frames(), space={"hidden_dim": [3, 5], "lookback": [5, 8]}, objective="sharpe", entry=0.001,
                  exit=0.001, store=ForecastStore(tmp_path_factory.mktemp("s")), device="cpu",
                  storage=f"sqlite:///{out / 'study.db'}", study_name="<b>night</b> run", **FIXED)
    result.save(out)
    return result, result.plot_html(out)


def test_the_page_is_self_contained_and_states_the_selection_and_the_test(searched):
    result, page = searched
    text = page.read_text(encoding="utf-8")
    assert external_refs(text) == [] and "cdn.bokeh.org" not in text
    dsr, pbo = result.selection["dsr"], result.selection["pbo"]
    assert dsr["value"] is not None and pbo["value"] is not None, "the trials must trade for this test to mean anything"
    chosen = int(result.trials["trial"].iloc[0])
    assert f"chosen: <b>trial {chosen}</b>" in text
    assert f"PSR {dsr['psr']:.2f}, <b>DSR {dsr['value']:.2f}</b> after deflating for 4 trials" in text
    assert f"<b>PBO {pbo['value']:.2f}</b> over {pbo['n_combinations']} CSCV splits" in text
    test, bh = result.test.metrics["total_return"], result.test.benchmark["total_return"]
    assert f"{test:+.1%}</span>, Sharpe" in text and f"buy and hold {bh:+.1%}" in text
    # The study's name is the user's text: shown escaped, never as markup.
    assert "&lt;b&gt;night&lt;/b&gt; run" in text and "<b>night</b>" not in text
    for href in ("trials.csv", "best_config.json", "tune_stats.json"):
        assert f'<a href="{href}">' in text
    assert "logits" not in json.loads((page.parent / "tune_stats.json").read_text())["pbo"]


def test_the_page_renders_in_chromium_with_every_chart(searched, tmp_path):
    needs_browser_or_skip()
    result, page = searched
    text = page.read_text(encoding="utf-8")
    at = text.rindex("</body>")
    copy = tmp_path / "probe-tune.html"
    copy.write_text(text[:at] + PROBE + text[at:], encoding="utf-8")
    shot = tmp_path / "shot.png"
    dom, console, _ = chromium(copy.as_uri(), tmp_path, "--dump-dom", f"--screenshot={shot}")
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, f"the probe never ran; console: {console}"
    found = json.loads(found.group(1))
    assert js_errors(console) == []
    titles = " | ".join(found["titles"])
    for part in ("sharpe of every trial", "sharpe against hidden_dim", "sharpe against lookback", "deflates to DSR",
                 "PBO", "test period"):
        assert part in titles, (part, titles)
    assert found["canvases"] >= 6
    # The histograms hold every CSCV split and every trial that has a Sharpe ratio.
    with_sharpe = int(np.isfinite(result.trials["sharpe"].to_numpy(float)).sum())
    assert sorted(found["histograms"]) == sorted([result.selection["pbo"]["n_combinations"], with_sharpe])
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"))
    inked = (pixels < 235).any(axis=2).mean()
    assert inked > 0.04 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100, f"blank screenshot: {inked:.1%}"


def test_user_text_is_escaped_and_bad_input_named(searched, tmp_path):
    result, _ = searched
    args = (result.trials, "sharpe", ["hidden_dim", "lookback"], result.selection)
    page = write_tune_html(tmp_path / "p.html", *args, title="<script>alert(1)</script>",
                           links={"<i>x</i>": "a\"b.html"})
    text = page.read_text(encoding="utf-8")
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;i&gt;x&lt;/i&gt;" in text and 'href="a&quot;b.html"' in text
    with pytest.raises(DataError, match="missing: dropout"):
        write_tune_html(tmp_path / "q.html", result.trials, "sharpe", ["dropout"], result.selection)
    with pytest.raises(ConfigError, match="directory|folder"):
        write_tune_html(tmp_path, *args)


def test_the_cli_writes_tune_html_and_names_it_in_the_summary(tmp_path):
    data = tmp_path / "A.csv"
    frames()["A"].to_csv(data)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "puffin_bt.cli", "tune", "--csv", f"A={data}", "--space", '{"hidden_dim": [3, 4]}',
         "--objective", "mse", "--lookback", "5", "--min-train", "60", "--train-window", "80", "--retrain-every",
         "40", "--epochs", "1", "--refit-epochs", "1", "--num-layers", "1", "--device", "cpu", "--out", str(out),
         "--cache-dir", str(tmp_path / "c")], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"look at the search: {out / 'tune.html'}" in proc.stdout
    text = (out / "tune.html").read_text(encoding="utf-8")
    assert "2 trials</b> scored by mse" in text and '<a href="test/trades.html">' in text
