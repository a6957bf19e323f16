"""The batched path: per-image seeds in select_pixels, one batched call in query_round."""

import numpy as np
import pytest
import torch

import densecore
from densecore import DensityAwareGreedy, KCenterGreedy, image_seed, query_round, select_pixels


def _inputs(bsz=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(bsz, 4, 16, 16, generator=g), 1)
    feats = torch.randn(bsz, 6, 8, 8, generator=g)
    dens = torch.rand(bsz, 8, 8, generator=g) + 0.5
    return probs, feats, dens


@pytest.mark.parametrize("sampler", [None, "kcenter", "density"])
def test_per_image_seeds_equal_each_image_alone(sampler):
    probs, feats, dens = _inputs()
    seeds = [5, 11, 2]
    make = {"kcenter": KCenterGreedy, "density": DensityAwareGreedy}.get(sampler)
    kw = dict(alpha=4, score="random")
    both = select_pixels(probs, feats, dens, 6, seed=seeds,
                         sampler=make(seed=0) if make else densecore.samplers.DEFAULT_SAMPLER,
                         **kw)
    for b, s in enumerate(seeds):
        alone = select_pixels(probs[b:b + 1], feats[b:b + 1], dens[b:b + 1], 6, seed=s,
                              sampler=make(seed=s) if make else
                              densecore.samplers.DEFAULT_SAMPLER, **kw)
        assert torch.equal(both[b], alone[0]), b


def test_per_image_seeds_change_the_first_pick():
    probs, feats, dens = _inputs(bsz=2)
    a = select_pixels(probs, feats, dens, 1, seed=[0, 0], alpha=40)
    picks = {tuple(select_pixels(probs, feats, dens, 1, seed=[0, s], alpha=40)[1]
                   .nonzero().flatten().tolist()) for s in range(8)}
    assert len(picks) > 1  # the second image's seed moves its first pick
    assert torch.equal(a[0], select_pixels(probs, feats, dens, 1, seed=[0, 7], alpha=40)[0])


def test_seed_list_is_checked():
    probs, feats, dens = _inputs(bsz=2)
    with pytest.raises(ValueError, match="seed"):
        select_pixels(probs, feats, dens, 2, seed=[1, 2, 3])
    with pytest.raises(ValueError, match="seed"):
        select_pixels(probs, feats, dens, 2, seed=[1, -2])


@pytest.mark.parametrize("rnd", [0, 3])
def test_query_round_equals_each_image_with_its_seed(tmp_path, rnd):
    probs, feats, dens = _inputs(bsz=3, seed=1)
    ids = ["a", "b", "c"]
    state = densecore.ActiveLabelState(tmp_path / "s", ids, (16, 16))
    score = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(4))
    assert query_round(state, rnd, ids, probs, feats, dens, 4, alpha=4, seed=9,
                       score=score) == ids
    for b, i in enumerate(ids):
        s = image_seed(9, rnd, i)
        alone = select_pixels(probs[b:b + 1], feats[b:b + 1], dens[b:b + 1], 4, alpha=4,
                              seed=s, score=score[b:b + 1])
        assert np.array_equal(state.labeled(i, rounds=[rnd]), alone[0].numpy()), i


def test_query_round_skips_done_images_and_keeps_rows(tmp_path):
    probs, feats, dens = _inputs(bsz=3, seed=2)
    ids = ["a", "b", "c"]
    state = densecore.ActiveLabelState(tmp_path / "s", ids, (16, 16))
    assert query_round(state, 0, ["b"], probs[1:2], feats[1:2], dens[1:2], 3, alpha=4) == ["b"]
    before = state.labeled("b")
    assert query_round(state, 0, ids, probs, feats, dens, 3, alpha=4) == ["a", "c"]
    assert np.array_equal(state.labeled("b"), before)
    s = image_seed(0, 0, "c")
    alone = select_pixels(probs[2:3], feats[2:3], dens[2:3], 3, alpha=4, seed=s)
    assert np.array_equal(state.labeled("c"), alone[0].numpy())


def test_query_round_with_the_paper_sampler_per_image(tmp_path):
    probs, feats, dens = _inputs(bsz=2, seed=5)
    ids = ["a", "b"]
    state = densecore.ActiveLabelState(tmp_path / "s", ids, (16, 16))
    query_round(state, 1, ids, probs, feats, dens, 4, alpha=4, seed=2,
                sampler="density_aware")
    for b, i in enumerate(ids):
        s = image_seed(2, 1, i)
        alone = select_pixels(probs[b:b + 1], feats[b:b + 1], dens[b:b + 1], 4, alpha=4,
                              seed=s, sampler=DensityAwareGreedy(seed=s))
        assert np.array_equal(state.labeled(i, rounds=[1]), alone[0].numpy()), i


def test_query_round_takes_ripu_as_each_image_alone(tmp_path):
    # RIPU's own selection: one select_pixels call for the batch, as each image alone
    probs, feats, dens = _inputs(bsz=2, seed=3)
    ids = ["a", "b"]
    for name, sampler in (("str", "ripu"),):
        state = densecore.ActiveLabelState(tmp_path / name, ids, (16, 16))
        assert query_round(state, 0, ids, probs, feats, dens, 3, sampler=sampler,
                           score="ripu", region_size=3) == ids
        for b, i in enumerate(ids):
            alone = select_pixels(probs[b:b + 1], feats[b:b + 1], dens[b:b + 1], 3,
                                  sampler="ripu", score="ripu", region_size=3,
                                  seed=image_seed(0, 0, i), region_overlap="block")
            assert np.array_equal(state.queried(i, 0), alone[0].numpy()), (name, i)
