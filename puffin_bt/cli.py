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
from collections import Counter
from pathlib import Path

from ._version import __version__
from .errors import ConfigError, DataError, PuffinError
from .options import BACKTEST_GROUPS, OPTIONS, add_flags, names

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
    src.add_argument("--tickers", nargs="+", metavar="TICKER", help="download with yfinance (cached on disk)")
    src.add_argument("--csv", nargs="+", metavar="[NAME=]FILE", help="one OHLCV CSV per ticker")
    src.add_argument("--sample", nargs="+", metavar="TICKER", help="a subset of the bundled tickers")
    src.add_argument("--tickers-file", metavar="FILE",
                     help="a universe: one ticker per line (# comments); failed tickers are reported and skipped")
    data.add_argument("--cache-dir", help="download cache and forecast store (default: $PUFFIN_BT_CACHE or "
                                          "the user cache directory)")
    add_flags(data, names("data"))


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=("lstm", "gru", "both"), default=argparse.SUPPRESS,
                        help="network; 'both' runs LSTM and GRU on the same data and compares (default lstm)")
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
    out.add_argument("--out", help="output folder (default ./puffin-bt-out/<timestamp>)")
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
                        description="Causal walk-forward evaluation: MSE, MAE, R^2 and direction accuracy (with a "
                                    "binomial p-value against 50%%) per ticker and pooled, next to the zero-return "
                                    "and last-return baselines on the same bars; writes evaluation.csv, "
                                    "forecasts.csv and predicted-vs-actual plots to --out.")
    _add_data_args(ev)
    _add_model_args(ev)
    _add_scope_arg(ev)
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
    return parser


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
    """``{name: path}`` of the --csv files: read (and, with --skip-failed, skipped when broken) by resolve_data."""
    frames = {}
    for spec in specs:
        name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        name = name or Path(path).stem
        frames[name] = path
    return frames


def _resolve_inputs(args, groups: tuple[str, ...]) -> tuple:
    """(data for resolve_data, model, options) from the flags the user gave over an optional --config:
    every registry option of ``groups`` that the config records is replayed unless a flag overrides it."""
    from .data import load_sample

    cfg = _load_config(args.config) if args.config else {}
    recorded = {**{k: v for k, v in cfg.items() if k in OPTIONS}, **dict(cfg.get("forecast") or {})}
    options = {k: v for k, v in recorded.items() if k in names(*groups)}
    options.update({name: getattr(args, name) for name in names(*groups) if hasattr(args, name)})
    model = getattr(args, "model", None) or cfg.get("model") or "lstm"
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
    if args.tickers_file and "skip_failed" in names(*groups):
        options["skip_failed"] = True  # a universe file: report and skip the tickers that fail
    return data, model, options


def _read_tickers_file(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--tickers-file {path!r} cannot be read ({exc.strerror}); pass a text file with one "
                          "ticker per line") from None
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


def _data_source(args) -> str:
    if getattr(args, "tickers", None) or getattr(args, "tickers_file", None):
        return "yfinance"
    return "csv" if args.csv else "sample"


def _out_dir(args) -> Path:
    return Path(args.out or Path("puffin-bt-out") / dt.datetime.now().strftime("%Y%m%d-%H%M%S"))


def _run_evaluate(args) -> int:
    from .data import resolve_data
    from .evaluation import evaluate_forecasts, ic_summary, information_coefficients, walk_forward_forecasts
    from .files import atomic_write_bytes
    from .plotting import plot_forecasts, safe_name
    from .store import ForecastStore

    data, model, options = _resolve_inputs(args, ("data", "execution", "model_scope", "forecast"))
    frames, skipped = resolve_data(data, options.pop("start", None), options.pop("end", None), args.cache_dir,
                                   skip_failed=options.pop("skip_failed", False))
    for ticker, why in skipped.items():
        print(f"puffin-bt: skipped {ticker}: {why}", file=sys.stderr)
    out_dir = _out_dir(args)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = ForecastStore(args.cache_dir)
    models = ("lstm", "gru") if model == "both" else (model,)
    for name in models:
        forecasts = walk_forward_forecasts(frames, model=name, store=store, **options)
        table = evaluate_forecasts(forecasts, options.get("interval"))
        target = out_dir / name if len(models) > 1 else out_dir
        target.mkdir(parents=True, exist_ok=True)
        table.to_csv(target / "evaluation.csv")
        forecasts.to_csv(target / "forecasts.csv", index=False)
        if not args.no_plot:
            for ticker, g in forecasts.groupby("ticker", sort=False):
                plot_forecasts(g.set_index("date"), out_path=target / f"forecast_{safe_name(ticker)}.png",
                               title=f"{name.upper()} walk-forward forecasts: {ticker}")
        print(f"{name.upper()} walk-forward evaluation ({len(frames)} ticker(s), next-bar returns)")
        print(_format_evaluation(table))
        if len(frames) >= 2:
            per_date = information_coefficients(forecasts)
            atomic_write_bytes(target / "ic.csv", per_date.to_csv(index_label="date").encode())
            summary = ic_summary(per_date)
            atomic_write_bytes(target / "ic_summary.csv", summary.to_csv().encode())
            print(f"cross-sectional, per date across the {len(frames)} tickers (ic.csv):")
            print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
        if options.get("ensemble", 1) > 1:
            single = evaluate_forecasts(walk_forward_forecasts(frames, model=name, store=store,
                                                               **{**options, "ensemble": 1, "interval": None}))
            print(f"ensemble of {options['ensemble']} vs one model, same bars:")
            print(_format_evaluation(table[["n", "mse", "direction_accuracy"]].join(
                single[["mse", "direction_accuracy"]].add_suffix("_1"))))
        print()
    print(f"wrote {out_dir}")
    return EXIT_OK


def _format_evaluation(table) -> str:
    cols = {"n": "bars", "mse": "MSE", "mse_1": "MSE 1 model", "mse_zero": "MSE zero", "mse_persist": "MSE last",
            "mae": "MAE", "r2": "R2", "direction_accuracy": "dir acc", "direction_accuracy_1": "dir acc 1 model",
            "direction_accuracy_persist": "dir acc last", "direction_p_value": "p(dir>50%)", "coverage": "coverage",
            "interval_width": "width", "pinball": "pinball"}
    shown = table[[c for c in cols if c in table]].rename(columns=cols).copy().astype(object)
    for col in shown.columns:
        if col == "bars":
            shown[col] = table["n"].map(lambda v: f"{int(v)}")
        elif col.startswith("dir acc") or col == "coverage":
            shown[col] = shown[col].map(lambda v: f"{100 * v:.1f}%")
        else:
            shown[col] = shown[col].map(lambda v: f"{v:.3g}")
    return shown.to_string()


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
    from .tuning import CHAPTER_SPACE, tune

    data, model, options = _resolve_inputs(args, ("tune", *BACKTEST_GROUPS))
    space = None
    if getattr(args, "space", None):
        try:
            space = json.loads(args.space)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--space is not valid JSON ({exc.msg}); e.g. '{{\"hidden_dim\": [16, 32]}}'") from None
    if model == "both":
        raise ConfigError("--model both is not supported by tune; tune lstm and gru separately")
    searched = set(space or CHAPTER_SPACE)
    options = {k: v for k, v in options.items() if k not in searched}
    out_dir = _out_dir(args)
    html_chart = _html_chart(args)
    show = not args.quiet and sys.stderr.isatty()
    objective = options.get("objective", OPTIONS["objective"].default)

    def on_trial(i, params, value):
        if show:
            print(f"trial {i}: {params} -> {objective}={value:.4g}", file=sys.stderr)

    result = tune(data, model=model, space=space, cache_dir=args.cache_dir, on_trial=on_trial, **options)
    result.test.config["data_source"] = _data_source(args)
    result.save(out_dir)
    if not args.no_plot:
        result.test.plot(out_dir / "test")
        if html_chart:
            result.test.plot(out_dir / "test", fmt="html")
    top = result.trials.head(10).to_string(index=False, float_format=lambda v: f"{v:.4g}")
    print(f"{model.upper()} {options.get('search', OPTIONS['search'].default)} search, {len(result.trials)} trials, "
          f"objective {objective} on {result.tune_period[0]}..{result.tune_period[1]}")
    print(top)
    print(f"\nbest: {result.best_params}")
    print(_format_selection(result))
    print(f"test period {result.test_period[0]}..{result.test_period[1]} (never seen by the search):")
    print(result.test.summary())
    print(f"wrote {out_dir} (replay: puffin-bt backtest --config {out_dir / 'best_config.json'})")
    return EXIT_OK


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
    data, model, options = _resolve_inputs(args, BACKTEST_GROUPS)
    out_dir = _out_dir(args)
    html_chart = _html_chart(args)
    models = ("lstm", "gru") if model == "both" else (model,)
    show_progress = not args.quiet and sys.stderr.isatty()
    results = {}
    for name in models:
        res = backtest(data, model=name, cache_dir=args.cache_dir, progress=show_progress, **options)
        res.config["data_source"] = _data_source(args)
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
