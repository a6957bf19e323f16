"""Tests that catch a loosened proof: each fails when its guarantee is weakened.

* The nearest-centre certificate (``_backends/nearest.py``): a fast search is
  replaced by an adversary whose values are off by up to 0.9 of the documented
  rounding bound (``4 (D + 8) eps (|q|^2 + max |c|^2) max 1/w``), ranking the
  true nearest centre behind its near-ties. The exact answer must survive; a
  bound 10 times smaller certifies the adversary's wrong ranking.
* The sparse k-NN certificate (``_backends/sparse_backend.py``): the same
  adversary on the expanded distances (bound ``2 gamma (|x_i|^2 + max |x|^2)``,
  ``gamma = 4 (nnz + 2) eps``), and real data where the expansion cancels (an
  offset of 1e6 in one column, spread 1e-2).
* The greedy's density rescaling: the same picks and radii with every density
  times 2^-995.
* The pruned engine's bound: the float64 reference with a tolerance far below
  any pruning slack, on ordinary data.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import densecore
from densecore._backends import nearest, sparse_backend
from densecore.sparse import knn_mean_distance_sparse
from reference import replay_check, table_engines

# ---------------------------------------------------------------- nearest.py


def _adversary(qf, cf, inv_w, m, eps, hidden):
    """``m`` candidates per query with values off by at most 0.9 of the documented
    bound: where the ``m + 1`` nearest lie within 1.8 bounds of each other, the
    nearest is left out and every listed value reads ``t_nearest + 0.9 bound``
    (a consistent ranking: the left-out centre's value may read the same)."""
    q = qf.to(torch.float64)
    c = cf.to(torch.float64)
    iw = inv_w.to(torch.float64)
    t = ((q[:, None, :] - c[None]) ** 2).sum(-1) * iw[None]
    bound = (4.0 * (q.shape[1] + 8) * eps
             * (q.pow(2).sum(1) + c.pow(2).sum(1).max()) * float(iw.max()))
    srt, order = torch.sort(t, dim=1, stable=True)
    hide = srt[:, m] - srt[:, 0] <= 1.8 * bound
    vals = torch.where(hide[:, None], (srt[:, :1] + 0.9 * bound[:, None]).expand(-1, m),
                       srt[:, :m])
    cand = torch.where(hide[:, None], order[:, 1:m + 1], order[:, :m])
    hidden.append(int(hide.sum()))
    return vals, cand


def _near_ties(dtype, jitter, seed=0, groups=12, per=5):
    """Queries at group centres, each with ``per`` centres at radius 1e-3 whose
    squared distances differ by about ``2e-3 jitter`` (far below the bound)."""
    rng = np.random.default_rng(seed)
    g = rng.uniform(-1.0, 1.0, size=(groups, 3))
    direc = rng.normal(size=(groups, per, 3))
    direc /= np.linalg.norm(direc, axis=2, keepdims=True)
    radius = 1e-3 + jitter * rng.uniform(0.0, 1.0, size=(groups, per, 1))
    c = (g[:, None, :] + radius * direc).reshape(-1, 3).astype(dtype)
    q = g.astype(dtype)
    return q, c


def _ref(q, c, k):
    v = ((q.astype(np.float64)[:, None] - c.astype(np.float64)[None]) ** 2).sum(-1)
    o = np.argsort(v, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(v, o, 1), o


@pytest.mark.parametrize("k", [1, 2])
def test_nearest_certificate_survives_values_just_inside_its_bound(monkeypatch, k):
    # the torch path on float64 values (eps 2^-53): gaps of about 2e-16 between
    # near-ties, well above the inputs' rounding (2e-19) and below the bound (1e-14)
    q, c = _near_ties(np.float64, 1e-13)
    hidden: list[int] = []
    monkeypatch.setattr(nearest, "_torch_candidates",
                        lambda qf, cf, iw, m: _adversary(qf, cf, iw, m, 2.0 ** -53, hidden))
    v, i = nearest.search(torch.from_numpy(q), torch.from_numpy(c), k, method="torch")
    rv, ri = _ref(q, c, k)
    assert hidden and hidden[0] == len(q)  # the adversary hid the nearest everywhere
    np.testing.assert_array_equal(i.numpy(), ri)
    np.testing.assert_allclose(v.numpy(), rv, rtol=1e-12)


def test_nearest_certificate_survives_a_float32_adversary(monkeypatch):
    # the faiss path (float32 candidates, eps 2^-24) with a fixed float32 case
    pytest.importorskip("faiss")
    q, c = _near_ties(np.float32, 1e-5, seed=1, groups=60)
    assert len(c) >= nearest.FAISS_MIN
    hidden: list[int] = []

    def fake(qf, cf, iws, m):
        v, a = _adversary(torch.from_numpy(qf), torch.from_numpy(cf), torch.from_numpy(iws),
                          m, 2.0 ** -24, hidden)
        return v.numpy(), a.numpy()

    monkeypatch.setattr(nearest.faiss_backend, "nearest_weighted", fake)
    v, i = nearest.search(torch.from_numpy(q), torch.from_numpy(c), 1)
    rv, ri = _ref(q, c, 1)
    assert hidden and hidden[0] >= len(q) // 2
    np.testing.assert_array_equal(i.numpy(), ri)
    np.testing.assert_allclose(v.numpy(), rv, rtol=1e-12)


# ---------------------------------------------------------- sparse_backend.py


def _sparse_ref(a, k):
    x = a.toarray().astype(np.float64)
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return np.sort(d, 1)[:, :k].mean(1)


def test_sparse_knn_certificate_survives_values_just_inside_its_bound(monkeypatch):
    # clusters of 11 near-identical rows: a row, its nearest and 9 others (the
    # candidates are k + 1 + slack = 10 rows, the row itself included); the
    # adversary ranks each row's nearest behind the 9 others
    rng = np.random.default_rng(0)
    k, slack = 1, 8
    base = np.zeros((8, 6))
    for b in base:
        b[rng.choice(6, 3, replace=False)] = rng.uniform(0.5, 1.5, 3)
    x = np.repeat(base, 11, axis=0)
    nz = x != 0
    x[nz] += rng.integers(1, 40, nz.sum()) * 2.0 ** -52  # gaps far below the bound
    a = sp.csr_matrix(x)
    real = sparse_backend._approx_sq
    hidden = []

    def fake(xs, xt, sq, lo, hi):
        approx = real(xs, xt, sq, lo, hi)
        dense = xs[lo:hi].toarray()
        full = xs.toarray()
        t = ((dense[:, None] - full[None]) ** 2).sum(-1)
        nnz = int(np.diff(xs.indptr).max())
        bound = 2.0 * 4.0 * (nnz + 2) * 2.0 ** -52 * (sq[lo:hi] + sq.max())
        rows = np.arange(lo, hi)
        t[rows - lo, rows] = np.inf
        near = np.argmin(t, 1)
        srt = np.sort(t, 1)
        hide = srt[:, k + slack] - srt[:, 0] <= 1.8 * bound  # 9 others within reach
        for r in np.flatnonzero(hide):
            row = approx[r]
            others = np.argsort(t[r], kind="stable")[1:k + slack + 1]
            row[others] = srt[r, 0] + 0.9 * bound[r] - 1e-3 * bound[r]
            row[near[r]] = srt[r, 0] + 0.9 * bound[r]
            far = np.ones(len(row), bool)
            far[others] = False
            far[near[r]] = False
            far[lo + r] = False
            row[far] = np.maximum(row[far], t[r, far] - 0.9 * bound[r])
        hidden.append(int(hide.sum()))
        return approx

    monkeypatch.setattr(sparse_backend, "_approx_sq", fake)
    got = knn_mean_distance_sparse(a, k)
    assert sum(hidden) == len(x)
    np.testing.assert_allclose(got, _sparse_ref(a, k), rtol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_sparse_knn_with_a_large_offset_in_one_column(seed):
    # ||a||^2 - 2ab + ||b||^2 cancels: an offset of 1e6 with spread 1e-2 (a relative
    # spread of 1e-8); without the certificate's bound 19 of 20 such sets get wrong means
    rng = np.random.default_rng(seed)
    n = 20
    x = np.zeros((n, 4))
    x[:, 0] = 1e6 + rng.normal(size=n) * 1e-2
    mask = rng.random((n, 3)) < 0.2
    x[:, 1:][mask] = rng.normal(size=mask.sum()) * 1e-2
    a = sp.csr_matrix(x)
    np.testing.assert_allclose(knn_mean_distance_sparse(a, 3), _sparse_ref(a, 3), rtol=1e-9)


# ------------------------------------------------------------------ greedy.py


@pytest.mark.parametrize("backend", table_engines())
def test_density_scale_invariance(backend):
    # every density times 2^-995, features of spread 2^17: r = distance / density
    # reaches 2^1036 and overflows float64 unless the densities are rescaled; the
    # picks must not change (the radii saturate to inf, like their exact values)
    from densecore.synthetic import gaussian_mixture

    x = np.ldexp(gaussian_mixture(300, dim=4, seed=1)[0].astype(np.float64), 17)
    dens = np.random.default_rng(1).uniform(0.2, 3.0, len(x))
    lab = np.arange(0, 300, 37)
    want = densecore.farthest_first(x, 25, densities=dens, labeled=lab, backend=backend)
    got = densecore.farthest_first(x, 25, densities=np.ldexp(dens, -995), labeled=lab,
                                   backend=backend)
    np.testing.assert_array_equal(got.indices, want.indices)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(got.radii, np.ldexp(want.radii, 995))
    small = densecore.farthest_first(x / 2.0 ** 17, 25, densities=np.ldexp(dens, -995),
                                     labeled=lab, backend=backend)
    np.testing.assert_array_equal(small.indices, want.indices)
    np.testing.assert_array_equal(small.radii, np.ldexp(want.radii, 995 - 34))


# ------------------------------------------------------------ pruned engines


@pytest.mark.parametrize("backend", table_engines())
@pytest.mark.parametrize("data", ["mixture", "mixture+densities", "line", "noise"])
def test_tight_reference_on_ordinary_data(backend, data):
    # float64 features: every engine value is the float64 reference's up to a few
    # roundings, so a tolerance of 1e-12 leaves no room for an optimistic pruning
    # bound. Points on a line make the triangle inequality behind the pruning tight
    # (a point between its centre and the new pick), so a bound 1 % too optimistic
    # skips points that the new pick lowers
    from densecore.synthetic import gaussian_mixture

    rng = np.random.default_rng(4)
    budget = 150
    if data == "line":
        t = rng.uniform(0.0, 100.0, 3000)
        x = t[:, None] * rng.normal(size=(1, 8))
    elif data == "noise":  # pruning stops paying: the dense passes over groups run
        x = rng.normal(size=(3000, 24))
        budget = 450
    else:
        x = gaussian_mixture(3000, dim=8, seed=4)[0].astype(np.float64)
    dens = rng.uniform(0.5, 2.0, len(x)) if data.endswith("densities") else None
    lab = rng.choice(len(x), 20, replace=False)
    sel = densecore.farthest_first(x, budget, densities=dens, labeled=lab, backend=backend)
    strict = replay_check(x, sel.indices, densities=dens, labeled=lab, rtol=1e-12, atol=0.0)
    assert strict >= budget - 10
