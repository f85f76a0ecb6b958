"""Track events (new, lost, found, end, zone_enter, zone_leave): the pure state machine,
zone geometry and hysteresis, the wire format and its decoder, the settings and control
requests that configure zones, and a scripted scene through the real node (engine
double under the real tracker, ZeroMQ, the subscriber SDK)."""

from __future__ import annotations

import contextlib
import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from sam2long_stream import Prompt, Tracker, TrackerConfig
from sam2long_stream.boxes import mask_box
from sam2long_stream.control import ControlClient, ControlError, parse_request
from sam2long_stream.events import StreamEvents, Zone, parse_lost_after, read_zones
from sam2long_stream.events.zones import rasterise
from sam2long_stream.node import Node, NodeConfig
from sam2long_stream.settings import parse_node_table
from sam2long_stream.testing.engine_double import ScriptedEngine
from sam2long_stream.testing.event_scene import (
    EVENT_SCENE,
    EXPECTED_EVENTS,
    right_half,
    script_for,
)
from sam2long_stream.transport import wire
from sam2long_stream.transport.subscriber import EventMessage, StatusMessage, Subscriber
from tests.conftest import REPO_ROOT

W, H = 64, 48


@dataclass
class Score:
    present: bool
    area: int
    bbox: tuple[int, int, int, int] | None
    iou: float = 0.9


def result(index: int, masks: dict[int, tuple[np.ndarray, bool]]) -> Any:
    scores = {oid: Score(present, int(m.sum()), mask_box(m)) for oid, (m, present) in masks.items()}
    return SimpleNamespace(
        frame_index=index, masks={k: m for k, (m, _) in masks.items()}, scores=scores
    )


def frame(seq: int, t_s: float | None = None) -> Any:
    t = seq / 10 if t_s is None else t_s
    return SimpleNamespace(seq=seq, pts=t, capture_time_ns=int(t * 1e9))


def cols(lo: int, hi: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[10:30, lo:hi] = True
    return m


def kinds(events: list[dict]) -> list[tuple[str, str | None]]:
    return [(e["event"], e["zone"]) for e in events]


# --------------------------------------------------------------------------- zones


def test_rasterise_counts_pixel_centres() -> None:
    z = rasterise([(0, 0), (4, 0), (4, 2), (0, 2)], 5, 6)
    assert z.sum() == 8 and z[:2, :4].all()
    tri = rasterise([(0, 0), (10, 0), (0, 10)], 10, 10)
    assert tri.sum() == 45  # centres strictly under the diagonal
    assert rasterise([(-5, -5), (100, -5), (100, 100), (-5, 100)], 3, 4).all()


@pytest.mark.parametrize(
    "table, needle",
    [
        ({"name": "a", "polygon": [[0, 0], [1, 1]]}, "3..256"),
        ({"name": "a", "polygon": [[0, 0], [1, 1], [2, 2]]}, "no area"),
        ({"name": "a", "polygon": [[0, 0], [1, "x"], [2, 0]]}, "finite numbers"),
        ({"name": "a", "polygon": [[0, 0], [1, float("nan")], [2, 0]]}, "finite numbers"),
        ({"name": "a/b", "polygon": [[0, 0], [1, 0], [0, 1]]}, "zone name"),
        ({"name": "a", "polygon": [[0, 0], [1, 0], [0, 1]], "enter": 0.2, "leave": 0.3}, "leave"),
        ({"name": "a", "polygon": [[0, 0], [1, 0], [0, 1]], "colour": 1}, "unknown zone key"),
        ({"polygon": [[0, 0], [1, 0], [0, 1]]}, "needs a name"),
    ],
)
def test_bad_zones_are_one_clear_sentence(table: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle) as info:
        read_zones([table], "f.toml: streams #1")
    assert "\n" not in str(info.value) and str(info.value).startswith("f.toml: streams #1")


def test_duplicate_zone_names_refused() -> None:
    z = {"name": "door", "polygon": [[0, 0], [1, 0], [0, 1]]}
    with pytest.raises(ValueError, match="given twice: door"):
        read_zones([z, z], "x")


def test_lost_after_parsing() -> None:
    assert parse_lost_after("1.5s").seconds == 1.5
    assert parse_lost_after("2").seconds == 2.0
    assert parse_lost_after("10f").frames == 10
    assert parse_lost_after("3 frames").frames == 3
    for bad in ("", "0f", "1.5f", "-1s", "soon", "1e9s"):
        with pytest.raises(ValueError):
            parse_lost_after(bad)


# --------------------------------------------------------------------------- state machine


def test_new_lost_found_end_in_frames() -> None:
    ev = StreamEvents("cam0", "2f")
    m = cols(0, 10)
    out = ev.frame(result(0, {1: (m, True)}), frame(0))
    assert kinds(out) == [("new", None)] and out[0]["before"] is None
    assert out[0]["after"] == {
        "present": True,
        "box": [0, 10, 9, 29],
        "area": 200,
        "score": 0.9,
        "zones": [],
    }
    assert ev.frame(result(1, {1: (m, False)}), frame(1)) == []  # one absent frame: flicker
    assert ev.frame(result(2, {1: (m, True)}), frame(2)) == []
    assert ev.frame(result(3, {1: (m, False)}), frame(3)) == []
    lost = ev.frame(result(4, {1: (m, False)}), frame(4))
    assert kinds(lost) == [("lost", None)] and lost[0]["after"]["present"] is False
    assert lost[0]["before"]["present"] is True and lost[0]["frame_index"] == 4
    assert ev.frame(result(5, {1: (m, False)}), frame(5)) == []  # lost once
    found = ev.frame(result(6, {1: (m, True)}), frame(6))
    assert kinds(found) == [("found", None)] and found[0]["seq"] == 6
    end = ev.end(None, "reset")
    assert kinds(end) == [("end", None)] and end[0]["reason"] == "reset"
    assert ev.end(None, "reset") == []  # ended once


def test_lost_after_seconds_uses_capture_time() -> None:
    ev = StreamEvents("cam0", "1s")
    m = cols(0, 10)
    ev.frame(result(0, {1: (m, True)}), frame(0, 0.0))
    assert ev.frame(result(1, {1: (m, False)}), frame(1, 1.0)) == []
    assert ev.frame(result(2, {1: (m, False)}), frame(2, 1.9)) == []
    assert kinds(ev.frame(result(3, {1: (m, False)}), frame(3, 2.0))) == [("lost", None)]


def test_never_present_object_has_no_events() -> None:
    ev = StreamEvents("cam0", "1f")
    m = cols(0, 10)
    for i in range(3):
        assert ev.frame(result(i, {1: (m, False)}), frame(i)) == []
    assert ev.end([1], "removed") == []


def test_zone_hysteresis_does_not_flap() -> None:
    """Enter at >= 0.5 of the mask inside, leave below 0.25: fractions between the two
    thresholds change nothing, whichever side they come from."""
    zone = Zone("right", tuple(map(tuple, right_half(W, H))), enter=0.5, leave=0.25)
    ev = StreamEvents("cam0", "5f", [zone])
    seen: list[tuple[str, str | None]] = []
    # fraction inside the right half (x >= 32) of a 20-column mask
    for i, lo in enumerate([0, 26, 22, 32, 26, 28, 25, 20, 27, 22, 10]):
        fr = max(0, lo + 20 - 32) / 20
        out = ev.frame(result(i, {1: (cols(lo, lo + 20), True)}), frame(i))
        seen += kinds(out)
        assert all(
            e["after"]["zones"] == (["right"] if e["event"] == "zone_enter" else [])
            for e in out
            if e["zone"]
        ), (fr, out)
    assert seen == [("new", None), ("zone_enter", "right"), ("zone_leave", "right")]


def test_zone_events_on_lost_end_and_zone_removal() -> None:
    zone = Zone("right", tuple(map(tuple, right_half(W, H))))
    ev = StreamEvents("cam0", "1f", [zone])
    inside = cols(40, 60)
    out = ev.frame(result(0, {1: (inside, True), 2: (inside, True)}), frame(0))
    assert kinds(out) == [("new", None), ("zone_enter", "right")] * 2
    assert out[1]["before"] == out[0]["after"] and out[1]["after"]["zones"] == ["right"]
    out = ev.frame(result(1, {1: (inside, False), 2: (inside, True)}), frame(1))
    assert [(e["object_id"], e["event"], e["reason"]) for e in out] == [
        (1, "zone_leave", "lost"),
        (1, "lost", None),
    ]
    ev.remove_zone("right")
    out = ev.frame(result(2, {1: (inside, False), 2: (inside, True)}), frame(2))
    assert [(e["object_id"], e["event"], e["reason"]) for e in out] == [
        (2, "zone_leave", "zone_removed")
    ]
    ev.set_zone(zone)
    out = ev.frame(result(3, {1: (inside, False), 2: (inside, True)}), frame(3))
    assert kinds(out) == [("zone_enter", "right")]
    out = ev.end(None, "stream_ended")
    assert [(e["object_id"], e["event"], e["reason"]) for e in out] == [
        (1, "end", "stream_ended"),
        (2, "zone_leave", "stream_ended"),
        (2, "end", "stream_ended"),
    ]
    with pytest.raises(ValueError, match="unknown zone"):
        ev.remove_zone("nope")


def test_object_missing_from_result_is_ended() -> None:
    ev = StreamEvents("cam0", "1f")
    ev.frame(result(0, {1: (cols(0, 10), True)}), frame(0))
    out = ev.frame(result(1, {}), frame(1))
    assert kinds(out) == [("end", None)] and out[0]["reason"] == "removed"


# --------------------------------------------------------------------------- wire format


def test_event_wire_round_trip_and_validation() -> None:
    ev = StreamEvents("door", "1f")
    (event,) = ev.frame(result(7, {3: (cols(0, 10), True)}), frame(9))
    parts = wire.encode_event("door", event, event_seq=4)
    assert parts[0] == b"events/door"
    msg = wire.decode(parts)
    assert isinstance(msg, EventMessage)
    assert (msg.event, msg.object_id, msg.event_seq, msg.seq, msg.frame_index) == (
        "new",
        3,
        4,
        9,
        7,
    )
    assert msg.after["area"] == 200 and msg.before is None and msg.stream_id == "door"
    header = wire.loads_json(parts[1])
    for broken in (
        {**header, "after": {"present": True}},
        {**header, "object_id": -1},
        {**header, "event": "Not A Word"},
        {**header, "zone": 3},
    ):
        with pytest.raises(wire.WireFormatError):
            wire.decode([parts[0], wire.dumps_json(broken)])
    with pytest.raises(wire.WireFormatError, match="does not match"):
        wire.decode([b"events/cam0", parts[1]])
    unknown_kind = wire.decode([parts[0], wire.dumps_json({**header, "event": "loitering"})])
    assert isinstance(unknown_kind, EventMessage)  # readers accept kinds they do not know


# --------------------------------------------------------------------------- configuration


def test_toml_zones_per_stream_and_top_level() -> None:
    data = {
        "zones": [{"name": "all", "polygon": [[0, 0], [10, 0], [10, 10]]}],
        "lost_after": "3f",
        "streams": [
            {"source": "a.mp4"},
            {
                "source": "b.mp4",
                "lost_after": "0.5s",
                "zones": [{"name": "door", "polygon": [[0, 0], [5, 0], [5, 5]], "enter": 0.8}],
            },
        ],
    }
    file = parse_node_table(data, "n.toml")
    assert [z.name for z in file.values["zones"]] == ["all"]
    assert [z.name for z in file.streams[1][0]["zones"]] == ["door"]
    assert file.streams[1][0]["zones"][0].enter == 0.8
    with pytest.raises(ValueError, match=r"n.toml: streams #1: lost_after: lost_after"):
        parse_node_table({"streams": [{"source": "a", "lost_after": "soon"}]}, "n.toml")


def test_cli_bad_zone_polygon_is_one_line(tmp_path) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text(
        'source = "synthetic://moving-shapes"\n'
        '[[zones]]\nname = "door"\npolygon = [[0, 0], [10, 10], [20, 20]]\n'
    )
    run = subprocess.run(
        [sys.executable, "-m", "sam2long_stream.cli", "run", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert run.returncode == 2, run.stderr  # a bad config is a usage error (exit 2)
    lines = run.stderr.strip().splitlines()
    assert lines == [
        f"sam2long-stream: error: {cfg}: zone #1: zone door: polygon encloses no area "
        "(its points are on one line)"
    ], run.stderr


def test_control_zone_requests_parse() -> None:
    req = parse_request(
        {"op": "add_zone", "name": "door", "polygon": [[0, 0], [9, 0], [9, 9]], "stream": "a"}
    )
    assert req.zone.name == "door" and req.stream == "a"  # type: ignore[union-attr]
    with pytest.raises(ControlError, match="no area"):
        parse_request({"op": "add_zone", "name": "d", "polygon": [[0, 0], [1, 1], [2, 2]]})
    with pytest.raises(ControlError, match="needs field"):
        parse_request({"op": "add_zone", "name": "d"})
    with pytest.raises(ControlError, match="unknown field"):
        parse_request({"op": "remove_zone", "name": "d", "polygon": []})


# --------------------------------------------------------------------------- through the node


def scene_node(frames: int | None, **fields: Any) -> tuple[Node, str]:
    """A node on a synthetic source (policy all; `frames` frames as fast as possible, or
    endless at 20 fps), object 1 prompted on the left half, the engine double following
    EVENT_SCENE, one pathway."""
    pace = "fps=20" if frames is None else f"frames={frames}&realtime=0"
    config = NodeConfig.one_stream(
        f"synthetic://moving-shapes?width={W}&height={H}&{pace}",
        tracker=TrackerConfig(num_pathways=1),
        prompts={1: Prompt(box=(2.0, 2.0, 20.0, 40.0))},
        pub="tcp://127.0.0.1:*",
        control="tcp://127.0.0.1:*",
        policy="all",
        stream_id="door",
        lost_after="2f",
        **fields,
    )
    tracker = Tracker(config.tracker, engine=ScriptedEngine(script_for(EVENT_SCENE)))
    return Node(config, tracker=tracker), "door"


@contextlib.contextmanager
def started(node: Node) -> Iterator[Subscriber]:
    sub = Subscriber(node.endpoint, topics=("events/", "status/"))
    try:
        assert node.wait_for_subscribers(30, "events/door")
        assert node.wait_for_subscribers(30, "status/door")
        node.start()
        yield sub
    finally:
        node.stop()
        assert node.join(60)
        sub.close()
    assert node.error is None, node.error


def collect(sub: Subscriber, timeout: float = 120.0) -> tuple[list[EventMessage], list]:
    events: list[EventMessage] = []
    status: list[StatusMessage] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = sub.recv(timeout_s=0.5)
        if isinstance(msg, EventMessage):
            events.append(msg)
        elif isinstance(msg, StatusMessage):
            status.append(msg)
            if msg.state == "stopped":
                return events, status
    raise AssertionError(f"no stopped status; events {[e.event for e in events]}")


pytestmark = pytest.mark.usefixtures("no_thread_tracebacks")


def test_scripted_scene_through_the_node_in_order_once_each() -> None:
    zone = Zone("right", tuple(map(tuple, right_half(W, H))))
    node, _ = scene_node(len(EVENT_SCENE), zones=(zone,))
    with started(node) as sub:
        events, status = collect(sub)
    got = [
        (e.event, e.zone, e.frame_index if e.event != "end" and e.reason is None else None)
        for e in events
    ]
    assert got == list(EXPECTED_EVENTS), got
    assert [e.event_seq for e in events] == list(range(len(events)))
    assert sub.missed == 0
    assert events[-1].reason == "stream_ended" and events[-2].reason == "stream_ended"
    for prev, cur in itertools.pairwise(events):
        assert cur.before == prev.after  # one object: each event continues the last
    assert any(s.get("zones") == ["right"] for s in status)  # periodic status names zones


def test_zone_added_and_removed_over_the_control_socket() -> None:
    node, sid = scene_node(None)
    assert node.control_endpoint is not None
    with started(node) as sub, ControlClient(node.control_endpoint) as c:
        with pytest.raises(ValueError, match="encloses no area"):
            c.add_zone("bad", [(0, 0), (1, 1), (2, 2)])
        reply = c.add_zone("right", right_half(W, H), enter=0.6, leave=0.1)
        assert reply["zones"] == ["right"] and reply["stream"] == sid
        deadline = time.monotonic() + 120
        events: list[EventMessage] = []
        while not any(e.event == "zone_enter" for e in events):
            assert time.monotonic() < deadline, [e.event for e in events]
            msg = sub.recv(timeout_s=0.5)
            if isinstance(msg, EventMessage):
                events.append(msg)
        assert c.remove_zone("right")["zones"] == []
        with pytest.raises(ValueError, match="unknown zone"):
            c.remove_zone("right")
        c.remove_object(1)
        while not any(e.event == "end" for e in events):
            assert time.monotonic() < deadline, [e.event for e in events]
            msg = sub.recv(timeout_s=0.5)
            if isinstance(msg, EventMessage):
                events.append(msg)
    tail = [(e.event, e.reason) for e in events if e.event in ("zone_leave", "end")]
    # the zone went (left on the next frame, or by the removal if that came first),
    # then the removal ended the object: the zone is left exactly once
    assert tail[-1] == ("end", "removed")
    assert tail[:-1] in ([("zone_leave", "zone_removed")], [("zone_leave", "removed")]), tail
