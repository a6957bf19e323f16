"""``backend="auto"`` on CUDA: the triton engine after its on-device self-check, else the
torch engine with a warning that says why (``_backends/triton_check.py``).

The decision is tested on the CPU with injected check results; the check itself runs
on CPU tensors under the Triton interpreter (TRITON_INTERPRET=1 from conftest.py), and
fails when the engine's picks are made wrong.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from densecore import engines as E
from densecore._backends import triton_check as TC

CUDA = torch.device("cuda", 0)


@pytest.fixture
def fresh(monkeypatch):
    """An empty per-process cache of check results."""
    monkeypatch.setattr(TC, "_RESULTS", {})
    return TC


def _inject(monkeypatch, result):
    calls = []

    def fake(device):
        calls.append(device)
        return result

    monkeypatch.setattr(TC, "self_check", fake)
    return calls


def test_auto_takes_triton_on_cuda_when_the_check_passes(fresh, monkeypatch):
    calls = _inject(monkeypatch, (True, "", 0.01))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert E.resolve("auto", "dense", CUDA) == "triton"
        assert E.resolve("auto", "dense", CUDA) == "triton"
    assert len(calls) == 1  # once per process and device
    # the rest of the rule is unchanged
    assert E.resolve("auto", "dense", torch.device("cpu")) == "numba"
    assert E.resolve("auto", "sparse", CUDA) == "torch"  # no sparse triton engine
    assert E.resolve("torch", "dense", CUDA) == "torch"
    assert len(calls) == 1


def test_auto_falls_back_to_torch_with_a_warning_that_says_why(fresh, monkeypatch):
    calls = _inject(monkeypatch, (False, "pool 1: picks [3] differ from the float64 "
                                         "reference [4]", 0.02))
    with pytest.warns(RuntimeWarning, match=r"torch engine.*self-check failed \(pool 1: "
                                            r"picks \[3\] differ"):
        assert E.resolve("auto", "dense", CUDA) == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per device, not per call
        assert E.resolve("auto", "dense", CUDA) == "torch"
    assert len(calls) == 1
    assert E.resolve("triton", "dense", CUDA) == "triton"  # an explicit choice stands


def test_no_cuda_device_is_a_failed_check(fresh):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    ok, reason, _ = TC.self_check(torch.device("cuda"))
    assert not ok and "no CUDA device" in reason
    with pytest.warns(RuntimeWarning, match="no CUDA device"):
        assert E.resolve("auto", "dense", torch.device("cuda")) == "torch"


def _interpreted():
    try:
        from densecore._backends import triton_backend as TB
    except ImportError:
        return False
    return TB.interpreted()


needs_interpreter = pytest.mark.skipif(not _interpreted(), reason="the check runs on CPU "
                                       "tensors under the Triton interpreter only")


@needs_interpreter
def test_the_check_passes_on_the_engine_and_fails_on_wrong_picks(monkeypatch):
    ok, reason, secs = TC.self_check(torch.device("cpu"))
    assert ok and reason == "" and secs > 0
    from densecore._backends import triton_backend as TB

    real = TB.Engine.run_batch

    def off_by_one(inputs, budgets, firsts):  # the second pick of every pool swapped
        outs = real(inputs, budgets, firsts)
        for idx, _ in outs:
            if idx.numel() > 2:
                idx[1], idx[2] = idx[2].clone(), idx[1].clone()
        return outs

    monkeypatch.setattr(TB.Engine, "run_batch", staticmethod(off_by_one))
    ok, reason, _ = TC.self_check(torch.device("cpu"))
    assert not ok and "differ from the float64 reference" in reason


@needs_interpreter
def test_the_check_reports_an_engine_error(monkeypatch):
    from densecore._backends import triton_backend as TB

    def broken(*a, **k):
        raise RuntimeError("ptxas fatal: unsupported target")

    monkeypatch.setattr(TB.Engine, "run_batch", staticmethod(broken))
    ok, reason, _ = TC.self_check(torch.device("cpu"))
    assert not ok and reason == "RuntimeError: ptxas fatal: unsupported target"
