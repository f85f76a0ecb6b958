#!/usr/bin/env python3
"""Run the official SAM2Long code on a seeded random-weight model and save its outputs.

The official code (GitHub Mark12Ding/SAM2Long, CC BY-NC 4.0) ships its own modified
``sam2`` package; nothing of it is vendored here. Point this tool at a local copy:

    python tools/official_reference.py /path/to/SAM2Long --out tests/data/official_reference.npz

It builds the model the way our engine does with ``checkpoint=None`` (the same hydra
config and overrides, ``torch.manual_seed(seed)`` right before instantiation), feeds the
frames of the deterministic synthetic scene (sam2long_stream.sources.synthetic) through
the official ``SAM2VideoPredictor`` with one box-prompted object on frame 0, and writes
what the official code outputs for the pathway it finally picks: per frame the low-res
mask logits, the predicted IoU, the object-score logit and the cumulative score, plus
every pathway's cumulative score (the pool's order), and the video-resolution masks.

``--compact`` (for the checked-in fixture) stores the logits' sign as packed bits and a
float32 subsample of the logits, so the file stays small; without it all logits are kept
in float32. tests/test_fidelity.py compares our tracker against such a file.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The hydra overrides of the official build_sam2_video_predictor ("postprocessing");
# the first four are also our engine's, so both sides instantiate the same modules.
_OVERRIDES = [
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
    "++model.fill_hole_area=8",
]
SUBSAMPLE = 4  # --compact keeps every 4th low-res logit in each direction


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tools/official_reference.py", description=__doc__)
    p.add_argument("official", help="local copy of the SAM2Long repository (has sam2/)")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--seed", type=int, default=0, help="model seed (random weights)")
    p.add_argument("--scene-seed", type=int, default=0)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--object", type=int, default=1, help="synthetic object id to prompt")
    p.add_argument("--image-size", type=int, default=1024)
    p.add_argument("--model", default="sam2.1_hiera_t")
    p.add_argument("--num-pathways", type=int, default=3)
    p.add_argument("--iou-threshold", type=float, default=0.1)
    p.add_argument("--uncertainty", type=float, default=2.0)
    p.add_argument("--compact", action="store_true", help="small file (bits + subsample)")
    args = p.parse_args(argv)
    if not os.path.isfile(os.path.join(args.official, "sam2", "sam2_video_predictor.py")):
        p.error(f"{args.official} does not look like the SAM2Long repository (no sam2/)")
    if args.frames < 3:
        p.error("--frames must be >= 3 (the pool forks on the second frame after the prompt)")
    return args


def weight_checksum(model) -> np.ndarray:
    """Per-tensor float64 sums of the state dict in name order: 'same weights' evidence."""

    sd = model.state_dict()
    return np.array([float(sd[k].double().sum()) for k in sorted(sd)], dtype=np.float64)


def build_official(args: argparse.Namespace):
    import sam2  # the official package: it is first on sys.path
    import torch
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from sam2long_stream.tracker.config import model_config_name

    here = os.path.dirname(os.path.abspath(sam2.__file__))
    if os.path.realpath(here) != os.path.realpath(os.path.join(args.official, "sam2")):
        raise SystemExit(f"imported sam2 from {here}, not from {args.official}")
    overrides = [
        "++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
        *_OVERRIDES,
        f"++model.image_size={args.image_size}",
    ]
    cfg = compose(config_name=model_config_name(args.model), overrides=overrides)
    OmegaConf.resolve(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = instantiate(cfg.model, _recursive_=True)
    return model.to("cpu").eval()


def scene(args: argparse.Namespace) -> tuple[list[np.ndarray], tuple[int, int, int, int]]:
    from sam2long_stream.sources.synthetic import moving_shapes_frame

    frames, box = [], None
    for i in range(args.frames):
        rgb, boxes = moving_shapes_frame(i, args.width, args.height, args.scene_seed)
        if i == 0:
            if args.object not in boxes:
                raise SystemExit(f"object {args.object} is not visible on frame 0")
            box = boxes[args.object]
        frames.append(rgb)
    return frames, box


def preprocess(rgb: np.ndarray, size: int):
    """sam2's frame loader (PIL resize, /255, mean/std), on an array instead of a JPEG."""
    import torch
    from PIL import Image

    img = np.array(Image.fromarray(rgb).resize((size, size))) / 255.0
    t = torch.from_numpy(img).permute(2, 0, 1).float()
    mean = torch.tensor((0.485, 0.456, 0.406), dtype=torch.float32)[:, None, None]
    std = torch.tensor((0.229, 0.224, 0.225), dtype=torch.float32)[:, None, None]
    return (t - mean) / std


def run(args: argparse.Namespace) -> dict[str, np.ndarray]:
    import torch
    from PIL import Image

    frames, box = scene(args)
    predictor = build_official(args)
    picks: list = []
    inner = predictor._run_single_frame_inference

    def capture(*a, **kw):  # the pathway indices the predictor keeps internally
        out = inner(*a, **kw)
        picks.append(out[2])
        return out

    predictor._run_single_frame_inference = capture
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
        for i, rgb in enumerate(frames):  # init_state wants a JPEG folder ...
            Image.fromarray(rgb).save(os.path.join(folder, f"{i:05d}.jpg"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = predictor.init_state(folder)
        # ... but both sides must see the exact frames: replace the decoded JPEGs.
        state["images"] = torch.stack([preprocess(f, args.image_size) for f in frames])
        state["cached_features"] = {}
        state["num_pathway"] = args.num_pathways
        state["iou_thre"] = args.iou_threshold
        state["uncertainty"] = args.uncertainty
        predictor.add_new_points_or_box(
            state, frame_idx=0, obj_id=1, box=np.array(box, dtype=np.float32)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no sam2._C: hole filling is skipped
            _, video_masks = predictor.propagate_in_video(state)
    seconds = time.monotonic() - started
    final = picks[-1][0]  # frame -> pathway slot of the pathway output at the end
    out = state["output_dict"]
    n, p = args.frames, args.num_pathways
    low = [out["cond_frame_outputs"][0]["pred_masks"][0, 0].float()]
    iou = [float("nan")]
    logit = [float(out["cond_frame_outputs"][0]["object_score_logits"].flatten()[0])]
    score = [0.0]
    pool = np.zeros((n, p))
    slots = np.zeros(n, dtype=np.int64)
    for t in range(1, n):
        o, k = out["non_cond_frame_outputs"][t], final[t]
        slots[t] = k
        low.append(o["pred_masks"][0, 0, :, :, k].float())
        iou.append(float(o["ious"].flatten()[k]))
        logit.append(float(o["object_score_logits"].flatten()[k]))
        score.append(float(o["acc_score"][k]))
        pool[t] = np.array(o["acc_score"], dtype=np.float64)
    low_res = torch.stack(low).numpy()
    masks = np.stack([(m[0, 0] > 0).numpy() for m in video_masks])
    result = {
        "num_frames": np.int64(n),
        "seed": np.int64(args.seed),
        "scene_seed": np.int64(args.scene_seed),
        "width": np.int64(args.width),
        "height": np.int64(args.height),
        "object": np.int64(args.object),
        "box": np.array(box, dtype=np.int64),
        "image_size": np.int64(args.image_size),
        "model": np.str_(args.model),
        "num_pathways": np.int64(p),
        "official_commit": np.str_(_commit(args.official)),
        "weight_checksum": weight_checksum(predictor),
        "slot": slots,
        "iou": np.array(iou),
        "object_score_logit": np.array(logit),
        "cumulative_score": np.array(score),
        "pool_scores": pool,
        "masks_bits": np.packbits(masks, axis=-1),
        "low_res_bits": np.packbits(low_res > 0, axis=-1),
        "seconds": np.float64(seconds),
    }
    if args.compact:
        result["low_res_sub"] = low_res[:, ::SUBSAMPLE, ::SUBSAMPLE].astype(np.float32)
    else:
        result["low_res"] = low_res.astype(np.float32)
    return result


def _commit(path: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, os.path.abspath(args.official))  # the official sam2 wins ...
    if REPO not in sys.path:
        sys.path.insert(1, REPO)  # ... and our package provides the scene and config names
    result = run(args)
    np.savez_compressed(args.out, **result)
    print(
        f"wrote {args.out} ({os.path.getsize(args.out)} bytes): {args.frames} frames at "
        f"{args.image_size} px in {float(result['seconds']):.1f} s, slots {result['slot'].tolist()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
