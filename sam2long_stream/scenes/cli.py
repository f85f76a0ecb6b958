"""`sam2long-stream scenes`: write a seeded DAVIS-format set of synthetic scenes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sam2long_stream.limits import MAX_SEED
from sam2long_stream.scenes.davis import write_davis
from sam2long_stream.scenes.scene import HELD_OUT_SEED_START
from sam2long_stream.usage import UsageParser


def parse_args(argv: Sequence[str], prog: str) -> argparse.Namespace:
    p = UsageParser(
        prog=prog,
        description="Write synthetic long-tracking scenes (occlusions, look-alike "
        "distractors, exits and re-entries) as a DAVIS-format folder with exact ground "
        "truth and each video's events in events.json.",
    )
    p.add_argument("--out", required=True, help="folder to write (DAVIS layout)")
    p.add_argument("--videos", type=int, default=16, help="number of videos (default 16)")
    p.add_argument(
        "--first-seed",
        type=int,
        default=HELD_OUT_SEED_START,
        help=f"seed of the first video; the next ones follow (default {HELD_OUT_SEED_START}:"
        " held out, training never draws seeds this high)",
    )
    p.add_argument("--frames", type=int, default=80, help="frames per video (default 80)")
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--height", type=int, default=144)
    p.add_argument("--set", default="val", help="name of the ImageSets/2017 list (default val)")
    args = p.parse_args(argv)
    if args.videos < 1 or args.frames < 2 or min(args.width, args.height) < 32:
        p.error("need --videos >= 1, --frames >= 2, --width and --height >= 32")
    if args.width > 4096 or args.height > 4096:
        p.error("--width and --height must be at most 4096")
    if not 0 <= args.first_seed <= MAX_SEED - args.videos:
        p.error(f"--first-seed must be in 0..{MAX_SEED - args.videos}, got {args.first_seed}")
    return args


def main(argv: Sequence[str] | None = None, prog: str = "sam2long-stream scenes") -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv), prog)
    seeds = list(range(args.first_seed, args.first_seed + args.videos))
    try:
        write_davis(args.out, seeds, args.width, args.height, args.frames, args.set, log=print)
    except OSError as e:
        print(f"{prog}: error: cannot write {args.out}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"wrote {args.videos} videos to {args.out}")
    return 0
