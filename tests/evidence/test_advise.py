"""densecore.advise: known answers on synthetic candidates, the held-out measures by hand,
input errors, the docs snippet and the ``densecore advise`` command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import densecore
from densecore.advise import _score, advise
from densecore.cli import main

ROOT = Path(__file__).resolve().parents[2]


def clusters(seed: int, n_tight: int = 6, n_broad: int = 3, per: int = 300):
    """Tight clusters (a dense core, sd 0.3, with 10 % far points, sd 4: a small average
    radial distance in a large radius) and broad ones (uniform disks of radius 8, four
    classes by quadrant). Returns ``(x (N, 2), labels (N,), spread (N,))``: ``spread`` is
    the expected distance to the cluster's centre (0.9 * 0.38 + 0.1 * 5 for a tight
    cluster, 2/3 * 8 for a disk), so ``1 / spread`` is a calibrated density by
    construction."""
    g = np.random.default_rng(seed)
    centres = g.uniform(-40, 40, size=(n_tight + n_broad, 2))
    xs, ys, spread = [], [], []
    for i in range(n_tight):
        core = g.normal(centres[i], 0.3, size=(per * 9 // 10, 2))
        far = centres[i] + g.normal(0, 4.0, size=(per - len(core), 2))
        xs += [core, far]
        ys.append(np.full(per, i))
        spread.append(np.full(per, 0.85))
    for j in range(n_broad):
        r = 8 * np.sqrt(g.uniform(size=2 * per))
        a = g.uniform(0, 2 * np.pi, 2 * per)
        xs.append(centres[n_tight + j] + np.stack([r * np.cos(a), r * np.sin(a)], 1))
        ys.append(n_tight + 4 * j + (a // (np.pi / 2)).astype(int))
        spread.append(np.full(2 * per, 16 / 3))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys), np.concatenate(spread)


def test_calibrated_density_with_labels_recommends_density_aware():
    x, y, spread = clusters(0)
    adv = advise(x, 1 / spread, 80, labels=y, seed=0)
    (c,) = adv.comparisons
    assert adv.recommended == "density-aware" and adv.verdict == "difference"
    assert c["better"] and c["low"] > 0 and c["p_holm"] < 0.05
    assert adv.scores["density-aware"]["label_miou"] > adv.scores["k-center"]["label_miou"]
    assert adv.calibration_slope > 0


def test_shuffled_density_recommends_kcenter():
    # the same candidates, the densities shuffled: they no longer say where coverage is
    # needed, and the density-aware greedy covers the held-out half worse
    x, _, spread = clusters(0)
    dens = np.random.default_rng(0).permutation(1 / spread)
    adv = advise(x, dens, 80, seed=0)
    (c,) = adv.comparisons
    assert adv.recommended == "k-center" and adv.verdict == "difference"
    assert c["worse"] and c["low"] > 0  # mean_ard: density-aware minus k-center > 0
    assert adv.measure == "mean_ard"
    calibrated = advise(x, 1 / spread, 80, seed=0, splits=2)
    assert adv.calibration_r2 < calibrated.calibration_r2


def test_constant_density_says_no_difference():
    # with one density everywhere Algorithm 1 is k-center greedy: every split ties
    x, y, _ = clusters(1)
    adv = advise(x, np.full(len(x), 2.0), 80, labels=y, seed=3, splits=4)
    (c,) = adv.comparisons
    assert adv.verdict == "no difference" and adv.recommended == "k-center"
    assert c["mean"] == 0.0 and c["wins"] == c["losses"] == 0 and c["p_holm"] == 1.0
    assert "no sampler differs" in adv.reason


def test_more_samplers_are_holm_adjusted_together():
    x, y, spread = clusters(2, per=100)
    adv = advise(x, 1 / spread, 30, labels=y, samplers=("density-aware", "typicality"),
                 splits=3)
    assert [c["sampler"] for c in adv.comparisons] == ["density-aware", "typicality"]
    ps = sorted((c["p"], c["p_holm"]) for c in adv.comparisons)
    assert ps[0][1] == pytest.approx(min(1.0, 2 * ps[0][0]))  # Holm: smallest p times m
    assert all(h >= p for p, h in ps)
    assert set(adv.seconds) == {"k-center", "density-aware", "typicality"}
    assert all(s >= 0 for s in adv.seconds.values())


def test_heldout_measures_match_a_hand_computation():
    # 1-D: pool {0, 10}, held-out {1, 3, 9, 12}; picks 0 and 10 (pool positions 0, 1)
    x = np.array([[0.0], [10.0], [1.0], [3.0], [9.0], [12.0]], np.float32)
    pool, hold = np.array([0, 1]), np.array([2, 3, 4, 5])
    y = np.array([0, 1, 0, 1, 1, -1])
    out = _score(x, pool, hold, np.array([0, 1]), y, -1)
    # areas: pick 0 <- {1, 3} (ARD 2), pick 10 <- {9, 12} (ARD 1.5)
    assert out["mean_ard"] == pytest.approx(1.75) and out["max_ard"] == pytest.approx(2.0)
    # labels: 1 -> 0 (right), 3 -> 0 (wrong, truth 1), 9 -> 1 (right), 12 ignored
    # IoU class 0: 1 / 2, class 1: 1 / 2
    assert out["label_miou"] == pytest.approx(50.0)


def test_sparse_labels_score_the_splits_that_have_them():
    # three labeled points: most held-out halves hold one or two, some none
    x, y, spread = clusters(0, per=40)
    few = np.full(len(y), -1)
    few[[0, 100, 300]] = y[[0, 100, 300]]
    adv = advise(x, 1 / spread, 12, labels=few, splits=8)
    assert 2 <= adv.splits <= 8 and adv.measure == "label_miou"
    assert all(np.isfinite(s["label_miou"]) for s in adv.scores.values())
    with pytest.raises(ValueError, match="labels"):
        one = np.full(len(y), -1)
        one[0] = 1
        advise(x, 1 / spread, 12, labels=one, splits=2)


def test_bad_input_names_the_argument():
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    d = np.ones(40)
    with pytest.raises(ValueError, match="budget"):
        advise(x, d, 21)
    with pytest.raises(ValueError, match="labels"):
        advise(x, d, 5, labels=np.zeros(39, int))
    with pytest.raises(TypeError, match="labels"):
        advise(x, d, 5, labels=np.zeros(40))
    with pytest.raises(ValueError, match="samplers"):
        advise(x, d, 5, samplers=("density-aware", "badge"))
    with pytest.raises(ValueError, match="splits"):
        advise(x, d, 5, splits=1)
    with pytest.raises(ValueError, match="densities"):
        advise(x, np.zeros(40), 5)
    with pytest.raises(ValueError, match="alpha"):
        advise(x, d, 5, alpha=1.5)


def test_docs_snippet_runs(capsys):
    text = (ROOT / "docs" / "advise.md").read_text()
    (block,) = re.findall(r"## Example\n.*?```python\n(.*?)```", text, flags=re.S)
    ns: dict = {}
    exec(compile(block, "docs/advise.md", "exec"), ns)  # noqa: S102
    assert ns["advice"].recommended == "density-aware"
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "density-aware difference"
    assert any(line.startswith("| density-aware |") for line in out)


def test_advise_command_writes_the_same_advice(tmp_path, capsys):
    x, y, spread = clusters(0, per=100)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "d.npy", 1 / spread)
    np.save(tmp_path / "y.npy", y)
    rc = main(["advise", "--features", str(tmp_path / "x.npy"), "--densities",
               str(tmp_path / "d.npy"), "--budget", "30", "--labels", str(tmp_path / "y.npy"),
               "--splits", "3", "--json", str(tmp_path / "advice.json")])
    assert rc == 0
    got = json.loads((tmp_path / "advice.json").read_text())
    want = densecore.advise(x, 1 / spread, 30, labels=y, splits=3)
    assert got["recommended"] == want.recommended and got["verdict"] == want.verdict
    for name, scores in want.scores.items():
        assert got["scores"][name] == pytest.approx(scores)
    assert "recommended: " + want.recommended in capsys.readouterr().out


def test_advise_command_errors_are_one_line(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((10, 2), np.float32))
    with pytest.raises(SystemExit) as e:
        main(["advise", "--features", str(tmp_path / "x.npy"), "--densities",
              str(tmp_path / "missing.npy"), "--budget", "2"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--densities" in err[0]
