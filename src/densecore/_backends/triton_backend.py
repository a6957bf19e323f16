"""Farthest-first engine in Triton: two kernel launches per pick for a whole batch of pools.

Per pick, for every pool of the batch at once:

1. ``_update``: one program per tile of rows (a tile never crosses a pool)
   reads its pool's newest centre (a ``(D,)`` row in the features' storage
   dtype), streams the tile's features once (float32, float16, bfloat16 or
   float64 storage), widens each element to float64, and computes the squared
   Euclidean distance ``sum_d (x_d - c_d)^2`` in float64: the differences of
   float32-representable values are exact in float64 (their exponents differ
   by less than 29 in any data that does not already lose the smaller one) and
   so are their squares, so only the D-term sum rounds (relative error below
   ``D * 2^-53``). The distance is divided by the centre's float64 density and
   ``r = min(r, distance / density)`` is stored; picked and labeled points keep
   ``r = -1``. Each tile writes its largest ``r`` and the lowest index that
   has it.
2. ``_pick``: one program per pool scans its tiles' maxima and takes the
   largest ``r``, ties to the lowest index; it records the index and ``r``,
   sets ``r = -1`` there and copies the row and density into the pool's
   centre slot for the next ``_update``. A pool whose budget is spent (or
   with nothing left) is switched off on the device and its tiles are skipped.

Nothing in the pick loop reads a device value on the host: the step number is
the only argument that changes between launches.

Selection rule: the picks equal the float64 reference (Algorithm 1 in float64
on the same stored values, ``tests/reference.py``) wherever the competing
``r`` differ by more than about 1e-12 relative (the float64 sums of at most a
few thousand terms differ from the reference's by far less); exact ties (equal
float64 ``r``, e.g. duplicates or integer data) go to the lowest index. A
float32 sum of the same squares would get near-ties of 2^-24 relative wrong.

The initial ``r`` against the labeled set comes from the certified
nearest-centre search (:func:`densecore._backends.nearest.search`), once per
pool before the loop.

Runs on CUDA tensors; on CPU tensors only under the Triton interpreter
(``TRITON_INTERPRET=1`` in the environment before this module is imported,
as the tests do): the caller sets it, never this library.

Shape:
    features ``(N, D)`` per pool, concatenated ``(N_total, D)`` for a batch;
    densities and ``r`` ``(N_total,)`` float64; per-pool arrays ``(P,)``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .base import Engine as _Base
from .nearest import search

_ROWS_X_COLS = 4096  # elements of one tile's (rows x feature-chunk) block


def interpreted() -> bool:
    """True when this module's kernels run in Triton's interpreter (on CPU tensors):
    ``TRITON_INTERPRET=1`` was set when the module was imported."""
    return not isinstance(_update, triton.runtime.JITFunction)


@triton.jit
def _update(x_ptr, r_ptr, w_ptr, cen_ptr, cden_ptr, live_ptr, t_start_ptr, t_end_ptr,
            t_pool_ptr, t_r_ptr, t_i_ptr, D, stride_x, UPDATE: tl.constexpr,
            WEIGHTED: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    t = tl.program_id(0)
    p = tl.load(t_pool_ptr + t)
    if tl.load(live_ptr + p) != 0:
        start = tl.load(t_start_ptr + t)
        end = tl.load(t_end_ptr + t)
        rows = start + tl.arange(0, BLOCK_N).to(tl.int64)
        m = rows < end
        r = tl.load(r_ptr + rows, mask=m, other=-2.0)
        if UPDATE:
            acc = tl.zeros([BLOCK_N], dtype=tl.float64)
            for d0 in range(0, D, BLOCK_D):
                cols = d0 + tl.arange(0, BLOCK_D)
                cm = cols < D
                c = tl.load(cen_ptr + p * D + cols, mask=cm, other=0.0).to(tl.float64)
                xv = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :],
                             mask=m[:, None] & cm[None, :], other=0.0).to(tl.float64)
                diff = tl.where(cm[None, :], xv - c[None, :], 0.0)
                acc += tl.sum(diff * diff, axis=1)
            r = tl.minimum(r, acc / tl.load(cden_ptr + p))  # -1 (taken) and -2 stay
            tl.store(r_ptr + rows, r, mask=m)
        if WEIGHTED:  # the weight hook: the tile's largest r * w (taken points stay < 0)
            w = tl.load(w_ptr + rows, mask=m, other=1.0)
            r = tl.where(r >= 0, r * w, r)
        best = tl.max(r, axis=0)
        tl.store(t_r_ptr + t, best)
        tl.store(t_i_ptr + t, tl.min(tl.where(r == best, rows, end), axis=0))


@triton.jit
def _pick(x_ptr, dens_ptr, r_ptr, cen_ptr, cden_ptr, live_ptr, p_lo_ptr, p_hi_ptr,
          offset_ptr, budget_ptr, forced_ptr, out_off_ptr, out_idx_ptr, out_r_ptr,
          t_r_ptr, t_i_ptr, step, n_total, D, stride_x, FORCED: tl.constexpr,
          BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    p = tl.program_id(0)
    if (tl.load(live_ptr + p) != 0) & (step < tl.load(budget_ptr + p)):
        lo = tl.load(p_lo_ptr + p)
        hi = tl.load(p_hi_ptr + p)
        acc_r = tl.full([BLOCK_T], -3.0, tl.float64)
        acc_i = tl.zeros([BLOCK_T], dtype=tl.int64)
        for t0 in range(lo, hi, BLOCK_T):  # tiles in index order: ">" keeps the first
            ts = t0 + tl.arange(0, BLOCK_T)
            tm = ts < hi
            tr = tl.load(t_r_ptr + ts, mask=tm, other=-3.0)
            ti = tl.load(t_i_ptr + ts, mask=tm, other=0)
            better = tr > acc_r
            acc_r = tl.where(better, tr, acc_r)
            acc_i = tl.where(better, ti, acc_i)
        best_r = tl.max(acc_r, axis=0)
        best_i = tl.min(tl.where(acc_r == best_r, acc_i, n_total), axis=0)
        if FORCED:
            f = tl.load(forced_ptr + p)
            fu = tl.load(offset_ptr + p) + f
            best_r = tl.where(f >= 0, tl.load(r_ptr + fu, mask=f >= 0, other=-3.0), best_r)
            best_i = tl.where(f >= 0, fu, best_i)
        if best_r >= 0:
            o = tl.load(out_off_ptr + p) + step
            tl.store(out_idx_ptr + o, best_i - tl.load(offset_ptr + p))
            tl.store(out_r_ptr + o, tl.load(r_ptr + best_i))  # r, also when weighted
            tl.store(r_ptr + best_i, -1.0)
            for d0 in range(0, D, BLOCK_D):
                cols = d0 + tl.arange(0, BLOCK_D)
                cm = cols < D
                tl.store(cen_ptr + p * D + cols,
                         tl.load(x_ptr + best_i * stride_x + cols, mask=cm), mask=cm)
            tl.store(cden_ptr + p, tl.load(dens_ptr + best_i))
        else:  # nothing left to pick
            tl.store(live_ptr + p, 0)
    else:
        tl.store(live_ptr + p, 0)


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


class _Batch:
    """The device state of P pools: features concatenated, ``r``, tiles, centre slots."""

    def __init__(self, inputs: list[dict]):
        dev = inputs[0]["x"].device
        if dev.type == "cpu" and not interpreted():
            raise ValueError("the triton engine needs CUDA tensors (or TRITON_INTERPRET=1 "
                             "set before densecore is imported, for the interpreter)")
        xs = [i["x"] for i in inputs]
        self.x = (xs[0] if len(xs) == 1 else torch.cat(xs)).contiguous()
        self.dens = torch.cat([i["dens"] for i in inputs]).contiguous()
        ws = [i.get("weights") for i in inputs]
        self.w = None if any(w is None for w in ws) else torch.cat(ws).to(
            device=dev, dtype=torch.float64).contiguous()
        self.d = self.x.shape[1]
        sizes = [t.shape[0] for t in xs]
        self.block_d = min(64, _pow2(max(self.d, 1)))
        self.block_n = max(16, _ROWS_X_COLS // self.block_d)
        rs, starts, ends, pools, lo, hi, offs = [], [], [], [], [], [], []
        off = 0
        for p, (inp, n) in enumerate(zip(inputs, sizes)):
            rs.append(_initial_r(inp))
            lo.append(len(starts))
            for s in range(0, n, self.block_n):
                starts.append(off + s)
                ends.append(off + min(n, s + self.block_n))
                pools.append(p)
            hi.append(len(starts))
            offs.append(off)
            off += n
        self.n_total = off
        i64 = dict(dtype=torch.int64, device=dev)
        self.r = torch.cat(rs).contiguous()
        self.t_start, self.t_end = torch.tensor(starts, **i64), torch.tensor(ends, **i64)
        self.t_pool = torch.tensor(pools, **i64)
        self.p_lo, self.p_hi = torch.tensor(lo, **i64), torch.tensor(hi, **i64)
        self.offset = torch.tensor(offs, **i64)
        self.n_tiles, self.n_pools = len(starts), len(inputs)
        self.block_t = min(1024, _pow2(max(1, max(h - l for l, h in zip(lo, hi)))))
        self.t_r = torch.empty(max(1, self.n_tiles), dtype=torch.float64, device=dev)
        self.t_i = torch.empty(max(1, self.n_tiles), **i64)
        self.cen = torch.zeros((self.n_pools, max(self.d, 1)), dtype=self.x.dtype, device=dev)
        self.cden = torch.ones(self.n_pools, dtype=torch.float64, device=dev)
        self.live = torch.ones(self.n_pools, dtype=torch.int32, device=dev)
        self.update(first=True)

    def update(self, first: bool = False) -> None:
        """Lower ``r`` with each live pool's centre slot (only the tiles' maxima when
        ``first``)."""
        if self.n_tiles == 0:
            return
        _update[(self.n_tiles,)](self.x, self.r, self.r if self.w is None else self.w,
                                 self.cen, self.cden, self.live, self.t_start, self.t_end,
                                 self.t_pool, self.t_r, self.t_i, self.d, self.x.stride(0),
                                 UPDATE=not first, WEIGHTED=self.w is not None,
                                 BLOCK_N=self.block_n, BLOCK_D=self.block_d)

    def pick(self, step: int, budget, forced, out_off, out_idx, out_r) -> None:
        """Pick number ``step`` of every live pool with ``step < budget``."""
        _pick[(self.n_pools,)](self.x, self.dens, self.r, self.cen, self.cden, self.live,
                               self.p_lo, self.p_hi, self.offset, budget, forced, out_off,
                               out_idx, out_r, self.t_r, self.t_i, step, self.n_total,
                               self.d, self.x.stride(0), FORCED=forced is not None,
                               BLOCK_T=self.block_t, BLOCK_D=self.block_d)


def _initial_r(inp: dict) -> torch.Tensor:
    """``(N,)`` float64 ``r`` of one pool against its labeled centres, -1 where excluded."""
    x, centres = inp["x"], inp["centres"]
    n = x.shape[0]
    if centres.shape[0] and n:
        r = search(x, centres, 1, weights=inp["cdens"],
                   method=Engine.search_method)[0][:, 0].to(torch.float64)
    else:
        r = torch.full((n,), float("inf"), dtype=torch.float64, device=x.device)
    return torch.where(inp["excluded"], torch.full_like(r, -1.0), r)


class Engine(_Base):
    """Algorithm 1 on one pool with the batch kernels (a batch of one).

    Same interface as every engine (:mod:`densecore.engines`); :meth:`run_batch`
    runs many pools per launch.

    Args:
        x: ``(N, D)`` float tensor on CUDA (float16/bfloat16/float32/float64).
        dens: ``(N,)`` float64 densities on x's device.
        centres: ``(L, D)`` labeled points, L may be 0.
        cdens: ``(L,)`` float64 their densities.
        excluded: ``(N,)`` bool, in-pool labeled points.
        max_new: how many centres may still be added.
        weights: ``(N,)`` float64 candidate weights, or None: with them the engine picks
            ``argmax r * weight`` (typicality: the tiles' maxima are of ``r * w``);
            radii stay ``r``.
    """

    devices = ("cuda",)  # CPU tensors only under TRITON_INTERPRET=1 (slow)
    half_on_cpu = True  # 16-bit storage is kept (the interpreter runs CPU tensors)
    search_method = "torch"  # the initial search: torch on the features' device
    weighted = True  # takes the typicality weight hook

    def __init__(self, x, dens, centres, cdens, excluded, max_new, weights=None):
        self.b = _Batch([dict(x=x, dens=dens, centres=centres, cdens=cdens,
                              excluded=excluded, weights=weights)])
        dev = x.device
        self.budget = torch.tensor([1 << 62], dtype=torch.int64, device=dev)
        self.zero = torch.zeros(1, dtype=torch.int64, device=dev)
        self.none = torch.tensor([-1.0, -1.0], dtype=torch.float64, device=dev)
        self.picks = 0

    def best(self) -> torch.Tensor:
        """``(2,)`` float64 ``(r, index)`` of the next pick on the device; ``(-1, -1)`` when
        nothing is left. Ties go to the lowest index."""
        b = self.b
        if b.n_total == 0:
            return self.none
        j = torch.argmax(b.t_r[:b.n_tiles]).reshape(1)  # tiles in index order: the first
        u = b.t_i.index_select(0, j)
        pair = torch.cat([b.r.index_select(0, u), u.double()])  # r, also when weighted
        return torch.where(b.t_r.index_select(0, j) < 0, self.none, pair)

    def row(self, u: torch.Tensor) -> torch.Tensor:
        """``(D + 1,)`` float64: features of point ``u`` (0-d int64 tensor) and its density."""
        u1 = u.reshape(1)
        return torch.cat([self.b.x.index_select(0, u1)[0].to(torch.float64),
                          self.b.dens.index_select(0, u1)])

    def add_centre(self, vec: torch.Tensor, u) -> None:
        """Make ``vec`` ``(D + 1,)`` (features, density) a selected point; ``u`` (0-d
        int64 tensor or int) is its index in this pool, or -1 for a point held elsewhere."""
        self.picks += 1
        b = self.b
        if b.n_total == 0:
            return
        u = torch.as_tensor(u, dtype=torch.int64, device=b.r.device).reshape(1)
        ui = u.clamp_min(0)
        b.r.index_put_((ui,), torch.where(u >= 0, torch.full_like(b.r[:1], -1.0),
                                          b.r.index_select(0, ui)))
        b.cen[0].copy_(vec[:-1])
        b.cden.copy_(vec[-1:])
        b.live.fill_(1)
        b.update()

    def run(self, k: int, out_idx: torch.Tensor, out_r: torch.Tensor, first: int = -1) -> None:
        """Make ``k`` picks of this pool into ``out_idx``/``out_r`` (``(budget,)`` int64 /
        float64 on the device); ``first`` (>= 0) forces the very first pick."""
        forced = None
        for _ in range(k):
            if self.picks == 0 and first >= 0:
                forced = torch.tensor([first], dtype=torch.int64, device=out_idx.device)
            self.b.pick(self.picks, self.budget, forced, self.zero, out_idx, out_r)
            self.b.update()
            self.picks += 1
            forced = None

    @staticmethod
    def run_batch(inputs: list[dict], budgets: list[int], firsts: list[int]):
        """Run P pools together: ``[(indices (budget_p,) int64, radii float64)]``.

        Per pick two launches for all pools (``_update`` over every live pool's
        tiles, then ``_pick``); the host only counts steps. ``inputs`` are the
        engine inputs of :func:`densecore.greedy.prepare`, one dict per pool.
        """
        dev = inputs[0]["x"].device
        i64 = dict(dtype=torch.int64, device=dev)
        total = sum(budgets)
        out_idx = torch.full((max(total, 1),), -1, **i64)
        out_r = torch.full((max(total, 1),), -1.0, dtype=torch.float64, device=dev)
        starts = [0]
        for k in budgets:
            starts.append(starts[-1] + k)
        steps = max(budgets, default=0)
        if steps:
            b = _Batch(inputs)
            budget_t = torch.tensor(budgets, **i64)
            forced = (torch.tensor(firsts, **i64) if any(f >= 0 for f in firsts) else None)
            out_off = torch.tensor(starts[:-1], **i64)
            for step in range(steps):
                b.pick(step, budget_t, forced if step == 0 else None, out_off, out_idx, out_r)
                if step + 1 < steps:
                    b.update()
        return [(out_idx[s:e], out_r[s:e]) for s, e in zip(starts[:-1], starts[1:])]
