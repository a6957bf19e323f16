"""``import densecore`` loads no optional or compiler package; the names still work."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import densecore
heavy = ("numba", "llvmlite", "faiss", "scipy", "matplotlib", "sklearn")
print(sorted(m for m in heavy if m in sys.modules))
x = densecore.synthetic.gaussian_mixture(300, dim=3, n_components=3, seed=0)[0]
sel = densecore.KCenterGreedy().select(x, 5)
mask = densecore.blocked_candidates(__import__("torch").rand(1, 8, 8), 2)
print("numba" in sys.modules, len(sel), tuple(mask.shape))
"""


def test_import_densecore_does_not_load_numba_and_kernels_still_run():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "True 5 (1, 2)"]
