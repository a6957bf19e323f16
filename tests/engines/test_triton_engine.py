"""The triton engine's kernels against the float64 reference (tests/reference.py): on CUDA
tensors where a CUDA device exists (compiled), else on CPU tensors under the Triton
interpreter.

``TRITON_INTERPRET`` is read when ``@triton.jit`` decorates (and by the interpreter
while a kernel runs), so on a machine without CUDA it is set here, for this test
process, before the engine module is imported (the module is reloaded if something
imported it without it); the library never sets it. On a machine with a CUDA device
nothing is set: collecting this file leaves the kernels compiled for the GPU (the
interpreter also breaks with numpy >= 2.4 on triton 3.6).
"""

from __future__ import annotations

import importlib
import os
import re
import sys

import numpy as np
import pytest
import torch

CUDA = torch.cuda.is_available()
_late = False
if not CUDA:
    _late = "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1"
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported: its own @jit too
pytest.importorskip("triton", reason="triton does not import here (Linux x86_64 wheels only)")
_name = "densecore._backends.triton_backend"
TB = (importlib.reload(sys.modules[_name]) if _name in sys.modules and not CUDA
      else importlib.import_module(_name))

import densecore  # noqa: E402
from densecore import _core as C  # noqa: E402
from densecore import engines as E  # noqa: E402
from densecore import greedy as G  # noqa: E402
from densecore.synthetic import gaussian_mixture  # noqa: E402
from reference import density_aware_greedy_ref  # noqa: E402

DEV = torch.device("cuda" if CUDA else "cpu")
pytestmark = pytest.mark.skipif(_late or not (CUDA or TB.interpreted()),
                                reason="triton was imported before TRITON_INTERPRET could "
                                "be set (run this file alone)")


def _t(a):
    return None if a is None else torch.from_numpy(np.asarray(a)).to(DEV)


def _check_pool(sel, x, budget, dens=None, labeled=(), lf=None, ld=None, init=None,
                exact=False):
    ref_i, ref_r = density_aware_greedy_ref(x, budget, densities=dens, labeled=labeled,
                                            labeled_features=lf, labeled_densities=ld,
                                            init=init)
    np.testing.assert_array_equal(sel.indices.cpu().numpy(), ref_i)
    got = sel.radii.double().cpu().numpy()
    want = ref_r.astype(sel.radii.cpu().numpy().dtype)
    if exact:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("dim", [6, 64])
def test_ragged_batch_with_duplicates_matches_reference(dim):
    sizes = [150, 90, 120]
    x, _ = gaussian_mixture(sum(sizes), dim=dim, n_components=4, duplicates=0.15, seed=dim)
    x = x.astype(np.float32)
    dens = np.random.default_rng(dim).uniform(0.5, 3.0, size=len(x))
    budgets = [25, 40, 10]
    sels = densecore.farthest_first_batch(_t(x), sizes, budgets, densities=_t(dens),
                                          seeds=[1, 2, 3], backend="triton")
    lo = 0
    for p, (n, k) in enumerate(zip(sizes, budgets)):
        init = int(np.random.default_rng([1, 2, 3][p]).integers(n))
        _check_pool(sels[p], x[lo:lo + n], k, dens[lo:lo + n], init=init)
        lo += n


@pytest.mark.parametrize("density_aware", [False, True])
def test_lattice_exact_ties_go_to_lowest_index(density_aware):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=(120, 3)).astype(np.float32)
    dens = 2.0 ** rng.integers(-1, 3, size=120) if density_aware else None
    sel = densecore.farthest_first(_t(x), 40, densities=_t(dens), init=0, backend="triton")
    _check_pool(sel, x, 40, dens, init=0, exact=True)


@pytest.mark.parametrize("dim", [3, 19])
def test_odd_dimensions_across_tiles_match_reference(dim):
    # D zero-padded to a multiple of 16 (exact); pools longer than a tile (256 rows) and
    # than a row block, with exact ties (a lattice) that must go to the lowest index
    # across blocks and tiles
    rng = np.random.default_rng(dim)
    sizes = [40, 300]
    x = rng.integers(0, 3, size=(sum(sizes), dim)).astype(np.float32)
    x[300:320] = x[41]  # duplicates in the second pool's first and second tiles
    dens = 2.0 ** rng.integers(-1, 2, size=len(x))
    sels = densecore.farthest_first_batch(_t(x), sizes, [6, 12], densities=_t(dens),
                                          seeds=[3, 4], backend="triton")
    lo = 0
    for p, (n, k) in enumerate(zip(sizes, [6, 12])):
        init = int(np.random.default_rng([3, 4][p]).integers(n))
        _check_pool(sels[p], x[lo:lo + n], k, dens[lo:lo + n], init=init, exact=True)
        lo += n
    assert TB._layout(dim)[0] % min(16, TB._pow2(dim)) == 0


@pytest.mark.parametrize("sizes", [[0], [1], [255], [256], [257],
                                   [257, 0, 256, 1, 255, 0, 513, 3]])
def test_tile_descriptors_round_trip(sizes):
    # every tile of every pool, in order, with its first row, row count and pool, as a
    # loop over the pools would list them; pool 0 rows has no tile
    want = []
    lo = 0
    for p, n in enumerate(sizes):
        want += [(lo + s, min(TB._TILE_N, n - s), p) for s in range(0, n, TB._TILE_N)]
        lo += n
    desc, p_lo, p_hi, offset = TB._tiles(sizes, DEV)
    assert desc.dtype == torch.int64 and bool((desc >= 0).all())
    got = torch.stack(TB._unpack(desc), 1).cpu().tolist()
    assert [tuple(g) for g in got] == want
    per_pool = [-(-n // TB._TILE_N) for n in sizes]
    assert p_hi.cpu().tolist() == np.cumsum(per_pool).tolist()
    assert (p_hi - p_lo).cpu().tolist() == per_pool
    assert offset.cpu().tolist() == (np.cumsum(sizes) - sizes).tolist()
    # the fields' extremes survive packing, and the sign bit stays 0
    top = torch.tensor([TB._MAX_ROWS - 1, 0, 5], dtype=torch.int64)
    cnt = torch.tensor([TB._TILE_N, 1, 255], dtype=torch.int64)
    pool = torch.tensor([TB._MAX_POOLS - 1, 0, 3], dtype=torch.int64)
    packed = TB._pack(top, cnt, pool)
    assert bool((packed >= 0).all())
    for a, b in zip(TB._unpack(packed), (top, cnt, pool)):
        assert torch.equal(a, b)


def test_batch_beyond_the_descriptor_fields_is_refused():
    # checked on the pools' row counts before anything is copied or allocated
    with pytest.raises(ValueError, match="pools per batch"):
        TB._tiles([1] * (TB._MAX_POOLS + 1), DEV)
    with pytest.raises(ValueError, match="rows per batch"):
        TB._tiles([TB._MAX_ROWS - 5, 6], DEV)
    TB._check_fields([1] * TB._MAX_POOLS)  # at the limits: accepted
    TB._check_fields([TB._MAX_ROWS - 5, 5])
    one = dict(x=torch.zeros((2, 3), device=DEV), dens=torch.ones(2, dtype=torch.float64,
                                                                    device=DEV),
               centres=torch.zeros((0, 3), device=DEV),
               cdens=torch.ones(0, dtype=torch.float64, device=DEV),
               excluded=torch.zeros(2, dtype=torch.bool, device=DEV))
    with pytest.raises(ValueError, match="pools per batch"):
        TB._Batch([one] * (TB._MAX_POOLS + 1))
    huge = dict(one, x=torch.zeros((1, 3), device=DEV).expand(TB._MAX_ROWS + 1, 3))
    with pytest.raises(ValueError, match="rows per batch"):
        TB._Batch([huge])


def test_kernel_decodes_every_tile_of_ragged_pools():
    # each pool's last row is far out (a tile of one row for 257, a full tile's last row
    # for 256): a wrong start, count or pool decoded in the kernel changes the picks
    sizes = [0, 1, 255, 256, 257, 3]
    rng = np.random.default_rng(11)
    x = rng.normal(size=(sum(sizes), 4)).astype(np.float32)
    ends = np.cumsum(sizes)
    for p, e in enumerate(ends):
        if sizes[p]:
            x[e - 1] = 40.0 + 10 * p
    budgets = [0, 1, 4, 4, 4, 2]
    seeds = [0, 1, 2, 3, 4, 5]
    sels = densecore.farthest_first_batch(_t(x), sizes, budgets, seeds=seeds,
                                          backend="triton")
    for p, (n, k) in enumerate(zip(sizes, budgets)):
        lo = ends[p] - n
        init = int(np.random.default_rng(seeds[p]).integers(n)) if n else None
        if k:
            _check_pool(sels[p], x[lo:lo + n], k, init=init)
            assert n - 1 in sels[p].indices.tolist()
        else:
            assert len(sels[p].indices) == 0


@pytest.mark.parametrize("fs, ds", [(1.0, 1.0), (2.0 ** -70, 1e-30)])
def test_tile_skipping_is_certified(fs, ds):
    # clusters far apart, rows sorted by cluster: most tiles are provably out of a new
    # centre's reach and are not read; the picks (ties and duplicates included) equal
    # the float64 reference, also at hostile scales
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 3)) * 40
    x = np.concatenate([c + rng.integers(-2, 3, size=(260, 3)) for c in centres])
    x[5:25] = x[3]  # duplicates: exact ties
    x = (x * fs).astype(np.float32)
    dens = 2.0 ** rng.integers(-1, 2, size=len(x)) * ds
    job = G.setup(_t(x), 20, _t(dens), labeled=[7], backend="triton")
    eng = TB.Engine(**job.inputs, max_new=20)
    idx = torch.empty(20, dtype=torch.int64, device=DEV)
    rr = torch.empty(20, dtype=torch.float64, device=DEV)
    eng.run(20, idx, rr)
    sel = job.result(idx, rr)
    _check_pool(sel, x, 20, dens, labeled=[7])
    assert 0 < int(eng.b.skipped) < 19 * eng.b.n_tiles
    # the weight hook reads every tile (its argmax is of r * w)
    w = TB.Engine(**job.inputs, max_new=3, weights=torch.ones(len(x), dtype=torch.float64,
                                                                 device=DEV))
    w.run(3, idx, rr)
    assert int(w.b.skipped) == 0


def test_labeled_in_and_out_of_pool():
    sizes = [80, 70]
    x, _ = gaussian_mixture(150, dim=5, n_components=3, duplicates=0.1, seed=4)
    x = x.astype(np.float32)
    rng = np.random.default_rng(4)
    dens = rng.uniform(0.5, 2.0, size=150)
    lab = np.zeros(150, bool)
    lab[[2, 9, 85]] = True
    lf = [rng.normal(size=(3, 5)).astype(np.float32), None]
    ld = [rng.uniform(0.5, 2.0, size=3), None]
    sels = densecore.farthest_first_batch(_t(x), sizes, [20, 30], densities=_t(dens),
                                          labeled=_t(lab), labeled_features=[_t(a) for a in lf],
                                          labeled_densities=[_t(a) for a in ld],
                                          backend="triton")
    _check_pool(sels[0], x[:80], 20, dens[:80], labeled=[2, 9], lf=lf[0], ld=ld[0])
    _check_pool(sels[1], x[80:], 30, dens[80:], labeled=[5])


def test_near_tie_that_float32_sums_get_wrong():
    # r = 100 for row 1 and 100 + 2^-18 (2^-24.6 relative) for row 2: in float32 the
    # second sum rounds to 100 and the tie would go to row 1.
    e = 2.0 ** -9
    x = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, e], [1.0, 1.0], [-3.0, 2.0]], np.float32)
    sq = (x[1:3] - x[0]) ** 2
    assert np.float32(sq[0].sum(dtype=np.float32)) == np.float32(sq[1].sum(dtype=np.float32))
    sel = densecore.farthest_first(_t(x), 2, labeled=[0], backend="triton")
    assert sel.indices.tolist()[0] == 2
    _check_pool(sel, x, 2, labeled=[0])
    # the same near-tie inside a batch, scaled by a density of 4 (exact)
    xb = np.concatenate([x, x])
    sels = densecore.farthest_first_batch(_t(xb), [5, 5], 2, densities=_t(np.full(10, 4.0)),
                                          labeled=_t(np.tile([True] + [False] * 4, 2)),
                                          backend="triton")
    assert [s.indices.tolist()[0] for s in sels] == [2, 2]
    assert sels[0].radii[0].item() == np.float32((100 + 2.0 ** -18) / 4)


def test_budget_equal_to_pool():
    x, _ = gaussian_mixture(60, dim=4, n_components=2, duplicates=0.3, seed=1)
    x = x.astype(np.float32)
    lab = np.zeros(60, bool)
    lab[[0, 30]] = True
    sels = densecore.farthest_first_batch(_t(x), [30, 30], [29, 29], labeled=_t(lab),
                                          backend="triton")
    for p in range(2):
        _check_pool(sels[p], x[30 * p:30 * p + 30], 29, labeled=[0])
        assert sorted(sels[p].indices.tolist()) == list(range(1, 30))


@pytest.mark.parametrize("fs, ds", [(2.0 ** 60, 1.0), (2.0 ** -60, 1e-30), (1.0, 1e30)])
def test_hostile_scales(fs, ds):
    x, _ = gaussian_mixture(120, dim=5, n_components=3, duplicates=0.1, seed=2)
    x = x.astype(np.float32)
    dens = np.random.default_rng(2).uniform(0.5, 2.0, size=120)
    assert C.scales([np.abs(x).max() * fs, dens.max() * ds, dens.min() * ds],
                    torch.float32) != (1.0, 1.0)  # the scaling rule is exercised
    sel = densecore.farthest_first(_t(x * np.float32(fs)), 20, densities=_t(dens * ds),
                                   init=5, backend="triton")
    _check_pool(sel, x * np.float32(fs), 20, dens * ds, init=5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16bit_storage_equals_float32_on_rounded_values(dtype):
    x, _ = gaussian_mixture(140, dim=8, n_components=3, duplicates=0.1, seed=3)
    x16 = _t(x).to(dtype)
    dens = _t(np.random.default_rng(3).uniform(0.5, 2.0, size=140))
    a = densecore.farthest_first_batch(x16, [60, 80], [10, 12], densities=dens,
                                       backend="triton")
    b = densecore.farthest_first_batch(x16.float(), [60, 80], [10, 12], densities=dens,
                                       backend="triton")
    for s, t in zip(a, b):
        assert torch.equal(s.indices, t.indices) and torch.equal(s.radii, t.radii)
    init = int(np.random.default_rng(0).integers(60))
    _check_pool(b[0], x16.float().cpu().numpy()[:60], 10, dens.cpu().numpy()[:60], init=init)


def test_batched_equals_one_pool_at_a_time_and_other_engines():
    sizes = [70, 0, 45, 90]
    x, _ = gaussian_mixture(sum(sizes), dim=6, n_components=4, duplicates=0.1, seed=6)
    xt = _t(x.astype(np.float32))
    dens = _t(np.random.default_rng(6).uniform(0.5, 2.0, size=len(x)))
    lab = torch.zeros(len(x), dtype=torch.bool, device=DEV)
    lab[[1, 80]] = True
    kw = dict(densities=dens, labeled=lab, seeds=[0, 1, 2, 3])
    got = densecore.farthest_first_batch(xt, sizes, [12, 0, 16, 7], backend="triton", **kw)
    numba = densecore.farthest_first_batch(xt, sizes, [12, 0, 16, 7], backend="numba", **kw)
    lo = 0
    for p, n in enumerate(sizes):
        one = densecore.farthest_first(xt[lo:lo + n], [12, 0, 16, 7][p],
                                       densities=dens[lo:lo + n],
                                       labeled=lab[lo:lo + n].nonzero().squeeze(1),
                                       seed=p, backend="triton")
        assert torch.equal(got[p].indices, one.indices)
        assert torch.equal(got[p].radii, one.radii)
        assert torch.equal(got[p].indices, numba[p].indices)
        lo += n


def test_typicality_weight_hook_matches_the_other_engines():
    # argmax r * w: the tiles' maxima are of r * w, radii stay r
    x, _ = gaussian_mixture(180, dim=5, n_components=4, duplicates=0.15, seed=9)
    xt = _t(x.astype(np.float32))
    dens = _t(np.random.default_rng(9).uniform(0.2, 4.0, size=len(x)))
    for kw in (dict(labeled=[3, 77]), dict(init=11)):
        got = densecore.TypicalityGreedy(g=1.0, backend="triton").select(xt, 25,
                                                                        densities=dens, **kw)
        for other in ("numba", "torch"):
            want = densecore.TypicalityGreedy(g=1.0, backend=other).select(xt, 25,
                                                                           densities=dens, **kw)
            assert torch.equal(torch.as_tensor(got.indices), torch.as_tensor(want.indices))
            torch.testing.assert_close(torch.as_tensor(got.radii).double(),
                                       torch.as_tensor(want.radii).double(), rtol=1e-6, atol=0)
    assert E.engine("triton").weighted


def test_engine_interface_with_a_centre_held_elsewhere():
    """best / row / add_centre (the sharded selection's steps) agree with the torch engine."""
    x = _t(gaussian_mixture(50, dim=3, n_components=2, seed=8)[0].astype(np.float32))
    dens = (torch.rand(50, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
            + .5).to(DEV)
    inputs = dict(x=x, dens=dens, centres=x[:2] + 1, cdens=dens[:2], excluded=torch.zeros(
        50, dtype=torch.bool, device=DEV))
    tri, ref = TB.Engine(**inputs, max_new=5), E.engine("torch")(**inputs, max_new=5)
    for u in (None, 7, None):
        a, b = tri.best(), ref.best()
        assert torch.equal(a[1], b[1])
        torch.testing.assert_close(a[0], b[0], rtol=1e-6, atol=0)
        if u is None:  # a point of another shard
            vec = torch.tensor([0.5, -1.0, 2.0, 1.5], dtype=torch.float64, device=DEV)
            tri.add_centre(vec, -1)
            ref.add_centre(vec, -1)
        else:
            ut = torch.tensor(u, device=DEV)
            torch.testing.assert_close(tri.row(ut), ref.row(ut))
            tri.add_centre(tri.row(ut), ut)
            ref.add_centre(ref.row(ut), ut)


def test_auto_rule_and_cpu_needs_the_interpreter(monkeypatch):
    from densecore._backends import triton_check

    assert E.resolve("auto", "dense", torch.device("cpu")) == "numba"
    # on CUDA: triton once its self-check passed (tests/engines/test_triton_check.py)
    monkeypatch.setattr(triton_check, "_RESULTS", {"cuda:0": (True, "", 0.0)})
    assert E.resolve("auto", "dense", torch.device("cuda", 0)) == "triton"
    assert E.resolve("triton", "dense", torch.device("cuda")) == "triton"
    monkeypatch.setattr(TB, "interpreted", lambda: False)
    with pytest.raises(ValueError, match="triton engine needs CUDA tensors"):
        densecore.farthest_first(torch.zeros(4, 2), 1, backend="triton")


def test_launches_per_pick_for_a_whole_batch():
    """Kernel launches counted at the launch call (triton's pre-run hooks): one ``_update``
    over the tiles (the tiles' first maxima), then one per pick for every pool at once
    (the last pick's update and this pick)."""
    launches = []

    def hook(*args, **kwargs):
        launches.append(kwargs.get("PICK", args[-1] if args else None))

    TB._update.add_pre_run_hook(hook)
    try:
        x, _ = gaussian_mixture(700, dim=4, n_components=3, seed=12)
        sels = densecore.farthest_first_batch(_t(x.astype(np.float32)), [260, 390, 50],
                                              [5, 7, 3], seeds=[0, 1, 2], backend="triton")
    finally:
        TB._update.pre_run_hooks.remove(hook)
    assert len(launches) == 1 + 7  # 7 picks of the largest budget: 1 per pick
    lo = 0
    for p, (n, k) in enumerate(zip([260, 390, 50], [5, 7, 3])):
        init = int(np.random.default_rng(p).integers(n))
        _check_pool(sels[p], x[lo:lo + n].astype(np.float32), k, init=init)
        lo += n


_COMPILE = r"""
import os, re, subprocess, tempfile
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from densecore._backends import triton_backend as TB
assert not TB.interpreted()
tools = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")

def usage(kernel):
    # registers and stack (spill) bytes of the cubin, where triton ships cuobjdump
    tool = os.path.join(tools, "cuobjdump")
    if "cubin" not in kernel.asm or not os.path.exists(tool):
        return "?"
    with tempfile.NamedTemporaryFile("wb", suffix=".cubin", delete=False) as f:
        f.write(kernel.asm["cubin"])
    out = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True,
                         text=True).stdout
    os.unlink(f.name)
    return " ".join(re.findall(r"REG:\d+|STACK:\d+", out))

target = GPUTarget("cuda", 90, 32)
for xdt in ("*fp32", "*bf16"):
    sig = dict(x_ptr=xdt, r_ptr="*fp64", w_ptr="*fp64", cen_ptr=xdt, cden_ptr="*fp64",
               live_ptr="*i32", t_desc_ptr="*i64", t_r_ptr="*fp64", t_i_ptr="*i64",
               tm_ptr="*fp64", rho_ptr="*fp64", last_ptr="*i64", skipped_ptr="*i64",
               dens_ptr="*fp64", cnt_ptr="*i32", p_lo_ptr="*i64", p_hi_ptr="*i64",
               offset_ptr="*i64", budget_ptr="*i64", forced_ptr="*i64", out_off_ptr="*i64",
               out_idx_ptr="*i64", out_r_ptr="*fp64",
               step="i32", n_total="i32", D="i32", stride_x="i32",
               UPDATE="constexpr", WEIGHTED="constexpr", SKIP="constexpr", PICK="constexpr",
               FORCED="constexpr", TILE_N="constexpr", BLOCK_N="constexpr",
               BLOCK_D="constexpr", BLOCK_T="constexpr")
    for d in (64, 3, 19, 257):
        dp, bd, bn = TB._layout(d)
        for weighted in (False, True):
            k = triton.compile(ASTSource(TB._update, sig, {
                "UPDATE": True, "WEIGHTED": weighted, "SKIP": not weighted, "PICK": True,
                "FORCED": weighted, "TILE_N": TB._TILE_N, "BLOCK_N": bn, "BLOCK_D": bd,
                "BLOCK_T": 1024}), target=target, options={"num_warps": TB._WARPS})
            print(f"_update {xdt} D={d} (padded {dp}) weighted={weighted}: {usage(k)}")
# the fused candidates of the nearest-centre search (D is a runtime argument: one kernel)
from densecore._backends import nearest_triton as NT
sig = dict(q_ptr="*fp32", c_ptr="*fp32", csq_ptr="*fp32", iw_ptr="*fp32", out_v_ptr="*fp64",
           out_i_ptr="*i64", n="i32", l="i32", D="i32", stride_q="i32", stride_c="i32",
           BLOCK_Q="constexpr", BLOCK_C="constexpr", BLOCK_D="constexpr")
k = triton.compile(ASTSource(NT._top3, sig, {"BLOCK_Q": NT.BLOCK_Q, "BLOCK_C": NT.BLOCK_C,
                                             "BLOCK_D": NT.BLOCK_D}), target=target,
                   options={"num_warps": NT._WARPS, "num_stages": NT._STAGES})
print(f"_top3 {NT.BLOCK_Q}x{NT.BLOCK_C}x{NT.BLOCK_D}: {usage(k)}")
print("compiled")
"""


def test_kernels_compile_for_a_gpu_target():
    """The interpreter accepts more than the compiler: compile the engine's kernels and
    the search's fused candidates to PTX for sm_90 (no GPU needed) in a process without
    TRITON_INTERPRET."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(densecore.__file__)),
                                         env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", _COMPILE], env=env, capture_output=True,
                         text=True, timeout=300)
    if out.returncode and "ptxas" in out.stderr and "not found" in out.stderr.lower():
        pytest.skip("triton's ptxas is not available here")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "compiled" in out.stdout
    print(out.stdout)  # registers and spills (pytest -s shows them)
    for line in out.stdout.splitlines():
        if line.startswith("_update") and "REG:" in line:
            regs, stack = (int(v) for v in re.findall(r"(?:REG|STACK):(\d+)", line))
            assert stack == 0 and regs <= 80, line  # no spills, <= 80 registers
        if line.startswith("_top3") and "STACK:" in line:
            assert re.search(r"STACK:(\d+)", line).group(1) == "0", line  # no spills
    assert sum(line.startswith("_top3") for line in out.stdout.splitlines()) == 1
