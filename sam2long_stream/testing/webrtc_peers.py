"""Synthetic WebRTC peers for tests and demos: a WHIP publisher and a WHEP server.

    python -m sam2long_stream.testing.webrtc_peers whip-publish http://127.0.0.1:8080/whip/cam0
    python -m sam2long_stream.testing.webrtc_peers whep-serve --port 8889 --path /whep/cam0

Both push a moving disc and square on a noisy background (aiortc VideoStreamTrack).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import sys
import time
import uuid
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import av
import numpy as np
from aiohttp import web
from aiortc import AudioStreamTrack, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from yarl import URL

from sam2long_stream.sources.webrtc_common import (
    LoopThread,
    default_ice_addresses,
    rtc_configuration,
)

log = logging.getLogger(__name__)

VIDEO_CLOCK = 90_000


def draw_pattern(n: int, width: int, height: int, pattern: str, noise: np.ndarray) -> np.ndarray:
    """Frame `n` of a moving disc and/or square on `noise` (HxWx3 uint8)."""
    img = noise.copy()
    yy, xx = np.ogrid[:height, :width]
    t = n / 10.0
    r = max(4, min(width, height) // 8)
    if pattern in ("disc", "shapes"):
        cx = width / 2 + (width / 2 - r - 1) * math.sin(t)
        cy = height / 2 + (height / 2 - r - 1) * math.sin(0.7 * t + 1.0)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = (230, 40, 40)
    if pattern in ("square", "shapes"):
        sx = int((width - 2 * r) * (0.5 + 0.5 * math.cos(0.8 * t)))
        sy = int((height - 2 * r) * (0.5 + 0.5 * math.sin(0.5 * t)))
        img[sy : sy + 2 * r, sx : sx + 2 * r] = (40, 200, 60)
    return img


class SyntheticVideoTrack(VideoStreamTrack):
    """Moving shapes at `fps`, 90 kHz pts; `set_size` changes the resolution mid-stream."""

    def __init__(self, width: int, height: int, fps: float, pattern: str = "shapes") -> None:
        super().__init__()
        self.fps = fps
        self.pattern = pattern
        self._rng = np.random.default_rng(0)
        self._n = 0
        self._t0: float | None = None
        self.set_size(width, height)

    def set_size(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        # A few precomputed noise fields: cheap per frame, still not a flat image.
        self._noise = [
            (self._rng.integers(0, 48, (height, width, 3), dtype=np.uint8) + 70) for _ in range(3)
        ]

    async def recv(self) -> av.VideoFrame:
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        wait = self._t0 + self._n / self.fps - now
        if wait > 0:
            await asyncio.sleep(wait)
        rgb = draw_pattern(self._n, self.width, self.height, self.pattern, self._noise[self._n % 3])
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = round(self._n * VIDEO_CLOCK / self.fps)
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        self._n += 1
        return frame


class WhipPublisher:
    """Pushes a synthetic track to a WHIP endpoint (blocking API, own loop thread).

    `stop(graceful=False)` freezes the peer without DELETE, RTCP BYE or DTLS close, like
    a killed process or a pulled cable; a later `stop()` releases its resources quietly.
    """

    def __init__(
        self,
        url: str,
        width: int = 160,
        height: int = 120,
        fps: float = 10.0,
        pattern: str = "shapes",
        token: str | None = None,
        ice_addresses: Sequence[str] | Literal["auto"] | None = "auto",
        audio: bool = False,
    ) -> None:
        self.url = url
        self.token = token
        self.track = SyntheticVideoTrack(width, height, fps, pattern)
        # audio=True offers an audio track *before* the video, as browsers do for
        # getUserMedia({audio: true, video: true}).
        self.audio = AudioStreamTrack() if audio else None
        addrs = (
            default_ice_addresses(urlsplit(url).hostname)
            if ice_addresses == "auto"
            else ice_addresses
        )
        self._loop = LoopThread("whip-publisher", addrs)
        self._pc: RTCPeerConnection | None = None
        self.location: str | None = None
        self._vanished = False
        self._stopped = False

    def start(self, timeout: float = 10.0) -> WhipPublisher:
        """Offer, POST, apply the answer; raises RuntimeError on an HTTP error."""
        self._loop.start()
        try:
            self._loop.call(self._connect(), timeout)
        except BaseException:
            self._loop.stop()
            raise
        return self

    def set_size(self, width: int, height: int) -> None:
        self.track.set_size(width, height)

    async def _connect(self) -> None:
        pc = RTCPeerConnection(rtc_configuration())
        self._pc = pc
        if self.audio is not None:
            pc.addTransceiver(self.audio, direction="sendonly")
        pc.addTransceiver(self.track, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        headers = {"Content-Type": "application/sdp"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.post(self.url, data=pc.localDescription.sdp.encode(), headers=headers) as resp,
        ):
            body = await resp.text()
            if resp.status != 201:
                raise RuntimeError(f"WHIP POST {self.url} -> HTTP {resp.status}: {body.strip()}")
            loc = resp.headers.get("Location")
            self.location = str(resp.url.join(URL(loc))) if loc else None
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))

    async def _close(self, delete: bool) -> None:
        if delete and self.location:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            with contextlib.suppress(Exception):
                async with (
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http,
                    http.delete(self.location, headers=headers),
                ):
                    pass
        if self._pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._pc.close(), 2.0)

    def stop(self, graceful: bool = True) -> None:
        """graceful: DELETE and close. Otherwise vanish (see class doc)."""
        if self._stopped:
            return
        if not graceful and not self._vanished:
            self._vanished = True
            self._loop.pause()
            return
        self._stopped = True
        if self._vanished:
            self._loop.resume()
        with contextlib.suppress(Exception):
            self._loop.call(self._close(delete=not self._vanished), 4.0)
        self._loop.stop()


class WhepServer:
    """An aiohttp WHEP endpoint answering each offer with its own synthetic track.

    `reject_status` makes every POST fail with that HTTP status and `bad_answer` answers
    201 with a broken SDP (error-path tests);
    `drop_sessions()` closes all peer connections server-side (reconnect tests).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/whep/cam0",
        width: int = 160,
        height: int = 120,
        fps: float = 10.0,
        token: str | None = None,
        reject_status: int | None = None,
        bad_answer: bool = False,
        ice_addresses: Sequence[str] | Literal["auto"] | None = "auto",
    ) -> None:
        self.host, self.port, self.path = host, port, "/" + path.strip("/")
        self.width, self.height, self.fps = width, height, fps
        self.token = token
        self.reject_status = reject_status
        self.bad_answer = bad_answer
        addrs = default_ice_addresses(host) if ice_addresses == "auto" else ice_addresses
        self._loop = LoopThread("whep-server", addrs)
        self._runner: web.AppRunner | None = None
        self.sessions: dict[str, RTCPeerConnection] = {}
        self.posts = 0
        self.deletes = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    def start(self) -> WhepServer:
        self._loop.start()
        self._loop.call(self._serve(), 5.0)
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.call(self._shutdown(), 4.0)
        self._loop.stop()

    def drop_sessions(self) -> None:
        self._loop.call(self._drop(), 4.0)

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post(self.path, self._on_post)
        app.router.add_delete(self.path + "/{sid}", self._on_delete)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port).start()
        self._runner = runner
        if self.port == 0:
            self.port = int(runner.addresses[0][1])

    async def _drop(self) -> None:
        pcs = list(self.sessions.values())
        self.sessions.clear()
        for pc in pcs:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), 2.0)

    async def _shutdown(self) -> None:
        await self._drop()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _on_post(self, request: web.Request) -> web.StreamResponse:
        self.posts += 1
        if self.reject_status is not None:
            return web.Response(status=self.reject_status, text="rejected by test server\n")
        if self.bad_answer:
            return web.Response(
                status=201, text="v=0\r\nm=video\r\n", content_type="application/sdp"
            )
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=401)
        if request.content_type != "application/sdp":
            return web.Response(status=415)
        pc = RTCPeerConnection(rtc_configuration())
        try:
            await pc.setRemoteDescription(
                RTCSessionDescription(sdp=await request.text(), type="offer")
            )
            for t in pc.getTransceivers():
                if t.kind == "video":
                    pc.addTrack(SyntheticVideoTrack(self.width, self.height, self.fps))
                    break
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await pc.close()
            return web.Response(status=400, text=f"bad offer: {exc}\n")
        sid = uuid.uuid4().hex
        self.sessions[sid] = pc
        return web.Response(
            status=201,
            text=pc.localDescription.sdp,
            content_type="application/sdp",
            headers={"Location": f"{self.path}/{sid}"},
        )

    async def _on_delete(self, request: web.Request) -> web.StreamResponse:
        self.deletes += 1
        pc = self.sessions.pop(request.match_info["sid"], None)
        if pc is None:
            return web.Response(status=404)
        await pc.close()
        return web.Response(status=200)


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main(argv: list[str] | None = None) -> int:
    """Run one peer until Ctrl-C."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    pub = sub.add_parser("whip-publish", help="push synthetic video to a WHIP URL")
    pub.add_argument("url")
    srv = sub.add_parser("whep-serve", help="serve synthetic video over WHEP")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8889)
    srv.add_argument("--path", default="/whep/cam0")
    for p in (pub, srv):
        p.add_argument("--size", type=_size, default=(320, 240), help="WxH")
        p.add_argument("--fps", type=float, default=15.0)
        p.add_argument("--token")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    w, h = args.size
    peer: Any
    if args.cmd == "whip-publish":
        peer = WhipPublisher(args.url, w, h, args.fps, token=args.token).start()
        print(f"publishing {w}x{h}@{args.fps:g} to {args.url} (session {peer.location})")
    else:
        peer = WhepServer(args.host, args.port, args.path, w, h, args.fps, args.token).start()
        print(f"serving WHEP at {peer.url}")
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        peer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
