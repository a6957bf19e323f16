"""Approximate (HNSW) k-NN density against the exact float64 brute force."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import densecore._rules
from densecore.density import knn as knn_mod
from densecore.density.knn import KNNDensity, knn_mean_distance
from densecore.synthetic import gaussian_mixture

pytest.importorskip("faiss")


def reference_mean(x: np.ndarray, k: int, metric: str = "euclidean") -> np.ndarray:
    """Mean distance to the k nearest other points, float64 from differences."""
    x = x.astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    out = np.empty(len(x))
    for i in range(len(x)):
        d2 = ((x - x[i]) ** 2).sum(1)
        d2[i] = np.inf
        v = np.sort(d2)[:k]
        out[i] = (v * 0.5).mean() if metric == "cosine" else np.sqrt(v).mean()
    return out


@pytest.fixture(scope="module")
def mixture():
    x, _ = gaussian_mixture(2500, dim=12, n_components=6, duplicates=0.1, seed=4)
    return x


@pytest.fixture(scope="module")
def hard():
    """One 32-D Gaussian: neighbours are hard to find (many near-equal distances)."""
    x, _ = gaussian_mixture(3000, dim=32, n_components=1, seed=5)
    return x


@pytest.fixture(scope="module")
def ref10(mixture):
    return reference_mean(mixture, 10)


def test_hnsw_never_below_exact_and_mostly_equal(mixture, ref10):
    dens = KNNDensity(k=10, search="hnsw", recall=0.9)
    d = dens(mixture)
    a = knn_mean_distance(mixture, 10, search="hnsw", recall=0.9)
    assert dens.last_search == "hnsw" and dens.last_recall >= 0.9
    assert np.all(a >= ref10 * (1 - 1e-12) - 1e-12)
    equal = np.isclose(a, ref10, rtol=1e-12, atol=1e-12)
    assert equal.mean() > 0.8
    # the largest mean distance (min-max normalisation) is exact
    assert a.max() == pytest.approx(ref10.max(), rel=1e-12)
    # duplicates: points with at least k copies elsewhere have mean distance 0
    assert np.all(a[ref10 == 0] == 0)
    assert d.shape == (len(mixture),) and np.all(np.isfinite(d))


def test_recall_one_is_exact_on_the_sample(mixture, ref10):
    dens = KNNDensity(k=10, search="hnsw", recall=1.0, seed=3)
    dens(mixture)
    assert dens.last_recall == 1.0
    a = knn_mean_distance(mixture, 10, search="hnsw", recall=1.0, seed=3)
    sample = np.random.default_rng(3).choice(len(mixture), knn_mod.RECALL_QUERIES,
                                             replace=False)
    np.testing.assert_allclose(a[sample], ref10[sample], rtol=1e-12, atol=1e-12)


def test_effort_doubles_until_target(hard, monkeypatch, caplog):
    monkeypatch.setattr(knn_mod, "_EF_START", 1)
    with caplog.at_level(logging.INFO, logger="densecore.density.knn"):
        dens = KNNDensity(k=10, search="hnsw", recall=0.97)
        dens(hard)
    efforts = [r.args[0] for r in caplog.records if "search effort" in r.getMessage()]
    assert efforts[0] == 11 and len(efforts) >= 2
    assert efforts == [11 * 2 ** i for i in range(len(efforts))]
    assert dens.last_recall >= 0.97


def test_cap_reached_warns_and_falls_back_to_exact(hard, monkeypatch):
    x = hard
    monkeypatch.setattr(knn_mod, "_EF_START", 1)
    monkeypatch.setattr(knn_mod, "_EF_MAX", 1)
    dens = KNNDensity(k=10, search="hnsw", recall=1.0)
    with pytest.warns(RuntimeWarning, match="recall@10 .* below the target.*exactly"):
        got = dens(x)
    assert dens.last_search == "exact" and dens.last_recall is None
    np.testing.assert_allclose(got, KNNDensity(k=10, search="exact")(x), rtol=1e-12)


def test_large_offset(mixture, ref10):
    """A common offset of 1e4 (float32 spacing 1e-3) loses nothing: the index is centred."""
    x = mixture.astype(np.float64) + 1e4
    a = knn_mean_distance(x, 10, search="hnsw", recall=0.95)
    assert np.isclose(a, ref10, rtol=1e-6, atol=1e-9).mean() > 0.8
    assert np.all(a >= ref10 * (1 - 1e-6) - 1e-9)


def test_self_excluded_and_duplicates():
    x = np.array([[0.0], [1.0], [3.0]])
    assert knn_mean_distance(x, 1, search="hnsw").tolist() == [1.0, 1.0, 2.0]
    y = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]], np.float32), 6, axis=0)
    y = np.concatenate([y, np.array([[0.0, 1.0]], np.float32)])
    a = knn_mean_distance(y, 5, search="hnsw", recall=1.0)
    np.testing.assert_allclose(a, reference_mean(y, 5), rtol=1e-12, atol=1e-12)
    assert np.all(a[:12] == 0)


def test_cosine_and_kinds(mixture):
    # the library's exact cosine search on the same (float32) unit rows
    ref = knn_mean_distance(mixture[:800], 5, search="exact", metric="cosine")
    np.testing.assert_allclose(ref, reference_mean(mixture[:800], 5, metric="cosine"),
                               rtol=1e-3, atol=1e-6)
    a = knn_mean_distance(mixture[:800], 5, search="hnsw", metric="cosine")
    assert np.all(a >= ref * (1 - 1e-12) - 1e-15)
    assert np.isclose(a, ref, rtol=1e-12, atol=1e-15).mean() > 0.8
    t = knn_mean_distance(torch.from_numpy(mixture[:800]).double(), 5, search="hnsw")
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float64
    ref_e = reference_mean(mixture[:800], 5)
    assert np.all(t.numpy() >= ref_e * (1 - 1e-12) - 1e-12)


def test_auto_switches_at_threshold(monkeypatch):
    x, _ = gaussian_mixture(600, dim=4, duplicates=0.05, seed=1)
    dens = KNNDensity(k=5)
    dens(x)
    assert dens.last_search == "exact" and dens.last_recall is None
    assert knn_mod.APPROX_MIN > 2000  # every size the test suite uses stays exact
    monkeypatch.setattr(densecore._rules, "APPROX_MIN", 500)
    dens(x[:499])
    assert dens.last_search == "exact"
    dens(x)
    assert dens.last_search == "hnsw" and dens.last_recall >= 0.9
    dens = KNNDensity(k=5, search="exact")
    dens(x)
    assert dens.last_search == "exact"


def test_sparse_stays_exact():
    x, _ = gaussian_mixture(300, dim=6, seed=2)
    x[x < 0] = 0.0
    s = sp.csr_matrix(x)
    dens = KNNDensity(k=4)
    np.testing.assert_allclose(knn_mean_distance(s, 4), reference_mean(x, 4), rtol=1e-9)
    dens(s)
    assert dens.last_search == "exact"
    with pytest.raises(ValueError, match="search='hnsw' takes dense"):
        knn_mean_distance(s, 4, search="hnsw")


@pytest.mark.parametrize("kwargs, name", [
    ({"search": "ivf"}, "search"), ({"search": None}, "search"),
    ({"recall": 0.0}, "recall"), ({"recall": 1.5}, "recall"),
    ({"recall": float("nan")}, "recall"),
])
def test_bad_arguments(kwargs, name):
    x = np.zeros((5, 2))
    with pytest.raises(ValueError, match=name):
        knn_mean_distance(x, 2, **kwargs)
    with pytest.raises(ValueError, match=name):
        KNNDensity(k=2, **kwargs)
