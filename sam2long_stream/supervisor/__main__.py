"""`python -m sam2long_stream.supervisor LAUNCH.toml`: `sam2long-stream launch`."""

import sys

from sam2long_stream.supervisor.command import main

sys.exit(main())
