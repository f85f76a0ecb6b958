"""Running the tracker over a dataset and scoring it: the semi-supervised protocol.

Every object is prompted with its ground-truth mask (``Prompt(mask=...)``) on the first
annotated frame where it appears, then tracked; the frames are scored as `metrics` and
`scoring` define. ``mode="offline"`` (what the SAM2Long paper reports) runs the tracker
with a lag as long as the video, so each frame's mask comes from the pathway that is
best at the end; ``"online"`` takes each mask as the live node publishes it (lag 0).
`score_folder` scores an existing prediction folder instead, without torch.

`run_eval` and `score_folder` return the report (a JSON-able dict) that `report` prints
and draws; ``eval`` and ``train`` both call them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sam2long_stream.evaluation.datasets import (
    EvalError,
    Video,
    check_prediction_root,
    compose_labels,
    list_videos,
    load_video,
    read_split,
    read_video_list,
    select_videos,
    write_binary_png,
    write_palette_png,
)
from sam2long_stream.evaluation.metrics import ObjectScores, summarize
from sam2long_stream.evaluation.report import SAM2, percent, run_label
from sam2long_stream.evaluation.scoring import (
    objects_by_frame,
    per_frame_j,
    score_frame,
    score_prediction,
)
from sam2long_stream.models import BUNDLED_MODEL, resolve_weights
from sam2long_stream.tracker.config import TREE_OFF, Prompt, TrackerConfig

MODES = ("offline", "online")  # --mode both runs the two
Run = int | str  # a pathway count, or SAM2 (SAM 2 itself: the tree off, TREE_OFF)
RANDOM_WEIGHTS_WARNING = (
    "warning: the model has random weights (no --checkpoint for a sam2 model, or "
    "--checkpoint random): these J&F numbers are "
    "meaningless (the run only shows that the pipeline works end to end)"
)


class Predictor(Protocol):
    """What run_eval drives: the Tracker's step/flush (frame_index counts from 0)."""

    def step(self, frame: np.ndarray, prompts: Mapping[int, Prompt] | None = None) -> Any: ...

    def flush(self) -> list[Any]: ...


# (pathway count or SAM2, video) -> a fresh predictor for that video
PredictorFactory = Callable[[Run, Video], Predictor]


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
    iou_threshold: float = TrackerConfig.iou_threshold,
    uncertainty: float = TrackerConfig.uncertainty,
) -> PredictorFactory:
    """The real predictor: a Tracker per video and P, all sharing one model (``engine``,
    built now if not given), with SAM2Long's two thresholds (SAM 2 ignores them).

    Offline uses lag = the video's frame count, so every mask is published from the best
    pathway at the end of the video; online uses lag 0.
    """
    from sam2long_stream.tracker import Tracker

    base: dict[str, Any] = dict(
        model=model, checkpoint=checkpoint, image_size=image_size, device=device, compile=compile
    )
    if engine is None:
        engine = build_engine(**base, seed=seed)

    def make(run: Run, video: Video) -> Predictor:
        lag = len(video.frames) if mode == "offline" else 0
        cfg = TrackerConfig(
            **base,
            seed=seed,
            lag=lag,
            iou_threshold=iou_threshold,
            uncertainty=uncertainty,
            **tracker_options(run),
        )
        tracker = Tracker(cfg, engine=engine)
        return tracker if lag else _LiveOnly(tracker)

    return make


def run_folder(key: str) -> str:
    """Where a run's PNGs go under --out: P3/, P3-online/, sam2/, sam2-online/."""
    return key if key.startswith(SAM2) else f"P{key}"


def tracker_options(run: Run) -> dict[str, Any]:
    """The TrackerConfig fields of a run: SAM2 is the tree off, a count its pathways."""
    return dict(TREE_OFF) if run == SAM2 else {"num_pathways": run}


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
    pathways: Sequence[Run], mode: str, max_frames: int | None, **tracker: Any
) -> None:
    if mode not in (*MODES, "both"):
        raise EvalError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}, both")
    if not pathways:
        raise EvalError("no run given (e.g. --pathways sam2,1,3)")
    if max_frames is not None and max_frames < 1:
        raise EvalError(f"--max-frames must be >= 1, got {max_frames}")
    for p in pathways:
        try:
            TrackerConfig(**tracker_options(p), **tracker)
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


def run_keys(pathways: Sequence[Run], mode: str) -> list[tuple[str, Run, str]]:
    """(results key, run, mode) of each tracker run: key "3" (or "sam2") for one mode,
    "3-online" when both modes run."""
    modes = list(MODES) if mode == "both" else [mode]
    return [(str(p) if len(modes) == 1 else f"{p}-{m}", p, m) for m in modes for p in pathways]


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
        say(f"  pred {name}: {len(video.object_ids)} objects, J&F {percent(jf)}")
    result = summarize(objects)
    result["seconds"] = time.perf_counter() - t_all
    result["frames"] = frames
    return {
        "data": str(Path(data).resolve()),  # tools read the set (events.json) from any folder
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
    model: str = BUNDLED_MODEL,
    checkpoint: str | None = None,
    image_size: int | None = None,
    device: str = "cpu",
    pathways: Sequence[Run] = (SAM2, 1, 3),
    mode: str = "offline",
    max_frames: int | None = None,
    skip_first_and_last: bool = True,
    ignore_void: bool = False,
    compile: bool = False,
    iou_threshold: float = TrackerConfig.iou_threshold,
    uncertainty: float = TrackerConfig.uncertainty,
    predictor: PredictorFactory | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Evaluate every requested run (and mode) on every video; return the report.

    ``pathways`` holds pathway counts P (SAM2Long; P=1 is one pathway with its memory
    selection) and/or ``SAM2`` ("sam2": SAM 2 itself, the tree off), the baseline the
    paper measures its gain against.
    ``mode`` is "offline", "online" or "both"; with "both" the results keys are
    "<P>-offline" and "<P>-online" (``run_keys``), else "<P>". Weights and image size are
    `models.resolve_weights`': no checkpoint is the bundled model's own weights at its
    size, ``"random"`` random weights (sam2's models: 1024 with a checkpoint, 256
    without). ``predictor`` replaces
    the Tracker with any factory (run, video) -> object with Tracker's
    step/flush (used for every mode); it exists so tests can drive the metric pipeline
    with known predictions (an oracle, a shifted oracle). ``compile`` torch.compiles the
    image encoder and memory attention (TrackerConfig.compile); ``iou_threshold`` and
    ``uncertainty`` are SAM2Long's (TrackerConfig's). Raises EvalError for user errors.
    """
    say = log or (lambda _: None)
    checkpoint, image_size = resolve_weights(model, checkpoint, image_size)
    tracker_args: dict[str, Any] = dict(
        model=model, checkpoint=checkpoint, image_size=image_size, device=device, compile=compile
    )
    method = dict(iou_threshold=iou_threshold, uncertainty=uncertainty)
    _check_options(pathways, mode, max_frames, **tracker_args, **method)
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
            factories[m] = tracker_factory(mode=m, engine=engine, **tracker_args, **method)
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
                out=out_root / run_folder(key) if out_root is not None else None,
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
                f"{len(video.object_ids)} objects, {dt:.1f} s, J&F {percent(jf)}"
            )
        results[key] = summarize(objects)
        results[key]["seconds"] = time.perf_counter() - t_all
        results[key]["frames"] = frames
    return {
        "data": str(Path(data).resolve()),  # tools read the set (events.json) from any folder
        "format": fmt,
        "videos": names,
        "config": {
            **tracker_args,
            **method,
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
