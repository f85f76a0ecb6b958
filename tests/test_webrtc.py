"""WHIP/WHEP sources against real aiortc peers over 127.0.0.1 (no mocks, no STUN)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import aiohttp
import pytest

from sam2long_stream.sources.frame import Frame, SourceEvent
from sam2long_stream.sources.webrtc import WhepSource, WhipSource
from sam2long_stream.testing.webrtc_peers import WhepServer, WhipPublisher

W, H, FPS = 160, 120, 10.0


class Collector:
    """Thread-safe sink for a source's callbacks with blocking waits."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.events: list[SourceEvent] = []
        self._cv = threading.Condition()

    def on_frame(self, frame: Frame) -> None:
        with self._cv:
            self.frames.append(frame)
            self._cv.notify_all()

    def on_event(self, event: SourceEvent) -> None:
        with self._cv:
            self.events.append(event)
            self._cv.notify_all()

    def kinds(self) -> list[str]:
        with self._cv:
            return [e.kind for e in self.events]

    def wait_event(self, kind: str, timeout: float, start: int = 0) -> SourceEvent:
        """First `kind` event at index >= start."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for ev in self.events[start:]:
                    if ev.kind == kind:
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {kind!r} event within {timeout} s: {self.kinds()}")
                self._cv.wait(left)

    def wait_frames(self, count: int, timeout: float) -> list[Frame]:
        deadline = time.monotonic() + timeout
        with self._cv:
            while len(self.frames) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.frames)}/{count} frames within {timeout} s")
                self._cv.wait(left)
            return list(self.frames)


@pytest.fixture
def sink() -> Collector:
    return Collector()


pytestmark = pytest.mark.usefixtures("no_thread_tracebacks")


@pytest.fixture
def whip(sink: Collector) -> Iterator[WhipSource]:
    src = WhipSource(port=0, idle_timeout_s=2.0)
    src.start(sink.on_frame, sink.on_event)
    yield src
    src.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_frames_sane(frames: list[Frame], width: int, height: int) -> None:
    assert frames, "no frames"
    for f in frames:
        assert f.rgb.shape == (height, width, 3)
        assert f.rgb.dtype.name == "uint8"
    seqs = [f.seq for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    pts = [f.pts for f in frames]
    assert all(p is not None for p in pts)
    assert pts == sorted(pts)


# --- WHIP --------------------------------------------------------------------------------


def test_from_url_parsing() -> None:
    s = WhipSource.from_url("whip://127.0.0.1:8080/whip/cam0")
    assert (s.host, s.port, s.path, s.token) == ("127.0.0.1", 8080, "/whip/cam0", None)
    assert s.ice_addresses == ("127.0.0.1",)
    s = WhipSource.from_url("whip://0.0.0.0:9000/in?token=abc")
    assert (s.port, s.path, s.token, s.ice_addresses) == (9000, "/in", "abc", None)
    p = WhepSource.from_url("whep+http://127.0.0.1:8889/whep/cam0?token=t&x=1")
    assert (p.url, p.token) == ("http://127.0.0.1:8889/whep/cam0?x=1", "t")
    assert WhepSource.from_url("whep+https://cam.example/whep").url == "https://cam.example/whep"
    with pytest.raises(ValueError):
        WhipSource.from_url("rtsp://127.0.0.1/x")


def test_whip_publish_reoffer_resolution_and_graceful_stop(
    whip: WhipSource, sink: Collector
) -> None:
    pub = WhipPublisher(whip.url, W, H, FPS).start()
    try:
        ev = sink.wait_event("connected", 10)
        assert (ev.detail["width"], ev.detail["height"]) == (W, H)
        assert_frames_sane(sink.wait_frames(5, 5), W, H)

        pub.set_size(W // 2, H // 2)
        ev = sink.wait_event("resolution", 5)
        assert (ev.detail["width"], ev.detail["height"]) == (W // 2, H // 2)
    finally:
        mark = len(sink.events)
        pub2 = WhipPublisher(whip.url, 96, 64, FPS).start()  # re-offer while pub is live
        pub.stop()
    try:
        sink.wait_event("disconnected", 5, mark)
        ev = sink.wait_event("connected", 10, mark)
        assert (ev.detail["width"], ev.detail["height"]) == (96, 64)
        kinds = sink.kinds()[mark:]
        assert kinds.index("disconnected") < kinds.index("connected")
        n = len(sink.frames)
        frames = sink.wait_frames(n + 5, 5)
        assert_frames_sane(frames[n:], 96, 64)
        assert [f.seq for f in frames] == list(range(len(frames)))  # seq spans sessions
    finally:
        mark = len(sink.events)
        pub2.stop(graceful=True)
    ev = sink.wait_event("disconnected", 3, mark)
    assert "ended" in ev.detail["reason"]


def test_whip_vanished_publisher_is_detected(whip: WhipSource, sink: Collector) -> None:
    pub = WhipPublisher(whip.url, W, H, FPS).start()
    try:
        sink.wait_event("connected", 10)
        sink.wait_frames(3, 5)
        mark = len(sink.events)
        pub.stop(graceful=False)  # freeze: no DELETE, no BYE, no DTLS close
        t0 = time.monotonic()
        ev = sink.wait_event("disconnected", whip.idle_timeout_s + 2.0, mark)
        assert time.monotonic() - t0 <= whip.idle_timeout_s + 2.0
        assert "no frame" in ev.detail["reason"]
    finally:
        pub.stop()
    # The endpoint takes the next publisher.
    mark = len(sink.events)
    pub = WhipPublisher(whip.url, W, H, FPS).start()
    try:
        sink.wait_event("connected", 10, mark)
    finally:
        pub.stop()


def test_whip_token_required(sink: Collector) -> None:
    src = WhipSource(port=0, token="s3cret")
    src.start(sink.on_frame, sink.on_event)
    try:

        async def post(headers: dict[str, str]) -> int:
            headers = {"Content-Type": "application/sdp", **headers}
            async with (
                aiohttp.ClientSession() as http,
                http.post(src.url, data="v=0\r\n", headers=headers) as resp,
            ):
                return resp.status

        assert asyncio.run(post({})) == 401
        assert asyncio.run(post({"Authorization": "Bearer wrong"})) == 401
        assert asyncio.run(post({"Authorization": "Bearer s3cret"})) == 400  # past auth
        with pytest.raises(RuntimeError, match="401"):
            WhipPublisher(src.url, W, H, FPS).start()
        pub = WhipPublisher(src.url, W, H, FPS, token="s3cret").start()
        try:
            sink.wait_event("connected", 10)
        finally:
            pub.stop()
    finally:
        src.stop()


def test_whip_port_in_use_is_an_event(sink: Collector) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        src = WhipSource(port=s.getsockname()[1])
        src.start(sink.on_frame, sink.on_event)
        src.stop()
    assert sink.kinds() == ["error"]


# --- WHEP --------------------------------------------------------------------------------


def test_whep_pull_reconnect_and_delete_on_stop(sink: Collector) -> None:
    server = WhepServer(width=W, height=H, fps=FPS).start()
    src = WhepSource(server.url, backoff_initial_s=0.2)
    try:
        src.start(sink.on_frame, sink.on_event)
        ev = sink.wait_event("connected", 10)
        assert (ev.detail["width"], ev.detail["height"]) == (W, H)
        assert_frames_sane(sink.wait_frames(5, 5), W, H)

        mark = len(sink.events)
        server.drop_sessions()  # server side goes away -> reconnect
        sink.wait_event("disconnected", 5, mark)
        sink.wait_event("reconnecting", 5, mark)
        sink.wait_event("connected", 10, mark)
        n = len(sink.frames)
        sink.wait_frames(n + 3, 5)
        assert server.posts == 2
    finally:
        t0 = time.monotonic()
        src.stop()
        assert time.monotonic() - t0 < 3.0
        server.stop()
    assert server.deletes >= 1 and not server.sessions  # stop DELETEd the live session
    assert sink.events[-1].kind == "disconnected"


def test_whep_connection_refused_retries_quietly(sink: Collector) -> None:
    src = WhepSource(f"http://127.0.0.1:{free_port()}/whep/cam0", backoff_initial_s=0.1)
    src.start(sink.on_frame, sink.on_event)
    try:
        ev = sink.wait_event("error", 5)
        assert "connection refused" in ev.detail["message"]
        assert "\n" not in ev.detail["message"]
        sink.wait_event("reconnecting", 5)
        sink.wait_event("error", 5, sink.kinds().index("reconnecting") + 1)
    finally:
        t0 = time.monotonic()
        src.stop()
        assert time.monotonic() - t0 < 3.0
    src.stop()  # idempotent
    assert not sink.frames
    delays = [e.detail["delay_s"] for e in sink.events if e.kind == "reconnecting"]
    assert delays == sorted(delays)


@pytest.mark.parametrize(
    ("server_kwargs", "needle"),
    [
        ({"reject_status": 404}, "HTTP 404"),
        ({"reject_status": 503}, "HTTP 503"),
        ({"bad_answer": True}, "SDP"),
    ],
)
def test_whep_server_errors_are_one_sentence(
    sink: Collector, server_kwargs: dict[str, object], needle: str
) -> None:
    server = WhepServer(**server_kwargs).start()  # type: ignore[arg-type]
    src = WhepSource(server.url, reconnect=False)
    try:
        src.start(sink.on_frame, sink.on_event)
        ev = sink.wait_event("error", 5)
        assert needle in ev.detail["message"] and "\n" not in ev.detail["message"]
        sink.wait_event("eos", 5)
    finally:
        src.stop()
        server.stop()
