#!/usr/bin/env python3
"""Write the moving-shapes scene (`synthetic://moving-shapes`) as a DAVIS-format set: a
second generator the bundled model never trained on, to check that it tracks beyond
the scenes of `sam2long-stream scenes`.

    .venv/bin/python tools/shapes_set.py --out shapes8 --videos 8 --frames 80
    sam2long-stream eval --data shapes8 --pathways 1,3

Flat-coloured disc, square and triangle on Lissajous paths over a static textured
background; the paths cross, so the shapes hide one another (visible-pixel truth).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sam2long_stream.evaluation.datasets import compose_labels, write_palette_png  # noqa: E402
from sam2long_stream.sources.synthetic import moving_shapes_frame, moving_shapes_masks  # noqa: E402


def write_set(root: Path, videos: int, frames: int, width: int, height: int) -> list[str]:
    """One video per seed 0..videos-1, JPEG frames (quality 85) and palette PNG truth."""
    from PIL import Image

    names = [f"shapes-{seed}" for seed in range(videos)]
    for seed, name in enumerate(names):
        (root / "JPEGImages" / "480p" / name).mkdir(parents=True, exist_ok=True)
        for t in range(frames):
            rgb, _ = moving_shapes_frame(t, width, height, seed)
            Image.fromarray(rgb).save(
                root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", quality=85
            )
            labels = compose_labels(moving_shapes_masks(t, width, height, seed), height, width)
            write_palette_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", labels)
    sets = root / "ImageSets" / "2017"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "val.txt").write_text("".join(f"{n}\n" for n in names))
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder to write (DAVIS layout)")
    ap.add_argument("--videos", type=int, default=8, help="videos (seeds 0..N-1)")
    ap.add_argument("--frames", type=int, default=80, help="frames per video")
    ap.add_argument("--width", type=int, default=192)
    ap.add_argument("--height", type=int, default=144)
    args = ap.parse_args(argv)
    if min(args.videos, args.frames) < 1 or min(args.width, args.height) < 32:
        ap.error("--videos and --frames must be >= 1, --width and --height >= 32")
    names = write_set(Path(args.out), args.videos, args.frames, args.width, args.height)
    print(f"wrote {len(names)} videos of {args.frames} frames to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
