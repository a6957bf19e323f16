"""Kernels of the dense mode: one fused pass per pick over groups of nearby points.

The points are held in group order (:mod:`densecore._backends.groups`): position
``p`` is point ``orig[p]``, point ``t`` is at ``pos[t]``; ``r`` holds the current
r per position (-1 for labeled or picked points) and ``owner`` the centre that
gives it (the row of the centre tables; -1 for none), so that the pruned mode's
coverage areas can be rebuilt from them. Whole groups are ruled out by their
mean and radius, the rest by one byte per feature, and only the few points left
have their features read. Exact.

Shape:
    ``x`` ``(N, D)``; ``r``, ``owner``, ``orig``, ``pos``, ``errs`` ``(N,)``;
    ``codes`` ``(N, D)`` int8; chunk tables ``(n_chunks,)``; groups ``(G, D)``, ``(G,)``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .common import CENTRES, EPS32, EPS64, FAST, PICKS, sqdist_to

BLOCK = 4096  # positions per chunk (one parallel task)


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


@njit(cache=True, fastmath=FAST)
def _lower(x, orig, r, owner, p, cu, du, cid):
    """Lower ``r[p]`` (point ``orig[p]``) to the scaled distance to ``cu`` if that is
    smaller, recording centre ``cid`` as its owner; True if it did."""
    rt = r[p]
    if rt > 0.0:
        v = sqdist_to(x, orig[p], cu) / du
        if v < rt:
            r[p] = v
            owner[p] = cid
            return True
    return False


@njit(cache=True, fastmath=FAST)
def _dense_block(x, r, owner, orig, cu, du, cid, lo, hi, codes, errs, mean, scale, mul,
                 shrink):
    """Positions ``[lo, hi)`` (one group: ``mean``, ``scale``) of :func:`dense_update`;
    True when an r changed.

    Every distance is first bounded from the point's byte codes (``groups.encode``),
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
    dw = 4.0 * EPS32 * np.sqrt(wn)
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
        changed |= _lower(x, orig, r, owner, todo[k], cu, du, cid)
    return changed


@njit(cache=True, fastmath=FAST)
def _group_live(cu, mul, means, radii, c_grp, c_best, live):
    """``live[g]``: whether a member of group ``g`` might move to the new centre ``cu``
    (``(||cu - m_g|| - rad_g)^2 > du max r`` rules a group out)."""
    g_max = np.full(means.shape[0], -1.0)
    for c in range(c_grp.shape[0]):
        if c_best[c] > g_max[c_grp[c]]:
            g_max[c_grp[c]] = c_best[c]
    d = cu.shape[0]
    # float64 rounding of the centre distance, summed in any order: shrink it past that
    shrink = 1.0 - 2.0 * (d + 2) * EPS64
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
def dense_update(x, r, owner, orig, pos, cu, du, cid, u, codes, errs, scales, slack, means,
                 radii, c_lo, c_hi, c_grp, c_best, c_arg):
    """One centre ``cu`` (density ``du``, centre row ``cid``) lowers ``r`` in one fused
    pass; ``u`` (>= 0) is first marked picked.

    Chunks ``[c_lo, c_hi)`` of positions lie in one group ``c_grp`` each; a group
    whose mean is too far from ``cu`` for its radius is skipped whole; in the others
    every point is first bounded from its byte codes (:func:`_dense_block`).
    ``c_best``/``c_arg`` hold each chunk's largest r and its (lowest) point index;
    only chunks where r changed are rescanned. Returns ``(max r, its lowest point
    index)``, ``(-1.0, -1)`` when nothing is left.
    """
    if u >= 0:
        r[pos[u]] = -1.0
    mul = du * (1.0 + slack)
    live = np.empty(means.shape[0], dtype=np.bool_)
    _group_live(cu, mul, means, radii, c_grp, c_best, live)
    shrink = 1.0 - 2.0 * (codes.shape[1] + 3) * EPS32
    for c in prange(c_lo.shape[0]):
        lo, hi = c_lo[c], c_hi[c]
        g = c_grp[c]
        changed = False
        if live[g]:
            changed = _dense_block(x, r, owner, orig, cu, du, cid, lo, hi, codes, errs,
                                   means[g], scales[g], mul, shrink)
        if changed or (u >= 0 and lo <= pos[u] < hi):
            c_best[c], c_arg[c] = _block_best(r, orig, lo, hi)
    return overall(c_best, c_arg)


@njit(cache=True, nogil=True)
def dense_picks(x, dens, r, owner, orig, pos, centres, cdens, state, codes, errs, scales,
                slack, means, radii, c_lo, c_hi, c_grp, c_best, c_arg, best_r, best_u, k,
                out_idx, out_r):
    """``k`` picks of Algorithm 1 by dense passes (:func:`dense_update`) from the current
    ``(best_r, best_u)``, written at positions ``state[PICKS]`` on; each pick fills the
    next row of the centre tables. Returns the pair after them."""
    for _ in range(k):
        i = state[PICKS]
        u = best_u
        out_idx[i] = u
        out_r[i] = best_r
        cid = state[CENTRES]
        centres[cid] = x[u]
        cdens[cid] = dens[u]
        best_r, best_u = dense_update(x, r, owner, orig, pos, x[u], dens[u], cid, u, codes,
                                      errs, scales, slack, means, radii, c_lo, c_hi, c_grp,
                                      c_best, c_arg)
        state[CENTRES] = cid + 1
        state[PICKS] = i + 1
    return best_r, best_u


@njit(cache=True)
def overall(c_best, c_arg):
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
def chunk_maxima(r, orig, c_lo, c_hi, c_best, c_arg):
    """Fill each chunk's largest r and its lowest point index; return the overall pair
    (``(-1.0, -1)`` when every r is negative)."""
    for c in range(c_lo.shape[0]):
        c_best[c], c_arg[c] = _block_best(r, orig, c_lo[c], c_hi[c])
    return overall(c_best, c_arg)


def chunks(starts: np.ndarray):
    """``(lo, hi, group)`` int64 arrays: every group cut into pieces of at most
    :data:`BLOCK` positions (empty groups have none)."""
    lo, hi, grp = [], [], []
    for g in range(len(starts) - 1):
        for a in range(int(starts[g]), int(starts[g + 1]), BLOCK):
            lo.append(a)
            hi.append(min(a + BLOCK, int(starts[g + 1])))
            grp.append(g)
    return (np.array(lo, dtype=np.int64), np.array(hi, dtype=np.int64),
            np.array(grp, dtype=np.int64))
