"""No module of the package reads another module's private names (``mod._name``)
and no module but the package's ``__init__`` (lazy submodules, deprecated
top-level names) hides names behind a module-level ``__getattr__``: what one
module offers another is public by name."""

from __future__ import annotations

import ast
import pathlib

import densecore

SRC = pathlib.Path(densecore.__file__).parent


def _module_aliases(tree: ast.Module) -> set:
    """Lower-case names bound by imports from the package (relative, or ``densecore``)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "")
                                                  .startswith("densecore")):
            out |= {a.asname or a.name for a in node.names if (a.asname or a.name).islower()}
        elif isinstance(node, ast.Import):
            out |= {a.asname for a in node.names if a.name.startswith("densecore") and a.asname}
    return out


def _is_module_name(path: pathlib.Path, tree: ast.Module, name: str) -> bool:
    """Whether ``name``, imported in ``path``, is a module of the package."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name
                                                    for a in node.names):
            a = next(a for a in node.names if (a.asname or a.name) == name)
            if node.level:
                base = path.parent
                for _ in range(node.level - 1):
                    base = base.parent
            else:
                base = SRC.parent
            parts = [p for p in (node.module or "").split(".") if p]
            target = base.joinpath(*parts, a.name)
            return target.with_suffix(".py").exists() or (target / "__init__.py").exists()
        if isinstance(node, ast.Import) and any(a.asname == name for a in node.names):
            return True
    return False


def _reach_ins():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        modules = {n for n in _module_aliases(tree) if _is_module_name(path, tree, n)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in modules and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                found.append(f"{path.relative_to(SRC)}:{node.lineno} "
                             f"{node.value.id}.{node.attr}")
    return found


def test_no_module_reads_another_modules_private_names():
    assert _reach_ins() == []


def test_no_module_level_getattr_shim():
    shims = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        shims += [str(path.relative_to(SRC)) for node in tree.body
                  if isinstance(node, ast.FunctionDef) and node.name == "__getattr__"]
    assert shims == []


def test_the_check_sees_a_reach_in(tmp_path, monkeypatch):
    # the scan itself can fail: a module reading nearest's private name is reported
    pkg = tmp_path / "densecore"
    (pkg / "_backends").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "_backends" / "__init__.py").write_text("")
    (pkg / "_backends" / "nearest.py").write_text("_x = 1\n")
    (pkg / "user.py").write_text("from ._backends import nearest\ny = nearest._x\n")
    monkeypatch.setattr(__import__(__name__), "SRC", pkg)
    assert _reach_ins() == ["user.py:2 nearest._x"]
