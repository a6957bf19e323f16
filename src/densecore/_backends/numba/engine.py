"""The numba engine: one class over its modes (:mod:`.modes`), exact on the CPU.

Pools of at most :data:`PLAIN_MAX` points run the plain mode, candidate weights the
weighted mode; the others start pruned and hand over to dense passes (and back) as
:class:`.handover.HandOver` decides: a hand-over is a swap of the mode object,
built from the other's r and centre per point. The thread count of each block of
picks comes from a :class:`densecore._backends.ThreadPicker` per mode (a dense
pick's cost is per live point, a pruned one's per feature row read).

Shape:
    features ``(N, D)`` float32/float64 C-contiguous; densities ``(N,)`` float64;
    centres ``(L, D)``, centre densities ``(L,)``.
"""

from __future__ import annotations

import contextlib
import logging
import time

import numpy as np
import torch

from ..base import Engine as _Base
from . import modes as MO
from .common import PICKS, new_state
from .handover import HandOver

log = logging.getLogger(__name__)

# Pools of at most this many points run the plain mode: one serial pass per pick, no
# areas, no thread choice. benchmarks/plain.py (D = 64, 2 cores at load 9-10): plain /
# pruned time 0.05-0.30 at 1,000 points, 0.25-1.18 at 5,000, 0.60 / 1.02 at 10,000
# (budget 100 / 1,000), 0.86 / 1.15 at 20,000; the plain loop 0.5-1.3x the naive gemv
# loop there (benchmarks/README.md, "Plain loop").
PLAIN_MAX = 10_000
# Relative slack of the pruning and code tests: a point or area is skipped only when
# its bound holds with a margin well above the rounding of the engine's own distances
# (a sum of D squares in the feature dtype).
PRUNE_SLACK = 1e-4
BLOCKS = 100  # thread-picker blocks per run (at most)
# The pruned/dense rule for new engines: "auto" (.handover), or one mode fixed
# ("pruned", "dense"; what benchmarks/handover.py compares the rule with).
POLICY = "auto"


def _host(t):
    return np.ascontiguousarray(t.detach().cpu().numpy())


class Engine(_Base):
    """Exact Algorithm 1 on the CPU (the table's ``("numba", "dense")``).

    Args:
        x: ``(N, D)`` float32/float64 CPU tensor.
        dens: ``(N,)`` float64 densities (ones for k-center greedy).
        centres: ``(L, D)`` labeled points (in-pool and out-of-pool), L may be 0.
        cdens: ``(L,)`` float64 their densities.
        excluded: ``(N,)`` bool, in-pool labeled points.
        max_new: how many centres may still be added.
        weights: ``(N,)`` float64 candidate weights, or None: with them the engine
            picks ``argmax r * weight`` (the weighted mode).
    """

    host = True
    weighted = True
    devices = ("cpu",)
    search_method = "auto"  # exact search from the CPU's fast candidates (faiss when present)

    def __init__(self, x, dens, centres, cdens, excluded, max_new, weights=None):
        from .. import ThreadPicker, thread_limit
        from ..nearest import search

        n, d = x.shape
        xh = _host(x)
        ex = _host(excluded)
        n_lab = centres.shape[0]
        eps = float(np.finfo(xh.dtype).eps)
        self.sh = MO.Shared(
            x=xh, dens=_host(dens), centres=np.empty((n_lab + max_new, d), dtype=xh.dtype),
            cdens=np.empty(n_lab + max_new), state=new_state(),
            slack=PRUNE_SLACK + 4.0 * (d + 2) * eps, max_new=max_new,
            n_live=n - int(ex.sum()))
        plain = n <= PLAIN_MAX
        r = np.full(n, np.inf)
        assign = None  # each point's nearest centre (None: no centre yet)
        if n_lab:  # r against the labeled set and its nearest centre, searched once
            # small pools on one thread: a parallel region costs more than this search
            with self.threads(1) if plain else contextlib.nullcontext():
                v, a = search(x, centres, 1, weights=cdens, method=self.search_method)
            r[:] = v[:, 0].numpy()
            assign = np.ascontiguousarray(a[:, 0].numpy(), dtype=np.int64)
            del v, a
            narrow = centres.to(x.dtype)
            self.sh.centres[:n_lab] = _host(narrow)
            rounded = _host((narrow.to(centres.dtype) != centres).any(1))
            self.sh.rounded = rounded if rounded.any() else None
            self.sh.cdens[:n_lab] = _host(cdens)
            self.sh.state[MO.CENTRES] = n_lab
        self.hand = None
        self.groups = None
        self.swaps = 0
        if weights is not None:
            w = np.ascontiguousarray(_host(weights), dtype=np.float64)
            self.mode = MO.Weighted(self.sh, r, w, ex.copy())
            return
        r[ex] = -1.0
        if plain:
            self.mode = MO.Plain(self.sh, r)
            return
        self.mode = MO.Pruned(self.sh, r, assign)
        self.hand = HandOver(n, max_new, POLICY)
        # picks per thread-picker block: the picker revisits its choice block by block
        self.block = max(HandOver.WINDOW, -(-max_new // BLOCKS))
        limit = thread_limit()
        self.pickers = {"pruned": ThreadPicker(limit), "dense": ThreadPicker(limit)}

    def best(self):
        """``(2,)`` float64 tensor ``(r, index)`` of the next pick; ``(-1, -1)`` when done."""
        ru, u = self.mode.best()
        return torch.tensor([float(ru), float(u)], dtype=torch.float64)

    def row(self, u):
        """``(D + 1,)`` float64 tensor: the features of point ``u`` and its density."""
        u = int(u)
        out = np.empty(self.sh.x.shape[1] + 1)
        out[:-1] = self.sh.x[u]
        out[-1] = self.sh.dens[u]
        return torch.from_numpy(out)

    def add_centre(self, vec, u=-1) -> None:
        """Make ``vec`` ``(D + 1,)`` (features, density) a selected point; ``u`` is its
        index in this pool (removed from the pool) or -1 for a point held elsewhere."""
        v = vec.detach().cpu().numpy() if hasattr(vec, "detach") else np.asarray(vec)
        cu = np.ascontiguousarray(v[:-1], dtype=self.sh.x.dtype)
        du, u = float(v[-1]), int(u)
        if self.hand is None:
            self.mode.add(cu, du, u)
            return
        self._follow()
        t0 = time.perf_counter()
        reads = self.mode.add(cu, du, u)
        if u >= 0:
            self.sh.n_live -= 1
        self._done(1, time.perf_counter() - t0, 1, reads)

    def run(self, k: int, out_idx, out_r) -> None:
        """Make ``k`` picks of this pool alone into ``out_idx``/``out_r`` (``(budget,)``
        int64 / float64 CPU tensors).

        The pruned and dense picks run in blocks (a hundredth of the budget, at least
        one hand-over window) whose thread count the mode's :class:`ThreadPicker`
        chooses from the measured cost per unit of work (one thread on a busy
        machine); a block in which the mode changes is not timed."""
        import numba

        out_idx, out_r = out_idx.numpy(), out_r.numpy()
        if self.hand is None:  # plain: one thread; weighted: one parallel pass per pick
            self.mode.picks(k, out_idx, out_r)
            return
        before = numba.get_num_threads()
        try:
            while k > 0:
                picker = self.pickers[self.hand.mode]
                t, m = picker.next(min(k, self.block))
                numba.set_num_threads(t)
                swaps = self.swaps
                t0 = time.perf_counter()
                work = self._picks(m, out_idx, out_r, t)
                if swaps == self.swaps:
                    picker.done(t, time.perf_counter() - t0, work)
                k -= m
        finally:
            numba.set_num_threads(before)

    def _picks(self, k: int, out_idx, out_r, threads: int) -> int:
        """``k`` picks in windows, each in the mode :class:`HandOver` chose; returns the
        work done (the thread picker's unit). A window in another mode than the
        block's runs on the thread count that mode's picker has chosen (a trial
        compares each mode as it would run)."""
        import numba

        block_mode = self.hand.mode
        work = 0
        while k > 0:
            self._follow()
            if self.mode.name != block_mode:
                p = self.pickers[self.mode.name]
                threads = 1 if p.best == "serial" else p.limit
                numba.set_num_threads(threads)
                block_mode = self.mode.name
            m = self.hand.next(k)
            t0 = time.perf_counter()
            reads0 = int(self.sh.state[MO.READS])
            w = self.mode.picks(m, out_idx, out_r)
            secs = time.perf_counter() - t0
            self.sh.n_live -= m
            work += w
            self._done(m, secs, threads, int(self.sh.state[MO.READS]) - reads0)
            k -= m
        return work

    def _done(self, picks: int, secs: float, threads: int, reads: int) -> None:
        self.hand.done(self.mode.name, picks, secs, threads, reads=reads,
                       n_live=self.sh.n_live, made=int(self.sh.state[PICKS]))

    def _follow(self) -> None:
        """Swap to the mode :class:`HandOver` chose, if it is not the current one."""
        want = self.hand.mode
        if want == self.mode.name:
            return
        r, assign = self.mode.live()
        self.mode = None  # the old mode's arrays (the arena) go before the new ones come
        if want == "dense":
            if self.groups is None:
                self.groups = MO.Groups(self.sh.x, self.sh.max_new - int(self.sh.state[PICKS]))
                log.debug("pruning ineffective after %d picks; dense passes from here "
                          "(%d groups)", self.sh.state[PICKS], self.groups.g)
            self.mode = MO.Dense(self.sh, self.groups, r, assign)
        else:
            self.mode = MO.Pruned(self.sh, r, assign)
            log.debug("pruning cheaper again after %d picks", self.sh.state[PICKS])
        self.swaps += 1
