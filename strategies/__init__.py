"""Ready-made Backtrader strategies built on puffin_bt's forecast indicators (public names only)."""

from .buy_and_hold import BuyAndHold
from .forecast_rank import ForecastRankStrategy, rank_targets
from .forecast_threshold import ForecastThresholdStrategy, TradeLog, interval_target, threshold_target
from .sleeves import Sleeves

__all__ = ["BuyAndHold", "ForecastRankStrategy", "ForecastThresholdStrategy", "Sleeves", "TradeLog", "rank_targets",
           "interval_target", "threshold_target"]
