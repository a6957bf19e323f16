"""Synthetic data with known structure, for tests, benchmarks and the demo.

Shape:
    ``gaussian_mixture`` returns features ``(n, dim)`` float32 and labels ``(n,)`` int64.
    ``feature_map`` returns features ``(B, D, H, W)`` float32, region ids ``(B, H, W)``
    int64 and noise levels ``(B, H, W)`` float32.
"""

from __future__ import annotations

import numpy as np

from .validation import check_int, check_positive_float

__all__ = ["feature_map", "gaussian_mixture"]


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


def feature_map(batch: int, dim: int, height: int, width: int, *, n_regions: int = 6,
                noise_levels=None, separation: float = 1.0,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image-like feature maps made of regions that differ in noise level.

    Each image is cut into ``n_regions`` Voronoi cells around seed pixels drawn
    at random. Region ``r`` has one mean feature vector (shared by all images)
    and every pixel in it is that mean plus isotropic Gaussian noise with
    standard deviation ``noise_levels[r]``. Within a region, neighbouring
    pixels are samples of one distribution, so a noisier region is one where a
    pixel lies farther from its neighbours: a larger average radial distance
    and a lower coverage density.

    Args:
        batch: number of images B.
        dim: feature channels D.
        height: H.
        width: W.
        n_regions: regions per image (each image holds every region id once;
            at most ``height * width``).
        noise_levels: ``(n_regions,)`` per-region noise standard deviations
            (>= 0); default evenly spaced from 0.05 to 1.0.
        separation: standard deviation of the region means.
        seed: seed of a local generator.

    Returns:
        ``(features (B, D, H, W) float32, region (B, H, W) int64 ids in
        [0, n_regions), noise (B, H, W) float32 per-pixel noise level)``.

    Example:
        >>> f, region, noise = feature_map(2, 4, 16, 20, n_regions=3, seed=0)
        >>> f.shape, f.dtype, region.shape, sorted(np.unique(region).tolist())
        ((2, 4, 16, 20), dtype('float32'), (2, 16, 20), [0, 1, 2])
        >>> [round(float(v), 3) for v in np.unique(noise)]
        [0.05, 0.525, 1.0]
    """
    batch = check_int(batch, "batch", minimum=1)
    dim = check_int(dim, "dim", minimum=1)
    height = check_int(height, "height", minimum=1)
    width = check_int(width, "width", minimum=1)
    n_regions = check_int(n_regions, "n_regions", minimum=1)
    separation = check_positive_float(separation, "separation")
    if n_regions > height * width:
        raise ValueError(f"n_regions must be at most height * width = {height * width}; "
                         f"got {n_regions}")
    if noise_levels is None:
        levels = np.linspace(0.05, 1.0, n_regions) if n_regions > 1 else np.full(1, 0.5)
    else:
        levels = np.asarray(noise_levels, dtype=np.float64)
        if levels.shape != (n_regions,) or not np.all(np.isfinite(levels)) or np.any(levels < 0):
            raise ValueError(f"noise_levels must be ({n_regions},) finite and >= 0; "
                             f"got {levels!r}")
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=separation, size=(n_regions, dim))
    yy, xx = np.mgrid[0:height, 0:width]
    region = np.empty((batch, height, width), dtype=np.int64)
    for b in range(batch):
        flat = rng.choice(height * width, size=n_regions, replace=False)
        sy, sx = np.divmod(flat, width)
        d2 = (yy[None] - sy[:, None, None]) ** 2 + (xx[None] - sx[:, None, None]) ** 2
        region[b] = np.argmin(d2, axis=0)
    noise = levels[region]
    eps = rng.normal(size=(batch, height, width, dim))
    x = means[region] + eps * noise[..., None]
    features = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)
    return features, region, noise.astype(np.float32)
