"""supplementary_calibration: the U(0.5, 3) draw and both R^2 values."""

from __future__ import annotations

import numpy as np
import pytest

from densecore.density import supplementary_calibration


def test_draw_and_fit_against_brute_force():
    g = np.random.default_rng(1)
    d = g.uniform(0.1, 6.0, 800)
    x = g.normal(size=(800, 3)) / d[:, None]
    cal = supplementary_calibration(x, d, n_samples=100, bins=5, min_samples=10, seed=3)
    sel = cal.selected
    assert cal.n_points == len(sel) == 100
    assert np.all((d[sel] >= 0.5) & (d[sel] <= 3.0))
    counts = np.histogram(d[sel], bins=np.linspace(0.5, 3.0, 6))[0]
    assert counts.tolist() == [20] * 5  # stratified: roughly uniform densities
    dist = np.sqrt(((x[:, None] - x[sel][None]) ** 2).sum(-1))
    a = dist.argmin(1)
    dd = dist.min(1)
    ard = np.array([dd[a == k].mean() for k in range(len(sel))])
    rad = np.array([dd[a == k].max() for k in range(len(sel))])
    np.testing.assert_allclose(cal.radial_distance, ard, rtol=1e-9)
    assert cal.r2 == pytest.approx(np.corrcoef(1 / d[sel], ard)[0, 1] ** 2)
    assert cal.r2_radius == pytest.approx(np.corrcoef(rad, ard)[0, 1] ** 2)
    again = supplementary_calibration(x, d, n_samples=100, bins=5, min_samples=10, seed=3)
    assert again.selected.tolist() == sel.tolist()


def test_too_few_points_in_range_is_a_named_error():
    x = np.random.default_rng(0).normal(size=(100, 2))
    d = np.full(100, 10.0)
    d[:5] = 1.0
    with pytest.raises(ValueError, match=r"densities must put at least 30 points in "
                                         r"\[0.5, 3.0\].*got 5"):
        supplementary_calibration(x, d)
