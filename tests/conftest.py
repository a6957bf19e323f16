"""Shared fixtures: devices (CUDA skipped cleanly where there is none) and data."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from hypothesis import settings

# The triton engine's kernels run under Triton's interpreter where there is no CUDA
# device (tests/engines/test_triton_engine.py). TRITON_INTERPRET is read when @triton.jit
# decorates, so it is set here, before any test (or a library such as lightning)
# imports triton; on a GPU machine the kernels are compiled as usual.
if not torch.cuda.is_available() and "triton" not in sys.modules:
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, os.path.dirname(__file__))

# property tests draw their examples from a fixed seed: the same examples on every run,
# and run without a wall-clock deadline: a first example that loads numba or compiles a
# kernel takes seconds on a loaded machine (hypothesis' default deadline is 200 ms)
settings.register_profile("densecore", derandomize=True, deadline=None)
settings.load_profile("densecore")

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.fixture(params=DEVICES)
def device(request):
    """Each available torch device."""
    return torch.device(request.param)


@pytest.fixture
def one_thread():
    """Run with one torch thread (small ops: threads would only wait on each other),
    then restore the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng():
    """A seeded numpy generator."""
    return np.random.default_rng(1234)
