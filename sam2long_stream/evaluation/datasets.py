"""DAVIS and SA-V datasets on disk: reading videos, splits and predictions, writing PNGs.

Both layouts are read as their official evaluators read them (DAVIS: palette PNGs of
object ids, 255 void; SA-V: one binary PNG per object, every 4th frame), so a score
here means what it means there. Pixels of value 255 in DAVIS annotations are never an
object: the DAVIS toolkit sets them to background before scoring, and so does
`Video.read_gt` unless ``ignore_void`` asks to exclude them instead.

Nothing here imports torch, so loaders work without the model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

VOID_LABEL = 255

Format = Literal["davis", "sav"]
FORMATS: tuple[str, ...] = ("davis", "sav")


class EvalError(Exception):
    """A problem with the user's data or arguments: reported as one line, no traceback."""


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


# -- reading predictions ------------------------------------------------------------
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
