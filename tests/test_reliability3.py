"""Reliability, round three (issue 25): what a third adversarial probe broke, each case pinned.

A script injected through report.html, PBO reading ties as certain overfitting, the rank strategy's clock and
attribution, intraday bars annualised as days, a missing volume poisoning a feature, a full disk losing the run, and
the clear errors and smaller silent answers listed in the issue. CLI cases run through the forked CLI server of
tests/test_reliability2.py; HTML pages are opened in a real headless Chromium (tests/browser.py).
docs/RELIABILITY.md lists every case with its test under "Round three".
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from puffin_bt import backtest, load_prices, load_sample
from puffin_bt.cli import build_parser
from puffin_bt.data import load_csv, load_csv_symbols, resolve_data, validate_ohlcv
from puffin_bt.errors import ConfigError, DataError
from puffin_bt.features import frame_features, parse_features
from puffin_bt.stats import (
    deflated_sharpe_ratio,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    sharpe_confidence_interval,
    sharpe_difference_confidence_interval,
    sharpe_report,
)

from .browser import render
from .conftest import TINY, assert_same_forecasts, ohlcv_frame, synthetic_closes
from .test_reliability import CLI_TINY, _cli_env, _csv, _fake_yahoo
from .test_reliability2 import Job, _run_round, assert_one_line_error

LIB = {**TINY, "device": "cpu"}

# --------------------------------------------------------------------------- 1. script injection in the HTML pages

# Each would rewrite the page's title if the browser ran it; the text itself must show instead.
HOSTILE_FILE = "q<img src=x onerror=document['title']='PWNED'>.csv"
HOSTILE_NAME = "<b>bold<i>"  # through --csv NAME=FILE: a name holds no '=' (and one with '/' is read as a path)
HOSTILE_COLUMN = "<img src=x onerror=document.title='PWNEDCOL'>"


def _hostile_csv(w: Path, name: str, seed: int) -> Path:
    w.mkdir(parents=True, exist_ok=True)
    frame = ohlcv_frame(synthetic_closes(300, seed=seed))
    frame[HOSTILE_COLUMN] = 1.0  # an extra column: ignored, and never pasted anywhere as markup
    path = w / name
    path.write_text(_csv(frame), encoding="utf-8")
    return path


def _hostile_run(w: Path, root: Path) -> list:
    return ["backtest", "--csv", str(_hostile_csv(w, HOSTILE_FILE, 5)), f"{HOSTILE_NAME}={_hostile_csv(w, 'b.csv', 6)}",
            *CLI_TINY, "--entry", "0", "--exit", "0", "--allow-short", "--report", "html", "--quiet", "--out", str(w / "out"),
            "--cache-dir", str(w / "cache")]


def _hostile_replay(w: Path, root: Path) -> list:
    """The first run's config.json with a ticker renamed to a script, replayed with --config."""
    cfg = json.loads((root / "hostile" / "out" / "config.json").read_text())
    cfg["data"]["files"][1]["name"] = "r<img src=x onerror=document.title='PWNEDREPLAY'>"
    w.mkdir(parents=True, exist_ok=True)
    (w / "config.json").write_text(json.dumps(cfg))
    return ["backtest", "--config", str(w / "config.json"), "--report", "html", "--quiet", "--out", str(w / "out"),
            "--cache-dir", str(w / "cache")]


HTML_JOBS = {"hostile": Job(_hostile_run), "hostile-replay": Job(_hostile_replay, rnd=2)}


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("html3")
    results = _run_round({"hostile": HTML_JOBS["hostile"]}, root)
    results.update(_run_round({"hostile-replay": HTML_JOBS["hostile-replay"]}, root))
    return results


@pytest.mark.parametrize("job, names", [
    ("hostile", (HOSTILE_FILE.removesuffix(".csv"), HOSTILE_NAME)),
    ("hostile-replay", ("r<img src=x onerror=document.title='PWNEDREPLAY'>",)),
])
@pytest.mark.parametrize("page", ["report.html", "trades.html"])
def test_hostile_ticker_file_and_column_names_run_no_script_in_the_html_pages(hostile_runs, tmp_path, job, names, page):
    proc, workdir = hostile_runs[job]
    assert proc.returncode == 0, proc.stderr
    rendered = render(workdir / "out" / page, tmp_path)
    assert "PWNED" not in rendered.title, f"a script from the data ran: the title is {rendered.title!r}"
    assert not re.search(r"<img\b[^>]*\bsrc=\"?x\b", rendered.dom), "a ticker name became an <img> element"
    assert not re.search(r"<b>bold", rendered.dom), "a ticker name became markup"
    for name in names:
        assert name in rendered.text, f"{name!r} is not shown as text"


# --------------------------------------------------------------------------- 2. PBO of indistinguishable trials


@pytest.mark.parametrize("n_trials", [2, 3, 4, 7])
def test_pbo_of_identical_trials_is_one_half_not_certain_overfitting(n_trials):
    # What `tune --space '{"patience": [5, 6, 7, 8]}'` at 2 epochs gives: patience never bites, every trial the same.
    returns = np.random.default_rng(3).normal(0.0005, 0.01, 400)
    res = probability_of_backtest_overfitting(np.repeat(returns[:, None], n_trials, axis=1), n_splits=8)
    assert res.pbo == 0.5
    np.testing.assert_array_equal(res.logits, 0.0)  # the logits are the paper's: the chosen trial at the median


def test_pbo_counts_a_tie_at_the_median_as_half_and_leaves_untied_medians_overfit():
    rng = np.random.default_rng(4)
    pair = rng.normal(0.0005, 0.01, 400)
    # Trials 1 and 2 identical; trial 0 the same shifted down (always worse); trial 3 the same plus noise. Where the
    # pair is best in sample and trial 3 beats it out of sample, the pair ranks 2nd-3rd of 4: exactly the median.
    m = np.column_stack([pair - 0.02, pair, pair, pair + rng.normal(0.0, 0.02, 400)])
    res = probability_of_backtest_overfitting(m, n_splits=8)
    brute = [0.5 if math.isclose(lg, 0.0, abs_tol=1e-15) else float(lg <= 0) for lg in res.logits]
    assert res.pbo == pytest.approx(np.mean(brute)) and res.pbo < float(np.mean(res.logits <= 0))
    # Three different trials: rank 2 of 3 is the median with no tie, overfit as in the paper.
    by_hand = np.array([[1, 0, -1], [3, 2, 1], [1, 1, 1], [-1, 2, 3]], dtype=float)
    assert probability_of_backtest_overfitting(by_hand, n_splits=2).pbo == 1.0


# --------------------------------------------------------------------------- 9. statistics on degenerate input


def _almost_constant(n: int = 300) -> np.ndarray:
    returns = np.full(n, 0.01)
    returns[::7] = np.nextafter(0.01, 1.0)  # one float step apart: round-off, not volatility
    return returns


@pytest.mark.parametrize("statistic", [
    probabilistic_sharpe_ratio,
    lambda r: deflated_sharpe_ratio(r, [0.1, 0.2, 0.3]),
    lambda r: sharpe_confidence_interval(r, n_boot=200),
])
def test_returns_constant_but_for_round_off_have_no_sharpe_ratio(statistic):
    with pytest.raises(DataError, match="constant .*differ by round-off only.*volatility is zero"):
        statistic(_almost_constant())


def test_sharpe_report_of_returns_constant_but_for_round_off_is_undefined_not_huge():
    report = sharpe_report(_almost_constant(), None, periods_per_year=252)
    assert report["sharpe"] is None and report["psr"] is None and "constant" in report["note"]


def test_pbo_refuses_a_trial_constant_but_for_round_off():
    m = np.random.default_rng(0).normal(0.0, 0.01, size=(160, 3))
    m[:, 1] = _almost_constant(160)
    with pytest.raises(DataError, match="column 1 is constant"):
        probability_of_backtest_overfitting(m, n_splits=4)


@pytest.mark.parametrize("call", [
    lambda r: sharpe_confidence_interval(r, n_boot=10**9),
    lambda r: sharpe_difference_confidence_interval(r, r[::-1], n_boot=10**9),
])
def test_a_bootstrap_of_a_billion_resamples_is_refused_at_once(call):
    r = np.random.default_rng(1).normal(0.0005, 0.01, 2500)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"n_boot=1000000000 is too large; it must be <= 100,000"):
        call(r)
    assert time.perf_counter() - started < 1.0


def test_pbo_of_returns_near_1e306_is_a_data_error_not_an_overflow_warning():
    m = np.random.default_rng(2).normal(0.0, 1.0, size=(160, 3)) * 1e306
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning fails the test
        with pytest.raises(DataError, match=r"performance\[\d+, \d+\] is .*e\+30[56].*overflow.*as fractions"):
            probability_of_backtest_overfitting(m, n_splits=4)


# --------------------------------------------------------------------------- 5. a missing volume is a missing feature value


def _bars_with_a_missing_volume(n: int = 200, at: int = 150) -> pd.DataFrame:
    frame = ohlcv_frame(synthetic_closes(n, seed=8))
    frame["volume"] = np.random.default_rng(8).integers(500_000, 1_500_000, n).astype(float)
    frame.iloc[at, frame.columns.get_loc("volume")] = np.nan
    return frame


def test_a_missing_volume_makes_the_volume_feature_missing_not_a_spike():
    frame = validate_ohlcv(_bars_with_a_missing_volume(), name="ACME")
    assert np.isnan(frame["volume"].iloc[150])  # kept missing, not 0
    feature = frame_features(("volume",), frame)[:, 0]
    assert np.isnan(feature[150]) and np.isnan(feature[151])  # the two log changes that need the bar's volume
    others = np.delete(feature, [0, 150, 151])
    assert np.isfinite(others).all() and np.abs(others).max() < 2  # no +-15 spike anywhere


def test_a_missing_volume_inside_a_forecast_window_is_named_never_a_silently_moved_forecast():
    # Through backtest(), which validates the bars as a CSV run does (the NaN volume used to become 0 there).
    with pytest.raises(DataError, match=r"volume.* bar 15[01]"):
        backtest({"ACME": _bars_with_a_missing_volume()}, features=("volume",), **LIB)
    # Before the gap reaches a forecast window, the forecasts are those of the same bars without the gap.
    early = backtest({"ACME": _bars_with_a_missing_volume().iloc[:150]}, features=("volume",), **LIB)
    clean = _bars_with_a_missing_volume()
    clean.iloc[150, clean.columns.get_loc("volume")] = 1_000_000.0
    full = backtest({"ACME": clean}, features=("volume",), **LIB)
    before = early.forecasts["pred_return"]
    assert_same_forecasts(before, full.forecasts["pred_return"].iloc[:len(before)], min_finite=80)


# --------------------------------------------------------------------------- 6. a full disk


@pytest.fixture
def full_disk(tmp_path):
    """A real, full file system: a 256 KiB tmpfs filled to ENOSPC (needs root and mount; skipped elsewhere)."""
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    try:
        with open(mount_point / "filler", "wb", buffering=0) as fh, contextlib.suppress(OSError):
            while fh.write(b"\0" * 4096):
                pass
        with pytest.raises(OSError, match="No space left"), open(mount_point / "probe", "wb") as fh:
            fh.write(b"x" * 8192)
            fh.flush()
            os.fsync(fh.fileno())
        (mount_point / "probe").unlink()
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _full_disk_run(tmp_path, **where) -> tuple:
    csv = tmp_path / "acme.csv"
    csv.write_text(_csv(ohlcv_frame(synthetic_closes(300, seed=5))), encoding="utf-8")
    args = ["backtest", "--csv", f"ACME={csv}", *CLI_TINY, "--entry", "0", "--exit", "0", "--no-plot", "--quiet",
            "--out", str(where.get("out", tmp_path / "out")), "--cache-dir", str(where.get("cache", tmp_path / "cache"))]
    return _run_round({"run": Job(lambda w, r: args)}, tmp_path / "jobs")["run"][0]


def test_a_full_cache_disk_warns_once_and_the_run_carries_on_uncached(full_disk, tmp_path):
    proc = _full_disk_run(tmp_path, cache=full_disk / "cache")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("cannot be written") == 1, proc.stderr
    assert "No space left on device" in proc.stderr and "--cache-dir" in proc.stderr
    forecasts = pd.read_csv(tmp_path / "out" / "forecasts.csv")
    assert forecasts["pred_return"].notna().sum() > 100  # the results are all there
    assert not list((full_disk / "cache").rglob("*.npz")) and not list((full_disk / "cache").rglob("*.tmp"))


def test_a_full_price_cache_disk_warns_once_and_serves_the_download(full_disk):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for ticker in ("ACME", "BETA"):
            frame = load_prices(ticker, start="2019-01-01", end="2019-12-31", cache_dir=full_disk / "cache",
                                fetcher=_fake_yahoo)[ticker]
            assert len(frame) > 200
    unwritable = [w for w in caught if "cannot be written" in str(w.message)]
    assert len(unwritable) == 1 and "price cache" in str(unwritable[0].message), [str(w.message) for w in caught]


def test_a_full_out_disk_is_one_line_exit_2_and_leaves_no_partial_results(full_disk, tmp_path):
    proc = _full_disk_run(tmp_path, out=full_disk / "out")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "No space left on device" in lines[0] and "--out" in lines[0] and "removed" in lines[0]
    left = [p for p in full_disk.rglob("*") if p.name != "filler"]
    assert left == [], f"partial results left behind: {left}"


# --------------------------------------------------------------------------- 8. clear errors, lists that add up


@pytest.mark.parametrize("command", ["backtest", "evaluate", "tune"])
@pytest.mark.parametrize("flag, first, second", [
    ("--csv", ["a.csv"], ["b.csv", "c.csv"]), ("--sample", ["IBM"], ["MSFT"]), ("--tickers", ["IBM"], ["MSFT"]),
    ("--features", ["volume"], ["rsi:14,range"]),
])
def test_a_repeated_list_flag_adds_to_the_list_in_every_command(command, flag, first, second):
    args = build_parser().parse_args([command, flag, *first, flag, *second])
    value = getattr(args, flag.removeprefix("--"))
    expected = ("volume", "rsi:14", "range") if flag == "--features" else [*first, *second]
    assert tuple(value) == tuple(expected)


def test_a_feature_period_written_with_a_superscript_digit_is_a_config_error():
    for spec in ("rsi:²", "sma_ratio:1²", "volatility:٣"):
        with pytest.raises(ConfigError, match=re.escape(repr(spec)) + ".*whole number"):
            parse_features(spec)
    with pytest.raises(ConfigError, match="whole number"):
        backtest(load_sample("IBM", start="2012-01-01"), features="rsi:²", **LIB)


def _config_naming(path: str):
    def build(w, root):
        w.mkdir(parents=True, exist_ok=True)
        cfg = {"data": {"source": "csv", "files": [{"name": "ACME", "path": path, "sha256": "0" * 64}]}}
        (w / "config.json").write_text(json.dumps(cfg))
        return ["backtest", "--config", str(w / "config.json"), "--no-plot", "--quiet", "--out", str(w / "out"),
                "--cache-dir", str(w / "cache")]
    return build


ERRORS3 = {  # job -> (argv builder, fragments its one stderr line names); exit 2, no traceback, nothing written
    "interval-method-without-interval": (
        lambda w, r: ["backtest", "--sample", "IBM", *CLI_TINY, "--interval-method", "aci", "--no-plot", "--out",
                      str(w / "out"), "--cache-dir", str(w / "cache")],
        ("--interval-method aci", "no --interval", "--interval 0.8")),
    "config-data-dev-zero": (_config_naming("/dev/zero"), ("'/dev/zero'", "not a regular file", "--csv")),
    "features-repeated-twice": (
        lambda w, r: ["backtest", "--sample", "IBM", *CLI_TINY, "--features", "volume", "--features", "volume",
                      "--no-plot", "--out", str(w / "out"), "--cache-dir", str(w / "cache")],
        ("'volume'", "listed twice")),
}


@pytest.fixture(scope="module")
def cli3(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli3")
    return _run_round({job: Job(build) for job, (build, _) in ERRORS3.items()}, root)


@pytest.mark.parametrize("job", sorted(ERRORS3))
def test_cli_case_exits_2_with_one_line_naming_value_and_fix(cli3, job):
    assert_one_line_error(*cli3[job], ERRORS3[job][1])


# --------------------------------------------------------------------------- 4. intraday bars


def _intraday(bars_per_day: int, minutes: int, days: int, tz: str | None = None) -> pd.DataFrame:
    frame = ohlcv_frame(synthetic_closes(bars_per_day * days, seed=9, vol=0.002))
    stamps = [day + pd.Timedelta(minutes=570 + minutes * k) for day in pd.bdate_range("2021-03-01", periods=days)
              for k in range(bars_per_day)]
    frame.index = pd.DatetimeIndex(stamps, name="date")
    if tz:
        frame.index = frame.index.tz_localize(tz)
    return frame


@pytest.mark.parametrize("bars_per_day, minutes, days", [(78, 5, 6), (7, 60, 60)])
def test_intraday_bars_are_annualised_by_the_bars_a_year_not_as_days(bars_per_day, minutes, days, tmp_path):
    res = backtest({"ACME": _intraday(bars_per_day, minutes, days)}, entry=0.0, exit=0.0, allow_short=True,
                   **{**LIB, "min_train": 200, "train_window": 200, "retrain_every": 200})
    per_year = bars_per_day * 252
    assert res.metrics["periods_per_year"] == per_year
    assert f"{bars_per_day} a day" in res.metrics["periods_per_year_basis"]
    returns = res.returns("strategy")
    assert len(returns) > 100 and returns.std() > 0
    expected = returns.mean() / returns.std(ddof=0) * math.sqrt(per_year)
    assert res.metrics["sharpe"] == pytest.approx(expected, rel=1e-9)
    assert res.metrics["volatility"] == pytest.approx(returns.std(ddof=0) * math.sqrt(per_year), rel=1e-9)
    summary = res.summary()
    assert "daily returns" not in summary and f"{per_year:,} bars a year" in summary
    res.save(tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["portfolio"]["periods_per_year"] == per_year
    assert "intraday" in saved["portfolio"]["periods_per_year_basis"]
    # Given, it is used as given.
    given = backtest({"ACME": _intraday(bars_per_day, minutes, days)}, entry=0.0, exit=0.0, allow_short=True,
                     periods_per_year=252, **{**LIB, "min_train": 200, "train_window": 200, "retrain_every": 200})
    assert given.metrics["periods_per_year"] == 252 and given.metrics["sharpe"] == pytest.approx(
        expected / math.sqrt(bars_per_day), rel=1e-9)


# --------------------------------------------------------------------------- 7. long-format CSV files


def _long_csv(path: Path) -> dict:
    frames = {t: ohlcv_frame(synthetic_closes(260, seed=s)) for t, s in (("AAA", 1), ("BBB", 2))}
    rows = pd.concat([f.reset_index().assign(symbol=t) for t, f in frames.items()])
    rows[["symbol", "date", "open", "high", "low", "close", "volume"]].to_csv(path, index=False)
    return frames


def test_a_long_format_csv_reads_as_one_ticker_per_symbol(tmp_path):
    frames = _long_csv(tmp_path / "stacked.csv")
    read = load_csv_symbols(tmp_path / "stacked.csv")
    assert list(read) == ["AAA", "BBB"]
    for ticker, frame in frames.items():
        np.testing.assert_allclose(read[ticker]["close"], frame["close"], rtol=1e-12)
        assert (read[ticker].index == frame.index).all()
    with pytest.raises(DataError, match=r"column 'symbol' holds 2 tickers \('AAA', 'BBB'\).*load_csv_symbols"):
        load_csv(tmp_path / "stacked.csv")
    resolved, _ = resolve_data({"stacked": str(tmp_path / "stacked.csv")})
    assert list(resolved) == ["AAA", "BBB"]


def test_cli_csv_of_a_long_format_file_runs_every_symbol(tmp_path):
    _long_csv(tmp_path / "stacked.csv")
    args = ["backtest", "--csv", str(tmp_path / "stacked.csv"), *CLI_TINY, "--no-plot", "--quiet", "--out",
            str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    proc = _run_round({"long": Job(lambda w, r: args)}, tmp_path / "jobs")["long"][0]
    assert proc.returncode == 0, proc.stderr
    forecasts = pd.read_csv(tmp_path / "out" / "forecasts.csv")
    assert sorted(forecasts["ticker"].unique()) == ["AAA", "BBB"]


# --------------------------------------------------------------------------- 3. the rank strategy

RANK = {**LIB, "min_train": 100, "train_window": 100, "retrain_every": 100}


def _rank_run(**options):
    frames = {t: df.iloc[-500:] for t, df in load_sample().items()}
    return backtest(frames, strategy="rank", top_k=2, store=False, **{**RANK, **options})


@pytest.fixture(scope="module")
def busy_rank():
    """Daily rebalancing at a 2% commission: every exit's commission and every buy's own used to be left out of the
    sizing (39 orders rejected for cash on this run)."""
    return _rank_run(rebalance_every=1, commission=0.02)


@pytest.mark.parametrize("every", [7, 10_000])
def test_the_rank_strategy_rebalances_first_at_the_first_forecast_bar_then_every_n(every):
    res = _rank_run(rebalance_every=every)
    first_forecast = res.forecasts["date"].min()
    dates = [pd.Timestamp(r["date"]) for r in res.strategy.rebalances]
    assert dates[0] == first_forecast  # not min_train bars of data later, and a huge N still trades once
    bars = list(res.equity.index)
    assert [bars.index(d) - bars.index(dates[0]) for d in dates] == list(range(0, len(bars) - bars.index(dates[0]),
                                                                              every))
    assert res.metrics["trades"] + res.metrics["open_positions"] >= 1


def test_the_rank_strategy_sizes_buys_from_what_the_sells_free_after_commission(busy_rank):
    assert busy_rank.metrics["trades"] >= 10
    assert busy_rank.metrics["rejected"] == []


def test_the_rank_strategys_per_ticker_attribution_is_pnl_over_the_capital_used(busy_rank):
    for ticker, row in busy_rank.per_ticker.iterrows():
        own = busy_rank.trades[busy_rank.trades["ticker"] == ticker]
        capital = (own["entry_price"] * own["size"].abs()).sum()
        assert row["total_return"] == pytest.approx(own["pnl_net"].sum() / capital, rel=1e-12)
        assert row["total_return"] >= -1.0  # a long-only name cannot lose more than the capital it used
        assert math.isnan(row["max_drawdown"]) and "capital they used" in row["stats_note"]


def test_the_rank_strategys_trades_page_is_titled_for_it_with_no_threshold_lines(busy_rank, tmp_path):
    page = busy_rank.plot(tmp_path, fmt="html")
    rendered = render(page, tmp_path)
    assert "rank strategy (top 2)" in rendered.title and "threshold" not in rendered.title
    assert "hold the top 2 by predicted return" in rendered.text
    assert "+0.50%" not in rendered.text and "threshold lines" not in rendered.text


def test_time_zone_aware_stamps_are_labelled_as_the_utc_they_are_written_in(tmp_path):
    bars = _intraday(7, 60, 60, tz="America/New_York")
    res = backtest({"ACME": bars}, **{**LIB, "min_train": 200, "train_window": 200, "retrain_every": 200})
    res.save(tmp_path)
    label = "UTC, converted from America/New_York"
    assert json.loads((tmp_path / "metrics.json").read_text())["period"]["timestamps"] == {"ACME": label}
    assert f"times are {label} (ACME)" in res.summary()
    written = pd.to_datetime(pd.read_csv(tmp_path / "equity.csv")["date"])
    assert (written.to_numpy() == bars.index.tz_convert("UTC").tz_localize(None).to_numpy()).all()


@pytest.mark.parametrize("delay", [0.3, 1.0])
def test_ctrl_c_while_the_cli_starts_up_is_one_line_and_exit_130(tmp_path, delay):
    # Importing torch, pandas and Backtrader takes the CLI's first seconds; Ctrl-C there printed a traceback.
    proc = subprocess.Popen([sys.executable, "-m", "puffin_bt.cli", "backtest", "--sample", "IBM", "--no-plot",
                             "--out", str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path, env=_cli_env())
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["puffin-bt: interrupted"], err


def test_an_adaptive_interval_method_without_an_interval_is_a_config_error_in_the_library_too():
    from puffin_bt.walkforward import make_walk_forward

    for method in ("aci", "vol"):
        with pytest.raises(ConfigError, match=f"interval_method='{method}'.*interval=0.8"):
            make_walk_forward("lstm", interval_method=method)
    assert make_walk_forward("lstm", interval_method="vol", interval=0.8).uncertainty.interval_method == "vol"
