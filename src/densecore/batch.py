"""Many pools in one call: Algorithm 1 on ragged pools concatenated with their lengths.

Each pool is selected exactly as :func:`densecore.farthest_first` would select it
alone (same checks, same scaling rule, same seeded first pick, same engine): only
how the pools share the machine changes.

* An engine that can run several pools per launch (``"triton"``, CUDA) runs them
  all together: one kernel per pick over tiles of every pool's rows, pools whose
  budget is done masked on the device.
* CPU pools on the ``"numba"`` engine run on threads, one numba thread each, up to
  the thread limit (:func:`densecore._backends.thread_limit`): two 184,540-candidate
  images at once on one thread each beat one image at a time on two threads for
  k-center (6.60 / 5.68 s against 7.95 / 6.14 s per image; ``benchmarks/README.md``).
* Otherwise the pools run one after the other.

Shape:
    features ``(N_total, D)`` with ``N_total = sum(lengths)``; lengths, budgets,
    seeds ``(P,)``; densities and labeled ``(N_total,)``; labeled_features a list
    of P ``(L_p, D)`` or None; result: P :class:`~densecore.greedy.Selection`
    with indices local to their pool.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from . import engines as E
from . import greedy as G
from . import metrics as M
from . import validation as V
from ._backends import thread_limit, threads

log = logging.getLogger(__name__)

__all__ = ["farthest_first_batch"]


def _per_pool_list(values, n_pools: int, name: str) -> list:
    """``values`` as a list of ``n_pools`` entries (None: all None)."""
    if values is None:
        return [None] * n_pools
    if not isinstance(values, (list, tuple)) or len(values) != n_pools:
        raise ValueError(f"{name} must be a list with one entry (or None) per pool "
                         f"({n_pools}); got {type(values).__name__} of length "
                         f"{len(values) if hasattr(values, '__len__') else '?'}")
    return list(values)


def _labeled_mask(labeled, n_total: int) -> torch.Tensor | None:
    if labeled is None:
        return None
    m = V.as_tensor_like(labeled, "labeled")
    if m.dtype != torch.bool or tuple(m.shape) != (n_total,):
        raise ValueError(f"labeled must be a ({n_total},) bool mask of the labeled rows; got "
                         f"{m.dtype} {tuple(m.shape)}")
    return m.cpu()  # one small copy: the per-pool index lists are built on the host


def _workers(jobs: list) -> int:
    """Pools selected at once: up to the thread limit for pools on a host engine (numba)."""
    if len(jobs) < 2 or not all(E.engine(j.pool.engine).host for j in jobs):
        return 1
    return max(1, min(len(jobs), thread_limit()))


def farthest_first_batch(features, lengths, budgets, *, densities=None, labeled=None,
                         labeled_features=None, labeled_densities=None, seeds=0,
                         backend: str = "auto", metric: str = "euclidean",
                         progress: bool = False, validate: bool = True,
                         num_threads: int | None = None, storage: str | None = None) -> list:
    """Algorithm 1 on each of P pools, the pools concatenated row-wise.

    The result equals ``[farthest_first(pool_p, budgets[p], ..., seed=seeds[p])
    for p in range(P)]`` pick for pick (``tests/engines/test_batch.py`` checks it against
    that loop).

    Args:
        features: ``(N_total, D)`` float array or tensor (any device): the pools'
            rows one after the other.
        lengths: ``(P,)`` non-negative integers, rows per pool, adding up to ``N_total``.
        budgets: picks per pool, one integer for all or ``(P,)``.
        densities: ``(N_total,)`` strictly positive densities, or None (k-center greedy).
        labeled: ``(N_total,)`` bool mask of rows already labeled (in their pool), or None.
        labeled_features: a list of P entries, each ``(L_p, D)`` labeled points outside
            pool p or None; or None.
        labeled_densities: a list of P entries ``(L_p,)`` (required with
            ``densities`` where ``labeled_features`` has an entry), or None.
        seeds: the seed of each pool's first pick when nothing is labeled there (one
            integer for all or ``(P,)``).
        backend: ``"auto"``, ``"numba"``, ``"torch"`` or ``"triton"`` (see
            :mod:`densecore.greedy`).
        metric: ``"euclidean"`` or ``"cosine"``.
        progress: a tqdm bar over all picks.
        validate: scan values for NaN/inf and non-positive densities.
        num_threads: most CPU threads in all (None: the thread limit).
        storage: None, ``"float16"`` or ``"bfloat16"``: every pool's features rounded
            once to 16 bits after its scaling rule (labeled points keep their
            precision; :func:`~densecore.farthest_first`).

    Returns:
        A list of P :class:`~densecore.greedy.Selection`, indices local to their pool
        (numpy for numpy features, else tensors on the features' device).

    Raises:
        ValueError: naming the argument: lengths that do not add up, a budget larger
            than its pool's unlabeled rows, per-pool lists of the wrong length, and
            every check of :func:`~densecore.farthest_first`.
        TypeError: sparse features (use :func:`~densecore.farthest_first` per pool).

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0], [5.0], [0.0], [3.0], [9.0], [4.0]], np.float32)
        >>> lab = np.array([1, 0, 0, 1, 0, 0, 0], bool)  # row 0 of each pool
        >>> sels = farthest_first_batch(x, [3, 4], [2, 2], labeled=lab)
        >>> [s.indices.tolist() for s in sels], [s.radii.tolist() for s in sels]
        ([[2, 1], [2, 3]], [[25.0, 1.0], [81.0, 16.0]])
    """
    metric = M.check_metric(metric)
    V.check_storage(storage)
    if V.is_sparse(features):
        raise TypeError("features must be dense for farthest_first_batch; call "
                        "farthest_first per pool for sparse features")
    if not isinstance(features, (np.ndarray, torch.Tensor)):
        V.as_tensor_like(features, "features")  # raises the TypeError naming features
    if features.ndim != 2:
        raise ValueError(f"features must have shape (N_total, D); got shape "
                         f"{tuple(features.shape)}")
    n_total = features.shape[0]
    sizes = V.check_lengths(lengths, n_total)
    n_pools = len(sizes)
    budgets = V.check_per_pool(budgets, n_pools, "budgets", minimum=0)
    seeds = V.check_per_pool(seeds, n_pools, "seeds", minimum=0)
    lfs = _per_pool_list(labeled_features, n_pools, "labeled_features")
    lds = _per_pool_list(labeled_densities, n_pools, "labeled_densities")
    mask = _labeled_mask(labeled, n_total)
    if num_threads is not None:
        num_threads = V.check_int(num_threads, "num_threads", minimum=1)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    jobs = []
    for p, (lo, hi) in enumerate(zip(offsets[:-1], offsets[1:])):
        lab = None if mask is None else mask[lo:hi].nonzero().squeeze(1)
        free = hi - lo - (0 if lab is None else lab.numel())
        if budgets[p] > free:  # named per pool here; setup() would say "budget"
            raise ValueError(f"budgets[{p}] must be at most the {free} unlabeled rows of "
                             f"pool {p}; got {budgets[p]}")
        if lab is not None:
            lab = lab.numpy() if isinstance(features, np.ndarray) else lab.to(features.device)
        jobs.append(G.setup(features[lo:hi], budgets[p],
                            None if densities is None else densities[lo:hi], lab, lfs[p],
                            lds[p], seed=seeds[p], backend=backend, metric=metric,
                            validate=validate, storage=storage))
    if not jobs:
        return []
    engine = jobs[0].pool.engine
    cls = E.engine(engine)
    run_batch = cls.run_batch
    total = sum(j.budget for j in jobs)
    with G.progress_bar(progress, total, f"greedy ({engine}, {n_pools} pools)") as bar:
        if run_batch is not None:
            outs = run_batch([j.inputs for j in jobs], [j.budget for j in jobs],
                             [j.first for j in jobs])
            if bar is not None:
                bar.update(total)
        else:
            workers = _workers(jobs)
            if num_threads is not None:
                workers = min(workers, num_threads)

            def one(job):
                out = G.run_engine(job.pool.engine, job.inputs, job.budget, job.first,
                                   False, num_threads=1 if workers > 1 else num_threads)
                if bar is not None:
                    bar.update(job.budget)
                return out

            if workers > 1:
                log.debug("%d pools on %d threads, one numba thread each", n_pools, workers)

                def on_one_thread(job):
                    with threads(1):
                        return one(job)

                with ThreadPoolExecutor(max_workers=workers) as ex:
                    outs = list(ex.map(on_one_thread, jobs))
            else:
                outs = [one(j) for j in jobs]
    return [j.result(idx, r) for j, (idx, r) in zip(jobs, outs)]
