"""Hostile input (issue #20): replies are the truth, sizes have one rule, resources have
limits. A real node (ZeroMQ on 127.0.0.1, synthetic and file sources) with the engine
double under the real tracker, so every test stays cheap on a CPU."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sam2long_stream import Tracker, TrackerConfig
from sam2long_stream.control import ControlClient
from sam2long_stream.limits import MAX_FPS, MAX_FRAME_SIDE, quote, shorten
from sam2long_stream.node import Node, NodeConfig
from sam2long_stream.sources import open_source
from sam2long_stream.testing.engine_double import ScriptedEngine
from sam2long_stream.transport import wire
from tests.conftest import wait_for

ANY = "tcp://127.0.0.1:*"
SYNTH = "synthetic://moving-shapes?width=64&height=48&fps=20"

pytestmark = pytest.mark.usefixtures("no_thread_tracebacks")


def double_node(source: str = SYNTH, **fields: Any) -> Node:
    """A one-stream node ("cam0") whose tracker runs on the engine double."""
    config = NodeConfig.one_stream(
        source,
        tracker=TrackerConfig(num_pathways=1),
        pub=ANY,
        control=ANY,
        stream_id="cam0",
        **fields,
    )
    return Node(config, tracker=Tracker(config.tracker, engine=ScriptedEngine(record_views=False)))


@contextlib.contextmanager
def running(node: Node) -> Iterator[ControlClient]:
    node.start()
    assert node.control_endpoint is not None
    client = ControlClient(node.control_endpoint)
    try:
        yield client
    finally:
        client.close()
        node.stop()
        assert node.join(60)
    assert node.error is None, node.error


# --------------------------------------------------------------------------- one size rule


def test_one_size_constant() -> None:
    assert wire.MAX_SIDE == MAX_FRAME_SIDE == 16384


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("width=20000&height=64", "width in 16..16384"),
        ("width=64&height=16385", "height in 16..16384"),
        ("fps=nan", "finite number in (0, 1000]"),
        ("fps=inf", "finite number in (0, 1000]"),
        ("fps=1e9", "finite number in (0, 1000]"),
        ("fps=0", "finite number in (0, 1000]"),
        ("fps=-3", "finite number in (0, 1000]"),
        ("seed=-1", "seed in 0.."),
        ("frames=-1", "frames >= 0"),
        ("width=" + "9" * 500, "width in 16..16384"),
    ],
)
def test_synthetic_parameters_out_of_range_are_refused(query: str, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        open_source(f"synthetic://moving-shapes?{query}")
    assert needle in str(info.value) and len(str(info.value)) < 300


def test_quote_shortens_user_input() -> None:
    assert shorten("x" * 10) == "x" * 10
    assert len(shorten("x" * 10_000)) == 80 and shorten("x" * 10_000).endswith("...")
    assert len(quote("y" * 10_000)) == 80
    assert MAX_FPS == 1000 and not math.isnan(MAX_FPS)


def wide_video(path: Path, width: int = MAX_FRAME_SIDE + 16, height: int = 16) -> Path:
    """A tiny MJPEG file of frames wider than the node accepts."""
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuvj420p"
        for _ in range(2):
            frame = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), "rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_a_file_of_frames_too_large_ends_with_one_clear_error(tmp_path: Path) -> None:
    """Not one failing masks message per frame: the source refuses the first such frame."""
    from sam2long_stream.sources import FileSource

    events: list[Any] = []
    frames: list[Any] = []
    source = FileSource(wide_video(tmp_path / "wide.avi"))
    source.start(frames.append, events.append)
    try:
        wait_for(lambda: any(e.kind == "eos" for e in events), 30, "eos")
    finally:
        source.stop()
    assert frames == []
    assert [e.kind for e in events] == ["error", "eos"]
    assert "exceeds the largest the node accepts (16384 px a side)" in events[0].detail["message"]


# --------------------------------------------------------------------------- replies are the truth


def small_video(path: Path, frames: int = 5) -> Path:
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for k in range(frames):
            rgb = np.full((48, 64, 3), 20 * k, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, "rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_add_stream_of_a_file_that_cannot_work_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    text = tmp_path / "text.mp4"
    text.write_text("hello, this is no video\n" * 20)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(small_video(tmp_path / "whole.mp4").read_bytes()[:48])
    wide = wide_video(tmp_path / "wide.avi")
    with running(double_node()) as client:
        for path, needle in (
            (text, "Invalid data"),
            (truncated, "cannot read"),
            (wide, "exceeds the largest the node accepts"),
        ):
            reply = client.request({"op": "add_stream", "source": str(path), "stream": "bad"})
            assert reply["ok"] is False and needle in reply["error"], reply
            assert "nothing changed" in reply["error"]
            assert client.status()["stream_id"] == "cam0"  # still the one stream
        good = client.add_stream(str(tmp_path / "whole.mp4"), stream="good")
        assert good["started"] is True and good["stream"] == "good"


def test_run_refuses_a_file_that_cannot_work(tmp_path: Path) -> None:
    text = tmp_path / "text.mp4"
    text.write_text("hello, this is no video\n" * 20)
    with pytest.raises(ValueError, match="Invalid data"):
        double_node(str(text))


def test_an_unreachable_camera_is_accepted_and_says_why_it_waits() -> None:
    """Network sources keep the documented accept-and-retry; the state says so."""
    with running(double_node()) as client:
        added = client.add_stream("rtsp://127.0.0.1:1/none", stream="cam9")
        assert added["started"] is True
        status = wait_for(
            lambda: (s := client.status(stream="cam9"))["last_error"] is not None and s,
            30,
            "cam9's last_error",
        )
        assert status["state"] == "waiting"
        assert status["source_state"] in ("error", "reconnecting")
        assert "cannot open rtsp://127.0.0.1:1/none" in status["last_error"]


# --------------------------------------------------------------------------- removal is atomic


def test_after_remove_stream_replies_the_id_is_free() -> None:
    with running(double_node()) as client:
        for _ in range(3):
            assert client.add_stream(SYNTH, stream="cam5")["started"] is True
            gone = client.remove_stream("cam5")
            assert gone["removed"] is True and gone["stream"] == "cam5"
            unknown = client.request({"op": "status", "stream": "cam5"})
            assert unknown["ok"] is False and "unknown stream 'cam5'" in unknown["error"]
        assert client.add_stream(SYNTH, stream="cam5")["started"] is True
        assert client.status(stream="cam5")["stream_id"] == "cam5"


def test_a_slow_removal_says_so_and_every_reply_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    from sam2long_stream.sources import SyntheticSource

    node = double_node(control_wait_s=0.2)
    with running(node) as client:
        client.add_stream(SYNTH, stream="slow")
        original = SyntheticSource.stop

        def slow_stop(self: SyntheticSource) -> None:
            time.sleep(1.5)
            original(self)

        monkeypatch.setattr(SyntheticSource, "stop", slow_stop)
        reply = client.remove_stream("slow")
        assert reply["removed"] is False and reply["removing"] is True, reply
        for req in (
            {"op": "status", "stream": "slow"},
            {"op": "add_stream", "source": SYNTH, "stream": "slow"},
            {"op": "add_object", "box": [1, 1, 9, 9], "stream": "slow"},
            {"op": "remove_stream", "stream": "slow"},
        ):
            answer = client.request(req)
            assert answer["ok"] is False and "being removed" in answer["error"], (req, answer)
        monkeypatch.setattr(SyntheticSource, "stop", original)
        wait_for(
            lambda: client.request({"op": "add_stream", "source": SYNTH, "stream": "slow"})["ok"],
            30,
            "the id to be free",
        )


def test_an_ended_stream_can_be_removed_and_the_summary_lists_removed_ones() -> None:
    node = double_node()
    with running(node) as client:
        short = "synthetic://moving-shapes?width=64&height=48&frames=2&realtime=0"
        client.add_stream(short, stream="short")
        wait_for(lambda: client.status(stream="short")["state"] == "stopped", 30, "short's end")
        assert client.remove_stream("short")["removed"] is True
        client.add_stream(short, stream="short")
        wait_for(lambda: client.status(stream="short")["state"] == "stopped", 30, "its end")
        assert client.remove_stream("short")["removed"] is True
    summary = node.summary()
    assert sorted(summary["streams"]) == ["cam0", "short (removed #2)", "short (removed)"]
    assert summary["streams"]["short (removed)"]["removed"] is True
    assert summary["streams"]["short (removed)"]["frames_processed"] >= 1
    assert summary["streams"]["cam0"]["removed"] is False


# --------------------------------------------------------------------------- limits


def test_max_streams_refuses_more_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="max_streams"):
        NodeConfig.one_stream(SYNTH, max_streams=0)
    with running(double_node(max_streams=3)) as client:
        client.add_stream(SYNTH, stream="b")
        client.add_stream(SYNTH, stream="c")
        refused = client.request({"op": "add_stream", "source": SYNTH, "stream": "d"})
        assert refused["ok"] is False
        assert "max_streams is 3" in refused["error"] and "nothing changed" in refused["error"]
        assert sorted(client.status()["streams"]) == ["b", "c", "cam0"]
        assert client.remove_stream("c")["removed"] is True
        assert client.add_stream(SYNTH, stream="d")["started"] is True


def test_status_and_stop_stay_quick_at_the_cap() -> None:
    """A full node (16 streams here) answers status well within the client's wait and
    stops within the documented stop time; each stream costs one source thread."""
    import threading

    small = "synthetic://moving-shapes?width=32&height=32&fps=5"
    node = double_node(small, max_streams=16)
    before = threading.active_count()
    node.start()
    assert node.control_endpoint is not None
    with ControlClient(node.control_endpoint) as client:
        for k in range(1, 16):
            client.add_stream(small, stream=f"s{k}")
        assert threading.active_count() - before <= 16 + 4  # one source thread per stream
        t0 = time.monotonic()
        status = client.status()
        assert time.monotonic() - t0 < 2.0 and len(status["streams"]) == 16
        assert client.request({"op": "add_stream", "source": small})["ok"] is False
    t0 = time.monotonic()
    node.stop()
    assert node.join(20) and time.monotonic() - t0 < 10
    assert node.error is None


# --------------------------------------------------------------------------- TOML and CLI


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ({"streams": [{"source": ["x"]}]}, "source must be a URL or path (a string), got an array"),
        ({"streams": [{"source": 5}]}, "got an integer: 5"),
        ({"streams": [{"source": ""}]}, "got an empty string"),
        ({"streams": [{"stream_id": "a"}]}, "streams #1 needs a source"),
        ({"source": {"a": 1}}, "source must be a URL or path (a string), got a table"),
        ({"source": "x" * 10_000, "streams": [{"source": "y"}]}, "not both"),
    ],
)
def test_toml_sources_of_the_wrong_type_are_named(table: dict[str, Any], needle: str) -> None:
    from sam2long_stream.settings import parse_node_table

    with pytest.raises(ValueError) as info:
        parse_node_table(table, "node.toml")
    assert needle in str(info.value) and len(str(info.value)) < 300


# --------------------------------------------------------------------------- found by a machine

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sam2long_stream.control.protocol import _OPS  # noqa: E402

FIELDS = (
    "object_id", "box", "points", "labels", "mask", "frame_seq", "stream", "key", "value",
    "source", "prompts", "name", "polygon", "enter", "leave",
)  # fmt: skip
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.text(min_size=3000, max_size=5000, alphabet="ab\u00e9\u4e2d\U0001f600/:?&="),
    st.sampled_from(
        [
            "cam0",
            "keep",
            "synthetic://moving-shapes?width=20000&height=64",
            "synthetic://moving-shapes?fps=nan",
            "synthetic://moving-shapes?width=32&height=32&fps=5",
            "rtsp://user:secret@127.0.0.1:1/x",
            "/etc/passwd",
            "num_pathways",
        ]
    ),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_requests = st.fixed_dictionaries(
    {"op": st.one_of(st.sampled_from(_OPS), st.text(max_size=20), _scalars)},
    optional={f: _values for f in FIELDS} | {"stream": st.sampled_from(["cam0", "x", "keep"])},
)


def test_random_control_requests_get_one_bounded_clear_reply_and_the_node_goes_on() -> None:
    """Every op, every field, random types, sizes and unicode: each request gets one
    reply; an error is one line, short, without secrets; the node keeps tracking its
    untouched stream and holds no more streams or threads than its limits allow."""
    import threading

    node = double_node(max_streams=4)
    with running(node) as client:
        client.add_stream(SYNTH, stream="keep")
        wait_for(lambda: client.status(stream="keep")["frames_processed"] > 0, 30, "keep's frames")
        threads_before = threading.active_count()

        @settings(
            max_examples=150,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(_requests)
        def one(req: dict[str, Any]) -> None:
            if req.get("op") == "remove_stream" and req.get("stream") == "keep":
                req["stream"] = "x"
            reply = client.request(req)
            assert isinstance(reply.get("ok"), bool), reply
            if not reply["ok"]:
                error = reply["error"]
                assert isinstance(error, str) and "\n" not in error
                assert len(error) <= 800, error
                if req.get("source") == "rtsp://user:secret@127.0.0.1:1/x":
                    assert "user:secret@" not in error  # the URL is redacted

        one()
        before = client.status(stream="keep")["frames_processed"]
        wait_for(
            lambda: client.status(stream="keep")["frames_processed"] > before, 30, "more frames"
        )
        assert len(node.stream_ids) <= 4
        assert threading.active_count() <= threads_before + 8


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["width", "height", "fps", "frames", "seed", "realtime", "other"]),
        st.one_of(
            st.integers(min_value=-(10**6), max_value=10**6).map(str),
            st.floats().map(repr),
            st.text(max_size=30),
            st.sampled_from(["nan", "inf", "-inf", "1e9", "0", "16384", "16385", "1e-300"]),
        ),
        max_size=4,
    )
)
def test_random_synthetic_parameters_build_a_bounded_source_or_one_clear_error(
    params: dict[str, str],
) -> None:
    import urllib.parse

    url = "synthetic://moving-shapes?" + urllib.parse.urlencode(params)
    try:
        source = open_source(url)
    except ValueError as exc:
        assert "\n" not in str(exc) and len(str(exc)) <= 400, str(exc)
        return
    assert 16 <= source.width <= MAX_FRAME_SIDE and 16 <= source.height <= MAX_FRAME_SIDE  # type: ignore[attr-defined]
    assert math.isfinite(source.fps) and 0 < source.fps <= MAX_FPS  # type: ignore[attr-defined]
