"""Sections ``vs-sam2`` (our tracker vs sam2's own SAM2VideoPredictor, same weights) and
``fps`` (the GPU table: FPS per model and object count)."""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sam2long_stream.benchmark.defaults import ANCHOR_FPS
from sam2long_stream.benchmark.scene import Scene
from sam2long_stream.benchmark.sections.common import make_tracker, prompted, sam2_engine
from sam2long_stream.benchmark.timing import Step, interleave, summary
from sam2long_stream.tracker.config import TREE_OFF


def jpeg_frames(folder: str, scene: Scene, total: int) -> list[np.ndarray]:
    """Write frames 0..total-1 as sam2's JPEG folder; return the decoded JPEGs."""
    from PIL import Image

    frames = []
    for i in range(total):
        path = Path(folder) / f"{i:05d}.jpg"
        Image.fromarray(scene.frame(i)).save(path, quality=95)
        frames.append(np.array(Image.open(path).convert("RGB")))
    return frames


@contextlib.contextmanager
def sam2_predictor(
    args: argparse.Namespace,
    model: str,
    state_dict: dict[str, torch.Tensor],
    folder: str,
    boxes: Sequence[tuple[int, int, int, int]],
    bf16: bool,
    vos_optimized: bool = False,
) -> Iterator[Step]:
    """sam2's own SAM2VideoPredictor on `folder` with our weights, prompted with `boxes`
    on frame 0; yields a step function that advances ``propagate_in_video`` one frame.

    sam2's GPU recipe is bf16 autocast, as ours: the predictor gets the same. Without
    sam2._C it warns that hole filling is off and its tqdm bars would garble the report,
    so both are silenced while it runs.
    """
    overrides = [f"++model.image_size={args.image_size}"] if args.image_size else []
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore", UserWarning)
        with contextlib.redirect_stdout(io.StringIO()):  # vos_optimized prints a banner
            predictor = _video_predictor(model, overrides, args.device, vos_optimized)
        predictor.load_state_dict(state_dict)
        autocast = torch.autocast(torch.device(args.device).type, torch.bfloat16, enabled=bf16)
        state = predictor.init_state(folder)
        with autocast:
            for k, box in enumerate(boxes):
                predictor.add_new_points_or_box(state, 0, k + 1, box=box)
        frames_out = predictor.propagate_in_video(state)

        def step(i: int, _frame: np.ndarray) -> None:
            with autocast:
                index, _, _ = next(frames_out)
            assert index == i, (index, i)

        try:
            yield step
        finally:
            frames_out.close()
            del predictor, state
            gc.collect()
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()


def _video_predictor(model: str, overrides: list[str], device: str, vos_optimized: bool) -> Any:
    """sam2's SAM2VideoPredictor (or its VOS-optimised subclass) for `model`: sam2's own
    builder for its models; for the project's, the same class and overrides on our config."""
    from sam2.build_sam import build_sam2_video_predictor

    from sam2long_stream.models import OWN_MODELS, load_config
    from sam2long_stream.tracker.config import model_config_name
    from sam2long_stream.tracker.engine import VIDEO_OVERRIDES

    if model not in OWN_MODELS:
        return build_sam2_video_predictor(
            model_config_name(model),
            ckpt_path=None,
            device=device,
            hydra_overrides_extra=overrides,
            vos_optimized=vos_optimized,
        )
    from hydra.utils import instantiate

    cls = "SAM2VideoPredictorVOS" if vos_optimized else "SAM2VideoPredictor"
    extra = ["++model.compile_image_encoder=true"] if vos_optimized else []
    target = [f"++model._target_=sam2.sam2_video_predictor.{cls}"]
    cfg = load_config(model, target + VIDEO_OVERRIDES + extra + overrides)
    return instantiate(cfg.model, _recursive_=True).to(device).train(False)


def bench_vs_sam2(args: argparse.Namespace, scene: Scene) -> dict[str, Any]:
    """Our tracker (tree off; P=3 tree on) vs sam2's SAM2VideoPredictor, same weights.

    The predictor reads a JPEG folder; we feed our trackers the same decoded JPEGs.
    Its per-frame time is that of one ``next()`` on ``propagate_in_video``. It decodes,
    resizes and normalises the whole video in ``init_state`` (untimed), whereas our
    per-frame time includes that preprocessing and building the result; so the ratio
    slightly favours the predictor.
    """
    from sam2long_stream import Prompt

    total = args.warmup + args.frames
    tree_off = make_tracker(args, **TREE_OFF)
    tree_on = make_tracker(args, num_pathways=3)
    boxes = scene.prompt_boxes(1)
    with tempfile.TemporaryDirectory(prefix="bench-jpg-") as folder:
        frames = jpeg_frames(folder, scene, total)
        sam2_step = sam2_predictor(
            args,
            args.model,
            tree_off.model.state_dict(),
            folder,
            boxes,
            sam2_engine(tree_off).bf16,
            args.vos_optimized,
        )
        with sam2_step as predictor_step:
            prompts = {1: Prompt(box=boxes[0])}
            steps: dict[str, Step] = {
                "tree off": lambda i, frame: tree_off.step(frame, prompts if i == 0 else None),
                "P=3 tree": lambda i, frame: tree_on.step(frame, prompts if i == 0 else None),
                "sam2 predictor": predictor_step,
            }
            times = interleave(steps, frames.__getitem__, total, args.warmup, args.device)
    off = summary(times, "tree off", "sam2 predictor")
    on = summary(times, "P=3 tree", "sam2 predictor")
    return {
        "times_ms": {**off["times_ms"], **on["times_ms"]},
        "median_ms": {**off["median_ms"], **on["median_ms"]},
        "ratio_tree_off": off["ratio"],
        "ratio_tree_on": on["ratio"],
        "paired_ratio_median_tree_off": off["paired_ratio_median"],
        "paired_ratio_median_tree_on": on["paired_ratio_median"],
        "frames": off["frames"],
        "vos_optimized": args.vos_optimized,
        "goal": None,
    }


def bench_fps(args: argparse.Namespace, scene: Scene) -> dict[str, Any]:
    """Frames per second of our tracker at P=1 and P=3 and of sam2's predictor, for each
    model in ``--models`` and each object count in ``--fps-objects``, interleaved per
    frame on the same JPEG-decoded frames (same weights). FPS is 1000 / median step ms.
    """
    from sam2long_stream import Prompt

    total = args.warmup + args.frames
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-jpg-") as folder:
        frames = jpeg_frames(folder, scene, total)
        for model in args.models:
            margs = argparse.Namespace(**{**vars(args), "model": model})
            trackers = {p: make_tracker(margs, num_pathways=p) for p in (1, 3)}
            weights = trackers[1].model.state_dict()
            for n in args.fps_objects:
                boxes = scene.prompt_boxes(n)
                prompts = {k + 1: Prompt(box=b) for k, b in enumerate(boxes)}
                for t in trackers.values():
                    t.reset()
                steps: dict[str, Step] = {
                    f"P={p}": prompted(t, prompts) for p, t in trackers.items()
                }
                t0 = time.perf_counter()
                sam2_step = sam2_predictor(
                    margs,
                    model,
                    weights,
                    folder,
                    boxes,
                    sam2_engine(trackers[1]).bf16,
                    args.vos_optimized,
                )
                with sam2_step as predictor_step:
                    steps["sam2 predictor"] = predictor_step
                    times = interleave(steps, frames.__getitem__, total, args.warmup, args.device)
                wall = time.perf_counter() - t0
                med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
                row = {
                    "model": model,
                    "objects": n,
                    "median_ms": med,
                    "fps": {k: 1e3 / v for k, v in med.items()},
                    "ratio_P3_P1": med["P=3"] / med["P=1"],
                    "ratio_P3_sam2": med["P=3"] / med["sam2 predictor"],
                    "anchor_fps": ANCHOR_FPS.get(model),
                    "frames": len(times["P=1"]),
                    "wall_s": wall,
                }
                rows.append(row)
                print(
                    f"    {model} x{n}: "
                    + ", ".join(f"{k} {v:.1f} FPS" for k, v in row["fps"].items())
                    + f" ({wall:.0f} s incl. predictor build)",
                    flush=True,
                )
            del trackers, weights
            gc.collect()
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    return {"rows": rows, "vos_optimized": args.vos_optimized, "goal": None}
