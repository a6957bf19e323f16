"""Install hints name the distribution ``densecore-seg``.

The import name is ``densecore``, but an unrelated project owns that name on the
package index: ``pip install densecore[...]`` installs that project instead.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST = "densecore-seg"
SCANNED = ("README.md", "docs", "examples", "src", "benchmarks")
SUFFIXES = {".md", ".py", ".sh", ".txt", ".toml", ".yaml", ".yml", ".rst"}
# the arguments of one pip install: up to the end of the shell command, the code span
# or the parenthesis that holds it
_PIP = re.compile(r"pip install\b([^`;|)&\n]*)")
_WRONG = re.compile(r"(?<![\w./-])densecore(?![\w-])")


def wrong_install_hints(text: str) -> list[str]:
    """The ``pip install`` arguments in ``text`` that name ``densecore`` without ``-seg``."""
    return [m.group(0).strip() for m in _PIP.finditer(text) if _WRONG.search(m.group(1))]


@pytest.mark.parametrize("line, wrong", [
    ('pip install "densecore[skactiveml]"', True),
    ("raise ImportError('pip install densecore[plots]')", True),
    ("(``pip install densecore``)", True),
    ("python -m pip install -U 'densecore[cpu]' && densecore demo", True),
    ('python -m pip install torch==2.13.0 -e ".[cpu]" && densecore demo', False),
    ("pip install 'densecore-seg[plots]'", False),
    ("(`pip install densecore-seg`) then `import densecore`", False),
    ("pip install scikit-learn; densecore bench speed", False),
])
def test_the_checker_tells_wrong_from_right(line, wrong):
    assert bool(wrong_install_hints(line)) is wrong


def test_distribution_name_in_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["name"] == DIST
    assert meta["project"]["scripts"] == {"densecore": "densecore.cli:main"}


def test_no_install_hint_names_the_wrong_distribution():
    files = []
    for name in SCANNED:
        path = ROOT / name
        files += [path] if path.is_file() else sorted(
            p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    assert len(files) > 20  # the scan found the tree
    bad = [f"{f.relative_to(ROOT)}: {hint}" for f in files
           for hint in wrong_install_hints(f.read_text(errors="replace"))]
    assert not bad, "install hints must name " + DIST + ":\n" + "\n".join(bad)


def test_license_file_matches_the_metadata():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "MIT" and meta["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the densecore authors" in text
