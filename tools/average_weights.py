#!/usr/bin/env python3
"""Average fine-tuned checkpoints into one (a uniform "model soup").

    .venv/bin/python tools/average_weights.py run-a/model.pt run-b/model.pt \\
        --out soup.pt --half-weights

The checkpoints must share an architecture; runs fine-tuned from the same weights are
the ones whose average makes sense. Compare the result with tools/compare_weights.py
before trusting it (docs/training.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sam2long_stream.train.checkpoint import CheckpointError  # noqa: E402
from sam2long_stream.train.soup import write_average  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", type=Path, help="official-format .pt files")
    ap.add_argument("--out", type=Path, required=True, help="the averaged checkpoint")
    ap.add_argument("--half-weights", action="store_true", help="store floats as float16")
    args = ap.parse_args(argv)
    try:
        write_average(args.checkpoints, args.out, args.half_weights)
    except CheckpointError as e:
        print(f"average_weights: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} (the mean of {len(args.checkpoints)} checkpoints)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
