"""ActiveLabelState: masks on disk, errors, crash safety under SIGKILL, concurrent readers."""

from __future__ import annotations

import csv
import json
import os
import signal
import time

import numpy as np
import pytest
import torch

from densecore import ActiveLabelState
from densecore.state import CorruptFileError

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the writer lock is POSIX flock")

SHAPE = (12, 20)


def mask_for(k: int, r: int, shape=SHAPE, p: float = 0.08) -> np.ndarray:
    """The deterministic mask that image ``k`` queries in round ``r``."""
    return np.random.default_rng([k, r]).random(shape) < p


def run_workload(root, ids, rounds, *, batch_round=None):
    """The writer job: every image, every round; round ``batch_round`` inside one batch."""
    state = ActiveLabelState(root, ids, SHAPE)
    for r in rounds:
        if r == batch_round:
            with state.batch():
                for k, i in enumerate(ids):
                    state.add(i, mask_for(k, r), round=r)
        else:
            for k, i in enumerate(ids):
                state.add(i, mask_for(k, r), round=r)


def snapshot(root) -> dict:
    """Every file under ``root`` (except the lock file) and its bytes."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            if f != ".lock":
                out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out


def union_upto(k: int, r: int) -> np.ndarray:
    out = np.zeros(SHAPE, bool)
    for q in range(r + 1):
        out |= mask_for(k, q)
    return out


# ----------------------------------------------------------------------------- basics

def test_add_labeled_round_done_summary(tmp_path):
    ids = ["a", "b", "c"]
    s = ActiveLabelState(tmp_path / "st", ids, SHAPE)
    assert not s.round_done("a", 0)
    assert not s.labeled("a").any() and s.labeled("a").shape == SHAPE
    m0, m1 = mask_for(0, 0), mask_for(0, 1)
    s.add("a", m0, round=0)
    s.add("a", torch.from_numpy(m1), round=1)  # tensors are accepted
    s.add("b", mask_for(1, 0), round=0)
    assert s.round_done("a", 0) and s.round_done("a", 1) and not s.round_done("b", 1)
    np.testing.assert_array_equal(s.labeled("a"), m0 | m1)
    np.testing.assert_array_equal(s.queried("a", 1), m1)
    assert s.rounds("a") == [0, 1] and s.rounds("c") == []
    summ = s.summary()
    assert summ["images"] == 3 and summ["pixels"] == 3 * SHAPE[0] * SHAPE[1]
    assert summ["rounds"] == [
        {"round": 0, "images": 2, "queried": int(m0.sum() + mask_for(1, 0).sum()),
         "new": int(m0.sum() + mask_for(1, 0).sum())},
        {"round": 1, "images": 1, "queried": int(m1.sum()), "new": int((m1 & ~m0).sum())}]
    assert (m1 & m0).any()  # the overlap is counted once
    assert summ["labeled"] == int((m0 | m1).sum() + mask_for(1, 0).sum())
    assert summ["ratio"] == summ["labeled"] / summ["pixels"]
    assert "labeled=" in repr(s)


def test_per_image_shapes_and_reopen(tmp_path):
    shapes = {"x": (4, 5), "y": (6, 3)}
    s = ActiveLabelState(tmp_path, list(shapes), shapes)
    s.add("y", np.ones((6, 3), bool), round=2)
    with pytest.raises(ValueError, match=r"new_mask must have shape \(4, 5\)"):
        s.add("x", np.ones((6, 3), bool), round=0)
    r = ActiveLabelState(tmp_path)  # read-only open: ids and shapes from the manifest
    assert r.image_ids == ["x", "y"] and r.shape("x") == (4, 5)
    assert r.labeled("y").all() and r.round_done("y", 2)
    assert ActiveLabelState(tmp_path, ["x", "y"], shapes).labeled("y").sum() == 18
    with pytest.raises(ValueError, match="'z' is not in it"):
        ActiveLabelState(tmp_path, ["x", "y", "z"], (4, 5))
    with pytest.raises(ValueError, match="'y' is missing"):
        ActiveLabelState(tmp_path, ["x"], (4, 5))
    with pytest.raises(ValueError, match=r"shape of image 'y' is \(4, 5\)"):
        ActiveLabelState(tmp_path, ["x", "y"], (4, 5))


def test_bad_input_errors(tmp_path):
    s = ActiveLabelState(tmp_path, ["a", "b"], SHAPE)
    with pytest.raises(ValueError, match="image_id 'nope' is not one of the 2 images"):
        s.add("nope", mask_for(0, 0), round=0)
    with pytest.raises(ValueError, match="image_id 'nope'"):
        s.labeled("nope")
    with pytest.raises(TypeError, match="new_mask must be a bool mask; got dtype uint8"):
        s.add("a", mask_for(0, 0).astype(np.uint8), round=0)
    with pytest.raises(TypeError, match="new_mask must be a bool mask; got dtype torch.float32"):
        s.add("a", torch.zeros(SHAPE), round=0)
    with pytest.raises(ValueError, match=r"new_mask must have shape \(12, 20\); got shape \(20, 12\)"):
        s.add("a", mask_for(0, 0).T.copy(), round=0)
    with pytest.raises(ValueError, match="round must be >= 0"):
        s.add("a", mask_for(0, 0), round=-1)
    with pytest.raises(TypeError, match="round must be an integer"):
        s.add("a", mask_for(0, 0), round=1.0)
    s.add("a", mask_for(0, 2), round=2)
    with pytest.raises(ValueError, match="round must not go backwards.*round 2 done; got round 1"):
        s.add("a", mask_for(0, 1), round=1)
    before = snapshot(tmp_path)
    s.add("a", mask_for(0, 2), round=2)  # identical re-add: a no-op
    assert snapshot(tmp_path) == before
    other = mask_for(0, 2).copy()
    other[0, 0] = ~other[0, 0]
    with pytest.raises(ValueError, match="round 2 of image 'a' is already done.*differs in 1 "):
        s.add("a", other, round=2)
    with pytest.raises(ValueError, match="round 3 is not done for image 'a'"):
        s.queried("a", 3)
    s.add("b", mask_for(1, 0), round=0)  # rounds are per image
    assert snapshot(tmp_path) != before


def test_constructor_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="pass image_ids and shape"):
        ActiveLabelState(tmp_path / "missing")
    with pytest.raises(ValueError, match="must be given together"):
        ActiveLabelState(tmp_path / "x", ["a"])
    with pytest.raises(ValueError, match="unique; got 'a' more than once"):
        ActiveLabelState(tmp_path / "x", ["a", "b", "a"], SHAPE)
    with pytest.raises(TypeError, match="single string"):
        ActiveLabelState(tmp_path / "x", "abc", SHAPE)
    with pytest.raises(ValueError, match="shape has no entry for image id 'b'"):
        ActiveLabelState(tmp_path / "x", ["a", "b"], {"a": (2, 2)})
    with pytest.raises(ValueError, match=r"shape\[0\] must be >= 1"):
        ActiveLabelState(tmp_path / "x", ["a"], (0, 4))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "image.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="not empty and has no manifest.json.*'image.png'"):
        ActiveLabelState(tmp_path / "data", ["a"], SHAPE)


# ----------------------------------------------------------------------------- corrupt files

def test_corrupt_manifest_names_the_file(tmp_path):
    ActiveLabelState(tmp_path, ["a"], SHAPE)
    path = str(tmp_path / "manifest.json")
    good = open(path, "rb").read()
    for bad, why in [(good[: len(good) // 2], "not valid JSON"),
                     (b'{"hello": 1}', "not a densecore label-state manifest"),
                     (good.replace(b'"version":1', b'"version":99'), "version 99"),
                     (good.replace(b'"shape":[12,20]', b'"shape":[12]'), "malformed entry"),
                     (b"\xff\xfe", "not valid JSON")]:
        open(path, "wb").write(bad)
        with pytest.raises(CorruptFileError, match=why) as e:
            ActiveLabelState(tmp_path)
        assert e.value.path == path and path in str(e.value)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other_round", "delete",
                                    "foreign_npz", "flip_bit"])
def test_corrupt_mask_file_names_the_file(tmp_path, damage):
    s = ActiveLabelState(tmp_path, ["a"], SHAPE)
    s.add("a", mask_for(0, 0), round=0)
    s.add("a", mask_for(0, 1), round=1)
    path = s.mask_path("a", 0)
    data = open(path, "rb").read()
    if damage == "truncate":
        open(path, "wb").write(data[:-20])
    elif damage == "garbage":
        open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + bytes(100))
    elif damage == "other_round":
        open(path, "wb").write(open(s.mask_path("a", 1), "rb").read())
    elif damage == "delete":
        os.unlink(path)
    elif damage == "foreign_npz":
        with open(path, "wb") as f:
            np.savez(f, mask=np.zeros(SHAPE, bool))
    else:
        b = bytearray(data)
        b[len(b) // 2] ^= 1
        open(path, "wb").write(bytes(b))
    with pytest.raises(CorruptFileError, match="missing" if damage == "delete" else "checksum") \
            as e:
        s.labeled("a")
    assert e.value.path == path and os.path.basename(path) in str(e.value)
    with pytest.raises(CorruptFileError):  # also on re-adding the round
        s.add("a", mask_for(0, 0), round=0)


def test_decoder_checks_content(tmp_path):
    """A file whose checksum matches but whose content is wrong is still rejected."""
    from densecore.state import _decode_mask

    with pytest.raises(CorruptFileError, match="expected arrays 'packed' and 'shape'"):
        import io
        buf = io.BytesIO()
        np.savez(buf, mask=np.zeros(SHAPE, bool))
        _decode_mask(buf.getvalue(), SHAPE, "f.npz")
    with pytest.raises(CorruptFileError, match="not a readable mask file"):
        _decode_mask(b"PK\x03\x04garbage", SHAPE, "f.npz")
    from densecore.state import _encode_mask

    with pytest.raises(CorruptFileError, match=r"mask shape \[20, 12\] does not match"):
        _decode_mask(_encode_mask(np.zeros(SHAPE[::-1], bool)), SHAPE, "f.npz")


# ----------------------------------------------------------------------------- format, export

def test_format_is_readable_without_densecore(tmp_path):
    """docs/state.md: json + numpy alone recover every mask."""
    ids = ["aachen/aachen_000000_000019", "b, with comma"]
    s = ActiveLabelState(tmp_path, ids, SHAPE)
    for r in range(3):
        for k, i in enumerate(ids):
            s.add(i, mask_for(k, r), round=r)
    manifest = json.load(open(tmp_path / "manifest.json"))
    assert manifest["format"] == "densecore-active-label-state" and manifest["version"] == 1
    for k, i in enumerate(ids):
        entry = manifest["images"][i]
        h, w = entry["shape"]
        union = np.zeros((h, w), bool)
        for r in entry["rounds"]:
            path = tmp_path / manifest["mask_dir"] / f"{entry['key']}.r{r}.npz"
            with np.load(path) as z:
                m = np.unpackbits(z["packed"], count=h * w).reshape(h, w).astype(bool)
                assert z["shape"].tolist() == [h, w]
            np.testing.assert_array_equal(m, mask_for(k, int(r)))
            assert entry["rounds"][r]["pixels"] == m.sum()
            union |= m
        np.testing.assert_array_equal(union, s.labeled(i))
        assert "/" not in entry["key"] and " " not in entry["key"]


def test_deterministic_bytes(tmp_path, monkeypatch):
    """Equal histories give byte-identical directories (no timestamps in files)."""
    run_workload(tmp_path / "one", ["a", "b"], range(2))
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 86400 * 400)  # a year later
    run_workload(tmp_path / "two", ["a", "b"], range(2), batch_round=1)
    assert snapshot(tmp_path / "one") == snapshot(tmp_path / "two")


def test_export_queries(tmp_path):
    ids = ["a", "b, c", "d"]
    s = ActiveLabelState(tmp_path / "st", ids, SHAPE)
    s.add("a", mask_for(0, 1), round=1)
    s.add("b, c", mask_for(1, 1), round=1)
    s.add("d", mask_for(2, 0), round=0)
    n = s.export_queries(1, tmp_path / "q.jsonl")
    lines = [json.loads(x) for x in open(tmp_path / "q.jsonl")]
    assert [x["image"] for x in lines] == ["a", "b, c"]
    for k, x in enumerate(lines):
        assert x["round"] == 1 and (x["height"], x["width"]) == SHAPE
        assert x["pixels"] == np.argwhere(mask_for(k, 1)).tolist()
    assert n == mask_for(0, 1).sum() + mask_for(1, 1).sum()
    assert s.export_queries(1, tmp_path / "q.csv") == n
    rows = list(csv.reader(open(tmp_path / "q.csv")))
    assert rows[0] == ["image", "round", "y", "x"] and len(rows) == n + 1
    got = np.zeros(SHAPE, bool)
    for image, r, y, x in rows[1:]:
        assert r == "1"
        if image == "b, c":
            got[int(y), int(x)] = True
    np.testing.assert_array_equal(got, mask_for(1, 1))
    assert s.export_queries(7, tmp_path / "empty.txt", format="csv") == 0
    with pytest.raises(ValueError, match="cannot tell the format"):
        s.export_queries(1, tmp_path / "q.txt")
    with pytest.raises(ValueError, match="format must be 'jsonl' or 'csv'"):
        s.export_queries(1, tmp_path / "q.txt", format="xml")
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_batch_writes_manifest_once_at_exit(tmp_path):
    s = ActiveLabelState(tmp_path, ["a", "b", "c"], SHAPE)
    reader = ActiveLabelState(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        with s.batch():
            s.add("a", mask_for(0, 0), round=0)
            s.add("b", mask_for(1, 0), round=0)
            assert s.round_done("a", 0) and not reader.round_done("a", 0)
            raise RuntimeError("boom")
    assert reader.round_done("a", 0) and reader.round_done("b", 0)  # returned adds recorded
    assert not reader.round_done("c", 0)


def test_leftover_temporary_files_are_removed_by_the_next_writer(tmp_path):
    s = ActiveLabelState(tmp_path, ["a"], SHAPE)
    junk = tmp_path / f".manifest.json.{'0' * 16}.tmp"
    junk.write_bytes(b"half")
    assert ActiveLabelState(tmp_path).labeled("a").sum() == 0  # readers ignore it
    s.add("a", mask_for(0, 0), round=0)
    assert not junk.exists()


# ----------------------------------------------------------------------------- crash safety

@pytest.fixture
def fast_tmp(tmp_path):
    """A RAM-backed directory where there is one (fsync is then cheap), else ``tmp_path``.

    A process kill loses no data that reached the kernel, so a RAM file system
    exercises the same write protocol as a disk.
    """
    if not os.path.isdir("/dev/shm") or not os.access("/dev/shm", os.W_OK):
        yield tmp_path
        return
    import shutil
    import tempfile
    from pathlib import Path

    d = tempfile.mkdtemp(dir="/dev/shm", prefix="densecore-test-")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _fork(fn) -> int:
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            fn()
            code = 0
        finally:
            os._exit(code)
    return pid


IDS = ["a", "b", "c", "d"]
ROUNDS = range(3)


def test_sigkill_at_random_moments_then_restart_equals_uninterrupted_run(fast_tmp):
    """A writer process SIGKILLed at random times, restarted, ends with the same files."""
    ref = fast_tmp / "ref"
    job = lambda root: run_workload(root, IDS, ROUNDS, batch_round=1)  # noqa: E731
    t0 = time.perf_counter()
    job(ref)
    full = time.perf_counter() - t0
    expected = snapshot(ref)
    rng = np.random.default_rng(2024)
    kills_mid_run = 0
    for trial in range(30):
        root = fast_tmp / f"t{trial}"
        for _ in range(int(rng.integers(1, 4))):
            pid = _fork(lambda: job(root))
            time.sleep(float(rng.uniform(0, full)))
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            killed = os.WIFSIGNALED(status)
            kills_mid_run += killed
            assert killed or os.WEXITSTATUS(status) == 0
            if os.path.exists(root / "manifest.json"):  # readable between kills
                s = ActiveLabelState(root)
                for k, i in enumerate(IDS):
                    done = s.rounds(i)
                    assert done == list(range(len(done)))
                    want = union_upto(k, done[-1]) if done else np.zeros(SHAPE, bool)
                    np.testing.assert_array_equal(s.labeled(i), want)
        job(root)  # the restart re-runs the same adds to completion
        assert snapshot(root) == expected, f"trial {trial}"
    assert kills_mid_run >= 25  # the kills did interrupt running writers


def test_kill_between_any_two_system_calls(fast_tmp):
    """Exhaustive: the writer dies right before its k-th file-system call, for every k."""
    ids, rounds = ["a", "b"], range(2)
    job = lambda root: run_workload(root, ids, rounds, batch_round=1)  # noqa: E731
    names = ["open", "close", "fsync", "replace", "unlink", "makedirs", "mkdir", "fdopen",
             "fstat", "stat", "listdir"]

    def hooked(root, k):
        count = [0]

        def wrap(fn):
            def inner(*a, **kw):
                count[0] += 1
                if count[0] == k:
                    os._exit(9)
                return fn(*a, **kw)
            return inner

        for n in names:
            setattr(os, n, wrap(getattr(os, n)))
        import builtins
        builtins.open = wrap(builtins.open)
        job(root)
        os._exit(0 if k > 0 else count[0] % 256 + 10)  # k = 0: report the number of calls

    pid = _fork(lambda: hooked(fast_tmp / "count", 0))
    n_calls = os.WEXITSTATUS(os.waitpid(pid, 0)[1]) - 10
    assert n_calls > 40, n_calls
    job(fast_tmp / "ref")
    expected = snapshot(fast_tmp / "ref")
    for k in range(1, n_calls + 1):
        root = fast_tmp / f"k{k}"
        pid = _fork(lambda: hooked(root, k))
        status = os.waitpid(pid, 0)[1]
        assert os.WEXITSTATUS(status) == 9, k
        job(root)
        assert snapshot(root) == expected, f"killed before call {k}"


def test_concurrent_reader_never_fails(fast_tmp):
    """A reader polling while a writer process writes sees only complete, growing states."""
    ids = ["a", "b", "c"]
    root = fast_tmp / "st"
    ActiveLabelState(root, ids, SHAPE)
    pid = _fork(lambda: run_workload(root, ids, range(8)))
    reader = ActiveLabelState(root)
    seen = set()
    last = {i: -1 for i in ids}
    while True:
        finished = os.waitpid(pid, os.WNOHANG)[0] == pid
        for k, i in enumerate(ids):
            done = reader.rounds(i)
            mask = reader.labeled(i)  # never raises, never torn
            top = max(done, default=-1)
            # labeled() may see a newer manifest than rounds(): a prefix at least this long
            assert any(np.array_equal(mask, union_upto(k, r) if r >= 0 else np.zeros(SHAPE, bool))
                       for r in range(top, 8)), (i, done)
            assert top >= last[i]
            last[i] = top
            seen.add((i, top))
        if finished:
            break
    assert all(last[i] == 7 for i in ids)
    assert len(seen) > len(ids) + 2  # the reader saw intermediate states


def test_two_writers_do_not_interleave(fast_tmp):
    """Two processes adding to the same state: every add is recorded, none is lost."""
    ids = [f"img{i}" for i in range(6)]
    root = fast_tmp / "st"
    ActiveLabelState(root, ids, SHAPE)

    def writer(part):
        s = ActiveLabelState(root, ids, SHAPE)
        for r in range(2):
            for k in range(part, len(ids), 2):
                s.add(ids[k], mask_for(k, r), round=r)

    pids = [_fork(lambda p=p: writer(p)) for p in (0, 1)]
    for pid in pids:
        assert os.WEXITSTATUS(os.waitpid(pid, 0)[1]) == 0
    s = ActiveLabelState(root)
    for k, i in enumerate(ids):
        assert s.rounds(i) == [0, 1]
        np.testing.assert_array_equal(s.labeled(i), union_upto(k, 1))


def test_images_without_a_round_lists_those_not_yet_recorded(tmp_path):
    # the one check the Lightning callback and the mmengine hook make after every rank
    # finished a round
    st = ActiveLabelState(tmp_path, ["a", "b", "c"], (2, 2))
    m = np.zeros((2, 2), bool)
    m[0, 1] = True
    st.add("b", m, round=0)
    assert st.images_without(0) == ["a", "c"]
    assert st.images_without(1) == ["a", "b", "c"]
    with pytest.raises(RuntimeError, match=r"round 0 is not on disk for 2 images \(first: 'a'\); "
                                           r"shared\?"):
        st.require_round(0, "shared?")
    st.add("a", m, round=0)
    st.add("c", m, round=0)
    assert st.images_without(0) == []
    st.require_round(0)  # complete: no error
    with pytest.raises(ValueError, match="round"):
        st.images_without(-1)
