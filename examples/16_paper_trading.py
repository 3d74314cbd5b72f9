"""Paper trading: bars arrive one at a time, the forecast retrains on schedule, a killed process resumes.

A broker thread puts IBM's daily bars on a queue one by one (``QueueData``, a live-style feed: no
preloading, every indicator steps bar by bar). ``LSTMForecast(..., model_dir=...)`` saves each fold's
network as it trains; the paper trader is then killed mid-run (SIGKILL) and restarted: it reads the
saved folds back instead of retraining them, and its forecasts equal an uninterrupted run's. Last, the
traded model is saved for the daily job (``puffin-bt forecast --model-file ...``).
"""

from __future__ import annotations

import argparse
import math
import os
import queue
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import backtrader as bt
import numpy as np

from puffin_bt import LSTMForecast, load_sample
from puffin_bt.adapters.feeds import QueueData
from puffin_bt.forecaster import TradingLSTM


class PaperTrader(bt.Strategy):
    """Trades the forecast's sign with a market order at the next bar, and reports every bar it sees."""

    params = (("forecast", None), ("entry", 0.0), ("report", False))

    def __init__(self):
        self.fc = LSTMForecast(self.data, **self.p.forecast)
        self.seen = []
        self.orders = 0

    def next(self):
        pred = self.fc.pred_return[0]
        self.seen.append(pred)
        if self.p.report:  # the killed session tells its parent how far it got
            print(f"bar {len(self.data) - 1} {self.data.datetime.date(0)}", flush=True)
        if math.isnan(pred):
            return
        if not self.position and pred > self.p.entry:
            self.orders += 1
            self.buy(size=int(0.95 * self.broker.getcash() / self.data.close[0]))
        elif self.position and pred < -self.p.entry:
            self.orders += 1
            self.close()


def bars_of(quick: bool):
    return load_sample(["IBM"], start="2011-01-01" if quick else "2006-01-01")["IBM"]


def session(forecast: dict, model_dir: Path, report: bool = False) -> PaperTrader:
    """One paper-trading session: a broker thread delivers every bar to a queue, Cerebro consumes them live."""
    frame = bars_of(os.environ.get("PUFFIN_BT_QUICK") == "1")
    bars: queue.Queue = queue.Queue()

    def broker():
        for stamp, row in frame.iterrows():
            bars.put((stamp, row.open, row.high, row.low, row.close, row.volume))
        bars.put(None)

    threading.Thread(target=broker, daemon=True).start()
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(QueueData(dataname=bars), name="IBM")
    cerebro.broker.setcash(100_000)
    cerebro.addstrategy(PaperTrader, forecast={**forecast, "model_dir": model_dir}, report=report)
    return cerebro.run()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--session", help=argparse.SUPPRESS)  # the child process that gets killed
    args = parser.parse_args()
    quick = os.environ.get("PUFFIN_BT_QUICK") == "1"
    forecast = dict(epochs=args.epochs, refit_epochs=max(1, args.epochs // 3), retrain_every=63, device="cpu")
    if quick:
        forecast.update(hidden_dim=8, num_layers=1, min_train=150, lookback=10, train_window=300)
    if args.session:
        session(forecast, Path(args.session), report=True)
        return

    work = Path(tempfile.mkdtemp(prefix="puffin-paper-"))
    uninterrupted = session(forecast, work / "uninterrupted")
    n_bars = len(uninterrupted.data)
    folds = [f.bar for f in uninterrupted.fc.folds]
    seen = np.array(uninterrupted.seen)
    print(f"uninterrupted: {n_bars} bars delivered one by one, {len(folds)} folds trained on schedule, forecasts "
          f"{np.nanmin(seen):+.3%} to {np.nanmax(seen):+.3%}, {uninterrupted.orders} orders, final value "
          f"{uninterrupted.broker.getvalue():,.2f}")

    # A paper trader killed (SIGKILL, no clean-up) after its third fold; each fold it trained was saved.
    state = work / "paper-trader"
    kill_at = folds[2] + 5
    child = subprocess.Popen([sys.executable, __file__, "--session", str(state), "--epochs", str(args.epochs)],
                             stdout=subprocess.PIPE, text=True)
    for line in child.stdout:
        if line.startswith("bar ") and int(line.split()[1]) >= kill_at:
            child.kill()
            print(f"killed the paper trader at {line.split()[2]} (bar {kill_at}); saved folds: "
                  f"{len(list(state.glob('fold-*.pt')))}")
            break
    child.wait()
    saved = set(state.glob("fold-*.pt"))

    resumed = session(forecast, state)  # restarted: the whole history again, then on
    trained = len(set(state.glob("fold-*.pt")) - saved)
    print(f"resumed from {len(saved)} saved folds, trained {trained} new ones "
          f"({len(resumed.fc.folds)} folds in all)")
    same = np.array_equal(np.array(resumed.seen), np.array(uninterrupted.seen), equal_nan=True)
    print(f"forecasts equal to an uninterrupted run: {same}; final value {resumed.broker.getvalue():,.2f}")

    # The model it trades now, for the daily job: puffin-bt forecast --model-file FILE --csv prices.csv --out log.csv
    path = resumed.fc.save_model(work / "IBM-lstm.pt")
    closes = bars_of(quick)["close"].to_numpy()
    model = TradingLSTM.load(path)
    pred = model.predict(closes)[0] / closes[-1] - 1
    print(f"saved model {path.name}: next-bar forecast {pred:+.4%} (the indicator's last: "
          f"{resumed.fc.pred_return[0]:+.4%})")
    print(f"daily job: puffin-bt forecast --model-file {path} --sample IBM --out {work / 'signals.csv'}")


if __name__ == "__main__":
    main()
