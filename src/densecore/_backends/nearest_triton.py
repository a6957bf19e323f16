"""Fused candidates of the nearest-centre search: the ``M = 3`` smallest approximate
values per query (``k = 1`` plus two runner-ups) in one Triton kernel, without a
rows x centres temporary.

One program per block of :data:`BLOCK_Q` queries loops over the centres in blocks
of :data:`BLOCK_C`:

- the dot products ``q . c`` with ``tl.dot`` in float32, IEEE (no TF32 whatever
  torch's matmul precision: unit roundoff 2^-24, :data:`EPS`, the one the
  certificate in :mod:`densecore._backends.nearest` takes for this kernel), D read
  :data:`BLOCK_D` columns at a time (masked: any D, zeros add 0);
- the approximate value ``max(|q|^2 + |c|^2 - 2 q . c, 0) / w`` (the norm
  expansion of the squared Euclidean distance divided by the centre's weight;
  ``|q|^2`` summed in the kernel, ``|c|^2`` and ``1 / w`` float32 from the host),
  as :func:`densecore._backends.nearest._torch_candidates` computes it;
- a running top-3 per query in registers: the block's three smallest (value,
  index) pairs by three min-reductions, inserted into the running three by
  comparisons (strictly smaller displaces), so ties go to the lowest centre
  index: a later centre never displaces an equal earlier one, and within a block
  the lowest index comes first. A block where no query has a value below its
  current third is passed after one reduction.

Only the ``(N, 3)`` values and indices are written: memory O(N M), where the
torch path holds a block of rows x centres float32 values, their broadcast sum
of squared norms (2^27 float32 values each on CUDA: 1 GiB together).

Runs on CUDA tensors; on CPU tensors only under the Triton interpreter
(``TRITON_INTERPRET=1`` set before triton is imported, as the tests do; never by
this library).

Shape:
    queries ``(N, D)`` float32, centres ``(L, D)`` float32 (``L > 3``), inverse
    weights ``(L,)``; results ``(N, 3)`` float64 values and ``(N, 3)`` int64
    centre indices, smallest first.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["EPS", "M", "candidates"]

M = 3  # candidates per query: k = 1 (the greedy's labeled-set search) plus 2 runner-ups
EPS = 2.0 ** -24  # unit roundoff of the kernel's arithmetic (float32, IEEE dot products)

# Queries x centres per block, feature columns per tl.dot (8: the least a float32 tl.dot
# takes), warps and pipeline stages: 122 registers and no spills on sm_90 with triton
# 3.9 (test_kernels_compile_for_a_gpu_target prints them), where 4 warps took 184 to
# 255, 16 columns per dot spilled with 4 warps, and 3 stages (the default) raised 8
# warps to 170.
BLOCK_Q = 64
BLOCK_C = 64
BLOCK_D = 8
_WARPS = 8
_STAGES = 1


@triton.jit
def _insert(b, j, v1, v2, v3, i1, i2, i3):
    """Insert ``(b, j)`` into the sorted ``(v1, i1) <= (v2, i2) <= (v3, i3)`` (per query);
    only a strictly smaller value displaces, so an equal earlier index stays first."""
    c1 = b < v1
    c2 = b < v2
    c3 = b < v3
    nv3 = tl.where(c2, v2, tl.where(c3, b, v3))
    ni3 = tl.where(c2, i2, tl.where(c3, j, i3))
    nv2 = tl.where(c1, v1, tl.where(c2, b, v2))
    ni2 = tl.where(c1, i1, tl.where(c2, j, i2))
    nv1 = tl.where(c1, b, v1)
    ni1 = tl.where(c1, j, i1)
    return nv1, nv2, nv3, ni1, ni2, ni3


@triton.jit
def _next(val, cidx, b, j, BIG: tl.constexpr):
    """The smallest (value, index) pair of each row of ``val`` after ``(b, j)``."""
    after = (val > b[:, None]) | ((val == b[:, None]) & (cidx > j[:, None]))
    w = tl.where(after, val, float("inf"))
    nb = tl.min(w, 1)
    nj = tl.min(tl.where(after & (w == nb[:, None]), cidx, BIG), 1)
    return nb, nj


# n and l change from call to call without changing the code: not specialised on
@triton.jit(do_not_specialize=["n", "l"])
def _top3(q_ptr, c_ptr, csq_ptr, iw_ptr, out_v_ptr, out_i_ptr, n, l, D, stride_q, stride_c,
          BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr):
    BIG: tl.constexpr = 2147483647
    rows = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    rmask = rows < n
    qrow = q_ptr + rows.to(tl.int64)[:, None] * stride_q
    dk = tl.arange(0, BLOCK_D)
    qsq = tl.zeros((BLOCK_Q,), tl.float32)
    for d0 in range(0, D, BLOCK_D):
        qb = tl.load(qrow + (d0 + dk)[None, :], mask=rmask[:, None] & (d0 + dk < D)[None, :],
                     other=0.0)
        qsq += tl.sum(qb * qb, 1)
    inf = float("inf")
    v1 = tl.full((BLOCK_Q,), inf, tl.float32)
    v2 = v1
    v3 = v1
    i1 = tl.zeros((BLOCK_Q,), tl.int32)  # distinct valid indices (L > 3) until replaced
    i2 = i1 + 1
    i3 = i1 + 2
    for c0 in range(0, l, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        cmask = cols < l
        crow = c_ptr + cols.to(tl.int64)[None, :] * stride_c
        acc = tl.zeros((BLOCK_Q, BLOCK_C), tl.float32)
        for d0 in range(0, D, BLOCK_D):
            dm = d0 + dk < D
            qb = tl.load(qrow + (d0 + dk)[None, :], mask=rmask[:, None] & dm[None, :],
                         other=0.0)
            cb = tl.load(crow + (d0 + dk)[:, None], mask=dm[:, None] & cmask[None, :],
                         other=0.0)
            acc = tl.dot(qb, cb, acc, input_precision="ieee")
        csq = tl.load(csq_ptr + cols, mask=cmask, other=0.0)
        iw = tl.load(iw_ptr + cols, mask=cmask, other=0.0)
        val = tl.maximum(qsq[:, None] + csq[None, :] - 2.0 * acc, 0.0) * iw[None, :]
        # columns past L: +inf, never inserted (only a strictly smaller value is)
        val = tl.where(cmask[None, :], val, inf)
        cidx = cols[None, :] + tl.zeros((BLOCK_Q, BLOCK_C), tl.int32)
        b1 = tl.min(val, 1)
        if tl.sum((b1 < v3).to(tl.int32), 0) > 0:  # some query's top 3 changes
            j1 = tl.min(tl.where(val == b1[:, None], cidx, BIG), 1)
            b2, j2 = _next(val, cidx, b1, j1, BIG)
            b3, j3 = _next(val, cidx, b2, j2, BIG)
            v1, v2, v3, i1, i2, i3 = _insert(b1, j1, v1, v2, v3, i1, i2, i3)
            v1, v2, v3, i1, i2, i3 = _insert(b2, j2, v1, v2, v3, i1, i2, i3)
            v1, v2, v3, i1, i2, i3 = _insert(b3, j3, v1, v2, v3, i1, i2, i3)
    out = rows.to(tl.int64) * 3
    tl.store(out_v_ptr + out, v1.to(tl.float64), mask=rmask)
    tl.store(out_v_ptr + out + 1, v2.to(tl.float64), mask=rmask)
    tl.store(out_v_ptr + out + 2, v3.to(tl.float64), mask=rmask)
    tl.store(out_i_ptr + out, i1.to(tl.int64), mask=rmask)
    tl.store(out_i_ptr + out + 1, i2.to(tl.int64), mask=rmask)
    tl.store(out_i_ptr + out + 2, i3.to(tl.int64), mask=rmask)


def candidates(qf: torch.Tensor, cf: torch.Tensor, inv_w: torch.Tensor,
               m: int = M) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``m = 3`` smallest ``max(|q|^2 + |c|^2 - 2 q . c, 0) / w`` per query, float32.

    Args:
        qf: ``(N, D)`` float32 queries (centred and scaled by the caller).
        cf: ``(L, D)`` float32 centres on the same device, ``L > 3``.
        inv_w: ``(L,)`` inverse weights ``1 / w`` (any float dtype; used in float32).
        m: candidates per query; must be :data:`M`.

    Returns:
        ``(approx (N, 3) float64, cand (N, 3) int64)``, smallest first, the lowest
        centre index first among equal float32 values.
    """
    if m != M or cf.shape[0] <= M:
        raise ValueError(f"the fused kernel takes m = {M} candidates of more than {M} "
                         f"centres; got m = {m}, {cf.shape[0]} centres")
    n, d = qf.shape
    l = cf.shape[0]
    qf, cf = qf.contiguous(), cf.contiguous()
    csq = cf.pow(2).sum(1)
    iw = inv_w.to(device=qf.device, dtype=torch.float32).contiguous()
    vals = torch.empty((n, M), dtype=torch.float64, device=qf.device)
    cand = torch.empty((n, M), dtype=torch.int64, device=qf.device)
    if n:
        grid = (triton.cdiv(n, BLOCK_Q),)
        _top3[grid](qf, cf, csq, iw, vals, cand, n, l, d, qf.stride(0), cf.stride(0),
                    BLOCK_Q=BLOCK_Q, BLOCK_C=BLOCK_C, BLOCK_D=BLOCK_D, num_warps=_WARPS,
                    num_stages=_STAGES)
    return vals, cand
