"""Video object segmentation metrics (DAVIS J and F) and dataset I/O, numpy only.

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
* Pixels of value 255 in DAVIS annotations are never an object. The DAVIS toolkit sets
  them to background before scoring (its void mask is computed after that, so it never
  excludes anything); that is the default here. ``void=`` excludes pixels from J and F
  the way the toolkit's code intends, for those who want it.
* The overall means are over objects (each object's mean over its scored frames),
  as in both the DAVIS and the SA-V evaluators; J&F = (J + F) / 2.

Nothing here imports torch, so metrics and loaders work without the model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

BOUND_TH = 0.008  # boundary tolerance, as a fraction of the image diagonal (DAVIS)
VOID_LABEL = 255

Format = Literal["davis", "sav"]
FORMATS: tuple[str, ...] = ("davis", "sav")


class EvalError(Exception):
    """A problem with the user's data or arguments: reported as one line, no traceback."""


# -- metrics -------------------------------------------------------------------------
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


# -- which frames count ----------------------------------------------------------------
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


# -- scores and summaries ---------------------------------------------------------------
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


# -- datasets ------------------------------------------------------------------------
_IMAGE_EXTS = (".jpg", ".jpeg", ".png")


def _natural_key(path: Path) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.stem))


def _list(folder: Path, exts: Sequence[str]) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts),
        key=_natural_key,
    )


def read_rgb(path: Path) -> np.ndarray:
    """A frame as (H, W, 3) uint8 RGB."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def read_labels(path: Path) -> np.ndarray:
    """A DAVIS annotation as (H, W) integer ids: the palette indices, not the colours."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("RGB", "RGBA"):
            raise EvalError(f"{path}: annotation is {im.mode}, expected a palette PNG of ids")
        return np.asarray(im)


def read_binary(path: Path) -> np.ndarray:
    """An SA-V per-object annotation as a bool mask (any non-zero pixel is the object)."""
    from PIL import Image

    with Image.open(path) as im:
        a = np.asarray(im)
    return np.asarray((a > 0) if a.ndim == 2 else (a > 0).any(axis=-1))


@dataclass
class Video:
    """One evaluation video: its frames and where its ground truth lies.

    ``annotations`` maps object id -> frame index -> PNG. For DAVIS every object shares
    the video's palette PNGs (``labels``); for SA-V each object has its own binary PNGs.
    ``prompt_frames`` is the first annotated frame on which each object is non-empty.
    """

    name: str
    format: Format
    frames: list[Path]
    height: int
    width: int
    annotations: dict[int, dict[int, Path]]
    prompt_frames: dict[int, int]
    object_names: dict[int, str]  # SA-V: the object's folder name (e.g. "000")
    labels: dict[int, Path] = field(default_factory=dict)  # DAVIS: frame -> palette PNG

    @property
    def object_ids(self) -> list[int]:
        return sorted(self.prompt_frames)

    @property
    def frame_names(self) -> list[str]:
        return [p.stem for p in self.frames]

    def read_frame(self, index: int) -> np.ndarray:
        rgb = read_rgb(self.frames[index])
        if rgb.shape[:2] != (self.height, self.width):
            raise EvalError(
                f"{self.frames[index]}: frame is {rgb.shape[1]}x{rgb.shape[0]}, "
                f"the video's first frame is {self.width}x{self.height}"
            )
        return rgb

    def read_gt(self, index: int, ignore_void: bool = False):
        """Ground truth on frame ``index``: ({object id: bool mask}, void mask or None).

        Only objects annotated on that frame are in the dict (for DAVIS: all of them;
        an object absent there has an empty mask).
        """
        if self.format == "davis":
            path = self.labels.get(index)
            if path is None:
                return {}, None
            labels = self._check(read_labels(path), path)
            void = labels == VOID_LABEL if ignore_void else None
            return {o: labels == o for o in self.object_ids}, void
        masks = {}
        for o, by_frame in self.annotations.items():
            path = by_frame.get(index)
            if path is not None:
                masks[o] = self._check(read_binary(path), path)
        return masks, None

    def _check(self, mask: np.ndarray, path: Path) -> np.ndarray:
        if mask.shape[:2] != (self.height, self.width):
            raise EvalError(
                f"{path}: annotation is {mask.shape[1]}x{mask.shape[0]}, "
                f"frames are {self.width}x{self.height}"
            )
        return mask


def _frames_folder(root: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


def _davis_dirs(root: Path) -> tuple[Path, Path]:
    images = _frames_folder(root, ("JPEGImages/480p", "JPEGImages"))
    annotations = _frames_folder(root, ("Annotations/480p", "Annotations"))
    if images is None or annotations is None:
        missing = "JPEGImages" if images is None else "Annotations"
        raise EvalError(f"{root}: no {missing}[/480p] folder; is this a DAVIS-format dataset?")
    # JPEGImages/480p may sit beside Annotations without /480p (or the reverse): fine.
    return images, annotations


def _sav_dirs(root: Path) -> tuple[Path, Path]:
    images, annotations = root / "JPEGImages_24fps", root / "Annotations_6fps"
    for d in (images, annotations):
        if not d.is_dir():
            raise EvalError(f"{root}: no {d.name} folder; is this an SA-V-format dataset?")
    return images, annotations


def read_video_list(path: str | Path) -> list[str]:
    """Video names from a text file, one per line (sam2's ``--video_list_file``, DAVIS'
    ``ImageSets/2017/val.txt``, SA-V's ``sav_val.txt``): each line stripped; blank lines
    and lines starting with ``#`` are skipped; a name listed twice is kept once."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise EvalError(f"video list not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EvalError(f"{path}: cannot read the video list ({e})") from None
    names = [s.strip() for s in text.splitlines()]
    names = list(dict.fromkeys(n for n in names if n and not n.startswith("#")))
    if not names:
        raise EvalError(f"{path}: the video list is empty")
    return names


def split_file(root: str | Path, fmt: str, name: str) -> Path:
    """Where a named split's list lies: DAVIS ``ImageSets/2017/NAME.txt`` (as the DAVIS
    2017 toolkit reads it), SA-V ``NAME.txt`` at the root (``sav_val.txt``)."""
    root = Path(root)
    if fmt == "davis":
        return root / "ImageSets" / "2017" / f"{name}.txt"
    return root / f"{name}.txt"


def read_split(root: str | Path, fmt: str, name: str) -> list[str]:
    """The videos of a named split (``--set``); a missing list names the files that exist."""
    path = split_file(root, fmt, name)
    if not path.is_file():
        found = sorted(p.stem for p in path.parent.glob("*.txt")) if path.parent.is_dir() else []
        hint = f"; found: {', '.join(found)}" if found else ""
        raise EvalError(f"no list for set {name!r}: {path} not found{hint}")
    return read_video_list(path)


def select_videos(
    available: Sequence[str], wanted: Sequence[str] | None, source: str = "--videos"
) -> list[str]:
    """``wanted`` in its order (all of ``available`` if None); a name that is not in the
    data is an error naming it and where it came from (``source``)."""
    if not wanted:
        return list(available)
    have = set(available)
    unknown = [v for v in wanted if v not in have]
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise EvalError(
            f"{source}: unknown video(s) {shown} (not in the data); found "
            f"{len(available)}: "
            + ", ".join(available[:10])
            + (" ..." if len(available) > 10 else "")
        )
    return list(dict.fromkeys(wanted))


def list_videos(root: str | Path, fmt: str) -> list[str]:
    """Names of the videos that have both frames and annotations, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise EvalError(f"data folder not found: {root}")
    if fmt not in FORMATS:
        raise EvalError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    images, annotations = _davis_dirs(root) if fmt == "davis" else _sav_dirs(root)
    names = sorted(
        p.name for p in images.iterdir() if p.is_dir() and (annotations / p.name).is_dir()
    )
    if not names:
        raise EvalError(f"{root}: no video has both frames in {images} and annotations")
    return names


def load_video(root: str | Path, name: str, fmt: str, max_frames: int | None = None) -> Video:
    """Index one video (reading its annotations once to find objects and prompt frames).

    ``max_frames`` keeps the first N frames and the annotations among them, so the
    "last annotated frame" of the frame rule is then the last one within those N.
    """
    root = Path(root)
    if fmt not in FORMATS:
        raise EvalError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    images, annotations = _davis_dirs(root) if fmt == "davis" else _sav_dirs(root)
    frames = _list(images / name, _IMAGE_EXTS) if (images / name).is_dir() else []
    if not frames:
        raise EvalError(f"video {name}: no frames in {images / name}")
    if max_frames is not None:
        frames = frames[:max_frames]
    index = {p.stem: i for i, p in enumerate(frames)}
    height, width = read_rgb(frames[0]).shape[:2]
    if fmt == "davis":
        return _load_davis(name, annotations / name, frames, index, height, width)
    return _load_sav(name, annotations / name, frames, index, height, width)


def _annotated(pngs: list[Path], index: Mapping[str, int]) -> dict[int, Path]:
    """Frame index -> annotation, matched by file stem (00000.png <-> 00000.jpg)."""
    return {index[p.stem]: p for p in pngs if p.stem in index}


def _load_davis(name, folder, frames, index, height, width) -> Video:
    all_pngs = _list(folder, (".png",))
    labels = _annotated(all_pngs, index)
    if not labels:
        raise EvalError(f"video {name}: no annotation PNG in {folder} matches a frame name")
    prompt_frames: dict[int, int] = {}
    for t in sorted(labels):
        ids = np.unique(read_labels(labels[t]))
        for o in ids.tolist():
            if o not in (0, VOID_LABEL):
                if not 0 < o < VOID_LABEL:
                    raise EvalError(f"{labels[t]}: object id {o} is outside 1..254")
                prompt_frames.setdefault(int(o), t)
    if not prompt_frames:
        raise EvalError(f"video {name}: no object in its annotations (0 is background, 255 void)")
    per_object = {o: dict(labels) for o in prompt_frames}
    video = Video(name, "davis", frames, height, width, per_object, prompt_frames, {}, labels)
    video._check(read_labels(labels[min(labels)]), labels[min(labels)])
    return video


def _load_sav(name, folder, frames, index, height, width) -> Video:
    annotations: dict[int, dict[int, Path]] = {}
    names: dict[int, str] = {}
    prompt_frames: dict[int, int] = {}
    for obj_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        try:
            o = int(obj_dir.name)
        except ValueError:
            raise EvalError(
                f"video {name}: object folder {obj_dir.name!r} is not a number (SA-V: 000, 001..)"
            ) from None
        by_frame = _annotated(_list(obj_dir, (".png",)), index)
        if not by_frame:
            continue
        annotations[o], names[o] = by_frame, obj_dir.name
        for t in sorted(by_frame):
            mask = read_binary(by_frame[t])
            if mask.shape != (height, width):
                raise EvalError(
                    f"{by_frame[t]}: annotation is {mask.shape[1]}x{mask.shape[0]}, "
                    f"frames are {width}x{height}"
                )
            if mask.any():
                prompt_frames[o] = t
                break
    if not prompt_frames:
        raise EvalError(f"video {name}: no non-empty object annotation in {folder}")
    annotations = {o: a for o, a in annotations.items() if o in prompt_frames}
    return Video(name, "sav", frames, height, width, annotations, prompt_frames, names)


# -- scoring ------------------------------------------------------------------------------
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


# -- reading a prediction folder ---------------------------------------------------------
_OUT_FOLDER = re.compile(r"P\d+(-(offline|online))?")


def check_prediction_root(pred: str | Path, videos: Sequence[str]) -> Path:
    """The prediction folder must hold a folder for every video to score."""
    pred = Path(pred)
    if not pred.is_dir():
        raise EvalError(f"prediction folder not found: {pred}")
    missing = [v for v in videos if not (pred / v).is_dir()]
    if missing:
        runs = sorted(
            d.name for d in pred.iterdir() if d.is_dir() and _OUT_FOLDER.fullmatch(d.name)
        )
        if runs:
            hint = f"; {pred} looks like an eval --out folder: pass --pred {pred / runs[-1]}"
        else:
            hint = "; to score a subset use --set, --video-list or --videos"
        more = f" (and {len(missing) - 1} more video(s))" if len(missing) > 1 else ""
        raise EvalError(f"{pred / missing[0]}: no predictions for video {missing[0]}{more}{hint}")
    return pred


def _read_pred(path: Path, video: Video) -> tuple[np.ndarray, str]:
    from PIL import Image

    if not path.is_file():
        raise EvalError(f"{path}: prediction missing (frame {path.stem} of {video.name} is scored)")
    try:
        with Image.open(path) as im:
            mode, a = im.mode, np.asarray(im)
    except (OSError, ValueError) as e:
        raise EvalError(f"{path}: cannot read the prediction ({e})") from None
    if a.shape[:2] != (video.height, video.width):
        raise EvalError(
            f"{path}: prediction is {a.shape[1]}x{a.shape[0]}, "
            f"the video's frames are {video.width}x{video.height}"
        )
    return a, mode


def read_pred_davis(path: Path, video: Video) -> dict[int, np.ndarray]:
    """A DAVIS-style prediction: one PNG of object ids (palette or grayscale) per frame.
    Ids that are not objects of the video's ground truth are an error, as in the DAVIS
    toolkit (which stops on an index higher than the number of objects)."""
    a, mode = _read_pred(path, video)
    if a.ndim != 2:
        raise EvalError(
            f"{path}: prediction is {mode}; expected a palette or grayscale PNG of object ids"
        )
    ids = set(np.unique(a).tolist()) - {0}
    unknown = sorted(ids - set(video.object_ids))
    if unknown:
        raise EvalError(
            f"{path}: unknown object id(s) {', '.join(map(str, unknown))}; the ground truth of "
            f"{video.name} has {', '.join(map(str, video.object_ids))}"
        )
    return {o: a == o for o in video.object_ids}


def read_pred_sav(path: Path, video: Video) -> np.ndarray:
    """An SA-V-style prediction: one binary PNG per object and frame (any non-zero pixel is
    the object); more than two values is an error, as in sam2's SA-V evaluator."""
    a, _ = _read_pred(path, video)
    values = np.unique(a.reshape(-1, a.shape[-1]), axis=0) if a.ndim == 3 else np.unique(a)
    if len(values) > 2:
        raise EvalError(f"{path}: more than one object in a per-object PNG (SA-V: 0 and one value)")
    return np.asarray((a > 0) if a.ndim == 2 else (a > 0).any(axis=-1))


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


# -- writing predictions ----------------------------------------------------------------
def davis_palette() -> list[int]:
    """The DAVIS / PASCAL VOC colour map (256 RGB entries, flat)."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def compose_labels(masks: Mapping[int, np.ndarray], height: int, width: int) -> np.ndarray:
    """Per-object masks -> one id map; where objects overlap the lowest id wins.

    That is sam2's ``vos_inference`` rule (paint in descending id order), so a DAVIS
    result here scores as it would through sam2's own tooling and the DAVIS toolkit.
    """
    labels = np.zeros((height, width), dtype=np.uint8)
    for o in sorted(masks, reverse=True):
        if not 0 < o < VOID_LABEL:
            raise ValueError(f"object id {o} does not fit a DAVIS palette PNG (1..254)")
        labels[np.asarray(masks[o], dtype=bool)] = o
    return labels


def write_palette_png(path: str | Path, labels: np.ndarray) -> None:
    """Write an id map as a palette PNG (pixel value = object id), DAVIS style."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.asarray(labels, dtype=np.uint8))
    im.putpalette(davis_palette())  # turns the L image into P, keeping the ids
    im.save(path)


def write_binary_png(path: str | Path, mask: np.ndarray) -> None:
    """Write one object's mask as a 0/255 PNG (SA-V per-object layout)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255).save(path)
