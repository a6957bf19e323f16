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

__all__ = ["Calibration", "density_calibration", "supplementary_calibration"]


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
        r2_radius: R^2 of ``delta_s(k)`` against the radius of the area (the
            largest distance in it), filled by :func:`supplementary_calibration`:
            how much of the ARD the area's size alone explains, the yardstick
            for ``r2``.
        n_points: ``M``, the number of selected points regressed.
        selected: ``(M,)`` the indices used (:func:`supplementary_calibration`).
    """

    r2: float
    slope: float
    intercept: float
    inverse_density: np.ndarray | torch.Tensor
    radial_distance: np.ndarray | torch.Tensor
    r2_radius: float = float("nan")
    n_points: int = 0
    selected: np.ndarray | None = None


def density_calibration(features, densities, selected, *, search_backend: str = "auto",
                        validate: bool = True) -> Calibration:
    """R^2 of a linear fit of average radial distance (Eq. 4) against 1 / density.

    Args:
        features: ``(N, D)`` float points (numpy or tensor), the candidates
            the selection was made from.
        densities: ``(N,)`` strictly positive coverage densities of those points.
        selected: ``(M,)`` distinct indices into ``features``, ``M >= 2``: the
            selected set ``s`` whose coverage areas are measured.
        search_backend: nearest-centre search of :func:`densecore.bounds.coverage`
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
    radial = torch.as_tensor(average_radial_distance(x, x[sel], search_backend=search_backend,
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


def _r2(xv: np.ndarray, yv: np.ndarray) -> float:
    xs, ys = xv - xv.mean(), yv - yv.mean()
    sxx, syy, sxy = float(xs @ xs), float(ys @ ys), float(xs @ ys)
    return sxy * sxy / (sxx * syy) if sxx > 0 and syy > 0 else float("nan")


def supplementary_calibration(features, densities, *, n_samples: int = 200,
                              low: float = 0.5, high: float = 3.0, bins: int = 10,
                              min_samples: int = 30, seed: int = 0,
                              search_backend: str = "auto", validate: bool = True) -> Calibration:
    """The supplementary's calibration: sample points whose densities roughly follow
    ``U(low, high)``, then regress their average radial distance on 1 / density.

    Procedure: the points with density in ``[low, high]`` are binned into
    ``bins`` equal-width bins and up to ``n_samples // bins`` are drawn from each
    (seeded, without replacement), so the drawn densities are roughly uniform.
    The drawn points are the selected set ``s``: every point is assigned to its
    nearest drawn point (Euclidean) and ``delta_s(k)`` (Eq. 4) is fitted
    against ``1 / d_k`` as in :func:`density_calibration`. Beside it,
    ``r2_radius`` is the R^2 of ``delta_s(k)`` against the area's radius (the
    largest distance in the area), which needs no density at all.

    Args:
        features: ``(N, D)`` float points.
        densities: ``(N,)`` > 0 coverage densities (the paper's scale: ``beta =
            e^2.4``, ``tau = 0.25`` give densities in ``[0.2, 11]``).
        n_samples: points to draw in all.
        low, high: the density range of the uniform target.
        bins: bins of the stratified draw.
        min_samples: fewest drawn points accepted.
        seed: seed of the draw.
        search_backend: nearest-centre search of :func:`densecore.bounds.coverage`.
        validate: scan for NaN/inf and non-positive densities.

    Returns:
        :class:`Calibration` with ``r2``, ``r2_radius``, ``n_points`` and
        ``selected`` filled; numpy arrays.

    Raises:
        ValueError: naming ``densities`` when fewer than ``min_samples`` points
            can be drawn from ``[low, high]``.

    Example:
        >>> g = np.random.default_rng(0)
        >>> d = g.uniform(0.2, 4.0, 600)
        >>> x = g.normal(size=(600, 2)) / d[:, None]   # sparser where density is low
        >>> cal = supplementary_calibration(x, d, n_samples=60, min_samples=20)
        >>> cal.n_points, 0.0 <= cal.r2 <= 1.0, 0.0 <= cal.r2_radius <= 1.0
        (60, True, True)
    """
    from ..bounds import coverage

    x = check_features(features, validate=validate)
    n = x.shape[0]
    dens = check_densities(densities, n, validate=validate).double().cpu().numpy()
    if not (0 < low < high):
        raise ValueError(f"low and high must satisfy 0 < low < high; got {low}, {high}")
    rng = np.random.default_rng(seed)
    edges = np.linspace(low, high, bins + 1)
    inside = np.flatnonzero((dens >= low) & (dens <= high))
    which = np.clip(np.searchsorted(edges, dens[inside], side="right") - 1, 0, bins - 1)
    per = max(1, n_samples // bins)
    drawn = []
    for b in range(bins):
        pool = inside[which == b]
        if len(pool):
            drawn.append(rng.choice(pool, size=min(per, len(pool)), replace=False))
    sel = np.sort(np.concatenate(drawn)) if drawn else np.zeros(0, dtype=np.int64)
    if len(sel) < max(2, min_samples):
        raise ValueError(f"densities must put at least {max(2, min_samples)} points in "
                         f"[{low}, {high}] for the calibration draw; got {len(sel)} (of {n}; "
                         f"density range [{dens.min():.3g}, {dens.max():.3g}]): rescale the "
                         "densities (beta, tau) or lower min_samples")
    xc = x.detach().cpu()
    assign, dist = coverage(xc, xc[torch.from_numpy(sel)], search_backend=search_backend,
                            validate=False)
    assign, dist = np.asarray(assign), np.asarray(dist, dtype=np.float64)
    m = len(sel)
    count = np.bincount(assign, minlength=m)
    ard = np.bincount(assign, weights=dist, minlength=m) / np.maximum(count, 1)
    radius = np.zeros(m)
    np.maximum.at(radius, assign, dist)
    inv = 1.0 / dens[sel]
    r2 = _r2(inv, ard)
    xs = inv - inv.mean()
    slope = float(xs @ (ard - ard.mean()) / (xs @ xs)) if float(xs @ xs) > 0 else 0.0
    return Calibration(r2=float(r2), slope=slope,
                       intercept=float(ard.mean() - slope * inv.mean()),
                       inverse_density=inv, radial_distance=ard,
                       r2_radius=float(_r2(radius, ard)), n_points=m, selected=sel)
