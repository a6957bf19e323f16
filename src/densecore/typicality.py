"""Typicality-weighted farthest-first traversal (beyond the paper).

Algorithm 1 of the paper divides a distance by the density of the *selected*
point it is measured to, so it can only re-split the budget between regions;
it always picks an extreme point. This sampler puts the density on the
*candidate's* side of the link instead:

    u = argmax_t  r_t * w_t,   r_t = min_{k in s} ||f_t - f_k||_2^2,   w_t = d_t^g

where ``d_t`` is the candidate's coverage density and ``g >= 0`` an exponent.
With ``g = 0`` it is k-center greedy. With ``g > 0`` it prefers far points
that sit in dense (typical) parts of the data over isolated outliers, which
moves centres toward the mass of their coverage areas. Not from the paper;
measured in ``docs/benchmarks.md``.

It runs on the one greedy driver (:func:`densecore.farthest_first`'s checks,
scaling, first pick and engines) with the weights ``w`` as the engine's weight
hook (:meth:`densecore.greedy.Job.weigh`): the numba engine's parallel fused
pass per pick, the torch engine (any device, no host sync), or the triton engine
(CUDA; its tiles keep the largest ``r * w``). Hostile
magnitudes: features follow the greedy's scaling; the weights are multiplied by
a power of two (``densecore._core.pow2_scale``; exact, the argmax does not
change); accuracy is relative to the largest magnitude.

Shape:
    features ``(N, D)``, densities ``(N,)`` > 0, labeled ``(M,)``,
    labeled_features ``(L, D)``; result indices ``(budget,)`` int64 and radii
    ``(budget,)``: ``r_u`` (squared distance, cosine distance for
    ``metric="cosine"``) at the moment ``u`` was picked, as for every sampler.
"""

from __future__ import annotations

import numpy as np
import torch

from . import greedy as G
from . import metrics as M
from . import validation as V
from ._core import DENSITY_EXP, Selection, mul_pow2, pow2_exp, pow2_scale

__all__ = ["typicality_farthest_first", "typicality_weights"]


def typicality_weights(dens: torch.Tensor, g: float) -> torch.Tensor:
    """``d^g`` ``(N,)`` float64, checked finite and > 0, times the one power of two that
    keeps ``r * w`` inside float64 (exact; the argmax does not change).

    Example:
        >>> typicality_weights(torch.tensor([1.0, 4.0]), 0.5).tolist()
        [1.0, 2.0]
    """
    w = torch.exp(g * torch.log(dens.double()))
    bad = ~(torch.isfinite(w) & (w > 0))
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"densities ** g must be finite and > 0; got {float(w[i])!r} at "
                         f"index {i} (density {float(dens[i])!r}, g={g})")
    ws = pow2_scale(float(w.max()) if w.numel() else 0.0, DENSITY_EXP)
    return w if ws == 1.0 else mul_pow2(w, pow2_exp(ws))


def check_g(g) -> float:
    """Check the density exponent ``g`` (finite, >= 0); return it as a float.

    Example:
        >>> check_g(2)
        2.0
    """
    g = float(g)
    if not np.isfinite(g) or g < 0:
        raise ValueError(f"g must be a finite number >= 0; got {g}")
    return g


def typicality_farthest_first(features, budget: int, *, densities=None, g: float = 1.0,
                              labeled=None, labeled_features=None, init=None,
                              seed: int = 0, backend: str = "auto",
                              metric: str = "euclidean", progress: bool = False,
                              validate: bool = True, num_threads: int | None = None,
                              storage: str | None = None) -> Selection:
    """Farthest-first with the candidate's density as weight: ``argmax r_t * d_t^g``.

    ``r_t`` is the squared Euclidean distance to the nearest labeled or picked
    point; ties go to the lowest index; labeled points are never picked.

    Args:
        features: ``(N, D)`` float array or tensor (any device).
        budget: number of picks, ``0 <= budget <= N - len(labeled)``.
        densities: ``(N,)`` strictly positive densities of the candidates, or
            None (every weight 1: k-center greedy).
        g: exponent ``>= 0`` of the density.
        labeled: ``(M,)`` in-pool labeled indices.
        labeled_features: ``(L, D)`` labeled points outside the pool.
        init: first pick when nothing is labeled; None draws it from ``seed``.
        seed: seed of that draw (a local generator).
        backend: ``"auto"`` or a name of the engine table whose engine takes
            weights (``"numba"``, ``"torch"``, ``"triton"``).
        metric: ``"euclidean"`` or ``"cosine"`` (unit rows, as the greedy).
        progress: tqdm bar over the picks.
        validate: scan values for NaN/inf and non-positive densities.
        num_threads: most CPU threads for the numba engine (None: the default).
        storage: None, ``"float16"`` or ``"bfloat16"``: the candidates rounded once to
            16 bits after the one scaling rule (labeled points keep their precision;
            :func:`~densecore.farthest_first`).

    Returns:
        :class:`~densecore.Selection`: ``indices`` ``(budget,)`` int64 and
        ``radii`` ``(budget,)``, ``r_u`` when ``u`` was picked (the score
        ``r_u * d_u^g`` divided by the weight), in the input's kind.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0], [10.0], [4.0]], np.float32)
        >>> d = np.array([1.0, 1.0, 0.1, 1.0])
        >>> sel = typicality_farthest_first(x, 1, densities=d, labeled=[0])
        >>> sel.indices.tolist(), sel.radii.tolist()
        ([3], [16.0])
    """
    metric = M.check_metric(metric)
    g = check_g(g)
    if num_threads is not None:
        num_threads = V.check_int(num_threads, "num_threads", minimum=1)
    # the centres carry no density: the pool is checked without, the weights apart
    job = G.setup(features, budget, None, labeled, labeled_features, None, init=init,
                  seed=seed, backend=backend, metric=metric, validate=validate,
                  storage=storage)
    if densities is not None:
        dens = V.check_densities(densities, job.pool.n, validate=validate)
        V.check_same_device(job.pool.x, densities=dens)
        job.weigh(typicality_weights(dens.detach(), g))
    return job.run(progress, num_threads)


