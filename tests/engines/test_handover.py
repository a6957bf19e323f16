"""The numba engine's pruned/dense choice (``_backends/numba/handover.py``) on given
costs: the first hand-over from measured seconds and rows read, then paired trials that keep the cheaper
mode, end early when the other cannot win, and space out while they agree. No timing:
the costs are handed in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import densecore
from densecore._backends.numba.handover import HandOver

W = HandOver.WINDOW


def _drive(h, cost, picks, n_live=10_000, reads=None):
    """Run ``picks`` picks through ``h`` with ``cost[mode]`` seconds per pick; returns the
    mode of every pick."""
    made, modes = 0, []
    while made < picks:
        m = h.next(picks - made)
        mode = h.mode
        made += m
        modes += [mode] * m
        h.done(mode, m, cost[mode] * m, 1, reads=(n_live if reads is None else reads) * m,
               n_live=n_live, made=made)
    return modes


def test_no_hand_over_while_a_pruned_pick_costs_less_than_a_dense_one_would():
    # 10,000 live points: a dense pick is estimated at DENSE_SECONDS * 10,000 = 45 us
    h = HandOver(10_000, 2_000)
    modes = _drive(h, {"pruned": 3e-5, "dense": 1e-6}, 2_000)
    assert set(modes) == {"pruned"} and not h.built


def test_no_hand_over_when_the_picks_left_cannot_pay_for_the_build():
    # pruning costs 100 us more per pick than a dense pick would, but the build of
    # 10,000 points (20 ms) is only paid back after 400 picks: with 100 picks, never
    h = HandOver(10_000, 100)
    modes = _drive(h, {"pruned": 1.45e-4, "dense": 1e-6}, 100)
    assert set(modes) == {"pruned"} and not h.built
    h = HandOver(10_000, 4_000)  # the same cost with 4,000 picks: hand over
    _drive(h, {"pruned": 1.45e-4, "dense": 1e-6}, 4_000)
    assert h.built


@pytest.mark.parametrize("dense_cost,final", [(0.2, "dense"), (3.0, "pruned")])
def test_after_the_hand_over_the_cheaper_mode_is_kept(dense_cost, final):
    # every row read every pick: the first hand-over comes after the warm-up window;
    # then the trials keep whichever mode measures cheaper per pick
    h = HandOver(10_000, 4_000)
    modes = _drive(h, {"pruned": 1.0, "dense": dense_cost}, 4_000)
    first = modes.index("dense")
    assert h.built and 2 * W <= first <= 10 * W  # once pruning has lost the build's cost
    assert modes[-1] == final
    share = modes.count(final) / len(modes)
    assert share > 0.95  # trials of the dearer mode are short and ever rarer
    assert h.trials >= 3


def test_a_trial_of_a_far_dearer_mode_ends_after_a_pick_or_two():
    h = HandOver(10_000, 4_000)
    modes = _drive(h, {"pruned": 1.0, "dense": 50.0}, 4_000)
    runs, cur = [], None
    for m in modes:
        if m != cur:
            runs.append([m, 0])
            cur = m
        runs[-1][1] += 1
    # after the first hand-over's window, each visit to dense mode lasts one pick
    assert all(n == 1 for m, n in runs[3:] if m == "dense")


@pytest.mark.parametrize("falling", [True, False])
def test_no_hand_over_while_rows_read_per_pick_keep_falling(falling):
    # the same first windows (every row read, 200 us per pick against a dense pick's
    # 45 us estimate, a build of 20 ms): when the rows read halve as the picks double
    # from pick 64 on (clusters getting their centres), the projected saving stays
    # below two builds and the engine keeps pruning; when they stay, it hands over
    h = HandOver(10_000, 4_000)
    made = 0
    while made < 4_000 and not h.built:
        m = h.next(4_000 - made)
        made += m
        rows = 10_000 * min(1.0, 64 / made) if falling else 10_000
        h.done(h.mode, m, 2e-8 * rows * m, 1, reads=int(rows * m), n_live=10_000,
               made=made)
    assert h.built != falling


def test_fixed_policies_and_a_bad_policy():
    assert HandOver(100, 10, "dense").mode == "dense"
    h = HandOver(10_000, 2_000, "pruned")
    assert set(_drive(h, {"pruned": 1.0, "dense": 0.01}, 2_000)) == {"pruned"}
    with pytest.raises(ValueError, match="policy"):
        HandOver(10, 10, "fast")


def test_no_njit_function_of_the_numba_engine_is_over_80_lines():
    pkg = Path(densecore.__file__).parent / "_backends" / "numba"
    assert (pkg / "__init__.py").exists()
    assert not (pkg.parent / "numba_backend.py").exists()
    sizes = {}
    for path in pkg.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and any(
                    "njit" in ast.unparse(d) for d in node.decorator_list):
                sizes[f"{path.name}:{node.name}"] = node.end_lineno - node.lineno + 1
    assert len(sizes) >= 20
    assert max(sizes.values()) <= 80, max(sizes, key=sizes.get)
