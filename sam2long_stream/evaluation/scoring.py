"""Scoring a video: which objects count on which frame, J and F per frame, and a
prediction folder scored against the ground truth (no model).

The frame rule is `metrics.scored_frames`; `score_prediction` reads the layouts that
``eval`` and sam2's ``vos_inference.py`` write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from sam2long_stream.evaluation.datasets import (
    EvalError,
    Video,
    read_pred_davis,
    read_pred_sav,
)
from sam2long_stream.evaluation.metrics import (
    ObjectScores,
    db_eval_boundary,
    db_eval_iou,
    scored_frames,
)


def objects_by_frame(video: Video, skip_first_and_last: bool = True) -> dict[int, list[int]]:
    """Frame index -> the objects scored on it (``scored_frames`` applied per object)."""
    todo: dict[int, list[int]] = {}
    for o in video.object_ids:
        frames = scored_frames(
            sorted(video.annotations[o]), video.prompt_frames[o], skip_first_and_last
        )
        for t in frames:
            todo.setdefault(t, []).append(o)
    return dict(sorted(todo.items()))


def score_frame(
    video: Video,
    t: int,
    masks: Mapping[int, np.ndarray],
    objects: Sequence[int],
    scores: Mapping[int, ObjectScores],
    ignore_void: bool = False,
) -> None:
    """Add J and F of ``objects`` on frame ``t`` (predicted ``masks``) to ``scores``."""
    gt, void = video.read_gt(t, ignore_void)
    name = video.frame_names[t]
    for o in objects:
        scores[o].add(
            name, db_eval_iou(gt[o], masks[o], void), db_eval_boundary(gt[o], masks[o], void)
        )


def per_frame_j(video: Video, objects: Sequence[ObjectScores]) -> dict[str, list]:
    """A video's J per scored frame, the mean over the objects scored on it (for plots):
    ``{"frame": names, "index": frame indices, "J": values}``, in frame order."""
    index = {n: i for i, n in enumerate(video.frame_names)}
    by_frame: dict[int, list[float]] = {}
    for obj in objects:
        for name, j in zip(obj.frames, obj.j, strict=True):
            by_frame.setdefault(index[name], []).append(j)
    ts = sorted(by_frame)
    return {
        "frame": [video.frame_names[t] for t in ts],
        "index": ts,
        "J": [float(np.mean(by_frame[t])) for t in ts],
    }


def _check_sav_objects(folder: Path, video: Video) -> None:
    known = set(video.object_names.values())
    entries = sorted(folder.iterdir())
    if not any(p.is_dir() for p in entries) and any(p.suffix.lower() == ".png" for p in entries):
        raise EvalError(
            f"{folder}: PNGs but no per-object folders; "
            "this is the DAVIS layout (drop --format sav)"
        )
    for d in entries:
        if d.is_dir() and d.name not in known:
            raise EvalError(
                f"{d}: unknown object {d.name!r}; the ground truth of {video.name} has "
                + ", ".join(sorted(known))
            )


def score_prediction(
    video: Video,
    pred: str | Path,
    skip_first_and_last: bool = True,
    ignore_void: bool = False,
) -> list[ObjectScores]:
    """Score a video's existing prediction PNGs under ``pred/<video>/`` (the layout
    ``eval`` writes and sam2's ``vos_inference.py`` writes): DAVIS ``<frame>.png`` id maps,
    SA-V ``<object>/<frame>.png``. Only scored frames must be there (as in both toolkits);
    a missing, unreadable or wrongly sized PNG, or an unknown object, is an EvalError."""
    folder = Path(pred) / video.name
    if video.format == "davis":
        if not any(p.suffix.lower() == ".png" for p in folder.iterdir()) and any(
            p.is_dir() for p in folder.iterdir()
        ):
            raise EvalError(
                f"{folder}: per-object folders but no PNGs; "
                "this is the SA-V layout (add --format sav)"
            )
    else:
        _check_sav_objects(folder, video)
    scores = {o: ObjectScores(video.name, o) for o in video.object_ids}
    names = video.frame_names
    for t, objects in objects_by_frame(video, skip_first_and_last).items():
        if video.format == "davis":
            masks = read_pred_davis(folder / f"{names[t]}.png", video)
        else:
            masks = {
                o: read_pred_sav(folder / video.object_names[o] / f"{names[t]}.png", video)
                for o in objects
            }
        score_frame(video, t, masks, objects, scores, ignore_void)
    return [scores[o] for o in video.object_ids]
