"""TypicalityGreedy / typicality_farthest_first against a naive float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import densecore
from reference import table_engines
from densecore.synthetic import gaussian_mixture
from densecore import TypicalityGreedy
from densecore.typicality import typicality_farthest_first


def typicality_ref(x, budget, dens=None, g=1.0, labeled=(), labeled_features=None, init=None):
    """argmax r_t * d_t^g, verbatim in float64, one full pass per pick."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    w = np.ones(n) if dens is None else np.asarray(dens, dtype=np.float64) ** g
    r = np.full(n, np.inf)
    taken = np.zeros(n, dtype=bool)
    for k in labeled:
        r = np.minimum(r, ((x - x[k]) ** 2).sum(1))
        taken[k] = True
    if labeled_features is not None:
        for f in np.asarray(labeled_features, dtype=np.float64):
            r = np.minimum(r, ((x - f) ** 2).sum(1))
    picks, radii = [], []
    for i in range(budget):
        s = np.where(taken, -np.inf, r * w)
        u = int(init) if i == 0 and init is not None else int(np.argmax(s))
        picks.append(u)
        radii.append(r[u])  # r at pick time: the one meaning of Selection.radii
        taken[u] = True
        r = np.minimum(r, ((x - x[u]) ** 2).sum(1))
    return np.array(picks), np.array(radii)


def _data(n=300, dup=0.1, seed=0):
    x, _ = gaussian_mixture(n, dim=5, n_components=4, duplicates=dup, seed=seed)
    d = np.random.default_rng(seed).uniform(0.5, 3.0, n)
    d[np.random.default_rng(seed + 1).integers(0, n, 20)] = 1.0  # ties in density
    return x.astype(np.float64), d


@pytest.mark.parametrize("backend", table_engines(weighted=True))
@pytest.mark.parametrize("g", [0.0, 0.5, 1.0, 3.0])
def test_matches_float64_reference(backend, g):
    x, d = _data()
    lab = [3, 17, 250]
    lf = x[[5, 6]] + 0.01
    sel = typicality_farthest_first(x, 40, densities=d, g=g, labeled=lab, labeled_features=lf,
                                    backend=backend)
    ref, r = typicality_ref(x, 40, d, g, lab, lf)
    assert sel.indices.tolist() == ref.tolist()
    np.testing.assert_allclose(sel.radii, r, rtol=1e-12)
    assert not set(sel.indices.tolist()) & set(lab)


@pytest.mark.parametrize("backend", table_engines(weighted=True))
def test_float32_and_init(backend):
    x, d = _data(200, seed=3)
    sel = typicality_farthest_first(x.astype(np.float32), 30, densities=d, init=7,
                                    backend=backend)
    ref, _ = typicality_ref(x.astype(np.float32), 30, d, 1.0, init=7)
    assert sel.indices.tolist() == ref.tolist()
    score = sel.radii * d[sel.indices]  # r * w is what the greedy makes non-increasing
    assert np.all(np.diff(score[1:]) <= 1e-6 * score[1])


def test_exact_ties_go_to_lowest_index():
    x = np.array([[0.0], [2.0], [-2.0], [2.0], [1.0]])
    for backend in table_engines(weighted=True):
        sel = typicality_farthest_first(x, 3, densities=np.ones(5), labeled=[0],
                                        backend=backend)
        assert sel.indices.tolist() == [1, 2, 4]  # 1 and 2 tie with 3 at r = 4


def test_g_zero_is_kcenter():
    x, d = _data(250, seed=5)
    a = typicality_farthest_first(x, 25, densities=d, g=0.0, labeled=[1]).indices
    b = densecore.KCenterGreedy().select(x, 25, labeled=[1]).indices
    assert a.tolist() == b.tolist()


def test_density_moves_picks_off_outliers():
    # an outlier far away with a tiny density is passed over for a typical far point
    x = np.array([[0.0], [1.0], [1.1], [1.2], [8.0]])
    d = np.array([1.0, 5.0, 5.0, 5.0, 0.01])
    assert typicality_farthest_first(x, 1, densities=d, labeled=[0]).indices.tolist() == [3]
    assert typicality_farthest_first(x, 1, densities=d, g=0, labeled=[0]).indices.tolist() == [4]


def test_class_knn_fallback_and_tensor_io():
    x, _ = _data(150, dup=0.0, seed=2)
    s = TypicalityGreedy(g=1.0, seed=4)
    a = s.select(x, 10)
    from densecore.density import knn_mean_distance

    e = knn_mean_distance(x, 10)
    ref, _ = typicality_ref(x, 10, 1.0 / e, 1.0, init=int(np.random.default_rng(4).integers(150)))
    assert a.indices.tolist() == ref.tolist()
    t = s.select(torch.from_numpy(x), 10)
    assert isinstance(t.indices, torch.Tensor) and t.indices.tolist() == ref.tolist()
    # labeled_densities are accepted and ignored
    b = s.select(x, 5, densities=np.ones(150), labeled_features=x[:2],
                 labeled_densities=np.ones(2))
    assert len(b.indices) == 5


def test_bad_inputs_name_the_argument():
    x, d = _data(50, seed=1)
    with pytest.raises(ValueError, match="g must"):
        TypicalityGreedy(g=-1)
    with pytest.raises(ValueError, match="densities"):
        typicality_farthest_first(x, 3, densities=-d)
    with pytest.raises(ValueError, match="densities \\*\\* g"):
        typicality_farthest_first(x, 3, densities=np.full(50, 1e300), g=4.0)
    with pytest.raises(ValueError, match="budget"):
        typicality_farthest_first(x, 51, densities=d)
    with pytest.raises(ValueError, match="backend"):
        typicality_farthest_first(x, 3, backend="cuda")


def test_top_level_export():
    assert densecore.TypicalityGreedy is TypicalityGreedy
    assert "TypicalityGreedy" in densecore.__all__
