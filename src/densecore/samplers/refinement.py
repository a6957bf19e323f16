"""The k-medoids refinement of a greedy sampler (beyond the paper): the algorithm
is :func:`densecore.refine.refine_pool`, run on the pool the greedy driver prepared
(for the paper's samplers, the very pool their picks were made on), and the radii
are the driver's (:func:`densecore.greedy.radii_of`).

Shape:
    features ``(N, D)``; ``Selection.indices``, ``radii`` and ``ard`` ``(budget,)``.
"""

from __future__ import annotations

import torch

from .. import engines as E
from .. import greedy as G
from .. import metrics as M
from .. import validation as V
from .._core import Selection, scales
from ..refine import refine_pool
from .paper import KCenterGreedy, _Greedy

__all__ = ["KMedoidsRefinement"]


class KMedoidsRefinement:
    """Any greedy sampler followed by k-medoids steps inside its coverage areas
    (beyond the paper; see :func:`refine_medoids`).

    The wrapped sampler picks ``budget`` points; each pick is then moved to
    the medoid of its coverage area (Euclidean, exact per area), and up to
    ``swaps`` picks are moved into the area of largest ARD while that lowers
    the largest ARD; labeled points stay fixed centres. ``densities`` go to
    the wrapped sampler (when it takes them); the refinement itself uses none.

    Args:
        sampler: the greedy to refine; default ``KCenterGreedy(seed=seed)``.
        steps: at most this many assign + medoid steps (2 by default;
            ``docs/benchmarks.md``).
        swaps: at most this many moves toward the area of largest ARD after
            the medoid steps (64 by default; the search usually stops earlier,
            at the first area no move improves); 0 turns them off.
        tries: picks tried per move.
        backend: None (the wrapped sampler's ``backend``), or a name of the engine
            table or ``"auto"``. The metric is always the wrapped sampler's
            (``metric``, Euclidean when it has none).
        seed: seed of the default sampler's first pick.
        validate: scan inputs for NaN/inf.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]], np.float32)
        >>> KMedoidsRefinement().select(x, 1, labeled=[4]).indices.tolist()
        [1]
    """

    def __init__(self, sampler=None, steps: int = 2, swaps: int = 64, tries: int = 3,
                 backend: str | None = None, seed: int = 0, validate: bool = True):
        self.seed = V.check_int(seed, "seed")
        self.sampler = KCenterGreedy(seed=self.seed) if sampler is None else sampler
        if not callable(getattr(self.sampler, "select", None)):
            raise TypeError("sampler must have a select method; got "
                            f"{type(self.sampler).__name__}")
        self.steps = V.check_int(steps, "steps", minimum=0)
        self.swaps = V.check_int(swaps, "swaps", minimum=0)
        self.tries = V.check_int(tries, "tries", minimum=1)
        # the engine and metric of the wrapped sampler, unless the backend is given
        self.backend = E.check(getattr(self.sampler, "backend", "auto") if backend is None
                               else backend)
        self.metric = M.check_metric(getattr(self.sampler, "metric", "euclidean"))
        self.validate = bool(validate)

    def __repr__(self) -> str:
        return (f"KMedoidsRefinement(sampler={self.sampler!r}, steps={self.steps}, "
                f"swaps={self.swaps}, backend={self.backend!r})")

    def select(self, features, budget: int, *, densities=None, labeled=None,
               labeled_features=None, labeled_densities=None, init=None) -> Selection:
        """Pick ``budget`` points with the wrapped sampler, then refine them.

        Args:
            features: ``(N, D)`` float features.
            budget: number of picks.
            densities: ``(N,)`` > 0 or None, passed to the wrapped sampler (the one sampler
                protocol: a sampler that ignores densities accepts them).
            labeled: ``(M,)`` in-pool labeled indices (fixed centres, never returned).
            labeled_features: ``(L, D)`` labeled points outside the pool (fixed centres).
            labeled_densities: ``(L,)``, passed to the wrapped sampler.
            init: passed to the wrapped sampler.

        Returns:
            :class:`~densecore.Selection`: refined indices (the ``i``-th
            replaces the sampler's ``i``-th pick); ``radii`` ``(budget,)``
            float64 are ``r`` of each refined pick at its turn (as every
            sampler's radii: :func:`~densecore.greedy.radii_of`, with the
            densities when the wrapped sampler divides by them); ``ard``
            ``(budget,)`` float64 the average radial distances (Eq. 4) of their
            coverage areas after refinement.
        """
        divide = getattr(self.sampler, "uses_densities", False) and densities is not None
        kw = {"densities": densities, "labeled": labeled, "labeled_features": labeled_features,
              "labeled_densities": labeled_densities}
        if isinstance(self.sampler, _Greedy):  # the driver's own job: one preparation
            job = self.sampler.job(features, budget, init=init, **kw)
            base = job.run(self.sampler.progress)
            pool, fscale, dscale = job.pool, job.fscale, job.dscale
        else:  # any other sampler: its picks, then the driver prepares the pool once
            base = self.sampler.select(features, budget, init=init, **kw)
            pool = G.check(features, densities if divide else None, labeled,
                           labeled_features, labeled_densities if divide else None,
                           backend=self.backend, metric=self.metric, validate=self.validate)
            fscale, dscale = scales(pool.stats(), pool.dtype)
        engine_name = E.resolve(self.backend, "dense", pool.device)
        idx, ard = refine_pool(pool, fscale, base.indices, engine_name=engine_name,
                               steps=self.steps, swaps=self.swaps, tries=self.tries)
        radii = G.radii_of(pool, fscale, dscale, torch.from_numpy(idx), self.metric)
        if pool.is_numpy:
            return Selection(idx, radii.cpu().numpy(), ard)
        dev = pool.device
        return Selection(torch.from_numpy(idx).to(dev), radii.to(dev),
                         torch.from_numpy(ard).to(dev))
