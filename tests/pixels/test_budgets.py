"""Label budgets per image per round against RIPU's numbers and a plain-float reference."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from densecore import pixel_budget, region_budget

CITYSCAPES = (1024, 2048)


def test_ripu_numbers():
    # 2.2 % over 5 rounds with 3x3 regions: ceil(2097152 * 0.022 / 5 / 9) = ceil(1025.27)
    assert region_budget(CITYSCAPES, 0.022, 5) == 1026
    assert region_budget(CITYSCAPES, 0.022, 5, region_size=3) == 1026
    # 5 % (the DeepLab-V3+ setting)
    assert region_budget(CITYSCAPES, 0.05, 5) == 2331
    # 40 pixels at 640x1280 over 5 rounds: ceil(8 * 2.56) = ceil(20.48)
    assert pixel_budget(CITYSCAPES, 40, 5) == 21
    assert pixel_budget(CITYSCAPES, 40, 5, train_shape=(640, 1280)) == 21
    # the whole budget in one round, at the training size: exactly the pixels
    assert pixel_budget((640, 1280), 40, 1) == 40
    assert region_budget(CITYSCAPES, 0.022, 1, region_size=1) == math.ceil(2097152 * 0.022)


def test_exact_where_floats_round_up_wrongly():
    # 10 * 10 * 0.07 is 7 exactly, but 7.000000000000001 in floats
    assert 10 * 10 * 0.07 > 7
    assert math.ceil(10 * 10 * 0.07) == 8
    assert region_budget((10, 10), 0.07, 1, region_size=1) == 7
    assert region_budget((10, 10), Fraction(7, 100), 1, region_size=1) == 7
    assert region_budget((10, 10), 1, 1, region_size=1) == 100


def reference_region(shape, ratio, rounds, region_size):
    """Slow, obvious: count the pixel quota with exact decimals and round up."""
    quota = Fraction(shape[0] * shape[1]) * Fraction(str(ratio)) / rounds
    regions = quota / region_size ** 2
    n = int(regions)
    return n if n == regions else n + 1


@settings(max_examples=200, deadline=None)
@given(h=st.integers(1, 3000), w=st.integers(1, 3000),
       ratio=st.sampled_from([0.001, 0.01, 0.022, 0.05, 0.1, 0.25, 0.5, 1.0]),
       rounds=st.integers(1, 10), region_size=st.integers(1, 9))
def test_region_budget_matches_reference(h, w, ratio, rounds, region_size):
    got = region_budget((h, w), ratio, rounds, region_size)
    assert got == reference_region((h, w), ratio, rounds, region_size)
    # enough regions for the quota, and one fewer would not be
    quota = Fraction(h * w) * Fraction(str(ratio)) / rounds
    assert got * region_size ** 2 >= quota > (got - 1) * region_size ** 2


@settings(max_examples=200, deadline=None)
@given(h=st.integers(1, 3000), w=st.integers(1, 3000), pixels=st.integers(1, 1000),
       rounds=st.integers(1, 10), th=st.integers(1, 2000), tw=st.integers(1, 2000))
def test_pixel_budget_matches_integer_reference(h, w, pixels, rounds, th, tw):
    num, den = pixels * h * w, rounds * th * tw
    assert pixel_budget((h, w), pixels, rounds, (th, tw)) == -(-num // den)


@pytest.mark.parametrize("call, err, match", [
    (lambda: region_budget((1024,), 0.02, 5), ValueError, r"shape must be a pair"),
    (lambda: region_budget((0, 5), 0.02, 5), ValueError, r"shape\[0\] must be >= 1"),
    (lambda: region_budget((4, 5), 0.0, 5), ValueError, r"ratio must lie in \(0, 1\]"),
    (lambda: region_budget((4, 5), 2.2, 5), ValueError, r"ratio must lie in \(0, 1\]; got 2.2"),
    (lambda: region_budget((4, 5), float("nan"), 5), ValueError, "ratio must be finite"),
    (lambda: region_budget((4, 5), "2.2%", 5), TypeError, "ratio must be a real number"),
    (lambda: region_budget((4, 5), 0.1, 0), ValueError, "rounds must be >= 1"),
    (lambda: region_budget((4, 5), 0.1, 5, region_size=0), ValueError, "region_size must be"),
    (lambda: pixel_budget((4, 5), 0, 5), ValueError, "pixels must be >= 1"),
    (lambda: pixel_budget((4, 5), 40.0, 5), TypeError, "pixels must be an integer"),
    (lambda: pixel_budget((4, 5), 40, 5, train_shape=640), ValueError, "train_shape must be a pair"),
])
def test_errors(call, err, match):
    with pytest.raises(err, match=match):
        call()
