"""The triton engine's one-off self-check on a CUDA device, behind ``backend="auto"``.

:func:`densecore.engines.resolve` sends dense CUDA features to the fused triton
engine (``_backends/triton_backend.py``: one launch per pick for a whole
batch against about 25 per pick and image for the torch engine) only after
this check has passed on that device once in the process: a small ragged batch
(pools of 45, 0, 70 and 33 rows, D = 5, duplicates and exact ties, densities,
a labeled row and labeled points outside their pools, one pool picked empty) run
through the engine's batched entry (``Engine.run_batch``, the call
:func:`densecore.farthest_first_batch` makes) must give the picks of Algorithm 1
computed in float64 on the same device (a full pass per pick, ties to the
lowest index). Anything else (triton missing, a compile or launch error, a
wrong pick) keeps ``"auto"`` on the torch engine with a ``RuntimeWarning``
that says why. The result is kept per device for the life of the process.

Cost: estimated well under 0.5 s once the kernel's variants are compiled (triton
keeps them in its on-disk cache; a cold compile adds seconds, paid once per
machine); unmeasured on a GPU (``benchmarks/gpu_check.py`` times it). Under the
interpreter on 2 CPU cores it takes about 4-5 s.

Shape:
    the check's pools: features ``(148, 5)`` float32, densities ``(148,)`` float64.
"""

from __future__ import annotations

import logging
import time
import warnings

import torch

log = logging.getLogger(__name__)

__all__ = ["auto_engine", "self_check"]

_SIZES = (45, 0, 70, 33)
_BUDGETS = (9, 0, 12, 33)  # the last pool is picked empty
_RESULTS: dict = {}  # device -> (passed, reason, seconds)


def _problem(device: torch.device):
    """The check's batch: features ``(148, 5)`` float32 on a lattice (exact ties and
    duplicates), densities in powers of two, a labeled row in pool 0, labeled points
    outside pools 2 (float64, between lattice values) and 3."""
    g = torch.Generator().manual_seed(7)
    n = sum(_SIZES)
    x = torch.randint(0, 6, (n, 5), generator=g).to(torch.float32)
    x[40:45] = x[3]  # duplicates
    dens = 2.0 ** torch.randint(-1, 2, (n,), generator=g).to(torch.float64)
    lab = torch.zeros(n, dtype=torch.bool)
    lab[2] = True
    lf = [None, None, torch.full((1, 5), 2.5 + 2.0 ** -30, dtype=torch.float64),
          torch.full((1, 5), -1.0, dtype=torch.float64)]
    ld = [None, None, torch.tensor([0.5], dtype=torch.float64),
          torch.tensor([2.0], dtype=torch.float64)]
    to = dict(device=device)
    return (x.to(**to), dens.to(**to), lab.to(**to),
            [None if t is None else t.to(**to) for t in lf],
            [None if t is None else t.to(**to) for t in ld])


def _inputs(x, dens, lab, lf, ld) -> dict:
    """One pool's engine inputs, as :func:`densecore.greedy.prepare` builds them: the
    labeled centres ``(L, D)`` (in-pool rows, then ``lf``) narrowed to the features'
    dtype where that is exact, else float64. Built here, not through the driver: the
    driver resolves ``"auto"`` in the engine table, whose loader runs this check (an
    import cycle). The lattice needs no scaling (the driver's is a power of two)."""
    c = torch.cat([x[lab].to(torch.float64)] + ([] if lf is None else [lf]))
    cd = torch.cat([dens[lab]] + ([] if ld is None else [ld]))
    if torch.equal(c.to(x.dtype).to(torch.float64), c):
        c = c.to(x.dtype)
    return {"x": x, "dens": dens, "centres": c, "cdens": cd, "excluded": lab.clone()}


def _reference(x, dens, lab, lf, ld, budget):
    """Algorithm 1 in float64 on the device: ``budget`` picks, ties to the lowest index
    (``argmax`` returns the first maximum); every checked pool has labeled points, so
    its first pick is the farthest from them (no seeded draw)."""
    x64 = x.to(torch.float64)
    r = torch.full((x.shape[0],), float("inf"), dtype=torch.float64, device=x.device)
    for c, d in [(x64[k], dens[k]) for k in lab.nonzero().flatten().tolist()] + (
            [] if lf is None else list(zip(lf.to(torch.float64), ld))):
        r = torch.minimum(r, ((x64 - c) ** 2).sum(1) / d)
    r[lab] = -1.0
    out = []
    for _ in range(budget):
        u = int(torch.argmax(r))
        out.append(u)
        r = torch.minimum(r, ((x64 - x64[u]) ** 2).sum(1) / dens[u])
        r[u] = -1.0
        r[lab] = -1.0
    return out


def self_check(device) -> tuple[bool, str, float]:
    """Run the check on ``device`` (a ``torch.device``; CPU tensors only under the
    Triton interpreter): ``(passed, reason, seconds)``, reason ``""`` when it passed.

    Example:
        >>> import torch
        >>> self_check(torch.device("meta"))[:2]
        (False, 'the triton engine runs on CUDA devices; got meta')
    """
    t0 = time.perf_counter()
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        return False, "no CUDA device is available", 0.0
    if device.type not in ("cuda", "cpu"):
        return False, f"the triton engine runs on CUDA devices; got {device.type}", 0.0
    try:
        from .triton_backend import Engine

        x, dens, lab, lf, ld = _problem(device)
        bounds = torch.tensor((0,) + _SIZES).cumsum(0).tolist()
        pools = [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
        outs = Engine.run_batch([_inputs(x[sl], dens[sl], lab[sl], lf[p], ld[p])
                                 for p, sl in enumerate(pools)],
                                list(_BUDGETS), [-1] * len(_SIZES))
        lo = 0
        for p, (n, k) in enumerate(zip(_SIZES, _BUDGETS)):
            sl = slice(lo, lo + n)
            want = _reference(x[sl], dens[sl], lab[sl], lf[p], ld[p], k)
            got = outs[p][0].tolist()
            if got != want:
                return (False, f"pool {p}: picks {got} differ from the float64 reference "
                        f"{want}", time.perf_counter() - t0)
            lo += n
    except Exception as err:  # noqa: BLE001 - any failure means "do not use it"
        return False, f"{type(err).__name__}: {str(err)[:300]}", time.perf_counter() - t0
    return True, "", time.perf_counter() - t0


def auto_engine(device) -> str:
    """The engine ``backend="auto"`` takes for dense features on CUDA ``device``:
    ``"triton"`` once :func:`self_check` has passed there in this process, else
    ``"torch"`` (a ``RuntimeWarning`` saying why, once per device)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    key = str(device)
    if key not in _RESULTS:
        _RESULTS[key] = self_check(device)
        ok, reason, secs = _RESULTS[key]
        if ok:
            log.info("backend='auto' on %s: the triton engine (self-check passed in %.3f s)",
                     key, secs)
        else:
            warnings.warn(f"backend='auto' on {key} uses the torch engine: the triton "
                          f"engine's self-check failed ({reason})", RuntimeWarning,
                          stacklevel=4)
    return "triton" if _RESULTS[key][0] else "torch"
