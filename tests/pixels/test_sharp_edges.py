"""Sharp edges a new user meets, each pinned: sampler classes and names, the frozen-feature
densities, channels-last features, device mismatches, an untrained estimator, the README's
training-round snippet and the bound benchmark's --plots without matplotlib."""

from __future__ import annotations

import importlib.util
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import densecore
from densecore.samplers import SAMPLER_NAMES, make_sampler

ROOT = Path(__file__).resolve().parents[2]


def inputs(seed=0, b=2, c=4, h=16, w=20, d=6):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(b, c, h, w, generator=g), 1)
    feats = torch.randn(b, d, h // 4, w // 4, generator=g)
    dens = torch.rand(b, h // 4, w // 4, generator=g) + 0.5
    return probs, feats, dens


# --- samplers: classes, names, one function -----------------------------------------------

def test_a_sampler_class_is_instantiated_with_the_seed():
    probs, feats, dens = inputs()
    by_class = densecore.select_pixels(probs, feats, dens, 4, alpha=4, seed=[3, 5],
                                       sampler=densecore.DensityAwareGreedy)
    by_instance = densecore.select_pixels(probs, feats, dens, 4, alpha=4, seed=[3, 5],
                                          sampler=densecore.DensityAwareGreedy(seed=3))
    assert torch.equal(by_class, by_instance)
    one = densecore.select_pixels(probs[:1], feats[:1], dens[:1], 4, alpha=4, seed=7,
                                  sampler=densecore.DensityAwareGreedy)
    want = densecore.select_pixels(probs[:1], feats[:1], dens[:1], 4, alpha=4, seed=7,
                                   sampler=densecore.DensityAwareGreedy(seed=7))
    assert torch.equal(one, want)


@pytest.mark.parametrize("name, cls", [("kcenter", densecore.KCenterGreedy),
                                       ("density_aware", densecore.DensityAwareGreedy),
                                       ("typicality", densecore.TypicalityGreedy)])
def test_sampler_names_mean_the_same_in_every_entry_point(tmp_path, name, cls):
    probs, feats, dens = inputs(1)
    by_name = densecore.select_pixels(probs, feats, dens, 3, alpha=4, seed=[1, 2],
                                      sampler=name)
    by_class = densecore.select_pixels(probs, feats, dens, 3, alpha=4, seed=[1, 2],
                                       sampler=cls)
    assert torch.equal(by_name, by_class)
    masks = []
    for i, s in enumerate((name, cls)):
        state = densecore.ActiveLabelState(tmp_path / f"{i}", ["a", "b"], (16, 20))
        densecore.query_round(state, 0, ["a", "b"], probs, feats, dens, 3, alpha=4,
                              sampler=s)
        masks.append(np.stack([state.labeled(x) for x in ("a", "b")]))
    np.testing.assert_array_equal(*masks)


def test_ripu_by_name_and_the_error_lists_the_names(tmp_path):
    probs, feats, dens = inputs(2)
    want = densecore.select_pixels(probs, None, None, 2, sampler="ripu", score="ripu",
                                   region_size=3)
    state = densecore.ActiveLabelState(tmp_path / "s", ["a", "b"], (16, 20))
    densecore.query_round(state, 0, ["a", "b"], probs, None, None, 2, sampler="ripu",
                          score="ripu", region_size=3)
    np.testing.assert_array_equal(np.stack([state.labeled(x) for x in ("a", "b")]),
                                  want.numpy())
    for bad in ("k-center", "DensityAware", "random"):
        with pytest.raises(ValueError, match=re.escape(str(list(SAMPLER_NAMES)))):
            densecore.select_pixels(probs, feats, dens, 2, sampler=bad)
        with pytest.raises(ValueError, match="sampler must be one of"):
            densecore.query_round(state, 1, ["a", "b"], probs, feats, dens, 2, sampler=bad)
    with pytest.raises(TypeError, match="sampler"):
        densecore.select_pixels(probs, feats, dens, 2, sampler=3)
    assert make_sampler("density-aware", 4).seed == 4  # the former spelling still reads


# --- the frozen-feature path: densities="knn" ---------------------------------------------

def test_knn_densities_are_computed_on_the_candidates_and_labeled_pixels():
    probs, feats, _ = inputs(3)
    labeled = torch.zeros(2, 16, 20, dtype=torch.bool)
    labeled[:, 5, 3:9] = True
    mask, seen = densecore.select_pixels(probs, feats, "knn", 4, alpha=5, labeled=labeled,
                                         sampler="density_aware", seed=[0, 1],
                                         return_candidates=True)
    for b, c in enumerate(seen):
        both = torch.cat([c.features, c.labeled_features])
        d = densecore.KNNDensity()(both).float()
        torch.testing.assert_close(c.densities, d[:len(c.features)])
        torch.testing.assert_close(c.labeled_densities, d[len(c.features):])
        sel = densecore.DensityAwareGreedy(seed=b).select(
            c.features, 4, densities=c.densities, labeled_features=c.labeled_features,
            labeled_densities=c.labeled_densities)
        assert torch.equal(sel.indices, c.selected)
    assert mask.sum((1, 2)).tolist() == [4, 4]
    # a configured KNNDensity is used as given; k-center does not compute any
    _, seen3 = densecore.select_pixels(probs, feats, densecore.KNNDensity(k=3), 4, alpha=5,
                                       sampler="density_aware", return_candidates=True)
    torch.testing.assert_close(seen3[0].densities,
                               densecore.KNNDensity(k=3)(seen3[0].features).float())
    _, kc = densecore.select_pixels(probs, feats, "knn", 4, alpha=5, sampler="kcenter",
                                    return_candidates=True)
    assert kc[0].densities is None
    with pytest.raises(ValueError, match="densities must be .*'knn'"):
        densecore.select_pixels(probs, feats, "kNN-10", 4)


def test_knn_densities_in_query_round(tmp_path):
    probs, feats, _ = inputs(4)
    state = densecore.ActiveLabelState(tmp_path / "s", ["a", "b"], (16, 20))
    assert densecore.query_round(state, 0, ["a", "b"], probs, feats, "knn", 3,
                                 alpha=5, sampler="density_aware") == ["a", "b"]
    want = densecore.select_pixels(
        probs, feats, "knn", 3, alpha=5, sampler="density_aware",
        seed=[densecore.image_seed(0, 0, i) for i in ("a", "b")])
    np.testing.assert_array_equal(np.stack([state.labeled(i) for i in ("a", "b")]),
                                  want.numpy())


def test_an_untrained_estimator_warns_why():
    est = densecore.DMCEstimator(6, dim=4, kernel_size=3, num_classes=3)
    x = torch.randn(1, 6, 5, 5)
    with pytest.warns(UserWarning, match="not been trained.*random weights.*densities='knn'"):
        est.density(est(x))
    est.loss(est(x)).backward()  # the training path
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.density(est(x))
        loaded = densecore.DMCEstimator(6, dim=4, kernel_size=3, num_classes=3)
        loaded.load_state_dict(est.state_dict())  # a checkpoint's weights
        loaded.density(loaded(x))
    masked = densecore.MaskedConvEstimator(6, dim=4, kernel_size=3, num_classes=3)
    with pytest.warns(UserWarning, match="MaskedConvEstimator.density"):
        masked.density(masked(x))


# --- error messages that blame the right argument ------------------------------------------

def test_channels_last_features_blame_features():
    probs, feats, dens = inputs(5, d=16)
    last = feats.permute(0, 2, 3, 1)  # (B, h, w, D)
    for d in (dens, None, "knn"):
        with pytest.raises(ValueError, match=r"features must be channels-first .*permute"):
            densecore.select_pixels(probs, last, d, 2)
    densecore.select_pixels(probs, feats, dens, 2)  # channels-first passes


def test_a_device_mismatch_names_both_arguments():
    probs, feats, dens = inputs(6)
    with pytest.raises(ValueError, match=r"^features must be on the same device as probs "
                                         r"\(cpu\); got meta$"):
        densecore.select_pixels(probs, feats.to("meta"), None, 2)
    with pytest.raises(ValueError, match=r"^densities must be on the same device as probs"):
        densecore.select_pixels(probs, feats, dens.to("meta"), 2)


# --- documentation and tools ---------------------------------------------------------------

def readme_block(heading_text):
    text = (ROOT / "README.md").read_text()
    start = text.index(heading_text)
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def test_the_readme_training_round_runs_and_binds_each_name_once(tmp_path, monkeypatch):
    code = readme_block("A training round with densecore")
    targets = re.findall(r"^\s*(\w+)\s*=[^=]", code, re.M)
    assert len(targets) == len(set(targets)), targets
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)  # noqa: S102
    state = ns["state"]
    assert state.summary()["labeled"] > 0 and isinstance(ns["labels"], torch.Tensor)


def test_bounds_plots_without_matplotlib_fails_before_the_run(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bounds_script", ROOT / "benchmarks" /
                                                  "bounds.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ran = []
    monkeypatch.setattr(mod, "run_bounds", lambda *a, **k: ran.append(1))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    with pytest.raises(SystemExit) as e:
        mod.main(["--quick", "--plots", "plots"])
    assert e.value.code == 2 and not ran
    assert "--plots needs matplotlib" in capsys.readouterr().err
