"""The one registry of puffin_bt's options: name, default, check, help text and where each is used.

Everything that takes options is derived from ``OPTIONS``: ``ModelConfig`` and ``FoldSchedule``
(their fields), the forecast indicators' ``params``, the strategy's params, the keywords of
``backtest()``/``walk_forward()``/``evaluate``/``tune``, the CLI's flags and help, and
``config.json``. Adding an option means adding one ``Option`` here (and the code that uses it).

Groups say which layer reads an option: ``model`` (the network and its training, ``ModelConfig``),
``schedule`` (when folds retrain, ``FoldSchedule``), ``fit`` (how a walk-forward runs: epochs,
device, processes), ``strategy`` (trading rules), ``broker``, ``execution`` (where forecasts are
computed), ``data`` and ``tune``. ``forecast`` is model + schedule + fit: the walk-forward options.

>>> OPTIONS["patience"].default
5
>>> forecast_defaults()["retrain_every"]
21
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from . import processes
from .checks import check_float, check_int, check_known
from .errors import ConfigError
from .features import describe_features, parse_features

__all__ = [
    "BACKTEST_GROUPS", "CELLS", "ESTIMATOR_DEFAULTS", "ESTIMATOR_NAMES", "FitConfig", "IntervalConfig",
    "ModelConfig", "OPTIONS", "OptionSet", "add_flags", "check_sizing", "defaults", "forecast_defaults",
    "keyed_values", "names", "options_doc", "require_return_target", "resolve", "signature_parameters"
]

MAX_SEED = 2**32 - 1  # numpy's limit; torch takes up to 2**64 - 1, and fold k uses seed + k
# Static bounds: generous for any daily or intraday study, finite so that a typo (an extra zero,
# a pasted number) is refused at once instead of exhausting the machine. The memory a model
# needs within these bounds is checked before training (models.require_memory).
MAX_BARS = 10_000_000  # 40 years of one-minute bars; an array of that many closes is 80 MB
MAX_EPOCHS = 100_000
MAX_HIDDEN = 4096  # 64x the chapter's default; one 4096-unit LSTM layer already holds 0.5 GB of weights
MAX_LAYERS = 16  # a 16-layer recurrent stack is far past what helps on returns; 100,000 hung nn.LSTM's constructor
MAX_BATCH_SIZE = 65_536
MAX_HORIZON = 10_000


# --------------------------------------------------------------------------- kinds of value


class Kind:
    """How one option's values are checked (Python values) and parsed (CLI text)."""

    def check(self, name: str, value):
        raise NotImplementedError

    def parse(self, text: str):
        return text

    def describe(self) -> str:
        return "a value"


@dataclass(frozen=True)
class Int(Kind):
    minimum: int = 1
    maximum: int | None = None
    none_words: tuple[str, ...] = ()  # CLI words (and None in Python) meaning "no value"

    def check(self, name: str, value):
        return check_int(name, value, self.minimum, allow_none=bool(self.none_words), maximum=self.maximum)

    def parse(self, text: str):
        if text.lower() in self.none_words:
            return None
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.describe()}") from None

    def describe(self) -> str:
        bound = f"a whole number >= {self.minimum}" + (f" and <= {self.maximum}" if self.maximum is not None else "")
        return bound + (f" or '{self.none_words[0]}'" if self.none_words else "")


@dataclass(frozen=True)
class Float(Kind):
    minimum: float | None = None
    maximum: float | None = None
    min_inclusive: bool = True
    max_inclusive: bool = True
    allow_none: bool = False

    def check(self, name: str, value):
        if value is None and self.allow_none:
            return None
        return check_float(name, value, self.minimum, self.maximum, self.min_inclusive, self.max_inclusive)

    def parse(self, text: str):
        if self.allow_none and text.lower() == "none":
            return None
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        return value

    def describe(self) -> str:
        parts = []
        if self.minimum is not None:
            parts.append(f"{'>=' if self.min_inclusive else '>'} {self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"{'<=' if self.max_inclusive else '<'} {self.maximum:g}")
        return "a number" + (f" {' and '.join(parts)}" if parts else "")


@dataclass(frozen=True)
class Choice(Kind):
    values: tuple[str, ...] = ()
    allow_none: bool = False

    def check(self, name: str, value):
        if value is None and self.allow_none:
            return None
        if not isinstance(value, str) or value.lower() not in self.values:
            raise ConfigError(f"{name}={value!r} is not known; use one of {', '.join(map(repr, self.values))}")
        return value.lower()

    def describe(self) -> str:
        return "one of " + ", ".join(self.values)


@dataclass(frozen=True)
class Flag(Kind):
    def check(self, name: str, value):
        if not isinstance(value, bool):
            raise ConfigError(f"{name}={value!r} must be True or False")
        return value

    def describe(self) -> str:
        return "True or False"


@dataclass(frozen=True)
class Text(Kind):
    allow_none: bool = False

    def check(self, name: str, value):
        if value is None and self.allow_none:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{name}={value!r} must be a non-empty string")
        return value

    def describe(self) -> str:
        return "a string"


def check_cores(name: str, value: int, auto: bool = True) -> int:
    """``value`` (processes or threads) unless it is more than the cores this process may use:
    more buys no speed, and a mistyped 1000000 forked thousands of workers."""
    cpus = processes.available_cpus()
    if value > cpus:
        fix = f"use 'auto' or at most {cpus}" if auto else f"use at most {cpus}"
        raise ConfigError(f"{name}={value} is more than the {cpus} CPU core(s) this process may use; {fix}")
    return value


@dataclass(frozen=True)
class Processes(Kind):
    """``"auto"``, None (no pool / this process) or a whole number from 1 to the available cores."""

    def check(self, name: str, value):
        if value is None or value == "auto":
            return value
        if isinstance(value, str):
            raise ConfigError(f"{name}={value!r} is not valid; use 'auto', None or a whole number >= 1")
        return check_cores(name, check_int(name, value))

    def parse(self, text: str):
        if text.lower() == "auto":
            return "auto"
        if text.lower() == "none":
            return None
        return Int().parse(text)

    def describe(self) -> str:
        return "'auto' or a whole number >= 1"


@dataclass(frozen=True)
class Threads(Int):
    """Torch threads: None (torch's default) or a whole number from 1 to the available cores."""

    def check(self, name: str, value):
        value = super().check(name, value)
        return value if value is None else check_cores(name, value, auto=False)


@dataclass(frozen=True)
class Date(Kind):
    """A date: None, 'YYYY-MM-DD', a date/datetime or a pandas Timestamp (checked, kept as given)."""

    def check(self, name: str, value):
        if value is None:
            return None
        if isinstance(value, (_dt.date, _dt.datetime)):
            return value
        if isinstance(value, str):
            try:
                _dt.date.fromisoformat(value[:10])
                if value[10:]:  # a time may follow: 2010-01-04T09:30 or 2010-01-04 09:30:00
                    _dt.datetime.fromisoformat(value)
            except ValueError:
                raise ConfigError(f"{name}={value!r} is not a date; pass YYYY-MM-DD, e.g. '2010-01-04'") from None
            return value
        if type(value).__name__ == "Timestamp":  # pandas, without importing it here
            return value
        raise ConfigError(f"{name}={value!r} is not a date (a {type(value).__name__}); pass YYYY-MM-DD, e.g. '2010-01-04'")

    def describe(self) -> str:
        return "a date YYYY-MM-DD"


@dataclass(frozen=True)
class Features(Kind):
    """Built-in input features (``puffin_bt.features``): a sequence of specs, or one comma-separated string."""

    def check(self, name: str, value):
        try:
            return parse_features(value)
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from None

    def parse(self, text: str):
        return text

    def describe(self) -> str:
        return "comma-separated features: " + describe_features()


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Option:
    """One option: its name, default, kind (check + CLI parsing), help and the groups that read it."""

    name: str
    default: object
    kind: Kind
    help: str
    groups: tuple[str, ...]
    cli: bool = True  # a CLI flag --name-with-dashes
    # Changes the forecasts: the forecast store's fingerprint and the grouping of tickers walked forward
    # together hash exactly these (``keyed_names``); any other option must leave every forecast as it is.
    forecasts: bool = False
    # Left out of those keys while at its default, so that forecasts stored before the option existed (which are
    # the default's) are still found: an option added later that the existing forecasts do not depend on.
    keyed_at_default: bool = True

    def check(self, value):
        return self.kind.check(self.name, value)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


_ALL: list[Option] = [
    # ---- walk-forward: schedule, model, fit (the order of config.json's "forecast")
    Option("lookback", 20, Int(1, 10_000), "bars (returns) per input window", ("model", "schedule"), forecasts=True),
    Option("retrain_every", 21, Int(1, MAX_BARS), "bars between refits", ("schedule",), forecasts=True),
    Option("train_window", 504, Int(1, MAX_BARS, none_words=("none", "expanding")),
           "bars of history per fold, or 'none' for an expanding window", ("schedule",), forecasts=True),
    Option("min_train", 252, Int(1, MAX_BARS), "bars before the first fold", ("schedule",), forecasts=True),
    Option("epochs", 10, Int(1, MAX_EPOCHS), "epochs of the first fold (and of every cold refit)", ("fit",), forecasts=True),
    Option("refit_epochs", 1, Int(1, MAX_EPOCHS, none_words=("none", "cold")),
           "epochs of later folds, warm-started from the previous fold; 'none' = cold refit with --epochs",
           ("fit",), forecasts=True),
    Option("hidden_dim", 64, Int(1, MAX_HIDDEN), "hidden units per recurrent layer", ("model",), forecasts=True),
    Option("num_layers", 2, Int(1, MAX_LAYERS), "recurrent layers", ("model",), forecasts=True),
    Option("dropout", 0.2, Float(0.0, 1.0, max_inclusive=False), "dropout rate", ("model",), forecasts=True),
    Option("lr", 1e-3, Float(0.0, 10.0, min_inclusive=False), "Adam learning rate", ("model",), forecasts=True),
    Option("batch_size", 32, Int(1, MAX_BATCH_SIZE), "mini-batch size", ("model",), forecasts=True),
    Option("weight_decay", 0.0, Float(0.0, 1.0), "Adam weight decay (L2)", ("model",), forecasts=True),
    Option("noise_level", 0.0, Float(0.0, 10.0),
           "std of Gaussian noise added to the scaled training inputs (augmentation)", ("model",), forecasts=True),
    Option("validation_split", 0.2, Float(0.0, 0.9),
           "share of each fold's samples (its chronological tail) held out for early stopping", ("model", "schedule"), forecasts=True),
    Option("patience", 5, Int(1, MAX_EPOCHS, none_words=("none",)),
           "epochs without a better validation loss before a fold stops (best weights restored); 'none' = off",
           ("model",), forecasts=True),
    Option("horizon", 1, Int(1, MAX_HORIZON), "bars ahead the forecast is about", ("model", "schedule"), forecasts=True),
    Option("target", "return", Choice(("return", "volatility")),
           "what the nets forecast: return, the log return over the next horizon bars (pred_return); volatility, the "
           "realised variance over the next horizon bars (mean squared log return), trained with the QLIKE loss "
           "(pred_vol: its square root, per bar, not annualised; horizon 5 recommended)",
           ("model",), forecasts=True, keyed_at_default=False),
    Option("seed", 0, Int(0, MAX_SEED), "random seed (fold k uses seed + k)", ("model",), forecasts=True),
    Option("features", (), Features(),
           f"input features besides the returns, computed from each ticker's own bars: {describe_features()}",
           ("model",), forecasts=True),
    Option("ensemble", 1, Int(1, 64),
           "models per fold, independently seeded and trained together; pred_return is their mean, pred_std their "
           "spread", ("model",), forecasts=True),
    Option("ensemble_method", "seeds", Choice(("seeds", "folds")),
           "how the ensemble's members are made: seeds: independently seeded nets trained together (ensemble x the "
           "training); folds: the models of the last ENSEMBLE folds, each trained at its own date (one model's "
           "training; fewer members in the first folds)",
           ("model",), forecasts=True),
    Option("interval", None, Float(0.0, 1.0, min_inclusive=False, max_inclusive=False, allow_none=True),
           "coverage of a conformal prediction interval (pred_lo, pred_hi) from each fold's validation residuals, "
           "e.g. 0.8 ('none': off)", ("uncertainty",), forecasts=True),
    Option("interval_method", "split", Choice(("split", "aci", "vol")),
           "split: each fold's residual quantile; aci: adaptive conformal inference, the level moved online by the "
           "errors already realised; vol: residuals over the trailing 60-bar realised volatility, the interval "
           "scaled by it (wider in stormy spells)", ("uncertainty",), forecasts=True),
    Option("aci_gamma", 0.005, Float(0.0, 0.5, min_inclusive=False),
           "adaptive conformal inference's step size", ("uncertainty",), forecasts=True),
    Option("device", "auto", Text(), "auto (GPU if present), cpu, cuda, cuda:N or mps", ("fit",)),
    Option("threads", 1, Threads(1, none_words=("none",)),
           "torch intra-op threads while training/forecasting (1: fastest for these small nets, and robust when "
           "other processes share the cores)", ("fit",)),
    Option("fold_workers", "auto", Processes(),
           "processes training one walk-forward's cold folds ('auto': one per core on Linux CPU)", ("fit",)),
    Option("global_chains", 2, Int(1, 64),
           "scope='global': chains of warm refits trained side by side (one per process, up to fold_workers): "
           "fold k continues from fold k - N's weights; 1: every fold from the one before, on one core",
           ("fit",), forecasts=True),
    # ---- trading rules (ForecastThresholdStrategy)
    Option("entry", 0.005, Float(0.0, 1.0), "go long when pred_return > ENTRY", ("strategy",)),
    Option("exit", 0.005, Float(0.0, 1.0), "exit a long when pred_return < -EXIT", ("strategy",)),
    Option("allow_short", False, Flag(), "also go short when pred_return < -ENTRY", ("strategy",)),
    Option("rule", "threshold", Choice(("threshold", "interval")),
           "threshold: long when pred_return > entry, flat when < -exit; interval: long when pred_lo > entry, flat "
           "when pred_hi < -exit (needs --interval)", ("strategy",)),
    Option("sizing", "equal", Choice(("equal", "volatility", "confidence", "vol_target")),
           "equal: weight x sleeve; volatility: less when the predicted volatility is above its median so far; "
           "confidence: scaled by |pred_return| / interval width (needs --interval); never above equal; vol_target: "
           "min(max_leverage, target_vol / predicted annualised volatility) x sleeve, resized when it moves > 10% "
           "(rank: equal or vol_target)", ("strategy", "rank")),
    Option("target_vol", 0.15, Float(0.0, 10.0, min_inclusive=False),
           "annualised volatility a position aims at with sizing vol_target", ("strategy", "rank")),
    Option("max_leverage", 1.0, Float(0.0, 100.0, min_inclusive=False),
           "largest position with sizing vol_target, in sleeves (1: all of it; above 1 needs the broker's spare "
           "cash, else the order is rejected)", ("strategy", "rank")),
    Option("weight", None, Float(0.0, 1.0, min_inclusive=False, allow_none=True),
           "share of its ticker's sleeve (1/n of the capital plus its own P&L) a position takes (default 1 - reserve)",
           ("strategy",)),
    Option("reserve", 0.02, Float(0.0, 1.0, max_inclusive=False),
           "share of each sleeve (rank: of the portfolio) kept in cash for next-open gaps and commissions",
           ("strategy", "rank")),
    # ---- the cross-sectional ranking strategy (ForecastRankStrategy)
    Option("top_k", 2, Int(1), "names held long: the best by predicted return", ("rank",)),
    Option("bottom_k", 0, Int(0), "names held short: the worst by predicted return", ("rank",)),
    Option("rebalance_every", 5, Int(1), "bars between rebalances", ("rank",)),
    Option("max_drop", None, Int(1, none_words=("none",)),
           "at most this many names replaced per rebalance and side ('none': no cap)", ("rank",)),
    # ---- which strategy and which forecasts
    Option("scope", "per_ticker", Choice(("per_ticker", "global")),
           "per_ticker: one model per ticker; global: one model trained on every ticker's windows, forecasting each",
           ("portfolio", "model_scope")),
    Option("strategy", "threshold", Choice(("threshold", "rank")),
           "threshold: each ticker long/flat on its own forecast; rank: hold the top_k tickers by forecast",
           ("portfolio",)),
    # ---- broker
    Option("cash", 100_000.0, Float(0.0, min_inclusive=False), "starting cash", ("broker",)),
    Option("commission", 0.001, Float(0.0, 0.1), "commission rate per trade", ("broker",)),
    Option("periods_per_year", None, Float(0.0, 10_000_000.0, min_inclusive=False, allow_none=True),
           "bars a year that annualise Sharpe and volatility ('none': from the dates: 252 daily, 78 x 252 5-minute)",
           ("broker", "strategy", "rank")),
    # ---- where forecasts are computed
    Option("workers", "auto", Processes(),
           "processes computing the tickers' forecasts in parallel: 'auto' = one per CPU core up to one per ticker; "
           "1 = one process in all, inside the Backtrader run", ("execution",)),
    Option("executor", None, Choice(("local", "ray", "serial"), allow_none=True),
           "local process pool, Ray (pip install 'puffin_bt[ray]') or serial", ("execution",)),
    Option("address", None, Text(allow_none=True), "Ray cluster address HOST:PORT (default: a local Ray runtime)",
           ("execution",)),
    Option("skip_failed", False, Flag(),
           "report and skip tickers that cannot be loaded or forecast (default with --tickers-file)", ("execution",)),
    # ---- evaluate
    Option("no_baselines", False, Flag(), "skip the ridge and gradient-boosting baselines refitted on every fold",
           ("evaluation",)),
    # ---- data
    Option("start", None, Date(), "first date, YYYY-MM-DD", ("data",)),
    Option("end", None, Date(), "last date, YYYY-MM-DD", ("data",)),
    # ---- hyperparameter search (tune)
    Option("search", "grid", Choice(("grid", "random", "optuna")),
           "grid (the chapter's 162 points, or the first --trials), random, or optuna (TPE)", ("tune",)),
    Option("trials", None, Int(1, 1_000_000, none_words=("none", "all")),
           "trials in the study in all: a resumed or shared study runs only the missing ones (all of the grid; 20 "
           "otherwise)", ("tune",)),
    Option("objective", "sharpe", Choice(("sharpe", "total_return", "direction_accuracy", "mse")),
           "what the search optimises on the tuning period", ("tune",)),
    Option("test_fraction", 0.25, Float(0.0, 1.0, min_inclusive=False, max_inclusive=False),
           "share of the dates held out as the test period", ("tune",)),
    Option("test_start", None, Date(), "first date of the test period (overrides --test-fraction)", ("tune",)),
    Option("parallel_trials", 1, Int(1, 10_000),
           "trials whose forecasts are computed at once, every (trial, ticker) pair in the --workers pool or on Ray",
           ("tune",)),
    Option("search_seed", 0, Int(0, MAX_SEED), "seed of the random and optuna searches", ("tune",)),
    Option("embargo", None, Int(0, none_words=("auto",)),
           "bars left out between the last tuning target and the first test forecast; at least (and by default, "
           "'auto') the longest lookback + horizon searched", ("tune",)),
    Option("storage", None, Text(allow_none=True),
           "database URL of the study (Optuna RDB: sqlite:///FILE, postgresql://...): a killed search resumes, "
           "processes on any machine share it; default: study.db in --out (in Python: in memory)", ("tune",)),
    Option("study_name", "puffin-bt", Text(), "name of the study in --storage (one storage holds many)", ("tune",)),
]

OPTIONS: dict[str, Option] = {option.name: option for option in _ALL}
GROUPS = {"forecast": ("model", "schedule", "fit", "uncertainty")}
# The keyword options of backtest() (and of each tuning trial and the CLI's backtest command).
BACKTEST_GROUPS = ("portfolio", "strategy", "rank", "broker", "execution", "data", "forecast")


def names(*groups: str) -> tuple[str, ...]:
    """Option names read by any of ``groups`` (``forecast`` = model + schedule + fit), in registry order."""
    wanted = {g for group in groups for g in GROUPS.get(group, (group,))}
    return tuple(o.name for o in _ALL if wanted & set(o.groups))


def keyed_names() -> tuple[str, ...]:
    """The options that change forecasts (``Option.forecasts``), in registry order: what the forecast store's
    fingerprint and the grouping of tickers walked forward together hash, besides the model family."""
    return tuple(o.name for o in _ALL if o.forecasts)


def keyed_values(values: Mapping) -> dict:
    """The values of the options that change forecasts (``keyed_names``), from ``values`` (every one of them given),
    less those at their default that are keyed only away from it (``Option.keyed_at_default``)."""
    return {name: values[name] for name in keyed_names()
            if OPTIONS[name].keyed_at_default or values[name] != OPTIONS[name].default}


def defaults(*groups: str) -> dict:
    return {name: OPTIONS[name].default for name in names(*groups)}


def forecast_defaults() -> dict:
    """Every walk-forward option with its default (the indicators' params, ``walk_forward``'s keywords)."""
    return defaults("forecast")


# The sizings each shipped strategy knows (the threshold strategy: all of the ``sizing`` option's choices).
SIZINGS = {"rank": ("equal", "vol_target"), "buy-and-hold": ("equal", "vol_target")}


def check_sizing(strategy: str, sizing: str) -> None:
    """ConfigError unless ``strategy`` (``"rank"`` or ``"buy-and-hold"``) sizes by ``sizing``."""
    if sizing not in SIZINGS[strategy]:
        raise ConfigError(f"sizing={sizing!r} is not one of the {strategy} strategy's; use one of "
                          f"{', '.join(map(repr, SIZINGS[strategy]))}")


def require_return_target(target: str, what: str) -> None:
    """ConfigError when ``what`` (a backtest, a tuning search) would trade a volatility model's forecasts: they are
    variances, and its ``pred_return`` is NaN."""
    if target == "volatility":
        raise ConfigError(f"target='volatility' forecasts a variance, not a return: {what} trades pred_return, which "
                          "a volatility model leaves NaN; use target='return' (the default) and size by the volatility "
                          "forecast with sizing='vol_target', or score a volatility model with evaluate(..., "
                          "target='volatility') (CLI: puffin-bt evaluate --target volatility)")


def resolve(given: Mapping, groups: Iterable[str], where: str, fill: bool = True) -> dict:
    """Check ``given`` against the options of ``groups``: unknown names and bad values raise
    ConfigError naming them; with ``fill`` the missing ones get their defaults.

    >>> resolve({"lookback": 10}, ["forecast"], "walk_forward()")["lookback"]
    10
    """
    valid = names(*groups)
    check_known(given, valid, where)
    out = {name: OPTIONS[name].default for name in valid} if fill else {}
    out.update({name: OPTIONS[name].check(value) for name, value in given.items()})
    return out


def signature_parameters(groups: Iterable[str]) -> list:
    """``inspect.Parameter`` objects (keyword-only, with defaults) for the options of ``groups``:
    functions that take ``**options`` show them in ``help()`` and their signature."""
    import inspect

    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=OPTIONS[name].default)
            for name in names(*groups)]


def options_doc(*groups: str) -> str:
    """A docstring table of the options of ``groups``: name, default, help."""
    rows = [f"    ``{name}`` (default ``{OPTIONS[name].default!r}``): {OPTIONS[name].help}" for name in names(*groups)]
    return "\n".join(rows)


def add_flags(group, option_names: Iterable[str]) -> None:
    """Add one CLI flag per option (``--name-with-dashes``, with its help and default) to an argparse
    parser or argument group. Flags default to SUPPRESS: only flags the user gave override a
    --config file or the library defaults."""
    for name in option_names:
        option = OPTIONS[name]
        if not option.cli:
            continue
        default = option.default
        shown = "none" if default == () else default
        if default is None and isinstance(option.kind, Int):
            shown = option.kind.none_words[0] if option.kind.none_words else "off"
        text = f"{option.help} (default {shown})".replace("%", "%%")
        if isinstance(option.kind, Flag):
            group.add_argument(option.flag, action="store_true", default=argparse.SUPPRESS, help=text)
        elif isinstance(option.kind, Choice):
            group.add_argument(option.flag, choices=option.kind.values, default=argparse.SUPPRESS, help=text)
        elif isinstance(default, tuple):  # a list option: a repeated flag adds to it (argparse kept only the last)
            group.add_argument(option.flag, type=_checked_parser(option), metavar=name.upper(),
                               default=argparse.SUPPRESS, help=text, action=_Extend)
        else:
            group.add_argument(option.flag, type=_checked_parser(option), metavar=name.upper(),
                               default=argparse.SUPPRESS, help=text)


class _Extend(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, (*getattr(namespace, self.dest, ()), *values))


def _checked_parser(option: Option) -> Callable[[str], object]:
    def parse(text: str):
        value = option.kind.parse(text)
        try:
            return option.check(value)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = option.name  # argparse names the type in its messages
    return parse


# --------------------------------------------------------------------------- frozen option sets


class OptionSet:
    """Frozen, checked values of a group of options; ``ModelConfig`` and ``FoldSchedule`` build on it.

    Fields, defaults and checks come from ``OPTIONS``; subclasses add cross-field checks in
    ``_check`` and behaviour.
    """

    NAMES: ClassVar[tuple[str, ...]] = ()  # also the order of positional arguments

    def __init__(self, *args, **values) -> None:
        if len(args) > len(self.NAMES):
            raise ConfigError(f"{type(self).__name__} takes at most {len(self.NAMES)} positional values "
                              f"({', '.join(self.NAMES)}); got {len(args)}")
        for name, value in zip(self.NAMES, args):
            if name in values:
                raise ConfigError(f"{type(self).__name__} got {name} twice (by position and by name)")
            values[name] = value
        check_known(values, self.NAMES, type(self).__name__)
        for name in self.NAMES:
            value = values[name] if name in values else self._default(name)
            object.__setattr__(self, name, self._check_one(name, value))
        self._check()

    def _default(self, name: str):
        return OPTIONS[name].default

    def _check_one(self, name: str, value):
        return OPTIONS[name].check(value)

    def _check(self) -> None:
        """Checks across fields (none by default)."""

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is frozen; build a new one ({name}=...)")

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.NAMES}

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.to_dict() == self.to_dict()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(self.to_dict().items())))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"

    def __reduce__(self):  # pickled for worker processes: rebuilt (and re-checked) from its values
        return _rebuild, (type(self), self.to_dict())


def _rebuild(cls, values: dict):
    return cls(**values)


DEFAULT_CELL = "lstm"


def _families() -> tuple[str, ...]:
    """The model families: one module per family in ``puffin_bt/models/`` (``_``-prefixed modules are helpers),
    the default first. Read from the folder, not imported: the families build on layers above this one."""
    folder = Path(__file__).with_name("models")
    found = sorted(m.name for m in pkgutil.iter_modules([str(folder)]) if not m.name.startswith("_"))
    return tuple(sorted(found, key=lambda name: name != DEFAULT_CELL))


CELLS = _families()


class ModelConfig(OptionSet):
    """Everything that decides what network is trained and how (not the data, not the schedule).

    The walk-forward runner, the indicators and the forecasters share it, and its ``to_dict``
    is part of the forecast store's fingerprint.

    >>> ModelConfig(cell="GRU", hidden_dim=8).cell
    'gru'
    """

    NAMES = ("cell", "hidden_dim", "num_layers", "dropout", "lookback", "horizon", "lr", "batch_size",
             "weight_decay", "noise_level", "validation_split", "patience", "seed", "features", "ensemble",
             "ensemble_method", "target")

    def _default(self, name: str):
        return DEFAULT_CELL if name == "cell" else OPTIONS[name].default

    def _check_one(self, name: str, value):
        if name == "cell":
            if not isinstance(value, str) or value.lower() not in CELLS:
                raise ConfigError(f"cell={value!r} is not a known model family; use one of {list(CELLS)}")
            return value.lower()
        if name == "features":  # the names of every input besides the returns: built-in specs, lines, columns
            names = (value,) if isinstance(value, str) else tuple(value)
            if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
                raise ConfigError(f"features={value!r} must be distinct, non-empty names")
            return names
        return OPTIONS[name].check(value)

    def _check(self) -> None:
        if self.ensemble_method != "seeds" and self.ensemble == 1:
            raise ConfigError(f"ensemble_method={self.ensemble_method!r} makes an ensemble's members, but ensemble=1 "
                              "is one model; set ensemble >= 2, e.g. ensemble=8 (or leave ensemble_method at 'seeds')")

    @property
    def n_inputs(self) -> int:
        """Values per time step of an input window: the return (a volatility target: and its magnitude), then each
        feature."""
        return 1 + (self.target == "volatility") + len(self.features)

    @property
    def trained_members(self) -> int:
        """Networks each fold trains: the ensemble's for ``"seeds"``; one for ``"folds"``, whose other members are
        earlier folds' models."""
        return self.ensemble if self.ensemble_method == "seeds" else 1




class FitConfig(OptionSet):
    """How a walk-forward trains (the ``fit`` options: epochs, refit_epochs, device, threads, fold_workers);
    ``WalkForward`` and ``GlobalWalkForward`` take it as it is.

    >>> FitConfig(epochs=3).refit_epochs
    1
    """

    NAMES = names("fit")


class IntervalConfig(OptionSet):
    """The conformal prediction interval (the ``uncertainty`` options); ``interval=None``: off."""

    NAMES = names("uncertainty")


# The estimators (TradingLSTM, ...) take the model options plus these; the chapter fits
# one model for 50 epochs where a walk-forward's first fold trains 10.
ESTIMATOR_NAMES = tuple(n for n in ModelConfig.NAMES
                        if n not in ("cell", "features", "ensemble", "ensemble_method", "target")) + ("epochs", "device")
ESTIMATOR_DEFAULTS = {**{name: OPTIONS[name].default for name in ESTIMATOR_NAMES}, "epochs": 50}
