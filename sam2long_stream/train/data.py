"""Training clips, in the form sam2's training code takes them (`VideoDatapoint`,
batched by its own `collate_fn`): frames resized to the model's square input and
normalised, and one mask per object per frame.

Two sources: synthetic scenes made on the fly (a fresh scene per clip, seeds drawn
below `HELD_OUT_SEED_START`, so held-out sets never meet training), and DAVIS- or
SA-V-format folders read with the evaluation package's readers.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sam2long_stream.evaluation import EvalError, list_videos, load_video
from sam2long_stream.scenes import EVENT_KINDS, HELD_OUT_SEED_START, make_scene

_MEAN = torch.tensor((0.485, 0.456, 0.406))[:, None, None]
_STD = torch.tensor((0.229, 0.224, 0.225))[:, None, None]
_SIZES = ((192, 144), (160, 160), (176, 132), (224, 128), (144, 192))  # W x H, then squared


class DataError(ValueError):
    """A dataset folder or file that cannot be used; the message names it."""


@dataclass(frozen=True)
class Clip:
    """T frames (RGB uint8) and, per object, T bool masks of the same size."""

    frames: list[np.ndarray]
    masks: dict[int, list[np.ndarray]]


def to_datapoint(clip: Clip, image_size: int, video_id: int, rng: np.random.Generator):
    """A sam2 `VideoDatapoint`: squared, optionally flipped and JPEG-degraded frames."""
    from training.utils.data_utils import Frame, Object, VideoDatapoint

    flip = rng.uniform() < 0.5
    quality = int(rng.integers(30, 95)) if rng.uniform() < 0.5 else None
    frames = []
    for t, rgb in enumerate(clip.frames):
        img = Image.fromarray(rgb)
        if quality is not None:
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=quality)
            img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255
        if flip:
            x = x.flip(-1)
        objects = []
        for obj_id, masks in clip.masks.items():
            m = Image.fromarray(masks[t]).resize((image_size, image_size), Image.Resampling.NEAREST)
            seg = torch.from_numpy(np.asarray(m).copy())
            objects.append(Object(obj_id, t, seg.flip(-1) if flip else seg))
        frames.append(Frame(data=(x - _MEAN) / _STD, objects=objects))
    return VideoDatapoint(frames=frames, video_id=video_id, size=(image_size, image_size))


def _pick_objects(
    first: dict[int, np.ndarray], max_objects: int, rng: np.random.Generator
) -> list[int]:
    """Objects visible enough on the clip's first frame to be prompted there."""
    ok = [o for o, m in first.items() if m.sum() >= max(16, 0.002 * m.size)]
    rng.shuffle(ok)
    return sorted(ok[:max_objects])


SYNTHETIC = "synthetic"


def synthetic_events(source: str) -> tuple[str, ...] | None:
    """The event kinds of a ``--data`` source that names synthetic scenes, or None for
    a folder: ``synthetic`` is the held-out sets' random mix, ``synthetic:KIND[+KIND]``
    scenes whose first target meets those kinds (more of a hard case). DataError for an
    unknown kind."""
    name, _, kinds = source.partition(":")
    if name != SYNTHETIC:
        return None
    if not kinds:
        return ()
    wanted = tuple(k.strip() for k in kinds.split("+"))
    bad = [k for k in wanted if k not in EVENT_KINDS]
    if bad:
        raise DataError(
            f"--data {source}: unknown event kind {bad[0]!r}; expected "
            f"synthetic:KIND[+KIND] with kinds from {', '.join(EVENT_KINDS)}"
        )
    return wanted


class SyntheticClips:
    """Endless clips from fresh synthetic scenes (`sam2long_stream.scenes`); with
    `events`, every scene's first target meets those event kinds."""

    def __init__(
        self, rng: np.random.Generator, scene_frames: int = 48, events: tuple[str, ...] = ()
    ) -> None:
        self.rng = rng
        self.scene_frames = scene_frames
        self.events = events or None

    def clip(self, num_frames: int, max_objects: int) -> Clip:
        while True:
            seed = int(self.rng.integers(0, HELD_OUT_SEED_START))
            width, height = _SIZES[int(self.rng.integers(len(_SIZES)))]
            longest = (num_frames - 1) * 2 + 1  # the span at the largest stride
            frames = max(self.scene_frames, longest)
            scene = make_scene(seed, width, height, frames, events=self.events)
            stride = int(self.rng.choice([1, 1, 2])) if num_frames > 1 else 1
            span = (num_frames - 1) * stride + 1
            start = int(self.rng.integers(0, scene.num_frames - span + 1))
            index = [start + k * stride for k in range(num_frames)]
            drawn = [scene.frame(i) for i in index]
            chosen = _pick_objects(drawn[0][1], max_objects, self.rng)
            if chosen:
                return Clip(
                    frames=[rgb for rgb, _ in drawn],
                    masks={o: [m[o] for _, m in drawn] for o in chosen},
                )


class FolderClips:
    """Clips from a DAVIS- or SA-V-format folder (JPEG or PNG frames), read with the
    evaluation package's readers; a broken file is a `DataError` naming it."""

    def __init__(self, root: str | Path, fmt: str, rng: np.random.Generator) -> None:
        self.rng = rng
        try:
            names = list_videos(root, fmt)
            self.videos = [load_video(root, name, fmt) for name in names]
        except (EvalError, OSError) as e:
            raise DataError(str(e)) from None
        self.videos = [v for v in self.videos if v.object_ids]
        if not self.videos:
            raise DataError(f"{root}: no video has an annotated object")

    def clip(self, num_frames: int, max_objects: int) -> Clip:
        for _ in range(100):
            video = self.videos[int(self.rng.integers(len(self.videos)))]
            annotated = sorted(set().union(*(a.keys() for a in video.annotations.values())))
            if len(annotated) < num_frames:
                continue
            start = int(self.rng.integers(0, len(annotated) - num_frames + 1))
            index = annotated[start : start + num_frames]
            try:
                frames = [video.read_frame(i) for i in index]
                gts = [video.read_gt(i)[0] for i in index]
            except (EvalError, OSError) as e:
                raise DataError(str(e)) from None
            chosen = _pick_objects(gts[0], max_objects, self.rng)
            if chosen:
                empty = np.zeros((video.height, video.width), bool)
                return Clip(frames, {o: [g.get(o, empty) for g in gts] for o in chosen})
        raise DataError(f"no video in the folder has {num_frames} annotated frames in a row")


class ClipMix:
    """Batches drawn from several clip sources in turn, as sam2's `collate_fn` makes
    them: `batch(size, num_frames)` -> `BatchedVideoDatapoint`."""

    def __init__(
        self,
        sources: Sequence[SyntheticClips | FolderClips],
        image_size: int,
        max_objects: int,
        rng: np.random.Generator,
    ) -> None:
        if not sources:
            raise DataError("no training data: give --data synthetic and/or a folder")
        self.sources, self.image_size, self.max_objects, self.rng = (
            list(sources),
            image_size,
            max_objects,
            rng,
        )

    def batch(self, size: int, num_frames: int):
        from training.utils.data_utils import collate_fn

        points = []
        for b in range(size):
            source = self.sources[int(self.rng.integers(len(self.sources)))]
            clip = source.clip(num_frames, self.max_objects)
            points.append(to_datapoint(clip, self.image_size, b, self.rng))
        return collate_fn(points, dict_key="all")
