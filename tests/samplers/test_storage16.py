"""The opt-in 16-bit storage of the greedy samplers (``storage="float16"/"bfloat16"``).

The mode is "the same algorithm on 16-bit values": the pool is scaled by the one
power-of-two rule (float16's limits when asked, so it cannot overflow) and rounded
once; the picks then equal the float64 reference (tests/reference.py) run on those
rounded values, with every labeled point (in-pool rows and ``labeled_features``) at
its own precision. ``_stored`` below rebuilds the rounded pool independently of the
library's code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import densecore
from densecore import engines as E
from densecore import greedy as G
from densecore.synthetic import gaussian_mixture
from reference import density_aware_greedy_ref

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
LIMIT = {"float16": 14, "bfloat16": 39}  # |x| kept in [2^-limit, 2^limit] unscaled


def _engines():
    """numba, torch as on the CPU (16-bit widened to float32), torch as on CUDA (16-bit
    kept: ``half_on_cpu``), and triton where it runs (CUDA, or the interpreter)."""
    out = ["numba", "torch", "torch-16bit"]
    try:
        E.engine("triton")
        import densecore._backends.triton_backend as TB

        if TB.interpreted() or torch.cuda.is_available():
            out.append("triton")
    except ImportError:
        pass
    return out


ENGINES = _engines()


def _backend(engine, monkeypatch):
    if engine == "torch-16bit":
        monkeypatch.setattr(E.engine("torch"), "half_on_cpu", True)
        return "torch"
    return engine


def _device(engine):
    return torch.device("cuda" if engine == "triton" and torch.cuda.is_available() else "cpu")


def _stored(x: np.ndarray, storage: str) -> np.ndarray:
    """The pool as the engine holds it, in original units (float64): scaled by a power of
    two only when max |x| lies outside 2^+-limit (then into [1, 2)), rounded to 16 bits
    to nearest, unscaled."""
    big = float(np.abs(x).max())
    e = 0 if 2.0 ** -LIMIT[storage] <= big <= 2.0 ** LIMIT[storage] else 1 - math.frexp(big)[1]
    t = torch.from_numpy(np.asarray(x, np.float64) * 2.0 ** e).to(DTYPES[storage])
    return t.double().numpy() * 2.0 ** -e


def _ref(x, budget, *, storage, dens=None, labeled=(), lf=None, ld=None, init=None):
    """The float64 reference on the stored candidates; labeled rows and ``lf`` at their
    own precision (the in-pool labeled rows become out-of-pool centres, which changes
    nothing else: they are never picked)."""
    labeled = np.asarray(labeled, dtype=np.int64)
    keep = np.setdiff1d(np.arange(len(x)), labeled)
    cen = [np.asarray(x, np.float64)[labeled]]
    cd = [] if dens is None else [dens[labeled]]
    if lf is not None:
        cen.append(np.asarray(lf, np.float64))
        if dens is not None:
            cd.append(ld)
    xs = x if storage is None else _stored(x, storage)
    idx, r = density_aware_greedy_ref(
        xs[keep], budget, densities=None if dens is None else dens[keep],
        labeled_features=np.concatenate(cen), labeled_densities=(
            None if dens is None else np.concatenate(cd)),
        init=None if init is None else int(np.searchsorted(keep, init)))
    return keep[idx], r


def _mixture(n=600, dim=6, seed=0):
    x, _ = gaussian_mixture(n, dim=dim, n_components=6, duplicates=0.15, seed=seed)
    return x, np.random.default_rng(seed).uniform(0.5, 3.0, size=n)


def _sampler(density_aware, **kw):
    return densecore.DensityAwareGreedy(**kw) if density_aware else densecore.KCenterGreedy(**kw)


def test_storage_none_is_todays_selection():
    x, dens = _mixture(seed=4)
    for density_aware in (False, True):
        d = dens if density_aware else None
        job = _sampler(density_aware, storage=None).job(x, 80, densities=d)
        assert job.inputs["x"].dtype == torch.float32  # the engine sees the features as given
        assert torch.equal(job.inputs["x"], torch.from_numpy(x))
        sel = _sampler(density_aware, storage=None).select(x, 80, densities=d)
        old = densecore.farthest_first(x, 80, densities=d)
        np.testing.assert_array_equal(sel.indices, old.indices)
        np.testing.assert_array_equal(sel.radii, old.radii)
        want, _ = density_aware_greedy_ref(x, 80, densities=d, init=int(old.indices[0]))
        np.testing.assert_array_equal(sel.indices, want)


@pytest.mark.parametrize("storage", list(DTYPES))
def test_the_rounding_changes_the_reference(storage):
    # the cases below could be false: on these mixtures the rounded pool's reference
    # parts from the original one (so the engines really run on rounded values)
    x, dens = _mixture(n=1500, seed=1)
    a, ra = _ref(x, 300, storage=None, dens=dens, init=3)
    b, rb = _ref(x, 300, storage=storage, dens=dens, init=3)
    assert not np.array_equal(a, b)
    assert not np.array_equal(ra[1:10], rb[1:10])


@pytest.mark.parametrize("storage", list(DTYPES))
@pytest.mark.parametrize("density_aware", [False, True])
@pytest.mark.parametrize("engine", ENGINES)
def test_picks_are_the_reference_on_the_rounded_pool(engine, density_aware, storage,
                                                     monkeypatch):
    n, budget = (300, 40) if engine == "triton" else (1200, 200)
    x, dens = _mixture(n=n, seed=2)
    rng = np.random.default_rng(2)
    labeled = rng.choice(n, size=12, replace=False)
    lf = rng.normal(scale=3.0, size=(7, x.shape[1])).astype(np.float32)
    ld = rng.uniform(0.5, 3.0, size=7)
    d = dens if density_aware else None
    dev = _device(engine)
    kw = dict(densities=None if d is None else torch.from_numpy(d).to(dev),
              labeled=torch.from_numpy(labeled).to(dev),
              labeled_features=torch.from_numpy(lf).to(dev),
              labeled_densities=None if d is None else torch.from_numpy(ld).to(dev))
    s = _sampler(density_aware, storage=storage, backend=_backend(engine, monkeypatch))
    sel = s.select(torch.from_numpy(x).to(dev), budget, **kw)
    want, r = _ref(x, budget, storage=storage, dens=d, labeled=labeled, lf=lf,
                   ld=None if d is None else ld)
    np.testing.assert_array_equal(sel.indices.cpu().numpy(), want)
    # the radii are those of the stored (rounded) candidates
    np.testing.assert_allclose(sel.radii.double().cpu().numpy(), r, rtol=1e-5)


@pytest.mark.parametrize("storage", list(DTYPES))
@pytest.mark.parametrize("engine", ENGINES)
def test_exact_ties_and_duplicates_go_to_the_lowest_index(engine, storage, monkeypatch):
    # small integers and power-of-two densities: exact in 16 bits, so every distance
    # is exact, ties are exact ties, and the picks are those of the original features
    rng = np.random.default_rng(7)
    x = rng.integers(0, 6, size=(300, 3)).astype(np.float32)
    dens = 2.0 ** rng.integers(-1, 3, size=300)
    dev = _device(engine)
    sel = densecore.DensityAwareGreedy(storage=storage, backend=_backend(engine, monkeypatch)
                                       ).select(torch.from_numpy(x).to(dev), 60,
                                                densities=torch.from_numpy(dens).to(dev),
                                                init=0)
    want, r = density_aware_greedy_ref(x, 60, densities=dens, init=0)
    np.testing.assert_array_equal(sel.indices.cpu().numpy(), want)
    np.testing.assert_array_equal(sel.radii[1:].double().cpu().numpy(), r[1:])


@pytest.mark.parametrize("storage, value", [("bfloat16", 1.001), ("float16", 1.0002)])
@pytest.mark.parametrize("engine", ENGINES)
def test_labeled_points_are_not_rounded(engine, storage, value, monkeypatch):
    # row 0 is 0.999 from the labeled point, row 1 is 1.001: the reference picks row 1;
    # rounded to the storage dtype the labeled point is 1.0 and row 0 would win the tie
    assert torch.tensor(value).to(DTYPES[storage]).item() == 1.0
    dev = _device(engine)
    backend = _backend(engine, monkeypatch)
    x = torch.tensor([[2.0], [0.0], [5.0]], device=dev)
    lf = torch.tensor([[value], [5.0]], device=dev)
    want, _ = density_aware_greedy_ref(x.double().cpu().numpy(), 1,
                                       labeled_features=lf.double().cpu().numpy())
    assert want.tolist() == [1]
    s = densecore.KCenterGreedy(storage=storage, backend=backend)
    assert s.select(x, 1, labeled_features=lf).indices.tolist() == [1]
    # an in-pool labeled row keeps its precision too (only candidates are stored)
    xin = torch.tensor([[2.0], [0.0], [5.0], [value], [5.0]], device=dev)
    assert s.select(xin, 1, labeled=[3, 4]).indices.tolist() == [1]


def _rel_err(t: np.ndarray, x: np.ndarray) -> float:
    """Largest relative error of ``t`` against ``x`` over the values of ``x`` at least
    2^-14 of the largest (those a float16 brought into range holds as normal numbers);
    inf where ``t`` is not finite."""
    if not np.isfinite(t).all():
        return math.inf
    big = np.abs(x) >= 2.0 ** -14 * np.abs(x).max()
    return float((np.abs(t - x)[big] / np.abs(x)[big]).max())


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("scale", [1e6, 1e-6, 2.0 ** 40, 2.0 ** -40])
def test_float16_at_large_and_small_magnitudes(engine, scale, monkeypatch):
    x0, _ = _mixture(n=300, seed=5)
    x = (x0.astype(np.float64) * scale).astype(np.float32)
    backend = _backend(engine, monkeypatch)
    job = densecore.KCenterGreedy(storage="float16", backend=backend).job(x, 40)
    stored = job.inputs["x"].double().cpu().numpy()
    # after the scaling rule: no inf, no value lost beyond float16's rounding (2^-11
    # relative in the normal range; 0 only below half its smallest subnormal)
    assert np.isfinite(stored).all()
    assert _rel_err(stored / job.fscale, x) <= 2.0 ** -11
    assert int((stored == 0).sum()) == int((np.abs(x) * job.fscale <= 2.0 ** -25).sum())
    # rounded as it is, float16 would overflow (large) or keep few bits (small)
    assert _rel_err(torch.from_numpy(x).half().double().numpy(), x) > 2.0 ** -8
    dev = _device(engine)
    sel = densecore.KCenterGreedy(storage="float16", backend=backend).select(
        torch.from_numpy(x).to(dev), 40)
    want, r = _ref(x, 40, storage="float16", init=int(sel.indices[0]))
    np.testing.assert_array_equal(sel.indices.cpu().numpy(), want)
    got = sel.radii[1:].double().cpu().numpy()
    assert np.isfinite(got).all() and (got > 0).all()
    np.testing.assert_allclose(got, r[1:], rtol=1e-5)


def test_float16_picks_do_not_depend_on_a_power_of_two_scale():
    # both pools are brought into [1, 2) before rounding: the same stored values
    x, _ = _mixture(n=800, seed=6)
    a = densecore.KCenterGreedy(storage="float16").select(x * np.float32(2.0 ** 20), 100)
    b = densecore.KCenterGreedy(storage="float16").select(x * np.float32(2.0 ** -20), 100)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.radii[1:].astype(np.float64),
                                  b.radii[1:].astype(np.float64) * 2.0 ** 80)


def test_typicality_runs_on_the_rounded_pool():
    x, dens = _mixture(n=800, seed=8)
    rounded = _stored(x, "bfloat16").astype(np.float32)  # max |x| in range: no scaling
    a = densecore.TypicalityGreedy(storage="bfloat16").select(x, 80, densities=dens)
    b = densecore.TypicalityGreedy().select(rounded, 80, densities=dens)
    np.testing.assert_array_equal(a.indices, b.indices)


def test_batch_and_select_pixels_reach_the_storage():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(3, 4, 32, 32, generator=g), 1)
    feats = torch.randn(3, 16, 16, 16, generator=g)
    labeled = torch.zeros(3, 32, 32, dtype=torch.bool)
    labeled[:, ::9, ::7] = True
    s = densecore.KCenterGreedy(storage="bfloat16")
    _, seen = densecore.select_pixels(probs, feats, None, 20, labeled=labeled, alpha=8,
                                      sampler=s, return_candidates=True)
    for c in seen:  # every image: the reference on its rounded candidates
        lf = c.labeled_features.double().numpy()
        want, _ = _ref(c.features.numpy(), 20, storage="bfloat16", lf=lf)
        assert c.selected.tolist() == want.tolist()
    x = torch.cat([c.features for c in seen])
    batch = s.select_batch(x, [c.features.shape[0] for c in seen], 20,
                           labeled_features=[c.labeled_features for c in seen])
    for c, b in zip(seen, batch):
        assert b.indices.tolist() == c.selected.tolist()


@pytest.mark.parametrize("bad", ["half", "float32", torch.float16, 16])
def test_a_bad_storage_names_storage(bad):
    x = np.zeros((4, 2), np.float32)
    for make in (densecore.KCenterGreedy, densecore.DensityAwareGreedy,
                 densecore.TypicalityGreedy):
        with pytest.raises(ValueError, match="storage"):
            make(storage=bad)
    with pytest.raises(ValueError, match="storage"):
        densecore.farthest_first(x, 1, storage=bad)
    with pytest.raises(ValueError, match="storage"):
        densecore.farthest_first_batch(x, [4], 1, storage=bad)


def test_sparse_features_take_no_storage():
    sp = pytest.importorskip("scipy.sparse")
    x = sp.random(20, 8, density=0.3, format="csr", random_state=0)
    with pytest.raises(ValueError, match="storage"):
        densecore.farthest_first(x, 3, storage="float16")
    assert G.check(x).storage is None
