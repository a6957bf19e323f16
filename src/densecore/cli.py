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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``densecore`` command."""
    parser = argparse.ArgumentParser(
        prog="densecore",
        description="Density-aware core-set active learning for semantic segmentation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(sub)
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
