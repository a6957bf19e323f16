"""Sparse features (scipy CSR): the sparse layout of the engine table against a naive
per-pick loop, and the dense engine on the same rows densified.

Problem: ``n`` rows over ``dim`` columns with about ``nnz`` non-zeros per row
(random columns, log-normal values: a bag-of-words-like matrix), budget ``budget``,
density-aware greedy (densities uniform in [0.5, 3)), first pick 0. Methods:

* ``sparse_numba`` / ``sparse_torch``: :func:`densecore.farthest_first` on the CSR
  matrix (``backend="numba"`` / ``"torch"``), exact from row differences.
* ``naive``: per pick one scipy sparse matrix-vector product ``X x_u`` with the
  squared norms precomputed, ``r = min(r, d / d_u)``, argmax (norm expansion,
  float64).
* ``dense``: the dense engine on ``X.toarray()`` (float64), when it fits in
  ``--dense-max-mb``.

Each method is run ``repeats`` times, interleaved; the best time is kept.
Selections are compared with ``sparse_numba``'s.

    python benchmarks/sparse.py --json benchmarks/results/sparse.json
    python benchmarks/sparse.py --quick
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from _common import base_parser, emit

from densecore import farthest_first

COLUMNS = ["method", "n", "dim", "nnz_per_row", "budget", "time_s", "per_pick_ms",
           "time_vs_naive", "identical", "first_divergence"]


def make_csr(n: int, dim: int, nnz: int, seed: int) -> sp.csr_matrix:
    """``(n, dim)`` float64 CSR, ``nnz`` random columns per row (a repeated column
    adds up, so a few rows have fewer), log-normal values, canonical (sorted columns)."""
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, dim, (n, nnz))
    vals = rng.lognormal(0.0, 1.0, (n, nnz))
    indptr = np.arange(0, n * nnz + 1, nnz)
    x = sp.csr_matrix((vals.ravel(), cols.ravel(), indptr), shape=(n, dim))
    x.sum_duplicates()  # also sorts the columns of every row
    return x


def naive(x: sp.csr_matrix, dens: np.ndarray, budget: int, first: int) -> np.ndarray:
    """One sparse matrix-vector product per pick (norm expansion), min, argmax."""
    sq = np.asarray(x.multiply(x).sum(1)).ravel()
    r = np.full(x.shape[0], np.inf)
    out = np.empty(budget, dtype=np.int64)
    u = first
    for i in range(budget):
        out[i] = u
        r[u] = -1.0
        d = sq + sq[u] - 2.0 * (x @ x[u].T).toarray().ravel()
        np.maximum(d, 0.0, out=d)
        np.minimum(r, d / dens[u], out=r)
        u = int(np.argmax(r))
    return out


def main(argv=None) -> int:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=None, help="rows (default 50000; quick 5000)")
    p.add_argument("--dim", type=int, default=None, help="columns (default 20000; quick 2000)")
    p.add_argument("--nnz", type=int, default=50, help="non-zeros per row")
    p.add_argument("--budget", type=int, default=None, help="picks (default 300; quick 50)")
    p.add_argument("--repeats", type=int, default=None, help="default 3; quick 2")
    p.add_argument("--dense-max-mb", type=float, default=1024.0)
    args = p.parse_args(argv)
    defaults = (dict(n=5_000, dim=2_000, budget=50, repeats=2) if args.quick
                else dict(n=50_000, dim=20_000, budget=300, repeats=3))
    n, dim, budget, repeats = (getattr(args, k) or v for k, v in defaults.items())
    x = make_csr(n, dim, args.nnz, args.seed)
    dens = np.random.default_rng(args.seed + 1).uniform(0.5, 3.0, n)
    farthest_first(x[:200], 5, densities=dens[:200], init=0)  # load compiled kernels
    methods = {
        "sparse_numba": lambda: np.asarray(farthest_first(x, budget, densities=dens, init=0,
                                                          backend="numba").indices),
        "sparse_torch": lambda: np.asarray(farthest_first(x, budget, densities=dens, init=0,
                                                          backend="torch").indices),
        "naive": lambda: naive(x, dens, budget, 0),
    }
    if n * dim * 8 / 2**20 <= args.dense_max_mb:
        xd = x.toarray()
        methods["dense"] = lambda: np.asarray(farthest_first(xd, budget, densities=dens,
                                                             init=0).indices)
    times = {m: [] for m in methods}
    picks = {}
    for _ in range(repeats):
        for m, f in methods.items():
            t0 = time.perf_counter()
            picks[m] = f()
            times[m].append(time.perf_counter() - t0)
    ref = picks["sparse_numba"]
    rows = []
    for m in methods:
        t = min(times[m])
        diff = np.flatnonzero(picks[m] != ref)
        rows.append({"method": m, "n": n, "dim": dim, "nnz_per_row": args.nnz,
                     "budget": budget, "time_s": t, "per_pick_ms": 1e3 * t / budget,
                     "time_vs_naive": t / min(times["naive"]),
                     "identical": "yes" if diff.size == 0 else "no",
                     "first_divergence": int(diff[0]) if diff.size else None,
                     "times_s": times[m]})
    emit("sparse", rows, COLUMNS, args.json,
         caption="time_vs_naive: the method's best time over the naive loop's (below 1 is "
                 "faster); identical: the same picks as sparse_numba.",
         config={"n": n, "dim": dim, "nnz": args.nnz, "budget": budget,
                 "repeats": repeats, "seed": args.seed})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
