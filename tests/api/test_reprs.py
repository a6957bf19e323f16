"""``print(sel)`` and ``print(report)`` show a few numbers, never whole arrays."""

from __future__ import annotations

import numpy as np
import torch

import densecore
from densecore.synthetic import gaussian_mixture


def test_selection_repr_is_short_for_numpy_and_tensors(device):
    x, _ = gaussian_mixture(3000, dim=4, n_components=3, seed=0)
    sel = densecore.KCenterGreedy().select(x, 400)
    text = repr(sel)
    i, r = sel.indices, sel.radii
    assert text == (f"Selection(400 picks, indices=[{i[0]}, {i[1]}, {i[2]}, ...] (400,) int64, "
                    f"radii=[inf, {r[1]:.4g}, {r[2]:.4g}, ...] (400,) float32)")
    assert str(sel) == text and len(text) < 150

    t = densecore.KCenterGreedy(backend="torch").select(torch.from_numpy(x).to(device), 400)
    text = repr(t)
    where = "" if device.type == "cpu" else f" {device}"
    assert f"(400,) torch.int64{where}, radii=[inf, " in text and len(text) < 170


def test_bound_report_repr_is_short():
    x, labels = gaussian_mixture(2000, dim=3, n_components=4, seed=1)
    sel = densecore.KCenterGreedy().select(x, 300).indices
    report = densecore.bound_report(x, sel, labels)
    text = repr(report)
    assert text == (f"BoundReport(protocol='same', delta={report.delta:.4g}, "
                    f"max_ard={report.max_ard:.4g}, mean_ard={np.mean(report.ard):.4g}, "
                    f"coreset_loss={report.coreset_loss:.4g}, centres=300, points=2000)")
    assert "\n" not in text and len(text) < 150
