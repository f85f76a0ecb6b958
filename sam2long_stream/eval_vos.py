"""Evaluate the tracker on a video object segmentation dataset: J, F and J&F per video.

    sam2long-stream eval --data DAVIS --set val \\
        --checkpoint sam2.1_hiera_tiny.pt --model sam2.1_hiera_t
    sam2long-stream eval --data sav_val --format sav --set sav_val --max-frames 100
    sam2long-stream eval --data DAVIS --set val --pred eval-out/P3   # no model

Semi-supervised protocol: every object is prompted with its ground-truth mask
(``Prompt(mask=...)``) on the first annotated frame where it appears, then tracked.
Scores follow the DAVIS 2017 toolkit (``sam2long_stream.evaluation``): the prompt frame
and the last annotated frame are not scored, the mean is over objects.

``--mode offline`` (default, what the SAM2Long paper reports) runs the tracker with a lag
as long as the video, so each frame's mask comes from the pathway that is best at the
end (its whole history); ``--mode online`` takes each frame's mask as it is published
live (lag 0); ``--mode both`` runs the two. ``--pathways 1,3`` (default) runs P=1 (plain
SAM 2) and P=3 side by side.

``--pred DIR`` scores an existing prediction folder instead (``score_folder``): no model
is built and torch is not imported. ``--set NAME`` (DAVIS ImageSets/2017/NAME.txt, SA-V
NAME.txt) and ``--video-list FILE`` choose the videos.

Predictions are written to ``--out``/P<p>/<video>/<frame>.png (DAVIS palette PNGs of
object ids; SA-V: <video>/<object>/<frame>.png binary PNGs), so the official toolkits
(and ``--pred``) can re-score them; the report goes to ``--json`` and a PNG of J per
frame per video next to it. Without ``--checkpoint`` the model has random weights: the
run shows the pipeline works, the numbers mean nothing. ``--help`` has the folder
layouts, the scoring rules and examples.

Importable: ``main(argv) -> int``, ``run_eval(...) -> dict``, ``score_folder(...) -> dict``.
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
    check_prediction_root,
    compose_labels,
    list_videos,
    load_video,
    objects_by_frame,
    per_frame_j,
    read_split,
    read_video_list,
    score_frame,
    score_prediction,
    select_videos,
    summarize,
    write_binary_png,
    write_palette_png,
)
from sam2long_stream.tracker.config import Prompt, TrackerConfig

MODES = ("offline", "online")  # --mode both runs the two
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


def build_engine(
    *,
    model: str,
    checkpoint: str | None,
    image_size: int | None,
    device: str,
    compile: bool = False,
    seed: int = 0,
) -> Any:
    """The model, built once and shared by every Tracker of the run (imports torch)."""
    from sam2long_stream.tracker.engine import Sam2Engine

    try:
        config = TrackerConfig(
            model=model,
            checkpoint=checkpoint,
            image_size=image_size,
            device=device,
            compile=compile,
            seed=seed,
        )
        return Sam2Engine(config)
    except ValueError as e:  # bad checkpoint, device, model: the user's to fix
        raise EvalError(str(e)) from None


def tracker_factory(
    *,
    model: str,
    checkpoint: str | None,
    image_size: int | None,
    device: str,
    mode: str,
    seed: int = 0,
    compile: bool = False,
    engine: Any = None,
) -> PredictorFactory:
    """The real predictor: a Tracker per video and P, all sharing one model (``engine``,
    built now if not given).

    Offline uses lag = the video's frame count, so every mask is published from the best
    pathway at the end of the video; online uses lag 0.
    """
    from sam2long_stream.tracker import Tracker

    base: dict[str, Any] = dict(
        model=model, checkpoint=checkpoint, image_size=image_size, device=device, compile=compile
    )
    if engine is None:
        engine = build_engine(**base, seed=seed)

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
    if mode not in (*MODES, "both"):
        raise EvalError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}, both")
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
    todo = objects_by_frame(video, skip_first_and_last)
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
        if t in todo:
            score_frame(video, t, masks, todo[t], scores, ignore_void)

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


def choose_videos(
    data: str | Path,
    fmt: str,
    *,
    videos: Sequence[str] | None = None,
    video_set: str | None = None,
    video_list: str | Path | None = None,
) -> list[str]:
    """The videos to score: ``videos``, a named split (``--set``: DAVIS
    ImageSets/2017/NAME.txt, SA-V NAME.txt) or a list file, else every annotated video.
    At most one of the three may be given; every name must be in the data."""
    given = [x for x in (videos, video_set, video_list) if x]
    if len(given) > 1:
        raise EvalError("give only one of --videos, --set and --video-list")
    available = list_videos(data, fmt)
    if video_set:
        return select_videos(available, read_split(data, fmt, video_set), f"--set {video_set}")
    if video_list:
        return select_videos(available, read_video_list(video_list), str(video_list))
    return select_videos(available, videos, "--videos")


def run_keys(pathways: Sequence[int], mode: str) -> list[tuple[str, int, str]]:
    """(results key, P, mode) of each tracker run: key "3" for one mode, "3-online" when
    both modes run."""
    modes = list(MODES) if mode == "both" else [mode]
    return [(str(p) if len(modes) == 1 else f"{p}-{m}", p, m) for m in modes for p in pathways]


def run_label(key: str) -> str:
    """How a results key reads in tables and plots: "P=3", "P=3 online", "pred"."""
    if key == "pred":
        return "pred"
    return "P=" + key.replace("-", " ")


def score_folder(
    data: str | Path,
    pred: str | Path,
    *,
    fmt: str = "davis",
    videos: Sequence[str] | None = None,
    video_set: str | None = None,
    video_list: str | Path | None = None,
    max_frames: int | None = None,
    skip_first_and_last: bool = True,
    ignore_void: bool = False,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Score an existing prediction folder against the ground truth, without a model.

    The report has one run, ``results["pred"]``, shaped as the ``P=…`` runs of
    ``run_eval``. Imports no torch. Raises EvalError for user errors (missing videos or
    frames, wrong sizes, unknown objects), naming the file.
    """
    say = log or (lambda _: None)
    if max_frames is not None and max_frames < 1:
        raise EvalError(f"--max-frames must be >= 1, got {max_frames}")
    names = choose_videos(data, fmt, videos=videos, video_set=video_set, video_list=video_list)
    pred_root = check_prediction_root(pred, names)
    objects: list[ObjectScores] = []
    per_frame: dict[str, Any] = {}
    frames = 0
    t_all = time.perf_counter()
    for name in names:
        video = load_video(data, name, fmt, max_frames)
        scores = score_prediction(video, pred_root, skip_first_and_last, ignore_void)
        objects += scores
        per_frame[name] = per_frame_j(video, scores)
        frames += len(video.frames)
        jf = summarize(scores)["mean"]["J&F"]
        say(f"  pred {name}: {len(video.object_ids)} objects, J&F {_pct(jf)}")
    result = summarize(objects)
    result["seconds"] = time.perf_counter() - t_all
    result["frames"] = frames
    return {
        "data": str(data),
        "format": fmt,
        "videos": names,
        "config": {
            "pred": str(pred_root),
            "max_frames": max_frames,
            "skip_first_and_last": skip_first_and_last,
            "ignore_void": ignore_void,
        },
        "weights": f"predictions in {pred_root}",
        "out": None,
        "results": {"pred": result},
        "per_frame": {"pred": per_frame},
    }


def run_eval(
    data: str | Path,
    *,
    fmt: str = "davis",
    videos: Sequence[str] | None = None,
    video_set: str | None = None,
    video_list: str | Path | None = None,
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
    """Evaluate every requested P (and mode) on every video; return the report.

    ``mode`` is "offline", "online" or "both"; with "both" the results keys are
    "<P>-offline" and "<P>-online" (``run_keys``), else "<P>". ``image_size`` None means
    1024 (the trained size) with a checkpoint and 256 without. ``predictor`` replaces
    the Tracker with any factory (num_pathways, video) -> object with Tracker's
    step/flush (used for every mode); it exists so tests can drive the metric pipeline
    with known predictions (an oracle, a shifted oracle). ``compile`` torch.compiles the
    image encoder and memory attention (TrackerConfig.compile). Raises EvalError for
    user errors.
    """
    say = log or (lambda _: None)
    if image_size is None:
        image_size = 1024 if checkpoint else 256
    tracker_args: dict[str, Any] = dict(
        model=model, checkpoint=checkpoint, image_size=image_size, device=device, compile=compile
    )
    _check_options(pathways, mode, max_frames, **tracker_args)
    names = choose_videos(data, fmt, videos=videos, video_set=video_set, video_list=video_list)
    loaded = [load_video(data, v, fmt, max_frames) for v in names]
    runs = run_keys(pathways, mode)
    custom = predictor is not None
    factories: dict[str, PredictorFactory] = {}
    if predictor is None:
        if checkpoint is None:
            say(RANDOM_WEIGHTS_WARNING)
        engine = build_engine(**tracker_args)
        for m in dict.fromkeys(m for _, _, m in runs):
            factories[m] = tracker_factory(mode=m, engine=engine, **tracker_args)
    else:
        factories = {m: predictor for _, _, m in runs}
    out_root = Path(out) if out is not None else None

    results: dict[str, Any] = {}
    per_frame: dict[str, Any] = {}
    for key, p, m in runs:
        objects: list[ObjectScores] = []
        per_frame[key] = {}
        t_all = time.perf_counter()
        frames = 0
        for video in loaded:
            t0 = time.perf_counter()
            scores = evaluate_video(
                video,
                factories[m](p, video),
                out=out_root / f"P{key}" if out_root is not None else None,
                skip_first_and_last=skip_first_and_last,
                ignore_void=ignore_void,
            )
            objects += scores
            per_frame[key][video.name] = per_frame_j(video, scores)
            frames += len(video.frames)
            dt = time.perf_counter() - t0
            jf = summarize(scores)["mean"]["J&F"]
            say(
                f"  {run_label(key)} {video.name}: {len(video.frames)} frames, "
                f"{len(video.object_ids)} objects, {dt:.1f} s, J&F {_pct(jf)}"
            )
        results[key] = summarize(objects)
        results[key]["seconds"] = time.perf_counter() - t_all
        results[key]["frames"] = frames
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
        "per_frame": per_frame,
    }


# -- report -----------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def format_table(report: Mapping[str, Any]) -> str:
    """Per video and mean J, F, J&F (in %) for each run (P, mode, pred) side by side."""
    ps = list(report["results"])
    header = ["video"] + [f"{run_label(p)} {k}" for p in ps for k in ("J", "F", "J&F")]
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


# -- the picture: J per frame, one panel per video ----------------------------------------
# Colour-blind-safe (Okabe-Ito): P=1 blue, P=3 vermilion, then green, purple, ...
_COLOURS = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233),
            (230, 159, 0), (0, 0, 0), (240, 228, 66)]  # fmt: skip
_PANEL_W, _PANEL_H = 560, 250
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 16, 30, 40


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # scalable with FreeType (Pillow >= 10.1)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _nice_ticks(lo: int, hi: int, most: int = 8) -> list[int]:
    span = max(hi - lo, 1)
    step = 1
    for base in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        step = base
        if span / base <= most:
            break
    first = -(-lo // step) * step
    return list(range(first, hi + 1, step))


def _text_w(draw: Any, text: str, font: Any) -> int:
    box = draw.textbbox((0, 0), text, font=font)
    return int(box[2] - box[0])


def plot_j_per_frame(report: Mapping[str, Any], path: str | Path) -> Path:
    """Draw J per frame (mean over the objects scored on it) for every run, one panel
    per video, as a PNG (Pillow only): y is J from 0 to 1, x the frame index; a shared
    legend on top names the runs (P=1 is plain SAM 2)."""
    from PIL import Image, ImageDraw

    path = Path(path)
    per_frame = report["per_frame"]
    keys = list(per_frame)
    videos = list(report["videos"])
    cols = 1 if len(videos) <= 3 else 2 if len(videos) <= 20 else 3
    rows = -(-len(videos) // cols)
    font, small, big = _font(13), _font(11), _font(15)
    width = cols * _PANEL_W
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    legend, x, y = [], 10, 34  # (x, y, key): entries wrap onto more lines when needed
    for key in keys:
        mean = report["results"][key]["mean"]["J&F"]
        label = f"{run_label(key)}  (J&F {_pct(mean)})"
        w = 32 + _text_w(measure, label, font) + 24
        if x > 10 and x + w > width:
            x, y = 10, y + 20
        legend.append((x, y, label))
        x += w
    header = y + 24
    img = Image.new("RGB", (width, header + rows * _PANEL_H), "white")
    draw = ImageDraw.Draw(img)
    rule = "prompt and last frames not scored"
    if not report["config"].get("skip_first_and_last", True):
        rule = "all annotated frames scored"
    draw.text((10, 8), f"J per frame (mean over objects; {rule})", fill="black", font=big)
    for i, (x, y, label) in enumerate(legend):
        colour = _COLOURS[i % len(_COLOURS)]
        draw.line([(x, y + 7), (x + 26, y + 7)], fill=colour, width=3)
        draw.text((x + 32, y), label, fill="black", font=font)
    for n, video in enumerate(videos):
        ox = (n % cols) * _PANEL_W
        oy = header + (n // cols) * _PANEL_H
        x0, x1 = ox + _LEFT, ox + _PANEL_W - _RIGHT
        y0, y1 = oy + _TOP, oy + _PANEL_H - _BOTTOM
        draw.text((x0 + 4, oy + 6), video, fill="black", font=big)
        series = [per_frame[k].get(video, {"index": [], "J": []}) for k in keys]
        idx = [t for s in series for t in s["index"]]
        lo, hi = (min(idx), max(idx)) if idx else (0, 1)
        if hi == lo:
            lo, hi = lo - 1, hi + 1
        pad = 0.03 * (hi - lo)  # keep the end points off the axes

        def px(
            t: float, lo: float = lo - pad, hi: float = hi + pad, x0: int = x0, x1: int = x1
        ) -> float:
            return x0 + (t - lo) / (hi - lo) * (x1 - x0)

        def py(j: float, y0: int = y0, y1: int = y1) -> float:
            return y1 - j * (y1 - y0)

        for j in (0.0, 0.25, 0.5, 0.75, 1.0):  # y grid and labels
            gy = py(j)
            draw.line([(x0, gy), (x1, gy)], fill=(225, 225, 225), width=1)
            label = f"{j:g}"
            draw.text(
                (x0 - 6 - _text_w(draw, label, small), gy - 7), label, fill="black", font=small
            )
        for t in _nice_ticks(lo, hi):  # x ticks
            tx = px(t)
            draw.line([(tx, y1), (tx, y1 + 4)], fill="black", width=1)
            label = str(t)
            draw.text(
                (tx - _text_w(draw, label, small) / 2, y1 + 6), label, fill="black", font=small
            )
        draw.line([(x0, y0), (x0, y1), (x1, y1)], fill="black", width=1)  # the axes
        draw.text((ox + 8, (y0 + y1) / 2 - 8), "J", fill="black", font=font)
        draw.text((x1 - _text_w(draw, "frame", small), y1 + 22), "frame", fill="black", font=small)
        if not idx:
            draw.text((x0 + 10, y0 + 10), "no scored frame", fill="gray", font=font)
        for i, s in enumerate(series):
            # Earlier runs are drawn wider, so where runs agree (often P=1 and P=3 on easy
            # frames) every colour still shows at the edges of the later, thinner lines.
            colour = _COLOURS[i % len(_COLOURS)]
            line_w = round(2 + 1.5 * (len(series) - 1 - i))
            pts = [(px(t), py(j)) for t, j in zip(s["index"], s["J"], strict=True)]
            if len(pts) > 1:
                draw.line(pts, fill=colour, width=line_w, joint="curve")
            if len(pts) <= 25:  # sparse (SA-V, short clips): mark the scored frames
                r = line_w / 2 + 1.5
                for cx, cy in pts:
                    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


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
  Predictions (written to OUT/P<p>/, or read with --pred DIR) mirror the
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
  P is the number of memory pathways: P=1 is plain SAM 2 (one memory, greedy),
  P=3 is SAM2Long's tree of 3 pathways. --pathways 1,3 (default) runs both on
  the same videos so the gain is measured in one run.
  --mode offline (default, what the SAM2Long paper reports): each frame's mask
  is taken from the pathway that is best at the end of the video. --mode online:
  each frame's mask as the live node publishes it (no look-ahead). --mode both
  runs the two (results keys "3-offline", "3-online").
  Without --checkpoint the model has random weights: the pipeline runs, the
  numbers mean nothing.

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
    p = _Parser(
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
    p.add_argument("--out", default="eval-out", help="predicted PNGs go to OUT/P<p>/<video>/")
    p.add_argument(
        "--json",
        default=None,
        help="report JSON (default OUT/results.json; with --pred OUT/results-pred.json); "
        "the J-per-frame PNG goes next to it",
    )
    p.add_argument("--model", default="sam2.1_hiera_t")
    p.add_argument("--checkpoint", default=None, help="official .pt; default: random weights")
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="model input size (default: 1024 with a checkpoint, 256 without)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--pathways", type=_pathways, default=[1, 3], help="default: 1,3 (P=1 is plain SAM 2)"
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
    "--mode",
    "--compile",
)


def plot_path(report_path: Path) -> Path:
    """Where the J-per-frame PNG goes: beside the report, ``<stem>-j.png``."""
    return report_path.with_name(f"{report_path.stem}-j.png")


def main(argv: Sequence[str] | None = None, prog: str = "sam2long-stream eval") -> int:
    """Run the evaluation (or score --pred), print the table, write the report JSON, its
    J-per-frame PNG and (with the model) the predicted PNGs. 0 ok, 2 user error."""
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
    log = lambda s: print(s, flush=True)  # noqa: E731
    if args.pred is not None:
        ignored = [f for f in MODEL_OPTIONS if any(a == f or a.startswith(f + "=") for a in argv)]
        if ignored:
            print(f"note: --pred scores existing PNGs, so {', '.join(ignored)} do(es) not apply")
    try:
        if args.pred is not None:
            report = score_folder(
                args.data,
                args.pred,
                fmt=args.format,
                videos=videos,
                video_set=args.video_set,
                video_list=args.video_list,
                max_frames=args.max_frames,
                skip_first_and_last=not args.all_frames,
                ignore_void=args.ignore_void,
                log=log,
            )
        else:
            report = run_eval(
                args.data,
                fmt=args.format,
                videos=videos,
                video_set=args.video_set,
                video_list=args.video_list,
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
                log=log,
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
    if args.pred is None and args.checkpoint is None:
        print(RANDOM_WEIGHTS_WARNING)
    default = "results-pred.json" if args.pred is not None else "results.json"
    path = Path(args.json) if args.json else Path(args.out) / default
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
        png = plot_j_per_frame(report, plot_path(path))
    except OSError as e:
        print(f"{prog}: error: cannot write the report: {e}", file=sys.stderr)
        return 2
    folders = ", ".join(f"P{key}/" for key in report["results"])
    pngs = f" and predicted PNGs under {args.out}/ ({folders})" if args.pred is None else ""
    print(f"wrote {path}, {png}{pngs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
