"""The one farthest-first selection behind every sampler (Algorithm 1).

``r_t = min_{k in s} ||f_t - f_k||_2^2 / d_k`` over the labeled and already
picked points; each step picks ``argmax r`` among points neither labeled nor
picked (ties go to the lowest index) and lowers ``r`` with the new point.
k-center greedy is the special case where every density is 1.

One driver, engines behind it: the engine is looked up in the one table
(:data:`densecore.engines.ENGINES`, keyed by name and layout; one module
each, every engine a subclass of :class:`densecore.engines.Engine`, whose
class attributes say what it can do: ``Engine(x, dens, centres, cdens,
excluded, max_new)``, ``best()``, ``row(u)``, ``add_centre(vec, u)``,
``run(k, out_idx, out_r)``; the forced first pick is the base class's
``first(u, out_idx, out_r)``). Dense layout:

* ``"numba"``: CPU, parallel, exact coverage-area pruning with a dense
  hand-over (and back); a plain serial loop for small pools (``_backends/numba/``).
* ``"torch"``: any device, one fused distance pass per pick, no host sync.
* ``"triton"``: CUDA (or CPU tensors under ``TRITON_INTERPRET=1``), one
  kernel launch per pick for a whole batch of pools, squared distances in
  float64, certified tile skipping (``_backends/triton_backend.py``;
  :func:`densecore.batch.farthest_first_batch`).
* ``"auto"``: numba for CPU inputs; on CUDA the triton engine once its one-off
  on-device self-check against the float64 reference has passed
  (``_backends/triton_check.py``), else torch with a warning that says why; the
  one rule, :func:`densecore.engines.resolve`.
  The CPU choice is set by ``benchmarks/speed.py``: at n=100,000, D=64, budget
  1,000 the pruned numba engine is several times faster than the torch loop on
  CPU. The CUDA choice follows from the launch count (1 per pick for a whole
  batch against about 25 per pick and image); no GPU timing of the triton engine
  has been made yet (``benchmarks/gpu_check.py`` measures it).

Sparse layout (scipy matrices, COO/CSR torch tensors; :mod:`densecore.sparse`
checks them): numba and torch engines on CSR rows, exact in float64
(``_backends/sparse_backend.py``), behind the same driver, so sparse input has
the progress bar, ``num_threads`` and :func:`densecore.distributed.select`.

The initial ``r`` against the labeled set comes from the one nearest-centre
search (``_backends/nearest.py``). :func:`check`, :func:`prepare` (scaling,
excluded mask, labeled centres), the seeded first pick and :func:`finish`
(result wrapper) are shared with :mod:`densecore.batch` and
:mod:`densecore.distributed`; the checks of options, the first pick and the
scaling rule live in ``densecore._core``.

Hostile numbers: features whose magnitude would overflow or underflow squared
distances in their dtype are multiplied by a power of two (exact), densities
are scaled so the largest is in [1, 2) (exact) and kept in float64; ``r``
values that still leave the float64 range raise ``ValueError``. Distances are
always computed from coordinate differences, so large offsets do not cancel.
The rule is one for every sampler and search (``densecore._core``,
``pow2_scale``), and its scale is one per call: the guarantee is accuracy
*relative to the largest magnitude*. Every pick is the float64 argmax up to a
few roundings of ``max |feature|^2`` in the compute dtype (float32 for 16-bit
and float32 features); a float32 cluster at 1e-25 beside a point at 1 has its
inner distances (1e-50) rounded to 0, as in any float32 computation of them,
so its points tie. Radii come back in original units (``inf`` or 0 where those
leave the output dtype's range).

Shape:
    features ``(N, D)``, densities ``(N,)``, labeled ``(M,)``,
    labeled_features ``(L, D)``, labeled_densities ``(L,)``;
    result indices ``(budget,)`` int64, radii ``(budget,)``.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from . import engines as E
from . import metrics as M
from . import validation as V
from ._core import InvalidSelectionError, Selection, first_pick, mul_pow2, pow2_exp, scales

log = logging.getLogger(__name__)

__all__ = ["InvalidSelectionError", "Selection", "farthest_first"]


@dataclass
class Pool:
    """One process's checked inputs (tensors on the features' device, detached)."""

    x: torch.Tensor
    dens: torch.Tensor | None
    lab: torch.Tensor
    lf: torch.Tensor
    ld: torch.Tensor | None
    engine: str
    is_numpy: bool
    storage: torch.dtype | None = None  # the opt-in 16-bit rounding of the candidates
    layout: ClassVar[str] = "dense"

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @property
    def n_out(self) -> int:
        return self.lf.shape[0]

    @property
    def dim(self) -> int:
        return self.x.shape[1]

    @property
    def device(self) -> torch.device:
        return self.x.device

    @property
    def dtype(self) -> torch.dtype:
        return self.x.dtype

    def stats(self) -> list[float]:
        """``[max |feature|, max density, min density]`` over pool and labeled points
        (``0, inf`` for the densities when there are none, so that ranks combine by
        max/min): what the shared scaling depends on."""
        big, dmax, dmin = 0.0, 0.0, math.inf
        for t in (self.x, self.lf):
            if t.numel():
                lo, hi = V.value_range(t)  # no (N, D) temporary, unlike abs()
                big = max(big, -lo, hi)
        for t in (() if self.dens is None else (self.dens, self.ld)):
            if t.numel():
                lo, hi = V.value_range(t)
                dmin, dmax = min(dmin, lo), max(dmax, hi)
        return [big, dmax, dmin]

    def prepare(self, fscale: float, dscale: float, centres=None, cdens=None) -> dict:
        """Engine inputs (:func:`_prepare_dense`)."""
        return _prepare_dense(self, fscale, dscale, centres, cdens)

    def own_centres(self, fscale: float, dscale: float):
        """Scaled labeled centres (:func:`_own_centres_dense`)."""
        return _own_centres_dense(self, fscale, dscale)


def check(features, densities=None, labeled=None, labeled_features=None,
          labeled_densities=None, *, backend: str = "auto", metric: str = "euclidean",
          name: str = "features", validate: bool = True, storage=None):
    """Check one pool's inputs (Algorithm 1), resolve the engine in the one table
    (:func:`densecore.engines.resolve`) and make rows unit for ``metric="cosine"``:
    a :class:`Pool`, or a :class:`densecore.sparse.SparsePool` for sparse features
    (the same methods). ``storage``: None, ``"float16"`` or ``"bfloat16"``
    (:func:`densecore.validation.check_storage`; dense features only)."""
    store = V.check_storage(storage)
    if V.is_sparse(features):
        if store is not None:
            raise ValueError(f"storage applies to dense features (sparse rows are computed "
                             f"exactly in float64); got storage={storage!r} with sparse "
                             "features")
        from .sparse import check_sparse

        return check_sparse(features, densities, labeled, labeled_features,
                            labeled_densities, backend=backend, metric=metric,
                            validate=validate)
    is_numpy = isinstance(features, np.ndarray)
    x, dens, lab, lf, ld = V.check_pool(features, densities, labeled, labeled_features,
                                        labeled_densities, name=name, validate=validate)
    x, lf = x.detach(), lf.detach()
    engine = E.resolve(backend, "dense", x.device)
    if x.device.type != "cpu" and E.engine(engine).host:
        log.info("%s backend: copying features from %s to the host", engine, x.device)
    if metric == "cosine":
        x, lf = M.unit_rows(x), M.unit_rows(lf, "labeled_features")
    return Pool(x, None if dens is None else dens.detach(), lab, lf,
                None if ld is None else ld.detach(), engine, is_numpy, store)


def _engine_features(t: torch.Tensor, engine: str, fscale: float,
                     storage: torch.dtype | None = None) -> torch.Tensor:
    """Features as the engine takes them (its class attributes): a ``host`` engine a CPU
    float32/float64 tensor; others keep the device, and 16-bit storage off the CPU
    (on the CPU too with ``half_on_cpu``).

    With a 16-bit ``storage`` the features are first scaled (exact; ``fscale`` then
    comes from that dtype's limits, :func:`densecore._core.scales`) and then rounded
    once to ``storage``: the engine runs on those values (a host engine widened back
    to float32, exactly)."""
    cls = E.engine(engine)
    if cls.host:
        t = t.cpu()
    if storage is not None and (t.dtype != storage or fscale != 1.0):
        if t.dtype not in (torch.float32, torch.float64):
            t = t.float()  # exact
        t = mul_pow2(t, pow2_exp(fscale)).to(storage)  # a power of two, then one rounding
        fscale = 1.0
    if t.dtype not in (torch.float32, torch.float64) and (
            cls.host or (t.device.type == "cpu" and not cls.half_on_cpu)):
        t = t.float()
    if fscale != 1.0:
        t = mul_pow2(t, pow2_exp(fscale))  # a power of two: exact
    return t


def prepare(pool, fscale: float, dscale: float, centres=None, cdens=None) -> dict:
    """Engine inputs of one pool (dense or sparse: ``pool.prepare``)."""
    return pool.prepare(fscale, dscale, centres, cdens)


def dense_centres(pool, fscale: float, dscale: float):
    """This pool's scaled centres as dense CPU tensors ``((L, D), (L,))`` float64 (what
    a sharded selection gathers), for either layout."""
    c, cd = pool.own_centres(fscale, dscale)
    if pool.layout == "sparse":
        ip, ix, dx, dim = c
        rows = np.repeat(np.arange(len(ip) - 1), np.diff(ip))
        dense = torch.zeros((len(ip) - 1, dim), dtype=torch.float64)
        dense[torch.from_numpy(rows), torch.from_numpy(ix)] = torch.from_numpy(dx)
        return dense, torch.as_tensor(cd, dtype=torch.float64)
    return c.cpu(), cd.cpu()


def _prepare_dense(pool: Pool, fscale: float, dscale: float, centres=None, cdens=None) -> dict:
    """Engine inputs of one dense pool: scaled features and float64 densities, the
    excluded mask, and the labeled centres (this pool's unless ``centres``/``cdens``
    are given, already scaled, as the sharded selection does)."""
    x = _engine_features(pool.x, pool.engine, fscale, pool.storage)
    n, dev = x.shape[0], x.device
    dens = (torch.ones(n, dtype=torch.float64, device=dev) if pool.dens is None
            else pool.dens.to(dev, torch.float64))
    if dscale != 1.0 and pool.dens is not None:
        dens = dens * dscale
    excluded = torch.zeros(n, dtype=torch.bool, device=dev)
    excluded[pool.lab.to(dev)] = True
    if centres is None:
        centres, cdens = _own_centres_dense(pool, fscale, dscale)
    return {"x": x, "dens": dens, "centres": _labeled_centres(centres.to(dev), x.dtype),
            "cdens": cdens.to(dev), "excluded": excluded}


def _labeled_centres(centres: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The labeled centres ``(L, D)`` in the engine's feature ``dtype`` where that is
    exact, else kept as they are (float64): labeled points keep their own, wider
    precision; the pool's storage dtype never rounds them (a bfloat16 pool beside a
    labeled point at 1.001 would see it at 1.0 and pick the wrong point)."""
    if centres.dtype == dtype or not centres.numel():
        return centres.to(dtype)
    narrow = centres.to(dtype)
    return narrow if torch.equal(narrow.to(centres.dtype), centres) else centres


def _own_centres_dense(pool: Pool, fscale: float, dscale: float):
    """This pool's labeled points as scaled centres: ``(L, D)`` float64, ``(L,)`` float64."""
    lab = pool.lab
    c = torch.cat([pool.x[lab].to(torch.float64), pool.lf.to(torch.float64)]) * fscale
    if pool.dens is None:
        cd = torch.ones(c.shape[0], dtype=torch.float64, device=c.device)
    else:
        cd = torch.cat([pool.dens[lab].to(torch.float64), pool.ld.to(torch.float64)]) * dscale
    return c, cd


def finish(idx: torch.Tensor, radii: torch.Tensor, *, fscale: float, dscale: float,
           first: int, dtype: torch.dtype, is_numpy: bool, device, n: int | None = None
           ) -> Selection:
    """Check the engine's picks and radii, undo the scaling and wrap the result.

    ``n`` is the pool size (None: not checked from above).

    Raises:
        InvalidSelectionError: an index is negative or ``>= n``.
        ValueError: when a picked ``r`` is not finite (NaN/inf that ``validate=False``
            let through, or a float64 overflow), instead of a wrong selection.
    """
    if idx.numel():
        lo, hi = (int(v) for v in torch.aminmax(idx))
        if lo < 0 or (n is not None and hi >= n):
            bad = lo if lo < 0 else hi
            raise InvalidSelectionError(
                f"the engine returned index {bad} for a pool of {n} points (a non-finite "
                "r = distance / density); no selection is returned")
    radii = radii.to(torch.float64)
    check = radii[1:] if first >= 0 else radii
    if check.numel() and not bool(torch.isfinite(check).all()):
        i = int((~torch.isfinite(check)).nonzero()[0, 0]) + (1 if first >= 0 else 0)
        raise ValueError(f"r = distance / density is not finite at pick {i}: non-finite "
                         "features or densities (with validate=False), or densities whose "
                         "range overflows float64; no selection is returned")
    if fscale != 1.0 or dscale != 1.0:  # exponents, never fscale ** 2 (overflows)
        radii = mul_pow2(radii, pow2_exp(dscale) - 2 * pow2_exp(fscale))
    out = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    radii = radii.to(out)
    if is_numpy:
        return Selection(idx.cpu().numpy(), radii.cpu().numpy())
    return Selection(idx.to(device), radii.to(device))


def run_engine(engine: str, inputs: dict, budget: int, first: int, progress: bool,
               n_blocks: int = 100, num_threads: int | None = None, layout: str = "dense"):
    """Run one engine of the table alone for ``budget`` picks; ``(indices, radii float64)``.

    ``num_threads`` caps the engine's threads for this call (None: numba's and
    torch's settings); inside the cap the engine picks per block of picks."""
    cls = E.engine(engine, layout)
    dev = inputs["dens"].device if isinstance(inputs["dens"], torch.Tensor) \
        else torch.device("cpu")
    idx = torch.empty(budget, dtype=torch.int64, device=dev)
    radii = torch.empty(budget, dtype=torch.float64, device=dev)
    if budget == 0:
        return idx, radii
    with progress_bar(progress, budget, f"greedy ({engine})") as bar, \
            cls.threads(num_threads):
        eng = cls(**inputs, max_new=budget)
        start = 0
        if first >= 0:  # the forced first pick, once, through the engine's add_centre
            eng.first(first, idx, radii)
            start = 1
            if bar is not None:
                bar.update(1)
        # blocks only for the progress bar: an engine runs its picks in its own windows
        step = budget if bar is None else max(1, math.ceil(budget / n_blocks))
        for done in range(start, budget, step):
            k = min(step, budget - done)
            eng.run(k, idx, radii)
            if bar is not None:
                bar.update(k)
    return idx, radii


@contextmanager
def progress_bar(show: bool, total: int, desc: str):
    """A tqdm bar over ``total`` picks when ``show`` (and there is work), else None."""
    if not (show and total):
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="pick")
    try:
        yield bar
    finally:
        bar.close()


def farthest_first(features, budget: int, *, densities=None, labeled=None,
                   labeled_features=None, labeled_densities=None, init=None, seed: int = 0,
                   backend: str = "auto", metric: str = "euclidean", progress: bool = False,
                   validate: bool = True, num_threads: int | None = None,
                   storage: str | None = None) -> Selection:
    """Algorithm 1 (density-aware greedy); k-center greedy when ``densities`` is None.

    Args:
        features: ``(N, D)`` float array or tensor (any device), ``D >= 1``.
        budget: number of new points to pick, ``0 <= budget <= N - len(labeled)``.
        densities: ``(N,)`` strictly positive coverage densities, or None (all 1).
        labeled: ``(M,)`` integer indices into ``features`` that are already labeled.
        labeled_features: ``(L, D)`` labeled points outside the pool.
        labeled_densities: ``(L,)`` their densities (required with ``densities``).
        init: first pick when nothing is labeled; None draws it from ``seed``.
        seed: integer seed of that draw (a local generator; global RNG untouched);
            None is rejected (the default is deterministic).
        backend: ``"auto"`` or a name of the engine table
            (:data:`densecore.engines.ENGINES`): ``"numba"``, ``"torch"`` or
            ``"triton"`` (CUDA). Sparse features (scipy, or a COO/CSR torch tensor)
            run on the table's exact sparse engines (``"numba"``, ``"torch"``).
        metric: ``"euclidean"`` or ``"cosine"`` (see :mod:`densecore.metrics`):
            cosine runs the engine on unit rows (one normalised copy of the features).
        progress: show a tqdm bar over the picks.
        validate: scan values for NaN/inf and non-positive densities.
        num_threads: most CPU threads for the numba engine (None: the smallest of
            numba's and torch's thread settings and the cores this process may use).
            Within it the engine runs each block of picks on one thread or on all,
            whichever it measures faster (one thread when other processes keep
            the cores busy); the selection does not depend on it.
        storage: None (the features as given), or ``"float16"`` / ``"bfloat16"``: the
            pool's features are rounded once to that dtype, after the one scaling rule
            (which then also keeps the largest value a normal number of that dtype:
            float16 cannot overflow), and the greedy runs on those values: the picks
            are those of Algorithm 1 on the rounded pool, distances still computed
            from coordinate differences in float32/float64 on the stored values.
            Labeled points (``labeled`` rows and ``labeled_features``) keep their
            own precision. Half the bytes read per pick on CUDA (torch and triton
            engines); on the CPU the numba engine widens the stored values to
            float32 (no speed gain). See ``docs/api.md`` ("16-bit storage") for how
            the picks change, measured.

    Returns:
        :class:`Selection` with ``indices`` and ``radii`` in the input's kind
        (numpy in, numpy out; tensors stay on their device). Radii are squared
        Euclidean distances (cosine distances for ``metric="cosine"``) divided
        by density, in the features' dtype; with ``storage`` those of the stored
        (rounded) candidates.

    Raises:
        ValueError: bad shapes or values (naming the argument), or densities
            whose ratio makes ``r`` leave the float64 range.
        TypeError: non-floating features, non-integer ``labeled`` or ``seed``,
            meta tensors.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [2.0, 0.0]], np.float32)
        >>> sel = farthest_first(x, 2, init=0)
        >>> sel.indices.tolist(), sel.radii.tolist()
        ([0, 2], [inf, 25.0])
    """
    metric = M.check_metric(metric)
    job = setup(features, budget, densities, labeled, labeled_features, labeled_densities,
                init=init, seed=seed, backend=backend, metric=metric, validate=validate,
                storage=storage)
    if num_threads is not None:
        num_threads = V.check_int(num_threads, "num_threads", minimum=1)
    return job.run(progress, num_threads)


@dataclass
class Job:
    """One pool ready for an engine: checked inputs, the engine's inputs, the budget,
    the forced first pick (-1: none) and the scaling to undo."""

    pool: Pool
    inputs: dict
    budget: int
    first: int
    fscale: float
    dscale: float
    metric: str

    def weigh(self, weights: torch.Tensor) -> None:
        """Give the engine candidate weights ``(N,)`` float64 > 0: it then picks
        ``argmax r * weight`` (the weight hook; typicality). Radii stay ``r``.

        Raises:
            ValueError: naming ``backend`` when the engine takes no weights.
        """
        cls = E.engine(self.pool.engine, self.pool.layout)
        if not cls.weighted:
            raise ValueError(f"backend {self.pool.engine!r} takes no candidate weights for "
                             f"{self.pool.layout} features (the typicality weight hook)")
        if self.pool.dens is not None:
            raise ValueError("candidate weights take centres of density 1; got densities")
        dev = self.inputs["dens"].device
        self.inputs["weights"] = weights.detach().to(dev, torch.float64)

    def run(self, progress: bool = False, num_threads: int | None = None) -> Selection:
        """Run the engine (:func:`run_engine`) and wrap its result (:meth:`result`)."""
        idx, radii = run_engine(self.pool.engine, self.inputs, self.budget, self.first,
                                progress, num_threads=num_threads, layout=self.pool.layout)
        return self.result(idx, radii)

    def result(self, idx: torch.Tensor, radii: torch.Tensor) -> Selection:
        """The engine's picks and float64 radii as the caller's :class:`Selection`."""
        sel = finish(idx, radii, fscale=self.fscale, dscale=self.dscale, first=self.first,
                     dtype=self.pool.dtype, is_numpy=self.pool.is_numpy,
                     device=self.pool.device, n=self.pool.n)
        if self.metric == "cosine":
            sel = Selection(sel.indices, sel.radii * M.radius_factor(self.metric))
        return sel


def setup(features, budget, densities=None, labeled=None, labeled_features=None,
          labeled_densities=None, *, init=None, seed=0, backend="auto",
          metric="euclidean", validate=True, storage=None) -> Job:
    """Everything :func:`farthest_first` does before the engine runs, for one pool
    (dense or sparse features; ``metric`` already checked; ``storage`` as in
    :func:`farthest_first`)."""
    pool = check(features, densities, labeled, labeled_features, labeled_densities,
                 backend=backend, metric=metric, validate=validate, storage=storage)
    n = pool.n
    budget = V.check_budget(budget, n - pool.lab.numel())
    first = first_pick(n, pool.lab.numel() + pool.n_out, budget, init, seed)
    fscale, dscale = scales(pool.stats(), pool.dtype, pool.storage)
    return Job(pool, pool.prepare(fscale, dscale), budget, first, fscale, dscale, metric)


def radii_of(pool, fscale: float, dscale: float, indices: torch.Tensor,
             metric: str = "euclidean") -> torch.Tensor:
    """``r`` of each pick at its turn on a prepared pool: what the greedy engines
    return as radii, for picks made by any sampler (the k-medoids refinement).

    ``r`` of ``indices[i]`` is its squared distance to the nearest labeled point
    (in-pool or outside) or earlier pick, divided by that point's density
    (``inf`` for a first pick with nothing labeled). Computed on the driver's
    geometry: the pool as :func:`check` left it (unit rows for cosine), features
    times ``fscale`` and densities times ``dscale`` (the one scaling rule,
    :func:`densecore._core.scales`), labeled points in float64 (their own
    precision), float64 from coordinate differences; the scales are undone at
    the end by exponent arithmetic, as :func:`finish` does.

    Args:
        pool: a dense :class:`Pool`.
        fscale, dscale: the pool's scales (powers of two).
        indices: ``(B,)`` int64 picks in order, on the pool's device, checked.
        metric: the metric the pool was prepared in (cosine radii are halved).

    Returns:
        ``(B,)`` float64 on the pool's device.

    Raises:
        TypeError: for a sparse pool.
    """
    from ._backends import nearest
    from ._backends.radii import prefix_min

    if pool.layout != "dense":
        raise TypeError("pick radii take dense features; got a sparse pool")
    dev = pool.device
    idx = indices.to(dev)
    p = pool.x[idx].to(torch.float64) * fscale  # a power of two: exact
    c, cd = _own_centres_dense(pool, fscale, dscale)
    pd = (torch.ones(len(idx), dtype=torch.float64, device=dev) if pool.dens is None
          else pool.dens[idx].to(torch.float64) * dscale)
    r = torch.full((len(idx),), math.inf, dtype=torch.float64, device=dev)
    if c.shape[0] and len(idx):
        v, _, ve = nearest.search_scaled(p, c, 1, weights=cd)
        r = mul_pow2(v[:, 0], ve)
    r = prefix_min(p, pd, r)
    r = mul_pow2(r, pow2_exp(dscale) - 2 * pow2_exp(fscale))  # never fscale ** 2
    return r * M.radius_factor(metric)


def pick_radii(features, indices, *, densities=None, labeled=None, labeled_features=None,
               labeled_densities=None, metric: str = "euclidean", validate: bool = True):
    """``r`` of each pick at its turn, as a greedy sampler's radii (:func:`radii_of` on
    the pool :func:`check` prepares).

    Args:
        features: ``(N, D)`` float pool; indices: ``(B,)`` distinct picks in order.
        densities: ``(N,)`` > 0 or None (all 1); labeled: ``(M,)``; labeled_features:
            ``(L, D)``; labeled_densities: ``(L,)`` (with densities).
        metric: ``"euclidean"`` or ``"cosine"``.
        validate: scan for NaN/inf and non-positive densities.

    Returns:
        ``(B,)`` float64 radii, numpy for numpy features, else a tensor on their device.

    Example:
        >>> import numpy as np
        >>> pick_radii(np.array([[0.0], [1.0], [3.0]]), [2, 1], labeled=[0]).tolist()
        [9.0, 1.0]
        >>> d = np.array([1e-200, 1.0, 1.0])  # scaled by a power of two, then unscaled
        >>> pick_radii(np.array([[0.0], [1.0], [3.0]]), [2, 1], densities=d, labeled=[0]).tolist()
        [9e+200, 4.0]
    """
    metric = M.check_metric(metric)
    pool = check(features, densities, labeled, labeled_features, labeled_densities,
                 metric=metric, validate=validate)
    fscale, dscale = scales(pool.stats(), pool.dtype)
    idx = V.check_indices(indices, pool.n, "indices")
    r = radii_of(pool, fscale, dscale, idx, metric)
    return r.cpu().numpy() if pool.is_numpy else r


def coverage_rows(pool, fscale: float, dscale: float, picks: torch.Tensor):
    """``r`` of every pool point before each pick: the values the greedy maximised at
    each step, on the driver's geometry (as :func:`radii_of`).

    Row ``i`` holds, for every point, its squared distance to the nearest labeled
    point (in-pool or outside) or pick among ``picks[:i]``, divided by that point's
    density (``inf`` with none). Float64 from coordinate differences, on the scaled
    features and densities (the one scaling rule): the true values are
    ``rows * 2^e``, so callers unscale after their own map (a square root for plain
    distances, :func:`densecore._backends.nearest.plain_distance`) and stay finite
    where ``r`` itself would not. One pass over the pool per pick.

    Args:
        pool: a dense :class:`Pool`; fscale, dscale: its scales (powers of two).
        picks: ``(B,)`` int64 picks in order, checked.

    Returns:
        ``(rows (B, N) float64 on the pool's device, e int)``.

    Example:
        >>> import numpy as np
        >>> pool = check(np.array([[0.0], [1.0], [3.0]]), labeled=[0])
        >>> rows, e = coverage_rows(pool, 1.0, 1.0, torch.tensor([2]))
        >>> rows.tolist(), e
        ([[0.0, 1.0, 9.0]], 0)
    """
    from ._backends import nearest

    if pool.layout != "dense":
        raise TypeError("coverage rows take dense features; got a sparse pool")
    dev = pool.device
    x = pool.x.to(torch.float64) * fscale  # a power of two: exact
    c, cd = _own_centres_dense(pool, fscale, dscale)
    dens = (torch.ones(pool.n, dtype=torch.float64, device=dev) if pool.dens is None
            else pool.dens.to(torch.float64) * dscale)
    r = torch.full((pool.n,), math.inf, dtype=torch.float64, device=dev)
    if c.shape[0] and pool.n:
        v, _, ve = nearest.search_scaled(x, c, 1, weights=cd)
        r = mul_pow2(v[:, 0], ve)
    picks = picks.to(dev)
    rows = torch.empty((len(picks), pool.n), dtype=torch.float64, device=dev)
    for i in range(len(picks)):
        rows[i] = r
        u = picks[i]
        torch.minimum(r, (x - x[u]).pow_(2).sum(1) / dens[u], out=r)
    return rows, pow2_exp(dscale) - 2 * pow2_exp(fscale)
