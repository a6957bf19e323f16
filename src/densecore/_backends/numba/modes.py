"""The numba engine's modes: one object per way of making picks.

* :class:`Plain`: one serial pass per pick (small pools).
* :class:`Weighted`: one parallel fused pass per pick, ``argmax r * weight``.
* :class:`Pruned`: coverage areas and the triangle inequality (:mod:`.pruned_kernels`).
* :class:`Dense`: one pass per pick over groups with byte codes (:mod:`.dense_kernels`).

Every mode shares one :class:`Shared` (features, densities, centre tables, the state
record) and answers ``best()``, ``add(cu, du, u)`` (one centre, counted as a pick)
and ``picks(k, out_idx, out_r)`` (returns the work done, the thread picker's unit).
The pruned and dense modes also give ``live()``, every point's r and centre, from
which the other is built: a hand-over between them is a mode swap.

Shape:
    ``x`` ``(N, D)``; ``r``, ``assign`` ``(N,)`` in point order; centres ``(C, D)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..groups import build_groups, encode, n_groups
from ..sketch import SKETCH_DIM, build_sketch
from . import dense_kernels as DK
from . import pruned_kernels as PK
from .common import AREAS, CENTRES, PICKS, READS, TAIL, argmax_first
from .plain_kernels import plain_picks, plain_update

# Fixed cost of one pruned pick in units of feature rows read (area tables,
# compaction), so that a block whose areas are all skipped still counts as work.
PICK_WORK = 64
# The points are grouped for dense passes only when at least this many picks remain
# (grouping costs a few passes over the pool).
GROUP_MIN_PICKS = 256
WEIGHTED_BLOCKS = 64  # argmax blocks of the weighted pass (ties: lowest index)


@dataclass
class Shared:
    """What every mode of one engine reads and writes.

    Attributes:
        x: ``(N, D)`` float32/float64 C-contiguous features.
        dens: ``(N,)`` float64 densities.
        centres, cdens: ``(C, D)``, ``(C,)`` centre tables (labeled set, then picks),
            the first ``state[CENTRES]`` rows filled (pruned and dense modes).
        state: the state record (:mod:`.common`: ``PICKS``, ``CENTRES``, ...).
        slack: relative margin of the pruning and code tests.
        max_new: most centres still to be added when the engine was built.
        n_live: points neither labeled nor picked.
        rounded: ``(L,)`` bool, labeled centres whose features the pool's dtype would
            round (wider labeled features keep their precision, so the centre tables
            hold them inexactly): their coverage areas are never skipped; or None.
    """

    x: np.ndarray
    dens: np.ndarray
    centres: np.ndarray
    cdens: np.ndarray
    state: np.ndarray
    slack: float
    max_new: int
    n_live: int
    rounded: np.ndarray | None = None


class Plain:
    """r per point (-1 for labeled or picked points), the argmax kept beside it."""

    name = "plain"

    def __init__(self, sh: Shared, r: np.ndarray):
        self.sh, self.r = sh, r
        self.best_r, self.best_u = argmax_first(r)

    def best(self):
        return self.best_r, self.best_u

    def add(self, cu, du: float, u: int) -> int:
        if u >= 0:
            self.r[u] = -1.0
        self.best_r, self.best_u = plain_update(self.sh.x, self.r, cu, du)
        self.sh.state[PICKS] += 1
        return 0

    def picks(self, k: int, out_idx, out_r) -> int:
        sh = self.sh
        i = int(sh.state[PICKS])
        self.best_r, self.best_u = plain_picks(sh.x, sh.dens, self.r, self.best_u, i, k,
                                               out_idx, out_r)
        sh.state[PICKS] = i + k
        return k * sh.x.shape[0]


class Weighted:
    """``argmax r * weight`` by one parallel fused pass per pick
    (``typicality_kernels._update_argmax``); the pruning bounds hold only for ``argmax r``."""

    name = "weighted"

    def __init__(self, sh: Shared, r: np.ndarray, w: np.ndarray, taken: np.ndarray):
        from ..typicality_kernels import _update_argmax

        self.sh, self.r, self.w, self.taken = sh, r, w, taken
        self.blocks = min(WEIGHTED_BLOCKS, max(1, r.shape[0]))
        u, _ = _update_argmax(sh.x, np.empty(0, sh.x.dtype), r, w, taken, self.blocks)
        self.best_r, self.best_u = (r[u], u) if u >= 0 else (-1.0, -1)

    def best(self):
        return self.best_r, self.best_u

    def add(self, cu, du: float, u: int) -> int:
        from ..typicality_kernels import _update_argmax

        if du != 1.0:  # a centre's density divides r; the weighted kernel takes none
            raise ValueError("candidate weights take centres of density 1 (typicality)")
        if u >= 0:
            self.taken[u] = True
        u, _ = _update_argmax(self.sh.x, cu, self.r, self.w, self.taken, self.blocks)
        self.best_r, self.best_u = (self.r[u], u) if u >= 0 else (-1.0, -1)
        self.sh.state[PICKS] += 1
        return 0

    def picks(self, k: int, out_idx, out_r) -> int:
        sh = self.sh
        for _ in range(k):
            i = int(sh.state[PICKS])
            u = self.best_u
            out_idx[i], out_r[i] = u, self.r[u]
            self.add(sh.x[u], float(sh.dens[u]), u)
        return k * sh.x.shape[0]


class Pruned:
    """Coverage areas in an arena (:mod:`.pruned_kernels`), built from every point's r
    and centre: ``assign[t]`` a row of the centre tables, -1 for a live point no centre
    covers yet (r = inf) and anything for points with r < 0 (labeled or picked);
    ``assign`` None: no point is covered yet. ``assign`` is overwritten."""

    name = "pruned"

    def __init__(self, sh: Shared, r: np.ndarray, assign: np.ndarray):
        n = sh.x.shape[0]
        n_c = int(sh.state[CENTRES])
        cap = 2 * n + 1
        self.sh = sh
        self.order = np.empty(cap, dtype=np.int64)
        self.rr = np.empty(cap, dtype=np.float64)
        self.tmp = np.empty(cap, dtype=np.float64)
        # one area per centre and one (centre -1) for the points nothing covers yet;
        # every later centre adds one, so the tables hold the centres' rows plus one
        n_area = sh.centres.shape[0] + 1
        self.a_start = np.zeros(n_area, dtype=np.int64)
        self.a_end = np.zeros(n_area, dtype=np.int64)
        self.a_max = np.full(n_area, -1.0)
        self.a_arg = np.full(n_area, -1, dtype=np.int64)
        self.a_centre = np.full(n_area, -1, dtype=np.int64)
        self.a_centre[:n_c] = np.arange(n_c)
        if sh.rounded is not None:
            # a labeled centre the feature dtype rounds has no exact distance to new
            # centres (its exact r came from the search, which keeps its precision):
            # its area keeps centre -1, which is never skipped
            self.a_centre[:sh.rounded.shape[0]][sh.rounded] = -1
        if assign is None:  # nothing covered yet: every live point in the area of no centre
            area = np.where(r < 0, -1, n_c)
        else:  # in place: no second (N,) array
            area = assign
            area[area < 0] = n_c
            area[r < 0] = -1
        m = PK.build_areas(area, r, n_c + 1, self.order, self.rr, self.a_start, self.a_end,
                           self.a_max, self.a_arg)
        sh.state[AREAS], sh.state[TAIL] = n_c + 1, m

    def best(self):
        ru, u, _ = PK.best_area(self.a_max, self.a_arg, self.sh.state[AREAS])
        return ru, u

    def add(self, cu, du: float, u: int) -> int:
        sh = self.sh
        reads0 = int(sh.state[READS])
        au = -1
        if u >= 0:
            au, _ = PK.locate(self.order, self.rr, self.a_start, self.a_end,
                              sh.state[AREAS], u)
        PK.add_centre(sh.x, sh.centres, sh.cdens, self.order, self.rr, self.tmp,
                      self.a_start, self.a_end, self.a_max, self.a_arg, self.a_centre,
                      sh.state, cu, du, u, au, sh.slack)
        sh.state[PICKS] += 1
        return int(sh.state[READS]) - reads0

    def picks(self, k: int, out_idx, out_r) -> int:
        sh = self.sh
        reads0 = int(sh.state[READS])
        PK.run_picks(sh.x, sh.dens, sh.centres, sh.cdens, self.order, self.rr, self.tmp,
                     self.a_start, self.a_end, self.a_max, self.a_arg, self.a_centre,
                     sh.state, k, out_idx, out_r, sh.slack)
        return int(sh.state[READS]) - reads0 + k * PICK_WORK

    def live(self):
        """``(r, assign)`` ``(N,)`` in point order (-1 for labeled or picked points)."""
        n = self.sh.x.shape[0]
        r = np.full(n, -1.0)
        assign = np.full(n, -1, dtype=np.int64)
        PK.flatten(self.order, self.rr, self.a_start, self.a_end, self.a_centre,
                   self.sh.state[AREAS], r, assign)
        return r, assign


class Groups:
    """Groups of nearby points with byte codes (:mod:`densecore._backends.groups`),
    built once per engine (the first hand-over) and kept across mode swaps."""

    def __init__(self, x: np.ndarray, picks_left: int):
        n, d = x.shape
        # grouping costs a few passes over the pool: only where enough picks remain
        self.g = n_groups(n) if picks_left >= GROUP_MIN_PICKS else 1
        view = None
        if self.g > 1:  # the assignment's view: the features, or a sketch when D is large
            view = x if d <= 2 * SKETCH_DIM else build_sketch(x, SKETCH_DIM)
        self.perm, starts, self.means, self.radii = build_groups(x, view, self.g)
        del view
        self.codes, self.scales, self.errs = encode(x, self.perm, starts, self.means)
        self.pos = np.empty(n, dtype=np.int64)
        self.pos[self.perm] = np.arange(n, dtype=np.int64)
        self.chunks = DK.chunks(starts)


class Dense:
    """r and its centre per position in group order; one fused pass per pick."""

    name = "dense"

    def __init__(self, sh: Shared, groups: Groups, r: np.ndarray, assign: np.ndarray):
        self.sh, self.gr = sh, groups
        self.r = r[groups.perm]
        self.owner = assign[groups.perm]
        n_chunks = len(groups.chunks[0])
        self.c_best = np.empty(n_chunks)
        self.c_arg = np.empty(n_chunks, dtype=np.int64)
        self.best_r, self.best_u = DK.chunk_maxima(self.r, groups.perm, *groups.chunks[:2],
                                                   self.c_best, self.c_arg)

    def best(self):
        return self.best_r, self.best_u

    def add(self, cu, du: float, u: int) -> int:
        sh, g = self.sh, self.gr
        cid = int(sh.state[CENTRES])
        sh.centres[cid] = cu
        sh.cdens[cid] = du
        self.best_r, self.best_u = DK.dense_update(
            sh.x, self.r, self.owner, g.perm, g.pos, cu, float(du), cid, u, g.codes, g.errs,
            g.scales, sh.slack, g.means, g.radii, *g.chunks, self.c_best, self.c_arg)
        sh.state[CENTRES] = cid + 1
        sh.state[PICKS] += 1
        return 0

    def picks(self, k: int, out_idx, out_r) -> int:
        sh, g = self.sh, self.gr
        work = k * sh.n_live - k * (k - 1) // 2
        self.best_r, self.best_u = DK.dense_picks(
            sh.x, sh.dens, self.r, self.owner, g.perm, g.pos, sh.centres, sh.cdens, sh.state,
            g.codes, g.errs, g.scales, sh.slack, g.means, g.radii, *g.chunks, self.c_best,
            self.c_arg, self.best_r, self.best_u, k, out_idx, out_r)
        return work

    def live(self):
        """``(r, assign)`` ``(N,)`` in point order (-1 for labeled or picked points)."""
        n = self.sh.x.shape[0]
        r = np.empty(n)
        assign = np.empty(n, dtype=np.int64)
        r[self.gr.perm] = self.r
        assign[self.gr.perm] = self.owner
        return r, assign
