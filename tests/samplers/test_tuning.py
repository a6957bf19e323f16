"""tune_density_scaling: grid, held-out protocol, beta invariance, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from densecore import (DensityAwareGreedy, KCenterGreedy, bound_report, coverage_density,
                       tune_density_scaling)
from densecore.density import knn_mean_distance
from densecore.synthetic import gaussian_mixture


@pytest.fixture(scope="module")
def data():
    x, _ = gaussian_mixture(240, dim=4, n_components=4, seed=3)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, knn_mean_distance(x, 5)


def test_choice_is_the_argmin_of_the_tuning_scores(data):
    x, e = data
    taus = (0.1, 0.5, 2.0)
    res = tune_density_scaling(x, e, 24, taus=taus)
    assert [s["tau"] for s in res.scores] == list(taus)
    best = min(res.scores, key=lambda s: s["max_ard"])
    assert res.tau == best["tau"] and res.tune_max_ard == best["max_ard"]
    for s in res.scores:
        assert 0 < s["max_ard"] <= s["delta"] + 1e-9  # Theorem 3


def test_holdout_scores_follow_the_documented_protocol(data):
    x, e = data
    seed, budget = 5, 24
    res = tune_density_scaling(x, e, budget, taus=(0.25, 1.0), seed=seed, splits=1)
    perm = np.random.default_rng(seed).permutation(len(x))
    tune, hold = perm[: len(x) // 2], perm[len(x) // 2:]
    b = round(budget * len(hold) / len(x))
    xb = x[hold]
    kc = bound_report(xb, KCenterGreedy(seed=seed).select(xb, b).indices).max_ard
    assert res.holdout_kcenter_max_ard == pytest.approx(kc)
    d = coverage_density(e[hold], tau=0.25)
    dflt = bound_report(xb, DensityAwareGreedy(seed=seed).select(xb, b, densities=d).indices)
    assert res.holdout_default_max_ard == pytest.approx(dflt.max_ard)
    d = coverage_density(e[hold], tau=res.tau, beta=res.beta)
    chosen = bound_report(xb, DensityAwareGreedy(seed=seed).select(xb, b, densities=d).indices)
    assert res.holdout_max_ard == pytest.approx(chosen.max_ard)
    assert res.beats_kcenter == (res.holdout_max_ard < res.holdout_kcenter_max_ard)
    # the tuning half is what the scores were computed on
    xa = x[tune]
    d = coverage_density(e[tune], tau=res.tau, beta=res.beta)
    sel = DensityAwareGreedy(seed=seed).select(xa, round(budget * len(tune) / len(x)),
                                               densities=d).indices
    assert res.tune_max_ard == pytest.approx(bound_report(xa, sel).max_ard)


def test_beta_does_not_change_the_selection_and_ties_go_to_the_first(data):
    x, e = data
    res = tune_density_scaling(x, e, 20, taus=(0.5,), betas=(3.0, 1.0, 50.0))
    scores = [s["max_ard"] for s in res.scores]
    assert scores[0] == scores[1] == scores[2]
    assert res.beta == 3.0


def test_tensor_input_gives_the_numpy_result(data):
    x, e = data
    a = tune_density_scaling(x, e, 20, taus=(0.25, 1.0))
    b = tune_density_scaling(torch.from_numpy(x), torch.from_numpy(e), 20, taus=(0.25, 1.0))
    assert a.tau == b.tau and a.holdout_max_ard == pytest.approx(b.holdout_max_ard)


def test_a_too_small_tau_is_not_chosen_on_a_mixture(data):
    # tau = 0.02 puts a density ratio of e^50 between the sparsest and the densest
    # point; the greedy then fills sparse areas and leaves whole components uncovered.
    x, e = data
    res = tune_density_scaling(x, e, 24, taus=(0.02, 4.0))
    assert res.scores[0]["max_ard"] > res.scores[1]["max_ard"]
    assert res.tau == 4.0


@pytest.mark.parametrize("kwargs, match", [
    ({"raw_error": np.zeros(5)}, "raw_error must have shape"),
    ({"raw_error": -np.ones(240)}, "non-negative"),
    ({"budget": 1000}, "budget must be at most"),
    ({"budget": 0}, "budget must be >= 1"),
    ({"taus": ()}, "taus must hold at least one"),
    ({"taus": (0.0,)}, "taus must be finite and > 0"),
    ({"betas": (-1.0,)}, "betas must be finite and > 0"),
])
def test_bad_input(data, kwargs, match):
    x, e = data
    args = {"raw_error": e, "budget": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        tune_density_scaling(x, args.pop("raw_error"), args.pop("budget"), **args)


def test_too_few_points():
    with pytest.raises(ValueError, match="at least 4 points"):
        tune_density_scaling(np.zeros((3, 2)), np.zeros(3), 1)
