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
of the sampler it wraps. Hostile magnitudes: the features are first multiplied by the
greedy's power of two (``densecore._core``, ``pow2_scale``) and the
ARDs divided by it, exactly; accuracy is relative to the largest magnitude.

Shape:
    features ``(N, D)``, selected ``(B,)`` int, labeled ``(M,)``, labeled_features
    ``(L, D)``; result indices ``(B,)`` int64 (same order as ``selected``) and
    ``(B,)`` float64 average radial distance of each picked centre's area.
"""

from __future__ import annotations

import numpy as np
import torch

from . import engines as E
from . import metrics as M
from . import validation as V
from ._backends import nearest
from ._core import mul_pow2, scaled_features

__all__ = ["pick_radii", "refine_medoids"]

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
        self.x = nearest._as_np(x)  # float32/float64, contiguous (16-bit -> float32)
        lfn = nearest._as_np(lf)
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
            the numba kernels, any other with the torch ones; the nearest-centre
            search is the engine's own (its ``search_method``).
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
    is_numpy = isinstance(features, np.ndarray)
    metric = M.check_metric(metric)
    x, _, lab, lf, _ = V.check_pool(features, None, labeled, labeled_features, None,
                                    validate=validate)
    if metric == "cosine":
        x, lf = M.unit_rows(x.detach()), M.unit_rows(lf.detach(), "labeled_features")
    x, lf, e = scaled_features(x.detach(), lf.detach())
    n = x.shape[0]
    dev = x.device
    sel = V.check_indices(selected, n, "selected").cpu().numpy().astype(np.int64)
    if len(np.unique(sel)) != len(sel):
        raise ValueError("selected must not repeat an index")
    labn = lab.cpu().numpy()
    if np.isin(sel, labn).any():
        raise ValueError("selected must not hold a labeled index; got "
                         f"{int(sel[np.isin(sel, labn)][0])}")
    steps = V.check_int(steps, "steps", minimum=0)
    swaps = V.check_int(swaps, "swaps", minimum=0)
    tries = V.check_int(tries, "tries", minimum=1)
    eng = E.engine(E.resolve(backend, "dense", dev))  # its kernels' side and its search
    host = eng.host
    b = len(sel)
    if b == 0:
        out = np.zeros(0, dtype=np.int64), np.zeros(0)
        return out if is_numpy else tuple(torch.from_numpy(e).to(dev) for e in out)
    ops = (_NumbaOps if host else _TorchOps)(x, lab, lf, eng.search_method)
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
    cur, ard = state.cur, mul_pow2(state.ard[n_fixed:].copy(), -e)
    if is_numpy:
        return cur, ard
    return torch.from_numpy(cur).to(dev), torch.from_numpy(ard).to(dev)


def _prefix_min_host(p: torch.Tensor, pd: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``min(r_i, min_{j < i} ||p_i - p_j||^2 / pd_j)`` ``(B,)`` float64: one parallel
    numba pass over the pairs (CPU tensors)."""
    from ._backends.refine_kernels import _prefix_min_nb

    out = r.numpy().copy()
    _prefix_min_nb(p.numpy(), (1.0 / pd).numpy(), out)
    return torch.from_numpy(out)


def _prefix_min_torch(p: torch.Tensor, pd: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """:func:`_prefix_min_host` in torch blocks of rows (any device), float64 differences."""
    r = r.clone()
    n = p.shape[0]
    rows = max(1, _TORCH_BLOCK // max(1, n * p.shape[1]))
    for s in range(1, n, rows):
        blk = p[s:s + rows]
        q = ((blk[:, None, :] - p[None, :s + rows, :]) ** 2).sum(2) / pd[None, :s + rows]
        earlier = torch.arange(s, s + blk.shape[0], device=p.device)[:, None] > \
            torch.arange(q.shape[1], device=p.device)[None, :]
        q = torch.where(earlier, q, torch.full_like(q, float("inf")))
        r[s:s + blk.shape[0]] = torch.minimum(r[s:s + blk.shape[0]], q.min(1).values)
    return r


def pick_radii(features, indices, *, densities=None, labeled=None, labeled_features=None,
               labeled_densities=None, metric: str = "euclidean"):
    """``r`` of each pick at its turn, as a greedy sampler's radii: the squared distance
    (cosine distance for ``metric="cosine"``) of ``indices[i]`` to the nearest labeled
    point or earlier pick, divided by that point's density; ``inf`` for a first pick
    with nothing labeled. Float64 from coordinate differences, in blocks; features
    follow the one scaling rule.

    Args:
        features: ``(N, D)`` float pool; indices: ``(B,)`` picks in order.
        densities: ``(N,)`` or None (all 1); labeled: ``(M,)``; labeled_features:
            ``(L, D)``; labeled_densities: ``(L,)`` (with densities).
        metric: ``"euclidean"`` or ``"cosine"``.

    Returns:
        ``(B,)`` float64 radii, numpy for numpy features, else a tensor on their device.

    Example:
        >>> import numpy as np
        >>> pick_radii(np.array([[0.0], [1.0], [3.0]]), [2, 1], labeled=[0]).tolist()
        [9.0, 1.0]
    """
    metric = M.check_metric(metric)
    x, dens, lab, lf, ld = V.check_pool(features, densities, labeled, labeled_features,
                                        labeled_densities, validate=False)
    if metric == "cosine":
        x, lf = M.unit_rows(x.detach()), M.unit_rows(lf.detach(), "labeled_features")
    x, lf, e = scaled_features(x.detach(), lf.detach())
    dev = x.device
    idx = V.check_indices(indices, x.shape[0], "indices").to(dev)
    p = x[idx].to(torch.float64)
    c = torch.cat([x[lab.to(dev)].to(torch.float64), lf.to(dev, torch.float64)])
    if dens is None:
        pd = torch.ones(len(idx), dtype=torch.float64, device=dev)
        cd = torch.ones(c.shape[0], dtype=torch.float64, device=dev)
    else:
        d = dens.detach().to(dev, torch.float64)
        pd = d[idx]
        cd = torch.cat([d[lab.to(dev)], ld.detach().to(dev, torch.float64)])
    r = torch.full((len(idx),), float("inf"), dtype=torch.float64, device=dev)
    if c.shape[0] and len(idx):
        v, _, ve = nearest.search_scaled(p, c, 1, weights=cd)
        r = mul_pow2(v[:, 0], ve)
    r = (_prefix_min_host if dev.type == "cpu" else _prefix_min_torch)(p, pd, r)
    r = mul_pow2(r, -2 * e) * M.radius_factor(metric)
    return r.cpu().numpy() if isinstance(features, np.ndarray) else r
