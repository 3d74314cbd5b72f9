"""Ready-made Backtrader strategies built on puffin_bt's forecast indicators."""

from .forecast_threshold import ForecastThresholdStrategy, threshold_target

__all__ = ["ForecastThresholdStrategy", "threshold_target"]
