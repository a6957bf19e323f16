"""Slow, obvious float64 references that the fast code is checked against."""

from __future__ import annotations

import numpy as np


def density_aware_greedy_ref(features, budget, densities=None, labeled=(), labeled_features=None,
                             labeled_densities=None, init=None):
    """Algorithm 1 verbatim, in float64, one full distance pass per pick.

    Args:
        features: (N, D) array.
        budget: number of picks.
        densities: (N,) > 0 or None for k-center greedy (every density 1).
        labeled: in-pool labeled indices.
        labeled_features / labeled_densities: (L, D) / (L,) out-of-pool labeled points.
        init: the first pick when nothing is labeled.

    Returns:
        (indices (budget,) int64, radii (budget,) float64) where radii[i] is r_u
        (squared Euclidean distance divided by the density of the nearest
        labeled point) at the moment u was picked.
    """
    x = np.asarray(features, dtype=np.float64)
    n = x.shape[0]
    d = np.ones(n) if densities is None else np.asarray(densities, dtype=np.float64)
    r = np.full(n, np.inf)
    taken = np.zeros(n, dtype=bool)
    for k in np.asarray(labeled, dtype=np.int64):
        r = np.minimum(r, ((x - x[k]) ** 2).sum(1) / d[k])
        taken[k] = True
    if labeled_features is not None and len(labeled_features):
        lf = np.asarray(labeled_features, dtype=np.float64)
        ld = np.ones(len(lf)) if labeled_densities is None else np.asarray(labeled_densities,
                                                                           dtype=np.float64)
        for f, dk in zip(lf, ld):
            r = np.minimum(r, ((x - f) ** 2).sum(1) / dk)
    picks, radii = [], []
    for i in range(budget):
        if i == 0 and init is not None:
            u = int(init)
        else:
            masked = np.where(taken, -np.inf, r)
            u = int(np.argmax(masked))  # first maximum: ties go to the lowest index
        picks.append(u)
        radii.append(r[u])
        taken[u] = True
        r = np.minimum(r, ((x - x[u]) ** 2).sum(1) / d[u])
    return np.asarray(picks, dtype=np.int64), np.asarray(radii, dtype=np.float64)


def nearest_ref(q, c, k, w=None):
    """The ``k`` nearest centres ``(values (N, k), indices (N, k))`` of every query:
    float64 from differences (numpy), divided by the centre weights ``w`` when given,
    lowest index first on ties."""
    q64, c64 = np.asarray(q, np.float64), np.asarray(c, np.float64)
    v = ((q64[:, None, :] - c64[None]) ** 2).sum(-1)
    if w is not None:
        v = v / np.asarray(w)[None, :]
    o = np.argsort(v, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(v, o, 1), o


def replay_check(features, indices, densities=None, labeled=(), labeled_features=None,
                 labeled_densities=None, init=None, rtol=1e-4, atol=1e-6):
    """Check that ``indices`` is a valid run of Algorithm 1 in float64.

    At every step the pick must be untaken and its float64 r must equal the
    float64 maximum up to ``rtol``/``atol``; where the maximum is unique by
    more than that tolerance the pick must be exactly the reference argmax,
    and among exactly equal maxima it must be the lowest index.

    Returns:
        The number of steps where the reference had a unique argmax (all of
        which matched).
    """
    x = np.asarray(features, dtype=np.float64)
    n = x.shape[0]
    d = np.ones(n) if densities is None else np.asarray(densities, dtype=np.float64)
    r = np.full(n, np.inf)
    taken = np.zeros(n, dtype=bool)
    for k in np.asarray(labeled, dtype=np.int64):
        r = np.minimum(r, ((x - x[k]) ** 2).sum(1) / d[k])
        taken[k] = True
    if labeled_features is not None and len(labeled_features):
        lf = np.asarray(labeled_features, dtype=np.float64)
        ld = np.ones(len(lf)) if labeled_densities is None else np.asarray(labeled_densities)
        for f, dk in zip(lf, ld):
            r = np.minimum(r, ((x - f) ** 2).sum(1) / dk)
    strict = 0
    for i, u in enumerate(np.asarray(indices, dtype=np.int64)):
        u = int(u)
        assert not taken[u], f"step {i}: index {u} picked twice or labeled"
        if i == 0 and init is not None:
            assert u == init, f"step 0: expected init {init}, got {u}"
        else:
            masked = np.where(taken, -np.inf, r)
            best = masked.max()
            tol = atol + rtol * abs(best)
            assert masked[u] >= best - tol, (
                f"step {i}: picked {u} with r={masked[u]!r}, but the maximum is {best!r} "
                f"at {int(np.argmax(masked))}")
            close = np.flatnonzero(masked >= best - tol)
            if len(close) == 1:
                strict += 1
            exact = np.flatnonzero(masked == best)
            if masked[u] == best and len(close) == len(exact):
                assert u == exact[0], f"step {i}: exact tie must go to {exact[0]}, got {u}"
        taken[u] = True
        r = np.minimum(r, ((x - x[u]) ** 2).sum(1) / d[u])
    return strict


def table_engines(layout: str = "dense", device: str = "cpu", weighted: bool = False) -> list:
    """The engine names of the table (``densecore.engines.ENGINES``) for ``layout`` that
    compute on ``device`` natively (and take candidate weights, when ``weighted``), in
    table order: what the engine-parametrised tests run on. An engine added through
    ``densecore.register_engine`` before collection (e.g. ``pytest -p toy_engine``)
    is among them."""
    from densecore import engines

    out = []
    for name in engines.names(layout):
        try:
            cls = engines.engine(name, layout)
        except ImportError:  # an optional engine whose extra is not installed
            continue
        if device in cls.devices and (cls.weighted or not weighted):
            out.append(name)
    return out
