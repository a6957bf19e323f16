"""The ``densecore`` command: ``demo``, ``select``, ``advise``, ``bench``.

Each subcommand is a small ``add_<name>(subparsers)`` that registers its
arguments and a ``run`` function taking the parsed namespace.

Errors a user can fix (a bad argument, an unreadable file, a missing
optional package) end the command with one line on stderr and exit code 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

# import name of an optional package -> what to pip install
_EXTRAS = {"sklearn": "scikit-learn", "matplotlib": "matplotlib", "faiss": "faiss-cpu",
           "yaml": "pyyaml", "PIL": "pillow", "hypothesis": "hypothesis"}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``densecore select: error: ...``,
    without the usage block (``--help`` shows it); subcommands inherit it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {_first_line(message)}\n")


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="select from a synthetic Gaussian mixture with random, "
                       "k-center, the paper's density-aware greedy (default and tuned tau) "
                       "and the k-medoids refinement; print the bounds")
    p.add_argument("--n", type=int, default=10000, help="number of points (default 10000)")
    p.add_argument("--dim", type=int, default=16, help="feature dimension (default 16)")
    p.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 200],
                   help="budgets to compare (default 50 100 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")

    def run(args) -> int:
        from .demo import run_demo

        print(run_demo(n=args.n, dim=args.dim, budgets=args.budgets, seed=args.seed,
                       progress=not args.no_progress))
        return 0

    p.set_defaults(func=run)


def _kcenter(backend, seed, progress, metric):
    from .samplers import KCenterGreedy

    return KCenterGreedy(backend, seed, progress, metric=metric)


def _density_aware(backend, seed, progress, metric):
    from .samplers import DensityAwareGreedy

    return DensityAwareGreedy(backend, seed, progress, metric=metric)


def _kmedoids(backend, seed, progress, metric):  # the engine and metric of the wrapped greedy
    from .samplers import KCenterGreedy, KMedoidsRefinement

    return KMedoidsRefinement(KCenterGreedy(backend, seed, progress, metric=metric), seed=seed)


def _typicality(backend, seed, progress, metric):
    from .samplers import TypicalityGreedy

    return TypicalityGreedy(backend=backend, seed=seed, progress=progress, metric=metric)


# ``densecore select --sampler``: the paper's samplers and those beyond it
# (the names of densecore.samplers.SAMPLER_NAMES less "ripu", which needs images; the
# former spellings density-aware and kmedoids-refinement are still read)
SAMPLERS = {"kmedoids_refinement": _kmedoids, "kcenter": _kcenter,
            "density_aware": _density_aware, "typicality": _typicality}


def _sampler_name(value: str) -> str:
    """``--sampler``'s one spelling (``densecore.samplers.canonical_name``)."""
    from .samplers.names import canonical_name

    try:
        name = canonical_name(value)
    except ValueError:
        name = None
    if name not in SAMPLERS:
        raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from "
                                         f"{', '.join(SAMPLERS)})")
    return name
BACKENDS = ("auto", "numba", "torch", "triton")


def _add_select(sub) -> None:
    p = sub.add_parser(
        "select", help="pick a core-set from feature vectors (k-center greedy, or the "
        "paper's density-aware greedy when --densities is given; --sampler for the others)",
        description="Pick BUDGET rows of FEATURES and write their indices (int64, selection "
        "order) to OUT: .npy, or .txt with one index per line. Inputs: .npy, .npz (one "
        "array, or FILE.npz:KEY) or .pt (a tensor saved with torch.save). The default "
        "sampler is k-center greedy (with --densities the paper's density-aware greedy, "
        "Algorithm 1); kmedoids_refinement lowered the bounds further in docs/benchmarks.md "
        "but costs O(N * budget * D) per step, so it is opt-in.")
    p.add_argument("--features", required=True, metavar="FILE", help="(N, D) float features")
    p.add_argument("--budget", required=True, type=int, metavar="N", help="points to pick")
    p.add_argument("--densities", metavar="FILE|knn", help="(N,) positive coverage "
                   "densities from FILE, or 'knn' to compute KNNDensity (k=10, --metric) "
                   "over the pool and --labeled-features; selects density-aware greedy")
    p.add_argument("--labeled", metavar="FILE", help="(M,) int indices already labeled")
    p.add_argument("--labeled-features", metavar="FILE", help="(L, D) labeled points "
                   "outside the pool (e.g. earlier rounds); they seed the greedy")
    p.add_argument("--labeled-densities", metavar="FILE", help="(L,) their densities; "
                   "needed with --labeled-features and --densities FILE")
    p.add_argument("--metric", default="euclidean", choices=METRICS,
                   help="distance between features (default euclidean)")
    p.add_argument("--init", type=int, metavar="I", help="first pick when nothing is labeled")
    p.add_argument("--sampler", default=None, type=_sampler_name,
                   metavar="{" + ",".join(SAMPLERS) + "}",
                   help="default: density_aware with --densities, else kcenter")
    p.add_argument("--backend", default="auto", choices=list(BACKENDS))
    p.add_argument("--device", default=None, help="torch device for the features "
                   "(e.g. cuda); default: keep them on the CPU")
    p.add_argument("--seed", type=int, default=0, help="seeds the first pick (default 0)")
    p.add_argument("--out", required=True, metavar="OUT", help="where to write the indices: "
                   "OUT.npy (int64) or OUT.txt (one index per line)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    def load(path: str | None, flag: str):
        return _array_arg(p, path, flag)

    def check_args(args) -> str:
        """The argument checks that need no file; returns the sampler's name."""
        suffix = os.path.splitext(args.out)[1]
        if suffix not in WRITERS:
            p.error(f"--out {args.out!r}: name the file .npy (int64 array) or .txt (one "
                    f"index per line); got suffix {suffix or 'none'!r}")
        folder = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(folder):
            p.error(f"--out {args.out!r}: the folder {folder!r} does not exist")
        name = args.sampler or ("density_aware" if args.densities is not None else "kcenter")
        if args.densities is not None and name not in ("density_aware", "typicality"):
            p.error(f"--densities is used by --sampler density_aware or typicality; "
                    f"--sampler {name} ignores densities")
        if args.labeled_densities is not None:
            if args.labeled_features is None:
                p.error("--labeled-densities needs --labeled-features")
            if args.densities is None or args.densities == "knn":
                p.error("--labeled-densities goes with --densities FILE (with --densities "
                        "knn both are computed; without densities none are used)")
        elif (args.labeled_features is not None and args.densities not in (None, "knn")
              and name == "density_aware"):
            p.error("--labeled-features with --densities FILE needs --labeled-densities "
                    "(or use --densities knn)")
        return name

    def run(args) -> int:
        import torch

        from . import validation as V

        name = check_args(args)
        features = load(args.features, "--features")
        labeled = load(args.labeled, "--labeled")
        labeled_features = load(args.labeled_features, "--labeled-features")
        labeled_densities = load(args.labeled_densities, "--labeled-densities")
        if args.densities == "knn":
            densities, labeled_densities = _knn_densities(features, labeled_features,
                                                          args.metric)
        else:
            densities = load(args.densities, "--densities")
        if args.device is not None:
            try:
                device = torch.device(args.device)
            except (RuntimeError, TypeError, ValueError) as e:
                p.error(f"--device {args.device!r}: {e}")
            if device.type == "cuda" and not torch.cuda.is_available():
                p.error(f"--device {args.device!r}: CUDA is not available on this machine; "
                        f"leave out --device to select on the CPU")
            # checked before the move, so that messages name the file's own dtype
            given = (features, densities, labeled, labeled_features, labeled_densities)
            pool = V.check_pool(*given, validate=False)
            try:
                features, densities, labeled, labeled_features, labeled_densities = (
                    None if a is None else t.to(device) for a, t in zip(given, pool))
            except (AssertionError, RuntimeError, TypeError, ValueError) as e:
                p.error(f"--device {args.device!r}: {e}")
        sampler = SAMPLERS[name](args.backend, args.seed, not args.no_progress, args.metric)
        sel = sampler.select(features, args.budget, densities=densities, labeled=labeled,
                             labeled_features=labeled_features,
                             labeled_densities=labeled_densities, init=args.init)
        idx = sel.indices.cpu().numpy() if isinstance(sel.indices, torch.Tensor) else sel.indices
        try:
            WRITERS[os.path.splitext(args.out)[1]](args.out, idx)
        except OSError as e:
            p.error(f"cannot write --out {args.out!r}: {e}")
        print(f"{type(sampler).__name__}: selected {len(idx)} of {len(features)} points; "
              f"wrote {args.out}")
        return 0

    p.set_defaults(func=run)


def _add_advise(sub) -> None:
    p = sub.add_parser(
        "advise", help="compare k-center with the density-aware greedy (and others) on "
        "held-out halves of your candidates; print the recommended sampler",
        description="Measure the density calibration R^2 of FEATURES/DENSITIES, compare the "
        "samplers on --splits random held-out halves (1-NN label mIoU with --labels, else "
        "the held-out average radial distance), with paired t intervals and Holm-adjusted "
        "p values, time each sampler at full size and recommend one (densecore.advise). "
        "Inputs: .npy, .npz (FILE.npz:KEY) or .pt.")
    p.add_argument("--features", required=True, metavar="FILE", help="(N, D) float features")
    p.add_argument("--densities", required=True, metavar="FILE|knn",
                   help="(N,) positive coverage densities, or 'knn' for KNNDensity (k=10)")
    p.add_argument("--budget", required=True, type=int, metavar="N",
                   help="points you would pick from all N candidates")
    p.add_argument("--labels", metavar="FILE", help="(N,) int labels or pseudo-labels "
                   "(--ignore-index where unknown)")
    p.add_argument("--ignore-index", type=int, default=-1, help="label of unlabeled points "
                   "(default -1)")
    p.add_argument("--samplers", nargs="+", default=["k-center", "density-aware"],
                   choices=["k-center", "density-aware", "typicality", "kmedoids-refinement"],
                   help="samplers to compare with k-center (default: density-aware)")
    p.add_argument("--splits", type=int, default=10, help="held-out splits (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="auto", choices=list(BACKENDS))
    p.add_argument("--json", metavar="OUT", help="also write the advice as JSON to OUT")

    def load(path: str | None, flag: str):
        return _array_arg(p, path, flag)

    def run(args) -> int:
        from .advise import advise

        if args.json is not None and not os.path.isdir(os.path.dirname(
                os.path.abspath(args.json))):
            p.error(f"--json {args.json!r}: its folder does not exist")
        features = load(args.features, "--features")
        if args.densities == "knn":
            densities, _ = _knn_densities(features, None, "euclidean")
        else:
            densities = load(args.densities, "--densities")
        adv = advise(features, densities, args.budget, labels=load(args.labels, "--labels"),
                     samplers=args.samplers, splits=args.splits, seed=args.seed,
                     ignore_index=args.ignore_index, backend=args.backend)
        print(adv.summary())
        if args.json is not None:
            from .io import atomic_write_json

            atomic_write_json(args.json, adv.as_dict())
        return 0

    p.set_defaults(func=run)


def _knn_densities(features, labeled_features, metric: str):
    """KNNDensity over the pool and the out-of-pool labeled points together (one
    normalisation for both); returns ``(densities (N,), labeled_densities (L,) or None)``."""
    import torch

    from . import validation as V
    from .density import KNNDensity

    x = V.check_features(features)
    if labeled_features is None:
        return KNNDensity(metric=metric)(x), None
    lf = V.check_features(labeled_features, "labeled_features", dim=x.shape[1])
    d = KNNDensity(metric=metric)(torch.cat([x, lf.to(x.dtype)]))
    return d[:x.shape[0]], d[x.shape[0]:]


def _write_npy(path: str, idx) -> None:
    import io

    import numpy as np

    from .io import atomic_write

    buf = io.BytesIO()
    np.save(buf, np.asarray(idx, dtype=np.int64), allow_pickle=False)
    atomic_write(path, buf.getvalue())


def _write_txt(path: str, idx) -> None:
    from .io import atomic_write_text

    atomic_write_text(path, "".join(f"{int(i)}\n" for i in idx))


# ``densecore select --out``: the suffix names the format
WRITERS = {".npy": _write_npy, ".txt": _write_txt}
METRICS = ("euclidean", "cosine")  # densecore.metrics.METRICS, literal for a fast start-up


def _array_arg(parser, path: str | None, flag: str):
    """The array in the file ``path`` given as option ``flag`` (None: not given); a
    file that cannot be read ends the command with the parser's error naming both."""
    if path is None:
        return None
    try:
        return load_array(path)
    except MemoryError:
        parser.error(f"cannot read {flag} {path!r}: its array does not fit in memory")
    except ValueError as e:
        parser.error(f"cannot read {flag} {path!r}: {e}")


def load_array(path: str):
    """Read one array from ``.npy``, ``.npz`` (``FILE.npz:KEY`` names one of several) or a
    tensor saved with ``torch.save``; raise ValueError with a one-line reason otherwise.

    Example:
        >>> import os, tempfile, numpy as np
        >>> d = tempfile.mkdtemp()
        >>> np.savez(os.path.join(d, "a.npz"), x=np.arange(3), y=np.ones(2))
        >>> load_array(os.path.join(d, "a.npz") + ":x").tolist()
        [0, 1, 2]
    """
    import pickle
    import zipfile

    import numpy as np

    key = None
    if not os.path.exists(path) and ":" in path and path.rsplit(":", 1)[0].endswith(".npz"):
        path, key = path.rsplit(":", 1)
    try:
        with open(path, "rb") as f:
            head = f.read(512)
        if not head.startswith((b"\x93NUMPY", b"PK\x03\x04")) and _is_text(head):
            raise ValueError("this is a text file, not a .npy, .npz or .pt array; convert "
                             "it once, e.g. numpy.save('x.npy', numpy.loadtxt(path))")
        if path.endswith((".pt", ".pth")):
            return _load_tensor(path)
        if not head.startswith((b"\x93NUMPY", b"PK\x03\x04")):
            raise ValueError("not a .npy or .npz file (no NumPy or zip header); a tensor "
                             "saved with torch.save needs the suffix .pt")
        if head.startswith(b"\x93NUMPY"):
            _check_npy_size(path)
        with open(path, "rb") as f:
            x = np.load(f, allow_pickle=False)
            if isinstance(x, np.lib.npyio.NpzFile):
                with x:
                    if key is None and len(x.files) != 1:
                        raise ValueError(f"holds arrays {x.files}; name one as {path}:KEY")
                    key = x.files[0] if key is None else key
                    if key not in x.files:
                        raise ValueError(f"has no array {key!r}; arrays: {x.files}")
                    x = x[key]
        return x
    except (OSError, EOFError, RuntimeError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise ValueError(_first_line(e)) from e


def _load_tensor(path: str):
    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it may not read
            warnings.simplefilter("ignore")
            x = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError("torch.load(weights_only=True) refused it: it holds more than "
                         "tensors (save one with torch.save(tensor, path))") from e
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a tensor; got {type(x).__name__}")
    return x


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head[:-3].decode("utf-8", errors="replace")  # a character cut at the end
        if "\ufffd" in text:
            return False
    return bool(text) and all(c.isprintable() or c in "\t\r\n" for c in text)


def _first_line(e) -> str:
    """The first non-empty line of an exception's message (its type name if none)."""
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    return lines[0] if lines else type(e).__name__


def _check_npy_size(path: str) -> None:
    """Raise ValueError when a .npy header claims more data than the file holds."""
    import numpy as np

    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read(f)
        offset = f.tell()
    if dtype.hasobject:
        return  # np.load refuses it (allow_pickle=False) with its own message
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    have = os.path.getsize(path) - offset
    if need != have:
        raise ValueError(f"the header claims shape {tuple(shape)} {dtype} ({need:,} bytes) but "
                         f"the file holds {have:,} bytes of data")


def _add_bench_speed(bench_sub) -> None:
    p = bench_sub.add_parser("speed", help="CPU selection speed: the engine against the naive "
                             "gemv loop, sklearn pairwise_distances and torch.linalg.norm")
    p.add_argument("--quick", action="store_true",
                   help="a small pool: 5000 points, 300 picks, 2 repeats (the plain loop)")
    p.add_argument("--n", type=int, default=None, help="number of points (default 100000)")
    p.add_argument("--dim", type=int, default=64, help="feature dimension (default 64)")
    p.add_argument("--budget", type=int, default=None, help="picks (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="timed runs, best kept (default 3)")
    p.add_argument("--methods", nargs="+", default=None,
                   help="subset of: engine engine_1thread torch_backend naive sklearn "
                   "torch_norm")
    p.add_argument("--baseline-picks", type=int, default=200,
                   help="picks timed for sklearn/torch_norm, scaled to the budget")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the rows as JSON")

    def run(args) -> int:
        import importlib.util

        from .bench.report import machine_info, write_json_atomic
        from .bench.speed import METHODS, format_table, run_speed

        methods = list(args.methods or METHODS)
        if "sklearn" in methods and importlib.util.find_spec("sklearn") is None:
            if args.methods:
                p.error("--methods sklearn needs the optional package scikit-learn "
                        "(pip install scikit-learn); leave sklearn out of --methods")
            methods.remove("sklearn")
            print("densecore bench speed: scikit-learn is not installed; skipping the sklearn "
                  "baseline (pip install scikit-learn to time it)", file=sys.stderr)
        q = args.quick
        rows = run_speed(n=args.n or (5_000 if q else 100_000), dim=args.dim,
                         budget=args.budget or (300 if q else 1000), seed=args.seed,
                         repeats=2 if q and args.repeats == 3 else args.repeats, methods=methods,
                         baseline_picks=args.baseline_picks)
        print(format_table(rows))
        if args.json:
            write_json_atomic(args.json, {"benchmark": "speed", "machine": machine_info(),
                                          "rows": rows})
        return 0

    p.set_defaults(func=run)


def _add_bench_bounds(bench_sub) -> None:
    p = bench_sub.add_parser("bounds", help="quick bound benchmark: delta, max average radial "
                             "distance and core-set loss of random, k-center, density-aware "
                             "(default and tuned tau), the k-medoids refinement and "
                             "typicality-weighted greedy, on the built-in Gaussian mixture "
                             "(the other data sets and the plots: benchmarks/bounds.py)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the rows as JSON")

    def run(args) -> int:
        from .bench.bounds import BUILTIN_SOURCE, builtin_datasets, format_report, run_bounds
        from .bench.report import machine_info, write_json_atomic

        source = BUILTIN_SOURCE
        out = run_bounds(quick=True, datasets=builtin_datasets)
        print(f"data sets: {source}\n")
        print(format_report(out))
        if args.json:
            write_json_atomic(args.json, {"benchmark": "bounds", "machine": machine_info(),
                                          "quick": True, "data_source": source, **out})
        return 0

    p.set_defaults(func=run)


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks (print a Markdown table, optional JSON)")
    bench_sub = p.add_subparsers(dest="bench_command", metavar="BENCHMARK")
    _add_bench_speed(bench_sub)
    _add_bench_bounds(bench_sub)
    p.set_defaults(func=lambda args: p.error("name a benchmark: speed or bounds "
                                             "(densecore bench --help)"))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``densecore`` command."""
    from . import __version__

    parser = _Parser(
        prog="densecore",
        description="Density-aware core-set active learning for semantic segmentation.")
    parser.add_argument("--version", action="version", version=f"densecore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(sub)
    _add_select(sub)
    _add_advise(sub)
    _add_bench(sub)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``densecore`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.error("name a command: demo, select, advise or bench (densecore --help)")
    command = " ".join(c for c in (parser.prog, args.command,
                                   getattr(args, "bench_command", None)) if c)
    try:
        return args.func(args)
    except ImportError as e:
        name = (getattr(e, "name", None) or "").split(".")[0]
        if isinstance(e, ModuleNotFoundError) and name in _EXTRAS:
            parser.exit(2, f"{command}: error: needs the optional package {name!r} "
                           f"(pip install {_EXTRAS[name]})\n")
        if "pip install" not in str(e):
            raise
        parser.exit(2, f"{command}: error: {_first_line(e)}\n")
    except (ValueError, TypeError) as e:  # bad argument values found by the library
        parser.exit(2, f"{command}: error: {_first_line(e)}\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
