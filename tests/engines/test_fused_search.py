"""The fused candidate kernel of the nearest-centre search (``_backends/nearest_triton.py``):
its candidates against a float64 top-3 of the same approximate values, and the certified
search built on them against the numba brute force, on CUDA tensors where a CUDA device
exists, else on CPU tensors under the Triton interpreter.

``TRITON_INTERPRET=1`` is set here (and by tests/conftest.py) where there is no CUDA
device, before triton is imported; the kernel module is reloaded if something imported
it without that setting. Sizes stay at a few hundred rows: the interpreter runs a call
in well under a second.
"""

from __future__ import annotations

import importlib
import os
import sys

import numpy as np
import pytest
import torch
from reference import nearest_ref

_cuda = torch.cuda.is_available()
_late = not _cuda and "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1"
if not _cuda:
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported
triton = pytest.importorskip("triton", reason="triton does not import here")
_name = "densecore._backends.nearest_triton"
NT = (importlib.import_module(_name) if _name not in sys.modules or _cuda
      else importlib.reload(sys.modules[_name]))

from densecore._backends import nearest  # noqa: E402
from densecore.synthetic import gaussian_mixture  # noqa: E402

pytestmark = pytest.mark.skipif(
    _late or not (_cuda or not isinstance(NT._top3, triton.runtime.JITFunction)),
    reason="no CUDA device, and triton was imported before TRITON_INTERPRET could be set "
           "(run this file alone)")
DEV = torch.device("cuda" if _cuda else "cpu")


def _approx64(qf, cf, iw):
    """``max(|q|^2 + |c|^2 - 2 q.c, 0) * iw`` in float64 from the float32 inputs (N, L)."""
    q, c = qf.double().cpu(), cf.double().cpu()
    v = (q * q).sum(1)[:, None] + (c * c).sum(1)[None, :] - 2.0 * q @ c.T
    return v.clamp_min(0) * iw.float().double().cpu()[None, :]


def _top(v, m):
    """The m smallest of each row by (value, index): ``(values, indices)``."""
    o = torch.sort(v, dim=1, stable=True).indices[:, :m]
    return v.gather(1, o), o


def _fused_source(calls):
    """The fused kernel for m = M, torch candidates for the larger retry rounds."""
    def source(qf, cf, iw, m):
        calls.append(m)
        if m == NT.M:
            return NT.candidates(qf, cf, iw, m)
        return nearest._torch_candidates(qf, cf, iw, m)
    return source


def _numba(q, c, inv_w, k):
    """The numba brute force over every query (float64 from differences)."""
    return nearest._search_cpu(q.cpu(), c.cpu(), inv_w.cpu(), k, faiss=False)


_ref = nearest_ref


@pytest.mark.parametrize("n,l,d", [(203, 300, 64), (130, 64, 19), (64, 65, 3),
                                   (70, 4, 19), (150, 129, 1)])
@pytest.mark.parametrize("weighted", [False, True])
def test_candidates_are_the_float64_top3_of_the_same_values(n, l, d, weighted):
    """Where the float64 values separate the third and fourth candidate by more than
    the float32 rounding, the kernel's set is the float64 top 3; its values are those
    of its indices within the rounding, sorted, indices distinct and in range."""
    rng = np.random.default_rng(n + l + d)
    c, _ = gaussian_mixture(l, dim=d, n_components=3, duplicates=0.1, seed=d)
    copies = c[:10]  # queries at centres: values of 0 up to rounding
    q = np.concatenate([copies, rng.normal(scale=2.0, size=(n - len(copies), d))])
    q = q.astype(np.float32)
    qf, cf = torch.from_numpy(q).to(DEV), torch.from_numpy(c).to(DEV)
    iw = torch.from_numpy(rng.uniform(0.5, 2.0, size=l) if weighted else np.ones(l)).to(DEV)
    v, i = NT.candidates(qf, cf, iw)
    assert v.shape == i.shape == (n, NT.M) and v.dtype == torch.float64
    assert i.dtype == torch.int64
    v, i = v.cpu(), i.cpu()
    a = _approx64(qf, cf, iw)
    tol = nearest._bound(qf, cf, iw.float().double(), NT.EPS).cpu()[:, None]
    assert bool((i >= 0).all() and (i < l).all())
    assert all(len(set(r)) == NT.M for r in i.tolist())
    assert bool((v[:, 1:] >= v[:, :-1]).all())
    assert bool(((v - a.gather(1, i)).abs() <= tol).all())
    rv, ri = _top(a, NT.M + 1)
    sep = (rv[:, NT.M] - rv[:, NT.M - 1] > 2 * tol[:, 0]).numpy()
    assert sep.mean() > 0.5  # the comparison below covers most rows
    got = np.sort(i.numpy()[sep], 1)
    np.testing.assert_array_equal(got, np.sort(ri[:, :NT.M].numpy()[sep], 1))


@pytest.mark.parametrize("weights", [None, (1.0, 0.5, 0.25)])
def test_exact_ties_go_to_the_lowest_index_across_blocks(weights):
    """Small integers: every float32 value is exact, so the kernel's (value, index) lists
    equal the float64 lexicographic top 3; the centres repeat across blocks of 64
    (duplicates in different blocks), so ties meet both within and across blocks."""
    rng = np.random.default_rng(7)
    base = rng.integers(0, 3, size=(40, 5)).astype(np.float32)
    c = np.concatenate([base, base, base, base[:17]])  # 137 centres, 3 blocks
    q = rng.integers(0, 3, size=(150, 5)).astype(np.float32)
    iw = (torch.ones(len(c), dtype=torch.float64) if weights is None else
          torch.from_numpy(rng.choice(weights, size=len(c))))
    qf, cf = torch.from_numpy(q).to(DEV), torch.from_numpy(c).to(DEV)
    v, i = NT.candidates(qf, cf, iw.to(DEV))
    rv, ri = _top(_approx64(qf, cf, iw), NT.M)
    np.testing.assert_array_equal(i.cpu().numpy(), ri.numpy())
    np.testing.assert_array_equal(v.cpu().numpy(), rv.numpy())


def _cases():
    rng = np.random.default_rng(3)
    mix, _ = gaussian_mixture(420, dim=19, n_components=5, duplicates=0.15, seed=3)
    yield "mixture D=19", mix[:183], mix[183:], None
    mix3, _ = gaussian_mixture(330, dim=3, n_components=4, duplicates=0.2, seed=4)
    yield "mixture D=3 weighted", mix3[:130], mix3[130:], rng.uniform(0.3, 3.0, size=200)
    ints = rng.integers(0, 3, size=(330, 4)).astype(np.float32)
    yield "integer ties", ints[:150], ints[150:], None
    yield "integer ties weighted", ints[:150], ints[150:], rng.choice([1.0, 2.0, 4.0], 180)
    g, _ = gaussian_mixture(300, dim=64, n_components=4, duplicates=0.1, seed=5)
    yield "offset 1e6", g[:100] + np.float32(1e6), g[100:] + np.float32(1e6), None
    yield "scale 1e-30", g[:100] * np.float32(1e-30), g[100:] * np.float32(1e-30), None
    yield "offset 1e4 scale 1e-3", (g[:100] * 1e-3 + 1e4).astype(np.float32), \
        (g[100:] * 1e-3 + 1e4).astype(np.float32), rng.uniform(0.5, 2.0, size=200)
    for l in (2, 3, 4):  # L below, at and just above M
        yield f"L={l}", mix[:70], mix[200:200 + l], None


@pytest.mark.parametrize("name,q,c,w", list(_cases()), ids=[x[0] for x in _cases()])
def test_certified_search_on_fused_candidates_equals_the_brute_force(name, q, c, w):
    """``_search_torch`` on the fused candidates (torch candidates for the retries) returns
    exactly the numba brute force's answers, and those of the float64 reference."""
    qt, ct = torch.from_numpy(q).to(DEV), torch.from_numpy(c).to(DEV)
    inv_w = torch.from_numpy(1.0 / w if w is not None else np.ones(len(c))).to(DEV)
    calls = []
    v, i = nearest._search_torch(qt, ct, inv_w, 1, candidates=_fused_source(calls))
    bv, bi = _numba(qt, ct, inv_w, 1)
    np.testing.assert_array_equal(i.cpu().numpy(), bi.numpy())
    np.testing.assert_allclose(v.cpu().numpy(), bv.numpy(), rtol=1e-14, atol=0)
    rv, ri = _ref(q, c, 1, w)
    np.testing.assert_array_equal(i.cpu().numpy(), ri)
    np.testing.assert_allclose(v.cpu().numpy(), rv, rtol=1e-14, atol=0)
    assert calls[:1] == ([NT.M] if len(c) > NT.M else [])  # the kernel ran first


def test_fused_candidates_certify_most_queries(monkeypatch):
    """The certificate with the kernel's unit roundoff accepts the first round's answer
    for nearly every query of a plain mixture (no retries, few brute-force rows)."""
    x, _ = gaussian_mixture(500, dim=32, n_components=5, seed=9)
    brute = []
    real = nearest._torch_brute
    monkeypatch.setattr(nearest, "_torch_brute", lambda q_, c_, iw, k_, rows, v, i:
                        (brute.append(rows.numel()), real(q_, c_, iw, k_, rows, v, i)))
    calls = []
    q, c = torch.from_numpy(x[:300]).to(DEV), torch.from_numpy(x[300:]).to(DEV)
    v, i = nearest._search_torch(q, c, torch.ones(200, dtype=torch.float64, device=DEV), 1,
                                 candidates=_fused_source(calls))
    assert calls[0] == NT.M and len(calls) <= 2 and sum(brute) <= 3
    np.testing.assert_array_equal(i.cpu().numpy(), _ref(x[:300], x[300:], 1)[1])


def test_the_search_takes_the_fused_kernel_where_it_serves(monkeypatch):
    """Wiring: with the kernel available (here forced on the test's device), the k = 1
    round runs it and certifies with its own unit roundoff, the retry rounds take the
    torch candidates with theirs (2^-11 here, as for TF32 on CUDA), and k = 2 never
    runs it."""
    monkeypatch.setattr(nearest, "_fused", lambda dev, dt: NT if dt == torch.float32 else None)
    monkeypatch.setattr(nearest, "_candidate_eps", lambda *a: 2.0 ** -11)
    ran, torch_ms, eps = [], [], []
    real_c, real_t, real_b = NT.candidates, nearest._torch_candidates, nearest._bound
    monkeypatch.setattr(NT, "candidates", lambda *a: (ran.append(1), real_c(*a))[1])
    monkeypatch.setattr(nearest, "_torch_candidates",
                        lambda qf, cf, iw, m: (torch_ms.append(m), real_t(qf, cf, iw, m))[1])
    monkeypatch.setattr(nearest, "_bound", lambda qf, cf, iw, e: (eps.append(e),
                                                                  real_b(qf, cf, iw, e))[1])
    rng = np.random.default_rng(2)
    c = rng.normal(size=(90, 6)).astype(np.float32)
    c[10:16] = c[3]  # 7 copies of one centre: its copies' queries retry
    q = np.concatenate([c[:20], rng.normal(size=(60, 6)).astype(np.float32)])
    qt, ct = torch.from_numpy(q).to(DEV), torch.from_numpy(c).to(DEV)
    ones = torch.ones(90, dtype=torch.float64, device=DEV)
    v, i = nearest._search_torch(qt, ct, ones, 1)
    np.testing.assert_array_equal(i.cpu().numpy(), _ref(q, c, 1)[1])
    assert ran == [1] and torch_ms and min(torch_ms) > NT.M
    assert eps[0] == NT.EPS and set(eps[1:]) == {2.0 ** -11}
    ran.clear()
    v, i = nearest._search_torch(qt, ct, ones, 2)
    assert ran == [] and torch_ms[-1] >= 4
    np.testing.assert_array_equal(i.cpu().numpy(), _ref(q, c, 2)[1])


def test_a_kernel_that_fails_warns_once_and_leaves_the_torch_candidates(monkeypatch):
    monkeypatch.setattr(nearest, "_FUSED_FAILED", [])
    monkeypatch.setattr(nearest, "_fused", lambda dev, dt: None if nearest._FUSED_FAILED
                        else NT)

    def broken(*a):
        raise RuntimeError("no such GPU")

    monkeypatch.setattr(NT, "candidates", broken)
    x, _ = gaussian_mixture(200, dim=8, n_components=3, duplicates=0.1, seed=1)
    q, c = torch.from_numpy(x[:120]).to(DEV), torch.from_numpy(x[120:]).to(DEV)
    ones = torch.ones(80, dtype=torch.float64, device=DEV)
    with pytest.warns(RuntimeWarning, match="fused nearest-centre kernel failed.*no such GPU"):
        v, i = nearest._search_torch(q, c, ones, 1)
    np.testing.assert_array_equal(i.cpu().numpy(), _ref(x[:120], x[120:], 1)[1])
    assert len(nearest._FUSED_FAILED) == 1
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process: no second warning
        v2, i2 = nearest._search_torch(q, c, ones, 1)
    assert torch.equal(i, i2) and len(nearest._FUSED_FAILED) == 1


def test_the_real_availability_rule():
    """Without monkeypatching: CPU tensors and float64 never take the kernel."""
    assert nearest._fused(torch.device("cpu"), torch.float32) is None
    assert nearest._fused(torch.device("cuda"), torch.float64) is None
    if _cuda and not nearest._FUSED_FAILED:
        assert nearest._fused(torch.device("cuda"), torch.float32) is NT
