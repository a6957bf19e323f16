"""GPU check for a short loan (at most about 4 minutes on an H200): correctness, speed,
launches and host syncs of the triton and torch engines, select_pixels, exact k-NN.

Steps (each prints a table row and goes into the JSON):

1. ``reference``: 20,000 x 64 float32 in 3 ragged pools (9,000 / 6,500 / 4,500),
   densities, labeled rows, 300 picks per pool, through
   ``farthest_first_batch`` on the device (triton, torch): the picks must equal
   Algorithm 1 computed in float64 on the device (one full pass per pick).
   ``typicality``: ``TypicalityGreedy`` (the engines' weight hook) on the first
   pool's size, 300 picks, triton against torch: the picks must be equal.
2. ``speed``: 1,000,000 x 64 float32, 1,000 density-aware picks, one pool;
   CUDA events around the call after a warm-up; GB/s counts the features read
   once per pick (``N * D * 4`` bytes).
3. ``select_pixels``: Cityscapes scale (19 x 1024 x 2048 probabilities, 64 x 128
   x 256 features, 9,227 picks of 184,540 candidates) with 1 and 16 images per
   call, density-aware greedy, seconds per image (triton; torch for 1 image).
4. ``launches``: kernel launches and host syncs per pick over 50 picks
   (``torch.profiler`` with CUDA activity, counted inside a ``record_function``
   around the pick loop), and the loop run again under
   ``torch.cuda.set_sync_debug_mode("error")`` (raises on any sync).
5. ``knn``: ``KNNDensity(k=10, search="exact")`` at 1,000,000 x 64.

Steps are skipped (and say so) once ``--budget-s`` seconds have passed.
``--dry-run`` runs every step at tiny sizes on CPU tensors with the Triton
interpreter (``TRITON_INTERPRET=1``, set by this script before importing
densecore), so the script is known not to crash before a GPU is used.

    python benchmarks/gpu_check.py --json OUT/gpu_check.json
    python benchmarks/gpu_check.py --dry-run
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
import traceback

COLUMNS = ["step", "engine", "size", "time_s", "per_pick_ms", "gbps", "launches_per_pick",
           "syncs_per_pick", "equal_to_reference", "note"]


def _args(argv):
    sys.path.insert(0, os.path.dirname(__file__))
    from _common import base_parser

    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true",
                   help="tiny sizes on CPU tensors under the Triton interpreter")
    p.add_argument("--budget-s", type=float, default=220.0,
                   help="skip the remaining steps after this many seconds (default 220)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = _args(argv)
    if args.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"  # before triton and densecore are imported
    import importlib.util

    import numpy as np
    import torch
    from _common import emit, machine_info, write_json_atomic

    import densecore
    from densecore import engines as E
    from densecore import greedy as G

    dev = torch.device("cpu" if args.dry_run else "cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device; use --dry-run for the CPU check")
        return 2
    engines = [e for e in ("triton", "torch")
               if e != "triton" or importlib.util.find_spec("triton") is not None]
    s = dict(ref=(20_000, 64, [9_000, 6_500, 4_500], 300), speed=(1_000_000, 64, 1_000),
             px=((1024, 2048), 9_227, [1, 16]), launch=(200_000, 64, 50), knn=(1_000_000, 64))
    if args.dry_run:
        s = dict(ref=(300, 8, [120, 100, 80], 8), speed=(2_000, 8, 4),
                 px=((32, 64), 8, [1, 2]), launch=(500, 8, 4), knn=(300, 8))
    t_start = time.perf_counter()
    rows, failed = [], []

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def save():
        if args.json:
            write_json_atomic(args.json, {"benchmark": "gpu_check", "machine": machine_info(),
                                          "dry_run": args.dry_run, "rows": rows})

    def guarded(step, fn):
        """Run one step under what is left of the time budget (SIGALRM stops it between
        two Python statements), and save the rows so far."""
        left = args.budget_s - (time.perf_counter() - t_start)
        if left < 1:
            rows.append({"step": step, "note": "skipped: time budget spent"})
            print(f"{step}: skipped (time budget spent)", flush=True)
            return

        timed_out = []

        def stop(signum, frame):
            timed_out.append(True)
            raise TimeoutError

        old = signal.signal(signal.SIGALRM, stop)
        signal.alarm(int(left))
        try:
            fn()
        except Exception as e:  # a failed step is recorded; the next one still runs
            if timed_out:
                note = "stopped: time budget spent"
            else:
                traceback.print_exc()
                note = f"error: {type(e).__name__}: {str(e)[:200]}"
                failed.append(step)
            rows.append({"step": step, "note": note})
            print(f"{step}: {note}", flush=True)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
            sync()
            save()

    def timed(fn):
        sync()
        if dev.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            out = fn()
            b.record()
            b.synchronize()
            return a.elapsed_time(b) / 1e3, out
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out

    def problem(n, d, seed):
        from densecore.bench.speed import make_problem

        x, dens = make_problem(n, d, seed=seed)
        return torch.from_numpy(x).to(dev), torch.from_numpy(dens).to(dev)

    def reference(x, dens, lab, budget, first):
        """Algorithm 1 in float64 on the device, one full pass per pick."""
        x64 = x.double()
        r = torch.full((x.shape[0],), math.inf, dtype=torch.float64, device=dev)
        taken = torch.zeros(x.shape[0], dtype=torch.bool, device=dev)
        for k in lab.tolist():
            r = torch.minimum(r, ((x64 - x64[k]) ** 2).sum(1) / dens[k])
            taken[k] = True
        out = []
        for i in range(budget):
            u = first if (i == 0 and first >= 0) else int(torch.argmax(
                torch.where(taken, -math.inf, r)))
            out.append(u)
            taken[u] = True
            r = torch.minimum(r, ((x64 - x64[u]) ** 2).sum(1) / dens[u])
        return out

    # 1. picks equal to the float64 reference
    def step_reference():
        n, d, sizes, budget = s["ref"]
        x, dens = problem(n, d, 1)
        lab = torch.zeros(n, dtype=torch.bool, device=dev)
        lab[[5, sizes[0] + 17]] = True  # pools 0 and 1 have a labeled row; pool 2 none
        for eng in engines:
            t, sels = timed(lambda: densecore.farthest_first_batch(
                x, sizes, budget, densities=dens, labeled=lab, seeds=[0, 1, 2], backend=eng))
            equal, lo = True, 0
            for p, m in enumerate(sizes):
                lp = lab[lo:lo + m].nonzero().squeeze(1)
                first = -1 if lp.numel() else int(np.random.default_rng(p).integers(m))
                want = reference(x[lo:lo + m], dens[lo:lo + m], lp, budget, first)
                equal &= sels[p].indices.tolist() == want
                lo += m
            rows.append({"step": "reference", "engine": eng, "size": f"{n}x{d} {sizes}",
                         "time_s": t, "per_pick_ms": 1e3 * t / budget,
                         "equal_to_reference": equal})
            print(f"reference {eng}: equal={equal} ({t:.2f} s)", flush=True)

    # 1b. the typicality weight hook: the triton engine's picks equal the torch engine's
    def step_typicality():
        n, d, sizes, budget = s["ref"]
        x, dens = problem(sizes[0], d, 5)
        got = {eng: timed(lambda: densecore.TypicalityGreedy(backend=eng).select(
            x, budget, densities=dens, init=0)) for eng in engines}
        want = got["torch"][1].indices.tolist()
        for eng, (t, sel) in got.items():
            same = sel.indices.tolist() == want
            rows.append({"step": "typicality", "engine": eng, "size": f"{sizes[0]}x{d}",
                         "time_s": t, "per_pick_ms": 1e3 * t / budget,
                         "equal_to_reference": same, "note": "reference: the torch engine"})
            print(f"typicality {eng}: equal to torch={same} ({t:.2f} s)", flush=True)

    # 2. 1M x 64 x 1,000
    def step_speed():
        n, d, budget = s["speed"]
        x, dens = problem(n, d, 2)
        for eng in engines:
            densecore.farthest_first(x, 5, densities=dens, backend=eng)  # warm-up
            t, _ = timed(lambda: densecore.farthest_first(x, budget, densities=dens, init=0,
                                                          backend=eng))
            gbps = n * d * 4 * budget / t / 1e9
            rows.append({"step": "speed", "engine": eng, "size": f"{n}x{d}x{budget}",
                         "time_s": t, "per_pick_ms": 1e3 * t / budget, "gbps": gbps})
            print(f"speed {eng}: {t:.3f} s, {gbps:.0f} GB/s", flush=True)

    # 3. select_pixels at Cityscapes scale
    def step_pixels(images):
        from select_pixels import make_inputs

        size, budget = s["px"][0], s["px"][1]
        probs, feats, dens, _ = make_inputs(size, 8, 19, 64, 0, 0, images)
        probs, feats, dens = probs.to(dev), feats.to(dev), dens.to(dev)
        for eng in engines if images == 1 else engines[:1]:
            sampler = densecore.DensityAwareGreedy(seed=0, backend=eng)
            densecore.select_pixels(probs[:1], feats[:1], dens[:1], 5, sampler=sampler)
            t, mask = timed(lambda: densecore.select_pixels(probs, feats, dens, budget,
                                                            sampler=sampler))
            rows.append({"step": f"select_pixels x{images}", "engine": eng,
                         "size": f"{images} x {math.ceil(20 * budget)} cand x {budget}",
                         "time_s": t / images, "note": "seconds per image"})
            print(f"select_pixels {images} images {eng}: {t / images:.3f} s per image",
                  flush=True)

    # 4. launches and host syncs per pick
    def step_launches():
        from torch.profiler import ProfilerActivity, profile, record_function

        n, d, picks = s["launch"]
        x, dens = problem(n, d, 3)
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
        for eng in engines:
            pool = G.check(x, dens, None, backend=eng)
            inputs = G.prepare(pool, 1.0, 1.0)
            cls = E.engine(eng)
            e1 = cls(**inputs, max_new=picks + 1)
            idx = torch.empty(picks + 1, dtype=torch.int64, device=dev)
            rr = torch.empty(picks + 1, dtype=torch.float64, device=dev)
            e1.first(0, idx, rr)  # first pick and compilation outside the count
            sync()
            with profile(activities=acts) as prof:
                with record_function("pick loop"):
                    e1.run(picks, idx, rr)
                sync()
            evs = list(prof.events())
            span = [e.time_range for e in evs if e.name == "pick loop"
                    and e.device_type == torch.autograd.DeviceType.CPU][0]
            inside = [e.name for e in evs if span.start <= e.time_range.start
                      and e.time_range.end <= span.end]
            # device-side work items (kernels, copies, fills) that ran inside the loop
            launches = sum(e.device_type == torch.autograd.DeviceType.CUDA
                           and span.start <= e.time_range.start <= span.end for e in evs)
            syncs = sum(nm in ("cudaStreamSynchronize", "cudaDeviceSynchronize",
                               "cudaEventSynchronize", "aten::item",
                               "aten::_local_scalar_dense") for nm in inside)
            note = ""
            if dev.type == "cuda":
                e2 = cls(**inputs, max_new=picks + 1)
                e2.first(0, idx, rr)
                sync()
                torch.cuda.set_sync_debug_mode("error")
                try:
                    e2.run(picks, idx, rr)
                    note = "no sync under set_sync_debug_mode('error')"
                except RuntimeError as err:
                    note = f"sync: {str(err)[:80]}"
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            rows.append({"step": "launches", "engine": eng, "size": f"{n}x{d}, {picks} picks",
                         "launches_per_pick": launches / picks, "syncs_per_pick": syncs / picks,
                         "note": note})
            print(f"launches {eng}: {launches / picks:.2f} launches, {syncs / picks:.2f} "
                  f"syncs per pick {note}", flush=True)

    # 5. exact k-NN density
    def step_knn():
        n, d = s["knn"]
        x, _ = problem(n, d, 4)
        est = densecore.KNNDensity(k=10, search="exact")
        t, dd = timed(lambda: est(x))
        rows.append({"step": "knn", "engine": "exact", "size": f"{n}x{d}, k=10", "time_s": t,
                     "note": f"densities in [{float(dd.min()):.3f}, {float(dd.max()):.3f}]"})
        print(f"knn exact {n}x{d}: {t:.2f} s", flush=True)

    guarded("reference", step_reference)
    guarded("typicality", step_typicality)
    guarded("speed", step_speed)
    for images in s["px"][2]:
        guarded(f"select_pixels x{images}", lambda: step_pixels(images))
    guarded("launches", step_launches)
    guarded("knn", step_knn)
    emit("gpu_check", rows, COLUMNS, args.json, dry_run=args.dry_run,
         device=torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu (interpreter)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
