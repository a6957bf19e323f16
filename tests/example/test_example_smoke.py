"""examples/deeplab_ada/smoke.sh end to end (about a minute on 2 cores).

Skipped unless DENSECORE_RUN_SMOKE=1, so the default suite stays fast:

    DENSECORE_RUN_SMOKE=1 python -m pytest -q tests/example/test_example_smoke.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SMOKE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "deeplab_ada",
                     "smoke.sh")


@pytest.mark.skipif(os.environ.get("DENSECORE_RUN_SMOKE") != "1",
                    reason="set DENSECORE_RUN_SMOKE=1 to run the pipeline smoke test")
def test_smoke_script_writes_metrics(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    subprocess.run(["bash", SMOKE, str(tmp_path)], check=True, env=env, timeout=600)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0 < metrics["mIoU"] <= 100
    assert len(metrics["per_class_iou"]) == 19
    rounds = metrics["queried_pixels_per_round"]
    assert len(rounds) >= 2 and all(r["queried"] > 0 and r["images"] == 24 for r in rounds)


TINY_CONFIG = """\
backbone: tiny
source_size: [80, 45]
target_size: [64, 32]
iterations: 3
selection_iters: [1]
estimator_detach_iter: 1
dmc_dim: 8
save_every: 0
print_freq: 1
greedy_backend: torch
flip_test: false
"""


def test_smoke_script_runs_again_on_the_same_out(tmp_path):
    """A second run on one OUT neither regenerates the data nor is refused: it resumes the
    finished run and reports the same masks and metrics (tiny config via CONFIG=)."""
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    out = tmp_path / "out"
    src = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "src")
    env = dict(os.environ, PYTHON=sys.executable, CONFIG=str(config),
               PYTHONPATH=os.pathsep.join([os.path.abspath(src),
                                           os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    first = subprocess.run(["bash", SMOKE, str(out)], env=env, timeout=600,
                           capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    data_file = next((out / "data" / "gtav" / "images").iterdir())
    stamp = data_file.stat().st_mtime_ns
    assert not (out / "data.partial").exists()

    second = subprocess.run(["bash", SMOKE, str(out)], env=env, timeout=600,
                            capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resumed from" in second.stderr and "already holds a run" not in second.stderr
    assert data_file.stat().st_mtime_ns == stamp  # the data were not written again
    again = json.loads((out / "metrics.json").read_text())
    assert again["queried_pixels_per_round"] == metrics["queried_pixels_per_round"]
    assert again["mIoU"] == metrics["mIoU"]
    assert second.stdout.strip().splitlines()[-1] == first.stdout.strip().splitlines()[-1]
