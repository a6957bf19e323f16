"""The triangle-inequality brute force (``nearest_kernels.brute_pruned``) returns
exactly what the plain brute force returns: the same float64 values bit for bit and
the same indices, ties to the lowest index, on data built to defeat a loose skip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import nearest_ref

from densecore._backends import nearest
from densecore._backends.nearest_kernels import brute, brute_pruned, centre_gaps


def _both(q, c, w, k):
    rows = np.arange(len(q), dtype=np.int64)
    iw = 1.0 / w
    out = []
    for pruned in (False, True):
        vals = np.empty((len(q), k))
        idx = np.empty((len(q), k), np.int64)
        if pruned:
            eps = (c.shape[1] + 8) * 2.0 ** -52
            brute_pruned(q, c, iw, k, rows, vals, idx, centre_gaps(c, eps), eps)
        else:
            brute(q, c, iw, k, rows, vals, idx)
        out.append((vals, idx))
    return out


def _mixture(n, d, k, seed, scale=1.0, offset=0.0, dup=0.0, integer=False):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 5
    x = centres[rng.integers(0, k, n)] + rng.normal(size=(n, d))
    if dup:
        m = int(dup * n)
        x[rng.choice(n, m, replace=False)] = x[rng.choice(n, m)]
    if integer:
        x = np.round(x)
    return np.ascontiguousarray(x * scale + offset)


def _reference(q, c, w, k):
    return nearest_ref(q, c, k, w)[1]


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("case", ["plain", "duplicates", "integer", "weighted", "offset",
                                  "tiny", "float32"])
def test_pruned_brute_force_equals_the_plain_one(k, case):
    x = _mixture(3000, 16, 6, seed=k, dup=0.3 if case == "duplicates" else 0.0,
                 integer=case == "integer",
                 scale=1e-150 if case == "tiny" else 1.0,
                 offset=1e6 if case == "offset" else 0.0)
    rng = np.random.default_rng(10 + k)
    pick = rng.choice(len(x), 60, replace=False)
    c = np.ascontiguousarray(x[pick[:50]])
    if case in ("duplicates", "integer"):  # centres that tie: copies and equal rows
        c = np.ascontiguousarray(np.concatenate([c, c[:5], x[pick[50:]]]))
    w = rng.uniform(0.2, 5.0, len(c)) if case == "weighted" else np.ones(len(c))
    if case == "float32":
        x, c = x.astype(np.float32), c.astype(np.float32)
    (v0, i0), (v1, i1) = _both(x, c, w, k)
    np.testing.assert_array_equal(i1, i0)
    np.testing.assert_array_equal(v1, v0)
    if case in ("duplicates", "integer", "plain"):  # and the float64 reference's indices
        np.testing.assert_array_equal(i1, _reference(x.astype(np.float64),
                                                      c.astype(np.float64), w, k))


def test_search_takes_the_pruned_version_for_few_centres_and_many_queries(
        monkeypatch):
    # 4,000 queries, 40 centres: the search's rule takes the pruned kernel (seen
    # through a counting wrapper), and its answer is the float64 reference's
    x = _mixture(4000, 8, 8, seed=3, scale=1.0)
    c = torch.from_numpy(x[np.random.default_rng(4).choice(4000, 40, replace=False)])
    from densecore._backends import nearest_kernels as NK

    calls = []
    real = NK.brute_pruned
    monkeypatch.setattr(NK, "brute_pruned",
                        lambda *a: (calls.append(a[1].shape[0]), real(*a))[1])
    v, i = nearest.search(torch.from_numpy(x), c, 2, method="auto")
    assert calls == [40]
    ref = _reference(x, c.numpy(), np.ones(40), 2)
    np.testing.assert_array_equal(i.numpy(), ref)


def test_pruning_is_not_used_where_the_centres_would_cost_more_than_the_queries(monkeypatch):
    from densecore._backends import nearest_kernels as NK

    monkeypatch.setattr(NK, "brute_pruned", None)  # a call would fail
    x = torch.from_numpy(_mixture(100, 4, 3, seed=5))
    v, i = nearest.search(x, x[:40], 1, method="auto")  # 100 queries < 4 x 40 centres
    assert i[:40, 0].tolist() == list(range(40))
