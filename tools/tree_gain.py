#!/usr/bin/env python3
"""The tree's gain on a synthetic set, per event kind and per video, from an `eval` report.

    sam2long-stream scenes --out heldout --videos 16 --frames 80
    sam2long-stream eval --data heldout --pathways 1,3 --mode both --out eval-heldout
    .venv/bin/python tools/tree_gain.py eval-heldout/results.json [--mode offline]

Reads the set's events.json (next to its frames, `report["data"]`) and prints a Markdown
table: J&F at P=1 and P=3 and their difference, over all objects, over the objects that
met each event kind, and per video.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sam2long_stream.scenes.gain import format_gain, gain_table, load_events  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", help="results.json of `eval` with P=1 and P=3")
    ap.add_argument("--mode", choices=("offline", "online"), default=None)
    ap.add_argument("--base", type=int, default=1, help="pathways of the baseline (1)")
    ap.add_argument("--tree", type=int, default=3, help="pathways of the tree (3)")
    args = ap.parse_args(argv)
    report = json.loads(Path(args.report).read_text())
    suffix = f"-{args.mode}" if args.mode else ""
    base, tree = f"{args.base}{suffix}", f"{args.tree}{suffix}"
    missing = [k for k in (base, tree) if k not in report["results"]]
    if missing:
        found = ", ".join(report["results"])
        print(f"tree_gain: error: no results {missing} (the report has {found})", file=sys.stderr)
        return 2
    table = gain_table(report, load_events(report["data"]), base, tree)
    print(format_gain(table, f"P={args.base}{suffix}", f"P={args.tree}{suffix}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
