"""``densecore`` CLI: --version, and one-line errors with exit code 2 instead of tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import densecore
from densecore.cli import main


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    return exc.value.code, capsys.readouterr()


def test_version(capsys):
    code, out = run_cli(capsys, "--version")
    assert code == 0 and out.out.strip() == f"densecore {densecore.__version__}"


def test_console_script_bad_argument_is_one_line_exit_2(tmp_path):
    np.save(tmp_path / "F.npy", np.zeros((5, 2), np.float32))
    proc = subprocess.run([sys.executable, "-m", "densecore.cli", "select", "--features",
                           str(tmp_path / "F.npy"), "--budget", "9", "--out",
                           str(tmp_path / "o.npy"), "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("densecore select: error: budget")


def test_select_cuda_without_cuda(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    np.save(tmp_path / "F.npy", np.random.default_rng(0).normal(size=(20, 3)))
    code, out = run_cli(capsys, "select", "--features", tmp_path / "F.npy", "--budget", 2,
                        "--device", "cuda", "--out", tmp_path / "o.npy")
    assert code == 2 and "CUDA is not available" in out.err and "Traceback" not in out.err


def test_select_npy_header_claiming_1e11_rows(tmp_path, capsys):
    path = tmp_path / "F.npy"
    np.save(path, np.zeros((4, 2), np.float32))
    raw = path.read_bytes()
    header_end = raw.index(b"\n") + 1
    header = raw[:header_end].replace(b"(4, 2)", b"(100000000000, 2)")
    body_len = len(raw[:header_end])
    # keep the header length (the format pads it to a multiple of 64 bytes)
    header = header[:-1].ljust(body_len - 1)[: body_len - 1] + b"\n"
    path.write_bytes(header + raw[header_end:])
    code, out = run_cli(capsys, "select", "--features", path, "--budget", 2, "--out",
                        tmp_path / "o.npy")
    assert code == 2 and "claims shape (100000000000, 2)" in out.err


def test_bench_speed_without_sklearn_skips_it_or_fails_in_one_line(capsys, monkeypatch):
    import importlib.util
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sklearn" else real_find_spec(name, *a))
    code, out = run_cli(capsys, "bench", "speed", "--methods", "sklearn")
    assert code == 2 and "scikit-learn" in out.err and "Traceback" not in out.err

    assert main(["bench", "speed", "--n", "300", "--dim", "4", "--budget", "5", "--repeats",
                 "1", "--methods", "engine", "naive"]) == 0
    # the default method list drops sklearn with a note instead of crashing
    monkeypatch.setattr("densecore.bench.speed.run_speed",
                        lambda **kw: [] if "sklearn" not in kw["methods"] else 1 / 0)
    monkeypatch.setattr("densecore.bench.speed.format_table", lambda rows: "table")
    assert main(["bench", "speed"]) == 0
    assert "skipping the sklearn baseline" in capsys.readouterr().err


def test_missing_optional_package_is_one_line(capsys, monkeypatch):
    def needs_matplotlib(**kw):
        raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")

    monkeypatch.setattr("densecore.demo.run_demo", needs_matplotlib)
    code, out = run_cli(capsys, "demo")
    assert code == 2 and out.err.strip() == ("densecore demo: error: needs the optional "
                                             "package 'matplotlib' (pip install matplotlib)")

    def other_missing(**kw):
        raise ModuleNotFoundError("No module named 'densecore_internal'", name="densecore_internal")

    monkeypatch.setattr("densecore.demo.run_demo", other_missing)
    with pytest.raises(ModuleNotFoundError):  # a broken install is not a usage error
        main(["demo"])


def test_demo_bad_budgets_is_one_line(capsys):
    code, out = run_cli(capsys, "demo", "--n", "100", "--budgets", "1000", "--no-progress")
    assert code == 2 and "Traceback" not in out.err and out.err.count("\n") == 1


def test_import_densecore_exposes_synthetic_and_distributed():
    code = ("import densecore; print(densecore.synthetic.gaussian_mixture.__name__, "
            "densecore.distributed.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["gaussian_mixture", "densecore.distributed"]
    with pytest.raises(AttributeError):
        densecore.no_such_submodule  # noqa: B018


def _err_line(out) -> str:
    """The whole of stderr, which must be one line."""
    assert out.err.count("\n") == 1 and "Traceback" not in out.err, out.err
    return out.err.strip()


@pytest.mark.parametrize("argv, message", [
    (["select", "--budget", "3"],
     "densecore select: error: the following arguments are required: --features, --out"),
    (["select", "--features", "F.npy", "--budget", "x", "--out", "o.npy"],
     "densecore select: error: argument --budget: invalid int value: 'x'"),
    (["select", "--features", "F.npy", "--budget", "3", "--out", "o.npy", "--metric", "l1"],
     "densecore select: error: argument --metric: invalid choice: 'l1' (choose from "
     "'euclidean', 'cosine')"),
    (["bogus"], "densecore: error: argument COMMAND: invalid choice: 'bogus' (choose from "
     "'demo', 'select', 'advise', 'bench')"),
    ([], "densecore: error: name a command: demo, select, advise or bench (densecore --help)"),
    (["bench"], "densecore bench: error: name a benchmark: speed or bounds "
     "(densecore bench --help)"),
    (["bench", "speed", "--n", "ten"],
     "densecore bench speed: error: argument --n: invalid int value: 'ten'"),
])
def test_argparse_errors_are_one_line_without_usage(capsys, argv, message):
    code, out = run_cli(capsys, *argv)
    assert code == 2 and _err_line(out) == message


@pytest.mark.parametrize("make, message", [
    (lambda p: np.save(p, np.arange(40).reshape(20, 2)),
     "features must be a floating array; got dtype int64"),
    (lambda p: p.write_text("1.0 2.0\n3.0 4.0\n"),
     "this is a text file, not a .npy, .npz or .pt array"),
    (lambda p: p.write_bytes(bytes(range(256)) * 4),
     "not a .npy or .npz file (no NumPy or zip header)"),
])
def test_select_input_errors_are_one_clear_line(tmp_path, capsys, make, message):
    path = tmp_path / "F.npy"
    make(path)
    code, out = run_cli(capsys, "select", "--features", path, "--budget", 2,
                        "--out", tmp_path / "o.npy", "--no-progress")
    assert code == 2 and message in _err_line(out)
    assert "pickle" not in out.err and "torch.int64" not in out.err
    assert not (tmp_path / "o.npy").exists()


def test_select_pickled_pt_is_one_short_line(tmp_path, capsys):
    import pickle
    with open(tmp_path / "F.pt", "wb") as f:
        pickle.dump({"features": np.zeros((3, 2))}, f, protocol=4)  # not a weights-only file
    code, out = run_cli(capsys, "select", "--features", tmp_path / "F.pt", "--budget", 2,
                        "--out", tmp_path / "o.npy", "--no-progress")
    line = _err_line(out)
    assert code == 2 and "refused it: it holds more than tensors" in line
    assert len(line) - len(str(tmp_path)) < 200 and "weights_only` argument" not in line


@pytest.mark.parametrize("out_name, message", [
    ("o.csv", "--out '{t}/o.csv': name the file .npy (int64 array) or .txt (one index per "
              "line); got suffix '.csv'"),
    ("o", "--out '{t}/o': name the file .npy (int64 array) or .txt (one index per line); "
          "got suffix 'none'"),
    ("missing/o.npy", "--out '{t}/missing/o.npy': the folder '{t}/missing' does not exist"),
])
def test_select_bad_out_is_refused_before_reading_anything(tmp_path, capsys, out_name,
                                                            message):
    # the features file does not even exist: --out is checked first
    code, out = run_cli(capsys, "select", "--features", tmp_path / "none.npy", "--budget", 2,
                        "--out", tmp_path / out_name)
    assert code == 2
    assert _err_line(out) == "densecore select: error: " + message.format(t=tmp_path)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("extra, message", [
    (["--labeled-densities", "{t}/D.npy"], "--labeled-densities needs --labeled-features"),
    (["--densities", "knn", "--labeled-features", "{t}/F.npy", "--labeled-densities",
      "{t}/D.npy"], "--labeled-densities goes with --densities FILE"),
    (["--densities", "{t}/D.npy", "--labeled-features", "{t}/F.npy"],
     "--labeled-features with --densities FILE needs --labeled-densities"),
    (["--sampler", "kcenter", "--densities", "knn"], "--sampler kcenter ignores densities"),
])
def test_select_inconsistent_options(tmp_path, capsys, extra, message):
    np.save(tmp_path / "F.npy", np.random.default_rng(0).normal(size=(20, 3)))
    np.save(tmp_path / "D.npy", np.ones(20))
    code, out = run_cli(capsys, "select", "--features", tmp_path / "F.npy", "--budget", 2,
                        "--out", tmp_path / "o.npy",
                        *[a.format(t=tmp_path) for a in extra])
    assert code == 2 and message in _err_line(out)
    assert not (tmp_path / "o.npy").exists()
