"""Benchmarks that ship with the package (run by ``densecore bench``).

Each module exposes one ``run_*`` function returning a list of plain dicts
(one per measured method) and a ``format_table`` that renders them as Markdown.
The scripts in the repository's ``benchmarks/`` folder call these and add
sweeps, memory and GPU measurements.
"""
