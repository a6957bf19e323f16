"""Short text summaries of arrays for ``repr``: shape, dtype, device and a few values,
never the whole array."""

from __future__ import annotations

import numpy as np
import torch


def array_summary(a, head: int = 3) -> str:
    """``[v0, v1, v2, ...] (N,) dtype`` (and the device for a tensor off the CPU).

    Example:
        >>> array_summary(np.arange(10))
        '[0, 1, 2, ...] (10,) int64'
        >>> array_summary(torch.tensor([0.5, float("inf")]))
        '[0.5, inf] (2,) torch.float32'
    """
    if isinstance(a, torch.Tensor):
        kind = f"{a.dtype}" + ("" if a.device.type == "cpu" else f" {a.device}")
        values = a.detach().reshape(-1)[:head].cpu().tolist()
    else:
        a = np.asarray(a)
        kind = f"{a.dtype}"
        values = a.reshape(-1)[:head].tolist()
    shown = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values)
    more = ", ..." if np.prod(a.shape, dtype=np.int64) > head else ""
    return f"[{shown}{more}] {tuple(a.shape)} {kind}"
