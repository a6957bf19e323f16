"""Farthest-first engine in Triton: one kernel launch per pick for a whole batch of pools.

Per pick, for every pool of the batch at once, one launch of ``_update``:

1. One program per tile of rows (a tile never crosses a pool)
   reads its pool's newest centre (a ``(D,)`` row in the features' storage
   dtype), streams the tile's features once (float32, float16, bfloat16 or
   float64 storage), widens each element to float64, and computes the squared
   Euclidean distance ``sum_d (x_d - c_d)^2`` in float64: the differences of
   float32-representable values are exact in float64 (their exponents differ
   by less than 29 in any data that does not already lose the smaller one) and
   so are their squares, so only the D-term sum rounds (relative error below
   ``D * 2^-53``). The distance is divided by the centre's float64 density and
   ``r = min(r, distance / density)`` is stored where it fell; picked and
   labeled points keep ``r = -1``. Each tile (256 rows, read 512 elements at a
   time by 8 warps: at most 64 registers per thread, no spills on sm_90) writes
   its largest ``r`` and the lowest index that has it. The features are copied
   with D zero-padded to a multiple of 16 (exact: zeros add 0), so rows are
   16-byte aligned and no column mask is needed. The tile table is built on
   the device: one int64 descriptor per tile (one load where there were
   three), bits ``62..29`` the tile's first row in the batch (34 bits: at
   most 2^34 rows in a batch), ``28..20`` its row count (9 bits: 1 to 256),
   ``19..0`` its pool (20 bits: at most 2^20 = 1,048,576 pools); bit 63
   stays 0. A batch beyond these fields is refused with a ValueError before
   anything is allocated.

   Certified tile skipping (fewer bytes per pick; unweighted picks only): each
   tile keeps a ball, its rows' mean ``m_T`` and a radius ``rho_T`` (rounded
   up), built once per batch. A tile whose lower bound
   ``(||c - m_T|| - rho_T)^2 / d_c`` exceeds its largest ``r`` (with a margin
   of 1e-9, far above the float64 roundings) cannot change: its features are
   not read and its maximum stands, unless the pool's last pick lies in it.
   Skipping changes no ``r``, so the picks (ties too) are those without it.
2. The pick (``_pick_pool``): each tile program counts itself done on its
   pool's counter (an atomic add, acquire-release at GPU scope); the last one
   scans the pool's tile maxima (volatile loads) and takes the largest ``r``,
   ties to the lowest index; it records the index and ``r``, sets ``r = -1``
   there and copies the row and density into the pool's centre slot for the
   next launch, which lowers ``r`` with it first. A pool whose budget is spent
   (or with nothing left) is switched off on the device and its tiles are
   skipped.

Nothing in the pick loop reads a device value on the host: the step number is
the only argument that changes between launches, and the kernel is not
specialised on it (one compiled kernel for every pick).

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

# A tile is _TILE_N rows of one pool (the pick scans one maximum per tile); the update
# reads it in blocks of _ROWS_X_COLS elements (rows x feature columns) with _WARPS warps
# (2 float64 values per thread and array) and the pick is a separate (noinline)
# function: 54-64 registers and no spills on sm_90 with triton 3.6 and 3.9
# (test_kernels_compile_for_a_gpu_target prints them), where 4,096-element blocks with 4
# warps took all 255 registers and spilled, and 1,024-element blocks took 125 on 3.6.
_TILE_N = 256
_ROWS_X_COLS = 512
_WARPS = 8
_BALL_ELEMS = 1 << 22  # elements of one float64 block when the tiles' balls are built
# The tile descriptor (int64, bit 63 zero): start << _START_SHIFT | count << _POOL_BITS | pool
_POOL_BITS, _COUNT_BITS = 20, 9  # a count is 1 to _TILE_N = 256 rows
_START_SHIFT = _POOL_BITS + _COUNT_BITS  # 34 bits of start row remain below bit 63
_MAX_POOLS, _MAX_ROWS = 1 << _POOL_BITS, 1 << (63 - _START_SHIFT)
assert _TILE_N < 1 << _COUNT_BITS
# the kernel's copies (a kernel reads only constexpr globals)
_K_POOL_BITS, _K_START_SHIFT = tl.constexpr(_POOL_BITS), tl.constexpr(_START_SHIFT)
_K_POOL_MASK, _K_COUNT_MASK = tl.constexpr(_MAX_POOLS - 1), tl.constexpr((1 << _COUNT_BITS) - 1)


def _layout(d: int) -> tuple[int, int, int]:
    """``(padded D, BLOCK_D, BLOCK_N)`` for ``d`` features: D rounded up to a multiple of
    16 (to a power of two below 16) so that every row is 16-byte aligned and BLOCK_D
    (the largest power of two up to 64 dividing it) needs no column mask; zero columns
    add exactly 0 to every squared distance."""
    d = max(int(d), 1)
    step = 16 if d >= 16 else _pow2(d)
    dp = -(-d // step) * step
    block_d = 64
    while dp % block_d:
        block_d //= 2
    return dp, block_d, max(1, min(_TILE_N, _ROWS_X_COLS // block_d))


def interpreted() -> bool:
    """True when this module's kernels run in Triton's interpreter (on CPU tensors):
    ``TRITON_INTERPRET=1`` was set when the module was imported."""
    return not isinstance(_update, triton.runtime.JITFunction)


# ``step`` and ``n_total`` change between launches (or calls) without changing the code:
# not specialised on (== 1, divisible by 16), so one compiled kernel serves every pick
@triton.jit(do_not_specialize=["step", "n_total"])
def _update(x_ptr, r_ptr, w_ptr, cen_ptr, cden_ptr, live_ptr, t_desc_ptr, t_r_ptr,
            t_i_ptr, tm_ptr, rho_ptr, last_ptr, skipped_ptr, dens_ptr, cnt_ptr, p_lo_ptr,
            p_hi_ptr, offset_ptr, budget_ptr, forced_ptr, out_off_ptr, out_idx_ptr,
            out_r_ptr, step, n_total, D, stride_x,
            UPDATE: tl.constexpr, WEIGHTED: tl.constexpr, SKIP: tl.constexpr,
            PICK: tl.constexpr, FORCED: tl.constexpr, TILE_N: tl.constexpr,
            BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr):
    # D is a multiple of BLOCK_D (the features are zero-padded, _layout): no column mask.
    # The tile's TILE_N rows are read BLOCK_N at a time, so that a thread holds a few
    # float64 values (no spills) while the tile table stays short.
    t = tl.program_id(0)
    desc = tl.load(t_desc_ptr + t)  # start | count | pool (module docstring)
    p = desc & _K_POOL_MASK
    if tl.load(live_ptr + p) != 0:
        start = desc >> _K_START_SHIFT
        end = start + ((desc >> _K_POOL_BITS) & _K_COUNT_MASK)
        go = True
        if SKIP:  # certified skip: no row of the tile can get a lower r from this centre
            acc_c = tl.zeros([BLOCK_D], dtype=tl.float64)
            for d0 in range(0, D, BLOCK_D):
                cols = d0 + tl.arange(0, BLOCK_D)
                dc = (tl.load(cen_ptr + p * D + cols).to(tl.float64)
                      - tl.load(tm_ptr + t * D + cols))
                acc_c += dc * dc
            # every row is at least ||c - m_T|| - rho_T from the centre (triangle
            # inequality), so its new r is at least gap^2 / d_c; the margin 1e-9 is far
            # above the float64 roundings of these sums, so a skip changes no r
            gap = tl.maximum(tl.sqrt(tl.sum(acc_c, axis=0)) - tl.load(rho_ptr + t), 0.0)
            last = tl.load(last_ptr + p)  # the tile of the last pick rescans its maximum
            go = (((gap * gap / tl.load(cden_ptr + p)) * (1.0 - 1e-9) <= tl.load(t_r_ptr + t))
                  | ((last >= start) & (last < end)))
        if go:
            _tile(x_ptr, r_ptr, w_ptr, cen_ptr, cden_ptr, t_r_ptr, t_i_ptr, p, t, start, end,
                  D, stride_x, UPDATE, WEIGHTED, TILE_N, BLOCK_N, BLOCK_D)
        else:
            tl.atomic_add(skipped_ptr, 1, sem="relaxed")  # tiles not read (benchmarks)
        if PICK:  # the pool's last tile to finish makes the pick: one launch per pick
            lo = tl.load(p_lo_ptr + p)
            hi = tl.load(p_hi_ptr + p)
            # every thread's stores of this tile come before the count (barrier), the count
            # is acq_rel at GPU scope: the last one sees every tile's maximum
            tl.debug_barrier()
            done = tl.atomic_add(cnt_ptr + p, 1, sem="acq_rel", scope="gpu")
            if done == hi - lo - 1:
                tl.store(cnt_ptr + p, 0)  # for the next launch
                _pick_pool(x_ptr, dens_ptr, r_ptr, cen_ptr, cden_ptr, live_ptr, lo, hi, p,
                           offset_ptr, budget_ptr, forced_ptr, out_off_ptr, out_idx_ptr,
                           out_r_ptr, t_r_ptr, t_i_ptr, last_ptr, step, n_total, D, stride_x,
                           FORCED, BLOCK_T, BLOCK_D)


@triton.jit
def _tile(x_ptr, r_ptr, w_ptr, cen_ptr, cden_ptr, t_r_ptr, t_i_ptr, p, t, start, end, D,
          stride_x, UPDATE: tl.constexpr, WEIGHTED: tl.constexpr, TILE_N: tl.constexpr,
          BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """Lower ``r`` over one tile's rows (when UPDATE) and store the tile's maximum."""
    best = tl.full([], -3.0, tl.float64)
    best_i = end
    for r0 in range(0, TILE_N, BLOCK_N):
        rows = start + r0 + tl.arange(0, BLOCK_N).to(tl.int64)
        m = rows < end
        r = tl.load(r_ptr + rows, mask=m, other=-2.0)
        if UPDATE:
            acc = tl.zeros([BLOCK_N], dtype=tl.float64)
            for d0 in range(0, D, BLOCK_D):
                cols = d0 + tl.arange(0, BLOCK_D)
                c = tl.load(cen_ptr + p * D + cols).to(tl.float64)
                xv = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :],
                             mask=m[:, None], other=0.0).to(tl.float64)
                diff = xv - c[None, :]
                acc += tl.sum(diff * diff, axis=1)
            v = acc / tl.load(cden_ptr + p)
            fell = v < r  # -1 (taken) and -2 (outside) never fall
            r = tl.where(fell, v, r)
            tl.store(r_ptr + rows, r, mask=m & fell)  # r written only where it fell
        if WEIGHTED:  # the weight hook: the tile's largest r * w (taken stay < 0)
            w = tl.load(w_ptr + rows, mask=m, other=1.0)
            r = tl.where(r >= 0, r * w, r)
        bm = tl.max(r, axis=0)
        bi = tl.min(tl.where(r == bm, rows, end), axis=0)
        take = bm > best  # strictly: an earlier block (lower index) keeps a tie
        best_i = tl.where(take, bi, best_i)
        best = tl.where(take, bm, best)
    tl.store(t_r_ptr + t, best)
    tl.store(t_i_ptr + t, best_i)


@triton.jit(noinline=True)
def _pick_pool(x_ptr, dens_ptr, r_ptr, cen_ptr, cden_ptr, live_ptr, lo, hi, p, offset_ptr,
               budget_ptr, forced_ptr, out_off_ptr, out_idx_ptr, out_r_ptr, t_r_ptr, t_i_ptr,
               last_ptr, step, n_total, D, stride_x, FORCED: tl.constexpr,
               BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr):
    """Pick ``step`` of pool ``p`` from its tiles ``lo:hi`` (the largest ``r``, ties to
    the lowest index): record it, take it out, copy it into the centre slot."""
    if step < tl.load(budget_ptr + p):
        acc_r = tl.full([BLOCK_T], -3.0, tl.float64)
        acc_i = tl.zeros([BLOCK_T], dtype=tl.int64)
        for t0 in range(lo, hi, BLOCK_T):  # tiles in index order: ">" keeps the first
            ts = t0 + tl.arange(0, BLOCK_T)
            tm = ts < hi
            tr = tl.load(t_r_ptr + ts, mask=tm, other=-3.0, volatile=True)  # not from L1
            ti = tl.load(t_i_ptr + ts, mask=tm, other=0, volatile=True)
            better = tr > acc_r
            acc_r = tl.where(better, tr, acc_r)
            acc_i = tl.where(better, ti, acc_i)
        best_r = tl.max(acc_r, axis=0)
        best_i = tl.min(tl.where(acc_r == best_r, acc_i, n_total), axis=0)
        if FORCED:
            f = tl.load(forced_ptr + p)
            fu = tl.load(offset_ptr + p) + f
            best_r = tl.where(f >= 0, tl.load(r_ptr + fu, mask=f >= 0, other=-3.0,
                                              volatile=True), best_r)
            best_i = tl.where(f >= 0, fu, best_i)
        if best_r >= 0:
            o = tl.load(out_off_ptr + p) + step
            tl.store(out_idx_ptr + o, best_i - tl.load(offset_ptr + p))
            # r, also when weighted (written by another tile in this launch: not from L1)
            tl.store(out_r_ptr + o, tl.load(r_ptr + best_i, volatile=True))
            tl.store(r_ptr + best_i, -1.0)
            tl.store(last_ptr + p, best_i)  # its tile rescans its maximum next update
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
        _check_fields([t.shape[0] for t in xs])  # before any copy
        self.x = (xs[0] if len(xs) == 1 else torch.cat(xs)).contiguous()
        self.dens = torch.cat([i["dens"] for i in inputs]).contiguous()
        ws = [i.get("weights") for i in inputs]
        self.w = None if any(w is None for w in ws) else torch.cat(ws).to(
            device=dev, dtype=torch.float64).contiguous()
        self.d = self.x.shape[1]
        sizes = [t.shape[0] for t in xs]
        self.dp, self.block_d, self.block_n = _layout(self.d)
        if self.dp != self.d:  # zero columns: the same distances, no column mask
            self.x = torch.nn.functional.pad(self.x, (0, self.dp - self.d))
        self.r = torch.cat([_initial_r(inp) for inp in inputs]).contiguous()
        self.n_total, self.n_pools = sum(sizes), len(inputs)
        per_pool = [-(-n // _TILE_N) for n in sizes]  # tiles per pool (host ints)
        self.n_tiles = sum(per_pool)
        self.block_t = min(1024, _pow2(max(1, max(per_pool, default=1))))
        self.t_desc, self.p_lo, self.p_hi, self.offset = _tiles(sizes, dev)
        self.t_r = torch.empty(max(1, self.n_tiles), dtype=torch.float64, device=dev)
        self.t_i = torch.empty(max(1, self.n_tiles), dtype=torch.int64, device=dev)
        self.cen = torch.zeros((self.n_pools, self.dp), dtype=self.x.dtype, device=dev)
        self.cden = torch.ones(self.n_pools, dtype=torch.float64, device=dev)
        self.live = torch.ones(self.n_pools, dtype=torch.int32, device=dev)
        self.last = torch.full((self.n_pools,), -1, dtype=torch.int64, device=dev)
        self.skipped = torch.zeros(1, dtype=torch.int64, device=dev)
        self.cnt = torch.zeros(self.n_pools, dtype=torch.int32, device=dev)
        # certified tile skipping needs argmax r (not r * w: the weight hook reads all)
        self.skip = self.w is None and self.n_tiles > 0
        self.tm, self.rho = (_tile_balls(self.x, self.t_desc, self.n_tiles)
                             if self.skip else (self.r, self.r))
        self.update(first=True)

    def update(self, first: bool = False) -> None:
        """Lower ``r`` with each live pool's centre slot (only the tiles' maxima when
        ``first``)."""
        self._launch(0, not first, False, None, None, None, None, None)

    def step(self, step: int, update: bool, budget, forced, out_off, out_idx, out_r) -> None:
        """One launch: lower ``r`` with each live pool's centre slot (when ``update``),
        then pick number ``step`` of every live pool with ``step < budget``."""
        self._launch(step, update, True, budget, forced, out_off, out_idx, out_r)

    def _launch(self, step, update, pick, budget, forced, out_off, out_idx, out_r) -> None:
        if self.n_tiles == 0:
            return
        i64 = self.t_desc  # a stand-in for the int64 pointers a launch without pick ignores
        _update[(self.n_tiles,)](
            self.x, self.r, self.r if self.w is None else self.w, self.cen, self.cden,
            self.live, self.t_desc, self.t_r, self.t_i, self.tm, self.rho, self.last,
            self.skipped, self.dens, self.cnt, self.p_lo, self.p_hi, self.offset,
            i64 if budget is None else budget, forced, i64 if out_off is None else out_off,
            i64 if out_idx is None else out_idx,
            self.r if out_r is None else out_r, step, self.n_total, self.dp, self.x.stride(0),
            UPDATE=update, WEIGHTED=self.w is not None, SKIP=self.skip and update,
            PICK=pick, FORCED=forced is not None, TILE_N=_TILE_N, BLOCK_N=self.block_n,
            BLOCK_D=self.block_d, BLOCK_T=self.block_t, num_warps=_WARPS)


def _tile_balls(x: torch.Tensor, t_desc: torch.Tensor, n_tiles: int):
    """Each tile's centre ``m_T`` ``(T, D)`` float64 (the mean of its rows) and radius
    ``rho_T`` ``(T,)`` float64, an upper bound on ``||x - m_T||`` over its rows (rounded
    up): two passes over the features in row blocks, on their device, once per batch.
    ``t_desc`` ``(T,)`` int64 are the tile descriptors (:func:`_tiles`)."""
    n, d = x.shape
    dev = x.device
    f64 = dict(dtype=torch.float64, device=dev)
    counts = _unpack(t_desc)[1]  # the tiles follow each other: row -> tile from the counts
    row_tile = torch.repeat_interleave(torch.arange(n_tiles, device=dev), counts,
                                       output_size=n)
    m = torch.zeros((n_tiles, d), **f64)
    step = max(1, _BALL_ELEMS // max(d, 1))
    for s in range(0, n, step):
        m.index_add_(0, row_tile[s:s + step], x[s:s + step].to(torch.float64))
    m /= counts.clamp_min(1).to(torch.float64)[:, None]
    rho2 = torch.zeros(n_tiles, **f64)
    for s in range(0, n, step):
        rt = row_tile[s:s + step]
        d2 = (x[s:s + step].to(torch.float64) - m[rt]).square_().sum(1)
        rho2.scatter_reduce_(0, rt, d2, "amax")
    return m.contiguous(), rho2.sqrt_().mul_(1.0 + 2.0 ** -40)


def _check_fields(sizes: list[int]) -> None:
    """Raise a ValueError when pools of ``sizes`` rows (host ints) do not fit the tile
    descriptor's fields: more than 2^20 pools or 2^34 rows in one batch."""
    if len(sizes) > _MAX_POOLS:
        raise ValueError(f"the triton engine takes at most {_MAX_POOLS:,} pools per batch "
                         f"(the tile descriptor's pool field), got {len(sizes):,}: "
                         "split the batch")
    if sum(sizes) > _MAX_ROWS:
        raise ValueError(f"the triton engine takes at most {_MAX_ROWS:,} rows per batch "
                         f"(the tile descriptor's start field), got {sum(sizes):,}: "
                         "split the batch")


def _tiles(sizes: list[int], dev: torch.device):
    """The tile table, built on the device from the pool sizes (host ints; one small
    copy, no loop over tiles): the descriptors ``t_desc`` ``(T,)`` int64 (start row,
    row count and pool packed as in the module docstring; a tile never crosses a
    pool, pools in order, tiles of ``_TILE_N`` rows and a shorter last one), the pools'
    first and past-last tiles ``p_lo, p_hi`` and row offsets ``offset`` ``(P,)`` int64.
    A ValueError when the batch exceeds the fields (:func:`_check_fields`)."""
    _check_fields(sizes)
    i64 = dict(dtype=torch.int64, device=dev)
    n = torch.tensor(list(sizes), **i64).reshape(-1)
    per_pool = (n + (_TILE_N - 1)) // _TILE_N
    offset = torch.cumsum(n, 0) - n
    p_hi = torch.cumsum(per_pool, 0)
    p_lo = p_hi - per_pool
    n_tiles = sum(-(-int(k) // _TILE_N) for k in sizes)  # host ints: no device read
    t_pool = torch.repeat_interleave(torch.arange(len(sizes), **i64), per_pool,
                                     output_size=n_tiles)
    t_start = offset[t_pool] + (torch.arange(n_tiles, **i64) - p_lo[t_pool]) * _TILE_N
    count = torch.minimum(torch.full_like(t_start, _TILE_N), (offset + n)[t_pool] - t_start)
    return _pack(t_start, count, t_pool), p_lo, p_hi, offset


def _pack(start: torch.Tensor, count: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Tile descriptors ``(T,)`` int64 of their first rows, row counts and pools ``(T,)``
    int64 (within the fields: :func:`_check_fields` holds the batch to them)."""
    return (start << _START_SHIFT) | (count << _POOL_BITS) | pool


def _unpack(t_desc: torch.Tensor):
    """``(start, count, pool)`` ``(T,)`` int64 of tile descriptors ``(T,)`` int64: the
    inverse of :func:`_pack`, the kernel's decoding on the host."""
    return (t_desc >> _START_SHIFT, (t_desc >> _POOL_BITS) & ((1 << _COUNT_BITS) - 1),
            t_desc & ((1 << _POOL_BITS) - 1))


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
        self.pending = False  # the centre slot holds a pick that has not lowered r yet

    def _settle(self) -> None:
        if self.pending:
            self.b.update()
            self.pending = False

    def best(self) -> torch.Tensor:
        """``(2,)`` float64 ``(r, index)`` of the next pick on the device; ``(-1, -1)`` when
        nothing is left. Ties go to the lowest index."""
        b = self.b
        if b.n_total == 0:
            return self.none
        self._settle()
        j = torch.argmax(b.t_r[:b.n_tiles]).reshape(1)  # tiles in index order: the first
        u = b.t_i.index_select(0, j)
        pair = torch.cat([b.r.index_select(0, u), u.double()])  # r, also when weighted
        return torch.where(b.t_r.index_select(0, j) < 0, self.none, pair)

    def row(self, u: torch.Tensor) -> torch.Tensor:
        """``(D + 1,)`` float64: features of point ``u`` (0-d int64 tensor) and its density."""
        u1 = u.reshape(1)
        return torch.cat([self.b.x.index_select(0, u1)[0, :self.b.d].to(torch.float64),
                          self.b.dens.index_select(0, u1)])

    def add_centre(self, vec: torch.Tensor, u) -> None:
        """Make ``vec`` ``(D + 1,)`` (features, density) a selected point; ``u`` (0-d
        int64 tensor or int) is its index in this pool, or -1 for a point held elsewhere."""
        self.picks += 1
        b = self.b
        if b.n_total == 0:
            return
        self._settle()
        u = torch.as_tensor(u, dtype=torch.int64, device=b.r.device).reshape(1)
        ui = u.clamp_min(0)
        b.r.index_put_((ui,), torch.where(u >= 0, torch.full_like(b.r[:1], -1.0),
                                          b.r.index_select(0, ui)))
        b.last.copy_(torch.where(u >= 0, u, -1))  # its tile rescans its maximum
        b.cen[0, :b.d].copy_(vec[:-1])  # the padded columns stay 0
        b.cden.copy_(vec[-1:])
        b.live.fill_(1)
        b.update()

    def run(self, k: int, out_idx: torch.Tensor, out_r: torch.Tensor) -> None:
        """Make ``k`` picks of this pool into ``out_idx``/``out_r`` (``(budget,)`` int64 /
        float64 on the device), at the positions after the picks made so far. A forced
        first pick is the base class's :meth:`first` (through :meth:`add_centre`: one
        update launch, no host read); only :meth:`run_batch` forces firsts in the kernel."""
        for _ in range(k):  # one launch per pick: the last pick's update, then this pick
            self.b.step(self.picks, self.pending, self.budget, None, self.zero, out_idx,
                        out_r)
            self.pending = True
            self.picks += 1

    @staticmethod
    def run_batch(inputs: list[dict], budgets: list[int], firsts: list[int]):
        """Run P pools together: ``[(indices (budget_p,) int64, radii float64)]``.

        Per pick one launch for all pools (``_update`` over every live pool's
        tiles, the last tile of each pool to finish making its pick); the host
        only counts steps. ``inputs`` are the engine inputs of
        :func:`densecore.greedy.prepare`, one dict per pool.
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
                b.step(step, step > 0, budget_t, forced if step == 0 else None, out_off,
                       out_idx, out_r)
        return [(out_idx[s:e], out_r[s:e]) for s, e in zip(starts[:-1], starts[1:])]
