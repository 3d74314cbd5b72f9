"""The self-contained HTML trade chart: built from a slice of a real run, rendered in headless Chromium, and on a
46-year synthetic history with hundreds of folds and round trips; bad inputs and the atomic write."""

from __future__ import annotations

import html
import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from puffin_bt import load_sample
from puffin_bt.errors import ConfigError, DataError
from puffin_bt.plotting.html import HTML_UNAVAILABLE, html_available, write_trades_html

from .browser import chromium, needs_browser_or_skip

RUN = Path(__file__).parent / "data" / "html_run"  # the real LSTM run sliced to IBM and MSFT, 2007-10..2011-10
# Appended to a copy of the page: Bokeh draws inside shadow roots, which --dump-dom does not print, so this walks
# them once the page has rendered and writes what it found into the light DOM: the tab labels, the active tab, the
# canvases, and the tooltips and bar readout shown after a pointer move onto the last trade marker in view (found
# through BokehJS views: if a Bokeh release renames those, "hover" says so rather than the page being at fault).
PROBE = """<script>
function shadowed(root, found = []) {
  for (const el of root.querySelectorAll("*")) {
    if (el.shadowRoot) shadowed(el.shadowRoot, found);
    found.push(el);
  }
  return found;
}
let hovered = null;
function hoverLastMarker() {
  function* walk(view) { yield view; for (const child of view.child_views ?? []) yield* walk(child); }
  const marks = (v) => (v.model.renderers ?? []).filter((r) => r.data_source?.get_column("signal") != null);
  const view = [...Bokeh.index].flatMap((v) => [...walk(v)])
    .find((v) => marks(v).length && v.el.checkVisibility({visibilityProperty: true}));
  if (!view) return "no visible plot with trade markers";
  hovered = view.model;
  let at = null;
  for (const r of marks(view)) {
    const ts = r.data_source.get_column("t"), ps = r.data_source.get_column("price");
    for (let i = 0; i < ts.length; i++) {
      const sx = view.frame.x_scale.compute(ts[i]);
      if (sx > view.frame.bbox.left && sx < view.frame.bbox.right) at = [sx + 1, view.frame.y_scale.compute(ps[i])];
    }
  }
  if (!at) return "no trade marker in view";
  const box = view.canvas_view.events_el.getBoundingClientRect();
  view.canvas_view.events_el.dispatchEvent(new PointerEvent("pointermove", {
    clientX: box.left + at[0], clientY: box.top + at[1], bubbles: true, composed: true, pointerType: "mouse", isPrimary: true}));
  return "ok";
}
setTimeout(() => {
  const found = {tabs: [], active: null, canvases: 0, hover: null, tooltips: [], readout: null};
  for (const el of shadowed(document)) {
    if (el.classList.contains("bk-tab")) {
      found.tabs.push(el.textContent.trim());
      if (el.classList.contains("bk-active")) found.active = el.textContent.trim();
    }
    if (el.tagName === "CANVAS") found.canvases++;
  }
  try { found.hover = hoverLastMarker(); } catch (e) { found.hover = String(e); }
  setTimeout(() => {
    found.tooltips = shadowed(document).filter((el) => el.classList.contains("bk-tooltip-content"))
      .map((el) => el.textContent.trim());
    found.readout = hovered?.title?.text ?? null;
    const pre = document.createElement("pre");
    pre.id = "probe";
    pre.textContent = JSON.stringify(found);
    document.body.appendChild(pre);
  }, 500);
}, 3000);
</script>"""


def real_run() -> dict:
    prices = load_sample(["IBM", "MSFT"], start="2007-10-01", end="2011-10-31")
    return dict(prices=prices, trades=pd.read_csv(RUN / "trades.csv"), forecasts=pd.read_csv(RUN / "forecasts.csv.gz"),
                folds=pd.read_csv(RUN / "folds.csv"), equity=pd.read_csv(RUN / "equity.csv.gz"),
                open_positions=pd.read_csv(RUN / "open_positions.csv"))


def long_run(n: int = 11_500, entry: float = 0.005, exit: float = 0.005) -> dict:
    """46 years of daily bars: AAPL's sample returns repeated, rescaled to go from $1 to $500, with forecasts
    (and an interval) that know a tenth of the next return, a retrain every 22 bars and the round trips the
    threshold rule makes on them (fills at the next open)."""
    aapl = load_sample("AAPL")["AAPL"]
    steps = np.resize(np.diff(np.log(aapl["close"].to_numpy())), n - 1)
    steps += (math.log(500.0) - steps.sum()) / (n - 1)
    close = np.exp(np.concatenate([[0.0], np.cumsum(steps)]))
    shape = {c: np.resize((aapl[c] / aapl["close"]).to_numpy(), n) for c in ("open", "high", "low")}
    dates = pd.bdate_range("1967-01-02", periods=n)
    prices = pd.DataFrame({**{c: close * shape[c] for c in shape}, "close": close,
                           "volume": np.resize(aapl["volume"].to_numpy(), n)}, index=dates)
    start = 252
    rng = np.random.default_rng(0)
    realized = np.append(close[1:] / close[:-1] - 1, np.nan)
    noise = rng.normal(0, 0.0045, n)
    for t in range(1, n):  # AR(1): forecasts drift in and out of the thresholds over a few bars, as a model's do
        noise[t] += 0.5 * noise[t - 1]
    pred = noise + 0.1 * np.nan_to_num(realized)
    fc = pd.DataFrame({"ticker": "LONG", "date": dates, "close": close, "pred_return": pred, "realized_return": realized,
                       "last_return": np.append(np.nan, close[1:] / close[:-1] - 1),
                       "pred_lo": pred - 0.015, "pred_hi": pred + 0.015}).iloc[start:]
    folds = pd.DataFrame({"ticker": "LONG", "index": range(len(range(start, n, 22))), "bar": range(start, n, 22),
                          "date": dates[start::22], "val_loss": 0.5})
    opens, trips, value, cash, entry_bar, size = prices["open"].to_numpy(), [], np.full(n, 10_000.0), 10_000.0, None, 0
    for t in range(start, n - 1):
        if entry_bar is not None:  # marked to the close while held
            value[t] = cash + size * (close[t] - opens[entry_bar])
        if entry_bar is None and pred[t] > entry:
            entry_bar, size = t + 1, math.floor(cash / opens[t + 1])
        elif entry_bar is not None and pred[t] < -exit:
            p0, p1 = opens[entry_bar], opens[t + 1]
            pnl, fee = size * (p1 - p0), 0.001 * size * (p0 + p1)
            trips.append({"ticker": "LONG", "direction": "long", "entry_date": dates[entry_bar], "exit_date": dates[t + 1],
                          "entry_price": p0, "exit_price": p1, "size": size, "bars": t + 1 - entry_bar, "pnl": pnl,
                          "pnl_net": pnl - fee, "commission": fee, "return": p1 / p0 - 1})
            cash += pnl - fee
            entry_bar = None
        value[t + 1] = cash
    equity = pd.DataFrame({"strategy": value, "buy_hold": 10_000 * close / close[start]}, index=dates).iloc[start:]
    young = load_sample("MSFT", start="2010-06-01")  # a ticker too short for forecasts: prices only
    return dict(prices={"LONG": prices, **young}, trades=pd.DataFrame(trips), forecasts=fc, folds=folds, equity=equity)


def probe(page: Path, tmp_path: Path, tab: str, *args: str) -> tuple[dict, list[str], float]:
    """Load a copy of ``page`` (with PROBE) in Chromium on ``tab``'s tab; what rendered, console lines, seconds."""
    text = page.read_text(encoding="utf-8")
    at = text.rindex("</body>")
    copy = tmp_path / f"probe-{page.name}"
    copy.write_text(text[:at] + PROBE + text[at:], encoding="utf-8")
    dom, console, seconds = chromium(f"{copy.as_uri()}#{tab}", tmp_path, "--dump-dom", *args)
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, f"the probe never ran: the page did not finish loading in 5 s of virtual time; console: {console}"
    return json.loads(found.group(1)), console, seconds


def js_errors(console: list[str]) -> list[str]:
    return [line for line in console if re.search(r"uncaught|error|warn", line, re.I)]


def external_refs(text: str) -> list[str]:
    """Script, stylesheet, image or frame tags that would fetch from the network (or anything outside the file)."""
    tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", text, re.I)
    return [tag for tag in tags if re.search(r"\b(?:src|href)\s*=", tag, re.I)]


# --------------------------------------------------------------------------- the page


@pytest.fixture(scope="module")
def real_page(tmp_path_factory) -> tuple[Path, dict]:
    run = real_run()
    out = tmp_path_factory.mktemp("real") / "out" / "trades.html"
    assert write_trades_html(out, **run, title="LSTM <walk-forward>", links={"quantstats report": "report.html"}) == out
    return out, run


def test_real_run_page_is_self_contained_and_complete(real_page):
    out, _ = real_page
    text = out.read_text(encoding="utf-8")
    # Tags, not a grep for 'src="http': Bokeh's inlined bundle holds a MathJax loader (t.src="https://...") in its code,
    # which runs only for LaTeX labels, and this page has none.
    assert external_refs(text) == []
    assert "cdn.bokeh.org" not in text
    assert "<title>LSTM &lt;walk-forward&gt;</title>" in text  # the title is escaped, not injected
    assert '<a href="report.html">quantstats report</a>' in text
    assert "IBM, MSFT" in text and "2007-10-01 to 2011-10-31" in text
    for tooltip in ("forecast of this close", "pred next return", "signal", "round trip", "@pnl", "@outcome",
                    "retrain", "realised next return", "buy and hold"):
        assert tooltip in text, tooltip
    assert "price (log scale)" not in text  # neither IBM nor MSFT spans 10x in these four years
    assert "3 round trip(s), 1 still open" in text


def test_fill_markers_show_the_forecast_of_the_bar_before(real_page):
    """The signal of a fill is the last forecast strictly before the fill date (orders fill at the next open)."""
    out, run = real_page
    text = html.unescape(out.read_text(encoding="utf-8"))
    fc = run["forecasts"].assign(date=lambda f: pd.to_datetime(f["date"]))
    for row in run["trades"].itertuples():
        for fill in (row.entry_date, row.exit_date):
            mine = fc[(fc["ticker"] == row.ticker) & (fc["date"] < pd.Timestamp(fill))].iloc[-1]
            assert f"pred {mine.pred_return:+.3%} on {mine.date:%Y-%m-%d}" in text
    entry = pd.Timestamp(run["trades"].iloc[0]["entry_date"])
    mine = fc[(fc["ticker"] == "IBM") & (fc["date"] < entry)].iloc[-1]
    assert mine.pred_return > 0.005  # the entry rule: a long opens after a forecast above +entry
    assert "exit 2008-10-03: +0.27%, net P/L +25.48" in text
    assert "still open at the end" in text


def test_real_run_renders_in_chromium(real_page, tmp_path):
    needs_browser_or_skip()
    shot = tmp_path / "shot.png"
    found, console, _ = probe(real_page[0], tmp_path, "IBM", f"--screenshot={shot}")
    assert found["tabs"] == ["Portfolio", "IBM", "MSFT"]
    assert found["active"] == "IBM"  # page.html#IBM opens IBM's tab
    assert found["canvases"] > 0
    assert found["hover"] == "ok", f"the hover probe failed (BokehJS internals changed?): {found['hover']}"
    marker = [tip for tip in found["tooltips"] if "signal" in tip]
    assert marker, found["tooltips"]
    for field in ("price", "size", "signal", "pred ", "round trip", "held", "bars from"):
        assert field in marker[0], (field, marker[0])
    assert "&amp;" not in marker[0]
    # The bar under the pointer, read out in the price panel's title row.
    assert re.match(r"IBM  \w{3} \d{4}-\d\d-\d\d   O [\d.,]+  H [\d.,]+  L [\d.,]+  C [\d.,]+   vol [\d.,]+ M   forecast of this "
                    r"close [\d.,]+   pred next return [+-][\d.]+%$", found["readout"]), found["readout"]
    assert js_errors(console) == []
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (1000, 1400)
    inked = (pixels < 235).any(axis=2).mean()
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert inked > 0.04 and colours > 200, f"the screenshot looks blank: {inked:.1%} non-white, {colours} colours"


def test_long_history_stays_compact(tmp_path):
    run = long_run()
    assert len(run["prices"]["LONG"]) == 11_500 and len(run["folds"]) > 500 and 500 < len(run["trades"]) < 800
    page = write_trades_html(tmp_path / "long.html", **run, title="46 years")
    text = page.read_text(encoding="utf-8")
    assert page.stat().st_size < 5_000_000
    assert "price (log scale)" in text  # $1 to $500
    assert "forecast interval" in text and "@pred_lo" in text
    assert external_refs(text) == []
    needs_browser_or_skip()
    found, console, seconds = probe(page, tmp_path, tab="LONG")
    assert found["tabs"] == ["Portfolio", "LONG", "MSFT"] and found["active"] == "LONG"
    assert js_errors(console) == []
    assert seconds < 30, f"Chromium took {seconds:.1f} s to load the 46-year page"


# --------------------------------------------------------------------------- missing and bad inputs


def test_missing_parts_still_make_a_page(tmp_path):
    run = real_run()
    fc = run["forecasts"][run["forecasts"]["ticker"] == "IBM"]
    page = write_trades_html(tmp_path / "p.html", run["prices"], pd.DataFrame(), fc, None, None)
    text = page.read_text(encoding="utf-8")
    assert '"title":"MSFT"' in text.replace(" ", "") and '"title":"Portfolio"' not in text.replace(" ", "")
    assert "0 round trip(s), 0 still open" in text
    page = write_trades_html(tmp_path / "q.html", {"IBM": run["prices"]["IBM"]}, None, None, None, None,
                             default_years=None)
    assert page.is_file()


def test_short_round_trip_is_a_sell_then_a_buy(tmp_path):
    run = real_run()
    short = run["trades"].iloc[[2]].assign(direction="short", pnl_net=650.79, **{"return": 0.0102})
    page = write_trades_html(tmp_path / "s.html", **{**run, "trades": short, "open_positions": None})
    text = html.unescape(page.read_text(encoding="utf-8"))
    assert "sell to open a short" in text and "buy to close the short" in text and "to open a long" not in text
    assert "1 round trip(s), 0 still open" in text


@pytest.mark.parametrize(("change", "error", "words"), [
    (lambda r: r.update(trades=r["trades"].drop(columns="exit_price")), DataError, ["trades", "exit_price"]),
    (lambda r: r.update(forecasts=r["forecasts"].drop(columns="pred_return")), DataError, ["forecasts", "pred_return"]),
    (lambda r: r.update(folds=r["folds"].drop(columns="date")), DataError, ["folds", "'date'"]),
    (lambda r: r.update(equity=r["equity"].drop(columns="strategy")), DataError, ["equity", "strategy"]),
    (lambda r: r.update(prices={"IBM": r["prices"]["IBM"].drop(columns="low")}), DataError, ["prices['IBM']", "low"]),
    (lambda r: r.update(prices={"IBM": r["prices"]["IBM"].reset_index()}), DataError, ["DatetimeIndex"]),
    (lambda r: r.update(prices={}), ConfigError, ["non-empty dict"]),
    (lambda r: r.update(prices={"IBM": r["prices"]["IBM"]}), DataError, ["['MSFT']", "not in prices"]),
    (lambda r: r.update(forecasts=r["forecasts"].assign(pred_lo=0.0)), DataError, ["pred_lo", "pred_hi"]),
    (lambda r: r.update(folds=r["folds"].assign(date="soon")), DataError, ["folds.date", "soon"]),
    (lambda r: r.update(trades=[1, 2]), ConfigError, ["trades", "list"]),
    (lambda r: r.update(entry=-0.1), ConfigError, ["entry"]),
    (lambda r: r.update(default_years=0), ConfigError, ["default_years"]),
    (lambda r: r.update(links=["report.html"]), ConfigError, ["links", "{label: href}"]),
])
def test_bad_inputs_name_the_value_and_the_fix(tmp_path, change, error, words):
    run = real_run()
    change(run)
    with pytest.raises(error) as info:
        write_trades_html(tmp_path / "x.html", **run)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert not list(tmp_path.iterdir())


def test_out_path_that_is_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="is a directory; pass a file path such as"):
        write_trades_html(tmp_path, **real_run())


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_write_honours_the_umask(tmp_path, umask):
    target = tmp_path / "trades.html"
    target.write_text("old page")
    old = os.umask(umask)
    try:
        write_trades_html(target, load_sample("IBM", start="2012-01-01"), None, None, None, None)
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["trades.html"]  # no temp file left behind


def test_without_bokeh(monkeypatch, tmp_path):
    assert html_available()
    monkeypatch.setitem(sys.modules, "bokeh", None)  # what an environment without Bokeh looks like to import
    assert not html_available()
    with pytest.raises(ConfigError, match="pip install bokeh"):
        write_trades_html(tmp_path / "t.html", **real_run())
    assert HTML_UNAVAILABLE.count("\n") == 0
