"""Selection sharded over gloo processes equals single-process selection on the whole pool.

Each launch spawns 2 or 3 CPU processes once and runs a list of scenarios in
them (process start-up dominates the cost); the last scenario of a launch may
break the group on purpose (a rank that dies or stops answering).
"""

from __future__ import annotations

import datetime
import os
import pickle
import socket
import sys
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from densecore import DensityAwareGreedy, KCenterGreedy, distributed
from densecore.synthetic import gaussian_mixture

from reference import density_aware_greedy_ref, replay_check, table_engines

# ---------------------------------------------------------------------------
# scenarios: global data + how it is split; built identically in every process


def _data(sc):
    x, _ = gaussian_mixture(sc["n"], dim=sc.get("dim", 6), n_components=5,
                            duplicates=sc.get("duplicates", 0.0), seed=sc["seed"])
    if sc.get("constant"):
        x = np.ones_like(x)
    offset, scale = sc.get("offset", 0.0), sc.get("scale", 1.0)  # hostile numbers
    x = ((x.astype(np.float64) + offset) * scale).astype(sc.get("dtype", np.float32))
    rng = np.random.default_rng(sc["seed"] + 1)

    def dens_of(m):
        if sc.get("densities") == "tiny":  # KNNDensity(tau=0.005)-like: down to 1e-86
            return np.e ** 2.4 * np.exp(-200.0 * rng.uniform(0.0, 1.0, m))
        return rng.uniform(0.5, 2.0, m)

    dens = dens_of(sc["n"]) if sc.get("densities") else None
    lf = ld = None
    if sc.get("n_lf"):
        lf = ((rng.normal(size=(sc["n_lf"], x.shape[1])) * 3 + offset) * scale).astype(x.dtype)
        ld = dens_of(sc["n_lf"]) if dens is not None else None
    return x, dens, lf, ld


def _bounds(sc):
    off = np.concatenate([[0], np.cumsum(sc["sizes"])])
    assert off[-1] == sc["n"]
    return off


def _local_args(sc, rank):
    x, dens, lf, ld = _data(sc)
    off = _bounds(sc)
    lo, hi = off[rank], off[rank + 1]
    kw = {"budget": sc["budget"], "seed": sc.get("seed_sel", 0), "init": sc.get("init"),
          "backend": sc.get("backend", "auto"), "timeout": sc.get("timeout", 30.0),
          "num_threads": 1}  # several ranks share this machine's cores
    feats = x[lo:hi]
    if dens is not None:
        kw["densities"] = dens[lo:hi]
    if lf is not None and rank == sc.get("lf_rank", 0):
        kw["labeled_features"] = lf
        if ld is not None:
            kw["labeled_densities"] = ld
    lab = np.asarray(sc.get("labeled", []), dtype=np.int64)
    mine = lab[(lab >= lo) & (lab < hi)] - lo
    if mine.size:
        kw["labeled"] = mine
    if sc.get("bad_rank") == rank:
        feats = feats.copy()
        feats[0, 0] = np.nan
    if sc.get("budget_rank") == rank:
        kw["budget"] = sc["budget"] + 1
    return feats, kw


def _single(sc):
    """The single-process selection on the concatenated pool."""
    x, dens, lf, ld = _data(sc)
    lab = sc.get("labeled") or None
    backend = sc.get("backend", "auto")
    if dens is None:
        return KCenterGreedy(backend=backend, seed=sc.get("seed_sel", 0)).select(
            x, sc["budget"], labeled=lab, labeled_features=lf, init=sc.get("init"))
    return DensityAwareGreedy(backend=backend, seed=sc.get("seed_sel", 0)).select(
        x, sc["budget"], densities=dens, labeled=lab, labeled_features=lf,
        labeled_densities=ld, init=sc.get("init"))


def _worker(rank, world, port, scenarios, outdir):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=60))
    results = {}
    broken = False
    for sc in scenarios:
        name = sc["name"]
        if sc.get("quit_rank") == rank:  # never calls select: dies or stops answering
            with open(os.path.join(outdir, f"{rank}.pkl"), "wb") as f:
                pickle.dump(results, f)
            if sc["quit"] == "hang":
                time.sleep(1.5 * sc["timeout"])
            os._exit(0)
        feats, kw = _local_args(sc, rank)
        t0 = time.perf_counter()
        try:
            sel = distributed.select(feats, **kw)
            results[name] = ("ok", sel.indices, sel.radii)
        except Exception as err:  # noqa: BLE001 - the test inspects it
            results[name] = ("error", type(err).__name__, str(err), time.perf_counter() - t0)
            broken = broken or "quit" in sc
    with open(os.path.join(outdir, f"{rank}.pkl"), "wb") as f:
        pickle.dump(results, f)
    if broken:
        os._exit(0)  # the group is unusable; do not wait on it
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(jobs, limit=120.0):
    """Run every (world, scenarios, folder) job at once, each in its own process group."""
    ctx = mp.get_context("spawn")
    procs = []
    for world, scenarios, folder in jobs:
        port = _free_port()
        procs += [ctx.Process(target=_worker, args=(r, world, port, scenarios, str(folder)))
                  for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + limit
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, f"{len(alive)} rank(s) still running after {limit} s"
    out = []
    for world, _, folder in jobs:
        res = []
        for r in range(world):
            with open(folder / f"{r}.pkl", "rb") as f:
                res.append(pickle.load(f))
        out.append(res)
    return out


def _check_same_as_single(results, sc):
    want = _single(sc)
    for rank, res in enumerate(results):
        got = res[sc["name"]]
        assert got[0] == "ok", f"rank {rank}: {got}"
        np.testing.assert_array_equal(got[1], want.indices, err_msg=f"rank {rank}")
        np.testing.assert_array_equal(got[2], want.radii, err_msg=f"rank {rank}")
        assert got[1].dtype == np.int64 and got[2].dtype == want.radii.dtype


# ---------------------------------------------------------------------------

TWO = [
    {"name": "kcenter_even", "n": 400, "sizes": [200, 200], "budget": 40, "seed": 0,
     "seed_sel": 3},
    {"name": "density_uneven", "n": 500, "sizes": [60, 440], "budget": 50, "seed": 1,
     "densities": True},
    {"name": "labeled_features_rank1", "n": 300, "sizes": [150, 150], "budget": 30,
     "seed": 2, "densities": True, "n_lf": 7, "lf_rank": 1},
    {"name": "in_pool_labeled", "n": 300, "sizes": [100, 200], "budget": 30, "seed": 3,
     "labeled": [5, 120, 299]},
    {"name": "init_on_rank1", "n": 200, "sizes": [120, 80], "budget": 25, "seed": 4,
     "densities": True, "init": 150},
    {"name": "duplicates", "n": 300, "sizes": [170, 130], "budget": 60, "seed": 5,
     "duplicates": 0.4},
    {"name": "constant_ties", "n": 40, "sizes": [15, 25], "budget": 12, "seed": 6,
     "constant": True, "init": 20},
    {"name": "torch_engine", "n": 300, "sizes": [140, 160], "budget": 30, "seed": 7,
     "densities": True, "dtype": np.float64, "backend": "torch", "n_lf": 3},
    {"name": "triton_engine", "n": 300, "sizes": [130, 170], "budget": 30, "seed": 17,
     "densities": True, "backend": "triton", "n_lf": 3, "labeled": [5, 160],
     "duplicates": 0.2},
    {"name": "hostile_scale_tiny_densities", "n": 300, "sizes": [120, 180], "budget": 30,
     "seed": 14, "densities": "tiny", "scale": 1e19},
    {"name": "hostile_offset_faiss", "n": 400, "sizes": [250, 150], "budget": 30,
     "seed": 15, "densities": True, "offset": 1e5, "scale": 0.01, "n_lf": 300, "lf_rank": 1},
    {"name": "hostile_torch_engine", "n": 300, "sizes": [100, 200], "budget": 30,
     "seed": 16, "densities": "tiny", "scale": 1e-25, "n_lf": 260, "backend": "torch"},
    {"name": "nan_on_rank1", "n": 100, "sizes": [50, 50], "budget": 5, "seed": 8,
     "bad_rank": 1},
    {"name": "budget_disagrees", "n": 100, "sizes": [50, 50], "budget": 5, "seed": 8,
     "budget_rank": 0},
    {"name": "budget_too_large", "n": 100, "sizes": [30, 70], "budget": 99, "seed": 8,
     "labeled": [1, 2]},
    {"name": "ok_after_errors", "n": 100, "sizes": [30, 70], "budget": 10, "seed": 9},
    {"name": "rank1_hangs", "n": 100, "sizes": [50, 50], "budget": 5, "seed": 8,
     "quit_rank": 1, "quit": "hang", "timeout": 2.0},
]

THREE = [
    {"name": "empty_middle_shard", "n": 400, "sizes": [250, 0, 150], "budget": 40,
     "seed": 10, "densities": True, "n_lf": 5, "lf_rank": 2},
    {"name": "tiny_shard_exhausted", "n": 120, "sizes": [2, 100, 18], "budget": 110,
     "seed": 11, "labeled": [0, 50]},
    {"name": "empty_first_shard_ties", "n": 90, "sizes": [0, 45, 45], "budget": 30,
     "seed": 12, "duplicates": 0.5},
    {"name": "rank2_dies", "n": 90, "sizes": [30, 30, 30], "budget": 5, "seed": 13,
     "quit_rank": 2, "quit": "die", "timeout": 20.0},
]


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """Results of the 2-rank and the 3-rank launch, run side by side."""
    return _launch([(2, TWO, tmp_path_factory.mktemp("two")),
                    (3, THREE, tmp_path_factory.mktemp("three"))])


@pytest.fixture(scope="module")
def two_ranks(launched):
    return launched[0]


@pytest.fixture(scope="module")
def three_ranks(launched):
    return launched[1]


@pytest.mark.parametrize("name", ["kcenter_even", "density_uneven", "labeled_features_rank1",
                                  "in_pool_labeled", "init_on_rank1", "duplicates",
                                  "constant_ties", "torch_engine", "ok_after_errors"])
def test_two_ranks_match_single_process(two_ranks, name):
    _check_same_as_single(two_ranks, next(sc for sc in TWO if sc["name"] == name))


# the triton engine on CPU tensors runs under the interpreter (TRITON_INTERPRET=1 from
# conftest.py, inherited by the spawned ranks); a GPU machine compiles it for CUDA tensors
# instead, and these scenarios hold numpy (CPU) features
INTERPRETED = not torch.cuda.is_available()


@pytest.mark.skipif(not INTERPRETED, reason="CPU tensors need the Triton interpreter")
def test_two_ranks_on_the_triton_engine_match_single_process_and_reference(two_ranks):
    sc = next(sc for sc in TWO if sc["name"] == "triton_engine")
    _check_same_as_single(two_ranks, sc)
    x, dens, lf, ld = _data(sc)
    idx, _ = density_aware_greedy_ref(x, sc["budget"], dens, labeled=sc["labeled"],
                                      labeled_features=lf, labeled_densities=ld)
    np.testing.assert_array_equal(two_ranks[0]["triton_engine"][1], idx)


@pytest.mark.parametrize("name", ["hostile_scale_tiny_densities", "hostile_offset_faiss",
                                  "hostile_torch_engine"])
def test_two_ranks_on_hostile_numbers_match_the_float64_reference(two_ranks, name):
    sc = next(sc for sc in TWO if sc["name"] == name)
    _check_same_as_single(two_ranks, sc)
    x, dens, lf, ld = _data(sc)
    idx = two_ranks[0][name][1]
    assert replay_check(x, idx, densities=dens, labeled_features=lf, labeled_densities=ld,
                        init=None if lf is not None else int(idx[0]), atol=0.0) > 0


def test_constant_features_break_ties_by_lowest_global_index(two_ranks):
    # every r is 0 after the first pick: picks follow the global index order
    got = two_ranks[0]["constant_ties"][1]
    assert got.tolist() == [20] + [i for i in range(12) if i != 20][:11]


@pytest.mark.parametrize("name", ["empty_middle_shard", "tiny_shard_exhausted",
                                  "empty_first_shard_ties"])
def test_three_ranks_match_single_process(three_ranks, name):
    _check_same_as_single(three_ranks, next(sc for sc in THREE if sc["name"] == name))


def test_three_ranks_match_float64_reference(three_ranks):
    sc = THREE[0]
    x, dens, lf, ld = _data(sc)
    idx, _ = density_aware_greedy_ref(x, sc["budget"], dens, labeled_features=lf,
                                      labeled_densities=ld)
    np.testing.assert_array_equal(three_ranks[1][sc["name"]][1], idx)


def test_bad_input_on_one_rank_fails_every_rank(two_ranks):
    bad, other = two_ranks[1]["nan_on_rank1"], two_ranks[0]["nan_on_rank1"]
    assert bad[:2] == ("error", "ValueError") and "local_features must be finite" in bad[2]
    assert other[:2] == ("error", "RuntimeError")
    assert "rank 1 of 2 rejected its inputs" in other[2]
    assert "local_features must be finite" in other[2]


def test_ranks_that_disagree_fail_the_same_way(two_ranks):
    for res in two_ranks:
        kind, typ, msg = res["budget_disagrees"][:3]
        assert (kind, typ) == ("error", "ValueError")
        assert "budget must be the same on every rank" in msg
        kind, typ, msg = res["budget_too_large"][:3]
        assert (kind, typ) == ("error", "ValueError")
        assert "at most the number of unlabeled points (98)" in msg


def test_rank_that_stops_answering_times_out(two_ranks):
    kind, typ, msg, elapsed = two_ranks[0]["rank1_hangs"]
    assert (kind, typ) == ("error", "RuntimeError")
    assert "another rank failed, exited or did not call select" in msg
    assert elapsed < 20.0  # timeout 2 s; bounded, not a hang


def test_rank_that_dies_fails_the_others(three_ranks):
    for rank in (0, 1):
        kind, typ, msg, _ = three_ranks[rank]["rank2_dies"]
        assert (kind, typ) == ("error", "RuntimeError")
        assert "distributed.select" in msg and f"rank {rank} of 3" in msg


# ---------------------------------------------------------------------------
# in-process checks (world size 1)


@pytest.fixture
def one_rank(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("backend", table_engines() + [pytest.param("triton", marks=(
    pytest.mark.skipif(not INTERPRETED, reason="CPU tensors need the Triton interpreter")))])
def test_one_rank_equals_farthest_first(one_rank, backend):
    x, _ = gaussian_mixture(300, dim=5, seed=21)
    d = np.random.default_rng(0).uniform(0.5, 2, 300)
    got = distributed.select(x, 25, densities=d, labeled=[3, 9], backend=backend)
    want = DensityAwareGreedy(backend=backend).select(x, 25, densities=d, labeled=[3, 9])
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.radii, want.radii)


def test_one_rank_keeps_faiss_assignment_and_dense_hand_over(one_rank, caplog, monkeypatch):
    from densecore._backends.numba import engine as numba_engine

    from densecore._backends.numba import handover

    monkeypatch.setattr(numba_engine, "PLAIN_MAX", 0)  # the pruned path on a small pool
    # isotropic noise in 64 dimensions (pruning stops paying: the engine hands over to
    # dense passes, their estimated build made negligible for 1,500 points) and a
    # labeled set above the faiss threshold, through the sharded path
    monkeypatch.setattr(handover, "BUILD_SECONDS", 1e-12)
    monkeypatch.setattr(handover, "DENSE_SECONDS", 0.0)
    rng = np.random.default_rng(11)
    x = rng.normal(size=(1500, 64)).astype(np.float32)
    lab = rng.choice(1500, 300, replace=False)
    with caplog.at_level("DEBUG", logger="densecore._backends.numba.engine"):
        got = distributed.select(x, 600, labeled=lab, backend="numba")
    assert "dense passes" in caplog.text
    want = KCenterGreedy(backend="numba").select(x, 600, labeled=lab)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.radii, want.radii)
    assert replay_check(x, got.indices, labeled=lab, atol=0.0) > 0


def test_tensor_in_tensor_out(one_rank, device):
    x = torch.from_numpy(gaussian_mixture(100, dim=4, seed=2)[0]).to(device)
    got = distributed.select(x, 10, seed=5)
    want = KCenterGreedy(seed=5).select(x, 10)
    assert isinstance(got.indices, torch.Tensor) and got.indices.device == x.device
    assert got.radii.dtype == torch.float32
    assert got.indices.tolist() == want.indices.tolist()


@pytest.mark.skipif(not (torch.cuda.is_available() and dist.is_nccl_available()),
                    reason="no CUDA device or NCCL")
def test_nccl_one_rank_matches_torch_backend(tmp_path):
    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        x, _ = gaussian_mixture(2000, dim=16, seed=4)
        xc = torch.from_numpy(x).cuda()
        d = torch.rand(2000, device="cuda", dtype=torch.float32) + 0.5
        lf = xc[:3] + 0.5
        got = distributed.select(xc, 50, densities=d, labeled_features=lf,
                                 labeled_densities=d[:3])
        want = DensityAwareGreedy(backend="torch").select(
            xc, 50, densities=d, labeled_features=lf, labeled_densities=d[:3])
        assert got.indices.device == xc.device
        assert got.indices.tolist() == want.indices.tolist()
        torch.testing.assert_close(got.radii, want.radii)
    finally:
        dist.destroy_process_group()


def test_one_rank_errors(one_rank):
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="init applies only when nothing is labeled"):
        distributed.select(x, 1, labeled=[0], init=1)
    with pytest.raises(ValueError, match=r"labeled must lie in \[0, 4\)"):
        distributed.select(x, 1, labeled=[4])
    with pytest.raises(ValueError, match="backend must be one of"):
        distributed.select(x, 1, backend="faiss")
    with pytest.raises(ValueError, match="timeout"):
        distributed.select(x, 1, timeout=0)
    with pytest.raises(ValueError, match="num_threads must be >= 1"):
        distributed.select(x, 1, num_threads=0)
    assert distributed.select(x, 0).indices.shape == (0,)


def test_needs_a_process_group():
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    with pytest.raises(RuntimeError, match="init_process_group"):
        distributed.select(np.zeros((3, 2), np.float32), 1)


def test_message_bytes():
    assert distributed.message_bytes(3, 64) == {"gather": 48, "vector": 520, "total": 568}
    assert distributed.message_bytes(2, 10)["vector"] == 88
    with pytest.raises(ValueError, match="dim must be >= 1"):
        distributed.message_bytes(2, 0)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
