"""Algorithm 1 over candidates sharded across ``torch.distributed`` ranks.

Every rank holds one shard of the candidate pool and runs the local engine on
it (the pruned numba engine on CPU, the torch loop on CUDA). Per pick the ranks
exchange their local best ``(r, global index)`` pairs, agree on the largest
``r`` (ties: lowest global index, the rule of :func:`densecore.farthest_first`),
and the owner of the winner sends its feature vector and density to everyone,
so that each rank lowers its own ``r`` with the new centre. Features never move
in bulk; only the (small) labeled set is gathered once, before the first pick.

The result equals single-process :func:`densecore.farthest_first` on the
concatenation of the shards in rank order: same global indices, same radii,
same seeded first pick (drawn over the global pool). With the numba engine the
match is exact; the torch loop matches wherever competing distances differ by
more than float rounding (its matrix-vector products may round differently).

Communication per pick (``P`` ranks, ``D`` features of ``s`` bytes each):

* numba engine (any process group): ``all_gather`` of 2 float64 per rank
  (``16 P`` bytes) and one ``broadcast`` of ``D s + 8`` bytes from the owner.
* torch loop: the same ``all_gather`` and an ``all_reduce`` of ``D + 2`` float64
  (feature vector, density, squared norm; zeros on every rank but the owner),
  which lets the owner be found on the device without a host synchronisation.

Failures do not hang: ranks first exchange a header (shapes, dtypes, budget,
init, seed) and an error flag with the message of any rank whose inputs fail
validation; every rank then raises. Collectives run with ``timeout``; a rank
that dies or never calls :func:`select` makes the others raise a
``RuntimeError`` that says so. On NCCL the per-pick collectives are left
asynchronous and rely on the process group's own timeout and watchdog.

Shape:
    local_features ``(N_r, D)`` per rank (``N_r`` may be 0), densities
    ``(N_r,)``, labeled ``(M_r,)`` local indices, labeled_features
    ``(L_r, D)``, labeled_densities ``(L_r,)``; result indices ``(budget,)``
    int64 into the concatenation of all shards (``N = sum_r N_r``), radii
    ``(budget,)``.
"""

from __future__ import annotations

import datetime
import logging

import numpy as np
import torch
import torch.distributed as dist

from . import validation as V
from .greedy import BACKENDS, Selection

log = logging.getLogger(__name__)

__all__ = ["message_bytes", "select"]

# Header exchanged once before any work: fixed-size ints, then an error message.
_H_STATUS, _H_N, _H_D, _H_DTYPE, _H_HASDENS, _H_NLAB, _H_NLF, _H_BUDGET, _H_INIT, \
    _H_SEED, _H_BACKEND, _H_DEVICE, _N_HEADER = range(13)
_MSG_BYTES = 1024
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_DEVICE_TYPES = ("cpu", "cuda")
_ENGINES = ("numba", "torch")
_NONE = -(2 ** 62)  # "not given" in the header
_EXHAUSTED = float(2 ** 62)  # global index sent by a rank with nothing left to pick


def message_bytes(world_size: int, dim: int, *, itemsize: int = 4,
                  engine: str = "numba") -> dict:
    """Payload bytes that one pick exchanges, as seen by one rank.

    Args:
        world_size: number of ranks ``P``.
        dim: feature dimension ``D``.
        itemsize: bytes per feature value (4 for float32, 8 for float64).
        engine: ``"numba"`` (broadcast of the vector in its own dtype) or
            ``"torch"`` (all-reduce of ``D + 2`` float64).

    Returns:
        dict with ``gather`` (bytes received by the all-gather of ``(r, index)``
        pairs, ``16 P``), ``vector`` (bytes of the one feature vector message)
        and ``total``. Transport overhead (headers, the all-reduce's ring steps)
        is not included.

    Example:
        >>> message_bytes(2, 64)
        {'gather': 32, 'vector': 264, 'total': 296}
    """
    world_size = V.check_int(world_size, "world_size", minimum=1)
    dim = V.check_int(dim, "dim", minimum=1)
    itemsize = V.check_int(itemsize, "itemsize", minimum=1)
    if engine not in _ENGINES:
        raise ValueError(f"engine must be one of {_ENGINES}; got {engine!r}")
    gather = 16 * world_size
    vector = dim * itemsize + 8 if engine == "numba" else 8 * (dim + 2)
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

    def broadcast(self, t: torch.Tensor, src: int, what: str) -> None:
        src_global = src if self.group is None else dist.get_global_rank(self.group, src)
        self._wait(dist.broadcast(t, src_global, group=self.group, async_op=True), what)

    def all_reduce_sum(self, t: torch.Tensor, what: str) -> None:
        self._wait(dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self.group, async_op=True),
                   what)


def _comm_device(group, features_device: torch.device) -> tuple[torch.device, bool]:
    """Device of the communication buffers and whether collectives block with a timeout."""
    name = str(dist.get_backend(group)).lower()
    if "nccl" in name and (features_device.type == "cuda" or "gloo" not in name):
        return torch.device("cuda", torch.cuda.current_device()), False
    return torch.device("cpu"), True


def _as_timeout(timeout) -> datetime.timedelta:
    if isinstance(timeout, datetime.timedelta):
        seconds = timeout.total_seconds()
    else:
        seconds = V.check_positive_float(timeout, "timeout")
    if not seconds > 0:
        raise ValueError(f"timeout must be > 0 seconds; got {seconds}")
    return datetime.timedelta(seconds=seconds)


def _prepare_local(local_features, budget, densities, labeled, labeled_features,
                   labeled_densities, init, seed, backend, validate):
    """Validate this rank's inputs; return (tensors dict, header ints)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    x, dens, lab, lf, ld = V.check_pool(local_features, densities, labeled, labeled_features,
                                        labeled_densities, name="local_features",
                                        validate=validate)
    n, dim = x.shape
    dev = x.device
    budget = V.check_int(budget, "budget", minimum=0)
    init = _NONE if init is None else V.check_int(init, "init")
    seed = V.check_int(seed, "seed")
    engine = ("torch" if dev.type != "cpu" else "numba") if backend == "auto" else backend
    header = [0, n, dim, _DTYPES.index(x.dtype), int(dens is not None), lab.numel(),
              lf.shape[0], budget, init, seed, _ENGINES.index(engine),
              _DEVICE_TYPES.index(dev.type) if dev.type in _DEVICE_TYPES else 2]
    return {"x": x, "dens": dens, "lab": lab, "lf": lf, "ld": ld, "engine": engine}, header


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
    V.check_same_on_ranks([str(_DTYPES[c]) for c in col(_H_DTYPE)], "local_features.dtype")
    has_dens = V.check_same_on_ranks([bool(c) for c in col(_H_HASDENS)],
                                     "densities given (not None)")
    budget = V.check_same_on_ranks(col(_H_BUDGET), "budget")
    init = V.check_same_on_ranks([None if c == _NONE else c for c in col(_H_INIT)], "init")
    seed = V.check_same_on_ranks(col(_H_SEED), "seed")
    engine = V.check_same_on_ranks([_ENGINES[c] for c in col(_H_BACKEND)], "engine (backend)")
    V.check_same_on_ranks([_DEVICE_TYPES[c] if c < 2 else "other" for c in col(_H_DEVICE)],
                          "local_features.device.type")
    sizes = headers[:, _H_N].astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n = int(offsets[-1])
    n_lab, n_lf = int(headers[:, _H_NLAB].sum()), int(headers[:, _H_NLF].sum())
    budget = V.check_budget(budget, n - n_lab)
    if init is not None:
        init = V.check_index(init, n, "init")
        if n_lab + n_lf:
            raise ValueError("init applies only when nothing is labeled; got labeled points "
                             f"and init={init}")
    elif n_lab + n_lf == 0 and budget > 0:
        init = int(np.random.default_rng(seed).integers(n))  # same draw as farthest_first
    return {"dim": dim, "has_dens": has_dens, "budget": budget, "init": init,
            "engine": engine, "sizes": sizes, "offsets": offsets, "n": n,
            "n_centres": headers[:, _H_NLAB] + headers[:, _H_NLF]}


def _gather_centres(comm: _Comm, loc: dict, glob: dict, dtype: torch.dtype):
    """All labeled points (in-pool and out-of-pool, every rank's) as centres on every rank.

    Returns ``(centres (L, D) dtype, cdens (L,) float64)`` on the CPU, in rank order.
    """
    x, lab, lf = loc["x"], loc["lab"], loc["lf"]
    counts = glob["n_centres"]
    m, dim = int(counts.max()), glob["dim"]
    if m == 0:
        return torch.empty((0, dim), dtype=dtype), torch.empty(0, dtype=torch.float64)
    mine = torch.cat([x[lab].to(dtype), lf.to(dtype)])
    if loc["dens"] is None:
        md = torch.ones(mine.shape[0], dtype=torch.float64)
    else:
        md = torch.cat([loc["dens"][lab], loc["ld"]]).to(torch.float64)
    buf = torch.zeros((m, dim + 1), dtype=torch.float64, device=comm.device)
    buf[:mine.shape[0], :dim] = mine.to(comm.device, torch.float64)  # exact for float32
    buf[:mine.shape[0], dim] = md.to(comm.device)
    out = comm.all_gather(buf, "labeled set gather").cpu()
    rows = torch.cat([out[k, :int(c)] for k, c in enumerate(counts)])
    return rows[:, :dim].to(dtype), rows[:, dim].contiguous()


def _winner(pairs: np.ndarray) -> tuple[float, int]:
    """Largest r over the ranks' (r, global index) pairs; ties: lowest global index."""
    r = pairs[:, 0]
    best = r.max()
    return float(best), int(pairs[r == best, 1].min())


def _loop_numba(comm: _Comm, loc: dict, glob: dict, centres, cdens, bar):
    from ._backends import numba_backend

    x = loc["x"].detach().cpu().numpy()
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    x = np.ascontiguousarray(x)
    n, dim = x.shape
    dens = (np.ones(n) if loc["dens"] is None
            else np.ascontiguousarray(loc["dens"].detach().cpu().numpy(), dtype=np.float64))
    excluded = np.zeros(n, dtype=bool)
    excluded[loc["lab"].cpu().numpy()] = True
    budget, offsets, first = glob["budget"], glob["offsets"], glob["init"]
    offset = int(offsets[comm.rank])
    engine = numba_backend.Engine(
        x, dens, np.ascontiguousarray(centres.numpy(), dtype=x.dtype),
        np.ascontiguousarray(cdens.numpy()), excluded, budget)
    idx = np.empty(budget, dtype=np.int64)
    radii = np.empty(budget, dtype=np.float64)
    pair = torch.empty(2, dtype=torch.float64)
    vec = torch.empty(dim * x.itemsize + 8, dtype=torch.uint8, device=comm.device)
    host = np.empty(dim * x.itemsize + 8, dtype=np.uint8)
    for i in range(budget):
        if i == 0 and first is not None:
            ru, g = np.inf, first  # nothing is labeled: r is inf everywhere
        else:
            ru_loc, u_loc = engine.best()
            pair[0] = ru_loc
            pair[1] = u_loc + offset if u_loc >= 0 else _EXHAUSTED
            ru, g = _winner(comm.all_gather(pair.to(comm.device), "pick exchange")
                            .cpu().numpy())
        owner = int(np.searchsorted(offsets, g, side="right")) - 1
        u = g - offset if owner == comm.rank else -1
        if u >= 0:
            host[:dim * x.itemsize] = x[u].view(np.uint8)
            host[dim * x.itemsize:] = np.float64(dens[u]).reshape(1).view(np.uint8)
            vec.copy_(torch.from_numpy(host))
        comm.broadcast(vec, owner, "pick broadcast")
        if u < 0:
            host[:] = vec.cpu().numpy()
        fu = host[:dim * x.itemsize].view(x.dtype)
        du = float(host[dim * x.itemsize:].view(np.float64)[0])
        idx[i], radii[i] = g, ru
        engine.add_centre(fu, du, u)
        if bar is not None:
            bar.update(1)
    return torch.from_numpy(idx), torch.from_numpy(radii)


def _loop_torch(comm: _Comm, loc: dict, glob: dict, centres, cdens, bar):
    from ._backends import torch_backend

    x = loc["x"]
    x = x if x.dtype in (torch.float32, torch.float64) else x.float()
    n, dim = x.shape
    dev = x.device
    dens = None if loc["dens"] is None else loc["dens"].to(x.dtype)
    budget, first = glob["budget"], glob["init"]
    offset = int(glob["offsets"][comm.rank])
    centres = centres.to(dev, x.dtype)
    if centres.shape[0] and n:
        _, r = torch_backend.nearest_centres(
            x, centres, None if dens is None else cdens.to(dev, x.dtype))
    else:
        r = torch.full((n,), float("inf"), dtype=x.dtype, device=dev)
    r[loc["lab"]] = -1.0
    sq = (x * x).sum(1)
    cdev = comm.device
    idx = torch.empty(budget, dtype=torch.int64, device=cdev)
    radii = torch.empty(budget, dtype=torch.float64, device=cdev)
    offset_t = torch.tensor(float(offset), dtype=torch.float64, device=cdev)
    exhausted = torch.tensor([-1.0, _EXHAUSTED], dtype=torch.float64, device=cdev)
    zero = torch.zeros((), dtype=torch.float64, device=cdev)
    neg = torch.full((1,), -1.0, dtype=x.dtype, device=dev)
    for i in range(budget):
        if i == 0 and first is not None:
            g = torch.tensor(float(first), dtype=torch.float64, device=cdev)
            ru = torch.tensor(float("inf"), dtype=torch.float64, device=cdev)
        else:
            if n:
                u = torch.argmax(r)  # first maximum: lowest local index on ties
                pair = torch.stack([r[u].to(cdev, torch.float64),
                                    u.to(cdev, torch.float64) + offset_t])
                pair = torch.where(pair[0] < 0, exhausted, pair)
            else:
                pair = exhausted
            pairs = comm.all_gather(pair, "pick exchange")
            ru = pairs[:, 0].max()
            g = torch.where(pairs[:, 0] == ru, pairs[:, 1],
                            torch.full_like(pairs[:, 1], float("inf"))).min()
        local = g - offset_t
        mine = (local >= 0) & (local < n)
        vec = torch.zeros(dim + 2, dtype=torch.float64, device=cdev)
        if n:
            lu = local.clamp(0, n - 1).to(dev, torch.int64).view(1)
            own = torch.cat([x.index_select(0, lu)[0],
                             (dens.index_select(0, lu) if dens is not None
                              else x.new_ones(1)), sq.index_select(0, lu)])
            vec = torch.where(mine, own.to(cdev, torch.float64), zero)
            r.index_put_((lu,), torch.where(mine.to(dev), neg, r.index_select(0, lu)))
        comm.all_reduce_sum(vec, "pick vector")
        vec = vec.to(dev, x.dtype)
        idx[i] = g.to(torch.int64)
        radii[i] = ru
        if n:
            dist_u = torch.addmv(sq + vec[dim + 1:], x, vec[:dim], alpha=-2.0).clamp_min_(0)
            if dens is not None:
                dist_u = dist_u / vec[dim:dim + 1]
            torch.minimum(r, dist_u, out=r)
        if bar is not None:
            bar.update(1)
    return idx, radii


_LOOPS = {"numba": _loop_numba, "torch": _loop_torch}


def _run_numba_loop(comm, loc, glob, centres, cdens, bar, num_threads):
    if num_threads is None:
        return _loop_numba(comm, loc, glob, centres, cdens, bar)
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(min(num_threads, numba.config.NUMBA_NUM_THREADS))
    try:
        return _loop_numba(comm, loc, glob, centres, cdens, bar)
    finally:
        numba.set_num_threads(before)


def select(local_features, budget: int, *, densities=None, labeled=None,
           labeled_features=None, labeled_densities=None, init=None, seed: int = 0,
           group=None, backend: str = "auto", timeout=600.0, num_threads: int | None = None,
           progress: bool = False, validate: bool = True) -> Selection:
    """Algorithm 1 over the union of every rank's shard; call it on every rank.

    The pool is the concatenation of the shards in rank order (rank ``r`` holds
    global indices ``offset_r .. offset_r + N_r - 1``). The result is the same on
    every rank and equals :func:`densecore.farthest_first` (``DensityAwareGreedy``
    with densities, ``KCenterGreedy`` without) on the concatenated data.

    Args:
        local_features: ``(N_r, D)`` float array or tensor of this rank's shard;
            ``N_r`` may be 0 (pass shape ``(0, D)``). Same ``D`` and dtype on
            every rank.
        budget: picks in total, the same on every rank,
            ``0 <= budget <= N - (labeled points in the pool)``.
        densities: ``(N_r,)`` strictly positive coverage densities, or None on
            every rank (k-center greedy, every density 1).
        labeled: ``(M_r,)`` LOCAL indices of this shard's already-labeled points.
        labeled_features: ``(L_r, D)`` labeled points outside the pool held by
            this rank (one rank may hold all of them; they are gathered once).
        labeled_densities: ``(L_r,)`` their densities (required with densities).
        init: GLOBAL index of the first pick when nothing is labeled anywhere;
            None draws it from ``seed`` over the global pool.
        seed: seed of that draw, the same on every rank.
        group: the ``torch.distributed`` process group (None: the default group,
            which must be initialised).
        backend: ``"auto"`` (numba for CPU shards, torch for CUDA shards),
            ``"numba"`` or ``"torch"``; it must resolve to the same engine on
            every rank.
        timeout: seconds (or a ``datetime.timedelta``) that any collective may
            wait for the other ranks before raising ``RuntimeError`` (gloo; on
            NCCL the per-pick collectives use the process group's timeout).
        num_threads: numba threads of this rank's engine during the call (None:
            numba's setting). With several ranks on one machine keep
            ``ranks x num_threads`` at most the number of cores: oversubscribed
            parallel regions make every pick orders of magnitude slower.
        progress: show a tqdm bar over the picks (usually on one rank only).
        validate: scan values for NaN/inf and non-positive densities.

    Returns:
        :class:`~densecore.Selection` with global ``indices`` ``(budget,)`` int64
        and ``radii`` ``(budget,)`` (squared Euclidean distance divided by the
        density of the nearest selected or labeled point, ``inf`` for a first
        pick made when nothing was labeled), in the features' dtype; numpy when
        ``local_features`` is numpy, else tensors on its device.

    Raises:
        ValueError / TypeError: on the rank whose inputs are bad, and on every
            rank when the ranks disagree (budget, D, dtype, init, seed, engine).
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
    is_numpy = isinstance(local_features, np.ndarray)
    loc, header, error = None, None, None
    wait = datetime.timedelta(seconds=600)  # for the header exchange if timeout is bad
    try:
        wait = _as_timeout(timeout)
        loc, header = _prepare_local(local_features, budget, densities, labeled,
                                     labeled_features, labeled_densities, init, seed,
                                     backend, validate)
        if num_threads is not None:
            num_threads = V.check_int(num_threads, "num_threads", minimum=1)
    except Exception as err:  # re-raised below, after telling the other ranks
        error = err
    fdev = loc["x"].device if loc is not None else torch.device("cpu")
    cdev, blocking = _comm_device(group, fdev)
    comm = _Comm(group, cdev, wait, blocking=True)
    headers = _exchange_headers(comm, header, error)
    glob = _agree(headers)
    comm.blocking = blocking
    x = loc["x"]
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    centres, cdens = _gather_centres(comm, loc, glob, dtype)
    log.debug("rank %d/%d: %d of %d points, %d centres, budget %d, engine %s", comm.rank,
              comm.world, x.shape[0], glob["n"], centres.shape[0], glob["budget"],
              glob["engine"])
    bar = None
    if progress and glob["budget"]:
        from tqdm.auto import tqdm

        bar = tqdm(total=glob["budget"], desc=f"distributed greedy ({glob['engine']})",
                   unit="pick")
    try:
        if glob["engine"] == "numba":
            from ._backends.numba_backend import keep_torch_threads

            with keep_torch_threads():
                idx, radii = _run_numba_loop(comm, loc, glob, centres, cdens, bar,
                                             num_threads)
        else:
            idx, radii = _LOOPS[glob["engine"]](comm, loc, glob, centres, cdens, bar)
    finally:
        if bar is not None:
            bar.close()
    radii = radii.to(dtype)
    if is_numpy:
        return Selection(idx.cpu().numpy(), radii.cpu().numpy())
    return Selection(idx.to(x.device), radii.to(x.device))
