"""Equity curves (strategy vs buy-and-hold, with drawdowns), LSTM vs GRU comparison, forecast quality (returns,
and volatility forecasts against the realised volatility)."""

from __future__ import annotations

from ..adapters.compat import prepare_matplotlib
from ..errors import ConfigError
from .common import as_series, date_axis, new_fignum, release, save

__all__ = ["plot_comparison", "plot_equity", "plot_forecasts", "plot_volatility"]


def _equity_figure(curves: dict, benchmark, out_path, title: str, dpi):
    plt = prepare_matplotlib()
    if not curves:
        raise ConfigError("no equity curve to plot")
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    lines = [(str(name), as_series(series, f"equity '{name}'"), palette[i % len(palette)], 1.6)
             for i, (name, series) in enumerate(curves.items())]
    if benchmark is not None:
        lines.append(("buy & hold", as_series(benchmark, "benchmark"), "0.4", 1.2))

    fig, (ax, axdd) = plt.subplots(2, 1, sharex=True, figsize=(12, 7), num=new_fignum(plt),
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

    values = [v for _, series, _, _ in lines for v in (series.min(), series.max())]
    log = min(values) > 0 and max(values) / min(values) > 10  # decades of growth: early years not a flat line
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(mticker.NullFormatter())
    ax.yaxis.set_major_formatter(mticker.StrMethodFormatter("{x:,.0f}"))
    axdd.yaxis.set_major_formatter(mticker.PercentFormatter(decimals=0))
    ax.set_ylabel("portfolio value (log scale)" if log else "portfolio value")
    ax.set_title(title, loc="left", fontsize=12, fontweight="bold")
    ax.grid(True, color="0.9")
    ax.legend(loc="upper left", fontsize=9, framealpha=0.9)
    axdd.set_ylabel("drawdown %")
    axdd.grid(True, color="0.9")
    axdd.axhline(0, color="0.5", lw=0.8)
    date_axis(axdd)
    ax.margins(x=0.01)
    save(fig, out_path, dpi)
    release(plt, fig)
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


def _dated_rows(df, required: tuple[str, str], optional: tuple[str, ...], who: str):
    """The numeric rows of ``df``'s ``required`` columns (and those of ``optional`` it has) where all have a
    value, indexed by date: or a ConfigError naming what is missing."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"{who}() needs a DataFrame, got {type(df).__name__}")
    missing = set(required) - set(df.columns)
    if missing:
        raise ConfigError(f"{who}(): missing column(s) {sorted(missing)}; have {list(df.columns)}")
    columns = [*required, *(c for c in optional if c in df.columns)]
    frame = df[columns].apply(pd.to_numeric, errors="coerce").dropna()
    if not isinstance(frame.index, pd.DatetimeIndex):
        try:
            frame.index = pd.to_datetime(frame.index)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{who}(): the index must be dates ({exc})") from None
    if frame.empty:
        raise ConfigError(f"{who}(): no rows with both {required[0]} and {required[1]}")
    return frame


def plot_forecasts(df, out_path=None, title=None, dpi=110):
    """Predicted vs realised next-bar return for one ticker: scatter (with IC, hit rate) and time series.

    ``df``: DataFrame with columns ``pred_return`` and ``realized_return`` and a DatetimeIndex
    (rows with NaN are dropped). Returns the Figure; writes it when ``out_path`` is given.
    """
    import numpy as np

    plt = prepare_matplotlib()
    frame = _dated_rows(df, ("pred_return", "realized_return"), (), "plot_forecasts")
    if title is None:
        title = f"{df.attrs.get('ticker', '')} forecast vs realised next return".strip()

    pred = frame["pred_return"].to_numpy() * 100
    real = frame["realized_return"].to_numpy() * 100
    n = len(frame)
    ic = float(np.corrcoef(pred, real)[0, 1]) if n > 2 and pred.std() > 0 and real.std() > 0 else float("nan")
    nonzero = (pred != 0) & (real != 0)
    hit = float(np.mean(np.sign(pred[nonzero]) == np.sign(real[nonzero]))) if nonzero.any() else float("nan")

    fig = plt.figure(figsize=(14, 6), num=new_fignum(plt))
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
    date_axis(ts_pred)
    fig.suptitle(title, x=0.07, y=0.97, ha="left", fontsize=12, fontweight="bold")
    fig.subplots_adjust(top=0.9)
    save(fig, out_path, dpi)
    release(plt, fig)
    return fig


def plot_volatility(df, out_path=None, title=None, periods_per_year: float = 252.0, dpi=110):
    """Forecast vs realised volatility for one ticker (``target="volatility"``), annualised for the chart only
    (``sqrt(variance x periods_per_year)``): the realised volatility over each forecast's horizon (grey), the
    nets' forecast and the HAR-RV baseline's when the frame has it, and below, the running mean QLIKE of each
    (lower is better) so the gap between them reads at a glance.

    ``df``: rows of ``voleval.volatility_frame`` (``pred_var``, ``realized_var``, optionally ``var_har``) indexed
    by date. Returns the Figure; writes it when ``out_path`` is given.
    """
    import numpy as np
    import pandas as pd

    from ..volatility import qlike

    plt = prepare_matplotlib()
    frame = _dated_rows(df, ("pred_var", "realized_var"), ("var_har",), "plot_volatility")
    annual = np.sqrt(frame.clip(lower=0) * periods_per_year) * 100
    fig, (ax, axq) = plt.subplots(2, 1, sharex=True, figsize=(12, 7), num=new_fignum(plt),
                                  gridspec_kw={"height_ratios": [3, 1.2], "hspace": 0.06})
    ax.plot(annual.index, annual["realized_var"], color="0.65", lw=0.7, label="realised")
    series = [("pred_var", "nets' forecast", "tab:orange", 1.3), ("var_har", "HAR-RV", "tab:blue", 1.0)]
    for column, label, color, width in series:
        if column not in frame:
            continue
        losses = qlike(frame[column].to_numpy(), frame["realized_var"].to_numpy())
        ax.plot(annual.index, annual[column], color=color, lw=width, label=f"{label} (QLIKE {losses.mean():.3f})")
        running = pd.Series(losses, index=frame.index).expanding(min_periods=20).mean()
        axq.plot(running.index, running, color=color, lw=1.2, label=label)
    ax.set_ylabel("annualised volatility %")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(True, alpha=0.3)
    axq.set_ylabel("mean QLIKE so far")
    axq.legend(loc="upper right", fontsize=8)
    axq.grid(True, alpha=0.3)
    date_axis(axq)
    ax.set_title(title or "forecast vs realised volatility", loc="left", fontsize=12, fontweight="bold")
    save(fig, out_path, dpi)
    release(plt, fig)
    return fig
