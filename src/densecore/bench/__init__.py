"""Benchmarks that ship with the package (run by ``densecore bench``).

Each module exposes one ``run_*`` function returning plain dicts (one per
measured method, or per setting) and a ``format_*`` that renders them as
Markdown. The scripts in the repository's ``benchmarks/`` folder call these and
add sweeps, memory and GPU measurements; the bound benchmark's data sets, its
estimator training, its exact-ARD reference and its plots live there too, not in
the installed package, and are passed in (``run_bounds(datasets=...)``): the
package never imports the ``benchmarks/`` folder.
"""
