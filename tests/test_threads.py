"""Thread choice of the numba engine: limits respected, selection independent of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import density_aware_greedy_ref

pytest.importorskip("numba")

import densecore._backends as B  # noqa: E402
from densecore import farthest_first  # noqa: E402
from densecore._backends import numba_backend  # noqa: E402
from densecore.synthetic import gaussian_mixture  # noqa: E402


@pytest.fixture
def pruned(monkeypatch):
    """The numba engine's pruned path (with its thread choice) even on small pools."""
    monkeypatch.setattr(numba_backend, "PLAIN_MAX", 0)


def test_picker_prefers_the_cheaper_mode_and_probes_back():
    p = B.ThreadPicker(2, free=lambda: 1)
    t, m = p.next(10)
    assert (t, m) == (1, B.ThreadPicker.PROBE)  # one thread first, on a short block
    p.done(t, 0.04, 2)  # serial: 0.02 s per unit
    t, m = p.next(10)
    assert (t, m) == (2, B.ThreadPicker.PROBE)
    p.done(t, 0.2, 2)  # parallel: 0.1 s per unit -> serial wins
    seen = []
    for _ in range(12):
        t, m = p.next(10)
        seen.append((t, m))
        p.done(t, (1.0 if t > 1 else 0.2), 10)
    assert seen[0] == (1, 10)
    assert (2, B.ThreadPicker.PROBE) in seen  # the parallel mode is re-tried on a short block
    assert sum(t > 1 for t, _ in seen) <= 2  # ... and not often while it keeps losing


def test_picker_never_goes_parallel_without_a_free_core_or_with_limit_one():
    busy = B.ThreadPicker(4, free=lambda: 0)
    one = B.ThreadPicker(1, free=lambda: 3)
    for p in (busy, one):
        for _ in range(50):
            t, m = p.next(10)
            assert t == 1
            p.done(t, 0.01, 10)
    p = B.ThreadPicker(8, free=lambda: 2)
    p.done(*p.next(10)[:1], 1.0, 2)
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
    assert seen[0] == 1 and seen[1] == B.thread_limit()
    assert np.array_equal(a.indices, b.indices)
    with pytest.raises(ValueError, match="num_threads"):
        farthest_first(x, 20, init=0, num_threads=0)


def test_picker_reset_times_both_modes_anew():
    p = B.ThreadPicker(2, free=lambda: 1)
    p.done(*p.next(10)[:1], 0.04, 2)
    p.done(*p.next(10)[:1], 0.01, 2)  # parallel cheaper: chosen
    assert p.next(10) == (2, 10)
    p.reset()
    assert p.next(10) == (1, B.ThreadPicker.PROBE)  # one thread first again
    p.done(1, 0.04, 2)
    assert p.next(10) == (2, B.ThreadPicker.PROBE)


def test_engine_does_not_time_the_block_with_the_hand_over(monkeypatch, pruned):
    # isotropic noise in 64 dimensions: pruning stops paying and the engine hands over
    # to dense passes inside one of the caller's blocks; that block mixes two kinds of
    # work and must not be timed, and the picker starts afresh after it
    import densecore._backends.numba_backend as NB

    timed, resets = [], []
    done, reset = B.ThreadPicker.done, B.ThreadPicker.reset

    def done_(self, threads, seconds, work):
        timed.append(work)
        done(self, threads, seconds, work)

    def reset_(self):
        resets.append(len(timed))
        reset(self)

    monkeypatch.setattr(B.ThreadPicker, "done", done_)
    monkeypatch.setattr(B.ThreadPicker, "reset", reset_)
    handed, blocks = [], []
    hand_over, picks = NB.Engine._hand_over, NB.Engine._picks
    monkeypatch.setattr(NB.Engine, "_hand_over",
                        lambda self: (handed.append(len(timed)), hand_over(self)))
    monkeypatch.setattr(NB.Engine, "_picks",
                        lambda self, *a: (blocks.append(1), picks(self, *a))[1])
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3000, 64)).astype(np.float32)
    sel = farthest_first(x, 400, init=4, backend="numba")
    ref, _ = density_aware_greedy_ref(x, 400, init=4)
    assert np.array_equal(sel.indices, ref)
    assert len(handed) == 1
    # the picker was reset at the hand-over (after the construction's reset)
    assert resets[-1] == handed[0]
    # every block was timed except the one holding the hand-over
    assert len(blocks) >= 100 and len(timed) == len(blocks) - 1
