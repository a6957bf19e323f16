"""Shapes drawn by an annotator, as the pixels they cover.

A pixel ``(y, x)`` is covered when its centre ``(x + 0.5, y + 0.5)`` (in
pixel units, origin at the top-left corner of the image) lies inside the
shape (even-odd rule for polygons).

Shape:
    polygons ``(P, 2)`` float ``(x, y)`` in pixels; masks ``(H, W)`` bool.
"""

from __future__ import annotations

import numpy as np

__all__ = ["point_mask", "polygon_mask", "rectangle_polygon"]


def polygon_mask(points, shape: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` bool: the pixels whose centres lie inside the polygon ``points``.

    Example:
        >>> polygon_mask([[0, 0], [2, 0], [2, 1], [0, 1]], (2, 3)).astype(int).tolist()
        [[1, 1, 0], [0, 0, 0]]
    """
    h, w = shape
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    mask = np.zeros((h, w), bool)
    if len(pts) < 3 or not np.isfinite(pts).all():
        if not np.isfinite(pts).all():
            raise ValueError("polygon points must be finite")
        return mask
    x0 = max(0, int(np.floor(pts[:, 0].min() - 0.5)))
    x1 = min(w, int(np.ceil(pts[:, 0].max() + 0.5)))
    y0 = max(0, int(np.floor(pts[:, 1].min() - 0.5)))
    y1 = min(h, int(np.ceil(pts[:, 1].max() + 0.5)))
    if x1 <= x0 or y1 <= y0:
        return mask
    cy, cx = np.mgrid[y0:y1, x0:x1] + 0.5
    inside = np.zeros(cx.shape, bool)
    xa, ya = pts[:, 0], pts[:, 1]
    xb, yb = np.roll(xa, -1), np.roll(ya, -1)
    for ax, ay, bx, by in zip(xa, ya, xb, yb):
        crosses = (ay > cy) != (by > cy)
        with np.errstate(divide="ignore", invalid="ignore"):
            xcross = ax + (cy - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (cx < xcross)
    mask[y0:y1, x0:x1] = inside
    return mask


def rectangle_polygon(x: float, y: float, width: float, height: float,
                      rotation: float = 0.0) -> np.ndarray:
    """``(4, 2)`` corners of a rectangle with top-left ``(x, y)``, turned ``rotation``
    degrees clockwise (on screen) about that corner.

    Example:
        >>> rectangle_polygon(1, 2, 3, 4).tolist()
        [[1.0, 2.0], [4.0, 2.0], [4.0, 6.0], [1.0, 6.0]]
    """
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    if rotation:
        t = np.deg2rad(rotation)
        c, s = np.cos(t), np.sin(t)
        corners = corners @ np.array([[c, s], [-s, c]])
    return corners + np.array([x, y], np.float64)


def point_mask(x: float, y: float, shape: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` bool: the one pixel that contains the point ``(x, y)`` (none outside the image).

    Example:
        >>> point_mask(1.7, 0.2, (2, 3)).astype(int).tolist()
        [[0, 1, 0], [0, 0, 0]]
    """
    h, w = shape
    mask = np.zeros((h, w), bool)
    c, r = int(np.floor(x)), int(np.floor(y))
    if 0 <= r < h and 0 <= c < w:
        mask[r, c] = True
    return mask
