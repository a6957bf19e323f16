"""Hostile numbers: every backend answers like the float64 reference or raises a named error.

Scales where squared float32 distances overflow (1e19) or underflow (1e-25),
offsets much larger than the spread (where the ||a||^2 - 2ab + ||b||^2
expansion cancels), duplicate-heavy sets, densities spanning 86 orders of
magnitude, and labeled sets on both sides of the faiss threshold.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
from hypothesis import given, settings
from hypothesis import strategies as st

import densecore
from densecore import distributed
from densecore._backends import nearest
from densecore.state import ActiveLabelState
from densecore.synthetic import gaussian_mixture
from reference import replay_check, table_engines
from strategies import DENSITIES, OFFSETS, SCALES, _densities, hostile  # noqa: F401


@pytest.fixture(scope="module")
def one_rank_group(tmp_path_factory):
    """A one-rank gloo group: the sharded path (engine ``best``/``row``/``add_centre``
    and the collectives) in this process. Two real ranks: tests/engines/test_distributed.py."""
    path = tmp_path_factory.mktemp("store") / "store"
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@settings(max_examples=30, deadline=None)
@given(hostile(), st.sampled_from([*table_engines(), *(f"sharded-{e}" for e in table_engines())]))
def test_every_backend_matches_the_float64_reference(one_rank_group, case, backend):
    x, dens, labeled, lf, ld, budget = case
    kw = dict(densities=dens, labeled=labeled, labeled_features=lf, labeled_densities=ld,
              seed=3)
    if backend.startswith("sharded-"):
        sel = distributed.select(x, budget, backend=backend[8:], **kw)
    else:
        sel = densecore.farthest_first(x, budget, backend=backend, **kw)
    idx = sel.indices
    assert len(idx) == budget and len(set(idx.tolist())) == budget
    init = None
    if len(labeled) == 0 and lf is None:
        init = int(idx[0])
    replay_check(x, idx, densities=dens, labeled=labeled, labeled_features=lf,
                 labeled_densities=ld, init=init, rtol=1e-4, atol=0.0)
    r = sel.radii.astype(np.float64)
    finite = r[1:] if init is not None else r
    # radii come back in original units (float32 saturates to inf beyond 3.4e38)
    assert np.all(finite[:-1] >= finite[1:])


@st.composite
def search_cases(draw):
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.default_rng(seed)
    dim = draw(st.integers(1, 5))
    n_c = draw(st.sampled_from([1, 4, 40, nearest.FAISS_MIN + 1]))
    scale = draw(st.sampled_from(SCALES))
    offset = draw(st.sampled_from(OFFSETS))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    c = rng.normal(size=(n_c, dim))
    c[rng.random(n_c) < 0.3] = c[0]  # duplicate centres: ties to the lowest index
    q = np.concatenate([c[: min(n_c, 5)], rng.normal(size=(30, dim))])
    c = ((c + offset) * scale).astype(dtype)
    q = ((q + offset) * scale).astype(dtype)
    w = _densities(draw(st.sampled_from(["none", "uniform", "tiny"])), n_c, rng)
    k = draw(st.integers(1, min(3, n_c)))
    return q, c, w, k


def _search_ref(q, c, w, k):
    q, c = q.astype(np.float64), c.astype(np.float64)
    v = ((q[:, None, :] - c[None]) ** 2).sum(-1) / (1.0 if w is None else w[None])
    o = np.argsort(v, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(v, o, 1), o


@settings(max_examples=40, deadline=None)
@given(search_cases(), st.sampled_from(list(nearest.METHODS)))
def test_nearest_search_is_exact_for_every_method(case, method):
    if method == "faiss":
        pytest.importorskip("faiss")
    q, c, w, k = case
    v, i = nearest.search(torch.from_numpy(q), torch.from_numpy(c), k,
                          weights=None if w is None else torch.from_numpy(w), method=method)
    rv, ri = _search_ref(q, c, w, k)
    np.testing.assert_array_equal(i.numpy(), ri)
    np.testing.assert_allclose(v.numpy(), rv, rtol=1e-12)


# ---------------------------------------------------------------------------
# the cases of the report, one by one


@pytest.mark.parametrize("backend", table_engines())
def test_tiny_knn_densities_keep_the_budget(backend):
    x, _ = gaussian_mixture(400, dim=4, seed=0)
    dens = densecore.KNNDensity(k=10, tau=0.005)(x)
    assert dens.min() < 1e-80
    sel = densecore.DensityAwareGreedy(backend=backend).select(x, 100, densities=dens)
    assert len(set(sel.indices.tolist())) == 100
    assert np.isfinite(sel.radii[1:]).all()
    replay_check(x, sel.indices, densities=dens, init=int(sel.indices[0]), atol=0.0)


@pytest.mark.parametrize("backend", table_engines())
@pytest.mark.parametrize("scale", [1e19, 1e-25])
def test_extreme_feature_scales(backend, scale):
    rng = np.random.default_rng(1)
    base = rng.normal(size=(300, 8))
    x = (base * scale).astype(np.float32)
    sel = densecore.farthest_first(x, 50, init=0, backend=backend)
    assert len(set(sel.indices.tolist())) == 50
    replay_check(x, sel.indices, init=0, atol=0.0)
    # the same points at scale 1 give the same selection
    same = densecore.farthest_first(base.astype(np.float32), 50, init=0, backend=backend)
    assert sel.indices.tolist() == same.indices.tolist()


@pytest.mark.parametrize("backend", table_engines())
def test_large_offset_with_many_labeled_points(backend):
    rng = np.random.default_rng(2)
    x = (1000.0 + 0.01 * rng.normal(size=(2000, 16))).astype(np.float32)
    labeled = rng.choice(2000, 400, replace=False)  # above the faiss threshold
    sel = densecore.farthest_first(x, 60, labeled=labeled, backend=backend)
    assert replay_check(x, sel.indices, labeled=labeled, atol=0.0) > 0


def test_coverage_distance_of_a_centre_to_itself_is_zero_with_an_offset():
    rng = np.random.default_rng(3)
    x = (1000.0 + 0.01 * rng.normal(size=(500, 16))).astype(np.float32)
    sel = np.arange(0, 500, 7)
    for backend in ("auto", "torch"):
        assign, dist = densecore.coverage(x, x[sel], search_backend=backend)
        assert np.all(dist[sel] == 0.0) and np.array_equal(assign[sel], np.arange(len(sel)))
        ref = np.sqrt(((x[:, None].astype(np.float64) - x[sel][None]) ** 2).sum(-1)).min(1)
        np.testing.assert_allclose(dist, ref, rtol=1e-12)


def test_requires_grad_tensors_on_the_torch_backend():
    x = torch.randn(50, 3, requires_grad=True)
    d = (torch.rand(50) + 0.5).requires_grad_()
    sel = densecore.farthest_first(x, 5, densities=d, backend="torch", init=0)
    want = densecore.farthest_first(x.detach().numpy(), 5, densities=d.detach().numpy(),
                                    init=0)
    assert sel.indices.tolist() == want.indices.tolist()
    assert not sel.radii.requires_grad


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_half_precision_on_the_cpu(dtype, backend):
    x = torch.randn(200, 4).to(dtype)
    sel = densecore.farthest_first(x, 20, init=1, backend=backend)
    assert sel.radii.dtype == torch.float32
    replay_check(x.float().numpy(), sel.indices.numpy(), init=1, atol=0.0)


def test_meta_tensors_are_rejected():
    with pytest.raises(TypeError, match="features must hold data"):
        densecore.farthest_first(torch.empty(10, 3, device="meta"), 2)


@pytest.mark.parametrize("labeled", [[True, False, True], [0.0, 2.0], [1, 2.5]])
def test_bool_or_float_lists_are_not_indices(labeled):
    x = np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32)
    with pytest.raises(TypeError, match="labeled must hold integer indices"):
        densecore.farthest_first(x, 1, labeled=labeled)
    with pytest.raises(TypeError, match="labeled must be an integer index array"):
        densecore.farthest_first(x, 1, labeled=np.asarray(labeled))


def test_seed_none_is_rejected():
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(TypeError, match="seed must be an integer"):
        densecore.farthest_first(x, 1, seed=None)
    with pytest.raises(TypeError, match="seed must be an integer"):
        densecore.KCenterGreedy(seed=None)


def test_features_without_columns_are_rejected():
    with pytest.raises(ValueError, match="at least one feature column"):
        densecore.farthest_first(np.zeros((5, 0), np.float32), 1)


def test_densities_beyond_the_float64_range_raise():
    x = np.random.default_rng(0).normal(size=(10, 2))
    d = np.ones(10)
    d[3] = 1e-280
    d[4] = 1e10
    with pytest.raises(ValueError, match="densities must span at most"):
        densecore.farthest_first(x, 3, densities=d)


def test_nan_in_errors_raises():
    with pytest.raises(ValueError, match="error must be finite"):
        densecore.coverage_density(np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="features must be finite"):
        densecore.KNNDensity(k=1)(np.array([[0.0], [np.nan], [1.0]]))


@pytest.mark.parametrize("method", ["auto", "faiss", "torch"])
def test_nearest_search_float32_offset_many_centres(method):
    # a case hypothesis found: 257 float32 centres within 3e-3 of 100 (float32 spacing
    # there: 7.6e-6), 30 % duplicates. The centring must subtract the mean in float64:
    # the mean rounded to float32 moves every query by a rounding of |mean|, far more
    # than the certificate's bound allows for, and query 28 then got centre 91, not 61
    if method == "faiss":
        pytest.importorskip("faiss")
    case = np.load(os.path.join(os.path.dirname(__file__), os.pardir, "data",
                                "nearest_offset_case.npz"))
    q, c = case["q"], case["c"]
    v, i = nearest.search(torch.from_numpy(q), torch.from_numpy(c), 1, method=method)
    rv, ri = _search_ref(q, c, None, 1)
    np.testing.assert_array_equal(i.numpy(), ri)
    np.testing.assert_allclose(v.numpy(), rv, rtol=1e-12)


# ---------------------------------------------------------------------------
# every sampler, the sparse layout, coverage / bound_report and lid on hostile
# numbers: float32 and float64 (down to 1e-200 and up to 1e200, beyond the range
# where squared float64 distances exist), against the float64 reference run on the
# same points times the power of two that brings them to [1, 2) (exact)

SCALES64 = [1e-200, 1e-25, 1.0, 1e19, 1e200]


# regimes, each a pytest parameter so that every run meets the extremes
REGIMES = {"float32": (np.float32, SCALES), "float64": (np.float64, SCALES64),
           "1e-200": (np.float64, [1e-200]), "1e200": (np.float64, [1e200])}


@st.composite
def hostile_any(draw, regime):
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.default_rng(seed)
    dtype, scales = REGIMES[regime]
    n = draw(st.integers(10, 70))
    dim = draw(st.integers(1, 5))
    scale = draw(st.sampled_from(scales))
    offset = draw(st.sampled_from(OFFSETS))
    dup = draw(st.sampled_from([0.0, 0.5]))
    centres = rng.normal(size=(4, dim)) * 5
    x = centres[rng.integers(0, 4, n)] + rng.normal(size=(n, dim))
    n_dup = int(dup * n)
    if n_dup:
        x[rng.choice(n, n_dup, replace=False)] = x[rng.integers(0, n, n_dup)]
    x = ((x + offset) * scale).astype(dtype)
    kind = draw(st.sampled_from(DENSITIES))
    dens = _densities(kind, n, rng)
    lf = ld = None
    if draw(st.booleans()):
        lf = (((centres[rng.integers(0, 4, 3)] + rng.normal(size=(3, dim))) + offset)
              * scale).astype(dtype)
        ld = _densities(kind, 3, rng)
    labeled = rng.choice(n, draw(st.integers(0, n // 3)), replace=False)
    budget = draw(st.integers(1, min(12, n - len(labeled))))
    return x, dens, labeled, lf, ld, budget


def _unit(x, lf=None):
    """``x`` (and ``lf``) in float64 times the power of two ``2^-e`` that brings the
    largest magnitude into [1, 2), and ``e``."""
    parts = [np.asarray(x, np.float64)] + ([] if lf is None else [np.asarray(lf, np.float64)])
    big = max(float(np.abs(p).max()) for p in parts)
    e = int(np.frexp(big)[1] - 1) if big > 0 else 0
    out = [np.ldexp(p, -e) for p in parts]
    return out[0], (None if lf is None else out[1]), e


def _greedy_check(x, idx, dens, labeled, lf, ld):
    xu, lfu, _ = _unit(x, lf)
    assert len(set(np.asarray(idx).tolist())) == len(idx)
    init = int(idx[0]) if len(labeled) == 0 and lf is None else None
    replay_check(xu, idx, densities=dens, labeled=labeled, labeled_features=lfu,
                 labeled_densities=ld, init=init, rtol=1e-4, atol=0.0)


@pytest.mark.parametrize("regime", list(REGIMES))
@settings(max_examples=8, deadline=None)
@given(data=st.data(), which=st.sampled_from(["kcenter-numba", "kcenter-torch", "density-numba",
                                       "density-torch", "sparse"]))
def test_every_greedy_sampler_and_the_sparse_layout_match_the_reference(regime, data, which):
    case = data.draw(hostile_any(regime))
    import scipy.sparse as sp

    x, dens, labeled, lf, ld, budget = case
    if which.startswith("kcenter"):
        dens = ld = None
        sel = densecore.KCenterGreedy(backend=which[8:], seed=5).select(
            x, budget, labeled=labeled, labeled_features=lf)
    elif which.startswith("density"):
        if dens is None:
            dens = np.ones(len(x))
            ld = None if lf is None else np.ones(len(lf))
        sel = densecore.DensityAwareGreedy(backend=which[8:], seed=5).select(
            x, budget, densities=dens, labeled=labeled, labeled_features=lf,
            labeled_densities=ld)
    else:
        sel = densecore.farthest_first(sp.csr_matrix(x), budget, densities=dens,
                                       labeled=labeled,
                                       labeled_features=None if lf is None else sp.csr_matrix(lf),
                                       labeled_densities=ld, seed=5)
    _greedy_check(x, np.asarray(sel.indices), dens, labeled, lf, ld)


def _ard_ref(xu, picks, labeled, lfu):
    """Eq. 4 per pick in float64: fixed centres (labeled, then outside) first, ties to
    the lowest centre."""
    fixed = [xu[labeled]] + ([] if lfu is None else [lfu])
    c = np.concatenate(fixed + [xu[picks]])
    d = np.sqrt(((xu[:, None, :] - c[None]) ** 2).sum(-1))
    a = np.argmin(d, 1)
    nf = len(c) - len(picks)
    return np.array([d[a == nf + j, nf + j].mean() if np.any(a == nf + j) else 0.0
                     for j in range(len(picks))])


@pytest.mark.parametrize("regime", list(REGIMES))
@settings(max_examples=6, deadline=None)
@given(data=st.data(), backend=st.sampled_from(table_engines()))
def test_kmedoids_refinement_matches_the_reference(regime, data, backend):
    case = data.draw(hostile_any(regime))
    x, _, labeled, lf, _, budget = case
    sel = densecore.KMedoidsRefinement(backend=backend, swaps=3, seed=2).select(
        x, budget, labeled=labeled, labeled_features=lf)
    idx = np.asarray(sel.indices)
    assert len(set(idx.tolist())) == budget and not np.isin(idx, labeled).any()
    xu, lfu, e = _unit(x, lf)
    np.testing.assert_allclose(np.ldexp(np.asarray(sel.ard, np.float64), -e),
                               _ard_ref(xu, idx, labeled, lfu), rtol=1e-9, atol=0.0)


def _typicality_replay(xu, idx, w, labeled, lfu, init, rtol=1e-4):
    r = np.full(len(xu), np.inf)
    taken = np.zeros(len(xu), bool)
    taken[labeled] = True
    for c in list(xu[labeled]) + ([] if lfu is None else list(lfu)):
        r = np.minimum(r, ((xu - c) ** 2).sum(1))
    for i, u in enumerate(idx):
        assert not taken[u]
        if i == 0 and init is not None:
            assert u == init
        else:
            score = np.where(taken, -np.inf, r * w)
            best = score.max()
            assert score[u] >= best - rtol * abs(best), (i, u, score[u], best)
        taken[u] = True
        r = np.minimum(r, ((xu - xu[u]) ** 2).sum(1))


@pytest.mark.parametrize("regime", list(REGIMES))
@settings(max_examples=6, deadline=None)
@given(data=st.data(), backend=st.sampled_from(table_engines()))
def test_typicality_matches_the_reference(regime, data, backend):
    case = data.draw(hostile_any(regime))
    x, dens, labeled, lf, _, budget = case
    w = np.ones(len(x)) if dens is None else dens
    sel = densecore.TypicalityGreedy(backend=backend, seed=4).select(
        x, budget, densities=w, labeled=labeled, labeled_features=lf)
    idx = np.asarray(sel.indices)
    assert len(set(idx.tolist())) == budget
    xu, lfu, _ = _unit(x, lf)
    init = int(idx[0]) if len(labeled) == 0 and lf is None else None
    _typicality_replay(xu, idx, w, labeled, lfu, init)


@pytest.mark.parametrize("regime", list(REGIMES))
@settings(max_examples=6, deadline=None)
@given(data=st.data(), method=st.sampled_from(["auto", "torch"]))
def test_coverage_bound_report_lid_and_knn_density_match_the_reference(regime, data, method):
    case = data.draw(hostile_any(regime))
    x, _, _, _, _, budget = case
    sel = np.arange(0, len(x), max(1, len(x) // budget))
    assign, dist = densecore.coverage(x, x[sel], search_backend=method)
    xu, _, e = _unit(x)
    d = np.sqrt(((xu[:, None, :] - xu[sel][None]) ** 2).sum(-1))
    np.testing.assert_array_equal(assign, np.argmin(d, 1))
    np.testing.assert_allclose(np.ldexp(dist, -e), d.min(1), rtol=1e-12, atol=0.0)
    rep = densecore.bound_report(x, sel, search_backend=method)
    assert np.ldexp(rep.delta, -e) == pytest.approx(d.min(1).max(), rel=1e-12)
    from densecore.density.lid import local_intrinsic_dimension

    k = min(5, len(x) - 1)
    np.testing.assert_allclose(local_intrinsic_dimension(x, k, search_backend=method),
                               local_intrinsic_dimension(xu, k, search_backend=method),
                               rtol=1e-9)
    from densecore.density import coverage_density, knn_mean_distance

    def knn(a):  # KNNDensity(k, search="exact") with the search's candidates named
        return coverage_density(knn_mean_distance(a, k, search="exact",
                                                  search_backend=method))

    np.testing.assert_allclose(knn(x), knn(xu), rtol=1e-9)


# ---------------------------------------------------------------------------
# the newer surfaces: the batched greedy, RIPU's scores and selection, query_round,
# the Lightning callback's constructor, and the label state's round numbers and
# manifests. Each draws hostile values; the answer is the reference's, or a
# ValueError/TypeError naming the argument (CorruptFileError for files).


@settings(max_examples=12, deadline=None)
@given(hostile(), st.integers(1, 3), st.sampled_from(["numba", "torch"]))
def test_farthest_first_batch_equals_each_pool_alone(case, pools, backend):
    x, dens, _, _, _, _ = case
    n = len(x)
    cuts = np.linspace(0, n, pools + 1).astype(int)
    sizes = np.diff(cuts).tolist()
    rng = np.random.default_rng(n)
    lab = rng.random(n) < 0.2
    budgets = [int(rng.integers(0, max(1, s - lab[a:b].sum()) + 1)) if s - lab[a:b].sum()
               else 0 for s, a, b in zip(sizes, cuts[:-1], cuts[1:])]
    seeds = rng.integers(0, 2 ** 31, pools).tolist()
    sels = densecore.farthest_first_batch(x, sizes, budgets, densities=dens, labeled=lab,
                                          seeds=seeds, backend=backend)
    for p, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
        alone = densecore.farthest_first(x[a:b], budgets[p],
                                         densities=None if dens is None else dens[a:b],
                                         labeled=np.flatnonzero(lab[a:b]), seed=seeds[p],
                                         backend=backend)
        np.testing.assert_array_equal(sels[p].indices, alone.indices)


BAD_ARGS = [None, -1, 1.5, float("nan"), "3", True, [], [-1], [1.5], [True], 2 ** 70]


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["lengths", "budgets", "seeds"]), st.sampled_from(BAD_ARGS))
def test_farthest_first_batch_names_hostile_arguments(name, bad):
    x = np.random.default_rng(0).normal(size=(6, 2)).astype(np.float32)
    kw = {"lengths": [3, 3], "budgets": [1, 1], "seeds": [0, 0]}
    kw[name] = bad
    try:
        densecore.farthest_first_batch(x, kw["lengths"], kw["budgets"], seeds=kw["seeds"])
    except (TypeError, ValueError) as e:
        assert name in str(e), (name, bad, e)


@st.composite
def probability_maps(draw):
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.default_rng(seed)
    b, c = draw(st.integers(1, 2)), draw(st.integers(1, 4))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    kind = draw(st.sampled_from(["logits", "huge", "tie", "onehot", "nan", "inf",
                                 "negative"]))
    x = rng.normal(size=(b, c, h, w))
    if kind == "huge":
        x = x * 1e30
    elif kind == "tie":
        x = np.zeros_like(x)
    elif kind == "onehot":
        x = np.where(x == x.max(1, keepdims=True), 50.0, -50.0)
    elif kind in ("nan", "inf"):
        x.reshape(-1)[rng.integers(x.size)] = np.nan if kind == "nan" else -np.inf
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    k = draw(st.sampled_from([0, 1, 2, 7, 10 ** 6]))
    return torch.from_numpy(x.astype(dtype)), kind, k


def _impurity_ref(p, k):
    """Region impurity by its definition: the entropy of the argmax classes in the
    in-image window, per pixel, in float64."""
    cls = p.argmax(1).numpy()
    b, c, h, w = p.shape
    out = np.zeros((b, h, w))
    for i in range(b):
        for y in range(h):
            for x in range(w):
                win = cls[i, max(0, y - k):y + k + 1, max(0, x - k):x + k + 1].ravel()
                share = np.bincount(win, minlength=c) / win.size
                share = share[share > 0]
                out[i, y, x] = -(share * np.log(share)).sum()
    return out


@settings(max_examples=30, deadline=None)
@given(probability_maps(), st.sampled_from(["region", "pixel"]))
def test_ripu_scores_and_selection_on_hostile_maps(case, mode):
    from densecore import filters
    from densecore.regions import ripu_select

    x, kind, k = case
    if kind in ("nan", "inf"):
        with pytest.raises(ValueError, match="probs must be finite logits"):
            filters.ripu_score(x, k, mode=mode, from_logits=True)
        return
    if kind == "negative":
        p = torch.softmax(x.double(), 1)
        if p.shape[1] > 1:
            p[0, 1, 0, 0] += p[0, 0, 0, 0] + 2e-4  # the sum stays 1 ...
            p[0, 0, 0, 0] = -2e-4  # ... with a value a rounding below 0
            with pytest.raises(ValueError, match="probs must be probabilities"):
                filters.ripu_score(p, k, mode=mode)
        return
    s = filters.ripu_score(x, k, mode=mode, from_logits=True)
    p = torch.softmax(x.double(), 1)
    imp = filters.region_impurity(x, k, from_logits=True)
    assert torch.isfinite(s).all() and (s >= 0).all()
    kk = min(k, max(x.shape[-2:]) - 1)
    np.testing.assert_allclose(imp.double().numpy(), _impurity_ref(p, kk), atol=1e-5)
    budget = 1
    mask = ripu_select(s, budget, mode=mode, k=min(k, 3))
    assert mask.shape == s.shape and (mask.sum((1, 2)) >= 1).all()


@st.composite
def round_numbers(draw):
    return draw(st.one_of(st.integers(-3, 3), st.integers(10 ** 9 - 2, 10 ** 9 + 2),
                          st.sampled_from([2 ** 63, 2 ** 64, 1.0, float("nan"), True, None,
                                           "1", np.int64(5), np.uint8(7)])))


@settings(max_examples=30, deadline=None)
@given(rounds=st.lists(round_numbers(), min_size=1, max_size=4))
def test_label_state_round_numbers_never_brick_the_state(tmp_path_factory, rounds):
    root = tmp_path_factory.mktemp("state")
    s = ActiveLabelState(root, ["a", "b"], (3, 4))
    done = []
    for i, r in enumerate(rounds):
        m = np.zeros((3, 4), bool)
        m[i % 3, i % 4] = True
        try:
            s.add("a", m, round=r)
            done.append(int(r))
        except (TypeError, ValueError) as e:
            assert "round" in str(e), (r, e)
    again = ActiveLabelState(root)  # every later open reads every image
    assert again.rounds("a") == sorted(set(done)) and again.rounds("b") == []
    for img in ("a", "b"):
        again.labeled(img)
        again.labeled(img, rounds=range(10 ** 9))
    again.summary()


_HOSTILE_VALUES = [None, True, False, -1, 0, 10 ** 12, 2 ** 64, 1.5, float("nan"), "x",
                   [], {}, [1], [True, 2], [10 ** 9, 10 ** 9], [2, 2.0], {"a": 1}]


@st.composite
def manifest_edits(draw):
    """A path into the manifest (top level, image entry, round record) and a value."""
    where = draw(st.sampled_from([
        ("images",), ("format",), ("version",), ("images", "a"), ("images", "a", "shape"),
        ("images", "a", "key"), ("images", "a", "rounds"),
        ("images", "a", "rounds", "0"), ("images", "a", "rounds", "0", "pixels"),
        ("images", "a", "rounds", "0", "new"), ("images", "a", "rounds", "0", "crc32"),
        ("images", "a", "rounds", "0", "labels")]))
    return where, draw(st.sampled_from(_HOSTILE_VALUES))


@settings(max_examples=40, deadline=None)
@given(manifest_edits())
def test_label_state_hostile_manifests_raise_corrupt_file_error(tmp_path_factory, edit):
    import json

    from densecore.state import CorruptFileError

    root = tmp_path_factory.mktemp("state")
    s = ActiveLabelState(root, ["a", "b"], (3, 4))
    s.add("a", np.eye(3, 4, dtype=bool), round=0)
    where, value = edit
    path = root / "manifest.json"
    m = json.loads(path.read_text())
    node = m
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    path.write_text(json.dumps(m))
    try:
        r = ActiveLabelState(root)
        for img in r.image_ids:
            r.labeled(img)
            r.rounds(img)
        r.summary()
    except CorruptFileError as e:
        assert e.path.endswith("manifest.json") or ".npz" in e.path


_CALLBACK_VALUES = {
    "rounds_at": [[], [5, 5], [3, 1], [None], [1.5], ["2"], [-1], [True], "12", 7, None],
    "budget": [None, -1, 1.5, float("nan"), float("inf"), "4", True, 2 ** 70],
    "sampler": [42, "bogus", "", 1.0],
    "seed": [-1, 1.5, None, "0", True],
    "alpha": [0, 0.5, float("nan"), float("inf"), -1, "20", None, True],
    "score": ["bogus", None, 3, ""],
    "region_size": [0, 2, 4, -1, 1.5, None, "3", True],
    "region_overlap": ["some", None, 1],
    "from_logits": ["no", "False", 1, 0, None, 1.0],
}


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(sorted(_CALLBACK_VALUES)), st.data())
def test_lightning_callback_names_every_hostile_option(tmp_path_factory, name, data):
    pytest.importorskip("lightning")
    from densecore.integrations.lightning import SelectionRounds

    bad = data.draw(st.sampled_from(_CALLBACK_VALUES[name]))
    state = ActiveLabelState(tmp_path_factory.mktemp("state"), ["a"], (4, 4))
    kw = {"rounds_at": [10, 20], "budget": 2, name: bad}
    with pytest.raises((TypeError, ValueError), match=name):
        SelectionRounds(state, **kw)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2 ** 31 - 1), st.sampled_from([0, 3, 10 ** 9 - 1]),
       st.sampled_from([1e-30, 1.0, 1e30]), st.booleans())
def test_query_round_on_hostile_rounds_and_scales(tmp_path_factory, seed, rnd, scale,
                                                  logits):
    from densecore import image_seed, query_round, select_pixels

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64) * (50 if logits else 1)
    probs = x if logits else torch.softmax(x, 1)
    feats = torch.randn(2, 4, 4, 4, generator=g, dtype=torch.float64) * scale
    dens = torch.rand(2, 4, 4, generator=g, dtype=torch.float64) + 0.5
    ids = ["\u00e9", "a/b"]
    state = ActiveLabelState(tmp_path_factory.mktemp("state"), ids, (8, 8))
    assert query_round(state, rnd, ids, probs, feats, dens, 3, alpha=2, seed=seed,
                       sampler=densecore.DensityAwareGreedy, from_logits=logits) == ids
    for b, i in enumerate(ids):
        s = image_seed(seed, rnd, i)
        alone = select_pixels(probs[b:b + 1], feats[b:b + 1], dens[b:b + 1], 3, alpha=2,
                              seed=s, sampler=densecore.DensityAwareGreedy(seed=s),
                              from_logits=logits)
        assert np.array_equal(state.labeled(i, rounds=[rnd]), alone[0].numpy()), i
    with pytest.raises(ValueError, match="round"):
        query_round(state, 10 ** 9, ids, probs, feats, dens, 3, alpha=2, from_logits=logits)
    assert ActiveLabelState(state.root).rounds(ids[0]) == [rnd]
