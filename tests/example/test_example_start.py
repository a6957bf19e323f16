"""examples/deeplab_ada/train.py: a wrong command is one line on stderr and writes nothing.

Each mistake runs train.py in a subprocess (as a user would) and checks the
exit code, that stderr is a single ``train.py: error: ...`` line naming the
flag, and that the output directory was neither created nor filled; then the
corrected command starts in the same directory.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

EXAMPLE = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples",
                                       "deeplab_ada"))
SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "src"))
sys.path.insert(0, EXAMPLE)

import make_synthetic_data as gen  # noqa: E402
import train  # noqa: E402

TINY = ["backbone=tiny", "source_size=[96, 54]", "target_size=[96, 48]", "iterations=2",
        "selection_iters=[1]", "estimator_detach_iter=1", "dmc_dim=16", "save_every=0",
        "print_freq=1", "greedy_backend=torch", "flip_test=false"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ada_start_data")
    rng = np.random.default_rng(0)
    gen.write_gtav(str(root / "gtav"), 2, rng)
    gen.write_cityscapes(str(root / "cityscapes"), 2, 1, rng)
    (root / "empty").mkdir()
    return root


def train_py(*argv, timeout=300):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [SRC, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, os.path.join(EXAMPLE, "train.py"), *argv],
                          capture_output=True, text=True, env=env, timeout=timeout)


def command(data, out, *, source="gtav", drop=(), extra=(), settings=TINY):
    """A correct tiny command, less the flags in ``drop``, plus ``extra``."""
    flags = {"--source-root": str(data / source), "--target-root": str(data / "cityscapes"),
             "--output-dir": str(out), "--workers": "0", "--vis-images": "0"}
    argv = []
    for flag, value in flags.items():
        if flag not in drop:
            argv += [flag, value]
    return argv + ["--no-progress", *extra, "--set", *settings]


MISTAKES = {
    "no --source-root": (dict(drop=["--source-root"]), "--source-root is required"),
    "missing --config": (dict(extra=["--config", "no/such.yaml"]), "--config no/such.yaml"),
    "missing --pretrained": (dict(extra=["--pretrained", "no/such.pth"]), "--pretrained"),
    "missing --resume": (dict(extra=["--resume", "no/such.pth"]), "--resume no/such.pth"),
    "source root without images": (dict(source="empty"), "--source-root"),
    "unknown config field": (dict(settings=TINY + ["lr_typo=1"]), "unknown config fields"),
    "unknown device": (dict(extra=["--device", "gpu0"]), "--device gpu0"),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_a_mistake_is_one_line_and_writes_nothing(data, tmp_path, case):
    kwargs, expected = MISTAKES[case]
    out = tmp_path / "out"
    proc = train_py(*command(data, out, **kwargs))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train.py: error: "), proc.stderr
    assert expected in lines[0]
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this torch has a CUDA device")
def test_cuda_on_a_cpu_torch_is_one_line_and_an_existing_empty_dir_stays_empty(data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = train_py(*command(data, out, extra=["--device", "cuda"]))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--device cuda" in lines[0] and "--device cpu" in lines[0]
    assert list(out.iterdir()) == []


def test_weights_that_do_not_fit_are_refused_before_writing(data, tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    text = tmp_path / "text.pth"
    text.write_text("not a checkpoint\n")
    for path, flag in ((bad, "--init-from"), (text, "--init-from")):
        out = tmp_path / f"out_{path.stem}"
        with pytest.raises(train.UsageError, match=flag):
            train.main(train.get_args_parser().parse_args(
                command(data, out, extra=[flag, str(path)])))
        assert not out.exists()


def test_the_corrected_command_starts_after_a_failed_one(data, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(train.UsageError, match="--source-root"):
        train.main(train.get_args_parser().parse_args(command(data, out,
                                                              drop=["--source-root"])))
    assert not out.exists()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train.main(train.get_args_parser().parse_args(command(data, out)))
    finally:
        torch.set_num_threads(before)
    assert (out / "metrics.json").exists() and (out / "run.json").exists()


# ----------------------------------------------------------------- log format


def test_the_log_never_shows_minus_zero():
    import utils

    assert utils.fixed(-0.0) == "0.0000"
    assert utils.fixed(-1e-9, 5) == "0.00000"
    assert utils.fixed(-0.00006) == "-0.0001"
    assert utils.fixed(torch.tensor(-0.0).item()) == "0.0000"
    assert utils.fixed(2.5, 2) == "2.50" and utils.fixed(-2.5, 1) == "-2.5"
    assert utils.fixed(float("nan")) == "nan"


# ------------------------------------------------------------------- pictures


def _ink_columns(strip: np.ndarray) -> np.ndarray:
    """Columns of ``strip`` holding any non-black pixel."""
    return np.nonzero(strip.max(axis=(0, 2)) > 0)[0]


def test_enlarge_reaches_the_short_side_with_whole_blocks():
    import utils

    img = np.arange(64 * 128 * 3, dtype=np.uint32).reshape(64, 128, 3).astype(np.uint8)
    big = utils.enlarge(img)
    assert big.shape == (512, 1024, 3)
    assert np.array_equal(big[::8, ::8], img) and np.array_equal(big[7::8, 7::8], img)
    assert utils.enlarge(np.zeros((84, 128, 3), np.uint8)).shape[:2] == (588, 896)
    full = np.zeros((1024, 2048, 3), np.uint8)
    assert utils.enlarge(full) is full


def test_queried_picture_is_large_and_its_legend_is_not_cut():
    import utils

    image = np.full((64, 128, 3), 90, np.uint8)
    masks = [np.zeros((64, 128), bool) for _ in range(2)]
    masks[0][10, 10] = masks[1][40, 100] = True
    legend = ["round 0 (iter 50): 87 px", "round 1 (iter 100): 99999 px"]
    out = utils.queried_overlay(image, masks, legend, region_size=3)
    assert min(out.shape[:2]) >= 512 and out.shape[1] == 1024
    strip = out[512:]
    ink = _ink_columns(strip)
    assert ink.max() < out.shape[1] - 8  # the longest line ends well inside the picture
    # the text is drawn larger than at native size: at least twice the unscaled width
    assert ink.max() - ink.min() >= 2 * (utils.text_width(legend[1:], True) - 8) - 2
    assert tuple(out[80, 80]) == tuple(utils.ROUND_COLOURS[0])  # pixel (10, 10), enlarged 8x


def test_prediction_picture_has_enlarged_panels_and_a_class_legend():
    import datasets
    import utils

    names = ("road", "crater", "rover wheel track")
    pal = datasets.palette(3, names)
    gt = np.zeros((64, 128), np.int64)
    gt[:, 64:] = 2
    panels = [np.zeros((64, 128, 3), np.uint8), utils.colorize(gt, pal), utils.colorize(gt, pal)]
    out = utils.side_by_side(panels, ["image", "ground truth", "prediction"], legend=(names, pal))
    assert out.shape[1] >= 3 * 1024 and out.shape[0] > 512
    legend = utils.class_legend(names, pal, out.shape[1], scale=2)
    assert np.array_equal(out[-legend.shape[0]:], legend)
    colours = {tuple(c) for c in legend.reshape(-1, 3)}
    assert all(tuple(int(v) for v in c) in colours for c in pal[:3])  # every class swatch
    assert _ink_columns(legend).max() < out.shape[1] - 4
    # 20 entries (19 classes and "ignore") in a 400-pixel strip: several rows, nothing cut
    narrow = utils.class_legend(datasets.class_names(19), datasets.palette(19), 400)
    assert narrow.shape[1] == 400 and _ink_columns(narrow).max() < 400 - 2


def test_doctests_of_the_picture_and_data_helpers():
    import doctest

    import datasets
    import utils

    for module in (utils, datasets):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted >= 1, module.__name__
