"""The paper's samplers: k-center greedy and the density-aware greedy (Algorithm 1).

Both call :func:`densecore.greedy.farthest_first`; a test checks they agree.
They follow the sampler protocol (:class:`densecore.samplers.Sampler`). They
also have ``select_batch(features, lengths, budgets, ...)``: many pools
in one call (:func:`densecore.batch.farthest_first_batch`), which
:func:`densecore.select_pixels` uses for all images of a call.

Shape:
    features ``(N, D)``, densities ``(N,)``; ``Selection.indices`` ``(budget,)``.
"""

from __future__ import annotations

from .. import engines as E
from .._core import Selection, check_int, check_metric
from ..validation import check_storage
from ..batch import farthest_first_batch
from ..greedy import Job, farthest_first, setup

__all__ = ["DensityAwareGreedy", "KCenterGreedy"]


class EngineOptions:
    """The options every sampler on the greedy driver stores: the engine (``backend``),
    ``metric``, the first pick's ``seed``, ``progress``, ``validate`` and the opt-in
    16-bit ``storage`` of the pool, checked."""

    def __init__(self, backend: str = "auto", seed: int = 0, progress: bool = False,
                 validate: bool = True, metric: str = "euclidean", storage=None):
        self.backend = E.check(backend)
        self.metric = check_metric(metric)
        self.seed = check_int(seed, "seed", minimum=0)
        self.progress = bool(progress)
        self.validate = bool(validate)
        check_storage(storage)
        self.storage = storage


class _Greedy(EngineOptions):
    uses_densities = False  # whether Algorithm 1 divides by the centres' densities

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(backend={self.backend!r}, seed={self.seed}, "
                f"progress={self.progress}, metric={self.metric!r}, "
                f"storage={self.storage!r})")

    def _densities(self, densities, labeled_densities):
        """The densities this sampler runs with: ``(densities, labeled_densities)``."""
        return densities, labeled_densities

    def job(self, features, budget: int, *, densities=None, labeled=None,
            labeled_features=None, labeled_densities=None, init=None) -> Job:
        """What ``select`` does before the engine runs: the driver's prepared pool
        (checked, in the metric's geometry, scaled) as a :class:`~densecore.greedy.Job`;
        ``job.run(progress)`` is ``select``'s result. A sampler that wraps this one
        (:class:`~densecore.samplers.KMedoidsRefinement`) works on ``job.pool``
        instead of preparing the inputs again."""
        d, ld = self._densities(densities, labeled_densities)
        return setup(features, budget, d, labeled, labeled_features, ld, init=init,
                     seed=self.seed, backend=self.backend, metric=self.metric,
                     validate=self.validate, storage=self.storage)

    def select_batch(self, features, lengths, budgets, *, densities=None, labeled=None,
                     labeled_features=None, labeled_densities=None, seeds=None) -> list:
        """``select`` on each of P pools concatenated row-wise, in one call.

        Args:
            features: ``(N_total, D)`` float, the pools' rows one after the other.
            lengths: ``(P,)`` rows per pool.
            budgets: picks per pool (an integer or ``(P,)``).
            densities: ``(N_total,)`` or None; labeled: ``(N_total,)`` bool or None.
            labeled_features / labeled_densities: lists of P entries (or None).
            seeds: the first-pick seed of every pool; None: this sampler's seed for all.

        Returns:
            P :class:`~densecore.greedy.Selection` with pool-local indices, equal to
            calling ``select`` pool by pool (:func:`~densecore.batch.farthest_first_batch`).
        """
        d, ld = self._densities(densities, labeled_densities)
        return farthest_first_batch(features, lengths, budgets, densities=d, labeled=labeled,
                                    labeled_features=labeled_features, labeled_densities=ld,
                                    seeds=self.seed if seeds is None else seeds,
                                    backend=self.backend, metric=self.metric,
                                    progress=self.progress, validate=self.validate,
                                    storage=self.storage)


class KCenterGreedy(_Greedy):
    """k-center greedy (farthest-first traversal, Sener & Savarese 2017).

    Algorithm 1 with every density 1: each pick is the point farthest (squared
    Euclidean) from the labeled and already-picked points.

    16-bit storage (opt-in, ``storage="float16"`` or ``"bfloat16"``): the pool's
    features are scaled by the one power-of-two rule (which then also keeps the
    largest value a normal number of that dtype, so float16 cannot overflow or
    flush a pool of tiny values to 0) and rounded once to that dtype; the greedy
    runs on the rounded values, distances still from coordinate differences in
    float32/float64, so the picks are exactly those of this algorithm on the
    rounded pool, and the returned radii are the rounded pool's. Labeled points
    (``labeled`` rows, ``labeled_features``) keep their own precision. What
    changes: candidates whose ``r`` differ by less than the rounding (2^-11 of a
    coordinate's magnitude for float16, 2^-8 for bfloat16) may be ordered
    differently, and from the first such near-tie on the order of the picks
    differs; duplicates still tie (to the lowest index). Measured
    (``benchmarks/storage16.py``, a 46,000 x 64 ``select_pixels``-like set and a
    Gaussian mixture): float16 keeps 96.9-99.8 % of the float32 picks, the order
    first differs at pick 16-52, and the covering radius of the picks (Eq. 3, on
    the original features) stays within 0.05 % of float32's; bfloat16 keeps
    59-84 %, differs from pick 2-26, and moves the covering radius by -0.14 % to
    +0.4 %. On CUDA the torch and triton engines read half the bytes per pick; on
    the CPU the numba engine widens the stored values to float32 (no speed gain
    there). ``docs/api.md`` ("16-bit storage").

    Args:
        backend: ``"auto"``, ``"numba"`` (CPU), ``"torch"`` (any device) or ``"triton"`` (CUDA).
        seed: seeds the first pick when nothing is labeled and ``init`` is None.
        progress: show a tqdm progress bar.
        validate: check for NaN/inf (a device sync on CUDA).
        metric: ``"euclidean"`` or ``"cosine"`` (:mod:`densecore.metrics`).
        storage: None (default: the features as given), ``"float16"`` or
            ``"bfloat16"``: the pool rounded once to 16 bits (see below).

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0], [10.0], [4.0]], dtype=np.float32)
        >>> KCenterGreedy().select(x, 2, labeled=[0]).indices.tolist()
        [2, 3]
    """

    def _densities(self, densities, labeled_densities):
        return None, None  # accepted and ignored

    def select(self, features, budget: int, *, densities=None, labeled=None,
               labeled_features=None, labeled_densities=None, init=None) -> Selection:
        """Pick ``budget`` points.

        Args:
            features: ``(N, D)`` float features.
            budget: number of picks.
            densities: accepted for the common sampler protocol and ignored.
            labeled: ``(M,)`` in-pool labeled indices (never returned).
            labeled_features: ``(L, D)`` labeled points outside the pool.
            labeled_densities: accepted and ignored, like ``densities``.
            init: first pick when nothing is labeled (None: seeded random).

        Returns:
            :class:`~densecore.greedy.Selection`; radii are squared Euclidean distances.
        """
        return farthest_first(features, budget, labeled=labeled,
                              labeled_features=labeled_features, init=init, seed=self.seed,
                              backend=self.backend, metric=self.metric,
                              progress=self.progress, validate=self.validate,
                              storage=self.storage)


class DensityAwareGreedy(_Greedy):
    """Density-aware greedy, Algorithm 1 of the paper.

    ``r_t = min_k ||f_t - f_k||^2 / d_k``: distances to a selected point are
    divided by its coverage density, so points covered by a dense (small
    average radial distance) selected point look closer, and the greedy
    spends its budget on sparse coverage areas (Eq. 4).

    ``storage`` rounds the features only, as for :class:`KCenterGreedy` (see there);
    densities stay float64. The largest ``r`` of Algorithm 1 over the candidates
    after the picks, measured on the original features, moves by -0.5 % to 0
    with float16 and by +0.6 % to +1.6 % with bfloat16 (``benchmarks/storage16.py``).

    Args:
        backend: ``"auto"``, ``"numba"`` (CPU), ``"torch"`` (any device) or ``"triton"`` (CUDA).
        seed: seeds the first pick when nothing is labeled and ``init`` is None.
        progress: show a tqdm progress bar.
        validate: check for NaN/inf and non-positive densities.
        metric: ``"euclidean"`` or ``"cosine"`` (:mod:`densecore.metrics`).
        storage: None (default: the features as given), ``"float16"`` or
            ``"bfloat16"``: the pool rounded once to 16 bits (see below).

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0], [10.0], [4.0]], dtype=np.float32)
        >>> d = np.array([1.0, 1.0, 1.0, 1.0])
        >>> DensityAwareGreedy().select(x, 1, densities=d, labeled=[0]).indices.tolist()
        [2]
    """

    uses_densities = True

    def _densities(self, densities, labeled_densities):
        if densities is None:
            raise ValueError("densities is required for DensityAwareGreedy; "
                             "use KCenterGreedy for plain k-center greedy")
        return densities, labeled_densities

    def select(self, features, budget: int, *, densities=None, labeled=None,
               labeled_features=None, labeled_densities=None, init=None) -> Selection:
        """Pick ``budget`` points.

        Args:
            features: ``(N, D)`` float features.
            budget: number of picks.
            densities: ``(N,)`` strictly positive coverage densities.
            labeled: ``(M,)`` in-pool labeled indices (never returned).
            labeled_features: ``(L, D)`` labeled points outside the pool.
            labeled_densities: ``(L,)`` their densities.
            init: first pick when nothing is labeled (None: seeded random).

        Returns:
            :class:`~densecore.greedy.Selection`; radii are squared Euclidean
            distance divided by density.
        """
        self._densities(densities, labeled_densities)
        return farthest_first(features, budget, densities=densities, labeled=labeled,
                              labeled_features=labeled_features,
                              labeled_densities=labeled_densities, init=init,
                              seed=self.seed, backend=self.backend, metric=self.metric,
                              progress=self.progress, validate=self.validate,
                              storage=self.storage)
