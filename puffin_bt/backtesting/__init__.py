"""Portfolio backtests in one call: ``backtest()`` (``run``), what it returns (``result``), how it
scores (``metrics``) and its progress bars (``progress``)."""

from .metrics import performance
from .result import BacktestResult
from .run import backtest, shipped_strategy

__all__ = ["BacktestResult", "backtest", "performance", "shipped_strategy"]
