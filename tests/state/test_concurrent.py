"""Selections running in several Python threads at once (the numba kernels release the
GIL) give the selections of one thread at a time."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import densecore
from densecore._backends import threads


def _pool(seed, n=3000, dim=16):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dim)) * 3.0
    x = centres[rng.integers(0, 8, n)] + rng.normal(size=(n, dim))
    x[100:130] = x[:30]  # duplicates
    return x.astype(np.float32), rng.uniform(0.5, 3.0, n)


@pytest.mark.parametrize("density_aware", [False, True])
def test_threads_running_selections_at_once_match_one_at_a_time(density_aware):
    import torch

    n_torch = torch.get_num_threads()
    pools = [_pool(s) for s in range(4)]

    def select(i):
        x, d = pools[i]
        sampler = (densecore.DensityAwareGreedy(seed=i) if density_aware
                   else densecore.KCenterGreedy(seed=i))
        with threads(1):
            return sampler.select(x, 400, densities=d if density_aware else None).indices

    want = [select(i) for i in range(4)]
    got: dict = {}
    errors = []

    def work(i):
        try:
            got[i] = select(i)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    assert torch.get_num_threads() == n_torch
    for i in range(4):
        np.testing.assert_array_equal(got[i], want[i])
