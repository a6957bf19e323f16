"""Every backend against the float64 brute-force reference of Algorithm 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import densecore
from densecore.synthetic import gaussian_mixture
from reference import density_aware_greedy_ref, replay_check, table_engines

from densecore._backends.numba import engine as numba_engine

# every CPU engine of the table; the numba engine in its plain, pruned and dense modes
ENGINES = [v for name in table_engines()
           for v in ((f"{name}-plain", f"{name}-pruned", f"{name}-dense") if name == "numba"
                     else (name,))]


@pytest.fixture(params=ENGINES)
def backend(request, monkeypatch):
    """Each engine; the numba engine with its plain loop forced on, and off with pruning
    only or dense passes only."""
    name, _, mode = request.param.partition("-")
    if mode:
        monkeypatch.setattr(numba_engine, "PLAIN_MAX", 10**9 if mode == "plain" else 0)
        monkeypatch.setattr(numba_engine, "POLICY", "dense" if mode == "dense" else "pruned")
    return name


def _mixture(n=1500, dim=6, duplicates=0.1, seed=0):
    x, _ = gaussian_mixture(n, dim=dim, n_components=6, duplicates=duplicates, seed=seed)
    dens = np.random.default_rng(seed).uniform(0.5, 3.0, size=n)
    return x, dens


def _lattice(seed=0):
    """Integer points with power-of-two densities: every distance is exact, so
    ties are exact ties in every backend and must go to the lowest index."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, size=(400, 3)).astype(np.float32)
    dens = 2.0 ** rng.integers(-1, 3, size=400)
    return x, dens


@pytest.mark.parametrize("density_aware", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_mixture_with_duplicates_matches_reference(backend, density_aware, seed):
    x, dens = _mixture(seed=seed)
    d = dens if density_aware else None
    sel = densecore.farthest_first(x, 200, densities=d, init=7, backend=backend)
    strict = replay_check(x, sel.indices, densities=d, init=7)
    assert strict > 150  # most steps have a unique maximum, and all of those matched
    ref_idx, ref_r = density_aware_greedy_ref(x, 200, densities=d, init=7)
    np.testing.assert_array_equal(sel.indices, ref_idx)
    np.testing.assert_allclose(sel.radii[1:], ref_r[1:], rtol=1e-4, atol=1e-6)
    assert np.isinf(sel.radii[0])


@pytest.mark.parametrize("density_aware", [False, True])
def test_exact_ties_go_to_lowest_index(backend, density_aware):
    x, dens = _lattice()
    d = dens if density_aware else None
    sel = densecore.farthest_first(x, 150, densities=d, init=0, backend=backend)
    ref_idx, ref_r = density_aware_greedy_ref(x, 150, densities=d, init=0)
    np.testing.assert_array_equal(sel.indices, ref_idx)
    np.testing.assert_array_equal(sel.radii[1:], ref_r[1:].astype(np.float32))


@pytest.mark.parametrize("density_aware", [False, True])
def test_labeled_in_pool_and_out_of_pool(backend, density_aware):
    x, dens = _mixture(n=1200, seed=3)
    rng = np.random.default_rng(3)
    labeled = rng.choice(len(x), size=40, replace=False)
    lf = rng.normal(scale=3.0, size=(25, x.shape[1])).astype(np.float32)
    ld = rng.uniform(0.5, 3.0, size=25)
    kw = dict(densities=dens, labeled_densities=ld) if density_aware else {}
    sel = densecore.farthest_first(x, 150, labeled=labeled, labeled_features=lf,
                                   backend=backend, **kw)
    assert not set(sel.indices.tolist()) & set(labeled.tolist())
    ref_idx, ref_r = density_aware_greedy_ref(
        x, 150, densities=kw.get("densities"), labeled=labeled, labeled_features=lf,
        labeled_densities=kw.get("labeled_densities"))
    replay_check(x, sel.indices, densities=kw.get("densities"), labeled=labeled,
                 labeled_features=lf, labeled_densities=kw.get("labeled_densities"))
    np.testing.assert_array_equal(sel.indices, ref_idx)
    np.testing.assert_allclose(sel.radii, ref_r, rtol=1e-4, atol=1e-6)


def test_float64_features(backend):
    x, dens = _mixture(n=800, seed=5)
    x64 = x.astype(np.float64)
    sel = densecore.farthest_first(x64, 100, densities=dens, init=3, backend=backend)
    ref_idx, ref_r = density_aware_greedy_ref(x64, 100, densities=dens, init=3)
    np.testing.assert_array_equal(sel.indices, ref_idx)
    np.testing.assert_allclose(sel.radii[1:], ref_r[1:], rtol=1e-9)
    assert sel.radii.dtype == np.float64


def test_budget_equal_to_pool_and_all_duplicates(backend):
    x = np.zeros((30, 4), np.float32)
    x[15:] = 1.0
    sel = densecore.farthest_first(x, 28, labeled=[0, 29], backend=backend)
    ref_idx, _ = density_aware_greedy_ref(x, 28, labeled=[0, 29])
    np.testing.assert_array_equal(sel.indices, ref_idx)
    # all remaining points are duplicates of a labeled one: r = 0, lowest index first
    assert sel.indices.tolist() == sorted(sel.indices.tolist())


def test_torch_tensor_in_tensor_out(device):
    x, dens = _mixture(n=600, seed=2)
    xt = torch.from_numpy(x).to(device)
    dt = torch.from_numpy(dens).to(device)
    sel = densecore.DensityAwareGreedy(backend="torch").select(xt, 50, densities=dt, init=1)
    assert isinstance(sel.indices, torch.Tensor) and sel.indices.device == xt.device
    assert sel.indices.dtype == torch.int64 and sel.radii.dtype == torch.float32
    ref_idx, _ = density_aware_greedy_ref(x, 50, densities=dens, init=1)
    np.testing.assert_array_equal(sel.indices.cpu().numpy(), ref_idx)
    auto = densecore.DensityAwareGreedy().select(xt, 50, densities=dt, init=1)
    assert torch.equal(auto.indices.cpu(), sel.indices.cpu())


def test_samplers_agree_with_function():
    x, dens = _mixture(n=500, seed=4)
    a = densecore.KCenterGreedy(seed=9).select(x, 40)
    b = densecore.farthest_first(x, 40, seed=9)
    np.testing.assert_array_equal(a.indices, b.indices)
    c = densecore.DensityAwareGreedy(seed=9).select(x, 40, densities=dens)
    e = densecore.farthest_first(x, 40, densities=dens, seed=9)
    np.testing.assert_array_equal(c.indices, e.indices)
    # the seed decides the first pick, and only through a local generator
    state = np.random.get_state()
    f = densecore.KCenterGreedy(seed=10).select(x, 40)
    assert np.random.get_state()[1].tolist() == state[1].tolist()
    assert f.indices[0] == np.random.default_rng(10).integers(len(x))


def test_kcenter_is_density_aware_with_unit_densities():
    x, _ = _mixture(n=700, seed=6)
    a = densecore.KCenterGreedy().select(x, 60, init=0)
    b = densecore.DensityAwareGreedy().select(x, 60, densities=np.ones(len(x)), init=0)
    np.testing.assert_array_equal(a.indices, b.indices)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_storage(device, dtype):
    x, dens = _mixture(n=800, seed=8)
    xh = torch.from_numpy(x).to(device=device, dtype=dtype)
    sel = densecore.farthest_first(xh, 80, densities=torch.from_numpy(dens).to(device),
                                   init=0, backend="torch")
    assert sel.radii.dtype == torch.float32 and sel.indices.device == xh.device
    # exact up to half-precision rounding of the products: check against the reference
    # on the rounded values with a tolerance of that size
    replay_check(xh.float().cpu().numpy(), sel.indices.cpu().numpy(), densities=dens, init=0,
                 rtol=2e-2, atol=1e-3)


@pytest.mark.parametrize("density_aware", [False, True])
def test_numba_switches_to_dense_passes_exactly(caplog, density_aware, monkeypatch):
    monkeypatch.setattr(numba_engine, "PLAIN_MAX", 0)  # the pruned path, not the plain loop
    # isotropic noise in 64 dimensions: the triangle inequality prunes almost nothing,
    # so the numba engine hands over to its dense pass (its estimated build and dense
    # costs made negligible: 1,500 points are too few to pay for a real build); the
    # selection must not change
    from densecore._backends.numba import handover

    monkeypatch.setattr(handover, "BUILD_SECONDS", 1e-12)
    monkeypatch.setattr(handover, "DENSE_SECONDS", 0.0)
    rng = np.random.default_rng(11)
    x = rng.normal(size=(1500, 64)).astype(np.float32)
    x[700:760] = x[:60]
    dens = rng.uniform(0.5, 3.0, size=1500) if density_aware else None
    with caplog.at_level("DEBUG", logger="densecore._backends.numba.engine"):
        sel = densecore.farthest_first(x, 300, densities=dens, init=4, backend="numba")
    assert "dense passes" in caplog.text
    ref_idx, ref_r = density_aware_greedy_ref(x, 300, densities=dens, init=4)
    np.testing.assert_array_equal(sel.indices, ref_idx)
    np.testing.assert_allclose(sel.radii[1:], ref_r[1:], rtol=1e-4)


def test_numba_leaves_torch_thread_count_alone():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x, _ = _mixture(n=20000, dim=16, seed=12)
        densecore.farthest_first(x, 30, backend="numba", init=0)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("density_aware", [False, True])
def test_large_labeled_set_through_faiss(density_aware):
    pytest.importorskip("faiss")
    from densecore._backends.nearest import FAISS_MIN

    x, dens = _mixture(n=3000, seed=13)
    rng = np.random.default_rng(13)
    lf = x[rng.choice(3000, size=FAISS_MIN + 10)] + 0.05
    ld = rng.uniform(0.5, 3.0, size=len(lf))
    kw = dict(densities=dens, labeled_densities=ld) if density_aware else {}
    sel = densecore.farthest_first(x, 100, labeled_features=lf, labeled=[5, 6], **kw)
    ref_idx, ref_r = density_aware_greedy_ref(
        x, 100, densities=kw.get("densities"), labeled=[5, 6], labeled_features=lf,
        labeled_densities=kw.get("labeled_densities"))
    np.testing.assert_array_equal(sel.indices, ref_idx)
    np.testing.assert_allclose(sel.radii, ref_r, rtol=1e-4, atol=1e-6)
