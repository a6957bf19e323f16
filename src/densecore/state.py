"""Active-learning label state on disk: which pixels of which image were queried when.

A selection round over thousands of images runs inside a training job that
can be killed at any moment. :class:`ActiveLabelState` records the pixels
queried in each round so that nothing is lost, nothing is counted twice, and
a data loader reading the masks never sees a half-written file.

Layout of ``root`` (full description in ``docs/state.md``)::

    root/manifest.json            the single source of truth: images, shapes, done rounds
    root/masks/<key>.r<R>.npz     the pixels queried in round R of one image
    root/.lock                    lock file taken (flock) by writers

Write protocol. Every file is written to a temporary file in the same
directory, flushed, fsynced, renamed over its final name with ``os.replace``,
and the directory is fsynced. ``add`` writes the round's mask file first and
the manifest last; a round is done exactly when the manifest lists it.
A kill between any two system calls therefore leaves either the old manifest
(the round is not done; a mask file or a temporary file may be left over and
is overwritten or removed by the next writer) or the new one. Mask files
listed in the manifest are never modified again, so a reader holding any
version of the manifest reads complete files. Re-running the same ``add``
calls after a restart is safe: re-adding the same pixels for a done round is
a no-op, adding different pixels is an error.

Writers serialise through ``fcntl.flock`` on ``root/.lock`` (POSIX only;
on a network file system flock must be supported by the server). Readers
take no lock.

Shape:
    masks ``(H, W)`` bool, one ``(H, W)`` per image (given for all images or
    per image id); pixel coordinates ``(y, x)`` = (row, column).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import re
import threading
import zipfile
import zlib
from collections.abc import Mapping

import numpy as np

from .atomic import atomic_write
from .validation import check_int, check_mask

log = logging.getLogger(__name__)

__all__ = ["ActiveLabelState", "CorruptFileError", "atomic_write"]

FORMAT = "densecore-active-label-state"
VERSION = 1
MANIFEST = "manifest.json"
MASK_DIR = "masks"
LOCK = ".lock"
_TMP_RE = re.compile(r"^\..+\.[0-9a-f]{16}\.tmp$")  # atomic_write's temporary names
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so equal masks give byte-identical files


class CorruptFileError(ValueError):
    """A file in the state directory is unreadable, truncated, modified or not densecore's.

    Attributes:
        path: the offending file.
    """

    def __init__(self, path: str, reason: str):
        self.path = path
        super().__init__(f"{path}: {reason}")


# --------------------------------------------------------------------------- mask files

def _encode_mask(mask: np.ndarray) -> bytes:
    """npz (zip, deflate) with ``packed`` (uint8 packbits, big bit order) and ``shape``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, arr in (("packed", np.packbits(mask.ravel())),
                          ("shape", np.asarray(mask.shape, dtype=np.int64))):
            npy = io.BytesIO()
            np.lib.format.write_array(npy, arr, allow_pickle=False)
            # level 1: several times faster than the default on scattered pixels, ~30 % larger
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME), npy.getvalue(),
                        compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
    return buf.getvalue()


def _popcount(packed: np.ndarray) -> int:
    return int(np.count_nonzero(np.unpackbits(packed)))


def _unpack(packed: np.ndarray, shape) -> np.ndarray:
    h, w = shape
    return np.unpackbits(packed, count=h * w).reshape(h, w).view(bool)


def _decode_mask(data: bytes, shape: tuple[int, int], path: str) -> np.ndarray:
    """The ``packed`` bits of a mask file, checked against ``shape``."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if sorted(z.files) != ["packed", "shape"]:
                raise CorruptFileError(path, f"expected arrays 'packed' and 'shape'; "
                                             f"found {sorted(z.files)}")
            packed, stored = z["packed"], z["shape"]
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
    return packed


def _file_key(image_id: str) -> str:
    """File-name-safe, collision-free key of an image id."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", image_id).strip("._-")[:64] or "image"
    return f"{safe}-{hashlib.sha1(image_id.encode('utf-8')).hexdigest()[:12]}"


# --------------------------------------------------------------------------- manifest

def _parse_manifest(data: bytes, path: str) -> dict:
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
    if not isinstance(images, dict):
        raise CorruptFileError(path, "\"images\" must be an object")
    for image_id, entry in images.items():
        try:
            h, w = entry["shape"]
            ok = (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0
                  and entry["key"] == _file_key(image_id)
                  and all(k.isdigit() and isinstance(v["pixels"], int)
                          and isinstance(v["new"], int) and isinstance(v["crc32"], str)
                          for k, v in entry["rounds"].items()))
        except (KeyError, TypeError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise CorruptFileError(path, f"malformed entry for image {image_id!r}")
    return m


def _stat_key(path: str):
    # Each write adds a round entry, so successive manifests differ in size, and a
    # replaced file has a new inode: (inode, size) identifies a manifest version.
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


class ActiveLabelState:
    """Per-image label masks of an active-learning run, stored crash-safely in ``root``.

    Opening a ``root`` that has no manifest creates one (``image_ids`` and
    ``shape`` are then required; ``root`` must be new or empty). Opening an
    existing ``root`` checks ``image_ids`` and ``shape`` against the manifest
    when given; pass neither to open it read-only, e.g. in data-loader workers.

    Reads (:meth:`labeled`, :meth:`round_done`, ...) re-read the manifest
    whenever another process has replaced it, so a long-lived reader sees new
    rounds. Writes take an exclusive ``flock`` on ``root/.lock`` (POSIX).

    Args:
        root: directory of the state.
        image_ids: the image ids (non-empty, unique strings), in a fixed order.
        shape: ``(H, W)`` for every image, or a mapping ``image_id -> (H, W)``.

    Example:
        >>> import tempfile, numpy as np
        >>> state = ActiveLabelState(tempfile.mkdtemp(), ["a", "b"], (2, 3))
        >>> m = np.zeros((2, 3), bool); m[1, 2] = True
        >>> state.add("a", m, round=0)
        >>> int(state.labeled("a").sum()), state.round_done("a", 0), state.round_done("b", 0)
        (1, True, False)
        >>> state.summary()["labeled"]
        1
    """

    def __init__(self, root: str | os.PathLike, image_ids=None, shape=None):
        self.root = os.path.abspath(os.fspath(root))
        self._manifest_path = os.path.join(self.root, MANIFEST)
        self._mask_dir = os.path.join(self.root, MASK_DIR)
        self._lock = threading.RLock()
        self._lock_fd: int | None = None
        self._lock_depth = 0
        self._batch_depth = 0
        self._dirty = False
        self._cleaned = False
        self._m: dict = {}
        self._m_key = None
        wanted = None if image_ids is None and shape is None else \
            self._wanted(image_ids, shape)
        if not os.path.exists(self._manifest_path):
            if wanted is None:
                raise FileNotFoundError(
                    f"{self._manifest_path} does not exist; pass image_ids and shape to "
                    f"create a new label state in {self.root}")
            os.makedirs(self.root, exist_ok=True)
            with self._locked():
                if not os.path.exists(self._manifest_path):
                    self._create(wanted)
        self._refresh()
        if wanted is not None:
            self._check_matches(wanted)

    # ------------------------------------------------------------------ opening
    @staticmethod
    def _wanted(image_ids, shape) -> dict[str, tuple[int, int]]:
        if image_ids is None or shape is None:
            raise ValueError("image_ids and shape must be given together (or neither, to "
                             "open an existing state)")
        if isinstance(image_ids, str):
            raise TypeError("image_ids must be a sequence of strings; got a single string")
        ids = list(image_ids)
        if not ids:
            raise ValueError("image_ids must not be empty")
        for i in ids:
            if not isinstance(i, str) or not i:
                raise TypeError(f"image_ids must be non-empty strings; got {i!r}")
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            dup = next(i for i in ids if i in seen or seen.add(i))
            raise ValueError(f"image_ids must be unique; got {dup!r} more than once")

        def pair(s, name):
            try:
                h, w = s
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be a pair (H, W); got {s!r}") from None
            return (check_int(h, f"{name}[0]", minimum=1), check_int(w, f"{name}[1]", minimum=1))

        if isinstance(shape, Mapping):
            missing = [i for i in ids if i not in shape]
            if missing:
                raise ValueError(f"shape has no entry for image id {missing[0]!r} "
                                 f"({len(missing)} missing)")
            return {i: pair(shape[i], f"shape[{i!r}]") for i in ids}
        hw = pair(shape, "shape")
        return {i: hw for i in ids}

    def _create(self, wanted: dict[str, tuple[int, int]]) -> None:
        leftovers = [n for n in sorted(os.listdir(self.root))
                     if n != LOCK and not (_TMP_RE.match(n) and n.startswith(f".{MANIFEST}."))]
        if leftovers:
            raise ValueError(f"{self.root} is not empty and has no {MANIFEST} (found "
                             f"{leftovers[0]!r}); use a new or empty directory for a new "
                             f"label state")
        m = {"format": FORMAT, "version": VERSION, "mask_dir": MASK_DIR,
             "images": {i: {"shape": list(hw), "key": _file_key(i), "rounds": {}}
                        for i, hw in wanted.items()}}
        self._write_manifest(m)

    def _check_matches(self, wanted: dict[str, tuple[int, int]]) -> None:
        have = self._m["images"]
        extra = [i for i in wanted if i not in have]
        missing = [i for i in have if i not in wanted]
        if extra or missing:
            what = (f"{extra[0]!r} is not in it" if extra
                    else f"{missing[0]!r} is missing from image_ids")
            raise ValueError(f"image_ids do not match {self._manifest_path} "
                             f"({len(have)} images): {what}")
        for i, hw in wanted.items():
            if tuple(have[i]["shape"]) != hw:
                raise ValueError(f"shape of image {i!r} is {hw} but {self._manifest_path} "
                                 f"records {tuple(have[i]['shape'])}")

    # ------------------------------------------------------------------ manifest I/O
    def _refresh(self, force: bool = False) -> None:
        if self._batch_depth:
            return  # the writer's in-memory manifest is ahead of the file
        try:
            key = _stat_key(self._manifest_path)
        except FileNotFoundError:
            raise CorruptFileError(self._manifest_path, "the manifest has disappeared") \
                from None
        if force or key != self._m_key:
            with open(self._manifest_path, "rb") as f:
                st = os.fstat(f.fileno())  # the version actually read
                data = f.read()
            key = st.st_ino, st.st_size, st.st_mtime_ns
            self._m = _parse_manifest(data, self._manifest_path)
            self._m_key = key

    def _write_manifest(self, m: dict) -> None:
        atomic_write(self._manifest_path,
                     json.dumps(m, separators=(",", ":")).encode("utf-8"))
        self._m, self._m_key = m, _stat_key(self._manifest_path)

    @contextlib.contextmanager
    def _locked(self):
        with self._lock:
            if self._lock_depth == 0:
                import fcntl  # POSIX only

                fd = os.open(os.path.join(self.root, LOCK), os.O_RDWR | os.O_CREAT, 0o666)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._lock_fd = fd
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0:
                    os.close(self._lock_fd)  # closing releases the flock
                    self._lock_fd = None

    def _clean_tmp(self) -> None:
        """Remove temporary files left by killed writers (call with the lock held)."""
        for d in (self.root, self._mask_dir):
            with contextlib.suppress(FileNotFoundError):
                for name in os.listdir(d):
                    if _TMP_RE.match(name):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(os.path.join(d, name))
        self._cleaned = True

    # ------------------------------------------------------------------ reading
    @property
    def image_ids(self) -> list[str]:
        """The image ids, in the order given at creation."""
        self._refresh()
        return list(self._m["images"])

    def shape(self, image_id: str) -> tuple[int, int]:
        """``(H, W)`` of ``image_id``."""
        return tuple(self._entry(image_id)["shape"])

    def _entry(self, image_id) -> dict:
        self._refresh()
        if not isinstance(image_id, str):
            raise TypeError(f"image_id must be a string; got {type(image_id).__name__} "
                            f"{image_id!r}")
        try:
            return self._m["images"][image_id]
        except KeyError:
            raise ValueError(f"image_id {image_id!r} is not one of the "
                             f"{len(self._m['images'])} images of {self.root}") from None

    def mask_path(self, image_id: str, round: int) -> str:
        """Path of the mask file of ``image_id`` for ``round`` (it exists once the round is done)."""
        key = self._entry(image_id)["key"]
        return os.path.join(self._mask_dir, f"{key}.r{check_int(round, 'round', minimum=0)}.npz")

    def rounds(self, image_id: str) -> list[int]:
        """The done rounds of ``image_id``, ascending."""
        return sorted(int(r) for r in self._entry(image_id)["rounds"])

    def round_done(self, image_id: str, round: int) -> bool:
        """True once the labels of ``round`` for ``image_id`` are recorded in the manifest."""
        round = check_int(round, "round", minimum=0)
        return str(round) in self._entry(image_id)["rounds"]

    def _read_round(self, image_id: str, round: int) -> np.ndarray:
        """The packed bits of a done round, verified against the manifest."""
        entry = self._entry(image_id)
        rec = entry["rounds"][str(round)]
        path = self.mask_path(image_id, round)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise CorruptFileError(path, f"listed as round {round} of image {image_id!r} in "
                                         f"{MANIFEST} but missing") from None
        if f"{zlib.crc32(data):08x}" != rec["crc32"]:
            raise CorruptFileError(path, f"checksum does not match the crc32 recorded in "
                                         f"{MANIFEST}; the file was modified, truncated or "
                                         f"replaced")
        packed = _decode_mask(data, tuple(entry["shape"]), path)
        if _popcount(packed) != rec["pixels"]:
            raise CorruptFileError(path, f"holds {_popcount(packed)} pixels; {MANIFEST} "
                                         f"records {rec['pixels']}")
        return packed

    def queried(self, image_id: str, round: int) -> np.ndarray:
        """``(H, W)`` bool: the pixels recorded for ``round`` of ``image_id``.

        Raises:
            ValueError: the round is not done for this image.
        """
        if not self.round_done(image_id, round):
            raise ValueError(f"round {round} is not done for image {image_id!r}; done rounds: "
                             f"{self.rounds(image_id)}")
        return _unpack(self._read_round(image_id, int(round)), self.shape(image_id))

    def labeled(self, image_id: str) -> np.ndarray:
        """``(H, W)`` bool: every pixel of ``image_id`` queried in a done round.

        Example:
            >>> import tempfile
            >>> ActiveLabelState(tempfile.mkdtemp(), ["a"], (2, 2)).labeled("a").tolist()
            [[False, False], [False, False]]
        """
        entry = self._entry(image_id)
        h, w = entry["shape"]
        out = np.zeros((h * w + 7) // 8, dtype=np.uint8)
        for r in sorted(int(r) for r in entry["rounds"]):
            out |= self._read_round(image_id, r)
        return _unpack(out, (h, w))

    def summary(self) -> dict:
        """Counts per round and in total, from the manifest (no mask file is read).

        Returns:
            ``{"images": int, "pixels": int (all pixels of all images),
            "labeled": int (distinct labeled pixels), "ratio": labeled / pixels,
            "rounds": [{"round": r, "images": images done, "queried": pixels
            recorded in round r, "new": of those, not labeled in an earlier
            round}, ...]}``, rounds ascending.
        """
        self._refresh()
        images = self._m["images"]
        per: dict[int, dict] = {}
        total = labeled = 0
        for entry in images.values():
            total += entry["shape"][0] * entry["shape"][1]
            for r, rec in entry["rounds"].items():
                s = per.setdefault(int(r), {"round": int(r), "images": 0, "queried": 0,
                                            "new": 0})
                s["images"] += 1
                s["queried"] += rec["pixels"]
                s["new"] += rec["new"]
                labeled += rec["new"]
        return {"images": len(images), "pixels": total, "labeled": labeled,
                "ratio": labeled / total, "rounds": [per[r] for r in sorted(per)]}

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def batch(self):
        """Hold the writer lock and write the manifest once, at the end of the block.

        Each :meth:`add` rewrites the manifest (its size grows with the number
        of images); inside ``with state.batch():`` the adds are recorded in one
        manifest write when the block exits, also when it exits with an
        exception (every add that returned is recorded). Other processes see
        none of the block's rounds before that write. A kill inside the block
        loses the block's rounds; re-running the same adds redoes them.
        """
        with self._locked():
            if self._batch_depth == 0:
                self._refresh()
            self._batch_depth += 1
            try:
                yield self
            finally:
                self._batch_depth -= 1
                if self._batch_depth == 0 and self._dirty:
                    self._dirty = False
                    try:
                        self._write_manifest(self._m)
                    except BaseException:
                        self._m_key = None  # re-read the file on the next access
                        raise

    def add(self, image_id: str, new_mask, *, round: int) -> None:
        """Record the pixels queried for ``image_id`` in ``round``.

        Atomic and idempotent per ``(image_id, round)``: adding exactly the
        recorded pixels again is a no-op, so a restarted job can re-run its
        ``add`` calls. The mask file is written before the manifest, and the
        round is done once the manifest lists it.

        Args:
            image_id: one of the state's image ids.
            new_mask: ``(H, W)`` bool numpy array or tensor, the pixels queried
                in this round (pixels already labeled in an earlier round are
                allowed and counted once, in ``summary()["labeled"]``).
            round: round number ``>= 0``; per image, rounds never go backwards.

        Raises:
            ValueError: unknown image id, wrong shape, a round before a done
                round of this image, or different pixels for a done round.
            TypeError: mask not bool.
            CorruptFileError: a mask file of this image is corrupt.
        """
        round = check_int(round, "round", minimum=0)
        with self._locked():
            self._refresh()
            entry = self._entry(image_id)
            mask = check_mask(new_mask, tuple(entry["shape"]), "new_mask")
            if str(round) in entry["rounds"]:
                old = _unpack(self._read_round(image_id, round), mask.shape)
                if not np.array_equal(old, mask):
                    diff = int((old != mask).sum())
                    raise ValueError(
                        f"round {round} of image {image_id!r} is already done with "
                        f"{int(old.sum())} pixels; new_mask differs in {diff} pixels "
                        f"(a done round cannot be changed)")
                return
            done = sorted(int(r) for r in entry["rounds"])
            if done and round < done[-1]:
                raise ValueError(f"round must not go backwards: image {image_id!r} already has "
                                 f"round {done[-1]} done; got round {round}")
            if not self._cleaned:
                self._clean_tmp()
            packed = np.packbits(mask.ravel())
            before = np.zeros_like(packed)
            for r in done:
                before |= self._read_round(image_id, r)
            data = _encode_mask(mask)
            os.makedirs(self._mask_dir, exist_ok=True)
            atomic_write(self.mask_path(image_id, round), data)  # 1: the mask file
            entry["rounds"][str(round)] = {"pixels": _popcount(packed),
                                           "new": _popcount(packed & ~before),
                                           "crc32": f"{zlib.crc32(data):08x}"}
            if self._batch_depth:
                self._dirty = True
            else:
                try:
                    self._write_manifest(self._m)  # 2: the manifest, last
                except BaseException:
                    self._m_key = None  # re-read the file on the next access
                    raise
            log.debug("recorded round %d of %r: %d pixels", round, image_id,
                      entry["rounds"][str(round)]["pixels"])

    def export_queries(self, round: int, path: str | os.PathLike, *,
                       format: str | None = None) -> int:
        """Write the pixel coordinates recorded for ``round`` for an annotation tool.

        Formats (chosen from ``format`` or the suffix of ``path``):

        * ``"jsonl"`` (``.jsonl``/``.json``): one line per image done in that
          round, ``{"image": id, "round": r, "height": H, "width": W,
          "pixels": [[y, x], ...]}``;
        * ``"csv"`` (``.csv``): header ``image,round,y,x`` then one row per pixel.

        Images appear in the state's order, pixels in row-major order. The
        file is written atomically.

        Returns:
            ``int`` number of pixels written.

        Example:
            >>> import tempfile, os, numpy as np
            >>> d = tempfile.mkdtemp()
            >>> s = ActiveLabelState(os.path.join(d, "state"), ["a"], (2, 2))
            >>> s.add("a", np.eye(2, dtype=bool), round=1)
            >>> s.export_queries(1, os.path.join(d, "q.csv"))
            2
            >>> print(open(os.path.join(d, "q.csv")).read().strip())
            image,round,y,x
            a,1,0,0
            a,1,1,1
        """
        round = check_int(round, "round", minimum=0)
        path = os.fspath(path)
        if format is None:
            ext = os.path.splitext(path)[1].lower()
            format = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}.get(ext)
            if format is None:
                raise ValueError(f"cannot tell the format from the suffix of path {path!r}; "
                                 f"use .jsonl or .csv, or pass format='jsonl' or 'csv'")
        if format not in ("jsonl", "csv"):
            raise ValueError(f"format must be 'jsonl' or 'csv'; got {format!r}")
        self._refresh()
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        if format == "csv":
            writer.writerow(["image", "round", "y", "x"])
        count = 0
        for image_id, entry in self._m["images"].items():
            if str(round) not in entry["rounds"]:
                continue
            yx = np.argwhere(_unpack(self._read_round(image_id, round), entry["shape"]))
            count += len(yx)
            if format == "jsonl":
                h, w = entry["shape"]
                out.write(json.dumps({"image": image_id, "round": round, "height": h,
                                      "width": w, "pixels": yx.tolist()}) + "\n")
            else:
                writer.writerows([image_id, round, int(y), int(x)] for y, x in yx)
        atomic_write(path, out.getvalue().encode("utf-8"))
        return count

    def __repr__(self) -> str:
        s = self.summary()
        return (f"ActiveLabelState({self.root!r}, images={s['images']}, "
                f"rounds={[r['round'] for r in s['rounds']]}, labeled={s['labeled']})")
