"""Tests of puffin_bt.stats against hand arithmetic, the papers' worked examples and properties."""

from __future__ import annotations

import itertools
import json
import math
import time

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from puffin_bt import stats
from puffin_bt.errors import ConfigError, DataError
from puffin_bt.stats import (
    EULER_GAMMA,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    sharpe_confidence_interval,
    sharpe_difference_confidence_interval,
    sharpe_report,
)

# A small fixed series for the hand-worked checks.
R8 = np.array([0.010, -0.004, 0.006, 0.012, -0.008, 0.003, 0.009, -0.002])
# Per-period returns as hypothesis draws them: whole basis points in [-5%, 5%] (ties included).
returns_lists = st.lists(st.integers(-500, 500).map(lambda bp: bp / 10_000), min_size=3, max_size=40)


def normal_cdf(z: float) -> float:
    """Φ written with erfc, independently of statistics.NormalDist that the module uses."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def hand_psr(r: np.ndarray, sr_star: float) -> float:
    n = len(r)
    mean = sum(r) / n
    dev = [v - mean for v in r]
    m2 = sum(d * d for d in dev) / n
    m3 = sum(d**3 for d in dev) / n
    m4 = sum(d**4 for d in dev) / n
    sr, skew, kurt = mean / math.sqrt(m2), m3 / m2**1.5, m4 / m2**2
    return normal_cdf((sr - sr_star) * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2))


def series_with_moments(n: int, sr: float, skew: float, kurt: float, seed: int = 0) -> np.ndarray:
    """n returns whose population Sharpe ratio, skewness and kurtosis are exactly the targets.

    Newton's method (minimum-norm steps) on the raw moments of a standardised series: mean 0,
    variance 1, E[x^3] = skew, E[x^4] = kurt; adding sr then makes mean/std = sr.
    """
    x = -np.random.default_rng(seed).exponential(size=n)
    x = (x - x.mean()) / x.std()
    target = np.array([0.0, 1.0, skew, kurt])
    for _ in range(100):
        f = np.array([x.mean(), (x**2).mean(), (x**3).mean(), (x**4).mean()]) - target
        if np.abs(f).max() < 1e-14:
            return x + sr
        jac = np.vstack([np.ones(n), 2 * x, 3 * x**2, 4 * x**3]) / n
        x = x - np.linalg.lstsq(jac, f, rcond=None)[0]
    raise AssertionError(f"moments did not converge: residuals {f}")


def population_moments(r: np.ndarray) -> tuple[float, float, float]:
    dev = r - r.mean()
    m2 = np.mean(dev**2)
    return r.mean() / r.std(), np.mean(dev**3) / m2**1.5, np.mean(dev**4) / m2**2


# ---------------------------------------------------------------- PSR


def test_psr_matches_hand_arithmetic():
    # mean = 0.026/8 = 0.00325; every moment written out in hand_psr with plain Python sums.
    assert R8.mean() == pytest.approx(0.00325, abs=1e-15)
    assert probabilistic_sharpe_ratio(R8) == pytest.approx(hand_psr(R8, 0.0), rel=1e-12)
    assert probabilistic_sharpe_ratio(R8, sr_benchmark=0.2) == pytest.approx(hand_psr(R8, 0.2), rel=1e-12)
    assert probabilistic_sharpe_ratio(R8) == pytest.approx(0.8775685721115516, rel=1e-12)


def test_psr_worked_example_from_the_sharpe_ratio_efficient_frontier():
    # Bailey & López de Prado (2012), "The Sharpe Ratio Efficient Frontier": 24 monthly returns,
    # annualised SR 1.585 (per month 1.585/sqrt(12) = 0.45755), skewness -2.448, kurtosis 10.164
    # give PSR(0) = 0.913; 0.91323430688486018 to more digits as reproduced in the tests of
    # esvhd/pypbo (pypbo/tests/pbo_tests.py::test_psr).
    r = series_with_moments(24, 1.585 / math.sqrt(12), -2.448, 10.164)
    sr, skew, kurt = population_moments(r)
    assert (sr, skew, kurt) == pytest.approx((1.585 / math.sqrt(12), -2.448, 10.164), abs=1e-12)
    assert probabilistic_sharpe_ratio(r) == pytest.approx(0.91323430688486018, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    base=returns_lists,
    shift=st.floats(0.001, 0.03),
)
def test_psr_rises_with_track_record_length(base, shift):
    base = np.array(base) + shift
    assume(len(np.unique(base)) >= 3 and base.mean() > 0)
    psrs = [probabilistic_sharpe_ratio(np.tile(base, k)) for k in (1, 2, 3, 5)]
    for shorter, longer in itertools.pairwise(psrs):
        # Repeating the series keeps SR, skewness and kurtosis and only lengthens T.
        assert longer > shorter or longer == shorter == 1.0


@settings(max_examples=40, deadline=None)
@given(base=returns_lists)
def test_psr_at_its_own_sharpe_is_one_half(base):
    r = np.array(base)
    assume(len(np.unique(r)) >= 3)
    assert probabilistic_sharpe_ratio(r, sr_benchmark=float(np.mean(r) / np.std(r))) == 0.5


def test_psr_does_not_depend_on_the_scale_of_returns():
    # PSR depends on SR, skewness and kurtosis only; 1e-80 returns have 1e-320 fourth powers,
    # which would underflow to zero without the module's rescaling.
    for scale in (1e-80, 1e-3, 1e80):
        assert probabilistic_sharpe_ratio(R8 * scale) == pytest.approx(probabilistic_sharpe_ratio(R8), rel=1e-12)


# ---------------------------------------------------------------- DSR


def trials_with_variance(n: int, variance: float, seed: int = 0) -> np.ndarray:
    z = np.random.default_rng(seed).standard_normal(n)
    return (z - z.mean()) / z.std(ddof=1) * math.sqrt(variance)


def test_expected_max_sharpe_matches_hand_arithmetic():
    ts = np.array([0.02, -0.01, 0.05, 0.00, 0.03])
    # sample variance: mean 0.018, squared deviations 0.000004, 0.000784, 0.001024, 0.000324, 0.000144
    v = (0.000004 + 0.000784 + 0.001024 + 0.000324 + 0.000144) / 4
    assert np.var(ts, ddof=1) == pytest.approx(v, rel=1e-12)
    # Φ⁻¹(0.8) = 0.8416212335729143; Φ⁻¹(1 - 1/(5e)) = Φ⁻¹(0.926424...) = 1.4496656592240222 (scipy.stats.norm.ppf)
    q2 = 1.4496656592240222
    assert normal_cdf(0.8416212335729143) == pytest.approx(0.8, abs=1e-15)
    assert normal_cdf(q2) == pytest.approx(1 - 1 / (5 * math.e), abs=1e-13)
    hand = math.sqrt(v) * ((1 - 0.5772156649015329) * 0.8416212335729143 + 0.5772156649015329 * q2)
    assert expected_max_sharpe(ts) == pytest.approx(hand, rel=1e-11)
    assert EULER_GAMMA == 0.5772156649015329


def test_expected_max_sharpe_factor_for_100_trials():
    # With V = 1 the factor (1-γ)Φ⁻¹(0.99) + γΦ⁻¹(1 - 1/(100e)) = 2.5306028932016846
    # (esvhd/pypbo, tests::test_expected_max).
    assert expected_max_sharpe(trials_with_variance(100, 1.0)) == pytest.approx(2.5306028932016846, rel=1e-12)


def test_dsr_worked_example_from_the_deflated_sharpe_ratio_paper():
    # Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", numerical example: N = 100
    # trials whose annualised Sharpe ratios have variance 1/2, the best with annualised SR 2.5 on
    # T = 1250 daily returns (250 a year) with skewness -3 and kurtosis 10: E[max SR] = 0.1132
    # per day and DSR = 0.9004 (0.90039683444939034 in esvhd/pypbo's test_dsr).
    trials = trials_with_variance(100, 0.5 / 250)
    assert expected_max_sharpe(trials) == pytest.approx(0.1132, abs=5e-5)
    assert expected_max_sharpe(trials) == pytest.approx(0.11317200186513214, rel=1e-12)
    # Skewness -3 with kurtosis 10 lies on the bound kurt >= 1 + skew^2, reached only by a
    # two-valued distribution whose proportion (13p^2 - 13p + 1 = 0) is irrational, so no finite
    # series has exactly those moments. The nearest: 105 low days out of 1250 (skew -2.9994,
    # kurtosis 9.9965), which must still round to the paper's 0.9004.
    x = np.where(np.arange(1250) < 105, 0.0, 1.0)
    r = (x - x.mean()) / x.std() + 2.5 / math.sqrt(250)
    sr, skew, kurt = population_moments(r)
    assert (sr, skew, kurt) == pytest.approx((2.5 / math.sqrt(250), -3.0, 10.0), abs=4e-3)
    dsr = deflated_sharpe_ratio(r, trials)
    assert round(dsr, 4) == 0.9004
    assert dsr == pytest.approx(hand_psr(r, 0.11317200186513214), rel=1e-10)


def test_dsr_is_psr_against_the_expected_maximum():
    trials = [0.47, 0.10, -0.20, 0.35, 0.05]
    sr_star = expected_max_sharpe(trials)
    assert deflated_sharpe_ratio(R8, trials) == pytest.approx(hand_psr(R8, sr_star), rel=1e-12)
    assert deflated_sharpe_ratio(R8, trials) == pytest.approx(0.6551606372875158, rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    base=returns_lists,
    trials=st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=2, max_size=50),
)
def test_dsr_never_exceeds_psr_against_zero(base, trials):
    r = np.array(base)
    assume(len(np.unique(r)) >= 3)
    assert expected_max_sharpe(trials) >= 0
    assert deflated_sharpe_ratio(r, trials) <= probabilistic_sharpe_ratio(r)


# ---------------------------------------------------------------- PBO


def brute_force_pbo(m: np.ndarray, n_splits: int, overfit: bool = False) -> np.ndarray:
    """Logits of CSCV by direct loops: concatenate the chosen blocks, Sharpe each column, rank. With ``overfit``,
    each combination's share of overfitting instead: 1 at or below the median rank, 0 above, 1/2 for a tie at it."""
    t, n = m.shape
    block = t // n_splits
    m = m[t - block * n_splits:]

    def sharpe(col):
        if col.min() == col.max():
            return 0.0 if col[0] == 0 else math.copysign(math.inf, col[0])
        return col.mean() / col.std()

    def tied(a, b):  # equal up to round-off, as the module defines ties
        return a == b or (math.isfinite(a) and math.isfinite(b) and abs(a - b) <= 1e-12 + 1e-9 * max(abs(a), abs(b)))

    logits = []
    for chosen in itertools.combinations(range(n_splits), n_splits // 2):
        rows_is = np.concatenate([np.arange(b * block, (b + 1) * block) for b in chosen])
        rows_oos = np.setdiff1d(np.arange(len(m)), rows_is)
        sr_is = [sharpe(m[rows_is, j]) for j in range(n)]
        sr_oos = [sharpe(m[rows_oos, j]) for j in range(n)]
        best = next(j for j in range(n) if tied(sr_is[j], max(sr_is)))
        equal = sum(tied(s, sr_oos[best]) for s in sr_oos)
        below = sum(s < sr_oos[best] and not tied(s, sr_oos[best]) for s in sr_oos)
        omega = (below + (equal + 1) / 2) / (n + 1)
        if overfit:
            logits.append(0.5 if omega == 0.5 and equal > 1 else float(omega <= 0.5))
        else:
            logits.append(math.log(omega / (1 - omega)))
    return np.array(logits)


def test_pbo_by_hand():
    # Two blocks of two rows (A = rows 0-1, B = rows 2-3), three trials. The Sharpe ratio of two
    # values a, b is (a+b)/|a-b|:
    #   trial 0: A [1, 3] -> 2,  B [1, -1] -> 0
    #   trial 1: A [0, 2] -> 1,  B [1, 2]  -> 3
    #   trial 2: A [-1, 1] -> 0, B [1, 3]  -> 2
    # IS = A: trial 0 is best; OOS (B) it ranks 1 of 3, ω = 1/4, λ = ln(1/3).
    # IS = B: trial 1 is best; OOS (A) it ranks 2 of 3, ω = 2/4, λ = 0, which counts as overfit.
    m = np.array([[1, 0, -1], [3, 2, 1], [1, 1, 1], [-1, 2, 3]], dtype=float)
    res = probability_of_backtest_overfitting(m, n_splits=2)
    assert res.n_combinations == 2
    np.testing.assert_allclose(res.logits, [math.log(1 / 3), 0.0], atol=1e-12)
    assert res.pbo == 1.0
    assert isinstance(res.pbo, float)
    json.dumps({"pbo": res.pbo})


def test_pbo_drops_the_oldest_remainder_rows():
    m = np.random.default_rng(5).normal(size=(53, 4))
    a = probability_of_backtest_overfitting(m, n_splits=4)
    b = probability_of_backtest_overfitting(m[1:], n_splits=4)  # 53 = 4 * 13 + 1
    np.testing.assert_array_equal(a.logits, b.logits)
    assert a.pbo == b.pbo
    assert a.n_combinations == math.comb(4, 2) == 6


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_splits=st.sampled_from([2, 4, 6, 8]),
    n_trials=st.integers(2, 7),
    extra_rows=st.integers(0, 7),
    block=st.integers(2, 6),
    flat_fraction=st.sampled_from([0.0, 0.3, 0.7]),
    flat_value=st.sampled_from([0.0, 0.0001, -0.0003]),
    sparse=st.booleans(),
)
def test_pbo_vectorised_equals_brute_force(seed, n_splits, n_trials, extra_rows, block, flat_fraction, flat_value, sparse):
    rng = np.random.default_rng(seed)
    extra_rows %= n_splits  # so the flat blocks below are the module's blocks
    m = rng.normal(0.001, 0.01, size=(n_splits * block + extra_rows, n_trials))
    # Whole blocks at one value (out of the market: 0; parked in cash: a small constant yield)
    # make flat subsets, with Sharpe ratio 0 or ±inf, and exact ties.
    flat_blocks = rng.random((n_splits, n_trials)) < flat_fraction
    rows = m[extra_rows:].reshape(n_splits, block, n_trials)
    rows[np.broadcast_to(flat_blocks[:, None, :], rows.shape)] = flat_value
    # A single trade in an otherwise flat stretch: such halves tie exactly at Sharpe 1/sqrt(n-1).
    if sparse:
        rows[rng.integers(n_splits), 0, :] = np.abs(rng.normal(0.01, 0.005, n_trials))
    assume(all(m[extra_rows:, j].min() < m[extra_rows:, j].max() for j in range(n_trials)))
    res = probability_of_backtest_overfitting(m, n_splits=n_splits)
    expected = brute_force_pbo(m, n_splits)
    np.testing.assert_allclose(res.logits, expected, rtol=0, atol=1e-12)
    assert res.pbo == float(np.mean(brute_force_pbo(m, n_splits, overfit=True)))


@pytest.mark.parametrize("block, cash", [(27, 0.0001), (31, 0.0123), (36, 1 / 3)])
def test_pbo_ties_trials_parked_at_the_same_constant(block, cash):
    # Trials 0 and 1 sit in cash (a constant positive return: zero volatility, Sharpe +inf) in
    # block A; trial 0 has an edge in block B. Sums of squares leave round-off of ~1e-20 in a flat
    # block's variance, i.e. Sharpe ratios of ±1e7 that would break the tie by noise.
    # IS = A: trials 0 and 1 tie at +inf, the first (0) is chosen; OOS in B it ranks 3: λ = ln 3.
    # IS = B: trial 0 is best; OOS in A it ties with trial 1 at +inf, rank 2.5: λ = ln(2.5/1.5).
    m = np.random.default_rng(0).normal(0.0, 0.01, size=(2 * block, 3))
    m[:block, :2] = cash
    m[block:, 0] += 0.02
    res = probability_of_backtest_overfitting(m, n_splits=2)
    np.testing.assert_allclose(res.logits, [math.log(3), math.log(5 / 3)], rtol=1e-12)
    assert res.pbo == 0.0


@pytest.mark.parametrize("trade0, trade1", [(0.013, 0.011), (0.017, 0.02), (0.031, 0.0312)])
def test_pbo_ties_sparse_traders_exactly(trade0, trade1):
    # Blocks A (rows 0-5) and B (rows 6-11). In A, trials 0 and 1 each make one winning trade and
    # are flat otherwise: both have Sharpe ratio exactly 1/sqrt(5) whatever the trade's size
    # (computed, they differ in the last bits); trial 2 loses money in A.
    # IS = A: trials 0 and 1 tie, trial 0 is chosen; OOS in B it is worst, rank 1: λ = ln(1/3).
    # IS = B: trial 1 is best; OOS in A it ties with trial 0, rank 2.5: λ = ln(2.5/1.5).
    m = np.zeros((12, 3))
    m[2, 0], m[4, 1] = trade0, trade1
    m[:6, 2] = [0.01, -0.02, 0.005, -0.01, 0.0, 0.004]
    m[6:, 0] = [-0.01, 0.002, -0.004, 0.001, -0.006, 0.0]
    m[6:, 1] = [0.01, 0.02, 0.015, 0.012, 0.011, 0.018]
    m[6:, 2] = [0.001, -0.002, 0.003, 0.0, 0.002, -0.001]
    res = probability_of_backtest_overfitting(m, n_splits=2)
    np.testing.assert_allclose(res.logits, [math.log(1 / 3), math.log(5 / 3)], rtol=1e-12)
    assert res.pbo == 0.5


def test_pbo_is_zero_when_one_trial_dominates():
    rng = np.random.default_rng(11)
    market = rng.normal(0.0, 0.01, size=(1000, 1))
    perf = market + rng.normal(0.0, 0.005, size=(1000, 20))
    perf[:, 0] += 0.01  # trial 0 earns an edge of one market sigma in every period
    res = probability_of_backtest_overfitting(perf, n_splits=16)
    assert res.n_combinations == 12870
    assert res.pbo == 0.0
    # Best in sample and out of sample every time: rank N, ω = N/(N+1), λ = ln N.
    np.testing.assert_allclose(res.logits, math.log(20), rtol=1e-12)


@pytest.mark.parametrize("n_trials, expected", [(50, 0.5), (5, 0.6)])
def test_pbo_on_pure_noise(n_trials, expected):
    # Without skill the IS-best trial's OOS rank is uniform on 1..N (the halves are independent),
    # so E[PBO] = P(rank <= (N+1)/2) = ceil(N/2)/N: 1/2 for N = 50, 3/5 for N = 5 (where rank 3
    # gives λ = 0 exactly, which counts as overfit). One data set's PBO varies a lot (its
    # combinations share data; measured sd ≈ 0.19 over seeds), so average 200 data sets:
    # sd ≈ 0.19/sqrt(200) ≈ 0.013, and ±0.06 is over four of those.
    pbos = [
        probability_of_backtest_overfitting(np.random.default_rng(1000 + k).normal(size=(400, n_trials)), n_splits=8).pbo
        for k in range(200)
    ]
    assert abs(np.mean(pbos) - expected) < 0.06


def test_pbo_is_fast_for_the_paper_setup():
    perf = np.random.default_rng(0).normal(size=(2000, 50))
    start = time.perf_counter()
    res = probability_of_backtest_overfitting(perf, n_splits=16)
    assert time.perf_counter() - start < 1.0
    assert res.logits.shape == (12870,)
    assert not res.logits.flags.writeable


# ---------------------------------------------------------------- bootstrap


def test_a_kept_draw_of_resample_indices_gives_what_a_fresh_draw_gives():
    """``_index_chunks`` keeps the last seeded draw: the next interval on other returns of the same length and seed
    equals one computed from a fresh draw, whatever came before; an unseeded draw is never kept."""
    rng = np.random.default_rng(5)
    a, b = rng.normal(0.001, 0.01, 400), rng.normal(0.0, 0.02, 400)
    stats._kept_index_chunks.cache_clear()
    fresh = stats.sharpe_confidence_interval(b, n_boot=300, seed=4)
    stats.sharpe_confidence_interval(a, n_boot=300, seed=4)  # same key: b's next interval reuses these indices
    assert stats.sharpe_confidence_interval(b, n_boot=300, seed=4) == fresh
    stats.sharpe_confidence_interval(a[:399], n_boot=300, seed=4)  # another key replaces the kept draw
    assert stats.sharpe_confidence_interval(b, n_boot=300, seed=4) == fresh
    assert stats.sharpe_confidence_interval(b, n_boot=300, seed=5) != fresh
    stats._kept_index_chunks.cache_clear()
    unseeded = {stats.sharpe_confidence_interval(b, n_boot=300, seed=None) for _ in range(3)}
    assert len(unseeded) == 3 and stats._kept_index_chunks.cache_info().currsize == 0


def test_stationary_indices_have_geometric_blocks_that_wrap():
    n, block_size = 50, 5.0
    idx = stats._stationary_indices(np.random.default_rng(3), n, 4000, block_size)
    assert idx.shape == (4000, n)
    assert idx.min() == 0 and idx.max() == n - 1
    continues = idx[:, 1:] == (idx[:, :-1] + 1) % n
    # A new block starts with probability 1/block_size; it continues the old one by chance 1/n.
    assert np.mean(~continues) == pytest.approx((1 / block_size) * (1 - 1 / n), abs=0.005)
    wrapped = continues & (idx[:, 1:] == 0)
    assert wrapped.any()


def test_interval_is_the_order_statistics_of_resampled_sharpes():
    r = np.random.default_rng(4).normal(0.0005, 0.01, 300)
    idx = stats._stationary_indices(np.random.default_rng(7), 300, 500, 4.0)
    resampled = np.sort(r[idx].mean(axis=1) / r[idx].std(axis=1))
    # level 0.9: tails 0.05; order statistics floor(0.05 * 499) = 24 and ceil(0.95 * 499) = 475.
    expected = (resampled[24] * math.sqrt(252), resampled[475] * math.sqrt(252))
    got = sharpe_confidence_interval(r, 0.9, n_boot=500, block_size=4.0, seed=7, annualization=252)
    assert got == pytest.approx(expected, rel=1e-12)


def test_interval_contains_the_sample_sharpe_and_is_reproducible():
    r = np.random.default_rng(8).normal(0.0004, 0.01, 3000)
    sr = r.mean() / r.std()
    lo, hi = sharpe_confidence_interval(r)
    assert lo < sr < hi
    assert sharpe_confidence_interval(r) == (lo, hi)
    assert sharpe_confidence_interval(r, seed=1) != (lo, hi)


def test_default_block_size_is_the_cube_root_of_t():
    r = np.random.default_rng(6).normal(0.0005, 0.01, 300)  # 300 ** (1/3) = 6.69 -> 7
    assert sharpe_confidence_interval(r) == sharpe_confidence_interval(r, block_size=7)
    assert sharpe_confidence_interval(r) != sharpe_confidence_interval(r, block_size=6)


def test_interval_narrows_as_the_series_grows():
    rng = np.random.default_rng(9)
    short = rng.normal(0.0005, 0.01, 500)
    long = rng.normal(0.0005, 0.01, 5000)
    w_short = np.subtract(*sharpe_confidence_interval(short)[::-1])
    w_long = np.subtract(*sharpe_confidence_interval(long)[::-1])
    # Width shrinks like 1/sqrt(T): about sqrt(10) ≈ 3.2 times here.
    assert 0 < w_long < 0.5 * w_short


def test_iid_interval_width_matches_the_normal_theory():
    # For i.i.d. normal returns Var(SR_hat) ≈ (1 + SR^2/2)/T (Lo 2002), so the 95% interval spans
    # about 2 * 1.96 * that standard error; block_size=1 is the i.i.d. bootstrap.
    r = np.random.default_rng(10).normal(0.001, 0.01, 2000)
    sr = r.mean() / r.std()
    lo, hi = sharpe_confidence_interval(r, block_size=1, n_boot=4000)
    assert hi - lo == pytest.approx(2 * 1.959964 * math.sqrt((1 + sr**2 / 2) / 2000), rel=0.1)


def test_blocks_widen_the_interval_for_autocorrelated_returns():
    # AR(1) with phi = 0.5 triples the variance of the mean, (1+phi)/(1-phi); an i.i.d. bootstrap
    # misses that, blocks of about 20 periods keep most of it.
    rng = np.random.default_rng(12)
    e = rng.normal(0, 0.01, 3000)
    r = np.empty_like(e)
    r[0] = e[0]
    for t in range(1, len(e)):
        r[t] = 0.5 * r[t - 1] + e[t]
    r += 0.0005
    w_iid = np.subtract(*sharpe_confidence_interval(r, block_size=1)[::-1])
    w_block = np.subtract(*sharpe_confidence_interval(r, block_size=20)[::-1])
    assert w_block > 1.3 * w_iid


@pytest.mark.filterwarnings("error")
def test_interval_copes_with_mostly_flat_returns():
    # A strategy in the market 3 days of 200: many resamples are all zeros (Sharpe 0), none NaN.
    r = np.zeros(200)
    r[[20, 90, 150]] = [0.01, 0.02, 0.015]
    lo, hi = sharpe_confidence_interval(r)
    assert lo == 0.0
    assert 0 < hi < math.inf


def test_difference_interval_of_a_series_with_itself_is_zero():
    r = np.random.default_rng(13).normal(0.0005, 0.01, 400)
    assert sharpe_difference_confidence_interval(r, r) == (0.0, 0.0)
    # Sharpe ratios ignore leverage: 2r has the same Sharpe ratio as r in every resample.
    lo, hi = sharpe_difference_confidence_interval(2 * r, r)
    assert abs(lo) < 1e-12 and abs(hi) < 1e-12


def test_difference_interval_resamples_pairs_together():
    # The strategy is the benchmark plus a little noise: paired resampling cancels the common
    # part, so the difference is far better pinned down than either Sharpe ratio alone.
    rng = np.random.default_rng(14)
    bench = rng.normal(0.0004, 0.01, 1500)
    strat = bench + rng.normal(0.0002, 0.002, 1500)
    lo, hi = sharpe_difference_confidence_interval(strat, bench)
    s_lo, s_hi = sharpe_confidence_interval(strat)
    diff = strat.mean() / strat.std() - bench.mean() / bench.std()
    assert lo < diff < hi
    assert hi - lo < 0.3 * (s_hi - s_lo)
    assert sharpe_difference_confidence_interval(strat, bench) == (lo, hi)
    r_lo, r_hi = sharpe_difference_confidence_interval(bench, strat)
    assert (r_lo, r_hi) == pytest.approx((-hi, -lo), abs=1e-12)


def test_bootstrap_is_chunked_deterministically_for_long_series(monkeypatch):
    # Fewer cells per chunk than n_boot * T: the interval is still reproducible and sensible.
    monkeypatch.setattr(stats, "_BOOT_CELLS", 1000)
    r = np.random.default_rng(15).normal(0.001, 0.01, 400)
    a = sharpe_confidence_interval(r, n_boot=300)
    assert a == sharpe_confidence_interval(r, n_boot=300)
    assert a[0] < r.mean() / r.std() < a[1]


# ---------------------------------------------------------------- report


def test_report_values_match_the_functions():
    rng = np.random.default_rng(16)
    bench = rng.normal(0.0003, 0.01, 504)
    strat = bench + rng.normal(0.0003, 0.005, 504)
    rep = sharpe_report(strat, bench, periods_per_year=252, level=0.9, seed=3)
    json.dumps(rep, allow_nan=False)
    sr = strat.mean() / strat.std()
    sb = bench.mean() / bench.std()
    assert rep["n_periods"] == 504
    assert rep["sharpe"] == pytest.approx(sr * math.sqrt(252), rel=1e-12)
    assert rep["sharpe_benchmark"] == pytest.approx(sb * math.sqrt(252), rel=1e-12)
    assert rep["sharpe_diff"] == pytest.approx((sr - sb) * math.sqrt(252), rel=1e-12)
    assert rep["psr"] == probabilistic_sharpe_ratio(strat)
    assert rep["sharpe_ci"] == list(sharpe_confidence_interval(strat, 0.9, seed=3, annualization=252))
    assert rep["sharpe_diff_ci"] == list(sharpe_difference_confidence_interval(strat, bench, 0.9, seed=3, annualization=252))
    assert rep["note"] is None


def test_report_on_a_strategy_that_never_traded():
    rep = sharpe_report(np.zeros(252), np.random.default_rng(17).normal(0.0003, 0.01, 252))
    json.dumps(rep, allow_nan=False)
    assert rep["n_periods"] == 252
    assert rep["sharpe"] is None and rep["psr"] is None and rep["sharpe_ci"] is None
    assert rep["sharpe_diff"] is None and rep["sharpe_diff_ci"] is None
    assert rep["sharpe_benchmark"] is not None
    assert "constant" in rep["note"] and "0.0" in rep["note"]


def test_report_on_too_short_and_flat_benchmark():
    rep = sharpe_report([0.01, 0.02])
    assert rep["sharpe"] is None and "2 finite values" in rep["note"]
    rep = sharpe_report(np.random.default_rng(18).normal(0.001, 0.01, 100), np.full(100, 0.0001))
    json.dumps(rep, allow_nan=False)
    assert rep["sharpe"] is not None and rep["sharpe_benchmark"] is None
    assert "benchmark_returns is constant" in rep["note"]


def test_report_turns_an_unbounded_interval_into_none():
    # Nearly always 1%: resamples that miss the one 2% day have zero volatility and a positive
    # mean, an infinite Sharpe ratio, which JSON cannot hold.
    r = np.full(100, 0.01)
    r[50] = 0.02
    rep = sharpe_report(r)
    json.dumps(rep, allow_nan=False)
    assert rep["sharpe_ci"] is None and "unbounded" in rep["note"]
    assert rep["sharpe"] is not None


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: probabilistic_sharpe_ratio([0.01, 0.02]), DataError, ["2 finite values", "at least 3"]),
        (lambda: probabilistic_sharpe_ratio([0.01] * 10), DataError, ["constant", "0.01"]),
        (lambda: probabilistic_sharpe_ratio([0.01, 0.02, np.nan, 0.0]), DataError, ["returns[2]", "nan", "np.isfinite"]),
        (lambda: probabilistic_sharpe_ratio([0.01, np.inf, 0.02, 0.0]), DataError, ["returns[1]", "inf"]),
        (lambda: probabilistic_sharpe_ratio(np.ones((5, 2))), DataError, ["(5, 2)", "1-D"]),
        (lambda: probabilistic_sharpe_ratio(["a", "b", "c"]), DataError, ["could not be read"]),
        (lambda: probabilistic_sharpe_ratio(R8, sr_benchmark=np.nan), ConfigError, ["sr_benchmark=nan"]),
        (lambda: expected_max_sharpe([0.3]), DataError, ["1 value", "at least 2"]),
        (lambda: deflated_sharpe_ratio(R8, [0.1, np.nan]), DataError, ["trial_sharpes[1]", "nan"]),
        (lambda: deflated_sharpe_ratio([0.0, 0.0, 0.0], [0.1, 0.2]), DataError, ["constant"]),
        (lambda: probability_of_backtest_overfitting(np.ones(20)), DataError, ["(20,)", "2-D"]),
        (lambda: probability_of_backtest_overfitting(np.random.default_rng(0).normal(size=(40, 1))), DataError, ["1 column", "at least 2"]),
        (lambda: probability_of_backtest_overfitting(np.random.default_rng(0).normal(size=(3, 4))), DataError, ["3 rows", "at least 4"]),
        (lambda: probability_of_backtest_overfitting(np.c_[np.random.default_rng(0).normal(size=40), np.zeros(40)]), DataError,
         ["column 1 is constant", "0.0"]),
        (lambda: probability_of_backtest_overfitting(np.full((40, 3), np.nan)), DataError, ["performance[0, 0]", "nan"]),
        (lambda: probability_of_backtest_overfitting(np.random.default_rng(0).normal(size=(40, 3)), n_splits=15), ConfigError,
         ["n_splits=15", "odd"]),
        (lambda: probability_of_backtest_overfitting(np.random.default_rng(0).normal(size=(40, 3)), n_splits=0), ConfigError,
         ["n_splits=0"]),
        (lambda: probability_of_backtest_overfitting(np.random.default_rng(0).normal(size=(10, 3)), n_splits=16), ConfigError,
         ["n_splits=16", "10 rows"]),
        (lambda: probability_of_backtest_overfitting(np.random.default_rng(0).normal(size=(30, 3)), n_splits=24), ConfigError,
         ["n_splits=24", "2,704,156"]),
        (lambda: sharpe_confidence_interval(R8, level=1.5), ConfigError, ["level=1.5", "(0, 1)"]),
        (lambda: sharpe_confidence_interval(R8, level=0), ConfigError, ["level=0", "(0, 1)"]),
        (lambda: sharpe_confidence_interval(R8, n_boot=50), ConfigError, ["n_boot=50", "100"]),
        (lambda: sharpe_confidence_interval(R8, n_boot=2.5), ConfigError, ["n_boot=2.5"]),
        (lambda: sharpe_confidence_interval(R8, block_size=0.5), ConfigError, ["block_size=0.5", "[1, 8]"]),
        (lambda: sharpe_confidence_interval(R8, block_size=9), ConfigError, ["block_size=9.0", "[1, 8]"]),
        (lambda: sharpe_confidence_interval(R8, seed=-1), ConfigError, ["seed=-1"]),
        (lambda: sharpe_confidence_interval(R8, annualization=0), ConfigError, ["annualization=0"]),
        (lambda: sharpe_confidence_interval([0.0] * 20), DataError, ["constant"]),
        (lambda: sharpe_difference_confidence_interval(R8, R8[:7]), DataError, ["8 periods", "has 7"]),
        (lambda: sharpe_difference_confidence_interval(R8, np.zeros(8)), DataError, ["benchmark_returns is constant"]),
        (lambda: sharpe_report([0.01, np.nan, 0.02]), DataError, ["returns[1]", "nan"]),
        (lambda: sharpe_report(R8, R8[:5]), DataError, ["8 periods", "has 5"]),
        (lambda: sharpe_report(R8, periods_per_year=0), ConfigError, ["periods_per_year=0"]),
        (lambda: sharpe_report(R8, level=95), ConfigError, ["level=95"]),
    ],
)
def test_errors_name_the_bad_value(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    for word in words:
        assert word in str(info.value)
