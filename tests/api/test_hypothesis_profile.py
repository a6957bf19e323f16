"""Every property test runs without a wall-clock deadline (tests/conftest.py's profile)."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import settings

TESTS = Path(__file__).resolve().parents[1]


def test_the_loaded_profile_has_no_deadline():
    assert settings.default.deadline is None
    assert settings.default.derandomize


def test_no_test_sets_a_deadline():
    """A hypothesis ``settings(...)`` with a deadline would override the profile."""
    bad = []
    for path in sorted(p for p in TESTS.rglob("*.py") if p.name != Path(__file__).name):
        for m in re.finditer(r"settings\([^)]*?deadline\s*=\s*([^,)\s]+)", path.read_text()):
            if m.group(1) != "None":
                bad.append(f"{path.name}: deadline={m.group(1)}")
    assert not bad, bad
