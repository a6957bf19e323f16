"""Engines and the nearest-centre search: plain modules, numba and faiss imported lazily.

Every engine implements one interface (see :mod:`densecore.greedy`):
``Engine(x, dens, centres, cdens, excluded, max_new)``, ``best()``, ``row(u)``,
``add_centre(vec, u)`` and ``run(k, out_idx, out_r, first)``. Thread handling
for every parallel kernel lives here: :func:`threads` (the caller's limit for
one call), :func:`thread_limit` and :class:`ThreadPicker` (how many of those
threads a block of picks gets, from measured cost).
"""

from __future__ import annotations

import os
import time
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


def thread_limit() -> int:
    """Most threads a parallel kernel may use now: the smallest of numba's and torch's
    thread settings (so ``torch.set_num_threads(1)`` in a data-loader worker, or a
    ``num_threads`` argument through :func:`threads`, is respected) and the cores
    this process may run on.

    Example:
        >>> thread_limit() >= 1
        True
    """
    import numba
    import torch

    n = min(numba.get_num_threads(), torch.get_num_threads())
    if hasattr(os, "sched_getaffinity"):
        n = min(n, len(os.sched_getaffinity(0)))
    return max(1, n)


def free_cores() -> int | None:
    """Cores not running anything right now besides the caller, from the kernel's count
    of runnable tasks (``/proc/loadavg``); None where that count is not available.

    Example:
        >>> n = free_cores()
        >>> n is None or n >= 0
        True
    """
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, cores - max(running - 1, 0))


class ThreadPicker:
    """Choose, block by block, between one thread and several by measured cost.

    On an idle machine a parallel region per pick pays; when other processes
    keep the cores busy, every region waits for its slowest (descheduled)
    thread and one thread is many times faster (``benchmarks/speed.py
    --contention``: 50 ms instead of 2 ms per pick). The picker times each
    block of work in the mode it ran in (seconds per unit of ``work``, e.g.
    feature rows read), runs the cheaper mode, and re-tries the other on a
    short probe block after ``gap`` blocks; the gap doubles every time the
    probe is taken (the parallel mode must cost below ``MARGIN`` of the serial one
    to be chosen). Both modes are first timed
    on short blocks, one thread first (a parallel block on a busy machine can
    cost many times a serial one). The parallel mode gets
    ``min(limit, 1 + free cores)`` threads when it starts or is probed, and
    is neither started nor probed while :func:`free_cores` reports no free core (a probe under full
    contention costs more than it can win back). The selection does not
    depend on the thread count, only its speed.

    Args:
        limit: most threads (:func:`thread_limit`); 1 disables the choice.
        free: a function returning the free cores now or None (tests pass their own).

    Example:
        >>> p = ThreadPicker(4, free=lambda: 3)
        >>> t, m = p.next(10)
        >>> p.done(t, 1.0, m); t2, m2 = p.next(10); p.done(t2, 2.0, m2)
        >>> (t, m, t2, m2, p.next(10))
        (1, 2, 4, 2, (1, 10))
    """

    PROBE = 2  # picks in a probe block
    GAP = 4  # blocks between probes after a swap
    MAX_GAP = 256
    MARGIN = 0.8  # parallel is chosen when it costs below this share of serial

    def __init__(self, limit: int, free=free_cores):
        self.limit = max(1, int(limit))
        self.free = free
        self.reset()

    def reset(self) -> None:
        """Forget the measured costs (the unit of work changed): both modes are timed
        again, one thread first."""
        self.cost = {"serial": None, "parallel": None}
        self.best = "serial"
        self.gap = self.GAP
        self.since = 0
        self._probing = False

    def _parallel_threads(self) -> int:
        """Threads to start or probe the parallel mode with; 1 when no other core is
        free in any of three looks (the count of runnable tasks is a snapshot)."""
        f = [self.free() for _ in range(3)]
        if any(v is None for v in f):
            return self.limit
        return min(self.limit, 1 + max(f))

    def next(self, k: int) -> tuple[int, int]:
        """``(threads, picks)`` for the next block of at most ``k`` picks."""
        if self.limit == 1:
            return 1, k
        if self.cost["serial"] is None:  # first a short block on one thread (safe)
            return 1, min(k, self.PROBE)
        if self.cost["parallel"] is None or (self.best == "serial" and self.since >= self.gap):
            t = self._parallel_threads()
            if t > 1:
                self._probing = self.cost["parallel"] is not None
                return t, min(k, self.PROBE)
            return 1, k
        if self.since >= self.gap:
            self._probing = True
            return 1, min(k, self.PROBE)
        # While the parallel mode is the cheaper one its own worker threads may show
        # as runnable; the measured cost, not the snapshot, decides whether to leave it.
        return (1, k) if self.best == "serial" else (self.limit, k)

    def done(self, threads: int, seconds: float, work: float) -> None:
        """Record that a block run with ``threads`` took ``seconds`` for ``work`` units."""
        mode = "parallel" if threads > 1 else "serial"
        c = seconds / max(work, 1.0)
        old = self.cost[mode]
        self.cost[mode] = c if old is None else 0.5 * (old + c)
        if self._probing:
            self._probing = False
            self.since = 0
            self.gap = min(2 * self.gap, self.MAX_GAP)
        else:
            self.since += 1
        cs, cp = self.cost["serial"], self.cost["parallel"]
        # parallel must win clearly: its cost swings with the other processes' load
        best = "parallel" if cs is not None and cp is not None and cp < self.MARGIN * cs \
            else "serial"
        if best != self.best:
            self.best = best
            self.since = 0  # the gap keeps growing: a machine whose load comes and
            # goes would otherwise swap modes every few blocks


def timed(fn, *args):
    """``(seconds, fn(*args))``."""
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out
