"""Host-to-device uploads that do not stall the GPU.

A plain ``torch.tensor(values, device="cuda")`` (or ``.to("cuda")`` of a pageable host
tensor) waits for the whole CUDA stream to drain before it returns: a hidden host sync.
The per-frame step uploads a few small index and weight tensors, so each of them goes
through a pinned buffer with ``non_blocking=True`` instead; PyTorch's caching host
allocator keeps the buffer alive until the copy has run.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def upload(
    values: Sequence[float] | Sequence[int] | Tensor, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """``values`` (numbers, or a host tensor) on ``device``, without a host sync on CUDA."""
    host = values.to(dtype) if isinstance(values, Tensor) else torch.tensor(values, dtype=dtype)
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)
