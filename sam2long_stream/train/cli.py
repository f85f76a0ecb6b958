"""`sam2long-stream train`: the command line of the training loop."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields

from sam2long_stream.limits import MAX_SEED
from sam2long_stream.models import IMAGE_SIZE_HELP, check_checkpoint_file
from sam2long_stream.tracker.engine import resolve_device
from sam2long_stream.train.data import DataError, synthetic_events
from sam2long_stream.train.loop import TrainOptions
from sam2long_stream.train.model import PROMPTING, parse_loss_weights
from sam2long_stream.usage import RaisingUsageParser, UsageError

_HELP = {
    "out": "folder for last.pt (resume state), model.pt (official format) and curves.png",
    "model": "sam2long_mini (the project's small config) or any sam2 model name",
    "image_size": f"square input size, a {IMAGE_SIZE_HELP}",
    "init": "official-format checkpoint to start from (fine-tuning); default: random init",
    "data": "training data: 'synthetic' (fresh scenes on the fly; 'synthetic:distractor' "
    "or 'synthetic:occlusion+exit': scenes whose first target meets those events) and/or "
    "DAVIS- or SA-V-format folders; repeat to mix (each clip from one, drawn at random)",
    "data_format": "format of the --data folders: davis or sav",
    "steps": "total optimizer steps (resume continues up to this)",
    "image_steps": "first steps on single frames (SAM's image task) before clips",
    "frames": "frames per training clip",
    "batch_size": "clips per step",
    "image_batch_size": "images per step during --image-steps",
    "max_objects": "objects per clip at most",
    "prompting": "how clips are prompted: sam2 (Meta's fine-tuning recipe: 1-2 prompted "
    "frames, correction clicks on 1-2) or tracking (the first frame only, as at inference)",
    "lr": "peak learning rate (AdamW)",
    "warmup": "linear warm-up steps, then cosine decay to lr/10",
    "weight_decay": "AdamW weight decay (not on biases and norms)",
    "grad_clip": "gradient norm clip",
    "loss_weights": "weights of sam2's loss terms (focal mask, dice, predicted IoU, object "
    "score); name=value pairs change those named, e.g. class=4",
    "seed": "seed of the init, the data and the prompt sampling",
    "device": "auto (CUDA when present, bf16 autocast), cpu, cuda or cuda:N",
    "threads": "torch CPU threads (default: torch's choice)",
    "save_every": "steps between checkpoints (an interruption loses at most this many)",
    "val": "held-out DAVIS-format folder for periodic J&F (e.g. from `sam2long-stream scenes`)",
    "val_every": "steps between validations",
    "val_videos": "videos of --val used per validation",
    "val_pathways": "pathway counts to validate, e.g. 1,3",
    "resume": "continue the run in --out from its last.pt",
    "half_weights": "write model.pt in float16 (half the bytes; loading casts back), as the "
    "bundled model ships; the resume state stays float32",
}


def _pathways(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,3, got {text!r}") from None
    if not values or any(not 1 <= v <= 16 for v in values):
        raise argparse.ArgumentTypeError("pathway counts must be in 1..16")
    return values


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = RaisingUsageParser(
        prog=prog,
        description="Train or fine-tune a SAM 2-architecture model with sam2's own training "
        "code (SAM2Train, its loss and prompt sampling). Writes an official-format "
        "model.pt that run/eval --checkpoint load.",
    )
    defaults = TrainOptions()
    for f in fields(TrainOptions):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            p.add_argument(flag, action="store_true", help=_HELP[f.name])
        elif f.name == "data":
            p.add_argument(
                flag, action="append", metavar="SRC", help=_HELP[f.name] + " (default synthetic)"
            )
        elif f.name == "val_pathways":
            p.add_argument(flag, type=_pathways, default=default, help=_HELP[f.name])
        elif f.name == "image_size":  # None: the --model's own, resolved by TrainOptions
            p.add_argument(flag, type=int, default=None, help=_HELP[f.name])
        else:
            kind = {"int": int, "float": float}.get(type(default).__name__, str)
            if f.name == "threads":
                kind = int
            p.add_argument(
                flag, type=kind, default=default, help=f"{_HELP[f.name]} (default {default})"
            )
    return p


def options_from(args: argparse.Namespace) -> TrainOptions:
    values = {f.name: getattr(args, f.name) for f in fields(TrainOptions)}
    values["data"] = args.data or ["synthetic"]
    opts = TrainOptions(**values)
    if opts.image_size < 64 or opts.image_size % 64:
        raise UsageError(f"--image-size must be a multiple of 64, got {opts.image_size}")
    for name in ("steps", "frames", "batch_size", "image_batch_size", "max_objects"):
        if getattr(opts, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
    if opts.frames > 64:
        raise UsageError("--frames must be at most 64")
    if not (opts.lr > 0 and opts.lr < 1):
        raise UsageError(f"--lr must be in (0, 1), got {opts.lr}")
    for name in ("save_every", "val_every", "val_videos", "warmup"):
        if getattr(opts, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
    if opts.image_steps < 0:
        raise UsageError(f"--image-steps must be >= 0, got {opts.image_steps}")
    if not 0 <= opts.seed <= MAX_SEED:  # torch and numpy seeds are non-negative 64-bit
        raise UsageError(f"--seed must be in 0..{MAX_SEED}, got {opts.seed}")
    if opts.threads is not None and opts.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {opts.threads}")
    if not (0 <= opts.weight_decay < 1 and opts.grad_clip > 0):  # NaN fails too
        raise UsageError("--weight-decay must be in [0, 1) and --grad-clip > 0")
    try:
        parse_loss_weights(opts.loss_weights)
    except ValueError as e:
        raise UsageError(f"--loss-weights: {e}") from None
    if opts.prompting not in PROMPTING:
        raise UsageError(f"--prompting must be {' or '.join(PROMPTING)}, got {opts.prompting!r}")
    if opts.data_format not in ("davis", "sav"):
        raise UsageError("--data-format must be davis or sav")
    try:
        for source in opts.data:
            synthetic_events(source)
    except DataError as e:
        raise UsageError(str(e)) from None
    try:
        if opts.init is not None:
            check_checkpoint_file(opts.init)
    except ValueError as e:
        raise UsageError(f"--init: {e}") from None
    try:
        resolve_device(opts.device)
    except ValueError as e:
        raise UsageError(f"--device: {e}") from None
    return opts


def main(argv: Sequence[str] | None = None, prog: str = "sam2long-stream train") -> int:
    from sam2long_stream.train.checkpoint import CheckpointError
    from sam2long_stream.train.loop import Trainer, TrainError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts = options_from(build_parser(prog).parse_args(argv))
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    try:
        trainer = Trainer(opts)
        trainer.run()
    except KeyboardInterrupt:
        return 130
    except (TrainError, CheckpointError, DataError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    return 0
