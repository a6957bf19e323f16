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
KNNDensity's "auto" search, the refinement's kernels) live beside it in
:func:`kernel`.

Example:
    >>> import torch
    >>> resolve("auto", "dense", torch.device("cpu")), resolve("torch", "sparse", torch.device("cpu"))
    ('numba', 'torch')
"""

from __future__ import annotations

import importlib

from ._backends.base import Engine
from ._core import check_backend

__all__ = ["APPROX_MIN", "BACKENDS", "ENGINES", "Engine", "FAISS_MIN", "KERNEL_TASKS",
           "LAYOUTS", "engine", "kernel", "names", "register_engine", "resolve"]

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


# ------------------------------------------------------------------ code chosen by size or device
#
# Outside the engine table, three places choose code by the size of their input or the
# device it lives on: the nearest-centre search (where its fast candidates come from),
# KNNDensity's "auto" search (exact or HNSW) and the refinement's kernels (the k-medoids
# steps and the pick radii). Their rules live here, each with the measurement behind it.

#: the nearest-centre search takes faiss candidates from this many centres on (CPU, faiss
#: installed): the greedy's initial assignment of 100,000 x 64 points, 2 cores, numba
#: brute force vs faiss flat index + exact recheck: 0.035 vs 0.035 s at 64 centres,
#: 0.13 vs 0.10 s at 256, 0.68 vs 0.38 s at 2,000 (one timing, recorded in the module
#: docstring of _backends/nearest.py; no benchmark script reruns it).
FAISS_MIN = 256
#: KNNDensity(search="auto") switches to HNSW from this many distinct rows on (CPU, faiss
#: installed): benchmarks/knn.py --duplicates 0.3 (D = 64, k = 10, 16-component mixture
#: with 30 % exact copies, 2 cores at load 11-14) took exact 11.2 / 15.8 / 70.7 / 151 s at
#: 14k / 21k / 35k / 56k distinct rows, HNSW 18.6 / 23.4 / 54.5 / 115 s at recall@10
#: 0.98 / 0.98 / 0.97 / 0.93: the crossover lies between 21k and 35k
#: (benchmarks/README.md, "Approximate k-NN density"; results/knn_threshold_dup.json).
APPROX_MIN = 30_000
KERNEL_TASKS = ("knn", "radii", "refine", "search")


def kernel(task: str, device, size: int = 0, *, engine_name: str | None = None,
           faiss: bool = False) -> str:
    """The one rule by which a size or a device chooses code outside the engine table.

    Args:
        task: ``"search"`` (the nearest-centre search's candidates; ``size`` = number
            of centres): ``"brute"`` (exact numba brute force), ``"faiss"`` or
            ``"torch"`` (GEMM candidates on the device); ``"knn"``
            (``KNNDensity(search="auto")``; ``size`` = distinct rows): ``"exact"`` or
            ``"hnsw"``; ``"refine"`` (the k-medoids kernels of the engine
            ``engine_name``) and ``"radii"`` (the pick radii's prefix minimum):
            ``"host"`` (numba on host arrays) or ``"device"`` (torch where the data is).
        device: the ``torch.device`` of the data.
        size: the size the rule reads (see ``task``).
        engine_name: the resolved engine, for ``"refine"``.
        faiss: whether faiss is installed (the caller asks
            ``densecore._backends.faiss_backend.available()``; this module imports
            nothing but ``densecore._core``).

    Example:
        >>> import torch
        >>> cpu = torch.device("cpu")
        >>> kernel("search", cpu, 10, faiss=True), kernel("search", cpu, 300, faiss=True)
        ('brute', 'faiss')
        >>> kernel("knn", cpu, 100, faiss=True), kernel("radii", cpu)
        ('exact', 'host')
        >>> kernel("refine", cpu, engine_name="torch")
        'device'
    """
    if task == "search":
        if device.type != "cpu":  # GEMM candidates where the data is (no host copy)
            return "torch"
        return "faiss" if size >= FAISS_MIN and faiss else "brute"
    if task == "knn":
        # HNSW is a host faiss index: tensors off the CPU stay exact where they are
        return "hnsw" if device.type == "cpu" and size >= APPROX_MIN and faiss else "exact"
    if task == "refine":
        # not a measured threshold: a host engine (numba) works on host arrays, so its
        # refinement runs the numba kernels; any other keeps the data on its device
        return "host" if engine(engine_name).host else "device"
    if task == "radii":
        # not a measured threshold: the numba kernel reads host arrays only; device
        # tensors stay on their device
        return "host" if device.type == "cpu" else "device"
    raise ValueError(f"task must be one of {KERNEL_TASKS}; got {task!r}")
