"""Uniform averages of fine-tuned weights (a "model soup", Wortsman et al. 2022): runs
fine-tuned from one start land in one basin, and their average often tracks better than
any of them. Official-format checkpoints in, one official-format checkpoint out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sam2long_stream.models import read_checkpoint
from sam2long_stream.train.checkpoint import CheckpointError, save_atomic


def _weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return read_checkpoint(str(path))
    except ValueError as e:  # missing, unreadable or foreign: one line naming the file
        raise CheckpointError(str(e)) from None


def average(paths: list[Path], half: bool = False) -> dict[str, Any]:
    """``{"model": mean state_dict}`` of `paths` (same architecture; floats averaged in
    float32, every other tensor must be equal); `half` stores floats as float16."""
    if len(paths) < 2:
        raise CheckpointError("averaging needs at least two checkpoints")
    first = _weights(paths[0])
    sums = {k: v.float() if v.is_floating_point() else v for k, v in first.items()}
    for path in paths[1:]:
        other = _weights(path)
        if other.keys() != first.keys():
            extra = sorted(other.keys() ^ first.keys())[0]
            raise CheckpointError(f"{path}: not the architecture of {paths[0]} ({extra!r})")
        for k, v in other.items():
            if v.shape != first[k].shape:
                raise CheckpointError(
                    f"{path}: {k} is {tuple(v.shape)}, not {tuple(first[k].shape)}"
                )
            if v.is_floating_point():
                sums[k] = sums[k] + v.float()
            elif not torch.equal(v, first[k]):
                raise CheckpointError(f"{path}: {k} differs and cannot be averaged")
    out = {}
    for k, v in sums.items():
        if v.is_floating_point():
            v = v / len(paths)
            v = v.half() if half else v.to(first[k].dtype)
        out[k] = v
    return {"model": out}


def write_average(paths: list[Path], out: Path, half: bool = False) -> None:
    """Average `paths` into `out` (written atomically)."""
    save_atomic(average(paths, half), out)
