"""Fixes for Backtrader 1.9.78 on current Python and matplotlib (shared notes: backtrader-compat).

Scoped as narrowly as possible: nothing outside Backtrader's own modules changes, and a user's
explicit matplotlib backend or working display is never overridden. ``apply_backtrader_fixes``
runs when ``puffin_bt`` (or ``strategies``) is imported, so a Backtrader user's own
``cerebro.plot()`` works too: on a headless machine (no display, no backend chosen) it draws with
Agg instead of failing to load TkAgg, and its x axis shows real dates.
"""

from __future__ import annotations

import collections
import collections.abc
import functools
import math
import os
import sys
import types

__all__ = ["apply_backtrader_fixes", "interactive", "prepare_matplotlib"]

_NON_INTERACTIVE = {"agg", "pdf", "ps", "svg", "pgf", "cairo", "template"}


def apply_backtrader_fixes() -> None:
    """``bindlines()`` uses ``collections.Iterable`` (gone since Python 3.10): give
    ``backtrader.lineiterator`` a ``collections`` that has it, without touching the real module;
    and make ``Cerebro.plot`` headless-safe with date labels (``_plot_with_dates``)."""
    import backtrader as bt
    import backtrader.lineiterator as lineiterator

    current = getattr(lineiterator, "collections", None)
    if current is None or not hasattr(current, "Iterable"):
        shim = types.ModuleType("collections")
        shim.__dict__.update(collections.__dict__)
        shim.Iterable = collections.abc.Iterable
        lineiterator.collections = shim
    if not getattr(bt.Cerebro.plot, "_puffin_bt", False):
        bt.Cerebro.plot = _plot_with_dates(bt.Cerebro.plot)


def has_display() -> bool:
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


def prepare_matplotlib():
    """Make ``backtrader.plot`` importable without it forcing TkAgg; returns ``matplotlib.pyplot``.

    Headless with no backend chosen -> Agg. A display, MPLBACKEND, a matplotlibrc
    backend, ``matplotlib.use()`` or ``%matplotlib inline`` are left alone.
    """
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not _backend_chosen(matplotlib) and not has_display():
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
    return plt


def interactive(plt) -> bool:
    return plt.get_backend().lower() not in _NON_INTERACTIVE


def show_date_labels(fig, rotation: float = 0) -> None:
    """Backtrader hides every x tick label, then re-shows ``get_xticklabels()``, which matplotlib
    >= 3.x returns only for visible labels: show the bottom axes' date labels again, no more of them
    than fit side by side (Backtrader's locator picks ~12, which overlap on a default-size figure)."""
    axes = [ax for ax in fig.axes if ax.get_visible()]
    if not axes:
        return
    bottom = min(axes, key=lambda ax: ax.get_position().y0)
    bottom.xaxis.set_tick_params(labelbottom=True, labelrotation=rotation, labelsize=8)
    locator = bottom.xaxis.get_major_locator()
    if not getattr(locator, "_puffin_bt", False):
        bottom.xaxis.set_major_locator(_fitting_locator(locator, rotation))
    if rotation:
        for label in bottom.get_xticklabels():
            label.set_horizontalalignment("right")


def _fitting_locator(base, rotation: float):
    """Every k-th tick of the ``base`` locator, k chosen at draw time so the labels fit the axes' width
    (matplotlib is imported here, not when puffin_bt is)."""
    import matplotlib.ticker as mticker

    class FittingLocator(mticker.Locator):
        _puffin_bt = True

        def __call__(self):
            ticks = list(base())
            if len(ticks) < 3 or self.axis is None:
                return ticks
            ax = self.axis.axes
            inches = ax.get_window_extent().width / ax.figure.dpi
            text = str(self.axis.get_major_formatter()(ticks[0], 0))
            # An 8-pt digit is ~0.6 x 8 pt wide; three digits of gap between labels.
            width = (len(text) + 3) * 8 * 0.6 / 72 * max(abs(math.cos(math.radians(rotation))), 0.35)
            return ticks[::max(1, math.ceil(len(ticks) * width / max(inches, 0.1)))]

        def set_axis(self, axis):
            super().set_axis(axis)
            base.set_axis(axis)

    return FittingLocator()


# strftime formats of the x tick labels by the finest timeframe charted (Backtrader's TimeFrame numbers):
# Backtrader's own default, '%Y-%m-%d %H:%M', puts 00:00 on every daily bar; None reads its dates with
# matplotlib's post-3.3 epoch (year ~3990).
_TICK_FORMATS = {9: "%Y-%m-%d", 8: "%Y", 7: "%Y-%m", 6: "%Y-%m-%d", 5: "%Y-%m-%d", 4: "%Y-%m-%d %H:%M", 3: "%Y-%m-%d %H:%M:%S"}


def _tick_format(cerebro) -> str:
    frames = [getattr(d, "_timeframe", 5) for d in getattr(cerebro, "datas", [])]
    return _TICK_FORMATS.get(min(frames, default=5), "%Y-%m-%d %H:%M:%S.%f")


def _plot_with_dates(original):
    @functools.wraps(original)
    def plot(self, plotter=None, *args, **kwargs):
        import matplotlib

        if "ipykernel" in sys.modules and len(args) < 2 and "iplot" not in kwargs and _backend_chosen(matplotlib):
            # Backtrader switches a notebook kernel to nbagg (blank in JupyterLab); keep the kernel's own backend.
            kwargs["iplot"] = False
        plt = prepare_matplotlib()
        if plotter is None:
            if kwargs.get("fmt_x_ticks") is None:
                kwargs["fmt_x_ticks"] = _tick_format(self)
            rotation = kwargs.get("tickrotation", 0)
        else:
            rotation = getattr(getattr(getattr(plotter, "p", None), "scheme", None), "tickrotation", 0)
        if not interactive(plt):
            # Backtrader numbers its figures 0, 1, ... (100, 101, ... for a second strategy) and draws into an open
            # figure of that number: on Agg the previous cerebro.plot()'s figures still are (show() closes nothing).
            # Release those numbers first (the old Figure objects stay usable); the new figures stay open, so
            # plt.savefig() after cerebro.plot() saves them.
            numfigs = args[0] if args else kwargs.get("numfigs", 1)
            strategies = max((len(group) for group in getattr(self, "runstrats", None) or []), default=1)
            for num in set(plt.get_fignums()) & {s * 100 + i for s in range(strategies) for i in range(numfigs)}:
                plt.close(num)
        figs = original(self, plotter, *args, **kwargs)
        for group in figs or []:
            for fig in group or []:
                show_date_labels(fig, rotation)
        return figs

    plot._puffin_bt = True
    return plot
