"""Charts: trade charts through Backtrader's plotter (``trades``), equity/comparison/forecast charts
(``charts``) and what they share (``common``)."""

from .charts import plot_comparison, plot_equity, plot_forecasts
from .common import safe_name
from .trades import plot_trades

__all__ = ["plot_comparison", "plot_equity", "plot_forecasts", "plot_trades", "safe_name"]
