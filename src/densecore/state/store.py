"""The label state's store: :class:`ActiveLabelState` opens or creates a state
directory, serialises writers through a lock file, reads the manifest again when
another process replaced it, and records each round (mask file first, manifest last).
The write protocol and the layout are described in :mod:`densecore.state`.

Shape:
    masks ``(H, W)`` bool, one ``(H, W)`` per image (given for all images or
    per image id); pixel coordinates ``(y, x)`` = (row, column).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import warnings
import zlib
from collections.abc import Mapping

import numpy as np

from ..io import atomic_write
from ..validation import check_int, check_mask
from . import export
from .codec import (FORMAT, MANIFEST, MASK_DIR, VERSION, CorruptFileError, check_labels,
                    check_round, check_shape, decode_mask, encode_mask, file_key,
                    parse_manifest, popcount, unpack, utf8_error)

log = logging.getLogger(__name__)

__all__ = ["ActiveLabelState"]

LOCK = ".lock"
_TMP_RE = re.compile(r"^\..+\.[0-9a-f]{16}\.tmp$")  # atomic_write's temporary names


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
    An existing ``root`` that already records rounds continues that run (the
    rounds on disk count as done): say so with ``resume=True``; with the default
    (None) a warning says that the run is being continued, and ``resume=False``
    refuses such a folder (``FileExistsError``), for a script that must start
    fresh.

    Reads (:meth:`labeled`, :meth:`round_done`, ...) re-read the manifest
    whenever another process has replaced it, so a long-lived reader sees new
    rounds. Writes take an exclusive ``flock`` on ``root/.lock`` (POSIX).

    Args:
        root: directory of the state.
        image_ids: the image ids (non-empty, unique strings), in a fixed order.
        shape: ``(H, W)`` for every image, or a mapping ``image_id -> (H, W)``.
        resume: for a ``root`` that already records rounds (with ``image_ids``
            and ``shape`` given): True continues the run silently, None (default)
            continues it with a UserWarning, False raises ``FileExistsError``.

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

    def __init__(self, root: str | os.PathLike, image_ids=None, shape=None, *,
                 resume: bool | None = None):
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
            self._check_resume(resume)

    def _check_resume(self, resume: bool | None) -> None:
        """Opening a folder that already records rounds for a run: continue it with
        ``resume=True``, warn with None, refuse with False."""
        if resume is not None and not isinstance(resume, bool):
            raise TypeError(f"resume must be True, False or None; got {resume!r}")
        done = sum(len(e["rounds"]) for e in self._m["images"].values())
        if not done or resume:
            return
        what = (f"{self.root} already records {done} (image, round) entries of a run with "
                f"the same image ids")
        if resume is False:
            raise FileExistsError(f"{what}; pass resume=True to continue that run, or give "
                                  f"a new root for a new run")
        warnings.warn(f"{what}: continuing that run (its recorded rounds are not selected "
                      f"again); pass resume=True to say so, or a new root for a new run",
                      UserWarning, stacklevel=3)

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
            bad = utf8_error(i)
            if bad:
                raise ValueError(f"image_ids must be valid Unicode text (encodable as UTF-8); "
                                 f"{i!r}: {bad}")
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            dup = next(i for i in ids if i in seen or seen.add(i))
            raise ValueError(f"image_ids must be unique; got {dup!r} more than once")

        def pair(s, name):
            try:
                h, w = s
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be a pair (H, W); got {s!r}") from None
            return check_shape(check_int(h, f"{name}[0]", minimum=1),
                               check_int(w, f"{name}[1]", minimum=1), name)

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
             "images": {i: {"shape": list(hw), "key": file_key(i), "rounds": {}}
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
            self._m = parse_manifest(data, self._manifest_path)
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

    def images_without(self, round: int) -> list[str]:
        """The image ids whose labels of ``round`` are not yet recorded (``[]`` once
        the round is complete), in the order given at creation.

        Example:
            >>> import tempfile
            >>> s = ActiveLabelState(tempfile.mkdtemp(), ["a", "b"], (2, 2))
            >>> s.images_without(0)
            ['a', 'b']
        """
        round = check_int(round, "round", minimum=0)
        self._refresh()
        return [i for i, e in self._m["images"].items() if str(round) not in e["rounds"]]

    def require_round(self, round: int, hint: str = "") -> None:
        """Raise ``RuntimeError`` when some image lacks the labels of ``round``
        (:meth:`images_without`), naming how many and the first; ``hint`` (the
        caller's likely cause) ends the message.

        Example:
            >>> import tempfile
            >>> s = ActiveLabelState(tempfile.mkdtemp(), ["a"], (2, 2))
            >>> s.require_round(0, "selected?")
            Traceback (most recent call last):
            ...
            RuntimeError: selection round 0 is not on disk for 1 images (first: 'a'); selected?
        """
        missing = self.images_without(round)
        if missing:
            raise RuntimeError(f"selection round {round} is not on disk for {len(missing)} "
                               f"images (first: {missing[0]!r})" + (f"; {hint}" if hint else ""))

    def _read_round(self, image_id: str, round: int, *, values: bool = False):
        """The packed bits of a done round, verified against the manifest.

        With ``values=True`` a pair ``(packed, labels or None)``.
        """
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
        packed, labels = decode_mask(data, tuple(entry["shape"]), path, values=True)
        if popcount(packed) != rec["pixels"]:
            raise CorruptFileError(path, f"holds {popcount(packed)} pixels; {MANIFEST} "
                                         f"records {rec['pixels']}")
        if (labels is not None) != rec.get("labels", False):
            raise CorruptFileError(path, f"{'holds' if labels is not None else 'lacks'} labels "
                                         f"but {MANIFEST} says it does "
                                         f"{'not' if labels is not None else ''}".rstrip())
        return (packed, labels) if values else packed

    def queried(self, image_id: str, round: int) -> np.ndarray:
        """``(H, W)`` bool: the pixels recorded for ``round`` of ``image_id``.

        Raises:
            ValueError: the round is not done for this image.
        """
        if not self.round_done(image_id, round):
            raise ValueError(f"round {round} is not done for image {image_id!r}; done rounds: "
                             f"{self.rounds(image_id)}")
        return unpack(self._read_round(image_id, int(round)), self.shape(image_id))

    def _done_rounds(self, entry: dict, rounds) -> list[int]:
        done = sorted(int(r) for r in entry["rounds"])
        if rounds is None:
            return done
        if isinstance(rounds, range):  # by arithmetic: range(10**9) costs no more than range(3)
            if len(rounds) and min(rounds[0], rounds[-1]) < 0:
                raise ValueError(f"rounds must hold round numbers >= 0; got {rounds!r}")
            return [r for r in done if r in rounds]
        if isinstance(rounds, (str, bytes)) or not hasattr(rounds, "__iter__"):
            raise TypeError(f"rounds must be an iterable of round numbers or None; got "
                            f"{type(rounds).__name__}")
        wanted = {check_int(r, "rounds[i]", minimum=0) for r in rounds}
        return [r for r in done if r in wanted]

    def labeled(self, image_id: str, rounds=None) -> np.ndarray:
        """``(H, W)`` bool: every pixel of ``image_id`` queried in a done round.

        Args:
            image_id: one of the state's image ids.
            rounds: only the done rounds among these (e.g. ``range(r)``: the
                rounds before ``r``; a ``range`` is matched by arithmetic, never
                expanded), or None for all done rounds.

        Example:
            >>> import tempfile
            >>> ActiveLabelState(tempfile.mkdtemp(), ["a"], (2, 2)).labeled("a").tolist()
            [[False, False], [False, False]]
        """
        entry = self._entry(image_id)
        h, w = entry["shape"]
        out = np.zeros((h * w + 7) // 8, dtype=np.uint8)
        for r in self._done_rounds(entry, rounds):
            out |= self._read_round(image_id, r)
        return unpack(out, (h, w))

    def labels(self, image_id: str, rounds=None, *, ignore_index: int = 255) -> np.ndarray:
        """``(H, W)`` class map of the stored labels, ``ignore_index`` where none is stored.

        Every done round among ``rounds`` (None: all) must have been added with
        ``labels=``; a pixel labeled in several rounds keeps the latest value.

        Returns:
            ``(H, W)`` uint8 (uint16 when a stored label or ``ignore_index``
            exceeds 255).

        Raises:
            ValueError: a done round of the image was added without labels, or
                ``ignore_index`` outside ``[0, 65535]``.

        Example:
            >>> import tempfile, numpy as np
            >>> s = ActiveLabelState(tempfile.mkdtemp(), ["a"], (2, 2))
            >>> s.add("a", np.eye(2, dtype=bool), round=0, labels=np.full((2, 2), 7))
            >>> s.labels("a").tolist()
            [[7, 255], [255, 7]]
        """
        ignore_index = check_int(ignore_index, "ignore_index", minimum=0)
        if ignore_index > 65535:  # the label maps (and their PNGs) are at most 16-bit
            raise ValueError(f"ignore_index must lie in [0, 65535]; got {ignore_index}")
        entry = self._entry(image_id)
        h, w = entry["shape"]
        parts = []
        for r in self._done_rounds(entry, rounds):
            packed, values = self._read_round(image_id, r, values=True)
            if values is None:
                raise ValueError(f"round {r} of image {image_id!r} was recorded without "
                                 f"labels; pass labels= to add() to store them")
            parts.append((unpack(packed, (h, w)), values))
        big = ignore_index > 255 or any(v.dtype == np.uint16 for _, v in parts)
        out = np.full((h, w), ignore_index, dtype=np.uint16 if big else np.uint8)
        for mask, values in parts:
            out[mask] = values
        return out

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

    def add(self, image_id: str, new_mask, *, round: int, labels=None) -> None:
        """Record the pixels queried for ``image_id`` in ``round`` (and their labels).

        Atomic and idempotent per ``(image_id, round)``: adding exactly the
        recorded pixels again is a no-op, so a restarted job can re-run its
        ``add`` calls. The mask file is written before the manifest, and the
        round is done once the manifest lists it.

        Args:
            image_id: one of the state's image ids.
            new_mask: ``(H, W)`` bool numpy array or tensor, the pixels queried
                in this round (pixels already labeled in an earlier round are
                allowed and counted once, in ``summary()["labeled"]``).
            round: round number in ``[0, 999999999]`` (``codec.MAX_ROUND``, the
                manifest's 9-digit round keys); per image, rounds never go backwards.
            labels: optional ``(H, W)`` integer class map (numpy or tensor,
                values in ``[0, 65535]``) of which only the queried pixels are
                stored, in the round's mask file (same write, same checksum);
                read back with :meth:`labels`, exported with :meth:`export_labels`.

        Raises:
            ValueError: unknown image id, wrong shape, a round before a done
                round of this image, or different pixels for a done round.
            TypeError: mask not bool.
            CorruptFileError: a mask file of this image is corrupt.
        """
        round = check_round(round)
        with self._locked():
            self._refresh()
            entry = self._entry(image_id)
            mask = check_mask(new_mask, tuple(entry["shape"]), "new_mask")
            values = None if labels is None else check_labels(labels, mask)
            if str(round) in entry["rounds"]:
                packed_old, old_values = self._read_round(image_id, round, values=True)
                old = unpack(packed_old, mask.shape)
                if values is not None and (old_values is None or not np.array_equal(
                        old_values.astype(np.int64), values.astype(np.int64))) \
                        and np.array_equal(old, mask):
                    raise ValueError(f"round {round} of image {image_id!r} is already done "
                                     f"with other labels (or none); a done round cannot be "
                                     f"changed")
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
            data = encode_mask(mask, values)
            os.makedirs(self._mask_dir, exist_ok=True)
            atomic_write(self.mask_path(image_id, round), data)  # 1: the mask file
            rec = {"pixels": popcount(packed), "new": popcount(packed & ~before),
                   "crc32": f"{zlib.crc32(data):08x}"}
            if values is not None:
                rec["labels"] = True
            entry["rounds"][str(round)] = rec
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

    export_queries = export.export_queries
    export_labels = export.export_labels

    def __repr__(self) -> str:
        s = self.summary()
        return (f"ActiveLabelState({self.root!r}, images={s['images']}, "
                f"rounds={[r['round'] for r in s['rounds']]}, labeled={s['labeled']})")
