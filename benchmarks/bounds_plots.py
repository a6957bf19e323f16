"""Plots of the bound benchmark (``benchmarks/bounds.py --plots DIR``): delta, max
ARD and core-set loss against the budget per data set and protocol, and the
paper's Fig. 4 (average radial distance against coverage density of a k-center
selection) with its calibration numbers. Needs matplotlib.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from densecore import KCenterGreedy, atomic_save_figure
from densecore.bench.bounds import Dataset, summarise
from densecore.density import TAU, coverage_density, density_calibration, supplementary_calibration

log = logging.getLogger(__name__)

__all__ = ["density_vs_ard", "plot_bounds", "plot_density_vs_ard", "write_plots"]


def write_plots(out: dict, directory: str, datasets: list[Dataset],
                budget: int = 50) -> list[str]:
    """Write ``bounds_<dataset>[_paper].png`` and ``density_vs_ard.png`` (Fig. 4,
    k-center selection of ``budget`` points, paper's tau) into ``directory``; return
    the paths and store the calibration in ``out["calibration"]``: the Fig. 4 R^2
    on the k-center selection and the supplementary's procedure
    (:func:`densecore.density.supplementary_calibration`: U(0.5, 3) draw, R^2
    against 1/density and against the area radius, points used)."""
    paths = plot_bounds(out["rows"], directory)
    pts = [density_vs_ard(ds, min(budget, len(ds.features))) for ds in datasets]
    out["calibration"] = []
    for ds, p in zip(datasets, pts):
        row = {"dataset": p["dataset"], "density": p["source"], "budget": p["budget"],
               "tau": p["tau"], "r2": p["r2"], "r2_supplementary": float("nan"),
               "r2_radius": float("nan"), "n_points": 0}
        try:
            cal = supplementary_calibration(ds.features, ds.paper_densities())
            row.update(r2_supplementary=cal.r2, r2_radius=cal.r2_radius,
                       n_points=cal.n_points)
        except ValueError as exc:  # too few densities in [0.5, 3]
            log.warning("%s: %s", ds.name, exc)
        out["calibration"].append(row)
    paths.append(plot_density_vs_ard(pts, directory))
    return paths


def _figure(**kwargs):
    # A bare Figure renders with the Agg canvas and leaves pyplot's global state alone.
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'densecore-seg[plots]'") from exc
    return Figure(layout="constrained", **kwargs)


def _save_atomic(fig, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_save_figure(fig, path, format="png", dpi=110, bbox_inches="tight")


def plot_bounds(rows: list[dict], directory: str) -> list[str]:
    """One PNG per data set and protocol, ``bounds_<dataset>[_paper].png``: delta, max
    ARD and core-set loss against the budget, one line per method (mean over seeds).
    Returns the paths."""
    paths = []
    summary = summarise(rows)
    for name, protocol in sorted({(r["dataset"], r["protocol"]) for r in summary}):
        rs = [r for r in summary if r["dataset"] == name and r["protocol"] == protocol]
        fig = _figure(figsize=(13, 3.6))
        axes = fig.subplots(1, 3)
        for method in sorted({r["method"] for r in rs}):
            mr = sorted((r for r in rs if r["method"] == method), key=lambda r: r["budget"])
            for ax, key in zip(axes, ("delta", "max_ard", "coreset_loss")):
                ax.plot([r["budget"] for r in mr], [r[key] for r in mr], marker="o",
                        label=method)
        for ax, title in zip(axes, ("delta (Eq. 3)", "max average radial distance (Eq. 4)",
                                    "core-set loss, 1-NN (Eq. 1)")):
            ax.set_xscale("log")
            ticks = sorted({r["budget"] for r in rs})
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
            ax.set_xlabel("budget")
            ax.set_title(title, fontsize=10)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"{name}, {protocol} protocol: bounds vs budget (mean over seeds)",
                     fontsize=11)
        suffix = "" if protocol == "same" else f"_{protocol}"
        path = os.path.join(directory, f"bounds_{name}{suffix}.png")
        _save_atomic(fig, path)
        paths.append(path)
    return paths


def density_vs_ard(ds: Dataset, budget: int, tau: float = TAU, seed: int = 0) -> dict:
    """Fig. 4's data: for a k-center selection of ``budget`` points, the coverage
    density and the average radial distance of each selected point, and the R^2 of
    a linear fit of ARD on 1/density (:func:`densecore.density.density_calibration`).

    Densities are the estimator's (``ds.densities``) when ``tau`` is the paper's
    and the data set has them, else ``coverage_density(ds.raw_error, tau=tau)``.
    """
    sel = KCenterGreedy(seed=seed).select(ds.features, budget).indices
    if ds.densities is not None and tau == TAU:
        dens = ds.densities
    else:
        dens = np.asarray(coverage_density(ds.raw_error, tau=tau), dtype=np.float64)
    cal = density_calibration(ds.features, dens, sel)
    return {"dataset": ds.name, "source": ds.density, "budget": budget, "tau": tau,
            "density": (1.0 / cal.inverse_density).tolist(),
            "ard": cal.radial_distance.tolist(), "r2": cal.r2}


def plot_density_vs_ard(points: list[dict], directory: str) -> str:
    """Scatter of average radial distance against coverage density of the selected
    points, one panel per data set (as the paper's Fig. 4); ``density_vs_ard.png``."""
    fig = _figure(figsize=(4.2 * len(points), 3.6))
    axes = fig.subplots(1, len(points), squeeze=False)
    for ax, p in zip(axes[0], points):
        ax.scatter(p["density"], p["ard"], s=10, alpha=0.7)
        ax.set_xlabel(f"{p['source']} coverage density (tau={p['tau']:g})")
        ax.set_ylabel("average radial distance")
        ax.set_title(f"{p['dataset']}, k-center b={p['budget']}, "
                     f"R^2(ARD~1/d)={p['r2']:.2f}", fontsize=9)
    path = os.path.join(directory, "density_vs_ard.png")
    _save_atomic(fig, path)
    return path
