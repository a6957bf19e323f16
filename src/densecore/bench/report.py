"""Helpers shared by the benchmarks: Markdown tables, atomic JSON, machine facts.

Shape:
    rows are lists of flat dicts (one per measured method or configuration).
"""

from __future__ import annotations

import os
import platform

from ..io import atomic_write_json

__all__ = ["machine_info", "markdown_table", "write_json_atomic"]


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """Render ``rows`` as a Markdown table with the given ``columns``.

    Missing keys print as ``-``; floats with 4 significant digits.

    Example:
        >>> print(markdown_table([{"method": "a", "time_s": 0.5}], ["method", "time_s"]))
        | method | time_s |
        | --- | --- |
        | a | 0.5 |
    """
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def write_json_atomic(path: str, obj) -> None:
    """Write ``obj`` as JSON to ``path`` atomically, creating its directory if needed.

    Same as :func:`densecore.io.atomic_write_json` (indent 2, trailing
    newline; temp file, fsync, ``os.replace``) after ``os.makedirs``.

    Example:
        >>> import os, tempfile
        >>> p = os.path.join(tempfile.mkdtemp(), "r.json")
        >>> write_json_atomic(p, {"a": 1}); open(p).read()
        '{\\n  "a": 1\\n}\\n'
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_json(path, obj)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Facts about the machine and library versions, for benchmark JSON.

    Returns:
        dict with ``cpu`` (model name), ``cores`` (usable CPUs), ``python``,
        ``numpy``, ``torch``, ``numba``, ``numba_threads``, ``cuda`` (device
        name or None), ``loadavg_1m`` (other work on a shared machine skews timings).

    Example:
        >>> sorted(machine_info())[:3]
        ['cores', 'cpu', 'cuda']
    """
    import numba
    import numpy as np
    import torch

    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count()
    return {"cpu": _cpu_model(), "cores": cores, "python": platform.python_version(),
            "numpy": np.__version__, "torch": torch.__version__, "numba": numba.__version__,
            "numba_threads": numba.get_num_threads(), "cuda": cuda,
            "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
