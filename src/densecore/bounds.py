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
Nearest-centre search goes through faiss when it is installed and the data is
on the CPU, else through chunked torch; either way the distance to the
assigned centre is recomputed from differences, so a selected point is at
distance exactly 0 from itself.

Shape:
    features ``(N, D)``, centers ``(M, D)``, selected ``(M,)`` int, labels ``(N,)``;
    ``coverage`` returns ``(N,)`` assignments and ``(N,)`` distances,
    ``average_radial_distance`` ``(M,)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import metrics as M
from . import validation as V
from ._backends import faiss_backend, torch_backend

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


def _coverage_t(x: torch.Tensor, c: torch.Tensor, backend: str, metric: str = "euclidean"):
    if backend not in ("auto", "faiss", "torch"):
        raise ValueError(f"backend must be 'auto', 'faiss' or 'torch'; got {backend!r}")
    if M.check_metric(metric) == "cosine":
        x, c = M.unit_rows(x), M.unit_rows(c, "centers")
    use_faiss = backend == "faiss" or (backend == "auto" and x.device.type == "cpu"
                                       and faiss_backend.available())
    if use_faiss:
        _, nn = faiss_backend.knn(x.detach().cpu().float().numpy(),
                                  c.detach().cpu().float().numpy(), 1)
        assign = torch.from_numpy(nn[:, 0]).to(x.device)
    else:
        assign, _ = torch_backend.nearest_centres(x, c.to(x.dtype))
    xd = x.double() if x.dtype != torch.float64 else x
    dist = M.from_squared_euclidean((xd - c.to(xd.dtype)[assign]).pow(2).sum(1), metric)
    return assign, dist


def coverage(features, centers, *, backend: str = "auto", metric: str = "euclidean",
             validate: bool = True):
    """Nearest center of every point and the Euclidean distance to it (Eq. 3's pi(x)).

    Args:
        features: ``(N, D)`` points.
        centers: ``(M, D)`` selected points, ``M >= 1``.
        backend: ``"auto"`` (faiss on CPU when installed, else torch), ``"faiss"``, ``"torch"``.
        metric: ``"euclidean"`` (plain distance) or ``"cosine"`` (``1 - cos``),
            see :mod:`densecore.metrics`.
        validate: check for NaN/inf.

    Returns:
        ``(assign (N,) int64, distance (N,) float64)``: index into ``centers`` and
        the plain distance in the metric, in the input's kind.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0], [9.0]], np.float32)
        >>> a, d = coverage(x, np.array([[0.0], [10.0]], np.float32))
        >>> a.tolist(), d.tolist()
        ([0, 0, 1], [0.0, 1.0, 1.0])
    """
    x = V.check_features(features, validate=validate)
    c = V.check_features(centers, "centers", validate=validate, dim=x.shape[1])
    if c.shape[0] == 0:
        raise ValueError("centers must hold at least one point; got shape "
                         f"{tuple(c.shape)}")
    if isinstance(features, torch.Tensor):
        V.check_same_device(x, centers=centers)
    assign, dist = _coverage_t(x, c.to(x.device), backend, metric)
    numpy_in = isinstance(features, np.ndarray)
    return _out(assign, numpy_in), _out(dist, numpy_in)


def covering_radius(features, centers, **kwargs) -> float:
    """``delta`` of Eq. 3: the largest Euclidean distance to the nearest center.

    Example:
        >>> import numpy as np
        >>> covering_radius(np.array([[0.0], [3.0]]), np.array([[1.0]]))
        2.0
    """
    _, dist = coverage(features, centers, **kwargs)
    return float(dist.max()) if len(dist) else 0.0


def _ard(assign: torch.Tensor, dist: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    total = torch.zeros(m, dtype=torch.float64, device=dist.device).index_add_(0, assign, dist)
    count = torch.bincount(assign, minlength=m).to(torch.float64)
    return torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total)), count


def average_radial_distance(features, centers, **kwargs):
    """``delta_s(k)`` of Eq. 4 for every center: the mean Euclidean distance over its
    coverage area (0 for a center that covers no point).

    Args:
        features: ``(N, D)`` points (include the centers themselves if they are
            part of the data, as in the paper).
        centers: ``(M, D)``.

    Returns:
        ``(M,)`` float64 average radial distances.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0], [2.0], [10.0]])
        >>> average_radial_distance(x, x[[0, 3]]).tolist()
        [1.0, 0.0]
    """
    assign, dist = coverage(features, centers, **kwargs)
    numpy_in = isinstance(assign, np.ndarray)
    a = torch.as_tensor(assign)
    ard, _ = _ard(a, torch.as_tensor(dist), len(centers))
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
    """

    delta: float
    ard: np.ndarray
    max_ard: float
    counts: np.ndarray
    coreset_loss: float | None = None

    def as_dict(self) -> dict:
        """Scalars only: ``delta``, ``max_ard``, ``mean_ard``, ``coreset_loss``."""
        return {"delta": self.delta, "max_ard": self.max_ard,
                "mean_ard": float(np.mean(self.ard)) if len(self.ard) else 0.0,
                "coreset_loss": self.coreset_loss}


def bound_report(features, selected, labels=None, *, backend: str = "auto",
                 metric: str = "euclidean", validate: bool = True) -> BoundReport:
    """``delta`` (Eq. 3), per-point and max average radial distance (Eq. 4) and the
    core-set loss (Eq. 1, with ``labels``) of a selection.

    Args:
        features: ``(N, D)`` all points.
        selected: ``(M,)`` indices into ``features``, ``M >= 1``, no repeats.
        labels: ``(N,)`` integer labels, optional.
        backend: nearest-centre search, see :func:`coverage`.
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
    """
    x = V.check_features(features, validate=validate)
    sel = V.check_indices(selected, x.shape[0], "selected").to(x.device)
    if sel.numel() == 0:
        raise ValueError("selected must hold at least one index; got none")
    assign, dist = _coverage_t(x, x[sel], backend, metric)
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
    return BoundReport(delta=float(dist.max()), ard=ard.cpu().numpy(),
                       max_ard=float(ard.max()), counts=count.cpu().numpy().astype(np.int64),
                       coreset_loss=loss)
