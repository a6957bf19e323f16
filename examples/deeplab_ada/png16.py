"""Read and write 16-bit-per-channel PNG files (SYNTHIA's ``GT/LABELS``).

SYNTHIA RAND-CITYSCAPES stores its labels as 16-bit RGB PNGs with the class id
in channel 0 (R) and the instance id in channel 1. Pillow reads such files as
8-bit RGB and keeps only the high byte of each sample, which turns every class
id below 256 into 0, so the labels need a decoder of their own. This one
handles non-interlaced 8/16-bit greyscale, grey+alpha, RGB and RGBA PNGs with
all five row filters.

Shape:
    ``read_png(path)`` returns ``(H, W)`` for greyscale or ``(H, W, C)``
    arrays, ``uint16`` for 16-bit files and ``uint8`` for 8-bit ones.
"""

from __future__ import annotations

import struct
import zlib

import numba
import numpy as np

from densecore.io import atomic_write

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel


@numba.njit(cache=True)
def _unfilter(raw, height, stride, bpp):  # pragma: no cover - compiled
    out = np.empty((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    pos = 0
    for y in range(height):
        ftype = raw[pos]
        pos += 1
        for x in range(stride):
            v = np.int32(raw[pos + x])
            a = np.int32(out[y, x - bpp]) if x >= bpp else np.int32(0)
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else np.int32(0)
            if ftype == 1:
                v += a
            elif ftype == 2:
                v += b
            elif ftype == 3:
                v += (a + b) // 2
            elif ftype == 4:
                p = a + b - c
                pa = abs(p - a)
                pb = abs(p - b)
                pc = abs(p - c)
                if pa <= pb and pa <= pc:
                    v += a
                elif pb <= pc:
                    v += b
                else:
                    v += c
            out[y, x] = v & 0xFF
        for x in range(stride):
            prev[x] = out[y, x]
        pos += stride
    return out


def read_png(path) -> np.ndarray:
    """Decode a non-interlaced 8- or 16-bit PNG without palette.

    Args:
        path: file path.

    Returns:
        ``(H, W)`` or ``(H, W, C)`` ``uint8``/``uint16`` array.

    Raises:
        ValueError: the file is not a PNG this reader supports (the message
            names the file and the unsupported property).
    """
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != _SIGNATURE:
        raise ValueError(f"{path}: not a PNG file")
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError(f"{path}: PNG without IHDR chunk")
    width, height, depth, ctype, _, _, interlace = header
    if ctype not in _CHANNELS or depth not in (8, 16) or interlace != 0:
        raise ValueError(f"{path}: unsupported PNG (bit depth {depth}, colour type {ctype}, "
                         f"interlace {interlace}); expected 8/16-bit, non-palette, non-interlaced")
    channels = _CHANNELS[ctype]
    bpp = channels * depth // 8
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)
    if raw.size != height * (width * bpp + 1):
        raise ValueError(f"{path}: truncated PNG data ({raw.size} bytes, expected "
                         f"{height * (width * bpp + 1)})")
    rows = _unfilter(raw, height, width * bpp, bpp)
    if depth == 16:
        arr = rows.view(">u2").astype(np.uint16).reshape(height, width, channels)
    else:
        arr = rows.reshape(height, width, channels)
    return arr[:, :, 0] if channels == 1 else arr


def write_png(path, array: np.ndarray) -> None:
    """Encode ``(H, W)`` or ``(H, W, C)`` ``uint8``/``uint16`` as PNG, atomically.

    Rows use filter type 0; the file is written to a temporary file in the
    same directory, fsynced and renamed over ``path``.
    """
    arr = np.asarray(array)
    if arr.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"array must be uint8 or uint16; got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    height, width, channels = arr.shape
    ctype = {v: k for k, v in _CHANNELS.items()}[channels]
    depth = 16 if arr.dtype == np.uint16 else 8
    rows = arr.astype(">u2" if depth == 16 else np.uint8).reshape(height, -1).view(np.uint8)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    png = (_SIGNATURE
           + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, ctype, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    atomic_write(path, png)
