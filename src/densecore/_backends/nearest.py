"""The one nearest-centre search: k nearest centres under a weighted squared distance.

Every value this module returns is ``||q - c_j||^2 / w_j`` (squared Euclidean
distance divided by the centre's weight; ``w_j = 1`` without weights)
computed **from coordinate differences in float64**, so a centre is at
distance exactly 0 from itself and duplicates tie exactly. Ties go to the
lowest centre index.

The rule (one rule for the greedy, ``coverage`` and ``KNNDensity``):

1. CPU tensors with fewer than :data:`FAISS_MIN` centres, or without faiss:
   exact brute force in numba (the rule: :func:`densecore._rules.kernel`).
2. Otherwise fast candidates first: faiss (CPU, exact flat index, float32) or,
   on other devices, the ``||a||^2 - 2ab + ||b||^2`` expansion as one float32
   GEMM per block of queries and centres (faiss-gpu's flat index for CUDA
   tensors where faiss has GPUs, torch otherwise), all on centred values
   rescaled by a power of two. The ``k + 2`` best candidates are recomputed
   exactly; a query's answer is kept only when a rounding bound of the fast
   values proves that no other centre can be closer (``approx_(k+2) - bound >
   exact_k``; the bound follows the GEMM's precision, TF32 included). On CPU
   the other queries get the exact numba brute force; on other devices they
   retry with four times the candidates (up to 1,024) and only the rest get
   the float64 brute force over all centres. A fast answer is never trusted
   blindly: hostile offsets or scales cost time, not correctness.

   On CUDA the float32 candidates of ``k = 1`` (the greedy's labeled-set search:
   ``M = 3`` candidates) come from one fused Triton kernel
   (:mod:`densecore._backends.nearest_triton`) where triton imports and faiss has
   no GPUs: the GEMM in float32 IEEE (unit roundoff 2^-24 whatever torch's
   matmul precision) with a running top-3 per query in registers, so no rows x
   centres temporary exists (memory O(N M) beside the inputs, where the torch
   candidates hold a block of 2^27 float32 values twice: 1 GiB). Retries with
   more candidates take the torch candidates; a kernel that fails to run (a GPU
   triton does not support) warns once and leaves the torch candidates for the
   rest of the process.

Which candidates a search takes (numba brute force, faiss, torch) is the one
size/device rule of :func:`densecore._rules.kernel` (``"search"``);
``FAISS_MIN = 256`` comes from the greedy's initial assignment on 100,000 x 64
points, 2 cores: numba 0.035 s vs faiss 0.035 s at 64 centres, 0.13 vs 0.10 s
at 256, 0.68 vs 0.38 s at 2,000.

Shape:
    queries ``(N, D)``, centres ``(L, D)``, weights ``(L,)``; results
    ``(N, k)`` float64 values and ``(N, k)`` int64 centre indices, nearest first.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .. import _rules as R
from .._core import DENSITY_EXP, SAFE_EXP, absmax as _absmax, mul_pow2, pow2_below
from .._core import pow2_exp, pow2_scale
from . import faiss_backend, threads

__all__ = ["FAISS_MIN", "METHODS", "as_numpy", "plain_distance", "search", "search_scaled"]

FAISS_MIN = R.FAISS_MIN  # the rule's threshold (densecore._rules.kernel)
_EXTRA = 2  # candidates beyond k taken from the fast search (runner-ups)
_BLOCK = 1 << 22  # elements of one temporary block on the torch path


def _centred(q: torch.Tensor, c: torch.Tensor, dtype: torch.dtype):
    """``(q - mu) s`` and ``(c - mu) s`` in ``dtype`` (mu: centre mean, s: a power of two
    that brings the centres' largest centred magnitude into [1, 2)), and ``s``.

    ``s`` and ``mu`` come from the centres only, so a query's answer never depends
    on the other queries (a shard gets the same answers as the whole pool). Every
    coordinate is within one rounding of its exact value, as :func:`_bound` assumes.
    """
    mu = c.to(torch.float64).mean(0)
    cc = c.to(torch.float64) - mu
    s = pow2_scale(float(cc.abs().max()), 0)  # the one rule, into [1, 2) always
    mu_s = mu * s
    qf = torch.empty(q.shape, dtype=dtype, device=q.device)
    step = max(1, _BLOCK // max(q.shape[1], 1))
    for i in range(0, q.shape[0], step):  # in row blocks: no wide copy of all queries
        # q s is exact (a power of two); the subtraction runs in float64, since mu s
        # rounded to float32 would be off by a rounding of |mu s|, not of |q s - mu s|
        # (a large common offset); queries far outside the centres' range are
        # clipped (no overflow in the fast dtype) and never certified (see _bound)
        blk = torch.mul(q[i:i + step].to(torch.float64), s).sub_(mu_s).clamp_(-2.0 ** 30,
                                                                            2.0 ** 30)
        qf[i:i + step] = blk.to(dtype)
    return qf, (cc * s).to(dtype), s


def _bound(qf: torch.Tensor, cf: torch.Tensor, inv_w: torch.Tensor, eps: float) -> torch.Tensor:
    """Per query, a bound on the rounding error of any fast (scaled) value.

    A fast value is a dot product of length D + 2 whose absolute products sum
    to at most ``2 (|q|^2 + |c|^2) / w``; its error, inputs' rounding (centring,
    float32 squared norms) included, stays below ``(3 D + 8) eps (|q|^2 + |c|^2) / w``;
    the bound uses ``4 (D + 8)``. ``|c|^2 >= 1`` for the largest centre after scaling,
    so the bound never falls below ``4 (D + 8) eps / w`` (subnormal rounding is far
    below it).
    """
    qn = torch.linalg.vector_norm(qf, dim=1).to(torch.float64).square()
    cmax = float(torch.linalg.vector_norm(cf, dim=1).max()) ** 2
    bound = 4.0 * (qf.shape[1] + 8) * eps * (qn + cmax) * float(inv_w.max())
    # queries far outside the centres' range (clipped) or NaN are never certified:
    # the brute force answers them
    return torch.where(torch.isfinite(qn) & (qn < 2.0 ** 40), bound,
                       torch.full_like(bound, float("inf")))


# Centres per GEMM block of the candidate search, and elements of one block (rows x
# centres): small on the CPU (the tests), large on CUDA (few launches at 1M x 1M).
_GEMM_COLS = 1 << 15
_GEMM_ELEMS = {"cpu": 1 << 22, "cuda": 1 << 27}


def _torch_candidates(qf, cf, inv_w, m):
    """(approx (N, m) float64, cand (N, m)) from the norm expansion (one float32 GEMM
    per block of queries and centres), smallest first.

    Blocked over the centres too, with a running top-m, so that a block of queries
    stays large when there are many centres (1M queries x 1M centres: 8 x 2^15
    queries per block on CUDA instead of a few rows per launch).
    """
    n, l = qf.shape[0], cf.shape[0]
    qsq = qf.pow(2).sum(1)
    csq = cf.pow(2).sum(1)
    iw = inv_w.to(qf.dtype)
    cols = min(l, _GEMM_COLS)
    step = max(1, _GEMM_ELEMS.get(qf.device.type, _GEMM_ELEMS["cuda"]) // cols)
    vals = torch.empty((n, m), dtype=torch.float64, device=qf.device)
    cand = torch.empty((n, m), dtype=torch.int64, device=qf.device)
    for s in range(0, n, step):
        best_v = best_i = None
        for c0 in range(0, l, cols):
            blk = torch.addmm(qsq[s:s + step, None] + csq[None, c0:c0 + cols], qf[s:s + step],
                              cf[c0:c0 + cols].T, alpha=-2.0).clamp_min_(0)
            blk *= iw[None, c0:c0 + cols]
            v, a = blk.topk(min(m, blk.shape[1]), dim=1, largest=False)
            a += c0
            if best_v is not None:  # merge with the best of the earlier centre blocks
                v, a = torch.cat([best_v, v], 1), torch.cat([best_i, a], 1)
                v, o = v.topk(m, dim=1, largest=False)
                a = a.gather(1, o)
            best_v, best_i = v, a
        vals[s:s + step], cand[s:s + step] = best_v.to(torch.float64), best_i
    return vals, cand


def _faiss_gpu_candidates(qf, cf, inv_w, m):
    """The same candidates from a faiss GPU flat index (host copies in and out)."""
    approx, cand = faiss_backend.nearest_weighted(qf.cpu().numpy(), cf.cpu().numpy(),
                                                  inv_w.cpu().numpy(), m, gpu=True)
    return (torch.from_numpy(approx).to(qf.device, torch.float64),
            torch.from_numpy(cand).to(qf.device))


def _candidate_eps(dt: torch.dtype, device: torch.device, faiss_gpu: bool) -> float:
    """Unit roundoff of the candidate GEMM: float64 2^-53, float32 2^-24, and the
    reduced-precision CUDA modes a training job may have switched on (TF32 2^-11,
    bfloat16 2^-8; faiss-gpu may use TF32), so the certificate stays valid. The fused
    kernel's rounds take its own unit roundoff instead (``nearest_triton.EPS``, 2^-24:
    IEEE float32 dot products whatever torch's matmul precision)."""
    if dt == torch.float64:
        return 2.0 ** -53
    if device.type != "cuda":
        return 2.0 ** -24
    prec = torch.get_float32_matmul_precision()
    if prec == "medium":
        return 2.0 ** -8
    if faiss_gpu or prec == "high" or torch.backends.cuda.matmul.allow_tf32:
        return 2.0 ** -11
    return 2.0 ** -24


_FUSED_FAILED: list[str] = []  # why the fused kernel failed to run, once per process


def _fused(dev: torch.device, dt: torch.dtype):
    """The fused kernel's module where it serves a search: float32 candidates on CUDA,
    triton importable (imported here, on first use: it is optional) and no failure
    earlier in this process; else None."""
    if dev.type != "cuda" or dt != torch.float32 or _FUSED_FAILED:
        return None
    try:
        from . import nearest_triton
    except ImportError:
        return None
    return nearest_triton


def _fused_candidates(fused, qf, cf, inv_w):
    """``fused.candidates`` (``(N, M)`` values and indices), or None where the kernel
    fails to compile or run (a GPU triton does not support): a warning, once, and the
    torch candidates from then on."""
    try:
        return fused.candidates(qf, cf, inv_w, fused.M)
    except Exception as err:  # noqa: BLE001 - any failure: the torch candidates serve
        _FUSED_FAILED.append(f"{type(err).__name__}: {str(err)[:300]}")
        warnings.warn("the fused nearest-centre kernel failed to run; the search takes "
                      f"the torch candidates instead ({_FUSED_FAILED[0]})", RuntimeWarning,
                      stacklevel=3)
        return None


def _torch_exact(q, c, inv_w, cand):
    """Exact float64 values of the candidates, from differences, in row blocks."""
    n, m = cand.shape
    out = torch.empty((n, m), dtype=torch.float64, device=q.device)
    step = max(1, _BLOCK // max(m * q.shape[1], 1))
    for s in range(0, n, step):
        cb = cand[s:s + step]
        diff = q[s:s + step, None, :].to(torch.float64) - c[cb].to(torch.float64)
        out[s:s + step] = diff.pow(2).sum(-1) * inv_w[cb]
    return out


def _torch_brute(q, c, inv_w, k, rows, vals, idx):
    """Exact k nearest of ``q[rows]`` from float64 differences, in blocks of rows."""
    l, d = c.shape
    c64 = c.to(torch.float64)
    step = max(1, _BLOCK // max(l * d, 1))
    order = torch.arange(l, device=q.device)
    for s in range(0, rows.numel(), step):
        r = rows[s:s + step]
        v = (q[r, None, :].to(torch.float64) - c64[None]).pow(2).sum(-1) * inv_w[None, :]
        # stable sort keeps the lowest index first among equal values
        srt, o = torch.sort(v, dim=1, stable=True)
        vals[r], idx[r] = srt[:, :k], order[o[:, :k]]


def _sort_candidates(exact, cand, k):
    """Order candidates by (value, index) and keep k."""
    o1 = torch.sort(cand, dim=1, stable=True).indices
    cand, exact = cand.gather(1, o1), exact.gather(1, o1)
    o2 = torch.sort(exact, dim=1, stable=True).indices
    return exact.gather(1, o2)[:, :k], cand.gather(1, o2)[:, :k]


METHODS = ("auto", "faiss", "torch")


def search(queries: torch.Tensor, centres: torch.Tensor, k: int = 1, *,
           weights: torch.Tensor | None = None,
           method: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest centres of every query under ``||q - c||^2 / w`` (exact).

    Args:
        queries: ``(N, D)`` float tensor (any device).
        centres: ``(L, D)`` float tensor on the same device, ``L >= k >= 1``.
        k: neighbours per query.
        weights: ``(L,)`` finite, strictly positive centre weights, or None (all 1).
        method: ``"auto"`` (the module's rule), ``"faiss"`` (faiss candidates, on a
            host copy for other devices) or ``"torch"`` (expansion candidates on the
            queries' device); every method returns the same exact answer.

    Returns:
        ``(values (N, k) float64, index (N, k) int64)`` on the queries' device,
        nearest first, lowest index first among equal values. Values are
        squared Euclidean distances divided by the centre's weight; they are
        ``inf`` (or 0) where that quotient leaves the float64 range. Indices
        are exact at any magnitude (:func:`search_scaled`).

    Example:
        >>> import torch
        >>> q = torch.tensor([[0.0], [2.9]]); c = torch.tensor([[1.0], [3.0], [-1.0]])
        >>> v, i = search(q, c, 2)
        >>> i.tolist(), [[round(a, 2) for a in row] for row in v.tolist()]
        ([[0, 2], [1, 0]], [[1.0, 1.0], [0.01, 3.61]])
    """
    v, i, e = search_scaled(queries, centres, k, weights=weights, method=method)
    return mul_pow2(v, e), i


def search_scaled(queries: torch.Tensor, centres: torch.Tensor, k: int = 1, *,
                  weights: torch.Tensor | None = None,
                  method: str = "auto") -> tuple[torch.Tensor, torch.Tensor, int]:
    """:func:`search` on values rescaled by a power of two: ``(values, index, e)``
    with the true values ``values * 2^e`` (``e`` is even without weights, so plain
    distances are ``sqrt(values) * 2^(e/2)``).

    Queries and centres share one feature scale (the one scaling rule, ``_core``, on
    their largest magnitude, float64 limits: the values are computed in float64),
    the weights one density scale; ``e = 0`` unless a magnitude lies outside
    those limits. Ratios of values (and the ranking) need no unscaling.

    Example:
        >>> import torch
        >>> q = torch.tensor([[0.0], [3e200]], dtype=torch.float64)
        >>> v, i, e = search_scaled(q, q[:1], 1)
        >>> i.tolist(), e > 0, float(v[1, 0].sqrt()) * 2.0 ** (e // 2)
        ([[0], [0]], True, 3e+200)
    """
    q, c = queries.detach(), centres.detach()
    dev = q.device
    if method not in METHODS:
        raise ValueError(f"search_backend must be one of {METHODS}; got {method!r}")
    e = 0
    # float32 and 16-bit values always lie inside the float64 limits: no scan, no copy
    if torch.float64 in (q.dtype, c.dtype) and q.numel() and c.numel():
        big = max(_absmax(q), _absmax(c))
        s = pow2_scale(big, SAFE_EXP[torch.float64])
        if s != 1.0:
            q = mul_pow2(q.to(torch.float64), pow2_exp(s))
            c = mul_pow2(c.to(torch.float64), pow2_exp(s))
            e = -2 * pow2_exp(s)
    if weights is None:
        inv_w = torch.ones(c.shape[0], dtype=torch.float64, device=dev)
    else:
        w = weights.detach().to(dev, torch.float64)
        ws = pow2_scale(float(w.max()) if w.numel() else 0.0, DENSITY_EXP)
        if ws != 1.0:
            w = mul_pow2(w, pow2_exp(ws))
            e += pow2_exp(ws)
        inv_w = 1.0 / w
    k = min(k, c.shape[0])
    if method == "auto":
        method = R.kernel("search", dev, c.shape[0], faiss=faiss_backend.available())
    if method == "torch":
        return (*_search_torch(q, c, inv_w, k), e)
    if method == "faiss":
        faiss_backend.require()
    with threads():  # "faiss" or "brute": the host path
        v, i = _search_cpu(q.cpu(), c.cpu(), inv_w.cpu(), k, faiss=method == "faiss")
    return v.to(dev), i.to(dev), e


def plain_distance(sq: torch.Tensor, e: int, metric: str = "euclidean") -> torch.Tensor:
    """Plain distances from :func:`search_scaled`'s unweighted values: ``sqrt(sq) 2^(e/2)``
    (Euclidean) or ``sq 2^e / 2`` (cosine, ``1 - cos`` on unit rows), unscaled after
    the square root, so they stay finite where their squares would not.

    Example:
        >>> import torch
        >>> float(plain_distance(torch.tensor([4.0], dtype=torch.float64), 2000)[0])
        2.1430172143725346e+301
    """
    if metric == "cosine":
        return mul_pow2(sq * 0.5, e)
    return mul_pow2(sq.sqrt(), e // 2)


def _fast_scale(inv_w: torch.Tensor) -> float | None:
    """The power of two that brings the largest 1/w into [1, 2), or None when the
    smallest would then fall below 2^-100 (the fast float32 values would underflow)."""
    wscale = pow2_below(float(inv_w.max()))
    return wscale if float(inv_w.min()) / wscale > 2.0 ** -100 else None


def _search_cpu(q, c, inv_w, k, faiss: bool = True):
    """faiss candidates (``faiss``: the rule's or the caller's choice) and numba brute
    force for every query they do not certify."""
    from .nearest_kernels import rescore  # numba loads on first use

    n, l = q.shape[0], c.shape[0]
    vals = np.empty((n, k), np.float64)
    idx = np.empty((n, k), np.int64)
    qn, cn = as_numpy(q), as_numpy(c)
    if qn.dtype != cn.dtype:
        qn, cn = qn.astype(np.float64), cn.astype(np.float64)
    iw = np.ascontiguousarray(inv_w.numpy())
    rows = np.arange(n, dtype=np.int64)
    m = min(l, k + _EXTRA)
    wscale = _fast_scale(inv_w)
    if faiss and n and m < l and wscale is not None:
        qf, cf, s = _centred(q, c, torch.float32)
        iws = inv_w / wscale
        approx, cand = faiss_backend.nearest_weighted(qf.numpy(), cf.numpy(), iws.numpy(), m)
        exact = np.empty(cand.shape, np.float64)
        rescore(qn, cn, iw, cand, exact)
        ev, ei = _sort_candidates(torch.from_numpy(exact), torch.from_numpy(cand), k)
        vals[:], idx[:] = ev.numpy(), ei.numpy()
        bound = _bound(qf, cf, iws, 2.0 ** -24).numpy()
        ok = approx[:, m - 1].astype(np.float64) - bound > vals[:, k - 1] * (s * s / wscale)
        rows = np.flatnonzero(~ok).astype(np.int64)
    if rows.size:
        brute_cpu(qn, cn, iw, k, rows, vals, idx)
    return torch.from_numpy(vals), torch.from_numpy(idx)


def brute_cpu(qn, cn, iw, k, rows, vals, idx) -> None:
    """The exact numba brute force for ``qn[rows]`` into ``vals``/``idx`` ``(N, k)``:
    the triangle-inequality version where the rule says it pays
    (:func:`densecore._rules.kernel`, ``"brute"``; the same values and indices)."""
    from .nearest_kernels import brute, brute_pruned, centre_gaps

    l = cn.shape[0]
    if k < l and R.kernel("brute", torch.device("cpu"), l, queries=rows.size) == "pruned":
        eps = (cn.shape[1] + 8) * 2.0 ** -52  # float64 sums of D squares, their roots
        brute_pruned(qn, cn, iw, k, rows, vals, idx, centre_gaps(cn, eps), eps)
    else:
        brute(qn, cn, iw, k, rows, vals, idx)


_MAX_CANDIDATES = 1024  # candidate rounds stop here; the rows left get the brute force


def _search_torch(q, c, inv_w, k, *, candidates=None):
    """GEMM candidates on the device, certified; uncertified queries retry with four
    times the candidates (duplicates or near-ties beyond ``k + 2``), and only those
    left at :data:`_MAX_CANDIDATES` get the float64 brute force over all centres.

    Candidates come from faiss-gpu for CUDA tensors where faiss has GPUs, else from
    the fused kernel (float32 on CUDA, ``m`` equal to its ``M``: :func:`_fused`) or
    torch (:func:`_torch_candidates`); ``candidates`` overrides the source (tests).
    Each round's certificate takes the unit roundoff of the source that ran.
    Runs on any device (the CPU too, which the tests use).
    """
    n, l = q.shape[0], c.shape[0]
    dev = q.device
    vals = torch.empty((n, k), dtype=torch.float64, device=dev)
    idx = torch.empty((n, k), dtype=torch.int64, device=dev)
    rows = torch.arange(n, device=dev)
    m = min(l, k + _EXTRA)
    wscale = _fast_scale(inv_w)
    if n and m < l and wscale is not None:
        dt = torch.float64 if q.dtype == torch.float64 else torch.float32
        qf, cf, s = _centred(q, c, dt)
        iws = inv_w / wscale
        fused = None
        if candidates is None:
            gpu = dev.type == "cuda" and dt == torch.float32 and faiss_backend.gpu_available()
            candidates = _faiss_gpu_candidates if gpu else _torch_candidates
            fused = None if gpu else _fused(dev, dt)
        else:
            gpu = False
        eps = _candidate_eps(dt, dev, gpu)
        while rows.numel() and m < l:
            sub = rows.numel() < n
            qr, qfr = (q[rows], qf[rows]) if sub else (q, qf)
            got = None
            if fused is not None and m == fused.M:
                got = _fused_candidates(fused, qfr, cf, iws)
            approx, cand = got if got is not None else candidates(qfr, cf, iws, m)
            e = fused.EPS if got is not None else eps
            ev, ei = _sort_candidates(_torch_exact(qr, c, inv_w, cand), cand, k)
            vals[rows], idx[rows] = ev, ei
            ok = approx[:, m - 1] - _bound(qfr, cf, iws, e) > ev[:, k - 1] * (s * s / wscale)
            rows = rows[~ok]  # one host sync per round
            if m >= _MAX_CANDIDATES:
                break
            m = min(4 * m, _MAX_CANDIDATES)
            if m >= l:
                break
    if rows.numel():
        _torch_brute(q, c, inv_w, k, rows, vals, idx)
    return vals, idx


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """A contiguous host float32/float64 copy (or view) of ``t`` ``(N, D)`` (16-bit ->
    float32), as the numba kernels take it.

    Example:
        >>> as_numpy(torch.ones(2, 1, dtype=torch.float16)).dtype
        dtype('float32')
    """
    t = t.detach().cpu()
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    return np.ascontiguousarray(t.numpy())
