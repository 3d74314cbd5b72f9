"""Ready-made Backtrader strategies built on puffin_bt's forecast indicators (public names only)."""

from .buy_and_hold import BuyAndHold
from .forecast_threshold import ForecastThresholdStrategy, threshold_target

__all__ = ["BuyAndHold", "ForecastThresholdStrategy", "threshold_target"]
