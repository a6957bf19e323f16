"""The runnable snippet of docs/annotate.md runs as written."""

from __future__ import annotations

import os
import re

import pytest

DOCS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "docs", "annotate.md")


def test_annotate_snippet_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    blocks = re.findall(r"```python\n(.*?)^```", open(DOCS).read(), re.S | re.M)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    ns = {"__name__": "__main__"}
    exec(compile(blocks[0], DOCS, "exec"), ns)  # noqa: S102
    out = capsys.readouterr().out.splitlines()
    q1 = int(ns["queries"].queried("frame1", 0).sum())
    assert out == [f"recorded ['frame0'] pending {{'frame1': {q1}}}",
                   "frame0 labels match: True"]
    assert ns["labels"].rounds("frame0") == [0] and ns["labels"].rounds("frame1") == []
    assert sorted(os.listdir(ns["out"])) == ["export.json", "labels", "queries", "round0.png",
                                             "tasks.json"]
    assert ns["config"].count("<Label value=") == 3
    assert len(ns["coco"]["images"]) == 2
    assert not os.listdir(tmp_path)  # everything under the snippet's temporary folder
