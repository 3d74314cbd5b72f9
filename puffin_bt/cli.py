"""The ``puffin-bt`` command: walk-forward model backtests (LSTM, GRU, TCN: ``puffin_bt.models``) from the terminal.

Exit codes: 0 success, 2 bad input or configuration (one line on stderr),
1 anything unexpected (traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import errno
import hashlib
import json
import logging
import os
import stat
import sys
import tempfile
from collections import Counter
from pathlib import Path

from ._version import __version__
from .errors import ConfigError, DataError, PuffinError
from .options import BACKTEST_GROUPS, CELLS, OPTIONS, add_flags, names

__all__ = ["main"]

EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (no usage dump) and exit code 2."""

    def error(self, message: str):  # noqa: D102 - argparse API
        raise _UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data (default: the bundled AAPL, GOOG, IBM, MSFT sample, offline)")
    src = data.add_mutually_exclusive_group()
    src.add_argument("--tickers", nargs="+", action="extend", metavar="TICKER", help="download with yfinance (cached on disk)")
    src.add_argument("--csv", nargs="+", action="extend", metavar="[NAME=]FILE", help="one OHLCV CSV per ticker")
    src.add_argument("--sample", nargs="+", action="extend", metavar="TICKER", help="a subset of the bundled tickers")
    src.add_argument("--tickers-file", metavar="FILE",
                     help="a universe: one ticker per line (# comments); failed tickers are reported and skipped")
    data.add_argument("--cache-dir", help="download cache and forecast store (default: $PUFFIN_BT_CACHE or "
                                          "the user cache directory)")
    add_flags(data, names("data"))


def _model_names(text, where: str = "--model") -> tuple[str, ...]:
    """The model families a --model value (or a config's 'model') names: one, a comma-separated list, 'all'."""
    from .models import model_list

    try:
        return model_list(text)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _model_words(text: str) -> str:
    """argparse's check of --model (the families are read when the run starts)."""
    from .models import model_list

    try:
        model_list(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip().lower()


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=_model_words, default=argparse.SUPPRESS, metavar="MODEL",
                        help=f"model family: {', '.join(CELLS)}; several comma-separated (or 'all'; 'both': LSTM and "
                             f"GRU) run on the same data and schedule and are compared (default {CELLS[0]})")
    add_flags(parser.add_argument_group("model and walk-forward schedule", argument_default=argparse.SUPPRESS),
              names("forecast"))


def _add_scale_args(parser: argparse.ArgumentParser) -> None:
    add_flags(parser.add_argument_group("scale-out (forecasts computed in parallel, then one Backtrader run)",
                                        argument_default=argparse.SUPPRESS), names("execution"))


def _add_scope_arg(parser: argparse.ArgumentParser) -> None:
    add_flags(parser.add_argument_group("model scope", argument_default=argparse.SUPPRESS), names("model_scope"))


def _add_trading_args(parser: argparse.ArgumentParser,
                      groups: tuple[str, ...] = ("portfolio", "strategy", "rank", "broker")) -> None:
    add_flags(parser.add_argument_group("trading", argument_default=argparse.SUPPRESS), names(*groups))


def _add_output_args(parser: argparse.ArgumentParser) -> None:
    out = parser.add_argument_group("output")
    out.add_argument("--out", help="output folder, new or empty (default: a new ./puffin-bt-out/<date-time>)")
    out.add_argument("--force", action="store_true", help="write into a non-empty --out (files of the same "
                                                          "names are replaced)")
    out.add_argument("--no-plot", action="store_true", help="skip the charts (the PNGs and the interactive trades.html)")
    out.add_argument("--report", choices=("html",),
                     help="also write report.html, a quantstats tearsheet vs buy-and-hold (pip install "
                          "'puffin_bt[report]')")
    out.add_argument("--config", help="JSON config written by a previous run (config.json); flags override it")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    out.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="puffin-bt",
        description="Walk-forward LSTM/GRU forecasts inside Backtrader, traded with +-thresholds.",
        epilog="Example: puffin-bt backtest            (bundled AAPL/GOOG/IBM/MSFT data, offline)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    bt_ = sub.add_parser("backtest", help="backtest the forecast threshold strategy on a portfolio",
                         description="Backtest ForecastThresholdStrategy with walk-forward LSTM/GRU forecasts. "
                                     "Writes trade charts (PNG, and trades.html to explore in a browser), equity vs "
                                     "buy-and-hold, trades.csv, open_positions.csv, forecasts.csv, folds.csv, "
                                     "metrics.json and config.json to --out.")
    _add_data_args(bt_)
    _add_model_args(bt_)
    _add_scale_args(bt_)
    _add_trading_args(bt_)
    _add_output_args(bt_)

    ev = sub.add_parser("evaluate", help="walk-forward forecast quality against naive baselines",
                        description="Causal walk-forward evaluation per ticker and pooled: MSE, MAE, R^2 and "
                                    "direction accuracy next to the zero-return, always-up and last-return "
                                    "forecasts and ridge and gradient-boosting baselines fitted on the same folds "
                                    "(scikit-learn); Diebold-Mariano tests, direction tested against the model's "
                                    "own up/down mix (drift is not skill), IC over dates with 3+ tickers, a verdict "
                                    "line each; writes evaluation.csv, forecasts.csv and predicted-vs-actual plots "
                                    "to --out. --target volatility scores a volatility model instead: QLIKE and the "
                                    "MSE of variance against HAR-RV, EWMA, the trailing 20-bar estimate and "
                                    "GARCH(1,1) refitted on the same folds, and a volatility chart per ticker.")
    _add_data_args(ev)
    _add_model_args(ev)
    _add_scope_arg(ev)
    add_flags(ev.add_argument_group("baselines", argument_default=argparse.SUPPRESS), names("evaluation"))
    _add_scale_args(ev)
    _add_output_args(ev)

    tu = sub.add_parser("tune", help="hyperparameter search on a tuning period, then one run on the test period",
                        description="Search hidden_dim, num_layers, dropout, lr and lookback (or your --space) by "
                                    "grid, random or Optuna TPE. Trials are scored on the tuning period only; the "
                                    "best configuration then runs once on the test period (the last "
                                    "--test-fraction of the dates). Writes trials.csv, best_config.json (replay "
                                    "with backtest --config) and the test run to --out.")
    _add_data_args(tu)
    _add_model_args(tu)
    search = tu.add_argument_group("search", argument_default=argparse.SUPPRESS)
    search.add_argument("--space", help='JSON of option -> values, e.g. \'{"hidden_dim": [16, 32], "lookback": [10, 20]}\'')
    add_flags(search, names("tune"))
    _add_scale_args(tu)
    _add_trading_args(tu)
    _add_output_args(tu)

    fc = sub.add_parser("forecast", help="the next-bar forecast and signal of a saved model (paper trading)",
                        description="The daily job of a paper trader: load a model file (indicator.save_model or "
                                    "RNNForecaster.save), forecast the return after the last bar of the data, print "
                                    "it with its signal (buy above --entry, sell below -exit, else hold) and, with "
                                    "--out, append it to a CSV (a rerun on the same last bar replaces its row).")
    fc.add_argument("--model-file", required=True, metavar="FILE", help="a model file written by save_model/save")
    fc.add_argument("--model", choices=CELLS, help="the model family the file must hold (default: any)")
    source = fc.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", metavar="FILE", help="an OHLCV CSV of the ticker, oldest bar first")
    source.add_argument("--sample", metavar="TICKER", help="a bundled ticker (AAPL, GOOG, IBM, MSFT)")
    add_flags(fc.add_argument_group("signal", argument_default=argparse.SUPPRESS), ("entry", "exit"))
    fc.add_argument("--out", metavar="CSV", help="append the forecast to this CSV file (created if missing)")
    fc.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    return parser


MAX_INPUT_BYTES = 10 * 2**20  # a config.json or tickers file is a few KB; anything this big is the wrong file
# config.json keys besides the registry's options: what backtest and tune record (run.py ``_config``, the
# CLI's ``data_source``/``data``, tune's ``tuning``). Any other key is refused, naming it.
CONFIG_KEYS = {"model", "tickers", "runonce", "skipped", "store", "forecast", "data_source", "data", "tuning"}


def _read_text(path: str, flag: str, what: str) -> str:
    """A small UTF-8 text file (a byte-order mark is dropped), or a ConfigError naming ``flag`` and the fix."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block, a device such as /dev/zero never end
            raise ConfigError(f"{flag} {path!r} is not a regular file; pass {what}")
        size = info.st_size
        if size > MAX_INPUT_BYTES:
            raise ConfigError(f"{flag} {path!r} is {size / 2**20:.1f} MB, too big for {what}; pass {what}")
        with open(path, "rb") as fh:
            raw = fh.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{flag} {path!r} does not exist; pass {what}") from None
    except OSError as exc:
        raise ConfigError(f"{flag} {path!r} cannot be read ({exc.strerror or type(exc).__name__}); pass {what}") \
            from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{flag} {path!r} is not a UTF-8 text file (binary?); pass {what}") from None
    if "\x00" in text:
        raise ConfigError(f"{flag} {path!r} holds NUL bytes, so it is not a text file; pass {what}")
    return text


def _load_config(path: str) -> dict:
    what = "the config.json of an earlier run"
    text = _read_text(path, "--config", what)
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--config {path!r} is not valid JSON ({exc}); pass {what}") from None
    except RecursionError:
        raise ConfigError(f"--config {path!r} is nested too deeply to be a config.json; pass {what}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"--config {path!r} must hold a JSON object, not a {type(cfg).__name__}; pass {what}")
    _check_config(cfg, path)
    return cfg


def _check_config(cfg: dict, path: str) -> None:
    """Every key known and every value of the right kind, named in the error (a replay must not
    quietly run something else)."""
    where = f"--config {path!r}"
    unknown = [k for k in cfg if k not in OPTIONS and k not in CONFIG_KEYS]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; remove it (keys: options such as 'entry', and "
                          f"{', '.join(sorted(CONFIG_KEYS))})")
    forecast = cfg.get("forecast")
    if forecast is not None and not isinstance(forecast, dict):
        raise ConfigError(f"{where}: 'forecast' must be an object of walk-forward options, not {forecast!r}")
    for key in (forecast or {}):
        if key not in names("forecast"):
            raise ConfigError(f"{where}: 'forecast' has unknown key {key!r}; valid: {', '.join(names('forecast'))}")
    for key, value in [*((k, v) for k, v in cfg.items() if k in OPTIONS), *(forecast or {}).items()]:
        try:
            OPTIONS[key].check(value)
        except ConfigError as exc:
            raise ConfigError(f"{where}: key {key!r}: {exc}") from None
    if cfg.get("model") is not None:
        _model_names(cfg["model"], f"{where}: 'model'")
    tickers = cfg.get("tickers")
    if tickers is not None and not (isinstance(tickers, list) and all(isinstance(t, str) for t in tickers)):
        raise ConfigError(f"{where}: 'tickers' must be a list of ticker strings, not {tickers!r}")
    source = cfg.get("data_source")
    if source is not None and source not in ("sample", "yfinance", "csv"):
        raise ConfigError(f"{where}: 'data_source' is {source!r}; use 'sample', 'yfinance' or 'csv'")
    data = cfg.get("data")
    if data is not None and not (isinstance(data, dict) and data.get("source") in DATA_RECORDS):
        raise ConfigError(f"{where}: 'data' must be an object with 'source' one of {', '.join(DATA_RECORDS)}; "
                          f"got {data!r}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(2**20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_record(path: str, required: bool = True) -> dict:
    """Where an input file is and a hash of its content: a replay refuses a file that changed. A file that
    cannot be read (``required=False``: a --csv file that --skip-failed will skip) has sha256 null."""
    try:
        digest = _sha256(Path(path).expanduser())
    except OSError:
        if required:
            raise
        digest = None
    return {"path": str(Path(path).expanduser().absolute()), "sha256": digest}


def _check_unchanged(record, where: str, flag: str) -> str:
    if not (isinstance(record, dict) and isinstance(record.get("path"), str)
            and isinstance(record.get("sha256"), (str, type(None)))):
        raise ConfigError(f"{where}: a data file record must have 'path' and 'sha256'; got {record!r}")
    path = record["path"]
    if record["sha256"] is None:  # the run could not read it either (and skipped it): so does the replay
        return path
    if not Path(path).exists():
        raise ConfigError(f"{where}: the run read {path!r}, which is gone; restore it to replay the run, or pass "
                          f"the data again ({flag} ...)")
    if not Path(path).is_file():  # a device such as /dev/zero never ends, a FIFO blocks: neither is a run's data
        raise ConfigError(f"{where}: names {path!r} as the run's data, which is not a regular file; pass the data "
                          f"again ({flag} ...)")
    now = _sha256(Path(path))
    if now != record["sha256"]:
        raise ConfigError(f"{where}: {path!r} changed since the run (sha256 {record['sha256'][:12]}... then, "
                          f"{now[:12]}... now); restore it to replay the run, or pass it again ({flag} ...) to run "
                          "on the new content")
    return path


def _csv_spec(spec: str) -> tuple[str, str]:
    """``NAME=FILE`` or ``FILE`` -> (name, path). A ``=`` inside a path is part of the path: the
    name is the text before the first ``=`` only when it holds no path separator, and when
    the whole spec is an existing file while the part after ``=`` is not, the spec is the file."""
    name, sep, rest = spec.partition("=")
    if sep and name.strip() and not any(c in name for c in "/\\") and \
            (Path(rest).expanduser().exists() or not Path(spec).expanduser().exists()):
        return name.strip(), rest
    path = rest if sep and not name.strip() else spec
    base = Path(path).name
    return base.split(".")[0] or base, path


def _csv_inputs(specs: list[str]) -> tuple[dict, dict]:
    """``{name: path}`` of the ``--csv`` files (read, and with --skip-failed skipped when broken, by
    resolve_data) and the record config.json keeps of them (paths and content hashes)."""
    paths, files = {}, []
    for spec in specs:
        name, path = _csv_spec(spec)
        if name in paths:
            raise ConfigError(f"--csv: two files are named {name!r} ({paths[name]!r} and {path!r}), so one would "
                              f"replace the other; name them apart, e.g. --csv {name}_1={paths[name]} {name}_2={path}")
        paths[name] = path
        files.append({"name": name, **_file_record(path, required=False)})
    return paths, {"source": "csv", "files": files}


# What config.json's "data" records, by source; a replay reads the same data (files: unchanged).
DATA_RECORDS = ("sample", "yfinance", "tickers_file", "csv")


def _replay_data(cfg: dict, path: str):
    """The data a config.json's run read, or None (the bundled sample)."""
    from .data import load_sample

    where = f"--config {path!r}"
    record = cfg.get("data")
    if record is None:  # older config.json files: the source and its tickers
        source, tickers = cfg.get("data_source"), cfg.get("tickers")
        if source == "csv":
            raise ConfigError(f"{where} comes from a run on CSV files it does not record (an older puffin_bt); "
                              "pass them again with --csv")
        if tickers and source == "yfinance":
            return tickers, {"source": "yfinance", "tickers": tickers}
        if tickers and source == "sample":
            return load_sample(tickers), {"source": "sample", "tickers": tickers}
        return None, {"source": "sample", "tickers": None}
    source = record["source"]
    if source == "csv":
        files = record.get("files")
        if not isinstance(files, list) or not files:
            raise ConfigError(f"{where}: 'data' of source 'csv' must list its 'files'; got {files!r}")
        frames = {}
        for entry in files:
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{where}: every CSV file record needs a 'name'; got {entry!r}")
            frames[name] = _check_unchanged(entry, where, "--csv")
        return frames, record
    if source == "tickers_file":
        return _read_tickers_file(_check_unchanged(record, where, "--tickers-file")), record
    tickers = record.get("tickers")
    if tickers is not None and not (isinstance(tickers, list) and tickers and all(isinstance(t, str) for t in tickers)):
        raise ConfigError(f"{where}: 'data' 'tickers' must be a list of ticker strings; got {tickers!r}")
    if source == "yfinance":
        if not tickers:
            raise ConfigError(f"{where}: 'data' of source 'yfinance' must list its 'tickers'")
        return tickers, record
    return (None if tickers is None else load_sample(tickers)), record


def _resolve_inputs(args, groups: tuple[str, ...]) -> tuple:
    """(data for resolve_data, model, options, data record) from the flags the user gave over an optional
    --config: every registry option of ``groups`` the config records, and its data (files checked
    unchanged), are replayed unless a flag overrides them. The record goes to config.json."""
    from .data import load_sample

    cfg = _load_config(args.config) if args.config else {}
    recorded = {**{k: v for k, v in cfg.items() if k in OPTIONS}, **dict(cfg.get("forecast") or {})}
    options = {k: v for k, v in recorded.items() if k in names(*groups)}
    options.update({name: getattr(args, name) for name in names(*groups) if hasattr(args, name)})
    if options.get("interval") is None and options.get("interval_method", "split") != "split":
        raise ConfigError(f"--interval-method {options['interval_method']} adapts a prediction interval, but no "
                          "--interval is set; add one, e.g. --interval 0.8 (or drop --interval-method)")
    model = getattr(args, "model", None) or cfg.get("model") or CELLS[0]
    if args.tickers:
        data, source = args.tickers, {"source": "yfinance", "tickers": list(args.tickers)}
    elif args.tickers_file:
        data = _read_tickers_file(args.tickers_file)
        source = {"source": "tickers_file", **_file_record(args.tickers_file)}
    elif args.csv:
        data, source = _csv_inputs(args.csv)
    elif args.sample:
        data, source = load_sample(args.sample), {"source": "sample", "tickers": list(args.sample)}
    elif args.config:
        data, source = _replay_data(cfg, args.config)
    else:
        data, source = None, {"source": "sample", "tickers": None}
    if source["source"] == "tickers_file" and "skip_failed" in names(*groups):
        options["skip_failed"] = True  # a universe file: report and skip the tickers that fail
    return data, model, options, source


def _read_tickers_file(path: str) -> list[str]:
    text = _read_text(path, "--tickers-file", "a text file with one ticker per line")
    tickers = [t for t in (line.split("#", 1)[0].strip() for line in text.splitlines()) if t]
    if not tickers:
        raise ConfigError(f"--tickers-file {path!r} lists no tickers; put one ticker per line")
    counts = Counter(tickers)
    repeated = [f"{t} x{n}" for t, n in counts.items() if n > 1]
    if repeated:
        more = f" and {len(repeated) - 10} more" if len(repeated) > 10 else ""
        print(f"puffin-bt: note: --tickers-file {path!r} lists {len(repeated)} ticker(s) more than once "
              f"({', '.join(repeated[:10])}{more}); each runs once", file=sys.stderr)
    return list(counts)


def _data_source(source: dict) -> str:
    """config.json's ``data_source``, as older versions wrote it: sample, yfinance or csv."""
    return {"tickers_file": "yfinance"}.get(source["source"], source["source"])


def _record_source(config: dict, source: dict) -> None:
    config["data_source"] = _data_source(source)
    config["data"] = source


def _writable(folder: Path, flag: str) -> None:
    """``folder`` exists (created if needed) and a file can be written in it, or a ConfigError now,
    before any training."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{flag} {str(folder)!r} is a file; pass a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".puffin-bt-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"{flag} {str(folder)!r} is not writable ({exc.strerror or type(exc).__name__}); pass a "
                          "folder you can write to") from None


def _out_dir(args) -> Path:
    """The run's output folder, checked (and created) before anything runs. Without --out: a new
    folder ./puffin-bt-out/<date-time with milliseconds>, made exclusively (a suffix if taken),
    so two runs never share one. --out must be empty or new unless --force."""
    if args.out:
        out = Path(args.out).expanduser()
        if not out.exists():
            args.created_out = out
        if out.is_dir() and not getattr(args, "force", False):
            entries = sorted(p.name for p in out.iterdir())
            if entries:
                raise ConfigError(f"--out {str(out)!r} is not empty (it holds {len(entries)} entries, e.g. "
                                  f"{entries[0]!r}); pass a new or empty folder, or add --force to write over "
                                  "files of the same names")
        _writable(out, "--out")
        args.out_before = {p for p in out.rglob("*")} if out.is_dir() else set()
        args.out_path = out
        return out
    root = Path("puffin-bt-out")
    _writable(root, "the default output folder")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
    for attempt in range(1000):
        out = root / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            out.mkdir()
        except FileExistsError:
            continue
        args.created_out = out
        args.out_before, args.out_path = set(), out
        return out
    raise ConfigError(f"could not create a new output folder under {str(root)!r}; pass --out")


# A full disk or quota (EFBIG: a file-size limit). The forecast store and price cache carry on uncached; results
# cannot, and must not be left half written where they would look like a run's results.
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _remove_partial_results(args) -> None:
    """Remove what this run wrote into its output folder (files the folder held before, under --force, stay)."""
    out = getattr(args, "out_path", None)
    if out is None or not out.is_dir():
        return
    before = getattr(args, "out_before", set())
    for path in sorted(set(out.rglob("*")) - before, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()


def _disk_full_line(args, exc: OSError) -> str:
    where = f"writing {exc.filename!r}" if exc.filename else "writing"
    out = getattr(args, "out_path", None)
    fix = (f"free space there or pass --out on another disk; this run's partial results in {str(out)!r} were removed"
           if out is not None else "free some space and run again")
    return f"puffin-bt: error: {exc.strerror or 'no space left on device'} ({where}); {fix}"


def _remove_empty_out(args) -> None:
    """A run that failed leaves no empty output folder of its own making behind."""
    out = getattr(args, "created_out", None)
    if out is not None:
        with contextlib.suppress(OSError):
            out.rmdir()  # only if still empty


def _check_cache_dir(args) -> None:
    from .files import default_cache_dir

    _writable(Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir(),
              "--cache-dir" if args.cache_dir else "the cache folder ($PUFFIN_BT_CACHE or the user cache)")


def _prepare_run(args, groups: tuple[str, ...]) -> tuple:
    """Check where the run writes before reading the data or training, then resolve its inputs."""
    out_dir = _out_dir(args)
    _check_cache_dir(args)
    return (out_dir, *_resolve_inputs(args, groups))


def _write_csv(path: Path, frame, index: bool = True) -> None:
    from .files import atomic_write_bytes

    atomic_write_bytes(path, frame.to_csv(index=index).encode())


def _run_evaluate(args) -> int:
    from .baselines import BASELINES_MISSING, baselines_available
    from .data import resolve_data
    from .dates import periods_per_year
    from .evaluation import compare_families, evaluate, evaluate_forecasts, format_table, walk_forward_forecasts
    from .plotting import plot_forecasts, plot_volatility, safe_name
    from .store import ForecastStore
    from .voleval import compare_volatility
    from .walkforward import make_walk_forward, require_history

    out_dir, data, model, options, _ = _prepare_run(args, ("data", "execution", "model_scope", "forecast",
                                                           "evaluation"))
    forecast = {k: v for k, v in options.items() if k in names("forecast")}
    models = _model_names(model)
    for name in models:
        make_walk_forward(name, **forecast)  # every walk-forward check (memory included) before the data loads
    no_baselines = options.pop("no_baselines", False)
    if not no_baselines and not baselines_available():
        print(f"puffin-bt: note: {BASELINES_MISSING}", file=sys.stderr)  # said once, before the work
        no_baselines = True
    skip_failed = options.pop("skip_failed", False)
    frames, skipped = resolve_data(data, options.pop("start", None), options.pop("end", None), args.cache_dir,
                                   skip_failed=skip_failed)
    min_train = options.get("min_train", OPTIONS["min_train"].default)
    for ticker in list(frames):  # the rule backtest applies: a ticker must reach the first fold
        try:
            require_history(ticker, len(frames[ticker]), min_train)
        except DataError as exc:
            if not skip_failed:
                raise
            skipped[ticker] = " ".join(str(exc).split())
            del frames[ticker]
    if not frames:
        raise DataError(f"no ticker left to evaluate; skipped: {skipped}")
    for ticker, why in skipped.items():
        print(f"puffin-bt: skipped {ticker}: {why}", file=sys.stderr)
    store = ForecastStore(args.cache_dir)
    results = []
    for name in models:
        # the baselines do not depend on the family: fitted once, the second family reuses them
        result = evaluate(frames, model=name, store=store, no_baselines=no_baselines,
                          baselines_from=results[0] if results else None, **options)
        results.append(result)
        target = out_dir / name if len(models) > 1 else out_dir
        result.write(target)
        volatility = options.get("target") == "volatility"
        if not args.no_plot:
            for ticker, g in result.forecasts.groupby("ticker", sort=False):
                if volatility:
                    plot_volatility(g.set_index("date"), out_path=target / f"volatility_{safe_name(ticker)}.png",
                                    title=f"{name.upper()} volatility forecast vs realised: {ticker}",
                                    periods_per_year=periods_per_year(frames[ticker].index)[0])
                else:
                    plot_forecasts(g.set_index("date"), out_path=target / f"forecast_{safe_name(ticker)}.png",
                                   title=f"{name.upper()} walk-forward forecasts: {ticker}")
        print(result.summary())
        if options.get("ensemble", 1) > 1 and not volatility:
            one_model = {**options, "ensemble": 1, "ensemble_method": "seeds", "interval": None,
                         "interval_method": "split"}
            single = evaluate_forecasts(walk_forward_forecasts(frames, model=name, store=store, **one_model))
            method = options.get("ensemble_method", OPTIONS["ensemble_method"].default)
            print(f"ensemble of {options['ensemble']} ({method}) vs one model, same bars:")
            print(format_table(result.table[["n", "mse", "direction_accuracy"]].join(
                single[["mse", "direction_accuracy"]].add_suffix("_1"))))
        print()
    if len(results) > 1:
        print("model comparison, pooled, same bars (each family beside the baselines):")
        print(compare_volatility(results) if options.get("target") == "volatility" else compare_families(results))
        print()
    print(f"wrote {out_dir}")
    return EXIT_OK


def _html_chart(args) -> bool:
    """Whether to write trades.html; when Bokeh cannot be imported, says so in one line, before any work."""
    from .plotting.html import HTML_UNAVAILABLE, html_available

    if args.no_plot:
        return False
    if not html_available():
        print(f"puffin-bt: note: no trades.html: {HTML_UNAVAILABLE}", file=sys.stderr)
        return False
    return True


def _run_tune(args) -> int:
    from .tuning import CHAPTER_SPACE, check_space, tune

    if len(_model_names(getattr(args, "model", CELLS[0]))) > 1:
        raise ConfigError(f"--model {args.model} is not supported by tune; tune each family separately")
    space = None
    if hasattr(args, "space"):
        example = '\'{"hidden_dim": [16, 32]}\''
        try:
            space = json.loads(args.space)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--space {args.space!r} is not valid JSON ({exc.msg}); e.g. {example}") from None
        except RecursionError:
            raise ConfigError(f"--space is nested too deeply; e.g. {example}") from None
        check_space(space, "--space")  # '{}', '[]' or NaN must not fall back to the chapter's grid
    resuming = _resumes_study(args)
    out_dir, data, model, options, source = _prepare_run(args, ("tune", *BACKTEST_GROUPS))
    if len(_model_names(model)) > 1:
        raise ConfigError(f"model {model!r} (from --config) is not supported by tune; tune each family separately")
    if options.get("storage") is None:
        options["storage"] = _default_storage(out_dir)
    if resuming and not args.quiet:
        print(f"puffin-bt: resuming the study in {out_dir / STUDY_FILE}: only the missing trials run", file=sys.stderr)
    searched = set(CHAPTER_SPACE if space is None else space)
    options = {k: v for k, v in options.items() if k not in searched}
    html_chart = _html_chart(args)
    show = not args.quiet and sys.stderr.isatty()
    objective = options.get("objective", OPTIONS["objective"].default)

    def on_trial(i, params, value):
        if show:
            print(f"trial {i}: {params} -> {objective}={value:.4g}", file=sys.stderr)

    result = tune(data, model=model, space=space, cache_dir=args.cache_dir, on_trial=on_trial, **options)
    _record_source(result.test.config, source)
    result.save(out_dir)
    if not args.no_plot:
        result.test.plot(out_dir / "test")
        if html_chart:
            result.test.plot(out_dir / "test", fmt="html")
            result.plot_html(out_dir)
    top = result.trials.head(10).to_string(index=False, float_format=lambda v: f"{v:.4g}")
    print(f"{model.upper()} {options.get('search', OPTIONS['search'].default)} search, {len(result.trials)} trials, "
          f"objective {objective} on {result.tune_period[0]}..{result.tune_period[1]}")
    print(top)
    print(f"\nbest: {result.best_params}")
    print(_format_selection(result))
    print(f"test period {result.test_period[0]}..{result.test_period[1]} (never seen by the search):")
    print(result.test.summary())
    if result.study is not None:
        print(f"study {result.study['name']!r} in {result.study['storage']}: {len(result.trials)} finished trials "
              "(to resume or share it: the same command with --storage URL --study-name NAME)")
    if (out_dir / "tune.html").is_file():
        print(f"look at the search: {out_dir / 'tune.html'}")
    print(f"wrote {out_dir} (replay: puffin-bt backtest --config {out_dir / 'best_config.json'})")
    return EXIT_OK


STUDY_FILE = "study.db"  # the default storage of tune's study, in --out


def _resumes_study(args) -> bool:
    """A tune whose --out already holds its study (study.db) resumes it: the folder may then be non-empty and its
    files are rewritten (--force implied)."""
    if args.out and not hasattr(args, "storage") and (Path(args.out).expanduser() / STUDY_FILE).is_file():
        args.force = True
        return True
    return False


def _default_storage(out_dir: Path) -> str | None:
    """sqlite:///OUT/study.db, or None (in memory, with a note) when Optuna is not installed."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        print("puffin-bt: note: the study is kept in memory (a killed search cannot resume): pip install "
              "'puffin_bt[tune]' to keep it in study.db", file=sys.stderr)
        return None
    return f"sqlite:///{(out_dir / STUDY_FILE).resolve()}"


def _format_selection(result) -> str:
    """Two lines: how much the chosen trial's tuning-period Sharpe survives the search (DSR), how often the
    in-sample best is out-of-sample mediocre (PBO), and the embargo."""
    dsr, pbo, period = result.selection["dsr"], result.selection["pbo"], result.selection["period"]
    over = f"on {period['bars']} daily returns {period['first_return']}..{period['last_return']}"
    if dsr["value"] is None:
        dsr_line = f"DSR of trial {dsr['trial']}: n/a ({dsr['note']})"
    else:
        dsr_line = (f"DSR of trial {dsr['trial']}: {dsr['value']:.2f} (P[true Sharpe > best of {dsr['n_trials']} "
                    f"unskilled trials, {dsr['expected_max_sharpe']:.2f}]; its Sharpe {dsr['sharpe']:.2f}, PSR "
                    f"{dsr['psr']:.2f}) {over}")
    if pbo["value"] is None:
        pbo_line = f"PBO: n/a ({pbo['note']})"
    else:
        left_out = f", {len(pbo['excluded_trials'])} that never traded left out" if pbo["excluded_trials"] else ""
        pbo_line = (f"PBO: {pbo['value']:.2f} (share of {pbo['n_combinations']} splits of {pbo['n_splits']} blocks of "
                    f"{pbo['block_bars']} days where the in-sample best of {pbo['n_trials']} trials{left_out} is at or "
                    f"below the out-of-sample median)")
    return f"{dsr_line}\n{pbo_line}\nembargo: {result.embargo['bars']} bars between tuning and test"


def _run_backtest(args) -> int:
    from .backtesting import backtest

    if args.report == "html":  # fail before the long run, not after it
        from .report import require_quantstats

        require_quantstats()
    out_dir, data, model, options, source = _prepare_run(args, BACKTEST_GROUPS)
    html_chart = _html_chart(args)
    models = _model_names(model)
    show_progress = not args.quiet and sys.stderr.isatty()
    results = {}
    for name in models:
        res = backtest(data, model=name, cache_dir=args.cache_dir, progress=show_progress, **options)
        _record_source(res.config, source)
        target = out_dir / name if len(models) > 1 else out_dir
        res.save(target)
        if args.report == "html":  # before the charts: trades.html links the report when it is there
            from .report import tearsheet

            try:
                tearsheet(res, target / "report.html",
                          links={"interactive trade chart": "trades.html"} if html_chart else {})
            except DataError as exc:  # the run itself succeeded: say why there is no report, keep going
                print(f"puffin-bt: note: report.html not written: {exc}", file=sys.stderr)
        if not args.no_plot:
            res.plot(target)
        if html_chart:
            res.plot(target, fmt="html")
        results[name] = res
        print(res.summary())
        print()
    if len(results) > 1:
        from .report import compare_models

        print(compare_models(results, out_dir=None if args.no_plot else out_dir))
    print(f"wrote {out_dir}")
    return EXIT_OK


def _run_forecast(args) -> int:
    """``puffin-bt forecast``: one row (date, ticker, close, pred_return, pred_price, signal) printed and appended."""
    import pandas as pd

    from .data import load_csv, load_sample
    from .forecaster import ESTIMATORS, RNNForecaster

    loader = RNNForecaster if args.model is None else ESTIMATORS[args.model]
    model = loader.load(args.model_file, device="cpu")
    if model.config_.features:
        raise ConfigError(f"--model-file {args.model_file!r} takes input features {list(model.config_.features)}; "
                          "puffin-bt forecast forecasts from closes only: use predict(prices, features=...) in Python")
    if args.csv is not None:
        name, frame = Path(args.csv).stem, load_csv(args.csv)
    else:
        name = args.sample
        frame = load_sample([name])[name]
    closes = frame["close"].to_numpy(dtype=float)
    need = model.config_.lookback + 1
    if len(closes) < need:
        raise DataError(f"{name} has {len(closes)} bar(s); the model's lookback={model.config_.lookback} needs at least "
                        f"{need}: pass a longer history")
    price = float(model.predict(closes)[0])
    pred = price / closes[-1] - 1.0
    entry, exit_ = (getattr(args, k, OPTIONS[k].default) for k in ("entry", "exit"))
    signal = "buy" if pred > entry else ("sell" if pred < -exit_ else "hold")
    row = pd.DataFrame([{"date": frame.index[-1].date().isoformat(), "ticker": name, "close": closes[-1],
                         "pred_return": pred, "pred_price": price, "horizon": model.config_.horizon,
                         "signal": signal, "model_file": str(args.model_file)}])
    print(f"{row.at[0, 'date']} {name}: close {closes[-1]:.6g}, predicted return {pred:+.4%} over "
          f"{model.config_.horizon} bar(s) -> {signal}")
    if args.out is not None:
        out = Path(args.out)
        rows = row
        if out.exists():
            try:
                old = pd.read_csv(out, dtype={"date": str, "ticker": str})
            except (OSError, ValueError, pd.errors.ParserError) as exc:
                raise DataError(f"--out {args.out!r} cannot be read as a forecast CSV ({exc}); pass a new file "
                                "name") from None
            if list(old.columns) != list(row.columns):
                raise DataError(f"--out {args.out!r} has columns {list(old.columns)}, not a puffin-bt forecast "
                                f"log's {list(row.columns)}; pass another file")
            keep = ~((old["date"] == row.at[0, "date"]) & (old["ticker"] == name))
            rows = pd.concat([old[keep], row], ignore_index=True)
        try:
            _write_csv(out, rows, index=False)
        except OSError as exc:
            raise ConfigError(f"--out {args.out!r} cannot be written ({exc.strerror or type(exc).__name__}); "
                              "pass a file in a writable folder") from None
        print(f"appended to {out}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    debug = "--debug" in argv
    if not debug:
        # yfinance logs its own retries to stderr; the CLI reports failures itself, in one line.
        logging.getLogger("yfinance").setLevel(logging.CRITICAL)
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        runner = {"backtest": _run_backtest, "evaluate": _run_evaluate, "tune": _run_tune,
                  "forecast": _run_forecast}.get(args.command)
        if runner is None:
            raise _UsageError(f"puffin-bt: unknown command {args.command!r}")
        try:
            return runner(args)
        except BaseException as exc:
            if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
                _remove_partial_results(args)
                _remove_empty_out(args)
                print(_disk_full_line(args, exc), file=sys.stderr)
                return EXIT_USAGE
            _remove_empty_out(args)
            raise
    except _UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except PuffinError as exc:
        print(f"puffin-bt: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("puffin-bt: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if debug or os.environ.get("PUFFIN_BT_DEBUG"):
            raise
        print(f"puffin-bt: unexpected error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_UNEXPECTED


if __name__ == "__main__":
    sys.exit(main())
