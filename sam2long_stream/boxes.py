"""Box geometry of masks, numpy only: the tracker, the wire format and the overlay share it
without the wire format importing the tracker (and torch)."""

from __future__ import annotations

import numpy as np


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight inclusive box of a bool mask, None when the mask is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])
