#!/usr/bin/env python3
"""Soak test of the whole node: see sam2long_stream/testing/soak.py.

python tools/soak.py --frames 100000 --image-size 256 --checkpoints 1000,10000,100000
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sam2long_stream.testing.soak import main

if __name__ == "__main__":
    sys.exit(main(prog="tools/soak.py"))
