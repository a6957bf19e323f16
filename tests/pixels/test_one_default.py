"""Every entry point that selects pixels has the one default sampler, and they pick alike."""

import inspect

import numpy as np
import pytest
import torch

import densecore
from densecore.samplers import DEFAULT_SAMPLER, make_sampler


def _entry_points():
    from densecore.integrations import ripu
    points = {
        "select_pixels": densecore.select_pixels,
        "query_round": densecore.query_round,
        "ripu.select_round": ripu.select_round,
    }
    try:
        from densecore.integrations.lightning import SelectionRounds
        points["lightning.SelectionRounds"] = SelectionRounds.__init__
    except ImportError:  # the lightning extra is not installed
        pass
    try:
        from densecore.integrations.mmseg import SelectionHook
        points["mmseg.SelectionHook"] = SelectionHook.__init__
    except ImportError:  # the mmseg extra is not installed
        pass
    return points


@pytest.mark.parametrize("name", sorted(_entry_points()))
def test_default_sampler_is_the_one_default(name):
    default = inspect.signature(_entry_points()[name]).parameters["sampler"].default
    assert default == DEFAULT_SAMPLER, (name, default)


def test_the_default_is_kcenter_and_builds():
    # the choice the ladder's evidence made (samplers/names.py cites it)
    assert DEFAULT_SAMPLER == "kcenter"
    assert isinstance(make_sampler(DEFAULT_SAMPLER, 3), densecore.KCenterGreedy)


def test_ripu_drop_in_uses_select_pixels_default():
    from densecore.integrations import ripu
    for cls in (ripu.RegionSelection, ripu.PixelSelection):
        d = inspect.signature(cls).parameters["sampler"].default
        # "not given" stands for select_pixels' own default, which is the one default
        assert d is ripu._PAPER or d == DEFAULT_SAMPLER, (cls, d)


def test_select_pixels_and_query_round_pick_alike_by_default(tmp_path):
    g = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(2, 4, 16, 16, generator=g), 1)
    feats = torch.randn(2, 6, 8, 8, generator=g)
    dens = torch.rand(2, 8, 8, generator=g) + 0.5
    ids = ["x", "y"]
    state = densecore.ActiveLabelState(tmp_path / "s", ids, (16, 16))
    densecore.query_round(state, 0, ids, probs, feats, dens, 5, alpha=4, seed=1)
    seeds = [densecore.image_seed(1, 0, i) for i in ids]
    direct = densecore.select_pixels(probs, feats, dens, 5, alpha=4, seed=seeds)
    for b, i in enumerate(ids):
        assert np.array_equal(state.labeled(i), direct[b].numpy()), i
    # and the default differs from the paper's sampler on these inputs: the test can fail
    paper = densecore.select_pixels(probs, feats, dens, 5, alpha=4, seed=seeds,
                                    sampler="density_aware")
    assert not torch.equal(paper, direct)
