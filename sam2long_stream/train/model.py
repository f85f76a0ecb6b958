"""The model and loss that training uses: sam2's own `SAM2Train` (SAM2Base plus the
prompt sampling of sam2's training: boxes, points with correction clicks, masks) and
its `MultiStepMultiMasksAndIous` loss, with the weights of sam2's fine-tuning recipe.

The state dict of `SAM2Train` is that of `SAM2Base`, so what training saves loads
unchanged in `run --checkpoint` and `eval --checkpoint`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sam2long_stream.models import load_config, load_weights, read_checkpoint

# sam2's training recipe (configs/sam2.1_training/*.yaml): how prompts are sampled.
TRAIN_PROMPTING = {
    "prob_to_use_pt_input_for_train": 0.5,
    "prob_to_use_box_input_for_train": 0.5,  # of point inputs: 0.25 boxes, 0.25 points
    "prob_to_sample_from_gt_for_train": 0.1,
    "num_frames_to_correct_for_train": 2,
    "rand_frames_to_correct_for_train": True,
    "add_all_frames_to_correct_as_cond": True,
    "num_init_cond_frames_for_train": 2,
    "rand_init_cond_frames_for_train": True,
    "num_correction_pt_per_frame": 7,
    "forward_backbone_per_frame_for_eval": True,
}
# "tracking": prompts (and correction clicks) on the first frame only, every later frame
# from memory alone, as the tracker runs at inference: the model meets its own drift,
# occlusions and exits, so its predicted IoU and object score learn what failure is.
TRACKING_PROMPTING = {
    **TRAIN_PROMPTING,
    "num_frames_to_correct_for_train": 1,
    "rand_frames_to_correct_for_train": False,
    "num_init_cond_frames_for_train": 1,
    "rand_init_cond_frames_for_train": False,
}
PROMPTING = {"sam2": TRAIN_PROMPTING, "tracking": TRACKING_PROMPTING}
# sam2's fine-tuning recipe: the weights of the loss terms (focal mask, dice, IoU, object
# score); `train --loss-weights class=4` changes the named ones.
LOSS_WEIGHTS = {"mask": 20.0, "dice": 1.0, "iou": 1.0, "class": 1.0}
LOSS_WEIGHTS_TEXT = ",".join(f"{k}={v:g}" for k, v in LOSS_WEIGHTS.items())


def parse_loss_weights(text: str) -> dict[str, float]:
    """`name=value,...` over sam2's recipe (names: mask, dice, iou, class); a ValueError
    names what is wrong."""
    weights = dict(LOSS_WEIGHTS)
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in weights:
            raise ValueError(
                f"expected name=value with a name from {', '.join(LOSS_WEIGHTS)}, got {item!r}"
            )
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"{name}: not a number: {value.strip()!r}") from None
        if not (weights[name] >= 0 and weights[name] < float("inf")):
            raise ValueError(f"{name}: a weight must be finite and >= 0, got {value.strip()}")
    return weights


def build_train_model(
    model: str,
    image_size: int | None,
    seed: int,
    init: str | None = None,
    prompting: str = "sam2",
) -> torch.nn.Module:
    """sam2's SAM2Train for `model` (random init from `seed`, or the weights of `init`,
    an official-format checkpoint), sampling prompts as `PROMPTING[prompting]` says."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    overrides = [f"++model.image_size={image_size}"] if image_size else []
    cfg = load_config(model, overrides)
    model_cfg: Any = OmegaConf.to_container(cfg.model)
    model_cfg["_target_"] = "training.model.sam2.SAM2Train"
    model_cfg.update(PROMPTING[prompting])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = instantiate(OmegaConf.create(model_cfg), _recursive_=True)
    net.rng = np.random.default_rng(seed)  # SAM2Train's prompt sampling, seeded by the run
    if init is not None:
        load_weights(net, read_checkpoint(init), init, model)
    return net


def build_loss(weights: dict[str, float] = LOSS_WEIGHTS) -> torch.nn.Module:
    """sam2's loss with `weights` (default: its fine-tuning recipe's)."""
    from training.loss_fns import MultiStepMultiMasksAndIous

    return MultiStepMultiMasksAndIous(
        weight_dict={f"loss_{name}": value for name, value in weights.items()},
        supervise_all_iou=True,
        iou_use_l1_loss=True,
        pred_obj_scores=True,
        focal_gamma_obj_score=0.0,
        focal_alpha_obj_score=-1.0,
    )
