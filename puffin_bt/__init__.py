"""puffin_bt: LSTM/GRU walk-forward forecast indicators and a threshold strategy for Backtrader.

The names that need torch (the chapter's estimators, the networks, the training loop) are imported on first use,
so a re-run whose forecasts all come from the store never imports torch (``_lazy``).
"""

import importlib

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
from .models import FAMILIES
from .options import OPTIONS, ModelConfig
from .plotting import plot_comparison, plot_equity, plot_forecasts, plot_trades, write_trades_html
from .schedule import FoldSchedule
from .store import ForecastStore
from .tickers import precompute_forecasts
from .walkforward import WalkForward, walk_forward

# name -> the module that defines it, imported when the name is first read (it imports torch)
_NEEDS_TORCH = {
    **dict.fromkeys(("ESTIMATORS", "RNNForecaster", *(f.estimator_name for f in FAMILIES.values())), "forecaster"),
    **dict.fromkeys(("GRUNet", "LSTMNet", "RecurrentNet", "StackedLSTM"), "nets"),
    **dict.fromkeys(("EarlyStopping", "TensorBatches", "resolve_device", "set_seed", "training_loop"), "training"),
}


def __getattr__(name: str):
    if name in _NEEDS_TORCH:
        value = getattr(importlib.import_module(f".{_NEEDS_TORCH[name]}", __name__), name)
        globals()[name] = value  # read once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NEEDS_TORCH))


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
# Every model family's estimator (on first use, above) and indicator: TradingTCN, TCNForecast, and any family
# added to models/ later.
globals().update({cls.__name__: cls for cls in INDICATORS.values()})
__all__ += sorted(({f.estimator_name for f in FAMILIES.values()} | {cls.__name__ for cls in INDICATORS.values()})
                  - set(__all__))

_startup.release()
