"""The on-disk formats of :class:`densecore.ActiveLabelState`: mask files (npz of
packed bits and, optionally, the queried pixels' labels) and the manifest (JSON),
from values to bytes and back, every decoded field checked.

Shape:
    masks ``(H, W)`` bool; packed bits ``(ceil(H * W / 8),)`` uint8 (big bit
    order, row-major); labels ``(P,)`` uint8/uint16, one per queried pixel.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile

import numpy as np

__all__ = ["FORMAT", "MANIFEST", "MASK_DIR", "MAX_PIXELS", "MAX_ROUND", "VERSION",
           "CorruptFileError", "check_labels", "check_round", "check_shape", "decode_mask",
           "encode_mask", "file_key", "parse_manifest", "popcount", "unpack", "utf8_error"]

FORMAT = "densecore-active-label-state"
VERSION = 1
MANIFEST = "manifest.json"
MASK_DIR = "masks"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so equal masks give byte-identical files
# The limits of the format, one each, checked where a value enters (add(), the
# constructor) and where the manifest is read, so that nothing a call accepts
# makes a later open fail. Round keys have at most 9 digits (what every reader of
# version 1 accepts); an image's packed mask (H * W / 8 bytes) stays at 512 MiB.
MAX_ROUND = 10 ** 9 - 1
MAX_PIXELS = 2 ** 32
_ROUND_KEY = re.compile(r"0|[1-9][0-9]{0,8}")  # canonical ASCII decimal, <= MAX_ROUND
_LABEL_DTYPES = (np.uint8, np.uint16)


class CorruptFileError(ValueError):
    """A file in the state directory is unreadable, truncated, modified or not densecore's.

    Attributes:
        path: the offending file.
    """

    def __init__(self, path: str, reason: str):
        self.path = path
        super().__init__(f"{path}: {reason}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_round(value, name: str = "round") -> int:
    """A round number in ``[0, MAX_ROUND]`` (the manifest's round keys)."""
    from ..validation import check_int

    value = check_int(value, name, minimum=0)
    if value > MAX_ROUND:
        raise ValueError(f"{name} must be at most {MAX_ROUND} (round numbers of the label "
                         f"state have at most 9 digits); got {value}")
    return value


def check_shape(h: int, w: int, name: str) -> tuple[int, int]:
    """``(H, W)`` integers >= 1 with ``H * W <= MAX_PIXELS``."""
    if h * w > MAX_PIXELS:
        raise ValueError(f"{name} must have at most {MAX_PIXELS} pixels (H * W; a mask of "
                         f"{MAX_PIXELS // 8 >> 20} MiB packed); got ({h}, {w})")
    return h, w


# --------------------------------------------------------------------------- mask files

def encode_mask(mask: np.ndarray, values: np.ndarray | None = None) -> bytes:
    """npz (zip, deflate) with ``packed`` (uint8 packbits, big bit order), ``shape`` and,
    when labels are stored, ``labels`` (the class of each queried pixel, row-major)."""
    buf = io.BytesIO()
    arrays = [("packed", np.packbits(mask.ravel())),
              ("shape", np.asarray(mask.shape, dtype=np.int64))]
    if values is not None:
        arrays.append(("labels", values))
    with zipfile.ZipFile(buf, "w") as zf:
        for name, arr in arrays:
            npy = io.BytesIO()
            np.lib.format.write_array(npy, arr, allow_pickle=False)
            # level 1: several times faster than the default on scattered pixels, ~30 % larger
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME), npy.getvalue(),
                        compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
    return buf.getvalue()


def popcount(packed: np.ndarray) -> int:
    return int(np.count_nonzero(np.unpackbits(packed)))


def unpack(packed: np.ndarray, shape) -> np.ndarray:
    h, w = shape
    return np.unpackbits(packed, count=h * w).reshape(h, w).view(bool)


def decode_mask(data: bytes, shape: tuple[int, int], path: str, *, values: bool = False):
    """The ``packed`` bits of a mask file, checked against ``shape``.

    With ``values=True`` a pair ``(packed, labels or None)``.
    """
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if sorted(z.files) not in (["packed", "shape"], ["labels", "packed", "shape"]):
                raise CorruptFileError(path, f"expected arrays 'packed' and 'shape' (and "
                                             f"'labels'); found {sorted(z.files)}")
            packed, stored = z["packed"], z["shape"]
            labels = z["labels"] if "labels" in z.files else None
    except CorruptFileError:
        raise
    except Exception as e:  # zipfile, numpy format, zlib and EOF errors all mean corrupt
        raise CorruptFileError(path, f"not a readable mask file ({type(e).__name__}: {e})") \
            from e
    if stored.tolist() != list(shape):
        raise CorruptFileError(path, f"mask shape {stored.tolist()} does not match the image "
                                     f"shape {list(shape)} in {MANIFEST}")
    h, w = shape
    if packed.dtype != np.uint8 or packed.shape != ((h * w + 7) // 8,):
        raise CorruptFileError(path, f"packed bits have dtype {packed.dtype} and shape "
                                     f"{packed.shape}; expected uint8 ({(h * w + 7) // 8},)")
    if labels is not None and (labels.dtype not in _LABEL_DTYPES or labels.ndim != 1
                               or labels.size != popcount(packed)):
        raise CorruptFileError(path, f"labels have dtype {labels.dtype} and shape "
                                     f"{labels.shape}; expected uint8/uint16 "
                                     f"({popcount(packed)},)")
    return (packed, labels) if values else packed


def check_labels(labels, mask: np.ndarray) -> np.ndarray:
    """The values of ``labels`` ``(H, W)`` at ``mask``, as uint8 (or uint16 above 255)."""
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"labels must be a numpy array or a torch tensor; got "
                        f"{type(labels).__name__}")
    if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must hold integer class ids; got dtype {labels.dtype}")
    if labels.shape != mask.shape:
        raise ValueError(f"labels must have shape {mask.shape}; got shape {labels.shape}")
    values = labels[mask]
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ValueError(f"labels must lie in [0, 65535] at the queried pixels; got "
                         f"[{values.min()}, {values.max()}]")
    dtype = np.uint8 if not values.size or values.max() <= 255 else np.uint16
    return values.astype(dtype)


def utf8_error(text: str) -> str | None:
    """None when ``text`` encodes as UTF-8, else where it fails (a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"character {text[e.start]!r} at position {e.start} is a lone surrogate"
    return None


def file_key(image_id: str) -> str:
    """File-name-safe, collision-free key of an image id."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", image_id).strip("._-")[:64] or "image"
    return f"{safe}-{hashlib.sha1(image_id.encode('utf-8')).hexdigest()[:12]}"


# --------------------------------------------------------------------------- manifest

def parse_manifest(data: bytes, path: str) -> dict:
    try:
        m = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptFileError(path, f"not valid JSON ({e})") from e
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise CorruptFileError(path, f"not a densecore label-state manifest "
                                     f"(expected \"format\": \"{FORMAT}\")")
    if m.get("version") != VERSION:
        raise CorruptFileError(path, f"manifest version {m.get('version')!r} is not "
                                     f"supported (this densecore reads version {VERSION})")
    images = m.get("images")
    if not isinstance(images, dict) or not images:
        raise CorruptFileError(path, "\"images\" must be a non-empty object")
    for image_id, entry in images.items():
        bad = utf8_error(image_id)
        if bad:
            raise CorruptFileError(path, f"image id {image_id!r} is not valid text ({bad})")
        try:
            h, w = entry["shape"]
            ok = (_is_int(h) and _is_int(w) and h > 0 and w > 0 and h * w <= MAX_PIXELS
                  and entry["key"] == file_key(image_id)
                  and isinstance(entry["rounds"], dict))
        except (KeyError, TypeError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise CorruptFileError(path, f"malformed entry for image {image_id!r}")
        for k, v in entry["rounds"].items():
            if not _ROUND_KEY.fullmatch(k):
                raise CorruptFileError(path, f"image {image_id!r} has round key {k!r}; round "
                                             f"keys are decimal numbers such as \"0\", \"12\"")
            try:
                ok = (_is_int(v["pixels"]) and _is_int(v["new"])
                      and 0 <= v["new"] <= v["pixels"] <= h * w
                      and isinstance(v["crc32"], str)
                      and re.fullmatch(r"[0-9a-f]{8}", v["crc32"]) is not None
                      and isinstance(v.get("labels", False), bool))
            except (KeyError, TypeError):
                ok = False
            if not ok:
                raise CorruptFileError(path, f"malformed round {k} of image {image_id!r}")
    return m
