"""densecore.io: contents written, no temporary file left, old file kept on failure."""

import json
import os
import stat

import pytest

from densecore import io as atomic
from densecore import state
from densecore.io import atomic_save_figure, atomic_write, atomic_write_json, atomic_write_text
from densecore.bench.report import write_json_atomic


def test_state_reexports_the_same_function():
    assert state.atomic_write is atomic_write


def test_write_replaces_contents_and_leaves_only_the_file(tmp_path):
    p = tmp_path / "a.bin"
    atomic_write(p, b"old contents, longer than the new")
    atomic_write(str(p), b"new")
    assert p.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_file_mode_follows_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "a", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a").st_mode) == 0o640


def test_text_is_encoded(tmp_path):
    p = tmp_path / "t.txt"
    atomic_write_text(p, "caf\u00e9\n")
    assert p.read_bytes() == "caf\u00e9\n".encode()
    atomic_write_text(p, "caf\u00e9", encoding="latin-1")
    assert p.read_bytes() == b"caf\xe9"


def test_json_matches_json_dump_with_indent_and_newline(tmp_path):
    obj = {"b": [1, 2.5, None], "a": {"x": "\u00e9"}, "nan": float("nan")}
    atomic_write_json(tmp_path / "r.json", obj)
    text = (tmp_path / "r.json").read_text()
    with open(tmp_path / "ref.json", "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    assert text == (tmp_path / "ref.json").read_text()
    assert text.endswith("}\n") and "\n  " in text


def test_write_json_atomic_creates_the_directory(tmp_path):
    p = tmp_path / "new" / "dir" / "r.json"
    write_json_atomic(str(p), {"a": 1})
    assert json.loads(p.read_text()) == {"a": 1}


def test_missing_directory_is_an_error_without_leftovers(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "missing" / "a", b"x")
    assert os.listdir(tmp_path) == []


def test_unserialisable_json_leaves_old_file(tmp_path):
    p = tmp_path / "r.json"
    p.write_text("old")
    with pytest.raises(TypeError):
        atomic_write_json(p, {"a": object()})
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["r.json"]


def test_failing_replace_leaves_old_file_and_removes_temp(tmp_path, monkeypatch):
    p = tmp_path / "a.txt"
    p.write_bytes(b"old")
    seen = []

    def broken_replace(src, dst):
        seen.append(src)
        assert os.path.exists(src)  # the temporary file was fully written
        with open(src, "rb") as f:
            assert f.read() == b"new"
        raise OSError("disk gone")

    monkeypatch.setattr(atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write(p, b"new")
    monkeypatch.undo()
    assert len(seen) == 1
    assert os.path.dirname(seen[0]) == str(tmp_path)  # same directory as the destination
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_failing_fsync_leaves_old_file_and_removes_temp(tmp_path, monkeypatch):
    p = tmp_path / "a.txt"
    p.write_bytes(b"old")

    def broken_fsync(fd):
        raise OSError("io error")

    monkeypatch.setattr(atomic.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="io error"):
        atomic_write(p, b"new")
    monkeypatch.undo()
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_figure_is_rendered_then_written(tmp_path):
    Figure = pytest.importorskip("matplotlib.figure").Figure
    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    p = tmp_path / "f.png"
    atomic_save_figure(fig, p, dpi=30)
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    atomic_save_figure(fig, tmp_path / "f.svg", format="svg")
    assert b"<svg" in (tmp_path / "f.svg").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["f.png", "f.svg"]


def test_figure_that_fails_to_render_leaves_old_file(tmp_path):
    class Broken:
        def savefig(self, buf, **kwargs):
            buf.write(b"partial")
            raise RuntimeError("render failed")

    p = tmp_path / "f.png"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        atomic_save_figure(Broken(), p)
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.png"]


@pytest.mark.parametrize("write", [lambda p: atomic_write(p, b"new"),
                                   lambda p: atomic_write_text(p, "new"),
                                   lambda p: atomic_write_json(p, {"a": 1})],
                         ids=["bytes", "text", "json"])
def test_the_file_then_its_directory_are_fsynced_around_the_rename(tmp_path, monkeypatch,
                                                                   write):
    # a spy on os.fsync / os.replace: the data reaches the disk before the rename,
    # and the directory entry after it (without the second fsync a crash can lose
    # the rename even though the call returned)
    path = tmp_path / "out.json"
    path.write_bytes(b"old")
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
        same = (st.st_dev, st.st_ino) == (os.stat(tmp_path).st_dev, os.stat(tmp_path).st_ino)
        events.append((f"fsync-{kind}", same if kind == "dir" else None))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.fspath(dst) == os.fspath(path)))
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    write(path)
    assert events == [("fsync-file", None), ("replace", True), ("fsync-dir", True)]
