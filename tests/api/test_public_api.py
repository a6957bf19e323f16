"""The public surface is pinned so that nothing disappears by accident."""

from __future__ import annotations

import densecore

EXPECTED = [
    "ActiveLabelState",
    "Advice",
    "BoundReport",
    "CategoryMarginLoss",
    "CorruptFileError",
    "DMCEstimator",
    "DensityAwareGreedy",
    "DensityScaling",
    "DensityTrainer",
    "ImageCandidates",
    "KCenterGreedy",
    "KMedoidsRefinement",
    "KNNDensity",
    "MaskedConvEstimator",
    "Sampler",
    "Selection",
    "TypicalityGreedy",
    "advise",
    "average_radial_distance",
    "blocked_candidates",
    "bound_report",
    "coreset_loss",
    "coverage",
    "coverage_density",
    "covering_radius",
    "farthest_first",
    "farthest_first_batch",
    "image_seed",
    "pixel_budget",
    "query_round",
    "region_budget",
    "register_engine",
    "ripu_pixel_radius",
    "ripu_select",
    "select_pixels",
    "tune_density_scaling",
]


def test_public_names_are_pinned_exactly_and_sorted():
    # exactly: a name that disappears or appears without this list changing fails
    assert list(densecore.__all__) == EXPECTED
    for name in densecore.__all__:
        assert getattr(densecore, name) is not None, name


def test_corrupt_file_error_is_a_value_error():
    assert issubclass(densecore.CorruptFileError, ValueError)


def test_every_public_callable_has_a_docstring_with_shapes_or_example():
    for name in densecore.__all__:
        obj = getattr(densecore, name)
        assert obj.__doc__ and len(obj.__doc__) > 40, name


def test_file_writers_live_in_densecore_io_and_the_old_names_warn():
    import pytest

    from densecore import io

    assert io.__all__ == ["atomic_save_figure", "atomic_write", "atomic_write_json",
                          "atomic_write_text"]
    for name in io.__all__:
        assert name not in densecore.__all__
        with pytest.warns(DeprecationWarning, match=f"use densecore.io.{name}"):
            assert getattr(densecore, name) is getattr(io, name)
    with pytest.raises(AttributeError):
        densecore.atomic_nothing  # noqa: B018
