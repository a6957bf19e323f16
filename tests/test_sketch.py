"""The sketch that lets the numba engine's dense passes skip points: a true lower bound,
and the selection with it is the selection without it, on every hostile case."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import densecore
import densecore._backends.numba_backend as NB
from densecore._backends.sketch import build_sketch
from reference import density_aware_greedy_ref, replay_check
from test_hostile import hostile


def _forced(mp, dim=2):
    """Dense passes after 16 picks, with a sketch of ``dim`` directions for every pool."""
    mp.setattr(NB, "_SKETCH_MIN_N", 0)
    mp.setattr(NB, "_SKETCH_MIN_PICKS", 0)
    mp.setattr(NB, "SKETCH_DIM", dim)
    mp.setattr(NB, "_WARMUP", 0)
    mp.setattr(NB, "_DENSE_SWITCH", -1.0)


def _lower_bound(sk, t, u):
    """The kernel's bound in float64 (without its float32 shrink)."""
    rows = sk.rows.astype(np.float64)
    m = rows.shape[1] - 1
    e = 2.0 * sk.err
    ly = np.maximum(np.linalg.norm(rows[t, :m] - rows[u, :m], axis=-1) - e, 0.0)
    lr = np.maximum(np.abs(rows[t, m] - rows[u, m]) - e, 0.0)
    return ly ** 2 + lr ** 2


@pytest.mark.parametrize("offset", [0.0, 1e4])
@pytest.mark.parametrize("scale", [1e-20, 1.0, 1e15])
def test_sketch_bound_is_below_every_distance(offset, scale):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, 40)) * rng.uniform(0.1, 3.0, 40)  # a few strong directions
    x[300:330] = x[:30]  # duplicates: distance 0, bound must be 0 too
    x = ((x + offset) * scale).astype(np.float32)
    sk = build_sketch(x, 8)
    t = rng.integers(0, 600, 4000)
    u = rng.integers(0, 600, 4000)
    exact = ((x[t].astype(np.float64) - x[u].astype(np.float64)) ** 2).sum(1)
    lb = _lower_bound(sk, t, u)
    assert np.all(lb <= exact * (1 + 1e-9))
    assert np.all(lb[exact == 0] == 0)
    # and it is useful: most of the squared distance is seen by 8 of 40 directions
    assert np.median(lb[exact > 0] / exact[exact > 0]) > 0.3


def test_sketch_of_a_vector_matches_the_pool_rows():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 20)).astype(np.float32)
    sk = build_sketch(x, 4)
    assert sk.rows.shape == (300, 5) and sk.rows.ctypes.data % 64 == 0
    row, err = sk.of(x[17])
    np.testing.assert_array_equal(row, sk.rows[17])
    assert 0 < err <= sk.err


@pytest.mark.parametrize("density_aware", [False, True])
@pytest.mark.parametrize("labeled", [False, True])
def test_forced_sketch_matches_the_reference(monkeypatch, caplog, density_aware, labeled):
    _forced(monkeypatch, dim=4)
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(900, 12)) * np.linspace(3.0, 0.2, 12)).astype(np.float32)
    x[500:560] = x[:60]
    x[600:620] = np.round(x[600:620])  # some exact ties after rounding
    dens = rng.uniform(0.5, 3.0, 900) if density_aware else None
    kw = {}
    if labeled:
        kw = dict(labeled=np.arange(40, 70),
                  labeled_features=(rng.normal(size=(5, 12)) * 2).astype(np.float32),
                  labeled_densities=rng.uniform(0.5, 3.0, 5) if density_aware else None)
    with caplog.at_level("DEBUG", logger="densecore._backends.numba_backend"):
        sel = densecore.farthest_first(x, 250, densities=dens, init=None if labeled else 4,
                                       backend="numba", **kw)
    assert "dense passes" in caplog.text
    ref_idx, ref_r = density_aware_greedy_ref(x, 250, densities=dens,
                                              init=None if labeled else 4, **kw)
    np.testing.assert_array_equal(sel.indices, ref_idx)


@settings(max_examples=30, deadline=None)
@given(hostile(), st.integers(1, 3))
def test_forced_sketch_on_hostile_numbers(case, dim):
    x, dens, labeled, lf, ld, budget = case
    with pytest.MonkeyPatch.context() as mp:
        _forced(mp, dim=dim)
        if x.shape[1] <= 2 * dim:  # the engine builds a sketch only for D > 2 m
            mp.setattr(NB, "SKETCH_DIM", max(0, (x.shape[1] - 1) // 2))
        if NB.SKETCH_DIM == 0:
            return
        sel = densecore.farthest_first(x, budget, backend="numba", densities=dens,
                                       labeled=labeled, labeled_features=lf,
                                       labeled_densities=ld, seed=3)
    idx = sel.indices
    assert len(set(idx.tolist())) == budget
    init = int(idx[0]) if len(labeled) == 0 and lf is None else None
    replay_check(x, idx, densities=dens, labeled=labeled, labeled_features=lf,
                 labeled_densities=ld, init=init, rtol=1e-4, atol=0.0)
