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
import os
import sys
import types

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


def show_date_labels(fig) -> None:
    """Backtrader hides every x tick label, then re-shows ``get_xticklabels()``, which matplotlib
    >= 3.x returns only for visible labels: show the bottom axes' date labels again."""
    axes = [ax for ax in fig.axes if ax.get_visible()]
    if not axes:
        return
    bottom = min(axes, key=lambda ax: ax.get_position().y0)
    bottom.xaxis.set_tick_params(labelbottom=True, labelrotation=0, labelsize=8)


def _plot_with_dates(original):
    @functools.wraps(original)
    def plot(self, plotter=None, *args, **kwargs):
        prepare_matplotlib()
        if plotter is None:  # Backtrader's floats use the pre-3.3 date epoch: format them itself
            kwargs.setdefault("fmt_x_ticks", "%Y-%m-%d")
            kwargs.setdefault("fmt_x_data", "%Y-%m-%d")
        figs = original(self, plotter, *args, **kwargs)
        for group in figs or []:
            for fig in group or []:
                show_date_labels(fig)
        return figs

    plot._puffin_bt = True
    return plot
