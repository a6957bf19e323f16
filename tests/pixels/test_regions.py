"""RIPU's non-overlapping region rule and select_pixels(return_candidates=True)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from densecore import (ImageCandidates, KCenterGreedy, blocked_candidates,
                       select_pixels)
from densecore.filters import top_candidates


def reference_blocked(scores, k, exclude, region_size):
    """Plain Python: visit pixels by (score desc, index asc), keep if no kept one is near."""
    b, h, w = scores.shape
    out = np.full((b, k), -1, np.int64)
    reach = region_size - 1
    for i in range(b):
        flat = scores[i].reshape(-1).astype(np.float32)
        order = sorted(range(h * w), key=lambda p: (-flat[p], p))
        kept = []
        for p in order:
            if len(kept) == k:
                break
            if exclude is not None and exclude[i].reshape(-1)[p]:
                continue
            y, x = divmod(p, w)
            if all(max(abs(y - q // w), abs(x - q % w)) > reach for q in kept):
                kept.append(p)
        out[i, :len(kept)] = kept
    return out


@pytest.mark.parametrize("region_size", [1, 3, 5])
def test_blocked_candidates_match_the_reference(region_size):
    rng = np.random.default_rng(region_size)
    scores = rng.integers(0, 6, size=(3, 11, 13)).astype(np.float64)  # many ties
    exclude = rng.random((3, 11, 13)) < 0.2
    got = blocked_candidates(torch.from_numpy(scores), 40, torch.from_numpy(exclude),
                             region_size=region_size)
    want = reference_blocked(scores, 40, exclude, region_size)
    assert np.array_equal(got.numpy(), want)
    if region_size == 1:
        assert np.array_equal(got.numpy(), top_candidates(scores, 40, exclude))


def test_blocked_regions_never_overlap_and_count_exactly():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(2, 5, 40, 48, generator=g), 1)
    feats = torch.randn(2, 8, 10, 12, generator=g)
    dens = torch.rand(2, 10, 12, generator=g) + 0.5
    budget = 20
    for overlap in ("block", "allow"):
        mask, seen = select_pixels(probs, feats, dens, budget, alpha=5, region_size=3,
                                   region_overlap=overlap, return_candidates=True)
        for b in range(2):
            centres = seen[b].candidates[seen[b].selected]
            ys, xs = centres // 48, centres % 48
            inner = ((ys > 0) & (ys < 39) & (xs > 0) & (xs < 47)).sum().item()
            if overlap == "block":
                d = torch.maximum((ys[:, None] - ys[None]).abs(), (xs[:, None] - xs[None]).abs())
                assert (d + 3 * torch.eye(budget, dtype=d.dtype) > 2).all()
                # every pick labels its full 3x3 block unless clipped by the border
                assert mask[b].sum().item() >= 9 * inner
    # the default is RIPU's rule, and it differs from "allow" on this input
    default = select_pixels(probs, feats, dens, budget, alpha=5, region_size=3)
    assert torch.equal(default, select_pixels(probs, feats, dens, budget, alpha=5,
                                              region_size=3, region_overlap="block"))
    assert not torch.equal(default, select_pixels(probs, feats, dens, budget, alpha=5,
                                                  region_size=3, region_overlap="allow"))
    with pytest.raises(ValueError, match="region_overlap"):
        select_pixels(probs, feats, dens, budget, region_overlap="no")


def test_return_candidates_is_what_the_sampler_saw():
    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(1, 4, 16, 16, generator=g), 1)
    feats = torch.randn(1, 6, 4, 4, generator=g)
    dens = torch.rand(1, 4, 4, generator=g) + 0.5
    labeled = torch.zeros(1, 16, 16, dtype=torch.bool)
    labeled[0, 3, 4] = True
    mask, (c,) = select_pixels(probs, feats, dens, 5, alpha=4, labeled=labeled,
                               return_candidates=True, seed=3)
    assert isinstance(c, ImageCandidates)
    assert c.candidates.shape == (20,) and c.features.shape == (20, 6)
    assert c.densities.shape == (20,) and c.labeled_features.shape == (1, 6)
    assert torch.allclose(c.features.norm(dim=1), torch.ones(20))
    # the default sampler, run again on what select_pixels says it saw
    again = KCenterGreedy(seed=3).select(c.features, 5, densities=c.densities,
                                              labeled_features=c.labeled_features,
                                              labeled_densities=c.labeled_densities)
    assert torch.equal(torch.as_tensor(again.indices), c.selected)
    assert set(mask[0].reshape(-1).nonzero()[:, 0].tolist()) == set(
        c.candidates[c.selected].tolist())
    _, (r,) = select_pixels(probs, None, None, 5, sampler=None, return_candidates=True)
    assert r.features is None and r.selected.tolist() == [0, 1, 2, 3, 4]
