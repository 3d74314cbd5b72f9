"""What every chart shares: figure bookkeeping on interactive vs headless backends, file names and
format checks, date axes, series inputs."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

from ..adapters.compat import interactive
from ..errors import ConfigError
from ..files import atomic_write_bytes

__all__ = ["as_series", "check_fmt", "check_positive", "date_axis", "new_fignum", "release", "safe_name", "save"]


def release(plt, fig) -> None:
    """On a non-interactive backend, drop pyplot's reference so repeated calls don't pile up figures.

    The returned Figure stays fully usable (``savefig``); interactive sessions keep it for ``plt.show()``.
    """
    if not interactive(plt):
        plt.close(fig)


def new_fignum(plt) -> int:
    return max(plt.get_fignums(), default=0) + 1


def safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")
    return cleaned or "data"


def check_fmt(fmt) -> str:
    if not isinstance(fmt, str) or not re.fullmatch(r"[A-Za-z0-9]+", fmt):
        raise ConfigError(f"fmt={fmt!r} is not a file format; use e.g. 'png', 'svg' or 'pdf'")
    return fmt.lower()


def check_positive(name: str, value) -> float:
    try:
        ok = float(value) > 0 and math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"{name}={value!r} must be a positive number")
    return float(value)


def as_series(obj, what: str):
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


def date_axis(ax):
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=5, maxticks=12)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def save(fig, out_path, dpi, tight: bool = True, fmt: str | None = None) -> None:
    """Write ``fig`` to ``out_path`` through the atomic writer (never half a PNG, never through a
    symlink planted at that name); the format comes from the suffix unless ``fmt`` is given."""
    if out_path is None:
        return
    path = Path(out_path)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format=fmt or path.suffix.lstrip(".").lower() or "png",
                bbox_inches="tight" if tight else None)
    atomic_write_bytes(path, buf.getvalue())


