"""densecore.plot: the round picture is written atomically, shows the queries in their
colour at their pixels, and names the extra when matplotlib is missing."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import densecore

pytest.importorskip("matplotlib")
from densecore import plot  # noqa: E402


def two_rounds(tmp_path, shape=(40, 60)):
    state = densecore.ActiveLabelState(tmp_path / "st", ["a"], shape)
    first = np.zeros(shape, bool)
    first[5:8, 5:8] = True
    second = np.zeros(shape, bool)
    second[30:33, 50:53] = True
    second[20, 20] = True
    state.add("a", first, round=0)
    state.add("a", second, round=1)
    return state


def test_the_picture_shows_this_rounds_queries_and_the_earlier_ones(tmp_path):
    from matplotlib.image import imread

    state = two_rounds(tmp_path)
    fig = plot.round_figure(state, 1, "a", score=np.linspace(0, 1, 12).reshape(3, 4),
                            score_label="margin")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["labeled in rounds < 1: 9 px in 1 groups",
                      "queried in round 1: 10 px in 2 groups"]
    assert fig.axes[1].get_ylabel() == "margin"  # the colour scale
    centres = sorted(map(tuple, ax.collections[-1].get_offsets().tolist()))
    assert centres == [(20.0, 20.0), (51.0, 31.0)]  # (x, y) of each group's centre
    path = plot.round_picture(state, 1, "a", tmp_path / "a.png", dpi=50)
    img = imread(path)
    magenta = (np.abs(img[..., :3] - [1.0, 0.18, 0.58]) < 0.08).all(-1)
    cyan = (np.abs(img[..., :3] - [0.0, 0.9, 1.0]) < 0.08).all(-1)
    assert magenta.sum() > 20 and cyan.sum() > 10
    assert sorted(os.listdir(tmp_path)) == ["a.png", "st"]  # no temporary file left


def test_bad_inputs_and_a_missing_matplotlib_are_named(tmp_path, monkeypatch):
    state = two_rounds(tmp_path)
    with pytest.raises(ValueError, match=r"image must be \(40, 60\)"):
        plot.round_figure(state, 1, "a", image=np.zeros((40, 61, 3)))
    with pytest.raises(ValueError, match="round 2 is not done"):
        plot.round_figure(state, 2, "a")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'densecore-seg\[plots\]'):
        plot.round_picture(state, 1, "a", tmp_path / "b.png")
    assert not (tmp_path / "b.png").exists()
