#!/usr/bin/env python3
"""Same as ``sam2long-stream eval``: see sam2long_stream/evaluation/cli.py."""

import sys

from sam2long_stream.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="tools/eval_vos.py"))
