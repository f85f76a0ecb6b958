#!/usr/bin/env python3
"""The tree's gain on synthetic sets, per event kind and per video, from `eval` reports.

    sam2long-stream scenes --out heldout --videos 16 --frames 80
    sam2long-stream eval --data heldout --mode both --out eval-heldout
    .venv/bin/python tools/tree_gain.py eval-heldout/results.json [--mode offline]
    .venv/bin/python tools/tree_gain.py eval-heldout/results.json --base sam2  # vs SAM 2

Several reports (one per set) are pooled object by object. Reads each set's events.json
(next to its frames, `report["data"]`) and prints a Markdown table: J&F of the baseline
(P=1; SAM 2 itself with --base sam2) and of P=3, their mean per-object difference with
its standard error, and the objects that got better / worse, over all objects, over the
objects that met each event kind, and per video.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sam2long_stream.evaluation.report import run_label  # noqa: E402
from sam2long_stream.scenes import gain  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", help="results.json of `eval` with P=1 and P=3")
    gain.add_comparison_flags(ap)
    ap.add_argument(
        "--base",
        default="1",
        help="the baseline run: a pathway count (1) or sam2 (SAM 2 itself, the tree off; "
        "the paper's baseline, in reports of eval --pathways sam2,...)",
    )
    ap.add_argument("--tree", default="3", help="the tree's run (3)")
    ap.add_argument("--no-videos", action="store_true", help="leave out the per-video rows")
    args = ap.parse_args(argv)
    suffix = f"-{args.mode}" if args.mode else ""
    base, tree = f"{args.base}{suffix}", f"{args.tree}{suffix}"
    try:
        reports = [json.loads(Path(r).read_text()) for r in args.reports]
        table = gain.compare_reports(reports, base, reports, tree, args.margin)
    except (OSError, ValueError, KeyError) as e:
        print(f"tree_gain: error: {e}", file=sys.stderr)
        return 2
    videos = not args.no_videos
    print(gain.format_gain(table, run_label(base), run_label(tree), videos))
    return 0


if __name__ == "__main__":
    sys.exit(main())
