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

Backends: ``"numba"`` (CPU, parallel fused update + argmax over blocks,
float64 distances from differences) and ``"torch"`` (any device, no host
synchronisation per pick, float64 distances from differences). ``"auto"``
picks numba for CPU inputs. Hostile magnitudes: features and weights are
multiplied by the greedy's powers of two (``_backends/nearest.py``,
``pow2_scale``; exact) and the scores divided by them; accuracy is relative
to the largest magnitude.

Shape:
    features ``(N, D)``, densities ``(N,)`` > 0, labeled ``(M,)``,
    labeled_features ``(L, D)``; result indices ``(budget,)`` int64 and
    scores ``(budget,)`` float64 (``r_u * w_u`` at the moment ``u`` was picked,
    non-increasing; ``inf`` beyond the float64 range).
"""

from __future__ import annotations

import numpy as np
import torch

from . import validation as V
from ._backends import nearest
from .greedy import Selection

__all__ = ["TypicalityGreedy", "typicality_farthest_first"]

BACKENDS = ("auto", "numba", "torch")
_NUMBA_BLOCKS = 64
_TORCH_BLOCK = 1 << 22


def _run_numba(x, w, centres, excluded, budget, first, progress_cb):
    from ._backends.typicality_kernels import _lower, _update_argmax  # loads numba

    xn = nearest._as_np(x)  # float32/float64, contiguous (16-bit -> float32)
    n = xn.shape[0]
    wn = np.ascontiguousarray(w.detach().cpu().numpy(), dtype=np.float64)
    taken = np.ascontiguousarray(excluded.cpu().numpy())
    r = np.full(n, np.inf)
    cn = np.ascontiguousarray(centres.detach().cpu().to(torch.float64).numpy())
    for k in range(cn.shape[0]):
        _lower(xn, cn[k], r)
    idx = np.empty(budget, dtype=np.int64)
    val = np.empty(budget, dtype=np.float64)
    empty = np.empty(0, dtype=xn.dtype)
    nb = min(_NUMBA_BLOCKS, max(1, n))
    prev = None
    for i in range(budget):
        c = empty if prev is None else xn[prev]
        u, v = _update_argmax(xn, c, r, wn, taken, nb)
        if i == 0 and first >= 0:
            u = first
            v = r[u] * wn[u]
        idx[i] = u
        val[i] = v
        taken[u] = True
        prev = u
        if progress_cb is not None:
            progress_cb(1)
    return torch.from_numpy(idx), torch.from_numpy(val)


def _sq_to(x: torch.Tensor, c: torch.Tensor, wd: torch.dtype) -> torch.Tensor:
    out = torch.empty(x.shape[0], dtype=wd, device=x.device)
    step = max(1, _TORCH_BLOCK // max(x.shape[1], 1))
    for s in range(0, x.shape[0], step):
        out[s:s + step] = (x[s:s + step].to(wd) - c.to(wd)).pow(2).sum(1)
    return out


def _run_torch(x, w, centres, excluded, budget, first, progress_cb):
    wd = torch.float64  # differences and sums in float64, like the numba kernels
    n = x.shape[0]
    dev = x.device
    r = torch.full((n,), float("inf"), dtype=wd, device=dev)
    for k in range(centres.shape[0]):
        r = torch.minimum(r, _sq_to(x, centres[k], wd))
    w = w.to(wd)
    taken = excluded.clone()
    idx = torch.empty(budget, dtype=torch.int64, device=dev)
    val = torch.empty(budget, dtype=wd, device=dev)
    neg = torch.tensor(float("-inf"), dtype=wd, device=dev)
    for i in range(budget):
        score = torch.where(taken, neg, r * w)
        if i == 0 and first >= 0:
            u = torch.tensor([first], device=dev)
        else:
            u = torch.argmax(score).view(1)  # first maximum: ties go to the lowest index
        idx[i:i + 1] = u
        val[i:i + 1] = (r * w).index_select(0, u)
        taken.index_fill_(0, u, True)
        r = torch.minimum(r, _sq_to(x, x.index_select(0, u)[0], wd))
        if progress_cb is not None:
            progress_cb(1)
    return idx, val


_BACKENDS = {"numba": _run_numba, "torch": _run_torch}


def _weights(dens: torch.Tensor, g: float) -> torch.Tensor:
    w = torch.exp(g * torch.log(dens.double()))
    bad = ~(torch.isfinite(w) & (w > 0))
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"densities ** g must be finite and > 0; got {float(w[i])!r} at "
                         f"index {i} (density {float(dens[i])!r}, g={g})")
    return w


def typicality_farthest_first(features, budget: int, *, densities=None, g: float = 1.0,
                              labeled=None, labeled_features=None, init=None,
                              seed: int = 0, backend: str = "auto", progress: bool = False,
                              validate: bool = True) -> Selection:
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
        backend: ``"auto"``, ``"numba"`` or ``"torch"``.
        progress: tqdm bar over the picks.
        validate: scan values for NaN/inf and non-positive densities.

    Returns:
        :class:`~densecore.Selection`: ``indices`` ``(budget,)`` int64 and
        ``radii`` ``(budget,)``, the score ``r_u * d_u^g`` (squared Euclidean
        distance times weight) when ``u`` was picked, in the input's kind.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0], [10.0], [4.0]], np.float32)
        >>> d = np.array([1.0, 1.0, 0.1, 1.0])
        >>> typicality_farthest_first(x, 1, densities=d, labeled=[0]).indices.tolist()
        [3]
    """
    is_numpy = isinstance(features, np.ndarray)
    # centres' densities play no part here; ones satisfy the shared pool check
    ones = None
    if densities is not None and labeled_features is not None:
        ones = (torch.ones(len(labeled_features), dtype=torch.float64,
                           device=labeled_features.device)
                if isinstance(labeled_features, torch.Tensor)
                else np.ones(len(labeled_features)))
    x, dens, lab, lf, _ = V.check_pool(features, densities, labeled, labeled_features, ones,
                                       validate=validate)
    # the greedy's scaling rule: features and weights times powers of two (exact)
    x, lf, fe = nearest.scaled_features(x.detach(), lf.detach())
    g = float(g)
    if not np.isfinite(g) or g < 0:
        raise ValueError(f"g must be a finite number >= 0; got {g}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    n = x.shape[0]
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
    name = ("torch" if dev.type != "cpu" else "numba") if backend == "auto" else backend
    w = (torch.ones(n, dtype=torch.float64, device=dev) if dens is None
         else _weights(dens.detach(), g))
    ws = nearest.pow2_scale(float(w.max()) if n else 0.0, nearest.DENSITY_EXP)
    if ws != 1.0:
        w = nearest.mul_pow2(w, nearest.pow2_exp(ws))
    excluded = torch.zeros(n, dtype=torch.bool, device=dev)
    excluded[lab] = True
    centres = torch.cat([x[lab].to(lf.dtype), lf]) if lab.numel() else lf.to(x.dtype)
    bar = None
    if progress and budget:
        from tqdm.auto import tqdm

        bar = tqdm(total=budget, desc=f"typicality ({name})", unit="pick")
    try:
        idx, val = _BACKENDS[name](x, w, centres, excluded, budget,
                                   -1 if init is None else init,
                                   None if bar is None else bar.update)
    finally:
        if bar is not None:
            bar.close()
    # scores back in original units: r * w = scaled score * 2^(-2 fe - log2 ws)
    val = nearest.mul_pow2(val.to(torch.float64), -2 * fe - nearest.pow2_exp(ws))
    if is_numpy:
        return Selection(idx.cpu().numpy(), val.cpu().numpy())
    return Selection(idx.to(dev), val.to(dev))


class TypicalityGreedy:
    """Typicality-weighted farthest-first (beyond the paper): ``argmax r_t * d_t^g``.

    The density sits on the candidate's side of the link (Algorithm 1 puts it
    on the selected point's side), so among far points the sampler prefers
    those in dense, typical parts of the data. ``g = 0`` is k-center greedy.
    See :func:`typicality_farthest_first`.

    Density source: the ``densities`` passed to :meth:`select` (a DMC or
    masked-convolution coverage density, for example); when None, the kNN
    density ``1 / mean distance to the k nearest neighbours`` (floored at 1e-3
    of the median distance, so duplicates stay finite)
    (:func:`~densecore.density.knn_mean_distance`, ``k`` below) is computed
    on the pool.

    Args:
        g: density exponent (>= 0); 1.0 by default (``docs/benchmarks.md``).
        k: neighbours of the fallback kNN density.
        backend: ``"auto"``, ``"numba"`` (CPU) or ``"torch"`` (any device).
        seed: seeds the first pick when nothing is labeled and ``init`` is None.
        progress: tqdm bar over the picks.
        validate: check for NaN/inf and non-positive densities.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0], [10.0], [4.0]], np.float32)
        >>> d = np.array([1.0, 1.0, 0.1, 1.0])
        >>> TypicalityGreedy().select(x, 2, densities=d, labeled=[0]).indices.tolist()
        [3, 2]
    """

    def __init__(self, g: float = 1.0, k: int = 10, backend: str = "auto", seed: int = 0,
                 progress: bool = False, validate: bool = True):
        g = float(g)
        if not np.isfinite(g) or g < 0:
            raise ValueError(f"g must be a finite number >= 0; got {g}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
        self.g = g
        self.k = V.check_int(k, "k", minimum=1)
        self.backend = backend
        self.seed = V.check_int(seed, "seed")
        self.progress = bool(progress)
        self.validate = bool(validate)

    def __repr__(self) -> str:
        return (f"TypicalityGreedy(g={self.g}, k={self.k}, backend={self.backend!r}, "
                f"seed={self.seed})")

    def select(self, features, budget: int, *, densities=None, labeled=None,
               labeled_features=None, labeled_densities=None, init=None) -> Selection:
        """Pick ``budget`` points.

        Args:
            features: ``(N, D)`` float features.
            budget: number of picks.
            densities: ``(N,)`` > 0 candidate densities, or None for the kNN density.
            labeled: ``(M,)`` in-pool labeled indices (never returned).
            labeled_features: ``(L, D)`` labeled points outside the pool.
            labeled_densities: accepted and ignored (only candidates' densities count).
            init: first pick when nothing is labeled (None: seeded random).

        Returns:
            :class:`~densecore.Selection`; radii are the scores ``r_u * d_u^g``.
        """
        del labeled_densities  # the weight is the candidate's, never the centre's
        if densities is None and self.g > 0:
            from .density.knn import knn_mean_distance

            x = V.check_features(features, validate=self.validate)
            k = min(self.k, x.shape[0] - 1)
            if k >= 1:
                e = torch.as_tensor(knn_mean_distance(x, k, validate=False))
                # duplicates can give e = 0: floor it at 1e-3 of the median
                floor = max(float(e.median()) * 1e-3, 1e-300)
                densities = 1.0 / e.clamp_min(floor)
                if isinstance(features, np.ndarray):
                    densities = densities.cpu().numpy()
        return typicality_farthest_first(features, budget, densities=densities, g=self.g,
                                         labeled=labeled, labeled_features=labeled_features,
                                         init=init, seed=self.seed, backend=self.backend,
                                         progress=self.progress, validate=self.validate)
