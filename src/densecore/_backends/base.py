"""The engine type: every capability an engine of the table declares, with its default.

An engine runs Algorithm 1 on one pool: ``r_t = min_k ||f_t - f_k||^2 / d_k`` over
the centres (labeled and picked points), each pick ``argmax r`` (ties: the lowest
index). The driver (:mod:`densecore.greedy`, :mod:`densecore.batch`,
:mod:`densecore.distributed`, :mod:`densecore.refine`, :mod:`densecore.typicality`)
builds one per pool and reads what it can do from the class attributes below,
never from a ``getattr`` with a default. :func:`densecore.register_engine` admits
subclasses only, so every attribute is there.

An engine implements four methods (:meth:`Engine.best`, :meth:`Engine.row`,
:meth:`Engine.add_centre`, :meth:`Engine.run`); the base class holds the rest:
:meth:`Engine.threads` and the forced first pick (:meth:`Engine.first`, made once
for every engine through its own ``add_centre``).

Shape:
    ``x`` ``(N, D)``, ``dens`` ``(N,)`` float64, ``centres`` ``(L, D)``, ``cdens``
    ``(L,)`` float64, ``excluded`` ``(N,)`` bool; a point's row ``(D + 1,)`` float64
    (features, then density); ``best()`` ``(2,)`` float64 ``(r, index)``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Callable, ClassVar

import torch

from . import threads as _threads

__all__ = ["Engine"]


class Engine(ABC):
    """Base class of the engines in :data:`densecore.engines.ENGINES`.

    Construction (the driver's call, one per pool)::

        Engine(x, dens, centres, cdens, excluded, max_new[, weights=])

    with ``x`` the ``(N, D)`` scaled features, ``dens`` ``(N,)`` float64 densities
    (ones for k-center greedy), ``centres``/``cdens`` the ``(L, D)``/``(L,)`` labeled
    points (in-pool and out-of-pool, L may be 0), ``excluded`` the ``(N,)`` bool mask
    of in-pool labeled points and ``max_new`` the most centres still to be added.
    ``weights`` ``(N,)`` float64 is passed only to an engine with ``weighted = True``.

    Capabilities (class attributes; a subclass overrides what it has):

    Attributes:
        host: False: the engine computes where the features are. True: it computes on
            the CPU from numpy, and the driver hands it CPU float32/float64 features
            (copied from a device, 16-bit storage widened).
        weighted: False: no candidate weights. True: the constructor takes
            ``weights=(N,)`` float64 > 0 and the picks are ``argmax r * weight``
            (the typicality weight hook); radii stay ``r``.
        half_on_cpu: False: 16-bit features on the CPU are widened to float32 before
            the engine sees them. True: the engine keeps 16-bit storage on the CPU too.
        search_method: the nearest-centre search of its set-up
            (``densecore._backends.nearest.METHODS``), also the search of the
            refinement of its picks (:mod:`densecore.refine`).
        devices: the device types it computes on natively (the engine-parametrised
            tests run it on these).
        run_batch: None, or a static function ``run_batch(inputs, budgets, firsts) ->
            [(indices (budget_p,) int64, radii (budget_p,) float64)]`` running P
            pools in one call (:func:`densecore.farthest_first_batch` prefers it to
            one engine per pool); ``inputs`` are the driver's per-pool dicts of the
            constructor's arguments, ``firsts`` the forced first picks (-1: none).

    Example:
        >>> Engine.host, Engine.weighted, Engine.search_method, Engine.run_batch
        (False, False, 'auto', None)
    """

    host: ClassVar[bool] = False
    weighted: ClassVar[bool] = False
    half_on_cpu: ClassVar[bool] = False
    search_method: ClassVar[str] = "auto"
    devices: ClassVar[tuple] = ("cpu", "cuda")
    run_batch: ClassVar[Callable | None] = None

    @staticmethod
    def threads(num_threads: int | None = None):
        """A context manager capping the engine's CPU threads at ``num_threads`` (None:
        numba's setting) and leaving torch's thread count as it was
        (:func:`densecore._backends.threads`)."""
        return _threads(num_threads)

    @abstractmethod
    def best(self):
        """``(2,)`` float64 tensor ``(r, index)`` of the next pick (ties: the lowest
        index); ``(-1, -1)`` when nothing is left. On a device it stays there."""

    @abstractmethod
    def row(self, u):
        """``(D + 1,)`` float64 tensor: the features of point ``u`` (an int or a 0-d
        int64 tensor) and its density."""

    @abstractmethod
    def add_centre(self, vec, u=-1) -> None:
        """Make ``vec`` ``(D + 1,)`` (features, density; from :meth:`row`) a selected
        point and lower every ``r`` it improves; ``u`` is its index in this pool
        (removed from the pool) or -1 for a point held elsewhere (a sharded
        selection). Counts as one pick."""

    @abstractmethod
    def run(self, k: int, out_idx, out_r) -> None:
        """Make the next ``k`` picks of this pool alone into ``out_idx``/``out_r``
        (``(budget,)`` int64 / float64 tensors on the engine's device), at the
        positions after the picks made so far (:meth:`add_centre` calls included)."""

    def first(self, u: int, out_idx, out_r, *, held=None) -> None:
        """Make the forced first pick ``u`` (``init``, or the seeded draw when nothing
        is labeled, so its ``r`` is ``inf``): pick 0 of ``out_idx``/``out_r``, added
        through :meth:`add_centre`. The driver calls it once, before :meth:`run`.

        ``held`` is for a sharded selection (:func:`densecore.distributed.select`),
        where ``u`` indexes the union of every rank's pool: ``(vec, v)``, the pick's
        row ``(D + 1,)`` float64 from the rank that holds it and ``v`` its index in
        this pool (a 0-d int64 tensor on the engine's device, -1 where another rank
        holds it)."""
        ut = torch.tensor(int(u), dtype=torch.int64, device=out_idx.device)
        out_idx[0] = ut
        out_r[0] = math.inf
        if held is None:
            self.add_centre(self.row(ut), ut)
        else:
            self.add_centre(*held)
