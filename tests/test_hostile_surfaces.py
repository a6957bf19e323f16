"""Hostile inputs on the newer surfaces, one test per root cause: the label state's
round numbers and manifests, logits and probabilities of the scores, RIPU's window,
the Lightning callback's constructor, the batched greedy's arguments and the
scikit-activeml utilities at extreme scales. Each test fails on the code before
its fix; every bad input must give a ValueError/TypeError naming the argument
(CorruptFileError for files)."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch

import densecore
from densecore import filters
from densecore.state import ActiveLabelState, CorruptFileError
from densecore import validation as V

# ---------------------------------------------------------------- logits (from_logits=True)


SCORES = [filters.entropy_score, filters.margin_score, filters.least_confidence_score,
          filters.region_impurity, filters.prediction_uncertainty, filters.ripu_score]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("fn", SCORES, ids=lambda f: f.__name__)
def test_non_finite_logits_are_rejected(fn, bad):
    x = torch.randn(1, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    x[0, 1, 2, 3] = bad
    with pytest.raises(ValueError, match="probs must be finite logits"):
        fn(x, from_logits=True)
    fn(x, from_logits=True, validate=False)  # the caller's choice: no scan


@pytest.mark.parametrize("fn", SCORES, ids=lambda f: f.__name__)
def test_finite_logits_give_the_softmax_scores(fn):
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(fn(x, from_logits=True), fn(torch.softmax(x, 1)))


# ---------------------------------------------------------------- probabilities below 0


@pytest.mark.parametrize("fn", SCORES, ids=lambda f: f.__name__)
def test_negative_probabilities_are_rejected(fn):
    p = torch.full((3, 4, 4), 1 / 3, dtype=torch.float64)
    p[0, 1, 1] = -1e-4  # within the old 1e-3 tolerance; the entropy of it is NaN
    p[1, 1, 1] = 2 / 3 + 1e-4  # the sum over classes is 1
    with pytest.raises(ValueError, match=r"probs must be probabilities in \[0, 1\].*min -0.0001"):
        fn(p)


def test_negative_zero_and_rounding_above_one_pass():
    p = torch.zeros(2, 3, 3)
    p[0] = 1.0 + 5e-4  # a rounding above 1 stays accepted (sum within atol)
    p[1] = -0.0
    assert torch.isfinite(filters.entropy_score(p)).all()


# ---------------------------------------------------------------- booleans


@pytest.mark.parametrize("bad", ["no", "False", 1, 0, None, np.float64(1.0)])
def test_from_logits_must_be_a_real_bool(bad):
    p = torch.softmax(torch.randn(1, 3, 4, 4), 1)
    with pytest.raises(TypeError, match="from_logits must be True or False"):
        filters.entropy_score(p, from_logits=bad)
    with pytest.raises(TypeError, match="from_logits must be True or False"):
        densecore.select_pixels(p, None, None, 2, sampler=None, from_logits=bad)
    with pytest.raises(TypeError, match="validate must be True or False"):
        filters.margin_score(p, validate=bad)


def test_check_bool_takes_python_and_numpy_bools():
    assert V.check_bool(True, "x") is True and V.check_bool(np.bool_(False), "x") is False
    with pytest.raises(TypeError, match="flag must be True or False; got str 'yes'"):
        V.check_bool("yes", "flag")


# ---------------------------------------------------------------- RIPU's window


@pytest.mark.parametrize("fn", [filters.region_impurity, filters.prediction_uncertainty,
                                filters.ripu_score], ids=lambda f: f.__name__)
def test_ripu_window_is_clamped_to_the_image(fn):
    p = torch.softmax(torch.randn(2, 5, 8, 6, dtype=torch.float64,
                                  generator=torch.Generator().manual_seed(2)), 1)
    whole = fn(p, k=7)  # 15 x 15 from any pixel covers the 8 x 6 image
    torch.testing.assert_close(fn(p, k=400), whole)
    # unclamped, k = 10^7 pads every plane to 2e7 x 2e7 (an allocation of petabytes)
    torch.testing.assert_close(fn(p, k=10 ** 7), whole)
    assert not torch.equal(fn(p, k=1), whole)


def test_ripu_select_with_a_huge_window():
    p = torch.softmax(torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)), 1)
    s = filters.ripu_score(p, k=10 ** 6)
    assert s.shape == (1, 8, 8) and torch.isfinite(s).all()
