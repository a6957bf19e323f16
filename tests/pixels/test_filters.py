"""Candidate scores against numpy definitions, top_candidates, and Eq. 6 against a loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from densecore import CategoryMarginLoss
from densecore.filters import (category_margin_loss, entropy_score, least_confidence_score,
                               margin_score, random_score, top_candidates)


def _probs(rng, shape, axis=-3):
    z = rng.normal(size=shape) * 2
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float64)


# numpy definitions, written per pixel from the formulas
def margin_ref(p):
    s = np.sort(p, axis=-3)
    return 1.0 - s[..., -1, :, :] + s[..., -2, :, :]


def entropy_ref(p):
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(p > 0, p * np.log(p), 0.0)
    return -t.sum(-3)


def least_conf_ref(p):
    return 1.0 - p.max(-3)


@pytest.mark.parametrize("fn,ref", [(margin_score, margin_ref), (entropy_score, entropy_ref),
                                    (least_confidence_score, least_conf_ref)])
@pytest.mark.parametrize("shape", [(2, 5, 4, 6), (3, 7, 5)])
def test_scores_match_numpy(fn, ref, shape, rng, device):
    p = _probs(rng, shape)
    p[..., 0, 0, 0] = 0.0  # exercise 0 log 0
    p[..., 1, 0, 0] = 0.0
    p[..., 2, 0, 0] = 1.0 - p[..., 3:, 0, 0].sum(-1)
    got = fn(torch.from_numpy(p).to(device))
    assert got.device.type == device.type
    assert got.shape == shape[:-3] + shape[-2:]
    np.testing.assert_allclose(got.cpu().numpy(), ref(p), rtol=1e-12, atol=1e-12)
    # numpy in, numpy out
    np.testing.assert_allclose(fn(p), ref(p), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fn", [margin_score, entropy_score, least_confidence_score])
def test_from_logits_is_explicit(fn, rng):
    z = torch.from_numpy(rng.normal(size=(2, 4, 3, 3)) * 3)
    with pytest.raises(ValueError, match="from_logits=True"):
        fn(z)
    np.testing.assert_allclose(fn(z, from_logits=True), fn(torch.softmax(z, 1)), atol=1e-12)


def test_margin_needs_two_classes():
    with pytest.raises(ValueError, match="C >= 2"):
        margin_score(torch.ones(1, 1, 2, 2))


def test_margin_known_values():
    p = torch.tensor([[[0.5, 0.98]], [[0.5, 0.01]], [[0.0, 0.01]]])  # (3, 1, 2)
    np.testing.assert_allclose(margin_score(p).numpy(), [[1.0, 0.03]], atol=1e-6)


def test_random_score_seeded_and_local(device):
    state = torch.random.get_rng_state()
    a = random_score((2, 5, 7), seed=3, device=device)
    b = random_score((2, 5, 7), seed=3, device=device)
    c = random_score((2, 5, 7), seed=4, device=device)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.device.type == device.type and ((a >= 0) & (a < 1)).all()
    assert torch.equal(state, torch.random.get_rng_state())


def top_ref(scores, k, exclude=None):
    """Stable descending order on float32 scores, excluded dropped, -1 padded."""
    b = scores.shape[0]
    s = scores.reshape(b, -1).astype(np.float32)
    ex = np.zeros_like(s, bool) if exclude is None else exclude.reshape(b, -1)
    out = np.full((b, k), -1, np.int64)
    for i in range(b):
        order = [j for j in sorted(range(s.shape[1]), key=lambda j: (-s[i, j], j))
                 if not ex[i, j]]
        out[i, :min(k, len(order))] = order[:k]
    return out


@pytest.mark.parametrize("k", [0, 1, 7, 30, 50])
def test_top_candidates_exact_with_ties_and_exclusion(k, rng, device):
    s = rng.integers(0, 5, size=(3, 5, 8)).astype(np.float32) / 4  # many ties
    s[0, 0, 0] = -0.0
    s[0, 0, 1] = -0.5  # negative scores rank below zero
    ex = rng.random((3, 5, 8)) < 0.3
    ex[2] = True
    ex[2, 1, 1] = False  # one eligible pixel
    got = top_candidates(torch.from_numpy(s).to(device), k,
                         torch.from_numpy(ex).to(device))
    assert got.dtype == torch.int64 and got.shape == (3, k)
    np.testing.assert_array_equal(got.cpu().numpy(), top_ref(s, k, ex))
    flat_ex = ex.reshape(3, -1)
    for i in range(3):
        row = got[i].cpu().numpy()
        assert not flat_ex[i, row[row >= 0]].any()


def test_top_candidates_without_exclude_and_numpy(rng):
    s = rng.normal(size=(2, 6, 6))
    got = top_candidates(s, 10)
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got, top_ref(s, 10))
    np.testing.assert_array_equal(top_candidates(s, 40)[:, 36:], -1)


def test_top_candidates_rejects_nan_and_bad_exclude():
    s = torch.zeros(1, 2, 2)
    s[0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        top_candidates(s, 1)
    with pytest.raises(ValueError, match="exclude must have shape"):
        top_candidates(torch.zeros(1, 2, 2), 1, torch.zeros(1, 2, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="exclude must be a bool"):
        top_candidates(torch.zeros(1, 2, 2), 1, torch.zeros(1, 2, 2))


def margin_loss_loop(p, y, m, ignore_index):
    """Eq. 6 per pixel: sum over c != y of max(0, m - P_y + P_c)."""
    b, c, h, w = p.shape
    out = np.zeros((b, h, w))
    for bi in range(b):
        for i in range(h):
            for j in range(w):
                t = y[bi, i, j]
                if t == ignore_index:
                    continue
                out[bi, i, j] = sum(max(0.0, m - p[bi, t, i, j] + p[bi, cc, i, j])
                                    for cc in range(c) if cc != t)
    return out


@pytest.mark.parametrize("m", [1.0, 0.3])
def test_category_margin_loss_matches_loop(m, rng, device):
    p = _probs(rng, (2, 4, 3, 5), axis=1)
    y = rng.integers(0, 4, size=(2, 3, 5))
    y[0, 0, :2] = 255
    ref = margin_loss_loop(p, y, m, 255)
    pt, yt = torch.from_numpy(p).to(device), torch.from_numpy(y).to(device)
    none = category_margin_loss(pt, yt, margin=m, reduction="none")
    np.testing.assert_allclose(none.cpu().numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(float(category_margin_loss(pt, yt, margin=m, reduction="sum")),
                               ref.sum(), atol=1e-10)
    np.testing.assert_allclose(float(category_margin_loss(pt, yt, margin=m)),
                               ref.sum() / (y != 255).sum(), atol=1e-12)
    if m < 1:  # the hinge is active somewhere, so the loss is not C (1 - P_y)
        assert (ref == 0).sum() > (y == 255).sum()


def test_margin_loss_module_agrees_with_function_and_backprops(rng):
    z = torch.from_numpy(rng.normal(size=(2, 3, 4, 4))).requires_grad_(True)
    y = torch.from_numpy(rng.integers(0, 3, size=(2, 4, 4)))
    mod = CategoryMarginLoss(margin=0.5, reduction="sum", from_logits=True)
    out = mod(z, y)
    ref = margin_loss_loop(torch.softmax(z, 1).detach().numpy(), y.numpy(), 0.5, 255).sum()
    np.testing.assert_allclose(out.item(), ref, atol=1e-10)
    out.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_margin_loss_all_ignored_mean_is_zero_and_bad_reduction():
    p = torch.full((1, 2, 2, 2), 0.5)
    y = torch.full((1, 2, 2), 255)
    assert float(category_margin_loss(p, y)) == 0.0
    with pytest.raises(ValueError, match="reduction"):
        CategoryMarginLoss(reduction="avg")
    with pytest.raises(ValueError, match="target must have shape"):
        category_margin_loss(p, torch.zeros(1, 2, 3, dtype=torch.long))


@pytest.mark.parametrize("bad", [5, -1])
def test_margin_loss_target_out_of_range_names_target(bad):
    p = torch.softmax(torch.randn(1, 5, 2, 2), 1)
    y = torch.zeros(1, 2, 2, dtype=torch.long)
    y[0, 1, 1] = bad
    with pytest.raises(ValueError, match=r"target must hold class ids in \[0, 5\)"):
        CategoryMarginLoss()(p, y)
    y[0, 1, 1] = 255  # ignore_index stays allowed
    assert torch.isfinite(CategoryMarginLoss()(p, y))


@pytest.mark.parametrize("margin", [float("nan"), float("inf"), -0.5])
def test_margin_loss_rejects_bad_margins(margin):
    with pytest.raises(ValueError, match="margin must be"):
        CategoryMarginLoss(margin=margin)
    p = torch.softmax(torch.randn(1, 3, 2, 2), 1)
    with pytest.raises(ValueError, match="margin must be"):
        category_margin_loss(p, torch.zeros(1, 2, 2, dtype=torch.long), margin=margin)


@pytest.mark.parametrize("classes", [2, 3, 19])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_margin_equals_the_topk_margin_with_ties(classes, dtype):
    g = torch.Generator().manual_seed(classes)
    p = torch.softmax(torch.randn(2, classes, 9, 7, generator=g, dtype=torch.float64), 1)
    p[0, :, 0, 0] = 1.0 / classes  # every class ties
    p[1, :, 1, 1] = 0.0
    p[1, 0, 1, 1] = p[1, classes - 1, 1, 1] = 0.5  # the top two tie, first and last class
    p = p.to(dtype)
    top = torch.topk(p, 2, dim=1).values
    want = 1.0 - top[:, 0] + top[:, 1]
    got = margin_score(p)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert float(got[0, 0, 0]) == 1.0 and float(got[1, 1, 1]) == 1.0
    torch.testing.assert_close(margin_score(p[0]), want[0], rtol=0, atol=0)  # (C, H, W)


def test_margin_of_probs_with_grad_warns_nothing_and_keeps_the_graph():
    import warnings

    p = torch.softmax(torch.randn(2, 5, 4, 4, generator=torch.Generator().manual_seed(0)),
                      1).requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = margin_score(p)
    s.sum().backward()
    assert p.grad is not None and float(p.grad.abs().sum()) > 0
