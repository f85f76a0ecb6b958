"""What `Tracker` needs from an engine: the `Engine` protocol.

`Sam2Engine` (sam2's model code) is the engine; tests and the soak give the tracker a
scripted double (sam2long_stream/testing/engine_double.py) through the same protocol.
Frame features are opaque to the tracker: it passes what `encode` returned back to the
other three methods, so their type is the engine's own business (`Any` here).

Importing this module needs neither torch nor sam2 at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import torch

    from sam2long_stream.tracker.config import Prompt
    from sam2long_stream.tracker.engine import Candidates, MemoryView, PromptOutput, Sam2Engine

__all__ = ["Engine"]


@runtime_checkable
class Engine(Protocol):
    """The steps of a tracking frame, batched over pathways and streams, and the memory sizes
    that bound a pathway's history.

    `runtime_checkable`: ``isinstance(x, Engine)`` checks that the members exist (not
    their signatures; mypy does that).
    """

    @property
    def model(self) -> torch.nn.Module | None:
        """The underlying sam2 module (None for an engine without one, such as a double)."""
        ...

    @property
    def num_maskmem(self) -> int:
        """Spatial memory frames the model attends to (the conditioning frame included)."""
        ...

    @property
    def max_obj_ptrs(self) -> int:
        """Object pointers the model attends to."""
        ...

    def encode(self, rgb: np.ndarray) -> Any:
        """Image features of one RGB uint8 (H, W, 3) frame."""
        ...

    def encode_many(self, rgbs: Sequence[np.ndarray]) -> Any:
        """Image features of several streams' frames in one call: column k is rgbs[k]."""
        ...

    def prompt(
        self,
        features: Any,
        prompt: Prompt,
        height: int,
        width: int,
        frame_index: int,
        frame: int = 0,
    ) -> PromptOutput:
        """Segment a prompted object on its conditioning frame (features column `frame`)."""
        ...

    def propose(self, features: Any, views: Sequence[MemoryView]) -> Candidates:
        """Candidate masks for every pathway, each attending to its own memory view."""
        ...

    def encode_memory(
        self,
        features: Any,
        low_res: torch.Tensor,
        object_logits: torch.Tensor,
        frames: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Memory features of the chosen masks (B, 1, h, w) low-res logits; row i uses
        features column ``frames[i]`` (all column 0 when None)."""
        ...


if TYPE_CHECKING:

    def _sam2_engine_is_an_engine(engine: Sam2Engine) -> Engine:
        """Static check (mypy): `Sam2Engine` satisfies the protocol."""
        return engine
