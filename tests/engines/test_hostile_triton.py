"""The triton engine on hostile inputs: a hypothesis strategy (few, tiny examples under
the Triton interpreter on CPU machines; compiled kernels where CUDA is there) against
the float64 reference, and the ties and near-ties a loosened kernel gets wrong.

``TRITON_INTERPRET=1`` is set by tests/conftest.py where there is no CUDA device,
before triton is imported; the engine module is reloaded here if something imported
it without that setting.
"""

from __future__ import annotations

import importlib
import os
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

_cuda = torch.cuda.is_available()
_late = not _cuda and "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1"
if not _cuda:
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported
pytest.importorskip("triton", reason="triton does not import here (Linux x86_64 wheels only)")
_name = "densecore._backends.triton_backend"
TB = (importlib.import_module(_name) if _name not in sys.modules or _cuda
      else importlib.reload(sys.modules[_name]))

import densecore  # noqa: E402
from reference import density_aware_greedy_ref  # noqa: E402

pytestmark = pytest.mark.skipif(_late or not (_cuda or TB.interpreted()),
                                reason="no CUDA device, and triton was imported before "
                                       "TRITON_INTERPRET could be set (run this file alone)")
DEV = torch.device("cuda" if _cuda else "cpu")


def _t(a):
    return None if a is None else torch.from_numpy(np.asarray(a)).to(DEV)


def test_near_tie_decided_in_the_update_kernel():
    """Nothing labeled and ``init=0``: the labeled-set search never runs, the first
    centre's distances come from the update kernel alone. r = 100 for row 1 and
    100 + 2^-18 for row 2 (2^-24.6 relative): float32 sums of the squares make both 100
    and give the tie to row 1; the kernel's float64 sums pick row 2."""
    e = 2.0 ** -9
    x = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, e], [1.0, 1.0], [-3.0, 2.0]], np.float32)
    sq = ((x[1:3] - x[0]) ** 2).sum(1, dtype=np.float32)
    assert sq[0] == sq[1]  # what float32 sums would see
    sel = densecore.farthest_first(_t(x), 3, init=0, backend="triton")
    assert sel.indices.tolist()[:2] == [0, 2]
    assert sel.radii[1].item() == np.float32(100 + 2.0 ** -18)
    ref_i, _ = density_aware_greedy_ref(x, 3, init=0)
    assert sel.indices.tolist() == list(ref_i)
    # in a batch of two pools, each with its own forced first pick
    sels = densecore.farthest_first_batch(_t(np.concatenate([x, x])), [5, 5], 2, seeds=[0, 0],
                                          backend="triton")
    firsts = [int(np.random.default_rng(0).integers(5))] * 2
    for s, f in zip(sels, firsts):
        assert s.indices.tolist() == list(density_aware_greedy_ref(x, 2, init=f)[0])


@pytest.mark.skipif(not _cuda, reason="needs CUDA: 65,600 rows x 64 under the interpreter "
                                      "take minutes")
def test_exact_tie_across_more_than_1024_tiles_goes_to_the_lower_index():
    """``_pick`` reduces the tiles' maxima 1,024 lanes at a time; tile ``t`` and tile
    ``t + 1024`` share a lane. Two exact copies of the farthest point, in tiles 3 and
    1,027 (64 rows per tile at D = 64): the pick must be the lower index."""
    d = 64
    block_n = max(16, TB._ROWS_X_COLS // min(64, d))
    n = 1030 * block_n
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.rand((n, d), generator=g, device="cuda", dtype=torch.float32)
    i = 3 * block_n + 5
    j = i + 1024 * block_n
    x[i] = 50.0
    x[j] = 50.0
    sel = densecore.farthest_first(x, 2, init=7, backend="triton")
    assert sel.indices.tolist() == [7, i]
    sel = densecore.farthest_first(x, 3, init=7, backend="triton")
    assert sel.indices.tolist()[:2] == [7, i]


# ---------------------------------------------------------------- hostile, tiny and few


@st.composite
def triton_cases(draw):
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(3, 40))
    dim = draw(st.integers(1, 4))
    scale = draw(st.sampled_from([2.0 ** -60, 1.0, 2.0 ** 60]))
    x = rng.normal(size=(n, dim))
    if draw(st.booleans()):  # duplicates and lattice ties
        x = np.round(x)
        x[rng.integers(0, n, n // 3)] = x[0]
    x = (x * scale).astype(draw(st.sampled_from([np.float32, np.float64])))
    dens = None
    if draw(st.booleans()):
        dens = 2.0 ** rng.integers(-3, 3, n) * draw(st.sampled_from([1e-30, 1.0, 1e30]))
    lab = rng.choice(n, draw(st.integers(0, n // 3)), replace=False)
    budget = draw(st.integers(1, n - len(lab)))
    return x, dens, lab, budget


@settings(max_examples=6, deadline=None)
@given(triton_cases())
def test_triton_engine_on_hostile_inputs_matches_the_reference(case):
    x, dens, lab, budget = case
    sel = densecore.farthest_first(_t(x), budget, densities=_t(dens), labeled=lab, seed=1,
                                   backend="triton")
    idx = sel.indices.cpu().numpy()
    init = int(idx[0]) if len(lab) == 0 else None
    ref_i, _ = density_aware_greedy_ref(x.astype(np.float64), budget, densities=dens,
                                            labeled=lab, init=init)
    np.testing.assert_array_equal(idx, ref_i)


def test_triton_engine_rejects_hostile_arguments():
    x = _t(np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="seed must be >= 0"):
        densecore.farthest_first(x, 1, seed=-1, backend="triton")
    with pytest.raises(ValueError, match="features must be finite"):
        densecore.farthest_first(_t(np.array([[0.0], [np.nan]], np.float32)), 1,
                                 backend="triton")
    with pytest.raises(ValueError, match="budget"):
        densecore.farthest_first(x, 5, backend="triton")
