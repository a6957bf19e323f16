"""Forward+backward time and peak memory of the dynamic masked convolution (Eq. 7).

Cases (each run in a fresh subprocess so that peak memory is its own):

* ``dmc_function``: ``dynamic_masked_conv`` (tap-by-tap, recomputing backward)
  on F ``(B, dim, H, W)``, mask ``(B, K*K, H, W)``, W ``(dim, dim, K, K)``.
* ``dmc_unfold``: the textbook formulation through ``F.unfold``, which keeps a
  ``(B, dim*K*K, H*W)`` tensor alive for backward (the comparison point).
* ``dmc_estimator`` / ``masked_conv_estimator``: the whole estimator (g, mask
  generator, Eq. 7 or the masked convolution, psi, aux classifier, Eq. 8 loss)
  on backbone features ``(B, C_in, H, W)`` that require grad.

Peak memory is measured above what the inputs already hold: on CUDA with
``torch.cuda.max_memory_allocated``; on CPU as the rise of the process's
maximum resident set size (``resource.getrusage``) during the first
forward+backward, after a warm-up on a small input and with glibc's mmap
threshold fixed so that freed buffers leave the resident set. Time is the median of ``--repeats`` further runs.

Usage::

    python benchmarks/dmc_memory.py [--json OUT] [--device cpu|cuda|auto]
        [--batch 2 --channels 2048 --dim 64 --height 80 --width 160 --kernel-size 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

CASES = ["dmc_function", "dmc_unfold", "dmc_estimator", "masked_conv_estimator"]


def _unfold_dmc(features, mask, weight):
    """Eq. 7 through unfold: (B, D*K*K, H*W) patches, then two contractions."""
    import torch.nn.functional as F

    b, d, h, w = features.shape
    o, _, k, _ = weight.shape
    patches = F.unfold(features, k, padding=k // 2).view(b, d, k * k, h * w)
    weighted = patches * mask.view(b, 1, k * k, h * w)
    return (weight.view(o, d * k * k) @ weighted.view(b, d * k * k, h * w)).view(b, o, h, w)


def _maxrss_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS
    scale = 1.0 if sys.platform == "darwin" else 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _child(args) -> dict:
    import torch

    from densecore.density import DMCEstimator, MaskedConvEstimator, dynamic_masked_conv

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    b, c, d, k = args.batch, args.channels, args.dim, args.kernel_size
    h, w = args.height, args.width

    def randn(*shape, grad=False):
        t = torch.empty(*shape, device=dev).normal_()
        return t.requires_grad_(grad)

    def make(h, w):
        """Inputs of the case at spatial size h x w and one forward+backward step on them."""
        if args.case in ("dmc_function", "dmc_unfold"):
            leaves = (randn(b, d, h, w, grad=True), randn(b, k * k, h, w, grad=True),
                      randn(d, d, k, k, grad=True))
            fn = dynamic_masked_conv if args.case == "dmc_function" else _unfold_dmc

            def step():
                fn(*leaves).square().mean().backward()
                for t in leaves:
                    t.grad = None
            return step
        cls = DMCEstimator if args.case == "dmc_estimator" else MaskedConvEstimator
        est = cls(c, dim=d, kernel_size=k, num_classes=19).to(dev)
        x = randn(b, c, h, w, grad=True)
        target = torch.randint(0, 19, (b, h, w), device=dev)

        def step():
            est.loss(est(x), target).backward()
            est.zero_grad(set_to_none=True)
            x.grad = None
        return step

    # warm up on a small input first: loading kernels and thread pools raises the
    # resident set too, and must not be counted as the case's memory
    make(max(k, h // 8), max(k, w // 8))()
    step = make(h, w)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        base = _maxrss_mb()
    t0 = time.perf_counter()
    step()
    sync()
    first = time.perf_counter() - t0
    if dev.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
    else:
        peak = _maxrss_mb() - base
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return {"case": args.case, "device": str(dev), "peak_mb": peak, "first_s": first,
            "median_s": statistics.median(times) if times else first, "repeats": args.repeats}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="write the results to this JSON file")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--channels", type=int, default=2048, help="C_in of the backbone features")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--height", type=int, default=80)
    p.add_argument("--width", type=int, default=160)
    p.add_argument("--kernel-size", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--child", dest="case", help=argparse.SUPPRESS)
    return p


def main(args) -> int:
    if args.case:
        print(json.dumps(_child(args)))
        return 0
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    b, d, h, w, k = args.batch, args.dim, args.height, args.width, args.kernel_size
    one_intermediate_mb = b * d * k * k * h * w * 4 / 2**20
    rows = []
    for case in args.cases:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", case]
        for name in ("device", "batch", "channels", "dim", "height", "width", "kernel_size",
                     "repeats", "threads"):
            cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
        # glibc keeps freed multi-MiB buffers in its heap (its mmap threshold grows
        # after the first free), which would make the resident set a high-water mark
        # of everything ever allocated; a fixed threshold returns them to the OS.
        env = dict(os.environ)
        env.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode != 0:
            sys.stderr.write(res.stderr)
            rows.append({"case": case, "device": args.device, "error": res.stderr.strip()[-500:]})
            continue
        row = json.loads(res.stdout.strip().splitlines()[-1])
        row["peak_over_one_intermediate"] = row["peak_mb"] / one_intermediate_mb
        rows.append(row)
    header = (f"input x ({b}, {args.channels}, {h}, {w}), F ({b}, {d}, {h}, {w}), K={k}; "
              f"one (B, dim*K*K, H, W) float32 tensor = {one_intermediate_mb:.1f} MiB; "
              "peak = memory above the inputs")
    print(header)
    print(f"{'case':<24}{'device':<8}{'fwd+bwd s (median)':>20}{'first s':>10}"
          f"{'peak MiB':>11}{'peak / one':>12}")
    for r in rows:
        if "error" in r:
            print(f"{r['case']:<24}{r['device']:<8}  failed: {r['error'].splitlines()[-1]}")
            continue
        print(f"{r['case']:<24}{r['device']:<8}{r['median_s']:>20.3f}{r['first_s']:>10.3f}"
              f"{r['peak_mb']:>11.1f}{r['peak_over_one_intermediate']:>12.2f}")
    if args.json:
        import torch

        from densecore import atomic_write_json

        meta = {"python": platform.python_version(), "torch": torch.__version__,
                "machine": platform.machine(), "cpu_count": os.cpu_count(),
                "threads": args.threads or torch.get_num_threads(),
                "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
                "cuda_device": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
                "shape": {"batch": b, "channels": args.channels, "dim": d, "height": h,
                          "width": w, "kernel_size": k},
                "one_intermediate_mb": one_intermediate_mb}
        atomic_write_json(args.json, {"meta": meta, "results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
