"""Nearest-neighbour work through faiss (optional: ``pip install densecore[cpu]``).

faiss returns *squared* Euclidean distances for L2 indexes; every function here
says which distance it returns.

Shape:
    queries ``(N, D)``, database ``(L, D)``, float32 numpy, C-contiguous.
"""

from __future__ import annotations

import numpy as np


def available() -> bool:
    """True when faiss can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss():
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the faiss backend needs faiss: pip install 'densecore[cpu]' (faiss-cpu) "
            "or 'densecore[gpu]' (faiss-gpu)"
        ) from exc
    return faiss


def knn(queries: np.ndarray, database: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (flat L2 index).

    Returns:
        (sqdist (N, k) float32 squared Euclidean, index (N, k) int64), nearest first.
    """
    faiss = _faiss()
    index = faiss.IndexFlatL2(database.shape[1])
    index.add(np.ascontiguousarray(database, dtype=np.float32))
    sqd, idx = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return sqd, idx.astype(np.int64, copy=False)


def nearest_scaled(queries: np.ndarray, centres: np.ndarray,
                   cdens: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the centre minimising ``||q - c_k||^2 / d_k`` (exact).

    ``||q - c||^2 / d = (||q||^2, 1, q) . (1/d, ||c||^2/d, -2c/d)``, so the
    minimum is a maximum inner product of augmented vectors, which a flat
    inner-product index answers exactly.

    Returns:
        (assign (N,) int64, value (N,) float32, squared Euclidean / density).
    """
    faiss = _faiss()
    q = np.ascontiguousarray(queries, dtype=np.float32)
    c = np.ascontiguousarray(centres, dtype=np.float32)
    d = np.ones(len(c), np.float32) if cdens is None else np.asarray(cdens, np.float32)
    qa = np.empty((len(q), q.shape[1] + 2), np.float32)
    qa[:, 0] = (q.astype(np.float64) ** 2).sum(1)
    qa[:, 1] = 1.0
    qa[:, 2:] = q
    ca = np.empty((len(c), c.shape[1] + 2), np.float32)
    ca[:, 0] = -1.0 / d
    ca[:, 1] = -(c.astype(np.float64) ** 2).sum(1) / d
    ca[:, 2:] = 2.0 * c / d[:, None]
    index = faiss.IndexFlatIP(ca.shape[1])
    index.add(ca)
    sim, idx = index.search(qa, 1)
    return idx[:, 0].astype(np.int64), np.maximum(-sim[:, 0], 0.0)
