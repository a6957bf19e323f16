"""Bounds (Eq. 1, 3, 4) against brute force in numpy float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import densecore
from densecore.synthetic import gaussian_mixture


def _brute(x, sel, y=None):
    x = x.astype(np.float64)
    d = np.sqrt(((x[:, None, :] - x[sel][None]) ** 2).sum(-1))
    a = d.argmin(1)
    dist = d[np.arange(len(x)), a]
    ard = np.array([dist[a == k].mean() if (a == k).any() else 0.0 for k in range(len(sel))])
    loss = None if y is None else float((y[sel][a] != y).mean())
    return dist.max(), ard, loss, a


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_bound_report_matches_brute_force(backend):
    x, y = gaussian_mixture(700, dim=5, n_components=5, seed=1)
    sel = np.random.default_rng(1).choice(700, size=30, replace=False)
    rep = densecore.bound_report(x, sel, y, search_backend=backend)
    delta, ard, loss, _ = _brute(x, sel, y)
    assert rep.delta == pytest.approx(delta, rel=1e-6)
    np.testing.assert_allclose(rep.ard, ard, rtol=1e-6, atol=1e-7)
    assert rep.max_ard == pytest.approx(ard.max(), rel=1e-6)
    assert rep.coreset_loss == pytest.approx(loss)
    assert rep.counts.sum() == 700
    assert rep.max_ard <= rep.delta  # Theorem 3


def test_selected_points_are_at_distance_zero_from_themselves():
    x, _ = gaussian_mixture(300, dim=8, seed=2)
    x *= 100.0  # large norms: the norm expansion alone would leave rounding residue
    sel = np.arange(0, 300, 7)
    a, d = densecore.coverage(x, x[sel])
    np.testing.assert_array_equal(d[sel], 0.0)
    np.testing.assert_array_equal(a[sel], np.arange(len(sel)))


def test_functions_agree_with_report_and_tensor_io(device):
    x, y = gaussian_mixture(400, dim=3, seed=3)
    sel = np.arange(0, 400, 20)
    rep = densecore.bound_report(x, sel, y)
    assert densecore.covering_radius(x, x[sel]) == pytest.approx(rep.delta)
    np.testing.assert_allclose(densecore.average_radial_distance(x, x[sel]), rep.ard)
    assert densecore.coreset_loss(x, sel, y) == pytest.approx(rep.coreset_loss)
    xt = torch.from_numpy(x).to(device)
    a, d = densecore.coverage(xt, xt[torch.from_numpy(sel).to(device)])
    assert isinstance(d, torch.Tensor) and d.device == xt.device
    assert float(d.max()) == pytest.approx(rep.delta)


def test_density_aware_lowers_max_ard_on_a_known_layout():
    # a tight cluster of 400 points and a wide one of 100: k-center spends its budget on
    # the wide cluster's extremes; with the dense cluster's density high, density-aware
    # greedy gives the dense cluster's coverage areas more room.
    x, _ = gaussian_mixture(2000, dim=2, n_components=2, weights=[0.8, 0.2],
                            spreads=[0.2, 1.5], separation=10.0, seed=0)
    dens = densecore.KNNDensity(k=10, tau=1.0)(x)
    kc = densecore.KCenterGreedy(seed=0).select(x, 40)
    da = densecore.DensityAwareGreedy(seed=0).select(x, 40, densities=dens)
    rk = densecore.bound_report(x, kc.indices)
    rd = densecore.bound_report(x, da.indices)
    assert rd.delta >= rk.delta  # the trade the paper describes (Table 4)
    assert len(rd.ard) == 40


def test_bad_input():
    x = np.zeros((5, 2), np.float32)
    with pytest.raises(ValueError, match="selected must hold at least one"):
        densecore.bound_report(x, [])
    with pytest.raises(ValueError, match="labels must have shape"):
        densecore.bound_report(x, [0], labels=np.zeros(4, np.int64))
    with pytest.raises(TypeError, match="labels must be integer"):
        densecore.bound_report(x, [0], labels=np.zeros(5))
    with pytest.raises(ValueError, match="centres must have D = 2"):
        densecore.coverage(x, np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="search_backend must be one of"):
        densecore.coverage(x, x[:1], search_backend="annoy")


def test_centres_is_the_one_spelling_and_centers_warns_for_one_release():
    x = np.array([[0.0], [1.0], [9.0]])
    c = np.array([[0.0], [10.0]])
    a, d = densecore.coverage(x, centres=c)
    for fn in (densecore.coverage, densecore.covering_radius,
               densecore.average_radial_distance):
        with pytest.warns(DeprecationWarning, match="use centres="):
            old = fn(x, centers=c)
        new = fn(x, c)
        for o, n in zip(old if isinstance(old, tuple) else (old,),
                        new if isinstance(new, tuple) else (new,)):
            np.testing.assert_array_equal(o, n)
        with pytest.raises(TypeError, match="former name of centres"):
            fn(x, c, centers=c)
        with pytest.raises(TypeError, match="missing the argument centres"):
            fn(x)
    assert a.tolist() == [0, 0, 1] and d.tolist() == [0.0, 1.0, 1.0]
