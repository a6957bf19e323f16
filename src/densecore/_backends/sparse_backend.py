"""Exact Algorithm 1 and k-NN distances on scipy CSR features, in numba.

Every distance is accumulated in float64 from the differences of two sparse
rows, merged column by column (``sum_j (a_j - b_j)^2`` over the union of
their non-zeros), never from ``|a|^2 - 2 a.b + |b|^2``, so duplicates are at
distance exactly 0 and large common offsets lose nothing to cancellation.
The rows are first scaled by one power of two (exact) so that no square
overflows or underflows float64; radii are scaled back at the end.

Per pick the greedy reads every row once and the picked row once per row:
``O(nnz + N * nnz(u))`` work, no dense ``(N, D)`` copy.

The k-NN search ranks candidates by the sparse product ``X X^T`` in row
blocks (fast, approximate), then recomputes the ``k + 1 + slack`` best
exactly from differences and keeps the result only when a rigorous rounding
bound shows no excluded row can be closer; otherwise that row is searched
exhaustively. The answer is therefore exact.

Shape:
    CSR ``(N, D)`` with sorted, unique column indices; densities ``(N,)``
    float64; centres ``(L, D)`` CSR; results ``(budget,)`` / ``(N,)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .nearest import mul_pow2, pow2_exp, pow2_scale

__all__ = ["canonical", "farthest_first", "knn_mean_distance"]

_EPS = np.finfo(np.float64).eps
_BLOCK = 1 << 22


@njit(cache=True)
def _row_sqdist(ip, ix, dx, t, jp, jx, dy, u):
    """Squared distance between row t of X and row u of Y, merged over columns."""
    i, ie = ip[t], ip[t + 1]
    j, je = jp[u], jp[u + 1]
    acc = 0.0
    while i < ie and j < je:
        ci, cj = ix[i], jx[j]
        if ci == cj:
            d = dx[i] - dy[j]
            acc += d * d
            i += 1
            j += 1
        elif ci < cj:
            acc += dx[i] * dx[i]
            i += 1
        else:
            acc += dy[j] * dy[j]
            j += 1
    while i < ie:
        acc += dx[i] * dx[i]
        i += 1
    while j < je:
        acc += dy[j] * dy[j]
        j += 1
    return acc


@njit(cache=True, parallel=True)
def _lower(ip, ix, dx, jp, jx, dy, u, du, r):
    """r_t = min(r_t, ||x_t - y_u||^2 / du) for every row t (Algorithm 1's update)."""
    for t in prange(len(ip) - 1):
        q = _row_sqdist(ip, ix, dx, t, jp, jx, dy, u) / du
        if q < r[t]:
            r[t] = q


@njit(cache=True)
def _argmax_free(r, taken):
    best, arg = -1.0, -1
    for t in range(len(r)):
        if not taken[t] and r[t] > best:
            best, arg = r[t], t
    return arg


@njit(cache=True)
def _greedy(ip, ix, dx, dens, r, taken, budget, first):
    picks = np.empty(budget, np.int64)
    radii = np.empty(budget, np.float64)
    for i in range(budget):
        u = first if (i == 0 and first >= 0) else _argmax_free(r, taken)
        picks[i] = u
        radii[i] = r[u]
        if i > 0 or first < 0:
            if not np.isfinite(r[u]):
                return picks[:i], radii[:i], u
        taken[u] = True
        _lower(ip, ix, dx, ip, ix, dx, u, dens[u], r)
    return picks, radii, -1


def canonical(a, dtype=np.float64):
    """A CSR copy with sorted, summed column indices and float64 data.

    Args:
        a: any scipy sparse matrix ``(N, D)``.

    Returns:
        ``(indptr int64, indices int64, data float64)`` of the canonical CSR.
    """
    c = a.tocsr(copy=True).astype(dtype)
    c.sum_duplicates()
    c.sort_indices()
    return (np.ascontiguousarray(c.indptr, dtype=np.int64),
            np.ascontiguousarray(c.indices, dtype=np.int64),
            np.ascontiguousarray(c.data, dtype=np.float64))


def _power_of_two_scale(*datas) -> float:
    """The power of two that brings the largest magnitude in ``datas`` into [1, 2) (exact):
    the one scaling rule (``nearest.pow2_scale``) with no range left unscaled."""
    peak = max((float(np.abs(d).max()) for d in datas if d.size), default=0.0)
    return pow2_scale(peak, 0)


def farthest_first(pool, dens, centres, cdens, taken, budget: int, first: int):
    """Algorithm 1 on canonical CSR rows.

    Args:
        pool: ``(indptr, indices, data)`` of the ``(N, D)`` pool (from :func:`canonical`).
        dens: ``(N,)`` float64 densities (ones for k-center greedy).
        centres: ``(indptr, indices, data)`` of ``(L, D)`` labeled points (may be empty).
        cdens: ``(L,)`` float64 densities of the centres.
        taken: ``(N,)`` bool, in-pool points already labeled (never picked).
        budget: number of picks.
        first: the first pick when nothing is labeled, else ``-1``.

    Returns:
        ``(indices (budget,) int64, radii (budget,) float64)``; radii are squared
        Euclidean distances divided by density, ``inf`` for a first pick made
        with nothing labeled.

    Raises:
        ValueError: a radius overflows float64 (densities too small for the
            distances), so the maximum cannot be decided.
    """
    ip, ix, dx = pool
    jp, jx, dy = centres
    s = _power_of_two_scale(dx, dy)
    dx, dy = dx * s, dy * s
    n = len(ip) - 1
    r = np.full(n, np.inf)
    for k in range(len(jp) - 1):
        _lower(ip, ix, dx, jp, jx, dy, k, cdens[k], r)
    taken = taken.copy()
    picks, radii, bad = _greedy(ip, ix, dx, dens, r, taken, budget, first)
    if bad >= 0:
        raise ValueError(
            "densities are too small for these distances: r = squared distance / density "
            f"overflows float64 at index {bad}; rescale the densities")
    return picks, mul_pow2(radii, -2 * pow2_exp(s))  # never s * s: it overflows


@njit(cache=True, parallel=True)
def _refine(ip, ix, dx, rows, cand, k, power, out_sum, out_ok, excluded_min, bound):
    """Exact distances of each row's candidates; keep the k nearest and certify them."""
    for b in prange(len(rows)):
        m = cand.shape[1]
        ex = np.empty(m)
        for c in range(m):
            ex[c] = _row_sqdist(ip, ix, dx, rows[b], ip, ix, dx, cand[b, c])
        ex.sort()
        # certified when the k-th exact distance is below every excluded row's
        # approximate distance minus the rounding bound
        out_ok[b] = ex[k - 1] <= excluded_min[b] - bound[b]
        acc = 0.0
        for c in range(k):
            acc += np.sqrt(ex[c]) if power == 1 else ex[c]
        out_sum[b] = acc


@njit(cache=True, parallel=True)
def _exhaustive(ip, ix, dx, rows, k, power, out_sum):
    n = len(ip) - 1
    for b in prange(len(rows)):
        t = rows[b]
        d = np.empty(n)
        for s in range(n):
            d[s] = _row_sqdist(ip, ix, dx, t, ip, ix, dx, s)
        d.sort()
        acc = 0.0
        for c in range(1, k + 1):
            acc += np.sqrt(d[c]) if power == 1 else d[c]
        out_sum[b] = acc


def _approx_sq(x, xt, sq, lo, hi) -> np.ndarray:
    """``(hi - lo, N)`` expanded squared distances ``|x_i|^2 + |x_j|^2 - 2 x_i . x_j``
    of rows ``lo:hi`` of ``x`` (CSR) to every row (``xt``: ``x.T`` as CSC, ``sq``:
    squared row norms): fast and rounded, within the bound :func:`knn_mean_distance`
    certifies against."""
    prod = (x[lo:hi] @ xt).toarray()
    return sq[lo:hi, None] + sq[None, :] - 2.0 * prod


def knn_mean_distance(a, k: int, power: int = 1, slack: int = 8):
    """Mean Euclidean distance of each row to its ``k`` nearest other rows, exactly.

    Args:
        a: scipy sparse ``(N, D)``, ``N > k``.
        k: number of neighbours; the row itself is excluded, duplicates count at 0.
        power: 1 averages Euclidean distances, 2 squared Euclidean distances.
        slack: extra candidates recomputed exactly per row.

    Returns:
        ``(N,)`` float64 mean distances (or squared distances for ``power=2``).
    """
    import scipy.sparse as sp

    ip, ix, dx = canonical(a)
    s = _power_of_two_scale(dx)
    dx = dx * s
    n = len(ip) - 1
    x = sp.csr_matrix((dx, ix, ip), shape=(n, a.shape[1]))
    sq = np.asarray(x.multiply(x).sum(1)).ravel()
    nnz_max = int(np.diff(ip).max()) if n else 0
    # |fl(x.y) - x.y| <= nnz eps |x||y| and likewise for the norms: a loose,
    # rigorous bound on the error of the expanded distance, per pair
    gamma = 4.0 * (nnz_max + 2) * _EPS
    m = min(n, k + 1 + slack)
    total = np.empty(n)
    step = max(1, _BLOCK // max(n, 1))
    redo = []
    xt = x.T.tocsc()
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        approx = _approx_sq(x, xt, sq, lo, hi)
        rows = np.arange(lo, hi)
        approx[rows - lo, rows] = -np.inf  # the row itself always ranks first
        if m < n:
            part = np.argpartition(approx, m, axis=1)
            cand = part[:, :m]
            # the smallest excluded approximate distance bounds every excluded row
            nxt = np.take_along_axis(approx, part[:, m:], 1).min(1)
        else:
            cand = np.argsort(approx, axis=1)
            nxt = np.full(hi - lo, np.inf)
        order = np.take_along_axis(approx, cand, 1).argsort(1)
        cand = np.take_along_axis(cand, order, 1)[:, 1:]  # column 0 is the row itself
        bound = 2.0 * gamma * (sq[lo:hi] + sq.max())
        ok = np.empty(hi - lo, np.bool_)
        sums = np.empty(hi - lo)
        _refine(ip, ix, dx, rows, np.ascontiguousarray(cand, np.int64), k, power, sums, ok,
                np.ascontiguousarray(nxt), np.ascontiguousarray(bound))
        total[lo:hi] = sums
        redo.extend((rows[~ok]).tolist())
    if redo:
        rows = np.asarray(redo, np.int64)
        sums = np.empty(len(rows))
        _exhaustive(ip, ix, dx, rows, k, power, sums)
        total[rows] = sums
    return mul_pow2(total / k, -power * pow2_exp(s))


def _lower_torch(r, cuts, col, val, row, dim, ucols, uvals, du, step):
    """Algorithm 1's update on CSR tensors, from differences only (no cancellation).

    ``||x_t - v||^2`` splits into ``sum_{j in t, j not in u} x_tj^2`` (t's non-zeros
    off u's columns) and ``sum_{j in u} (x_tj - v_j)^2`` (a dense ``rows x nnz(u)``
    gather of u's columns, absent entries 0): two sums of non-negative terms.
    """
    import torch

    n = r.shape[0]
    in_u = torch.zeros(dim, dtype=torch.bool, device=r.device)
    in_u[ucols] = True
    pos = torch.full((dim,), -1, dtype=torch.int64, device=r.device)
    pos[ucols] = torch.arange(len(ucols), device=r.device)
    on_u = in_u[col]
    off = ~on_u
    q = torch.zeros(n, dtype=torch.float64, device=r.device)
    q.index_add_(0, row[off], val[off] * val[off])
    for b, s in enumerate(range(0, n, step)):
        e = min(n, s + step)
        lo, hi = cuts[b], cuts[b + 1]
        sub = torch.zeros((e - s, len(ucols)), dtype=torch.float64, device=r.device)
        m = on_u[lo:hi]
        sub[row[lo:hi][m] - s, pos[col[lo:hi][m]]] = val[lo:hi][m]
        q[s:e] += (sub - uvals).pow(2).sum(1)
    torch.minimum(r, q / du, out=r)


def farthest_first_torch(pool, dens, centres, cdens, taken, budget: int, first: int,
                         dim: int, block: int = 1 << 22):
    """Algorithm 1 on CSR tensors (any device), exact like :func:`farthest_first`.

    Args:
        pool: ``(crow, col, val)`` int64/int64/float64 tensors of the canonical
            ``(N, D)`` CSR (sorted, unique columns).
        dens: ``(N,)`` float64 tensor; centres: ``(crow, col, val)`` of ``(L, D)``;
        cdens: ``(L,)``; taken: ``(N,)`` bool; budget, first: as in :func:`farthest_first`.
        dim: ``D``.
        block: entries of the dense ``rows x nnz(u)`` gather per row block.

    Returns:
        ``(indices (budget,) int64, radii (budget,) float64)`` tensors on the pool's device.
        Each pick reads one index back to the host (to slice the picked row).
    """
    import torch

    crow, col, val = pool
    jrow, jcol, jval = centres
    dev = val.device
    s = _power_of_two_scale(val.cpu().numpy(), jval.cpu().numpy())
    val, jval = val * s, jval * s
    n = crow.shape[0] - 1
    row = torch.repeat_interleave(torch.arange(n, device=dev), crow.diff())
    r = torch.full((n,), float("inf"), dtype=torch.float64, device=dev)
    cr = crow.tolist()
    width = max(1, int(max(crow.diff().max().item() if n else 1, jrow.diff().max().item()
                           if len(jrow) > 1 else 1)))
    step = max(1, block // width)  # rows per block, so rows x nnz(u) <= block
    cuts = cr[::step] + ([cr[-1]] if n % step else [])

    def lower(cols, vals, du):
        _lower_torch(r, cuts, col, val, row, dim, cols, vals, du, step)

    jr = jrow.tolist()
    for k in range(len(jr) - 1):
        lower(jcol[jr[k]:jr[k + 1]], jval[jr[k]:jr[k + 1]], float(cdens[k]))
    taken = taken.clone()
    picks = torch.empty(budget, dtype=torch.int64, device=dev)
    radii = torch.empty(budget, dtype=torch.float64, device=dev)
    for i in range(budget):
        if i == 0 and first >= 0:
            u = first
        else:
            u = int(torch.argmax(torch.where(taken, float("-inf"), r)))  # first maximum
            if not torch.isfinite(r[u]):
                raise ValueError(
                    "densities are too small for these distances: r = squared distance / "
                    f"density overflows float64 at index {u}; rescale the densities")
        picks[i] = u
        radii[i] = r[u]
        taken[u] = True
        lower(col[cr[u]:cr[u + 1]], val[cr[u]:cr[u + 1]], float(dens[u]))
    return picks, mul_pow2(radii, -2 * pow2_exp(s))  # never s * s: it overflows
