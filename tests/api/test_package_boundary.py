"""No import crosses the package boundary back in: nothing under ``src/densecore``
imports or loads (``importlib``, ``runpy``, ``exec``) a module from outside the
package, such as the repository's ``benchmarks/`` folder."""

from __future__ import annotations

import ast
import pathlib

import densecore

SRC = pathlib.Path(densecore.__file__).parent


def _loads(tree: ast.AST) -> list[str]:
    """File-based loads (``spec_from_file_location``, ``runpy``, ``exec``) and
    ``import_module`` calls whose module name is not a densecore module."""
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
        if name in ("spec_from_file_location", "run_path", "exec", "SourceFileLoader"):
            out.append(name)
        elif name == "import_module" and node.args:
            arg = node.args[0]
            text = ast.unparse(arg)
            local = (isinstance(arg, ast.JoinedStr) and text.startswith(("f'densecore.",
                                                                          "f'.")))
            local |= isinstance(arg, ast.Constant) and str(arg.value).startswith("densecore")
            if not local:
                out.append(f"import_module({text})")
    return out


def _imports_of_benchmarks(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
    return [n for n in names if n.split(".")[0] in ("benchmarks", "bounds_data", "_common",
                                                   "exact_ard", "bounds_plots", "tests")]


def test_the_package_loads_nothing_from_outside_itself():
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        if bad := _loads(tree) + _imports_of_benchmarks(tree):
            found[str(path.relative_to(SRC))] = bad
    assert found == {}


def test_the_scan_sees_a_file_load():
    code = ("import importlib.util\nspec = importlib.util.spec_from_file_location('m', 'p')\n"
            "import importlib\nimportlib.import_module(name)\n"
            "importlib.import_module(f'densecore.{x}')\nfrom bounds_data import load_datasets\n")
    tree = ast.parse(code)
    assert _loads(tree) == ["spec_from_file_location", "import_module(name)"]
    assert _imports_of_benchmarks(tree) == ["bounds_data"]
