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
