"""benchmarks/gpu_check.py --dry-run: every step at tiny sizes on CPU tensors (the Triton
interpreter), so the script does not crash on its first GPU run; and the JIT keys of its
warm-ups cover its timed runs (no compile inside a timed region). No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import densecore

pytest.importorskip("triton", reason="triton does not import here")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_dry_run_writes_every_step_and_compiles_nothing_when_timed(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(densecore.__file__)), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_check.py"),
                          "--dry-run", "--json", str(out)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    steps = [r["step"] for r in rows]
    assert steps == ["software", "auto", "reference", "reference", "typicality", "typicality",
                     "speed", "speed", "select_pixels x1", "select_pixels x1",
                     "select_pixels x16", "launches", "launches", "knn", "search",
                     "search"]
    assert doc["software"]["ok"] and "faiss" in doc["software"]
    assert sum(doc["step_budgets_s"].values()) < doc["budget_s"] <= 240
    assert all(r["equal_to_reference"] for r in rows if r["step"] in ("auto", "reference",
                                                                     "typicality", "search"))
    assert all(r.get("syncs_per_pick") == 0 for r in rows if r["step"] == "launches")
    tri = next(r for r in rows if r["step"] == "launches" and r["engine"] == "triton")
    assert tri["launches_per_pick"] == 1
    # the warm-ups saw the kernels' keys; no timed region met a new one
    assert doc["jit_keys_seen"] >= 3
    timed = [r for r in rows if "jit_new_in_timed" in r]
    assert len(timed) == 11 and all(r["jit_new_in_timed"] == 0 for r in timed)


def _keys():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import _jit_keys

    return _jit_keys


def _interpreted():
    from densecore._backends import triton_backend as TB

    return TB.interpreted()


@pytest.mark.skipif(torch.cuda.is_available() or not _interpreted(),
                    reason="the launches run on CPU tensors under the interpreter")
def test_jit_keys_see_what_would_compile():
    """The key log can fail: a new feature dimension's block size is a new key inside the
    timed region, and without ``do_not_specialize`` every 16th step (and step 1) of the
    kernel would be one too."""
    J = _keys()
    from triton.runtime.jit import JITFunction

    from densecore._backends import triton_backend as TB

    log = J.KeyLog()
    try:
        x = torch.from_numpy(np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32))
        densecore.farthest_first_batch(x, [100, 200], [5, 20], backend="triton")
        with log.timed() as new:  # the same shapes: nothing new
            densecore.farthest_first_batch(x, [100, 200], [9, 3], seeds=[4, 5],
                                           backend="triton")
        assert new == []
        with log.timed() as new:  # D = 40: BLOCK_D 64 instead of 8
            densecore.farthest_first_batch(torch.zeros(50, 40), [50], [3], backend="triton")
        assert len(new) >= 2 and {k.split("[")[0] for k in new} == {"_update"}
        log._pending.clear()
        densecore.farthest_first(x, 3, backend="triton")
        pick_args = [(a, kw) for k, a, kw in log._pending if kw.get("PICK")][-1]
    finally:
        log.close()
    names = [p.name for p in JITFunction(TB._update.fn).params]
    steps = [0, 1, 2, 16, 17, 32]

    def with_step(step):
        args = list(pick_args[0])
        args[names.index("step")] = step
        return tuple(args)

    assert len({J.jit_key(TB._update, with_step(i), pick_args[1]) for i in steps}) == 1

    class Plain:  # the same kernel without do_not_specialize
        fn, kwargs = TB._update.fn, {}

    assert len({J.jit_key(Plain, with_step(i), pick_args[1]) for i in steps}) == 3
