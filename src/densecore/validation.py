"""Every input check of densecore, in one place.

Errors subclass :class:`ValueError` or :class:`TypeError`, name the argument,
and say what was expected and what was received, e.g.
``densities must be strictly positive; got min 0.0 at index 17``.

Checks that scan values (NaN/inf, positivity) force a device synchronisation
on CUDA tensors; public functions expose ``validate=False`` to skip them for
one call. There is no global switch.

Shape:
    Features are ``(N, D)`` floating arrays, densities ``(N,)`` strictly
    positive and finite, index arrays ``(M,)`` integer.
"""

from __future__ import annotations

import datetime
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ._core import check_index, check_int

__all__ = [
    "ArrayLike",
    "all_finite",
    "as_tensor_like",
    "check_bool",
    "check_budget",
    "check_class_ids",
    "check_densities",
    "check_error",
    "check_feature_map",
    "check_features",
    "check_finite_float",
    "check_has_data",
    "check_index",
    "check_indices",
    "check_int",
    "check_pool",
    "check_kernel_size",
    "check_lengths",
    "check_logits",
    "check_mask",
    "check_per_pool",
    "check_positive_float",
    "check_same_device",
    "check_same_on_ranks",
    "check_selection",
    "check_storage",
    "check_timeout",
    "value_range",
]

ArrayLike = Any  # numpy.ndarray or torch.Tensor

_FLOAT_TORCH = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def as_tensor_like(x: ArrayLike, name: str) -> torch.Tensor:
    """Return ``x`` as a torch tensor without copying where possible.

    Args:
        x: a numpy array or torch tensor.
        name: the argument name used in error messages.

    Returns:
        A tensor sharing memory with ``x`` when ``x`` is a contiguous numpy array
        in the host's byte order (one native copy otherwise).
    """
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise TypeError(f"{name} must be a numeric array; got dtype object")
        if not x.dtype.isnative:  # big-endian on a little-endian host: torch takes native only
            x = x.astype(x.dtype.newbyteorder("="))
        # ascontiguousarray turns a 0-d array into shape (1,): keep the shape for the messages
        return torch.from_numpy(np.ascontiguousarray(x).reshape(x.shape))
    raise TypeError(
        f"{name} must be a numpy array or a torch tensor; got {type(x).__name__}"
    )


def check_has_data(t: torch.Tensor, name: str) -> None:
    """Raise TypeError for a tensor without data (the ``meta`` device)."""
    if t.device.type == "meta":
        raise TypeError(f"{name} must hold data; got a tensor on the meta device")


def check_positive_float(value: Any, name: str) -> float:
    """Check that ``value`` is a finite real number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0; got {value}")
    return value


def check_bool(value: Any, name: str) -> bool:
    """Check that ``value`` is a real boolean (``True``/``False`` or a numpy bool).

    A truthy string such as ``"no"`` or a number is refused rather than read as
    True: ``from_logits="no"`` must not soft-max probabilities a second time.

    Example:
        >>> check_bool(True, "from_logits"), check_bool(np.bool_(False), "validate")
        (True, False)
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {type(value).__name__} {value!r}")
    return bool(value)


def check_choice(value: Any, choices: tuple, name: str) -> str:
    """Check that ``value`` is one of the strings in ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")
    return value


#: the ``storage=`` choices of the greedy samplers (None: the features' own dtype)
STORAGE = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def check_storage(storage: Any, name: str = "storage") -> torch.dtype | None:
    """Check the greedy's ``storage`` option: None or a key of :data:`STORAGE`; return
    the torch dtype it names (None for None).

    Example:
        >>> check_storage("bfloat16"), check_storage(None)
        (torch.bfloat16, None)
    """
    if storage is None:
        return None
    if not isinstance(storage, str) or storage not in STORAGE:
        raise ValueError(f"{name} must be None, {' or '.join(map(repr, STORAGE))} (the "
                         f"pool's features rounded once to 16 bits); got {storage!r}")
    return STORAGE[storage]


def check_fraction(value: Any, name: str) -> float:
    """Check that ``value`` is a real number in ``(0, 1]`` (a recall, a share)."""
    value = check_positive_float(value, name)
    if value > 1:
        raise ValueError(f"{name} must be in (0, 1]; got {value}")
    return value


def check_finite_float(value: Any, name: str, *, minimum: float | None = None) -> float:
    """Check that ``value`` is a finite real number (not a bool), at least ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return value


def check_class_ids(target: torch.Tensor, n_classes: int, ignore_index: int,
                    name: str = "target") -> None:
    """Raise ValueError unless every entry of ``target`` is in ``[0, n_classes)`` or
    ``ignore_index`` (one reduction, a device sync on CUDA)."""
    bad = (target != ignore_index) & ((target < 0) | (target >= n_classes))
    if bool(bad.any()):
        v = int(target[bad].reshape(-1)[0])
        raise ValueError(f"{name} must hold class ids in [0, {n_classes}) or ignore_index "
                         f"{ignore_index}; got {v}")


def _host_view(t: torch.Tensor):
    """A numpy view of a CPU float32/float64 tensor, else None.

    Scans of such tensors run in numpy, on one thread: a torch parallel region
    on a busy machine waits for its slowest (descheduled) thread, which cost
    ``farthest_first`` on 5,000 x 64 points a median 0.47 s against 0.12 s with
    one torch thread (load 11 on 2 cores).
    """
    if t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64):
        return t.detach().numpy()
    return None


def all_finite(t: torch.Tensor) -> bool:
    """Whether every value of ``t`` is finite (no NaN or inf).

    Example:
        >>> all_finite(torch.tensor([1.0, 2.0])), all_finite(torch.tensor([1.0, float("nan")]))
        (True, False)
    """
    a = _host_view(t)
    if a is not None:
        return bool(np.isfinite(a).all())
    return bool(torch.isfinite(t).all())


def value_range(t: torch.Tensor) -> tuple[float, float]:
    """``(min, max)`` of a non-empty tensor as floats, without an ``(N, D)`` temporary.

    Example:
        >>> value_range(torch.tensor([[3.0, -1.0], [2.0, 5.0]]))
        (-1.0, 5.0)
    """
    a = _host_view(t)
    if a is not None:
        return float(a.min()), float(a.max())
    lo, hi = torch.aminmax(t)
    return float(lo), float(hi)


def check_features(x: ArrayLike, name: str = "features", *, validate: bool = True,
                   dim: int | None = None) -> torch.Tensor:
    """Check an ``(N, D)`` floating feature matrix.

    Args:
        x: ``(N, D)`` float16/bfloat16/float32/float64 array or tensor.
        name: argument name for messages.
        validate: scan values for NaN/inf (a device sync on CUDA).
        dim: required ``D`` if given.

    Returns:
        ``(N, D)`` tensor view of ``x``.
    """
    t = as_tensor_like(x, name)
    check_has_data(t, name)
    if t.dtype not in _FLOAT_TORCH:
        raise TypeError(f"{name} must be a floating array; got dtype {x.dtype}")
    if t.ndim != 2:
        raise ValueError(f"{name} must have shape (N, D); got shape {tuple(t.shape)}")
    if t.shape[1] == 0:
        raise ValueError(f"{name} must have at least one feature column (D >= 1); got shape "
                         f"{tuple(t.shape)}")
    if dim is not None and t.shape[1] != dim:
        raise ValueError(
            f"{name} must have D = {dim} columns to match features; got shape {tuple(t.shape)}"
        )
    if validate and t.numel():
        # in row blocks: a full (N, D) boolean mask would cost N*D bytes at peak
        step = max(1, (1 << 22) // max(t.shape[1], 1))
        for s in range(0, t.shape[0], step):
            if not all_finite(t[s:s + step]):
                bad = ~torch.isfinite(t[s:s + step])
                row = s + int(bad.any(dim=1).nonzero()[0, 0])
                raise ValueError(f"{name} must be finite; got NaN or inf in row {row}")
    return t


def _check_vector(d: ArrayLike, n: int, name: str, validate: bool, strict: bool) -> torch.Tensor:
    t = as_tensor_like(d, name)
    check_has_data(t, name)
    if t.dtype not in _FLOAT_TORCH:
        raise TypeError(f"{name} must be a floating array; got dtype {d.dtype}")
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},); got shape {tuple(t.shape)}")
    if validate and n:
        v = t.detach()
        if not all_finite(v):
            i = int((~torch.isfinite(v)).nonzero()[0, 0])
            raise ValueError(f"{name} must be finite; got {float(v[i])} at index {i}")
        a = _host_view(v)
        i = int(a.argmin()) if a is not None else int(torch.argmin(v))
        if float(v[i]) < 0 or (strict and float(v[i]) == 0):
            what = "strictly positive" if strict else "non-negative"
            raise ValueError(f"{name} must be {what}; got min {float(v[i])} at index {i}")
    return t


def check_densities(d: ArrayLike, n: int, name: str = "densities", *,
                    validate: bool = True) -> torch.Tensor:
    """Check an ``(N,)`` vector of strictly positive, finite densities."""
    return _check_vector(d, n, name, validate, strict=True)


def check_indices(idx: ArrayLike | None, n: int, name: str, *,
                  unique: bool = True) -> torch.Tensor:
    """Check a ``(M,)`` integer index array with values in ``[0, n)``.

    Returns:
        ``(M,)`` int64 tensor (empty when ``idx`` is None).
    """
    if idx is None:
        return torch.empty(0, dtype=torch.int64)
    if isinstance(idx, (list, tuple)):
        bad = next((v for v in idx if isinstance(v, (bool, np.bool_))
                    or not isinstance(v, (numbers.Integral, np.integer))), None)
        if bad is not None:
            raise TypeError(f"{name} must hold integer indices; got {type(bad).__name__} "
                            f"{bad!r} (a bool mask or floats are not indices)")
        idx = np.asarray([int(v) for v in idx], dtype=np.int64) if len(idx) else \
            np.empty(0, np.int64)
    t = as_tensor_like(idx, name)
    check_has_data(t, name)
    if t.dtype in _FLOAT_TORCH or t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must be an integer index array; got dtype {idx.dtype}")
    if t.ndim != 1:
        raise ValueError(f"{name} must have shape (M,); got shape {tuple(t.shape)}")
    t = t.to(torch.int64)
    if t.numel():
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name} must lie in [0, {n}); got {bad}")
        if unique:
            u = torch.unique(t)
            if u.numel() != t.numel():
                srt, _ = torch.sort(t)
                dup = int(srt[1:][srt[1:] == srt[:-1]][0])
                raise ValueError(f"{name} must not repeat an index; got {dup} more than once")
    return t


def check_budget(budget: Any, available: int, name: str = "budget") -> int:
    """Check ``0 <= budget <= available`` (the number of selectable points)."""
    budget = check_int(budget, name, minimum=0)
    if budget > available:
        raise ValueError(
            f"{name} must be at most the number of unlabeled points ({available}); got {budget}"
        )
    return budget


def check_same_device(reference: torch.Tensor, *, reference_name: str = "features",
                      **others: torch.Tensor | None) -> None:
    """Raise when any tensor in ``others`` lives on another device than ``reference``;
    the message names both arguments (``reference_name`` is the reference's).

    Example:
        >>> import torch
        >>> check_same_device(torch.zeros(1), reference_name="probs", features=torch.zeros(1))
        >>> check_same_device(torch.zeros(1), reference_name="probs",
        ...                   features=torch.zeros(1, device="meta"))
        Traceback (most recent call last):
        ...
        ValueError: features must be on the same device as probs (cpu); got meta
    """
    for name, t in others.items():
        if t is None or not isinstance(t, torch.Tensor):
            continue
        if t.device != reference.device:
            raise ValueError(
                f"{name} must be on the same device as {reference_name} "
                f"({reference.device}); got {t.device}"
            )


def check_feature_map(x: Any, name: str = "x", *, channels: int | None = None) -> torch.Tensor:
    """Check a ``(B, C, H, W)`` floating torch tensor (with ``C = channels`` if given)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor (B, C, H, W); got {type(x).__name__}")
    if x.dtype not in _FLOAT_TORCH:
        raise TypeError(f"{name} must be a floating tensor; got dtype {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W); got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{name} must have C = {channels} channels; got shape {tuple(x.shape)}"
        )
    return x


def _check_odd(value: Any, name: str, minimum: int, why: str) -> int:
    value = check_int(value, name, minimum=minimum)
    if value % 2 == 0:
        raise ValueError(f"{name} must be odd ({why}); got {value}")
    return value


def check_kernel_size(value: Any, name: str = "kernel_size") -> int:
    """Check an odd kernel size >= 3 (a K x K window with a centre tap)."""
    return _check_odd(value, name, 3, "the window needs a centre tap")


def check_mask(mask: ArrayLike, shape: tuple[int, int], name: str = "mask") -> np.ndarray:
    """Check an ``(H, W)`` boolean mask (numpy or torch, any device).

    Returns:
        ``(H, W)`` C-contiguous numpy bool array (a host copy for CUDA tensors).
    """
    if isinstance(mask, torch.Tensor):
        if mask.dtype != torch.bool:
            raise TypeError(f"{name} must be a bool mask; got dtype {mask.dtype}")
        mask = mask.detach().cpu().numpy()
    elif not isinstance(mask, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or a torch tensor; "
                        f"got {type(mask).__name__}")
    elif mask.dtype != np.bool_:
        raise TypeError(f"{name} must be a bool mask; got dtype {mask.dtype}")
    if mask.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got shape {mask.shape}")
    return np.ascontiguousarray(mask)


def check_error(e: ArrayLike, n: int, name: str = "raw_error", *,
                validate: bool = True) -> torch.Tensor:
    """Check an ``(N,)`` floating vector of finite, non-negative errors (distance estimates)."""
    return _check_vector(e, n, name, validate, strict=False)


def check_same_on_ranks(values: list, name: str) -> Any:
    """Check that every process rank passed the same ``name``; return the common value.

    Args:
        values: one value per rank, in rank order (gathered by the caller).
        name: argument name for messages.
    """
    for k, v in enumerate(values):
        if v != values[0]:
            raise ValueError(f"{name} must be the same on every rank; got {values[0]!r} on "
                             f"rank 0 and {v!r} on rank {k}")
    return values[0]


def _class_maps(x: Any, name: str) -> torch.Tensor:
    """``x`` as a floating ``(B, C, H, W)`` or ``(C, H, W)`` tensor (class dim ``-3``,
    at least one class): the shape and dtype checks of probabilities and logits."""
    t = as_tensor_like(x, name)
    if t.dtype not in _FLOAT_TORCH:
        raise TypeError(f"{name} must be a floating array; got dtype {x.dtype}")
    if t.ndim not in (3, 4) or t.shape[-3] < 1:
        raise ValueError(f"{name} must have shape (B, C, H, W) or (C, H, W); "
                         f"got shape {tuple(t.shape)}")
    return t


def check_probabilities(p: Any, name: str = "probs", *, validate: bool = True,
                        atol: float | None = None) -> torch.Tensor:
    """Check ``(B, C, H, W)`` or ``(C, H, W)`` class probabilities (class dim ``-3``).

    With ``validate`` the values must lie in ``[0, 1 + atol]`` and sum to 1 over
    classes within ``atol`` (default 1e-2 for 16-bit dtypes, 1e-3 otherwise); no
    value may be negative, not even by a rounding (a softmax never gives one, and
    the entropy ``-p log p`` of a negative ``p`` is NaN; ``-0.0`` passes). Logits
    fail this check, and the message says to pass ``from_logits=True``.
    """
    t = _class_maps(p, name)
    if validate and t.numel():
        tol = atol if atol is not None else (
            1e-2 if t.dtype in (torch.float16, torch.bfloat16) else 1e-3)
        v = t.detach()  # the checks read values only; no graph, no grad warning
        lo, hi = float(v.min()), float(v.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError(f"{name} must be finite; got NaN or inf")
        err = float((v.float().sum(-3) - 1.0).abs().max())
        if lo < 0 or hi > 1 + tol or err > tol:
            raise ValueError(
                f"{name} must be probabilities in [0, 1] summing to 1 over dim -3 "
                f"(pass from_logits=True for logits); got min {lo:.4g}, max {hi:.4g}, "
                f"largest |sum - 1| {err:.3g}")
    return t


def check_logits(x: Any, name: str = "probs", *, validate: bool = True) -> torch.Tensor:
    """Check ``(B, C, H, W)`` or ``(C, H, W)`` class logits (class dim ``-3``).

    With ``validate`` every logit must be finite: a NaN or an infinity makes
    the softmax NaN (or, through a score's window sums, finite but wrong).
    """
    t = _class_maps(x, name)
    if validate and t.numel() and not all_finite(t.detach()):
        v = t.detach().reshape(-1)
        i = int((~torch.isfinite(v)).nonzero()[0, 0])
        raise ValueError(f"{name} must be finite logits (from_logits=True); got {float(v[i])} "
                         f"at flat index {i}")
    return t


def check_bool_map(m: Any, shape: tuple, reference: torch.Tensor, name: str) -> torch.Tensor:
    """Check a bool tensor of ``shape`` on ``reference``'s device (no host copy)."""
    if not isinstance(m, torch.Tensor):
        m = as_tensor_like(m, name)
    if m.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool mask; got dtype {m.dtype}")
    if tuple(m.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got shape {tuple(m.shape)}")
    if m.device != reference.device:
        raise ValueError(f"{name} must be on {reference.device}; got {m.device}")
    return m


def check_region_size(value: Any, name: str = "region_size") -> int:
    """Check an odd region side length >= 1 (a block centred on its pixel)."""
    return _check_odd(value, name, 1, "a block centred on the pick")


def check_pool(features, densities=None, labeled=None, labeled_features=None,
               labeled_densities=None, *, name: str = "features", validate: bool = True):
    """Check the inputs of Algorithm 1 for one pool.

    Args:
        features: ``(N, D)`` float pool.
        densities: ``(N,)`` > 0 or None (k-center greedy).
        labeled: ``(M,)`` in-pool labeled indices or None.
        labeled_features: ``(L, D)`` labeled points outside the pool or None.
        labeled_densities: ``(L,)`` > 0, required with ``densities`` and ``labeled_features``.
        name: the argument name of ``features`` in messages.
        validate: scan values for NaN/inf and non-positive densities.

    Returns:
        ``(x (N, D), dens (N,) or None, labeled (M,) int64, labeled_features (L, D),
        labeled_densities (L,) or None)``, all tensors on the features' device.
    """
    if isinstance(features, torch.Tensor):
        check_same_device(features, densities=densities, labeled=labeled,
                          labeled_features=labeled_features,
                          labeled_densities=labeled_densities)
    x = check_features(features, name, validate=validate)
    n, dim = x.shape
    dev = x.device
    dens = None
    if densities is not None:
        dens = check_densities(densities, n, validate=validate).to(dev)
    lab = check_indices(labeled, n, "labeled").to(dev)
    if labeled_features is not None:
        lf = check_features(labeled_features, "labeled_features", validate=validate,
                            dim=dim).to(dev)
    else:
        lf = x.new_empty((0, dim))
    ld = check_labeled_densities(labeled_densities, lf.shape[0], has_densities=dens is not None,
                                 has_labeled_features=labeled_features is not None,
                                 validate=validate)
    if dens is not None:
        ld = dens.new_empty(0) if ld is None else ld.to(dev)
    return x, dens, lab, lf, ld


def check_labeled_densities(labeled_densities, n_labeled: int, *, has_densities: bool,
                            has_labeled_features: bool, validate: bool = True):
    """The rules for ``labeled_densities`` of Algorithm 1's out-of-pool labeled points.

    Args:
        labeled_densities: ``(L,)`` > 0 or None.
        n_labeled: ``L``, the number of labeled features outside the pool.
        has_densities: whether the pool has densities (density-aware greedy).
        has_labeled_features: whether ``labeled_features`` was given.
        validate: scan values for NaN/inf and non-positive densities.

    Returns:
        The checked ``(L,)`` tensor, or None where none was given (allowed only
        without densities or without out-of-pool labeled points).
    """
    if labeled_densities is not None and not has_labeled_features:
        raise ValueError("labeled_densities was given without labeled_features")
    if not has_densities:
        if labeled_densities is not None:
            raise ValueError("labeled_densities needs densities for the pool (density-aware "
                             "greedy); use k-center greedy without densities")
        return None
    if labeled_densities is None:
        if n_labeled:
            raise ValueError("labeled_densities is required when labeled_features and "
                             "densities are given")
        return None
    return check_densities(labeled_densities, n_labeled, "labeled_densities",
                           validate=validate)


def check_selection(selection: Any, budget: int, n: int, sampler: str) -> torch.Tensor:
    """Check what a sampler returned: ``budget`` distinct integer indices in ``[0, n)``.

    Args:
        selection: the sampler's result (an object with ``indices``).
        budget: the number of picks asked for.
        n: the number of candidates the sampler was given.
        sampler: the sampler's name for messages.

    Returns:
        ``(budget,)`` int64 tensor of the indices.
    """
    what = f"sampler {sampler} must return exactly {budget} distinct indices in [0, {n})"
    idx = getattr(selection, "indices", None)
    if idx is None:
        raise TypeError(f"{what} in a Selection; got {type(selection).__name__}")
    try:
        t = as_tensor_like(idx, "selection indices")
    except TypeError as err:
        raise TypeError(f"{what}; got indices of type {type(idx).__name__}") from err
    if t.dtype in _FLOAT_TORCH or t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{what}; got dtype {t.dtype}")
    t = t.reshape(-1).to(torch.int64) if t.ndim <= 1 else t
    if t.ndim != 1 or t.numel() != budget:
        raise ValueError(f"{what}; got shape {tuple(t.shape)}")
    if budget:
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= n:
            raise ValueError(f"{what}; got {lo if lo < 0 else hi}")
        if torch.unique(t).numel() != budget:
            raise ValueError(f"{what}; got a repeated index")
    return t


def check_timeout(timeout: Any, name: str = "timeout") -> datetime.timedelta:
    """Check a timeout given in seconds (> 0) or as a ``datetime.timedelta``."""
    if isinstance(timeout, datetime.timedelta):
        seconds = timeout.total_seconds()
    else:
        seconds = check_positive_float(timeout, name)
    if not seconds > 0:
        raise ValueError(f"{name} must be > 0 seconds; got {seconds}")
    return datetime.timedelta(seconds=seconds)


def is_sparse(x: Any) -> bool:
    """True for a scipy sparse matrix/array or a sparse (COO/CSR) torch tensor.

    scipy is never imported for the check.
    """
    import sys

    if isinstance(x, torch.Tensor):
        return x.layout in (torch.sparse_coo, torch.sparse_csr)
    sp = sys.modules.get("scipy.sparse")
    return sp is not None and sp.issparse(x)


def check_sparse_features(x: Any, name: str = "features", *, validate: bool = True,
                          dim: int | None = None):
    """Check an ``(N, D)`` sparse floating matrix (scipy, or a COO/CSR torch tensor).

    Args:
        x: scipy sparse matrix/array or sparse torch tensor, float16/32/64 values.
        name: argument name for messages.
        validate: scan the stored values for NaN/inf.
        dim: required ``D`` if given.

    Returns:
        ``x`` itself (not copied).
    """
    if not is_sparse(x):
        raise TypeError(f"{name} must be a sparse matrix; got {type(x).__name__}")
    shape = tuple(x.shape)
    if len(shape) != 2:
        raise ValueError(f"{name} must have shape (N, D); got shape {shape}")
    floating = (x.dtype in _FLOAT_TORCH if isinstance(x, torch.Tensor)
                else x.dtype in (np.float16, np.float32, np.float64))
    if not floating:
        raise TypeError(f"{name} must be a floating sparse matrix; got dtype {x.dtype}")
    if shape[1] == 0:
        raise ValueError(f"{name} must have at least one column; got shape {shape}")
    if dim is not None and shape[1] != dim:
        raise ValueError(
            f"{name} must have D = {dim} columns to match features; got shape {shape}")
    if validate:
        if isinstance(x, torch.Tensor):
            vals = x.values() if x.layout == torch.sparse_csr else x.coalesce().values()
            bad = vals.numel() and not bool(torch.isfinite(vals).all())
        else:
            data = x.tocsr().data
            bad = data.size and not np.isfinite(data).all()
        if bad:
            raise ValueError(f"{name} must be finite; got NaN or inf among its stored values")
    return x


def check_lengths(lengths: Any, n_total: int, name: str = "lengths") -> list[int]:
    """Check ``(P,)`` non-negative pool sizes that add up to ``n_total`` rows (``P = 0``:
    no pools, for no rows)."""
    if isinstance(lengths, (list, tuple)) and not lengths:
        lengths = np.empty(0, np.int64)  # torch makes an empty list float32
    if not isinstance(lengths, (list, tuple, np.ndarray, torch.Tensor)):
        raise TypeError(f"{name} must be a 1-D integer sequence (list, tuple, numpy array or "
                        f"tensor); got {type(lengths).__name__}")
    try:
        t = torch.as_tensor(as_tensor_like(lengths, name) if isinstance(lengths, np.ndarray)
                            else lengths)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name} must be a 1-D integer sequence; got {lengths!r:.80}") from e
    if t.ndim != 1 or t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must be a 1-D integer sequence; got {t.dtype} "
                        f"{tuple(t.shape)}")
    out = [int(v) for v in t.tolist()]
    if out and min(out) < 0:
        raise ValueError(f"{name} must be >= 0; got {min(out)} at pool {out.index(min(out))}")
    if sum(out) != n_total:
        raise ValueError(f"{name} must add up to the {n_total} feature rows; got {sum(out)}")
    return out


def check_steps(value: Any, name: str, unit: str) -> list[int]:
    """A non-empty, strictly increasing sequence of integers ``>= 0`` (the training
    steps at which selection rounds run), as a list; errors name ``name`` and ``unit``.

    Example:
        >>> check_steps([10, 20], "rounds_at", "global steps")
        [10, 20]
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ValueError(f"{name} must be a non-empty list of {unit}; got {value!r}")
    steps = [check_int(s, f"{name}[{i}]", minimum=0) for i, s in enumerate(value)]
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"{name} must be strictly increasing integers >= 0; got {steps!r}")
    return steps


def check_per_pool(value: Any, n_pools: int, name: str, *, minimum: int | None = None
                   ) -> list[int]:
    """An integer for every pool: one integer (the same for all) or ``(P,)`` of them."""
    if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool):
        return [check_int(value, name, minimum=minimum)] * n_pools
    vals = (value.tolist() if isinstance(value, (torch.Tensor, np.ndarray))
            else list(value) if isinstance(value, (list, tuple)) else None)
    if vals is None:
        raise TypeError(f"{name} must be an integer or a sequence of {n_pools} integers; "
                        f"got {type(value).__name__}")
    if len(vals) != n_pools:
        raise ValueError(f"{name} must have one entry per pool ({n_pools}); got {len(vals)}")
    return [check_int(v, f"{name}[{i}]", minimum=minimum) for i, v in enumerate(vals)]


def renamed(value: Any, old_value: Any, name: str, old_name: str, default: Any) -> Any:
    """The value of an argument renamed from ``old_name`` to ``name``: ``old_value``,
    with a DeprecationWarning, when the caller used the old name (it is not None),
    else ``value``. Both given (``value`` not its ``default``) raises TypeError.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as w:
        ...     warnings.simplefilter("always")
        ...     renamed("auto", "torch", "search_backend", "backend", "auto"), len(w)
        ('torch', 1)
    """
    if old_value is None:
        return value
    if value != default:
        raise TypeError(f"got both {name}={value!r} and {old_name}={old_value!r}; "
                        f"{old_name} is the former name of {name}: pass {name} only")
    warnings.warn(f"{old_name}= is deprecated here and will be removed in the next release; "
                  f"use {name}= (the same values)", DeprecationWarning, stacklevel=3)
    return old_value
