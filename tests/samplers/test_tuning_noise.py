"""tune_density_scaling's noise test over several splits."""

from __future__ import annotations

import numpy as np
import pytest

from densecore import tune_density_scaling


def test_per_split_numbers_and_verdict_are_consistent():
    g = np.random.default_rng(0)
    x = g.normal(size=(300, 4)).astype(np.float32)
    e = g.uniform(size=300)
    res = tune_density_scaling(x, e, 20, taus=(0.25, 2.0), seed=4, splits=3)
    assert res.splits == 3 and [r["seed"] for r in res.per_split] == [4, 5, 6]
    for i, r in enumerate(res.per_split):
        one = tune_density_scaling(x, e, 20, taus=(0.25, 2.0), seed=4 + i, splits=1)
        assert r["holdout_kcenter_max_ard"] == pytest.approx(one.holdout_kcenter_max_ard)
        assert r["holdout_default_max_ard"] == pytest.approx(one.holdout_default_max_ard)
    gains = [r["holdout_kcenter_max_ard"] - r["holdout_max_ard"] for r in res.per_split]
    assert res.gain == pytest.approx(np.mean(gains))
    assert res.gain_sd == pytest.approx(np.std(gains, ddof=1))
    assert res.verdict == ("gain" if res.gain - res.gain_sd > 0 else "no gain")
    assert res.as_dict()["verdict"] == res.verdict


def test_random_errors_on_uniform_data_give_no_gain():
    # the raw error carries no information: tuning cannot beat k-center beyond noise
    g = np.random.default_rng(1)
    x = g.uniform(size=(400, 3)).astype(np.float32)
    e = g.uniform(size=400)
    res = tune_density_scaling(x, e, 30, seed=0, splits=4)
    assert res.verdict == "no gain"


def test_one_split_is_untested():
    g = np.random.default_rng(2)
    x = g.normal(size=(100, 2)).astype(np.float32)
    res = tune_density_scaling(x, g.uniform(size=100), 10, taus=(1.0,), splits=1)
    assert res.verdict == "untested" and np.isnan(res.gain_sd)
    with pytest.raises(ValueError, match="splits"):
        tune_density_scaling(x, g.uniform(size=100), 10, splits=0)
