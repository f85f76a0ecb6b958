"""Limits the whole node shares, in one place so sources, tracker and wire format agree.

* `MAX_FRAME_SIDE`: the widest (and tallest) frame the node accepts. The wire format
  can carry no larger one, so a source refuses it up front (synthetic) or ends with a
  clear error on the first such frame (files, cameras), instead of every masks message
  failing in the encoder later.
* `MAX_FPS`: the fastest pace a paced source may ask for; a finite rate is required.
* `MAX_QUOTE_CHARS`, `quote` and `shown`: error messages quote user input shortened, so
  a hostile request never makes a reply (or a log line) as large as itself.
* `MAX_ERROR_CHARS`: the longest error line the command line prints (a where, a quoted
  value and a list of what was expected fit; anything longer is cut).
"""

from __future__ import annotations

import math
from typing import Any

MAX_FRAME_SIDE = 16384  # pixels, width and height each (the wire format's limit)
MAX_FPS = 1000.0
MAX_QUOTE_CHARS = 80
MAX_ERROR_CHARS = 800
MAX_SEED = 2**63 - 1  # `scenes` and `train` seeds: numpy and torch take 0..this


def check_frame_size(width: int, height: int, what: str = "frame") -> None:
    """ValueError when a frame of this size is larger than the node accepts."""
    if width > MAX_FRAME_SIDE or height > MAX_FRAME_SIDE:
        raise ValueError(
            f"{what} of {width}x{height} px exceeds the largest the node accepts "
            f"({MAX_FRAME_SIDE} px a side)"
        )


def check_fps(fps: Any, what: str = "fps") -> float:
    """A finite frame rate in (0, MAX_FPS]; ValueError otherwise (nan, inf, 0, 1e9)."""
    if isinstance(fps, bool) or not isinstance(fps, int | float):
        raise ValueError(f"{what} must be a number, got {quote(fps)}")
    if not math.isfinite(fps) or not 0 < fps <= MAX_FPS:
        raise ValueError(f"{what} must be a finite number in (0, {MAX_FPS:g}], got {fps!r}")
    return float(fps)


def shorten(text: str, limit: int = MAX_QUOTE_CHARS) -> str:
    """`text` cut to at most `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def quote(value: Any, limit: int = MAX_QUOTE_CHARS) -> str:
    """User input as it appears in an error message: its repr, shortened."""
    return shorten(repr(value), limit)


def shown(text: str, limit: int = MAX_QUOTE_CHARS) -> str:
    """A name the user gave (a file path) in an error: as typed when it is short and
    printable, else quoted shortened, so it never breaks or floods the line."""
    return text if len(text) <= limit and text.isprintable() else quote(text, limit)
