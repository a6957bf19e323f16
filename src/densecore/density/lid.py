"""Local intrinsic dimension and the coverage density it implies (beyond the paper).

Theorem 2 bounds the loss by the largest *average* radial distance of a
coverage area (Eq. 4), while k-center greedy equalises the areas' radii. For
points spread evenly in an ``m``-dimensional ball of radius ``R`` around its
centre, the mean distance to the centre is ``m R / (m + 1)``: at one radius an
area on a curve (``m = 1``) has ARD ``R / 2``, an area in a 16-dimensional blob
``16 R / 17``. Algorithm 1 divides squared distances by the centre's density,
so a centre of density ``d`` covers a radius proportional to ``sqrt(d)``; equal
ARD across areas then asks for ``R`` proportional to ``(m + 1) / m``, that is::

    d = ((m + 1) / m) ** 2

:func:`local_intrinsic_dimension` estimates ``m`` per point with the
maximum-likelihood estimator of Levina and Bickel (2004) from the distances
``T_1 <= ... <= T_k`` to the ``k`` nearest other points::

    m_hat = [ 1 / (k - 1) * sum_{j < k} log(T_k / T_j) ] ** -1

averaged over the point and its ``k`` neighbours (one point's estimate is
noisy), and clipped to ``[1, D]``. Duplicates (``T_j = 0``) push the estimate
down to 1; a point whose ``k`` neighbours all coincide with it gets 1.
:func:`lid_density` maps it to the density above, in ``[((D + 1) / D)^2, 4]``
(no min-max scaling: the ratio between two densities is what Algorithm 1 uses).

Shape:
    features ``(N, D)``; results ``(N,)`` float64, in the input's kind and device.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import validation as V
from .._backends import nearest

__all__ = ["lid_density", "local_intrinsic_dimension"]


def local_intrinsic_dimension(features, k: int = 20, *, search_backend: str = "auto",
                              validate: bool = True):
    """Smoothed maximum-likelihood local intrinsic dimension of every point (see the module).

    Args:
        features: ``(N, D)`` float features, ``N > k`` (numpy or a tensor on any device).
        k: neighbours per point (``>= 2``); the nearest-neighbour search is exact.
        search_backend: where the exact search's fast candidates come from:
            ``"auto"``, ``"faiss"`` or ``"torch"`` (see :func:`densecore.coverage`).
        validate: scan for NaN/inf.

    Returns:
        ``(N,)`` float64 estimates in ``[1, D]``, numpy for numpy input.

    Example:
        >>> import numpy as np
        >>> t = np.random.default_rng(0).random(300)
        >>> line = np.c_[t, 2 * t, -t, np.zeros(300)]   # a 1-D line in R^4
        >>> m = local_intrinsic_dimension(line, k=10)
        >>> bool(np.all((m >= 1.0) & (m < 1.5)))
        True
    """
    x = V.check_features(features, validate=validate)
    k = V.check_int(k, "k", minimum=2)
    n, dim = x.shape
    if n <= k:
        raise ValueError(f"k must be smaller than the number of points ({n}); got {k}")
    # the k + 1 nearest include the point itself (or a duplicate of it, same value)
    # rescaled values (see search_scaled): only ratios of distances enter the estimate
    sq, idx, _ = nearest.search_scaled(x, x, k + 1, method=search_backend)
    t = np.sqrt(sq[:, 1:].cpu().numpy())  # (N, k) ascending
    nb = idx.cpu().numpy()
    tk = t[:, -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(tk / t[:, :-1])  # inf for duplicates, nan where T_k = 0
    mean_log = np.where(np.isnan(logs), np.inf, logs).mean(1)
    with np.errstate(divide="ignore"):
        m = np.where(mean_log > 0, 1.0 / mean_log, np.inf)  # all k at one distance: no limit
    m = np.clip(m, 1.0, float(dim))
    m = m[nb].mean(1)  # the point and its k neighbours
    return m if isinstance(features, np.ndarray) else torch.from_numpy(m).to(x.device)


def lid_density(features, k: int = 20, *, search_backend: str = "auto",
                validate: bool = True):
    """Coverage density ``((m + 1) / m)^2`` from the local intrinsic dimension ``m``.

    Pass it to :class:`densecore.DensityAwareGreedy` as ``densities`` so that
    areas in low-dimensional parts of the data get larger radii, evening out
    their average radial distances (module docstring). Beyond the paper.

    Args:
        features, k, search_backend, validate, backend: as
            :func:`local_intrinsic_dimension`.

    Returns:
        ``(N,)`` float64 densities in ``[((D + 1) / D)^2, 4]``.

    Example:
        >>> import numpy as np
        >>> t = np.random.default_rng(0).random(300)
        >>> d = lid_density(np.c_[t, 2 * t, -t, np.zeros(300)], k=10)
        >>> bool(np.all((d > 2.7) & (d <= 4.0)))
        True
    """
    m = local_intrinsic_dimension(features, k, search_backend=search_backend,
                                  validate=validate)
    return ((m + 1.0) / m) ** 2
