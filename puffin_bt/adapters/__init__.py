"""The Backtrader adapters: everything in puffin_bt that imports Backtrader, over the engine-free core.

``feeds`` (``FrameData``, ``QueueData``), ``indicators`` (``ForecastIndicator``, one per model family: ``LSTMForecast``, ``GRUForecast``,
``TCNForecast``; ``ForecastPrice``), ``analyzers`` (``SleeveValue``) and ``compat`` (fixes for Backtrader 1.9.78 on
current Python and matplotlib).
"""

from .compat import apply_backtrader_fixes

apply_backtrader_fixes()

from .analyzers import SleeveValue  # noqa: E402 - after the fixes: Backtrader's classes are used at import
from .feeds import FrameData, QueueData  # noqa: E402
from .indicators import (  # noqa: E402
    INDICATORS,
    ForecastIndicator,
    ForecastPrice,
    forecast_indicator,
)

# One indicator class per model family (models.FAMILIES): TCNForecast, and any family added later.
globals().update({cls.__name__: cls for cls in INDICATORS.values()})

__all__ = ["FrameData", "QueueData", "ForecastIndicator", "ForecastPrice", "SleeveValue", "forecast_indicator",
           *(cls.__name__ for cls in INDICATORS.values())]
