"""The numba engine's features in arena order (``Engine.xa``): reads from the copy give
the selection of the float64 reference, through area moves and arena compaction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import densecore
import densecore._backends.numba_backend as NB
from reference import density_aware_greedy_ref, replay_check
from test_hostile import hostile


def _mixture(n=900, dim=12, seed=3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, dim)) * 4.0
    x = centres[rng.integers(0, 6, n)] + rng.normal(size=(n, dim)) * rng.uniform(0.2, 1.5)
    x[500:560] = x[:60]  # duplicates
    x[600:620] = np.round(x[600:620])  # exact ties after rounding
    return x.astype(np.float32)


@pytest.mark.parametrize("density_aware", [False, True])
@pytest.mark.parametrize("labeled", [False, True])
def test_arena_copy_matches_the_reference(monkeypatch, density_aware, labeled):
    monkeypatch.setattr(NB, "_ARENA_MIN_PICKS", 0)
    monkeypatch.setattr(NB, "_DENSE_SWITCH", 2.0)  # pruned path throughout
    x = _mixture()
    rng = np.random.default_rng(4)
    dens = rng.uniform(0.5, 3.0, len(x)) if density_aware else None
    kw = {}
    if labeled:
        kw = dict(labeled=np.arange(40, 70),
                  labeled_features=(rng.normal(size=(5, 12)) * 2).astype(np.float32),
                  labeled_densities=rng.uniform(0.5, 3.0, 5) if density_aware else None)
    sel = densecore.farthest_first(x, 300, densities=dens, init=None if labeled else 4,
                                   backend="numba", **kw)
    ref_idx, _ = density_aware_greedy_ref(x, 300, densities=dens,
                                          init=None if labeled else 4, **kw)
    np.testing.assert_array_equal(sel.indices, ref_idx)


def test_arena_rows_follow_the_points_through_moves_and_compaction(monkeypatch):
    monkeypatch.setattr(NB, "_ARENA_MIN_PICKS", 0)
    monkeypatch.setattr(NB, "_DENSE_SWITCH", 2.0)
    x = _mixture(n=700, dim=5, seed=8)
    n = len(x)
    eng = NB.Engine(torch.from_numpy(x), torch.ones(n, dtype=torch.float64),
                    torch.zeros((0, 5)), torch.zeros(0, dtype=torch.float64),
                    torch.zeros(n, dtype=torch.bool), 200)
    out_idx = torch.zeros(200, dtype=torch.int64)
    out_r = torch.zeros(200, dtype=torch.float64)
    compacted = False
    for k in range(0, 200, 25):
        tail = int(eng.state[3])
        eng.run(25, out_idx, out_r, first=0 if k == 0 else -1)
        compacted |= int(eng.state[3]) < tail
        for a in range(int(eng.state[2])):
            s, e = int(eng.a_start[a]), int(eng.a_end[a])
            np.testing.assert_array_equal(eng.xa[s:e], x[eng.order[s:e]])
    assert compacted  # the arena ran out of tail room at least once


def test_arena_copy_is_dropped_at_the_dense_hand_over(monkeypatch, caplog):
    monkeypatch.setattr(NB, "_ARENA_MIN_PICKS", 0)
    monkeypatch.setattr(NB, "_WARMUP", 0)
    monkeypatch.setattr(NB, "_DENSE_SWITCH", -1.0)
    x = _mixture(n=700, dim=4)
    with caplog.at_level("DEBUG", logger="densecore._backends.numba_backend"):
        sel = densecore.farthest_first(x, 120, init=2, backend="numba")
    assert "dense passes" in caplog.text
    ref_idx, _ = density_aware_greedy_ref(x, 120, init=2)
    np.testing.assert_array_equal(sel.indices, ref_idx)


@settings(max_examples=30, deadline=None)
@given(hostile(), st.booleans())
def test_arena_copy_on_hostile_numbers(case, pruned_only):
    x, dens, labeled, lf, ld, budget = case
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(NB, "_ARENA_MIN_PICKS", 0)
        if pruned_only:
            mp.setattr(NB, "_DENSE_SWITCH", 2.0)
        sel = densecore.farthest_first(x, budget, backend="numba", densities=dens,
                                       labeled=labeled, labeled_features=lf,
                                       labeled_densities=ld, seed=3)
    idx = sel.indices
    assert len(set(idx.tolist())) == budget
    init = int(idx[0]) if len(labeled) == 0 and lf is None else None
    replay_check(x, idx, densities=dens, labeled=labeled, labeled_features=lf,
                 labeled_densities=ld, init=init, rtol=1e-4, atol=0.0)
