"""``densecore select``: round trip on generated data, input formats, errors, atomic output."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from densecore import DensityAwareGreedy, KCenterGreedy
from densecore.cli import main
from densecore.synthetic import gaussian_mixture


@pytest.fixture(scope="module")
def data():
    x, _ = gaussian_mixture(600, dim=6, n_components=5, seed=3)
    d = np.random.default_rng(3).uniform(0.5, 2.0, size=600)
    return x, d


def select(*argv):
    return main(["select", *map(str, argv)])


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "select" in out and "demo" in out


def test_round_trip_kcenter_and_density_aware(tmp_path, data, capsys):
    x, d = data
    np.save(tmp_path / "F.npy", x)
    np.save(tmp_path / "D.npy", d)
    np.save(tmp_path / "L.npy", np.array([4, 9, 100]))
    assert select("--features", tmp_path / "F.npy", "--budget", 25, "--out",
                  tmp_path / "k.npy", "--seed", 7, "--sampler", "kcenter") == 0
    got = np.load(tmp_path / "k.npy")
    assert got.dtype == np.int64 and got.shape == (25,)
    np.testing.assert_array_equal(got, KCenterGreedy(seed=7).select(x, 25).indices)
    captured = capsys.readouterr()
    assert "greedy (numba)" in captured.err  # the progress bar
    assert "KCenterGreedy: selected 25 of 600" in captured.out

    assert select("--features", tmp_path / "F.npy", "--densities", tmp_path / "D.npy",
                  "--labeled", tmp_path / "L.npy", "--budget", 30, "--out",
                  tmp_path / "d.npy", "--no-progress") == 0
    want = DensityAwareGreedy().select(x, 30, densities=d, labeled=np.array([4, 9, 100]))
    got = np.load(tmp_path / "d.npy")
    np.testing.assert_array_equal(got, want.indices)
    assert not set(got.tolist()) & {4, 9, 100}
    assert "greedy" not in capsys.readouterr().err

    assert select("--features", tmp_path / "F.npy", "--budget", 3, "--init", 11,
                  "--backend", "torch", "--no-progress", "--out", tmp_path / "i.npy",
                  "--sampler", "kcenter") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "i.npy"),
                                  KCenterGreedy().select(x, 3, init=11).indices)
    assert np.load(tmp_path / "i.npy")[0] == 11
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_sampler_choices(tmp_path, data, capsys):
    import densecore
    import densecore.engines
    from densecore import cli

    x, d = data
    np.save(tmp_path / "F.npy", x)
    np.save(tmp_path / "D.npy", d)
    assert select("--features", tmp_path / "F.npy", "--budget", 12, "--no-progress",
                  "--sampler", "kmedoids-refinement", "--out", tmp_path / "m.npy") == 0
    want = densecore.KMedoidsRefinement(KCenterGreedy()).select(x, 12).indices
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), want)
    assert "KMedoidsRefinement: selected 12" in capsys.readouterr().out
    assert select("--features", tmp_path / "F.npy", "--densities", tmp_path / "D.npy",
                  "--sampler", "typicality", "--budget", 12, "--no-progress",
                  "--out", tmp_path / "t.npy") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "t.npy"), densecore.TypicalityGreedy()
                                  .select(x, 12, densities=d).indices)
    with pytest.raises(SystemExit) as exc:
        select("--features", tmp_path / "F.npy", "--densities", tmp_path / "D.npy",
               "--sampler", "kcenter", "--budget", 3, "--out", tmp_path / "x.npy")
    assert exc.value.code == 2
    assert "--sampler kcenter ignores densities" in capsys.readouterr().err
    # the CLI's backend and metric lists are the library's (kept literal for a fast start-up)
    assert cli.BACKENDS == densecore.engines.BACKENDS
    assert cli.METRICS == densecore.metrics.METRICS


def test_npz_and_pt_inputs(tmp_path, data):
    x, d = data
    want = DensityAwareGreedy().select(x, 20, densities=d).indices
    np.savez(tmp_path / "one.npz", feats=x)
    np.savez_compressed(tmp_path / "two.npz", features=x, densities=d)
    torch.save(torch.from_numpy(d), tmp_path / "D.pt")
    torch.save(torch.from_numpy(x), tmp_path / "F.pt")
    for f, dens in [("one.npz", "two.npz:densities"), ("two.npz:features", "D.pt"),
                    ("F.pt", "D.pt")]:
        out = tmp_path / f"out-{f}.npy".replace(":", "_")
        assert select("--features", tmp_path / f, "--densities", tmp_path / dens,
                      "--budget", 20, "--no-progress", "--out", out) == 0
        np.testing.assert_array_equal(np.load(out), want)


def test_cuda_device(tmp_path, data, device):
    x, _ = data
    np.save(tmp_path / "F.npy", x)
    assert select("--features", tmp_path / "F.npy", "--budget", 10, "--device", device,
                  "--no-progress", "--out", tmp_path / "o.npy", "--sampler", "kcenter") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"),
                                  KCenterGreedy().select(x, 10).indices)


@pytest.mark.parametrize("setup, args, match", [
    (None, ["--features", "{t}/missing.npy"], r"cannot read --features '.*missing.npy': .*No such"),
    ("garbage", ["--features", "{t}/bad.npy"], r"cannot read --features '.*bad.npy'"),
    ("pickle", ["--features", "{t}/obj.npy"], r"cannot read --features '.*obj.npy'.*pickle"),
    ("two", ["--features", "{t}/two.npz"], r"holds arrays \['a', 'b'\]; name one"),
    ("two", ["--features", "{t}/two.npz:c"], r"has no array 'c'"),
    ("dict", ["--features", "{t}/dict.pt"], r"cannot read --features .*expected a tensor"),
    ("good", ["--features", "{t}/F.npy", "--densities", "{t}/Dshort.npy"],
     r"densities must have shape \(600,\)"),
    ("good", ["--features", "{t}/F.npy", "--densities", "{t}/Dneg.npy"],
     r"densities must be strictly positive"),
    ("good", ["--features", "{t}/F.npy", "--labeled", "{t}/Lfloat.npy"],
     r"labeled must be an integer index array"),
    ("good", ["--features", "{t}/D.npy"], r"features must have shape \(N, D\)"),
])
def test_bad_files_give_clear_errors(tmp_path, data, capsys, setup, args, match):
    x, d = data
    t = str(tmp_path)
    if setup == "garbage":
        (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    elif setup == "pickle":
        np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif setup == "two":
        np.savez(tmp_path / "two.npz", a=x, b=x)
    elif setup == "dict":
        torch.save({"features": torch.from_numpy(x)}, tmp_path / "dict.pt")
    elif setup == "good":
        np.save(tmp_path / "F.npy", x)
        np.save(tmp_path / "D.npy", d)
        np.save(tmp_path / "Dshort.npy", d[:10])
        np.save(tmp_path / "Dneg.npy", -d)
        np.save(tmp_path / "Lfloat.npy", np.array([1.0, 2.0]))
    out = tmp_path / "out.npy"
    out.write_bytes(b"previous")
    with pytest.raises(SystemExit) as e:
        select(*[a.format(t=t) for a in args], "--budget", 5, "--no-progress", "--out", out)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "densecore select: error:" in err
    import re
    assert re.search(match, err), err
    assert out.read_bytes() == b"previous"  # nothing half-written


def test_budget_too_large(tmp_path, data, capsys):
    x, _ = data
    np.save(tmp_path / "F.npy", x)
    with pytest.raises(SystemExit):
        select("--features", tmp_path / "F.npy", "--budget", 601, "--out", tmp_path / "o.npy")
    assert "budget must be at most the number of unlabeled points (600)" in \
        capsys.readouterr().err
    assert not (tmp_path / "o.npy").exists()


def test_metric_labeled_features_and_knn_densities(tmp_path, data):
    import densecore

    x, d = data
    pool, lf = x[:500], x[500:]
    ld = d[500:]
    np.save(tmp_path / "F.npy", pool)
    np.save(tmp_path / "D.npy", d[:500])
    np.save(tmp_path / "LF.npy", lf)
    np.save(tmp_path / "LD.npy", ld)
    common = ["--features", tmp_path / "F.npy", "--budget", 15, "--no-progress"]

    assert select(*common, "--metric", "cosine", "--out", tmp_path / "c.npy") == 0
    want = KCenterGreedy(metric="cosine").select(pool, 15).indices
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), want)
    assert not np.array_equal(want, KCenterGreedy().select(pool, 15).indices)

    assert select(*common, "--densities", tmp_path / "D.npy", "--labeled-features",
                  tmp_path / "LF.npy", "--labeled-densities", tmp_path / "LD.npy",
                  "--out", tmp_path / "l.npy") == 0
    want = DensityAwareGreedy().select(pool, 15, densities=d[:500], labeled_features=lf,
                                       labeled_densities=ld).indices
    np.testing.assert_array_equal(np.load(tmp_path / "l.npy"), want)

    # knn: one KNNDensity over the pool and the labeled points together, in --metric
    assert select(*common, "--densities", "knn", "--labeled-features", tmp_path / "LF.npy",
                  "--metric", "cosine", "--out", tmp_path / "k.npy") == 0
    dens = densecore.KNNDensity(metric="cosine")(np.concatenate([pool, lf]))
    want = DensityAwareGreedy(metric="cosine").select(
        pool, 15, densities=dens[:500], labeled_features=lf, labeled_densities=dens[500:])
    np.testing.assert_array_equal(np.load(tmp_path / "k.npy"), want.indices)

    assert select(*common, "--densities", "knn", "--out", tmp_path / "k2.npy") == 0
    want = DensityAwareGreedy().select(pool, 15, densities=densecore.KNNDensity()(pool))
    np.testing.assert_array_equal(np.load(tmp_path / "k2.npy"), want.indices)


def test_out_txt_holds_one_index_per_line(tmp_path, data):
    x, _ = data
    np.save(tmp_path / "F.npy", x)
    assert select("--features", tmp_path / "F.npy", "--budget", 7, "--no-progress",
                  "--out", tmp_path / "o.txt") == 0
    want = KCenterGreedy().select(x, 7).indices
    text = (tmp_path / "o.txt").read_text()
    assert text == "".join(f"{i}\n" for i in want.tolist())
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "o.txt", dtype=np.int64), want)


def test_device_path_reports_the_file_dtype(tmp_path, capsys):
    np.save(tmp_path / "F.npy", np.arange(40).reshape(20, 2))
    with pytest.raises(SystemExit) as e:
        select("--features", tmp_path / "F.npy", "--budget", 2, "--device", "cpu",
               "--out", tmp_path / "o.npy")
    assert e.value.code == 2
    assert capsys.readouterr().err == ("densecore select: error: features must be a floating "
                                       "array; got dtype int64\n")


def test_device_cpu_moves_every_input(tmp_path, data):
    x, d = data
    np.save(tmp_path / "F.npy", x[:500])
    np.save(tmp_path / "D.npy", d[:500])
    np.save(tmp_path / "L.npy", np.array([3, 7]))
    np.save(tmp_path / "LF.npy", x[500:])
    np.save(tmp_path / "LD.npy", d[500:])
    assert select("--features", tmp_path / "F.npy", "--densities", tmp_path / "D.npy",
                  "--labeled", tmp_path / "L.npy", "--labeled-features", tmp_path / "LF.npy",
                  "--labeled-densities", tmp_path / "LD.npy", "--device", "cpu",
                  "--budget", 9, "--no-progress", "--out", tmp_path / "o.npy") == 0
    want = DensityAwareGreedy().select(x[:500], 9, densities=d[:500], labeled=[3, 7],
                                       labeled_features=x[500:], labeled_densities=d[500:])
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), want.indices)
