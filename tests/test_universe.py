"""Tickers walked forward together (lockstep, their folds batched across tickers) give each ticker's own forecasts,
bit for bit; the ticker pool's tasks are groups of tickers; stored forecasts are keyed by the device that
computed them; workers="auto" is one process per GPU."""

from __future__ import annotations

import numpy as np
import pytest

from puffin_bt import DataError, fitting
from puffin_bt.dates import date_numbers_of
from puffin_bt.store import ForecastStore, fingerprint
from puffin_bt.tickers import plan_groups, precompute_forecasts, resolve_workers
from puffin_bt.universe import forecast_together
from puffin_bt.walkforward import feature_matrix, make_walk_forward

from .conftest import TINY, ohlcv_frame, regime_closes

PARAMS = {**TINY, "device": "cpu", "fold_workers": 1}


def universe() -> dict:
    """Four tickers of three lengths and staggered first dates: fold k falls on the same bar position of each."""
    return {
        "UP": ohlcv_frame(regime_closes(seed=1)),
        "DOWN": ohlcv_frame(regime_closes(((90, -0.004), (90, 0.004), (80, -0.004)), seed=2), start="2019-06-03"),
        "LATE": ohlcv_frame(regime_closes(((120, 0.003), (80, -0.003)), seed=3), start="2020-03-02"),
        "FLAT": ohlcv_frame(regime_closes(((150, 0.0), (90, 0.002)), seed=4), start="2020-01-15"),
    }


@pytest.fixture
def batch_sizes(monkeypatch) -> list[int]:
    """How many folds (of any tickers) each batched-engine call trained; a fold's ensemble members count once."""
    sizes: list[int] = []
    real = fitting.train_jobs

    def spy(config, jobs, device, residuals=False):
        sizes.append(len(jobs))
        return real(config, jobs, device, residuals)

    monkeypatch.setattr(fitting, "train_jobs", spy)
    return sizes


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("refit", [1, None], ids=["warm", "cold"])
@pytest.mark.parametrize("features", [(), ("range", "rsi:5")], ids=["closes", "features"])
@pytest.mark.parametrize("ensemble", [1, 2])
def test_tickers_walked_forward_together_equal_each_walked_forward_alone(cell, refit, features, ensemble, batch_sizes):
    options = {**PARAMS, "refit_epochs": refit, "features": features, "ensemble": ensemble}
    data = [feature_matrix(df, features) for df in universe().values()]
    alone = [make_walk_forward(cell, **options) for _ in data]
    expected = [walk.forecast_lines(closes, 0, len(closes), features=rows) for walk, (closes, rows, _) in zip(alone, data)]
    batch_sizes.clear()
    walks = [make_walk_forward(cell, **options) for _ in data]
    together = forecast_together(walks, [closes for closes, _, _ in data], None, [rows for _, rows, _ in data])
    for lines, reference, walk, walk_alone in zip(together, expected, walks, alone):
        assert np.isfinite(reference[:, 0]).sum() >= 100
        np.testing.assert_array_equal(lines, reference)  # bit for bit, every line (mean, spread, interval)
        assert [f.val_loss for f in walk.folds] == [f.val_loss for f in walk_alone.folds]
    # The four tickers' folds trained in batches: the cold first folds, every warm refit on the engine (GRU,
    # ensembles: fold k of each ticker together), cold refits several folds ahead; a warm refit of one LSTM
    # stays on nn.LSTM, one ticker at a time, as in its own walk-forward.
    if refit is not None and cell == "lstm" and ensemble == 1:
        assert batch_sizes == [4]
    elif refit is not None:
        assert max(batch_sizes) == 4 and len(batch_sizes) >= 5
    else:
        assert min(batch_sizes) >= 2 and sum(batch_sizes) == sum(len(w.folds) for w in walks)


def test_tickers_whose_folds_differ_in_shape_train_in_separate_batches_with_the_same_forecasts(batch_sizes):
    """A feature that starts later for one ticker leaves it fewer complete training windows in its first folds."""
    frames = universe()
    names = ("input0",)
    data = []
    for i, df in enumerate(frames.values()):
        values = np.log(df["close"].to_numpy()).reshape(-1, 1) - 4.0
        if i == 0:
            values[:30] = np.nan  # starts 30 bars late
        data.append((df["close"].to_numpy(dtype=float), values))
    options = {**PARAMS, "refit_epochs": 1}
    expected = [make_walk_forward("gru", inputs=names, **options).forecast_lines(c, 0, len(c), features=f) for c, f in data]
    batch_sizes.clear()
    got = forecast_together([make_walk_forward("gru", inputs=names, **options) for _ in data],
                            [c for c, _ in data], None, [f for _, f in data])
    for lines, reference in zip(got, expected):
        np.testing.assert_array_equal(lines, reference)
    assert batch_sizes[:2] == [1, 3]  # fold 0: the late ticker alone, the three others together


def test_a_ticker_that_fails_in_lockstep_fails_alone_with_its_own_message():
    frames = universe()
    closes = {name: df["close"].to_numpy(dtype=float) for name, df in frames.items()}
    broken = closes["DOWN"].copy()
    broken[150] = np.nan  # after a few folds: it has trained, then fails mid-series
    with pytest.raises(DataError) as alone:
        make_walk_forward("gru", **PARAMS).forecast_lines(broken, 0, len(broken))
    series = [closes["UP"], broken, closes["LATE"]]
    got = forecast_together([make_walk_forward("gru", **PARAMS) for _ in series], series)
    assert isinstance(got[1], DataError) and str(got[1]) == str(alone.value)
    for lines, c in ((got[0], closes["UP"]), (got[2], closes["LATE"])):
        np.testing.assert_array_equal(lines, make_walk_forward("gru", **PARAMS).forecast_lines(c, 0, len(c)))


def stored(store: ForecastStore, frames: dict, model: str = "lstm", **options) -> dict:
    walk = make_walk_forward(model, **options)
    out = {}
    for name, df in frames.items():
        hit = store.load(fingerprint(walk, df["close"].to_numpy(dtype=float), date_numbers_of(df.index)))
        out[name] = None if hit is None else hit[0]
    return out


@pytest.mark.parametrize("executor, workers", [("serial", None), ("local", 2)])
def test_the_ticker_pool_groups_tickers_into_tasks_with_the_forecasts_of_one_ticker_per_task(tmp_path, executor,
                                                                                            workers):
    frames = universe()
    options = {**PARAMS, "refit_epochs": 1}
    alone = precompute_forecasts(frames, "gru", ForecastStore(tmp_path / "alone"), executor, workers,
                                 tickers_per_task=1, **options)
    together = precompute_forecasts(frames, "gru", ForecastStore(tmp_path / "together"), executor, workers, **options)
    assert (alone.tasks, sorted(alone.computed)) == (4, sorted(frames))
    assert together.tasks == (2 if executor == "local" else 1) and sorted(together.computed) == sorted(frames)
    a, b = stored(ForecastStore(tmp_path / "alone"), frames, "gru", **options), \
        stored(ForecastStore(tmp_path / "together"), frames, "gru", **options)
    for name in frames:
        assert a[name] is not None and np.isfinite(a[name][:, 0]).sum() >= 100
        np.testing.assert_array_equal(b[name], a[name])


def test_plan_groups_fills_a_batch_but_leaves_no_worker_idle_and_keeps_options_apart():
    frames = universe()
    from puffin_bt.tickers import ForecastTask

    def tasks(n, **extra):
        return [ForecastTask(f"T{i}{extra}", frames["UP"]["close"].to_numpy(), np.zeros(260), "lstm",
                             {**PARAMS, **extra}) for i in range(n)]

    assert [len(g) for g in plan_groups(tasks(40), "lstm", 2)] == [8] * 5  # a full batch of the engine per task
    assert [len(g) for g in plan_groups(tasks(6), "lstm", 2)] == [3, 3]  # both workers busy
    assert [len(g) for g in plan_groups(tasks(40, ensemble=2), "lstm", 2)] == [4] * 10  # 4 tickers x 2 members
    mixed = plan_groups(tasks(3) + tasks(3, seed=7), "lstm", 1)
    assert sorted(len(g) for g in mixed) == [3, 3] and all(len({t.options.get("seed") for t in g}) == 1 for g in mixed)
    assert [len(g) for g in plan_groups(tasks(5), "lstm", 2, tickers_per_task=1)] == [1] * 5


def test_auto_workers_are_no_more_than_the_free_memory_holds(tmp_path, monkeypatch):
    """Each worker's estimate is one full batch's training scratch plus 64 MiB; "auto" keeps them within half
    the free memory, at least one (then everything runs in this process)."""
    from puffin_bt import tickers

    pooled = []
    monkeypatch.setattr(tickers, "_run_local", lambda *args, **kwargs: pooled.append(args))
    frames = universe()
    monkeypatch.setattr(tickers, "available_memory", lambda: 100 * 2**20)
    report = precompute_forecasts(frames, "gru", ForecastStore(tmp_path / "a"), "local", "auto", **PARAMS)
    assert not pooled and sorted(report.computed) == sorted(frames)  # one worker: this process
    monkeypatch.setattr(tickers, "available_memory", lambda: 64 * 2**30)
    precompute_forecasts(frames, "gru", ForecastStore(tmp_path / "b"), "local", "auto", **PARAMS)
    assert len(pooled) == 1 and pooled[0][1] == 2  # two groups, two workers


def test_a_worker_exception_fails_its_ticker_only_and_stores_nothing_for_it(tmp_path, monkeypatch):
    """An unexpected error inside one ticker's walk-forward (not a PuffinError) is that ticker's report."""
    from puffin_bt import walkforward

    frames = universe()
    target = frames["LATE"]["close"].iloc[0]
    real = walkforward.fold_data

    def failing(cfg, closes, *args, **kwargs):
        if closes[0] == target and len(closes) > 150:
            raise RuntimeError("out of cheese")
        return real(cfg, closes, *args, **kwargs)

    monkeypatch.setattr(walkforward, "fold_data", failing)
    store = ForecastStore(tmp_path)
    report = precompute_forecasts(frames, "gru", store, "serial", **{**PARAMS, "refit_epochs": 1})
    assert report.failed == {"LATE": "RuntimeError: out of cheese"} and sorted(report.computed) == ["DOWN", "FLAT", "UP"]
    entries = stored(store, frames, "gru", **{**PARAMS, "refit_epochs": 1})
    assert entries["LATE"] is None and all(entries[t] is not None for t in ("DOWN", "FLAT", "UP"))
    assert sorted(p.name for p in store.root.iterdir()) == sorted(f"{k}.npz" for k in _keys(frames, ("DOWN", "FLAT", "UP")))


def _keys(frames, names, model="gru", **options):
    walk = make_walk_forward(model, **{**PARAMS, "refit_epochs": 1, **options})
    return [fingerprint(walk, frames[n]["close"].to_numpy(dtype=float), date_numbers_of(frames[n].index)) for n in names]


def test_forecasts_are_stored_under_the_device_that_computed_them(tmp_path, monkeypatch):
    """A worker that computed on a GPU (faked here: the device it reports) has its forecasts stored under a CUDA
    key, never the CPU key the driver would compute; device="auto" reads them, device="cpu" does not."""
    from puffin_bt import tickers
    from puffin_bt.backtesting import backtest

    frames = {k: v for k, v in universe().items() if k in ("UP", "DOWN")}
    options = {**PARAMS, "refit_epochs": 1, "device": "auto"}
    monkeypatch.setattr(tickers, "device_of", lambda walk: "cuda")
    store = ForecastStore(tmp_path)
    report = precompute_forecasts(frames, "lstm", store, "serial", **options)
    assert sorted(report.computed) == ["DOWN", "UP"]
    auto = make_walk_forward("lstm", **options)
    for df in frames.values():
        closes, numbers = df["close"].to_numpy(dtype=float), date_numbers_of(df.index)
        assert store.load(fingerprint(auto, closes, numbers)) is None  # this driver's own (CPU) key
        assert store.load(fingerprint(auto, closes, numbers, device="cuda")) is not None
        assert store.lookup(auto, closes, numbers)[1] is not None
        assert store.lookup(make_walk_forward("lstm", **{**options, "device": "cpu"}), closes, numbers)[1] is None
    monkeypatch.undo()
    again = precompute_forecasts(frames, "lstm", store, "serial", **options)
    assert sorted(again.cached) == ["DOWN", "UP"]
    result = backtest(frames, model="lstm", store=store, workers=2, **options)
    assert (store.hits, store.misses) == (2, 0) and len(result.forecasts) >= 200


def test_workers_auto_is_one_process_per_gpu_on_a_cuda_machine(monkeypatch):
    import torch

    from puffin_bt import tickers

    monkeypatch.setattr(tickers, "available_cpus", lambda: 16)
    assert resolve_workers("auto", 40, "auto") == 16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_workers("auto", 40, "auto") == 2
    assert resolve_workers("auto", 40, "cuda") == 2
    assert resolve_workers("auto", 40, "cpu") == 16  # CPU work still takes every core
    assert resolve_workers(1, 40, "auto") == 1  # an explicit number is the caller's (capped at the real cores)



# ---------------------------------------------------------------------------------------------- bad input at scale

CLI_FLAGS = ["--hidden-dim", "4", "--num-layers", "1", "--epochs", "1", "--refit-epochs", "1", "--lookback", "10",
             "--min-train", "120", "--train-window", "160", "--retrain-every", "60", "--device", "cpu",
             "--workers", "1", "--no-plot", "--start", "2011-01-01", "--end", "2013-03-01"]


def _csv(path, df):
    df.rename_axis("date").to_csv(path)
    return str(path)


def test_skip_failed_reports_and_skips_a_broken_csv_file_and_runs_the_others(tmp_path, capsys):
    import json

    from puffin_bt import cli, load_sample

    sample = load_sample(["IBM", "MSFT"], start="2011-01-01")
    broken = sample["IBM"].copy()
    broken.iloc[40, broken.columns.get_loc("close")] = np.nan
    files = [_csv(tmp_path / "GOOD1.csv", sample["IBM"]), _csv(tmp_path / "GOOD2.csv", sample["MSFT"]),
             _csv(tmp_path / "BROKEN.csv", broken)]
    out = tmp_path / "out"
    code = cli.main(["backtest", "--csv", *files, "--skip-failed", "--out", str(out), "--cache-dir",
                     str(tmp_path / "cache"), *CLI_FLAGS])
    said = capsys.readouterr()
    assert code == 0, said.err
    assert "skipped 1 ticker(s):\n  BROKEN: " in said.out and "NaN" in said.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert sorted(metrics["per_ticker"]) == ["GOOD1", "GOOD2"]
    assert list(metrics["skipped"]) == ["BROKEN"] and "BROKEN" in metrics["skipped"]["BROKEN"]
    assert "NaN" in metrics["skipped"]["BROKEN"]
    code = cli.main(["backtest", "--csv", *files, "--out", str(tmp_path / "o2"), *CLI_FLAGS])  # no --skip-failed
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "BROKEN" in err[0] and "NaN" in err[0]


def test_a_universe_file_of_ten_thousand_lines_with_repeats_reports_each_failure(tmp_path, capsys, monkeypatch):
    """Two cached tickers (one listed twice) among 9,997 that fail to download (the network to Yahoo is mocked:
    refused at once): the run trades the two, and each failure is reported with its reason."""
    import json

    from puffin_bt import cli, load_prices, load_sample
    from puffin_bt.data import yahoo
    from puffin_bt.errors import NetworkError

    cache = tmp_path / "cache"
    sample = load_sample(["IBM", "MSFT"], start="2011-01-01")
    load_prices(["IBM", "MSFT"], start="2011-01-01", end="2013-03-01", cache_dir=cache,
                fetcher=lambda ticker, start, end: sample[ticker])

    def offline(ticker, start, end):
        raise NetworkError(f"cannot reach Yahoo for {ticker!r}")

    monkeypatch.setattr(yahoo, "_yfinance_fetcher", offline)
    unknown = [f"X{i:04d}" for i in range(9997)]
    universe = tmp_path / "universe.txt"
    universe.write_text("\n".join(["# 10,000 lines", "IBM", *unknown[:5000], "MSFT", "IBM", *unknown[5000:]]) + "\n")
    out = tmp_path / "out"
    code = cli.main(["backtest", "--tickers-file", str(universe), "--out", str(out), "--cache-dir", str(cache),
                     *CLI_FLAGS])
    said = capsys.readouterr()
    assert code == 0, said.err
    assert "lists 1 ticker(s) more than once (IBM x2); each runs once" in said.err
    assert "skipped 9997 ticker(s):\n  X0000: " in said.out and "and 9977 more (metrics.json lists every one)" in said.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert sorted(metrics["per_ticker"]) == ["IBM", "MSFT"]
    assert sorted(metrics["skipped"]) == unknown
    assert all(f"cannot reach Yahoo for '{t}'" in why for t, why in metrics["skipped"].items())
    nothing = tmp_path / "nothing.txt"
    nothing.write_text("\n".join(unknown) + "\n")
    code = cli.main(["backtest", "--tickers-file", str(nothing), "--out", str(tmp_path / "o2"), "--cache-dir",
                     str(cache), *CLI_FLAGS])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and len(err[0]) < 1000
    assert "no ticker could be loaded: 9997 failed: X0000 (" in err[0] and "and 9992 more" in err[0]


def test_a_universe_whose_every_ticker_fails_to_forecast_is_one_clear_error(tmp_path):
    from puffin_bt.backtesting import backtest

    short = {f"S{i}": ohlcv_frame(regime_closes(((30 + i, 0.001),), seed=i)) for i in range(8)}
    with pytest.raises(DataError, match=r"no ticker left to backtest: 8 failed: S0 \(S0 has 30 bars .*; and 3 more"):
        backtest(short, store=False, skip_failed=True, **PARAMS)
    report = precompute_forecasts(short, "lstm", ForecastStore(tmp_path), "local", 2, **PARAMS)
    assert sorted(report.failed) == sorted(short) and not report.computed
    assert all("min_train=60" in why for why in report.failed.values())
    assert not (tmp_path / "forecasts").exists() or not list((tmp_path / "forecasts").iterdir())
