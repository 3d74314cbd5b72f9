"""What a backtest produced (``BacktestResult``): tables, the compact summary, files and charts."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import backtrader as bt
import numpy as np
import pandas as pd

from ..files import atomic_write_bytes
from .metrics import period_returns

__all__ = ["BacktestResult"]

SKIPPED_SHOWN = 20  # skipped tickers named in the summary (a universe may skip thousands; metrics.json has all)


@dataclass
class BacktestResult:
    """Everything a backtest produced. ``summary()`` prints the compact table."""

    metrics: dict
    per_ticker: pd.DataFrame
    benchmark: dict
    benchmark_per_ticker: pd.DataFrame
    equity: pd.DataFrame
    trades: pd.DataFrame
    open_positions: pd.DataFrame  # still open at the end: ticker, direction, entry_date, entry_price, size
    forecasts: pd.DataFrame
    folds: pd.DataFrame
    config: dict
    seconds: float
    cerebro: bt.Cerebro = field(repr=False)
    strategy: bt.Strategy = field(repr=False)
    # The statistics period (start = first forecast bar, end, bars = daily returns after start, covers = what
    # uses it) and the whole run (whole_run): metrics.json's "period".
    period: dict = field(default_factory=dict)

    def returns(self, column: str = "strategy") -> pd.Series:
        """Daily returns of the portfolio (``"strategy"``) or of buy-and-hold (``"buy_hold"``) over the
        statistics period: the bars after the first forecast bar, the returns its Sharpe and PSR use."""
        return period_returns(self.equity[column], self.period["start"])

    def table(self) -> pd.DataFrame:
        """Portfolio and per-ticker rows, strategy next to buy-and-hold."""
        cols = ["total_return", "cagr", "sharpe", "psr", "max_drawdown", "trades", "open_positions", "win_rate",
                "exposure"]
        rows = {"PORTFOLIO": {**{c: self.metrics.get(c) for c in cols},
                              "bh_total_return": self.benchmark["total_return"],
                              "bh_sharpe": self.benchmark["sharpe"],
                              "bh_max_drawdown": self.benchmark["max_drawdown"]}}
        for ticker, row in self.per_ticker.iterrows():
            bh = self.benchmark_per_ticker.loc[ticker]
            rows[ticker] = {**{c: row.get(c) for c in cols}, "bh_total_return": bh["total_return"],
                            "bh_sharpe": bh["sharpe"], "bh_max_drawdown": bh["max_drawdown"]}
        return pd.DataFrame(rows).T

    def summary(self) -> str:
        t = self.table()
        out = pd.DataFrame(index=t.index)
        pct = lambda s: s.map(lambda v: "" if pd.isna(v) else f"{100 * v:6.1f}%")  # noqa: E731
        num = lambda s: s.map(lambda v: "" if pd.isna(v) else f"{v:5.2f}")  # noqa: E731
        out["return"] = pct(t["total_return"])
        out["B&H return"] = pct(t["bh_total_return"])
        out["CAGR"] = pct(t["cagr"])
        out["Sharpe"] = num(t["sharpe"])
        out["PSR"] = num(t["psr"])
        out["B&H Sharpe"] = num(t["bh_sharpe"])
        out["max DD"] = pct(t["max_drawdown"])
        out["B&H max DD"] = pct(t["bh_max_drawdown"])
        out["trades"] = t["trades"].map(lambda v: "" if pd.isna(v) else str(int(v)))
        out["open"] = t["open_positions"].map(lambda v: "" if pd.isna(v) else str(int(v)))
        out["win rate"] = pct(t["win_rate"])
        out["exposure"] = pct(t["exposure"])
        cfg = self.config
        rules = "" if cfg.get("strategy", "threshold") == "threshold" else f" {cfg['strategy']} (top {cfg.get('top_k')})"
        head = (f"{cfg['model'].upper()} walk-forward{rules}, {len(self.per_ticker)} ticker(s), "
                f"{self.equity.index[0]:%Y-%m-%d}..{self.equity.index[-1]:%Y-%m-%d}, "
                f"{len(self.folds)} folds, {self.seconds:.1f}s")
        if self.period:
            per_year = self.metrics.get("periods_per_year")
            basis = self.metrics.get("periods_per_year_basis", "")
            every = "daily " if basis.startswith("daily") else ""
            stamp = "%Y-%m-%d %H:%M" if basis.startswith("intraday") else "%Y-%m-%d"
            head += (f"\nCAGR, Sharpe, PSR (probability the true Sharpe > 0), exposure: {self.period['bars']} {every}"
                     f"returns after the first forecast bar {self.period['start']:{stamp}} (warm-up excluded); "
                     f"annualised with {per_year:,.6g} bars a year ({basis})" if per_year else "")
        zones = (self.period or {}).get("timestamps") or {}
        if zones:  # tz-aware input: every stamp written is UTC, and the reader must know it
            head += "\ntimes are " + "; ".join(f"{label} ({', '.join(t for t in zones if zones[t] == label)})"
                                              for label in dict.fromkeys(zones.values()))
        text = head + "\n" + out.to_string()
        if self.skipped:
            shown = list(self.skipped.items())[:SKIPPED_SHOWN]
            text += f"\nskipped {len(self.skipped)} ticker(s):" + "".join(f"\n  {t}: {why}" for t, why in shown)
            if len(self.skipped) > SKIPPED_SHOWN:
                text += f"\n  and {len(self.skipped) - SKIPPED_SHOWN} more (metrics.json lists every one)"
        rejected = self.metrics.get("rejected") or []
        if rejected:
            shown = "; ".join(f"{r['ticker']} {r['date']} {r['status']} ({r['reason']})" for r in rejected[:5])
            more = f" and {len(rejected) - 5} more (metrics.json)" if len(rejected) > 5 else ""
            text += f"\nrejected orders: {shown}{more}"
        not_traded = self.metrics.get("not_traded") or {}
        if not_traded:
            text += "\nsignals not traded: " + "; ".join(f"{t}: {why}" for t, why in not_traded.items())
        vol_sources = self.metrics.get("vol_sources") or {}
        if vol_sources:
            text += "\nvol_target sized on (bars): " + "; ".join(
                f"{t}: " + ", ".join(f"{source} {bars}" for source, bars in counts.items())
                for t, counts in vol_sources.items())
        not_held = self.benchmark.get("not_held") or {}
        if not_held:
            text += "\nbuy-and-hold not held (B&H left blank): " + "; ".join(f"{t}: {why}" for t, why in not_held.items())
        return text

    @property
    def skipped(self) -> dict:
        """Tickers left out (``skip_failed=True``) and why."""
        return self.config.get("skipped", {})

    def save(self, out_dir) -> Path:
        """Write trades.csv, open_positions.csv, forecasts.csv, folds.csv, equity.csv, metrics.json and config.json."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in (("trades", self.trades), ("open_positions", self.open_positions),
                            ("forecasts", self.forecasts), ("folds", self.folds), ("equity", self.equity)):
            atomic_write_bytes(out / f"{name}.csv", frame.to_csv(index=name in ("equity",)).encode())
        metrics = {"period": self.period, "portfolio": self.metrics, "benchmark": self.benchmark,
                   "per_ticker": _records(self.per_ticker), "benchmark_per_ticker": _records(self.benchmark_per_ticker),
                   "skipped": self.skipped, "seconds": self.seconds}
        atomic_write_bytes(out / "metrics.json", json.dumps(_jsonable(metrics), indent=2).encode())
        atomic_write_bytes(out / "config.json", json.dumps(_jsonable(self.config), indent=2).encode())
        return out

    def plot(self, out_dir=None, fmt: str = "png") -> dict | Path:
        """Per-ticker trade charts plus equity vs buy-and-hold (``trades_<TICKER>.<fmt>`` and ``equity.<fmt>`` in
        ``out_dir`` if given); returns the figures.

        ``fmt="html"``: one interactive, self-contained page, ``<out_dir>/trades.html`` (every ticker, the trades with
        the forecasts behind them, the positions still open, the retrain dates, the portfolio against buy-and-hold),
        linked to the quantstats ``report.html`` when one is beside it; returns its path.
        """
        from ..plotting import plot_equity, plot_trades
        from ..plotting.common import check_fmt

        title = f"{self.config['model'].upper()} walk-forward {self._rules()[0]}"
        if check_fmt(fmt) == "html":
            return self._plot_html(out_dir, title)
        figs = plot_trades(self.cerebro, out_dir=out_dir, strategy=self.strategy, fmt=fmt)
        out_path = None if out_dir is None else Path(out_dir) / f"equity.{fmt.lower()}"
        figs["equity"] = plot_equity(self.equity["strategy"], self.equity["buy_hold"], out_path=out_path,
                                     title=f"{title} vs buy-and-hold")
        return figs

    def _rules(self) -> tuple[str, str | None]:
        """The strategy in a title's words, and its rule in a sentence where it has no threshold lines (rank)."""
        cfg = self.config
        if cfg.get("strategy", "threshold") != "rank":
            return "threshold strategy", None
        short = f", short the bottom {cfg['bottom_k']}" if cfg.get("bottom_k") else ""
        return (f"rank strategy (top {cfg['top_k']})",
                f"every {cfg['rebalance_every']} bars from the first forecast: hold the top {cfg['top_k']} by "
                f"predicted return{short}")

    def _plot_html(self, out_dir, title: str) -> Path:
        from ..errors import ConfigError
        from ..plotting.html import HTML_UNAVAILABLE, html_available, write_trades_html
        from ..plotting.tables import prices_and_rule

        if not html_available():
            raise ConfigError(HTML_UNAVAILABLE)
        if out_dir is None:
            raise ConfigError("plot(fmt='html') writes a page: pass out_dir, e.g. res.plot('out', fmt='html')")
        out = Path(out_dir)
        links = {"quantstats report": "report.html"} if (out / "report.html").is_file() else None
        inputs = prices_and_rule(self.strategy, list(self.strategy.datas))
        rule = self._rules()[1]
        if rule is not None:  # ranked, not thresholded: no entry/exit lines it never used
            inputs.update(entry=None, exit=None, rule=rule)
        return write_trades_html(out / "trades.html", **inputs,
                                 trades=self.trades, open_positions=self.open_positions, forecasts=self.forecasts,
                                 folds=self.folds, equity=self.equity, title=title, links=links)


def _records(frame: pd.DataFrame) -> dict:
    return {str(k): v for k, v in frame.to_dict(orient="index").items()}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if obj is pd.NaT:
        return None
    if isinstance(obj, pd.Timestamp):
        return str(obj.date()) if obj == obj.normalize() else obj.isoformat()
    return obj
