"""score="ripu" in select_pixels: the hybrid's pool holds positive RIPU scores only
(zero scores never filled in by index order) and the pixel mode takes RIPU's
pixel-setting window (RADIUS_K 32 at 1024 x 2048, scaled with the label height)."""

import pytest
import torch

import densecore
from densecore.budgets import ripu_pixel_radius
from densecore.filters import ripu_score
from densecore.regions import ripu_select


def _probs(h=32, w=64, spots=((slice(None), slice(40, 41)),), seed=0):
    """(1, 3, H, W) soft probabilities: class 0 wins everywhere but the spots (class 1),
    so RIPU's impurity is 0 except within k of a spot; every entropy is positive."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, 3, h, w, generator=g) * 0.1
    logits[:, 0] += 2.0
    for sy, sx in spots:
        logits[0, 1, sy, sx] += 4.0
    return logits.softmax(1)


def _pool(probs, budget, seed=0, alpha=20):
    feats = torch.randn(1, 8, probs.shape[2] // 4, probs.shape[3] // 4,
                        generator=torch.Generator().manual_seed(1))
    dens = torch.ones(1, *feats.shape[2:])
    _, (seen,) = densecore.select_pixels(
        probs, feats, dens, budget, alpha=alpha, score="ripu", region_size=1,
        sampler=densecore.DensityAwareGreedy(seed=seed), seed=seed, return_candidates=True)
    return seen.candidates


def test_pool_holds_positive_scores_only():
    probs = _probs()
    k = ripu_pixel_radius(probs.shape[-2:])
    s = ripu_score(probs, k, mode="pixel").reshape(-1)
    positive = set(torch.nonzero(s > 0).flatten().tolist())
    assert 0 < len(positive) < 20 * 10  # the pool would otherwise be 200 long
    cand = _pool(probs, budget=10)
    assert set(cand.tolist()) == positive  # every positive pixel, no zero-score one


def test_too_few_positive_scores_are_topped_up_at_random():
    # one class-1 pixel: (2k+1)^2 = 9 positive scores at 32 x 64 (k = 1), budget 30
    probs = _probs(spots=((slice(20, 21), slice(40, 41)),))
    s = ripu_score(probs, 1, mode="pixel").reshape(-1)
    n_pos = int((s > 0).sum())
    assert n_pos == 9
    a, b, again = _pool(probs, 30, seed=0), _pool(probs, 30, seed=1), _pool(probs, 30, seed=0)
    assert a.numel() == 30 and torch.equal(a, again)
    assert set(a[:n_pos].tolist()) == set(torch.nonzero(s > 0).flatten().tolist())
    zeros = a[n_pos:]
    assert (s[zeros] == 0).all()
    lowest = torch.nonzero(s == 0).flatten()[:30 - n_pos]
    assert not torch.equal(zeros.sort().values, lowest)  # not the top rows by index order
    assert (zeros // 64).float().mean() > 4  # spread over the image, not rows 0-1
    assert set(zeros.tolist()) != set(b[n_pos:].tolist())  # the seed decides


@pytest.mark.parametrize("shape,k", [((1024, 2048), 32), ((512, 1024), 16), ((128, 256), 4),
                                     ((64, 128), 2), ((48, 96), 2), ((16, 32), 1),
                                     ((1, 4), 1)])
def test_ripu_pixel_radius(shape, k):
    assert ripu_pixel_radius(shape) == k


def test_ripu_pixel_radius_checks_shape():
    with pytest.raises(ValueError, match="shape"):
        ripu_pixel_radius((0, 4))
    with pytest.raises(ValueError, match="shape"):
        ripu_pixel_radius(64)


def test_pixel_mode_uses_ripus_window():
    # 64 x 128 labels: k = 2 (5 x 5 purity window and suppression), not k = 1
    g = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(2, 5, 64, 128, generator=g) * 2, 1)
    got = densecore.select_pixels(probs, None, None, 20, sampler="ripu", score="ripu",
                                  region_size=1)
    want = ripu_select(ripu_score(probs, 2, mode="pixel"), 20, mode="pixel", k=2)
    old = ripu_select(ripu_score(probs, 1, mode="pixel"), 20, mode="pixel", k=1)
    assert torch.equal(got, want) and not torch.equal(got, old)
    picks = torch.nonzero(got[0])
    gaps = (picks[:, None] - picks[None]).abs().amax(-1)
    assert gaps[~torch.eye(len(picks), dtype=bool)].min() > 2  # suppressed within k = 2
