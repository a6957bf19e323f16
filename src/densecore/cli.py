"""The ``densecore`` command: ``demo``, ``select``, ``bench``.

Each subcommand is a small ``add_<name>(subparsers)`` that registers its
arguments and a ``run`` function taking the parsed namespace.
"""

from __future__ import annotations

import argparse
import sys


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="select from a synthetic Gaussian mixture with random, "
                       "k-center and density-aware greedy; print the bounds")
    p.add_argument("--n", type=int, default=20000, help="number of points (default 20000)")
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


def _add_bench_speed(bench_sub) -> None:
    p = bench_sub.add_parser("speed", help="CPU selection speed: the engine against the naive "
                             "gemv loop, sklearn pairwise_distances and torch.linalg.norm")
    p.add_argument("--n", type=int, default=100_000, help="number of points (default 100000)")
    p.add_argument("--dim", type=int, default=64, help="feature dimension (default 64)")
    p.add_argument("--budget", type=int, default=1000, help="picks (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="timed runs, best kept (default 3)")
    p.add_argument("--methods", nargs="+", default=None,
                   help="subset of: engine torch_backend naive sklearn torch_norm")
    p.add_argument("--baseline-picks", type=int, default=200,
                   help="picks timed for sklearn/torch_norm, scaled to the budget")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the rows as JSON")

    def run(args) -> int:
        from .bench.report import machine_info, write_json_atomic
        from .bench.speed import METHODS, format_table, run_speed

        rows = run_speed(n=args.n, dim=args.dim, budget=args.budget, seed=args.seed,
                         repeats=args.repeats, methods=args.methods or METHODS,
                         baseline_picks=args.baseline_picks)
        print(format_table(rows))
        if args.json:
            write_json_atomic(args.json, {"benchmark": "speed", "machine": machine_info(),
                                          "rows": rows})
        return 0

    p.set_defaults(func=run)


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks (print a Markdown table, optional JSON)")
    bench_sub = p.add_subparsers(dest="bench_command", metavar="BENCHMARK")
    _add_bench_speed(bench_sub)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``densecore`` command."""
    parser = argparse.ArgumentParser(
        prog="densecore",
        description="Density-aware core-set active learning for semantic segmentation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(sub)
    _add_bench(sub)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``densecore`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
