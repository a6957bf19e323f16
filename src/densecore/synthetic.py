"""Synthetic data with known structure, for tests, benchmarks and the demo.

Shape:
    ``gaussian_mixture`` returns features ``(n, dim)`` float32 and labels ``(n,)`` int64.
"""

from __future__ import annotations

import numpy as np

from .validation import check_int, check_positive_float

__all__ = ["gaussian_mixture"]


def gaussian_mixture(n: int, dim: int = 2, n_components: int = 8, *, weights=None,
                     spreads=None, separation: float = 4.0, duplicates: float = 0.0,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sample a Gaussian mixture with unequal weights and spreads.

    By default component weights follow a geometric progression (the largest
    component holds many times the smallest) and spreads vary by a factor of
    about 4, so coverage areas differ in density, the setting of Eq. 4.

    Args:
        n: number of points.
        dim: feature dimension D.
        n_components: number of components C.
        weights: ``(C,)`` mixture weights (normalised); default unequal.
        spreads: ``(C,)`` per-component standard deviations; default 0.25..1.0.
        separation: standard deviation of the component means.
        duplicates: fraction in [0, 1) of points replaced by exact copies of others.
        seed: seed of a local generator.

    Returns:
        ``(features (n, dim) float32, labels (n,) int64 component ids)``.

    Example:
        >>> x, y = gaussian_mixture(100, dim=3, n_components=4, seed=0)
        >>> x.shape, x.dtype, y.shape, int(y.max()) < 4
        ((100, 3), dtype('float32'), (100,), True)
    """
    n = check_int(n, "n", minimum=0)
    dim = check_int(dim, "dim", minimum=1)
    c = check_int(n_components, "n_components", minimum=1)
    separation = check_positive_float(separation, "separation")
    if not 0.0 <= float(duplicates) < 1.0:
        raise ValueError(f"duplicates must lie in [0, 1); got {duplicates}")
    rng = np.random.default_rng(seed)
    if weights is None:
        w = 0.6 ** np.arange(c)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (c,) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"weights must be ({c},) non-negative with a positive sum; "
                             f"got {w!r}")
    w = w / w.sum()
    if spreads is None:
        s = np.linspace(0.25, 1.0, c) if c > 1 else np.ones(1)
        s = s[rng.permutation(c)]
    else:
        s = np.asarray(spreads, dtype=np.float64)
        if s.shape != (c,) or np.any(s <= 0):
            raise ValueError(f"spreads must be ({c},) and > 0; got {s!r}")
    means = rng.normal(scale=separation, size=(c, dim))
    labels = rng.choice(c, size=n, p=w)
    x = means[labels] + rng.normal(size=(n, dim)) * s[labels, None]
    n_dup = int(round(float(duplicates) * n))
    if n_dup and n > 1:
        dst = rng.choice(n, size=n_dup, replace=False)
        src = rng.choice(np.setdiff1d(np.arange(n), dst), size=n_dup)
        x[dst] = x[src]
        labels[dst] = labels[src]
    return x.astype(np.float32), labels.astype(np.int64)
