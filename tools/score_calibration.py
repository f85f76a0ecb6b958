#!/usr/bin/env python3
"""Does the model know when it is wrong? Its predicted IoU and object score against the truth.

    .venv/bin/python tools/score_calibration.py heldout [--checkpoint PT] [--pathways 1]

The pathway tree ranks candidates by cumulative log predicted IoU and keeps pathways
alive on the object score, so it can only beat greedy SAM 2 when those two numbers tell
a good mask from a wrong one. This tracks each video of a DAVIS-format set (prompted
with the first annotated mask, lag 0) and compares, per object and frame after the
prompt:

- the published mask's predicted IoU with its true IoU (rank correlation; the mean
  predicted IoU of good masks, true IoU >= 0.5, and of lost ones, true IoU < 0.1);
- the object score (logit > 0: present) with whether the object is visible;
- with --pathways P > 1, the pool itself: how often the published (best) pathway has
  lost a visible object while another pathway of the pool still holds it (a ranking
  miss the scores could fix), and how alike the pool's masks are (mean pairwise IoU:
  near 1, the pathways carry one hypothesis and the tree cannot differ from P=1);
- with P = 1, the decoder's own three candidates on every frame (what the tree forks
  from): how alike they are, and how often one of them held the object when the
  published mask had lost it. None of them: the model never proposed the object, and
  no scoring of candidates could have kept it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sam2long_stream.evaluation.datasets import list_videos, load_video  # noqa: E402
from sam2long_stream.evaluation.metrics import db_eval_iou  # noqa: E402
from sam2long_stream.evaluation.runner import tracker_factory  # noqa: E402
from sam2long_stream.models import add_weight_flags, resolve_weights  # noqa: E402
from sam2long_stream.tracker.config import Prompt  # noqa: E402


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (ties broken by order; the scores here are continuous)."""
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def collect(data: str, pathways: int, **weights: object) -> dict[str, np.ndarray]:
    """Per (object, frame after its prompt) of every video: predicted IoU, object score
    logit, true IoU and whether the object is visible; the best true IoU among the
    pool's masks and the pool's agreement (mean pairwise IoU, 1.0 for one pathway)."""
    make = tracker_factory(device="cpu", mode="online", **weights)  # type: ignore[arg-type]
    rows: list[tuple[float, float, float, bool, float, float]] = []
    for name in list_videos(data, "davis"):
        video = load_video(data, name, "davis")
        tracker = make(pathways, video)
        tap = _CandidateTap(tracker.tracker.engine) if pathways == 1 else None
        first = min(video.prompt_frames.values())
        for t in range(len(video.frames)):
            prompts = None
            if t == first:
                gt, _ = video.read_gt(t)
                prompts = {o: Prompt(mask=gt[o]) for o in video.prompt_frames}
            result = tracker.step(video.read_frame(t), prompts)
            if result is None or t <= first:
                continue
            gt, _ = video.read_gt(t)
            pools = tracker.tracker.pathway_masks()  # the Tracker inside the lag-0 wrapper
            if tap is not None:  # P=1: one row of candidates per object, in tracking order
                order = list(tracker.tracker._objects)
                pools = {o: tap.masks(order.index(o), gt[o].shape) for o in result.scores}
            for o, score in result.scores.items():
                truth = gt[o]
                iou = db_eval_iou(truth, result.masks[o])
                pool = pools.get(o, [result.masks[o]])
                held = max(db_eval_iou(truth, m) for m in pool)
                rows.append(
                    (score.iou, score.object_score_logit, iou, bool(truth.any()), held,
                     _agreement(pool))
                )  # fmt: skip
        print(f"{name}: {len(video.frames)} frames", file=sys.stderr)
    pred, logit, true, visible, held, agree = (np.array(c) for c in zip(*rows, strict=True))
    return {
        "pred": pred,
        "logit": logit,
        "true": true,
        "visible": visible.astype(bool),
        "pool_best": held,
        "pool_agreement": agree,
    }


class _CandidateTap:
    """Keeps the engine's last candidates (P=1: row i is the i-th tracked object's)."""

    def __init__(self, engine: object) -> None:
        self._propose = engine.propose  # type: ignore[attr-defined]
        engine.propose = self  # type: ignore[attr-defined]
        self.last = None

    def __call__(self, features, views):
        self.last = self._propose(features, views)
        return self.last

    def masks(self, row: int, shape: tuple[int, int]) -> list[np.ndarray]:
        with torch.no_grad():
            low = self.last.low_res[row : row + 1].float()  # (1, 3, h, w) logits
            full = F.interpolate(low, size=shape, mode="bilinear", align_corners=False)
            return list((full[0] > 0).cpu().numpy())


def _agreement(masks: list[np.ndarray]) -> float:
    """Mean IoU over the pairs of the pool's masks (1.0 for a single pathway)."""
    pairs = [db_eval_iou(a, b) for i, a in enumerate(masks) for b in masks[i + 1 :]]
    return float(np.mean(pairs)) if pairs else 1.0


def report(s: dict[str, np.ndarray], pathways: int = 1) -> str:
    """A Markdown table of the figures the module docstring names."""
    vis = s["visible"]
    pred, true = s["pred"][vis], s["true"][vis]
    good, lost = true >= 0.5, true < 0.1
    present = s["logit"] > 0
    lines = [
        "| figure | value |",
        "|---|---|",
        f"| (object, frame) pairs, visible / hidden | {vis.sum()} / {(~vis).sum()} |",
        f"| rank correlation, predicted vs true IoU (visible) | {spearman(pred, true):.2f} |",
        f"| mean predicted IoU of good masks (true >= 0.5, n={good.sum()}) "
        f"| {pred[good].mean():.2f} |",
        f"| mean predicted IoU of lost masks (true < 0.1, n={lost.sum()}) "
        f"| {pred[lost].mean() if lost.any() else float('nan'):.2f} |",
        f"| lost masks scored >= 0.8 predicted IoU | {(pred[lost] >= 0.8).mean():.0%} |",
        f"| object score says present, object visible | {present[vis].mean():.0%} |",
        f"| object score says present, object hidden | "
        f"{present[~vis].mean() if (~vis).any() else float('nan'):.0%} |",
    ]
    held = s["pool_best"][vis]
    which = "another pathway" if pathways > 1 else "another of the decoder's 3 candidates"
    whose = "the pool's" if pathways > 1 else "the candidates'"
    lines += [
        f"| lost masks {which} still held (its IoU >= 0.5) "
        f"| {(held[lost] >= 0.5).mean() if lost.any() else float('nan'):.0%} |",
        f"| mean pairwise IoU of {whose} masks (visible) | {s['pool_agreement'][vis].mean():.2f} |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="DAVIS-format folder (e.g. `sam2long-stream scenes` output)")
    ap.add_argument("--pathways", type=int, default=1, help="pathways of the tracker (1)")
    add_weight_flags(ap)
    args = ap.parse_args(argv)
    checkpoint, image_size = resolve_weights(args.model, args.checkpoint, args.image_size)
    stats = collect(
        args.data, args.pathways, model=args.model, checkpoint=checkpoint, image_size=image_size
    )
    print(report(stats, args.pathways))
    return 0


if __name__ == "__main__":
    sys.exit(main())
