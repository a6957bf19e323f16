"""DMC border rule, small images, NaN errors, target checks, rank normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from densecore import DMCEstimator, MaskedConvEstimator, coverage_density
from densecore.density.functional import dynamic_masked_conv, in_image_taps


def dmc_naive(f, m, w):
    """Eq. 7 with zero padding, one output pixel at a time, float64."""
    b, d, h, wd = f.shape
    k = w.shape[-1]
    p = k // 2
    out = torch.zeros(b, w.shape[0], h, wd, dtype=torch.float64)
    for i in range(h):
        for j in range(wd):
            for a in range(k):
                for c in range(k):
                    y, x = i + a - p, j + c - p
                    if 0 <= y < h and 0 <= x < wd:
                        out[:, :, i, j] += m[:, a * k + c, i, j, None] * (
                            w[:, :, a, c].double() @ f[:, :, y, x].double().T).T
    return out


@pytest.mark.parametrize("hw", [(2, 3), (3, 2), (2, 2), (1, 5)])
@pytest.mark.parametrize("k", [5, 7])
def test_window_larger_than_image_matches_naive(hw, k):
    g = torch.Generator().manual_seed(0)
    h, w = hw
    f = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    m = torch.rand(2, k * k, h, w, generator=g, dtype=torch.float64)
    wt = torch.randn(4, 3, k, k, generator=g, dtype=torch.float64)
    torch.testing.assert_close(dynamic_masked_conv(f, m, wt), dmc_naive(f, m, wt))
    # gradients flow on the small image too
    f.requires_grad_(True)
    dynamic_masked_conv(f, m, wt).sum().backward()
    assert torch.isfinite(f.grad).all()


def test_in_image_taps_counts():
    t = in_image_taps(5, 2, 3)
    assert t.shape == (25, 2, 3)
    # pixel (0, 0) of a 2 x 3 image sees rows 0-1 and columns 0-2 of the window
    assert int(t[:, 0, 0].sum()) == 2 * 3
    assert bool(t[12].all())  # the centre tap is always inside


@pytest.mark.parametrize("border", ["renormalize", "zero"])
def test_estimator_on_image_smaller_than_kernel(border):
    est = DMCEstimator(4, dim=3, kernel_size=7, num_classes=2, border=border)
    out = est(torch.randn(1, 4, 2, 3))
    assert torch.isfinite(out.error).all()
    torch.testing.assert_close(out.mask.sum(1), torch.ones(1, 2, 3))
    if border == "renormalize":
        assert bool((out.mask[0][~in_image_taps(7, 2, 3)] == 0).all())
    with pytest.raises(ValueError, match="features must have at least 2 pixels"):
        est(torch.randn(1, 4, 1, 1))


def test_renormalized_border_has_no_bias_on_a_constant_map():
    # every neighbour equals the centre and W is the same for every tap: a convex
    # combination of real neighbours rebuilds the same value at every pixel, while
    # zero padding loses the out-of-image weight at the border
    x = torch.ones(1, 4, 9, 9)
    errs = {}
    for border in ("renormalize", "zero"):
        torch.manual_seed(0)
        est = DMCEstimator(4, dim=3, kernel_size=5, num_classes=2, border=border)
        with torch.no_grad():
            est.weight.copy_(est.weight[:, :, :1, :1].expand_as(est.weight))
            e = est(x).error[0]
        errs[border] = (e[0, 0] - e[4, 4]).abs().item()
    assert errs["renormalize"] < 1e-5 * max(1.0, errs["zero"])
    assert errs["zero"] > 1e-3


def test_nan_error_raises_instead_of_beta():
    e = torch.rand(2, 4, 4)
    e[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"error must be finite; got nan at index \(1, 2, 3\)"):
        coverage_density(e, dims=(1, 2))
    est = DMCEstimator(4, dim=3, kernel_size=3, num_classes=2)
    x = torch.randn(1, 4, 5, 5)
    x[0, :, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="error must be finite"):
        est.density(est(x))


@pytest.mark.parametrize("cls", [DMCEstimator, MaskedConvEstimator])
def test_loss_rejects_targets_out_of_range(cls):
    est = cls(4, dim=3, kernel_size=3, num_classes=3)
    out = est(torch.randn(1, 4, 5, 5))
    t = torch.full((1, 5, 5), 255, dtype=torch.int64)
    t[0, 1, 2] = 1
    assert torch.isfinite(est.loss(out, t))
    t[0, 3, 4] = 3
    with pytest.raises(ValueError, match=r"target must hold class ids in \[0, 3\).*got 3 at "
                                         r"\(image 0, row 3, column 4\)"):
        est.loss(out, t)
    t[0, 3, 4] = -1
    with pytest.raises(ValueError, match="got -1"):
        est.loss(out, t)


def test_rank_normalization():
    g = np.random.default_rng(0)
    e = g.gamma(1.0, size=(2, 6, 7))
    d = coverage_density(e, beta=1.0, tau=1.0, dims=(1, 2), normalize="rank")
    for b in range(2):
        v = e[b].ravel()
        ref = np.argsort(np.argsort(v)) / (v.size - 1)  # no ties in continuous data
        np.testing.assert_allclose(-np.log(d[b].ravel()), ref, atol=1e-12)
    # invariant to a monotone transform of the error, unlike min-max
    d2 = coverage_density(np.exp(3 * e), beta=1.0, tau=1.0, dims=(1, 2), normalize="rank")
    np.testing.assert_allclose(d, d2)
    # ties share their mid-rank
    t = coverage_density(np.array([1.0, 1.0, 2.0]), beta=1.0, tau=1.0, normalize="rank")
    np.testing.assert_allclose(-np.log(t), [0.25, 0.25, 1.0])
    with pytest.raises(ValueError, match="normalize"):
        coverage_density(e, normalize="zscore")
    est = DMCEstimator(4, dim=3, kernel_size=3, num_classes=2, normalize="rank")
    dens = est.density(est(torch.randn(1, 4, 6, 6)))
    assert dens.shape == (1, 6, 6) and float(dens.max()) == pytest.approx(est.beta)
