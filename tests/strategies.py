"""Hypothesis strategies of hostile numbers shared by test files of several layers:
Gaussian mixtures at extreme scales and offsets, with duplicates, extreme densities,
labeled rows and out-of-pool labeled points on both sides of the search's faiss
threshold."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from densecore._backends import nearest

SCALES = [1e-25, 1e-3, 1.0, 1e6, 1e19]
OFFSETS = [0.0, 1e3, 1e5]  # in units of the spread
DENSITIES = ["none", "uniform", "tiny", "huge"]


def _densities(kind, n, rng):
    if kind == "uniform":
        return rng.uniform(0.5, 3.0, n)
    if kind == "tiny":  # KNNDensity(tau=0.005): beta * exp(-200 e), down to about 1e-86
        return np.e ** 2.4 * np.exp(-200.0 * rng.uniform(0.0, 1.0, n))
    if kind == "huge":
        return 10.0 ** rng.uniform(100.0, 200.0, n)
    return None


@st.composite
def hostile(draw):
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(8, 120))
    dim = draw(st.integers(1, 6))
    scale = draw(st.sampled_from(SCALES))
    offset = draw(st.sampled_from(OFFSETS))
    dup = draw(st.sampled_from([0.0, 0.5, 0.9]))
    centres = rng.normal(size=(4, dim)) * 5
    x = centres[rng.integers(0, 4, n)] + rng.normal(size=(n, dim))
    n_dup = int(dup * n)
    if n_dup:
        x[rng.choice(n, n_dup, replace=False)] = x[rng.integers(0, n, n_dup)]
    x = ((x + offset) * scale).astype(np.float32)
    kind = draw(st.sampled_from(DENSITIES))
    dens = _densities(kind, n, rng)
    n_lf = draw(st.sampled_from([0, 3, nearest.FAISS_MIN + 4]))  # both sides of faiss
    lf = ld = None
    if n_lf:
        src = centres[rng.integers(0, 4, n_lf)] + rng.normal(size=(n_lf, dim))
        lf = ((src + offset) * scale).astype(np.float32)
        ld = _densities(kind, n_lf, rng)
    n_lab = draw(st.integers(0, n // 2))
    labeled = rng.choice(n, n_lab, replace=False)
    budget = draw(st.integers(1, n - n_lab))
    return x, dens, labeled, lf, ld, budget
