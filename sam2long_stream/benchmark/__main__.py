"""``python -m sam2long_stream.benchmark``: the same as ``sam2long-stream bench``."""

import sys

from sam2long_stream.benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m sam2long_stream.benchmark"))
