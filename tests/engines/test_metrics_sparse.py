"""Cosine metric and scipy sparse input against float64 brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import densecore
from densecore import metrics as M
from densecore.density.knn import knn_mean_distance
from densecore.sparse import knn_mean_distance_sparse
from reference import density_aware_greedy_ref, replay_check, table_engines

BACKENDS = table_engines("sparse")  # the sparse engines of the table


def cosine_matrix(x):
    """1 - cos in float64, straight from the definition."""
    x = np.asarray(x, np.float64)
    norm = np.sqrt((x * x).sum(1))
    return 1.0 - (x @ x.T) / np.outer(norm, norm)


def replay_on_matrix(dist, picks, dens=None, labeled=(), init=None, rtol=1e-5):
    """Check that ``picks`` is a valid run of Algorithm 1 on a full (N, N) distance matrix."""
    n = dist.shape[0]
    d = np.ones(n) if dens is None else np.asarray(dens, np.float64)
    r = np.full(n, np.inf)
    taken = np.zeros(n, bool)
    for k in labeled:
        r = np.minimum(r, dist[:, k] / d[k])
        taken[k] = True
    for i, u in enumerate(picks):
        assert not taken[u], f"step {i}: {u} repeated or labeled"
        if not (i == 0 and init is not None):
            masked = np.where(taken, -np.inf, r)
            best = masked.max()
            assert masked[u] >= best - rtol * abs(best) - 1e-12, (i, u, masked[u], best)
        taken[u] = True
        r = np.minimum(r, dist[:, u] / d[u])


def mixture(seed, n=300, dim=8, dup=20):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, dim)) * 3
    x = centres[rng.integers(5, size=n)] + rng.normal(size=(n, dim)) * 0.5
    x[rng.integers(n, size=dup)] = x[rng.integers(n, size=dup)]  # duplicates
    return x


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_cosine_greedy_matches_reference(backend, seed):
    x = mixture(seed).astype(np.float32)
    rng = np.random.default_rng(seed)
    dens = rng.uniform(0.5, 3.0, len(x))
    labeled = [3, 40, 41]
    dist = cosine_matrix(x)
    for kw in ({}, {"densities": dens}):
        sel = densecore.farthest_first(x, 40, labeled=labeled, metric="cosine",
                                       backend=backend, **kw)
        replay_on_matrix(dist, sel.indices, kw.get("densities"), labeled)
        # radii are the cosine distance over density at pick time
        d = kw.get("densities", np.ones(len(x)))
        centres = list(labeled)
        for u, rad in zip(sel.indices, sel.radii):
            expect = min(dist[u, k] / d[k] for k in centres)
            assert rad == pytest.approx(expect, rel=1e-4, abs=1e-6)
            centres.append(u)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cosine_ignores_row_scale(backend):
    # cosine distance does not see a row's length: rows scaled by wildly
    # different factors (1e-20 .. 1e20) must still give a valid cosine run of
    # the unscaled data (duplicates may then tie-break differently by an ulp)
    x = mixture(3, n=200, dup=0)
    scales = 10.0 ** np.random.default_rng(3).uniform(-20, 20, size=(len(x), 1))
    for data in (x, (x * scales).astype(np.float32)):
        sel = densecore.KCenterGreedy(backend=backend, metric="cosine").select(
            data, 30, labeled=[0])
        replay_on_matrix(cosine_matrix(x), sel.indices, labeled=[0])


def test_cosine_zero_row_raises():
    x = np.ones((5, 3))
    x[2] = 0
    with pytest.raises(ValueError, match="row 2 is all zeros"):
        densecore.farthest_first(x, 2, metric="cosine")


def test_unknown_metric_raises():
    with pytest.raises(ValueError, match="metric must be one of"):
        densecore.KCenterGreedy(metric="manhattan")


def test_cosine_bounds_and_knn_match_brute_force():
    x = mixture(5, n=120, dup=0)
    dist = cosine_matrix(x)
    sel = [0, 10, 50, 90]
    rep = densecore.bound_report(x, sel, metric="cosine")
    near = dist[:, sel].min(1)
    assign = dist[:, sel].argmin(1)
    assert rep.delta == pytest.approx(near.max(), rel=1e-9, abs=1e-12)
    ard = [near[assign == j].mean() for j in range(len(sel))]
    np.testing.assert_allclose(rep.ard, ard, rtol=1e-9, atol=1e-12)
    for backend in ("faiss", "torch"):
        got = knn_mean_distance(x, 5, metric="cosine", search_backend=backend)
        srt = np.sort(dist + np.diag(np.full(len(x), np.inf)), axis=1)[:, :5]
        np.testing.assert_allclose(got, np.clip(srt, 0, None).mean(1), rtol=1e-7, atol=1e-10)


def test_cosine_copies_features_once():
    # one normalised copy for the engine; the caller's array is untouched
    x = mixture(6, n=100).astype(np.float32)
    before = x.copy()
    densecore.farthest_first(x, 10, metric="cosine", init=0)
    np.testing.assert_array_equal(x, before)
    u = M.unit_rows(torch.from_numpy(x))
    assert u.dtype == torch.float32
    np.testing.assert_allclose(u.norm(dim=1).numpy(), 1.0, rtol=1e-6)


# --------------------------------------------------------------------- sparse


def sparse_pool(seed, n=250, dim=400, density=0.03, offset=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    a = sp.random(n, dim, density=density, random_state=seed, format="csr",
                  data_rvs=lambda k: rng.normal(size=k))
    a = a.tolil()
    for i, j in zip(rng.integers(n, size=15), rng.integers(n, size=15)):
        a[i] = a[j]  # duplicate rows
    a = a.tocsr()
    if offset:
        a = a.tolil()
        a[:, 0] = offset + 0.01 * rng.normal(size=(n, 1))
        a = a.tocsr()
    return (a * scale).astype(np.float64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("offset,scale", [(0.0, 1.0), (1e6, 1.0), (0.0, 1e150), (0.0, 1e-150),
                                          (1e3, 1e-100)])
def test_sparse_greedy_matches_dense_reference(offset, scale, backend):
    a = sparse_pool(0, offset=offset, scale=scale)
    dense = a.toarray()
    # the reference works in float64 on values rescaled by the same power of
    # two, so that its own squares neither overflow nor underflow
    s = 2.0 ** -np.floor(np.log2(np.abs(dense).max()))
    dens = np.random.default_rng(1).uniform(0.5, 3.0, a.shape[0])
    for kw in ({}, {"densities": dens}):
        sel = densecore.farthest_first(a, 30, labeled=[1, 2], backend=backend, **kw)
        replay_check(dense * s, sel.indices, kw.get("densities"), labeled=[1, 2],
                     rtol=1e-9, atol=0.0)
        ref, radii = density_aware_greedy_ref(dense * s, 30, kw.get("densities"),
                                              labeled=[1, 2])
        np.testing.assert_allclose(sel.radii * s * s, radii, rtol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_out_of_pool_labeled_and_float32(backend):
    a = sparse_pool(2).astype(np.float32)
    extra = sparse_pool(3, n=5)
    sel = densecore.KCenterGreedy(backend=backend).select(a, 20, labeled_features=extra)
    replay_check(a.toarray(), sel.indices, labeled_features=extra.toarray(), rtol=1e-9,
                 atol=0.0)
    # dense labeled features work with a sparse pool as well
    sel2 = densecore.KCenterGreedy(backend=backend).select(a, 20,
                                                           labeled_features=extra.toarray())
    assert sel2.indices.tolist() == sel.indices.tolist()


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_duplicates_tie_to_lowest_index(backend):
    a = sp.csr_matrix(np.array([[1.0, 0], [0, 1.0], [0, 1.0], [0, 1.0]]))
    sel = densecore.farthest_first(a, 2, labeled=[0], backend=backend)
    assert sel.indices.tolist() == [1, 2] and sel.radii.tolist() == [2.0, 0.0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_cosine_matches_reference(backend):
    a = sparse_pool(4, density=0.2)
    a = a[np.asarray(abs(a).sum(1)).ravel() > 0]
    dist = cosine_matrix(a.toarray())
    sel = densecore.DensityAwareGreedy(metric="cosine", backend=backend).select(
        a, 25, densities=np.linspace(0.5, 2.0, a.shape[0]), labeled=[0])
    replay_on_matrix(dist, sel.indices, np.linspace(0.5, 2.0, a.shape[0]), [0])


def test_torch_sparse_tensor_input():
    a = sparse_pool(8)
    dense = a.toarray()
    coo = torch.from_numpy(dense).to_sparse()
    for x in (coo, coo.to_sparse_csr()):
        for backend in ("auto", "numba", "torch"):
            sel = densecore.farthest_first(x, 12, labeled=[0], backend=backend)
            assert isinstance(sel.indices, torch.Tensor)
            replay_check(dense, sel.indices.numpy(), labeled=[0], rtol=1e-9, atol=0.0)
    d = knn_mean_distance(coo, 4)
    assert isinstance(d, torch.Tensor) and d.shape == (a.shape[0],)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_errors(backend):
    a = sparse_pool(5)
    bad = a.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="features must be finite"):
        densecore.farthest_first(bad, 3, backend=backend)
    with pytest.raises(TypeError, match="floating"):
        densecore.farthest_first(sp.csr_matrix(np.eye(3, dtype=np.int64)), 1, backend=backend)
    # subnormal densities: the one scaling rule of the dense layout (same picks as 1)
    tiny = densecore.farthest_first(a, 3, densities=np.full(a.shape[0], 1e-320), labeled=[0],
                                    backend=backend)
    one = densecore.farthest_first(a, 3, densities=np.ones(a.shape[0]), labeled=[0],
                                   backend=backend)
    assert tiny.indices.tolist() == one.indices.tolist()
    with pytest.raises(ValueError, match="labeled_features must have D"):
        densecore.farthest_first(a, 3, labeled_features=np.ones((2, 3)), backend=backend)
    # the same rules for labeled_densities as dense input (one check in validation)
    dens = np.ones(a.shape[0])
    with pytest.raises(ValueError, match="labeled_densities was given without labeled_features"):
        densecore.farthest_first(a, 3, densities=dens, labeled_densities=np.ones(2),
                                 backend=backend)
    with pytest.raises(ValueError, match="labeled_densities is required"):
        densecore.farthest_first(a, 3, densities=dens, labeled_features=a[:2],
                                 backend=backend)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_sparse_knn_exact(metric):
    a = sparse_pool(6, n=300, density=0.05, offset=50.0)
    dense = a.toarray()
    if metric == "cosine":
        dist = cosine_matrix(dense)
    else:
        sq = ((dense[:, None, :] - dense[None, :, :]) ** 2).sum(-1)
        dist = np.sqrt(sq)
    np.fill_diagonal(dist, np.inf)
    expect = np.sort(dist, axis=1)[:, :7].clip(0).mean(1)
    got = knn_mean_distance_sparse(a, 7, metric=metric)
    np.testing.assert_allclose(got, expect, rtol=1e-7, atol=1e-12)
    dens = densecore.KNNDensity(k=7, metric=metric)(a)
    assert dens.shape == (a.shape[0],) and np.isfinite(dens).all()


def test_sparse_knn_certifies_or_falls_back():
    # many equidistant rows: the approximate ranking cannot separate them, and
    # the answer must still be exact
    rows = np.eye(40)
    a = sp.csr_matrix(np.vstack([rows, rows * 1.0000001]))
    got = knn_mean_distance_sparse(a, 3)
    dense = a.toarray()
    dist = np.sqrt(((dense[:, None] - dense[None]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    np.testing.assert_allclose(got, np.sort(dist, 1)[:, :3].mean(1), rtol=1e-12)


def test_farthest_first_sparse_direct_matches_dense():
    a = sparse_pool(7)
    s1 = densecore.farthest_first(a, 15, init=4)
    s2 = densecore.farthest_first(a.toarray(), 15, init=4, backend="numba")
    assert s1.indices.tolist() == s2.indices.tolist()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_estimate_certificate_holds_under_cancellation(seed, backend):
    # every row shares a column at 1e6 and differs by about 1e-3 elsewhere: the norm
    # expansion both engines estimate with cancels to noise of about 1e-4, far
    # above the true squared distances (about 1e-5); only its rounding bound keeps it
    # from ruling out rows that do move (the picks would differ without it)
    rng = np.random.default_rng(seed)
    n, dim = 300, 40
    dense = np.zeros((n, dim))
    dense[:, 0] = 1e6 + rng.normal(size=n) * 1e-3
    cols = rng.integers(1, dim, size=(n, 3))
    for t in range(n):
        dense[t, cols[t]] = rng.normal(size=3) * 1e-3
    dense[50:60] = dense[:10]  # duplicates
    a = sp.csr_matrix(dense)
    dens = rng.uniform(0.5, 3.0, n)
    sel = densecore.farthest_first(a, 40, densities=dens, labeled=[3], backend=backend)
    s = 2.0 ** -np.floor(np.log2(np.abs(dense).max()))
    ref, radii = density_aware_greedy_ref(dense * s, 40, dens, labeled=[3])
    assert np.asarray(sel.indices).tolist() == ref.tolist()
    np.testing.assert_allclose(sel.radii * s * s, radii, rtol=1e-9)
