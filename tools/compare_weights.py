#!/usr/bin/env python3
"""Two sets of weights on the same synthetic sets, object by object, from `eval` reports:
how the bundled model's phases were chosen (docs/training.md).

    for w in old new; do for s in val16 val32b; do
      sam2long-stream eval --data $s --checkpoint $w.pt --out eval-$w-$s
    done; done
    .venv/bin/python tools/compare_weights.py --base eval-old-*/results.json \\
        --new eval-new-*/results.json

For each run found in both (SAM 2, P=1, P=3, or --pathways), a Markdown table pooled over
the reports (one per set): J&F of each, the mean per-object difference with its standard
error, and the objects that got better / worse, over all objects and per event kind;
then each side's gain the same way: P=3 against SAM 2 (when the reports have it) and
against P=1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sam2long_stream.evaluation.report import SAM2, run_label  # noqa: E402
from sam2long_stream.scenes import gain  # noqa: E402


def _order(run: str) -> tuple[int, int]:
    """sam2 first, then the pathway counts in order."""
    return (1, int(run)) if run.isdigit() else (0, 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", nargs="+", required=True, help="results.json of the old weights")
    ap.add_argument("--new", nargs="+", required=True, help="results.json of the new weights")
    gain.add_comparison_flags(ap)
    ap.add_argument(
        "--pathways", default=None, help="runs, e.g. sam2,1,3 (default: every run in both)"
    )
    args = ap.parse_args(argv)
    suffix = f"-{args.mode}" if args.mode else ""
    try:
        base = [json.loads(Path(r).read_text()) for r in args.base]
        new = [json.loads(Path(r).read_text()) for r in args.new]
        sets = sorted({str(Path(r["data"]).resolve()) for r in base})
        if sets != sorted({str(Path(r["data"]).resolve()) for r in new}):
            raise ValueError("--base and --new must be reports on the same sets")
        if args.pathways:
            runs = [p.strip() for p in args.pathways.split(",") if p.strip()]
        else:  # result keys are "3", "sam2", "3-online", ...: the runs in both, sam2 first
            found = [{k.split("-")[0] for k in r[0]["results"]} for r in (base, new)]
            runs = sorted(found[0] & found[1], key=_order)
        tables = []
        for run in runs:
            key = f"{run}{suffix}"
            table = gain.compare_reports(base, key, new, key, args.margin)
            text = gain.format_gain(table, "base", "new", videos=False)
            tables.append((f"{run_label(key)}: new against base", text))
        counts = [r for r in runs if r.isdigit()]
        # each side's gain: the largest count against SAM 2 and against the smallest count
        top = counts[-1] if counts else None
        gains = [(b, top) for b in (SAM2, *counts[:1]) if top and b in runs and b != top]
        for baseline, tree in gains:
            lo, hi = f"{baseline}{suffix}", f"{tree}{suffix}"
            for name, reports in (("base", base), ("new", new)):
                table = gain.compare_reports(reports, lo, reports, hi, args.margin)
                text = gain.format_gain(table, run_label(lo), run_label(hi), videos=False)
                tables.append((f"{name}: {run_label(hi)} against {run_label(lo)}", text))
    except (OSError, ValueError, KeyError) as e:
        print(f"compare_weights: error: {e}", file=sys.stderr)
        return 2
    print("\n\n".join(f"{title}\n\n{text}" for title, text in tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
