"""From backtest to paper trading: the traded model saved and loaded, a live-style feed that resumes after a
restart from the folds it saved, and ``puffin-bt forecast``, the daily job of a paper trader."""

from __future__ import annotations

import queue

import backtrader as bt
import numpy as np
import pytest

from puffin_bt import CheckpointError, ConfigError
from puffin_bt.adapters.feeds import QueueData
from puffin_bt.adapters.indicators import GRUForecast, LSTMForecast
from puffin_bt.forecaster import RNNForecaster, TradingGRU, TradingLSTM
from puffin_bt.walkforward import WalkForward

from .conftest import TINY, assert_same_forecasts, ohlcv_frame, synthetic_closes

KWARGS = {**TINY, "device": "cpu"}
MODES = {"runonce": dict(runonce=True, preload=True), "runnext": dict(runonce=False, preload=True),
         "no-preload": dict(runonce=False, preload=False)}


class One(bt.Strategy):
    params = (("indicator", LSTMForecast), ("kwargs", None))

    def __init__(self):
        self.fc = self.p.indicator(self.data, **(self.p.kwargs or KWARGS))


def run_one(feed, mode="runnext", **kwargs):
    cerebro = bt.Cerebro(stdstats=False, **MODES[mode])
    cerebro.adddata(feed)
    cerebro.addstrategy(One, **kwargs)
    return cerebro.run()[0].fc


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("indicator, loader", [(LSTMForecast, TradingLSTM), (GRUForecast, TradingGRU)])
def test_a_saved_indicator_model_loads_and_predicts_its_last_forecast(mode, indicator, loader, tmp_path):
    closes = synthetic_closes(190, seed=21)
    fc = run_one(bt.feeds.PandasData(dataname=ohlcv_frame(closes)), mode, indicator=indicator,
                 kwargs={**KWARGS, "refit_epochs": None if mode == "runonce" else 1})
    path = fc.save_model(tmp_path / "model.pt")
    for cls in (RNNForecaster, loader):
        model = cls.load(path)
        assert type(model) is loader and model.config_ == fc.config
        predicted = model.predict(closes)[0] / closes[-1] - 1.0
        assert predicted == pytest.approx(fc.pred_return[0], rel=1e-9, abs=1e-12)
    other = TradingGRU if loader is TradingLSTM else TradingLSTM
    with pytest.raises(CheckpointError, match="holds a"):
        other.load(path)


def test_saving_to_a_path_that_cannot_be_written_is_a_clear_error_and_leaves_nothing(tmp_path):
    fc = run_one(bt.feeds.PandasData(dataname=ohlcv_frame(synthetic_closes(120, seed=22))))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        fc.save_model(blocker / "model.pt")
    (tmp_path / "taken.pt").mkdir()
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        fc.save_model(tmp_path / "taken.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "taken.pt"]
    assert not any((tmp_path / "taken.pt").iterdir())


def test_save_model_before_any_fold_or_after_a_store_hit_says_why_there_is_no_network(tmp_path):
    from puffin_bt.store import ForecastStore

    short = run_one(bt.feeds.PandasData(dataname=ohlcv_frame(synthetic_closes(50, seed=23))))
    with pytest.raises(ConfigError, match="no fold has been trained yet"):
        short.save_model(tmp_path / "m.pt")
    store = ForecastStore(tmp_path / "store")
    frame = ohlcv_frame(synthetic_closes(120, seed=23))
    for _ in range(2):  # the second run reads the stored forecasts
        fc = run_one(bt.feeds.PandasData(dataname=frame), "runonce", kwargs={**KWARGS, "store": store})
    with pytest.raises(ConfigError, match="store=False"):
        fc.save_model(tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def live_feed(frame, first=0, last=None):
    """A live-style feed: the bars ``first .. last-1`` of ``frame`` put on a queue one at a time."""
    bars = queue.Queue()
    for stamp, row in frame.iloc[first:last].iterrows():
        bars.put((stamp, row.open, row.high, row.low, row.close, row.volume))
    bars.put(None)
    return QueueData(dataname=bars, poll=0.0)


@pytest.mark.parametrize("refit_epochs", [1, None])
def test_a_restarted_live_run_reads_its_saved_folds_back_and_forecasts_as_an_uninterrupted_one(
        refit_epochs, tmp_path, monkeypatch):
    frame = ohlcv_frame(synthetic_closes(230, seed=24))
    kwargs = {**KWARGS, "refit_epochs": refit_epochs}
    uninterrupted = run_one(live_feed(frame), kwargs={**kwargs, "model_dir": tmp_path / "a"})
    expected = np.array(uninterrupted.pred_return.array[:230])
    trained = []
    original = WalkForward.train_fold

    def counting(self, history, *args, **kw):  # counts the folds trained for real, then trains them
        trained.append(len(history) - 1)
        return original(self, history, *args, **kw)

    monkeypatch.setattr(WalkForward, "train_fold", counting)
    before = run_one(live_feed(frame, last=150), kwargs={**kwargs, "model_dir": tmp_path / "b"})  # killed at 150
    assert trained == [59, 99, 139] and len(list((tmp_path / "b").glob("fold-*.pt"))) == 3
    assert_same_forecasts(np.array(before.pred_return.array[:150]), expected[:150], min_finite=91, atol=0)
    trained.clear()
    after = run_one(live_feed(frame), kwargs={**kwargs, "model_dir": tmp_path / "b"})  # restarted on every bar
    assert trained == [179, 219]  # the three saved folds were read back, not trained
    assert [f.bar for f in after.folds] == [59, 99, 139, 179, 219]
    assert_same_forecasts(np.array(after.pred_return.array[:230]), expected, min_finite=171, atol=0)


def test_a_saved_fold_of_another_model_is_a_clear_error(tmp_path):
    from puffin_bt.checkpoint import read_fold
    from puffin_bt.options import ModelConfig

    fc = run_one(bt.feeds.PandasData(dataname=ohlcv_frame(synthetic_closes(120, seed=25))))
    path = fc.save_model(tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="another model .*hidden_dim=4"):
        read_fold(path, ModelConfig(**{**fc.config.to_dict(), "hidden_dim": 8}), fc.walk.device)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A model file saved by an indicator that traded on the bundled IBM sample, and that sample."""
    from puffin_bt import load_sample

    frame = load_sample(["IBM"], start="2012-01-01", end="2013-12-31")["IBM"]
    fc = run_one(bt.feeds.PandasData(dataname=frame), "runonce", kwargs={**KWARGS, "refit_epochs": None})
    path = fc.save_model(tmp_path_factory.mktemp("model") / "ibm-lstm.pt")
    return path, frame, float(fc.pred_return[0])


def forecast_cli(*argv):
    from puffin_bt.cli import main

    return main(["forecast", *map(str, argv)])


def test_cli_forecast_prints_and_appends_the_indicators_last_forecast_and_signal(saved_model, tmp_path, capsys):
    import pandas as pd

    path, frame, last = saved_model
    csv = tmp_path / "ibm.csv"
    frame.iloc[:-1].to_csv(csv)  # yesterday's job
    out = tmp_path / "signals.csv"
    assert forecast_cli("--model-file", path, "--csv", csv, "--out", out, "--entry", "0", "--exit", "0") == 0
    frame.to_csv(csv)  # today's job, one bar more: a row appended
    assert forecast_cli("--model-file", path, "--csv", csv, "--out", out, "--entry", "0", "--exit", "0") == 0
    assert forecast_cli("--model-file", path, "--csv", csv, "--out", out, "--entry", "0", "--exit", "0") == 0  # rerun
    printed = capsys.readouterr().out
    log = pd.read_csv(out)
    assert list(log["date"]) == [str(frame.index[-2].date()), str(frame.index[-1].date())]  # the rerun replaced
    assert log["pred_return"].iloc[-1] == pytest.approx(last, rel=1e-9)  # the backtest's last forecast
    assert log["signal"].iloc[-1] == ("buy" if last > 0 else "sell") and (log["ticker"] == "ibm").all()
    assert f"{last:+.4%}" in printed and "appended to" in printed


@pytest.mark.parametrize("case", ["unwritable out", "another architecture", "too short", "not a model"])
def test_cli_forecast_bad_input_is_one_line_exit_2_and_nothing_written(case, saved_model, tmp_path, capsys):
    path, frame, _ = saved_model
    csv = tmp_path / "ibm.csv"
    frame.iloc[: 3 if case == "too short" else None].to_csv(csv)
    out = tmp_path / "signals.csv"
    argv = ["--model-file", path, "--csv", csv, "--out", out]
    if case == "unwritable out":
        (tmp_path / "blocker").write_text("a file, not a folder")
        argv[-1] = out = tmp_path / "blocker" / "signals.csv"
    elif case == "another architecture":
        argv += ["--model", "gru"]
    elif case == "not a model":
        argv[1] = csv
    assert forecast_cli(*argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert {"unwritable out": "cannot be written", "another architecture": "holds a LSTM model",
            "too short": "has 3 bar(s)", "not a model": "ibm.csv' would need unpickling"}[case] in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["ibm.csv", *(["blocker"] if case == "unwritable out" else [])])


def test_model_dir_in_a_runonce_cerebro_is_a_config_error_naming_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="runonce=False"):
        run_one(bt.feeds.PandasData(dataname=ohlcv_frame(synthetic_closes(120, seed=26))), "runonce",
                kwargs={**KWARGS, "model_dir": tmp_path / "folds"})
    assert not (tmp_path / "folds").exists()
