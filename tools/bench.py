#!/usr/bin/env python3
"""Same as ``sam2long-stream bench``: see the package sam2long_stream/benchmark/."""

import sys

from sam2long_stream.benchmark import main

if __name__ == "__main__":
    sys.exit(main(prog="tools/bench.py"))
