"""Out-of-memory handling shared by whoever drives trackers (the node, many streams).

A step that runs out of (GPU) memory leaves its trackers unchanged (steps are all or
nothing), so the caller can release the allocator's cache and skip the frame.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def is_out_of_memory(exc: BaseException) -> bool:
    """torch.OutOfMemoryError (CUDA/MPS), or a RuntimeError that says so (older torch,
    other backends), or the host's MemoryError."""
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


def release_cached_memory() -> None:
    """After an OOM: give the allocator's cached blocks back (no-op without CUDA)."""
    import torch

    gc.collect()
    try:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception as exc:  # a broken CUDA context: the next frame will say so
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        log.warning("emptying the CUDA cache failed: %s: %s", type(exc).__name__, text)
