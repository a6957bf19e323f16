"""A toy engine for the engine table: a tiny pure-torch brute force (one full float64
distance pass per pick), a subclass of the engine base class. Tests register it as
backend "toy" to show that one module and one table entry per layout reach every
sampler and the whole engine-parametrised reference suite."""

from __future__ import annotations

import numpy as np
import torch

from densecore.engines import Engine

CALLS = {"dense": 0, "sparse": 0}  # engines built, per layout (what the tests check)


class ToyEngine(Engine):
    weighted = True  # takes the typicality weight hook
    devices = ("cpu",)  # computes in CPU float64

    def __init__(self, x, dens, centres, cdens, excluded, max_new, weights=None):
        CALLS["dense"] += 1
        self._setup(torch.as_tensor(x).to(torch.float64), torch.as_tensor(dens),
                    torch.as_tensor(centres).to(torch.float64), torch.as_tensor(cdens),
                    torch.as_tensor(excluded), weights)

    def _setup(self, x, dens, centres, cdens, excluded, weights):
        self.x, self.dens = x, dens.to(torch.float64)
        self.w = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.r = torch.full((x.shape[0],), float("inf"), dtype=torch.float64)
        for c, d in zip(centres, cdens.to(torch.float64)):
            self.r = torch.minimum(self.r, ((x - c) ** 2).sum(1) / d)
        self.r[excluded.to(torch.bool)] = -1.0
        self.picks = 0

    def best(self) -> torch.Tensor:
        if self.r.numel() == 0:
            return torch.tensor([-1.0, -1.0], dtype=torch.float64)
        score = self.r if self.w is None else self.r * self.w
        u = int(torch.argmax(score))
        if self.r[u] < 0:
            return torch.tensor([-1.0, -1.0], dtype=torch.float64)
        return torch.tensor([float(self.r[u]), float(u)], dtype=torch.float64)

    def row(self, u) -> torch.Tensor:
        u = int(u)
        return torch.cat([self.x[u], self.dens[u:u + 1]])

    def add_centre(self, vec, u=-1) -> None:
        vec = torch.as_tensor(vec, dtype=torch.float64).cpu()
        self.picks += 1
        if int(u) >= 0:
            self.r[int(u)] = -1.0
        d = ((self.x - vec[:-1]) ** 2).sum(1) / vec[-1]
        self.r = torch.where(self.r < 0, self.r, torch.minimum(self.r, d))

    def run(self, k, out_idx, out_r) -> None:
        for _ in range(k):
            i = self.picks
            u = int(self.best()[1])
            out_idx[i], out_r[i] = u, self.r[u]
            self.add_centre(self.row(u), u)


def _dense(c) -> torch.Tensor:
    """Dense float64 rows of a ``Csr`` (numpy) input."""
    ip, ix, dx, dim = c
    out = np.zeros((len(ip) - 1, dim))
    out[np.repeat(np.arange(len(ip) - 1), np.diff(ip)), ix] = dx
    return torch.from_numpy(out)


class ToySparseEngine(ToyEngine):
    """The same brute force for the sparse layout: CSR rows (numpy) made dense."""

    host = True  # inputs as numpy

    def __init__(self, x, dens, centres, cdens, excluded, max_new, weights=None):
        CALLS["sparse"] += 1
        self._setup(_dense(x), torch.from_numpy(np.asarray(dens)), _dense(centres),
                    torch.from_numpy(np.asarray(cdens)), torch.from_numpy(excluded), weights)


def register(table) -> None:
    """Add the toy engine to an engine table (``densecore.engines.ENGINES``): one entry
    per layout."""
    table[("toy", "dense")] = lambda: ToyEngine
    table[("toy", "sparse")] = lambda: ToySparseEngine


def register_public() -> None:
    """Add the toy engine through the public :func:`densecore.register_engine` (as a
    pytest plugin, ``pytest -p toy_engine``, before the tests are collected)."""
    import densecore

    densecore.register_engine("toy", "dense", ToyEngine)
    densecore.register_engine("toy", "sparse", ToySparseEngine)


def pytest_configure(config) -> None:
    """``pytest -p toy_engine``: the toy engine is in the table before collection, so
    every engine-parametrised test runs on it too."""
    register_public()
