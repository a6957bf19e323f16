"""GPU check that fits a short loan: one command, at most about 4 minutes, one JSON file.

Runs with exactly the GPU machines' software (Python, torch >= 2.11, triton >= 3.6,
numba, numpy, scipy; no faiss: it is blocked here even where installed, no
installs, no network). Every step runs under its own time budget (``STEPS``, in
seconds; they add up to less than ``--budget-s``, 220 s by default) and prints its
figures as it goes; the JSON is rewritten after every step, so a run stopped from
outside still leaves the steps done.

Steps:

0. ``software``: versions; the run stops when torch or triton is older than required.
1. ``auto``: the triton engine's one-off self-check (``_backends/triton_check.py``)
   and the engine ``backend="auto"`` then takes on this device.
2. ``reference``: 20,000 x 64 float32 in 3 ragged pools, densities, labeled rows,
   300 picks per pool through ``farthest_first_batch`` (triton, torch): the picks
   must equal Algorithm 1 in float64 on the device. ``typicality``: the weight hook,
   triton against torch, 300 picks.
3. ``speed``: 1,000,000 x 64 float32, 1,000 density-aware picks, one pool (triton,
   torch); GB/s counts the features read once per pick.
4. ``select_pixels x1`` / ``x16``: Cityscapes scale (19 x 1024 x 2048 probabilities,
   64 x 128 x 256 features, 9,227 picks of 184,540 candidates per image), seconds per
   image through the default path (``backend="auto"``), and torch for one image.
5. ``launches``: launch and sync API calls per pick over 50 picks (``torch.profiler``
   CUDA runtime/driver API events inside the host range of the pick loop, so kernels
   still queued are counted too), the triton kernels' launches counted at the launch
   call, and the loop again under ``torch.cuda.set_sync_debug_mode("error")``.
6. ``knn``: ``KNNDensity(k=10, search="exact")`` at 200,000 x 64 (capped: the 1M run
   could eat the rest of the loan).
7. ``search``: the greedy's labeled-set search, an exact weighted 1-NN of 200,000 x 64
   queries against 37,000 centres (about 20 % of an image labeled) through
   ``search(method="torch")``: the fused candidate kernel (``nearest_triton.py``)
   against the torch candidates in the same run, the peak of allocated memory during
   each call, and the answers of the first 2,000 queries against a float64 brute
   force from differences.

No compile lands in a timed region: every timed call follows the identical call
untimed (same shapes, dtypes, budgets and first picks), the pick kernel is not
specialised on the step (``do_not_specialize``), and each row reports
``jit_new_in_timed``: the triton JIT keys (``benchmarks/_jit_keys.py``) first seen
inside the timed region (0 means no compile), and on a GPU ``compiles_in_timed``
from triton's own cache.

``--dry-run`` runs every step at tiny sizes on CPU tensors under the Triton
interpreter (``TRITON_INTERPRET=1``, set by this script before importing triton;
only there, and only when no CUDA device is used), with ``backend="triton"`` where the
real run uses ``"auto"`` (the CPU's auto is numba), so the script is known not to
crash before a GPU is used.

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
           "syncs_per_pick", "equal_to_reference", "jit_new_in_timed", "note"]

# seconds per step; the total stays below --budget-s (220) and the loan's 4 minutes
STEPS = {"software": 5, "auto": 20, "reference": 25, "typicality": 15, "speed": 25,
         "select_pixels x1": 30, "select_pixels x16": 50, "launches": 15, "knn": 20,
         "search": 10}
MIN_TORCH, MIN_TRITON = (2, 11), (3, 6)
LAUNCH_APIS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel",
               "cuLaunchKernelEx", "cudaLaunchCooperativeKernel", "cudaMemcpyAsync",
               "cudaMemsetAsync", "cudaGraphLaunch")
SYNC_APIS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize",
             "cudaMemcpy", "cuStreamSynchronize", "cuCtxSynchronize", "aten::item",
             "aten::_local_scalar_dense")


def _args(argv):
    sys.path.insert(0, os.path.dirname(__file__))
    from _common import base_parser

    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true",
                   help="tiny sizes on CPU tensors under the Triton interpreter")
    p.add_argument("--budget-s", type=float, default=220.0,
                   help="skip the remaining steps after this many seconds (default 220)")
    return p.parse_args(argv)


def _version(v: str) -> tuple:
    return tuple(int("".join(c for c in part if c.isdigit()) or 0)
                 for part in v.split("+")[0].split(".")[:2])


def main(argv=None) -> int:
    args = _args(argv)
    if args.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"  # before triton and densecore are imported
    sys.modules["faiss"] = None  # the GPU machines have no faiss: the same code paths here
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
    has_triton = importlib.util.find_spec("triton") is not None
    engines = ["triton", "torch"] if has_triton else ["torch"]
    default = "auto" if dev.type == "cuda" else "triton"  # the default path's stand-in
    s = dict(ref=(20_000, 64, [9_000, 6_500, 4_500], 300), speed=(1_000_000, 64, 1_000),
             px=((1024, 2048), 9_227), launch=(200_000, 64, 50), knn=(200_000, 64),
             search=(200_000, 64, 37_000, 2_000))
    images = {"select_pixels x1": 1, "select_pixels x16": 16}
    if args.dry_run:
        s = dict(ref=(300, 8, [120, 100, 80], 8), speed=(2_000, 8, 4),
                 px=((32, 64), 8), launch=(500, 8, 4), knn=(300, 8),
                 search=(300, 8, 70, 100))
        images = {"select_pixels x1": 1, "select_pixels x16": 2}
    t_start = time.perf_counter()
    rows, failed = [], []
    software = {"faiss": "blocked (absent on the GPU machines)"}
    keys = None
    if has_triton:
        import _jit_keys

        from densecore._backends import nearest_triton as NT
        from densecore._backends import triton_backend as TB

        kernels = (TB._update, NT._top3)
        keys = _jit_keys.KeyLog(kernels)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def save():
        if args.json:
            write_json_atomic(args.json, {
                "benchmark": "gpu_check", "machine": machine_info(), "software": software,
                "dry_run": args.dry_run, "step_budgets_s": STEPS, "budget_s": args.budget_s,
                "elapsed_s": time.perf_counter() - t_start,
                "jit_keys_seen": None if keys is None else len(keys.seen), "rows": rows})

    def guarded(step, fn):
        """Run one step under its own budget (or what is left of the total, if less):
        SIGALRM stops it between two Python statements; save the rows so far."""
        left = min(STEPS[step], args.budget_s - (time.perf_counter() - t_start))
        if left < 1:
            rows.append({"step": step, "note": "skipped: time budget spent"})
            print(f"{step}: skipped (time budget spent)", flush=True)
            return
        timed_out = []

        def stop(signum, frame):
            timed_out.append(True)
            raise TimeoutError

        old = signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, left)
        t0 = time.perf_counter()
        try:
            fn()
        except Exception as e:  # a failed step is recorded; the next one still runs
            if timed_out:
                note = f"stopped: its {left:.0f} s budget spent"
            else:
                traceback.print_exc()
                note = f"error: {type(e).__name__}: {str(e)[:200]}"
                failed.append(step)
            rows.append({"step": step, "note": note})
            print(f"{step}: {note}", flush=True)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
            sync()
            print(f"  ({step}: {time.perf_counter() - t0:.1f} s of {left:.0f})", flush=True)
            save()

    def timed(fn):
        """``fn()`` once untimed (the warm-up: the identical call), then timed:
        ``(seconds, result, extra)``, extra the JIT keys and compiles inside."""
        fn()
        sync()
        before = _jit_keys.compiled_kernels(kernels) if keys else None
        with (keys.timed() if keys else _nothing()) as new:
            if dev.type == "cuda":
                a = torch.cuda.Event(enable_timing=True)
                b = torch.cuda.Event(enable_timing=True)
                a.record()
                out = fn()
                b.record()
                b.synchronize()
                t = a.elapsed_time(b) / 1e3
            else:
                t0 = time.perf_counter()
                out = fn()
                t = time.perf_counter() - t0
        extra = {"jit_new_in_timed": None if new is None else len(new)}
        after = _jit_keys.compiled_kernels(kernels) if keys else None
        if before is not None and after is not None:
            extra["compiles_in_timed"] = after - before
        return t, out, extra

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

    def step_software():
        import numba

        software.update(python=sys.version.split()[0], torch=torch.__version__,
                        cuda=torch.version.cuda, numpy=np.__version__, numba=numba.__version__)
        if has_triton:
            import triton

            software["triton"] = triton.__version__
        need = [f"torch >= {'.'.join(map(str, MIN_TORCH))}"] if _version(
            torch.__version__) < MIN_TORCH else []
        if not has_triton or _version(software["triton"]) < MIN_TRITON:
            need.append(f"triton >= {'.'.join(map(str, MIN_TRITON))}")
        software["ok"] = not need
        rows.append({"step": "software", "note": ", ".join(f"{k} {v}" for k, v in
                                                           software.items())})
        print("software:", software, flush=True)
        if need:
            raise RuntimeError("needs " + ", ".join(need))

    def step_auto():
        from densecore._backends import triton_check

        ok, reason, secs = triton_check.self_check(dev)
        eng = E.resolve("auto", "dense", dev) if dev.type == "cuda" else "numba (CPU)"
        rows.append({"step": "auto", "engine": eng, "time_s": secs,
                     "equal_to_reference": ok, "note": reason or "self-check passed"})
        print(f"auto: self-check {'passed' if ok else 'failed: ' + reason} in {secs:.3f} s; "
              f"backend='auto' takes {eng}", flush=True)

    def step_reference():
        n, d, sizes, budget = s["ref"]
        x, dens = problem(n, d, 1)
        lab = torch.zeros(n, dtype=torch.bool, device=dev)
        lab[[5, sizes[0] + 17]] = True  # pools 0 and 1 have a labeled row; pool 2 none
        for eng in engines:
            t, sels, extra = timed(lambda: densecore.farthest_first_batch(
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
                         "equal_to_reference": equal, **extra})
            print(f"reference {eng}: equal={equal} ({t:.3f} s) {extra}", flush=True)

    def step_typicality():
        n, d, sizes, budget = s["ref"]
        x, dens = problem(sizes[0], d, 5)
        got = {eng: timed(lambda: densecore.TypicalityGreedy(backend=eng).select(
            x, budget, densities=dens, init=0)) for eng in engines}
        want = got["torch"][1].indices.tolist()
        for eng, (t, sel, extra) in got.items():
            same = sel.indices.tolist() == want
            rows.append({"step": "typicality", "engine": eng, "size": f"{sizes[0]}x{d}",
                         "time_s": t, "per_pick_ms": 1e3 * t / budget,
                         "equal_to_reference": same, **extra,
                         "note": "reference: the torch engine"})
            print(f"typicality {eng}: equal to torch={same} ({t:.3f} s)", flush=True)

    def step_speed():
        n, d, budget = s["speed"]
        x, dens = problem(n, d, 2)
        for eng in engines:
            t, _, extra = timed(lambda: densecore.farthest_first(x, budget, densities=dens,
                                                                 init=0, backend=eng))
            gbps = n * d * 4 * budget / t / 1e9
            rows.append({"step": "speed", "engine": eng, "size": f"{n}x{d}x{budget}",
                         "time_s": t, "per_pick_ms": 1e3 * t / budget, "gbps": gbps, **extra})
            print(f"speed {eng}: {t:.3f} s, {gbps:.0f} GB/s {extra}", flush=True)

    def step_pixels(step):
        from select_pixels import make_inputs

        k = images[step]
        size, budget = s["px"]
        probs, feats, dens, _ = make_inputs(size, 8, 19, 64, 0, 0, k)
        probs, feats, dens = probs.to(dev), feats.to(dev), dens.to(dev)
        backends = [default] + (["torch"] if k == 1 and default != "torch" else [])
        for eng in backends:
            sampler = densecore.DensityAwareGreedy(seed=0, backend=eng)
            t, _, extra = timed(lambda: densecore.select_pixels(probs, feats, dens, budget,
                                                                sampler=sampler))
            name = eng if eng != "auto" else f"auto ({E.resolve('auto', 'dense', dev)})"
            rows.append({"step": step, "engine": name,
                         "size": f"{k} x {20 * budget} cand x {budget}",
                         "time_s": t / k, **extra, "note": "seconds per image"})
            print(f"{step} {name}: {t / k:.3f} s per image {extra}", flush=True)

    def step_launches():
        from torch.profiler import ProfilerActivity, profile, record_function

        n, d, picks = s["launch"]
        x, dens = problem(n, d, 3)
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
        for eng in engines:
            pool = G.check(x, dens, None, backend=eng)
            inputs = G.prepare(pool, 1.0, 1.0)
            cls = E.engine(eng)
            idx = torch.empty(2 * picks + 1, dtype=torch.int64, device=dev)
            rr = torch.empty(2 * picks + 1, dtype=torch.float64, device=dev)
            e1 = cls(**inputs, max_new=2 * picks + 1)
            e1.first(0, idx, rr)  # the forced first pick
            e1.run(picks, idx, rr)  # warm-up: the same loop (compiles, allocator)
            sync()
            if keys:
                keys.flush()
                n0 = keys.launches
            with profile(activities=acts) as prof:
                with record_function("pick loop"):
                    e1.run(picks, idx, rr)
                sync()
            hooked = None
            if keys and eng == "triton":
                keys.flush()
                hooked = (keys.launches - n0) / picks
            evs = list(prof.events())
            span = [e.time_range for e in evs if e.name == "pick loop"
                    and e.device_type == torch.autograd.DeviceType.CPU][0]
            inside = [e.name for e in evs if e.device_type == torch.autograd.DeviceType.CPU
                      and span.start <= e.time_range.start and e.time_range.end <= span.end]
            api = sum(nm in LAUNCH_APIS for nm in inside)
            syncs = sum(nm in SYNC_APIS for nm in inside)
            note = "" if hooked is None else f"triton launches per pick (hooks) {hooked:.2f}"
            if eng == "triton":  # certified tile skipping: the share of tiles not read
                share = int(e1.b.skipped) / max(1, (2 * picks) * e1.b.n_tiles)
                note += f"; tiles skipped {share:.1%}"
            if dev.type == "cuda":
                e2 = cls(**inputs, max_new=picks + 1)
                e2.first(0, idx, rr)
                sync()
                torch.cuda.set_sync_debug_mode("error")
                try:
                    e2.run(picks, idx, rr)
                    note += "; no sync under set_sync_debug_mode('error')"
                except RuntimeError as err:
                    note += f"; sync: {str(err)[:80]}"
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            launches = api / picks if dev.type == "cuda" else hooked
            rows.append({"step": "launches", "engine": eng, "size": f"{n}x{d}, {picks} picks",
                         "launches_per_pick": launches, "syncs_per_pick": syncs / picks,
                         "note": note.strip("; ")})
            print(f"launches {eng}: {launches} launches, {syncs / picks:.2f} syncs per pick "
                  f"{note}", flush=True)

    def step_knn():
        n, d = s["knn"]
        x, _ = problem(n, d, 4)
        est = densecore.KNNDensity(k=10, search="exact")
        t, dd, _ = timed(lambda: est(x))
        rows.append({"step": "knn", "engine": "exact", "size": f"{n}x{d}, k=10", "time_s": t,
                     "note": f"densities in [{float(dd.min()):.3f}, {float(dd.max()):.3f}]"})
        print(f"knn exact {n}x{d}: {t:.2f} s", flush=True)

    def step_search():
        from densecore._backends import nearest

        n, d, l, check = s["search"]
        x, dens = problem(n + l, d, 6)
        q, c, w = x[:n], x[n:], dens[n:]
        real = nearest._fused
        sources = {"fused": real, "torch": lambda *a: None}  # torch: the kernel switched off
        if args.dry_run and has_triton:  # the interpreter runs the kernel on CPU tensors
            sources["fused"] = lambda dev_, dt: NT if dt == torch.float32 else None
        elif real(dev, torch.float32) is None:
            del sources["fused"]  # no triton, or not CUDA
        for name, source in sources.items():
            nearest._fused = source
            try:
                if dev.type == "cuda":
                    sync()
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                t, (_, idx), extra = timed(lambda: nearest.search(q, c, 1, weights=w,
                                                                  method="torch"))
                peak = ((torch.cuda.max_memory_allocated() - base) / 1e9
                        if dev.type == "cuda" else None)
            finally:
                nearest._fused = real
            q64, c64 = q[:check].double(), c.double()
            want = torch.cat([((q64[i:i + 64, None] - c64[None]) ** 2).sum(-1).div(w).argmin(1)
                              for i in range(0, check, 64)])
            equal = torch.equal(idx[:check, 0], want)
            failed_note = f"; fused kernel failed: {nearest._FUSED_FAILED[0]}" if (
                name == "fused" and nearest._FUSED_FAILED) else ""
            rows.append({"step": "search", "engine": f"{name} candidates",
                         "size": f"{n}x{d} vs {l}, k=1", "time_s": t,
                         "equal_to_reference": equal, **extra,
                         "note": (f"peak {peak:.2f} GB above the inputs; " if peak is not None
                                  else "") + f"first {check} queries checked" + failed_note})
            print(f"search {name} candidates {n}x{d} vs {l}: {t:.3f} s, equal={equal}"
                  + (f", peak {peak:.2f} GB" if peak is not None else "") + failed_note,
                  flush=True)

    guarded("software", step_software)
    if failed:
        save()
        return 2
    guarded("auto", step_auto)
    guarded("reference", step_reference)
    guarded("typicality", step_typicality)
    guarded("speed", step_speed)
    for step in images:
        guarded(step, lambda: step_pixels(step))
    guarded("launches", step_launches)
    guarded("knn", step_knn)
    guarded("search", step_search)
    if keys:
        keys.close()
    emit("gpu_check", rows, COLUMNS, None)
    save()
    print(f"\ntotal {time.perf_counter() - t_start:.1f} s" +
          (f"; wrote {args.json}" if args.json else ""), flush=True)
    return 1 if failed else 0


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    raise SystemExit(main())
