"""Triton JIT keys of the triton engine's launches: which compiled kernel each launch needs.

A launch compiles when its key (triton's specialisation of the arguments: pointer
dtypes and 16-byte alignment, integers equal to 1 or divisible by 16 unless marked
``do_not_specialize``, the constexprs, the options) has not been seen in the
process. The key is computed here with triton's own binder for a CUDA target (the
current device's, or sm_90 where there is none), so it is the same on the CPU under
the interpreter as on a GPU: a timed region whose launches all have keys seen in its
warm-up compiles nothing.

    keys = KeyLog()            # hooks on the engine's kernels
    run()                      # warm-up
    with keys.timed() as new:  # new: the keys first seen inside
        run()
    keys.close()
"""

from __future__ import annotations

import contextlib

from triton.backends.compiler import GPUTarget
from triton.compiler.compiler import make_backend
from triton.runtime.jit import JITFunction, create_function_from_signature

__all__ = ["KeyLog", "compiled_kernels", "jit_key"]

_BINDERS: dict = {}


def _target():
    import torch

    if torch.cuda.is_available():
        from triton.runtime import driver

        return driver.active.get_current_target()
    return GPUTarget("cuda", 90, 32)


def _binder(kernel):
    """triton's argument binder of ``kernel`` (a JITFunction, or the interpreter's
    stand-in: the same function and decorator options)."""
    if id(kernel) not in _BINDERS:
        jf = (kernel if isinstance(kernel, JITFunction)
              else JITFunction(kernel.fn, **kernel.kwargs))
        _BINDERS[id(kernel)] = (kernel, jf, create_function_from_signature(
            jf.signature, jf.params, make_backend(_target())))
    return _BINDERS[id(kernel)][1:]


def jit_key(kernel, args: tuple, kwargs: dict) -> str:
    """The JIT cache key of launching ``kernel`` with ``args``/``kwargs`` (launch options
    left out: the engine passes none)."""
    jf, bind = _binder(kernel)
    names = [p.name for p in jf.params]
    kw = {k: v for k, v in kwargs.items() if k in names}
    _, spec, _ = bind(*args, **kw)
    return f"{jf.fn.__name__}{spec}"


class KeyLog:
    """Counts launches of ``kernels`` (default: the triton engine's one kernel,
    ``_update``) through triton's pre-run hooks and their JIT keys.

    The hook only keeps the launch's arguments (about a microsecond); the keys are
    computed outside timed regions (:meth:`timed`, :meth:`flush`).
    """

    def __init__(self, kernels=None):
        if kernels is None:
            from densecore._backends import triton_backend as TB

            kernels = (TB._update,)
        self.kernels = list(kernels)
        self.seen: set[str] = set()
        self.launches = 0
        self._pending: list = []
        self._hooks = []
        for k in self.kernels:
            def hook(*args, _k=k, **kwargs):
                self._pending.append((_k, args, kwargs))
            k.add_pre_run_hook(hook)
            self._hooks.append((k, hook))

    def flush(self) -> list[str]:
        """The keys of the launches since the last flush that were not seen before."""
        new = []
        for k, args, kwargs in self._pending:
            key = jit_key(k, args, kwargs)
            if key not in self.seen:
                self.seen.add(key)
                new.append(key)
        self.launches += len(self._pending)
        self._pending = []
        return new

    @contextlib.contextmanager
    def timed(self):
        """Yield a list that gets, on exit, the keys first seen inside (a compile each)."""
        self.flush()
        new: list = []
        try:
            yield new
        finally:
            new.extend(self.flush())

    def close(self) -> None:
        self.flush()
        for k, hook in self._hooks:
            k.pre_run_hooks.remove(hook)
        self._hooks = []


def compiled_kernels(kernels) -> int | None:
    """Kernels in triton's in-memory JIT caches of ``kernels`` on the current device
    (None where that cache is not there: the interpreter, another triton layout)."""
    try:
        import torch

        dev = torch.cuda.current_device()
        return sum(len(k.device_caches[dev][0]) for k in kernels)
    except Exception:  # noqa: BLE001 - an internal of triton; absent means unknown
        return None
