"""KMedoidsRefinement / refine_medoids against a naive float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import densecore
from reference import table_engines
from densecore import KMedoidsRefinement
from densecore.refine import refine_medoids
from densecore.synthetic import gaussian_mixture


def refine_ref(x, selected, labeled=(), labeled_features=None, steps=2, eligible=None):
    """The refinement verbatim in float64: brute-force assignment and medoids."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    lab = list(labeled)
    fixed = [x[k] for k in lab] + ([] if labeled_features is None
                                   else list(np.asarray(labeled_features, np.float64)))
    nf = len(fixed)
    cur = list(selected)

    def assign(cur):
        c = np.array(fixed + [x[k] for k in cur])
        d = ((x[:, None, :] - c[None]) ** 2).sum(-1)
        return d.argmin(1), d.min(1)  # argmin: lowest centre on ties

    a, d = assign(cur)
    for _ in range(steps):
        new = list(cur)
        for j in range(len(cur)):
            mem = np.flatnonzero(a == nf + j)
            if not len(mem):
                continue
            best, arg = np.inf, None
            for m in mem:  # increasing index: strict < keeps the lowest on ties
                if m in lab or (m in cur and m != cur[j]):
                    continue
                if eligible is not None and m not in eligible and m != cur[j]:
                    continue
                cost = np.sqrt(((x[mem] - x[m]) ** 2).sum(1)).sum()
                if cost < best:
                    best, arg = cost, m
            if arg is not None:
                new[j] = arg
        if new == cur:
            break
        cur = new
        a, d = assign(cur)
    ard = [np.sqrt(d[a == nf + j]).mean() if (a == nf + j).any() else 0.0
           for j in range(len(cur))]
    return np.array(cur), np.array(ard)


def swap_ref(x, selected, labeled=(), steps=2, swaps=5, tries=3):
    """Medoid steps, then the ARD-driven moves, written out with full distance matrices."""
    x = np.asarray(x, dtype=np.float64)
    lab = list(labeled)
    nf = len(lab)
    full = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))

    def state(cur):
        cen = lab + list(cur)
        d = full[:, cen]
        order = np.argsort(d ** 2, axis=1, kind="stable")
        a1, a2 = order[:, 0], order[:, 1]
        d1, d2 = d[np.arange(len(x)), a1], d[np.arange(len(x)), a2]
        m = len(cen)
        tot = np.array([d1[a1 == k].sum() for k in range(m)])
        cnt = np.array([(a1 == k).sum() for k in range(m)])
        ard = np.where(cnt > 0, tot / np.maximum(cnt, 1), 0.0)
        return a1, a2, d1, d2, tot, cnt, ard

    def lloyd(cur, k):
        cur = list(cur)
        for _ in range(k):
            a1 = state(cur)[0]
            new = list(cur)
            for j in range(len(cur)):
                mem = np.flatnonzero(a1 == nf + j)
                cands = [m for m in mem if m not in lab and (m not in cur or m == cur[j])]
                if cands:
                    costs = [full[m, mem].sum() for m in cands]
                    new[j] = cands[int(np.argmin(costs))]
            if new == cur:
                break
            cur = new
        return cur

    cur = lloyd(list(selected), steps)
    for _ in range(swaps):
        a1, a2, d1, d2, tot, cnt, ard = state(cur)
        m = nf + len(cur)
        w = int(np.argmax(ard))
        mem = np.flatnonzero(a1 == w)
        cands = [q for q in mem if q not in lab and q not in cur]
        if len(mem) < 2 or not cands:
            break
        p = cands[int(np.argmin([np.minimum(full[q, mem], d1[mem]).sum() for q in cands]))]
        cost = []
        for j in range(len(cur)):
            if nf + j == w:
                cost.append(np.inf)
                continue
            grown = 0.0
            for k in range(m):
                moved = (a1 == nf + j) & (a2 == k)
                if moved.any():
                    grown = max(grown, (tot[k] + d2[moved].sum()) / (cnt[k] + moved.sum()))
            cost.append(grown)
        done = False
        for j in np.argsort(cost, kind="stable")[:tries]:
            trial = list(cur)
            trial[j] = p
            trial = lloyd(trial, 1)
            if state(trial)[6].max() < ard.max():
                cur, done = trial, True
                break
        if not done:
            break
    return np.array(cur), state(cur)[6][nf:]


@pytest.mark.parametrize("backend", table_engines())
def test_swaps_match_float64_reference(backend):
    x = _data(250, seed=6)
    lab = [2, 40]
    base = densecore.KCenterGreedy().select(x, 12, labeled=lab).indices
    idx, ard = refine_medoids(x, base, labeled=lab, steps=2, swaps=6, backend=backend)
    ridx, rard = swap_ref(x, base.tolist(), lab, steps=2, swaps=6)
    assert idx.tolist() == ridx.tolist()
    np.testing.assert_allclose(ard, rard, rtol=1e-10)
    plain, _ = refine_medoids(x, base, labeled=lab, steps=2)
    assert ard.max() < densecore.bound_report(x, np.r_[lab, plain]).ard.max()


def _data(n=400, dup=0.1, seed=0):
    x, _ = gaussian_mixture(n, dim=4, n_components=5, duplicates=dup, seed=seed)
    return x.astype(np.float64)


@pytest.mark.parametrize("backend", table_engines())
@pytest.mark.parametrize("steps", [0, 1, 3])
def test_matches_float64_reference(backend, steps):
    x = _data()
    lab = [0, 11, 123]
    lf = x[[7, 8]] + 0.05
    base = densecore.KCenterGreedy().select(x, 25, labeled=lab, labeled_features=lf).indices
    idx, ard = refine_medoids(x, base, labeled=lab, labeled_features=lf, steps=steps,
                              backend=backend)
    ridx, rard = refine_ref(x, base.tolist(), lab, lf, steps)
    assert idx.tolist() == ridx.tolist()
    np.testing.assert_allclose(ard, rard, rtol=1e-10)
    assert len(set(idx.tolist())) == 25 and not set(idx.tolist()) & set(lab)


@pytest.mark.parametrize("backend", table_engines())
def test_duplicates_and_ties(backend):
    # exact duplicates of centres and symmetric areas: ties go to the lowest index
    x = np.array([[0.0], [1.0], [2.0], [3.0], [10.0], [10.0], [11.0], [9.0]])
    idx, ard = refine_medoids(x, [0, 5], steps=3, backend=backend)
    ridx, rard = refine_ref(x, [0, 5], steps=3)
    assert idx.tolist() == ridx.tolist() == [1, 4]
    np.testing.assert_allclose(ard, rard)


def test_objective_never_increases_and_max_ard_falls():
    x = _data(1500, dup=0.0, seed=4)
    base = densecore.KCenterGreedy().select(x, 30).indices

    def total(sel):
        return densecore.bound_report(x, sel).ard @ densecore.bound_report(x, sel).counts

    prev = total(base)
    for steps in (1, 2, 3):
        idx, _ = refine_medoids(x, base, steps=steps)
        cur = total(idx)
        assert cur <= prev + 1e-9
        prev = cur
    assert densecore.bound_report(x, idx).max_ard < densecore.bound_report(x, base).max_ard


def test_float32_tensor_and_sampler_wrapping():
    x = _data(300, seed=2).astype(np.float32)
    d = np.random.default_rng(0).uniform(0.5, 3, 300)
    s = KMedoidsRefinement(densecore.DensityAwareGreedy(seed=1), steps=2, swaps=0)
    a = s.select(x, 12, densities=d)
    base = densecore.DensityAwareGreedy(seed=1).select(x, 12, densities=d).indices
    ridx, rard = refine_ref(x, base.tolist(), steps=2)
    assert a.indices.tolist() == ridx.tolist()
    np.testing.assert_allclose(a.ard, rard, rtol=1e-5)
    # radii: r of each refined pick at its turn (density-aware: over the centre's density)
    xd = x.astype(np.float64)
    want = [np.inf] + [min(((xd[u] - xd[v]) ** 2).sum() / d[v] for v in a.indices[:i])
                       for i, u in enumerate(a.indices) if i]
    np.testing.assert_allclose(a.radii, want, rtol=1e-12)
    t = KMedoidsRefinement(backend="torch", seed=3).select(torch.from_numpy(x), 12)
    n = KMedoidsRefinement(seed=3).select(x, 12)
    assert isinstance(t.indices, torch.Tensor) and t.indices.tolist() == n.indices.tolist()
    # the default (2 steps, 64 moves) is the reference's procedure
    kc = densecore.KCenterGreedy(seed=3).select(x, 12).indices
    assert n.indices.tolist() == swap_ref(x, kc.tolist(), steps=2, swaps=64)[0].tolist()
    # the default wraps KCenterGreedy and accepts (ignores) densities
    assert KMedoidsRefinement(seed=3).select(x, 12, densities=d).indices.tolist() == \
        n.indices.tolist()


def test_bad_inputs_name_the_argument():
    x = _data(50)
    with pytest.raises(ValueError, match="selected"):
        refine_medoids(x, [1, 1])
    with pytest.raises(ValueError, match="labeled"):
        refine_medoids(x, [1, 2], labeled=[2])
    with pytest.raises(ValueError, match="steps"):
        refine_medoids(x, [1, 2], steps=-1)
    with pytest.raises(TypeError, match="sampler"):
        KMedoidsRefinement(sampler=object())
    xb = x.copy()
    xb[3, 0] = np.nan
    with pytest.raises(ValueError, match="features"):
        refine_medoids(xb, [1, 2])


def test_top_level_export():
    assert densecore.KMedoidsRefinement is KMedoidsRefinement
    assert "KMedoidsRefinement" in densecore.__all__


@pytest.mark.parametrize("backend", table_engines())
def test_many_fixed_centres_with_duplicates_match_the_reference(backend):
    # more fixed centres than picks, picks that duplicate fixed centres' coordinates
    x = np.round(_data(220, dup=0.2, seed=8) * 2) / 2  # coarse grid: many exact ties
    lab = list(range(0, 220, 7))
    lf = x[[1, 2, 3]].copy()
    base = densecore.KCenterGreedy().select(x, 9, labeled=lab, labeled_features=lf).indices
    idx, ard = refine_medoids(x, base, labeled=lab, labeled_features=lf, steps=2,
                              backend=backend)
    ridx, rard = refine_ref(x, base.tolist(), lab, lf, 2)
    assert idx.tolist() == ridx.tolist()
    np.testing.assert_allclose(ard, rard, rtol=1e-10)
    # the moves, with the in-pool labeled centres only (the reference has no lf)
    base = densecore.KCenterGreedy().select(x, 9, labeled=lab).indices
    idx, ard = refine_medoids(x, base, labeled=lab, steps=2, swaps=5, backend=backend)
    ridx, rard = swap_ref(x, base.tolist(), lab, steps=2, swaps=5)
    assert idx.tolist() == ridx.tolist()
    np.testing.assert_allclose(ard, rard, rtol=1e-10)


@pytest.mark.parametrize("backend", table_engines())
def test_eligible_restricts_the_centres_but_not_the_areas(backend):
    x = _data(300, seed=9)
    cand = np.sort(np.random.default_rng(1).choice(300, 60, replace=False))
    base = cand[densecore.KCenterGreedy().select(x[cand], 8).indices]
    idx, ard = refine_medoids(x, base, eligible=cand, steps=3, backend=backend)
    ridx, rard = refine_ref(x, base.tolist(), steps=3, eligible=set(cand.tolist()))
    assert idx.tolist() == ridx.tolist()
    assert set(idx.tolist()) <= set(cand.tolist())
    np.testing.assert_allclose(ard, rard, rtol=1e-10)  # areas over all 300 points
    with pytest.raises(ValueError, match="eligible"):
        refine_medoids(x, base, eligible=[400])


def test_pick_radii_host_and_torch_passes_agree_with_the_reference():
    from densecore._backends.radii import prefix_min_numba, prefix_min_torch
    from densecore.greedy import pick_radii

    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 7))
    x[10:20] = x[0]  # duplicates: r = 0
    p = torch.from_numpy(x[:150])
    pd = torch.from_numpy(rng.uniform(0.5, 2.0, 150))
    r0 = torch.full((150,), float("inf"), dtype=torch.float64)
    want = [np.inf] + [min(((x[i] - x[j]) ** 2).sum() / float(pd[j]) for j in range(i))
                       for i in range(1, 150)]
    np.testing.assert_allclose(prefix_min_numba(p, pd, r0), want, rtol=1e-12)
    np.testing.assert_allclose(prefix_min_torch(p, pd, r0), want, rtol=1e-12)
    assert float(r0[5]) == np.inf  # inputs untouched
    # with labeled points: each pick's r also against them
    got = pick_radii(x, [3, 50, 7], labeled=[0])
    np.testing.assert_allclose(got, [((x[3] - x[0]) ** 2).sum(),
                                     min(((x[50] - x[v]) ** 2).sum() for v in (0, 3)),
                                     min(((x[7] - x[v]) ** 2).sum() for v in (0, 3, 50))],
                               rtol=1e-12)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_the_refinement_works_on_the_pool_the_driver_prepared(monkeypatch, metric):
    """One validation, one normalisation, one scale for the whole select: the
    refinement and its radii take the greedy's prepared pool."""
    import densecore.metrics
    import densecore.validation

    calls = {"check_pool": 0, "unit_rows": 0}
    for mod, name in ((densecore.validation, "check_pool"), (densecore.metrics, "unit_rows")):
        real = getattr(mod, name)

        def counted(*a, _real=real, _name=name, **kw):
            calls[_name] += 1
            return _real(*a, **kw)

        monkeypatch.setattr(mod, name, counted)
    x = np.random.default_rng(3).normal(size=(120, 4)) + 2.0
    d = np.random.default_rng(4).uniform(0.5, 2.0, 120)
    sampler = densecore.DensityAwareGreedy(metric=metric, seed=1)
    sel = densecore.KMedoidsRefinement(sampler, swaps=2).select(x, 6, densities=d,
                                                                labeled=[0, 3])
    assert calls["check_pool"] == 1
    assert calls["unit_rows"] == (2 if metric == "cosine" else 0)  # pool, labeled features
    # the same result as refining the sampler's picks from scratch
    base = sampler.select(x, 6, densities=d, labeled=[0, 3])
    idx, ard = refine_medoids(x, base.indices, labeled=[0, 3], swaps=2, metric=metric)
    assert sel.indices.tolist() == idx.tolist()
    np.testing.assert_allclose(sel.ard, ard, rtol=1e-12)


def test_pick_radii_scale_the_densities_like_the_greedy():
    """Subnormal densities (1 / density overflows) and tiny features: the radii come
    from the driver's scaled geometry and match the float64 reference."""
    from densecore.greedy import pick_radii

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3)) * 1e-10
    d = rng.uniform(0.5, 2.0, 50) * 1e-310
    idx = [5, 7, 9, 11]
    ds = np.ldexp(d, 1000)  # the reference divides by densities scaled into range
    centres, want = [0, 1], []
    for u in idx:
        want.append(min(((x[u] - x[k]) ** 2).sum() / ds[k] for k in centres))
        centres.append(u)
    got = pick_radii(x, idx, densities=d, labeled=[0, 1])
    np.testing.assert_allclose(got, np.ldexp(np.array(want), 1000), rtol=1e-12)
    sel = densecore.KMedoidsRefinement(densecore.DensityAwareGreedy(), swaps=0).select(
        x, 4, densities=d, labeled=[0, 1])
    np.testing.assert_allclose(sel.radii, pick_radii(x, sel.indices, densities=d,
                                                     labeled=[0, 1]), rtol=0)
    assert np.isfinite(sel.radii).all()
