"""The device path of the nearest-centre search (GEMM candidates, certificate, candidate
rounds) on CPU tensors against the float64 brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import nearest_ref

from densecore import bound_report, coverage
from densecore.density import knn_mean_distance
from densecore._backends import faiss_backend, nearest
from densecore.synthetic import gaussian_mixture


_ref = nearest_ref


def _case(n=400, l=300, dim=8, dup=6, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    c, _ = gaussian_mixture(l, dim=dim, n_components=5, duplicates=0.0, seed=seed)
    c = c.astype(np.float32)
    c[1:dup * 10:10] = c[0]  # one centre repeated dup times: more ties than k + 2
    q = np.concatenate([c[:50], rng.normal(size=(n - 50, dim)).astype(np.float32)])
    return q + np.float32(offset), c + np.float32(offset)


@pytest.fixture
def small_blocks(monkeypatch):
    """Several centre blocks per query block, and several query blocks."""
    monkeypatch.setattr(nearest, "_GEMM_COLS", 64)
    monkeypatch.setattr(nearest, "_GEMM_ELEMS", {"cpu": 64 * 40, "cuda": 64 * 40})


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("offset", [0.0, 1e4])
@pytest.mark.parametrize("weighted", [False, True])
def test_blocked_gemm_search_is_exact(small_blocks, monkeypatch, k, offset, weighted):
    q, c = _case(offset=offset)
    w = np.random.default_rng(1).uniform(0.5, 2.0, size=len(c)) if weighted else None
    brute = []
    real = nearest._torch_brute
    monkeypatch.setattr(nearest, "_torch_brute", lambda q_, c_, iw, k_, rows, v, i:
                        (brute.append(rows.numel()), real(q_, c_, iw, k_, rows, v, i)))
    v, i = nearest._search_torch(torch.from_numpy(q), torch.from_numpy(c),
                                 torch.from_numpy(1.0 / w) if weighted else
                                 torch.ones(len(c), dtype=torch.float64), k)
    rv, ri = _ref(q, c, k, w)
    np.testing.assert_array_equal(i.numpy(), ri)
    np.testing.assert_allclose(v.numpy(), rv, rtol=1e-14, atol=0)
    assert sum(brute) < len(q) // 10  # the candidate rounds answered nearly every query


def test_candidate_rounds_resolve_ties_beyond_k_plus_2(monkeypatch):
    q, c = _case(dup=12)
    rounds = []
    real = nearest._torch_candidates

    def spy(qf, cf, iw, m):
        rounds.append((qf.shape[0], m))
        return real(qf, cf, iw, m)

    monkeypatch.setattr(nearest, "_torch_brute", lambda *a: pytest.fail("brute force ran"))
    v, i = nearest._search_torch(torch.from_numpy(q), torch.from_numpy(c),
                                 torch.ones(len(c), dtype=torch.float64), 2, candidates=spy)
    assert rounds[0] == (len(q), 4) and len(rounds) >= 2 and rounds[1][0] < len(q)
    rv, ri = _ref(q, c, 2)
    np.testing.assert_array_equal(i.numpy(), ri)
    np.testing.assert_allclose(v.numpy(), rv, rtol=1e-14, atol=0)


@pytest.mark.skipif(not faiss_backend.available(), reason="faiss is not installed")
def test_faiss_candidates_through_the_device_path():
    """The faiss candidate adapter (the CPU flat index here; a GPU index on CUDA)."""
    q, c = _case(seed=3)

    def faiss_cands(qf, cf, iw, m):
        a, cand = faiss_backend.nearest_weighted(qf.numpy(), cf.numpy(), iw.numpy(), m)
        return torch.from_numpy(a).double(), torch.from_numpy(cand)

    v, i = nearest._search_torch(torch.from_numpy(q), torch.from_numpy(c),
                                 torch.ones(len(c), dtype=torch.float64), 3,
                                 candidates=faiss_cands)
    rv, ri = _ref(q, c, 3)
    np.testing.assert_array_equal(i.numpy(), ri)
    np.testing.assert_allclose(v.numpy(), rv, rtol=1e-14, atol=0)


def test_reduced_precision_matmul_widens_the_bound():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert nearest._candidate_eps(torch.float32, cpu, False) == 2.0 ** -24
    assert nearest._candidate_eps(torch.float64, cuda, True) == 2.0 ** -53
    assert nearest._candidate_eps(torch.float32, cuda, True) == 2.0 ** -11
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        assert nearest._candidate_eps(torch.float32, cuda, False) == 2.0 ** -8
        torch.set_float32_matmul_precision("high")
        assert nearest._candidate_eps(torch.float32, cuda, False) == 2.0 ** -11
    finally:
        torch.set_float32_matmul_precision(before)


def test_coverage_and_knn_density_on_the_device_path(small_blocks):
    """coverage, bound_report and knn_mean_distance(search="exact") through the torch method
    (the CUDA path) equal their numba/faiss answers."""
    x, _ = gaussian_mixture(500, dim=6, n_components=4, duplicates=0.2, seed=5)
    xt = torch.from_numpy(x.astype(np.float32))
    sel = xt[::7]
    ia, da = coverage(xt, sel, search_backend="torch")
    ib, db = coverage(xt, sel, search_backend="auto")
    assert torch.equal(ia, ib)
    torch.testing.assert_close(da, db, rtol=1e-14, atol=0)
    _, ri = _ref(x.astype(np.float32), sel.numpy(), 1)
    np.testing.assert_array_equal(ia.numpy(), ri[:, 0])
    ra = bound_report(xt, torch.arange(0, 500, 7), search_backend="torch")
    rb = bound_report(xt, torch.arange(0, 500, 7), search_backend="auto")
    assert ra.delta == pytest.approx(rb.delta, rel=1e-14) and ra.delta > 0
    assert ra.max_ard == pytest.approx(rb.max_ard, rel=1e-12)
    ka = knn_mean_distance(xt, 5, search_backend="torch", search="exact")
    kb = knn_mean_distance(xt, 5, search_backend="auto", search="exact")
    torch.testing.assert_close(torch.as_tensor(ka), torch.as_tensor(kb), rtol=1e-12, atol=0)
