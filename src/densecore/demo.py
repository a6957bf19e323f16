"""``densecore demo``: the main job on built-in synthetic data.

Selects from a Gaussian mixture with unequal weights and spreads with random
sampling, k-center greedy, the paper's density-aware greedy (kNN coverage
density, at the paper's tau = 0.25 and at the tau that
:func:`tune_density_scaling` picks on held-out halves) and the method the
bound benchmark found best, :class:`~densecore.KMedoidsRefinement` (beyond
the paper), side by side. It tabulates the covering radius ``delta``
(Eq. 3), the maximum average radial distance (Eq. 4), the core-set loss of
the 1-NN learner (Eq. 1) and the selection time for a few budgets. Progress
is one bar over all runs, cleared at the end, so the table prints clean.

Shape:
    features ``(n, dim)`` float32; one row of the table per (budget, method).
"""

from __future__ import annotations

import time

import numpy as np

from .bench.report import markdown_table
from .bounds import bound_report
from .density import coverage_density, knn_mean_distance
from .samplers import DensityAwareGreedy, KCenterGreedy, KMedoidsRefinement
from .synthetic import gaussian_mixture
from .tuning import tune_density_scaling

__all__ = ["METHODS", "check_demo_args", "demo_rows", "reading", "run_demo"]

#: the demo's methods, in table order
METHODS = ("random", "kcenter", "density_aware", "density_aware_tuned", "kmedoids_refinement")


def check_demo_args(n, dim, budgets) -> tuple[int, int, list[int]]:
    """Check the demo's sizes; raise a one-line ``ValueError`` naming the flag.

    Example:
        >>> check_demo_args(100, 4, [10])
        (100, 4, [10])
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 20:
        raise ValueError(f"--n must be an integer >= 20; got {n!r}")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"--dim must be an integer >= 1; got {dim!r}")
    budgets = list(budgets)
    if not budgets:
        raise ValueError("--budgets must list at least one budget; got none")
    for b in budgets:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 1 <= b <= n // 2:
            raise ValueError(f"--budgets must lie in [1, n // 2 = {n // 2}] (the tuned method "
                             f"splits the points in halves); got {b!r} with --n {n}")
    return int(n), int(dim), [int(b) for b in budgets]


def demo_rows(n: int = 10000, dim: int = 16, budgets=(50, 100, 200), seed: int = 0,
              progress: bool = True) -> list[dict]:
    """Rows ``{budget, method, delta, max_ard, coreset_loss, seconds}`` for each budget.

    Features are L2-normalised before selection, as the paper does for pixels.

    Raises:
        ValueError: one line naming the flag, see :func:`check_demo_args`.

    Example:
        >>> rows = demo_rows(n=300, dim=4, budgets=[5], progress=False)
        >>> [r["method"] for r in rows] == list(METHODS)
        True
    """
    n, dim, budgets = check_demo_args(n, dim, budgets)
    x, y = gaussian_mixture(n, dim=dim, n_components=10, seed=seed)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t0 = time.perf_counter()
    err = knn_mean_distance(x, 10)
    dens = coverage_density(err)
    t_density = time.perf_counter() - t0
    # compile (or load from numba's cache) before anything is timed
    DensityAwareGreedy(seed=seed).select(x[:64], 2, densities=dens[:64])
    KMedoidsRefinement(seed=seed).select(x[:64], 2)
    rng = np.random.default_rng(seed)
    rows = []

    def tuned(b):
        scaling = tune_density_scaling(x, err, b, seed=seed)
        d = coverage_density(err, tau=scaling.tau, beta=scaling.beta)
        return DensityAwareGreedy(seed=seed).select(x, b, densities=d).indices

    methods = {
        "random": lambda b: rng.choice(n, size=b, replace=False),
        "kcenter": lambda b: KCenterGreedy(seed=seed).select(x, b).indices,
        "density_aware": lambda b: DensityAwareGreedy(seed=seed).select(
            x, b, densities=dens).indices,
        "density_aware_tuned": tuned,
        "kmedoids_refinement": lambda b: KMedoidsRefinement(seed=seed).select(x, b).indices,
    }
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(budgets) * len(methods), desc="demo", unit="run", leave=False)
    try:
        for b in budgets:
            for name, pick in methods.items():
                t0 = time.perf_counter()
                sel = pick(b)
                dt = time.perf_counter() - t0 + (t_density if name.startswith("density")
                                                 else 0.0)
                rep = bound_report(x, sel, y)
                rows.append({"budget": int(b), "method": name, "delta": rep.delta,
                             "max_ard": rep.max_ard, "coreset_loss": rep.coreset_loss,
                             "seconds": dt})
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return rows


def reading(rows: list[dict]) -> str:
    """One paragraph comparing each method's max ARD with k-center's, budget by budget.

    Example:
        >>> rows = [{"budget": 10, "method": "kcenter", "max_ard": 0.5},
        ...         {"budget": 10, "method": "x", "max_ard": 0.4}]
        >>> reading(rows)
        'Reading (max ARD against k-center at budgets 10; below 1x is better): x 0.80x.'
    """
    base = {r["budget"]: r["max_ard"] for r in rows if r["method"] == "kcenter"}
    budgets = sorted(base)
    parts = []
    for name in dict.fromkeys(r["method"] for r in rows):
        if name == "kcenter":
            continue
        ratios = [r["max_ard"] / base[r["budget"]] for r in rows
                  if r["method"] == name and base.get(r["budget"])]
        if ratios:
            lo, hi = min(ratios), max(ratios)
            parts.append(f"{name} {lo:.2f}x" if lo == hi else f"{name} {lo:.2f}x-{hi:.2f}x")
    return ("Reading (max ARD against k-center at budgets "
            f"{', '.join(map(str, budgets))}; below 1x is better): " + ", ".join(parts) + ".")


def run_demo(n: int = 10000, dim: int = 16, budgets=(50, 100, 200), seed: int = 0,
             progress: bool = True) -> str:
    """Run the demo and return its report (a Markdown table with a short reading)."""
    rows = demo_rows(n=n, dim=dim, budgets=budgets, seed=seed, progress=progress)
    head = (f"densecore demo: {n} points, D={dim}, 10-component Gaussian mixture with "
            "unequal weights and spreads, L2-normalised.\n"
            "delta = covering radius (Eq. 3); max_ard = max average radial distance (Eq. 4); "
            "coreset_loss = 1-NN core-set loss (Eq. 1); seconds include the kNN density.\n"
            "density_aware is the paper's Algorithm 1 at tau = 0.25; density_aware_tuned the "
            "tau that tune_density_scaling picks (held-out max ARD); kmedoids_refinement is "
            "k-center followed by k-medoids steps and ARD-driven moves (beyond the paper; "
            "O(N * budget * D) per step). See docs/benchmarks.md.\n")
    return head + "\n" + markdown_table(rows, list(rows[0])) + "\n\n" + reading(rows)
