"""farthest_first_batch against its naive twin: farthest_first pool by pool."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import densecore
from densecore import batch as B
from densecore.synthetic import gaussian_mixture
from reference import density_aware_greedy_ref, table_engines


def farthest_first_batch_naive(features, lengths, budgets, *, densities=None, labeled=None,
                               labeled_features=None, labeled_densities=None, seeds=0,
                               **kw):
    """The obvious loop: one farthest_first per pool."""
    p = len(lengths)
    budgets = [budgets] * p if isinstance(budgets, int) else list(budgets)
    seeds = [seeds] * p if isinstance(seeds, int) else list(seeds)
    out, lo = [], 0
    for i, n in enumerate(lengths):
        hi = lo + n
        lab = None if labeled is None else np.flatnonzero(np.asarray(labeled[lo:hi]))
        out.append(densecore.farthest_first(
            features[lo:hi], budgets[i],
            densities=None if densities is None else densities[lo:hi], labeled=lab,
            labeled_features=None if labeled_features is None else labeled_features[i],
            labeled_densities=None if labeled_densities is None else labeled_densities[i],
            seed=seeds[i], **kw))
        lo = hi
    return out


def _ragged(sizes=(300, 170, 230), dim=6, seed=0):
    x, _ = gaussian_mixture(sum(sizes), dim=dim, n_components=5, duplicates=0.1, seed=seed)
    rng = np.random.default_rng(seed)
    dens = rng.uniform(0.5, 3.0, size=len(x))
    lab = np.zeros(len(x), bool)
    lab[[3, 7, sizes[0] + 1, sizes[0] + 10]] = True  # in pools 0 and 1; pool 2 has none
    lf = [None, rng.normal(size=(4, dim)).astype(np.float32), rng.normal(size=(2, dim))
          .astype(np.float32)]
    ld = [None, rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, 2)]
    return x, list(sizes), dens, lab, lf, ld


def _same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g_i, w_i = [np.asarray(torch.as_tensor(s.indices).cpu()) for s in (g, w)]
        np.testing.assert_array_equal(g_i, w_i)
        np.testing.assert_array_equal(np.asarray(torch.as_tensor(g.radii).cpu()),
                                      np.asarray(torch.as_tensor(w.radii).cpu()))


@pytest.mark.parametrize("backend", table_engines())
@pytest.mark.parametrize("density_aware", [False, True])
def test_equals_pool_by_pool(backend, density_aware):
    x, sizes, dens, lab, lf, ld = _ragged()
    d = dens if density_aware else None
    kw = dict(densities=d, labeled=lab, labeled_features=lf,
              labeled_densities=ld if density_aware else None, seeds=[4, 5, 6], backend=backend)
    got = B.farthest_first_batch(x, sizes, [40, 0, 60], **kw)
    _same(got, farthest_first_batch_naive(x, sizes, [40, 0, 60], **kw))
    assert [len(s) for s in got] == [40, 0, 60]
    ref, _ = density_aware_greedy_ref(x[:300], 40, densities=None if d is None else d[:300],
                                      labeled=[3, 7])
    np.testing.assert_array_equal(got[0].indices, ref)


def test_tensor_inputs_cosine_and_seed_per_pool():
    x, sizes, dens, lab, lf, ld = _ragged(sizes=(120, 90, 50, 1, 0), seed=2)
    xt, dt, lt = torch.from_numpy(x), torch.from_numpy(dens), torch.from_numpy(lab)
    lft = [None, torch.from_numpy(lf[1]), None, None, None]  # pools 2-4: nothing labeled
    ldt = [None, torch.from_numpy(ld[1]), None, None, None]
    kw = dict(densities=dt, labeled=lt, labeled_features=lft, labeled_densities=ldt,
              seeds=[0, 1, 2, 3, 4], metric="cosine")
    budgets = [10, 20, 15, 1, 0]
    got = B.farthest_first_batch(xt, sizes, budgets, **kw)
    _same(got, farthest_first_batch_naive(xt, sizes, budgets, **kw))
    assert isinstance(got[0].indices, torch.Tensor) and got[3].indices.tolist() == [0]
    # the seed of pool 2 (nothing labeled) draws its first pick; the others keep theirs
    other = B.farthest_first_batch(xt, sizes, budgets, **{**kw, "seeds": [0, 1, 7, 3, 4]})
    _same(other[:2], got[:2])
    assert other[2].indices[0] != got[2].indices[0]
    _same(other[2:3], farthest_first_batch_naive(xt[210:260], [50], [15], densities=dt[210:260],
                                                 seeds=7, metric="cosine"))


def test_threads_one_numba_thread_per_pool(monkeypatch):
    x, sizes, dens, lab, lf, ld = _ragged(seed=1)
    calls = []
    real = densecore.greedy.run_engine

    def spy(engine, inputs, budget, first, progress, n_blocks=100, num_threads=None):
        import numba

        calls.append((num_threads, numba.get_num_threads()))
        return real(engine, inputs, budget, first, progress, num_threads=num_threads)

    monkeypatch.setattr(B, "_workers", lambda jobs: 2)
    monkeypatch.setattr(densecore.greedy, "run_engine", spy)
    got = B.farthest_first_batch(x, sizes, 30, densities=dens, labeled=lab,
                                 labeled_features=lf, labeled_densities=ld)
    assert [c[1] for c in calls] == [1, 1, 1]  # three pools, each on one numba thread
    monkeypatch.setattr(densecore.greedy, "run_engine", real)
    _same(got, farthest_first_batch_naive(x, sizes, 30, densities=dens, labeled=lab,
                                          labeled_features=lf, labeled_densities=ld))


def test_workers_only_numba_pools():
    x = torch.zeros(10, 2)
    numba_jobs = [densecore.greedy.setup(x[:5], 1, seed=0), densecore.greedy.setup(x[5:], 1)]
    torch_jobs = [densecore.greedy.setup(x[:5], 1, backend="torch")] * 2
    assert B._workers(numba_jobs) == min(2, densecore._backends.thread_limit())
    assert B._workers(torch_jobs) == 1
    assert B._workers(numba_jobs[:1]) == 1
    with densecore._backends.threads(1):
        assert B._workers(numba_jobs) == 1


@pytest.mark.parametrize("bad, match", [
    (dict(lengths=[3, 4]), "lengths must add up"),
    (dict(lengths=[7, -1]), "lengths must be >= 0"),
    (dict(lengths=[[3, 3]]), "lengths must be a 1-D"),
    (dict(budgets=[1, 1, 1]), "budgets must have one entry per pool"),
    (dict(budgets=[1, 9]), r"budgets\[1\] must be at most the \d+ unlabeled rows of pool 1"),
    (dict(seeds="a"), "seeds must be an integer"),
    (dict(labeled=np.zeros(5, bool)), r"labeled must be a \(6,\) bool"),
    (dict(labeled_features=[None]), "labeled_features must be a list"),
])
def test_bad_input_names_the_argument(bad, match):
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    kw = dict(lengths=[2, 4], budgets=[1, 2]) | bad
    with pytest.raises((ValueError, TypeError), match=match):
        B.farthest_first_batch(x, kw.pop("lengths"), kw.pop("budgets"), **kw)


def test_sparse_features_are_refused():
    sp = torch.eye(4).to_sparse()
    with pytest.raises(TypeError, match="features must be dense"):
        B.farthest_first_batch(sp, [4], 1)
