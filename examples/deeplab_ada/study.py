"""A miniature GTAV -> Cityscapes study: which target pixels should a person label?

Generates a game-like source and a photo-like target with
``make_synthetic_data.py``, then trains the tiny DeepLab of this example with
``train.py`` once per budget, method and seed. Methods:

* ``source_only``: source labels only, no target losses (the lower bound);
* ``random``, ``margin``: the round's budget of regions around the top
  pixels by a random score / by margin ``1 - P1 + P2`` (score only);
* ``ripu``: RIPU's own selection (Xie et al., CVPR 2022): region impurity
  times prediction uncertainty, pick the best region, suppress its
  neighbourhood, repeat (``densecore.filters``);
* ``kcenter``: k-center greedy on the DMC features of the top ``alpha * b``
  margin candidates;
* ``density_aware``: the paper's density-aware greedy (Algorithm 1) with the
  DMC density on the same candidates;
* ``kmedoids_refinement``: the best sampler of the library's bound benchmark
  (``docs/benchmarks.md``; beyond the paper): k-center greedy on the same
  candidates, then k-medoids steps inside its coverage areas;
* ``ripu_density_aware``: the hybrid: the top ``alpha * b`` candidates by
  RIPU's score, then the paper's density-aware greedy on them;
* ``supervised``: every target training pixel labeled (the upper bound): one
  round at iteration 0 whose budget is 100 % of the pixels, then the same
  training as the active methods.

Budgets (``Arm``): ``2.2pct``, 2.2 % of the target pixels as 3x3 regions
(RIPU's region budget), and ``40px``, RIPU's 40 single pixels per image. The
active methods of one budget share everything but the selection: the same
model with the DMC estimator, the same losses (Eq. 6 margin loss included),
budget, rounds and seeds. No method sees target ground truth when it selects
(the config's oracle ablation ``oracle_exclude_void`` stays off). The
baselines do not depend on the budget and run once per data setting.

Each active run is stopped after each selection round (``--stop-at``) and
resumed (``--resume auto``), which ``train.py`` resumes exactly. At each stop
the study loads the checkpoint and

* evaluates it on the target val set (mIoU of the model that made the round's
  queries, trained on the labels of the earlier rounds);
* replays the round's selection for every image with the same seeds and
  records the time ``densecore.select_pixels`` takes, whether the replay gives
  the recorded mask (``replay_match``), and the bound report
  (``densecore.bound_report``: covering radius delta, Eq. 3; max average
  radial distance, Eq. 4; core-set loss, Eq. 1, with the ground truth of the
  candidates, measurement only) of the round's picks among the round's
  ``alpha * b`` L2-normalised candidate features, averaged over the images
  (none for ``ripu``, which picks from every pixel without a candidate pool).

The same seed gives every method of a budget the same initial model, data
order and scene draw (seed ``s`` generates its data with seed ``s``, so the
seeds vary the scenes as well as the model; ``--data-seed`` fixes one draw),
so methods are compared seed by seed: for each method and reference
(``random``, ``margin``, ``ripu``) the study reports the per-seed differences
of the final mIoU, their mean and a 95 % Student-t interval over the paired
seeds (``mean ± t(0.975, n-1) * sd / sqrt(n)``), and whether it excludes zero.

Writes ``OUT/study.json`` (the rows, one per run with per-class IoU and the
rounds, written atomically after each run, and the analysis: per budget the
summary, the paired differences and the mean per-class IoU), ``OUT/study.md``
(the tables) and ``OUT/study.png`` (mIoU against labeled fraction with 95 %
intervals, and the paired differences). A stopped study picks up where it
stopped: finished runs are kept, an unfinished run is started again from
scratch, and methods or seeds can be added to a finished study.

Usage::

    python examples/deeplab_ada/study.py --out OUT --quick   # 64x128 for both budgets
    python examples/deeplab_ada/study.py --out OUT           # 128x256 at 2.2 %, 64x128 at 40 px

``--jobs N`` (default: up to 2, one per core) runs N processes of one thread
each that share the runs of one ``--out``; more processes on one ``--out``
(started by hand) share them too.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from densecore.io import atomic_save_figure, atomic_write_json, atomic_write_text  # noqa: E402

log = logging.getLogger("deeplab_ada.study")


@dataclass(frozen=True)
class Arm:
    """One budget of a study: its base config, its data and the budget's config fields."""

    name: str                   # short, used in run names
    config: str                 # file under configs/ (or a path)
    size: tuple                 # target (H, W) of the generated data
    train: int                  # training images per domain
    val: int                    # target val images
    budget: tuple = ()          # (field, value) pairs over the base config; () keeps its budget
    # the scene draw: None draws one per run seed (seed s generates its data with seed s);
    # an int fixes one draw for every seed (what studies before the per-seed draw did)
    data_seed: int | None = None


@dataclass(frozen=True)
class Plan:
    """What one study runs: its budgets and the seeds."""

    arms: tuple
    seeds: tuple


_QUICK = dict(config="study_quick.yaml", size=(64, 128), train=16, val=12)
# RIPU's pixel budget: 40 single pixels per image over all rounds
_PIXELS_40 = (("budget", "pixels"), ("budget_pixels", 40), ("region_size", 1))
SEEDS = (0, 1, 2, 3, 4)
PLANS = {
    "quick": Plan(arms=(Arm("2.2pct", **_QUICK), Arm("40px", **_QUICK, budget=_PIXELS_40)),
                  seeds=SEEDS),
    "full": Plan(arms=(Arm("2.2pct", config="study.yaml", size=(128, 256), train=40, val=24),
                       Arm("40px", **_QUICK, budget=_PIXELS_40)),
                 seeds=SEEDS),
}

_NO_TARGET = {"selection_iters": [], "negative_weight": 0.0, "consistency_weight": 0.0}
# method -> config fields on top of the arm's base config and budget
METHODS = {
    "source_only": dict(_NO_TARGET),
    "random": {"score": "random", "sampler": "score-only"},
    "margin": {"score": "margin", "sampler": "score-only"},
    "ripu": {"score": "ripu", "sampler": "ripu"},
    "kcenter": {"score": "margin", "sampler": "k-center"},
    "density_aware": {"score": "margin", "sampler": "density-aware"},
    "kmedoids_refinement": {"score": "margin", "sampler": "kmedoids-refinement"},
    "ripu_density_aware": {"score": "ripu", "sampler": "density-aware"},
    "supervised": {"selection_iters": [0], "budget": "ratio", "budget_ratio": 1.0,
                   "region_size": 1, "score": "random", "sampler": "score-only"},
}
BASELINES = ("source_only", "supervised")  # no selection: the budget does not apply
ACTIVE = tuple(m for m in METHODS if m not in BASELINES)
# the plot's references (the tables give every pair of active methods); k-center is the
# paper's own ablation reference for the density-aware greedy on the same candidates
REFERENCES = ("random", "margin", "ripu", "kcenter")
FAMILY_LEVEL = 0.05  # the level Holm's and BH's adjusted p values are read at


# ---------------------------------------------------------------- data and configs


def data_seed(arm: Arm, seed: int) -> int:
    """The scene draw of run seed ``seed``: the seed itself, so that the seeds of a
    study vary the data as well as the model (its intervals include scene
    variation), unless ``arm.data_seed`` fixes one draw for all seeds."""
    return seed if arm.data_seed is None else arm.data_seed


def data_dir(out: str, arm: Arm, seed: int = 0) -> str:
    """``OUT/data/<H>x<W>_<train>_<val>_<data seed>``: runs with the same data share it."""
    h, w = arm.size
    return os.path.join(out, "data", f"{h}x{w}_{arm.train}_{arm.val}_{data_seed(arm, seed)}")


def prepare_data(out: str, arm: Arm, seed: int = 0) -> dict:
    """Generate the data of ``arm`` for run seed ``seed`` once and return the roots."""
    root = data_dir(out, arm, seed)
    with _lock(root + ".lock"):
        return _prepare_data(root, arm, data_seed(arm, seed))


def _prepare_data(root: str, arm: Arm, seed: int) -> dict:
    import make_synthetic_data as gen

    roots = {"source": os.path.join(root, "gtav"), "target": os.path.join(root, "cityscapes")}
    want = {"size": list(arm.size), "train": arm.train, "val": arm.val, "seed": seed}
    marker = os.path.join(root, "done.json")
    if os.path.exists(marker):
        with open(marker) as f:
            if json.load(f) == want:
                return roots
    if os.path.exists(root):
        shutil.rmtree(root)
    gen.main(argparse.Namespace(out=root, train=arm.train, val=arm.val, seed=seed,
                                size=tuple(arm.size)))
    atomic_write_json(marker, want)
    return roots


def run_config(arm: Arm, method: str, seed: int) -> dict:
    """Config fields of one run: the arm's YAML, its budget (active methods), the method's, the seed."""
    with open(os.path.join(HERE, "configs", arm.config)) as f:
        values = yaml.safe_load(f) or {}
    if method not in BASELINES:
        values.update(dict(arm.budget))
    values.update(METHODS[method])
    values["oracle_exclude_void"] = False  # reads the ground truth: never in the study
    values["seed"] = seed
    return values


def run_key(arm: Arm, method: str) -> str:
    """A short hash of everything that makes a run what it is, but the seed.

    Two (arm, method) pairs with one key are one run (the baselines of two
    arms on the same data); a row whose key differs from the current one was
    made with other settings.
    """
    draw = "per seed" if arm.data_seed is None else arm.data_seed
    blob = json.dumps({"data": [list(arm.size), arm.train, arm.val, draw],
                       "config": run_config(arm, method, 0)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def expected_keys(plan: Plan, methods) -> dict:
    """``(arm name, method) -> run key`` for every pair of the plan."""
    return {(a.name, m): run_key(a, m) for a in plan.arms for m in methods}


def study_key(plan: Plan) -> str:
    """A short hash of every run key of the plan (the plans' identity, for the report)."""
    keys = expected_keys(plan, list(METHODS))
    blob = json.dumps(sorted(f"{a}/{m}/{k}" for (a, m), k in keys.items()))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ---------------------------------------------------------------- one run


class _Recorder:
    """A sampler for ``densecore.select_pixels`` that runs another one and keeps what it saw.

    ``inner`` is a densecore sampler or None (score only: the ``budget`` best
    candidates, which ``select_pixels`` hands over best first).
    """

    def __init__(self, inner):
        self.inner, self.features, self.indices, self.seconds = inner, None, None, 0.0

    def select(self, features, budget, *, densities=None, labeled_features=None,
               labeled_densities=None):
        import torch
        from densecore import Selection

        tic = time.perf_counter()
        if self.inner is None:
            sel = Selection(indices=torch.arange(budget, device=features.device),
                            radii=torch.zeros(budget))
        else:  # densecore's one sampler protocol
            sel = self.inner.select(features, budget, densities=densities,
                                    labeled_features=labeled_features,
                                    labeled_densities=labeled_densities)
        self.seconds += time.perf_counter() - tic
        self.features, self.indices = features, torch.as_tensor(sel.indices)
        return sel


def measure_round(run_dir: str, cfg_path: str, target_root: str, round: int,
                  flip: bool = True) -> dict:
    """Evaluate the checkpoint of ``run_dir`` and replay selection ``round`` with it.

    Returns ``{"round", "iteration", "labeled_fraction_before", "labeled_fraction",
    "mIoU", "selection_s", "sampler_s", "replay_match", "bound": {...}}``; the bound
    entries are means over the images (Euclidean distances on L2-normalised features).
    """
    import torch
    import torch.nn.functional as F

    import densecore

    import datasets
    import train
    from config import load_config
    from models import build_model

    cfg = load_config(cfg_path)
    ckpt = torch.load(os.path.join(run_dir, "checkpoint.pth"), map_location="cpu",
                      weights_only=False)
    net = build_model(cfg.arch, cfg.backbone, cfg.num_classes, estimator=cfg.estimator,
                      dmc_dim=cfg.dmc_dim, dmc_kernel=cfg.dmc_kernel, beta=cfg.beta,
                      tau=cfg.tau, pretrained=None, freeze_bn=cfg.freeze_bn)
    net.load_state_dict(ckpt["model"])
    net.eval()
    device = torch.device("cpu")
    size = tuple(cfg.target_size)
    val = datasets.cityscapes(target_root, "val", cfg.num_classes, size=size, label_size=None)
    confmat = train.evaluate(net, torch.utils.data.DataLoader(val, batch_size=1), device,
                             cfg.num_classes, flip=flip)
    miou = train.metrics_dict(confmat, cfg.num_classes)["mIoU"]

    state = densecore.ActiveLabelState(os.path.join(run_dir, "labels"))
    select = datasets.cityscapes(target_root, "train", cfg.num_classes, size=size,
                                 label_size=None)
    bounds, seconds, sampler_s, matches, before, after, total = [], 0.0, 0.0, 0, 0, 0, 0
    with torch.no_grad():
        for i, image_id in enumerate(select.ids()):
            image, gt, _ = select[i]
            shape = tuple(gt.shape)
            out = net(image[None])
            probs = F.interpolate(out["logits"].float(), size=shape, mode="bilinear",
                                  align_corners=False).softmax(1)
            feats = out["density"].features.float()
            dens = net.estimator.density(out["density"]).float()
            labeled = state.labeled(image_id, rounds=range(round))
            seed = densecore.image_seed(cfg.seed, round, image_id)
            budget = train.round_budget(cfg, shape)
            sampler = train.make_sampler(cfg, seed)
            # RIPU's own selection ("ripu") has no candidate pool to record or bound
            rec = sampler if isinstance(sampler, str) else _Recorder(sampler)
            tic = time.perf_counter()
            mask, (seen,) = densecore.select_pixels(
                probs, feats, dens, budget, labeled=torch.from_numpy(labeled)[None],
                alpha=cfg.alpha, sampler=rec, score=cfg.score, region_size=cfg.region_size,
                region_overlap=cfg.region_overlap, seed=seed, return_candidates=True)
            mask = mask[0].numpy()
            seconds += time.perf_counter() - tic
            sampler_s += 0.0 if isinstance(rec, str) else rec.seconds
            recorded = state.queried(image_id, round)
            matches += bool(np.array_equal(mask, recorded))
            total += mask.size
            before += int(labeled.sum())
            after += int((labeled | recorded).sum())
            if seen.features is not None:
                # the ground truth of the candidates: measurement only, after the selection
                rep = densecore.bound_report(seen.features, seen.selected,
                                             labels=gt.reshape(-1)[seen.candidates])
                bounds.append(rep.as_dict())
    keys = ("delta", "max_ard", "mean_ard", "coreset_loss")
    return {"round": round, "iteration": int(ckpt["iteration"]),
            "labeled_fraction_before": before / total, "labeled_fraction": after / total,
            "mIoU": miou, "selection_s": seconds, "sampler_s": sampler_s,
            "replay_match": matches / len(select),
            "bound": ({k: float(np.mean([b[k] for b in bounds])) for k in keys}
                      if bounds else None)}


def run_one(out: str, arm: Arm, roots: dict, method: str, seed: int, *,
            progress: bool = False) -> dict:
    """Train ``method`` of ``arm`` with ``seed`` through ``train.py`` and return its row."""
    import train

    name = f"{arm.name}_{method}_seed{seed}"
    cfg_path = os.path.join(out, "configs", name + ".yaml")
    run_dir = os.path.join(out, "runs", name)
    values = run_config(arm, method, seed)
    os.makedirs(os.path.dirname(cfg_path), exist_ok=True)
    atomic_write_text(cfg_path, yaml.safe_dump(values, sort_keys=True))
    # "--out" is the unique prefix of train.py's output-directory option
    argv = ["--config", cfg_path, "--source-root", roots["source"],
            "--target-root", roots["target"],
            "--out", run_dir, "--workers", "0", "--vis-images", "0", "--device", "cpu"]
    if not progress:
        argv.append("--no-progress")
    parser = train.get_args_parser()
    rounds, tic, measure_s = [], time.perf_counter(), 0.0
    # active runs stop after each round to be measured; supervised's one round
    # at iteration 0 labels everything and has nothing to measure
    stops = list(values["selection_iters"]) if method in ACTIVE else []
    for r, at in enumerate(stops):
        train.main(parser.parse_args(argv + ["--stop-at", str(at)]
                                     + (["--resume", "auto"] if r else [])))
        t0 = time.perf_counter()
        rounds.append(measure_round(run_dir, cfg_path, roots["target"], r,
                                    flip=values.get("flip_test", True)))
        measure_s += time.perf_counter() - t0
    train.main(parser.parse_args(argv + (["--resume", "auto"] if stops else [])))
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    return {"arm": arm.name, "method": method, "seed": seed, "mIoU": metrics["mIoU"],
            "labeled_fraction": metrics["labeled_ratio"],
            "per_class_iou": metrics["per_class_iou"], "rounds": rounds,
            # mIoU over the classes present in the val ground truth (train.metrics_dict)
            "miou_classes": sum(v is not None for v in metrics["per_class_iou"].values()),
            "train_s": time.perf_counter() - tic - measure_s, "measure_s": measure_s,
            "run": os.path.relpath(run_dir, out)}


# ---------------------------------------------------------------- the study


def load_rows(path: str, expected: dict | None = None) -> list[dict]:
    """Rows of an earlier (possibly stopped) study at ``path``; [] if there is none.

    ``expected`` maps ``(arm, method)`` to the run key of the current settings.

    Raises:
        ValueError: naming ``--out`` when a row of an expected ``(arm, method)``
            was made with other settings (another plan, config or data), or the
            file is not a study of this version (an earlier one wrote a list).
    """
    if not os.path.exists(path):
        return []
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict) or "rows" not in data:
        raise ValueError(f"--out: {path} was not written by this version of study.py (no "
                         "'rows'); pass a new --out")
    rows = data["rows"]
    for r in rows:
        want = (expected or {}).get((r["arm"], r["method"]))
        if want is not None and r["key"] != want:
            raise ValueError(f"--out: {path} holds a row of {r['arm']}/{r['method']} made with "
                             f"other settings (key {r['key']}, now {want}); pass a new --out "
                             "or remove the file")
    return rows


@contextlib.contextmanager
def _lock(path: str, *, wait: bool = True):
    """Hold an exclusive lock on the file ``path`` (created); yields False if taken and not ``wait``.

    Lets several ``study.py`` processes share one ``--out``: each takes the
    runs no other process holds. Without ``fcntl`` (Windows) nothing is
    locked, and one process per ``--out`` must run at a time.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield True
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def plan_runs(plan: Plan, methods) -> list[tuple]:
    """``(arm, method, seed)`` of every distinct run, seed by seed; a run that two arms
    share (same key) is listed once, under the first arm."""
    seen, runs = set(), []
    for seed in plan.seeds:
        for arm in plan.arms:
            for m in methods:
                k = (run_key(arm, m), seed)
                if k not in seen:
                    seen.add(k)
                    runs.append((arm, m, seed))
    return runs


def run_study(out: str, plan: Plan, methods, runner, *, report=None,
              progress: bool = False) -> list[dict]:
    """Run every run of the plan without a row in ``OUT/study.json`` and write each row.

    ``runner(arm, method, seed) -> row`` does one run; a run's directory
    ``OUT/runs/ARM_METHOD_seedSEED`` left by a stopped study is removed first.
    ``report(rows) -> dict`` (optional) is the analysis written beside the rows
    each time a row is added. Several processes may run the study in the same
    ``out`` at once: a run another process is doing is skipped, and rows are
    merged into the file under a lock. Returns all rows on disk (old and new).
    """
    path = os.path.join(out, "study.json")
    study_lock = os.path.join(out, "study.json.lock")
    expected = expected_keys(plan, methods)
    report = report or (lambda rows: {})

    def done(rows):
        return {(r["key"], r["seed"]) for r in rows}

    with _lock(study_lock):
        rows = load_rows(path, expected)
    todo = [(a, m, s) for a, m, s in plan_runs(plan, methods)
            if (run_key(a, m), s) not in done(rows)]
    if rows:
        log.info("resuming: %d rows on disk, %d runs to go", len(rows), len(todo))
    it = todo
    if progress:
        from tqdm import tqdm
        it = tqdm(todo, desc="study runs")
    for arm, method, seed in it:
        name, key = f"{arm.name}_{method}_seed{seed}", run_key(arm, method)
        with _lock(os.path.join(out, "runs", name + ".lock"), wait=False) as mine:
            if not mine:
                log.info("%s is running in another process: skipped", name)
                continue
            with _lock(study_lock):
                if (key, seed) in done(load_rows(path, expected)):
                    continue  # finished by another process meanwhile
            stale = os.path.join(out, "runs", name)
            if os.path.exists(stale):
                log.info("removing the unfinished run %s", stale)
                shutil.rmtree(stale)
            row = dict(runner(arm, method, seed), key=key)
            with _lock(study_lock):
                rows = [r for r in load_rows(path, expected)
                        if (r["key"], r["seed"]) != (key, seed)] + [row]
                atomic_write_json(path, {"rows": rows, **report(rows)})
    with _lock(study_lock):
        return load_rows(path, expected)


# ---------------------------------------------------------------- analysis


def arm_rows(rows: list[dict], arm: Arm, methods) -> list[dict]:
    """The rows of ``arm``, one per method and seed, in method order (shared runs relabelled)."""
    by_key = {}
    for r in rows:
        by_key.setdefault(r["key"], []).append(r)
    out = []
    for m in methods:
        for r in sorted(by_key.get(run_key(arm, m), []), key=lambda r: r["seed"]):
            out.append(dict(r, arm=arm.name, method=m))
    return out


def t_interval(values, level: float = 0.95):
    """Mean and Student-t interval ``mean ± t((1+level)/2, n-1) * sd / sqrt(n)`` of ``values``.

    Returns ``(mean, low, high)``; ``low`` and ``high`` are None for fewer than two values.

    Example:
        >>> m, lo, hi = t_interval([1.0, 2.0, 3.0])
        >>> m, round(lo, 3), round(hi, 3)
        (2.0, -0.484, 4.484)
    """
    from scipy import stats

    v = np.asarray(values, float)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, None, None
    half = float(stats.t.ppf((1 + level) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return mean, mean - half, mean + half


def paired_differences(rows: list[dict], methods, level: float = 0.95) -> list[dict]:
    """Every pair of active methods: final mIoU differences (later - earlier in ``methods``
    order, e.g. ``density_aware - kcenter``) seed by seed.

    Only seeds both have are paired. Each entry: ``method, reference, seeds,
    diffs`` and :func:`densecore.stats.paired_interval`'s ``mean, low, high``
    (the raw t interval; None under two seeds), ``p`` (paired t test),
    ``p_sign_flip`` (exact sign-flip p: with ``n`` seeds it cannot go below
    ``2 / 2**n``); ``wins`` and ``losses`` (seeds with a positive / negative
    difference) and ``excludes_zero`` (the raw interval lies above or below 0).
    :func:`adjust` adds the family's Holm and BH p values.
    """
    from densecore.stats import paired_interval

    miou = {}
    for r in rows:
        miou.setdefault(r["method"], {})[r["seed"]] = r["mIoU"]
    active = [m for m in methods if m not in BASELINES and m in miou]
    out = []
    for j, m in enumerate(active):
        for ref in active[:j]:
            seeds = sorted(set(miou[m]) & set(miou[ref]))
            if not seeds:
                continue
            d = [miou[m][s] - miou[ref][s] for s in seeds]
            st = paired_interval(d, level)
            out.append({"method": m, "reference": ref, "seeds": seeds, "diffs": d,
                        "mean": st.mean, "low": st.low, "high": st.high, "p": st.p,
                        "p_sign_flip": st.p_sign_flip,
                        "wins": sum(x > 0 for x in d), "losses": sum(x < 0 for x in d),
                        "excludes_zero": st.low is not None and (st.low > 0 or st.high < 0)})
    return out


def adjust(family: list[dict]) -> list[dict]:
    """The entries of ``family`` (every comparison reported together) with ``p_holm`` and
    ``p_bh``: Holm's and Benjamini-Hochberg's adjusted paired-t p values over the whole
    family (a comparison without a p value, under two seeds, counts as p = 1), and
    ``holm_rejects`` (``p_holm <= FAMILY_LEVEL``)."""
    from densecore.stats import benjamini_hochberg, holm

    p = [1.0 if e["p"] is None else e["p"] for e in family]
    h, b = holm(p), benjamini_hochberg(p)
    return [dict(e, p_holm=float(hi), p_bh=float(bi), holm_rejects=bool(hi <= FAMILY_LEVEL))
            for e, hi, bi in zip(family, h, b)]


def present_miou(per_class_iou: dict, classes) -> float:
    """Mean IoU (%) over ``classes`` (the classes present in the val ground truth).

    Example:
        >>> present_miou({"road": 60.0, "sky": 40.0, "train": 0.0}, ["road", "sky"])
        50.0
    """
    return float(np.mean([per_class_iou[c] for c in classes]))


def val_classes(target_root: str, num_classes: int = 19) -> list[str]:
    """Names of the classes with at least one pixel in the target val ground truth."""
    import datasets

    val = datasets.cityscapes(target_root, "val", num_classes, label_size=None)
    freq = datasets.class_frequencies(val, num_classes).sum(0)
    return [n for n, f in zip(datasets.class_names(num_classes), freq) if f > 0]


def rescore_rows(rows: list[dict], classes_of) -> list[dict]:
    """Rows recorded before mIoU was taken over the classes present in the val ground
    truth, rescored: ``mIoU`` becomes :func:`present_miou` over ``classes_of(row)``,
    absent classes' IoU None; the recorded value stays as ``mIoU_recorded``. Rows
    already over the present classes (``miou_classes`` set) are kept as they are.
    The round records' ``mIoU`` (no per-class IoU stored) are not rescored."""
    out = []
    for r in rows:
        if "miou_classes" in r:
            out.append(r)
            continue
        classes = classes_of(r)
        pc = {c: (v if c in classes else None) for c, v in r["per_class_iou"].items()}
        out.append(dict(r, mIoU=present_miou(r["per_class_iou"], classes), mIoU_recorded=r["mIoU"],
                        per_class_iou=pc, miou_classes=len(classes)))
    return out


def per_class(rows: list[dict], methods) -> dict:
    """``method -> class -> mean IoU over the seeds`` (None where no seed has the class)."""
    out = {}
    for m in methods:
        rs = [r["per_class_iou"] for r in rows if r["method"] == m and r.get("per_class_iou")]
        if not rs:
            continue
        out[m] = {}
        for c in rs[0]:
            v = [r[c] for r in rs if r.get(c) is not None]
            out[m][c] = float(np.mean(v)) if v else None
    return out


def summarize(rows: list[dict], methods) -> list[dict]:
    """Per method: n, mean, std (ddof 1; 0 for one run), 95 % t interval of the mean,
    min, max of mIoU, and round means of the selection measurements."""
    out = []
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        if not rs:
            continue
        v = np.array([r["mIoU"] for r in rs], float)
        _, lo, hi = t_interval(v)
        rounds = [x for r in rs for x in r["rounds"]]
        bounded = [x for x in rounds if x["bound"] is not None]

        def mean(f, xs=rounds):
            return float(np.mean([f(x) for x in xs])) if xs else None

        def bound(k):
            return mean(lambda x: x["bound"][k], bounded)

        out.append({"method": m, "n": len(rs), "mean": float(v.mean()),
                    "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                    "low": lo, "high": hi,
                    "min": float(v.min()), "max": float(v.max()),
                    "labeled_fraction": float(np.mean([r["labeled_fraction"] for r in rs])),
                    "selection_s": mean(lambda x: x["selection_s"]),
                    "delta": bound("delta"), "max_ard": bound("max_ard"),
                    "coreset_loss": bound("coreset_loss"),
                    "replay_match": mean(lambda x: x["replay_match"])})
    return out


def analyze(rows: list[dict], plan: Plan, methods) -> dict:
    """The analysis stored beside the rows: per arm the summary, paired differences, per-class IoU."""
    arms, family = {}, []
    for arm in plan.arms:
        rs = arm_rows(rows, arm, methods)
        paired = [dict(p, arm=arm.name) for p in paired_differences(rs, methods)]
        family += paired
        arms[arm.name] = {"config": arm.config, "size": list(arm.size), "train": arm.train,
                          "val": arm.val, "budget": dict(arm.budget) or "base config",
                          "summary": summarize(rs, methods),
                          "per_class_iou": per_class(rs, methods)}
    family = adjust(family)
    for arm in plan.arms:
        arms[arm.name]["paired"] = [p for p in family if p["arm"] == arm.name]
    return {"study": study_key(plan), "seeds": list(plan.seeds), "methods": list(methods),
            "interval": "95 % Student-t over the paired seeds (raw, not adjusted)",
            "family": {"comparisons": len(family), "level": FAMILY_LEVEL,
                       "adjustments": "Holm (family-wise error) and Benjamini-Hochberg (false "
                                      "discovery rate) over every pair of active methods of "
                                      "every budget, from the paired t test's p",
                       "holm_rejects": sum(p["holm_rejects"] for p in family),
                       "bh_rejects": sum(p["p_bh"] <= FAMILY_LEVEL for p in family)},
            "arms": arms}


def _f(v, fmt):
    return "–" if v is None else format(v, fmt)


def _interval(lo, hi, fmt):
    return "–" if lo is None else f"{lo:{fmt}} – {hi:{fmt}}"


def markdown_table(summary: list[dict]) -> str:
    """mIoU mean ± std, its 95 % t interval, min-max and the per-round means of the selection."""
    lines = ["| method | runs | mIoU mean ± std | 95 % interval | min – max | labeled % "
             "| selection s/round | delta | max ARD | core-set loss | replay = recorded |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in summary:
        rm = s["replay_match"]
        lines.append(f"| {s['method']} | {s['n']} | {s['mean']:.2f} ± {s['std']:.2f} "
                     f"| {_interval(s['low'], s['high'], '.2f')} "
                     f"| {s['min']:.2f} – {s['max']:.2f} | {100 * s['labeled_fraction']:.2f} "
                     f"| {_f(s['selection_s'], '.2f')} | {_f(s['delta'], '.3f')} "
                     f"| {_f(s['max_ard'], '.3f')} | {_f(s['coreset_loss'], '.3f')} "
                     f"| {'–' if rm is None else format(100 * rm, '.0f') + ' %'} |")
    return "\n".join(lines) + "\n"


def paired_table(paired: list[dict]) -> str:
    """Paired differences: mean, raw 95 % t interval, wins / losses, whether the raw
    interval excludes 0, the t test's raw, Holm- and BH-adjusted p, the sign-flip p."""
    lines = ["| method | − reference | seeds | mean difference | raw 95 % interval "
             "| wins / losses | raw excludes 0 | p (t) | Holm p | BH p | sign-flip p |",
             "| --- | --- | ---: | ---: | ---: | ---: | :---: | ---: | ---: | ---: | ---: |"]
    for p in paired:
        lines.append(f"| {p['method']} | {p['reference']} | {len(p['seeds'])} "
                     f"| {p['mean']:+.2f} | {_interval(p['low'], p['high'], '+.2f')} "
                     f"| {p['wins']} / {p['losses']} | {'yes' if p['excludes_zero'] else 'no'} "
                     f"| {_f(p['p'], '.4f')} | {_f(p.get('p_holm'), '.3f')} "
                     f"| {_f(p.get('p_bh'), '.3f')} | {_f(p.get('p_sign_flip'), '.4f')} |")
    return "\n".join(lines) + "\n"


def class_table(per_class_iou: dict) -> str:
    """Mean per-class IoU over the seeds: one row per class, one column per method."""
    methods = list(per_class_iou)
    if not methods:
        return ""
    lines = ["| class | " + " | ".join(methods) + " |",
             "| --- | " + " | ".join("---:" for _ in methods) + " |"]
    for c in per_class_iou[methods[0]]:
        lines.append(f"| {c} | " + " | ".join(_f(per_class_iou[m].get(c), ".1f")
                                             for m in methods) + " |")
    return "\n".join(lines) + "\n"


def round_table(rows: list[dict], methods) -> str:
    """Per active method and round, means over seeds: labeled fraction before and after,
    mIoU of the model that selected, selection seconds (all images), bound report."""
    lines = ["| method | round | iteration | labeled % before → after | mIoU at round "
             "| selection s | delta | max ARD | core-set loss |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for m in methods:
        rs = [r for r in rows if r["method"] == m and r["rounds"]]
        for k in range(min((len(r["rounds"]) for r in rs), default=0)):
            xs = [r["rounds"][k] for r in rs]
            mean = lambda f: float(np.mean([f(x) for x in xs]))  # noqa: E731
            bound = [b for b in (x["bound"] for x in xs) if b is not None]
            cols = " | ".join(_f(float(np.mean([b[c] for b in bound])) if bound else None, ".3f")
                              for c in ("delta", "max_ard", "coreset_loss"))
            lines.append(
                f"| {m} | {k} | {xs[0]['iteration']} "
                f"| {100 * mean(lambda x: x['labeled_fraction_before']):.2f} → "
                f"{100 * mean(lambda x: x['labeled_fraction']):.2f} "
                f"| {mean(lambda x: x['mIoU']):.2f} | {mean(lambda x: x['selection_s']):.2f} "
                f"| {cols} |")
    return "\n".join(lines) + "\n"


def report_markdown(rows: list[dict], plan: Plan, methods) -> str:
    """``study.md``: the family's adjustment, then per budget the summary, every paired
    difference with raw and adjusted p values, per-class IoU and rounds."""
    analysis = analyze(rows, plan, methods)
    fam = analysis["family"]
    parts = [f"Paired comparisons: every pair of active methods at every budget, "
             f"{fam['comparisons']} in all, one family: Holm's adjusted p (family-wise "
             f"error) rejects {fam['holm_rejects']} at {fam['level']:g}, "
             f"Benjamini-Hochberg's (false discovery rate) {fam['bh_rejects']}. The "
             f"intervals are raw 95 % Student-t intervals over the paired seeds.\n"]
    rescored = [r for r in rows if "mIoU_recorded" in r]
    if rescored:
        parts.append(f"{len(rescored)} of {len(rows)} runs were recorded with mIoU over every "
                     "class the model or the ground truth had; their final mIoU is rescored "
                     "here from the stored per-class IoU over the classes present in the val "
                     "ground truth (`mIoU_recorded` keeps the old value). The per-round mIoU "
                     "(no per-class IoU stored) is as recorded.\n")
    for arm in plan.arms:
        rs = arm_rows(rows, arm, methods)
        if not rs:
            continue
        h, w = arm.size
        parts += [f"## Budget {arm.name}\n",
                  f"`configs/{arm.config}`, {budget_text(arm)}; {h}x{w} target images, "
                  f"{arm.train} training images per domain, {arm.val} target val images.\n",
                  markdown_table(summarize(rs, methods)),
                  "\nPaired differences of the final mIoU (method − reference, same seed; "
                  "raw 95 % Student-t interval over the paired seeds; p of the paired t "
                  "test, raw and adjusted over the family; exact sign-flip p):\n",
                  paired_table(analysis["arms"][arm.name]["paired"]),
                  "\nPer-class IoU (mean over seeds):\n", class_table(per_class(rs, methods)),
                  "\nPer round (means over seeds):\n", round_table(rs, methods)]
    return "\n".join(parts)


def budget_text(arm: Arm) -> str:
    """The arm's budget in words, from its active methods' config."""
    v = run_config(arm, "random", 0)
    side = v.get("region_size", 3)
    per_round = f"over {len(v['selection_iters'])} rounds"
    if v.get("budget", "ratio") == "ratio":
        return f"{100 * v['budget_ratio']:g} % of the pixels as {side}x{side} regions {per_round}"
    what = "single pixels" if side == 1 else f"{side}x{side} regions"
    return f"{v['budget_pixels']} {what} per image {per_round}"


def _fit(x, y):
    """Mean of ``y`` (seeds along axis 0) with its 95 % t interval as error bars."""
    means, errs = [], []
    for col in np.asarray(y, float).T:
        m, lo, hi = t_interval(col)
        means.append(m)
        errs.append(0.0 if lo is None else hi - m)
    return np.asarray(x, float).mean(0), np.array(means), np.array(errs)


def plot(rows: list[dict], plan: Plan, methods, path: str) -> None:
    """Per budget: mIoU against labeled target fraction (mean, 95 % t interval over seeds;
    the baselines as lines) and the paired differences against the references."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [a for a in plan.arms if arm_rows(rows, a, methods)]
    fig, axes = plt.subplots(2, max(len(arms), 1), figsize=(7 * max(len(arms), 1), 9),
                             squeeze=False)
    for j, arm in enumerate(arms):
        rs = arm_rows(rows, arm, methods)
        ax = axes[0, j]
        for m in methods:
            mr = [r for r in rs if r["method"] == m]
            if not mr:
                continue
            if m in BASELINES:
                v = np.mean([r["mIoU"] for r in mr])
                ax.axhline(v, ls="--", color="grey" if m == "source_only" else "black",
                           label=f"{m} ({v:.1f})")
                continue
            n = min(len(r["rounds"]) for r in mr)
            pts = np.array([[(x["labeled_fraction_before"], x["mIoU"]) for x in r["rounds"][:n]]
                            + [(r["labeled_fraction"], r["mIoU"])] for r in mr])
            x, y, e = _fit(100 * pts[:, :, 0], pts[:, :, 1])
            ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=f"{m} (n={len(mr)})")
        ax.set_xlabel("labeled target pixels (%)")
        ax.set_ylabel("target val mIoU (%)")
        ax.set_title(f"budget {arm.name}: mIoU at each round and at the end (95 % t)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        ax = axes[1, j]
        paired = paired_differences(rs, methods)
        names = [m for m in methods if any(p["method"] == m for p in paired)]
        for k, ref in enumerate(REFERENCES):
            ps = {p["method"]: p for p in paired if p["reference"] == ref}
            ys = [i + (k - 1.5) * 0.2 for i, m in enumerate(names) if m in ps]
            ms = [ps[m] for m in names if m in ps]
            if not ms:
                continue
            xs = np.array([p["mean"] for p in ms])
            err = np.array([[0.0 if p["low"] is None else p["mean"] - p["low"] for p in ms],
                            [0.0 if p["high"] is None else p["high"] - p["mean"] for p in ms]])
            ax.errorbar(xs, ys, xerr=err, fmt="o", capsize=3, label=f"− {ref}")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_xlabel("final mIoU difference, same seed (points; raw 95 % t interval)")
        ax.set_title(f"budget {arm.name}: paired differences")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)
    plt.close(fig)


def write_report(out: str, plan: Plan, methods, *, rescore: bool = False) -> str:
    """Rewrite ``OUT/study.json``'s analysis, ``OUT/study.md`` and ``OUT/study.png`` from the rows.

    ``rescore``: first rescore rows recorded before mIoU was taken over the classes
    present in the val ground truth (:func:`rescore_rows`; generates each row's data
    under ``OUT/data`` to read its val ground truth)."""
    path = os.path.join(out, "study.json")
    with _lock(os.path.join(out, "study.json.lock")):
        rows = load_rows(path, expected_keys(plan, methods))
        if rescore:
            arms, classes = {a.name: a for a in plan.arms}, {}

            def classes_of(r):
                arm = arms[r["arm"]]
                where = data_dir(out, arm, r["seed"])
                if where not in classes:
                    classes[where] = val_classes(prepare_data(out, arm, r["seed"])["target"])
                return classes[where]

            rows = rescore_rows(rows, classes_of)
        atomic_write_json(path, {"rows": rows, **analyze(rows, plan, methods)})
    text = report_markdown(rows, plan, methods)
    atomic_write_text(os.path.join(out, "study.md"), text)
    plot(rows, plan, methods, os.path.join(out, "study.png"))
    return text


# ---------------------------------------------------------------- command line


def get_args_parser(add_help=True):
    parser = argparse.ArgumentParser(description="Miniature GTAV -> Cityscapes study",
                                     add_help=add_help)
    parser.add_argument("--out", required=True, help="study folder (data, runs, results)")
    parser.add_argument("--quick", action="store_true",
                        help="64x128 images and short training for both budgets")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="override the plan's seeds")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--arms", nargs="+", default=None,
                        help="run only these budgets (default: all of the plan)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes sharing the runs (default: up to 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    parser.add_argument("--data-seed", type=int, default=None,
                        help="one scene draw for every seed (default: each seed draws its "
                             "own; studies made before the per-seed draw used 0)")
    parser.add_argument("--rescore-miou", action="store_true",
                        help="rescore the final mIoU of runs recorded before it was taken over "
                             "the classes present in the val ground truth (from their "
                             "per-class IoU)")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing; rewrite the analysis, table and plot from the rows")
    parser.add_argument("--no-report", dest="report", action="store_false",
                        help=argparse.SUPPRESS)  # the worker processes of --jobs
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    return parser


def make_plan(args) -> Plan:
    """The plan of ``args``: quick or full, with ``--seeds`` and ``--arms`` applied."""
    plan = PLANS["quick" if args.quick else "full"]
    arms = plan.arms
    if args.arms:
        unknown = sorted(set(args.arms) - {a.name for a in arms})
        if unknown:
            raise ValueError(f"--arms: unknown {unknown}; the plan has "
                             f"{[a.name for a in arms]}")
        arms = tuple(a for a in arms if a.name in args.arms)
    if getattr(args, "data_seed", None) is not None:
        arms = tuple(dataclasses.replace(a, data_seed=args.data_seed) for a in arms)
    return Plan(arms=arms, seeds=tuple(args.seeds) if args.seeds else plan.seeds)


def _worker_argv(args) -> list[str]:
    argv = [sys.executable, os.path.abspath(__file__), "--out", args.out, "--jobs", "1",
            "--threads", str(args.threads), "--no-report", "--no-progress",
            "--methods", *args.methods]
    if args.quick:
        argv.append("--quick")
    if args.seeds:
        argv += ["--seeds", *map(str, args.seeds)]
    if args.arms:
        argv += ["--arms", *args.arms]
    if args.data_seed is not None:
        argv += ["--data-seed", str(args.data_seed)]
    return argv


def main(args):
    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    plan = make_plan(args)
    os.makedirs(os.path.join(args.out, "configs"), exist_ok=True)
    expected = expected_keys(plan, args.methods)
    load_rows(os.path.join(args.out, "study.json"), expected)  # refuse a mixed study early
    if not args.report_only:
        if args.jobs > 1:  # one process per job; each takes the runs no other one holds
            procs = [subprocess.Popen(_worker_argv(args)) for _ in range(args.jobs)]
            codes = [p.wait() for p in procs]
            if any(codes):
                raise SystemExit(f"a study process failed (exit codes {codes})")
        else:
            roots = {}

            def runner(arm, method, seed):  # each seed its own scene draw
                where = data_dir(args.out, arm, seed)
                if where not in roots:
                    roots[where] = prepare_data(args.out, arm, seed)
                return run_one(args.out, arm, roots[where], method, seed)

            run_study(args.out, plan, args.methods, runner,
                      report=lambda rows: analyze(rows, plan, args.methods),
                      progress=args.progress)
    if args.report or args.report_only:
        print(write_report(args.out, plan, args.methods, rescore=args.rescore_miou))


if __name__ == "__main__":
    main(get_args_parser().parse_args())
