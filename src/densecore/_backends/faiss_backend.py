"""Nearest-neighbour work through faiss (optional: ``pip install "densecore-seg[cpu]"``).

faiss returns *squared* Euclidean distances for L2 indexes; every function here
says which distance it returns.

Shape:
    queries ``(N, D)``, database ``(L, D)``, float32 numpy, C-contiguous.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np


def available() -> bool:
    """True when faiss can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def require() -> None:
    """Raise ImportError naming the extra to install when faiss is missing."""
    _faiss()


def _faiss():
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the faiss backend needs faiss: pip install 'densecore-seg[cpu]' (faiss-cpu) "
            "or 'densecore-seg[gpu]' (faiss-gpu)"
        ) from exc
    return faiss


def gpu_available() -> bool:
    """True when faiss imports with GPU support and sees at least one GPU."""
    try:
        import faiss
    except ImportError:
        return False
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


_GPU_RES = []  # one faiss GPU resource object per process, made on first use


@contextmanager
def _busy_threads(faiss):
    """faiss's OpenMP threads for one call: at most one more than the cores
    :func:`densecore._backends.free_cores` reports free (and at most
    :func:`densecore._backends.thread_limit`), the caller's count restored after.

    On a busy machine a parallel search waits for its descheduled threads: an
    exact 20,000 x 20,000 x 64 k-NN search took 5.5 s on 2 threads and 2.9 s on
    one at load 11 on 2 cores.
    """
    from . import free_cores, thread_limit

    before = faiss.omp_get_max_threads()
    free = free_cores()
    n = thread_limit()
    faiss.omp_set_num_threads(max(1, n if free is None else min(n, 1 + free)))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def nearest_weighted(queries: np.ndarray, centres: np.ndarray, inv_w: np.ndarray,
                     m: int, *, gpu: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the ``m`` centres with the smallest ``||q - c_k||^2 * inv_w_k`` (float32).

    ``||q - c||^2 w' = (||q||^2, 1, q) . (-w', -||c||^2 w', 2 c w')`` negated, so
    the smallest values are the largest inner products of augmented vectors,
    which a flat inner-product index finds. The values are rounded (float32
    expansion): callers recompute them exactly and bound the error
    (:mod:`densecore._backends.nearest`). ``gpu=True`` searches a faiss GPU flat
    index (faiss-gpu) instead of the CPU one.

    Returns:
        (approx (N, m) float32 squared Euclidean times inv_w, smallest first;
        index (N, m) int64).
    """
    faiss = _faiss()
    q = np.ascontiguousarray(queries, dtype=np.float32)
    c = np.ascontiguousarray(centres, dtype=np.float32)
    w = np.asarray(inv_w, np.float64)
    qa = np.empty((len(q), q.shape[1] + 2), np.float32)
    qa[:, 0] = np.einsum("ij,ij->i", q, q)  # float32: within the caller's error bound
    qa[:, 1] = 1.0
    qa[:, 2:] = q
    ca = np.empty((len(c), c.shape[1] + 2), np.float32)
    ca[:, 0] = -w
    ca[:, 1] = -(c.astype(np.float64) ** 2).sum(1) * w
    ca[:, 2:] = 2.0 * c * w[:, None]
    if gpu:
        if not _GPU_RES:
            _GPU_RES.append(faiss.StandardGpuResources())
        index = faiss.GpuIndexFlatIP(_GPU_RES[0], ca.shape[1])
    else:
        index = faiss.IndexFlatIP(ca.shape[1])
    index.add(ca)
    with _busy_threads(faiss):
        sim, idx = index.search(qa, m)
    return -sim, idx.astype(np.int64, copy=False)


def hnsw_index(dim: int, m: int = 24, ef_construction: int = 100):
    """An empty HNSW graph over float32 vectors (``faiss.IndexHNSWFlat``).

    Approximate: which neighbours a search finds depends on the graph and on
    ``efSearch``; the distances it returns are squared Euclidean of the float32
    copies (callers recompute them). Memory per vector: ``4 dim`` bytes of
    values plus about ``8 m + 20`` bytes of links and levels (at ``dim = 64``,
    ``m = 24``: about 1.8x the float32 features).
    """
    faiss = _faiss()
    index = faiss.IndexHNSWFlat(int(dim), int(m))
    index.hnsw.efConstruction = int(ef_construction)
    return index


def hnsw_add(index, rows: np.ndarray) -> None:
    """Add all ``rows`` ``(N, D)`` float32, C-contiguous, to ``index`` in one call (no
    copy; adding in several batches measured a worse graph: recall@10 0.89 instead
    of 0.94 at 50,000 x 64, efSearch 64)."""
    with _busy_threads(_faiss()):
        index.add(rows)


def hnsw_search(index, queries: np.ndarray, k: int, ef: int) -> np.ndarray:
    """Indices ``(B, k)`` int64 of the (approximately) nearest stored vectors to
    ``queries`` (float32), -1 where fewer than ``k`` were found; ``ef`` is the search
    effort (``efSearch >= k``)."""
    index.hnsw.efSearch = int(max(ef, k))
    with _busy_threads(_faiss()):
        _, idx = index.search(np.ascontiguousarray(queries, dtype=np.float32), int(k))
    return idx.astype(np.int64, copy=False)
