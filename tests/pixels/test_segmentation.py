"""select_pixels: budget, exclusions, regions, determinism, sampling at candidates, spread."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from densecore import DensityAwareGreedy, KCenterGreedy, Selection, select_pixels
from densecore.filters import margin_score, top_candidates
from densecore.segmentation import sample_at_pixels


def _inputs(seed=0, b=2, c=5, big=(24, 32), small=(6, 8), d=6, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(b, c, *big, generator=g) * 2, 1)
    feats = torch.randn(b, d, *small, generator=g)
    dens = torch.rand(b, *small, generator=g) + 0.2
    return probs.to(device), feats.to(device), dens.to(device)


@pytest.mark.parametrize("big,small", [((12, 20), (3, 5)), ((13, 7), (4, 3)), ((5, 9), (5, 9)),
                                       ((40, 64), (5, 8))])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sampling_at_pixels_equals_upsampled_map(big, small, dtype, device):
    g = torch.Generator().manual_seed(1)
    maps = torch.randn(3, *small, generator=g, dtype=dtype).to(device)
    full = F.interpolate(maps[None], size=big, mode="bilinear", align_corners=False)[0]
    idx = torch.arange(big[0] * big[1], device=device)
    got = sample_at_pixels(maps, idx, big)
    assert got.shape == (idx.numel(), 3) and got.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got, full.flatten(1).T, atol=tol, rtol=tol)
    some = torch.tensor([0, big[1] - 1, big[0] * big[1] - 1, big[1] + 1], device=device)
    torch.testing.assert_close(sample_at_pixels(maps, some, big), full.flatten(1)[:, some].T,
                               atol=tol, rtol=tol)


class Spy:
    """Records what select_pixels hands the sampler, then runs Algorithm 1."""

    def __init__(self):
        self.calls = []

    def select(self, features, budget, *, densities=None, labeled=None, labeled_features=None,
               labeled_densities=None, init=None):
        self.calls.append((features, densities, labeled_features, labeled_densities))
        return DensityAwareGreedy(seed=0).select(features, budget, densities=densities,
                                                  labeled_features=labeled_features,
                                                  labeled_densities=labeled_densities)


def test_sampler_gets_candidate_features_and_labeled_set(device):
    probs, feats, dens = _inputs(device=device)
    big = probs.shape[-2:]
    labeled = torch.zeros(2, *big, dtype=torch.bool, device=device)
    labeled[0, 3, 4:9] = True
    ignore = torch.zeros_like(labeled)
    ignore[:, 10:12] = True
    spy = Spy()
    select_pixels(probs, feats, dens, 4, labeled=labeled, ignore=ignore, alpha=5, sampler=spy)
    cand = top_candidates(margin_score(probs), 20, labeled | ignore)
    full_f = F.interpolate(feats, size=big, mode="bilinear", align_corners=False).flatten(2)
    full_d = F.interpolate(dens[:, None], size=big, mode="bilinear",
                           align_corners=False).flatten(1)
    for b, (f, d, lf, ld) in enumerate(spy.calls):
        want = F.normalize(full_f[b][:, cand[b]].T, dim=1)
        torch.testing.assert_close(f, want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(f.norm(dim=1), torch.ones(20, device=device))
        torch.testing.assert_close(d, full_d[b][cand[b]], atol=1e-5, rtol=1e-5)
        lab_idx = labeled[b].flatten().nonzero().squeeze(1)
        if b == 0:
            torch.testing.assert_close(lf, F.normalize(full_f[b][:, lab_idx].T, dim=1),
                                       atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(ld, full_d[b][lab_idx], atol=1e-5, rtol=1e-5)
        else:
            assert lf is None and ld is None


@pytest.mark.parametrize("sampler", ["default", "kcenter", None])
def test_exact_budget_none_labeled_or_ignored(sampler, device):
    probs, feats, dens = _inputs(device=device)
    rng = np.random.default_rng(0)
    labeled = torch.from_numpy(rng.random((2, 24, 32)) < 0.3).to(device)
    ignore = torch.from_numpy(rng.random((2, 24, 32)) < 0.2).to(device)
    kw = {} if sampler == "default" else {
        "sampler": KCenterGreedy() if sampler == "kcenter" else None}
    new = select_pixels(probs, feats, dens, 17, labeled=labeled, ignore=ignore, alpha=3, **kw)
    assert new.dtype == torch.bool and new.shape == (2, 24, 32)
    assert new.device.type == device.type
    assert new.sum((1, 2)).tolist() == [17, 17]
    assert not (new & (labeled | ignore)).any()


def test_score_only_is_top_budget_by_score():
    probs, _, _ = _inputs()
    new = select_pixels(probs, None, None, 9, sampler=None)
    s = margin_score(probs).flatten(1)
    for b in range(2):
        picked = s[b][new[b].flatten()]
        others = s[b][~new[b].flatten()]
        assert picked.min() >= others.max()


def test_deterministic_for_a_seed_and_random_score_seeded():
    probs, feats, dens = _inputs()
    a = select_pixels(probs, feats, dens, 8, alpha=4, seed=3)
    b = select_pixels(probs, feats, dens, 8, alpha=4, seed=3)
    assert torch.equal(a, b)
    r1 = select_pixels(probs, None, None, 8, sampler=None, score="random", seed=1)
    r2 = select_pixels(probs, None, None, 8, sampler=None, score="random", seed=1)
    r3 = select_pixels(probs, None, None, 8, sampler=None, score="random", seed=2)
    assert torch.equal(r1, r2) and not torch.equal(r1, r3)


def test_region_mode_hand_case():
    # score-only: the two best pixels are a corner and an interior pixel
    score = torch.zeros(1, 6, 7)
    score[0, 0, 0] = 2.0
    score[0, 3, 4] = 1.0
    probs = torch.full((1, 2, 6, 7), 0.5)
    labeled = torch.zeros(1, 6, 7, dtype=torch.bool)
    labeled[0, 2, 3] = True
    ignore = torch.zeros_like(labeled)
    ignore[0, 4, 5] = True
    new = select_pixels(probs, None, None, 2, sampler=None, score=score, region_size=3,
                        labeled=labeled, ignore=ignore)
    want = torch.zeros(6, 7, dtype=torch.bool)
    want[0:2, 0:2] = True   # clipped at the border
    want[2:5, 3:6] = True   # 3x3 block around (3, 4)
    want[2, 3] = False      # already labeled
    want[4, 5] = False      # ignored
    assert torch.equal(new[0], want)


def test_region_mode_properties(device):
    probs, feats, dens = _inputs(device=device)
    labeled = torch.zeros(2, 24, 32, dtype=torch.bool, device=device)
    labeled[:, ::5, ::3] = True
    new = select_pixels(probs, feats, dens, 6, labeled=labeled, alpha=4, region_size=3)
    assert not (new & labeled).any()
    n = new.sum((1, 2))
    assert ((n >= 6) & (n <= 54)).all()
    with pytest.raises(ValueError, match="region_size must be odd"):
        select_pixels(probs, feats, dens, 6, region_size=2)


def test_budget_error_names_budget():
    probs, feats, dens = _inputs()
    ignore = torch.ones(2, 24, 32, dtype=torch.bool)
    ignore[1, :2, :3] = False
    with pytest.raises(ValueError, match=r"budget.*image 0 has 0.*got budget 7"):
        select_pixels(probs, feats, dens, 7, ignore=ignore)
    ignore[0] = False
    with pytest.raises(ValueError, match=r"image 1 has 6, got budget 7"):
        select_pixels(probs, feats, dens, 7, ignore=ignore)
    # exactly as many eligible pixels as budget: all of them are picked
    new = select_pixels(probs, feats, dens, 6, ignore=ignore)
    assert torch.equal(new[1], ~ignore[1])


def test_input_errors():
    probs, feats, dens = _inputs()
    with pytest.raises(ValueError, match="densities is required"):
        select_pixels(probs, feats, None, 3, sampler=DensityAwareGreedy())
    # the default sampler (k-center greedy) needs no densities
    assert select_pixels(probs, feats, None, 3).sum() == 3 * probs.shape[0]
    with pytest.raises(ValueError, match="from_logits=True"):
        select_pixels(torch.log(probs), feats, dens, 3)
    with pytest.raises(ValueError, match="densities must be floating with shape"):
        select_pixels(probs, feats, dens[:, :3], 3)
    with pytest.raises(ValueError, match="labeled must have shape"):
        select_pixels(probs, feats, dens, 3, labeled=torch.zeros(2, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="score must be one of"):
        select_pixels(probs, feats, dens, 3, score="bald")
    with pytest.raises(ValueError, match="alpha"):
        select_pixels(probs, feats, dens, 3, alpha=0.5)


def test_from_logits_numpy_and_kcenter_ignores_densities():
    probs, feats, dens = _inputs()
    logits = torch.log(probs) + 3.0
    a = select_pixels(probs, feats, dens, 5, alpha=3)
    b = select_pixels(logits, feats, dens, 5, alpha=3, from_logits=True)
    assert torch.equal(a, b)
    c = select_pixels(probs.numpy(), feats.numpy(), dens.numpy(), 5, alpha=3)
    assert isinstance(c, np.ndarray) and np.array_equal(c, a.numpy())
    k1 = select_pixels(probs, feats, dens, 5, alpha=3, sampler=KCenterGreedy())
    k2 = select_pixels(probs, feats, dens * 7 + 1, 5, alpha=3, sampler=KCenterGreedy())
    assert torch.equal(k1, k2)


def test_kcenter_spreads_more_than_score_only():
    # Features encode position (a smooth map); the scores peak in one corner.
    h, w, big_h, big_w = 8, 8, 32, 32
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    feats = torch.stack([yy, xx, 1 + 0 * yy])[None]
    by, bx = torch.meshgrid(torch.arange(big_h), torch.arange(big_w), indexing="ij")
    score = torch.exp(-((by - 5.0) ** 2 + (bx - 5.0) ** 2) / 200.0)[None]
    score = score + 1e-3 * torch.rand(1, big_h, big_w, generator=torch.Generator().manual_seed(0))
    probs = torch.full((1, 2, big_h, big_w), 0.5)
    kw = dict(score=score, alpha=20)
    kc = select_pixels(probs, feats, None, 12, sampler=KCenterGreedy(), **kw)
    so = select_pixels(probs, feats, None, 12, sampler=None, **kw)
    cand = top_candidates(score, 12 * 20)[0]
    cy, cx = cand // big_w, cand % big_w

    def covering_radius(mask):
        py, px = mask[0].nonzero(as_tuple=True)
        d2 = (cy[:, None] - py[None]) ** 2 + (cx[:, None] - px[None]) ** 2
        return float(d2.min(1).values.max().float().sqrt())

    def mean_pair_dist(mask):
        p = mask[0].nonzero().float()
        return float(torch.cdist(p, p).sum() / (len(p) * (len(p) - 1)))

    assert covering_radius(kc) < 0.6 * covering_radius(so)
    assert mean_pair_dist(kc) > 1.5 * mean_pair_dist(so)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), budget=st.integers(0, 6), region=st.sampled_from([1, 3]),
       frac=st.floats(0.0, 0.6), kind=st.sampled_from(["density", "kcenter", "score"]))
def test_invariants_property(seed, budget, region, frac, kind):
    probs, feats, dens = _inputs(seed=seed, b=2, c=3, big=(9, 11), small=(3, 4), d=3)
    rng = np.random.default_rng(seed)
    labeled = torch.from_numpy(rng.random((2, 9, 11)) < frac)
    ignore = torch.from_numpy(rng.random((2, 9, 11)) < frac / 2)
    eligible = (~(labeled | ignore)).flatten(1).sum(1)
    sampler = {"density": DensityAwareGreedy(seed=seed), "kcenter": KCenterGreedy(),
               "score": None}[kind]
    args = (probs, feats, dens, budget)
    kw = dict(labeled=labeled, ignore=ignore, alpha=2, sampler=sampler, region_size=region)
    if (eligible < budget).any():
        with pytest.raises(ValueError, match="budget"):
            select_pixels(*args, **kw)
        return
    new = select_pixels(*args, **kw)
    assert not (new & (labeled | ignore)).any()
    n = new.flatten(1).sum(1)
    if region == 1:
        assert n.tolist() == [budget, budget]
    else:
        assert ((n >= budget) & (n <= 9 * budget)).all()
    assert torch.equal(new, select_pixels(*args, **kw))


class _Fixed:
    """A sampler that returns a fixed (possibly broken) selection."""

    def __init__(self, indices):
        self.indices = indices

    def select(self, features, budget, *, densities=None, labeled=None, labeled_features=None,
               labeled_densities=None, init=None):
        return Selection(torch.as_tensor(self.indices), torch.zeros(len(self.indices)))


@pytest.mark.parametrize("indices, words", [
    ([0, 1, 1], "repeated index"),
    ([0, 1, -1], "got -1"),
    ([0, 1, 99], "got 99"),
    ([0, 1], "shape (2,)"),
    ([0, 1, 2, 3], "shape (4,)"),
])
def test_sampler_output_is_checked(indices, words):
    probs, feats, dens = _inputs()
    with pytest.raises(ValueError, match="sampler _Fixed must return exactly 3 distinct") as e:
        select_pixels(probs, feats, dens, 3, alpha=4, sampler=_Fixed(indices))
    assert words in str(e.value)


def test_sampler_output_dtype_is_checked():
    probs, feats, dens = _inputs()
    with pytest.raises(TypeError, match="sampler _Fixed must return"):
        select_pixels(probs, feats, dens, 3, alpha=4, sampler=_Fixed([0.0, 1.0, 2.0]))


def test_every_sampler_takes_the_same_keywords():
    # the protocol: densities are passed to every sampler; KCenterGreedy ignores them
    probs, feats, dens = _inputs()
    a = select_pixels(probs, feats, dens, 4, alpha=3, sampler=KCenterGreedy())
    b = select_pixels(probs, feats, None, 4, alpha=3, sampler=KCenterGreedy())
    assert torch.equal(a, b)
    x = torch.randn(30, 3)
    d = torch.rand(30) + 0.5
    for s in (KCenterGreedy(), DensityAwareGreedy()):
        sel = s.select(x, 3, densities=d, labeled=[0], labeled_features=x[:2] + 1,
                       labeled_densities=d[:2], init=None)
        assert len(sel) == 3


@pytest.mark.parametrize("make", [KCenterGreedy, DensityAwareGreedy])
def test_images_selected_at_once_equal_one_image_at_a_time(monkeypatch, make):
    import densecore.batch as B
    from densecore._backends import threads

    g = torch.Generator().manual_seed(5)
    probs = torch.softmax(torch.randn(5, 4, 32, 32, generator=g), 1)
    feats = torch.randn(5, 8, 8, 8, generator=g)
    feats[:, :, :2] = feats[:, :, 2:4]  # duplicate feature rows: ties
    dens = torch.rand(5, 8, 8, generator=g) + 0.5
    labeled = torch.zeros(5, 32, 32, dtype=torch.bool)
    labeled[1, :4] = True
    calls = []
    real = B.farthest_first_batch

    def spy(features, lengths, budgets, **kw):
        calls.append(len(lengths))
        return real(features, lengths, budgets, **kw)

    monkeypatch.setattr(B, "_workers", lambda jobs: min(len(jobs), 2))
    monkeypatch.setattr("densecore.samplers.paper.farthest_first_batch", spy)
    got, seen = select_pixels(probs, feats, dens, 20, labeled=labeled, alpha=8,
                              sampler=make(seed=3), return_candidates=True)
    assert calls == [5]  # all images in one batched call, on two threads
    with threads(1):
        for b in range(5):
            one = select_pixels(probs[b:b + 1], feats[b:b + 1], dens[b:b + 1], 20,
                                labeled=labeled[b:b + 1], alpha=8, sampler=make(seed=3))
            assert torch.equal(got[b], one[0])
    assert [s.selected.numel() for s in seen] == [20] * 5


def test_other_samplers_select_image_by_image():
    from densecore import KMedoidsRefinement

    class Spy(KMedoidsRefinement):
        calls = 0

        def select(self, *a, **kw):
            Spy.calls += 1
            return super().select(*a, **kw)

    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(3, 4, 16, 16, generator=g), 1)
    feats = torch.randn(3, 8, 4, 4, generator=g)
    dens = torch.rand(3, 4, 4, generator=g) + 0.5
    got = select_pixels(probs, feats, dens, 4, alpha=3, sampler=Spy(seed=0))
    assert Spy.calls == 3 and got.sum((1, 2)).tolist() == [4, 4, 4]
