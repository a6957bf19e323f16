"""Kernels of the pruned mode: coverage areas in an arena, the triangle-inequality test.

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

Shape:
    arena ``order``/``rr``/``tmp`` ``(cap,)``; area tables ``(A,)``; centres ``(C, D)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..prefetch import AHEAD, prefetch_row
from .common import AREAS, CENTRES, PICKS, READS, TAIL, sqdist, sqdist_to

CHUNK = 2048  # arena positions per parallel task


@njit(cache=True)
def _area_best(order, rr, start, end):
    """(largest r in arena positions [start, end), its lowest point index)."""
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

    ``assign`` ``(N,)``: each point's area, -1 for none (labeled or picked). Fills
    ``order``/``rr`` positions ``[0, m)`` and the area tables; returns m, the number
    of assigned points.
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
def flatten(order, rr, a_start, a_end, a_centre, n_a, r, assign):
    """Write the r of every live point into ``r`` (N,) and its centre into ``assign``
    (N,), indexed by point; the other entries stay as they are."""
    for k in range(n_a):
        for p in range(a_start[k], a_end[k]):
            r[order[p]] = rr[p]
            assign[order[p]] = a_centre[k]


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
def best_area(a_max, a_arg, n_a):
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
def locate(order, rr, a_start, a_end, n_a, u):
    """(area, r) of point ``u``; (-1, -1.0) when it is in no area (labeled or picked)."""
    for k in range(n_a):
        for p in range(a_start[k], a_end[k]):
            if order[p] == u:
                return k, rr[p]
    return -1, -1.0


@njit(cache=True)
def _work_list(centres, cdens, a_start, a_end, a_max, a_centre, n_a, n_c, du, au, slack,
               cap):
    """Step 1 of :func:`add_centre`: the chunks of the areas the new centre ``n_c`` (of
    density ``du``) cannot be proven not to improve. Returns ``(area, lo, hi, thr)``
    per chunk and their count; a member whose r is at most ``thr`` cannot move."""
    n_max = cap // CHUNK + n_a + 1
    c_area = np.empty(n_max, dtype=np.int64)
    c_lo = np.empty(n_max, dtype=np.int64)
    c_hi = np.empty(n_max, dtype=np.int64)
    c_thr = np.empty(n_max, dtype=np.float64)
    sdu = np.sqrt(du)
    n = 0
    for k in range(n_a):
        s, e = a_start[k], a_end[k]
        if e <= s:
            continue
        ck = a_centre[k]
        thr = -1.0  # an area without a centre (nothing covered yet): scan it all
        if ck >= 0:
            dist = np.sqrt(sqdist(centres, ck, centres, n_c))
            lim = dist / ((np.sqrt(cdens[ck]) + sdu) * (1.0 + slack))
            thr = lim * lim
            if k != au and a_max[k] <= thr:
                continue
        p = s
        while p < e:
            q = min(p + CHUNK, e)
            c_area[n], c_lo[n], c_hi[n], c_thr[n] = k, p, q, thr
            n += 1
            p = q
    return c_area, c_lo, c_hi, c_thr, n


@njit(cache=True, parallel=True, nogil=True)
def _scan(x, order, rr, tmp, c_lo, c_hi, c_thr, n_chunks, cu, du, u):
    """Step 2 of :func:`add_centre`: the new scaled distances of the listed chunks.
    ``tmp[p]`` >= 0 marks a mover (its new r), -1 a stayer, -2 the pick itself.
    Returns the movers and the feature rows read per chunk."""
    moves = np.zeros(n_chunks, dtype=np.int64)
    reads = np.zeros(n_chunks, dtype=np.int64)
    for j in prange(n_chunks):
        m = 0
        nr = 0
        thr = c_thr[j]
        hi = c_hi[j]
        for p in range(c_lo[j], hi):
            if p + AHEAD < hi:  # the rows are scattered: ask for one a few members ahead
                prefetch_row(x, order[p + AHEAD])
            t = order[p]
            if t == u:
                tmp[p] = -2.0
                continue
            if rr[p] <= thr:
                tmp[p] = -1.0
                continue
            nr += 1
            v = sqdist_to(x, t, cu) / du
            if v < rr[p]:
                tmp[p] = v
                m += 1
            else:
                tmp[p] = -1.0
        moves[j] = m
        reads[j] = nr
    return moves, reads


@njit(cache=True)
def _touched(c_area, moves, n_chunks, au):
    """Step 4a of :func:`add_centre`: the runs of chunks of the areas that lose members
    (movers, or the pick itself): ``(first chunk, end chunk)`` per area, and their count."""
    first = np.empty(n_chunks + 1, dtype=np.int64)
    last = np.empty(n_chunks + 1, dtype=np.int64)
    n = 0
    j = 0
    while j < n_chunks:
        k = c_area[j]
        j1 = j
        m = 0
        while j1 < n_chunks and c_area[j1] == k:
            m += moves[j1]
            j1 += 1
        if m > 0 or k == au:
            first[n], last[n] = j, j1
            n += 1
        j = j1
    return first, last, n


@njit(cache=True, parallel=True, nogil=True)
def _move(order, rr, tmp, c_area, c_lo, c_hi, off, first, last, n_touched, a_end, a_max,
          a_arg):
    """Step 4b of :func:`add_centre`, one area per task: movers to the new area at
    ``off[j]`` (chunk j's share of the tail), stayers compacted in place, the area's
    largest r renewed. Returns each task's largest mover r and its lowest index."""
    new_best = np.full(n_touched, -1.0)
    new_arg = np.full(n_touched, -1, dtype=np.int64)
    for q in prange(n_touched):
        j0, j1 = first[q], last[q]
        k = c_area[j0]
        w = c_lo[j0]
        changed = False
        nb, na, sb, sa = -1.0, -1, -1.0, -1
        for j in range(j0, j1):
            dst = off[j]
            for p in range(c_lo[j], c_hi[j]):
                v = tmp[p]
                t = order[p]
                if v >= 0.0:
                    order[dst] = t
                    rr[dst] = v
                    dst += 1
                    if v > nb or (v == nb and t < na):
                        nb, na = v, t
                    changed = True
                elif v == -1.0:
                    rv = rr[p]
                    order[w] = t
                    rr[w] = rv
                    w += 1
                    if rv > sb or (rv == sb and t < sa):
                        sb, sa = rv, t
                else:
                    changed = True
        new_best[q] = nb
        new_arg[q] = na
        if changed:  # every member of the area was visited, so sb/sa is exact
            a_end[k] = w
            a_max[k] = sb
            a_arg[k] = sa
    return new_best, new_arg


@njit(cache=True, nogil=True)
def add_centre(x, centres, cdens, order, rr, tmp, a_start, a_end, a_max, a_arg, a_centre,
               state, cu, du, u, au, slack):
    """Add a selected point as a new centre and lower every r it improves.

    Args:
        x: (N, D) features.
        centres, cdens: (C, D), (C,) centre tables, the first ``state[CENTRES]`` filled.
        order, rr, tmp: (cap,) arena of point indices, their r, and scratch.
        a_start, a_end, a_max, a_arg, a_centre: per-area tables.
        state: the engine's state record (:mod:`.common`).
        cu: (D,) features of the new centre; du: its density.
        u: its index in ``x`` if it belongs to this pool (removed from the pool), else -1.
        au: the area holding ``u`` (always scanned), or -1.
        slack: relative margin of the pruning test.
    """
    n_c, n_a, tail = state[CENTRES], state[AREAS], state[TAIL]
    centres[n_c] = cu
    cdens[n_c] = du
    c_area, c_lo, c_hi, c_thr, n_chunks = _work_list(
        centres, cdens, a_start, a_end, a_max, a_centre, n_a, n_c, du, au, slack,
        order.shape[0])
    moves, reads = _scan(x, order, rr, tmp, c_lo, c_hi, c_thr, n_chunks, cu, du, u)
    total = moves.sum()
    state[READS] += reads.sum()
    if tail + total > order.shape[0]:  # make room at the tail; chunks shift with areas
        old_start = a_start[:n_a].copy()
        tail = _compact(order, rr, tmp, a_start, a_end, n_a)
        for j in range(n_chunks):
            shift = old_start[c_area[j]] - a_start[c_area[j]]
            c_lo[j] -= shift
            c_hi[j] -= shift
    off = np.empty(n_chunks, dtype=np.int64)
    acc = tail
    for j in range(n_chunks):
        off[j] = acc
        acc += moves[j]
    first, last, n_touched = _touched(c_area, moves, n_chunks, au)
    new_best, new_arg = _move(order, rr, tmp, c_area, c_lo, c_hi, off, first, last,
                              n_touched, a_end, a_max, a_arg)
    # the new area: the movers, at the tail
    a_start[n_a], a_end[n_a], a_centre[n_a] = tail, tail + total, n_c
    best, arg = -1.0, -1
    for q in range(n_touched):
        if new_best[q] > best or (new_best[q] == best and new_arg[q] < arg):
            best, arg = new_best[q], new_arg[q]
    a_max[n_a], a_arg[n_a] = best, arg
    state[CENTRES] = n_c + 1
    state[AREAS] = n_a + 1
    state[TAIL] = tail + total


@njit(cache=True, nogil=True)
def run_picks(x, dens, centres, cdens, order, rr, tmp, a_start, a_end, a_max, a_arg,
              a_centre, state, n_steps, out_idx, out_r, slack):
    """Run ``n_steps`` picks of Algorithm 1 (each the largest r over the areas, then
    :func:`add_centre`), continuing from ``state``; ``out_idx``/``out_r``
    ``(budget,)`` receive the picks and their r at positions ``state[PICKS]`` on."""
    cu = np.empty(x.shape[1], dtype=x.dtype)
    for _ in range(n_steps):
        i = state[PICKS]
        ru, u, au = best_area(a_max, a_arg, state[AREAS])
        out_idx[i] = u
        out_r[i] = ru
        for c in range(x.shape[1]):
            cu[c] = x[u, c]
        add_centre(x, centres, cdens, order, rr, tmp, a_start, a_end, a_max, a_arg,
                   a_centre, state, cu, dens[u], u, au, slack)
        state[PICKS] = i + 1
