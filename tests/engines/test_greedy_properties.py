"""Invariants of the greedy (hypothesis), and the 2-approximation of k-center greedy."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import densecore


@st.composite
def pools(draw):
    n = draw(st.integers(2, 40))
    dim = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    # coarse values make duplicates and ties common
    x = rng.integers(-3, 4, size=(n, dim)).astype(np.float32)
    dens = rng.choice([0.5, 1.0, 2.0, 3.0], size=n)
    n_lab = draw(st.integers(0, n - 1))
    labeled = rng.choice(n, size=n_lab, replace=False)
    budget = draw(st.integers(0, n - n_lab))
    return x, dens, labeled, budget


@settings(max_examples=60, deadline=None)
@given(pools(), st.booleans(), st.sampled_from(["numba", "torch"]))
def test_invariants(pool, density_aware, backend):
    x, dens, labeled, budget = pool
    kw = {"densities": dens} if density_aware else {}
    sel = densecore.farthest_first(x, budget, labeled=labeled, backend=backend, seed=1, **kw)
    idx = sel.indices.tolist()
    assert len(idx) == budget                       # exact budget
    assert len(set(idx)) == budget                  # no repeats
    assert not set(idx) & set(labeled.tolist())     # none labeled
    assert all(a >= b for a, b in zip(sel.radii, sel.radii[1:]))  # radii never increase
    again = densecore.farthest_first(x, budget, labeled=labeled, backend=backend, seed=1, **kw)
    assert again.indices.tolist() == idx            # deterministic


def _radius(x, centres):
    d = np.sqrt(((x[:, None, :] - x[list(centres)][None]) ** 2).sum(-1))
    return d.min(1).max()


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4))
def test_kcenter_within_twice_the_optimal_radius(seed, k):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(9, 2)).astype(np.float64)
    sel = densecore.KCenterGreedy(seed=seed).select(x, k)
    greedy = _radius(x, sel.indices)
    best = min(_radius(x, c) for c in itertools.combinations(range(len(x)), k))
    assert greedy <= 2 * best + 1e-9
