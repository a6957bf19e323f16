"""``search_backend=`` names the nearest-neighbour search's candidates wherever a search
runs (``backend=`` names a greedy engine); the former ``backend=`` of the search
functions is gone. ``KNNDensity`` has one search option, ``search=``; its
``search_backend=`` is deprecated for one release."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import densecore
from densecore.density import (density_calibration, knn_mean_distance, lid_density,
                               local_intrinsic_dimension, supplementary_calibration)

X = np.random.default_rng(0).normal(size=(60, 3))
SEL = np.arange(0, 60, 6)
D = np.random.default_rng(1).uniform(0.5, 3.0, 60)

CALLS = {
    "coverage": lambda **kw: densecore.coverage(X, X[SEL], **kw)[1],
    "covering_radius": lambda **kw: densecore.covering_radius(X, X[SEL], **kw),
    "average_radial_distance": lambda **kw: densecore.average_radial_distance(X, X[SEL], **kw),
    "bound_report": lambda **kw: densecore.bound_report(X, SEL, **kw).ard,
    "knn_mean_distance": lambda **kw: knn_mean_distance(X, 5, search="exact", **kw),
    "local_intrinsic_dimension": lambda **kw: local_intrinsic_dimension(X, 5, **kw),
    "lid_density": lambda **kw: lid_density(X, 5, **kw),
    "density_calibration": lambda **kw: density_calibration(X, D, SEL, **kw).r2,
    "supplementary_calibration": lambda **kw: supplementary_calibration(
        X, D, n_samples=20, min_samples=10, **kw).r2,
}


@pytest.mark.parametrize("name", list(CALLS))
def test_search_backend_names_the_search(name):
    call = CALLS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the option warns about nothing
        want = call(search_backend="torch")
    np.testing.assert_allclose(call(), want, rtol=1e-12)
    with pytest.raises(TypeError, match="backend"):
        call(backend="torch")  # the former name is removed
    with pytest.raises(ValueError, match="search_backend must be one of"):
        call(search_backend="numba")  # an engine, not a search


def test_knn_density_has_one_search_option():
    x = np.random.default_rng(2).normal(size=(80, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        want = densecore.KNNDensity(k=5, search="exact")(x)
    with pytest.warns(DeprecationWarning, match=r"search_backend=\) is deprecated"):
        old = densecore.KNNDensity(k=5, search="exact", search_backend="torch")
    assert old.search_backend == "torch"
    np.testing.assert_allclose(old(x), want, rtol=1e-12)
    with pytest.raises(TypeError):
        densecore.KNNDensity(backend="faiss")
    with pytest.raises(ValueError, match="search_backend must be one of"), \
            pytest.warns(DeprecationWarning):
        densecore.KNNDensity(search_backend="numba")
