"""The one farthest-first engine behind both samplers (Algorithm 1).

``r_t = min_{k in s} ||f_t - f_k||_2^2 / d_k`` over the labeled and already
picked points; each step picks ``argmax r`` among points neither labeled nor
picked (ties go to the lowest index) and lowers ``r`` with the new point.
k-center greedy is the special case where every density is 1.

Backends (chosen through ``_BACKENDS``):

* ``"numba"``: CPU, parallel, exact coverage-area pruning
  (``_backends/numba_backend.py``); the nearest labeled point of every
  candidate comes from faiss when the labeled set is large.
* ``"torch"``: any device, one matrix-vector product per pick, no host sync.
* ``"auto"``: numba for CPU inputs, torch for CUDA tensors. The CPU choice is
  set by ``benchmarks/speed.py``: at n=100,000, D=64, budget 1,000 the pruned
  numba engine is several times faster than the torch loop on CPU.

Shape:
    features ``(N, D)``, densities ``(N,)``, labeled ``(M,)``,
    labeled_features ``(L, D)``, labeled_densities ``(L,)``;
    result indices ``(budget,)`` int64, radii ``(budget,)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from . import metrics as M
from . import validation as V
from ._backends import faiss_backend, torch_backend

log = logging.getLogger(__name__)

__all__ = ["Selection", "farthest_first", "BACKENDS"]

BACKENDS = ("auto", "numba", "torch")

# From this many labeled points on, the numba backend finds each point's nearest
# labeled point with faiss (exact flat search; the value is then recomputed from
# differences). Measured on 100,000 x 64 points, 2 cores: numba 0.035 s vs faiss
# 0.035 s at 64 labeled, 0.13 vs 0.10 s at 256, 0.68 vs 0.38 s at 2,000.
_FAISS_MIN_LABELED = 256


@dataclass(frozen=True)
class Selection:
    """Result of a greedy selection.

    Attributes:
        indices: ``(budget,)`` int64 indices into ``features`` in selection order.
            numpy when ``features`` was numpy, else a tensor on its device.
        radii: ``(budget,)`` the value ``r_u`` (squared Euclidean distance to the
            nearest labeled point divided by that point's density) at the moment
            ``u`` was picked; non-increasing. ``inf`` for a first pick made when
            nothing was labeled.
    """

    indices: Any
    radii: Any

    def __len__(self) -> int:
        return len(self.indices)


def _run_numba(x, dens, centres, cdens, excluded, budget, first, progress_cb):
    from ._backends import numba_backend

    xn = x.detach().cpu().numpy()
    if xn.dtype not in (np.float32, np.float64):
        xn = xn.astype(np.float32)
    xn = np.ascontiguousarray(xn)
    n = xn.shape[0]
    dn = (np.ones(n) if dens is None
          else np.ascontiguousarray(dens.detach().cpu().numpy(), dtype=np.float64))
    cn = np.ascontiguousarray(centres.detach().cpu().numpy(), dtype=xn.dtype)
    cdn = (np.ones(len(cn)) if cdens is None
           else np.ascontiguousarray(cdens.detach().cpu().numpy(), dtype=np.float64))
    ex = np.ascontiguousarray(excluded.cpu().numpy())
    assign = None
    if len(cn) >= _FAISS_MIN_LABELED and faiss_backend.available():
        assign, _ = faiss_backend.nearest_scaled(xn, cn, cdn)
    idx, radii = numba_backend.farthest_first(xn, dn, cn, cdn, ex, budget, first,
                                              progress_cb=progress_cb, assign=assign)
    return torch.from_numpy(idx), torch.from_numpy(radii)


def _run_torch(x, dens, centres, cdens, excluded, budget, first, progress_cb):
    if x.dtype in (torch.float16, torch.bfloat16) and x.device.type == "cpu":
        x = x.float()  # half matrix-vector products are slow on the CPU
    return torch_backend.farthest_first(x, dens, centres, cdens, excluded, budget, first,
                                        progress_cb=progress_cb)


_BACKENDS: dict[str, Callable] = {"numba": _run_numba, "torch": _run_torch}


def _pick_backend(backend: str, x: torch.Tensor) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    if backend == "auto":
        return "torch" if x.device.type != "cpu" else "numba"
    if backend == "numba" and x.device.type != "cpu":
        log.info("numba backend: copying features from %s to the host", x.device)
    return backend


def farthest_first(features, budget: int, *, densities=None, labeled=None,
                   labeled_features=None, labeled_densities=None, init=None, seed: int = 0,
                   backend: str = "auto", metric: str = "euclidean", progress: bool = False,
                   validate: bool = True) -> Selection:
    """Algorithm 1 (density-aware greedy); k-center greedy when ``densities`` is None.

    Args:
        features: ``(N, D)`` float array or tensor (any device).
        budget: number of new points to pick, ``0 <= budget <= N - len(labeled)``.
        densities: ``(N,)`` strictly positive coverage densities, or None (all 1).
        labeled: ``(M,)`` indices into ``features`` that are already labeled.
        labeled_features: ``(L, D)`` labeled points outside the pool.
        labeled_densities: ``(L,)`` their densities (required with ``densities``).
        init: first pick when nothing is labeled; None draws it from ``seed``.
        seed: seed of that draw (a local generator; global RNG untouched).
        backend: ``"auto"``, ``"numba"`` or ``"torch"``. Sparse features (scipy,
            or a COO/CSR torch tensor) run on the exact sparse engines of
            :mod:`densecore.sparse`.
        metric: ``"euclidean"`` or ``"cosine"`` (see :mod:`densecore.metrics`):
            cosine runs the engine on unit rows (one normalised copy of the features).
        progress: show a tqdm bar over the picks.
        validate: scan values for NaN/inf and non-positive densities.

    Returns:
        :class:`Selection` with ``indices`` and ``radii`` in the input's kind
        (numpy in, numpy out; tensors stay on their device). Radii are squared
        Euclidean distances (cosine distances for ``metric="cosine"``) divided
        by density, in the features' dtype.

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
    is_numpy = isinstance(features, np.ndarray)
    x, dens, lab, lf, ld = V.check_pool(features, densities, labeled, labeled_features,
                                        labeled_densities, validate=validate)
    if metric == "cosine":
        x, lf = M.unit_rows(x), M.unit_rows(lf, "labeled_features")
    n, dim = x.shape
    dev = x.device
    budget = V.check_budget(budget, n - lab.numel())
    n_labeled = lab.numel() + lf.shape[0]
    if init is not None:
        init = V.check_index(init, n, "init")
        if n_labeled:
            raise ValueError("init applies only when nothing is labeled; got labeled points "
                             f"and init={init}")
    elif n_labeled == 0 and budget > 0:
        init = int(np.random.default_rng(seed).integers(n))
    name = _pick_backend(backend, x)

    excluded = torch.zeros(n, dtype=torch.bool, device=dev)
    excluded[lab] = True
    centres = torch.cat([x[lab].to(lf.dtype), lf]) if lab.numel() else lf.to(x.dtype)
    cdens = None
    if dens is not None:
        cdens = torch.cat([dens[lab], ld.to(dens.dtype)])

    bar = None
    if progress and budget:
        from tqdm.auto import tqdm

        bar = tqdm(total=budget, desc=f"greedy ({name})", unit="pick")
    try:
        idx, radii = _BACKENDS[name](x, dens, centres, cdens, excluded, budget,
                                     -1 if init is None else init,
                                     None if bar is None else bar.update)
    finally:
        if bar is not None:
            bar.close()
    radii = radii.to(x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32)
    if metric == "cosine":
        radii = radii * M.radius_factor(metric)
    if is_numpy:
        return Selection(idx.cpu().numpy(), radii.cpu().numpy())
    return Selection(idx.to(dev), radii.to(dev))
