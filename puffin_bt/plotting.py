"""Trade charts drawn through Backtrader's own plotter (one figure per data), equity and forecast plots.

Also home of the Backtrader 1.9.78 plotting fixes for current matplotlib: backend choice,
date tick labels, stale figures (see the shared notes on backtrader-compat).
"""

from __future__ import annotations

import bisect
import math
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path

from ._compat import apply_backtrader_fixes
from .errors import ConfigError, PuffinError

__all__ = ["plot_comparison", "plot_equity", "plot_forecasts", "plot_trades"]

_NON_INTERACTIVE = {"agg", "pdf", "ps", "svg", "pgf", "cairo", "template"}
_FOLD_GID = "puffin_fold"
_CANDLE_MAX_BARS = 400


# --------------------------------------------------------------------------- matplotlib backend


def _has_display() -> bool:
    """Whether a GUI session is reachable (on Linux/BSD: $DISPLAY or $WAYLAND_DISPLAY)."""
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd", "sunos", "aix")):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def _backend_chosen(matplotlib) -> bool:
    """Whether the user (MPLBACKEND, matplotlibrc, ``matplotlib.use``) or pyplot already fixed a backend."""
    if os.environ.get("MPLBACKEND"):
        return True
    getter = getattr(matplotlib.rcParams, "_get_backend_or_none", None)
    if getter is not None:
        return getter() is not None
    from matplotlib import rcsetup

    return dict.__getitem__(matplotlib.rcParams, "backend") is not rcsetup._auto_backend_sentinel


def _prepare_matplotlib():
    """Make ``backtrader.plot`` importable without it forcing TkAgg; returns ``matplotlib.pyplot``.

    Headless with no backend chosen -> Agg. A display, MPLBACKEND, a matplotlibrc
    backend, ``matplotlib.use()`` or ``%matplotlib inline`` are left alone.
    """
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not _backend_chosen(matplotlib) and not _has_display():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "backtrader.plot" not in sys.modules:
        # backtrader/plot/__init__.py calls matplotlib.use('TKAgg') (MacOSX on macOS) at import,
        # which would switch (and close the figures of) a running interactive backend.
        real_use = matplotlib.use
        matplotlib.use = lambda *args, **kwargs: None
        try:
            import backtrader.plot  # noqa: F401
        finally:
            matplotlib.use = real_use
    apply_backtrader_fixes()
    return plt


def _interactive(plt) -> bool:
    return plt.get_backend().lower() not in _NON_INTERACTIVE


def _release(plt, fig) -> None:
    """On a non-interactive backend, drop pyplot's reference so repeated calls don't pile up figures.

    The returned Figure stays fully usable (``savefig``); interactive sessions keep it for ``plt.show()``.
    """
    if not _interactive(plt):
        plt.close(fig)


def _new_fignum(plt) -> int:
    return max(plt.get_fignums(), default=0) + 1


# --------------------------------------------------------------------------- small helpers


def safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")
    return cleaned or "data"


def _check_fmt(fmt) -> str:
    if not isinstance(fmt, str) or not re.fullmatch(r"[A-Za-z0-9]+", fmt):
        raise ConfigError(f"fmt={fmt!r} is not a file format; use e.g. 'png', 'svg' or 'pdf'")
    return fmt.lower()


def _check_positive(name: str, value) -> float:
    try:
        ok = float(value) > 0 and math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"{name}={value!r} must be a positive number")
    return float(value)


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
    if len(ticks) < 3:  # intraday or only a few months: evenly spaced bars
        count = min(max_ticks - 2, hi - lo + 1)
        ticks = sorted({lo + round(k * (hi - lo) / max(count - 1, 1)) for k in range(count)})
    intraday = len({d.date() for d in dates}) < len(dates)  # several bars on one day
    fmt = "%Y-%m-%d %H:%M" if intraday else "%Y-%m-%d"

    def label(x, pos=None):
        i = round(x)
        return bt.num2date(xreal[i]).strftime(fmt) if 0 <= i < len(xreal) else ""

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


def _plot_one(plt, strat, data, key, style, width, height, fignum):
    import backtrader as bt
    import matplotlib.ticker as mticker
    from backtrader.plot import Plot, PlotScheme
    from matplotlib.lines import Line2D

    plotter = Plot(scheme=PlotScheme(), style=style, fmt_x_ticks="%Y-%m-%d", fmt_x_data="%Y-%m-%d",
                   barup="#26a69a", bardown="#ef5350", volup="#80cbc4", voldown="#ef9a9a", voltrans=0.4,
                   volscaling=0.25, rowsmajor=4, subtxtsize=8, tickrotation=0, hlinescolor="0.35", hlineswidth=0.9)
    figs = plotter.plot(strat, figid=fignum, numfigs=1, iplot=False)
    if not figs:
        raise PuffinError(f"Backtrader drew nothing for '{key}' (the strategy has no bars)")
    fig = figs[0]
    pinf = plotter.pinf
    xreal = list(pinf.xreal)
    axes = list(pinf.daxis.values())
    main = [ax for ax in axes if ax not in pinf.vaxis]
    bottom = main[-1]
    price_ax = pinf.daxis.get(data)
    volume_ax = pinf.daxis.get(data.volume) if hasattr(data, "volume") else None

    # x is the bar index of the strategy clock: show only this data's own dates
    darr = data.datetime.plot()
    lo = bisect.bisect_left(xreal, darr[0]) if len(darr) else 0
    hi = min(bisect.bisect_right(xreal, darr[-1]) - 1, len(xreal) - 1) if len(darr) else len(xreal) - 1
    bottom.set_xlim(lo - 1, hi + 2)

    for ax in axes:
        ax.grid(True, which="major", color="0.88", lw=0.6)
        ax.yaxis.set_tick_params(labelsize=8)
    if volume_ax is not None and volume_ax is not price_ax:
        volume_ax.grid(False)
        volume_ax.yaxis.set_tick_params(labelsize=7, labelcolor="0.5", color="0.7")
        if price_ax in pinf.vaxis:  # overlaid volume: ticks only up to the highest bar, not the empty top
            top = volume_ax.get_ylim()[1] * pinf.sch.volscaling
            ticks = [t for t in mticker.MaxNLocator(nbins=3).tick_values(0, top) if 0 <= t <= top]
            volume_ax.yaxis.set_major_locator(mticker.FixedLocator(ticks))
    if price_ax is not None:
        _realign_observers(price_ax, pinf, strat, data)
        for line in price_ax.lines:  # BuySell markers: readable on both candle colours
            tail = line.get_label().split("\n")[-1]
            if not (tail in ("buy", "sell") and line.get_marker() in ("^", "v")):
                line.set_zorder(max(line.get_zorder(), 30))  # overlays (forecast price, SMAs) above the candles
                continue
            line.set_color("#1e63d6" if tail == "buy" else "#c2185b")
            line.set_markeredgecolor("black")
            line.set_markeredgewidth(0.8)
            line.set_markersize(9)
            line.set_zorder(50)

    # fold boundaries (retrain bars) on the price panel and on the forecast's own panel
    indicators = [ind for ind in strat.getindicators() if ind.plotinfo.plot]
    nfolds = 0
    fold_style = {"color": "tab:purple", "lw": 0.8, "ls": (0, (5, 3)), "alpha": 0.55}
    for ind, src, bars in _fold_bars(indicators, data):
        src_dt = src.datetime.array
        xs = [bisect.bisect_left(xreal, src_dt[b]) for b in bars if 0 <= b < len(src_dt)]
        sub_ax = pinf.daxis.get(ind)
        for x in xs:
            if price_ax is not None:
                price_ax.axvline(x, zorder=0.6, gid=_FOLD_GID, **fold_style)
            if sub_ax is not None and sub_ax is not price_ax:
                sub_ax.axvline(x, zorder=0.6, gid=_FOLD_GID + "_panel", **fold_style)
        nfolds += len(xs)
    for ind, ax in pinf.daxis.items():
        if ax is not price_ax and _is_forecast(ind):
            _percent_panel(ax, ind, lo - 0.5)

    # legends: one row above each panel, never over the bars. Backtrader keeps the original
    # artists of a data panel's legend in pinf.handles (volume and price live on twin axes).
    for ax in axes:
        if ax in pinf.handles:
            handles, labels = list(pinf.handles[ax]), list(pinf.labels[ax])
        elif ax.get_legend() is not None:
            handles, labels = ax.get_legend_handles_labels()
        else:
            continue
        if ax is price_ax:
            # an unnamed data's label starts with its timeframe: name it like the figure
            labels = [f"{key} {lab}" if lab.startswith("(") else lab for lab in labels]
            if nfolds:
                handles.append(Line2D([], [], **fold_style))
                labels.append(f"retrain ({nfolds})")
        _legend_above(ax, handles, labels)

    # dates on the bottom axes only (Backtrader hides them all on matplotlib >= 3.x)
    _date_ticks(bottom, xreal, lo, hi)
    for ax in axes:
        ax.xaxis.set_tick_params(labelbottom=False)
    bottom.xaxis.set_tick_params(labelbottom=True, labelrotation=0, labelsize=8)

    buys, sells = _count_marks(strat.getobservers(), data)
    period = f"{bt.num2date(xreal[lo]):%Y-%m-%d} to {bt.num2date(xreal[hi]):%Y-%m-%d}, {len(data)} bars"
    detail = f"{period}   |   {buys} buys, {sells} sells" + (f"   |   {nfolds} retrains" if nfolds else "")
    fig.suptitle(f"{key} \u2014 {type(strat).__name__}", fontsize=13, fontweight="bold", x=0.04, ha="left", y=0.99)
    fig.text(0.04, 0.962, detail, fontsize=9, color="0.3", ha="left", va="top")
    fig.set_size_inches(width, height)
    fig.subplots_adjust(top=0.91, bottom=0.05, left=0.04, right=0.94, hspace=0.35)
    return fig


def plot_trades(cerebro, out_dir=None, strategy=None, dpi=110, width=14, height=9, fmt="png", style="auto"):
    """One trade chart per data of a Cerebro that has run, drawn by Backtrader's own plotter.

    Works for any strategy. Each figure shows one data (candles or a close line,
    volume, the BuySell markers) with only its own indicators and observers; a forecast
    indicator's subplot shows ``pred_return`` with the +-threshold lines, its forecast
    price overlays the price panel, and retrain bars (``indicator.folds``) are dashed
    vertical lines there. Strategy-wide observers (cash/value, trades) are shown only
    when there is a single data.

    Args:
        cerebro: a ``bt.Cerebro`` after ``run()`` (exactbars=0).
        out_dir: if given, writes ``<out_dir>/trades_<name>.<fmt>`` per data.
        strategy: the strategy instance to chart (default: the first one that ran).
        dpi, width, height: resolution and size (inches) of the figures/files.
        fmt: file format of the written files.
        style: ``"candle"``, ``"bar"``, ``"line"`` or ``"auto"`` (candles up to 400 bars, else line).

    Returns:
        ``{name: Figure}`` keyed by the data's name (``"data0"``... when unnamed).

    >>> figs = plot_trades(cerebro, out_dir="plots")  # doctest: +SKIP
    """
    fmt = _check_fmt(fmt)
    dpi = _check_positive("dpi", dpi)
    width = _check_positive("width", width)
    height = _check_positive("height", height)
    if style not in ("auto", "candle", "candlestick", "bar", "ohlc", "line"):
        raise ConfigError(f"style={style!r} is not one of 'auto', 'candle', 'bar', 'line'")
    plt = _prepare_matplotlib()
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
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    figures: dict = {}
    used_files: set = set()
    for idx, data in enumerate(datas):
        if not _in(data, masters):
            continue
        name = getattr(data, "_name", "") or f"data{idx}"
        key = name
        n = 2
        while key in figures:
            key, n = f"{name}_{n}", n + 1
        members = [d for d in datas if owners[id(d)] is data]
        nbars = len(data)
        chosen = style
        if style == "auto":
            chosen = "candle" if nbars <= _CANDLE_MAX_BARS else "line"
        chosen = {"candlestick": "candle", "ohlc": "bar"}.get(chosen, chosen)
        fignum = _new_fignum(plt)
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
            fig.savefig(out / f"{fname}.{fmt}", dpi=dpi, format=fmt)
        _release(plt, fig)
    return figures


# --------------------------------------------------------------------------- equity and forecasts


def _as_series(obj, what: str):
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        if obj.shape[1] != 1:
            raise ConfigError(f"{what} must be a pandas Series (or one-column DataFrame), got {obj.shape[1]} columns")
        obj = obj.iloc[:, 0]
    if not isinstance(obj, pd.Series):
        raise ConfigError(f"{what} must be a pandas Series indexed by date, got {type(obj).__name__}")
    if not isinstance(obj.index, pd.DatetimeIndex):
        try:
            obj = obj.set_axis(pd.to_datetime(obj.index))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{what} must be indexed by dates ({exc})") from None
    obj = pd.to_numeric(obj, errors="coerce").dropna()
    if obj.empty:
        raise ConfigError(f"{what} has no numeric values to plot")
    return obj.sort_index()


def _date_axis(ax):
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=5, maxticks=12)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _save(fig, out_path, dpi) -> None:
    if out_path is None:
        return
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")


def _equity_figure(curves: dict, benchmark, out_path, title: str, dpi):
    plt = _prepare_matplotlib()
    if not curves:
        raise ConfigError("no equity curve to plot")
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    lines = [(str(name), _as_series(series, f"equity '{name}'"), palette[i % len(palette)], 1.6)
             for i, (name, series) in enumerate(curves.items())]
    if benchmark is not None:
        lines.append(("buy & hold", _as_series(benchmark, "benchmark"), "0.4", 1.2))

    fig, (ax, axdd) = plt.subplots(2, 1, sharex=True, figsize=(12, 7), num=_new_fignum(plt),
                                   gridspec_kw={"height_ratios": [3, 1], "hspace": 0.06})
    for label, series, color, lw in lines:
        start = series.iloc[0]
        total = series.iloc[-1] / start - 1.0 if start else float("nan")
        drawdown = (series / series.cummax() - 1.0) * 100
        ls = "-" if label != "buy & hold" else (0, (5, 2))
        ax.plot(series.index, series.values, color=color, lw=lw, ls=ls,
                label=f"{label}: {total:+.1%}, max drawdown {drawdown.min() / 100:.1%}")
        if label != "buy & hold" and len(lines) <= 2:
            axdd.fill_between(drawdown.index, drawdown.values, 0, color=color, alpha=0.25, lw=0)
        axdd.plot(drawdown.index, drawdown.values, color=color, lw=0.9, ls=ls, label=label)
    ax.axhline(lines[0][1].iloc[0], color="0.6", lw=0.8, ls=":")
    import matplotlib.ticker as mticker

    ax.yaxis.set_major_formatter(mticker.StrMethodFormatter("{x:,.0f}"))
    axdd.yaxis.set_major_formatter(mticker.PercentFormatter(decimals=0))
    ax.set_ylabel("portfolio value")
    ax.set_title(title, loc="left", fontsize=12, fontweight="bold")
    ax.grid(True, color="0.9")
    ax.legend(loc="upper left", fontsize=9, framealpha=0.9)
    axdd.set_ylabel("drawdown %")
    axdd.grid(True, color="0.9")
    axdd.axhline(0, color="0.5", lw=0.8)
    _date_axis(axdd)
    ax.margins(x=0.01)
    _save(fig, out_path, dpi)
    _release(plt, fig)
    return fig


def plot_equity(equity, benchmark=None, out_path=None, title="Portfolio equity vs buy-and-hold", dpi=110):
    """Equity curve over a drawdown panel, with an optional buy-and-hold benchmark.

    ``equity`` / ``benchmark``: pandas Series of portfolio value indexed by date. The legend
    gives each curve's total return and maximum drawdown. Writes the figure when ``out_path``
    is given (format from its suffix, PNG by default). Returns the Figure.

    >>> plot_equity(res.equity["strategy"], res.equity["buy_hold"], out_path="equity.png")  # doctest: +SKIP
    """
    return _equity_figure({"strategy": equity}, benchmark, out_path, title, dpi)


def plot_comparison(curves, benchmark=None, out_path=None, title="Equity by model vs buy-and-hold", dpi=110):
    """Several equity curves (``{label: Series}``, e.g. LSTM and GRU) with a benchmark and drawdowns."""
    if not isinstance(curves, dict):
        raise ConfigError(f"curves must be a dict of {{label: equity Series}}, got {type(curves).__name__}")
    return _equity_figure(curves, benchmark, out_path, title, dpi)


def plot_forecasts(df, out_path=None, title=None, dpi=110):
    """Predicted vs realised next-bar return for one ticker: scatter (with IC, hit rate) and time series.

    ``df``: DataFrame with columns ``pred_return`` and ``realized_return`` and a DatetimeIndex
    (rows with NaN are dropped). Returns the Figure; writes it when ``out_path`` is given.
    """
    import numpy as np
    import pandas as pd

    plt = _prepare_matplotlib()
    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"plot_forecasts() needs a DataFrame, got {type(df).__name__}")
    missing = {"pred_return", "realized_return"} - set(df.columns)
    if missing:
        raise ConfigError(f"plot_forecasts(): missing column(s) {sorted(missing)}; have {list(df.columns)}")
    frame = df[["pred_return", "realized_return"]].apply(pd.to_numeric, errors="coerce").dropna()
    if not isinstance(frame.index, pd.DatetimeIndex):
        try:
            frame.index = pd.to_datetime(frame.index)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"plot_forecasts(): the index must be dates ({exc})") from None
    if frame.empty:
        raise ConfigError("plot_forecasts(): no rows with both pred_return and realized_return")
    if title is None:
        title = f"{df.attrs.get('ticker', '')} forecast vs realised next return".strip()

    pred = frame["pred_return"].to_numpy() * 100
    real = frame["realized_return"].to_numpy() * 100
    n = len(frame)
    ic = float(np.corrcoef(pred, real)[0, 1]) if n > 2 and pred.std() > 0 and real.std() > 0 else float("nan")
    nonzero = (pred != 0) & (real != 0)
    hit = float(np.mean(np.sign(pred[nonzero]) == np.sign(real[nonzero]))) if nonzero.any() else float("nan")

    fig = plt.figure(figsize=(14, 6), num=_new_fignum(plt))
    grid = fig.add_gridspec(2, 3, width_ratios=[1.1, 1, 1], hspace=0.08, wspace=0.25)
    sc = fig.add_subplot(grid[:, 0])
    ts_real = fig.add_subplot(grid[0, 1:])
    ts_pred = fig.add_subplot(grid[1, 1:], sharex=ts_real)

    sc.scatter(pred, real, s=8, alpha=0.45, color="tab:purple", edgecolors="none")
    if n > 2 and pred.std() > 0:
        slope, intercept = np.polyfit(pred, real, 1)
        xs = np.linspace(pred.min(), pred.max(), 50)
        sc.plot(xs, slope * xs + intercept, color="tab:orange", lw=1.5, label=f"OLS slope {slope:.2f}")
        sc.legend(loc="upper left", fontsize=8)
    sc.axhline(0, color="0.6", lw=0.8)
    sc.axvline(0, color="0.6", lw=0.8)
    sc.set_xlabel("predicted return %")
    sc.set_ylabel("realised next return %")
    sc.grid(True, alpha=0.3)
    sc.text(0.98, 0.02, f"n={n}  IC={ic:.3f}  hit rate={hit:.1%}", transform=sc.transAxes, ha="right",
            va="bottom", fontsize=9, bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.8"})

    ts_real.plot(frame.index, real, color="0.55", lw=0.7, label="realised next return %")
    ts_real.axhline(0, color="0.6", lw=0.8)
    ts_real.legend(loc="upper left", fontsize=8)
    ts_real.grid(True, alpha=0.3)
    ts_real.tick_params(labelbottom=False)
    ts_pred.plot(frame.index, pred, color="tab:purple", lw=0.9, label="predicted return %")
    ts_pred.axhline(0, color="0.6", lw=0.8)
    ts_pred.legend(loc="upper left", fontsize=8)
    ts_pred.grid(True, alpha=0.3)
    _date_axis(ts_pred)
    fig.suptitle(title, x=0.07, y=0.97, ha="left", fontsize=12, fontweight="bold")
    fig.subplots_adjust(top=0.9)
    _save(fig, out_path, dpi)
    _release(plt, fig)
    return fig
