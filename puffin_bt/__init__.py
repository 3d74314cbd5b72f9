"""puffin_bt: LSTM/GRU walk-forward forecast indicators and a threshold strategy for Backtrader."""

from ._version import __version__
from .adapters import ForecastIndicator, ForecastPrice, FrameData, GRUForecast, LSTMForecast
from .backtesting import BacktestResult, backtest
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
from .evaluation import EvaluationResult, evaluate, evaluate_forecasts, walk_forward_forecasts
from .forecaster import RNNForecaster, TradingGRU, TradingLSTM
from .nets import GRUNet, LSTMNet, RecurrentNet, StackedLSTM
from .options import OPTIONS, ModelConfig
from .plotting import plot_comparison, plot_equity, plot_forecasts, plot_trades, write_trades_html
from .schedule import FoldSchedule
from .store import ForecastStore
from .tickers import precompute_forecasts
from .training import EarlyStopping, TensorBatches, resolve_device, set_seed, training_loop
from .walkforward import WalkForward, walk_forward

__all__ = [
    "__version__",
    "load_csv", "load_prices", "load_sample", "validate_ohlcv",
    "CheckpointError", "ConfigError", "DataError", "DeviceError", "NetworkError", "NotFittedError", "PuffinError",
    "OPTIONS", "ModelConfig", "RNNForecaster", "TradingGRU", "TradingLSTM",
    "ForecastIndicator", "ForecastPrice", "FrameData", "GRUForecast", "LSTMForecast",
    "GRUNet", "LSTMNet", "RecurrentNet", "StackedLSTM",
    "plot_comparison", "plot_equity", "plot_forecasts", "plot_trades", "write_trades_html",
    "BacktestResult", "backtest",
    "EvaluationResult", "evaluate", "evaluate_forecasts", "walk_forward_forecasts",
    "ForecastStore", "precompute_forecasts",
    "EarlyStopping", "TensorBatches", "resolve_device", "set_seed", "training_loop",
    "FoldSchedule", "WalkForward", "walk_forward",
]
