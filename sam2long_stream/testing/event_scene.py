"""A scripted scene for track events: which template each object's mask takes and
whether it is present, frame by frame, through the real tracker and node.

The engine double (`engine_double.ScriptedEngine`) offers three candidate masks per
frame: ``CORRECT`` (the left half of the frame), ``DISTRACTOR`` (the right half) and
``JUNK`` (the top-left sixteenth). With one pathway the tracker takes the candidate the
script scores best, and the object is present when the script's object logit is
positive. A zone over the right half is then entered and left at scripted frames, and
absences make ``lost`` / ``found``. Used by the tests and by `tools/bench_mqtt.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sam2long_stream.testing.engine_double import CORRECT, DISTRACTOR, JUNK

LEFT, RIGHT, CORNER = CORRECT, DISTRACTOR, JUNK
Step = tuple[int, bool]  # (template, present)

# Frame 0 is the prompt's (present, LEFT). With lost_after "2f" and a zone over the right
# half this gives, in order: new (0), zone_enter (4), zone_leave (10), lost (12),
# found (15), zone_enter (16); the stream's end adds zone_leave and end.
EVENT_SCENE: tuple[Step, ...] = (
    (LEFT, True),  # 0: the prompt
    (LEFT, True),
    (LEFT, True),
    (LEFT, True),
    (RIGHT, True),  # 4: zone_enter
    (RIGHT, True),
    (RIGHT, True),
    (RIGHT, False),  # 7: one absent frame: flicker, no event
    (RIGHT, True),
    (RIGHT, True),
    (LEFT, True),  # 10: zone_leave
    (LEFT, False),
    (LEFT, False),  # 12: lost (two absent frames)
    (LEFT, False),
    (LEFT, False),
    (LEFT, True),  # 15: found
    (RIGHT, True),  # 16: zone_enter
    (RIGHT, True),
    (RIGHT, True),
    (RIGHT, True),
)
EXPECTED_EVENTS = (
    ("new", None, 0),
    ("zone_enter", "right", 4),
    ("zone_leave", "right", 10),
    ("lost", None, 12),
    ("found", None, 15),
    ("zone_enter", "right", 16),
    ("zone_leave", "right", None),  # the stream ended
    ("end", None, None),
)


def right_half(width: int, height: int) -> list[list[float]]:
    """The polygon of the frame's right half (frame pixels)."""
    return [[width / 2, 0.0], [width, 0.0], [width, height], [width / 2, height]]


def script_for(steps: Sequence[Step] | Callable[[int], Step]) -> Callable:
    """An engine-double script that follows ``steps`` (a list by frame, or a function
    of the frame); past the end of a list, its last step repeats."""

    def step(t: int) -> Step:
        if callable(steps):
            return steps(t)
        return steps[min(t, len(steps) - 1)]

    def script(t: int, _state: int) -> tuple[list[float], float]:
        which, present = step(int(t))
        ious = [0.2, 0.2, 0.2]
        ious[which] = 0.9
        return ious, (5.0 if present else -5.0)

    return script


def flicker(t: int) -> Step:
    """Present on even frames, absent on odd ones: with lost_after "1f" every object
    is lost and found on alternate frames (the benchmark's event generator)."""
    return LEFT, t % 2 == 0
