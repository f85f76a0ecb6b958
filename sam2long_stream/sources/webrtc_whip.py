"""WHIP ingest: the node serves a WHIP endpoint so a browser or encoder can push a camera."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from sam2long_stream.sources.base import EventCallback, FrameCallback, FrameSource
from sam2long_stream.sources.webrtc_common import (
    Emitter,
    LoopThread,
    consume_video,
    default_ice_addresses,
    drain_track,
    one_line,
    rtc_configuration,
)

log = logging.getLogger(__name__)

_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, DELETE, PATCH, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link, ETag",
}


@dataclass
class _Session:
    sid: str
    pc: Any
    remote: str | None
    connected: bool = False
    ended: bool = False
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


class WhipSource(FrameSource):
    """Serves `POST {path}` (WHIP) and turns the pushed video into frames.

    One publisher at a time: a new offer replaces the current session. A publisher that
    disappears without DELETE is noticed by `idle_timeout_s` without frames.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        path: str = "/whip/cam0",
        token: str | None = None,
        idle_timeout_s: float = 3.0,
        connect_timeout_s: float = 10.0,
        ice_addresses: Sequence[str] | Literal["auto"] | None = "auto",
    ) -> None:
        self.host = host
        self.port = port
        self.path = "/" + path.strip("/")
        self.token = token
        self.idle_timeout_s = idle_timeout_s
        self.connect_timeout_s = connect_timeout_s
        # Loopback endpoint -> loopback-only ICE candidates (see webrtc_common).
        self.ice_addresses = (
            default_ice_addresses(host) if ice_addresses == "auto" else ice_addresses
        )
        self._loop: LoopThread | None = None
        self._emitter: Emitter | None = None
        self._runner: web.AppRunner | None = None
        self._session: _Session | None = None
        self._post_lock: asyncio.Lock | None = None

    @classmethod
    def from_url(cls, url: str) -> WhipSource:
        """`whip://host:port/path[?token=...&idle_timeout=...]` -> a WhipSource."""
        parts = urlsplit(url)
        if parts.scheme != "whip":
            raise ValueError(f"not a whip:// URL: {url}")
        query = parse_qs(parts.query)
        kwargs: dict[str, Any] = {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port if parts.port is not None else 8080,
            "path": parts.path if parts.path not in ("", "/") else "/whip/cam0",
        }
        if "token" in query:
            kwargs["token"] = query["token"][0]
        if "idle_timeout" in query:
            kwargs["idle_timeout_s"] = float(query["idle_timeout"][0])
        return cls(**kwargs)

    @property
    def url(self) -> str:
        """The HTTP endpoint publishers POST their offer to."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"

    # -- FrameSource ------------------------------------------------------------------

    def start(self, on_frame: FrameCallback, on_event: EventCallback) -> None:
        """Bind the HTTP endpoint (waits for the bind, ~ms) and return."""
        if self._loop is not None:
            return
        self._emitter = Emitter(f"whip {self.path}", on_frame, on_event)
        self._loop = LoopThread(f"whip-{self.port}", self.ice_addresses)
        self._loop.start()
        try:
            self._loop.call(self._serve(), timeout=5.0)
        except Exception as exc:
            self._emitter.error(f"cannot serve WHIP on {self.host}:{self.port}: {one_line(exc)}")
            self._loop.stop()
            self._loop = None

    def stop(self) -> None:
        """End the session (no DELETE needed from the publisher) and close the endpoint."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            loop.call(self._shutdown(), timeout=2.5)
        except Exception as exc:
            log.warning("whip %s: shutdown incomplete: %s", self.path, one_line(exc))
        loop.stop(timeout=1.0)

    # -- server -----------------------------------------------------------------------

    async def _serve(self) -> None:
        self._post_lock = asyncio.Lock()
        app = web.Application(middlewares=[_cors_middleware])
        app.router.add_route("POST", self.path, self._on_post)
        app.router.add_route("OPTIONS", self.path, _on_options)
        resource = self.path + "/{sid}"
        app.router.add_route("DELETE", resource, self._on_delete)
        app.router.add_route("PATCH", resource, _on_patch)
        app.router.add_route("OPTIONS", resource, _on_options)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        if self.port == 0 and runner.addresses:
            self.port = int(runner.addresses[0][1])
        log.info("whip: listening on %s", self.url)

    async def _shutdown(self) -> None:
        if self._session is not None:
            await self._end_session(self._session, "source stopped")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _authorized(self, request: web.Request) -> bool:
        if not self.token:
            return True
        return request.headers.get("Authorization", "") == f"Bearer {self.token}"

    async def _on_post(self, request: web.Request) -> web.StreamResponse:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        assert self._emitter is not None and self._post_lock is not None
        if not self._authorized(request):
            return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        if request.content_type != "application/sdp":
            return web.Response(status=415, text="WHIP offers must be application/sdp\n")
        offer = await request.text()
        async with self._post_lock:
            pc = RTCPeerConnection(rtc_configuration())
            sess = _Session(sid=uuid.uuid4().hex, pc=pc, remote=request.remote)

            @pc.on("track")
            def _on_track(track: Any) -> None:
                if track.kind == "video" and not sess.tasks:
                    sess.tasks.append(asyncio.ensure_future(self._consume(sess, track)))
                else:
                    sess.tasks.append(asyncio.ensure_future(drain_track(track)))

            @pc.on("connectionstatechange")
            def _on_state() -> None:
                if pc.connectionState in ("failed", "closed") and not sess.ended:
                    reason = f"peer connection {pc.connectionState}"
                    sess.tasks.append(asyncio.ensure_future(self._end_session(sess, reason)))

            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
                if not sess.tasks:
                    raise ValueError("the offer has no video to receive")
                await pc.setLocalDescription(await pc.createAnswer())
            except Exception as exc:
                sess.ended = True
                for task in sess.tasks:
                    task.cancel()
                with contextlib.suppress(Exception):
                    await pc.close()
                msg = f"rejected a WHIP offer from {request.remote}: {one_line(exc)}"
                self._emitter.error(msg)
                return web.Response(status=400, text=msg + "\n")
            # Only a usable offer replaces the current publisher (the re-offer case).
            if self._session is not None:
                await self._end_session(self._session, "replaced by a new publisher")
            self._session = sess
            log.info("whip %s: session %s from %s", self.path, sess.sid, request.remote)
            return web.Response(
                status=201,
                text=pc.localDescription.sdp,
                content_type="application/sdp",
                headers={"Location": f"{self.path}/{sess.sid}", "ETag": f'"{sess.sid}"'},
            )

    async def _on_delete(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
        sess = self._session
        if sess is None or sess.sid != request.match_info["sid"]:
            return web.Response(status=404)
        await self._end_session(sess, "publisher ended the session")
        return web.Response(status=200)

    # -- sessions ---------------------------------------------------------------------

    async def _consume(self, sess: _Session, track: Any) -> None:
        assert self._emitter is not None

        def first() -> None:
            sess.connected = True

        reason = await consume_video(
            track,
            self._emitter,
            self.idle_timeout_s,
            self.connect_timeout_s,
            first,
            session=sess.sid,
            remote=sess.remote,
        )
        await self._end_session(sess, reason)

    async def _end_session(self, sess: _Session, reason: str) -> None:
        """Idempotent: emit one event for the session, then close its peer connection."""
        assert self._emitter is not None
        if sess.ended:
            return
        sess.ended = True
        if self._session is sess:
            self._session = None
        if sess.connected:
            self._emitter.event("disconnected", reason=reason, session=sess.sid)
        elif "replaced" not in reason and "stopped" not in reason and "ended" not in reason:
            self._emitter.error(f"WHIP publisher {sess.remote} gave up before video: {reason}")
        self._emitter.new_session()
        current = asyncio.current_task()
        for task in sess.tasks:
            if task is not current:
                task.cancel()
        try:
            await asyncio.wait_for(sess.pc.close(), 2.0)
        except Exception as exc:
            log.debug("whip %s: closing session %s: %s", self.path, sess.sid, one_line(exc))


@web.middleware
async def _cors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Browsers push from another origin; let them read Location."""
    resp = await handler(request)
    resp.headers.update(_CORS)
    return resp


async def _on_options(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204, headers={"Accept-Post": "application/sdp"})


async def _on_patch(request: web.Request) -> web.StreamResponse:
    # Trickle ICE is not supported: the answer already carries every candidate.
    return web.Response(status=405, headers={"Allow": "DELETE, OPTIONS"})
