"""The runnable snippets of docs/integrations.md run without edits.

Every ```python block runs, in a fresh namespace and a temporary working
directory, unless the line before it is an ``<!-- not run: ... -->`` comment
(the mmsegmentation config and the RIPU train.py sketch, which need code that
is not densecore's).
"""

from __future__ import annotations

import os
import re

import pytest

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
DOCS = os.path.join(ROOT, "docs", "integrations.md")
EXAMPLE = os.path.join(ROOT, "examples", "ripu_adapter.md")
BLOCK = re.compile(r"(?:^(<!-- not run[^\n]*-->)\n)?```python\n(.*?)^```", re.S | re.M)


def blocks(path):
    """``[(runs, code)]`` for every python block of ``path``, in order."""
    return [(not skip, code) for skip, code in BLOCK.findall(open(path).read())]


def test_the_docs_have_the_expected_blocks():
    assert [runs for runs, _ in blocks(DOCS)] == [True, True, True, False]
    assert [runs for runs, _ in blocks(EXAMPLE)] == [False]
    ripu, light, mmengine, config = (code for _, code in blocks(DOCS))
    assert "from densecore.integrations import ripu" in ripu
    assert "SelectionRounds" in light and "lightning" in light
    assert "Runner(" in mmengine and "SelectionHook(" in mmengine
    assert 'type="SelectionHook"' in config and "register()" in config


def run(code, path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    exec(compile(code, path, "exec"), namespace)
    return namespace, capsys.readouterr().out


def test_ripu_snippet_runs(tmp_path, monkeypatch, capsys):
    code = blocks(DOCS)[0][1]
    ns, out = run(code, DOCS, tmp_path, monkeypatch, capsys)
    summary = ns["state"].summary()
    assert [r["round"] for r in summary["rounds"]] == [0, 1]
    assert re.fullmatch(r"\d+ of 8192 target pixels labeled in 2 rounds\n", out)
    assert 0 < summary["labeled"] <= 2 * 4 * ns["budget"] * 9
    assert len(os.listdir(os.path.join(ns["out"], "gtFine", "train", "aachen"))) == 4


def test_lightning_snippet_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("lightning")
    code = blocks(DOCS)[1][1]
    ns, out = run(code, DOCS, tmp_path, monkeypatch, capsys)
    summary = ns["state"].summary()
    assert [(r["round"], r["queried"]) for r in summary["rounds"]] == [(0, 60), (1, 60)]
    assert out.endswith("SelectionRounds(rounds_at=[3, 6], budget=10, done=2) "
                        f"{summary['labeled']} pixels labeled\n")
    assert not os.listdir(tmp_path)  # everything under the snippet's temporary folder


def test_mmengine_snippet_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("mmengine")
    code = blocks(DOCS)[2][1]
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
