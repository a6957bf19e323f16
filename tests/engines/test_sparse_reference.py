"""The sparse engines of the table against the float64 brute force on the densified
rows: CSR Gaussian mixtures with duplicates, exact ties (integer values), labeled
points in and out of the pool, and a budget past the pickable points."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import densecore
from densecore import engines, greedy
from reference import density_aware_greedy_ref, replay_check, table_engines

BACKENDS = table_engines("sparse")


def csr_mixture(seed, n=240, dim=48, keep=0.25, integer=False):
    """``(n, dim)`` CSR rows of a 4-component Gaussian mixture, each component on its own
    random columns (about ``keep`` of them), with duplicate rows, an all-zero row and
    one row wider than the others; ``integer``: values rounded to integers (exact
    squared distances, so many exact ties)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(4, dim)) * 4.0
    support = rng.random((4, dim)) < keep
    z = rng.integers(4, size=n)
    x = (means[z] + rng.normal(size=(n, dim))) * support[z]
    x *= rng.random((n, dim)) < 0.8  # rows of one component differ in their columns too
    if integer:
        x = np.round(x)
    x[rng.integers(n, size=15)] = x[rng.integers(n, size=15)]  # duplicates
    x[9] = 0.0
    x[17, : dim // 2] = 3.0 if integer else rng.normal(size=dim // 2)
    return sp.csr_matrix(x)


def wide_labeled(seed, dim, integer):
    """Two out-of-pool labeled rows with most columns non-zero (wider than any pool row,
    so an engine may split them; some columns of the pool off them)."""
    v = np.random.default_rng(seed).normal(size=(2, dim)) * 2.0
    if integer:
        return np.round(v)
    v[:, ::6] = 0.0
    return v


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_integer_mixture_is_the_reference_exactly(backend, seed):
    a = csr_mixture(seed, integer=True)
    x = a.toarray()
    dens = np.random.default_rng(seed).choice([0.5, 1.0, 2.0, 4.0], a.shape[0])
    lf = wide_labeled(seed, a.shape[1], True)
    ld = np.array([1.0, 2.0])
    for kw, ref_kw in (({}, {}), ({"densities": dens, "labeled_densities": ld},
                                  {"densities": dens, "labeled_densities": ld})):
        budget = a.shape[0] - 3  # every unlabeled point, ties and duplicates at 0 included
        sel = densecore.farthest_first(a, budget, labeled=[2, 5, 33], labeled_features=lf,
                                       backend=backend, **kw)
        ref, radii = density_aware_greedy_ref(x, budget, labeled=[2, 5, 33],
                                              labeled_features=lf, **ref_kw)
        np.testing.assert_array_equal(sel.indices, ref)
        np.testing.assert_array_equal(sel.radii, radii)  # integer sums: no rounding


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [2, 3])
def test_float_mixture_matches_the_reference(backend, seed):
    a = csr_mixture(seed)
    x = a.toarray()
    dens = np.random.default_rng(seed).uniform(0.5, 3.0, a.shape[0])
    lf = wide_labeled(seed, a.shape[1], False)
    ld = np.array([1.5, 0.7])
    sel = densecore.farthest_first(a, 120, densities=dens, labeled=[4],
                                   labeled_features=lf, labeled_densities=ld,
                                   backend=backend)
    replay_check(x, sel.indices, dens, labeled=[4], labeled_features=lf,
                 labeled_densities=ld, rtol=1e-9, atol=0.0)
    ref, radii = density_aware_greedy_ref(x, 120, dens, labeled=[4], labeled_features=lf,
                                          labeled_densities=ld)
    np.testing.assert_allclose(sel.radii, radii, rtol=1e-12)
    # nothing labeled: the seeded first pick, then the same run as the reference
    sel = densecore.farthest_first(a, 60, densities=dens, init=17, backend=backend)
    replay_check(x, sel.indices, dens, init=17, rtol=1e-9, atol=0.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("labeled", [False, True])
def test_budget_past_the_pool_records_minus_one(backend, labeled):
    # the driver never asks for more than the pool; an engine asked anyway stops cleanly
    a = csr_mixture(4, n=60, integer=True)
    x = a.toarray()
    lab = [0, 1] if labeled else None
    pool = greedy.check(a, None, lab, backend=backend)
    eng = engines.engine(backend, "sparse")(**greedy.prepare(pool, 1.0, 1.0), max_new=70)
    idx = torch.full((70,), 99, dtype=torch.int64)
    r = torch.full((70,), 99.0, dtype=torch.float64)
    start = 0
    if not labeled:
        eng.first(3, idx, r)
        start = 1
    while start < 70:  # in blocks, like the driver
        k = min(13, 70 - start)
        eng.run(k, idx, r)
        start += k
    m = 60 - len(lab or ())
    ref, radii = density_aware_greedy_ref(x, m, labeled=lab or (),
                                          init=None if labeled else 3)
    np.testing.assert_array_equal(idx[:m].numpy(), ref)
    np.testing.assert_array_equal(r[1 - labeled:m].numpy(), radii[1 - labeled:])
    assert idx[m:].tolist() == [-1] * (70 - m) and r[m:].tolist() == [-1.0] * (70 - m)
    assert eng.best().tolist() == [-1.0, -1.0]


@pytest.mark.parametrize("block", [1, 100, 1000])
def test_torch_engine_in_small_row_blocks_is_the_reference(block):
    # one row, a few rows and a partial last block per pass: the same exact picks
    from densecore._backends.sparse_backend import TorchEngine

    a = csr_mixture(5, n=90, integer=True)
    x = a.toarray()
    lf = wide_labeled(5, a.shape[1], True)
    dens = np.random.default_rng(5).choice([0.5, 1.0, 2.0], a.shape[0])
    pool = greedy.check(a, dens, [6], labeled_features=lf, labeled_densities=np.ones(2),
                        backend="torch")
    eng = TorchEngine(**greedy.prepare(pool, 1.0, 1.0), max_new=89, block=block)
    assert len(eng.blocks) > 1
    idx = torch.empty(89, dtype=torch.int64)
    r = torch.empty(89, dtype=torch.float64)
    eng.run(89, idx, r)
    ref, radii = density_aware_greedy_ref(x, 89, dens, labeled=[6], labeled_features=lf,
                                          labeled_densities=np.ones(2))
    np.testing.assert_array_equal(idx.numpy(), ref)
    np.testing.assert_array_equal(r.numpy(), radii)
    for u in (0, 9, 17):  # a point's dense row: its features, then its density
        np.testing.assert_array_equal(eng.row(torch.tensor(u)).numpy(),
                                      np.append(x[u], dens[u]))
