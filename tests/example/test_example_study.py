"""examples/deeplab_ada/study.py: resume per (method, seed), the table, the configs, one tiny run."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples", "deeplab_ada")
sys.path.insert(0, os.path.abspath(EXAMPLE))

import study  # noqa: E402

import densecore  # noqa: E402

ARM = study.Arm("a", config="study_quick.yaml", size=(32, 64), train=2, val=1)
PLAN = study.Plan(arms=(ARM,), seeds=(0, 1))


class Stop(Exception):
    pass


def _runner(out, calls, stop_at=None):
    def run(arm, method, seed):
        calls.append((method, seed))
        run_dir = os.path.join(out, "runs", f"{arm.name}_{method}_seed{seed}")
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "partial"), "w") as f:
            f.write("x")
        if stop_at is not None and len(calls) == stop_at:
            raise Stop
        return {"arm": arm.name, "method": method, "seed": seed, "mIoU": 10.0 * len(calls),
                "labeled_fraction": 0.02, "rounds": []}
    return run


def _load(path):
    with open(path) as f:
        return json.load(f)


def test_a_stopped_study_picks_up_where_it_stopped(tmp_path):
    out, methods = str(tmp_path), ["source_only", "margin"]
    first = []
    with pytest.raises(Stop):
        study.run_study(out, PLAN, methods, _runner(out, first, stop_at=3))
    assert first == [("source_only", 0), ("margin", 0), ("source_only", 1)]
    saved = _load(tmp_path / "study.json")["rows"]
    assert [(r["method"], r["seed"]) for r in saved] == first[:2]
    assert os.path.exists(tmp_path / "runs" / "a_source_only_seed1" / "partial")

    second = []
    seen_stale = []

    def runner(arm, method, seed):
        seen_stale.append(os.path.exists(tmp_path / "runs" / f"a_{method}_seed{seed}"))
        return _runner(out, second)(arm, method, seed)

    rows = study.run_study(out, PLAN, methods, runner)
    assert second == [("source_only", 1), ("margin", 1)]
    assert seen_stale == [False, False]  # the unfinished run was removed before its rerun
    assert sorted((r["method"], r["seed"]) for r in rows) == [
        ("margin", 0), ("margin", 1), ("source_only", 0), ("source_only", 1)]
    assert [r["mIoU"] for r in rows][:2] == [10.0, 20.0]  # old rows kept as they were
    assert all(r["key"] == study.run_key(ARM, r["method"]) for r in rows)
    third = []
    study.run_study(out, PLAN, methods, _runner(out, third))
    assert third == []  # nothing left to do
    # a method added later runs alone; the finished runs are not redone
    fourth = []
    study.run_study(out, PLAN, methods + ["random"], _runner(out, fourth))
    assert fourth == [("random", 0), ("random", 1)]


def test_rows_of_another_study_setting_are_refused(tmp_path):
    study.run_study(str(tmp_path), PLAN, ["margin"], _runner(str(tmp_path), []))
    other = study.Plan(arms=(study.Arm("a", config="study_quick.yaml", size=(32, 64), train=3,
                                       val=1),), seeds=(0,))
    with pytest.raises(ValueError, match="--out"):
        study.run_study(str(tmp_path), other, ["margin"], _runner(str(tmp_path), []))
    # the quick and the full plan never share a 2.2 % run; they share the 40 px ones
    quick, full = study.PLANS["quick"], study.PLANS["full"]
    assert study.run_key(quick.arms[0], "margin") != study.run_key(full.arms[0], "margin")
    assert study.run_key(quick.arms[1], "ripu") == study.run_key(full.arms[1], "ripu")
    assert study.study_key(quick) != study.study_key(full)
    old = tmp_path / "old"
    old.mkdir()
    (old / "study.json").write_text("[]")  # the earlier format: a list of rows
    with pytest.raises(ValueError, match="--out"):
        study.run_study(str(old), PLAN, ["margin"], _runner(str(old), []))


def test_plans_five_seeds_two_budgets_and_shared_baselines():
    for name, plan in study.PLANS.items():
        assert plan.seeds == (0, 1, 2, 3, 4)
        assert [a.name for a in plan.arms] == ["2.2pct", "40px"]
        runs = study.plan_runs(plan, list(study.METHODS))
        assert len(runs) == len(set((study.run_key(a, m), s) for a, m, s in runs))
        per_seed = [(a.name, m) for a, m, s in runs if s == 0]
        assert per_seed[:len(study.METHODS)] == [("2.2pct", m) for m in study.METHODS]
        active_40 = [m for a, m in per_seed if a == "40px" and m in study.ACTIVE]
        assert active_40 == list(study.ACTIVE)
    # quick: both budgets on the same data, so the baselines run once per seed
    quick = study.plan_runs(study.PLANS["quick"], list(study.METHODS))
    full = study.plan_runs(study.PLANS["full"], list(study.METHODS))
    assert len(quick) == 5 * (2 * len(study.ACTIVE) + 2)
    assert len(full) == 5 * 2 * len(study.METHODS)
    assert {"ripu", "ripu_density_aware", "random", "margin", "kcenter", "density_aware",
            "kmedoids_refinement"} <= set(study.ACTIVE)
    assert set(study.REFERENCES) <= set(study.ACTIVE)


def test_run_configs_differ_only_where_the_method_does():
    for arm in study.PLANS["full"].arms:
        cfgs = {m: study.run_config(arm, m, 3) for m in study.METHODS}
        base = cfgs["density_aware"]
        for m in study.ACTIVE:
            diff = {k for k in set(base) | set(cfgs[m]) if base.get(k) != cfgs[m].get(k)}
            assert diff <= {"score", "sampler"}, (m, diff)
        assert cfgs["kcenter"]["sampler"] == "k-center" and cfgs["random"]["score"] == "random"
        assert cfgs["ripu"]["score"] == "ripu" and cfgs["ripu_density_aware"] == dict(
            cfgs["density_aware"], score="ripu")
        assert all(c["seed"] == 3 for c in cfgs.values())
        assert all(c["oracle_exclude_void"] is False for c in cfgs.values())  # no ground truth
        assert cfgs["source_only"]["selection_iters"] == []
        assert cfgs["supervised"]["selection_iters"] == [0]
        assert cfgs["supervised"]["budget"] == "ratio"
        assert cfgs["supervised"]["budget_ratio"] == 1.0 and cfgs["supervised"]["region_size"] == 1
    pixels = study.run_config(study.PLANS["full"].arms[1], "margin", 0)
    assert (pixels["budget"], pixels["budget_pixels"], pixels["region_size"]) == ("pixels", 40, 1)
    ratio = study.run_config(study.PLANS["full"].arms[0], "margin", 0)
    assert (ratio["budget"], ratio["budget_ratio"], ratio["region_size"]) == ("ratio", 0.022, 3)
    from config import load_config
    for plan in study.PLANS.values():  # every config loads and validates
        for arm in plan.arms:
            for m in study.METHODS:
                path = os.path.join(EXAMPLE, "configs", arm.config)
                values = study.run_config(arm, m, 0)
                load_config(path, [f"{k}={json.dumps(v)}" for k, v in values.items()])


def test_paired_differences_and_their_t_interval():
    from scipy import stats

    def rows(method, values, seeds=None):
        return [{"method": method, "seed": s, "mIoU": v}
                for s, v in zip(seeds or range(len(values)), values)]

    rs = (rows("random", [10, 20, 30, 40, 50]) + rows("margin", [12, 23, 34, 43, 53])
          + rows("kcenter", [11, 19, 31, 50], seeds=[0, 1, 2, 4])
          + rows("source_only", [1, 2, 3, 4, 5]))
    out = study.paired_differences(rs, ["source_only", "random", "margin", "kcenter"])
    got = {(p["method"], p["reference"]): p for p in out}
    # every pair once, later - earlier in method order; no baselines
    assert set(got) == {("margin", "random"), ("kcenter", "random"), ("kcenter", "margin")}
    p = got[("margin", "random")]
    d = np.array([2, 3, 4, 3, 3], float)
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
    assert p["diffs"] == [2, 3, 4, 3, 3] and p["mean"] == pytest.approx(3.0)
    assert (p["low"], p["high"]) == pytest.approx((3 - half, 3 + half))
    assert p["excludes_zero"] and (p["wins"], p["losses"]) == (5, 0)
    assert p["p"] == pytest.approx(stats.ttest_rel([12, 23, 34, 43, 53],
                                                    [10, 20, 30, 40, 50]).pvalue)
    assert p["p_sign_flip"] == 0.0625  # the smallest an exact test reaches at 5 seeds
    k = got[("kcenter", "random")]  # only the seeds both have are paired
    assert k["seeds"] == [0, 1, 2, 4] and k["diffs"] == [1, -1, 1, 0]
    assert not k["excludes_zero"] and (k["wins"], k["losses"]) == (2, 1)
    one = study.paired_differences(rows("random", [1.0]) + rows("margin", [2.0]),
                                   ["random", "margin"])
    assert one[0]["low"] is None and not one[0]["excludes_zero"] and one[0]["p"] is None


def test_every_pair_with_holm_and_bh_over_the_family():
    # the study's own methods: density-aware minus k-center (the paper's ablation pair)
    # is reported, and the adjusted p values cover every pair of both budgets at once
    rng = np.random.default_rng(0)
    arms = study.PLANS["quick"].arms
    rows = []
    for arm in arms:
        for m in study.METHODS:
            for s in range(5):
                rows.append({"arm": arm.name, "method": m, "seed": s, "key": study.run_key(arm, m),
                             "mIoU": 20 + (m == "density_aware") * 3 + rng.normal(0, 0.5),
                             "labeled_fraction": 0.02, "rounds": [], "per_class_iou": {}})
    plan = study.Plan(arms=arms, seeds=tuple(range(5)))
    a = study.analyze(rows, plan, list(study.METHODS))
    n_active = len(study.ACTIVE)
    pairs = n_active * (n_active - 1) // 2
    assert a["family"]["comparisons"] == 2 * pairs
    fam = [p for arm in arms for p in a["arms"][arm.name]["paired"]]
    assert len(fam) == 2 * pairs
    da = [p for p in fam if (p["method"], p["reference"]) == ("density_aware", "kcenter")]
    assert len(da) == 2 and all(p["mean"] > 2 for p in da)
    from densecore.stats import benjamini_hochberg, holm
    raw = [p["p"] for p in fam]
    assert [p["p_holm"] for p in fam] == pytest.approx(holm(raw).tolist())
    assert [p["p_bh"] for p in fam] == pytest.approx(benjamini_hochberg(raw).tolist())
    assert all(p["p_holm"] >= p["p"] for p in fam)
    assert a["family"]["holm_rejects"] == sum(p["p_holm"] <= 0.05 for p in fam)
    text = study.report_markdown(rows, plan, list(study.METHODS))
    assert f"{2 * pairs} in all" in text and "| density_aware | kcenter | 5 |" in text
    assert "Holm p | BH p | sign-flip p" in text


def test_rescore_over_the_classes_present_in_the_val_ground_truth():
    # recorded before the fix: 'train' (absent from the val ground truth) predicted
    # somewhere counted as IoU 0 over 3 classes; rescored over the 2 present ones
    old = {"arm": "a", "method": "margin", "seed": 0, "mIoU": 20.0,
           "per_class_iou": {"road": 40.0, "sky": 20.0, "train": 0.0}}
    new = {"arm": "a", "method": "margin", "seed": 1, "mIoU": 35.0, "miou_classes": 2,
           "per_class_iou": {"road": 50.0, "sky": 20.0, "train": None}}
    a, b = study.rescore_rows([old, new], lambda r: ["road", "sky"])
    assert a["mIoU"] == 30.0 and a["mIoU_recorded"] == 20.0 and a["miou_classes"] == 2
    assert a["per_class_iou"]["train"] is None and b is new
    assert study.t_interval([5.0]) == (5.0, None, None)


def _rounds():
    return [{"iteration": 5, "labeled_fraction_before": 0.0, "labeled_fraction": 0.01,
             "mIoU": 8.0, "selection_s": 0.5, "replay_match": 1.0,
             "bound": {"delta": 0.4, "max_ard": 0.2, "coreset_loss": 0.3}}]


def test_summary_tables_and_plot(tmp_path):
    classes = {"road": 50.0, "train": None}
    rows = [{"method": "margin", "seed": s, "mIoU": v, "labeled_fraction": 0.02,
             "rounds": _rounds(), "per_class_iou": dict(classes, road=v)}
            for s, v in ((0, 10.0), (1, 14.0))]
    rows += [{"method": "random", "seed": s, "mIoU": v, "labeled_fraction": 0.02,
              "rounds": _rounds(), "per_class_iou": classes} for s, v in ((0, 9.0), (1, 12.0))]
    rows.append({"method": "supervised", "seed": 0, "mIoU": 30.0, "labeled_fraction": 1.0,
                 "rounds": [], "per_class_iou": classes})
    rows.append({"method": "ripu", "seed": 0, "mIoU": 11.0, "labeled_fraction": 0.02,
                 "rounds": [dict(_rounds()[0], bound=None)], "per_class_iou": classes})
    ripu = study.summarize(rows, ["ripu"])[0]
    assert ripu["selection_s"] == 0.5 and ripu["delta"] is None
    assert "| ripu | 0 | 5 | 0.00 → 1.00 | 8.00 | 0.50 | – | – | – |" in study.round_table(
        rows, ["ripu"])
    rows.pop()
    methods = ["source_only", "random", "margin", "supervised"]
    summary = study.summarize(rows, methods)
    assert [s["method"] for s in summary] == ["random", "margin", "supervised"]
    assert summary[1]["mean"] == 12.0 and summary[1]["std"] == pytest.approx(np.sqrt(8.0))
    assert summary[1]["low"] == pytest.approx(12 - 12.706205 * 2.0, abs=1e-4)
    assert summary[2]["std"] == 0.0 and summary[2]["delta"] is None and summary[2]["low"] is None
    table = study.markdown_table(summary)
    assert "| margin | 2 | 12.00 ± 2.83 | -13.41 – 37.41 | 10.00 – 14.00 | 2.00 |" in table
    assert "| supervised | 1 | 30.00 ± 0.00 | – | 30.00 – 30.00 |" in table
    paired = study.paired_table(study.paired_differences(rows, methods))
    assert "| margin | random | 2 | +1.50 |" in paired and "| 2 / 0 | no |" in paired
    assert paired.count("\n") == 3  # header, rule, the one pair
    per_class = study.per_class(rows, methods)
    assert per_class["margin"] == {"road": 12.0, "train": None}
    ct = study.class_table(per_class)
    assert "| road | 50.0 | 12.0 | 50.0 |" in ct and "| train | – | – | – |" in ct
    per_round = study.round_table(rows, ["margin", "supervised"])
    assert per_round.count("\n") == 3  # header, rule, margin's one round; none for supervised
    assert "| margin | 0 |" in per_round and "0.00 → 1.00 | 8.00 | 0.50 | 0.400 | 0.200 |" in per_round
    plan = study.Plan(arms=(ARM,), seeds=(0, 1))
    key = {m: study.run_key(ARM, m) for m in methods}
    keyed = [dict(r, key=key[r["method"]], arm="a") for r in rows]
    assert len(study.arm_rows(keyed, ARM, methods)) == 5
    study.plot(keyed, plan, methods, str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    analysis = study.analyze(keyed, plan, methods)
    assert analysis["arms"]["a"]["paired"][0]["method"] == "margin"
    assert analysis["arms"]["a"]["per_class_iou"]["margin"]["road"] == 12.0
    text = study.report_markdown(keyed, plan, methods)
    assert text.startswith("Paired comparisons") and "\n## Budget a" in text
    assert "Paired differences" in text
    assert "2.2 % of the pixels as 3x3 regions over 2 rounds" in text
    pixels = study.PLANS["quick"].arms[1]
    assert study.budget_text(pixels) == "40 single pixels per image over 2 rounds"


def test_baselines_of_two_arms_on_one_data_are_one_run(tmp_path):
    b = study.Arm("b", config="study_quick.yaml", size=(32, 64), train=2, val=1,
                  budget=(("budget", "pixels"), ("budget_pixels", 40), ("region_size", 1)))
    plan = study.Plan(arms=(ARM, b), seeds=(0,))
    calls = []
    rows = study.run_study(str(tmp_path), plan, ["source_only", "margin"],
                           _runner(str(tmp_path), calls))
    assert calls == [("source_only", 0), ("margin", 0), ("margin", 0)]
    assert [r["arm"] for r in rows] == ["a", "a", "b"]
    shared = study.arm_rows(rows, b, ["source_only", "margin"])
    assert [(r["arm"], r["method"]) for r in shared] == [("b", "source_only"), ("b", "margin")]
    assert shared[0]["mIoU"] == 10.0 and shared[1]["mIoU"] == 30.0


def test_report_only_and_the_worker_command(tmp_path):
    args = study.get_args_parser().parse_args(
        ["--out", str(tmp_path), "--quick", "--seeds", "0", "--methods", "random", "margin",
         "--arms", "40px", "--jobs", "2"])
    argv = study._worker_argv(args)
    assert argv[argv.index("--jobs") + 1] == "1" and "--no-report" in argv
    assert argv[argv.index("--arms") + 1:argv.index("--arms") + 2] == ["40px"]
    plan = study.make_plan(args)
    assert [a.name for a in plan.arms] == ["40px"] and plan.seeds == (0,)
    with pytest.raises(ValueError, match="--arms"):
        study.make_plan(study.get_args_parser().parse_args(["--out", "x", "--arms", "1px"]))
    arm = plan.arms[0]
    rows = [{"arm": "40px", "method": m, "seed": 0, "mIoU": v, "labeled_fraction": 0.005,
             "rounds": _rounds(), "per_class_iou": {"road": v}, "key": study.run_key(arm, m)}
            for m, v in (("random", 5.0), ("margin", 6.0))]
    study.atomic_write_json(str(tmp_path / "study.json"), {"rows": rows})
    study.main(study.get_args_parser().parse_args(
        ["--out", str(tmp_path), "--quick", "--seeds", "0", "--methods", "random", "margin",
         "--arms", "40px", "--report-only"]))
    saved = _load(tmp_path / "study.json")
    assert saved["rows"] == rows and saved["arms"]["40px"]["summary"][1]["mean"] == 6.0
    assert "## Budget 40px" in (tmp_path / "study.md").read_text()
    assert (tmp_path / "study.png").exists()


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
    arm = study.Arm("t", config=str(base), size=(32, 64), train=2, val=1)
    pixels = study.Arm("p", config=str(base), size=(32, 64), train=2, val=1,
                       budget=(("budget", "pixels"), ("budget_pixels", 40), ("region_size", 1)))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        roots = study.prepare_data(str(tmp_path), arm)
        assert study.prepare_data(str(tmp_path), pixels) == roots  # same data, made once
        row = study.run_one(str(tmp_path), arm, roots, "density_aware", 0)
        sup = study.run_one(str(tmp_path), arm, roots, "supervised", 0)
        px = study.run_one(str(tmp_path), pixels, roots, "ripu", 0)
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
    # RIPU's pixel budget: 40 single pixels per image, 20 per round
    assert px["labeled_fraction"] == pytest.approx(40 / (32 * 64))
    assert [r["labeled_fraction"] for r in px["rounds"]] == pytest.approx([20 / 2048, 40 / 2048])
    assert px["rounds"][1]["replay_match"] == 1.0 and px["arm"] == "p"
    assert px["rounds"][0]["bound"] is None  # RIPU's selection has no candidate pool


def test_two_processes_share_one_study_folder(tmp_path):
    """A run another process holds is skipped; rows it writes meanwhile are kept."""
    out, methods = str(tmp_path), ["source_only", "margin"]
    calls = []
    inner = _runner(out, calls)

    def runner(arm, method, seed):
        if not calls:  # "another process" finishes margin seed 1 while this one runs
            with study._lock(os.path.join(out, "study.json.lock")):
                rows = study.load_rows(os.path.join(out, "study.json"))
                rows.append({"arm": "a", "method": "margin", "seed": 1, "mIoU": 99.0,
                             "key": study.run_key(ARM, "margin"),
                             "labeled_fraction": 0.02, "rounds": []})
                study.atomic_write_json(os.path.join(out, "study.json"), {"rows": rows})
        return inner(arm, method, seed)

    with study._lock(os.path.join(out, "runs", "a_margin_seed0.lock"), wait=False) as held:
        assert held
        rows = study.run_study(out, PLAN, methods, runner)
    # margin seed 0 was held elsewhere, margin seed 1 was finished elsewhere
    assert calls == [("source_only", 0), ("source_only", 1)]
    assert sorted((r["method"], r["seed"]) for r in rows) == [
        ("margin", 1), ("source_only", 0), ("source_only", 1)]
    assert [r["mIoU"] for r in rows if r["method"] == "margin"] == [99.0]
    # once free, the held run is the only one left
    again = []
    rows = study.run_study(out, PLAN, methods, _runner(out, again))
    assert again == [("margin", 0)]
    assert len(rows) == 4


def test_jobs_start_worker_processes_and_then_write_the_report(tmp_path, monkeypatch):
    started = []

    class FakePopen:
        def __init__(self, argv):
            started.append(argv)

        def wait(self):
            return 0

    monkeypatch.setattr(study.subprocess, "Popen", FakePopen)
    args = study.get_args_parser().parse_args(
        ["--out", str(tmp_path), "--quick", "--seeds", "0", "--methods", "random",
         "--jobs", "2"])
    study.main(args)
    assert len(started) == 2 and all("--no-report" in a for a in started)
    assert (tmp_path / "study.md").exists() and (tmp_path / "study.png").exists()
    assert _load(tmp_path / "study.json")["rows"] == []

    class Failing(FakePopen):
        def wait(self):
            return 3

    monkeypatch.setattr(study.subprocess, "Popen", Failing)
    with pytest.raises(SystemExit, match="exit codes"):
        study.main(args)


def test_each_seed_draws_its_own_scenes(tmp_path, monkeypatch):
    # main's runner hands every seed the data generated with that seed; the runs of
    # one seed share it across methods; --data-seed fixes one draw for all seeds
    made, used = [], []

    def prepare(out, arm, seed=0):
        made.append(study.data_dir(out, arm, seed))
        return {"source": made[-1], "target": made[-1]}

    def run_one(out, arm, roots, method, seed, **kw):
        used.append((seed, roots["target"]))
        return {"arm": arm.name, "method": method, "seed": seed, "mIoU": 1.0,
                "labeled_fraction": 0.0, "rounds": []}

    monkeypatch.setattr(study, "prepare_data", prepare)
    monkeypatch.setattr(study, "run_one", run_one)
    monkeypatch.setattr(study, "PLANS", {"quick": PLAN, "full": PLAN})
    args = study.get_args_parser().parse_args(
        ["--out", str(tmp_path / "a"), "--quick", "--jobs", "1", "--no-report",
         "--no-progress", "--methods", "source_only", "margin"])
    study.main(args)
    assert len(set(made)) == 2 and len(made) == 2
    by_seed = {}
    for seed, root in used:
        by_seed.setdefault(seed, set()).add(root)
    assert all(len(v) == 1 for v in by_seed.values()) and by_seed[0] != by_seed[1]
    assert study.run_key(ARM, "margin") != study.run_key(
        study.dataclasses.replace(ARM, data_seed=0), "margin")
    made.clear()
    study.main(study.get_args_parser().parse_args(
        ["--out", str(tmp_path / "b"), "--quick", "--jobs", "1", "--no-report",
         "--no-progress", "--methods", "margin", "--data-seed", "0"]))
    assert len(set(made)) == 1


def test_generated_scenes_differ_between_seeds(tmp_path):
    arm = study.Arm("g", config="study_quick.yaml", size=(32, 64), train=1, val=1)
    a = study.prepare_data(str(tmp_path), arm, 0)
    b = study.prepare_data(str(tmp_path), arm, 1)
    assert a != b

    def files(root):
        out = {}
        for d, _, fs in os.walk(root["target"]):
            for f in fs:
                with open(os.path.join(d, f), "rb") as fh:
                    out[os.path.relpath(os.path.join(d, f), root["target"])] = fh.read()
        return out
    fa, fb = files(a), files(b)
    assert fa.keys() == fb.keys() and any(fa[k] != fb[k] for k in fa)


def test_the_committed_quick_study_reads_with_one_draw():
    # the committed quick study was made with data seed 0 for every seed: its rows
    # keep their keys under --data-seed 0 (and only there)
    path = os.path.join(EXAMPLE, "results", "study_quick_partial", "study.json")
    args = study.get_args_parser().parse_args(["--out", "x", "--quick", "--data-seed", "0"])
    plan = study.make_plan(args)
    rows = study.load_rows(path, study.expected_keys(plan, list(study.METHODS)))
    assert len(rows) == 80
    fresh = study.make_plan(study.get_args_parser().parse_args(["--out", "x", "--quick"]))
    with pytest.raises(ValueError, match="--out"):
        study.load_rows(path, study.expected_keys(fresh, list(study.METHODS)))
