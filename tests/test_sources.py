"""Sources with real components: gst-rtsp-server over TCP on 127.0.0.1, PyAV decoding."""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from sam2long_stream.sources import (
    FileSource,
    Frame,
    FrameQueue,
    RtspSource,
    SourceEvent,
    SyntheticSource,
    moving_shapes_frame,
    moving_shapes_masks,
    open_source,
)
from sam2long_stream.sources.hwdecode import probe_device
from sam2long_stream.testing import RtspCamera
from tests.conftest import free_port


class Collector:
    """Records what a source delivers, from the source's thread."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.events: list[SourceEvent] = []
        self._cond = threading.Condition()

    def on_frame(self, frame: Frame) -> None:
        with self._cond:
            self.frames.append(frame)
            self._cond.notify_all()

    def on_event(self, event: SourceEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def kinds(self) -> list[str]:
        with self._cond:
            return [e.kind for e in self.events]

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}; "
                    f"events={[(e.kind, e.detail) for e in self.events]}, "
                    f"frames={len(self.frames)}"
                )

    def wait_frames(self, n: int, timeout: float) -> None:
        self.wait(lambda: len(self.frames) >= n, timeout, f"{n} frames")

    def wait_kind(self, kind: str, count: int = 1, timeout: float = 10.0) -> None:
        self.wait(
            lambda: sum(e.kind == kind for e in self.events) >= count,
            timeout,
            f"{count} {kind!r} event(s)",
        )


def assert_seq_contiguous(frames: list[Frame]) -> None:
    seqs = [f.seq for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs


# -- RTSP ---------------------------------------------------------------------------


@pytest.mark.rtsp
def test_rtsp_frames_have_camera_size_and_ordered_seq_pts(rtsp_camera: str) -> None:
    source = open_source(rtsp_camera)
    assert isinstance(source, RtspSource)
    got = Collector()
    source.start(got.on_frame, got.on_event)
    try:
        got.wait_frames(20, timeout=10)
    finally:
        source.stop()
    frames = got.frames[:20]
    assert all(f.rgb.shape == (240, 320, 3) and f.rgb.dtype == np.uint8 for f in frames)
    assert frames[0].seq == 0
    assert_seq_contiguous(frames)
    pts = [f.pts for f in frames if f.pts is not None]
    assert len(pts) >= 15 and all(b > a for a, b in itertools.pairwise(pts)), pts
    assert all(b.capture_time_ns >= a.capture_time_ns for a, b in itertools.pairwise(frames))
    assert frames[-1].rgb.std() > 5  # a picture, not a blank buffer
    connected = next(e for e in got.events if e.kind == "connected")
    assert (connected.detail["width"], connected.detail["height"]) == (320, 240)
    resolution = next(e for e in got.events if e.kind == "resolution")
    assert resolution.detail == {"width": 320, "height": 240}
    assert got.kinds().index("connected") < got.kinds().index("resolution")


@pytest.mark.rtsp
def test_rtsp_reconnects_after_camera_dies_and_returns(
    rtsp_camera_factory: Callable[..., RtspCamera],
) -> None:
    cam = rtsp_camera_factory()
    source = RtspSource(cam.url, timeout_s=2.0, backoff_initial_s=0.1, backoff_max_s=0.5)
    got = Collector()
    source.start(got.on_frame, got.on_event)
    try:
        got.wait_frames(10, timeout=10)
        cam.kill()
        got.wait_kind("disconnected", timeout=3)
        got.wait_kind("reconnecting", timeout=3)
        got.wait_kind("error", timeout=3)  # connection refused while the camera is down
        before = len(got.frames)
        cam.restart()
        restarted = time.monotonic()
        got.wait_kind("connected", count=2, timeout=5)
        got.wait_frames(before + 10, timeout=5)
        assert time.monotonic() - restarted < 5
    finally:
        source.stop()

    kinds = got.kinds()
    first_connected = kinds.index("connected")
    disconnected = kinds.index("disconnected")
    assert first_connected < disconnected < kinds.index("reconnecting", disconnected)
    assert kinds.index("connected", disconnected) > disconnected
    reconnecting = [e.detail for e in got.events if e.kind == "reconnecting"]
    assert reconnecting[0]["attempt"] == 1 and reconnecting[0]["delay_s"] == pytest.approx(0.1)
    assert all(d["delay_s"] <= 0.5 for d in reconnecting)
    assert_seq_contiguous(got.frames)  # seq keeps counting across the reconnect
    for e in got.events:
        if e.kind == "error":
            assert "Traceback" not in e.detail["message"]
            assert len(e.detail["message"]) < 200


@pytest.mark.rtsp
def test_rtsp_notices_a_hung_camera_and_stops_quickly(
    rtsp_camera_factory: Callable[..., RtspCamera],
) -> None:
    cam = rtsp_camera_factory()
    source = RtspSource(cam.url, timeout_s=1.0, backoff_initial_s=0.1, backoff_max_s=0.2)
    got = Collector()
    source.start(got.on_frame, got.on_event)
    try:
        got.wait_frames(5, timeout=10)
        cam.freeze()
        frozen = time.monotonic()
        got.wait_kind("disconnected", timeout=4)
        assert time.monotonic() - frozen < 2.5
        got.wait_kind("reconnecting", timeout=2)
        time.sleep(0.3)  # now blocked opening a connection the frozen camera never answers
    finally:
        began = time.monotonic()
        source.stop()
        stopped_in = time.monotonic() - began
        cam.thaw()
    assert stopped_in < 3.0
    assert not source._thread.is_alive()


@pytest.mark.rtsp
def test_rtsp_nothing_listening_reports_error_without_raising() -> None:
    url = f"rtsp://127.0.0.1:{free_port()}/cam"
    got = Collector()
    source = RtspSource(url, backoff_initial_s=0.1, backoff_max_s=0.2)
    source.start(got.on_frame, got.on_event)
    try:
        got.wait_kind("error", timeout=2)
        got.wait_kind("reconnecting", count=2, timeout=2)
    finally:
        began = time.monotonic()
        source.stop()
        assert time.monotonic() - began < 3.0
    error = next(e for e in got.events if e.kind == "error")
    assert "refused" in error.detail["message"].lower()
    assert "Traceback" not in error.detail["message"]
    assert not got.frames

    once = Collector()
    single = RtspSource(url, reconnect=False)
    single.start(once.on_frame, once.on_event)
    once.wait_kind("eos", timeout=3)
    single._thread.join(timeout=3)
    assert not single._thread.is_alive()
    assert once.kinds() == ["error", "eos"]
    single.stop()


@pytest.mark.rtsp
def test_rtsp_unknown_path_is_an_error(rtsp_camera: str) -> None:
    got = Collector()
    source = RtspSource(rtsp_camera.replace("/cam", "/nope"), reconnect=False)
    source.start(got.on_frame, got.on_event)
    got.wait_kind("eos", timeout=5)  # without reconnect the source ends: error, then eos
    source.stop()
    assert got.kinds() == ["error", "eos"]
    assert "404" in got.events[0].detail["message"]
    assert got.events[-1].detail == {"frames": 0}


@pytest.mark.rtsp
def test_rtsp_stop_with_the_camera_gone_is_fast(
    rtsp_camera_factory: Callable[..., RtspCamera],
) -> None:
    cam = rtsp_camera_factory()
    source = RtspSource(cam.url, backoff_initial_s=0.5)
    got = Collector()
    source.start(got.on_frame, got.on_event)
    got.wait_frames(3, timeout=10)
    cam.kill()
    got.wait_kind("reconnecting", timeout=3)
    began = time.monotonic()
    source.stop()
    source.stop()  # idempotent
    assert time.monotonic() - began < 3.0
    count = len(got.events)
    time.sleep(0.3)
    assert len(got.events) == count  # nothing after stop


# -- open_source ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("foo://x", "unsupported source 'foo://x'"),
        ("http://example.com/a.mp4", "unsupported source"),
        ("", "empty source"),
        ("/definitely/not/here.mp4", "no such file: /definitely/not/here.mp4"),
        ("file:///definitely/not/here.mp4", "no such file"),
        ("rtsp:/one-slash/cam", "no such file: rtsp:/one-slash/cam (expected rtsp://"),
        ("synthetic://bouncing-balls", "expected synthetic://moving-shapes"),
        ("synthetic://moving-shapes?colour=red", "unknown synthetic parameter 'colour'"),
        ("synthetic://moving-shapes?width=wide", "bad value for synthetic parameter width"),
        ("whep+ftp://host/x", "unsupported source"),
    ],
)
def test_open_source_rejects_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        open_source(url)
    assert message in str(info.value)


def test_open_source_builds_sources(tmp_path: Path) -> None:
    syn = open_source("synthetic://moving-shapes?width=64&height=48&fps=30&frames=3&realtime=0")
    assert isinstance(syn, SyntheticSource)
    assert (syn.width, syn.height, syn.fps, syn.frames, syn.realtime) == (64, 48, 30.0, 3, False)
    rtsp = open_source("rtsp://127.0.0.1:1/cam", transport="udp", timeout_s=1.0)
    assert isinstance(rtsp, RtspSource) and rtsp.transport == "udp"
    with pytest.raises(ValueError, match="do not apply to rtsp sources"):
        open_source("rtsp://127.0.0.1:1/cam", loop=True)
    from sam2long_stream.sources.webrtc import WhepSource, WhipSource

    whip = open_source("whip://127.0.0.1:9/whip/cam1")
    assert isinstance(whip, WhipSource) and (whip.port, whip.path) == (9, "/whip/cam1")
    whep = open_source("whep+http://127.0.0.1:9/whep/cam1", idle_timeout_s=1.5)
    assert isinstance(whep, WhepSource) and whep.idle_timeout_s == 1.5
    video = _write_mp4(tmp_path / "a b.mp4", frames=2)
    assert isinstance(open_source(str(video)), FileSource)
    assert isinstance(open_source(video.as_uri()), FileSource)


# -- FrameQueue -----------------------------------------------------------------------


def _frame(seq: int) -> Frame:
    return Frame(rgb=np.zeros((2, 2, 3), np.uint8), seq=seq, pts=seq / 10)


def test_frame_queue_latest_keeps_newest_and_counts_drops() -> None:
    q = FrameQueue("latest")
    for i in range(5):
        assert q.put(_frame(i))
    assert q.dropped == 4
    assert q.get(timeout=0.1).seq == 4
    assert q.get(timeout=0.05) is None
    q.put(_frame(5))
    assert q.get(timeout=0.1).seq == 5
    assert q.dropped == 4  # taken frames are not drops
    q.close()
    assert not q.put(_frame(6))
    assert q.get(timeout=1) is None


def test_frame_queue_latest_with_jitter_frames_keeps_the_newest_in_order() -> None:
    """A jitter buffer: the newest `maxsize` frames wait, oldest first; a burst larger
    than the buffer pushes out the oldest, counted as dropped."""
    q = FrameQueue("latest", maxsize=3)
    for i in range(2):
        assert q.put(_frame(i))
    assert q.dropped == 0 and len(q) == 2  # a burst within the buffer loses nothing
    assert q.get(timeout=0.1).seq == 0
    for i in range(2, 7):
        assert q.put(_frame(i))
    assert q.dropped == 3  # 1, 2, 3 pushed out by 4, 5, 6
    assert [q.get(timeout=0.1).seq for _ in range(3)] == [4, 5, 6]
    assert q.get(timeout=0.05) is None
    with pytest.raises(ValueError, match="at least 1"):
        FrameQueue("latest", maxsize=0)


def test_frame_queue_all_applies_back_pressure_and_close_wakes_put() -> None:
    q = FrameQueue("all", maxsize=2)
    assert q.put(_frame(0)) and q.put(_frame(1))
    assert not q.put(_frame(2), timeout=0.05)  # full
    result: list[bool] = []
    blocked = threading.Thread(target=lambda: result.append(q.put(_frame(2))))
    blocked.start()
    time.sleep(0.1)
    assert blocked.is_alive()  # back-pressure
    assert q.get(timeout=1).seq == 0
    blocked.join(timeout=1)
    assert result == [True]
    assert [q.get(0.1).seq, q.get(0.1).seq] == [1, 2]
    assert q.dropped == 0

    q.put(_frame(3))
    q.put(_frame(4))
    stuck = threading.Thread(target=lambda: result.append(q.put(_frame(5))))
    stuck.start()
    time.sleep(0.05)
    q.close()
    stuck.join(timeout=1)
    assert not stuck.is_alive() and result[-1] is False
    assert [q.get(0.1).seq, q.get(0.1).seq, q.get(0.1)] == [3, 4, None]  # drained, then None
    with pytest.raises(ValueError):
        FrameQueue("newest")


# -- synthetic ------------------------------------------------------------------------


def test_synthetic_frames_are_deterministic_with_ground_truth() -> None:
    a, boxes_a = moving_shapes_frame(17, 160, 120, seed=3)
    b, boxes_b = moving_shapes_frame(17, 160, 120, seed=3)
    assert a.shape == (120, 160, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and boxes_a == boxes_b
    assert not np.array_equal(a, moving_shapes_frame(18, 160, 120, seed=3)[0])
    assert not np.array_equal(a, moving_shapes_frame(17, 160, 120, seed=4)[0])

    occluded = 0
    for index in range(0, 400, 4):
        masks = moving_shapes_masks(index, 160, 120, seed=0)
        _, boxes = moving_shapes_frame(index, 160, 120, seed=0)
        assert set(masks) == {1, 2, 3}
        assert not (masks[1] & masks[2]).any() and not (masks[2] & masks[3]).any()
        for obj_id, mask in masks.items():
            if mask.any():
                ys, xs = np.nonzero(mask)
                assert boxes[obj_id] == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            else:
                assert obj_id not in boxes
        disc_area, square_area = np.pi * (0.12 * 120) ** 2, (2 * 0.11 * 120) ** 2
        occluded += masks[1].sum() < 0.9 * disc_area or masks[2].sum() < 0.9 * square_area
    assert occluded > 0  # shapes do cross each other


def test_synthetic_source_delivers_then_eos() -> None:
    got = Collector()
    source = SyntheticSource(width=64, height=48, fps=30, frames=6, realtime=False)
    source.start(got.on_frame, got.on_event)
    got.wait_kind("eos", timeout=5)
    source.stop()
    assert [f.seq for f in got.frames] == list(range(6))
    assert got.frames[2].pts == pytest.approx(2 / 30)
    assert np.array_equal(got.frames[4].rgb, moving_shapes_frame(4, 64, 48, 0)[0])
    assert got.kinds() == ["connected", "resolution", "eos"]

    paced = Collector()
    live = SyntheticSource(width=64, height=48, fps=20, frames=None, realtime=True)
    live.start(paced.on_frame, paced.on_event)
    time.sleep(0.5)
    live.stop()
    assert 4 <= len(paced.frames) <= 13  # ~20 fps


# -- files ------------------------------------------------------------------------------


def _write_mp4(path: Path, frames: int, width: int = 96, height: int = 64, fps: int = 20) -> Path:
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            rgb, _ = moving_shapes_frame(i, width, height, seed=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_file_source_reads_every_frame_then_eos(tmp_path: Path) -> None:
    video = _write_mp4(tmp_path / "clip.mp4", frames=12)
    got = Collector()
    source = FileSource(video)
    source.start(got.on_frame, got.on_event)
    got.wait_kind("eos", timeout=10)
    source.stop()
    assert [f.seq for f in got.frames] == list(range(12))
    assert all(f.rgb.shape == (64, 96, 3) for f in got.frames)
    pts = [f.pts for f in got.frames]
    assert pts[0] == pytest.approx(0.0) and all(b > a for a, b in itertools.pairwise(pts))
    assert pts[1] - pts[0] == pytest.approx(1 / 20, abs=1e-3)
    expected, _ = moving_shapes_frame(5, 96, 64, seed=1)
    assert np.abs(got.frames[5].rgb.astype(int) - expected).mean() < 12  # lossy, but it
    assert got.kinds() == ["connected", "resolution", "eos"]


def test_file_source_loops_and_paces(tmp_path: Path) -> None:
    video = _write_mp4(tmp_path / "clip.mp4", frames=5)
    got = Collector()
    source = FileSource(video, loop=True)
    source.start(got.on_frame, got.on_event)
    got.wait_frames(12, timeout=10)
    source.stop()
    pts = [f.pts for f in got.frames]
    assert all(b > a for a, b in itertools.pairwise(pts)), pts
    assert_seq_contiguous(got.frames)
    assert "eos" not in got.kinds()

    paced = Collector()
    began = time.monotonic()
    realtime = FileSource(video, realtime=True)
    realtime.start(paced.on_frame, paced.on_event)
    paced.wait_kind("eos", timeout=5)
    realtime.stop()
    assert time.monotonic() - began >= 0.18  # 5 frames at 20 fps: pts 0 .. 0.2 s
    assert len(paced.frames) == 5


def test_file_source_reports_unreadable_file(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-video.mp4"
    bogus.write_bytes(b"this is not a video")
    got = Collector()
    source = FileSource(bogus)
    source.start(got.on_frame, got.on_event)
    got.wait_kind("eos", timeout=5)
    source.stop()
    assert got.kinds() == ["error", "eos"]
    assert "cannot read" in got.events[0].detail["message"]
    assert not got.frames


# -- hardware decode ------------------------------------------------------------------

HWDECODE_LOG = "sam2long_stream.sources.hwdecode"


@functools.cache
def usable_cuda() -> bool:
    """True on a host where a CUDA device really opens (then "cuda" must decode on it)."""
    return probe_device("cuda") is None


def hw_records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == HWDECODE_LOG and r.levelno == level]


@pytest.mark.rtsp
def test_rtsp_hwaccel_cuda_falls_back_once_and_frames_still_flow(
    rtsp_camera_factory: Callable[..., RtspCamera], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=HWDECODE_LOG)
    cam = rtsp_camera_factory()
    source = open_source(cam.url, hwaccel="cuda", backoff_initial_s=0.1, backoff_max_s=0.2)
    assert isinstance(source, RtspSource) and source.hwaccel == "cuda"
    assert source.decode_path is None  # nothing opened yet
    got = Collector()
    source.start(got.on_frame, got.on_event)
    try:
        got.wait_frames(5, timeout=10)
        path_first = source.decode_path
        cam.restart()  # a reconnect must not warn again
        got.wait_kind("connected", count=2, timeout=10)
        got.wait_frames(len(got.frames) + 5, timeout=10)
    finally:
        source.stop()
    assert all(f.rgb.shape == (240, 320, 3) and f.rgb.dtype == np.uint8 for f in got.frames)
    assert got.frames[-1].rgb.std() > 5
    assert_seq_contiguous(got.frames)
    assert "error" not in [e.kind for e in got.events[: got.kinds().index("disconnected")]]
    warnings = hw_records(caplog, logging.WARNING)
    if usable_cuda():  # a GPU host: NVDEC decodes, frames are downloaded to RGB
        assert path_first == source.decode_path == "cuda"
        assert warnings == []
        return
    assert path_first == source.decode_path == "software"
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("hwaccel cuda: no usable cuda device (")
    assert warnings[0].endswith(f"decoding {cam.url} in software")
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize(
    ("hwaccel", "level", "says"),
    [
        ("auto", logging.INFO, "hwaccel auto: decoding "),
        # a real FFmpeg device type this (Linux) build lacks: a warning, not an error
        ("videotoolbox", logging.WARNING, "this FFmpeg build has no videotoolbox support"),
    ],
)
def test_file_hwaccel_auto_and_a_missing_device_type_decode_in_software(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, hwaccel: str, level: int, says: str
) -> None:
    caplog.set_level(logging.INFO, logger=HWDECODE_LOG)
    video = _write_mp4(tmp_path / "clip.mp4", frames=6)
    plain = Collector()
    software = FileSource(video)
    assert software.decode_path == "software"  # "none" is known before opening
    software.start(plain.on_frame, plain.on_event)
    plain.wait_kind("eos", timeout=10)
    software.stop()

    got = Collector()
    source = open_source(str(video), hwaccel=hwaccel.upper())  # names are case-blind
    assert isinstance(source, FileSource) and source.hwaccel == hwaccel
    source.start(got.on_frame, got.on_event)
    got.wait_kind("eos", timeout=10)
    source.stop()
    expect = "cuda" if hwaccel == "auto" and usable_cuda() else "software"
    assert source.decode_path == expect
    assert got.kinds() == ["connected", "resolution", "eos"]
    assert [f.seq for f in got.frames] == list(range(6))
    for a, b in zip(got.frames, plain.frames, strict=True):
        assert a.rgb.shape == (64, 96, 3) and a.rgb.dtype == np.uint8
        if expect == "software":
            assert np.array_equal(a.rgb, b.rgb)  # the very same decode
    lines = [r.getMessage() for r in caplog.records if r.name == HWDECODE_LOG]
    assert len(lines) == 1 and says in lines[0], lines
    assert hw_records(caplog, level) == lines
    if expect == "software":
        assert f"decoding {video} in software" in lines[0]


def test_unknown_hwaccel_is_a_clear_value_error(tmp_path: Path) -> None:
    video = _write_mp4(tmp_path / "clip.mp4", frames=1)
    for build in (
        lambda: RtspSource("rtsp://127.0.0.1:1/cam", hwaccel="nvdia"),
        lambda: FileSource(video, hwaccel="nvdia"),
        lambda: open_source(str(video), hwaccel="nvdia"),
    ):
        with pytest.raises(ValueError, match=r"^unknown hwaccel 'nvdia': expected one of ") as e:
            build()
        assert "none, auto" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="hwaccel must be none, auto or a device type"):
        FileSource(video, hwaccel="")
    # sources that do not decode with FFmpeg refuse the option instead of ignoring it
    with pytest.raises(ValueError, match="hwaccel do not apply to synthetic sources"):
        open_source("synthetic://moving-shapes", hwaccel="auto")

    from sam2long_stream.node import NodeConfig

    with pytest.raises(ValueError, match="unknown hwaccel 'nvdia'"):
        NodeConfig.one_stream(source=str(video), hwaccel="nvdia")
    assert NodeConfig.one_stream(source=str(video), hwaccel=" Auto ").streams[0].hwaccel == "auto"

    from tests.test_cli import assert_one_error_line, cli

    result = cli("run", str(video), "--control", "off", "--hwaccel", "nvdia")
    assert_one_error_line(result, "unknown hwaccel 'nvdia': expected one of none, auto")
    assert result.returncode == 2  # a usage error: the flag names no device


def test_node_status_shows_the_decode_path(tmp_path: Path) -> None:
    from sam2long_stream import Tracker, TrackerConfig
    from sam2long_stream.node import Node, NodeConfig

    video = _write_mp4(tmp_path / "clip.mp4", frames=2)
    tracker = Tracker(TrackerConfig(model="sam2.1_hiera_t", image_size=256))
    config = NodeConfig.one_stream(
        source=str(video), pub="tcp://127.0.0.1:*", control=None, max_frames=1, hwaccel="cuda"
    )
    node = Node(config, tracker=tracker)
    assert node.status()["decode_path"] is None  # not opened yet
    node.run()
    assert node.error is None and node.state == "stopped"
    status = node.status()
    assert status["frames"] == 1
    assert status["decode_path"] == ("cuda" if usable_cuda() else "software")
