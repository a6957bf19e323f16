"""Hostile inputs on the newer surfaces, one test per root cause: the label state's
round numbers and manifests, logits and probabilities of the scores, RIPU's window,
the Lightning callback's constructor, the batched greedy's arguments and the
scikit-activeml utilities at extreme scales. Each test fails on the code before
its fix; every bad input must give a ValueError/TypeError naming the argument
(CorruptFileError for files)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import densecore
from densecore import filters
from densecore.state import ActiveLabelState, CorruptFileError
from densecore import validation as V

# ---------------------------------------------------------------- logits (from_logits=True)


SCORES = [filters.entropy_score, filters.margin_score, filters.least_confidence_score,
          filters.region_impurity, filters.prediction_uncertainty, filters.ripu_score]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("fn", SCORES, ids=lambda f: f.__name__)
def test_non_finite_logits_are_rejected(fn, bad):
    x = torch.randn(1, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    x[0, 1, 2, 3] = bad
    with pytest.raises(ValueError, match="probs must be finite logits"):
        fn(x, from_logits=True)
    fn(x, from_logits=True, validate=False)  # the caller's choice: no scan


@pytest.mark.parametrize("fn", SCORES, ids=lambda f: f.__name__)
def test_finite_logits_give_the_softmax_scores(fn):
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(fn(x, from_logits=True), fn(torch.softmax(x, 1)))


# ---------------------------------------------------------------- probabilities below 0


@pytest.mark.parametrize("fn", SCORES, ids=lambda f: f.__name__)
def test_negative_probabilities_are_rejected(fn):
    p = torch.full((3, 4, 4), 1 / 3, dtype=torch.float64)
    p[0, 1, 1] = -1e-4  # within the old 1e-3 tolerance; the entropy of it is NaN
    p[1, 1, 1] = 2 / 3 + 1e-4  # the sum over classes is 1
    with pytest.raises(ValueError, match=r"probs must be probabilities in \[0, 1\].*min -0.0001"):
        fn(p)


def test_negative_zero_and_rounding_above_one_pass():
    p = torch.zeros(2, 3, 3)
    p[0] = 1.0 + 5e-4  # a rounding above 1 stays accepted (sum within atol)
    p[1] = -0.0
    assert torch.isfinite(filters.entropy_score(p)).all()


# ---------------------------------------------------------------- booleans


@pytest.mark.parametrize("bad", ["no", "False", 1, 0, None, np.float64(1.0)])
def test_from_logits_must_be_a_real_bool(bad):
    p = torch.softmax(torch.randn(1, 3, 4, 4), 1)
    with pytest.raises(TypeError, match="from_logits must be True or False"):
        filters.entropy_score(p, from_logits=bad)
    with pytest.raises(TypeError, match="from_logits must be True or False"):
        densecore.select_pixels(p, None, None, 2, sampler=None, from_logits=bad)
    with pytest.raises(TypeError, match="validate must be True or False"):
        filters.margin_score(p, validate=bad)


def test_check_bool_takes_python_and_numpy_bools():
    assert V.check_bool(True, "x") is True and V.check_bool(np.bool_(False), "x") is False
    with pytest.raises(TypeError, match="flag must be True or False; got str 'yes'"):
        V.check_bool("yes", "flag")


# ---------------------------------------------------------------- RIPU's window


@pytest.mark.parametrize("fn", [filters.region_impurity, filters.prediction_uncertainty,
                                filters.ripu_score], ids=lambda f: f.__name__)
def test_ripu_window_is_clamped_to_the_image(fn):
    p = torch.softmax(torch.randn(2, 5, 8, 6, dtype=torch.float64,
                                  generator=torch.Generator().manual_seed(2)), 1)
    whole = fn(p, k=7)  # 15 x 15 from any pixel covers the 8 x 6 image
    torch.testing.assert_close(fn(p, k=400), whole)
    # unclamped, k = 10^7 pads every plane to 2e7 x 2e7 (an allocation of petabytes)
    torch.testing.assert_close(fn(p, k=10 ** 7), whole)
    assert not torch.equal(fn(p, k=1), whole)


def test_ripu_select_with_a_huge_window():
    p = torch.softmax(torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)), 1)
    s = filters.ripu_score(p, k=10 ** 6)
    assert s.shape == (1, 8, 8) and torch.isfinite(s).all()


# ---------------------------------------------------------------- the label state


def _state(tmp_path, ids=("a", "b"), shape=(4, 5)):
    return ActiveLabelState(tmp_path / "s", list(ids), shape)


def _mask(shape=(4, 5), *pix):
    m = np.zeros(shape, bool)
    for y, x in pix:
        m[y, x] = True
    return m


def test_round_numbers_past_the_manifest_limit_are_refused_by_add(tmp_path):
    s = _state(tmp_path)
    top = 10 ** 9 - 1  # the manifest's 9-digit round keys
    s.add("a", _mask((4, 5), (0, 0)), round=top)
    for bad in (10 ** 9, 10 ** 12, 2 ** 63):
        with pytest.raises(ValueError, match=r"round must be at most 999999999"):
            s.add("b", _mask((4, 5), (1, 1)), round=bad)
    # nothing refused left a trace, and every later open reads every image
    r = ActiveLabelState(tmp_path / "s")
    assert r.rounds("a") == [top] and r.rounds("b") == []
    assert int(r.labeled("a").sum()) == 1 and r.summary()["labeled"] == 1
    assert r.labeled("a", rounds=range(top)).sum() == 0
    assert r.labeled("a", rounds=range(top + 1)).sum() == 1


def test_labeled_matches_a_range_without_expanding_it(tmp_path, monkeypatch):
    from densecore.state import store

    s = _state(tmp_path)
    s.add("a", _mask((4, 5), (0, 0)), round=0)
    s.add("a", _mask((4, 5), (1, 2)), round=7)
    real, calls = store.check_int, [0]

    def counted(*a, **kw):  # each round number of an expanded range is checked once
        calls[0] += 1
        assert calls[0] < 1000, "labeled() expanded the range round by round"
        return real(*a, **kw)

    monkeypatch.setattr(store, "check_int", counted)
    got = s.labeled("a", rounds=range(10 ** 9))  # a set of 10^9 rounds: minutes, GiBs
    assert got.sum() == 2
    assert s.labeled("a", rounds=range(1, 10 ** 9)).sum() == 1
    assert s.labeled("a", rounds=range(7, -1, -7)).sum() == 2
    assert s.labeled("a", rounds=range(1, 7)).sum() == 0
    with pytest.raises(ValueError, match="rounds must hold round numbers >= 0"):
        s.labeled("a", rounds=range(-1, 3))


def _rewrite(tmp_path, edit):
    path = tmp_path / "s" / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))
    return path


@pytest.mark.parametrize("edit, why", [
    (lambda m: m.update(images={}), "non-empty object"),
    (lambda m: m["images"]["a"].update(shape=[10 ** 9, 10 ** 9]), "malformed entry"),
    (lambda m: m["images"]["a"].update(shape=[2 ** 40, 1]), "malformed entry"),
    (lambda m: m["images"]["a"].update(shape=[True, 5]), "malformed entry"),
    (lambda m: m["images"]["a"].update(shape=[4, 5.0]), "malformed entry"),
    (lambda m: m["images"]["a"].update(shape=[4]), "malformed entry"),
    (lambda m: m["images"]["a"]["rounds"].update(
        {"0": {"pixels": True, "new": True, "crc32": "00000000"}}), "malformed round 0"),
    (lambda m: m["images"]["a"]["rounds"].update(
        {"1000000000": {"pixels": 0, "new": 0, "crc32": "00000000"}}), "round key"),
])
def test_corrupt_manifests_raise_corrupt_file_error(tmp_path, edit, why):
    _state(tmp_path)
    path = _rewrite(tmp_path, edit)
    with pytest.raises(CorruptFileError, match=why) as e:
        r = ActiveLabelState(tmp_path / "s")
        r.summary()
        r.labeled("a")
    assert e.value.path == str(path)


def test_new_states_refuse_shapes_beyond_the_manifest_limit(tmp_path):
    with pytest.raises(ValueError, match=r"shape must have at most 4294967296 pixels"):
        ActiveLabelState(tmp_path / "s", ["a"], (2 ** 20, 2 ** 20))
    with pytest.raises(ValueError, match=r"shape\['b'\] must have at most"):
        ActiveLabelState(tmp_path / "t", ["a", "b"], {"a": (2, 2), "b": (2 ** 17, 2 ** 17)})
    assert not os.path.exists(tmp_path / "s" / "manifest.json")
    big = ActiveLabelState(tmp_path / "u", ["a"], (2 ** 16, 2 ** 16))  # the limit itself
    assert ActiveLabelState(tmp_path / "u").shape("a") == (2 ** 16, 2 ** 16) == big.shape("a")


# ---------------------------------------------------------------- SelectionRounds' options

BAD_OPTIONS = [
    (dict(alpha=0), ValueError, "alpha must be >= 1.0"),
    (dict(alpha=float("nan")), ValueError, "alpha must be finite"),
    (dict(alpha="20"), TypeError, "alpha must be a real number"),
    (dict(score="bogus"), ValueError, "score must be one of"),
    (dict(score=None), ValueError, "score must be one of"),
    (dict(region_size=4), ValueError, "region_size must be odd"),
    (dict(region_size=0), ValueError, "region_size must be"),
    (dict(region_overlap="some"), ValueError, "region_overlap must be one of"),
    (dict(sampler=42), TypeError, "sampler must be a sampler"),
    (dict(sampler="bogus"), ValueError, "sampler must be one of"),
    (dict(sampler=1.5), TypeError, "sampler must be a sampler"),
    (dict(seed=-1), ValueError, "seed must be"),
    (dict(seed=1.5), TypeError, "seed must be an integer"),
    (dict(from_logits="no"), TypeError, "from_logits must be True or False"),
    (dict(from_logits=1), TypeError, "from_logits must be True or False"),
    (dict(budget=float("nan")), TypeError, "budget must be an integer"),
    (dict(budget=float("inf")), TypeError, "budget must be an integer"),
    (dict(budget=None), TypeError, "budget must be an integer"),
    (dict(budget="4"), TypeError, "budget must be an integer"),
    (dict(budget=-1), ValueError, "budget must be"),
    (dict(budget=21), ValueError, "budget must be at most the 20 pixels of the smallest"),
    (dict(rounds_at=[10, None]), TypeError, r"rounds_at\[1\] must be an integer"),
    (dict(rounds_at=[float("nan")]), TypeError, r"rounds_at\[0\] must be an integer"),
    (dict(rounds_at=["10"]), TypeError, r"rounds_at\[0\] must be an integer"),
    (dict(rounds_at=[10.5]), TypeError, r"rounds_at\[0\] must be an integer"),
    (dict(rounds_at=[-3]), ValueError, r"rounds_at\[0\] must be"),
    (dict(rounds_at=[20, 10]), ValueError, "rounds_at must be strictly increasing"),
]


@pytest.mark.parametrize("bad, exc, why", BAD_OPTIONS)
def test_selection_rounds_checks_every_option_at_construction(tmp_path, bad, exc, why):
    pytest.importorskip("lightning")
    from densecore.integrations.lightning import SelectionRounds

    state = _state(tmp_path)
    kw = dict(rounds_at=[10, 20], budget=4)
    kw.update(bad)
    with pytest.raises(exc, match=why):
        SelectionRounds(state, **kw)


def test_selection_rounds_keeps_valid_options(tmp_path):
    pytest.importorskip("lightning")
    from densecore.integrations.lightning import SelectionRounds

    cb = SelectionRounds(_state(tmp_path), rounds_at=[np.int64(3), 7], budget=np.int32(2),
                         sampler=None, score="ripu", region_size=3, alpha=1,
                         from_logits=np.bool_(True))
    assert cb.rounds_at == [3, 7] and cb.budget == 2 and type(cb.budget) is int
    assert cb.options["from_logits"] is True and cb.options["alpha"] == 1.0
    named = SelectionRounds(_state(tmp_path / "n"), rounds_at=[1], budget=1,
                            sampler="density-aware")  # the former spelling, read as the name
    assert named.options["sampler"] == "density_aware"


# ---------------------------------------------------------------- the batched greedy's arguments


def test_farthest_first_batch_takes_no_pools():
    assert densecore.farthest_first_batch(np.zeros((0, 2), np.float32), [], []) == []
    with pytest.raises(ValueError, match="lengths must add up to the 3 feature rows; got 0"):
        densecore.farthest_first_batch(np.zeros((3, 2), np.float32), [], [])


@pytest.mark.parametrize("features, why", [
    (np.array(3.0), r"features must have shape \(N_total, D\); got shape \(\)"),
    (torch.tensor(3.0), r"features must have shape \(N_total, D\); got shape \(\)"),
    (np.ones(3, np.float32), r"features must have shape \(N_total, D\); got shape \(3,\)"),
])
def test_farthest_first_batch_names_features_of_the_wrong_rank(features, why):
    with pytest.raises(ValueError, match=why):
        densecore.farthest_first_batch(features, [1], [1])


def test_zero_d_and_generator_inputs_are_named():
    with pytest.raises(ValueError, match=r"features must have shape \(N, D\); got shape \(\)"):
        densecore.farthest_first(np.array(3.0), 1)
    with pytest.raises(TypeError, match="features must be a numpy array or a torch tensor; "
                                        "got generator"):
        densecore.farthest_first_batch((r for r in [[1.0]]), [1], [1])
    with pytest.raises(TypeError, match="lengths must be a 1-D integer sequence.*generator"):
        densecore.farthest_first_batch(np.ones((3, 2)), (n for n in [3]), [1])


def test_negative_seeds_name_the_seed():
    x = np.random.default_rng(0).normal(size=(6, 2))
    with pytest.raises(ValueError, match="seed must be >= 0; got -1"):
        densecore.farthest_first(x, 2, seed=-1)
    with pytest.raises(ValueError, match="seeds must be >= 0; got -1"):
        densecore.farthest_first_batch(x, [3, 3], [1, 1], seeds=-1)
    with pytest.raises(ValueError, match=r"seeds\[1\] must be >= 0; got -5"):
        densecore.farthest_first_batch(x, [3, 3], [1, 1], seeds=[0, -5])
    for cls in (densecore.KCenterGreedy, densecore.DensityAwareGreedy,
                densecore.KMedoidsRefinement):
        with pytest.raises(ValueError, match="seed must be >= 0; got -2"):
            cls(seed=-2)


# ---------------------------------------------------------------- scikit-activeml utilities


@pytest.mark.parametrize("e", [-664, 664])  # 2^-664 ~ 1e-200, 2^664 ~ 1e200
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_coreset_utilities_at_hostile_scales(metric, e):
    pytest.importorskip("skactiveml")
    from densecore.integrations.skactiveml import CoreSet, DensityAwareCoreSet

    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 3))
    y = np.full(40, np.nan)
    y[[0, 7, 19]] = [0, 1, 0]
    q0, u0 = CoreSet(metric=metric).query(X, y, batch_size=4, return_utilities=True)
    q1, u1 = CoreSet(metric=metric).query(np.ldexp(X, e), y, batch_size=4,
                                          return_utilities=True)
    np.testing.assert_array_equal(q1, q0)
    assert np.array_equal(np.isnan(u1), np.isnan(u0))
    ok = ~np.isnan(u0)
    want = u0[ok] if metric == "cosine" else np.ldexp(u0[ok], e)  # distances: times 2^e
    np.testing.assert_allclose(u1[ok], want, rtol=1e-12)
    assert np.isfinite(u1[ok]).all() and (u1[ok] > 0).any()
    # density-aware: r = squared distance / density, finite here at 2^-664 (2^-1328 underflows
    # float64 only in its last bits) and at 2^664 beyond float64 (saturates to inf)
    dq0, du0 = DensityAwareCoreSet(metric=metric, k=5).query(X, y, batch_size=3,
                                                            return_utilities=True)
    dq1, du1 = DensityAwareCoreSet(metric=metric, k=5).query(np.ldexp(X, e), y, batch_size=3,
                                                            return_utilities=True)
    np.testing.assert_array_equal(dq1, dq0)
    if metric == "cosine":
        ok = ~np.isnan(du0)
        np.testing.assert_allclose(du1[ok], du0[ok], rtol=1e-9)


# ---------------------------------------------------------------- surviving mutants


def test_the_writer_lock_is_exclusive(tmp_path):
    """Deterministic: while a writer holds the lock, another open file description of
    the lock file can take neither a shared nor an exclusive flock (a shared writer
    lock would let a second writer in)."""
    fcntl = pytest.importorskip("fcntl")
    s = _state(tmp_path)
    lock = str(tmp_path / "s" / ".lock")

    def try_lock(kind):
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)  # releases what it took

    assert try_lock(fcntl.LOCK_EX)  # nobody holds it
    with s.batch():
        assert not try_lock(fcntl.LOCK_SH)
        assert not try_lock(fcntl.LOCK_EX)
        s.add("a", _mask((4, 5), (2, 2)), round=0)
        assert not try_lock(fcntl.LOCK_SH)
    assert try_lock(fcntl.LOCK_EX)  # released at the end of the block


def test_hnsw_missing_an_outliers_true_neighbour_is_recomputed_exactly(monkeypatch):
    """The largest mean distances set the min-max normalisation: when the HNSW graph
    misses the true nearest neighbour of an outlier (forced here by replacing it in
    the graph's answer with a far point), its exact recomputation restores the exact
    mean distance and with it every density."""
    pytest.importorskip("faiss")
    from densecore._backends import faiss_backend
    from densecore.density import knn

    rng = np.random.default_rng(6)
    x = rng.normal(size=(400, 2)).astype(np.float32)
    x[0] = [60.0, 0.0]  # the outlier
    x[1] = [52.0, 0.0]  # its true nearest neighbour
    far = int(np.argmin(x[2:, 0])) + 2  # a cluster point on the opposite side
    real = faiss_backend.hnsw_search

    def missing(index, queries, k, ef):
        idx = real(index, queries, k, ef)
        at = np.all(queries == x[0], axis=1)
        idx[at] = np.where(idx[at] == 1, far, idx[at])
        return idx

    monkeypatch.setattr(faiss_backend, "hnsw_search", missing)
    k = 3
    exact = knn.knn_mean_distance(x, k, search="exact")
    got = knn.knn_mean_distance(x, k, search="hnsw", recall=0.5)
    missed = (np.linalg.norm(x[0] - x[far]) + np.sort(np.linalg.norm(x[2:] - x[0], axis=1))
              [:2].sum()) / k
    assert missed > exact[0] * 1.01  # what the graph's answer alone would give
    assert got[0] == pytest.approx(exact[0], rel=1e-6)
    np.testing.assert_allclose(knn.KNNDensity(k=k, search="hnsw", recall=0.5)(x),
                               knn.KNNDensity(k=k, search="exact")(x), rtol=1e-5)


def _sparse_adversary_case():
    """Rows at an offset of 1000 with a near-tie between the labeled point (1000, -1) and
    the first pick (1000, 1): row t is at (1000, y_t, 1e-3 x 8), squared distances
    (1 + y)^2 and (1 - y)^2 (+ 8e-6), apart by 4y (under 1.3e-9) where the norm
    expansion's certified bound is about 2.8e-8."""
    small = np.ldexp(np.arange(1, 21, dtype=np.float64), -36)
    y = np.concatenate([small, [0.25, 0.5]])
    x = np.zeros((len(y) + 1, 10))
    x[:, 0] = 1000.0
    x[:-1, 1] = y
    x[:-1, 2:] = 1e-3
    x[-1, 1] = 1.0  # the first pick u
    lf = np.zeros((1, 10))
    lf[0, :2] = [1000.0, -1.0]
    return x, lf


def _inflate(sq, x, lf_row_u):
    """Each row's squared norm plus 0.9 of the documented rounding bound of the norm
    expansion against ``u``: ``4 (nnz_t + nnz_u + 4) eps (sq_t + |u|^2)``."""
    nnz = np.count_nonzero(x, axis=1)
    su = float((lf_row_u ** 2).sum())
    return sq + 0.9 * 4.0 * (nnz + np.count_nonzero(lf_row_u) + 4) * 2.0 ** -52 * (sq + su)


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_sparse_greedy_bound_survives_norms_off_by_most_of_it(monkeypatch, backend):
    """The numba sparse engine rules a row out when its norm-expansion estimate minus the
    rounding bound exceeds its radius. An adversary inflates every row's squared norm
    by 0.9 of that bound (within what the bound covers): the exact engine still
    lowers every near-tie row; a bound 10x smaller, or one without the row's own
    non-zero count, rules the near ties out and the second pick goes wrong. The torch
    engine rules nothing out (every row from differences): the same near ties, unpatched."""
    import scipy.sparse as sp

    from densecore._backends import sparse_backend as sb

    x, lf = _sparse_adversary_case()
    u = x[-1]
    if backend == "numba":
        real = sb._row_norms

        def norms(ip, dx):
            return _inflate(real(ip, dx), x, u)

        monkeypatch.setattr(sb, "_row_norms", norms)
    sel = densecore.farthest_first(sp.csr_matrix(x), 3, labeled_features=sp.csr_matrix(lf),
                                   backend=backend)
    # the float64 reference from differences
    r = ((x - lf[0]) ** 2).sum(1)
    picks, radii = [], []
    for _ in range(3):
        p = int(np.argmax(r))
        picks.append(p)
        radii.append(r[p])
        r = np.minimum(r, ((x - x[p]) ** 2).sum(1))
        r[picks] = -1
    assert picks[:2] == [len(x) - 1, 0] and radii[1] < 1.0 + 8e-6  # lowered by u
    np.testing.assert_array_equal(np.asarray(sel.indices), picks)
    np.testing.assert_allclose(np.asarray(sel.radii), radii, rtol=1e-13)


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_sparse_greedy_margin_keeps_rows_just_below_their_radius(monkeypatch, backend):
    """A row is ruled out only when its estimate exceeds its radius by the margin
    (1 + 1e-12), never when it is just below (a margin of the wrong sign): near-ties
    1e-13 relative at unit scale, every squared norm inflated by 0.999 of the bound, so
    that the estimate minus the bound sits on the true distance (numba; the torch engine
    has no estimate and gets the near ties unpatched)."""
    import scipy.sparse as sp

    from densecore._backends import sparse_backend as sb

    y = np.ldexp(np.arange(1, 11, dtype=np.float64), -46)  # 4y / 2: 5.7e-14 .. 5.7e-13
    x = np.zeros((len(y) + 1, 2))
    x[:-1, 0] = y
    x[:-1, 1] = 1.0
    x[-1, 0] = 1.0  # the first pick u; the labeled point is at (-1, 0)
    lf = np.array([[-1.0, 0.0]])
    u = x[-1]

    def inflate(sq):
        nnz = np.count_nonzero(x, axis=1)
        su = float(u @ u)
        return sq + 0.999 * 4.0 * (nnz + np.count_nonzero(u) + 4) * 2.0 ** -52 * (sq + su)

    if backend == "numba":
        real = sb._row_norms
        monkeypatch.setattr(sb, "_row_norms", lambda ip, dx: inflate(real(ip, dx)))
    sel = densecore.farthest_first(sp.csr_matrix(x), 2, labeled_features=sp.csr_matrix(lf),
                                   backend=backend)
    r = np.minimum(((x - lf[0]) ** 2).sum(1), ((x - u) ** 2).sum(1))
    r[-1] = -1
    assert np.asarray(sel.indices).tolist() == [len(x) - 1, 0] == [len(x) - 1, int(np.argmax(r))]
    np.testing.assert_allclose(np.asarray(sel.radii)[1], r[0], rtol=2e-15)


def test_query_round_refuses_a_round_the_state_cannot_record_before_selecting(tmp_path):
    s = _state(tmp_path)
    probs = torch.softmax(torch.randn(1, 3, 4, 5), 1)
    with pytest.raises(ValueError, match="round must be at most 999999999"):
        densecore.query_round(s, 10 ** 9, ["a"], probs, None, None, 2, sampler=None)
    assert densecore.query_round(s, 10 ** 9 - 1, ["a"], probs, None, None, 2,
                                 sampler=None) == ["a"]
    assert ActiveLabelState(tmp_path / "s").rounds("a") == [10 ** 9 - 1]
