"""densecore's scikit-activeml strategies inside a scikit-activeml loop."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

skactiveml = pytest.importorskip("skactiveml")
from skactiveml.classifier import SklearnClassifier  # noqa: E402
from skactiveml.pool import CoreSet as SkCoreSet  # noqa: E402
from skactiveml.utils import MISSING_LABEL  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

import densecore  # noqa: E402
from densecore.integrations.skactiveml import CoreSet, DensityAwareCoreSet  # noqa: E402


def blobs(seed, n=400, dim=5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, dim)) * 4
    label = rng.integers(4, size=n)
    return centres[label] + rng.normal(size=(n, dim)), label


@pytest.mark.parametrize("seed", [0, 1])
def test_loop_matches_skactiveml_coreset(seed):
    X, y_true = blobs(seed)
    y = np.full(len(X), MISSING_LABEL)
    y[:3] = y_true[:3]
    clf = SklearnClassifier(LogisticRegression(), classes=np.arange(4))
    ours, theirs = CoreSet(random_state=seed), SkCoreSet(random_state=seed)
    for cycle in range(4):
        clf.fit(X, y)
        q = ours.query(X, y, batch_size=10)
        assert q.tolist() == theirs.query(X, y, batch_size=10).tolist(), cycle
        assert np.isnan(y[q]).all(), "a labeled sample was queried"
        y[q] = y_true[q]
    assert (~np.isnan(y)).sum() == 43
    assert clf.fit(X, y).score(X, y_true) > 0.5


def test_candidates_and_utilities_match():
    X, y_true = blobs(2, n=200)
    y = np.full(len(X), MISSING_LABEL)
    y[[5, 50]] = y_true[[5, 50]]
    cand = np.arange(0, 200, 3)
    q1, u1 = CoreSet().query(X, y, candidates=cand, batch_size=8, return_utilities=True)
    q2, u2 = SkCoreSet().query(X, y, candidates=cand, batch_size=8, return_utilities=True)
    assert q1.tolist() == q2.tolist()
    np.testing.assert_array_equal(np.isnan(u1), np.isnan(u2))
    np.testing.assert_allclose(u1[~np.isnan(u1)], u2[~np.isnan(u2)], rtol=1e-9)
    # candidates given as new samples: indices refer to them
    new = X[cand] + 0.01
    q3 = CoreSet().query(X, y, candidates=new, batch_size=8)
    q4 = SkCoreSet().query(X, y, candidates=new, batch_size=8)
    assert q3.tolist() == q4.tolist()


def test_density_aware_strategy():
    X, y_true = blobs(3, n=300)
    y = np.full(len(X), MISSING_LABEL)
    y[0] = y_true[0]
    flat = DensityAwareCoreSet(density=lambda a: np.full(len(a), 2.0))
    assert flat.query(X, y, batch_size=12).tolist() == CoreSet().query(X, y, batch_size=12).tolist()
    dens = densecore.KNNDensity(k=5)(X)
    q = DensityAwareCoreSet(k=5).query(X, y, batch_size=12)
    unl = np.flatnonzero(np.isnan(y))
    ref = densecore.farthest_first(X[unl], 12, densities=dens[unl], labeled_features=X[:1],
                                   labeled_densities=dens[:1])
    assert q.tolist() == unl[ref.indices].tolist()
    q, u = DensityAwareCoreSet(k=5).query(X, y, batch_size=3, return_utilities=True)
    assert u.shape == (3, len(X)) and np.isnan(u[:, 0]).all()
    assert u[0, q[0]] == pytest.approx(np.nanmax(u[0]))
    with pytest.raises(ValueError, match="density must"):
        DensityAwareCoreSet(density="gmm").query(X, y)


def test_nothing_labeled_sparse_error_and_cosine():
    X, _ = blobs(4, n=150)
    y = np.full(len(X), MISSING_LABEL)
    q1 = CoreSet(random_state=7).query(X, y, batch_size=5)
    assert q1.tolist() == CoreSet(random_state=7).query(X, y, batch_size=5).tolist()
    assert len(set(q1.tolist())) == 5
    y[0] = 1
    with pytest.raises(TypeError, match="must be dense"):
        CoreSet().query(sp.csr_matrix(X), y, batch_size=6)
    qc = CoreSet(metric="cosine").query(X, y, batch_size=6)
    qk = SkCoreSet(metric="cosine").query(X, y, batch_size=6)
    assert qc.tolist() == qk.tolist()


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_coreset_utilities_come_from_the_librarys_scaled_geometry(scale):
    """The utilities are the library's coverage values (the one scaling rule, plain
    distances unscaled after the square root), not a replay in raw float64: at
    1e+-200 they are the unit-scale utilities times the scale, and the picks agree."""
    X, _ = blobs(4, n=60, dim=3)
    y = np.full(len(X), MISSING_LABEL)
    y[[1, 5]] = 0
    q0, u0 = CoreSet().query(X, y, batch_size=4, return_utilities=True)
    q1, u1 = CoreSet().query(X * scale, y, batch_size=4, return_utilities=True)
    assert q1.tolist() == q0.tolist()
    assert np.array_equal(np.isnan(u1), np.isnan(u0)) and np.isfinite(u1[~np.isnan(u1)]).all()
    np.testing.assert_allclose(u1, u0 * scale, rtol=1e-13)
