"""puffin_bt: LSTM/GRU walk-forward forecast indicators and a threshold strategy for Backtrader."""

__version__ = "0.1.0"  # first: the forecast store keys its entries with it

from .data import load_csv, load_prices, load_sample, validate_ohlcv
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DeviceError,
    NetworkError,
    NotFittedError,
    PuffinError,
)
from .forecaster import ModelConfig, RNNForecaster, TradingGRU, TradingLSTM
from .indicators import ForecastPrice, GRUForecast, LSTMForecast
from .nets import GRUNet, LSTMNet, RecurrentNet, StackedLSTM
from .plotting import plot_comparison, plot_equity, plot_forecasts, plot_trades
from .runner import BacktestResult, backtest
from .store import ForecastStore
from .training import EarlyStopping, TensorBatches, resolve_device, set_seed, training_loop
from .walkforward import FoldSchedule, WalkForward, walk_forward

__all__ = [
    "load_csv", "load_prices", "load_sample", "validate_ohlcv",
    "CheckpointError", "ConfigError", "DataError", "DeviceError", "NetworkError", "NotFittedError", "PuffinError",
    "ModelConfig", "RNNForecaster", "TradingGRU", "TradingLSTM",
    "ForecastPrice", "GRUForecast", "LSTMForecast",
    "GRUNet", "LSTMNet", "RecurrentNet", "StackedLSTM",
    "plot_comparison", "plot_equity", "plot_forecasts", "plot_trades",
    "BacktestResult", "backtest",
    "ForecastStore",
    "EarlyStopping", "TensorBatches", "resolve_device", "set_seed", "training_loop",
    "FoldSchedule", "WalkForward", "walk_forward",
]
