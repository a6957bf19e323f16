"""examples/deeplab_ada/study.py: resume per (method, seed), the table, the configs, one tiny run."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "deeplab_ada")
sys.path.insert(0, os.path.abspath(EXAMPLE))

import study  # noqa: E402

import densecore  # noqa: E402

PLAN = study.Plan(config="study_quick.yaml", size=(32, 64), train=2, val=1, seeds=(0, 1))


class Stop(Exception):
    pass


def _runner(out, calls, stop_at=None):
    def run(method, seed):
        calls.append((method, seed))
        run_dir = os.path.join(out, "runs", f"{method}_seed{seed}")
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "partial"), "w") as f:
            f.write("x")
        if stop_at is not None and len(calls) == stop_at:
            raise Stop
        return {"method": method, "seed": seed, "mIoU": 10.0 * len(calls),
                "labeled_fraction": 0.02, "rounds": []}
    return run


def test_a_stopped_study_picks_up_where_it_stopped(tmp_path):
    out, methods = str(tmp_path), ["source_only", "margin"]
    first = []
    with pytest.raises(Stop):
        study.run_study(out, PLAN, methods, _runner(out, first, stop_at=3), key="k1")
    assert first == [("source_only", 0), ("margin", 0), ("source_only", 1)]
    with open(tmp_path / "study.json") as f:
        saved = json.load(f)
    assert [(r["method"], r["seed"]) for r in saved] == first[:2]
    assert os.path.exists(tmp_path / "runs" / "source_only_seed1" / "partial")

    second = []
    seen_stale = []

    def runner(method, seed):
        seen_stale.append(os.path.exists(tmp_path / "runs" / f"{method}_seed{seed}"))
        return _runner(out, second)(method, seed)

    rows = study.run_study(out, PLAN, methods, runner, key="k1")
    assert second == [("source_only", 1), ("margin", 1)]
    assert seen_stale == [False, False]  # the unfinished run was removed before its rerun
    assert [(r["method"], r["seed"]) for r in rows] == [
        ("source_only", 0), ("margin", 0), ("source_only", 1), ("margin", 1)]
    assert [r["mIoU"] for r in rows][:2] == [10.0, 20.0]  # old rows kept as they were
    assert all(r["study"] == "k1" for r in rows)
    third = []
    study.run_study(out, PLAN, methods, _runner(out, third), key="k1")
    assert third == []  # nothing left to do


def test_rows_of_another_study_setting_are_refused(tmp_path):
    study.run_study(str(tmp_path), PLAN, ["margin"], _runner(str(tmp_path), []), key="k1")
    with pytest.raises(ValueError, match="--out"):
        study.run_study(str(tmp_path), PLAN, ["margin"], _runner(str(tmp_path), []), key="k2")
    # the quick and the full plan never share a key
    assert study.study_key(study.PLANS["quick"]) != study.study_key(study.PLANS["full"])


def test_run_configs_differ_only_where_the_method_does():
    cfgs = {m: study.run_config(study.PLANS["quick"], m, 3) for m in study.METHODS}
    base = cfgs["density_aware"]
    for m in study.ACTIVE:
        diff = {k for k in set(base) | set(cfgs[m]) if base.get(k) != cfgs[m].get(k)}
        assert diff <= {"score", "sampler"}, (m, diff)
    assert cfgs["kcenter"]["sampler"] == "k-center" and cfgs["random"]["score"] == "random"
    assert all(c["seed"] == 3 for c in cfgs.values())
    assert all(c["oracle_exclude_void"] is False for c in cfgs.values())  # no ground truth
    assert cfgs["source_only"]["selection_iters"] == []
    assert cfgs["supervised"]["selection_iters"] == [0]
    assert cfgs["supervised"]["budget_ratio"] == 1.0 and cfgs["supervised"]["region_size"] == 1
    for name, plan in study.PLANS.items():  # every config loads and validates
        from config import load_config
        for m in study.METHODS:
            path = os.path.join(EXAMPLE, "configs", plan.config)
            overrides = [f"{k}={json.dumps(v)}" for k, v in study.run_config(plan, m, 0).items()]
            load_config(path, overrides)


def test_summary_table_and_plot(tmp_path):
    rounds = [{"iteration": 5, "labeled_fraction_before": 0.0, "labeled_fraction": 0.01, "mIoU": 8.0,
               "selection_s": 0.5, "replay_match": 1.0,
               "bound": {"delta": 0.4, "max_ard": 0.2, "coreset_loss": 0.3}}]
    rows = [{"method": "margin", "seed": s, "mIoU": v, "labeled_fraction": 0.02,
             "rounds": rounds} for s, v in ((0, 10.0), (1, 14.0))]
    rows.append({"method": "supervised", "seed": 0, "mIoU": 30.0, "labeled_fraction": 1.0,
                 "rounds": []})
    summary = study.summarize(rows, ["source_only", "margin", "supervised"])
    assert [s["method"] for s in summary] == ["margin", "supervised"]
    assert summary[0]["mean"] == 12.0 and summary[0]["std"] == pytest.approx(np.sqrt(8.0))
    assert summary[1]["std"] == 0.0 and summary[1]["delta"] is None
    table = study.markdown_table(summary)
    assert "| margin | 2 | 12.00 ± 2.83 | 10.00 – 14.00 | 2.00 |" in table
    assert "| supervised | 1 | 30.00 ± 0.00 |" in table
    per_round = study.round_table(rows, ["margin", "supervised"])
    assert per_round.count("\n") == 3  # header, rule, margin's one round; none for supervised
    assert "| margin | 0 |" in per_round and "0.00 → 1.00 | 8.00 | 0.50 | 0.400 | 0.200 |" in per_round
    study.plot(rows, ["margin", "supervised"], str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_score_only_recorder_reproduces_score_only_selection():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(1, 5, 24, 32, generator=g), 1)
    feats = torch.randn(1, 8, 6, 8, generator=g)
    dens = torch.rand(1, 6, 8, generator=g) + 0.5
    labeled = torch.zeros(1, 24, 32, dtype=torch.bool)
    labeled[0, :4] = True
    kw = dict(labeled=labeled, alpha=5, score="margin", region_size=3, seed=1)
    rec = study._Recorder(None)
    got = densecore.select_pixels(probs, feats, dens, 7, sampler=rec, **kw)
    want = densecore.select_pixels(probs, feats, dens, 7, sampler=None, **kw)
    assert torch.equal(got, want)
    assert rec.features.shape == (35, 8) and rec.indices.tolist() == list(range(7))
    sampler = densecore.DensityAwareGreedy(backend="torch", seed=1)
    rec = study._Recorder(sampler)
    got = densecore.select_pixels(probs, feats, dens, 7, sampler=rec, **kw)
    want = densecore.select_pixels(probs, feats, dens, 7, sampler=sampler, **kw)
    assert torch.equal(got, want) and rec.seconds > 0


def test_one_tiny_run_end_to_end(tmp_path):
    # train.py for 6 iterations with 2 rounds, stopped and resumed at each;
    # checks the row's fields and that the replay reproduces the recorded queries
    base = tmp_path / "tiny.yaml"
    base.write_text("backbone: tiny\nsource_size: [64, 36]\ntarget_size: [64, 32]\n"
                    "iterations: 6\nselection_iters: [2, 4]\nestimator_detach_iter: 4\n"
                    "dmc_dim: 16\nsave_every: 0\nprint_freq: 100\nlr: 0.0025\n"
                    "greedy_backend: torch\nflip_test: false\n")
    plan = study.Plan(config=str(base), size=(32, 64), train=2, val=1, seeds=(0,))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        roots = study.prepare_data(str(tmp_path), plan)
        row = study.run_one(str(tmp_path), plan, roots, "density_aware", 0)
        sup = study.run_one(str(tmp_path), plan, roots, "supervised", 0)
    finally:
        torch.set_num_threads(before)
    assert row["method"] == "density_aware" and 0 <= row["mIoU"] <= 100
    assert [r["round"] for r in row["rounds"]] == [0, 1]
    assert [r["iteration"] for r in row["rounds"]] == [2, 4]
    r0, r1 = row["rounds"]
    assert r0["labeled_fraction_before"] == 0 < r0["labeled_fraction"]
    assert r1["labeled_fraction_before"] == pytest.approx(r0["labeled_fraction"])
    assert row["labeled_fraction"] == pytest.approx(r1["labeled_fraction"])
    assert r0["replay_match"] == 1.0 and r1["replay_match"] == 1.0
    assert 0 < r0["bound"]["max_ard"] <= r0["bound"]["delta"]
    assert 0 <= r0["bound"]["coreset_loss"] <= 1
    assert sup["rounds"] == [] and sup["labeled_fraction"] == 1.0  # every target pixel


def test_two_processes_share_one_study_folder(tmp_path):
    """A run another process holds is skipped; rows it writes meanwhile are kept."""
    out, methods = str(tmp_path), ["source_only", "margin"]
    calls = []
    inner = _runner(out, calls)

    def runner(method, seed):
        if not calls:  # "another process" finishes margin seed 1 while this one runs
            with study._lock(os.path.join(out, "study.json.lock")):
                rows = study.load_rows(os.path.join(out, "study.json"), "k1")
                rows.append({"method": "margin", "seed": 1, "mIoU": 99.0, "study": "k1",
                             "labeled_fraction": 0.02, "rounds": []})
                study.atomic_write_json(os.path.join(out, "study.json"), rows)
        return inner(method, seed)

    with study._lock(os.path.join(out, "runs", "margin_seed0.lock"), wait=False) as held:
        assert held
        rows = study.run_study(out, PLAN, methods, runner, key="k1")
    # margin seed 0 was held elsewhere, margin seed 1 was finished elsewhere
    assert calls == [("source_only", 0), ("source_only", 1)]
    assert [(r["method"], r["seed"]) for r in rows] == [
        ("source_only", 0), ("source_only", 1), ("margin", 1)]
    assert rows[-1]["mIoU"] == 99.0
    # once free, the held run is the only one left
    again = []
    rows = study.run_study(out, PLAN, methods, _runner(out, again), key="k1")
    assert again == [("margin", 0)]
    assert len(rows) == 4
