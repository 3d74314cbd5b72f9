"""The ``puffin-bt`` command: walk-forward LSTM/GRU backtests from the terminal.

Exit codes: 0 success, 2 bad input or configuration (one line on stderr),
1 anything unexpected (traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from pathlib import Path

from .errors import ConfigError, DataError, PuffinError

EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line (no usage dump) and exit code 2."""

    def error(self, message: str):  # noqa: D102 - argparse API
        raise _UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _positive_int_or_none(text: str) -> int | None:
    if text.lower() in ("none", "expanding"):
        return None
    return _positive_int(text)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _workers(text: str) -> int | str:
    return "auto" if text.lower() == "auto" else _positive_int(text)


def _refit(text: str) -> int | None:
    if text.lower() in ("none", "cold"):
        return None
    return _positive_int(text)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be in [0, 1)")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{value} must be a positive finite number")
    return value


# CLI flag -> forecast option, so a saved config can be replayed with --config.
FORECAST_FLAGS = ("lookback", "retrain_every", "train_window", "min_train", "epochs", "refit_epochs",
                  "hidden_dim", "num_layers", "dropout", "lr", "batch_size", "weight_decay", "seed", "device",
                  "threads")


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data (default: the bundled AAPL, GOOG, IBM, MSFT sample, offline)")
    src = data.add_mutually_exclusive_group()
    src.add_argument("--tickers", nargs="+", metavar="TICKER", help="download with yfinance (cached on disk)")
    src.add_argument("--csv", nargs="+", metavar="[NAME=]FILE", help="one OHLCV CSV per ticker")
    src.add_argument("--sample", nargs="+", metavar="TICKER", help="a subset of the bundled tickers")
    src.add_argument("--tickers-file", metavar="FILE",
                     help="a universe: one ticker per line (# comments); failed tickers are reported and skipped")
    data.add_argument("--start", help="first date, YYYY-MM-DD")
    data.add_argument("--end", help="last date, YYYY-MM-DD")
    data.add_argument("--cache-dir", help="download cache and forecast store (default: $PUFFIN_BT_CACHE or "
                                          "the user cache directory)")


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=("lstm", "gru", "both"), default="lstm",
                        help="network; 'both' runs LSTM and GRU on the same data and compares (default lstm)")
    # Forecast flags default to SUPPRESS: only flags the user gave override --config / library defaults.
    model = parser.add_argument_group("model and walk-forward schedule", argument_default=argparse.SUPPRESS)
    model.add_argument("--lookback", type=_positive_int, help="bars per input window (default 20)")
    model.add_argument("--retrain-every", type=_positive_int, help="bars between refits (default 21)")
    model.add_argument("--train-window", type=_positive_int_or_none,
                       help="bars of history per fold, or 'none' for an expanding window (default 504)")
    model.add_argument("--min-train", type=_positive_int, help="bars before the first fold (default 252)")
    model.add_argument("--epochs", type=_positive_int, help="epochs of the first fold (default 10)")
    model.add_argument("--refit-epochs", type=_refit,
                       help="epochs of later folds, warm-started; 'none' = cold refit with --epochs (default 1)")
    model.add_argument("--hidden-dim", type=_positive_int, help="hidden units per layer (default 64)")
    model.add_argument("--num-layers", type=_positive_int, help="recurrent layers (default 2)")
    model.add_argument("--dropout", type=_fraction, help="dropout rate (default 0.2)")
    model.add_argument("--lr", type=_positive_float, help="Adam learning rate (default 0.001)")
    model.add_argument("--batch-size", type=_positive_int, help="mini-batch size (default 32)")
    model.add_argument("--weight-decay", type=float, help="Adam weight decay (default 0)")
    model.add_argument("--seed", type=int, help="random seed (default 0)")
    model.add_argument("--device", help="auto (GPU if present), cpu, cuda, mps (default auto)")
    model.add_argument("--threads", type=_positive_int,
                       help="torch intra-op threads while training/forecasting (default 1: fastest for these "
                            "small nets, and robust when other processes share the cores)")


def _add_scale_args(parser: argparse.ArgumentParser) -> None:
    scale = parser.add_argument_group("scale-out (forecasts computed in parallel, then one Backtrader run)")
    scale.add_argument("--workers", type=_workers, default="auto",
                       help="processes computing the tickers' forecasts in parallel, or 'auto' = one per CPU core "
                            "up to one per ticker; with one ticker, its cold-refit folds use the cores "
                            "(default auto; 1 = one process in all, inside the Backtrader run)")
    scale.add_argument("--executor", choices=("local", "ray"),
                       help="local process pool, or Ray (pip install 'puffin_bt[ray]')")
    scale.add_argument("--address", help="Ray cluster address HOST:PORT (default: start a local Ray runtime)")
    scale.add_argument("--skip-failed", action="store_true",
                       help="report and skip tickers that cannot be loaded or forecast (default with --tickers-file)")


def _add_output_args(parser: argparse.ArgumentParser) -> None:
    out = parser.add_argument_group("output")
    out.add_argument("--out", help="output folder (default ./puffin-bt-out/<timestamp>)")
    out.add_argument("--no-plot", action="store_true", help="skip the PNG charts")
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
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    bt_ = sub.add_parser("backtest", help="backtest the forecast threshold strategy on a portfolio",
                         description="Backtest ForecastThresholdStrategy with walk-forward LSTM/GRU forecasts. "
                                     "Writes trade charts, equity vs buy-and-hold, trades.csv, forecasts.csv, "
                                     "folds.csv, metrics.json and config.json to --out.")
    _add_data_args(bt_)
    _add_model_args(bt_)
    _add_scale_args(bt_)
    trade = bt_.add_argument_group("trading")
    trade.add_argument("--entry", type=float, default=0.005, help="go long when pred_return > ENTRY (default 0.005)")
    trade.add_argument("--exit", type=float, default=0.005, help="exit when pred_return < -EXIT (default 0.005)")
    trade.add_argument("--allow-short", action="store_true", help="also short when pred_return < -ENTRY")
    trade.add_argument("--cash", type=_positive_float, default=100_000.0, help="starting cash (default 100000)")
    trade.add_argument("--commission", type=float, default=0.001, help="commission rate per trade (default 0.001)")

    _add_output_args(bt_)

    ev = sub.add_parser("evaluate", help="walk-forward forecast quality against naive baselines",
                        description="Causal walk-forward evaluation: MSE, MAE, R^2 and direction accuracy (with a "
                                    "binomial p-value against 50%%) per ticker and pooled, next to the zero-return "
                                    "and last-return baselines on the same bars; writes evaluation.csv, "
                                    "forecasts.csv and predicted-vs-actual plots to --out.")
    _add_data_args(ev)
    _add_model_args(ev)
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
    search = tu.add_argument_group("search")
    search.add_argument("--search", choices=("grid", "random", "optuna"), default="grid",
                        help="grid (the chapter's 162 points, or the first --trials), random, or optuna (TPE)")
    search.add_argument("--trials", type=_positive_int, help="number of trials (default: all for grid, 20 otherwise)")
    search.add_argument("--space", help='JSON of option -> values, e.g. \'{"hidden_dim": [16, 32], "lookback": [10, 20]}\'')
    search.add_argument("--objective", choices=("sharpe", "total_return", "direction_accuracy", "mse"),
                        default="sharpe", help="what the search optimises on the tuning period (default sharpe)")
    search.add_argument("--test-fraction", type=_fraction, default=0.25,
                        help="share of the dates held out as the test period (default 0.25)")
    search.add_argument("--test-start", help="first date of the test period (overrides --test-fraction)")
    search.add_argument("--parallel-trials", type=_positive_int, default=1,
                        help="trials whose forecasts are computed at once, every (trial, ticker) pair in the "
                             "--workers pool or on Ray (default 1)")
    _add_scale_args(tu)
    tu.add_argument("--entry", type=float, default=0.005, help="entry threshold (default 0.005)")
    tu.add_argument("--exit", type=float, default=0.005, help="exit threshold (default 0.005)")
    tu.add_argument("--commission", type=float, default=0.001, help="commission rate (default 0.001)")
    _add_output_args(tu)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def _load_config(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            cfg = json.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"--config {path!r} does not exist; pass the config.json of an earlier run") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--config {path!r} is not valid JSON ({exc}); pass the config.json of an earlier run") \
            from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"--config {path!r} must hold a JSON object")
    return cfg


def _csv_frames(specs: list[str]) -> dict:
    from .data import load_csv

    frames = {}
    for spec in specs:
        name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        name = name or Path(path).stem
        frames[name] = load_csv(path, name=name)
    return frames


def _resolve_inputs(args) -> tuple:
    """(data for resolve_data, start, end, forecast options) from flags over an optional --config."""
    from .data import load_sample

    cfg = _load_config(args.config) if args.config else {}
    forecast = dict(cfg.get("forecast", {}))
    forecast.update({flag: getattr(args, flag) for flag in FORECAST_FLAGS if hasattr(args, flag)})
    if args.tickers:
        data = args.tickers
    elif args.tickers_file:
        data = _read_tickers_file(args.tickers_file)
    elif args.csv:
        data = _csv_frames(args.csv)
    elif args.sample:
        data = load_sample(args.sample)
    elif cfg.get("tickers") and cfg.get("data_source") == "yfinance":
        data = cfg["tickers"]
    elif cfg.get("tickers") and cfg.get("data_source") == "sample":
        data = load_sample(cfg["tickers"])
    else:
        data = None
    return data, args.start or cfg.get("start"), args.end or cfg.get("end"), forecast, cfg


def _read_tickers_file(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--tickers-file {path!r} cannot be read ({exc.strerror}); pass a text file with one "
                          "ticker per line") from None
    tickers = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    tickers = list(dict.fromkeys(t for t in tickers if t))
    if not tickers:
        raise ConfigError(f"--tickers-file {path!r} lists no tickers; put one ticker per line")
    return tickers


def _data_source(args) -> str:
    if getattr(args, "tickers", None) or getattr(args, "tickers_file", None):
        return "yfinance"
    return "csv" if args.csv else "sample"


def _out_dir(args) -> Path:
    return Path(args.out or Path("puffin-bt-out") / dt.datetime.now().strftime("%Y%m%d-%H%M%S"))


def _run_evaluate(args) -> int:
    from .evaluation import evaluate_forecasts, walk_forward_forecasts
    from .runner import resolve_data
    from .store import ForecastStore

    data, start, end, forecast, _ = _resolve_inputs(args)
    frames, skipped = resolve_data(data, start, end, args.cache_dir,
                                   skip_failed=args.skip_failed or bool(args.tickers_file))
    for ticker, why in skipped.items():
        print(f"puffin-bt: skipped {ticker}: {why}", file=sys.stderr)
    out_dir = _out_dir(args)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = ForecastStore(args.cache_dir)
    models = ("lstm", "gru") if args.model == "both" else (args.model,)
    for name in models:
        forecasts = walk_forward_forecasts(frames, model=name, store=store, workers=args.workers,
                                           executor=args.executor, address=args.address, **forecast)
        table = evaluate_forecasts(forecasts)
        target = out_dir / name if len(models) > 1 else out_dir
        target.mkdir(parents=True, exist_ok=True)
        table.to_csv(target / "evaluation.csv")
        forecasts.to_csv(target / "forecasts.csv", index=False)
        if not args.no_plot:
            from .plotting import plot_forecasts, safe_name

            for ticker, g in forecasts.groupby("ticker", sort=False):
                plot_forecasts(g.set_index("date"), out_path=target / f"forecast_{safe_name(ticker)}.png",
                               title=f"{name.upper()} walk-forward forecasts: {ticker}")
        print(f"{name.upper()} walk-forward evaluation ({len(frames)} ticker(s), next-bar returns)")
        print(_format_evaluation(table))
        print()
    print(f"wrote {out_dir}")
    return EXIT_OK


def _format_evaluation(table) -> str:
    cols = {"n": "bars", "mse": "MSE", "mse_zero": "MSE zero", "mse_persist": "MSE last", "mae": "MAE",
            "r2": "R2", "direction_accuracy": "dir acc", "direction_accuracy_persist": "dir acc last",
            "direction_p_value": "p(dir>50%)"}
    shown = table[[c for c in cols if c in table]].rename(columns=cols).copy().astype(object)
    for col in shown.columns:
        if col == "bars":
            shown[col] = table["n"].map(lambda v: f"{int(v)}")
        elif col.startswith("dir acc"):
            shown[col] = shown[col].map(lambda v: f"{100 * v:.1f}%")
        else:
            shown[col] = shown[col].map(lambda v: f"{v:.3g}")
    return shown.to_string()


def _run_tune(args) -> int:
    from .tuning import tune

    data, start, end, forecast, _ = _resolve_inputs(args)
    space = None
    if args.space:
        try:
            space = json.loads(args.space)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--space is not valid JSON ({exc.msg}); e.g. '{{\"hidden_dim\": [16, 32]}}'") from None
    if args.model == "both":
        raise ConfigError("--model both is not supported by tune; tune lstm and gru separately")
    searched = set(space or {}) | ({"hidden_dim", "num_layers", "dropout", "lr", "lookback"} if not space else set())
    fixed = {k: v for k, v in forecast.items() if k not in searched}
    out_dir = _out_dir(args)
    show = not args.quiet and sys.stderr.isatty()

    def on_trial(i, params, value):
        if show:
            print(f"trial {i}: {params} -> {args.objective}={value:.4g}", file=sys.stderr)

    result = tune(data, model=args.model, search=args.search, trials=args.trials, space=space,
                  objective=args.objective, test_fraction=args.test_fraction, test_start=args.test_start,
                  start=start, end=end, cache_dir=args.cache_dir, on_trial=on_trial, entry=args.entry,
                  exit=args.exit, commission=args.commission, parallel_trials=args.parallel_trials,
                  workers=args.workers, executor=args.executor, address=args.address,
                  skip_failed=args.skip_failed or bool(args.tickers_file), **fixed)
    result.test.config["data_source"] = _data_source(args)
    result.save(out_dir)
    if not args.no_plot:
        result.test.plot(out_dir / "test")
    top = result.trials.head(10).to_string(index=False, float_format=lambda v: f"{v:.4g}")
    print(f"{args.model.upper()} {args.search} search, {len(result.trials)} trials, objective {args.objective} "
          f"on {result.tune_period[0]}..{result.tune_period[1]}")
    print(top)
    print(f"\nbest: {result.best_params}")
    print(f"test period {result.test_period[0]}..{result.test_period[1]} (never seen by the search):")
    print(result.test.summary())
    print(f"wrote {out_dir} (replay: puffin-bt backtest --config {out_dir / 'best_config.json'})")
    return EXIT_OK


def _run_backtest(args) -> int:
    from .runner import backtest

    if args.report == "html":  # fail before the long run, not after it
        from .report import require_quantstats

        require_quantstats()
    data, start, end, forecast, cfg = _resolve_inputs(args)
    out_dir = _out_dir(args)
    models = ("lstm", "gru") if args.model == "both" else (args.model,)
    show_progress = not args.quiet and sys.stderr.isatty()
    results = {}
    for name in models:
        res = backtest(data, model=name, start=start, end=end, cash=args.cash, commission=args.commission,
                       entry=args.entry, exit=args.exit, allow_short=args.allow_short,
                       cache_dir=args.cache_dir, progress=show_progress, workers=args.workers,
                       executor=args.executor, address=args.address,
                       skip_failed=args.skip_failed or bool(args.tickers_file), **forecast)
        res.config["data_source"] = _data_source(args)
        target = out_dir / name if len(models) > 1 else out_dir
        res.save(target)
        if not args.no_plot:
            res.plot(target)
        if args.report == "html":
            from .report import tearsheet

            try:
                tearsheet(res, target / "report.html")
            except DataError as exc:  # the run itself succeeded: say why there is no report, keep going
                print(f"puffin-bt: note: report.html not written: {exc}", file=sys.stderr)
        results[name] = res
        print(res.summary())
        print()
    if len(results) > 1:
        from .report import compare_models

        print(compare_models(results, out_dir=None if args.no_plot else out_dir))
    print(f"wrote {out_dir}")
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
        if args.command == "backtest":
            return _run_backtest(args)
        if args.command == "evaluate":
            return _run_evaluate(args)
        if args.command == "tune":
            return _run_tune(args)
        raise _UsageError(f"puffin-bt: unknown command {args.command!r}")
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
