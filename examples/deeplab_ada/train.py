"""Active domain adaptation for semantic segmentation with density-aware core-set selection.

Trains DeepLab-V2/V3+ on a labelled source (GTAV or SYNTHIA) and an unlabelled
target (Cityscapes); at the configured iterations it queries target pixels
(candidate filtering -> density estimator -> density-aware greedy, through
``densecore.select_pixels``), records them in a ``densecore.ActiveLabelState``
and trains on them from then on. Ends with an evaluation on Cityscapes val.

Single process::

    python train.py --config configs/gtav_v2_2.2.yaml --source-root DATA/gtav \
        --target-root DATA/cityscapes --pretrained resnet101.pth --output-dir runs/x

A run directory is never reused silently: a second run into it is refused
unless it says ``--resume auto``. A run killed at any point (training,
selection, evaluation) and resumed with ``--resume auto`` gives the same
masks, batches and metrics as an uninterrupted one.

Several GPUs: ``torchrun --nproc_per_node=4 train.py ...`` (same arguments).
See README.md for the command of every table row.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import densecore
import datasets
import losses
import utils
from config import Config, config_from_dict, load_config

log = logging.getLogger("deeplab_ada")

LOG_FIELDS = ["iteration", "lr", "loss", "src_ce", "src_margin", "tgt_ce", "negative",
              "consistency", "estimator", "batch_labeled_pixels", "target_labeled_pixels",
              "seconds"]
# What a run writes into --output-dir; any of them there means "a run lives here".
RUN_FILES = ("checkpoint.pth", "run.json", "labels", "log.csv", "metrics.json", "vis")

# Called as on_event(kind, *where) at every point a run can be interrupted:
# ("iteration", it) after each optimiser step, ("select", round, i) after each
# recorded image, ("evaluate", i) after each evaluated image. Tests set it to
# kill the process there; None in normal runs.
on_event = None


class UsageError(ValueError):
    """A wrong command line or output directory; reported in one line, exit code 2."""


def _event(*where):
    if on_event is not None:
        on_event(*where)


# ------------------------------------------------------------------- helpers


class QueriedMask:
    """``index -> (H, W)`` bool: the queried pixels of a target image, read from the label state.

    Only the rounds listed in ``rounds`` are read (set before each training
    stretch to the rounds whose iteration has been reached), so a round that
    is recorded on disk but lies in the stretch's future (a resumed job
    redoing iterations) never leaks into its batches.

    Holds only paths, so it pickles into DataLoader workers; each process opens
    the state read-only on first use.
    """

    def __init__(self, root: str, image_ids):
        self.root, self.image_ids, self._state = root, list(image_ids), None
        self.rounds: list[int] = []

    def __getstate__(self):
        return {"root": self.root, "image_ids": self.image_ids, "rounds": list(self.rounds),
                "_state": None}

    def __call__(self, index: int) -> np.ndarray:
        if self._state is None:
            self._state = densecore.ActiveLabelState(self.root)
        return self._state.labeled(self.image_ids[index], rounds=self.rounds)


def label_shapes(dataset) -> dict:
    """``image id -> (H, W)`` of each label file (PNG headers only)."""
    shapes = {}
    for image_id, path in zip(dataset.ids(), dataset.labels):
        with Image.open(path) as im:
            shapes[image_id] = (im.size[1], im.size[0])
    return shapes


def round_budget(cfg, shape) -> int:
    """Picks per image per round for ``shape = (H, W)`` (RIPU's accounting)."""
    rounds = len(cfg.selection_iters)
    if cfg.budget == "ratio":
        return densecore.region_budget(shape, cfg.budget_ratio, rounds,
                                       region_size=cfg.region_size)
    train_shape = (cfg.target_size[1], cfg.target_size[0])
    return densecore.pixel_budget(shape, cfg.budget_pixels, rounds, train_shape=train_shape)


def make_sampler(cfg, seed: int):
    """The core-set sampler named by ``cfg.sampler`` (None: rank by score only).

    ``"density-aware"`` is the paper's Algorithm 1; ``"kmedoids-refinement"``
    (k-center greedy, then k-medoids steps inside the coverage areas) and
    ``"typicality"`` (farthest-first weighted by the candidate's density) go
    beyond the paper (``docs/benchmarks.md`` measures all of them); ``"ripu"``
    is RIPU's pick-suppress-repeat selection, which ``select_pixels`` runs.
    """
    if cfg.sampler == "density-aware":
        return densecore.DensityAwareGreedy(backend=cfg.greedy_backend, seed=seed)
    if cfg.sampler == "k-center":
        return densecore.KCenterGreedy(backend=cfg.greedy_backend, seed=seed)
    if cfg.sampler == "kmedoids-refinement":
        return densecore.KMedoidsRefinement(
            densecore.KCenterGreedy(backend=cfg.greedy_backend, seed=seed),
            backend=cfg.greedy_backend, seed=seed)
    if cfg.sampler == "typicality":
        return densecore.TypicalityGreedy(backend=cfg.greedy_backend, seed=seed)
    if cfg.sampler == "ripu":  # RIPU's own selection inside select_pixels
        return "ripu"
    return None


def autocast(device, enabled: bool):
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


def upsample(logits, size):
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)


def iteration_seed(seed: int, iteration: int) -> int:
    """The seed of torch's global generator at ``iteration`` (dropout), independent of history."""
    return int(np.random.SeedSequence([seed, iteration]).generate_state(1)[0])


def visible_rounds(cfg, iteration: int) -> list[int]:
    """The rounds whose labels training may use at ``iteration``."""
    return [r for r, at in enumerate(cfg.selection_iters) if at <= iteration]


# ------------------------------------------------------------------ training


def train_one_epoch(model, optimizer, scaler, source_loader, target_loader, cfg, device,
                    start, stop, *, amp=False, csv_log=None, progress=False,
                    labeled_pixels=0, seconds=0.0):
    """Train iterations ``start .. stop - 1``; one "epoch" is the stretch between two rounds.

    Args:
        model: the (possibly DDP-wrapped) :class:`models.Segmenter`.
        source_loader: batches ``(image, label, index)`` of the source, or None
            (source-free); target_loader: the same for the target, with
            labels only at queried pixels. Each yields ``stop - start`` batches.
        cfg: :class:`config.Config`.
        labeled_pixels: target pixels labeled so far (logged).
        seconds: training seconds before ``start`` (the log's clock continues).

    Returns:
        ``(stop, seconds)``: the iteration reached and the training seconds so far.
    """
    net = model.module if hasattr(model, "module") else model
    model.train()
    margin_loss = densecore.CategoryMarginLoss(margin=cfg.margin, ignore_index=datasets.IGNORE)
    source_iter = iter(source_loader) if source_loader is not None else None
    steps = range(start, stop)
    if progress and utils.is_main_process():
        from tqdm import tqdm
        steps = tqdm(steps, initial=0, total=stop - start, desc=f"iter {start}-{stop}")
    tic = time.time()
    for it, (x_t, y_t, _) in zip(steps, target_loader):
        torch.manual_seed(iteration_seed(cfg.seed, it))  # same dropout masks after a resume
        lr = utils.poly_lr(cfg.lr, it, cfg.iterations, cfg.poly_power)
        optimizer.param_groups[0]["lr"] = lr
        optimizer.param_groups[1]["lr"] = lr * cfg.head_lr_mult
        x_t, y_t = x_t.to(device, non_blocking=True), y_t.to(device, non_blocking=True)
        inputs = [x_t]
        if source_iter is not None:
            x_s, y_s, _ = next(source_iter)
            x_s, y_s = x_s.to(device, non_blocking=True), y_s.to(device, non_blocking=True)
            inputs = [x_s, x_t]
        detach = it >= cfg.estimator_detach_iter
        with autocast(device, amp):
            outs = model(inputs, detach_estimator=detach)
        terms = {}
        out_t = outs[-1]
        logits_t = upsample(out_t["logits"], y_t.shape[-2:])
        probs_t = logits_t.softmax(dim=1)
        terms["tgt_ce"] = losses.segmentation_loss(logits_t, y_t)
        terms["negative"] = cfg.negative_weight * losses.negative_learning_loss(
            probs_t, cfg.negative_threshold)
        terms["consistency"] = cfg.consistency_weight * losses.local_consistency_loss(probs_t)
        est_loss = 0.0
        if out_t["density"] is not None:
            est_loss = net.estimator.loss(out_t["density"], target=y_t)
        if source_iter is not None:
            out_s = outs[0]
            logits_s = upsample(out_s["logits"], y_s.shape[-2:])
            terms["src_ce"] = losses.segmentation_loss(logits_s, y_s)
            if cfg.margin_weight > 0:  # Eq. 6
                terms["src_margin"] = cfg.margin_weight * margin_loss(logits_s.softmax(1), y_s)
            if out_s["density"] is not None:
                est_loss = est_loss + net.estimator.loss(out_s["density"], target=y_s)
        if out_t["density"] is not None:
            terms["estimator"] = cfg.estimator_weight * est_loss
        loss = sum(terms.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at iteration {it}: "
                                     + ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items()))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        done = it + 1
        if csv_log is not None and (done % cfg.print_freq == 0 or done == stop):
            terms = {k: float(v.detach()) for k, v in terms.items()}
            row = {k: utils.fixed(v, 5) for k, v in terms.items()}
            row.update(iteration=done, lr=f"{lr:.3e}", loss=utils.fixed(loss.item(), 5),
                       batch_labeled_pixels=int((y_t != datasets.IGNORE).sum()),
                       target_labeled_pixels=labeled_pixels,
                       seconds=f"{seconds + time.time() - tic:.2f}")
            csv_log.write(row)
            log.info("iter %d  loss %s  %s", done, utils.fixed(loss.item(), 4),
                     "  ".join(f"{k} {utils.fixed(v, 4)}" for k, v in terms.items()))
        _event("iteration", done)
    return stop, seconds + time.time() - tic


# ------------------------------------------------------------------ selection


@torch.no_grad()
def select_round(model, dataset, state, cfg, round, device, *, amp=False, vis_dir=None,
                 vis_images=0, progress=False):
    """Query new target pixels for every training image not done in ``round``.

    The images are split over the ranks; each image is selected independently
    (``densecore.select_pixels`` with batch 1) and recorded with
    ``state.add(image_id, mask, round=round)``, so a job killed mid-round
    redoes only the images it had not recorded. Selection reads the image and
    the model only: no ground truth, unless the oracle ablation
    ``cfg.oracle_exclude_void`` is switched on. Ends with a barrier.

    Args:
        dataset: target training images resized to the test size (their
            label files are read only for the oracle ablation).
        state: the run's :class:`densecore.ActiveLabelState`.

    """
    net = model.module if hasattr(model, "module") else model
    net.eval()
    ids = dataset.ids()
    todo = [i for i in range(utils.get_rank(), len(ids), utils.get_world_size())
            if not state.round_done(ids[i], round)]
    if progress and utils.is_main_process():
        from tqdm import tqdm
        todo = tqdm(todo, desc=f"selection round {round}")
    for i in todo:
        shape = state.shape(ids[i])
        image = datasets.to_tensor(datasets.resize(datasets.load_rgb(dataset.images[i]),
                                                   dataset.size, nearest=False))
        with autocast(device, amp):
            out = net(image[None].to(device))
        probs = upsample(out["logits"], shape).softmax(dim=1)
        if out["density"] is not None:
            features = out["density"].features.float()
            densities = net.estimator.density(out["density"]).float()
        else:  # k-center / score-only without an estimator: backbone features
            features = out["feats"].float()
            densities = torch.ones(features.shape[0], *features.shape[-2:], device=device)
        labeled = state.labeled(ids[i], rounds=range(round))
        labeled = torch.from_numpy(labeled)[None].to(device)
        ignore = None
        if cfg.oracle_exclude_void:  # ORACLE ablation: reads the ground truth
            gt = dataset.decode(dataset.labels[i])
            ignore = torch.from_numpy(gt == datasets.IGNORE)[None].to(device)
        seed = densecore.image_seed(cfg.seed, round, ids[i])
        mask = densecore.select_pixels(
            probs, features, densities, round_budget(cfg, shape), labeled=labeled,
            ignore=ignore, alpha=cfg.alpha, sampler=make_sampler(cfg, seed), score=cfg.score,
            region_size=cfg.region_size, region_overlap=cfg.region_overlap, seed=seed)
        state.add(ids[i], mask[0].cpu().numpy(), round=round)
        _event("select", round, i)
    utils.barrier()
    if vis_dir is not None and utils.is_main_process():
        draw_queries(dataset, state, cfg, round, vis_dir, vis_images)


def draw_queries(dataset, state, cfg, round, vis_dir, vis_images):
    """``vis/queried_<id>.png`` for the first images and ``vis/round<r>.png`` for all.

    The first shows the image at full label resolution with every round's
    queried regions outlined in that round's colour and a legend; the second
    summarises round ``round``: where its queries fell (all images, one
    heat map) and which classes they hit (the ground truth is read here, for
    the picture only).
    """
    ids = dataset.ids()
    iters = list(cfg.selection_iters)
    for i in range(min(vis_images, len(ids))):
        rounds = [r for r in state.rounds(ids[i]) if r <= round]
        masks = [state.queried(ids[i], r) for r in rounds]
        image = datasets.load_rgb(dataset.images[i])
        if image.shape[:2] != masks[0].shape:
            image = np.asarray(Image.fromarray(image).resize(masks[0].shape[::-1]))
        legend = [f"round {r} (iter {iters[r]}): {int(m.sum())} px" for r, m in zip(rounds, masks)]
        utils.save_png(utils.queried_overlay(image, masks, legend, cfg.region_size),
                       os.path.join(vis_dir, f"queried_{ids[i]}.png"))
    heat, counts, total = None, np.zeros(cfg.num_classes + 1, np.int64), 0
    for i, image_id in enumerate(ids):
        if not state.round_done(image_id, round):
            continue
        m = state.queried(image_id, round)
        small = utils.pool_counts(m, (64, 128))
        heat = small if heat is None else heat + small
        gt = dataset.decode(dataset.labels[i])
        counts += np.bincount(np.where(gt[m] == datasets.IGNORE, cfg.num_classes, gt[m]),
                              minlength=cfg.num_classes + 1)[: cfg.num_classes + 1]
        total += int(m.sum())
    if heat is not None:
        names = list(datasets.class_names(cfg.num_classes, cfg.class_names)) + ["void"]
        title = (f"round {round} (iter {iters[round]}): {total} queried pixels in "
                 f"{len(ids)} images")
        utils.save_png(utils.round_summary(heat, counts, names,
                                           datasets.palette(cfg.num_classes, cfg.class_names),
                                           title),
                       os.path.join(vis_dir, f"round{round}.png"))


# ------------------------------------------------------------------ evaluation


@torch.no_grad()
def evaluate(model, loader, device, num_classes, *, flip=True, amp=False, vis_dir=None,
             vis_images=0, dataset=None, names=()):
    """Confusion matrix over ``loader`` (labels at full resolution), flip TTA optional.

    For the first ``vis_images`` images ``vis_dir/pred_<id>.png`` shows the
    image, the ground truth and the prediction side by side, enlarged, with a
    legend of the class colours (``dataset`` gives the files, ``names`` the
    classes of a custom data set). The matrix is summed over ranks.
    """
    net = model.module if hasattr(model, "module") else model
    net.eval()
    confmat = utils.ConfusionMatrix(num_classes)
    pal = datasets.palette(num_classes, names)
    class_names = datasets.class_names(num_classes, names)
    for n, (image, target, index) in enumerate(loader):
        image, target = image.to(device), target.to(device)
        with autocast(device, amp):
            probs = upsample(net(image)["logits"], target.shape[-2:]).softmax(1)
            if flip:
                flipped = upsample(net(image.flip(-1))["logits"], target.shape[-2:])
                probs = probs + flipped.softmax(1).flip(-1)
        pred = probs.argmax(1)
        confmat.update(target.flatten(), pred.flatten())
        if vis_dir is not None and dataset is not None:
            for b, idx in enumerate(index.tolist()):
                if idx < vis_images:
                    rgb = datasets.load_rgb(dataset.images[idx])
                    gt = target[b].cpu().numpy()
                    panels = [rgb, utils.colorize(gt, pal), utils.colorize(pred[b].cpu().numpy(), pal)]
                    utils.save_png(utils.side_by_side(panels, ["image", "ground truth",
                                                               "prediction"],
                                                      legend=(class_names, pal)),
                                   os.path.join(vis_dir, f"pred_{dataset.ids()[idx]}.png"))
        _event("evaluate", n)
    confmat.reduce_from_all_processes()
    return confmat


def metrics_dict(confmat, num_classes, names=()) -> dict:
    """mIoU (and mIoU* over 13 classes for SYNTHIA), per-class IoU, pixel accuracy, in %.

    ``names``: the classes of a custom data set (default: GTAV's 19 or SYNTHIA's 16).
    """
    iou = confmat.iou()
    names = datasets.class_names(num_classes, names)
    out = {"mIoU": utils.miou(iou),
           "per_class_iou": {n: (None if np.isnan(v) else float(v * 100))
                             for n, v in zip(names, iou)},
           "pixel_accuracy": confmat.pixel_accuracy() * 100}
    if names == datasets.SYNTHIA_CLASSES:
        out["mIoU13"] = utils.miou(iou, datasets.SYNTHIA_13)
    return out


# ------------------------------------------------------------------ main


def get_args_parser(add_help=True):
    parser = argparse.ArgumentParser(description="Density-aware core-set active domain "
                                                 "adaptation (DeepLab)", add_help=add_help)
    parser.add_argument("--config", default=None, help="YAML file of config fields")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override config fields, e.g. --set iterations=1000 lr=1e-3; "
                             "may be repeated, all pairs apply (a key given twice is an error)")
    parser.add_argument("--source-root", default=None, help="GTAV or SYNTHIA folder")
    parser.add_argument("--target-root", required=True, help="Cityscapes folder")
    parser.add_argument("--output-dir", "--out", dest="output_dir", required=True,
                        help="checkpoints, labels, logs (refused if it holds another run "
                             "and --resume is not given)")
    parser.add_argument("--pretrained", default=None,
                        help="local file of ImageNet ResNet-101 weights (torchvision names); "
                             "required for resnet101 unless --from-scratch or --init-from")
    parser.add_argument("--from-scratch", action="store_true",
                        help="train ResNet-101 from random weights on purpose")
    parser.add_argument("--init-from", default=None,
                        help="checkpoint whose model weights start the run (source-free)")
    parser.add_argument("--resume", default=None,
                        help="checkpoint to resume from; 'auto' = OUTPUT_DIR/checkpoint.pth "
                             "if it exists (else a new run)")
    parser.add_argument("--stop-at", type=int, default=None,
                        help="save and exit after this iteration (resume later)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision (float16 on CUDA, bfloat16 on CPU)")
    parser.add_argument("--workers", type=int, default=4, help="data loader processes")
    parser.add_argument("--test-only", action="store_true",
                        help="only evaluate the checkpoint (--resume, default "
                             "OUTPUT_DIR/checkpoint.pth) with the config stored in it; "
                             "prints the metrics and writes OUTPUT_DIR/metrics_test.json")
    parser.add_argument("--vis-images", type=int, default=4,
                        help="images drawn with their queries and predictions")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bars")
    return parser


def build_data(args, cfg, label_root, ids_holder, *, need_source=True):
    """Source/target training sets, the selection set and the validation set.

    Only lists and checks the files; a root without the expected layout is a
    :class:`UsageError` naming its flag.
    """
    tgt_size = tuple(cfg.target_size)
    source = None
    if not cfg.source_free and need_source:
        if args.source_root is None:
            raise UsageError("--source-root is required unless source_free is set")
        try:
            source = datasets.source_dataset(cfg, args.source_root, size=tuple(cfg.source_size),
                                             flip=True)
        except (FileNotFoundError, ValueError) as e:
            raise UsageError(f"--source-root {args.source_root}: {e}") from None
    try:
        select = datasets.target_dataset(cfg, args.target_root, "train", size=tgt_size,
                                         label_size=None)
        ids_holder.extend(select.ids())
        target = datasets.target_dataset(cfg, args.target_root, "train", size=tgt_size,
                                         flip=True,
                                         label_mask=QueriedMask(label_root, select.ids()))
        val = datasets.target_dataset(cfg, args.target_root, "val", size=tgt_size,
                                      label_size=None)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"--target-root {args.target_root}: {e}") from None
    return source, target, select, val


def source_weights(source, cfg, output_dir):
    if cfg.source_sampling == "uniform":
        return None
    cache = os.path.join(output_dir, "source_class_frequencies.json")
    if utils.is_main_process():
        datasets.class_frequencies(source, cfg.num_classes, cache)
    utils.barrier()
    freq = datasets.class_frequencies(source, cfg.num_classes, cache)
    return datasets.class_balanced_weights(freq, cfg.balance_temperature)


def loaders(source, target, weights, cfg, args, start, stop):
    rank = utils.get_rank()
    kw = dict(num_workers=args.workers, pin_memory=args.device == "cuda")
    tl = torch.utils.data.DataLoader(target, batch_sampler=datasets.IterationBatchSampler(
        len(target), cfg.batch_target, start, stop, seed=cfg.seed + 1, rank=rank), **kw)
    sl = None
    if source is not None:
        sl = torch.utils.data.DataLoader(source, batch_sampler=datasets.IterationBatchSampler(
            len(source), cfg.batch_source, start, stop, weights=weights, seed=cfg.seed,
            rank=rank), **kw)
    return sl, tl


def save_checkpoint(path, model, optimizer, scaler, iteration, args, cfg, seconds=0.0):
    net = model.module if hasattr(model, "module") else model
    utils.atomic_save({"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                       "scaler": scaler.state_dict(), "iteration": iteration,
                       "rng": torch.get_rng_state(), "args": vars(args),
                       "config": dataclasses.asdict(cfg), "seconds": seconds}, path)


def write_metrics(path, metrics, state, cfg, iteration, picks=None):
    summary = state.summary()
    metrics = dict(metrics)
    per_round = []
    for r in summary["rounds"]:
        row = dict(r, iteration=cfg.selection_iters[r["round"]])
        if picks is not None:  # what the budget asked for: regions (or pixels) per round
            row["picks"] = picks
            row["max_pixels"] = picks * cfg.region_size ** 2
        per_round.append(row)
    metrics["queried_pixels_per_round"] = per_round
    metrics["labeled_pixels"] = summary["labeled"]
    metrics["labeled_ratio"] = summary["ratio"]
    metrics["iteration"] = iteration
    metrics["config"] = dataclasses.asdict(cfg)
    datasets.atomic_write_text(path, json.dumps(metrics, indent=2) + "\n")


def _changed(saved: dict, cfg) -> dict:
    """Fields whose value differs between a stored config and ``cfg``.

    A field the stored config lacks (added to :class:`config.Config` later)
    counts as its default.
    """
    defaults = dataclasses.asdict(Config())
    return {k: (saved.get(k, defaults[k]), v) for k, v in dataclasses.asdict(cfg).items()
            if k not in ("extra", "print_freq", "save_every", "eval_every")
            and json.dumps(saved.get(k, defaults[k])) != json.dumps(v)}


def check_output_dir(args, cfg) -> str | None:
    """Refuse to mix two runs in one directory; returns the checkpoint to resume from, if any.

    Reads only. A directory holding any of :data:`RUN_FILES` is only used
    again with ``--resume``; the config must then equal the one of the
    checkpoint (checked when it is loaded) or of ``run.json`` (written when a
    run starts, see :func:`write_run_json`) if the run was killed before its
    first checkpoint.
    """
    out = args.output_dir
    present = [n for n in RUN_FILES if os.path.exists(os.path.join(out, n))]
    ckpt_path = os.path.join(out, "checkpoint.pth")
    resume = ckpt_path if args.resume == "auto" else args.resume
    if args.resume is None and present:
        raise UsageError(f"--output-dir {out} already holds a run ({', '.join(present)}); "
                         f"continue it with --resume auto, or write this run to a new "
                         f"--output-dir")
    if resume and os.path.exists(resume):
        return resume
    run_json = os.path.join(out, "run.json")
    if present:  # --resume auto, killed before the first checkpoint
        if not os.path.exists(run_json):
            raise UsageError(f"--output-dir {out} holds {', '.join(present)} but neither "
                             f"checkpoint.pth nor run.json; it cannot be resumed, write to a "
                             f"new --output-dir")
        with open(run_json) as f:
            changed = _changed(json.load(f)["config"], cfg)
        if changed:
            raise UsageError(f"{run_json} was started with another config; changed fields "
                             f"(run, now): {changed}")
    return None


def write_run_json(args, cfg) -> None:
    """Create ``--output-dir`` and, for a new run, ``run.json`` (its config and arguments).

    Called once everything has been checked, so a wrong command leaves
    nothing behind that would make the corrected one need ``--resume``.
    """
    os.makedirs(args.output_dir, exist_ok=True)
    run_json = os.path.join(args.output_dir, "run.json")
    if not os.path.exists(run_json):
        datasets.atomic_write_text(run_json, json.dumps(
            {"config": dataclasses.asdict(cfg), "args": vars(args)}, indent=2) + "\n")


def check_paths(args) -> None:
    """:class:`UsageError` for a file or folder named on the command line that does not exist."""
    named = [("--config", args.config), ("--source-root", args.source_root),
             ("--target-root", args.target_root), ("--pretrained", args.pretrained),
             ("--init-from", args.init_from)]
    if args.resume not in (None, "auto"):
        named.append(("--resume", args.resume))
    for flag, path in named:
        if path is not None and not os.path.exists(path):
            raise UsageError(f"{flag} {path}: no such file or directory")


def pick_device(args) -> torch.device:
    """``--device`` as a :class:`torch.device` (``cuda`` becomes this rank's GPU).

    A name torch does not know, or CUDA on a torch without a CUDA device, is a
    :class:`UsageError`.
    """
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise UsageError(f"--device {args.device}: not a device name (cpu, cuda, cuda:1, "
                         f"...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: this torch ({torch.__version__}) sees no "
                         f"CUDA device; use --device cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{args.gpu}")
    return device


def load_checkpoint(path: str, flag: str) -> dict:
    """``torch.load`` of the file given with ``flag``; an unreadable one is a UsageError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # pickle, zip and torch each raise their own kinds
        raise UsageError(f"{flag} {path}: not a checkpoint torch can read "
                         f"({type(e).__name__}: {e})") from None


def load_test_config(args):
    """The config stored in the checkpoint evaluated by ``--test-only``."""
    if args.config or args.set:
        raise UsageError("--test-only reads the config from the checkpoint; drop --config "
                         "and --set")
    path = args.resume if args.resume not in (None, "auto") else \
        os.path.join(args.output_dir, "checkpoint.pth")
    if not os.path.exists(path):
        raise UsageError(f"--test-only: no checkpoint at {path} (give it with --resume PATH)")
    ckpt = load_checkpoint(path, "--resume")
    return path, ckpt, config_from_dict(ckpt["config"])


def main(args):
    """Train (or with ``--test-only`` evaluate) as the command line says.

    Everything the command names is checked before anything is written (the
    paths, the config, the device, the data layouts, the weights, the output
    directory); a mistake is a :class:`UsageError` and leaves no file behind.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    utils.init_distributed_mode(args)
    ckpt = None
    if args.test_only:
        resume, ckpt, cfg = load_test_config(args)
    check_paths(args)
    device = pick_device(args)
    if not args.test_only:
        try:
            cfg = load_config(args.config, args.set)
        except ValueError as e:
            raise UsageError(f"--config {args.config}: {e}" if args.config else str(e)) from None
        auto = os.path.join(args.output_dir, "checkpoint.pth")
        resuming = args.resume not in (None, "auto") or (args.resume == "auto"
                                                         and os.path.exists(auto))
        if (cfg.backbone == "resnet101" and not args.pretrained and not args.from_scratch
                and not args.init_from and not resuming):
            raise UsageError("--pretrained FILE (ImageNet ResNet-101 weights) is required for "
                             "the resnet101 backbone; pass --from-scratch to train from random "
                             "weights on purpose (examples/deeplab_ada/prepare_weights.py "
                             "writes the file)")
        if utils.is_main_process():
            resume = check_output_dir(args, cfg)
        utils.barrier()
        if not utils.is_main_process():  # rank 0 has checked the directory
            resume = auto if args.resume == "auto" else args.resume
            resume = resume if resume and os.path.exists(resume) else None
        if resume:
            ckpt = load_checkpoint(resume, "--resume")
            changed = _changed(ckpt["config"], cfg)
            if changed:
                raise UsageError(f"{resume} was trained with another config; changed fields "
                                 f"(checkpoint, now): {changed}")
    torch.manual_seed(cfg.seed)
    label_root = os.path.join(args.output_dir, "labels")
    vis_dir = os.path.join(args.output_dir, "vis")

    ids = []
    source, target, select_set, val = build_data(args, cfg, label_root, ids,
                                                 need_source=not args.test_only)
    from models import build_model
    try:
        model = build_model(cfg.arch, cfg.backbone, cfg.num_classes, estimator=cfg.estimator,
                            dmc_dim=cfg.dmc_dim, dmc_kernel=cfg.dmc_kernel, beta=cfg.beta,
                            tau=cfg.tau, pretrained=None if resume else args.pretrained,
                            freeze_bn=cfg.freeze_bn)
    except ValueError as e:
        raise UsageError(f"--pretrained {args.pretrained}: {e}") from None
    if args.init_from and not resume:
        init = load_checkpoint(args.init_from, "--init-from")
        try:
            model.load_state_dict(init.get("model", init))
        except RuntimeError as e:
            raise UsageError(f"--init-from {args.init_from}: its weights do not fit this "
                             f"config's model ({str(e).splitlines()[0]})") from None

    # Everything is checked: from here on the run writes into --output-dir.
    if utils.is_main_process() and not args.test_only:
        write_run_json(args, cfg)
    utils.barrier()
    if utils.is_main_process():
        # check_output_dir allows a folder with a run only under --resume: continue it
        state = densecore.ActiveLabelState(label_root, ids, label_shapes(select_set),
                                           resume=True)
    utils.barrier()
    if not utils.is_main_process():
        state = densecore.ActiveLabelState(label_root)
    weights = source_weights(source, cfg, args.output_dir) if source is not None else None

    model.to(device)
    model_without_ddp = model
    if args.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[args.gpu] if device.type == "cuda" else None)
        model_without_ddp = model.module
    optimizer = torch.optim.SGD(
        [{"params": [p for p in model_without_ddp.backbone.parameters() if p.requires_grad],
          "lr": cfg.lr},
         {"params": model_without_ddp.head_parameters(), "lr": cfg.lr * cfg.head_lr_mult}],
        lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp and device.type == "cuda")

    ckpt_path = os.path.join(args.output_dir, "checkpoint.pth")
    start, seconds = 0, 0.0
    if resume:
        model_without_ddp.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["rng"])
        start, seconds = ckpt["iteration"], ckpt.get("seconds", 0.0)
        log.info("resumed from %s at iteration %d", resume, start)

    val_loader = torch.utils.data.DataLoader(
        val, batch_size=1, sampler=list(range(utils.get_rank(), len(val), utils.get_world_size())),
        num_workers=args.workers)
    if args.test_only:
        confmat = evaluate(model, val_loader, device, cfg.num_classes, flip=cfg.flip_test,
                           amp=args.amp, vis_dir=vis_dir, vis_images=args.vis_images,
                           dataset=val, names=cfg.class_names)
        if utils.is_main_process():
            metrics = metrics_dict(confmat, cfg.num_classes, cfg.class_names)
            write_metrics(os.path.join(args.output_dir, "metrics_test.json"), metrics, state,
                          cfg, start)
            print(f"{resume} (iteration {start}): mIoU {metrics['mIoU']:.2f}  pixel accuracy "
                  f"{metrics['pixel_accuracy']:.2f}" + (f"  mIoU13 {metrics['mIoU13']:.2f}"
                                                        if "mIoU13" in metrics else ""))
            print("  ".join(f"{k} {'-' if v is None else f'{v:.1f}'}"
                            for k, v in metrics["per_class_iou"].items()))
        return

    csv_log = None
    if utils.is_main_process():
        csv_log = utils.CSVLog(os.path.join(args.output_dir, "log.csv"), LOG_FIELDS)
        csv_log.truncate_after(start)  # rows of iterations redone after this resume
    rounds = list(cfg.selection_iters)
    sel_kw = dict(amp=args.amp, vis_dir=vis_dir, vis_images=args.vis_images,
                  progress=args.progress)
    # what the budget asks for per round: regions (or pixels) summed over the images
    picks = sum(round_budget(cfg, state.shape(i)) for i in ids) if rounds else 0

    def run_round(r):
        select_round(model, select_set, state, cfg, r, device, **sel_kw)
        if utils.is_main_process():
            done = state.summary()["rounds"][r]
            log.info("round %d (iteration %d): %d picks x %d px regions, %d pixels queried "
                     "(%d new) in %d images", r, rounds[r], picks, cfg.region_size ** 2,
                     done["queried"], done["new"], done["images"])

    # A job stopped during or right after a round finishes that round first (the
    # checkpoint of a round's iteration is written before the round starts).
    for r, at in enumerate(rounds):
        if at <= start:
            run_round(r)
    it = start
    t0 = time.time()
    stop_at = cfg.iterations if args.stop_at is None else min(args.stop_at, cfg.iterations)
    while it < stop_at:
        marks = [a for a in rounds if a > it] + [stop_at]
        if cfg.save_every:
            marks.append((it // cfg.save_every + 1) * cfg.save_every)
        if cfg.eval_every:
            marks.append((it // cfg.eval_every + 1) * cfg.eval_every)
        nxt = min(marks)
        target.label_mask.rounds = visible_rounds(cfg, it)
        labeled_px = sum(r["new"] for r in state.summary()["rounds"]
                         if r["round"] in target.label_mask.rounds)
        sl, tl = loaders(source, target, weights, cfg, args, it, nxt)
        it, seconds = train_one_epoch(model, optimizer, scaler, sl, tl, cfg, device, it, nxt,
                                      amp=args.amp, csv_log=csv_log,
                                      progress=args.progress, labeled_pixels=labeled_px,
                                      seconds=seconds)
        if utils.is_main_process():  # before the round: a kill in it resumes here
            save_checkpoint(ckpt_path, model, optimizer, scaler, it, args, cfg, seconds)
        utils.barrier()
        if it in rounds:
            run_round(rounds.index(it))
        if cfg.eval_every and it % cfg.eval_every == 0 and it < cfg.iterations:
            confmat = evaluate(model, val_loader, device, cfg.num_classes, flip=cfg.flip_test,
                               amp=args.amp)
            if utils.is_main_process():
                miou = metrics_dict(confmat, cfg.num_classes, cfg.class_names)["mIoU"]
                log.info("iter %d  mIoU %.2f", it, miou)
    if it < cfg.iterations:
        log.info("stopped at iteration %d (--stop-at); resume with --resume auto", it)
        return
    confmat = evaluate(model, val_loader, device, cfg.num_classes, flip=cfg.flip_test,
                       amp=args.amp, vis_dir=vis_dir, vis_images=args.vis_images, dataset=val,
                       names=cfg.class_names)
    if utils.is_main_process():
        metrics = metrics_dict(confmat, cfg.num_classes, cfg.class_names)
        write_metrics(os.path.join(args.output_dir, "metrics.json"), metrics, state, cfg, it,
                      picks)
        log.info("mIoU %.2f  (%s)", metrics["mIoU"],
                 str(datetime.timedelta(seconds=int(time.time() - t0))))


if __name__ == "__main__":
    parser = get_args_parser()
    args = parser.parse_args()
    try:
        main(args)
    except UsageError as e:
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(e).split())}\n")
