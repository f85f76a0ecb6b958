"""Out-of-memory handling belongs to the tracker: whoever steps it (the node, the
benchmark) asks here whether a failure was memory and how to give memory back.

Stand-in on the ``node`` branch: the two functions as the node had them; the ``batch``
branch provides the real module (with `Tracker.memory_stats`).
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def is_out_of_memory(exc: BaseException) -> bool:
    """torch.OutOfMemoryError (CUDA/MPS), a RuntimeError that says so (older torch,
    other backends), or the host's MemoryError."""
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


def release_cached_memory() -> None:
    """After an out-of-memory failure: give the allocator's cached blocks back (no-op
    without CUDA), so the next frame has a chance."""
    import torch

    gc.collect()
    try:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception as exc:  # a broken CUDA context: the next frame will say so
        log.warning("emptying the CUDA cache failed: %s", exc)
