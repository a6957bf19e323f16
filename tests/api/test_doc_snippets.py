"""Python snippets of the docs run as written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def python_blocks(path: Path, heading: str) -> list[str]:
    """The ```python blocks of the section under ``heading`` (up to the next ``## ``)."""
    text = path.read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    section = text[start:end if end >= 0 else len(text)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_tune_density_scaling_snippet_runs(capsys):
    blocks = python_blocks(ROOT / "docs" / "density.md",
                           "## Choosing tau: `tune_density_scaling`")
    assert len(blocks) == 1
    ns: dict = {}
    exec(compile(blocks[0], "docs/density.md", "exec"), ns)  # noqa: S102
    res, sel = ns["res"], ns["sel"]
    assert res.tau in (0.05, 0.1, 0.25, 1.0) and res.splits == 3
    assert res.verdict in ("gain", "no gain")
    assert len(sel) == 100 and len(np.unique(sel.indices)) == 100
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"{res.tau} {res.verdict}"
    assert printed[1].startswith("held-out max ARD: tuned ")
