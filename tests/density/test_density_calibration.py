"""density_calibration: R^2 of average radial distance (Eq. 4) against 1 / density."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from densecore.density import Calibration, density_calibration
from densecore.synthetic import gaussian_mixture


def radial_ref(features, selected):
    """Eq. 4 from a full (N, M) Euclidean distance matrix: mean distance over each area."""
    x = np.asarray(features, np.float64)
    sel = np.asarray(selected)
    dist = np.sqrt(((x[:, None, :] - x[None, sel, :]) ** 2).sum(-1))
    nearest = dist.argmin(1)
    return np.array([dist[nearest == k, k].mean() for k in range(len(sel))])


def calibration_ref(features, densities, selected):
    """Reference radial distances, then a least-squares line and its R^2."""
    sel = np.asarray(selected)
    radial = radial_ref(features, sel)
    inv = 1.0 / np.asarray(densities, np.float64)[sel]
    slope, intercept = np.polyfit(inv, radial, 1)
    pred = slope * inv + intercept
    r2 = 1.0 - ((radial - pred) ** 2).sum() / ((radial - radial.mean()) ** 2).sum()
    return radial, inv, r2, slope, intercept


def test_matches_brute_force_reference():
    x, _ = gaussian_mixture(600, dim=5, n_components=6, seed=3)
    rng = np.random.default_rng(0)
    d = rng.uniform(0.5, 3.0, size=600)
    sel = rng.choice(600, size=40, replace=False)
    cal = density_calibration(x, d, sel)
    radial, inv, r2, slope, intercept = calibration_ref(x, d, sel)
    assert isinstance(cal, Calibration)
    np.testing.assert_allclose(cal.radial_distance, radial, rtol=1e-5)
    np.testing.assert_allclose(cal.inverse_density, inv, rtol=1e-12)
    assert cal.r2 == pytest.approx(r2, rel=1e-5)
    assert cal.slope == pytest.approx(slope, rel=1e-5)
    assert cal.intercept == pytest.approx(intercept, rel=1e-5, abs=1e-9)
    assert 0.0 <= cal.r2 <= 1.0


def test_inverse_density_linear_in_radial_distance_gives_r2_one():
    x, _ = gaussian_mixture(300, dim=3, n_components=4, seed=1)
    sel = np.arange(0, 300, 10)
    radial = radial_ref(x, sel)
    d = np.ones(300)
    d[sel] = 2.0 / (radial + 0.5)  # so that radial = 2 / d - 0.5 exactly
    cal = density_calibration(x, d, sel)
    assert cal.r2 == pytest.approx(1.0, abs=1e-9)
    assert cal.slope == pytest.approx(2.0, rel=1e-6)
    assert cal.intercept == pytest.approx(-0.5, rel=1e-6)


def test_uninformative_density_gives_low_r2():
    x, _ = gaussian_mixture(800, dim=4, n_components=5, seed=2)
    rng = np.random.default_rng(5)
    d = rng.uniform(0.5, 3.0, size=800)
    cal = density_calibration(x, d, rng.choice(800, size=80, replace=False))
    assert cal.r2 < 0.1  # random densities explain almost nothing


def test_constant_density_gives_nan_r2():
    x, _ = gaussian_mixture(100, dim=2, n_components=3, seed=0)
    cal = density_calibration(x, np.ones(100), [0, 10, 20, 30])
    assert math.isnan(cal.r2)
    assert cal.slope == 0.0


def test_tensor_in_tensor_out(device):
    x, _ = gaussian_mixture(200, dim=3, n_components=3, seed=4)
    d = np.random.default_rng(1).uniform(0.5, 3.0, size=200)
    sel = np.arange(0, 200, 7)
    ref = density_calibration(x, d, sel)
    cal = density_calibration(torch.from_numpy(x).to(device), torch.from_numpy(d).to(device),
                              torch.from_numpy(sel).to(device))
    assert isinstance(cal.radial_distance, torch.Tensor)
    assert cal.radial_distance.device.type == device.type
    np.testing.assert_allclose(cal.radial_distance.cpu().numpy(), ref.radial_distance, rtol=1e-5)
    assert cal.r2 == pytest.approx(ref.r2, rel=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(selected=[3]), "at least 2"),
    (dict(selected=[1, 1, 2]), "repeat"),
    (dict(selected=[1, 50]), r"\[0, 10\)"),
    (dict(densities=np.zeros(10)), "strictly positive"),
    (dict(densities=np.ones(9)), r"\(10,\)"),
])
def test_bad_input_is_rejected(kwargs, match):
    args = dict(features=np.random.default_rng(0).normal(size=(10, 2)), densities=np.ones(10),
                selected=[0, 5])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        density_calibration(**args)
