"""Calibration of a density estimator against the average radial distance (Fig. 4).

The coverage density is meant to fall as the average radial distance
``delta_s(k)`` of Eq. 4 grows. Given a selected set ``s``, each selected point
``k`` gets its coverage area ``N_s(k)`` (the points whose nearest selected
point, by plain Euclidean distance, is ``k``; ``k`` itself included) and
``delta_s(k)``, the mean Euclidean distance from ``k`` over that area. A linear
least-squares fit of ``delta_s(k)`` against ``1 / d_k`` over the selected points
then says how much of the variation in radial distance the densities explain:
its ``R^2`` (the paper reports 0.72 for its DMC, on selected points whose
densities roughly follow ``U(0.5, 3)``).

Shape:
    features ``(N, D)`` float, densities ``(N,)`` > 0, selected ``(M,)`` int
    with ``M >= 2``; the scatter points are ``(M,)`` float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..bounds import average_radial_distance
from ..validation import as_tensor_like, check_densities, check_features, check_indices

__all__ = ["Calibration", "density_calibration"]


@dataclass
class Calibration:
    """Result of :func:`density_calibration`.

    Attributes:
        r2: coefficient of determination of the fit (NaN when either
            coordinate is constant over the selected points).
        slope: fitted ``delta_s(k)`` per unit of ``1 / d_k`` (feature-space
            distance times density).
        intercept: fitted ``delta_s(k)`` at ``1 / d_k = 0`` (feature-space distance).
        inverse_density: ``(M,)`` float64 ``1 / d_k`` of the selected points
            (the x axis of a Fig. 4 scatter plot).
        radial_distance: ``(M,)`` float64 ``delta_s(k)`` (Eq. 4), plain
            Euclidean distance (the y axis).
    """

    r2: float
    slope: float
    intercept: float
    inverse_density: np.ndarray | torch.Tensor
    radial_distance: np.ndarray | torch.Tensor


def density_calibration(features, densities, selected, *, backend: str = "auto",
                        validate: bool = True) -> Calibration:
    """R^2 of a linear fit of average radial distance (Eq. 4) against 1 / density.

    Args:
        features: ``(N, D)`` float points (numpy or tensor), the candidates
            the selection was made from.
        densities: ``(N,)`` strictly positive coverage densities of those points.
        selected: ``(M,)`` distinct indices into ``features``, ``M >= 2``: the
            selected set ``s`` whose coverage areas are measured.
        backend: nearest-centre search of :func:`densecore.bounds.coverage`
            (``"auto"``, ``"faiss"`` or ``"torch"``).
        validate: scan features and densities for NaN/inf and non-positive values.

    Returns:
        :class:`Calibration`; the scatter arrays follow the kind and device of
        ``features``.

    Example:
        >>> x = np.array([[0.0], [1.0], [10.0], [12.0], [30.0], [33.0]])
        >>> d = np.array([2.0, 1.0, 1.0, 1.0, 2.0 / 3.0, 1.0])
        >>> cal = density_calibration(x, d, [0, 2, 4])
        >>> cal.radial_distance.tolist(), round(cal.r2, 6), round(cal.slope, 6)
        ([0.5, 1.0, 1.5], 1.0, 1.0)
    """
    x = check_features(features, validate=validate)
    n = x.shape[0]
    dens = check_densities(densities, n, validate=validate)
    sel = check_indices(selected, n, "selected")
    if sel.numel() < 2:
        raise ValueError(f"selected must hold at least 2 indices to fit a line; got {sel.numel()}")
    if isinstance(features, torch.Tensor):
        dens = as_tensor_like(densities, "densities").to(x.device)
        sel = sel.to(x.device)
    # Eq. 4: delta_s(k), mean Euclidean distance over the coverage area of k
    radial = torch.as_tensor(average_radial_distance(x, x[sel], backend=backend,
                                                     validate=False)).to(torch.float64)
    inv = 1.0 / dens[sel].to(device=radial.device, dtype=torch.float64)
    xs = inv - inv.mean()
    ys = radial - radial.mean()
    sxx, syy, sxy = float((xs * xs).sum()), float((ys * ys).sum()), float((xs * ys).sum())
    if sxx > 0:
        slope = sxy / sxx
        intercept = float(radial.mean()) - slope * float(inv.mean())
    else:
        slope, intercept = 0.0, float(radial.mean())
    # simple linear regression: R^2 = 1 - SS_res / SS_tot = Sxy^2 / (Sxx Syy)
    r2 = sxy * sxy / (sxx * syy) if sxx > 0 and syy > 0 else float("nan")
    if isinstance(features, torch.Tensor):
        inv_out, rad_out = inv.to(x.device), radial.to(x.device)
    else:
        inv_out, rad_out = inv.cpu().numpy(), radial.cpu().numpy()
    return Calibration(r2=float(r2), slope=float(slope), intercept=float(intercept),
                       inverse_density=inv_out, radial_distance=rad_out)
