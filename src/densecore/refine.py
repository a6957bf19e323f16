"""k-medoids refinement of a greedy selection (beyond the paper).

Under k-center greedy the coverage radii equalise, and every centre is an
extreme point of the data when it is picked. Theorem 2 bounds the loss by the
largest *average* radial distance of a coverage area (Eq. 4), which an
extreme centre does not minimise. :func:`refine_medoids` moves each picked
centre to the medoid of its coverage area, a few Lloyd-style steps:

1. assign every point to its nearest centre (labeled points, out-of-pool
   labeled points and the picks; squared Euclidean distance, ties to the
   lowest centre in that order);
2. inside the area of every *picked* centre, move the centre to the member
   ``m`` minimising ``sum_{j in area} ||f_j - f_m||_2`` (the exact
   Eq. 4 objective of that area for a fixed membership; ties to the lowest
   index), among members that are neither labeled nor another area's centre;
3. repeat until no centre moves or ``steps`` steps are done.

Labeled centres never move. Step 2 never raises the sum of distances of an
area and step 1 never raises any point's distance, so the total Euclidean
distance from points to their centres (the k-medians objective) never
increases; the maximum area ARD usually falls, the covering radius ``delta``
usually rises (the pattern of the paper's Table 4). Not from the paper;
measured in ``docs/benchmarks.md``.

Cost per step: ``O(N * M * D)`` for the assignment (``M`` centres) and
``O(sum_k m_k^2 * D)`` for the medoids (``m_k`` points in area ``k``), no
``N x N`` matrix. Kernels: numba (for host engines of the table; float64 from
differences) and torch (any other engine; any device, differences in float32,
float64 for float64 input, chunked). The sampler
(:class:`densecore.KMedoidsRefinement`) refines with the engine and metric
of the sampler it wraps, on the pool the greedy driver prepared
(:func:`refine_pool`: one validation, one normalisation, one scale). Hostile
magnitudes: the features are multiplied by the driver's power of two
(``densecore._core``, ``scales``) and the ARDs divided by it, exactly; accuracy
is relative to the largest magnitude. The pick radii of any sampler's picks are
the driver's (:func:`densecore.greedy.radii_of`).

Shape:
    features ``(N, D)``, selected ``(B,)`` int, labeled ``(M,)``, labeled_features
    ``(L, D)``; result indices ``(B,)`` int64 (same order as ``selected``) and
    ``(B,)`` float64 average radial distance of each picked centre's area.
"""

from __future__ import annotations

import numpy as np
import torch

from . import _rules as R
from . import engines as E
from . import greedy as G
from . import metrics as M
from . import validation as V
from ._backends import nearest
from ._core import mul_pow2, pow2_exp, scales

__all__ = ["refine_medoids", "refine_pool"]

_TORCH_BLOCK = 1 << 22


# ------------------------------------------------------------------ assignment

def _top2(x: torch.Tensor, c: torch.Tensor, method: str):
    """Nearest and second-nearest centre of every row of ``x`` (squared Euclidean in
    float64 from differences, ties to the lowest centre): host numpy
    ``(a1, d1, a2, d2)``, ``a2 = -1`` and ``d2 = inf`` with a single centre."""
    v, i = nearest.search(x, c, 2, method=method)
    v, i = v.cpu().numpy(), i.cpu().numpy()
    if i.shape[1] == 1:
        n = len(i)
        return i[:, 0], v[:, 0], np.full(n, -1, dtype=np.int64), np.full(n, np.inf)
    return i[:, 0], v[:, 0], i[:, 1], v[:, 1]


class _CostCache:
    """Medoid costs of the areas, computed once per distinct membership.

    An area's costs depend only on its member list (sorted by index), so
    between steps and trial moves only the areas whose members changed are
    computed again; the values are the same floats either way.
    """

    def __init__(self):
        self._cache: dict = {}  # member list (bytes) -> its members' costs
        self._cached = 0  # costs held

    def area_costs(self, members: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """``(len(members),)`` float64: for every member, the sum of its Euclidean
        distances to the members of its area (areas ``members[starts[a]:starts[a+1]]``)."""
        if self._cached > 8 * len(members) + (1 << 16):
            self._cache, self._cached = {}, 0  # bounded: a few states' worth of areas
        cost = np.empty(len(members))
        keys, todo = [], []
        for a in range(len(starts) - 1):
            lo, hi = int(starts[a]), int(starts[a + 1])
            key = members[lo:hi].tobytes()
            hit = self._cache.get(key)
            if hit is None:
                todo.append(a)
                keys.append(key)
            else:
                cost[lo:hi] = hit
        if todo:
            sizes = np.diff(starts)[todo]
            sub_starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
            sub = np.concatenate([members[starts[a]:starts[a + 1]] for a in todo]
                                 ).astype(np.int64)
            got = self._area_costs(sub, sub_starts)
            for j, a in enumerate(todo):
                part = got[sub_starts[j]:sub_starts[j + 1]]
                cost[starts[a]:starts[a + 1]] = part
                self._cache[keys[j]] = part
                self._cached += len(part)
        return cost


class _NumbaOps(_CostCache):
    """Host kernels on a contiguous float32/float64 copy; float64 arithmetic; the
    nearest-centre search ``method`` of the wrapped engine."""

    def __init__(self, x: torch.Tensor, lab: torch.Tensor, lf: torch.Tensor, method: str):
        super().__init__()
        self.method = method
        self.x = nearest.as_numpy(x)  # float32/float64, contiguous (16-bit -> float32)
        lfn = nearest.as_numpy(lf)
        # the fixed centres in the features' dtype, or float64 when the two differ
        dt = self.x.dtype if lfn.dtype == self.x.dtype else np.float64
        fixed = np.concatenate([self.x[lab.cpu().numpy()].astype(dt), lfn.astype(dt)])
        self.n_fixed = len(fixed)
        self.fixed_top2 = self.top2(fixed) if len(fixed) else None

    def top2(self, centres):
        return _top2(torch.from_numpy(self.x), torch.from_numpy(np.ascontiguousarray(centres)),
                     self.method)

    def assign(self, cur):
        return _merge2(self.fixed_top2, self.top2(self.x[cur]), self.n_fixed)

    def _area_costs(self, members, starts):
        from ._backends.refine_kernels import _area_costs_nb, _row_blocks

        # the members' rows gathered area by area, so each task streams one block
        return _area_costs_nb(self.x[members], starts, _row_blocks(starts))

    def split_costs(self, mem, dcur):
        from ._backends.refine_kernels import _split_costs_nb

        return _split_costs_nb(self.x, mem, np.ascontiguousarray(dcur, dtype=np.float64))


# ------------------------------------------------------------------ torch

def _wd(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _cdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # from differences, not the norm expansion, so duplicates are at distance exactly 0
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


class _TorchOps(_CostCache):
    """Chunked torch on the features' device; float32 (float64 for float64 input).

    The area bookkeeping runs on the host, so each step synchronises a few times.
    The nearest-centre search is the wrapped engine's (``method``).
    """

    def __init__(self, x: torch.Tensor, lab: torch.Tensor, lf: torch.Tensor, method: str):
        super().__init__()
        self.method = method
        self.x = x.to(_wd(x))
        fixed = torch.cat([self.x[lab], lf.to(self.x.dtype)])
        self.n_fixed = fixed.shape[0]
        self.fixed_top2 = self.top2(fixed) if self.n_fixed else None

    def _t(self, idx):
        return torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(self.x.device)

    def assign(self, cur):
        return _merge2(self.fixed_top2, self.top2(self.x[self._t(cur)]), self.n_fixed)

    def top2(self, c):
        return _top2(self.x, c, self.method)

    def _area_costs(self, members, starts):
        mt = self._t(members)
        cost = torch.empty(len(members), dtype=self.x.dtype, device=self.x.device)
        for a in range(len(starts) - 1):
            lo, hi = int(starts[a]), int(starts[a + 1])
            if hi == lo:
                continue
            pts = self.x[mt[lo:hi]]
            step = max(1, _TORCH_BLOCK // (hi - lo))
            for s in range(0, hi - lo, step):
                cost[lo + s:min(hi, lo + s + step)] = _cdist(pts[s:s + step], pts).sum(1)
        return cost.double().cpu().numpy()

    def split_costs(self, mem, dcur):
        pts = self.x[self._t(mem)]
        dc = torch.from_numpy(np.asarray(dcur)).to(device=self.x.device, dtype=self.x.dtype)
        out = torch.empty(len(mem), dtype=self.x.dtype, device=self.x.device)
        step = max(1, _TORCH_BLOCK // max(len(mem), 1))
        for s in range(0, len(mem), step):
            out[s:s + step] = torch.minimum(_cdist(pts[s:s + step], pts), dc[None]).sum(1)
        return out.double().cpu().numpy()


# ------------------------------------------------------------------ driver

def _merge2(fixed_top2, pick_top2, n_fixed: int):
    """Nearest and second-nearest centre over the fixed centres (indices
    ``0..n_fixed-1``, searched once) and the picks (``n_fixed + j``), in
    (squared distance, index) order, so ties go to the lowest centre index."""
    p1, pd1, p2, pd2 = pick_top2
    p1 = p1 + n_fixed
    p2 = np.where(p2 >= 0, p2 + n_fixed, -1)
    if fixed_top2 is None:
        return p1, pd1, p2, pd2
    f1, fd1, f2, fd2 = fixed_top2
    big = np.iinfo(np.int64).max
    idx = np.stack([f1, f2, p1, p2], axis=1)
    dist = np.stack([fd1, fd2, pd1, pd2], axis=1)
    dist = np.where(idx >= 0, dist, np.inf)
    key_idx = np.where(idx >= 0, idx, big)
    # sort each row by (distance, index): 4 columns, done with two stable argsorts
    o = np.argsort(key_idx, axis=1, kind="stable")
    o = np.take_along_axis(o, np.argsort(np.take_along_axis(dist, o, 1), axis=1,
                                         kind="stable"), 1)
    i_sorted = np.take_along_axis(idx, o, 1)
    d_sorted = np.take_along_axis(dist, o, 1)
    return i_sorted[:, 0], d_sorted[:, 0], i_sorted[:, 1], d_sorted[:, 1]


def _first_min(values: np.ndarray) -> int:
    """Index of the first minimum (the lowest index on ties)."""
    return int(np.flatnonzero(values == values.min())[0])


def _medoid_step(cost, members, starts, allowed, current):
    """Per area: the allowed member of least cost (ties: lowest index), or the current."""
    new = current.copy()
    for a in range(len(current)):
        lo, hi = starts[a], starts[a + 1]
        if hi == lo:
            continue
        mem = members[lo:hi]
        ok = allowed[mem] | (mem == current[a])
        if not ok.any():
            continue
        # members are sorted by index, so the first minimum is the lowest index
        new[a] = mem[_first_min(np.where(ok, cost[lo:hi], np.inf))]
    return new


class _State:
    """Centres (fixed first, then the picks) and the exact coverage they induce."""

    def __init__(self, ops, n_fixed: int, cur: np.ndarray):
        self.ops, self.n_fixed, self.cur = ops, n_fixed, cur
        self.a1, d1, self.a2, d2 = ops.assign(cur)
        self.d1, self.d2 = np.sqrt(d1), np.sqrt(d2)  # Euclidean (Eq. 4)
        m = n_fixed + len(cur)
        self.total = np.bincount(self.a1, weights=self.d1, minlength=m)
        self.count = np.bincount(self.a1, minlength=m)
        self.ard = np.where(self.count > 0, self.total / np.maximum(self.count, 1), 0.0)


def _lloyd(ops, state: _State, allowed: np.ndarray, steps: int) -> _State:
    b, nf = len(state.cur), state.n_fixed
    for _ in range(steps):
        area = state.a1 - nf  # area of pick a, or < 0 for a fixed centre
        inside = np.flatnonzero(area >= 0)
        order = inside[np.argsort(area[inside], kind="stable")].astype(np.int64)
        starts = np.searchsorted(area[order], np.arange(b + 1)).astype(np.int64)
        is_centre = np.zeros(len(allowed), dtype=bool)
        is_centre[state.cur] = True
        cost = ops.area_costs(order, starts)
        new = _medoid_step(cost, order, starts, allowed & ~is_centre, state.cur)
        if np.array_equal(new, state.cur):
            break
        state = _State(ops, nf, new)
    return state


def _swap(ops, state: _State, allowed: np.ndarray, steps: int, tries: int):
    """One move of a pick into the area of largest ARD; the new state or None."""
    nf, b = state.n_fixed, len(state.cur)
    m = nf + b
    worst = _first_min(-state.ard)
    mem = np.flatnonzero(state.a1 == worst)
    is_centre = np.zeros(len(allowed), dtype=bool)
    is_centre[state.cur] = True
    ok = allowed[mem] & ~is_centre[mem]
    if len(mem) < 2 or not ok.any() or m < 2:
        return None
    # the new centre: the member that most lowers the area's sum of distances
    split = np.where(ok, ops.split_costs(mem.astype(np.int64), state.d1[mem]), np.inf)
    p = int(mem[_first_min(split)])
    # the pick to move: the one whose area, handed to its members' second-nearest
    # centres, raises their ARD least
    pick = state.a1 >= nf
    # (pick, receiving centre) pairs that occur: at most one per point, never b x m
    pairs, inv = np.unique((state.a1[pick] - nf) * m + state.a2[pick], return_inverse=True)
    recv = pairs % m
    grown = ((state.total[recv] + np.bincount(inv, weights=state.d2[pick]))
             / (state.count[recv] + np.bincount(inv)))
    cost = np.zeros(b)
    np.maximum.at(cost, pairs // m, grown)
    if worst >= nf:
        cost[worst - nf] = np.inf
    for j in np.argsort(cost, kind="stable")[:tries]:
        if not np.isfinite(cost[j]):
            break
        trial = state.cur.copy()
        trial[j] = p
        new = _lloyd(ops, _State(ops, nf, trial), allowed, steps)
        if new.ard.max() < state.ard.max():
            return new
    return None


def _selected(selected, n: int, labn: np.ndarray) -> np.ndarray:
    """``selected`` as ``(B,)`` int64 host indices: in range, distinct, none labeled."""
    sel = V.check_indices(selected, n, "selected").cpu().numpy().astype(np.int64)
    if len(np.unique(sel)) != len(sel):
        raise ValueError("selected must not repeat an index")
    if np.isin(sel, labn).any():
        raise ValueError("selected must not hold a labeled index; got "
                         f"{int(sel[np.isin(sel, labn)][0])}")
    return sel


def refine_pool(pool, fscale: float, selected, *, engine_name: str, eligible=None,
                steps: int = 2, swaps: int = 0, tries: int = 3):
    """:func:`refine_medoids` on the driver's prepared pool: no second validation,
    normalisation or scaling.

    Args:
        pool: a dense :class:`densecore.greedy.Pool` (checked, unit rows for cosine).
        fscale: its feature scale (:func:`densecore._core.scales`, a power of two).
        selected: ``(B,)`` distinct indices into the pool, none labeled.
        engine_name: the resolved engine whose kernels' side and search the
            refinement uses (:func:`densecore._rules.kernel`, ``"refine"``).
        eligible, steps, swaps, tries: as in :func:`refine_medoids` (checked).

    Returns:
        ``(indices (B,) int64, ard (B,) float64)`` numpy arrays, the ARD in the
        pool's units (the scale undone).
    """
    if pool.layout != "dense":
        raise TypeError("the k-medoids refinement takes dense features; got a sparse pool")
    n, dev = pool.n, pool.device
    lab, labn = pool.lab, pool.lab.cpu().numpy()
    sel = _selected(selected, n, labn)
    x, lf = pool.x, pool.lf
    e = pow2_exp(fscale)
    if e:  # the driver's scale, applied here once (exact: a power of two)
        wide = torch.float64 if torch.float64 in (x.dtype, lf.dtype) else torch.float32
        x, lf = mul_pow2(x.to(wide), e), mul_pow2(lf.to(wide), e)
    b = len(sel)
    if b == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    side = R.kernel("refine", dev, host=E.engine(engine_name).host)
    method = E.engine(engine_name).search_method
    ops = (_NumbaOps if side == "host" else _TorchOps)(x, lab, lf, method)
    n_fixed = len(labn) + lf.shape[0]
    if eligible is None:
        allowed = np.ones(n, dtype=bool)
    else:
        allowed = np.zeros(n, dtype=bool)
        allowed[V.check_indices(eligible, n, "eligible").cpu().numpy()] = True
    allowed[labn] = False
    state = _lloyd(ops, _State(ops, n_fixed, sel.copy()), allowed, steps)
    for _ in range(swaps):
        new = _swap(ops, state, allowed, 1, tries)
        if new is None:
            break
        state = new
    return state.cur, mul_pow2(state.ard[n_fixed:].copy(), -e)


def refine_medoids(features, selected, *, labeled=None, labeled_features=None,
                   eligible=None, steps: int = 2, swaps: int = 0, tries: int = 3,
                   backend: str = "auto", metric: str = "euclidean", validate: bool = True):
    """Move each selected centre to the medoid of its coverage area (see the module).

    With ``swaps > 0``, up to ``swaps`` moves follow the medoid steps: the
    area of largest ARD (over all centres, labeled ones included) gets a
    second centre (the member that most lowers the area's sum of
    distances), taken from the pick whose area, handed to its members'
    second-nearest centres, raises their ARD least (up to ``tries`` picks in
    that order); after one medoid step the move is kept only if the largest
    ARD fell, and the search stops at the first area no move improves.

    The inputs are prepared once, by the greedy driver (:func:`densecore.greedy.check`
    and the one scaling rule), and refined by :func:`refine_pool`.

    Args:
        features: ``(N, D)`` float pool (numpy or a tensor on any device).
        selected: ``(B,)`` distinct indices into ``features`` (the greedy's picks),
            none of them labeled.
        labeled: ``(M,)`` in-pool labeled indices: fixed centres, never picked.
        labeled_features: ``(L, D)`` labeled points outside the pool: fixed centres.
        eligible: ``(E,)`` indices of the points a centre may move to (None: every
            unlabeled point). With ``features`` = every pixel and ``eligible`` = the
            candidates, the areas (and Eq. 4) cover every pixel while the centres
            stay candidates: the paper's measurement protocol.
        steps: at most this many assign + medoid steps (>= 0).
        swaps: at most this many moves toward the largest ARD (>= 0).
        tries: picks tried per move (>= 1).
        backend: a name of the engine table or ``"auto"``
            (:func:`densecore.engines.resolve`): a host engine (numba) refines with
            the numba kernels, any other with the torch ones
            (:func:`densecore._rules.kernel`); the nearest-centre search is the
            engine's own (its ``search_method``).
        metric: ``"euclidean"`` or ``"cosine"``: cosine refines on unit rows (the
            geometry a cosine sampler picked in); the ARD is then the mean Euclidean
            distance between unit rows.
        validate: scan for NaN/inf.

    Returns:
        ``(indices (B,) int64, ard (B,) float64)``: the refined centres (the
        ``i``-th replaces ``selected[i]``, except for moved picks) and the
        average radial distance (mean Euclidean distance, Eq. 4) of each one's
        coverage area at the end, in the input's kind and device.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])
        >>> idx, ard = refine_medoids(x, [0, 4])
        >>> idx.tolist(), ard.tolist()
        ([1, 4], [1.0, 0.0])
    """
    metric = M.check_metric(metric)
    steps = V.check_int(steps, "steps", minimum=0)
    swaps = V.check_int(swaps, "swaps", minimum=0)
    tries = V.check_int(tries, "tries", minimum=1)
    pool = G.check(features, None, labeled, labeled_features, None, backend=backend,
                   metric=metric, validate=validate)
    fscale, _ = scales(pool.stats(), pool.dtype)
    cur, ard = refine_pool(pool, fscale, selected, engine_name=pool.engine, eligible=eligible,
                           steps=steps, swaps=swaps, tries=tries)
    if pool.is_numpy:
        return cur, ard
    return torch.from_numpy(cur).to(pool.device), torch.from_numpy(ard).to(pool.device)
