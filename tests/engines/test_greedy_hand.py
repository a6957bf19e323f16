"""Tiny hand-computed cases with exact expected indices."""

from __future__ import annotations

import numpy as np
import pytest

import densecore
from reference import table_engines


@pytest.mark.parametrize("backend", table_engines())
def test_kcenter_on_a_line(backend):
    # points 0, 1, 2, 3, 10 on a line, start at 0: farthest is 10 (r=100), then
    # 3 is at distance min(3, 7) = 3 (r=9) while 2 is at 2 (r=4), then 2 (r=1 vs 1 for 1 -> tie)
    x = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]], np.float32)
    sel = densecore.KCenterGreedy(backend=backend).select(x, 4, init=0)
    assert sel.indices.tolist() == [0, 4, 3, 1]
    assert sel.radii.tolist() == [np.inf, 100.0, 9.0, 1.0]


@pytest.mark.parametrize("backend", table_engines())
def test_density_rescales_the_cut_link(backend):
    # labeled points at 0 (density 4) and 10 (density 1); candidates at 3 and 8.
    # k-center: r(3) = 9, r(8) = 4 -> picks 3.
    # density-aware: r(3) = 9/4 = 2.25, r(8) = 4/1 = 4 -> picks 8 (Fig. 3b).
    x = np.array([[0.0], [10.0], [3.0], [8.0]], np.float32)
    dens = np.array([4.0, 1.0, 1.0, 1.0])
    kc = densecore.KCenterGreedy(backend=backend).select(x, 1, labeled=[0, 1])
    da = densecore.DensityAwareGreedy(backend=backend).select(x, 1, densities=dens,
                                                              labeled=[0, 1])
    assert kc.indices.tolist() == [2] and kc.radii.tolist() == [9.0]
    assert da.indices.tolist() == [3] and da.radii.tolist() == [4.0]


@pytest.mark.parametrize("backend", table_engines())
def test_out_of_pool_labeled_points_seed_r(backend):
    x = np.array([[1.0, 0.0], [0.0, 5.0], [6.0, 0.0]], np.float32)
    lf = np.array([[0.0, 0.0], [6.0, 1.0]], np.float32)
    sel = densecore.KCenterGreedy(backend=backend).select(x, 3, labeled_features=lf)
    # r = [1, 25, 1] -> 1 (r=25); then r = [1, -, 1] tie -> 0, then 2
    assert sel.indices.tolist() == [1, 0, 2]
    assert sel.radii.tolist() == [25.0, 1.0, 1.0]


def test_budget_zero_returns_empty():
    x = np.zeros((5, 2), np.float32)
    sel = densecore.KCenterGreedy().select(x, 0)
    assert sel.indices.shape == (0,) and sel.indices.dtype == np.int64
    assert sel.radii.shape == (0,)
