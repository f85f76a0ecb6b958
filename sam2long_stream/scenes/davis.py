"""Write synthetic scenes as a DAVIS-format set (the layout `eval` and `train` read),
with each video's events beside it, so anyone can rebuild the exact training and
evaluation data from the seeds."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from sam2long_stream.evaluation import compose_labels, write_palette_png
from sam2long_stream.scenes.scene import EVENT_KINDS, Scene, make_scene

EVENTS_FILE = "events.json"


def video_name(seed: int) -> str:
    return f"scene-{seed}"


def write_davis(
    root: str | Path,
    seeds: Sequence[int],
    width: int = 192,
    height: int = 144,
    num_frames: int = 80,
    set_name: str = "val",
    log: Callable[[str], None] | None = None,
) -> dict[str, list[dict]]:
    """Write one video per seed under `root` and return {video: its events}. Video i is
    made to include event kind i mod 3 for its first target (so every kind appears),
    and frames are JPEGs of a per-video quality (JPEG artefacts, as cameras give)."""
    root = Path(root)
    images, annotations = root / "JPEGImages" / "480p", root / "Annotations" / "480p"
    events: dict[str, list[dict]] = {}
    for i, seed in enumerate(seeds):
        name = video_name(seed)
        scene = make_scene(seed, width, height, num_frames, events=(EVENT_KINDS[i % 3],))
        quality = int(np.random.default_rng(seed).integers(55, 95))
        (images / name).mkdir(parents=True, exist_ok=True)
        for t in range(num_frames):
            rgb, masks = scene.frame(t)
            Image.fromarray(rgb).save(images / name / f"{t:05d}.jpg", quality=quality)
            write_palette_png(
                annotations / name / f"{t:05d}.png", compose_labels(masks, height, width)
            )
        events[name] = [e.as_dict() for e in scene.events]
        if log:
            kinds = ", ".join(sorted({e.kind for e in scene.events})) or "none"
            log(f"  {name}: {num_frames} frames, {len(scene.targets)} objects, events: {kinds}")
    sets = root / "ImageSets" / "2017"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / f"{set_name}.txt").write_text("".join(f"{n}\n" for n in events))
    meta = {
        "generator": "sam2long_stream.scenes",
        "seeds": list(seeds),
        "width": width,
        "height": height,
        "frames": num_frames,
        "events": events,
    }
    (root / EVENTS_FILE).write_text(json.dumps(meta, indent=1))
    return events


def write_jpeg_frames(scene: Scene, folder: str | Path, quality: int = 90) -> Path:
    """The scene's frames as folder/00000.jpg, 00001.jpg, ... (what the RTSP test camera
    plays with `frames=`); the ground truth stays `scene.frame(i)[1]`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(scene.num_frames):
        Image.fromarray(scene.frame(t)[0]).save(folder / f"{t:05d}.jpg", quality=quality)
    return folder
