"""k-NN density on features full of exact copies (as pixel features are), exact and HNSW,
against a naive float64 reference."""

from __future__ import annotations

import numpy as np
import pytest

import densecore._rules
from densecore.density import knn as knn_mod
from densecore.density.knn import KNNDensity, knn_mean_distance


def naive_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Mean Euclidean distance to the k nearest other points (copies at 0), float64."""
    x = x.astype(np.float64)
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    return np.sqrt(np.sort(d2, axis=1)[:, :k]).mean(1)


def heavy_copies(n_distinct=50, dim=8, max_copies=99, seed=0):
    """Distinct normal points, each copied 1 to ``max_copies`` times (most many more than
    k times: their exact mean distance is 0), shuffled; float32. On such data an HNSW
    graph over every copy misses neighbours (37 of 2,635 points got a positive mean
    distance where the exact one is 0, without a warning)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_distinct, dim))
    reps = rng.integers(1, max_copies + 1, size=n_distinct)
    x = np.repeat(base, reps, axis=0).astype(np.float32)
    return x[rng.permutation(len(x))]


@pytest.mark.parametrize("search", ["exact", "hnsw"])
def test_heavy_copies_match_the_naive_reference(search):
    if search == "hnsw":
        pytest.importorskip("faiss")
    x = heavy_copies()
    ref = naive_mean(x, 10)
    assert (ref == 0).sum() > len(x) // 2  # most points have k copies of themselves
    dens = KNNDensity(k=10, search=search)
    got = knn_mean_distance(x, 10, search=search)
    np.testing.assert_array_equal(got == 0, ref == 0)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=0)
    d = dens(x)
    assert dens.last_search == search
    if search == "hnsw":
        assert dens.last_recall == 1.0
    assert d.max() == pytest.approx(dens.beta)  # zero mean distance: the largest density


def test_copies_of_fewer_than_k_and_signed_zero():
    # a point with 3 copies takes them at 0 and 7 other neighbours; -0.0 equals 0.0
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 3))
    x[10:13] = x[9]
    x[20] = 0.0
    x[21] = -0.0
    for search in ("exact", "hnsw"):
        if search == "hnsw":
            pytest.importorskip("faiss")
        got = knn_mean_distance(x, 10, search=search)
        np.testing.assert_allclose(got, naive_mean(x, 10), rtol=1e-9, atol=0)


def test_auto_counts_distinct_rows(monkeypatch):
    # many points but few distinct rows: "auto" searches exactly (on the distinct rows)
    monkeypatch.setattr(densecore._rules, "APPROX_MIN", 500)
    x = heavy_copies(n_distinct=40, seed=2)
    assert len(x) >= 500
    dens = KNNDensity(k=10)
    dens(x)
    assert dens.last_search == "exact"
    y = np.random.default_rng(3).normal(size=(600, 4))
    dens(y)
    assert dens.last_search == ("hnsw" if knn_mod.faiss_backend.available() else "exact")


def test_nan_rows_are_not_grouped():
    # with validate=False a NaN row equals nothing, not even its copy: no grouping
    x = heavy_copies(n_distinct=20, seed=4).astype(np.float64)
    g = knn_mod._Distinct(x)
    assert g.size == 20 and g.counts.sum() == len(x)
    np.testing.assert_array_equal(x[g.first][g.inverse], x)
    x[0] = np.nan
    assert knn_mod._Distinct(x).inverse is None
