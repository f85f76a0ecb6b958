"""Sources under hard conditions, with real components: secrets in URLs never shown,
damaged files and failing threads always end in an event, RTSP over UDP against the
real gst-rtsp-server camera, files paced by their timestamps."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from sam2long_stream.sources import (
    FileSource,
    Frame,
    RtspSource,
    SourceEvent,
    SyntheticSource,
    moving_shapes_frame,
    open_source,
)
from sam2long_stream.sources.base import EventCallback, FrameCallback, ThreadedSource
from tests.conftest import RtspCamera, free_port, require_rtsp_camera
from tests.test_sources import Collector

pytestmark = pytest.mark.usefixtures("no_thread_tracebacks")

SECRETS = ("s3cret", "T0K3N", "K3Y")


def assert_no_secret(*texts: object) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in str(text), f"{secret!r} leaked in {text!r}"


def event_texts(got: Collector) -> list[str]:
    return [f"{e.kind} {e.detail}" for e in got.events]


def write_mp4(
    path: Path, frames: int, fps: int = 20, width: int = 160, height: int = 120, **options: str
) -> Path:
    """A real H.264 (or MPEG-4) file of the moving-shapes scene, written by PyAV."""
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            rgb, _ = moving_shapes_frame(i, width, height, seed=3)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def run_to_eos(source: object, timeout: float = 30.0) -> Collector:
    got = Collector()
    source.start(got.on_frame, got.on_event)  # type: ignore[attr-defined]
    try:
        got.wait_kind("eos", timeout=timeout)
    finally:
        source.stop()  # type: ignore[attr-defined]
    return got


# -- secrets ----------------------------------------------------------------------------


def test_rtsp_credentials_and_tokens_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"rtsp://alice:s3cret@127.0.0.1:{free_port()}/cam?token=T0K3N&key=K3Y"
    source = open_source(url, reconnect=False, timeout_s=1.0)
    assert isinstance(source, RtspSource) and source.url == url  # the real one is used
    got = run_to_eos(source, timeout=10)
    assert got.kinds() == ["error", "eos"]
    message = got.events[0].detail["message"]
    assert "refused" in message.lower() and "alice:***@127.0.0.1" in message, message
    assert_no_secret(repr(source), source.label, *event_texts(got), caplog.text)


@pytest.mark.parametrize(
    "secret",
    ["alice:s3cret@", "?token=T0K3N"],  # Basic auth from the URL, or a Bearer token
)
def test_whep_credentials_never_shown(caplog: pytest.LogCaptureFixture, secret: str) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    if secret.endswith("@"):
        url = f"whep+http://{secret}127.0.0.1:{port}/whep/cam?key=K3Y"
    else:
        url = f"whep+http://127.0.0.1:{port}/whep/cam{secret}&key=K3Y"
    source = open_source(url, reconnect=False, connect_timeout_s=5.0)
    got = run_to_eos(source, timeout=20)
    assert got.kinds() == ["error", "eos"]
    message = got.events[0].detail["message"]
    assert "connection refused" in message and "key=***" in message, message
    assert_no_secret(repr(source), *event_texts(got), caplog.text)


def test_whep_token_and_password_together_are_refused() -> None:
    with pytest.raises(ValueError, match="give a token or user:password") as info:
        open_source("whep+http://alice:s3cret@127.0.0.1:9/whep/cam?token=T0K3N")
    assert_no_secret(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://alice:s3cret@cam.example/a.mp4", "'http://alice:***@cam.example/a.mp4'"),
        ("ftp://T0K3N@cam.example/x", "'ftp://***@cam.example/x'"),
        ("foo://cam.example/x?token=T0K3N&size=2", "token=***&size=2"),
        ("whep+ftp://alice:s3cret@h/x", "alice:***@h"),
        ("rtsp://alice:s3cret@[::1/cam", "'rtsp://***'"),  # unparseable: all hidden
        (
            "whep+http://alice:s3cret@127.0.0.1:port/x",
            "bad whep URL whep+http://alice:***@127.0.0.1:port/x",
        ),
    ],
)
def test_open_source_errors_hide_secrets(url: str, shown: str) -> None:
    with pytest.raises(ValueError) as info:
        open_source(url)
    assert shown in str(info.value) and "\n" not in str(info.value)
    assert_no_secret(info.value)


def test_events_and_repr_of_every_source_are_redacted(tmp_path: Path) -> None:
    """A source's own message quoting a URL with a password goes out redacted."""

    class Quoting(ThreadedSource):
        url = "rtsp://bob:s3cret@10.0.0.1/cam?token=T0K3N"

        def _run(self, on_frame: FrameCallback, on_event: EventCallback) -> None:
            on_event(SourceEvent("error", {"message": f"cannot open {self.url}", "n": 1}))

    got = run_to_eos(Quoting())
    assert got.kinds() == ["error", "eos"]
    assert got.events[0].detail == {
        "message": "cannot open rtsp://bob:***@10.0.0.1/cam?token=***",
        "n": 1,
    }
    assert repr(Quoting()) == "<Quoting 'rtsp://bob:***@10.0.0.1/cam?token=***'>"


# -- nothing hangs ------------------------------------------------------------------------


def test_truncated_mp4_is_read_up_to_the_cut_then_ends(tmp_path: Path) -> None:
    full = write_mp4(tmp_path / "full.mp4", frames=50, movflags="+faststart")
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    got = run_to_eos(FileSource(cut))
    assert 0 < len(got.frames) < 50
    assert [f.seq for f in got.frames] == list(range(len(got.frames)))
    kinds = got.kinds()
    assert kinds[:2] == ["connected", "resolution"] and kinds[-1] == "eos"
    assert got.events[-1].detail == {"frames": len(got.frames)}
    for e in got.events:
        if e.kind == "error":  # the cut packet, reported once, one line
            assert "damaged packet" in e.detail["message"] and "\n" not in e.detail["message"]

    # moov at the end (no faststart): the cut file cannot even be opened
    plain = write_mp4(tmp_path / "plain.mp4", frames=20)
    data = plain.read_bytes()
    plain.write_bytes(data[: int(len(data) * 0.6)])
    got = run_to_eos(FileSource(plain))
    assert got.kinds() == ["error", "eos"] and not got.frames
    assert got.events[0].detail["message"].startswith(f"cannot read {plain}: ")


def test_corrupt_bytes_mid_file_are_skipped_and_reported(tmp_path: Path) -> None:
    video = write_mp4(tmp_path / "clip.mp4", frames=50, movflags="+faststart")
    data = bytearray(video.read_bytes())
    for i in range(int(len(data) * 0.45), int(len(data) * 0.55)):
        data[i] = (data[i] * 7 + 13) & 0xFF
    video.write_bytes(bytes(data))
    got = run_to_eos(FileSource(video))
    kinds = got.kinds()
    assert kinds == ["connected", "resolution", "error", "eos"], kinds
    assert "damaged packet(s)" in got.events[2].detail["message"]
    # decoding went on after the damage: frames from the last part of the clip arrived
    assert 25 <= len(got.frames) < 50
    assert max(f.pts for f in got.frames if f.pts is not None) > 2.0  # 50 frames at 20 fps
    assert [f.seq for f in got.frames] == list(range(len(got.frames)))


def test_a_source_whose_run_raises_ends_with_error_then_eos(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(ThreadedSource):
        path = "/videos/cam.mp4"

        def _run(self, on_frame: FrameCallback, on_event: EventCallback) -> None:
            rgb, _ = moving_shapes_frame(0, 32, 32)
            on_event(SourceEvent("connected", {"width": 32, "height": 32}))
            on_frame(Frame(rgb=rgb, seq=0, pts=0.0))
            on_frame(Frame(rgb=rgb, seq=1, pts=0.1))
            raise RuntimeError("bug reading rtsp://bob:s3cret@h/x\nsecond line of detail")

    got = run_to_eos(Broken())
    assert got.kinds() == ["connected", "error", "eos"]
    message = got.events[1].detail["message"]
    assert message == "source /videos/cam.mp4 failed: RuntimeError: bug reading rtsp://bob:***@h/x"
    assert got.events[2].detail == {"frames": 2}
    assert len(got.frames) == 2
    assert "Traceback" in caplog.text  # a bug: the log keeps the traceback for developers
    assert "bob:***@h" in caplog.text
    assert_no_secret(caplog.text)

    class RaisesAfterStop(ThreadedSource):
        def _run(self, on_frame: FrameCallback, on_event: EventCallback) -> None:
            self._stop.wait()
            raise RuntimeError("late")

    quiet = RaisesAfterStop()
    seen = Collector()
    quiet.start(seen.on_frame, seen.on_event)
    quiet.stop()
    assert not quiet._thread.is_alive()  # type: ignore[union-attr]
    assert seen.events == []  # a stop asked for: no error, no eos


def test_node_ends_on_a_truncated_file(tmp_path: Path) -> None:
    """The node acts on the events: a file cut mid-stream ends the run (it used to wait
    forever)."""
    import threading

    from sam2long_stream import Tracker, TrackerConfig
    from sam2long_stream.node import Node, NodeConfig

    full = write_mp4(tmp_path / "full.mp4", frames=20, movflags="+faststart")
    with av.open(str(full)) as container:  # cut inside the 13th packet: frames before it
        packet = [p for p in container.demux(video=0) if p.size][12]
        offset = int(packet.pos) + packet.size // 2
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[:offset])
    tracker = Tracker(TrackerConfig(model="sam2.1_hiera_t", image_size=256))
    node = Node(
        NodeConfig.one_stream(str(cut), pub="tcp://127.0.0.1:*", control=None, policy="all"),
        tracker=tracker,
    )
    runner = threading.Thread(target=node.run, daemon=True)
    runner.start()
    runner.join(timeout=300)  # only reached when the node hangs
    if runner.is_alive():
        node.stop()
        pytest.fail("the node kept waiting after the truncated file ended")
    status = node.status()
    assert node.state == "stopped" and 0 < status["frames"] < 20, status
    assert status["source_state"] == "error"  # the damaged packet was reported


# -- RTSP over UDP --------------------------------------------------------------------------


@pytest.fixture
def udp_camera() -> Iterator[RtspCamera]:
    """The real test camera serving only the UDP lower transport, like cameras that
    refuse interleaved TCP."""
    require_rtsp_camera()
    cam = RtspCamera(protocols="udp")
    cam.start()
    yield cam
    cam.close()


@pytest.mark.rtsp
def test_rtsp_transport_udp_reaches_a_udp_only_camera(
    udp_camera: RtspCamera, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = udp_camera.url.replace("rtsp://", "rtsp://alice:s3cret@")  # the camera ignores it
    # TCP (the default) is refused by such a camera: what users saw before the option
    tcp = run_to_eos(open_source(url, reconnect=False, rtsp_transport="tcp"), timeout=15)
    assert tcp.kinds() == ["error", "eos"] and not tcp.frames
    assert "Protocol not supported" in tcp.events[0].detail["message"]

    source = open_source(url, rtsp_transport="udp", reconnect=False)
    assert isinstance(source, RtspSource) and source.transport == "udp"
    got = Collector()
    source.start(got.on_frame, got.on_event)
    try:
        got.wait_frames(10, timeout=20)
    finally:
        source.stop()
    assert got.kinds()[:2] == ["connected", "resolution"]
    assert got.events[0].detail["url"] == udp_camera.url.replace("rtsp://", "rtsp://alice:***@")
    assert all(f.rgb.shape == (240, 320, 3) for f in got.frames)
    assert got.frames[-1].rgb.std() > 5  # a real picture, not a blank frame
    assert_no_secret(*event_texts(got), *event_texts(tcp), caplog.text)


@pytest.mark.rtsp
def test_rtsp_over_udp_notices_a_dead_or_hung_camera_and_reconnects(
    udp_camera: RtspCamera,
) -> None:
    """Over UDP no media connection closes when the camera dies: the RTSP control
    connection and the read timeout must still end the session."""
    source = open_source(
        udp_camera.url, rtsp_transport="udp", backoff_initial_s=0.1, backoff_max_s=0.5
    )
    got = Collector()
    source.start(got.on_frame, got.on_event)
    try:
        got.wait_frames(10, timeout=20)
        udp_camera.kill()
        got.wait_kind("disconnected", timeout=15)
        udp_camera.start()
        got.wait_kind("connected", count=2, timeout=30)
        got.wait_frames(len(got.frames) + 10, timeout=20)
        udp_camera.freeze()
        got.wait_kind("disconnected", count=2, timeout=15)
        udp_camera.thaw()
    finally:
        udp_camera.thaw()
        source.stop()
    gone = [e.detail["reason"] for e in got.events if e.kind == "disconnected"]
    assert gone[1] == "no data for 2 s", gone
    assert [f.seq for f in got.frames] == list(range(len(got.frames)))
    assert "eos" not in got.kinds()


def test_stream_options_are_taken_by_every_kind(tmp_path: Path) -> None:
    video = write_mp4(tmp_path / "clip.mp4", frames=2)
    rtsp = open_source("rtsp://127.0.0.1:1/cam", rtsp_transport="udp", realtime=True)
    assert isinstance(rtsp, RtspSource) and rtsp.transport == "udp"
    assert open_source("rtsp://127.0.0.1:1/cam").transport == "tcp"  # type: ignore[attr-defined]
    same = open_source("rtsp://127.0.0.1:1/cam", transport="udp", rtsp_transport="udp")
    assert same.transport == "udp"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="disagree"):
        open_source("rtsp://127.0.0.1:1/cam", transport="tcp", rtsp_transport="udp")
    with pytest.raises(ValueError, match="unknown RTSP transport 'http'"):
        open_source(str(video), rtsp_transport="http")

    paced = open_source(str(video), realtime=True, rtsp_transport="udp")
    assert isinstance(paced, FileSource) and paced.realtime is True
    assert open_source(str(video)).realtime is False  # type: ignore[attr-defined]
    syn = open_source("synthetic://moving-shapes?realtime=0", realtime=True)
    assert isinstance(syn, SyntheticSource) and syn.realtime is False  # the URL wins
    assert open_source("synthetic://moving-shapes", realtime=False).realtime is False  # type: ignore[attr-defined]
    whep = open_source("whep+http://127.0.0.1:9/whep/cam1", realtime=True, rtsp_transport="tcp")
    assert type(whep).__name__ == "WhepSource"


# -- files paced by their timestamps ----------------------------------------------------------


def test_file_realtime_delivers_frames_at_their_pts(tmp_path: Path) -> None:
    video = write_mp4(tmp_path / "ten.mp4", frames=10, fps=10)
    timings: dict[bool, tuple[float, list[tuple[float, float]]]] = {}
    for realtime in (True, False):
        arrivals: list[tuple[float, float]] = []
        got = Collector()

        def on_frame(frame: Frame, arrivals: list = arrivals, got: Collector = got) -> None:
            arrivals.append((time.monotonic(), frame.pts))
            got.on_frame(frame)

        source = open_source(str(video), realtime=realtime)
        began = time.monotonic()
        source.start(on_frame, got.on_event)
        got.wait_kind("eos", timeout=30)
        elapsed = time.monotonic() - began
        source.stop()
        assert len(got.frames) == 10
        timings[realtime] = (elapsed, arrivals)
    paced_s, arrivals = timings[True]
    fast_s, _ = timings[False]
    assert paced_s >= 0.8, paced_s  # pts 0 .. 0.9 s
    assert fast_s < paced_s, (fast_s, paced_s)
    wall0, pts0 = arrivals[0]
    for wall, pts in arrivals:  # never early: frame k waits for its pts
        assert wall - wall0 >= pts - pts0 - 0.01, (wall - wall0, pts - pts0)
    print(f"10 frames at 10 fps: realtime {paced_s:.2f} s, as fast as possible {fast_s:.3f} s")
