#!/usr/bin/env python3
"""Where J is lost: every scored object-frame of an `eval` run, by what went wrong.

    sam2long-stream eval --data val16 --pathways 1,3 --out eval-val16
    .venv/bin/python tools/error_budget.py eval-val16/results.json [--run 3]

Reads the run's predicted PNGs (`eval` writes them under --out) and the ground truth,
frames scored as `eval` scores them (DAVIS protocol: not the prompt frame nor the last),
and sorts each object-frame into: hidden and left empty (right), hidden with a mask
shown, visible with no mask, visible with the mask on something else (IoU < 0.1), partly
right (0.1-0.7) and good (>= 0.7). For each: its share of the object-frames and the J it
costs, 1 - IoU summed there over all object-frames (an empty ground truth and an empty
mask count IoU 1, as the DAVIS toolkit counts them). The costs add up to 1 - J pooled
over object-frames (eval's J averages per object first, so the two differ slightly).
Several reports (one per set) are pooled.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sam2long_stream.evaluation.datasets import (  # noqa: E402
    EvalError,
    load_video,
    read_pred_davis,
)
from sam2long_stream.evaluation.metrics import db_eval_iou  # noqa: E402
from sam2long_stream.evaluation.runner import run_folder  # noqa: E402
from sam2long_stream.evaluation.scoring import objects_by_frame  # noqa: E402

CATEGORIES = (
    "hidden, left empty",
    "hidden, mask shown",
    "visible, no mask",
    "visible, mask elsewhere (IoU < 0.1)",
    "visible, partly right (IoU 0.1-0.7)",
    "visible, good (IoU >= 0.7)",
)
LOST, GOOD = 0.1, 0.7


def classify(gt, pred) -> tuple[str, float]:
    """(category, J) of one object-frame's predicted mask against its ground truth; J is
    eval's (`db_eval_iou`: 1 when both are empty)."""
    iou = db_eval_iou(gt, pred)
    if not gt.any():
        return CATEGORIES[1] if pred.any() else CATEGORIES[0], iou
    if not pred.any():
        return CATEGORIES[2], iou
    if iou < LOST:
        return CATEGORIES[3], iou
    return (CATEGORIES[4] if iou < GOOD else CATEGORIES[5]), iou


def predictions(path: Path, report: dict, run: str) -> Path:
    """The run's PNG folder: under the report's --out, or beside the report (eval's
    default place for it) when --out was relative to another working folder."""
    for out in (Path(report["out"] or ""), path.parent):
        if (out / run_folder(run)).is_dir():
            return out / run_folder(run)
    raise EvalError(f"{path}: no {run_folder(run)}/ PNG folder under {report['out']} or beside it")


def budget(reports: list[tuple[Path, dict]], run: str) -> tuple[Counter, Counter, int]:
    """(object-frames per category, J lost per category, object-frames) over reports."""
    count: Counter = Counter()
    lost: Counter = Counter()
    total = 0
    for path, report in reports:
        if report.get("format") != "davis":
            raise EvalError("error_budget reads DAVIS-format runs only")
        if run not in report["results"]:
            raise EvalError(f"no run {run!r} in the report (runs: {', '.join(report['results'])})")
        pred_root = predictions(path, report, run)
        skip = report["config"].get("skip_first_and_last", True)
        for name in report["videos"]:
            video = load_video(report["data"], name, "davis", report["config"].get("max_frames"))
            for t, objects in objects_by_frame(video, skip).items():
                gt, _ = video.read_gt(t)
                pred = read_pred_davis(pred_root / name / f"{video.frame_names[t]}.png", video)
                for o in objects:
                    kind, iou = classify(gt[o], pred[o])
                    count[kind] += 1
                    lost[kind] += 1.0 - iou
                    total += 1
    return count, lost, total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", help="results.json of `eval` (with its --out PNGs)")
    ap.add_argument("--run", default="1", help="the run: 1, 3, sam2, 3-online, ... (default 1)")
    args = ap.parse_args(argv)
    try:
        reports = [(Path(r), json.loads(Path(r).read_text())) for r in args.reports]
        count, lost, total = budget(reports, args.run)
    except (OSError, ValueError, KeyError, EvalError) as e:
        print(f"error_budget: {e}", file=sys.stderr)
        return 2
    if not total:
        print("error_budget: no scored object-frames", file=sys.stderr)
        return 2
    print(f"run {args.run}: {total} object-frames, J pooled {1 - sum(lost.values()) / total:.3f}\n")
    print("| object-frame | share | J lost |")
    print("|---|---|---|")
    for kind in CATEGORIES:
        print(f"| {kind} | {count[kind] / total:.1%} | {lost[kind] / total:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
