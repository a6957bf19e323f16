"""The speed benchmark's baselines make Algorithm 1's selection; the CLI writes JSON.

No timing is asserted here (speed lives in benchmarks/).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from reference import density_aware_greedy_ref

from densecore.bench import speed
from densecore.cli import main


@pytest.mark.parametrize("fn", [speed.naive_gemv_greedy, speed.sklearn_greedy,
                                speed.torch_norm_greedy])
def test_baselines_match_float64_reference(fn):
    pytest.importorskip("sklearn")
    x, d = speed.make_problem(400, 5, seed=3)
    got = fn(x, d, 30, 7)
    ref, _ = density_aware_greedy_ref(x.astype(np.float64), 30, densities=d, init=7)
    assert np.array_equal(got, np.asarray(ref))


def test_compare_selections_finds_divergence():
    x, d = speed.make_problem(300, 4, seed=1)
    a = speed.naive_gemv_greedy(x, d, 10, 0)
    b = a.copy()
    b[4], b[5] = a[5], a[4]
    out = speed.compare_selections(x, d, a, b)
    assert (out["identical"], out["first_divergence"], out["mismatches"]) == (False, 4, 2)
    assert out["divergence_rel_gap"] > 0
    assert speed.compare_selections(x, d, a, a)["identical"]


def test_run_speed_rows_and_cli_json(tmp_path, capsys):
    rows = speed.run_speed(n=500, dim=4, budget=8, repeats=1, methods=("naive", "torch_norm"),
                           baseline_picks=4)
    assert [r["method"] for r in rows] == ["engine", "naive", "torch_norm"]
    assert all(r["identical"] for r in rows)
    assert rows[2]["picks_timed"] == 4 and rows[2]["extrapolated"]
    with pytest.raises(ValueError, match="methods"):
        speed.run_speed(n=50, dim=2, budget=2, methods=("nope",))
    out = tmp_path / "s.json"
    assert main(["bench", "speed", "--n", "400", "--dim", "4", "--budget", "5", "--repeats",
                 "1", "--methods", "engine", "naive", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == "speed" and len(data["rows"]) == 2
    assert "| engine |" in capsys.readouterr().out


def test_table_columns_say_time_ratios_load_and_caption(capsys):
    rows = speed.run_speed(n=400, dim=4, budget=6, repeats=1, methods=("engine", "naive"))
    assert {"time_vs_naive", "time_vs_engine", "load"} <= set(rows[0])
    assert not {"vs_naive", "engine_speedup"} & set(rows[0])
    naive = rows[1]
    assert naive["time_vs_naive"] == 1.0
    assert naive["time_vs_engine"] == pytest.approx(naive["time_s"] / rows[0]["time_s"])
    assert isinstance(rows[0]["load"], float) and rows[0]["load"] >= 0  # os.getloadavg()[0]
    out = speed.format_table(rows)
    header = out.splitlines()[0]
    assert header.startswith("| load | method |") and "| part |" not in header
    assert f"| {rows[0]['load']:.4g} | engine |" in out  # load is printed, not "-"
    assert out.splitlines()[-1] == speed.CAPTION and "below 1 is faster" in speed.CAPTION
    assert speed.table_columns([{"part": "idle"}])[0] == "part"
    assert main(["bench", "speed", "--n", "300", "--dim", "4", "--budget", "4", "--repeats",
                 "1", "--methods", "engine", "naive"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(speed.CAPTION)


def test_quick_is_a_small_pool_where_the_plain_loop_runs(tmp_path, monkeypatch):
    """``bench speed --quick`` times 5,000 points (at most the plain loop's PLAIN_MAX)
    with 300 picks; an explicit --n or --budget still wins."""
    import densecore.bench.speed as S
    from densecore._backends.numba.engine import PLAIN_MAX

    seen = []
    monkeypatch.setattr(S, "run_speed", lambda **kw: seen.append(kw) or [])
    monkeypatch.setattr(S, "format_table", lambda rows: "")
    assert main(["bench", "speed", "--quick", "--methods", "engine", "naive"]) == 0
    assert (seen[-1]["n"], seen[-1]["budget"], seen[-1]["repeats"]) == (5000, 300, 2)
    assert seen[-1]["n"] <= PLAIN_MAX
    assert main(["bench", "speed", "--quick", "--n", "700", "--budget", "9",
                 "--methods", "naive"]) == 0
    assert (seen[-1]["n"], seen[-1]["budget"]) == (700, 9)
