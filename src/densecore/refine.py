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
``N x N`` matrix. Backends: ``"numba"`` (CPU, float64 from differences) and
``"torch"`` (any device, differences in float32, float64 for float64 input,
chunked).

Shape:
    features ``(N, D)``, selected ``(B,)`` int, labeled ``(M,)``, labeled_features
    ``(L, D)``; result indices ``(B,)`` int64 (same order as ``selected``) and
    ``(B,)`` float64 average radial distance of each picked centre's area.
"""

from __future__ import annotations

import inspect

import numba
import numpy as np
import torch

from . import validation as V
from .greedy import Selection

__all__ = ["KMedoidsRefinement", "refine_medoids"]

BACKENDS = ("auto", "numba", "torch")
_TORCH_BLOCK = 1 << 22


# ------------------------------------------------------------------ numba

@numba.njit(parallel=True, cache=True)
def _assign_nb(x, c):  # pragma: no cover - numba
    n, m = x.shape[0], c.shape[0]
    assign = np.empty(n, dtype=np.int64)
    dist = np.empty(n)
    for i in numba.prange(n):
        best = np.inf
        arg = 0
        for k in range(m):
            s = 0.0
            for d in range(x.shape[1]):
                t = np.float64(x[i, d]) - c[k, d]
                s += t * t
            if s < best:
                best = s
                arg = k
        assign[i] = arg
        dist[i] = best
    return assign, dist


@numba.njit(parallel=True, cache=True)
def _area_costs_nb(x, members, starts, area_of):  # pragma: no cover - numba
    """cost[p] = sum of Euclidean distances from member p to every member of its area."""
    total = members.shape[0]
    cost = np.empty(total)
    for p in numba.prange(total):
        i = members[p]
        a = area_of[p]
        s = 0.0
        for q in range(starts[a], starts[a + 1]):
            j = members[q]
            acc = 0.0
            for d in range(x.shape[1]):
                t = np.float64(x[i, d]) - np.float64(x[j, d])
                acc += t * t
            s += np.sqrt(acc)
        cost[p] = s
    return cost


def _numba_assign(x, centres):
    return _assign_nb(x, np.ascontiguousarray(centres, dtype=np.float64))


def _numba_costs(x, members, starts):
    counts = np.diff(starts)
    area_of = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    return _area_costs_nb(x, members, starts, area_of)


# ------------------------------------------------------------------ torch

def _wd(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _torch_assign(x: torch.Tensor, centres: torch.Tensor):
    wd = _wd(x)
    c = centres.to(wd)
    n = x.shape[0]
    step = max(1, _TORCH_BLOCK // max(c.shape[0], 1))
    assign = torch.empty(n, dtype=torch.int64, device=x.device)
    dist = torch.empty(n, dtype=wd, device=x.device)
    for s in range(0, n, step):
        d = torch.cdist(x[s:s + step].to(wd), c,
                        compute_mode="donot_use_mm_for_euclid_dist").pow(2)
        v, a = d.min(1)  # first minimum: ties go to the lowest centre
        assign[s:s + step] = a
        dist[s:s + step] = v
    return assign, dist


def _torch_costs(x: torch.Tensor, members: torch.Tensor, starts: list[int]):
    wd = _wd(x)
    cost = torch.empty(members.numel(), dtype=wd, device=x.device)
    for a in range(len(starts) - 1):
        lo, hi = starts[a], starts[a + 1]
        if hi == lo:
            continue
        pts = x[members[lo:hi]].to(wd)
        step = max(1, _TORCH_BLOCK // (hi - lo))
        for s in range(0, hi - lo, step):
            cost[lo + s:min(hi, lo + s + step)] = torch.cdist(
                pts[s:s + step], pts, compute_mode="donot_use_mm_for_euclid_dist").sum(1)
    return cost


# ------------------------------------------------------------------ driver

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
        c = np.where(ok, cost[lo:hi], np.inf)
        best = c.min()
        # members are sorted by index, so the first minimum is the lowest index
        new[a] = mem[int(np.flatnonzero(c == best)[0])]
    return new


def refine_medoids(features, selected, *, labeled=None, labeled_features=None,
                   steps: int = 2, backend: str = "auto", validate: bool = True):
    """Move each selected centre to the medoid of its coverage area (see the module).

    Args:
        features: ``(N, D)`` float pool (numpy or a tensor on any device).
        selected: ``(B,)`` distinct indices into ``features`` (the greedy's picks),
            none of them labeled.
        labeled: ``(M,)`` in-pool labeled indices: fixed centres, never picked.
        labeled_features: ``(L, D)`` labeled points outside the pool: fixed centres.
        steps: at most this many assign + medoid steps (>= 0).
        backend: ``"auto"`` (numba on CPU, torch otherwise), ``"numba"``, ``"torch"``.
        validate: scan for NaN/inf.

    Returns:
        ``(indices (B,) int64, ard (B,) float64)``: the refined centres (the
        ``i``-th replaces ``selected[i]``) and the average radial distance
        (mean Euclidean distance, Eq. 4) of each one's coverage area after the
        last step, in the input's kind and device.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])
        >>> idx, ard = refine_medoids(x, [0, 4])
        >>> idx.tolist(), ard.tolist()
        ([1, 4], [1.0, 0.0])
    """
    is_numpy = isinstance(features, np.ndarray)
    x, _, lab, lf, _ = V.check_pool(features, None, labeled, labeled_features, None,
                                    validate=validate)
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
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    name = ("torch" if dev.type != "cpu" else "numba") if backend == "auto" else backend
    b = len(sel)
    if b == 0:
        empty = np.zeros(0, dtype=np.int64), np.zeros(0)
        return empty if is_numpy else tuple(torch.from_numpy(e).to(dev) for e in empty)

    if name == "numba":
        xn = x.detach().cpu().numpy()
        if xn.dtype not in (np.float32, np.float64):
            xn = xn.astype(np.float32)
        xn = np.ascontiguousarray(xn)
        fixed = np.concatenate([xn[labn].astype(np.float64),
                                lf.detach().cpu().numpy().astype(np.float64)])

        def assign_fn(cur):
            a, d = _numba_assign(xn, np.concatenate([fixed, xn[cur].astype(np.float64)]))
            return a, d

        def cost_fn(members, starts):
            return _numba_costs(xn, members, starts)
    else:
        xt = x if x.is_floating_point() and x.dtype != torch.float16 else x.float()
        fixed_t = torch.cat([xt[lab].to(_wd(xt)), lf.to(_wd(xt))])

        def assign_fn(cur):
            c = torch.cat([fixed_t, xt[torch.from_numpy(cur).to(dev)].to(_wd(xt))])
            a, d = _torch_assign(xt, c)
            return a.cpu().numpy(), d.double().cpu().numpy()

        def cost_fn(members, starts):
            return _torch_costs(xt, torch.from_numpy(members).to(dev),
                                starts.tolist()).double().cpu().numpy()

    n_fixed = len(labn) + lf.shape[0]
    allowed = np.ones(n, dtype=bool)
    allowed[labn] = False
    cur = sel.copy()
    assign, dist = assign_fn(cur)
    for _ in range(steps):
        area = assign - n_fixed  # area of picked centre a, or < 0 for fixed centres
        inside = np.flatnonzero(area >= 0)
        order = inside[np.argsort(area[inside], kind="stable")]  # sorted by index per area
        starts = np.searchsorted(area[order], np.arange(b + 1)).astype(np.int64)
        is_centre = np.zeros(n, dtype=bool)
        is_centre[cur] = True
        cost = cost_fn(order.astype(np.int64), starts)
        new = _medoid_step(cost, order, starts, allowed & ~is_centre, cur)
        if np.array_equal(new, cur):
            break
        cur = new
        assign, dist = assign_fn(cur)
    area = assign - n_fixed
    inside = area >= 0
    total = np.bincount(area[inside], weights=np.sqrt(dist[inside]), minlength=b)
    count = np.bincount(area[inside], minlength=b)
    ard = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    if is_numpy:
        return cur, ard
    return torch.from_numpy(cur).to(dev), torch.from_numpy(ard).to(dev)


def _call_select(sampler, features, budget, kwargs):
    params = inspect.signature(sampler.select).parameters
    return sampler.select(features, budget, **{k: v for k, v in kwargs.items()
                                               if k in params and (v is not None
                                                                   or k == "densities")})


class KMedoidsRefinement:
    """Any greedy sampler followed by k-medoids steps inside its coverage areas
    (beyond the paper; see :func:`refine_medoids`).

    The wrapped sampler picks ``budget`` points; each pick is then moved to
    the medoid of its coverage area (Euclidean, exact per area), labeled
    points staying fixed centres. ``densities`` go to the wrapped sampler
    (when it takes them); the refinement itself uses none.

    Args:
        sampler: the greedy to refine; default ``KCenterGreedy(seed=seed)``.
        steps: at most this many assign + medoid steps (2 by default;
            ``docs/benchmarks.md``).
        backend: ``"auto"``, ``"numba"`` (CPU) or ``"torch"`` (any device).
        seed: seed of the default sampler's first pick.
        validate: scan inputs for NaN/inf.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]], np.float32)
        >>> KMedoidsRefinement().select(x, 1, labeled=[4]).indices.tolist()
        [1]
    """

    def __init__(self, sampler=None, steps: int = 2, backend: str = "auto", seed: int = 0,
                 validate: bool = True):
        from .samplers import KCenterGreedy

        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
        self.seed = V.check_int(seed, "seed")
        self.sampler = KCenterGreedy(seed=self.seed) if sampler is None else sampler
        if not callable(getattr(self.sampler, "select", None)):
            raise TypeError("sampler must have a select method; got "
                            f"{type(self.sampler).__name__}")
        self.steps = V.check_int(steps, "steps", minimum=0)
        self.backend = backend
        self.validate = bool(validate)

    def __repr__(self) -> str:
        return (f"KMedoidsRefinement(sampler={self.sampler!r}, steps={self.steps}, "
                f"backend={self.backend!r})")

    def select(self, features, budget: int, *, densities=None, labeled=None,
               labeled_features=None, labeled_densities=None, init=None) -> Selection:
        """Pick ``budget`` points with the wrapped sampler, then refine them.

        Args:
            features: ``(N, D)`` float features.
            budget: number of picks.
            densities: ``(N,)`` > 0, passed to the wrapped sampler when it takes them.
            labeled: ``(M,)`` in-pool labeled indices (fixed centres, never returned).
            labeled_features: ``(L, D)`` labeled points outside the pool (fixed centres).
            labeled_densities: ``(L,)``, passed to the wrapped sampler.
            init: passed to the wrapped sampler.

        Returns:
            :class:`~densecore.Selection`: refined indices (the ``i``-th
            replaces the sampler's ``i``-th pick); ``radii`` ``(budget,)``
            float64 are the average radial distances (Euclidean, Eq. 4) of
            their coverage areas after refinement.
        """
        base = _call_select(self.sampler, features, budget,
                            {"densities": densities, "labeled": labeled,
                             "labeled_features": labeled_features,
                             "labeled_densities": labeled_densities, "init": init})
        idx, ard = refine_medoids(features, base.indices, labeled=labeled,
                                  labeled_features=labeled_features, steps=self.steps,
                                  backend=self.backend, validate=False)
        return Selection(idx, ard)
