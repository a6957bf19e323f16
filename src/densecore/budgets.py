"""Per-image label budgets per selection round, with RIPU's accounting.

The paper follows RIPU (Xie et al. 2022a) for its label budgets and runs 5
selection rounds. Two settings appear in Tables 1 and 2:

* a ratio of the image's pixels (2.2 %, 5 %) labeled as square regions of
  ``region_size x region_size`` pixels: :func:`region_budget`;
* a fixed number of pixels per image (40 pixels) defined at the training
  crop size and rescaled to the full image: :func:`pixel_budget`; RIPU's
  pixel setting scores and suppresses with a window whose radius
  :func:`ripu_pixel_radius` scales with the label size.

Both round up (``ceil``), as RIPU does, and compute with exact fractions so
that a budget that is an integer on paper never becomes ``n + 1`` through
floating-point error. A float ``ratio`` is read as the shortest decimal that
prints as it (``0.022`` means exactly 22/1000).

Shape:
    ``shape`` and ``train_shape`` are ``(H, W)`` in pixels; results are
    Python ``int`` counts per image per round (regions or pixels).
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

from .validation import check_int

__all__ = ["pixel_budget", "region_budget", "ripu_pixel_radius"]


def _check_shape(shape, name: str) -> tuple[int, int]:
    try:
        h, w = shape
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (H, W); got {shape!r}") from None
    return check_int(h, f"{name}[0]", minimum=1), check_int(w, f"{name}[1]", minimum=1)


def _exact(value, name: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    if isinstance(value, numbers.Rational):
        return Fraction(value)
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}")
    return Fraction(repr(value))


def region_budget(shape, ratio: float, rounds: int, region_size: int = 3) -> int:
    """Regions to label per image per round for a total pixel ``ratio``.

    ``ceil(H * W * ratio / rounds / region_size**2)``: RIPU's region-based
    budget, where each selected region is a ``region_size x region_size``
    square (3 x 3 in RIPU) and the total ``ratio`` is spread evenly over
    ``rounds`` rounds.

    Args:
        shape: ``(H, W)`` of the full image in pixels.
        ratio: total fraction of pixels to label, in ``(0, 1]`` (0.022 for 2.2 %).
        rounds: number of selection rounds (5 in the paper).
        region_size: side of a square region in pixels.

    Returns:
        ``int`` number of regions per image per round.

    Example:
        >>> region_budget((1024, 2048), 0.022, 5)
        1026
        >>> region_budget((1024, 2048), 0.05, 5)
        2331
    """
    h, w = _check_shape(shape, "shape")
    r = _exact(ratio, "ratio")
    if not 0 < r <= 1:
        raise ValueError(f"ratio must lie in (0, 1]; got {ratio}")
    rounds = check_int(rounds, "rounds", minimum=1)
    region_size = check_int(region_size, "region_size", minimum=1)
    return math.ceil(h * w * r / rounds / region_size ** 2)


def pixel_budget(shape, pixels: int, rounds: int, train_shape=(640, 1280)) -> int:
    """Pixels to label per image per round for a ``pixels``-per-image budget.

    ``ceil(pixels / rounds * H * W / (train_H * train_W))``: RIPU's
    pixel-based budget (the "40 pixels" setting) counts pixels at the training
    crop size ``train_shape`` and rescales them to the full image.

    Args:
        shape: ``(H, W)`` of the full image in pixels (1024 x 2048 for Cityscapes).
        pixels: total pixels per image at ``train_shape`` over all rounds (40).
        rounds: number of selection rounds (5 in the paper).
        train_shape: ``(H, W)`` the budget refers to (640 x 1280 for Cityscapes).

    Returns:
        ``int`` number of pixels per image per round.

    Example:
        >>> pixel_budget((1024, 2048), 40, 5)
        21
    """
    h, w = _check_shape(shape, "shape")
    th, tw = _check_shape(train_shape, "train_shape")
    pixels = check_int(pixels, "pixels", minimum=1)
    rounds = check_int(rounds, "rounds", minimum=1)
    return math.ceil(Fraction(pixels, rounds) * h * w / (th * tw))


# RIPU's published pixel-setting configs (configs/*/deeplabv2_r101_PA.yaml) use
# RADIUS_K: 32 on labels of 1024 x 2048 pixels (Cityscapes at full size)
_RIPU_PIXEL_K, _RIPU_PIXEL_HEIGHT = 32, 1024


def ripu_pixel_radius(shape) -> int:
    """RIPU's pixel-setting window radius ``k`` for labels of ``shape = (H, W)``.

    RIPU's pixel setting (PA) computes region impurity over a ``(2k+1) x (2k+1)``
    window and suppresses the ``(2k+1) x (2k+1)`` square around each picked
    pixel, with ``RADIUS_K = 32`` at 1024 x 2048 (a 65 x 65 window). The rule
    keeps that window's share of the image height: ``k = max(1, round(32 * H /
    1024))`` (Python's ``round``: halves to even), so 512 x 1024 gives 16,
    128 x 256 gives 4, 64 x 128 gives 2; it is never below 1 (a 3 x 3 window).

    Args:
        shape: ``(H, W)`` of the label map in pixels.

    Returns:
        the radius ``k >= 1`` as a Python ``int``.

    Example:
        >>> [ripu_pixel_radius(s) for s in [(1024, 2048), (512, 1024), (64, 128), (8, 16)]]
        [32, 16, 2, 1]
    """
    h, _ = _check_shape(shape, "shape")
    return max(1, round(Fraction(_RIPU_PIXEL_K * h, _RIPU_PIXEL_HEIGHT)))
