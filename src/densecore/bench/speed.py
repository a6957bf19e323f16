"""CPU selection speed: the engine against per-pick baselines, same selection.

The problem is Algorithm 1 (density-aware greedy) on a Gaussian mixture from
:func:`densecore.synthetic.gaussian_mixture`, densities drawn uniformly from
[0.5, 3) with a fixed seed. Methods:

* ``engine``: :class:`densecore.DensityAwareGreedy` (``backend="auto"``, the
  pruned numba engine on CPU).
* ``engine_1thread``: the same with numba limited to one thread (on a loaded
  machine the per-pick parallel regions of the engine wait on busy cores).
* ``torch_backend``: the same class with ``backend="torch"`` (one pass of
  coordinate differences per pick, no pruning).
* ``naive``: the bandwidth-bound loop in numpy: one BLAS gemv per pick over all
  points, squared norms precomputed, ``r = minimum(r, d / d_u)``, argmax. It
  streams ``N * D * itemsize`` bytes per pick.
* ``sklearn``: per pick ``sklearn.metrics.pairwise_distances`` (Euclidean,
  square roots) to the new point, squared and divided by its density, min,
  argmax: the pattern of most active-learning libraries.
* ``torch_norm``: per pick ``torch.linalg.norm(x - x[u], dim=1)``, min, argmax
  pulled to the host with ``.item()``.

The dense baselines cost the same every pick, so ``sklearn`` and
``torch_norm`` are timed over the first ``baseline_picks`` picks and scaled to
the budget (``extrapolated`` in the row). Every method starts from the same
first pick; its indices are compared with the engine's, and where they
diverge the two competing points are re-scored in float64 (``divergence_rel_gap``:
relative gap of their exact scaled distances; below ~1e-5 it is a float32 tie).

Shape:
    features ``(n, dim)`` float32; densities ``(n,)`` float64; each method
    returns ``(budget,)`` int64 indices.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager

import numpy as np

from ..samplers import DensityAwareGreedy
from ..synthetic import gaussian_mixture
from .report import markdown_table

__all__ = ["METHODS", "busy_load", "format_table", "make_problem", "naive_gemv_greedy",
           "run_contention", "run_speed", "sklearn_greedy", "torch_norm_greedy"]

METHODS = ("engine", "engine_1thread", "torch_backend", "naive", "sklearn", "torch_norm")
# Methods timed on a prefix of the picks and scaled to the budget.
_PREFIX_TIMED = ("sklearn", "torch_norm")

COLUMNS = ["part", "load", "method", "picks_timed", "time_s", "per_pick_ms", "gbps",
           "time_vs_naive", "time_vs_engine", "identical", "first_divergence",
           "divergence_rel_gap"]
CAPTION = ("time_vs_naive, time_vs_engine: the method's time divided by the naive loop's "
           "and by the engine's (below 1 is faster); load: 1-minute load average after the "
           "run; identical: the same picks as the engine (first_divergence: the first pick "
           "that differs, divergence_rel_gap: its float64 score gap, below ~1e-5 a float32 tie).")


def make_problem(n: int, dim: int, seed: int = 0,
                 n_components: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Features and densities of the benchmark problem.

    Returns:
        ``(features (n, dim) float32, densities (n,) float64 in [0.5, 3))``.

    Example:
        >>> x, d = make_problem(100, 4)
        >>> x.shape, x.dtype, d.shape, bool(d.min() >= 0.5)
        ((100, 4), dtype('float32'), (100,), True)
    """
    x, _ = gaussian_mixture(n, dim, n_components, seed=seed)
    dens = np.random.default_rng(seed + 1).uniform(0.5, 3.0, n)
    return x, dens


def naive_gemv_greedy(x: np.ndarray, densities: np.ndarray, budget: int,
                      first: int) -> np.ndarray:
    """Algorithm 1 with one BLAS matrix-vector product per pick (norm expansion).

    ``r_t = min(r_t, (||x_t||^2 + ||x_u||^2 - 2 x_t.x_u) / d_u)``, squared
    norms precomputed; ties go to the lowest index (``np.argmax``).

    Args:
        x: ``(N, D)`` float32 features. densities: ``(N,)`` > 0.
        budget: picks. first: the first pick.

    Returns:
        ``(budget,)`` int64 indices.

    Example:
        >>> x = np.array([[0.0], [1.0], [5.0], [2.0]], np.float32)
        >>> naive_gemv_greedy(x, np.ones(4), 3, 0).tolist()
        [0, 2, 3]
    """
    dt = x.dtype
    sq = np.einsum("ij,ij->i", x, x)
    dens = densities.astype(dt)
    r = np.full(x.shape[0], np.inf, dtype=dt)
    out = np.empty(budget, dtype=np.int64)
    dist = np.empty(x.shape[0], dtype=dt)
    u = int(first)
    for i in range(budget):
        out[i] = u
        r[u] = -1.0
        np.dot(x, x[u], out=dist)
        dist *= -2.0
        dist += sq
        dist += sq[u]
        np.maximum(dist, 0.0, out=dist)
        dist /= dens[u]
        np.minimum(r, dist, out=r)
        u = int(np.argmax(r))
    return out


def sklearn_greedy(x: np.ndarray, densities: np.ndarray, budget: int,
                   first: int) -> np.ndarray:
    """Per-pick ``sklearn.metrics.pairwise_distances`` (Euclidean), min, argmax.

    Distances are squared and divided by the picked point's density so the
    selection is Algorithm 1's.

    Example:
        >>> x = np.array([[0.0], [1.0], [5.0], [2.0]], np.float32)
        >>> sklearn_greedy(x, np.ones(4), 3, 0).tolist()
        [0, 2, 3]
    """
    from sklearn.metrics import pairwise_distances

    r = np.full(x.shape[0], np.inf, dtype=x.dtype)
    out = np.empty(budget, dtype=np.int64)
    u = int(first)
    for i in range(budget):
        out[i] = u
        r[u] = -1.0
        dist = pairwise_distances(x, x[u:u + 1], metric="euclidean")[:, 0]
        r = np.minimum(r, (dist * dist / densities[u]).astype(x.dtype))
        u = int(np.argmax(r))
    return out


def torch_norm_greedy(x, densities, budget: int, first: int) -> np.ndarray:
    """Per-pick ``torch.linalg.norm(x - x[u], dim=1)``, min, argmax via ``.item()``.

    ``x`` (N, D) and ``densities`` (N,) are numpy arrays or tensors on any device
    (the work runs where ``x`` lives).

    Example:
        >>> x = np.array([[0.0], [1.0], [5.0], [2.0]], np.float32)
        >>> torch_norm_greedy(x, np.ones(4), 3, 0).tolist()
        [0, 2, 3]
    """
    import torch

    xt = torch.as_tensor(x)
    dt = torch.as_tensor(densities, device=xt.device).to(xt.dtype)
    r = torch.full((xt.shape[0],), float("inf"), dtype=xt.dtype, device=xt.device)
    out = np.empty(budget, dtype=np.int64)
    u = int(first)
    for i in range(budget):
        out[i] = u
        r[u] = -1.0
        dist = torch.linalg.norm(xt - xt[u], dim=1)
        r = torch.minimum(r, dist * dist / dt[u])
        u = int(torch.argmax(r).item())
    return out


def _engine(backend):
    def run(x, densities, budget, first):
        sel = DensityAwareGreedy(backend=backend).select(x, budget, densities=densities,
                                                         init=first)
        return np.asarray(sel.indices)
    return run


def _engine_1thread(x, densities, budget, first):
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return _engine("auto")(x, densities, budget, first)
    finally:
        numba.set_num_threads(before)


_RUNNERS = {"engine": _engine("auto"), "engine_1thread": _engine_1thread,
            "torch_backend": _engine("torch"),
            "naive": naive_gemv_greedy, "sklearn": sklearn_greedy,
            "torch_norm": torch_norm_greedy}


def _exact_scores(x, densities, prefix, cand) -> np.ndarray:
    """float64 ``min_k ||x_c - x_k||^2 / d_k`` over the prefix, for a few candidates."""
    p = x[prefix].astype(np.float64)
    c = x[cand].astype(np.float64)
    d2 = ((c[:, None, :] - p[None, :, :]) ** 2).sum(-1) / densities[prefix][None, :]
    return d2.min(1)


def compare_selections(x, densities, ref: np.ndarray, other: np.ndarray) -> dict:
    """Compare two pick sequences started from the same point.

    Returns:
        dict: ``identical``, ``mismatches`` (positions that differ),
        ``first_divergence`` (index or None) and ``divergence_rel_gap``
        (relative gap of the float64 scores of the two competing points at the
        first divergence; ~1e-6 means a float32 tie).

    Example:
        >>> x = np.array([[0.0], [1.0], [5.0], [2.0]], np.float32)
        >>> compare_selections(x, np.ones(4), np.array([0, 2]), np.array([0, 3]))["divergence_rel_gap"]
        0.84
    """
    m = min(len(ref), len(other))
    diff = np.flatnonzero(ref[:m] != other[:m])
    if diff.size == 0:
        return {"identical": True, "mismatches": 0, "first_divergence": None,
                "divergence_rel_gap": None}
    j = int(diff[0])
    s = _exact_scores(x, densities, ref[:j], np.array([ref[j], other[j]]))
    gap = float(abs(s[0] - s[1]) / max(s[0], s[1])) if j else None
    return {"identical": False, "mismatches": int(diff.size), "first_divergence": j,
            "divergence_rel_gap": gap}


def run_speed(n: int = 100_000, dim: int = 64, budget: int = 1000, seed: int = 0,
              repeats: int = 3, methods=METHODS, baseline_picks: int = 200) -> list[dict]:
    """Time each method on the same problem; repeats are interleaved, the minimum kept.

    Args:
        n, dim, budget: problem size (points, feature dimension, picks).
        seed: seed of the data, the densities and the shared first pick.
        repeats: timed runs per method (after one untimed warm-up of the
            engine on small data to load compiled kernels).
        methods: subset of :data:`METHODS`; ``"engine"`` is always run first.
        baseline_picks: picks timed for the slow per-pick baselines
            (``sklearn``, ``torch_norm``), scaled to ``budget``.

    Returns:
        One dict per method: ``method``, ``picks_timed``, ``time_s`` (best of
        ``repeats``, for the full budget), ``time_median_s``, ``per_pick_ms``,
        ``gbps`` (``n * dim * 4`` bytes per pick over the time per pick),
        ``time_vs_naive`` (time / naive time: below 1 is faster),
        ``time_vs_engine`` (time / engine time), ``load`` (1-minute load
        average after the run), ``extrapolated`` and the fields of
        :func:`compare_selections` against the engine.

    Example:
        >>> rows = run_speed(n=600, dim=4, budget=5, repeats=1, methods=("engine", "naive"))
        >>> [r["method"] for r in rows], rows[1]["picks_timed"]
        (['engine', 'naive'], 5)
    """
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"methods must be a subset of {METHODS}; got {sorted(unknown)}")
    methods = ["engine"] + [m for m in methods if m != "engine"]
    x, dens = make_problem(n, dim, seed)
    first = int(np.random.default_rng(seed).integers(n))
    wx, wd = make_problem(256, dim, seed)
    _RUNNERS["engine"](wx, wd, 8, 0)
    times: dict[str, list[float]] = {m: [] for m in methods}
    picks = {m: min(budget, baseline_picks) if m in _PREFIX_TIMED else budget for m in methods}
    result: dict[str, np.ndarray] = {}
    for _ in range(max(1, repeats)):
        for m in methods:
            t0 = time.perf_counter()
            idx = _RUNNERS[m](x, dens, picks[m], first)
            times[m].append(time.perf_counter() - t0)
            result[m] = idx
    nbytes = n * dim * x.dtype.itemsize
    rows = []
    for m in methods:
        scale = budget / max(picks[m], 1)
        best = min(times[m]) * scale
        per_pick = best / max(budget, 1)
        row = {"method": m, "n": n, "dim": dim, "budget": budget, "picks_timed": picks[m],
               "extrapolated": picks[m] != budget, "time_s": best,
               "time_median_s": float(np.median(times[m])) * scale,
               "per_pick_ms": per_pick * 1e3,
               "gbps": nbytes / per_pick / 1e9 if per_pick > 0 else None}
        row.update(compare_selections(x, dens, result["engine"], result[m]))
        rows.append(row)
    t = {r["method"]: r["time_s"] for r in rows}
    load = _loadavg()
    for r in rows:
        r["time_vs_naive"] = r["time_s"] / t["naive"] if "naive" in t else None
        r["time_vs_engine"] = r["time_s"] / t["engine"]
        r["load"] = load
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown table of :func:`run_speed` (or :func:`run_contention`) rows, then the
    caption that reads its columns; ``part`` only for :func:`run_contention` rows.

    Example:
        >>> out = format_table([{"method": "engine", "time_s": 0.1, "load": 0.5}])
        >>> print(out.splitlines()[0])
        | load | method | picks_timed | time_s | per_pick_ms | gbps | time_vs_naive | time_vs_engine | identical | first_divergence | divergence_rel_gap |
        >>> out.splitlines()[-1].startswith("time_vs_naive, time_vs_engine: the method's time")
        True
    """
    return markdown_table(rows, table_columns(rows)) + "\n\n" + CAPTION


def table_columns(rows: list[dict]) -> list[str]:
    """:data:`COLUMNS`, without ``part`` where no row has one (a plain :func:`run_speed`)."""
    return [c for c in COLUMNS if c != "part" or any("part" in r for r in rows)]


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


@contextmanager
def busy_load(seconds: float, processes: int | None = None):
    """Keep every core busy: one busy-loop subprocess per core (or ``processes``).

    Each loop stops by itself after ``seconds`` (so nothing outlives a crashed
    run) and is also ended on exit from the block. Yields the process count.

    Example:
        >>> with busy_load(0.5, processes=1) as n:
        ...     n
        1
    """
    n = processes or _cores()
    code = f"import time\nt = time.time() + {float(seconds)}\nwhile time.time() < t: pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]
    try:
        time.sleep(0.2)  # let the loops start before timing
        yield n
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


def _loadavg() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def run_contention(max_seconds: float = 600.0, **kwargs) -> list[dict]:
    """:func:`run_speed` twice in one run: as the machine is, then while
    :func:`busy_load` keeps every core busy. Rows get ``part`` (``"idle"`` or
    ``"contended"``); ``load`` is the 1-minute load average when the part
    ended; ``time_vs_naive`` compares within the same part.

    Example:
        >>> rows = run_contention(n=600, dim=4, budget=5, repeats=1,
        ...                       methods=("engine", "naive"))
        >>> [(r["part"], r["method"]) for r in rows][1:3]
        [('idle', 'naive'), ('contended', 'engine')]
    """
    rows = []
    for part in ("idle", "contended"):
        if part == "idle":
            got = run_speed(**kwargs)
        else:
            with busy_load(max_seconds):
                got = run_speed(**kwargs)
        for r in got:
            r["part"] = part
        rows += got
    return rows
