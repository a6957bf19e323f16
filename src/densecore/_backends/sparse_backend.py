"""Exact Algorithm 1 (the sparse layout of the engine table) and k-NN distances on
CSR features.

Every distance is accumulated in float64 from the differences of two sparse
rows, merged column by column (``sum_j (a_j - b_j)^2`` over the union of
their non-zeros), never from ``|a|^2 - 2 a.b + |b|^2``, so duplicates are at
distance exactly 0 and large common offsets lose nothing to cancellation.
The greedy engines (:class:`Engine` in numba, :class:`TorchEngine` on any
device) have the dense engines' interface (``densecore.engines``): the shared
driver (``densecore.greedy``) makes the checks, the one power-of-two scaling,
the seeded first pick and the result, and runs them with progress, threads and
across processes. Per pick the numba engine reads every row once and merges the
picked row with the rows its certified estimate does not rule out; the torch
engine fills one dense row of ``2 * width`` terms per row (``width`` the most
non-zeros of a row) with fixed shapes, reading nothing back to the host:
``O(nnz + N * width)`` work. Neither makes a dense ``(N, D)`` copy.

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

from typing import Any, NamedTuple

import numpy as np
import torch
from numba import njit, prange

from .._core import mul_pow2, pow2_exp, pow2_scale
from .base import Engine as _Base

__all__ = ["Csr", "Engine", "TorchEngine", "canonical", "knn_mean_distance"]

_EPS = np.finfo(np.float64).eps
# The certified estimate of both engines' ``_lower``: a row is ruled out when
# ``(sq_t + |u|^2 - 2 x_t.u - _EST_ROUND (nnz_t + nnz_u + 4) eps (sq_t + |u|^2)
# - _EST_FLOOR) / du > r_t (1 + _EST_MARGIN)`` (see :func:`_lower`).
_EST_ROUND = 4.0
_EST_FLOOR = 1e-300
_EST_MARGIN = 1e-12
_BLOCK = 1 << 22
# float64 terms per row block of the torch engine: in cache on the CPU, few launches elsewhere
_BLOCK_CPU = 1 << 20
_BLOCK_DEV = 1 << 22


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


@njit(cache=True)
def _row_norms(ip, dx):
    """``(N,)`` float64 squared norms of the rows."""
    out = np.zeros(len(ip) - 1)
    for t in range(len(ip) - 1):
        acc = 0.0
        for i in range(ip[t], ip[t + 1]):
            acc += dx[i] * dx[i]
        out[t] = acc
    return out


@njit(cache=True, parallel=True)
def _lower(ip, ix, dx, sq, jp, jx, dy, u, du, r, w):
    """r_t = min(r_t, ||x_t - y_u||^2 / du) for every row t (Algorithm 1's update).

    Row ``u`` of Y is scattered into ``w`` ``(D,)`` (zeros, restored on return), and
    every row's distance is first estimated by the norm expansion ``sq_t + |y_u|^2 -
    2 x_t.y_u`` (``sq`` the rows' squared norms), one read of the row. The
    expansion's rounding is below ``4 (nnz_t + nnz_u + 4) eps (sq_t + |y_u|^2)``
    (each of its sums, and the merged sum of differences, errs by at most
    ``(n + 2) eps`` times the sum of the magnitudes it adds); a row whose estimate
    minus that bound, over ``du``, exceeds r_t cannot be lowered. Only the others get
    the exact distance from differences (:func:`_row_sqdist`), so r is the same as
    from differences everywhere.
    """
    j0, j1 = jp[u], jp[u + 1]
    su = 0.0
    for j in range(j0, j1):
        w[jx[j]] = dy[j]
        su += dy[j] * dy[j]
    nu = j1 - j0
    for t in prange(len(ip) - 1):
        rt = r[t]
        if rt <= 0.0:  # labeled or picked (-1), or at distance 0 already
            continue
        i0, i1 = ip[t], ip[t + 1]
        dot = 0.0
        for i in range(i0, i1):
            dot += dx[i] * w[ix[i]]
        s = sq[t] + su
        lb = s - 2.0 * dot - _EST_ROUND * (i1 - i0 + nu + 4) * _EPS * s - _EST_FLOOR
        if lb > 0.0 and lb / du > rt * (1.0 + _EST_MARGIN):
            continue
        q = _row_sqdist(ip, ix, dx, t, jp, jx, dy, u) / du
        if q < rt:
            r[t] = q
    for j in range(j0, j1):
        w[jx[j]] = 0.0


@njit(cache=True)
def _argmax_free(r):
    """First index of the largest ``r >= 0`` (-1: none; excluded points hold -1)."""
    best, arg = -1.0, -1
    for t in range(len(r)):
        if r[t] > best:
            best, arg = r[t], t
    return arg


@njit(cache=True)
def _picks(ip, ix, dx, sq, dens, r, w, k, start, out_i, out_r):
    """``k`` picks of Algorithm 1 into ``out_i``/``out_r`` from position ``start``."""
    for s in range(k):
        u = _argmax_free(r)
        out_i[start + s] = u
        out_r[start + s] = r[u]
        r[u] = -1.0
        _lower(ip, ix, dx, sq, ip, ix, dx, u, dens[u], r, w)


class Csr(NamedTuple):
    """Canonical CSR rows (sorted, unique columns; float64 values) as numpy arrays or
    tensors: ``indptr (N + 1,)``, ``indices (nnz,)``, ``data (nnz,)`` and ``dim`` D."""

    indptr: Any
    indices: Any
    data: Any
    dim: int


def _pair(r_u: float, u: int) -> torch.Tensor:
    return torch.tensor([float(r_u), float(u)], dtype=torch.float64)


class Engine(_Base):
    """The greedy engine on CSR rows in numba (CPU; the table's ``("numba", "sparse")``).

    Per pick every row is read once against the pick scattered into a dense
    ``(D,)`` vector (``O(nnz)``); only rows whose certified norm-expansion estimate
    does not rule them out are merged with the pick for the exact distance from
    differences in float64 (:func:`_lower`).

    Args:
        x: :class:`Csr` of the ``(N, D)`` pool (numpy, already scaled).
        dens: ``(N,)`` float64 densities (ones for k-center greedy).
        centres: :class:`Csr` of the ``(L, D)`` labeled points (L may be 0).
        cdens: ``(L,)`` float64 their densities.
        excluded: ``(N,)`` bool, in-pool labeled points.
        max_new: unused (nothing is preallocated).
    """

    host = True

    def __init__(self, x, dens, centres, cdens, excluded, max_new):
        self.x, self.dens = x, np.ascontiguousarray(dens, dtype=np.float64)
        self.sq = _row_norms(x.indptr, x.data)
        self.w = np.zeros(x.dim)  # the pick scattered, between calls all zeros
        self.r = np.full(len(x.indptr) - 1, np.inf)
        for k in range(len(centres.indptr) - 1):
            _lower(x.indptr, x.indices, x.data, self.sq, centres.indptr, centres.indices,
                   centres.data, k, float(cdens[k]), self.r, self.w)
        self.r[np.asarray(excluded, dtype=bool)] = -1.0
        self.picks = 0

    def best(self) -> torch.Tensor:
        """``(2,)`` float64 ``(r, index)`` of the next pick; ``(-1, -1)`` when done."""
        u = int(_argmax_free(self.r))
        return _pair(self.r[u], u) if u >= 0 else _pair(-1.0, -1)

    def row(self, u) -> torch.Tensor:
        """``(D + 1,)`` float64: the (dense) features of point ``u`` and its density."""
        u = int(u)
        ip, ix, dx, dim = self.x
        out = torch.zeros(dim + 1, dtype=torch.float64)
        out[torch.from_numpy(ix[ip[u]:ip[u + 1]])] = torch.from_numpy(dx[ip[u]:ip[u + 1]])
        out[-1] = float(self.dens[u])
        return out

    def add_centre(self, vec, u=-1) -> None:
        """Make ``vec`` ``(D + 1,)`` (features, density) a selected point; ``u`` its index
        in this pool or -1 for a point held elsewhere."""
        v = vec.detach().cpu().numpy() if hasattr(vec, "detach") else np.asarray(vec)
        self.picks += 1
        if int(u) >= 0:
            self.r[int(u)] = -1.0
        cols = np.flatnonzero(v[:-1]).astype(np.int64)
        ip, ix, dx, _ = self.x
        _lower(ip, ix, dx, self.sq, np.array([0, len(cols)], dtype=np.int64), cols,
               np.ascontiguousarray(v[:-1][cols], dtype=np.float64), 0, float(v[-1]), self.r,
               self.w)

    def run(self, k: int, out_idx: torch.Tensor, out_r: torch.Tensor) -> None:
        """Make ``k`` picks of this pool alone into ``out_idx``/``out_r`` (``(budget,)``
        int64 / float64 CPU tensors)."""
        ip, ix, dx, _ = self.x
        _picks(ip, ix, dx, self.sq, self.dens, self.r, self.w, k, self.picks,
               out_idx.numpy(), out_r.numpy())
        self.picks += k


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
    the one scaling rule (``pow2_scale``) with no range left unscaled."""
    peak = max((float(np.abs(d).max()) for d in datas if d.size), default=0.0)
    return pow2_scale(peak, 0)


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


class TorchEngine(_Base):
    """The greedy engine on CSR tensors (any device; the table's ``("torch", "sparse")``),
    exact like :class:`Engine`, with no read back to the host in :meth:`run` (fixed
    shapes only: the pick, its row and its density stay on the device).

    Per pick ``u`` (Algorithm 1's update ``r_t = min(r_t, ||x_t - x_u||^2 / d_u)``) the
    row's ``width`` slots (its columns in order, padded with zeros) are gathered and
    every column of ``u`` is mapped to its slot in a ``(D + 1,)`` table. Then, row
    block by row block, each row ``t`` gets one dense row of ``2 * width`` float64
    terms: its non-zeros off ``u``'s columns (at their place in row ``t``) and, per
    slot ``s`` of ``u``, ``x_t[c_s] - v_s`` (``-v_s`` where ``t`` lacks column
    ``c_s``; 0 in a padded slot). The squared distance is the row's sum of their
    squares: a sum of non-negative terms from coordinate differences, so a duplicate
    of a centre is at exactly 0, and two equal rows get equal sums (the same terms in
    the same places: ties go to the lowest index). Work per pick: ``O(nnz + N *
    width)``, ``width`` the most non-zeros of a row.

    :meth:`add_centre` (labeled points, points held by another process) reads the
    centre's column count back to the host, and splits a centre with more than
    ``width`` non-zeros into chunks of ``width`` slots.

    Args:
        x: :class:`Csr` of tensors ``(crow, col, val)`` int64/int64/float64 on one device.
        dens: ``(N,)`` float64 densities on that device.
        centres: :class:`Csr` of the ``(L, D)`` labeled points (tensors on that device).
        cdens: ``(L,)`` float64 their densities.
        excluded: ``(N,)`` bool, in-pool labeled points.
        max_new: unused (nothing is preallocated).
        block: float64 terms per row block (the dense ``rows x 2 width`` buffer); None:
            small on the CPU (the buffer stays in cache), large elsewhere.
    """

    host = False

    def __init__(self, x, dens, centres, cdens, excluded, max_new, block: int | None = None):
        crow, col, val, self.dim = x
        dev = val.device
        self.dens, self.crow = dens, crow
        cr = crow.cpu().numpy()  # construction may read the host: the row blocks
        n, nnz = len(cr) - 1, int(cr[-1])
        lens = np.diff(cr)
        self.width = w = max(1, int(lens.max()) if n else 1)
        if block is None:
            block = _BLOCK_CPU if dev.type == "cpu" else _BLOCK_DEV
        step = max(1, block // (2 * w))  # rows per block
        self.blocks = [(a, min(n, a + step), int(cr[a]), int(cr[min(n, a + step)]))
                       for a in range(0, n, step)]
        self.lens = crow.diff()
        # a zero entry stands in for an empty pool's gathers (never in a block)
        self.col = col if nnz else torch.zeros(1, dtype=torch.int64, device=dev)
        self.val = val if nnz else torch.zeros(1, dtype=torch.float64, device=dev)
        row_of = torch.repeat_interleave(torch.arange(n, device=dev), self.lens,
                                         output_size=nnz)
        # an entry's place in its block's (rows, 2 w) buffer: its row there, and its place
        # in the row (where it stays off u's columns; on them it moves to w + u's slot)
        self.base = (row_of % step) * (2 * w)
        self.place = torch.arange(nnz, device=dev) - crow[row_of]
        del row_of
        self.buf = torch.empty((min(step, max(n, 1)), 2 * w), dtype=torch.float64, device=dev)
        self.qbuf = torch.empty(self.buf.shape[0], dtype=torch.float64, device=dev)
        # column -> w + its slot in the centre, -1 off the centre (max(place, -1) = place)
        self.slot = torch.full((self.dim + 1,), -1, dtype=torch.int64, device=dev)
        self.slots = torch.arange(w, device=dev)
        self.none = torch.tensor([-1.0, -1.0], dtype=torch.float64, device=dev)
        self.r = torch.full((n,), float("inf"), dtype=torch.float64, device=dev)
        jr = centres.indptr.tolist()
        for k in range(len(jr) - 1):
            self._add(centres.indices[jr[k]:jr[k + 1]], centres.data[jr[k]:jr[k + 1]],
                      cdens[k:k + 1])
        self.r = torch.where(excluded, torch.full_like(self.r, -1.0), self.r)
        self.picks = 0

    def _slots(self, u1):
        """Row ``u1`` (a 1-element int64 index) in ``width`` slots: ``(cols, vals)``
        ``(width,)``, padded with column D and value 0 (no host read)."""
        ok = self.slots < self.lens.index_select(0, u1)
        e = torch.where(ok, self.crow.index_select(0, u1) + self.slots, 0)
        cols = torch.where(ok, self.col.index_select(0, e), self.dim)
        return cols, torch.where(ok, self.val.index_select(0, e), 0.0)

    def _sums(self, cols, vals, off=None):
        """Per row block ``(lo, hi, q)``: ``q`` ``(hi - lo,)`` the squared distances of rows
        ``lo:hi`` to the centre with ``cols``/``vals`` ``(width,)`` (padding: column D,
        value 0), over all of its columns (``off`` None) or, for a chunk of a wider
        centre, over the chunk's columns and, with ``off`` ``(D + 1,)`` bool (True off
        every chunk), the row's non-zeros off the centre (else none of them).

        A row's buffer holds its non-zeros off the centre at their place in the row and
        ``x_t[c_s] - v_s`` at ``w + s`` (``-v_s`` where the row lacks ``c_s``); ``q`` is
        the sum of their squares."""
        w = self.width
        self.slot.index_put_((cols,), self.slots + w)
        for lo, hi, e0, e1 in self.blocks:
            col, val = self.col[e0:e1], self.val[e0:e1]
            to = torch.maximum(self.slot.index_select(0, col), self.place[e0:e1])
            if off is not None:
                val = torch.where((to >= w) | off.index_select(0, col), val, 0.0)
            m = self.buf[:hi - lo].zero_()
            m.view(-1).index_copy_(0, to.add_(self.base[e0:e1]), val)  # one place each
            m[:, w:].sub_(vals)
            yield lo, hi, torch.sum(m.square_(), 1, out=self.qbuf[:hi - lo])
        self.slot.index_fill_(0, cols, -1)

    def _add(self, cols, vals, du) -> None:
        """r_t = min(r_t, ||x_t - v||^2 / du) for a centre given by its ``cols``/``vals``
        (any count; reads it back to the host) and ``du`` ``(1,)``."""
        n, w = self.r.numel(), self.width
        if n == 0:
            return
        chunks = max(1, -(-cols.numel() // w))
        pad = chunks * w - cols.numel()
        cols = torch.cat([cols, cols.new_full((pad,), self.dim)]).reshape(chunks, w)
        vals = torch.cat([vals.to(torch.float64), vals.new_zeros(pad, dtype=torch.float64)])
        vals = vals.reshape(chunks, w)
        if chunks == 1:
            for lo, hi, q in self._sums(cols[0], vals[0]):
                torch.minimum(self.r[lo:hi], q / du, out=self.r[lo:hi])
            return
        off = torch.ones(self.dim + 1, dtype=torch.bool, device=self.r.device)
        off[cols.reshape(-1)] = False
        total = torch.zeros(n, dtype=torch.float64, device=self.r.device)
        for c in range(chunks):  # the chunks' sums in order, off-centre terms in the first
            for lo, hi, q in self._sums(cols[c], vals[c], off if c == 0 else off & False):
                total[lo:hi] += q
        torch.minimum(self.r, total / du, out=self.r)

    def best(self) -> torch.Tensor:
        """``(2,)`` float64 ``(r, index)`` of the next pick; ``(-1, -1)`` when done."""
        if self.r.numel() == 0:
            return self.none
        u = torch.argmax(self.r).reshape(1)  # first maximum
        pair = torch.cat([self.r.index_select(0, u), u.to(torch.float64)])
        return torch.where(pair[0] < 0, self.none, pair)

    def row(self, u) -> torch.Tensor:
        """``(D + 1,)`` float64: the (dense) features of point ``u`` (an int or a 0-d int64
        tensor) and its density (no host read)."""
        u1 = torch.as_tensor(u, dtype=torch.int64, device=self.r.device).reshape(1)
        cols, vals = self._slots(u1)
        out = torch.zeros(self.dim + 1, dtype=torch.float64, device=self.r.device)
        out.index_put_((cols,), vals)  # padding lands on D, overwritten next
        out[-1:] = self.dens.index_select(0, u1)
        return out

    def add_centre(self, vec, u=-1) -> None:
        """As :meth:`Engine.add_centre`; ``vec`` on this engine's device, ``u`` an int or a
        0-d int64 tensor (reads the centre's column count back to the host)."""
        self.picks += 1
        if self.r.numel() == 0:
            return
        u1 = torch.as_tensor(u, dtype=torch.int64, device=self.r.device).reshape(1)
        ui = u1.clamp_min(0)
        self.r.index_put_((ui,), torch.where(u1 >= 0, -1.0, self.r.index_select(0, ui)))
        cols = vec[:-1].nonzero().squeeze(1)
        self._add(cols, vec[:-1].index_select(0, cols), vec[-1:].to(torch.float64))

    def run(self, k: int, out_idx: torch.Tensor, out_r: torch.Tensor) -> None:
        """As :meth:`Engine.run`, on the engine's device, with no read back to the host.
        Past the last pickable point (every ``r < 0``) a pick is recorded as index -1,
        ``r`` -1 and lowers nothing."""
        i = self.picks
        self.picks += k
        if self.r.numel() == 0:
            out_idx[i:i + k] = -1
            out_r[i:i + k] = -1.0
            return
        for i in range(i, i + k):
            u1 = torch.argmax(self.r).reshape(1)  # first maximum
            ru = self.r.index_select(0, u1)
            out_idx[i:i + 1] = torch.where(ru < 0, -1, u1)
            out_r[i:i + 1] = ru  # -1 once nothing is left: then every r is -1, none lowers
            self.r.index_fill_(0, u1, -1.0)
            du = self.dens.index_select(0, u1)
            cols, vals = self._slots(u1)
            for lo, hi, q in self._sums(cols, vals):
                torch.minimum(self.r[lo:hi], q.div_(du), out=self.r[lo:hi])
