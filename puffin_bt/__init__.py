"""puffin_bt: LSTM/GRU walk-forward forecast indicators and a threshold strategy for Backtrader."""

from . import _startup  # first: under the CLI, a Ctrl-C while the libraries below load is one line, exit 130
from ._version import __version__
from .adapters import INDICATORS, ForecastIndicator, ForecastPrice, FrameData, GRUForecast, LSTMForecast, QueueData
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
    StudyError,
)
from .evaluation import EvaluationResult, evaluate, evaluate_forecasts, walk_forward_forecasts
from .forecaster import ESTIMATORS, RNNForecaster, TradingGRU, TradingLSTM
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
    "StudyError",
    "OPTIONS", "ModelConfig", "RNNForecaster", "TradingGRU", "TradingLSTM",
    "ForecastIndicator", "ForecastPrice", "FrameData", "GRUForecast", "LSTMForecast",
    "GRUNet", "LSTMNet", "RecurrentNet", "StackedLSTM",
    "plot_comparison", "plot_equity", "plot_forecasts", "plot_trades", "write_trades_html",
    "BacktestResult", "backtest",
    "EvaluationResult", "evaluate", "evaluate_forecasts", "walk_forward_forecasts",
    "ForecastStore", "precompute_forecasts",
    "EarlyStopping", "TensorBatches", "resolve_device", "set_seed", "training_loop",
    "FoldSchedule", "WalkForward", "walk_forward", "QueueData",
]
# Every model family's estimator and indicator (TradingTCN, TCNForecast, and any family added to models/ later).
_FAMILY_CLASSES = {cls.__name__: cls for cls in (*ESTIMATORS.values(), *INDICATORS.values())}
globals().update(_FAMILY_CLASSES)
__all__ += sorted(set(_FAMILY_CLASSES) - set(__all__))

_startup.release()
