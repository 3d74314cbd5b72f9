"""Conditional coverage: the volatility-normalised conformal interval ("vol") covers in calm and stormy spells
alike where split conformal does not, and stays causal in every engine mode."""

from __future__ import annotations

import numpy as np
import pytest

from puffin_bt import walk_forward
from puffin_bt.intervals import VOL_FLOOR, VOL_WINDOW, trailing_volatility

from .conftest import assert_same_forecasts, ohlcv_frame, synthetic_closes
from .test_uncertainty import LINES, MODES, run_lines


def regime_volatility_closes(n: int = 2000, seed: int = 1) -> np.ndarray:
    """Closes whose volatility switches between calm (0.6%) and stormy (1.5%) spells of 100-140 bars: about a
    fold's span, so a fold's validation tail often comes from the other kind of spell than its forecasts."""
    rng = np.random.default_rng(seed)
    sigma, stormy = [], False
    while len(sigma) < n:
        sigma += [0.015 if stormy else 0.006] * int(rng.integers(100, 141))
        stormy = not stormy
    return 100 * np.exp(np.cumsum(rng.normal(0.0, np.array(sigma[:n]))))


def coverage_by_volatility_tercile(closes: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[float]:
    """Coverage of the next bar's return in the calm, middle and stormy tercile of trailing 20-bar volatility."""
    realized = np.full(len(closes), np.nan)
    realized[:-1] = closes[1:] / closes[:-1] - 1
    volatility = np.full(len(closes), np.nan)
    volatility[20:] = np.lib.stride_tricks.sliding_window_view(np.diff(np.log(closes)), 20).std(axis=1)
    ok = np.isfinite(lo) & np.isfinite(realized) & np.isfinite(volatility)
    assert ok.sum() > 1000
    covered = (realized[ok] >= lo[ok]) & (realized[ok] <= hi[ok])
    tercile = np.searchsorted(np.quantile(volatility[ok], [1 / 3, 2 / 3]), volatility[ok], side="right")
    return [float(covered[tercile == k].mean()) for k in range(3)]


def test_vol_intervals_cover_calm_and_stormy_spells_where_split_conformal_does_not():
    closes = regime_volatility_closes()
    options = dict(lookback=10, min_train=400, retrain_every=100, train_window=400, validation_split=0.25,
                   hidden_dim=8, num_layers=1, epochs=2, device="cpu", interval=0.8)
    split = walk_forward(closes, interval_method="split", **options)
    vol = walk_forward(closes, interval_method="vol", **options)
    np.testing.assert_array_equal(vol.pred_log_return, split.pred_log_return)  # only the interval differs
    split_cov = coverage_by_volatility_tercile(closes, split.pred_lo, split.pred_hi)
    vol_cov = coverage_by_volatility_tercile(closes, vol.pred_lo, vol.pred_hi)
    assert split_cov[0] > 0.9 and split_cov[2] < 0.7, split_cov  # too wide when calm, too narrow when stormy
    assert all(abs(c - 0.8) < 0.06 for c in vol_cov), vol_cov


def test_trailing_volatility_at_a_bar_uses_only_its_own_window_of_earlier_closes():
    closes = synthetic_closes(120, seed=3)
    bars = np.arange(1, 120)
    full = trailing_volatility(closes, bars)
    changed = closes.copy()
    changed[70:] *= 1.5
    np.testing.assert_array_equal(trailing_volatility(changed, bars)[:69], full[:69])
    assert not np.allclose(trailing_volatility(changed, bars)[68:], full[68:])  # bar 70's return is in its window
    # the next-bar engine modes pass the last tail closes only: the same value, bit for bit
    for bar in (VOL_WINDOW, 87, 119):
        tail = closes[bar - VOL_WINDOW: bar + 1]
        assert trailing_volatility(tail, np.array([bar]), offset=bar - VOL_WINDOW)[0] == full[bar - 1]
    returns = np.diff(np.log(closes))
    assert full[99 - 1] == pytest.approx(np.sqrt(np.mean(returns[99 - VOL_WINDOW:99] ** 2)))
    assert trailing_volatility(np.full(90, 5.0), np.array([85]))[0] == VOL_FLOOR  # unchanged closes: the floor


def test_vol_lines_agree_in_every_engine_mode():
    frame = ohlcv_frame(synthetic_closes(230, seed=4))
    base = run_lines(frame, "runonce", interval_method="vol")
    lo, ret, hi = base[2], base[0], base[3]
    ok = np.isfinite(ret)
    assert ok.sum() == len(frame) - 59 and np.all(lo[ok] < ret[ok]) and np.all(ret[ok] < hi[ok])
    assert np.ptp(np.log1p(hi[ok]) - np.log1p(lo[ok])) > 1e-4  # the width moves with the volatility
    for mode in ("runnext", "unpreloaded"):
        other = run_lines(frame, mode, interval_method="vol")
        for j, line in enumerate(LINES):
            assert_same_forecasts(other[j], base[j], min_finite=len(frame) - 59, atol=1e-8, err_msg=f"{mode} {line}")


@pytest.mark.parametrize("cut", [99, 143])  # a fold bar and a bar mid-fold
def test_no_vol_line_at_or_before_bar_t_moves_when_later_bars_change(cut):
    closes = synthetic_closes(210, seed=2)
    changed = closes.copy()
    changed[cut + 1:] *= np.exp(np.random.default_rng(cut).normal(0, 0.2, len(closes) - cut - 1))
    for mode in MODES:
        base = run_lines(ohlcv_frame(closes), mode, interval_method="vol")
        other = run_lines(ohlcv_frame(changed), mode, interval_method="vol")
        for j, line in enumerate(LINES):
            assert_same_forecasts(other[j][: cut + 1], base[j][: cut + 1], min_finite=cut + 1 - 59,
                                  err_msg=f"{mode} {line}")
        assert not np.allclose(other[2][cut + 2:], base[2][cut + 2:], equal_nan=True)  # later bars do move
