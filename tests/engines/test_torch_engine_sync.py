"""The torch engine's pick loop never asks the host (no ``aten::item``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile, record_function

import densecore.engines
from densecore import greedy
from reference import density_aware_greedy_ref

_SYNC_OPS = ("aten::item", "aten::_local_scalar_dense")


def _loop_events(prof, name="pick loop"):
    """Names of the operator events that ran inside the ``name`` range."""
    evs = list(prof.events())
    spans = [(e.time_range.start, e.time_range.end) for e in evs if e.name == name]
    assert spans, "the profiled range is missing"
    return [e.name for e in evs for s, t in spans
            if e.name != name and s <= e.time_range.start and e.time_range.end <= t]


@pytest.mark.parametrize("labeled", [False, True])
def test_pick_loop_has_no_host_sync(labeled):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    dens = rng.uniform(0.5, 2.0, size=300)
    lab = [3, 40] if labeled else None
    pool = greedy.check(torch.from_numpy(x), torch.from_numpy(dens), lab, backend="torch")
    inputs = greedy.prepare(pool, 1.0, 1.0)
    budget, first = 25, (-1 if labeled else 11)
    eng = densecore.engines.engine("torch")(**inputs, max_new=budget)
    idx = torch.empty(budget, dtype=torch.int64)
    r = torch.empty(budget, dtype=torch.float64)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with record_function("pick loop"):
            if first >= 0:  # the forced first pick (the base class's), then the loop
                eng.first(first, idx, r)
            eng.run(budget - (first >= 0), idx, r)
    names = _loop_events(prof)
    assert len(names) > budget  # the loop's operators were recorded
    assert not [n for n in names if n in _SYNC_OPS]
    ref, _ = density_aware_greedy_ref(x, budget, densities=dens, labeled=lab or (),
                                      init=None if labeled else first)
    np.testing.assert_array_equal(idx.numpy(), ref)


# Python-side reads back to the host: none may run inside the sparse engine's loop
_HOST_READS = ("item", "tolist", "numpy", "__int__", "__float__", "__bool__", "__index__")


@pytest.mark.parametrize("labeled", [False, True])
def test_sparse_pick_loop_has_no_host_sync(labeled, monkeypatch):
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 40)) * (rng.random((300, 40)) < 0.2)
    x[7] = x[5]  # a duplicate
    dens = rng.uniform(0.5, 2.0, size=300)
    lab = [3, 40] if labeled else None
    pool = greedy.check(sp.csr_matrix(x), dens, lab, backend="torch")
    inputs = greedy.prepare(pool, 1.0, 1.0)
    # past the pool: the last picks find nothing left and record -1
    budget, first = 300 - (2 if labeled else 0) + 3, (-1 if labeled else 11)
    eng = densecore.engines.engine("torch", "sparse")(**inputs, max_new=budget)
    idx = torch.empty(budget, dtype=torch.int64)
    r = torch.empty(budget, dtype=torch.float64)
    if first >= 0:  # the forced first pick goes through add_centre (host reads allowed)
        eng.first(first, idx, r)

    def refuse(name):
        def read(*a, **k):
            raise AssertionError(f"Tensor.{name} (a read back to the host) in the pick loop")
        return read

    with monkeypatch.context() as m:
        for name in _HOST_READS:
            m.setattr(torch.Tensor, name, refuse(name))
        m.setattr(torch, "nonzero", refuse("nonzero"))
        m.setattr(torch.Tensor, "nonzero", refuse("nonzero"))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            with record_function("pick loop"):
                eng.run(budget - (first >= 0), idx, r)
    names = _loop_events(prof)
    assert len(names) > budget  # the loop's operators were recorded
    # item/_local_scalar_dense: a scalar read; nonzero/masked_select: a boolean index,
    # whose output size the host must read
    assert not [n for n in names if n in (*_SYNC_OPS, "aten::nonzero", "aten::masked_select")]
    ref, radii = density_aware_greedy_ref(x, budget - 3, densities=dens, labeled=lab or (),
                                          init=None if labeled else first)
    np.testing.assert_array_equal(idx[:-3].numpy(), ref)
    np.testing.assert_allclose(r[1 if first >= 0 else 0:-3].numpy(),
                               radii[1 if first >= 0 else 0:], rtol=1e-12)
    assert idx[-3:].tolist() == [-1] * 3 and r[-3:].tolist() == [-1.0] * 3
