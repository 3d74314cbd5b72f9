"""Trade charts drawn through Backtrader's own plotter, one figure per data: candles or a close line,
volume, buy/sell markers, the forecast price overlay, the pred_return panel with its thresholds and
the retrain (fold) marks. The Backtrader 1.9.78 plotting fixes they need live in ``adapters.compat``."""

from __future__ import annotations

import bisect
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..adapters.compat import prepare_matplotlib
from ..adapters.positions import data_names, open_positions, round_trips
from ..errors import ConfigError, PuffinError
from .common import check_fmt, check_positive, new_fignum, release, safe_name, save
from .html import HTML_UNAVAILABLE, html_available, write_trades_html
from .tables import html_inputs

__all__ = ["plot_trades"]

_FOLD_GID = "puffin_fold"
_CANDLE_MAX_BARS = 400
# Scaled to the data (a 46-year daily series has ~11,500 bars, ~540 monthly retrains, ~650 round trips):
_LOG_SPAN = 10.0  # a price range wider than this factor gets a log axis: early decades are not a flat line
_FOLD_LINES_MAX = 40  # more retrains than this: a strip of ticks instead of dashed lines across the panels
_MARKERS_MAX = 150  # more buy/sell fills than this: round trips drawn on the price line instead of triangles
_WIN, _LOSS, _OPEN = "#2e7d32", "#c62828", "#1e63d6"


def _in(obj, items) -> bool:
    """Identity membership: Backtrader lines overload ``==``, so ``obj in list`` is unreliable."""
    return any(obj is x for x in items)


# --------------------------------------------------------------------------- trade charts


def _resolve_strategy(cerebro, strategy):
    if getattr(cerebro, "_exactbars", 0) > 0 or getattr(getattr(cerebro, "p", None), "exactbars", 0) > 0:
        raise PuffinError("this Cerebro ran with exactbars >= 1, which keeps no history to plot; "
                          "run it with exactbars=0 (the default) to plot trades")
    if strategy is not None:
        if not hasattr(strategy, "datas") or not hasattr(strategy, "getindicators"):
            raise ConfigError(f"strategy={strategy!r} is not a Backtrader strategy instance from this cerebro")
        return strategy
    runstrats = getattr(cerebro, "runstrats", None)
    if not runstrats or not runstrats[0]:
        raise PuffinError("plot_trades() needs a Cerebro that has run: call cerebro.run() first")
    first = runstrats[0][0]
    if not hasattr(first, "getindicators"):
        raise PuffinError("this Cerebro returned optimisation results (optreturn), not strategies; "
                          "re-run the chosen parameters with cerebro.addstrategy() to plot them")
    return first


def _owner(obj, strat, datas, depth: int = 0):
    """The data a line object (data, indicator, observer) belongs to on a chart, or None (strategy-wide)."""
    if depth > 50:
        return None
    if _in(obj, datas):
        master = getattr(obj.plotinfo, "plotmaster", None)
        if master is not None and master is not obj and _in(master, datas):
            return master
        return obj
    plotinfo = getattr(obj, "plotinfo", None)
    master = getattr(plotinfo, "plotmaster", None) if plotinfo is not None else None
    if master is not None and master is not obj:
        return _owner(master, strat, datas, depth + 1)
    clock = getattr(obj, "_clock", None)
    clock = getattr(clock, "owner", clock)
    if clock is None or clock is obj:
        return None
    if clock is strat:
        # Backtrader charts an indicator clocked by the strategy (a LinesCoupler) on data0;
        # observers clocked by the strategy (Broker, Trades) are strategy-wide.
        return None if _in(obj, strat.getobservers()) else datas[0]
    return _owner(clock, strat, datas, depth + 1)


@contextmanager
def _only(strat, keep_datas, owners, show_global: bool):
    """Temporarily set ``plotinfo.plot=False`` on every data/indicator/observer not charted with ``keep_datas``."""
    saved = []
    try:
        for obj in list(strat.datas) + list(strat.getindicators()) + list(strat.getobservers()):
            plotinfo = getattr(obj, "plotinfo", None)
            if plotinfo is None:
                continue
            owner = owners.get(id(obj))
            visible = show_global if owner is None else _in(owner, keep_datas)
            saved.append((plotinfo, plotinfo.plot))
            if not visible:
                plotinfo.plot = False
        yield
    finally:
        for plotinfo, value in saved:
            plotinfo.plot = value


def _date_ticks(ax, xreal, lo: int, hi: int, max_ticks: int = 10) -> None:
    """Ticks on the first bar of a month (every 1, 2, 3, 6 or 12 months), labelled with the bar's date.

    Backtrader's x axis is the bar index; its floats use the pre-matplotlib-3.3 date epoch,
    so they are converted with ``bt.num2date`` (not matplotlib's) and never sent through
    matplotlib's date machinery.
    """
    import backtrader as bt
    import matplotlib.ticker as mticker

    lo, hi = max(lo, 0), min(hi, len(xreal) - 1)
    if hi < lo:
        return
    dates = [bt.num2date(xreal[i]) for i in range(lo, hi + 1)]
    starts = [(lo + i, d) for i, d in enumerate(dates)
              if i and (d.year, d.month) != (dates[i - 1].year, dates[i - 1].month)]
    ticks = []
    for step in (1, 2, 3, 6, 12, 24, 60, 120):
        ticks = [i for i, d in starts if (d.year * 12 + d.month - 1) % step == 0]
        if len(ticks) <= max_ticks:
            break
    yearly = step >= 12 and len(ticks) >= 3  # ticks on the first bar of a year: its year says it all
    if len(ticks) < 3:  # intraday or only a few months: evenly spaced bars
        count = min(max_ticks - 2, hi - lo + 1)
        ticks = sorted({lo + round(k * (hi - lo) / max(count - 1, 1)) for k in range(count)})
    intraday = len({d.date() for d in dates}) < len(dates)  # several bars on one day
    fmt = "%Y-%m-%d %H:%M" if intraday else "%Y-%m-%d"

    def label(x, pos=None):  # pos is None outside the tick labels (e.g. a value asked for directly): the full date
        i = round(x)
        return bt.num2date(xreal[i]).strftime("%Y" if yearly and pos is not None else fmt) if 0 <= i < len(xreal) else ""

    ax.xaxis.set_major_locator(mticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(mticker.FuncFormatter(label))
    ax.xaxis.set_minor_locator(mticker.NullLocator())


def _fold_bars(indicators, data):
    """``(indicator, its data, [retrain bar, ...])`` for every indicator exposing ``folds`` with ``.bar``."""
    out = []
    for ind in indicators:
        folds = getattr(ind, "folds", None)
        if not isinstance(folds, (list, tuple)) or not all(hasattr(f, "bar") for f in folds):
            continue
        src = getattr(ind, "data", None)
        out.append((ind, src if hasattr(src, "datetime") else data, [int(f.bar) for f in folds]))
    return out


def _count_marks(observers, data) -> tuple[int, int]:
    buys = sells = 0
    for obs in observers:
        if getattr(obs, "data", None) is data and hasattr(obs.lines, "buy") and hasattr(obs.lines, "sell"):
            buys += sum(1 for v in obs.lines.buy.array if not math.isnan(v))
            sells += sum(1 for v in obs.lines.sell.array if not math.isnan(v))
    return buys, sells


def _clean_label(label: str) -> str:
    label = re.sub(r" \((?:None(?:, )?)+\)", "", label)  # parameter reprs of None
    lines = label.split("\n")
    if len(lines) > 1 and lines[0].startswith("BuySell"):
        return lines[-1]
    return " ".join(lines)


def _empty_line(artist) -> bool:
    """A plotted line with no finite point (e.g. the buy markers of a data that never traded)."""
    import numpy as np
    from matplotlib.lines import Line2D

    if not isinstance(artist, Line2D):
        return False
    y = np.asarray(artist.get_ydata(), dtype=float)
    return y.size > 0 and not np.isfinite(y).any()


def _legend_above(ax, handles, labels) -> None:
    """Replace an axes' legend by one row just above it, outside the data."""
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    pairs = [(h, _clean_label(lab)) for h, lab in zip(handles, labels)
             if lab and not lab.startswith("_") and not _empty_line(h)]
    if not pairs:
        return
    ax.legend([h for h, _ in pairs], [lab for _, lab in pairs], loc="lower left", bbox_to_anchor=(0.0, 1.0),
              ncol=len(pairs), fontsize=8, frameon=False, borderaxespad=0.15, handlelength=1.8,
              columnspacing=1.4, numpoints=1)


def _realign_observers(ax, pinf, strat, data) -> None:
    """Re-place the lines of per-data observers (BuySell) of a data shorter than the strategy clock.

    Observers advance with the strategy, not with their data, but Backtrader slices them with
    the data's bar range: a data that starts late gets its buy/sell markers from the wrong bars.
    """
    import numpy as np

    if len(data) == len(strat):
        return
    taken = set()
    for obs in strat.getobservers():
        if getattr(obs, "data", None) is not data or not obs.plotinfo.plot or obs.plotinfo.subplot:
            continue
        if len(obs) == len(data):
            continue
        for idx in range(obs.size()):
            alias = obs.lines._getlinealias(idx)
            for line in ax.lines:
                if id(line) in taken or line.get_label().split("\n")[-1] != alias:
                    continue
                values = np.asarray(obs.lines[idx].plotrange(pinf.pstart, pinf.pend), dtype=float)
                line.set_data(np.arange(len(values)), values)
                taken.add(id(line))
                break


def _is_forecast(ind) -> bool:
    try:
        return "pred_return" in ind.lines.getlinealiases()
    except AttributeError:
        return False


def _percent_panel(ax, ind, xmin: float) -> None:
    """pred_return panel: percent ticks, the threshold lines labelled, value tag and legend in percent."""
    import matplotlib.ticker as mticker
    import numpy as np

    ax.margins(y=0.25)  # the threshold lines and their labels stay off the panel's edges
    ax.autoscale_view(scalex=False)
    ax.yaxis.set_major_locator(mticker.MaxNLocator(nbins=4, prune="both"))
    ax.yaxis.set_major_formatter(mticker.PercentFormatter(xmax=1.0, decimals=2))
    for level in ind.plotinfo._get("plothlines", []) or []:
        level = float(level)
        ax.text(xmin, level, f" {level:+.2%}", fontsize=7, color="0.25", ha="left", zorder=60, clip_on=True,
                va="bottom" if level >= 0 else "top")
    values = np.asarray(ind.pred_return.array, dtype=float)
    finite = values[np.isfinite(values)]
    if not finite.size:
        return
    last = float(finite[-1])
    for text in ax.texts:
        if text.get_bbox_patch() is not None:
            text.set_text(f"{last:+.2%}")
    for line in ax.lines:
        label = line.get_label()
        if label and not label.startswith("_"):
            line.set_label(re.sub(r" -?\d+\.\d+$", f" {last:+.2%}", label))


_FOLD_STYLE = {"color": "tab:purple", "lw": 0.8, "ls": (0, (5, 3)), "alpha": 0.55}


@dataclass
class _Panels:
    """The axes Backtrader drew for one data, and the bar range (x) of that data's own dates."""

    fig: object
    pinf: object
    axes: list
    bottom: object
    price: object
    volume: object
    xreal: list
    lo: int
    hi: int


def _plot_one(plt, strat, data, key, style, width, height, fignum):
    """One data's chart: Backtrader draws it, then each step makes one part of it readable, at any length of history."""
    panels = _draw(strat, data, key, style, fignum)
    _style_axes(panels)
    extra: list = []  # (handle, label) legend entries of the price panel that the steps add
    if panels.price is not None:
        _realign_observers(panels.price, panels.pinf, strat, data)
        if _log_prices(panels, data):
            extra.append((None, "log price scale"))
        buys, sells = _count_marks(strat.getobservers(), data)
        if buys + sells > _MARKERS_MAX:
            extra += _trips_on_price(panels, strat, data)
        else:
            _style_markers(panels.price)
    nfolds, fold_handle = _mark_folds(panels, strat, data)
    for ind, ax in panels.pinf.daxis.items():
        if ax is not panels.price and _is_forecast(ind):
            _percent_panel(ax, ind, panels.lo - 0.5)
    if nfolds:
        extra.append((fold_handle, f"retrain ({nfolds})"))
    _legends(panels, key, extra)
    _date_ticks(panels.bottom, panels.xreal, panels.lo, panels.hi)
    for ax in panels.axes:  # dates on the bottom axes only (Backtrader hides them all on matplotlib >= 3.x)
        ax.xaxis.set_tick_params(labelbottom=False)
    panels.bottom.xaxis.set_tick_params(labelbottom=True, labelrotation=0, labelsize=8)
    _titles(panels, strat, data, key, nfolds, width, height)
    return panels.fig


def _draw(strat, data, key, style, fignum) -> _Panels:
    from backtrader.plot import Plot, PlotScheme

    plotter = Plot(scheme=PlotScheme(), style=style, fmt_x_ticks="%Y-%m-%d", fmt_x_data="%Y-%m-%d",
                   barup="#26a69a", bardown="#ef5350", volup="#80cbc4", voldown="#ef9a9a", voltrans=0.4,
                   volscaling=0.25, rowsmajor=4, subtxtsize=8, tickrotation=0, hlinescolor="0.35", hlineswidth=0.9)
    figs = plotter.plot(strat, figid=fignum, numfigs=1, iplot=False)
    if not figs:
        raise PuffinError(f"Backtrader drew nothing for '{key}' (the strategy has no bars)")
    pinf = plotter.pinf
    xreal = list(pinf.xreal)
    axes = list(pinf.daxis.values())
    main = [ax for ax in axes if ax not in pinf.vaxis]
    # x is the bar index of the strategy clock: show only this data's own dates
    darr = data.datetime.plot()
    lo = bisect.bisect_left(xreal, darr[0]) if len(darr) else 0
    hi = min(bisect.bisect_right(xreal, darr[-1]) - 1, len(xreal) - 1) if len(darr) else len(xreal) - 1
    main[-1].set_xlim(lo - 1, hi + 2)
    return _Panels(figs[0], pinf, axes, main[-1], pinf.daxis.get(data),
                   pinf.daxis.get(data.volume) if hasattr(data, "volume") else None, xreal, lo, hi)


def _style_axes(panels: _Panels) -> None:
    import matplotlib.ticker as mticker

    for ax in panels.axes:
        ax.grid(True, which="major", color="0.88", lw=0.6)
        ax.yaxis.set_tick_params(labelsize=8)
    volume_ax, price_ax = panels.volume, panels.price
    if volume_ax is not None and volume_ax is not price_ax:
        volume_ax.grid(False)
        volume_ax.yaxis.set_tick_params(labelsize=7, labelcolor="0.5", color="0.7")
        if price_ax in panels.pinf.vaxis:  # overlaid volume: ticks only up to the highest bar, not the empty top
            top = volume_ax.get_ylim()[1] * panels.pinf.sch.volscaling
            ticks = [t for t in mticker.MaxNLocator(nbins=3).tick_values(0, top) if 0 <= t <= top]
            volume_ax.yaxis.set_major_locator(mticker.FixedLocator(ticks))


def _log_prices(panels: _Panels, data) -> bool:
    """A log price axis when the data's prices span more than ``_LOG_SPAN`` times (plain-number ticks)."""
    import matplotlib.ticker as mticker
    import numpy as np

    ax, n = panels.price, len(data)
    lows = np.asarray(data.low.array[:n] if hasattr(data, "low") else data.close.array[:n], dtype=float)
    highs = np.asarray(data.high.array[:n] if hasattr(data, "high") else data.close.array[:n], dtype=float)
    lo, hi = np.nanmin(lows, initial=np.inf), np.nanmax(highs, initial=-np.inf)
    if not (0 < lo < hi < np.inf) or hi / lo <= _LOG_SPAN:
        return False
    ax.set_yscale("log")
    bottom = lo / 1.15
    if panels.volume is not None and ax in panels.pinf.vaxis:  # the prices overlay the volume panel
        # The volume bars fill the lowest volscaling of the panel: lift the prices above them (on a log axis the
        # early, low prices would otherwise run through the bars).
        share = min(panels.pinf.sch.volscaling, 0.5)
        bottom /= (hi * 1.15 / bottom) ** (share / (1 - share))
    ax.set_ylim(bottom, hi * 1.15)
    # 1-2-5 ticks over the prices only (none in the room left for the volume bars below them)
    ticks = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1) for m in (1, 2, 5)]
    ax.yaxis.set_major_locator(mticker.FixedLocator([t for t in ticks if lo / 1.15 <= t <= hi * 1.15]))
    ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 10 else f"{v:,.2g}"))
    ax.yaxis.set_minor_locator(mticker.NullLocator())
    return True


def _bar_x(panels: _Panels, data):
    """Each of the data's bars: its x (bar index of the strategy clock), date number and close."""
    import numpy as np

    n = len(data)
    dates = np.asarray(data.datetime.array[:n], dtype=float)
    return np.searchsorted(np.asarray(panels.xreal), dates), dates, np.asarray(data.close.array[:n], dtype=float)


def _trips_on_price(panels: _Panels, strat, data) -> list:
    """Hundreds of fills would be a smear of triangles: hide them and draw each round trip on the price line
    instead, from its entry bar to its exit bar, green when it won and red when it lost (the open position in blue)."""
    import backtrader as bt
    import numpy as np
    import pandas as pd
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    for line in panels.price.lines:  # Backtrader's BuySell markers
        if line.get_label().split("\n")[-1] in ("buy", "sell") and line.get_marker() in ("^", "v"):
            line.set_visible(False)
            line.set_label("_hidden")
    x, dates, close = _bar_x(panels, data)
    trips = round_trips(strat, [data])
    still = open_positions(strat, [data])
    spans = [(bt.date2num(row.entry_date), bt.date2num(row.exit_date), _WIN if row.pnl_net > 0 else _LOSS)
             for row in trips.itertuples()]
    spans += [(bt.date2num(row.entry_date), dates[-1], _OPEN) for row in still.itertuples() if pd.notna(row.entry_date)]
    segments, colours = [], []
    for start, end, colour in spans:
        i, j = np.searchsorted(dates, start - 1e-9), np.searchsorted(dates, end + 1e-9)
        if j - i >= 2:
            segments.append(np.column_stack([x[i:j], close[i:j]]))
        else:  # entered and left on neighbouring bars: a short tick at the fill
            k = min(i, len(x) - 1)
            segments.append(np.array([[x[k] - 0.5, close[k]], [x[k] + 0.5, close[k]]]))
        colours.append(colour)
    panels.price.add_collection(LineCollection(segments, colors=colours, linewidths=1.4, zorder=45,
                                               capstyle="butt", joinstyle="round"))
    wins = int((trips["pnl_net"] > 0).sum())
    out = [(Line2D([], [], color=_WIN, lw=2), f"round trip won ({wins})"),
           (Line2D([], [], color=_LOSS, lw=2), f"lost ({len(trips) - wins})")]
    if len(still):
        out.append((Line2D([], [], color=_OPEN, lw=2), "open"))
    return out


def _style_markers(price_ax) -> None:
    """BuySell markers readable on both candle colours; overlays (forecast price, SMAs) above the candles."""
    for line in price_ax.lines:
        tail = line.get_label().split("\n")[-1]
        if not (tail in ("buy", "sell") and line.get_marker() in ("^", "v")):
            line.set_zorder(max(line.get_zorder(), 30))
            continue
        line.set_color("#1e63d6" if tail == "buy" else "#c2185b")
        line.set_markeredgecolor("black")
        line.set_markeredgewidth(0.8)
        line.set_markersize(9)
        line.set_zorder(50)


def _mark_folds(panels: _Panels, strat, data):
    """Fold boundaries (retrain bars): dashed lines across the price panel and the forecast's own panel, or, beyond
    ``_FOLD_LINES_MAX`` of them, a strip of ticks at the foot of the forecast panel (else at the top of the price
    panel), which stays readable with hundreds. Returns how many and their legend handle."""
    from matplotlib.lines import Line2D

    indicators = [ind for ind in strat.getindicators() if ind.plotinfo.plot]
    found = []
    for ind, src, bars in _fold_bars(indicators, data):
        src_dt = src.datetime.array
        found.append((ind, [bisect.bisect_left(panels.xreal, src_dt[b]) for b in bars if 0 <= b < len(src_dt)]))
    nfolds = sum(len(xs) for _, xs in found)
    if nfolds > _FOLD_LINES_MAX:
        for ind, xs in found:
            sub_ax = panels.pinf.daxis.get(ind)
            ax, (y0, y1) = (sub_ax, (0.0, 0.09)) if sub_ax is not None else (panels.price, (0.93, 1.0))
            if ax is not None:
                ax.vlines(xs, y0, y1, transform=ax.get_xaxis_transform(), colors=_FOLD_STYLE["color"], lw=0.6,
                          alpha=0.7, zorder=0.6, gid=_FOLD_GID + "_ticks")
        return nfolds, Line2D([], [], color=_FOLD_STYLE["color"], marker="|", markersize=9, linestyle="none")
    for ind, xs in found:
        sub_ax = panels.pinf.daxis.get(ind)
        for x in xs:
            if panels.price is not None:
                panels.price.axvline(x, zorder=0.6, gid=_FOLD_GID, **_FOLD_STYLE)
            if sub_ax is not None and sub_ax is not panels.price:
                sub_ax.axvline(x, zorder=0.6, gid=_FOLD_GID + "_panel", **_FOLD_STYLE)
    return nfolds, Line2D([], [], **_FOLD_STYLE)


def _legends(panels: _Panels, key: str, extra: list) -> None:
    """One legend row above each panel, never over the bars. Backtrader keeps the original artists of a
    data panel's legend in pinf.handles (volume and price live on twin axes). ``extra``: (handle or None for
    text alone, label) entries the steps added to the price panel."""
    from matplotlib.lines import Line2D

    pinf = panels.pinf
    for ax in panels.axes:
        if ax in pinf.handles:
            handles, labels = list(pinf.handles[ax]), list(pinf.labels[ax])
        elif ax.get_legend() is not None:
            handles, labels = ax.get_legend_handles_labels()
        else:
            continue
        if ax is panels.price:
            # an unnamed data's label starts with its timeframe: name it like the figure
            labels = [f"{key} {lab}" if lab.startswith("(") else lab for lab in labels]
            pairs = [(h, lab) for h, lab in zip(handles, labels) if not lab.startswith("_") and h.get_visible()]
            pairs += [(h if h is not None else Line2D([], [], linestyle="none"), lab) for h, lab in extra]
            handles, labels = [h for h, _ in pairs], [lab for _, lab in pairs]
        _legend_above(ax, handles, labels)


def _titles(panels: _Panels, strat, data, key: str, nfolds: int, width, height) -> None:
    import backtrader as bt

    buys, sells = _count_marks(strat.getobservers(), data)
    xreal, fig = panels.xreal, panels.fig
    period = f"{bt.num2date(xreal[panels.lo]):%Y-%m-%d} to {bt.num2date(xreal[panels.hi]):%Y-%m-%d}, {len(data)} bars"
    fills = f"{buys} buys, {sells} sells" + (" (too many to mark: round trips coloured on the price line)"
                                               if buys + sells > _MARKERS_MAX and panels.price is not None else "")
    detail = f"{period}   |   {fills}" + (f"   |   {nfolds} retrains" if nfolds else "")
    fig.suptitle(f"{key} \u2014 {type(strat).__name__}", fontsize=13, fontweight="bold", x=0.04, ha="left", y=0.99)
    fig.text(0.04, 0.962, detail, fontsize=9, color="0.3", ha="left", va="top")
    fig.set_size_inches(width, height)
    fig.subplots_adjust(top=0.91, bottom=0.05, left=0.04, right=0.94, hspace=0.35)


def plot_trades(cerebro, out_dir=None, strategy=None, dpi=110, width=14, height=9, fmt="png", style="auto"):
    """One trade chart per data of a Cerebro that has run, drawn by Backtrader's own plotter, or (``fmt="html"``)
    one interactive page of them all.

    Works for any strategy. Each figure shows one data (candles or a close line,
    volume, the BuySell markers) with only its own indicators and observers; a forecast
    indicator's subplot shows ``pred_return`` with the +-threshold lines, its forecast
    price overlays the price panel, and retrain bars (``indicator.folds``) are dashed
    vertical lines there. Strategy-wide observers (cash/value, trades) are shown only
    when there is a single data. Long histories stay readable: a log price axis when the
    prices span more than 10x, retrains as a strip of ticks beyond 40 of them, and beyond
    150 buy/sell markers the round trips coloured on the price line (won, lost, open).

    Args:
        cerebro: a ``bt.Cerebro`` after ``run()`` (exactbars=0).
        out_dir: if given, writes ``<out_dir>/trades_<name>.<fmt>`` per data.
        strategy: the strategy instance to chart (default: the first one that ran).
        dpi, width, height: resolution and size (inches) of the figures/files.
        fmt: file format of the written files (``"png"``, ``"svg"``, ``"pdf"``...), or ``"html"``: one
            self-contained interactive page, ``<out_dir>/trades.html`` (Bokeh, opens offline), with a tab per data
            (candles, volume, buys/sells and round trips with their P&L, and from a forecast indicator the forecast
            price, ``pred_return`` with the threshold lines and the retrain dates) and a Portfolio tab (the Broker
            observer's value against an equal-weight buy-and-hold without costs, and drawdowns). A strategy without
            a forecast indicator gets prices, volume, trades and equity, and the page says so. Trades come from the
            strategy's ``trade_log`` when it keeps one (ForecastThresholdStrategy), else from Backtrader's trades.
        style: ``"candle"``, ``"bar"``, ``"line"`` or ``"auto"`` (candles up to 400 bars, else line).

    Returns:
        ``{name: Figure}`` keyed by the data's name (``"data0"``... when unnamed); for ``fmt="html"`` the page's path.

    >>> figs = plot_trades(cerebro, out_dir="plots")  # doctest: +SKIP
    >>> page = plot_trades(cerebro, out_dir="plots", fmt="html")  # doctest: +SKIP
    """
    fmt = check_fmt(fmt)
    if fmt == "html":
        if not html_available():
            raise ConfigError(HTML_UNAVAILABLE)
        if out_dir is None:
            raise ConfigError("plot_trades(fmt='html') writes a page: pass out_dir, e.g. out_dir='charts'")
    dpi = check_positive("dpi", dpi)
    width = check_positive("width", width)
    height = check_positive("height", height)
    if style not in ("auto", "candle", "candlestick", "bar", "ohlc", "line"):
        raise ConfigError(f"style={style!r} is not one of 'auto', 'candle', 'bar', 'line'")
    strat = _resolve_strategy(cerebro, strategy)
    datas = list(strat.datas)
    if not datas:
        raise PuffinError("the strategy has no datas to plot")
    if not len(strat):
        raise PuffinError("the strategy ran no bars: nothing to plot (is the data empty or too short?)")

    owners = {}
    for obj in datas + list(strat.getindicators()) + list(strat.getobservers()):
        owners[id(obj)] = _owner(obj, strat, datas)
    masters = [d for d in datas if owners[id(d)] is d and d.plotinfo.plot]
    show_global = len(masters) == 1

    out = Path(out_dir) if out_dir is not None else None
    if fmt == "html":
        return write_trades_html(out / "trades.html", **html_inputs(strat, masters))
    plt = prepare_matplotlib()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    figures: dict = {}
    used_files: set = set()
    keys = data_names(strat, masters)
    for data in masters:
        key = keys[id(data)]
        members = [d for d in datas if owners[id(d)] is data]
        nbars = len(data)
        chosen = style
        if style == "auto":
            chosen = "candle" if nbars <= _CANDLE_MAX_BARS else "line"
        chosen = {"candlestick": "candle", "ohlc": "bar"}.get(chosen, chosen)
        fignum = new_fignum(plt)
        try:
            with _only(strat, members, owners, show_global):
                fig = _plot_one(plt, strat, data, key, chosen, width, height, fignum)
        except BaseException:
            plt.close(fignum)  # no half-drawn figure left behind for the next plot
            raise
        figures[key] = fig
        if out is not None:
            stem = f"trades_{safe_name(key)}"
            fname, n = stem, 2
            while fname in used_files:
                fname, n = f"{stem}_{n}", n + 1
            used_files.add(fname)
            save(fig, out / f"{fname}.{fmt}", dpi, tight=False, fmt=fmt)
        release(plt, fig)
    return figures


