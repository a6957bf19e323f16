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

from .. import metrics as M
from .._core import SAFE_EXP, mul_pow2, pow2_exp, pow2_scale
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
        sampler = self._sampler(backend=self.backend, metric=metric)
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
        # the one scaling rule on the candidates and the labeled samples outside them:
        # squared distances of 1e-200 or 1e200 underflow / overflow float64 otherwise
        e = _scale_exp(X_cand, X[outside] if len(outside) else None)
        cand = _dense(X_cand, metric, e)
        ones = np.ones(cand.shape[0])
        dens = ones if pool_dens is None else np.asarray(pool_dens, np.float64)
        r = np.full(cand.shape[0], np.inf)
        taken = np.zeros(cand.shape[0], bool)
        taken[in_pool] = True
        for k in in_pool:
            r = np.minimum(r, ((cand - cand[k]) ** 2).sum(1) / dens[k])
        if len(outside):
            out = _dense(X[outside], metric, e)
            od = np.ones(len(outside)) if pool_dens is None else dens_x[outside]
            for f, d in zip(out, od):
                r = np.minimum(r, ((cand - f) ** 2).sum(1) / d)
        width = n_samples if mapping is not None else cand.shape[0]
        util = np.full((len(picks), width), np.nan)
        for i, u in enumerate(picks):
            row = np.where(taken, np.nan,
                           self._utility_of(r, metric, pool_dens is None,
                                            0 if metric == "cosine" else e))
            if mapping is not None:
                util[i, mapping] = row
            else:
                util[i] = row
            taken[u] = True
            r = np.minimum(r, ((cand - cand[u]) ** 2).sum(1) / dens[u])
        return util

    @staticmethod
    def _utility_of(r, metric, plain, e):
        """Utilities from ``r`` computed on features times ``2^e`` (cosine: unit rows, e=0)."""
        if not plain:
            return mul_pow2(r * M.radius_factor(metric), -2 * e)
        return mul_pow2(M.from_squared_euclidean(r, metric), -e if metric != "cosine" else 0)


def _scale_exp(a, b=None) -> int:
    """``e`` of the one scaling rule (:func:`~densecore._core.pow2_scale`, float64 limits)
    for the largest magnitude of ``a`` and ``b``: 0 when no scaling is needed."""
    big = max(float(np.abs(np.asarray(t, np.float64)).max(initial=0.0))
              for t in (a, b) if t is not None)
    s = pow2_scale(big, SAFE_EXP[torch.float64])
    return 0 if s == 1.0 else pow2_exp(s)


def _dense(a, metric, e=0):
    """``a`` in float64 times ``2^e`` (exact), unit rows for cosine."""
    x = mul_pow2(np.asarray(a, dtype=np.float64), e)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x


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
