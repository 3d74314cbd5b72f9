"""Price data: the bundled sample, user CSV files and yfinance downloads, all through one validator.

``sample`` (``load_sample``), ``csvfiles`` (``load_csv``), ``yahoo`` (``load_prices`` with its disk
cache), ``validate`` (``validate_ohlcv``) and ``resolve`` (what a run's ``data=`` argument means).
"""

from ..files import default_cache_dir
from .csvfiles import load_csv, load_csv_symbols
from .resolve import resolve_data
from .sample import SAMPLE_TICKERS, load_sample
from .validate import validate_ohlcv
from .yahoo import check_ticker, load_prices

__all__ = [
    "SAMPLE_TICKERS",
    "check_ticker",
    "default_cache_dir",
    "load_csv",
    "load_csv_symbols",
    "load_prices",
    "load_sample",
    "resolve_data",
    "validate_ohlcv",
]
