"""puffin_bt: LSTM/GRU walk-forward forecast indicators and a threshold strategy for Backtrader."""

from .errors import CheckpointError, ConfigError, DataError, DeviceError, NetworkError, NotFittedError, PuffinError
from .forecaster import ModelConfig, RNNForecaster, TradingGRU, TradingLSTM
from .nets import GRUNet, LSTMNet, RecurrentNet, StackedLSTM
from .training import EarlyStopping, TensorBatches, resolve_device, set_seed, training_loop

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "ConfigError", "DataError", "DeviceError", "NetworkError", "NotFittedError", "PuffinError",
    "ModelConfig", "RNNForecaster", "TradingGRU", "TradingLSTM",
    "GRUNet", "LSTMNet", "RecurrentNet", "StackedLSTM",
    "EarlyStopping", "TensorBatches", "resolve_device", "set_seed", "training_loop",
]
