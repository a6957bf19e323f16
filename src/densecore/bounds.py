"""The bounds of the paper, measured on a selection.

* ``delta`` (Eq. 3): the covering radius, the largest Euclidean distance from
  any point to its nearest selected point (Theorem 1's bound).
* ``ard`` (Eq. 4): the average radial distance ``delta_s(k)`` of each selected
  point ``k``, the mean Euclidean distance over its coverage area
  ``N_s(k)`` (the points whose nearest selected point is ``k``, ``k`` itself
  included). ``max_ard <= delta`` (Theorem 3).
* ``coreset_loss`` (Eq. 1) for the 1-nearest-neighbour learner: the share of
  points whose nearest selected point carries a different label (the learner
  is exact on the selected points, as Theorem 1 assumes).

All distances here are plain (not squared) Euclidean, unlike Algorithm 1.
Nearest centres come from the one exact search of
``densecore._backends.nearest`` (fast candidates from faiss or torch, each
answer proven or recomputed by brute force; distances in float64 from
differences), so a selected point is at distance exactly 0 from itself and
ties go to the lowest centre index.

Shape:
    features ``(N, D)``, centres ``(M, D)``, selected ``(M,)`` int, labels ``(N,)``;
    ``coverage`` returns ``(N,)`` assignments and ``(N,)`` distances,
    ``average_radial_distance`` ``(M,)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import warnings

import numpy as np
import torch

from . import metrics as M
from . import validation as V
from ._backends import nearest

__all__ = [
    "BoundReport",
    "average_radial_distance",
    "bound_report",
    "coreset_loss",
    "coverage",
    "covering_radius",
]


def _out(t: torch.Tensor, like_numpy: bool):
    return t.cpu().numpy() if like_numpy else t


def _coverage_t(x: torch.Tensor, c: torch.Tensor, search_backend: str,
                metric: str = "euclidean"):
    """Nearest centre (lowest index on ties) and the plain distance to it in ``metric``,
    from the one exact nearest-centre search (on unit rows for cosine)."""
    if M.check_metric(metric) == "cosine":
        x, c = M.unit_rows(x), M.unit_rows(c, "centres")
    sq, assign, e = nearest.search_scaled(x, c.to(x.device), 1, method=search_backend)
    return assign[:, 0], nearest.plain_distance(sq[:, 0], e, metric)


def _centres(centres, centers):
    """``centres``, or the former keyword ``centers`` with a DeprecationWarning."""
    if centers is not None:
        if centres is not None:
            raise TypeError("got both centres and centers; centers is the former name of "
                            "centres: pass centres only")
        warnings.warn("centers= is deprecated and will be removed in the next release; use "
                      "centres= (the one spelling of the library)", DeprecationWarning,
                      stacklevel=3)
        centres = centers
    if centres is None:
        raise TypeError("missing the argument centres: (M, D) selected points")
    return centres


def coverage(features, centres=None, *, search_backend: str = "auto",
             metric: str = "euclidean", validate: bool = True, centers=None):
    """Nearest centre of every point and the Euclidean distance to it (Eq. 3's pi(x)).

    Args:
        features: ``(N, D)`` points.
        centres: ``(M, D)`` selected points, ``M >= 1``.
        search_backend: where the nearest-centre search's fast candidates come
            from: ``"auto"`` (the search's rule: faiss on the CPU from 256 centres
            when installed, numba below, torch on other devices), ``"faiss"`` or
            ``"torch"``; the answer is the same.
        metric: ``"euclidean"`` (plain distance) or ``"cosine"`` (``1 - cos``),
            see :mod:`densecore.metrics`.
        validate: check for NaN/inf.
        centers: the former name of ``centres`` (deprecated: a DeprecationWarning;
            removed in the next release).

    Returns:
        ``(assign (N,) int64, distance (N,) float64)``: index into ``centres`` and
        the plain distance in the metric, in the input's kind.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0], [9.0]], np.float32)
        >>> a, d = coverage(x, np.array([[0.0], [10.0]], np.float32))
        >>> a.tolist(), d.tolist()
        ([0, 0, 1], [0.0, 1.0, 1.0])
    """
    centres = _centres(centres, centers)
    x = V.check_features(features, validate=validate)
    c = V.check_features(centres, "centres", validate=validate, dim=x.shape[1])
    if c.shape[0] == 0:
        raise ValueError("centres must hold at least one point; got shape "
                         f"{tuple(c.shape)}")
    if isinstance(features, torch.Tensor):
        V.check_same_device(x, centres=centres)
    assign, dist = _coverage_t(x, c.to(x.device), search_backend, metric)
    numpy_in = isinstance(features, np.ndarray)
    return _out(assign, numpy_in), _out(dist, numpy_in)


def covering_radius(features, centres=None, *, centers=None, **kwargs) -> float:
    """``delta`` of Eq. 3: the largest Euclidean distance to the nearest centre
    (``centres`` ``(M, D)``; ``kwargs`` and the deprecated ``centers`` as in
    :func:`coverage`).

    Example:
        >>> import numpy as np
        >>> covering_radius(np.array([[0.0], [3.0]]), np.array([[1.0]]))
        2.0
    """
    _, dist = coverage(features, _centres(centres, centers), **kwargs)
    return float(dist.max()) if len(dist) else 0.0


def _ard(assign: torch.Tensor, dist: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    total = torch.zeros(m, dtype=torch.float64, device=dist.device).index_add_(0, assign, dist)
    count = torch.bincount(assign, minlength=m).to(torch.float64)
    return torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total)), count


def average_radial_distance(features, centres=None, *, centers=None, **kwargs):
    """``delta_s(k)`` of Eq. 4 for every centre: the mean Euclidean distance over its
    coverage area (0 for a centre that covers no point).

    Args:
        features: ``(N, D)`` points (include the centres themselves if they are
            part of the data, as in the paper).
        centres: ``(M, D)``.
        centers: the former name of ``centres`` (deprecated).
        kwargs: as in :func:`coverage`.

    Returns:
        ``(M,)`` float64 average radial distances.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0], [2.0], [10.0]])
        >>> average_radial_distance(x, x[[0, 3]]).tolist()
        [1.0, 0.0]
    """
    centres = _centres(centres, centers)
    assign, dist = coverage(features, centres, **kwargs)
    numpy_in = isinstance(assign, np.ndarray)
    a = torch.as_tensor(assign)
    ard, _ = _ard(a, torch.as_tensor(dist), len(centres))
    return _out(ard, numpy_in)


def coreset_loss(features, selected, labels, **kwargs) -> float:
    """Eq. 1 for the 1-nearest-neighbour learner fitted on ``selected``.

    The learner predicts, for each point, the label of its nearest selected
    point, so its loss is 0 on ``selected``; the core-set loss is then the
    share of all points whose nearest selected point has a different label.

    Args:
        features: ``(N, D)``.
        selected: ``(M,)`` indices into ``features``.
        labels: ``(N,)`` integer labels.

    Returns:
        A float in [0, 1].

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0], [5.0], [6.0]])
        >>> coreset_loss(x, [0], np.array([0, 0, 1, 1]))
        0.5
    """
    return bound_report(features, selected, labels, **kwargs).coreset_loss


@dataclass(frozen=True)
class BoundReport:
    """The bounds of one selection.

    Attributes:
        delta: covering radius (Eq. 3), Euclidean.
        ard: ``(M,)`` average radial distance of each selected point (Eq. 4).
        max_ard: ``max_k ard[k]`` (Theorem 2's bound; ``<= delta``, Theorem 3).
        counts: ``(M,)`` number of points in each coverage area.
        coreset_loss: Eq. 1 for the 1-NN learner, or None without labels.
        protocol: ``"same"`` (delta, ARD and loss over one population) or
            ``"paper"`` (delta over the candidates, ARD and loss over every
            point; see :func:`bound_report`).
    """

    delta: float
    ard: np.ndarray
    max_ard: float
    counts: np.ndarray
    coreset_loss: float | None = None
    protocol: str = "same"

    def __repr__(self) -> str:
        """The scalars and the number of centres and points (never whole arrays).

        Example:
            >>> import numpy as np
            >>> BoundReport(1.5, np.array([1.0, 0.5]), 1.0, np.array([3, 2]))
            BoundReport(protocol='same', delta=1.5, max_ard=1, mean_ard=0.75, coreset_loss=None, centres=2, points=5)
        """
        d = self.as_dict()
        loss = None if d["coreset_loss"] is None else f"{d['coreset_loss']:.4g}"
        return (f"BoundReport(protocol={self.protocol!r}, delta={d['delta']:.4g}, "
                f"max_ard={d['max_ard']:.4g}, mean_ard={d['mean_ard']:.4g}, "
                f"coreset_loss={loss}, centres={len(self.ard)}, "
                f"points={int(np.sum(self.counts))})")

    def as_dict(self) -> dict:
        """Scalars only: ``delta``, ``max_ard``, ``mean_ard``, ``coreset_loss``."""
        return {"delta": self.delta, "max_ard": self.max_ard,
                "mean_ard": float(np.mean(self.ard)) if len(self.ard) else 0.0,
                "coreset_loss": self.coreset_loss}


def bound_report(features, selected, labels=None, *, candidates=None, labeled=None,
                 search_backend: str = "auto", metric: str = "euclidean",
                 validate: bool = True) -> BoundReport:
    """``delta`` (Eq. 3), per-point and max average radial distance (Eq. 4) and the
    core-set loss (Eq. 1, with ``labels``) of a selection.

    Two measurement protocols:

    * same population (``candidates=None``): delta, ARD and the core-set loss
      are all measured over ``features``; then ``max_ard <= delta`` (Theorem 3).
    * the paper's (``candidates`` given): ``features`` are every pixel of
      the image(s), ``candidates`` the top ``alpha * b`` pixels the greedy
      chose from. ``delta`` is measured over the candidates only, ARD and the
      core-set loss over every pixel. This is the only reading under which
      Table 4's k-center row (delta 0.132 < max ARD 0.364) is possible, since
      Theorem 3 forbids it within one population.

    ``labeled`` pixels (the labeled set ``s0`` of earlier rounds, as in
    :func:`~densecore.select_pixels`) are centres too: their coverage areas
    count in ``ard``, ``max_ard`` and ``counts`` (labeled first), and they
    cover points for delta and the loss.

    Args:
        features: ``(N, D)`` all points.
        selected: ``(M,)`` indices into ``features``, ``M >= 1``, no repeats.
        labels: ``(N,)`` integer labels, optional.
        candidates: ``(C,)`` indices into ``features`` over which delta is
            measured (the paper's protocol), or None (same population).
        labeled: ``(L,)`` indices into ``features`` of already-labeled
            centres, disjoint from ``selected``, or None.
        search_backend: nearest-centre search, see :func:`coverage`.
        metric: ``"euclidean"`` or ``"cosine"``: the distance that delta and the
            average radial distances are measured in.
        validate: check for NaN/inf.

    Returns:
        :class:`BoundReport` (numpy arrays, Python floats).

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0], [2.0], [10.0], [12.0]])
        >>> rep = bound_report(x, [0, 3], labels=np.array([0, 0, 1, 1, 1]))
        >>> rep.delta, rep.ard.tolist(), rep.max_ard, rep.coreset_loss
        (2.0, [1.0, 1.0], 1.0, 0.2)
        >>> paper = bound_report(x, [0, 3], candidates=[0, 1, 3])  # delta over 3 points
        >>> paper.delta, paper.max_ard, paper.protocol
        (1.0, 1.0, 'paper')
    """
    x = V.check_features(features, validate=validate)
    sel = V.check_indices(selected, x.shape[0], "selected").to(x.device)
    if sel.numel() == 0:
        raise ValueError("selected must hold at least one index; got none")
    if labeled is not None:
        lab = V.check_indices(labeled, x.shape[0], "labeled").to(x.device)
        if bool(torch.isin(lab, sel).any()):
            raise ValueError("labeled and selected must be disjoint; got "
                             f"{int(lab[torch.isin(lab, sel)][0])} in both")
        sel = torch.cat([lab, sel])
    cand = None
    if candidates is not None:
        cand = V.check_indices(candidates, x.shape[0], "candidates").to(x.device)
        if cand.numel() == 0:
            raise ValueError("candidates must hold at least one index; got none")
    assign, dist = _coverage_t(x, x[sel], search_backend, metric)
    ard, count = _ard(assign, dist, sel.numel())
    loss = None
    if labels is not None:
        y = V.as_tensor_like(labels, "labels")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"labels must have shape ({x.shape[0]},); got {tuple(y.shape)}")
        if y.is_floating_point():
            raise TypeError(f"labels must be integer class ids; got dtype {y.dtype}")
        y = y.to(x.device)
        loss = float((y[sel][assign] != y).double().mean())
    delta = float(dist.max()) if cand is None else float(dist[cand].max())
    return BoundReport(delta=delta, ard=ard.cpu().numpy(),
                       max_ard=float(ard.max()), counts=count.cpu().numpy().astype(np.int64),
                       coreset_loss=loss, protocol="same" if cand is None else "paper")
