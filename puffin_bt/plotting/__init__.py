"""Charts: trade charts through Backtrader's plotter (``trades``), equity/comparison/forecast charts
(``charts``), the interactive trades.html (``html``, from a run's tables: ``tables``) and what they share (``common``)."""

from .charts import plot_comparison, plot_equity, plot_forecasts, plot_volatility
from .common import safe_name
from .html import write_trades_html
from .trades import plot_trades

__all__ = ["plot_comparison", "plot_equity", "plot_forecasts", "plot_trades", "plot_volatility", "safe_name", "write_trades_html"]
