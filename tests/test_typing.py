"""The engine protocol (`sam2long_stream.tracker.protocols.Engine`) at run time.

mypy (`make lint`) checks the signatures: `Sam2Engine` and the test double are both
returned as an `Engine` in statically checked functions. Here: `isinstance` on the
runtime-checkable protocol, against a real `Sam2Engine` (random weights, 64 px) and the
double, and against objects that lack a member.
"""

from __future__ import annotations

from pathlib import Path

from sam2long_stream.tracker.protocols import Engine
from tests.engine_double import ScriptedEngine


def test_sam2_engine_and_the_double_are_engines() -> None:
    from sam2long_stream import TrackerConfig
    from sam2long_stream.tracker.engine import Sam2Engine

    assert isinstance(Sam2Engine(TrackerConfig(image_size=64)), Engine)
    assert isinstance(ScriptedEngine(), Engine)


def test_an_object_without_an_engine_member_is_not_an_engine() -> None:
    class NoMemory(ScriptedEngine):
        encode_memory = None  # type: ignore[assignment]

    assert not isinstance(object(), Engine)
    assert not isinstance(NoMemory(), Engine)


def test_the_package_ships_its_type_hints() -> None:
    import sam2long_stream

    assert (Path(sam2long_stream.__file__).parent / "py.typed").is_file()
