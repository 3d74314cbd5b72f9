"""A hyperparameter search as ONE self-contained interactive HTML page (Bokeh, scripts inlined like trades.html):
the objective of every trial in order and against each parameter, the chosen trial's PSR and DSR, the PBO with its
CSCV logits, and the test period's result next to buy-and-hold.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from ..files import atomic_write_bytes
from .html import _TEMPLATE, HTML_UNAVAILABLE, _check_links, _hover, _legend, _out_path, html_available

__all__ = ["write_tune_html"]

_TRIAL = "#1565c0"
_CHOSEN = "#d84315"
_BEST_SO_FAR = "#90a4ae"
_BENCHMARK = "#78909c"
_OVERFIT = "#c62828"
_HOLDS = "#2e7d32"
_HINT = ("Hover a point for its trial; scroll to zoom, drag to pan; click a legend entry to hide it. "
         "Trials without a score (no trade, a failed fit) are left out of the charts.")


def _figure(title: str, height: int = 260, **kwargs):
    from bokeh.plotting import figure

    p = figure(title=title, height=height, sizing_mode="stretch_width", tools="pan,wheel_zoom,box_zoom,reset,save",
               min_border_left=60, **kwargs)
    p.toolbar.logo = None
    p.grid.grid_line_alpha = 0.35
    p.title.text_font_size = "13px"
    return p


def _label(value) -> str:
    """A parameter value as the category it is shown under (a feature list as its comma-separated names)."""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _objective_panel(trials: pd.DataFrame, objective: str, maximize: bool, chosen: int):
    """Every trial's score in trial order, the best so far as a step line, the chosen trial ringed."""
    from bokeh.models import ColumnDataSource

    scored = trials.sort_values("trial")
    scored = scored[np.isfinite(scored[objective].to_numpy(float))]
    p = _figure(f"{objective} of every trial, in the order they ran ({'higher' if maximize else 'lower'} is better)")
    p.xaxis.axis_label, p.yaxis.axis_label = "trial", objective
    src = ColumnDataSource({"trial": scored["trial"].to_numpy(int), "score": scored[objective].to_numpy(float),
                            "params": scored["params"].to_list()})
    best = np.maximum.accumulate(src.data["score"]) if maximize else np.minimum.accumulate(src.data["score"])
    step = p.step(src.data["trial"], best, mode="after", line_color=_BEST_SO_FAR, line_width=1.5)
    dots = p.scatter("trial", "score", source=src, size=7, color=_TRIAL, alpha=0.8)
    mine = scored[scored["trial"] == chosen]
    ring = p.scatter(mine["trial"].to_numpy(int), mine[objective].to_numpy(float), size=15, marker="circle",
                     fill_alpha=0, line_color=_CHOSEN, line_width=2.5)
    _hover(p, [dots], [("trial", "@trial"), (objective, "@score{0.0000}"), ("parameters", "@params")])
    _legend(p, [("trial", [dots]), ("best so far", [step]), (f"chosen: trial {chosen}", [ring])])
    return p


def _parameter_panels(trials: pd.DataFrame, objective: str, params: list[str], chosen: int) -> list:
    """One panel per searched parameter: every trial's score at its value (jittered), the chosen one a diamond."""
    from bokeh.models import ColumnDataSource
    from bokeh.transform import jitter

    scored = trials[np.isfinite(trials[objective].to_numpy(float))]
    panels = []
    for k in params:
        order = list(dict.fromkeys(_label(v) for v in sorted(trials[k], key=_sort_key)))
        p = _figure(f"{objective} against {k}", height=230, x_range=order)
        p.xaxis.axis_label, p.yaxis.axis_label = k, objective
        src = ColumnDataSource({"x": [_label(v) for v in scored[k]], "score": scored[objective].to_numpy(float),
                                "trial": scored["trial"].to_numpy(int), "params": scored["params"].to_list()})
        dots = p.scatter(jitter("x", width=0.35, range=p.x_range), "score", source=src, size=6, color=_TRIAL,
                         alpha=0.7)
        mine = scored[scored["trial"] == chosen]  # drawn unjittered, filled, over the jittered dots
        p.scatter([_label(v) for v in mine[k]], mine[objective].to_numpy(float), size=13, marker="diamond",
                  color=_CHOSEN)
        _hover(p, [dots], [("trial", "@trial"), (objective, "@score{0.0000}"), ("parameters", "@params")])
        panels.append(p)
    return panels


def _sort_key(value):
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, _label(value))


def _pbo_panel(pbo: dict):
    """The CSCV logits: λ <= 0 (left, red) is a split where the in-sample best was out-of-sample mediocre."""
    logits = np.asarray(pbo.get("logits") or [], dtype=float)
    logits = logits[np.isfinite(logits)]
    p = _figure("PBO: logit of the in-sample best's out-of-sample rank, one per CSCV split", height=260)
    p.xaxis.axis_label, p.yaxis.axis_label = "logit λ (<= 0: at or below the out-of-sample median)", "splits"
    if pbo.get("value") is None or not logits.size:
        p.title.text = f"PBO: not computed ({pbo.get('note') or 'no splits'})"
        return p
    edges = np.histogram_bin_edges(logits, bins=min(30, max(5, int(math.sqrt(logits.size)))))
    counts, edges = np.histogram(logits, bins=edges)
    colours = [_OVERFIT if hi <= 0 else _HOLDS for hi in edges[1:]]
    bars = p.quad(top=counts, bottom=0, left=edges[:-1], right=edges[1:], fill_color=colours, line_color="white",
                  fill_alpha=0.8)
    p.vspan(x=[0.0], line_color="#37474f", line_dash="dashed")
    _hover(p, [bars], [("logits", "@left{0.00} to @right{0.00}"), ("splits", "@top")])
    p.title.text = (f"PBO {pbo['value']:.2f}: share of {pbo['n_combinations']} CSCV splits ({pbo['n_splits']} blocks of "
                    f"{pbo['block_bars']} days, {pbo['n_trials']} trials) with logit <= 0")
    return p


def _dsr_panel(trials: pd.DataFrame, dsr: dict):
    """The Sharpe ratios of all trials, the chosen one and the best expected from as many unskilled trials."""
    sharpes = trials["sharpe"].to_numpy(float) if "sharpe" in trials else np.array([])
    sharpes = sharpes[np.isfinite(sharpes)]
    p = _figure("Sharpe ratio (annualised, tuning period) of every trial that traded", height=260)
    p.xaxis.axis_label, p.yaxis.axis_label = "Sharpe ratio", "trials"
    if sharpes.size:
        counts, edges = np.histogram(sharpes, bins=min(20, max(4, sharpes.size // 2)))
        bars = p.quad(top=counts, bottom=0, left=edges[:-1], right=edges[1:], fill_color=_TRIAL, line_color="white",
                      fill_alpha=0.6)
        _hover(p, [bars], [("Sharpe", "@left{0.00} to @right{0.00}"), ("trials", "@top")])
    if dsr.get("value") is None:
        p.title.text = f"DSR: not computed ({dsr.get('note') or 'no chosen trial'})"
        return p
    lines = [(f"chosen trial {dsr['trial']}: Sharpe {dsr['sharpe']:.2f}", dsr["sharpe"], _CHOSEN, "solid"),
             (f"best of {dsr['n_trials']} unskilled trials expected: {dsr['expected_max_sharpe']:.2f}",
              dsr["expected_max_sharpe"], "#37474f", "dashed")]
    _legend(p, [(label, [p.vspan(x=[x], line_color=c, line_width=2.5, line_dash=dash)]) for label, x, c, dash in lines])
    p.title.text = (f"PSR {dsr['psr']:.2f} (P[true Sharpe > 0]) deflates to DSR {dsr['value']:.2f} "
                    f"(P[true Sharpe > the best of {dsr['n_trials']} unskilled trials])")
    return p


def _test_panel(equity: pd.DataFrame, benchmark: str):
    """The test period's portfolio value next to buy-and-hold, both from 1."""
    from bokeh.models import ColumnDataSource, NumeralTickFormatter

    p = _figure("test period (never seen by the search): growth of 1", height=300, x_axis_type="datetime")
    p.yaxis.formatter = NumeralTickFormatter(format="0.00")
    cols = [c for c in ("buy_hold", "strategy") if c in equity.columns]  # the strategy drawn on top
    data = {"t": equity.index.to_numpy(dtype="datetime64[ns]")}
    for c in cols:
        first = equity[c].dropna()
        data[c] = (equity[c] / first.iloc[0]).to_numpy(float) if len(first) else np.full(len(equity), np.nan)
    src = ColumnDataSource(data)
    names = {"strategy": "chosen configuration", "buy_hold": benchmark}
    items = [(names[c], [p.line("t", c, source=src, line_width=2 if c == "strategy" else 1.4,
                                line_color=_CHOSEN if c == "strategy" else _BENCHMARK)]) for c in cols]
    _hover(p, [items[-1][1][0]], [("date", "@t{%F}"), *[(names[c], f"@{c}{{0.000}}") for c in cols]], mode="vline")
    _legend(p, items[::-1])
    return p


def _percent(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:+.1%}"


def _number(value, fmt: str = ".2f") -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, fmt)


def _header(title: str, objective: str, n_trials: int, chosen: int, best: dict, selection: dict, periods: dict,
            test: dict, study: dict | None, links: dict | None) -> str:
    e = html.escape
    dsr, pbo = selection.get("dsr", {}), selection.get("pbo", {})
    params = ", ".join(f"{e(str(k))}={e(_label(v))}" for k, v in best.items())
    parts = [f"<h1>{e(title)}</h1>",
             f"<p><b>{n_trials} trials</b> scored by {e(objective)} on the tuning period {e(periods['tune'][0])} to "
             f"{e(periods['tune'][1])} &middot; chosen: <b>trial {chosen}</b> ({params})</p>"]
    if dsr.get("value") is not None:
        parts.append(f"<p>Chosen trial: Sharpe {dsr['sharpe']:.2f}, PSR {dsr['psr']:.2f}, <b>DSR {dsr['value']:.2f}</b> "
                     f"after deflating for {dsr['n_trials']} trials &middot; ")
    else:
        parts.append(f"<p>DSR n/a ({e(str(dsr.get('note')))}) &middot; ")
    parts[-1] += (f"<b>PBO {pbo['value']:.2f}</b> over {pbo['n_combinations']} CSCV splits</p>" if pbo.get("value")
                  is not None else f"PBO n/a ({e(str(pbo.get('note')))})</p>")
    cls = "pb-good" if (test.get("total_return") or 0) >= (test.get("bh_total_return") or 0) else "pb-bad"
    parts.append(f"<p>Test period {e(periods['test'][0])} to {e(periods['test'][1])} (never seen by the search): "
                 f"<span class='{cls}'>{_percent(test.get('total_return'))}</span>, Sharpe "
                 f"{_number(test.get('sharpe'))} &middot; {e(test.get('benchmark', 'buy and hold'))} "
                 f"{_percent(test.get('bh_total_return'))}, Sharpe {_number(test.get('bh_sharpe'))}</p>")
    if study:
        parts.append(f"<p class='pb-hint'>study {e(str(study.get('name')))} in {e(str(study.get('storage')))}</p>")
    if links:
        parts.append("<p>" + "".join(f"<a href=\"{e(href)}\">{e(label)}</a>" for label, href in links.items()) + "</p>")
    parts.append(f"<p class='pb-hint'>{_HINT}</p>")
    return "<header class='pb-head'>" + "".join(parts) + "</header>"


def write_tune_html(out_path: str | os.PathLike, trials: pd.DataFrame, objective: str, params: list[str],
                    selection: dict, *, maximize: bool = True, tune_period: tuple[str, str] = ("", ""),
                    test_period: tuple[str, str] = ("", ""), test_equity: pd.DataFrame | None = None,
                    test_metrics: dict | None = None, benchmark: str = "buy and hold", study: dict | None = None,
                    title: str | None = None, links: dict[str, str] | None = None) -> Path:
    """Write an interactive, self-contained HTML page of a hyperparameter search to ``out_path``; returns the path.

    ``trials``: one row per trial (``trial``, the ``params`` columns, ``objective``, ``sharpe``: trials.csv);
    the chosen trial is ``selection["dsr"]["trial"]``. ``selection``: tune_stats' ``dsr`` and ``pbo`` (with the
    CSCV ``logits``). ``test_equity``: the test run's ``strategy`` and ``buy_hold`` values over the test period;
    ``test_metrics``: its total_return and sharpe with ``bh_total_return`` and ``bh_sharpe``. ``study``: where the
    trials are kept ({storage, name}); ``links``: {label: href} shown in the header.

    Raises:
        ConfigError: Bokeh missing, a bad parameter, or ``out_path`` a directory.
        DataError: ``trials`` without the columns named.
    """
    if not html_available():
        raise ConfigError(HTML_UNAVAILABLE)
    from bokeh.embed import file_html
    from bokeh.layouts import column, gridplot, row
    from bokeh.resources import INLINE

    out = _out_path(out_path)
    links = _check_links(links)
    if title is not None and not isinstance(title, str):
        raise ConfigError(f"title must be a string or None, got {type(title).__name__}")
    missing = [c for c in ("trial", objective, *params) if c not in getattr(trials, "columns", ())]
    if missing or not len(trials):
        raise DataError(f"trials needs one row per trial with the columns trial, {objective} and {', '.join(params)}; "
                        f"{'missing: ' + ', '.join(map(str, missing)) if missing else 'it is empty'}")
    chosen = int(selection.get("dsr", {}).get("trial") or trials["trial"].iloc[0])
    trials = trials.assign(params=[", ".join(f"{k}={_label(r[k])}" for k in params) for _, r in trials.iterrows()])
    best = {k: trials.loc[trials["trial"] == chosen, k].iloc[0] for k in params} if (trials["trial"] == chosen).any() else {}
    layout = [_objective_panel(trials, objective, maximize, chosen)]
    panels = _parameter_panels(trials, objective, params, chosen)
    if panels:
        grid = gridplot(panels, ncols=min(3, len(panels)), sizing_mode="stretch_width", merge_tools=False)
        grid.toolbar.logo = None
        layout.append(grid)
    layout.append(row(_dsr_panel(trials, selection.get("dsr", {})), _pbo_panel(selection.get("pbo", {})),
                      sizing_mode="stretch_width"))
    if test_equity is not None and len(test_equity):
        layout.append(_test_panel(test_equity, benchmark))
    title = title or f"Hyperparameter search: {objective}"
    header = _header(title, objective, len(trials), chosen, best, selection,
                     {"tune": tuple(map(str, tune_period)), "test": tuple(map(str, test_period))},
                     {**(test_metrics or {}), "benchmark": benchmark}, study, links)
    page = file_html(column(*layout, sizing_mode="stretch_width"), resources=INLINE, title=title, template=_TEMPLATE,
                     template_variables={"header": header})
    atomic_write_bytes(out, page.encode("utf-8"))
    return out
