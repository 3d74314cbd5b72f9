"""Reports: LSTM vs GRU side by side on identical data and schedule, and the quantstats tearsheet (linked to the
interactive trade chart)."""

from __future__ import annotations

import html
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .evaluation import forecast_metrics
from .files import atomic_write_bytes

__all__ = ["compare_models", "require_quantstats", "tearsheet"]


def comparison_table(results: dict) -> pd.DataFrame:
    """One column per model: forecast quality, trading results and training cost."""
    cols = {}
    for name, res in results.items():
        f = res.forecasts
        quality = forecast_metrics(f["pred_return"], f["realized_return"]) if len(f) else {}
        folds = res.folds
        last_val = folds.groupby("ticker")["val_loss"].last().mean() if len(folds) else np.nan
        cols[name.upper()] = {
            "final val loss (mean over tickers)": last_val,
            "direction accuracy": quality.get("direction_accuracy", np.nan),
            "direction p-value": quality.get("direction_p_value", np.nan),
            "total return": res.metrics["total_return"],
            "Sharpe": res.metrics["sharpe"],
            "PSR": res.metrics["psr"],
            "max drawdown": res.metrics["max_drawdown"],
            "trades": res.metrics["trades"],
            "training seconds": float(folds["seconds"].sum()) if len(folds) else 0.0,
            "wall seconds": res.seconds,
        }
    first = next(iter(results.values()))
    cols["BUY&HOLD"] = {"total return": first.benchmark["total_return"], "Sharpe": first.benchmark["sharpe"],
                        "PSR": first.benchmark["psr"], "max drawdown": first.benchmark["max_drawdown"]}
    return pd.DataFrame(cols)


def compare_models(results: dict, out_dir=None) -> str:
    """Text table comparing the models; with ``out_dir`` also writes comparison.png/.csv."""
    table = comparison_table(results)
    if out_dir is not None:
        from .plotting import plot_comparison

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "comparison.csv", table.to_csv().encode())
        plot_comparison({k.upper(): r.equity["strategy"] for k, r in results.items()},
                        next(iter(results.values())).equity["buy_hold"], out_path=out / "comparison.png")
    shown = table.copy().astype(object)
    for row in shown.index:
        for col in shown.columns:
            v = table.loc[row, col]
            if pd.isna(v):
                shown.loc[row, col] = ""
            elif row in ("direction accuracy", "total return", "max drawdown"):
                shown.loc[row, col] = f"{100 * v:.1f}%"
            elif row == "trades":
                shown.loc[row, col] = f"{int(v)}"
            else:
                shown.loc[row, col] = f"{v:.4g}"
    return f"{' vs '.join(name.upper() for name in results)}, same data and schedule\n" + shown.to_string()


def require_quantstats():
    """The quantstats module, or a ConfigError that says how to install it."""
    try:
        import quantstats
    except ImportError:
        from .errors import ConfigError

        raise ConfigError("the HTML report needs quantstats: pip install 'puffin_bt[report]' "
                          "(or drop --report)") from None
    return quantstats


def link_bar(page: str, links: dict[str, str]) -> str:
    """``page`` with a row of links at the top of its body (after ``<body ...>``; at the very top without one)."""
    bar = ("<p style=\"max-width:960px;margin:0 auto 12px auto;font:13px/1.4 Arial,sans-serif\">"
           + " &middot; ".join(f"<a href=\"{html.escape(href)}\">{html.escape(label)}</a>" for label, href in links.items())
           + "</p>")
    body = re.search(r"<body\b[^>]*>", page, re.IGNORECASE)
    at = body.end() if body else 0
    return page[:at] + bar + page[at:]


def tearsheet(result, out_path, title: str | None = None, links: dict[str, str] | None = None) -> Path:
    """An HTML tearsheet (quantstats) of the portfolio's daily returns against the buy-and-hold benchmark,
    over the statistics period (after the first forecast bar, like metrics.json's Sharpe ratios).

    ``links`` ({label: href}) go in a row at the top; by default a link to the interactive ``trades.html`` when one
    is beside ``out_path``. ``title`` is text, never markup: it is HTML-escaped (quantstats pastes it into the page
    raw, so a ticker named ``<img onerror=...>`` would run as script). Written atomically. Needs the optional extra:
    ``pip install 'puffin_bt[report]'``.
    """
    qs = require_quantstats()
    import logging
    import warnings

    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    returns = result.returns("strategy").rename("Strategy")
    if not (returns != 0).any():
        from .errors import DataError

        raise DataError("the strategy never held a position, so there is nothing for a tearsheet to show; "
                        "lower --entry or check the forecasts")
    benchmark = result.returns("buy_hold").rename("Buy & hold")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = result.config
    rules = "rank" if cfg.get("strategy") == "rank" else "threshold"
    title = title or f"puffin_bt {cfg['model'].upper()} {rules} strategy: {', '.join(cfg['tickers'])}"
    if links is None and (out.parent / "trades.html").is_file():
        links = {"interactive trade chart": "trades.html"}
    # quantstats writes with a plain open(): into a temp file beside the report, then the page (with the links)
    # replaces the report in one rename, so a reader never sees half a report.
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qs.reports.html(returns, benchmark=benchmark, output=tmp, title=html.escape(title),
                            download_filename=html.escape(out.name))
        page = Path(tmp).read_text(encoding="utf-8")
        atomic_write_bytes(out, (link_bar(page, links) if links else page).encode("utf-8"))
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out
