"""RIPU's scores and selection against naive per-pixel and per-pick references."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import densecore
from densecore import regions
from densecore.budgets import region_budget
from densecore.filters import (prediction_uncertainty, region_impurity, ripu_score,
                               top_candidates)
from densecore.regions import ripu_select


# --- naive references -------------------------------------------------------------------

def naive_scores(probs, k, ignore=None):
    """Per pixel, in float64 with nested loops: (impurity, mean entropy, own entropy)."""
    p = probs.double().numpy()
    b, c, h, w = p.shape
    ign = np.zeros((b, h, w), bool) if ignore is None else ignore.numpy()
    pred = np.zeros((b, h, w), int)
    ent = np.zeros((b, h, w))
    for i in range(b):
        for y in range(h):
            for x in range(w):
                v = p[i, :, y, x]
                best = 0
                for cc in range(1, c):  # the lowest class on ties
                    if v[cc] > v[best]:
                        best = cc
                pred[i, y, x] = best
                ent[i, y, x] = -sum(q * math.log(q) for q in v if q > 0)
    imp = np.zeros((b, h, w))
    unc = np.zeros((b, h, w))
    for i in range(b):
        for y in range(h):
            for x in range(w):
                hist = np.zeros(c)
                total, n = 0.0, 0
                for yy in range(y - k, y + k + 1):
                    for xx in range(x - k, x + k + 1):
                        if 0 <= yy < h and 0 <= xx < w and not ign[i, yy, xx]:
                            hist[pred[i, yy, xx]] += 1
                            total += ent[i, yy, xx]
                            n += 1
                if n:
                    imp[i, y, x] = -sum(q / n * math.log(q / n) for q in hist if q > 0)
                    unc[i, y, x] = total / n
    own = np.where(ign, 0.0, ent)
    return imp, unc, own


def naive_ripu_select(scores, budget, mode, k, active=None, ignore=None):
    """RIPU's loop, one pick at a time: the best live pixel (ties to the lowest flat
    index), label its block (or the pixel), suppress the window, repeat.

    ``active`` is RIPU's map of pixels that cannot be centres (kept across rounds;
    updated in place with the suppressed windows). Returns (mask, centres).
    """
    s = scores.float().numpy()
    b, h, w = s.shape
    ign = np.zeros((b, h, w), bool) if ignore is None else ignore.numpy()
    act = np.zeros((b, h, w), bool) if active is None else active
    mask = np.zeros((b, h, w), bool)
    centres = np.zeros((b, budget), np.int64)
    reach = 2 * k if mode == "region" else k
    for i in range(b):
        for t in range(budget):
            best = None
            for y in range(h):
                for x in range(w):
                    if act[i, y, x] or ign[i, y, x]:
                        continue
                    if best is None or s[i, y, x] > s[i, best[0], best[1]]:
                        best = (y, x)
            if best is None:
                raise ValueError("budget: the reference ran out of centres")
            y, x = best
            centres[i, t] = y * w + x
            act[i, max(0, y - reach):y + reach + 1, max(0, x - reach):x + reach + 1] = True
            if mode == "region":
                mask[i, max(0, y - k):y + k + 1, max(0, x - k):x + k + 1] = True
            else:
                mask[i, y, x] = True
    return mask & ~ign, centres


def make_probs(b, c, h, w, seed, ties=False, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, h, w, generator=g) * scale
    if ties:  # whole pixels with two equal top classes, and blocks of one class
        logits = logits.round()
        logits[:, 1] = torch.where(torch.rand(b, h, w, generator=g) < 0.3, logits[:, 0],
                                   logits[:, 1])
        logits[:, :, : h // 2, : w // 2] = logits[:, :, :1, :1]
    return torch.softmax(logits, 1)


# --- scores ------------------------------------------------------------------------------

@pytest.mark.parametrize("c", [2, 3, 19])
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("ties", [False, True])
def test_scores_match_the_naive_reference(c, k, ties):
    probs = make_probs(2, c, 6, 7, seed=c + 10 * k, ties=ties)
    imp, unc, own = naive_scores(probs, k)
    np.testing.assert_allclose(region_impurity(probs, k).numpy(), imp, atol=2e-6)
    np.testing.assert_allclose(prediction_uncertainty(probs, k).numpy(), unc, atol=2e-6)
    np.testing.assert_allclose(ripu_score(probs, k).numpy(), imp * unc, atol=5e-6)
    np.testing.assert_allclose(ripu_score(probs, k, mode="pixel").numpy(), imp * own, atol=5e-6)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_scores_with_ignore_pixels_and_windows_larger_than_the_image(k):
    probs = make_probs(2, 3, 4, 5, seed=7, ties=True)
    g = torch.Generator().manual_seed(3)
    ignore = torch.rand(2, 4, 5, generator=g) < 0.4
    ignore[1] = True
    ignore[1, 0, 0] = False  # image 1: one counted pixel
    imp, unc, own = naive_scores(probs, k, ignore)
    np.testing.assert_allclose(region_impurity(probs, k, ignore=ignore).numpy(), imp, atol=2e-6)
    np.testing.assert_allclose(prediction_uncertainty(probs, k, ignore=ignore).numpy(), unc,
                               atol=2e-6)
    np.testing.assert_allclose(ripu_score(probs, k, mode="pixel", ignore=ignore).numpy(),
                               imp * own, atol=5e-6)
    # a window holding only ignored pixels scores 0; image 1 has one pure window class
    assert (region_impurity(probs, k, ignore=ignore)[1] == 0).all()


def test_border_pixels_average_over_the_clipped_window_only():
    # class 0 everywhere but the corner; the corner's 3x3 window holds 4 in-image pixels
    p = torch.zeros(1, 2, 5, 5)
    p[0, 0] = 1.0
    p[0, :, 0, 0] = torch.tensor([0.0, 1.0])
    imp = region_impurity(p, 1)[0]
    assert imp[0, 0].item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    assert imp[1, 1].item() == pytest.approx(-(1 / 9 * math.log(1 / 9) + 8 / 9 * math.log(8 / 9)))
    assert imp[2, 2].item() == 0.0 and imp[4, 4].item() == 0.0


def test_pure_regions_score_exactly_zero_and_k0_is_the_pixel_entropy():
    probs = make_probs(1, 4, 6, 6, seed=0, ties=True)
    assert region_impurity(probs, 0).abs().max().item() == 0.0
    ent = densecore.filters.entropy_score(probs)
    assert torch.allclose(prediction_uncertainty(probs, 0), ent, atol=1e-7)
    pure = torch.zeros(1, 3, 4, 4)
    pure[0, 2] = 1.0
    assert ripu_score(pure, 1).abs().max().item() == 0.0


def test_score_input_forms_agree():
    probs = make_probs(2, 5, 6, 8, seed=2)
    ref = ripu_score(probs, 1)
    assert torch.equal(ripu_score(probs[0], 1), ref[0])  # (C, H, W)
    np.testing.assert_array_equal(ripu_score(probs.numpy(), 1), ref.numpy())  # numpy
    assert torch.allclose(ripu_score(probs.log(), 1, from_logits=True), ref, atol=1e-6)
    half = ripu_score(probs.half(), 1)
    assert half.dtype == torch.float16
    assert torch.allclose(half.float(), ref, atol=5e-3)
    double = ripu_score(probs.double(), 1)
    assert double.dtype == torch.float64 and torch.allclose(double.float(), ref, atol=1e-6)


def test_score_bad_input_raises_naming_the_argument():
    probs = make_probs(1, 3, 4, 4, seed=0)
    with pytest.raises(ValueError, match="k"):
        ripu_score(probs, -1)
    with pytest.raises(TypeError, match="k"):
        ripu_score(probs, 1.5)
    with pytest.raises(ValueError, match="mode"):
        ripu_score(probs, 1, mode="block")
    with pytest.raises(ValueError, match="ignore"):
        region_impurity(probs, 1, ignore=torch.zeros(1, 4, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="ignore"):
        region_impurity(probs, 1, ignore=torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="from_logits"):
        ripu_score(probs * 3, 1)


def test_scores_on_each_device(device):
    probs = make_probs(2, 19, 9, 11, seed=5)
    ignore = torch.rand(2, 9, 11, generator=torch.Generator().manual_seed(1)) < 0.2
    imp, unc, _ = naive_scores(probs, 2, ignore)
    got = ripu_score(probs.to(device), 2, ignore=ignore.to(device))
    assert got.device.type == device.type
    np.testing.assert_allclose(got.cpu().numpy(), imp * unc, atol=5e-6)


# --- selection -----------------------------------------------------------------------------

def tied_scores(b, h, w, seed, levels=5):
    """float32 scores on a few levels: many exact ties."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, levels, (b, h, w), generator=g).float() / levels


@pytest.mark.parametrize("mode", ["region", "pixel"])
@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize("seed", [0, 1])
def test_ripu_select_matches_the_naive_loop(mode, k, seed):
    scores = tied_scores(3, 13, 17, seed) if seed == 0 else ripu_score(
        make_probs(3, 4, 13, 17, seed=seed), 1)
    g = torch.Generator().manual_seed(seed + 100)
    ignore = torch.rand(3, 13, 17, generator=g) < 0.15
    budget = 6 if mode == "region" and k == 2 else 9
    want_mask, want_centres = naive_ripu_select(scores, budget, mode, k, ignore=ignore)
    mask, centres = ripu_select(scores, budget, mode=mode, k=k, ignore=ignore,
                                return_centres=True)
    np.testing.assert_array_equal(centres.numpy(), want_centres)
    np.testing.assert_array_equal(mask.numpy(), want_mask)


@pytest.mark.parametrize("mode", ["region", "pixel"])
def test_a_second_round_matches_ripus_active_map(mode):
    """``labeled`` = what RIPU's earlier round selected reproduces its ``active`` map."""
    scores1 = ripu_score(make_probs(2, 5, 16, 20, seed=3), 1)
    scores2 = ripu_score(make_probs(2, 5, 16, 20, seed=4), 1)
    active = np.zeros((2, 16, 20), bool)
    ref1, _ = naive_ripu_select(scores1, 7, mode, 1, active=active)
    ref2, ref_c2 = naive_ripu_select(scores2, 7, mode, 1, active=active)
    got1 = ripu_select(scores1, 7, mode=mode, k=1)
    np.testing.assert_array_equal(got1.numpy(), ref1)
    got2, c2 = ripu_select(scores2, 7, mode=mode, k=1, labeled=got1, return_centres=True)
    np.testing.assert_array_equal(c2.numpy(), ref_c2)
    np.testing.assert_array_equal(got2.numpy(), ref2)
    assert not (got1 & got2).any()


@given(h=st.integers(1, 9), w=st.integers(1, 9), k=st.integers(0, 2),
       mode=st.sampled_from(["region", "pixel"]), levels=st.integers(1, 4),
       seed=st.integers(0, 2**16), extra=st.integers(0, 3))
def test_ripu_select_matches_the_naive_loop_on_any_shape(h, w, k, mode, levels, seed, extra):
    scores = tied_scores(2, h, w, seed, levels)
    g = torch.Generator().manual_seed(seed)
    ignore = torch.rand(2, h, w, generator=g) < 0.2
    labeled = torch.rand(2, h, w, generator=g) < 0.1
    active = (torch.nn.functional.max_pool2d(labeled[:, None].float(), 2 * k + 1, 1, k)[:, 0]
              > 0).numpy()
    # the most centres the rule leaves in both images, found by the reference itself
    most = 0
    while True:
        try:
            naive_ripu_select(scores, most + 1, mode, k, active=active.copy(), ignore=ignore)
        except ValueError:
            break
        most += 1
    budget = max(0, most - extra)
    want_mask, want_centres = naive_ripu_select(scores, budget, mode, k, active=active.copy(),
                                                ignore=ignore)
    mask, centres = ripu_select(scores, budget, mode=mode, k=k, labeled=labeled,
                                ignore=ignore, return_centres=True)
    np.testing.assert_array_equal(centres.numpy(), want_centres)
    np.testing.assert_array_equal(mask.numpy(), want_mask)
    with pytest.raises(ValueError, match="budget"):
        ripu_select(scores, most + 1, mode=mode, k=k, labeled=labeled, ignore=ignore)


def test_ripu_select_ranks_a_few_times_not_once_per_pick(monkeypatch):
    calls = []
    real = regions.top_candidates

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(regions, "top_candidates", counting)
    scores = ripu_score(make_probs(1, 6, 96, 128, seed=0), 1)
    budget = region_budget((96, 128), 0.022, 1)
    mask, centres = ripu_select(scores, budget, k=1, return_centres=True)
    assert budget == 31 and len(calls) <= 4, calls
    want_mask, want_centres = naive_ripu_select(scores, budget, "region", 1)
    np.testing.assert_array_equal(centres.numpy(), want_centres)
    # RIPU's region budget: disjoint 3x3 blocks, clipped only at the border
    assert mask.sum().item() <= budget * 9


def test_ripu_select_raises_when_the_rule_leaves_too_few_centres():
    scores = torch.rand(2, 5, 5, generator=torch.Generator().manual_seed(0))
    assert (ripu_select(scores, 1, k=2).sum((1, 2)) >= 9).all()  # a clipped 5x5 block
    with pytest.raises(ValueError, match="budget"):
        ripu_select(scores, 2, k=2)  # a 5x5 image holds one centre at reach 4
    with pytest.raises(ValueError, match="scores"):
        ripu_select(scores[0], 1)
    with pytest.raises(TypeError, match="scores"):
        ripu_select(scores.long(), 1)
    with pytest.raises(ValueError, match="mode"):
        ripu_select(scores, 1, mode="regions")
    with pytest.raises(ValueError, match="scores must not contain NaN"):
        ripu_select(scores.masked_fill(scores > 0.5, float("nan")), 1)


def test_ripu_select_numpy_in_numpy_out_and_on_each_device(device):
    scores = ripu_score(make_probs(2, 4, 12, 15, seed=8), 1)
    lab = torch.zeros(2, 12, 15, dtype=torch.bool)
    lab[:, 3:6, 3:6] = True
    ref_mask, ref_c = ripu_select(scores, 5, labeled=lab, return_centres=True)
    m, c = ripu_select(scores.numpy(), 5, labeled=lab.numpy(), return_centres=True)
    assert isinstance(m, np.ndarray) and isinstance(c, np.ndarray)
    np.testing.assert_array_equal(m, ref_mask.numpy())
    m, c = ripu_select(scores.to(device), 5, labeled=lab.to(device), return_centres=True)
    assert m.device.type == device.type
    np.testing.assert_array_equal(c.cpu().numpy(), ref_c.numpy())
    np.testing.assert_array_equal(m.cpu().numpy(), ref_mask.numpy())


# --- through select_pixels --------------------------------------------------------------

@pytest.mark.parametrize("region_size", [1, 3, 5])
def test_select_pixels_sampler_ripu_is_ripus_selection(region_size):
    probs = make_probs(2, 5, 20, 24, seed=region_size)
    g = torch.Generator().manual_seed(9)
    lab = torch.rand(2, 20, 24, generator=g) < 0.03
    ign = torch.rand(2, 20, 24, generator=g) < 0.05
    k = max(1, region_size // 2)
    mode = "region" if region_size > 1 else "pixel"
    want = ripu_select(ripu_score(probs, k, mode=mode), 4, mode=mode, k=k, labeled=lab,
                       ignore=ign)
    got, seen = densecore.select_pixels(probs, None, None, 4, sampler="ripu", score="ripu",
                                        region_size=region_size, labeled=lab, ignore=ign,
                                        return_candidates=True)
    assert torch.equal(got, want)
    assert [s.candidates.numel() for s in seen] == [4, 4]
    # the naive loop agrees, with RIPU's `active` map built from `labeled`
    active = (torch.nn.functional.max_pool2d(lab[:, None].float(), 2 * k + 1, 1, k)[:, 0]
              > 0).numpy()
    ref, _ = naive_ripu_select(ripu_score(probs, k, mode=mode), 4, mode, k, active=active,
                               ignore=ign)
    np.testing.assert_array_equal(got.numpy(), ref)


def test_select_pixels_blocked_score_only_ranking_equals_ripu_in_a_first_round():
    probs = make_probs(2, 6, 24, 30, seed=11)
    ign = torch.rand(2, 24, 30, generator=torch.Generator().manual_seed(2)) < 0.05
    a = densecore.select_pixels(probs, None, None, 8, sampler=None, score="ripu",
                                region_size=3, region_overlap="block", ignore=ign)
    b = densecore.select_pixels(probs, None, None, 8, sampler="ripu", score="ripu",
                                region_size=3, ignore=ign)
    assert torch.equal(a, b)


@pytest.mark.parametrize("sampler", ["kcenter", "density_aware", "refinement"])
def test_hybrid_ripu_candidates_then_a_greedy_sampler(sampler):
    g = torch.Generator().manual_seed(0)
    probs = make_probs(2, 5, 16, 20, seed=12)
    feats = torch.randn(2, 8, 4, 5, generator=g)
    dens = torch.rand(2, 4, 5, generator=g) + 0.5
    lab = torch.zeros(2, 16, 20, dtype=torch.bool)
    lab[:, :2] = True
    obj = {"kcenter": densecore.KCenterGreedy(seed=0),
           "density_aware": densecore.DensityAwareGreedy(seed=0),
           "refinement": densecore.KMedoidsRefinement(seed=0)}[sampler]
    mask, seen = densecore.select_pixels(probs, feats, dens, 6, sampler=obj, score="ripu",
                                         alpha=4, labeled=lab, return_candidates=True)
    want = top_candidates(ripu_score(probs, 1, mode="pixel"), 24, lab)
    for b in range(2):
        assert torch.equal(seen[b].candidates, want[b])
        picked = seen[b].candidates[seen[b].selected]
        assert torch.equal(mask[b].reshape(-1).nonzero()[:, 0].sort().values,
                           picked.sort().values)
    assert mask.sum((1, 2)).tolist() == [6, 6] and not (mask & lab).any()


def test_select_pixels_rejects_an_unknown_sampler_name():
    probs = make_probs(1, 3, 6, 6, seed=0)
    with pytest.raises(ValueError, match="sampler"):
        densecore.select_pixels(probs, None, None, 2, sampler="kcenter")
    with pytest.raises(ValueError, match="ripu"):
        densecore.select_pixels(probs, None, None, 2, sampler=None, score="ripus")


def test_the_benchmark_rows_of_ripu_and_a_hybrid_run_at_a_tiny_size():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "benchmarks"))
    try:
        import select_pixels as bench
    finally:
        sys.path.pop(0)
    rows = bench.run((32, 64), 8, 5, 8, 18, 2, 0, ["ripu", "ripu_pixel", "ripu+density_aware"],
                     ["cpu"], 0)
    by = {r["sampler"]: r for r in rows}
    assert by["ripu"]["budget"] == 2 and 8 <= by["ripu"]["picks"] <= 18
    assert by["ripu_pixel"]["picks"] == 18
    assert by["ripu+density_aware"]["candidates"] == 36 and by["ripu+density_aware"]["picks"] == 18
