"""Seconds per training iteration and peak memory, with and without the density estimator.

Runs ``train.train_one_epoch`` (the real step: source and target forward,
every loss, backward, SGD) on random images of the paper's sizes, so no data
set is needed. Prints a table and writes JSON.

    python benchmark_iteration.py --out iteration.json            # GPU, V2, 1280x640
    python benchmark_iteration.py --backbone tiny --source-size 160 90 \
        --target-size 128 64 --device cpu                         # quick CPU check
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

import datasets
import train
from config import load_config
from models import build_model


def batches(n, batch, size, num_classes, seed):
    g = torch.Generator().manual_seed(seed)
    w, h = size
    out = []
    for _ in range(n):
        x = torch.randn(batch, 3, h, w, generator=g)
        y = torch.randint(0, num_classes, (batch, h, w), generator=g)
        y[:, ::2] = datasets.IGNORE  # half the target pixels unlabelled
        out.append((x, y, torch.arange(batch)))
    return out


def measure(args, estimator, detach):
    cfg = load_config(None, [f"arch={args.arch}", f"backbone={args.backbone}",
                             f"estimator={estimator}",
                             "sampler=" + ("density-aware" if estimator != "none"
                                           else "score-only"),
                             f"source_size={list(args.source_size)}",
                             f"target_size={list(args.target_size)}",
                             f"estimator_detach_iter={0 if detach else 10 ** 9}",
                             f"iterations={10 ** 9 + 1}", "print_freq=1000000"])
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(cfg.arch, cfg.backbone, cfg.num_classes, estimator=cfg.estimator,
                        freeze_bn=cfg.freeze_bn).to(device)
    optimizer = torch.optim.SGD(
        [{"params": list(model.backbone.parameters()), "lr": cfg.lr},
         {"params": model.head_parameters(), "lr": cfg.lr * 10}],
        lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp and device.type == "cuda")
    n = args.warmup + args.iters
    src = batches(n, cfg.batch_source, cfg.source_size, cfg.num_classes, 0)
    tgt = batches(n, cfg.batch_target, cfg.target_size, cfg.num_classes, 1)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    train.train_one_epoch(model, optimizer, scaler, src[:args.warmup], tgt[:args.warmup], cfg,
                          device, 0, args.warmup, amp=args.amp)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    train.train_one_epoch(model, optimizer, scaler, src[args.warmup:], tgt[args.warmup:], cfg,
                          device, args.warmup, n, amp=args.amp)
    sync()
    sec = (time.perf_counter() - t0) / args.iters
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None
    return {"estimator": estimator, "estimator_detached": detach, "seconds_per_iter": sec,
            "peak_memory_gib": peak, "config": dataclasses.asdict(cfg)}


def get_args_parser(add_help=True):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=add_help)
    parser.add_argument("--arch", default="deeplabv2")
    parser.add_argument("--backbone", default="resnet101")
    parser.add_argument("--source-size", type=int, nargs=2, default=[1280, 720], metavar=("W", "H"))
    parser.add_argument("--target-size", type=int, nargs=2, default=[1280, 640], metavar=("W", "H"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--out", default=None, help="JSON file for the results")
    return parser


def main(args):
    rows = [measure(args, "none", False), measure(args, "dmc", False),
            measure(args, "dmc", True)]
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"{args.arch} {args.backbone} source {args.source_size} target {args.target_size} "
          f"on {device}{' amp' if args.amp else ''}")
    print(f"{'estimator':<22}{'s/iter':>10}{'peak GiB':>10}")
    for r in rows:
        name = r["estimator"] + (" (detached)" if r["estimator_detached"] else "")
        peak = "-" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.2f}"
        print(f"{name:<22}{r['seconds_per_iter']:>10.3f}{peak:>10}")
    if args.out:
        datasets.atomic_write_text(args.out, json.dumps({"device": device, "amp": args.amp,
                                                         "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
