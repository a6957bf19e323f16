"""The size and device rules that choose code outside the engine table.

Three places choose code by the size of their input or the device it lives on: the
nearest-centre search (where its fast candidates come from, and whether its numba
brute force skips centres), KNNDensity's "auto" search (exact or HNSW) and the
refinement's kernels (the k-medoids steps and the pick radii). Their rules live here,
in :func:`kernel`, each threshold with the measurement behind it. This module imports
nothing of the package: the search (``densecore._backends.nearest``) reads it, and the
engines that :data:`densecore.engines.ENGINES` loads import the search, so a rule kept
beside the table would close an import cycle through the table's loaders.

Example:
    >>> import torch
    >>> kernel("search", torch.device("cpu"), FAISS_MIN, faiss=True)
    'faiss'
"""

from __future__ import annotations

__all__ = ["APPROX_MIN", "FAISS_MIN", "KERNEL_TASKS", "PRUNE_MAX", "PRUNE_ROWS_PER_CENTRE",
           "kernel"]

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
#: the numba brute force skips centres by the triangle inequality (``"pruned"``) up to
#: this many centres, with at least PRUNE_ROWS_PER_CENTRE queries per centre, where the
#: centres' own L x L distances cost little beside the queries' rows x L: 100,000 x 64
#: queries against 100 centres (the scikit-activeml case of
#: benchmarks/skactiveml_strategy.py), 2 cores: 45 ms plain, 30 ms pruned (72 % of the
#: centres skipped). Not measured at the bounds: they keep the L x L table small (8 MB)
#: and its cost a quarter of the queries' at most.
PRUNE_MAX = 1024
PRUNE_ROWS_PER_CENTRE = 4
KERNEL_TASKS = ("brute", "knn", "radii", "refine", "search")


def kernel(task: str, device, size: int = 0, *, host: bool = False,
           faiss: bool = False, queries: int = 0) -> str:
    """The one rule by which a size or a device chooses code outside the engine table.

    Args:
        task: ``"search"`` (the nearest-centre search's candidates; ``size`` = number
            of centres): ``"brute"`` (exact numba brute force), ``"faiss"`` or
            ``"torch"`` (GEMM candidates on the device); ``"knn"``
            (``KNNDensity(search="auto")``; ``size`` = distinct rows): ``"exact"`` or
            ``"hnsw"``; ``"refine"`` (the k-medoids kernels of an engine whose
            ``host`` capability is ``host``) and ``"radii"`` (the pick radii's prefix minimum):
            ``"host"`` (numba on host arrays) or ``"device"`` (torch where the data is);
            ``"brute"`` (the search's numba brute force; ``size`` = number of centres,
            ``queries`` = rows it answers): ``"pruned"`` (skips centres by the triangle
            inequality, the same answer) or ``"plain"``.
        device: the ``torch.device`` of the data.
        size: the size the rule reads (see ``task``).
        host: the resolved engine's ``host`` capability, for ``"refine"`` (the caller
            reads it from the table: this module imports nothing of it).
        faiss: whether faiss is installed (the caller asks
            ``densecore._backends.faiss_backend.available()``; this module imports
            nothing of the package).
        queries: the rows the brute force answers, for ``"brute"``.

    Example:
        >>> import torch
        >>> cpu = torch.device("cpu")
        >>> kernel("search", cpu, 10, faiss=True), kernel("search", cpu, 300, faiss=True)
        ('brute', 'faiss')
        >>> kernel("knn", cpu, 100, faiss=True), kernel("radii", cpu)
        ('exact', 'host')
        >>> kernel("refine", cpu, host=False)
        'device'
        >>> kernel("brute", cpu, 100, queries=100_000), kernel("brute", cpu, 100, queries=300)
        ('pruned', 'plain')
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
        return "host" if host else "device"
    if task == "brute":
        return "pruned" if size <= PRUNE_MAX and queries >= PRUNE_ROWS_PER_CENTRE * size \
            else "plain"
    if task == "radii":
        # not a measured threshold: the numba kernel reads host arrays only; device
        # tensors stay on their device
        return "host" if device.type == "cpu" else "device"
    raise ValueError(f"task must be one of {KERNEL_TASKS}; got {task!r}")
