"""The leaf of the package: what every sampler and engine shares, importing
nothing of ``densecore`` (so no module can import it back into a cycle).

* :class:`Selection`, the result of every sampler, and :class:`Sampler`, the
  sampler protocol (``select(features, budget, *, densities=None, labeled=None,
  labeled_features=None, labeled_densities=None, init=None) -> Selection``).
* The checks every sampler makes of its options: :func:`check_metric`,
  :func:`check_backend`, :func:`check_int`, :func:`check_index`.
* The seeded first pick (:func:`first_pick`).
* The one power-of-two scaling rule (:func:`pow2_scale`, :func:`scales`,
  :func:`mul_pow2`, :func:`scaled_features`), used by the greedy engines, the
  nearest-centre search, the refinement and the density estimates.

Shape:
    ``Selection.indices`` ``(budget,)`` int64, ``Selection.radii`` ``(budget,)``,
    ``Selection.ard`` ``(budget,)`` or None.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

__all__ = ["DENSITY_EXP", "METRICS", "SAFE_EXP", "InvalidSelectionError", "Sampler",
           "Selection", "absmax", "array_summary", "check_backend", "check_index", "check_int",
           "check_metric", "first_pick", "mul_pow2", "pow2_below", "pow2_exp", "pow2_scale",
           "scaled_features", "scales"]


# ---------------------------------------------------------------- result and protocol

class InvalidSelectionError(ValueError):
    """An engine returned an index outside ``[0, N)`` (a non-finite ``r`` that the
    checks did not catch): raised instead of returning a wrong selection."""


@dataclass(frozen=True)
class Selection:
    """Result of every sampler.

    Attributes:
        indices: ``(budget,)`` int64 indices into ``features`` in selection order.
            numpy when ``features`` was numpy, else a tensor on its device.
        radii: ``(budget,)`` the value ``r_u`` at the moment ``u`` was picked: the
            squared distance (squared Euclidean, or the cosine distance for
            ``metric="cosine"``) to the nearest labeled or already picked point,
            divided by that point's density (1 for k-center greedy). ``inf`` for a
            first pick made when nothing was labeled. The one meaning for every
            sampler; for the greedy samplers non-increasing. In the features' dtype
            (float32 for 16-bit features; float64 for sparse features).
        ard: ``(budget,)`` float64 average radial distance (Eq. 4) of each pick's
            coverage area, for samplers that compute it (the k-medoids
            refinement); None otherwise.
    """

    indices: Any
    radii: Any
    ard: Any = None

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        """A few values, the shapes and dtypes (never whole arrays).

        Example:
            >>> import numpy as np
            >>> Selection(np.array([4, 0, 9, 2]), np.array([np.inf, 2.5, 1.0, 0.25]))
            Selection(4 picks, indices=[4, 0, 9, ...] (4,) int64, radii=[inf, 2.5, 1, ...] (4,) float64)
        """
        ard = "" if self.ard is None else f", ard={array_summary(self.ard)}"
        return (f"Selection({len(self)} picks, indices={array_summary(self.indices)}, "
                f"radii={array_summary(self.radii)}{ard})")


def array_summary(a, head: int = 3) -> str:
    """``[v0, v1, v2, ...] (N,) dtype`` (and the device for a tensor off the CPU).

    Example:
        >>> array_summary(np.arange(10))
        '[0, 1, 2, ...] (10,) int64'
        >>> array_summary(torch.tensor([0.5, float("inf")]))
        '[0.5, inf] (2,) torch.float32'
    """
    if isinstance(a, torch.Tensor):
        kind = f"{a.dtype}" + ("" if a.device.type == "cpu" else f" {a.device}")
        values = a.detach().reshape(-1)[:head].cpu().tolist()
    else:
        a = np.asarray(a)
        kind = f"{a.dtype}"
        values = a.reshape(-1)[:head].tolist()
    shown = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values)
    more = ", ..." if np.prod(a.shape, dtype=np.int64) > head else ""
    return f"[{shown}{more}] {tuple(a.shape)} {kind}"


@runtime_checkable
class Sampler(Protocol):
    """The sampler protocol: options in ``__init__``, the work in ``select``.

    A sampler that does not use densities accepts and ignores them, so callers
    (:func:`densecore.select_pixels`, the integrations) never inspect a signature.

    Example:
        >>> from densecore import KCenterGreedy, TypicalityGreedy
        >>> isinstance(KCenterGreedy(), Sampler), isinstance(TypicalityGreedy(), Sampler)
        (True, True)
    """

    def select(self, features, budget: int, *, densities=None, labeled=None,
               labeled_features=None, labeled_densities=None, init=None) -> Selection:
        """Pick ``budget`` new points of ``features`` ``(N, D)``; ``densities`` ``(N,)``,
        ``labeled`` ``(M,)`` in-pool indices, ``labeled_features`` ``(L, D)`` and
        ``labeled_densities`` ``(L,)`` for points outside the pool, ``init`` the first
        pick when nothing is labeled. Returns a :class:`Selection` of ``budget`` picks."""
        ...


# ---------------------------------------------------------------- option checks

METRICS = ("euclidean", "cosine")


def check_metric(metric) -> str:
    """Check ``metric`` is one of :data:`METRICS`; return it."""
    if not isinstance(metric, str) or metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")
    return metric


def check_backend(backend, names) -> str:
    """Check ``backend`` is ``"auto"`` or one of ``names``; return it.

    Example:
        >>> check_backend("auto", ("numba",))
        'auto'
    """
    choices = ("auto", *names)
    if not isinstance(backend, str) or backend not in choices:
        raise ValueError(f"backend must be one of {choices}; got {backend!r}")
    return backend


def check_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """Check that ``value`` is an integer (not a bool) and at least ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
            value = int(value.item())
        else:
            raise TypeError(f"{name} must be an integer; got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return value


def check_index(value: Any, n: int, name: str) -> int:
    """Check a single index in ``[0, n)``."""
    value = check_int(value, name)
    if not 0 <= value < n:
        raise ValueError(f"{name} must lie in [0, {n}); got {value}")
    return value


def first_pick(n: int, n_labeled: int, budget: int, init, seed) -> int:
    """The forced first pick: ``init``, or a seeded draw when nothing is labeled; -1 else.

    Example:
        >>> first_pick(10, 0, 3, 4, 0), first_pick(10, 2, 3, None, 0)
        (4, -1)
    """
    seed = check_int(seed, "seed", minimum=0)  # numpy seeds are >= 0
    if init is not None:
        init = check_index(init, n, "init")
        if n_labeled:
            raise ValueError("init applies only when nothing is labeled; got labeled points "
                             f"and init={init}")
        return init
    if n_labeled == 0 and budget > 0:
        return int(np.random.default_rng(seed).integers(n))
    return -1


# ---------------------------------------------------------------- the one scaling rule

def pow2_below(v: float) -> float:
    """The power of two ``2^e`` with ``2^e <= v < 2^(e+1)``; 1.0 for v <= 0 or non-finite."""
    if not (v > 0 and math.isfinite(v)):
        return 1.0
    return math.ldexp(1.0, math.frexp(v)[1] - 1)


# ---------------------------------------------------------------- the one scaling rule
#
# Hostile magnitudes are handled by multiplying by powers of two (exact while the
# result stays normal): features whose largest magnitude lies outside 2^+-SAFE_EXP
# of their compute dtype, densities (and weights) whose largest lies outside
# 2^+-DENSITY_EXP. Squared distances then neither overflow nor underflow, except
# below a rounding of the largest magnitude: the guarantee is relative accuracy with
# respect to the largest magnitude (a cluster of float32 points at 1e-25 beside a
# point at 1 collapses to ties, as it does in any float32 computation). The scales
# are undone on results by exponent arithmetic (:func:`mul_pow2`), never by
# forming ``scale ** 2`` (which overflows a float beyond 2^1023).

# |features| range (powers of two) inside which squared distances neither overflow nor
# underflow in the compute dtype (float32 for 16-bit and float32 features). The 16-bit
# entries are those of the greedy's opt-in ``storage``: the pool is rounded to that
# dtype after scaling, so float16's values must also stay normal (2^-14 .. 65504);
# bfloat16 has float32's exponent range.
SAFE_EXP = {torch.float32: 39, torch.float64: 400, torch.float16: 14, torch.bfloat16: 39}
# densities: the largest is brought into [1, 2) only outside [2^-60, 2^60]
DENSITY_EXP = 60
_STEP_EXP = 100  # one multiplication step: 2^+-100 is a normal float32 and bfloat16


def pow2_exp(s: float) -> int:
    """``e`` with ``2^e <= s < 2^(e+1)`` (``s`` > 0, finite; subnormals included)."""
    return math.frexp(s)[1] - 1


def pow2_scale(big: float, limit: int) -> float:
    """The one scaling rule: 1.0 when ``2^-limit <= big <= 2^limit`` (or ``big`` is 0 or
    not finite), else the power of two ``s`` that brings ``big`` into [1, 2).

    ``s`` is kept within ``[2^-1023, 2^1023]`` (representable in float64), so a
    subnormal ``big`` ends at ``2^-51`` or above, not in [1, 2).

    Example:
        >>> pow2_scale(3.0, 60), pow2_scale(2.0 ** -70 * 1.5, 60) == 2.0 ** 70
        (1.0, True)
    """
    if not (big > 0 and math.isfinite(big)) or 2.0 ** -limit <= big <= 2.0 ** limit:
        return 1.0
    return math.ldexp(1.0, max(-1023, min(1023, -pow2_exp(big))))


def mul_pow2(t, e: int):
    """``t * 2^e`` for a tensor or float, in steps of at most ``2^100`` so that no step
    overflows the dtype (float32 cannot hold ``2^131``) and no intermediate leaves the
    range unless the result does. Exact while the result stays normal; ``t`` itself
    is not modified.

    Example:
        >>> mul_pow2(3.0, 1100) == 3.0 * 2.0 ** 1000 * 2.0 ** 100
        True
    """
    with np.errstate(over="ignore", under="ignore"):  # saturation is the documented result
        while e:
            step = max(-_STEP_EXP, min(_STEP_EXP, e))
            t = t * math.ldexp(1.0, step)
            e -= step
    return t


def scaled_features(x: torch.Tensor, lf: torch.Tensor):
    """A pool ``(N, D)`` and labeled features ``(L, D)`` times the one scale of the
    greedy (:func:`pow2_scale` of their largest magnitude, limits of the compute dtype:
    float64 when either is float64, else float32), and its exponent ``e``: squared
    distances of the results are ``2^(2e)`` times the true ones, exactly. Unscaled
    inputs come back as they are (no copy); scaled ones as float32/float64 copies.

    Example:
        >>> import torch
        >>> x, lf, e = scaled_features(torch.tensor([[3e20]]), torch.zeros(0, 1))
        >>> float(x[0, 0]) * 2.0 ** -e == float(torch.tensor(3e20)), e
        (True, -68)
    """
    big = max((absmax(t) for t in (x, lf) if t.numel()), default=0.0)
    wide = torch.float64 if torch.float64 in (x.dtype, lf.dtype) else torch.float32
    s = pow2_scale(big, SAFE_EXP[wide])
    if s == 1.0:
        return x, lf, 0
    e = pow2_exp(s)
    return mul_pow2(x.to(wide), e), mul_pow2(lf.to(wide), e), e


def absmax(t: torch.Tensor) -> float:
    """``max |t|`` of a non-empty tensor, as a float."""
    lo, hi = torch.aminmax(t)  # no (N, D) temporary, unlike abs()
    return max(-float(lo), float(hi))


# The densities' ratio is bounded so that r = distance / density (distances below
# 2^100 after feature scaling) stays inside float64.
_MAX_DENSITY_RATIO = 2.0 ** 900


def scales(stats, dtype: torch.dtype, storage: torch.dtype | None = None
           ) -> tuple[float, float]:
    """Powers of two ``(fscale, dscale)`` for features and densities: the one scaling
    rule (:func:`pow2_scale`), from ``stats = [max |feature|, max density, min density]``
    (``max density`` 0 when there are none).

    ``fscale`` is 1 unless ``max |feature|`` lies outside the range where squared
    distances are safe in the compute dtype (float32 for 16-bit and float32
    features), or, with a 16-bit ``storage`` (the greedy's opt-in rounding of the
    pool), outside the range where that dtype holds the largest value as a normal
    number (``2^+-14`` for float16, ``2^+-39`` for bfloat16); then it brings the
    largest magnitude into [1, 2). ``dscale`` is 1
    unless the largest density lies outside [2^-60, 2^60]; then it brings it into
    [1, 2) (subnormal densities: as close as float64 allows). Both are exact; the
    argmax decisions do not change. Accuracy is relative to the largest magnitude:
    squared distances below a rounding of ``max |feature|^2`` in the compute dtype
    are not resolved (they were not in the input's own arithmetic either).

    Example:
        >>> scales([3.0, 0.0, math.inf], torch.float32), scales([2.0 ** 50, 1.0, 1.0], torch.float32)
        ((1.0, 1.0), (8.881784197001252e-16, 1.0))
        >>> scales([1e6, 0.0, math.inf], torch.float32, storage=torch.float16)
        (1.9073486328125e-06, 1.0)
    """
    big, dmax, dmin = stats
    limit = SAFE_EXP[storage if storage is not None else
                     torch.float64 if dtype == torch.float64 else torch.float32]
    fscale = pow2_scale(big, limit)
    if dmax == 0:  # no densities (k-center greedy) or an empty pool
        return fscale, 1.0
    if dmax / dmin > _MAX_DENSITY_RATIO:
        raise ValueError(f"densities must span at most a factor 2^900 (r = distance / density "
                         f"must stay finite in float64); got max {dmax:.3g} and min {dmin:.3g}")
    return fscale, pow2_scale(dmax, DENSITY_EXP)
