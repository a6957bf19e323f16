"""A miniature GTAV -> Cityscapes study: does querying target pixels close the domain gap?

Generates a game-like source and a photo-like target with
``make_synthetic_data.py``, then trains the tiny DeepLab of this example with
``train.py`` once per method and seed:

* ``source_only``: source labels only, no target losses (the lower bound);
* ``random``, ``margin``: the round's budget of 3x3 regions around the top
  pixels by a random score / by margin ``1 - P1 + P2`` (score only);
* ``kcenter``: k-center greedy on the DMC features of the top ``alpha * b``
  margin candidates;
* ``density_aware``: the paper's density-aware greedy (Algorithm 1) with the
  DMC density on the same candidates;
* ``kmedoids_refinement``: the best sampler of the library's bound benchmark
  (``docs/benchmarks.md``; beyond the paper): k-center greedy on the same
  candidates, then k-medoids steps inside its coverage areas;
* ``supervised``: every target training pixel labeled (the upper bound): one
  round at iteration 0 whose budget is 100 % of the pixels, then the same
  training as the active methods.

The active methods share everything but the selection: the same model with
the DMC estimator, the same losses (Eq. 6 margin loss included), budget,
rounds and seeds. No method sees target ground truth when it selects (the
config's oracle ablation ``oracle_exclude_void`` stays off).

Each run is stopped after each selection round (``--stop-at``) and resumed
(``--resume auto``), which ``train.py`` resumes exactly. At each stop the
study loads the checkpoint and

* evaluates it on the target val set (mIoU of the model that made the round's
  queries, trained on the labels of the earlier rounds);
* replays the round's selection for every image with the same seeds and
  records the time ``densecore.select_pixels`` takes, whether the replay gives
  the recorded mask (``replay_match``), and the bound report
  (``densecore.bound_report``: covering radius delta, Eq. 3; max average
  radial distance, Eq. 4; core-set loss, Eq. 1, with the ground truth of the
  candidates, measurement only) of the round's picks among the round's
  ``alpha * b`` L2-normalised candidate features, averaged over the images.

Writes ``OUT/study.json`` (a list of rows, one per method and seed, written
atomically after each run), ``OUT/study.md`` (mean and spread of the mIoU per
method) and ``OUT/study.png`` (mIoU against labeled fraction). A stopped study
picks up where it stopped: finished (method, seed) rows are kept, an
unfinished run is started again from scratch.

Usage::

    python examples/deeplab_ada/study.py --out OUT --quick     # 2 seeds, 64x128, minutes
    python examples/deeplab_ada/study.py --out OUT             # 3 seeds, 128x256

Two processes on one ``--out`` (for example one per core, each with
``--threads 1``) share the runs between them; each writes the table of the
rows on disk when it ends, so the last one to end writes the whole table.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass

import numpy as np
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from densecore.atomic import atomic_save_figure, atomic_write_json, atomic_write_text  # noqa: E402

log = logging.getLogger("deeplab_ada.study")


@dataclass(frozen=True)
class Plan:
    """What one study runs: the base config, the data and the seeds."""

    config: str                 # file under configs/
    size: tuple                 # target (H, W) of the generated data
    train: int                  # training images per domain
    val: int                    # target val images
    seeds: tuple
    data_seed: int = 0


PLANS = {
    "quick": Plan(config="study_quick.yaml", size=(64, 128), train=16, val=12, seeds=(0, 1)),
    "full": Plan(config="study.yaml", size=(128, 256), train=40, val=24, seeds=(0, 1, 2)),
}

_NO_TARGET = {"selection_iters": [], "negative_weight": 0.0, "consistency_weight": 0.0}
# method -> config fields on top of the plan's base config
METHODS = {
    "source_only": dict(_NO_TARGET),
    "random": {"score": "random", "sampler": "score-only"},
    "margin": {"score": "margin", "sampler": "score-only"},
    "kcenter": {"score": "margin", "sampler": "k-center"},
    "density_aware": {"score": "margin", "sampler": "density-aware"},
    "kmedoids_refinement": {"score": "margin", "sampler": "kmedoids-refinement"},
    "supervised": {"selection_iters": [0], "budget_ratio": 1.0, "region_size": 1,
                   "score": "random", "sampler": "score-only"},
}
ACTIVE = ("random", "margin", "kcenter", "density_aware", "kmedoids_refinement")


# ---------------------------------------------------------------- data


def prepare_data(out: str, plan: Plan) -> dict:
    """Generate the data once (``OUT/data``) and return the roots."""
    with _lock(os.path.join(out, "data.lock")):
        return _prepare_data(out, plan)


def _prepare_data(out: str, plan: Plan) -> dict:
    import make_synthetic_data as gen

    root = os.path.join(out, "data")
    roots = {"source": os.path.join(root, "gtav"), "target": os.path.join(root, "cityscapes")}
    want = {"size": list(plan.size), "train": plan.train, "val": plan.val,
            "seed": plan.data_seed}
    marker = os.path.join(root, "done.json")
    if os.path.exists(marker):
        with open(marker) as f:
            if json.load(f) == want:
                return roots
    if os.path.exists(root):
        shutil.rmtree(root)
    gen.main(argparse.Namespace(out=root, train=plan.train, val=plan.val, seed=plan.data_seed,
                                size=tuple(plan.size)))
    atomic_write_json(marker, want)
    return roots


def run_config(plan: Plan, method: str, seed: int) -> dict:
    """Config fields of one run: the plan's YAML, the method's fields, the seed."""
    with open(os.path.join(HERE, "configs", plan.config)) as f:
        values = yaml.safe_load(f) or {}
    values.update(METHODS[method])
    values["oracle_exclude_void"] = False  # reads the ground truth: never in the study
    values["seed"] = seed
    return values


def study_key(plan: Plan) -> str:
    """A short hash of everything that makes rows of two studies comparable."""
    cfgs = {m: run_config(plan, m, 0) for m in METHODS}
    blob = json.dumps({"plan": [plan.config, list(plan.size), plan.train, plan.val,
                                plan.data_seed], "configs": cfgs}, sort_keys=True)
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
            rec = _Recorder(train.make_sampler(cfg, seed))
            tic = time.perf_counter()
            mask, (seen,) = densecore.select_pixels(
                probs, feats, dens, budget, labeled=torch.from_numpy(labeled)[None],
                alpha=cfg.alpha, sampler=rec, score=cfg.score, region_size=cfg.region_size,
                region_overlap=cfg.region_overlap, seed=seed, return_candidates=True)
            mask = mask[0].numpy()
            seconds += time.perf_counter() - tic
            sampler_s += rec.seconds
            recorded = state.queried(image_id, round)
            matches += bool(np.array_equal(mask, recorded))
            total += mask.size
            before += int(labeled.sum())
            after += int((labeled | recorded).sum())
            # the ground truth of the candidates: measurement only, after the selection
            rep = densecore.bound_report(seen.features, seen.selected,
                                         labels=gt.reshape(-1)[seen.candidates])
            bounds.append(rep.as_dict())
    keys = ("delta", "max_ard", "mean_ard", "coreset_loss")
    return {"round": round, "iteration": int(ckpt["iteration"]),
            "labeled_fraction_before": before / total, "labeled_fraction": after / total,
            "mIoU": miou, "selection_s": seconds, "sampler_s": sampler_s,
            "replay_match": matches / len(select),
            "bound": {k: float(np.mean([b[k] for b in bounds])) for k in keys}}


def run_one(out: str, plan: Plan, roots: dict, method: str, seed: int, *,
            progress: bool = False) -> dict:
    """Train ``method`` with ``seed`` through ``train.py`` and return its study row."""
    import train

    name = f"{method}_seed{seed}"
    cfg_path = os.path.join(out, "configs", name + ".yaml")
    run_dir = os.path.join(out, "runs", name)
    values = run_config(plan, method, seed)
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
    return {"method": method, "seed": seed, "mIoU": metrics["mIoU"],
            "labeled_fraction": metrics["labeled_ratio"],
            "per_class_iou": metrics["per_class_iou"], "rounds": rounds,
            "train_s": time.perf_counter() - tic - measure_s, "measure_s": measure_s,
            "run": os.path.relpath(run_dir, out)}


# ---------------------------------------------------------------- the study


def load_rows(path: str, key: str) -> list[dict]:
    """Rows of an earlier (possibly stopped) study at ``path``; [] if there is none.

    Raises:
        ValueError: naming ``--out`` when the rows were written by a study with
            other settings (another plan, config or data).
    """
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = json.load(f)
    other = sorted({r.get("study") for r in rows} - {key}, key=str)
    if other:
        raise ValueError(f"--out: {path} holds rows of another study setting ({other}, this "
                         f"one is {key}); pass a new --out or remove the file")
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


def run_study(out: str, plan: Plan, methods, runner, *, key: str, progress: bool = False):
    """Run every ``(method, seed)`` without a row in ``OUT/study.json`` and write each row.

    ``runner(method, seed) -> row`` does one run; a run's directory
    ``OUT/runs/METHOD_seedSEED`` left by a stopped study is removed first.
    Several processes may run the study in the same ``out`` at once: a run
    another process is doing is skipped, and rows are merged into the file
    under a lock. Returns all rows on disk (old and new), in plan order.
    """
    path = os.path.join(out, "study.json")
    study_lock = os.path.join(out, "study.json.lock")
    with _lock(study_lock):
        rows = load_rows(path, key)
    done = {(r["method"], r["seed"]) for r in rows}
    todo = [(m, s) for s in plan.seeds for m in methods if (m, s) not in done]
    if done:
        log.info("resuming: %d runs done, %d to go", len(done), len(todo))
    it = todo
    if progress:
        from tqdm import tqdm
        it = tqdm(todo, desc="study runs")
    for method, seed in it:
        name = f"{method}_seed{seed}"
        with _lock(os.path.join(out, "runs", name + ".lock"), wait=False) as mine:
            if not mine:
                log.info("%s is running in another process: skipped", name)
                continue
            with _lock(study_lock):
                if (method, seed) in {(r["method"], r["seed"]) for r in load_rows(path, key)}:
                    continue  # finished by another process meanwhile
            stale = os.path.join(out, "runs", name)
            if os.path.exists(stale):
                log.info("removing the unfinished run %s", stale)
                shutil.rmtree(stale)
            row = dict(runner(method, seed), study=key)
            with _lock(study_lock):
                rows = [r for r in load_rows(path, key)
                        if (r["method"], r["seed"]) != (method, seed)] + [row]
                atomic_write_json(path, rows)
    with _lock(study_lock):
        rows = load_rows(path, key)
    order = {(m, s): i for i, (m, s) in enumerate((m, s) for s in plan.seeds for m in methods)}
    return sorted(rows, key=lambda r: order.get((r["method"], r["seed"]), len(order)))


def summarize(rows: list[dict], methods) -> list[dict]:
    """Per method: n, mean and std (ddof 1; 0 for one run), min, max of mIoU, and round means."""
    out = []
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        if not rs:
            continue
        v = np.array([r["mIoU"] for r in rs], float)
        rounds = [x for r in rs for x in r["rounds"]]
        mean = (lambda f: float(np.mean([f(x) for x in rounds])) if rounds else None)
        out.append({"method": m, "n": len(rs), "mean": float(v.mean()),
                    "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                    "min": float(v.min()), "max": float(v.max()),
                    "labeled_fraction": float(np.mean([r["labeled_fraction"] for r in rs])),
                    "selection_s": mean(lambda x: x["selection_s"]),
                    "delta": mean(lambda x: x["bound"]["delta"]),
                    "max_ard": mean(lambda x: x["bound"]["max_ard"]),
                    "coreset_loss": mean(lambda x: x["bound"]["coreset_loss"]),
                    "replay_match": mean(lambda x: x["replay_match"])})
    return out


def markdown_table(summary: list[dict]) -> str:
    """The study's table: mIoU mean ± std (min-max) and the per-round means of the selection."""
    def f(v, fmt):
        return "–" if v is None else format(v, fmt)

    lines = ["| method | runs | mIoU mean ± std | min – max | labeled % | selection s/round "
             "| delta | max ARD | core-set loss | replay = recorded |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in summary:
        lines.append(f"| {s['method']} | {s['n']} | {s['mean']:.2f} ± {s['std']:.2f} "
                     f"| {s['min']:.2f} – {s['max']:.2f} | {100 * s['labeled_fraction']:.2f} "
                     f"| {f(s['selection_s'], '.2f')} | {f(s['delta'], '.3f')} "
                     f"| {f(s['max_ard'], '.3f')} | {f(s['coreset_loss'], '.3f')} "
                     f"| {f(None if s['replay_match'] is None else 100 * s['replay_match'], '.0f')}"
                     f"{'' if s['replay_match'] is None else ' %'} |")
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
            lines.append(
                f"| {m} | {k} | {xs[0]['iteration']} "
                f"| {100 * mean(lambda x: x['labeled_fraction_before']):.2f} → "
                f"{100 * mean(lambda x: x['labeled_fraction']):.2f} "
                f"| {mean(lambda x: x['mIoU']):.2f} | {mean(lambda x: x['selection_s']):.2f} "
                f"| {mean(lambda x: x['bound']['delta']):.3f} "
                f"| {mean(lambda x: x['bound']['max_ard']):.3f} "
                f"| {mean(lambda x: x['bound']['coreset_loss']):.3f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], methods, path: str) -> None:
    """mIoU against labeled target fraction, mean ± std over seeds; the bounds as lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        if not rs:
            continue
        if not rs[0]["rounds"]:  # source_only, supervised: a horizontal line
            v = np.array([r["mIoU"] for r in rs])
            ax.axhline(v.mean(), ls="--", color="grey" if m == "source_only" else "black",
                       label=f"{m} ({v.mean():.1f})")
            continue
        pts = [[(x["labeled_fraction_before"], x["mIoU"]) for x in r["rounds"]]
               + [(r["labeled_fraction"], r["mIoU"])] for r in rs]
        pts = np.array(pts)  # (seeds, rounds + 1, 2)
        ax.errorbar(100 * pts[:, :, 0].mean(0), pts[:, :, 1].mean(0),
                    yerr=pts[:, :, 1].std(0, ddof=1) if len(rs) > 1 else None,
                    marker="o", capsize=3, label=m)
    ax.set_xlabel("labeled target pixels (%)")
    ax.set_ylabel("target val mIoU (%)")
    ax.set_title("mIoU of the model at each selection round and at the end")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=120)
    plt.close(fig)


def get_args_parser(add_help=True):
    parser = argparse.ArgumentParser(description="Miniature GTAV -> Cityscapes study",
                                     add_help=add_help)
    parser.add_argument("--out", required=True, help="study folder (data, runs, results)")
    parser.add_argument("--quick", action="store_true",
                        help="two seeds, 64x128 images, short training (minutes on a CPU)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="override the plan's seeds")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    return parser


def main(args):
    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    plan = PLANS["quick" if args.quick else "full"]
    if args.seeds:
        plan = Plan(**{**plan.__dict__, "seeds": tuple(args.seeds)})
    os.makedirs(os.path.join(args.out, "configs"), exist_ok=True)
    key = study_key(plan)
    load_rows(os.path.join(args.out, "study.json"), key)  # refuse a mixed study early
    roots = prepare_data(args.out, plan)
    rows = run_study(args.out, plan, args.methods,
                     lambda m, s: run_one(args.out, plan, roots, m, s), key=key,
                     progress=args.progress)
    summary = summarize(rows, args.methods)
    table = markdown_table(summary)
    atomic_write_text(os.path.join(args.out, "study.md"),
                      table + "\nPer round (means over seeds):\n\n"
                      + round_table(rows, args.methods))
    plot(rows, args.methods, os.path.join(args.out, "study.png"))
    print(table)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
