"""Paired comparisons over seeds and multiplicity corrections for a family of them.

A claim that one method beats another rests on paired differences (one per
seed, both methods run with the same seed and data draw), an interval for
their mean and a p value adjusted for every comparison reported beside it.

* :func:`paired_interval`: mean of the differences, the Student-t interval
  ``mean ± t((1 + level) / 2, n - 1) * sd / sqrt(n)``, the two-sided paired
  t-test p value and the sign-flip (randomisation) p value, exact by
  enumerating every sign pattern up to ``exact_max`` pairs, Monte Carlo with a
  fixed seed above;
* :func:`holm`: Holm's step-down adjustment (controls the family-wise error
  rate);
* :func:`benjamini_hochberg`: Benjamini-Hochberg's step-up adjustment
  (controls the false discovery rate).

Shape:
    ``diffs``: ``(n,)`` finite floats, one paired difference per seed;
    ``pvalues``: ``(m,)`` floats in ``[0, 1]``, one per comparison of the
    family; the adjusted values come back as an ``(m,)`` float64 numpy array
    in the input order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .validation import check_finite_float, check_int

__all__ = ["PairedInterval", "benjamini_hochberg", "holm", "paired_interval", "sign_flip_p"]


@dataclass(frozen=True)
class PairedInterval:
    """The summary of ``n`` paired differences.

    ``low``/``high``/``p`` are None under two pairs or when every difference
    is equal (no spread: the t statistic is undefined); ``p_sign_flip`` is the
    sign-flip p value (``exact`` says whether it enumerated every pattern).
    """

    n: int
    mean: float
    sd: float
    low: float | None
    high: float | None
    p: float | None
    p_sign_flip: float
    exact: bool
    level: float

    def as_dict(self) -> dict:
        return asdict(self)


def _diffs(diffs: Any) -> np.ndarray:
    try:
        d = np.asarray(diffs, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"diffs must be a sequence of real numbers; got {type(diffs).__name__}"
                        ) from e
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"diffs must be a non-empty 1-D sequence; got shape {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError(f"diffs must be finite; got {d[~np.isfinite(d)][0]} at index "
                         f"{int(np.flatnonzero(~np.isfinite(d))[0])}")
    return d


def _pvalues(pvalues: Any) -> np.ndarray:
    try:
        p = np.asarray(pvalues, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"pvalues must be a sequence of real numbers; got "
                        f"{type(pvalues).__name__}") from e
    if p.ndim != 1:
        raise ValueError(f"pvalues must be 1-D; got shape {p.shape}")
    bad = ~((p >= 0) & (p <= 1))  # NaN fails both
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"pvalues must lie in [0, 1]; got {p[i]} at index {i}")
    return p


def sign_flip_p(diffs: Any, *, exact_max: int = 16, n_resamples: int = 100_000,
                seed: int = 0) -> tuple[float, bool]:
    """Two-sided sign-flip p value of ``mean(diffs) = 0``; returns ``(p, exact)``.

    Under the null each paired difference is as likely to have either sign;
    p is the share of sign patterns whose ``|sum|`` is at least the observed
    one (with a relative tolerance of 1e-12 for ties). Up to ``exact_max``
    pairs every one of the ``2**n`` patterns is counted (exact); above,
    ``n_resamples`` random patterns from ``numpy.random.default_rng(seed)``
    plus the observed one (``(hits + 1) / (n_resamples + 1)``).
    With ``n`` pairs the exact p cannot go below ``2 / 2**n`` (0.0625 at n = 5).

    Args:
        diffs: ``(n,)`` finite paired differences.

    Example:
        >>> sign_flip_p([1.0, 2.0, 3.0, 4.0, 5.0])
        (0.0625, True)
        >>> sign_flip_p([1.0, -1.0])
        (1.0, True)
    """
    d = _diffs(diffs)
    exact_max = check_int(exact_max, "exact_max", minimum=1)
    n_resamples = check_int(n_resamples, "n_resamples", minimum=1)
    n = d.size
    observed = abs(d.sum())
    tol = 1e-12 * max(np.abs(d).sum(), 1e-300)
    if n <= exact_max:
        bits = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
        sums = np.abs((1 - 2 * bits) @ d)
        return float(np.mean(sums >= observed - tol)), True
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, n_resamples, 10_000):
        k = min(10_000, n_resamples - start)
        signs = rng.integers(0, 2, size=(k, n)) * 2 - 1
        hits += int(np.sum(np.abs(signs @ d) >= observed - tol))
    return (hits + 1) / (n_resamples + 1), False


def paired_interval(diffs: Any, level: float = 0.95, *, exact_max: int = 16,
                    seed: int = 0) -> PairedInterval:
    """Mean, Student-t interval and p values of paired differences (one per seed).

    The interval is ``mean ± t((1 + level) / 2, n - 1) * sd / sqrt(n)`` with
    ``sd`` the sample standard deviation (ddof 1); ``p`` is the two-sided
    paired t-test p value, ``2 * (1 - T_{n-1}(|mean| / (sd / sqrt(n))))``;
    ``p_sign_flip`` the randomisation p of :func:`sign_flip_p`.

    Args:
        diffs: ``(n,)`` finite differences ``method - reference``, same seed.
        level: the interval's coverage in ``(0, 1)``.

    Example:
        >>> r = paired_interval([1.0, 2.0, 3.0])
        >>> r.mean, round(r.low, 3), round(r.high, 3), round(r.p, 4)
        (2.0, -0.484, 4.484, 0.0742)
        >>> r.p_sign_flip, r.exact
        (0.25, True)
    """
    from scipy import stats

    d = _diffs(diffs)
    level = check_finite_float(level, "level")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    n = d.size
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    p_flip, exact = sign_flip_p(d, exact_max=exact_max, seed=seed)
    if n < 2 or sd == 0.0:
        return PairedInterval(n, mean, sd, None, None, None, p_flip, exact, level)
    se = sd / np.sqrt(n)
    half = float(stats.t.ppf((1 + level) / 2, n - 1) * se)
    p = float(2 * stats.t.sf(abs(mean) / se, n - 1))
    return PairedInterval(n, mean, sd, mean - half, mean + half, min(p, 1.0), p_flip, exact,
                          level)


def holm(pvalues: Any) -> np.ndarray:
    """Holm's step-down adjusted p values (family-wise error rate), in the input order.

    Sorted ascending, the ``i``-th smallest (0-based) of ``m`` becomes
    ``max_{j <= i} min(1, (m - j) * p_(j))``; a comparison is rejected at
    level a when its adjusted p is <= a.

    Args:
        pvalues: ``(m,)`` raw p values in ``[0, 1]``; ``m`` may be 0.

    Example:
        >>> holm([0.01, 0.04, 0.03]).round(4).tolist()
        [0.03, 0.06, 0.06]
    """
    p = _pvalues(pvalues)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj
    return out


def benjamini_hochberg(pvalues: Any) -> np.ndarray:
    """Benjamini-Hochberg adjusted p values (false discovery rate), in the input order.

    Sorted ascending, the ``i``-th smallest (1-based) of ``m`` becomes
    ``min_{j >= i} min(1, m * p_(j) / j)``.

    Args:
        pvalues: ``(m,)`` raw p values in ``[0, 1]``; ``m`` may be 0.

    Example:
        >>> benjamini_hochberg([0.01, 0.04, 0.03]).round(4).tolist()
        [0.03, 0.04, 0.04]
    """
    p = _pvalues(pvalues)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adj = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    out = np.empty(m)
    out[order] = adj
    return out
