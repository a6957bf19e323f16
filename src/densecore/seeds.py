"""Per-image seeds: one reproducible seed per (run seed, round, image id).

A selection round that is split over ranks, redone after a crash or run in
another order must give every image the same seed (for the first pick of the
greedy and for random scores). :func:`image_seed` derives it from the image's
id, not from its position.
"""

from __future__ import annotations

import zlib

from .validation import check_int

__all__ = ["image_seed"]


def image_seed(seed: int, round: int, image_id: str) -> int:
    """A seed in ``[0, 2**31)`` for one image in one round, independent of rank and order.

    ``(crc32(utf-8 of image_id) * 1000003 + round * 7919 + seed) mod 2**31``;
    lone surrogates in ``image_id`` (file names that are not valid UTF-8) are
    encoded with ``surrogatepass``.

    Args:
        seed: the run's seed, ``>= 0``.
        round: selection round, ``>= 0``.
        image_id: the image's id (a non-empty string).

    Example:
        >>> image_seed(0, 1, "aachen_000000_000019") == image_seed(0, 1, "aachen_000000_000019")
        True
        >>> image_seed(0, 0, "a") != image_seed(0, 1, "a")
        True
    """
    seed = check_int(seed, "seed", minimum=0)
    round = check_int(round, "round", minimum=0)
    if not isinstance(image_id, str) or not image_id:
        raise TypeError(f"image_id must be a non-empty string; got {image_id!r}")
    crc = zlib.crc32(image_id.encode("utf-8", "surrogatepass"))
    return (crc * 1000003 + round * 7919 + seed) % (2 ** 31)
