"""The one farthest-first selection behind every sampler (Algorithm 1).

``r_t = min_{k in s} ||f_t - f_k||_2^2 / d_k`` over the labeled and already
picked points; each step picks ``argmax r`` among points neither labeled nor
picked (ties go to the lowest index) and lowers ``r`` with the new point.
k-center greedy is the special case where every density is 1.

Engines (chosen through :data:`ENGINES`; one module each, one interface:
``Engine(x, dens, centres, cdens, excluded, max_new)``, ``best()``,
``row(u)``, ``add_centre(vec, u)``, ``run(k, out_idx, out_r, first)``):

* ``"numba"``: CPU, parallel, exact coverage-area pruning with a dense
  hand-over (``_backends/numba_backend.py``).
* ``"torch"``: any device, one fused distance pass per pick, no host sync.
* ``"triton"``: CUDA (or CPU tensors under ``TRITON_INTERPRET=1``), two
  kernel launches per pick for a whole batch of pools, squared distances in
  float64 (``_backends/triton_backend.py``; :func:`densecore.batch.farthest_first_batch`).
* ``"auto"``: numba for CPU inputs; on CUDA triton where it imports, else torch.
  The CPU choice is set by ``benchmarks/speed.py``: at n=100,000, D=64, budget
  1,000 the pruned numba engine is several times faster than the torch loop on
  CPU. The CUDA choice follows from the launch count (2 per pick against about
  25); no GPU timing of the triton engine has been made yet
  (``benchmarks/gpu_check.py`` measures it).

The initial ``r`` against the labeled set comes from the one nearest-centre
search (``_backends/nearest.py``). :func:`prepare` (checks, scaling, excluded
mask, labeled centres, seeded first pick) and :func:`finish` (result wrapper)
are shared with :mod:`densecore.distributed`.

Hostile numbers: features whose magnitude would overflow or underflow squared
distances in their dtype are multiplied by a power of two (exact), densities
are scaled so the largest is in [1, 2) (exact) and kept in float64; ``r``
values that still leave the float64 range raise ``ValueError``. Distances are
always computed from coordinate differences, so large offsets do not cancel.
The rule is one for every sampler and search (``_backends/nearest.py``,
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
import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import metrics as M
from . import validation as V
from ._backends import nearest as NS

log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "ENGINES", "InvalidSelectionError", "Selection", "farthest_first"]


def _numba_engine():
    from ._backends.numba_backend import Engine

    return Engine


def _torch_engine():
    from ._backends.torch_backend import Engine

    return Engine


def _triton_engine():
    try:
        from ._backends.triton_backend import Engine
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ImportError("backend 'triton' needs triton (it comes with torch's CUDA wheels; "
                          "else pip install triton)") from e
    return Engine


# name -> engine class (imported lazily). A new backend is one module and one entry here.
ENGINES = {"numba": _numba_engine, "torch": _torch_engine, "triton": _triton_engine}
BACKENDS = ("auto", *ENGINES)

# Features and densities follow the one scaling rule of _backends/nearest.py
# (pow2_scale); the densities' ratio is bounded so that r = distance / density
# (distances below 2^100 after feature scaling) stays inside float64.
_MAX_DENSITY_RATIO = 2.0 ** 900


class InvalidSelectionError(ValueError):
    """An engine returned an index outside ``[0, N)`` (a non-finite ``r`` that the
    checks did not catch): raised instead of returning a wrong selection."""


@dataclass(frozen=True)
class Selection:
    """Result of a greedy selection.

    Attributes:
        indices: ``(budget,)`` int64 indices into ``features`` in selection order.
            numpy when ``features`` was numpy, else a tensor on its device.
        radii: ``(budget,)`` the value ``r_u`` (squared Euclidean distance to the
            nearest labeled point divided by that point's density) at the moment
            ``u`` was picked; non-increasing. ``inf`` for a first pick made when
            nothing was labeled. In the features' dtype (float32 for 16-bit
            features), so values beyond that dtype's range read ``inf``.
    """

    indices: Any
    radii: Any

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        """A few values, the shapes and dtypes (never whole arrays).

        Example:
            >>> import numpy as np
            >>> Selection(np.array([4, 0, 9, 2]), np.array([np.inf, 2.5, 1.0, 0.25]))
            Selection(4 picks, indices=[4, 0, 9, ...] (4,) int64, radii=[inf, 2.5, 1, ...] (4,) float64)
        """
        from ._summary import array_summary

        return (f"Selection({len(self)} picks, indices={array_summary(self.indices)}, "
                f"radii={array_summary(self.radii)})")


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


def pick_engine(backend: str, device: torch.device) -> str:
    """The engine name for ``backend`` and the features' device."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    if backend == "auto":
        if device.type == "cpu":
            return "numba"
        # CUDA: the fused triton engine where triton imports (two launches per pick
        # against about 25 for the torch loop; not timed here: benchmarks/gpu_check.py)
        return "triton" if device.type == "cuda" and _has_triton() else "torch"
    if backend == "numba" and device.type != "cpu":
        log.info("numba backend: copying features from %s to the host", device)
    return backend


def _has_triton() -> bool:
    import importlib.util

    return importlib.util.find_spec("triton") is not None


def check(features, densities=None, labeled=None, labeled_features=None,
          labeled_densities=None, *, backend: str = "auto", name: str = "features",
          validate: bool = True) -> Pool:
    """Check one pool's inputs (Algorithm 1) and resolve the engine."""
    is_numpy = isinstance(features, np.ndarray)
    x, dens, lab, lf, ld = V.check_pool(features, densities, labeled, labeled_features,
                                        labeled_densities, name=name, validate=validate)
    return Pool(x.detach(), None if dens is None else dens.detach(), lab, lf.detach(),
                None if ld is None else ld.detach(), pick_engine(backend, x.device), is_numpy)


def scales(stats, dtype: torch.dtype) -> tuple[float, float]:
    """Powers of two ``(fscale, dscale)`` for features and densities: the one scaling
    rule (:func:`densecore._backends.nearest.pow2_scale`).

    ``fscale`` is 1 unless ``max |feature|`` lies outside the range where squared
    distances are safe in the compute dtype (float32 for 16-bit and float32
    features); then it brings the largest magnitude into [1, 2). ``dscale`` is 1
    unless the largest density lies outside [2^-60, 2^60]; then it brings it into
    [1, 2) (subnormal densities: as close as float64 allows). Both are exact; the
    argmax decisions do not change. Accuracy is relative to the largest magnitude:
    squared distances below a rounding of ``max |feature|^2`` in the compute dtype
    are not resolved (they were not in the input's own arithmetic either).
    """
    big, dmax, dmin = stats
    fscale = NS.pow2_scale(big, NS.SAFE_EXP[torch.float64 if dtype == torch.float64
                                            else torch.float32])
    if dmax == 0:  # no densities (k-center greedy) or an empty pool
        return fscale, 1.0
    if dmax / dmin > _MAX_DENSITY_RATIO:
        raise ValueError(f"densities must span at most a factor 2^900 (r = distance / density "
                         f"must stay finite in float64); got max {dmax:.3g} and min {dmin:.3g}")
    return fscale, NS.pow2_scale(dmax, NS.DENSITY_EXP)


def _engine_features(t: torch.Tensor, engine: str, fscale: float) -> torch.Tensor:
    """Features as the engine takes them: numba a CPU float32/float64 tensor; torch keeps
    the device and 16-bit storage on CUDA (float32 on the CPU); triton keeps both."""
    if engine == "numba":
        t = t.cpu()
    if t.dtype not in (torch.float32, torch.float64) and (
            engine == "numba" or (t.device.type == "cpu" and engine != "triton")):
        t = t.float()
    if fscale != 1.0:
        t = NS.mul_pow2(t, NS.pow2_exp(fscale))  # a power of two: exact
    return t


def prepare(pool: Pool, fscale: float, dscale: float, centres=None, cdens=None) -> dict:
    """Engine inputs of one pool: scaled features and float64 densities, the excluded
    mask, and the labeled centres (this pool's unless ``centres``/``cdens`` are given,
    already scaled, as the sharded selection does)."""
    x = _engine_features(pool.x, pool.engine, fscale)
    n, dev = x.shape[0], x.device
    dens = (torch.ones(n, dtype=torch.float64, device=dev) if pool.dens is None
            else pool.dens.to(dev, torch.float64))
    if dscale != 1.0 and pool.dens is not None:
        dens = dens * dscale
    excluded = torch.zeros(n, dtype=torch.bool, device=dev)
    excluded[pool.lab.to(dev)] = True
    if centres is None:
        centres, cdens = own_centres(pool, fscale, dscale)
    return {"x": x, "dens": dens, "centres": centres.to(dev, x.dtype),
            "cdens": cdens.to(dev), "excluded": excluded}


def own_centres(pool: Pool, fscale: float, dscale: float):
    """This pool's labeled points as scaled centres: ``(L, D)`` float64, ``(L,)`` float64."""
    lab = pool.lab
    c = torch.cat([pool.x[lab].to(torch.float64), pool.lf.to(torch.float64)]) * fscale
    if pool.dens is None:
        cd = torch.ones(c.shape[0], dtype=torch.float64, device=c.device)
    else:
        cd = torch.cat([pool.dens[lab].to(torch.float64), pool.ld.to(torch.float64)]) * dscale
    return c, cd


def first_pick(n: int, n_labeled: int, budget: int, init, seed) -> int:
    """The forced first pick: ``init``, or a seeded draw when nothing is labeled; -1 else."""
    seed = V.check_int(seed, "seed")
    if init is not None:
        init = V.check_index(init, n, "init")
        if n_labeled:
            raise ValueError("init applies only when nothing is labeled; got labeled points "
                             f"and init={init}")
        return init
    if n_labeled == 0 and budget > 0:
        return int(np.random.default_rng(seed).integers(n))
    return -1


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
        radii = NS.mul_pow2(radii, NS.pow2_exp(dscale) - 2 * NS.pow2_exp(fscale))
    out = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    radii = radii.to(out)
    if is_numpy:
        return Selection(idx.cpu().numpy(), radii.cpu().numpy())
    return Selection(idx.to(device), radii.to(device))


def run_engine(engine: str, inputs: dict, budget: int, first: int, progress: bool,
               n_blocks: int = 100, num_threads: int | None = None):
    """Run one engine alone for ``budget`` picks; ``(indices, radii float64)``.

    ``num_threads`` caps the engine's threads for this call (None: numba's and
    torch's settings); inside the cap the engine picks per block of picks."""
    cls = ENGINES[engine]()
    dev = inputs["x"].device
    idx = torch.empty(budget, dtype=torch.int64, device=dev)
    radii = torch.empty(budget, dtype=torch.float64, device=dev)
    if budget == 0:
        return idx, radii
    with progress_bar(progress, budget, f"greedy ({engine})") as bar, \
            cls.threads(num_threads):
        eng = cls(**inputs, max_new=budget)
        step = max(1, math.ceil(budget / n_blocks))
        for done in range(0, budget, step):
            k = min(step, budget - done)
            eng.run(k, idx, radii, first)
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
                   validate: bool = True, num_threads: int | None = None) -> Selection:
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
        backend: ``"auto"``, ``"numba"``, ``"torch"`` or ``"triton"`` (CUDA).
            Sparse features (scipy, or a COO/CSR torch tensor) run on the exact
            sparse engines of :mod:`densecore.sparse`.
        metric: ``"euclidean"`` or ``"cosine"`` (see :mod:`densecore.metrics`):
            cosine runs the engine on unit rows (one normalised copy of the features).
        progress: show a tqdm bar over the picks.
        validate: scan values for NaN/inf and non-positive densities.
        num_threads: most CPU threads for the numba engine (None: the smallest of
            numba's and torch's thread settings and the cores this process may use).
            Within it the engine runs each block of picks on one thread or on all,
            whichever it measures faster (one thread when other processes keep
            the cores busy); the selection does not depend on it.

    Returns:
        :class:`Selection` with ``indices`` and ``radii`` in the input's kind
        (numpy in, numpy out; tensors stay on their device). Radii are squared
        Euclidean distances (cosine distances for ``metric="cosine"``) divided
        by density, in the features' dtype.

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
    if V.is_sparse(features):
        from .sparse import farthest_first_sparse

        return farthest_first_sparse(features, budget, densities=densities, labeled=labeled,
                                     labeled_features=labeled_features,
                                     labeled_densities=labeled_densities, init=init,
                                     seed=seed, backend=backend, metric=metric,
                                     validate=validate)
    job = setup(features, budget, densities, labeled, labeled_features, labeled_densities,
                init=init, seed=seed, backend=backend, metric=metric, validate=validate)
    if num_threads is not None:
        num_threads = V.check_int(num_threads, "num_threads", minimum=1)
    idx, radii = run_engine(job.pool.engine, job.inputs, job.budget, job.first, progress,
                            num_threads=num_threads)
    return job.result(idx, radii)


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

    def result(self, idx: torch.Tensor, radii: torch.Tensor) -> Selection:
        """The engine's picks and float64 radii as the caller's :class:`Selection`."""
        sel = finish(idx, radii, fscale=self.fscale, dscale=self.dscale, first=self.first,
                     dtype=self.pool.x.dtype, is_numpy=self.pool.is_numpy,
                     device=self.pool.x.device, n=self.pool.x.shape[0])
        if self.metric == "cosine":
            sel = Selection(sel.indices, sel.radii * M.radius_factor(self.metric))
        return sel


def setup(features, budget, densities=None, labeled=None, labeled_features=None,
          labeled_densities=None, *, init=None, seed=0, backend="auto",
          metric="euclidean", validate=True) -> Job:
    """Everything :func:`farthest_first` does before the engine runs, for one pool
    (dense features; ``metric`` already checked)."""
    pool = check(features, densities, labeled, labeled_features, labeled_densities,
                 backend=backend, validate=validate)
    if metric == "cosine":
        pool = dataclasses.replace(pool, x=M.unit_rows(pool.x),
                                   lf=M.unit_rows(pool.lf, "labeled_features"))
    n = pool.x.shape[0]
    budget = V.check_budget(budget, n - pool.lab.numel())
    first = first_pick(n, pool.lab.numel() + pool.lf.shape[0], budget, init, seed)
    fscale, dscale = scales(pool.stats(), pool.x.dtype)
    return Job(pool, prepare(pool, fscale, dscale), budget, first, fscale, dscale, metric)
