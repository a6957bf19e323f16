"""densecore.stats against obvious references: scipy's one-sample t test, the
sign-flip p by itertools, Holm's and Benjamini-Hochberg's procedures run
step by step at many levels."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from densecore.stats import benjamini_hochberg, holm, paired_interval, sign_flip_p


def _holm_rejects(p, alpha):
    """Holm's procedure as written: step down until the first p_(i) > alpha / (m - i)."""
    m, order, rejected = len(p), np.argsort(p, kind="stable"), set()
    for i, k in enumerate(order):
        if p[k] > alpha / (m - i):
            break
        rejected.add(int(k))
    return rejected


def _bh_rejects(p, alpha):
    """BH as written: reject the k smallest, k the largest i with p_(i) <= i alpha / m."""
    m, order = len(p), np.argsort(p, kind="stable")
    k = max([i + 1 for i in range(m) if p[order[i]] <= (i + 1) * alpha / m], default=0)
    return {int(j) for j in order[:k]}


pvals = st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=12)


@settings(deadline=None, max_examples=200)
@given(pvals, st.sampled_from([0.001, 0.01, 0.05, 0.1, 0.2, 0.5]))
def test_adjusted_p_reject_what_the_procedures_reject(p, alpha):
    p = np.array(p)
    assert {i for i, a in enumerate(holm(p)) if a <= alpha} == _holm_rejects(p, alpha)
    assert {i for i, a in enumerate(benjamini_hochberg(p)) if a <= alpha} == _bh_rejects(p, alpha)


@settings(deadline=None, max_examples=100)
@given(pvals)
def test_adjusted_p_ordering(p):
    p = np.array(p)
    h, b = holm(p), benjamini_hochberg(p)
    assert (h >= p - 1e-15).all() and (b >= p - 1e-15).all()
    assert (h >= b - 1e-15).all()  # Holm is never less conservative than BH
    assert (h <= 1).all() and (b <= 1).all()


def test_six_comparisons_holm_rejects_nothing():
    # six comparisons, smallest p 0.0098: Holm's first threshold 0.05 / 6 = 0.0083
    p = [0.0098, 0.035, 0.2, 0.4, 0.6, 0.9]
    assert holm(p).min() > 0.05
    assert holm(p)[0] == pytest.approx(6 * 0.0098)
    assert benjamini_hochberg(p)[0] == pytest.approx(6 * 0.0098)


def test_empty_and_bad_pvalues():
    assert holm([]).size == 0 and benjamini_hochberg([]).size == 0
    with pytest.raises(ValueError, match="pvalues"):
        holm([0.1, 1.5])
    with pytest.raises(ValueError, match="pvalues"):
        benjamini_hochberg([0.1, float("nan")])
    with pytest.raises(ValueError, match="pvalues"):
        holm([[0.1]])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [2, 5, 9])
def test_paired_interval_matches_scipy(seed, n):
    d = np.random.default_rng(seed).normal(0.5, 1.0, n)
    r = paired_interval(d, 0.9)
    t = sps.ttest_1samp(d, 0.0)
    assert r.p == pytest.approx(t.pvalue, rel=1e-10)
    lo, hi = sps.t.interval(0.9, n - 1, loc=d.mean(), scale=sps.sem(d))
    assert (r.low, r.high) == pytest.approx((lo, hi), rel=1e-10)
    assert r.n == n and r.mean == pytest.approx(d.mean())


def test_paired_interval_degenerate():
    r = paired_interval([1.5])
    assert r.low is None and r.p is None and r.p_sign_flip == 1.0
    r = paired_interval([2.0, 2.0, 2.0])
    assert r.low is None and r.p is None and r.p_sign_flip == 0.25
    with pytest.raises(ValueError, match="diffs"):
        paired_interval([1.0, float("inf")])
    with pytest.raises(ValueError, match="level"):
        paired_interval([1.0, 2.0], level=1.0)


@pytest.mark.parametrize("seed", [0, 3])
def test_sign_flip_exact_matches_itertools(seed):
    d = np.random.default_rng(seed).normal(0.3, 1.0, 7)
    d[2] = -d[5]  # a tie in |d|
    obs = abs(d.sum())
    ref = np.mean([abs(np.dot(s, d)) >= obs - 1e-12
                   for s in itertools.product((1, -1), repeat=d.size)])
    assert sign_flip_p(d) == (pytest.approx(ref), True)


def test_sign_flip_monte_carlo_near_exact():
    d = np.random.default_rng(5).normal(0.4, 1.0, 14)
    exact, e = sign_flip_p(d)
    approx, a = sign_flip_p(d, exact_max=10, n_resamples=40_000, seed=1)
    assert e and not a
    assert approx == pytest.approx(exact, abs=0.01)
    assert sign_flip_p(d, exact_max=10, n_resamples=40_000, seed=1)[0] == approx  # seeded
