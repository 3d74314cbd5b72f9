"""The `puffin-bt` command driven as a subprocess, on the bundled data with tiny models."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

TINY_FLAGS = ["--hidden-dim", "4", "--num-layers", "1", "--epochs", "1", "--refit-epochs", "1",
              "--lookback", "10", "--min-train", "120", "--train-window", "160", "--retrain-every", "60",
              "--device", "cpu"]


def run_cli(*args, cwd=None, env_extra=None, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", **(env_extra or {})}
    env.pop("PUFFIN_BT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "puffin_bt.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def assert_one_line_usage_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_help_lists_every_subcommand_and_option():
    top = run_cli("--help")
    assert top.returncode == 0 and "backtest" in top.stdout
    sub = run_cli("backtest", "--help")
    assert sub.returncode == 0
    for flag in ("--tickers", "--csv", "--start", "--end", "--model", "--lookback", "--retrain-every",
                 "--train-window", "--epochs", "--refit-epochs", "--hidden-dim", "--num-layers", "--dropout",
                 "--seed", "--device", "--entry", "--exit", "--allow-short", "--cash", "--commission", "--out",
                 "--no-plot", "--cache-dir", "--quiet", "--config"):
        assert flag in sub.stdout, flag


def test_backtest_on_bundled_data_writes_results_and_plots(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("backtest", "--start", "2011-06-01", "--end", "2012-12-31", "--sample", "AAPL", "MSFT",
                   "--out", str(out), "--cache-dir", str(tmp_path / "cache"), *TINY_FLAGS)
    assert proc.returncode == 0, proc.stderr
    assert "PORTFOLIO" in proc.stdout and "AAPL" in proc.stdout and "B&H" in proc.stdout
    for name in ("trades.csv", "open_positions.csv", "forecasts.csv", "folds.csv", "metrics.json", "config.json",
                 "equity.png", "trades_AAPL.png", "trades_MSFT.png", "trades.html"):
        assert (out / name).is_file(), name
    assert "report.html" not in (out / "trades.html").read_text(encoding="utf-8")  # no report, no link to one
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["forecast"]["hidden_dim"] == 4 and cfg["tickers"] == ["AAPL", "MSFT"]
    # Replaying the saved configuration reproduces the run exactly (from the forecast store).
    again = run_cli("backtest", "--config", str(out / "config.json"), "--sample", "AAPL", "MSFT",
                    "--out", str(tmp_path / "again"), "--no-plot", "--cache-dir", str(tmp_path / "cache"))
    assert again.returncode == 0, again.stderr
    first = json.loads((out / "metrics.json").read_text())["portfolio"]
    second = json.loads((tmp_path / "again" / "metrics.json").read_text())["portfolio"]
    assert first["final_value"] == pytest.approx(second["final_value"])


def test_model_both_prints_lstm_and_gru_side_by_side(tmp_path):
    proc = run_cli("backtest", "--model", "both", "--start", "2012-01-01", "--sample", "IBM", "--out",
                   str(tmp_path / "both"), "--cache-dir", str(tmp_path / "cache"), *TINY_FLAGS)
    assert proc.returncode == 0, proc.stderr
    assert "LSTM vs GRU" in proc.stdout and "direction accuracy" in proc.stdout
    for model in ("lstm", "gru"):
        for name in ("metrics.json", "trades_IBM.png", "trades.html"):  # one interactive page per model
            assert (tmp_path / "both" / model / name).is_file(), (model, name)
        assert f"{model.upper()} walk-forward" in (tmp_path / "both" / model / "trades.html").read_text(encoding="utf-8")
    assert (tmp_path / "both" / "comparison.png").is_file()


@pytest.mark.parametrize("args, fragments", [
    (["backtest", "--lookback", "0"], ["--lookback", "0"]),
    (["backtest", "--epochs", "2.5"], ["--epochs", "2.5"]),
    (["backtest", "--model", "transformer"], ["--model", "transformer"]),
    (["backtest", "--sample", "TSLA"], ["TSLA", "AAPL"]),
    (["backtest", "--csv", "/nonexistent/prices.csv"], ["/nonexistent/prices.csv"]),
    (["backtest", "--entry", "-0.5"], ["entry"]),
    (["backtest", "--device", "cuda"], ["cuda"]),
    (["backtest", "--config", "/nonexistent/config.json"], ["config.json"]),
    (["backtest", "--start", "not-a-date"], ["not-a-date"]),
    (["frobnicate"], ["frobnicate"]),
])
def test_bad_input_exits_2_with_one_line_and_no_traceback(args, fragments, tmp_path):
    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    proc = run_cli(*args, "--no-plot", "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c"),
                   *(TINY_FLAGS if args[0] == "backtest" and "--device" not in args else []))
    assert_one_line_usage_error(proc, *fragments)


def test_offline_tickers_without_cache_fail_with_one_line(tmp_path):
    # No network here (and none in CI): the download fails and no cache exists.
    proc = run_cli("backtest", "--tickers", "ZZZZ", "--no-plot", "--cache-dir", str(tmp_path),
                   "--out", str(tmp_path / "o"), *TINY_FLAGS, timeout=120)
    assert_one_line_usage_error(proc, "ZZZZ")


def test_tickers_file_universe_reports_and_skips_failed_tickers(tmp_path):
    # Offline: a ticker cached earlier runs from the cache; uncached ones fail to download and are skipped.
    from puffin_bt.data import load_prices, load_sample

    cache = tmp_path / "cache"
    ibm = load_sample(["IBM"], start="2011-01-01")["IBM"]
    load_prices(["IBM"], start="2011-01-01", cache_dir=cache, fetcher=lambda ticker, start, end: ibm)
    universe = tmp_path / "universe.txt"
    universe.write_text("# my universe\nIBM\nNOPE1\n\nNOPE2  # not cached, no network\n")
    proc = run_cli("backtest", "--tickers-file", str(universe), "--start", "2011-01-01", "--no-plot",
                   "--cache-dir", str(cache), "--out", str(tmp_path / "o"), *TINY_FLAGS, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "IBM" in proc.stdout and "skipped 2 ticker(s):" in proc.stdout
    assert "NOPE1" in proc.stdout and "NOPE2" in proc.stdout
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert list(metrics["per_ticker"]) == ["IBM"]
    nothing = tmp_path / "nothing.txt"
    nothing.write_text("NOPE3\n")
    proc = run_cli("backtest", "--tickers-file", str(nothing), "--no-plot", "--cache-dir", str(cache),
                   "--out", str(tmp_path / "o2"), *TINY_FLAGS, timeout=120)
    assert_one_line_usage_error(proc, "NOPE3")


def test_parallel_workers_give_the_same_results_as_one_process(tmp_path):
    common = ["backtest", "--sample", "AAPL", "IBM", "--start", "2011-06-01", "--no-plot", *TINY_FLAGS]
    one = run_cli(*common, "--workers", "1", "--out", str(tmp_path / "one"), "--cache-dir", str(tmp_path / "c1"))
    two = run_cli(*common, "--workers", "2", "--out", str(tmp_path / "two"), "--cache-dir", str(tmp_path / "c2"))
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    assert (tmp_path / "one" / "trades.csv").read_text() == (tmp_path / "two" / "trades.csv").read_text()
    assert (tmp_path / "one" / "forecasts.csv").read_text() == (tmp_path / "two" / "forecasts.csv").read_text()
    assert not list((tmp_path / "one").glob("trades*.*ml")) and not list((tmp_path / "one").glob("*.png"))  # --no-plot


def test_html_report_is_a_quantstats_tearsheet_linked_with_the_trade_chart(tmp_path):
    pytest.importorskip("quantstats")
    out = tmp_path / "rep"
    proc = run_cli("backtest", "--sample", "IBM", "--start", "2011-06-01", "--report", "html",
                   "--entry", "0", "--exit", "0", "--out", str(out), "--cache-dir", str(tmp_path / "c"), *TINY_FLAGS)
    assert proc.returncode == 0, proc.stderr
    html = (out / "report.html").read_text()
    assert "Buy &amp; hold" in html or "Buy & hold" in html
    assert "Sharpe" in html
    body = html.index("<body")
    assert html.index('<a href="trades.html">interactive trade chart</a>', body) < html.index("Sharpe")
    assert '<a href="report.html">quantstats report</a>' in (out / "trades.html").read_text(encoding="utf-8")
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temp file left behind


def test_html_report_without_quantstats_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    from puffin_bt import cli

    monkeypatch.setitem(sys.modules, "quantstats", None)  # as if the extra were not installed
    code = cli.main(["backtest", "--sample", "IBM", "--report", "html", "--no-plot", "--out", str(tmp_path / "o"),
                     "--cache-dir", str(tmp_path / "c"), *TINY_FLAGS])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "puffin_bt[report]" in err[0]
    assert not (tmp_path / "o").exists()  # it failed before doing the work


def test_without_bokeh_a_one_line_note_then_the_png_charts(tmp_path, monkeypatch, capsys):
    from puffin_bt import cli
    from puffin_bt.backtesting import run

    monkeypatch.setitem(sys.modules, "bokeh", None)  # as if Bokeh could not be imported
    notes_before_work = []
    real_prepare = run._prepare
    monkeypatch.setattr(run, "_prepare", lambda *a, **k: (notes_before_work.append(capsys.readouterr().err),
                                                         real_prepare(*a, **k))[1])
    out = tmp_path / "o"
    code = cli.main(["backtest", "--sample", "IBM", "--start", "2012-06-01", "--out", str(out), "--cache-dir",
                     str(tmp_path / "c"), *TINY_FLAGS])
    assert code == 0
    note = notes_before_work[0].strip().splitlines()
    assert len(note) == 1 and "trades.html" in note[0] and "pip install bokeh" in note[0]
    assert (out / "trades_IBM.png").is_file() and not (out / "trades.html").exists()
