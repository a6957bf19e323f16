"""CPU farthest-first engine in numba, exact, with coverage-area pruning.

The state of Algorithm 1 is kept per coverage area (the points whose nearest
selected point is ``k``): an index list stored contiguously in an arena, the
largest ``r`` in the area and the (lowest) index that attains it. When ``u``
is picked, the triangle inequality proves that a member ``t`` of the area of
centre ``c`` cannot get closer to ``u`` than to ``c`` when::

    ||f_c - f_u|| >= sqrt(r_t) * (sqrt(d_c) + sqrt(d_u))

(||f_t - f_u|| >= ||f_c - f_u|| - ||f_t - f_c|| and ||f_t - f_c|| = sqrt(r_t d_c),
so ||f_t - f_u||^2 / d_u >= r_t). With ``max r in area k`` in place of ``r_t``
the whole area is skipped; otherwise the test runs per member on its stored
``r_t`` alone, and only members that fail it have their features read. Areas
that are not skipped are scanned in parallel chunks; members that move are
appended to the new area at the arena's tail, stayers are compacted in place.

All kernels take contiguous numpy arrays; :class:`Engine` converts its tensors
once. Distances are squared Euclidean, accumulated in the feature
dtype from differences (no norm expansion, so duplicates tie exactly).

Shape:
    features ``(N, D)`` float32/float64 C-contiguous; densities ``(N,)`` float64;
    centres ``(L, D)``, centre densities ``(L,)``.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from numba import njit, prange

from .sketch import SKETCH_DIM, build_sketch

log = logging.getLogger(__name__)

# Relative slack of the pruning and sketch tests: a point or area is skipped only
# when its bound holds with a margin well above the rounding of the engine's own
# distances (a sum of D squares in the feature dtype), see Engine.slack.
_PRUNE_SLACK = 1e-4
# The sketch (:mod:`.sketch`) is built at the hand-over to dense passes, for pools of
# at least this many points and features of more than twice its dimension, when at
# least this many picks remain (pruning alone does better where it works).
_SKETCH_MIN_N = 8192
_SKETCH_MIN_PICKS = 256
_CHUNK = 2048


# Re-association lets LLVM vectorise the reduction; no-NaN/no-inf flags are
# deliberately left out because r starts at +inf.
_FAST = {"reassoc", "contract", "nsz", "arcp"}


@njit(cache=True, fastmath=_FAST)
def _sqdist(x, i, y, j):
    acc = x.dtype.type(0.0)
    for c in range(x.shape[1]):
        t = x[i, c] - y[j, c]
        acc += t * t
    return acc


@njit(cache=True, fastmath=_FAST)
def _sqdist_to(x, i, v):
    acc = x.dtype.type(0.0)
    for c in range(x.shape[1]):
        t = x[i, c] - v[c]
        acc += t * t
    return acc


# float32 rounding of the sketch distance (m <= 64 terms): shrink it by this factor
_SKETCH_SHRINK = 1.0 - 1e-5


@njit(cache=True)
def _area_best(order, rr, start, end):
    best = -1.0
    arg = -1
    for p in range(start, end):
        v = rr[p]
        t = order[p]
        if v > best or (v == best and t < arg):
            best = v
            arg = t
    return best, arg


@njit(cache=True)
def build_areas(assign, r, n_areas, order, rr, a_start, a_end, a_max, a_arg):
    """Counting-sort points into contiguous coverage areas (ascending index within each).

    Fills ``order``/``rr`` positions ``[0, m)`` and the area tables; returns m, the
    number of assigned points.
    """
    counts = np.zeros(n_areas + 1, dtype=np.int64)
    for t in range(assign.shape[0]):
        if assign[t] >= 0:
            counts[assign[t] + 1] += 1
    for k in range(n_areas):
        counts[k + 1] += counts[k]
    fill = counts[:n_areas].copy()
    for t in range(assign.shape[0]):
        k = assign[t]
        if k >= 0:
            order[fill[k]] = t
            rr[fill[k]] = r[t]
            fill[k] += 1
    for k in range(n_areas):
        a_start[k] = counts[k]
        a_end[k] = counts[k + 1]
        a_max[k], a_arg[k] = _area_best(order, rr, counts[k], counts[k + 1])
    return counts[n_areas]


@njit(cache=True)
def _compact(order, rr, tmp, a_start, a_end, n_areas):
    """Slide every area to the left so the arena has no holes; returns the new tail."""
    starts = a_start[:n_areas].copy()
    by_start = np.argsort(starts, kind="mergesort")
    w = 0
    for q in range(n_areas):
        k = by_start[q]
        s, e = a_start[k], a_end[k]
        a_start[k] = w
        for p in range(s, e):
            order[w] = order[p]
            rr[w] = rr[p]
            tmp[w] = tmp[p]
            w += 1
        a_end[k] = w
    return w


@njit(cache=True)
def _best_area(a_max, a_arg, n_a):
    """(r, point index, area) of the largest r over all areas; ties: lowest index."""
    au = -1
    ru = -1.0
    u = -1
    for k in range(n_a):
        v = a_max[k]
        if v > ru or (v == ru and a_arg[k] < u):
            ru = v
            u = a_arg[k]
            au = k
    return ru, u, au


@njit(cache=True)
def _locate(order, rr, a_start, a_end, n_a, u):
    """(area, r) of point ``u``; (-1, -1.0) when it is in no area (labeled or picked)."""
    for k in range(n_a):
        for p in range(a_start[k], a_end[k]):
            if order[p] == u:
                return k, rr[p]
    return -1, -1.0


@njit(cache=True, parallel=True, nogil=True)
def add_centre(x, centres, cdens, order, rr, tmp, a_start, a_end, a_max, a_arg, a_centre,
               state, cu, du, u, au, slack):
    """Add a selected point as a new centre and lower every r it improves.

    Args:
        x: (N, D) features.
        centres, cdens: (C,) centre tables, the first ``state[1]`` filled.
        order, rr, tmp: (cap,) arena of point indices, their r, and scratch.
        a_start, a_end, a_max, a_arg, a_centre: per-area tables.
        state: int64[5]: picks done, centres filled, areas used, arena tail, and a
            running count of feature rows read.
        cu: (D,) features of the new centre; du: its density.
        u: its index in ``x`` if it belongs to this pool (removed from the pool), else -1.
        au: the area holding ``u`` (always scanned), or -1.
        slack: relative margin of the pruning test (``Engine.slack``).
    """
    d = x.shape[1]
    n_c, n_a, tail = state[1], state[2], state[3]
    for c in range(d):
        centres[n_c, c] = cu[c]
    cdens[n_c] = du
    sdu = np.sqrt(du)
    # 1. work list: chunks of the areas that cannot be skipped
    n_chunks_max = order.shape[0] // _CHUNK + n_a + 1
    chunk_area = np.empty(n_chunks_max, dtype=np.int64)
    chunk_lo = np.empty(n_chunks_max, dtype=np.int64)
    chunk_hi = np.empty(n_chunks_max, dtype=np.int64)
    chunk_thr = np.empty(n_chunks_max, dtype=np.float64)
    n_chunks = 0
    for k in range(n_a):
        s, e = a_start[k], a_end[k]
        if e <= s:
            continue
        ck = a_centre[k]
        # A member t with r_t below thr cannot move (module docstring, per point);
        # the whole area is skipped when its largest r is below thr.
        thr = -1.0
        if ck >= 0:
            dist = np.sqrt(_sqdist(centres, ck, centres, n_c))
            lim = dist / ((np.sqrt(cdens[ck]) + sdu) * (1.0 + slack))
            thr = lim * lim
            if k != au and a_max[k] <= thr:
                continue
        p = s
        while p < e:
            q = min(p + _CHUNK, e)
            chunk_area[n_chunks] = k
            chunk_lo[n_chunks] = p
            chunk_hi[n_chunks] = q
            chunk_thr[n_chunks] = thr
            n_chunks += 1
            p = q
    # 2. new scaled distances; tmp[p] >= 0 marks a mover (its new r), -1 a stayer
    chunk_moves = np.zeros(n_chunks, dtype=np.int64)
    chunk_reads = np.zeros(n_chunks, dtype=np.int64)
    for j in prange(n_chunks):
        m = 0
        reads = 0
        thr = chunk_thr[j]
        for p in range(chunk_lo[j], chunk_hi[j]):
            t = order[p]
            if t == u:
                tmp[p] = -2.0
                continue
            if rr[p] <= thr:
                tmp[p] = -1.0
                continue
            reads += 1
            v = _sqdist_to(x, t, cu) / du
            if v < rr[p]:
                tmp[p] = v
                m += 1
            else:
                tmp[p] = -1.0
        chunk_moves[j] = m
        chunk_reads[j] = reads
    total = 0
    for j in range(n_chunks):
        total += chunk_moves[j]
        state[4] += chunk_reads[j]
    # 3. make room at the tail; chunk bounds shift with their areas
    if tail + total > order.shape[0]:
        old_start = a_start[:n_a].copy()
        tail = _compact(order, rr, tmp, a_start, a_end, n_a)
        for j in range(n_chunks):
            shift = old_start[chunk_area[j]] - a_start[chunk_area[j]]
            chunk_lo[j] -= shift
            chunk_hi[j] -= shift
    # 4. movers to the new area (tail), stayers compacted in place, one area per task
    off = np.empty(n_chunks, dtype=np.int64)
    acc_off = tail
    for j in range(n_chunks):
        off[j] = acc_off
        acc_off += chunk_moves[j]
    # areas that lose members (movers, or u itself); the others are left as they are
    first_chunk = np.empty(n_chunks + 1, dtype=np.int64)
    last_chunk = np.empty(n_chunks + 1, dtype=np.int64)
    n_touched = 0
    j = 0
    while j < n_chunks:
        k = chunk_area[j]
        j1 = j
        moves = 0
        while j1 < n_chunks and chunk_area[j1] == k:
            moves += chunk_moves[j1]
            j1 += 1
        if moves > 0 or k == au:
            first_chunk[n_touched] = j
            last_chunk[n_touched] = j1
            n_touched += 1
        j = j1
    new_best = np.full(n_touched, -1.0)
    new_arg = np.full(n_touched, -1, dtype=np.int64)
    for q in prange(n_touched):
        j0, j1 = first_chunk[q], last_chunk[q]
        k = chunk_area[j0]
        w = chunk_lo[j0]
        changed = False
        nb = -1.0
        na = -1
        sb = -1.0
        sa = -1
        for j in range(j0, j1):
            dst = off[j]
            for p in range(chunk_lo[j], chunk_hi[j]):
                v = tmp[p]
                t = order[p]
                if v >= 0.0:
                    order[dst] = t
                    rr[dst] = v
                    dst += 1
                    if v > nb or (v == nb and t < na):
                        nb = v
                        na = t
                    changed = True
                elif v == -1.0:
                    rv = rr[p]
                    order[w] = t
                    rr[w] = rv
                    w += 1
                    if rv > sb or (rv == sb and t < sa):
                        sb = rv
                        sa = t
                else:
                    changed = True
        new_best[q] = nb
        new_arg[q] = na
        if changed:  # every member of the area was visited, so sb/sa is exact
            a_end[k] = w
            a_max[k] = sb
            a_arg[k] = sa
    # 5. the new area
    a_start[n_a] = tail
    a_end[n_a] = tail + total
    a_centre[n_a] = n_c
    best = -1.0
    arg = -1
    for q in range(n_touched):
        if new_best[q] > best or (new_best[q] == best and new_arg[q] < arg):
            best = new_best[q]
            arg = new_arg[q]
    a_max[n_a] = best
    a_arg[n_a] = arg
    state[1] = n_c + 1
    state[2] = n_a + 1
    state[3] = tail + total


@njit(cache=True, nogil=True)
def run_picks(x, dens, centres, cdens, order, rr, tmp, a_start, a_end, a_max, a_arg,
              a_centre, state, n_steps, out_idx, out_r, first, slack):
    """Run ``n_steps`` picks of Algorithm 1, continuing from ``state``.

    ``first`` (>= 0) forces the very first pick; -1 lets the argmax decide.
    ``out_idx``/``out_r`` ``(budget,)`` receive the picks and their r.
    """
    cu = np.empty(x.shape[1], dtype=x.dtype)
    for _ in range(n_steps):
        i = state[0]
        if i == 0 and first >= 0:
            u = first
            au, ru = _locate(order, rr, a_start, a_end, state[2], u)
        else:
            ru, u, au = _best_area(a_max, a_arg, state[2])
        out_idx[i] = u
        out_r[i] = ru
        for c in range(x.shape[1]):
            cu[c] = x[u, c]
        add_centre(x, centres, cdens, order, rr, tmp, a_start, a_end, a_max, a_arg,
                   a_centre, state, cu, dens[u], u, au, slack)
        state[0] = i + 1


@njit(cache=True)
def _flatten(order, rr, a_start, a_end, n_a, r):
    """Write the r of every live point into ``r`` (N,), indexed by point; others stay."""
    for k in range(n_a):
        for p in range(a_start[k], a_end[k]):
            r[order[p]] = rr[p]


_DENSE_BLOCK = 4096


@njit(cache=True)
def _block_best(r, lo, hi):
    """``(largest r in [lo, hi), its lowest index)``; ``(-1.0, -1)`` when all are negative."""
    bb = -1.0
    ba = -1
    for t in range(lo, hi):
        if r[t] > bb:
            bb = r[t]
            ba = t
    return bb, ba


@njit(cache=True, fastmath=_FAST)
def _dense_block(x, r, cu, du, lo, hi, syt, pu, e, mul):
    """Points ``[lo, hi)`` of :func:`dense_update`; True when an r changed.

    A plain function (not a parallel-loop body) so that its loops vectorise."""
    m = syt.shape[0] - 1
    changed = False
    n_b = hi - lo
    acc = np.zeros(n_b if m > 0 else 0, dtype=np.float32)
    if m > 0:
        for j in range(m):  # row slices: the loops vectorise (2-D indexing did not)
            c = pu[j]
            row = syt[j, lo:hi]
            for i in range(n_b):
                q = row[i] - c
                acc[i] += q * q
        rho_u = np.float64(pu[m])
        rho = syt[m, lo:hi]
        rb = r[lo:hi]
        for i in range(n_b):  # branch-free, so that it vectorises
            ly = np.sqrt(np.float64(acc[i]) * _SKETCH_SHRINK) - e
            ly = ly if ly > 0.0 else 0.0
            lr = np.float64(rho[i]) - rho_u
            lr = (lr if lr > 0.0 else -lr) - e
            lr = lr if lr > 0.0 else 0.0
            lb = ly * ly + lr * lr
            # lb > 1e-290 keeps an underflowed r * du from deciding
            acc[i] = np.float32(lb > 1e-290 and lb > rb[i] * mul)
        # The bound rules out all but about 1 % of the points. Their rows are read
        # from a list made first, so that consecutive reads are close enough in the
        # instruction stream for the CPU to overlap their cache misses.
        todo = np.empty(n_b, dtype=np.int64)
        n_todo = 0
        for i in range(n_b):
            if acc[i] == 0.0:
                todo[n_todo] = lo + i
                n_todo += 1
        for k in range(n_todo):
            changed |= _lower(x, r, cu, du, todo[k])
        return changed
    for i in range(n_b):
        changed |= _lower(x, r, cu, du, lo + i)
    return changed


@njit(cache=True, fastmath=_FAST)
def _lower(x, r, cu, du, t):
    """Lower ``r[t]`` to the scaled distance to ``cu`` if that is smaller; True if it did."""
    rt = r[t]
    if rt > 0.0:
        v = _sqdist_to(x, t, cu) / du
        if v < rt:
            r[t] = v
            return True
    return False


@njit(cache=True, parallel=True, nogil=True)
def dense_update(x, r, cu, du, u, syt, pu, e, slack, blk_best, blk_arg):
    """One centre ``cu`` (density ``du``) lowers ``r`` (N,) in one fused pass.

    ``r`` holds the current r of every point, -1 for labeled or picked ones;
    ``u`` (>= 0) is first marked picked. With a sketch (``syt`` (m + 1, N) float32,
    the transposed sketch rows; ``pu`` the centre's row; ``e`` the summed rounding
    bound, see :mod:`.sketch`), each block first bounds every distance
    from the sketch in vectorised passes and reads the features of the few
    points the bound does not rule out. ``blk_best``/``blk_arg``
    hold each block's largest r and its lowest index; only blocks where r
    changed are rescanned. Returns ``(max r, its lowest index)``, ``(-1.0, -1)``
    when nothing is left.
    """
    n = x.shape[0]
    if u >= 0:
        r[u] = -1.0
    n_blk = blk_best.shape[0]
    mul = du * (1.0 + slack)
    for b in prange(n_blk):
        lo = b * _DENSE_BLOCK
        hi = min(lo + _DENSE_BLOCK, n)
        changed = _dense_block(x, r, cu, du, lo, hi, syt, pu, e, mul)
        if changed or lo <= u < hi:
            blk_best[b], blk_arg[b] = _block_best(r, lo, hi)
    best = -1.0
    arg = -1
    for b in range(n_blk):
        if blk_best[b] > best:
            best = blk_best[b]
            arg = blk_arg[b]
    return best, arg


@njit(cache=True)
def _block_maxima(r, blk_best, blk_arg):
    """Fill each dense block's largest r and its lowest index; return the overall pair
    (``(-1.0, -1)`` when every r is negative)."""
    n = r.shape[0]
    best = -1.0
    arg = -1
    for b in range(blk_best.shape[0]):
        bb, ba = _block_best(r, b * _DENSE_BLOCK, min((b + 1) * _DENSE_BLOCK, n))
        blk_best[b] = bb
        blk_arg[b] = ba
        if bb > best:
            best = bb
            arg = ba
    return best, arg


# Switch to the dense pass once pruning reads more than this share of the live
# points' features per pick (the indirect reads then cost more than streaming),
# judged over windows of this many picks that start after the first _WARMUP picks.
_DENSE_SWITCH = 0.35
# Fixed cost of one pick in units of feature rows read (area tables, compaction),
# so that a block whose areas are all skipped still counts as work.
_PICK_WORK = 64
_WINDOW = 16
_WARMUP = 8


def _host(t):
    return np.ascontiguousarray(t.detach().cpu().numpy())


class Engine:
    """Exact Algorithm 1 on the CPU: coverage-area pruning, then dense passes.

    The pruned state is kept per coverage area (module docstring). When
    pruning stops paying (high-dimensional noise, budgets that are a large
    share of the pool), the engine hands over to one fused pass per centre
    (:func:`dense_update`); both are exact, and the hand-over happens inside
    the engine, so a sharded selection gets it too.

    Args:
        x: ``(N, D)`` float32/float64 CPU tensor.
        dens: ``(N,)`` float64 densities (ones for k-center greedy).
        centres: ``(L, D)`` labeled points (in-pool and out-of-pool), L may be 0.
        cdens: ``(L,)`` float64 their densities.
        excluded: ``(N,)`` bool, in-pool labeled points.
        max_new: how many centres may still be added.
    """

    def __init__(self, x, dens, centres, cdens, excluded, max_new):
        from . import ThreadPicker, thread_limit
        from .nearest import search

        self.picker = ThreadPicker(thread_limit())
        n, d = x.shape
        self.x = _host(x)
        self.dens = _host(dens)
        ex = _host(excluded)
        n_lab = centres.shape[0]
        cap = 2 * n + 1
        self.order = np.empty(cap, dtype=np.int64)
        self.rr = np.empty(cap, dtype=np.float64)
        self.tmp = np.empty(cap, dtype=np.float64)
        n_area = n_lab + max_new + 1
        self.a_start = np.zeros(n_area, dtype=np.int64)
        self.a_end = np.zeros(n_area, dtype=np.int64)
        self.a_max = np.full(n_area, -1.0)
        self.a_arg = np.full(n_area, -1, dtype=np.int64)
        self.a_centre = np.full(n_area, -1, dtype=np.int64)
        self.centres = np.empty((n_lab + max_new, d), dtype=self.x.dtype)
        self.cdens = np.empty(n_lab + max_new, dtype=np.float64)
        self.state = np.zeros(5, dtype=np.int64)
        eps = float(np.finfo(self.x.dtype).eps)
        self.slack = _PRUNE_SLACK + 4.0 * (d + 2) * eps
        self.max_new = max_new
        self.sketch = None  # built at the hand-over to dense passes (_note)
        self.syt = np.zeros((0, n), dtype=np.float32)
        n_blk = (n + _DENSE_BLOCK - 1) // _DENSE_BLOCK
        self.blk_best, self.blk_arg = np.empty(n_blk), np.empty(n_blk, dtype=np.int64)
        self.r = None  # (N,) r of every point after the dense hand-over
        self.best_r, self.best_u = -1.0, -1
        self.n_live = n - int(ex.sum())
        self._window = [0, 0]  # picks and feature reads since the last switch test
        if n_lab:
            self.centres[:n_lab] = _host(centres.to(x.dtype))
            self.cdens[:n_lab] = _host(cdens)
            v, a = search(x, centres, 1, weights=cdens)
            assign = np.where(ex, -1, a[:, 0].numpy())
            r = np.where(ex, -1.0, v[:, 0].numpy())
            m = build_areas(assign, r, n_lab, self.order, self.rr, self.a_start, self.a_end,
                            self.a_max, self.a_arg)
            self.a_centre[:n_lab] = np.arange(n_lab)
            self.state[:4] = (0, n_lab, n_lab, m)
        else:
            keep = np.flatnonzero(~ex)
            m = keep.shape[0]
            self.order[:m] = keep
            self.rr[:m] = np.inf
            self.a_start[0], self.a_end[0] = 0, m
            if m:
                self.a_max[0], self.a_arg[0] = np.inf, keep[0]
            self.state[:4] = (0, 0, 1, m)

    @staticmethod
    def threads(num_threads=None):
        from . import threads

        return threads(num_threads)

    def best(self):
        """``(2,)`` float64 tensor ``(r, index)`` of the next pick; ``(-1, -1)`` when done."""
        if self.r is None:
            ru, u, _ = _best_area(self.a_max, self.a_arg, self.state[2])
        else:
            ru, u = self.best_r, self.best_u
        return torch.tensor([float(ru), float(u)], dtype=torch.float64)

    def row(self, u):
        """``(D + 1,)`` float64 tensor: the features of point ``u`` and its density."""
        u = int(u)
        out = np.empty(self.x.shape[1] + 1)
        out[:-1] = self.x[u]
        out[-1] = self.dens[u]
        return torch.from_numpy(out)

    def add_centre(self, vec, u=-1) -> None:
        """Make ``vec`` ``(D + 1,)`` (features, density) a selected point; ``u`` is its
        index in this pool (removed from the pool) or -1 for a point held elsewhere."""
        v = vec.detach().cpu().numpy() if hasattr(vec, "detach") else np.asarray(vec)
        cu = np.ascontiguousarray(v[:-1], dtype=self.x.dtype)
        du, u = float(v[-1]), int(u)
        if u >= 0:
            self.n_live -= 1
        self.state[0] += 1
        if self.r is not None:
            self.best_r, self.best_u = self._dense(cu, du, u)
            return
        reads0 = self.state[4]
        au = -1
        if u >= 0:
            au, _ = _locate(self.order, self.rr, self.a_start, self.a_end, self.state[2], u)
        add_centre(self.x, self.centres, self.cdens, self.order, self.rr, self.tmp,
                   self.a_start, self.a_end, self.a_max, self.a_arg, self.a_centre, self.state,
                   cu, du, u, au, self.slack)
        self._note(1, self.state[4] - reads0)

    def run(self, k: int, out_idx: np.ndarray, out_r: np.ndarray, first: int = -1) -> None:
        """Make ``k`` picks of this pool alone into ``out_idx``/``out_r`` (``(budget,)``
        int64 / float64 CPU tensors); ``first`` (>= 0) forces the very first pick.

        The picks run in blocks whose thread count :class:`ThreadPicker` chooses from
        the measured cost per feature row read (one thread on a busy machine)."""
        import numba

        out_idx, out_r = out_idx.numpy(), out_r.numpy()
        before = numba.get_num_threads()
        try:
            while k > 0:
                t, m = self.picker.next(k)
                numba.set_num_threads(t)
                t0 = time.perf_counter()
                work = self._picks(m, out_idx, out_r, first)
                self.picker.done(t, time.perf_counter() - t0, work)
                k -= m
        finally:
            numba.set_num_threads(before)

    def _picks(self, k, out_idx, out_r, first) -> int:
        """``k`` picks (pruned or dense); returns the work done (feature rows read)."""
        if self.r is None:
            reads0 = self.state[4]
            run_picks(self.x, self.dens, self.centres, self.cdens, self.order, self.rr,
                      self.tmp, self.a_start, self.a_end, self.a_max, self.a_arg,
                      self.a_centre, self.state, k, out_idx, out_r, first, self.slack)
            self.n_live -= k
            reads = int(self.state[4] - reads0)
            self._note(k, reads)
            return reads + k * _PICK_WORK
        i = self.state[0]
        work = 0
        for j in range(i, i + k):
            u, ru = self.best_u, self.best_r
            out_idx[j], out_r[j] = u, ru
            work += self.n_live
            self.n_live -= 1
            self.best_r, self.best_u = self._dense(self.x[u], self.dens[u], u)
        self.state[0] = i + k
        return work

    def _centre_sketch(self, cu, u):
        """``(row, e)``: the sketch row of a new centre and the summed rounding bound."""
        if self.sketch is None:
            return np.zeros(0, np.float32), 0.0
        if u >= 0:
            return self.sketch.rows[u], 2.0 * self.sketch.err
        row, err = self.sketch.of(cu)
        return row, self.sketch.err + err

    def _dense(self, cu, du, u):
        """One dense pass (:func:`dense_update`) for centre ``cu`` (``u`` >= 0: in this pool)."""
        pu, e = self._centre_sketch(cu, u)
        return dense_update(self.x, self.r, cu, float(du), u, self.syt, pu, e, self.slack,
                            self.blk_best, self.blk_arg)

    def _note(self, picks: int, reads: int) -> None:
        """Hand over to dense passes once pruning reads too many points per pick."""
        if self.state[0] - picks < _WARMUP:  # the first picks read nearly every point
            return
        w = self._window
        w[0] += picks
        w[1] += reads
        if w[0] < _WINDOW:
            return
        if w[1] / (w[0] * max(1, self.n_live)) > _DENSE_SWITCH:
            self.r = np.full(self.x.shape[0], -1.0)
            _flatten(self.order, self.rr, self.a_start, self.a_end, self.state[2], self.r)
            self.best_r, self.best_u = _block_maxima(self.r, self.blk_best, self.blk_arg)
            n, d = self.x.shape
            if (n >= _SKETCH_MIN_N and d > 2 * SKETCH_DIM
                    and self.max_new - self.state[0] >= _SKETCH_MIN_PICKS):
                self.sketch = build_sketch(self.x, SKETCH_DIM)
                self.syt = np.ascontiguousarray(self.sketch.rows.T)
            log.debug("pruning ineffective after %d picks; dense passes from here",
                      self.state[0])
        w[0] = w[1] = 0


