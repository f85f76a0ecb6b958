"""Evaluate the tracker on a video object segmentation dataset: J, F and J&F per video.

    sam2long-stream eval --data DAVIS --set val \\
        --checkpoint sam2.1_hiera_tiny.pt --model sam2.1_hiera_t
    sam2long-stream eval --data sav_val --format sav --set sav_val --max-frames 100
    sam2long-stream eval --data DAVIS --set val --pred eval-out/P3   # no model

Semi-supervised protocol: every object is prompted with its ground-truth mask
(``Prompt(mask=...)``) on the first annotated frame where it appears, then tracked.
Scores follow the DAVIS 2017 toolkit (``sam2long_stream.evaluation.metrics``): the prompt frame
and the last annotated frame are not scored, the mean is over objects.

``--mode offline`` (default, what the SAM2Long paper reports) runs the tracker with a lag
as long as the video, so each frame's mask comes from the pathway that is best at the
end (its whole history); ``--mode online`` takes each frame's mask as it is published
live (lag 0); ``--mode both`` runs the two. ``--pathways sam2,1,3`` (default) runs SAM 2 itself (the
tree off), one pathway (P=1, with SAM2Long's memory selection) and P=3 side by side.

``--pred DIR`` scores an existing prediction folder instead (``runner.score_folder``): no model
is built and torch is not imported. ``--set NAME`` (DAVIS ImageSets/2017/NAME.txt, SA-V
NAME.txt) and ``--video-list FILE`` choose the videos.

Predictions are written to ``--out``/P<p>/<video>/<frame>.png (SAM 2's to
``--out``/sam2/; DAVIS palette PNGs of object ids; SA-V: <video>/<object>/<frame>.png
binary PNGs), so the official toolkits (and ``--pred``) can re-score them; the report
goes to ``--json`` and a PNG of J per frame per video next to it. Without
``--checkpoint`` the model is the bundled sam2long_mini (trained on synthetic scenes
only); a sam2 model without a checkpoint has random weights: the run shows the pipeline
works, the numbers mean nothing. ``--help`` has the folder layouts, the scoring rules
and examples.

The picture needs matplotlib (``pip install sam2long-stream[plot]``); without it the
scores, the table and the JSON report are written all the same, and a note says so.
Importable: ``main(argv) -> int``; the runs themselves are `runner.run_eval` and
`runner.score_folder`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sam2long_stream.evaluation.datasets import FORMATS, EvalError
from sam2long_stream.evaluation.report import (
    SAM2,
    PlotUnavailable,
    format_table,
    plot_j_per_frame,
    plot_path,
    run_label,
)
from sam2long_stream.evaluation.runner import (
    MODES,
    RANDOM_WEIGHTS_WARNING,
    Run,
    run_eval,
    run_folder,
    score_folder,
)
from sam2long_stream.limits import quote
from sam2long_stream.models import add_weight_flags, resolve_weights
from sam2long_stream.tracker.config import TrackerConfig
from sam2long_stream.usage import RaisingUsageParser, UsageError


# -- command line -----------------------------------------------------------------------
def _pathways(text: str) -> list[Run]:
    runs: list[Run] = []
    for s in (s.strip() for s in text.split(",")):
        if s == SAM2 or s.lstrip("-").isdigit():
            runs.append(s if s == SAM2 else int(s))
        elif s:
            raise argparse.ArgumentTypeError(
                f"expected pathway counts and/or {SAM2}, like {SAM2},1,3; got {quote(text)}"
            )
    if not runs:
        raise argparse.ArgumentTypeError(f"expected at least one run, e.g. {SAM2},1,3")
    return list(dict.fromkeys(runs))


EPILOG = """\
folder layouts (--data):
  DAVIS (--format davis, default), as the DAVIS 2017 toolkit reads it:
    ROOT/JPEGImages/480p/<video>/<frame>.jpg     frames (480p/ may be left out)
    ROOT/Annotations/480p/<video>/<frame>.png    palette PNG, pixel = object id
                                                 (0 background, 255 void)
    ROOT/ImageSets/2017/<set>.txt                video names, one per line (--set)
  SA-V (--format sav), as sam2's sav_dataset/sav_evaluator.py reads it:
    ROOT/JPEGImages_24fps/<video>/<frame>.jpg    frames, 24 fps
    ROOT/Annotations_6fps/<video>/<obj>/<frame>.png
                                                 one binary PNG per object
                                                 (000, 001, ..), every 4th frame
    ROOT/<set>.txt                               e.g. sav_val.txt (--set sav_val)
  Predictions (written to OUT/P<p>/ and OUT/sam2/, or read with --pred DIR) mirror the
  annotations: DAVIS DIR/<video>/<frame>.png id maps (palette or grayscale,
  pixel = object id), SA-V DIR/<video>/<obj>/<frame>.png binary masks. That is
  what sam2's tools/vos_inference.py writes (with --per_obj_png_file for SA-V).

scoring (the DAVIS 2017 semi-supervised protocol; SA-V val/test the same):
  - each object is prompted with its ground-truth mask on the first annotated
    frame where it appears, then tracked;
  - that prompt frame and the video's last annotated frame are not scored
    (--all-frames scores them); only annotated frames are scored (SA-V: 6 fps);
  - J is the IoU, F the boundary F-measure (tolerance 0.008 x image diagonal);
    J&F = (J + F) / 2; 255 pixels count as background (--ignore-void drops them);
  - a video's score is the mean of its objects; the overall mean is over all
    objects of all videos (not over videos), as in both official evaluators.

runs:
  P is the number of memory pathways: P=3 is SAM2Long's tree of 3 pathways,
  P=1 one pathway with SAM2Long's memory selection (frames whose mask scored
  low or absent stay out of memory). "sam2" is SAM 2 itself (the tree off:
  one memory, every frame in it, greedy), the baseline of the paper.
  --pathways sam2,1,3 (default) runs all three on the same videos, so the
  method's gain (P=3 - SAM 2) and the pathways' own (P=3 - P=1) are measured
  in one run.
  --mode offline (default, what the SAM2Long paper reports): each frame's mask
  is taken from the pathway that is best at the end of the video. --mode online:
  each frame's mask as the live node publishes it (no look-ahead). --mode both
  runs the two (results keys "3-offline", "3-online").
  Without --checkpoint: the bundled sam2long_mini (trained on synthetic scenes
  only). A sam2 model without a checkpoint (or --checkpoint random) has random
  weights: the pipeline runs, the numbers mean nothing.

output:
  a table in the terminal, the report JSON (--json, default OUT/results.json;
  with --pred OUT/results-pred.json) and next to it a PNG of J per frame for
  every run, one panel per video (<report>-j.png).

examples:
  # DAVIS 2017 val, P=1 vs P=3, offline, with the tiny SAM 2.1 checkpoint
  sam2long-stream eval --data DAVIS --set val \\
      --checkpoint sam2.1_hiera_tiny.pt --model sam2.1_hiera_t --device cuda
  # online vs offline on two videos
  sam2long-stream eval --data DAVIS --videos bike-packing,blackswan --mode both \\
      --checkpoint sam2.1_hiera_tiny.pt --device cuda
  # SA-V val, the list file as sam2's vos_inference.py takes it
  sam2long-stream eval --data sav_val --format sav --video-list sav_val/sav_val.txt \\
      --checkpoint sam2.1_hiera_tiny.pt --device cuda
  # score existing predictions (no model, no torch), e.g. sam2's or ours
  sam2long-stream eval --data DAVIS --set val --pred eval-out/P3
  sam2long-stream eval --data sav_val --format sav --set sav_val --pred sav_pred_pngs
"""


def parse_args(argv: Sequence[str], prog: str = "sam2long-stream eval") -> argparse.Namespace:
    p = RaisingUsageParser(
        prog=prog,
        description=(__doc__ or "").split("\n\n")[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, metavar="DIR", help="dataset root folder")
    p.add_argument("--format", choices=FORMATS, default="davis", help="davis (default) or sav")
    p.add_argument(
        "--pred",
        default=None,
        metavar="DIR",
        help="score the prediction PNGs in DIR instead of running the model "
        "(model options are then ignored); the report's run is results['pred']",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--videos", default=None, help="comma-separated names (default: all)")
    which.add_argument(
        "--set",
        dest="video_set",
        default=None,
        metavar="NAME",
        help="a split: DAVIS ImageSets/2017/NAME.txt (train, val), SA-V NAME.txt (sav_val)",
    )
    which.add_argument(
        "--video-list",
        default=None,
        metavar="FILE",
        help="text file of video names, one per line (sam2's --video_list_file)",
    )
    p.add_argument(
        "--out", default="eval-out", help="predicted PNGs: OUT/P<p>/<video>/ (SAM 2: OUT/sam2/)"
    )
    p.add_argument(
        "--json",
        default=None,
        help="report JSON (default OUT/results.json; with --pred OUT/results-pred.json); "
        "the J-per-frame PNG goes next to it",
    )
    add_weight_flags(p)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--pathways",
        type=_pathways,
        default=[SAM2, 1, 3],
        help=f"pathway counts and/or {SAM2} (SAM 2 itself, the tree off); default {SAM2},1,3",
    )
    p.add_argument(
        "--iou-threshold",
        type=float,
        default=TrackerConfig.iou_threshold,
        metavar="T",
        help="SAM2Long's memory threshold: a frame whose mask scored a predicted IoU of T "
        f"or less stays out of memory (default {TrackerConfig.iou_threshold:g}, SAM2Long's; "
        "SAM 2 ignores it)",
    )
    p.add_argument(
        "--uncertainty",
        type=float,
        default=TrackerConfig.uncertainty,
        metavar="U",
        help="SAM2Long's pool selection: a frame is certain when an object-score logit "
        f"exceeds U in magnitude (default {TrackerConfig.uncertainty:g}, SAM2Long's)",
    )
    p.add_argument(
        "--mode",
        choices=(*MODES, "both"),
        default="offline",
        help="offline (default, as the paper reports): masks from the pathway best at the "
        "end of the video; online: each frame's mask as published live; both",
    )
    p.add_argument("--max-frames", type=int, default=None, help="use the first N frames")
    p.add_argument(
        "--all-frames",
        action="store_true",
        help="also score the prompt frame and the last frame (not the DAVIS protocol)",
    )
    p.add_argument(
        "--ignore-void",
        action="store_true",
        help="exclude DAVIS 255 pixels from J and F (the toolkit counts them as background)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the image encoder and memory attention (slow first frames)",
    )
    return p.parse_args(argv)


# Options of the model run that mean nothing when --pred scores existing PNGs.
MODEL_OPTIONS = (
    "--checkpoint",
    "--model",
    "--image-size",
    "--device",
    "--pathways",
    "--iou-threshold",
    "--uncertainty",
    "--mode",
    "--compile",
)


def main(argv: Sequence[str] | None = None, prog: str = "sam2long-stream eval") -> int:
    """Run the evaluation (or score --pred), print the table, write the report JSON, its
    J-per-frame PNG and (with the model) the predicted PNGs. 0 ok, 2 user error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(argv, prog)
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
    videos = [v.strip() for v in args.videos.split(",") if v.strip()] if args.videos else None
    command = " ".join([prog, shlex.join(argv)]).strip()
    log = lambda s: print(s, flush=True)  # noqa: E731
    if args.pred is not None:
        ignored = [f for f in MODEL_OPTIONS if any(a == f or a.startswith(f + "=") for a in argv)]
        if ignored:
            print(f"note: --pred scores existing PNGs, so {', '.join(ignored)} do(es) not apply")
    # What both ways take: the data, the videos, the frames and how they are scored.
    common: dict[str, Any] = dict(
        fmt=args.format,
        videos=videos,
        video_set=args.video_set,
        video_list=args.video_list,
        max_frames=args.max_frames,
        skip_first_and_last=not args.all_frames,
        ignore_void=args.ignore_void,
        log=log,
    )
    try:
        if args.pred is not None:
            report = score_folder(args.data, args.pred, **common)
        else:
            report = run_eval(
                args.data,
                out=args.out,
                model=args.model,
                checkpoint=args.checkpoint,
                image_size=args.image_size,
                device=args.device,
                pathways=args.pathways,
                mode=args.mode,
                compile=args.compile,
                iou_threshold=args.iou_threshold,
                uncertainty=args.uncertainty,
                **common,
            )
    except EvalError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    report = {
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **report,
    }
    print(f"\n$ {command}")
    print(format_table(report))
    print()
    for key, r in report["results"].items():
        print(f"{run_label(key)}: {r['frames']} frames in {r['seconds']:.1f} s")
    scoring = "all annotated frames" if args.all_frames else "prompt and last frames not scored"
    what = f"predictions in {args.pred}" if args.pred is not None else f"mode {args.mode}"
    print(f"{what}; {scoring}; J, F in %, mean over objects")
    if args.pred is None and resolve_weights(args.model, args.checkpoint, None)[0] is None:
        print(RANDOM_WEIGHTS_WARNING)
    default = "results-pred.json" if args.pred is not None else "results.json"
    path = Path(args.json) if args.json else Path(args.out) / default
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
        png: Path | None = plot_j_per_frame(report, plot_path(path))
    except PlotUnavailable as e:
        png = None
        print(f"note: no J-per-frame picture: {e}")
    except OSError as e:
        print(f"{prog}: error: cannot write the report: {e}", file=sys.stderr)
        return 2
    folders = ", ".join(f"{run_folder(key)}/" for key in report["results"])
    pngs = f" and predicted PNGs under {args.out}/ ({folders})" if args.pred is None else ""
    print(f"wrote {path}{'' if png is None else f', {png}'}{pngs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
