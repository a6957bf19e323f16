"""Local intrinsic dimension (Levina-Bickel MLE, smoothed over neighbours) and its
density, against a naive float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from densecore.density import lid_density, local_intrinsic_dimension


def naive_lid(x, k):
    x = np.asarray(x, dtype=np.float64)
    n, dim = x.shape
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    m = np.empty(n)
    nbrs = []
    for i in range(n):
        order = np.lexsort((np.arange(n), d[i]))  # by distance, ties to the lowest index
        order = order[order != i][:k] if d[i, i] == 0 else order[:k]
        nbrs.append(np.r_[i, order])
        t = d[i, order]
        if t[-1] == 0:
            m[i] = 1.0
            continue
        with np.errstate(divide="ignore"):
            s = np.mean(np.log(t[-1] / t[:-1]))
        m[i] = np.clip(1.0 / s if s > 0 else np.inf, 1.0, dim)
    return np.array([m[nb].mean() for nb in nbrs])


@pytest.mark.parametrize("k", [2, 5, 12])
def test_matches_the_naive_reference_with_duplicates(k):
    rng = np.random.default_rng(k)
    x = np.concatenate([rng.normal(size=(60, 3)),
                        np.c_[rng.random(50), np.zeros((50, 2))] * 4 + 5])
    x[10:14] = x[0]  # a point with four copies
    got = local_intrinsic_dimension(x.astype(np.float32), k=k)
    want = naive_lid(x.astype(np.float32), k)
    # duplicates: which copy is "the point itself" does not change any value,
    # but the neighbour sets of copies may differ in their last tie
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert np.all((got >= 1.0) & (got <= 3.0))


def test_dimension_is_recovered_on_flat_gaussians():
    rng = np.random.default_rng(0)
    for dim in (1, 2, 4):
        z = np.zeros((1500, 8))
        z[:, :dim] = rng.normal(size=(1500, dim))
        z += 1e3  # a large offset: distances still from differences
        assert abs(np.median(local_intrinsic_dimension(z, k=20)) - dim) < 0.25 * dim


def test_density_formula_and_tensor_in_tensor_out():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(200, 5)))
    m = local_intrinsic_dimension(x, k=8)
    d = lid_density(x, k=8)
    assert isinstance(d, torch.Tensor) and d.dtype == torch.float64
    torch.testing.assert_close(d, ((m + 1) / m) ** 2)
    assert float(d.min()) >= (6 / 5) ** 2 and float(d.max()) <= 4.0


def test_all_neighbours_coincide_gives_dimension_one():
    x = np.zeros((30, 4))
    x[20:] = 1.0
    np.testing.assert_array_equal(local_intrinsic_dimension(x, k=5), np.ones(30))


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="k"):
        local_intrinsic_dimension(np.zeros((10, 2)), k=1)
    with pytest.raises(ValueError, match="k must be smaller"):
        local_intrinsic_dimension(np.random.default_rng(0).random((5, 2)), k=5)
    with pytest.raises(ValueError, match="features"):
        lid_density(np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0]]), k=1 + 1)
