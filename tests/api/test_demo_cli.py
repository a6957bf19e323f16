"""``densecore demo`` and the CLI entry point."""

from __future__ import annotations

import subprocess
import sys

from densecore.cli import main
from densecore.demo import METHODS, check_demo_args, demo_rows


def test_demo_rows_cover_every_method_and_budget():
    rows = demo_rows(n=600, dim=4, budgets=[10, 20], progress=False)
    assert [(r["budget"], r["method"]) for r in rows] == [
        (b, m) for b in (10, 20)
        for m in METHODS]
    assert "kmedoids_refinement" in METHODS and "density_aware" in METHODS
    for r in rows:
        assert 0 <= r["max_ard"] <= r["delta"]  # Theorem 3
        assert 0 <= r["coreset_loss"] <= 1


def test_demo_command_prints_a_table(capsys):
    assert main(["demo", "--n", "400", "--dim", "3", "--budgets", "5", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| budget | method | delta | max_ard | coreset_loss | seconds |" in out
    assert out.count("\n| 5 |") == len(METHODS)
    # the table is followed by its reading, and no progress bar is printed
    last = out.strip().splitlines()[-1]
    assert last.startswith("Reading (max ARD against k-center") and "kmedoids_refinement" in last


def test_demo_reading_computes_ratios_against_kcenter():
    from densecore.demo import reading

    rows = [{"budget": 5, "method": "kcenter", "max_ard": 2.0},
            {"budget": 5, "method": "a", "max_ard": 1.0},
            {"budget": 9, "method": "kcenter", "max_ard": 1.0},
            {"budget": 9, "method": "a", "max_ard": 3.0}]
    assert reading(rows).endswith("a 0.50x-3.00x.")


def test_demo_flags_are_checked_with_one_line_errors():
    import pytest

    for args, flag in (((100, 16, [1000]), "--budgets"), ((5, 16, [2]), "--n"),
                       ((100, 0, [5]), "--dim"), ((100, 16, []), "--budgets")):
        with pytest.raises(ValueError, match=flag) as exc:
            check_demo_args(*args)
        assert "\n" not in str(exc.value)


def test_help_lists_commands():
    res = subprocess.run([sys.executable, "-m", "densecore.cli", "--help"],
                         capture_output=True, text=True, check=True)
    assert "demo" in res.stdout
