"""The Backtrader adapters: everything in puffin_bt that imports Backtrader, over the engine-free core.

``feeds`` (``FrameData``, ``QueueData``), ``indicators`` (``ForecastIndicator``, ``LSTMForecast``, ``GRUForecast``,
``ForecastPrice``), ``analyzers`` (``SleeveValue``) and ``compat`` (fixes for Backtrader 1.9.78 on
current Python and matplotlib).
"""

from .compat import apply_backtrader_fixes

apply_backtrader_fixes()

from .analyzers import SleeveValue  # noqa: E402 - after the fixes: Backtrader's classes are used at import
from .feeds import FrameData, QueueData  # noqa: E402
from .indicators import ForecastIndicator, ForecastPrice, GRUForecast, LSTMForecast, forecast_indicator  # noqa: E402

__all__ = ["FrameData", "QueueData", "ForecastIndicator", "ForecastPrice", "GRUForecast", "LSTMForecast", "SleeveValue",
           "forecast_indicator"]
