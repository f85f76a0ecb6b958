"""With the tree off, the tracker must BE SAM 2: the same masks as sam2's own
SAM2VideoPredictor on the same (random) weights, frames and prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sam2.build_sam import build_sam2_video_predictor

from sam2long_stream import Prompt, Tracker, TrackerConfig
from tests.scenes import moving_squares

NUM_FRAMES = 18  # >= 16 so the predictor's pointer window (min(num_frames, 16)) is SAM 2's


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """Frames written as a JPEG folder (the predictor's input) and read back for us."""
    folder = tmp_path_factory.mktemp("jpg")
    frames = []
    for i, img in enumerate(moving_squares(NUM_FRAMES)):
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(img).save(path, quality=95)
        frames.append(np.array(Image.open(path).convert("RGB")))
    return folder, frames


def tree_off(**kw) -> TrackerConfig:
    return TrackerConfig(
        num_pathways=1, memory_selection=False, attention_modulation=False, image_size=256, **kw
    )


# With random weights memory barely moves the masks (attention modulation alone changes
# the logits by ~1e-4), so besides mask IoU we compare logits at video resolution.
LOGIT_TOLERANCE = 1e-5


def run_predictor(
    model: torch.nn.Module, folder, prompts: dict
) -> dict[int, dict[int, torch.Tensor]]:
    predictor = build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml",
        ckpt_path=None,
        device="cpu",
        hydra_overrides_extra=["++model.image_size=256"],
    )
    predictor.load_state_dict(model.state_dict())
    out: dict[int, dict[int, np.ndarray]] = {}
    with torch.inference_mode(), pytest.warns(UserWarning):  # no sam2._C: hole filling skipped
        state = predictor.init_state(str(folder))
        for obj_id, p in prompts.items():
            if p.mask is not None:
                predictor.add_new_mask(state, 0, obj_id, p.mask)
            else:
                predictor.add_new_points_or_box(
                    state, 0, obj_id, points=p.points, labels=p.labels, box=p.box
                )
        for t, obj_ids, logits in predictor.propagate_in_video(state):
            out[t] = {o: logits[i, 0].clone() for i, o in enumerate(obj_ids)}
    return out


def best_logits(tracker: Tracker, object_id: int, height: int, width: int) -> torch.Tensor:
    """The live mask logits of the best pathway, upsampled as the predictor does."""
    obj = tracker._objects[object_id]
    low = max(obj.pool, key=lambda p: p.score).recent[-1].low_res
    return F.interpolate(low[None], size=(height, width), mode="bilinear", align_corners=False)[
        0, 0
    ]


def run_tracker(tracker: Tracker, frames, prompts: dict):
    masks, logits = {}, {}
    for t, frame in enumerate(frames):
        r = tracker.step(frame, prompts=prompts if t == 0 else None)
        masks[t] = r.masks
        logits[t] = {o: best_logits(tracker, o, *frame.shape[:2]) for o in r.masks}
    return masks, logits


def compare(ours, our_logits, theirs, object_ids) -> None:
    assert sorted(theirs) == list(range(NUM_FRAMES))
    worst = min(iou(ours[t][o], (theirs[t][o] > 0).numpy()) for t in theirs for o in object_ids)
    assert worst >= 0.999, f"tree-off tracker diverged from SAM 2 (worst IoU {worst:.4f})"
    gap = max(
        float((our_logits[t][o] - theirs[t][o]).abs().max()) for t in theirs for o in object_ids
    )
    assert gap < LOGIT_TOLERANCE, f"mask logits differ from SAM 2 by {gap:.2e}"
    # Not vacuous: the masks are not all empty or all full.
    areas = [ours[t][o].mean() for t in ours for o in object_ids]
    assert 0.0 < np.mean(areas) < 1.0


@pytest.mark.parametrize(
    "prompts",
    [
        pytest.param({1: Prompt(box=(10, 20, 40, 50))}, id="one-object-box"),
        pytest.param({3: Prompt(points=[(100, 48)], labels=[1])}, id="one-object-point"),
        pytest.param(
            {
                1: Prompt(box=(10, 20, 40, 50)),
                2: Prompt(points=[(98, 48), (20, 80)], labels=[1, 0]),
            },
            id="two-objects-box-and-points",
        ),
    ],
)
def test_tree_off_reproduces_sam2_video_predictor(video, prompts):
    folder, frames = video
    tracker = Tracker(tree_off(seed=1))
    ours, our_logits = run_tracker(tracker, frames, prompts)
    theirs = run_predictor(tracker.model, folder, prompts)
    compare(ours, our_logits, theirs, prompts)


def test_mask_prompt_reproduces_sam2_video_predictor(video):
    folder, frames = video
    mask = np.zeros(frames[0].shape[:2], dtype=bool)
    mask[20:50, 10:40] = True
    prompts = {5: Prompt(mask=mask)}
    tracker = Tracker(tree_off(seed=2))
    ours, our_logits = run_tracker(tracker, frames, prompts)
    theirs = run_predictor(tracker.model, folder, prompts)
    compare(ours, our_logits, theirs, prompts)


def test_tree_on_is_not_sam2(video):
    """Guards the guard: attention modulation must move the logits beyond the tolerance."""
    folder, frames = video
    prompts = {1: Prompt(box=(10, 20, 40, 50))}
    cfg = TrackerConfig(num_pathways=1, memory_selection=False, attention_modulation=True, seed=1)
    tracker = Tracker(cfg)
    _, our_logits = run_tracker(tracker, frames, prompts)
    theirs = run_predictor(tracker.model, folder, prompts)
    gap = max(float((our_logits[t][1] - theirs[t][1]).abs().max()) for t in theirs)
    assert gap > 10 * LOGIT_TOLERANCE
