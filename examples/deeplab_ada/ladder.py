"""The fixed-feature ladder: does the choice of sampler matter as the features get better?

The study (``study.py``) judges a sampler by training with its picks, where
the model's features, the data draw and the picks all change together and
five seeds cannot resolve a point of mIoU. The ladder holds the features
fixed instead: it trains a few checkpoints of rising feature quality once
(with ``train.py``), then, on fresh scene draws that none of them was trained
on, asks every sampler for the same budget from the same model outputs and
measures what its picks would teach, without training again.

Rungs (``RUNGS``; each trained once with ``train.py``, data seed 0):

* ``round0``: the study's quick config stopped at its first selection round
  (iteration 300: the model that makes round 0's queries, source data only);
* ``supervised_64x128``: every target pixel labeled, the quick config (64x128);
* ``supervised_128x256``: every target pixel labeled, the full config (128x256).

Data seeds: each is its own scene draw (``make_synthetic_data.py``'s target
generator seeded with it) at the rung's resolution: ``pool`` images to select
in, ``held`` images on which ``tune_density_scaling`` picks tau, ``val``
images for the linear probe.

Budgets: ``2.2pct`` (2.2 % of the pixels as non-overlapping 3x3 regions in
one round) and ``40px`` (RIPU's 40 single pixels per image, one round).

Samplers, all on the same model outputs; the greedy ones on the same top
``alpha * b`` margin candidates (``densecore.select_pixels``):
``kcenter``, ``density_aware`` (tau 0.25, the paper's), ``density_aware_tuned``
(tau from ``tune_density_scaling`` on the held-out images' candidates),
``density_aware_knn`` (beyond the paper: tau 0.25 on the candidates' own kNN
density, k = 10, instead of the DMC's: does a density that measures the
candidates' spacing directly do better?), ``typicality``, ``refinement``
(k-center then k-medoids steps), ``margin`` (the best ``b`` by score), ``random`` (random score), ``ripu`` (RIPU's region
selection at ``2.2pct``; its pixel selection at ``40px`` with RIPU's window,
``RADIUS_K`` 32 at 1024x2048 scaled to the label height; score-0 ties broken
in a seeded random order, never by pixel index).

Per image and sampler:

* ``calibration_r2``: R^2 of the average radial distance (Eq. 4) of the picks'
  coverage areas among the candidates against 1 / density
  (``densecore.density.density_calibration``; the DMC density at tau 0.25, the
  kNN density for ``density_aware_knn``); for ``kcenter`` this is the rung's
  calibration (k-center's picks do not depend on the density);
* ``calibration_r2_paper`` (``kcenter`` records): the supplementary's protocol
  (``supplementary_calibration``: candidates whose DMC densities roughly
  follow U(0.5, 3), 100 drawn);
* ``prop_dmc``, ``prop_backbone``: within-image 1-NN label propagation: every
  pixel takes the label of its nearest labeled pixel (the picks' pixels whose
  ground truth is not void) in L2-normalised DMC / backbone features, mIoU
  over the classes present in the image's ground truth;
* ``overlap_kcenter``: share of the picked centres that k-center also picked;
* ``void_share``: share of the labeled pixels whose ground truth is void;
* ``labeled_pixels``: pixels the picks label.

Per (rung, data seed, budget, sampler): ``probe``: a linear probe (ridge
regression of one-hot labels on L2-normalised backbone features, closed form)
fitted on the pool images' labeled non-void pixels, mIoU on the val images
over the classes present in their ground truth. One JSON file per (rung, data seed, budget, sampler) under
``OUT/records/``, written atomically; a record present is not redone.

Analysis (``OUT/ladder.json``, ``OUT/ladder.md``, ``OUT/ladder.png``): per
rung and budget, the mean of each measure per sampler over the data seeds
(image measures averaged within a seed first), the paired differences
against ``kcenter`` over data seeds with Student-t 95 % intervals, paired t p
values adjusted by Holm and by Benjamini-Hochberg over the whole family (every
sampler x outcome x rung x budget), and the trend along the ladder (slope of
the per-seed differences per rung step). ``--diagnose`` writes
``diagnostics.json`` (``diagnose``).

Usage::

    python examples/deeplab_ada/ladder.py --out OUT --quick   # 2 rungs, 10 data seeds
    python examples/deeplab_ada/ladder.py --out OUT           # 3 rungs, 20 data seeds
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from densecore.io import atomic_save_figure, atomic_write_json, atomic_write_text  # noqa: E402

log = logging.getLogger("deeplab_ada.ladder")


@dataclass(frozen=True)
class Rung:
    """One fixed checkpoint: the study arm (data, config) and method it is trained as."""

    name: str
    arm: str            # "quick" (64x128) or "full" (128x256)
    method: str         # study.METHODS key
    stop_at: int | None = None  # stop training here (the model of a selection round)
    overrides: tuple = ()       # (field, value) pairs over the study's config


# 128x256: half the full study's 1,600 iterations (about 20 min on one busy core)
RUNGS = (Rung("round0", "quick", "kcenter", stop_at=300),
         Rung("supervised_64x128", "quick", "supervised"),
         Rung("supervised_128x256", "full", "supervised",
              overrides=(("iterations", 800), ("estimator_detach_iter", 800))))


def _arm(name: str):
    import study

    if name == "quick":
        return study.Arm("2.2pct", **study._QUICK)
    return study.Arm("2.2pct", config="study.yaml", size=(128, 256), train=40, val=24)


def rung_dir(out: str, rung: Rung) -> str:
    return os.path.join(out, "rungs", rung.name)


def train_rung(out: str, rung: Rung, *, progress: bool = False) -> str:
    """Train ``rung`` with ``train.py`` (once; kept) and return its checkpoint path."""
    import study
    import train
    import yaml

    run_dir = rung_dir(out, rung)
    done = os.path.join(run_dir, "done.json")
    ckpt = os.path.join(run_dir, "checkpoint.pth")
    if os.path.exists(done):
        return ckpt
    arm = _arm(rung.arm)
    roots = study.prepare_data(out, arm)
    values = dict(study.run_config(arm, rung.method, 0), **dict(rung.overrides))
    cfg_path = os.path.join(out, "rungs", rung.name + ".yaml")
    os.makedirs(os.path.dirname(cfg_path), exist_ok=True)
    atomic_write_text(cfg_path, yaml.safe_dump(values, sort_keys=True))
    if os.path.exists(run_dir):  # an interrupted training: start it again
        shutil.rmtree(run_dir)
    argv = ["--config", cfg_path, "--source-root", roots["source"],
            "--target-root", roots["target"], "--out", run_dir, "--workers", "0",
            "--vis-images", "0", "--device", "cpu"]
    if rung.stop_at is not None:
        argv += ["--stop-at", str(rung.stop_at)]
    if not progress:
        argv.append("--no-progress")
    tic = time.perf_counter()
    train.main(train.get_args_parser().parse_args(argv))
    with open(ckpt, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    atomic_write_json(done, {"rung": rung.name, "seconds": time.perf_counter() - tic,
                             "sha256": digest, "config": values})
    return ckpt


@dataclass(frozen=True)
class Plan:
    """What one ladder runs: rungs, data seeds and the images of each draw."""

    rungs: tuple
    data_seeds: tuple
    pool: int = 3     # images to select in, per data seed
    held: int = 2     # images tau is tuned on
    val: int = 3      # images the linear probe is scored on


PLANS = {"quick": Plan(rungs=("round0", "supervised_64x128"), data_seeds=tuple(range(100, 110))),
         "full": Plan(rungs=tuple(r.name for r in RUNGS), data_seeds=tuple(range(100, 120)))}
BUDGETS = ("2.2pct", "40px")
SAMPLERS = ("kcenter", "density_aware", "density_aware_tuned", "density_aware_knn",
            "typicality", "refinement", "margin", "random", "ripu")
KNN_K = 10           # neighbours of the kNN density (density_aware_knn)
OUTCOMES = ("prop_dmc", "prop_backbone", "probe")  # compared with k-center, Holm over all
ALPHA = 20           # candidates per pick (the paper, up to 2.2 %)
IGNORE = 255


def budget_of(budget: str, shape) -> tuple[int, int]:
    """``(picks, region side)`` of one round that spends the whole budget on ``shape``."""
    import densecore

    if budget == "2.2pct":
        return densecore.region_budget(shape, 0.022, 1, region_size=3), 3
    return densecore.pixel_budget(shape, 40, 1, train_shape=shape), 1


# ---------------------------------------------------------------- data and model outputs


def eval_data(out: str, size, seed: int, plan: Plan) -> str:
    """Target images of one scene draw (``make_synthetic_data``'s generator, ``seed``)."""
    import make_synthetic_data as gen

    h, w = size
    root = os.path.join(out, "data", f"eval_{h}x{w}_{plan.pool + plan.held}_{plan.val}_{seed}")
    if not os.path.exists(os.path.join(root, "done.json")):
        shutil.rmtree(root, ignore_errors=True)
        gen.write_cityscapes(root, plan.pool + plan.held, plan.val,
                             np.random.default_rng(seed), size=(h, w))
        atomic_write_json(os.path.join(root, "done.json"), {"seed": seed, "size": [h, w]})
    return root


def load_rung(out: str, rung: Rung):
    """The rung's trained network (eval mode) and its config."""
    import torch

    from config import load_config
    from models import build_model

    cfg = load_config(os.path.join(out, "rungs", rung.name + ".yaml"))
    ckpt = torch.load(os.path.join(rung_dir(out, rung), "checkpoint.pth"), map_location="cpu",
                      weights_only=False)
    net = build_model(cfg.arch, cfg.backbone, cfg.num_classes, estimator=cfg.estimator,
                      dmc_dim=cfg.dmc_dim, dmc_kernel=cfg.dmc_kernel, beta=cfg.beta,
                      tau=cfg.tau, pretrained=None, freeze_bn=cfg.freeze_bn)
    net.load_state_dict(ckpt["model"])
    return net.eval(), cfg


def model_outputs(net, cfg, root: str, split: str) -> list[dict]:
    """Per image of ``split``: probs ``(1, C, H, W)``, DMC features ``(1, 64, h, w)``,
    reconstruction error ``(1, h, w)``, backbone features ``(1, 128, h, w)``, gt ``(H, W)``."""
    import torch
    import torch.nn.functional as F

    import datasets

    ds = datasets.cityscapes(root, split, cfg.num_classes, size=tuple(cfg.target_size),
                             label_size=None)
    outs = []
    with torch.no_grad():
        for i, image_id in enumerate(ds.ids()):
            image, gt, _ = ds[i]
            o = net(image[None])
            probs = F.interpolate(o["logits"].float(), size=tuple(gt.shape), mode="bilinear",
                                  align_corners=False).softmax(1)
            outs.append({"id": image_id, "probs": probs, "gt": gt,
                         "dmc": o["density"].features.float(),
                         "error": o["density"].error.float(), "backbone": o["feats"].float()})
    return outs


# ---------------------------------------------------------------- measures


def miou_present(pred, gt, num_classes: int) -> float:
    """mIoU (%) over the classes present in ``gt`` (void pixels left out).

    Example:
        >>> import torch
        >>> gt = torch.tensor([0, 0, 1, 255]); pred = torch.tensor([0, 1, 1, 2])
        >>> round(miou_present(pred, gt, 3), 2)   # classes 0 and 1: 1/2 and 1/2
        50.0
    """
    import torch

    keep = gt != IGNORE
    g, p = gt[keep].long(), pred[keep].long()
    conf = torch.bincount(g * num_classes + p, minlength=num_classes ** 2).view(
        num_classes, num_classes).double()
    inter = conf.diag()
    union = conf.sum(0) + conf.sum(1) - inter
    present = conf.sum(1) > 0
    return float((inter[present] / union[present]).mean() * 100) if present.any() else float("nan")


def full_res(feats, size):
    """``(H * W, D)`` L2-normalised features bilinearly upsampled from ``(1, D, h, w)``."""
    import torch.nn.functional as F

    up = F.interpolate(feats, size=size, mode="bilinear", align_corners=False)[0]
    return F.normalize(up.flatten(1).T, dim=1)


def pixel_features(o: dict, which: str):
    """``full_res`` of image ``o``'s ``"dmc"`` or ``"backbone"`` features, kept in ``o``."""
    key = which + "_px"
    if key not in o:
        o[key] = full_res(o[which], tuple(o["gt"].shape))
    return o[key]


def propagate(x, mask, gt, num_classes: int) -> float:
    """Within-image 1-NN label propagation mIoU (%): with ``x`` ``(H * W, D)`` unit
    features, every pixel takes the label of its nearest (cosine) labeled non-void
    pixel of ``mask`` ``(H, W)``; 0 when no labeled pixel is non-void."""
    import torch

    g = gt.reshape(-1)
    src = torch.from_numpy(mask.reshape(-1)) & (g != IGNORE)
    if not bool(src.any()):
        return 0.0
    sims = x @ x[src].T                          # (H*W, M), unit rows: nearest = largest
    pred = g[src][sims.argmax(1)]
    return miou_present(pred, g, num_classes)


def linear_probe(train_x, train_y, val_x, val_y, num_classes: int, *,
                 ridge: float = 1e-2) -> float:
    """A linear probe: ridge regression of one-hot labels on ``train_x`` ``(M, D)`` (with a
    bias), fitted in closed form; mIoU (%) of its argmax on ``val`` over the classes
    present in ``val_y``. 0 when ``train_y`` is empty."""
    import torch

    if train_y.numel() == 0:
        return 0.0
    x = torch.cat([train_x, torch.ones(len(train_x), 1)], 1).double()
    y = torch.nn.functional.one_hot(train_y.long(), num_classes).double()
    gram = x.T @ x + ridge * len(x) * torch.eye(x.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(gram, x.T @ y)
    vx = torch.cat([val_x, torch.ones(len(val_x), 1)], 1).double()
    return miou_present((vx @ w).argmax(1), val_y, num_classes)


class _CandidateTau:
    """Density-aware greedy with densities made from the raw error at the candidates,
    min-max normalised over the candidates (``tune_density_scaling``'s convention)."""

    def __init__(self, tau: float, seed: int):
        self.tau, self.seed = tau, seed

    def select(self, features, budget, *, densities=None, labeled_features=None,
               labeled_densities=None):
        import densecore

        dens = densecore.coverage_density(densities, tau=self.tau)
        return densecore.DensityAwareGreedy(seed=self.seed).select(features, budget,
                                                                   densities=dens)


def knn_density(features):
    """``(N,)`` coverage density at tau 0.25 from the mean distance to the ``KNN_K``
    nearest candidates (``densecore.density.knn_mean_distance``), min-max over the pool."""
    from densecore.density import coverage_density, knn_mean_distance

    return coverage_density(knn_mean_distance(features, min(KNN_K, len(features) - 1)),
                            tau=0.25)


class _KNNDensityAware:
    """Density-aware greedy with the kNN density of the candidates instead of the DMC's:
    a density that measures the local spacing of exactly the points being covered."""

    def __init__(self, seed: int):
        self.seed = seed

    def select(self, features, budget, *, densities=None, labeled_features=None,
               labeled_densities=None):
        import densecore

        return densecore.DensityAwareGreedy(seed=self.seed).select(
            features, budget, densities=knn_density(features))


def make_sampler(name: str, seed: int, tau: float | None = None):
    """``(select_pixels sampler, score)`` of a margin-candidate sampler of the ladder."""
    import densecore

    return {"kcenter": (densecore.KCenterGreedy(seed=seed), "margin"),
            "density_aware": (densecore.DensityAwareGreedy(seed=seed), "margin"),
            "density_aware_tuned": (_CandidateTau(tau, seed), "margin"),
            "density_aware_knn": (_KNNDensityAware(seed), "margin"),
            "typicality": (densecore.TypicalityGreedy(seed=seed), "margin"),
            "refinement": (densecore.KMedoidsRefinement(densecore.KCenterGreedy(seed=seed),
                                                        seed=seed), "margin"),
            "margin": (None, "margin"),
            "random": (None, "random")}[name]


def select_image(o: dict, name: str, budget: str, seed: int, tau: float | None):
    """One sampler on one image: ``(mask (H, W) bool numpy, centres (b,) int64 numpy flat
    pixels, seconds)``."""
    import torch

    import densecore
    from densecore.density import BETA, TAU, coverage_density
    from densecore.filters import ripu_score

    shape = tuple(o["gt"].shape)
    b, side = budget_of(budget, shape)
    dens = coverage_density(o["error"], beta=BETA, tau=TAU, dims=(1, 2))
    tic = time.perf_counter()
    if name == "ripu":
        # RIPU's pixel window: RADIUS_K 32 at 1024x2048, scaled with the label height
        mode, k = ("region", 1) if side > 1 else ("pixel", densecore.ripu_pixel_radius(shape))
        score = ripu_score(o["probs"], k, mode=mode)
        # score-0 ties in a seeded random order, never by pixel index (1e-12 is below
        # float32's resolution at any positive score of this size, so it orders zeros only)
        g = torch.Generator().manual_seed(seed)
        score = score + 1e-12 * torch.rand(score.shape, generator=g)
        mask, centres = densecore.ripu_select(score, b, mode=mode, k=k, return_centres=True)
        return mask[0].numpy(), centres[0].numpy(), time.perf_counter() - tic
    sampler, score = make_sampler(name, seed, tau)
    # the tuned sampler reads the raw error (made strictly positive) and scales it itself
    d = o["error"] + 1e-12 if name == "density_aware_tuned" else dens
    mask, (seen,) = densecore.select_pixels(o["probs"], o["dmc"], d, b, alpha=ALPHA,
                                            sampler=sampler, score=score, region_size=side,
                                            seed=seed, return_candidates=True)
    secs = time.perf_counter() - tic
    return mask[0].numpy(), seen.candidates[seen.selected].numpy(), secs


def at_pixels(maps, flat, size):
    """``(N,)`` values of ``(1, h, w)`` ``maps`` bilinearly upsampled to ``size`` at the flat
    pixels ``flat`` (as ``select_pixels`` samples them)."""
    import torch.nn.functional as F

    up = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)
    return up.reshape(-1)[flat]


def candidate_pool(o: dict, budget: str, seed: int):
    """k-center's margin candidate pool of one image: ``(flat pixels (N,), unit DMC
    features (N, D), densities at tau 0.25 (N,), raw error (N,))``."""
    import densecore
    from densecore.density import BETA, TAU, coverage_density

    shape = tuple(o["gt"].shape)
    b, side = budget_of(budget, shape)
    dens = coverage_density(o["error"], beta=BETA, tau=TAU, dims=(1, 2))
    _, (seen,) = densecore.select_pixels(o["probs"], o["dmc"], dens, b, alpha=ALPHA,
                                         sampler=densecore.KCenterGreedy(seed=seed),
                                         region_size=side, seed=seed, return_candidates=True)
    c = seen.candidates
    return (c, seen.features, at_pixels(dens, c, shape), at_pixels(o["error"], c, shape))


def tune_tau(held: list[dict], budget: str, seed: int) -> dict:
    """``tune_density_scaling`` on each held-out image's candidate pool; the tau with the
    lowest tuning-half max ARD averaged over the images."""
    from densecore import tune_density_scaling

    per, scores = [], {}
    for i, o in enumerate(held):
        _, x, _, err = candidate_pool(o, budget, seed + i)
        b, _ = budget_of(budget, tuple(o["gt"].shape))
        res = tune_density_scaling(x, err, b, seed=seed + i)
        per.append({"tau": res.tau, "gain": res.gain, "gain_sd": res.gain_sd,
                    "verdict": res.verdict,
                    "holdout_max_ard": res.holdout_max_ard,
                    "holdout_default_max_ard": res.holdout_default_max_ard,
                    "holdout_kcenter_max_ard": res.holdout_kcenter_max_ard})
        for sc in res.scores:
            scores.setdefault(sc["tau"], []).append(sc["max_ard"])
    mean = {t: float(np.mean(v)) for t, v in scores.items()}
    tau = min(mean, key=lambda t: (mean[t], t))
    return {"tau": tau, "tuning_max_ard": mean, "per_image": per}


def image_measures(o: dict, mask, centres, kc_centres, pool, name: str, cfg) -> dict:
    """Every per-image measure of one sampler's picks (module docstring)."""
    import torch

    from densecore.density import density_calibration, supplementary_calibration

    gt = o["gt"]
    lab = torch.from_numpy(mask)
    r2 = None
    if pool is not None:
        where = {int(p): i for i, p in enumerate(pool[0].tolist())}
        pos = [where.get(int(c)) for c in centres]
        if all(p is not None for p in pos) and len(pos) >= 2:
            dens = knn_density(pool[1]) if name == "density_aware_knn" else pool[2]
            cal = density_calibration(pool[1], dens, torch.tensor(pos))
            r2 = None if math.isnan(cal.r2) else cal.r2
    n_lab = int(lab.sum())
    paper = None
    if name == "kcenter" and pool is not None:
        # the supplementary's protocol: points with densities ~ U(0.5, 3), regressed
        try:
            cal = supplementary_calibration(pool[1], pool[2], n_samples=100, min_samples=20,
                                            seed=0)
            paper = None if math.isnan(cal.r2) else cal.r2
        except ValueError:  # too few candidates with a density in [0.5, 3]
            paper = None
    return {"id": o["id"], "labeled_pixels": n_lab, "calibration_r2_paper": paper,
            "void_share": float((lab & (gt == IGNORE)).sum()) / max(n_lab, 1),
            "overlap_kcenter": (None if kc_centres is None else
                                len(set(centres.tolist()) & set(kc_centres)) / len(centres)),
            "calibration_r2": r2,
            "prop_dmc": propagate(pixel_features(o, "dmc"), mask, gt, cfg.num_classes),
            "prop_backbone": propagate(pixel_features(o, "backbone"), mask, gt,
                                       cfg.num_classes),
            "centres": centres.tolist()}


def probe_features(outs: list[dict], masks: list | None):
    """``(x (M, 128), y (M,))``: unit backbone features and labels of the masked
    non-void pixels (every non-void pixel when ``masks`` is None)."""
    import torch

    xs, ys = [], []
    for i, o in enumerate(outs):
        g = o["gt"].reshape(-1)
        keep = g != IGNORE
        if masks is not None:
            keep &= torch.from_numpy(masks[i].reshape(-1))
        xs.append(pixel_features(o, "backbone")[keep])
        ys.append(g[keep])
    return torch.cat(xs), torch.cat(ys)


# ---------------------------------------------------------------- records


def record_path(out: str, rung: str, seed: int, budget: str, name: str) -> str:
    return os.path.join(out, "records", rung, budget, f"seed{seed}", name + ".json")


def write_json(path: str, obj) -> None:
    """Write ``obj`` to ``path`` atomically (folders made as needed)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_json(path, obj)


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def run_cell(out: str, rung: Rung, seed: int, plan: Plan, net, cfg, *, cache: dict) -> int:
    """Every missing record of ``(rung, data seed)``; returns how many were written."""
    import densecore

    todo = [(b, s) for b in BUDGETS for s in SAMPLERS
            if not os.path.exists(record_path(out, rung.name, seed, b, s))]
    if not todo:
        return 0
    if "outs" not in cache:
        h, w = tuple(cfg.target_size)[::-1]
        root = eval_data(out, (h, w), seed, plan)
        train = model_outputs(net, cfg, root, "train")
        cache["outs"] = (train[:plan.pool], train[plan.pool:plan.pool + plan.held],
                         model_outputs(net, cfg, root, "val"))
    pool_imgs, held, val = cache["outs"]
    val_x, val_y = probe_features(val, None)
    model_miou = float(np.mean([miou_present(o["probs"].argmax(1)[0].reshape(-1),
                                             o["gt"].reshape(-1), cfg.num_classes)
                                for o in val]))
    written = 0
    for budget in BUDGETS:
        names = [s for b, s in todo if b == budget]
        if not names:
            continue
        tune_file = os.path.join(out, "records", rung.name, budget, f"seed{seed}", "tau.json")
        if not os.path.exists(tune_file):
            write_json(tune_file, tune_tau(held, budget, seed * 1000))
        tau = read_json(tune_file)["tau"]
        # k-center first: the others' overlap is measured against its picks
        for name in ["kcenter"] + [n for n in names if n != "kcenter"]:
            path = record_path(out, rung.name, seed, budget, name)
            if os.path.exists(path):
                continue
            kc = None if name == "kcenter" else [im["centres"] for im in read_json(
                record_path(out, rung.name, seed, budget, "kcenter"))["images"]]
            images, masks, secs = [], [], 0.0
            for i, o in enumerate(pool_imgs):
                img_seed = densecore.image_seed(seed, 0, o["id"])
                mask, centres, s = select_image(o, name, budget, img_seed, tau)
                key = ("pool", budget, i)
                if key not in cache:
                    cache[key] = candidate_pool(o, budget, img_seed)
                pool = cache[key]
                secs += s
                masks.append(mask)
                images.append(image_measures(o, mask, centres, None if kc is None else kc[i],
                                             pool, name, cfg))
            tx, ty = probe_features(pool_imgs, masks)
            probe = linear_probe(tx, ty, val_x, val_y, cfg.num_classes)
            fixed_tau = 0.25 if name in ("density_aware", "density_aware_knn") else None
            write_json(path, {"rung": rung.name, "data_seed": seed, "budget": budget,
                              "sampler": name,
                              "tau": tau if name == "density_aware_tuned" else fixed_tau,
                              "probe": probe, "select_s": secs, "model_miou": model_miou,
                              "images": images})
            written += 1
    return written


def run_ladder(out: str, plan: Plan, *, progress: bool = False) -> None:
    """Train the plan's rungs (once) and write every missing record."""
    for name in plan.rungs:
        rung = next(r for r in RUNGS if r.name == name)
        train_rung(out, rung, progress=progress)
        net, cfg = load_rung(out, rung)
        for seed in plan.data_seeds:
            tic = time.perf_counter()
            n = run_cell(out, rung, seed, plan, net, cfg, cache={})
            if n:
                log.info("%s, data seed %d: %d records in %.1f s", name, seed, n,
                         time.perf_counter() - tic)


# ---------------------------------------------------------------- analysis

MEASURES = ("prop_dmc", "prop_backbone", "probe", "calibration_r2", "calibration_r2_paper",
            "overlap_kcenter", "void_share", "labeled_pixels", "select_s")


def load_records(out: str) -> list[dict]:
    """Every sampler record under ``OUT/records`` (tau files left out)."""
    rows = []
    root = os.path.join(out, "records")
    for dirpath, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            if f.endswith(".json") and f != "tau.json":
                rows.append(read_json(os.path.join(dirpath, f)))
    return rows


def seed_values(rec: dict) -> dict:
    """One record's measures: image measures averaged over its images (None skipped)."""
    vals = {"probe": rec["probe"], "select_s": rec["select_s"], "model_miou": rec["model_miou"]}
    for k in MEASURES:
        if k in vals:
            continue
        xs = [im.get(k) for im in rec["images"]]
        xs = [x for x in xs if x is not None]
        vals[k] = float(np.mean(xs)) if xs else None
    return vals


def analyze(records: list[dict], rungs=None) -> dict:
    """Means per (rung, budget, sampler), paired differences against k-center over data
    seeds (t interval, raw, Holm and BH p over every comparison), the trend, the taus."""
    from scipy import stats as sst

    from densecore.stats import benjamini_hochberg, holm, paired_interval

    table = {}
    for r in records:
        table.setdefault((r["rung"], r["budget"], r["sampler"]), {})[r["data_seed"]] = \
            seed_values(r)
    rungs = [n for n in (rungs or [x.name for x in RUNGS])
             if any(k[0] == n for k in table)]
    means, paired = [], []
    for rung in rungs:
        for budget in BUDGETS:
            kc = table.get((rung, budget, "kcenter"), {})
            for sampler in SAMPLERS:
                cell = table.get((rung, budget, sampler))
                if not cell:
                    continue
                row = {"rung": rung, "budget": budget, "sampler": sampler, "seeds": len(cell)}
                for k in MEASURES + ("model_miou",):
                    xs = [v[k] for v in cell.values() if v.get(k) is not None]
                    row[k] = float(np.mean(xs)) if xs else None
                means.append(row)
                if sampler == "kcenter":
                    continue
                for k in OUTCOMES:
                    seeds = sorted(set(cell) & set(kc))
                    d = [cell[s_][k] - kc[s_][k] for s_ in seeds]
                    if len(d) < 2:
                        continue
                    pi = paired_interval(d)
                    paired.append({"rung": rung, "budget": budget, "sampler": sampler,
                                   "measure": k, "n": pi.n, "mean": pi.mean, "low": pi.low,
                                   "high": pi.high, "p": pi.p, "p_sign_flip": pi.p_sign_flip,
                                   "wins": int(sum(x > 0 for x in d)),
                                   "losses": int(sum(x < 0 for x in d))})
    ps = [1.0 if c["p"] is None else c["p"] for c in paired]
    for c, h, b in zip(paired, holm(ps) if ps else [], benjamini_hochberg(ps) if ps else []):
        c["p_holm"], c["p_bh"] = float(h), float(b)
    trend = []
    for budget in BUDGETS:
        for sampler in SAMPLERS[1:]:
            for k in OUTCOMES:
                xs, ys = [], []
                for i, rung in enumerate(rungs):
                    kc = table.get((rung, budget, "kcenter"), {})
                    cell = table.get((rung, budget, sampler), {})
                    for s_ in sorted(set(cell) & set(kc)):
                        xs.append(i)
                        ys.append(cell[s_][k] - kc[s_][k])
                if len(set(xs)) < 2 or len(xs) < 4:
                    continue
                fit = sst.linregress(xs, ys)
                half = float(sst.t.ppf(0.975, len(xs) - 2) * fit.stderr)
                trend.append({"budget": budget, "sampler": sampler, "measure": k,
                              "slope_per_rung": float(fit.slope),
                              "low": float(fit.slope) - half, "high": float(fit.slope) + half,
                              "p": float(fit.pvalue), "points": len(xs)})
    return {"rungs": rungs, "budgets": list(BUDGETS), "samplers": list(SAMPLERS),
            "outcomes": list(OUTCOMES),
            "family": f"{len(paired)} comparisons (every sampler x outcome x rung x budget "
                      "against k-center); Holm and BH adjusted over all of them",
            "interval": "95 % Student-t over the paired data seeds",
            "means": means, "paired": paired, "trend": trend}


def taus(out: str, plan: Plan) -> dict:
    """``rung -> budget -> {tau: count}`` of the tuned taus, and the held-out verdicts,
    over the plan's rungs and data seeds."""
    res = {}
    root = os.path.join(out, "records")
    for rung in plan.rungs:
        for budget in BUDGETS:
            base = os.path.join(root, rung, budget)
            if not os.path.isdir(base):
                continue
            t, verdicts = {}, {}
            for sd in plan.data_seeds:
                f = os.path.join(base, f"seed{sd}", "tau.json")
                if os.path.exists(f):
                    j = read_json(f)
                    t[str(j["tau"])] = t.get(str(j["tau"]), 0) + 1
                    for im in j["per_image"]:
                        verdicts[im["verdict"]] = verdicts.get(im["verdict"], 0) + 1
            res.setdefault(rung, {})[budget] = {"tau": t, "verdicts": verdicts}
    return res


def _f(v, fmt=".2f"):
    return "–" if v is None else format(v, fmt)


def _p(v):
    return "–" if v is None else (f"{v:.1e}" if v < 1e-3 else f"{v:.3f}")


def report_markdown(an: dict, tau_info: dict) -> str:
    """``ladder.md``: the rungs, per budget the means and the paired differences."""
    lines = ["## Rungs\n",
             "| rung | budget | seeds | model mIoU (val, present classes) | calibration R² "
             "(k-center picks) | R² (density-aware picks) | R² (paper protocol) "
             "| tuned tau (count) | tuning verdicts |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    m = {(r["rung"], r["budget"], r["sampler"]): r for r in an["means"]}
    for rung in an["rungs"]:
        for b in an["budgets"]:
            kc, da = m.get((rung, b, "kcenter")), m.get((rung, b, "density_aware"))
            if kc is None:
                continue
            ti = tau_info.get(rung, {}).get(b, {})
            lines.append(f"| {rung} | {b} | {kc['seeds']} | {_f(kc['model_miou'])} "
                         f"| {_f(kc['calibration_r2'], '.3f')} "
                         f"| {_f(da and da['calibration_r2'], '.3f')} "
                         f"| {_f(kc['calibration_r2_paper'], '.3f')} "
                         f"| {', '.join(f'{k}: {v}' for k, v in ti.get('tau', {}).items())} "
                         f"| {', '.join(f'{k}: {v}' for k, v in ti.get('verdicts', {}).items())} |")
    for b in an["budgets"]:
        lines += [f"\n## Budget {b}: means over data seeds\n",
                  "| rung | sampler | seeds | 1-NN prop. DMC | 1-NN prop. backbone | linear probe "
                  "| overlap with k-center | void share | labeled px / image | select s |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in an["means"]:
            if r["budget"] != b:
                continue
            lines.append(f"| {r['rung']} | {r['sampler']} | {r['seeds']} | {_f(r['prop_dmc'])} "
                         f"| {_f(r['prop_backbone'])} | {_f(r['probe'])} "
                         f"| {_f(r['overlap_kcenter'], '.3f')} | {_f(r['void_share'], '.3f')} "
                         f"| {_f(r['labeled_pixels'], '.1f')} | {_f(r['select_s'], '.2f')} |")
        lines += [f"\n## Budget {b}: paired differences against k-center (mIoU points)\n",
                  "Sampler minus k-center on the same images, per data seed; 95 % Student-t "
                  f"interval over the seeds; p: paired t; Holm / BH over {an['family']}.\n",
                  "| rung | sampler | measure | seeds | mean | 95 % interval | wins / losses "
                  "| p | Holm p | BH p |",
                  "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for c in an["paired"]:
            if c["budget"] != b:
                continue
            ci = "–" if c["low"] is None else f"{c['low']:+.2f} – {c['high']:+.2f}"
            lines.append(f"| {c['rung']} | {c['sampler']} | {c['measure']} | {c['n']} "
                         f"| {c['mean']:+.2f} | {ci} | {c['wins']} / {c['losses']} "
                         f"| {_p(c['p'])} | {_p(c.get('p_holm'))} | {_p(c.get('p_bh'))} |")
    lines += ["\n## Trend along the ladder\n",
              "Slope of (sampler − k-center) per rung step (rungs in ladder order), least "
              "squares over the per-seed differences, 95 % t interval (unadjusted).\n",
              "| budget | sampler | measure | slope per rung | 95 % interval | p |",
              "| --- | --- | --- | ---: | ---: | ---: |"]
    for t in an["trend"]:
        lines.append(f"| {t['budget']} | {t['sampler']} | {t['measure']} "
                     f"| {t['slope_per_rung']:+.2f} | {t['low']:+.2f} – {t['high']:+.2f} "
                     f"| {_p(t['p'])} |")
    return "\n".join(lines) + "\n"


def plot(an: dict, path: str) -> None:
    """Rows: the outcomes' differences against k-center per rung, and the calibration R²;
    columns: budgets."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rungs, budgets = an["rungs"], an["budgets"]
    fig, axes = plt.subplots(len(OUTCOMES) + 1, len(budgets),
                             figsize=(6.5 * len(budgets), 3.4 * (len(OUTCOMES) + 1)),
                             squeeze=False)
    names = [s for s in SAMPLERS if s != "kcenter"]
    for j, b in enumerate(budgets):
        for i, k in enumerate(OUTCOMES):
            ax = axes[i, j]
            for n_, s in enumerate(names):
                cs = {c["rung"]: c for c in an["paired"]
                      if c["budget"] == b and c["sampler"] == s and c["measure"] == k}
                xs = [x + (n_ - len(names) / 2) * 0.05 for x, r in enumerate(rungs) if r in cs]
                cc = [cs[r] for r in rungs if r in cs]
                if not cc:
                    continue
                ys = np.array([c["mean"] for c in cc])
                err = np.array([[0 if c["low"] is None else c["mean"] - c["low"] for c in cc],
                                [0 if c["high"] is None else c["high"] - c["mean"] for c in cc]])
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=2, label=s)
            ax.axhline(0, color="black", lw=0.8)
            ax.set_xticks(range(len(rungs)), rungs, fontsize=8)
            ax.set_ylabel(f"{k} − k-center (points)")
            ax.set_title(f"{b}: {k}, 95 % t over data seeds", fontsize=9)
            ax.grid(alpha=0.3)
            if i == 0:
                ax.legend(fontsize=6, ncol=2)
        ax = axes[len(OUTCOMES), j]
        m = {(r["rung"], r["sampler"]): r for r in an["means"] if r["budget"] == b}
        for s, key, lab in (("kcenter", "calibration_r2", "k-center picks"),
                            ("density_aware", "calibration_r2", "density-aware picks"),
                            ("kcenter", "calibration_r2_paper", "paper protocol")):
            ys = [m.get((r, s), {}).get(key) for r in rungs]
            ax.plot(range(len(rungs)), [np.nan if y is None else y for y in ys], marker="o",
                    label=lab)
        ax.axhline(0.5, color="grey", ls="--", lw=0.8)
        ax.axhline(0.72, color="grey", ls=":", lw=0.8)
        ax.set_ylim(0, 1)
        ax.set_xticks(range(len(rungs)), rungs, fontsize=8)
        ax.set_ylabel("calibration R² (ARD vs 1/density)")
        ax.set_title(f"{b}: density calibration (0.5 dashed, paper's 0.72 dotted)", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=100)
    plt.close(fig)


def write_report(out: str, plan: Plan, dest: str | None = None) -> str:
    """``ladder.json``, ``ladder.md``, ``ladder.png`` from the records of the plan's rungs
    and data seeds (into ``dest``, default ``out``)."""
    dest = dest or out
    os.makedirs(dest, exist_ok=True)
    recs = [r for r in load_records(out)
            if r["rung"] in plan.rungs and r["data_seed"] in plan.data_seeds]
    an = analyze(recs, list(plan.rungs))
    ti = taus(out, plan)
    atomic_write_json(os.path.join(dest, "ladder.json"), {**an, "taus": ti})
    text = report_markdown(an, ti)
    atomic_write_text(os.path.join(dest, "ladder.md"), text)
    plot(an, os.path.join(dest, "ladder.png"))
    return text


def diagnose(out: str, plan: Plan, seeds: int = 5) -> dict:
    """Why the DMC density does or does not steer the greedy, per rung and budget, over the
    first ``seeds`` data seeds' pool images (k-center's margin candidate pools):

    * ``density_p90_p10``: 90th / 10th percentile of the candidates' DMC densities
      (tau 0.25; 1 means the division changes nothing);
    * ``spearman_error_knn``: rank correlation of the candidates' DMC error with their
      mean distance to the 10 nearest candidates (what the error is meant to estimate);
    * ``r2_kcenter_knn``: calibration R^2 of the kNN density on k-center's picks (the
      same measure as the DMC's ``calibration_r2``);
    * ``kcenter_radius_ratio``: largest over median covering distance of k-center's
      areas (how unequal the areas k-center leaves are);
    * ``kcenter_ard_cv``, ``kcenter_ard_max_over_mean``: coefficient of variation and
      max / mean of the average radial distance (Eq. 4) over k-center's areas: the
      imbalance a density could correct;
    * ``dmc_r2_kcenter``, ``dmc_slope_positive_kcenter``: the DMC density's calibration
      R^2 on k-center's picks and the share of images where its slope (ARD per unit of
      1 / density) is positive, as Algorithm 1 assumes; ``dmc_r2_density_aware``,
      ``dmc_slope_positive_density_aware``: the same on the density-aware greedy's picks.
    """
    import torch
    from scipy import stats as sst

    import densecore
    from densecore.density import density_calibration

    res = {}
    for name in plan.rungs:
        rung = next(r for r in RUNGS if r.name == name)
        net, cfg = load_rung(out, rung)
        rows = {b: [] for b in BUDGETS}
        for seed in plan.data_seeds[:seeds]:
            h, w = tuple(cfg.target_size)[::-1]
            outs = model_outputs(net, cfg, eval_data(out, (h, w), seed, plan), "train")
            for o in outs[:plan.pool]:
                img_seed = densecore.image_seed(seed, 0, o["id"])
                for b in BUDGETS:
                    c, x, dens, err = candidate_pool(o, b, img_seed)
                    n_b, _ = budget_of(b, tuple(o["gt"].shape))
                    sel = densecore.KCenterGreedy(seed=img_seed).select(x, n_b).indices
                    knn = densecore.density.knn_mean_distance(x, KNN_K)
                    q = torch.quantile(dens.double(), torch.tensor([0.1, 0.9],
                                                                   dtype=torch.float64))
                    _, dist = densecore.coverage(x, x[sel])
                    ard = torch.as_tensor(densecore.average_radial_distance(x, x[sel]))
                    cal_kc = density_calibration(x, dens, sel)
                    cal_da = density_calibration(x, dens, densecore.DensityAwareGreedy(
                        seed=img_seed).select(x, n_b, densities=dens).indices)
                    rows[b].append({
                        "density_p90_p10": float(q[1] / q[0]),
                        "spearman_error_knn": float(sst.spearmanr(err.numpy(),
                                                                  np.asarray(knn))[0]),
                        "r2_kcenter_knn": density_calibration(x, knn_density(x), sel).r2,
                        "kcenter_radius_ratio": float(dist.max() / dist.median()),
                        "kcenter_ard_cv": float(ard.std() / ard.mean()),
                        "kcenter_ard_max_over_mean": float(ard.max() / ard.mean()),
                        "dmc_r2_kcenter": cal_kc.r2,
                        "dmc_slope_positive_kcenter": float(cal_kc.slope > 0),
                        "dmc_r2_density_aware": cal_da.r2,
                        "dmc_slope_positive_density_aware": float(cal_da.slope > 0)})
        res[name] = {b: {k: float(np.nanmean([r[k] for r in rs])) for k in rs[0]}
                     for b, rs in rows.items()}
    return res


def get_args_parser(add_help=True):
    parser = argparse.ArgumentParser(description="Fixed-feature ladder of the samplers",
                                     add_help=add_help)
    parser.add_argument("--out", required=True, help="ladder folder (data, rungs, records)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--rungs", nargs="+", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="data seeds (default: the plan's)")
    parser.add_argument("--diagnose", action="store_true",
                        help="write OUT/diagnostics.json (density spread and calibration)")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing; write the analysis from the records")
    parser.add_argument("--results", default=None,
                        help="folder for ladder.json/.md/.png (default: --out)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    return parser


def main(args):
    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    plan = PLANS["quick" if args.quick else "full"]
    if args.rungs:
        plan = Plan(**{**plan.__dict__, "rungs": tuple(args.rungs)})
    if args.seeds:
        plan = Plan(**{**plan.__dict__, "data_seeds": tuple(args.seeds)})
    if args.train_only:
        for r in RUNGS:
            if r.name in plan.rungs:
                train_rung(args.out, r, progress=args.progress)
        return
    if args.diagnose:
        diag = diagnose(args.out, plan)
        atomic_write_json(os.path.join(args.results or args.out, "diagnostics.json"), diag)
        print(json.dumps(diag, indent=1))
        return
    if not args.report_only:
        run_ladder(args.out, plan, progress=args.progress)
    print(write_report(args.out, plan, args.results))


if __name__ == "__main__":
    main(get_args_parser().parse_args())
