"""Run-length encodings of masks that annotation tools read and write.

* COCO RLE: ``{"size": [H, W], "counts": ...}`` over the mask in column-major
  (Fortran) order, the counts alternating runs of 0 and 1 starting with 0;
  ``counts`` is a list of ints (uncompressed, what :func:`coco_rle_encode`
  writes) or pycocotools' compressed string (6 bits per character, offset
  48, each count after the second stored as the difference to the count two
  before), both read by :func:`coco_rle_decode`.
* Label Studio's brush RLE (its ``BrushLabels`` results, ``"format": "rle"``):
  the bit stream of the rle-pack scheme over the RGBA bytes of the mask image
  in row-major order, most significant bit first: 32 bits the number of
  values, 5 bits the word size minus 1, four 4-bit run-length field widths
  minus 1, then blocks of ``flag (1 bit), width index (2 bits), n (that
  width)``, followed by one word repeated ``n + 1`` times (flag 1) or
  ``n + 1`` literal words (flag 0), the stream zero-padded to whole bytes.
  The mask is the alpha channel.

Shape:
    masks ``(H, W)`` bool (encoders) / bool or uint8 (decoders);
    pixel coordinates ``(y, x)`` = (row, column).
"""

from __future__ import annotations

import numpy as np

__all__ = ["brush_rle_decode", "brush_rle_encode", "coco_rle_decode", "coco_rle_encode"]

_BRUSH_WIDTHS = (3, 4, 8, 16)  # run-length field widths in bits; run of n + 1 values


def _runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start values and lengths of the runs of equal values of a 1-D array."""
    if flat.size == 0:
        return flat[:0], np.zeros(0, np.int64)
    edge = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], edge])
    lengths = np.diff(np.concatenate([starts, [flat.size]]))
    return flat[starts], lengths


def _check_mask(mask, name: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name} must be (H, W); got shape {mask.shape}")
    if mask.dtype != np.bool_:
        raise TypeError(f"{name} must be a bool mask; got dtype {mask.dtype}")
    return mask


def coco_rle_encode(mask) -> dict:
    """Uncompressed COCO RLE of a bool mask.

    Args:
        mask: ``(H, W)`` bool.

    Returns:
        ``{"size": [H, W], "counts": [int, ...]}``, runs over the column-major
        pixels, the first a run of zeros (possibly 0).

    Example:
        >>> import numpy as np
        >>> coco_rle_encode(np.array([[0, 1], [0, 1]], bool))
        {'size': [2, 2], 'counts': [2, 2]}
    """
    mask = _check_mask(mask)
    values, lengths = _runs(mask.ravel(order="F"))
    counts = lengths.tolist()
    if values.size and values[0]:
        counts.insert(0, 0)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def _coco_string_counts(s: str) -> list[int]:
    # pycocotools' rleFrString: 5 value bits per character (+ a continuation bit),
    # offset 48, sign-extended, every count after the second a difference
    counts, p = [], 0
    data = s.encode("ascii")
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            if p >= len(data):
                raise ValueError("rle counts string ends inside a number")
            c = data[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"rle counts string has a character outside the encoding: "
                                 f"{chr(data[p])!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def coco_rle_decode(rle) -> np.ndarray:
    """``(H, W)`` bool mask of a COCO RLE (uncompressed list or compressed string counts).

    Example:
        >>> coco_rle_decode({"size": [2, 2], "counts": [2, 2]}).tolist()
        [[False, True], [False, True]]
        >>> coco_rle_decode({"size": [2, 2], "counts": "22"}).tolist()  # compressed
        [[False, True], [False, True]]
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise TypeError(f"rle must be a dict with 'size' and 'counts'; got {rle!r:.80}")
    try:
        h, w = (int(v) for v in rle["size"])
    except (TypeError, ValueError):
        raise ValueError(f"rle['size'] must be [H, W]; got {rle['size']!r}") from None
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    counts = _coco_string_counts(counts) if isinstance(counts, str) else \
        [int(c) for c in counts]
    if any(c < 0 for c in counts):
        raise ValueError("rle['counts'] must be non-negative")
    if sum(counts) != h * w:
        raise ValueError(f"rle['counts'] cover {sum(counts)} pixels; size {h}x{w} has {h * w}")
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    return flat.reshape((w, h)).T.copy()


def _bits(value: int, width: int) -> str:
    return format(value, f"0{width}b")


def brush_rle_encode(mask) -> list[int]:
    """Label Studio brush RLE of a bool mask (RGBA bytes, 255 in every channel at the mask).

    Every run is written as a repeated word (runs of one value RGBA pixels
    are at least 4 long), in the narrowest field that holds its length.

    Args:
        mask: ``(H, W)`` bool.

    Returns:
        ``list[int]`` of bytes, the ``value.rle`` of a ``brushlabels`` result.

    Example:
        >>> import numpy as np
        >>> m = np.zeros((2, 3), bool); m[1, 1:] = True
        >>> (brush_rle_decode(brush_rle_encode(m), (2, 3)) > 0).tolist()
        [[False, False, False], [False, True, True]]
    """
    mask = _check_mask(mask)
    values, lengths = _runs(mask.ravel())
    parts = [_bits(mask.size * 4, 32), _bits(7, 5)]
    parts += [_bits(wd - 1, 4) for wd in _BRUSH_WIDTHS]
    longest = 1 << _BRUSH_WIDTHS[-1]
    for v, n in zip(values.tolist(), (lengths * 4).tolist()):
        word = _bits(255 if v else 0, 8)
        while n > 0:
            take = min(n, longest)
            k = next(i for i, wd in enumerate(_BRUSH_WIDTHS) if take <= 1 << wd)
            parts.append("1" + _bits(k, 2) + _bits(take - 1, _BRUSH_WIDTHS[k]) + word)
            n -= take
    stream = "".join(parts)
    stream += "0" * (-len(stream) % 8)
    return np.packbits(np.frombuffer(stream.encode("ascii"), np.uint8) - 48).tolist()


def brush_rle_decode(rle, shape: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` uint8 alpha channel of a Label Studio brush RLE.

    Reads any stream of the scheme (repeated and literal words, any word
    size up to 32 bits and field widths); ``shape`` is the task's
    ``(original_height, original_width)``.

    Raises:
        ValueError: the stream is truncated or holds another number of
            values than ``H * W * 4``.
    """
    h, w = (int(v) for v in shape)
    data = np.asarray(rle, dtype=np.int64)
    if data.ndim != 1 or (data.size and (data.min() < 0 or data.max() > 255)):
        raise ValueError("rle must be a list of bytes (ints in [0, 255])")
    bits = np.unpackbits(data.astype(np.uint8))
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        if pos + n > bits.size:
            raise ValueError("rle stream ends early (truncated)")
        v = 0
        for b in bits[pos:pos + n].tolist():
            v = (v << 1) | b
        pos += n
        return v

    num = read(32)
    if num != h * w * 4:
        raise ValueError(f"rle holds {num} values; an RGBA image of {h}x{w} has {h * w * 4}")
    word = read(5) + 1
    widths = [read(4) + 1 for _ in range(4)]
    out = np.zeros(num, np.uint32)
    weights = 1 << np.arange(word - 1, -1, -1, dtype=np.uint64)
    i = 0
    while i < num:
        repeated = read(1)
        j = min(num, i + 1 + read(widths[read(2)]))
        if repeated:
            out[i:j] = read(word)
        else:
            k = j - i
            if pos + k * word > bits.size:
                raise ValueError("rle stream ends early (truncated)")
            chunk = bits[pos:pos + k * word].reshape(k, word).astype(np.uint64)
            out[i:j] = chunk @ weights
            pos += k * word
        i = j
    return np.clip(out.reshape(h, w, 4)[..., 3], 0, 255).astype(np.uint8)
