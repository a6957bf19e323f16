"""The size/device rules that choose code outside the engine table live in one
function, ``densecore._rules.kernel``; the search (its candidates and its brute
force), KNNDensity and the refinement follow it (moving a threshold there moves their choice)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import densecore._rules as E
from densecore._backends import faiss_backend, nearest
from densecore.density import knn as knn_mod

CPU, META = torch.device("cpu"), torch.device("meta")


def test_each_rule_and_its_threshold():
    assert E.kernel("search", CPU, E.FAISS_MIN - 1, faiss=True) == "brute"
    assert E.kernel("search", CPU, E.FAISS_MIN, faiss=True) == "faiss"
    assert E.kernel("search", CPU, 10 ** 6, faiss=False) == "brute"
    assert E.kernel("search", META, 1) == "torch"  # off the CPU: where the data is
    assert E.kernel("knn", CPU, E.APPROX_MIN - 1, faiss=True) == "exact"
    assert E.kernel("knn", CPU, E.APPROX_MIN, faiss=True) == "hnsw"
    assert E.kernel("knn", CPU, E.APPROX_MIN, faiss=False) == "exact"
    assert E.kernel("knn", META, 10 ** 7, faiss=True) == "exact"
    assert E.kernel("refine", CPU, host=True) == "host"
    assert E.kernel("refine", CPU, host=False) == "device"
    assert E.kernel("radii", CPU) == "host" and E.kernel("radii", META) == "device"
    assert E.kernel("brute", CPU, E.PRUNE_MAX, queries=E.PRUNE_ROWS_PER_CENTRE * E.PRUNE_MAX) \
        == "pruned"
    assert E.kernel("brute", CPU, E.PRUNE_MAX + 1, queries=10 ** 7) == "plain"
    assert E.kernel("brute", CPU, 100, queries=E.PRUNE_ROWS_PER_CENTRE * 100 - 1) == "plain"
    with pytest.raises(ValueError, match="task must be one of"):
        E.kernel("greedy", CPU)


@pytest.mark.skipif(not faiss_backend.available(), reason="needs faiss")
def test_the_search_follows_the_rule(monkeypatch):
    seen = []
    real = faiss_backend.nearest_weighted
    monkeypatch.setattr(faiss_backend, "nearest_weighted",
                        lambda *a, **kw: (seen.append(1), real(*a, **kw))[1])
    rng = np.random.default_rng(0)
    q, c = torch.from_numpy(rng.normal(size=(200, 4))), torch.from_numpy(rng.normal(size=(20, 4)))
    want = nearest.search(q, c, 2)
    assert seen == []  # 20 centres: the brute force
    monkeypatch.setattr(E, "FAISS_MIN", 8)
    got = nearest.search(q, c, 2)
    assert seen == [1]  # the same call now takes faiss candidates, the same answer
    assert torch.equal(got[1], want[1])
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)


@pytest.mark.skipif(not faiss_backend.available(), reason="needs faiss")
def test_knn_density_follows_the_rule(monkeypatch):
    x = np.random.default_rng(1).normal(size=(300, 4))
    d = knn_mod.KNNDensity(k=5)
    d(x)
    assert d.last_search == "exact"
    monkeypatch.setattr(E, "APPROX_MIN", 100)
    d(x)
    assert d.last_search == "hnsw"


def test_the_brute_force_follows_the_rule(monkeypatch):
    from densecore._backends import nearest_kernels as NK

    calls = []
    real = NK.brute_pruned
    monkeypatch.setattr(NK, "brute_pruned", lambda *a: (calls.append(1), real(*a))[1])
    rng = np.random.default_rng(2)
    q, c = torch.from_numpy(rng.normal(size=(200, 4))), torch.from_numpy(rng.normal(size=(20, 4)))
    want = nearest.search(q, c, 1, method="auto")
    assert calls == [1]  # 200 queries >= 4 x 20 centres: pruned
    monkeypatch.setattr(E, "PRUNE_MAX", 10)
    got = nearest.search(q, c, 1, method="auto")
    assert calls == [1]  # 20 centres above the bound: the plain kernel, the same answer
    assert torch.equal(got[1], want[1]) and torch.equal(got[0], want[0])
