"""J and F, the DAVIS 2017 metrics, and how scores are averaged: numpy only.

J and F are re-implemented from the DAVIS 2017 toolkit (``davis2017-evaluation``,
``davis2017/metrics.py``: ``db_eval_iou``, ``db_eval_boundary``/``f_measure``,
``_seg2bmap``) so that numbers are comparable with published ones without pulling in
opencv and scikit-image: the only difference is that the disk dilation (``cv2.dilate``
with ``skimage.morphology.disk``) is done here with numpy shifts, which gives the same
binary map. Checked bit for bit against the toolkit's own code (opencv 5.0, scikit-image
0.26) on 3,000 random mask pairs, void and full-frame masks included; tests/test_eval.py
keeps some of its values.

Conventions, as the toolkits have them (see ``scored_frames`` for the frame rule):

* J of two empty masks is 1; F is 1 when both boundaries are empty and 0 when only one is.
* ``void=`` excludes pixels from J and F the way the DAVIS toolkit's code intends (by
  default the readers in `datasets` count DAVIS 255 pixels as background, as the
  toolkit in effect does).
* The overall means are over objects (each object's mean over its scored frames),
  as in both the DAVIS and the SA-V evaluators; J&F = (J + F) / 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

BOUND_TH = 0.008  # boundary tolerance, as a fraction of the image diagonal (DAVIS)


def _as_bool(mask: np.ndarray, name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name} must be a 2-D mask, got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def _pair(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None):
    gt, pred = _as_bool(gt, "gt"), _as_bool(pred, "pred")
    if gt.shape != pred.shape:
        raise ValueError(f"gt {gt.shape} and prediction {pred.shape} differ in shape")
    if void is not None:
        void = _as_bool(void, "void")
        if void.shape != gt.shape:
            raise ValueError(f"void {void.shape} and gt {gt.shape} differ in shape")
    return gt, pred, void


def db_eval_iou(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> float:
    """Region similarity J: intersection over union, 1 when both masks are empty.

    Void pixels (if given) count neither in the intersection nor in the union.
    """
    gt, pred, void = _pair(gt, pred, void)
    keep = ~void if void is not None else True
    inter = int(np.count_nonzero(gt & pred & keep))
    union = int(np.count_nonzero((gt | pred) & keep))
    return 1.0 if union == 0 else inter / union


def boundary_radius(shape: Sequence[int], bound_th: float = BOUND_TH) -> int:
    """Boundary match tolerance in pixels: ceil(bound_th * image diagonal).

    As in the toolkit, a ``bound_th >= 1`` is taken as a pixel count (rounded up here,
    since the disk needs a whole radius).
    """
    if bound_th >= 1:
        return math.ceil(bound_th)
    return math.ceil(bound_th * math.hypot(shape[0], shape[1]))


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary map of a mask (D. Martin's seg2bmap, as in the toolkit).

    A pixel is on the boundary when it differs from its east, south or south-east
    neighbour (outside the image counts as background), so the boundary sits half a
    pixel towards the origin; the last row and column follow the toolkit's special
    cases exactly (a mask filling the whole image has an empty boundary).
    """
    seg = _as_bool(seg, "seg")
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def disk(radius: int) -> np.ndarray:
    """Disk footprint of skimage.morphology.disk: (2r+1)^2, dx^2 + dy^2 <= r^2."""
    r = np.arange(-radius, radius + 1)
    return r[None, :] ** 2 + r[:, None] ** 2 <= radius**2


def dilate_disk(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by ``disk(radius)``, pixels outside the image being background.

    Equals ``cv2.dilate(mask, disk(radius))``. Done as row-by-row unions of horizontal
    dilations (the disk is a stack of centred runs) on the mask's bounding box grown by
    the radius, so a small object in a large frame costs little.
    """
    mask = _as_bool(mask, "mask")
    out = np.zeros_like(mask)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return out
    if radius <= 0:
        return mask.copy()
    cols = np.flatnonzero(mask.any(axis=0))
    height, width = mask.shape
    y0, y1 = max(rows[0] - radius, 0), min(rows[-1] + radius + 1, height)
    x0, x1 = max(cols[0] - radius, 0), min(cols[-1] + radius + 1, width)
    win = mask[y0:y1, x0:x1]
    h, w = win.shape
    horizontal = [win]  # horizontal[k]: dilation by the run -k..k
    cur = win
    for k in range(1, radius + 1):
        cur = cur.copy()
        if k < w:
            cur[:, k:] |= win[:, :-k]
            cur[:, :-k] |= win[:, k:]
        horizontal.append(cur)
    res = out[y0:y1, x0:x1]  # a view: writes land in `out`
    for dy in range(-radius, radius + 1):
        if abs(dy) >= h:
            continue
        src = horizontal[math.isqrt(radius * radius - dy * dy)]
        if dy >= 0:
            res[dy:, :] |= src[: h - dy, :]
        else:
            res[: h + dy, :] |= src[-dy:, :]
    return out


def db_eval_boundary(
    gt: np.ndarray,
    pred: np.ndarray,
    void: np.ndarray | None = None,
    bound_th: float = BOUND_TH,
) -> float:
    """Contour accuracy F: F-measure of boundary precision and recall.

    A predicted boundary pixel is correct when a ground-truth boundary pixel lies within
    ``boundary_radius`` (a disk), and the other way round for recall. Empty boundaries:
    both empty -> 1; only one empty -> 0 (toolkit: precision 1/recall 0 or the reverse).
    """
    gt, pred, void = _pair(gt, pred, void)
    if void is not None:
        gt = gt & ~void
        pred = pred & ~void
    radius = boundary_radius(gt.shape, bound_th)
    fg_boundary = seg2bmap(pred)
    gt_boundary = seg2bmap(gt)
    n_fg = int(np.count_nonzero(fg_boundary))
    n_gt = int(np.count_nonzero(gt_boundary))
    if n_fg == 0 and n_gt == 0:
        return 1.0
    if n_fg == 0 or n_gt == 0:
        return 0.0
    fg_match = int(np.count_nonzero(fg_boundary & dilate_disk(gt_boundary, radius)))
    gt_match = int(np.count_nonzero(gt_boundary & dilate_disk(fg_boundary, radius)))
    precision = fg_match / float(n_fg)
    recall = gt_match / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def scored_frames(
    annotated: Sequence[int], prompt_frame: int, skip_first_and_last: bool = True
) -> list[int]:
    """Frames on which an object is scored.

    DAVIS 2017 semi-supervised and SA-V val/test drop the first and the last annotated
    frame (``all_masks_id[1:-1]``; sav_benchmark's ``skip_first_and_last``): the first
    is where objects are prompted. An object that first appears later is scored only
    after its own prompt frame, i.e. on the frames the tracker had to predict. There
    the toolkits differ from this and from each other (DAVIS scores the frames before it
    as empty-vs-empty = 1; sav_benchmark starts at its first appearance, prompt frame
    included); every object of DAVIS 2017 is in frame 0, so its numbers are unchanged.
    With ``skip_first_and_last=False`` the prompt frame and the last frame are scored too.
    """
    frames = sorted(annotated)
    if not frames:
        return []
    if skip_first_and_last:
        return [t for t in frames if prompt_frame < t < frames[-1]]
    return [t for t in frames if t >= prompt_frame]


@dataclass
class ObjectScores:
    """Per-frame J and F of one object in one video."""

    video: str
    object_id: int
    frames: list[str] = field(default_factory=list)
    j: list[float] = field(default_factory=list)
    f: list[float] = field(default_factory=list)

    def add(self, frame: str, j: float, f: float) -> None:
        self.frames.append(frame)
        self.j.append(j)
        self.f.append(f)

    def means(self) -> dict[str, float] | None:
        """Mean J, F and J&F over the scored frames; None when no frame was scored."""
        if not self.j:
            return None
        j, f = float(np.mean(self.j)), float(np.mean(self.f))
        return {"J": j, "F": f, "J&F": (j + f) / 2}


def _mean_of(rows: Iterable[Mapping[str, float]]) -> dict[str, float] | None:
    rows = list(rows)
    if not rows:
        return None
    j = float(np.mean([r["J"] for r in rows]))
    f = float(np.mean([r["F"] for r in rows]))
    return {"J": j, "F": f, "J&F": (j + f) / 2}


def _or_unscored(means: dict[str, float] | None) -> dict[str, float | None]:
    """`means`, or ``null`` scores where nothing was scored."""
    return dict(means) if means else {"J": None, "F": None, "J&F": None}


def summarize(objects: Sequence[ObjectScores]) -> dict:
    """Per-object, per-video (mean of its objects) and overall (mean over objects) scores.

    Objects without a scored frame (e.g. first seen on the last annotated frame) are
    listed with ``null`` scores and left out of every mean.
    """
    videos: dict[str, dict] = {}
    scored: list[dict[str, float]] = []
    for obj in objects:
        m = obj.means()
        v = videos.setdefault(obj.video, {"objects": {}})
        row = _or_unscored(m)
        v["objects"][str(obj.object_id)] = {**row, "frames": len(obj.j)}
        if m is not None:
            scored.append(m)
    for v in videos.values():
        means = _mean_of(o for o in v["objects"].values() if o["J"] is not None)
        v.update(_or_unscored(means))
    overall = _or_unscored(_mean_of(scored))
    return {"mean": {**overall, "objects": len(scored)}, "videos": videos}
