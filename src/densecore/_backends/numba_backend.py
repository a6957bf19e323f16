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

Where pruning stops paying (noise in many dimensions, densities that differ a
lot), the engine hands over to one dense pass per pick over groups of nearby
points (:mod:`.groups`): whole groups are ruled out by their mean and radius,
the rest by one byte per feature, and only the few points left have their
features read. Both phases are exact.

Pools of at most :data:`PLAIN_MAX` points skip both: the plain loop
(:func:`plain_picks`) makes one serial pass per pick, lowering every r and
finding the next argmax in the same pass; there the areas' bookkeeping and a
parallel region per pick cost more than they save. Its r values and
tie-breaking are those of the pruned path, so the selection is the same.

All kernels take contiguous numpy arrays; :class:`Engine` converts its tensors
once. Distances are squared Euclidean, accumulated in the feature
dtype from differences (no norm expansion, so duplicates tie exactly).

Shape:
    features ``(N, D)`` float32/float64 C-contiguous; densities ``(N,)`` float64;
    centres ``(L, D)``, centre densities ``(L,)``.
"""

from __future__ import annotations

import contextlib
import logging
import time

import numpy as np
import torch
from numba import njit, prange

from .base import Engine as _Base
from .groups import build_groups, encode, n_groups
from .prefetch import AHEAD, prefetch_row
from .sketch import SKETCH_DIM, build_sketch

log = logging.getLogger(__name__)

# Relative slack of the pruning and code tests: a point or area is skipped only
# when its bound holds with a margin well above the rounding of the engine's own
# distances (a sum of D squares in the feature dtype), see Engine.slack.
_PRUNE_SLACK = 1e-4
# The points are grouped at the hand-over to dense passes (:mod:`.groups`) when at
# least this many picks remain.
_GROUP_MIN_PICKS = 256
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


_EPS32 = float(np.finfo(np.float32).eps)
_EPS64 = float(np.finfo(np.float64).eps)


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
        hi = chunk_hi[j]
        for p in range(chunk_lo[j], hi):
            if p + AHEAD < hi:  # the rows are scattered: ask for one a few members ahead
                prefetch_row(x, order[p + AHEAD])
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


@njit(cache=True, nogil=True, fastmath=_FAST)
def plain_update(x, r, cu, du):
    """Lower ``r`` (N,) (-1 for labeled or picked points) with centre ``cu`` (D,) of
    density ``du`` in one pass over every point, finding the next argmax in the same
    pass; returns ``(largest r, its lowest index)``, ``(-1.0, -1)`` when none is left."""
    best_r = -1.0
    best_u = -1
    for t in range(x.shape[0]):
        rt = r[t]
        if rt > 0.0:
            v = _sqdist_to(x, t, cu) / du
            if v < rt:
                rt = v
                r[t] = v
        if rt > best_r:
            best_r = rt
            best_u = t
    return best_r, best_u


@njit(cache=True, nogil=True)
def plain_picks(x, dens, r, best_u, i, k, first, out_idx, out_r):
    """Picks ``i .. i + k - 1`` of Algorithm 1 by the plain loop (:func:`plain_update`
    per pick), starting from the current argmax ``best_u``; ``first`` (>= 0) forces
    pick 0. Returns ``(largest r, its lowest index)`` after the picks."""
    cu = np.empty(x.shape[1], dtype=x.dtype)
    best_r = -1.0
    for j in range(i, i + k):
        u = first if j == 0 and first >= 0 else best_u
        out_idx[j] = u
        out_r[j] = r[u]
        r[u] = -1.0
        for c in range(x.shape[1]):
            cu[c] = x[u, c]
        best_r, best_u = plain_update(x, r, cu, dens[u])
    return best_r, best_u


@njit(cache=True)
def _argmax_first(r):
    """``(largest r, its lowest index)``; ``(-1.0, -1)`` when every r is negative."""
    best = -1.0
    arg = -1
    for t in range(r.shape[0]):
        if r[t] > best:
            best = r[t]
            arg = t
    return best, arg


_DENSE_BLOCK = 4096

# Pools of at most this many points run the plain loop (:func:`plain_picks`): one
# serial pass per pick, no areas, no thread choice. benchmarks/plain.py (D = 64,
# 2 cores at load 9-10): plain / pruned time 0.05-0.30 at 1,000 points, 0.25-1.18 at
# 5,000, 0.60 / 1.02 at 10,000 (budget 100 / 1,000), 0.86 / 1.15 at 20,000; the plain
# loop 0.5-1.3x the naive gemv loop there (benchmarks/README.md, "Plain loop").
PLAIN_MAX = 10_000
_WEIGHTED_BLOCKS = 64  # argmax blocks of the weighted pass (ties: lowest index)


@njit(cache=True)
def _block_best(r, orig, lo, hi):
    """``(largest r in positions [lo, hi), the point index holding it)``; ``(-1.0, -1)``
    when all are negative. Positions of a chunk hold ascending point indices, so the
    first largest is the lowest index among ties."""
    bb = -1.0
    ba = -1
    for p in range(lo, hi):
        if r[p] > bb:
            bb = r[p]
            ba = p
    return bb, (orig[ba] if ba >= 0 else -1)


@njit(cache=True, fastmath=_FAST)
def _dense_block(x, r, orig, cu, du, lo, hi, codes, errs, mean, scale, mul, shrink):
    """Positions ``[lo, hi)`` (one group: ``mean``, ``scale``) of :func:`dense_update`;
    True when an r changed.

    Every distance is first bounded from the point's byte codes (:func:`.groups.encode`),
    in units of the group's scale: ``||q_p - w||`` with ``w = (cu - mean) / scale``
    rounded to float32, summed in float32 (``shrink`` covers that rounding, ``dw``
    the rounding of ``w``), minus the code error ``errs[p]``. Only the features of
    the few points the bound does not rule out are read.
    """
    d = codes.shape[1]
    w = np.empty(d, dtype=np.float32)
    wn = 0.0
    for c in range(d):
        # far points: clipping w towards the codes (|q| <= 127) only lowers the bound
        v = min(1e15, max(-1e15, (np.float64(cu[c]) - mean[c]) / scale))
        w[c] = np.float32(v)
        wn += np.float64(w[c]) * np.float64(w[c])
    dw = 4.0 * _EPS32 * np.sqrt(wn)
    sc = scale * (1.0 - 1e-12)
    blk = codes[lo:hi]
    # The bound rules out nearly every point. The rows of the others are read from a
    # list made first, so that consecutive reads are close enough in the instruction
    # stream for the CPU to overlap their cache misses.
    todo = np.empty(hi - lo, dtype=np.int64)
    n_todo = 0
    for i in range(hi - lo):
        rt = r[lo + i]
        if rt <= 0.0:  # picked or labeled, or at distance 0 already
            continue
        row = blk[i]
        acc = np.float32(0.0)
        for c in range(d):
            q = np.float32(row[c]) - w[c]
            acc += q * q
        ly = np.sqrt(np.float64(acc) * shrink) - dw - np.float64(errs[lo + i])
        ly = ly * sc if ly > 0.0 else 0.0
        lb = ly * ly
        # lb > 1e-290 keeps an underflowed r * du from deciding
        if not (lb > 1e-290 and lb > rt * mul):
            todo[n_todo] = lo + i
            n_todo += 1
    changed = False
    for k in range(n_todo):
        changed |= _lower(x, orig, r, todo[k], cu, du)
    return changed


@njit(cache=True, fastmath=_FAST)
def _lower(x, orig, r, p, cu, du):
    """Lower ``r[p]`` (point ``orig[p]``) to the scaled distance to ``cu`` if that is
    smaller; True if it did."""
    rt = r[p]
    if rt > 0.0:
        v = _sqdist_to(x, orig[p], cu) / du
        if v < rt:
            r[p] = v
            return True
    return False


@njit(cache=True, fastmath=_FAST)
def _group_live(cu, mul, means, radii, c_grp, c_best, live):
    """``live[g]``: whether a member of group ``g`` might move to the new centre ``cu``
    (module :mod:`.groups`: ``(||cu - m_g|| - rad_g)^2 > du max r`` rules a group out)."""
    g_max = np.full(means.shape[0], -1.0)
    for c in range(c_grp.shape[0]):
        if c_best[c] > g_max[c_grp[c]]:
            g_max[c_grp[c]] = c_best[c]
    d = cu.shape[0]
    # float64 rounding of the centre distance, summed in any order: shrink it past that
    shrink = 1.0 - 2.0 * (d + 2) * _EPS64
    for g in range(means.shape[0]):
        if g_max[g] <= 0.0:  # nothing left to lower
            live[g] = False
            continue
        mg = means[g]
        acc = 0.0
        for c in range(d):
            q = np.float64(cu[c]) - mg[c]
            acc += q * q
        lb = np.sqrt(acc) * shrink - radii[g]
        lb = lb * lb if lb > 0.0 else 0.0
        # lb > 1e-290 keeps an underflowed r * du from deciding; NaN keeps a group live
        live[g] = not (lb > 1e-290 and lb > g_max[g] * mul)


@njit(cache=True, parallel=True, nogil=True)
def dense_update(x, r, orig, pos, cu, du, u, codes, errs, scales, slack, means, radii,
                 c_lo, c_hi, c_grp, c_best, c_arg):
    """One centre ``cu`` (density ``du``) lowers ``r`` (N,) in one fused pass.

    The points are held in group order (:mod:`.groups`): position ``p`` is point
    ``orig[p]``, point ``t`` is at ``pos[t]``; ``r`` holds the current r per
    position, -1 for labeled or picked points; ``u`` (>= 0) is first marked
    picked. Chunks ``[c_lo, c_hi)`` of positions lie in one group ``c_grp``
    each; a group whose mean ``means`` is too far from ``cu`` for its radius
    ``radii`` is skipped whole. In the other chunks every distance is first
    bounded from the points' byte codes ``codes`` (N, D) int8 in position
    order, ``errs`` (N,), ``scales`` (G,) (:func:`.groups.encode`), and only
    the features of the few points the bound does not rule out are read
    (:func:`_dense_block`).
    ``c_best``/``c_arg`` hold each chunk's largest r and its (lowest) point
    index; only chunks where r changed are rescanned. Returns
    ``(max r, its lowest point index)``, ``(-1.0, -1)`` when nothing is left.
    """
    if u >= 0:
        r[pos[u]] = -1.0
    mul = du * (1.0 + slack)
    live = np.empty(means.shape[0], dtype=np.bool_)
    _group_live(cu, mul, means, radii, c_grp, c_best, live)
    shrink = 1.0 - 2.0 * (codes.shape[1] + 3) * _EPS32
    n_c = c_lo.shape[0]
    for c in prange(n_c):
        lo, hi = c_lo[c], c_hi[c]
        g = c_grp[c]
        changed = False
        if live[g]:
            changed = _dense_block(x, r, orig, cu, du, lo, hi, codes, errs, means[g],
                                   scales[g], mul, shrink)
        if changed or (u >= 0 and lo <= pos[u] < hi):
            c_best[c], c_arg[c] = _block_best(r, orig, lo, hi)
    return _overall(c_best, c_arg)


@njit(cache=True, nogil=True)
def dense_picks(x, dens, r, orig, pos, codes, errs, scales, slack, means, radii, c_lo, c_hi,
                c_grp, c_best, c_arg, best_r, best_u, i, k, out_idx, out_r):
    """Picks ``i .. i + k - 1`` of Algorithm 1 by dense passes (:func:`dense_update`),
    starting from the current ``(best_r, best_u)``; returns the pair after them."""
    for j in range(i, i + k):
        u = best_u
        out_idx[j] = u
        out_r[j] = best_r
        best_r, best_u = dense_update(x, r, orig, pos, x[u], dens[u], u, codes, errs, scales,
                                      slack, means, radii, c_lo, c_hi, c_grp, c_best, c_arg)
    return best_r, best_u


@njit(cache=True)
def _overall(c_best, c_arg):
    """``(largest r over all chunks, lowest point index among ties)``."""
    best = -1.0
    arg = -1
    for c in range(c_best.shape[0]):
        v = c_best[c]
        if v > best or (v == best and v >= 0.0 and c_arg[c] < arg):
            best = v
            arg = c_arg[c]
    return best, arg


@njit(cache=True)
def _chunk_maxima(r, orig, c_lo, c_hi, c_best, c_arg):
    """Fill each chunk's largest r and its lowest point index; return the overall pair
    (``(-1.0, -1)`` when every r is negative)."""
    for c in range(c_lo.shape[0]):
        c_best[c], c_arg[c] = _block_best(r, orig, c_lo[c], c_hi[c])
    return _overall(c_best, c_arg)


def _chunks(starts: np.ndarray):
    """``(lo, hi, group)`` int64 arrays: every group cut into pieces of at most
    :data:`_DENSE_BLOCK` positions (empty groups have none)."""
    lo, hi, grp = [], [], []
    for g in range(len(starts) - 1):
        for a in range(int(starts[g]), int(starts[g + 1]), _DENSE_BLOCK):
            lo.append(a)
            hi.append(min(a + _DENSE_BLOCK, int(starts[g + 1])))
            grp.append(g)
    return (np.array(lo, dtype=np.int64), np.array(hi, dtype=np.int64),
            np.array(grp, dtype=np.int64))


# Hand over to dense passes when, over a window of _WINDOW picks (after the first
# _WARMUP), (rows read per pick - _DENSE_SHARE * live points) * picks left exceeds
# _HAND_OVER_PASSES * N. A dense pick costs about what reading a tenth of the live
# rows at random does (byte codes; groups ruled out whole), building the groups and
# codes 25-100 passes over the rows (at 100k-185k x 64: a pruned row read 20-110 ns,
# a dense pick 1-3 ns per live point, the hand-over 0.19-0.38 s). Only rows read and
# picks left decide, so the answer is the same on every machine and load.
_DENSE_SHARE = 0.1
_HAND_OVER_PASSES = 100
# Fixed cost of one pick in units of feature rows read (area tables, compaction),
# so that a block whose areas are all skipped still counts as work.
_PICK_WORK = 64
_WINDOW = 16
_WARMUP = 8


def _host(t):
    return np.ascontiguousarray(t.detach().cpu().numpy())


class Engine(_Base):
    """Exact Algorithm 1 on the CPU: coverage-area pruning, then dense passes (the
    plain loop for pools of at most :data:`PLAIN_MAX` points).

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
        weights: ``(N,)`` float64 candidate weights, or None. With weights the engine
            picks ``argmax r * weight`` (typicality: the density on the candidate's
            side of the link) by one parallel fused pass per pick
            (``typicality_kernels._update_argmax``); the pruning bounds hold only
            for ``argmax r``.
    """

    host = True
    weighted = True
    search_method = "auto"  # exact search from the CPU's fast candidates (faiss when present)

    def __init__(self, x, dens, centres, cdens, excluded, max_new, weights=None):
        from . import ThreadPicker, thread_limit
        from .nearest import search

        self.picker = ThreadPicker(thread_limit())
        n, d = x.shape
        self.x = _host(x)
        self.dens = _host(dens)
        ex = _host(excluded)
        n_lab = centres.shape[0]
        self.state = np.zeros(5, dtype=np.int64)
        self.w = None if weights is None else np.ascontiguousarray(_host(weights),
                                                                   dtype=np.float64)
        self.plain = n <= PLAIN_MAX or self.w is not None
        if n_lab:  # r against the labeled set and its nearest centre, searched once
            # small pools on one thread: a parallel region costs more than this search
            with self.threads(1) if n <= PLAIN_MAX else contextlib.nullcontext():
                v, a = search(x, centres, 1, weights=cdens, method=self.search_method)
            v, a = v[:, 0].numpy(), a[:, 0].numpy()
        if self.w is not None:
            from .typicality_kernels import _update_argmax

            self.r = np.full(n, np.inf)
            if n_lab:
                self.r[:] = v
            self.taken = ex.copy()
            self.blocks = min(_WEIGHTED_BLOCKS, max(1, n))
            u, _ = _update_argmax(self.x, np.empty(0, self.x.dtype), self.r, self.w,
                                  self.taken, self.blocks)
            self.best_r, self.best_u = (self.r[u], u) if u >= 0 else (-1.0, -1)
            return
        if self.plain:  # r per point, -1 for labeled points; the argmax kept beside it
            self.r = np.full(n, np.inf)
            if n_lab:
                self.r[:] = v
            self.r[ex] = -1.0
            self.best_r, self.best_u = _argmax_first(self.r)
            return
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
        eps = float(np.finfo(self.x.dtype).eps)
        self.slack = _PRUNE_SLACK + 4.0 * (d + 2) * eps
        self.max_new = max_new
        # built at the hand-over to dense passes (_hand_over): the groups, the byte
        # codes and r in group order (point <-> position maps)
        self.r = None
        self.best_r, self.best_u = -1.0, -1
        self.n_live = n - int(ex.sum())
        self._window = [0, 0]  # picks and feature reads since the last switch test
        if n_lab:
            self.centres[:n_lab] = _host(centres.to(x.dtype))
            self.cdens[:n_lab] = _host(cdens)
            assign = np.where(ex, -1, a)
            r = np.where(ex, -1.0, v)
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

    def best(self):
        """``(2,)`` float64 tensor ``(r, index)`` of the next pick; ``(-1, -1)`` when done."""
        if self.r is None and not self.plain:
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
        self.state[0] += 1
        if self.w is not None:
            self._weighted(cu, du, u)
            return
        if self.plain:
            if u >= 0:
                self.r[u] = -1.0
            self.best_r, self.best_u = plain_update(self.x, self.r, cu, du)
            return
        if u >= 0:
            self.n_live -= 1
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

    def run(self, k: int, out_idx: np.ndarray, out_r: np.ndarray) -> None:
        """Make ``k`` picks of this pool alone into ``out_idx``/``out_r`` (``(budget,)``
        int64 / float64 CPU tensors); ``first`` (>= 0) forces the very first pick.

        The picks run in blocks whose thread count :class:`ThreadPicker` chooses from
        the measured cost per feature row read (one thread on a busy machine)."""
        import numba

        out_idx, out_r = out_idx.numpy(), out_r.numpy()
        if self.w is not None:  # one parallel fused pass per pick
            for _ in range(k):
                i = int(self.state[0])
                u = self.best_u
                out_idx[i], out_r[i] = u, self.r[u]
                self.state[0] = i + 1
                self._weighted(self.x[u], float(self.dens[u]), u)
            return
        if self.plain:  # one thread: a parallel region per pick costs more than it wins here
            i = int(self.state[0])
            self.best_r, self.best_u = plain_picks(self.x, self.dens, self.r, self.best_u, i,
                                                   k, -1, out_idx, out_r)
            self.state[0] = i + k
            return
        before = numba.get_num_threads()
        try:
            while k > 0:
                t, m = self.picker.next(k)
                numba.set_num_threads(t)
                t0 = time.perf_counter()
                pruned = self.r is None
                work = self._picks(m, out_idx, out_r, -1)
                if pruned == (self.r is None):  # a block with the hand-over is not timed
                    self.picker.done(t, time.perf_counter() - t0, work)
                k -= m
        finally:
            numba.set_num_threads(before)

    def _weighted(self, cu, du: float, u: int) -> None:
        """Lower r with centre ``cu`` of density ``du`` and find ``argmax r * w``."""
        from .typicality_kernels import _update_argmax

        if u >= 0:
            self.taken[u] = True
        if du != 1.0:  # a centre's density divides r; the weighted kernel takes none
            raise ValueError("candidate weights take centres of density 1 (typicality)")
        u, _ = _update_argmax(self.x, cu, self.r, self.w, self.taken, self.blocks)
        self.best_r, self.best_u = (self.r[u], u) if u >= 0 else (-1.0, -1)

    def _picks(self, k, out_idx, out_r, first) -> int:
        """``k`` picks (pruned, then dense once pruning stops paying); returns the work
        done (feature rows read by pruned picks, live points of dense ones)."""
        work = 0
        while k > 0 and self.r is None:  # pruned, in windows, so the hand-over is timely
            m = min(k, _WINDOW)
            reads0 = self.state[4]
            run_picks(self.x, self.dens, self.centres, self.cdens, self.order, self.rr,
                      self.tmp, self.a_start, self.a_end, self.a_max, self.a_arg,
                      self.a_centre, self.state, m, out_idx, out_r, first, self.slack)
            self.n_live -= m
            reads = int(self.state[4] - reads0)
            work += reads + m * _PICK_WORK
            k -= m
            self._note(m, reads)
        if k > 0:
            i = self.state[0]
            work += k * self.n_live - k * (k - 1) // 2
            self.n_live -= k
            self.best_r, self.best_u = dense_picks(
                self.x, self.dens, self.r, self.orig, self.pos, self.codes, self.errs,
                self.scales, self.slack, self.means, self.radii, *self.chunks, self.c_best,
                self.c_arg, self.best_r, self.best_u, i, k, out_idx, out_r)
            self.state[0] = i + k
        return work

    def _dense(self, cu, du, u):
        """One dense pass (:func:`dense_update`) for centre ``cu`` (``u`` >= 0: in this pool)."""
        return dense_update(self.x, self.r, self.orig, self.pos, cu, float(du), u, self.codes,
                            self.errs, self.scales, self.slack, self.means, self.radii,
                            *self.chunks, self.c_best, self.c_arg)

    def _note(self, picks: int, reads: int) -> None:
        """Hand over to dense passes once the rows pruning reads over the picks left
        would cost more than the hand-over and dense passes (:data:`_DENSE_SHARE`)."""
        if self.state[0] - picks < _WARMUP:  # the first picks read nearly every point
            return
        w = self._window
        w[0] += picks
        w[1] += reads
        if w[0] < _WINDOW:
            return
        left = self.max_new - int(self.state[0])
        saved = (w[1] / w[0] - _DENSE_SHARE * self.n_live) * left
        if left > 0 and saved > _HAND_OVER_PASSES * self.x.shape[0]:
            self._hand_over()
        w[0] = w[1] = 0

    def _hand_over(self) -> None:
        """Switch to dense passes: r of every point, held in the order of the groups
        (:mod:`.groups`), with every point's byte codes."""
        n, d = self.x.shape
        r = np.full(n, -1.0)
        _flatten(self.order, self.rr, self.a_start, self.a_end, self.state[2], r)
        self.order = self.rr = self.tmp = None  # the arena is not used from here on
        # grouping costs a few passes over the pool: only where enough picks remain
        g = n_groups(n) if self.max_new - self.state[0] >= _GROUP_MIN_PICKS else 1
        view = None
        if g > 1:  # the assignment's view: the features, or a sketch of them when D is large
            view = self.x if d <= 2 * SKETCH_DIM else build_sketch(self.x, SKETCH_DIM)
        perm, starts, self.means, self.radii = build_groups(self.x, view, g)
        del view
        self.codes, self.scales, self.errs = encode(self.x, perm, starts, self.means)
        self.orig = perm
        self.pos = np.empty(n, dtype=np.int64)
        self.pos[perm] = np.arange(n, dtype=np.int64)
        self.r = r[perm]
        self.chunks = _chunks(starts)
        self.c_best = np.empty(len(self.chunks[0]))
        self.c_arg = np.empty(len(self.chunks[0]), dtype=np.int64)
        self.best_r, self.best_u = _chunk_maxima(self.r, self.orig, *self.chunks[:2],
                                                 self.c_best, self.c_arg)
        # a dense pick costs per live point, not per feature row read: time both modes anew
        self.picker.reset()
        log.debug("pruning ineffective after %d picks; dense passes from here (%d groups)",
                  self.state[0], g)
