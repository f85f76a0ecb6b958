"""What a training run leaves on disk, written so that a crash, a full disk or Ctrl-C
never leaves a half-written file where a good one was:

- ``last.pt``: everything `--resume` needs (model, optimizer, step, random states,
  history, options);
- ``model.pt``: the weights alone in sam2's official format (``{"model": state_dict}``),
  what `run --checkpoint` and `eval --checkpoint` load.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from sam2long_stream.limits import shorten

LAST = "last.pt"
MODEL = "model.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or read; the message says which and why."""


def check_writable(folder: Path) -> None:
    """Fail early, before any training, when the output folder cannot take files."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as e:
        raise CheckpointError(
            f"output folder {folder} is not writable: {e.strerror or e}"
        ) from None


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename over `path`."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch's zip writer reports a full disk as the latter
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"could not write {path}: {_why(path.parent, e)} (the previous one is kept)"
        ) from None


def _why(folder: Path, error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    if not folder.is_dir():
        return "the folder is gone"
    free = shutil.disk_usage(folder).free / 2**20
    said = shorten(" ".join(str(error).split()), 120)
    return f"the write failed with {free:.0f} MiB free on its disk ({said})"


def official_state(model: torch.nn.Module, half: bool = False) -> dict[str, Any]:
    """``{"model": state_dict}`` on the CPU; `half` stores floats as float16 (the bundled
    model: half the bytes, and load_state_dict casts back to the model's dtype)."""
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        state[k] = v.half() if half and v.is_floating_point() else v
    return {"model": state}


def save(
    folder: Path, run_state: dict[str, Any], model: torch.nn.Module, half: bool = False
) -> None:
    save_atomic(run_state, folder / LAST)
    save_atomic(official_state(model, half), folder / MODEL)


def load_last(folder: Path) -> dict[str, Any] | None:
    """The resume state in `folder`, or None when there is none yet."""
    path = folder / LAST
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)  # tensors, plain data
    except Exception as e:  # a truncated or foreign file: say so, do not guess
        raise CheckpointError(f"cannot resume from {path}: {type(e).__name__}: {e}") from None
