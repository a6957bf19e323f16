"""Shared helpers of the benchmark scripts: arguments, timing, table + JSON output.

Tables and atomic JSON come from :mod:`densecore.bench.report` (shipped with
the package so that ``densecore bench`` can use them too).
"""

from __future__ import annotations

import argparse
import time

from densecore.bench.report import machine_info, markdown_table, write_json_atomic

__all__ = ["base_parser", "best_of", "emit", "machine_info", "markdown_table",
           "write_json_atomic"]


def base_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with ``--json OUT``, ``--quick`` and ``--seed``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", default=None, metavar="OUT",
                   help="write the rows and the machine description as JSON")
    p.add_argument("--quick", action="store_true", help="small sizes, a few minutes at most")
    p.add_argument("--seed", type=int, default=0)
    return p


def best_of(fn, repeats: int) -> tuple[float, list[float], object]:
    """Run ``fn()`` ``repeats`` times; return (best seconds, all seconds, last result)."""
    times, out = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), times, out


def emit(name: str, rows: list[dict], columns: list[str], json_path: str | None,
         caption: str | None = None, **extra) -> None:
    """Print ``rows`` as a Markdown table (and ``caption`` under it); write them with the
    machine facts to JSON."""
    print(markdown_table(rows, columns))
    if caption:
        print("\n" + caption)
    if json_path:
        write_json_atomic(json_path, {"benchmark": name, "machine": machine_info(),
                                      **extra, "rows": rows})
        print(f"\nwrote {json_path}")
