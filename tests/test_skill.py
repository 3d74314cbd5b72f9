"""The significance tests of ``skill``: Diebold–Mariano with the HLN correction, Newey–West t-statistics and the
direction test against the model's own call mix, on hand-computed examples and against SciPy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from puffin_bt.skill import diebold_mariano, direction_test, newey_west_t, t_cdf

stats = pytest.importorskip("scipy.stats")


def test_diebold_mariano_matches_a_hand_computed_statistic():
    # d = loss_model - loss_baseline = [-1, 0, -2, 1, -1, -3]: mean -1, deviations [0, 1, -1, 2, 0, -2],
    # gamma_0 = 10/6, gamma_1 = (0 - 1 - 2 + 0 + 0)/6 = -1/2.
    model = np.array([1.0, 2.0, 1.0, 4.0, 2.0, 1.0])
    baseline = np.array([2.0, 2.0, 3.0, 3.0, 3.0, 4.0])
    # h = 1: DM = -1 / sqrt((10/6)/6) = -6/sqrt(10); HLN factor sqrt((6 + 1 - 2)/6) -> -sqrt(3).
    stat, p = diebold_mariano(model, baseline, horizon=1)
    assert stat == pytest.approx(-math.sqrt(3))
    assert p == pytest.approx(stats.t.cdf(-math.sqrt(3), 5))
    # h = 2: V = 10/6 - 2 * 1/2 = 4/6, DM = -1 / sqrt((4/6)/6) = -3; HLN sqrt((6 + 1 - 4 + 2/6)/6) = sqrt(5/9) -> -sqrt(5).
    stat, p = diebold_mariano(model, baseline, horizon=2)
    assert stat == pytest.approx(-math.sqrt(5))
    assert p == pytest.approx(stats.t.cdf(-math.sqrt(5), 5))


def test_diebold_mariano_is_one_sided_for_the_model():
    rng = np.random.default_rng(0)
    real = rng.normal(0, 1, 500)
    good, bad = 0.9 * real + rng.normal(0, 0.3, 500), rng.normal(0, 1, 500)
    assert diebold_mariano((good - real) ** 2, real ** 2)[1] < 1e-6
    assert diebold_mariano((bad - real) ** 2, real ** 2)[1] > 0.99
    assert math.isnan(diebold_mariano(real ** 2, real ** 2)[1])  # identical forecasts: no test


@pytest.mark.parametrize("t, df", [(2.0, 10), (-1.3, 5), (0.1, 1000), (-4.0, 7000), (3.5, 2), (0.0, 3)])
def test_t_cdf_matches_scipy(t, df):
    assert t_cdf(t, df) == pytest.approx(stats.t.cdf(t, df), rel=1e-9, abs=1e-14)


def test_newey_west_t_by_hand():
    # x = [1, 2, 3, 4]: mean 2.5, gamma_0 = 1.25, gamma_1 = 0.3125; lag 1 weight 1/2:
    # (1.25 + 0.3125) * 4/3 = 25/12 -> t = 2.5 / sqrt(25/48) = 2 sqrt(3).
    assert newey_west_t([1.0, 2.0, 3.0, 4.0], lags=1) == pytest.approx(2 * math.sqrt(3))
    x = np.array([0.3, -0.1, 0.4, 0.2, 0.0])
    assert newey_west_t(x, lags=0) == pytest.approx(x.mean() / x.std(ddof=1) * math.sqrt(5))


def test_newey_west_shrinks_the_t_of_overlapping_sums():
    rng = np.random.default_rng(3)
    overlapping = np.convolve(rng.normal(0.05, 1, 3000), np.ones(5), mode="valid")  # 5-bar sums overlap
    assert abs(newey_west_t(overlapping, lags=4)) < 0.6 * abs(newey_west_t(overlapping, lags=0))


def test_direction_test_is_fishers_exact_test_on_calls_by_outcomes():
    rng = np.random.default_rng(0)
    pred = rng.normal(size=300)
    actual = pred + rng.normal(0, 3, 300)
    res = direction_test(pred, actual)
    table = [[np.sum((pred > 0) & (actual > 0)), np.sum((pred > 0) & (actual < 0))],
             [np.sum((pred < 0) & (actual > 0)), np.sum((pred < 0) & (actual < 0))]]
    assert res["p_value"] == pytest.approx(stats.fisher_exact(table, alternative="greater").pvalue)
    assert res["accuracy"] == pytest.approx((table[0][0] + table[1][1]) / 300)


def test_always_up_in_a_rising_market_is_no_skill():
    actual = np.random.default_rng(1).normal(0.004, 0.01, 1000)  # up on ~65% of days
    res = direction_test(np.full(1000, 0.001), actual)
    assert res["accuracy"] == pytest.approx(np.mean(actual > 0)) and res["accuracy"] > 0.6
    assert res["chance_accuracy"] == pytest.approx(res["accuracy"]) and res["p_value"] == 1.0


def test_the_direction_test_permutes_calls_within_each_ticker():
    # A rises 70% of days and is always called up, B falls 70% and is always called down: pooled, the calls
    # line up with the outcomes, but within each ticker they carry nothing.
    rng = np.random.default_rng(2)
    up, down = rng.normal(0.005, 0.01, 400), rng.normal(-0.005, 0.01, 400)
    pred, actual = np.r_[np.ones(400), -np.ones(400)], np.r_[up, down]
    assert direction_test(pred, actual)["p_value"] < 1e-20
    stratified = direction_test(pred, actual, groups=np.r_[["A"] * 400, ["B"] * 400])
    assert stratified["p_value"] == 1.0
