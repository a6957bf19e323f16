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

Modules: :mod:`~densecore.state.store` (:class:`ActiveLabelState`: opening,
locking, reading, recording rounds), :mod:`~densecore.state.codec` (mask files and
the manifest, bytes to values and back, :class:`CorruptFileError`) and
:mod:`~densecore.state.export` (query coordinates and Cityscapes-style label PNGs).

Shape:
    masks ``(H, W)`` bool, one ``(H, W)`` per image (given for all images or
    per image id); pixel coordinates ``(y, x)`` = (row, column).
"""

from ..io import atomic_write
from .codec import CorruptFileError
from .codec import decode_mask as _decode_mask  # noqa: F401  (tests read mask files)
from .codec import encode_mask as _encode_mask  # noqa: F401
from .store import ActiveLabelState

__all__ = ["ActiveLabelState", "CorruptFileError", "atomic_write"]
