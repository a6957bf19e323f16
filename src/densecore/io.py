"""File output, ``densecore.io``: atomic writes, so readers see the old file or the
new one, never a partial one.

Every writer renders the complete contents in memory, then :func:`atomic_write`
writes them to a temporary file ``.<name>.<random>.tmp`` in the destination's
directory, fsyncs it, renames it over the destination with ``os.replace`` and
fsyncs the directory. On error the temporary file is removed and the previous
file, if any, is left untouched. The destination directory must exist.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets

__all__ = ["atomic_save_figure", "atomic_write", "atomic_write_json", "atomic_write_text"]


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix.

    Writes a temporary file ``.<name>.<random>.tmp`` in the same directory,
    flushes and fsyncs it, renames it over ``path`` (``os.replace``) and
    fsyncs the directory. On error the temporary file is removed.

    Args:
        path: destination file; its directory must exist.
        data: the complete new contents.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> atomic_write(os.path.join(d, "a.txt"), b"hello")
        >>> open(os.path.join(d, "a.txt"), "rb").read()
        b'hello'
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write the string ``text`` to ``path`` atomically (:func:`atomic_write`).

    Args:
        path: destination file; its directory must exist.
        text: the complete new contents, written as given (no newline added).
        encoding: text encoding of the file.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "a.txt")
        >>> atomic_write_text(p, "caf\\u00e9\\n"); open(p, "rb").read()
        b'caf\\xc3\\xa9\\n'
    """
    atomic_write(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as JSON (indent 2, trailing newline) to ``path`` atomically.

    The object is encoded completely before anything is written, so an
    unserialisable object leaves ``path`` as it was.

    Args:
        path: destination file; its directory must exist.
        obj: anything ``json.dumps`` accepts.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "r.json")
        >>> atomic_write_json(p, {"a": 1}); open(p).read()
        '{\\n  "a": 1\\n}\\n'
    """
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_save_figure(fig, path: str | os.PathLike, **savefig_kwargs) -> None:
    """Render a matplotlib figure in memory and write it to ``path`` atomically.

    Args:
        fig: a ``matplotlib.figure.Figure`` (its ``savefig`` is called on an
            in-memory buffer; this module does not import matplotlib).
        path: destination file; its directory must exist.
        **savefig_kwargs: passed to ``fig.savefig``; ``format`` defaults to ``"png"``.

    Example:
        >>> import tempfile, os
        >>> from matplotlib.figure import Figure
        >>> fig = Figure(figsize=(1, 1))
        >>> _ = fig.subplots().plot([0, 1], [0, 1])
        >>> p = os.path.join(tempfile.mkdtemp(), "f.png")
        >>> atomic_save_figure(fig, p, dpi=20); open(p, "rb").read(4)
        b'\\x89PNG'
    """
    savefig_kwargs.setdefault("format", "png")
    buf = io.BytesIO()
    fig.savefig(buf, **savefig_kwargs)
    atomic_write(path, buf.getvalue())
