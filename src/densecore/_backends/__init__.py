"""Engines and the nearest-centre search: plain modules, numba and faiss imported lazily.

Every engine is a subclass of :class:`.base.Engine` (re-exported as
:class:`densecore.engines.Engine`): ``Engine(x, dens, centres, cdens, excluded,
max_new)``, ``best()``, ``row(u)``, ``add_centre(vec, u)`` and
``run(k, out_idx, out_r)``, its capabilities declared as class attributes.
Thread handling for every parallel kernel lives here: :func:`threads` (the caller's limit for
one call), :func:`thread_limit` and :class:`ThreadPicker` (how many of those
threads a block of picks gets, from measured cost).
"""

from __future__ import annotations

import os
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
    """Choose, block by block, between one thread and several by paired trials.

    On an idle machine a parallel region per pick pays; when other processes
    keep the cores busy, every region waits for its slowest (descheduled)
    thread and one thread is many times faster (``benchmarks/speed.py
    --contention``: 50 ms instead of 2 ms per pick). A block's cost per unit of
    ``work`` (e.g. feature rows read) swings by 2x from block to block in one
    mode, with the picks' character and the machine, so the modes are compared
    only on *adjacent* blocks: a trial runs ``PROBE`` picks on one thread, then
    ``PROBE`` picks on several (after one untimed pick that wakes their sleeping
    threads), and records the ratio of their costs. The parallel mode is chosen
    while the median ratio of the last ``KEEP`` trials is below ``MARGIN``. The
    first ``KEEP`` trials run back to back; after that a trial runs every ``gap``
    blocks, the gap doubling while the trials agree with the choice and falling
    back to ``GAP`` when one does not. One thread goes first in a trial (a
    parallel block on a busy machine can cost many times a serial one), and the
    parallel half gets ``min(limit, 1 + free cores)`` threads; no trial runs
    while :func:`free_cores` reports no free core, and a trial whose parallel
    side costs over ``CLEAR_LOSS`` times the serial one (already on the wake-up
    pick: other processes hold the cores) ends there and counts for all
    ``KEEP``. The selection does not depend on the thread count, only its speed.

    Args:
        limit: most threads (:func:`thread_limit`); 1 disables the choice.
        free: a function returning the free cores now or None (tests pass their own).

    Example:
        >>> p = ThreadPicker(4, free=lambda: 3)
        >>> for _ in range(ThreadPicker.KEEP):  # serial half, then parallel half
        ...     for cost in (2.0, 3.0, 1.0):  # serial, the untimed wake-up, parallel
        ...         t, m = p.next(10); p.done(t, cost, m)
        >>> p.next(10)
        (4, 10)
    """

    PROBE = 4  # picks in each half of a trial
    KEEP = 3  # trials whose median ratio decides
    GAP = 4  # blocks between trials after the choice changes
    MAX_GAP = 256
    MARGIN = 0.9  # parallel is chosen when it costs below this share of serial
    CLEAR_LOSS = 10.0  # a trial this much dearer in parallel settles it (busy cores)

    def __init__(self, limit: int, free=free_cores):
        self.limit = max(1, int(limit))
        self.free = free
        self.reset()

    def reset(self) -> None:
        """Forget the trials (the unit of work changed): both modes are compared anew."""
        self.ratios: list[float] = []
        self.best = "serial"
        self.gap = self.GAP
        self.since = 0
        self._phase = None  # the trial's next block: "serial", "warm", "parallel"
        self._threads = 1  # threads of the trial's parallel half
        self._serial_cost = 0.0

    def _parallel_threads(self) -> int:
        """Threads for the parallel half of a trial; 1 when no other core is free in any
        of three looks (the count of runnable tasks is a snapshot)."""
        f = [self.free() for _ in range(3)]
        if any(v is None for v in f):
            return self.limit
        return min(self.limit, 1 + max(f))

    def next(self, k: int) -> tuple[int, int]:
        """``(threads, picks)`` for the next block of at most ``k`` picks."""
        if self.limit == 1:
            return 1, k
        if self._phase is None and (len(self.ratios) < self.KEEP or self.since >= self.gap):
            self._threads = self._parallel_threads()
            if self._threads > 1:
                self._phase = "serial"
            else:  # every core busy: one thread, and look again after a gap
                self.ratios = [float("inf")] * self.KEEP
                self.best = "serial"
                self.since = 0
        if self._phase == "serial":
            return 1, min(k, self.PROBE)
        if self._phase == "warm":
            return self._threads, 1
        if self._phase == "parallel":
            return self._threads, min(k, self.PROBE)
        # While the parallel mode is chosen its own worker threads may show as
        # runnable; the trials, not the snapshot, decide whether to leave it.
        return (1, k) if self.best == "serial" else (self.limit, k)

    def done(self, threads: int, seconds: float, work: float) -> None:
        """Record that a block run with ``threads`` took ``seconds`` for ``work`` units."""
        c = seconds / max(work, 1.0)
        if self._phase is None:
            self.since += 1
        elif self._phase == "serial":
            self._serial_cost = max(c, 1e-300)
            self._phase = "warm"
        elif self._phase == "warm":  # not timed: waking the pool's sleeping threads is
            self._phase = "parallel"  # not what the parallel mode costs, unless it is
            if c / self._serial_cost > self.CLEAR_LOSS:  # so slow that cores are busy
                self._end_trial(c / self._serial_cost)
        else:
            self._end_trial(c / self._serial_cost)

    def _end_trial(self, ratio: float) -> None:
        """Record a trial's ratio (parallel cost / serial cost) and choose the mode."""
        self._phase = None
        if ratio > self.CLEAR_LOSS:  # decisive: no more trials back to back
            self.ratios = [ratio] * self.KEEP
        else:
            self.ratios = (self.ratios + [ratio])[-self.KEEP:]
        best = "parallel" if sorted(self.ratios)[len(self.ratios) // 2] < self.MARGIN \
            else "serial"
        # the gap grows while the trials agree with the choice (a machine whose
        # load comes and goes would otherwise swap modes every few blocks) and
        # shrinks when one disagrees, so that a passing load is not remembered long
        agree = best == self.best and (ratio < self.MARGIN) == (best == "parallel")
        self.gap = min(2 * self.gap, self.MAX_GAP) if agree else self.GAP
        self.best = best
        self.since = 0
