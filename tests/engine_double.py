"""The engine double now ships with the package (sam2long_stream/testing/engine_double.py)."""

from sam2long_stream.testing.engine_double import *  # noqa: F403
from sam2long_stream.testing.engine_double import (  # noqa: F401
    CORRECT,
    DISTRACTOR,
    JUNK,
    LOW,
    SIZE,
    ScriptedEngine,
    default_script,
    template,
)
