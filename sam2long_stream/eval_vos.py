"""Evaluate the tracker on a video object segmentation dataset: J, F and J&F per video.

    sam2long-stream eval --data DAVIS --videos bike-packing,blackswan \\
        --checkpoint sam2.1_hiera_tiny.pt --model sam2.1_hiera_t
    sam2long-stream eval --data sav_val --format sav --max-frames 100

Semi-supervised protocol: every object is prompted with its ground-truth mask
(``Prompt(mask=...)``) on the first annotated frame where it appears, then tracked.
Scores follow the DAVIS 2017 toolkit (``sam2long_stream.evaluation``): the prompt frame
and the last annotated frame are not scored, the mean is over objects.

``--mode offline`` (default, what the SAM2Long paper reports) runs the tracker with a lag
as long as the video, so each frame's mask comes from the pathway that is best at the
end (its whole history); ``--mode online`` takes each frame's mask as it is published
live (lag 0). ``--pathways 1,3`` (default) runs P=1 (plain SAM 2) and P=3 side by side.

Predictions are written to ``--out``/P<p>/<video>/<frame>.png (DAVIS palette PNGs of
object ids; SA-V: <video>/<object>/<frame>.png binary PNGs), so the official toolkits
can re-score them; results go to ``--json``. Without ``--checkpoint`` the model has
random weights: the run shows the pipeline works, the numbers mean nothing.

Importable: ``main(argv) -> int`` and ``run_eval(...) -> dict``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sam2long_stream.evaluation import (
    FORMATS,
    EvalError,
    ObjectScores,
    Video,
    compose_labels,
    db_eval_boundary,
    db_eval_iou,
    list_videos,
    load_video,
    scored_frames,
    summarize,
    write_binary_png,
    write_palette_png,
)
from sam2long_stream.tracker.config import Prompt, TrackerConfig

MODES = ("offline", "online")
RANDOM_WEIGHTS_WARNING = (
    "warning: no --checkpoint, so the model has random weights: these J&F numbers are "
    "meaningless (the run only shows that the pipeline works end to end)"
)


class Predictor(Protocol):
    """What run_eval drives: the Tracker's step/flush (frame_index counts from 0)."""

    def step(self, frame: np.ndarray, prompts: Mapping[int, Prompt] | None = None) -> Any: ...

    def flush(self) -> list[Any]: ...


# (num_pathways, video) -> a fresh predictor for that video
PredictorFactory = Callable[[int, Video], Predictor]


def tracker_factory(
    *,
    model: str,
    checkpoint: str | None,
    image_size: int | None,
    device: str,
    mode: str,
    seed: int = 0,
    compile: bool = False,
) -> PredictorFactory:
    """The real predictor: a Tracker per video and P, all sharing one model (built now).

    Offline uses lag = the video's frame count, so every mask is published from the best
    pathway at the end of the video; online uses lag 0.
    """
    from sam2long_stream.tracker import Tracker
    from sam2long_stream.tracker.engine import Sam2Engine

    base: dict[str, Any] = dict(
        model=model, checkpoint=checkpoint, image_size=image_size, device=device, compile=compile
    )
    try:
        engine = Sam2Engine(TrackerConfig(**base, seed=seed))
    except ValueError as e:  # bad checkpoint, device, model: the user's to fix
        raise EvalError(str(e)) from None

    def make(num_pathways: int, video: Video) -> Predictor:
        lag = len(video.frames) if mode == "offline" else 0
        cfg = TrackerConfig(**base, seed=seed, num_pathways=num_pathways, lag=lag)
        tracker = Tracker(cfg, engine=engine)
        return tracker if lag else _LiveOnly(tracker)

    return make


class _LiveOnly:
    """Online (lag 0): every result comes from step(). Tracker.flush() at lag 0 hands the
    last frame out a second time, so it is not asked here."""

    def __init__(self, tracker: Predictor) -> None:
        self.tracker = tracker

    def step(self, frame: np.ndarray, prompts: Mapping[int, Prompt] | None = None) -> Any:
        return self.tracker.step(frame, prompts)

    def flush(self) -> list[Any]:
        return []


def _check_options(
    pathways: Sequence[int], mode: str, max_frames: int | None, **tracker: Any
) -> None:
    if mode not in MODES:
        raise EvalError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if not pathways:
        raise EvalError("no pathway count given (e.g. --pathways 1,3)")
    if max_frames is not None and max_frames < 1:
        raise EvalError(f"--max-frames must be >= 1, got {max_frames}")
    for p in pathways:
        try:
            TrackerConfig(num_pathways=p, **tracker)
        except ValueError as e:
            raise EvalError(str(e)) from None


def evaluate_video(
    video: Video,
    predictor: Predictor,
    *,
    out: Path | None,
    skip_first_and_last: bool = True,
    ignore_void: bool = False,
) -> list[ObjectScores]:
    """Prompt, track and score one video; write its predicted PNGs under ``out``."""
    scored = {
        o: set(scored_frames(sorted(video.annotations[o]), t0, skip_first_and_last))
        for o, t0 in video.prompt_frames.items()
    }
    scores = {o: ObjectScores(video.name, o) for o in video.object_ids}
    names = video.frame_names
    done: set[int] = set()

    def consume(result: Any) -> None:
        t = int(result.frame_index)
        if t in done or not 0 <= t < len(names):
            raise RuntimeError(f"{video.name}: predictor returned frame {t} twice or unknown")
        done.add(t)
        empty = np.zeros((video.height, video.width), dtype=bool)
        masks = {o: np.asarray(result.masks.get(o, empty), dtype=bool) for o in video.object_ids}
        if video.format == "davis":  # scored as the toolkit would read the written PNG
            labels = compose_labels(masks, video.height, video.width)
            masks = {o: labels == o for o in video.object_ids}
            if out is not None:
                write_palette_png(out / video.name / f"{names[t]}.png", labels)
        elif out is not None:
            for o, m in masks.items():
                write_binary_png(out / video.name / video.object_names[o] / f"{names[t]}.png", m)
        todo = [o for o in video.object_ids if t in scored[o]]
        if not todo:
            return
        gt, void = video.read_gt(t, ignore_void)
        for o in todo:
            j = db_eval_iou(gt[o], masks[o], void)
            f = db_eval_boundary(gt[o], masks[o], void)
            scores[o].add(names[t], j, f)

    prompt_at: dict[int, list[int]] = {}
    for o, t0 in video.prompt_frames.items():
        prompt_at.setdefault(t0, []).append(o)
    for t in range(len(video.frames)):
        prompts = None
        if t in prompt_at:
            gt, _ = video.read_gt(t)
            prompts = {o: Prompt(mask=gt[o]) for o in prompt_at[t]}
        result = predictor.step(video.read_frame(t), prompts)
        if result is not None:
            consume(result)
    for result in predictor.flush():
        consume(result)
    if len(done) != len(names):
        missing = sorted(set(range(len(names))) - done)[:5]
        raise RuntimeError(f"{video.name}: no prediction for frames {missing}...")
    return [scores[o] for o in video.object_ids]


def run_eval(
    data: str | Path,
    *,
    fmt: str = "davis",
    videos: Sequence[str] | None = None,
    out: str | Path | None = "eval-out",
    model: str = "sam2.1_hiera_t",
    checkpoint: str | None = None,
    image_size: int | None = None,
    device: str = "cpu",
    pathways: Sequence[int] = (1, 3),
    mode: str = "offline",
    max_frames: int | None = None,
    skip_first_and_last: bool = True,
    ignore_void: bool = False,
    compile: bool = False,
    predictor: PredictorFactory | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Evaluate every requested P on every video; return the report (also for --json).

    ``image_size`` None means 1024 (the trained size) with a checkpoint and 256 without.
    ``predictor`` replaces the Tracker with any factory (num_pathways, video) -> object
    with Tracker's step/flush; it exists so tests can drive the metric pipeline with
    known predictions (an oracle, a shifted oracle). ``compile`` torch.compiles the
    image encoder and memory attention (TrackerConfig.compile). Raises EvalError for user
    errors.
    """
    say = log or (lambda _: None)
    if image_size is None:
        image_size = 1024 if checkpoint else 256
    tracker_args: dict[str, Any] = dict(
        model=model, checkpoint=checkpoint, image_size=image_size, device=device, compile=compile
    )
    _check_options(pathways, mode, max_frames, **tracker_args)
    available = list_videos(data, fmt)
    names = list(videos) if videos else available
    unknown = [v for v in names if v not in available]
    if unknown:
        raise EvalError(
            f"unknown video(s) {', '.join(unknown)}; found {len(available)}: "
            + ", ".join(available[:10])
            + (" ..." if len(available) > 10 else "")
        )
    loaded = [load_video(data, v, fmt, max_frames) for v in names]
    custom = predictor is not None
    if predictor is None:
        if checkpoint is None:
            say(RANDOM_WEIGHTS_WARNING)
        predictor = tracker_factory(mode=mode, **tracker_args)
    out_root = Path(out) if out is not None else None

    results: dict[str, Any] = {}
    for p in pathways:
        objects: list[ObjectScores] = []
        t_all = time.perf_counter()
        frames = 0
        for video in loaded:
            t0 = time.perf_counter()
            objects += evaluate_video(
                video,
                predictor(p, video),
                out=out_root / f"P{p}" if out_root is not None else None,
                skip_first_and_last=skip_first_and_last,
                ignore_void=ignore_void,
            )
            frames += len(video.frames)
            dt = time.perf_counter() - t0
            jf = summarize([o for o in objects if o.video == video.name])["mean"]["J&F"]
            say(
                f"  P={p} {video.name}: {len(video.frames)} frames, "
                f"{len(video.object_ids)} objects, {dt:.1f} s, J&F {_pct(jf)}"
            )
        results[str(p)] = summarize(objects)
        results[str(p)]["seconds"] = time.perf_counter() - t_all
        results[str(p)]["frames"] = frames
    return {
        "data": str(data),
        "format": fmt,
        "videos": names,
        "config": {
            **tracker_args,
            "pathways": list(pathways),
            "mode": mode,
            "max_frames": max_frames,
            "skip_first_and_last": skip_first_and_last,
            "ignore_void": ignore_void,
            "predictor": "custom" if custom else "tracker",
        },
        "weights": (
            "custom predictor" if custom else checkpoint or "random (numbers are meaningless)"
        ),
        "out": str(out_root) if out_root is not None else None,
        "results": results,
    }


# -- report -----------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def format_table(report: Mapping[str, Any]) -> str:
    """Per video and mean J, F, J&F (in %) for each P side by side."""
    ps = list(report["results"])
    header = ["video"] + [f"P={p} {k}" for p in ps for k in ("J", "F", "J&F")]
    rows = []
    for v in report["videos"]:
        row = [v]
        for p in ps:
            s = report["results"][p]["videos"].get(v, {})
            row += [_pct(s.get(k)) for k in ("J", "F", "J&F")]
        rows.append(row)
    n = report["results"][ps[0]]["mean"]["objects"]
    mean = [f"mean ({n} object{'s' if n != 1 else ''})"]
    for p in ps:
        mean += [_pct(report["results"][p]["mean"][k]) for k in ("J", "F", "J&F")]
    table = [header, *rows, mean]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]

    def line(r: list[str]) -> str:
        cells = zip(r, widths, strict=True)
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(cells))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *map(line, rows), rule, line(mean)])


# -- command line -----------------------------------------------------------------------
class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump; main returns 2
        raise _UsageError(message)


def _pathways(text: str) -> list[int]:
    try:
        ps = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,3, got {text!r}") from None
    if not ps:
        raise argparse.ArgumentTypeError("expected at least one pathway count, e.g. 1,3")
    return list(dict.fromkeys(ps))


def parse_args(argv: Sequence[str], prog: str = "sam2long-stream eval") -> argparse.Namespace:
    p = _Parser(prog=prog, description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--data", required=True, help="dataset root folder")
    p.add_argument("--format", choices=FORMATS, default="davis", help="davis (default) or sav")
    p.add_argument("--videos", default=None, help="comma-separated names (default: all)")
    p.add_argument("--out", default="eval-out", help="predicted PNGs go to OUT/P<p>/<video>/")
    p.add_argument("--json", default=None, help="results JSON (default: OUT/results.json)")
    p.add_argument("--model", default="sam2.1_hiera_t")
    p.add_argument("--checkpoint", default=None, help="official .pt; default: random weights")
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="model input size (default: 1024 with a checkpoint, 256 without)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--pathways", type=_pathways, default=[1, 3], help="default: 1,3")
    p.add_argument(
        "--mode",
        choices=MODES,
        default="offline",
        help="offline (default, as the paper reports): masks from the pathway best at the "
        "end of the video; online: each frame's mask as published live",
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


def main(argv: Sequence[str] | None = None, prog: str = "sam2long-stream eval") -> int:
    """Run the evaluation, print the table, write PNGs and JSON. 0 ok, 2 user error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(argv, prog)
    except _UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
    videos = [v.strip() for v in args.videos.split(",") if v.strip()] if args.videos else None
    command = " ".join([prog, shlex.join(argv)]).strip()
    try:
        report = run_eval(
            args.data,
            fmt=args.format,
            videos=videos,
            out=args.out,
            model=args.model,
            checkpoint=args.checkpoint,
            image_size=args.image_size,
            device=args.device,
            pathways=args.pathways,
            mode=args.mode,
            max_frames=args.max_frames,
            skip_first_and_last=not args.all_frames,
            ignore_void=args.ignore_void,
            compile=args.compile,
            log=lambda s: print(s, flush=True),
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
    for p, r in report["results"].items():
        print(f"P={p}: {r['frames']} frames in {r['seconds']:.1f} s")
    scoring = "all annotated frames" if args.all_frames else "prompt and last frames not scored"
    print(f"mode {args.mode}; {scoring}; J, F in %, mean over objects")
    if args.checkpoint is None:
        print(RANDOM_WEIGHTS_WARNING)
    path = Path(args.json) if args.json else Path(args.out) / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    print(f"wrote {path} and predicted PNGs under {args.out}/P<p>/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
