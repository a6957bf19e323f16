"""benchmarks/gpu_check.py --dry-run: every step at tiny sizes on CPU tensors (the Triton
interpreter), so the script does not crash on its first GPU run. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import densecore

pytest.importorskip("triton", reason="triton does not import here")


def test_dry_run_writes_every_step(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "gpu_check.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(densecore.__file__)), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "gpu_check.py"),
                          "--dry-run", "--json", str(out)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    steps = [r["step"] for r in rows]
    assert steps == ["reference", "reference", "typicality", "typicality", "speed", "speed",
                     "select_pixels x1", "select_pixels x1", "select_pixels x2", "launches",
                     "launches", "knn"]
    assert all(r["equal_to_reference"] for r in rows if r["step"] in ("reference",
                                                                     "typicality"))
    assert all(r.get("syncs_per_pick") == 0 for r in rows if r["step"] == "launches")
