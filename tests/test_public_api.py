"""The public surface is pinned so that nothing disappears by accident."""

from __future__ import annotations

import densecore

EXPECTED = {
    "ActiveLabelState",
    "BoundReport",
    "CategoryMarginLoss",
    "DensityAwareGreedy",
    "DensityScaling",
    "DensityTrainer",
    "ImageCandidates",
    "KCenterGreedy",
    "KNNDensity",
    "Selection",
    "average_radial_distance",
    "blocked_candidates",
    "bound_report",
    "coreset_loss",
    "coverage",
    "coverage_density",
    "covering_radius",
    "farthest_first",
    "image_seed",
    "pixel_budget",
    "region_budget",
    "select_pixels",
    "tune_density_scaling",
}


def test_public_names_are_pinned_and_sorted():
    assert EXPECTED <= set(densecore.__all__), EXPECTED - set(densecore.__all__)
    assert list(densecore.__all__) == sorted(densecore.__all__)
    for name in densecore.__all__:
        assert getattr(densecore, name) is not None, name


def test_every_public_callable_has_a_docstring_with_shapes_or_example():
    for name in densecore.__all__:
        obj = getattr(densecore, name)
        assert obj.__doc__ and len(obj.__doc__) > 40, name
