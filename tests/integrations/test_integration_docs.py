"""The runnable snippets of docs/integrations.md run without edits.

Every ```python block runs, in a fresh namespace and a temporary working
directory, unless the line before it is an ``<!-- not run: ... -->`` comment
(the mmsegmentation config and the RIPU train.py sketch, which need code that
is not densecore's). Blocks are found by what they contain, not by position.
"""

from __future__ import annotations

import os
import re

import pytest

ROOT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)
DOCS = os.path.join(ROOT, "docs", "integrations.md")
EXAMPLE = os.path.join(ROOT, "examples", "ripu_adapter.md")
BLOCK = re.compile(r"(?:^(<!-- not run[^\n]*-->)\n)?```python\n(.*?)^```", re.S | re.M)


def blocks(path):
    """``[(runs, code)]`` for every python block of ``path``, in order."""
    return [(not skip, code) for skip, code in BLOCK.findall(open(path).read())]


def test_the_docs_have_the_expected_blocks():
    assert [runs for runs, _ in blocks(DOCS)] == [True, True, True, True, True, False]
    assert [runs for runs, _ in blocks(EXAMPLE)] == [False]
    knn, dropin, ripu, light, mmengine, config = (code for _, code in blocks(DOCS))
    assert '"knn"' in knn and "select_pixels" in knn
    assert "from densecore.integrations.ripu import RegionSelection" in dropin
    assert "from densecore.integrations import ripu" in ripu
    assert "SelectionRounds" in light and "lightning" in light
    assert "Runner(" in mmengine and "SelectionHook(" in mmengine
    assert 'type="SelectionHook"' in config and "register()" in config


def block(path, needle):
    """The one runnable python block of ``path`` that contains ``needle``."""
    found = [code for runs, code in blocks(path) if runs and needle in code]
    assert len(found) == 1, needle
    return found[0]


def test_the_install_line_is_from_a_checkout():
    text = open(DOCS).read()
    assert 'pip install torch==2.13.0 -e ".[cpu,lightning,ripu,mmseg]"' in text
    assert "not published on the package index" in text
    assert "from the package index:" not in text


def test_frozen_feature_snippet_runs(tmp_path, monkeypatch, capsys):
    _, out = run(block(DOCS, '"knn"'), DOCS, tmp_path, monkeypatch, capsys)
    assert out == "[40, 40] pixels per image\n"


def test_ripu_dropin_snippet_runs(tmp_path, monkeypatch, capsys):
    import torch

    ns, out = run(block(DOCS, "import RegionSelection"), DOCS, tmp_path, monkeypatch, capsys)
    m = re.fullmatch(r"(\d+) of 4096 pixels selected\n", out)
    assert m and 0 < int(m.group(1)) <= 2 * 2 * 6 * 9
    for name in ns["names"]:
        ind = torch.load(ns["path"]("gtIndicator", name))
        assert ind["selected"].dtype == torch.bool and ind["selected"].shape == (32, 64)
        assert (ind["selected"] <= ind["active"]).all()


def run(code, path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    exec(compile(code, path, "exec"), namespace)
    return namespace, capsys.readouterr().out


def test_ripu_snippet_runs(tmp_path, monkeypatch, capsys):
    code = block(DOCS, "from densecore.integrations import ripu")
    ns, out = run(code, DOCS, tmp_path, monkeypatch, capsys)
    summary = ns["state"].summary()
    assert [r["round"] for r in summary["rounds"]] == [0, 1]
    assert re.fullmatch(r"\d+ of 8192 target pixels labeled in 2 rounds\n", out)
    assert 0 < summary["labeled"] <= 2 * 4 * ns["budget"] * 9
    assert len(os.listdir(os.path.join(ns["out"], "gtFine", "train", "aachen"))) == 4


def test_lightning_snippet_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("lightning")
    code = block(DOCS, "SelectionRounds")
    ns, out = run(code, DOCS, tmp_path, monkeypatch, capsys)
    summary = ns["state"].summary()
    assert [(r["round"], r["queried"]) for r in summary["rounds"]] == [(0, 60), (1, 60)]
    assert out.endswith("SelectionRounds(rounds_at=[3, 6], budget=10, done=2) "
                        f"{summary['labeled']} pixels labeled\n")
    assert not os.listdir(tmp_path)  # everything under the snippet's temporary folder


def test_mmengine_snippet_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("mmengine")
    code = block(DOCS, "SelectionHook(")
    ns, out = run(code, DOCS, tmp_path, monkeypatch, capsys)
    state = ns["state"]
    summary = state.summary()
    assert [(r["round"], r["queried"]) for r in summary["rounds"]] == [(0, 40), (1, 40)]
    for i in ns["IDS"]:  # the annotator's answers are the ground truth
        m = state.labeled(i)
        assert (state.labels(i)[m] == ns["GT"][i][m]).all()
    assert out.endswith("SelectionHook(rounds_at=[2, 4], budget=10, done=2) "
                        f"{summary['labeled']} pixels labeled\n")
    assert not os.listdir(tmp_path)  # everything under the snippet's temporary folder
