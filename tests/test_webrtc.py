"""WHIP/WHEP sources against real aiortc peers over 127.0.0.1 (no mocks, no STUN)."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from sam2long_stream.sources.frame import Frame, SourceEvent
from sam2long_stream.sources.webrtc import WhepSource, WhipSource
from sam2long_stream.testing.tls import self_signed
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


def test_whip_publish_reoffer_resolution_and_graceful_stop(sink: Collector) -> None:
    # With a token, the newest authenticated offer replaces the live publisher.
    whip = WhipSource(port=0, idle_timeout_s=2.0, token="t0k")
    whip.start(sink.on_frame, sink.on_event)
    try:
        _reoffer_scenario(whip, sink)
    finally:
        whip.stop()


def _reoffer_scenario(whip: WhipSource, sink: Collector) -> None:
    pub = WhipPublisher(whip.url, W, H, FPS, token="t0k").start()
    try:
        ev = sink.wait_event("connected", 10)
        assert (ev.detail["width"], ev.detail["height"]) == (W, H)
        assert_frames_sane(sink.wait_frames(5, 5), W, H)

        pub.set_size(W // 2, H // 2)
        ev = sink.wait_event("resolution", 5)
        assert (ev.detail["width"], ev.detail["height"]) == (W // 2, H // 2)
    finally:
        mark = len(sink.events)
        pub2 = WhipPublisher(whip.url, 96, 64, FPS, token="t0k").start()  # re-offer
        pub.stop()
    try:
        ev = sink.wait_event("disconnected", 5, mark)
        assert "replaced" in ev.detail["reason"]
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
    assert "error" not in sink.kinds()


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


# --- WHIP: real-client bugs (issue 12) ---------------------------------------------------


def _offer_sdp(audio: bool = False, video: bool = True) -> str:
    """A real aiortc offer (its peer is closed at once, so its ICE never connects)."""
    from aiortc import AudioStreamTrack, RTCPeerConnection

    from sam2long_stream.sources.webrtc_common import rtc_configuration
    from sam2long_stream.testing.webrtc_peers import SyntheticVideoTrack

    async def make() -> str:
        pc = RTCPeerConnection(rtc_configuration())
        if audio:
            pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        if video:
            pc.addTransceiver(SyntheticVideoTrack(W, H, FPS), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    return asyncio.run(make())


async def _post(url: str, body: bytes | str, ctype: str = "application/sdp", **kw: object) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=body, headers={"Content-Type": ctype}, **kw) as resp,  # type: ignore[arg-type]
    ):
        await resp.read()
        return resp.status


def test_whip_audio_first_publisher_is_tracked(whip: WhipSource, sink: Collector) -> None:
    # getUserMedia({audio: true, video: true}) puts the audio m-line first.
    pub = WhipPublisher(whip.url, W, H, FPS, audio=True).start()
    try:
        ev = sink.wait_event("connected", 10)
        assert (ev.detail["width"], ev.detail["height"]) == (W, H)
        assert_frames_sane(sink.wait_frames(5, 10), W, H)
    finally:
        pub.stop()


def test_whip_bad_offers_are_refused_and_the_endpoint_keeps_waiting(
    whip: WhipSource, sink: Collector
) -> None:
    audio_only = _offer_sdp(audio=True, video=False)
    cases = [
        (b"", "application/sdp", 400),
        (b"v=0\r\nthis is not sdp\r\n", "application/sdp", 400),
        (b"\xff\xfe\x00garbage", "application/sdp", 400),
        (b"v=0\r\n", "text/plain", 415),
        (audio_only.encode(), "application/sdp", 400),
    ]
    for body, ctype, want in cases:
        assert asyncio.run(_post(whip.url, body, ctype)) == want, (body[:20], ctype)
    assert set(sink.kinds()) == {"rejected"} and len(sink.events) == len(cases)
    assert all("\n" not in e.detail["message"] for e in sink.events)
    assert "no video" in sink.events[-1].detail["message"]
    # Still waiting: a real publisher is taken.
    pub = WhipPublisher(whip.url, W, H, FPS).start()
    try:
        sink.wait_event("connected", 10)
        sink.wait_frames(3, 10)
        mark = len(sink.events)
        # A bad offer during a live session changes nothing for the session.
        assert asyncio.run(_post(whip.url, b"")) == 400
        n = len(sink.frames)
        sink.wait_frames(n + 3, 10)
        assert sink.kinds()[mark:] == ["rejected"]
    finally:
        pub.stop()


def test_whip_offer_whose_ice_never_connects_is_rejected_not_fatal(sink: Collector) -> None:
    src = WhipSource(port=0, connect_timeout_s=1.5)
    src.start(sink.on_frame, sink.on_event)
    try:
        assert asyncio.run(_post(src.url, _offer_sdp())) == 201  # usable offer, dead peer
        ev = sink.wait_event("rejected", 20)
        assert "gave up before video" in ev.detail["message"]
        assert "error" not in sink.kinds()
        pub = WhipPublisher(src.url, W, H, FPS).start()
        try:
            sink.wait_event("connected", 10)
        finally:
            pub.stop()
    finally:
        src.stop()


def test_whip_live_publisher_keeps_the_endpoint_against_concurrent_offers(
    whip: WhipSource, sink: Collector
) -> None:
    pub = WhipPublisher(whip.url, W, H, FPS).start()
    try:
        sink.wait_event("connected", 10)
        sink.wait_frames(3, 10)
        mark = len(sink.events)
        offer = _offer_sdp()

        async def storm() -> list[int]:
            return await asyncio.gather(*(_post(whip.url, offer) for _ in range(30)))

        assert asyncio.run(storm()) == [409] * 30
        n = len(sink.frames)
        sink.wait_frames(n + 5, 10)  # the live publisher goes on
        assert set(sink.kinds()[mark:]) == {"rejected"}
        assert "409" not in sink.events[-1].detail["message"]  # says why, not the code
        assert sink.events[-1].detail["http_status"] == 409
    finally:
        mark = len(sink.events)
        pub.stop()
    sink.wait_event("disconnected", 5, mark)
    pub = WhipPublisher(whip.url, W, H, FPS).start()  # the endpoint is free again
    try:
        sink.wait_event("connected", 10, mark)
    finally:
        pub.stop()


def _slow_client(port: int, results: dict[str, list[float]], lines: int = 60) -> None:
    """Send one header line every 0.25 s; record how the server ended the connection."""
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"POST /whip/cam0 HTTP/1.1\r\nHost: x\r\n")
            for i in range(lines):
                s.settimeout(0.25)
                try:
                    data = s.recv(200)
                except TimeoutError:
                    s.sendall(f"X-Slow-{i}: {i}\r\n".encode())
                    continue
                key = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"
                results.setdefault(key, []).append(time.monotonic() - t0)
                return
            results.setdefault("held", []).append(time.monotonic() - t0)
    except OSError:
        results.setdefault("reset", []).append(time.monotonic() - t0)


def test_whip_slow_clients_are_bounded_in_count_and_time(sink: Collector) -> None:
    src = WhipSource(
        port=0, header_timeout_s=1.5, body_timeout_s=1.5, max_connections_per_address=8
    )
    src.start(sink.on_frame, sink.on_event)
    try:
        results: dict[str, list[float]] = {}
        threads = [
            threading.Thread(target=_slow_client, args=(src.port, results)) for _ in range(40)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert "held" not in results, results  # nobody kept a connection 15 s
        # over the per-address cap: a 503 (or a reset when the close overtook the reply)
        assert len(results.get("503", [])) + len(results.get("reset", [])) >= 40 - 8
        assert results.get("503")
        assert 1 <= len(results.get("408", [])) <= 8  # the rest timed out
        assert max(results["408"]) < 1.5 + 10  # generous: a busy machine
        assert src.guard.refused >= 32 and src.guard.timed_out >= 1

        # A body that never arrives: 408 after body_timeout_s.
        with socket.create_connection(("127.0.0.1", src.port), timeout=30) as s:
            s.sendall(
                b"POST /whip/cam0 HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\n"
                b"Content-Length: 1000\r\n\r\nv=0\r\n"
            )
            head = s.recv(200)
        assert head.startswith(b"HTTP/1.1 408"), head

        # The endpoint still works.
        pub = WhipPublisher(src.url, W, H, FPS).start()
        try:
            sink.wait_event("connected", 10)
        finally:
            pub.stop()
    finally:
        src.stop()


def test_whip_tls_listener(sink: Collector, tmp_path: Path) -> None:
    import ssl

    cert, key = self_signed(tmp_path)
    with pytest.raises(ValueError, match="both"):
        WhipSource(port=0, tls_cert=cert)
    with pytest.raises(ValueError, match="not found"):
        WhipSource(port=0, tls_cert=cert, tls_key=str(tmp_path / "nope.pem"))
    with pytest.raises(ValueError, match="cannot use TLS"):
        WhipSource(port=0, tls_cert=key, tls_key=key)
    src = WhipSource(port=0, tls_cert=cert, tls_key=key)
    src.start(sink.on_frame, sink.on_event)
    try:
        assert src.url.startswith("https://127.0.0.1:")
        ctx = ssl.create_default_context(cafile=cert)
        assert asyncio.run(_post(src.url, b"", ssl=ctx)) == 400  # HTTPS, verified
        with pytest.raises(aiohttp.ClientError):  # plain HTTP is not spoken
            asyncio.run(_post(src.url.replace("https", "http"), b""))
    finally:
        src.stop()


# --- the browser page's routes (no browser: tests/test_browser.py drives chromium) -------


def test_whip_listener_follows_the_loopback_rule() -> None:
    from sam2long_stream.node import NodeConfig

    with pytest.raises(ValueError, match=r"WHIP listener to 0\.0\.0\.0:9000: not a loopback"):
        NodeConfig.one_stream("whip://0.0.0.0:9000/whip/cam0?token=s3kr1t")
    try:
        NodeConfig.one_stream("whip://0.0.0.0:9000/whip/cam0?token=s3kr1t")
    except ValueError as exc:
        assert "s3kr1t" not in str(exc)  # the token never lands in the message
    config = NodeConfig.one_stream("whip://0.0.0.0:9000/whip/cam0", allow_remote=True)
    assert config.remote_binds() == ["WHIP listener"]
    assert NodeConfig.one_stream("whip://127.0.0.1:9000/whip/cam0").remote_binds() == []


def test_tls_flags_apply_to_whip_sources_only() -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "sam2long_stream.cli", "run", "synthetic://moving-shapes",
         "--tls-cert", "c.pem", "--tls-key", "k.pem"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "sam2long-stream: error: --tls-cert/--tls-key apply to whip:// sources only"
    ]
    result = subprocess.run(
        [sys.executable, "-m", "sam2long_stream.cli", "run", "whip://127.0.0.1:0/whip/cam0",
         "--tls-cert", "missing.pem", "--tls-key", "missing.pem"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2  # a file a flag names is checked before the node runs
    assert result.stderr.strip().splitlines()[-1] == (
        "sam2long-stream: error: TLS certificate file not found: missing.pem"
    )


def _masks_parts(encoding: str) -> list[bytes]:
    import types

    import numpy as np

    from sam2long_stream.transport import wire

    mask = np.zeros((6, 8), dtype=bool)
    mask[1:4, 2:7] = True
    result = types.SimpleNamespace(frame_index=3, height=6, width=8, masks={5: mask}, scores={})
    return wire.encode_masks(
        "cam0",
        result,
        seq=7,
        pts=0.5,
        capture_time_ns=1,
        encoding=encoding,  # type: ignore[arg-type]
    )


def test_page_message_keeps_the_wire_rle() -> None:
    import numpy as np

    from sam2long_stream.transport import wire
    from sam2long_stream.web import connect_address, page_message

    rle = page_message(wire.decode(_masks_parts("rle")))
    bits = page_message(wire.decode(_masks_parts("bits")))
    assert rle["type"] == "masks" and rle["seq"] == 7 and (rle["width"], rle["height"]) == (8, 6)
    assert rle["objects"][0]["rle"] == bits["objects"][0]["rle"]  # bits re-encoded as RLE
    m = wire.mask_from_rle(rle["objects"][0]["rle"], 6, 8)
    assert m.sum() == 15 and m[1:4, 2:7].all() and rle["objects"][0]["id"] == 5
    json_text = __import__("json").dumps(rle)  # plain JSON: what the WebSocket sends
    assert "NaN" not in json_text and np.isfinite(rle["node_latency_ms"])
    status = page_message(wire.decode(wire.encode_status("cam0", "rejected", error="x")))
    assert status["type"] == "status" and status["state"] == "rejected"
    assert connect_address("tcp://0.0.0.0:5556") == "tcp://127.0.0.1:5556"
    assert connect_address("tcp://*:5556") == "tcp://127.0.0.1:5556"
    assert connect_address("tcp://10.0.0.5:5556") == "tcp://10.0.0.5:5556"
    assert connect_address("ipc:///tmp/x") == "ipc:///tmp/x"


def test_page_routes_token_origin_and_control_off(sink: Collector) -> None:
    from sam2long_stream.web import PageConfig

    src = WhipSource(port=0, token="pw")
    src.attach_page(PageConfig("tcp://127.0.0.1:9", None, "cam0"))
    src.start(sink.on_frame, sink.on_event)
    base = src.base_url

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/") as resp:
                html = await resp.text()
                assert resp.status == 200 and resp.content_type == "text/html"
                assert '"whip_path": "/whip/cam0"' in html and '"token_required": true' in html
                assert "pw" not in html  # the page never carries the token
            async with http.options(base + "/whip/cam0") as resp:  # WHIP: cross-origin ok
                assert resp.status == 204
                assert resp.headers["Access-Control-Allow-Origin"] == "*"
                assert "Location" in resp.headers["Access-Control-Expose-Headers"]
            async with http.get(base + "/") as resp:  # the page: same origin only
                assert "Access-Control-Allow-Origin" not in resp.headers
            async with http.get(base + "/app.js") as resp:
                assert resp.status == 200 and "rleCounts" in await resp.text()
            async with http.get(base + "/ws") as resp:
                assert resp.status == 403  # no token
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await http.ws_connect(base + "/ws?token=pw", headers={"Origin": "http://evil"})
            assert err.value.status == 403
            async with http.ws_connect(base + "/ws?token=pw") as ws:
                hello = await ws.receive_json(timeout=10)
                assert hello["type"] == "hello" and hello["control"] is False
                await ws.send_json({"type": "ping", "t": 1.0})
                pong = await ws.receive_json(timeout=10)
                assert pong["type"] == "pong" and pong["t"] == 1.0
                assert abs(pong["server_ms"] - time.time() * 1000) < 60_000
                await ws.send_json({"type": "add_box", "box": [0, 0, 10, 10], "ref": 3})
                reply = await ws.receive_json(timeout=10)
                assert reply == {
                    "type": "reply",
                    "op": "add_box",
                    "ref": 3,
                    "ok": False,
                    "error": "this node has no control socket the page can use",
                }
                await ws.send_str("not json")
                assert (await ws.receive_json(timeout=10))["error"] == "not JSON"

    try:
        asyncio.run(scenario())
    finally:
        src.stop()
