"""The examples and the docs' snippets use densecore's public API only: names of
``densecore.__all__`` and the public subpackages, never a private module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import densecore

ROOT = Path(__file__).resolve().parents[2]

#: modules a user may import; everything else under densecore is private
PUBLIC_MODULES = {"densecore", "densecore.annotate", "densecore.density",
                  "densecore.distributed", "densecore.engines", "densecore.filters",
                  "densecore.integrations", "densecore.integrations.lightning",
                  "densecore.integrations.mmseg", "densecore.integrations.ripu",
                  "densecore.integrations.skactiveml", "densecore.io", "densecore.plot",
                  "densecore.samplers", "densecore.stats", "densecore.synthetic"}
PUBLIC_ATTRIBUTES = set(densecore.__all__) | {"__version__"} | {
    m.split(".")[1] for m in PUBLIC_MODULES if m.count(".") == 1}


def private_uses(tree: ast.AST) -> list[str]:
    """``import``/``from ... import`` of a private densecore module, ``from densecore
    import`` or ``densecore.<name>`` of a name that is not public, in ``tree``."""
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bad += [a.name for a in node.names
                    if a.name.split(".")[0] == "densecore" and a.name not in PUBLIC_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split(".")[0] == "densecore":
            if node.module not in PUBLIC_MODULES:
                bad.append(node.module)
            elif node.module == "densecore":
                bad += [f"densecore.{a.name}" for a in node.names
                        if a.name not in PUBLIC_ATTRIBUTES]
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id == "densecore" and node.attr not in PUBLIC_ATTRIBUTES):
            bad.append(f"densecore.{node.attr}")
    return bad


def sources() -> list[tuple[str, str]]:
    """Every example script, and every ```python block of the docs, README and example notes."""
    out = [(str(p.relative_to(ROOT)), p.read_text())
           for p in sorted(ROOT.glob("examples/**/*.py"))]
    for path in [ROOT / "README.md", *sorted(ROOT.glob("docs/*.md")),
                 *sorted(ROOT.glob("examples/**/*.md"))]:
        for i, block in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), re.S)):
            out.append((f"{path.relative_to(ROOT)} block {i}", block))
    return out


def test_the_checker_finds_private_imports():
    code = ("import densecore.atomic\nfrom densecore.atomic import atomic_write\n"
            "from densecore import atomic, select_pixels\nfrom densecore._backends import threads\n"
            "import densecore\ndensecore.validation.check_int(1, 'a')\n"
            "from densecore.density import coverage_density\nfrom . import utils\n")
    assert private_uses(ast.parse(code)) == [
        "densecore.atomic", "densecore.atomic", "densecore.atomic", "densecore._backends",
        "densecore.validation"]


def test_examples_and_doc_snippets_import_public_names_only():
    found = sources()
    assert sum(name.endswith(".py") for name, _ in found) >= 10  # the examples were found
    bad = {name: uses for name, text in found if (uses := private_uses(ast.parse(text)))}
    assert bad == {}


def test_every_public_module_exists():
    import importlib.util

    for name in sorted(PUBLIC_MODULES):  # found without importing optional extras
        assert importlib.util.find_spec(name) is not None, name
