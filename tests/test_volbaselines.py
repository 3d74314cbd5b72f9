"""The volatility baselines (puffin_bt/volbaselines.py): causal on every bar and refit, HAR recovers a simulated
HAR process, GARCH approaches the true conditional variance's QLIKE, EWMA is the RiskMetrics recursion."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from puffin_bt import volbaselines
from puffin_bt.errors import ConfigError, DataError
from puffin_bt.volatility import qlike, realised_variance_target
from puffin_bt.volbaselines import available_methods, baseline_variances
from tests.conftest import synthetic_closes

needs_arch = pytest.mark.skipif("garch" not in available_methods(), reason="the garch extra (arch) is not installed")

REFITS = [299, 349, 399, 449, 499, 549]


def garch_closes(n: int, seed: int, omega: float = 2e-6, alpha: float = 0.08, beta: float = 0.9):
    """Closes whose log returns follow a GARCH(1,1), and the true conditional variance s[t] of r[t]."""
    rng = np.random.default_rng(seed)
    returns, variance = np.zeros(n), np.zeros(n + 1)
    variance[1] = omega / (1 - alpha - beta)
    for t in range(1, n):
        returns[t] = np.sqrt(variance[t]) * rng.standard_normal()
        variance[t + 1] = omega + alpha * returns[t] ** 2 + beta * variance[t]
    return 100 * np.exp(np.cumsum(returns)), variance


def har_closes(n: int, seed: int, coefficients=(1e-5, 0.1, 0.15, 0.25)) -> np.ndarray:
    """Closes whose next squared return has the conditional mean of a HAR model with these coefficients
    (constant, daily, weekly, monthly). Persistence 0.5 keeps the fourth moment finite, so OLS converges."""
    const, daily, weekly, monthly = coefficients
    z = np.random.default_rng(seed).standard_normal(n)
    returns, squared = np.zeros(n), np.full(n, const / (1 - daily - weekly - monthly))
    week, month = squared[:5].sum(), squared[:22].sum()
    for t in range(22, n):
        variance = const + daily * squared[t - 1] + weekly * week / 5 + monthly * month / 22
        returns[t] = np.sqrt(variance) * z[t]
        squared[t] = returns[t] ** 2
        week += squared[t] - squared[t - 5]
        month += squared[t] - squared[t - 22]
    return 100 * np.exp(np.cumsum(returns))


@settings(max_examples=8, deadline=None)
@given(cut=st.integers(min_value=300, max_value=590), seed=st.integers(0, 1000))
def test_forecasts_and_refit_parameters_at_or_before_t_ignore_later_closes(cut, seed):
    closes, _ = garch_closes(600, seed=3)
    shaken = closes.copy()
    shaken[cut + 1:] *= np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.05, 600 - cut - 1)))
    before = baseline_variances(closes, 5, REFITS)
    after = baseline_variances(shaken, 5, REFITS)
    assert set(before) == set(available_methods())
    for method in before:
        np.testing.assert_array_equal(before[method][:cut + 1], after[method][:cut + 1], err_msg=method)
        assert not np.array_equal(before[method][cut + 1:], after[method][cut + 1:]), method  # the test can fail
        assert np.all(np.isfinite(before[method][299:cut + 1])), method
    squared, shaken_squared = volbaselines._squared_returns(closes), volbaselines._squared_returns(shaken)
    for refit in [t for t in REFITS if t <= cut]:
        np.testing.assert_array_equal(volbaselines._har_coefficients(closes, squared, 5, refit),
                                      volbaselines._har_coefficients(shaken, shaken_squared, 5, refit))
        if "garch" in before:
            assert volbaselines._garch_parameters(closes, refit) == volbaselines._garch_parameters(shaken, refit)


def test_har_targets_end_at_or_before_the_refit_bar():
    closes = synthetic_closes(400, seed=1)
    squared = volbaselines._squared_returns(closes)
    fitted = volbaselines._har_coefficients(closes, squared, 5, 299)
    shaken = closes.copy()
    shaken[300:] *= 1.3  # one jump right after the refit bar: the targets of bars 295..299 would see it
    np.testing.assert_array_equal(fitted, volbaselines._har_coefficients(shaken, volbaselines._squared_returns(shaken),
                                                                         5, 299))


def test_forecasts_are_nan_before_the_first_refit_bar_and_set_after():
    closes, _ = garch_closes(600, seed=0)
    for method, forecast in baseline_variances(closes, 1, REFITS).items():
        assert np.all(np.isnan(forecast[:299])), method
        assert np.all(np.isfinite(forecast[299:])) and np.all(forecast[299:] > 0), method


def test_har_recovers_the_coefficients_of_a_simulated_har_process():
    truth = np.array([1e-5, 0.1, 0.15, 0.25])
    closes = har_closes(200_000, seed=0, coefficients=tuple(truth))
    fitted = volbaselines._har_coefficients(closes, volbaselines._squared_returns(closes), 1, len(closes) - 1)
    assert abs(fitted[0] - truth[0]) < 0.15 * truth[0]
    np.testing.assert_allclose(fitted[1:], truth[1:], atol=0.05)


@needs_arch
def test_garch_qlike_is_close_to_the_true_variance_and_beats_trailing():
    closes, variance = garch_closes(3000, seed=0)
    horizon, omega, persistence = 5, 2e-6, 0.98
    forecasts = baseline_variances(closes, horizon, list(range(999, 3000, 250)), methods=["garch", "trailing"])
    bars = np.arange(1000, 3000 - horizon)
    realised = realised_variance_target(closes, bars, horizon)
    ahead = np.arange(horizon)  # k - 1 for k = 1..horizon
    true_mean = np.array([np.mean(omega * (1 - persistence ** ahead) / (1 - persistence)
                                  + persistence ** ahead * variance[t + 1]) for t in bars])
    true_loss = qlike(true_mean, realised).mean()
    garch_loss = qlike(forecasts["garch"][bars], realised).mean()
    trailing_loss = qlike(forecasts["trailing"][bars], realised).mean()
    assert garch_loss < 1.05 * true_loss
    assert garch_loss < trailing_loss - 0.02


def test_ewma_is_the_riskmetrics_recursion_seeded_with_the_first_20_squared_returns():
    closes = synthetic_closes(300, seed=2)
    returns = np.diff(np.log(closes))
    level = np.mean(returns[:20] ** 2)
    expected = {20: level}
    for t in range(21, 300):
        level = 0.94 * level + 0.06 * returns[t - 1] ** 2
        expected[t] = level
    forecast = baseline_variances(closes, 3, [20], methods=["ewma"])["ewma"]
    np.testing.assert_allclose(forecast[20:], [expected[t] for t in range(20, 300)], rtol=1e-12)
    assert np.all(np.isnan(forecast[:20]))


def test_trailing_is_the_mean_squared_return_of_the_last_20_bars():
    closes = synthetic_closes(200, seed=4)
    returns = np.diff(np.log(closes))
    forecast = baseline_variances(closes, 2, [50], methods=["trailing"])["trailing"]
    np.testing.assert_allclose(forecast[50:], [np.mean(returns[t - 20:t] ** 2) for t in range(50, 200)], rtol=1e-9)


def test_har_falls_back_to_the_monthly_mean_where_its_line_goes_below_zero():
    # 22 calm bars after 22 wild ones, repeatedly: a high monthly mean foretells calm, so the monthly slope is
    # negative, and a later crash (a monthly mean far above any seen) would extrapolate to a negative variance
    vol = np.concatenate([np.tile(np.r_[np.full(22, 0.03), np.full(22, 0.005)], 10)[:400], np.full(100, 0.15)])
    closes = 100 * np.exp(np.cumsum(vol * np.random.default_rng(0).standard_normal(500)))
    squared = volbaselines._squared_returns(closes)
    line = volbaselines._har_regressors(squared)[399:] @ volbaselines._har_coefficients(closes, squared, 1, 399)
    assert np.sum(line <= 0) > 10  # the case this test is about
    forecast = baseline_variances(closes, 1, [399], methods=["har"])["har"][399:]
    np.testing.assert_array_equal(forecast[line <= 0], volbaselines._har_regressors(squared)[399:, 3][line <= 0])
    np.testing.assert_allclose(forecast[line > 0], line[line > 0])
    assert np.all(forecast > 0)


@pytest.mark.parametrize("kwargs, error, named", [
    (dict(horizon=0), ConfigError, "horizon=0"),
    (dict(refit_bars=[]), ConfigError, "refit_bars=[]"),
    (dict(refit_bars=[500]), ConfigError, "refit bar 500"),
    (dict(methods=["garchy"]), ConfigError, "'garchy'"),
    (dict(train_window=1), ConfigError, "train_window=1"),
])
def test_bad_arguments_are_config_errors_naming_the_value(kwargs, error, named):
    arguments = dict(closes=synthetic_closes(300), horizon=5, refit_bars=[200]) | kwargs
    with pytest.raises(error, match=named.replace("[", r"\[").replace("]", r"\]")):
        baseline_variances(**arguments)


def test_bad_closes_are_a_data_error_naming_the_bar():
    closes = synthetic_closes(300)
    closes[77] = np.nan
    with pytest.raises(DataError, match="bar 77"):
        baseline_variances(closes, 5, [200])


def test_without_arch_garch_is_skipped_with_one_note_and_asking_for_it_is_an_error(monkeypatch, recwarn):
    monkeypatch.setitem(sys.modules, "arch", None)  # `import arch` raises ImportError, as when it is not installed
    monkeypatch.setattr(volbaselines, "_said", set())
    assert available_methods() == ("har", "ewma", "trailing")
    closes = synthetic_closes(300)
    assert set(baseline_variances(closes, 5, [200])) == {"har", "ewma", "trailing"}
    baseline_variances(closes, 5, [200])
    notes = [str(w.message) for w in recwarn if "GARCH" in str(w.message)]
    assert notes == [volbaselines.GARCH_MISSING] and "pip install 'puffin_bt[garch]'" in notes[0]
    with pytest.raises(ConfigError, match="garch"):
        baseline_variances(closes, 5, [200], methods=["garch"])


def test_the_baselines_never_import_torch():
    code = ("import sys, numpy as np\nfrom puffin_bt.volbaselines import baseline_variances\n"
            "closes = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 400)))\n"
            "baseline_variances(closes, 5, [299])\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("method", ["har", "garch"])
def test_with_a_train_window_a_fit_ignores_the_bars_before_it(method):
    if method not in available_methods():
        pytest.skip("the garch extra (arch) is not installed")
    closes, _ = garch_closes(700, seed=4)
    shaken = closes.copy()
    shaken[:200] *= np.exp(np.random.default_rng(1).normal(0, 0.05, 200))  # only bars before 599 - 400 + 1 = 200
    window = baseline_variances(closes, 5, [599], [method], train_window=400)[method]
    shaken_window = baseline_variances(shaken, 5, [599], [method], train_window=400)[method]
    np.testing.assert_allclose(window[599:], shaken_window[599:], rtol=1e-9)  # cumulative sums: rounding only
    expanding = baseline_variances(closes, 5, [599], [method])[method]
    assert np.all(np.isfinite(window[599:])) and not np.array_equal(window[599:], expanding[599:])
    assert not np.allclose(expanding[599:], baseline_variances(shaken, 5, [599], [method])[method][599:], rtol=1e-6)
