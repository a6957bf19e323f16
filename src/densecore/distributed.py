"""Algorithm 1 over candidates sharded across ``torch.distributed`` ranks.

Every rank runs the engine of :func:`densecore.farthest_first` on its shard,
prepared and wrapped by the same functions of :mod:`densecore.greedy`; this
module holds the communication and one short loop. Per pick the ranks
all-gather their local best ``(r, global index)``, agree on the largest ``r``
(ties: lowest global index), and the owner contributes the winner's features
and density to an all-reduce (zeros elsewhere); every rank adds that centre
to its engine. No host synchronisation per pick on NCCL. The result equals
:func:`densecore.farthest_first` (same backend) on the shards concatenated in
rank order. Failures do not hang: a header exchange makes every rank raise
when one rank's inputs are bad, and every collective has a timeout (gloo).
See ``docs/distributed.md`` for the protocol and its costs.

Shape:
    local_features ``(N_r, D)`` per rank (``N_r`` may be 0), densities
    ``(N_r,)``, labeled ``(M_r,)`` local indices, labeled_features
    ``(L_r, D)``, labeled_densities ``(L_r,)``; result indices ``(budget,)``
    int64 into the concatenation of all shards, radii ``(budget,)``.
"""

from __future__ import annotations

import datetime
import logging

import numpy as np
import torch
import torch.distributed as dist

from . import engines as E
from . import greedy as G
from . import metrics as M
from . import validation as V
from ._core import Selection

log = logging.getLogger(__name__)

__all__ = ["message_bytes", "select"]

# Header exchanged once before any work: fixed-size ints (the scaling statistics as
# float64 bit patterns), then an error message.
(_H_STATUS, _H_N, _H_D, _H_DTYPE, _H_HASDENS, _H_NLAB, _H_NLF, _H_BUDGET, _H_INIT, _H_SEED,
 _H_ENGINE, _H_DEVICE, _H_METRIC, _H_LAYOUT, _H_STATS) = range(15)
_N_HEADER = _H_STATS + 3  # max |feature|, max density, min density
_MSG_BYTES = 1024
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_DEVICE_TYPES = ("cpu", "cuda")
_NONE = -(2 ** 62)  # "not given" in the header
_EXHAUSTED = float(2 ** 62)  # global index sent by a rank with nothing left to pick


def message_bytes(world_size: int, dim: int) -> dict:
    """Payload bytes that one pick exchanges, as seen by one rank.

    Args:
        world_size: number of ranks ``P``.
        dim: feature dimension ``D``.

    Returns:
        dict with ``gather`` (bytes received by the all-gather of ``(r, index)``
        pairs, ``16 P``), ``vector`` (the all-reduced feature vector and density,
        ``8 (D + 1)``) and ``total``. Transport overhead (headers, the
        all-reduce's ring steps) is not included.

    Example:
        >>> message_bytes(2, 64)
        {'gather': 32, 'vector': 520, 'total': 552}
    """
    world_size = V.check_int(world_size, "world_size", minimum=1)
    dim = V.check_int(dim, "dim", minimum=1)
    gather, vector = 16 * world_size, 8 * (dim + 1)
    return {"gather": gather, "vector": vector, "total": gather + vector}


class _Comm:
    """Collectives on one group with a timeout and an error that says what failed."""

    def __init__(self, group, device: torch.device, timeout: datetime.timedelta,
                 blocking: bool):
        self.group = group
        self.device = device
        self.timeout = timeout
        self.blocking = blocking  # wait(timeout) on every collective (gloo)
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)

    def _wait(self, work, what: str) -> None:
        if not self.blocking:
            work.wait()  # NCCL: the stream waits, the host does not; the group's timeout applies
            return
        try:
            work.wait(self.timeout)
        except RuntimeError as err:
            raise RuntimeError(
                f"distributed.select: {what} failed on rank {self.rank} of {self.world} "
                f"(timeout {self.timeout.total_seconds():g} s): another rank failed, exited "
                f"or did not call select; underlying error: {err}") from err

    def all_gather(self, t: torch.Tensor, what: str) -> torch.Tensor:
        """(world, *t.shape) stack of ``t`` from every rank."""
        out = torch.empty((self.world, *t.shape), dtype=t.dtype, device=t.device)
        self._wait(dist.all_gather(list(out.unbind(0)), t, group=self.group, async_op=True),
                   what)
        return out

    def all_reduce_sum(self, t: torch.Tensor, what: str) -> None:
        self._wait(dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group, async_op=True),
                   what)


def _comm_device(group, features_device: torch.device) -> tuple[torch.device, bool]:
    """Device of the communication buffers and whether collectives block with a timeout."""
    name = str(dist.get_backend(group)).lower()
    if "nccl" in name and (features_device.type == "cuda" or "gloo" not in name):
        return torch.device("cuda", torch.cuda.current_device()), False
    return torch.device("cpu"), True


def _prepare_local(local_features, budget, densities, labeled, labeled_features,
                   labeled_densities, init, seed, backend, metric, validate):
    """Check this rank's inputs (the single-process checks); return (pool, header)."""
    pool = G.check(local_features, densities, labeled, labeled_features, labeled_densities,
                   backend=backend, metric=metric, name="local_features", validate=validate)
    n, dim = pool.n, pool.dim
    budget = V.check_int(budget, "budget", minimum=0)
    init = _NONE if init is None else V.check_int(init, "init")
    seed = V.check_int(seed, "seed", minimum=0)
    dev = pool.device
    stats = np.asarray(pool.stats(), dtype=np.float64).view(np.int64).tolist()
    header = [0, n, dim, _DTYPES.index(pool.dtype), int(pool.dens is not None),
              pool.lab.numel(), pool.n_out, budget, init, seed,
              E.names().index(pool.engine),
              _DEVICE_TYPES.index(dev.type) if dev.type in _DEVICE_TYPES else 2,
              M.METRICS.index(metric), E.LAYOUTS.index(pool.layout), *stats]
    return pool, header


def _exchange_headers(comm: _Comm, header, error) -> np.ndarray:
    """All-gather every rank's header and error message; raise on every rank if one failed."""
    buf = torch.zeros(_N_HEADER * 8 + _MSG_BYTES, dtype=torch.uint8)
    ints = np.full(_N_HEADER, _NONE, dtype=np.int64)
    if error is None:
        ints[:] = header
    else:
        ints[_H_STATUS] = 1
        msg = f"{type(error).__name__}: {error}".encode("utf-8")[:_MSG_BYTES]
        buf[_N_HEADER * 8:_N_HEADER * 8 + len(msg)] = torch.tensor(list(msg),
                                                                  dtype=torch.uint8)
    buf[:_N_HEADER * 8] = torch.from_numpy(ints.view(np.uint8))
    out = comm.all_gather(buf.to(comm.device), "header exchange").cpu().numpy()
    headers = np.ascontiguousarray(out[:, :_N_HEADER * 8]).view(np.int64)
    failed = np.flatnonzero(headers[:, _H_STATUS] != 0)
    if failed.size:
        if error is not None:
            raise error
        k = int(failed[0])
        msg = bytes(out[k, _N_HEADER * 8:]).rstrip(b"\0").decode("utf-8", errors="replace")
        raise RuntimeError(f"distributed.select: rank {k} of {comm.world} rejected its "
                           f"inputs, so no rank selects: {msg}")
    return headers


def _agree(headers: np.ndarray) -> dict:
    """Cross-rank checks and the global facts every rank derives identically."""
    col = lambda c: headers[:, c].tolist()  # noqa: E731
    dim = V.check_same_on_ranks(col(_H_D), "local_features.shape[1]")
    dtype = _DTYPES[V.check_same_on_ranks(col(_H_DTYPE), "local_features.dtype")]
    V.check_same_on_ranks([bool(c) for c in col(_H_HASDENS)], "densities given (not None)")
    budget = V.check_same_on_ranks(col(_H_BUDGET), "budget")
    init = V.check_same_on_ranks([None if c == _NONE else c for c in col(_H_INIT)], "init")
    seed = V.check_same_on_ranks(col(_H_SEED), "seed")
    engine = V.check_same_on_ranks([E.names()[c] for c in col(_H_ENGINE)],
                                   "engine (backend)")
    V.check_same_on_ranks([_DEVICE_TYPES[c] if c < 2 else "other" for c in col(_H_DEVICE)],
                          "local_features.device.type")
    V.check_same_on_ranks([M.METRICS[c] for c in col(_H_METRIC)], "metric")
    V.check_same_on_ranks([E.LAYOUTS[c] for c in col(_H_LAYOUT)],
                          "local_features layout (dense or sparse)")
    stats = np.ascontiguousarray(headers[:, _H_STATS:_H_STATS + 3]).view(np.float64)
    fscale, dscale = G.scales([stats[:, 0].max(), stats[:, 1].max(), stats[:, 2].min()],
                              dtype)
    sizes = headers[:, _H_N].astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n = int(offsets[-1])
    n_lab, n_lf = int(headers[:, _H_NLAB].sum()), int(headers[:, _H_NLF].sum())
    budget = V.check_budget(budget, n - n_lab)
    first = G.first_pick(n, n_lab + n_lf, budget, init, seed)  # same draw as farthest_first
    return {"dim": dim, "dtype": dtype, "budget": budget, "first": first, "engine": engine,
            "offsets": offsets, "n": n, "fscale": fscale, "dscale": dscale,
            "n_centres": headers[:, _H_NLAB] + headers[:, _H_NLF]}


def _gather_centres(comm: _Comm, pool, glob: dict):
    """All labeled points (in-pool and out-of-pool, every rank's) as scaled centres on
    every rank, in rank order: ``(centres (L, D) float64, cdens (L,) float64)`` on the CPU."""
    counts = glob["n_centres"]
    m, dim = int(counts.max()), glob["dim"]
    if m == 0:
        return torch.empty((0, dim), dtype=torch.float64), torch.empty(0, dtype=torch.float64)
    mine, md = G.dense_centres(pool, glob["fscale"], glob["dscale"])
    buf = torch.zeros((m, dim + 1), dtype=torch.float64, device=comm.device)
    buf[:mine.shape[0], :dim] = mine.to(comm.device)
    buf[:mine.shape[0], dim] = md.to(comm.device)
    out = comm.all_gather(buf, "labeled set gather").cpu()
    rows = torch.cat([out[k, :int(c)] for k, c in enumerate(counts)])
    return rows[:, :dim].contiguous(), rows[:, dim].contiguous()


def _loop(comm: _Comm, eng, glob: dict, n: int, bar):
    """The picks: local best, exchange, winner, owner's vector, every rank adds it."""
    cdev, edev = comm.device, eng.best().device
    budget, first = glob["budget"], glob["first"]
    offset = float(glob["offsets"][comm.rank])
    idx = torch.empty(budget, dtype=torch.int64, device=cdev)
    radii = torch.empty(budget, dtype=torch.float64, device=cdev)
    shift = torch.tensor([0.0, offset], dtype=torch.float64, device=cdev)
    exhausted = torch.tensor([-1.0, _EXHAUSTED], dtype=torch.float64, device=cdev)
    zero = torch.zeros(glob["dim"] + 1, dtype=torch.float64, device=cdev)

    def share(g):
        """The owner's row of global pick ``g`` on every rank (on the engine's device)
        and its index in this pool (-1 where another rank holds it)."""
        local = g - offset
        mine = (local >= 0) & (local < n)
        vec = zero.clone()
        lu = torch.tensor(-1, dtype=torch.int64, device=edev)
        if n:
            lu = local.clamp(0, n - 1).to(edev, torch.int64)
            vec = torch.where(mine, eng.row(lu).to(cdev), zero)
            lu = torch.where(mine.to(edev), lu, -1)
        comm.all_reduce_sum(vec, "pick vector")
        return vec.to(edev), lu

    start = 0
    if budget and first >= 0:  # nothing is labeled: the engine's forced first pick (r = inf)
        # every rank records it (an engine on an empty shard lowers nothing)
        eng.first(first, idx, radii,
                  held=share(torch.tensor(float(first), dtype=torch.float64, device=cdev)))
        start = 1
        if bar is not None:
            bar.update(1)
    for i in range(start, budget):
        pair = eng.best().to(cdev)
        pair = torch.where(pair[1] < 0, exhausted, pair + shift)
        pairs = comm.all_gather(pair, "pick exchange")
        ru = pairs[:, 0].max()
        g = torch.where(pairs[:, 0] == ru, pairs[:, 1],
                        torch.full_like(pairs[:, 1], float("inf"))).min()
        vec, lu = share(g)
        if n:
            eng.add_centre(vec, lu)
        idx[i], radii[i] = g.to(torch.int64), ru
        if bar is not None:
            bar.update(1)
    return idx, radii


def select(local_features, budget: int, *, densities=None, labeled=None,
           labeled_features=None, labeled_densities=None, init=None, seed: int = 0,
           group=None, backend: str = "auto", metric: str = "euclidean", timeout=600.0,
           num_threads: int | None = None, progress: bool = False,
           validate: bool = True) -> Selection:
    """Algorithm 1 over the union of every rank's shard; call it on every rank.

    The pool is the concatenation of the shards in rank order (rank ``r`` holds
    global indices ``offset_r .. offset_r + N_r - 1``). The result is the same on
    every rank and equals :func:`densecore.farthest_first` on the concatenated
    data; arguments not listed mean what they mean there.

    Args:
        local_features: ``(N_r, D)`` this rank's shard (``N_r`` may be 0), dense or
            sparse (scipy, COO/CSR tensor: the table's sparse engines); the same
            ``D``, dtype and layout on every rank.
        budget: picks in total, the same on every rank.
        densities: ``(N_r,)`` or None on every rank (k-center greedy).
        labeled: ``(M_r,)`` LOCAL indices of this shard's labeled points.
        labeled_features: ``(L_r, D)`` labeled points outside the pool held by this
            rank (gathered once); labeled_densities: ``(L_r,)`` their densities.
        init: GLOBAL index of the first pick when nothing is labeled anywhere.
        seed: seed of the first pick's draw over the global pool, the same on
            every rank.
        group: the process group (None: the default group, initialised).
        backend: ``"auto"`` or a name of the engine table
            (:mod:`densecore.engines`); the same engine on every rank.
        metric: ``"euclidean"`` or ``"cosine"`` (unit rows, cosine radii), the same
            on every rank.
        timeout: seconds (or a ``timedelta``) any collective may wait for the other
            ranks before raising ``RuntimeError`` (gloo; NCCL uses the group's timeout).
        num_threads: numba threads of this rank's engine (None: numba's setting);
            keep ``ranks x num_threads`` at most the machine's cores.
        progress: a tqdm bar over the picks; validate: scan values for NaN/inf.

    Returns:
        :class:`~densecore.Selection` with global ``indices`` ``(budget,)`` int64 and
        ``radii`` ``(budget,)`` in the features' dtype; numpy when
        ``local_features`` is numpy, else tensors on its device.

    Raises:
        ValueError / TypeError: on the rank whose inputs are bad, and on every rank
            when the ranks disagree (budget, D, dtype, init, seed, engine, metric,
            layout).
        RuntimeError: on the other ranks when one rank's inputs are bad, and on
            every surviving rank when a rank dies or stops answering.

    Example:
        >>> import os, tempfile
        >>> import numpy as np, torch.distributed as dist
        >>> store = os.path.join(tempfile.mkdtemp(), "store")
        >>> dist.init_process_group("gloo", init_method="file://" + store, rank=0,
        ...                         world_size=1)
        >>> x = np.array([[0.0], [1.0], [10.0], [4.0]], dtype=np.float32)
        >>> select(x, 2, init=0).indices.tolist()
        [0, 2]
        >>> dist.destroy_process_group()
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("distributed.select needs an initialised torch.distributed process "
                           "group: call torch.distributed.init_process_group on every rank "
                           "first")
    pool, header, error = None, None, None
    wait = datetime.timedelta(seconds=600)  # for the header exchange if timeout is bad
    try:
        wait = V.check_timeout(timeout)
        metric = M.check_metric(metric)
        pool, header = _prepare_local(local_features, budget, densities, labeled,
                                      labeled_features, labeled_densities, init, seed,
                                      backend, metric, validate)
        if num_threads is not None:
            num_threads = V.check_int(num_threads, "num_threads", minimum=1)
    except Exception as err:  # re-raised below, after telling the other ranks
        error = err
    fdev = pool.device if pool is not None else torch.device("cpu")
    cdev, blocking = _comm_device(group, fdev)
    comm = _Comm(group, cdev, wait, blocking=True)
    headers = _exchange_headers(comm, header, error)
    glob = _agree(headers)
    comm.blocking = blocking
    centres, cdens = _gather_centres(comm, pool, glob)
    n = pool.n
    log.debug("rank %d/%d: %d of %d points, %d centres, budget %d, engine %s", comm.rank,
              comm.world, n, glob["n"], centres.shape[0], glob["budget"], glob["engine"])
    cls = E.engine(glob["engine"], pool.layout)
    with G.progress_bar(progress, glob["budget"], f"distributed greedy ({glob['engine']})") \
            as bar, cls.threads(num_threads):
        inputs = G.prepare(pool, glob["fscale"], glob["dscale"], centres, cdens)
        eng = cls(**inputs, max_new=glob["budget"])
        idx, radii = _loop(comm, eng, glob, n, bar)
    sel = G.finish(idx, radii, fscale=glob["fscale"], dscale=glob["dscale"],
                   first=glob["first"], dtype=glob["dtype"], is_numpy=pool.is_numpy,
                   device=pool.device, n=glob["n"])
    return Selection(sel.indices, sel.radii * M.radius_factor(metric))
