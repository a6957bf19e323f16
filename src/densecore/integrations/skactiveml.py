"""scikit-activeml query strategies backed by densecore's greedy.

``CoreSet`` and ``DensityAwareCoreSet`` follow scikit-activeml's conventions
for pool-based, single-annotator strategies, so they drop into an existing
scikit-activeml loop in place of ``skactiveml.pool.CoreSet``:

* ``query(X, y, candidates=None, batch_size=1, return_utilities=False)``;
  ``y`` marks unlabeled samples with ``missing_label`` (``MISSING_LABEL``,
  NaN, by default); labeled samples are the centres the greedy starts from;
* ``candidates`` is None (every unlabeled sample), an index array into ``X``,
  or an ``(n_candidates, n_features)`` array of new samples; the returned
  indices refer to ``X`` in the first two cases and to ``candidates`` in the
  third, as in scikit-activeml;
* ``random_state`` seeds the first pick when nothing is labeled.

Where the conventions differ, densecore's hold: exact ties go to the lowest
index (scikit-activeml breaks them at random), and with nothing labeled the
first pick is drawn uniformly from the candidates by ``random_state`` (so it
is a different random draw). With at least one labeled sample and no exact
ties, ``CoreSet`` selects the same samples as scikit-activeml's ``CoreSet``.

Utilities (``return_utilities=True``): ``(batch_size, n)`` where row ``i``
holds, for every candidate, the value the greedy maximised at step ``i``:
the Euclidean (or cosine) distance to the nearest labeled or already picked
sample for ``CoreSet``, Algorithm 1's ``r = squared distance / density`` for
``DensityAwareCoreSet``; NaN for samples that are not candidates, labeled or
already picked. Computing them costs one pass over the pool per pick, so ask
for them only when needed.

Shape:
    X ``(n_samples, n_features)`` dense (scikit-activeml's checks take no sparse
    input; densecore's samplers do); y ``(n_samples,)``;
    query indices ``(batch_size,)``.
"""

from __future__ import annotations

import numpy as np
import torch

try:
    from skactiveml.base import SingleAnnotatorPoolQueryStrategy
    from skactiveml.utils import MISSING_LABEL, is_labeled
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("densecore.integrations.skactiveml needs scikit-activeml: "
                      "pip install 'densecore-seg[skactiveml]'") from exc

from .. import greedy as G
from .. import metrics as M
from .._backends.nearest import plain_distance
from .._core import mul_pow2, scales
from ..density.knn import KNNDensity
from ..samplers import DensityAwareGreedy, KCenterGreedy
from ..validation import is_sparse

__all__ = ["CoreSet", "DensityAwareCoreSet"]

_CHECK_X = {"allow_nd": False, "dtype": [np.float64, np.float32]}


class _DensecoreStrategy(SingleAnnotatorPoolQueryStrategy):
    def __init__(self, metric="euclidean", backend="auto", missing_label=MISSING_LABEL,
                 random_state=None):
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.metric = metric
        self.backend = backend

    _sampler = KCenterGreedy  # the densecore sampler this strategy is a thin user of

    def _densities(self, X, X_cand):
        return None, None

    def query(self, X, y, candidates=None, batch_size=1, return_utilities=False):
        """Pick ``batch_size`` candidates; see the module docstring for the conventions.

        Args:
            X: ``(n_samples, n_features)`` all samples, labeled and unlabeled.
            y: ``(n_samples,)`` labels, ``missing_label`` where unlabeled.
            candidates: None, ``(n_candidates,)`` int indices into ``X``, or
                ``(n_candidates, n_features)`` new samples.
            batch_size: number of samples to query.
            return_utilities: also return ``(batch_size, n)`` utilities.

        Returns:
            ``query_indices (batch_size,)`` int, and the utilities when asked.
        """
        if is_sparse(X) or is_sparse(candidates):
            raise TypeError("X and candidates must be dense for scikit-activeml's input checks; "
                            "for scipy sparse features call densecore.KCenterGreedy or "
                            "densecore.DensityAwareGreedy directly")
        X, y, candidates, batch_size, return_utilities = self._validate_data(
            X, y, candidates, batch_size, return_utilities, reset=True, check_X_dict=_CHECK_X)
        metric = M.check_metric(self.metric)
        if candidates is None:  # every unlabeled sample: X itself, its labeled rows excluded
            X_cand, mapping = X, np.arange(X.shape[0])  # (no copy of X)
        else:
            X_cand, mapping = self._transform_candidates(candidates, X, y)
        lab = np.flatnonzero(is_labeled(y, missing_label=self.missing_label_))
        dens_x, dens_cand = self._densities(X, X_cand if mapping is None else None)
        if mapping is not None:
            in_pool = np.flatnonzero(is_labeled(y[mapping], missing_label=self.missing_label_))
            outside = np.setdiff1d(lab, mapping[in_pool])
            pool_dens = None if dens_x is None else dens_x[mapping]
        else:
            in_pool = np.empty(0, np.int64)
            outside = lab
            pool_dens = dens_cand
        n_pool = X_cand.shape[0]
        batch_size = min(batch_size, n_pool - len(in_pool))
        init = None
        if len(in_pool) + len(outside) == 0:
            init = int(self.random_state_.randint(n_pool))
        kwargs = {}
        if pool_dens is not None:
            kwargs = {"densities": pool_dens}
            if len(outside):
                kwargs["labeled_densities"] = dens_x[outside]
        # scikit-activeml's checks already rejected NaN/inf features; densities (from a
        # user's callable) are still scanned for positivity
        sampler = self._sampler(backend=self.backend, metric=metric,
                                validate=pool_dens is not None)
        sel = sampler.select(X_cand, batch_size, labeled=in_pool,
                             labeled_features=X[outside] if len(outside) else None,
                             init=init, **kwargs)
        picks = np.asarray(sel.indices, dtype=np.int64)
        query_indices = mapping[picks] if mapping is not None else picks
        if not return_utilities:
            return query_indices
        util = self._utilities(X, X_cand, mapping, in_pool, outside, picks, pool_dens,
                               dens_x, metric, y.shape[0])
        return query_indices, util

    def _utilities(self, X, X_cand, mapping, in_pool, outside, picks, pool_dens, dens_x,
                   metric, n_samples):
        # the values the greedy maximised, read from the library on its own geometry
        # (one validation, one scaling rule), never replayed with separate arithmetic
        pool = G.check(X_cand, pool_dens, in_pool, X[outside] if len(outside) else None,
                       None if pool_dens is None or not len(outside) else dens_x[outside],
                       metric=metric, validate=False)
        fscale, dscale = scales(pool.stats(), pool.dtype)
        rows, e = G.coverage_rows(pool, fscale, dscale, torch.from_numpy(picks))
        if pool_dens is None:  # CoreSet: plain distances, unscaled after the square root
            vals = plain_distance(rows, e, metric).numpy()
        else:  # Algorithm 1's r
            vals = (mul_pow2(rows, e) * M.radius_factor(metric)).numpy()
        taken = np.zeros(pool.n, bool)
        taken[in_pool] = True
        width = n_samples if mapping is not None else pool.n
        util = np.full((len(picks), width), np.nan)
        for i, u in enumerate(picks):
            row = np.where(taken, np.nan, vals[i])
            if mapping is not None:
                util[i, mapping] = row
            else:
                util[i] = row
            taken[u] = True
        return util


class CoreSet(_DensecoreStrategy):
    """Core-set (k-center greedy) query strategy for scikit-activeml, on densecore's engine.

    Args:
        metric: ``"euclidean"`` or ``"cosine"``.
        backend: densecore backend, ``"auto"``, ``"numba"`` or ``"torch"``.
        missing_label: the value that marks an unlabeled sample in ``y``.
        random_state: seeds the first pick when nothing is labeled.

    Example:
        >>> import numpy as np
        >>> from skactiveml.utils import MISSING_LABEL
        >>> X = np.array([[0.0], [1.0], [10.0], [4.0]])
        >>> y = np.array([0, MISSING_LABEL, MISSING_LABEL, MISSING_LABEL])
        >>> CoreSet().query(X, y, batch_size=2).tolist()
        [2, 3]
    """


class DensityAwareCoreSet(_DensecoreStrategy):
    """Density-aware core-set (Algorithm 1 of the paper) as a scikit-activeml strategy.

    Densities come from ``density``: ``"knn"`` (:class:`densecore.KNNDensity`
    with ``k``, ``beta``, ``tau`` on all samples, candidates included; ``beta``
    for a single sample, which has no neighbour) or a callable mapping an ``(n, n_features)`` array to ``(n,)`` positive densities.

    Args:
        density: ``"knn"`` or a callable.
        k, beta, tau: options of :class:`densecore.KNNDensity` for ``"knn"``.
        metric: ``"euclidean"`` or ``"cosine"``.
        backend: densecore backend.
        missing_label: the value that marks an unlabeled sample in ``y``.
        random_state: seeds the first pick when nothing is labeled.

    Example:
        >>> import numpy as np
        >>> from skactiveml.utils import MISSING_LABEL
        >>> X = np.array([[0.0], [1.0], [10.0], [4.0]])
        >>> y = np.array([0, MISSING_LABEL, MISSING_LABEL, MISSING_LABEL])
        >>> DensityAwareCoreSet(density=lambda x: np.ones(len(x))).query(X, y).tolist()
        [2]
    """

    _sampler = DensityAwareGreedy

    def __init__(self, density="knn", k=10, beta=float(np.exp(2.4)), tau=0.25,
                 metric="euclidean", backend="auto", missing_label=MISSING_LABEL,
                 random_state=None):
        super().__init__(metric=metric, backend=backend, missing_label=missing_label,
                         random_state=random_state)
        self.density = density
        self.k = k
        self.beta = beta
        self.tau = tau

    def _estimate(self, a):
        if callable(self.density):
            d = np.asarray(self.density(a), dtype=np.float64)
            if d.shape != (a.shape[0],):
                raise ValueError(f"density must return shape ({a.shape[0]},); got {d.shape}")
            return d
        if self.density != "knn":
            raise ValueError(f"density must be 'knn' or a callable; got {self.density!r}")
        k = min(self.k, a.shape[0] - 1)
        if k < 1:  # one sample has no neighbour: its error is constant, its density beta
            return np.full(a.shape[0], float(self.beta))
        return np.asarray(KNNDensity(k=k, beta=self.beta, tau=self.tau,
                                     metric=self.metric)(a), dtype=np.float64)

    def _densities(self, X, X_cand):
        if X_cand is None:
            return self._estimate(X), None
        d = self._estimate(np.concatenate([X, X_cand]))
        return d[:X.shape[0]], d[X.shape[0]:]
