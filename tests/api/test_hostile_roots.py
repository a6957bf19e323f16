"""Hostile numbers outside the greedy: one test per root cause, each exact.

Every input here is an ordinary data set multiplied by a power of two, which is
exact, so the answer at the hostile scale must be the ordinary answer: the same
indices, and values multiplied by the same power of two (exactly, where they
are representable). The root causes: the nearest-centre search without the
greedy's rescaling (|x| beyond 2^+-512), float32 features below 2^-127 (a scale
that overflows float32), float64 features below 2^-512 (``fscale ** 2``
overflows), subnormal densities, the typicality sampler's float32 squares, and
the conversions (bfloat16, grad-requiring tensors, big-endian arrays) and edge
cases (empty or negative errors, one sample, a 17-bit ignore index).
"""

from __future__ import annotations

import math
import tempfile

import numpy as np
import pytest
import torch

import densecore
from densecore import greedy
from densecore._backends import nearest
from densecore.density.lid import local_intrinsic_dimension
from densecore.state import ActiveLabelState
from reference import replay_check, table_engines

HUGE, TINY = 640, -640  # powers of two: |x| about 1e192 and 1e-193


def _base(n=80, dim=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, dim)) * 4
    x = centres[rng.integers(0, 4, n)] + rng.normal(size=(n, dim))
    x[5] = x[6]  # a duplicate
    return x


def _p2(a, e):
    """``a * 2^e`` in float64 (one rounding; inf/0 beyond the range)."""
    with np.errstate(over="ignore", under="ignore"):
        return np.ldexp(np.asarray(a, np.float64), e)


# ---------------------------------------------------------------- 1: the search


@pytest.mark.parametrize("e", [HUGE, TINY])
@pytest.mark.parametrize("method", ["auto", "torch"])
def test_coverage_and_bound_report_at_hostile_scales(e, method):
    x = _base()
    a0, d0 = densecore.coverage(x, x[:7], search_backend=method)
    a1, d1 = densecore.coverage(_p2(x, e), _p2(x[:7], e), search_backend=method)
    assert a1.min() >= 0
    np.testing.assert_array_equal(a1, a0)
    np.testing.assert_array_equal(d1, _p2(d0, e))
    r0 = densecore.bound_report(x, np.arange(7), search_backend=method)
    r1 = densecore.bound_report(_p2(x, e), np.arange(7), search_backend=method)
    assert r1.delta == math.ldexp(r0.delta, e)
    np.testing.assert_allclose(r1.ard, _p2(r0.ard, e), rtol=1e-13)


@pytest.mark.parametrize("e", [HUGE, TINY])
def test_nearest_search_at_hostile_scales(e):
    x = torch.from_numpy(_base())
    w = torch.linspace(0.5, 2.0, 9, dtype=torch.float64)
    for method in nearest.METHODS:
        if method == "faiss" and not nearest.faiss_backend.available():
            continue
        v0, i0 = nearest.search(x, x[:9], 3, weights=w, method=method)
        xe = torch.from_numpy(_p2(x.numpy(), e))
        # unscaled values saturate to inf / 0 beyond the float64 range, the indices hold
        v2, i2 = nearest.search(xe, xe[:9], 3, weights=w, method=method)
        assert torch.equal(i2, i0)
        np.testing.assert_array_equal(v2.numpy(), _p2(v0.numpy(), 2 * e))
        v1, i1, s = nearest.search_scaled(xe, xe[:9], 3, weights=w, method=method)
        assert torch.equal(i1, i0)
        np.testing.assert_array_equal(_p2(v1.numpy(), s - 2 * e), v0.numpy())


def test_search_fills_every_slot_when_values_overflow():
    # weights near the float64 minimum: every quotient is inf, and the lowest
    # indices still come back (never -1)
    q = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    c = torch.tensor([[3.0], [2.0], [5.0]], dtype=torch.float64)
    w = torch.tensor([1e-300, 1e-300, 1e-300], dtype=torch.float64) * 1e-20
    v, i = nearest.search(q * 1e300, c * 1e300, 2, weights=w)
    assert i.tolist() == [[1, 0], [1, 0]]


@pytest.mark.parametrize("e", [HUGE, TINY])
def test_knn_density_and_lid_at_hostile_scales(e):
    x = _base(120)
    d0 = densecore.KNNDensity(k=5, search="exact")(x)
    d1 = densecore.KNNDensity(k=5, search="exact")(_p2(x, e))
    np.testing.assert_allclose(d1, d0, rtol=1e-12)
    assert d0.std() > 0.5
    m0 = local_intrinsic_dimension(x, k=6)
    m1 = local_intrinsic_dimension(_p2(x, e), k=6)
    np.testing.assert_allclose(m1, m0, rtol=1e-12)
    assert m0.mean() > 1.5


@pytest.mark.parametrize("e", [HUGE, TINY])
@pytest.mark.parametrize("backend", table_engines())
def test_kmedoids_refinement_at_hostile_scales(e, backend):
    x = _base(90)
    lab = [3, 40]
    s0 = densecore.KMedoidsRefinement(backend=backend, swaps=4).select(x, 6, labeled=lab)
    s1 = densecore.KMedoidsRefinement(backend=backend, swaps=4).select(_p2(x, e), 6,
                                                                      labeled=lab)
    np.testing.assert_array_equal(s1.indices, s0.indices)
    np.testing.assert_allclose(s1.ard, _p2(s0.ard, e), rtol=1e-12)  # distances
    fits = abs(2 * e) < 1000  # radii: squared distances, inside float64 or not
    np.testing.assert_allclose(s1.radii, _p2(s0.radii, 2 * e) if fits else
                               np.where(e > 0, np.inf, 0.0) * np.ones(6), rtol=1e-12)


# ------------------------------------------------- 2-4: the greedy's scaling rule


@pytest.mark.parametrize("backend", table_engines())
def test_float32_features_below_2_to_the_minus_127(backend):
    # small integers times 2^-140 are exact float32 subnormals; the scale that brings
    # them to [1, 2) is 2^131, beyond float32's range
    ints = np.random.default_rng(1).integers(-100, 101, size=(70, 3)).astype(np.float32)
    tiny = ints * np.float32(2.0 ** -70) * np.float32(2.0 ** -70)
    assert np.abs(tiny).max() < 2.0 ** -127
    want = densecore.farthest_first(ints, 12, init=4, backend=backend)
    got = densecore.farthest_first(tiny, 12, init=4, backend=backend)
    np.testing.assert_array_equal(got.indices, want.indices)
    # r = 2^-280 * r_base is below float32's range: radii come back as 0 (float32),
    # and exactly in float64 from the float64 features
    got64 = densecore.farthest_first(tiny.astype(np.float64), 12, init=4, backend=backend)
    np.testing.assert_array_equal(got64.indices, want.indices)
    np.testing.assert_array_equal(got64.radii[1:], _p2(want.radii[1:], -280))


def test_finish_rejects_negative_indices():
    idx = torch.tensor([3, -1, 2])
    with pytest.raises(greedy.InvalidSelectionError, match="index -1"):
        greedy.finish(idx, torch.ones(3), fscale=1.0, dscale=1.0, first=-1,
                      dtype=torch.float32, is_numpy=True, device="cpu", n=5)
    with pytest.raises(greedy.InvalidSelectionError, match="index 7"):
        greedy.finish(torch.tensor([7]), torch.ones(1), fscale=1.0, dscale=1.0, first=-1,
                      dtype=torch.float32, is_numpy=True, device="cpu", n=5)
    assert issubclass(greedy.InvalidSelectionError, ValueError)


@pytest.mark.parametrize("backend", table_engines())
def test_float64_features_below_1e_minus_154(backend):
    x = _base()
    want = densecore.farthest_first(x, 15, init=2, backend=backend)
    got = densecore.farthest_first(_p2(x, -520), 15, init=2, backend=backend)
    np.testing.assert_array_equal(got.indices, want.indices)
    # r scales by 2^-1040 (subnormal, one rounding)
    np.testing.assert_array_equal(got.radii[1:], _p2(_p2(want.radii[1:], -520), -520))


@pytest.mark.parametrize("backend", table_engines())
def test_subnormal_densities(backend):
    x = _base()
    dens = np.random.default_rng(2).integers(1, 9, len(x)).astype(np.float64)
    want = densecore.farthest_first(x, 15, densities=dens, init=2, backend=backend)
    # densities 2^-1040 dens (exact subnormals) with features 2^-600 x:
    # r = 2^-1200 / 2^-1040 r_base = 2^-160 r_base
    got = densecore.farthest_first(_p2(x, -600), 15, densities=_p2(dens, -1040), init=2,
                                   backend=backend)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.radii[1:], _p2(want.radii[1:], -160))


# ------------------------------------------------------------- 5: typicality


@pytest.mark.parametrize("backend", table_engines())
@pytest.mark.parametrize("case", ["float32 2^66", "float64 2^500", "float64 2^-500",
                                  "float64 2^660", "float64 2^-660"])
def test_typicality_at_hostile_scales(backend, case):
    x = _base(100)
    dens = np.random.default_rng(3).uniform(0.5, 2.0, len(x))
    e = int(case.split("^")[1])
    if case.startswith("float32"):
        x = x.astype(np.float32)
    sampler = densecore.TypicalityGreedy(backend=backend)
    want = sampler.select(x, 12, densities=dens, labeled=[0, 9])
    scaled = _p2(x, e).astype(x.dtype)
    got = sampler.select(scaled, 12, densities=dens, labeled=[0, 9])
    np.testing.assert_array_equal(got.indices, want.indices)
    if abs(e) <= 500:  # radii r scale by 2^(2e), in the features' dtype (inf beyond it)
        with np.errstate(over="ignore"):
            want_r = _p2(np.asarray(want.radii, np.float64), 2 * e).astype(x.dtype)
        np.testing.assert_allclose(got.radii, want_r, rtol=1e-6)


def test_typicality_backends_agree_in_float64():
    # the numba engine accumulates in float64, the torch engine in the features' dtype
    # (as for every sampler): the same picks, radii within float32 roundings
    x = _base(150).astype(np.float32)
    dens = np.random.default_rng(4).uniform(0.5, 2.0, len(x))
    a = densecore.TypicalityGreedy(backend="numba").select(x, 20, densities=dens, init=1)
    b = densecore.TypicalityGreedy(backend="torch").select(x, 20, densities=dens, init=1)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.radii, b.radii, rtol=1e-6)


# ------------------------------------------------------- 6: the one global scale


@pytest.mark.parametrize("backend", table_engines())
def test_accuracy_is_relative_to_the_largest_magnitude(backend):
    # a float32 cluster at 1e-25 beside a point at 1: squared distances inside the
    # cluster (1e-50) underflow float32, as in any float32 computation of them. The
    # documented guarantee: every pick is the float64 argmax up to a rounding of the
    # largest squared magnitude (2^-20 max|x|^2 here), and the far point is found
    rng = np.random.default_rng(5)
    x = np.vstack([rng.normal(size=(40, 3)) * 1e-25, [[1.0, 0.0, 0.0]]]).astype(np.float32)
    sel = densecore.farthest_first(x, 10, init=0, backend=backend)
    assert int(sel.indices[1]) == 40
    big = float(np.abs(x).max()) ** 2
    replay_check(x, sel.indices, init=0, rtol=0.0, atol=2.0 ** -20 * big)


# ---------------------------------------------------- 8: conversions, edge cases


def test_bfloat16_into_refinement_and_typicality():
    x = torch.from_numpy(_base(60)).to(torch.bfloat16)
    ref = x.float()
    for sampler in (densecore.KMedoidsRefinement(swaps=2),
                    densecore.KMedoidsRefinement(backend="torch", swaps=2),
                    densecore.TypicalityGreedy(), densecore.TypicalityGreedy(backend="torch")):
        got = sampler.select(x, 6, labeled=[1])
        want = sampler.select(ref, 6, labeled=[1])
        assert got.indices.tolist() == want.indices.tolist(), sampler


def test_requires_grad_tensor_into_refinement():
    x = torch.from_numpy(_base(60)).requires_grad_()
    for backend in table_engines():
        got = densecore.KMedoidsRefinement(backend=backend, swaps=2).select(x, 5, labeled=[0])
        want = densecore.KMedoidsRefinement(backend=backend, swaps=2).select(
            x.detach(), 5, labeled=[0])
        assert got.indices.tolist() == want.indices.tolist()
        assert not got.radii.requires_grad


def test_coverage_density_rejects_negative_errors_and_takes_empty_input():
    with pytest.raises(ValueError, match=r"error must be non-negative.*-0.5 at index \(1,\)"):
        densecore.coverage_density(np.array([0.0, -0.5, 1.0]))
    out = densecore.coverage_density(np.zeros((0,)))
    assert out.shape == (0,)
    out = densecore.coverage_density(torch.zeros(2, 0, 3), dims=(1, 2))
    assert tuple(out.shape) == (2, 0, 3)


def test_density_aware_coreset_on_one_sample():
    pytest.importorskip("skactiveml")
    from densecore.integrations.skactiveml import DensityAwareCoreSet

    got = DensityAwareCoreSet(random_state=0).query(np.zeros((1, 2)), np.array([np.nan]))
    assert got.tolist() == [0]


def test_labels_ignore_index_beyond_16_bits_is_a_named_error():
    s = ActiveLabelState(tempfile.mkdtemp(), ["a"], (2, 2))
    s.add("a", np.eye(2, dtype=bool), round=0, labels=np.full((2, 2), 7))
    with pytest.raises(ValueError, match="ignore_index must lie in"):
        s.labels("a", ignore_index=70000)
    assert s.labels("a", ignore_index=65535).max() == 65535


def test_big_endian_arrays():
    x = _base(50)
    dens = np.random.default_rng(6).uniform(0.5, 2.0, 50)
    lab = np.array([3, 7])
    be = x.astype(">f8")
    want = densecore.farthest_first(x, 6, densities=dens, labeled=lab)
    got = densecore.farthest_first(be, 6, densities=dens.astype(">f8"), labeled=lab.astype(">i8"))
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(densecore.coverage(be, be[:4])[1],
                                  densecore.coverage(x, x[:4])[1])
    np.testing.assert_array_equal(densecore.KNNDensity(k=3)(be), densecore.KNNDensity(k=3)(x))
    np.testing.assert_array_equal(densecore.coverage_density(dens.astype(">f8")),
                                  densecore.coverage_density(dens))
