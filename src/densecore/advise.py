"""Which sampler for *your* candidates? A held-out proxy comparison.

:func:`advise` answers, on one set of candidates, whether the coverage
density is worth using: it measures the density's calibration (Fig. 4 of the
paper: the average radial distance of Eq. 4 against ``1 / density``), then
compares the samplers on held-out halves of the candidates and recommends one.

Protocol, for ``splits`` random splits ``i = 0, 1, ...`` (seed ``seed + i``):

1. the candidates are split at random into a *pool* (``floor(N / 2)`` points)
   and a *held-out* half;
2. every sampler picks ``b = max(1, round(budget * |pool| / N))`` points of
   the pool (its first pick seeded with ``seed + i``, the same for all);
3. each held-out point is assigned to its nearest pick (plain Euclidean
   distance) and the picks are scored on the held-out half:

   * with ``labels``: ``label_miou``, the 1-NN label propagation mIoU (%):
     a held-out point takes the label of its nearest labeled pick, IoU is
     averaged over the classes present among the held-out labels (higher is
     better);
   * without: ``mean_ard``, the average radial distance (Eq. 4) of the
     picks' held-out coverage areas, averaged over the picks (lower is
     better). The max over the picks (Eq. 4's bound, ``max_ard``) is
     reported beside it but does not decide: on a held-out half it is the
     mean of an area of one or two points as often as not.

For each sampler other than k-center the per-split differences (sampler
minus k-center) give a Student-t interval and a paired t-test p value
(:func:`densecore.stats.paired_interval`), Holm-adjusted over the samplers
compared. The splits resample one data set, so the interval is about *this*
data (the mean over random held-out halves and first picks), not about
other data sets.

Recommendation: the sampler with the largest mean improvement among those
better than k-center at Holm-adjusted ``p < alpha``; else k-center, with the
verdict ``"difference"`` when some sampler is significantly worse and
``"no difference"`` when none differs (k-center is then the cheaper choice).
Each sampler is also timed once on all ``N`` candidates with the full budget.

Shape:
    features ``(N, D)`` float, densities ``(N,)`` > 0, labels ``(N,)`` int
    (``ignore_index`` for points without a label); distances plain Euclidean.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import validation as V
from .bounds import coverage
from .stats import holm, paired_interval

log = logging.getLogger(__name__)

__all__ = ["ADVISED_SAMPLERS", "Advice", "advise"]

def _kcenter(seed, backend):
    from .samplers import KCenterGreedy

    return KCenterGreedy(backend=backend, seed=seed)


def _density_aware(seed, backend):
    from .samplers import DensityAwareGreedy

    return DensityAwareGreedy(backend=backend, seed=seed)


def _typicality(seed, backend):
    from .samplers import TypicalityGreedy

    return TypicalityGreedy(backend=backend, seed=seed)


def _refinement(seed, backend):
    from .samplers import KCenterGreedy, KMedoidsRefinement

    return KMedoidsRefinement(KCenterGreedy(backend=backend, seed=seed), backend=backend,
                              seed=seed)


# name -> factory(seed, backend); k-center is the reference every comparison is against
ADVISED_SAMPLERS = {"k-center": _kcenter, "density-aware": _density_aware,
                    "typicality": _typicality, "kmedoids-refinement": _refinement}


@dataclass
class Advice:
    """Result of :func:`advise`.

    Attributes:
        recommended: the sampler to use (a key of :data:`ADVISED_SAMPLERS`).
        verdict: ``"difference"`` (some comparison with k-center is significant)
            or ``"no difference"`` (none is; k-center is recommended as the cheaper).
        reason: one sentence saying why.
        measure: ``"label_miou"`` (with labels; higher is better) or
            ``"mean_ard"`` (lower is better).
        calibration_r2: R^2 of the average radial distance of k-center's
            picks (all ``N`` candidates, full budget) against ``1 / density``
            (:func:`densecore.density.density_calibration`); NaN when undefined.
        calibration_slope: its slope; Algorithm 1 assumes it is positive.
        scores: ``sampler -> {"label_miou" (with labels), "mean_ard",
            "max_ard"}``, means over the splits.
        comparisons: one dict per sampler other than k-center: ``sampler,
            measure, mean`` (sampler - k-center), ``low, high`` (t interval),
            ``p`` (paired t), ``p_holm``, ``wins``, ``losses`` (splits where the
            sampler is better / worse), ``better`` (significantly better),
            ``worse``.
        seconds: ``sampler -> seconds`` to pick ``budget`` of all ``N`` once.
        n, dim, budget, level, alpha: the setting; splits: the splits compared (those
            whose held-out half has a labeled point, with ``labels``).
    """

    recommended: str
    verdict: str
    reason: str
    measure: str
    calibration_r2: float
    calibration_slope: float
    scores: dict = field(default_factory=dict)
    comparisons: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    n: int = 0
    dim: int = 0
    budget: int = 0
    splits: int = 0
    level: float = 0.95
    alpha: float = 0.05

    def as_dict(self) -> dict:
        """Plain-dict form (JSON-ready; NaN stays NaN)."""
        return {k: getattr(self, k) for k in (
            "recommended", "verdict", "reason", "measure", "calibration_r2",
            "calibration_slope", "scores", "comparisons", "seconds", "n", "dim", "budget",
            "splits", "level", "alpha")}

    def summary(self) -> str:
        """A few lines of text: calibration, the comparison table, the recommendation."""
        hib = self.measure == "label_miou"
        lines = [f"{self.n} candidates, {self.dim} dims, budget {self.budget}; "
                 f"{self.splits} held-out splits; measure {self.measure} "
                 f"({'higher' if hib else 'lower'} is better)",
                 f"density calibration R^2 {self.calibration_r2:.3f} "
                 f"(slope {self.calibration_slope:+.3g}; the paper's DMC: 0.72)",
                 "",
                 f"| sampler | {self.measure} | − k-center | {100 * self.level:g} % interval "
                 "| Holm p | seconds at full size |",
                 "| --- | ---: | ---: | ---: | ---: | ---: |"]
        comp = {c["sampler"]: c for c in self.comparisons}
        for name, sc in self.scores.items():
            c = comp.get(name)
            diff = "–" if c is None else f"{c['mean']:+.4g}"
            ci = ("–" if c is None or c["low"] is None
                  else f"{c['low']:+.4g} – {c['high']:+.4g}")
            p = "–" if c is None else f"{c['p_holm']:.3g}"
            lines.append(f"| {name} | {sc[self.measure]:.4g} | {diff} | {ci} | {p} "
                         f"| {self.seconds[name]:.3f} |")
        lines += ["", f"recommended: {self.recommended} ({self.verdict}): {self.reason}"]
        return "\n".join(lines)


def _labels(labels, n: int, ignore_index: int) -> np.ndarray:
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) like features' rows; got {y.shape}")
    if y.dtype.kind not in "iu":
        raise TypeError(f"labels must hold integer class ids; got dtype {y.dtype}")
    if not (y != ignore_index).any():
        raise ValueError(f"labels must hold at least one label other than ignore_index="
                         f"{ignore_index}; got none")
    return y.astype(np.int64)


def _miou(pred: np.ndarray, truth: np.ndarray) -> float:
    """mIoU (%) over the classes present in ``truth``."""
    ious = []
    for c in np.unique(truth):
        inter = np.sum((pred == c) & (truth == c))
        union = np.sum((pred == c) | (truth == c))
        ious.append(inter / union)
    return float(100 * np.mean(ious))


def _score(x, pool, hold, picks, y, ignore_index) -> dict:
    """Held-out measures of ``picks`` (indices into ``pool``)."""
    centres = x[pool[picks]]
    assign, dist = coverage(x[hold], centres, validate=False)
    assign = np.asarray(assign)
    dist = np.asarray(dist, dtype=np.float64)
    m = len(picks)
    count = np.bincount(assign, minlength=m)
    ard = np.bincount(assign, weights=dist, minlength=m)[count > 0] / count[count > 0]
    out = {"mean_ard": float(ard.mean()), "max_ard": float(ard.max())}
    if y is not None:
        truth = y[hold]
        keep = truth != ignore_index
        src = pool[picks][y[pool[picks]] != ignore_index]
        if not keep.any():
            out["label_miou"] = float("nan")
        elif len(src) == 0:
            out["label_miou"] = 0.0
        else:  # every held-out point takes the label of its nearest labeled pick
            a, _ = coverage(x[hold[keep]], x[src], validate=False)
            out["label_miou"] = _miou(y[src][np.asarray(a)], truth[keep])
    return out


def advise(features, densities, budget: int, *, labels=None,
           samplers=("k-center", "density-aware"), splits: int = 10, seed: int = 0,
           level: float = 0.95, alpha: float = 0.05, ignore_index: int = -1,
           backend: str = "auto", validate: bool = True) -> Advice:
    """Compare samplers on held-out halves of one candidate set and recommend one.

    See the module docstring for the protocol. Pass the candidates as the
    sampler will see them (e.g. ``ImageCandidates.features`` from
    ``select_pixels(..., return_candidates=True)``, L2-normalised), the
    densities it would be given, and the budget you would select from all of
    them.

    Args:
        features: ``(N, D)`` float candidate features, ``N >= 4``.
        densities: ``(N,)`` strictly positive coverage densities.
        budget: picks from all ``N`` (``1 <= budget <= N // 2``); each split's
            pool of ``floor(N / 2)`` gets the same share.
        labels: ``(N,)`` int class ids (a few labeled pixels, or a model's
            pseudo-labels), ``ignore_index`` where unknown; None compares
            coverage instead (``mean_ard``).
        samplers: names from :data:`ADVISED_SAMPLERS`; ``"k-center"`` is
            always run (it is the reference) and need not be named.
        splits: random held-out splits, ``>= 2``.
        seed: split ``i`` and its first picks use ``seed + i``.
        level: coverage of the intervals, in ``(0, 1)``.
        alpha: Holm-adjusted significance level of a recommendation, in ``(0, 1)``.
        ignore_index: the label of points without one.
        backend: greedy backend of every sampler (:func:`densecore.farthest_first`).
        validate: check features and densities for NaN/inf and non-positive values.

    Returns:
        :class:`Advice`.

    Example:
        >>> import numpy as np
        >>> g = np.random.default_rng(0)
        >>> x = g.normal(size=(400, 4)).astype(np.float32)
        >>> adv = advise(x, np.ones(400), 20, splits=3)  # one density: Algorithm 1 = k-center
        >>> adv.recommended, adv.verdict, adv.comparisons[0]["mean"]
        ('k-center', 'no difference', 0.0)
    """
    from .density import density_calibration

    x_t = V.check_features(features, validate=validate)
    n = x_t.shape[0]
    if n < 4:
        raise ValueError(f"features must hold at least 4 points to split in halves; got {n}")
    dens_t = V.check_densities(densities, n, validate=validate)
    budget = V.check_int(budget, "budget", minimum=1)
    if budget > n // 2:
        raise ValueError(f"budget must be at most half the candidates ({n // 2}) so that a "
                         f"held-out half remains; got {budget}")
    splits = V.check_int(splits, "splits", minimum=2)
    seed = V.check_int(seed, "seed")
    for name, v in (("level", level), ("alpha", alpha)):
        v = V.check_finite_float(v, name)
        if not 0 < v < 1:
            raise ValueError(f"{name} must be in (0, 1); got {v}")
    if isinstance(samplers, str):
        samplers = (samplers,)
    unknown = [s for s in samplers if s not in ADVISED_SAMPLERS]
    if unknown:
        raise ValueError(f"samplers must be names from {sorted(ADVISED_SAMPLERS)}; got "
                         f"{unknown}")
    names = ["k-center"] + [s for s in dict.fromkeys(samplers) if s != "k-center"]
    if len(names) < 2:
        raise ValueError("samplers must name at least one sampler besides 'k-center'; got "
                         f"{list(samplers)}")
    y = None if labels is None else _labels(labels, n, int(ignore_index))
    x = x_t.detach().cpu().to(torch.float32).numpy()
    dens = dens_t.detach().cpu().to(torch.float64).numpy()
    measure = "label_miou" if y is not None else "mean_ard"
    higher = measure == "label_miou"

    per = {name: [] for name in names}
    half = n // 2
    b = max(1, round(budget * half / n))
    for i in range(splits):
        perm = np.random.default_rng(seed + i).permutation(n)
        pool, hold = perm[:half], perm[half:]
        for name in names:
            sel = ADVISED_SAMPLERS[name](seed + i, backend).select(
                x[pool], b, densities=dens[pool])
            per[name].append(_score(x, pool, hold, np.asarray(sel.indices), y,
                                    int(ignore_index)))
    # a split whose held-out half has no labeled point cannot score labels: left out
    ok = [i for i in range(splits)
          if all(math.isfinite(per[name][i][measure]) for name in names)]
    if len(ok) < 2:
        raise ValueError(f"labels must give at least 2 of the {splits} splits a labeled "
                         f"held-out point; {len(ok)} had one: label more points")
    per = {name: [rs[i] for i in ok] for name, rs in per.items()}
    scores = {name: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
              for name, rs in per.items()}

    # each sampler once at full size (after the splits: kernels compiled): its time, and
    # k-center's picks for the calibration
    seconds, full_kc = {}, None
    for name in names:
        sampler = ADVISED_SAMPLERS[name](seed, backend)
        tic = time.perf_counter()
        sel = sampler.select(x, budget, densities=dens)
        seconds[name] = time.perf_counter() - tic
        if name == "k-center":
            full_kc = np.asarray(sel.indices)
    if budget >= 2:
        cal = density_calibration(x, dens, full_kc, validate=False)
        r2, slope = cal.r2, cal.slope
    else:
        r2, slope = float("nan"), float("nan")

    comparisons = []
    for name in names[1:]:
        d = np.array([a[measure] - k[measure] for a, k in zip(per[name], per["k-center"])])
        pi = paired_interval(d, level)
        gain = d if higher else -d  # > 0: the sampler did better than k-center
        comparisons.append({"sampler": name, "measure": measure, "mean": pi.mean,
                            "low": pi.low, "high": pi.high, "p": pi.p,
                            "wins": int((gain > 0).sum()), "losses": int((gain < 0).sum())})
    adjusted = holm([1.0 if c["p"] is None else c["p"] for c in comparisons])
    for c, p in zip(comparisons, adjusted):
        c["p_holm"] = float(p)
        toward = c["mean"] if higher else -c["mean"]
        c["better"] = bool(p < alpha and toward > 0)
        c["worse"] = bool(p < alpha and toward < 0)

    better = [c for c in comparisons if c["better"]]
    if better:
        best = max(better, key=lambda c: c["mean"] if higher else -c["mean"])
        recommended, verdict = best["sampler"], "difference"
        reason = (f"{best['sampler']} is better than k-center on held-out {measure} by "
                  f"{abs(best['mean']):.4g} (Holm p {best['p_holm']:.3g})")
    elif any(c["worse"] for c in comparisons):
        worse = ", ".join(c["sampler"] for c in comparisons if c["worse"])
        recommended, verdict = "k-center", "difference"
        reason = (f"k-center is better than {worse} on held-out {measure} and no sampler "
                  f"beats it at Holm p < {alpha:g}")
    else:
        recommended, verdict = "k-center", "no difference"
        reason = (f"no sampler differs from k-center on held-out {measure} at Holm p < "
                  f"{alpha:g}; k-center is the cheaper")
    log.info("advise: %s (%s); calibration R^2 %.3f", recommended, verdict, r2)
    return Advice(recommended=recommended, verdict=verdict, reason=reason, measure=measure,
                  calibration_r2=float(r2), calibration_slope=float(slope), scores=scores,
                  comparisons=comparisons, seconds=seconds, n=n, dim=int(x.shape[1]),
                  budget=budget, splits=len(ok), level=float(level), alpha=float(alpha))
