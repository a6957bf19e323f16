"""Every sampler on one engine seam: one table maps ``backend=`` to code, a toy engine
registered there reaches every sampler, the sparse layout and the sharded selection,
``metric="cosine"`` reaches every sampler, and the package has no import cycle."""

from __future__ import annotations

import ast
import datetime
import inspect
import os
import pickle
import pkgutil
import re
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import densecore
import toy_engine
from densecore import (DensityAwareGreedy, KCenterGreedy, KMedoidsRefinement, TypicalityGreedy,
                       engines)
from densecore.samplers import Sampler
from densecore.synthetic import gaussian_mixture
from reference import density_aware_greedy_ref

PKG = Path(densecore.__file__).parent


# ---------------------------------------------------------------- imports

def _module_names() -> dict:
    """Every module of the package -> its file."""
    out = {"densecore": PKG / "__init__.py"}
    for m in pkgutil.walk_packages([str(PKG)], "densecore."):
        rel = m.name.split(".")[1:]
        path = PKG.joinpath(*rel)
        out[m.name] = path / "__init__.py" if m.ispkg else path.with_suffix(".py")
    return out


def _imports(name: str, path: Path, modules: dict) -> set:
    """Package modules ``name`` imports (anywhere in the file, functions included);
    its own ancestors (always loaded before it) are left out."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base[:len(base) - node.level + 1]
                target = ".".join(parts + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules and m != name
            and not name.startswith(m + ".")}


def test_the_package_has_no_import_cycle():
    modules = _module_names()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    # the table's loaders import through importlib: count those edges too
    loaded = set(re.findall(r'_loader\("([\w.]+)"', (PKG / "engines.py").read_text()))
    assert "_backends.triton_backend" in loaded and "_backends.numba" in loaded
    graph["densecore.engines"] |= {f"densecore.{m}" for m in loaded} & set(modules)
    assert "densecore.sparse" in graph["densecore.greedy"]  # the walk sees function imports
    state, stack = {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):]
                                                                    + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_core_is_a_leaf():
    modules = _module_names()
    assert _imports("densecore._core", modules["densecore._core"], modules) == set()
    # the table imports the leaf and the engine base class (which imports only the
    # thread helpers of its package), never an engine
    assert _imports("densecore.engines", modules["densecore.engines"],
                    modules) == {"densecore._core", "densecore._backends.base"}
    assert _imports("densecore._backends.base", modules["densecore._backends.base"],
                    modules) == set()
    # the size/device rules, read by the search that the table's engines import
    assert _imports("densecore._rules", modules["densecore._rules"], modules) == set()


# ---------------------------------------------------------------- one switch

# a comparison with, or a table keyed by, an engine name
_DISPATCH = re.compile(r"""(==|!=|\bin)\s*\(?["'](numba|torch|triton)["']"""
                       r"""|["'](numba|torch|triton)["']\s*:\s*(_|lambda|\w*(run|engine|Engine|Ops))"""
                       r"""|\bbackend\s*(==|!=)\s*["']|\bBACKENDS\s*=\s*\(""")


def test_no_module_outside_the_table_dispatches_on_a_backend_name():
    hits = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).as_posix()
        if rel in ("engines.py", "cli.py"):  # the table; the CLI's literal option list
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if _DISPATCH.search(code) and "method" not in code:  # search methods are not engines
                hits.append(f"{rel}:{i}: {line.strip()}")
    assert hits == []
    # the CLI's list is the table's
    from densecore import cli

    assert cli.BACKENDS == engines.BACKENDS


@pytest.mark.parametrize("call", [
    lambda x: KCenterGreedy(backend="nope"),
    lambda x: DensityAwareGreedy(backend="nope"),
    lambda x: TypicalityGreedy(backend="nope"),
    lambda x: KMedoidsRefinement(backend="nope"),
    lambda x: KMedoidsRefinement(KCenterGreedy(backend="auto"), backend="nope"),
    lambda x: densecore.farthest_first(x, 2, backend="nope"),
    lambda x: densecore.farthest_first(sp.csr_matrix(x), 2, backend="nope"),
    lambda x: densecore.farthest_first_batch(x, [3, 3], 1, backend="nope"),
    lambda x: densecore.typicality.typicality_farthest_first(x, 2, backend="nope"),
    lambda x: densecore.refine.refine_medoids(x, [0], backend="nope"),
])
def test_an_unknown_backend_raises_naming_backend(call):
    # sparse input once went silently to numba
    x = np.arange(12, dtype=np.float64).reshape(6, 2)
    with pytest.raises(ValueError, match="backend must be one of"):
        call(x)


def test_a_backend_without_an_engine_for_the_layout_raises():
    x = sp.csr_matrix(np.eye(4))
    with pytest.raises(ValueError, match="backend 'triton' has no engine for sparse"):
        densecore.farthest_first(x, 2, backend="triton")


# ---------------------------------------------------------------- a toy engine

@pytest.fixture
def toy(monkeypatch):
    table = dict(engines.ENGINES)
    toy_engine.register(table)
    monkeypatch.setattr(engines, "ENGINES", table)
    toy_engine.CALLS.update(dense=0, sparse=0)
    return toy_engine.CALLS


def _pool(n=160, dim=5, seed=0):
    x, _ = gaussian_mixture(n, dim=dim, n_components=4, duplicates=0.2, seed=seed)
    d = np.random.default_rng(seed).uniform(0.5, 2.0, n)
    return x.astype(np.float64), d


def _same(a, b):
    assert np.asarray(a.indices).tolist() == np.asarray(b.indices).tolist()
    np.testing.assert_allclose(np.asarray(a.radii, np.float64),
                               np.asarray(b.radii, np.float64), rtol=1e-12)


@pytest.mark.parametrize("backend", ["numba", "torch", "toy"])
def test_the_refinement_searches_with_the_wrapped_engines_search(toy, monkeypatch, backend):
    # one search: the refinement's nearest-centre assignments use the method the
    # wrapped sampler's engine declares (the toy engine declares "faiss")
    from densecore._backends import nearest

    monkeypatch.setattr(toy_engine.ToyEngine, "search_method", "faiss", raising=False)
    seen = []
    search = nearest.search

    def spy(q, c, k=1, *, weights=None, method="auto"):
        seen.append(method)
        return search(q, c, k, weights=weights, method=method)

    monkeypatch.setattr(nearest, "search", spy)
    x, _ = _pool()
    sel = KMedoidsRefinement(KCenterGreedy(backend=backend)).select(x, 12, labeled=[3, 40])
    want = engines.engine(backend).search_method
    assert want == {"numba": "auto", "torch": "torch", "toy": "faiss"}[backend]
    assert seen and set(seen) == {want}
    ref = KMedoidsRefinement(KCenterGreedy(backend="numba")).select(x, 12, labeled=[3, 40])
    _same(sel, ref)


def test_a_toy_engine_in_the_table_runs_every_sampler(toy):
    x, d = _pool()
    lab, lf = [3, 40], x[[7, 8]] + 0.5
    ref = density_aware_greedy_ref(x, 20, d, lab, lf, d[[7, 8]])
    got = DensityAwareGreedy(backend="toy").select(x, 20, densities=d, labeled=lab,
                                                   labeled_features=lf,
                                                   labeled_densities=d[[7, 8]])
    assert got.indices.tolist() == ref[0].tolist()
    np.testing.assert_allclose(got.radii, ref[1], rtol=1e-12)
    _same(KCenterGreedy(backend="toy").select(x, 20, labeled=lab),
          KCenterGreedy(backend="numba").select(x, 20, labeled=lab))
    _same(TypicalityGreedy(backend="toy").select(x, 20, densities=d, labeled=lab),
          TypicalityGreedy(backend="numba").select(x, 20, densities=d, labeled=lab))
    a = KMedoidsRefinement(KCenterGreedy(backend="toy")).select(x, 12, labeled=lab)
    b = KMedoidsRefinement(KCenterGreedy(backend="numba")).select(x, 12, labeled=lab)
    _same(a, b)
    np.testing.assert_allclose(a.ard, b.ard, rtol=1e-12)
    assert toy["dense"] == 4
    # several pools in one call (the batched entry) and select_pixels
    sels = densecore.farthest_first_batch(x, [100, 60], [5, 7], densities=d, backend="toy")
    want = densecore.farthest_first_batch(x, [100, 60], [5, 7], densities=d, backend="numba")
    for s, w in zip(sels, want):
        _same(s, w)
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(2, 4, 12, 16, generator=g), 1)
    feats, dens = torch.randn(2, 5, 6, 8, generator=g), torch.rand(2, 6, 8, generator=g) + 0.2
    before = toy["dense"]
    m_toy = densecore.select_pixels(probs, feats, dens, 6, alpha=3,
                                    sampler=DensityAwareGreedy(backend="toy"))
    m_ref = densecore.select_pixels(probs, feats, dens, 6, alpha=3,
                                    sampler=DensityAwareGreedy(backend="numba"))
    assert toy["dense"] == before + 2  # both images on the toy engine
    assert torch.equal(m_toy, m_ref) and int(m_toy.sum()) == 12


# the engine-parametrised reference suite: every file takes its engines from the table
REFERENCE_SUITE = ["test_greedy_reference.py", "test_greedy_hand.py", "test_batch.py",
                   "test_hostile.py", "test_hostile_roots.py", "test_certificates.py",
                   "test_refine.py", "test_typicality.py", "test_metrics_sparse.py",
                   "test_distributed.py"]


def test_an_engine_registered_through_the_public_function_gets_the_reference_suite():
    # `pytest -p toy_engine` calls densecore.register_engine("toy", ...) before the
    # tests are collected; no test file names the toy engine, yet every file of the
    # suite runs tests on it, and they pass
    import subprocess

    here = Path(__file__).parents[1]  # tests/, where toy_engine.py lives
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(here), str(PKG.parent), os.environ.get("PYTHONPATH", "")]))
    files = [str(p) for f in REFERENCE_SUITE for p in sorted(here.rglob(f))]
    assert len(files) == len(REFERENCE_SUITE)
    for f in files:
        assert "toy" not in Path(f).read_text()
    cmd = [sys.executable, "-m", "pytest", "-p", "toy_engine", "-p", "no:cacheprovider",
           "-v", "-k", "toy", *files]
    run = subprocess.run(cmd, env=env, cwd=here.parent, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    passed = re.findall(r"^(\S+::\S+) PASSED", run.stdout, re.M)
    assert len(passed) >= 20 and all(re.search(r"[\[-]toy[\]-]", t) for t in passed)
    assert {t.split("::")[0].split("/")[-1] for t in passed} == set(REFERENCE_SUITE)


def test_register_engine_checks_its_arguments(monkeypatch):
    monkeypatch.setattr(engines, "ENGINES", dict(engines.ENGINES))
    with pytest.raises(TypeError, match="cls must be a subclass"):
        densecore.register_engine("duck", "dense", object)
    with pytest.raises(ValueError, match="layout must be one of"):
        densecore.register_engine("duck", "ragged", toy_engine.ToyEngine)
    with pytest.raises(ValueError, match="name must be"):
        densecore.register_engine("auto", "dense", toy_engine.ToyEngine)
    densecore.register_engine("duck", "dense", toy_engine.ToyEngine)
    assert engines.resolve("duck", "dense", torch.device("cpu")) == "duck"
    x, d = _pool()
    _same(DensityAwareGreedy(backend="duck").select(x, 10, densities=d),
          DensityAwareGreedy(backend="numba").select(x, 10, densities=d))


def test_every_engine_declares_every_capability_through_the_base_class():
    base = engines.Engine
    caps = ("host", "weighted", "half_on_cpu", "search_method", "devices", "run_batch")
    for key in engines.ENGINES:
        try:
            cls = engines.ENGINES[key]()
        except ImportError:
            continue
        assert issubclass(cls, base), key
        for cap in caps:
            assert cap in base.__dict__ and hasattr(cls, cap), (key, cap)
        assert cls.threads is base.threads or key == ("toy", "dense")
        # the forced first pick exists once: the base class's; no run() forces one
        assert cls.first is base.first, key
        assert "first" not in inspect.signature(cls.run).parameters, key
    # no module outside the base class reads a capability with a default
    pattern = re.compile(r"getattr\([^)]*\b(" + "|".join(caps) + r")\b")
    for path in PKG.rglob("*.py"):
        if path.name != "base.py":
            assert not pattern.search(path.read_text()), path


def test_a_toy_engine_runs_the_sparse_layout(toy):
    x, d = _pool(120, 30, seed=1)
    x[np.abs(x) < 0.8] = 0.0
    a = sp.csr_matrix(x)
    got = densecore.farthest_first(a, 15, densities=d, labeled=[2], backend="toy")
    assert toy["sparse"] == 1
    ref = density_aware_greedy_ref(x, 15, d, [2])
    assert got.indices.tolist() == ref[0].tolist()
    np.testing.assert_allclose(got.radii, ref[1], rtol=1e-12)
    _same(got, densecore.farthest_first(a, 15, densities=d, labeled=[2], backend="numba"))


def test_the_sparse_layout_has_progress_and_threads(capsys):
    x, _ = _pool(100, 20, seed=2)
    a = sp.csr_matrix(np.where(np.abs(x) > 0.7, x, 0.0))
    s1 = densecore.farthest_first(a, 9, init=0, progress=True, num_threads=1)
    assert "greedy (numba)" in capsys.readouterr().err
    s2 = densecore.farthest_first(a.toarray(), 9, init=0)
    assert s1.indices.tolist() == s2.indices.tolist()


def test_every_sampler_follows_the_protocol():
    for s in (KCenterGreedy(), DensityAwareGreedy(), TypicalityGreedy(), KMedoidsRefinement()):
        assert isinstance(s, Sampler)
    assert not isinstance(object(), Sampler)


# ---------------------------------------------------------------- cosine everywhere

def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_cosine_reaches_every_sampler():
    x, d = _pool(150, 6, seed=3)
    u = _unit(x)
    lab = [1, 77]
    # the greedy samplers: the float64 reference on unit rows, radii 1 - cos = |a - b|^2 / 2
    for s, dens in ((KCenterGreedy(metric="cosine"), None),
                    (DensityAwareGreedy(metric="cosine"), d)):
        got = s.select(x, 15, densities=dens, labeled=lab)
        ref = density_aware_greedy_ref(u, 15, dens, lab)
        assert got.indices.tolist() == ref[0].tolist()
        np.testing.assert_allclose(got.radii, ref[1] / 2, rtol=1e-10)
    # typicality: argmax r * d on unit rows
    t = TypicalityGreedy(metric="cosine").select(x, 15, densities=d, labeled=lab)
    te = TypicalityGreedy().select(u, 15, densities=d, labeled=lab)
    assert t.indices.tolist() == te.indices.tolist()
    np.testing.assert_allclose(t.radii, te.radii / 2, rtol=1e-10)
    # the refinement takes the metric of the sampler it wraps (once it refined in Euclidean)
    r = KMedoidsRefinement(KCenterGreedy(metric="cosine")).select(x, 10, labeled=lab)
    re_ = KMedoidsRefinement(KCenterGreedy()).select(u, 10, labeled=lab)
    assert r.indices.tolist() == re_.indices.tolist()
    np.testing.assert_allclose(r.radii, re_.radii / 2, rtol=1e-10)
    eu = KMedoidsRefinement(KCenterGreedy()).select(x, 10, labeled=lab)
    assert eu.indices.tolist() != r.indices.tolist()  # the metric matters on this data


# ---------------------------------------------------------------- 2 gloo ranks

def _scenarios():
    x, d = _pool(140, 6, seed=4)
    xs = np.where(np.abs(x) > 0.6, x, 0.0)
    return [
        {"name": "toy_dense", "x": x, "d": d, "backend": "toy"},
        {"name": "toy_sparse", "x": xs, "d": d, "backend": "toy", "sparse": True},
        {"name": "numba_sparse", "x": xs, "d": None, "backend": "numba", "sparse": True},
        {"name": "cosine", "x": x, "d": d, "backend": "numba", "metric": "cosine"},
    ]


def _worker(rank, world, port, outdir):
    sys.path.insert(0, str(Path(__file__).parents[1]))
    import toy_engine as te

    from densecore import distributed
    from densecore import engines as E

    te.register(E.ENGINES)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=60))
    out = {}
    for sc in _scenarios():
        lo, hi = (0, 60) if rank == 0 else (60, 140)
        feats = sc["x"][lo:hi]
        if sc.get("sparse"):
            feats = sp.csr_matrix(feats)
        kw = {} if sc["d"] is None else {"densities": sc["d"][lo:hi]}
        sel = distributed.select(feats, 12, labeled=[5] if rank == 1 else None,
                                 backend=sc["backend"], metric=sc.get("metric", "euclidean"),
                                 timeout=30.0, num_threads=1, **kw)
        out[sc["name"]] = (np.asarray(sel.indices), np.asarray(sel.radii))
    out["toy_calls"] = dict(te.CALLS)
    x = _scenarios()[0]["x"]  # ranks that disagree on the metric or the layout both fail
    for name, metric, feats in (("metric", "cosine" if rank else "euclidean", x[:50]),
                                ("layout", "euclidean", sp.csr_matrix(x[:50]) if rank
                                 else x[:50])):
        try:
            distributed.select(feats, 3, metric=metric, timeout=30.0, num_threads=1)
            out[name] = None
        except ValueError as err:
            out[name] = str(err)
    with open(os.path.join(outdir, f"{rank}.pkl"), "wb") as f:
        pickle.dump(out, f)
    dist.destroy_process_group()


def test_distributed_select_runs_the_toy_engine_sparse_rows_and_cosine(tmp_path):
    # (and ranks that disagree on the metric or the layout fail alike)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(r, 2, port, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(240)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive and all(p.exitcode == 0 for p in procs)
    res = [pickle.load(open(tmp_path / f"{r}.pkl", "rb")) for r in range(2)]
    for r in res:
        assert r["toy_calls"] == {"dense": 1, "sparse": 1}
        assert "metric must be the same on every rank" in r["metric"]
        assert "layout (dense or sparse) must be the same on every rank" in r["layout"]
    for sc in _scenarios():
        x = _unit(sc["x"]) if sc.get("metric") == "cosine" else sc["x"]
        idx, radii = density_aware_greedy_ref(x, 12, sc["d"], [65])
        if sc.get("metric") == "cosine":
            radii = radii / 2
        for r in res:
            got_i, got_r = r[sc["name"]]
            assert got_i.tolist() == idx.tolist(), sc["name"]
            np.testing.assert_allclose(got_r, radii, rtol=1e-5, err_msg=sc["name"])


def test_an_engine_must_define_the_four_methods():
    # best, row, add_centre and run are abstract: a subclass missing one cannot be built
    from densecore.engines import Engine

    class NoRun(Engine):
        def best(self):
            return torch.tensor([-1.0, -1.0])

        def row(self, u):
            return torch.zeros(2)

        def add_centre(self, vec, u=-1):
            pass

    with pytest.raises(TypeError, match="run"):
        NoRun()
