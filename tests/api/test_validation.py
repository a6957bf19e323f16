"""Bad input raises ValueError/TypeError naming the argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import densecore

X = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
D = np.ones(20)


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(features=np.where(np.arange(60).reshape(20, 3) == 31, np.nan, X)), ValueError,
     ["features", "finite", "row 10"]),
    (dict(features=X[:, 0]), ValueError, ["features", "(N, D)"]),
    (dict(features=X.astype(np.int64)), TypeError, ["features", "floating"]),
    (dict(densities=np.r_[D[:17], 0.0, D[:2]]), ValueError,
     ["densities", "strictly positive", "index 17"]),
    (dict(densities=np.r_[D[:5], np.inf, D[:14]]), ValueError, ["densities", "finite"]),
    (dict(densities=D[:5]), ValueError, ["densities", "(20,)"]),
    (dict(budget=21), ValueError, ["budget", "20"]),
    (dict(budget=-1), ValueError, ["budget", ">= 0"]),
    (dict(budget=2.5), TypeError, ["budget", "integer"]),
    (dict(labeled=[3, 20]), ValueError, ["labeled", "[0, 20)", "20"]),
    (dict(labeled=[3, 3]), ValueError, ["labeled", "repeat", "3"]),
    (dict(labeled=[1], budget=20), ValueError, ["budget", "19"]),
    (dict(labeled_features=np.zeros((2, 4), np.float32)), ValueError,
     ["labeled_features", "D = 3"]),
    (dict(densities=D, labeled_features=np.zeros((2, 3), np.float32)), ValueError,
     ["labeled_densities"]),
    (dict(init=25), ValueError, ["init", "[0, 20)"]),
    (dict(init=2, labeled=[1]), ValueError, ["init", "nothing is labeled"]),
    (dict(backend="gpu"), ValueError, ["backend", "'gpu'"]),
])
def test_bad_input_names_the_argument(kwargs, exc, words):
    args = dict(features=X, budget=3)
    args.update(kwargs)
    with pytest.raises(exc) as info:
        densecore.farthest_first(args.pop("features"), args.pop("budget"), **args)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_density_aware_requires_densities():
    with pytest.raises(ValueError, match="densities is required"):
        densecore.DensityAwareGreedy().select(X, 2, densities=None)


def test_validate_false_skips_value_scans_only():
    bad = X.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError):
        densecore.farthest_first(bad, 2)
    # no input scan, but a non-finite r during the selection still raises
    with pytest.raises(ValueError, match="r = distance / density is not finite at pick 1"):
        densecore.farthest_first(bad, 2, validate=False, backend="torch", init=3)
    assert len(densecore.farthest_first(bad[1:], 2, validate=False)) == 2
    with pytest.raises(ValueError, match="budget"):  # shape/size checks still run
        densecore.farthest_first(bad, 99, validate=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_mixed_devices():
    with pytest.raises(ValueError, match="densities must be on the same device"):
        densecore.farthest_first(torch.from_numpy(X).cuda(), 2, densities=torch.ones(20))


def test_secondary_tensor_on_another_device():
    xt = torch.from_numpy(X)
    meta = torch.ones(20, device="meta")
    with pytest.raises(ValueError, match="densities must be on the same device"):
        densecore.farthest_first(xt, 2, densities=meta)
