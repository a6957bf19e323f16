"""Groups of nearby points and byte codes, so that the dense pass reads little per pick.

After the hand-over to dense passes (:mod:`densecore._backends.numba`), every pick must
prove for every live point that the new centre ``u`` does not lower its ``r``;
very few points do move. Two bounds, both exact, make that cheap:

* **Whole groups.** Most points lie in other parts of the feature space than
  ``u`` (other classes, other image regions). With ``m_g`` a group's mean and
  ``rad_g`` the largest distance of a member to it, every member ``t`` has
  ``||f_t - f_u|| >= ||f_u - m_g|| - rad_g``, so no member can move when
  ``(||f_u - m_g|| - rad_g)^2 > d_u max_{t in g} r_t``.
* **Byte codes.** In the groups that are left, each point is read as ``D``
  signed bytes relative to its group (:func:`encode`), a quarter of the bytes
  of float32 features, with an error bound that keeps the test exact; only the
  few points the codes do not rule out have their features read.

The groups come from two passes of Lloyd's assignment in a low-dimensional
view of the points (:mod:`.sketch`, or the features themselves when ``D`` is
small), seeded at evenly spaced rows. Any partition keeps the selection exact;
a compact one rules out more. Means and radii are computed from the features
in float64, the radii rounded up.

Shape:
    features ``(N, D)``, view ``(N, m)`` -> ``perm (N,)`` (point indices grouped,
    ascending within a group), ``starts (G + 1,)``, ``means (G, D)`` float64,
    ``radii (G,)`` float64; codes ``(N, D)`` int8 in group order.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["build_groups", "encode", "n_groups"]

# At most this many groups, each of at least _GROUP_MIN points on average: a bound per
# group costs D operations per pick, and small pools gain nothing from them.
_GROUPS = 256
_GROUP_MIN = 512


def n_groups(n: int) -> int:
    """Number of groups for a pool of ``n`` points (1: no grouping)."""
    return max(1, min(_GROUPS, n // _GROUP_MIN))


@njit(cache=True, parallel=True, fastmath={"reassoc", "contract", "nsz"}, nogil=True)
def _assign(view, seeds_t, labels):
    """``labels[i]``: the nearest seed of ``view[i]`` (``seeds_t`` ``(m, G)``, float32)."""
    m, g = seeds_t.shape
    for i in prange(view.shape[0]):
        acc = np.zeros(g, dtype=np.float32)
        for j in range(m):
            v = view[i, j]
            for k in range(g):
                q = seeds_t[j, k] - v
                acc[k] += q * q
        best = 0
        for k in range(1, g):
            if acc[k] < acc[best]:
                best = k
        labels[i] = best


@njit(cache=True)
def _means(view, labels, g):
    """``(m, G)`` float32 means of ``view`` per label (a group left empty keeps 0)."""
    m = view.shape[1]
    acc = np.zeros((g, m))
    cnt = np.zeros(g)
    for i in range(view.shape[0]):
        k = labels[i]
        cnt[k] += 1.0
        for j in range(m):
            acc[k, j] += view[i, j]
    out = np.zeros((m, g), dtype=np.float32)
    for k in range(g):
        if cnt[k] > 0:
            for j in range(m):
                out[j, k] = acc[k, j] / cnt[k]
    return out


@njit(cache=True, parallel=True, nogil=True)
def _mean_radius(x, perm, starts, means, radii):
    """Float64 mean and largest member distance of every group, the radius rounded up."""
    d = x.shape[1]
    eps = np.finfo(np.float64).eps
    for k in prange(starts.shape[0] - 1):
        s, e = starts[k], starts[k + 1]
        if e <= s:
            radii[k] = 0.0
            continue
        for c in range(d):
            means[k, c] = 0.0
        for p in range(s, e):
            t = perm[p]
            for c in range(d):
                means[k, c] += np.float64(x[t, c])
        for c in range(d):
            means[k, c] /= e - s
        big = 0.0
        for p in range(s, e):
            t = perm[p]
            acc = 0.0
            for c in range(d):
                q = np.float64(x[t, c]) - means[k, c]
                acc += q * q
            if acc > big:
                big = acc
        # float64 rounding of a sum of D squares and of the means: far below this margin
        radii[k] = np.sqrt(big) * (1.0 + 8.0 * (d + 2) * eps)


def build_groups(x: np.ndarray, view: np.ndarray, g: int):
    """Partition the rows of ``x`` ``(N, D)`` into ``g`` groups of nearby points.

    Args:
        x: ``(N, D)`` float32/float64 features (means and radii come from these).
        view: ``(N, m)`` float32 low-dimensional view of the same rows (the
            assignment is made there; any view keeps the bounds valid).
        g: number of groups, ``1 <= g <= N``.

    Returns:
        ``(perm (N,) int64, starts (g + 1,) int64, means (g, D) float64,
        radii (g,) float64)``: ``perm[starts[k]:starts[k + 1]]`` are the
        members of group ``k`` in ascending order (a group may be empty).
    """
    n = x.shape[0]
    labels = np.zeros(n, dtype=np.int64)
    if g > 1:
        if view.dtype != np.float32:  # float64 features far outside float32's range
            view = np.clip(view, -1e38, 1e38)
        view = np.ascontiguousarray(view, dtype=np.float32)
        seeds = np.ascontiguousarray(view[np.linspace(0, n - 1, g).astype(np.int64)].T)
        _assign(view, seeds, labels)
        _assign(view, _means(view, labels, g), labels)
    perm = np.argsort(labels, kind="stable").astype(np.int64)
    starts = np.zeros(g + 1, dtype=np.int64)
    np.cumsum(np.bincount(labels, minlength=g), out=starts[1:])
    means = np.zeros((g, x.shape[1]))
    radii = np.zeros(g)
    _mean_radius(x, perm, starts, means, radii)
    return perm, starts, means, radii


@njit(cache=True, parallel=True, nogil=True)
def _encode(x, perm, starts, means, codes, scales, errs):
    """Fill ``codes`` (N, D) int8, ``scales`` (G,) and ``errs`` (N,); see :func:`encode`."""
    d = x.shape[1]
    eps = np.finfo(np.float64).eps
    for k in prange(starts.shape[0] - 1):
        s, e = starts[k], starts[k + 1]
        big = 0.0
        for p in range(s, e):
            t = perm[p]
            for c in range(d):
                v = abs(np.float64(x[t, c]) - means[k, c])
                if v > big:
                    big = v
        # a group within 1e-300 of its mean keeps codes 0 at scale 1 (e bounds it)
        sc = big / 127.0 if big > 1e-300 else 1.0
        scales[k] = sc
        for p in range(s, e):
            t = perm[p]
            acc = 0.0
            for c in range(d):
                z = (np.float64(x[t, c]) - means[k, c]) / sc
                q = min(127.0, max(-127.0, np.rint(z)))
                codes[p, c] = np.int8(q)
                acc += (z - q) * (z - q)
            # plus the float64 rounding of z (a few ulps of 127 per coordinate); the
            # factor makes the float32 value round up
            errs[p] = np.float32((np.sqrt(acc) + 1024.0 * d * eps) * (1.0 + 1e-6))


def encode(x: np.ndarray, perm: np.ndarray, starts: np.ndarray, means: np.ndarray):
    """One signed byte per feature of every point, relative to its group.

    Point ``t`` at position ``p`` of group ``k`` is coded as ``q_p`` with
    ``x_t ~ m_k + s_k q_p``; ``e_p`` bounds ``||(x_t - m_k) / s_k - q_p||`` from above,
    so for any ``v``: ``||x_t - v|| >= s_k (||q_p - (v - m_k) / s_k|| - e_p)``, the
    bound the dense pass evaluates in a quarter of the bytes of float32 features.

    Args:
        x: ``(N, D)`` features; perm, starts, means: from :func:`build_groups`.

    Returns:
        ``(codes (N, D) int8 in position order, scales (G,) float64,
        errs (N,) float32 in units of the group's scale)``.
    """
    n, d = x.shape
    codes = np.empty((n, d), dtype=np.int8)
    scales = np.empty(len(starts) - 1)
    errs = np.empty(n, dtype=np.float32)
    _encode(x, perm, starts, means, codes, scales, errs)
    return codes, scales, errs
