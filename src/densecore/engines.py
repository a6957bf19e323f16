"""The one switch from ``backend=`` to code: the table of farthest-first engines.

:data:`ENGINES` maps ``(name, layout)`` to a loader of an engine class;
``layout`` is ``"dense"`` (an ``(N, D)`` tensor) or ``"sparse"`` (canonical
CSR rows). Every sampler, :func:`densecore.farthest_first_batch`,
:func:`densecore.distributed.select` and the CLI resolve ``backend=`` here
(:func:`resolve`) and nowhere else. Adding a backend is one module holding an
``Engine`` class and one entry in :data:`ENGINES`.

Every engine is a subclass of :class:`Engine` (``densecore._backends.base``): the
base class declares each capability (``host``, ``weighted``, ``half_on_cpu``,
``search_method``, ``devices``, ``run_batch``) with its default and meaning, and
holds ``threads`` and the forced first pick; an engine implements ``best``,
``row``, ``add_centre`` and ``run``. :func:`register_engine` adds one to the table.

``r`` of a point is its squared distance to the nearest centre divided by that
centre's density; an engine with ``weighted = True`` also accepts
``weights=(N,)`` float64 and picks ``argmax r * weight`` (typicality: the
density on the candidate's side of the link).

"auto" has one rule: ``"numba"`` for CPU features; for dense CUDA features
``"triton"`` once its one-off on-device self-check has passed in this process
(``_backends/triton_check.py``), else ``"torch"`` with a ``RuntimeWarning``
saying why; ``"torch"`` on other devices and for sparse CUDA features. The size
and device rules that choose code outside the table (the nearest-centre search,
KNNDensity's "auto" search, the refinement's kernels) live in
:func:`densecore._rules.kernel`, a leaf module that imports nothing of this table (the
engines the table loads import the search, which reads those rules).

Example:
    >>> import torch
    >>> resolve("auto", "dense", torch.device("cpu")), resolve("torch", "sparse", torch.device("cpu"))
    ('numba', 'torch')
"""

from __future__ import annotations

import importlib

from ._backends.base import Engine
from ._core import check_backend

__all__ = ["BACKENDS", "ENGINES", "Engine", "LAYOUTS", "engine", "names", "register_engine",
           "resolve"]

LAYOUTS = ("dense", "sparse")


def _loader(module: str, attr: str = "Engine", needs: str | None = None):
    """A loader of ``densecore.<module>.<attr>``, imported on first use (no numba or
    triton import before an engine of theirs runs)."""

    def load():
        try:
            mod = importlib.import_module(f"densecore.{module}")
        except ImportError as e:
            if needs is None:
                raise
            raise ImportError(f"backend needs {needs}") from e
        return getattr(mod, attr)

    return load


# (name, layout) -> loader of the engine class. A new backend is one module and one entry.
ENGINES = {
    ("numba", "dense"): _loader("_backends.numba"),
    ("torch", "dense"): _loader("_backends.torch_backend"),
    ("triton", "dense"): _loader("_backends.triton_backend", needs=(
        "triton (it comes with torch's CUDA wheels; else pip install triton)")),
    ("numba", "sparse"): _loader("_backends.sparse_backend"),
    ("torch", "sparse"): _loader("_backends.sparse_backend", "TorchEngine"),
}


# "auto" on CUDA: the triton engine after its one-off on-device self-check, else torch
# (loaded like the engines: by name, on first use)
_CUDA_AUTO = _loader("_backends.triton_check", "auto_engine")


def names(layout: str | None = None) -> tuple:
    """The backend names in the table (of one layout, or of any), in table order.

    Example:
        >>> names("sparse")
        ('numba', 'torch')
    """
    out = []
    for name, lay in ENGINES:
        if (layout is None or lay == layout) and name not in out:
            out.append(name)
    return tuple(out)


# the built-in names, for option lists (the CLI); checks read the table itself
BACKENDS = ("auto", *names())


def check(backend) -> str:
    """Check ``backend`` is ``"auto"`` or a name in the table; return it.

    Example:
        >>> check("torch")
        'torch'
    """
    return check_backend(backend, names())


def resolve(backend, layout: str, device) -> str:
    """The engine name for ``backend``, the features' ``layout`` and ``device``
    (a ``torch.device``).

    Raises:
        ValueError: naming ``backend`` when it is not in the table, or has no
            engine for ``layout``.
    """
    check(backend)
    if backend == "auto":
        # CPU: the numba engine, several times faster than the torch loop at 100,000 x 64,
        # 1,000 picks (benchmarks/speed.py; docs/benchmarks.md). Dense CUDA features: the
        # fused triton engine (1 launch per pick for a whole batch against about 25 per
        # pick and image; estimated, benchmarks/gpu_check.py measures it) once its
        # on-device self-check has passed, else torch with a warning saying why.
        if device.type == "cpu":
            backend = "numba"
        elif device.type == "cuda" and layout == "dense":
            backend = _CUDA_AUTO()(device)
        else:
            backend = "torch"
    if (backend, layout) not in ENGINES:
        raise ValueError(f"backend {backend!r} has no engine for {layout} features; "
                         f"backends with one: {names(layout)}")
    return backend


def engine(name: str, layout: str = "dense"):
    """The engine class of table entry ``(name, layout)`` (imported now).

    Example:
        >>> engine("torch").__name__, engine("numba", "sparse").host
        ('Engine', True)
    """
    return ENGINES[(name, layout)]()


def register_engine(name: str, layout: str, cls: type) -> None:
    """Add engine class ``cls`` (a subclass of :class:`Engine`) to the table as
    ``backend=name`` for ``layout`` features (``"dense"`` or ``"sparse"``); every
    sampler, :func:`densecore.farthest_first_batch`, :func:`densecore.distributed.select`
    and the engine-parametrised tests then reach it. A name already in the table for
    ``layout`` is replaced.

    Raises:
        ValueError: naming ``name`` (empty, or ``"auto"``) or ``layout`` (not in
            :data:`LAYOUTS`).
        TypeError: naming ``cls`` when it is not a subclass of :class:`Engine`.

    Example:
        >>> import densecore
        >>> class Echo(densecore.engines.engine("torch")):
        ...     pass
        >>> densecore.register_engine("echo", "dense", Echo)
        >>> resolve("echo", "dense", None), engine("echo") is Echo
        ('echo', True)
        >>> del ENGINES[("echo", "dense")]
    """
    if not isinstance(name, str) or not name or name == "auto":
        raise ValueError(f"name must be a non-empty engine name other than 'auto'; got {name!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    if not (isinstance(cls, type) and issubclass(cls, Engine)):
        raise TypeError("cls must be a subclass of densecore.engines.Engine (the base class "
                        f"that declares every capability); got {cls!r}")
    ENGINES[(name, layout)] = lambda: cls
