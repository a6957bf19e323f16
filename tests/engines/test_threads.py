"""Thread choice of the numba engine: limits respected, selection independent of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import density_aware_greedy_ref

pytest.importorskip("numba")

import densecore._backends as B  # noqa: E402
from densecore import farthest_first  # noqa: E402
from densecore._backends.numba import engine as numba_engine  # noqa: E402
from densecore._backends.numba import handover  # noqa: E402
from densecore.synthetic import gaussian_mixture  # noqa: E402


@pytest.fixture
def pruned(monkeypatch):
    """The numba engine's pruned path (with its thread choice) even on small pools."""
    monkeypatch.setattr(numba_engine, "PLAIN_MAX", 0)


def _drive(p, blocks, cost):
    """Run ``blocks`` blocks of at most 10 picks through picker ``p``; ``cost(i, threads,
    picks)`` is the block's seconds per unit of work. Returns the ``(threads, picks)``
    of every block."""
    seen = []
    for i in range(blocks):
        t, m = p.next(10)
        seen.append((t, m))
        p.done(t, cost(i, t, m) * m, m)
    return seen


def test_picker_trial_is_serial_then_wake_up_then_parallel():
    P = B.ThreadPicker.PROBE
    p = B.ThreadPicker(2, free=lambda: 1)
    seen = _drive(p, 3 * B.ThreadPicker.KEEP, lambda i, t, m: 1.0 if t == 1 else 0.5)
    assert seen[:3] == [(1, P), (2, 1), (2, P)]  # one thread first, one untimed pick
    assert seen == seen[:3] * B.ThreadPicker.KEEP  # the first trials run back to back
    assert p.best == "parallel" and p.next(10) == (2, 10)


def test_picker_compares_adjacent_blocks_not_costs_from_different_times():
    # the cost per unit drifts 30x over the run (the picks read ever fewer points per
    # unit of bookkeeping, the machine's load changes) while the parallel mode always
    # costs 0.7 of the serial block next to it: parallel is chosen and kept
    p = B.ThreadPicker(2, free=lambda: 1)
    seen = _drive(p, 600, lambda i, t, m: (1.0 + i / 20) * (0.7 if t > 1 else 1.0))
    rest = seen[3 * B.ThreadPicker.KEEP:]
    assert all(t == 2 for t, m in rest if m == 10)
    # trials keep coming, ever more rarely while they agree
    serial_halves = [i for i, (t, m) in enumerate(rest) if t == 1]
    assert 2 <= len(serial_halves) <= 12
    gaps = np.diff(serial_halves)
    assert (gaps[1:] >= gaps[:-1]).all()


def test_picker_keeps_one_thread_while_parallel_loses_and_retries_rarely():
    p = B.ThreadPicker(2, free=lambda: 1)
    seen = _drive(p, 400, lambda i, t, m: 3.0 if t > 1 else 1.0)
    assert p.best == "serial"
    full = [t for t, m in seen if m == 10]
    assert full and all(t == 1 for t in full)
    assert sum(t > 1 for t, _ in seen) <= 3 * B.ThreadPicker.KEEP + 2 * 8


def test_picker_is_not_swayed_by_one_outlying_trial_or_the_wake_up_pick():
    p = B.ThreadPicker(2, free=lambda: 1)
    trial = [0]

    def cost(i, t, m):
        if t > 1 and m == 1:
            return 5.0  # waking sleeping threads: not timed
        if t > 1:
            trial[0] += 1
            return 80.0 if trial[0] == 5 else 0.6  # one trial under a passing load
        return 1.0

    seen = _drive(p, 300, cost)
    assert trial[0] >= 6 and p.best == "parallel"
    assert sum(t == 1 and m == 10 for t, m in seen) == 0


def test_picker_never_goes_parallel_without_a_free_core_or_with_limit_one():
    busy = B.ThreadPicker(4, free=lambda: 0)
    one = B.ThreadPicker(1, free=lambda: 3)
    for p in (busy, one):
        for _ in range(50):
            t, m = p.next(10)
            assert t == 1
            p.done(t, 0.01, 10)
    p = B.ThreadPicker(8, free=lambda: 2)
    p.done(*p.next(10), 1.0)  # the trial's serial half
    assert p.next(10)[0] == 3  # 1 + free cores


def test_thread_limit_follows_torch_and_numba_settings():
    import numba

    nt, nn = torch.get_num_threads(), numba.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert B.thread_limit() == 1
    finally:
        torch.set_num_threads(nt)
    with B.threads(1):
        assert B.thread_limit() == 1
    assert numba.get_num_threads() == nn


@pytest.mark.parametrize("pattern", [(1,), (2,), (2, 1, 1, 2, 1)])
def test_selection_does_not_depend_on_the_thread_schedule(monkeypatch, pattern, pruned):
    import numba

    x, _ = gaussian_mixture(3000, 8, 6, seed=3)
    x[:300] = x[300:600]  # duplicates (exact ties)
    dens = np.random.default_rng(4).uniform(0.5, 3.0, 3000)
    calls = []

    def next_(self, k):
        t = min(pattern[len(calls) % len(pattern)], numba.config.NUMBA_NUM_THREADS)
        calls.append(t)
        return t, min(k, 3)

    monkeypatch.setattr(B.ThreadPicker, "next", next_)
    before = numba.get_num_threads()
    sel = farthest_first(x, 120, densities=dens, init=5, backend="numba")
    ref, _ = density_aware_greedy_ref(x, 120, densities=dens, init=5)
    assert np.array_equal(sel.indices, ref)
    assert len(calls) >= 40  # blocks of 3 picks, each with its scheduled thread count
    assert numba.get_num_threads() == before  # the caller's setting is left as it was


def test_num_threads_argument_caps_the_engine(monkeypatch, pruned):
    seen = []
    orig = B.ThreadPicker.__init__

    def init(self, limit, free=B.free_cores):
        seen.append(limit)
        orig(self, limit, free)

    monkeypatch.setattr(B.ThreadPicker, "__init__", init)
    x, _ = gaussian_mixture(500, 4, 3, seed=0)
    a = farthest_first(x, 20, init=0, backend="numba", num_threads=1)
    b = farthest_first(x, 20, init=0, backend="numba")
    lim = B.thread_limit()
    assert seen == [1, 1, lim, lim]  # a picker per mode (pruned, dense) of each engine
    assert np.array_equal(a.indices, b.indices)
    with pytest.raises(ValueError, match="num_threads"):
        farthest_first(x, 20, init=0, num_threads=0)


def test_picker_settles_at_once_when_the_parallel_side_is_far_dearer():
    # other processes hold the cores (the count of runnable tasks missed them): the
    # wake-up pick already costs 50 times a serial one; the trial ends there, the
    # first trials do not run back to back, and the parallel mode costs few picks
    p = B.ThreadPicker(2, free=lambda: 1)
    seen = _drive(p, 100, lambda i, t, m: 50.0 if t > 1 else 1.0)
    assert seen[:4] == [(1, B.ThreadPicker.PROBE), (2, 1), (1, 10), (1, 10)]
    assert p.best == "serial"
    assert sum(m for t, m in seen if t > 1) <= 6  # a few wake-up picks, ever rarer


def test_picker_reset_compares_both_modes_anew():
    P = B.ThreadPicker.PROBE
    p = B.ThreadPicker(2, free=lambda: 1)
    _drive(p, 3 * B.ThreadPicker.KEEP, lambda i, t, m: 1.0 if t == 1 else 0.5)
    assert p.next(10) == (2, 10)
    p.reset()
    assert p.next(10) == (1, P)  # a trial again, one thread first
    p.done(1, 1.0, P)
    assert p.next(10) == (2, 1)


def test_engine_does_not_time_a_block_with_a_mode_swap(monkeypatch, pruned):
    # isotropic noise in 64 dimensions: pruning stops paying and the engine swaps to
    # dense passes inside one of the caller's blocks (and may swap back on a trial);
    # such a block mixes two kinds of work and must not be timed, and each mode keeps
    # its own thread picker
    NE = numba_engine
    timed = []
    done = B.ThreadPicker.done

    def done_(self, threads, seconds, work):
        timed.append(id(self))
        done(self, threads, seconds, work)

    monkeypatch.setattr(B.ThreadPicker, "done", done_)
    # the estimated build and dense costs made negligible: the rule does not build for
    # 3,000 points otherwise
    monkeypatch.setattr(handover, "BUILD_SECONDS", 1e-12)
    monkeypatch.setattr(handover, "DENSE_SECONDS", 0.0)
    swapped, blocks = [], []
    follow, picks = NE.Engine._follow, NE.Engine._picks

    def follow_(self):
        before = self.mode.name
        follow(self)
        if self.mode.name != before:
            swapped.append(len(blocks))

    monkeypatch.setattr(NE.Engine, "_follow", follow_)
    monkeypatch.setattr(NE.Engine, "_picks",
                        lambda self, *a: (blocks.append(1), picks(self, *a))[1])
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3000, 64)).astype(np.float32)
    # with a progress bar the driver calls the engine in 100 blocks (one without)
    sel = farthest_first(x, 400, init=4, backend="numba", progress=True)
    ref, _ = density_aware_greedy_ref(x, 400, init=4)
    assert np.array_equal(sel.indices, ref)
    assert swapped  # handed over at least once
    # every block was timed except those holding a swap
    assert len(blocks) >= 100 and len(timed) == len(blocks) - len(set(swapped))
    assert len(set(timed)) == 2  # both modes' pickers were timed


def test_the_driver_calls_the_engine_once_without_a_progress_bar(monkeypatch):
    # the blocks are only for the bar: each call re-enters the engine's thread picker
    calls = []
    run = numba_engine.Engine.run
    monkeypatch.setattr(numba_engine.Engine, "run",
                        lambda self, k, *a: (calls.append(k), run(self, k, *a))[1])
    x, _ = gaussian_mixture(3000, dim=8, seed=3)
    farthest_first(x, 300, init=0, backend="numba")
    assert calls == [299]
    calls.clear()
    farthest_first(x, 300, init=0, backend="numba", progress=True)
    assert len(calls) == 100 and sum(calls) == 299
