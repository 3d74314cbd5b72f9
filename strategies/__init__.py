"""Ready-made Backtrader strategies built on puffin_bt's forecast indicators."""

from .forecast_threshold import ForecastThresholdStrategy

__all__ = ["ForecastThresholdStrategy"]
