"""Farthest-first engine in torch (CPU or CUDA), no host synchronisation per pick.

Per pick, the squared distance of every point to the new centre is computed
from coordinate differences (in row blocks through one buffer), never through
the ``||a||^2 - 2ab + ||b||^2`` expansion, so large offsets cannot cancel it
away, duplicates tie exactly and integer distances stay exact. ``r`` and
the densities are float64, so tiny or huge densities neither vanish nor
overflow in float32. The argmax stays on the device (no ``.item()``).

float16/bfloat16 features keep their storage on CUDA (half the bytes) and
are widened to float32 block by block (the same numbers as float32 features);
on the CPU the caller passes float32.

Shape:
    features ``(N, D)``; densities ``(N,)``; centres ``(L, D)``; ``r`` ``(N,)``.
"""

from __future__ import annotations

import torch

from .base import Engine as _Base
from .nearest import search

# Elements of one block of differences: small on the CPU (stays in cache), large on
# other devices (fewer kernel launches per pick).
_BLOCK_CPU = 1 << 18
_BLOCK_DEV = 1 << 24


def _sqdist(x: torch.Tensor, v: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
    """(N,) float64 squared Euclidean distances of the rows of ``x`` to ``v`` (D,),
    accumulated in the compute dtype (float32, or float64 for float64 features) from
    differences, block by block through ``buf`` (rows, D)."""
    n = x.shape[0]
    out = torch.empty(n, dtype=buf.dtype, device=x.device)
    v = v.to(buf.dtype)
    rows = buf.shape[0]
    for s in range(0, n, rows):
        b = buf[:min(rows, n - s)]
        torch.sub(x[s:s + rows], v, out=b)  # 16-bit storage is widened here
        b.square_()
        torch.sum(b, 1, out=out[s:s + rows])
    return out.to(torch.float64)


class Engine(_Base):
    """Algorithm 1 with one fused distance pass per pick, on any device.

    Args:
        x: ``(N, D)`` float tensor (float16/bfloat16 only on CUDA).
        dens: ``(N,)`` float64 densities on x's device.
        centres: ``(L, D)`` labeled points, L may be 0.
        cdens: ``(L,)`` float64 their densities.
        excluded: ``(N,)`` bool, in-pool labeled points.
        max_new: how many centres may still be added (unused: nothing is preallocated).
        weights: ``(N,)`` float64 candidate weights on x's device, or None: with them
            the engine picks ``argmax r * weight`` (typicality); radii stay ``r``.
    """

    weighted = True
    search_method = "torch"  # torch on the features' device, like the picks

    def __init__(self, x, dens, centres, cdens, excluded, max_new, weights=None):
        n = x.shape[0]
        dev = x.device
        self.x, self.dens = x, dens
        block = _BLOCK_CPU if dev.type == "cpu" else _BLOCK_DEV
        wd = torch.float64 if x.dtype == torch.float64 else torch.float32
        self.buf = torch.empty((max(1, min(n, block // max(x.shape[1], 1))), x.shape[1]),
                               dtype=wd, device=dev)
        if centres.shape[0] and n:
            v, _ = search(x, centres, 1, weights=cdens, method=self.search_method)
            r = v[:, 0]
        else:
            r = torch.full((n,), float("inf"), dtype=torch.float64, device=dev)
        self.r = torch.where(excluded, torch.full_like(r, -1.0), r)
        self.none = torch.tensor([-1.0, -1.0], dtype=torch.float64, device=dev)
        self.w = weights
        self.picks = 0

    def best(self) -> torch.Tensor:
        """``(2,)`` float64 ``(r, index)`` of the next pick on the device; ``(-1, -1)`` when
        nothing is left. Ties go to the lowest index (first maximum)."""
        if self.r.numel() == 0:
            return self.none
        score = self.r if self.w is None else self.r * self.w  # excluded: r = -1 < 0
        u = torch.argmax(score).reshape(1)  # a 1-element index: no ``.item()``
        pair = torch.cat([self.r.index_select(0, u), u.to(torch.float64)])
        return torch.where(pair[0] < 0, self.none, pair)

    def row(self, u: torch.Tensor) -> torch.Tensor:
        """``(D + 1,)`` float64: features of point ``u`` (0-d int64 tensor) and its density."""
        u1 = u.reshape(1)
        return torch.cat([self.x.index_select(0, u1)[0].to(torch.float64),
                          self.dens.index_select(0, u1)])

    def add_centre(self, vec: torch.Tensor, u) -> None:
        """Make ``vec`` ``(D + 1,)`` (features, density) a selected point; ``u`` (0-d
        int64 tensor or int) is its index in this pool, or -1 for a point held elsewhere."""
        self.picks += 1
        if self.r.numel() == 0:
            return
        u = torch.as_tensor(u, dtype=torch.int64, device=self.r.device).reshape(1)
        ui = u.clamp_min(0)
        self.r.index_put_((ui,), torch.where(u >= 0, torch.full_like(self.r[:1], -1.0),
                                             self.r.index_select(0, ui)))
        dist = _sqdist(self.x, vec[:-1], self.buf) / vec[-1]
        torch.minimum(self.r, dist, out=self.r)

    def run(self, k: int, out_idx: torch.Tensor, out_r: torch.Tensor) -> None:
        """Make ``k`` picks of this pool alone into ``out_idx``/``out_r`` (``(budget,)``
        int64 / float64 on the device)."""
        for _ in range(k):
            i = self.picks
            pair = self.best()
            u, ru = pair[1].to(torch.int64), pair[0]
            out_idx[i], out_r[i] = u, ru  # device-to-device copies
            self.add_centre(self.row(u), u)
