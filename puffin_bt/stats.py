"""Is a backtest's Sharpe ratio skill or luck? PSR, DSR, the probability of backtest overfitting (CSCV)
and stationary-bootstrap intervals for a Sharpe ratio and a difference of two. Sharpe ratios are per
period (mean / population std) unless a function annualises; non-finite inputs are refused, not dropped.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from .errors import ConfigError, DataError

__all__ = [
    "EULER_GAMMA",
    "PBOResult",
    "constant_up_to_roundoff",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "probabilistic_sharpe_ratio",
    "probability_of_backtest_overfitting",
    "sharpe_confidence_interval",
    "sharpe_difference_confidence_interval",
    "sharpe_report",
]

EULER_GAMMA = 0.5772156649015329
MIN_PERIODS = 3
# CSCV evaluates C(n_splits, n_splits/2) combinations: 12,870 at the paper's 16, 705,432 at 22,
# 2.7 million at 24. The cap keeps a typo from running for hours.
MAX_COMBINATIONS = 1_000_000
# Cells of the (resamples x periods) index matrix built at once, and combinations scored at once:
# they bound the memory (a few arrays of this many float64) whatever n_boot, T and n_splits are.
_BOOT_CELLS = 2_000_000
_COMBO_CHUNK = 20_000
# Sharpe ratios this close are tied (see _tied).
_TIE_RTOL = 1e-9
_TIE_ATOL = 1e-12
# A series whose values spread less than this fraction of their magnitude is constant up to round-off: a return of
# 0.01 and one a single float step (1.7e-18) away gave a "Sharpe ratio" of 6.8e16 and a PSR of 1.
_FLAT_RTOL = 1e-12
# Resamples of a bootstrap interval: 100,000 pin a 99.9% interval's tails; 10**9 ran for minutes.
MAX_BOOT = 100_000
_NORMAL = NormalDist()


# ---------------------------------------------------------------- validation


def _as_series(name: str, values) -> np.ndarray:
    """``values`` as a 1-D float array with only finite values, or DataError."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} could not be read as numbers ({exc}); pass a 1-D sequence of per-period returns") from None
    if arr.ndim != 1:
        raise DataError(f"{name} has shape {arr.shape}; pass a 1-D sequence of per-period returns, one value per period")
    _refuse_non_finite(name, arr)
    return arr


def _refuse_non_finite(name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        first = np.unravel_index(int(np.argmax(bad)), arr.shape)
        where = ", ".join(str(int(i)) for i in first)
        raise DataError(
            f"{name}[{where}] is {arr[first]} ({int(bad.sum())} non-finite values in all); non-finite values are refused, "
            f"not dropped: drop or fill missing periods first, e.g. r[np.isfinite(r)]"
        )


def constant_up_to_roundoff(arr: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Whether ``arr`` (along ``axis``) is constant up to round-off: its range is at most ``_FLAT_RTOL`` of its
    largest magnitude. The range, not the std: the std of a constant like 0.1 rounds to ~1e-17, not 0."""
    spread = arr.max(axis=axis) - arr.min(axis=axis)
    return spread <= _FLAT_RTOL * np.abs(arr).max(axis=axis)


def _degeneracy(name: str, arr: np.ndarray, purpose: str) -> str | None:
    """Why ``arr`` has no usable Sharpe ratio (too short, constant), or None if it has one."""
    if len(arr) < MIN_PERIODS:
        return f"{name} has {len(arr)} finite values; {purpose} needs at least {MIN_PERIODS}"
    if constant_up_to_roundoff(arr):
        every = (f"every value {float(arr[0])!r}" if arr.max() == arr.min() else
                 f"values {float(arr.min())!r} to {float(arr.max())!r}, which differ by round-off only")
        return (
            f"{name} is constant ({every}), so its volatility is zero and its Sharpe ratio undefined "
            f"(a strategy that never trades has all-zero returns); {purpose} needs returns that vary"
        )
    return None


def _as_returns(name: str, values, purpose: str) -> np.ndarray:
    arr = _as_series(name, values)
    problem = _degeneracy(name, arr, purpose)
    if problem:
        raise DataError(problem)
    return arr


def _check_real(name: str, value, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} is not a finite number; {hint}")
    return float(value)


def _check_level(level) -> float:
    level = _check_real("level", level, "pass the interval's coverage, e.g. 0.95")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"level={level} is outside (0, 1); pass the interval's coverage as a fraction, e.g. 0.95 for 95%")
    return level


def _check_int(name: str, value, minimum: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name}={value!r} is not an integer; {hint}")
    if value < minimum:
        raise ConfigError(f"{name}={value} is too small; {hint}")
    return int(value)


def _check_seed(seed) -> int | None:
    if seed is None:
        return None
    return _check_int("seed", seed, 0, "pass a non-negative integer (or None for a fresh, unrepeatable draw)")


def _check_annualization(factor) -> float:
    factor = _check_real("annualization", factor, "pass the number of periods per year, e.g. 252 for daily returns")
    if factor <= 0:
        raise ConfigError(f"annualization={factor} must be > 0; pass the number of periods per year (1.0 keeps per-period values)")
    return factor


# ---------------------------------------------------------------- moments and PSR


def _unit_scale(x: np.ndarray) -> np.ndarray:
    """``x`` scaled by a power of two to a largest magnitude in [0.5, 1): exact, so mean/std keeps
    every bit, while x**4 of tiny returns (1e-80) can no longer underflow to zero."""
    return np.ldexp(x, -int(np.frexp(np.max(np.abs(x)))[1]))


def _sharpe(x: np.ndarray) -> float:
    x = _unit_scale(x)
    return float(np.mean(x) / np.std(x))


def _psr(x: np.ndarray, sr_benchmark: float) -> float:
    sr = _sharpe(x)
    x = _unit_scale(x)
    dev = x - x.mean()
    m2 = np.mean(dev**2)
    skew = np.mean(dev**3) / m2**1.5
    kurt = np.mean(dev**4) / m2**2
    # The asymptotic variance of the estimated Sharpe ratio (Mertens 2002). It is >= (1 - skew*sr/2)^2
    # because kurt >= 1 + skew^2 for any distribution, so it reaches 0 only for two-valued returns
    # with skew*SR = 2 (round-off may then leave it a hair below 0).
    var_term = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2
    if not var_term > 0:
        raise DataError(
            f"the Sharpe ratio's variance term 1 - skew*SR + (kurt-1)/4*SR^2 is {var_term:.3g} for these returns "
            f"(SR={sr:.4g}, skew={skew:.4g}, kurtosis={kurt:.4g}): they take just two values, placed so that the "
            f"estimate has no sampling error to measure; the PSR needs returns with more than two distinct values"
        )
    z = (sr - sr_benchmark) * math.sqrt(len(x) - 1) / math.sqrt(var_term)
    return _NORMAL.cdf(z)


def probabilistic_sharpe_ratio(returns, sr_benchmark: float = 0.0) -> float:
    """Probability that the true Sharpe ratio of ``returns`` exceeds ``sr_benchmark``.

    Bailey & López de Prado (2012), "The Sharpe Ratio Efficient Frontier", Journal of Risk 15(2):

        PSR = Φ( (SR − SR*) · √(T − 1) / √(1 − γ3·SR + (γ4 − 1)/4 · SR²) )

    with SR = mean/std the per-period (not annualised) Sharpe ratio, γ3 the skewness and γ4 the
    Pearson (non-excess, 3 for a normal) kurtosis of the T returns, all population moments
    (ddof=0). ``sr_benchmark`` (SR*) is per period too: divide an annual target by √(periods per
    year). Non-finite returns raise DataError (drop them first); so do fewer than 3 returns and
    constant returns (zero volatility: no Sharpe ratio).

    >>> r = np.array([0.010, -0.004, 0.006, 0.012, -0.008, 0.003, 0.009, -0.002])
    >>> round(probabilistic_sharpe_ratio(r), 4)
    0.8776
    >>> probabilistic_sharpe_ratio(r, sr_benchmark=r.mean() / r.std())
    0.5
    """
    x = _as_returns("returns", returns, "the probabilistic Sharpe ratio")
    sr_benchmark = _check_real("sr_benchmark", sr_benchmark, "pass a per-period Sharpe ratio, e.g. 0.0")
    return _psr(x, sr_benchmark)


def expected_max_sharpe(trial_sharpes) -> float:
    """Expected maximum of N per-period Sharpe ratios whose true values are all zero.

    Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", Journal of Portfolio
    Management 40(5), eq. for SR₀ (from the false strategy theorem):

        SR* = √V · ((1 − γ)·Φ⁻¹(1 − 1/N) + γ·Φ⁻¹(1 − 1/(N·e)))

    with V the sample variance (ddof=1) of the N trials' Sharpe ratios and γ the
    Euler–Mascheroni constant. ``trial_sharpes`` are the per-period Sharpe ratios of every
    configuration tried (including the chosen one), in the same units as the returns they are
    compared with. At least 2 trials; non-finite values raise DataError.

    >>> round(expected_max_sharpe([0.02, -0.01, 0.05, 0.00, 0.03]), 4)
    0.0285
    """
    sharpes = _as_series("trial_sharpes", trial_sharpes)
    n = len(sharpes)
    if n < 2:
        raise DataError(
            f"trial_sharpes has {n} value{'s' if n != 1 else ''}; the expected maximum Sharpe ratio needs the Sharpe "
            f"ratios of at least 2 trials (every configuration tried, including the chosen one)"
        )
    spread = math.sqrt(float(np.var(sharpes, ddof=1)))
    return spread * ((1 - EULER_GAMMA) * _NORMAL.inv_cdf(1 - 1 / n) + EULER_GAMMA * _NORMAL.inv_cdf(1 - 1 / (n * math.e)))


def deflated_sharpe_ratio(returns, trial_sharpes) -> float:
    """Probabilistic Sharpe ratio of ``returns`` against the best Sharpe ratio luck alone would give.

    Bailey & López de Prado (2014), "The Deflated Sharpe Ratio: Correcting for Selection Bias,
    Backtest Overfitting and Non-Normality": DSR = PSR(SR*) with SR* = ``expected_max_sharpe(
    trial_sharpes)``, the expected maximum per-period Sharpe ratio of N unskilled trials. Pass
    the per-period Sharpe ratios of all N configurations tried; ``returns`` are those of the one
    chosen. Errors as in :func:`probabilistic_sharpe_ratio` and :func:`expected_max_sharpe`.

    >>> r = np.array([0.010, -0.004, 0.006, 0.012, -0.008, 0.003, 0.009, -0.002])
    >>> round(deflated_sharpe_ratio(r, [0.47, 0.10, -0.20, 0.35, 0.05]), 4)
    0.6552
    """
    x = _as_returns("returns", returns, "the deflated Sharpe ratio")
    return _psr(x, expected_max_sharpe(trial_sharpes))


# ---------------------------------------------------------------- probability of backtest overfitting


@dataclass(frozen=True)
class PBOResult:
    """Outcome of CSCV: ``pbo`` (a plain float, ready for JSON), the logit λ of every
    combination (read-only array) and how many combinations there were."""

    pbo: float
    logits: np.ndarray
    n_combinations: int


def probability_of_backtest_overfitting(performance, n_splits: int = 16) -> PBOResult:
    """Probability that the configuration best in sample ranks at or below the median out of sample.

    Bailey, Borwein, López de Prado & Zhu (2015/2017), "The Probability of Backtest Overfitting",
    Journal of Computational Finance 20(4): combinatorially symmetric cross-validation (CSCV).

    ``performance`` is a T×N matrix of per-period returns, one row per period, one column per
    trial (configuration). Its rows are cut into ``n_splits`` (even, the paper uses 16)
    contiguous blocks of ⌊T/n_splits⌋ rows; the first T mod n_splits rows (the oldest) are
    dropped so that the blocks are equal. For each of the C(n_splits, n_splits/2) ways to pick
    half the blocks as in-sample (IS; the rest out-of-sample, OOS):

    * n* = the trial with the highest IS Sharpe ratio (mean/std; the first one on a tie),
    * ω = r/(N + 1), r the rank (1 = worst, N = best, ties share their average rank) of n*'s
      OOS Sharpe ratio among the N trials' OOS Sharpe ratios, as in the paper,
    * λ = ln(ω / (1 − ω)).

    Sharpe ratios within round-off of each other (relative 1e-9, absolute 1e-12) count as tied.

    PBO is the share of combinations with λ ≤ 0, i.e. r ≤ (N + 1)/2, except that a combination whose n* ties out
    of sample with other trials at exactly the median rank (λ = 0 through a tie) counts one half: n* is then as
    likely above the median as below it, so indistinguishable trials give PBO 1/2, not 1. Without skill, r is uniform
    on 1..N and PBO → ⌈N/2⌉/N (exactly 1/2 for an even N). A subset with zero volatility has
    Sharpe ratio 0 if its returns are all 0, else ±inf with their sign. Non-finite values, fewer
    than 2 trials, a trial constant over the rows used (no Sharpe ratio: drop it), an odd n_splits, or
    n_splits > T raise errors.

    >>> rng = np.random.default_rng(0)
    >>> perf = rng.normal(0.0, 0.01, size=(400, 10))
    >>> perf[:, 3] += 0.01                 # trial 3 earns an edge in every period
    >>> res = probability_of_backtest_overfitting(perf, n_splits=8)
    >>> res.pbo, res.n_combinations
    (0.0, 70)
    """
    try:
        m = np.asarray(performance, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"performance could not be read as numbers ({exc}); pass a T x N matrix of per-period returns") from None
    if m.ndim != 2:
        raise DataError(f"performance has shape {m.shape}; pass a 2-D T x N matrix (rows = periods, columns = trials)")
    _refuse_non_finite("performance", m)
    n_rows, n_trials = m.shape
    if n_rows < 4:
        raise DataError(f"performance has {n_rows} rows; CSCV needs at least 4 (2 blocks of 2 periods): pass more periods")
    if n_trials < 2:
        raise DataError(
            f"performance has {n_trials} column{'s' if n_trials != 1 else ''}; PBO ranks trials against each other, "
            f"so it needs at least 2 columns (one per configuration tried)"
        )
    hint = "pass an even number of blocks >= 2 (the paper uses 16)"
    n_splits = _check_int("n_splits", n_splits, 2, hint)
    if n_splits % 2:
        raise ConfigError(f"n_splits={n_splits} is odd; CSCV splits the blocks into two equal halves, so {hint}")
    if n_splits > n_rows:
        raise ConfigError(f"n_splits={n_splits} exceeds the {n_rows} rows of performance; use at most {n_rows} blocks or pass more periods")
    n_combinations = math.comb(n_splits, n_splits // 2)
    if n_combinations > MAX_COMBINATIONS:
        raise ConfigError(
            f"n_splits={n_splits} gives {n_combinations:,} combinations (more than {MAX_COMBINATIONS:,}); "
            f"use n_splits <= 22 (the paper uses 16)"
        )
    block = n_rows // n_splits
    # n_rows >= 4 and 2 <= n_splits <= n_rows leave each half >= 2 rows, enough for a Sharpe ratio.
    half_rows = block * (n_splits // 2)

    used = m[n_rows - block * n_splits:]
    flat_cols = np.flatnonzero(constant_up_to_roundoff(used, axis=0))
    if flat_cols.size:
        j = int(flat_cols[0])
        raise DataError(
            f"performance column {j} is constant over the {len(used)} rows used (values {used[:, j].min()!r} to "
            f"{used[:, j].max()!r}): that trial has no Sharpe ratio; drop constant columns ({flat_cols.size} in all) "
            f"before computing PBO"
        )
    blocks = used.reshape(n_splits, block, n_trials)
    # Sums of deviations from each trial's overall mean: the IS/OOS variances come from sums of
    # squares, and centring first keeps sum(x^2)/n - mean^2 from cancelling away.
    with np.errstate(over="ignore", invalid="ignore"):
        centre = blocks.mean(axis=(0, 1))
        dev = blocks - centre
        squares = (dev * dev).sum(axis=1)
    if not (np.isfinite(centre).all() and np.isfinite(squares.sum(axis=0)).all()):
        i, j = np.unravel_index(int(np.argmax(np.abs(used))), used.shape)
        raise DataError(
            f"performance[{i + n_rows - len(used)}, {j}] is {used[i, j]!r}: values this large overflow the sums of "
            f"squares behind a Sharpe ratio; pass per-period returns as fractions (0.01 for 1%)"
        )
    stats = _BlockStats(
        sums=dev.sum(axis=1), squares=squares, centre=centre,
        low=blocks.min(axis=1), high=blocks.max(axis=1), rows=half_rows,
    )
    combos = itertools.combinations(range(n_splits), n_splits // 2)
    logits = np.empty(n_combinations)
    overfit = np.empty(n_combinations)
    done = 0
    while chunk := list(itertools.islice(combos, _COMBO_CHUNK)):
        chosen = np.array(chunk)
        in_sample = np.zeros((len(chunk), n_splits), dtype=bool)
        in_sample[np.arange(len(chunk))[:, None], chosen] = True
        sr_is = stats.sharpe(in_sample)
        sr_oos = stats.sharpe(~in_sample)
        best = np.argmax(_tied(sr_is, sr_is.max(axis=1, keepdims=True)), axis=1)
        oos_of_best = sr_oos[np.arange(len(chunk)), best][:, None]
        tied = _tied(sr_oos, oos_of_best)
        rank = ((sr_oos < oos_of_best) & ~tied).sum(axis=1) + (tied.sum(axis=1) + 1) / 2
        omega = rank / (n_trials + 1)
        logits[done:done + len(chunk)] = np.log(omega / (1 - omega))
        median_tie = (2 * rank == n_trials + 1) & (tied.sum(axis=1) > 1)
        overfit[done:done + len(chunk)] = np.where(median_tie, 0.5, rank <= (n_trials + 1) / 2)
        done += len(chunk)
    logits.flags.writeable = False
    return PBOResult(pbo=float(np.mean(overfit)), logits=logits, n_combinations=n_combinations)


def _tied(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sharpe ratios equal up to round-off (relative 1e-9, absolute 1e-12), infinities included.

    Ties are exact in real backtests: every half-sample in which a sparse trader made one winning
    trade has Sharpe ratio 1/sqrt(n - 1). Computed two ways they differ in the last bits, which
    must not decide which trial is best or how it ranks."""
    with np.errstate(invalid="ignore"):
        close = np.abs(a - b) <= _TIE_ATOL + _TIE_RTOL * np.maximum(np.abs(a), np.abs(b))
    # Only finite values can be close: the tolerance of an infinite one is infinite too.
    return (a == b) | (close & np.isfinite(a) & np.isfinite(b))


@dataclass(frozen=True)
class _BlockStats:
    """Per-block, per-trial sums from which any union of blocks' Sharpe ratios follows."""

    sums: np.ndarray  # (blocks, trials): sum of (x - centre)
    squares: np.ndarray  # (blocks, trials): sum of (x - centre)^2
    centre: np.ndarray  # (trials,)
    low: np.ndarray  # (blocks, trials): min of x
    high: np.ndarray  # (blocks, trials): max of x
    rows: int  # rows in a union of half the blocks

    def sharpe(self, mask: np.ndarray) -> np.ndarray:
        """Sharpe ratio of every trial over the blocks each row of ``mask`` (combinations x blocks) picks."""
        w = mask.astype(float)
        mean_dev = (w @ self.sums) / self.rows
        var = (w @ self.squares) / self.rows - mean_dev**2
        mean = mean_dev + self.centre
        with np.errstate(divide="ignore", invalid="ignore"):
            sr = np.where(var > 0, mean / np.sqrt(var), np.copysign(np.inf, mean))
        sr[(var <= 0) & (mean == 0)] = 0.0
        # A union of blocks that are each constant at one common value has no volatility; the sums
        # above would leave round-off there (a Sharpe ratio of ±1e16), so find those exactly.
        block_flat = self.low == self.high
        if block_flat.any():
            all_flat = (w @ block_flat) == mask.sum(axis=1, keepdims=True)
            rows, cols = np.nonzero(all_flat)
            if rows.size:
                picked = np.nonzero(mask[rows])[1].reshape(rows.size, -1)
                values = self.low[picked, cols[:, None]]
                same = values.min(axis=1) == values.max(axis=1)
                value = values[same, 0]
                sr[rows[same], cols[same]] = np.where(value == 0, 0.0, np.copysign(np.inf, value))
        return sr


# ---------------------------------------------------------------- stationary bootstrap


def _stationary_indices(rng: np.random.Generator, n: int, n_boot: int, block_size: float) -> np.ndarray:
    """(n_boot, n) indices of the stationary bootstrap (Politis & Romano 1994): blocks start at
    uniform positions, have geometric lengths of mean ``block_size`` and wrap past the end."""
    starts = rng.integers(0, n, size=(n_boot, n))
    new_block = rng.random((n_boot, n)) < 1.0 / block_size
    new_block[:, 0] = True
    pos = np.arange(n)
    block_start = np.maximum.accumulate(np.where(new_block, pos, 0), axis=1)
    return (np.take_along_axis(starts, block_start, axis=1) + (pos - block_start)) % n


def _row_sharpes(sample: np.ndarray) -> np.ndarray:
    """Sharpe ratio of each row; a flat row gets 0 if it is all zeros, else ±inf."""
    mean = sample.mean(axis=1)
    first = sample[:, 0]
    flat = sample.min(axis=1) == sample.max(axis=1)
    std = np.where(flat, 1.0, sample.std(axis=1))
    return np.where(flat, np.where(first == 0, 0.0, np.copysign(np.inf, first)), mean / std)


def _bootstrap(series: list[np.ndarray], n_boot, block_size, seed, level, annualization) -> np.ndarray:
    """Bootstrap Sharpe ratios of each series (same indices for all): array (len(series), n_boot)."""
    _check_level(level)
    n_boot = _check_int("n_boot", n_boot, 100, "pass at least 100 resamples (2000 or more for a 95% interval)")
    if n_boot > MAX_BOOT:
        raise ConfigError(f"n_boot={n_boot} is too large; it must be <= {MAX_BOOT:,} (enough for a 99.9% interval; "
                          f"2000 suit a 95% one)")
    seed = _check_seed(seed)
    _check_annualization(annualization)
    n = len(series[0])
    if block_size is None:
        # Block length of order T^(1/3), the rate that is MSE-optimal for block-bootstrap variance
        # estimates (Hall, Horowitz & Jing 1995); Politis & White's (2004) data-driven constant is not used.
        block_size = max(1, round(n ** (1 / 3)))
    block_size = _check_real("block_size", block_size, "pass the mean block length in periods, >= 1, or None for round(T ** (1/3))")
    if not 1.0 <= block_size <= n:
        raise ConfigError(
            f"block_size={block_size} is outside [1, {n}] (the series has {n} periods); pass a mean block length in that range")
    series = [_unit_scale(x) for x in series]
    out = np.empty((len(series), n_boot))
    lo = 0
    for idx in _index_chunks(seed, n, n_boot, float(block_size)):
        hi = lo + len(idx)
        for k, x in enumerate(series):
            out[k, lo:hi] = _row_sharpes(x[idx])
        lo = hi
    return out


def _index_chunks(seed: int | None, n: int, n_boot: int, block_size: float) -> tuple[np.ndarray, ...]:
    """The resample indices of ``_bootstrap``, in chunks of at most ``_BOOT_CELLS`` cells, drawn from
    ``default_rng(seed)``. A seeded draw is kept for the next call with the same arguments: a backtest asks for a
    ticker's strategy interval, its buy-and-hold interval and their difference on the same dates with the same
    seed, which are the same indices (drawing them was most of the cost of its statistics)."""
    return _draw_index_chunks(seed, n, n_boot, block_size) if seed is None else _kept_index_chunks(seed, n, n_boot,
                                                                                                   block_size)


def _draw_index_chunks(seed: int | None, n: int, n_boot: int, block_size: float) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOT_CELLS // n)
    chunks = []
    for lo in range(0, n_boot, rows):
        idx = _stationary_indices(rng, n, min(n_boot, lo + rows) - lo, block_size)
        idx.flags.writeable = False  # kept and shared between calls
        chunks.append(idx)
    return tuple(chunks)


_kept_index_chunks = functools.lru_cache(maxsize=1)(_draw_index_chunks)


def _percentile_interval(values: np.ndarray, level: float, annualization: float) -> tuple[float, float]:
    # Order statistics just outside the (1 ± level)/2 quantiles rather than interpolating: never
    # narrower than the interpolated interval, and a ±inf (flat) resample never turns into NaN.
    tail = (1.0 - level) / 2.0
    lo = float(np.quantile(values, tail, method="lower"))
    hi = float(np.quantile(values, 1.0 - tail, method="higher"))
    scale = math.sqrt(annualization)
    return lo * scale, hi * scale


def sharpe_confidence_interval(
    returns, level: float = 0.95, *, n_boot: int = 2000, block_size: float | None = None, seed: int | None = 0,
    annualization: float = 1.0,
) -> tuple[float, float]:
    """Stationary block-bootstrap percentile interval of the Sharpe ratio of ``returns``.

    Politis & Romano (1994), "The Stationary Bootstrap", JASA 89(428): each of ``n_boot``
    resamples of length T strings together blocks that start at uniformly drawn periods, run
    for a geometric number of periods with mean ``block_size`` and wrap past the end of the
    series, so serial dependence within a block survives. ``block_size`` defaults to
    round(T ** (1/3)); 1 gives the i.i.d. bootstrap. The interval is per period, or annualised
    by √``annualization`` (e.g. 252 for daily returns). The endpoints are the order statistics
    just outside the (1 ± level)/2 quantiles of the resampled Sharpe ratios (mean/std, ddof=0;
    a resample of all zeros counts as 0, one flat at another value as ±inf, which can make an
    endpoint infinite). The same inputs and ``seed`` give the same interval;
    ``seed=None`` draws fresh entropy. Errors as in :func:`probabilistic_sharpe_ratio`, plus
    ConfigError for level outside (0, 1), n_boot outside [100, 100,000] or block_size outside [1, T].

    >>> r = np.random.default_rng(1).normal(0.001, 0.01, 500)
    >>> lo, hi = sharpe_confidence_interval(r, annualization=252)
    >>> bool(lo < r.mean() / r.std() * 252 ** 0.5 < hi)
    True
    """
    x = _as_returns("returns", returns, "a Sharpe ratio confidence interval")
    sharpes = _bootstrap([x], n_boot, block_size, seed, level, annualization)[0]
    return _percentile_interval(sharpes, level, annualization)


def sharpe_difference_confidence_interval(
    returns, benchmark_returns, level: float = 0.95, *, n_boot: int = 2000, block_size: float | None = None,
    seed: int | None = 0, annualization: float = 1.0,
) -> tuple[float, float]:
    """Stationary block-bootstrap interval of Sharpe(returns) − Sharpe(benchmark_returns).

    The same bootstrap as :func:`sharpe_confidence_interval`, resampling the paired
    (strategy, benchmark) periods with the same block indices, so their correlation is kept
    (as in Ledoit & Wolf 2008, "Robust performance hypothesis testing with the Sharpe ratio",
    though without their studentisation). Both series must
    have the same length, aligned period by period; both must vary.

    >>> rng = np.random.default_rng(2)
    >>> bench = rng.normal(0.0004, 0.01, 750)
    >>> strat = bench + rng.normal(0.0006, 0.004, 750)   # the benchmark plus an edge
    >>> lo, hi = sharpe_difference_confidence_interval(strat, bench, annualization=252)
    >>> bool(lo < hi)
    True
    >>> sharpe_difference_confidence_interval(bench, bench)
    (0.0, 0.0)
    """
    x = _as_returns("returns", returns, "a Sharpe ratio difference interval")
    y = _as_returns("benchmark_returns", benchmark_returns, "a Sharpe ratio difference interval")
    _check_same_length(x, y)
    sx, sy = _bootstrap([x, y], n_boot, block_size, seed, level, annualization)
    # Equal values (identical flat resamples included: inf - inf is NaN) differ by exactly 0.
    diff = np.where(sx == sy, 0.0, sx - sy)
    return _percentile_interval(diff, level, annualization)


def _check_same_length(x: np.ndarray, y: np.ndarray) -> None:
    if len(x) != len(y):
        raise DataError(
            f"returns has {len(x)} periods but benchmark_returns has {len(y)}; pass both aligned on the same periods "
            f"(e.g. join them on their dates and drop the periods either lacks)"
        )


# ---------------------------------------------------------------- report


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def sharpe_report(
    returns, benchmark_returns=None, *, periods_per_year: float = 252, level: float = 0.95, seed: int | None = 0,
) -> dict:
    """JSON-ready Sharpe statistics of one return series (and its difference from a benchmark).

    Keys: ``n_periods``; ``sharpe`` (annualised by √periods_per_year); ``psr`` (probabilistic
    Sharpe ratio against 0); ``sharpe_ci`` [lo, hi] (annualised stationary-bootstrap interval at
    ``level``, default block size); with a benchmark also ``sharpe_benchmark``, ``sharpe_diff``
    (annualised Sharpe(returns) − Sharpe(benchmark)) and ``sharpe_diff_ci``; and ``note``. Every
    value is a plain float, list, int, str or None. Unlike the functions it calls it does not raise
    on too-short or constant returns (a strategy that never trades): what cannot be computed is
    None and ``note`` says why (``note`` is None when everything was computed). Non-finite
    values, wrong shapes, unequal lengths and bad parameters still raise.

    >>> r = np.random.default_rng(3).normal(0.0005, 0.01, 504)
    >>> rep = sharpe_report(r)
    >>> sorted(rep)
    ['n_periods', 'note', 'psr', 'sharpe', 'sharpe_ci']
    >>> sharpe_report(np.zeros(504))["sharpe"] is None
    True
    """
    x = _as_series("returns", returns)
    periods_per_year = _check_real("periods_per_year", periods_per_year, "pass e.g. 252 for daily returns")
    if periods_per_year <= 0:
        raise ConfigError(f"periods_per_year={periods_per_year} must be > 0; pass e.g. 252 for daily or 12 for monthly returns")
    level = _check_level(level)
    seed = _check_seed(seed)
    scale = math.sqrt(periods_per_year)
    notes: list[str] = []
    report: dict = {"n_periods": len(x), "sharpe": None, "psr": None, "sharpe_ci": None}

    def interval(lo_hi: tuple[float, float], what: str) -> list[float] | None:
        if all(math.isfinite(v) for v in lo_hi):
            return [float(v) for v in lo_hi]
        notes.append(f"{what} is unbounded: some bootstrap resamples had zero volatility and a nonzero mean")
        return None

    problem = _degeneracy("returns", x, "a Sharpe ratio")
    if problem:
        notes.append(problem)
    else:
        report["sharpe"] = _sharpe(x) * scale
        try:
            report["psr"] = _psr(x, 0.0)
        except DataError as exc:
            notes.append(str(exc))
        report["sharpe_ci"] = interval(
            sharpe_confidence_interval(x, level, seed=seed, annualization=periods_per_year), "sharpe_ci")

    if benchmark_returns is not None:
        y = _as_series("benchmark_returns", benchmark_returns)
        _check_same_length(x, y)
        report.update(sharpe_benchmark=None, sharpe_diff=None, sharpe_diff_ci=None)
        problem_b = _degeneracy("benchmark_returns", y, "a Sharpe ratio")
        if problem_b:
            notes.append(problem_b)
        else:
            report["sharpe_benchmark"] = _sharpe(y) * scale
        if not problem and not problem_b:
            report["sharpe_diff"] = report["sharpe"] - report["sharpe_benchmark"]
            report["sharpe_diff_ci"] = interval(
                sharpe_difference_confidence_interval(x, y, level, seed=seed, annualization=periods_per_year), "sharpe_diff_ci")

    for key in ("sharpe", "psr", "sharpe_benchmark", "sharpe_diff"):
        if report.get(key) is not None:
            report[key] = _finite_or_none(report[key])
    report["note"] = "; ".join(notes) or None
    return report
