"""Pictures of a selection round: where the queries fall on an image.

:func:`round_figure` draws one image of an :class:`~densecore.ActiveLabelState`:
the image (greyed, so the colours of the overlay read), a score map over it
with a colour scale (e.g. the margin uncertainty ``1 - p1 + p2`` or the
coverage density the selection used; any resolution, stretched over the
image), the pixels queried in ``round`` and those labeled in earlier rounds,
with a legend that counts them. :func:`round_picture` writes it as a PNG
atomically. matplotlib is imported on first use (the ``plots`` extra); no
pyplot state is touched.

Shape:
    image ``(H, W, 3)`` or ``(3, H, W)`` (numpy or tensor; uint8, or floats
    shown min-max scaled) or ``(H, W)``; score ``(h, w)`` float, any ``h, w``.
"""

from __future__ import annotations

import os

import numpy as np
from scipy import ndimage

from .io import atomic_save_figure
from .validation import check_int

__all__ = ["round_figure", "round_picture"]

_BEFORE = (0.0, 0.9, 1.0, 1.0)  # cyan
_QUERIED = (1.0, 0.18, 0.58, 1.0)  # magenta


def _matplotlib():
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("densecore.plot needs matplotlib: "
                          "pip install \"densecore-seg[plots]\"") from exc
    return Figure


def _host(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise TypeError(f"{name} must be a numeric array; got dtype {x.dtype}")
    return x


def _grey(image, shape: tuple[int, int]) -> np.ndarray:
    img = _host(image, "image").astype(np.float64)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = np.moveaxis(img, 0, -1)
    if img.ndim == 3:
        img = img.mean(-1)
    if img.shape != tuple(shape):
        raise ValueError(f"image must be {tuple(shape)} (the state's shape of the image), "
                         f"optionally with 3 channels; got {img.shape}")
    if not np.isfinite(img).all():
        raise ValueError("image must be finite")
    lo, hi = img.min(), img.max()
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def round_figure(state, round: int, image_id: str, *, image=None, score=None,
                 score_label: str = "score", cmap: str = "viridis", title: str | None = None,
                 width: float = 7.0):
    """A matplotlib ``Figure`` of one image's queries in ``round``.

    Args:
        state: the :class:`~densecore.ActiveLabelState` of the run.
        round: a round done for ``image_id``.
        image_id: the image.
        image: the image itself, or None for a blank background.
        score: a map drawn over the image with a colour bar, or None.
        score_label: the colour bar's label (say what the score is and its units).
        cmap: the score's colour map.
        title: the title; default names the image and the round.
        width: figure width in inches.

    Returns:
        ``matplotlib.figure.Figure`` (not attached to pyplot).
    """
    Figure = _matplotlib()
    from matplotlib.lines import Line2D
    round = check_int(round, "round", minimum=0)
    h, w = state.shape(image_id)
    queried = state.queried(image_id, round)
    before = state.labeled(image_id, rounds=range(round))
    fig = Figure(figsize=(width, width * h / w * 0.82 + 0.9))
    ax = fig.subplots()
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)
    bg = _grey(image, (h, w)) if image is not None else np.full((h, w), 0.5)
    ax.imshow(bg, cmap="gray", vmin=-0.35, vmax=1.35, extent=extent, interpolation="nearest")
    if score is not None:
        s = _host(score, "score").astype(np.float64)
        if s.ndim != 2:
            raise ValueError(f"score must be a 2-D map; got shape {s.shape}")
        im = ax.imshow(s, cmap=cmap, alpha=0.55, extent=extent, interpolation="bilinear")
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        bar.set_label(score_label)
        bar.solids.set_alpha(1.0)
    # the pixels themselves (exact), and a ring around each connected group of them
    # (visible at any image size)
    overlay = np.zeros((h, w, 4))
    overlay[before] = _BEFORE
    overlay[queried] = _QUERIED
    ax.imshow(overlay, extent=extent, interpolation="nearest")
    handles = []
    for mask, colour, label in ((before, _BEFORE, f"labeled in rounds < {round}"),
                                (queried, _QUERIED, f"queried in round {round}")):
        if not mask.any():
            continue
        groups, n = ndimage.label(mask)
        cy, cx = np.array(ndimage.center_of_mass(mask, groups, range(1, n + 1))).reshape(-1, 2).T
        spans = [max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
                 for sl in ndimage.find_objects(groups)]
        # ring diameter: 1.6 group spans, at least 8 points (the axes are ~0.75 of the width)
        diameter = np.maximum(8.0, 1.6 * np.array(spans) * 0.75 * width * 72 / w)
        ax.scatter(cx, cy, s=diameter ** 2, marker="o", facecolors="none",
                   edgecolors=[colour], linewidths=1.2)
        handles.append(Line2D([], [], ls="", marker="o", ms=8, mfc=colour[:3] + (0.9,),
                              mec=colour, label=f"{label}: {mask.sum()} px in {n} groups"))
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    ax.set_title(title if title is not None else f"{image_id}: round {round}")
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2,
              frameon=False, fontsize="small")
    fig.tight_layout()
    return fig


def round_picture(state, round: int, image_id: str, path: str | os.PathLike, *, dpi: int = 110,
                  **kwargs) -> str:
    """Write :func:`round_figure` as a PNG to ``path`` (atomically); returns the path.

    Keyword arguments go to :func:`round_figure` (``image``, ``score``,
    ``score_label``, ``cmap``, ``title``, ``width``).

    Example:
        >>> import os, tempfile, numpy as np, densecore
        >>> from densecore.plot import round_picture
        >>> d = tempfile.mkdtemp()
        >>> s = densecore.ActiveLabelState(os.path.join(d, "st"), ["a"], (8, 12))
        >>> s.add("a", np.eye(8, 12, dtype=bool), round=0)
        >>> p = round_picture(s, 0, "a", os.path.join(d, "a.png"), score=np.random.rand(4, 6))
        >>> open(p, "rb").read(4)
        b'\\x89PNG'
    """
    dpi = check_int(dpi, "dpi", minimum=1)
    fig = round_figure(state, round, image_id, **kwargs)
    path = os.fspath(path)
    atomic_save_figure(fig, path, format="png", dpi=dpi)
    return path
