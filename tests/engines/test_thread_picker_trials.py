"""ThreadPicker's decisions from injected readings: the free-core looks and the count of
blocks between trials (timing only: the selection never depends on them, so these
are the tests that notice when they change)."""

from __future__ import annotations

import itertools

import pytest

from densecore._backends import ThreadPicker


def _looks(*values):
    it = itertools.cycle(values)
    return lambda: next(it)


@pytest.mark.parametrize("looks, want", [((0, 3, 1), 4), ((2, 0, 0), 3), ((0, 0, 0), 1),
                                         ((7, 7, 9), 8)])
def test_parallel_half_takes_one_more_than_the_most_free_cores_seen(looks, want):
    """Three looks at the free cores (a snapshot each): the parallel half of a trial gets
    ``min(limit, 1 + max(looks))`` threads; no free core in any look: no trial."""
    p = ThreadPicker(8, free=_looks(*looks))
    t, m = p.next(10)
    if want == 1:
        assert (t, m) == (1, 10) and p.ratios == [float("inf")] * ThreadPicker.KEEP
        return
    assert (t, m) == (1, ThreadPicker.PROBE)  # the serial half first
    p.done(t, 1.0, m)
    t, m = p.next(10)
    assert (t, m) == (want, 1)  # the untimed wake-up pick, on the trial's threads
    p.done(t, 1.0, m)
    assert p.next(10) == (want, ThreadPicker.PROBE)


def _run(p, trials, cost):
    """Drive ``p`` with blocks of up to 10 picks until ``trials`` trials have run;
    ``cost(threads)`` is the seconds per pick. Returns the count of ordinary blocks
    before each trial."""
    gaps, plain = [], 0
    while True:
        t, m = p.next(10)
        if t == 1 and m == ThreadPicker.PROBE:  # a trial's serial half starts
            if len(gaps) == trials:
                return gaps
            gaps.append(plain)
            plain = 0
        elif m == 10:
            plain += 1
        p.done(t, cost(t) * m, m)


def test_blocks_between_trials_double_while_trials_agree():
    p = ThreadPicker(4, free=lambda: 3)
    gaps = _run(p, 8, lambda t: 2.0 if t == 1 else 1.0)  # parallel at half the cost
    # KEEP trials back to back, then 16, 32, ... blocks apart, at most MAX_GAP
    assert ThreadPicker.KEEP == 3 and ThreadPicker.GAP == 4 and ThreadPicker.MAX_GAP == 256
    assert gaps[:8] == [0, 0, 0, 16, 32, 64, 128, 256]
    assert p.best == "parallel"


def test_a_disagreeing_trial_brings_the_gap_back():
    p = ThreadPicker(4, free=lambda: 3)
    assert _run(p, 5, lambda t: 2.0 if t == 1 else 1.0) == [0, 0, 0, 16, 32]
    # parallel now costs twice the serial from the trial that has just started (the
    # first gap, 0, is that trial, drawn above): it disagrees and the gap falls back to
    # GAP; the next makes serial the choice (median of 0.5, 2, 2), a change, so GAP
    # again; then the gap doubles while the trials agree
    gaps = _run(p, 5, lambda t: 2.0 if t == 1 else 4.0)
    assert gaps == [0, 4, 4, 8, 16]
    assert p.best == "serial"
