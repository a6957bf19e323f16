"""Tune the coverage-density scaling (tau, beta) against the bound of Eq. 4.

The paper tunes ``beta`` and ``tau`` of ``D = beta * exp(-e / tau)`` "until they
reduce the bound in Eq. 4", i.e. the maximum average radial distance of the
density-aware greedy selection. :func:`tune_density_scaling` does this with a
held-out check, so that the chosen setting is scored on points it was not
chosen on:

1. the points are split at random (seeded) into a *tuning half* ``A`` and a
   *held-out half* ``B`` (``|A| = floor(N / 2)``);
2. on ``A``, for every ``(tau, beta)`` in the grid, the error restricted to
   ``A`` is mapped to densities with :func:`~densecore.density.coverage_density`
   (min-max normalised over ``A``), density-aware greedy picks
   ``b_A = round(budget * |A| / N)`` points (at least 1) from ``A``, and the
   maximum average radial distance over ``A`` is its score;
3. the setting with the lowest score on ``A`` is chosen;
4. on ``B`` the same procedure (``b_B`` picks from ``B``) scores the chosen
   setting, the paper's default (``tau = 0.25``, ``beta = e^2.4``) and k-center
   greedy (every density 1, the ``tau -> inf`` limit). These held-out numbers
   say whether the chosen setting, and density awareness at all, lowers the
   bound on data the choice did not see.

With ``splits > 1`` steps 1-4 run on ``splits`` independent random splits
(seeds ``seed, seed + 1, ...``; the greedy's first pick is seeded the same
way); step 3 then picks the setting with the lowest *mean* tuning score, and
the held-out numbers are means over splits. The noise test compares the
held-out gain over k-center, ``kcenter - tuned`` per split, with its
split-to-split spread: the verdict is ``"gain"`` only when the mean gain
exceeds its standard deviation (``mean - sd > 0``), ``"no gain"`` otherwise,
and ``"untested"`` with one split.

``beta`` multiplies every density by the same factor, which leaves the
argmax of Algorithm 1 unchanged; it only matters when densities from
another source (``labeled_densities``) are mixed in. The default grid holds
the paper's ``beta`` only.

Shape:
    features ``(N, D)`` float, raw_error ``(N,)`` float ``>= 0``; all distances
    in the scores are plain Euclidean (Eq. 4).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from . import validation as V
from .bounds import bound_report
from .density.scaling import BETA, TAU, coverage_density
from .samplers import DensityAwareGreedy, KCenterGreedy

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_TAUS", "DensityScaling", "tune_density_scaling"]

DEFAULT_TAUS = (0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class DensityScaling:
    """Result of :func:`tune_density_scaling`.

    Attributes:
        tau: chosen temperature.
        beta: chosen scale.
        tune_max_ard: max average radial distance (Euclidean) of the chosen
            setting on the tuning half.
        holdout_max_ard: the chosen setting's max average radial distance on
            the held-out half.
        holdout_default_max_ard: the same for the paper's default
            (``tau = 0.25``, ``beta = e^2.4``).
        holdout_kcenter_max_ard: the same for k-center greedy.
        scores: one dict per grid point on the tuning half:
            ``{"tau", "beta", "max_ard", "delta"}`` (means over splits).
        splits: number of random splits.
        gain: mean over splits of ``holdout kcenter - holdout tuned`` max ARD.
        gain_sd: its standard deviation over splits (``ddof = 1``; NaN with one split).
        verdict: ``"gain"``, ``"no gain"`` or ``"untested"`` (module docstring).
        per_split: one dict per split with its held-out numbers.
    """

    tau: float
    beta: float
    tune_max_ard: float
    holdout_max_ard: float
    holdout_default_max_ard: float
    holdout_kcenter_max_ard: float
    scores: list = field(default_factory=list)
    splits: int = 1
    gain: float = 0.0
    gain_sd: float = float("nan")
    verdict: str = "untested"
    per_split: list = field(default_factory=list)

    @property
    def beats_kcenter(self) -> bool:
        """Whether the chosen setting has a lower held-out max ARD than k-center greedy."""
        return self.holdout_max_ard < self.holdout_kcenter_max_ard

    def as_dict(self) -> dict:
        """Plain-dict form (JSON-ready)."""
        return {"tau": self.tau, "beta": self.beta, "tune_max_ard": self.tune_max_ard,
                "holdout_max_ard": self.holdout_max_ard,
                "holdout_default_max_ard": self.holdout_default_max_ard,
                "holdout_kcenter_max_ard": self.holdout_kcenter_max_ard,
                "beats_kcenter": self.beats_kcenter, "scores": list(self.scores),
                "splits": self.splits, "gain": self.gain, "gain_sd": self.gain_sd,
                "verdict": self.verdict, "per_split": list(self.per_split)}


def _grid(values, name: str) -> tuple[float, ...]:
    vals = tuple(values) if not isinstance(values, (int, float)) else (values,)
    if not vals:
        raise ValueError(f"{name} must hold at least one value; got none")
    return tuple(V.check_positive_float(v, name) for v in vals)


def _half_budget(budget: int, n_half: int, n: int) -> int:
    return int(min(n_half, max(1, round(budget * n_half / n))))


def _score(x, err, b, tau, beta, seed, backend) -> tuple[float, float]:
    if tau is None:
        sel = KCenterGreedy(backend=backend, seed=seed).select(x, b).indices
    else:
        dens = coverage_density(err, beta=beta, tau=tau)
        sel = DensityAwareGreedy(backend=backend, seed=seed).select(
            x, b, densities=dens).indices
    rep = bound_report(x, sel)
    return rep.max_ard, rep.delta


def tune_density_scaling(features, raw_error, budget: int, *, taus=DEFAULT_TAUS,
                         betas=(BETA,), seed: int = 0, splits: int = 3,
                         backend: str = "auto", validate: bool = True) -> DensityScaling:
    """Pick ``tau`` (and ``beta``) that minimise the max average radial distance (Eq. 4)
    of density-aware greedy, scored on a held-out half of the points.

    Held-out protocol (see the module docstring): a seeded random split into a
    tuning half ``A`` (``floor(N/2)`` points) and a held-out half ``B``; each grid
    point selects ``round(budget * |A| / N)`` points from ``A`` with densities
    ``beta * exp(-e / tau)`` of ``raw_error`` min-max normalised over ``A``
    (Eq. 8's density), and is scored by the max average radial distance over
    ``A``; the best one is then re-run on ``B`` beside the paper's default and
    k-center greedy. Ties go to the grid point that comes first (``taus`` outer,
    ``betas`` inner).

    Args:
        features: ``(N, D)`` float features (L2-normalise them first if the
            selection will run on L2-normalised features), ``N >= 4``.
        raw_error: ``(N,)`` float ``>= 0``: the per-point estimate of average
            radial distance that densities are made from (a DMC reconstruction
            error, :func:`~densecore.density.knn_mean_distance`, ...).
        budget: the number of points that will be selected from all ``N``;
            ``1 <= budget <= N``.
        taus: temperatures to try (> 0).
        betas: scales to try (> 0); they do not change the selection (see the
            module docstring).
        seed: seeds the split and the greedy's first pick (split ``i`` uses
            ``seed + i``).
        splits: number of random splits (>= 1); see the noise test above.
        backend: greedy backend, see :func:`~densecore.farthest_first`.
        validate: check the inputs for NaN/inf.

    Returns:
        :class:`DensityScaling`; distances are plain Euclidean.

    Example:
        >>> import numpy as np
        >>> from densecore.density import knn_mean_distance
        >>> x = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)
        >>> res = tune_density_scaling(x, knn_mean_distance(x, 5), 20, taus=(0.25, 1.0))
        >>> res.tau in (0.25, 1.0), len(res.scores), res.verdict in ("gain", "no gain")
        (True, 2, True)
    """
    x = V.check_features(features, validate=validate)
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"features must hold at least 4 points to split in halves; got {n}")
    err = V.check_error(raw_error, n, validate=validate).to(x.device)
    budget = V.check_int(budget, "budget", minimum=1)
    if budget > n:
        raise ValueError(f"budget must be at most the number of points ({n}); got {budget}")
    taus = _grid(taus, "taus")
    betas = _grid(betas, "betas")
    seed = V.check_int(seed, "seed", minimum=0)
    splits = V.check_int(splits, "splits", minimum=1)
    half = n // 2
    parts = []
    for i in range(splits):
        perm = torch.from_numpy(np.random.default_rng(seed + i).permutation(n)).to(x.device)
        parts.append({k: (x[j], err[j], _half_budget(budget, len(j), n))
                      for k, j in (("tune", perm[:half]), ("holdout", perm[half:]))})

    scores = []
    for tau in taus:
        for beta in betas:
            runs = [_score(*p["tune"], tau, beta, seed + i, backend)
                    for i, p in enumerate(parts)]
            scores.append({"tau": tau, "beta": beta,
                           "max_ard": float(np.mean([r[0] for r in runs])),
                           "delta": float(np.mean([r[1] for r in runs]))})
            log.debug("tau=%g beta=%g: max_ard %.6g on the tuning halves", tau, beta,
                      scores[-1]["max_ard"])
    best = min(range(len(scores)), key=lambda i: (scores[i]["max_ard"], i))
    tau, beta = scores[best]["tau"], scores[best]["beta"]

    per = []
    for i, p in enumerate(parts):
        hold, _ = _score(*p["holdout"], tau, beta, seed + i, backend)
        dflt, _ = _score(*p["holdout"], TAU, BETA, seed + i, backend)
        kc, _ = _score(*p["holdout"], None, None, seed + i, backend)
        per.append({"seed": seed + i, "holdout_max_ard": hold,
                    "holdout_default_max_ard": dflt, "holdout_kcenter_max_ard": kc})
    gains = np.array([r["holdout_kcenter_max_ard"] - r["holdout_max_ard"] for r in per])
    sd = float(gains.std(ddof=1)) if splits > 1 else float("nan")
    mean = float(gains.mean())
    verdict = "untested" if splits == 1 else ("gain" if mean - sd > 0 else "no gain")
    log.info("tune_density_scaling: tau=%g, held-out gain over k-center %.4g +- %.4g "
             "over %d splits: %s", tau, mean, sd, splits, verdict)
    avg = {k: float(np.mean([r[k] for r in per])) for k in per[0] if k != "seed"}
    return DensityScaling(tau=tau, beta=beta, tune_max_ard=scores[best]["max_ard"],
                          holdout_max_ard=avg["holdout_max_ard"],
                          holdout_default_max_ard=avg["holdout_default_max_ard"],
                          holdout_kcenter_max_ard=avg["holdout_kcenter_max_ard"],
                          scores=scores, splits=splits, gain=mean, gain_sd=sd,
                          verdict=verdict, per_split=per)
