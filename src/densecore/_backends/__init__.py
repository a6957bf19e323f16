"""Engines and the nearest-centre search: plain modules, numba and faiss imported lazily.

Every engine implements one interface (see :mod:`densecore.greedy`):
``Engine(x, dens, centres, cdens, excluded, max_new)``, ``best()``, ``row(u)``,
``add_centre(vec, u)`` and ``run(k, out_idx, out_r, first)``. Thread handling
for every parallel kernel lives here, in :func:`threads`.
"""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def threads(num_threads: int | None = None):
    """Run numba's parallel kernels with ``num_threads`` threads (None: numba's setting)
    and leave torch's intra-op thread count as it was.

    numba's OpenMP threading layer shares the OpenMP runtime with torch, and a
    parallel region sets its thread count; without this a selection would
    silently change the caller's ``torch.get_num_threads()``.
    """
    import torch

    n_torch = torch.get_num_threads()
    before = None
    if num_threads is not None:
        import numba

        before = numba.get_num_threads()
        numba.set_num_threads(min(num_threads, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        if before is not None:
            import numba

            numba.set_num_threads(before)
        if torch.get_num_threads() != n_torch:
            torch.set_num_threads(n_torch)
