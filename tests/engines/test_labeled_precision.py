"""Labeled points keep their own (wider) precision on every engine: a 16-bit pool never
rounds float32/float64 ``labeled_features`` (DESIGN.md, contracts).

Pool ``[[2], [0], [5]]``, labeled ``[[1.001], [5]]``, budget 1: row 0 is 0.999 from
the labeled point, row 1 is 1.001, so the float64 reference picks row 1. Rounded
to bfloat16 the labeled point is 1.0, the two rows tie and the tie would go to row 0.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import densecore
from densecore import engines as E
from densecore import greedy as G
from reference import density_aware_greedy_ref

# (pool dtype, labeled value that the dtype rounds to 1.0)
CASES = [(torch.bfloat16, 1.001), (torch.float16, 1.0002)]


def _engines():
    out = ["numba", "torch", "torch-16bit"]
    try:
        tb = E.engine("triton")
        import densecore._backends.triton_backend as TB

        if TB.interpreted() or torch.cuda.is_available():
            out.append("triton")
    except ImportError:
        tb = None
    del tb
    return out


def _run(engine, x, lf, monkeypatch, budget=1, dens=None, ld=None):
    if engine == "torch-16bit":  # the torch engine as on CUDA: 16-bit storage kept
        monkeypatch.setattr(E.engine("torch"), "half_on_cpu", True, raising=False)
        engine = "torch"
    return densecore.farthest_first(x, budget, labeled_features=lf, densities=dens,
                                    labeled_densities=ld, backend=engine)


@pytest.mark.parametrize("dtype, value", CASES)
@pytest.mark.parametrize("engine", _engines())
def test_16bit_pool_keeps_labeled_point_precision(engine, dtype, value, monkeypatch):
    x = torch.tensor([[2.0], [0.0], [5.0]]).to(dtype)
    lf = torch.tensor([[value], [5.0]], dtype=torch.float32)
    assert lf.to(dtype)[0, 0].item() == 1.0  # the dtype would round it to a tie
    want, _ = density_aware_greedy_ref(x.double().numpy(), 1,
                                       labeled_features=lf.double().numpy())
    assert want.tolist() == [1]
    sel = _run(engine, x, lf, monkeypatch)
    assert sel.indices.tolist() == [1]
    torch.testing.assert_close(sel.radii.double(),
                               torch.tensor([(0.0 - float(lf[0, 0])) ** 2],
                                            dtype=torch.float64), rtol=1e-6, atol=0)


@pytest.mark.parametrize("engine", _engines())
def test_float32_pool_keeps_float64_labeled_points(engine, monkeypatch):
    # float64 labeled points 2^-30 apart from float32-representable values: rounded to
    # float32 they would tie rows 0 and 1; the reference separates them
    e = 2.0 ** -30
    x = torch.tensor([[2.0], [0.0], [5.0], [9.0]], dtype=torch.float32)
    lf = torch.tensor([[1.0 + e], [5.0], [9.0]], dtype=torch.float64)
    dens = torch.tensor([1.0, 1.0, 2.0, 0.5], dtype=torch.float64)
    ld = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    want, _ = density_aware_greedy_ref(x.double().numpy(), 2, densities=dens.numpy(),
                                       labeled_features=lf.numpy(),
                                       labeled_densities=ld.numpy())
    assert want.tolist()[0] == 1
    sel = _run(engine, x, lf, monkeypatch, budget=2, dens=dens, ld=ld)
    assert sel.indices.tolist() == want.tolist()


def test_centres_stay_in_the_pool_dtype_where_exact():
    x = torch.tensor([[2.0], [0.0], [5.0]], dtype=torch.float32)
    lf = torch.tensor([[1.5]], dtype=torch.float64)
    exact = G.setup(x, 1, labeled_features=lf, backend="torch")
    rounded = G.setup(x, 1, labeled_features=lf + 2.0 ** -30, backend="torch")
    assert exact.inputs["centres"].dtype == torch.float32  # no copy wider than needed
    assert rounded.inputs["centres"].dtype == torch.float64
    assert rounded.inputs["centres"][0, 0].item() == 1.5 + 2.0 ** -30


def test_numba_pruning_with_labeled_points_the_pool_dtype_rounds():
    # above the plain loop's size: the coverage areas of rounded labeled centres are
    # never skipped, so the pruned picks still equal the reference
    rng = np.random.default_rng(5)
    n = 12_000
    # float32 spacing at 100 is 2^-17: the labeled points sit between grid values, and
    # their rounding (up to 2^-18 per coordinate) exceeds the pruning slack's margin
    x = (rng.normal(size=(n, 3)) * 1e-3 + 100.0).astype(np.float32)
    lf = x[:40].astype(np.float64) + rng.uniform(-0.5, 0.5, size=(40, 3)) * 2.0 ** -17
    dens = rng.uniform(0.5, 2.0, size=n)
    ld = rng.uniform(0.5, 2.0, size=40)
    want, _ = density_aware_greedy_ref(x.astype(np.float64), 30, densities=dens,
                                       labeled_features=lf, labeled_densities=ld)
    sel = densecore.farthest_first(x, 30, densities=dens, labeled_features=lf,
                                   labeled_densities=ld, backend="numba")
    assert sel.indices.tolist() == want.tolist()
